/* SPDX-License-Identifier: Apache-2.0 */
/* The store contract suite: every operation of ent/store.h with its version, expiry, paging,
 * counter and outbox-lease semantics, run against one backend chosen on the command line:
 *   test_store [--backend sqlite|mongo]     (default sqlite; mongo reads MONGO_URI)
 * When the chosen backend is not compiled in or not configured the suite exits 77 (skipped).
 * A few tests reach below the interface (schema_version, a second raw connection holding
 * the write lock) and only run for sqlite. Each test gets its own temporary directory (and,
 * for mongo, its own database name). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ent/store.h"
#include "ent/util.h"

static const char *g_backend = "sqlite";
static const char *g_mongo_uri;
static unsigned g_db_seq;

struct fx {
    char dir[PATH_MAX];
    char path[PATH_MAX + 32];
    char database[64];
    struct ent_store *s;
};

static bool is_sqlite(void)
{
    return strcmp(g_backend, "sqlite") == 0;
}

static struct ent_store_cfg fx_cfg(struct fx *f, uint64_t busy_ms)
{
    return (struct ent_store_cfg){.backend = g_backend,
                                  .path = f->path,
                                  .busy_timeout_ms = busy_ms,
                                  .uri = g_mongo_uri,
                                  .database = f->database};
}

static struct ent_store *fx_open(struct fx *f, uint64_t busy_ms)
{
    struct ent_store_cfg cfg = fx_cfg(f, busy_ms);
    struct ent_store *s = NULL;
    char err[256] = "";
    ent_err rc = ent_store_open(&s, &cfg, err, sizeof(err));
    if (rc != ENT_OK)
        fail_msg("ent_store_open: %s: %s", ent_err_name(rc), err);
    return s;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/entitle-store-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    snprintf(f->database, sizeof(f->database), "entitle_test_%ld_%u", (long)getpid(), g_db_seq++);
    f->s = fx_open(f, 0);
    *state = f;
    return 0;
}

static void rm_dir(const char *dir)
{
    static const char *const names[] = {"store.db",   "store.db-wal", "store.db-shm",
                                        "race.db",    "race.db-wal",  "race.db-shm",
                                        "child0.out", "child1.out"};
    char p[PATH_MAX + 32];
    for (size_t i = 0; i < ENT_ARRAY_LEN(names); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        (void)unlink(p);
    }
    (void)rmdir(dir);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    ent_store_close(f->s);
    rm_dir(f->dir);
    free(f);
    return 0;
}

static struct ent_store_doc mkdoc(const char *key, const char *data, const char *i0, const char *i1,
                                  const char *i2)
{
    struct ent_store_doc d = {0};
    d.key = (char *)key;
    d.data = (uint8_t *)data;
    d.len = data != NULL ? strlen(data) : 0;
    d.index[0] = (char *)i0;
    d.index[1] = (char *)i1;
    d.index[2] = (char *)i2;
    return d;
}

static void assert_doc_data(const struct ent_store_doc *d, const char *data)
{
    assert_int_equal(d->len, strlen(data));
    assert_non_null(d->data);
    assert_memory_equal(d->data, data, d->len);
}

static int64_t now_ms(void)
{
    return (int64_t)ent_wall_ms();
}

/* ---- open, ping --------------------------------------------------------------------------- */

static void test_store_open_ping_and_bad_config(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ent_store_ping(f->s), ENT_OK);
    assert_string_equal(ent_store_backend(f->s), g_backend);
    assert_string_equal(ent_store_coll_name(ENT_COLL_ROAMING_RULES), "roaming_rules");
    assert_null(ent_store_coll_name(ENT_COLL_COUNT_));

    struct ent_store *s = NULL;
    char err[128] = "";
    struct ent_store_cfg bad = {.backend = "nosuch", .path = f->path};
    assert_int_equal(ent_store_open(&s, &bad, err, sizeof(err)), ENT_EINVAL);
    assert_non_null(strstr(err, "nosuch"));
    assert_null(s);
    if (is_sqlite()) {
        struct ent_store_cfg nopath = {.backend = "sqlite"};
        assert_int_equal(ent_store_open(&s, &nopath, err, sizeof(err)), ENT_EINVAL);
        char missing[PATH_MAX + 32];
        snprintf(missing, sizeof(missing), "%s/no/such/dir/x.db", f->dir);
        struct ent_store_cfg nodir = {.path = missing};
        assert_int_equal(ent_store_open(&s, &nodir, err, sizeof(err)), ENT_ESTORE);
        assert_null(s);
    }
}

/* ---- documents ---------------------------------------------------------------------------- */

static void test_store_doc_insert_get_put_update_versions(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("001010000000001", "v1", "+15550001", "gold", NULL);
    struct ent_store_doc got = {0};
    uint64_t v = 0;

    assert_int_equal(ent_store_get(f->s, ENT_COLL_SUBSCRIBERS, d.key, &got), ENT_ENOTFOUND);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_SUBSCRIBERS, &d), ENT_OK);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_SUBSCRIBERS, &d), ENT_EEXIST);

    assert_int_equal(ent_store_get(f->s, ENT_COLL_SUBSCRIBERS, d.key, &got), ENT_OK);
    assert_string_equal(got.key, d.key);
    assert_doc_data(&got, "v1");
    assert_int_equal(got.version, 1);
    assert_string_equal(got.index[0], "+15550001");
    assert_string_equal(got.index[1], "gold");
    assert_null(got.index[2]);
    assert_int_equal(got.expires_at_ms, 0);
    ent_store_doc_free(&got);
    assert_null(got.key);

    /* Collections are separate namespaces. */
    assert_int_equal(ent_store_get(f->s, ENT_COLL_DEVICES, d.key, &got), ENT_ENOTFOUND);

    d = mkdoc("001010000000001", "v2", "+15550001", "silver", "eu");
    assert_int_equal(ent_store_put(f->s, ENT_COLL_SUBSCRIBERS, &d, &v), ENT_OK);
    assert_int_equal(v, 2);

    d = mkdoc("001010000000001", "v3", NULL, NULL, NULL);
    assert_int_equal(ent_store_update(f->s, ENT_COLL_SUBSCRIBERS, &d, 1, &v), ENT_ECONFLICT);
    assert_int_equal(ent_store_update(f->s, ENT_COLL_SUBSCRIBERS, &d, 2, &v), ENT_OK);
    assert_int_equal(v, 3);
    /* The same compare-and-set cannot win twice: single-use close. */
    assert_int_equal(ent_store_update(f->s, ENT_COLL_SUBSCRIBERS, &d, 2, &v), ENT_ECONFLICT);
    assert_int_equal(v, 3);

    assert_int_equal(ent_store_get(f->s, ENT_COLL_SUBSCRIBERS, d.key, &got), ENT_OK);
    assert_doc_data(&got, "v3");
    assert_int_equal(got.version, 3);
    /* update replaces the index values too. */
    assert_null(got.index[0]);
    assert_null(got.index[1]);
    ent_store_doc_free(&got);

    struct ent_store_doc absent = mkdoc("001010000000999", "x", NULL, NULL, NULL);
    assert_int_equal(ent_store_update(f->s, ENT_COLL_SUBSCRIBERS, &absent, 1, &v), ENT_ENOTFOUND);
    assert_int_equal(ent_store_put(f->s, ENT_COLL_SUBSCRIBERS, &absent, &v), ENT_OK);
    assert_int_equal(v, 1);

    /* Empty data is a valid document and comes back non-NULL. */
    struct ent_store_doc empty = mkdoc("empty", NULL, NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_PLANS, &empty), ENT_OK);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_PLANS, "empty", &got), ENT_OK);
    assert_int_equal(got.len, 0);
    assert_non_null(got.data);
    ent_store_doc_free(&got);

    /* Binary data with NUL bytes round-trips. */
    uint8_t bin[] = {0, 1, 2, 0xff, 0};
    struct ent_store_doc b = {.key = "bin", .data = bin, .len = sizeof(bin)};
    assert_int_equal(ent_store_put(f->s, ENT_COLL_CREDENTIALS, &b, NULL), ENT_OK);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_CREDENTIALS, "bin", &got), ENT_OK);
    assert_int_equal(got.len, sizeof(bin));
    assert_memory_equal(got.data, bin, sizeof(bin));
    ent_store_doc_free(&got);

    /* Arguments are checked before the backend. */
    struct ent_store_doc nokey = mkdoc("", "x", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_PLANS, &nokey), ENT_EINVAL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_COUNT_, &d), ENT_EINVAL);
    assert_int_equal(ent_store_update(f->s, ENT_COLL_PLANS, &d, 0, &v), ENT_EINVAL);
}

