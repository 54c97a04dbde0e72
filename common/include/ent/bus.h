/* SPDX-License-Identifier: Apache-2.0 */
/* The bus: protobuf messages over NNG 1.5 (REQ/REP for RPCs, PUB/SUB for change events),
 * with every result delivered on a libuv loop thread. This header owns the four handle
 * kinds (RPC client, RPC server, event publisher, event subscriber), their configuration and
 * their counters; it leaves the meaning of each RPC to the daemons and metric export to the
 * daemon layer (which reads struct ent_bus_stats).
 *
 * Threads: NNG completes work on its own threads; those threads only queue (id, status,
 * message) on an inbox and wake the loop with uv_async_send(). Every callback declared here
 * therefore runs on the loop thread given at init, and every function except
 * ent_bus_publish() must be called from that thread.
 *
 * Lifetimes: the caller allocates each handle (usually embedded in its own struct). Closing
 * is asynchronous, as in libuv: the handle's memory may be reused or freed only in (or after)
 * its closed callback. Endpoints are "tcp://host:port" or "tls+tcp://host:port". */
#ifndef ENT_BUS_H
#define ENT_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.pb-c.h"
#include "policy.pb-c.h"
#include "ent/err.h"

/* TLS for tls+tcp:// endpoints (ignored, with a warning, for tcp://). PEM file paths.
 * Listeners with ca_file set require and verify client certificates (mutual TLS); dialers
 * with ca_file set verify the server against it and check server_name (default: none, so
 * set it whenever ca_file is set). cert_file/key_file are this side's identity. */
struct ent_bus_tls_cfg {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    const char *server_name;
};

/* Counters, written only on the loop thread; read them there (the daemon's metrics
 * handler). `results` counts completions by ent_err (results[ENT_OK] = successes):
 * for a client, calls completed with that status; for a server, replies sent with that
 * status code (bus-generated ETIMEDOUT/EPROTO answers included). */
struct ent_bus_stats {
    uint64_t calls;        /* client: calls accepted; server: requests received */
    uint64_t saturated;    /* client: calls refused with ENT_ESATURATED */
    uint64_t late_replies; /* replies that found their call gone (client) or its deadline
                              passed (server: dropped instead of sent) */
    uint64_t results[ENT_ERR_COUNT_];
};

/* --- RPC client ------------------------------------------------------------------------ */

struct ent_bus_client_cfg {
    const char *const *addrs; /* one dialer per address; NNG spreads calls over the pipes */
    size_t n_addrs;
    unsigned max_inflight;             /* size of the context pool (default 256) */
    const struct ent_bus_tls_cfg *tls; /* NULL: no TLS */
    const char *caller;                /* daemon name stamped into each header */
    uint64_t reconnect_min_ms;         /* default 100 */
    uint64_t reconnect_max_ms;         /* default 2000 */
    uint64_t resend_ms; /* REQ resend interval (calls are idempotent); default 1000 */
    /* Addresses naming a host (not an IP) are resolved this often and dialled once per
     * address they resolve to, so every replica behind a headless Service gets calls and
     * new replicas are found without a restart; default 10000. */
    uint64_t resolve_interval_ms;
};

struct ent_bus_client_impl;
struct ent_bus_client {
    void *data; /* for the caller */
    struct ent_bus_client_impl *impl_;
};

/* Runs on the loop thread, exactly once per accepted call. On ENT_OK `resp` belongs to the
 * callee: free it with entitle__v1__response__free_unpacked(resp, NULL). On error `resp` is
 * NULL and `status` is ENT_ETIMEDOUT (deadline passed), ENT_ECLOSED (client closing),
 * ENT_EPROTO (undecodable or mismatched reply) or, rarely, another transport error. A server
 * that answered with a non-OK Status still gives ENT_OK here: resp->status carries its code
 * and the caller decides. */
typedef void (*ent_bus_reply_cb)(ent_err status, Entitle__V1__Response *resp, void *ud);

/* Loop thread. Opens the REQ socket, a pool of cfg->max_inflight contexts and one
 * non-blocking dialer per address (so the client starts while servers are still down).
 * cfg and the strings it points to are copied. Errors: ENT_EINVAL (no address, bad URL),
 * ENT_ECONFIG (TLS files unreadable or tls+tcp without TLS config), ENT_ENOMEM, ENT_EIO.
 * On error nothing is left to close. */
