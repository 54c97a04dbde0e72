/* SPDX-License-Identifier: Apache-2.0 */
/* What every delivery channel (fcm.c, apns.c, sms.c) reports back to the outbox worker, and
 * the payload facts they share. The worker (outbox.c) decides what an outcome means for the
 * outbox row: ack, retry later, remove the registration, fall back to SMS, or dead-letter. */
#ifndef NOTIFYD_CHANNEL_H
#define NOTIFYD_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"
#include "ent/util.h"

enum notifyd_outcome {
    NOTIFYD_DELIVERED,     /* the provider accepted the message */
    NOTIFYD_RETRY,         /* transient (429, 5xx, network, token endpoint): try again later */
    NOTIFYD_INVALID_TOKEN, /* the device's registration is gone: remove it */
    NOTIFYD_PERMANENT,     /* the provider refused this message for good (4xx, bad config) */
};

/* reason is a static string from a closed set (a metric label): "ok", "http_429",
 * "http_5xx", "unregistered", "bad_token", "timeout", "network", "auth", "rejected", ... */
struct notifyd_result {
    enum notifyd_outcome outcome;
    int64_t retry_after_ms; /* the provider's Retry-After, -1 when it gave none */
    long http_status;       /* 0 when no HTTP answer */
    const char *reason;
};

/* One message to deliver, as decoded from the outbox row; strings stay the worker's. */
struct notifyd_msg {
    const char *token;    /* push token (FCM registration token / APNs device token hex) */
    char *const *app_ids; /* at least one */
    size_t n_app_ids;
    uint64_t changed_ms; /* wall clock ms of the change: the payload timestamp */
    const char *imsi;    /* SMS text */
    const char *msisdn;  /* SMS destination */
};

typedef void (*notifyd_send_cb)(const struct notifyd_result *r, void *ud);

/* The TS.43 push data (PROTOCOL §9): `app` is the one AppID as a string, or a JSON array text
 * when there are several; `timestamp` is ISO 8601 with zone. Both appended to out as the
 * *inside* of JSON (already escaped, no quotes). */
ent_err notifyd_payload_app(struct ent_buf *out, char *const *app_ids, size_t n, bool for_fcm);
ent_err notifyd_payload_timestamp(char out[32], uint64_t unix_ms);

/* Maps a transport error to a retry result ("timeout", "network", "tls", "io"). */
void notifyd_result_transport(struct notifyd_result *r, ent_err err);
/* Common HTTP status classes: 2xx delivered; 429 and 5xx retry (Retry-After kept); others
 * left to the channel (returns false). */
bool notifyd_result_http_common(struct notifyd_result *r, long status, int64_t retry_after_ms);

/* True for https:// URLs, and for http:// ones only when the host is loopback (127.0.0.1,
 * [::1], localhost): push credentials never cross a network in clear text. */
bool notifyd_url_allowed(const char *url);

#endif
