/* SPDX-License-Identifier: Apache-2.0 */
/* MongoDB backend of the store (libmongoc, compiled in when ENT_HAVE_MONGO is defined): for
 * operators who outgrow one host and run a MongoDB replica set or sharded cluster. This file
 * owns the connection (a libmongoc client pool), the document shapes, the indexes created at
 * start-up and the mapping of each store op (store_int.h) onto single-document MongoDB
 * operations. Argument checks, wall-clock reads and freeing results belong to store.c.
 *
 * Collections (database cfg->database, default "entitle"):
 *   one per enum ent_store_coll, named by ent_store_coll_name():
 *     { _id: key, d: BinData, v: Int64 version, i0/i1/i2: index values (absent when NULL),
 *       exp: Int64 ms (INT64_MAX = never) }
 *   counters: { _id: "<len(counter)>:<counter>:<key>", n: counter, k: key, val: Int64 }
 *     plus { _id: "#outbox" } which hands out outbox ids.
 *   outbox:   { _id: Int64 id, ck: coalesce key (absent when none), p: BinData, due, created,
 *               att: claims so far, st: 0 pending | 1 dead, owner, tok: lease token,
 *               until: lease end ms (0 = unleased) }
 * "Never expires" is stored as INT64_MAX rather than 0 so that "live" is the single range
 * predicate exp > now, which one index serves, and purge is exp <= now.
 *
 * Invariants:
 *   1. Every op is single-document (insert, findAndModify, update/replace/delete of one
 *      document, or one find), or a loop of them whose every step is atomic on its own; no
 *      multi-document transaction, no change stream, no aggregation-pipeline update (FerretDB,
 *      the test server, has none of them).
 *   2. Writes carry w:"majority" (with wtimeout), so an acknowledged SQN step, version bump or
 *      outbox claim survives a primary failover. Counters, outbox claims and the "why did my
 *      conditional write fail" checks read from the primary; plain document reads follow the
 *      URI's readPreference (primary unless the operator chose otherwise).
 *   3. Version checks and atomic increments are filters of the write itself
 *      ({_id, v: expected} + $inc, {_id, val: {$lte: MAX - delta}} + $inc), never read-then-
 *      write, so two processes can never both win.
 *   4. A failed conditional write is explained (ENT_ECONFLICT vs ENT_ENOTFOUND) by a second
 *      primary read. Unlike SQLite that read is not in the same transaction: the answer is
 *      what the document looked like just after the failed write, which is all a caller can
 *      act on anyway.
 *   5. Network and "not primary" failures map to ENT_EUNAVAIL and leave nothing behind: the
 *      pool's monitor reconnects on its own, so a lost server comes back without a restart.
 *
 * Threads: the pool is thread-safe; every op pops a client, uses it and pushes it back, so
 * one ent_store serves several threads in parallel (unlike SQLite's single connection). */
#ifdef ENT_HAVE_MONGO

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/store.h"
#include "ent/util.h"
#include "store_int.h"

static ent_counter mg_errors = ENT_COUNTER("entitle_store_mongo_errors_total",
                                           "MongoDB store operations that failed, by operation "
                                           "and reason (EUNAVAIL = server unreachable or not "
                                           "primary, ESTORE = anything else)",
                                           "op", "reason");

#define MG_NEVER              INT64_MAX
#define MG_SELECT_TIMEOUT_MS  5000  /* serverSelectionTimeoutMS unless the URI says */
#define MG_HEARTBEAT_MS       2000  /* heartbeatFrequencyMS unless the URI says */
#define MG_SOCKET_TIMEOUT_MS  10000 /* socketTimeoutMS unless the URI says */
#define MG_CONNECT_TIMEOUT_MS 2000  /* connectTimeoutMS unless the URI says */
#define MG_WTIMEOUT_MS        10000 /* majority write timeout unless the URI says */
#define MG_RETRIES            16    /* bound on the insert/update races of one op */
/* Counter ids start with a digit (mg_counter_id), so this one cannot collide. */
#define MG_OUTBOX_SEQ_ID "#outbox"
#define MG_COUNTERS      "counters"
#define MG_OUTBOX        "outbox"
#define MG_DUP_KEY       11000

struct mg_store {
    struct ent_store base;
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    mongoc_read_prefs_t *primary;
    /* { writeConcern: { w: "majority", wtimeout } } for every write. A pointer because
     * bson_t wants 128-byte alignment, more than calloc() promises. */
    bson_t *wopts;
    char db[64];
};

static struct mg_store *mg_of(struct ent_store *s)
{
    return ENT_CONTAINER_OF(s, struct mg_store, base);
}

/* ---- library init, logging ------------------------------------------------------------ */

/* libmongoc's own log lines (reconnects, topology changes, TLS trouble) go through our
 * structured log, warnings and worse only. */
static void mg_on_log(mongoc_log_level_t level, const char *domain, const char *message, void *u)
{
    (void)u;
    if (level > MONGOC_LOG_LEVEL_WARNING)
        return;
    /* FerretDB has no endSessions; the pool sends it when it is destroyed. Harmless. */
    if (strstr(message, "\"endSessions\"") != NULL)
        return;
    ENT_LOG_WARN(NULL, "store.mongoc", ENT_KV_STR("backend", "mongo"), ENT_KV_STR("domain", domain),
                 ENT_KV_STR("message", message));
}

static pthread_once_t mg_once = PTHREAD_ONCE_INIT;

/* Process-wide and never undone: mongoc_cleanup() may only run once no client exists in
 * any thread, which a library cannot know; the OS reclaims it at exit. */
static void mg_init_once(void)
{
    mongoc_init();
    mongoc_log_set_handler(mg_on_log, NULL);
}

/* ---- errors --------------------------------------------------------------------------- */

static bool mg_is_dup(const bson_error_t *e)
{
    return e->code == MG_DUP_KEY;
}

/* Server codes that mean "try again later": the server is shutting down, stepping down, not
 * (or no longer) primary, or a majority did not acknowledge in time. */
static bool mg_transient_code(uint32_t code)
{
    switch (code) {
    case 6:     /* HostUnreachable */
    case 7:     /* HostNotFound */
    case 64:    /* WriteConcernFailed (wtimeout) */
    case 89:    /* NetworkTimeout */
    case 91:    /* ShutdownInProgress */
    case 189:   /* PrimarySteppedDown */
    case 262:   /* ExceededTimeLimit */
    case 9001:  /* SocketException */
    case 10107: /* NotWritablePrimary */
    case 11600: /* InterruptedAtShutdown */
    case 11602: /* InterruptedDueToReplStateChange */
    case 13435: /* NotPrimaryNoSecondaryOk */
    case 13436: /* NotPrimaryOrSecondary */
        return true;
    default:
        return false;
    }
}

/* Converts a libmongoc error once, counts it and logs it. Server messages are not logged:
 * they may quote the document or filter (keys are IMSIs); the code says enough. */
static ent_err mg_fail(const bson_error_t *e, const char *op)
{
    ent_err rc = ENT_ESTORE;
    bool from_server = e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_WRITE_CONCERN;
    if (e->domain == MONGOC_ERROR_STREAM || e->domain == MONGOC_ERROR_SERVER_SELECTION ||
        (e->domain == MONGOC_ERROR_CLIENT && e->code == MONGOC_ERROR_CLIENT_NOT_READY) ||
        (from_server && mg_transient_code(e->code)))
        rc = ENT_EUNAVAIL;
    ent_counter_inc(&mg_errors, op, ent_err_name(rc));
    if (rc == ENT_EUNAVAIL)
        ENT_LOG_WARN(NULL, "store.unavailable", ENT_KV_STR("backend", "mongo"),
                     ENT_KV_STR("op", op), ENT_KV_I64("domain", e->domain),
                     ENT_KV_I64("code", e->code),
                     ENT_KV_STR("error", from_server ? "(server error)" : e->message));
    else
        ENT_LOG_ERROR(NULL, "store.error", ENT_KV_STR("backend", "mongo"), ENT_KV_STR("op", op),
                      ENT_KV_I64("domain", e->domain), ENT_KV_I64("code", e->code),
                      ENT_KV_STR("error", from_server ? "(server error)" : e->message));
    return rc;
}

