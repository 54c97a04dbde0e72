/* SPDX-License-Identifier: Apache-2.0 */
/* The EAP-AKA/AKA' exchange (exchange.h): identity checks, challenges, verification of the
 * device's responses, resynchronisation and single-use closing. Vectors come through the
 * seam in vector_source.h; tokens from token.c.
 *
 * Invariants:
 *   1. The ticket (sealed ExchangeTicket) is issued once by AuthStart and never changes;
 *      it holds only what never changes (exchange id, identity, first params, expiry).
 *   2. Everything that changes per round lives in the store record under hex(exchange id),
 *      sealed (it holds XRES and K_aut), with the ticket's expiry as its expiry.
 *   3. Every write to an existing record is a compare-and-set on the version read
 *      (ent_store_update): two replicas handling the same response race, one wins, the
 *      other answers "replay". A closed record stays (closed = true) until it expires.
 *   4. Every verdict other than a new challenge closes the exchange.
 *   5. No failure before the record exists writes anything.
 *
 *   AuthStart(identity) ──exchange_start()──▶ ┌──────────────────────┐
 *     │ bad/pseudonym/foreign identity,       │ CHALLENGED, round n  │◀──┐
 *     │ unknown subscriber: FAILURE,          └──────────────────────┘   │ Sync-Failure with
 *     ▼ nothing stored                          │        │        │      │ good MAC-S, n < max
 *   (no record)                                 │        │        └──────┘ exchange_resync()
 *                     Response/Challenge with   │        │ bad MAC / RES, bad MAC-S, n == max,
 *                     good MAC and RES          │        │ Reject, Client-Error, malformed
 *                     exchange_success()        ▼        ▼ exchange_fail_close()
 *                                           ┌──────────────────────┐
 *                                           │ CLOSED (until expiry)│── any AuthContinue:
 *                                           └──────────────────────┘   FAILURE "replay"
 *   expired or unknown record: FAILURE "expired"; ticket fails to open: FAILURE "tampered"
 *
 *   transition                         function                 store operation
 *   (none) -> CHALLENGED 1             authd_exchange_start()   ent_store_insert
 *   CHALLENGED n -> CHALLENGED n+1     exchange_resync()        ent_store_update(version)
 *   CHALLENGED n -> CLOSED (success)   exchange_success()       ent_store_update(version)
 *   CHALLENGED n -> CLOSED (failure)   exchange_fail_close()    ent_store_update(version)
 */
#include "exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "aka/aka_prime.h"
#include "aka/eap_aka.h"
#include "credentials.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "token.h"
#include "vector_source.h"

#define EXCHANGE_ID_LEN     16
#define EXCHANGE_TICKET_MAX 4096
#define EXCHANGE_RECORD_MAX 1024

static ent_counter auth_started = ENT_COUNTER("entitle_authd_auth_started_total",
                                              "EAP exchanges started (challenge sent)", "method");
static ent_counter auth_succeeded = ENT_COUNTER("entitle_authd_auth_succeeded_total",
                                                "EAP exchanges that ended in success", "method");
static ent_counter auth_failed =
    ENT_COUNTER("entitle_authd_auth_failed_total", "Authentication failures by reason", "reason");
static ent_counter auth_resyncs = ENT_COUNTER(
    "entitle_authd_resyncs_total", "Synchronisation failures handled, by result", "result");

static const char *method_name(uint32_t type)
{
    return type == ENT_EAP_TYPE_AKA_PRIME ? "aka_prime" : "aka";
}

void authd_result_free(struct authd_result *r)
{
    free(r->ticket);
    if (r->token) {
        OPENSSL_cleanse(r->token, strlen(r->token));
        free(r->token);
    }
    if (r->params)
        entitle__v1__request_params__free_unpacked(r->params, NULL);
    memset(r, 0, sizeof(*r));
}

