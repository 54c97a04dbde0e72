/* SPDX-License-Identifier: Apache-2.0 */
/* POST /v1/import: NDJSON bulk provisioning, streamed both ways. Each non-blank line is a
 * subscriber in the POST /v1/subscribers shape (plus optional "replace_credentials":
 * true); each gets one result line, in input order, sent as soon as it and every line
 * before it are known:
 *
 *   {"line":3,"imsi":"001010000000003","result":"created","status":201}
 *   {"line":4,"result":"error","status":422,"field":"imsi","message":"must be 6-15 digits"}
 *
 * followed by one summary line {"summary":{"lines":..,"created":..,"rate_per_s":..}}.
 * Re-importing the same file is idempotent: a subscriber whose profile is unchanged is
 * "unchanged" (no write, no event), a changed one is "updated"; the credentials of an
 * existing subscriber are left alone unless the line says "replace_credentials": true,
 * so a re-import never resets a live SQN. A bad line (malformed JSON, a field, authd
 * refusing its credentials, a line over IMPORT_MAX_LINE) is an error result; the import
 * goes on.
 *
 * Flow (all on the loop): the HTTP core streams the body in (pd_admin_stream_select claims
 * the route) into `in`; a pump (a zero timer, at most PUMP_BATCH lines per turn so other
 * admin requests still get served) cuts lines and processes them with at most
 * import.concurrency authd calls in flight. Results wait in a ring of IMPORT_WINDOW slots
 * until every earlier line is done, then go out as one chunk per turn. Memory is bounded
 * whatever the body size:
 *   - body bytes waiting to be cut: the body is paused above IMPORT_IN_HIGH;
 *   - lines between the oldest unfinished one and the newest: IMPORT_WINDOW;
 *   - results queued for a client that reads only after sending (most do): the pump stops
 *     above IMPORT_OUT_MAX and continues on drain (the HTTP core times the client out if
 *     it never reads).
 * The response starts (200) with the first result; a body without any line is a 400. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "admin.h"
#include "ent/metrics.h"

#define PUMP_BATCH      500
#define IMPORT_MAX_LINE 65536              /* one NDJSON line */
#define IMPORT_IN_HIGH  (256 * 1024)       /* uncut body bytes before the body is paused */
#define IMPORT_WINDOW   4096               /* lines from the oldest unfinished one */
#define IMPORT_OUT_MAX  (32 * 1024 * 1024) /* results queued for the client */

/* A finished blank line: no result line. */
static char blank_result[] = "";

static ent_counter import_lines =
    ENT_COUNTER("entitle_policyd_import_lines_total", "Imported NDJSON lines by result", "result");
static ent_gauge import_rate = ENT_GAUGE("entitle_policyd_import_rate_lines_per_second",
                                         "Lines per second of the last completed import");

struct pd_import {
    struct pd_import *next;
    struct policyd *p;
    uint64_t id;
    struct ent_buf in; /* body bytes not yet cut into lines, from in_off */
    size_t in_off;
    size_t line_no;            /* lines cut so far */
    size_t emit_next;          /* first line whose result is not yet written */
    char *ring[IMPORT_WINDOW]; /* results by line % IMPORT_WINDOW; NULL: pending */
    struct ent_buf out;        /* result lines for the next chunk */
    size_t inflight;
    size_t counts[4]; /* created, updated, unchanged, failed */
    uint64_t start_ns;
    uv_timer_t pump;
    bool pump_open, aborted, answered;
    bool streamed, body_done, body_paused, skipping, started, out_blocked;
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
    /* line is in [emit_next, line_no], which never spans more than the ring. */
    char **slot = &im->ring[line % IMPORT_WINDOW];
    if (*slot && *slot != blank_result)
        free(*slot);
    /* Out of memory for the text: the line still counts, and gets a fixed result. */
    *slot = text ? text : strdup("{\"result\":\"error\",\"message\":\"out of memory\"}");
    if (!*slot)
        *slot = blank_result;
    im->counts[r]++;
    ent_counter_inc(&import_lines, result_names[r]);
}

