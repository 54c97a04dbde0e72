/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded LRU+TTL caches shared by the loop threads (see cache.h). One mutex per cache;
 * entries are single heap blocks (struct, key, payload). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "ent/metrics.h"

static ent_counter cache_lookups =
    ENT_COUNTER("entitle_gateway_cache_lookups_total",
                "Cache lookups by cache and result (hit, miss, bypass)", "cache", "result");
static ent_counter cache_evictions = ENT_COUNTER(
    "entitle_gateway_cache_evictions_total",
    "Entries removed by cache and reason (lru, expired, invalidated, flushed)", "cache", "reason");
static ent_gauge cache_entries =
    ENT_GAUGE("entitle_gateway_cache_entries", "Entries held by cache", "cache");

struct gw_cache_ent {
    struct gw_cache_ent *chain; /* bucket chain */
    struct gw_cache_ent *prev, *next;
    uint64_t hash;
    uint64_t expires_ms;
    int64_t a, b;
    char subj[GW_CACHE_SUBJ_MAX + 1];
    size_t key_len;
    size_t len;
    char *key;     /* points into the same block */
    uint8_t *data; /* idem */
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

ent_err gw_cache_init(struct gw_cache *c, const char *name, size_t max_n, size_t max_bytes,
                      uint64_t ttl_ms, bool bucket_by_subj)
{
    memset(c, 0, sizeof(*c));
    atomic_init(&c->bypass, false);
    size_t nb = 64;
    while (nb < max_n && nb < (1u << 22))
        nb <<= 1;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (c->buckets == NULL)
        return ENT_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->n_buckets = nb;
    c->max_n = max_n;
    c->max_bytes = max_bytes;
    c->ttl_ms = ttl_ms;
    c->bucket_by_subj = bucket_by_subj;
    c->name = name;
    return ENT_OK;
}

static size_t ent_size(const struct gw_cache_ent *e)
{
    return sizeof(*e) + e->key_len + e->len;
}

static void unlink_ent(struct gw_cache *c, struct gw_cache_ent *e)
{
    struct gw_cache_ent **pp = &c->buckets[e->hash & (c->n_buckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    if (e->prev)
        e->prev->next = e->next;
    else
        c->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->lru_tail = e->prev;
    c->n--;
    c->bytes -= ent_size(e);
    free(e);
}

void gw_cache_fini(struct gw_cache *c)
{
    if (c->buckets == NULL)
        return;
    while (c->lru_head)
        unlink_ent(c, c->lru_head);
    free(c->buckets);
    c->buckets = NULL;
    pthread_mutex_destroy(&c->mu);
}

static uint64_t ent_hash(const struct gw_cache *c, const char *key, const char *subj)
{
    return c->bucket_by_subj && subj ? fnv1a(subj) : fnv1a(key);
}

static struct gw_cache_ent *find(struct gw_cache *c, const char *key, uint64_t h)
{
    size_t kl = strlen(key);
    for (struct gw_cache_ent *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->key_len == kl && memcmp(e->key, key, kl) == 0)
            return e;
    return NULL;
}

static void lru_front(struct gw_cache *c, struct gw_cache_ent *e)
{
    if (c->lru_head == e)
        return;
    if (e->prev)
        e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->lru_tail = e->prev;
    e->prev = NULL;
    e->next = c->lru_head;
    if (c->lru_head)
        c->lru_head->prev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL)
        c->lru_tail = e;
}

bool gw_cache_get(struct gw_cache *c, const char *key, const char *subj, struct ent_buf *out,
                  int64_t *a, int64_t *b)
{
    bool hit = false;
    if (c->max_n == 0) {
        ent_counter_inc(&cache_lookups, c->name, "miss");
        return false;
    }
    if (atomic_load(&c->bypass)) {
        ent_counter_inc(&cache_lookups, c->name, "bypass");
        return false;
    }
    uint64_t h = ent_hash(c, key, subj);
    uint64_t now = ent_now_ms();
    pthread_mutex_lock(&c->mu);
    struct gw_cache_ent *e = find(c, key, h);
    if (e && e->expires_ms <= now) {
        unlink_ent(c, e);
        e = NULL;
        ent_counter_inc(&cache_evictions, c->name, "expired");
    }
    if (e && (out == NULL || ent_buf_append(out, e->data, e->len) == ENT_OK)) {
        if (a)
            *a = e->a;
        if (b)
            *b = e->b;
        lru_front(c, e);
        hit = true;
    }
    pthread_mutex_unlock(&c->mu);
    ent_counter_inc(&cache_lookups, c->name, hit ? "hit" : "miss");
    return hit;
}

bool gw_cache_put(struct gw_cache *c, const char *key, const char *subj, const void *payload,
                  size_t len, int64_t a, int64_t b, uint64_t expires_ms, uint64_t epoch)
{
    if (c->max_n == 0)
        return false;
    size_t kl = strlen(key);
    struct gw_cache_ent *n = malloc(sizeof(*n) + kl + 1 + len);
    if (n == NULL)
        return false;
    memset(n, 0, sizeof(*n));
    n->key = (char *)(n + 1);
    n->data = (uint8_t *)n->key + kl + 1;
    memcpy(n->key, key, kl + 1);
    n->key_len = kl;
    if (len)
        memcpy(n->data, payload, len);
    n->len = len;
    n->a = a;
    n->b = b;
    if (subj)
        snprintf(n->subj, sizeof(n->subj), "%s", subj);
    n->hash = ent_hash(c, key, subj);
    uint64_t now = ent_now_ms();
    uint64_t cap = now + c->ttl_ms;
    n->expires_ms = (expires_ms == 0 || expires_ms > cap) ? cap : expires_ms;
    if (ent_size(n) > c->max_bytes) {
        free(n);
        return false;
    }

    pthread_mutex_lock(&c->mu);
    if (c->epoch != epoch || atomic_load(&c->bypass)) {
        pthread_mutex_unlock(&c->mu);
        free(n);
        return false;
    }
    struct gw_cache_ent *old = find(c, key, n->hash);
    if (old)
        unlink_ent(c, old);
    while (c->lru_tail && (c->n + 1 > c->max_n || c->bytes + ent_size(n) > c->max_bytes)) {
        unlink_ent(c, c->lru_tail);
        ent_counter_inc(&cache_evictions, c->name, "lru");
    }
    size_t bi = n->hash & (c->n_buckets - 1);
    n->chain = c->buckets[bi];
    c->buckets[bi] = n;
    n->next = c->lru_head;
    if (c->lru_head)
        c->lru_head->prev = n;
    c->lru_head = n;
    if (c->lru_tail == NULL)
        c->lru_tail = n;
    c->n++;
    c->bytes += ent_size(n);
    size_t count = c->n;
    pthread_mutex_unlock(&c->mu);
    ent_gauge_set(&cache_entries, (double)count, c->name);
    return true;
}

uint64_t gw_cache_epoch(struct gw_cache *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t e = c->epoch;
    pthread_mutex_unlock(&c->mu);
    return e;
}

size_t gw_cache_drop_subject(struct gw_cache *c, const char *subj)
{
    size_t dropped = 0;
    pthread_mutex_lock(&c->mu);
    c->epoch++;
    if (c->bucket_by_subj) {
        uint64_t h = fnv1a(subj);
        struct gw_cache_ent *e = c->buckets[h & (c->n_buckets - 1)];
        while (e) {
            struct gw_cache_ent *next = e->chain;
            if (strcmp(e->subj, subj) == 0) {
                unlink_ent(c, e);
                dropped++;
            }
            e = next;
        }
    } else {
        struct gw_cache_ent *e = c->lru_head;
        while (e) {
            struct gw_cache_ent *next = e->next;
            if (strcmp(e->subj, subj) == 0) {
                unlink_ent(c, e);
                dropped++;
            }
            e = next;
        }
    }
    size_t count = c->n;
    pthread_mutex_unlock(&c->mu);
    if (dropped)
        ent_counter_add(&cache_evictions, dropped, c->name, "invalidated");
    ent_gauge_set(&cache_entries, (double)count, c->name);
    return dropped;
}

size_t gw_cache_flush(struct gw_cache *c)
{
    size_t dropped = 0;
    pthread_mutex_lock(&c->mu);
    c->epoch++;
    while (c->lru_head) {
        unlink_ent(c, c->lru_head);
        dropped++;
    }
    pthread_mutex_unlock(&c->mu);
    if (dropped)
        ent_counter_add(&cache_evictions, dropped, c->name, "flushed");
    ent_gauge_set(&cache_entries, 0.0, c->name);
    return dropped;
}

void gw_cache_set_bypass(struct gw_cache *c, bool bypass)
{
    if (!bypass)
        gw_cache_flush(c);
    atomic_store(&c->bypass, bypass);
}

size_t gw_cache_size(struct gw_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}