/* A reply that does not have the shape the protocol promises: our bug or a server bug. */
static ent_err mg_bad_reply(const char *op)
{
    ent_counter_inc(&mg_errors, op, "EPROTO");
    ENT_LOG_ERROR(NULL, "store.error", ENT_KV_STR("backend", "mongo"), ENT_KV_STR("op", op),
                  ENT_KV_STR("error", "unexpected reply shape"));
    return ENT_ESTORE;
}

/* ---- per-op client -------------------------------------------------------------------- */

struct mg_op {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
};

/* Pops a client (blocks while maxPoolSize clients are in use) and opens one collection. */
static void mg_begin(struct mg_store *m, const char *coll, struct mg_op *op)
{
    op->client = mongoc_client_pool_pop(m->pool);
    op->coll = mongoc_client_get_collection(op->client, m->db, coll);
}

static void mg_end(struct mg_store *m, struct mg_op *op)
{
    mongoc_collection_destroy(op->coll);
    mongoc_client_pool_push(m->pool, op->client);
    op->coll = NULL;
    op->client = NULL;
}

/* ---- bson helpers --------------------------------------------------------------------- */

static int64_t mg_exp_to_db(int64_t expires_at_ms)
{
    return expires_at_ms == 0 ? MG_NEVER : expires_at_ms;
}

static int64_t mg_exp_from_db(int64_t exp)
{
    return exp == MG_NEVER ? 0 : exp;
}

static const char *const mg_idx_field[ENT_STORE_INDEXES] = {"i0", "i1", "i2"};

static void mg_append_bin(bson_t *b, const char *field, const void *p, size_t len)
{
    static const uint8_t empty[1];
    bson_append_binary(b, field, -1, BSON_SUBTYPE_BINARY, len > 0 ? p : empty, (uint32_t)len);
}

/* Appends { exp: { op: now } }. */
static void mg_append_cmp(bson_t *b, const char *field, const char *op, int64_t v)
{
    bson_t sub;
    bson_append_document_begin(b, field, -1, &sub);
    bson_append_int64(&sub, op, -1, v);
    bson_append_document_end(b, &sub);
}

/* A whole stored document (insert or replacement) with version v. */
static void mg_doc_full(bson_t *b, const struct ent_store_doc *doc, int64_t v)
{
    bson_init(b);
    bson_append_utf8(b, "_id", 3, doc->key, -1);
    mg_append_bin(b, "d", doc->data, doc->len);
    bson_append_int64(b, "v", 1, v);
    for (int i = 0; i < ENT_STORE_INDEXES; i++) {
        if (doc->index[i] != NULL)
            bson_append_utf8(b, mg_idx_field[i], -1, doc->index[i], -1);
    }
    bson_append_int64(b, "exp", 3, mg_exp_to_db(doc->expires_at_ms));
}

/* { $set: {d, iN..., exp}, $unset: {NULL iN}, $inc: {v: 1} }: replaces the content of a live
 * document and bumps its version. */
static void mg_doc_update(bson_t *b, const struct ent_store_doc *doc)
{
    bson_t set, unset, inc;
    bool any_unset = false;
    bson_init(b);
    bson_append_document_begin(b, "$set", 4, &set);
    mg_append_bin(&set, "d", doc->data, doc->len);
    for (int i = 0; i < ENT_STORE_INDEXES; i++) {
        if (doc->index[i] != NULL)
            bson_append_utf8(&set, mg_idx_field[i], -1, doc->index[i], -1);
        else
            any_unset = true;
    }
    bson_append_int64(&set, "exp", 3, mg_exp_to_db(doc->expires_at_ms));
    bson_append_document_end(b, &set);
    if (any_unset) {
        bson_append_document_begin(b, "$unset", 6, &unset);
        for (int i = 0; i < ENT_STORE_INDEXES; i++) {
            if (doc->index[i] == NULL)
                bson_append_utf8(&unset, mg_idx_field[i], -1, "", 0);
        }
        bson_append_document_end(b, &unset);
    }
    bson_append_document_begin(b, "$inc", 4, &inc);
    bson_append_int64(&inc, "v", 1, 1);
    bson_append_document_end(b, &inc);
}

/* Numbers may come back as int32, int64 or double depending on the server and the value. */
static bool mg_get_i64(const bson_t *b, const char *field, int64_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, b, field))
        return false;
    if (BSON_ITER_HOLDS_INT64(&it))
        *out = bson_iter_int64(&it);
    else if (BSON_ITER_HOLDS_INT32(&it))
        *out = bson_iter_int32(&it);
    else if (BSON_ITER_HOLDS_DOUBLE(&it))
        *out = (int64_t)bson_iter_double(&it);
    else
        return false;
    return true;
}

/* Heap copy of a string field; NULL in *out when the field is absent or null. */
static ent_err mg_get_str(const bson_t *b, const char *field, char **out)
{
    bson_iter_t it;
    *out = NULL;
    if (!bson_iter_init_find(&it, b, field) || BSON_ITER_HOLDS_NULL(&it))
        return ENT_OK;
    if (!BSON_ITER_HOLDS_UTF8(&it))
        return ENT_ESTORE;
    *out = ent_store_strdup_(bson_iter_utf8(&it, NULL));
    return *out != NULL ? ENT_OK : ENT_ENOMEM;
}

static ent_err mg_get_bin(const bson_t *b, const char *field, uint8_t **out, size_t *len)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, b, field) || !BSON_ITER_HOLDS_BINARY(&it))
        return ENT_ESTORE;
    bson_subtype_t sub;
    uint32_t n = 0;
    const uint8_t *p = NULL;
    bson_iter_binary(&it, &sub, &n, &p);
    *out = ent_store_memdup_(p, n);
    *len = n;
    return *out != NULL ? ENT_OK : ENT_ENOMEM;
}

/* Reads a stored document into *d (zeroed first; freed again on failure). */
static ent_err mg_read_doc(const bson_t *b, struct ent_store_doc *d)
{
    memset(d, 0, sizeof(*d));
    int64_t v = 0, exp = 0;
    ent_err rc = mg_get_str(b, "_id", &d->key);
    if (rc == ENT_OK && d->key == NULL)
        rc = ENT_ESTORE;
    if (rc == ENT_OK)
        rc = mg_get_bin(b, "d", &d->data, &d->len);
    for (int i = 0; rc == ENT_OK && i < ENT_STORE_INDEXES; i++)
        rc = mg_get_str(b, mg_idx_field[i], &d->index[i]);
    if (rc == ENT_OK && (!mg_get_i64(b, "v", &v) || !mg_get_i64(b, "exp", &exp)))
        rc = ENT_ESTORE;
    if (rc != ENT_OK) {
        ent_store_doc_free(d);
        return rc == ENT_ESTORE ? mg_bad_reply("read_doc") : rc;
    }
    d->version = (uint64_t)v;
    d->expires_at_ms = mg_exp_from_db(exp);
    return ENT_OK;
}

/* The "value" of a findAndModify reply: a document (true, copied into *out as a view) or
 * null (false). */
static bool mg_fam_value(const bson_t *reply, bson_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, reply, "value") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    uint32_t len = 0;
    const uint8_t *data = NULL;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len);
}

/* findAndModify returning the new document (or, with remove, the removed one). *found says
 * whether a document matched; *value (only when found) is a view into *reply, which the
 * caller destroys. */
