/* SPDX-License-Identifier: Apache-2.0 */
/* aka/sqn.h and the resynchronisation half of aka/aka.h: SQN arithmetic (SEQ || IND), the
 * USIM freshness check, AUTS building and the server's SQN_MS recovery against
 * tests/vectors/resync.json (a real USIM's AUTS), and the Synchronization-Failure packet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aka/aka.h"
#include "aka/eap_aka.h"
#include "aka/sqn.h"
#include "test_aka_support.h"

static void test_sqn_bytes_roundtrip(void **state)
{
    (void)state;
    uint8_t b[6];

    ent_sqn_to_bytes(b, 0x0000000000a1ULL);
    assert_memory_equal(b, "\x00\x00\x00\x00\x00\xa1", 6);
    ent_sqn_to_bytes(b, 0xff9bb4d0b607ULL);
    assert_memory_equal(b, "\xff\x9b\xb4\xd0\xb6\x07", 6);
    assert_true(ent_sqn_from_bytes(b) == 0xff9bb4d0b607ULL);
}

static void test_sqn_next_advances_seq_and_cycles_ind(void **state)
{
    (void)state;
    uint64_t s = 0, prev;

    /* SEQ 0 IND 0 -> SEQ 1 IND 1 */
    assert_int_equal(ent_sqn_next(&s, 0, ENT_SQN_IND_BITS_DEFAULT), ENT_OK);
    assert_true(ent_sqn_seq(s, 5) == 1);
    assert_int_equal(ent_sqn_ind(s, 5), 1);
    /* IND wraps after 2^5 steps while SEQ keeps growing */
    for (int i = 0; i < 31; i++) {
        prev = s;
        assert_int_equal(ent_sqn_next(&s, s, 5), ENT_OK);
        assert_true(ent_sqn_seq(s, 5) == ent_sqn_seq(prev, 5) + 1);
    }
    assert_int_equal(ent_sqn_ind(s, 5), 0);
    assert_true(ent_sqn_seq(s, 5) == 32);
    /* ind_bits 0: plain counter */
    assert_int_equal(ent_sqn_next(&s, 41, 0), ENT_OK);
    assert_true(s == 42);
}

static void test_sqn_next_refuses_overflow_and_bad_width(void **state)
{
    (void)state;
    uint64_t s = 7, out = 0;

    assert_int_equal(ent_sqn_make(&s, ENT_SQN_MAX >> 5, 3, 5), ENT_OK);
    assert_int_equal(ent_sqn_next(&out, s, 5), ENT_ETOOBIG);
    assert_int_equal(ent_sqn_next(&out, 1, ENT_SQN_IND_BITS_MAX + 1), ENT_EINVAL);
    assert_int_equal(ent_sqn_next(&out, ENT_SQN_MAX + 1, 5), ENT_EINVAL);
    assert_true(out == 0); /* not written on failure */
    assert_int_equal(ent_sqn_make(&s, 1, 32, 5), ENT_EINVAL);
}

static void test_sqn_usim_rejects_replay_in_window(void **state)
{
    (void)state;
    struct ent_sqn_usim u;
    uint64_t s;

    assert_int_equal(ent_sqn_usim_init(&u, 5, ENT_SQN_DELTA_DEFAULT), ENT_OK);
    assert_int_equal(ent_sqn_make(&s, 10, 3, 5), ENT_OK);
    assert_int_equal(ent_sqn_usim_check(&u, s), ENT_OK);
    ent_sqn_usim_accept(&u, s);
    /* same SQN again: replay */
    assert_int_equal(ent_sqn_usim_check(&u, s), ENT_ECONFLICT);
    /* lower SEQ in another IND slot is still fresh there (out-of-order use) */
    assert_int_equal(ent_sqn_make(&s, 9, 4, 5), ENT_OK);
    assert_int_equal(ent_sqn_usim_check(&u, s), ENT_OK);
    /* lower SEQ in the same slot is not */
    assert_int_equal(ent_sqn_make(&s, 9, 3, 5), ENT_OK);
    assert_int_equal(ent_sqn_usim_check(&u, s), ENT_ECONFLICT);
    /* too far ahead of the highest SEQ_MS */
    assert_int_equal(ent_sqn_make(&s, 11 + ENT_SQN_DELTA_DEFAULT, 0, 5), ENT_OK);
    assert_int_equal(ent_sqn_usim_check(&u, s), ENT_ECONFLICT);
    /* SQN_MS is the highest accepted SEQ with its IND */
    assert_int_equal(ent_sqn_make(&s, 10, 3, 5), ENT_OK);
    assert_true(ent_sqn_usim_ms(&u) == s);
    assert_int_equal(ent_sqn_usim_init(&u, 9, 0), ENT_EINVAL);
}

