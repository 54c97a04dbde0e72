/* SPDX-License-Identifier: Apache-2.0 */
/* Backend-independent half of the store: picks the backend named in the config, checks every
 * argument once (so backends can assume valid input and the two backends reject the same
 * things with the same code), reads the wall clock for expiry, and frees what the store
 * returns. The database work lives in store_sqlite.c (and later store_mongo.c) behind
 * struct ent_store_ops (store_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/store.h"
#include "ent/util.h"
#include "store_int.h"

static const char *const coll_names[ENT_COLL_COUNT_] = {
    [ENT_COLL_CREDENTIALS] = "credentials",
    [ENT_COLL_SUBSCRIBERS] = "subscribers",
    [ENT_COLL_PLANS] = "plans",
    [ENT_COLL_ROAMING_RULES] = "roaming_rules",
    [ENT_COLL_ROLLOUTS] = "rollouts",
    [ENT_COLL_DEVICES] = "devices",
    [ENT_COLL_ESIM_PROFILES] = "esim_profiles",
    [ENT_COLL_EXCHANGES] = "exchanges",
    [ENT_COLL_AUDIT] = "audit",
};

static const struct ent_store_ops *const backends[] = {
    &ent_store_sqlite_ops,
#ifdef ENT_HAVE_MONGO
    &ent_store_mongo_ops,
#endif
};

const char *ent_store_coll_name(enum ent_store_coll c)
{
    if ((unsigned)c >= ENT_COLL_COUNT_)
        return NULL;
    return coll_names[c];
}

char *ent_store_strdup_(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

uint8_t *ent_store_memdup_(const void *p, size_t len)
{
    uint8_t *d = malloc(len > 0 ? len : 1);
    if (d != NULL && len > 0)
        memcpy(d, p, len);
    return d;
}

static bool str_ok(const char *s, size_t max)
{
    if (s == NULL || s[0] == '\0')
        return false;
    return strnlen(s, max + 1) <= max;
}

static bool coll_ok(enum ent_store_coll c)
{
    return (unsigned)c < ENT_COLL_COUNT_;
}

static ent_err doc_check(const struct ent_store_doc *doc)
{
    if (doc == NULL || !str_ok(doc->key, ENT_STORE_KEY_MAX))
        return ENT_EINVAL;
    if (doc->len > 0 && doc->data == NULL)
        return ENT_EINVAL;
    if (doc->len > ENT_STORE_DATA_MAX)
        return ENT_ETOOBIG;
    if (doc->expires_at_ms < 0)
        return ENT_EINVAL;
    for (size_t i = 0; i < ENT_STORE_INDEXES; i++) {
        if (doc->index[i] != NULL &&
            strnlen(doc->index[i], ENT_STORE_INDEX_MAX + 1) > ENT_STORE_INDEX_MAX)
            return ENT_EINVAL;
    }
    return ENT_OK;
}

static int64_t wall_now(void)
{
    return (int64_t)ent_wall_ms();
}

static void err_set(char *err, size_t err_len, const char *msg)
{
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "%s", msg);
}

ent_err ent_store_open(struct ent_store **out, const struct ent_store_cfg *cfg, char *err,
                       size_t err_len)
{
    if (out == NULL || cfg == NULL) {
        err_set(err, err_len, "store: no config");
        return ENT_EINVAL;
    }
    const char *name = cfg->backend != NULL && cfg->backend[0] != '\0' ? cfg->backend : "sqlite";
    for (size_t i = 0; i < ENT_ARRAY_LEN(backends); i++) {
        if (strcmp(backends[i]->name, name) != 0)
            continue;
        struct ent_store *s = NULL;
        ent_err rc = backends[i]->open(&s, cfg, err, err_len);
        if (rc != ENT_OK)
            return rc;
        s->ops = backends[i];
        *out = s;
        return ENT_OK;
    }
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "store: backend \"%s\" is not compiled in", name);
    return strcmp(name, "mongo") == 0 ? ENT_EUNSUPPORTED : ENT_EINVAL;
}

void ent_store_close(struct ent_store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

ent_err ent_store_ping(struct ent_store *s)
{
    if (s == NULL)
        return ENT_EINVAL;
    return s->ops->ping(s);
}

const char *ent_store_backend(const struct ent_store *s)
{
    return s != NULL ? s->ops->name : "none";
}

ent_err ent_store_get(struct ent_store *s, enum ent_store_coll c, const char *key,
                      struct ent_store_doc *out)
{
    if (s == NULL || !coll_ok(c) || !str_ok(key, ENT_STORE_KEY_MAX) || out == NULL)
        return ENT_EINVAL;
    return s->ops->get(s, c, key, wall_now(), out);
}

ent_err ent_store_insert(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc)
{
    if (s == NULL || !coll_ok(c))
        return ENT_EINVAL;
    ent_err rc = doc_check(doc);
    if (rc != ENT_OK)
        return rc;
    return s->ops->insert(s, c, doc, wall_now());
}

ent_err ent_store_put(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      uint64_t *new_version)
{
    if (s == NULL || !coll_ok(c))
        return ENT_EINVAL;
    ent_err rc = doc_check(doc);
    if (rc != ENT_OK)
        return rc;
    uint64_t v = 0;
    rc = s->ops->put(s, c, doc, wall_now(), &v);
    if (rc == ENT_OK && new_version != NULL)
        *new_version = v;
    return rc;
}

ent_err ent_store_update(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, uint64_t expected_version,
                         uint64_t *new_version)
{
    if (s == NULL || !coll_ok(c) || expected_version == 0 || expected_version >= INT64_MAX)
        return ENT_EINVAL;
    ent_err rc = doc_check(doc);
    if (rc != ENT_OK)
        return rc;
    uint64_t v = 0;
    rc = s->ops->update(s, c, doc, expected_version, wall_now(), &v);
    if (rc == ENT_OK && new_version != NULL)
        *new_version = v;
    return rc;
}

ent_err ent_store_delete(struct ent_store *s, enum ent_store_coll c, const char *key,
                         uint64_t expected_version)
{
    if (s == NULL || !coll_ok(c) || !str_ok(key, ENT_STORE_KEY_MAX) ||
        expected_version >= INT64_MAX)
        return ENT_EINVAL;
    return s->ops->del(s, c, key, expected_version, wall_now());
}

static bool counter_ok(const char *counter, const char *key)
{
    return str_ok(counter, ENT_STORE_KEY_MAX) && str_ok(key, ENT_STORE_KEY_MAX);
}

ent_err ent_store_incr(struct ent_store *s, const char *counter, const char *key, int64_t delta,
                       int64_t *new_value)
{
    if (s == NULL || !counter_ok(counter, key))
        return ENT_EINVAL;
    int64_t v = 0;
    ent_err rc = s->ops->incr(s, counter, key, delta, &v);
    if (rc == ENT_OK && new_value != NULL)
        *new_value = v;
    return rc;
}

ent_err ent_store_counter_get(struct ent_store *s, const char *counter, const char *key,
                              int64_t *value)
{
    if (s == NULL || !counter_ok(counter, key) || value == NULL)
        return ENT_EINVAL;
    return s->ops->counter_get(s, counter, key, value);
}

ent_err ent_store_counter_set_min(struct ent_store *s, const char *counter, const char *key,
                                  int64_t min_value, int64_t *new_value)
{
    if (s == NULL || !counter_ok(counter, key))
        return ENT_EINVAL;
    int64_t v = 0;
    ent_err rc = s->ops->counter_set_min(s, counter, key, min_value, &v);
    if (rc == ENT_OK && new_value != NULL)
        *new_value = v;
    return rc;
}

ent_err ent_store_query(struct ent_store *s, enum ent_store_coll c, int index_slot,
                        const char *value, const char *after_key, size_t limit,
                        struct ent_store_page *out)
{
    if (s == NULL || !coll_ok(c) || out == NULL || index_slot < -1 ||
        index_slot >= ENT_STORE_INDEXES || limit == 0 || limit > ENT_STORE_PAGE_MAX)
        return ENT_EINVAL;
    if (value != NULL && strnlen(value, ENT_STORE_INDEX_MAX + 1) > ENT_STORE_INDEX_MAX)
        return ENT_EINVAL;
    if (after_key != NULL && !str_ok(after_key, ENT_STORE_KEY_MAX))
        return ENT_EINVAL;
    /* A NULL value lists everything whatever the slot: one code path in the backends. */
    if (value == NULL)
        index_slot = -1;
    return s->ops->query(s, c, index_slot, value, after_key, limit, wall_now(), out);
}

