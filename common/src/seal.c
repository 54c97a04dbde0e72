/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM sealing under a keyring (ent/seal.h): the keyring file parser and the blob
 * format. The random nonce is 96 bits from OpenSSL's DRBG (ent_random_bytes()); with at most 2^32
 * blobs per key the collision risk stays below NIST SP 800-38D's bound, which is why keys rotate.
 * Callers own the meaning and lifetime of what they seal.
 *
 * Cipher contexts: the keyring fetches AES-256-GCM once and keeps a small pool of cipher
 * contexts that seal and open borrow under a mutex, each remembering the key it was last
 * keyed with. An authentication seals or opens several blobs, and fetching the cipher plus
 * building a context per call was 9 % of authd's CPU (issue #4); a borrowed context only
 * takes a new IV (and a key schedule when the key differs). */
#include "ent/seal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ent/util.h"

#define SEAL_FILE_MAX (64 * 1024)
#define SEAL_KEYS_MAX 64
#define SEAL_POOL_MAX 64 /* idle contexts kept; more threads at once allocate and free */

struct seal_key {
    char id[ENT_SEAL_KEY_ID_MAX + 1];
    uint8_t id_len;
    uint8_t key[ENT_SEAL_KEY_LEN];
};

/* A pooled context: `keyed` is the key its AES schedule holds (NULL: none yet). */
struct seal_ctx {
    EVP_CIPHER_CTX *ctx;
    const struct seal_key *keyed;
};

struct ent_keyring {
    EVP_CIPHER *gcm;    /* fetched once; contexts are initialised with it */
    pthread_mutex_t mu; /* guards idle[] and n_idle */
    size_t n_idle;
    struct seal_ctx idle[SEAL_POOL_MAX];
    size_t n;
    struct seal_key keys[]; /* keys[0] seals */
};

static void seal_errf(char *err, size_t err_len, const char *fmt, size_t line)
{
    if (err && err_len > 0)
        snprintf(err, err_len, fmt, line);
}

static bool seal_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > ENT_SEAL_KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* Splits one line into at most two whitespace-separated fields; returns the field count
 * (3 means "more than two"). */
static int seal_fields(const char *p, size_t n, const char **f, size_t *fl)
{
    int k = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
            i++;
        if (i >= n)
            break;
        size_t start = i;
        while (i < n && p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            i++;
        if (k == 2)
            return 3;
        f[k] = p + start;
        fl[k] = i - start;
        k++;
    }
    return k;
}

ent_err ent_keyring_parse(struct ent_keyring **out, const char *text, size_t len, char *err,
                          size_t err_len)
{
    struct ent_keyring *kr = calloc(1, sizeof(*kr) + SEAL_KEYS_MAX * sizeof(struct seal_key));
    ent_err rc = ENT_ECONFIG;
    size_t line = 0;
    size_t pos = 0;

    if (kr == NULL)
        return ENT_ENOMEM;
    if (pthread_mutex_init(&kr->mu, NULL) != 0) {
        free(kr);
        return ENT_ENOMEM;
    }
    kr->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (kr->gcm == NULL) {
        seal_errf(err, err_len, "AES-256-GCM unavailable in OpenSSL (%zu)", 0);
        goto fail;
    }
    while (pos < len) {
        const char *p = text + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        const char *f[2];
        size_t fl[2];
        char hex[2 * ENT_SEAL_KEY_LEN + 1];
        struct seal_key *k;
        int nf;

        pos += n + (nl ? 1 : 0);
        line++;
        nf = seal_fields(p, n, f, fl);
        if (nf == 0 || f[0][0] == '#')
            continue;
        if (nf == 3) {
            seal_errf(err, err_len, "keyring line %zu: want \"<key-id> <64 hex chars>\"", line);
            goto fail;
        }
        if (kr->n == SEAL_KEYS_MAX) {
            seal_errf(err, err_len, "keyring line %zu: more than 64 keys", line);
            goto fail;
        }
        k = &kr->keys[kr->n];
        const char *h = nf == 2 ? f[1] : f[0];
        size_t hl = nf == 2 ? fl[1] : fl[0];
        if (hl != 2 * ENT_SEAL_KEY_LEN) {
            seal_errf(err, err_len, "keyring line %zu: the key must be 64 hex chars", line);
            goto fail;
        }
        memcpy(hex, h, hl);
        hex[hl] = '\0';
        if (ent_hex_decode(hex, k->key, ENT_SEAL_KEY_LEN) != ENT_OK) {
            OPENSSL_cleanse(hex, sizeof(hex));
            seal_errf(err, err_len, "keyring line %zu: the key is not hex", line);
            goto fail;
        }
        OPENSSL_cleanse(hex, sizeof(hex));
        if (nf == 2) {
            if (!seal_id_ok(f[0], fl[0])) {
                seal_errf(err, err_len, "keyring line %zu: key id must be 1..32 of [A-Za-z0-9._-]",
                          line);
                goto fail;
            }
            memcpy(k->id, f[0], fl[0]);
            k->id_len = (uint8_t)fl[0];
        } else {
            uint8_t d[SHA256_DIGEST_LENGTH];
            char dh[2 * 4 + 1];
            SHA256(k->key, ENT_SEAL_KEY_LEN, d);
            ent_hex_encode(d, 4, dh);
            k->id[0] = 'k';
            memcpy(k->id + 1, dh, 8);
            k->id[9] = '\0';
            k->id_len = 9;
        }
        for (size_t i = 0; i < kr->n; i++) {
            if (strcmp(kr->keys[i].id, k->id) == 0) {
                seal_errf(err, err_len, "keyring line %zu: duplicate key id", line);
                goto fail;
            }
        }
        kr->n++;
    }
    if (kr->n == 0) {
        seal_errf(err, err_len, "keyring holds no key (%zu lines)", line);
        goto fail;
    }
    if (err && err_len > 0)
        err[0] = '\0';
    *out = kr;
    return ENT_OK;
fail:
    ent_keyring_free(kr);
    return rc;
}

