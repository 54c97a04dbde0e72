/* SPDX-License-Identifier: Apache-2.0 */
/* Change events over NNG PUB/SUB. The publisher stamps each event with its name, a
 * per-publisher sequence number and the time; subscribers dial every publisher and deliver
 * events on their loop with a `gap` flag. PUB drops events for slow or absent subscribers,
 * so the flag is what keeps caches honest (DESIGN.md §2 "Decision cache and staleness").
 *
 * Gap rule, per publisher name: an event continues the stream only if it came over the
 * same connection (NNG pipe id) as the previous one and its seq is exactly one more. The
 * first event from a publisher, the first after a reconnect (new pipe) and any skipped or
 * restarted seq are gaps. Matching the pipe id needs no pipe notifications, so the rule
 * holds even when a reconnect loses no event.
 *
 * Links: a PUB socket drops what it publishes while a subscriber is not connected, and no
 * later event need come to reveal the loss. So the subscriber also follows its connections
 * (NNG pipe notifications, relayed to the loop through the same inbox as the events, so they
 * stay in order with them) and tells the consumer at once when a connection to a publisher
 * comes up or goes down; ent_bus_sub_links() says whether every dialer has a live
 * connection, which is when an event stream can be trusted to be complete. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "bus_int.h"
#include "ent/log.h"
#include "ent/util.h"

#define SUB_RECONNECT_MIN_MS 100u
#define SUB_RECONNECT_MAX_MS 2000u
/* Events the SUB socket holds for a busy loop before NNG drops them (a gap follows). */
#define SUB_RECV_BUFFER 1024
/* Distinct publisher names remembered; past that the table is reset, which only turns
 * the next event of each publisher into a (harmless, cache-flushing) gap. */
#define SUB_MAX_PUBLISHERS 256u
/* Inbox items that are not events: a connection came up or went down (bus_item.rv). NNG
 * errors are positive, so these cannot collide with a failed receive. */
#define SUB_ITEM_LINK_UP   (-1)
#define SUB_ITEM_LINK_DOWN (-2)

struct ent_bus_pub_impl {
    nng_socket sock;
    uv_mutex_t mu; /* orders seq with sends */
    uint64_t seq;
    char *name;
    int port;
};

struct sub_publisher {
    char *name;
    uint64_t last_seq;
    uint32_t pipe;
};

/* Live connections of one dialer (loop thread). */
struct sub_link {
    uint32_t dialer;
    uint32_t pipes;
};

struct ent_bus_sub_impl {
    struct ent_bus_sub *owner;
    struct bus_inbox inbox;
    nng_socket sock;
    bool sock_open;
    nng_aio *aio;
    atomic_bool closing;
    ent_bus_event_cb cb;
    void *ud;
    struct sub_publisher *pubs;
    size_t n_pubs;
    void (*closed_cb)(struct ent_bus_sub *s);
    struct bus_peerset *peers;
    /* links: pipe notifications (NNG threads) push under pipe_mu, which also orders them
     * with `closing`, so nothing is pushed once teardown began */
    uv_mutex_t pipe_mu;
    bool pipe_mu_ready;
    atomic_bool links_unknown; /* a notification was lost (no memory): never trusted again */
    ent_bus_link_cb link_cb;
    struct sub_link *links;
    size_t n_links, cap_links;
};

const char *ent_bus_change_kind_name(int kind)
{
    switch (kind) {
    case ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER:
        return "subscriber";
    case ENTITLE__V1__CHANGE_KIND__CHANGE_TOKENS_REVOKED:
        return "tokens_revoked";
    case ENTITLE__V1__CHANGE_KIND__CHANGE_ALL:
        return "all";
    default:
        return NULL;
    }
}

/* --- publisher ------------------------------------------------------------------------- */

