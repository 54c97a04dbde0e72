/* SPDX-License-Identifier: Apache-2.0 */
/* The store: Entitle's one persistence interface, shared by authd (credentials, SQN, EAP
 * exchanges, token generations), policyd (subscribers, plans, roaming rules, rollouts,
 * devices) and notifyd (the outbox). It offers three shapes of data:
 *
 *   - documents: opaque byte blobs under a string key in a fixed set of collections, each
 *     with a version for optimistic concurrency, up to ENT_STORE_INDEXES secondary index
 *     values and an optional expiry time;
 *   - counters: named 64-bit integers changed only by atomic operations (SQN, token
 *     generation);
 *   - the outbox: an at-least-once work queue with leases (see the diagram above
 *     ent_store_outbox_enqueue()).
 *
 * Every operation is one single-document operation in MongoDB terms (insert, findAndModify,
 * $inc, $max, deleteOne, find with a sort and limit), so the SQLite backend and the MongoDB
 * backend give the same guarantees and no caller needs a multi-document transaction.
 * The encoding of a document's bytes belongs to the caller (protobuf in practice); the store
 * never looks inside.
 *
 * Threads: an ent_store may be used from several threads at once. The SQLite backend groups
 * concurrent writes into one transaction (one fsync; each write under its own savepoint,
 * answered only after the commit) and reads on a second connection (see store_sqlite.c);
 * MongoDB's client pool serves threads in parallel. Calls block: daemons call the store from
 * a worker thread (uv_queue_work) or accept the short block on the loop.
 * Several processes may open the same SQLite file; their writes serialise in SQLite. */
#ifndef ENT_STORE_H
#define ENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"

struct ent_store;

enum ent_store_coll {
    ENT_COLL_CREDENTIALS,
    ENT_COLL_SUBSCRIBERS,
    ENT_COLL_PLANS,
    ENT_COLL_ROAMING_RULES,
    ENT_COLL_ROLLOUTS,
    ENT_COLL_DEVICES,
    ENT_COLL_ESIM_PROFILES,
    ENT_COLL_EXCHANGES,
    ENT_COLL_AUDIT,
    ENT_COLL_COUNT_
};

/* Stable lower-case name ("credentials", "roaming_rules", ...), used as the SQLite `coll`
 * value and as the MongoDB collection name. NULL for a value out of range. */
const char *ent_store_coll_name(enum ent_store_coll c);

/* Secondary index slots per document, e.g. subscribers: msisdn, plan, region. What each slot
 * means is the owning daemon's choice per collection; a NULL slot is not indexed. */
#define ENT_STORE_INDEXES 3
/* Limits checked before any backend is called (ENT_EINVAL / ENT_ETOOBIG). */
#define ENT_STORE_KEY_MAX    512
#define ENT_STORE_INDEX_MAX  512
#define ENT_STORE_DATA_MAX   (1024 * 1024)
#define ENT_STORE_PAGE_MAX   1000
#define ENT_STORE_OUTBOX_MAX (256 * 1024)

/* A document. As input, key must be non-empty and version is ignored (the argument
 * expected_version says what is expected). As output, every pointer is heap memory owned by
 * the document, released by ent_store_doc_free(); data is non-NULL even when len is 0. */
struct ent_store_doc {
    char *key;
    uint8_t *data;
    size_t len;
    uint64_t version; /* 1 after insert, +1 on every put/update */
    char *index[ENT_STORE_INDEXES];
    int64_t expires_at_ms; /* wall clock ms since the epoch; 0 = never */
};

struct ent_store_cfg {
    const char *backend;      /* "sqlite" (default when NULL) | "mongo" */
    const char *path;         /* sqlite: database file, created if missing */
    uint64_t busy_timeout_ms; /* sqlite: wait for another writer this long; 0 = 5000 */
    const char *uri;          /* mongo: connection string */
    const char *database;     /* mongo: database name */
};

/* Opens a store. SQLite: creates the file, turns on WAL, sets the busy timeout and applies
 * the schema migrations not yet recorded in the file. On failure a one-line reason (never
 * secrets) goes to err (if err_len > 0) and nothing is left open.
 * Errors: ENT_EINVAL (bad cfg), ENT_EUNSUPPORTED (backend not compiled in), ENT_EUNAVAIL
 * (locked past the busy timeout), ENT_ESTORE, ENT_ENOMEM. *out is set only on ENT_OK. */
