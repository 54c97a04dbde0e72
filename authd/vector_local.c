/* SPDX-License-Identifier: Apache-2.0 */
/* The local vector source (vector_source.h): credentials unwrapped from the store,
 * Milenage vectors with a fresh SQN from the store counter, AUTS resynchronisation, and for
 * EAP-AKA' the CK'/IK' derivation bound to the configured network name. K and OPc live only
 * in a stack struct that is wiped before returning. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "aka/aka_prime.h"
#include "credentials.h"
#include "sqn.h"
#include "vector_source.h"

struct vector_local {
    struct authd_vector_source super;
    struct authd *a;
};

static ent_err local_get(struct authd_vector_source *vs, const struct authd_vector_request *req,
                         struct authd_vector *out)
{
    struct vector_local *vl = (struct vector_local *)vs;
    struct authd *a = vl->a;
    struct authd_credential cred;
    struct ent_aka_vector v;
    uint64_t sqn = 0;
    uint8_t amf[ENT_AKA_AMF_LEN];
    ent_err rc;

    rc = authd_credentials_get(a, req->imsi, &cred);
    if (rc == ENT_EAUTH)
        return ENT_EINTERNAL; /* a record no KEK opens: an operator problem, already logged */
    if (rc != ENT_OK)
        return rc;
    if (req->resync_rand != NULL && req->auts != NULL) {
        uint64_t sqn_ms = 0;
        /* TS 33.102 §6.3.5: MAC-S must check before SQN_HE moves. */
        rc = ent_aka_resync(&sqn_ms, cred.k, cred.opc, req->resync_rand, req->auts);
        if (rc == ENT_OK)
            rc = authd_sqn_resync(a->store, a->sqn_cache, req->imsi, sqn_ms, a->set.ind_bits);
        if (rc != ENT_OK)
            goto out;
    }
    rc = authd_sqn_advance(a->store, a->sqn_cache, req->imsi, a->set.ind_bits, &sqn);
    if (rc != ENT_OK)
        goto out;
    memcpy(amf, cred.amf, sizeof(amf));
    if (req->aka_prime)
        amf[0] |= ENT_AKA_AMF_SEPARATION_BIT; /* TS 33.402 §6.2 */
    rc = ent_aka_vector_generate(&v, cred.k, cred.opc, sqn, amf, NULL);
    if (rc != ENT_OK)
        goto out;
    memcpy(out->rand, v.rand, sizeof(out->rand));
    memcpy(out->autn, v.autn, sizeof(out->autn));
    memcpy(out->xres, v.xres, v.xres_len);
    out->xres_len = v.xres_len;
    if (req->aka_prime) {
        rc = ent_aka_prime_ck_ik(out->ck, out->ik, v.ck, v.ik, req->network_name,
                                 strlen(req->network_name), v.autn);
    } else {
        memcpy(out->ck, v.ck, sizeof(out->ck));
        memcpy(out->ik, v.ik, sizeof(out->ik));
    }
    OPENSSL_cleanse(&v, sizeof(v));
out:
    OPENSSL_cleanse(&cred, sizeof(cred));
    return rc;
}

static void local_free(struct authd_vector_source *vs)
{
    free(vs);
}

static const struct authd_vector_source_ops local_ops = {
    .name = "local",
    .get = local_get,
    .free = local_free,
};

ent_err authd_vector_local_new(struct authd_vector_source **out, struct authd *a)
{
    struct vector_local *vl = calloc(1, sizeof(*vl));
    if (vl == NULL)
        return ENT_ENOMEM;
    vl->super.ops = &local_ops;
    vl->a = a;
    *out = &vl->super;
    return ENT_OK;
}
