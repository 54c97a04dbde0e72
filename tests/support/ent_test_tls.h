/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: a throwaway self-signed EC P-256 certificate for "localhost" / 127.0.0.1,
 * written as PEM files into a fresh temporary directory with OpenSSL's APIs, so TLS tests
 * need no fixtures on disk and no `openssl` binary. Header-only (tests have no support
 * library); everything is static inline. */
#ifndef ENT_TEST_TLS_H
#define ENT_TEST_TLS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct ent_test_cert {
    char dir[256];
    char cert_file[300]; /* also the CA file clients trust */
    char key_file[300];
};

static inline int ent_test_cert_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Returns 0 on success. Remove the files with ent_test_cert_remove(). */
static inline int ent_test_cert_make(struct ent_test_cert *tc)
{
    memset(tc, 0, sizeof(*tc));
    snprintf(tc->dir, sizeof(tc->dir), "/tmp/ent-test-tls-XXXXXX");
    if (mkdtemp(tc->dir) == NULL)
        return -1;
    snprintf(tc->cert_file, sizeof(tc->cert_file), "%s/cert.pem", tc->dir);
    snprintf(tc->key_file, sizeof(tc->key_file), "%s/key.pem", tc->dir);

    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f = NULL;
    if (key == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    if (!ent_test_cert_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
        !ent_test_cert_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"))
        goto out;
    if (X509_sign(x, key, EVP_sha256()) == 0)
        goto out;
    f = fopen(tc->cert_file, "w");
    if (f == NULL || PEM_write_X509(f, x) != 1)
        goto out;
    fclose(f);
    f = fopen(tc->key_file, "w");
    if (f == NULL || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1)
        goto out;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static inline void ent_test_cert_remove(struct ent_test_cert *tc)
{
    unlink(tc->cert_file);
    unlink(tc->key_file);
    rmdir(tc->dir);
}

#endif
