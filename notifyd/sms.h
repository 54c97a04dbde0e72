/* SPDX-License-Identifier: Apache-2.0 */
/* The TS.43 SMS notification (PROTOCOL §9, TS.43 §2.6.1) through an operator's HTTP SMS
 * gateway: a binary-port SMS to application port 8095 (0x1F9F, UDH IEI 0x05) whose text is
 * `<IMSI>-aescfg,<AppID>[,<AppID>...]`. The gateway's JSON body comes from a template with
 * ${msisdn}, ${text}, ${imsi}, ${app_ids} and ${port} placeholders (values JSON-escaped), so
 * any gateway that takes JSON over HTTP POST fits. Off unless sms.endpoint is set. This file
 * owns the text, the template and the meaning of the gateway's status. Loop thread only. */
#ifndef NOTIFYD_SMS_H
#define NOTIFYD_SMS_H

#include "channel.h"
#include "http_client.h"

#define NOTIFYD_SMS_PORT 8095
#define NOTIFYD_SMS_DEFAULT_TEMPLATE                                                               \
    "{\"to\":\"${msisdn}\",\"port\":${port},\"udh_iei\":5,\"text\":\"${text}\"}"

struct notifyd_sms {
    struct notifyd_http *http;
    char *url;
    char *auth_header; /* a whole "Name: value" line, or NULL */
    char *tmpl;
    char *ca_file;
    uint64_t timeout_ms;
};

/* auth_header may be "Name: value" or just a value (sent as "Authorization: <value>").
 * tmpl NULL or "" means NOTIFYD_SMS_DEFAULT_TEMPLATE. Errors: ENT_ECONFIG (bad URL), ENT_ENOMEM. */
ent_err notifyd_sms_init(struct notifyd_sms *s, struct notifyd_http *http, const char *endpoint,
                         const char *auth_header, const char *tmpl, const char *ca_file,
                         uint64_t timeout_ms, char *err, size_t err_len);
/* Appends the TS.43 text for m ("<IMSI>-aescfg,ap2003,ap2004"). */
ent_err notifyd_sms_text(struct ent_buf *out, const struct notifyd_msg *m);
/* Expands the template for m into out. Errors: ENT_EINVAL (unknown placeholder), buffer. */
ent_err notifyd_sms_body(const struct notifyd_sms *s, const struct notifyd_msg *m,
                         struct ent_buf *out);
/* Sends m (needs msisdn and imsi); 2xx DELIVERED, 429/5xx RETRY, else PERMANENT. */
void notifyd_sms_send(struct notifyd_sms *s, const struct notifyd_msg *m, notifyd_send_cb cb,
                      void *ud);
void notifyd_sms_free(struct notifyd_sms *s);

#endif
