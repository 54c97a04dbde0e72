/* SPDX-License-Identifier: Apache-2.0 */
/* The provisioning API's routes and handlers (see admin.h for the error contract and
 * docs/admin-api.yaml for the shapes). Subscriber changes follow one sequence: read the
 * current document, check If-Match, validate, take the "before" decisions, write with a
 * compare-and-set on the version, publish the change event, push devices whose answer
 * changed, answer. Plans, roaming rules, rollouts and device rules share one generic
 * handler set (struct kind) and bump the policy generation instead of subscriber versions
 * (events.h).
 * Subscriber creation writes credentials to authd first and the subscriber only after authd
 * acknowledged them, so a failure leaves nothing behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "admin.h"
#include "ent/metrics.h"
#include "rpc.h"

static ent_counter api_requests =
    ENT_COUNTER("entitle_policyd_api_requests_total", "Admin API requests by route and status",
                "route", "method", "status");
static ent_histogram api_seconds =
    ENT_HISTOGRAM("entitle_policyd_api_request_duration_seconds", "Admin API latency by route",
                  ENT_BUCKETS(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30), "route");

/* ---- answers ------------------------------------------------------------------------- */

void pd_admin_count(const char *route, const char *method, int status)
{
    char st[8];
    snprintf(st, sizeof(st), "%d", status);
    ent_counter_inc(&api_requests, route, method, st);
}

static void respond_raw(struct policyd *p, uint64_t id, const char *route, const char *method,
                        int status, const char *ctype, const char *body, size_t len,
                        uint64_t etag_version, const char *extra_name, const char *extra_value)
{
    char etag[32];
    struct ent_http_header h[3];
    size_t n = 0;
    h[n++] = (struct ent_http_header){"Content-Type", 12, ctype, strlen(ctype)};
    if (etag_version) {
        snprintf(etag, sizeof(etag), "\"%llu\"", (unsigned long long)etag_version);
        h[n++] = (struct ent_http_header){"ETag", 4, etag, strlen(etag)};
    }
    if (extra_name)
        h[n++] = (struct ent_http_header){extra_name, strlen(extra_name), extra_value,
                                          strlen(extra_value)};
    pd_admin_count(route, method, status);
    ent_http_respond(&p->admin, id, status, h, n, body, len);
}

void pd_admin_respond_json(struct policyd *p, uint64_t id, const char *route, const char *method,
                           int status, json_t *body, uint64_t etag_version)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (status == 204) {
        free(text);
        respond_raw(p, id, route, method, 204, "application/json", "", 0, etag_version, NULL, NULL);
        return;
    }
    if (!text) {
        respond_raw(p, id, route, method, 500, "application/json",
                    "{\"error\":\"internal\",\"message\":\"out of memory\"}", 47, 0, NULL, NULL);
        return;
    }
    respond_raw(p, id, route, method, status, "application/json", text, strlen(text), etag_version,
                NULL, NULL);
    free(text);
}

static void respond_error_hdr(struct policyd *p, uint64_t id, const char *route, const char *method,
                              int status, const char *error, const char *field, const char *message,
                              const char *hname, const char *hvalue)
{
    json_t *j = json_pack("{s:s,s:s}", "error", error, "message", message ? message : "");
    if (j && field && field[0])
        json_object_set_new(j, "field", json_string(field));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    respond_raw(p, id, route, method, status, "application/json", text ? text : "{}",
                text ? strlen(text) : 2, 0, hname, hvalue);
    free(text);
}

void pd_admin_respond_error(struct policyd *p, uint64_t id, const char *route, const char *method,
                            int status, const char *error, const char *field, const char *message)
{
    respond_error_hdr(p, id, route, method, status, error, field, message, NULL, NULL);
}

static void respond_verr(struct policyd *p, uint64_t id, const char *route, const char *method,
                         const struct pd_verr *e)
{
    pd_admin_respond_error(p, id, route, method, e->status, "validation", e->field, e->reason);
}

/* An ent_err from the store or a peer -> the API's answer. */
static void respond_err(struct policyd *p, uint64_t id, const char *route, const char *method,
                        ent_err rc, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s: %s", what, ent_strerror(rc));
    switch (rc) {
    case ENT_ENOTFOUND:
        pd_admin_respond_error(p, id, route, method, 404, "not_found", NULL, msg);
        return;
    case ENT_EEXIST:
        pd_admin_respond_error(p, id, route, method, 409, "exists", NULL, msg);
        return;
    case ENT_ECONFLICT:
        pd_admin_respond_error(p, id, route, method, 412, "precondition_failed", NULL,
                               "the resource changed; GET it again and retry with its ETag");
        return;
    case ENT_EUNAVAIL:
        respond_error_hdr(p, id, route, method, 503, "unavailable", NULL, msg, "Retry-After", "1");
        return;
    default:
        ENT_LOG_ERROR(NULL, "policyd.admin_error", ENT_KV_STR("route", route),
                      ENT_KV_STR("reason", ent_err_name(rc)));
        pd_admin_respond_error(p, id, route, method, 500, "internal", NULL, msg);
        return;
    }
}

/* An authd failure -> 502 (authd answered an error) or 503/504 (could not reach it). */
static void respond_authd(struct policyd *p, uint64_t id, const char *route, const char *method,
                          ent_err rc, bool answered)
{
    char msg[160];
    if (answered) {
        snprintf(msg, sizeof(msg), "authd answered %s (%s); nothing was changed", ent_err_name(rc),
                 ent_strerror(rc));
        pd_admin_respond_error(p, id, route, method, 502, "authd_error", NULL, msg);
        return;
    }
    snprintf(msg, sizeof(msg), "authd unreachable (%s); nothing was changed", ent_err_name(rc));
    respond_error_hdr(p, id, route, method, rc == ENT_ETIMEDOUT ? 504 : 503, "authd_unavailable",
                      NULL, msg, "Retry-After", "1");
}

/* ---- tokens and scopes --------------------------------------------------------------- */

void pd_admin_tokens_free(struct policyd *p)
{
    for (size_t i = 0; i < p->n_tokens; i++) {
        OPENSSL_cleanse(p->tokens[i].token, strlen(p->tokens[i].token));
        free(p->tokens[i].token);
    }
    free(p->tokens);
    p->tokens = NULL;
    p->n_tokens = 0;
}

ent_err pd_admin_tokens_load(struct policyd *p, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    ent_err rc = ent_file_read(path, 1024 * 1024, &text, &len);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.tokens_file_unreadable", ENT_KV_STR("path", path),
                      ENT_KV_STR("reason", ent_strerror(rc)));
        return ENT_ECONFIG;
    }
    struct pd_token *toks = NULL;
    size_t n = 0;
    rc = ENT_OK;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s2 = NULL;
        char *tok = strtok_r(line, " \t\r", &s2);
        if (!tok)
            continue;
        char *scopes = strtok_r(NULL, " \t\r", &s2);
        unsigned sc = 0;
        if (!scopes) {
            sc = PD_SCOPE_READ | PD_SCOPE_WRITE;
        } else {
            char *s3 = NULL;
            for (char *w = strtok_r(scopes, ",", &s3); w; w = strtok_r(NULL, ",", &s3)) {
                if (strcmp(w, "read") == 0)
                    sc |= PD_SCOPE_READ;
                else if (strcmp(w, "write") == 0)
                    sc |= PD_SCOPE_WRITE | PD_SCOPE_READ;
                else
                    rc = ENT_ECONFIG;
            }
        }
        if (strlen(tok) < 16)
            rc = ENT_ECONFIG;
        if (rc != ENT_OK)
            break;
        struct pd_token *nt = realloc(toks, (n + 1) * sizeof(*toks));
        if (!nt) {
            rc = ENT_ENOMEM;
            break;
        }
        toks = nt;
        toks[n].token = strdup(tok);
        toks[n].scopes = sc;
        if (!toks[n].token) {
            rc = ENT_ENOMEM;
            break;
        }
        n++;
    }
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc == ENT_OK && n == 0)
        rc = ENT_ECONFIG;
    struct policyd tmp = {.tokens = toks, .n_tokens = n};
    if (rc != ENT_OK) {
        pd_admin_tokens_free(&tmp);
        ENT_LOG_ERROR(
            NULL, "policyd.tokens_file_invalid", ENT_KV_STR("path", path),
            ENT_KV_STR("reason", "want lines of '<token of 16+ chars> [read|write|read,write]'"));
        return rc == ENT_ENOMEM ? rc : ENT_ECONFIG;
    }
    pd_admin_tokens_free(p);
    p->tokens = toks;
    p->n_tokens = n;
    return ENT_OK;
}

