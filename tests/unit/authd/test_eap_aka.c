/* SPDX-License-Identifier: Apache-2.0 */
/* aka/eap_aka.h: the full EAP-AKA exchange of tests/vectors/eap_aka.json reproduced byte for
 * byte from both ends (server builds the challenge and checks responses, peer parses the
 * challenge and builds the response), the identity parser, and malformed-packet handling
 * (truncation, zero and overrunning attribute lengths, wrong code/type/subtype, duplicates,
 * unknown attributes) so the parser holds its bounds before it is fuzzed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aka/aka.h"
#include "aka/eap_aka.h"
#include "test_aka_support.h"

struct eap_vec {
    json_t *root;
    json_t *o;
    const char *identity;
    uint8_t k[16], op[16], opc[16], sqn[6], amf[2], rand[16], ak[6], mac_a[8], autn[16];
    uint8_t xres[8], ck[16], ik[16], mk[20], k_encr[16], k_aut[16], msk[64], emsk[64];
    uint8_t challenge_mac[16], response_mac[16];
    uint8_t identifier;
    uint8_t *challenge, *response, *wrong_res, *wrong_mac;
    size_t challenge_len, response_len, wrong_res_len, wrong_mac_len;
};

static int eap_vec_setup(void **state)
{
    struct eap_vec *v = calloc(1, sizeof(*v));
    json_t *vecs, *o;

    assert_non_null(v);
    vecs = aka_test_load("eap_aka.json", &v->root);
    o = v->o = json_array_get(vecs, 0);
    v->identity = aka_test_str(o, "identity");
    aka_test_hex(o, "k", v->k, 16);
    aka_test_hex(o, "op", v->op, 16);
    aka_test_hex(o, "opc", v->opc, 16);
    aka_test_hex(o, "sqn", v->sqn, 6);
    aka_test_hex(o, "amf", v->amf, 2);
    aka_test_hex(o, "rand", v->rand, 16);
    aka_test_hex(o, "ak", v->ak, 6);
    aka_test_hex(o, "mac_a", v->mac_a, 8);
    aka_test_hex(o, "autn", v->autn, 16);
    aka_test_hex(o, "xres", v->xres, 8);
    aka_test_hex(o, "ck", v->ck, 16);
    aka_test_hex(o, "ik", v->ik, 16);
    aka_test_hex(o, "mk", v->mk, 20);
    aka_test_hex(o, "k_encr", v->k_encr, 16);
    aka_test_hex(o, "k_aut", v->k_aut, 16);
    aka_test_hex(o, "msk", v->msk, 64);
    aka_test_hex(o, "emsk", v->emsk, 64);
    aka_test_hex(o, "challenge_at_mac", v->challenge_mac, 16);
    aka_test_hex(o, "response_at_mac", v->response_mac, 16);
    v->identifier = (uint8_t)json_integer_value(json_object_get(o, "eap_identifier"));
    v->challenge = aka_test_hex_alloc(o, "challenge_hex", &v->challenge_len);
    v->response = aka_test_hex_alloc(o, "response_hex", &v->response_len);
    v->wrong_res = aka_test_hex_alloc(o, "response_wrong_res_hex", &v->wrong_res_len);
    v->wrong_mac = aka_test_hex_alloc(o, "response_wrong_mac_hex", &v->wrong_mac_len);
    *state = v;
    return 0;
}

static int eap_vec_teardown(void **state)
{
    struct eap_vec *v = *state;

    free(v->challenge);
    free(v->response);
    free(v->wrong_res);
    free(v->wrong_mac);
    json_decref(v->root);
    free(v);
    return 0;
}

static void test_eap_aka_identity_of_vector(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_identity id;

    assert_int_equal(ent_eap_aka_identity_parse(&id, v->identity, strlen(v->identity)), ENT_OK);
    assert_int_equal(id.type, ENT_EAP_TYPE_AKA);
    assert_string_equal(id.imsi, aka_test_str(v->o, "imsi"));
    assert_string_equal(id.mcc, aka_test_str(v->o, "mcc"));
    assert_string_equal(id.mnc, aka_test_str(v->o, "mnc"));
    assert_string_equal(id.prefix, "nai.epc");
    assert_true(id.home_plmn);
}

static void test_eap_aka_vector_and_keys(void **state)
{
    struct eap_vec *v = *state;
    struct ent_aka_vector av;
    struct ent_eap_aka_keys keys;
    uint8_t opc[16], mk[20];

    assert_int_equal(ent_milenage_opc(opc, v->k, v->op), ENT_OK);
    assert_memory_equal(opc, v->opc, 16);
    assert_int_equal(
        ent_aka_vector_generate(&av, v->k, v->opc, ent_sqn_from_bytes(v->sqn), v->amf, v->rand),
        ENT_OK);
    assert_memory_equal(av.rand, v->rand, 16);
    assert_memory_equal(av.autn, v->autn, 16);
    assert_int_equal(av.xres_len, 8);
    assert_memory_equal(av.xres, v->xres, 8);
    assert_memory_equal(av.ck, v->ck, 16);
    assert_memory_equal(av.ik, v->ik, 16);

    assert_int_equal(
        ent_eap_aka_mk(mk, (const uint8_t *)v->identity, strlen(v->identity), v->ik, v->ck),
        ENT_OK);
    assert_memory_equal(mk, v->mk, 20);
    assert_int_equal(ent_eap_aka_keys_derive(&keys, (const uint8_t *)v->identity,
                                             strlen(v->identity), v->ik, v->ck),
                     ENT_OK);
    assert_int_equal(keys.k_aut_len, 16);
    assert_memory_equal(keys.k_encr, v->k_encr, 16);
    assert_memory_equal(keys.k_aut, v->k_aut, 16);
    assert_memory_equal(keys.msk, v->msk, 64);
    assert_memory_equal(keys.emsk, v->emsk, 64);
}

static void test_eap_aka_server_builds_vector_challenge(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    uint8_t out[ENT_EAP_AKA_PACKET_MAX];
    char b64[256];
    size_t len = 0;

    memset(&c, 0, sizeof(c));
    c.type = ENT_EAP_TYPE_AKA;
    c.identifier = v->identifier;
    memcpy(c.rand, v->rand, 16);
    memcpy(c.autn, v->autn, 16);
    assert_int_equal(ent_eap_aka_challenge_build(out, sizeof(out), &len, &c, v->k_aut, 16), ENT_OK);
    assert_int_equal(len, v->challenge_len);
    assert_memory_equal(out, v->challenge, len);
    assert_memory_equal(out + len - 16, v->challenge_mac, 16);
    /* what the TS.43 relay body carries */
    assert_true(ent_base64_encoded_len(len) < sizeof(b64));
    ent_base64_encode(out, len, b64);
    assert_string_equal(b64, aka_test_str(v->o, "challenge_base64"));

    /* too small a buffer, and a key of the wrong size for the method */
    assert_int_equal(ent_eap_aka_challenge_build(out, len - 1, &len, &c, v->k_aut, 16),
                     ENT_ETOOBIG);
    assert_int_equal(ent_eap_aka_challenge_build(out, sizeof(out), &len, &c, v->k_aut, 32),
                     ENT_EINVAL);
}