static ent_err result_fail(struct authd_result *r, const char *reason, const char *imsi)
{
    r->outcome = AUTHD_FAILURE;
    r->reason = reason;
    ent_counter_inc(&auth_failed, reason);
    ENT_LOG_INFO(NULL, "authd.auth_failed", ENT_KV_STR("reason", reason),
                 ENT_KV_STR("imsi", imsi ? ent_mask_id(imsi) : "-"));
    return ENT_OK;
}

/* ---- identity --------------------------------------------------------------------------- */

/* The 3-digit form of a 2- or 3-digit MNC. */
static void mnc3(char out[4], const char *mnc)
{
    size_t n = strnlen(mnc, 3);
    memset(out, '0', 3);
    memcpy(out + 3 - n, mnc, n);
    out[3] = '\0';
}

/* Checks the parsed identity against the realm prefix and the home networks. Both the realm
 * (3-digit MNC) and the IMSI (MCC || MNC of 2 or 3 digits) must name the same configured
 * network. */
static bool identity_home(const struct authd *a, const struct ent_eap_aka_identity *id)
{
    char realm_mnc[4];

    if (strcasecmp(id->prefix, a->set.realm_prefix) != 0)
        return false;
    mnc3(realm_mnc, id->mnc);
    for (size_t i = 0; i < a->set.n_home; i++) {
        const struct authd_home_network *h = &a->set.home[i];
        char want[4];
        size_t ml = strlen(h->mnc);
        mnc3(want, h->mnc);
        if (strcmp(id->mcc, h->mcc) != 0 || strcmp(realm_mnc, want) != 0)
            continue;
        if (memcmp(id->imsi, h->mcc, 3) == 0 && strncmp(id->imsi + 3, h->mnc, ml) == 0)
            return true;
    }
    return false;
}

/* ---- records ---------------------------------------------------------------------------- */

static void round_purpose(char *out, size_t cap, const char *key)
{
    snprintf(out, cap, "%s:%s", AUTHD_PURPOSE_ROUND, key);
}

/* Packs and seals a round into blob. */
static ent_err round_seal(struct authd *a, const char *key, const Entitle__V1__ExchangeRound *rd,
                          uint8_t *blob, size_t *blob_len)
{
    uint8_t pt[EXCHANGE_RECORD_MAX];
    char purpose[96];
    size_t n = entitle__v1__exchange_round__get_packed_size(rd);
    ent_err rc;

    if (n > sizeof(pt))
        return ENT_EINTERNAL;
    entitle__v1__exchange_round__pack(rd, pt);
    round_purpose(purpose, sizeof(purpose), key);
    rc = ent_seal(a->seal, purpose, pt, n, blob, EXCHANGE_RECORD_MAX + ENT_SEAL_OVERHEAD_MAX,
                  blob_len);
    OPENSSL_cleanse(pt, n);
    return rc;
}

static ent_err round_open(struct authd *a, const struct ent_store_doc *doc,
                          Entitle__V1__ExchangeRound **out)
{
    uint8_t pt[EXCHANGE_RECORD_MAX + ENT_SEAL_OVERHEAD_MAX];
    char purpose[96];
    size_t n = 0;
    ent_err rc;

    round_purpose(purpose, sizeof(purpose), doc->key);
    rc = ent_unseal(a->seal, purpose, doc->data, doc->len, pt, sizeof(pt), &n, NULL);
    if (rc != ENT_OK)
        return ENT_EAUTH;
    *out = entitle__v1__exchange_round__unpack(NULL, n, pt);
    OPENSSL_cleanse(pt, n);
    if (*out == NULL)
        return ENT_EAUTH;
    if ((*out)->rand.len != ENT_AKA_RAND_LEN || (*out)->xres.len > ENT_AKA_RES_MAX ||
        (*out)->k_aut.len > ENT_EAP_AKA_K_AUT_MAX || !authd_imsi_ok((*out)->subscriber_id)) {
        entitle__v1__exchange_round__free_unpacked(*out, NULL);
        *out = NULL;
        return ENT_EAUTH;
    }
    return ENT_OK;
}

