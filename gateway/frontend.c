/* SPDX-License-Identifier: Apache-2.0 */
/* The device front end: N loop threads ("shards"), each with an HTTPS listener on the same
 * port (SO_REUSEPORT) and its own bus clients to authd and policyd, and the TS.43 request
 * paths they run (DESIGN.md §2, PROTOCOL.md §4). One device request is one struct gw_call,
 * owned by its shard's loop from the HTTP handler to finish(), which answers, counts, writes
 * the audit line and frees it. Bus replies carry the call pointer: ent_bus_call() runs its
 * callback exactly once (ENT_ECLOSED at shutdown), so a call is never freed twice or leaked.
 *
 *   EAP_ID ──AuthStart──▶ CHALLENGE: 200 eap-relay + Set-Cookie ECSID=<sealed ticket>
 *   EAP POST (cookie) ──AuthContinue──▶ CHALLENGE (resync): 200 eap-relay, same cookie
 *                                     ├▶ SUCCESS ──▶ decision ──▶ 200 document + TOKEN
 *                                     └▶ FAILURE: 511 (expired/replay/tampered) or 403
 *   token ──token cache | TokenVerify──▶ decision ──▶ 200 document + the same TOKEN
 *   decision: decision cache | Evaluate (policyd) ──▶ render
 *   any worker down, slow or saturated ──▶ 503 + Retry-After (never a hang, never 401)
 *
 * Threads: shard functions run on their shard's loop; gw_frontend_* on the main loop. The
 * shared caches and rate limiters lock internally. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/tls.h"
#include "gateway.h"
#include "render.h"
#include "request.h"

static ent_counter requests_total = ENT_COUNTER(
    "entitle_gateway_requests_total", "Device requests by kind and HTTP status", "kind", "status");
static ent_histogram request_seconds = ENT_HISTOGRAM(
    "entitle_gateway_request_duration_seconds",
    "Device request latency by AppID and outcome (a multi-AppID request counts for each)",
    ENT_BUCKETS(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                2.5),
    "app", "outcome");
static ent_counter app_outcomes = ENT_COUNTER("entitle_gateway_app_requests_total",
                                              "Requests per AppID and outcome", "app", "outcome");
static ent_counter errors_total =
    ENT_COUNTER("entitle_gateway_errors_total",
                "Failed device requests: kind (timeout, auth, bad_request, backend, rate_limited)"
                " and reason",
                "kind", "reason");
static ent_counter vendor_failures = ENT_COUNTER(
    "entitle_gateway_vendor_failures_total",
    "Failed device requests by terminal_vendor (first 32 vendors seen, then \"other\")", "vendor");
static ent_gauge inflight_gauge =
    ENT_GAUGE("entitle_gateway_requests_in_flight", "Device requests being served");
static ent_counter registrations =
    ENT_COUNTER("entitle_gateway_device_registrations_total",
                "notif_token registrations forwarded to policyd", "result");
static ent_counter tls_reloads =
    ENT_COUNTER("entitle_gateway_tls_reloads_total", "Device certificate reloads", "result");

/* ---- shards ----------------------------------------------------------------------------- */

struct gw_shard {
    struct gw *g;
    unsigned index;
    uv_thread_t thread;
    bool thread_started;
    uv_loop_t loop;
    uv_async_t wake;
    uv_sem_t started;
    ent_err start_rc;
    int port; /* -1: take device.listen's port */
    struct ent_http_server http;
    bool http_open;
    struct ent_bus_client authd;
    struct ent_bus_client policyd;
    bool authd_open, policyd_open;
    atomic_bool want_drain;
    atomic_bool want_close;
    bool closing;
    pthread_mutex_t tls_mu;
    SSL_CTX *pending_tls;
    atomic_size_t inflight;
    uint64_t seq;
};

enum call_kind { CK_BAD, CK_NOAUTH, CK_EAP_START, CK_EAP_RESPONSE, CK_TOKEN, CK_TEMP };
static const char *const kind_names[] = {"bad_request",  "noauth", "eap_start",
                                         "eap_response", "token",  "temporary_token"};

struct gw_call {
    struct gw_shard *sh;
    uint64_t http_id;
    uint64_t start_ns;
    enum call_kind kind;
    bool tls;
    char trace[24];
    char peer_ip[64];
    /* what the document is built from (from the request, or the ticket on EAP success) */
    char imsi[16];
    char apps[GW_APPS_MAX][GW_APP_LEN + 1];
    size_t n_apps;
    enum gw_format format;
    int version;
    char ent_version[12];
    char vers[16];
    char vendor[65], model[65], sw[65], terminal_id[65];
    char token[2100];
    bool with_token;
    int64_t token_validity;
    enum gw_odsa_op odsa;
    bool acquire_temp;
    uint64_t epoch;
    char plmn[8]; /* from the trusted device.plmn_header, "" otherwise */
    /* Last and not zeroed on allocation: gw_req_parse() initialises what it uses. */
    struct gw_req req;
};

#define TOKEN_TEXT_MAX 2048

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *app_label(const char *app)
{
    return gw_app_known(app) ? app : "other";
}

static pthread_mutex_t vendor_mu = PTHREAD_MUTEX_INITIALIZER;
static char vendor_seen[32][17];
static size_t n_vendor_seen;

/* A bounded label for terminal_vendor: [A-Za-z0-9] of the value, the first 32 distinct
 * values seen by this process, then "other". */
static const char *vendor_label(const char *v, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *v && o + 1 < cap && o < 16; v++)
        if (isalnum((unsigned char)*v))
            buf[o++] = (char)tolower((unsigned char)*v);
    buf[o] = '\0';
    if (o == 0)
        return "unknown";
    const char *res = "other";
    pthread_mutex_lock(&vendor_mu);
    for (size_t i = 0; i < n_vendor_seen; i++)
        if (strcmp(vendor_seen[i], buf) == 0)
            res = buf;
    if (res != buf && n_vendor_seen < 32) {
        size_t vl = strnlen(buf, sizeof(vendor_seen[0]) - 1);
        memcpy(vendor_seen[n_vendor_seen], buf, vl);
        vendor_seen[n_vendor_seen++][vl] = '\0';
        res = buf;
    }
    pthread_mutex_unlock(&vendor_mu);
    return res;
}

static void b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    char tmp[4096];
    if (ent_base64_encoded_len(len) + 1 > sizeof(tmp) || ent_base64_encoded_len(len) + 1 > cap) {
        out[0] = '\0';
        return;
    }
    ent_base64_encode(in, len, tmp);
    size_t o = 0;
    for (const char *c = tmp; *c && *c != '='; c++)
        out[o++] = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    out[o] = '\0';
}

