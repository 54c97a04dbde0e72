/* SPDX-License-Identifier: Apache-2.0 */
/* Subscriber credentials at rest (ENT_COLL_CREDENTIALS, key = IMSI): K, OPc and AMF wrapped
 * with the key-encryption key (AES-256-GCM through ent/seal.h, the IMSI bound into the
 * purpose so a record cannot be moved to another subscriber). The SQN lives beside it as the
 * store counter ("sqn", IMSI), see sqn.h. Nothing here ever returns K or OPc over the bus:
 * authd_credentials_get() is for the local vector source only.
 *
 * Record layout (the store document's bytes): the sealed blob of K (16) || OPc (16) || AMF (2).
 *
 * KEK rotation: the KEK keyring's first key wraps; authd_credentials_rewrap_all() re-wraps
 * every record opened by an older key (run at start-up, see docs/operations.md).
 *
 * Threads: any (the store serialises); blocking store calls. */
#ifndef ENTITLE_AUTHD_CREDENTIALS_H
#define ENTITLE_AUTHD_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authd.h"

struct authd_credential {
    uint8_t k[ENT_MILENAGE_K_LEN];
    uint8_t opc[ENT_MILENAGE_OP_LEN];
    uint8_t amf[ENT_AKA_AMF_LEN];
};

/* True for 6..15 decimal digits. */
bool authd_imsi_ok(const char *imsi);

/* Stores (or replaces) a subscriber's credentials. Exactly one of opc/op (16 bytes each) is
 * given (op: OPc is derived here). amf NULL: the configured default. sqn (6 bytes) NULL:
 * leave the SQN counter as it is; otherwise it is raised to SEQ(sqn) (never lowered, so a
 * re-provisioning cannot make authd reuse an SQN). Errors: ENT_EINVAL (bad IMSI or lengths),
 * store errors. */
ent_err authd_credentials_put(struct authd *a, const char *imsi, const uint8_t *k, size_t k_len,
                              const uint8_t *opc, size_t opc_len, const uint8_t *op, size_t op_len,
                              const uint8_t *sqn, size_t sqn_len, const uint8_t *amf,
                              size_t amf_len);

/* Unwraps a subscriber's credentials into *out (the caller wipes it after use).
 * ENT_ENOTFOUND (no such subscriber), ENT_EAUTH (record not openable with any KEK: logged),
 * store errors. */
ent_err authd_credentials_get(struct authd *a, const char *imsi, struct authd_credential *out);

/* Deletes a subscriber's credentials. ENT_ENOTFOUND if there were none. */
ent_err authd_credentials_delete(struct authd *a, const char *imsi);

/* Re-wraps every record whose wrapping key is not the current KEK (conditional update, so
 * a concurrent CredentialPut wins). *rewrapped and *failed (may be NULL) get the counts;
 * records no key opens are counted as failed and left alone. */
ent_err authd_credentials_rewrap_all(struct authd *a, size_t *rewrapped, size_t *failed);

#endif