static void test_eap_aka_server_accepts_vector_response(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_response r;

    assert_int_equal(ent_eap_aka_response_parse(&r, v->response, v->response_len), ENT_OK);
    assert_int_equal(r.subtype, ENT_EAP_AKA_CHALLENGE);
    assert_int_equal(r.identifier, v->identifier);
    assert_int_equal(r.res_bits, 64);
    assert_memory_equal(r.res, v->xres, 8);
    assert_true(r.has_mac);
    assert_memory_equal(r.mac, v->response_mac, 16);
    assert_int_equal(ent_eap_aka_response_verify(&r, v->response, v->response_len, ENT_EAP_TYPE_AKA,
                                                 v->identifier, v->xres, 8, v->k_aut, 16),
                     ENT_OK);
    /* a different round's identifier or method is a protocol error, not a MAC failure */
    assert_int_equal(ent_eap_aka_response_verify(&r, v->response, v->response_len, ENT_EAP_TYPE_AKA,
                                                 v->identifier + 1, v->xres, 8, v->k_aut, 16),
                     ENT_EINVAL);
    /* XRES of another length never matches */
    assert_int_equal(ent_eap_aka_response_verify(&r, v->response, v->response_len, ENT_EAP_TYPE_AKA,
                                                 v->identifier, v->xres, 4, v->k_aut, 16),
                     ENT_EAUTH);
}

