/* SPDX-License-Identifier: Apache-2.0 */
/* APNs provider API: HTTP/2 over TLS, POST <endpoint>/3/device/<token>, token-based
 * authentication with an ES256 JWT signed by the team's .p8 key (kid = key id, iss = team id,
 * iat), re-signed every 50 minutes because APNs refuses tokens older than an hour. The
 * TS.43 refresh is a background push (aps.content-available = 1): apns-push-type background
 * and apns-priority 5, as Apple requires for that type, and a one-day apns-expiration so a
 * device that is off gets it when it comes back. This file owns the JWT cache, the request
 * and the meaning of APNs reasons. Loop thread only. */
#ifndef NOTIFYD_APNS_H
#define NOTIFYD_APNS_H

#include <openssl/evp.h>

#include "channel.h"
#include "http_client.h"

#define NOTIFYD_APNS_JWT_LIFETIME_MS (50ULL * 60 * 1000)

struct notifyd_apns {
    struct notifyd_http *http;
    EVP_PKEY *key;
    char *key_id;
    char *team_id;
    char *topic;
    char *base_url;
    char *ca_file;
    uint64_t timeout_ms;
    char *jwt;           /* cached provider token */
    uint64_t jwt_at_ms;  /* monotonic time it was signed */
    uint64_t jwt_signed; /* tokens signed so far, for tests and logs */
};

/* Loads the .p8 (a P-256 PKCS#8 key) and checks key_id, team_id (10 characters each as
 * Apple issues them, but only non-empty is required), topic and endpoint (https, or http
 * on loopback). Errors: ENT_ECONFIG with a reason in err, ENT_ENOMEM. */
ent_err notifyd_apns_init(struct notifyd_apns *a, struct notifyd_http *http, const char *endpoint,
                          const char *key_file, const char *key_id, const char *team_id,
                          const char *topic, const char *ca_file, uint64_t timeout_ms, char *err,
                          size_t err_len);
/* Sends m; cb runs exactly once. Outcomes: 200 DELIVERED; 400 BadDeviceToken /
 * DeviceTokenNotForTopic and 410 Unregistered INVALID_TOKEN; 403 ExpiredProviderToken /
 * InvalidProviderToken re-sign and RETRY; 429 TooManyRequests and 5xx RETRY; else PERMANENT. */
void notifyd_apns_send(struct notifyd_apns *a, const struct notifyd_msg *m, notifyd_send_cb cb,
                       void *ud);
void notifyd_apns_free(struct notifyd_apns *a);

#endif