ent_err ent_bus_pub_init(struct ent_bus_pub *p, const char *listen,
                         const struct ent_bus_tls_cfg *tls, const char *publisher_name)
{
    if (listen == NULL || publisher_name == NULL)
        return ENT_EINVAL;
    struct ent_bus_pub_impl *impl = calloc(1, sizeof(*impl));
    if (impl == NULL)
        return ENT_ENOMEM;
    impl->name = strdup(publisher_name);
    if (impl->name == NULL) {
        free(impl);
        return ENT_ENOMEM;
    }
    int rv = uv_mutex_init(&impl->mu);
    if (rv != 0) {
        free(impl->name);
        free(impl);
        return ent_err_from_uv(rv);
    }
    ent_err rc = ENT_OK;
    rv = nng_pub0_open(&impl->sock);
    if (rv != 0) {
        rc = bus_err_from_nng(rv);
    } else {
        rc = bus_listen(impl->sock, listen, tls, &impl->port);
        if (rc != ENT_OK)
            nng_close(impl->sock);
    }
    if (rc != ENT_OK) {
        uv_mutex_destroy(&impl->mu);
        free(impl->name);
        free(impl);
        return rc;
    }
    p->impl_ = impl;
    return ENT_OK;
}

ent_err ent_bus_publish(struct ent_bus_pub *p, Entitle__V1__ChangeEvent *ev)
{
    struct ent_bus_pub_impl *impl = p->impl_;
    if (impl == NULL)
        return ENT_ECLOSED;
    if (ev == NULL)
        return ENT_EINVAL;
    Entitle__V1__ChangeEvent copy = *ev;
    copy.publisher = impl->name;
    nng_msg *msg = NULL;

    uv_mutex_lock(&impl->mu);
    copy.seq = impl->seq + 1;
    copy.time_unix_ms = ent_wall_ms();
    ent_err rc = bus_pack(&msg, &copy.base);
    if (rc == ENT_OK) {
        /* PUB never blocks: it queues to each subscriber or drops. */
        int rv = nng_sendmsg(impl->sock, msg, 0);
        if (rv != 0) {
            nng_msg_free(msg);
            rc = bus_err_from_nng(rv);
        }
    }
    if (rc == ENT_OK) {
        impl->seq = copy.seq;
        ev->seq = copy.seq;
        ev->time_unix_ms = copy.time_unix_ms;
    }
    uv_mutex_unlock(&impl->mu);
    return rc;
}

int ent_bus_pub_port(const struct ent_bus_pub *p)
{
    return p->impl_ != NULL ? p->impl_->port : -1;
}

void ent_bus_pub_close(struct ent_bus_pub *p)
{
    struct ent_bus_pub_impl *impl = p->impl_;
    if (impl == NULL)
        return;
    p->impl_ = NULL;
    nng_close(impl->sock);
    uv_mutex_destroy(&impl->mu);
    free(impl->name);
    free(impl);
}

/* --- subscriber ------------------------------------------------------------------------ */

/* NNG thread: one event arrived (or the socket is closing). */
static void on_sub_aio(void *arg)
{
    struct ent_bus_sub_impl *impl = arg;
    int rv = nng_aio_result(impl->aio);
    if (rv == 0) {
        nng_msg *msg = nng_aio_get_msg(impl->aio);
        nng_aio_set_msg(impl->aio, NULL);
        struct bus_item *it = malloc(sizeof(*it));
        if (it == NULL) {
            /* Dropped like any PUB/SUB loss: the next event shows the gap. */
            nng_msg_free(msg);
        } else {
            it->id = (uint64_t)nng_pipe_id(nng_msg_get_pipe(msg));
            it->rv = 0;
            it->msg = msg;
            bus_inbox_push(&impl->inbox, it);
        }
    } else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }
    if (atomic_load(&impl->closing))
        return;
    nng_recv_aio(impl->sock, impl->aio);
}

