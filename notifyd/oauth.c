/* SPDX-License-Identifier: Apache-2.0 */
/* Service-account access tokens for FCM (see oauth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "channel.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "jwt.h"
#include "oauth.h"

static ent_counter oauth_fetches = ENT_COUNTER("entitle_notifyd_oauth_fetches_total",
                                               "FCM OAuth token exchanges by result", "result");

/* Tokens are used until this long before the expiry the token endpoint announced. */
#define OAUTH_EXPIRY_MARGIN_MS 120000

struct notifyd_oauth_waiter {
    notifyd_oauth_cb cb;
    void *ud;
    struct notifyd_oauth_waiter *next;
};

static char *dup_json_str(json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v && v[0] ? strdup(v) : NULL;
}

ent_err notifyd_oauth_init(struct notifyd_oauth *o, struct notifyd_http *http,
                           const char *credentials_file, const char *ca_file, uint64_t timeout_ms,
                           char *err, size_t err_len)
{
    memset(o, 0, sizeof(*o));
    char *text = NULL;
    size_t len = 0;
    ent_err rc = ent_file_read(credentials_file, 256 * 1024, &text, &len);
    if (rc != ENT_OK) {
        snprintf(err, err_len, "fcm.credentials_file: cannot read %s: %s", credentials_file,
                 ent_strerror(rc));
        return ENT_ECONFIG;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!json_is_object(root)) {
        snprintf(err, err_len, "fcm.credentials_file: not a JSON object (line %d)", jerr.line);
        json_decref(root);
        return ENT_ECONFIG;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *pem = json_string_value(json_object_get(root, "private_key"));
    o->client_email = dup_json_str(root, "client_email");
    o->token_uri = dup_json_str(root, "token_uri");
    o->key_id = dup_json_str(root, "private_key_id");
    rc = ENT_ECONFIG;
    if (!type || strcmp(type, "service_account") != 0)
        snprintf(err, err_len, "fcm.credentials_file: type is not service_account");
    else if (!o->client_email || !o->token_uri || !pem)
        snprintf(err, err_len,
                 "fcm.credentials_file: client_email, private_key and token_uri "
                 "are required");
    else if (!notifyd_url_allowed(o->token_uri))
        snprintf(err, err_len,
                 "fcm.credentials_file: token_uri must be https (http only on "
                 "loopback)");
    else if (notifyd_key_from_pem(&o->key, pem, strlen(pem)) != ENT_OK ||
             EVP_PKEY_get_base_id(o->key) != EVP_PKEY_RSA)
        snprintf(err, err_len, "fcm.credentials_file: private_key is not an RSA private key");
    else
        rc = ENT_OK;
    json_decref(root);
    if (rc == ENT_OK && ca_file && ca_file[0]) {
        o->ca_file = strdup(ca_file);
        if (!o->ca_file)
            rc = ENT_ENOMEM;
    }
    if (rc != ENT_OK) {
        notifyd_oauth_free(o);
        return rc;
    }
    o->http = http;
    o->timeout_ms = timeout_ms;
    return ENT_OK;
}

void notifyd_oauth_free(struct notifyd_oauth *o)
{
    EVP_PKEY_free(o->key);
    free(o->client_email);
    free(o->key_id);
    free(o->token_uri);
    free(o->ca_file);
    free(o->access_token);
    while (o->waiters) {
        struct notifyd_oauth_waiter *w = o->waiters;
        o->waiters = w->next;
        free(w);
    }
    memset(o, 0, sizeof(*o));
}

void notifyd_oauth_invalidate(struct notifyd_oauth *o)
{
    free(o->access_token);
    o->access_token = NULL;
    o->refresh_at_ms = 0;
}

static void oauth_finish(struct notifyd_oauth *o, ent_err err)
{
    struct notifyd_oauth_waiter *list = o->waiters;
    o->waiters = NULL;
    o->fetching = false;
    ent_counter_inc(&oauth_fetches, err == ENT_OK ? "ok" : ent_err_name(err));
    while (list) {
        struct notifyd_oauth_waiter *w = list;
        list = w->next;
        w->cb(err, err == ENT_OK ? o->access_token : NULL, w->ud);
        free(w);
    }
}

static void on_token_response(const struct notifyd_http_resp *r, void *ud)
{
    struct notifyd_oauth *o = ud;
    if (r->err != ENT_OK) {
        ENT_LOG_WARN(NULL, "notifyd.oauth_failed", ENT_KV_STR("reason", r->err_text));
        oauth_finish(o, r->err == ENT_ETIMEDOUT ? ENT_ETIMEDOUT
                        : r->err == ENT_ECLOSED ? ENT_ECLOSED
                                                : ENT_EUNAVAIL);
        return;
    }
    if (r->status != 200) {
        /* 400/401 invalid_grant: the key is revoked or the clock is off; retrying with the
         * same key will not help soon, but the outbox retries with backoff anyway. */
        ENT_LOG_WARN(NULL, "notifyd.oauth_refused", ENT_KV_I64("status", r->status));
        oauth_finish(o, r->status >= 500 || r->status == 429 ? ENT_EUNAVAIL : ENT_EAUTH);
        return;
    }
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    const char *tok = json_string_value(json_object_get(root, "access_token"));
    json_int_t expires_in = json_integer_value(json_object_get(root, "expires_in"));
    if (!tok || !tok[0] || expires_in <= 0) {
        json_decref(root);
        ENT_LOG_WARN(NULL, "notifyd.oauth_bad_answer");
        oauth_finish(o, ENT_EPROTO);
        return;
    }
    free(o->access_token);
    o->access_token = strdup(tok);
    json_decref(root);
    if (!o->access_token) {
        oauth_finish(o, ENT_EUNAVAIL);
        return;
    }
    uint64_t life = (uint64_t)expires_in * 1000;
    uint64_t margin = life > 2 * OAUTH_EXPIRY_MARGIN_MS ? OAUTH_EXPIRY_MARGIN_MS : life / 2;
    o->refresh_at_ms = ent_now_ms() + life - margin;
    ENT_LOG_INFO(NULL, "notifyd.oauth_token", ENT_KV_I64("expires_in_s", expires_in));
    oauth_finish(o, ENT_OK);
}

static ent_err oauth_start_fetch(struct notifyd_oauth *o)
{
    uint64_t now_s = ent_wall_ms() / 1000;
    struct ent_buf hdr, claims, body;
    ent_buf_init(&hdr, 4096);
    ent_buf_init(&claims, 4096);
    ent_buf_init(&body, 16 * 1024);
    ent_err rc = ent_buf_append_str(&hdr, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
    if (rc == ENT_OK && o->key_id) {
        rc = ent_buf_append_str(&hdr, ",\"kid\":\"");
        if (rc == ENT_OK)
            rc = ent_buf_append_json_escaped(&hdr, o->key_id, strlen(o->key_id));
        if (rc == ENT_OK)
            rc = ent_buf_append_str(&hdr, "\"");
    }
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&hdr, "}");
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&claims, "{\"iss\":\"");
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&claims, o->client_email, strlen(o->client_email));
    if (rc == ENT_OK)
        rc = ent_buf_printf(&claims, "\",\"scope\":\"%s\",\"aud\":\"", NOTIFYD_FCM_SCOPE);
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&claims, o->token_uri, strlen(o->token_uri));
    if (rc == ENT_OK)
        rc = ent_buf_printf(&claims, "\",\"iat\":%llu,\"exp\":%llu}", (unsigned long long)now_s,
                            (unsigned long long)(now_s + 3600));
    if (rc == ENT_OK)
        rc = ent_buf_append_str(
            &body, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=");
    /* base64url is URL-safe, so the assertion needs no further encoding. */
    if (rc == ENT_OK)
        rc = notifyd_jwt_sign(&body, o->key, NOTIFYD_JWT_RS256, hdr.data, claims.data);
    if (rc == ENT_OK) {
        const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                 "Accept: application/json", NULL};
        struct notifyd_http_req req = {
            .url = o->token_uri,
            .headers = headers,
            .body = body.data,
            .body_len = body.len,
            .timeout_ms = o->timeout_ms,
            .ca_file = o->ca_file,
        };
        rc = notifyd_http_post(o->http, &req, on_token_response, o);
    }
    ent_buf_free(&hdr);
    ent_buf_free(&claims);
    ent_buf_free(&body);
    if (rc == ENT_OK) {
        o->fetching = true;
        o->fetches++;
    }
    return rc;
}

ent_err notifyd_oauth_get(struct notifyd_oauth *o, notifyd_oauth_cb cb, void *ud)
{
    if (o->access_token && ent_now_ms() < o->refresh_at_ms) {
        cb(ENT_OK, o->access_token, ud);
        return ENT_OK;
    }
    struct notifyd_oauth_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return ENT_ENOMEM;
    if (!o->fetching) {
        ent_err rc = oauth_start_fetch(o);
        if (rc != ENT_OK) {
            free(w);
            return rc;
        }
    }
    w->cb = cb;
    w->ud = ud;
    w->next = o->waiters;
    o->waiters = w;
    return ENT_OK;
}
