/* SPDX-License-Identifier: Apache-2.0 */
/* The push relay (diagram and contract in relay.h): the queue writes, the claim timer, one
 * Push RPC per push of a claimed intent, and what the outcomes do to the intent. The
 * idempotency key travels inside each stored PushRequest, so every resend (after a timeout,
 * a restart or a takeover) carries the same key and notifyd keeps one outbox item for it —
 * which is also why a batch whose handoff partly failed is simply resent whole. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/util.h"
#include "relay.h"

static ent_counter handoffs = ENT_COUNTER("entitle_policyd_push_handoffs_total",
                                          "Push intents handed to notifyd, by result", "result");
static ent_counter retries =
    ENT_COUNTER("entitle_policyd_push_retries_total",
                "Push handoffs re-queued with backoff, by reason", "reason");
static ent_counter queue_errors = ENT_COUNTER("entitle_policyd_push_queue_errors_total",
                                              "Push queue store calls that failed", "op", "reason");
static ent_gauge queue_pending =
    ENT_GAUGE("entitle_policyd_push_queue_pending", "Push intents not yet handed to notifyd");
static ent_gauge queue_dead = ENT_GAUGE("entitle_policyd_push_queue_dead",
                                        "Push intents notifyd refused for good (dead letters)");
static ent_gauge queue_oldest = ENT_GAUGE("entitle_policyd_push_queue_oldest_pending_seconds",
                                          "Age of the oldest push intent not yet handed over");

#define STATS_INTERVAL_MS 2000

struct handoff;

struct push_call {
    struct handoff *h;
    size_t index; /* in h->intent->pushes */
};

/* One claimed intent being handed over: its pushes go out as separate Push RPCs and the
 * intent is settled once every one has answered. */
struct handoff {
    struct pd_relay *r;
    uint64_t id;
    uint64_t lease_token;
    uint32_t attempts;
    Entitle__V1__PushIntent *intent;
    struct push_call *calls;
    bool *refused_at;  /* per push: notifyd refused it for good (or it does not decode) */
    size_t pending;    /* Push RPCs not answered yet */
    ent_err transient; /* first failure that a resend may cure, or ENT_OK */
    ent_err refused;   /* first refusal, or ENT_OK */
};

