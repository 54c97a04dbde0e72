/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's configuration keys, the core's life cycle (publisher, authd and notifyd
 * clients, push queue and relay, admin listener), the cached policy snapshot, and the
 * daemon glue that plugs the core into the shared skeleton (ent_daemon_main). Tests drive
 * the same core through policyd_core_start()/policyd_core_close() without the skeleton. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "ent/tls.h"
#include "events.h"
#include "policyd.h"

static const struct ent_cfg_key pd_keys[] = {
    ENT_CFG_KEY("admin", "listen", ENT_CFG_STR, struct policyd_cfg, admin_listen, "127.0.0.1:8444",
                0, 0, "host:port of the provisioning API (empty: off)"),
    ENT_CFG_KEY("admin", "tls", ENT_CFG_BOOL, struct policyd_cfg, admin_tls, "true", 0, 0,
                "serve the admin API over TLS (false only for tests on loopback)"),
    ENT_CFG_KEY("admin", "tls_cert", ENT_CFG_STR, struct policyd_cfg, admin_tls_cert, NULL, 0, 0,
                "admin listener certificate chain (PEM); unset: admin API off"),
    ENT_CFG_KEY("admin", "tls_key", ENT_CFG_STR, struct policyd_cfg, admin_tls_key, NULL, 0, 0,
                "admin listener private key (PEM)"),
    ENT_CFG_KEY("admin", "tokens_file", ENT_CFG_STR, struct policyd_cfg, admin_tokens_file, NULL, 0,
                0, "bearer tokens: '<token> [read|write|read,write]' per line"),
    ENT_CFG_KEY("admin", "max_body", ENT_CFG_SIZE, struct policyd_cfg, admin_max_body, "64m", 1024,
                (int64_t)1 << 31, "largest request body (bounds one import request)"),
    ENT_CFG_KEY("events", "listen", ENT_CFG_STR, struct policyd_cfg, events_listen,
                "tcp://127.0.0.1:7112", 0, 0, "NNG PUB address for change events (empty: off)"),
    ENT_CFG_KEY("upstream", "authd", ENT_CFG_STRLIST, struct policyd_cfg, upstream_authd,
                "tcp://127.0.0.1:7101", 0, 0, "authd bus addresses (credentials, revocation)"),
    ENT_CFG_KEY("upstream", "notifyd", ENT_CFG_STRLIST, struct policyd_cfg, upstream_notifyd,
                "tcp://127.0.0.1:7103", 0, 0, "notifyd bus addresses (push requests)"),
    ENT_CFG_KEY("upstream", "timeout", ENT_CFG_DURATION, struct policyd_cfg, upstream_timeout, "2s",
                1, 600000, "deadline of one authd/notifyd call"),
    ENT_CFG_KEY("upstream", "max_inflight", ENT_CFG_INT, struct policyd_cfg, upstream_max_inflight,
                "256", 1, 65536, "calls in flight per upstream"),
    ENT_CFG_KEY("policy", "home_plmns", ENT_CFG_STRLIST, struct policyd_cfg, home_plmns, "00101", 0,
                0, "the operator's home PLMNs (MCC+MNC); a serving PLMN in it is home"),
    ENT_CFG_KEY("policy", "default_plan", ENT_CFG_STR, struct policyd_cfg, default_plan, "default",
                0, 0, "plan id used when a subscriber names none"),
    ENT_CFG_KEY("policy", "websheet_url", ENT_CFG_STR, struct policyd_cfg, websheet_url,
                "https://127.0.0.1:8443/websheet/vowifi", 0, 0,
                "ServiceFlow_URL sent when VoWiFi needs the websheet"),
    ENT_CFG_KEY("credentials", "required", ENT_CFG_BOOL, struct policyd_cfg, credentials_required,
                "true", 0, 0,
                "POST /v1/subscribers needs k and opc/op (false when authd gets vectors "
                "from the HSS/UDM)"),
    ENT_CFG_KEY("import", "concurrency", ENT_CFG_INT, struct policyd_cfg, import_concurrency, "64",
                1, 4096, "authd calls in flight per import"),
    ENT_CFG_KEY("push", "queue_path", ENT_CFG_STR, struct policyd_cfg, push_queue_path, NULL, 0, 0,
                "sqlite: file of the durable push queue (unset: store.path + \".policyd-push\")"),
    ENT_CFG_KEY("push", "queue_database", ENT_CFG_STR, struct policyd_cfg, push_queue_database,
                NULL, 0, 0,
                "mongo: database of the durable push queue (unset: store.database + "
                "\"_policyd_push\")"),
    ENT_CFG_KEY("push", "lease", ENT_CFG_DURATION, struct policyd_cfg, push_lease, "30s", 100,
                3600000,
                "a claimed push intent is another replica's to resend after this long (at least "
                "2 x upstream.timeout)"),
    ENT_CFG_KEY("push", "backoff_min", ENT_CFG_DURATION, struct policyd_cfg, push_backoff_min,
                "500ms", 1, 3600000, "delay before the first resend of a failed handoff"),
    ENT_CFG_KEY("push", "backoff_max", ENT_CFG_DURATION, struct policyd_cfg, push_backoff_max,
                "60s", 1, 86400000, "cap of the doubling resend delay (jittered)"),
    ENT_CFG_KEY("push", "poll_interval", ENT_CFG_DURATION, struct policyd_cfg, push_poll_interval,
                "1s", 10, 60000,
                "how often the relay looks for due intents (retries, other replicas' expired "
                "leases)"),
    ENT_CFG_KEY("push", "batch", ENT_CFG_INT, struct policyd_cfg, push_batch, "64", 1, 1000,
                "push intents claimed at once"),
    ENT_CFG_KEY("push", "max_inflight", ENT_CFG_INT, struct policyd_cfg, push_max_inflight, "64", 1,
                65536, "push handoffs to notifyd in flight (at most upstream.max_inflight)"),
};

