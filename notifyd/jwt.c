/* SPDX-License-Identifier: Apache-2.0 */
/* JWT signing with OpenSSL 3 EVP (see jwt.h). */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include "jwt.h"

ent_err notifyd_b64url_append(struct ent_buf *out, const void *data, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *p = data;
    char q[4];
    size_t i = 0;
    ent_err rc = ENT_OK;
    for (; i + 3 <= len && rc == ENT_OK; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        q[0] = tbl[v >> 18 & 63];
        q[1] = tbl[v >> 12 & 63];
        q[2] = tbl[v >> 6 & 63];
        q[3] = tbl[v & 63];
        rc = ent_buf_append(out, q, 4);
    }
    if (rc == ENT_OK && len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        q[0] = tbl[v >> 18 & 63];
        q[1] = tbl[v >> 12 & 63];
        rc = ent_buf_append(out, q, 2);
    } else if (rc == ENT_OK && len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        q[0] = tbl[v >> 18 & 63];
        q[1] = tbl[v >> 12 & 63];
        q[2] = tbl[v >> 6 & 63];
        rc = ent_buf_append(out, q, 3);
    }
    return rc;
}

ent_err notifyd_key_from_pem(EVP_PKEY **out, const char *pem, size_t len)
{
    if (!pem || len == 0 || len > 64 * 1024)
        return ENT_ECONFIG;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return ENT_ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    if (!k)
        return ENT_ECONFIG;
    *out = k;
    return ENT_OK;
}

/* ECDSA P-256: DER SEQUENCE{r, s} -> 32-byte big-endian r || s (RFC 7518 §3.4). */
static ent_err es256_raw(const uint8_t *der, size_t der_len, uint8_t raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        return ENT_EINTERNAL;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? ENT_OK : ENT_EINTERNAL;
}

ent_err notifyd_jwt_sign(struct ent_buf *out, EVP_PKEY *key, enum notifyd_jwt_alg alg,
                         const char *header_json, const char *claims_json)
{
    if (!key)
        return ENT_EINVAL;
    int type = EVP_PKEY_get_base_id(key);
    if ((alg == NOTIFYD_JWT_RS256 && type != EVP_PKEY_RSA) ||
        (alg == NOTIFYD_JWT_ES256 && (type != EVP_PKEY_EC || EVP_PKEY_get_bits(key) != 256)))
        return ENT_EINVAL;
    size_t start = out->len;
    ent_err rc = notifyd_b64url_append(out, header_json, strlen(header_json));
    if (rc == ENT_OK)
        rc = ent_buf_append_char(out, '.');
    if (rc == ENT_OK)
        rc = notifyd_b64url_append(out, claims_json, strlen(claims_json));
    if (rc != ENT_OK)
        return rc;
    size_t signing_len = out->len - start;

    uint8_t sig[1024];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return ENT_ENOMEM;
    /* The buffer may move on the appends below, so sign before appending anything. */
    int ok =
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)out->data + start, signing_len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return ENT_EINTERNAL;
    if (alg == NOTIFYD_JWT_ES256) {
        uint8_t raw[64];
        rc = es256_raw(sig, sig_len, raw);
        if (rc != ENT_OK)
            return rc;
        memcpy(sig, raw, sizeof(raw));
        sig_len = sizeof(raw);
    }
    rc = ent_buf_append_char(out, '.');
    if (rc == ENT_OK)
        rc = notifyd_b64url_append(out, sig, sig_len);
    return rc;
}