static void test_store_doc_delete_with_and_without_version(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("ex-1", "round1", NULL, NULL, NULL);
    uint64_t v = 0;
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &d), ENT_OK);
    assert_int_equal(ent_store_put(f->s, ENT_COLL_EXCHANGES, &d, &v), ENT_OK);
    assert_int_equal(v, 2);

    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "ex-1", 1), ENT_ECONFLICT);
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "ex-1", &got), ENT_OK);
    ent_store_doc_free(&got);
    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "ex-1", 2), ENT_OK);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "ex-1", &got), ENT_ENOTFOUND);
    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "ex-1", 2), ENT_ENOTFOUND);
    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "ex-1", 0), ENT_ENOTFOUND);

    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &d), ENT_OK);
    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "ex-1", 0), ENT_OK);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "ex-1", &got), ENT_ENOTFOUND);
}

static void test_store_doc_expiry(void **state)
{
    struct fx *f = *state;
    int64_t now = now_ms();
    struct ent_store_doc gone = mkdoc("old", "stale", "idx", NULL, NULL);
    gone.expires_at_ms = now - 60000;
    struct ent_store_doc live = mkdoc("new", "fresh", "idx", NULL, NULL);
    live.expires_at_ms = now + 3600000;
    struct ent_store_doc forever = mkdoc("zzz", "keep", "idx", NULL, NULL);
    struct ent_store_doc got = {0};
    uint64_t v = 0;

    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &gone), ENT_OK);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &live), ENT_OK);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &forever), ENT_OK);

    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "old", &got), ENT_ENOTFOUND);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "new", &got), ENT_OK);
    assert_int_equal(got.expires_at_ms, live.expires_at_ms);
    ent_store_doc_free(&got);

    /* Expired documents are absent for every operation. */
    assert_int_equal(ent_store_update(f->s, ENT_COLL_EXCHANGES, &gone, 1, &v), ENT_ENOTFOUND);
    assert_int_equal(ent_store_delete(f->s, ENT_COLL_EXCHANGES, "old", 0), ENT_ENOTFOUND);
    struct ent_store_page page = {0};
    assert_int_equal(ent_store_query(f->s, ENT_COLL_EXCHANGES, 0, "idx", NULL, 10, &page), ENT_OK);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.docs[0].key, "new");
    assert_string_equal(page.docs[1].key, "zzz");
    ent_store_page_free(&page);

    /* purge only removes what has expired by the given time. */
    size_t purged = 99;
    assert_int_equal(ent_store_purge_expired(f->s, ENT_COLL_EXCHANGES, now, &purged), ENT_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(ent_store_purge_expired(f->s, ENT_COLL_EXCHANGES, now, &purged), ENT_OK);
    assert_int_equal(purged, 0);
    assert_int_equal(ent_store_purge_expired(f->s, ENT_COLL_EXCHANGES, now + 7200000, &purged),
                     ENT_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "zzz", &got), ENT_OK);
    ent_store_doc_free(&got);

    /* An expired document is replaced by insert (version 1) and by put (version 1). */
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &gone), ENT_OK);
    live = mkdoc("old", "reborn", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &live), ENT_OK);
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "old", &got), ENT_OK);
    assert_int_equal(got.version, 1);
    assert_doc_data(&got, "reborn");
    ent_store_doc_free(&got);

    gone.key = "old2";
    assert_int_equal(ent_store_put(f->s, ENT_COLL_EXCHANGES, &gone, &v), ENT_OK);
    assert_int_equal(v, 1);
    gone.expires_at_ms = 0;
    assert_int_equal(ent_store_put(f->s, ENT_COLL_EXCHANGES, &gone, &v), ENT_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ent_store_put(f->s, ENT_COLL_EXCHANGES, &gone, &v), ENT_OK);
    assert_int_equal(v, 2);
}

/* Collects every key of a query, page by page, checking each page's size. */
static void query_pages(struct ent_store *s, enum ent_store_coll c, int slot, const char *value,
                        size_t limit, const size_t *sizes, size_t n_pages, char keys[][16],
                        size_t *n_keys)
{
    char *after = NULL;
    *n_keys = 0;
    for (size_t p = 0; p < n_pages; p++) {
        struct ent_store_page page = {0};
        assert_int_equal(ent_store_query(s, c, slot, value, after, limit, &page), ENT_OK);
        free(after);
        after = NULL;
        assert_int_equal(page.n, sizes[p]);
        for (size_t i = 0; i < page.n; i++) {
            assert_int_equal(page.docs[i].version, 1);
            snprintf(keys[(*n_keys)++], 16, "%s", page.docs[i].key);
        }
        if (p + 1 < n_pages) {
            assert_non_null(page.next_after);
            assert_string_equal(page.next_after, page.docs[page.n - 1].key);
            after = strdup(page.next_after);
        } else {
            assert_null(page.next_after);
        }
        ent_store_page_free(&page);
    }
    for (size_t i = 1; i < *n_keys; i++)
        assert_true(strcmp(keys[i - 1], keys[i]) < 0);
}