static void handoff_free(struct handoff *h)
{
    if (h->intent)
        entitle__v1__push_intent__free_unpacked(h->intent, NULL);
    free(h->calls);
    free(h->refused_at);
    free(h);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: jitter only, not security. */
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

uint64_t pd_relay_backoff_ms(uint32_t attempts, uint64_t min_ms, uint64_t max_ms, uint64_t rnd)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t d = min_ms;
    for (uint32_t i = 1; i < attempts && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    /* Equal jitter: replicas that failed together do not retry together, and the delay
     * still grows (never below half the exponential value). */
    uint64_t half = d / 2;
    return half + (d - half == 0 ? 0 : rnd % (d - half + 1));
}

static void relay_maybe_closed(struct pd_relay *r)
{
    if (r->closing && r->timer_closed && r->inflight == 0 && r->closed_cb) {
        void (*cb)(struct pd_relay *) = r->closed_cb;
        r->closed_cb = NULL;
        cb(r);
    }
}

static void on_relay_timer(uv_timer_t *t);

static void relay_kick(struct pd_relay *r)
{
    if (!r->closing)
        uv_timer_start(&r->timer, on_relay_timer, 0, r->cfg.poll_ms);
}

static void relay_refresh_stats(struct pd_relay *r)
{
    uint64_t now = ent_now_ms();
    if (r->stats_at_ms && now - r->stats_at_ms < STATS_INTERVAL_MS)
        return;
    r->stats_at_ms = now;
    uint64_t pending = 0, dead = 0;
    int64_t oldest = 0;
    ent_err rc = ent_store_outbox_stats(r->queue, (int64_t)ent_wall_ms(), &pending, &dead, &oldest);
    if (rc != ENT_OK) {
        ent_counter_inc(&queue_errors, "stats", ent_err_name(rc));
        return;
    }
    ent_gauge_set(&queue_pending, (double)pending);
    ent_gauge_set(&queue_dead, (double)dead);
    ent_gauge_set(&queue_oldest, (double)(oldest > 0 ? oldest : 0) / 1000.0);
}

/* A handoff failed: back into the queue after a backoff, or into the dead letters when
 * notifyd refused the request itself (resending the same bytes cannot succeed). */
static void relay_retry(struct handoff *h, ent_err why, bool permanent)
{
    struct pd_relay *r = h->r;
    /* ECLOSED: this process is stopping; another replica (or the next start) may take the
     * intent at once. */
    uint64_t delay = permanent || why == ENT_ECLOSED
                         ? 0
                         : pd_relay_backoff_ms(h->attempts, r->cfg.backoff_min_ms,
                                               r->cfg.backoff_max_ms, rng_next(&r->rng));
    int64_t due = (int64_t)(ent_wall_ms() + delay);
    bool dead = false;
    /* attempts as the limit dead-letters now; UINT32_MAX never does (notifyd being down for
     * hours is not a reason to drop a push). */
    ent_err rc = ent_store_outbox_retry(r->queue, h->id, h->lease_token, due,
                                        permanent ? h->attempts : UINT32_MAX, &dead);
    if (rc != ENT_OK) {
        /* ECONFLICT/ENOTFOUND: another replica took the lease over; otherwise the lease
         * runs out and the intent comes back by itself. */
        ent_counter_inc(&queue_errors, "retry", ent_err_name(rc));
        return;
    }
    if (dead) {
        r->stats.dead++;
        ENT_LOG_ERROR(NULL, "policyd.push_dead_letter", ENT_KV_U64("intent", h->id),
                      ENT_KV_U64("attempts", h->attempts), ENT_KV_STR("reason", ent_err_name(why)));
        return;
    }
    r->stats.retries++;
    ent_counter_inc(&retries, ent_err_name(why));
    if (!r->failing) {
        r->failing = true;
        ENT_LOG_WARN(NULL, "policyd.push_handoff_failing", ENT_KV_U64("intent", h->id),
                     ENT_KV_STR("reason", ent_err_name(why)), ENT_KV_U64("retry_in_ms", delay));
    } else {
        ENT_LOG_DEBUG(NULL, "policyd.push_handoff_retry", ENT_KV_U64("intent", h->id),
                      ENT_KV_U64("attempts", h->attempts), ENT_KV_STR("reason", ent_err_name(why)),
                      ENT_KV_U64("retry_in_ms", delay));
    }
}

static ent_err queue_write(struct pd_relay *r, const ProtobufCBinaryData *pushes, size_t n,
                           const char *coalesce_key);

/* Every push of h has answered: ack the intent, resend it whole after a backoff, or
 * dead-letter what notifyd refused. */
static void handoff_settle(struct handoff *h)
{
    struct pd_relay *r = h->r;
    if (h->transient != ENT_OK) {
        /* The pushes notifyd took come back as duplicates of their keys: nothing twice. */
        relay_retry(h, h->transient, false);
    } else if (h->refused != ENT_OK && h->intent->n_pushes == 1) {
        relay_retry(h, h->refused, true);
    } else {
        /* A batch with refusals: each refused push becomes an intent of its own, which the
         * next handoff dead-letters; the batch itself is done. */
        ent_err rc = ENT_OK;
        for (size_t i = 0; rc == ENT_OK && i < h->intent->n_pushes; i++)
            if (h->refused_at[i])
                rc = queue_write(r, &h->intent->pushes[i], 1, NULL);
        if (rc != ENT_OK) {
            relay_retry(h, rc, false);
        } else {
            rc = ent_store_outbox_ack(r->queue, h->id, h->lease_token);
            if (rc != ENT_OK) /* re-claimed meanwhile: notifyd drops the resend by its key */
                ent_counter_inc(&queue_errors, "ack", ent_err_name(rc));
        }
    }
    handoff_free(h);
}

static void on_push_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct push_call *call = ud;
    struct handoff *h = call->h;
    struct pd_relay *r = h->r;
    bool answered = status == ENT_OK;
    if (answered && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    if (status == ENT_OK) {
        const char *result = "queued";
        if (resp->body_case == ENTITLE__V1__RESPONSE__BODY_PUSH && resp->push)
            result = resp->push->duplicate ? "duplicate"
                                           : (resp->push->coalesced ? "coalesced" : "queued");
        ent_counter_inc(&handoffs, result);
        r->stats.delivered++;
        if (r->failing) {
            r->failing = false;
            ENT_LOG_INFO(NULL, "policyd.push_handoff_recovered", ENT_KV_U64("intent", h->id),
                         ENT_KV_U64("attempts", h->attempts));
        }
    } else {
        ent_counter_inc(&handoffs, ent_err_name(status));
        if (answered && (status == ENT_EINVAL || status == ENT_ETOOBIG)) {
            h->refused_at[call->index] = true;
            if (h->refused == ENT_OK)
                h->refused = status;
        } else if (h->transient == ENT_OK) {
            h->transient = status;
        }
    }
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
    r->inflight--;
    if (--h->pending == 0)
        handoff_settle(h);
    if (r->closing)
        relay_maybe_closed(r);
    else if (status == ENT_OK)
        relay_kick(r); /* a slot is free and more may be due */
}

/* Sends push i of h; false (with h->transient or the refusal noted) when it cannot go. */
static bool handoff_send_one(struct handoff *h, size_t i)
{
    struct pd_relay *r = h->r;
    const ProtobufCBinaryData *bin = &h->intent->pushes[i];
    Entitle__V1__PushRequest *push = entitle__v1__push_request__unpack(NULL, bin->len, bin->data);
    if (!push || !push->idempotency_key || !push->idempotency_key[0]) {
        if (push)
            entitle__v1__push_request__free_unpacked(push, NULL);
        ent_counter_inc(&handoffs, "undecodable");
        h->refused_at[i] = true;
        if (h->refused == ENT_OK)
            h->refused = ENT_EPROTO;
        return false;
    }
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__RequestHeader hdr = ENTITLE__V1__REQUEST_HEADER__INIT;
    hdr.idempotency_key = push->idempotency_key;
    req.header = &hdr;
    req.body_case = ENTITLE__V1__REQUEST__BODY_PUSH;
    req.push = push;
    h->calls[i] = (struct push_call){.h = h, .index = i};
    ent_err rc =
        ent_bus_call(r->notifyd, &req, r->cfg.call_timeout_ms, NULL, on_push_reply, &h->calls[i]);
    entitle__v1__push_request__free_unpacked(push, NULL);
    if (rc != ENT_OK) {
        ent_counter_inc(&handoffs, ent_err_name(rc));
        if (h->transient == ENT_OK)
            h->transient = rc;
        return false;
    }
    h->pending++;
    r->inflight++;
    r->stats.sent++;
    return true;
}

static void relay_send(struct pd_relay *r, const struct ent_store_outbox_item *it)
{
    struct handoff *h = calloc(1, sizeof(*h));
    if (!h)
        return; /* the lease runs out and the intent comes back */
    *h = (struct handoff){
        .r = r, .id = it->id, .lease_token = it->lease_token, .attempts = it->attempts};
    h->intent = entitle__v1__push_intent__unpack(NULL, it->len, it->payload);
    if (!h->intent || h->intent->n_pushes == 0) {
        ent_counter_inc(&handoffs, "undecodable");
        relay_retry(h, ENT_EPROTO, true);
        handoff_free(h);
        return;
    }
    size_t n = h->intent->n_pushes;
    h->calls = calloc(n, sizeof(*h->calls));
    h->refused_at = calloc(n, sizeof(*h->refused_at));
    if (!h->calls || !h->refused_at) {
        handoff_free(h); /* the lease runs out and the intent comes back */
        return;
    }
    /* Held so that replies arriving during the loop below cannot settle h early. */
    h->pending = 1;
    for (size_t i = 0; i < n && h->transient == ENT_OK; i++)
        handoff_send_one(h, i);
    if (--h->pending == 0)
        handoff_settle(h);
}

static void relay_pump(struct pd_relay *r)
{
    if (r->closing || r->draining)
        return;
    size_t room = r->cfg.max_inflight > r->inflight ? r->cfg.max_inflight - r->inflight : 0;
    if (room == 0)
        return;
    size_t max = room < r->cfg.batch ? room : r->cfg.batch;
    struct ent_store_outbox_item *items = NULL;
    size_t got = 0;
    ent_err rc = ent_store_outbox_claim(r->queue, r->owner, (int64_t)ent_wall_ms(), r->cfg.lease_ms,
                                        max, &items, &got);
    if (rc != ENT_OK) {
        ent_counter_inc(&queue_errors, "claim", ent_err_name(rc));
        if (rc != ENT_EUNAVAIL)
            ENT_LOG_WARN(NULL, "policyd.push_queue_error", ENT_KV_STR("op", "claim"),
                         ENT_KV_STR("reason", ent_err_name(rc)));
        return;
    }
    for (size_t i = 0; i < got; i++)
        relay_send(r, &items[i]);
    ent_store_outbox_items_free(items, got);
    if (got == max)
        relay_kick(r); /* a full batch: more may be due */
}

static void on_relay_timer(uv_timer_t *t)
{
    struct pd_relay *r = ENT_CONTAINER_OF(t, struct pd_relay, timer);
    relay_pump(r);
    relay_refresh_stats(r);
}

ent_err pd_relay_init(struct pd_relay *r, uv_loop_t *loop, struct ent_store *queue,
                      struct ent_bus_client *notifyd, const struct pd_relay_cfg *cfg)
{
    if (!r || !loop || !queue || !notifyd || !cfg)
        return ENT_EINVAL;
    void *data = r->data;
    memset(r, 0, sizeof(*r));
    r->data = data;
    r->loop = loop;
    r->queue = queue;
    r->notifyd = notifyd;
    r->cfg = *cfg;
    struct pd_relay_cfg *c = &r->cfg;
    snprintf(r->owner, sizeof(r->owner), "%s", c->owner && c->owner[0] ? c->owner : "policyd");
    c->owner = r->owner;
    if (!c->call_timeout_ms)
        c->call_timeout_ms = 2000;
    if (!c->lease_ms)
        c->lease_ms = 30000;
    /* A lease shorter than a call would let another replica resend an intent whose first
     * handoff is still waiting for notifyd's answer. */
    if (c->lease_ms < 2 * c->call_timeout_ms)
        c->lease_ms = 2 * c->call_timeout_ms;
    if (!c->backoff_min_ms)
        c->backoff_min_ms = 500;
    if (!c->backoff_max_ms)
        c->backoff_max_ms = 60000;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms;
    if (!c->poll_ms)
        c->poll_ms = 1000;
    if (!c->batch)
        c->batch = 64;
    if (c->batch > ENT_STORE_PAGE_MAX)
        c->batch = ENT_STORE_PAGE_MAX;
    if (!c->max_inflight)
        c->max_inflight = 64;
    r->rng = ent_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)r;
    uv_timer_init(loop, &r->timer);
    uv_timer_start(&r->timer, on_relay_timer, 0, c->poll_ms);
    return ENT_OK;
}