static void test_eap_aka_server_rejects_wrong_res_and_mac(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_response r;
    uint8_t other_key[16];

    assert_int_equal(ent_eap_aka_response_parse(&r, v->wrong_res, v->wrong_res_len), ENT_OK);
    /* its MAC is right, so only RES rejects it */
    assert_int_equal(
        ent_eap_aka_mac_verify(v->wrong_res, v->wrong_res_len, r.mac_offset, v->k_aut, 16), ENT_OK);
    assert_int_equal(ent_eap_aka_response_verify(&r, v->wrong_res, v->wrong_res_len,
                                                 ENT_EAP_TYPE_AKA, v->identifier, v->xres, 8,
                                                 v->k_aut, 16),
                     ENT_EAUTH);

    assert_int_equal(ent_eap_aka_response_parse(&r, v->wrong_mac, v->wrong_mac_len), ENT_OK);
    assert_int_equal(ent_eap_aka_response_verify(&r, v->wrong_mac, v->wrong_mac_len,
                                                 ENT_EAP_TYPE_AKA, v->identifier, v->xres, 8,
                                                 v->k_aut, 16),
                     ENT_EAUTH);

    /* the right packet under another key */
    memcpy(other_key, v->k_aut, 16);
    other_key[0] ^= 1;
    assert_int_equal(ent_eap_aka_response_parse(&r, v->response, v->response_len), ENT_OK);
    assert_int_equal(ent_eap_aka_response_verify(&r, v->response, v->response_len, ENT_EAP_TYPE_AKA,
                                                 v->identifier, v->xres, 8, other_key, 16),
                     ENT_EAUTH);
}

static void test_eap_aka_peer_answers_vector_challenge(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_aka_usim_result ur;
    struct ent_eap_aka_keys keys;
    struct ent_eap_aka_response r;
    uint8_t out[ENT_EAP_AKA_PACKET_MAX];
    size_t len = 0;

    assert_int_equal(ent_eap_aka_challenge_parse(&c, v->challenge, v->challenge_len), ENT_OK);
    assert_int_equal(c.identifier, v->identifier);
    assert_int_equal(c.type, ENT_EAP_TYPE_AKA);
    assert_false(c.result_ind);
    assert_memory_equal(c.rand, v->rand, 16);
    assert_memory_equal(c.autn, v->autn, 16);
    assert_int_equal(ent_aka_usim_verify(&ur, v->k, v->opc, c.rand, c.autn), ENT_OK);
    assert_true(ur.sqn == ent_sqn_from_bytes(v->sqn));
    assert_int_equal(ent_eap_aka_keys_derive(&keys, (const uint8_t *)v->identity,
                                             strlen(v->identity), ur.ik, ur.ck),
                     ENT_OK);
    assert_int_equal(ent_eap_aka_mac_verify(v->challenge, v->challenge_len, c.mac_offset,
                                            keys.k_aut, keys.k_aut_len),
                     ENT_OK);

    memset(&r, 0, sizeof(r));
    r.type = ENT_EAP_TYPE_AKA;
    r.identifier = c.identifier;
    r.subtype = ENT_EAP_AKA_CHALLENGE;
    memcpy(r.res, ur.res, ur.res_len);
    r.res_bits = (uint16_t)(ur.res_len * 8);
    assert_int_equal(
        ent_eap_aka_response_build(out, sizeof(out), &len, &r, keys.k_aut, keys.k_aut_len), ENT_OK);
    assert_int_equal(len, v->response_len);
    assert_memory_equal(out, v->response, len);

    /* a challenge whose MAC was altered fails the peer's check */
    uint8_t *bad = malloc(v->challenge_len);
    assert_non_null(bad);
    memcpy(bad, v->challenge, v->challenge_len);
    bad[v->challenge_len - 1] ^= 1;
    assert_int_equal(
        ent_eap_aka_mac_verify(bad, v->challenge_len, c.mac_offset, keys.k_aut, keys.k_aut_len),
        ENT_EAUTH);
    free(bad);
}