/* ---- policy snapshot ------------------------------------------------------------------- */

ent_err policyd_policy_refresh(struct policyd *p)
{
    int64_t gen = 0;
    ent_err rc = pd_policy_generation(p->store, &gen);
    if (rc != ENT_OK)
        return rc;
    if (p->policy_loaded && gen == p->policy.generation)
        return ENT_OK;
    struct pd_policy fresh;
    rc = pd_policy_load(p->store, &fresh);
    if (rc != ENT_OK)
        return rc;
    pd_policy_free(&p->policy);
    p->policy = fresh;
    p->policy_loaded = true;
    return ENT_OK;
}

void pd_eval_ctx_init(struct policyd *p, const struct pd_policy *pol, struct pd_eval_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->policy = pol;
    ctx->home_plmns = (const char *const *)p->cfg->home_plmns.items;
    ctx->n_home = p->cfg->home_plmns.n;
    ctx->default_plan = p->cfg->default_plan ? p->cfg->default_plan : "default";
    ctx->websheet_url = p->cfg->websheet_url ? p->cfg->websheet_url : "";
}

/* ---- core life cycle ------------------------------------------------------------------- */

void pd_core_handle_closed(struct policyd *p)
{
    if (p->closing)
        p->closing--;
    if (p->closing == 0 && p->close_requested && p->closed_cb) {
        void (*cb)(struct policyd *) = p->closed_cb;
        p->closed_cb = NULL;
        cb(p);
    }
}

static void on_admin_closed(struct ent_http_server *srv)
{
    pd_core_handle_closed(srv->data);
}

static void on_client_closed(struct ent_bus_client *c)
{
    pd_core_handle_closed(c->data);
}

static ent_err start_client(struct policyd *p, struct ent_bus_client *c, bool *on,
                            const struct ent_strlist *addrs, const struct ent_bus_tls_cfg *tls)
{
    if (addrs->n == 0)
        return ENT_OK;
    struct ent_bus_client_cfg bc = {
        .addrs = (const char *const *)addrs->items,
        .n_addrs = addrs->n,
        .max_inflight = (unsigned)p->cfg->upstream_max_inflight,
        .tls = tls,
        .caller = "policyd",
    };
    ent_err rc = ent_bus_client_init(c, p->loop, &bc);
    if (rc != ENT_OK)
        return rc;
    c->data = p;
    *on = true;
    p->closing++;
    return ENT_OK;
}