static ent_err b64url_decode(const char *in, uint8_t *out, size_t cap, size_t *out_len)
{
    char tmp[4096];
    size_t n = strlen(in);
    if (n + 4 >= sizeof(tmp))
        return ENT_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        tmp[n++] = '=';
    tmp[n] = '\0';
    return ent_base64_decode(tmp, n, out, cap, out_len);
}

static void peer_ip(const char *peer, char *out, size_t cap)
{
    snprintf(out, cap, "%s", peer);
    char *colon = strrchr(out, ':');
    if (colon && (out[0] != '[' || colon > strchr(out, ']')))
        *colon = '\0';
}

/* ---- finishing a call ------------------------------------------------------------------ */

struct reply {
    int status;
    const char *outcome;    /* closed set */
    const char *err_kind;   /* NULL on success */
    const char *reason;     /* closed set */
    const char *ctype;      /* NULL: no body */
    const char *set_cookie; /* full header value or NULL */
    bool retry_after;
    const char *body;
    size_t body_len;
};

static void call_free(struct gw_call *c)
{
    struct gw_shard *sh = c->sh;
    atomic_fetch_sub(&sh->inflight, 1);
    ent_gauge_dec(&inflight_gauge);
    free(c);
}

static void finish(struct gw_call *c, const struct reply *r)
{
    struct gw_shard *sh = c->sh;
    struct ent_http_header h[5];
    size_t nh = 0;
    char retry[16];
    if (r->ctype)
        h[nh++] = (struct ent_http_header){"Content-Type", 12, r->ctype, strlen(r->ctype)};
    if (r->status == 200)
        h[nh++] = (struct ent_http_header){"Cache-Control", 13, "no-store", 8};
    if (r->set_cookie)
        h[nh++] = (struct ent_http_header){"Set-Cookie", 10, r->set_cookie, strlen(r->set_cookie)};
    if (r->retry_after) {
        snprintf(retry, sizeof(retry), "%lld", (long long)sh->g->cfg->retry_after);
        h[nh++] = (struct ent_http_header){"Retry-After", 11, retry, strlen(retry)};
    }
    if (r->status == 405)
        h[nh++] = (struct ent_http_header){"Allow", 5, "GET, POST", 9};
    const char *body = r->body ? r->body : "";
    size_t blen = r->body ? r->body_len : 0;
    ent_http_respond(&sh->http, c->http_id, r->status, h, nh, body, blen);

    double secs = (double)(ent_now_ns() - c->start_ns) / 1e9;
    char st[8];
    snprintf(st, sizeof(st), "%d", r->status);
    ent_counter_inc(&requests_total, kind_names[c->kind], st);
    const char(*apps)[GW_APP_LEN + 1] = c->n_apps ? c->apps : c->req.apps;
    size_t n_apps = c->n_apps ? c->n_apps : c->req.n_apps;
    if (n_apps == 0) {
        ent_histogram_observe(&request_seconds, secs, "none", r->outcome);
    }
    for (size_t i = 0; i < n_apps; i++) {
        ent_histogram_observe(&request_seconds, secs, app_label(apps[i]), r->outcome);
        ent_counter_inc(&app_outcomes, app_label(apps[i]), r->outcome);
    }
    if (r->err_kind) {
        char vb[20];
        const char *vendor = c->vendor[0] ? c->vendor : c->req.p[GW_P_TERMINAL_VENDOR];
        ent_counter_inc(&errors_total, r->err_kind, r->reason ? r->reason : "-");
        if (r->status != 429)
            ent_counter_inc(&vendor_failures, vendor_label(vendor ? vendor : "", vb, sizeof(vb)));
    }
    /* Audit: one line per decision (and per refusal), subscriber masked. */
    if (r->status != 200 || strcmp(r->outcome, "challenge") != 0 ||
        ent_log_enabled(ENT_LOG_DEBUG)) {
        char applist[GW_APPS_MAX * (GW_APP_LEN + 1) + 1];
        size_t o = 0;
        applist[0] = '\0';
        for (size_t i = 0; i < n_apps; i++)
            o += (size_t)snprintf(applist + o, sizeof(applist) - o, "%s%s", i ? "," : "", apps[i]);
        ENT_LOG_INFO(c->trace, "audit.decision",
                     ENT_KV_STR("subscriber", ent_mask_id(c->imsi[0] ? c->imsi : NULL)),
                     ENT_KV_STR("kind", kind_names[c->kind]), ENT_KV_STR("apps", applist),
                     ENT_KV_I64("status", r->status), ENT_KV_STR("outcome", r->outcome),
                     ENT_KV_STR("reason", r->reason ? r->reason : "-"),
                     ENT_KV_DBL("latency_ms", secs * 1000.0), ENT_KV_STR("peer", c->peer_ip));
    }
    call_free(c);
}

static void fail(struct gw_call *c, int status, const char *outcome, const char *kind,
                 const char *reason)
{
    struct reply r = {.status = status, .outcome = outcome, .err_kind = kind, .reason = reason};
    r.retry_after = status == 503 || status == 429;
    finish(c, &r);
}

/* A transport or status failure talking to a worker: 503 + Retry-After. */
static void fail_backend(struct gw_call *c, ent_err rc, const char *worker)
{
    const char *kind = rc == ENT_ETIMEDOUT ? "timeout" : "backend";
    ENT_LOG_WARN(c->trace, "gateway.backend_error", ENT_KV_STR("worker", worker),
                 ENT_KV_STR("error", ent_err_name(rc)));
    fail(c, 503, kind, kind, ent_err_name(rc));
}

/* ---- documents ---------------------------------------------------------------------------- */

/* Device rules (policyd step 6) make the answer depend on the terminal too; its values are
 * length-prefixed so that no vendor/model/sw split can collide with another. */
static void cache_key(const struct gw_call *c, char *key, size_t cap)
{
    size_t o = (size_t)snprintf(key, cap, "%s|%c|%d|%s|%d|%zu:%s|%zu:%s|%zu:%s|", c->imsi,
                                c->format == GW_FMT_XML ? 'x' : 'j', c->version, c->vers, c->odsa,
                                strlen(c->vendor), c->vendor, strlen(c->model), c->model,
                                strlen(c->sw), c->sw);
    for (size_t i = 0; i < c->n_apps && o < cap; i++)
        o += (size_t)snprintf(key + o, cap - o, "%s,", c->apps[i]);
}

