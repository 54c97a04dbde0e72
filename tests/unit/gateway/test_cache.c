/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/cache.h and ratelimit.h: LRU and byte bounds, TTL, per-subscriber invalidation,
 * flush, the epoch guard against fills that raced an event, and token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "ratelimit.h"

static void test_cache_lru_bound_and_hits(void **state)
{
    (void)state;
    struct gw_cache c;
    assert_int_equal(gw_cache_init(&c, "t", 3, 1 << 20, 60000, true), ENT_OK);
    char key[32];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(
            gw_cache_put(&c, key, "001010000000001", "doc", 3, i, 0, 0, gw_cache_epoch(&c)));
    }
    assert_int_equal(gw_cache_size(&c), 3);
    struct ent_buf b;
    ent_buf_init(&b, 64);
    int64_t a = -1;
    assert_false(gw_cache_get(&c, "k0", "001010000000001", &b, &a, NULL)); /* evicted */
    assert_true(gw_cache_get(&c, "k3", "001010000000001", &b, &a, NULL));
    assert_int_equal(a, 3);
    assert_string_equal(b.data, "doc");
    ent_buf_free(&b);
    gw_cache_fini(&c);
}

static void test_cache_epoch_guard_and_invalidation(void **state)
{
    (void)state;
    struct gw_cache c;
    assert_int_equal(gw_cache_init(&c, "t", 100, 1 << 20, 60000, true), ENT_OK);
    uint64_t e = gw_cache_epoch(&c);
    assert_true(gw_cache_put(&c, "a|1", "001", "x", 1, 0, 0, 0, e));
    assert_true(gw_cache_put(&c, "a|2", "001", "y", 1, 0, 0, 0, e));
    assert_true(gw_cache_put(&c, "b|1", "002", "z", 1, 0, 0, 0, e));
    /* a fill that started before an event must not land */
    uint64_t before = gw_cache_epoch(&c);
    assert_int_equal(gw_cache_drop_subject(&c, "001"), 2);
    assert_false(gw_cache_put(&c, "a|1", "001", "stale", 5, 0, 0, 0, before));
    assert_false(gw_cache_get(&c, "a|1", "001", NULL, NULL, NULL));
    assert_true(gw_cache_get(&c, "b|1", "002", NULL, NULL, NULL));
    assert_int_equal(gw_cache_flush(&c), 1);
    assert_int_equal(gw_cache_size(&c), 0);
    /* bypass: entries are not served and nothing is cached; leaving it flushes, and a fill
     * that started during the bypass does not land */
    assert_true(gw_cache_put(&c, "b|1", "002", "z", 1, 0, 0, 0, gw_cache_epoch(&c)));
    gw_cache_set_bypass(&c, true);
    assert_false(gw_cache_get(&c, "b|1", "002", NULL, NULL, NULL));
    assert_false(gw_cache_put(&c, "b|2", "002", "z", 1, 0, 0, 0, gw_cache_epoch(&c)));
    uint64_t during = gw_cache_epoch(&c);
    gw_cache_set_bypass(&c, false);
    assert_int_equal(gw_cache_size(&c), 0);
    assert_false(gw_cache_get(&c, "b|1", "002", NULL, NULL, NULL));
    assert_false(gw_cache_put(&c, "b|2", "002", "z", 1, 0, 0, 0, during));
    assert_true(gw_cache_put(&c, "b|1", "002", "z", 1, 0, 0, 0, gw_cache_epoch(&c)));
    assert_true(gw_cache_get(&c, "b|1", "002", NULL, NULL, NULL));
    gw_cache_fini(&c);
    /* the token cache groups by key, and still drops per subject */
    assert_int_equal(gw_cache_init(&c, "tok", 100, 1 << 20, 60000, false), ENT_OK);
    assert_true(gw_cache_put(&c, "tokA", "001", "001", 3, 0, 0, 0, gw_cache_epoch(&c)));
    assert_true(gw_cache_put(&c, "tokB", "002", "002", 3, 0, 0, 0, gw_cache_epoch(&c)));
    assert_int_equal(gw_cache_drop_subject(&c, "001"), 1);
    assert_false(gw_cache_get(&c, "tokA", NULL, NULL, NULL, NULL));
    assert_true(gw_cache_get(&c, "tokB", NULL, NULL, NULL, NULL));
    gw_cache_fini(&c);
}

static void test_cache_ttl_and_bytes(void **state)
{
    (void)state;
    struct gw_cache c;
    assert_int_equal(gw_cache_init(&c, "t", 100, 1 << 20, 30, true), ENT_OK);
    assert_true(gw_cache_put(&c, "k", "1", "v", 1, 0, 0, 0, gw_cache_epoch(&c)));
    usleep(60 * 1000);
    assert_false(gw_cache_get(&c, "k", "1", NULL, NULL, NULL));
    gw_cache_fini(&c);
    assert_int_equal(gw_cache_init(&c, "t", 100, 400, 60000, true), ENT_OK);
    char big[600];
    memset(big, 'x', sizeof(big));
    assert_true(gw_cache_put(&c, "k1", "1", big, 200, 0, 0, 0, gw_cache_epoch(&c)));
    assert_true(gw_cache_put(&c, "k2", "1", big, 200, 0, 0, 0, gw_cache_epoch(&c)));
    assert_int_equal(gw_cache_size(&c), 1); /* byte bound evicted k1 */
    assert_false(gw_cache_put(&c, "k3", "1", big, 600, 0, 0, 0, gw_cache_epoch(&c))); /* too big */
    assert_true(gw_cache_get(&c, "k2", "1", NULL, NULL, NULL));
    gw_cache_fini(&c);
    /* disabled cache */
    assert_int_equal(gw_cache_init(&c, "t", 0, 400, 60000, true), ENT_OK);
    assert_false(gw_cache_put(&c, "k", "1", "v", 1, 0, 0, 0, gw_cache_epoch(&c)));
    gw_cache_fini(&c);
}

static void test_ratelimit_bucket(void **state)
{
    (void)state;
    struct gw_ratelimit rl;
    assert_int_equal(gw_ratelimit_init(&rl, 64, 1.0, 3.0), ENT_OK);
    unsigned retry = 0;
    for (int i = 0; i < 3; i++)
        assert_true(gw_ratelimit_take(&rl, "10.0.0.1", &retry));
    assert_false(gw_ratelimit_take(&rl, "10.0.0.1", &retry));
    assert_true(retry >= 1);
    assert_true(gw_ratelimit_take(&rl, "10.0.0.2", &retry)); /* another client */
    gw_ratelimit_fini(&rl);
    assert_int_equal(gw_ratelimit_init(&rl, 64, 0, 1), ENT_OK); /* disabled */
    for (int i = 0; i < 100; i++)
        assert_true(gw_ratelimit_take(&rl, "x", NULL));
    gw_ratelimit_fini(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_lru_bound_and_hits),
        cmocka_unit_test(test_cache_epoch_guard_and_invalidation),
        cmocka_unit_test(test_cache_ttl_and_bytes),
        cmocka_unit_test(test_ratelimit_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