ent_err ent_store_purge_expired(struct ent_store *s, enum ent_store_coll c, int64_t now_ms,
                                size_t *purged)
{
    if (s == NULL || !coll_ok(c) || now_ms <= 0)
        return ENT_EINVAL;
    size_t n = 0;
    ent_err rc = s->ops->purge_expired(s, c, now_ms, &n);
    if (rc == ENT_OK && purged != NULL)
        *purged = n;
    return rc;
}

void ent_store_doc_free(struct ent_store_doc *d)
{
    if (d == NULL)
        return;
    free(d->key);
    free(d->data);
    for (size_t i = 0; i < ENT_STORE_INDEXES; i++)
        free(d->index[i]);
    memset(d, 0, sizeof(*d));
}

void ent_store_page_free(struct ent_store_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        ent_store_doc_free(&p->docs[i]);
    free(p->docs);
    free(p->next_after);
    memset(p, 0, sizeof(*p));
}

ent_err ent_store_outbox_enqueue(struct ent_store *s, const char *coalesce_key, const void *payload,
                                 size_t len, int64_t due_ms, uint64_t *id, bool *coalesced)
{
    if (s == NULL || payload == NULL || len == 0 || due_ms < 0)
        return ENT_EINVAL;
    if (len > ENT_STORE_OUTBOX_MAX)
        return ENT_ETOOBIG;
    if (coalesce_key != NULL && !str_ok(coalesce_key, ENT_STORE_KEY_MAX))
        return ENT_EINVAL;
    uint64_t i = 0;
    bool co = false;
    ent_err rc = s->ops->outbox_enqueue(s, coalesce_key, payload, len, due_ms, wall_now(), &i, &co);
    if (rc != ENT_OK)
        return rc;
    if (id != NULL)
        *id = i;
    if (coalesced != NULL)
        *coalesced = co;
    return ENT_OK;
}