/* Writes pushes[0..n) as one queue item (the caller keeps them within the size limit). */
static ent_err queue_write(struct pd_relay *r, const ProtobufCBinaryData *pushes, size_t n,
                           const char *coalesce_key)
{
    Entitle__V1__PushIntent intent = ENTITLE__V1__PUSH_INTENT__INIT;
    intent.pushes = (ProtobufCBinaryData *)pushes;
    intent.n_pushes = n;
    size_t len = entitle__v1__push_intent__get_packed_size(&intent);
    if (len > ENT_STORE_OUTBOX_MAX)
        return ENT_ETOOBIG;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return ENT_ENOMEM;
    entitle__v1__push_intent__pack(&intent, buf);
    bool coalesced = false;
    ent_err rc = ent_store_outbox_enqueue(r->queue, coalesce_key, buf, len, (int64_t)ent_wall_ms(),
                                          NULL, &coalesced);
    free(buf);
    if (rc != ENT_OK) {
        ent_counter_inc(&queue_errors, "enqueue", ent_err_name(rc));
        return rc;
    }
    r->stats.queued += n;
    relay_kick(r);
    return ENT_OK;
}

/* Packs push into bin (malloc'd data). */
static ent_err push_pack(const Entitle__V1__PushRequest *push, ProtobufCBinaryData *bin)
{
    if (!push->idempotency_key || !push->idempotency_key[0])
        return ENT_EINVAL;
    size_t len = entitle__v1__push_request__get_packed_size(push);
    if (len + 16 > ENT_STORE_OUTBOX_MAX)
        return ENT_ETOOBIG;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return ENT_ENOMEM;
    entitle__v1__push_request__pack(push, buf);
    *bin = (ProtobufCBinaryData){.len = len, .data = buf};
    return ENT_OK;
}

