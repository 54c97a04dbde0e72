/* SPDX-License-Identifier: Apache-2.0 */
/* EAP-AKA (RFC 4187) and EAP-AKA' (RFC 5448, RFC 9048) packets, identities and keys. This
 * header owns the wire format: building and strictly parsing the packets TS.43 relays
 * (Challenge, Synchronization-Failure, Authentication-Reject, Client-Error), AT_MAC, the
 * permanent-identity NAI, and the RFC 4187 key hierarchy. The AKA' key hierarchy (CK'/IK',
 * PRF') is in aka/aka_prime.h; the packet code here serves both methods, choosing AT_MAC's
 * hash from the packet's type (23: HMAC-SHA1-128, 50: HMAC-SHA-256-128).
 *
 * Exchange, as TS.43 runs it (PROTOCOL.md §4.1; no EAP-Identity, no EAP-Success):
 *
 *   server                                     peer (device / simulator)
 *   ent_aka_vector_generate()
 *   ent_eap_aka_keys_derive() -> K_aut
 *   ent_eap_aka_challenge_build()  --Request/Challenge-->  ent_eap_aka_challenge_parse()
 *                                                        ent_aka_usim_verify(), keys, MAC
 *   ent_eap_aka_response_parse()  <--Response/Challenge--  ent_eap_aka_response_build()
 *   ent_eap_aka_response_verify()      (or Sync-Failure with AT_AUTS -> ent_aka_resync())
 *
 * Conventions: packets are caller-owned byte buffers; builders write into (out, cap) and
 * report the length, returning ENT_ETOOBIG if cap is too small (ENT_EAP_AKA_PACKET_MAX always
 * suffices). Parsers never allocate, copy what they keep into fixed-size structs, and return
 * ENT_EINVAL for any malformed packet (bad lengths, zero-length or overrunning attributes,
 * unknown non-skippable attributes, duplicates, wrong code/type/subtype). MAC and RES
 * mismatches are ENT_EAUTH, compared in constant time. Everything is thread-safe; outputs are
 * written only on ENT_OK. Keys are secrets: never log them. */
#ifndef ENT_AKA_EAP_AKA_H
#define ENT_AKA_EAP_AKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aka/aka.h"
#include "ent/err.h"

/* EAP (RFC 3748) codes and the two method types */
#define ENT_EAP_CODE_REQUEST   1
#define ENT_EAP_CODE_RESPONSE  2
#define ENT_EAP_TYPE_AKA       23
#define ENT_EAP_TYPE_AKA_PRIME 50

/* Subtypes (RFC 4187 §11) */
#define ENT_EAP_AKA_CHALLENGE               1
#define ENT_EAP_AKA_AUTHENTICATION_REJECT   2
#define ENT_EAP_AKA_SYNCHRONIZATION_FAILURE 4
#define ENT_EAP_AKA_IDENTITY                5
#define ENT_EAP_AKA_NOTIFICATION            12
#define ENT_EAP_AKA_REAUTHENTICATION        13
#define ENT_EAP_AKA_CLIENT_ERROR            14

/* Attribute types (RFC 4187 §11, RFC 5448 §3.1-3.2). 0-127 are non-skippable. */
#define ENT_EAP_AT_RAND              1
#define ENT_EAP_AT_AUTN              2
#define ENT_EAP_AT_RES               3
#define ENT_EAP_AT_AUTS              4
#define ENT_EAP_AT_PADDING           6
#define ENT_EAP_AT_PERMANENT_ID_REQ  10
#define ENT_EAP_AT_MAC               11
#define ENT_EAP_AT_NOTIFICATION      12
#define ENT_EAP_AT_ANY_ID_REQ        13
#define ENT_EAP_AT_IDENTITY          14
#define ENT_EAP_AT_FULLAUTH_ID_REQ   17
#define ENT_EAP_AT_COUNTER           19
#define ENT_EAP_AT_COUNTER_TOO_SMALL 20
#define ENT_EAP_AT_NONCE_S           21
#define ENT_EAP_AT_CLIENT_ERROR_CODE 22
#define ENT_EAP_AT_KDF_INPUT         23
#define ENT_EAP_AT_KDF               24
#define ENT_EAP_AT_IV                129
#define ENT_EAP_AT_ENCR_DATA         130
#define ENT_EAP_AT_NEXT_PSEUDONYM    132
#define ENT_EAP_AT_NEXT_REAUTH_ID    133
#define ENT_EAP_AT_CHECKCODE         134
#define ENT_EAP_AT_RESULT_IND        135
#define ENT_EAP_AT_BIDDING           136

