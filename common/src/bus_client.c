/* SPDX-License-Identifier: Apache-2.0 */
/* The RPC client: one REQ socket, one dialer per server address, and a fixed pool of
 * `max_inflight` slots (an nng_ctx and an aio each) allocated at init. The pool size is the
 * in-flight bound of DESIGN.md §1: when it is used up, calls fail at once with
 * ENT_ESATURATED instead of queueing. Completions reach the loop through the inbox
 * (bus.c) carrying a slot index; the reply callback always runs on the loop.
 *
 * A slot's life ("thread" says who makes the transition):
 *
 *     FREE --ent_bus_call (loop)--> SEND --sent (nng)--> RECV --reply/error (nng)--> DONE
 *       ^                             |                                               |
 *       |                             +------------send error / closing (nng)---------+
 *       +---------------------------client_deliver (loop): cb runs--------------------+
 *
 * FREE->SEND happens before the aio is started and DONE->FREE after its completion was
 * queued, so loop and NNG threads never write a slot at the same time; the inbox mutex and
 * NNG's own aio locking order the hand-overs. Slots are reused only after the loop has
 * called the reply callback, so a completion always finds its call. */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "bus_int.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/util.h"

static ent_counter bus_client_calls =
    ENT_COUNTER("entitle_bus_client_calls_total", "RPCs completed by this process as a client",
                "rpc", "result");
static ent_histogram bus_client_seconds = ENT_HISTOGRAM(
    "entitle_bus_client_call_seconds", "Client-side RPC latency",
    ENT_BUCKETS(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1), "rpc");
static ent_counter bus_client_saturated = ENT_COUNTER(
    "entitle_bus_client_saturated_total", "RPCs refused at once: in-flight limit reached", "rpc");
static ent_counter bus_client_late =
    ENT_COUNTER("entitle_bus_client_late_replies_total", "Replies that found their call gone");

#define CLIENT_DEFAULT_INFLIGHT         256u
#define CLIENT_MAX_INFLIGHT             65536u
#define CLIENT_DEFAULT_RECONNECT_MIN_MS 100u
#define CLIENT_DEFAULT_RECONNECT_MAX_MS 2000u
/* NNG REQ re-sends a request that got no reply after this long, possibly to another peer,
 * so a server that restarted mid-call still gets it (every RPC is idempotent). */
#define CLIENT_DEFAULT_RESEND_MS 1000u
/* "bus.saturated" is logged at most this often; the counter keeps the exact number. */
#define CLIENT_SATURATED_LOG_MS 1000u

enum slot_state { SLOT_FREE, SLOT_SEND, SLOT_RECV, SLOT_DONE };

struct client_slot {
    struct ent_bus_client_impl *impl;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state;
    uint64_t request_id;
    uint64_t deadline_ms; /* monotonic */
    ent_bus_reply_cb cb;
    void *ud;
    char trace[64];
    const char *rpc;      /* body field name, a static string of the descriptor, for metrics */
    uint64_t start_ns;    /* monotonic, for the latency histogram */
    struct bus_item item; /* item.id is this slot's index */
};

struct ent_bus_client_impl {
    struct ent_bus_client *owner;
    struct bus_inbox inbox;
    nng_socket sock;
    bool sock_open;
    struct client_slot *slots;
    unsigned n_slots;
    unsigned *free_stack; /* indices of FREE slots */
    unsigned n_free;
    atomic_bool closing;
    char *caller;
    uint64_t saturated_logged_ms;
    struct ent_bus_stats stats;
    struct bus_peerset *peers;
    void (*closed_cb)(struct ent_bus_client *c);
};

/* Unique per process across all clients, as RequestHeader.request_id promises. */
static atomic_uint_fast64_t next_request_id = 1;

/* NNG thread (or the loop during close, once every aio is stopped). */
static void slot_complete(struct client_slot *sl, int rv, nng_msg *msg)
{
    sl->state = SLOT_DONE;
    sl->item.rv = rv;
    sl->item.msg = msg;
    bus_inbox_push(&sl->impl->inbox, &sl->item);
}