static void respond_document(struct gw_call *c, int64_t vers_version, const char *apps_part,
                             size_t apps_len, const char *outcome)
{
    struct ent_buf b;
    ent_buf_init(&b, 1 << 20);
    ent_err rc = gw_render_head(&b, c->format, vers_version, c->sh->g->cfg->vers_validity);
    if (rc == ENT_OK && c->with_token)
        rc = gw_render_token(&b, c->format, c->token, c->token_validity);
    if (rc == ENT_OK)
        rc = ent_buf_append(&b, apps_part, apps_len);
    if (rc == ENT_OK)
        rc = gw_render_tail(&b, c->format);
    if (rc != ENT_OK) {
        ent_buf_free(&b);
        fail(c, 500, "internal", "backend", ent_err_name(rc));
        return;
    }
    struct reply r = {.status = 200,
                      .outcome = outcome,
                      .ctype = c->format == GW_FMT_XML ? GW_CT_XML : GW_CT_JSON,
                      .body = b.data,
                      .body_len = b.len};
    finish(c, &r);
    ent_buf_free(&b);
}

static void on_evaluate_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct gw_call *c = ud;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    if (status == ENT_OK &&
        (resp->body_case != ENTITLE__V1__RESPONSE__BODY_EVALUATE || !resp->evaluate))
        status = ENT_EPROTO;
    if (status == ENT_ENOTFOUND) {
        ENT_LOG_WARN(c->trace, "gateway.unknown_subscriber",
                     ENT_KV_STR("subscriber", ent_mask_id(c->imsi)));
        fail(c, 403, "forbidden", "auth", "unknown_subscriber");
    } else if (status != ENT_OK) {
        fail_backend(c, status, "policyd");
    } else {
        const Entitle__V1__EvaluateResponse *ev = resp->evaluate;
        struct ent_buf apps;
        ent_buf_init(&apps, 1 << 20);
        struct gw_render_in in = {.format = c->format,
                                  .version = c->version,
                                  .apps = (const char(*)[GW_APP_LEN + 1]) c->apps,
                                  .n_apps = c->n_apps,
                                  .ev = ev,
                                  .odsa = c->odsa};
        ent_err rc = gw_render_apps(&apps, &in);
        if (rc != ENT_OK) {
            fail(c, 500, "internal", "backend", ent_err_name(rc));
        } else {
            char key[512];
            cache_key(c, key, sizeof(key));
            gw_cache_put(&c->sh->g->decisions, key, c->imsi, apps.data, apps.len,
                         (int64_t)ev->subscriber_version, 0, 0, c->epoch);
            respond_document(c, (int64_t)ev->subscriber_version, apps.data, apps.len, "success");
        }
        ent_buf_free(&apps);
    }
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

static bool odsa_app(const char *app)
{
    return strcmp(app, "ap2006") == 0 || strcmp(app, "ap2009") == 0 || strcmp(app, "ap2011") == 0 ||
           strcmp(app, "ap2014") == 0 || strcmp(app, "ap2017") == 0;
}

static void set_odsa(struct gw_call *c, const char *op)
{
    static const char *const known_ops[] = {
        "ManageSubscription", "ManageService",     "AcquireConfiguration", "AcquirePlan",
        "GetPhoneNumber",     "VerifyPhoneNumber", "GetSubscriberInfo"};
    c->odsa = GW_ODSA_POLICY;
    c->acquire_temp = false;
    if (op == NULL || op[0] == '\0' || strcmp(op, "CheckEligibility") == 0)
        return;
    if (strcmp(op, "AcquireTemporaryToken") == 0) {
        c->acquire_temp = true;
        return;
    }
    c->odsa = GW_ODSA_INVALID;
    for (size_t i = 0; i < ENT_ARRAY_LEN(known_ops); i++)
        if (strcmp(op, known_ops[i]) == 0)
            c->odsa = GW_ODSA_UNSUPPORTED;
}

static void on_temp_token_reply(ent_err status, Entitle__V1__Response *resp, void *ud);

/* The subscriber is authenticated (c->imsi, c->apps, c->format, ... set): answer with the
 * document, from the decision cache or policyd. */
static void start_decision(struct gw_call *c)
{
    struct gw_shard *sh = c->sh;
    struct gw *g = sh->g;
    unsigned retry = 0;
    if (!gw_ratelimit_take(&g->rl_sub, c->imsi, &retry)) {
        fail(c, 429, "rate_limited", "rate_limited", "subscriber");
        return;
    }
    c->version = gw_version_negotiate(c->req.ver_major, c->req.ver_minor);
    if (c->acquire_temp) {
        const char *odsa = NULL;
        for (size_t i = 0; i < c->n_apps && !odsa; i++)
            if (odsa_app(c->apps[i]))
                odsa = c->apps[i];
        if (odsa == NULL || !c->with_token || !c->req.has[GW_P_OPERATION_TARGETS]) {
            c->odsa = GW_ODSA_INVALID; /* 102-ish: rendered as invalid operation */
            c->acquire_temp = false;
        } else {
            Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
            Entitle__V1__TemporaryTokenRequest tt = ENTITLE__V1__TEMPORARY_TOKEN_REQUEST__INIT;
            char targets[520];
            char *tv[16];
            size_t nt = 0;
            snprintf(targets, sizeof(targets), "%s", c->req.p[GW_P_OPERATION_TARGETS]);
            for (char *save = NULL, *t = strtok_r(targets, ",", &save); t && nt < 16;
                 t = strtok_r(NULL, ",", &save))
                tv[nt++] = t;
            tt.token = c->token;
            tt.operation_targets = tv;
            tt.n_operation_targets = nt;
            tt.app_id = (char *)odsa;
            req.body_case = ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN;
            req.temporary_token = &tt;
            ent_err rc = ent_bus_call(&sh->authd, &req, g->cfg->upstream_timeout, c->trace,
                                      on_temp_token_reply, c);
            if (rc != ENT_OK)
                fail_backend(c, rc, "authd");
            return;
        }
    }
    char key[512];
    cache_key(c, key, sizeof(key));
    struct ent_buf hit;
    ent_buf_init(&hit, 1 << 20);
    int64_t vers_version = 0;
    if (gw_cache_get(&g->decisions, key, c->imsi, &hit, &vers_version, NULL)) {
        respond_document(c, vers_version, hit.data, hit.len, "success");
        ent_buf_free(&hit);
        return;
    }
    ent_buf_free(&hit);

    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__EvaluateRequest ev = ENTITLE__V1__EVALUATE_REQUEST__INIT;
    char *known[GW_APPS_MAX];
    size_t nk = 0;
    for (size_t i = 0; i < c->n_apps; i++)
        if (gw_app_known(c->apps[i]))
            known[nk++] = c->apps[i];
    ev.subscriber_id = c->imsi;
    ev.app_ids = known;
    ev.n_app_ids = nk;
    ev.terminal_vendor = c->vendor;
    ev.terminal_model = c->model;
    ev.terminal_sw_version = c->sw;
    ev.entitlement_version = c->ent_version;
    ev.serving_plmn = c->plmn;
    req.body_case = ENTITLE__V1__REQUEST__BODY_EVALUATE;
    req.evaluate = &ev;
    c->epoch = gw_cache_epoch(&g->decisions);
    ent_err rc =
        ent_bus_call(&sh->policyd, &req, g->cfg->upstream_timeout, c->trace, on_evaluate_reply, c);
    if (rc != ENT_OK)
        fail_backend(c, rc, "policyd");
}

