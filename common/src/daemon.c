/* SPDX-License-Identifier: Apache-2.0 */
/* ent_daemon_main(): the skeleton every daemon runs (see ent/daemon.h for the diagram).
 * This file owns process start-up and shut-down order, signals, the drain state machine,
 * the ops listener (/metrics, /healthz, /readyz) and the Ping RPC. Daemons plug in through
 * struct ent_daemon_ops and never see signals or the ops port.
 *
 * Drain, step by step (each step has one function):
 *
 *   RUNNING ──SIGTERM──▶ NOT_READY ──drain_delay──▶ STOPPED_ACCEPTING ──in-flight==0──▶ CLOSING
 *   on_signal()          (readyz 503)  on_drain_tick()   daemon_stop_accepting() daemon_close_all()
 *                                                    └──drain_grace elapsed──────────┘
 *
 * In NOT_READY everything still serves, so a load balancer has drain_delay to notice the
 * failing readiness before listeners close (Kubernetes needs a few seconds; ./run uses 0). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/daemon.h"
#include "ent/metrics.h"

#define ENT_VERSION   "0.1.0"
#define DRAIN_TICK_MS 25

static ent_gauge daemon_ready = ENT_GAUGE("entitle_ready", "1 when /readyz answers 200");
static ent_gauge daemon_info =
    ENT_GAUGE("entitle_build_info", "Build and daemon identity", "daemon", "version");
static ent_counter rpc_received =
    ENT_COUNTER("entitle_bus_rpc_received_total", "RPCs received by this daemon", "rpc");
static ent_counter rpc_replied = ENT_COUNTER(
    "entitle_bus_rpc_replies_total", "RPC replies sent by this daemon, by status code", "code");
static ent_counter signals_total =
    ENT_COUNTER("entitle_signals_total", "Signals handled", "signal");

static const struct ent_cfg_key common_keys[] = {
    ENT_CFG_KEY("log", "level", ENT_CFG_LOGLEVEL, struct ent_daemon_cfg, log_level, "info", 0, 0,
                "debug, info, warn or error"),
    ENT_CFG_KEY("ops", "listen", ENT_CFG_STR, struct ent_daemon_cfg, ops_listen, NULL, 0, 0,
                "host:port of the ops listener (/metrics, /healthz, /readyz)"),
    ENT_CFG_KEY("bus", "listen", ENT_CFG_STR, struct ent_daemon_cfg, bus_listen, NULL, 0, 0,
                "NNG address this daemon serves RPCs on (tcp:// or tls+tcp://)"),
    ENT_CFG_KEY("bus", "workers", ENT_CFG_INT, struct ent_daemon_cfg, bus_workers, "64", 1, 4096,
                "RPC contexts served concurrently"),
    ENT_CFG_KEY("bus", "tls_ca", ENT_CFG_STR, struct ent_daemon_cfg, bus_tls_ca, NULL, 0, 0,
                "CA file that signs peers' bus certificates (mutual TLS)"),
    ENT_CFG_KEY("bus", "tls_cert", ENT_CFG_STR, struct ent_daemon_cfg, bus_tls_cert, NULL, 0, 0,
                "this daemon's bus certificate (PEM)"),
    ENT_CFG_KEY("bus", "tls_key", ENT_CFG_STR, struct ent_daemon_cfg, bus_tls_key, NULL, 0, 0,
                "this daemon's bus private key (PEM)"),
    ENT_CFG_KEY("store", "backend", ENT_CFG_STR, struct ent_daemon_cfg, store_backend, "sqlite", 0,
                0, "sqlite or mongo"),
    ENT_CFG_KEY("store", "path", ENT_CFG_STR, struct ent_daemon_cfg, store_path, "./var/entitle.db",
                0, 0, "SQLite database file"),
    ENT_CFG_KEY("store", "uri", ENT_CFG_STR, struct ent_daemon_cfg, store_uri, NULL, 0, 0,
                "MongoDB URI (backend mongo)"),
    ENT_CFG_KEY("store", "database", ENT_CFG_STR, struct ent_daemon_cfg, store_database, "entitle",
                0, 0, "MongoDB database name"),
    ENT_CFG_KEY("store", "busy_timeout", ENT_CFG_DURATION, struct ent_daemon_cfg,
                store_busy_timeout, "5s", 0, 600000, "SQLite busy timeout"),
    ENT_CFG_KEY("drain", "delay", ENT_CFG_DURATION, struct ent_daemon_cfg, drain_delay, "0", 0,
                600000, "time /readyz fails before listeners close on SIGTERM"),
    ENT_CFG_KEY("drain", "grace", ENT_CFG_DURATION, struct ent_daemon_cfg, drain_grace, "10s", 0,
                600000, "longest wait for in-flight work after listeners close"),
    ENT_CFG_KEY("daemon", "instance", ENT_CFG_STR, struct ent_daemon_cfg, instance, NULL, 0, 0,
                "instance name in logs and Ping answers (default: host name and pid)"),
};

static void daemon_stop_accepting(struct ent_daemon *d);
static void daemon_close_all(struct ent_daemon *d);

bool ent_daemon_draining(const struct ent_daemon *d)
{
    return atomic_load(&d->draining);
}

const struct ent_bus_tls_cfg *ent_daemon_bus_tls(const struct ent_daemon *d,
                                                 struct ent_bus_tls_cfg *storage)
{
    const struct ent_daemon_cfg *c = d->common;
    if (!c->bus_tls_ca && !c->bus_tls_cert && !c->bus_tls_key)
        return NULL;
    memset(storage, 0, sizeof(*storage));
    storage->ca_file = c->bus_tls_ca;
    storage->cert_file = c->bus_tls_cert;
    storage->key_file = c->bus_tls_key;
    return storage;
}

/* ---- readiness and the ops listener ---------------------------------------------------- */

