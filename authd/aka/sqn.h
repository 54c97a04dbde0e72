/* SPDX-License-Identifier: Apache-2.0 */
/* Sequence numbers for AKA (3GPP TS 33.102 §6.3.2 and Annex C): SQN is 48 bits, split as
 * SEQ || IND with the IND field `ind_bits` wide (default 5, Annex C.3.2). This header owns the
 * arithmetic (pack/unpack, next value for the home network) and the USIM-side freshness check
 * used by the device simulator. Where the network keeps SQN_HE (the store, with an atomic
 * increment) is authd's business, not this library's.
 *
 * Everything here is pure, thread-safe and allocation-free. */
#ifndef ENT_AKA_SQN_H
#define ENT_AKA_SQN_H

#include <stdbool.h>
#include <stdint.h>

#include "ent/err.h"

#define ENT_SQN_LEN              6
#define ENT_SQN_MAX              0xffffffffffffULL /* 2^48 - 1 */
#define ENT_SQN_IND_BITS_DEFAULT 5
#define ENT_SQN_IND_BITS_MAX     8
/* Annex C.2.1: the USIM rejects SEQ > SEQ_MS + delta (protects against wrap-around). 2^28
 * is the value the annex suggests. */
#define ENT_SQN_DELTA_DEFAULT (1ULL << 28)

/* Big-endian 6-byte SQN <-> integer. ent_sqn_to_bytes() ignores bits above 48. */
uint64_t ent_sqn_from_bytes(const uint8_t b[ENT_SQN_LEN]);
void ent_sqn_to_bytes(uint8_t b[ENT_SQN_LEN], uint64_t sqn);

/* SEQ and IND parts of `sqn` for a given IND width (<= ENT_SQN_IND_BITS_MAX). */
uint64_t ent_sqn_seq(uint64_t sqn, unsigned ind_bits);
unsigned ent_sqn_ind(uint64_t sqn, unsigned ind_bits);
/* SEQ || IND; ENT_EINVAL if either does not fit. */
ent_err ent_sqn_make(uint64_t *out, uint64_t seq, unsigned ind, unsigned ind_bits);

/* The home network's next SQN after `sqn` (Annex C.1.1 and C.3.2): SEQ + 1 and IND advanced
 * cyclically (IND + 1 mod 2^ind_bits), so consecutive vectors land in different USIM array
 * slots and may be used out of order. ENT_EINVAL if ind_bits is out of range or `sqn` does not
 * fit in 48 bits; ENT_ETOOBIG if SEQ would overflow (the subscriber needs a new K). */
ent_err ent_sqn_next(uint64_t *out, uint64_t sqn, unsigned ind_bits);

/* USIM-side SQN state of Annex C.2.1/C.3: one highest accepted SEQ per IND value. Zeroed by
 * ent_sqn_usim_init(); plain data, copy freely. */
struct ent_sqn_usim {
    unsigned ind_bits;
    uint64_t delta; /* 0 disables the delta check */
    uint64_t seq_ms[1u << ENT_SQN_IND_BITS_MAX];
};

/* Fresh state (all SEQ_MS = 0). ENT_EINVAL if ind_bits > ENT_SQN_IND_BITS_MAX. */
ent_err ent_sqn_usim_init(struct ent_sqn_usim *u, unsigned ind_bits, uint64_t delta);

/* Checks `sqn` from an AUTN against the state: ENT_OK when SEQ > SEQ_MS(IND) and SEQ is
 * within delta of the highest SEQ_MS; ENT_ECONFLICT (a synchronisation failure: the caller
 * sends AUTS built from ent_sqn_usim_ms()) otherwise. Does not modify the state. */
ent_err ent_sqn_usim_check(const struct ent_sqn_usim *u, uint64_t sqn);

/* Records an accepted `sqn` (call after ent_sqn_usim_check() returned ENT_OK). */
void ent_sqn_usim_accept(struct ent_sqn_usim *u, uint64_t sqn);

/* SQN_MS to put in AUTS: the highest accepted SEQ_MS with its IND (Annex C.3.4 / §6.3.5). */
uint64_t ent_sqn_usim_ms(const struct ent_sqn_usim *u);

#endif
