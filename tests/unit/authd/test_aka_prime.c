/* SPDX-License-Identifier: Apache-2.0 */
/* aka/aka_prime.h and the type-50 paths of aka/eap_aka.h: RFC 5448 Appendix C cases of
 * tests/vectors/aka_prime.json (CK', IK', K_encr, K_aut, K_re, MSK, EMSK), the AMF separation
 * bit, and an AKA' Challenge exchange with AT_KDF/AT_KDF_INPUT and HMAC-SHA-256-128 AT_MAC
 * run from both ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aka/aka.h"
#include "aka/aka_prime.h"
#include "aka/eap_aka.h"
#include "test_aka_support.h"

static void test_aka_prime_rfc5448_cases(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("aka_prime.json", &root);
    size_t i, seen = 0;
    json_t *o;

    json_array_foreach(vecs, i, o)
    {
        uint8_t autn[16], ik[16], ck[16], ckp[16], ikp[16], k_encr[16], k_aut[32], k_re[32];
        uint8_t msk[64], emsk[64], got_ck[16], got_ik[16];
        const char *identity = aka_test_str(o, "identity");
        const char *net = aka_test_str(o, "network_name");
        struct ent_eap_aka_keys keys;

        aka_test_hex(o, "autn", autn, 16);
        aka_test_hex(o, "ik", ik, 16);
        aka_test_hex(o, "ck", ck, 16);
        aka_test_hex(o, "ck_prime", ckp, 16);
        aka_test_hex(o, "ik_prime", ikp, 16);
        aka_test_hex(o, "k_encr", k_encr, 16);
        aka_test_hex(o, "k_aut", k_aut, 32);
        aka_test_hex(o, "k_re", k_re, 32);
        aka_test_hex(o, "msk", msk, 64);
        aka_test_hex(o, "emsk", emsk, 64);

        assert_int_equal(ent_aka_prime_ck_ik(got_ck, got_ik, ck, ik, net, strlen(net), autn),
                         ENT_OK);
        assert_memory_equal(got_ck, ckp, 16);
        assert_memory_equal(got_ik, ikp, 16);
        assert_int_equal(ent_aka_prime_keys_derive(&keys, (const uint8_t *)identity,
                                                   strlen(identity), got_ik, got_ck),
                         ENT_OK);
        assert_int_equal(keys.k_aut_len, 32);
        assert_memory_equal(keys.k_encr, k_encr, 16);
        assert_memory_equal(keys.k_aut, k_aut, 32);
        assert_memory_equal(keys.k_re, k_re, 32);
        assert_memory_equal(keys.msk, msk, 64);
        assert_memory_equal(keys.emsk, emsk, 64);
        print_message("aka' case %d (%s): ok\n",
                      (int)json_integer_value(json_object_get(o, "case")), net);
        seen++;
    }
    assert_int_equal(seen, 2);
    json_decref(root);
}

static void test_aka_prime_rejects_bad_inputs(void **state)
{
    (void)state;
    uint8_t ck[16] = {0}, ik[16] = {0}, sqn_ak[6] = {0}, o1[16], o2[16];
    char longname[ENT_EAP_AKA_NETNAME_MAX + 2];
    struct ent_eap_aka_keys keys;

    assert_int_equal(ent_aka_prime_ck_ik(o1, o2, ck, ik, "", 0, sqn_ak), ENT_EINVAL);
    memset(longname, 'a', sizeof(longname));
    assert_int_equal(ent_aka_prime_ck_ik(o1, o2, ck, ik, longname, sizeof(longname), sqn_ak),
                     ENT_EINVAL);
    assert_int_equal(ent_aka_prime_keys_derive(&keys, (const uint8_t *)"", 0, ik, ck), ENT_EINVAL);
}

static void test_aka_prime_amf_separation_bit(void **state)
{
    (void)state;
    static const uint8_t set[2] = {0x80, 0x00}, clear[2] = {0x7f, 0xff};

    assert_true(ent_aka_prime_amf_ok(set));
    assert_false(ent_aka_prime_amf_ok(clear));
}

/* Server: Milenage vector with the separation bit, CK'/IK', keys, challenge. Peer: parse,
 * USIM, same keys from the challenge's own network name, MAC check, response. Server:
 * verify. */
