/* SPDX-License-Identifier: Apache-2.0 */
/* SQN_HE management (TS 33.102 Annex C) over the store. The store counter ("sqn", IMSI)
 * holds SEQ_HE; each vector takes a fresh SEQ through ent_store_incr(), so two authd
 * replicas on one store never hand out the same SQN, and IND is SEQ mod 2^ind_bits
 * (cyclic, Annex C.3.2). SQN = SEQ || IND (aka/sqn.h does the arithmetic).
 *
 * Leasing (auth.sqn_lease = L > 1): one increment by L reserves SEQ values
 * (v-L, v] for this process; they are handed out from memory until used up, and a
 * resynchronisation or a restart throws the rest away. Values are never reused, only
 * skipped; the USIM accepts gaps (Annex C.2.1: SEQ only has to grow, within delta = 2^28).
 * Why the default is 1: a lease only saves a store write when the same subscriber comes
 * back within it (devices authenticate about once per token validity), and with several
 * replicas the rest of an old lease can be below values another replica handed out since;
 * the USIM accepts a SEQ only above the last one in its IND slot (Annex C.2.2), so such a
 * value costs a resynchronisation round. Leasing suits one replica serving repeat traffic.
 *
 * Threads: any. */
#ifndef ENTITLE_AUTHD_SQN_H
#define ENTITLE_AUTHD_SQN_H

#include <stdint.h>

#include "ent/store.h"

#define AUTHD_SQN_COUNTER "sqn"

struct authd_sqn_cache;

/* A per-process lease cache for `lease` values per increment (lease >= 2). ENT_ENOMEM. */
ent_err authd_sqn_cache_new(struct authd_sqn_cache **out, unsigned lease);
void authd_sqn_cache_free(struct authd_sqn_cache *c);

/* The next SQN for imsi: ENT_OK writes *sqn. cache NULL: one store increment per call.
 * Errors: ENT_ETOOBIG (SEQ exhausted: the subscriber needs a new K), store errors. */
ent_err authd_sqn_advance(struct ent_store *s, struct authd_sqn_cache *cache, const char *imsi,
                          unsigned ind_bits, uint64_t *sqn);

/* Resynchronisation: raises SEQ_HE to at least SEQ(sqn_ms) so the next authd_sqn_advance()
 * is past SQN_MS, and drops this process's lease for imsi. */
ent_err authd_sqn_resync(struct ent_store *s, struct authd_sqn_cache *cache, const char *imsi,
                         uint64_t sqn_ms, unsigned ind_bits);

/* Provisioning: raises SEQ_HE to at least SEQ(sqn). */
ent_err authd_sqn_set_min(struct ent_store *s, const char *imsi, uint64_t sqn, unsigned ind_bits);

#endif