static void test_eap_aka_other_responses_round_trip(void **state)
{
    (void)state;
    struct ent_eap_aka_response r, p;
    uint8_t out[ENT_EAP_AKA_PACKET_MAX];
    size_t len;

    memset(&r, 0, sizeof(r));
    r.type = ENT_EAP_TYPE_AKA;
    r.identifier = 9;
    r.subtype = ENT_EAP_AKA_AUTHENTICATION_REJECT;
    assert_int_equal(ent_eap_aka_response_build(out, sizeof(out), &len, &r, NULL, 0), ENT_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(out, "\x02\x09\x00\x08\x17\x02\x00\x00", 8);
    assert_int_equal(ent_eap_aka_response_parse(&p, out, len), ENT_OK);
    assert_int_equal(p.subtype, ENT_EAP_AKA_AUTHENTICATION_REJECT);

    r.subtype = ENT_EAP_AKA_CLIENT_ERROR;
    r.client_error_code = ENT_EAP_AKA_CLIENT_ERROR_UNABLE_TO_PROCESS;
    assert_int_equal(ent_eap_aka_response_build(out, sizeof(out), &len, &r, NULL, 0), ENT_OK);
    assert_memory_equal(out, "\x02\x09\x00\x0c\x17\x0e\x00\x00\x16\x01\x00\x00", 12);
    assert_int_equal(ent_eap_aka_response_parse(&p, out, len), ENT_OK);
    assert_int_equal(p.subtype, ENT_EAP_AKA_CLIENT_ERROR);
    assert_int_equal(p.client_error_code, 0);

    /* a client error without its code is malformed */
    uint8_t no_code[8] = {2, 9, 0, 8, 23, 14, 0, 0};
    assert_int_equal(ent_eap_aka_response_parse(&p, no_code, 8), ENT_EINVAL);
}

/* ---- malformed packets ----------------------------------------------------------------- */

static void set_len(uint8_t *p, size_t len)
{
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
}

static void test_eap_aka_parse_rejects_truncation(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    struct ent_eap_aka_hdr h;
    uint8_t buf[128];

    /* every prefix, with the header length field left alone and with it patched */
    for (size_t n = 0; n < v->challenge_len; n++) {
        memcpy(buf, v->challenge, n);
        assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, n), ENT_EINVAL);
        if (n >= 4) {
            set_len(buf, n);
            assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, n), ENT_EINVAL);
        }
    }
    for (size_t n = 0; n < v->response_len; n++) {
        memcpy(buf, v->response, n);
        assert_int_equal(ent_eap_aka_response_parse(&r, buf, n), ENT_EINVAL);
        if (n >= 4) {
            set_len(buf, n);
            assert_int_equal(ent_eap_aka_response_parse(&r, buf, n), ENT_EINVAL);
        }
    }
    /* header length larger / smaller than the buffer */
    memcpy(buf, v->response, v->response_len);
    set_len(buf, v->response_len + 4);
    assert_int_equal(ent_eap_aka_peek(&h, buf, v->response_len), ENT_EINVAL);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len), ENT_EINVAL);
    set_len(buf, 0xffff);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len), ENT_EINVAL);
    memset(buf + v->response_len, 0, 4);
    set_len(buf, v->response_len);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len + 4), ENT_EINVAL);
}