static void iso8601(uint64_t unix_s, char *out, size_t cap)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void on_temp_token_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct gw_call *c = ud;
    if (status == ENT_OK && resp->status && resp->status->code == ENTITLE__V1__CODE__EAUTH) {
        fail(c, 511, "token_invalid", "auth", "token");
    } else if (status == ENT_OK && resp->status &&
               resp->status->code == ENTITLE__V1__CODE__EINVAL) {
        c->odsa = GW_ODSA_INVALID;
        c->acquire_temp = false;
        entitle__v1__response__free_unpacked(resp, NULL);
        start_decision(c);
        return;
    } else {
        if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
            status = (ent_err)resp->status->code;
        if (status == ENT_OK && (resp->body_case != ENTITLE__V1__RESPONSE__BODY_TEMPORARY_TOKEN ||
                                 !resp->temporary_token))
            status = ENT_EPROTO;
        if (status != ENT_OK) {
            fail_backend(c, status, "authd");
        } else {
            char exp[32];
            iso8601(resp->temporary_token->expiry_unix, exp, sizeof(exp));
            const char *odsa = c->apps[0];
            for (size_t i = 0; i < c->n_apps; i++)
                if (odsa_app(c->apps[i])) {
                    odsa = c->apps[i];
                    break;
                }
            struct ent_buf b;
            ent_buf_init(&b, 1 << 16);
            ent_err rc =
                gw_render_temp_token(&b, c->format, odsa, resp->temporary_token->temporary_token,
                                     exp, c->req.p[GW_P_OPERATION_TARGETS]);
            if (rc == ENT_OK)
                respond_document(c, 1, b.data, b.len, "success");
            else
                fail(c, 500, "internal", "backend", ent_err_name(rc));
            ent_buf_free(&b);
        }
    }
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

/* ---- authentication ------------------------------------------------------------------------ */

static void on_register_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    (void)ud;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    ent_counter_inc(&registrations, ent_err_name(status));
    if (status != ENT_OK)
        ENT_LOG_WARN(NULL, "gateway.device_register_failed",
                     ENT_KV_STR("error", ent_err_name(status)));
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

/* PROTOCOL.md §9: the device's notif_token goes to policyd as its registration. Best
 * effort: the entitlement reply does not wait for it. */
static void register_device(struct gw_call *c, const char *notif_token, const char *notif_action)
{
    if (notif_token == NULL || notif_token[0] == '\0')
        return;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__DeviceRegisterRequest dr = ENTITLE__V1__DEVICE_REGISTER_REQUEST__INIT;
    dr.subscriber_id = c->imsi;
    dr.terminal_id = c->terminal_id;
    dr.terminal_vendor = c->vendor;
    dr.terminal_model = c->model;
    dr.terminal_sw_version = c->sw;
    dr.notif_token = (char *)notif_token;
    dr.notif_action = (char *)(notif_action ? notif_action : "");
    req.body_case = ENTITLE__V1__REQUEST__BODY_DEVICE_REGISTER;
    req.device_register = &dr;
    ent_err rc = ent_bus_call(&c->sh->policyd, &req, c->sh->g->cfg->upstream_timeout, c->trace,
                              on_register_reply, NULL);
    if (rc != ENT_OK)
        ent_counter_inc(&registrations, ent_err_name(rc));
}

static bool failure_is_511(const char *reason)
{
    return reason && (strcmp(reason, "expired") == 0 || strcmp(reason, "replay") == 0 ||
                      strcmp(reason, "tampered") == 0);
}

