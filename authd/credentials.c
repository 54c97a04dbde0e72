/* SPDX-License-Identifier: Apache-2.0 */
/* Credentials at rest (credentials.h): wrapping with the KEK keyring, the store record, and
 * re-wrapping on KEK rotation. K and OPc exist in clear only in stack buffers that are wiped
 * before returning. */
#include "credentials.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "aka/milenage.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "sqn.h"

#define CRED_PT_LEN   (ENT_MILENAGE_K_LEN + ENT_MILENAGE_OP_LEN + ENT_AKA_AMF_LEN)
#define CRED_BLOB_MAX (CRED_PT_LEN + ENT_SEAL_OVERHEAD_MAX)

static ent_counter cred_ops =
    ENT_COUNTER("entitle_authd_credential_ops_total", "Credential operations by kind and result",
                "op", "result");

bool authd_imsi_ok(const char *imsi)
{
    size_t n = imsi ? strlen(imsi) : 0;
    if (n < 6 || n > AUTHD_IMSI_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (imsi[i] < '0' || imsi[i] > '9')
            return false;
    return true;
}

/* The purpose binds a record to its subscriber: a blob copied under another IMSI's key
 * fails the GCM tag. */
static void cred_purpose(char *out, size_t cap, const char *imsi)
{
    snprintf(out, cap, "%s:%s", AUTHD_PURPOSE_CRED, imsi);
}

static ent_err cred_wrap(struct authd *a, const char *imsi, const uint8_t pt[CRED_PT_LEN],
                         uint8_t *blob, size_t *blob_len)
{
    char purpose[64];
    cred_purpose(purpose, sizeof(purpose), imsi);
    return ent_seal(a->kek, purpose, pt, CRED_PT_LEN, blob, CRED_BLOB_MAX, blob_len);
}

static ent_err cred_unwrap(struct authd *a, const char *imsi, const uint8_t *blob, size_t len,
                           uint8_t pt[CRED_PT_LEN], const char **key_id)
{
    char purpose[64];
    size_t n = 0;
    uint8_t tmp[CRED_BLOB_MAX];
    ent_err rc;

    cred_purpose(purpose, sizeof(purpose), imsi);
    rc = ent_unseal(a->kek, purpose, blob, len, tmp, sizeof(tmp), &n, key_id);
    if (rc == ENT_OK && n != CRED_PT_LEN)
        rc = ENT_EAUTH;
    if (rc == ENT_OK)
        memcpy(pt, tmp, CRED_PT_LEN);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return rc == ENT_EINVAL || rc == ENT_ETOOBIG ? ENT_EAUTH : rc;
}

ent_err authd_credentials_put(struct authd *a, const char *imsi, const uint8_t *k, size_t k_len,
                              const uint8_t *opc, size_t opc_len, const uint8_t *op, size_t op_len,
                              const uint8_t *sqn, size_t sqn_len, const uint8_t *amf,
                              size_t amf_len)
{
    uint8_t pt[CRED_PT_LEN];
    uint8_t blob[CRED_BLOB_MAX];
    size_t blob_len = 0;
    ent_err rc;

    if (!authd_imsi_ok(imsi) || k == NULL || k_len != ENT_MILENAGE_K_LEN)
        return ENT_EINVAL;
    if ((opc_len > 0) == (op_len > 0))
        return ENT_EINVAL; /* exactly one of OPc and OP */
    if ((opc_len > 0 && opc_len != ENT_MILENAGE_OP_LEN) ||
        (op_len > 0 && op_len != ENT_MILENAGE_OP_LEN))
        return ENT_EINVAL;
    if ((sqn_len != 0 && sqn_len != ENT_SQN_LEN) || (amf_len != 0 && amf_len != ENT_AKA_AMF_LEN))
        return ENT_EINVAL;
    memcpy(pt, k, ENT_MILENAGE_K_LEN);
    if (opc_len > 0) {
        memcpy(pt + ENT_MILENAGE_K_LEN, opc, ENT_MILENAGE_OP_LEN);
    } else {
        rc = ent_milenage_opc(pt + ENT_MILENAGE_K_LEN, k, op);
        if (rc != ENT_OK)
            goto out;
    }
    memcpy(pt + ENT_MILENAGE_K_LEN + ENT_MILENAGE_OP_LEN, amf_len ? amf : a->set.amf,
           ENT_AKA_AMF_LEN);
    rc = cred_wrap(a, imsi, pt, blob, &blob_len);
    if (rc != ENT_OK)
        goto out;
    /* SQN first: a record must never be usable with a counter below the provisioned SQN. */
    if (sqn_len > 0) {
        rc = authd_sqn_set_min(a->store, imsi, ent_sqn_from_bytes(sqn), a->set.ind_bits);
        if (rc != ENT_OK)
            goto out;
    }
    struct ent_store_doc doc = {.key = (char *)imsi, .data = blob, .len = blob_len};
    rc = ent_store_put(a->store, ENT_COLL_CREDENTIALS, &doc, NULL);
out:
    OPENSSL_cleanse(pt, sizeof(pt));
    ent_counter_inc(&cred_ops, "put", ent_err_name(rc));
    return rc;
}

ent_err authd_credentials_get(struct authd *a, const char *imsi, struct authd_credential *out)
{
    struct ent_store_doc doc = {0};
    uint8_t pt[CRED_PT_LEN];
    ent_err rc = ent_store_get(a->store, ENT_COLL_CREDENTIALS, imsi, &doc);

    if (rc != ENT_OK)
        return rc;
    rc = cred_unwrap(a, imsi, doc.data, doc.len, pt, NULL);
    ent_store_doc_free(&doc);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "authd.credential_unwrap_failed", ENT_KV_STR("imsi", ent_mask_id(imsi)),
                      ENT_KV_STR("error", ent_err_name(rc)));
        ent_counter_inc(&cred_ops, "unwrap", ent_err_name(rc));
        return rc;
    }
    memcpy(out->k, pt, ENT_MILENAGE_K_LEN);
    memcpy(out->opc, pt + ENT_MILENAGE_K_LEN, ENT_MILENAGE_OP_LEN);
    memcpy(out->amf, pt + ENT_MILENAGE_K_LEN + ENT_MILENAGE_OP_LEN, ENT_AKA_AMF_LEN);
    OPENSSL_cleanse(pt, sizeof(pt));
    return ENT_OK;
}