/* Scopes of the request's bearer token; 0 when absent or unknown. Compares every token in
 * constant time so the answer time does not tell how much of a guess was right. */
static unsigned request_scopes(struct policyd *p, const struct ent_http_request *r)
{
    size_t len = 0;
    const char *h = ent_http_request_header(r, "authorization", &len);
    if (!h || len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    const char *tok = h + 7;
    size_t tlen = len - 7;
    unsigned found = 0;
    for (size_t i = 0; i < p->n_tokens; i++) {
        size_t l = strlen(p->tokens[i].token);
        if (l == tlen && ent_ct_equal(p->tokens[i].token, tok, l))
            found = p->tokens[i].scopes;
    }
    return found;
}

/* ---- request helpers ----------------------------------------------------------------- */

struct call {
    struct policyd *p;
    uint64_t id;
    const char *method;
    char route[48];
    const struct ent_http_request *r;
    char seg[6][80]; /* path segments after /v1 */
    size_t n_seg;
};

/* Finds the idx-th value of query parameter `name` (URL-decoded into out). */
static bool query_get(const struct ent_http_request *r, const char *name, size_t idx, char *out,
                      size_t cap)
{
    if (!r->query)
        return false;
    size_t nlen = strlen(name), seen = 0;
    const char *q = r->query, *end = r->query + r->query_len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            if (seen++ == idx) {
                size_t o = 0;
                for (const char *c = q + nlen + 1; c < stop && o + 1 < cap; c++) {
                    int h = *c == '%' && c + 2 < stop ? ent_hex_digit(c[1]) : -1;
                    int l = h >= 0 ? ent_hex_digit(c[2]) : -1;
                    if (l >= 0) {
                        out[o++] = (char)(h * 16 + l);
                        c += 2;
                    } else {
                        out[o++] = *c == '+' ? ' ' : *c;
                    }
                }
                out[o] = '\0';
                return true;
            }
        }
        q = stop + 1;
    }
    return false;
}

/* If-Match: absent -> 0 (no precondition); "*" -> 0; "\"12\"" or 12 -> 12; bad -> -1. */
static int64_t if_match(const struct ent_http_request *r)
{
    size_t len = 0;
    const char *h = ent_http_request_header(r, "if-match", &len);
    if (!h)
        return 0;
    char buf[32];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, h, len);
    buf[len] = '\0';
    char *s = buf;
    if (strcmp(s, "*") == 0)
        return 0;
    if (strncmp(s, "W/", 2) == 0)
        s += 2;
    size_t l = strlen(s);
    if (l >= 2 && s[0] == '"' && s[l - 1] == '"') {
        s[l - 1] = '\0';
        s++;
    }
    int64_t v = 0;
    if (ent_parse_i64(s, 1, INT64_MAX, &v) != ENT_OK)
        return -1;
    return v;
}

/* Parses the body as a JSON object; answers 400 and returns NULL otherwise. */
static json_t *body_json(struct call *c)
{
    json_error_t je;
    if (c->r->body_len == 0) {
        pd_admin_respond_error(c->p, c->id, c->route, c->method, 400, "validation", "body",
                               "a JSON object is required");
        return NULL;
    }
    json_t *j = json_loadb(c->r->body, c->r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "not a JSON object: %s", j ? "wrong type" : je.text);
        json_decref(j);
        pd_admin_respond_error(c->p, c->id, c->route, c->method, 400, "validation", "body", msg);
        return NULL;
    }
    return j;
}

/* Precondition check against the current version; answers 412/400 and returns false. */
static bool precondition(struct call *c, uint64_t current)
{
    int64_t want = if_match(c->r);
    if (want < 0) {
        pd_admin_respond_error(c->p, c->id, c->route, c->method, 400, "validation", "If-Match",
                               "must be an ETag such as \"3\"");
        return false;
    }
    if (want && (uint64_t)want != current) {
        respond_err(c->p, c->id, c->route, c->method, ENT_ECONFLICT, "");
        return false;
    }
    return true;
}

/* ---- credentials --------------------------------------------------------------------- */

static bool take_hex(json_t *obj, const char *key, uint8_t *out, size_t n, bool *present,
                     struct pd_verr *e)
{
    json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    if (!v)
        return true;
    bool ok = true;
    if (!json_is_string(v)) {
        e->status = 400;
        snprintf(e->reason, sizeof(e->reason), "must be a hex string");
        ok = false;
    } else {
        const char *s = json_string_value(v);
        if (strlen(s) != 2 * n || ent_hex_decode(s, out, n) != ENT_OK) {
            e->status = 422;
            snprintf(e->reason, sizeof(e->reason), "must be %zu hex digits", 2 * n);
            ok = false;
        }
        OPENSSL_cleanse((char *)s, strlen(s));
    }
    if (!ok)
        snprintf(e->field, sizeof(e->field), "%s", key);
    json_object_del(obj, key);
    return ok;
}

bool pd_admin_take_credentials(json_t *obj, struct pd_credentials *c, bool *has,
                               struct pd_verr *err)
{
    bool k = false, opc = false, op = false, sqn = false, amf = false;
    memset(c, 0, sizeof(*c));
    c->amf[0] = 0x80; /* the usual AMF for EPS: separation bit set */
    /* Take (and wipe) all five even when one is bad, so none survives in the body. */
    bool ok = take_hex(obj, "k", c->k, 16, &k, err);
    ok = take_hex(obj, "opc", c->opc, 16, &opc, ok ? err : &(struct pd_verr){0}) && ok;
    ok = take_hex(obj, "op", c->op, 16, &op, ok ? err : &(struct pd_verr){0}) && ok;
    ok = take_hex(obj, "sqn", c->sqn, 6, &sqn, ok ? err : &(struct pd_verr){0}) && ok;
    ok = take_hex(obj, "amf", c->amf, 2, &amf, ok ? err : &(struct pd_verr){0}) && ok;
    if (!ok)
        return false;
    *has = k;
    if (!k && (opc || op || sqn || amf)) {
        *err = (struct pd_verr){.status = 422};
        snprintf(err->field, sizeof(err->field), "k");
        snprintf(err->reason, sizeof(err->reason), "required with opc/op/sqn/amf");
        return false;
    }
    if (k && opc == op) {
        *err = (struct pd_verr){.status = 422};
        snprintf(err->field, sizeof(err->field), "opc");
        snprintf(err->reason, sizeof(err->reason), "give exactly one of opc and op");
        return false;
    }
    c->has_opc = opc;
    return true;
}