static void verr_set(struct pd_verr *e, int status, const char *field, const char *reason)
{
    e->status = status;
    snprintf(e->field, sizeof(e->field), "%s", field);
    size_t n = strnlen(reason, sizeof(e->reason) - 1); /* long parser messages are cut */
    memcpy(e->reason, reason, n);
    e->reason[n] = '\0';
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
        char msg[200];
        if (!j)
            snprintf(msg, sizeof(msg), "malformed JSON at column %d: %s", je.column, je.text);
        else
            snprintf(msg, sizeof(msg), "line is not a JSON object");
        json_decref(j);
        verr_set(&e, 400, "body", msg);
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
    for (size_t i = 0; i < IMPORT_WINDOW; i++)
        if (im->ring[i] && im->ring[i] != blank_result)
            free(im->ring[i]);
    if (im->in.data) /* lines carry K and OPc */
        OPENSSL_cleanse(im->in.data, im->in.cap);
    ent_buf_free(&im->in);
    ent_buf_free(&im->out);
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

/* Stops for good: the pump closes, and the import is freed once its authd calls are back. */
static void import_stop(struct pd_import *im)
{
    im->aborted = true;
    if (im->pump_open && !uv_is_closing((uv_handle_t *)&im->pump))
        uv_close((uv_handle_t *)&im->pump, on_pump_closed);
}

/* Writes the collected result lines as one chunk (starting the response first). false if
 * the client is gone. */
static bool import_flush(struct pd_import *im)
{
    struct policyd *p = im->p;
    if (im->out.len == 0)
        return true;
    ent_err rc = ENT_OK;
    if (!im->started) {
        struct ent_http_header h[] = {{"Content-Type", 12, "application/x-ndjson", 20}};
        rc = ent_http_respond_start(&p->admin, im->id, 200, h, 1);
        im->started = rc == ENT_OK;
        if (im->started)
            pd_admin_count("/v1/import", "POST", 200);
    }
    if (rc == ENT_OK)
        rc = ent_http_respond_chunk(&p->admin, im->id, im->out.data, im->out.len);
    ent_buf_reset(&im->out);
    if (rc == ENT_ESATURATED && ent_http_response_queued(&p->admin, im->id) > IMPORT_OUT_MAX)
        im->out_blocked = true; /* on_import_drain resumes */
    return rc == ENT_OK || rc == ENT_ESATURATED;
}

/* Moves finished results, in line order, to `out`. */
static void import_emit(struct pd_import *im)
{
    while (im->emit_next <= im->line_no) {
        char **slot = &im->ring[im->emit_next % IMPORT_WINDOW];
        if (!*slot)
            break;
        if (*slot != blank_result) {
            ent_buf_append_str(&im->out, *slot);
            ent_buf_append_char(&im->out, '\n');
            free(*slot);
        }
        *slot = NULL;
        im->emit_next++;
    }
}

static void import_finish(struct pd_import *im)
{
    struct policyd *p = im->p;
    double secs = (double)(ent_now_ns() - im->start_ns) / 1e9;
    size_t done = im->counts[0] + im->counts[1] + im->counts[2] + im->counts[3];
    double rate = secs > 0 ? (double)done / secs : 0.0;
    ent_gauge_set(&import_rate, rate);
    ENT_LOG_INFO(NULL, "policyd.import_done", ENT_KV_U64("lines", done),
                 ENT_KV_U64("created", im->counts[0]), ENT_KV_U64("updated", im->counts[1]),
                 ENT_KV_U64("unchanged", im->counts[2]), ENT_KV_U64("failed", im->counts[3]),
                 ENT_KV_DBL("rate_per_s", rate));
    im->answered = true;
    if (done == 0 && !im->started) {
        pd_admin_respond_error(p, im->id, "/v1/import", "POST", 400, "validation", "body",
                               "no NDJSON line in the body");
        return;
    }
    ent_buf_printf(&im->out,
                   "{\"summary\":{\"lines\":%zu,\"created\":%zu,\"updated\":%zu,\"unchanged\":%zu,"
                   "\"failed\":%zu,\"seconds\":%.3f,\"rate_per_s\":%.1f}}\n",
                   done, im->counts[0], im->counts[1], im->counts[2], im->counts[3], secs, rate);
    if (import_flush(im))
        ent_http_respond_end(&p->admin, im->id);
}

/* The next line of `in` into *text and *len (not NUL-terminated); false if none is complete
 * yet. Over-long lines become an error result and are skipped to their newline. */
static bool import_next_line(struct pd_import *im, const char **text, size_t *len)
{
    for (;;) {
        const char *base = im->in.data ? im->in.data + im->in_off : "";
        size_t avail = im->in.len - im->in_off;
        const char *nl = avail ? memchr(base, '\n', avail) : NULL;
        if (im->skipping) {
            im->in_off += nl ? (size_t)(nl - base) + 1 : avail;
            if (!nl)
                return false;
            im->skipping = false;
            continue;
        }
        size_t ll = nl ? (size_t)(nl - base) : avail;
        if (ll > IMPORT_MAX_LINE) {
            struct pd_verr e;
            im->line_no++;
            verr_set(&e, 413, "body", "line longer than 65536 bytes");
            set_result(im, im->line_no, R_FAILED, NULL, 413, &e);
            im->skipping = true;
            continue;
        }
        if (!nl && !(im->body_done && avail > 0))
            return false;
        *text = base;
        *len = ll;
        im->in_off += nl ? ll + 1 : ll;
        return true;
    }
}

/* Keeps `in` compact and the body flowing while there is room. */
static void import_body_flow(struct pd_import *im)
{
    struct policyd *p = im->p;
    if (im->in_off > 0 && (im->in_off == im->in.len || im->in_off >= IMPORT_IN_HIGH / 2)) {
        size_t left = im->in.len - im->in_off;
        memmove(im->in.data, im->in.data + im->in_off, left);
        OPENSSL_cleanse(im->in.data + left, im->in_off);
        im->in.len = left;
        im->in_off = 0;
    }
    if (!im->streamed || im->body_done)
        return;
    bool full = im->in.len - im->in_off > IMPORT_IN_HIGH || im->out_blocked;
    if (full && !im->body_paused) {
        im->body_paused = true;
        ent_http_request_pause(&p->admin, im->id);
    } else if (!full && im->body_paused) {
        im->body_paused = false;
        ent_http_request_resume(&p->admin, im->id);
    }
}

static void on_pump(uv_timer_t *t)
{
    struct pd_import *im = t->data;
    struct policyd *p = im->p;
    unsigned window = (unsigned)p->cfg->import_concurrency;
    size_t budget = PUMP_BATCH;
    if (!im->aborted && policyd_policy_refresh(p) != ENT_OK)
        budget = 0; /* try again next turn */
    while (!im->aborted && !im->out_blocked && budget && im->inflight < window &&
           im->line_no + 1 - im->emit_next < IMPORT_WINDOW) {
        const char *text;
        size_t ll;
        if (!import_next_line(im, &text, &ll))
            break;
        im->line_no++;
        bool blank = true;
        for (size_t i = 0; i < ll && blank; i++)
            blank = text[i] == ' ' || text[i] == '\t' || text[i] == '\r';
        if (blank)
            im->ring[im->line_no % IMPORT_WINDOW] = blank_result;
        else
            line_process(im, im->line_no, text, ll);
        budget--;
    }
    if (im->aborted) {
        import_stop(im);
        return;
    }
    import_emit(im);
    bool rest = im->body_done && im->in_off == im->in.len && !im->skipping;
    if (rest && im->inflight == 0 && im->emit_next > im->line_no) {
        import_finish(im);
        import_stop(im);
        return;
    }
    if (!import_flush(im)) {
        import_stop(im); /* the client is gone */
        return;
    }
    import_body_flow(im);
    if (budget == 0 && !im->out_blocked)
        uv_timer_start(&im->pump, on_pump, 0, 0);
    /* else: more body, an authd reply or a drained response schedules the next turn */
}

static void import_pump_schedule(struct pd_import *im)
{
    if (im->pump_open && !uv_is_closing((uv_handle_t *)&im->pump))
        uv_timer_start(&im->pump, on_pump, 0, 0);
    else if (!im->pump_open && im->inflight == 0)
        import_free(im);
}

static void on_import_body(struct ent_http_server *srv, uint64_t id, const char *data, size_t len,
                           void *ud)
{
    struct pd_import *im = ud;
    (void)srv;
    (void)id;
    if (im->aborted)
        return;
    if (ent_buf_append(&im->in, data, len) != ENT_OK) {
        ENT_LOG_ERROR(NULL, "policyd.import_failed", ENT_KV_STR("reason", "out of memory"));
        ent_http_respond_abort(&im->p->admin, im->id);
        import_stop(im);
        return;
    }
    import_body_flow(im);
    import_pump_schedule(im);
}

static void on_import_body_end(struct ent_http_server *srv, uint64_t id, void *ud)
{
    struct pd_import *im = ud;
    (void)srv;
    (void)id;
    im->body_done = true;
    import_pump_schedule(im);
}

static void on_import_drain(struct ent_http_server *srv, uint64_t id, void *ud)
{
    struct pd_import *im = ud;
    (void)srv;
    (void)id;
    if (!im->out_blocked)
        return;
    im->out_blocked = false;
    import_body_flow(im);
    import_pump_schedule(im);
}

static void on_import_abort(struct ent_http_server *srv, uint64_t id, ent_err why, void *ud)
{
    struct pd_import *im = ud;
    (void)srv;
    (void)id;
    ENT_LOG_INFO(NULL, "policyd.import_aborted", ENT_KV_STR("reason", ent_err_name(why)),
                 ENT_KV_U64("lines", im->line_no), ENT_KV_U64("answered", im->emit_next - 1));
    pd_admin_count("/v1/import", "POST", ent_err_http_status(why));
    import_stop(im);
}

static const struct ent_http_stream_ops import_ops = {
    .on_body = on_import_body,
    .on_body_end = on_import_body_end,
    .on_drain = on_import_drain,
    .on_abort = on_import_abort,
};

bool pd_admin_stream_select(struct ent_http_server *srv, const struct ent_http_request *head,
                            void *ud)
{
    (void)srv;
    (void)ud;
    return strcmp(head->method, "POST") == 0 && strcmp(head->path, "/v1/import") == 0;
}

void pd_import_start(struct policyd *p, const struct ent_http_request *req)
{
    struct pd_import *im = calloc(1, sizeof(*im));
    if (!im) {
        pd_admin_respond_error(p, req->id, "/v1/import", "POST", 500, "internal", NULL,
                               "out of memory");
        return;
    }
    im->p = p;
    im->id = req->id;
    im->streamed = req->streamed;
    im->emit_next = 1;
    im->start_ns = ent_now_ns();
    ent_buf_init(&im->in, (size_t)-1 / 2);
    ent_buf_init(&im->out, (size_t)-1 / 2);
    /* A whole body (a request the core did not stream) is one piece that has ended. */
    if (!req->streamed && ent_buf_append(&im->in, req->body, req->body_len) != ENT_OK) {
        free(im);
        pd_admin_respond_error(p, req->id, "/v1/import", "POST", 500, "internal", NULL,
                               "out of memory");
        return;
    }
    im->body_done = !req->streamed;
    ent_err rc = ent_http_request_stream(&p->admin, req->id, &import_ops, im);
    if (rc != ENT_OK) {
        import_free(im);
        return;
    }
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
        if (!im->answered)
            ent_http_respond_abort(&p->admin, im->id); /* no callback after this */
        import_stop(im);
    }
}