static bool daemon_ready_detail(struct ent_daemon *d, struct ent_buf *out)
{
    bool store_ok = d->store && ent_store_ping(d->store) == ENT_OK;
    bool draining = ent_daemon_draining(d);
    bool ready = store_ok && d->bus_bound && !draining;
    struct ent_buf extra;
    ent_buf_init(&extra, 64 * 1024);
    if (d->ops->ready && !d->ops->ready(d, &extra))
        ready = false;
    ent_buf_printf(out,
                   "{\"ready\":%s,\"daemon\":\"%s\",\"instance\":\"%s\",\"store\":\"%s\","
                   "\"bus\":\"%s\",\"draining\":%s%s}\n",
                   ready ? "true" : "false", d->ops->name, d->instance, store_ok ? "ok" : "down",
                   d->bus_bound ? "bound" : "unbound", draining ? "true" : "false",
                   extra.data ? extra.data : "");
    ent_buf_free(&extra);
    ent_gauge_set(&daemon_ready, ready ? 1.0 : 0.0);
    return ready;
}

static void ops_respond(struct ent_daemon *d, uint64_t id, int status, const char *ctype,
                        const char *body, size_t len)
{
    const struct ent_http_header h[] = {
        {"Content-Type", 12, ctype, strlen(ctype)},
        {"Cache-Control", 13, "no-store", 8},
    };
    ent_http_respond(&d->ops_http, id, status, h, ENT_ARRAY_LEN(h), body, len);
}

static bool path_is(const struct ent_http_request *r, const char *p)
{
    size_t n = strlen(p);
    return r->path_len == n && memcmp(r->path, p, n) == 0;
}