ent_err ent_store_outbox_claim(struct ent_store *s, const char *owner, int64_t now_ms,
                               uint64_t lease_ms, size_t max, struct ent_store_outbox_item **items,
                               size_t *n)
{
    if (s == NULL || !str_ok(owner, ENT_STORE_KEY_MAX) || now_ms < 0 || now_ms > INT64_MAX / 2 ||
        lease_ms == 0 || lease_ms > INT64_MAX / 2 || max == 0 || max > ENT_STORE_PAGE_MAX ||
        items == NULL || n == NULL)
        return ENT_EINVAL;
    return s->ops->outbox_claim(s, owner, now_ms, lease_ms, max, items, n);
}

ent_err ent_store_outbox_ack(struct ent_store *s, uint64_t id, uint64_t lease_token)
{
    if (s == NULL || id == 0 || id > INT64_MAX || lease_token == 0 || lease_token > INT64_MAX)
        return ENT_EINVAL;
    return s->ops->outbox_ack(s, id, lease_token);
}

ent_err ent_store_outbox_retry(struct ent_store *s, uint64_t id, uint64_t lease_token,
                               int64_t next_due_ms, uint32_t max_attempts, bool *dead)
{
    if (s == NULL || id == 0 || id > INT64_MAX || lease_token == 0 || lease_token > INT64_MAX ||
        next_due_ms < 0 || max_attempts == 0)
        return ENT_EINVAL;
    bool d = false;
    ent_err rc = s->ops->outbox_retry(s, id, lease_token, next_due_ms, max_attempts, &d);
    if (rc == ENT_OK && dead != NULL)
        *dead = d;
    return rc;
}

ent_err ent_store_outbox_stats(struct ent_store *s, int64_t now_ms, uint64_t *pending,
                               uint64_t *dead, int64_t *oldest_pending_age_ms)
{
    if (s == NULL)
        return ENT_EINVAL;
    uint64_t p = 0, d = 0;
    int64_t age = 0;
    ent_err rc = s->ops->outbox_stats(s, now_ms, &p, &d, &age);
    if (rc != ENT_OK)
        return rc;
    if (pending != NULL)
        *pending = p;
    if (dead != NULL)
        *dead = d;
    if (oldest_pending_age_ms != NULL)
        *oldest_pending_age_ms = age;
    return ENT_OK;
}

void ent_store_outbox_items_free(struct ent_store_outbox_item *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(items[i].coalesce_key);
        free(items[i].payload);
    }
    free(items);
}
