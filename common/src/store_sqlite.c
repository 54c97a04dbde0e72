/* SPDX-License-Identifier: Apache-2.0 */
/* SQLite backend of the store: one database file shared by the daemons of one host. This file
 * owns the schema and its migrations, the connection settings, the prepared-statement caches,
 * the group commit of concurrent writes and the mapping of each store op (store_int.h) onto
 * SQL. Argument checks, wall-clock reads and freeing results belong to store.c.
 *
 * Schema. All collections share one `documents` table with a `coll` column rather than one
 * table per collection: the collections have identical shape (key, blob, version, three
 * index slots, expiry), so one table means one set of statements and indexes, and adding a
 * collection is an enum entry, not a migration. Every index leads with coll, so a lookup in
 * one collection never scans another. Index slots are columns idx0..idx2, each with a partial
 * index on (coll, idxN, key) that serves "equal value, ordered by key, after key" paging.
 * Counters have their own table; the outbox has its own table with an INTEGER id.
 *
 * Durability: journal_mode=WAL so readers never block the writer, with synchronous=FULL.
 * With WAL, NORMAL survives a process crash but may lose the last commits on power loss or
 * a kernel crash; the store's promise is that nothing acknowledged is ever lost (an outbox
 * item, an SQN step that already left in a challenge, an admin change). FULL costs one fsync
 * of the WAL per COMMIT (~0.25 ms here), which would cap one store at ~4,000 writes/s if every
 * write were its own transaction. Group commit shares that fsync between the writes that
 * arrive together.
 *
 * Group commit. Each ent_store has two connections: `w`, the only one that writes, and `r`,
 * a query_only connection for the reads. A write op is packed into a struct sq_op on its
 * caller's stack and queued; whichever caller finds no batch running becomes the leader,
 * takes up to SQ_BATCH_MAX queued ops (its own and the ones that queued behind it) and runs
 * them all in one transaction, each under its own savepoint:
 *
 *   caller threads            queue (wmu)          leader = one of the callers, on `w`
 *   sq_write(A) ──append──▶ [A]                   (no batch running: A's caller leads)
 *                             │ take ≤ SQ_BATCH_MAX
 *                             └──────────────────▶ sq_batch_run([A])
 *   sq_write(B) ──append──▶ [B]                      BEGIN IMMEDIATE
 *   sq_write(C) ──append──▶ [B C]  (B, C wait         A   (alone: no savepoint needed)
 *                                   on op->sem)       COMMIT ── fsync ──┐
 *                                                                       │
 *   A returns ◀── rc ◀── B is the head: B = LEAD, post B (leading stays) ◀┘
 *   B's caller leads:  sq_batch_run([B C])
 *                        BEGIN IMMEDIATE
 *                        SAVEPOINT op; B; RELEASE op                    (B ok)
 *                        SAVEPOINT op; C; ROLLBACK TO op; RELEASE op    (C: ECONFLICT)
 *                        COMMIT ── one fsync for both ──▶ B gets OK; C = SETTLED, post C:
 *                                                         C gets ECONFLICT
 *
 *   step                                  function
 *   queue an op, wait, maybe lead         sq_write()
 *   run one batch in one transaction      sq_batch_run()
 *   one op inside the batch               sq_<op>_run() (e.g. sq_incr_run())
 *
 * A lone caller finds the queue empty and leads at once: no timer, no waiting for company,
 * so a single write costs what it cost before (one transaction, one fsync). Batches grow
 * only while a COMMIT is in progress, i.e. exactly when callers would have queued anyway.
 *
 * Reads go to `r` under their own mutex `rmu` and never wait behind a batch's fsync. WAL
 * gives each read a snapshot of the last COMMIT, so a read sees every write that has been
 * acknowledged (acknowledgement comes after COMMIT) and never a batch in progress. The price:
 * SQLite drops a connection's page cache when another connection has committed, so `r`
 * re-reads pages from the OS cache after each batch. Measured with bench_auth, reads on `r`
 * gave ~4,000 authentications/s where reads on `w` (waiting for the batch) gave ~3,350.
 *
 * Invariants:
 *   1. Every write runs inside BEGIN IMMEDIATE, so it takes the write lock before reading
 *      and never fails half-way with SQLITE_BUSY_SNAPSHOT; the busy timeout then applies to
 *      the whole batch. A writer (another process) held longer than the timeout gives
 *      ENT_EUNAVAIL to every op of the batch.
 *   2. Each op touches one document (or one counter, or one outbox item, except claim and
 *      purge which are one statement each), matching what MongoDB can do atomically. Ops of
 *      one batch run one after the other in queue order, so each sees the effect of the ones
 *      before it exactly as if they had committed separately.
 *   3. An op's result is given to its caller only after the batch's COMMIT returned
 *      SQLITE_OK (durable under synchronous=FULL). If COMMIT fails, every op of the batch
 *      fails with that error; nothing of the batch is kept.
 *   4. An op that fails (ECONFLICT, EEXIST, ENOTFOUND, overflow, a statement error) is rolled
 *      back to its own savepoint and reports its own error; the other ops of the batch are
 *      unaffected. If SQLite abandons the whole transaction (I/O error, disk full), the ops
 *      that ran in it fail with that error and the ones that had not run go back to the head
 *      of the queue. A batch in which no op succeeded is rolled back, not committed.
 *   5. At most one leader at a time (`leading`, under wmu): `w` and its statement cache are
 *      used only by the leader, `r` and its cache only under rmu. SQLite connections must not
 *      run statements from two threads at once (they are opened NOMUTEX).
 *   6. A queued op lives on its caller's stack, and its semaphore is posted exactly once:
 *      SETTLED (the leader wrote its results, then the state, then posts and never touches
 *      it again) or LEAD (the leader hands the lead to the queue's head; `leading` stays
 *      set, so no other leader can settle that op meanwhile). The caller reads the state
 *      after its wait without taking wmu, so a finished batch wakes its callers without
 *      making them queue for a mutex. A leader leads until its own op settled, then hands
 *      the lead to the head if ops are queued, so no queued op waits for a wake-up that
 *      never comes.
 *   7. A document whose expires_at_ms is set and <= now is invisible to every op; insert and
 *      put replace it as if absent.
 *   8. Migrations are append-only: each runs once, in its own transaction, and is recorded
 *      in schema_version in that same transaction, so a crash or a second process opening
 *      the file at the same time never applies one twice. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "ent/log.h"
#include "ent/store.h"
#include "ent/util.h"
#include "store_int.h"

#define SQ_BUSY_TIMEOUT_DEFAULT_MS 5000

/* The schema, one script per version; schema_version records which ran. Append only: never
 * edit a script that has shipped. */