/* Sizes */
#define ENT_EAP_AKA_HDR_LEN         8  /* code, id, length(2), type, subtype, reserved(2) */
#define ENT_EAP_AKA_MAC_LEN         16 /* AT_MAC value, both methods */
#define ENT_EAP_AKA_MK_LEN          20
#define ENT_EAP_AKA_K_ENCR_LEN      16
#define ENT_EAP_AKA_K_AUT_LEN       16 /* EAP-AKA */
#define ENT_EAP_AKA_PRIME_K_AUT_LEN 32 /* EAP-AKA' */
#define ENT_EAP_AKA_K_AUT_MAX       32
#define ENT_EAP_AKA_K_RE_LEN        32 /* EAP-AKA' only */
#define ENT_EAP_AKA_MSK_LEN         64
#define ENT_EAP_AKA_EMSK_LEN        64
#define ENT_EAP_AKA_NETNAME_MAX     255 /* AT_KDF_INPUT network name we accept */
#define ENT_EAP_AKA_IDENTITY_MAX    253 /* NAI length limit (RFC 7542) */
#define ENT_EAP_AKA_IMSI_MAX        15
#define ENT_EAP_AKA_PACKET_MAX      512 /* largest packet this library builds */
#define ENT_EAP_AKA_KDF_CK_IK_PRIME 1   /* AT_KDF value: the RFC 5448 CK'/IK' KDF */

/* Client error codes (RFC 4187 §10.20) */
#define ENT_EAP_AKA_CLIENT_ERROR_UNABLE_TO_PROCESS 0

/* The fixed header of any EAP-AKA/AKA' packet. */
struct ent_eap_aka_hdr {
    uint8_t code;
    uint8_t identifier;
    uint16_t length;
    uint8_t type;
    uint8_t subtype;
};

/* EAP-Request/AKA-Challenge (or AKA'-Challenge). Fill every input field before build; parse
 * fills all of them plus mac/mac_offset. */
struct ent_eap_aka_challenge {
    uint8_t type; /* ENT_EAP_TYPE_AKA or ENT_EAP_TYPE_AKA_PRIME */
    uint8_t identifier;
    uint8_t rand[ENT_AKA_RAND_LEN];
    uint8_t autn[ENT_AKA_AUTN_LEN];
    bool result_ind; /* AT_RESULT_IND; TS.43 leaves it off (AOSP ignores it) */
    /* EAP-AKA' only: AT_KDF (the first, i.e. preferred, one when parsing) and AT_KDF_INPUT */
    uint16_t kdf;
    size_t network_name_len;
    char network_name[ENT_EAP_AKA_NETNAME_MAX + 1]; /* NUL-terminated copy */
    /* Set by parse: the AT_MAC value and the offset of its 16 bytes in the packet. */
    uint8_t mac[ENT_EAP_AKA_MAC_LEN];
    size_t mac_offset;
};

/* EAP-Response/AKA-* from the peer. `subtype` selects which fields matter:
 *   CHALLENGE:       res/res_bits, mac (and result_ind); for AKA' a KDF-negotiation answer
 *                    carries only AT_KDF (kdf != 0, res_bits == 0, has_mac false)
 *   SYNCHRONIZATION_FAILURE: auts (AKA' may add kdf)
 *   AUTHENTICATION_REJECT:   nothing
 *   CLIENT_ERROR:    client_error_code */
struct ent_eap_aka_response {
    uint8_t type;
    uint8_t identifier;
    uint8_t subtype;
    uint8_t res[ENT_AKA_RES_MAX];
    uint16_t res_bits; /* AT_RES length in bits, 32..128 */
    bool result_ind;
    bool checkcode_nonempty; /* parse: a non-empty AT_CHECKCODE was present */
    bool has_mac;
    uint8_t mac[ENT_EAP_AKA_MAC_LEN];
    size_t mac_offset;
    uint8_t auts[ENT_AKA_AUTS_LEN];
    uint16_t client_error_code;
    uint16_t kdf; /* 0 = no AT_KDF */
};

/* Keys of RFC 4187 §7 (EAP-AKA) or RFC 5448 §3.3 (EAP-AKA'). */
struct ent_eap_aka_keys {
    uint8_t k_encr[ENT_EAP_AKA_K_ENCR_LEN];
    uint8_t k_aut[ENT_EAP_AKA_K_AUT_MAX];
    size_t k_aut_len;                   /* 16 (AKA) or 32 (AKA') */
    uint8_t k_re[ENT_EAP_AKA_K_RE_LEN]; /* AKA' only; zero for EAP-AKA */
    uint8_t msk[ENT_EAP_AKA_MSK_LEN];
    uint8_t emsk[ENT_EAP_AKA_EMSK_LEN];
};

/* A permanent identity `0<IMSI>@<prefix>.mnc<MNC>.mcc<MCC>.3gppnetwork.org` taken apart. */
struct ent_eap_aka_identity {
    uint8_t type; /* ENT_EAP_TYPE_AKA for leading '0', ENT_EAP_TYPE_AKA_PRIME for '6' */
    char imsi[ENT_EAP_AKA_IMSI_MAX + 1];
    char mcc[4];
    char mnc[4]; /* 2 or 3 digits: the realm's 3-digit form, unpadded when the IMSI says so */
    char prefix[ENT_EAP_AKA_IDENTITY_MAX + 1]; /* e.g. "nai.epc"; may be empty */
    bool home_plmn;                            /* IMSI begins with MCC || MNC */
};

/* Validates the 8-byte EAP-AKA/AKA' header: len >= 8, the length field equals len, code is
 * request or response, type is 23 or 50. Does not look at attributes. */
