/* SPDX-License-Identifier: Apache-2.0 */
/* Milenage (3GPP TS 35.206 §4.1) over OpenSSL AES-128-ECB, one block at a time. This file owns
 * the AES plumbing (a cipher fetched once per process, one EVP_CIPHER_CTX per call) and the
 * OUT1..OUT5 kernels; callers in aka.c decide what to do with the outputs. */
#include "aka/milenage.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* Fetching "AES-128-ECB" on every EVP_EncryptInit_ex() costs a provider lookup; fetch it once.
 * The handle is immutable and shared read-only between threads. */
static EVP_CIPHER *aes_ecb_fetched;
static pthread_once_t aes_once = PTHREAD_ONCE_INIT;

static void aes_fetch_once(void)
{
    aes_ecb_fetched = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
}

static const EVP_CIPHER *aes_cipher(void)
{
    pthread_once(&aes_once, aes_fetch_once);
    return aes_ecb_fetched != NULL ? aes_ecb_fetched : EVP_aes_128_ecb();
}

/* One AES-128 key schedule for the duration of a computation. */
struct mil_aes {
    EVP_CIPHER_CTX *ctx;
};

static ent_err mil_aes_init(struct mil_aes *a, const uint8_t k[ENT_MILENAGE_K_LEN])
{
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL)
        return ENT_ENOMEM;
    if (EVP_EncryptInit_ex(a->ctx, aes_cipher(), NULL, k, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(a->ctx, 0) != 1) {
        EVP_CIPHER_CTX_free(a->ctx);
        a->ctx = NULL;
        return ENT_EINTERNAL;
    }
    return ENT_OK;
}

static void mil_aes_close(struct mil_aes *a)
{
    EVP_CIPHER_CTX_free(a->ctx);
    a->ctx = NULL;
}

/* out = E_K(in); in and out may alias. ECB without padding keeps no state between blocks, so
 * the context is reused for every block without re-initialisation. */
static ent_err mil_aes_block(struct mil_aes *a, uint8_t out[16], const uint8_t in[16])
{
    uint8_t tmp[16];
    int n = 0;

    if (EVP_EncryptUpdate(a->ctx, tmp, &n, in, 16) != 1 || n != 16)
        return ENT_EINTERNAL;
    memcpy(out, tmp, 16);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return ENT_OK;
}

/* OUTn = E_K(rot(TEMP xor OPc, r) xor c) xor OPc for n = 2..5 (TS 35.206 §4.1), where the
 * rotation r is a whole number of bytes and the constant c only touches the last byte. */
static ent_err mil_out_n(struct mil_aes *a, uint8_t out[16], const uint8_t temp[16],
                         const uint8_t opc[16], unsigned rot_bytes, uint8_t c_last)
{
    uint8_t x[16];
    ent_err rc;

    for (unsigned i = 0; i < 16; i++)
        x[i] = temp[(i + rot_bytes) % 16] ^ opc[(i + rot_bytes) % 16];
    x[15] ^= c_last;
    rc = mil_aes_block(a, x, x);
    if (rc == ENT_OK) {
        for (unsigned i = 0; i < 16; i++)
            out[i] = x[i] ^ opc[i];
    }
    OPENSSL_cleanse(x, sizeof(x));
    return rc;
}

ent_err ent_milenage_opc(uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                         const uint8_t op[ENT_MILENAGE_OP_LEN])
{
    struct mil_aes a;
    uint8_t e[16];
    ent_err rc;

    rc = mil_aes_init(&a, k);
    if (rc != ENT_OK)
        return rc;
    rc = mil_aes_block(&a, e, op);
    mil_aes_close(&a);
    if (rc != ENT_OK)
        return rc;
    for (unsigned i = 0; i < 16; i++)
        opc[i] = e[i] ^ op[i];
    OPENSSL_cleanse(e, sizeof(e));
    return ENT_OK;
}