/* NNG thread: the send finished (or failed), or the reply arrived (or did not). */
static void on_client_aio(void *arg)
{
    struct client_slot *sl = arg;
    int rv = nng_aio_result(sl->aio);

    if (sl->state == SLOT_SEND) {
        if (rv != 0) {
            /* A failed send leaves the message with us. */
            nng_msg_free(nng_aio_get_msg(sl->aio));
            nng_aio_set_msg(sl->aio, NULL);
            slot_complete(sl, rv, NULL);
            return;
        }
        if (atomic_load(&sl->impl->closing)) {
            slot_complete(sl, NNG_ECLOSED, NULL);
            return;
        }
        /* At least 1 ms: a zero timeout fails before NNG registers the wait, and the
         * context would then keep re-sending the abandoned request. */
        uint64_t now = ent_now_ms();
        uint64_t left = sl->deadline_ms > now ? sl->deadline_ms - now : 1;
        sl->state = SLOT_RECV;
        nng_aio_set_timeout(sl->aio, (nng_duration)left);
        nng_ctx_recv(sl->ctx, sl->aio);
        return;
    }
    assert(sl->state == SLOT_RECV);
    slot_complete(sl, rv, rv == 0 ? nng_aio_get_msg(sl->aio) : NULL);
}

static void slot_release(struct ent_bus_client_impl *impl, struct client_slot *sl)
{
    sl->state = SLOT_FREE;
    sl->cb = NULL;
    sl->ud = NULL;
    impl->free_stack[impl->n_free++] = (unsigned)(sl - impl->slots);
}

/* Loop thread: one completion from the inbox. */
static void client_deliver(struct bus_inbox *in, struct bus_item *it)
{
    struct ent_bus_client_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_client_impl, inbox);
    struct client_slot *sl = &impl->slots[it->id];
    nng_msg *msg = it->msg;
    int rv = it->rv;
    it->msg = NULL;

    if (sl->state != SLOT_DONE) {
        /* Not expected (a slot has one completion at a time), but a reply without its call
         * must never reach a caller. */
        impl->stats.late_replies++;
        ent_counter_inc(&bus_client_late);
        ENT_LOG_WARN(NULL, "bus.late_reply", ENT_KV_U64("slot", it->id));
        nng_msg_free(msg);
        return;
    }

    Entitle__V1__Response *resp = NULL;
    ent_err status;
    if (rv == 0) {
        resp = entitle__v1__response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
        if (resp == NULL || resp->request_id != sl->request_id) {
            ENT_LOG_WARN(sl->trace, "bus.bad_reply", ENT_KV_U64("request_id", sl->request_id),
                         ENT_KV_U64("len", nng_msg_len(msg)), ENT_KV_BOOL("decoded", resp != NULL));
            if (resp != NULL)
                entitle__v1__response__free_unpacked(resp, NULL);
            resp = NULL;
            status = ENT_EPROTO;
        } else {
            status = ENT_OK;
        }
    } else {
        status = bus_err_from_nng(rv);
        ENT_LOG_DEBUG(sl->trace, "bus.call_failed", ENT_KV_U64("request_id", sl->request_id),
                      ENT_KV_STR("reason", ent_err_name(status)));
    }
    nng_msg_free(msg);

    ent_bus_reply_cb cb = sl->cb;
    void *ud = sl->ud;
    ent_counter_inc(&bus_client_calls, sl->rpc, ent_err_name(status));
    ent_histogram_observe(&bus_client_seconds, (double)(ent_now_ns() - sl->start_ns) / 1e9,
                          sl->rpc);
    slot_release(impl, sl); /* first, so the callback may call again */
    impl->stats.results[status]++;
    cb(status, resp, ud);
}

static void client_free(struct ent_bus_client_impl *impl)
{
    free(impl->slots);
    free(impl->free_stack);
    free(impl->caller);
    free(impl);
}

/* Loop thread: undoes init for slots [0, n_ready) and the socket; the inbox is closed by
 * the caller. Every aio is stopped before any context or the socket closes. */
static void client_teardown(struct ent_bus_client_impl *impl, unsigned n_ready)
{
    for (unsigned i = 0; i < n_ready; i++)
        nng_aio_stop(impl->slots[i].aio);
    for (unsigned i = 0; i < n_ready; i++) {
        struct client_slot *sl = &impl->slots[i];
        /* Stopped before its completion was queued (NNG may refuse a new operation on a
         * stopped aio without calling back): finish it here, once. */
        if (sl->state == SLOT_SEND || sl->state == SLOT_RECV) {
            nng_msg_free(nng_aio_get_msg(sl->aio));
            nng_aio_set_msg(sl->aio, NULL);
            slot_complete(sl, NNG_ECLOSED, NULL);
        }
    }
    for (unsigned i = 0; i < n_ready; i++)
        nng_ctx_close(impl->slots[i].ctx);
    bus_peerset_close(impl->peers); /* before the socket, which owns the dialers */
    impl->peers = NULL;
    if (impl->sock_open)
        nng_close(impl->sock);
    impl->sock_open = false;
    for (unsigned i = 0; i < n_ready; i++)
        nng_aio_free(impl->slots[i].aio);
}