/* NNG thread: a connection to a publisher came up or went down. */
static void on_sub_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    struct ent_bus_sub_impl *impl = arg;
    uv_mutex_lock(&impl->pipe_mu);
    if (!atomic_load(&impl->closing)) {
        struct bus_item *it = malloc(sizeof(*it));
        if (it == NULL) {
            atomic_store(&impl->links_unknown, true);
        } else {
            uint32_t dialer = (uint32_t)nng_dialer_id(nng_pipe_dialer(pipe));
            it->id = (uint64_t)dialer << 32 | (uint32_t)nng_pipe_id(pipe);
            it->rv = ev == NNG_PIPE_EV_ADD_POST ? SUB_ITEM_LINK_UP : SUB_ITEM_LINK_DOWN;
            it->msg = NULL;
            bus_inbox_push(&impl->inbox, it);
        }
    }
    uv_mutex_unlock(&impl->pipe_mu);
}

/* Loop thread: the link table follows one notification. */
static void sub_link_note(struct ent_bus_sub_impl *impl, uint32_t dialer, bool up)
{
    struct sub_link *l = NULL;
    for (size_t i = 0; i < impl->n_links && l == NULL; i++)
        if (impl->links[i].dialer == dialer)
            l = &impl->links[i];
    if (up) {
        if (l == NULL) {
            if (impl->n_links == impl->cap_links) {
                size_t cap = impl->cap_links ? impl->cap_links * 2 : 8;
                struct sub_link *n = realloc(impl->links, cap * sizeof(*n));
                if (n == NULL) {
                    atomic_store(&impl->links_unknown, true);
                    return;
                }
                impl->links = n;
                impl->cap_links = cap;
            }
            l = &impl->links[impl->n_links++];
            l->dialer = dialer;
            l->pipes = 0;
        }
        l->pipes++;
    } else if (l != NULL) {
        if (l->pipes > 0)
            l->pipes--;
        if (l->pipes == 0)
            *l = impl->links[--impl->n_links];
    }
}

static void sub_link_deliver(struct ent_bus_sub_impl *impl, struct bus_item *it)
{
    bool up = it->rv == SUB_ITEM_LINK_UP;
    uint32_t dialer = (uint32_t)(it->id >> 32);
    free(it);
    if (atomic_load(&impl->closing))
        return;
    sub_link_note(impl, dialer, up);
    size_t links_up = 0, links_total = 0;
    ent_bus_sub_links(impl->owner, &links_up, &links_total);
    ENT_LOG_INFO(NULL, up ? "bus.publisher_connected" : "bus.publisher_disconnected",
                 ENT_KV_U64("links_up", links_up), ENT_KV_U64("links_total", links_total));
    if (impl->link_cb != NULL)
        impl->link_cb(up, impl->ud);
}

static struct sub_publisher *sub_publisher_get(struct ent_bus_sub_impl *impl, const char *name,
                                               bool *is_new)
{
    *is_new = false;
    for (size_t i = 0; i < impl->n_pubs; i++) {
        if (strcmp(impl->pubs[i].name, name) == 0)
            return &impl->pubs[i];
    }
    if (impl->n_pubs == SUB_MAX_PUBLISHERS) {
        for (size_t i = 0; i < impl->n_pubs; i++)
            free(impl->pubs[i].name);
        impl->n_pubs = 0;
    }
    if (impl->pubs == NULL) {
        impl->pubs = calloc(SUB_MAX_PUBLISHERS, sizeof(*impl->pubs));
        if (impl->pubs == NULL)
            return NULL;
    }
    struct sub_publisher *sp = &impl->pubs[impl->n_pubs];
    sp->name = strdup(name);
    if (sp->name == NULL)
        return NULL;
    impl->n_pubs++;
    *is_new = true;
    return sp;
}

