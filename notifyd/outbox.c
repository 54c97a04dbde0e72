/* SPDX-License-Identifier: Apache-2.0 */
/* The outbox worker: turns outbox rows into deliveries and deliveries' outcomes into row
 * transitions. The store owns the row states and leases (ent/store.h); this file decides
 * which channel a row goes to, what each outcome does to the row, and the retry delay.
 *
 *   claim (lease)  ─▶ channel send ─▶ outcome ─┬─ DELIVERED ─────────────▶ ack (row deleted)
 *   outbox_pump()    delivery_start()          ├─ RETRY ─▶ retry(now + max(Retry-After,
 *                                               │           backoff)) ─▶ pending | dead
 *                                               ├─ INVALID_TOKEN ─▶ tell policyd to drop the
 *                                               │           registration ─▶ SMS fallback?
 *                                               └─ PERMANENT ──────────▶ SMS fallback?
 *   SMS fallback (delivery_fallback): if SMS is on and the row has an MSISDN, enqueue an
 *   SMS-only copy, then ack; otherwise INVALID_TOKEN acks and PERMANENT dead-letters.
 *
 * At-least-once: a crash between a provider's 200 and the ack leaves the row leased; once the
 * lease ends any replica claims it again and the device gets a second push (harmless: it only
 * re-queries). Replicas never claim the same row while its lease runs, so in the normal case
 * nothing is sent twice; an ack that finds its lease taken over (ENT_ECONFLICT) is counted in
 * entitle_notifyd_lease_lost_total. Store calls are short SQLite writes made on the loop. */
#include <stdlib.h>
#include <string.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "notifyd.h"
#include "notify.pb-c.h"

static ent_counter deliveries =
    ENT_COUNTER("entitle_notifyd_deliveries_total", "Delivery attempts by channel and result",
                "channel", "result");
static ent_counter delivery_reasons =
    ENT_COUNTER("entitle_notifyd_delivery_failures_total",
                "Failed delivery attempts by channel and reason", "channel", "reason");
static ent_histogram delivery_seconds =
    ENT_HISTOGRAM("entitle_notifyd_delivery_duration_seconds", "Time from claim to provider answer",
                  ENT_BUCKETS(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), "channel");
static ent_histogram push_age_seconds =
    ENT_HISTOGRAM("entitle_notifyd_push_age_seconds", "Time from push request to delivery",
                  ENT_BUCKETS(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600), "channel");
static ent_counter dead_letters = ENT_COUNTER("entitle_notifyd_dead_letters_total",
                                              "Pushes moved to the dead-letter state", "reason");
static ent_counter lease_lost = ENT_COUNTER(
    "entitle_notifyd_lease_lost_total",
    "Acks or retries refused because another replica took the lease (possible duplicate)");
static ent_counter registrations_removed = ENT_COUNTER(
    "entitle_notifyd_registrations_removed_total",
    "Registration removals sent to policyd after an invalid token, by result", "result");
static ent_counter sms_fallbacks =
    ENT_COUNTER("entitle_notifyd_sms_fallbacks_total", "Pushes re-queued as SMS", "reason");
static ent_counter store_errors = ENT_COUNTER("entitle_notifyd_store_errors_total",
                                              "Outbox store calls that failed", "op", "reason");
static ent_gauge outbox_pending =
    ENT_GAUGE("entitle_notifyd_outbox_pending", "Pushes in the outbox not yet delivered");
static ent_gauge outbox_dead =
    ENT_GAUGE("entitle_notifyd_outbox_dead", "Pushes in the dead-letter state");
static ent_gauge outbox_oldest =
    ENT_GAUGE("entitle_notifyd_outbox_oldest_pending_seconds", "Age of the oldest pending push");
static ent_gauge inflight_gauge =
    ENT_GAUGE("entitle_notifyd_deliveries_inflight", "Deliveries waiting for a provider");

#define STATS_INTERVAL_MS 2000

