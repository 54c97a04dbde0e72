/* SPDX-License-Identifier: Apache-2.0 */
/* Milenage (3GPP TS 35.206): the AKA algorithm set f1, f1*, f2, f3, f4, f5, f5* and the OPc
 * derivation, on top of OpenSSL AES-128. This header owns only the raw functions; building
 * AKA vectors, AUTN/AUTS and SQN policy live in aka/aka.h and aka/sqn.h.
 *
 * Every function is pure (no global state besides a lazily fetched, immutable AES cipher
 * handle), thread-safe, and allocates nothing but one EVP_CIPHER_CTX for the duration of a
 * call. All buffers are caller-owned fixed-size arrays of the lengths named below; outputs are
 * written only on ENT_OK. Errors: ENT_ENOMEM if OpenSSL cannot allocate a context,
 * ENT_EINTERNAL if AES fails (never with valid inputs). */
#ifndef ENT_AKA_MILENAGE_H
#define ENT_AKA_MILENAGE_H

#include <stdint.h>

#include "ent/err.h"

#define ENT_MILENAGE_K_LEN    16 /* subscriber key K */
#define ENT_MILENAGE_OP_LEN   16 /* operator variant OP and OPc */
#define ENT_MILENAGE_RAND_LEN 16
#define ENT_MILENAGE_SQN_LEN  6
#define ENT_MILENAGE_AMF_LEN  2
#define ENT_MILENAGE_MAC_LEN  8 /* MAC-A (f1) and MAC-S (f1*) */
#define ENT_MILENAGE_RES_LEN  8 /* f2 output */
#define ENT_MILENAGE_CK_LEN   16
#define ENT_MILENAGE_IK_LEN   16
#define ENT_MILENAGE_AK_LEN   6 /* AK (f5) and AK* (f5*) */

/* Which functions ent_milenage_run() computes (bit mask). */
#define ENT_MILENAGE_F1     0x1u /* MAC-A: needs sqn and amf */
#define ENT_MILENAGE_F1STAR 0x2u /* MAC-S: needs sqn and amf */
#define ENT_MILENAGE_F2345  0x4u /* RES, CK, IK, AK */
#define ENT_MILENAGE_F5STAR 0x8u /* AK* */
#define ENT_MILENAGE_ALL    0xfu

/* Outputs of one Milenage run; only the fields selected by the mask are written. */
struct ent_milenage_out {
    uint8_t mac_a[ENT_MILENAGE_MAC_LEN];
    uint8_t mac_s[ENT_MILENAGE_MAC_LEN];
    uint8_t res[ENT_MILENAGE_RES_LEN];
    uint8_t ck[ENT_MILENAGE_CK_LEN];
    uint8_t ik[ENT_MILENAGE_IK_LEN];
    uint8_t ak[ENT_MILENAGE_AK_LEN];
    uint8_t ak_star[ENT_MILENAGE_AK_LEN];
};

/* OPc = OP xor E_K(OP). Operators usually provision OPc; call this once per subscriber when
 * only OP is known, not per authentication. */
ent_err ent_milenage_opc(uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                         const uint8_t op[ENT_MILENAGE_OP_LEN]);

/* Computes the functions in `funcs` (ENT_MILENAGE_* mask, non-zero) with one AES key schedule
 * and one TEMP = E_K(RAND xor OPc). `sqn` and `amf` may be NULL unless F1 or F1STAR is
 * requested (ENT_EINVAL otherwise). Fields of *out not selected are left untouched. */
ent_err
ent_milenage_run(struct ent_milenage_out *out, unsigned funcs, const uint8_t k[ENT_MILENAGE_K_LEN],
                 const uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                 const uint8_t sqn[ENT_MILENAGE_SQN_LEN], const uint8_t amf[ENT_MILENAGE_AMF_LEN]);

/* f1: network authentication code MAC-A. */
ent_err ent_milenage_f1(uint8_t mac_a[ENT_MILENAGE_MAC_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                        const uint8_t opc[ENT_MILENAGE_OP_LEN],
                        const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                        const uint8_t sqn[ENT_MILENAGE_SQN_LEN],
                        const uint8_t amf[ENT_MILENAGE_AMF_LEN]);

/* f1*: resynchronisation code MAC-S (TS 33.102 uses AMF = 0000 for AUTS). */
ent_err ent_milenage_f1star(uint8_t mac_s[ENT_MILENAGE_MAC_LEN],
                            const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                            const uint8_t sqn[ENT_MILENAGE_SQN_LEN],
                            const uint8_t amf[ENT_MILENAGE_AMF_LEN]);

/* f2, f3, f4, f5: RES, CK, IK and AK from one RAND. Any output pointer may be NULL if the
 * caller does not need it. */
ent_err ent_milenage_f2345(uint8_t res[ENT_MILENAGE_RES_LEN], uint8_t ck[ENT_MILENAGE_CK_LEN],
                           uint8_t ik[ENT_MILENAGE_IK_LEN], uint8_t ak[ENT_MILENAGE_AK_LEN],
                           const uint8_t k[ENT_MILENAGE_K_LEN],
                           const uint8_t opc[ENT_MILENAGE_OP_LEN],
                           const uint8_t rand[ENT_MILENAGE_RAND_LEN]);

/* f5*: the anonymity key AK* that conceals SQN_MS in AUTS. */
ent_err ent_milenage_f5star(uint8_t ak_star[ENT_MILENAGE_AK_LEN],
                            const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_MILENAGE_RAND_LEN]);

#endif
