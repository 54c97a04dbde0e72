/* SPDX-License-Identifier: Apache-2.0 */
/* FCM HTTP v1: one POST per message to <endpoint>/v1/projects/<project>/messages:send with a
 * data-only message carrying the TS.43 `app` and `timestamp` keys (PROTOCOL §9), high
 * priority so a dozing device wakes, authorised by a service-account access token from
 * oauth.c. This file owns the message body and the meaning of FCM's answers; the outbox worker
 * decides what to do with the outcome. Loop thread only. */
#ifndef NOTIFYD_FCM_H
#define NOTIFYD_FCM_H

#include "channel.h"
#include "http_client.h"
#include "oauth.h"

struct notifyd_fcm {
    struct notifyd_http *http;
    struct notifyd_oauth oauth;
    char *send_url;
    char *ca_file;
    uint64_t timeout_ms;
};

/* Reads the credentials (see notifyd_oauth_init) and builds the send URL from endpoint (no
 * trailing slash needed; https, or http on loopback) and project_id. A reason goes to err.
 * Errors: ENT_ECONFIG, ENT_ENOMEM. */
ent_err notifyd_fcm_init(struct notifyd_fcm *f, struct notifyd_http *http, const char *project_id,
                         const char *credentials_file, const char *endpoint, const char *ca_file,
                         uint64_t timeout_ms, char *err, size_t err_len);
/* Sends m; cb runs exactly once, later (or now, if the request could not even start: then
 * with a RETRY result). Outcomes: 2xx DELIVERED; 404 UNREGISTERED, 400 about the token and
 * 403 SENDER_ID_MISMATCH INVALID_TOKEN; 401 drops the cached access token and RETRY; 429/5xx
 * RETRY with Retry-After; other answers PERMANENT. */
void notifyd_fcm_send(struct notifyd_fcm *f, const struct notifyd_msg *m, notifyd_send_cb cb,
                      void *ud);
/* Frees f (close the HTTP client first). */
void notifyd_fcm_free(struct notifyd_fcm *f);

#endif
