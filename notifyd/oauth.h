/* SPDX-License-Identifier: Apache-2.0 */
/* OAuth 2.0 access tokens for FCM from a Google service-account key file (RFC 7523 JWT
 * bearer grant): sign an RS256 assertion with the file's private key, exchange it at the
 * file's token_uri, and cache the access token until shortly before it expires. Concurrent
 * requests for a token share one exchange. This file owns the key, the cached token and the
 * waiters; fcm.c owns what the token is used for. Loop thread only. */
#ifndef NOTIFYD_OAUTH_H
#define NOTIFYD_OAUTH_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "http_client.h"

#define NOTIFYD_FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"

/* err is ENT_OK with a token (valid only during the call), or ENT_EAUTH (the token endpoint
 * refused the assertion), ENT_EUNAVAIL / ENT_ETIMEDOUT / ENT_EPROTO (try again later) or
 * ENT_ECLOSED. */
typedef void (*notifyd_oauth_cb)(ent_err err, const char *access_token, void *ud);

struct notifyd_oauth_waiter;
struct notifyd_oauth {
    struct notifyd_http *http;
    EVP_PKEY *key;
    char *client_email;
    char *key_id;
    char *token_uri;
    char *ca_file;
    uint64_t timeout_ms;
    char *access_token;
    uint64_t refresh_at_ms; /* monotonic; the cached token is used until then */
    bool fetching;
    struct notifyd_oauth_waiter *waiters;
    uint64_t fetches; /* exchanges started, for tests */
};

/* Reads and checks the service-account JSON (type "service_account", client_email,
 * private_key, token_uri; private_key_id when present). token_uri must be https, or http on
 * loopback. A reason without secrets goes to err. Errors: ENT_ECONFIG, ENT_ENOMEM. */
ent_err notifyd_oauth_init(struct notifyd_oauth *o, struct notifyd_http *http,
                           const char *credentials_file, const char *ca_file, uint64_t timeout_ms,
                           char *err, size_t err_len);
/* Gets a token: with a fresh cached token cb runs before this returns; otherwise after the
 * exchange (one exchange serves every waiter). Errors without calling cb: ENT_ENOMEM. */
ent_err notifyd_oauth_get(struct notifyd_oauth *o, notifyd_oauth_cb cb, void *ud);
/* Forgets the cached token (FCM answered 401 with it). */
void notifyd_oauth_invalidate(struct notifyd_oauth *o);
/* Frees everything. No exchange may be in flight (close the HTTP client first). */
void notifyd_oauth_free(struct notifyd_oauth *o);

#endif