/* ---- subscribers --------------------------------------------------------------------- */

struct pd_pending {
    struct pd_pending *next;
    struct policyd *p;
    uint64_t id;
    const char *method;
    char route[48];
    struct pd_subscriber sub;
};

static struct pd_pending *pending_new(struct call *c)
{
    struct pd_pending *pe = calloc(1, sizeof(*pe));
    if (!pe)
        return NULL;
    pe->p = c->p;
    pe->id = c->id;
    pe->method = c->method;
    snprintf(pe->route, sizeof(pe->route), "%s", c->route);
    pe->next = c->p->pending;
    c->p->pending = pe;
    return pe;
}

static void pending_free(struct pd_pending *pe)
{
    struct pd_pending **pp = &pe->p->pending;
    while (*pp && *pp != pe)
        pp = &(*pp)->next;
    if (*pp)
        *pp = pe->next;
    free(pe);
}

/* A change was committed but the push intents it implies could not all be written: the
 * change is in effect (gateways were told), yet it must not be acknowledged as done, since
 * an acknowledged change promises its push (relay.h). */
static void respond_push_failed(struct policyd *p, uint64_t id, const char *route,
                                const char *method, ent_err rc)
{
    char msg[200];
    snprintf(msg, sizeof(msg),
             "the change is committed, but a device push it implies could not be queued (%s)",
             ent_err_name(rc));
    respond_error_hdr(p, id, route, method, 503, "push_not_queued", NULL, msg, "Retry-After", "1");
}

/* Publishes the subscriber's change and queues pushes for its devices if an answer
 * changed. ENT_OK, or why a push intent could not be written (see respond_push_failed). */
static ent_err subscriber_changed(struct policyd *p, const struct pd_subscriber *after,
                                  const struct pd_snapshot *before, int kind)
{
    pd_events_publish(p, kind, after->imsi, pd_effective_version(after, p->policy.generation),
                      after->token_generation);
    if (!before)
        return ENT_OK;
    struct pd_snapshot *now = malloc(sizeof(*now));
    if (!now)
        return ENT_ENOMEM;
    pd_snapshot_take(p, &p->policy, after, now);
    ent_err rc = pd_push_if_changed(p, after, before, now, NULL);
    free(now);
    return rc;
}

static void on_create_credentials(struct policyd *p, ent_err rc, bool answered,
                                  const Entitle__V1__Response *resp, void *ud)
{
    struct pd_pending *pe = ud;
    (void)resp;
    if (rc != ENT_OK) {
        respond_authd(p, pe->id, pe->route, pe->method, rc, answered);
        pending_free(pe);
        return;
    }
    rc = pd_subscriber_put(p->store, &pe->sub, 0);
    if (rc != ENT_OK) {
        /* authd holds credentials for a subscriber we could not create; for EEXIST a
         * concurrent create won and owns them, otherwise take them back. */
        if (rc != ENT_EEXIST)
            pd_authd_credential_delete(p, pe->sub.imsi, NULL, NULL);
        respond_err(p, pe->id, pe->route, pe->method, rc, "subscriber");
        pending_free(pe);
        return;
    }
    subscriber_changed(p, &pe->sub, NULL, ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER);
    pd_admin_respond_json(p, pe->id, pe->route, pe->method, 201, pd_subscriber_to_json(&pe->sub),
                          pe->sub.version);
    pending_free(pe);
}

static bool plan_exists(struct policyd *p, const char *id)
{
    if (!id[0] || strcmp(id, p->cfg->default_plan) == 0)
        return true;
    return pd_policy_plan(&p->policy, id) != NULL;
}

static void subscriber_create(struct call *c)
{
    struct policyd *p = c->p;
    json_t *j = body_json(c);
    if (!j)
        return;
    struct pd_credentials cred;
    struct pd_verr e = {0};
    bool has = false;
    bool ok = pd_admin_take_credentials(j, &cred, &has, &e);
    struct pd_subscriber sub;
    if (ok)
        ok = pd_subscriber_from_json(j, false, &sub, &e);
    json_decref(j);
    if (ok && !has && p->cfg->credentials_required) {
        e = (struct pd_verr){.status = 422};
        snprintf(e.field, sizeof(e.field), "k");
        snprintf(e.reason, sizeof(e.reason), "required (credentials.required is on)");
        ok = false;
    }
    if (ok && policyd_policy_refresh(p) == ENT_OK && !plan_exists(p, sub.plan)) {
        e = (struct pd_verr){.status = 422};
        snprintf(e.field, sizeof(e.field), "plan");
        snprintf(e.reason, sizeof(e.reason), "no such plan");
        ok = false;
    }
    if (!ok) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        respond_verr(p, c->id, c->route, c->method, &e);
        return;
    }
    struct pd_subscriber existing;
    ent_err rc = pd_subscriber_get(p->store, sub.imsi, &existing);
    if (rc != ENT_ENOTFOUND) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        respond_err(p, c->id, c->route, c->method, rc == ENT_OK ? ENT_EEXIST : rc, "subscriber");
        return;
    }
    sub.created_ms = sub.updated_ms = (int64_t)ent_wall_ms();
    if (!has) {
        rc = pd_subscriber_put(p->store, &sub, 0);
        if (rc != ENT_OK) {
            respond_err(p, c->id, c->route, c->method, rc, "subscriber");
            return;
        }
        subscriber_changed(p, &sub, NULL, ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER);
        pd_admin_respond_json(p, c->id, c->route, c->method, 201, pd_subscriber_to_json(&sub),
                              sub.version);
        return;
    }
    struct pd_pending *pe = pending_new(c);
    if (!pe) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        respond_err(p, c->id, c->route, c->method, ENT_ENOMEM, "subscriber");
        return;
    }
    pe->sub = sub;
    rc = pd_authd_credential_put(p, sub.imsi, &cred, on_create_credentials, pe);
    OPENSSL_cleanse(&cred, sizeof(cred));
    if (rc != ENT_OK) {
        respond_authd(p, c->id, c->route, c->method, rc, false);
        pending_free(pe);
    }
}

static void subscriber_list(struct call *c)
{
    struct policyd *p = c->p;
    char limit_s[16] = "", after[64] = "", val[80] = "";
    int64_t limit = 100;
    if (query_get(c->r, "limit", 0, limit_s, sizeof(limit_s)) &&
        ent_parse_i64(limit_s, 1, ENT_STORE_PAGE_MAX, &limit) != ENT_OK) {
        pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", "limit",
                               "must be 1-1000");
        return;
    }
    query_get(c->r, "after", 0, after, sizeof(after));
    static const char *const filters[] = {"msisdn", "plan", "region"};
    int slot = -1;
    for (int i = 0; i < 3; i++) {
        char v[80];
        if (query_get(c->r, filters[i], 0, v, sizeof(v))) {
            if (slot >= 0) {
                pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", filters[i],
                                       "one filter at a time");
                return;
            }
            slot = i;
            memcpy(val, v, sizeof(v));
        }
    }
    struct ent_store_page page = {0};
    ent_err rc = ent_store_query(p->store, ENT_COLL_SUBSCRIBERS, slot, slot >= 0 ? val : NULL,
                                 after[0] ? after : NULL, (size_t)limit, &page);
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, "list");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; items && i < page.n; i++) {
        struct pd_subscriber s;
        if (pd_subscriber_from_doc(&page.docs[i], &s) == ENT_OK)
            json_array_append_new(items, pd_subscriber_to_json(&s));
    }
    json_t *out = json_pack("{s:o}", "items", items);
    if (out && page.next_after)
        json_object_set_new(out, "next_after", json_string(page.next_after));
    ent_store_page_free(&page);
    pd_admin_respond_json(p, c->id, c->route, c->method, 200, out, 0);
}