static void round_free(Entitle__V1__ExchangeRound *rd)
{
    if (rd == NULL)
        return;
    if (rd->k_aut.data)
        OPENSSL_cleanse(rd->k_aut.data, rd->k_aut.len);
    if (rd->xres.data)
        OPENSSL_cleanse(rd->xres.data, rd->xres.len);
    entitle__v1__exchange_round__free_unpacked(rd, NULL);
}

/* Writes rd over the record if its version is still `version`. */
static ent_err round_update(struct authd *a, const struct ent_store_doc *old,
                            const Entitle__V1__ExchangeRound *rd)
{
    uint8_t blob[EXCHANGE_RECORD_MAX + ENT_SEAL_OVERHEAD_MAX];
    size_t blob_len = 0;
    ent_err rc = round_seal(a, old->key, rd, blob, &blob_len);
    if (rc != ENT_OK)
        return rc;
    struct ent_store_doc nd = {
        .key = old->key, .data = blob, .len = blob_len, .expires_at_ms = old->expires_at_ms};
    return ent_store_update(a->store, ENT_COLL_EXCHANGES, &nd, old->version, NULL);
}

/* ---- challenges ------------------------------------------------------------------------- */

/* One challenge: a vector through the seam, the keys over the exact identity, the packet.
 * Fills rd's rand/xres/k_aut/identifier and r->eap. */
struct challenge_scratch {
    struct authd_vector v;
    struct ent_eap_aka_keys keys;
};

static ent_err challenge_make(struct authd *a, const char *identity, const char *imsi,
                              uint32_t type, uint8_t identifier, const uint8_t *resync_rand,
                              const uint8_t *auts, struct challenge_scratch *cs,
                              struct authd_result *r)
{
    bool prime = type == ENT_EAP_TYPE_AKA_PRIME;
    struct authd_vector_request vr = {
        .imsi = imsi,
        .aka_prime = prime,
        .network_name = a->set.network_name,
        .resync_rand = resync_rand,
        .auts = auts,
    };
    struct ent_eap_aka_challenge c = {0};
    ent_err rc = authd_vector_get(a->vs, &vr, &cs->v);

    if (rc != ENT_OK)
        return rc;
    if (prime)
        rc = ent_aka_prime_keys_derive(&cs->keys, (const uint8_t *)identity, strlen(identity),
                                       cs->v.ik, cs->v.ck);
    else
        rc = ent_eap_aka_keys_derive(&cs->keys, (const uint8_t *)identity, strlen(identity),
                                     cs->v.ik, cs->v.ck);
    if (rc != ENT_OK)
        return ENT_EINTERNAL;
    c.type = (uint8_t)type;
    c.identifier = identifier;
    memcpy(c.rand, cs->v.rand, sizeof(c.rand));
    memcpy(c.autn, cs->v.autn, sizeof(c.autn));
    if (prime) {
        c.kdf = ENT_EAP_AKA_KDF_CK_IK_PRIME;
        c.network_name_len = strlen(a->set.network_name);
        memcpy(c.network_name, a->set.network_name, c.network_name_len + 1);
    }
    rc = ent_eap_aka_challenge_build(r->eap, sizeof(r->eap), &r->eap_len, &c, cs->keys.k_aut,
                                     cs->keys.k_aut_len);
    return rc == ENT_OK ? ENT_OK : ENT_EINTERNAL;
}

/* Vector-source errors that are verdicts rather than outages. */
static const char *vector_failure(ent_err rc)
{
    switch (rc) {
    case ENT_ENOTFOUND:
        return "unknown_subscriber";
    case ENT_EAUTH:
        return "resync";
    case ENT_EUNSUPPORTED:
        return "unsupported";
    case ENT_ETOOBIG:
        return "sqn_exhausted";
    default:
        return NULL;
    }
}

