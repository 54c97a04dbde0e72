/* SPDX-License-Identifier: Apache-2.0 */
/* TS.43 request parsing and validation (see request.h). The parameter table below is the
 * single list of what the gateway accepts: every known name with its length bound and
 * character set. Unknown names are ignored (a newer client may send more), but their values
 * must still be valid UTF-8 without control characters. A known name given twice is refused
 * (only `app` repeats in GET mode); JSON bodies are flat objects of strings (TS.43 v10+),
 * with `app` also allowed as an array of strings. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "request.h"

enum charset {
    CS_DIGITS,  /* 0-9 */
    CS_INT,     /* optional '-' then digits */
    CS_VERSION, /* N.N */
    CS_ID,      /* A-Z a-z 0-9 . _ : - */
    CS_NAI,     /* CS_ID plus '@' */
    CS_B64,     /* base64 / base64url alphabet with padding */
    CS_ALPHA,   /* A-Z a-z */
    CS_LIST,    /* CS_ID plus ',' */
    CS_HEX,     /* 0-9 A-F a-f */
    CS_TEXT,    /* printable UTF-8 (no control characters) */
};

struct param_def {
    const char *name;
    int idx; /* enum gw_param, or -1: validated, not kept */
    enum charset cs;
    size_t max;
};

/* PROTOCOL.md §2 plus the ODSA parameters. Lengths are generous bounds over what AOSP and
 * the spec produce (AOSP cuts vendor/model/sw to 4/10/20; IMEI 15, UUID 36). */
static const struct param_def params[] = {
    {"terminal_id", GW_P_TERMINAL_ID, CS_ID, 64},
    {"terminal_vendor", GW_P_TERMINAL_VENDOR, CS_TEXT, 64},
    {"terminal_model", GW_P_TERMINAL_MODEL, CS_TEXT, 64},
    {"terminal_sw_version", GW_P_TERMINAL_SW_VERSION, CS_TEXT, 64},
    {"vers", GW_P_VERS, CS_INT, 11},
    {"entitlement_version", GW_P_ENTITLEMENT_VERSION, CS_VERSION, 9},
    {"EAP_ID", GW_P_EAP_ID, CS_NAI, 253},
    {"IMSI", GW_P_IMSI, CS_DIGITS, 15},
    {"token", GW_P_TOKEN, CS_B64, 2048},
    {"temporary_token", GW_P_TEMPORARY_TOKEN, CS_B64, 2048},
    {"notif_token", GW_P_NOTIF_TOKEN, CS_TEXT, 4096},
    {"notif_action", GW_P_NOTIF_ACTION, CS_DIGITS, 1},
    {"app_name", GW_P_APP_NAME, CS_TEXT, 128},
    {"app_version", GW_P_APP_VERSION, CS_TEXT, 64},
    {"operation", GW_P_OPERATION, CS_ALPHA, 64},
    {"operation_type", GW_P_OPERATION_TYPE, CS_DIGITS, 2},
    {"operation_targets", GW_P_OPERATION_TARGETS, CS_LIST, 512},
    {"gid1", GW_P_GID1, CS_HEX, 32},
    {"GID1", GW_P_GID1, CS_HEX, 32},
    {"requestor_id", GW_P_REQUESTOR_ID, CS_TEXT, 128},
    {"boost_type", -1, CS_DIGITS, 4},
    {"operator_token", -1, CS_B64, 2048},
    {"access_token", -1, CS_B64, 4096},
    {"msisdn", -1, CS_TEXT, 32},
    {"companion_terminal_id", -1, CS_ID, 64},
    {"companion_terminal_vendor", -1, CS_TEXT, 64},
    {"companion_terminal_model", -1, CS_TEXT, 64},
    {"companion_terminal_sw_version", -1, CS_TEXT, 64},
    {"companion_terminal_friendly_name", -1, CS_TEXT, 128},
    {"companion_terminal_service", -1, CS_ALPHA, 32},
    {"companion_terminal_iccid", -1, CS_DIGITS, 22},
    {"companion_terminal_eid", -1, CS_DIGITS, 32},
    {"old_companion_terminal_id", -1, CS_ID, 64},
    {"old_companion_terminal_iccid", -1, CS_DIGITS, 22},
    {"terminal_iccid", -1, CS_DIGITS, 22},
    {"terminal_eid", -1, CS_DIGITS, 32},
    {"target_terminal_id", -1, CS_ID, 64},
    {"target_terminal_iccid", -1, CS_DIGITS, 22},
    {"target_terminal_eid", -1, CS_DIGITS, 32},
    {"old_terminal_id", -1, CS_ID, 64},
    {"old_terminal_iccid", -1, CS_DIGITS, 22},
    {"target_terminal_imeis", -1, CS_LIST, 256},
    {"target_terminal_sn", -1, CS_ID, 64},
    {"target_terminal_model", -1, CS_TEXT, 64},
    {"target_terminal_entitlement_protocol", -1, CS_DIGITS, 1},
    {"old_terminal_entitlement_protocol", -1, CS_DIGITS, 1},
    {"MSG_btn", -1, CS_DIGITS, 1},
    {"MSG_response", -1, CS_TEXT, 1024},
    {"MSG_character_display_limits", -1, CS_TEXT, 64},
    {"redownloadable_profile", -1, CS_DIGITS, 1},
    {"enterprise_id", -1, CS_TEXT, 128},
    {"enterprise_terminal_id", -1, CS_ID, 64},
    {"enterprise_terminal_eid", -1, CS_DIGITS, 32},
    {"plan_id", -1, CS_TEXT, 128},
    {"store_vendor", -1, CS_TEXT, 64},
    {"store_user_id", -1, CS_TEXT, 128},
};