static void test_sqn_resync_recovers_usim_sqn_from_vector(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("resync.json", &root);
    size_t i;
    json_t *o;

    json_array_foreach(vecs, i, o)
    {
        uint8_t k[16], opc[16], rand[16], auts[14], tampered[14], want[6], ak_star[6], mac_s[8];
        uint8_t sqn_ms_b[6], amf0[2] = {0, 0}, built[14];
        uint64_t sqn_ms = 0;

        aka_test_hex(o, "k", k, 16);
        aka_test_hex(o, "opc", opc, 16);
        aka_test_hex(o, "rand", rand, 16);
        aka_test_hex(o, "auts", auts, 14);
        aka_test_hex(o, "tampered_auts", tampered, 14);
        aka_test_hex(o, "expected_recovered_sqn_ms", want, 6);
        aka_test_hex(o, "sqn_ms", sqn_ms_b, 6);
        aka_test_hex(o, "ak_star", ak_star, 6);
        aka_test_hex(o, "mac_s", mac_s, 8);
        aka_test_hex(o, "amf_for_auts", amf0, 2);

        /* intermediate values */
        uint8_t got_ak[6], got_mac[8];
        assert_int_equal(ent_milenage_f5star(got_ak, k, opc, rand), ENT_OK);
        assert_memory_equal(got_ak, ak_star, 6);
        assert_int_equal(ent_milenage_f1star(got_mac, k, opc, rand, sqn_ms_b, amf0), ENT_OK);
        assert_memory_equal(got_mac, mac_s, 8);

        /* server: recover and verify */
        assert_int_equal(ent_aka_resync(&sqn_ms, k, opc, rand, auts), ENT_OK);
        assert_true(sqn_ms == ent_sqn_from_bytes(want));
        /* tampered MAC-S: refused, output untouched */
        sqn_ms = 0;
        assert_int_equal(ent_aka_resync(&sqn_ms, k, opc, rand, tampered), ENT_EAUTH);
        assert_true(sqn_ms == 0);

        /* USIM: the same AUTS from SQN_MS */
        assert_int_equal(ent_aka_auts_build(built, k, opc, rand, ent_sqn_from_bytes(sqn_ms_b)),
                         ENT_OK);
        assert_memory_equal(built, auts, 14);
        print_message("resync %s: ok\n", aka_test_str(o, "name"));
    }
    json_decref(root);
}

static void test_sqn_sync_failure_packet_matches_vector(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("resync.json", &root);
    json_t *o = json_array_get(vecs, 0);
    struct ent_eap_aka_response r;
    uint8_t auts[14], out[ENT_EAP_AKA_PACKET_MAX];
    size_t pkt_len, out_len = 0;
    uint8_t *pkt = aka_test_hex_alloc(o, "sync_failure_packet_hex", &pkt_len);

    aka_test_hex(o, "auts", auts, 14);
    assert_int_equal(ent_eap_aka_response_parse(&r, pkt, pkt_len), ENT_OK);
    assert_int_equal(r.subtype, ENT_EAP_AKA_SYNCHRONIZATION_FAILURE);
    assert_int_equal(r.type, ENT_EAP_TYPE_AKA);
    assert_int_equal(r.identifier, json_integer_value(json_object_get(o, "eap_identifier")));
    assert_memory_equal(r.auts, auts, 14);

    /* peer side builds the same bytes */
    memset(&r, 0, sizeof(r));
    r.type = ENT_EAP_TYPE_AKA;
    r.identifier = 7;
    r.subtype = ENT_EAP_AKA_SYNCHRONIZATION_FAILURE;
    memcpy(r.auts, auts, 14);
    assert_int_equal(ent_eap_aka_response_build(out, sizeof(out), &out_len, &r, NULL, 0), ENT_OK);
    assert_int_equal(out_len, pkt_len);
    assert_memory_equal(out, pkt, pkt_len);
    free(pkt);
    json_decref(root);
}