struct notifyd_delivery {
    struct notifyd *n;
    uint64_t id;
    uint64_t lease_token;
    uint32_t attempts;
    int64_t created_ms;
    Entitle__V1__PushRequest *req;
    const char *channel; /* "fcm", "apns", "sms" */
    uint64_t start_ns;
    struct notifyd_delivery *prev, *next;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: jitter only, not security. */
    uint64_t x = *s ? *s : 0x2545f4914f6cdd1dULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

uint64_t notifyd_backoff_ms(uint64_t min_ms, uint64_t max_ms, uint32_t attempts, uint64_t *rng)
{
    uint64_t base = min_ms ? min_ms : 1;
    for (uint32_t i = 1; i < attempts && base < max_ms; i++)
        base *= 2;
    if (base > max_ms)
        base = max_ms;
    uint64_t half = base / 2;
    return half + rng_next(rng) % (base - half + 1);
}

static void delivery_free(struct notifyd_delivery *dl)
{
    struct notifyd *n = dl->n;
    if (dl->prev)
        dl->prev->next = dl->next;
    else
        n->deliveries = dl->next;
    if (dl->next)
        dl->next->prev = dl->prev;
    n->inflight--;
    ent_gauge_set(&inflight_gauge, (double)n->inflight);
    if (dl->req)
        entitle__v1__push_request__free_unpacked(dl->req, NULL);
    free(dl);
}

static void delivery_ack(struct notifyd_delivery *dl)
{
    ent_err rc = ent_store_outbox_ack(dl->n->d->store, dl->id, dl->lease_token);
    if (rc == ENT_ECONFLICT || rc == ENT_ENOTFOUND) {
        ent_counter_inc(&lease_lost);
        ENT_LOG_WARN(NULL, "notifyd.lease_lost", ENT_KV_U64("outbox_id", dl->id),
                     ENT_KV_STR("op", "ack"));
    } else if (rc != ENT_OK) {
        ent_counter_inc(&store_errors, "ack", ent_err_name(rc));
        ENT_LOG_WARN(NULL, "notifyd.store_error", ENT_KV_STR("op", "ack"),
                     ENT_KV_STR("reason", ent_err_name(rc)));
    }
}

/* Releases the row for another attempt at now + delay, or dead-letters it once it used
 * max_attempts claims (force_dead: now). */
static void delivery_retry(struct notifyd_delivery *dl, int64_t delay_ms, bool force_dead,
                           const char *reason)
{
    struct notifyd *n = dl->n;
    bool dead = false;
    uint32_t max = force_dead ? dl->attempts : (uint32_t)n->cfg->outbox_max_attempts;
    int64_t due = (int64_t)ent_wall_ms() + delay_ms;
    ent_err rc = ent_store_outbox_retry(n->d->store, dl->id, dl->lease_token, due, max, &dead);
    if (rc == ENT_ECONFLICT || rc == ENT_ENOTFOUND) {
        ent_counter_inc(&lease_lost);
        return;
    }
    if (rc != ENT_OK) {
        ent_counter_inc(&store_errors, "retry", ent_err_name(rc));
        ENT_LOG_WARN(NULL, "notifyd.store_error", ENT_KV_STR("op", "retry"),
                     ENT_KV_STR("reason", ent_err_name(rc)));
        return;
    }
    if (dead) {
        ent_counter_inc(&dead_letters, reason);
        ENT_LOG_WARN(
            NULL, "notifyd.dead_letter", ENT_KV_U64("outbox_id", dl->id),
            ENT_KV_STR("channel", dl->channel), ENT_KV_STR("reason", reason),
            ENT_KV_U64("attempts", dl->attempts),
            ENT_KV_STR("subscriber", ent_mask_id(dl->req ? dl->req->subscriber_id : NULL)));
    } else {
        ENT_LOG_INFO(NULL, "notifyd.retry", ENT_KV_U64("outbox_id", dl->id),
                     ENT_KV_STR("channel", dl->channel), ENT_KV_STR("reason", reason),
                     ENT_KV_U64("attempts", dl->attempts), ENT_KV_I64("delay_ms", delay_ms));
    }
}

struct removal {
    struct notifyd *n;
};

static void on_removal_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct removal *r = ud;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    ent_counter_inc(&registrations_removed, status == ENT_OK ? "ok" : ent_err_name(status));
    if (status != ENT_OK)
        ENT_LOG_WARN(NULL, "notifyd.registration_remove_failed",
                     ENT_KV_STR("reason", ent_err_name(status)));
    r->n->policyd_inflight--;
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
    free(r);
}

