/* SPDX-License-Identifier: Apache-2.0 */
/* SMS gateway fallback (see sms.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sms.h"

struct sms_send {
    notifyd_send_cb cb;
    void *ud;
};

ent_err notifyd_sms_init(struct notifyd_sms *s, struct notifyd_http *http, const char *endpoint,
                         const char *auth_header, const char *tmpl, const char *ca_file,
                         uint64_t timeout_ms, char *err, size_t err_len)
{
    memset(s, 0, sizeof(*s));
    if (!notifyd_url_allowed(endpoint)) {
        snprintf(err, err_len, "sms.endpoint: must be https (http only on loopback)");
        return ENT_ECONFIG;
    }
    s->url = strdup(endpoint);
    s->tmpl = strdup(tmpl && tmpl[0] ? tmpl : NOTIFYD_SMS_DEFAULT_TEMPLATE);
    ent_err rc = s->url && s->tmpl ? ENT_OK : ENT_ENOMEM;
    if (rc == ENT_OK && auth_header && auth_header[0]) {
        const char *colon = strchr(auth_header, ':');
        const char *space = strchr(auth_header, ' ');
        bool has_name = colon && (!space || colon < space);
        struct ent_buf b;
        ent_buf_init(&b, 8192);
        rc = has_name ? ent_buf_append_str(&b, auth_header)
                      : ent_buf_printf(&b, "Authorization: %s", auth_header);
        if (rc == ENT_OK && strpbrk(b.data, "\r\n"))
            rc = ENT_ECONFIG;
        s->auth_header = rc == ENT_OK ? ent_buf_steal(&b, NULL) : NULL;
        ent_buf_free(&b);
        if (rc == ENT_ECONFIG)
            snprintf(err, err_len, "sms.auth_header: must be one header line");
    }
    if (rc == ENT_OK && ca_file && ca_file[0]) {
        s->ca_file = strdup(ca_file);
        rc = s->ca_file ? ENT_OK : ENT_ENOMEM;
    }
    if (rc == ENT_OK) {
        /* Check the template once with a dummy message so a typo fails at start. */
        char *apps[] = {"ap2004"};
        struct notifyd_msg m = {
            .token = "", .app_ids = apps, .n_app_ids = 1, .imsi = "0", .msisdn = "0"};
        struct ent_buf b;
        ent_buf_init(&b, 64 * 1024);
        rc = notifyd_sms_body(s, &m, &b);
        ent_buf_free(&b);
        if (rc != ENT_OK) {
            snprintf(err, err_len, "sms.template: unknown ${...} placeholder");
            rc = ENT_ECONFIG;
        }
    }
    if (rc != ENT_OK) {
        notifyd_sms_free(s);
        return rc;
    }
    s->http = http;
    s->timeout_ms = timeout_ms;
    return ENT_OK;
}

void notifyd_sms_free(struct notifyd_sms *s)
{
    free(s->url);
    free(s->auth_header);
    free(s->tmpl);
    free(s->ca_file);
    memset(s, 0, sizeof(*s));
}

ent_err notifyd_sms_text(struct ent_buf *out, const struct notifyd_msg *m)
{
    ent_err rc = ent_buf_printf(out, "%s-aescfg", m->imsi ? m->imsi : "");
    for (size_t i = 0; i < m->n_app_ids && rc == ENT_OK; i++)
        rc = ent_buf_printf(out, ",%s", m->app_ids[i]);
    return rc;
}

ent_err notifyd_sms_body(const struct notifyd_sms *s, const struct notifyd_msg *m,
                         struct ent_buf *out)
{
    struct ent_buf text, apps;
    ent_buf_init(&text, 4096);
    ent_buf_init(&apps, 4096);
    ent_err rc = notifyd_sms_text(&text, m);
    for (size_t i = 0; i < m->n_app_ids && rc == ENT_OK; i++)
        rc = ent_buf_printf(&apps, "%s%s", i ? "," : "", m->app_ids[i]);
    const char *p = s->tmpl;
    while (rc == ENT_OK && *p) {
        const char *ph = strstr(p, "${");
        if (!ph) {
            rc = ent_buf_append_str(out, p);
            break;
        }
        rc = ent_buf_append(out, p, (size_t)(ph - p));
        const char *end = strchr(ph, '}');
        if (rc != ENT_OK || !end) {
            rc = rc == ENT_OK ? ENT_EINVAL : rc;
            break;
        }
        size_t n = (size_t)(end - ph - 2);
        const char *name = ph + 2;
        const char *val = NULL;
        char port[8];
        if (n == 6 && memcmp(name, "msisdn", 6) == 0)
            val = m->msisdn ? m->msisdn : "";
        else if (n == 4 && memcmp(name, "text", 4) == 0)
            val = text.data ? text.data : "";
        else if (n == 4 && memcmp(name, "imsi", 4) == 0)
            val = m->imsi ? m->imsi : "";
        else if (n == 7 && memcmp(name, "app_ids", 7) == 0)
            val = apps.data ? apps.data : "";
        else if (n == 4 && memcmp(name, "port", 4) == 0) {
            snprintf(port, sizeof(port), "%d", NOTIFYD_SMS_PORT);
            val = port;
        }
        if (!val) {
            rc = ENT_EINVAL;
            break;
        }
        rc = ent_buf_append_json_escaped(out, val, strlen(val));
        p = end + 1;
    }
    ent_buf_free(&text);
    ent_buf_free(&apps);
    return rc;
}

static void on_sms_response(const struct notifyd_http_resp *hr, void *ud)
{
    struct sms_send *ss = ud;
    struct notifyd_result r = {.retry_after_ms = -1};
    if (hr->err != ENT_OK) {
        notifyd_result_transport(&r, hr->err);
    } else if (!notifyd_result_http_common(&r, hr->status, hr->retry_after_ms)) {
        r.outcome = NOTIFYD_PERMANENT;
        r.reason = "rejected";
    }
    ss->cb(&r, ss->ud);
    free(ss);
}

void notifyd_sms_send(struct notifyd_sms *s, const struct notifyd_msg *m, notifyd_send_cb cb,
                      void *ud)
{
    struct notifyd_result r = {.outcome = NOTIFYD_RETRY, .retry_after_ms = -1, .reason = "nomem"};
    struct sms_send *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        cb(&r, ud);
        return;
    }
    ss->cb = cb;
    ss->ud = ud;
    struct ent_buf body;
    ent_buf_init(&body, 64 * 1024);
    ent_err rc = notifyd_sms_body(s, m, &body);
    if (rc == ENT_OK) {
        const char *headers[] = {"Content-Type: application/json", s->auth_header, NULL};
        struct notifyd_http_req req = {
            .url = s->url,
            .headers = headers,
            .body = body.data,
            .body_len = body.len,
            .timeout_ms = s->timeout_ms,
            .ca_file = s->ca_file,
        };
        rc = notifyd_http_post(s->http, &req, on_sms_response, ss);
        if (rc != ENT_OK)
            notifyd_result_transport(&r, rc);
    } else {
        r.outcome = NOTIFYD_PERMANENT;
        r.reason = "payload";
    }
    ent_buf_free(&body);
    if (rc != ENT_OK) {
        cb(&r, ud);
        free(ss);
    }
}