static ent_err mg_fam(struct mg_store *m, mongoc_collection_t *coll, const bson_t *filter,
                      const bson_t *update, const bson_t *sort, const char *op, bson_t *reply,
                      bool *found, bson_t *value)
{
    mongoc_find_and_modify_opts_t *o = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(o, update);
    mongoc_find_and_modify_opts_set_flags(o, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    if (sort != NULL)
        mongoc_find_and_modify_opts_set_sort(o, sort);
    mongoc_find_and_modify_opts_append(o, m->wopts);
    bson_error_t e;
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, filter, o, reply, &e);
    mongoc_find_and_modify_opts_destroy(o);
    if (!ok)
        return mg_fail(&e, op);
    *found = mg_fam_value(reply, value);
    return ENT_OK;
}

/* Runs find_one with filter on coll; *found says whether a document came back, copied into
 * *out (caller destroys when found). */
static ent_err mg_find_one(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
                           const mongoc_read_prefs_t *prefs, const char *op, bool *found,
                           bson_t *out)
{
    bson_t o = BSON_INITIALIZER;
    if (opts != NULL)
        bson_concat(&o, opts);
    bson_append_int64(&o, "limit", 5, 1);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &o, prefs);
    const bson_t *doc = NULL;
    *found = mongoc_cursor_next(cur, &doc);
    if (*found)
        bson_copy_to(doc, out);
    bson_error_t e;
    ent_err rc = ENT_OK;
    if (!*found && mongoc_cursor_error(cur, &e))
        rc = mg_fail(&e, op);
    mongoc_cursor_destroy(cur);
    bson_destroy(&o);
    return rc;
}

/* Reads an Int64 count field ("deletedCount", "matchedCount") of a CRUD reply. */
static int64_t mg_reply_count(const bson_t *reply, const char *field)
{
    int64_t n = 0;
    return mg_get_i64(reply, field, &n) ? n : 0;
}

/* ---- open, close, ping ---------------------------------------------------------------- */

static void mg_close(struct ent_store *s)
{
    struct mg_store *m = mg_of(s);
    if (m->pool != NULL)
        mongoc_client_pool_destroy(m->pool);
    mongoc_read_prefs_destroy(m->primary);
    mongoc_uri_destroy(m->uri);
    if (m->wopts != NULL)
        bson_destroy(m->wopts);
    free(m);
}

/* MongoDB database names: no / \ . " $ space, under 64 bytes; FerretDB is stricter
 * ([A-Za-z0-9_-]), and so are we, so a name that works in tests works everywhere. */
