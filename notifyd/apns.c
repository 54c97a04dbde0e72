/* SPDX-License-Identifier: Apache-2.0 */
/* APNs sends with provider-token authentication (see apns.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "apns.h"
#include "ent/log.h"
#include "jwt.h"

struct apns_send {
    notifyd_send_cb cb;
    void *ud;
    struct notifyd_apns *a;
};

static char *dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

ent_err notifyd_apns_init(struct notifyd_apns *a, struct notifyd_http *http, const char *endpoint,
                          const char *key_file, const char *key_id, const char *team_id,
                          const char *topic, const char *ca_file, uint64_t timeout_ms, char *err,
                          size_t err_len)
{
    memset(a, 0, sizeof(*a));
    if (!notifyd_url_allowed(endpoint)) {
        snprintf(err, err_len, "apns.endpoint: must be https (http only on loopback)");
        return ENT_ECONFIG;
    }
    if (!key_id || !key_id[0] || !team_id || !team_id[0] || !topic || !topic[0]) {
        snprintf(err, err_len,
                 "apns.key_id, apns.team_id and apns.topic are required with "
                 "apns.key_file");
        return ENT_ECONFIG;
    }
    char *pem = NULL;
    size_t len = 0;
    ent_err rc = ent_file_read(key_file, 64 * 1024, &pem, &len);
    if (rc != ENT_OK) {
        snprintf(err, err_len, "apns.key_file: cannot read %s: %s", key_file, ent_strerror(rc));
        return ENT_ECONFIG;
    }
    rc = notifyd_key_from_pem(&a->key, pem, len);
    free(pem);
    if (rc != ENT_OK || EVP_PKEY_get_base_id(a->key) != EVP_PKEY_EC ||
        EVP_PKEY_get_bits(a->key) != 256) {
        snprintf(err, err_len, "apns.key_file: not a P-256 private key (.p8)");
        notifyd_apns_free(a);
        return ENT_ECONFIG;
    }
    size_t elen = strlen(endpoint);
    while (elen && endpoint[elen - 1] == '/')
        elen--;
    a->base_url = strndup(endpoint, elen);
    a->key_id = dup_or_null(key_id);
    a->team_id = dup_or_null(team_id);
    a->topic = dup_or_null(topic);
    a->ca_file = dup_or_null(ca_file);
    if (!a->base_url || !a->key_id || !a->team_id || !a->topic ||
        (ca_file && ca_file[0] && !a->ca_file)) {
        notifyd_apns_free(a);
        return ENT_ENOMEM;
    }
    a->http = http;
    a->timeout_ms = timeout_ms;
    return ENT_OK;
}

void notifyd_apns_free(struct notifyd_apns *a)
{
    EVP_PKEY_free(a->key);
    free(a->key_id);
    free(a->team_id);
    free(a->topic);
    free(a->base_url);
    free(a->ca_file);
    free(a->jwt);
    memset(a, 0, sizeof(*a));
}

/* The cached provider token, re-signed when older than NOTIFYD_APNS_JWT_LIFETIME_MS. */
static const char *apns_jwt(struct notifyd_apns *a)
{
    uint64_t now = ent_now_ms();
    if (a->jwt && now - a->jwt_at_ms < NOTIFYD_APNS_JWT_LIFETIME_MS)
        return a->jwt;
    struct ent_buf hdr, claims, tok;
    ent_buf_init(&hdr, 1024);
    ent_buf_init(&claims, 1024);
    ent_buf_init(&tok, 4096);
    ent_err rc = ent_buf_append_str(&hdr, "{\"alg\":\"ES256\",\"kid\":\"");
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&hdr, a->key_id, strlen(a->key_id));
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&hdr, "\"}");
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&claims, "{\"iss\":\"");
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&claims, a->team_id, strlen(a->team_id));
    if (rc == ENT_OK)
        rc =
            ent_buf_printf(&claims, "\",\"iat\":%llu}", (unsigned long long)(ent_wall_ms() / 1000));
    if (rc == ENT_OK)
        rc = notifyd_jwt_sign(&tok, a->key, NOTIFYD_JWT_ES256, hdr.data, claims.data);
    ent_buf_free(&hdr);
    ent_buf_free(&claims);
    if (rc != ENT_OK) {
        ent_buf_free(&tok);
        ENT_LOG_ERROR(NULL, "notifyd.apns_jwt_failed", ENT_KV_STR("reason", ent_err_name(rc)));
        return NULL;
    }
    free(a->jwt);
    a->jwt = ent_buf_steal(&tok, NULL);
    a->jwt_at_ms = now;
    a->jwt_signed++;
    return a->jwt;
}

static void apns_done(struct apns_send *s, const struct notifyd_result *r)
{
    s->cb(r, s->ud);
    free(s);
}

