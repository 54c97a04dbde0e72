/* SPDX-License-Identifier: Apache-2.0 */
/* The RPC server: one REP socket with its listener and a fixed pool of `workers` slots (an
 * nng_ctx and an aio each), as in NNG's demo/async server. Each slot loops receive ->
 * deliver to the loop -> handler -> reply -> receive; the pool size bounds the requests held
 * at once, and NNG leaves further requests queued in the peers' REQ sockets. The handler,
 * the deadline check and the reply all run on the loop; NNG threads only queue.
 *
 *     IDLE --start/after send (nng)--> RECV --request (nng)--> QUEUED --server_deliver (loop)
 *       ^                               ^                                     |
 *       |                               |                                     v
 *       +--closing (nng)                +--sent (nng)-- SEND <--reply (loop)-- HANDLER
 *
 * A call id is (serial << 16 | slot index): a reply for a call that was already answered, or
 * whose slot moved on, finds a different serial and is refused with ENT_ENOTFOUND. */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "bus_int.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/util.h"

static ent_counter bus_server_late =
    ENT_COUNTER("entitle_bus_server_late_replies_total",
                "Replies dropped because the caller's deadline passed");

#define SERVER_DEFAULT_WORKERS 64u
#define SERVER_MAX_WORKERS     65535u
#define SERVER_SLOT_BITS       16

enum wslot_state { W_IDLE, W_RECV, W_QUEUED, W_HANDLER, W_SEND };

struct server_slot {
    struct ent_bus_server_impl *impl;
    nng_ctx ctx;
    nng_aio *aio;
    enum wslot_state state;
    uint64_t call_id;
    uint64_t request_id;
    uint64_t deadline_unix_ms; /* 0: none */
    char trace[64];
    struct bus_item item; /* item.id is this slot's index */
};

struct ent_bus_server_impl {
    struct ent_bus_server *owner;
    struct bus_inbox inbox;
    nng_socket sock;
    bool sock_open;
    struct server_slot *slots;
    unsigned n_slots;
    uint64_t serial;
    int port;
    atomic_bool closing;
    ent_bus_handler_cb handler;
    void *ud;
    struct ent_bus_stats stats;
    void (*closed_cb)(struct ent_bus_server *s);
};

static ent_err server_reply_status(struct ent_bus_server *s, uint64_t call_id, ent_err code,
                                   const char *message, bool drop_late);

/* NNG thread. */
static void on_server_aio(void *arg)
{
    struct server_slot *sl = arg;
    struct ent_bus_server_impl *impl = sl->impl;
    int rv = nng_aio_result(sl->aio);

    if (sl->state == W_SEND) {
        if (rv != 0) {
            /* The client went away; the reply is ours to drop. */
            nng_msg_free(nng_aio_get_msg(sl->aio));
            nng_aio_set_msg(sl->aio, NULL);
        }
    } else {
        assert(sl->state == W_RECV);
        if (rv == 0) {
            sl->state = W_QUEUED;
            sl->item.rv = 0;
            sl->item.msg = nng_aio_get_msg(sl->aio);
            nng_aio_set_msg(sl->aio, NULL);
            bus_inbox_push(&impl->inbox, &sl->item);
            return;
        }
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            sl->state = W_IDLE;
            return;
        }
        /* Anything else (NNG_ENOMEM) is transient: receive again. */
    }
    if (atomic_load(&impl->closing)) {
        sl->state = W_IDLE;
        return;
    }
    sl->state = W_RECV;
    nng_ctx_recv(sl->ctx, sl->aio);
}

/* Loop thread: the slot's call is over without a reply being sent; take the next request. */
static void slot_next(struct server_slot *sl)
{
    sl->state = W_RECV;
    sl->call_id = 0;
    nng_ctx_recv(sl->ctx, sl->aio);
}