#define UNKNOWN_MAX 1024 /* bound on values of names we do not know */

static const char *const known_apps[] = {"ap2003", "ap2004", "ap2005", "ap2006", "ap2009",
                                         "ap2010", "ap2011", "ap2012", "ap2013", "ap2014",
                                         "ap2015", "ap2016", "ap2017"};

bool gw_app_known(const char *app)
{
    for (size_t i = 0; i < ENT_ARRAY_LEN(known_apps); i++)
        if (strcmp(app, known_apps[i]) == 0)
            return true;
    return false;
}

bool gw_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

ent_err gw_pct_decode(char *out, size_t cap, const char *s, size_t len, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return ENT_EINVAL;
            int h = ent_hex_digit(s[i + 1]), l = ent_hex_digit(s[i + 2]);
            if (h < 0 || l < 0)
                return ENT_EINVAL;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (c == '\0')
            return ENT_EINVAL;
        if (o + 1 >= cap)
            return ENT_ETOOBIG;
        out[o++] = c;
    }
    out[o] = '\0';
    *out_len = o;
    return ENT_OK;
}

static bool id_char(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

static bool charset_ok(enum charset cs, const char *v, size_t len)
{
    if (!gw_utf8_valid(v, len))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    switch (cs) {
    case CS_DIGITS:
        if (len == 0)
            return false;
        for (size_t i = 0; i < len; i++)
            if (!isdigit((unsigned char)v[i]))
                return false;
        return true;
    case CS_INT: {
        size_t i = (len > 0 && v[0] == '-') ? 1 : 0;
        if (i == len)
            return false;
        for (; i < len; i++)
            if (!isdigit((unsigned char)v[i]))
                return false;
        return true;
    }
    case CS_VERSION: {
        const char *dot = memchr(v, '.', len);
        if (!dot || dot == v || dot == v + len - 1)
            return false;
        for (size_t i = 0; i < len; i++)
            if (v + i != dot && !isdigit((unsigned char)v[i]))
                return false;
        return (size_t)(dot - v) <= 3 && (size_t)(v + len - dot - 1) <= 3;
    }
    case CS_ID:
    case CS_NAI:
    case CS_LIST:
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)v[i];
            if (!(id_char(c) || (cs == CS_NAI && c == '@') || (cs == CS_LIST && c == ',')))
                return false;
        }
        return len > 0;
    case CS_B64:
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)v[i];
            if (!(isalnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'))
                return false;
        }
        return len > 0;
    case CS_ALPHA:
        for (size_t i = 0; i < len; i++)
            if (!isalpha((unsigned char)v[i]))
                return false;
        return len > 0;
    case CS_HEX:
        for (size_t i = 0; i < len; i++)
            if (!isxdigit((unsigned char)v[i]))
                return false;
        return true;
    case CS_TEXT:
        return true;
    }
    return false;
}