static void on_ops_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud)
{
    struct ent_daemon *d = ud;
    (void)srv;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        ops_respond(d, req->id, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    if (path_is(req, "/healthz")) {
        ops_respond(d, req->id, 200, "text/plain", "ok\n", 3);
    } else if (path_is(req, "/readyz")) {
        struct ent_buf b;
        ent_buf_init(&b, 256 * 1024);
        bool ready = daemon_ready_detail(d, &b);
        ops_respond(d, req->id, ready ? 200 : 503, "application/json", b.data ? b.data : "", b.len);
        ent_buf_free(&b);
    } else if (path_is(req, "/metrics")) {
        struct ent_buf b;
        ent_buf_init(&b, 64 * 1024 * 1024);
        daemon_ready_detail(d, &(struct ent_buf){0});
        ent_err rc = ent_metrics_render(ent_metrics_default(), &b);
        if (rc == ENT_OK)
            ops_respond(d, req->id, 200, ENT_METRICS_CONTENT_TYPE, b.data ? b.data : "", b.len);
        else
            ops_respond(d, req->id, 500, "text/plain", "metrics unavailable\n", 20);
        ent_buf_free(&b);
    } else {
        ops_respond(d, req->id, 404, "text/plain", "not found\n", 10);
    }
}

/* ---- RPCs ------------------------------------------------------------------------------- */

static const char *rpc_name(const Entitle__V1__Request *req)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &entitle__v1__request__descriptor, (unsigned)req->body_case);
    return f ? f->name : "none";
}

static void daemon_answer_ping(struct ent_daemon *d, uint64_t call_id)
{
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__PingResponse ping = ENTITLE__V1__PING_RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    struct ent_buf scratch = {.limit = 0};
    ping.daemon = (char *)d->ops->name;
    ping.instance = d->instance;
    ping.version = ENT_VERSION;
    ping.ready = daemon_ready_detail(d, &scratch);
    ping.uptime_ms = ent_now_ms() - d->started_ms;
    resp.status = &st;
    resp.body_case = ENTITLE__V1__RESPONSE__BODY_PING;
    resp.ping = &ping;
    ent_daemon_reply(d, call_id, &resp);
}

static void on_bus_request(struct ent_bus_server *s, uint64_t call_id,
                           const Entitle__V1__Request *req, void *ud)
{
    struct ent_daemon *d = ud;
    (void)s;
    d->rpc_inflight++;
    ent_counter_inc(&rpc_received, rpc_name(req));
    if (req->body_case == ENTITLE__V1__REQUEST__BODY_PING) {
        daemon_answer_ping(d, call_id);
        return;
    }
    if (ent_daemon_draining(d) && d->stopping) {
        ent_daemon_reply_error(d, call_id, ENT_ECLOSED, "draining");
        return;
    }
    if (!d->ops->rpc) {
        ent_daemon_reply_error(d, call_id, ENT_EUNSUPPORTED, rpc_name(req));
        return;
    }
    d->ops->rpc(d, call_id, req);
}

ent_err ent_daemon_reply(struct ent_daemon *d, uint64_t call_id, Entitle__V1__Response *resp)
{
    if (d->rpc_inflight)
        d->rpc_inflight--;
    Entitle__V1__Code code = resp->status ? resp->status->code : ENTITLE__V1__CODE__OK;
    ent_counter_inc(&rpc_replied, ent_err_name((ent_err)code));
    return ent_bus_server_reply(&d->bus, call_id, resp);
}

ent_err ent_daemon_reply_error(struct ent_daemon *d, uint64_t call_id, ent_err code,
                               const char *message)
{
    if (d->rpc_inflight)
        d->rpc_inflight--;
    ent_counter_inc(&rpc_replied, ent_err_name(code));
    return ent_bus_server_reply_error(&d->bus, call_id, code, message);
}

/* ---- signals and drain ------------------------------------------------------------------ */

static size_t daemon_inflight(struct ent_daemon *d)
{
    size_t n = d->rpc_inflight;
    if (d->ops->inflight)
        n += d->ops->inflight(d);
    return n;
}

static void on_drain_tick(uv_timer_t *t)
{
    struct ent_daemon *d = ENT_CONTAINER_OF(t, struct ent_daemon, drain_timer);
    uint64_t elapsed = ent_now_ms() - d->drain_started_ms;
    if (!d->stopping) {
        if (elapsed < d->common->drain_delay)
            return;
        daemon_stop_accepting(d);
    }
    size_t left = daemon_inflight(d);
    if (left == 0 || elapsed >= d->common->drain_delay + d->common->drain_grace) {
        if (left)
            ENT_LOG_WARN(NULL, "daemon.drain_timeout", ENT_KV_U64("inflight", left),
                         ENT_KV_U64("grace_ms", d->common->drain_grace));
        else
            ENT_LOG_INFO(NULL, "daemon.drained", ENT_KV_U64("elapsed_ms", elapsed));
        daemon_close_all(d);
    }
}