/* Loads the subscriber named in the path; answers 404 etc. and returns false otherwise. */
static bool load_subscriber(struct call *c, struct pd_subscriber *s)
{
    if (!pd_valid_imsi(c->seg[1])) {
        pd_admin_respond_error(c->p, c->id, c->route, c->method, 404, "not_found", "imsi",
                               "no such subscriber (an IMSI is 6-15 digits)");
        return false;
    }
    ent_err rc = pd_subscriber_get(c->p->store, c->seg[1], s);
    if (rc != ENT_OK) {
        respond_err(c->p, c->id, c->route, c->method, rc, "subscriber");
        return false;
    }
    return true;
}

/* PATCH and PUT .../location: apply `patch` to the current subscriber under If-Match. */
static void subscriber_apply(struct call *c, json_t *patch)
{
    struct policyd *p = c->p;
    struct pd_subscriber cur;
    if (!load_subscriber(c, &cur))
        return;
    if (!precondition(c, cur.version))
        return;
    static const char *const creds[] = {"k", "opc", "op", "sqn", "amf"};
    for (size_t i = 0; i < ENT_ARRAY_LEN(creds); i++) {
        if (json_object_get(patch, creds[i])) {
            pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", creds[i],
                                   "credentials cannot be patched");
            return;
        }
    }
    struct pd_subscriber next = cur;
    struct pd_verr e = {0};
    if (!pd_subscriber_from_json(patch, true, &next, &e)) {
        respond_verr(p, c->id, c->route, c->method, &e);
        return;
    }
    ent_err rc = policyd_policy_refresh(p);
    if (rc == ENT_OK && !plan_exists(p, next.plan)) {
        pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", "plan",
                               "no such plan");
        return;
    }
    struct pd_snapshot *before = malloc(sizeof(*before));
    if (!before) {
        respond_err(p, c->id, c->route, c->method, ENT_ENOMEM, "subscriber");
        return;
    }
    pd_snapshot_take(p, &p->policy, &cur, before);
    next.updated_ms = (int64_t)ent_wall_ms();
    rc = pd_subscriber_put(p->store, &next, cur.version);
    if (rc != ENT_OK) {
        free(before);
        respond_err(p, c->id, c->route, c->method, rc, "subscriber");
        return;
    }
    rc = subscriber_changed(p, &next, before, ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER);
    free(before);
    if (rc != ENT_OK) {
        respond_push_failed(p, c->id, c->route, c->method, rc);
        return;
    }
    pd_admin_respond_json(p, c->id, c->route, c->method, 200, pd_subscriber_to_json(&next),
                          next.version);
}

static void subscriber_location(struct call *c)
{
    json_t *j = body_json(c);
    if (!j)
        return;
    json_t *v = json_object_get(j, "serving_plmn");
    const char *bad = NULL;
    int status = 422;
    if (!v)
        bad = "required: MCC+MNC digits, e.g. \"20801\"";
    else if (!json_is_string(v)) {
        bad = "must be a string";
        status = 400;
    } else if (json_object_size(j) != 1)
        bad = "the body holds serving_plmn only";
    else if (json_string_value(v)[0] && !pd_valid_plmn(json_string_value(v)))
        bad = "must be MCC+MNC, 5 or 6 digits";
    if (bad) {
        json_decref(j);
        pd_admin_respond_error(c->p, c->id, c->route, c->method, status, "validation",
                               "serving_plmn", bad);
        return;
    }
    /* The home PLMN means home: store it as "" so the answer does not depend on which home
     * PLMN the core happened to report. */
    struct pd_eval_ctx ctx;
    pd_eval_ctx_init(c->p, &c->p->policy, &ctx);
    if (pd_roaming_is_home(&ctx, c->seg[1], json_string_value(v)))
        json_object_set_new(j, "serving_plmn", json_string(""));
    subscriber_apply(c, j);
    json_decref(j);
}

struct delete_ctx {
    struct pd_pending pe; /* first: pending_free frees the whole struct */
};

static void subscriber_delete_commit(struct policyd *p, uint64_t id, const char *route,
                                     const char *method, const struct pd_subscriber *s)
{
    ent_err rc = ent_store_delete(p->store, ENT_COLL_SUBSCRIBERS, s->imsi, s->version);
    if (rc != ENT_OK) {
        respond_err(p, id, route, method, rc, "subscriber");
        return;
    }
    struct pd_device devs[16];
    size_t n = 0;
    if (pd_devices_of(p->store, s->imsi, devs, 16, &n) == ENT_OK) {
        for (size_t i = 0; i < n; i++) {
            char key[sizeof(devs[i].imsi) + sizeof(devs[i].terminal_id) + 2];
            int kl = snprintf(key, sizeof(key), "%s/%s", devs[i].imsi, devs[i].terminal_id);
            if (kl > 0 && (size_t)kl < sizeof(key))
                ent_store_delete(p->store, ENT_COLL_DEVICES, key, 0);
        }
    }
    /* One past the last version: gateways drop whatever they cached for it. */
    pd_events_publish(p, ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER, s->imsi,
                      pd_effective_version(s, p->policy.generation) + 1, s->token_generation);
    pd_admin_respond_json(p, id, route, method, 204, NULL, 0);
}

static void on_delete_credentials(struct policyd *p, ent_err rc, bool answered,
                                  const Entitle__V1__Response *resp, void *ud)
{
    struct pd_pending *pe = ud;
    (void)resp;
    if (rc != ENT_OK && rc != ENT_ENOTFOUND) {
        respond_authd(p, pe->id, pe->route, pe->method, rc, answered);
        pending_free(pe);
        return;
    }
    subscriber_delete_commit(p, pe->id, pe->route, pe->method, &pe->sub);
    pending_free(pe);
}

static void subscriber_delete(struct call *c)
{
    struct pd_subscriber cur;
    if (!load_subscriber(c, &cur) || !precondition(c, cur.version))
        return;
    if (!c->p->authd_on) {
        subscriber_delete_commit(c->p, c->id, c->route, c->method, &cur);
        return;
    }
    struct pd_pending *pe = pending_new(c);
    if (!pe) {
        respond_err(c->p, c->id, c->route, c->method, ENT_ENOMEM, "subscriber");
        return;
    }
    pe->sub = cur;
    ent_err rc = pd_authd_credential_delete(c->p, cur.imsi, on_delete_credentials, pe);
    if (rc != ENT_OK) {
        respond_authd(c->p, c->id, c->route, c->method, rc, false);
        pending_free(pe);
    }
}

static void on_tokens_revoked(struct policyd *p, ent_err rc, bool answered,
                              const Entitle__V1__Response *resp, void *ud)
{
    struct pd_pending *pe = ud;
    if (rc == ENT_OK &&
        (resp->body_case != ENTITLE__V1__RESPONSE__BODY_TOKEN_REVOKE || !resp->token_revoke)) {
        rc = ENT_EPROTO;
    }
    if (rc != ENT_OK) {
        respond_authd(p, pe->id, pe->route, pe->method, rc, answered);
        pending_free(pe);
        return;
    }
    uint64_t gen = resp->token_revoke->token_generation;
    /* Record the generation on the subscriber (a change like any other: version bump);
     * retry on a concurrent change, the generation only grows. */
    struct pd_subscriber s;
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = pd_subscriber_get(p->store, pe->sub.imsi, &s);
        if (rc != ENT_OK)
            break;
        if (gen > s.token_generation)
            s.token_generation = gen;
        s.updated_ms = (int64_t)ent_wall_ms();
        rc = pd_subscriber_put(p->store, &s, s.version);
        if (rc != ENT_ECONFLICT)
            break;
    }
    if (rc != ENT_OK) {
        respond_err(p, pe->id, pe->route, pe->method, rc, "subscriber");
        pending_free(pe);
        return;
    }
    pd_events_publish(p, ENTITLE__V1__CHANGE_KIND__CHANGE_TOKENS_REVOKED, s.imsi,
                      pd_effective_version(&s, p->policy.generation), gen);
    pd_admin_respond_json(
        p, pe->id, pe->route, pe->method, 200,
        json_pack("{s:s,s:I}", "imsi", s.imsi, "token_generation", (json_int_t)gen), s.version);
    pending_free(pe);
}