static void test_aka_prime_exchange_round_trip(void **state)
{
    (void)state;
    static const uint8_t k[16] = {0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f,
                                  0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc};
    static const uint8_t opc[16] = {0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e,
                                    0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf};
    static const uint8_t amf[2] = {0x80, 0x00};
    static const char identity[] = "6001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org";
    static const char net[] = "WLAN";
    struct ent_aka_vector av;
    struct ent_eap_aka_keys skeys, pkeys;
    struct ent_eap_aka_challenge c, pc;
    struct ent_aka_usim_result ur;
    struct ent_eap_aka_response r, sr;
    uint8_t ckp[16], ikp[16], chal[ENT_EAP_AKA_PACKET_MAX], resp[ENT_EAP_AKA_PACKET_MAX];
    size_t chal_len = 0, resp_len = 0;

    assert_true(ent_aka_prime_amf_ok(amf));
    assert_int_equal(ent_aka_vector_generate(&av, k, opc, 0x40, amf, NULL), ENT_OK);
    assert_int_equal(ent_aka_prime_ck_ik(ckp, ikp, av.ck, av.ik, net, 4, av.autn), ENT_OK);
    assert_int_equal(
        ent_aka_prime_keys_derive(&skeys, (const uint8_t *)identity, strlen(identity), ikp, ckp),
        ENT_OK);

    memset(&c, 0, sizeof(c));
    c.type = ENT_EAP_TYPE_AKA_PRIME;
    c.identifier = 3;
    memcpy(c.rand, av.rand, 16);
    memcpy(c.autn, av.autn, 16);
    c.kdf = ENT_EAP_AKA_KDF_CK_IK_PRIME;
    memcpy(c.network_name, net, 4);
    c.network_name_len = 4;
    /* a SHA-1-sized key is refused for AKA' */
    assert_int_equal(
        ent_eap_aka_challenge_build(chal, sizeof(chal), &chal_len, &c, skeys.k_aut, 16),
        ENT_EINVAL);
    assert_int_equal(ent_eap_aka_challenge_build(chal, sizeof(chal), &chal_len, &c, skeys.k_aut,
                                                 skeys.k_aut_len),
                     ENT_OK);
    /* header, AT_RAND, AT_AUTN, AT_KDF_INPUT ("WLAN": 2 units), AT_KDF, AT_MAC */
    assert_int_equal(chal_len, 8 + 20 + 20 + 8 + 4 + 20);
    assert_memory_equal(chal + 48, "\x17\x02\x00\x04WLAN\x18\x01\x00\x01", 12);
    assert_int_equal(chal[4], 50);

    /* peer */
    assert_int_equal(ent_eap_aka_challenge_parse(&pc, chal, chal_len), ENT_OK);
    assert_int_equal(pc.kdf, 1);
    assert_string_equal(pc.network_name, "WLAN");
    assert_int_equal(ent_aka_usim_verify(&ur, k, opc, pc.rand, pc.autn), ENT_OK);
    assert_true(ent_aka_prime_amf_ok(pc.autn + 6));
    assert_int_equal(
        ent_aka_prime_ck_ik(ckp, ikp, ur.ck, ur.ik, pc.network_name, pc.network_name_len, pc.autn),
        ENT_OK);
    assert_int_equal(
        ent_aka_prime_keys_derive(&pkeys, (const uint8_t *)identity, strlen(identity), ikp, ckp),
        ENT_OK);
    assert_memory_equal(pkeys.k_aut, skeys.k_aut, 32);
    assert_int_equal(
        ent_eap_aka_mac_verify(chal, chal_len, pc.mac_offset, pkeys.k_aut, pkeys.k_aut_len),
        ENT_OK);
    memset(&r, 0, sizeof(r));
    r.type = ENT_EAP_TYPE_AKA_PRIME;
    r.identifier = pc.identifier;
    r.subtype = ENT_EAP_AKA_CHALLENGE;
    memcpy(r.res, ur.res, ur.res_len);
    r.res_bits = (uint16_t)(ur.res_len * 8);
    assert_int_equal(
        ent_eap_aka_response_build(resp, sizeof(resp), &resp_len, &r, pkeys.k_aut, pkeys.k_aut_len),
        ENT_OK);

    /* server */
    assert_int_equal(ent_eap_aka_response_parse(&sr, resp, resp_len), ENT_OK);
    assert_int_equal(ent_eap_aka_response_verify(&sr, resp, resp_len, ENT_EAP_TYPE_AKA_PRIME, 3,
                                                 av.xres, av.xres_len, skeys.k_aut,
                                                 skeys.k_aut_len),
                     ENT_OK);
    /* an EAP-AKA round does not accept an AKA' answer */
    assert_int_equal(ent_eap_aka_response_verify(&sr, resp, resp_len, ENT_EAP_TYPE_AKA, 3, av.xres,
                                                 av.xres_len, skeys.k_aut, 16),
                     ENT_EINVAL);
    /* flip one MAC byte: refused */
    resp[resp_len - 1] ^= 0x01;
    assert_int_equal(ent_eap_aka_response_verify(&sr, resp, resp_len, ENT_EAP_TYPE_AKA_PRIME, 3,
                                                 av.xres, av.xres_len, skeys.k_aut,
                                                 skeys.k_aut_len),
                     ENT_EAUTH);
}