static void daemon_begin_drain(struct ent_daemon *d, const char *why)
{
    if (atomic_exchange(&d->draining, true))
        return;
    ENT_LOG_INFO(NULL, "daemon.drain", ENT_KV_STR("signal", why),
                 ENT_KV_U64("delay_ms", d->common->drain_delay),
                 ENT_KV_U64("grace_ms", d->common->drain_grace),
                 ENT_KV_U64("inflight", daemon_inflight(d)));
    ent_gauge_set(&daemon_ready, 0.0);
    d->drain_started_ms = ent_now_ms();
    uv_timer_start(&d->drain_timer, on_drain_tick, 0, DRAIN_TICK_MS);
}

static void daemon_reload(struct ent_daemon *d)
{
    char err[512] = "";
    ent_err rc = ent_config_reload(d->cfg, d->ops->cfg_size, d->keys, d->n_keys, d->config_path,
                                   err, sizeof(err));
    /* ent_config_reload applies only keys marked reloadable (daemon_config_keys()); the new
     * level first, so the reload line itself obeys it. */
    ent_log_set_level(d->common->log_level);
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "daemon.reload_failed", ENT_KV_STR("reason", err));
    else
        ENT_LOG_INFO(NULL, "daemon.reload", ENT_KV_STR("result", err[0] ? err : "ok"));
    if (d->ops->reload)
        d->ops->reload(d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct ent_daemon *d = h->data;
    if (signum == SIGHUP) {
        ent_counter_inc(&signals_total, "SIGHUP");
        daemon_reload(d);
        return;
    }
    ent_counter_inc(&signals_total, signum == SIGTERM ? "SIGTERM" : "SIGINT");
    daemon_begin_drain(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void daemon_stop_accepting(struct ent_daemon *d)
{
    d->stopping = true;
    ENT_LOG_INFO(NULL, "daemon.stop_accepting", ENT_KV_U64("inflight", daemon_inflight(d)));
    if (d->ops->drain)
        d->ops->drain(d);
    ent_http_server_stop_accepting(&d->ops_http);
}

static void on_ops_closed(struct ent_http_server *srv)
{
    (void)srv;
}

static void on_bus_closed(struct ent_bus_server *s)
{
    (void)s;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void daemon_close_all(struct ent_daemon *d)
{
    uv_timer_stop(&d->drain_timer);
    if (d->ops->stop)
        d->ops->stop(d);
    ent_bus_server_close(&d->bus, on_bus_closed);
    d->bus_bound = false;
    ent_http_server_close(&d->ops_http, on_ops_closed);
    uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&d->sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&d->sig_hup, on_handle_closed);
}

/* ---- start-up --------------------------------------------------------------------------- */

static void daemon_usage(const struct ent_daemon_ops *ops, FILE *out)
{
    fprintf(out,
            "usage: entitle-%s [--config FILE] [--check-config] [--version]\n"
            "  --config FILE    YAML configuration; every key can be overridden by\n"
            "                   ENTITLE_<SECTION>_<KEY> in the environment\n"
            "  --check-config   validate, print the effective configuration, exit\n",
            ops->name);
}

/* Common keys, then the daemon's, into one heap table; log.level is reloadable. */
static ent_err daemon_config_keys(struct ent_daemon *d)
{
    size_t n = ENT_ARRAY_LEN(common_keys) + d->ops->n_keys;
    d->keys = calloc(n, sizeof(*d->keys));
    if (!d->keys)
        return ENT_ENOMEM;
    memcpy(d->keys, common_keys, sizeof(common_keys));
    if (d->ops->n_keys)
        memcpy(d->keys + ENT_ARRAY_LEN(common_keys), d->ops->keys,
               d->ops->n_keys * sizeof(*d->keys));
    for (size_t i = 0; i < n; i++) {
        struct ent_cfg_key *k = &d->keys[i];
        if (strcmp(k->section, "log") == 0 && strcmp(k->name, "level") == 0)
            k->reloadable = true;
        if (strcmp(k->section, "ops") == 0 && strcmp(k->name, "listen") == 0)
            k->def = d->ops->default_ops_listen;
        if (strcmp(k->section, "bus") == 0 && strcmp(k->name, "listen") == 0)
            k->def = d->ops->default_bus_listen;
    }
    d->n_keys = n;
    return ENT_OK;
}

static int daemon_parse_args(struct ent_daemon *d, int argc, char **argv, bool *check_only)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:hv", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            d->config_path = optarg;
            break;
        case 'k':
            *check_only = true;
            break;
        case 'v':
            printf("entitle-%s %s\n", d->ops->name, ENT_VERSION);
            return 0;
        case 'h': {
            struct ent_buf b;
            ent_buf_init(&b, 1024 * 1024);
            daemon_usage(d->ops, stdout);
            if (ent_config_usage(d->keys, d->n_keys, &b) == ENT_OK && b.data)
                printf("\nconfiguration keys (file section.key, environment variable):\n%s",
                       b.data);
            ent_buf_free(&b);
            return 0;
        }
        default:
            daemon_usage(d->ops, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "entitle-%s: unexpected argument \"%s\"\n", d->ops->name, argv[optind]);
        return 2;
    }
    return -1;
}

