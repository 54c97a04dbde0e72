/* SPDX-License-Identifier: Apache-2.0 */
/* The store's backend vtable. store.c validates every argument (non-NULL, non-empty keys,
 * collection range, size limits) and then calls exactly one op, so a backend may assume
 * valid input and only has to map each op onto its database. Each op is one single-document
 * operation in MongoDB terms; the SQLite backend runs each write under its own SAVEPOINT
 * inside a group-commit transaction shared with concurrent writers. Backends embed struct
 * ent_store as their first member. */
#ifndef ENT_STORE_INT_H
#define ENT_STORE_INT_H

#include "ent/store.h"

struct ent_store_ops {
    const char *name;
    /* Writes *out on ENT_OK; fills err on failure. */
    ent_err (*open)(struct ent_store **out, const struct ent_store_cfg *cfg, char *err,
                    size_t err_len);
    void (*close)(struct ent_store *s);
    ent_err (*ping)(struct ent_store *s);

    /* now_ms is the wall clock used to hide expired documents. */
    ent_err (*get)(struct ent_store *s, enum ent_store_coll c, const char *key, int64_t now_ms,
                   struct ent_store_doc *out);
    ent_err (*insert)(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      int64_t now_ms);
    ent_err (*put)(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                   int64_t now_ms, uint64_t *new_version);
    ent_err (*update)(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      uint64_t expected_version, int64_t now_ms, uint64_t *new_version);
    ent_err (*del)(struct ent_store *s, enum ent_store_coll c, const char *key,
                   uint64_t expected_version, int64_t now_ms);
    /* new_value is never NULL. */
    ent_err (*incr)(struct ent_store *s, const char *counter, const char *key, int64_t delta,
                    int64_t *new_value);
    ent_err (*counter_get)(struct ent_store *s, const char *counter, const char *key,
                           int64_t *value);
    ent_err (*counter_set_min)(struct ent_store *s, const char *counter, const char *key,
                               int64_t min_value, int64_t *new_value);
    /* index_slot in -1..ENT_STORE_INDEXES-1; after_key NULL = from the start; limit is
     * 1..ENT_STORE_PAGE_MAX. */
    ent_err (*query)(struct ent_store *s, enum ent_store_coll c, int index_slot, const char *value,
                     const char *after_key, size_t limit, int64_t now_ms,
                     struct ent_store_page *out);
    ent_err (*purge_expired)(struct ent_store *s, enum ent_store_coll c, int64_t now_ms,
                             size_t *purged);

    /* Output pointers are never NULL. */
    ent_err (*outbox_enqueue)(struct ent_store *s, const char *coalesce_key, const void *payload,
                              size_t len, int64_t due_ms, int64_t now_ms, uint64_t *id,
                              bool *coalesced);
    ent_err (*outbox_claim)(struct ent_store *s, const char *owner, int64_t now_ms,
                            uint64_t lease_ms, size_t max, struct ent_store_outbox_item **items,
                            size_t *n);
    ent_err (*outbox_ack)(struct ent_store *s, uint64_t id, uint64_t lease_token);
    ent_err (*outbox_retry)(struct ent_store *s, uint64_t id, uint64_t lease_token,
                            int64_t next_due_ms, uint32_t max_attempts, bool *dead);
    ent_err (*outbox_stats)(struct ent_store *s, int64_t now_ms, uint64_t *pending, uint64_t *dead,
                            int64_t *oldest_pending_age_ms);
};

struct ent_store {
    const struct ent_store_ops *ops;
};

extern const struct ent_store_ops ent_store_sqlite_ops;
#ifdef ENT_HAVE_MONGO
extern const struct ent_store_ops ent_store_mongo_ops;
#endif

/* Shared by backends: a heap copy of s (NULL stays NULL); copies of bytes that are never
 * NULL (malloc(1) for len 0). Both return NULL only when out of memory. */
char *ent_store_strdup_(const char *s);
uint8_t *ent_store_memdup_(const void *p, size_t len);

#endif