static void test_aka_prime_challenge_needs_kdf_attributes(void **state)
{
    (void)state;
    static const uint8_t key[32] = {1};
    struct ent_eap_aka_challenge c, p;
    uint8_t buf[ENT_EAP_AKA_PACKET_MAX], cut[ENT_EAP_AKA_PACKET_MAX];
    size_t len = 0;

    memset(&c, 0, sizeof(c));
    c.type = ENT_EAP_TYPE_AKA_PRIME;
    c.identifier = 1;
    c.kdf = ENT_EAP_AKA_KDF_CK_IK_PRIME;
    /* no network name: refused by the builder */
    assert_int_equal(ent_eap_aka_challenge_build(buf, sizeof(buf), &len, &c, key, 32), ENT_EINVAL);
    memcpy(c.network_name, "HRPD", 4);
    c.network_name_len = 4;
    c.kdf = 2;
    assert_int_equal(ent_eap_aka_challenge_build(buf, sizeof(buf), &len, &c, key, 32), ENT_EINVAL);
    c.kdf = ENT_EAP_AKA_KDF_CK_IK_PRIME;
    /* AMF without the separation bit: not an AKA' vector */
    assert_int_equal(ent_eap_aka_challenge_build(buf, sizeof(buf), &len, &c, key, 32), ENT_EINVAL);
    c.autn[6] = ENT_AKA_AMF_SEPARATION_BIT;
    assert_int_equal(ent_eap_aka_challenge_build(buf, sizeof(buf), &len, &c, key, 32), ENT_OK);
    assert_int_equal(ent_eap_aka_challenge_parse(&p, buf, len), ENT_OK);

    /* drop AT_KDF (4 bytes at offset 56): malformed for AKA' */
    memcpy(cut, buf, 56);
    memcpy(cut + 56, buf + 60, len - 60);
    cut[2] = 0;
    cut[3] = (uint8_t)(len - 4);
    assert_int_equal(ent_eap_aka_challenge_parse(&p, cut, len - 4), ENT_EINVAL);
    /* network-name length larger than its attribute */
    memcpy(cut, buf, len);
    cut[51] = 9;
    assert_int_equal(ent_eap_aka_challenge_parse(&p, cut, len), ENT_EINVAL);
    /* empty network name */
    cut[51] = 0;
    assert_int_equal(ent_eap_aka_challenge_parse(&p, cut, len), ENT_EINVAL);
    /* the same packet relabelled EAP-AKA: AT_KDF is unknown and non-skippable there */
    memcpy(cut, buf, len);
    cut[4] = ENT_EAP_TYPE_AKA;
    assert_int_equal(ent_eap_aka_challenge_parse(&p, cut, len), ENT_EINVAL);
}

static void test_aka_prime_kdf_negotiation_response(void **state)
{
    (void)state;
    struct ent_eap_aka_response r, p;
    uint8_t buf[ENT_EAP_AKA_PACKET_MAX];
    size_t len = 0;

    memset(&r, 0, sizeof(r));
    r.type = ENT_EAP_TYPE_AKA_PRIME;
    r.identifier = 5;
    r.subtype = ENT_EAP_AKA_CHALLENGE;
    r.kdf = 1;
    assert_int_equal(ent_eap_aka_response_build(buf, sizeof(buf), &len, &r, NULL, 0), ENT_OK);
    assert_memory_equal(buf, "\x02\x05\x00\x0c\x32\x01\x00\x00\x18\x01\x00\x01", 12);
    assert_int_equal(ent_eap_aka_response_parse(&p, buf, len), ENT_OK);
    assert_int_equal(p.kdf, 1);
    assert_false(p.has_mac);
    /* not something verify accepts as a successful answer */
    assert_int_equal(ent_eap_aka_response_verify(
                         &p, buf, len, ENT_EAP_TYPE_AKA_PRIME, 5, (const uint8_t *)"12345678", 8,
                         (const uint8_t *)"0123456789abcdef0123456789abcdef", 32),
                     ENT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aka_prime_rfc5448_cases),
        cmocka_unit_test(test_aka_prime_rejects_bad_inputs),
        cmocka_unit_test(test_aka_prime_amf_separation_bit),
        cmocka_unit_test(test_aka_prime_exchange_round_trip),
        cmocka_unit_test(test_aka_prime_challenge_needs_kdf_attributes),
        cmocka_unit_test(test_aka_prime_kdf_negotiation_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