/* Loop thread: one received request. */
static void server_deliver(struct bus_inbox *in, struct bus_item *it)
{
    struct ent_bus_server_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_server_impl, inbox);
    struct server_slot *sl = &impl->slots[it->id];
    nng_msg *msg = it->msg;
    it->msg = NULL;
    if (atomic_load(&impl->closing)) {
        nng_msg_free(msg); /* the server is draining: the client will retry or time out */
        return;
    }
    assert(sl->state == W_QUEUED);
    impl->stats.calls++;
    Entitle__V1__Request *req =
        entitle__v1__request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    size_t len = nng_msg_len(msg);
    nng_msg_free(msg);

    impl->serial++;
    sl->call_id = (impl->serial << SERVER_SLOT_BITS) | it->id;
    sl->state = W_HANDLER;
    sl->request_id = 0;
    sl->deadline_unix_ms = 0;
    sl->trace[0] = '\0';
    struct ent_bus_server *s = impl->owner;
    if (req == NULL) {
        ENT_LOG_WARN(NULL, "bus.bad_request", ENT_KV_U64("len", len));
        server_reply_status(s, sl->call_id, ENT_EPROTO, "undecodable request", false);
        return;
    }
    if (req->header != NULL) {
        sl->request_id = req->header->request_id;
        sl->deadline_unix_ms = req->header->deadline_unix_ms;
        if (req->header->trace_id != NULL)
            snprintf(sl->trace, sizeof(sl->trace), "%s", req->header->trace_id);
    }
    if (sl->deadline_unix_ms != 0 && ent_wall_ms() >= sl->deadline_unix_ms) {
        ENT_LOG_DEBUG(sl->trace, "bus.expired_request", ENT_KV_U64("request_id", sl->request_id));
        server_reply_status(s, sl->call_id, ENT_ETIMEDOUT, "deadline passed on arrival", false);
    } else {
        impl->handler(s, sl->call_id, req, impl->ud);
    }
    entitle__v1__request__free_unpacked(req, NULL);
}

static void server_free(struct ent_bus_server_impl *impl)
{
    free(impl->slots);
    free(impl);
}

/* Loop thread: stops slots [0, n_ready), then closes contexts, socket and aios. */
static void server_teardown(struct ent_bus_server_impl *impl, unsigned n_ready)
{
    for (unsigned i = 0; i < n_ready; i++)
        nng_aio_stop(impl->slots[i].aio);
    for (unsigned i = 0; i < n_ready; i++) {
        struct server_slot *sl = &impl->slots[i];
        if (sl->state == W_SEND) {
            /* Stopped before its callback could take the message back. */
            nng_msg_free(nng_aio_get_msg(sl->aio));
            nng_aio_set_msg(sl->aio, NULL);
        }
        if (sl->state != W_QUEUED)
            sl->state = W_IDLE;
        nng_ctx_close(sl->ctx);
    }
    if (impl->sock_open)
        nng_close(impl->sock);
    impl->sock_open = false;
    for (unsigned i = 0; i < n_ready; i++)
        nng_aio_free(impl->slots[i].aio);
}

static void on_server_inbox_closed(struct bus_inbox *in)
{
    struct ent_bus_server_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_server_impl, inbox);
    struct ent_bus_server *s = impl->owner;
    void (*closed_cb)(struct ent_bus_server *) = impl->closed_cb;
    server_free(impl);
    s->impl_ = NULL;
    if (closed_cb != NULL)
        closed_cb(s);
}

static void on_init_failed_inbox_closed(struct bus_inbox *in)
{
    server_free(ENT_CONTAINER_OF(in, struct ent_bus_server_impl, inbox));
}

static ent_err server_open(struct ent_bus_server_impl *impl, const struct ent_bus_server_cfg *cfg,
                           unsigned *n_ready)
{
    int rv = nng_rep0_open(&impl->sock);
    if (rv != 0)
        return bus_err_from_nng(rv);
    impl->sock_open = true;
    rv = nng_socket_set_size(impl->sock, NNG_OPT_RECVMAXSZ, BUS_MAX_MSG_SIZE);
    if (rv != 0)
        return bus_err_from_nng(rv);
    for (unsigned i = 0; i < impl->n_slots; i++) {
        struct server_slot *sl = &impl->slots[i];
        sl->impl = impl;
        sl->item.id = i;
        ent_err rc = bus_ctx_open(impl->sock, &sl->aio, &sl->ctx, on_server_aio, sl);
        if (rc != ENT_OK)
            return rc;
        *n_ready = i + 1;
    }
    ent_err rc = bus_listen(impl->sock, cfg->listen, cfg->tls, &impl->port);
    if (rc != ENT_OK)
        return rc;
    for (unsigned i = 0; i < impl->n_slots; i++)
        slot_next(&impl->slots[i]);
    return ENT_OK;
}

ent_err ent_bus_server_init(struct ent_bus_server *s, uv_loop_t *loop,
                            const struct ent_bus_server_cfg *cfg, ent_bus_handler_cb cb, void *ud)
{
    if (cfg == NULL || cfg->listen == NULL || cb == NULL)
        return ENT_EINVAL;
    unsigned n = cfg->workers != 0 ? cfg->workers : SERVER_DEFAULT_WORKERS;
    if (n > SERVER_MAX_WORKERS)
        return ENT_EINVAL;
    struct ent_bus_server_impl *impl = calloc(1, sizeof(*impl));
    if (impl == NULL)
        return ENT_ENOMEM;
    impl->owner = s;
    impl->n_slots = n;
    impl->handler = cb;
    impl->ud = ud;
    impl->port = -1;
    atomic_init(&impl->closing, false);
    impl->slots = calloc(n, sizeof(*impl->slots));
    if (impl->slots == NULL) {
        server_free(impl);
        return ENT_ENOMEM;
    }
    ent_err rc = bus_inbox_init(&impl->inbox, loop, server_deliver);
    if (rc != ENT_OK) {
        server_free(impl);
        return rc;
    }
    unsigned n_ready = 0;
    rc = server_open(impl, cfg, &n_ready);
    if (rc != ENT_OK) {
        atomic_store(&impl->closing, true);
        server_teardown(impl, n_ready);
        bus_inbox_close(&impl->inbox, on_init_failed_inbox_closed);
        return rc;
    }
    s->impl_ = impl;
    return ENT_OK;
}

