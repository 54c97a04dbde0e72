/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's core end to end in one process: the admin API (plain HTTP on loopback, the
 * one thing differing from production), a real SQLite store, a stand-in authd and notifyd
 * served with the real bus (ent_bus_server) and a real change-event subscriber. Covers
 * CRUD, scopes, validation, ETag/If-Match, credentials never readable back, authd failure
 * leaving nothing behind, location update -> ChangeEvent with a bumped version -> push to
 * notifyd, token revocation, and an import of many subscribers (rate printed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/store.h"
#include "ent_test_net.h"
#include "policyd.h"

#define WTOKEN "write-token-0123456789abcdef"
#define RTOKEN "read-token-0123456789abcdef"

struct env {
    char dir[64], db[128], push_db[128], tokens[128];
    uv_loop_t loop;
    struct ent_store *store;
    struct policyd_cfg cfg;
    struct policyd pd;
    struct ent_bus_server authd, notifyd;
    struct ent_bus_sub sub;
    uv_async_t stop;
    pthread_t thread;
    atomic_int admin_port;
    atomic_int authd_mode; /* 0 OK, else the ent_err to answer */
    atomic_int cred_puts, pushes, events;
    atomic_ullong last_event_version;
    char last_push_terminal[64];
    pthread_mutex_t mu;
    char *authd_url[1], *notifyd_url[1], *home[1];
    char ev_url[64];
};

static struct env E;

static void on_authd(struct ent_bus_server *s, uint64_t id, const Entitle__V1__Request *req,
                     void *ud)
{
    (void)ud;
    int mode = atomic_load(&E.authd_mode);
    if (mode) {
        ent_bus_server_reply_error(s, id, (ent_err)mode, "test");
        return;
    }
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    resp.status = &st;
    Entitle__V1__CredentialPutResponse cp = ENTITLE__V1__CREDENTIAL_PUT_RESPONSE__INIT;
    Entitle__V1__CredentialDeleteResponse cd = ENTITLE__V1__CREDENTIAL_DELETE_RESPONSE__INIT;
    Entitle__V1__TokenRevokeResponse tr = ENTITLE__V1__TOKEN_REVOKE_RESPONSE__INIT;
    if (req->body_case == ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT) {
        assert_int_equal(req->credential_put->k.len, 16);
        atomic_fetch_add(&E.cred_puts, 1);
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_CREDENTIAL_PUT;
        resp.credential_put = &cp;
    } else if (req->body_case == ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE) {
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_CREDENTIAL_DELETE;
        resp.credential_delete = &cd;
    } else {
        tr.token_generation = 7;
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_TOKEN_REVOKE;
        resp.token_revoke = &tr;
    }
    ent_bus_server_reply(s, id, &resp);
}

static void on_notifyd(struct ent_bus_server *s, uint64_t id, const Entitle__V1__Request *req,
                       void *ud)
{
    (void)ud;
    assert_int_equal(req->body_case, ENTITLE__V1__REQUEST__BODY_PUSH);
    pthread_mutex_lock(&E.mu);
    snprintf(E.last_push_terminal, sizeof(E.last_push_terminal), "%s", req->push->terminal_id);
    pthread_mutex_unlock(&E.mu);
    atomic_fetch_add(&E.pushes, 1);
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    Entitle__V1__PushResponse pr = ENTITLE__V1__PUSH_RESPONSE__INIT;
    resp.status = &st;
    resp.body_case = ENTITLE__V1__RESPONSE__BODY_PUSH;
    resp.push = &pr;
    ent_bus_server_reply(s, id, &resp);
}

static void on_event(const Entitle__V1__ChangeEvent *ev, bool gap, void *ud)
{
    (void)gap;
    (void)ud;
    if (ev->kind == ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER)
        atomic_store(&E.last_event_version, ev->subscriber_version);
    atomic_fetch_add(&E.events, 1);
}

static void on_closed_noop_srv(struct ent_bus_server *s)
{
    (void)s;
}
static void on_closed_noop_sub(struct ent_bus_sub *s)
{
    (void)s;
}
static void on_async_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_stop(uv_async_t *a)
{
    (void)a;
    policyd_core_close(&E.pd, NULL);
    ent_bus_server_close(&E.authd, on_closed_noop_srv);
    ent_bus_server_close(&E.notifyd, on_closed_noop_srv);
    ent_bus_sub_close(&E.sub, on_closed_noop_sub);
    uv_close((uv_handle_t *)&E.stop, on_async_closed);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&E.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    pthread_mutex_init(&E.mu, NULL);
    snprintf(E.dir, sizeof(E.dir), "/tmp/pd-admin-XXXXXX");
    assert_non_null(mkdtemp(E.dir));
    snprintf(E.db, sizeof(E.db), "%s/e.db", E.dir);
    snprintf(E.push_db, sizeof(E.push_db), "%s/push.db", E.dir);
    snprintf(E.tokens, sizeof(E.tokens), "%s/tokens", E.dir);
    FILE *f = fopen(E.tokens, "w");
    fprintf(f, "# test tokens\n%s write\n%s read\n", WTOKEN, RTOKEN);
    fclose(f);
    struct ent_store_cfg sc = {.path = E.db};
    char err[256];
    assert_int_equal(ent_store_open(&E.store, &sc, err, sizeof(err)), ENT_OK);
    assert_int_equal(uv_loop_init(&E.loop), 0);
    struct ent_bus_server_cfg a = {.listen = "tcp://127.0.0.1:0"};
    assert_int_equal(ent_bus_server_init(&E.authd, &E.loop, &a, on_authd, NULL), ENT_OK);
    assert_int_equal(ent_bus_server_init(&E.notifyd, &E.loop, &a, on_notifyd, NULL), ENT_OK);
    static char au[64], nu[64], hp[8] = "00101";
    snprintf(au, sizeof(au), "tcp://127.0.0.1:%d", ent_bus_server_port(&E.authd));
    snprintf(nu, sizeof(nu), "tcp://127.0.0.1:%d", ent_bus_server_port(&E.notifyd));
    snprintf(E.ev_url, sizeof(E.ev_url), "tcp://127.0.0.1:%d", ent_test_free_port());
    E.authd_url[0] = au;
    E.notifyd_url[0] = nu;
    E.home[0] = hp;
    E.cfg = (struct policyd_cfg){
        .admin_listen = "127.0.0.1:0",
        .admin_tls = false,
        .admin_tokens_file = E.tokens,
        .admin_max_body = 64 << 20,
        .events_listen = E.ev_url,
        .upstream_authd = {E.authd_url, 1},
        .upstream_notifyd = {E.notifyd_url, 1},
        .upstream_timeout = 2000,
        .upstream_max_inflight = 256,
        .home_plmns = {E.home, 1},
        .default_plan = "default",
        .websheet_url = "https://127.0.0.1:8443/websheet/vowifi",
        .credentials_required = true,
        .import_concurrency = 64,
        .push_queue_path = E.push_db,
    };
    assert_int_equal(policyd_core_start(&E.pd, &E.loop, E.store, &E.cfg), ENT_OK);
    const char *addrs[] = {E.ev_url};
    assert_int_equal(ent_bus_sub_init(&E.sub, &E.loop, addrs, 1, NULL, on_event, NULL), ENT_OK);
    uv_async_init(&E.loop, &E.stop, on_stop);
    atomic_store(&E.admin_port, policyd_admin_port(&E.pd));
    pthread_create(&E.thread, NULL, loop_main, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    uv_async_send(&E.stop);
    pthread_join(E.thread, NULL);
    assert_int_equal(uv_loop_close(&E.loop), 0);
    ent_store_close(E.store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", E.dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* One request on a fresh connection; returns the status, *body the heap body. */
static int http(const char *method, const char *path, const char *token, const char *extra,
                const char *body, char **out, char *etag)
{
    int fd =
        ent_test_connect(atomic_load(&E.admin_port), 600000); /* a 100k import is slow under ASan */
    assert_true(fd >= 0);
    size_t blen = body ? strlen(body) : 0;
    char *req = malloc(blen + 1024);
    int n = sprintf(req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", method, path);
    if (token)
        n += sprintf(req + n, "Authorization: Bearer %s\r\n", token);
    if (extra)
        n += sprintf(req + n, "%s\r\n", extra);
    n += sprintf(req + n, "Content-Length: %zu\r\n\r\n", blen);
    if (body)
        memcpy(req + n, body, blen);
    req[n + blen] = '\0';
    assert_int_equal(ent_test_send_all(fd, req), 0);
    free(req);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    char *hdr_end = strstr(buf, "\r\n\r\n");
    if (etag) {
        etag[0] = '\0';
        char *e = strcasestr(buf, "\r\netag: ");
        if (e && e < hdr_end)
            sscanf(e + 8, "%31[^\r]", etag);
    }
    if (out)
        *out = strdup(hdr_end ? hdr_end + 4 : "");
    free(buf);
    return status;
}

static int call(const char *method, const char *path, const char *body)
{
    char *out = NULL;
    int st = http(method, path, WTOKEN, NULL, body, &out, NULL);
    free(out);
    return st;
}

static void wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 400 && atomic_load(v) < want; i++)
        usleep(10000);
    assert_true(atomic_load(v) >= want);
}

static void test_admin_scopes(void **state)
{
    (void)state;
    assert_int_equal(http("GET", "/v1/subscribers", NULL, NULL, NULL, NULL, NULL), 401);
    assert_int_equal(
        http("GET", "/v1/subscribers", "wrong-token-0123456789", NULL, NULL, NULL, NULL), 401);
    assert_int_equal(http("GET", "/v1/subscribers", RTOKEN, NULL, NULL, NULL, NULL), 200);
    assert_int_equal(http("POST", "/v1/plans", RTOKEN, NULL, "{\"id\":\"x\"}", NULL, NULL), 403);
    assert_int_equal(call("GET", "/v1/nothing", NULL), 404);
    assert_int_equal(call("PUT", "/v1/subscribers", NULL), 405);
}

static void test_admin_subscriber_crud_and_credentials(void **state)
{
    (void)state;
    char *out = NULL, etag[32];
    const char *body = "{\"imsi\":\"001010000000001\",\"msisdn\":\"15550000001\","
                       "\"k\":\"000102030405060708090a0b0c0d0e0f\","
                       "\"opc\":\"101112131415161718191a1b1c1d1e1f\",\"sqn\":\"000000000000\","
                       "\"amf\":\"8000\"}";
    assert_int_equal(http("POST", "/v1/subscribers", WTOKEN, NULL, body, &out, etag), 201);
    assert_null(strstr(out, "000102030405060708090a0b0c0d0e0f"));
    assert_null(strstr(out, "\"k\""));
    assert_null(strstr(out, "opc"));
    assert_string_equal(etag, "\"1\"");
    free(out);
    assert_int_equal(atomic_load(&E.cred_puts), 1);
    assert_int_equal(call("POST", "/v1/subscribers", body), 409);
    /* Never readable back: not in the API, not in the store document. */
    assert_int_equal(http("GET", "/v1/subscribers/001010000000001", RTOKEN, NULL, NULL, &out, etag),
                     200);
    assert_null(strstr(out, "0001020304"));
    assert_non_null(strstr(out, "\"msisdn\":\"15550000001\""));
    free(out);
    struct ent_store_doc d = {0};
    assert_int_equal(ent_store_get(E.store, ENT_COLL_SUBSCRIBERS, "001010000000001", &d), ENT_OK);
    assert_null(memmem(d.data, d.len, "0001020304", 10));
    ent_store_doc_free(&d);

    /* Evaluate over the fresh subscriber: the default plan at home. */
    assert_int_equal(
        call("GET", "/v1/subscribers/001010000000001/explain?app=ap2004&app=ap2005", NULL), 200);
    http("GET", "/v1/subscribers/001010000000001/explain?app=ap2004", RTOKEN, NULL, NULL, &out,
         NULL);
    assert_non_null(strstr(out, "\"entitlement_status\":1"));
    assert_non_null(strstr(out, "home network"));
    free(out);

    /* Validation names the field. */
    http("POST", "/v1/subscribers", WTOKEN, NULL,
         "{\"imsi\":\"12\",\"k\":\"000102030405060708090a0b0c0d0e0f\",\"opc\":"
         "\"101112131415161718191a1b1c1d1e1f\"}",
         &out, NULL);
    assert_non_null(strstr(out, "\"field\":\"imsi\""));
    free(out);
    assert_int_equal(http("POST", "/v1/subscribers", WTOKEN, NULL,
                          "{\"imsi\":\"001010000000002\",\"k\":\"00\",\"opc\":\"11\"}", &out, NULL),
                     422);
    assert_non_null(strstr(out, "\"field\":\"k\""));
    free(out);
    assert_int_equal(call("POST", "/v1/subscribers", "{\"imsi\":001}"), 400);
    assert_int_equal(call("POST", "/v1/subscribers", "{\"imsi\":1}"), 400);
    assert_int_equal(call("PATCH", "/v1/subscribers/001010000000001", "{\"status\":\"odd\"}"), 422);

    /* If-Match. */
    assert_int_equal(http("PATCH", "/v1/subscribers/001010000000001", WTOKEN, "If-Match: \"9\"",
                          "{\"region\":\"north\"}", NULL, NULL),
                     412);
    assert_int_equal(http("PATCH", "/v1/subscribers/001010000000001", WTOKEN, "If-Match: \"1\"",
                          "{\"region\":\"north\"}", NULL, etag),
                     200);
    assert_string_equal(etag, "\"2\"");
    assert_int_equal(http("PATCH", "/v1/subscribers/001010000000001", WTOKEN, "If-Match: \"1\"",
                          "{\"region\":\"south\"}", NULL, NULL),
                     412);

    /* authd without the handler: 502, nothing created. */
    atomic_store(&E.authd_mode, ENT_EUNSUPPORTED);
    assert_int_equal(
        call("POST", "/v1/subscribers",
             "{\"imsi\":\"001010000000003\",\"k\":\"000102030405060708090a0b0c0d0e0f\","
             "\"op\":\"101112131415161718191a1b1c1d1e1f\"}"),
        502);
    assert_int_equal(call("GET", "/v1/subscribers/001010000000003", NULL), 404);
    assert_int_equal(call("DELETE", "/v1/subscribers/001010000000001", NULL), 502);
    assert_int_equal(call("GET", "/v1/subscribers/001010000000001", NULL), 200);
    atomic_store(&E.authd_mode, 0);

    assert_int_equal(call("DELETE", "/v1/subscribers/001010000000001/tokens", NULL), 200);
    assert_int_equal(call("DELETE", "/v1/subscribers/001010000000001", NULL), 204);
    assert_int_equal(call("GET", "/v1/subscribers/001010000000001", NULL), 404);
}

static void test_admin_roaming_event_and_push(void **state)
{
    (void)state;
    const char *body = "{\"imsi\":\"001010000000010\",\"k\":\"000102030405060708090a0b0c0d0e0f\","
                       "\"opc\":\"101112131415161718191a1b1c1d1e1f\"}";
    assert_int_equal(call("POST", "/v1/subscribers", body), 201);
    assert_int_equal(call("POST", "/v1/roaming-rules",
                          "{\"name\":\"fr\",\"match\":{\"mcc\":\"208\"},\"services\":{\"vowifi\":"
                          "false},\"message\":\"VoWiFi is not available in France\"}"),
                     201);
    assert_int_equal(call("POST", "/v1/roaming-rules",
                          "{\"name\":\"fr2\",\"match\":{\"mcc\":\"208\"},\"services\":{}}"),
                     409);
    assert_int_equal(
        call("POST", "/v1/roaming-rules", "{\"name\":\"bad\",\"match\":{\"plmn\":\"2\"}}"), 422);
    /* A device with a push token registers (the gateway's DeviceRegister RPC). */
    Entitle__V1__DeviceRegisterRequest dr = ENTITLE__V1__DEVICE_REGISTER_REQUEST__INIT;
    dr.subscriber_id = "001010000000010";
    dr.terminal_id = "356938035643809";
    dr.notif_token = "fcm-token-abc";
    dr.notif_action = "2";
    /* The RPC runs on the loop thread; the test calls the core's function from its thread
     * only while nothing else is in flight. */
    assert_int_equal(policyd_device_register(&E.pd, &dr), ENT_OK);

    int pushes = atomic_load(&E.pushes);
    unsigned long long v0 = atomic_load(&E.last_event_version);
    char *out = NULL;
    assert_int_equal(http("PUT", "/v1/subscribers/001010000000010/location", WTOKEN, NULL,
                          "{\"serving_plmn\":\"20810\"}", &out, NULL),
                     200);
    free(out);
    wait_for(&E.pushes, pushes + 1);
    for (int i = 0; i < 200 && atomic_load(&E.last_event_version) <= v0; i++)
        usleep(10000);
    assert_true(atomic_load(&E.last_event_version) > v0);
    pthread_mutex_lock(&E.mu);
    assert_string_equal(E.last_push_terminal, "356938035643809");
    pthread_mutex_unlock(&E.mu);
    http("GET", "/v1/subscribers/001010000000010/explain?app=ap2004&app=ap2003", RTOKEN, NULL, NULL,
         &out, NULL);
    assert_non_null(strstr(out, "VoWiFi is not available in France"));
    free(out);
    /* Back home restores it and pushes again; an unchanged answer does not push. */
    assert_int_equal(
        call("PUT", "/v1/subscribers/001010000000010/location", "{\"serving_plmn\":\"00101\"}"),
        200);
    wait_for(&E.pushes, pushes + 2);
    assert_int_equal(
        call("PUT", "/v1/subscribers/001010000000010/location", "{\"serving_plmn\":\"\"}"), 200);
    usleep(200000);
    assert_int_equal(atomic_load(&E.pushes), pushes + 2);
    assert_int_equal(
        call("PUT", "/v1/subscribers/001010000000010/location", "{\"serving_plmn\":\"2x\"}"), 422);
}

static void test_admin_import_idempotent(void **state)
{
    (void)state;
    const char *env = getenv("POLICYD_IMPORT_N");
    size_t n = env ? strtoul(env, NULL, 10) : 5000;
    size_t cap = n * 200 + 100;
    char *body = malloc(cap);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "{\"imsi\":\"00101%010zu\",\"msisdn\":\"1555%07zu\",\"k\":"
                                "\"000102030405060708090a0b0c0d0e0f\",\"opc\":"
                                "\"101112131415161718191a1b1c1d1e1f\"}\n",
                                i + 100000, i);
    len += (size_t)snprintf(body + len, cap - len, "{\"imsi\":\"bad\"}\n");
    int puts0 = atomic_load(&E.cred_puts);
    char *out = NULL;
    uint64_t t0 = ent_now_ns();
    assert_int_equal(http("POST", "/v1/import", WTOKEN, NULL, body, &out, NULL), 200);
    double secs = (double)(ent_now_ns() - t0) / 1e9;
    printf("import: %zu subscribers with credentials in %.2f s (%.0f/s)\n", n, secs,
           (double)n / secs);
    char want[128];
    snprintf(want, sizeof(want), "\"created\":%zu,\"updated\":0,\"unchanged\":0,\"failed\":1", n);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "\"field\":\"imsi\""));
    free(out);
    assert_int_equal(atomic_load(&E.cred_puts) - puts0, (int)n);
    /* Re-import: nothing changes, no credential is re-sent. */
    assert_int_equal(http("POST", "/v1/import", WTOKEN, NULL, body, &out, NULL), 200);
    snprintf(want, sizeof(want), "\"created\":0,\"updated\":0,\"unchanged\":%zu", n);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(atomic_load(&E.cred_puts) - puts0, (int)n);
    free(body);
}

