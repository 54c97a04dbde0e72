/* SPDX-License-Identifier: Apache-2.0 */
/* TLS context construction: the protocol policy (versions, suites, groups, ALPN, options)
 * shared by every Entitle server and client context. Record processing lives in http.c. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ent/tls.h"

/* TLS 1.2 suites: ECDHE key exchange and AEAD only, ECDSA preferred (Mozilla "intermediate"
 * minus the DHE suites). TLS 1.3 keeps OpenSSL's default suites, which are all AEAD. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";
static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

void ent_tls_error_string(const char *prefix, char *err, size_t err_len)
{
    unsigned long e = ERR_get_error();
    char reason[256];
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "unknown error");
    ERR_clear_error();
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "%s: %s", prefix, reason);
}

/* Server side of ALPN: pick http/1.1 if the client offers it; otherwise go on without ALPN
 * rather than failing, since plain HTTP/1.1 clients often send no ALPN at all. */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof(alpn_http11), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The policy common to both sides. Returns 1 on success like OpenSSL. */
static int tls_ctx_policy(SSL_CTX *ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        return 0;
    if (SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        return 0;
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1)
        return 0;
    if (SSL_CTX_set1_groups_list(ctx, tls_groups) != 1)
        return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 1;
}

ent_err ent_tls_server_ctx_new(SSL_CTX **out, const char *cert_file, const char *key_file,
                               const char *client_ca_file, char *err, size_t err_len)
{
    if (out == NULL || cert_file == NULL || key_file == NULL) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "tls: certificate and key files are required");
        return ENT_EINVAL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ent_tls_error_string("tls: context", err, err_len);
        return ENT_ETLS;
    }
    const char *step = "tls: policy";
    if (tls_ctx_policy(ctx) != 1)
        goto fail;
    step = "tls: certificate chain";
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        goto fail;
    step = "tls: private key";
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        goto fail;
    step = "tls: key does not match certificate";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    if (client_ca_file != NULL) {
        step = "tls: client CA file";
        if (SSL_CTX_load_verify_locations(ctx, client_ca_file, NULL) != 1)
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_file);
        if (names == NULL)
            goto fail;
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    *out = ctx;
    return ENT_OK;
fail:
    ent_tls_error_string(step, err, err_len);
    SSL_CTX_free(ctx);
    return ENT_ETLS;
}

ent_err ent_tls_client_ctx_new(SSL_CTX **out, const char *ca_file, const char *cert_file,
                               const char *key_file, char *err, size_t err_len)
{
    if (out == NULL || (cert_file == NULL) != (key_file == NULL)) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "tls: client certificate and key go together");
        return ENT_EINVAL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ent_tls_error_string("tls: context", err, err_len);
        return ENT_ETLS;
    }
    const char *step = "tls: policy";
    if (tls_ctx_policy(ctx) != 1)
        goto fail;
    step = "tls: CA file";
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
            goto fail;
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert_file != NULL) {
        step = "tls: client certificate";
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
            goto fail;
        step = "tls: client key";
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
            goto fail;
        step = "tls: client key does not match certificate";
        if (SSL_CTX_check_private_key(ctx) != 1)
            goto fail;
    }
    step = "tls: alpn";
    /* SSL_CTX_set_alpn_protos returns 0 on success, unlike the rest of OpenSSL. */
    if (SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof(alpn_http11)) != 0)
        goto fail;
    *out = ctx;
    return ENT_OK;
fail:
    ent_tls_error_string(step, err, err_len);
    SSL_CTX_free(ctx);
    return ENT_ETLS;
}