ent_err ent_store_open(struct ent_store **out, const struct ent_store_cfg *cfg, char *err,
                       size_t err_len);
/* Closes the connection and frees s. NULL is a no-op. No call may be in flight. */
void ent_store_close(struct ent_store *s);
/* Readiness probe: runs a trivial query. ENT_OK, ENT_EUNAVAIL or ENT_ESTORE. */
ent_err ent_store_ping(struct ent_store *s);
/* "sqlite" or "mongo": a static string. */
const char *ent_store_backend(const struct ent_store *s);

/* Common errors of the calls below: ENT_EINVAL (NULL/empty key, bad collection, limits),
 * ENT_EUNAVAIL (another writer held the database past the busy timeout, or the server is
 * unreachable: retry later), ENT_ESTORE (anything else; logged as "store.error"),
 * ENT_ENOMEM. */

/* Reads one document into *out (which the caller frees with ent_store_doc_free()).
 * A document whose expires_at_ms has passed (wall clock) counts as absent: ENT_ENOTFOUND. */
ent_err ent_store_get(struct ent_store *s, enum ent_store_coll c, const char *key,
                      struct ent_store_doc *out);
/* Creates a document with version 1. ENT_EEXIST if a live document has that key (an expired
 * one is replaced). doc stays the caller's. */
ent_err ent_store_insert(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc);
/* Upsert: replaces data, index values and expiry; the version becomes old+1 (or 1 when the
 * document was absent or expired). *new_version (may be NULL) is set on ENT_OK. */
ent_err ent_store_put(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      uint64_t *new_version);
/* Compare-and-set: replaces the document only if its stored version equals
 * expected_version; the version becomes expected_version+1. ENT_ENOTFOUND if absent or
 * expired, ENT_ECONFLICT if the version differs. This is how a single-use record (an EAP
 * exchange round) is closed exactly once. */
ent_err ent_store_update(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, uint64_t expected_version,
                         uint64_t *new_version);
/* Deletes a document; expected_version 0 means any version. ENT_ENOTFOUND if absent or
 * expired, ENT_ECONFLICT if expected_version is set and differs. */
ent_err ent_store_delete(struct ent_store *s, enum ent_store_coll c, const char *key,
                         uint64_t expected_version);

/* Counters, addressed by (counter, key), e.g. ("sqn", imsi) or ("token_gen", imsi); both
 * strings non-empty. ent_store_incr() atomically adds delta (which may be 0 or negative) to a
 * counter that starts at 0 when absent and returns the value after the addition; two
 * processes incrementing at once never see the same value. ENT_EINVAL if the result would
 * overflow int64 (the counter is left unchanged). */
ent_err ent_store_incr(struct ent_store *s, const char *counter, const char *key, int64_t delta,
                       int64_t *new_value);
/* Current value; ENT_ENOTFOUND if the counter was never written (callers that treat absent
 * as 0 do so explicitly). */
ent_err ent_store_counter_get(struct ent_store *s, const char *counter, const char *key,
                              int64_t *value);
/* Atomically raises a counter to at least min_value (creating it at min_value) and returns
 * the resulting value: max(old, min_value). Used for SQN resynchronisation. */
ent_err ent_store_counter_set_min(struct ent_store *s, const char *counter, const char *key,
                                  int64_t min_value, int64_t *new_value);

/* One page of a query. docs[0..n) and next_after are owned by the page; free with
 * ent_store_page_free(). next_after is NULL on the last page, otherwise pass it as after_key
 * to get the next page. */
struct ent_store_page {
    struct ent_store_doc *docs;
    size_t n;
    char *next_after;
};

/* Lists live documents of a collection in ascending key order (byte order), at most limit
 * (1..ENT_STORE_PAGE_MAX) of them, starting after after_key (NULL = from the start).
 *   index_slot -1, value NULL:   every document;
 *   index_slot -1, value "p":    documents whose key starts with "p";
 *   index_slot 0..2, value "v":  documents whose index[slot] equals "v";
 *   index_slot 0..2, value NULL: every document (as -1).
 * *out is written on ENT_OK only (it may hold 0 documents). */
ent_err ent_store_query(struct ent_store *s, enum ent_store_coll c, int index_slot,
                        const char *value, const char *after_key, size_t limit,
                        struct ent_store_page *out);
