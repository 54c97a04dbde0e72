/* SPDX-License-Identifier: Apache-2.0 */
/* policyd: what each subscriber is entitled to, and where the operator's BSS writes
 * (issue #5). This header owns the daemon's configuration, the core state (struct policyd)
 * shared by its files, and the core's life cycle, which the daemon glue (policyd.c) and the
 * tests both drive. The files, one per concern:
 *
 *   model.[ch]    entities (subscriber, plan, roaming rule, rollout, device), their JSON
 *                 form, validation, and how they map onto store documents
 *   eval.[ch]     the decision order with its explain trace; roaming.c and rollout.c are
 *                 the two steps with rules of their own
 *   admin.[ch]    the provisioning REST API (TLS listener, bearer scopes, ETag/If-Match);
 *                 import.c its NDJSON bulk import
 *   events.[ch]   change events (NNG PUB) and the push intents a change implies
 *   relay.[ch]    the durable push queue and the relay that hands it to notifyd
 *   upstream.c    calls to authd (credentials, token revocation)
 *   rpc.c         the bus RPCs policyd serves (Evaluate, DeviceRegister)
 *
 * Threads: everything runs on the one loop thread; store calls block that thread briefly
 * (SQLite on local disk), which keeps every change a simple sequence: validate, commit,
 * publish, queue the push intents, answer. */
#ifndef ENTITLE_POLICYD_H
#define ENTITLE_POLICYD_H

#include <openssl/ssl.h>

#include "ent/daemon.h"
#include "model.h"
#include "relay.h"

struct policyd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
    char *admin_listen;
    bool admin_tls;
    char *admin_tls_cert;
    char *admin_tls_key;
    char *admin_tokens_file;
    uint64_t admin_max_body;
    char *events_listen;
    struct ent_strlist upstream_authd;
    struct ent_strlist upstream_notifyd;
    uint64_t upstream_timeout;
    int64_t upstream_max_inflight;
    struct ent_strlist home_plmns;
    char *default_plan;
    char *websheet_url;
    bool credentials_required;
    int64_t import_concurrency;
    char *push_queue_path;     /* sqlite: the push queue's file (NULL: store.path + suffix) */
    char *push_queue_database; /* mongo: the push queue's database (NULL: store.database +
                                  suffix) */
    uint64_t push_lease;
    uint64_t push_backoff_min;
    uint64_t push_backoff_max;
    uint64_t push_poll_interval;
    int64_t push_batch;
    int64_t push_max_inflight;
};

/* One bearer token of the admin API (admin.tokens_file). */
#define PD_SCOPE_READ  1u
#define PD_SCOPE_WRITE 2u
struct pd_token {
    char *token;
    unsigned scopes;
};

struct pd_import;
struct pd_pending;

struct policyd {
    struct ent_daemon *daemon; /* NULL when a test drives the core */
    uv_loop_t *loop;
    struct ent_store *store;
    const struct policyd_cfg *cfg;
    struct pd_policy policy; /* plans, rules, rollouts: cached, keyed by generation */
    bool policy_loaded;

    struct ent_http_server admin;
    bool admin_on;
    struct pd_token *tokens;
    size_t n_tokens;

    struct ent_bus_pub pub;
    bool pub_on;
    struct ent_bus_client authd;
    bool authd_on;
    struct ent_bus_client notifyd;
    bool notifyd_on;
    struct ent_store *push_queue; /* the relay's own store (relay.h), owned by the core */
    struct pd_relay relay;        /* hands queued push intents to notifyd */
    bool relay_on;
    struct pd_push_batch *push_batch; /* set while a fan-out collects its pushes (events.c) */

    struct pd_pending *pending; /* admin requests waiting for authd */
    struct pd_import *imports;  /* imports in progress */
    /* Handles open or closing whose close callback has not run yet. */
    unsigned closing;
    bool close_requested;
    void (*closed_cb)(struct policyd *p);
    void *data; /* free for the owner (tests) */
};

extern const struct ent_daemon_ops policyd_daemon;

/* Loop thread. Starts the core on `loop` over `store` with `cfg` (both must outlive the
 * core): change-event publisher, authd and notifyd clients, the push queue and its relay
 * when notifyd is configured (the queue store is opened from the push.* and store.* keys;
 * ENT_ECONFIG when neither push.queue_path nor store.path names a file), and the admin
 * listener when cfg->admin_listen is set (TLS from admin.tls_cert/tls_key unless
 * cfg->admin_tls is false). On error everything started is closed again synchronously where
 * possible and the error is logged; the caller then runs the loop until it has no handles. Errors:
 * ENT_ECONFIG (TLS or tokens files), ENT_EUNAVAIL (port in use), ENT_ENOMEM, ENT_EIO. */
ent_err policyd_core_start(struct policyd *p, uv_loop_t *loop, struct ent_store *store,
                           const struct policyd_cfg *cfg);
/* Loop thread. Stops accepting admin connections (drain). */
void policyd_core_drain(struct policyd *p);
/* Loop thread. Admin requests, imports and push handoffs still in flight. */
size_t policyd_core_inflight(const struct policyd *p);
/* Loop thread. Closes every handle; closed_cb (may be NULL) runs once all are closed, after
 * which p may be freed. Safe after a failed start. */
void policyd_core_close(struct policyd *p, void (*closed_cb)(struct policyd *p));
/* Loop thread. One of the core's handles finished closing (import pumps included); runs
 * closed_cb after the last one once policyd_core_close() was called. */
void pd_core_handle_closed(struct policyd *p);
/* Loop thread. The admin listener's bound port, or -1. */
int policyd_admin_port(const struct policyd *p);

/* Loop thread. Makes p->policy current: reloads plans, rules and rollouts from the store
 * when the store's policy generation differs from the cached one. */
ent_err policyd_policy_refresh(struct policyd *p);

/* Loop thread. The Evaluate RPC's work: reads the subscriber, evaluates req->app_ids and
 * fills *out (heap; free with entitle__v1__evaluate_response__free_unpacked(out, NULL)).
 * Errors: ENT_EINVAL (no subscriber id or AppID), ENT_ENOTFOUND (unknown subscriber),
 * store errors. */
ent_err policyd_evaluate(struct policyd *p, const Entitle__V1__EvaluateRequest *req,
                         Entitle__V1__EvaluateResponse **out);
/* Loop thread. The DeviceRegister RPC's work: upserts the device record. Errors:
 * ENT_EINVAL (field named in the log), ENT_ENOTFOUND (unknown subscriber), store errors. */
ent_err policyd_device_register(struct policyd *p, const Entitle__V1__DeviceRegisterRequest *req);
/* Loop thread: ops->rpc. */
void policyd_rpc(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req);

#endif