ent_err ent_bus_client_init(struct ent_bus_client *c, uv_loop_t *loop,
                            const struct ent_bus_client_cfg *cfg);

/* Loop thread. Sends `req` with a header filled by the bus: a process-unique request id, a
 * deadline of now + timeout_ms, trace_id (may be NULL) and the configured caller; an
 * idempotency key already in req->header is kept. `req` is only read (the bus packs a copy
 * of its header), so the caller keeps ownership and may free it on return.
 * Returns ENT_OK and `cb` will be called exactly once; or, without ever calling `cb`:
 * ENT_ESATURATED (max_inflight calls outstanding; logged as "bus.saturated"),
 * ENT_ECLOSED (closing), ENT_EINVAL (timeout_ms == 0 or no cb), ENT_ENOMEM. */
ent_err ent_bus_call(struct ent_bus_client *c, const Entitle__V1__Request *req, uint64_t timeout_ms,
                     const char *trace_id, ent_bus_reply_cb cb, void *ud);

/* Loop thread. Calls accepted and not yet completed. */
unsigned ent_bus_client_inflight(const struct ent_bus_client *c);

/* Loop thread. Dialers currently open: one per IP address, one per resolved address of each
 * host name (or one for the name itself until it first resolves). */
size_t ent_bus_client_dialers(const struct ent_bus_client *c);

/* Loop thread. Counters (see struct ent_bus_stats). */
const struct ent_bus_stats *ent_bus_client_stats(const struct ent_bus_client *c);

/* Loop thread. Starts closing: new calls get ENT_ECLOSED; outstanding calls complete on
 * later loop iterations with ENT_ECLOSED (or their result if it had already arrived); then
 * closed_cb (may be NULL) runs, after which `c` may be freed. Call once. */
void ent_bus_client_close(struct ent_bus_client *c, void (*closed_cb)(struct ent_bus_client *c));

/* --- RPC server ------------------------------------------------------------------------ */

struct ent_bus_server_impl;
struct ent_bus_server {
    void *data; /* for the caller */
    struct ent_bus_server_impl *impl_;
};

/* Loop thread. `req` is valid only during the call (copy what a later reply needs). The
 * handler must eventually call ent_bus_server_reply() or ent_bus_server_reply_error() with
 * `call_id` exactly once, now or later, from the loop thread. Requests whose deadline has
 * already passed are answered ETIMEDOUT by the bus and undecodable ones EPROTO, without
 * calling the handler. */
typedef void (*ent_bus_handler_cb)(struct ent_bus_server *s, uint64_t call_id,
                                   const Entitle__V1__Request *req, void *ud);

struct ent_bus_server_cfg {
    const char *listen;                /* tcp://127.0.0.1:0 picks a free port */
    unsigned workers;                  /* contexts = requests handled at once (default 64) */
    const struct ent_bus_tls_cfg *tls; /* NULL: no TLS */
};

/* Loop thread. Opens the REP socket, binds the listener (synchronously, so a busy port is
 * an error here: ENT_EUNAVAIL) and starts `workers` receive loops. Other errors as
 * ent_bus_client_init(). On error nothing is left to close. */
ent_err ent_bus_server_init(struct ent_bus_server *s, uv_loop_t *loop,
                            const struct ent_bus_server_cfg *cfg, ent_bus_handler_cb cb, void *ud);

/* Loop thread. Answers call `call_id` with `resp`, after setting resp->request_id; the
 * caller keeps ownership of `resp`. A reply after the request's deadline is dropped and
 * counted ("bus.late_reply"), and still returns ENT_OK. (At or after the deadline.) Errors:
 * ENT_ENOTFOUND (unknown or already answered call), ENT_ECLOSED (server closing; the call is
 * abandoned), ENT_ENOMEM (the call is abandoned and the client will time out). */
ent_err ent_bus_server_reply(struct ent_bus_server *s, uint64_t call_id,
                             Entitle__V1__Response *resp);

/* Loop thread. As ent_bus_server_reply() with a Response carrying only Status{code,
 * message}. `message` is for logs (may be NULL); never put secrets in it. */
ent_err ent_bus_server_reply_error(struct ent_bus_server *s, uint64_t call_id, ent_err code,
                                   const char *message);

