/* SPDX-License-Identifier: Apache-2.0 */
/* Change events and push intents (see events.h for the version rule). A push is due only
 * when the rendered answer of an AppID changed for a subscriber that has a device with a
 * push token; it is written into the relay's durable queue (relay.h) before the change is
 * acknowledged, and the relay hands it to notifyd, retrying until notifyd has it in its
 * outbox. notifyd coalesces repeats by the idempotency key, so a resend costs at most a
 * duplicate notification. Intents written are counted in
 * entitle_policyd_pushes_total{result}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/metrics.h"
#include "events.h"

static ent_counter events_published = ENT_COUNTER("entitle_policyd_events_published_total",
                                                  "Change events published", "kind", "result");
static ent_counter pushes = ENT_COUNTER(
    "entitle_policyd_pushes_total", "Push intents written to the relay queue, by result", "result");

uint64_t pd_effective_version(const struct pd_subscriber *s, int64_t generation)
{
    return s->version + (uint64_t)(generation > 0 ? generation : 0);
}

static const char *kind_name(int kind)
{
    const char *name = ent_bus_change_kind_name(kind);
    return name ? name : "unspecified";
}

ent_err pd_events_publish(struct policyd *p, int kind, const char *imsi, uint64_t version,
                          uint64_t token_generation)
{
    if (!p->pub_on)
        return ENT_OK;
    Entitle__V1__ChangeEvent ev = ENTITLE__V1__CHANGE_EVENT__INIT;
    ev.kind = (Entitle__V1__ChangeKind)kind;
    ev.subscriber_id = (char *)(imsi ? imsi : "");
    ev.subscriber_version = version;
    ev.token_generation = token_generation;
    ent_err rc = ent_bus_publish(&p->pub, &ev);
    ent_counter_inc(&events_published, kind_name(kind), ent_err_name(rc));
    if (rc != ENT_OK)
        ENT_LOG_WARN(NULL, "policyd.event_publish_failed", ENT_KV_STR("kind", kind_name(kind)),
                     ENT_KV_STR("subscriber", ent_mask_id(imsi)),
                     ENT_KV_STR("reason", ent_err_name(rc)));
    return rc;
}

/* The AppID a service is rendered under. */
static const char *service_app(enum pd_service s)
{
    switch (s) {
    case PD_SVC_VOLTE:
    case PD_SVC_VONR:
        return "ap2003";
    case PD_SVC_VOWIFI:
        return "ap2004";
    case PD_SVC_SMSOIP:
        return "ap2005";
    case PD_SVC_ESIM:
        return "ap2009";
    case PD_SVC_COMPANION:
        return "ap2006";
    default:
        return "ap2004";
    }
}

void pd_snapshot_take(struct policyd *p, const struct pd_policy *pol,
                      const struct pd_subscriber *sub, struct pd_snapshot *out)
{
    struct pd_eval_ctx ctx;
    pd_eval_ctx_init(p, pol, &ctx);
    for (int i = 0; i < PD_SVC_COUNT; i++)
        pd_evaluate(&ctx, sub, (enum pd_service)i, &out->d[i]);
}

/* Writes the push intent for one device into the relay's queue. */
static ent_err push_device(struct policyd *p, const struct pd_subscriber *sub,
                           const struct pd_device *dev, char **apps, size_t n_apps)
{
    if (!p->relay_on) {
        ent_counter_inc(&pushes, "no_notifyd");
        return ENT_OK;
    }
    /* One key per change of this device's answer. The effective version alone restarts when
     * a subscriber is deleted and provisioned again, and notifyd would drop the new life's
     * pushes as duplicates of the old one's: the creation time tells the lives apart. The
     * key is stored with the intent, so every resend of it carries the same one. */
    char key[256];
    int kn = snprintf(key, sizeof(key), "policyd:%s:%s:%lld:%llu", sub->imsi, dev->terminal_id,
                      (long long)sub->created_ms,
                      (unsigned long long)pd_effective_version(sub, p->policy.generation));
    if (kn < 0 || (size_t)kn >= sizeof(key)) {
        ent_counter_inc(&pushes, "EINVAL");
        return ENT_EINVAL;
    }
    Entitle__V1__PushRequest push = ENTITLE__V1__PUSH_REQUEST__INIT;
    push.subscriber_id = (char *)sub->imsi;
    push.terminal_id = (char *)dev->terminal_id;
    push.app_ids = apps;
    push.n_app_ids = n_apps;
    push.idempotency_key = key;
    push.notif_token = (char *)dev->push_token;
    push.notif_action = dev->notif_action;
    push.msisdn = (char *)sub->msisdn;
    push.changed_unix_ms = ent_wall_ms(); /* the change time, kept across resends */
    /* Within a fan-out the walk writes the batch (pd_devices_walk). */
    ent_err rc = p->push_batch ? pd_push_batch_add(p->push_batch, &push)
                               : pd_relay_enqueue(&p->relay, &push);
    ent_counter_inc(&pushes, rc == ENT_OK ? "queued" : ent_err_name(rc));
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "policyd.push_not_queued",
                      ENT_KV_STR("subscriber", ent_mask_id(sub->imsi)),
                      ENT_KV_STR("reason", ent_err_name(rc)));
    return rc;
}