static const char *const sq_migrations[] = {
    /* 1: documents, counters, outbox. */
    "CREATE TABLE documents ("
    " coll TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " version INTEGER NOT NULL,"
    " idx0 TEXT, idx1 TEXT, idx2 TEXT,"
    " expires_at_ms INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (coll, key)) WITHOUT ROWID;"
    "CREATE INDEX documents_idx0 ON documents (coll, idx0, key) WHERE idx0 IS NOT NULL;"
    "CREATE INDEX documents_idx1 ON documents (coll, idx1, key) WHERE idx1 IS NOT NULL;"
    "CREATE INDEX documents_idx2 ON documents (coll, idx2, key) WHERE idx2 IS NOT NULL;"
    "CREATE INDEX documents_expiry ON documents (coll, expires_at_ms)"
    " WHERE expires_at_ms != 0;"
    "CREATE TABLE counters ("
    " name TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " value INTEGER NOT NULL,"
    " PRIMARY KEY (name, key)) WITHOUT ROWID;"
    /* state: 0 pending, 1 dead. lease_until_ms 0 = unleased. lease_token counts claims. */
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " coalesce_key TEXT,"
    " payload BLOB NOT NULL,"
    " due_ms INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " lease_owner TEXT,"
    " lease_token INTEGER NOT NULL DEFAULT 0,"
    " lease_until_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX outbox_due ON outbox (state, due_ms, id);"
    "CREATE INDEX outbox_coalesce ON outbox (coalesce_key, id)"
    " WHERE coalesce_key IS NOT NULL AND state = 0 AND lease_until_ms = 0;",
};

/* "Live" = not expired at ?now. Spelled out in each statement so the planner sees it. */
#define SQ_DOC_COLS      "key, data, version, idx0, idx1, idx2, expires_at_ms"
#define SQ_LIVE(now)     "(expires_at_ms = 0 OR expires_at_ms > " now ")"
#define SQ_DEAD_OLD(now) "(documents.expires_at_ms != 0 AND documents.expires_at_ms <= " now ")"

enum sq_stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_PING,
    ST_DOC_GET,
    ST_DOC_INSERT,
    ST_DOC_PUT,
    ST_DOC_UPDATE,
    ST_DOC_VERSION,
    ST_DOC_DELETE,
    ST_DOC_PURGE,
    ST_Q_ALL,
    ST_Q_PREFIX,
    ST_Q_IDX0,
    ST_Q_IDX1,
    ST_Q_IDX2,
    ST_CTR_INCR,
    ST_CTR_GET,
    ST_CTR_SET_MIN,
    ST_OB_COALESCE,
    ST_OB_INSERT,
    ST_OB_CLAIM,
    ST_OB_ACK,
    ST_OB_RETRY,
    ST_OB_EXISTS,
    ST_OB_STATS,
    ST_COUNT_
};

/* SQL reads better laid out by clause than as the formatter would wrap it. */
/* clang-format off */
/* Documents bind ?1 coll, ?2 key, ?3 data, ?4..?6 idx0..2, ?7 expires_at_ms, ?8 now. */
static const char *const sq_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT op",
    [ST_RELEASE] = "RELEASE op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO op",
    [ST_PING] = "SELECT 1",
    [ST_DOC_GET] = "SELECT " SQ_DOC_COLS " FROM documents"
                   " WHERE coll = ?1 AND key = ?2 AND " SQ_LIVE("?8"),
    [ST_DOC_INSERT] =
        "INSERT INTO documents (coll, key, data, version, idx0, idx1, idx2, expires_at_ms)"
        " VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7)"
        " ON CONFLICT (coll, key) DO UPDATE SET data = excluded.data, version = 1,"
        " idx0 = excluded.idx0, idx1 = excluded.idx1, idx2 = excluded.idx2,"
        " expires_at_ms = excluded.expires_at_ms WHERE " SQ_DEAD_OLD("?8") " RETURNING version",
    [ST_DOC_PUT] =
        "INSERT INTO documents (coll, key, data, version, idx0, idx1, idx2, expires_at_ms)"
        " VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7)"
        " ON CONFLICT (coll, key) DO UPDATE SET data = excluded.data,"
        " version = CASE WHEN " SQ_DEAD_OLD("?8") " THEN 1 ELSE documents.version + 1 END,"
        " idx0 = excluded.idx0, idx1 = excluded.idx1, idx2 = excluded.idx2,"
        " expires_at_ms = excluded.expires_at_ms RETURNING version",
    [ST_DOC_UPDATE] =
        "UPDATE documents SET data = ?3, version = version + 1, idx0 = ?4,"
        " idx1 = ?5, idx2 = ?6, expires_at_ms = ?7"
        " WHERE coll = ?1 AND key = ?2 AND version = ?9 AND " SQ_LIVE("?8") " RETURNING version",
    [ST_DOC_VERSION] = "SELECT version FROM documents"
                       " WHERE coll = ?1 AND key = ?2 AND " SQ_LIVE("?3"),
    [ST_DOC_DELETE] = "DELETE FROM documents WHERE coll = ?1 AND key = ?2"
                      " AND (?3 = 0 OR version = ?3) AND " SQ_LIVE("?4") " RETURNING version",
    [ST_DOC_PURGE] = "DELETE FROM documents"
                     " WHERE coll = ?1 AND expires_at_ms != 0 AND expires_at_ms <= ?2",
    /* Queries bind ?1 coll, ?2 after key ('' = from the start; keys are never empty),
     * ?3 now, ?4 limit, ?5 value, ?6 prefix upper bound (NULL = none). */
    [ST_Q_ALL] = "SELECT " SQ_DOC_COLS " FROM documents WHERE coll = ?1 AND key > ?2"
                 " AND " SQ_LIVE("?3") " ORDER BY key LIMIT ?4",
    [ST_Q_PREFIX] = "SELECT " SQ_DOC_COLS " FROM documents WHERE coll = ?1 AND key > ?2"
                    " AND key >= ?5 AND (?6 IS NULL OR key < ?6)"
                    " AND " SQ_LIVE("?3") " ORDER BY key LIMIT ?4",
    [ST_Q_IDX0] = "SELECT " SQ_DOC_COLS " FROM documents WHERE coll = ?1 AND idx0 = ?5"
                  " AND key > ?2 AND " SQ_LIVE("?3") " ORDER BY key LIMIT ?4",
    [ST_Q_IDX1] = "SELECT " SQ_DOC_COLS " FROM documents WHERE coll = ?1 AND idx1 = ?5"
                  " AND key > ?2 AND " SQ_LIVE("?3") " ORDER BY key LIMIT ?4",
    [ST_Q_IDX2] = "SELECT " SQ_DOC_COLS " FROM documents WHERE coll = ?1 AND idx2 = ?5"
                  " AND key > ?2 AND " SQ_LIVE("?3") " ORDER BY key LIMIT ?4",
    /* ?3 delta, ?4 the bound value must respect so value + delta stays in int64 (SQLite
     * would silently turn an overflowing sum into a REAL). No row back = overflow. */
    [ST_CTR_INCR] = "INSERT INTO counters (name, key, value) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (name, key) DO UPDATE SET value = value + excluded.value"
                    " WHERE CASE WHEN ?3 >= 0 THEN value <= ?4 ELSE value >= ?4 END"
                    " RETURNING value",
    [ST_CTR_GET] = "SELECT value FROM counters WHERE name = ?1 AND key = ?2",
    [ST_CTR_SET_MIN] = "INSERT INTO counters (name, key, value) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT (name, key) DO UPDATE SET"
                       " value = max(value, excluded.value) RETURNING value",
    [ST_OB_COALESCE] = "UPDATE outbox SET payload = ?2, due_ms = min(due_ms, ?3)"
                       " WHERE id = (SELECT id FROM outbox WHERE coalesce_key = ?1"
                       " AND state = 0 AND lease_until_ms = 0 ORDER BY id LIMIT 1)"
                       " RETURNING id",
    [ST_OB_INSERT] = "INSERT INTO outbox (coalesce_key, payload, due_ms, created_ms)"
                     " VALUES (?1, ?2, ?3, ?4) RETURNING id",
    [ST_OB_CLAIM] = "UPDATE outbox SET lease_owner = ?1, lease_until_ms = ?2 + ?3,"
                    " lease_token = lease_token + 1, attempts = attempts + 1"
                    " WHERE id IN (SELECT id FROM outbox WHERE state = 0 AND due_ms <= ?2"
                    " AND lease_until_ms <= ?2 ORDER BY due_ms, id LIMIT ?4)"
                    " RETURNING id, coalesce_key, payload, attempts, lease_token, due_ms,"
                    " created_ms",
    [ST_OB_ACK] = "DELETE FROM outbox WHERE id = ?1 AND lease_token = ?2 AND state = 0"
                  " AND lease_until_ms != 0",
    [ST_OB_RETRY] = "UPDATE outbox SET lease_owner = NULL, lease_until_ms = 0, due_ms = ?3,"
                    " state = CASE WHEN attempts >= ?4 THEN 1 ELSE 0 END"
                    " WHERE id = ?1 AND lease_token = ?2 AND state = 0 AND lease_until_ms != 0"
                    " RETURNING state",
    [ST_OB_EXISTS] = "SELECT 1 FROM outbox WHERE id = ?1",
    [ST_OB_STATS] = "SELECT count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 1),"
                    " min(created_ms) FILTER (WHERE state = 0) FROM outbox",
};
/* clang-format on */

