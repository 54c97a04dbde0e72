/* SPDX-License-Identifier: Apache-2.0 */
/* FCM HTTP v1 sends (see fcm.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/log.h"
#include "fcm.h"

struct fcm_send {
    struct notifyd_fcm *f;
    char *body;
    size_t body_len;
    notifyd_send_cb cb;
    void *ud;
};

ent_err notifyd_fcm_init(struct notifyd_fcm *f, struct notifyd_http *http, const char *project_id,
                         const char *credentials_file, const char *endpoint, const char *ca_file,
                         uint64_t timeout_ms, char *err, size_t err_len)
{
    memset(f, 0, sizeof(*f));
    if (!project_id || !project_id[0] || strpbrk(project_id, "/?#% ")) {
        snprintf(err, err_len, "fcm.project_id: required (letters, digits and dashes)");
        return ENT_ECONFIG;
    }
    if (!notifyd_url_allowed(endpoint)) {
        snprintf(err, err_len, "fcm.endpoint: must be https (http only on loopback)");
        return ENT_ECONFIG;
    }
    ent_err rc =
        notifyd_oauth_init(&f->oauth, http, credentials_file, ca_file, timeout_ms, err, err_len);
    if (rc != ENT_OK)
        return rc;
    size_t elen = strlen(endpoint);
    while (elen && endpoint[elen - 1] == '/')
        elen--;
    struct ent_buf u;
    ent_buf_init(&u, 4096);
    rc = ent_buf_printf(&u, "%.*s/v1/projects/%s/messages:send", (int)elen, endpoint, project_id);
    if (rc == ENT_OK && ca_file && ca_file[0]) {
        f->ca_file = strdup(ca_file);
        if (!f->ca_file)
            rc = ENT_ENOMEM;
    }
    if (rc != ENT_OK) {
        ent_buf_free(&u);
        notifyd_fcm_free(f);
        return rc;
    }
    f->send_url = ent_buf_steal(&u, NULL);
    f->http = http;
    f->timeout_ms = timeout_ms;
    return ENT_OK;
}

void notifyd_fcm_free(struct notifyd_fcm *f)
{
    notifyd_oauth_free(&f->oauth);
    free(f->send_url);
    free(f->ca_file);
    memset(f, 0, sizeof(*f));
}

static void fcm_send_done(struct fcm_send *s, const struct notifyd_result *r)
{
    s->cb(r, s->ud);
    free(s->body);
    free(s);
}

static void on_send_response(const struct notifyd_http_resp *hr, void *ud)
{
    struct fcm_send *s = ud;
    struct notifyd_result r = {.retry_after_ms = -1};
    if (hr->err != ENT_OK) {
        notifyd_result_transport(&r, hr->err);
        fcm_send_done(s, &r);
        return;
    }
    if (!notifyd_result_http_common(&r, hr->status, hr->retry_after_ms)) {
        const char *b = hr->body;
        if (hr->status == 401) {
            notifyd_oauth_invalidate(&s->f->oauth);
            r.outcome = NOTIFYD_RETRY;
            r.reason = "auth";
        } else if (hr->status == 404 || strstr(b, "UNREGISTERED")) {
            r.outcome = NOTIFYD_INVALID_TOKEN;
            r.reason = "unregistered";
        } else if (hr->status == 403 && strstr(b, "SENDER_ID_MISMATCH")) {
            r.outcome = NOTIFYD_INVALID_TOKEN;
            r.reason = "sender_mismatch";
        } else if (hr->status == 400 &&
                   (strstr(b, "registration token") || strstr(b, "message.token"))) {
            r.outcome = NOTIFYD_INVALID_TOKEN;
            r.reason = "bad_token";
        } else {
            r.outcome = NOTIFYD_PERMANENT;
            r.reason = "rejected";
        }
    }
    fcm_send_done(s, &r);
}

static void on_access_token(ent_err err, const char *token, void *ud)
{
    struct fcm_send *s = ud;
    struct notifyd_result r = {.outcome = NOTIFYD_RETRY, .retry_after_ms = -1};
    if (err != ENT_OK) {
        r.reason = err == ENT_ECLOSED ? "closing" : "oauth";
        fcm_send_done(s, &r);
        return;
    }
    char auth[4096];
    if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token) >= sizeof(auth)) {
        r.reason = "oauth";
        fcm_send_done(s, &r);
        return;
    }
    const char *headers[] = {auth, "Content-Type: application/json; charset=utf-8", NULL};
    struct notifyd_http_req req = {
        .url = s->f->send_url,
        .headers = headers,
        .body = s->body,
        .body_len = s->body_len,
        .timeout_ms = s->f->timeout_ms,
        .ca_file = s->f->ca_file,
    };
    ent_err rc = notifyd_http_post(s->f->http, &req, on_send_response, s);
    if (rc != ENT_OK) {
        notifyd_result_transport(&r, rc);
        fcm_send_done(s, &r);
    }
}

void notifyd_fcm_send(struct notifyd_fcm *f, const struct notifyd_msg *m, notifyd_send_cb cb,
                      void *ud)
{
    struct notifyd_result r = {.outcome = NOTIFYD_RETRY, .retry_after_ms = -1, .reason = "nomem"};
    struct fcm_send *s = calloc(1, sizeof(*s));
    if (!s) {
        cb(&r, ud);
        return;
    }
    s->f = f;
    s->cb = cb;
    s->ud = ud;
    char ts[32];
    struct ent_buf b;
    ent_buf_init(&b, 16 * 1024);
    ent_err rc = notifyd_payload_timestamp(ts, m->changed_ms);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&b, "{\"message\":{\"token\":\"");
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&b, m->token, strlen(m->token));
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&b, "\",\"data\":{\"app\":\"");
    if (rc == ENT_OK)
        rc = notifyd_payload_app(&b, m->app_ids, m->n_app_ids, true);
    if (rc == ENT_OK)
        rc = ent_buf_printf(&b, "\",\"timestamp\":\"%s\"},\"android\":{\"priority\":\"HIGH\"}}}",
                            ts);
    if (rc != ENT_OK) {
        ent_buf_free(&b);
        free(s);
        r.reason = "payload";
        r.outcome = NOTIFYD_PERMANENT;
        cb(&r, ud);
        return;
    }
    s->body = ent_buf_steal(&b, &s->body_len);
    rc = notifyd_oauth_get(&f->oauth, on_access_token, s);
    if (rc != ENT_OK)
        fcm_send_done(s, &r);
}