static void fail(struct gw_req_error *err, int status, const char *reason, const char *field)
{
    err->status = status;
    err->reason = reason;
    err->field = field;
}

static const struct param_def *param_find(const char *name)
{
    /* First-character filter: most names are looked up on every request. */
    for (size_t i = 0; i < ENT_ARRAY_LEN(params); i++)
        if (params[i].name[0] == name[0] && strcmp(params[i].name, name) == 0)
            return &params[i];
    return NULL;
}

static const char *arena_dup(struct gw_req *r, const char *v, size_t len)
{
    if (r->arena_used + len + 1 > sizeof(r->arena))
        return NULL;
    char *d = r->arena + r->arena_used;
    memcpy(d, v, len);
    d[len] = '\0';
    r->arena_used += len + 1;
    return d;
}

/* One AppID of any list form; duplicates are merged. */
static ent_err app_add(struct gw_req *r, struct gw_req_error *err, const char *a, size_t len)
{
    while (len > 0 && (*a == ' ' || *a == '"')) {
        a++;
        len--;
    }
    while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '"'))
        len--;
    if (len != GW_APP_LEN || a[0] != 'a' || a[1] != 'p') {
        fail(err, 400, "bad_app", "app");
        return ENT_EINVAL;
    }
    for (size_t i = 2; i < len; i++)
        if (!isdigit((unsigned char)a[i])) {
            fail(err, 400, "bad_app", "app");
            return ENT_EINVAL;
        }
    for (size_t i = 0; i < r->n_apps; i++)
        if (memcmp(r->apps[i], a, len) == 0)
            return ENT_OK;
    if (r->n_apps >= GW_APPS_MAX) {
        fail(err, 400, "too_many_apps", "app");
        return ENT_EINVAL;
    }
    memcpy(r->apps[r->n_apps], a, len);
    r->apps[r->n_apps][len] = '\0';
    r->app_known[r->n_apps] = gw_app_known(r->apps[r->n_apps]);
    if (r->app_known[r->n_apps])
        r->n_known++;
    r->n_apps++;
    return ENT_OK;
}

/* `app` as a string: "ap2004", "ap2003,ap2004" or AOSP's "[ap2003,ap2004]". */
static ent_err app_list_add(struct gw_req *r, struct gw_req_error *err, const char *v, size_t len)
{
    if (len >= 2 && v[0] == '[' && v[len - 1] == ']') {
        v++;
        len -= 2;
    }
    if (len == 0) {
        fail(err, 400, "bad_app", "app");
        return ENT_EINVAL;
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || v[i] == ',') {
            ent_err rc = app_add(r, err, v + start, i - start);
            if (rc != ENT_OK)
                return rc;
            start = i + 1;
        }
    }
    return ENT_OK;
}

/* One name=value pair (already decoded). */
static ent_err param_set(struct gw_req *r, struct gw_req_error *err, const char *name,
                         const char *v, size_t len)
{
    if (!gw_utf8_valid(name, strlen(name))) {
        fail(err, 400, "bad_encoding", NULL);
        return ENT_EINVAL;
    }
    if (strcmp(name, "app") == 0) {
        if (!charset_ok(CS_TEXT, v, len) || len > 256) {
            fail(err, 400, "bad_app", "app");
            return ENT_EINVAL;
        }
        return app_list_add(r, err, v, len);
    }
    const struct param_def *d = param_find(name);
    if (d == NULL) {
        if (len > UNKNOWN_MAX || !charset_ok(CS_TEXT, v, len)) {
            fail(err, 400, "bad_value", NULL);
            return ENT_EINVAL;
        }
        return ENT_OK;
    }
    if (len > d->max) {
        fail(err, 400, "too_long", d->name);
        return ENT_EINVAL;
    }
    if (!charset_ok(d->cs, v, len)) {
        fail(err, 400, "bad_value", d->name);
        return ENT_EINVAL;
    }
    if (d->idx < 0)
        return ENT_OK;
    if (r->has[d->idx]) {
        fail(err, 400, "duplicate", d->name);
        return ENT_EINVAL;
    }
    const char *copy = arena_dup(r, v, len);
    if (copy == NULL) {
        fail(err, 400, "too_long", d->name);
        return ENT_EINVAL;
    }
    r->p[d->idx] = copy;
    r->has[d->idx] = true;
    return ENT_OK;
}

