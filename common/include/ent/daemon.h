/* SPDX-License-Identifier: Apache-2.0 */
/* The one daemon skeleton every Entitle process runs (gateway, authd, policyd, notifyd):
 *
 *   parse config ──▶ open store ──▶ bind bus (RPC server) ──▶ serve ops ──▶ daemon start
 *        │                                                                     │
 *        ▼ (any step fails: undo the ones that succeeded, exit 1)              ▼
 *                                                                        run the loop
 *   SIGTERM/SIGINT ──▶ readiness off ──(drain_delay)──▶ stop accepting ──▶ wait in-flight
 *        ──(all done or drain_grace)──▶ close handles ──▶ uv_loop_close()==0 ──▶ exit 0
 *   SIGHUP ──▶ reload the reloadable config keys (log level, ...) and call ops->reload
 *
 * The skeleton answers the Ping RPC itself and hands every other RPC to ops->rpc on the
 * loop thread. Daemons keep their own state behind ent_daemon.priv. */
#ifndef ENT_DAEMON_H
#define ENT_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common.pb-c.h"
#include "ent/bus.h"
#include "ent/config.h"
#include "ent/err.h"
#include "ent/http.h"
#include "ent/log.h"
#include "ent/store.h"
#include "ent/util.h"

/* Keys every daemon has. A daemon's own config struct starts with this struct, so the
 * common keys' offsets are valid in it. */
struct ent_daemon_cfg {
    enum ent_log_level log_level;
    char *ops_listen;
    char *bus_listen;
    int64_t bus_workers;
    char *bus_tls_ca;
    char *bus_tls_cert;
    char *bus_tls_key;
    char *store_backend;
    char *store_path;
    char *store_uri;
    char *store_database;
    uint64_t store_busy_timeout;
    uint64_t drain_delay;
    uint64_t drain_grace;
    char *instance;
};

struct ent_daemon;

struct ent_daemon_ops {
    const char *name;               /* "authd"; also the log "daemon" field */
    const char *default_ops_listen; /* e.g. "127.0.0.1:9101" */
    const char *default_bus_listen; /* e.g. "tcp://127.0.0.1:7101" */
    const struct ent_cfg_key *keys; /* daemon-specific keys, offsets into its config struct */
    size_t n_keys;
    size_t cfg_size;  /* sizeof the daemon's config struct */
    size_t priv_size; /* bytes allocated (zeroed) for ent_daemon.priv */
    /* After store, bus and ops are up. Failure stops the daemon (exit 1). */
    ent_err (*start)(struct ent_daemon *d);
    /* Every RPC but Ping, on the loop thread; must call ent_daemon_reply() once. NULL: the
     * daemon serves no other RPC (answered EUNSUPPORTED). */
    void (*rpc)(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req);
    /* Extra readiness; may append `,"key":value` JSON members to detail. NULL: ready. */
    bool (*ready)(struct ent_daemon *d, struct ent_buf *detail);
    /* Drain: stop accepting new work on the daemon's own listeners. */
    void (*drain)(struct ent_daemon *d);
    /* Work the daemon still has in flight (the skeleton adds its own RPCs). */
    size_t (*inflight)(struct ent_daemon *d);
    /* Close the daemon's own handles (uv_close); the loop ends once all are closed. */
    void (*stop)(struct ent_daemon *d);
    /* SIGHUP, after the reloadable config keys were applied. */
    void (*reload)(struct ent_daemon *d);
};

struct ent_daemon {
    const struct ent_daemon_ops *ops;
    uv_loop_t loop;
    void *cfg;                     /* the daemon's config struct (cfg_size bytes) */
    struct ent_daemon_cfg *common; /* == cfg */
    const char *config_path;
    struct ent_cfg_key *keys; /* common keys then the daemon's */
    size_t n_keys;
    struct ent_store *store;
    struct ent_http_server ops_http;
    struct ent_bus_server bus;
    bool bus_bound;
    atomic_bool draining;
    bool stopping;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    uv_timer_t drain_timer;
    uint64_t drain_started_ms;
    uint64_t started_ms;
    size_t rpc_inflight;
    char instance[64];
    void *priv;
};

/* The whole life of a daemon process; returns the process exit status. */
int ent_daemon_main(const struct ent_daemon_ops *ops, int argc, char **argv);

/* Reply to an RPC handed to ops->rpc (loop thread). The caller keeps ownership of resp. */
ent_err ent_daemon_reply(struct ent_daemon *d, uint64_t call_id, Entitle__V1__Response *resp);
ent_err ent_daemon_reply_error(struct ent_daemon *d, uint64_t call_id, ent_err code,
                               const char *message);

/* True once SIGTERM/SIGINT started the drain. Any thread. */
bool ent_daemon_draining(const struct ent_daemon *d);

/* Builds a bus TLS config from the common bus_tls_* keys; NULL when none is set. */
const struct ent_bus_tls_cfg *ent_daemon_bus_tls(const struct ent_daemon *d,
                                                 struct ent_bus_tls_cfg *storage);

#endif
