/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the bus tests (test_bus_*.c): a loop harness with bounded waits, and a ping
 * server whose handler can answer, fail with a typed status, or hold calls for the test to
 * answer later. Header-only so each test file stays one ctest; include after cmocka.h. */
#ifndef ENT_TEST_BUS_SUPPORT_H
#define ENT_TEST_BUS_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ent/bus.h"
#include "ent/util.h"

/* Waits scale with ENTITLE_TEST_TIMEOUT_MULTIPLIER on slow machines. */
static inline uint64_t tb_ms(uint64_t ms)
{
    const char *m = getenv("ENTITLE_TEST_TIMEOUT_MULTIPLIER");
    int64_t k = 1;
    if (m != NULL && ent_parse_i64(m, 1, 100, &k) != ENT_OK)
        k = 1;
    return ms * (uint64_t)k;
}

struct tb_harness {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from blocking past a wait's deadline */
};

static inline void tb_on_tick(uv_timer_t *t)
{
    (void)t;
}

static inline void tb_init(struct tb_harness *h)
{
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(uv_timer_init(&h->loop, &h->tick), 0);
    assert_int_equal(uv_timer_start(&h->tick, tb_on_tick, 10, 10), 0);
}

/* Runs the loop until *flag is true or ms have passed; returns *flag. */
static inline bool tb_run_until(struct tb_harness *h, const bool *flag, uint64_t ms)
{
    uint64_t deadline = ent_now_ms() + ms;
    while (!*flag && ent_now_ms() < deadline)
        uv_run(&h->loop, UV_RUN_ONCE);
    return *flag;
}

/* Runs the loop for about ms (to show that something does NOT happen). */
static inline void tb_run_for(struct tb_harness *h, uint64_t ms)
{
    bool never = false;
    tb_run_until(h, &never, ms);
}

/* Closes the harness timer and requires every other handle to be closed already. */
static inline void tb_fini(struct tb_harness *h)
{
    uv_close((uv_handle_t *)&h->tick, NULL);
    assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

/* --- a ping server ----------------------------------------------------------------------- */

enum tb_mode { TB_ANSWER, TB_FAIL, TB_HOLD };

struct tb_server {
    struct ent_bus_server bus;
    enum tb_mode mode;
    const char *name;
    unsigned handled;
    uint64_t held[8];
    unsigned n_held;
    char last_trace[64];
    char last_caller[64];
    uint64_t last_request_id;
    uint64_t last_deadline;
    bool closed;
};

static inline void tb_server_answer(struct tb_server *ts, uint64_t call_id, const char *from)
{
    Entitle__V1__PingResponse ping = ENTITLE__V1__PING_RESPONSE__INIT;
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    ping.daemon = (char *)ts->name;
    ping.instance = (char *)from;
    ping.ready = true;
    resp.body_case = ENTITLE__V1__RESPONSE__BODY_PING;
    resp.ping = &ping;
    assert_int_equal(ent_bus_server_reply(&ts->bus, call_id, &resp), ENT_OK);
}

static inline void tb_on_request(struct ent_bus_server *s, uint64_t call_id,
                                 const Entitle__V1__Request *req, void *ud)
{
    struct tb_server *ts = ud;
    assert_ptr_equal(s, &ts->bus);
    ts->handled++;
    assert_non_null(req->header);
    snprintf(ts->last_trace, sizeof(ts->last_trace), "%s", req->header->trace_id);
    snprintf(ts->last_caller, sizeof(ts->last_caller), "%s", req->header->caller);
    ts->last_request_id = req->header->request_id;
    ts->last_deadline = req->header->deadline_unix_ms;
    assert_int_equal(req->body_case, ENTITLE__V1__REQUEST__BODY_PING);
    switch (ts->mode) {
    case TB_ANSWER:
        tb_server_answer(ts, call_id, req->ping->from);
        break;
    case TB_FAIL:
        assert_int_equal(
            ent_bus_server_reply_error(&ts->bus, call_id, ENT_ENOTFOUND, "no such subscriber"),
            ENT_OK);
        break;
    case TB_HOLD:
        assert_true(ts->n_held < ENT_ARRAY_LEN(ts->held));
        ts->held[ts->n_held++] = call_id;
        break;
    }
}

static inline void tb_on_server_closed(struct ent_bus_server *s)
{
    struct tb_server *ts = ENT_CONTAINER_OF(s, struct tb_server, bus);
    ts->closed = true;
}

/* Starts on listen (e.g. "tcp://127.0.0.1:0"); returns the bound port. */
static inline int tb_server_start(struct tb_server *ts, struct tb_harness *h, const char *listen,
                                  const struct ent_bus_tls_cfg *tls, const char *name)
{
    memset(ts, 0, sizeof(*ts));
    ts->name = name;
    struct ent_bus_server_cfg cfg = {.listen = listen, .workers = 4, .tls = tls};
    assert_int_equal(ent_bus_server_init(&ts->bus, &h->loop, &cfg, tb_on_request, ts), ENT_OK);
    int port = ent_bus_server_port(&ts->bus);
    assert_true(port > 0 && port < 65536);
    return port;
}

static inline void tb_server_stop(struct tb_server *ts, struct tb_harness *h)
{
    ent_bus_server_close(&ts->bus, tb_on_server_closed);
    assert_true(tb_run_until(h, &ts->closed, tb_ms(5000)));
}

/* --- a client call ----------------------------------------------------------------------- */

struct tb_call {
    bool done;
    unsigned n_cb; /* must end at exactly 1 */
    ent_err status;
    int code; /* resp->status->code, or -1 without status */
    char daemon[32];
    char instance[32];
    uint64_t request_id;
};

static inline void tb_on_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct tb_call *call = ud;
    call->n_cb++;
    call->done = true;
    call->status = status;
    call->code = -1;
    if (status != ENT_OK) {
        assert_null(resp);
        return;
    }
    assert_non_null(resp);
    call->request_id = resp->request_id;
    if (resp->status != NULL)
        call->code = (int)resp->status->code;
    if (resp->body_case == ENTITLE__V1__RESPONSE__BODY_PING) {
        snprintf(call->daemon, sizeof(call->daemon), "%s", resp->ping->daemon);
        snprintf(call->instance, sizeof(call->instance), "%s", resp->ping->instance);
    }
    entitle__v1__response__free_unpacked(resp, NULL);
}

