/* SPDX-License-Identifier: Apache-2.0 */
/* The push RPC: policyd -> notifyd over the req/rep bus. A request is validated, made
 * idempotent (its key is remembered for outbox.idempotency_ttl), written to the outbox with
 * a coalescing key for (subscriber, terminal, AppIDs), and only then answered: the answer
 * means "durably queued". Why not NNG push/pull: PUSH has no acknowledgement, so the sender
 * could not know the request reached the store. Delivery itself is outbox.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "notifyd.h"
#include "notify.pb-c.h"

static ent_counter push_requests = ENT_COUNTER("entitle_notifyd_push_requests_total",
                                               "Push requests received, by result", "result");

#define PUSH_ID_MAX    128
#define PUSH_APPS_MAX  16
#define PUSH_APP_MAX   32
#define PUSH_TOKEN_MAX 4096
#define IDEM_PREFIX    "notifyd.push/"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *notifyd_coalesce_key(const Entitle__V1__PushRequest *p)
{
    char **apps = calloc(p->n_app_ids ? p->n_app_ids : 1, sizeof(*apps));
    if (!apps)
        return NULL;
    memcpy(apps, p->app_ids, p->n_app_ids * sizeof(*apps));
    qsort(apps, p->n_app_ids, sizeof(*apps), cmp_str);
    struct ent_buf b;
    ent_buf_init(&b, ENT_STORE_KEY_MAX);
    ent_err rc = ent_buf_printf(&b, "%s/%s/%s/", p->sms_only ? "sms" : "push",
                                p->subscriber_id ? p->subscriber_id : "",
                                p->terminal_id ? p->terminal_id : "");
    for (size_t i = 0; i < p->n_app_ids && rc == ENT_OK; i++)
        rc = ent_buf_printf(&b, "%s%s", i ? "," : "", apps[i]);
    free(apps);
    if (rc != ENT_OK) {
        ent_buf_free(&b);
        return NULL;
    }
    return ent_buf_steal(&b, NULL);
}

static bool printable(const char *s, size_t max, const char *forbidden)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || strchr(forbidden, s[i]))
            return false;
    return true;
}

/* NULL when valid, else a reason for the log and the caller. */
static const char *push_check(const Entitle__V1__PushRequest *p)
{
    if (!p->subscriber_id || !p->subscriber_id[0])
        return "subscriber_id is required";
    if (!printable(p->subscriber_id, PUSH_ID_MAX, "/,"))
        return "subscriber_id is malformed";
    if (!printable(p->terminal_id, PUSH_ID_MAX, "/"))
        return "terminal_id is malformed";
    if (p->n_app_ids == 0 || p->n_app_ids > PUSH_APPS_MAX)
        return "app_ids: 1 to 16 AppIDs";
    for (size_t i = 0; i < p->n_app_ids; i++)
        if (!p->app_ids[i] || !p->app_ids[i][0] ||
            !printable(p->app_ids[i], PUSH_APP_MAX, ",/\"\\"))
            return "app_ids: malformed AppID";
    if (!printable(p->notif_token, PUSH_TOKEN_MAX, ""))
        return "notif_token is malformed";
    if (p->notif_action < 0 || p->notif_action > 4)
        return "notif_action must be 0..4";
    size_t ml = p->msisdn ? strlen(p->msisdn) : 0;
    if (ml > 20 || (ml && strspn(p->msisdn, "+0123456789") != ml))
        return "msisdn must be digits (E.164)";
    bool has_token = p->notif_token && p->notif_token[0];
    if (!has_token && ml == 0)
        return "neither notif_token nor msisdn: no way to reach the device";
    return NULL;
}

static void push_reply(struct notifyd *n, uint64_t call_id, uint64_t id, bool coalesced,
                       bool duplicate)
{
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__PushResponse body = ENTITLE__V1__PUSH_RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    body.outbox_id = id;
    body.coalesced = coalesced;
    body.duplicate = duplicate;
    resp.status = &st;
    resp.body_case = ENTITLE__V1__RESPONSE__BODY_PUSH;
    resp.push = &body;
    ent_daemon_reply(n->d, call_id, &resp);
}

static void push_fail(struct notifyd *n, uint64_t call_id, ent_err rc, const char *why,
                      const char *trace)
{
    ent_counter_inc(&push_requests, rc == ENT_EINVAL ? "invalid" : ent_err_name(rc));
    ENT_LOG_WARN(trace, "notifyd.push_refused", ENT_KV_STR("reason", why),
                 ENT_KV_STR("code", ent_err_name(rc)));
    ent_daemon_reply_error(n->d, call_id, rc, why);
}

