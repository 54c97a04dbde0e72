/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's ops table, configuration keys, life cycle (start, drain, stop, SIGHUP),
 * its main-loop bus clients and the worker pings. The device listener shards are in
 * frontend.c, change events in events.c. The gateway is ready when its store is open, its
 * bus is bound, its device listener is up and every configured worker kind answered a Ping
 * within the last three ping intervals: without authd and policyd it cannot serve a single
 * device request, so a load balancer should not send it any. */
#include <stdio.h>
#include <string.h>

#include "ent/metrics.h"
#include "gateway.h"

static ent_gauge worker_up = ENT_GAUGE("entitle_gateway_worker_up",
                                       "1 when the worker kind answered the last Ping", "worker");
static ent_histogram worker_ping_seconds =
    ENT_HISTOGRAM("entitle_gateway_worker_ping_seconds", "Ping round-trip time to workers",
                  ENT_BUCKETS(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5), "worker");
static ent_counter worker_ping_failures = ENT_COUNTER("entitle_gateway_worker_ping_failures_total",
                                                      "Failed worker pings", "worker", "reason");

static const struct ent_cfg_key gw_keys[] = {
    ENT_CFG_KEY("upstream", "authd", ENT_CFG_STRLIST, struct gw_cfg, upstream[GW_WORKER_AUTHD],
                "tcp://127.0.0.1:7101", 0, 0, "authd bus addresses (one dialer each)"),
    ENT_CFG_KEY("upstream", "policyd", ENT_CFG_STRLIST, struct gw_cfg, upstream[GW_WORKER_POLICYD],
                "tcp://127.0.0.1:7102", 0, 0, "policyd bus addresses"),
    ENT_CFG_KEY("upstream", "notifyd", ENT_CFG_STRLIST, struct gw_cfg, upstream[GW_WORKER_NOTIFYD],
                "tcp://127.0.0.1:7103", 0, 0, "notifyd bus addresses"),
    ENT_CFG_KEY("upstream", "max_inflight", ENT_CFG_INT, struct gw_cfg, upstream_max_inflight,
                "256", 1, 65536, "RPCs in flight per upstream socket before 503"),
    ENT_CFG_KEY("upstream", "timeout", ENT_CFG_DURATION, struct gw_cfg, upstream_timeout, "2s", 1,
                600000, "deadline of one upstream RPC"),
    ENT_CFG_KEY("upstream", "ping_interval", ENT_CFG_DURATION, struct gw_cfg, ping_interval, "2s",
                10, 600000, "how often each worker kind is pinged"),
    ENT_CFG_KEY("upstream", "retry_after", ENT_CFG_INT, struct gw_cfg, retry_after, "5", 1, 3600,
                "Retry-After seconds on 503 when a worker is down, slow or saturated"),
    ENT_CFG_KEY("device", "listen", ENT_CFG_STR, struct gw_cfg, device_listen, "127.0.0.1:8443", 0,
                0, "device-facing HTTPS listener (host:port; port 0 picks one)"),
    ENT_CFG_KEY(
        "device", "tls", ENT_CFG_BOOL, struct gw_cfg, device_tls, "true", 0, 0,
        "TLS on the device listener (false only behind a TLS-terminating proxy or in tests)"),
    ENT_CFG_KEY("device", "tls_cert", ENT_CFG_STR, struct gw_cfg, device_tls_cert, NULL, 0, 0,
                "PEM certificate chain of the device listener (reloaded on SIGHUP)"),
    ENT_CFG_KEY("device", "tls_key", ENT_CFG_STR, struct gw_cfg, device_tls_key, NULL, 0, 0,
                "PEM private key of the device listener (reloaded on SIGHUP)"),
    ENT_CFG_KEY("device", "path", ENT_CFG_STR, struct gw_cfg, device_path, "/", 0, 0,
                "path of the entitlement endpoint"),
    ENT_CFG_KEY("device", "loops", ENT_CFG_INT, struct gw_cfg, device_loops, "0", 0, 256,
                "listener loop threads sharing the port (SO_REUSEPORT); 0 = number of cores"),
    ENT_CFG_KEY("device", "max_body", ENT_CFG_SIZE, struct gw_cfg, device_max_body, "16k", 256,
                1048576, "largest request body (413 beyond)"),
    ENT_CFG_KEY("device", "max_url", ENT_CFG_SIZE, struct gw_cfg, device_max_url, "8k", 256, 65536,
                "longest request target (414 beyond)"),
    ENT_CFG_KEY("device", "max_headers", ENT_CFG_SIZE, struct gw_cfg, device_max_headers, "16k",
                1024, 262144, "total header bytes (431 beyond)"),
    ENT_CFG_KEY("device", "max_connections", ENT_CFG_INT, struct gw_cfg, device_max_connections,
                "10000", 1, 1000000, "open connections per loop"),
    ENT_CFG_KEY("device", "read_timeout", ENT_CFG_DURATION, struct gw_cfg, device_read_timeout,
                "10s", 100, 600000, "TLS handshake and a started request must complete within"),
    ENT_CFG_KEY("device", "idle_timeout", ENT_CFG_DURATION, struct gw_cfg, device_idle_timeout,
                "60s", 100, 3600000, "keep-alive idle time"),
    ENT_CFG_KEY("device", "write_timeout", ENT_CFG_DURATION, struct gw_cfg, device_write_timeout,
                "10s", 100, 600000, "a response must drain within"),
    ENT_CFG_KEY("device", "plmn_header", ENT_CFG_STR, struct gw_cfg, device_plmn_header, NULL, 0, 0,
                "trusted request header carrying the visited PLMN (MCC+MNC); unset: none"),
    ENT_CFG_KEY("document", "vers_validity", ENT_CFG_INT, struct gw_cfg, vers_validity, "172800", 0,
                31536000, "VERS validity (seconds) in every document"),
    ENT_CFG_KEY("cache", "decisions", ENT_CFG_INT, struct gw_cfg, cache_decisions, "100000", 0,
                10000000, "decision cache entries (0 disables)"),
    ENT_CFG_KEY("cache", "decision_bytes", ENT_CFG_SIZE, struct gw_cfg, cache_decision_bytes,
                "256m", 4096, 68719476736LL, "decision cache memory bound"),
    ENT_CFG_KEY("cache", "decision_ttl", ENT_CFG_DURATION, struct gw_cfg, cache_decision_ttl, "10m",
                1, 86400000, "decision cache entry lifetime"),
    ENT_CFG_KEY("cache", "tokens", ENT_CFG_INT, struct gw_cfg, cache_tokens, "100000", 0, 10000000,
                "positive token cache entries (0 disables)"),
    ENT_CFG_KEY("cache", "token_ttl", ENT_CFG_DURATION, struct gw_cfg, cache_token_ttl, "60s", 1,
                86400000, "token cache entry lifetime (bounds staleness if an event is lost)"),
    ENT_CFG_KEY("ratelimit", "enabled", ENT_CFG_BOOL, struct gw_cfg, ratelimit_enabled, "true", 0,
                0, "per client IP and per subscriber token buckets (429 + Retry-After)"),
    ENT_CFG_KEY("ratelimit", "ip_rate", ENT_CFG_INT, struct gw_cfg, ratelimit_ip_rate, "50", 1,
                10000000, "requests per second per client IP"),
    ENT_CFG_KEY("ratelimit", "ip_burst", ENT_CFG_INT, struct gw_cfg, ratelimit_ip_burst, "200", 1,
                10000000, "burst per client IP"),
    ENT_CFG_KEY("ratelimit", "subscriber_rate", ENT_CFG_INT, struct gw_cfg,
                ratelimit_subscriber_rate, "2", 1, 10000000, "requests per second per subscriber"),
    ENT_CFG_KEY("ratelimit", "subscriber_burst", ENT_CFG_INT, struct gw_cfg,
                ratelimit_subscriber_burst, "30", 1, 10000000, "burst per subscriber"),
    ENT_CFG_KEY("events", "policyd", ENT_CFG_STRLIST, struct gw_cfg, events_policyd,
                "tcp://127.0.0.1:7112", 0, 0,
                "policyd change-event publishers (empty: no cache invalidation by events; keep "
                "cache TTLs short)"),
};

