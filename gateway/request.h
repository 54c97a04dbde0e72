/* SPDX-License-Identifier: Apache-2.0 */
/* TS.43 request parsing and validation (PROTOCOL.md §1, §2): one HTTP request (GET query or
 * flat JSON POST body, or the parameter-less EAP-relay POST) becomes a struct gw_req, or a
 * refusal with the HTTP status and a closed-set reason for the log and the metrics. This
 * file owns the parameter table (names, lengths, character sets), the `app` list forms, the
 * one-auth-method rule and the Accept → format choice; it never talks to the bus and keeps
 * no state, so a refused request leaves nothing behind. Any thread (pure functions). */
#ifndef ENTITLE_GATEWAY_REQUEST_H
#define ENTITLE_GATEWAY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/http.h"

#define GW_APPS_MAX       16
#define GW_APP_LEN        6 /* "ap2004" */
#define GW_EAP_PACKET_MAX 1024

enum gw_req_kind {
    GW_REQ_NOAUTH,       /* no EAP_ID, token or temporary_token: 511 */
    GW_REQ_EAP_START,    /* EAP_ID: full authentication, first step */
    GW_REQ_EAP_RESPONSE, /* {"eap-relay-packet": ...} with the exchange cookie */
    GW_REQ_TOKEN,        /* token (+ IMSI) */
    GW_REQ_TEMP_TOKEN,   /* temporary_token (ODSA) */
};

enum gw_format { GW_FMT_JSON = 0, GW_FMT_XML = 1 };

/* Indices of the string parameters kept in gw_req.p[] (the rest are validated and dropped). */
enum gw_param {
    GW_P_TERMINAL_ID,
    GW_P_TERMINAL_VENDOR,
    GW_P_TERMINAL_MODEL,
    GW_P_TERMINAL_SW_VERSION,
    GW_P_VERS,
    GW_P_ENTITLEMENT_VERSION,
    GW_P_EAP_ID,
    GW_P_IMSI,
    GW_P_TOKEN,
    GW_P_TEMPORARY_TOKEN,
    GW_P_NOTIF_TOKEN,
    GW_P_NOTIF_ACTION,
    GW_P_APP_NAME,
    GW_P_APP_VERSION,
    GW_P_OPERATION,
    GW_P_OPERATION_TYPE,
    GW_P_OPERATION_TARGETS,
    GW_P_GID1,
    GW_P_REQUESTOR_ID,
    GW_P_COUNT_
};

struct gw_req {
    enum gw_req_kind kind;
    enum gw_format format;
    bool format_explicit; /* Accept named a document type (not only eap-relay) */
    char apps[GW_APPS_MAX][GW_APP_LEN + 1];
    bool app_known[GW_APPS_MAX];
    size_t n_apps;
    size_t n_known;
    /* Each value is NUL-terminated, "" when absent; they point into `arena`. */
    const char *p[GW_P_COUNT_];
    bool has[GW_P_COUNT_];
    int ver_major; /* entitlement_version as sent (2.0 when absent) */
    int ver_minor;
    uint8_t eap[GW_EAP_PACKET_MAX]; /* GW_REQ_EAP_RESPONSE: the decoded packet */
    size_t eap_len;
    char cookie[2048]; /* GW_REQ_EAP_RESPONSE: ECSID value as sent */
    char arena[8192];
    size_t arena_used;
};

/* Why a request was refused; `reason` is a static closed-set label (metrics, logs). */
struct gw_req_error {
    int status; /* 400, 405 */
    const char *reason;
    const char *field; /* the parameter at fault, or NULL */
};

#define GW_COOKIE_NAME "ECSID"

/* Parses and validates one request. Any thread; keeps no state. On ENT_OK *out is filled
 * (out may be reused: it is reset first). On ENT_EINVAL *err says status and reason:
 * 400 for every malformed input (bad or duplicate parameter, bad AppID, no known AppID,
 * overlong or non-UTF-8 value, NUL byte, bad base64, bad JSON, wrong content type, two
 * auth methods), 405 for a method other than GET/POST. */
ent_err gw_req_parse(struct gw_req *out, struct gw_req_error *err,
                     const struct ent_http_request *http);

/* True for the AppIDs PROTOCOL.md §3 lists (ap2003..ap2017 minus ap2007/ap2008). */
bool gw_app_known(const char *app);

/* Percent-decodes s[0..len) into out (cap bytes incl. NUL). '+' stays '+' (Android's
 * Uri.encode never sends a literal '+', and tokens may carry one). ENT_EINVAL for a bad
 * escape or a decoded NUL, ENT_ETOOBIG if it does not fit. */
ent_err gw_pct_decode(char *out, size_t cap, const char *s, size_t len, size_t *out_len);

/* Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF). */
bool gw_utf8_valid(const char *s, size_t len);

#endif