static void on_init_failed_inbox_closed(struct bus_inbox *in)
{
    client_free(ENT_CONTAINER_OF(in, struct ent_bus_client_impl, inbox));
}

static ent_err client_open(struct ent_bus_client_impl *impl, uv_loop_t *loop,
                           const struct ent_bus_client_cfg *cfg, unsigned *n_ready)
{
    int rv = nng_req0_open(&impl->sock);
    if (rv != 0)
        return bus_err_from_nng(rv);
    impl->sock_open = true;
    uint64_t resend = cfg->resend_ms != 0 ? cfg->resend_ms : CLIENT_DEFAULT_RESEND_MS;
    rv = nng_socket_set_ms(impl->sock, NNG_OPT_REQ_RESENDTIME, (nng_duration)resend);
    if (rv == 0)
        rv = nng_socket_set_size(impl->sock, NNG_OPT_RECVMAXSZ, BUS_MAX_MSG_SIZE);
    if (rv != 0)
        return bus_err_from_nng(rv);

    for (unsigned i = 0; i < impl->n_slots; i++) {
        struct client_slot *sl = &impl->slots[i];
        sl->impl = impl;
        sl->item.id = i;
        ent_err rc = bus_ctx_open(impl->sock, &sl->aio, &sl->ctx, on_client_aio, sl);
        if (rc != ENT_OK)
            return rc;
        *n_ready = i + 1;
        impl->free_stack[impl->n_free++] = impl->n_slots - 1 - i;
    }

    uint64_t rmin =
        cfg->reconnect_min_ms != 0 ? cfg->reconnect_min_ms : CLIENT_DEFAULT_RECONNECT_MIN_MS;
    uint64_t rmax =
        cfg->reconnect_max_ms != 0 ? cfg->reconnect_max_ms : CLIENT_DEFAULT_RECONNECT_MAX_MS;
    if (rmax < rmin)
        rmax = rmin;
    struct bus_peerset_cfg pc = {
        .addrs = cfg->addrs,
        .n_addrs = cfg->n_addrs,
        .tls = cfg->tls,
        .reconnect_min_ms = rmin,
        .reconnect_max_ms = rmax,
        .resolve_interval_ms = cfg->resolve_interval_ms,
        .what = "client",
    };
    return bus_peerset_init(&impl->peers, loop, impl->sock, &pc);
}

ent_err ent_bus_client_init(struct ent_bus_client *c, uv_loop_t *loop,
                            const struct ent_bus_client_cfg *cfg)
{
    if (cfg == NULL || cfg->addrs == NULL || cfg->n_addrs == 0)
        return ENT_EINVAL;
    unsigned n = cfg->max_inflight != 0 ? cfg->max_inflight : CLIENT_DEFAULT_INFLIGHT;
    if (n > CLIENT_MAX_INFLIGHT)
        return ENT_EINVAL;

    struct ent_bus_client_impl *impl = calloc(1, sizeof(*impl));
    if (impl == NULL)
        return ENT_ENOMEM;
    impl->owner = c;
    impl->n_slots = n;
    impl->slots = calloc(n, sizeof(*impl->slots));
    impl->free_stack = calloc(n, sizeof(*impl->free_stack));
    impl->caller = strdup(cfg->caller != NULL ? cfg->caller : "");
    atomic_init(&impl->closing, false);
    if (impl->slots == NULL || impl->free_stack == NULL || impl->caller == NULL) {
        client_free(impl);
        return ENT_ENOMEM;
    }
    ent_err rc = bus_inbox_init(&impl->inbox, loop, client_deliver);
    if (rc != ENT_OK) {
        client_free(impl);
        return rc;
    }
    unsigned n_ready = 0;
    rc = client_open(impl, loop, cfg, &n_ready);
    if (rc != ENT_OK) {
        atomic_store(&impl->closing, true);
        client_teardown(impl, n_ready);
        /* No call was ever made, so the close callback delivers nothing. */
        bus_inbox_close(&impl->inbox, on_init_failed_inbox_closed);
        return rc;
    }
    c->impl_ = impl;
    return ENT_OK;
}