/* Loop thread. The bound TCP port (useful with port 0), or -1. */
int ent_bus_server_port(const struct ent_bus_server *s);

/* Loop thread. Counters (see struct ent_bus_stats). */
const struct ent_bus_stats *ent_bus_server_stats(const struct ent_bus_server *s);

/* Loop thread. Stops listening; calls not yet answered are abandoned (their clients time out
 * or retry elsewhere) and later replies get ENT_ECLOSED. closed_cb (may be NULL) runs on a
 * later loop iteration, after which `s` may be freed. Call once. */
void ent_bus_server_close(struct ent_bus_server *s, void (*closed_cb)(struct ent_bus_server *s));

/* --- Change events --------------------------------------------------------------------- */

struct ent_bus_pub_impl;
struct ent_bus_pub {
    struct ent_bus_pub_impl *impl_;
};

/* Any thread (no loop involved). Opens a PUB socket listening on `listen` and remembers
 * `publisher_name` (copied; the events' publisher). Errors as ent_bus_server_init(). */
ent_err ent_bus_pub_init(struct ent_bus_pub *p, const char *listen,
                         const struct ent_bus_tls_cfg *tls, const char *publisher_name);

/* Any thread. Stamps ev->seq (per publisher, from 1, no gaps between successful calls) and
 * ev->time_unix_ms, sends the event with this publisher's name (ev->publisher itself is not
 * touched) and returns. PUB never blocks: slow or absent subscribers miss events and see a
 * gap. Caller keeps `ev`. Errors: ENT_ENOMEM, ENT_ECLOSED, ENT_EIO (nothing sent, seq not
 * consumed). */
ent_err ent_bus_publish(struct ent_bus_pub *p, Entitle__V1__ChangeEvent *ev);

/* The bound TCP port of the publisher's listener, or -1. */
int ent_bus_pub_port(const struct ent_bus_pub *p);

/* Synchronous; no ent_bus_publish() may run concurrently or afterwards. */
void ent_bus_pub_close(struct ent_bus_pub *p);

struct ent_bus_sub_impl;
struct ent_bus_sub {
    void *data; /* for the caller */
    struct ent_bus_sub_impl *impl_;
};

/* Loop thread; `ev` is valid only during the call. `gap` is true when this event's seq is
 * not the previous one + 1 from the same publisher over the same connection: events were
 * dropped, the publisher restarted, or this is the first event after a (re)connect. On a gap
 * the consumer must flush whatever it cached from that publisher's announcements. */
typedef void (*ent_bus_event_cb)(const Entitle__V1__ChangeEvent *ev, bool gap, void *ud);

/* Loop thread. Opens a SUB socket subscribed to everything, with one non-blocking dialer
 * per publisher address (re-dialled 100 ms..2 s after a loss). Errors as
 * ent_bus_client_init(). On error nothing is left to close. */
ent_err ent_bus_sub_init(struct ent_bus_sub *s, uv_loop_t *loop, const char *const *addrs,
                         size_t n_addrs, const struct ent_bus_tls_cfg *tls, ent_bus_event_cb cb,
                         void *ud);

/* The metric/log name of a change kind ("subscriber", "tokens_revoked", "all"), or NULL for
 * a kind this build does not know. Any thread. */
const char *ent_bus_change_kind_name(int kind);

/* Loop thread: a connection to one publisher came up (up) or went down. After `up` the
 * consumer must flush what it cached from announcements: the publisher dropped whatever it
 * published while this connection was missing. */
typedef void (*ent_bus_link_cb)(bool up, void *ud);

/* Loop thread. Sets the link callback (same ud as the event callback); call right after
 * ent_bus_sub_init(): notifications reach the loop on a later iteration. */
void ent_bus_sub_on_link(struct ent_bus_sub *s, ent_bus_link_cb cb);

/* Loop thread. *total: dialers currently open (one per publisher address, names resolved
 * to N addresses count N); *up: how many of them have a live connection. The event stream is
 * complete only while *total > 0 and *up == *total. */
void ent_bus_sub_links(const struct ent_bus_sub *s, size_t *up, size_t *total);

/* Loop thread. No event callback runs after this returns; closed_cb (may be NULL) runs on a
 * later loop iteration, after which `s` may be freed. Call once. */
void ent_bus_sub_close(struct ent_bus_sub *s, void (*closed_cb)(struct ent_bus_sub *s));

#endif