static const char *closed_reason(const char *reason)
{
    static const char *const set[] = {
        "bad_mac",      "bad_res",     "resync",    "expired",
        "replay",       "tampered",    "rounds",    "unknown_subscriber",
        "malformed",    "identity",    "pseudonym", "client_reject",
        "client_error", "unsupported", "revoked",   "subscriber",
        "scope"};
    for (size_t i = 0; reason && i < ENT_ARRAY_LEN(set); i++)
        if (strcmp(reason, set[i]) == 0)
            return set[i];
    return "other";
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void on_auth_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct gw_call *c = ud;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    if (status == ENT_OK && (resp->body_case != ENTITLE__V1__RESPONSE__BODY_AUTH || !resp->auth))
        status = ENT_EPROTO;
    if (status != ENT_OK) {
        fail_backend(c, status, "authd");
        goto out;
    }
    const Entitle__V1__AuthResponse *a = resp->auth;
    switch (a->outcome) {
    case ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE: {
        struct ent_buf b;
        char cookie[3000];
        ent_buf_init(&b, 8192);
        if (gw_render_eap_relay(&b, a->eap_packet.data, a->eap_packet.len) != ENT_OK) {
            ent_buf_free(&b);
            fail(c, 500, "internal", "backend", "eap_render");
            break;
        }
        struct reply r = {.status = 200,
                          .outcome = "challenge",
                          .ctype = GW_CT_EAP_RELAY,
                          .body = b.data,
                          .body_len = b.len};
        /* The cookie is set once, on the first challenge, and never changed (AOSP keeps only
         * the first response's cookies); a resync challenge comes without a ticket. */
        if (c->kind == CK_EAP_START) {
            char v[2800];
            if (a->ticket.len == 0 || a->ticket.len > 2000) {
                ent_buf_free(&b);
                fail_backend(c, ENT_EPROTO, "authd");
                break;
            }
            b64url_encode(a->ticket.data, a->ticket.len, v, sizeof(v));
            snprintf(cookie, sizeof(cookie), "%s=%s; Path=/;%s HttpOnly", GW_COOKIE_NAME, v,
                     c->tls ? " Secure;" : "");
            r.set_cookie = cookie;
        }
        finish(c, &r);
        ent_buf_free(&b);
        break;
    }
    case ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS: {
        const Entitle__V1__RequestParams *p = a->params;
        copy_str(c->imsi, sizeof(c->imsi), a->subscriber_id);
        if (strlen(a->token ? a->token : "") > TOKEN_TEXT_MAX || p == NULL || p->n_app_ids == 0) {
            fail_backend(c, ENT_EPROTO, "authd");
            break;
        }
        copy_str(c->token, sizeof(c->token), a->token);
        c->with_token = true;
        uint64_t now_s = ent_wall_ms() / 1000;
        c->token_validity =
            a->token_expiry_unix > now_s ? (int64_t)(a->token_expiry_unix - now_s) : 0;
        c->n_apps = 0;
        for (size_t i = 0; i < p->n_app_ids && c->n_apps < GW_APPS_MAX; i++)
            if (p->app_ids[i] && strlen(p->app_ids[i]) == GW_APP_LEN)
                copy_str(c->apps[c->n_apps++], GW_APP_LEN + 1, p->app_ids[i]);
        copy_str(c->vers, sizeof(c->vers), p->vers);
        copy_str(c->ent_version, sizeof(c->ent_version), p->entitlement_version);
        c->req.ver_major = 2;
        c->req.ver_minor = 0;
        sscanf(c->ent_version, "%d.%d", &c->req.ver_major, &c->req.ver_minor);
        copy_str(c->terminal_id, sizeof(c->terminal_id), p->terminal_id);
        copy_str(c->vendor, sizeof(c->vendor), p->terminal_vendor);
        copy_str(c->model, sizeof(c->model), p->terminal_model);
        copy_str(c->sw, sizeof(c->sw), p->terminal_sw_version);
        /* The EAP POST's Accept decides when it names a document type; otherwise the first
         * request's choice (in the ticket) holds. */
        if (!c->req.format_explicit)
            c->format = p->format && strcmp(p->format, "xml") == 0 ? GW_FMT_XML : GW_FMT_JSON;
        set_odsa(c, NULL);
        register_device(c, p->notif_token, p->notif_action);
        start_decision(c);
        break;
    }
    default: {
        const char *reason = closed_reason(a->failure_reason);
        if (failure_is_511(a->failure_reason))
            fail(c, 511, "auth_restart", "auth", reason);
        else
            fail(c, 403, "auth_failure", "auth", reason);
        break;
    }
    }
out:
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

static void start_eap(struct gw_call *c)
{
    struct gw_shard *sh = c->sh;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__AuthStartRequest as = ENTITLE__V1__AUTH_START_REQUEST__INIT;
    Entitle__V1__RequestParams pp = ENTITLE__V1__REQUEST_PARAMS__INIT;
    char *apps[GW_APPS_MAX];
    for (size_t i = 0; i < c->req.n_apps; i++)
        apps[i] = c->req.apps[i];
    pp.app_ids = apps;
    pp.n_app_ids = c->req.n_apps;
    pp.vers = (char *)c->req.p[GW_P_VERS];
    pp.entitlement_version = (char *)c->req.p[GW_P_ENTITLEMENT_VERSION];
    pp.terminal_id = (char *)c->req.p[GW_P_TERMINAL_ID];
    pp.terminal_vendor = (char *)c->req.p[GW_P_TERMINAL_VENDOR];
    pp.terminal_model = (char *)c->req.p[GW_P_TERMINAL_MODEL];
    pp.terminal_sw_version = (char *)c->req.p[GW_P_TERMINAL_SW_VERSION];
    pp.format = (char *)(c->req.format == GW_FMT_XML ? "xml" : "json");
    pp.app_name = (char *)c->req.p[GW_P_APP_NAME];
    pp.app_version = (char *)c->req.p[GW_P_APP_VERSION];
    pp.notif_token = (char *)c->req.p[GW_P_NOTIF_TOKEN];
    pp.notif_action = (char *)c->req.p[GW_P_NOTIF_ACTION];
    as.eap_identity = (char *)c->req.p[GW_P_EAP_ID];
    as.params = &pp;
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_START;
    req.auth_start = &as;
    ent_err rc =
        ent_bus_call(&sh->authd, &req, sh->g->cfg->upstream_timeout, c->trace, on_auth_reply, c);
    if (rc != ENT_OK)
        fail_backend(c, rc, "authd");
}

static void continue_eap(struct gw_call *c)
{
    struct gw_shard *sh = c->sh;
    uint8_t ticket[2100];
    size_t tlen = 0;
    if (c->req.cookie[0] == '\0') {
        fail(c, 511, "auth_restart", "auth", "no_cookie");
        return;
    }
    if (b64url_decode(c->req.cookie, ticket, sizeof(ticket), &tlen) != ENT_OK || tlen == 0) {
        fail(c, 511, "auth_restart", "auth", "tampered");
        return;
    }
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__AuthContinueRequest ac = ENTITLE__V1__AUTH_CONTINUE_REQUEST__INIT;
    ac.ticket = (ProtobufCBinaryData){tlen, ticket};
    ac.eap_packet = (ProtobufCBinaryData){c->req.eap_len, c->req.eap};
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE;
    req.auth_continue = &ac;
    ent_err rc =
        ent_bus_call(&sh->authd, &req, sh->g->cfg->upstream_timeout, c->trace, on_auth_reply, c);
    if (rc != ENT_OK)
        fail_backend(c, rc, "authd");
}

/* ---- tokens -------------------------------------------------------------------------------- */

static void token_accepted(struct gw_call *c, const char *imsi, uint64_t expiry_unix)
{
    if (imsi != c->imsi)
        copy_str(c->imsi, sizeof(c->imsi), imsi);
    uint64_t now_s = ent_wall_ms() / 1000;
    c->token_validity = expiry_unix > now_s ? (int64_t)(expiry_unix - now_s) : 0;
    /* A token request carries the app's current push token too (PROTOCOL.md §2): FCM
     * rotates tokens, and a handset with a valid token never repeats EAP-AKA to tell us. */
    register_device(c, c->req.p[GW_P_NOTIF_TOKEN], c->req.p[GW_P_NOTIF_ACTION]);
    start_decision(c);
}

static void on_verify_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct gw_call *c = ud;
    if (status == ENT_OK && resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
        status = (ent_err)resp->status->code;
    if (status == ENT_OK &&
        (resp->body_case != ENTITLE__V1__RESPONSE__BODY_TOKEN_VERIFY || !resp->token_verify))
        status = ENT_EPROTO;
    if (status != ENT_OK) {
        fail_backend(c, status, "authd");
        goto out;
    }
    const Entitle__V1__TokenVerifyResponse *tv = resp->token_verify;
    if (!tv->valid) {
        fail(c, 511, "token_invalid", "auth", closed_reason(tv->reason));
        goto out;
    }
    if (c->kind == CK_TOKEN) {
        if (tv->temporary) {
            fail(c, 511, "token_invalid", "auth", "scope");
            goto out;
        }
        uint64_t exp_ms = tv->expiry_unix * 1000;
        uint64_t now_wall = ent_wall_ms();
        uint64_t mono_exp = exp_ms > now_wall ? ent_now_ms() + (exp_ms - now_wall) : 0;
        if (mono_exp)
            gw_cache_put(&c->sh->g->tokens, c->token, tv->subscriber_id, tv->subscriber_id,
                         strlen(tv->subscriber_id), (int64_t)tv->expiry_unix, 0, mono_exp,
                         c->epoch);
        token_accepted(c, tv->subscriber_id, tv->expiry_unix);
        goto out;
    }
    /* temporary token: only its AppID and operations (PROTOCOL.md §4.5) */
    bool app_ok = false, op_ok = false;
    for (size_t i = 0; i < c->n_apps; i++)
        if (tv->app_id && strcmp(c->apps[i], tv->app_id) == 0)
            app_ok = true;
    for (size_t i = 0; i < tv->n_operation_targets; i++)
        if (strcmp(tv->operation_targets[i], c->req.p[GW_P_OPERATION]) == 0)
            op_ok = true;
    if (!tv->temporary || !app_ok || !op_ok || c->n_apps != 1) {
        fail(c, 403, "forbidden", "auth", "scope");
        goto out;
    }
    c->with_token = false;
    copy_str(c->imsi, sizeof(c->imsi), tv->subscriber_id);
    start_decision(c);
out:
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
}

static void start_token(struct gw_call *c, const char *token)
{
    struct gw_shard *sh = c->sh;
    struct gw *g = sh->g;
    const char *imsi_param = c->req.p[GW_P_IMSI];
    copy_str(c->token, sizeof(c->token), token);
    c->with_token = c->kind == CK_TOKEN;
    if (c->kind == CK_TOKEN) {
        /* Positive cache: the same token verified recently and not revoked since; the
         * payload is the subscriber, re-checked against the request's IMSI. */
        int64_t exp_unix = 0;
        struct ent_buf who;
        ent_buf_init(&who, GW_CACHE_SUBJ_MAX + 1);
        bool hit = gw_cache_get(&g->tokens, c->token, NULL, &who, &exp_unix, NULL);
        if (hit && who.len > 0 && (imsi_param[0] == '\0' || strcmp(imsi_param, who.data) == 0)) {
            copy_str(c->imsi, sizeof(c->imsi), who.data);
            ent_buf_free(&who);
            token_accepted(c, c->imsi, (uint64_t)exp_unix);
            return;
        }
        ent_buf_free(&who);
    }
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__TokenVerifyRequest tv = ENTITLE__V1__TOKEN_VERIFY_REQUEST__INIT;
    tv.token = c->token;
    tv.imsi = (char *)imsi_param;
    req.body_case = ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY;
    req.token_verify = &tv;
    c->epoch = gw_cache_epoch(&g->tokens);
    ent_err rc =
        ent_bus_call(&sh->authd, &req, g->cfg->upstream_timeout, c->trace, on_verify_reply, c);
    if (rc != ENT_OK)
        fail_backend(c, rc, "authd");
}

/* ---- the HTTP handler ---------------------------------------------------------------------- */

static void copy_request_context(struct gw_call *c)
{
    struct gw_req *r = &c->req;
    c->n_apps = r->n_apps;
    for (size_t i = 0; i < r->n_apps; i++)
        memcpy(c->apps[i], r->apps[i], GW_APP_LEN + 1);
    c->format = r->format;
    copy_str(c->vers, sizeof(c->vers), r->p[GW_P_VERS]);
    copy_str(c->ent_version, sizeof(c->ent_version),
             r->has[GW_P_ENTITLEMENT_VERSION] ? r->p[GW_P_ENTITLEMENT_VERSION] : "2.0");
    copy_str(c->terminal_id, sizeof(c->terminal_id), r->p[GW_P_TERMINAL_ID]);
    copy_str(c->vendor, sizeof(c->vendor), r->p[GW_P_TERMINAL_VENDOR]);
    copy_str(c->model, sizeof(c->model), r->p[GW_P_TERMINAL_MODEL]);
    copy_str(c->sw, sizeof(c->sw), r->p[GW_P_TERMINAL_SW_VERSION]);
    set_odsa(c, r->p[GW_P_OPERATION]);
}

static void on_request(struct ent_http_server *srv, struct ent_http_request *http, void *ud)
{
    struct gw_shard *sh = ud;
    struct gw *g = sh->g;
    struct gw_call *c = malloc(sizeof(*c));
    if (c == NULL) {
        ent_http_respond(srv, http->id, 503, NULL, 0, "", 0);
        return;
    }
    memset(c, 0, offsetof(struct gw_call, req));
    c->req.n_apps = 0;
    c->req.kind = GW_REQ_NOAUTH;
    for (int i = 0; i < GW_P_COUNT_; i++)
        c->req.p[i] = "";
    memset(c->req.has, 0, sizeof(c->req.has));
    c->sh = sh;
    c->http_id = http->id;
    c->start_ns = http->start_ns ? http->start_ns : ent_now_ns();
    c->tls = http->tls;
    c->kind = CK_BAD;
    snprintf(c->trace, sizeof(c->trace), "g%u-%llx", sh->index, (unsigned long long)++sh->seq);
    peer_ip(http->peer, c->peer_ip, sizeof(c->peer_ip));
    atomic_fetch_add(&sh->inflight, 1);
    ent_gauge_inc(&inflight_gauge);

    if (http->path_len != strlen(g->cfg->device_path) ||
        memcmp(http->path, g->cfg->device_path, http->path_len) != 0) {
        fail(c, 404, "not_found", "bad_request", "path");
        return;
    }
    if (g->cfg->device_plmn_header && g->cfg->device_plmn_header[0]) {
        size_t n = 0;
        const char *v = ent_http_request_header(http, g->cfg->device_plmn_header, &n);
        bool ok = v && (n == 5 || n == 6);
        for (size_t i = 0; ok && i < n; i++)
            ok = isdigit((unsigned char)v[i]);
        if (ok) {
            memcpy(c->plmn, v, n);
            c->plmn[n] = '\0';
        }
    }
    unsigned retry = 0;
    if (!gw_ratelimit_take(&g->rl_ip, c->peer_ip, &retry)) {
        fail(c, 429, "rate_limited", "rate_limited", "client_ip");
        return;
    }
    struct gw_req_error err;
    if (gw_req_parse(&c->req, &err, http) != ENT_OK) {
        ENT_LOG_WARN(c->trace, "gateway.bad_request", ENT_KV_STR("reason", err.reason),
                     ENT_KV_STR("field", err.field ? err.field : "-"),
                     ENT_KV_STR("method", http->method), ENT_KV_STR("peer", c->peer_ip));
        c->req.n_apps = 0;
        fail(c, err.status, "bad_request", "bad_request", err.reason);
        return;
    }
    switch (c->req.kind) {
    case GW_REQ_EAP_START:
        c->kind = CK_EAP_START;
        copy_request_context(c);
        start_eap(c);
        break;
    case GW_REQ_EAP_RESPONSE:
        c->kind = CK_EAP_RESPONSE;
        c->format = c->req.format;
        continue_eap(c);
        break;
    case GW_REQ_TOKEN:
        c->kind = CK_TOKEN;
        copy_request_context(c);
        start_token(c, c->req.p[GW_P_TOKEN]);
        break;
    case GW_REQ_TEMP_TOKEN:
        c->kind = CK_TEMP;
        copy_request_context(c);
        if (c->acquire_temp) { /* a temporary token cannot mint another */
            c->acquire_temp = false;
            c->odsa = GW_ODSA_INVALID;
        }
        start_token(c, c->req.p[GW_P_TEMPORARY_TOKEN]);
        break;
    default:
        /* No EAP_ID, token or temporary token: TS.43 §2.10 "token missing" (511). */
        c->kind = CK_NOAUTH;
        fail(c, 511, "no_auth", "auth", "no_credentials");
        break;
    }
}

/* ---- shard life cycle ------------------------------------------------------------------------ */

static void on_shard_http_closed(struct ent_http_server *srv)
{
    (void)srv;
}

static void on_shard_bus_closed(struct ent_bus_client *c)
{
    (void)c;
}

static void on_shard_async_closed(uv_handle_t *h)
{
    (void)h;
}

static void shard_close(struct gw_shard *sh)
{
    if (sh->closing)
        return;
    sh->closing = true;
    if (sh->http_open)
        ent_http_server_close(&sh->http, on_shard_http_closed);
    if (sh->authd_open)
        ent_bus_client_close(&sh->authd, on_shard_bus_closed);
    if (sh->policyd_open)
        ent_bus_client_close(&sh->policyd, on_shard_bus_closed);
    uv_close((uv_handle_t *)&sh->wake, on_shard_async_closed);
}

static void on_shard_wake(uv_async_t *a)
{
    struct gw_shard *sh = a->data;
    pthread_mutex_lock(&sh->tls_mu);
    SSL_CTX *ctx = sh->pending_tls;
    sh->pending_tls = NULL;
    pthread_mutex_unlock(&sh->tls_mu);
    if (ctx) {
        if (sh->http_open && !sh->closing)
            ent_http_server_set_tls(&sh->http, ctx);
        SSL_CTX_free(ctx);
    }
    if (atomic_load(&sh->want_drain) && sh->http_open && !sh->closing)
        ent_http_server_stop_accepting(&sh->http);
    if (atomic_load(&sh->want_close))
        shard_close(sh);
}

static ent_err shard_open(struct gw_shard *sh)
{
    struct gw *g = sh->g;
    struct gw_cfg *cfg = g->cfg;
    char host[128], listen[160];
    int port = 0;
    ent_err rc = ent_parse_hostport(cfg->device_listen, host, sizeof(host), &port);
    if (rc != ENT_OK)
        return rc;
    if (sh->port >= 0)
        port = sh->port;
    snprintf(listen, sizeof(listen), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    struct ent_http_server_cfg hc = {
        .listen = listen,
        .max_url = cfg->device_max_url,
        .max_header_bytes = cfg->device_max_headers,
        .max_body = cfg->device_max_body,
        .max_connections = (size_t)cfg->device_max_connections,
        .read_timeout_ms = cfg->device_read_timeout,
        .idle_timeout_ms = cfg->device_idle_timeout,
        .write_timeout_ms = cfg->device_write_timeout,
        .reuseport = true,
        .tls = g->tls,
        .name = "device",
    };
    rc = ent_http_server_init(&sh->http, &sh->loop, &hc, on_request, sh);
    if (rc != ENT_OK)
        return rc;
    sh->http_open = true;
    struct ent_bus_tls_cfg tls_storage;
    const struct ent_bus_tls_cfg *btls = ent_daemon_bus_tls(g->daemon, &tls_storage);
    for (int w = 0; w < 2; w++) {
        struct gw_cfg *c = cfg;
        enum gw_worker kind = w == 0 ? GW_WORKER_AUTHD : GW_WORKER_POLICYD;
        if (c->upstream[kind].n == 0)
            return ENT_ECONFIG;
        struct ent_bus_client_cfg bc = {
            .addrs = (const char *const *)c->upstream[kind].items,
            .n_addrs = c->upstream[kind].n,
            .max_inflight = (unsigned)c->upstream_max_inflight,
            .tls = btls,
            .caller = "gateway",
            /* authd: never resend AuthStart/AuthContinue (a resent AuthContinue comes back
             * as "replay"); the deadline decides instead. policyd's RPCs are idempotent. */
            .resend_ms = kind == GW_WORKER_AUTHD ? c->upstream_timeout * 2 + 1000 : 0,
        };
        struct ent_bus_client *bcl = kind == GW_WORKER_AUTHD ? &sh->authd : &sh->policyd;
        rc = ent_bus_client_init(bcl, &sh->loop, &bc);
        if (rc != ENT_OK)
            return rc;
        if (kind == GW_WORKER_AUTHD)
            sh->authd_open = true;
        else
            sh->policyd_open = true;
    }
    return ENT_OK;
}

static void shard_main(void *arg)
{
    struct gw_shard *sh = arg;
    sh->start_rc = shard_open(sh);
    if (sh->start_rc == ENT_OK)
        sh->port = ent_http_server_port(&sh->http);
    uv_sem_post(&sh->started);
    if (sh->start_rc != ENT_OK)
        shard_close(sh);
    uv_run(&sh->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&sh->loop) != 0)
        ENT_LOG_ERROR(NULL, "gateway.shard_loop_busy", ENT_KV_U64("shard", sh->index));
}

static ent_err shard_start(struct gw *g, struct gw_shard *sh, unsigned index, int port)
{
    sh->g = g;
    sh->index = index;
    sh->port = port;
    pthread_mutex_init(&sh->tls_mu, NULL);
    atomic_init(&sh->inflight, 0);
    atomic_init(&sh->want_drain, false);
    atomic_init(&sh->want_close, false);
    if (uv_loop_init(&sh->loop) != 0)
        return ENT_ENOMEM;
    uv_async_init(&sh->loop, &sh->wake, on_shard_wake);
    sh->wake.data = sh;
    uv_sem_init(&sh->started, 0);
    if (uv_thread_create(&sh->thread, shard_main, sh) != 0) {
        uv_close((uv_handle_t *)&sh->wake, NULL);
        uv_run(&sh->loop, UV_RUN_DEFAULT);
        uv_loop_close(&sh->loop);
        uv_sem_destroy(&sh->started);
        return ENT_ENOMEM;
    }
    sh->thread_started = true;
    uv_sem_wait(&sh->started);
    uv_sem_destroy(&sh->started);
    if (sh->start_rc != ENT_OK) {
        uv_thread_join(&sh->thread);
        sh->thread_started = false;
        return sh->start_rc;
    }
    return ENT_OK;
}

static ent_err load_tls(struct gw *g, SSL_CTX **out)
{
    char err[256] = "";
    struct gw_cfg *cfg = g->cfg;
    if (!cfg->device_tls_cert || !cfg->device_tls_key) {
        ENT_LOG_ERROR(
            NULL, "gateway.tls_config",
            ENT_KV_STR("reason", "device.tls is on: set device.tls_cert and device.tls_key"));
        return ENT_ECONFIG;
    }
    ent_err rc = ent_tls_server_ctx_new(out, cfg->device_tls_cert, cfg->device_tls_key, NULL, err,
                                        sizeof(err));
    if (rc != ENT_OK)
        ENT_LOG_ERROR(NULL, "gateway.tls_load_failed", ENT_KV_STR("reason", err));
    return rc;
}

ent_err gw_frontend_start(struct gw *g)
{
    struct gw_cfg *cfg = g->cfg;
    ent_err rc;
    if (cfg->device_tls) {
        rc = load_tls(g, &g->tls);
        if (rc != ENT_OK)
            return ENT_ECONFIG;
    }
    size_t n = cfg->device_loops > 0 ? (size_t)cfg->device_loops : 0;
    if (n == 0) {
        uv_cpu_info_t *ci;
        int count = 0;
        n = uv_cpu_info(&ci, &count) == 0 && count > 0 ? (size_t)count : 1;
        if (count > 0)
            uv_free_cpu_info(ci, count);
    }
    g->shards = calloc(n, sizeof(*g->shards));
    if (g->shards == NULL)
        return ENT_ENOMEM;
    int port = -1;
    for (size_t i = 0; i < n; i++) {
        rc = shard_start(g, &g->shards[i], (unsigned)i, port);
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "gateway.device_listen_failed",
                          ENT_KV_STR("listen", cfg->device_listen),
                          ENT_KV_STR("reason", ent_strerror(rc)));
            g->n_shards = i;
            gw_frontend_stop(g);
            return rc;
        }
        port = g->shards[i].port;
        g->n_shards = i + 1;
    }
    g->device_port = port;
    ENT_LOG_INFO(NULL, "gateway.device_listening", ENT_KV_STR("listen", cfg->device_listen),
                 ENT_KV_I64("port", port), ENT_KV_U64("loops", n),
                 ENT_KV_BOOL("tls", g->tls != NULL), ENT_KV_STR("path", cfg->device_path));
    return ENT_OK;
}