/* Server and USIM drift apart, the USIM answers with AUTS, the server resyncs, and the next
 * vector is accepted. */
static void test_sqn_resync_round_trip(void **state)
{
    (void)state;
    static const uint8_t k[16] = {0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f,
                                  0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc};
    static const uint8_t opc[16] = {0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e,
                                    0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf};
    static const uint8_t amf[2] = {0x80, 0x00};
    struct ent_sqn_usim usim;
    struct ent_aka_vector av;
    struct ent_aka_usim_result ur;
    uint8_t auts[14];
    uint64_t sqn_he = 0, sqn_ms = 0, s;

    assert_int_equal(ent_sqn_usim_init(&usim, 5, ENT_SQN_DELTA_DEFAULT), ENT_OK);
    /* the USIM has already seen SEQ 100 in slot 4 (e.g. another server's vectors) */
    assert_int_equal(ent_sqn_make(&s, 100, 4, 5), ENT_OK);
    ent_sqn_usim_accept(&usim, s);

    /* the server is behind: SEQ 2 IND 4 */
    assert_int_equal(ent_sqn_make(&sqn_he, 2, 4, 5), ENT_OK);
    assert_int_equal(ent_aka_vector_generate(&av, k, opc, sqn_he, amf, NULL), ENT_OK);
    assert_int_equal(ent_aka_usim_verify(&ur, k, opc, av.rand, av.autn), ENT_OK);
    assert_true(ur.sqn == sqn_he);
    assert_int_equal(ent_sqn_usim_check(&usim, ur.sqn), ENT_ECONFLICT);
    assert_int_equal(ent_aka_auts_build(auts, k, opc, av.rand, ent_sqn_usim_ms(&usim)), ENT_OK);

    /* server: recover SQN_MS, continue after it */
    assert_int_equal(ent_aka_resync(&sqn_ms, k, opc, av.rand, auts), ENT_OK);
    assert_true(sqn_ms == ent_sqn_usim_ms(&usim));
    /* AUTS bound to its RAND: another RAND gives a MAC-S failure */
    uint8_t other_rand[16];
    memcpy(other_rand, av.rand, 16);
    other_rand[0] ^= 1;
    assert_int_equal(ent_aka_resync(&s, k, opc, other_rand, auts), ENT_EAUTH);

    assert_int_equal(ent_sqn_next(&sqn_he, sqn_ms, 5), ENT_OK);
    assert_int_equal(ent_aka_vector_generate(&av, k, opc, sqn_he, amf, NULL), ENT_OK);
    assert_int_equal(ent_aka_usim_verify(&ur, k, opc, av.rand, av.autn), ENT_OK);
    assert_int_equal(ent_sqn_usim_check(&usim, ur.sqn), ENT_OK);
    assert_memory_equal(ur.res, av.xres, av.xres_len);
    assert_memory_equal(ur.ck, av.ck, 16);
    assert_memory_equal(ur.ik, av.ik, 16);

    /* a forged AUTN (MAC-A flipped) fails on the USIM */
    av.autn[15] ^= 0x80;
    assert_int_equal(ent_aka_usim_verify(&ur, k, opc, av.rand, av.autn), ENT_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqn_bytes_roundtrip),
        cmocka_unit_test(test_sqn_next_advances_seq_and_cycles_ind),
        cmocka_unit_test(test_sqn_next_refuses_overflow_and_bad_width),
        cmocka_unit_test(test_sqn_usim_rejects_replay_in_window),
        cmocka_unit_test(test_sqn_resync_recovers_usim_sqn_from_vector),
        cmocka_unit_test(test_sqn_sync_failure_packet_matches_vector),
        cmocka_unit_test(test_sqn_resync_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