const char *gw_worker_name(enum gw_worker w)
{
    static const char *names[GW_WORKER_COUNT] = {"authd", "policyd", "notifyd"};
    return w < GW_WORKER_COUNT ? names[w] : "unknown";
}

static struct gw *gw_of(struct ent_daemon *d)
{
    return d->priv;
}

static struct gw_cfg *gw_cfg_of(struct ent_daemon *d)
{
    return d->cfg;
}

static void on_ping_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct gw_upstream *u = ud;
    const char *name = gw_worker_name(u->kind);
    u->ping_outstanding = false;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    if (status == ENT_OK && resp->body_case != ENTITLE__V1__RESPONSE__BODY_PING)
        status = ENT_EPROTO;
    if (status == ENT_OK) {
        uint64_t rtt_ns = ent_now_ns() - u->ping_sent_ns;
        u->last_rtt_us = rtt_ns / 1000;
        u->last_ok_ms = ent_now_ms();
        if (!u->reachable)
            ENT_LOG_INFO(NULL, "gateway.worker_up", ENT_KV_STR("worker", name),
                         ENT_KV_STR("instance", resp->ping->instance));
        u->reachable = true;
        snprintf(u->peer_instance, sizeof(u->peer_instance), "%s", resp->ping->instance);
        u->last_error[0] = '\0';
        ent_gauge_set(&worker_up, 1.0, name);
        ent_histogram_observe(&worker_ping_seconds, (double)rtt_ns / 1e9, name);
    } else {
        if (u->reachable)
            ENT_LOG_WARN(NULL, "gateway.worker_down", ENT_KV_STR("worker", name),
                         ENT_KV_STR("reason", ent_err_name(status)));
        u->reachable = false;
        snprintf(u->last_error, sizeof(u->last_error), "%s", ent_err_name(status));
        ent_gauge_set(&worker_up, 0.0, name);
        ent_counter_inc(&worker_ping_failures, name, ent_err_name(status));
    }
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