static void test_eap_aka_parse_rejects_bad_attribute_lengths(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    uint8_t buf[128];

    /* AT_RAND length 0: would loop forever if accepted */
    memcpy(buf, v->challenge, v->challenge_len);
    buf[9] = 0;
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    /* AT_MAC (last) claims more than the packet holds */
    memcpy(buf, v->challenge, v->challenge_len);
    buf[v->challenge_len - 19] = 6;
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    buf[v->challenge_len - 19] = 255;
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    /* AT_RAND of length 4 (wrong fixed size): the rest then misaligns */
    memcpy(buf, v->challenge, v->challenge_len);
    buf[9] = 4;
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);

    /* AT_RES: bits out of range, RES longer than the attribute, too much padding */
    static const uint16_t bad_bits[] = {0, 31, 129, 200, 0xffff};
    for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
        memcpy(buf, v->response, v->response_len);
        set_len(buf, v->response_len);
        buf[10] = (uint8_t)(bad_bits[i] >> 8);
        buf[11] = (uint8_t)bad_bits[i];
        assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len), ENT_EINVAL);
    }
    memcpy(buf, v->response, v->response_len);
    buf[11] = 32; /* 4 bytes of RES in an attribute that has 8: 4 bytes of padding */
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len), ENT_EINVAL);
    /* a trailing 2-byte fragment that cannot hold an attribute header */
    memcpy(buf, v->response, v->response_len);
    buf[v->response_len] = 0x86;
    buf[v->response_len + 1] = 0;
    set_len(buf, v->response_len + 2);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len + 2), ENT_EINVAL);
}

static void test_eap_aka_parse_rejects_wrong_header(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    uint8_t buf[128];

    memcpy(buf, v->challenge, v->challenge_len);
    buf[5] = ENT_EAP_AKA_IDENTITY; /* wrong subtype */
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    memcpy(buf, v->challenge, v->challenge_len);
    buf[4] = 18; /* EAP-SIM */
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    memcpy(buf, v->challenge, v->challenge_len);
    buf[0] = ENT_EAP_CODE_RESPONSE; /* a challenge is a request */
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, v->challenge_len), ENT_EINVAL);
    assert_int_equal(ent_eap_aka_response_parse(&r, v->challenge, v->challenge_len), ENT_EINVAL);

    static const uint8_t bad_subtypes[] = {0, 3, 5, 12, 13, 15, 255};
    for (size_t i = 0; i < sizeof(bad_subtypes); i++) {
        memcpy(buf, v->response, v->response_len);
        buf[5] = bad_subtypes[i];
        assert_int_equal(ent_eap_aka_response_parse(&r, buf, v->response_len), ENT_EINVAL);
    }
    /* EAP-Success (4 bytes) is not an AKA packet */
    uint8_t success[4] = {3, 1, 0, 4};
    assert_int_equal(ent_eap_aka_response_parse(&r, success, 4), ENT_EINVAL);
}