static ent_err parse_query(struct gw_req *r, struct gw_req_error *err, const char *q, size_t len)
{
    char name[64], value[4200];
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(q + i, '=', end - i);
            size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
            size_t vlen_raw = eq ? (size_t)(q + end - eq - 1) : 0;
            size_t n_out, v_out;
            ent_err rc = gw_pct_decode(name, sizeof(name), q + i, nlen, &n_out);
            if (rc == ENT_ETOOBIG) {
                fail(err, 400, "bad_name", NULL);
                return ENT_EINVAL;
            }
            if (rc == ENT_OK)
                rc = eq ? gw_pct_decode(value, sizeof(value), eq + 1, vlen_raw, &v_out)
                        : (value[0] = '\0', v_out = 0, ENT_OK);
            if (rc == ENT_ETOOBIG) {
                fail(err, 400, "too_long", NULL);
                return ENT_EINVAL;
            }
            if (rc != ENT_OK) {
                fail(err, 400, "bad_encoding", NULL);
                return ENT_EINVAL;
            }
            if (n_out == 0) {
                fail(err, 400, "bad_name", NULL);
                return ENT_EINVAL;
            }
            rc = param_set(r, err, name, value, v_out);
            if (rc != ENT_OK)
                return rc;
        }
        i = end + 1;
    }
    return ENT_OK;
}

static bool media_is(const char *ct, size_t len, const char *type)
{
    size_t tl = strlen(type);
    while (len > 0 && *ct == ' ') {
        ct++;
        len--;
    }
    if (len < tl || strncasecmp(ct, type, tl) != 0)
        return false;
    return len == tl || ct[tl] == ';' || ct[tl] == ' ';
}

static ent_err parse_eap_relay(struct gw_req *r, struct gw_req_error *err, json_t *root,
                               const struct ent_http_request *http)
{
    json_t *pkt = json_object_get(root, "eap-relay-packet");
    if (json_object_size(root) != 1) {
        fail(err, 400, "eap_with_params", NULL);
        return ENT_EINVAL;
    }
    if (!json_is_string(pkt)) {
        fail(err, 400, "bad_value", "eap-relay-packet");
        return ENT_EINVAL;
    }
    const char *b64 = json_string_value(pkt);
    size_t blen = json_string_length(pkt);
    if (blen == 0 || ent_base64_decode(b64, blen, r->eap, sizeof(r->eap), &r->eap_len) != ENT_OK ||
        r->eap_len < 4) {
        fail(err, 400, "bad_base64", "eap-relay-packet");
        return ENT_EINVAL;
    }
    /* The cookie: every Cookie header, every "name=value" pair; older AOSP replays the whole
     * Set-Cookie value, so attributes (Path, Secure, HttpOnly) are skipped by name. */
    bool found = false;
    for (size_t h = 0; h < http->n_headers; h++) {
        const struct ent_http_header *hd = &http->headers[h];
        if (hd->name_len != 6 || strncasecmp(hd->name, "Cookie", 6) != 0)
            continue;
        const char *s = hd->value, *e = hd->value + hd->value_len;
        while (s < e) {
            while (s < e && (*s == ' ' || *s == ';'))
                s++;
            const char *t = s;
            while (t < e && *t != ';')
                t++;
            size_t nl = strlen(GW_COOKIE_NAME);
            if ((size_t)(t - s) > nl && strncmp(s, GW_COOKIE_NAME, nl) == 0 && s[nl] == '=') {
                size_t vl = (size_t)(t - s) - nl - 1;
                const char *v = s + nl + 1;
                if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                    v++;
                    vl -= 2;
                }
                if (found || vl == 0 || vl >= sizeof(r->cookie) || !charset_ok(CS_B64, v, vl)) {
                    fail(err, 400, found ? "duplicate" : "bad_cookie", "cookie");
                    return ENT_EINVAL;
                }
                memcpy(r->cookie, v, vl);
                r->cookie[vl] = '\0';
                found = true;
            }
            s = t;
        }
    }
    r->kind = GW_REQ_EAP_RESPONSE;
    return ENT_OK;
}