static void test_store_query_by_key_and_index_with_paging(void **state)
{
    struct fx *f = *state;
    /* 25 devices: slot 0 = owner (even/odd), slot 1 = plan (i % 3), slot 2 = region (i % 5).
     * Inserted in reverse so order comes from the key, not insertion. */
    for (int i = 24; i >= 0; i--) {
        char key[16], plan[16], region[16];
        snprintf(key, sizeof(key), "dev-%02d", i);
        snprintf(plan, sizeof(plan), "plan-%d", i % 3);
        snprintf(region, sizeof(region), "region-%d", i % 5);
        struct ent_store_doc d = mkdoc(key, key, i % 2 == 0 ? "imsi-A" : "imsi-B", plan, region);
        assert_int_equal(ent_store_insert(f->s, ENT_COLL_DEVICES, &d), ENT_OK);
    }
    /* Same index values in another collection must not leak into device queries. */
    struct ent_store_doc other = mkdoc("dev-00x", "x", "imsi-A", "plan-0", "region-0");
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_ESIM_PROFILES, &other), ENT_OK);

    char keys[32][16];
    size_t n = 0;

    /* All by key: 10 + 10 + 5. */
    query_pages(f->s, ENT_COLL_DEVICES, -1, NULL, 10, (size_t[]){10, 10, 5}, 3, keys, &n);
    assert_int_equal(n, 25);
    assert_string_equal(keys[0], "dev-00");
    assert_string_equal(keys[24], "dev-24");

    /* Exactly full last page: 25 = 5 * 5, the fifth page says no more. */
    query_pages(f->s, ENT_COLL_DEVICES, 2, NULL, 5, (size_t[]){5, 5, 5, 5, 5}, 5, keys, &n);
    assert_int_equal(n, 25);

    /* Key prefix: dev-10 .. dev-19 in 4 + 4 + 2. */
    query_pages(f->s, ENT_COLL_DEVICES, -1, "dev-1", 4, (size_t[]){4, 4, 2}, 3, keys, &n);
    assert_int_equal(n, 10);
    assert_string_equal(keys[0], "dev-10");
    assert_string_equal(keys[9], "dev-19");

    /* Slot 0: 13 even devices in 5 + 5 + 3. */
    query_pages(f->s, ENT_COLL_DEVICES, 0, "imsi-A", 5, (size_t[]){5, 5, 3}, 3, keys, &n);
    assert_int_equal(n, 13);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atoi(keys[i] + 4) % 2, 0);

    /* Slot 1: plan-0 = 0,3,...,24 (9) in 4 + 4 + 1. */
    query_pages(f->s, ENT_COLL_DEVICES, 1, "plan-0", 4, (size_t[]){4, 4, 1}, 3, keys, &n);
    assert_int_equal(n, 9);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atoi(keys[i] + 4) % 3, 0);

    /* Slot 2: region-3 = 3,8,13,18,23 in 2 + 2 + 1. */
    query_pages(f->s, ENT_COLL_DEVICES, 2, "region-3", 2, (size_t[]){2, 2, 1}, 3, keys, &n);
    assert_int_equal(n, 5);
    assert_string_equal(keys[0], "dev-03");
    assert_string_equal(keys[4], "dev-23");

    /* No match is an empty last page, not an error. */
    struct ent_store_page page = {0};
    assert_int_equal(ent_store_query(f->s, ENT_COLL_DEVICES, 0, "imsi-C", NULL, 10, &page), ENT_OK);
    assert_int_equal(page.n, 0);
    assert_null(page.next_after);
    ent_store_page_free(&page);

    assert_int_equal(ent_store_query(f->s, ENT_COLL_DEVICES, 0, "imsi-A", NULL, 0, &page),
                     ENT_EINVAL);
    assert_int_equal(
        ent_store_query(f->s, ENT_COLL_DEVICES, ENT_STORE_INDEXES, "x", NULL, 1, &page),
        ENT_EINVAL);
}

/* ---- counters ----------------------------------------------------------------------------- */

