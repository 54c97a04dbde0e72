/* SPDX-License-Identifier: Apache-2.0 */
/* common/include/ent/seal.h (lives here because authd is its first user): keyring parsing,
 * round trips, tampering of every byte, purpose separation, rotation (new key seals, old
 * key still opens), unknown key ids, and the keyring's reused cipher contexts (keys and
 * directions interleaved, a failed open in between, several threads at once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "ent/seal.h"

#define K1 "0102030405060708091011121314151617181920212223242526272829303132"
#define K2 "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0"

static struct ent_keyring *ring(const char *text)
{
    struct ent_keyring *kr = NULL;
    char err[200];
    assert_int_equal(ent_keyring_parse(&kr, text, strlen(text), err, sizeof(err)), ENT_OK);
    return kr;
}

static void test_seal_keyring_parse(void **state)
{
    struct ent_keyring *kr = NULL;
    char err[200];
    (void)state;

    kr = ring("# comment\n\nnew " K1 "\nold " K2 "\n");
    assert_int_equal(ent_keyring_count(kr), 2);
    assert_string_equal(ent_keyring_current_id(kr), "new");
    ent_keyring_free(kr);
    kr = ring(K2 "\n");
    assert_int_equal(strlen(ent_keyring_current_id(kr)), 9);
    assert_int_equal(ent_keyring_current_id(kr)[0], 'k');
    ent_keyring_free(kr);

    static const char *bad[] = {
        "",
        "# only\n",
        "a " K1 " extra\n",
        "a 0102\n",
        "a " K1 "\na " K2 "\n",
        "b@d " K1 "\n",
        "a zz02030405060708091011121314151617181920212223242526272829303132\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kr = NULL;
        assert_int_equal(ent_keyring_parse(&kr, bad[i], strlen(bad[i]), err, sizeof(err)),
                         ENT_ECONFIG);
        assert_null(kr);
        assert_null(strstr(err, "0102030405")); /* never echo key material */
    }
    assert_int_equal(ent_keyring_load(&kr, "/nonexistent/keyring", err, sizeof(err)), ENT_ECONFIG);
}

static void test_seal_round_trip_and_tamper(void **state)
{
    struct ent_keyring *kr = ring("s1 " K1 "\n");
    const uint8_t msg[] = "exchange ticket body";
    uint8_t blob[256], out[256];
    size_t bl = 0, ol = 0;
    const char *kid = NULL;
    (void)state;

    assert_int_equal(ent_seal(kr, "p.v1", msg, sizeof(msg), blob, sizeof(blob), &bl), ENT_OK);
    assert_int_equal(bl, ent_seal_len(kr, sizeof(msg)));
    assert_null(memmem(blob, bl, msg, sizeof(msg) - 1));
    assert_int_equal(ent_unseal(kr, "p.v1", blob, bl, out, sizeof(out), &ol, &kid), ENT_OK);
    assert_int_equal(ol, sizeof(msg));
    assert_memory_equal(out, msg, ol);
    assert_string_equal(kid, "s1");
    for (size_t i = 0; i < bl; i++) {
        blob[i] ^= 0x01;
        ent_err rc = ent_unseal(kr, "p.v1", blob, bl, out, sizeof(out), &ol, NULL);
        assert_true(rc == ENT_EAUTH || rc == ENT_EINVAL);
        blob[i] ^= 0x01;
    }
    assert_int_equal(ent_unseal(kr, "p.v2", blob, bl, out, sizeof(out), &ol, NULL), ENT_EAUTH);
    assert_int_equal(ent_unseal(kr, "p.v1", blob, bl - 1, out, sizeof(out), &ol, NULL), ENT_EAUTH);
    assert_int_equal(ent_unseal(kr, "p.v1", blob, 3, out, sizeof(out), &ol, NULL), ENT_EINVAL);
    assert_int_equal(ent_seal(kr, "p.v1", msg, sizeof(msg), blob, 10, &bl), ENT_ETOOBIG);
    /* two seals of the same text differ (random nonce) */
    uint8_t b2[256];
    size_t l2 = 0;
    assert_int_equal(ent_seal(kr, "p.v1", msg, sizeof(msg), blob, sizeof(blob), &bl), ENT_OK);
    assert_int_equal(ent_seal(kr, "p.v1", msg, sizeof(msg), b2, sizeof(b2), &l2), ENT_OK);
    assert_memory_not_equal(blob, b2, bl);
    ent_keyring_free(kr);
}