static void subscriber_tokens_revoke(struct call *c)
{
    struct pd_subscriber cur;
    if (!load_subscriber(c, &cur))
        return;
    struct pd_pending *pe = pending_new(c);
    if (!pe) {
        respond_err(c->p, c->id, c->route, c->method, ENT_ENOMEM, "subscriber");
        return;
    }
    pe->sub = cur;
    ent_err rc = pd_authd_token_revoke(c->p, cur.imsi, on_tokens_revoked, pe);
    if (rc != ENT_OK) {
        respond_authd(c->p, c->id, c->route, c->method, rc, false);
        pending_free(pe);
    }
}

static void subscriber_explain(struct call *c)
{
    struct policyd *p = c->p;
    struct pd_subscriber s;
    if (!load_subscriber(c, &s))
        return;
    char serving[16] = "";
    if (query_get(c->r, "serving_plmn", 0, serving, sizeof(serving)) && serving[0] &&
        !pd_valid_plmn(serving)) {
        pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", "serving_plmn",
                               "must be MCC+MNC, 5 or 6 digits");
        return;
    }
    /* The terminal to explain for (optional): device rules (step 6) match on it. */
    static const char *const tnames[] = {"terminal_vendor", "terminal_model",
                                         "terminal_sw_version"};
    char tval[3][PD_ID_MAX + 2];
    for (size_t t = 0; t < 3; t++) {
        tval[t][0] = '\0';
        query_get(c->r, tnames[t], 0, tval[t], sizeof(tval[t]));
        bool ok = strlen(tval[t]) <= PD_ID_MAX;
        for (const char *ch = tval[t]; ok && *ch; ch++)
            ok = (unsigned char)*ch >= 0x20 && (unsigned char)*ch != 0x7f;
        if (!ok) {
            pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", tnames[t],
                                   "at most 64 printable characters");
            return;
        }
    }
    const struct pd_terminal term = {tval[0], tval[1], tval[2]};
    ent_err rc = policyd_policy_refresh(p);
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, "policy");
        return;
    }
    json_t *services = json_array();
    char app[16];
    size_t i = 0;
    for (; query_get(c->r, "app", i, app, sizeof(app)); i++) {
        struct pd_decision dec[2];
        size_t n = 0;
        const struct pd_plan *plan = NULL;
        if (pd_evaluate_app(p, &s, app, serving, &term, dec, &n, &plan) != ENT_OK) {
            json_decref(services);
            pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", "app",
                                   "AppID not decided by policyd (ap2003, ap2004, ap2005, "
                                   "ap2006, ap2009)");
            return;
        }
        for (size_t k = 0; k < n; k++) {
            struct pd_params pp;
            pd_decision_params(p, app, &dec[k], plan, &pp);
            json_t *params = json_object();
            for (size_t x = 0; x < pp.n; x++)
                json_object_set_new(params, pp.name[x], json_string(pp.value[x]));
            json_t *trace = json_array();
            for (size_t x = 0; x < dec[k].n_trace; x++)
                json_array_append_new(trace, json_string(dec[k].trace[x]));
            json_array_append_new(
                services, json_pack("{s:s,s:s,s:i,s:s,s:s,s:o,s:o}", "app_id", app, "service",
                                    pd_service_name(dec[k].service), "entitlement_status",
                                    dec[k].entitlement_status, "step", pd_step_name(dec[k].step),
                                    "rule", dec[k].rule, "params", params, "explain", trace));
        }
    }
    if (i == 0) {
        json_decref(services);
        pd_admin_respond_error(p, c->id, c->route, c->method, 422, "validation", "app",
                               "at least one app=<AppID> is required");
        return;
    }
    json_t *body =
        json_pack("{s:s,s:I,s:s,s:o}", "imsi", s.imsi, "subscriber_version",
                  (json_int_t)pd_effective_version(&s, p->policy.generation), "serving_plmn",
                  serving[0] ? serving : s.serving_plmn, "services", services);
    if (body && (tval[0][0] || tval[1][0] || tval[2][0]))
        json_object_set_new(
            body, "terminal",
            json_pack("{s:s,s:s,s:s}", "vendor", tval[0], "model", tval[1], "sw_version", tval[2]));
    pd_admin_respond_json(p, c->id, c->route, c->method, 200, body, 0);
}

static void subscriber_devices(struct call *c)
{
    struct pd_subscriber s;
    if (!load_subscriber(c, &s))
        return;
    struct pd_device *devs = calloc(64, sizeof(*devs));
    size_t n = 0;
    ent_err rc = devs ? pd_devices_of(c->p->store, s.imsi, devs, 64, &n) : ENT_ENOMEM;
    if (rc != ENT_OK) {
        free(devs);
        respond_err(c->p, c->id, c->route, c->method, rc, "devices");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, pd_device_to_json(&devs[i]));
    free(devs);
    pd_admin_respond_json(c->p, c->id, c->route, c->method, 200, json_pack("{s:o}", "items", items),
                          0);
}

/* ---- plans, roaming rules, rollouts, device rules: one generic CRUD ------------------ */

struct kind {
    const char *name;
    enum ent_store_coll coll;
    size_t size;
    bool (*from_json)(const json_t *, bool, void *, struct pd_verr *);
    json_t *(*to_json)(const void *);
    ent_err (*get)(struct ent_store *, const char *, void *);
    ent_err (*put)(struct ent_store *, void *, uint64_t);
    ent_err (*decode)(const struct ent_store_doc *, void *);
    const char *(*key)(const void *);
    uint64_t (*version)(const void *);
    /* Extra checks against the other entities (unique match, plan in use); NULL: none. */
    bool (*check)(struct policyd *, const void *x, bool deleting, struct pd_verr *);
    /* Deletes by API key under compare-and-set; NULL: the key is the store key in coll. */
    ent_err (*del)(struct ent_store *, const char *key, uint64_t version);
};

#define KIND_FNS(T, pfx, idfield)                                                                  \
    static bool pfx##_fj(const json_t *j, bool part, void *o, struct pd_verr *e)                   \
    {                                                                                              \
        return pd_##pfx##_from_json(j, part, o, e);                                                \
    }                                                                                              \
    static json_t *pfx##_tj(const void *x)                                                         \
    {                                                                                              \
        return pd_##pfx##_to_json(x);                                                              \
    }                                                                                              \
    static ent_err pfx##_g(struct ent_store *s, const char *k, void *o)                            \
    {                                                                                              \
        return pd_##pfx##_get(s, k, o);                                                            \
    }                                                                                              \
    static ent_err pfx##_p(struct ent_store *s, void *x, uint64_t v)                               \
    {                                                                                              \
        return pd_##pfx##_put(s, x, v);                                                            \
    }                                                                                              \
    static ent_err pfx##_d(const struct ent_store_doc *d, void *o)                                 \
    {                                                                                              \
        return pd_##pfx##_from_doc(d, o);                                                          \
    }                                                                                              \
    static const char *pfx##_k(const void *x)                                                      \
    {                                                                                              \
        return ((const T *)x)->idfield;                                                            \
    }                                                                                              \
    static uint64_t pfx##_v(const void *x)                                                         \
    {                                                                                              \
        return ((const T *)x)->version;                                                            \
    }