static void test_store_incr_fresh_and_repeated(void **state)
{
    struct fx *f = *state;
    int64_t v = -1;
    assert_int_equal(ent_store_counter_get(f->s, "sqn", "001010000000001", &v), ENT_ENOTFOUND);
    assert_int_equal(v, -1);
    assert_int_equal(ent_store_incr(f->s, "sqn", "001010000000001", 32, &v), ENT_OK);
    assert_int_equal(v, 32);
    assert_int_equal(ent_store_incr(f->s, "sqn", "001010000000001", 32, &v), ENT_OK);
    assert_int_equal(v, 64);
    assert_int_equal(ent_store_incr(f->s, "sqn", "001010000000001", 0, &v), ENT_OK);
    assert_int_equal(v, 64);
    assert_int_equal(ent_store_incr(f->s, "sqn", "001010000000001", -4, &v), ENT_OK);
    assert_int_equal(v, 60);
    assert_int_equal(ent_store_counter_get(f->s, "sqn", "001010000000001", &v), ENT_OK);
    assert_int_equal(v, 60);

    /* Same key under another counter name, and another key, are separate. */
    assert_int_equal(ent_store_incr(f->s, "token_gen", "001010000000001", 1, &v), ENT_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ent_store_incr(f->s, "sqn", "001010000000002", 1, &v), ENT_OK);
    assert_int_equal(v, 1);

    /* Overflow is refused and leaves the counter alone. */
    assert_int_equal(ent_store_incr(f->s, "big", "k", INT64_MAX - 1, &v), ENT_OK);
    assert_int_equal(ent_store_incr(f->s, "big", "k", 2, &v), ENT_EINVAL);
    assert_int_equal(ent_store_counter_get(f->s, "big", "k", &v), ENT_OK);
    assert_true(v == INT64_MAX - 1);
    assert_int_equal(ent_store_incr(f->s, "big", "k", 1, &v), ENT_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(ent_store_incr(f->s, "small", "k", INT64_MIN, &v), ENT_OK);
    assert_int_equal(ent_store_incr(f->s, "small", "k", -1, &v), ENT_EINVAL);

    assert_int_equal(ent_store_incr(f->s, "", "k", 1, &v), ENT_EINVAL);
    assert_int_equal(ent_store_incr(f->s, "sqn", NULL, 1, &v), ENT_EINVAL);
}

static void test_store_counter_set_min(void **state)
{
    struct fx *f = *state;
    int64_t v = 0;
    assert_int_equal(ent_store_counter_set_min(f->s, "sqn", "imsi", 1000, &v), ENT_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(ent_store_counter_set_min(f->s, "sqn", "imsi", 500, &v), ENT_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(ent_store_counter_get(f->s, "sqn", "imsi", &v), ENT_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(ent_store_counter_set_min(f->s, "sqn", "imsi", 4096, &v), ENT_OK);
    assert_int_equal(v, 4096);
    assert_int_equal(ent_store_incr(f->s, "sqn", "imsi", 32, &v), ENT_OK);
    assert_int_equal(v, 4128);
}

/* ---- outbox ------------------------------------------------------------------------------- */

static void test_store_outbox_enqueue_and_coalesce(void **state)
{
    struct fx *f = *state;
    int64_t t = now_ms();
    uint64_t id1 = 0, id2 = 0, id3 = 0;
    bool co = true;
    assert_int_equal(ent_store_outbox_enqueue(f->s, "push:dev-1", "a", 1, t + 500, &id1, &co),
                     ENT_OK);
    assert_false(co);
    assert_int_equal(ent_store_outbox_enqueue(f->s, "push:dev-1", "bb", 2, t + 100, &id2, &co),
                     ENT_OK);
    assert_true(co);
    assert_int_equal(id2, id1);
    /* A later due time does not postpone the merged item. */
    assert_int_equal(ent_store_outbox_enqueue(f->s, "push:dev-1", "ccc", 3, t + 900, &id2, &co),
                     ENT_OK);
    assert_true(co);
    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "x", 1, t, &id3, &co), ENT_OK);
    assert_false(co);
    assert_int_not_equal(id3, id1);
    assert_int_equal(ent_store_outbox_enqueue(f->s, "push:dev-2", "y", 1, t, NULL, NULL), ENT_OK);

    uint64_t pending = 0, dead = 9;
    int64_t age = -1;
    assert_int_equal(ent_store_outbox_stats(f->s, t, &pending, &dead, &age), ENT_OK);
    assert_int_equal(pending, 3);
    assert_int_equal(dead, 0);

    struct ent_store_outbox_item *items = NULL;
    size_t n = 0;
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 100, 1000, 10, &items, &n), ENT_OK);
    assert_int_equal(n, 3);
    /* Oldest due first; the merged item has the newest payload and the earliest due. */
    assert_int_equal(items[2].id, id1);
    assert_int_equal(items[2].due_ms, t + 100);
    assert_int_equal(items[2].len, 3);
    assert_memory_equal(items[2].payload, "ccc", 3);
    assert_string_equal(items[2].coalesce_key, "push:dev-1");
    assert_int_equal(items[0].id, id3);
    assert_null(items[0].coalesce_key);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(items[i].attempts, 1);
        assert_true(items[i].created_ms > 0);
    }

    /* A leased item is not coalesced into: the new event gets its own item. */
    uint64_t id4 = 0;
    assert_int_equal(ent_store_outbox_enqueue(f->s, "push:dev-1", "d", 1, t, &id4, &co), ENT_OK);
    assert_false(co);
    assert_int_not_equal(id4, id1);
    ent_store_outbox_items_free(items, n);

    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "", 0, t, NULL, NULL), ENT_EINVAL);
}

static void test_store_outbox_lease_expiry_reclaim_and_stale_ack(void **state)
{
    struct fx *f = *state;
    int64_t t = now_ms();
    uint64_t a = 0, b = 0, later = 0;
    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "A", 1, t, &a, NULL), ENT_OK);
    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "B", 1, t + 1, &b, NULL), ENT_OK);
    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "L", 1, t + 60000, &later, NULL), ENT_OK);

    struct ent_store_outbox_item *w1 = NULL, *w2 = NULL, *w3 = NULL;
    size_t n1 = 0, n2 = 9, n3 = 0;
    /* max bounds the claim. */
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 10, 1000, 1, &w1, &n1), ENT_OK);
    assert_int_equal(n1, 1);
    assert_int_equal(w1[0].id, a);
    ent_store_outbox_items_free(w1, n1);
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 10, 1000, 10, &w1, &n1), ENT_OK);
    assert_int_equal(n1, 1);
    assert_int_equal(w1[0].id, b);
    ent_store_outbox_items_free(w1, n1);
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 10, 1000, 1, &w1, &n1), ENT_OK);
    ent_store_outbox_items_free(w1, n1);
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 10, 1000, 10, &w1, &n1), ENT_OK);
    assert_int_equal(n1, 0);
    assert_null(w1);

    /* Re-claim both to learn w1's tokens (leases from t+10 run to t+1010). */
    assert_int_equal(ent_store_outbox_claim(f->s, "w1", t + 1010, 1000, 10, &w1, &n1), ENT_OK);
    assert_int_equal(n1, 2);
    assert_int_equal(w1[0].attempts, 2);

    /* While w1's lease runs nobody else gets the items. */
    assert_int_equal(ent_store_outbox_claim(f->s, "w2", t + 1500, 1000, 10, &w2, &n2), ENT_OK);
    assert_int_equal(n2, 0);

    /* After it ends w2 takes them over with fresh tokens. */
    assert_int_equal(ent_store_outbox_claim(f->s, "w2", t + 2010, 1000, 10, &w2, &n2), ENT_OK);
    assert_int_equal(n2, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(w2[i].id, w1[i].id);
        assert_int_not_equal(w2[i].lease_token, w1[i].lease_token);
        assert_int_equal(w2[i].attempts, 3);
    }

    /* w1 is late: its ack and retry are refused and change nothing. */
    bool dead = true;
    assert_int_equal(ent_store_outbox_ack(f->s, w1[0].id, w1[0].lease_token), ENT_ECONFLICT);
    assert_int_equal(ent_store_outbox_retry(f->s, w1[1].id, w1[1].lease_token, t, 10, &dead),
                     ENT_ECONFLICT);
    assert_true(dead);

    /* w2 acks; the item is gone. */
    assert_int_equal(ent_store_outbox_ack(f->s, w2[0].id, w2[0].lease_token), ENT_OK);
    assert_int_equal(ent_store_outbox_ack(f->s, w2[0].id, w2[0].lease_token), ENT_ENOTFOUND);

    assert_int_equal(ent_store_outbox_ack(f->s, w2[1].id, w2[1].lease_token), ENT_OK);

    uint64_t pending = 0, dead_n = 0;
    assert_int_equal(ent_store_outbox_stats(f->s, t, &pending, &dead_n, NULL), ENT_OK);
    assert_int_equal(pending, 1);
    assert_int_equal(ent_store_outbox_claim(f->s, "w3", t + 60000, 1000, 10, &w3, &n3), ENT_OK);
    assert_int_equal(n3, 1);
    assert_int_equal(w3[0].id, later);
    assert_int_equal(w3[0].lease_token, 1);
    ent_store_outbox_items_free(w1, n1);
    ent_store_outbox_items_free(w2, n2);
    ent_store_outbox_items_free(w3, n3);
}