/* Most ops one batch may hold: bounds the time a transaction holds the write lock (another
 * process waits that long) and the work one leader does for others before it returns. */
#define SQ_BATCH_MAX 64

/* A connection with its statement cache. Who may use it: invariant 5. */
struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[ST_COUNT_];
};

enum sq_op_state {
    SQ_OP_QUEUED,  /* waiting in the queue or in a running batch */
    SQ_OP_LEAD,    /* handed the lead (with `leading` still set) by the previous leader */
    SQ_OP_SETTLED, /* rc (and the op's outputs) are final */
};

/* One queued write (invariant 6). run() executes the op on the writer inside the batch's
 * transaction and returns its result; it writes its outputs into the struct that embeds the
 * sq_op, which its caller copies out on ENT_OK. The caller destroys sem as soon as its wait
 * returned, which POSIX allows and glibc's sem_post honours (after the increment that
 * releases the waiter it only passes the address to futex_wake, reading nothing). */
struct sq_op {
    ent_err (*run)(struct sq_conn *w, struct sq_op *op);
    struct sq_op *next;
    ent_err rc;
    atomic_int state; /* enum sq_op_state; written before the one post of sem */
    sem_t sem;        /* its caller waits here; posted exactly once (invariant 6) */
};

struct sq_store {
    struct ent_store base;
    /* The write side: queue, leader flag and the writer connection. */
    pthread_mutex_t wmu;
    struct sq_op *head, *tail;
    bool leading;
    struct sq_conn w;
    /* The read side. */
    pthread_mutex_t rmu;
    struct sq_conn r;
};

static struct sq_store *sq_of(struct ent_store *s)
{
    return ENT_CONTAINER_OF(s, struct sq_store, base);
}

/* Converts an SQLite result code once. Busy/locked means another writer held the file past
 * the busy timeout: transient, the caller may retry. Anything else is logged here, because
 * only here is the SQLite message known; it never contains bound values. */
static ent_err sq_fail(struct sq_conn *cn, int r, const char *op)
{
    int primary = r & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return ENT_EUNAVAIL;
    if (primary == SQLITE_NOMEM)
        return ENT_ENOMEM;
    ENT_LOG_ERROR(NULL, "store.error", ENT_KV_STR("backend", "sqlite"), ENT_KV_STR("op", op),
                  ENT_KV_I64("code", r), ENT_KV_STR("error", sqlite3_errmsg(cn->db)));
    return ENT_ESTORE;
}

/* Returns the connection's cached statement, preparing it on first use. The caller may use
 * the connection (invariant 5). */
static ent_err sq_stmt(struct sq_conn *cn, enum sq_stmt id, sqlite3_stmt **out)
{
    if (cn->stmts[id] == NULL) {
        sqlite3_stmt *st = NULL;
        int r = sqlite3_prepare_v3(cn->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (r != SQLITE_OK) {
            sqlite3_finalize(st);
            return sq_fail(cn, r, "prepare");
        }
        cn->stmts[id] = st;
    }
    *out = cn->stmts[id];
    return ENT_OK;
}

static void sq_done(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Runs a statement that returns no rows of interest (BEGIN, COMMIT, SAVEPOINT ...). */
static ent_err sq_exec_cached(struct sq_conn *cn, enum sq_stmt id, const char *op)
{
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(cn, id, &st);
    if (rc != ENT_OK)
        return rc;
    int r = sqlite3_step(st);
    if (r != SQLITE_DONE && r != SQLITE_ROW)
        rc = sq_fail(cn, r, op);
    sq_done(st);
    return rc;
}

static void sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    /* SQLITE_STATIC: every statement is reset before the caller's strings go away. */
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void sq_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
    /* A NULL pointer would bind SQL NULL; an empty blob is still a blob. */
    if (len == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob(st, i, p, (int)len, SQLITE_STATIC);
}

static void sq_bind_doc(sqlite3_stmt *st, enum ent_store_coll c, const struct ent_store_doc *doc,
                        int64_t now_ms)
{
    sq_bind_text(st, 1, ent_store_coll_name(c));
    sq_bind_text(st, 2, doc->key);
    sq_bind_blob(st, 3, doc->data, doc->len);
    for (int i = 0; i < ENT_STORE_INDEXES; i++)
        sq_bind_text(st, 4 + i, doc->index[i]);
    sqlite3_bind_int64(st, 7, doc->expires_at_ms);
    sqlite3_bind_int64(st, 8, now_ms);
}

static ent_err sq_col_text(sqlite3_stmt *st, int col, char **out)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t == NULL) {
        *out = NULL;
        return sqlite3_column_type(st, col) == SQLITE_NULL ? ENT_OK : ENT_ENOMEM;
    }
    *out = ent_store_strdup_((const char *)t);
    return *out != NULL ? ENT_OK : ENT_ENOMEM;
}

static ent_err sq_col_blob(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    *out = ent_store_memdup_(p, (size_t)n);
    *len = (size_t)n;
    return *out != NULL ? ENT_OK : ENT_ENOMEM;
}

/* Reads a row of SQ_DOC_COLS into *d (zeroed first; freed again on failure). */
static ent_err sq_row_doc(sqlite3_stmt *st, struct ent_store_doc *d)
{
    memset(d, 0, sizeof(*d));
    ent_err rc = sq_col_text(st, 0, &d->key);
    if (rc == ENT_OK)
        rc = sq_col_blob(st, 1, &d->data, &d->len);
    for (int i = 0; rc == ENT_OK && i < ENT_STORE_INDEXES; i++)
        rc = sq_col_text(st, 3 + i, &d->index[i]);
    if (rc != ENT_OK) {
        ent_store_doc_free(d);
        return rc;
    }
    d->version = (uint64_t)sqlite3_column_int64(st, 2);
    d->expires_at_ms = sqlite3_column_int64(st, 6);
    return ENT_OK;
}

