/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only helpers for the authd engine and daemon tests: a temporary directory with
 * keyring files, an authd_cfg pointing at them, and a simulated USIM + EAP peer built on
 * entitle_aka (the same code the device simulator links) that answers challenges the way a
 * handset does: Challenge response, Synchronization-Failure with AUTS when the SQN is not
 * fresh, and deliberately broken answers (wrong RES, bad AT_MAC). Include after cmocka.h. */
#ifndef ENT_TEST_AUTHD_SUPPORT_H
#define ENT_TEST_AUTHD_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aka/aka.h"
#include "aka/aka_prime.h"
#include "aka/eap_aka.h"
#include "authd.h"
#include "ent/util.h"

#define TA_SEAL_KEY "0102030405060708091011121314151617181920212223242526272829303132"
#define TA_KEK      "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0"
#define TA_K        "465b5ce8b199b49faa5f0a2ee238a6bc"
#define TA_OPC      "cd63cb71954a9f4e48a5994e37a02baf"

struct ta_dir {
    char path[256];
    char db[300];
    char seal[300];
    char kek[300];
};

static inline void ta_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static inline void ta_dir_init(struct ta_dir *t)
{
    snprintf(t->path, sizeof(t->path), "/tmp/authd-test-XXXXXX");
    assert_non_null(mkdtemp(t->path));
    snprintf(t->db, sizeof(t->db), "%s/entitle.db", t->path);
    snprintf(t->seal, sizeof(t->seal), "%s/seal.keyring", t->path);
    snprintf(t->kek, sizeof(t->kek), "%s/kek.hex", t->path);
    ta_write(t->seal, "s1 " TA_SEAL_KEY "\n");
    ta_write(t->kek, TA_KEK "\n");
}

static inline void ta_dir_fini(struct ta_dir *t)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);
    assert_int_equal(system(cmd), 0);
}

static char *ta_home[] = {"001-01", "310-260"};

/* A config as the daemon would load it (strings borrowed, never freed). */
static inline void ta_cfg(struct authd_cfg *c, const struct ta_dir *t)
{
    memset(c, 0, sizeof(*c));
    c->seal_keyring = (char *)t->seal;
    c->kek_file = (char *)t->kek;
    c->realm_prefix = "nai.epc";
    c->home_networks.items = ta_home;
    c->home_networks.n = 2;
    c->network_name = "WLAN";
    c->sqn_ind_bits = 5;
    c->amf = "8000";
    c->exchange_ttl = 60000;
    c->max_rounds = 4;
    c->token_validity = 3600000;
    c->temporary_token_validity = 60000;
    c->sqn_lease = 1;
}

static inline void ta_hex(const char *h, uint8_t *out, size_t n)
{
    assert_int_equal(ent_hex_decode(h, out, n), ENT_OK);
}

/* ---- the USIM and EAP peer ---- */

enum ta_mode { TA_GOOD, TA_WRONG_RES, TA_BAD_MAC, TA_REJECT };

struct ta_usim {
    uint8_t k[16], opc[16];
    struct ent_sqn_usim sqn;
    const char *identity;
    unsigned syncs; /* Synchronization-Failures sent */
    uint64_t last_sqn;
};

static inline void ta_usim_init(struct ta_usim *u, const char *identity)
{
    memset(u, 0, sizeof(*u));
    ta_hex(TA_K, u->k, 16);
    ta_hex(TA_OPC, u->opc, 16);
    assert_int_equal(ent_sqn_usim_init(&u->sqn, 5, ENT_SQN_DELTA_DEFAULT), ENT_OK);
    u->identity = identity;
}

/* The USIM has accepted SEQ `seq` in every IND slot (another network served it). */
static inline void ta_usim_seen(struct ta_usim *u, uint64_t seq)
{
    for (unsigned ind = 0; ind < 32; ind++) {
        uint64_t sqn = 0;
        assert_int_equal(ent_sqn_make(&sqn, seq, ind, 5), ENT_OK);
        ent_sqn_usim_accept(&u->sqn, sqn);
    }
}

/* Answers an EAP-Request/AKA(')-Challenge into out. */
static inline void ta_usim_answer(struct ta_usim *u, const uint8_t *pkt, size_t len,
                                  enum ta_mode mode, uint8_t *out, size_t *out_len)
{
    struct ent_eap_aka_challenge c;
    struct ent_aka_usim_result ur;
    struct ent_eap_aka_keys keys;
    struct ent_eap_aka_response r;

    assert_int_equal(ent_eap_aka_challenge_parse(&c, pkt, len), ENT_OK);
    assert_int_equal(ent_aka_usim_verify(&ur, u->k, u->opc, c.rand, c.autn), ENT_OK);
    memset(&r, 0, sizeof(r));
    r.type = c.type;
    r.identifier = c.identifier;
    if (mode == TA_REJECT) {
        r.subtype = ENT_EAP_AKA_AUTHENTICATION_REJECT;
        assert_int_equal(
            ent_eap_aka_response_build(out, ENT_EAP_AKA_PACKET_MAX, out_len, &r, NULL, 0), ENT_OK);
        return;
    }
    if (ent_sqn_usim_check(&u->sqn, ur.sqn) != ENT_OK) {
        r.subtype = ENT_EAP_AKA_SYNCHRONIZATION_FAILURE;
        assert_int_equal(ent_aka_auts_build(r.auts, u->k, u->opc, c.rand, ent_sqn_usim_ms(&u->sqn)),
                         ENT_OK);
        assert_int_equal(
            ent_eap_aka_response_build(out, ENT_EAP_AKA_PACKET_MAX, out_len, &r, NULL, 0), ENT_OK);
        u->syncs++;
        return;
    }
    ent_sqn_usim_accept(&u->sqn, ur.sqn);
    u->last_sqn = ur.sqn;
    if (c.type == ENT_EAP_TYPE_AKA_PRIME) {
        uint8_t ckp[16], ikp[16];
        assert_int_equal(
            ent_aka_prime_ck_ik(ckp, ikp, ur.ck, ur.ik, c.network_name, c.network_name_len, c.autn),
            ENT_OK);
        assert_int_equal(ent_aka_prime_keys_derive(&keys, (const uint8_t *)u->identity,
                                                   strlen(u->identity), ikp, ckp),
                         ENT_OK);
    } else {
        assert_int_equal(ent_eap_aka_keys_derive(&keys, (const uint8_t *)u->identity,
                                                 strlen(u->identity), ur.ik, ur.ck),
                         ENT_OK);
    }
    /* The server's AT_MAC must be right (AOSP does not check it; we do). */
    assert_int_equal(ent_eap_aka_mac_verify(pkt, len, c.mac_offset, keys.k_aut, keys.k_aut_len),
                     ENT_OK);
    r.subtype = ENT_EAP_AKA_CHALLENGE;
    memcpy(r.res, ur.res, ur.res_len);
    r.res_bits = (uint16_t)(ur.res_len * 8);
    r.has_mac = true;
    if (mode == TA_WRONG_RES)
        r.res[0] ^= 0x01;
    assert_int_equal(ent_eap_aka_response_build(out, ENT_EAP_AKA_PACKET_MAX, out_len, &r,
                                                keys.k_aut, keys.k_aut_len),
                     ENT_OK);
    if (mode == TA_BAD_MAC)
        out[*out_len - 1] ^= 0x01; /* AT_MAC is the last attribute */
}

#endif
