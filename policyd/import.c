/* SPDX-License-Identifier: Apache-2.0 */
/* POST /v1/import: NDJSON bulk provisioning. Each non-blank line is a subscriber in the
 * POST /v1/subscribers shape (plus optional "replace_credentials": true); each gets one
 * result line, in input order:
 *
 *   {"line":3,"imsi":"001010000000003","result":"created","status":201}
 *   {"line":4,"result":"error","status":422,"field":"imsi","message":"must be 6-15 digits"}
 *
 * followed by one summary line {"summary":{"lines":..,"created":..,"rate_per_s":..}}.
 * Re-importing the same file is idempotent: a subscriber whose profile is unchanged is
 * "unchanged" (no write, no event), a changed one is "updated"; the credentials of an
 * existing subscriber are left alone unless the line says "replace_credentials": true,
 * so a re-import never resets a live SQN.
 *
 * Lines are processed by a pump on the loop (a zero timer, at most PUMP_BATCH lines per
 * turn so other admin requests still get served) with at most import.concurrency authd
 * calls in flight. The HTTP core hands complete bodies and sends complete responses, so
 * the result stream is sent when the last line is done; entitlectl streams large files by
 * sending them in chunks (admin.max_body bounds one request). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "admin.h"
#include "ent/metrics.h"

#define PUMP_BATCH 500

static ent_counter import_lines =
    ENT_COUNTER("entitle_policyd_import_lines_total", "Imported NDJSON lines by result", "result");
static ent_gauge import_rate = ENT_GAUGE("entitle_policyd_import_rate_lines_per_second",
                                         "Lines per second of the last completed import");

struct pd_import {
    struct pd_import *next;
    struct policyd *p;
    uint64_t id;
    char *body;
    size_t len, pos;
    size_t line_no;
    char **results; /* indexed by line number - 1; NULL for blank lines */
    size_t n_results, cap_results;
    size_t inflight;
    size_t counts[4]; /* created, updated, unchanged, failed */
    uint64_t start_ns;
    uv_timer_t pump;
    bool pump_open, aborted, answered;
};

enum { R_CREATED, R_UPDATED, R_UNCHANGED, R_FAILED };
static const char *const result_names[] = {"created", "updated", "unchanged", "error"};

struct line_call {
    struct pd_import *im;
    size_t line;
    struct pd_subscriber sub;
    bool exists;
    uint64_t expected;
};

static void import_pump_schedule(struct pd_import *im);

static void set_result(struct pd_import *im, size_t line, int r, const char *imsi, int status,
                       const struct pd_verr *e)
{
    json_t *j = json_pack("{s:I,s:s,s:i}", "line", (json_int_t)line, "result", result_names[r],
                          "status", status);
    if (j && imsi && imsi[0])
        json_object_set_new(j, "imsi", json_string(imsi));
    if (j && e) {
        if (e->field[0])
            json_object_set_new(j, "field", json_string(e->field));
        json_object_set_new(j, "message", json_string(e->reason));
    }
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (line - 1 < im->n_results) {
        free(im->results[line - 1]);
        im->results[line - 1] = text;
    } else {
        free(text);
    }
    im->counts[r]++;
    ent_counter_inc(&import_lines, result_names[r]);
}