ent_err authd_credentials_delete(struct authd *a, const char *imsi)
{
    if (!authd_imsi_ok(imsi))
        return ENT_EINVAL;
    ent_err rc = ent_store_delete(a->store, ENT_COLL_CREDENTIALS, imsi, 0);
    ent_counter_inc(&cred_ops, "delete", ent_err_name(rc));
    return rc;
}

/* One record: unwrap with whichever key opens it; if that was not the current key, wrap
 * again and write back only if nobody changed the record meanwhile. */
static ent_err cred_rewrap_one(struct authd *a, const struct ent_store_doc *doc, bool *changed)
{
    uint8_t pt[CRED_PT_LEN];
    uint8_t blob[CRED_BLOB_MAX];
    size_t blob_len = 0;
    const char *kid = NULL;
    ent_err rc = cred_unwrap(a, doc->key, doc->data, doc->len, pt, &kid);

    *changed = false;
    if (rc != ENT_OK)
        return rc;
    if (strcmp(kid, ent_keyring_current_id(a->kek)) == 0) {
        OPENSSL_cleanse(pt, sizeof(pt));
        return ENT_OK;
    }
    rc = cred_wrap(a, doc->key, pt, blob, &blob_len);
    OPENSSL_cleanse(pt, sizeof(pt));
    if (rc != ENT_OK)
        return rc;
    struct ent_store_doc nd = {.key = doc->key, .data = blob, .len = blob_len};
    rc = ent_store_update(a->store, ENT_COLL_CREDENTIALS, &nd, doc->version, NULL);
    if (rc == ENT_ECONFLICT)
        return ENT_OK; /* a concurrent put wrapped it with the current key already */
    *changed = rc == ENT_OK;
    return rc;
}

ent_err authd_credentials_rewrap_all(struct authd *a, size_t *rewrapped, size_t *failed)
{
    char *after = NULL;
    size_t n_ok = 0, n_fail = 0;
    ent_err rc = ENT_OK;

    for (;;) {
        struct ent_store_page page = {0};
        rc = ent_store_query(a->store, ENT_COLL_CREDENTIALS, -1, NULL, after, 500, &page);
        free(after);
        after = NULL;
        if (rc != ENT_OK)
            break;
        for (size_t i = 0; i < page.n; i++) {
            bool changed = false;
            ent_err r1 = cred_rewrap_one(a, &page.docs[i], &changed);
            if (r1 == ENT_EAUTH) {
                n_fail++;
                ENT_LOG_ERROR(NULL, "authd.credential_unwrap_failed",
                              ENT_KV_STR("imsi", ent_mask_id(page.docs[i].key)),
                              ENT_KV_STR("error", ent_err_name(r1)));
            } else if (r1 != ENT_OK) {
                rc = r1;
            } else if (changed) {
                n_ok++;
            }
        }
        if (page.next_after)
            after = strdup(page.next_after);
        bool more = page.next_after != NULL;
        ent_store_page_free(&page);
        if (rc != ENT_OK || !more)
            break;
        if (after == NULL) {
            rc = ENT_ENOMEM;
            break;
        }
    }
    free(after);
    ent_counter_add(&cred_ops, n_ok, "rewrap", "OK");
    if (rewrapped)
        *rewrapped = n_ok;
    if (failed)
        *failed = n_fail;
    return rc;
}