static void test_store_outbox_retry_dead_letter_and_stats(void **state)
{
    struct fx *f = *state;
    int64_t t = now_ms() - 5000;
    uint64_t id = 0;
    assert_int_equal(ent_store_outbox_enqueue(f->s, "sms:1", "hello", 5, t, &id, NULL), ENT_OK);

    uint64_t pending = 0, dead_n = 0;
    int64_t age = 0;
    /* created_ms is the wall clock at enqueue, about t + 5000. */
    assert_int_equal(ent_store_outbox_stats(f->s, t + 12000, &pending, &dead_n, &age), ENT_OK);
    assert_int_equal(pending, 1);
    assert_int_equal(dead_n, 0);
    assert_true(age > 0 && age <= 7000);

    struct ent_store_outbox_item *it = NULL;
    size_t n = 0;
    bool dead = true;
    const uint32_t max_attempts = 3;
    for (uint32_t attempt = 1; attempt <= max_attempts; attempt++) {
        int64_t now = t + attempt * 10000;
        assert_int_equal(ent_store_outbox_claim(f->s, "w", now, 1000, 10, &it, &n), ENT_OK);
        assert_int_equal(n, 1);
        assert_int_equal(it[0].attempts, attempt);
        /* Retrying releases the lease at once and sets the next due time. */
        assert_int_equal(
            ent_store_outbox_retry(f->s, id, it[0].lease_token, now + 5000, max_attempts, &dead),
            ENT_OK);
        assert_int_equal(dead, attempt == max_attempts);
        /* The same token cannot retry or ack twice. */
        assert_int_equal(ent_store_outbox_ack(f->s, id, it[0].lease_token), ENT_ECONFLICT);
        ent_store_outbox_items_free(it, n);
        if (attempt < max_attempts) {
            /* Not due yet. */
            assert_int_equal(ent_store_outbox_claim(f->s, "w", now + 4999, 1000, 10, &it, &n),
                             ENT_OK);
            assert_int_equal(n, 0);
            /* Released and pending again: a new event coalesces into it. */
            bool co = false;
            uint64_t id2 = 0;
            assert_int_equal(
                ent_store_outbox_enqueue(f->s, "sms:1", "hello", 5, now + 5000, &id2, &co), ENT_OK);
            assert_true(co);
            assert_int_equal(id2, id);
        }
    }
    /* Dead letters are never claimed again and not coalesced into. */
    assert_int_equal(ent_store_outbox_claim(f->s, "w", t + 1000000, 1000, 10, &it, &n), ENT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ent_store_outbox_stats(f->s, t + 5000, &pending, &dead_n, &age), ENT_OK);
    assert_int_equal(pending, 0);
    assert_int_equal(dead_n, 1);
    assert_int_equal(age, 0);
    bool co = true;
    uint64_t id3 = 0;
    assert_int_equal(ent_store_outbox_enqueue(f->s, "sms:1", "again", 5, t, &id3, &co), ENT_OK);
    assert_false(co);
    assert_int_not_equal(id3, id);
    assert_int_equal(ent_store_outbox_ack(f->s, 999999, 1), ENT_ENOTFOUND);
    assert_int_equal(ent_store_outbox_retry(f->s, 999999, 1, t, 3, &dead), ENT_ENOTFOUND);
}

/* ---- SQLite specifics: migrations and busy ----------------------------------------------- */

static void test_store_migrations_recorded_once(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("kept", "data", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_PLANS, &d), ENT_OK);
    ent_store_close(f->s);
    f->s = NULL;

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), min(version), max(version) FROM "
                                        "schema_version",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t count = sqlite3_column_int64(st, 0);
    assert_true(count >= 1);
    assert_int_equal(sqlite3_column_int64(st, 1), 1);
    assert_int_equal(sqlite3_column_int64(st, 2), count);
    sqlite3_finalize(st);
    /* Mark the records: a re-run would rewrite or duplicate them. */
    assert_int_equal(
        sqlite3_exec(db, "UPDATE schema_version SET applied_at_ms = 42", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    f->s = fx_open(f, 0);
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(f->s, ENT_COLL_PLANS, "kept", &got), ENT_OK);
    ent_store_doc_free(&got);

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), sum(applied_at_ms = 42) FROM "
                                        "schema_version",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), count);
    assert_int_equal(sqlite3_column_int64(st, 1), count);
    sqlite3_finalize(st);
    /* And the file really is in WAL mode. */
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_store_busy_writer_gives_unavail(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("readable", "data", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_PLANS, &d), ENT_OK);
    ent_store_close(f->s);
    f->s = fx_open(f, 50);

    /* A second connection takes the write lock and keeps it. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO counters VALUES ('x', 'y', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    int64_t v = 0;
    uint64_t ver = 0;
    assert_int_equal(ent_store_incr(f->s, "sqn", "imsi", 1, &v), ENT_EUNAVAIL);
    assert_int_equal(ent_store_put(f->s, ENT_COLL_PLANS, &d, &ver), ENT_EUNAVAIL);
    assert_int_equal(ent_store_outbox_enqueue(f->s, NULL, "p", 1, 0, NULL, NULL), ENT_EUNAVAIL);
    /* WAL: readers are not blocked by the writer. */
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(f->s, ENT_COLL_PLANS, "readable", &got), ENT_OK);
    ent_store_doc_free(&got);
    assert_int_equal(ent_store_ping(f->s), ENT_OK);

    /* Opening needs the write lock for the migration check: unavailable, not a crash. */
    struct ent_store *s2 = NULL;
    struct ent_store_cfg cfg = fx_cfg(f, 50);
    char err[256] = "";
    assert_int_equal(ent_store_open(&s2, &cfg, err, sizeof(err)), ENT_EUNAVAIL);
    assert_null(s2);
    assert_true(strlen(err) > 0);

    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* The failed attempts left nothing half-done. */
    assert_int_equal(ent_store_incr(f->s, "sqn", "imsi", 1, &v), ENT_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ent_store_put(f->s, ENT_COLL_PLANS, &d, &ver), ENT_OK);
    assert_int_equal(ver, 2);
}

/* ---- one store, several threads ----------------------------------------------------------- */

enum { THREAD_N = 300 };