static void verr_set(struct pd_verr *e, int status, const char *field, const char *reason)
{
    e->status = status;
    snprintf(e->field, sizeof(e->field), "%s", field);
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

/* Writes the subscriber (insert or compare-and-set) and records the line's result. */
static void line_commit(struct pd_import *im, size_t line, struct pd_subscriber *s, bool exists,
                        uint64_t expected)
{
    struct policyd *p = im->p;
    ent_err rc = pd_subscriber_put(p->store, s, exists ? expected : 0);
    if (rc != ENT_OK) {
        struct pd_verr e;
        verr_set(&e, ent_err_http_status(rc), "", ent_strerror(rc));
        set_result(im, line, R_FAILED, s->imsi, e.status, &e);
        return;
    }
    pd_events_publish(p, ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER, s->imsi,
                      pd_effective_version(s, p->policy.generation), s->token_generation);
    set_result(im, line, exists ? R_UPDATED : R_CREATED, s->imsi, exists ? 200 : 201, NULL);
}

static void on_line_credentials(struct policyd *p, ent_err rc, bool answered,
                                const Entitle__V1__Response *resp, void *ud)
{
    struct line_call *lc = ud;
    struct pd_import *im = lc->im;
    (void)p;
    (void)resp;
    im->inflight--;
    if (rc != ENT_OK) {
        struct pd_verr e;
        char msg[120];
        snprintf(msg, sizeof(msg), "authd %s %s; subscriber not written",
                 answered ? "answered" : "unreachable:", ent_err_name(rc));
        verr_set(&e, answered ? 502 : 503, "k", msg);
        set_result(im, lc->line, R_FAILED, lc->sub.imsi, e.status, &e);
    } else if (!im->aborted) {
        line_commit(im, lc->line, &lc->sub, lc->exists, lc->expected);
    }
    free(lc);
    import_pump_schedule(im);
}

/* Profile equality for idempotent re-import: everything but versions and timestamps. */
static bool same_profile(const struct pd_subscriber *a, const struct pd_subscriber *b)
{
    struct pd_subscriber x = *a, y = *b;
    x.version = y.version = 0;
    x.created_ms = y.created_ms = x.updated_ms = y.updated_ms = 0;
    x.token_generation = y.token_generation = 0;
    json_t *ja = pd_subscriber_to_json(&x), *jb = pd_subscriber_to_json(&y);
    bool same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

static void line_process(struct pd_import *im, size_t line, const char *text, size_t len)
{
    struct policyd *p = im->p;
    struct pd_verr e = {0};
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        verr_set(&e, 400, "body", "line is not a JSON object");
        set_result(im, line, R_FAILED, NULL, 400, &e);
        return;
    }
    bool replace = false;
    json_t *rv = json_object_get(j, "replace_credentials");
    if (rv && !json_is_boolean(rv)) {
        verr_set(&e, 400, "replace_credentials", "must be true or false");
    } else {
        replace = json_is_true(rv);
        json_object_del(j, "replace_credentials");
    }
    struct pd_credentials cred;
    bool has = false;
    struct pd_subscriber s;
    bool ok = e.status == 0 && pd_admin_take_credentials(j, &cred, &has, &e) &&
              pd_subscriber_from_json(j, false, &s, &e);
    json_decref(j);
    if (ok && s.plan[0] && strcmp(s.plan, p->cfg->default_plan) != 0 &&
        !pd_policy_plan(&p->policy, s.plan)) {
        verr_set(&e, 422, "plan", "no such plan");
        ok = false;
    }
    struct pd_subscriber cur;
    ent_err rc = ok ? pd_subscriber_get(p->store, s.imsi, &cur) : ENT_OK;
    bool exists = rc == ENT_OK;
    if (ok && rc != ENT_OK && rc != ENT_ENOTFOUND) {
        verr_set(&e, ent_err_http_status(rc), "", ent_strerror(rc));
        ok = false;
    }
    if (ok && !exists && !has && p->cfg->credentials_required) {
        verr_set(&e, 422, "k", "required (credentials.required is on)");
        ok = false;
    }
    if (!ok) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        set_result(im, line, R_FAILED, NULL, e.status, &e);
        return;
    }
    uint64_t now = ent_wall_ms();
    if (exists) {
        s.created_ms = cur.created_ms;
        s.token_generation = cur.token_generation;
        s.updated_ms = (int64_t)now;
        if (same_profile(&s, &cur) && !(has && replace)) {
            OPENSSL_cleanse(&cred, sizeof(cred));
            set_result(im, line, R_UNCHANGED, s.imsi, 200, NULL);
            return;
        }
    } else {
        s.created_ms = s.updated_ms = (int64_t)now;
    }
    if (!has || (exists && !replace)) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        line_commit(im, line, &s, exists, cur.version);
        return;
    }
    struct line_call *lc = malloc(sizeof(*lc));
    if (!lc) {
        OPENSSL_cleanse(&cred, sizeof(cred));
        verr_set(&e, 500, "", "out of memory");
        set_result(im, line, R_FAILED, s.imsi, 500, &e);
        return;
    }
    *lc = (struct line_call){
        .im = im, .line = line, .sub = s, .exists = exists, .expected = exists ? cur.version : 0};
    rc = pd_authd_credential_put(p, s.imsi, &cred, on_line_credentials, lc);
    OPENSSL_cleanse(&cred, sizeof(cred));
    if (rc != ENT_OK) {
        free(lc);
        verr_set(&e, 503, "k", "authd unavailable; subscriber not written");
        set_result(im, line, R_FAILED, s.imsi, 503, &e);
        return;
    }
    im->inflight++;
}

static void import_free(struct pd_import *im)
{
    struct pd_import **pp = &im->p->imports;
    while (*pp && *pp != im)
        pp = &(*pp)->next;
    if (*pp)
        *pp = im->next;
    for (size_t i = 0; i < im->n_results; i++)
        free(im->results[i]);
    free(im->results);
    OPENSSL_cleanse(im->body, im->len);
    free(im->body);
    free(im);
}

static void on_pump_closed(uv_handle_t *h)
{
    struct pd_import *im = h->data;
    struct policyd *p = im->p;
    im->pump_open = false;
    if (im->inflight == 0)
        import_free(im);
    pd_core_handle_closed(p);
}

