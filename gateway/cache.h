/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's two bounded caches, one implementation: a hash table with an LRU list, a
 * TTL per entry, an entry-count and a byte bound, shared by every loop thread under one
 * mutex (critical sections are a lookup and a memcpy).
 *
 *  - decision cache (DESIGN.md §2): rendered APPLICATION parts keyed by (subscriber, AppIDs,
 *    vers, format, protocol version, ODSA operation); the entry also keeps the subscriber
 *    version it was decided at. Entries are grouped by subscriber, so a change event drops
 *    one subscriber's entries by walking one chain.
 *  - token cache: positive TokenVerify answers keyed by the token text; dropped per
 *    subscriber on revocation events (a walk of the LRU list: revocations are rare).
 *
 * Staleness: a filler snapshots gw_cache_epoch() BEFORE asking policyd/authd, and
 * gw_cache_put() refuses the entry if any invalidation happened since (the answer may
 * predate a change an event already announced). So an entry never outlives an event that
 * arrived while, or after, it was computed. */
#ifndef ENTITLE_GATEWAY_CACHE_H
#define ENTITLE_GATEWAY_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/util.h"

#define GW_CACHE_SUBJ_MAX 16 /* IMSI */

struct gw_cache_ent;

struct gw_cache {
    pthread_mutex_t mu;
    struct gw_cache_ent **buckets;
    size_t n_buckets;
    struct gw_cache_ent *lru_head; /* most recently used */
    struct gw_cache_ent *lru_tail;
    size_t n, max_n;
    size_t bytes, max_bytes;
    uint64_t ttl_ms;
    uint64_t epoch;      /* bumped by every invalidation */
    atomic_bool bypass;  /* gw_cache_set_bypass() */
    bool bucket_by_subj; /* decision cache: chains hold one subscriber's entries */
    const char *name;    /* metric label: "decision", "token" */
};

/* max_n entries (0 disables the cache: every get misses, every put is dropped), max_bytes
 * of keys+payloads, ttl_ms per entry. Errors: ENT_ENOMEM. Any thread (before sharing). */
ent_err gw_cache_init(struct gw_cache *c, const char *name, size_t max_n, size_t max_bytes,
                      uint64_t ttl_ms, bool bucket_by_subj);
void gw_cache_fini(struct gw_cache *c);

/* Looks key up (subj is the subscriber; required when bucket_by_subj, else ignored). On a
 * live hit appends the payload to out, writes *a and *b (two integers stored with the entry; may
 * be NULL), moves the entry to the LRU head and returns true; an expired entry is removed.
 * Counts hits and misses. Any thread. If out cannot take the payload, it is a miss. */
bool gw_cache_get(struct gw_cache *c, const char *key, const char *subj, struct ent_buf *out,
                  int64_t *a, int64_t *b);

/* Inserts or replaces key -> payload unless an invalidation happened after `epoch` was
 * taken (returns false then), evicting from the LRU tail to stay within bounds. expires_ms
 * (monotonic, 0 = now + ttl) is capped at now + ttl. Any thread. */
bool gw_cache_put(struct gw_cache *c, const char *key, const char *subj, const void *payload,
                  size_t len, int64_t a, int64_t b, uint64_t expires_ms, uint64_t epoch);

/* The current invalidation epoch (see above). */
uint64_t gw_cache_epoch(struct gw_cache *c);

/* Drops every entry of subscriber subj; returns how many. Bumps the epoch. */
size_t gw_cache_drop_subject(struct gw_cache *c, const char *subj);

/* Drops everything (CHANGE_ALL, event gap, publisher reconnect). Bumps the epoch. */
size_t gw_cache_flush(struct gw_cache *c);

/* While bypassed every get misses (counted as "bypass") and every put is refused: the
 * gateway cannot see every change event (a publisher is not connected), so answers are
 * served but not cached. Leaving the bypass flushes first (bumping the epoch), so nothing
 * cached or filled before it survives. Any thread. */
void gw_cache_set_bypass(struct gw_cache *c, bool bypass);

size_t gw_cache_size(struct gw_cache *c);

#endif