/* ---- AuthStart -------------------------------------------------------------------------- */

/* A new exchange id and the first EAP identifier. The id is the wall clock in ms (48 bits,
 * big-endian) followed by 80 random bits. It is never shown (it travels inside the sealed
 * ticket), so it only has to be unique: two exchanges, on any replicas, collide only if they
 * start in the same millisecond and draw the same 80 bits (birthday bound n^2 / 2^81 for n
 * starts in one millisecond), and a collision fails the insert as an outage, never merging
 * two exchanges. The time prefix is for the store: the record's key is hex(id), and keys
 * that grow with time land on the right-most pages of the SQLite B-tree, so a group commit
 * of many AuthStart inserts and AuthContinue closes dirties a few pages instead of one
 * random page per exchange (fewer WAL frames per fsync). Measured with bench_auth: ~3,200 ->
 * ~3,700 authentications/s, authd CPU ~300 -> ~280 us per authentication. */
static ent_err exchange_id_new(uint8_t xid[EXCHANGE_ID_LEN], uint8_t *identifier)
{
    uint8_t rnd[EXCHANGE_ID_LEN - 6 + 1]; /* one DRBG call for both */
    uint64_t ms = ent_wall_ms();

    if (ent_random_bytes(rnd, sizeof(rnd)) != ENT_OK)
        return ENT_EINTERNAL;
    for (int i = 0; i < 6; i++)
        xid[i] = (uint8_t)(ms >> (8 * (5 - i)));
    memcpy(xid + 6, rnd, EXCHANGE_ID_LEN - 6);
    *identifier = rnd[EXCHANGE_ID_LEN - 6];
    return ENT_OK;
}

