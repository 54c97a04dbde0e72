/* SPDX-License-Identifier: Apache-2.0 */
/* ent/bus.h RPCs over real NNG on 127.0.0.1 (port 0, bound port read back): round trip,
 * typed error status, deadline exceeded with a late reply, saturation, peer restart, close
 * with calls outstanding, and the bus's own answers to undecodable or expired requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "test_bus_support.h"

static void test_bus_round_trip_ping(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    tb_client_start(&cli, &h, "tcp", port, 8, NULL);

    uint64_t before = ent_wall_ms();
    assert_int_equal(tb_ping(&cli.bus, "phone-1", tb_ms(5000), &call), ENT_OK);
    assert_int_equal(ent_bus_client_inflight(&cli.bus), 1);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.n_cb, 1);
    assert_int_equal(call.status, ENT_OK);
    assert_int_equal(call.code, -1); /* no status: OK */
    assert_string_equal(call.daemon, "srv-a");
    assert_string_equal(call.instance, "phone-1");
    /* The header the bus filled reached the server, and the id came back. */
    assert_string_equal(srv.last_trace, "trace-0001");
    assert_string_equal(srv.last_caller, "test-client");
    assert_true(srv.last_request_id != 0);
    assert_int_equal(call.request_id, srv.last_request_id);
    assert_true(srv.last_deadline >= before + tb_ms(5000));
    assert_int_equal(ent_bus_client_inflight(&cli.bus), 0);

    /* A second call gets a new request id. */
    uint64_t first_id = srv.last_request_id;
    assert_int_equal(tb_ping(&cli.bus, "phone-2", tb_ms(5000), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_OK);
    assert_true(srv.last_request_id != first_id);

    const struct ent_bus_stats *cs = ent_bus_client_stats(&cli.bus);
    assert_int_equal(cs->calls, 2);
    assert_int_equal(cs->results[ENT_OK], 2);
    assert_int_equal(ent_bus_server_stats(&srv.bus)->calls, 2);
    assert_int_equal(ent_bus_server_stats(&srv.bus)->results[ENT_OK], 2);

    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_typed_error_status(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    srv.mode = TB_FAIL;
    tb_client_start(&cli, &h, "tcp", port, 8, NULL);

    assert_int_equal(tb_ping(&cli.bus, "phone-1", tb_ms(5000), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    /* Transport fine, the server's code is for the caller to judge. */
    assert_int_equal(call.status, ENT_OK);
    assert_int_equal(call.code, ENT_ENOTFOUND);
    assert_int_equal(call.request_id, srv.last_request_id);
    assert_int_equal(ent_bus_server_stats(&srv.bus)->results[ENT_ENOTFOUND], 1);

    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_deadline_exceeded_drops_late_reply(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    struct tb_call call2;
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    /* No resend within the test, so the server sees the request once. */
    tb_resend_ms = 60000;
    tb_client_start(&cli, &h, "tcp", port, 8, NULL);
    tb_resend_ms = 0;
    /* Connect first, so the deadline below is spent in the handler, not in dialling. */
    assert_int_equal(tb_ping(&cli.bus, "warm-up", tb_ms(5000), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_OK);

    srv.mode = TB_HOLD;
    assert_int_equal(tb_ping(&cli.bus, "phone-1", tb_ms(500), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_ETIMEDOUT);
    assert_int_equal(srv.n_held, 1);
    assert_int_equal(ent_bus_client_inflight(&cli.bus), 0);
    assert_int_equal(ent_bus_client_stats(&cli.bus)->results[ENT_ETIMEDOUT], 1);

    /* The handler answers after the deadline: accepted, dropped, counted. (The client's
     * timer and the header's wall-clock deadline may differ by a millisecond.) */
    tb_run_for(&h, 20);
    srv.mode = TB_ANSWER;
    tb_server_answer(&srv, srv.held[0], "late");
    assert_int_equal(ent_bus_server_stats(&srv.bus)->late_replies, 1);
    /* Answering the same call twice is refused. */
    assert_int_equal(ent_bus_server_reply_error(&srv.bus, srv.held[0], ENT_EIO, NULL),
                     ENT_ENOTFOUND);

    /* The worker is free again and the client still works; the first callback ran once. */
    assert_int_equal(tb_ping(&cli.bus, "phone-2", tb_ms(5000), &call2), ENT_OK);
    assert_true(tb_run_until(&h, &call2.done, tb_ms(10000)));
    assert_int_equal(call2.status, ENT_OK);
    assert_string_equal(call2.instance, "phone-2");
    assert_int_equal(call.n_cb, 1);

    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_saturation_refuses_then_recovers(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call calls[3];
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    srv.mode = TB_HOLD;
    tb_client_start(&cli, &h, "tcp", port, 2, NULL);

    assert_int_equal(tb_ping(&cli.bus, "a", tb_ms(10000), &calls[0]), ENT_OK);
    assert_int_equal(tb_ping(&cli.bus, "b", tb_ms(10000), &calls[1]), ENT_OK);
    assert_int_equal(tb_ping(&cli.bus, "c", tb_ms(10000), &calls[2]), ENT_ESATURATED);
    assert_int_equal(ent_bus_client_inflight(&cli.bus), 2);
    assert_int_equal(ent_bus_client_stats(&cli.bus)->saturated, 1);

    /* Both reach the server and wait there; the refused call never calls back. */
    uint64_t t0 = ent_now_ms();
    while (srv.n_held < 2 && ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(&h, 20);
    assert_int_equal(srv.n_held, 2);
    srv.mode = TB_ANSWER;
    tb_server_answer(&srv, srv.held[0], "a");
    tb_server_answer(&srv, srv.held[1], "b");
    assert_true(tb_run_until(&h, &calls[0].done, tb_ms(10000)));
    assert_true(tb_run_until(&h, &calls[1].done, tb_ms(10000)));
    assert_int_equal(calls[0].status, ENT_OK);
    assert_int_equal(calls[1].status, ENT_OK);
    assert_int_equal(calls[2].n_cb, 0);

    assert_int_equal(tb_ping(&cli.bus, "c", tb_ms(5000), &calls[2]), ENT_OK);
    assert_true(tb_run_until(&h, &calls[2].done, tb_ms(10000)));
    assert_int_equal(calls[2].status, ENT_OK);
    assert_string_equal(calls[2].instance, "c");

    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_peer_restart_reconnects(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    char listen[64];
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    tb_client_start(&cli, &h, "tcp", port, 8, NULL);
    assert_int_equal(tb_ping(&cli.bus, "before", tb_ms(5000), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_OK);
    assert_string_equal(call.daemon, "srv-a");

    /* The server goes away; a call made meanwhile waits for the next one. The pause lets
     * the client see the connection drop first: a request handed to a pipe that is being
     * torn down is re-sent correctly, but Debian's NNG 1.5.2 then leaks one reference to
     * it (about 1 run in 15 under LeakSanitizer), which would make this test flaky. */
    tb_server_stop(&srv, &h);
    tb_run_for(&h, 300);
    assert_int_equal(tb_ping(&cli.bus, "during", tb_ms(10000), &call), ENT_OK);
    tb_run_for(&h, 100);
    assert_false(call.done);
    snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", port);
    assert_int_equal(tb_server_start(&srv, &h, listen, NULL, "srv-b"), port);
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_OK);
    assert_string_equal(call.daemon, "srv-b");
    assert_string_equal(call.instance, "during");

    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_client_starts_before_server(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    char listen[64];
    tb_init(&h);
    /* Find a free port, then free it again. */
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "probe");
    tb_server_stop(&srv, &h);
    tb_client_start(&cli, &h, "tcp", port, 8, NULL);
    assert_int_equal(tb_ping(&cli.bus, "early", tb_ms(10000), &call), ENT_OK);
    snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", port);
    tb_server_start(&srv, &h, listen, NULL, "late-srv");
    assert_true(tb_run_until(&h, &call.done, tb_ms(10000)));
    assert_int_equal(call.status, ENT_OK);
    assert_string_equal(call.daemon, "late-srv");
    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_close_completes_outstanding_calls(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    struct tb_call refused;
    tb_init(&h);
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    srv.mode = TB_HOLD;
    tb_client_start(&cli, &h, "tcp", port, 4, NULL);
    assert_int_equal(tb_ping(&cli.bus, "held", tb_ms(10000), &call), ENT_OK);
    uint64_t t0 = ent_now_ms();
    while (srv.n_held < 1 && ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(&h, 20);
    assert_int_equal(srv.n_held, 1);

    ent_bus_client_close(&cli.bus, tb_on_client_closed);
    /* Closing: new calls are refused; the outstanding one completes on the loop. */
    assert_int_equal(tb_ping(&cli.bus, "late", 1000, &refused), ENT_ECLOSED);
    assert_false(call.done);
    assert_true(tb_run_until(&h, &cli.closed, tb_ms(5000)));
    assert_int_equal(call.n_cb, 1);
    assert_int_equal(call.status, ENT_ECLOSED);
    assert_int_equal(refused.n_cb, 0);

    /* The server may still answer; nobody listens and nothing breaks. */
    srv.mode = TB_ANSWER;
    tb_server_answer(&srv, srv.held[0], "held");
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

/* A raw REQ peer on its own thread: garbage, then an already-expired request. */
struct raw_peer {
    int port;
    int garbage_code;
    int expired_code;
    uint64_t expired_id;
    atomic_bool done;
};

static int raw_exchange(nng_socket sock, const void *buf, size_t len, uint64_t *req_id)
{
    nng_msg *msg = NULL;
    if (nng_send(sock, (void *)buf, len, 0) != 0)
        return -2;
    if (nng_recvmsg(sock, &msg, 0) != 0)
        return -3;
    Entitle__V1__Response *resp =
        entitle__v1__response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    nng_msg_free(msg);
    if (resp == NULL)
        return -4;
    int code = resp->status != NULL ? (int)resp->status->code : 0;
    if (req_id != NULL)
        *req_id = resp->request_id;
    entitle__v1__response__free_unpacked(resp, NULL);
    return code;
}

static void raw_peer_run(void *arg)
{
    struct raw_peer *rp = arg;
    nng_socket sock;
    char url[64];
    rp->garbage_code = -1;
    rp->expired_code = -1;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", rp->port);
    if (nng_req0_open(&sock) == 0) {
        nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, (nng_duration)tb_ms(10000));
        nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, (nng_duration)tb_ms(10000));
        if (nng_dial(sock, url, NULL, 0) == 0) {
            static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
            rp->garbage_code = raw_exchange(sock, garbage, sizeof(garbage), NULL);

            Entitle__V1__RequestHeader hdr = ENTITLE__V1__REQUEST_HEADER__INIT;
            Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
            Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
            hdr.request_id = 4242;
            hdr.deadline_unix_ms = 1; /* 1970 */
            req.header = &hdr;
            req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
            req.ping = &ping;
            uint8_t buf[128];
            size_t len = entitle__v1__request__pack(&req, buf);
            rp->expired_code = raw_exchange(sock, buf, len, &rp->expired_id);
        }
        nng_close(sock);
    }
    atomic_store(&rp->done, true);
}

static void test_bus_server_answers_bad_and_expired_requests(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct raw_peer rp = {0};
    uv_thread_t thread;
    tb_init(&h);
    rp.port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    atomic_init(&rp.done, false);
    assert_int_equal(uv_thread_create(&thread, raw_peer_run, &rp), 0);
    uint64_t t0 = ent_now_ms();
    while (!atomic_load(&rp.done) && ent_now_ms() - t0 < tb_ms(30000))
        tb_run_for(&h, 20);
    assert_int_equal(uv_thread_join(&thread), 0);
    assert_int_equal(rp.garbage_code, ENT_EPROTO);
    assert_int_equal(rp.expired_code, ENT_ETIMEDOUT);
    assert_int_equal(rp.expired_id, 4242);
    assert_int_equal(srv.handled, 0); /* the handler saw neither */
    assert_int_equal(ent_bus_server_stats(&srv.bus)->results[ENT_EPROTO], 1);
    assert_int_equal(ent_bus_server_stats(&srv.bus)->results[ENT_ETIMEDOUT], 1);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_init_rejects_bad_config(void **state)
{
    (void)state;
    struct tb_harness h;
    struct ent_bus_client c;
    struct ent_bus_server s;
    tb_init(&h);
    const char *bad[] = {"nope://127.0.0.1:1"};
    struct ent_bus_client_cfg cfg = {.addrs = bad, .n_addrs = 1};
    assert_int_equal(ent_bus_client_init(&c, &h.loop, &cfg), ENT_EINVAL);
    cfg.n_addrs = 0;
    assert_int_equal(ent_bus_client_init(&c, &h.loop, &cfg), ENT_EINVAL);
    /* tls+tcp without TLS settings is a configuration error, not silent plaintext. */
    const char *tls_addr[] = {"tls+tcp://127.0.0.1:1"};
    cfg.addrs = tls_addr;
    cfg.n_addrs = 1;
    assert_int_equal(ent_bus_client_init(&c, &h.loop, &cfg), ENT_ECONFIG);

    /* A port already bound. */
    struct tb_server srv;
    char listen[64];
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "srv-a");
    snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", port);
    struct ent_bus_server_cfg scfg = {.listen = listen};
    assert_int_equal(ent_bus_server_init(&s, &h.loop, &scfg, tb_on_request, NULL), ENT_EUNAVAIL);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_round_trip_ping),
        cmocka_unit_test(test_bus_typed_error_status),
        cmocka_unit_test(test_bus_deadline_exceeded_drops_late_reply),
        cmocka_unit_test(test_bus_saturation_refuses_then_recovers),
        cmocka_unit_test(test_bus_peer_restart_reconnects),
        cmocka_unit_test(test_bus_client_starts_before_server),
        cmocka_unit_test(test_bus_close_completes_outstanding_calls),
        cmocka_unit_test(test_bus_server_answers_bad_and_expired_requests),
        cmocka_unit_test(test_bus_init_rejects_bad_config),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rc;
}