/* Steps a statement expected to RETURN one integer; no row gives `none`. */
static ent_err sq_step_returning(struct sq_conn *cn, sqlite3_stmt *st, const char *op, ent_err none,
                                 int64_t *value)
{
    int r = sqlite3_step(st);
    ent_err rc;
    if (r == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
        /* Let RETURNING finish so the change is complete before the commit. */
        r = sqlite3_step(st);
        rc = r == SQLITE_DONE ? ENT_OK : sq_fail(cn, r, op);
    } else if (r == SQLITE_DONE) {
        rc = none;
    } else {
        rc = sq_fail(cn, r, op);
    }
    sq_done(st);
    return rc;
}

/* ---- group commit --------------------------------------------------------------------- */

/* Ends a batch that cannot commit: rolls back what is left of the transaction and gives rc to
 * ops[0..n). */
static void sq_batch_abort(struct sq_conn *w, struct sq_op *const *ops, size_t n, ent_err rc)
{
    if (!sqlite3_get_autocommit(w->db))
        (void)sq_exec_cached(w, ST_ROLLBACK, "rollback");
    for (size_t i = 0; i < n; i++)
        ops[i]->rc = rc;
}

/* Leader only (invariant 5), wmu not held. Runs ops[0..n) in one transaction, each under its
 * own savepoint (invariant 4), and commits once if any op succeeded. Sets every settled op's
 * rc and returns how many ops, from the start, are settled; the rest never ran (SQLite
 * abandoned the transaction before them) and must be queued again. */
static size_t sq_batch_run(struct sq_conn *w, struct sq_op *const *ops, size_t n)
{
    ent_err rc = sq_exec_cached(w, ST_BEGIN, "begin");
    if (rc != ENT_OK) {
        sq_batch_abort(w, ops, n, rc);
        return n;
    }
    /* One op alone needs no savepoint: if it fails, the whole transaction is rolled back. */
    bool savepoints = n > 1;
    size_t succeeded = 0;
    for (size_t i = 0; i < n; i++) {
        struct sq_op *op = ops[i];
        if (savepoints) {
            rc = sq_exec_cached(w, ST_SAVEPOINT, "savepoint");
            if (rc != ENT_OK) {
                /* Ops before i ran in a transaction we now give up; op i fails with them (so
                 * every batch settles at least one op) and the later ones never ran. */
                sq_batch_abort(w, ops, i + 1, rc);
                return i + 1;
            }
        }
        op->rc = op->run(w, op);
        if (sqlite3_get_autocommit(w->db)) {
            /* SQLite abandoned the transaction (I/O error, disk full, ...): every op that ran
             * in it is lost. */
            rc = op->rc != ENT_OK ? op->rc : ENT_ESTORE;
            sq_batch_abort(w, ops, i + 1, rc);
            return i + 1;
        }
        if (op->rc == ENT_OK)
            succeeded++;
        if (savepoints) {
            rc = ENT_OK;
            if (op->rc != ENT_OK)
                rc = sq_exec_cached(w, ST_ROLLBACK_TO, "rollback_to");
            if (rc == ENT_OK)
                rc = sq_exec_cached(w, ST_RELEASE, "release");
            if (rc != ENT_OK) {
                sq_batch_abort(w, ops, i + 1, rc);
                return i + 1;
            }
        }
    }
    if (succeeded == 0) {
        /* Nothing to keep: skip the fsync. The failures each keep their own error. */
        (void)sq_exec_cached(w, ST_ROLLBACK, "rollback");
        return n;
    }
    rc = sq_exec_cached(w, ST_COMMIT, "commit");
    if (rc != ENT_OK)
        sq_batch_abort(w, ops, n, rc);
    return n;
}

/* Posts op's semaphore once, after its state (invariant 6). */
static void sq_op_post(struct sq_op *op, enum sq_op_state st)
{
    atomic_store_explicit(&op->state, (int)st, memory_order_release);
    sem_post(&op->sem);
}

/* Any thread. Queues op, waits until a batch holding it has committed (or failed), leading
 * batches when no other caller does or when the lead is handed to it. Returns the op's
 * result; its outputs are valid only on ENT_OK. op lives on the caller's stack until this
 * returns.
 *
 * Wake-ups are per op and exactly one per op: a finished batch posts each of its callers,
 * and the leader, once its own op settled, posts the oldest queued op to lead next (or
 * clears `leading` when nothing is queued). The posts happen after wmu is released, and a
 * woken caller does not take wmu unless it leads: waking a whole batch costs one futex wake
 * per caller and no contention on the mutex. */
static ent_err sq_write(struct sq_store *q, struct sq_op *op)
{
    op->next = NULL;
    op->rc = ENT_OK;
    atomic_init(&op->state, SQ_OP_QUEUED);
    if (sem_init(&op->sem, 0, 0) != 0)
        return ENT_ENOMEM;
    pthread_mutex_lock(&q->wmu);
    if (q->tail != NULL)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
    if (q->leading) {
        pthread_mutex_unlock(&q->wmu);
        while (sem_wait(&op->sem) != 0)
            assert(errno == EINTR); /* a signal; anything else would be our own bug */
        if (atomic_load_explicit(&op->state, memory_order_acquire) == SQ_OP_SETTLED)
            goto out;
        /* SQ_OP_LEAD: `leading` is still set on our behalf. */
        pthread_mutex_lock(&q->wmu);
    } else {
        q->leading = true;
    }
    /* Leading, wmu held: run batches until our own op settled. Ours is usually in the first
     * one; if more than SQ_BATCH_MAX ops were ahead of it, in a later one. */
    for (;;) {
        struct sq_op *batch[SQ_BATCH_MAX];
        size_t n = 0;
        while (n < SQ_BATCH_MAX && q->head != NULL) {
            batch[n++] = q->head;
            q->head = q->head->next;
        }
        if (q->head == NULL)
            q->tail = NULL;
        pthread_mutex_unlock(&q->wmu);

        size_t settled = sq_batch_run(&q->w, batch, n);

        pthread_mutex_lock(&q->wmu);
        /* Ops that never ran go back to the head, in their order (invariant 4). */
        for (size_t i = n; i > settled; i--) {
            struct sq_op *o = batch[i - 1];
            o->next = q->head;
            q->head = o;
            if (q->tail == NULL)
                q->tail = o;
        }
        bool mine = false;
        for (size_t i = 0; i < settled; i++)
            mine = mine || batch[i] == op;
        struct sq_op *next_leader = NULL;
        if (mine) {
            /* Hand the lead over while still holding wmu, so no caller arriving now starts
             * a batch of its own beside the one we hand over. */
            next_leader = q->head;
            if (next_leader == NULL)
                q->leading = false;
        }
        pthread_mutex_unlock(&q->wmu);
        /* Settled ops left the queue: no one but us touches them until their post. */
        for (size_t i = 0; i < settled; i++)
            if (batch[i] != op)
                sq_op_post(batch[i], SQ_OP_SETTLED);
        if (mine) {
            if (next_leader != NULL)
                sq_op_post(next_leader, SQ_OP_LEAD);
            break;
        }
        pthread_mutex_lock(&q->wmu);
    }
out:;
    ent_err rc = op->rc;
    /* Posted once and waited for: no one touches op->sem any more. */
    sem_destroy(&op->sem);
    return rc;
}

/* ---- open, migrations, close ---------------------------------------------------------- */