/* The token is dead: ask policyd to clear it (DeviceRegister with an empty notif_token and
 * notif_action "0", TS.43's "disable"). policyd owns the device records, so notifyd never
 * writes them itself. Best effort: a failure is logged and counted, and the next push to the
 * same token ends here again. */
static void delivery_remove_registration(struct notifyd_delivery *dl)
{
    struct notifyd *n = dl->n;
    const Entitle__V1__PushRequest *p = dl->req;
    ENT_LOG_INFO(NULL, "notifyd.registration_invalid", ENT_KV_STR("channel", dl->channel),
                 ENT_KV_STR("subscriber", ent_mask_id(p->subscriber_id)));
    if (!n->policyd_on || n->stopping) {
        ent_counter_inc(&registrations_removed, "skipped");
        return;
    }
    struct removal *r = calloc(1, sizeof(*r));
    if (!r) {
        ent_counter_inc(&registrations_removed, "ENOMEM");
        return;
    }
    r->n = n;
    Entitle__V1__DeviceRegisterRequest reg = ENTITLE__V1__DEVICE_REGISTER_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    reg.subscriber_id = p->subscriber_id;
    reg.terminal_id = p->terminal_id;
    reg.notif_token = "";
    reg.notif_action = "0";
    req.body_case = ENTITLE__V1__REQUEST__BODY_DEVICE_REGISTER;
    req.device_register = &reg;
    ent_err rc =
        ent_bus_call(&n->policyd, &req, n->cfg->notify_policyd_timeout, NULL, on_removal_reply, r);
    if (rc != ENT_OK) {
        ent_counter_inc(&registrations_removed, ent_err_name(rc));
        free(r);
        return;
    }
    n->policyd_inflight++;
}

static bool delivery_can_sms(const struct notifyd_delivery *dl)
{
    const Entitle__V1__PushRequest *p = dl->req;
    return dl->n->sms_on && p && p->msisdn && p->msisdn[0] && p->subscriber_id &&
           p->subscriber_id[0];
}

/* The push channel failed for good: queue the same request as SMS-only, then ack. */
static bool delivery_fallback(struct notifyd_delivery *dl, const char *reason)
{
    struct notifyd *n = dl->n;
    bool push_channel = strcmp(dl->channel, "fcm") == 0 || strcmp(dl->channel, "apns") == 0;
    if (!push_channel || !delivery_can_sms(dl) || dl->req->sms_only)
        return false;
    dl->req->sms_only = true;
    size_t len = entitle__v1__push_request__get_packed_size(dl->req);
    uint8_t *buf = malloc(len ? len : 1);
    char *key = notifyd_coalesce_key(dl->req);
    ent_err rc = buf && key ? ENT_OK : ENT_ENOMEM;
    if (rc == ENT_OK) {
        entitle__v1__push_request__pack(dl->req, buf);
        rc = ent_store_outbox_enqueue(n->d->store, key, buf, len, (int64_t)ent_wall_ms(), NULL,
                                      NULL);
    }
    free(buf);
    free(key);
    if (rc != ENT_OK) {
        /* Keep the row: the push is retried later and the fallback with it. */
        ent_counter_inc(&store_errors, "enqueue_sms", ent_err_name(rc));
        delivery_retry(dl, (int64_t)n->cfg->outbox_backoff_min, false, "store");
        return true;
    }
    ent_counter_inc(&sms_fallbacks, reason);
    delivery_ack(dl);
    notifyd_outbox_kick(n);
    return true;
}

