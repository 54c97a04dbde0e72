/* SPDX-License-Identifier: Apache-2.0 */
/* Private parts shared by the bus files (bus_client.c, bus_server.c, bus_event.c): the
 * inbox that carries NNG completions to the loop, TLS and endpoint helpers, and the NNG
 * error conversion. Nothing here is visible outside common/. */
#ifndef ENT_BUS_INT_H
#define ENT_BUS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>
#include <uv.h>

#include "ent/bus.h"
#include "ent/err.h"

/* One completion travelling from an NNG thread to the loop. Client and server slots embed
 * their item (a slot has at most one completion pending), so queueing never allocates there;
 * the subscriber allocates one per event. `id` is a slot index or a pipe id, never a pointer
 * to a caller's object. */
struct bus_item {
    struct bus_item *next;
    uint64_t id;
    int rv;       /* NNG result: 0 or NNG_E* */
    nng_msg *msg; /* owned by whoever holds the item */
};

/* Inbox: NNG threads push under `mu` and wake the loop with uv_async_send() only when the
 * list goes from empty to non-empty (h2o's multithread.c); the loop takes the whole list at
 * once and handles every item, since wake-ups coalesce.
 *
 * Teardown order, which every owner follows: stop every aio (so no NNG thread can push
 * again), then bus_inbox_close(); its close callback drains what is left. */
struct bus_inbox {
    uv_mutex_t mu;
    struct bus_item *head;
    struct bus_item *tail;
    uv_async_t async;
    void (*deliver)(struct bus_inbox *in, struct bus_item *it);
    void (*closed)(struct bus_inbox *in);
};

/* Loop thread. deliver() gets each item in arrival order; it owns it afterwards. */
ent_err bus_inbox_init(struct bus_inbox *in, uv_loop_t *loop,
                       void (*deliver)(struct bus_inbox *in, struct bus_item *it));
/* Any thread. */
void bus_inbox_push(struct bus_inbox *in, struct bus_item *it);
/* Loop thread. Closes the async handle; in its close callback delivers every item still
 * queued, destroys the mutex, then calls closed(in) (which may free the memory). */
void bus_inbox_close(struct bus_inbox *in, void (*closed)(struct bus_inbox *in));

/* NNG error -> ent_err, once, at the boundary. */
ent_err bus_err_from_nng(int rv);

/* One pool slot of a client or server: an aio calling cb(arg) and a context on sock. On
 * error nothing is left allocated. */
ent_err bus_ctx_open(nng_socket sock, nng_aio **aio, nng_ctx *ctx, void (*cb)(void *), void *arg);

/* Creates and starts a dialer (flags: NNG_FLAG_NONBLOCK) or a listener for `url` on `sock`,
 * applying TLS for tls+tcp:// URLs and the reconnect times for dialers (0: NNG default).
 * Listeners report their bound port through *port_out when not NULL (-1 if unknown). A
 * dialer is handed back through *out when not NULL, so it can be closed on its own later. */
ent_err bus_dial_ex(nng_socket sock, const char *url, const struct ent_bus_tls_cfg *tls,
                    uint64_t reconnect_min_ms, uint64_t reconnect_max_ms, nng_dialer *out);

/* Peer sets: the dialers of one socket for a list of configured addresses. An address whose
 * host is an IP literal gets one dialer for good. A host name (a Kubernetes headless
 * Service, a compose service) is resolved on the loop every interval_ms and gets one dialer
 * per address it resolves to: replicas that appear are dialled, replicas that vanish are
 * dropped, without a restart (DESIGN §1). Until the first resolution answers, and whenever
 * a name resolves to nothing, the name itself is dialled (NNG resolves it per connection).
 * For tls+tcp, each dialer verifies the certificate against the configured name. Loop
 * thread only; bus_peerset_close() must run before the socket is closed, and frees the set
 * once its libuv handles are closed. */
struct bus_peerset;
struct bus_peerset_cfg {
    const char *const *addrs;
    size_t n_addrs;
    const struct ent_bus_tls_cfg *tls;
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    uint64_t resolve_interval_ms; /* 0: default 10 s */
    const char *what;             /* for logs and metrics: "client", "sub" */
};
ent_err bus_peerset_init(struct bus_peerset **out, uv_loop_t *loop, nng_socket sock,
                         const struct bus_peerset_cfg *cfg);
/* Resolutions answered so far (successful lookups, whatever they contained). */
uint64_t bus_peerset_answers(const struct bus_peerset *ps);
/* Number of dialers currently open (names resolved to N addresses count N). */
size_t bus_peerset_dialers(const struct bus_peerset *ps);
/* Writes the NNG ids of the dialers currently open (at most max of them) to ids and returns
 * how many there are (which may exceed max). */
size_t bus_peerset_dialer_ids(const struct bus_peerset *ps, uint32_t *ids, size_t max);
/* Applies one resolution result for configured address `index` (tests call it directly):
 * `urls` are complete URLs such as "tcp://10.0.0.7:7101". */
void bus_peerset_apply(struct bus_peerset *ps, size_t index, const char *const *urls, size_t n);
void bus_peerset_close(struct bus_peerset *ps);
/* The client's peer set (tests drive bus_peerset_apply() through it). */
struct bus_peerset *bus_client_peers(const struct ent_bus_client *c);

ent_err bus_listen(nng_socket sock, const char *url, const struct ent_bus_tls_cfg *tls,
                   int *port_out);

/* Packs any protobuf-c message into a new NNG message. ENT_ENOMEM on failure. */
ent_err bus_pack(nng_msg **out, const ProtobufCMessage *m);

/* Largest message a bus socket accepts. */
#define BUS_MAX_MSG_SIZE (4u * 1024u * 1024u)

#endif