static ent_err parse_json(struct gw_req *r, struct gw_req_error *err,
                          const struct ent_http_request *http)
{
    size_t ct_len = 0;
    const char *ct = ent_http_request_header(http, "Content-Type", &ct_len);
    if (ct == NULL || !(media_is(ct, ct_len, "application/json") ||
                        media_is(ct, ct_len, "application/vnd.gsma.eap-relay.v1.0+json"))) {
        fail(err, 400, "content_type", NULL);
        return ENT_EINVAL;
    }
    if (http->body_len == 0) {
        fail(err, 400, "empty_body", NULL);
        return ENT_EINVAL;
    }
    if (memchr(http->body, '\0', http->body_len) != NULL) {
        fail(err, 400, "bad_encoding", NULL);
        return ENT_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(http->body, http->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fail(err, 400, "bad_json", NULL);
        return ENT_EINVAL;
    }
    ent_err rc = ENT_OK;
    if (!json_is_object(root)) {
        fail(err, 400, "bad_json", NULL);
        rc = ENT_EINVAL;
        goto out;
    }
    if (json_object_get(root, "eap-relay-packet") != NULL) {
        rc = parse_eap_relay(r, err, root, http);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "app") == 0 && json_is_array(val)) {
            size_t i;
            json_t *it;
            if (json_array_size(val) == 0) {
                fail(err, 400, "bad_app", "app");
                rc = ENT_EINVAL;
                goto out;
            }
            json_array_foreach(val, i, it)
            {
                if (!json_is_string(it)) {
                    fail(err, 400, "bad_app", "app");
                    rc = ENT_EINVAL;
                    goto out;
                }
                rc = app_add(r, err, json_string_value(it), json_string_length(it));
                if (rc != ENT_OK)
                    goto out;
            }
            continue;
        }
        if (!json_is_string(val)) {
            fail(err, 400, "not_a_string", param_find(key) ? param_find(key)->name : NULL);
            rc = ENT_EINVAL;
            goto out;
        }
        if (strlen(key) >= 64) {
            fail(err, 400, "bad_name", NULL);
            rc = ENT_EINVAL;
            goto out;
        }
        rc = param_set(r, err, key, json_string_value(val), json_string_length(val));
        if (rc != ENT_OK)
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* PROTOCOL.md §1: XML whenever Accept mentions xml; JSON otherwise. format_explicit says
 * whether Accept named a document type at all (an EAP POST with only the eap-relay type
 * keeps the first request's format). */
static void choose_format(struct gw_req *r, const struct ent_http_request *http)
{
    size_t n = 0;
    const char *a = ent_http_request_header(http, "Accept", &n);
    r->format = GW_FMT_JSON;
    r->format_explicit = false;
    if (a == NULL)
        return;
    for (size_t i = 0; i + 3 <= n; i++)
        if (strncasecmp(a + i, "xml", 3) == 0) {
            r->format = GW_FMT_XML;
            r->format_explicit = true;
            return;
        }
    /* a JSON document type other than the relay one */
    for (size_t i = 0; i + 16 <= n; i++)
        if (strncasecmp(a + i, "application/json", 16) == 0) {
            r->format_explicit = true;
            return;
        }
}

ent_err gw_req_parse(struct gw_req *out, struct gw_req_error *err,
                     const struct ent_http_request *http)
{
    struct gw_req *r = out;
    ent_err rc;
    memset(r->has, 0, sizeof(r->has));
    for (int i = 0; i < GW_P_COUNT_; i++)
        r->p[i] = "";
    r->n_apps = r->n_known = 0;
    r->arena_used = 0;
    r->eap_len = 0;
    r->cookie[0] = '\0';
    r->kind = GW_REQ_NOAUTH;
    fail(err, 0, NULL, NULL);

    choose_format(r, http);
    if (strcmp(http->method, "GET") == 0) {
        if (http->body_len > 0) {
            fail(err, 400, "body_on_get", NULL);
            return ENT_EINVAL;
        }
        rc = parse_query(r, err, http->query ? http->query : "", http->query ? http->query_len : 0);
    } else if (strcmp(http->method, "POST") == 0) {
        rc = parse_json(r, err, http);
        if (rc == ENT_OK && r->kind == GW_REQ_EAP_RESPONSE)
            return ENT_OK;
    } else {
        fail(err, 405, "method", NULL);
        return ENT_EINVAL;
    }
    if (rc != ENT_OK)
        return rc;

    if (r->n_apps == 0) {
        fail(err, 400, "missing_app", "app");
        return ENT_EINVAL;
    }
    if (r->n_known == 0) {
        fail(err, 400, "no_known_app", "app");
        return ENT_EINVAL;
    }
    /* Any N.N is accepted (AOSP's default is 2.0): never 406. */
    r->ver_major = 2;
    r->ver_minor = 0;
    if (r->has[GW_P_ENTITLEMENT_VERSION]) {
        /* CS_VERSION checked the shape: 1-3 digits '.' 1-3 digits */
        const char *v = r->p[GW_P_ENTITLEMENT_VERSION];
        r->ver_major = 0;
        for (; *v != '.'; v++)
            r->ver_major = r->ver_major * 10 + (*v - '0');
        r->ver_minor = 0;
        for (v++; *v; v++)
            r->ver_minor = r->ver_minor * 10 + (*v - '0');
    }
    int methods = r->has[GW_P_EAP_ID] + r->has[GW_P_TOKEN] + r->has[GW_P_TEMPORARY_TOKEN];
    if (methods > 1) {
        fail(err, 400, "two_auth_methods", NULL);
        return ENT_EINVAL;
    }
    if (r->has[GW_P_EAP_ID]) {
        const char *id = r->p[GW_P_EAP_ID];
        const char *at = strchr(id, '@');
        if (at == NULL || at == id || at[1] == '\0' || strchr(at + 1, '@') != NULL) {
            fail(err, 400, "bad_value", "EAP_ID");
            return ENT_EINVAL;
        }
        r->kind = GW_REQ_EAP_START;
    } else if (r->has[GW_P_TOKEN]) {
        r->kind = GW_REQ_TOKEN;
    } else if (r->has[GW_P_TEMPORARY_TOKEN]) {
        r->kind = GW_REQ_TEMP_TOKEN;
    }
    if (r->has[GW_P_IMSI] && strlen(r->p[GW_P_IMSI]) < 6) {
        fail(err, 400, "bad_value", "IMSI");
        return ENT_EINVAL;
    }
    if (r->has[GW_P_NOTIF_ACTION] && r->p[GW_P_NOTIF_ACTION][0] > '4') {
        fail(err, 400, "bad_value", "notif_action");
        return ENT_EINVAL;
    }
    if (r->has[GW_P_NOTIF_TOKEN]) {
        for (const char *c = r->p[GW_P_NOTIF_TOKEN]; *c; c++)
            if (*c == ' ' || (unsigned char)*c >= 0x80) {
                fail(err, 400, "bad_value", "notif_token");
                return ENT_EINVAL;
            }
    }
    if (r->kind != GW_REQ_NOAUTH && !r->has[GW_P_TERMINAL_ID] && !r->has[GW_P_REQUESTOR_ID]) {
        fail(err, 400, "missing_terminal_id", "terminal_id");
        return ENT_EINVAL;
    }
    return ENT_OK;
}