KIND_FNS(struct pd_plan, plan, id)
KIND_FNS(struct pd_rule, rule, name)
KIND_FNS(struct pd_rollout, rollout, id)
KIND_FNS(struct pd_device_rule, device_rule, name)

static bool plan_check(struct policyd *p, const void *x, bool deleting, struct pd_verr *e)
{
    const struct pd_plan *pl = x;
    if (!deleting)
        return true;
    struct ent_store_page page = {0};
    ent_err rc = ent_store_query(p->store, ENT_COLL_SUBSCRIBERS, 1, pl->id, NULL, 1, &page);
    bool used = rc == ENT_OK && page.n > 0;
    ent_store_page_free(&page);
    if (used) {
        *e = (struct pd_verr){.status = 409};
        snprintf(e->field, sizeof(e->field), "id");
        snprintf(e->reason, sizeof(e->reason), "plan in use by subscribers; move them first");
        return false;
    }
    return true;
}

static bool rule_check(struct policyd *p, const void *x, bool deleting, struct pd_verr *e)
{
    const struct pd_rule *r = x;
    if (deleting)
        return true;
    for (size_t i = 0; i < p->policy.n_rules; i++) {
        const struct pd_rule *o = &p->policy.rules[i];
        if (strcmp(o->name, r->name) != 0 && o->match == r->match &&
            strcmp(o->value, r->value) == 0) {
            *e = (struct pd_verr){.status = 409};
            snprintf(e->field, sizeof(e->field), "match");
            snprintf(e->reason, sizeof(e->reason), "rule %s already has this match", o->name);
            return false;
        }
    }
    return true;
}

/* One device rule per match (vendor and model compared as the matching does, ignoring case),
 * so that precedence never has to pick between two rules saying the same thing. */
static bool device_rule_check(struct policyd *p, const void *x, bool deleting, struct pd_verr *e)
{
    const struct pd_device_rule *r = x;
    if (deleting)
        return true;
    for (size_t i = 0; i < p->policy.n_device_rules; i++) {
        const struct pd_device_rule *o = &p->policy.device_rules[i];
        if (strcmp(o->name, r->name) != 0 && strcasecmp(o->vendor, r->vendor) == 0 &&
            strcasecmp(o->model, r->model) == 0 && strcmp(o->sw_min, r->sw_min) == 0 &&
            strcmp(o->sw_max, r->sw_max) == 0) {
            *e = (struct pd_verr){.status = 409};
            snprintf(e->field, sizeof(e->field), "match");
            snprintf(e->reason, sizeof(e->reason), "device rule %s already has this match",
                     o->name);
            return false;
        }
    }
    return true;
}

static const struct kind kind_plans = {"plan",  ENT_COLL_PLANS, sizeof(struct pd_plan),
                                       plan_fj, plan_tj,        plan_g,
                                       plan_p,  plan_d,         plan_k,
                                       plan_v,  plan_check,     NULL};
static const struct kind kind_rules = {"roaming rule",
                                       ENT_COLL_ROAMING_RULES,
                                       sizeof(struct pd_rule),
                                       rule_fj,
                                       rule_tj,
                                       rule_g,
                                       rule_p,
                                       rule_d,
                                       rule_k,
                                       rule_v,
                                       rule_check,
                                       NULL};
static const struct kind kind_rollouts = {"rollout",
                                          ENT_COLL_ROLLOUTS,
                                          sizeof(struct pd_rollout),
                                          rollout_fj,
                                          rollout_tj,
                                          rollout_g,
                                          rollout_p,
                                          rollout_d,
                                          rollout_k,
                                          rollout_v,
                                          NULL,
                                          NULL};
static const struct kind kind_device_rules = {
    "device rule",  ENT_COLL_ROAMING_RULES, sizeof(struct pd_device_rule),
    device_rule_fj, device_rule_tj,         device_rule_g,
    device_rule_p,  device_rule_d,          device_rule_k,
    device_rule_v,  device_rule_check,      pd_device_rule_delete};

/* The entity's key field in request bodies. */
static const char *kind_idkey(const struct kind *k)
{
    return k == &kind_rules || k == &kind_device_rules ? "name" : "id";
}

static bool device_rule_same(const struct pd_device_rule *a, const struct pd_device_rule *b)
{
    return strcmp(a->name, b->name) == 0 && a->version == b->version &&
           strcmp(a->vendor, b->vendor) == 0 && strcmp(a->model, b->model) == 0 &&
           strcmp(a->sw_min, b->sw_min) == 0 && strcmp(a->sw_max, b->sw_max) == 0 &&
           memcmp(a->services, b->services, sizeof(a->services)) == 0 &&
           strcmp(a->message, b->message) == 0;
}

static bool device_rules_same(const struct pd_policy *a, const struct pd_policy *b)
{
    if (a->n_device_rules != b->n_device_rules)
        return false;
    for (size_t i = 0; i < a->n_device_rules; i++)
        if (!device_rule_same(&a->device_rules[i], &b->device_rules[i]))
            return false;
    return true;
}

/* Both snapshots of one subscriber as seen by one terminal. */
static void device_snapshots(struct policyd *p, const struct pd_policy *old,
                             const struct pd_subscriber *sub, const struct pd_device *dev,
                             struct pd_snapshot two[2])
{
    for (int k = 0; k < 2; k++) {
        struct pd_eval_ctx ctx;
        pd_eval_ctx_init(p, k == 0 ? old : &p->policy, &ctx);
        ctx.terminal_vendor = dev->vendor;
        ctx.terminal_model = dev->model;
        ctx.terminal_sw_version = dev->sw_version;
        for (int i = 0; i < PD_SVC_COUNT; i++)
            pd_evaluate(&ctx, sub, (enum pd_service)i, &two[k].d[i]);
    }
}

/* After a device-rule change: pd_push_policy_change() compares answers without a terminal,
 * which device rules never touch, so walk the registered devices with a push token here and
 * evaluate each as its own terminal. A subscriber with at least one device whose answer
 * changed goes through pd_push_if_changed() once (which queues an intent for each of its
 * devices with a token: a sibling device's extra re-query is cheap, a missed one is not).
 * Keeps going past failures; returns the first error or ENT_OK. */
struct device_rules_walk {
    const struct pd_policy *old;
    struct pd_snapshot two[2];
    char done_imsi[16];
};

static ent_err device_rules_visit(struct policyd *p, const struct ent_store_doc *doc, void *ud)
{
    struct device_rules_walk *w = ud;
    struct pd_device dev;
    struct pd_subscriber sub;
    if (pd_device_from_doc(doc, &dev) != ENT_OK || !dev.push_token[0] || !dev.vendor[0] ||
        strcmp(dev.imsi, w->done_imsi) == 0)
        return ENT_OK;
    if (pd_subscriber_get(p->store, dev.imsi, &sub) != ENT_OK)
        return ENT_OK;
    device_snapshots(p, w->old, &sub, &dev, w->two);
    bool changed = false;
    for (int s = 0; s < PD_SVC_COUNT; s++)
        changed = changed || !pd_decision_same(&w->two[0].d[s], &w->two[1].d[s]);
    if (!changed)
        return ENT_OK;
    snprintf(w->done_imsi, sizeof(w->done_imsi), "%s", dev.imsi);
    return pd_push_if_changed(p, &sub, &w->two[0], &w->two[1], NULL);
}

