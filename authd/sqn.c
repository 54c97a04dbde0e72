/* SPDX-License-Identifier: Apache-2.0 */
/* SQN_HE over the store counter ("sqn", IMSI), with optional per-process leases (see
 * sqn.h). The lease cache is a fixed table indexed by a hash of the IMSI; a collision
 * evicts the older lease, whose remaining values are simply never used. */
#include "sqn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aka/sqn.h"
#include "ent/log.h"

#define SQN_CACHE_SLOTS 4096

struct sqn_lease {
    char imsi[16];
    uint64_t next; /* next SEQ to hand out */
    uint64_t end;  /* last SEQ of the lease (inclusive) */
};

struct authd_sqn_cache {
    pthread_mutex_t mu;
    unsigned lease;
    struct sqn_lease slots[SQN_CACHE_SLOTS];
};

ent_err authd_sqn_cache_new(struct authd_sqn_cache **out, unsigned lease)
{
    struct authd_sqn_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ENT_ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return ENT_ENOMEM;
    }
    c->lease = lease < 2 ? 2 : lease;
    *out = c;
    return ENT_OK;
}

void authd_sqn_cache_free(struct authd_sqn_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static size_t sqn_slot(const char *imsi)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = imsi; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % SQN_CACHE_SLOTS);
}

static ent_err sqn_make(uint64_t seq, unsigned ind_bits, uint64_t *sqn)
{
    if (ind_bits > ENT_SQN_IND_BITS_MAX)
        return ENT_EINVAL;
    /* TS 33.102 C.1.2: SEQ must not wrap; a subscriber at the end needs a new K. */
    if (seq > (ENT_SQN_MAX >> ind_bits))
        return ENT_ETOOBIG;
    unsigned ind = (unsigned)(seq & ((1u << ind_bits) - 1u));
    return ent_sqn_make(sqn, seq, ind, ind_bits);
}

ent_err authd_sqn_advance(struct ent_store *s, struct authd_sqn_cache *cache, const char *imsi,
                          unsigned ind_bits, uint64_t *sqn)
{
    int64_t v = 0;
    ent_err rc;

    if (strlen(imsi) >= sizeof(((struct sqn_lease *)0)->imsi))
        return ENT_EINVAL;
    if (cache == NULL) {
        rc = ent_store_incr(s, AUTHD_SQN_COUNTER, imsi, 1, &v);
        if (rc != ENT_OK)
            return rc;
        return sqn_make((uint64_t)v, ind_bits, sqn);
    }
    struct sqn_lease *e = &cache->slots[sqn_slot(imsi)];
    pthread_mutex_lock(&cache->mu);
    if (strcmp(e->imsi, imsi) == 0 && e->next != 0 && e->next <= e->end) {
        uint64_t seq = e->next++;
        pthread_mutex_unlock(&cache->mu);
        return sqn_make(seq, ind_bits, sqn);
    }
    pthread_mutex_unlock(&cache->mu);
    /* The increment runs without the cache lock: two threads missing at once each lease a
     * range, and the later one replaces the other's entry (its values are skipped). */
    rc = ent_store_incr(s, AUTHD_SQN_COUNTER, imsi, (int64_t)cache->lease, &v);
    if (rc != ENT_OK)
        return rc;
    uint64_t first = (uint64_t)v - cache->lease + 1;
    pthread_mutex_lock(&cache->mu);
    snprintf(e->imsi, sizeof(e->imsi), "%s", imsi);
    e->next = first + 1;
    e->end = (uint64_t)v;
    pthread_mutex_unlock(&cache->mu);
    return sqn_make(first, ind_bits, sqn);
}

ent_err authd_sqn_resync(struct ent_store *s, struct authd_sqn_cache *cache, const char *imsi,
                         uint64_t sqn_ms, unsigned ind_bits)
{
    int64_t v = 0;
    uint64_t seq_ms = ent_sqn_seq(sqn_ms, ind_bits);

    if (cache != NULL) {
        struct sqn_lease *e = &cache->slots[sqn_slot(imsi)];
        pthread_mutex_lock(&cache->mu);
        if (strcmp(e->imsi, imsi) == 0)
            memset(e, 0, sizeof(*e));
        pthread_mutex_unlock(&cache->mu);
    }
    /* Annex C.3.4: SEQ_HE := SEQ_MS; the next advance then yields SEQ_MS + 1. */
    return ent_store_counter_set_min(s, AUTHD_SQN_COUNTER, imsi, (int64_t)seq_ms, &v);
}

ent_err authd_sqn_set_min(struct ent_store *s, const char *imsi, uint64_t sqn, unsigned ind_bits)
{
    int64_t v = 0;
    return ent_store_counter_set_min(s, AUTHD_SQN_COUNTER, imsi,
                                     (int64_t)ent_sqn_seq(sqn, ind_bits), &v);
}