ent_err ent_bus_call(struct ent_bus_client *c, const Entitle__V1__Request *req, uint64_t timeout_ms,
                     const char *trace_id, ent_bus_reply_cb cb, void *ud)
{
    struct ent_bus_client_impl *impl = c->impl_;
    if (req == NULL || cb == NULL || timeout_ms == 0 || timeout_ms > INT32_MAX)
        return ENT_EINVAL;
    if (atomic_load(&impl->closing))
        return ENT_ECLOSED;
    const ProtobufCFieldDescriptor *body = protobuf_c_message_descriptor_get_field(
        &entitle__v1__request__descriptor, (unsigned)req->body_case);
    const char *rpc = body != NULL ? body->name : "none";
    if (impl->n_free == 0) {
        impl->stats.saturated++;
        ent_counter_inc(&bus_client_saturated, rpc);
        uint64_t now = ent_now_ms();
        if (now - impl->saturated_logged_ms >= CLIENT_SATURATED_LOG_MS) {
            impl->saturated_logged_ms = now;
            ENT_LOG_WARN(trace_id, "bus.saturated", ENT_KV_U64("inflight", impl->n_slots),
                         ENT_KV_U64("refused_total", impl->stats.saturated));
        }
        return ENT_ESATURATED;
    }

    /* Pack a copy whose header the bus fills, so the caller's message is never modified
     * and never points at bus memory. */
    Entitle__V1__RequestHeader hdr = ENTITLE__V1__REQUEST_HEADER__INIT;
    if (req->header != NULL && req->header->idempotency_key != NULL)
        hdr.idempotency_key = req->header->idempotency_key;
    hdr.request_id = atomic_fetch_add(&next_request_id, 1);
    hdr.deadline_unix_ms = ent_wall_ms() + timeout_ms;
    hdr.trace_id = (char *)(trace_id != NULL ? trace_id : "");
    hdr.caller = impl->caller;
    Entitle__V1__Request copy = *req;
    copy.header = &hdr;
    nng_msg *msg = NULL;
    ent_err rc = bus_pack(&msg, &copy.base);
    if (rc != ENT_OK)
        return rc;

    unsigned idx = impl->free_stack[--impl->n_free];
    struct client_slot *sl = &impl->slots[idx];
    assert(sl->state == SLOT_FREE);
    sl->state = SLOT_SEND;
    sl->request_id = hdr.request_id;
    sl->deadline_ms = ent_now_ms() + timeout_ms;
    sl->cb = cb;
    sl->ud = ud;
    sl->rpc = rpc;
    sl->start_ns = ent_now_ns();
    snprintf(sl->trace, sizeof(sl->trace), "%s", trace_id != NULL ? trace_id : "");
    impl->stats.calls++;
    /* The send waits for a connected server within the same deadline. */
    nng_aio_set_msg(sl->aio, msg);
    nng_aio_set_timeout(sl->aio, (nng_duration)timeout_ms);
    nng_ctx_send(sl->ctx, sl->aio);
    return ENT_OK;
}

struct bus_peerset *bus_client_peers(const struct ent_bus_client *c)
{
    return c->impl_->peers;
}

size_t ent_bus_client_dialers(const struct ent_bus_client *c)
{
    return bus_peerset_dialers(c->impl_->peers);
}

unsigned ent_bus_client_inflight(const struct ent_bus_client *c)
{
    return c->impl_->n_slots - c->impl_->n_free;
}

const struct ent_bus_stats *ent_bus_client_stats(const struct ent_bus_client *c)
{
    return &c->impl_->stats;
}

static void on_client_inbox_closed(struct bus_inbox *in)
{
    struct ent_bus_client_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_client_impl, inbox);
    struct ent_bus_client *c = impl->owner;
    void (*closed_cb)(struct ent_bus_client *) = impl->closed_cb;
    assert(impl->n_free == impl->n_slots);
    client_free(impl);
    c->impl_ = NULL;
    if (closed_cb != NULL)
        closed_cb(c);
}

void ent_bus_client_close(struct ent_bus_client *c, void (*closed_cb)(struct ent_bus_client *c))
{
    struct ent_bus_client_impl *impl = c->impl_;
    assert(!atomic_load(&impl->closing));
    impl->closed_cb = closed_cb;
    atomic_store(&impl->closing, true);
    /* Outstanding calls now complete with ECLOSED through the inbox; its close callback
     * delivers them on a later loop iteration and only then frees the pool. */
    client_teardown(impl, impl->n_slots);
    bus_inbox_close(&impl->inbox, on_client_inbox_closed);
}