static ent_err mil_compute(struct ent_milenage_out *out, unsigned funcs, struct mil_aes *a,
                           const uint8_t opc[16], const uint8_t rand[16], const uint8_t sqn[6],
                           const uint8_t amf[2])
{
    uint8_t temp[16], x[16], o[16];
    ent_err rc;

    /* TEMP = E_K(RAND xor OPc) */
    for (unsigned i = 0; i < 16; i++)
        temp[i] = rand[i] ^ opc[i];
    rc = mil_aes_block(a, temp, temp);
    if (rc != ENT_OK)
        goto out;

    if (funcs & (ENT_MILENAGE_F1 | ENT_MILENAGE_F1STAR)) {
        uint8_t in1[16];

        /* IN1 = SQN || AMF || SQN || AMF; OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1=64) xor c1=0)
         * xor OPc */
        memcpy(in1, sqn, 6);
        memcpy(in1 + 6, amf, 2);
        memcpy(in1 + 8, in1, 8);
        for (unsigned i = 0; i < 16; i++)
            x[i] = temp[i] ^ in1[(i + 8) % 16] ^ opc[(i + 8) % 16];
        rc = mil_aes_block(a, x, x);
        if (rc != ENT_OK)
            goto out;
        for (unsigned i = 0; i < 16; i++)
            o[i] = x[i] ^ opc[i];
        if (funcs & ENT_MILENAGE_F1)
            memcpy(out->mac_a, o, 8);
        if (funcs & ENT_MILENAGE_F1STAR)
            memcpy(out->mac_s, o + 8, 8);
    }
    if (funcs & ENT_MILENAGE_F2345) {
        /* OUT2: r2 = 0, c2 = 1 -> AK = OUT2[0..5], RES = OUT2[8..15] */
        rc = mil_out_n(a, o, temp, opc, 0, 1);
        if (rc != ENT_OK)
            goto out;
        memcpy(out->ak, o, 6);
        memcpy(out->res, o + 8, 8);
        /* OUT3: r3 = 32, c3 = 2 -> CK */
        rc = mil_out_n(a, out->ck, temp, opc, 4, 2);
        if (rc != ENT_OK)
            goto out;
        /* OUT4: r4 = 64, c4 = 4 -> IK */
        rc = mil_out_n(a, out->ik, temp, opc, 8, 4);
        if (rc != ENT_OK)
            goto out;
    }
    if (funcs & ENT_MILENAGE_F5STAR) {
        /* OUT5: r5 = 96, c5 = 8 -> AK* = OUT5[0..5] */
        rc = mil_out_n(a, o, temp, opc, 12, 8);
        if (rc != ENT_OK)
            goto out;
        memcpy(out->ak_star, o, 6);
    }
out:
    OPENSSL_cleanse(temp, sizeof(temp));
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(o, sizeof(o));
    return rc;
}

ent_err
ent_milenage_run(struct ent_milenage_out *out, unsigned funcs, const uint8_t k[ENT_MILENAGE_K_LEN],
                 const uint8_t opc[ENT_MILENAGE_OP_LEN], const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                 const uint8_t sqn[ENT_MILENAGE_SQN_LEN], const uint8_t amf[ENT_MILENAGE_AMF_LEN])
{
    struct ent_milenage_out tmp;
    struct mil_aes a;
    ent_err rc;

    if (out == NULL || k == NULL || opc == NULL || rand == NULL || funcs == 0 ||
        (funcs & ~ENT_MILENAGE_ALL) != 0)
        return ENT_EINVAL;
    if ((funcs & (ENT_MILENAGE_F1 | ENT_MILENAGE_F1STAR)) && (sqn == NULL || amf == NULL))
        return ENT_EINVAL;
    rc = mil_aes_init(&a, k);
    if (rc != ENT_OK)
        return rc;
    /* Compute into a local so *out is written only on success. */
    rc = mil_compute(&tmp, funcs, &a, opc, rand, sqn, amf);
    mil_aes_close(&a);
    if (rc == ENT_OK) {
        if (funcs & ENT_MILENAGE_F1)
            memcpy(out->mac_a, tmp.mac_a, sizeof(tmp.mac_a));
        if (funcs & ENT_MILENAGE_F1STAR)
            memcpy(out->mac_s, tmp.mac_s, sizeof(tmp.mac_s));
        if (funcs & ENT_MILENAGE_F2345) {
            memcpy(out->res, tmp.res, sizeof(tmp.res));
            memcpy(out->ck, tmp.ck, sizeof(tmp.ck));
            memcpy(out->ik, tmp.ik, sizeof(tmp.ik));
            memcpy(out->ak, tmp.ak, sizeof(tmp.ak));
        }
        if (funcs & ENT_MILENAGE_F5STAR)
            memcpy(out->ak_star, tmp.ak_star, sizeof(tmp.ak_star));
    }
    OPENSSL_cleanse(&tmp, sizeof(tmp));
    return rc;
}