static void import_finish(struct pd_import *im)
{
    struct policyd *p = im->p;
    double secs = (double)(ent_now_ns() - im->start_ns) / 1e9;
    size_t done = im->counts[0] + im->counts[1] + im->counts[2] + im->counts[3];
    double rate = secs > 0 ? (double)done / secs : 0.0;
    ent_gauge_set(&import_rate, rate);
    struct ent_buf out;
    ent_buf_init(&out, (size_t)1 << 31);
    for (size_t i = 0; i < im->n_results; i++) {
        if (!im->results[i])
            continue;
        ent_buf_append_str(&out, im->results[i]);
        ent_buf_append_char(&out, '\n');
    }
    ent_buf_printf(&out,
                   "{\"summary\":{\"lines\":%zu,\"created\":%zu,\"updated\":%zu,\"unchanged\":%zu,"
                   "\"failed\":%zu,\"seconds\":%.3f,\"rate_per_s\":%.1f}}\n",
                   done, im->counts[0], im->counts[1], im->counts[2], im->counts[3], secs, rate);
    ENT_LOG_INFO(NULL, "policyd.import_done", ENT_KV_U64("lines", done),
                 ENT_KV_U64("created", im->counts[0]), ENT_KV_U64("updated", im->counts[1]),
                 ENT_KV_U64("unchanged", im->counts[2]), ENT_KV_U64("failed", im->counts[3]),
                 ENT_KV_DBL("rate_per_s", rate));
    struct ent_http_header h[] = {{"Content-Type", 12, "application/x-ndjson", 20}};
    int status =
        im->counts[3] && !(im->counts[0] + im->counts[1] + im->counts[2]) && done ? 422 : 200;
    if (done == 0)
        status = 400;
    pd_admin_count("/v1/import", "POST", status);
    ent_http_respond(&p->admin, im->id, status, h, 1, out.data ? out.data : "",
                     out.data ? out.len : 0);
    ent_buf_free(&out);
    im->answered = true;
}

static void on_pump(uv_timer_t *t)
{
    struct pd_import *im = t->data;
    struct policyd *p = im->p;
    unsigned window = (unsigned)p->cfg->import_concurrency;
    size_t budget = PUMP_BATCH;
    if (!im->aborted && policyd_policy_refresh(p) != ENT_OK)
        budget = 0; /* try again next turn */
    while (!im->aborted && budget && im->pos < im->len && im->inflight < window) {
        char *nl = memchr(im->body + im->pos, '\n', im->len - im->pos);
        size_t end = nl ? (size_t)(nl - im->body) : im->len;
        size_t ll = end - im->pos;
        im->line_no++;
        const char *text = im->body + im->pos;
        bool blank = true;
        for (size_t i = 0; i < ll && blank; i++)
            blank = text[i] == ' ' || text[i] == '\t' || text[i] == '\r';
        if (!blank)
            line_process(im, im->line_no, text, ll);
        im->pos = end + 1;
        budget--;
    }
    if (im->aborted) {
        if (im->inflight == 0 && im->pump_open && !uv_is_closing((uv_handle_t *)&im->pump))
            uv_close((uv_handle_t *)&im->pump, on_pump_closed);
        return;
    }
    if (im->pos >= im->len && im->inflight == 0) {
        import_finish(im);
        uv_close((uv_handle_t *)&im->pump, on_pump_closed);
        return;
    }
    if (im->pos < im->len && im->inflight < window)
        uv_timer_start(&im->pump, on_pump, 0, 0);
    /* else: an authd reply schedules the next turn */
}

static void import_pump_schedule(struct pd_import *im)
{
    if (im->pump_open && !uv_is_closing((uv_handle_t *)&im->pump))
        uv_timer_start(&im->pump, on_pump, 0, 0);
    else if (!im->pump_open && im->inflight == 0)
        import_free(im);
}

void pd_import_start(struct policyd *p, uint64_t id, const char *body, size_t len)
{
    struct pd_import *im = calloc(1, sizeof(*im));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += body[i] == '\n';
    if (im) {
        im->body = malloc(len + 1);
        im->results = calloc(lines, sizeof(*im->results));
    }
    if (!im || !im->body || !im->results) {
        if (im) {
            free(im->body);
            free(im->results);
        }
        free(im);
        pd_admin_respond_error(p, id, "/v1/import", "POST", 500, "internal", NULL, "out of memory");
        return;
    }
    memcpy(im->body, body, len);
    im->body[len] = '\0';
    im->len = len;
    im->n_results = im->cap_results = lines;
    im->p = p;
    im->id = id;
    im->start_ns = ent_now_ns();
    uv_timer_init(p->loop, &im->pump);
    im->pump.data = im;
    im->pump_open = true;
    p->closing++; /* the pump handle; policyd_core_close() waits for it */
    im->next = p->imports;
    p->imports = im;
    uv_timer_start(&im->pump, on_pump, 0, 0);
}

size_t pd_import_inflight(const struct policyd *p)
{
    size_t n = 0;
    for (const struct pd_import *im = p->imports; im; im = im->next)
        n++;
    return n;
}

void pd_import_close_all(struct policyd *p)
{
    for (struct pd_import *im = p->imports; im; im = im->next) {
        im->aborted = true;
        if (im->pump_open && !uv_is_closing((uv_handle_t *)&im->pump))
            uv_close((uv_handle_t *)&im->pump, on_pump_closed);
    }
}