ent_err ent_keyring_load(struct ent_keyring **out, const char *path, char *err, size_t err_len)
{
    char *text = NULL;
    size_t len = 0;
    ent_err rc;

    if (path == NULL || path[0] == '\0') {
        seal_errf(err, err_len, "no keyring file given%.0zu", 0);
        return ENT_ECONFIG;
    }
    rc = ent_file_read(path, SEAL_FILE_MAX, &text, &len);
    if (rc != ENT_OK) {
        if (err && err_len > 0)
            snprintf(err, err_len, "cannot read keyring %s: %s", path, ent_strerror(rc));
        return rc == ENT_ENOMEM ? ENT_ENOMEM : ENT_ECONFIG;
    }
    rc = ent_keyring_parse(out, text, len, err, err_len);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

void ent_keyring_free(struct ent_keyring *kr)
{
    if (kr == NULL)
        return;
    for (size_t i = 0; i < kr->n_idle; i++)
        EVP_CIPHER_CTX_free(kr->idle[i].ctx); /* wipes the key schedule */
    EVP_CIPHER_free(kr->gcm);
    pthread_mutex_destroy(&kr->mu);
    OPENSSL_cleanse(kr->keys, SEAL_KEYS_MAX * sizeof(struct seal_key));
    free(kr);
}

const char *ent_keyring_current_id(const struct ent_keyring *kr)
{
    return kr->keys[0].id;
}

size_t ent_keyring_count(const struct ent_keyring *kr)
{
    return kr->n;
}

size_t ent_seal_len(const struct ent_keyring *kr, size_t pt_len)
{
    return 2 + kr->keys[0].id_len + ENT_SEAL_NONCE_LEN + pt_len + ENT_SEAL_TAG_LEN;
}

/* Borrows an idle context, or makes one initialised with the keyring's cipher (its IV
 * length set once). ENT_ENOMEM / ENT_EINTERNAL when OpenSSL fails. Any thread. */
static ent_err seal_ctx_get(struct ent_keyring *kr, struct seal_ctx *out)
{
    pthread_mutex_lock(&kr->mu);
    if (kr->n_idle > 0) {
        *out = kr->idle[--kr->n_idle];
        pthread_mutex_unlock(&kr->mu);
        return ENT_OK;
    }
    pthread_mutex_unlock(&kr->mu);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return ENT_ENOMEM;
    if (EVP_CipherInit_ex(ctx, kr->gcm, NULL, NULL, NULL, 1) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENT_SEAL_NONCE_LEN, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return ENT_EINTERNAL;
    }
    out->ctx = ctx;
    out->keyed = NULL;
    return ENT_OK;
}

/* Returns a context to the pool; one whose pass failed is freed instead, so no state of a
 * broken pass is ever reused. */
static void seal_ctx_put(struct ent_keyring *kr, struct seal_ctx *c, bool ok)
{
    if (ok) {
        pthread_mutex_lock(&kr->mu);
        if (kr->n_idle < SEAL_POOL_MAX) {
            kr->idle[kr->n_idle++] = *c;
            c = NULL;
        }
        pthread_mutex_unlock(&kr->mu);
        if (c == NULL)
            return;
    }
    EVP_CIPHER_CTX_free(c->ctx);
}

/* One AES-256-GCM pass with key k. enc: in -> out with tag written; !enc: in -> out, tag
 * checked. The AAD is purpose || NUL || hdr. The keyring is logically const: only its
 * context pool changes. */
static ent_err seal_gcm(const struct ent_keyring *ckr, bool enc, const struct seal_key *k,
                        const uint8_t *nonce, const char *purpose, const uint8_t *hdr,
                        size_t hdr_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    struct ent_keyring *kr = (struct ent_keyring *)ckr;
    struct seal_ctx c;
    ent_err rc = seal_ctx_get(kr, &c);
    EVP_CIPHER_CTX *ctx = c.ctx;
    int n = 0;

    if (rc != ENT_OK)
        return rc;
    rc = ENT_EINTERNAL;
    /* GCM keeps the AES schedule across IVs: key it only when the key differs. */
    if (EVP_CipherInit_ex(ctx, NULL, NULL, c.keyed == k ? NULL : k->key, nonce, enc ? 1 : 0) != 1)
        goto out;
    c.keyed = k;
    if (EVP_CipherUpdate(ctx, NULL, &n, (const uint8_t *)purpose, (int)strlen(purpose) + 1) != 1)
        goto out;
    if (EVP_CipherUpdate(ctx, NULL, &n, hdr, (int)hdr_len) != 1)
        goto out;
    if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENT_SEAL_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + len, &n) != 1) {
        rc = enc ? ENT_EINTERNAL : ENT_EAUTH;
        goto out;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENT_SEAL_TAG_LEN, tag) != 1)
        goto out;
    rc = ENT_OK;
