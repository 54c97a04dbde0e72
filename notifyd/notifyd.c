/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd's configuration table and ops table for the shared daemon skeleton
 * (common/src/daemon.c): start opens the HTTP client, the channels whose credentials are set
 * (a channel without them is off), the bus client to policyd (registration removal) and the
 * outbox worker; drain stops claiming; stop aborts what is in flight and closes everything. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ent/metrics.h"
#include "notifyd.h"

static ent_gauge channel_enabled = ENT_GAUGE(
    "entitle_notifyd_channel_enabled", "1 when the delivery channel is configured", "channel");

#define K(sect, nm, typ, field, dflt, mn, mx, hlp)                                                 \
    ENT_CFG_KEY(sect, nm, typ, struct notifyd_cfg, field, dflt, mn, mx, hlp)
#define KS(sect, nm, field, hlp)                                                                   \
    ENT_CFG_KEY_EX(sect, nm, ENT_CFG_STR, struct notifyd_cfg, field, NULL, 0, 0, true, false, hlp)

static const struct ent_cfg_key notifyd_keys[] = {
    K("fcm", "project_id", ENT_CFG_STR, fcm_project_id, NULL, 0, 0, "Firebase project id"),
    K("fcm", "credentials_file", ENT_CFG_STR, fcm_credentials_file, NULL, 0, 0,
      "service-account JSON key file; unset: FCM is off"),
    K("fcm", "endpoint", ENT_CFG_STR, fcm_endpoint, "https://fcm.googleapis.com", 0, 0,
      "FCM base URL; messages go to <endpoint>/v1/projects/<project_id>/messages:send"),
    K("fcm", "ca_file", ENT_CFG_STR, fcm_ca_file, NULL, 0, 0,
      "PEM CA bundle for FCM and its token endpoint (default: system store)"),
    K("apns", "endpoint", ENT_CFG_STR, apns_endpoint, "https://api.push.apple.com", 0, 0,
      "APNs base URL (sandbox: https://api.sandbox.push.apple.com)"),
    K("apns", "key_file", ENT_CFG_STR, apns_key_file, NULL, 0, 0,
      "APNs auth key (.p8); unset: APNs is off"),
    K("apns", "key_id", ENT_CFG_STR, apns_key_id, NULL, 0, 0, "APNs key id (JWT kid)"),
    K("apns", "team_id", ENT_CFG_STR, apns_team_id, NULL, 0, 0, "Apple team id (JWT iss)"),
    K("apns", "topic", ENT_CFG_STR, apns_topic, NULL, 0, 0, "apns-topic: the app's bundle id"),
    K("apns", "ca_file", ENT_CFG_STR, apns_ca_file, NULL, 0, 0,
      "PEM CA bundle for APNs (default: system store)"),
    K("sms", "endpoint", ENT_CFG_STR, sms_endpoint, NULL, 0, 0,
      "SMS gateway URL (HTTP POST, JSON); unset: SMS fallback is off"),
    KS("sms", "auth_header", sms_auth_header,
       "header sent to the SMS gateway: \"Name: value\" or a value for Authorization"),
    K("sms", "template", ENT_CFG_STR, sms_template, NULL, 0, 0,
      "JSON body with ${msisdn} ${text} ${imsi} ${app_ids} ${port} (default: "
      "to/port/udh_iei/text)"),
    K("sms", "ca_file", ENT_CFG_STR, sms_ca_file, NULL, 0, 0, "PEM CA bundle for the SMS gateway"),
    K("outbox", "max_attempts", ENT_CFG_INT, outbox_max_attempts, "8", 1, 1000,
      "deliveries tried before a push becomes a dead letter"),
    K("outbox", "lease", ENT_CFG_DURATION, outbox_lease, "30s", 1000, 3600000,
      "how long a claimed push is ours; after a crash it is redelivered then"),
    K("outbox", "backoff_min", ENT_CFG_DURATION, outbox_backoff_min, "1s", 1, 3600000,
      "first retry delay (doubles per attempt, with jitter)"),
    K("outbox", "backoff_max", ENT_CFG_DURATION, outbox_backoff_max, "10m", 1, 86400000,
      "longest retry delay"),
    K("outbox", "poll_interval", ENT_CFG_DURATION, outbox_poll_interval, "250ms", 10, 60000,
      "how often the outbox is polled for due pushes (other replicas' and retries)"),
    K("outbox", "batch", ENT_CFG_INT, outbox_batch, "64", 1, 1000, "pushes claimed per poll"),
    K("outbox", "concurrency", ENT_CFG_INT, outbox_concurrency, "256", 1, 10000,
      "deliveries in flight at once"),
    K("outbox", "idempotency_ttl", ENT_CFG_DURATION, outbox_idempotency_ttl, "10m", 1000, 86400000,
      "how long a push request's idempotency key is remembered"),
    K("notify", "http_timeout", ENT_CFG_DURATION, notify_http_timeout, "10s", 100, 600000,
      "deadline of one request to FCM, APNs, the token endpoint or the SMS gateway"),
    K("notify", "max_host_connections", ENT_CFG_INT, notify_max_host_connections, "4", 1, 1000,
      "connections per provider host (HTTP/2 multiplexes on each)"),
    K("notify", "policyd", ENT_CFG_STRLIST, notify_policyd, "tcp://127.0.0.1:7102", 0, 0,
      "policyd bus addresses, told to drop registrations whose token is invalid (empty: off)"),
    K("notify", "policyd_timeout", ENT_CFG_DURATION, notify_policyd_timeout, "2s", 10, 600000,
      "deadline of a registration-removal RPC"),
};