ent_err authd_exchange_start(struct authd *a, const char *identity,
                             const Entitle__V1__RequestParams *params, struct authd_result *r)
{
    struct ent_eap_aka_identity id;
    struct challenge_scratch cs;
    uint8_t xid[EXCHANGE_ID_LEN];
    char key[2 * EXCHANGE_ID_LEN + 1];
    uint8_t ident = 0;
    uint8_t blob[EXCHANGE_RECORD_MAX + ENT_SEAL_OVERHEAD_MAX];
    size_t blob_len = 0;
    uint64_t expires = ent_wall_ms() + a->set.exchange_ttl_ms;
    ent_err rc;

    memset(r, 0, sizeof(*r));
    size_t id_len = identity ? strlen(identity) : 0;
    if (id_len == 0 || id_len > ENT_EAP_AKA_IDENTITY_MAX)
        return result_fail(r, "malformed", NULL);
    rc = ent_eap_aka_identity_parse(&id, identity, id_len);
    if (rc == ENT_EUNSUPPORTED)
        return result_fail(r, "pseudonym", NULL); /* RFC 4187 §4.1.1.3: no pseudonyms issued */
    if (rc != ENT_OK)
        return result_fail(r, "malformed", NULL);
    if (!identity_home(a, &id))
        return result_fail(r, "identity", id.imsi);
    if (id.type == ENT_EAP_TYPE_AKA_PRIME && a->set.network_name[0] == '\0')
        return result_fail(r, "unsupported", id.imsi);
    if (exchange_id_new(xid, &ident) != ENT_OK)
        return ENT_EINTERNAL;
    ent_hex_encode(xid, sizeof(xid), key);

    rc = challenge_make(a, identity, id.imsi, id.type, ident, NULL, NULL, &cs, r);
    if (rc != ENT_OK) {
        OPENSSL_cleanse(&cs, sizeof(cs));
        const char *why = vector_failure(rc);
        if (why != NULL && rc != ENT_EAUTH)
            return result_fail(r, why, id.imsi);
        return rc == ENT_EAUTH ? ENT_EINTERNAL : rc;
    }

    Entitle__V1__ExchangeRound rd = ENTITLE__V1__EXCHANGE_ROUND__INIT;
    rd.round = 1;
    rd.identifier = ident;
    rd.eap_type = id.type;
    rd.rand = (ProtobufCBinaryData){ENT_AKA_RAND_LEN, cs.v.rand};
    rd.xres = (ProtobufCBinaryData){cs.v.xres_len, cs.v.xres};
    rd.k_aut = (ProtobufCBinaryData){cs.keys.k_aut_len, cs.keys.k_aut};
    rd.subscriber_id = id.imsi;
    rc = round_seal(a, key, &rd, blob, &blob_len);
    OPENSSL_cleanse(&cs, sizeof(cs));
    if (rc != ENT_OK)
        return rc;
    struct ent_store_doc doc = {
        .key = key, .data = blob, .len = blob_len, .expires_at_ms = (int64_t)expires};
    rc = ent_store_insert(a->store, ENT_COLL_EXCHANGES, &doc);
    if (rc != ENT_OK)
        return rc; /* EEXIST would mean a 128-bit random collision: an outage, not a verdict */

    Entitle__V1__ExchangeTicket t = ENTITLE__V1__EXCHANGE_TICKET__INIT;
    t.exchange_id = (ProtobufCBinaryData){sizeof(xid), xid};
    t.identity = (char *)identity;
    t.params = (Entitle__V1__RequestParams *)params;
    t.expires_unix_ms = expires;
    t.eap_type = id.type;
    size_t tl = entitle__v1__exchange_ticket__get_packed_size(&t);
    if (tl > EXCHANGE_TICKET_MAX)
        return result_fail(r, "malformed", id.imsi); /* params too large for a cookie */
    uint8_t *pt = malloc(tl);
    r->ticket = malloc(ent_seal_len(a->seal, tl));
    if (pt == NULL || r->ticket == NULL) {
        free(pt);
        free(r->ticket);
        r->ticket = NULL;
        return ENT_ENOMEM;
    }
    entitle__v1__exchange_ticket__pack(&t, pt);
    rc = ent_seal(a->seal, AUTHD_PURPOSE_TICKET, pt, tl, r->ticket, ent_seal_len(a->seal, tl),
                  &r->ticket_len);
    free(pt);
    if (rc != ENT_OK) {
        free(r->ticket);
        r->ticket = NULL;
        return rc;
    }
    r->outcome = AUTHD_CHALLENGE;
    r->round = 1;
    ent_counter_inc(&auth_started, method_name(id.type));
    return ENT_OK;
}

/* ---- AuthContinue ----------------------------------------------------------------------- */

/* Closes the exchange and reports `reason`; a lost race is a replay. */
static ent_err exchange_fail_close(struct authd *a, const struct ent_store_doc *doc,
                                   Entitle__V1__ExchangeRound *rd, const char *reason,
                                   struct authd_result *r)
{
    rd->closed = true;
    ent_err rc = round_update(a, doc, rd);
    if (rc == ENT_ECONFLICT)
        return result_fail(r, "replay", rd->subscriber_id);
    if (rc == ENT_ENOTFOUND)
        return result_fail(r, "expired", rd->subscriber_id);
    if (rc != ENT_OK)
        return rc;
    return result_fail(r, reason, rd->subscriber_id);
}

static ent_err exchange_success(struct authd *a, const struct ent_store_doc *doc,
                                Entitle__V1__ExchangeRound *rd, Entitle__V1__ExchangeTicket *t,
                                struct authd_result *r)
{
    rd->closed = true;
    ent_err rc = round_update(a, doc, rd);
    if (rc == ENT_ECONFLICT)
        return result_fail(r, "replay", rd->subscriber_id);
    if (rc == ENT_ENOTFOUND)
        return result_fail(r, "expired", rd->subscriber_id);
    if (rc != ENT_OK)
        return rc;
    rc = authd_token_issue(a, rd->subscriber_id, &r->token, &r->token_expiry_ms);
    if (rc != ENT_OK)
        return rc;
    r->outcome = AUTHD_SUCCESS;
    snprintf(r->subscriber_id, sizeof(r->subscriber_id), "%s", rd->subscriber_id);
    r->params = t->params; /* handed over; the ticket is freed without it */
    t->params = NULL;
    ent_counter_inc(&auth_succeeded, method_name(rd->eap_type));
    return ENT_OK;
}