ent_err pd_relay_enqueue(struct pd_relay *r, const Entitle__V1__PushRequest *push)
{
    if (r->closing)
        return ENT_ECLOSED;
    ProtobufCBinaryData bin;
    ent_err rc = push_pack(push, &bin);
    if (rc != ENT_OK)
        return rc;
    rc = queue_write(r, &bin, 1, push->idempotency_key);
    free(bin.data);
    return rc;
}

ent_err pd_push_batch_add(struct pd_push_batch *b, const Entitle__V1__PushRequest *push)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        ProtobufCBinaryData *items = realloc(b->items, cap * sizeof(*items));
        if (!items)
            return ENT_ENOMEM;
        b->items = items;
        b->cap = cap;
    }
    ent_err rc = push_pack(push, &b->items[b->n]);
    if (rc != ENT_OK)
        return rc;
    b->n++;
    return ENT_OK;
}

ent_err pd_relay_enqueue_batch(struct pd_relay *r, struct pd_push_batch *b)
{
    if (r->closing)
        return ENT_ECLOSED;
    size_t start = 0;
    while (start < b->n) {
        /* As many as fit one queue item (an element costs its bytes plus tag and length). */
        size_t end = start, bytes = 0;
        while (end < b->n &&
               (end == start || bytes + b->items[end].len + 16 <= ENT_STORE_OUTBOX_MAX))
            bytes += b->items[end++].len + 16;
        ent_err rc = queue_write(r, &b->items[start], end - start, NULL);
        if (rc != ENT_OK)
            return rc; /* what was written stays queued; the caller reports the failure */
        start = end;
    }
    pd_push_batch_clear(b);
    return ENT_OK;
}

void pd_push_batch_clear(struct pd_push_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].data);
    b->n = 0;
}

void pd_push_batch_free(struct pd_push_batch *b)
{
    pd_push_batch_clear(b);
    free(b->items);
    *b = (struct pd_push_batch){0};
}

size_t pd_relay_inflight(const struct pd_relay *r)
{
    return r->inflight;
}

void pd_relay_drain(struct pd_relay *r)
{
    r->draining = true;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct pd_relay *r = ENT_CONTAINER_OF((uv_timer_t *)h, struct pd_relay, timer);
    r->timer_closed = true;
    relay_maybe_closed(r);
}

void pd_relay_close(struct pd_relay *r, void (*closed_cb)(struct pd_relay *r))
{
    r->closing = true;
    r->closed_cb = closed_cb;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