static ent_err daemon_open_store(struct ent_daemon *d)
{
    const struct ent_daemon_cfg *c = d->common;
    struct ent_store_cfg sc = {
        .backend = c->store_backend,
        .path = c->store_path,
        .busy_timeout_ms = c->store_busy_timeout,
        .uri = c->store_uri,
        .database = c->store_database,
    };
    char err[512] = "";
    ent_err rc = ent_store_open(&d->store, &sc, err, sizeof(err));
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "daemon.store_open_failed", ENT_KV_STR("backend", c->store_backend),
                      ENT_KV_STR("reason", err[0] ? err : ent_strerror(rc)));
    return rc;
}

static ent_err daemon_bind_bus(struct ent_daemon *d)
{
    struct ent_bus_tls_cfg tls_storage;
    struct ent_bus_server_cfg bc = {
        .listen = d->common->bus_listen,
        .workers = (unsigned)d->common->bus_workers,
        .tls = ent_daemon_bus_tls(d, &tls_storage),
    };
    ent_err rc = ent_bus_server_init(&d->bus, &d->loop, &bc, on_bus_request, d);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "daemon.bus_bind_failed", ENT_KV_STR("listen", bc.listen),
                      ENT_KV_STR("reason", ent_strerror(rc)));
        return rc;
    }
    d->bus_bound = true;
    return ENT_OK;
}

static ent_err daemon_serve_ops(struct ent_daemon *d)
{
    struct ent_http_server_cfg hc = {
        .listen = d->common->ops_listen,
        .max_url = 2048,
        .max_header_bytes = 16 * 1024,
        .max_body = 64 * 1024,
        .max_connections = 256,
        .read_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .write_timeout_ms = 10000,
        .name = "ops",
    };
    ent_err rc = ent_http_server_init(&d->ops_http, &d->loop, &hc, on_ops_request, d);
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "daemon.ops_listen_failed", ENT_KV_STR("listen", hc.listen),
                      ENT_KV_STR("reason", ent_strerror(rc)));
    return rc;
}