static void on_apns_response(const struct notifyd_http_resp *hr, void *ud)
{
    struct apns_send *s = ud;
    struct notifyd_result r = {.retry_after_ms = -1};
    if (hr->err != ENT_OK) {
        notifyd_result_transport(&r, hr->err);
        apns_done(s, &r);
        return;
    }
    if (notifyd_result_http_common(&r, hr->status, hr->retry_after_ms)) {
        apns_done(s, &r);
        return;
    }
    json_t *root = json_loadb(hr->body, hr->body_len, 0, NULL);
    const char *why = json_string_value(json_object_get(root, "reason"));
    why = why ? why : "";
    if (hr->status == 410 || strcmp(why, "Unregistered") == 0) {
        r.outcome = NOTIFYD_INVALID_TOKEN;
        r.reason = "unregistered";
    } else if (strcmp(why, "BadDeviceToken") == 0 || strcmp(why, "DeviceTokenNotForTopic") == 0) {
        r.outcome = NOTIFYD_INVALID_TOKEN;
        r.reason = "bad_token";
    } else if (strcmp(why, "ExpiredProviderToken") == 0 ||
               strcmp(why, "InvalidProviderToken") == 0) {
        /* Sign a new token for the next attempt; a wrong key keeps failing and dead-letters. */
        free(s->a->jwt);
        s->a->jwt = NULL;
        r.outcome = NOTIFYD_RETRY;
        r.reason = "auth";
    } else {
        ENT_LOG_WARN(NULL, "notifyd.apns_rejected", ENT_KV_I64("status", hr->status),
                     ENT_KV_STR("apns_reason", why));
        r.outcome = NOTIFYD_PERMANENT;
        r.reason = "rejected";
    }
    json_decref(root);
    apns_done(s, &r);
}

void notifyd_apns_send(struct notifyd_apns *a, const struct notifyd_msg *m, notifyd_send_cb cb,
                       void *ud)
{
    struct notifyd_result r = {.outcome = NOTIFYD_RETRY, .retry_after_ms = -1, .reason = "nomem"};
    struct apns_send *s = calloc(1, sizeof(*s));
    if (!s) {
        cb(&r, ud);
        return;
    }
    s->cb = cb;
    s->ud = ud;
    s->a = a;
    /* Device tokens are hex; anything else would change the URL path. */
    if (!m->token[0] || strspn(m->token, "0123456789abcdefABCDEF") != strlen(m->token) ||
        strlen(m->token) > 200) {
        r.outcome = NOTIFYD_INVALID_TOKEN;
        r.reason = "bad_token";
        apns_done(s, &r);
        return;
    }
    const char *jwt = apns_jwt(a);
    if (!jwt) {
        r.reason = "auth";
        apns_done(s, &r);
        return;
    }
    char ts[32];
    struct ent_buf body, url, auth, topic, exp;
    ent_buf_init(&body, 8192);
    ent_buf_init(&url, 4096);
    ent_buf_init(&auth, 4096);
    ent_buf_init(&topic, 1024);
    ent_buf_init(&exp, 64);
    ent_err rc = notifyd_payload_timestamp(ts, m->changed_ms);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&body, "{\"aps\":{\"content-available\":1},\"app\":");
    for (size_t i = 0; i < m->n_app_ids && rc == ENT_OK; i++) {
        if (m->n_app_ids > 1)
            rc = ent_buf_append_str(&body, i == 0 ? "[\"" : ",\"");
        else
            rc = ent_buf_append_str(&body, "\"");
        if (rc == ENT_OK)
            rc = ent_buf_append_json_escaped(&body, m->app_ids[i], strlen(m->app_ids[i]));
        if (rc == ENT_OK)
            rc = ent_buf_append_str(&body, "\"");
    }
    if (rc == ENT_OK && m->n_app_ids > 1)
        rc = ent_buf_append_str(&body, "]");
    if (rc == ENT_OK)
        rc = ent_buf_printf(&body, ",\"timestamp\":\"%s\"}", ts);
    if (rc == ENT_OK)
        rc = ent_buf_printf(&url, "%s/3/device/%s", a->base_url, m->token);
    if (rc == ENT_OK)
        rc = ent_buf_printf(&auth, "authorization: bearer %s", jwt);
    if (rc == ENT_OK)
        rc = ent_buf_printf(&topic, "apns-topic: %s", a->topic);
    if (rc == ENT_OK)
        rc = ent_buf_printf(&exp, "apns-expiration: %llu",
                            (unsigned long long)(ent_wall_ms() / 1000 + 86400));
    if (rc == ENT_OK) {
        const char *headers[] = {auth.data,
                                 topic.data,
                                 "apns-push-type: background",
                                 "apns-priority: 5",
                                 exp.data,
                                 "content-type: application/json",
                                 NULL};
        struct notifyd_http_req req = {
            .url = url.data,
            .headers = headers,
            .body = body.data,
            .body_len = body.len,
            .timeout_ms = a->timeout_ms,
            .ca_file = a->ca_file,
        };
        rc = notifyd_http_post(a->http, &req, on_apns_response, s);
        if (rc != ENT_OK)
            notifyd_result_transport(&r, rc);
    } else {
        r.outcome = NOTIFYD_PERMANENT;
        r.reason = "payload";
    }
    ent_buf_free(&body);
    ent_buf_free(&url);
    ent_buf_free(&auth);
    ent_buf_free(&topic);
    ent_buf_free(&exp);
    if (rc != ENT_OK)
        apns_done(s, &r);
}