static void on_delivery_result(const struct notifyd_result *r, void *ud)
{
    struct notifyd_delivery *dl = ud;
    struct notifyd *n = dl->n;
    static const char *const outcome_names[] = {"delivered", "retry", "invalid_token", "failed"};
    double secs = (double)(ent_now_ns() - dl->start_ns) / 1e9;
    if (n->stopping || strcmp(r->reason, "closing") == 0) {
        /* Aborted by shutdown: leave the row leased; it is redelivered after the lease. */
        delivery_free(dl);
        return;
    }
    ent_counter_inc(&deliveries, dl->channel, outcome_names[r->outcome]);
    ent_histogram_observe(&delivery_seconds, secs, dl->channel);
    if (r->outcome != NOTIFYD_DELIVERED)
        ent_counter_inc(&delivery_reasons, dl->channel, r->reason);
    switch (r->outcome) {
    case NOTIFYD_DELIVERED: {
        int64_t age = (int64_t)ent_wall_ms() - dl->created_ms;
        ent_histogram_observe(&push_age_seconds, age > 0 ? (double)age / 1000.0 : 0.0, dl->channel);
        ENT_LOG_DEBUG(NULL, "notifyd.delivered", ENT_KV_U64("outbox_id", dl->id),
                      ENT_KV_STR("channel", dl->channel), ENT_KV_DBL("seconds", secs));
        delivery_ack(dl);
        break;
    }
    case NOTIFYD_RETRY: {
        uint64_t delay = notifyd_backoff_ms(n->cfg->outbox_backoff_min, n->cfg->outbox_backoff_max,
                                            dl->attempts, &n->rng);
        if (r->retry_after_ms > 0 && (uint64_t)r->retry_after_ms > delay)
            delay = (uint64_t)r->retry_after_ms;
        delivery_retry(dl, (int64_t)delay, false, r->reason);
        break;
    }
    case NOTIFYD_INVALID_TOKEN:
        if (strcmp(dl->channel, "sms") != 0)
            delivery_remove_registration(dl);
        if (!delivery_fallback(dl, "invalid_token"))
            delivery_ack(dl);
        break;
    case NOTIFYD_PERMANENT:
        ENT_LOG_WARN(NULL, "notifyd.delivery_failed", ENT_KV_U64("outbox_id", dl->id),
                     ENT_KV_STR("channel", dl->channel), ENT_KV_STR("reason", r->reason),
                     ENT_KV_I64("status", r->http_status));
        if (!delivery_fallback(dl, "failed"))
            delivery_retry(dl, 0, true, r->reason);
        break;
    }
    delivery_free(dl);
    notifyd_outbox_kick(n);
}

static void delivery_start(struct notifyd *n, const struct ent_store_outbox_item *it)
{
    struct notifyd_delivery *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return; /* the lease runs out and the row comes back */
    dl->n = n;
    dl->id = it->id;
    dl->lease_token = it->lease_token;
    dl->attempts = it->attempts;
    dl->created_ms = it->created_ms;
    dl->start_ns = ent_now_ns();
    dl->channel = "none";
    dl->next = n->deliveries;
    if (n->deliveries)
        n->deliveries->prev = dl;
    n->deliveries = dl;
    n->inflight++;
    ent_gauge_set(&inflight_gauge, (double)n->inflight);

    dl->req = entitle__v1__push_request__unpack(NULL, it->len, it->payload);
    struct notifyd_result r = {.outcome = NOTIFYD_PERMANENT, .retry_after_ms = -1};
    if (!dl->req || dl->req->n_app_ids == 0) {
        r.reason = "undecodable";
        on_delivery_result(&r, dl);
        return;
    }
    Entitle__V1__PushRequest *p = dl->req;
    bool has_token = p->notif_token && p->notif_token[0];
    bool want_fcm = has_token && (p->notif_action == 1 || p->notif_action == 2);
    bool want_apns = has_token && p->notif_action == 4;
    if (p->sms_only || (!want_fcm && !want_apns))
        dl->channel = "sms";
    else if (want_fcm && n->fcm_on)
        dl->channel = "fcm";
    else if (want_apns && n->apns_on)
        dl->channel = "apns";
    else if (delivery_can_sms(dl))
        dl->channel = "sms";
    if (strcmp(dl->channel, "sms") == 0 && !delivery_can_sms(dl))
        dl->channel = "none";
    struct notifyd_msg m = {
        .token = has_token ? p->notif_token : "",
        .app_ids = p->app_ids,
        .n_app_ids = p->n_app_ids,
        .changed_ms = p->changed_unix_ms ? p->changed_unix_ms : (uint64_t)it->created_ms,
        .imsi = p->subscriber_id,
        .msisdn = p->msisdn,
    };
    if (strcmp(dl->channel, "fcm") == 0) {
        notifyd_fcm_send(&n->fcm, &m, on_delivery_result, dl);
    } else if (strcmp(dl->channel, "apns") == 0) {
        notifyd_apns_send(&n->apns, &m, on_delivery_result, dl);
    } else if (strcmp(dl->channel, "sms") == 0) {
        if (!p->sms_only)
            ent_counter_inc(&sms_fallbacks, has_token ? "channel_off" : "no_token");
        notifyd_sms_send(&n->sms, &m, on_delivery_result, dl);
    } else {
        r.reason = "no_channel";
        on_delivery_result(&r, dl);
    }
}

