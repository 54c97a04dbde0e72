/* SPDX-License-Identifier: Apache-2.0 */
/* UMTS AKA with Milenage (3GPP TS 33.102 §6.3): the network side builds authentication
 * vectors (RAND, AUTN, XRES, CK, IK) and resynchronises from AUTS; the USIM side (used by the
 * device simulator and tests) verifies AUTN, and computes RES/CK/IK or AUTS. SQN policy (what
 * SQN to use next, whether the USIM accepts it) is in aka/sqn.h; EAP framing in
 * aka/eap_aka.h.
 *
 * All calls are thread-safe and allocation-free apart from Milenage's per-call cipher
 * context. Buffers are caller-owned arrays of the named sizes; outputs are written only on
 * ENT_OK. K and OPc are secrets: callers keep them out of logs. */
#ifndef ENT_AKA_AKA_H
#define ENT_AKA_AKA_H

#include <stddef.h>
#include <stdint.h>

#include "aka/milenage.h"
#include "aka/sqn.h"
#include "ent/err.h"

#define ENT_AKA_RAND_LEN 16
#define ENT_AKA_AUTN_LEN 16 /* SQN xor AK (6) || AMF (2) || MAC-A (8) */
#define ENT_AKA_AUTS_LEN 14 /* SQN_MS xor AK* (6) || MAC-S (8) */
#define ENT_AKA_RES_MAX  16 /* RES/XRES may be 4..16 bytes; Milenage gives 8 */
#define ENT_AKA_CK_LEN   16
#define ENT_AKA_IK_LEN   16
#define ENT_AKA_AMF_LEN  2
/* TS 33.102 Annex H / TS 33.402 §6.2: bit 0 of AMF (the top bit of its first byte) is the
 * "separation bit"; AKA' (EPS, non-3GPP access) requires it set. */
#define ENT_AKA_AMF_SEPARATION_BIT 0x80

/* One authentication vector (network side). */
struct ent_aka_vector {
    uint8_t rand[ENT_AKA_RAND_LEN];
    uint8_t autn[ENT_AKA_AUTN_LEN]; /* autn[0..5] = SQN xor AK, needed by AKA' */
    uint8_t xres[ENT_AKA_RES_MAX];
    size_t xres_len;
    uint8_t ck[ENT_AKA_CK_LEN];
    uint8_t ik[ENT_AKA_IK_LEN];
};

/* What the USIM computes for an AUTN it accepted (peer side). */
struct ent_aka_usim_result {
    uint64_t sqn; /* SQN recovered from AUTN; check freshness with ent_sqn_usim_check() */
    uint8_t amf[ENT_AKA_AMF_LEN];
    uint8_t res[ENT_AKA_RES_MAX];
    size_t res_len;
    uint8_t ck[ENT_AKA_CK_LEN];
    uint8_t ik[ENT_AKA_IK_LEN];
};

/* Builds a vector for SQN `sqn` (<= ENT_SQN_MAX) and `amf`. `rand` gives RAND, or NULL to
 * draw it from OpenSSL's DRBG (ent_random_bytes()). ENT_EINVAL for a bad SQN, ENT_EINTERNAL if the
 * random generator fails, otherwise as Milenage. */
ent_err ent_aka_vector_generate(struct ent_aka_vector *out, const uint8_t k[ENT_MILENAGE_K_LEN],
                                const uint8_t opc[ENT_MILENAGE_OP_LEN], uint64_t sqn,
                                const uint8_t amf[ENT_AKA_AMF_LEN],
                                const uint8_t rand[ENT_AKA_RAND_LEN]);

/* USIM side: recovers SQN from AUTN and checks MAC-A. ENT_OK fills *out (RES, CK, IK, SQN,
 * AMF); ENT_EAUTH if MAC-A is wrong (the peer answers Authentication-Reject, or stays silent
 * as AOSP does). SQN freshness is the caller's next step (aka/sqn.h). */
ent_err ent_aka_usim_verify(struct ent_aka_usim_result *out, const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_AKA_RAND_LEN],
                            const uint8_t autn[ENT_AKA_AUTN_LEN]);

/* USIM side, after a synchronisation failure (§6.3.3): AUTS = (SQN_MS xor f5*(RAND)) ||
 * f1*(SQN_MS, RAND, AMF = 0000). */
ent_err ent_aka_auts_build(uint8_t auts[ENT_AKA_AUTS_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                           const uint8_t opc[ENT_MILENAGE_OP_LEN],
                           const uint8_t rand[ENT_AKA_RAND_LEN], uint64_t sqn_ms);

/* Network side resynchronisation (§6.3.5): SQN_MS = AUTS[0..5] xor f5*(RAND), then MAC-S must
 * equal f1*(SQN_MS, RAND, AMF = 0000), compared in constant time. ENT_OK writes *sqn_ms (the
 * caller then sets SQN_HE from it and issues a fresh vector); ENT_EAUTH if MAC-S is wrong, in
 * which case the AUTS must not move SQN_HE. `rand` is the RAND of the rejected challenge. */
ent_err ent_aka_resync(uint64_t *sqn_ms, const uint8_t k[ENT_MILENAGE_K_LEN],
                       const uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t rand[ENT_AKA_RAND_LEN],
                       const uint8_t auts[ENT_AKA_AUTS_LEN]);

#endif
