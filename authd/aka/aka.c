/* SPDX-License-Identifier: Apache-2.0 */
/* AKA vectors, USIM-side AUTN verification, AUTS and resynchronisation (3GPP TS 33.102 §6.3)
 * on top of Milenage; see aka/aka.h. */
#include "aka/aka.h"

#include <string.h>

#include <openssl/crypto.h>

#include "ent/seal.h"
#include "ent/util.h"

/* TS 33.102 §6.3.3: AMF* in MAC-S is the dummy value 0000. */
static const uint8_t amf_resync[ENT_AKA_AMF_LEN] = {0, 0};

ent_err ent_aka_vector_generate(struct ent_aka_vector *out, const uint8_t k[ENT_MILENAGE_K_LEN],
                                const uint8_t opc[ENT_MILENAGE_OP_LEN], uint64_t sqn,
                                const uint8_t amf[ENT_AKA_AMF_LEN],
                                const uint8_t rand[ENT_AKA_RAND_LEN])
{
    struct ent_milenage_out m;
    uint8_t r[ENT_AKA_RAND_LEN], sqn_b[ENT_SQN_LEN];
    ent_err rc;

    if (out == NULL || k == NULL || opc == NULL || amf == NULL || sqn > ENT_SQN_MAX)
        return ENT_EINVAL;
    if (rand != NULL)
        memcpy(r, rand, sizeof(r));
    else if (ent_random_bytes(r, sizeof(r)) != ENT_OK)
        return ENT_EINTERNAL;
    ent_sqn_to_bytes(sqn_b, sqn);
    rc = ent_milenage_run(&m, ENT_MILENAGE_F1 | ENT_MILENAGE_F2345, k, opc, r, sqn_b, amf);
    if (rc != ENT_OK)
        return rc;
    memcpy(out->rand, r, sizeof(r));
    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        out->autn[i] = sqn_b[i] ^ m.ak[i];
    memcpy(out->autn + 6, amf, 2);
    memcpy(out->autn + 8, m.mac_a, 8);
    memset(out->xres, 0, sizeof(out->xres));
    memcpy(out->xres, m.res, ENT_MILENAGE_RES_LEN);
    out->xres_len = ENT_MILENAGE_RES_LEN;
    memcpy(out->ck, m.ck, sizeof(out->ck));
    memcpy(out->ik, m.ik, sizeof(out->ik));
    OPENSSL_cleanse(&m, sizeof(m));
    return ENT_OK;
}

ent_err ent_aka_usim_verify(struct ent_aka_usim_result *out, const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_AKA_RAND_LEN],
                            const uint8_t autn[ENT_AKA_AUTN_LEN])
{
    struct ent_milenage_out m;
    uint8_t sqn_b[ENT_SQN_LEN];
    ent_err rc;

    if (out == NULL || k == NULL || opc == NULL || rand == NULL || autn == NULL)
        return ENT_EINVAL;
    /* AK first: SQN is concealed by it, and MAC-A covers the clear SQN. */
    rc = ent_milenage_run(&m, ENT_MILENAGE_F2345, k, opc, rand, NULL, NULL);
    if (rc != ENT_OK)
        return rc;
    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        sqn_b[i] = autn[i] ^ m.ak[i];
    rc = ent_milenage_run(&m, ENT_MILENAGE_F1, k, opc, rand, sqn_b, autn + 6);
    if (rc != ENT_OK)
        goto out;
    if (!ent_ct_equal(m.mac_a, autn + 8, ENT_MILENAGE_MAC_LEN)) {
        rc = ENT_EAUTH;
        goto out;
    }
    out->sqn = ent_sqn_from_bytes(sqn_b);
    memcpy(out->amf, autn + 6, 2);
    memset(out->res, 0, sizeof(out->res));
    memcpy(out->res, m.res, ENT_MILENAGE_RES_LEN);
    out->res_len = ENT_MILENAGE_RES_LEN;
    memcpy(out->ck, m.ck, sizeof(out->ck));
    memcpy(out->ik, m.ik, sizeof(out->ik));
out:
    OPENSSL_cleanse(&m, sizeof(m));
    return rc;
}

ent_err ent_aka_auts_build(uint8_t auts[ENT_AKA_AUTS_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                           const uint8_t opc[ENT_MILENAGE_OP_LEN],
                           const uint8_t rand[ENT_AKA_RAND_LEN], uint64_t sqn_ms)
{
    struct ent_milenage_out m;
    uint8_t sqn_b[ENT_SQN_LEN];
    ent_err rc;

    if (auts == NULL || sqn_ms > ENT_SQN_MAX)
        return ENT_EINVAL;
    ent_sqn_to_bytes(sqn_b, sqn_ms);
    rc = ent_milenage_run(&m, ENT_MILENAGE_F1STAR | ENT_MILENAGE_F5STAR, k, opc, rand, sqn_b,
                          amf_resync);
    if (rc != ENT_OK)
        return rc;
    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        auts[i] = sqn_b[i] ^ m.ak_star[i];
    memcpy(auts + 6, m.mac_s, 8);
    OPENSSL_cleanse(&m, sizeof(m));
    return ENT_OK;
}

ent_err ent_aka_resync(uint64_t *sqn_ms, const uint8_t k[ENT_MILENAGE_K_LEN],
                       const uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t rand[ENT_AKA_RAND_LEN],
                       const uint8_t auts[ENT_AKA_AUTS_LEN])
{
    struct ent_milenage_out m;
    uint8_t sqn_b[ENT_SQN_LEN];
    ent_err rc;

    if (sqn_ms == NULL || auts == NULL)
        return ENT_EINVAL;
    rc = ent_milenage_run(&m, ENT_MILENAGE_F5STAR, k, opc, rand, NULL, NULL);
    if (rc != ENT_OK)
        return rc;
    for (unsigned i = 0; i < ENT_SQN_LEN; i++)
        sqn_b[i] = auts[i] ^ m.ak_star[i];
    rc = ent_milenage_run(&m, ENT_MILENAGE_F1STAR, k, opc, rand, sqn_b, amf_resync);
    if (rc != ENT_OK)
        goto out;
    if (!ent_ct_equal(m.mac_s, auts + 6, ENT_MILENAGE_MAC_LEN)) {
        rc = ENT_EAUTH;
        goto out;
    }
    *sqn_ms = ent_sqn_from_bytes(sqn_b);
out:
    OPENSSL_cleanse(&m, sizeof(m));
    return rc;
}