static bool mg_db_name_ok(const char *db)
{
    size_t n = strlen(db);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = db[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "host:port,host:port" of the URI, for error messages (never the credentials). */
static void mg_hosts(const mongoc_uri_t *uri, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri); h != NULL && used < len;
         h = h->next) {
        int w = snprintf(out + used, len - used, "%s%s", used > 0 ? "," : "", h->host_and_port);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (out[0] == '\0' && mongoc_uri_get_srv_hostname(uri) != NULL)
        snprintf(out, len, "srv:%s", mongoc_uri_get_srv_hostname(uri));
}

/* Creates one index { key: fields..., name } on coll. */
static ent_err mg_create_index(struct mg_store *m, mongoc_database_t *db, const char *coll,
                               const char *name, const char *const *fields, size_t nfields,
                               char *err, size_t err_len)
{
    bson_t cmd = BSON_INITIALIZER, arr, spec, key, reply;
    bson_append_utf8(&cmd, "createIndexes", -1, coll, -1);
    bson_append_array_begin(&cmd, "indexes", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &spec);
    bson_append_document_begin(&spec, "key", 3, &key);
    for (size_t f = 0; f < nfields; f++)
        bson_append_int32(&key, fields[f], -1, 1);
    bson_append_document_end(&spec, &key);
    bson_append_utf8(&spec, "name", 4, name, -1);
    bson_append_document_end(&arr, &spec);
    bson_append_array_end(&cmd, &arr);
    bson_error_t e;
    ent_err rc = ENT_OK;
    if (!mongoc_database_write_command_with_opts(db, &cmd, m->wopts, &reply, &e)) {
        rc = mg_fail(&e, "create_indexes");
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: creating index %s on %s.%s failed: %s", name, m->db,
                     coll, e.message);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

/* createIndexes is idempotent for identical specs, so every process runs it at start-up
 * and two starting at once do not conflict. One index per command: FerretDB 1.24 panics
 * (and drops the connection) when one createIndexes names two indexes that already exist. */
static ent_err mg_create_indexes(struct mg_store *m, mongoc_client_t *client, char *err,
                                 size_t err_len)
{
    static const char *const i0[] = {"i0", "_id"}, *const i1[] = {"i1", "_id"},
                             *const i2[] = {"i2", "_id"}, *const exp[] = {"exp"},
                             *const claim[] = {"st", "due", "_id"},
                             *const coalesce[] = {"ck", "st", "until"},
                             *const oldest[] = {"st", "created"};
    mongoc_database_t *db = mongoc_client_get_database(client, m->db);
    ent_err rc = ENT_OK;
    for (int c = 0; c < ENT_COLL_COUNT_ && rc == ENT_OK; c++) {
        const char *name = ent_store_coll_name((enum ent_store_coll)c);
        rc = mg_create_index(m, db, name, "i0_id", i0, 2, err, err_len);
        if (rc == ENT_OK)
            rc = mg_create_index(m, db, name, "i1_id", i1, 2, err, err_len);
        if (rc == ENT_OK)
            rc = mg_create_index(m, db, name, "i2_id", i2, 2, err, err_len);
        if (rc == ENT_OK)
            rc = mg_create_index(m, db, name, "exp", exp, 1, err, err_len);
    }
    if (rc == ENT_OK)
        rc = mg_create_index(m, db, MG_OUTBOX, "st_due_id", claim, 3, err, err_len);
    if (rc == ENT_OK)
        rc = mg_create_index(m, db, MG_OUTBOX, "ck_st_until", coalesce, 3, err, err_len);
    if (rc == ENT_OK)
        rc = mg_create_index(m, db, MG_OUTBOX, "st_created", oldest, 2, err, err_len);
    mongoc_database_destroy(db);
    return rc;
}

/* Sets an int32 URI option unless the operator's URI already has it. */
static void mg_uri_default(mongoc_uri_t *uri, const char *key, int32_t v)
{
    if (!mongoc_uri_has_option(uri, key))
        mongoc_uri_set_option_as_int32(uri, key, v);
}

static ent_err mg_open(struct ent_store **out, const struct ent_store_cfg *cfg, char *err,
                       size_t err_len)
{
    if (cfg->uri == NULL || cfg->uri[0] == '\0') {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: store.uri is not set");
        return ENT_EINVAL;
    }
    pthread_once(&mg_once, mg_init_once);

    struct mg_store *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ENT_ENOMEM;
    m->wopts = bson_new();

    bson_error_t e;
    m->uri = mongoc_uri_new_with_error(cfg->uri, &e);
    if (m->uri == NULL) {
        /* libmongoc's message quotes no part of the URI, so no password leaks here. */
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: bad store.uri: %s", e.message);
        mg_close(&m->base);
        return ENT_EINVAL;
    }
    const char *dbname = cfg->database;
    if (dbname == NULL || dbname[0] == '\0')
        dbname = mongoc_uri_get_database(m->uri);
    if (dbname == NULL || dbname[0] == '\0')
        dbname = "entitle";
    if (!mg_db_name_ok(dbname)) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: bad store.database \"%.64s\" (1-63 of A-Z a-z 0-9 _ -)",
                     dbname);
        mg_close(&m->base);
        return ENT_EINVAL;
    }
    snprintf(m->db, sizeof(m->db), "%s", dbname);

    /* Fail fast when the server is away (the library default is 30 s of waiting), notice a
     * lost or returning server within seconds, and retry a write once across a failover. */
    mg_uri_default(m->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MG_SELECT_TIMEOUT_MS);
    mg_uri_default(m->uri, MONGOC_URI_HEARTBEATFREQUENCYMS, MG_HEARTBEAT_MS);
    /* A hung server must not hold a caller (or /readyz on the loop) for libmongoc's default
     * 300 s: every store op is one small document or one page. */
    mg_uri_default(m->uri, MONGOC_URI_SOCKETTIMEOUTMS, MG_SOCKET_TIMEOUT_MS);
    mg_uri_default(m->uri, MONGOC_URI_CONNECTTIMEOUTMS, MG_CONNECT_TIMEOUT_MS);
    if (!mongoc_uri_has_option(m->uri, MONGOC_URI_RETRYWRITES))
        mongoc_uri_set_option_as_bool(m->uri, MONGOC_URI_RETRYWRITES, true);
    if (!mongoc_uri_has_option(m->uri, MONGOC_URI_RETRYREADS))
        mongoc_uri_set_option_as_bool(m->uri, MONGOC_URI_RETRYREADS, true);
    if (!mongoc_uri_has_option(m->uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(m->uri, "entitle");

    /* Invariant 2: majority whatever the URI asks, so w=1 in a URI cannot weaken SQN. */
    const mongoc_write_concern_t *uwc = mongoc_uri_get_write_concern(m->uri);
    int32_t wtimeout = uwc != NULL ? mongoc_write_concern_get_wtimeout(uwc) : 0;
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_wmajority(wc, wtimeout > 0 ? wtimeout : MG_WTIMEOUT_MS);
    mongoc_write_concern_append(wc, m->wopts);
    mongoc_write_concern_destroy(wc);
    m->primary = mongoc_read_prefs_new(MONGOC_READ_PRIMARY);

    char hosts[256];
    mg_hosts(m->uri, hosts, sizeof(hosts));
    m->pool = mongoc_client_pool_new(m->uri);
    if (m->pool == NULL) {
        /* e.g. tls options in a libmongoc built without TLS. */
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: cannot create a client pool for %s", hosts);
        mg_close(&m->base);
        return ENT_EINVAL;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);

    /* One round trip now so that an unreachable server is a start-up error. */
    mongoc_client_t *client = mongoc_client_pool_pop(m->pool);
    bson_t ping = BSON_INITIALIZER, reply;
    bson_append_int32(&ping, "ping", 4, 1);
    bool ok = mongoc_client_command_simple(client, "admin", &ping, m->primary, &reply, &e);
    bson_destroy(&ping);
    bson_destroy(&reply);
    ent_err rc = ENT_OK;
    if (!ok) {
        rc = mg_fail(&e, "open");
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "mongo: no usable server at %s: %s", hosts, e.message);
    }
    if (rc == ENT_OK)
        rc = mg_create_indexes(m, client, err, err_len);
    mongoc_client_pool_push(m->pool, client);
    if (rc != ENT_OK) {
        mg_close(&m->base);
        return rc;
    }
    ENT_LOG_INFO(NULL, "store.opened", ENT_KV_STR("backend", "mongo"), ENT_KV_STR("hosts", hosts),
                 ENT_KV_STR("database", m->db));
    *out = &m->base;
    return ENT_OK;
}

/* Whether the pool's monitor currently knows a server that takes writes. Needs no round
 * trip, so a dead server answers at once instead of after serverSelectionTimeoutMS. */
static bool mg_topology_writable(mongoc_client_t *client)
{
    size_t n = 0;
    mongoc_server_description_t **sds = mongoc_client_get_server_descriptions(client, &n);
    bool writable = false;
    for (size_t i = 0; i < n; i++) {
        const char *t = mongoc_server_description_type(sds[i]);
        if (strcmp(t, "Standalone") == 0 || strcmp(t, "RSPrimary") == 0 ||
            strcmp(t, "Mongos") == 0 || strcmp(t, "LoadBalancer") == 0)
            writable = true;
    }
    mongoc_server_descriptions_destroy_all(sds, n);
    return writable;
}

/* Readiness (/readyz): the monitor must know a writable server and that server must answer
 * a ping now. While the server is away this answers ENT_EUNAVAIL without blocking; when it
 * returns, the monitor's next heartbeat (heartbeatFrequencyMS) makes it ready again. */
static ent_err mg_ping(struct ent_store *s)
{
    struct mg_store *m = mg_of(s);
    mongoc_client_t *client = mongoc_client_pool_pop(m->pool);
    ent_err rc = ENT_OK;
    if (!mg_topology_writable(client)) {
        rc = ENT_EUNAVAIL;
    } else {
        bson_t ping = BSON_INITIALIZER, reply;
        bson_error_t e;
        bson_append_int32(&ping, "ping", 4, 1);
        if (!mongoc_client_command_simple(client, "admin", &ping, m->primary, &reply, &e))
            rc = mg_fail(&e, "ping");
        bson_destroy(&ping);
        bson_destroy(&reply);
    }
    mongoc_client_pool_push(m->pool, client);
    return rc;
}

/* ---- documents ------------------------------------------------------------------------ */

/* Filter { _id: key, exp: { $gt: now } } (+ v: version when non-zero): the live document. */
static void mg_live_filter(bson_t *f, const char *key, int64_t now_ms, uint64_t version)
{
    bson_init(f);
    bson_append_utf8(f, "_id", 3, key, -1);
    mg_append_cmp(f, "exp", "$gt", now_ms);
    if (version != 0)
        bson_append_int64(f, "v", 1, (int64_t)version);
}

/* Reads by _id alone and hides an expired document here rather than in the filter: the
 * same answer, and FerretDB (the test server) pushes down only a bare {_id: v} filter and
 * scans the whole collection for anything else. */
static ent_err mg_get(struct ent_store *s, enum ent_store_coll c, const char *key, int64_t now_ms,
                      struct ent_store_doc *out)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    bson_t filter = BSON_INITIALIZER, doc;
    bool found = false;
    bson_append_utf8(&filter, "_id", 3, key, -1);
    mg_begin(m, ent_store_coll_name(c), &op);
    /* NULL prefs: the URI's readPreference (primary by default). */
    ent_err rc = mg_find_one(op.coll, &filter, NULL, NULL, "get", &found, &doc);
    mg_end(m, &op);
    bson_destroy(&filter);
    if (rc != ENT_OK)
        return rc;
    if (!found)
        return ENT_ENOTFOUND;
    int64_t exp = 0;
    if (!mg_get_i64(&doc, "exp", &exp))
        rc = mg_bad_reply("get");
    else if (exp <= now_ms)
        rc = ENT_ENOTFOUND;
    else
        rc = mg_read_doc(&doc, out);
    bson_destroy(&doc);
    return rc;
}

/* After a conditional write on a live document matched nothing: ENT_ECONFLICT if a live
 * document has the key (so its version differed), else ENT_ENOTFOUND. Invariant 4. */
static ent_err mg_doc_why_not(struct mg_store *m, mongoc_collection_t *coll, const char *key,
                              int64_t now_ms)
{
    bson_t filter, doc, opts = BSON_INITIALIZER, proj;
    bool found = false;
    mg_live_filter(&filter, key, now_ms, 0);
    bson_append_document_begin(&opts, "projection", -1, &proj);
    bson_append_int32(&proj, "v", 1, 1);
    bson_append_document_end(&opts, &proj);
    ent_err rc = mg_find_one(coll, &filter, &opts, m->primary, "why_not", &found, &doc);
    bson_destroy(&filter);
    bson_destroy(&opts);
    if (rc != ENT_OK)
        return rc;
    if (found)
        bson_destroy(&doc);
    return found ? ENT_ECONFLICT : ENT_ENOTFOUND;
}

