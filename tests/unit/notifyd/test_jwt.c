/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd/jwt.h: base64url, PEM keys, RS256 and ES256 compact JWTs, verified here with the
 * public halves of freshly generated keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include "jwt.h"

static EVP_PKEY *gen_key(const char *alg)
{
    EVP_PKEY *k = strcmp(alg, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                          : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static size_t b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    char tmp[2048];
    assert_true(n + 4 < sizeof(tmp));
    for (size_t i = 0; i < n; i++)
        tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        tmp[n++] = '=';
    size_t len = 0;
    assert_int_equal(ent_base64_decode(tmp, n, out, cap, &len), ENT_OK);
    return len;
}

static void test_jwt_b64url_has_no_padding_or_unsafe_chars(void **state)
{
    (void)state;
    struct ent_buf b;
    ent_buf_init(&b, 1024);
    const uint8_t in[] = {0xfb, 0xff, 0xfe, 0x00};
    assert_int_equal(notifyd_b64url_append(&b, in, 4), ENT_OK);
    assert_string_equal(b.data, "-__-AA");
    ent_buf_reset(&b);
    assert_int_equal(notifyd_b64url_append(&b, "ab", 2), ENT_OK);
    assert_string_equal(b.data, "YWI");
    ent_buf_free(&b);
}

/* Splits a token, checks header/claims decode to the given JSON and returns the signature. */
static size_t split_token(const char *tok, const char *hdr, const char *claims, size_t *signed_len,
                          uint8_t *sig, size_t sig_cap)
{
    const char *d1 = strchr(tok, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    uint8_t buf[1024];
    size_t n = b64url_decode(tok, (size_t)(d1 - tok), buf, sizeof(buf));
    assert_int_equal(n, strlen(hdr));
    assert_memory_equal(buf, hdr, n);
    n = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
    assert_int_equal(n, strlen(claims));
    assert_memory_equal(buf, claims, n);
    *signed_len = (size_t)(d2 - tok);
    return b64url_decode(d2 + 1, strlen(d2 + 1), sig, sig_cap);
}

static void test_jwt_rs256_verifies_with_the_public_key(void **state)
{
    (void)state;
    EVP_PKEY *k = gen_key("RSA");
    struct ent_buf tok;
    ent_buf_init(&tok, 8192);
    const char *h = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    const char *c = "{\"iss\":\"a@b\",\"iat\":1}";
    assert_int_equal(notifyd_jwt_sign(&tok, k, NOTIFYD_JWT_RS256, h, c), ENT_OK);
    uint8_t sig[512];
    size_t signed_len = 0;
    size_t sl = split_token(tok.data, h, c, &signed_len, sig, sizeof(sig));
    assert_int_equal(sl, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, sl, (const uint8_t *)tok.data, signed_len), 1);
    /* A flipped byte must not verify. */
    sig[10] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_not_equal(EVP_DigestVerify(md, sig, sl, (const uint8_t *)tok.data, signed_len), 1);
    EVP_MD_CTX_free(md);
    /* RS256 refuses an EC key. */
    EVP_PKEY *ek = gen_key("EC");
    assert_int_equal(notifyd_jwt_sign(&tok, ek, NOTIFYD_JWT_RS256, h, c), ENT_EINVAL);
    assert_int_equal(notifyd_jwt_sign(&tok, k, NOTIFYD_JWT_ES256, h, c), ENT_EINVAL);
    EVP_PKEY_free(ek);
    EVP_PKEY_free(k);
    ent_buf_free(&tok);
}

static void test_jwt_es256_signature_is_raw_r_s(void **state)
{
    (void)state;
    EVP_PKEY *k = gen_key("EC");
    /* Round trip through PKCS#8 PEM, as an APNs .p8 arrives. */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    EVP_PKEY *loaded = NULL;
    assert_int_equal(notifyd_key_from_pem(&loaded, pem, (size_t)pem_len), ENT_OK);
    BIO_free(bio);
    assert_int_equal(notifyd_key_from_pem(&loaded, "junk", 4), ENT_ECONFIG);

    struct ent_buf tok;
    ent_buf_init(&tok, 8192);
    const char *h = "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}";
    const char *c = "{\"iss\":\"TEAM123456\",\"iat\":1700000000}";
    for (int round = 0; round < 8; round++) { /* r or s with leading zero bytes */
        ent_buf_reset(&tok);
        assert_int_equal(notifyd_jwt_sign(&tok, loaded, NOTIFYD_JWT_ES256, h, c), ENT_OK);
        uint8_t sig[128];
        size_t signed_len = 0;
        size_t sl = split_token(tok.data, h, c, &signed_len, sig, sizeof(sig));
        assert_int_equal(sl, 64);
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        uint8_t *der = NULL;
        int der_len = i2d_ECDSA_SIG(es, &der);
        assert_true(der_len > 0);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(
            EVP_DigestVerify(md, der, (size_t)der_len, (const uint8_t *)tok.data, signed_len), 1);
        EVP_MD_CTX_free(md);
        OPENSSL_free(der);
        ECDSA_SIG_free(es);
    }
    ent_buf_free(&tok);
    EVP_PKEY_free(loaded);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_b64url_has_no_padding_or_unsafe_chars),
        cmocka_unit_test(test_jwt_rs256_verifies_with_the_public_key),
        cmocka_unit_test(test_jwt_es256_signature_is_raw_r_s),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
