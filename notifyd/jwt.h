/* SPDX-License-Identifier: Apache-2.0 */
/* Signed JSON Web Tokens (RFC 7515/7519, compact form) for the two push providers: RS256 for
 * the FCM OAuth 2.0 service-account assertion and ES256 for APNs provider tokens. This file
 * owns base64url and the signature encodings (ES256 wants raw r||s, OpenSSL gives DER); the
 * claims and when to refresh a token belong to oauth.c and apns.c. Any thread. */
#ifndef NOTIFYD_JWT_H
#define NOTIFYD_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ent/err.h"
#include "ent/util.h"

enum notifyd_jwt_alg { NOTIFYD_JWT_RS256, NOTIFYD_JWT_ES256 };

/* Appends base64url without padding (RFC 7515 §2). Errors from the buffer. */
ent_err notifyd_b64url_append(struct ent_buf *out, const void *data, size_t len);

/* Loads a PEM private key (PKCS#8 "BEGIN PRIVATE KEY" as in a service-account file or an
 * APNs .p8, or the traditional RSA/EC forms). *out (freed with EVP_PKEY_free) is set on
 * ENT_OK. Errors: ENT_ECONFIG (not a private key we can read). */
ent_err notifyd_key_from_pem(EVP_PKEY **out, const char *pem, size_t len);

/* Builds header.claims.signature from two JSON texts (used as given) and appends it to out.
 * RS256 needs an RSA key, ES256 a P-256 key (else ENT_EINVAL). Errors: ENT_EINVAL,
 * ENT_EINTERNAL (OpenSSL failed), buffer errors. On error out may hold a partial token. */
ent_err notifyd_jwt_sign(struct ent_buf *out, EVP_PKEY *key, enum notifyd_jwt_alg alg,
                         const char *header_json, const char *claims_json);

#endif