/* Replaces an expired document with doc at version 1. *replaced false when no expired
 * document has the key (it is live, or gone). */
static ent_err mg_replace_expired(struct mg_store *m, mongoc_collection_t *coll,
                                  const struct ent_store_doc *doc, int64_t now_ms, const char *op,
                                  bool *replaced)
{
    bson_t filter = BSON_INITIALIZER, full, reply;
    bson_append_utf8(&filter, "_id", 3, doc->key, -1);
    mg_append_cmp(&filter, "exp", "$lte", now_ms);
    mg_doc_full(&full, doc, 1);
    bson_error_t e;
    ent_err rc = ENT_OK;
    if (mongoc_collection_replace_one(coll, &filter, &full, m->wopts, &reply, &e))
        *replaced = mg_reply_count(&reply, "matchedCount") == 1;
    else
        rc = mg_fail(&e, op);
    bson_destroy(&reply);
    bson_destroy(&full);
    bson_destroy(&filter);
    return rc;
}

/* Inserts doc at version 1. *dup true (and ENT_OK) when the key is taken. */
static ent_err mg_insert_new(struct mg_store *m, mongoc_collection_t *coll,
                             const struct ent_store_doc *doc, const char *op, bool *dup)
{
    bson_t full, reply;
    bson_error_t e;
    mg_doc_full(&full, doc, 1);
    ent_err rc = ENT_OK;
    *dup = false;
    if (!mongoc_collection_insert_one(coll, &full, m->wopts, &reply, &e)) {
        if (mg_is_dup(&e))
            *dup = true;
        else
            rc = mg_fail(&e, op);
    }
    bson_destroy(&reply);
    bson_destroy(&full);
    return rc;
}

static ent_err mg_insert(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, int64_t now_ms)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    mg_begin(m, ent_store_coll_name(c), &op);
    ent_err rc = ENT_ESTORE;
    /* Insert; on a duplicate, take the slot over only if its document expired. A document
     * deleted between the two steps sends us round again. */
    for (int i = 0; i < MG_RETRIES; i++) {
        bool dup = false, replaced = false;
        rc = mg_insert_new(m, op.coll, doc, "insert", &dup);
        if (rc != ENT_OK || !dup)
            break;
        rc = mg_replace_expired(m, op.coll, doc, now_ms, "insert", &replaced);
        if (rc != ENT_OK || replaced)
            break;
        rc = mg_doc_why_not(m, op.coll, doc->key, now_ms);
        if (rc == ENT_ECONFLICT) {
            rc = ENT_EEXIST;
            break;
        }
        if (rc != ENT_ENOTFOUND)
            break;
        rc = ENT_ESTORE;
    }
    mg_end(m, &op);
    return rc;
}

/* Bumps the live document's version and replaces its content; *found false when there is no
 * live document. On ENT_OK with *found, *v is the new version. */
static ent_err mg_update_live(struct mg_store *m, mongoc_collection_t *coll,
                              const struct ent_store_doc *doc, uint64_t expected_version,
                              int64_t now_ms, const char *op, bool *found, uint64_t *v)
{
    bson_t filter, update, reply, value;
    mg_live_filter(&filter, doc->key, now_ms, expected_version);
    mg_doc_update(&update, doc);
    ent_err rc = mg_fam(m, coll, &filter, &update, NULL, op, &reply, found, &value);
    if (rc == ENT_OK && *found) {
        int64_t nv = 0;
        if (mg_get_i64(&value, "v", &nv) && nv > 0)
            *v = (uint64_t)nv;
        else
            rc = mg_bad_reply(op);
    }
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

static ent_err mg_put(struct ent_store *s, enum ent_store_coll c, const struct ent_store_doc *doc,
                      int64_t now_ms, uint64_t *new_version)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    mg_begin(m, ent_store_coll_name(c), &op);
    ent_err rc = ENT_ESTORE;
    /* Live: bump in place. Absent: insert at 1. Expired: replace at 1. Each step is atomic;
     * losing a race to another writer moves us to the next step, bounded by MG_RETRIES. */
    for (int i = 0; i < MG_RETRIES; i++) {
        bool found = false, dup = false, replaced = false;
        uint64_t v = 0;
        rc = mg_update_live(m, op.coll, doc, 0, now_ms, "put", &found, &v);
        if (rc != ENT_OK)
            break;
        if (found) {
            *new_version = v;
            break;
        }
        rc = mg_insert_new(m, op.coll, doc, "put", &dup);
        if (rc != ENT_OK)
            break;
        if (!dup) {
            *new_version = 1;
            break;
        }
        rc = mg_replace_expired(m, op.coll, doc, now_ms, "put", &replaced);
        if (rc != ENT_OK)
            break;
        if (replaced) {
            *new_version = 1;
            break;
        }
        rc = ENT_ESTORE;
    }
    mg_end(m, &op);
    return rc;
}

static ent_err mg_update(struct ent_store *s, enum ent_store_coll c,
                         const struct ent_store_doc *doc, uint64_t expected_version, int64_t now_ms,
                         uint64_t *new_version)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    bool found = false;
    uint64_t v = 0;
    mg_begin(m, ent_store_coll_name(c), &op);
    ent_err rc = mg_update_live(m, op.coll, doc, expected_version, now_ms, "update", &found, &v);
    if (rc == ENT_OK && !found)
        rc = mg_doc_why_not(m, op.coll, doc->key, now_ms);
    mg_end(m, &op);
    if (rc == ENT_OK)
        *new_version = v;
    return rc;
}

static ent_err mg_delete(struct ent_store *s, enum ent_store_coll c, const char *key,
                         uint64_t expected_version, int64_t now_ms)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    bson_t filter, reply;
    bson_error_t e;
    mg_live_filter(&filter, key, now_ms, expected_version);
    mg_begin(m, ent_store_coll_name(c), &op);
    ent_err rc = ENT_OK;
    if (!mongoc_collection_delete_one(op.coll, &filter, m->wopts, &reply, &e))
        rc = mg_fail(&e, "delete");
    else if (mg_reply_count(&reply, "deletedCount") != 1)
        rc = mg_doc_why_not(m, op.coll, key, now_ms);
    mg_end(m, &op);
    bson_destroy(&reply);
    bson_destroy(&filter);
    return rc;
}

/* Escapes prefix for a ^-anchored $regex. */
static char *mg_regex_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    char *r = malloc(2 * n + 2);
    if (r == NULL)
        return NULL;
    size_t j = 0;
    r[j++] = '^';
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\^$.|?*+()[]{}-/", prefix[i]) != NULL)
            r[j++] = '\\';
        r[j++] = prefix[i];
    }
    r[j] = '\0';
    return r;
}

static ent_err mg_query(struct ent_store *s, enum ent_store_coll c, int index_slot,
                        const char *value, const char *after_key, size_t limit, int64_t now_ms,
                        struct ent_store_page *out)
{
    struct mg_store *m = mg_of(s);
    bool prefix = index_slot == -1 && value != NULL;
    char *upper = NULL, *regex = NULL;
    if (prefix) {
        /* A key range serves a prefix from the _id index. Its upper bound (last byte + 1)
         * must stay valid UTF-8 for BSON, so it is used only when that byte is ASCII;
         * otherwise an anchored $regex does the job. */
        size_t n = strlen(value);
        if ((unsigned char)value[n - 1] < 0x7f) {
            upper = ent_store_strdup_(value);
            if (upper != NULL)
                upper[n - 1] = (char)(upper[n - 1] + 1);
        } else {
            regex = mg_regex_prefix(value);
        }
        if (upper == NULL && regex == NULL)
            return ENT_ENOMEM;
    }
    struct ent_store_page page = {0};
    page.docs = calloc(limit, sizeof(*page.docs));
    if (page.docs == NULL) {
        free(upper);
        free(regex);
        return ENT_ENOMEM;
    }

