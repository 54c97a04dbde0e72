/* SPDX-License-Identifier: Apache-2.0 */
/* EAP-AKA' key hierarchy (RFC 5448 §3.3-3.4 as updated by RFC 9048; 3GPP TS 33.402 Annex
 * A.2): CK'/IK' bound to the access network name, and MK = PRF'(IK' || CK', "EAP-AKA'" ||
 * identity) split into K_encr, K_aut (32), K_re, MSK and EMSK. Packets (type 50, AT_KDF,
 * AT_KDF_INPUT, HMAC-SHA-256-128 AT_MAC) share the codec in aka/eap_aka.h.
 *
 * Thread-safe and allocation-free except for OpenSSL's per-call HMAC context. Outputs are
 * caller-owned and written only on ENT_OK; keys are secrets. */
#ifndef ENT_AKA_AKA_PRIME_H
#define ENT_AKA_AKA_PRIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aka/aka.h"
#include "aka/eap_aka.h"
#include "ent/err.h"

/* TS 33.402 Annex A.2: the FC value of the CK'/IK' derivation. */
#define ENT_AKA_PRIME_FC 0x20

/* CK' || IK' = HMAC-SHA-256(CK || IK, FC || network name || len(name) (2 bytes) ||
 * SQN xor AK || 0x0006). `sqn_xor_ak` is AUTN[0..5]. ENT_EINVAL for an empty name or one
 * longer than ENT_EAP_AKA_NETNAME_MAX. */
ent_err ent_aka_prime_ck_ik(uint8_t ck_prime[ENT_AKA_CK_LEN], uint8_t ik_prime[ENT_AKA_IK_LEN],
                            const uint8_t ck[ENT_AKA_CK_LEN], const uint8_t ik[ENT_AKA_IK_LEN],
                            const char *network_name, size_t network_name_len,
                            const uint8_t sqn_xor_ak[ENT_SQN_LEN]);

/* RFC 5448 §3.3: keys from IK'/CK' and the exact identity bytes (k_aut_len = 32, k_re set).
 * ENT_EINVAL for an empty identity or one longer than ENT_EAP_AKA_IDENTITY_MAX. */
ent_err ent_aka_prime_keys_derive(struct ent_eap_aka_keys *out, const uint8_t *identity,
                                  size_t id_len, const uint8_t ik_prime[ENT_AKA_IK_LEN],
                                  const uint8_t ck_prime[ENT_AKA_CK_LEN]);

/* TS 33.402 §6.2 / RFC 5448 §3.4: AKA' requires the AMF separation bit. True when set in
 * `amf` (the server checks it before issuing an AKA' vector; the peer checks AUTN[6..7]). */
bool ent_aka_prime_amf_ok(const uint8_t amf[ENT_AKA_AMF_LEN]);

#endif