static void on_relay_closed(struct pd_relay *r)
{
    struct policyd *p = r->data;
    ent_store_close(p->push_queue);
    p->push_queue = NULL;
    pd_core_handle_closed(p);
}

/* Opens the push queue's own store: the same backend as the main store, another file or
 * database (relay.h says why), so the queue survives restarts exactly as the store does. */
static ent_err open_push_queue(struct policyd *p)
{
    const struct policyd_cfg *cfg = p->cfg;
    const struct ent_daemon_cfg *dc = &cfg->common;
    const char *backend = dc->store_backend && dc->store_backend[0] ? dc->store_backend : "sqlite";
    struct ent_store_cfg sc = {.backend = backend, .busy_timeout_ms = dc->store_busy_timeout};
    char name[1024] = "";
    int n;
    if (strcmp(backend, "mongo") == 0) {
        if (cfg->push_queue_database && cfg->push_queue_database[0])
            n = snprintf(name, sizeof(name), "%s", cfg->push_queue_database);
        else
            n = snprintf(name, sizeof(name), "%s_policyd_push",
                         dc->store_database && dc->store_database[0] ? dc->store_database
                                                                     : "entitle");
        sc.uri = dc->store_uri;
        sc.database = name;
    } else {
        if (cfg->push_queue_path && cfg->push_queue_path[0])
            n = snprintf(name, sizeof(name), "%s", cfg->push_queue_path);
        else if (dc->store_path && dc->store_path[0])
            n = snprintf(name, sizeof(name), "%s.policyd-push", dc->store_path);
        else
            n = 0;
        sc.path = name;
    }
    if (n <= 0 || (size_t)n >= sizeof(name)) {
        ENT_LOG_ERROR(
            NULL, "policyd.push_queue_open_failed",
            ENT_KV_STR("reason", "push.queue_path/push.queue_database unset or too long"));
        return ENT_ECONFIG;
    }
    char err[256] = "";
    ent_err rc = ent_store_open(&p->push_queue, &sc, err, sizeof(err));
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.push_queue_open_failed", ENT_KV_STR("backend", backend),
                      ENT_KV_STR("queue", name), ENT_KV_STR("reason", err));
        return rc;
    }
    ENT_LOG_INFO(NULL, "policyd.push_queue_open", ENT_KV_STR("backend", backend),
                 ENT_KV_STR("queue", name));
    return ENT_OK;
}

/* The durable push queue and its relay, when pushes can go anywhere (notifyd configured). */
static ent_err start_push(struct policyd *p)
{
    const struct policyd_cfg *cfg = p->cfg;
    if (!p->notifyd_on)
        return ENT_OK;
    ent_err rc = open_push_queue(p);
    if (rc != ENT_OK)
        return rc;
    size_t inflight = (size_t)cfg->push_max_inflight;
    if (cfg->upstream_max_inflight > 0 && inflight > (size_t)cfg->upstream_max_inflight)
        inflight = (size_t)cfg->upstream_max_inflight;
    struct pd_relay_cfg rc_cfg = {
        .owner = p->daemon ? p->daemon->instance : NULL,
        .call_timeout_ms = cfg->upstream_timeout,
        .lease_ms = cfg->push_lease,
        .backoff_min_ms = cfg->push_backoff_min,
        .backoff_max_ms = cfg->push_backoff_max,
        .poll_ms = cfg->push_poll_interval,
        .batch = cfg->push_batch > 0 ? (size_t)cfg->push_batch : 0,
        .max_inflight = inflight,
    };
    p->relay.data = p;
    rc = pd_relay_init(&p->relay, p->loop, p->push_queue, &p->notifyd, &rc_cfg);
    if (rc != ENT_OK) {
        ent_store_close(p->push_queue);
        p->push_queue = NULL;
        return rc;
    }
    p->relay_on = true;
    p->closing++;
    return ENT_OK;
}

