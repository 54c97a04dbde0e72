/* SPDX-License-Identifier: Apache-2.0 */
/* The seam between the EAP-AKA/AKA' state machine (exchange.c) and where authentication
 * vectors come from. The state machine only asks "a vector for this IMSI and method" and,
 * on a synchronisation failure, "resynchronise with this RAND/AUTS, then a vector"; it never
 * sees K, OPc or SQN. Today one source exists, `local` (vector_local.c): credentials from
 * the store unwrapped with the KEK, Milenage, SQN from the store counter.
 *
 * How an external source plugs in (not built):
 *   - HSS over Diameter SWx (TS 29.273 §8.2.2.1 MAR/MAA): get() sends a
 *     Multimedia-Auth-Request with SIP-Auth-Data-Item (SIP-Authentication-Scheme
 *     "EAP-AKA" or "EAP-AKA'", the access network identity = network_name for AKA') and
 *     returns the first item's RAND, AUTN, XRES, CK, IK (CK'/IK' for AKA'). A resync puts
 *     RAND || AUTS in SIP-Authorization of the same MAR; the HSS resynchronises.
 *     DIAMETER_ERROR_USER_UNKNOWN (5001) maps to ENT_ENOTFOUND, transient 3xxx/400x to
 *     ENT_EUNAVAIL.
 *   - UDM over Nudm_UEAU (TS 29.503 §5.4.2.2 GenerateAuthData): POST
 *     /{supiOrSuci}/security-information/generate-auth-data with servingNetworkName
 *     (network_name) and, on resync, resynchronizationInfo {rand, auts}; the
 *     AuthenticationVector of type EAP_AKA_PRIME carries ckPrime/ikPrime.
 *   Both are asynchronous in reality: the source would run on the thread pool like the
 *   local one (get() may block) or grow a callback variant; the state machine already runs
 *   each RPC as one job, so a blocking get() is enough for a first version.
 *   - A full AAA relay (RADIUS/Diameter EAP to the operator's AAA) replaces the state
 *     machine rather than the source: exchange.c's start/continue would forward EAP packets
 *     and keep only the ticket and the exchange id; rpc.c would pick it per configuration.
 *
 * Contract of a source: thread-safe get(); vectors fresh on every call (a new SQN); for AKA'
 * ck/ik hold CK'/IK' already bound to network_name, and the AMF separation bit is set. */
#ifndef ENTITLE_AUTHD_VECTOR_SOURCE_H
#define ENTITLE_AUTHD_VECTOR_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aka/aka.h"
#include "ent/err.h"

struct authd;

struct authd_vector_request {
    const char *imsi;
    bool aka_prime;           /* EAP-AKA' (identity starting with '6') */
    const char *network_name; /* AKA' only */
    /* Resynchronisation: both set (the RAND of the rejected challenge and AT_AUTS) */
    const uint8_t *resync_rand;
    const uint8_t *auts;
};

/* For AKA', ck/ik are CK'/IK'. */
struct authd_vector {
    uint8_t rand[ENT_AKA_RAND_LEN];
    uint8_t autn[ENT_AKA_AUTN_LEN];
    uint8_t xres[ENT_AKA_RES_MAX];
    size_t xres_len;
    uint8_t ck[ENT_AKA_CK_LEN];
    uint8_t ik[ENT_AKA_IK_LEN];
};

struct authd_vector_source_ops {
    const char *name;
    /* One fresh vector. Errors: ENT_ENOTFOUND (unknown subscriber), ENT_EAUTH (resync: bad
     * MAC-S; SQN_HE unchanged), ENT_EUNSUPPORTED (method not possible for this subscriber),
     * ENT_EUNAVAIL/ENT_ESTORE (try later), ENT_ETOOBIG (SQN exhausted). */
    ent_err (*get)(struct authd_vector_source *vs, const struct authd_vector_request *req,
                   struct authd_vector *out);
    void (*free)(struct authd_vector_source *vs);
};

struct authd_vector_source {
    const struct authd_vector_source_ops *ops;
};

/* The local Milenage source over a's store, KEK and settings (a must outlive it). */
ent_err authd_vector_local_new(struct authd_vector_source **out, struct authd *a);

static inline ent_err authd_vector_get(struct authd_vector_source *vs,
                                       const struct authd_vector_request *req,
                                       struct authd_vector *out)
{
    return vs->ops->get(vs, req, out);
}

#endif