static void daemon_watch_signals(struct ent_daemon *d)
{
    uv_signal_t *sigs[] = {&d->sig_term, &d->sig_int, &d->sig_hup};
    int nums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < ENT_ARRAY_LEN(sigs); i++) {
        uv_signal_init(&d->loop, sigs[i]);
        sigs[i]->data = d;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    uv_timer_init(&d->loop, &d->drain_timer);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Closes what a failed start left open so the loop can be closed cleanly. */
static void daemon_close_loop(struct ent_daemon *d)
{
    uv_walk(&d->loop, on_walk_close, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&d->loop);
    if (rc != 0)
        ENT_LOG_ERROR(NULL, "daemon.loop_busy", ENT_KV_STR("reason", uv_strerror(rc)));
}

int ent_daemon_main(const struct ent_daemon_ops *ops, int argc, char **argv)
{
    struct ent_daemon *d = calloc(1, sizeof(*d));
    int status = 1;
    bool check_only = false;
    char err[1024] = "";
    if (!d)
        return 1;
    d->ops = ops;
    d->started_ms = ent_now_ms();
    ent_log_init(ops->name, ENT_LOG_INFO);

    if (daemon_config_keys(d) != ENT_OK)
        goto undo_alloc;
    int rc_args = daemon_parse_args(d, argc, argv, &check_only);
    if (rc_args >= 0) {
        status = rc_args;
        check_only = true; /* nothing to log on the way out */
        goto undo_alloc;
    }
    d->cfg = calloc(1, ops->cfg_size);
    d->priv = ops->priv_size ? calloc(1, ops->priv_size) : NULL;
    if (!d->cfg || (ops->priv_size && !d->priv))
        goto undo_alloc;
    d->common = d->cfg;
    if (ent_config_load(d->cfg, d->keys, d->n_keys, d->config_path, err, sizeof(err)) != ENT_OK) {
        fprintf(stderr, "entitle-%s: configuration error: %s\n", ops->name, err);
        ENT_LOG_ERROR(NULL, "daemon.config_error", ENT_KV_STR("reason", err));
        goto undo_alloc;
    }
    if (check_only) {
        struct ent_buf b;
        ent_buf_init(&b, 1024 * 1024);
        if (ent_config_dump(d->cfg, d->keys, d->n_keys, &b) == ENT_OK && b.data) {
            fputs(b.data, stdout);
            if (b.len && b.data[b.len - 1] != '\n')
                fputc('\n', stdout);
        }
        ent_buf_free(&b);
        status = 0;
        goto undo_cfg;
    }
    ent_log_set_level(d->common->log_level);
    if (d->common->instance && d->common->instance[0]) {
        snprintf(d->instance, sizeof(d->instance), "%s", d->common->instance);
    } else {
        char host[48] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(d->instance, sizeof(d->instance), "%s-%ld", host, (long)getpid());
    }
    ent_gauge_set(&daemon_info, 1.0, ops->name, ENT_VERSION);
    ENT_LOG_INFO(NULL, "daemon.starting", ENT_KV_STR("version", ENT_VERSION),
                 ENT_KV_STR("instance", d->instance),
                 ENT_KV_STR("config", d->config_path ? d->config_path : "(defaults)"));

    if (uv_loop_init(&d->loop) != 0)
        goto undo_cfg;
    if (daemon_open_store(d) != ENT_OK)
        goto undo_loop;
    if (daemon_bind_bus(d) != ENT_OK)
        goto undo_store;
    if (daemon_serve_ops(d) != ENT_OK)
        goto undo_bus;
    daemon_watch_signals(d);
    if (ops->start && ops->start(d) != ENT_OK) {
        ENT_LOG_ERROR(NULL, "daemon.start_failed");
        daemon_close_all(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        goto undo_store;
    }
    ENT_LOG_INFO(NULL, "daemon.ready_to_serve", ENT_KV_STR("ops", d->common->ops_listen),
                 ENT_KV_U64("ops_port", (uint64_t)ent_http_server_port(&d->ops_http)),
                 ENT_KV_STR("bus", d->common->bus_listen));

    uv_run(&d->loop, UV_RUN_DEFAULT);
    status = 0;
    goto undo_store;

undo_bus:
    ent_bus_server_close(&d->bus, on_bus_closed);
    uv_run(&d->loop, UV_RUN_DEFAULT);
undo_store:
    ent_store_close(d->store);
    d->store = NULL;
undo_loop:
    daemon_close_loop(d);
undo_cfg:
    ent_config_free(d->cfg, d->keys, d->n_keys);
undo_alloc:
    if (status == 0 && !check_only)
        ENT_LOG_INFO(NULL, "daemon.exit", ENT_KV_I64("status", status));
    free(d->keys);
    free(d->cfg);
    free(d->priv);
    free(d);
    return status;
}