static void *thread_incr(void *arg)
{
    struct ent_store *s = arg;
    intptr_t failures = 0;
    int64_t prev = 0;
    for (int i = 0; i < THREAD_N; i++) {
        int64_t v = 0;
        if (ent_store_incr(s, "token_gen", "shared", 1, &v) != ENT_OK || v <= prev)
            failures++;
        prev = v;
        struct ent_store_doc got = {0};
        if (ent_store_get(s, ENT_COLL_PLANS, "p", &got) != ENT_OK)
            failures++;
        ent_store_doc_free(&got);
    }
    return (void *)failures;
}

static void test_store_threads_share_one_store(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("p", "plan", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_PLANS, &d), ENT_OK);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_incr, f->s), 0);
    for (int i = 0; i < 2; i++) {
        void *failures = NULL;
        assert_int_equal(pthread_join(th[i], &failures), 0);
        assert_int_equal((intptr_t)failures, 0);
    }
    int64_t v = 0;
    assert_int_equal(ent_store_counter_get(f->s, "token_gen", "shared", &v), ENT_OK);
    assert_int_equal(v, 2 * THREAD_N);
}

/* ---- two processes, one counter ----------------------------------------------------------- */

enum { RACE_N = 2000 };

/* Child body: never returns. Opens the store, says so on ready_fd, waits for go_fd to close
 * (so both children increment at the same time rather than one after the other), then
 * increments N times. Exit 0 when all succeeded with strictly increasing results, written to
 * out_path as raw int64s. */
static void race_child(const char *db_path, const char *database, const char *out_path,
                       int ready_fd, int go_fd)
{
    struct ent_store_cfg cfg = {.backend = g_backend,
                                .path = db_path,
                                .busy_timeout_ms = 60000,
                                .uri = g_mongo_uri,
                                .database = database};
    struct ent_store *s = NULL;
    char err[256] = "";
    if (ent_store_open(&s, &cfg, err, sizeof(err)) != ENT_OK) {
        fprintf(stderr, "child open: %s\n", err);
        _exit(2);
    }
    FILE *out = fopen(out_path, "wb");
    if (out == NULL)
        _exit(3);
    char b = 'r';
    if (write(ready_fd, &b, 1) != 1)
        _exit(8);
    /* Closed at once, so a sibling that dies before writing shows up in the parent as EOF
     * instead of a wait for ever. */
    close(ready_fd);
    while (read(go_fd, &b, 1) < 0 && errno == EINTR) {
    }
    int64_t prev = 0;
    for (int i = 0; i < RACE_N; i++) {
        int64_t v = 0;
        ent_err rc = ent_store_incr(s, "sqn", "001010000000001", 1, &v);
        if (rc != ENT_OK) {
            fprintf(stderr, "child incr: %s\n", ent_err_name(rc));
            _exit(4);
        }
        if (v <= prev)
            _exit(5);
        prev = v;
        if (fwrite(&v, sizeof(v), 1, out) != 1)
            _exit(6);
    }
    if (fclose(out) != 0)
        _exit(7);
    ent_store_close(s);
    _exit(0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- one store, many threads at once (group commit on sqlite) ---------------------------- */

/* More threads than one sqlite batch holds (64), so some ops wait for a second batch. */
enum { GC_THREADS = 72, GC_INCR_EACH = 10, GC_ROUND_THREADS = 8, GC_ROUNDS = 30 };

struct gc_run {
    struct ent_store *s;
    pthread_barrier_t *go;
    int id;
    intptr_t failures;
    /* test_store_threads_increments_all_distinct */
    int64_t values[GC_INCR_EACH];
    /* test_store_threads_conflicting_updates_one_winner_per_version */
    ent_err rc[GC_ROUNDS];
    uint64_t version[GC_ROUNDS];
    /* test_store_threads_failing_ops_stay_alone */
    int64_t ok_values[GC_ROUNDS];
    int n_ok, n_inserted;
};

static void gc_start(struct ent_store *s, int n, void *(*body)(void *), struct gc_run *runs,
                     pthread_t *th, pthread_barrier_t *go)
{
    assert_int_equal(pthread_barrier_init(go, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        runs[i] = (struct gc_run){.s = s, .go = go, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, body, &runs[i]), 0);
    }
}

static void gc_join(int n, pthread_t *th, pthread_barrier_t *go)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(go);
}

static void *gc_incr_body(void *arg)
{
    struct gc_run *r = arg;
    char own[32];
    snprintf(own, sizeof(own), "own-%d", r->id);
    pthread_barrier_wait(r->go);
    for (int i = 0; i < GC_INCR_EACH; i++) {
        int64_t v = 0, w = 0;
        if (ent_store_incr(r->s, "sqn", "shared", 1, &v) != ENT_OK)
            r->failures++;
        r->values[i] = v;
        /* Each thread's own counter, in the same batches as everyone else's. */
        if (ent_store_incr(r->s, "sqn", own, 2, &w) != ENT_OK || w != 2 * (i + 1))
            r->failures++;
    }
    return NULL;
}

static void test_store_threads_increments_all_distinct(void **state)
{
    struct fx *f = *state;
    static struct gc_run runs[GC_THREADS];
    static pthread_t th[GC_THREADS];
    static int64_t all[GC_THREADS * GC_INCR_EACH];
    pthread_barrier_t go;
    gc_start(f->s, GC_THREADS, gc_incr_body, runs, th, &go);
    gc_join(GC_THREADS, th, &go);
    for (int i = 0; i < GC_THREADS; i++) {
        assert_int_equal(runs[i].failures, 0);
        for (int k = 0; k < GC_INCR_EACH; k++) {
            /* Each caller sees its own increments in order. */
            if (k > 0)
                assert_true(runs[i].values[k] > runs[i].values[k - 1]);
            all[i * GC_INCR_EACH + k] = runs[i].values[k];
        }
    }
    /* Every value 1..N handed out exactly once. */
    qsort(all, ENT_ARRAY_LEN(all), sizeof(*all), cmp_i64);
    for (size_t i = 0; i < ENT_ARRAY_LEN(all); i++)
        assert_int_equal(all[i], (int64_t)i + 1);
    int64_t v = 0;
    assert_int_equal(ent_store_counter_get(f->s, "sqn", "shared", &v), ENT_OK);
    assert_int_equal(v, GC_THREADS * GC_INCR_EACH);
    assert_int_equal(ent_store_counter_get(f->s, "sqn", "own-71", &v), ENT_OK);
    assert_int_equal(v, 2 * GC_INCR_EACH);
}

static void *gc_update_body(void *arg)
{
    struct gc_run *r = arg;
    char data[32];
    for (int round = 0; round < GC_ROUNDS; round++) {
        snprintf(data, sizeof(data), "t%d r%d", r->id, round);
        struct ent_store_doc d = mkdoc("contended", data, NULL, NULL, NULL);
        /* Everyone finished the last round: all race for the same version now. */
        pthread_barrier_wait(r->go);
        r->version[round] = 0;
        r->rc[round] =
            ent_store_update(r->s, ENT_COLL_EXCHANGES, &d, (uint64_t)round + 1, &r->version[round]);
    }
    return NULL;
}

static void test_store_threads_conflicting_updates_one_winner_per_version(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("contended", "start", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_EXCHANGES, &d), ENT_OK);
    struct gc_run runs[GC_ROUND_THREADS];
    pthread_t th[GC_ROUND_THREADS];
    pthread_barrier_t go;
    gc_start(f->s, GC_ROUND_THREADS, gc_update_body, runs, th, &go);
    gc_join(GC_ROUND_THREADS, th, &go);
    int last_winner = -1;
    for (int round = 0; round < GC_ROUNDS; round++) {
        int winners = 0;
        for (int i = 0; i < GC_ROUND_THREADS; i++) {
            if (runs[i].rc[round] == ENT_OK) {
                winners++;
                last_winner = i;
                assert_int_equal(runs[i].version[round], round + 2);
            } else {
                assert_int_equal(runs[i].rc[round], ENT_ECONFLICT);
                /* Outputs are written only on success. */
                assert_int_equal(runs[i].version[round], 0);
            }
        }
        assert_int_equal(winners, 1);
    }
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(f->s, ENT_COLL_EXCHANGES, "contended", &got), ENT_OK);
    assert_int_equal(got.version, GC_ROUNDS + 1);
    char want[32];
    snprintf(want, sizeof(want), "t%d r%d", last_winner, GC_ROUNDS - 1);
    assert_doc_data(&got, want);
    ent_store_doc_free(&got);
}