static void test_eap_aka_parse_attribute_rules(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    uint8_t buf[160];
    size_t n;

    /* duplicate AT_RAND */
    n = v->challenge_len;
    memcpy(buf, v->challenge, n);
    memcpy(buf + n, v->challenge + 8, 20);
    n += 20;
    set_len(buf, n);
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, n), ENT_EINVAL);

    /* missing AT_AUTN: drop it */
    memcpy(buf, v->challenge, 28);
    memcpy(buf + 28, v->challenge + 48, v->challenge_len - 48);
    n = v->challenge_len - 20;
    set_len(buf, n);
    assert_int_equal(ent_eap_aka_challenge_parse(&c, buf, n), ENT_EINVAL);

    /* unknown non-skippable attribute (type 99) is malformed, unknown skippable (200) and
     * AT_CHECKCODE are skipped */
    static const uint8_t unknown[4] = {99, 1, 0, 0}, skip[4] = {200, 1, 0, 0};
    static const uint8_t checkcode_empty[4] = {134, 1, 0, 0};
    n = v->response_len;
    memcpy(buf, v->response, n);
    memcpy(buf + n, unknown, 4);
    set_len(buf, n + 4);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 4), ENT_EINVAL);
    memcpy(buf + n, skip, 4);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 4), ENT_OK);
    memcpy(buf + n, checkcode_empty, 4);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 4), ENT_OK);
    assert_false(r.checkcode_nonempty);

    /* a non-empty AT_CHECKCODE cannot match (we never ran AKA-Identity) */
    uint8_t cc[24] = {134, 6, 0, 0};
    memcpy(buf, v->response, n);
    memcpy(buf + n, cc, 24);
    set_len(buf, n + 24);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 24), ENT_OK);
    assert_true(r.checkcode_nonempty);
    assert_int_equal(ent_eap_aka_response_verify(&r, buf, n + 24, ENT_EAP_TYPE_AKA, v->identifier,
                                                 v->xres, 8, v->k_aut, 16),
                     ENT_EAUTH);

    /* AT_RES without AT_MAC */
    memcpy(buf, v->response, 20);
    set_len(buf, 20);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, 20), ENT_EINVAL);
    /* AT_AUTS in a Challenge response */
    static const uint8_t auts_attr[16] = {4, 4};
    memcpy(buf, v->response, n);
    memcpy(buf + n, auts_attr, 16);
    set_len(buf, n + 16);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 16), ENT_EINVAL);
    /* AT_KDF is not an EAP-AKA attribute */
    static const uint8_t kdf_attr[4] = {24, 1, 0, 1};
    memcpy(buf + n, kdf_attr, 4);
    set_len(buf, n + 4);
    assert_int_equal(ent_eap_aka_response_parse(&r, buf, n + 4), ENT_EINVAL);
}

/* A bounded deterministic mutation loop: whatever the bytes, parsing returns and never reads
 * out of bounds (ASan watches). */
static void test_eap_aka_parse_survives_mutations(void **state)
{
    struct eap_vec *v = *state;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    uint8_t buf[128];
    uint32_t x = 0x12345678;

    for (int i = 0; i < 4000; i++) {
        const uint8_t *src = (i & 1) ? v->response : v->challenge;
        size_t n = (i & 1) ? v->response_len : v->challenge_len;

        memcpy(buf, src, n);
        for (int j = 0; j < 3; j++) {
            x = x * 1103515245u + 12345u;
            buf[(x >> 8) % n] = (uint8_t)(x >> 20);
        }
        x = x * 1103515245u + 12345u;
        if ((x >> 16) % 4 == 0)
            n = (x >> 4) % n; /* and sometimes cut it */
        ent_err a = ent_eap_aka_challenge_parse(&c, buf, n);
        ent_err b = ent_eap_aka_response_parse(&r, buf, n);
        assert_true(a == ENT_OK || a == ENT_EINVAL);
        assert_true(b == ENT_OK || b == ENT_EINVAL);
        if (b == ENT_OK && r.has_mac) {
            ent_err m = ent_eap_aka_response_verify(&r, buf, n, ENT_EAP_TYPE_AKA, r.identifier,
                                                    v->xres, 8, v->k_aut, 16);
            assert_true(m == ENT_OK || m == ENT_EAUTH || m == ENT_EINVAL);
        }
    }
}

/* ---- identities ------------------------------------------------------------------------ */

static ent_err id_parse(struct ent_eap_aka_identity *id, const char *s)
{
    return ent_eap_aka_identity_parse(id, s, strlen(s));
}