/* Loop thread. */
static void sub_deliver(struct bus_inbox *in, struct bus_item *it)
{
    struct ent_bus_sub_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_sub_impl, inbox);
    if (it->rv == SUB_ITEM_LINK_UP || it->rv == SUB_ITEM_LINK_DOWN) {
        sub_link_deliver(impl, it);
        return;
    }
    nng_msg *msg = it->msg;
    uint32_t pipe = (uint32_t)it->id;
    free(it);
    if (atomic_load(&impl->closing)) {
        nng_msg_free(msg);
        return;
    }
    Entitle__V1__ChangeEvent *ev =
        entitle__v1__change_event__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    size_t len = nng_msg_len(msg);
    nng_msg_free(msg);
    if (ev == NULL) {
        ENT_LOG_WARN(NULL, "bus.bad_event", ENT_KV_U64("len", len));
        return;
    }
    bool is_new = false;
    struct sub_publisher *sp =
        sub_publisher_get(impl, ev->publisher != NULL ? ev->publisher : "", &is_new);
    bool new_conn = sp == NULL || is_new || sp->pipe != pipe;
    uint64_t last_seq = sp != NULL && !is_new ? sp->last_seq : 0;
    bool gap = new_conn || ev->seq != last_seq + 1;
    if (sp != NULL) {
        sp->pipe = pipe;
        sp->last_seq = ev->seq;
    }
    if (gap)
        ENT_LOG_INFO(NULL, "bus.event_gap", ENT_KV_STR("publisher", ev->publisher),
                     ENT_KV_U64("seq", ev->seq), ENT_KV_U64("last_seq", last_seq),
                     ENT_KV_BOOL("new_connection", new_conn));
    impl->cb(ev, gap, impl->ud);
    entitle__v1__change_event__free_unpacked(ev, NULL);
}

static void sub_free(struct ent_bus_sub_impl *impl)
{
    for (size_t i = 0; i < impl->n_pubs; i++)
        free(impl->pubs[i].name);
    free(impl->pubs);
    free(impl->links);
    if (impl->pipe_mu_ready)
        uv_mutex_destroy(&impl->pipe_mu);
    free(impl);
}

static void sub_teardown(struct ent_bus_sub_impl *impl)
{
    /* Under pipe_mu: a pipe notification running now finishes its push first, and none
     * pushes afterwards (the inbox closes after this). */
    if (impl->pipe_mu_ready)
        uv_mutex_lock(&impl->pipe_mu);
    atomic_store(&impl->closing, true);
    if (impl->pipe_mu_ready)
        uv_mutex_unlock(&impl->pipe_mu);
    if (impl->aio != NULL)
        nng_aio_stop(impl->aio);
    bus_peerset_close(impl->peers); /* before the socket, which owns the dialers */
    impl->peers = NULL;
    if (impl->sock_open)
        nng_close(impl->sock);
    impl->sock_open = false;
    if (impl->aio != NULL)
        nng_aio_free(impl->aio);
    impl->aio = NULL;
}

static void on_sub_init_failed_closed(struct bus_inbox *in)
{
    sub_free(ENT_CONTAINER_OF(in, struct ent_bus_sub_impl, inbox));
}