static ent_err start_admin(struct policyd *p)
{
    const struct policyd_cfg *cfg = p->cfg;
    if (!cfg->admin_listen || !cfg->admin_listen[0])
        return ENT_OK;
    if (cfg->admin_tls && (!cfg->admin_tls_cert || !cfg->admin_tls_key)) {
        ENT_LOG_WARN(NULL, "policyd.admin_off",
                     ENT_KV_STR("reason", "admin.tls_cert/admin.tls_key unset"));
        return ENT_OK;
    }
    if (!cfg->admin_tokens_file) {
        ENT_LOG_ERROR(NULL, "policyd.admin_no_tokens",
                      ENT_KV_STR("reason", "admin.tokens_file is required with the admin API"));
        return ENT_ECONFIG;
    }
    ent_err rc = pd_admin_tokens_load(p, cfg->admin_tokens_file);
    if (rc != ENT_OK)
        return rc;
    SSL_CTX *ctx = NULL;
    if (cfg->admin_tls) {
        char err[256] = "";
        rc = ent_tls_server_ctx_new(&ctx, cfg->admin_tls_cert, cfg->admin_tls_key, NULL, err,
                                    sizeof(err));
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "policyd.admin_tls_failed", ENT_KV_STR("reason", err));
            return ENT_ECONFIG;
        }
    }
    struct ent_http_server_cfg hc = {
        .listen = cfg->admin_listen,
        .max_body = cfg->admin_max_body,
        .max_connections = 256,
        .read_timeout_ms = 60000, /* a large import body may take a while to arrive */
        .tls = ctx,
        .name = "admin",
        .stream_select = pd_admin_stream_select, /* POST /v1/import streams both ways */
    };
    rc = ent_http_server_init(&p->admin, p->loop, &hc, pd_admin_on_request, p);
    if (ctx)
        SSL_CTX_free(ctx);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.admin_listen_failed", ENT_KV_STR("listen", cfg->admin_listen),
                      ENT_KV_STR("reason", ent_strerror(rc)));
        return rc;
    }
    p->admin.data = p;
    p->admin_on = true;
    p->closing++;
    ENT_LOG_INFO(NULL, "policyd.admin_listening", ENT_KV_STR("listen", cfg->admin_listen),
                 ENT_KV_I64("port", ent_http_server_port(&p->admin)),
                 ENT_KV_BOOL("tls", cfg->admin_tls));
    return ENT_OK;
}

ent_err policyd_core_start(struct policyd *p, uv_loop_t *loop, struct ent_store *store,
                           const struct policyd_cfg *cfg)
{
    p->loop = loop;
    p->store = store;
    p->cfg = cfg;
    struct ent_bus_tls_cfg tls_storage;
    const struct ent_bus_tls_cfg *tls =
        p->daemon ? ent_daemon_bus_tls(p->daemon, &tls_storage) : NULL;
    ent_err rc = policyd_policy_refresh(p);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.policy_load_failed", ENT_KV_STR("reason", ent_err_name(rc)));
        return rc;
    }
    if (cfg->events_listen && cfg->events_listen[0]) {
        rc = ent_bus_pub_init(&p->pub, cfg->events_listen, tls, "policyd");
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "policyd.events_listen_failed",
                          ENT_KV_STR("listen", cfg->events_listen),
                          ENT_KV_STR("reason", ent_strerror(rc)));
            return rc;
        }
        p->pub_on = true;
    }
    rc = start_client(p, &p->authd, &p->authd_on, &cfg->upstream_authd, tls);
    if (rc == ENT_OK)
        rc = start_client(p, &p->notifyd, &p->notifyd_on, &cfg->upstream_notifyd, tls);
    if (rc == ENT_OK)
        rc = start_push(p);
    if (rc == ENT_OK)
        rc = start_admin(p);
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "policyd.start_failed", ENT_KV_STR("reason", ent_err_name(rc)));
    return rc;
}

void policyd_core_drain(struct policyd *p)
{
    if (p->admin_on)
        ent_http_server_stop_accepting(&p->admin);
    if (p->relay_on)
        pd_relay_drain(&p->relay);
}

