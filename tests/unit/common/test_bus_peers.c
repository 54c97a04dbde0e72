/* SPDX-License-Identifier: Apache-2.0 */
/* Bus peer sets (common/src/bus_peers.c): a host name in a client's address list is resolved
 * and dialled once per address, every resolved replica is reachable (which connected pipe a
 * call takes is NNG REQ's choice), and a replica that leaves the answer is dropped without a
 * restart. Loopback only (127.0.0.1, 127.0.0.2, ::1). */
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/src/bus_int.h"
#include "test_bus_support.h"

/* NNG 1.5.2 sometimes keeps a dialer's internal objects after nng_dialer_close() when the
 * dialer is between connection attempts (about 1 run in 16 of this file, all allocations
 * inside libnng, some from nng_dialer_create). This test closes dialers on purpose, so for
 * this binary only LeakSanitizer ignores allocations made inside libnng; every other test
 * keeps full leak checking of NNG objects. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libnng.so\n";
}

/* Distinct addresses "localhost" resolves to here (127.0.0.1, often ::1 too). */
static size_t localhost_addresses(void)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    assert_int_equal(getaddrinfo("localhost", "7000", &hints, &res), 0);
    size_t n = 0;
    char seen[8][64];
    for (struct addrinfo *ai = res; ai != NULL && n < 8; ai = ai->ai_next) {
        char host[64];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST) !=
            0)
            continue;
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            dup = dup || strcmp(seen[i], host) == 0;
        if (!dup)
            snprintf(seen[n++], sizeof(seen[0]), "%s", host);
    }
    freeaddrinfo(res);
    return n;
}

static void client_start_named(struct tb_client *tc, struct tb_harness *h, const char *host,
                               int port, uint64_t resolve_ms)
{
    memset(tc, 0, sizeof(*tc));
    snprintf(tc->addr, sizeof(tc->addr), "tcp://%s:%d", host, port);
    const char *addrs[] = {tc->addr};
    struct ent_bus_client_cfg cfg = {.addrs = addrs,
                                     .n_addrs = 1,
                                     .max_inflight = 8,
                                     .caller = "test-peers",
                                     .reconnect_min_ms = 20,
                                     .reconnect_max_ms = 200,
                                     .resolve_interval_ms = resolve_ms};
    assert_int_equal(ent_bus_client_init(&tc->bus, &h->loop, &cfg), ENT_OK);
}

static bool ping_ok(struct tb_client *tc, struct tb_harness *h)
{
    struct tb_call call;
    if (tb_ping(&tc->bus, "peers", 1000, &call) != ENT_OK)
        return false;
    tb_run_until(h, &call.done, tb_ms(3000));
    return call.done && call.status == ENT_OK && call.code <= 0; /* no status = OK */
}

/* Runs the loop until the name has been resolved at least once and the client's dialer
 * count is `want` (bounded). */
static bool wait_dialers(struct tb_client *tc, struct tb_harness *h, size_t want)
{
    uint64_t deadline = ent_now_ms() + tb_ms(5000);
    while ((bus_peerset_answers(bus_client_peers(&tc->bus)) == 0 ||
            ent_bus_client_dialers(&tc->bus) != want) &&
           ent_now_ms() < deadline)
        tb_run_for(h, 20);
    return ent_bus_client_dialers(&tc->bus) == want;
}

static void test_bus_peers_name_resolves_to_one_dialer_per_address(void **state)
{
    (void)state;
    struct tb_harness h;
    tb_init(&h);
    struct tb_server srv;
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "authd");
    struct tb_client tc;
    client_start_named(&tc, &h, "localhost", port, 100);
    /* The name's fallback dialer is replaced by one dialer per address. */
    assert_true(wait_dialers(&tc, &h, localhost_addresses()));
    assert_true(ping_ok(&tc, &h));
    assert_true(srv.handled >= 1);
    tb_client_stop(&tc, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_peers_follow_replicas_joining_and_leaving(void **state)
{
    (void)state;
    struct tb_harness h;
    tb_init(&h);
    struct tb_server a, b;
    int port = tb_server_start(&a, &h, "tcp://127.0.0.1:0", NULL, "authd-a");
    char listen_b[64];
    snprintf(listen_b, sizeof(listen_b), "tcp://127.0.0.2:%d", port);
    tb_server_start(&b, &h, listen_b, NULL, "authd-b");

    struct tb_client tc;
    client_start_named(&tc, &h, "localhost", port, 3600 * 1000);
    assert_true(wait_dialers(&tc, &h, localhost_addresses()));

    /* The name now answers with both replicas, as a headless Service would. */
    char url_a[64], url_b[64];
    snprintf(url_a, sizeof(url_a), "tcp://127.0.0.1:%d", port);
    snprintf(url_b, sizeof(url_b), "tcp://127.0.0.2:%d", port);
    const char *both[] = {url_a, url_b};
    bus_peerset_apply(bus_client_peers(&tc.bus), 0, both, 2);
    assert_int_equal(ent_bus_client_dialers(&tc.bus), 2);
    assert_true(ping_ok(&tc, &h));
    assert_true(a.handled + b.handled > 0);

    /* Replica a leaves the answer: its dialer and connection go, every call reaches b. */
    const char *only_b[] = {url_b};
    bus_peerset_apply(bus_client_peers(&tc.bus), 0, only_b, 1);
    assert_int_equal(ent_bus_client_dialers(&tc.bus), 1);
    tb_run_for(&h, 100);
    unsigned a_before = a.handled, b_before = b.handled;
    for (int i = 0; i < 10; i++)
        assert_true(ping_ok(&tc, &h));
    assert_int_equal(a.handled, a_before);
    assert_int_equal(b.handled, b_before + 10);

    /* And back: only a is answered now, a new dialer reaches it. */
    const char *only_a[] = {url_a};
    bus_peerset_apply(bus_client_peers(&tc.bus), 0, only_a, 1);
    assert_int_equal(ent_bus_client_dialers(&tc.bus), 1);
    tb_run_for(&h, 100);
    a_before = a.handled;
    b_before = b.handled;
    for (int i = 0; i < 10; i++)
        assert_true(ping_ok(&tc, &h));
    assert_int_equal(b.handled, b_before);
    assert_int_equal(a.handled, a_before + 10);

    tb_client_stop(&tc, &h);
    tb_server_stop(&a, &h);
    tb_server_stop(&b, &h);
    tb_fini(&h);
}

static void test_bus_peers_ip_literal_needs_no_resolution(void **state)
{
    (void)state;
    struct tb_harness h;
    tb_init(&h);
    struct tb_server srv;
    int port = tb_server_start(&srv, &h, "tcp://127.0.0.1:0", NULL, "authd");
    struct tb_client tc;
    tb_client_start(&tc, &h, "tcp", port, 4, NULL);
    assert_int_equal(ent_bus_client_dialers(&tc.bus), 1);
    tb_run_for(&h, 50);
    assert_int_equal(bus_peerset_answers(bus_client_peers(&tc.bus)), 0);
    assert_true(ping_ok(&tc, &h));
    tb_client_stop(&tc, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_peers_name_resolves_to_one_dialer_per_address),
        cmocka_unit_test(test_bus_peers_follow_replicas_joining_and_leaving),
        cmocka_unit_test(test_bus_peers_ip_literal_needs_no_resolution),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rc;
}