static void outbox_pump(struct notifyd *n)
{
    struct notifyd_cfg *c = n->cfg;
    if (n->stopping || ent_daemon_draining(n->d))
        return;
    size_t room = (size_t)c->outbox_concurrency > n->inflight
                      ? (size_t)c->outbox_concurrency - n->inflight
                      : 0;
    if (room == 0)
        return;
    size_t max = room < (size_t)c->outbox_batch ? room : (size_t)c->outbox_batch;
    struct ent_store_outbox_item *items = NULL;
    size_t got = 0;
    ent_err rc = ent_store_outbox_claim(n->d->store, n->d->instance, (int64_t)ent_wall_ms(),
                                        c->outbox_lease, max, &items, &got);
    if (rc != ENT_OK) {
        ent_counter_inc(&store_errors, "claim", ent_err_name(rc));
        if (rc != ENT_EUNAVAIL)
            ENT_LOG_WARN(NULL, "notifyd.store_error", ENT_KV_STR("op", "claim"),
                         ENT_KV_STR("reason", ent_err_name(rc)));
        return;
    }
    for (size_t i = 0; i < got; i++)
        delivery_start(n, &items[i]);
    ent_store_outbox_items_free(items, got);
    /* A full batch means more may be due: come back on the next iteration. */
    if (got == max)
        notifyd_outbox_kick(n);
}

static void on_poll_timer(uv_timer_t *t)
{
    struct notifyd *n = ENT_CONTAINER_OF(t, struct notifyd, poll_timer);
    outbox_pump(n);
}

static void outbox_refresh_stats(struct notifyd *n)
{
    uint64_t pending = 0, dead = 0;
    int64_t oldest = 0;
    ent_err rc =
        ent_store_outbox_stats(n->d->store, (int64_t)ent_wall_ms(), &pending, &dead, &oldest);
    if (rc != ENT_OK) {
        ent_counter_inc(&store_errors, "stats", ent_err_name(rc));
        return;
    }
    ent_gauge_set(&outbox_pending, (double)pending);
    ent_gauge_set(&outbox_dead, (double)dead);
    ent_gauge_set(&outbox_oldest, (double)(oldest > 0 ? oldest : 0) / 1000.0);
}

static void on_stats_timer(uv_timer_t *t)
{
    struct notifyd *n = ENT_CONTAINER_OF(t, struct notifyd, stats_timer);
    outbox_refresh_stats(n);
}

ent_err notifyd_outbox_start(struct notifyd *n)
{
    uv_timer_init(&n->d->loop, &n->poll_timer);
    uv_timer_init(&n->d->loop, &n->stats_timer);
    n->timers_open = true;
    outbox_refresh_stats(n);
    uv_timer_start(&n->poll_timer, on_poll_timer, 0, n->cfg->outbox_poll_interval);
    uv_timer_start(&n->stats_timer, on_stats_timer, STATS_INTERVAL_MS, STATS_INTERVAL_MS);
    return ENT_OK;
}

void notifyd_outbox_kick(struct notifyd *n)
{
    if (!n->timers_open || n->stopping || ent_daemon_draining(n->d))
        return;
    uv_timer_start(&n->poll_timer, on_poll_timer, 0, n->cfg->outbox_poll_interval);
}

void notifyd_outbox_drain(struct notifyd *n)
{
    if (n->timers_open)
        uv_timer_stop(&n->poll_timer);
    ENT_LOG_INFO(NULL, "notifyd.drain", ENT_KV_U64("deliveries", n->inflight));
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void notifyd_outbox_stop(struct notifyd *n)
{
    if (!n->timers_open)
        return;
    n->timers_open = false;
    uv_close((uv_handle_t *)&n->poll_timer, on_timer_closed);
    uv_close((uv_handle_t *)&n->stats_timer, on_timer_closed);
}