static void test_eap_aka_identity_forms(void **state)
{
    (void)state;
    struct ent_eap_aka_identity id;

    /* 3-digit MNC */
    assert_int_equal(id_parse(&id, "0310260123456789@nai.epc.mnc260.mcc310.3gppnetwork.org"),
                     ENT_OK);
    assert_string_equal(id.mnc, "260");
    assert_string_equal(id.mcc, "310");
    assert_true(id.home_plmn);
    /* 2-digit MNC padded in the realm (23410 -> mnc010) */
    assert_int_equal(id_parse(&id, "0234101234567890@nai.epc.mnc010.mcc234.3gppnetwork.org"),
                     ENT_OK);
    assert_string_equal(id.mnc, "10");
    assert_string_equal(id.imsi, "234101234567890");
    /* AKA' permanent, upper-case realm, no prefix */
    assert_int_equal(id_parse(&id, "6001010000000001@MNC001.MCC001.3GPPNETWORK.ORG"), ENT_OK);
    assert_int_equal(id.type, ENT_EAP_TYPE_AKA_PRIME);
    assert_string_equal(id.prefix, "");
    assert_string_equal(id.mnc, "01");
    /* realm of another PLMN: parsed, flagged */
    assert_int_equal(id_parse(&id, "0001010000000001@wlan.mnc999.mcc262.3gppnetwork.org"), ENT_OK);
    assert_false(id.home_plmn);
    assert_string_equal(id.prefix, "wlan");
}

static void test_eap_aka_identity_rejects_pseudonyms_and_garbage(void **state)
{
    (void)state;
    struct ent_eap_aka_identity id;
    static const char *pseudo[] = {
        "2abcdef@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "4reauth-id@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "7pseudo@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "8reauth@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "1001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
    };
    static const char *bad[] = {
        "",
        "0",
        "9001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "0001010000000001",
        "0@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "000101@nai.epc.mnc001.mcc001.3gppnetwork.org",            /* 5-digit IMSI */
        "00010100000000012@nai.epc.mnc001.mcc001.3gppnetwork.org", /* 16 digits */
        "000101000000000a@nai.epc.mnc001.mcc001.3gppnetwork.org",
        "0001010000000001@nai.epc.mnc01.mcc001.3gppnetwork.org",
        "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.com",
        "0001010000000001@nai..epc.mnc001.mcc001.3gppnetwork.org",
        "0001010000000001@.mnc001.mcc001.3gppnetwork.org",
        "0001010000000001@nai.epcmnc001.mcc001.3gppnetwork.org",
        "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org@x",
        "0001010000000001@na i.mnc001.mcc001.3gppnetwork.org",
    };

    for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
        assert_int_equal(id_parse(&id, pseudo[i]), ENT_EUNSUPPORTED);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ent_err rc = id_parse(&id, bad[i]);

        if (rc != ENT_EINVAL)
            fail_msg("identity %zu (%s) gave %s", i, bad[i], ent_err_name(rc));
    }
    /* "0" + 14 digits: a valid permanent identity with a 14-digit IMSI */
    assert_int_equal(id_parse(&id, "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"),
                     ENT_OK);
    assert_string_equal(id.imsi, "01010000000001");
    assert_false(id.home_plmn);
    /* an embedded NUL is not hidden by the explicit length */
    static const char nul[] = "0001010000000001\0@nai.epc.mnc001.mcc001.3gppnetwork.org";
    assert_int_equal(ent_eap_aka_identity_parse(&id, nul, sizeof(nul) - 1), ENT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eap_aka_identity_of_vector),
        cmocka_unit_test(test_eap_aka_vector_and_keys),
        cmocka_unit_test(test_eap_aka_server_builds_vector_challenge),
        cmocka_unit_test(test_eap_aka_server_accepts_vector_response),
        cmocka_unit_test(test_eap_aka_server_rejects_wrong_res_and_mac),
        cmocka_unit_test(test_eap_aka_peer_answers_vector_challenge),
        cmocka_unit_test(test_eap_aka_other_responses_round_trip),
        cmocka_unit_test(test_eap_aka_parse_rejects_truncation),
        cmocka_unit_test(test_eap_aka_parse_rejects_bad_attribute_lengths),
        cmocka_unit_test(test_eap_aka_parse_rejects_wrong_header),
        cmocka_unit_test(test_eap_aka_parse_attribute_rules),
        cmocka_unit_test(test_eap_aka_parse_survives_mutations),
        cmocka_unit_test(test_eap_aka_identity_forms),
        cmocka_unit_test(test_eap_aka_identity_rejects_pseudonyms_and_garbage),
    };
    return cmocka_run_group_tests(tests, eap_vec_setup, eap_vec_teardown);
}