static inline ent_err tb_ping(struct ent_bus_client *c, const char *from, uint64_t timeout_ms,
                              struct tb_call *call)
{
    Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    ping.from = (char *)from;
    req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    memset(call, 0, sizeof(*call));
    return ent_bus_call(c, &req, timeout_ms, "trace-0001", tb_on_reply, call);
}

struct tb_client {
    struct ent_bus_client bus;
    char addr[64];
    bool closed;
};

static inline void tb_on_client_closed(struct ent_bus_client *c)
{
    struct tb_client *tc = ENT_CONTAINER_OF(c, struct tb_client, bus);
    tc->closed = true;
}

/* REQ resend interval for the next tb_client_start() (0: the bus default). */
static uint64_t tb_resend_ms;

static inline void tb_client_start(struct tb_client *tc, struct tb_harness *h, const char *scheme,
                                   int port, unsigned max_inflight,
                                   const struct ent_bus_tls_cfg *tls)
{
    memset(tc, 0, sizeof(*tc));
    snprintf(tc->addr, sizeof(tc->addr), "%s://127.0.0.1:%d", scheme, port);
    const char *addrs[] = {tc->addr};
    struct ent_bus_client_cfg cfg = {.addrs = addrs,
                                     .n_addrs = 1,
                                     .max_inflight = max_inflight,
                                     .tls = tls,
                                     .caller = "test-client",
                                     .reconnect_min_ms = 20,
                                     .reconnect_max_ms = 200,
                                     .resend_ms = tb_resend_ms};
    assert_int_equal(ent_bus_client_init(&tc->bus, &h->loop, &cfg), ENT_OK);
}

static inline void tb_client_stop(struct tb_client *tc, struct tb_harness *h)
{
    ent_bus_client_close(&tc->bus, tb_on_client_closed);
    assert_true(tb_run_until(h, &tc->closed, tb_ms(5000)));
}

#endif