static void gw_ping_workers(struct gw *g)
{
    struct gw_cfg *cfg = gw_cfg_of(g->daemon);
    for (int i = 0; i < GW_WORKER_COUNT; i++) {
        struct gw_upstream *u = &g->up[i];
        if (!u->configured || u->ping_outstanding)
            continue;
        Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
        Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
        ping.from = (char *)"gateway";
        req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
        req.ping = &ping;
        u->ping_sent_ns = ent_now_ns();
        ent_err rc = ent_bus_call(&u->client, &req, cfg->upstream_timeout, NULL, on_ping_reply, u);
        if (rc != ENT_OK) {
            ent_counter_inc(&worker_ping_failures, gw_worker_name(u->kind), ent_err_name(rc));
            continue;
        }
        u->ping_outstanding = true;
    }
}

static void on_ping_timer(uv_timer_t *t)
{
    struct gw *g = t->data;
    gw_ping_workers(g);
    gw_events_check_links(g);
}

static ent_err gw_start(struct ent_daemon *d)
{
    struct gw *g = gw_of(d);
    struct gw_cfg *cfg = gw_cfg_of(d);
    struct ent_bus_tls_cfg tls_storage;
    const struct ent_bus_tls_cfg *tls = ent_daemon_bus_tls(d, &tls_storage);
    ent_err rc;
    g->daemon = d;
    g->cfg = cfg;
    for (int i = 0; i < GW_WORKER_COUNT; i++) {
        struct gw_upstream *u = &g->up[i];
        u->kind = (enum gw_worker)i;
        if (cfg->upstream[i].n == 0)
            continue;
        struct ent_bus_client_cfg bc = {
            .addrs = (const char *const *)cfg->upstream[i].items,
            .n_addrs = cfg->upstream[i].n,
            .max_inflight = (unsigned)cfg->upstream_max_inflight,
            .tls = tls,
            .caller = "gateway",
        };
        rc = ent_bus_client_init(&u->client, &d->loop, &bc);
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "gateway.upstream_failed", ENT_KV_STR("worker", gw_worker_name(i)),
                          ENT_KV_STR("reason", ent_strerror(rc)));
            return rc;
        }
        u->configured = true;
        ent_gauge_set(&worker_up, 0.0, gw_worker_name(i));
    }
    uv_timer_init(&d->loop, &g->ping_timer);
    g->ping_timer_open = true;
    g->ping_timer.data = g;
    uv_timer_start(&g->ping_timer, on_ping_timer, 0, cfg->ping_interval);

    rc = gw_cache_init(&g->decisions, "decision", (size_t)cfg->cache_decisions,
                       (size_t)cfg->cache_decision_bytes, cfg->cache_decision_ttl, true);
    if (rc != ENT_OK)
        return rc;
    rc = gw_cache_init(&g->tokens, "token", (size_t)cfg->cache_tokens,
                       (size_t)cfg->cache_tokens * 512 + 4096, cfg->cache_token_ttl, false);
    if (rc != ENT_OK) {
        gw_cache_fini(&g->decisions);
        return rc;
    }
    g->caches_ready = true;
    double on = cfg->ratelimit_enabled ? 1.0 : 0.0;
    rc = gw_ratelimit_init(&g->rl_ip, 65536, on * (double)cfg->ratelimit_ip_rate,
                           (double)cfg->ratelimit_ip_burst);
    if (rc == ENT_OK)
        rc = gw_ratelimit_init(&g->rl_sub, 262144, on * (double)cfg->ratelimit_subscriber_rate,
                               (double)cfg->ratelimit_subscriber_burst);
    g->rl_ready = true;
    if (rc != ENT_OK)
        return rc;
    rc = gw_events_start(g);
    if (rc != ENT_OK)
        return rc;
    return gw_frontend_start(g);
}