static ent_err sq_open_fail(sqlite3 *db, int r, const char *what, char *err, size_t err_len)
{
    int primary = r & 0xff;
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "sqlite: %s: %s", what,
                 db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(r));
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return ENT_EUNAVAIL;
    if (primary == SQLITE_NOMEM)
        return ENT_ENOMEM;
    return ENT_ESTORE;
}

/* Applies the migrations not yet recorded (invariant 8). Each runs in BEGIN IMMEDIATE, so
 * two processes opening a new file at once take turns and the second sees the first's
 * record. */
static ent_err sq_migrate(sqlite3 *db, char *err, size_t err_len)
{
    int r = sqlite3_exec(db,
                         "CREATE TABLE IF NOT EXISTS schema_version ("
                         " version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
                         NULL, NULL, NULL);
    if (r != SQLITE_OK)
        return sq_open_fail(db, r, "schema_version", err, err_len);
    for (size_t i = 0; i < ENT_ARRAY_LEN(sq_migrations); i++) {
        int64_t version = (int64_t)i + 1;
        r = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (r != SQLITE_OK)
            return sq_open_fail(db, r, "migration begin", err, err_len);
        sqlite3_stmt *st = NULL;
        r = sqlite3_prepare_v2(db, "SELECT 1 FROM schema_version WHERE version = ?1", -1, &st,
                               NULL);
        bool applied = false;
        if (r == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, version);
            r = sqlite3_step(st);
            applied = r == SQLITE_ROW;
            r = r == SQLITE_ROW || r == SQLITE_DONE ? SQLITE_OK : r;
        }
        sqlite3_finalize(st);
        st = NULL;
        if (r == SQLITE_OK && !applied)
            r = sqlite3_exec(db, sq_migrations[i], NULL, NULL, NULL);
        if (r == SQLITE_OK && !applied) {
            r = sqlite3_prepare_v2(db,
                                   "INSERT INTO schema_version (version, applied_at_ms)"
                                   " VALUES (?1, ?2)",
                                   -1, &st, NULL);
            if (r == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, version);
                sqlite3_bind_int64(st, 2, (int64_t)ent_wall_ms());
                r = sqlite3_step(st);
                r = r == SQLITE_DONE ? SQLITE_OK : r;
            }
            sqlite3_finalize(st);
        }
        if (r == SQLITE_OK)
            r = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (r != SQLITE_OK) {
            ent_err rc = sq_open_fail(db, r, "migration", err, err_len);
            if (!sqlite3_get_autocommit(db))
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (!applied)
            ENT_LOG_INFO(NULL, "store.migrated", ENT_KV_STR("backend", "sqlite"),
                         ENT_KV_I64("version", version));
    }
    return ENT_OK;
}