/* ---- streamed import ------------------------------------------------------------------ */

static size_t import_line(char *buf, size_t cap, size_t i)
{
    return (size_t)snprintf(buf, cap,
                            "{\"imsi\":\"00102%010zu\",\"msisdn\":\"1666%07zu\",\"k\":"
                            "\"000102030405060708090a0b0c0d0e0f\",\"opc\":"
                            "\"101112131415161718191a1b1c1d1e1f\"}\n",
                            i, i);
}

/* Reads result lines off a chunked import response as they come: checks they are in input
 * order, remembers the summary. Chunk-size lines are skipped: a chunk holds whole lines. */
struct reader {
    int fd;
    char buf[1 << 16];
    size_t len;
    size_t results, last_line, malformed;
    bool in_order, head_seen, eof;
    char summary[512];
};

/* Reads until `want` result lines were seen (or the summary, or EOF). 0 on success. */
static int reader_until(struct reader *r, size_t want)
{
    while (r->results < want && !r->summary[0]) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len - 1, 0);
        if (n <= 0) {
            r->eof = true;
            return n == 0 ? 0 : -1;
        }
        r->len += (size_t)n;
        char *start = r->buf, *nl;
        if (!r->head_seen) {
            char *h = memmem(r->buf, r->len, "\r\n\r\n", 4);
            if (!h)
                continue;
            r->head_seen = true;
            start = h + 4;
        }
        while ((nl = memchr(start, '\n', r->len - (size_t)(start - r->buf))) != NULL) {
            *nl = '\0';
            size_t line = 0;
            if (sscanf(start, "{\"line\":%zu", &line) == 1) {
                r->in_order = r->in_order && line > r->last_line;
                r->last_line = line;
                r->results++;
                r->malformed += strstr(start, "malformed JSON") != NULL;
            } else if (strncmp(start, "{\"summary\"", 10) == 0) {
                size_t k =
                    strlen(start) < sizeof(r->summary) - 1 ? strlen(start) : sizeof(r->summary) - 1;
                memcpy(r->summary, start, k);
                r->summary[k] = '\0';
            }
            start = nl + 1;
        }
        size_t left = r->len - (size_t)(start - r->buf);
        memmove(r->buf, start, left);
        r->len = left;
    }
    return 0;
}