ent_err ent_milenage_f1(uint8_t mac_a[ENT_MILENAGE_MAC_LEN], const uint8_t k[ENT_MILENAGE_K_LEN],
                        const uint8_t opc[ENT_MILENAGE_OP_LEN],
                        const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                        const uint8_t sqn[ENT_MILENAGE_SQN_LEN],
                        const uint8_t amf[ENT_MILENAGE_AMF_LEN])
{
    struct ent_milenage_out o;
    ent_err rc;

    if (mac_a == NULL)
        return ENT_EINVAL;
    rc = ent_milenage_run(&o, ENT_MILENAGE_F1, k, opc, rand, sqn, amf);
    if (rc == ENT_OK)
        memcpy(mac_a, o.mac_a, sizeof(o.mac_a));
    return rc;
}

ent_err ent_milenage_f1star(uint8_t mac_s[ENT_MILENAGE_MAC_LEN],
                            const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_MILENAGE_RAND_LEN],
                            const uint8_t sqn[ENT_MILENAGE_SQN_LEN],
                            const uint8_t amf[ENT_MILENAGE_AMF_LEN])
{
    struct ent_milenage_out o;
    ent_err rc;

    if (mac_s == NULL)
        return ENT_EINVAL;
    rc = ent_milenage_run(&o, ENT_MILENAGE_F1STAR, k, opc, rand, sqn, amf);
    if (rc == ENT_OK)
        memcpy(mac_s, o.mac_s, sizeof(o.mac_s));
    return rc;
}

ent_err ent_milenage_f2345(uint8_t res[ENT_MILENAGE_RES_LEN], uint8_t ck[ENT_MILENAGE_CK_LEN],
                           uint8_t ik[ENT_MILENAGE_IK_LEN], uint8_t ak[ENT_MILENAGE_AK_LEN],
                           const uint8_t k[ENT_MILENAGE_K_LEN],
                           const uint8_t opc[ENT_MILENAGE_OP_LEN],
                           const uint8_t rand[ENT_MILENAGE_RAND_LEN])
{
    struct ent_milenage_out o;
    ent_err rc;

    rc = ent_milenage_run(&o, ENT_MILENAGE_F2345, k, opc, rand, NULL, NULL);
    if (rc != ENT_OK)
        return rc;
    if (res != NULL)
        memcpy(res, o.res, sizeof(o.res));
    if (ck != NULL)
        memcpy(ck, o.ck, sizeof(o.ck));
    if (ik != NULL)
        memcpy(ik, o.ik, sizeof(o.ik));
    if (ak != NULL)
        memcpy(ak, o.ak, sizeof(o.ak));
    OPENSSL_cleanse(&o, sizeof(o));
    return ENT_OK;
}

ent_err ent_milenage_f5star(uint8_t ak_star[ENT_MILENAGE_AK_LEN],
                            const uint8_t k[ENT_MILENAGE_K_LEN],
                            const uint8_t opc[ENT_MILENAGE_OP_LEN],
                            const uint8_t rand[ENT_MILENAGE_RAND_LEN])
{
    struct ent_milenage_out o;
    ent_err rc;

    if (ak_star == NULL)
        return ENT_EINVAL;
    rc = ent_milenage_run(&o, ENT_MILENAGE_F5STAR, k, opc, rand, NULL, NULL);
    if (rc == ENT_OK)
        memcpy(ak_star, o.ak_star, sizeof(o.ak_star));
    return rc;
}