/* Each round, threads take different roles: some ops succeed, others fail with their own
 * error, all at the same moment (so on sqlite they share batches). */
static void *gc_mixed_body(void *arg)
{
    struct gc_run *r = arg;
    for (int round = 0; round < GC_ROUNDS; round++) {
        char key[48];
        int64_t v = 0;
        uint64_t ver = 0;
        struct ent_store_doc d = mkdoc("dup", "again", NULL, NULL, NULL);
        struct ent_store_doc got = {0};
        pthread_barrier_wait(r->go);
        switch ((r->id + round) % 5) {
        case 0: /* succeeds */
            if (ent_store_incr(r->s, "ok", "k", 1, &v) != ENT_OK)
                r->failures++;
            else
                r->ok_values[r->n_ok++] = v;
            break;
        case 1: /* EEXIST */
            if (ent_store_insert(r->s, ENT_COLL_DEVICES, &d) != ENT_EEXIST)
                r->failures++;
            break;
        case 2: /* overflow */
            v = 42;
            if (ent_store_incr(r->s, "big", "k", 2, &v) != ENT_EINVAL || v != 42)
                r->failures++;
            break;
        case 3: /* succeeds, and the caller reads its own write at once */
            snprintf(key, sizeof(key), "u-%02d-%02d", r->id, round);
            d = mkdoc(key, key, NULL, NULL, NULL);
            if (ent_store_insert(r->s, ENT_COLL_DEVICES, &d) != ENT_OK)
                r->failures++;
            else
                r->n_inserted++;
            if (ent_store_get(r->s, ENT_COLL_DEVICES, key, &got) != ENT_OK || got.version != 1)
                r->failures++;
            ent_store_doc_free(&got);
            break;
        default: /* ECONFLICT, ENOTFOUND */
            if (ent_store_update(r->s, ENT_COLL_DEVICES, &d, 7, &ver) != ENT_ECONFLICT || ver != 0)
                r->failures++;
            if (ent_store_delete(r->s, ENT_COLL_DEVICES, "missing", 0) != ENT_ENOTFOUND)
                r->failures++;
            break;
        }
    }
    return NULL;
}

static void test_store_threads_failing_ops_stay_alone(void **state)
{
    struct fx *f = *state;
    struct ent_store_doc d = mkdoc("dup", "first", NULL, NULL, NULL);
    assert_int_equal(ent_store_insert(f->s, ENT_COLL_DEVICES, &d), ENT_OK);
    int64_t v = 0;
    assert_int_equal(ent_store_incr(f->s, "big", "k", INT64_MAX - 1, &v), ENT_OK);
    struct gc_run runs[GC_ROUND_THREADS];
    pthread_t th[GC_ROUND_THREADS];
    pthread_barrier_t go;
    gc_start(f->s, GC_ROUND_THREADS, gc_mixed_body, runs, th, &go);
    gc_join(GC_ROUND_THREADS, th, &go);

    static int64_t oks[GC_ROUND_THREADS * GC_ROUNDS];
    int n_ok = 0, n_inserted = 0;
    for (int i = 0; i < GC_ROUND_THREADS; i++) {
        assert_int_equal(runs[i].failures, 0);
        for (int k = 0; k < runs[i].n_ok; k++)
            oks[n_ok++] = runs[i].ok_values[k];
        n_inserted += runs[i].n_inserted;
    }
    /* 8 threads x 30 rounds, roles cycling over 5: 48 of each. */
    assert_int_equal(n_ok, GC_ROUND_THREADS * GC_ROUNDS / 5);
    assert_int_equal(n_inserted, GC_ROUND_THREADS * GC_ROUNDS / 5);
    /* The successes all took effect, each exactly once... */
    qsort(oks, (size_t)n_ok, sizeof(*oks), cmp_i64);
    for (int i = 0; i < n_ok; i++)
        assert_int_equal(oks[i], i + 1);
    assert_int_equal(ent_store_counter_get(f->s, "ok", "k", &v), ENT_OK);
    assert_int_equal(v, n_ok);
    struct ent_store_page page = {0};
    assert_int_equal(ent_store_query(f->s, ENT_COLL_DEVICES, -1, "u-", NULL, 1000, &page), ENT_OK);
    assert_int_equal(page.n, n_inserted);
    ent_store_page_free(&page);
    /* ... and the failures left no trace. */
    assert_int_equal(ent_store_counter_get(f->s, "big", "k", &v), ENT_OK);
    assert_true(v == INT64_MAX - 1);
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(f->s, ENT_COLL_DEVICES, "dup", &got), ENT_OK);
    assert_int_equal(got.version, 1);
    assert_doc_data(&got, "first");
    ent_store_doc_free(&got);
}