static struct server_slot *slot_for_call(struct ent_bus_server_impl *impl, uint64_t call_id)
{
    uint64_t idx = call_id & ((1u << SERVER_SLOT_BITS) - 1);
    if (idx >= impl->n_slots)
        return NULL;
    struct server_slot *sl = &impl->slots[idx];
    if (sl->state != W_HANDLER || sl->call_id != call_id)
        return NULL;
    return sl;
}

/* Loop thread. `drop_late`: drop a reply whose deadline passed (handler replies); the
 * bus's own ETIMEDOUT answer to an expired request is sent regardless, so a caller whose
 * clock runs ahead learns why. */
static ent_err server_reply(struct ent_bus_server *s, uint64_t call_id, Entitle__V1__Response *resp,
                            bool drop_late)
{
    struct ent_bus_server_impl *impl = s->impl_;
    if (impl == NULL || atomic_load(&impl->closing))
        return ENT_ECLOSED;
    if (resp == NULL)
        return ENT_EINVAL;
    struct server_slot *sl = slot_for_call(impl, call_id);
    if (sl == NULL)
        return ENT_ENOTFOUND;
    resp->request_id = sl->request_id;

    if (drop_late && sl->deadline_unix_ms != 0 && ent_wall_ms() >= sl->deadline_unix_ms) {
        /* The caller has given up (its aio timed out), and NNG would drop the reply
         * anyway: save the bytes. */
        impl->stats.late_replies++;
        ent_counter_inc(&bus_server_late);
        ENT_LOG_INFO(sl->trace, "bus.late_reply", ENT_KV_U64("request_id", sl->request_id),
                     ENT_KV_U64("late_ms", ent_wall_ms() - sl->deadline_unix_ms));
        slot_next(sl);
        return ENT_OK;
    }
    nng_msg *msg = NULL;
    ent_err rc = bus_pack(&msg, &resp->base);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(sl->trace, "bus.reply_failed", ENT_KV_U64("request_id", sl->request_id),
                      ENT_KV_STR("reason", ent_err_name(rc)));
        slot_next(sl);
        return rc;
    }
    unsigned code = resp->status != NULL ? (unsigned)resp->status->code : 0;
    if (code < ENT_ERR_COUNT_)
        impl->stats.results[code]++;
    sl->state = W_SEND;
    sl->call_id = 0;
    nng_aio_set_msg(sl->aio, msg);
    nng_ctx_send(sl->ctx, sl->aio);
    return ENT_OK;
}

ent_err ent_bus_server_reply(struct ent_bus_server *s, uint64_t call_id,
                             Entitle__V1__Response *resp)
{
    return server_reply(s, call_id, resp, true);
}

static ent_err server_reply_status(struct ent_bus_server *s, uint64_t call_id, ent_err code,
                                   const char *message, bool drop_late)
{
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    st.code = (Entitle__V1__Code)code;
    st.message = (char *)(message != NULL ? message : "");
    resp.status = &st;
    return server_reply(s, call_id, &resp, drop_late);
}

ent_err ent_bus_server_reply_error(struct ent_bus_server *s, uint64_t call_id, ent_err code,
                                   const char *message)
{
    return server_reply_status(s, call_id, code, message, true);
}

int ent_bus_server_port(const struct ent_bus_server *s)
{
    return s->impl_ != NULL ? s->impl_->port : -1;
}

const struct ent_bus_stats *ent_bus_server_stats(const struct ent_bus_server *s)
{
    return &s->impl_->stats;
}

void ent_bus_server_close(struct ent_bus_server *s, void (*closed_cb)(struct ent_bus_server *s))
{
    struct ent_bus_server_impl *impl = s->impl_;
    assert(!atomic_load(&impl->closing));
    impl->closed_cb = closed_cb;
    atomic_store(&impl->closing, true);
    server_teardown(impl, impl->n_slots);
    bus_inbox_close(&impl->inbox, on_server_inbox_closed);
}