size_t policyd_core_inflight(const struct policyd *p)
{
    size_t n = (p->relay_on ? pd_relay_inflight(&p->relay) : 0) + pd_import_inflight(p);
    for (const struct pd_pending *pe = p->pending; pe; pe = *(struct pd_pending *const *)pe)
        n++;
    if (p->admin_on)
        n += ent_http_server_inflight(&p->admin);
    return n;
}

void policyd_core_close(struct policyd *p, void (*closed_cb)(struct policyd *p))
{
    p->closed_cb = closed_cb;
    p->close_requested = true;
    p->closing++; /* held while this function runs */
    pd_import_close_all(p);
    if (p->admin_on) {
        p->admin_on = false;
        ent_http_server_close(&p->admin, on_admin_closed);
    }
    if (p->authd_on) {
        p->authd_on = false;
        ent_bus_client_close(&p->authd, on_client_closed);
    }
    if (p->relay_on) {
        /* Before the notifyd client: closing the client completes the relay's calls. */
        p->relay_on = false;
        pd_relay_close(&p->relay, on_relay_closed);
    }
    if (p->notifyd_on) {
        p->notifyd_on = false;
        ent_bus_client_close(&p->notifyd, on_client_closed);
    }
    if (p->pub_on) {
        p->pub_on = false;
        ent_bus_pub_close(&p->pub);
    }
    pd_admin_tokens_free(p);
    pd_policy_free(&p->policy);
    p->policy_loaded = false;
    pd_core_handle_closed(p);
}

int policyd_admin_port(const struct policyd *p)
{
    return p->admin_on ? ent_http_server_port(&p->admin) : -1;
}

/* ---- daemon glue ----------------------------------------------------------------------- */

static ent_err pd_start(struct ent_daemon *d)
{
    struct policyd *p = d->priv;
    p->daemon = d;
    return policyd_core_start(p, &d->loop, d->store, d->cfg);
}

static void pd_drain(struct ent_daemon *d)
{
    policyd_core_drain(d->priv);
}

static size_t pd_inflight(struct ent_daemon *d)
{
    return policyd_core_inflight(d->priv);
}

static void pd_stop(struct ent_daemon *d)
{
    struct policyd *p = d->priv;
    if (p->loop)
        policyd_core_close(p, NULL);
}

static void pd_reload(struct ent_daemon *d)
{
    struct policyd *p = d->priv;
    const struct policyd_cfg *cfg = d->cfg;
    if (!p->admin_on || !cfg->admin_tokens_file)
        return;
    /* SIGHUP: new tokens and a new certificate without a restart. */
    ent_err rc = pd_admin_tokens_load(p, cfg->admin_tokens_file);
    if (cfg->admin_tls && cfg->admin_tls_cert && cfg->admin_tls_key) {
        SSL_CTX *ctx = NULL;
        char err[256] = "";
        if (ent_tls_server_ctx_new(&ctx, cfg->admin_tls_cert, cfg->admin_tls_key, NULL, err,
                                   sizeof(err)) == ENT_OK) {
            ent_http_server_set_tls(&p->admin, ctx);
            SSL_CTX_free(ctx);
        } else {
            ENT_LOG_WARN(NULL, "policyd.admin_tls_reload_failed", ENT_KV_STR("reason", err));
        }
    }
    ENT_LOG_INFO(NULL, "policyd.admin_reloaded", ENT_KV_STR("tokens", ent_err_name(rc)));
}

const struct ent_daemon_ops policyd_daemon = {
    .name = "policyd",
    .default_ops_listen = "127.0.0.1:9102",
    .default_bus_listen = "tcp://127.0.0.1:7102",
    .keys = pd_keys,
    .n_keys = ENT_ARRAY_LEN(pd_keys),
    .cfg_size = sizeof(struct policyd_cfg),
    .priv_size = sizeof(struct policyd),
    .start = pd_start,
    .rpc = policyd_rpc,
    .drain = pd_drain,
    .inflight = pd_inflight,
    .stop = pd_stop,
    .reload = pd_reload,
};