/* Deletes documents whose expires_at_ms is set and <= now_ms; *purged (may be NULL) gets
 * the count. Expired documents are already invisible, so this only reclaims space. */
ent_err ent_store_purge_expired(struct ent_store *s, enum ent_store_coll c, int64_t now_ms,
                                size_t *purged);

/* Free the heap parts and zero the struct; NULL and zeroed structs are fine. */
void ent_store_doc_free(struct ent_store_doc *d);
void ent_store_page_free(struct ent_store_page *p);

/* Outbox (notifyd): at-least-once delivery with leases.
 *
 *            enqueue (coalesce_key matches a pending unleased item: replace it)
 *               |
 *               v          claim (due, attempts+1, lease_token+1)
 *   +----> [pending] ------------------------------------> [leased]
 *   |       ^    ^                                          |  |  |
 *   |       |    +---- claim by anyone once lease expired --+  |  |
 *   |       +-------- retry, attempts < max_attempts ----------+  |
 *   |                 retry, attempts >= max_attempts -> [dead]   |
 *   +-- (never)                              ack -> deleted <-----+
 *
 *   transition                       function
 *   (new) -> pending                 ent_store_outbox_enqueue()
 *   pending/expired lease -> leased  ent_store_outbox_claim()
 *   leased -> deleted                ent_store_outbox_ack()
 *   leased -> pending | dead         ent_store_outbox_retry()
 *
 * lease_token grows by one on every claim of an item, so a worker whose lease expired and
 * was taken over holds a stale token: its ack or retry gets ENT_ECONFLICT and changes
 * nothing. A worker whose lease expired but was not yet taken over may still ack. */
struct ent_store_outbox_item {
    uint64_t id;
    char *coalesce_key; /* NULL when enqueued without one */
    uint8_t *payload;   /* non-NULL even when len is 0 */
    size_t len;
    uint32_t attempts; /* claims so far, including this one */
    uint64_t lease_token;
    int64_t due_ms;
    int64_t created_ms;
};

/* Queues payload (1..ENT_STORE_OUTBOX_MAX bytes, copied) to be due at due_ms. When
 * coalesce_key is non-NULL and a pending, unleased item has the same key, that item's payload
 * is replaced and its due time becomes min(old, due_ms) instead of adding an item;
 * *coalesced says which happened. *id (may be NULL) gets the item id. */
ent_err ent_store_outbox_enqueue(struct ent_store *s, const char *coalesce_key, const void *payload,
                                 size_t len, int64_t due_ms, uint64_t *id, bool *coalesced);
/* Leases up to max (1..ENT_STORE_PAGE_MAX) items that are due (due_ms <= now_ms) and either
 * unleased or whose lease ended (<= now_ms), oldest due first, to owner for lease_ms.
 * *items (NULL when *n is 0) is freed with ent_store_outbox_items_free(). */
ent_err ent_store_outbox_claim(struct ent_store *s, const char *owner, int64_t now_ms,
                               uint64_t lease_ms, size_t max, struct ent_store_outbox_item **items,
                               size_t *n);
/* Delivered: deletes the item. ENT_ECONFLICT if lease_token is not the item's current lease
 * (it was re-claimed, retried or is dead), ENT_ENOTFOUND if the item is gone. */
ent_err ent_store_outbox_ack(struct ent_store *s, uint64_t id, uint64_t lease_token);
/* Failed: releases the lease and makes the item due again at next_due_ms, or, once it has
 * been claimed max_attempts times, moves it to the dead-letter state (*dead true; may be
 * NULL). Same ENT_ECONFLICT / ENT_ENOTFOUND as ack. */
ent_err ent_store_outbox_retry(struct ent_store *s, uint64_t id, uint64_t lease_token,
                               int64_t next_due_ms, uint32_t max_attempts, bool *dead);
/* Depth for metrics: pending counts every live item (leased or not), dead the dead letters,
 * oldest_pending_age_ms is now_ms minus the oldest pending item's created_ms (0 if none).
 * Any output pointer may be NULL. */
ent_err ent_store_outbox_stats(struct ent_store *s, int64_t now_ms, uint64_t *pending,
                               uint64_t *dead, int64_t *oldest_pending_age_ms);
void ent_store_outbox_items_free(struct ent_store_outbox_item *items, size_t n);

#endif