static void sq_conn_close(struct sq_conn *cn)
{
    for (size_t i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(cn->stmts[i]);
    /* All statements are finalized, so close cannot fail with SQLITE_BUSY. */
    sqlite3_close(cn->db);
    memset(cn, 0, sizeof(*cn));
}

static void sq_close(struct ent_store *s)
{
    struct sq_store *q = sq_of(s);
    assert(q->head == NULL && !q->leading);
    /* The reader first, so the writer is the last connection and checkpoints the WAL. */
    sq_conn_close(&q->r);
    sq_conn_close(&q->w);
    pthread_mutex_destroy(&q->rmu);
    pthread_mutex_destroy(&q->wmu);
    free(q);
}

/* Switches the file to WAL. When several processes open a new file at once (the four
 * daemons under ./run), the switch can answer SQLITE_BUSY without consulting the busy
 * handler, so retry it ourselves for up to busy_ms. */
static int sq_enable_wal(sqlite3 *db, uint64_t busy_ms)
{
    uint64_t deadline = ent_now_ms() + busy_ms;
    for (;;) {
        sqlite3_stmt *st = NULL;
        int r = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (r == SQLITE_OK) {
            r = sqlite3_step(st);
            if (r == SQLITE_ROW) {
                const unsigned char *mode = sqlite3_column_text(st, 0);
                r = mode != NULL && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK
                                                                           : SQLITE_CANTOPEN;
            }
        }
        sqlite3_finalize(st);
        if ((r & 0xff) != SQLITE_BUSY || ent_now_ms() >= deadline)
            return r;
        sqlite3_sleep(10);
    }
}

/* Opens the writer: creates the file, WAL, synchronous=FULL, migrations. */
static ent_err sq_open_writer(struct sq_conn *w, const char *path, uint64_t busy_ms, char *err,
                              size_t err_len)
{
    /* NOMUTEX: only the leader uses the writer (invariant 5). */
    int r = sqlite3_open_v2(path, &w->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    const char *what = "open";
    if (r == SQLITE_OK) {
        sqlite3_extended_result_codes(w->db, 1);
        r = sqlite3_busy_timeout(w->db, (int)busy_ms);
    }
    if (r == SQLITE_OK) {
        /* journal_mode answers with the mode now in force; anything but "wal" (e.g. a file
         * system without shared memory) is an error rather than a silent downgrade. */
        what = "journal_mode";
        r = sq_enable_wal(w->db, busy_ms);
    }
    if (r == SQLITE_OK) {
        what = "pragmas";
        r = sqlite3_exec(w->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL,
                         NULL);
    }
    if (r != SQLITE_OK)
        return sq_open_fail(w->db, r, what, err, err_len);
    return sq_migrate(w->db, err, err_len);
}

/* Opens the reader on the file the writer has just set up. query_only makes an accidental
 * write an error instead of a second, unbatched writer. */
static ent_err sq_open_reader(struct sq_conn *rd, const char *path, uint64_t busy_ms, char *err,
                              size_t err_len)
{
    int r = sqlite3_open_v2(path, &rd->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (r == SQLITE_OK) {
        sqlite3_extended_result_codes(rd->db, 1);
        /* A WAL reader can meet SQLITE_BUSY briefly while another connection recovers the
         * WAL index; the busy handler covers that. */
        r = sqlite3_busy_timeout(rd->db, (int)busy_ms);
    }
    if (r == SQLITE_OK)
        r = sqlite3_exec(rd->db, "PRAGMA query_only=1", NULL, NULL, NULL);
    if (r != SQLITE_OK)
        return sq_open_fail(rd->db, r, "open reader", err, err_len);
    return ENT_OK;
}

static ent_err sq_open(struct ent_store **out, const struct ent_store_cfg *cfg, char *err,
                       size_t err_len)
{
    if (cfg->path == NULL || cfg->path[0] == '\0') {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "sqlite: store path is not set");
        return ENT_EINVAL;
    }
    uint64_t busy_ms =
        cfg->busy_timeout_ms != 0 ? cfg->busy_timeout_ms : SQ_BUSY_TIMEOUT_DEFAULT_MS;
    if (busy_ms > INT32_MAX)
        busy_ms = INT32_MAX;

    struct sq_store *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ENT_ENOMEM;
    if (pthread_mutex_init(&q->wmu, NULL) != 0) {
        free(q);
        return ENT_ENOMEM;
    }
    if (pthread_mutex_init(&q->rmu, NULL) != 0) {
        pthread_mutex_destroy(&q->wmu);
        free(q);
        return ENT_ENOMEM;
    }
    ent_err rc = sq_open_writer(&q->w, cfg->path, busy_ms, err, err_len);
    if (rc == ENT_OK)
        rc = sq_open_reader(&q->r, cfg->path, busy_ms, err, err_len);
    if (rc != ENT_OK) {
        sq_close(&q->base);
        return rc;
    }
    *out = &q->base;
    return ENT_OK;
}

/* ---- reads (reader connection, rmu) --------------------------------------------------- */

static ent_err sq_ping(struct ent_store *s)
{
    struct sq_store *q = sq_of(s);
    pthread_mutex_lock(&q->rmu);
    ent_err rc = sq_exec_cached(&q->r, ST_PING, "ping");
    pthread_mutex_unlock(&q->rmu);
    return rc;
}

static ent_err sq_get(struct ent_store *s, enum ent_store_coll c, const char *key, int64_t now_ms,
                      struct ent_store_doc *out)
{
    struct sq_store *q = sq_of(s);
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(&q->r, ST_DOC_GET, &st);
    if (rc == ENT_OK) {
        sq_bind_text(st, 1, ent_store_coll_name(c));
        sq_bind_text(st, 2, key);
        sqlite3_bind_int64(st, 8, now_ms);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            rc = sq_row_doc(st, out);
        else if (r == SQLITE_DONE)
            rc = ENT_ENOTFOUND;
        else
            rc = sq_fail(&q->r, r, "get");
    }
    sq_done(st);
    pthread_mutex_unlock(&q->rmu);
    return rc;
}

/* Smallest string greater than every string starting with prefix, in byte order: the prefix
 * with its last byte below 0xff incremented and the rest cut. NULL in *out when there is none
 * (prefix all 0xff bytes, or empty). */
static ent_err sq_prefix_upper(const char *prefix, char **out)
{
    size_t n = strlen(prefix);
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0) {
        *out = NULL;
        return ENT_OK;
    }
    char *u = malloc(n + 1);
    if (u == NULL)
        return ENT_ENOMEM;
    memcpy(u, prefix, n);
    u[n - 1] = (char)((unsigned char)u[n - 1] + 1);
    u[n] = '\0';
    *out = u;
    return ENT_OK;
}

static ent_err sq_query(struct ent_store *s, enum ent_store_coll c, int index_slot,
                        const char *value, const char *after_key, size_t limit, int64_t now_ms,
                        struct ent_store_page *out)
{
    struct sq_store *q = sq_of(s);
    enum sq_stmt id = ST_Q_ALL;
    if (index_slot == -1 && value != NULL)
        id = ST_Q_PREFIX;
    else if (index_slot >= 0)
        id = (enum sq_stmt)(ST_Q_IDX0 + index_slot);
    char *upper = NULL;
    if (id == ST_Q_PREFIX) {
        ent_err rc = sq_prefix_upper(value, &upper);
        if (rc != ENT_OK)
            return rc;
    }
    struct ent_store_page page = {0};
    page.docs = calloc(limit, sizeof(*page.docs));
    if (page.docs == NULL) {
        free(upper);
        return ENT_ENOMEM;
    }

    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *st = NULL;
    bool more = false;
    ent_err rc = sq_stmt(&q->r, id, &st);
    if (rc == ENT_OK) {
        sq_bind_text(st, 1, ent_store_coll_name(c));
        sq_bind_text(st, 2, after_key != NULL ? after_key : "");
        sqlite3_bind_int64(st, 3, now_ms);
        /* One row more than asked says whether another page exists. */
        sqlite3_bind_int64(st, 4, (int64_t)limit + 1);
        if (id != ST_Q_ALL)
            sq_bind_text(st, 5, value);
        if (id == ST_Q_PREFIX)
            sq_bind_text(st, 6, upper);
        for (;;) {
            int r = sqlite3_step(st);
            if (r == SQLITE_DONE)
                break;
            if (r != SQLITE_ROW) {
                rc = sq_fail(&q->r, r, "query");
                break;
            }
            if (page.n == limit) {
                more = true;
                break;
            }
            rc = sq_row_doc(st, &page.docs[page.n]);
            if (rc != ENT_OK)
                break;
            page.n++;
        }
    }
    sq_done(st);
    pthread_mutex_unlock(&q->rmu);
    free(upper);

    if (rc == ENT_OK && more) {
        page.next_after = ent_store_strdup_(page.docs[page.n - 1].key);
        if (page.next_after == NULL)
            rc = ENT_ENOMEM;
    }
    if (rc != ENT_OK) {
        ent_store_page_free(&page);
        return rc;
    }
    *out = page;
    return ENT_OK;
}

static ent_err sq_counter_get(struct ent_store *s, const char *counter, const char *key,
                              int64_t *value)
{
    struct sq_store *q = sq_of(s);
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(&q->r, ST_CTR_GET, &st);
    if (rc == ENT_OK) {
        sq_bind_text(st, 1, counter);
        sq_bind_text(st, 2, key);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            *value = sqlite3_column_int64(st, 0);
        else if (r == SQLITE_DONE)
            rc = ENT_ENOTFOUND;
        else
            rc = sq_fail(&q->r, r, "counter_get");
    }
    sq_done(st);
    pthread_mutex_unlock(&q->rmu);
    return rc;
}

static ent_err sq_outbox_stats(struct ent_store *s, int64_t now_ms, uint64_t *pending,
                               uint64_t *dead, int64_t *oldest_pending_age_ms)
{
    struct sq_store *q = sq_of(s);
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(&q->r, ST_OB_STATS, &st);
    if (rc == ENT_OK) {
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            *pending = (uint64_t)sqlite3_column_int64(st, 0);
            *dead = (uint64_t)sqlite3_column_int64(st, 1);
            int64_t age = 0;
            if (sqlite3_column_type(st, 2) != SQLITE_NULL)
                age = now_ms - sqlite3_column_int64(st, 2);
            *oldest_pending_age_ms = age > 0 ? age : 0;
        } else {
            rc = sq_fail(&q->r, r, "outbox_stats");
        }
    }
    sq_done(st);
    pthread_mutex_unlock(&q->rmu);
    return rc;
}

/* ---- document writes (batched) -------------------------------------------------------- */

/* Arguments and results of insert, put, update, delete and purge. */
struct sq_doc_op {
    struct sq_op op;
    enum ent_store_coll c;
    const struct ent_store_doc *doc; /* insert, put, update */
    const char *key;                 /* delete */
    uint64_t expected_version;       /* update, delete (0 = any) */
    int64_t now_ms;
    int64_t version; /* out: put, update */
    size_t purged;   /* out: purge */
};

static struct sq_doc_op *sq_doc_op_of(struct sq_op *op)
{
    return ENT_CONTAINER_OF(op, struct sq_doc_op, op);
}

/* Steps a bound existence query after a guarded write changed nothing: a row means the
 * guard (version, lease) failed, ENT_ECONFLICT; no row means ENT_ENOTFOUND. Finishes st. */
static ent_err sq_step_why_not(struct sq_conn *w, sqlite3_stmt *st, const char *what)
{
    int r = sqlite3_step(st);
    ent_err rc;
    if (r == SQLITE_ROW)
        rc = ENT_ECONFLICT;
    else if (r == SQLITE_DONE)
        rc = ENT_ENOTFOUND;
    else
        rc = sq_fail(w, r, what);
    sq_done(st);
    return rc;
}

/* After a conditional write changed nothing: ENT_ECONFLICT if a live document exists,
 * ENT_ENOTFOUND if not. Runs inside the same transaction, so the answer is exact. */
