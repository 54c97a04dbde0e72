/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd: push-triggered entitlement refresh (PROTOCOL §9). policyd asks with the `push`
 * RPC (rpc.c); the request is acknowledged only once it is in the store's outbox; the outbox
 * worker (outbox.c) claims rows with a lease, delivers them through FCM (fcm.c + oauth.c),
 * APNs (apns.c) or the SMS gateway (sms.c), all on one libcurl multi handle driven by the
 * loop (http_client.c), and acks, retries with backoff, falls back to SMS or dead-letters.
 * This header holds the configuration, the daemon state and the ops table. */
#ifndef ENTITLE_NOTIFYD_H
#define ENTITLE_NOTIFYD_H

#include <stdbool.h>
#include <stdint.h>

#include "apns.h"
#include "ent/bus.h"
#include "ent/daemon.h"
#include "fcm.h"
#include "http_client.h"
#include "sms.h"

struct notifyd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
    char *fcm_project_id;
    char *fcm_credentials_file;
    char *fcm_endpoint;
    char *fcm_ca_file;
    char *apns_endpoint;
    char *apns_key_file;
    char *apns_key_id;
    char *apns_team_id;
    char *apns_topic;
    char *apns_ca_file;
    char *sms_endpoint;
    char *sms_auth_header;
    char *sms_template;
    char *sms_ca_file;
    int64_t outbox_max_attempts;
    uint64_t outbox_lease;
    uint64_t outbox_backoff_min;
    uint64_t outbox_backoff_max;
    uint64_t outbox_poll_interval;
    int64_t outbox_batch;
    int64_t outbox_concurrency;
    uint64_t outbox_idempotency_ttl;
    uint64_t notify_http_timeout;
    int64_t notify_max_host_connections;
    struct ent_strlist notify_policyd;
    uint64_t notify_policyd_timeout;
};

struct notifyd_delivery;

/* The daemon's state (ent_daemon.priv). Loop thread only. */
struct notifyd {
    struct ent_daemon *d;
    struct notifyd_cfg *cfg;
    struct notifyd_http http;
    bool http_open;
    struct notifyd_fcm fcm;
    struct notifyd_apns apns;
    struct notifyd_sms sms;
    bool fcm_on, apns_on, sms_on;
    struct ent_bus_client policyd;
    bool policyd_on;
    size_t policyd_inflight;
    uv_timer_t poll_timer;
    uv_timer_t stats_timer;
    bool timers_open;
    bool stopping;
    struct notifyd_delivery *deliveries; /* in flight (list) */
    size_t inflight;
    uint64_t rng;
};

extern const struct ent_daemon_ops notifyd_daemon;

/* outbox.c: the worker. Loop thread. */
ent_err notifyd_outbox_start(struct notifyd *n);
/* Claims and starts due items now (after an enqueue or a finished delivery). */
void notifyd_outbox_kick(struct notifyd *n);
/* Drain: no new claims; deliveries in flight go on. */
void notifyd_outbox_drain(struct notifyd *n);
/* Close: abort what is in flight (rows stay leased and are redelivered after the lease). */
void notifyd_outbox_stop(struct notifyd *n);
/* Deterministic part of the retry delay: backoff_min * 2^(attempts-1), at most backoff_max,
 * then full jitter into [half, whole] using *rng. Exposed for tests. */
uint64_t notifyd_backoff_ms(uint64_t min_ms, uint64_t max_ms, uint32_t attempts, uint64_t *rng);

/* rpc.c: the push RPC. Loop thread; replies exactly once. */
void notifyd_rpc_push(struct notifyd *n, uint64_t call_id, const Entitle__V1__Request *req);
/* The coalescing key of a request: "push/<subscriber>/<terminal>/<sorted app ids>", or with
 * "sms/" for SMS-only rows. Heap string (free()), NULL on ENOMEM. Exposed for tests. */
char *notifyd_coalesce_key(const Entitle__V1__PushRequest *p);

#endif