    bson_t filter = BSON_INITIALIZER, idr, opts = BSON_INITIALIZER, sort;
    mg_append_cmp(&filter, "exp", "$gt", now_ms);
    if (index_slot >= 0)
        bson_append_utf8(&filter, mg_idx_field[index_slot], -1, value, -1);
    if (after_key != NULL || upper != NULL || regex != NULL) {
        bson_append_document_begin(&filter, "_id", 3, &idr);
        if (after_key != NULL)
            bson_append_utf8(&idr, "$gt", 3, after_key, -1);
        if (upper != NULL) {
            bson_append_utf8(&idr, "$gte", 4, value, -1);
            bson_append_utf8(&idr, "$lt", 3, upper, -1);
        }
        if (regex != NULL)
            bson_append_regex(&idr, "$regex", 6, regex, "");
        bson_append_document_end(&filter, &idr);
    }
    bson_append_document_begin(&opts, "sort", 4, &sort);
    bson_append_int32(&sort, "_id", 3, 1);
    bson_append_document_end(&opts, &sort);
    /* One more than asked says whether another page exists. */
    bson_append_int64(&opts, "limit", 5, (int64_t)limit + 1);

    struct mg_op op;
    mg_begin(m, ent_store_coll_name(c), &op);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(op.coll, &filter, &opts, NULL);
    const bson_t *doc = NULL;
    bool more = false;
    ent_err rc = ENT_OK;
    while (mongoc_cursor_next(cur, &doc)) {
        if (page.n == limit) {
            more = true;
            break;
        }
        rc = mg_read_doc(doc, &page.docs[page.n]);
        if (rc != ENT_OK)
            break;
        page.n++;
    }
    bson_error_t e;
    if (rc == ENT_OK && mongoc_cursor_error(cur, &e))
        rc = mg_fail(&e, "query");
    mongoc_cursor_destroy(cur);
    mg_end(m, &op);
    bson_destroy(&opts);
    bson_destroy(&filter);
    free(upper);
    free(regex);

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

static ent_err mg_purge_expired(struct ent_store *s, enum ent_store_coll c, int64_t now_ms,
                                size_t *purged)
{
    struct mg_store *m = mg_of(s);
    struct mg_op op;
    bson_t filter = BSON_INITIALIZER, reply;
    bson_error_t e;
    mg_append_cmp(&filter, "exp", "$lte", now_ms);
    mg_begin(m, ent_store_coll_name(c), &op);
    ent_err rc = ENT_OK;
    if (mongoc_collection_delete_many(op.coll, &filter, m->wopts, &reply, &e))
        *purged = (size_t)mg_reply_count(&reply, "deletedCount");
    else
        rc = mg_fail(&e, "purge");
    mg_end(m, &op);
    bson_destroy(&reply);
    bson_destroy(&filter);
    return rc;
}

/* ---- counters ------------------------------------------------------------------------- */

/* "<len(counter)>:<counter>:<key>": the length prefix keeps ("a:b", "c") and ("a", "b:c")
 * apart. Heap string, NULL when out of memory. */
static char *mg_counter_id(const char *counter, const char *key)
{
    size_t n = strlen(counter) + strlen(key) + 24;
    char *id = malloc(n);
    if (id != NULL)
        snprintf(id, n, "%zu:%s:%s", strlen(counter), counter, key);
    return id;
}

/* A counter step done as findAndModify on the existing document (filter `cond` on val and
 * update `update`), else an insert of { val: initial }. A duplicate on the insert means a
 * concurrent creator won; then the findAndModify runs again. When the document exists but
 * does not satisfy cond, *refused is set (and ENT_OK returned). Invariant 3. */
static ent_err mg_counter_step(struct mg_store *m, const char *id, const char *counter,
                               const char *key, const bson_t *cond, const bson_t *update,
                               int64_t initial, const char *op, int64_t *value, bool *refused)
{
    struct mg_op o;
    mg_begin(m, MG_COUNTERS, &o);
    ent_err rc = ENT_ESTORE;
    *refused = false;
    for (int i = 0; i < MG_RETRIES; i++) {
        bson_t filter = BSON_INITIALIZER, reply, val;
        bool found = false;
        bson_append_utf8(&filter, "_id", 3, id, -1);
        if (cond != NULL)
            bson_concat(&filter, cond);
        rc = mg_fam(m, o.coll, &filter, update, NULL, op, &reply, &found, &val);
        if (rc == ENT_OK && found && !mg_get_i64(&val, "val", value))
            rc = mg_bad_reply(op);
        bson_destroy(&reply);
        bson_destroy(&filter);
        if (rc != ENT_OK || found)
            break;

        bson_t doc = BSON_INITIALIZER;
        bson_error_t e;
        bson_append_utf8(&doc, "_id", 3, id, -1);
        if (counter != NULL) {
            bson_append_utf8(&doc, "n", 1, counter, -1);
            bson_append_utf8(&doc, "k", 1, key, -1);
        }
        bson_append_int64(&doc, "val", 3, initial);
        bool ok = mongoc_collection_insert_one(o.coll, &doc, m->wopts, &reply, &e);
        bson_destroy(&reply);
        bson_destroy(&doc);
        if (ok) {
            *value = initial;
            break;
        }
        if (!mg_is_dup(&e)) {
            rc = mg_fail(&e, op);
            break;
        }
        /* The document exists. Without a condition the next findAndModify will match it;
         * with one, a miss now means the condition refused. */
        if (cond != NULL && i > 0) {
            *refused = true;
            break;
        }
        rc = ENT_ESTORE;
    }
    mg_end(m, &o);
    return rc;
}

/* mg_counter_step for the caller's (counter, key). */
static ent_err mg_counter_op(struct mg_store *m, const char *counter, const char *key,
                             const bson_t *cond, const bson_t *update, int64_t initial,
                             const char *op, int64_t *value, bool *refused)
{
    char *id = mg_counter_id(counter, key);
    if (id == NULL)
        return ENT_ENOMEM;
    ent_err rc = mg_counter_step(m, id, counter, key, cond, update, initial, op, value, refused);
    free(id);
    return rc;
}

static ent_err mg_incr(struct ent_store *s, const char *counter, const char *key, int64_t delta,
                       int64_t *new_value)
{
    struct mg_store *m = mg_of(s);
    /* The overflow guard is part of the filter: only a value that stays in int64 after the
     * addition matches, so an overflowing step changes nothing (MongoDB would fail the $inc
     * with an error, other servers might wrap or turn to double). */
    bson_t cond = BSON_INITIALIZER, update = BSON_INITIALIZER, inc;
    if (delta >= 0)
        mg_append_cmp(&cond, "val", "$lte", INT64_MAX - delta);
    else
        mg_append_cmp(&cond, "val", "$gte", INT64_MIN - delta);
    bson_append_document_begin(&update, "$inc", 4, &inc);
    bson_append_int64(&inc, "val", 3, delta);
    bson_append_document_end(&update, &inc);
    bool refused = false;
    ent_err rc = mg_counter_op(m, counter, key, &cond, &update, delta, "incr", new_value, &refused);
    bson_destroy(&update);
    bson_destroy(&cond);
    if (rc == ENT_OK && refused)
        rc = ENT_EINVAL;
    return rc;
}

static ent_err mg_counter_get(struct ent_store *s, const char *counter, const char *key,
                              int64_t *value)
{
    struct mg_store *m = mg_of(s);
    char *id = mg_counter_id(counter, key);
    if (id == NULL)
        return ENT_ENOMEM;
    bson_t filter = BSON_INITIALIZER, doc;
    bool found = false;
    bson_append_utf8(&filter, "_id", 3, id, -1);
    struct mg_op o;
    mg_begin(m, MG_COUNTERS, &o);
    ent_err rc = mg_find_one(o.coll, &filter, NULL, m->primary, "counter_get", &found, &doc);
    mg_end(m, &o);
    bson_destroy(&filter);
    free(id);
    if (rc != ENT_OK)
        return rc;
    if (!found)
        return ENT_ENOTFOUND;
    if (!mg_get_i64(&doc, "val", value))
        rc = mg_bad_reply("counter_get");
    bson_destroy(&doc);
    return rc;
}

static ent_err mg_counter_set_min(struct ent_store *s, const char *counter, const char *key,
                                  int64_t min_value, int64_t *new_value)
{
    struct mg_store *m = mg_of(s);
    bson_t update = BSON_INITIALIZER, max;
    bson_append_document_begin(&update, "$max", 4, &max);
    bson_append_int64(&max, "val", 3, min_value);
    bson_append_document_end(&update, &max);
    bool refused = false;
    ent_err rc = mg_counter_op(m, counter, key, NULL, &update, min_value, "counter_set_min",
                               new_value, &refused);
    bson_destroy(&update);
    return rc;
}

/* ---- outbox --------------------------------------------------------------------------- */

/* Next outbox id from the "#outbox" counter document (ids start at 1, never reused). */
static ent_err mg_outbox_next_id(struct mg_store *m, int64_t *id)
{
    bson_t update = BSON_INITIALIZER, inc;
    bson_append_document_begin(&update, "$inc", 4, &inc);
    bson_append_int64(&inc, "val", 3, 1);
    bson_append_document_end(&update, &inc);
    bool refused = false;
    ent_err rc = mg_counter_step(m, MG_OUTBOX_SEQ_ID, NULL, NULL, NULL, &update, 1, "outbox_id", id,
                                 &refused);
    bson_destroy(&update);
    return rc;
}

static ent_err mg_outbox_enqueue(struct ent_store *s, const char *coalesce_key, const void *payload,
                                 size_t len, int64_t due_ms, int64_t now_ms, uint64_t *id,
                                 bool *coalesced)
{
    struct mg_store *m = mg_of(s);
    struct mg_op o;
    ent_err rc = ENT_OK;
    mg_begin(m, MG_OUTBOX, &o);
    if (coalesce_key != NULL) {
        /* Merge into the oldest pending, unleased item with the key. Two enqueues racing on a
         * new key may both insert: coalescing saves work, it is not a uniqueness promise. */
        bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, min, sort, reply, val;
        bool found = false;
        bson_append_utf8(&filter, "ck", 2, coalesce_key, -1);
        bson_append_int32(&filter, "st", 2, 0);
        bson_append_int64(&filter, "until", 5, 0);
        bson_append_document_begin(&update, "$set", 4, &set);
        mg_append_bin(&set, "p", payload, len);
        bson_append_document_end(&update, &set);
        bson_append_document_begin(&update, "$min", 4, &min);
        bson_append_int64(&min, "due", 3, due_ms);
        bson_append_document_end(&update, &min);
        bson_init(&sort);
        bson_append_int32(&sort, "_id", 3, 1);
        rc = mg_fam(m, o.coll, &filter, &update, &sort, "outbox_coalesce", &reply, &found, &val);
        int64_t got = 0;
        if (rc == ENT_OK && found) {
            if (mg_get_i64(&val, "_id", &got) && got > 0) {
                *id = (uint64_t)got;
                *coalesced = true;
            } else {
                rc = mg_bad_reply("outbox_coalesce");
            }
        }
        bson_destroy(&reply);
        bson_destroy(&sort);
        bson_destroy(&update);
        bson_destroy(&filter);
        if (rc != ENT_OK || found) {
            mg_end(m, &o);
            return rc;
        }
    }
    int64_t nid = 0;
    rc = mg_outbox_next_id(m, &nid);
    if (rc == ENT_OK) {
        bson_t doc = BSON_INITIALIZER, reply;
        bson_error_t e;
        bson_append_int64(&doc, "_id", 3, nid);
        if (coalesce_key != NULL)
            bson_append_utf8(&doc, "ck", 2, coalesce_key, -1);
        mg_append_bin(&doc, "p", payload, len);
        bson_append_int64(&doc, "due", 3, due_ms);
        bson_append_int64(&doc, "created", 7, now_ms);
        bson_append_int64(&doc, "att", 3, 0);
        bson_append_int32(&doc, "st", 2, 0);
        bson_append_int64(&doc, "tok", 3, 0);
        bson_append_int64(&doc, "until", 5, 0);
        if (!mongoc_collection_insert_one(o.coll, &doc, m->wopts, &reply, &e))
            rc = mg_fail(&e, "outbox_insert");
        bson_destroy(&reply);
        bson_destroy(&doc);
    }
    mg_end(m, &o);
    if (rc == ENT_OK) {
        *id = (uint64_t)nid;
        *coalesced = false;
    }
    return rc;
}

static ent_err mg_read_item(const bson_t *b, struct ent_store_outbox_item *it)
{
    int64_t id = 0, att = 0, tok = 0;
    memset(it, 0, sizeof(*it));
    ent_err rc = mg_get_str(b, "ck", &it->coalesce_key);
    if (rc == ENT_OK)
        rc = mg_get_bin(b, "p", &it->payload, &it->len);
    if (rc == ENT_OK &&
        (!mg_get_i64(b, "_id", &id) || !mg_get_i64(b, "att", &att) || !mg_get_i64(b, "tok", &tok) ||
         !mg_get_i64(b, "due", &it->due_ms) || !mg_get_i64(b, "created", &it->created_ms)))
        rc = ENT_ESTORE;
    if (rc != ENT_OK) {
        free(it->coalesce_key);
        free(it->payload);
        memset(it, 0, sizeof(*it));
        return rc == ENT_ESTORE ? mg_bad_reply("outbox_item") : rc;
    }
    it->id = (uint64_t)id;
    it->attempts = (uint32_t)att;
    it->lease_token = (uint64_t)tok;
    return ENT_OK;
}

static int mg_item_cmp(const void *a, const void *b)
{
    const struct ent_store_outbox_item *x = a, *y = b;
    if (x->due_ms != y->due_ms)
        return x->due_ms < y->due_ms ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static ent_err mg_outbox_claim(struct ent_store *s, const char *owner, int64_t now_ms,
                               uint64_t lease_ms, size_t max, struct ent_store_outbox_item **items,
                               size_t *n)
{
    struct mg_store *m = mg_of(s);
    struct ent_store_outbox_item *v = calloc(max, sizeof(*v));
    if (v == NULL)
        return ENT_ENOMEM;
    /* One findAndModify per item: each lease is taken atomically, so two workers never hold
     * the same item; MongoDB has no "update N and return them" in one step. */
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, sort = BSON_INITIALIZER, set, inc;
    bson_append_int32(&filter, "st", 2, 0);
    mg_append_cmp(&filter, "due", "$lte", now_ms);
    mg_append_cmp(&filter, "until", "$lte", now_ms);
    bson_append_document_begin(&update, "$set", 4, &set);
    bson_append_utf8(&set, "owner", 5, owner, -1);
    bson_append_int64(&set, "until", 5, now_ms + (int64_t)lease_ms);
    bson_append_document_end(&update, &set);
    bson_append_document_begin(&update, "$inc", 4, &inc);
    bson_append_int64(&inc, "tok", 3, 1);
    bson_append_int64(&inc, "att", 3, 1);
    bson_append_document_end(&update, &inc);
    bson_append_int32(&sort, "due", 3, 1);
    bson_append_int32(&sort, "_id", 3, 1);

    struct mg_op o;
    mg_begin(m, MG_OUTBOX, &o);
    size_t got = 0;
    ent_err rc = ENT_OK;
    while (got < max) {
        bson_t reply, val;
        bool found = false;
        rc = mg_fam(m, o.coll, &filter, &update, &sort, "outbox_claim", &reply, &found, &val);
        if (rc == ENT_OK && found) {
            rc = mg_read_item(&val, &v[got]);
            if (rc == ENT_OK)
                got++;
        }
        bson_destroy(&reply);
        if (rc != ENT_OK || !found)
            break;
    }
    mg_end(m, &o);
    bson_destroy(&sort);
    bson_destroy(&update);
    bson_destroy(&filter);
    /* Items leased before a failure stay leased and come back when the lease ends: the
     * caller saw an error and delivers none of them (at-least-once, never lost). */
    if (rc != ENT_OK) {
        ent_store_outbox_items_free(v, got);
        return rc;
    }
    if (got == 0) {
        free(v);
        v = NULL;
    } else {
        qsort(v, got, sizeof(*v), mg_item_cmp);
    }
    *items = v;
    *n = got;
    return ENT_OK;
}

/* Filter of a lease-checked write: { _id, tok, st: 0, until: { $ne: 0 } }. */
static void mg_lease_filter(bson_t *f, uint64_t id, uint64_t lease_token)
{
    bson_init(f);
    bson_append_int64(f, "_id", 3, (int64_t)id);
    bson_append_int64(f, "tok", 3, (int64_t)lease_token);
    bson_append_int32(f, "st", 2, 0);
    mg_append_cmp(f, "until", "$ne", 0);
}

/* After a lease-checked write matched nothing: ECONFLICT if the item exists, else
 * ENOTFOUND. */
static ent_err mg_outbox_why_not(struct mg_store *m, mongoc_collection_t *coll, uint64_t id)
{
    bson_t filter = BSON_INITIALIZER, doc;
    bool found = false;
    bson_append_int64(&filter, "_id", 3, (int64_t)id);
    ent_err rc = mg_find_one(coll, &filter, NULL, m->primary, "outbox_exists", &found, &doc);
    bson_destroy(&filter);
    if (rc != ENT_OK)
        return rc;
    if (found)
        bson_destroy(&doc);
    return found ? ENT_ECONFLICT : ENT_ENOTFOUND;
}

static ent_err mg_outbox_ack(struct ent_store *s, uint64_t id, uint64_t lease_token)
{
    struct mg_store *m = mg_of(s);
    struct mg_op o;
    bson_t filter, reply;
    bson_error_t e;
    mg_lease_filter(&filter, id, lease_token);
    mg_begin(m, MG_OUTBOX, &o);
    ent_err rc = ENT_OK;
    if (!mongoc_collection_delete_one(o.coll, &filter, m->wopts, &reply, &e))
        rc = mg_fail(&e, "outbox_ack");
    else if (mg_reply_count(&reply, "deletedCount") != 1)
        rc = mg_outbox_why_not(m, o.coll, id);
    mg_end(m, &o);
    bson_destroy(&reply);
    bson_destroy(&filter);
    return rc;
}

static ent_err mg_outbox_retry(struct ent_store *s, uint64_t id, uint64_t lease_token,
                               int64_t next_due_ms, uint32_t max_attempts, bool *dead)
{
    struct mg_store *m = mg_of(s);
    struct mg_op o;
    mg_begin(m, MG_OUTBOX, &o);
    ent_err rc = ENT_OK;
    bool found = false;
    /* No conditional $set without a pipeline update, so two findAndModifys with disjoint
     * filters: attempts >= max goes dead, attempts < max goes back to pending. attempts only
     * changes on a claim, which also changes tok, so at most one of them can match. */
    for (int pass = 0; pass < 2 && rc == ENT_OK && !found; pass++) {
        bool to_dead = pass == 0;
        bson_t filter, update = BSON_INITIALIZER, set, unset, reply, val;
        mg_lease_filter(&filter, id, lease_token);
        mg_append_cmp(&filter, "att", to_dead ? "$gte" : "$lt", (int64_t)max_attempts);
        bson_append_document_begin(&update, "$set", 4, &set);
        bson_append_int64(&set, "until", 5, 0);
        bson_append_int64(&set, "due", 3, next_due_ms);
        bson_append_int32(&set, "st", 2, to_dead ? 1 : 0);
        bson_append_document_end(&update, &set);
        bson_append_document_begin(&update, "$unset", 6, &unset);
        bson_append_utf8(&unset, "owner", 5, "", 0);
        bson_append_document_end(&update, &unset);
        rc = mg_fam(m, o.coll, &filter, &update, NULL, "outbox_retry", &reply, &found, &val);
        if (rc == ENT_OK && found)
            *dead = to_dead;
        bson_destroy(&reply);
        bson_destroy(&update);
        bson_destroy(&filter);
    }
    if (rc == ENT_OK && !found)
        rc = mg_outbox_why_not(m, o.coll, id);
    mg_end(m, &o);
    return rc;
}

static ent_err mg_count(struct mg_store *m, mongoc_collection_t *coll, int32_t state,
                        uint64_t *count)
{
    bson_t filter = BSON_INITIALIZER, reply;
    bson_error_t e;
    bson_append_int32(&filter, "st", 2, state);
    int64_t c = mongoc_collection_count_documents(coll, &filter, NULL, m->primary, &reply, &e);
    bson_destroy(&reply);
    bson_destroy(&filter);
    if (c < 0)
        return mg_fail(&e, "outbox_stats");
    *count = (uint64_t)c;
    return ENT_OK;
}

static ent_err mg_outbox_stats(struct ent_store *s, int64_t now_ms, uint64_t *pending,
                               uint64_t *dead, int64_t *oldest_pending_age_ms)
{
    struct mg_store *m = mg_of(s);
    struct mg_op o;
    mg_begin(m, MG_OUTBOX, &o);
    ent_err rc = mg_count(m, o.coll, 0, pending);
    if (rc == ENT_OK)
        rc = mg_count(m, o.coll, 1, dead);
    if (rc == ENT_OK) {
        bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, doc;
        bool found = false;
        bson_append_int32(&filter, "st", 2, 0);
        bson_append_document_begin(&opts, "sort", 4, &sort);
        bson_append_int32(&sort, "created", 7, 1);
        bson_append_document_end(&opts, &sort);
        rc = mg_find_one(o.coll, &filter, &opts, m->primary, "outbox_stats", &found, &doc);
        int64_t age = 0, created = 0;
        if (rc == ENT_OK && found) {
            if (mg_get_i64(&doc, "created", &created))
                age = now_ms - created;
            else
                rc = mg_bad_reply("outbox_stats");
            bson_destroy(&doc);
        }
        if (rc == ENT_OK)
            *oldest_pending_age_ms = age > 0 ? age : 0;
        bson_destroy(&opts);
        bson_destroy(&filter);
    }
    mg_end(m, &o);
    return rc;
}

const struct ent_store_ops ent_store_mongo_ops = {
    .name = "mongo",
    .open = mg_open,
    .close = mg_close,
    .ping = mg_ping,
    .get = mg_get,
    .insert = mg_insert,
    .put = mg_put,
    .update = mg_update,
    .del = mg_delete,
    .incr = mg_incr,
    .counter_get = mg_counter_get,
    .counter_set_min = mg_counter_set_min,
    .query = mg_query,
    .purge_expired = mg_purge_expired,
    .outbox_enqueue = mg_outbox_enqueue,
    .outbox_claim = mg_outbox_claim,
    .outbox_ack = mg_outbox_ack,
    .outbox_retry = mg_outbox_retry,
    .outbox_stats = mg_outbox_stats,
};

#else
/* Built without libmongoc: store.c does not list the backend and ent_store_open() answers
 * ENT_EUNSUPPORTED for "mongo". ISO C wants a declaration in every translation unit. */
typedef int ent_store_mongo_not_built_;
#endif