void gw_frontend_drain(struct gw *g)
{
    for (size_t i = 0; i < g->n_shards; i++) {
        atomic_store(&g->shards[i].want_drain, true);
        uv_async_send(&g->shards[i].wake);
    }
}

size_t gw_frontend_inflight(struct gw *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n_shards; i++)
        n += atomic_load(&g->shards[i].inflight);
    return n;
}

void gw_frontend_stop(struct gw *g)
{
    for (size_t i = 0; i < g->n_shards; i++) {
        struct gw_shard *sh = &g->shards[i];
        if (!sh->thread_started)
            continue;
        atomic_store(&sh->want_close, true);
        uv_async_send(&sh->wake);
        uv_thread_join(&sh->thread);
        sh->thread_started = false;
        pthread_mutex_lock(&sh->tls_mu);
        if (sh->pending_tls)
            SSL_CTX_free(sh->pending_tls);
        sh->pending_tls = NULL;
        pthread_mutex_unlock(&sh->tls_mu);
        pthread_mutex_destroy(&sh->tls_mu);
    }
    free(g->shards);
    g->shards = NULL;
    g->n_shards = 0;
    g->device_port = 0;
}

void gw_frontend_reload_tls(struct gw *g)
{
    if (!g->cfg->device_tls || g->n_shards == 0)
        return;
    SSL_CTX *ctx = NULL;
    if (load_tls(g, &ctx) != ENT_OK) {
        ent_counter_inc(&tls_reloads, "failed");
        ENT_LOG_WARN(NULL, "gateway.tls_reload_failed",
                     ENT_KV_STR("effect", "old certificate kept"));
        return;
    }
    for (size_t i = 0; i < g->n_shards; i++) {
        struct gw_shard *sh = &g->shards[i];
        SSL_CTX_up_ref(ctx);
        pthread_mutex_lock(&sh->tls_mu);
        if (sh->pending_tls)
            SSL_CTX_free(sh->pending_tls);
        sh->pending_tls = ctx;
        pthread_mutex_unlock(&sh->tls_mu);
        uv_async_send(&sh->wake);
    }
    if (g->tls)
        SSL_CTX_free(g->tls);
    g->tls = ctx;
    ent_counter_inc(&tls_reloads, "ok");
    ENT_LOG_INFO(NULL, "gateway.tls_reloaded", ENT_KV_STR("cert", g->cfg->device_tls_cert));
}