static ent_err sq_doc_why_not(struct sq_conn *w, enum ent_store_coll c, const char *key,
                              int64_t now_ms)
{
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_VERSION, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_text(st, 1, ent_store_coll_name(c));
    sq_bind_text(st, 2, key);
    sqlite3_bind_int64(st, 3, now_ms);
    return sq_step_why_not(w, st, "version");
}

static ent_err sq_insert_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_doc_op *d = sq_doc_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_INSERT, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_doc(st, d->c, d->doc, d->now_ms);
    int64_t v = 0;
    /* No row back: the conflicting document is live. */
    return sq_step_returning(w, st, "insert", ENT_EEXIST, &v);
}

static ent_err sq_insert(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, int64_t now_ms)
{
    struct sq_doc_op d = {.op.run = sq_insert_run, .c = c, .doc = doc, .now_ms = now_ms};
    return sq_write(sq_of(s), &d.op);
}

static ent_err sq_put_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_doc_op *d = sq_doc_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_PUT, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_doc(st, d->c, d->doc, d->now_ms);
    return sq_step_returning(w, st, "put", ENT_ESTORE, &d->version);
}

static ent_err sq_put(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      int64_t now_ms, uint64_t *new_version)
{
    struct sq_doc_op d = {.op.run = sq_put_run, .c = c, .doc = doc, .now_ms = now_ms};
    ent_err rc = sq_write(sq_of(s), &d.op);
    if (rc == ENT_OK)
        *new_version = (uint64_t)d.version;
    return rc;
}

static ent_err sq_update_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_doc_op *d = sq_doc_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_UPDATE, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_doc(st, d->c, d->doc, d->now_ms);
    sqlite3_bind_int64(st, 9, (int64_t)d->expected_version);
    rc = sq_step_returning(w, st, "update", ENT_ECONFLICT, &d->version);
    if (rc == ENT_ECONFLICT)
        rc = sq_doc_why_not(w, d->c, d->doc->key, d->now_ms);
    return rc;
}

static ent_err sq_update(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, uint64_t expected_version, int64_t now_ms,
                         uint64_t *new_version)
{
    struct sq_doc_op d = {.op.run = sq_update_run,
                          .c = c,
                          .doc = doc,
                          .expected_version = expected_version,
                          .now_ms = now_ms};
    ent_err rc = sq_write(sq_of(s), &d.op);
    if (rc == ENT_OK)
        *new_version = (uint64_t)d.version;
    return rc;
}

static ent_err sq_delete_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_doc_op *d = sq_doc_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_DELETE, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_text(st, 1, ent_store_coll_name(d->c));
    sq_bind_text(st, 2, d->key);
    sqlite3_bind_int64(st, 3, (int64_t)d->expected_version);
    sqlite3_bind_int64(st, 4, d->now_ms);
    int64_t v = 0;
    rc = sq_step_returning(w, st, "delete", ENT_ECONFLICT, &v);
    if (rc == ENT_ECONFLICT)
        rc = sq_doc_why_not(w, d->c, d->key, d->now_ms);
    return rc;
}

static ent_err sq_delete(struct ent_store *s, enum ent_store_coll c, const char *key,
                         uint64_t expected_version, int64_t now_ms)
{
    struct sq_doc_op d = {.op.run = sq_delete_run,
                          .c = c,
                          .key = key,
                          .expected_version = expected_version,
                          .now_ms = now_ms};
    return sq_write(sq_of(s), &d.op);
}

static ent_err sq_purge_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_doc_op *d = sq_doc_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_DOC_PURGE, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_text(st, 1, ent_store_coll_name(d->c));
    sqlite3_bind_int64(st, 2, d->now_ms);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        d->purged = (size_t)sqlite3_changes64(w->db);
    else
        rc = sq_fail(w, r, "purge");
    sq_done(st);
    return rc;
}

static ent_err sq_purge_expired(struct ent_store *s, enum ent_store_coll c, int64_t now_ms,
                                size_t *purged)
{
    struct sq_doc_op d = {.op.run = sq_purge_run, .c = c, .now_ms = now_ms};
    ent_err rc = sq_write(sq_of(s), &d.op);
    if (rc == ENT_OK)
        *purged = d.purged;
    return rc;
}

/* ---- counter writes (batched) --------------------------------------------------------- */

struct sq_ctr_op {
    struct sq_op op;
    const char *counter, *key;
    int64_t arg;   /* delta (incr) or min_value (set_min) */
    int64_t value; /* out */
};

static struct sq_ctr_op *sq_ctr_op_of(struct sq_op *op)
{
    return ENT_CONTAINER_OF(op, struct sq_ctr_op, op);
}

static ent_err sq_incr_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ctr_op *k = sq_ctr_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_CTR_INCR, &st);
    if (rc != ENT_OK)
        return rc;
    int64_t delta = k->arg;
    sq_bind_text(st, 1, k->counter);
    sq_bind_text(st, 2, k->key);
    sqlite3_bind_int64(st, 3, delta);
    sqlite3_bind_int64(st, 4, delta >= 0 ? INT64_MAX - delta : INT64_MIN - delta);
    return sq_step_returning(w, st, "incr", ENT_EINVAL, &k->value);
}

static ent_err sq_incr(struct ent_store *s, const char *counter, const char *key, int64_t delta,
                       int64_t *new_value)
{
    struct sq_ctr_op k = {.op.run = sq_incr_run, .counter = counter, .key = key, .arg = delta};
    ent_err rc = sq_write(sq_of(s), &k.op);
    if (rc == ENT_OK)
        *new_value = k.value;
    return rc;
}

static ent_err sq_set_min_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ctr_op *k = sq_ctr_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_CTR_SET_MIN, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_text(st, 1, k->counter);
    sq_bind_text(st, 2, k->key);
    sqlite3_bind_int64(st, 3, k->arg);
    return sq_step_returning(w, st, "counter_set_min", ENT_ESTORE, &k->value);
}

static ent_err sq_counter_set_min(struct ent_store *s, const char *counter, const char *key,
                                  int64_t min_value, int64_t *new_value)
{
    struct sq_ctr_op k = {
        .op.run = sq_set_min_run, .counter = counter, .key = key, .arg = min_value};
    ent_err rc = sq_write(sq_of(s), &k.op);
    if (rc == ENT_OK)
        *new_value = k.value;
    return rc;
}

/* ---- outbox writes (batched) ---------------------------------------------------------- */

struct sq_ob_op {
    struct sq_op op;
    /* enqueue */
    const char *coalesce_key;
    const void *payload;
    size_t len;
    int64_t due_ms;
    int64_t now_ms; /* also claim */
    int64_t id;     /* out: enqueue */
    bool coalesced; /* out: enqueue */
    /* claim: items[0..got) are filled by the run and freed by the caller unless ENT_OK */
    const char *owner;
    uint64_t lease_ms;
    size_t max, got;
    struct ent_store_outbox_item *items;
    /* ack, retry */
    uint64_t item_id, lease_token;
    int64_t next_due_ms;
    uint32_t max_attempts;
    int64_t state; /* out: retry */
};

static struct sq_ob_op *sq_ob_op_of(struct sq_op *op)
{
    return ENT_CONTAINER_OF(op, struct sq_ob_op, op);
}