static ent_err sub_open(struct ent_bus_sub_impl *impl, uv_loop_t *loop, const char *const *addrs,
                        size_t n_addrs, const struct ent_bus_tls_cfg *tls)
{
    int rv = nng_sub0_open(&impl->sock);
    if (rv != 0)
        return bus_err_from_nng(rv);
    impl->sock_open = true;
    rv = nng_socket_set(impl->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    if (rv == 0)
        rv = nng_socket_set_size(impl->sock, NNG_OPT_RECVMAXSZ, BUS_MAX_MSG_SIZE);
    if (rv == 0)
        rv = nng_socket_set_int(impl->sock, NNG_OPT_RECVBUF, SUB_RECV_BUFFER);
    if (rv == 0)
        rv = nng_aio_alloc(&impl->aio, on_sub_aio, impl);
    /* Before any dialer starts, so no connection goes unseen. */
    if (rv == 0)
        rv = nng_pipe_notify(impl->sock, NNG_PIPE_EV_ADD_POST, on_sub_pipe, impl);
    if (rv == 0)
        rv = nng_pipe_notify(impl->sock, NNG_PIPE_EV_REM_POST, on_sub_pipe, impl);
    if (rv != 0)
        return bus_err_from_nng(rv);
    struct bus_peerset_cfg pc = {
        .addrs = addrs,
        .n_addrs = n_addrs,
        .tls = tls,
        .reconnect_min_ms = SUB_RECONNECT_MIN_MS,
        .reconnect_max_ms = SUB_RECONNECT_MAX_MS,
        .what = "sub",
    };
    ent_err rc = bus_peerset_init(&impl->peers, loop, impl->sock, &pc);
    if (rc != ENT_OK)
        return rc;
    nng_recv_aio(impl->sock, impl->aio);
    return ENT_OK;
}

ent_err ent_bus_sub_init(struct ent_bus_sub *s, uv_loop_t *loop, const char *const *addrs,
                         size_t n_addrs, const struct ent_bus_tls_cfg *tls, ent_bus_event_cb cb,
                         void *ud)
{
    if (addrs == NULL || n_addrs == 0 || cb == NULL)
        return ENT_EINVAL;
    struct ent_bus_sub_impl *impl = calloc(1, sizeof(*impl));
    if (impl == NULL)
        return ENT_ENOMEM;
    impl->owner = s;
    impl->cb = cb;
    impl->ud = ud;
    atomic_init(&impl->closing, false);
    atomic_init(&impl->links_unknown, false);
    int uv_rc = uv_mutex_init(&impl->pipe_mu);
    if (uv_rc != 0) {
        free(impl);
        return ent_err_from_uv(uv_rc);
    }
    impl->pipe_mu_ready = true;
    ent_err rc = bus_inbox_init(&impl->inbox, loop, sub_deliver);
    if (rc != ENT_OK) {
        sub_free(impl);
        return rc;
    }
    rc = sub_open(impl, loop, addrs, n_addrs, tls);
    if (rc != ENT_OK) {
        sub_teardown(impl);
        bus_inbox_close(&impl->inbox, on_sub_init_failed_closed);
        return rc;
    }
    s->impl_ = impl;
    return ENT_OK;
}

static void on_sub_inbox_closed(struct bus_inbox *in)
{
    struct ent_bus_sub_impl *impl = ENT_CONTAINER_OF(in, struct ent_bus_sub_impl, inbox);
    struct ent_bus_sub *s = impl->owner;
    void (*closed_cb)(struct ent_bus_sub *) = impl->closed_cb;
    sub_free(impl);
    s->impl_ = NULL;
    if (closed_cb != NULL)
        closed_cb(s);
}

void ent_bus_sub_on_link(struct ent_bus_sub *s, ent_bus_link_cb cb)
{
    s->impl_->link_cb = cb;
}

void ent_bus_sub_links(const struct ent_bus_sub *s, size_t *up, size_t *total)
{
    const struct ent_bus_sub_impl *impl = s->impl_;
    uint32_t ids[64];
    size_t n = impl->peers != NULL ? bus_peerset_dialer_ids(impl->peers, ids, 64) : 0;
    size_t live = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        for (size_t j = 0; j < impl->n_links; j++)
            if (impl->links[j].dialer == ids[i] && impl->links[j].pipes > 0) {
                live++;
                break;
            }
    /* Past 64 dialers the rest count as down: untrusted, never wrongly trusted. */
    *up = atomic_load(&impl->links_unknown) ? 0 : live;
    *total = n;
}

void ent_bus_sub_close(struct ent_bus_sub *s, void (*closed_cb)(struct ent_bus_sub *s))
{
    struct ent_bus_sub_impl *impl = s->impl_;
    impl->closed_cb = closed_cb;
    sub_teardown(impl);
    bus_inbox_close(&impl->inbox, on_sub_inbox_closed);
}