static ent_err device_rules_push(struct policyd *p, const struct pd_policy *old)
{
    struct device_rules_walk *w = calloc(1, sizeof(*w));
    if (!w)
        return ENT_ENOMEM;
    w->old = old;
    ent_err rc = pd_devices_walk(p, "device_rules", device_rules_visit, w);
    free(w);
    return rc;
}

/* After a committed plan/rule/rollout change: new generation, fresh snapshot, one
 * CHANGE_ALL event, push intents for devices whose answer changed. ENT_OK, or why an
 * intent could not be written (see respond_push_failed). */
static ent_err policy_changed(struct policyd *p)
{
    int64_t gen = 0;
    ent_err rc = pd_policy_bump(p->store, &gen);
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "policyd.generation_bump_failed",
                      ENT_KV_STR("reason", ent_err_name(rc)));
    struct pd_policy old = {0};
    bool have_old = pd_policy_copy(&old, &p->policy) == ENT_OK;
    rc = policyd_policy_refresh(p);
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "policyd.policy_reload_failed", ENT_KV_STR("reason", ent_err_name(rc)));
    pd_events_publish(p, ENTITLE__V1__CHANGE_KIND__CHANGE_ALL, NULL, (uint64_t)gen, 0);
    if (!have_old)
        return ENT_ENOMEM;
    rc = pd_push_policy_change(p, &old, NULL);
    if (!device_rules_same(&old, &p->policy)) {
        ent_err drc = device_rules_push(p, &old);
        rc = rc != ENT_OK ? rc : drc;
    }
    pd_policy_free(&old);
    return rc;
}

static bool key_ok(struct call *c, const char *k)
{
    if (pd_valid_id(k))
        return true;
    pd_admin_respond_error(c->p, c->id, c->route, c->method, 404, "not_found", NULL,
                           "no such resource");
    return false;
}

static void kind_list(struct call *c, const struct kind *k)
{
    struct policyd *p = c->p;
    ent_err rc = policyd_policy_refresh(p);
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, k->name);
        return;
    }
    json_t *items = json_array();
    if (k == &kind_plans) {
        for (size_t i = 0; i < p->policy.n_plans; i++)
            json_array_append_new(items, pd_plan_to_json(&p->policy.plans[i]));
        if (!pd_policy_plan(&p->policy, p->cfg->default_plan)) {
            struct pd_plan b;
            pd_plan_builtin_default(&b, p->cfg->default_plan);
            json_array_append_new(items, pd_plan_to_json(&b));
        }
    } else if (k == &kind_rules) {
        for (size_t i = 0; i < p->policy.n_rules; i++)
            json_array_append_new(items, pd_rule_to_json(&p->policy.rules[i]));
    } else if (k == &kind_device_rules) {
        for (size_t i = 0; i < p->policy.n_device_rules; i++)
            json_array_append_new(items, pd_device_rule_to_json(&p->policy.device_rules[i]));
    } else {
        for (size_t i = 0; i < p->policy.n_rollouts; i++)
            json_array_append_new(items, pd_rollout_to_json(&p->policy.rollouts[i]));
    }
    pd_admin_respond_json(p, c->id, c->route, c->method, 200, json_pack("{s:o}", "items", items),
                          0);
}

static void kind_get(struct call *c, const struct kind *k)
{
    if (!key_ok(c, c->seg[1]))
        return;
    void *x = calloc(1, k->size);
    ent_err rc = x ? k->get(c->p->store, c->seg[1], x) : ENT_ENOMEM;
    if (rc == ENT_ENOTFOUND && k == &kind_plans &&
        strcmp(c->seg[1], c->p->cfg->default_plan) == 0) {
        pd_plan_builtin_default(x, c->p->cfg->default_plan);
        rc = ENT_OK;
    }
    if (rc != ENT_OK)
        respond_err(c->p, c->id, c->route, c->method, rc, k->name);
    else
        pd_admin_respond_json(c->p, c->id, c->route, c->method, 200, k->to_json(x), k->version(x));
    free(x);
}

static void kind_create(struct call *c, const struct kind *k)
{
    struct policyd *p = c->p;
    json_t *j = body_json(c);
    if (!j)
        return;
    void *x = calloc(1, k->size);
    struct pd_verr e = {0};
    if (!x) {
        json_decref(j);
        respond_err(p, c->id, c->route, c->method, ENT_ENOMEM, k->name);
        return;
    }
    bool ok = k->from_json(j, false, x, &e);
    json_decref(j);
    ent_err rc = policyd_policy_refresh(p);
    if (ok && rc == ENT_OK && k->check)
        ok = k->check(p, x, false, &e);
    if (!ok) {
        respond_verr(p, c->id, c->route, c->method, &e);
    } else {
        rc = rc == ENT_OK ? k->put(p->store, x, 0) : rc;
        if (rc != ENT_OK) {
            respond_err(p, c->id, c->route, c->method, rc, k->name);
        } else {
            rc = policy_changed(p);
            if (rc != ENT_OK)
                respond_push_failed(p, c->id, c->route, c->method, rc);
            else
                pd_admin_respond_json(p, c->id, c->route, c->method, 201, k->to_json(x),
                                      k->version(x));
        }
    }
    free(x);
}

/* PUT (full replace) and PATCH (merge) of one entity under If-Match. */
static void kind_update(struct call *c, const struct kind *k, bool partial)
{
    struct policyd *p = c->p;
    if (!key_ok(c, c->seg[1]))
        return;
    json_t *j = body_json(c);
    if (!j)
        return;
    void *cur = calloc(1, k->size), *x = calloc(1, k->size);
    struct pd_verr e = {0};
    ent_err rc = cur && x ? k->get(p->store, c->seg[1], cur) : ENT_ENOMEM;
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, k->name);
        goto out;
    }
    if (!precondition(c, k->version(cur)))
        goto out;
    memcpy(x, cur, k->size);
    if (!partial) {
        /* A PUT body may leave out the id; it is the path's. */
        const char *idkey = kind_idkey(k);
        if (!json_object_get(j, idkey))
            json_object_set_new(j, idkey, json_string(c->seg[1]));
    }
    bool ok = k->from_json(j, partial, x, &e);
    if (ok && strcmp(k->key(x), c->seg[1]) != 0) {
        e = (struct pd_verr){.status = 422};
        snprintf(e.field, sizeof(e.field), "%s", kind_idkey(k));
        snprintf(e.reason, sizeof(e.reason), "must match the path");
        ok = false;
    }
    rc = policyd_policy_refresh(p);
    if (ok && rc == ENT_OK && k->check)
        ok = k->check(p, x, false, &e);
    if (!ok) {
        respond_verr(p, c->id, c->route, c->method, &e);
        goto out;
    }
    rc = rc == ENT_OK ? k->put(p->store, x, k->version(cur)) : rc;
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, k->name);
        goto out;
    }
    rc = policy_changed(p);
    if (rc != ENT_OK)
        respond_push_failed(p, c->id, c->route, c->method, rc);
    else
        pd_admin_respond_json(p, c->id, c->route, c->method, 200, k->to_json(x), k->version(x));
out:
    json_decref(j);
    free(cur);
    free(x);
}