out:
    seal_ctx_put(kr, &c, rc == ENT_OK);
    return rc;
}

ent_err ent_random_bytes(uint8_t *out, size_t n)
{
    /* The calling thread's DRBG (NULL only if OpenSSL cannot set one up: then the slow
     * path, which fails the same way or succeeds through another RAND method). */
    EVP_RAND_CTX *drbg = RAND_get0_public(NULL);
    if (drbg != NULL)
        return EVP_RAND_generate(drbg, out, n, 0, 0, NULL, 0) == 1 ? ENT_OK : ENT_EINTERNAL;
    return n <= INT32_MAX && RAND_bytes(out, (int)n) == 1 ? ENT_OK : ENT_EINTERNAL;
}

ent_err ent_seal(const struct ent_keyring *kr, const char *purpose, const uint8_t *pt,
                 size_t pt_len, uint8_t *out, size_t cap, size_t *out_len)
{
    const struct seal_key *k = &kr->keys[0];
    size_t total = ent_seal_len(kr, pt_len);
    size_t hdr_len = 2u + k->id_len;
    ent_err rc;

    if (purpose == NULL || purpose[0] == '\0')
        return ENT_EINVAL;
    if (cap < total || pt_len > (size_t)INT32_MAX)
        return ENT_ETOOBIG;
    out[0] = ENT_SEAL_VERSION;
    out[1] = k->id_len;
    memcpy(out + 2, k->id, k->id_len);
    rc = ent_random_bytes(out + hdr_len, ENT_SEAL_NONCE_LEN);
    if (rc != ENT_OK)
        return rc;
    rc = seal_gcm(kr, true, k, out + hdr_len, purpose, out, hdr_len, pt, pt_len,
                  out + hdr_len + ENT_SEAL_NONCE_LEN, out + hdr_len + ENT_SEAL_NONCE_LEN + pt_len);
    if (rc != ENT_OK)
        return rc;
    *out_len = total;
    return ENT_OK;
}

ent_err ent_unseal(const struct ent_keyring *kr, const char *purpose, const uint8_t *in, size_t len,
                   uint8_t *out, size_t cap, size_t *out_len, const char **key_id)
{
    const struct seal_key *k = NULL;
    size_t hdr_len, pt_len;
    uint8_t tag[ENT_SEAL_TAG_LEN];
    ent_err rc;

    if (purpose == NULL || purpose[0] == '\0' || in == NULL || len < 2)
        return ENT_EINVAL;
    if (in[0] != ENT_SEAL_VERSION || in[1] == 0 || in[1] > ENT_SEAL_KEY_ID_MAX)
        return ENT_EINVAL;
    hdr_len = 2u + in[1];
    if (len < hdr_len + ENT_SEAL_NONCE_LEN + ENT_SEAL_TAG_LEN || len > (size_t)INT32_MAX)
        return ENT_EINVAL;
    for (size_t i = 0; i < kr->n; i++) {
        if (kr->keys[i].id_len == in[1] && memcmp(kr->keys[i].id, in + 2, in[1]) == 0) {
            k = &kr->keys[i];
            break;
        }
    }
    if (k == NULL)
        return ENT_EAUTH;
    pt_len = len - hdr_len - ENT_SEAL_NONCE_LEN - ENT_SEAL_TAG_LEN;
    if (cap < pt_len)
        return ENT_ETOOBIG;
    memcpy(tag, in + len - ENT_SEAL_TAG_LEN, ENT_SEAL_TAG_LEN);
    rc = seal_gcm(kr, false, k, in + hdr_len, purpose, in, hdr_len,
                  in + hdr_len + ENT_SEAL_NONCE_LEN, pt_len, out, tag);
    if (rc != ENT_OK) {
        if (pt_len > 0)
            OPENSSL_cleanse(out, pt_len);
        return rc;
    }
    *out_len = pt_len;
    if (key_id)
        *key_id = k->id;
    return ENT_OK;
}