static ent_err exchange_resync(struct authd *a, const struct ent_store_doc *doc,
                               Entitle__V1__ExchangeRound *rd, const Entitle__V1__ExchangeTicket *t,
                               const struct ent_eap_aka_response *resp, struct authd_result *r)
{
    struct challenge_scratch cs;
    uint8_t old_rand[ENT_AKA_RAND_LEN];
    uint8_t ident = (uint8_t)(rd->identifier + 1u);

    if (rd->round >= a->set.max_rounds) {
        ent_counter_inc(&auth_resyncs, "rounds");
        return exchange_fail_close(a, doc, rd, "rounds", r);
    }
    memcpy(old_rand, rd->rand.data, sizeof(old_rand));
    ent_err rc = challenge_make(a, t->identity, rd->subscriber_id, rd->eap_type, ident, old_rand,
                                resp->auts, &cs, r);
    if (rc != ENT_OK) {
        OPENSSL_cleanse(&cs, sizeof(cs));
        const char *why = vector_failure(rc);
        ent_counter_inc(&auth_resyncs, rc == ENT_EAUTH ? "bad_mac_s" : "error");
        if (why == NULL)
            return rc;
        return exchange_fail_close(a, doc, rd, why, r);
    }
    Entitle__V1__ExchangeRound nd = *rd;
    nd.round = rd->round + 1;
    nd.identifier = ident;
    nd.rand = (ProtobufCBinaryData){ENT_AKA_RAND_LEN, cs.v.rand};
    nd.xres = (ProtobufCBinaryData){cs.v.xres_len, cs.v.xres};
    nd.k_aut = (ProtobufCBinaryData){cs.keys.k_aut_len, cs.keys.k_aut};
    rc = round_update(a, doc, &nd);
    OPENSSL_cleanse(&cs, sizeof(cs));
    if (rc == ENT_ECONFLICT)
        return result_fail(r, "replay", rd->subscriber_id);
    if (rc == ENT_ENOTFOUND)
        return result_fail(r, "expired", rd->subscriber_id);
    if (rc != ENT_OK)
        return rc;
    ent_counter_inc(&auth_resyncs, "ok");
    r->outcome = AUTHD_CHALLENGE;
    r->round = nd.round;
    return ENT_OK;
}

static ent_err exchange_answer(struct authd *a, const struct ent_store_doc *doc,
                               Entitle__V1__ExchangeRound *rd, Entitle__V1__ExchangeTicket *t,
                               const uint8_t *pkt, size_t pkt_len, struct authd_result *r)
{
    struct ent_eap_aka_response resp;
    ent_err rc = ent_eap_aka_response_parse(&resp, pkt, pkt_len);

    if (rc != ENT_OK || resp.type != rd->eap_type || resp.identifier != rd->identifier)
        return exchange_fail_close(a, doc, rd, "malformed", r);
    switch (resp.subtype) {
    case ENT_EAP_AKA_CHALLENGE:
        if (!resp.has_mac || resp.res_bits == 0)
            return exchange_fail_close(a, doc, rd, "malformed", r); /* e.g. AKA' KDF refusal */
        rc = ent_eap_aka_mac_verify(pkt, pkt_len, resp.mac_offset, rd->k_aut.data, rd->k_aut.len);
        if (rc != ENT_OK)
            return exchange_fail_close(a, doc, rd, rc == ENT_EAUTH ? "bad_mac" : "malformed", r);
        rc = ent_eap_aka_response_verify(&resp, pkt, pkt_len, (uint8_t)rd->eap_type,
                                         (uint8_t)rd->identifier, rd->xres.data, rd->xres.len,
                                         rd->k_aut.data, rd->k_aut.len);
        if (rc != ENT_OK)
            return exchange_fail_close(a, doc, rd, rc == ENT_EAUTH ? "bad_res" : "malformed", r);
        return exchange_success(a, doc, rd, t, r);
    case ENT_EAP_AKA_SYNCHRONIZATION_FAILURE:
        return exchange_resync(a, doc, rd, t, &resp, r);
    case ENT_EAP_AKA_AUTHENTICATION_REJECT:
        return exchange_fail_close(a, doc, rd, "client_reject", r);
    case ENT_EAP_AKA_CLIENT_ERROR:
        return exchange_fail_close(a, doc, rd, "client_error", r);
    default:
        return exchange_fail_close(a, doc, rd, "malformed", r);
    }
}

