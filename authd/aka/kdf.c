/* SPDX-License-Identifier: Apache-2.0 */
/* Keyed primitives for EAP-AKA and EAP-AKA' (see aka/kdf_int.h): HMAC through OpenSSL's
 * EVP_MAC (fetched once per process), the FIPS 186-2 PRF built on our own SHA-1 compression
 * function, and PRF'. */
#include "aka/kdf_int.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

static EVP_MAC *hmac_fetched;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch_once(void)
{
    hmac_fetched = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

ent_err ent_aka__hmac(const char *digest, const uint8_t *key, size_t key_len,
                      const struct ent_aka__iov *iov, size_t n, uint8_t *out)
{
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx;
    size_t out_len = 0;
    ent_err rc = ENT_OK;

    pthread_once(&hmac_once, hmac_fetch_once);
    if (hmac_fetched == NULL)
        return ENT_EINTERNAL;
    ctx = EVP_MAC_CTX_new(hmac_fetched);
    if (ctx == NULL)
        return ENT_ENOMEM;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        rc = ENT_EINTERNAL;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (iov[i].len > 0 && EVP_MAC_update(ctx, iov[i].p, iov[i].len) != 1) {
            rc = ENT_EINTERNAL;
            goto out;
        }
    }
    if (EVP_MAC_final(ctx, out, &out_len, ENT_AKA__SHA256_LEN) != 1)
        rc = ENT_EINTERNAL;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* The SHA-1 compression function (FIPS 180-2 §6.1.2 steps 1-4) on one 64-byte block. The
 * FIPS 186-2 PRF needs it raw: G(t, c) is one compression of c zero-padded to 512 bits, with
 * no length padding and no finalisation, which no public OpenSSL 3 API offers without the
 * deprecated SHA1_Transform. */
static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_compress(uint32_t h[5], const uint8_t block[64])
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

    for (unsigned t = 0; t < 16; t++)
        w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
               (uint32_t)block[4 * t + 2] << 8 | block[4 * t + 3];
    for (unsigned t = 16; t < 80; t++)
        w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    for (unsigned t = 0; t < 80; t++) {
        uint32_t f, k, tmp;

        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        tmp = rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    OPENSSL_cleanse(w, sizeof(w));
}

void ent_aka__fips186_prf(uint8_t *out, size_t out_len, const uint8_t xkey_in[20])
{
    uint8_t xkey[20], block[64];
    size_t done = 0;

    memcpy(xkey, xkey_in, sizeof(xkey));
    while (done + 20 <= out_len) {
        /* t = the SHA-1 initial value; XVAL = XKEY since XSEED = 0 */
        uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
        unsigned carry = 1;

        memset(block, 0, sizeof(block));
        memcpy(block, xkey, 20);
        sha1_compress(h, block);
        for (unsigned i = 0; i < 5; i++) {
            out[done + 4 * i] = (uint8_t)(h[i] >> 24);
            out[done + 4 * i + 1] = (uint8_t)(h[i] >> 16);
            out[done + 4 * i + 2] = (uint8_t)(h[i] >> 8);
            out[done + 4 * i + 3] = (uint8_t)h[i];
        }
        /* XKEY = (1 + XKEY + w_i) mod 2^160, big-endian */
        for (int i = 19; i >= 0; i--) {
            carry += (unsigned)xkey[i] + out[done + (size_t)i];
            xkey[i] = (uint8_t)carry;
            carry >>= 8;
        }
        done += 20;
    }
    OPENSSL_cleanse(xkey, sizeof(xkey));
    OPENSSL_cleanse(block, sizeof(block));
}

ent_err ent_aka__prf_prime(uint8_t *out, size_t out_len, const uint8_t *key, size_t key_len,
                           const struct ent_aka__iov *s, size_t n_s)
{
    struct ent_aka__iov iov[8];
    uint8_t t[ENT_AKA__SHA256_LEN];
    size_t done = 0;
    ent_err rc = ENT_OK;

    if (n_s > (sizeof(iov) / sizeof(iov[0])) - 2 || out_len > 255 * ENT_AKA__SHA256_LEN)
        return ENT_EINVAL;
    for (unsigned n = 1; done < out_len; n++) {
        uint8_t counter = (uint8_t)n;
        size_t k = 0, take;

        if (n > 1)
            iov[k++] = (struct ent_aka__iov){t, sizeof(t)};
        for (size_t i = 0; i < n_s; i++)
            iov[k++] = s[i];
        iov[k++] = (struct ent_aka__iov){&counter, 1};
        rc = ent_aka__hmac("SHA256", key, key_len, iov, k, t);
        if (rc != ENT_OK)
            break;
        take = out_len - done < sizeof(t) ? out_len - done : sizeof(t);
        memcpy(out + done, t, take);
        done += take;
    }
    OPENSSL_cleanse(t, sizeof(t));
    return rc;
}