static void *gc_locked_body(void *arg)
{
    struct gc_run *r = arg;
    int64_t v = 0;
    pthread_barrier_wait(r->go);
    /* The whole batch waits for the lock and fails together. */
    if (ent_store_incr(r->s, "sqn", "locked", 1, &v) != ENT_EUNAVAIL)
        r->failures++;
    pthread_barrier_wait(r->go);
    /* The main thread has released the lock. */
    pthread_barrier_wait(r->go);
    if (ent_store_incr(r->s, "sqn", "locked", 1, &v) != ENT_OK)
        r->failures++;
    r->values[0] = v;
    return NULL;
}

static void test_store_threads_batch_fails_together_when_locked(void **state)
{
    struct fx *f = *state;
    ent_store_close(f->s);
    f->s = fx_open(f, 50);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    struct gc_run runs[GC_ROUND_THREADS];
    pthread_t th[GC_ROUND_THREADS];
    pthread_barrier_t go;
    /* The main thread joins the barrier as one more party. */
    assert_int_equal(pthread_barrier_init(&go, NULL, GC_ROUND_THREADS + 1), 0);
    for (int i = 0; i < GC_ROUND_THREADS; i++) {
        runs[i] = (struct gc_run){.s = f->s, .go = &go, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, gc_locked_body, &runs[i]), 0);
    }
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&go);
    /* Reads are not blocked meanwhile. */
    assert_int_equal(ent_store_ping(f->s), ENT_OK);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    pthread_barrier_wait(&go);
    for (int i = 0; i < GC_ROUND_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&go);

    int64_t got[GC_ROUND_THREADS];
    for (int i = 0; i < GC_ROUND_THREADS; i++) {
        assert_int_equal(runs[i].failures, 0);
        got[i] = runs[i].values[0];
    }
    /* The failed attempts changed nothing; the retries each count once. */
    qsort(got, GC_ROUND_THREADS, sizeof(*got), cmp_i64);
    for (int i = 0; i < GC_ROUND_THREADS; i++)
        assert_int_equal(got[i], i + 1);
}

static void test_store_incr_two_processes_no_lost_update(void **state)
{
    struct fx *f = *state;
    /* No connection may be open across fork (SQLite keeps per-process lock state). */
    ent_store_close(f->s);
    f->s = NULL;

    /* A fresh file, so the two children also race to create and migrate it. */
    char db_path[PATH_MAX + 16];
    char database[80];
    snprintf(db_path, sizeof(db_path), "%s/race.db", f->dir);
    snprintf(database, sizeof(database), "%s_race", f->database);
    char out_path[2][PATH_MAX + 16];
    pid_t pid[2];
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    for (int c = 0; c < 2; c++) {
        snprintf(out_path[c], sizeof(out_path[c]), "%s/child%d.out", f->dir, c);
        pid[c] = fork();
        assert_true(pid[c] >= 0);
        if (pid[c] == 0) {
            close(ready[0]);
            close(go[1]);
            race_child(db_path, database, out_path[c], ready[1], go[0]);
        }
    }
    close(ready[1]);
    close(go[0]);
    /* Both children have opened (and migrated) the file: start them together. A child that
     * died early shows up as EOF here and as its exit status below. */
    char b[2];
    size_t got = 0;
    while (got < 2) {
        ssize_t r = read(ready[0], b + got, 2 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(ready[0]);
    close(go[1]);
    for (int c = 0; c < 2; c++) {
        int status = 0;
        assert_int_equal(waitpid(pid[c], &status, 0), pid[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }

    /* Static so a failed assertion (which longjmps out) leaks nothing. */
    static int64_t all[2 * RACE_N];
    for (int c = 0; c < 2; c++) {
        FILE *in = fopen(out_path[c], "rb");
        assert_non_null(in);
        assert_int_equal(fread(all + c * RACE_N, sizeof(*all), RACE_N, in), RACE_N);
        int64_t extra;
        assert_int_equal(fread(&extra, sizeof(extra), 1, in), 0);
        fclose(in);
    }
    /* Every value 1..2N handed out exactly once. */
    qsort(all, 2 * RACE_N, sizeof(*all), cmp_i64);
    for (int i = 0; i < 2 * RACE_N; i++)
        assert_int_equal(all[i], i + 1);

    struct ent_store_cfg cfg = {
        .backend = g_backend, .path = db_path, .uri = g_mongo_uri, .database = database};
    struct ent_store *s = NULL;
    assert_int_equal(ent_store_open(&s, &cfg, NULL, 0), ENT_OK);
    int64_t v = 0;
    assert_int_equal(ent_store_counter_get(s, "sqn", "001010000000001", &v), ENT_OK);
    assert_int_equal(v, 2 * RACE_N);
    ent_store_close(s);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            g_backend = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--backend sqlite|mongo]\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(g_backend, "mongo") == 0) {
        g_mongo_uri = getenv("MONGO_URI");
        if (g_mongo_uri == NULL || g_mongo_uri[0] == '\0') {
            printf("skipped: --backend mongo needs MONGO_URI\n");
            return 77;
        }
        struct ent_store_cfg probe = {
            .backend = "mongo", .uri = g_mongo_uri, .database = "entitle_test_probe"};
        struct ent_store *s = NULL;
        char err[256] = "";
        ent_err rc = ent_store_open(&s, &probe, err, sizeof(err));
        if (rc == ENT_EUNSUPPORTED) {
            printf("skipped: %s\n", err);
            return 77;
        }
        ent_store_close(s);
    } else if (strcmp(g_backend, "sqlite") != 0) {
        fprintf(stderr, "unknown backend %s\n", g_backend);
        return 2;
    }

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_store_open_ping_and_bad_config),
        T(test_store_doc_insert_get_put_update_versions),
        T(test_store_doc_delete_with_and_without_version),
        T(test_store_doc_expiry),
        T(test_store_query_by_key_and_index_with_paging),
        T(test_store_incr_fresh_and_repeated),
        T(test_store_counter_set_min),
        T(test_store_outbox_enqueue_and_coalesce),
        T(test_store_outbox_lease_expiry_reclaim_and_stale_ack),
        T(test_store_outbox_retry_dead_letter_and_stats),
        T(test_store_threads_share_one_store),
        T(test_store_incr_two_processes_no_lost_update),
        T(test_store_threads_increments_all_distinct),
        T(test_store_threads_conflicting_updates_one_winner_per_version),
        T(test_store_threads_failing_ops_stay_alone),
    };
    /* Cases about SQLite itself (migrations table, a locked database) are registered only
     * for that backend, rather than run and skipped (a cmocka skip would count as passed). */
    const struct CMUnitTest sqlite_tests[] = {
        T(test_store_migrations_recorded_once),
        T(test_store_busy_writer_gives_unavail),
        T(test_store_threads_batch_fails_together_when_locked),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (is_sqlite())
        failed += cmocka_run_group_tests(sqlite_tests, NULL, NULL);
    return failed;
}