/* Looks the idempotency key up; ENT_OK with *id when it was seen. */
static ent_err idem_lookup(struct notifyd *n, const char *key, uint64_t *id)
{
    struct ent_store_doc doc = {0};
    ent_err rc = ent_store_get(n->d->store, ENT_COLL_AUDIT, key, &doc);
    if (rc != ENT_OK)
        return rc;
    int64_t v = 0;
    rc = ent_parse_i64((const char *)doc.data, 0, INT64_MAX, &v);
    ent_store_doc_free(&doc);
    if (rc == ENT_OK)
        *id = (uint64_t)v;
    return rc == ENT_OK ? ENT_OK : ENT_ENOTFOUND;
}

void notifyd_rpc_push(struct notifyd *n, uint64_t call_id, const Entitle__V1__Request *req)
{
    const char *trace = req->header ? req->header->trace_id : NULL;
    Entitle__V1__PushRequest *p = req->push;
    const char *why = p ? push_check(p) : "empty push request";
    if (why) {
        push_fail(n, call_id, ENT_EINVAL, why, trace);
        return;
    }
    const char *idem =
        p->idempotency_key && p->idempotency_key[0] ? p->idempotency_key
        : req->header && req->header->idempotency_key && req->header->idempotency_key[0]
            ? req->header->idempotency_key
            : NULL;
    char idem_key[ENT_STORE_KEY_MAX];
    if (idem) {
        if ((size_t)snprintf(idem_key, sizeof(idem_key), IDEM_PREFIX "%s", idem) >=
            sizeof(idem_key)) {
            push_fail(n, call_id, ENT_EINVAL, "idempotency_key too long", trace);
            return;
        }
        uint64_t seen = 0;
        ent_err rc = idem_lookup(n, idem_key, &seen);
        if (rc == ENT_OK) {
            ent_counter_inc(&push_requests, "duplicate");
            push_reply(n, call_id, seen, false, true);
            return;
        }
        if (rc != ENT_ENOTFOUND) {
            push_fail(n, call_id, rc == ENT_EUNAVAIL ? ENT_EUNAVAIL : ENT_ESTORE, "store", trace);
            return;
        }
    }

    /* The row is the request as received, with the change time pinned now so that a retry
     * days later still carries the time of the change. */
    Entitle__V1__PushRequest row = *p;
    row.idempotency_key = "";
    row.sms_only = p->sms_only;
    if (!row.changed_unix_ms)
        row.changed_unix_ms = ent_wall_ms();
    size_t len = entitle__v1__push_request__get_packed_size(&row);
    uint8_t *buf = malloc(len ? len : 1);
    char *ckey = notifyd_coalesce_key(&row);
    if (!buf || !ckey) {
        free(buf);
        free(ckey);
        push_fail(n, call_id, ENT_ENOMEM, "out of memory", trace);
        return;
    }
    entitle__v1__push_request__pack(&row, buf);
    uint64_t id = 0;
    bool coalesced = false;
    ent_err rc = ent_store_outbox_enqueue(n->d->store, ckey, buf, len, (int64_t)ent_wall_ms(), &id,
                                          &coalesced);
    free(buf);
    free(ckey);
    if (rc != ENT_OK) {
        push_fail(n, call_id, rc == ENT_EUNAVAIL ? ENT_EUNAVAIL : ENT_ESTORE, "outbox enqueue",
                  trace);
        return;
    }
    if (idem) {
        char idtxt[24];
        int l = snprintf(idtxt, sizeof(idtxt), "%llu", (unsigned long long)id);
        struct ent_store_doc doc = {
            .key = idem_key,
            .data = (uint8_t *)idtxt,
            .len = (size_t)l + 1,
            .expires_at_ms = (int64_t)(ent_wall_ms() + n->cfg->outbox_idempotency_ttl),
        };
        /* The push is queued either way; a lost key only risks one extra push on a resend. */
        ent_err irc = ent_store_put(n->d->store, ENT_COLL_AUDIT, &doc, NULL);
        if (irc != ENT_OK)
            ENT_LOG_WARN(trace, "notifyd.idempotency_not_saved",
                         ENT_KV_STR("reason", ent_err_name(irc)));
    }
    ent_counter_inc(&push_requests, coalesced ? "coalesced" : "queued");
    ENT_LOG_DEBUG(trace, "notifyd.push_queued", ENT_KV_U64("outbox_id", id),
                  ENT_KV_BOOL("coalesced", coalesced),
                  ENT_KV_STR("subscriber", ent_mask_id(p->subscriber_id)));
    push_reply(n, call_id, id, coalesced, false);
    notifyd_outbox_kick(n);
}