ent_err ent_eap_aka_peek(struct ent_eap_aka_hdr *out, const uint8_t *pkt, size_t len);

/* Server: builds EAP-Request/AKA-Challenge = header, AT_RAND, AT_AUTN, [AT_KDF, AT_KDF_INPUT
 * for AKA'], [AT_RESULT_IND], AT_MAC, with AT_MAC computed under k_aut (16 bytes for AKA, 32
 * for AKA'). Never adds AT_CHECKCODE. ENT_EINVAL for a bad type, key length, or (AKA') a kdf
 * other than 1, an empty network name or an AUTN whose AMF lacks the separation bit. */
ent_err ent_eap_aka_challenge_build(uint8_t *out, size_t cap, size_t *out_len,
                                    const struct ent_eap_aka_challenge *c, const uint8_t *k_aut,
                                    size_t k_aut_len);

/* Peer: parses an EAP-Request/AKA-Challenge. Requires AT_RAND, AT_AUTN and AT_MAC (and for
 * AKA' AT_KDF and AT_KDF_INPUT). The MAC is not checked here, since K_aut depends on the
 * AKA run: call ent_eap_aka_mac_verify() with out->mac_offset once keys are derived. */
ent_err ent_eap_aka_challenge_parse(struct ent_eap_aka_challenge *out, const uint8_t *pkt,
                                    size_t len);

/* Computes AT_MAC over pkt with the 16 bytes at mac_offset taken as zero, and compares it in
 * constant time with the bytes there. The hash follows pkt's type byte. ENT_EAUTH on
 * mismatch, ENT_EINVAL for a bad offset, type or key length. Nothing is appended to the
 * packet (right for Challenge messages, the only ones TS.43 carries). */
ent_err ent_eap_aka_mac_verify(const uint8_t *pkt, size_t len, size_t mac_offset,
                               const uint8_t *k_aut, size_t k_aut_len);

/* Peer: builds the response described by r (see struct ent_eap_aka_response). k_aut is used
 * only when an AT_MAC is written (Challenge with RES); otherwise it may be NULL. */
ent_err ent_eap_aka_response_build(uint8_t *out, size_t cap, size_t *out_len,
                                   const struct ent_eap_aka_response *r, const uint8_t *k_aut,
                                   size_t k_aut_len);

/* Server: parses an EAP-Response/AKA-{Challenge, Synchronization-Failure,
 * Authentication-Reject, Client-Error}. Structure only; no keys involved. Any other subtype
 * is ENT_EINVAL. */
ent_err ent_eap_aka_response_parse(struct ent_eap_aka_response *out, const uint8_t *pkt,
                                   size_t len);

/* Server: checks a parsed Challenge response r (parsed from pkt/len) against the round:
 * identifier and type must match (ENT_EINVAL), a non-empty AT_CHECKCODE is refused
 * (ENT_EAUTH: we never ran AKA-Identity, so only an empty one matches), then AT_MAC under
 * k_aut and AT_RES against xres (bit length and value) must both match (ENT_EAUTH). */
ent_err ent_eap_aka_response_verify(const struct ent_eap_aka_response *r, const uint8_t *pkt,
                                    size_t len, uint8_t type, uint8_t identifier,
                                    const uint8_t *xres, size_t xres_len, const uint8_t *k_aut,
                                    size_t k_aut_len);

/* Parses a permanent identity (exact bytes, no NUL needed). ENT_EUNSUPPORTED for well-formed
 * pseudonym, fast re-authentication or EAP-SIM identities (leading 1, 2, 3, 4, 5, 7, 8): the
 * server must ask for the permanent identity or fail. ENT_EINVAL for anything else that is
 * not `0|6` + 6..15 digits + `@` + [prefix.]mncDDD.mccDDD.3gppnetwork.org (case-insensitive
 * realm). */
ent_err ent_eap_aka_identity_parse(struct ent_eap_aka_identity *out, const char *id, size_t len);

/* RFC 4187 §7: MK = SHA1(identity || IK || CK) over the exact identity bytes. */
ent_err ent_eap_aka_mk(uint8_t mk[ENT_EAP_AKA_MK_LEN], const uint8_t *identity, size_t id_len,
                       const uint8_t ik[ENT_AKA_IK_LEN], const uint8_t ck[ENT_AKA_CK_LEN]);

/* RFC 4187 §7: K_encr, K_aut, MSK, EMSK from the FIPS 186-2 PRF over MK. Cannot fail. */
void ent_eap_aka_keys_from_mk(struct ent_eap_aka_keys *out, const uint8_t mk[ENT_EAP_AKA_MK_LEN]);

/* Both steps: EAP-AKA keys for identity/IK/CK. ENT_EINVAL for an empty identity. */
ent_err ent_eap_aka_keys_derive(struct ent_eap_aka_keys *out, const uint8_t *identity,
                                size_t id_len, const uint8_t ik[ENT_AKA_IK_LEN],
                                const uint8_t ck[ENT_AKA_CK_LEN]);

#endif