static void test_admin_import_streams_results_before_body_ends(void **state)
{
    (void)state;
    assert_int_equal(call("GET", "/v1/plans", NULL), 200); /* see pd_admin_on_request */
    enum { N = 1000, EARLY = 20 };
    char *body = malloc(N * 200);
    size_t len = 0, cut = 0;
    for (size_t i = 0; i < N; i++) {
        if (i == 7)
            len += (size_t)sprintf(body + len, "{\"imsi\": \"00102\", oops\n");
        else
            len += import_line(body + len, 200, 2000000 + i);
        if (i + 1 == EARLY)
            cut = len;
    }
    int fd = ent_test_connect(atomic_load(&E.admin_port), 60000);
    assert_true(fd >= 0);
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " WTOKEN
             "\r\nContent-Type: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
             len);
    assert_int_equal(ent_test_send_all(fd, head), 0);
    assert_int_equal(send(fd, body, cut, MSG_NOSIGNAL), (ssize_t)cut);
    /* The first results come back while most of the body is still unsent. */
    static struct reader r;
    memset(&r, 0, sizeof(r));
    r.fd = fd;
    r.in_order = true;
    assert_int_equal(reader_until(&r, EARLY), 0);
    assert_int_equal(r.results, EARLY);
    assert_false(r.summary[0]);
    assert_int_equal(r.malformed, 1);
    for (size_t off = cut; off < len;) {
        ssize_t n = send(fd, body + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
    assert_int_equal(reader_until(&r, (size_t)-1), 0);
    close(fd);
    assert_int_equal(r.results, N);
    assert_true(r.in_order);
    assert_int_equal(r.last_line, N);
    char want[128];
    snprintf(want, sizeof(want), "\"created\":%d,\"updated\":0,\"unchanged\":0,\"failed\":1",
             N - 1);
    assert_non_null(strstr(r.summary, want));
    free(body);
}

struct sender {
    int fd;
    size_t n, first;
    int rc;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    char buf[1 << 16];
    size_t len = 0;
    for (size_t i = 0; i < s->n; i++) {
        len += import_line(buf + len, sizeof(buf) - len, s->first + i);
        if (len > sizeof(buf) - 256 || i + 1 == s->n) {
            for (size_t off = 0; off < len;) {
                ssize_t k = send(s->fd, buf + off, len - off, MSG_NOSIGNAL);
                if (k <= 0) {
                    s->rc = -1;
                    return NULL;
                }
                off += (size_t)k;
            }
            len = 0;
        }
    }
    return NULL;
}

/* 100k lines (20k under ASan; POLICYD_IMPORT_BIG_N) with credentials, sent while results are read:
 * the core never holds more than its parking limit of the body, whatever its size. */
static void test_admin_import_large_bounded_memory(void **state)
{
    (void)state;
    assert_int_equal(call("GET", "/v1/plans", NULL), 200);
    const char *env = getenv("POLICYD_IMPORT_BIG_N");
#ifdef __SANITIZE_ADDRESS__
    size_t n = env ? strtoul(env, NULL, 10) : 20000; /* ASan: ~1.5k lines/s here */
#else
    size_t n = env ? strtoul(env, NULL, 10) : 100000;
#endif
    char tmp[256];
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += import_line(tmp, sizeof(tmp), 3000000 + i);
    int fd = ent_test_connect(atomic_load(&E.admin_port), 600000);
    assert_true(fd >= 0);
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " WTOKEN
             "\r\nContent-Length: %zu\r\n\r\n",
             total);
    assert_int_equal(ent_test_send_all(fd, head), 0);
    int puts0 = atomic_load(&E.cred_puts);
    uint64_t t0 = ent_now_ns();
    struct sender snd = {.fd = fd, .n = n, .first = 3000000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_main, &snd), 0);
    static struct reader r;
    memset(&r, 0, sizeof(r));
    r.fd = fd;
    r.in_order = true;
    assert_int_equal(reader_until(&r, (size_t)-1), 0);
    pthread_join(th, NULL);
    close(fd);
    double secs = (double)(ent_now_ns() - t0) / 1e9;
    const struct ent_http_server_stats *st = ent_http_server_stats(&E.pd.admin);
    printf("import (streamed): %zu lines, %.1f MB, with credentials in %.2f s (%.0f/s); core "
           "held at most %llu body bytes, queued at most %llu result bytes\n",
           n, (double)total / 1e6, secs, (double)n / secs, (unsigned long long)st->in_buffered_max,
           (unsigned long long)st->out_queued_max);
    assert_int_equal(snd.rc, 0);
    assert_int_equal(r.results, n);
    assert_true(r.in_order);
    char want[128];
    snprintf(want, sizeof(want), "\"created\":%zu,\"updated\":0,\"unchanged\":0,\"failed\":0", n);
    assert_non_null(strstr(r.summary, want));
    assert_int_equal(atomic_load(&E.cred_puts) - puts0, (int)n);
    /* Tens of MB went through; the core held one parking limit plus one read at most. */
    assert_true(st->in_buffered_max <= 200000);
}

int main(void)
{
    (void)ent_test_timeout_scale;
    (void)ent_test_http_wait_status;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_scopes),
        cmocka_unit_test(test_admin_subscriber_crud_and_credentials),
        cmocka_unit_test(test_admin_roaming_event_and_push),
        cmocka_unit_test(test_admin_import_idempotent),
        cmocka_unit_test(test_admin_import_streams_results_before_body_ends),
        cmocka_unit_test(test_admin_import_large_bounded_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
