/* SPDX-License-Identifier: Apache-2.0 */
/* gateway: the device-facing TS.43 front end (issue: gateway). This file set so far owns
 * the upstream bus clients to the workers (authd, policyd, notifyd) and their health: a
 * Ping to every worker kind each ping_interval, shown in /readyz and as metrics. */
#ifndef ENTITLE_GATEWAY_H
#define ENTITLE_GATEWAY_H

#include "ent/daemon.h"

enum gw_worker { GW_WORKER_AUTHD, GW_WORKER_POLICYD, GW_WORKER_NOTIFYD, GW_WORKER_COUNT };

struct gw_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
    struct ent_strlist upstream[GW_WORKER_COUNT];
    int64_t upstream_max_inflight;
    uint64_t upstream_timeout;
    uint64_t ping_interval;
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

struct gw {
    struct ent_daemon *daemon;
    struct gw_upstream up[GW_WORKER_COUNT];
    uv_timer_t ping_timer;
    unsigned closing;
};

extern const struct ent_daemon_ops gw_daemon;

const char *gw_worker_name(enum gw_worker w);

#endif