ent_err authd_exchange_continue(struct authd *a, const uint8_t *ticket, size_t ticket_len,
                                const uint8_t *pkt, size_t pkt_len, struct authd_result *r)
{
    uint8_t pt[EXCHANGE_TICKET_MAX + ENT_SEAL_OVERHEAD_MAX];
    size_t n = 0;
    char key[2 * EXCHANGE_ID_LEN + 1];
    struct ent_store_doc doc = {0};
    Entitle__V1__ExchangeTicket *t = NULL;
    Entitle__V1__ExchangeRound *rd = NULL;
    ent_err rc;

    memset(r, 0, sizeof(*r));
    if (ticket == NULL || ticket_len == 0 || ticket_len > sizeof(pt))
        return result_fail(r, "tampered", NULL);
    rc = ent_unseal(a->seal, AUTHD_PURPOSE_TICKET, ticket, ticket_len, pt, sizeof(pt), &n, NULL);
    if (rc == ENT_ENOMEM || rc == ENT_EINTERNAL)
        return rc;
    if (rc != ENT_OK)
        return result_fail(r, "tampered", NULL);
    t = entitle__v1__exchange_ticket__unpack(NULL, n, pt);
    if (t == NULL || t->exchange_id.len != EXCHANGE_ID_LEN || t->identity == NULL) {
        rc = result_fail(r, "tampered", NULL);
        goto out;
    }
    if (ent_wall_ms() >= t->expires_unix_ms) {
        rc = result_fail(r, "expired", NULL);
        goto out;
    }
    ent_hex_encode(t->exchange_id.data, EXCHANGE_ID_LEN, key);
    rc = ent_store_get(a->store, ENT_COLL_EXCHANGES, key, &doc);
    if (rc == ENT_ENOTFOUND) {
        rc = result_fail(r, "expired", NULL);
        goto out;
    }
    if (rc != ENT_OK)
        goto out;
    rc = round_open(a, &doc, &rd);
    if (rc != ENT_OK) {
        rc = result_fail(r, "tampered", NULL);
        goto out;
    }
    if (rd->closed) {
        rc = result_fail(r, "replay", rd->subscriber_id);
        goto out;
    }
    if (pkt == NULL || pkt_len == 0) {
        rc = exchange_fail_close(a, &doc, rd, "malformed", r);
        goto out;
    }
    rc = exchange_answer(a, &doc, rd, t, pkt, pkt_len, r);
out:
    if (rc != ENT_OK)
        authd_result_free(r);
    round_free(rd);
    if (t)
        entitle__v1__exchange_ticket__free_unpacked(t, NULL);
    OPENSSL_cleanse(pt, sizeof(pt) < n ? sizeof(pt) : n);
    ent_store_doc_free(&doc);
    return rc;
}

ent_err authd_exchange_purge(struct authd *a, size_t *purged)
{
    return ent_store_purge_expired(a->store, ENT_COLL_EXCHANGES, (int64_t)ent_wall_ms(), purged);
}
