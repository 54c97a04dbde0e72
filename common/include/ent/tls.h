/* SPDX-License-Identifier: Apache-2.0 */
/* TLS contexts (OpenSSL 3) with Entitle's one policy: TLS 1.2 minimum, TLS 1.3 enabled,
 * forward-secret AEAD suites only (ECDHE + AES-GCM/ChaCha20-Poly1305 for 1.2), no
 * compression, no renegotiation, ALPN "http/1.1". The HTTP core (ent/http.h) drives the
 * records over libuv with memory BIOs; this header only builds and configures SSL_CTX
 * objects. Contexts are reference counted by OpenSSL: the creator owns one reference and
 * drops it with SSL_CTX_free(); users that keep a context take their own (SSL_CTX_up_ref). */
#ifndef ENT_TLS_H
#define ENT_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "ent/err.h"

/* Builds a server context from PEM files: cert_file (leaf first, then chain), key_file and,
 * if client_ca_file is not NULL, requires clients to present a certificate chaining to one
 * of those CAs (mutual TLS). Any thread. On ENT_OK *out holds a new context the caller owns.
 * Errors: ENT_EINVAL (NULL arguments), ENT_ETLS (unreadable or mismatched files, OpenSSL
 * failure) with OpenSSL's reason written to err (may be NULL) for the operator's log. */
ent_err ent_tls_server_ctx_new(SSL_CTX **out, const char *cert_file, const char *key_file,
                               const char *client_ca_file, char *err, size_t err_len);

/* Builds a client context with the same protocol policy, verifying the server against
 * ca_file (PEM; NULL uses the system's default trust store) and, if cert_file/key_file are
 * not NULL, presenting that client certificate. Host name checking is the caller's job
 * (SSL_set1_host). Any thread. Errors as ent_tls_server_ctx_new(). */
ent_err ent_tls_client_ctx_new(SSL_CTX **out, const char *ca_file, const char *cert_file,
                               const char *key_file, char *err, size_t err_len);

/* Writes the oldest queued OpenSSL error of this thread ("prefix: reason") into err and
 * clears the thread's queue. err may be NULL (the queue is cleared anyway). */
void ent_tls_error_string(const char *prefix, char *err, size_t err_len);

#endif