static void kind_delete(struct call *c, const struct kind *k)
{
    struct policyd *p = c->p;
    if (!key_ok(c, c->seg[1]))
        return;
    void *cur = calloc(1, k->size);
    struct pd_verr e = {0};
    ent_err rc = cur ? k->get(p->store, c->seg[1], cur) : ENT_ENOMEM;
    if (rc != ENT_OK) {
        respond_err(p, c->id, c->route, c->method, rc, k->name);
    } else if (precondition(c, k->version(cur))) {
        if (k->check && !k->check(p, cur, true, &e)) {
            pd_admin_respond_error(p, c->id, c->route, c->method, e.status, "in_use", e.field,
                                   e.reason);
        } else {
            rc = k->del ? k->del(p->store, c->seg[1], k->version(cur))
                        : ent_store_delete(p->store, k->coll, c->seg[1], k->version(cur));
            if (rc != ENT_OK) {
                respond_err(p, c->id, c->route, c->method, rc, k->name);
            } else {
                rc = policy_changed(p);
                if (rc != ENT_OK)
                    respond_push_failed(p, c->id, c->route, c->method, rc);
                else
                    pd_admin_respond_json(p, c->id, c->route, c->method, 204, NULL, 0);
            }
        }
    }
    free(cur);
}

/* ---- routing ------------------------------------------------------------------------- */

static void method_not_allowed(struct call *c, const char *allow)
{
    respond_error_hdr(c->p, c->id, c->route, c->method, 405, "method_not_allowed", NULL,
                      "method not allowed here", "Allow", allow);
}

static bool is(const struct call *c, const char *m)
{
    return strcmp(c->method, m) == 0;
}

static void route_kind(struct call *c, const struct kind *k, const char *base)
{
    if (c->n_seg == 1) {
        snprintf(c->route, sizeof(c->route), "/v1/%s", base);
        if (is(c, "GET"))
            kind_list(c, k);
        else if (is(c, "POST"))
            kind_create(c, k);
        else
            method_not_allowed(c, "GET, POST");
        return;
    }
    snprintf(c->route, sizeof(c->route), "/v1/%s/{id}", base);
    if (is(c, "GET"))
        kind_get(c, k);
    else if (is(c, "PUT"))
        kind_update(c, k, false);
    else if (is(c, "PATCH"))
        kind_update(c, k, true);
    else if (is(c, "DELETE"))
        kind_delete(c, k);
    else
        method_not_allowed(c, "GET, PUT, PATCH, DELETE");
}

static void route(struct call *c)
{
    const char *s0 = c->seg[0];
    if (strcmp(s0, "subscribers") == 0) {
        if (c->n_seg == 1) {
            snprintf(c->route, sizeof(c->route), "/v1/subscribers");
            if (is(c, "GET"))
                subscriber_list(c);
            else if (is(c, "POST"))
                subscriber_create(c);
            else
                method_not_allowed(c, "GET, POST");
            return;
        }
        if (c->n_seg == 2) {
            snprintf(c->route, sizeof(c->route), "/v1/subscribers/{imsi}");
            struct pd_subscriber s;
            if (is(c, "GET")) {
                if (load_subscriber(c, &s))
                    pd_admin_respond_json(c->p, c->id, c->route, c->method, 200,
                                          pd_subscriber_to_json(&s), s.version);
            } else if (is(c, "PATCH")) {
                json_t *j = body_json(c);
                if (j) {
                    subscriber_apply(c, j);
                    json_decref(j);
                }
            } else if (is(c, "DELETE")) {
                subscriber_delete(c);
            } else {
                method_not_allowed(c, "GET, PATCH, DELETE");
            }
            return;
        }
        /* /v1/subscribers/{imsi}/<tail>: one method each. */
        static const struct {
            const char *tail, *method;
            void (*handle)(struct call *c);
        } subroutes[] = {
            {"location", "PUT", subscriber_location},
            {"tokens", "DELETE", subscriber_tokens_revoke},
            {"explain", "GET", subscriber_explain},
            {"devices", "GET", subscriber_devices},
        };
        for (size_t i = 0; c->n_seg == 3 && i < ENT_ARRAY_LEN(subroutes); i++) {
            if (strcmp(c->seg[2], subroutes[i].tail) != 0)
                continue;
            snprintf(c->route, sizeof(c->route), "/v1/subscribers/{imsi}/%s", subroutes[i].tail);
            if (is(c, subroutes[i].method))
                subroutes[i].handle(c);
            else
                method_not_allowed(c, subroutes[i].method);
            return;
        }
    } else if (c->n_seg <= 2 && strcmp(s0, "plans") == 0) {
        route_kind(c, &kind_plans, "plans");
        return;
    } else if (c->n_seg <= 2 && strcmp(s0, "roaming-rules") == 0) {
        route_kind(c, &kind_rules, "roaming-rules");
        return;
    } else if (c->n_seg <= 2 && strcmp(s0, "rollouts") == 0) {
        route_kind(c, &kind_rollouts, "rollouts");
        return;
    } else if (c->n_seg <= 2 && strcmp(s0, "device-rules") == 0) {
        route_kind(c, &kind_device_rules, "device-rules");
        return;
    } else if (c->n_seg == 1 && strcmp(s0, "import") == 0) {
        snprintf(c->route, sizeof(c->route), "/v1/import");
        if (is(c, "POST"))
            pd_import_start(c->p, c->r);
        else
            method_not_allowed(c, "POST");
        return;
    }
    snprintf(c->route, sizeof(c->route), "other");
    pd_admin_respond_error(c->p, c->id, c->route, c->method, 404, "not_found", NULL,
                           "no such route");
}

void pd_admin_on_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud)
{
    struct policyd *p = ud;
    (void)srv; /* import bodies stream: start_admin() sets .stream_select */
    struct call c = {.p = p, .id = req->id, .r = req};
    /* Methods are a closed set for the metric label. */
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    c.method = "other";
    for (size_t i = 0; i < ENT_ARRAY_LEN(methods); i++)
        if (strcmp(req->method, methods[i]) == 0)
            c.method = methods[i];
    snprintf(c.route, sizeof(c.route), "other");
    uint64_t t0 = ent_now_ns();

    unsigned scopes = request_scopes(p, req);
    if (!scopes) {
        respond_error_hdr(p, c.id, c.route, c.method, 401, "unauthorized", NULL,
                          "a valid bearer token is required", "WWW-Authenticate",
                          "Bearer realm=\"entitle-admin\"");
        return;
    }
    bool write = strcmp(c.method, "GET") != 0;
    if (write && !(scopes & PD_SCOPE_WRITE)) {
        pd_admin_respond_error(p, c.id, c.route, c.method, 403, "forbidden", NULL,
                               "this token has the read scope only");
        return;
    }
    /* Path: /v1/<seg>/<seg>...; each segment at most 79 bytes, no encoded slashes. */
    if (req->path_len < 4 || strncmp(req->path, "/v1/", 4) != 0) {
        pd_admin_respond_error(p, c.id, c.route, c.method, 404, "not_found", NULL, "no such route");
        return;
    }
    const char *s = req->path + 4;
    while (*s && c.n_seg < ENT_ARRAY_LEN(c.seg)) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (len == 0 || len >= sizeof(c.seg[0]))
            break;
        memcpy(c.seg[c.n_seg], s, len);
        c.seg[c.n_seg][len] = '\0';
        c.n_seg++;
        s += len;
        if (*s == '/')
            s++;
    }
    if (*s || c.n_seg == 0) {
        pd_admin_respond_error(p, c.id, c.route, c.method, 404, "not_found", NULL, "no such route");
        return;
    }
    route(&c);
    ent_histogram_observe(&api_seconds, (double)(ent_now_ns() - t0) / 1e9, c.route);
}