static bool gw_ready(struct ent_daemon *d, struct ent_buf *detail)
{
    struct gw *g = gw_of(d);
    struct gw_cfg *cfg = gw_cfg_of(d);
    uint64_t now = ent_now_ms();
    bool ready = true;
    ent_buf_append_str(detail, ",\"workers\":{");
    for (int i = 0; i < GW_WORKER_COUNT; i++) {
        struct gw_upstream *u = &g->up[i];
        bool fresh = u->reachable && now - u->last_ok_ms <= 3 * cfg->ping_interval;
        if (u->configured && !fresh)
            ready = false;
        ent_buf_printf(detail,
                       "%s\"%s\":{\"configured\":%s,\"ok\":%s,\"rtt_us\":%llu,\"instance\":\"%s\","
                       "\"error\":\"%s\"}",
                       i ? "," : "", gw_worker_name(i), u->configured ? "true" : "false",
                       fresh ? "true" : "false", (unsigned long long)u->last_rtt_us,
                       u->peer_instance, u->last_error);
    }
    ent_buf_append_str(detail, "}");
    ent_buf_printf(detail, ",\"device\":{\"port\":%d,\"loops\":%zu,\"tls\":%s}", g->device_port,
                   g->n_shards, g->tls ? "true" : "false");
    if (g->device_port <= 0)
        ready = false;
    /* Not a readiness condition: with a publisher missing the caches are bypassed and every
     * answer is still right, only dearer. */
    size_t links_up = 0, links_total = 0;
    if (g->sub_open)
        ent_bus_sub_links(&g->sub, &links_up, &links_total);
    ent_buf_printf(detail, ",\"events\":{\"publishers\":%zu,\"connected\":%zu,\"caches\":\"%s\"}",
                   links_total, links_up, atomic_load(&g->caches_trusted) ? "trusted" : "bypassed");
    return ready;
}

static size_t gw_inflight(struct ent_daemon *d)
{
    struct gw *g = gw_of(d);
    size_t n = 0;
    for (int i = 0; i < GW_WORKER_COUNT; i++)
        if (g->up[i].configured)
            n += ent_bus_client_inflight(&g->up[i].client);
    return n + gw_frontend_inflight(g);
}

static void gw_drain(struct ent_daemon *d)
{
    gw_frontend_drain(gw_of(d));
}

static void gw_reload(struct ent_daemon *d)
{
    gw_frontend_reload_tls(gw_of(d));
}

static void on_gw_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_upstream_closed(struct ent_bus_client *c)
{
    (void)c;
}

static void gw_stop(struct ent_daemon *d)
{
    struct gw *g = gw_of(d);
    if (g->daemon == NULL)
        return; /* start never ran */
    gw_frontend_stop(g);
    gw_events_stop(g);
    if (g->ping_timer_open) {
        uv_timer_stop(&g->ping_timer);
        uv_close((uv_handle_t *)&g->ping_timer, on_gw_handle_closed);
        g->ping_timer_open = false;
    }
    for (int i = 0; i < GW_WORKER_COUNT; i++)
        if (g->up[i].configured) {
            ent_bus_client_close(&g->up[i].client, on_upstream_closed);
            g->up[i].configured = false;
        }
    /* The shards are joined: nothing uses the shared state any more. */
    if (g->caches_ready) {
        gw_cache_fini(&g->decisions);
        gw_cache_fini(&g->tokens);
        g->caches_ready = false;
    }
    if (g->rl_ready) {
        gw_ratelimit_fini(&g->rl_ip);
        gw_ratelimit_fini(&g->rl_sub);
        g->rl_ready = false;
    }
    if (g->tls) {
        SSL_CTX_free(g->tls);
        g->tls = NULL;
    }
}

const struct ent_daemon_ops gw_daemon = {
    .name = "gateway",
    .default_ops_listen = "127.0.0.1:9100",
    .default_bus_listen = "tcp://127.0.0.1:7100",
    .keys = gw_keys,
    .n_keys = ENT_ARRAY_LEN(gw_keys),
    .cfg_size = sizeof(struct gw_cfg),
    .priv_size = sizeof(struct gw),
    .start = gw_start,
    .ready = gw_ready,
    .inflight = gw_inflight,
    .drain = gw_drain,
    .stop = gw_stop,
    .reload = gw_reload,
};