ent_err pd_push_if_changed(struct policyd *p, const struct pd_subscriber *after,
                           const struct pd_snapshot *before, const struct pd_snapshot *now,
                           size_t *queued)
{
    char *apps[PD_SVC_COUNT];
    size_t n_apps = 0;
    for (int i = 0; i < PD_SVC_COUNT; i++) {
        if (pd_decision_same(&before->d[i], &now->d[i]))
            continue;
        const char *app = service_app((enum pd_service)i);
        bool dup = false;
        for (size_t k = 0; k < n_apps; k++)
            dup = dup || strcmp(apps[k], app) == 0;
        if (!dup)
            apps[n_apps++] = (char *)app;
    }
    if (n_apps == 0)
        return ENT_OK;
    struct pd_device *devs = calloc(16, sizeof(*devs));
    size_t n = 0;
    if (!devs)
        return ENT_ENOMEM;
    ent_err rc = pd_devices_of(p->store, after->imsi, devs, 16, &n);
    if (rc == ENT_ENOTFOUND)
        rc = ENT_OK;
    for (size_t i = 0; rc == ENT_OK && i < n; i++) {
        if (!devs[i].push_token[0])
            continue;
        rc = push_device(p, after, &devs[i], apps, n_apps);
        if (rc == ENT_OK && queued)
            (*queued)++;
    }
    free(devs);
    return rc;
}

/* Writes the fan-out's collected pushes; keeps the first error in *first. */
static void walk_flush(struct policyd *p, struct pd_push_batch *b, ent_err *first)
{
    if (b->n == 0)
        return;
    ent_err rc = pd_relay_enqueue_batch(&p->relay, b);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.push_not_queued", ENT_KV_U64("pushes", b->n),
                      ENT_KV_STR("reason", ent_err_name(rc)));
        pd_push_batch_clear(b);
        if (*first == ENT_OK)
            *first = rc;
    }
}

ent_err pd_devices_walk(struct policyd *p, const char *what, pd_device_visit_fn visit, void *ud)
{
    ent_err first = ENT_OK;
    char *after = NULL;
    /* The pushes a walk finds are written PD_PUSH_BATCH_MAX at a time: one store write per
     * batch instead of one per device keeps a large fan-out from holding the loop. */
    struct pd_push_batch batch = {0};
    struct pd_push_batch *outer = p->push_batch;
    p->push_batch = &batch;
    for (;;) {
        struct ent_store_page page = {0};
        ent_err rc = ent_store_query(p->store, ENT_COLL_DEVICES, -1, NULL, after, 500, &page);
        free(after);
        after = NULL;
        if (rc != ENT_OK) {
            ENT_LOG_WARN(NULL, "policyd.push_scan_failed", ENT_KV_STR("walk", what),
                         ENT_KV_STR("reason", ent_err_name(rc)));
            if (first == ENT_OK)
                first = rc;
            break;
        }
        for (size_t i = 0; i < page.n; i++) {
            /* Keep going after a failure: every other device still gets its intent. */
            rc = visit(p, &page.docs[i], ud);
            if (rc != ENT_OK && first == ENT_OK)
                first = rc;
            if (batch.n >= PD_PUSH_BATCH_MAX)
                walk_flush(p, &batch, &first);
        }
        if (page.next_after)
            after = strdup(page.next_after);
        ent_store_page_free(&page);
        if (!after)
            break;
    }
    walk_flush(p, &batch, &first);
    pd_push_batch_free(&batch);
    p->push_batch = outer;
    return first;
}

struct policy_change_walk {
    const struct pd_policy *old;
    size_t *queued;
    char last_imsi[16];
};

static ent_err policy_change_visit(struct policyd *p, const struct ent_store_doc *doc, void *ud)
{
    struct policy_change_walk *w = ud;
    /* Keys are "<imsi>/<terminal>": one subscriber's devices are adjacent. */
    const char *slash = strchr(doc->key, '/');
    size_t len = slash ? (size_t)(slash - doc->key) : 0;
    if (len == 0 || len >= sizeof(w->last_imsi))
        return ENT_OK;
    if (strncmp(w->last_imsi, doc->key, len) == 0 && w->last_imsi[len] == '\0')
        return ENT_OK;
    memcpy(w->last_imsi, doc->key, len);
    w->last_imsi[len] = '\0';
    struct pd_subscriber sub;
    if (pd_subscriber_get(p->store, w->last_imsi, &sub) != ENT_OK)
        return ENT_OK;
    struct pd_snapshot *two = malloc(2 * sizeof(*two));
    if (!two)
        return ENT_ENOMEM;
    pd_snapshot_take(p, w->old, &sub, &two[0]);
    pd_snapshot_take(p, &p->policy, &sub, &two[1]);
    ent_err rc = pd_push_if_changed(p, &sub, &two[0], &two[1], w->queued);
    free(two);
    return rc;
}

ent_err pd_push_policy_change(struct policyd *p, const struct pd_policy *old, size_t *queued)
{
    struct policy_change_walk w = {.old = old, .queued = queued};
    return pd_devices_walk(p, "policy_change", policy_change_visit, &w);
}
