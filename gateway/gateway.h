/* SPDX-License-Identifier: Apache-2.0 */
/* gateway: the device-facing TS.43 front end. This header owns the gateway's configuration
 * (its key table is in gateway.c), the process-wide state every loop thread shares (caches,
 * rate limiters, TLS context) and the per-loop "shard" that serves devices:
 *
 *   main loop (skeleton): ops, bus server, worker pings, policyd change events (events.c),
 *                         SIGHUP certificate reload, drain
 *   shard 0..N-1 (frontend.c): one thread + uv loop each, one HTTPS listener on the same
 *                         port (SO_REUSEPORT), own bus clients to authd and policyd
 *
 * The request paths (DESIGN.md §2) live in frontend.c, parsing in request.c, documents in
 * render.c, the caches in cache.c, rate limits in ratelimit.c. */
#ifndef ENTITLE_GATEWAY_H
#define ENTITLE_GATEWAY_H

#include <stdatomic.h>

#include "cache.h"
#include "ent/daemon.h"
#include "ratelimit.h"

enum gw_worker { GW_WORKER_AUTHD, GW_WORKER_POLICYD, GW_WORKER_NOTIFYD, GW_WORKER_COUNT };

struct gw_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
    struct ent_strlist upstream[GW_WORKER_COUNT];
    int64_t upstream_max_inflight;
    uint64_t upstream_timeout;
    uint64_t ping_interval;
    int64_t retry_after;
    /* device listener */
    char *device_listen;
    bool device_tls;
    char *device_tls_cert;
    char *device_tls_key;
    char *device_path;
    int64_t device_loops;
    uint64_t device_max_body;
    uint64_t device_max_url;
    uint64_t device_max_headers;
    int64_t device_max_connections;
    uint64_t device_read_timeout;
    uint64_t device_idle_timeout;
    uint64_t device_write_timeout;
    char *device_plmn_header;
    /* documents */
    int64_t vers_validity;
    /* caches */
    int64_t cache_decisions;
    uint64_t cache_decision_bytes;
    uint64_t cache_decision_ttl;
    int64_t cache_tokens;
    uint64_t cache_token_ttl;
    /* rate limits */
    bool ratelimit_enabled;
    int64_t ratelimit_ip_rate;
    int64_t ratelimit_ip_burst;
    int64_t ratelimit_subscriber_rate;
    int64_t ratelimit_subscriber_burst;
    /* events */
    struct ent_strlist events_policyd;
};

struct gw_upstream {
    enum gw_worker kind;
    struct ent_bus_client client;
    bool configured;
    bool reachable;
    bool ping_outstanding;
    uint64_t last_ok_ms;
    uint64_t last_rtt_us;
    uint64_t ping_sent_ns;
    char last_error[64];
    char peer_instance[64];
};

struct gw_shard;

struct gw {
    struct ent_daemon *daemon;
    struct gw_cfg *cfg;
    struct gw_upstream up[GW_WORKER_COUNT];
    uv_timer_t ping_timer;
    bool ping_timer_open;
    unsigned closing;
    /* shared by the shards */
    struct gw_cache decisions;
    struct gw_cache tokens;
    bool caches_ready;
    struct gw_ratelimit rl_ip;
    struct gw_ratelimit rl_sub;
    bool rl_ready;
    SSL_CTX *tls; /* current device TLS context (main loop owns this reference) */
    /* shards */
    struct gw_shard *shards;
    size_t n_shards;
    int device_port;
    /* events */
    struct ent_bus_sub sub;
    bool sub_open;
    atomic_uint_fast64_t events_seen;
    atomic_bool caches_trusted; /* see events.c "Trust" */
};

extern const struct ent_daemon_ops gw_daemon;

const char *gw_worker_name(enum gw_worker w);

/* ---- frontend.c --------------------------------------------------------------------- */

/* Starts cfg->device_loops shard threads (0: one per core), each listening on
 * cfg->device_listen. Main loop thread, from gw_start. Errors: the listener's (address in
 * use, bad address), ENT_ECONFIG (TLS files), ENT_ENOMEM; shards already started are
 * stopped again before returning. */
ent_err gw_frontend_start(struct gw *g);
/* Drain: every shard stops accepting (asynchronously). Main loop thread. */
void gw_frontend_drain(struct gw *g);
/* Device requests in flight over all shards. Any thread. */
size_t gw_frontend_inflight(struct gw *g);
/* Closes every shard and joins its thread (blocks until each loop has closed). */
void gw_frontend_stop(struct gw *g);
/* SIGHUP: rebuilds the TLS context from the configured files and hands it to every shard
 * (new connections use it). A failed reload keeps the old context. Main loop thread. */
void gw_frontend_reload_tls(struct gw *g);

/* ---- events.c ----------------------------------------------------------------------- */

/* Subscribes to policyd's change events (cfg->events_policyd; empty list: off). Main loop. */
ent_err gw_events_start(struct gw *g);
void gw_events_stop(struct gw *g);
/* Applies one change event to the caches (exposed for tests). Any thread. */
void gw_events_apply(struct gw *g, int kind, const char *subscriber_id, bool gap);
/* Recomputes whether the caches may be used (every event publisher connected) and bypasses
 * or trusts them accordingly; runs on every link change and on the ping timer (a DNS
 * re-resolution may add a publisher before it connects). Main loop. */
void gw_events_check_links(struct gw *g);

#endif