static struct notifyd *nd_of(struct ent_daemon *d)
{
    return d->priv;
}

static bool is_set(const char *s)
{
    return s && s[0];
}

static ent_err notifyd_open_channels(struct notifyd *n)
{
    struct notifyd_cfg *c = n->cfg;
    char err[512] = "";
    ent_err rc = ENT_OK;
    if (is_set(c->fcm_credentials_file)) {
        rc = notifyd_fcm_init(&n->fcm, &n->http, c->fcm_project_id, c->fcm_credentials_file,
                              c->fcm_endpoint, c->fcm_ca_file, c->notify_http_timeout, err,
                              sizeof(err));
        if (rc != ENT_OK)
            goto fail;
        n->fcm_on = true;
    }
    if (is_set(c->apns_key_file)) {
        rc = notifyd_apns_init(&n->apns, &n->http, c->apns_endpoint, c->apns_key_file,
                               c->apns_key_id, c->apns_team_id, c->apns_topic, c->apns_ca_file,
                               c->notify_http_timeout, err, sizeof(err));
        if (rc != ENT_OK)
            goto fail;
        n->apns_on = true;
    }
    if (is_set(c->sms_endpoint)) {
        rc = notifyd_sms_init(&n->sms, &n->http, c->sms_endpoint, c->sms_auth_header,
                              c->sms_template, c->sms_ca_file, c->notify_http_timeout, err,
                              sizeof(err));
        if (rc != ENT_OK)
            goto fail;
        n->sms_on = true;
    }
    ent_gauge_set(&channel_enabled, n->fcm_on ? 1.0 : 0.0, "fcm");
    ent_gauge_set(&channel_enabled, n->apns_on ? 1.0 : 0.0, "apns");
    ent_gauge_set(&channel_enabled, n->sms_on ? 1.0 : 0.0, "sms");
    ENT_LOG_INFO(NULL, "notifyd.channels", ENT_KV_BOOL("fcm", n->fcm_on),
                 ENT_KV_BOOL("apns", n->apns_on), ENT_KV_BOOL("sms", n->sms_on));
    return ENT_OK;
fail:
    fprintf(stderr, "entitle-notifyd: configuration error: %s\n", err);
    ENT_LOG_ERROR(NULL, "notifyd.config_error", ENT_KV_STR("reason", err));
    return rc;
}

static void notifyd_free_channels(struct notifyd *n)
{
    if (n->fcm_on)
        notifyd_fcm_free(&n->fcm);
    if (n->apns_on)
        notifyd_apns_free(&n->apns);
    if (n->sms_on)
        notifyd_sms_free(&n->sms);
    n->fcm_on = n->apns_on = n->sms_on = false;
}

static void on_http_closed(struct notifyd_http *h)
{
    (void)h;
}

static void on_policyd_closed(struct ent_bus_client *c)
{
    (void)c;
}

