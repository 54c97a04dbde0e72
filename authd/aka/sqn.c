/* SPDX-License-Identifier: Apache-2.0 */
/* SQN arithmetic and the USIM-side freshness check of 3GPP TS 33.102 Annex C (see
 * aka/sqn.h). */
#include "aka/sqn.h"

#include <string.h>

uint64_t ent_sqn_from_bytes(const uint8_t b[ENT_SQN_LEN])
{
    uint64_t v = 0;

    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        v = (v << 8) | b[i];
    return v;
}

void ent_sqn_to_bytes(uint8_t b[ENT_SQN_LEN], uint64_t sqn)
{
    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        b[i] = (uint8_t)(sqn >> (8 * (ENT_SQN_LEN - 1 - i)));
}

uint64_t ent_sqn_seq(uint64_t sqn, unsigned ind_bits)
{
    return (sqn & ENT_SQN_MAX) >> ind_bits;
}

unsigned ent_sqn_ind(uint64_t sqn, unsigned ind_bits)
{
    return (unsigned)(sqn & ((1ULL << ind_bits) - 1));
}

ent_err ent_sqn_make(uint64_t *out, uint64_t seq, unsigned ind, unsigned ind_bits)
{
    if (ind_bits > ENT_SQN_IND_BITS_MAX || ind >= (1u << ind_bits) ||
        seq > (ENT_SQN_MAX >> ind_bits))
        return ENT_EINVAL;
    *out = (seq << ind_bits) | ind;
    return ENT_OK;
}

ent_err ent_sqn_next(uint64_t *out, uint64_t sqn, unsigned ind_bits)
{
    uint64_t seq;
    unsigned ind;

    if (ind_bits > ENT_SQN_IND_BITS_MAX || sqn > ENT_SQN_MAX)
        return ENT_EINVAL;
    seq = ent_sqn_seq(sqn, ind_bits);
    ind = ent_sqn_ind(sqn, ind_bits);
    if (seq >= (ENT_SQN_MAX >> ind_bits))
        return ENT_ETOOBIG;
    *out = ((seq + 1) << ind_bits) | ((ind + 1) & ((1u << ind_bits) - 1));
    return ENT_OK;
}

ent_err ent_sqn_usim_init(struct ent_sqn_usim *u, unsigned ind_bits, uint64_t delta)
{
    if (ind_bits > ENT_SQN_IND_BITS_MAX)
        return ENT_EINVAL;
    memset(u, 0, sizeof(*u));
    u->ind_bits = ind_bits;
    u->delta = delta;
    return ENT_OK;
}

static uint64_t usim_seq_max(const struct ent_sqn_usim *u)
{
    uint64_t m = 0;

    for (unsigned i = 0; i < (1u << u->ind_bits); i++) {
        if (u->seq_ms[i] > m)
            m = u->seq_ms[i];
    }
    return m;
}

ent_err ent_sqn_usim_check(const struct ent_sqn_usim *u, uint64_t sqn)
{
    uint64_t seq = ent_sqn_seq(sqn, u->ind_bits);
    unsigned ind = ent_sqn_ind(sqn, u->ind_bits);
    uint64_t max;

    if (sqn > ENT_SQN_MAX)
        return ENT_EINVAL;
    /* Annex C.2.1: replay or re-ordering past this IND slot */
    if (seq <= u->seq_ms[ind])
        return ENT_ECONFLICT;
    /* Annex C.2.1: too far ahead (the network is out of step or SQN is near wrap-around) */
    max = usim_seq_max(u);
    if (u->delta != 0 && seq > max && seq - max > u->delta)
        return ENT_ECONFLICT;
    return ENT_OK;
}

void ent_sqn_usim_accept(struct ent_sqn_usim *u, uint64_t sqn)
{
    u->seq_ms[ent_sqn_ind(sqn, u->ind_bits)] = ent_sqn_seq(sqn, u->ind_bits);
}

uint64_t ent_sqn_usim_ms(const struct ent_sqn_usim *u)
{
    uint64_t m = 0;
    unsigned at = 0;

    for (unsigned i = 0; i < (1u << u->ind_bits); i++) {
        if (u->seq_ms[i] > m) {
            m = u->seq_ms[i];
            at = i;
        }
    }
    return (m << u->ind_bits) | at;
}