static void test_seal_rotation(void **state)
{
    struct ent_keyring *old = ring("s1 " K1 "\n");
    struct ent_keyring *both = ring("s2 " K2 "\ns1 " K1 "\n");
    struct ent_keyring *only_new = ring("s2 " K2 "\n");
    uint8_t blob[128], out[128];
    size_t bl = 0, ol = 0;
    const char *kid = NULL;
    (void)state;

    assert_int_equal(ent_seal(old, "t", (const uint8_t *)"x", 1, blob, sizeof(blob), &bl), ENT_OK);
    assert_int_equal(ent_unseal(both, "t", blob, bl, out, sizeof(out), &ol, &kid), ENT_OK);
    assert_string_equal(kid, "s1");
    assert_int_equal(ent_unseal(only_new, "t", blob, bl, out, sizeof(out), &ol, NULL), ENT_EAUTH);
    assert_int_equal(ent_seal(both, "t", (const uint8_t *)"y", 1, blob, sizeof(blob), &bl), ENT_OK);
    assert_int_equal(ent_unseal(only_new, "t", blob, bl, out, sizeof(out), &ol, &kid), ENT_OK);
    assert_string_equal(kid, "s2");
    assert_int_equal(ent_unseal(old, "t", blob, bl, out, sizeof(out), &ol, NULL), ENT_EAUTH);
    ent_keyring_free(old);
    ent_keyring_free(both);
    ent_keyring_free(only_new);
}

/* Seals under the current key, opens under the older one, fails an open, in every order: each
 * blob must open with a fresh one-key ring, so no reused context kept the wrong key. */
static void test_seal_reused_contexts_follow_key(void **state)
{
    struct ent_keyring *both = ring("s2 " K2 "\ns1 " K1 "\n");
    struct ent_keyring *old = ring("s1 " K1 "\n");
    struct ent_keyring *only_new = ring("s2 " K2 "\n");
    uint8_t b1[128], b2[128], out[128];
    size_t l1 = 0, l2 = 0, ol = 0;
    (void)state;

    assert_int_equal(ent_seal(old, "t", (const uint8_t *)"one", 3, b1, sizeof(b1), &l1), ENT_OK);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(ent_unseal(both, "t", b1, l1, out, sizeof(out), &ol, NULL), ENT_OK);
        assert_memory_equal(out, "one", 3);
        assert_int_equal(ent_seal(both, "t", (const uint8_t *)"two", 3, b2, sizeof(b2), &l2),
                         ENT_OK);
        assert_int_equal(ent_unseal(only_new, "t", b2, l2, out, sizeof(out), &ol, NULL), ENT_OK);
        assert_memory_equal(out, "two", 3);
        b2[l2 - 1] ^= 0x80;
        assert_int_equal(ent_unseal(both, "t", b2, l2, out, sizeof(out), &ol, NULL), ENT_EAUTH);
        b2[l2 - 1] ^= 0x80;
        assert_int_equal(ent_unseal(both, "t", b2, l2, out, sizeof(out), &ol, NULL), ENT_OK);
        assert_memory_equal(out, "two", 3);
    }
    ent_keyring_free(both);
    ent_keyring_free(old);
    ent_keyring_free(only_new);
}

struct seal_worker {
    struct ent_keyring *kr;
    int failures;
};

static void *seal_worker_run(void *arg)
{
    struct seal_worker *w = arg;
    for (unsigned i = 0; i < 500; i++) {
        uint8_t pt[8], blob[128], out[128];
        size_t bl = 0, ol = 0;
        memcpy(pt, &i, sizeof(i));
        memcpy(pt + 4, &w, 4);
        if (ent_seal(w->kr, "t", pt, sizeof(pt), blob, sizeof(blob), &bl) != ENT_OK ||
            ent_unseal(w->kr, "t", blob, bl, out, sizeof(out), &ol, NULL) != ENT_OK ||
            ol != sizeof(pt) || memcmp(out, pt, ol) != 0)
            w->failures++;
        blob[bl - 1] ^= 1;
        if (ent_unseal(w->kr, "t", blob, bl, out, sizeof(out), &ol, NULL) != ENT_EAUTH)
            w->failures++;
    }
    return NULL;
}

/* More threads than cores share one keyring's context pool. */
static void test_seal_threads_share_keyring(void **state)
{
    struct ent_keyring *kr = ring("s2 " K2 "\ns1 " K1 "\n");
    struct seal_worker w[6];
    pthread_t t[6];
    (void)state;

    for (size_t i = 0; i < 6; i++) {
        w[i] = (struct seal_worker){.kr = kr};
        assert_int_equal(pthread_create(&t[i], NULL, seal_worker_run, &w[i]), 0);
    }
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    ent_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_keyring_parse),
        cmocka_unit_test(test_seal_round_trip_and_tamper),
        cmocka_unit_test(test_seal_rotation),
        cmocka_unit_test(test_seal_reused_contexts_follow_key),
        cmocka_unit_test(test_seal_threads_share_keyring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