static ent_err sq_enqueue_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ob_op *o = sq_ob_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = ENT_OK;
    o->coalesced = false;
    if (o->coalesce_key != NULL) {
        rc = sq_stmt(w, ST_OB_COALESCE, &st);
        if (rc == ENT_OK) {
            sq_bind_text(st, 1, o->coalesce_key);
            sq_bind_blob(st, 2, o->payload, o->len);
            sqlite3_bind_int64(st, 3, o->due_ms);
            rc = sq_step_returning(w, st, "outbox_coalesce", ENT_ENOTFOUND, &o->id);
            o->coalesced = rc == ENT_OK;
        }
    }
    if (o->coalesce_key == NULL || rc == ENT_ENOTFOUND) {
        rc = sq_stmt(w, ST_OB_INSERT, &st);
        if (rc == ENT_OK) {
            sq_bind_text(st, 1, o->coalesce_key);
            sq_bind_blob(st, 2, o->payload, o->len);
            sqlite3_bind_int64(st, 3, o->due_ms);
            sqlite3_bind_int64(st, 4, o->now_ms);
            rc = sq_step_returning(w, st, "outbox_insert", ENT_ESTORE, &o->id);
        }
    }
    return rc;
}

static ent_err sq_outbox_enqueue(struct ent_store *s, const char *coalesce_key, const void *payload,
                                 size_t len, int64_t due_ms, int64_t now_ms, uint64_t *id,
                                 bool *coalesced)
{
    struct sq_ob_op o = {.op.run = sq_enqueue_run,
                         .coalesce_key = coalesce_key,
                         .payload = payload,
                         .len = len,
                         .due_ms = due_ms,
                         .now_ms = now_ms};
    ent_err rc = sq_write(sq_of(s), &o.op);
    if (rc == ENT_OK) {
        *id = (uint64_t)o.id;
        *coalesced = o.coalesced;
    }
    return rc;
}

static int sq_item_cmp(const void *a, const void *b)
{
    const struct ent_store_outbox_item *x = a, *y = b;
    if (x->due_ms != y->due_ms)
        return x->due_ms < y->due_ms ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static ent_err sq_claim_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ob_op *o = sq_ob_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_OB_CLAIM, &st);
    if (rc != ENT_OK)
        return rc;
    sq_bind_text(st, 1, o->owner);
    sqlite3_bind_int64(st, 2, o->now_ms);
    sqlite3_bind_int64(st, 3, (int64_t)o->lease_ms);
    sqlite3_bind_int64(st, 4, (int64_t)o->max);
    for (;;) {
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = sq_fail(w, r, "outbox_claim");
            break;
        }
        /* The subquery's LIMIT bounds the rows; an extra one would be our bug. */
        if (o->got == o->max) {
            rc = ENT_EINTERNAL;
            break;
        }
        struct ent_store_outbox_item *it = &o->items[o->got++];
        it->id = (uint64_t)sqlite3_column_int64(st, 0);
        rc = sq_col_text(st, 1, &it->coalesce_key);
        if (rc == ENT_OK)
            rc = sq_col_blob(st, 2, &it->payload, &it->len);
        if (rc != ENT_OK)
            break;
        it->attempts = (uint32_t)sqlite3_column_int64(st, 3);
        it->lease_token = (uint64_t)sqlite3_column_int64(st, 4);
        it->due_ms = sqlite3_column_int64(st, 5);
        it->created_ms = sqlite3_column_int64(st, 6);
    }
    sq_done(st);
    return rc;
}

static ent_err sq_outbox_claim(struct ent_store *s, const char *owner, int64_t now_ms,
                               uint64_t lease_ms, size_t max, struct ent_store_outbox_item **items,
                               size_t *n)
{
    struct sq_ob_op o = {
        .op.run = sq_claim_run, .owner = owner, .now_ms = now_ms, .lease_ms = lease_ms, .max = max};
    o.items = calloc(max, sizeof(*o.items));
    if (o.items == NULL)
        return ENT_ENOMEM;
    ent_err rc = sq_write(sq_of(s), &o.op);
    if (rc != ENT_OK) {
        /* Also when the run succeeded but the batch did not commit: nothing was leased. */
        ent_store_outbox_items_free(o.items, o.got);
        return rc;
    }
    if (o.got == 0) {
        free(o.items);
        o.items = NULL;
    } else {
        /* RETURNING comes back in no defined order. */
        qsort(o.items, o.got, sizeof(*o.items), sq_item_cmp);
    }
    *items = o.items;
    *n = o.got;
    return ENT_OK;
}

/* After a lease-checked write changed nothing: ECONFLICT if the item exists, else
 * ENOTFOUND. */
static ent_err sq_outbox_why_not(struct sq_conn *w, uint64_t id)
{
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_OB_EXISTS, &st);
    if (rc != ENT_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)id);
    return sq_step_why_not(w, st, "outbox_exists");
}

static ent_err sq_ack_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ob_op *o = sq_ob_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_OB_ACK, &st);
    if (rc != ENT_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)o->item_id);
    sqlite3_bind_int64(st, 2, (int64_t)o->lease_token);
    int r = sqlite3_step(st);
    bool deleted = r == SQLITE_DONE && sqlite3_changes64(w->db) == 1;
    if (r != SQLITE_DONE)
        rc = sq_fail(w, r, "outbox_ack");
    sq_done(st);
    if (rc == ENT_OK && !deleted)
        rc = sq_outbox_why_not(w, o->item_id);
    return rc;
}

static ent_err sq_outbox_ack(struct ent_store *s, uint64_t id, uint64_t lease_token)
{
    struct sq_ob_op o = {.op.run = sq_ack_run, .item_id = id, .lease_token = lease_token};
    return sq_write(sq_of(s), &o.op);
}

static ent_err sq_retry_run(struct sq_conn *w, struct sq_op *op)
{
    struct sq_ob_op *o = sq_ob_op_of(op);
    sqlite3_stmt *st = NULL;
    ent_err rc = sq_stmt(w, ST_OB_RETRY, &st);
    if (rc != ENT_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)o->item_id);
    sqlite3_bind_int64(st, 2, (int64_t)o->lease_token);
    sqlite3_bind_int64(st, 3, o->next_due_ms);
    sqlite3_bind_int64(st, 4, (int64_t)o->max_attempts);
    rc = sq_step_returning(w, st, "outbox_retry", ENT_ECONFLICT, &o->state);
    if (rc == ENT_ECONFLICT)
        rc = sq_outbox_why_not(w, o->item_id);
    return rc;
}

static ent_err sq_outbox_retry(struct ent_store *s, uint64_t id, uint64_t lease_token,
                               int64_t next_due_ms, uint32_t max_attempts, bool *dead)
{
    struct sq_ob_op o = {.op.run = sq_retry_run,
                         .item_id = id,
                         .lease_token = lease_token,
                         .next_due_ms = next_due_ms,
                         .max_attempts = max_attempts};
    ent_err rc = sq_write(sq_of(s), &o.op);
    if (rc == ENT_OK)
        *dead = o.state == 1;
    return rc;
}

const struct ent_store_ops ent_store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .ping = sq_ping,
    .get = sq_get,
    .insert = sq_insert,
    .put = sq_put,
    .update = sq_update,
    .del = sq_delete,
    .incr = sq_incr,
    .counter_get = sq_counter_get,
    .counter_set_min = sq_counter_set_min,
    .query = sq_query,
    .purge_expired = sq_purge_expired,
    .outbox_enqueue = sq_outbox_enqueue,
    .outbox_claim = sq_outbox_claim,
    .outbox_ack = sq_outbox_ack,
    .outbox_retry = sq_outbox_retry,
    .outbox_stats = sq_outbox_stats,
};
