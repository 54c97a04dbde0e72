/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers the channels share: the TS.43 payload fields and the common status classes. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "channel.h"

ent_err notifyd_payload_app(struct ent_buf *out, char *const *app_ids, size_t n, bool for_fcm)
{
    ent_err rc = ENT_OK;
    if (n == 1)
        return ent_buf_append_json_escaped(out, app_ids[0], strlen(app_ids[0]));
    /* Several AppIDs: FCM data values are strings, so the array travels as JSON text inside
     * the string (escaped once more); in APNs it is a real JSON array, written by the
     * caller, so this branch is only used for FCM. */
    (void)for_fcm;
    rc = ent_buf_append_str(out, "[");
    for (size_t i = 0; i < n && rc == ENT_OK; i++) {
        rc = ent_buf_append_str(out, i ? ",\\\"" : "\\\"");
        if (rc == ENT_OK)
            rc = ent_buf_append_json_escaped(out, app_ids[i], strlen(app_ids[i]));
        if (rc == ENT_OK)
            rc = ent_buf_append_str(out, "\\\"");
    }
    if (rc == ENT_OK)
        rc = ent_buf_append_str(out, "]");
    return rc;
}

ent_err notifyd_payload_timestamp(char out[32], uint64_t unix_ms)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return ENT_EINVAL;
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return ENT_EINVAL;
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(unix_ms % 1000));
    return ENT_OK;
}

void notifyd_result_transport(struct notifyd_result *r, ent_err err)
{
    r->outcome = NOTIFYD_RETRY;
    r->retry_after_ms = -1;
    r->http_status = 0;
    switch (err) {
    case ENT_ETIMEDOUT:
        r->reason = "timeout";
        break;
    case ENT_EUNAVAIL:
        r->reason = "network";
        break;
    case ENT_ETLS:
        r->reason = "tls";
        break;
    case ENT_ECLOSED:
        r->reason = "closing";
        break;
    default:
        r->reason = "io";
        break;
    }
}

bool notifyd_result_http_common(struct notifyd_result *r, long status, int64_t retry_after_ms)
{
    r->http_status = status;
    r->retry_after_ms = retry_after_ms;
    if (status >= 200 && status < 300) {
        r->outcome = NOTIFYD_DELIVERED;
        r->reason = "ok";
        return true;
    }
    if (status == 429) {
        r->outcome = NOTIFYD_RETRY;
        r->reason = "http_429";
        return true;
    }
    if (status >= 500 && status < 600) {
        r->outcome = NOTIFYD_RETRY;
        r->reason = "http_5xx";
        return true;
    }
    return false;
}

bool notifyd_url_allowed(const char *url)
{
    if (!url)
        return false;
    if (strncmp(url, "https://", 8) == 0)
        return url[8] != '\0';
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *host = url + 7;
    static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        size_t n = strlen(loopback[i]);
        if (strncmp(host, loopback[i], n) == 0 &&
            (host[n] == ':' || host[n] == '/' || host[n] == '\0'))
            return true;
    }
    return false;
}