static ent_err notifyd_start(struct ent_daemon *d)
{
    struct notifyd *n = nd_of(d);
    n->d = d;
    n->cfg = d->cfg;
    n->rng = ent_now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    struct notifyd_cfg *c = n->cfg;
    if (c->outbox_lease <= c->notify_http_timeout * 2) {
        /* A lease shorter than a delivery would let another replica take a push that is still
         * being sent: a duplicate in the normal case. */
        fprintf(stderr, "entitle-notifyd: configuration error: outbox.lease must exceed twice "
                        "notify.http_timeout\n");
        ENT_LOG_ERROR(NULL, "notifyd.config_error", ENT_KV_STR("reason", "outbox.lease too short"));
        return ENT_ECONFIG;
    }
    if (c->outbox_backoff_max < c->outbox_backoff_min) {
        fprintf(stderr, "entitle-notifyd: configuration error: outbox.backoff_max < backoff_min\n");
        return ENT_ECONFIG;
    }
    ent_err rc = notifyd_http_init(&n->http, &d->loop, (long)c->notify_max_host_connections);
    if (rc != ENT_OK)
        return rc;
    n->http_open = true;
    rc = notifyd_open_channels(n);
    if (rc != ENT_OK)
        return rc;
    if (c->notify_policyd.n > 0) {
        struct ent_bus_tls_cfg tls_storage;
        struct ent_bus_client_cfg bc = {
            .addrs = (const char *const *)c->notify_policyd.items,
            .n_addrs = c->notify_policyd.n,
            .max_inflight = 64,
            .tls = ent_daemon_bus_tls(d, &tls_storage),
            .caller = "notifyd",
        };
        rc = ent_bus_client_init(&n->policyd, &d->loop, &bc);
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "notifyd.policyd_client_failed",
                          ENT_KV_STR("reason", ent_strerror(rc)));
            return rc;
        }
        n->policyd_on = true;
    }
    return notifyd_outbox_start(n);
}

static void notifyd_rpc(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req)
{
    struct notifyd *n = nd_of(d);
    if (req->body_case == ENTITLE__V1__REQUEST__BODY_PUSH) {
        notifyd_rpc_push(n, call_id, req);
        return;
    }
    ent_daemon_reply_error(d, call_id, ENT_EUNSUPPORTED, "notifyd serves push and ping");
}

static bool notifyd_ready(struct ent_daemon *d, struct ent_buf *detail)
{
    struct notifyd *n = nd_of(d);
    ent_buf_printf(detail, ",\"channels\":{\"fcm\":%s,\"apns\":%s,\"sms\":%s},\"deliveries\":%zu",
                   n->fcm_on ? "true" : "false", n->apns_on ? "true" : "false",
                   n->sms_on ? "true" : "false", n->inflight);
    return n->http_open;
}

static void notifyd_drain(struct ent_daemon *d)
{
    notifyd_outbox_drain(nd_of(d));
}

static size_t notifyd_inflight(struct ent_daemon *d)
{
    struct notifyd *n = nd_of(d);
    return n->inflight + n->policyd_inflight;
}

static void notifyd_stop(struct ent_daemon *d)
{
    struct notifyd *n = nd_of(d);
    n->stopping = true;
    notifyd_outbox_stop(n);
    if (n->http_open) {
        /* Aborts transfers: their deliveries end without touching their rows. */
        notifyd_http_close(&n->http, on_http_closed);
        n->http_open = false;
    }
    notifyd_free_channels(n);
    if (n->policyd_on) {
        ent_bus_client_close(&n->policyd, on_policyd_closed);
        n->policyd_on = false;
    }
}

const struct ent_daemon_ops notifyd_daemon = {
    .name = "notifyd",
    .default_ops_listen = "127.0.0.1:9103",
    .default_bus_listen = "tcp://127.0.0.1:7103",
    .keys = notifyd_keys,
    .n_keys = ENT_ARRAY_LEN(notifyd_keys),
    .cfg_size = sizeof(struct notifyd_cfg),
    .priv_size = sizeof(struct notifyd),
    .start = notifyd_start,
    .rpc = notifyd_rpc,
    .ready = notifyd_ready,
    .drain = notifyd_drain,
    .inflight = notifyd_inflight,
    .stop = notifyd_stop,
};
