/* SPDX-License-Identifier: Apache-2.0 */
/* ent/bus.h change events over real NNG PUB/SUB on 127.0.0.1: the publisher stamps name,
 * seq and time; the subscriber flags the first event after a connect, consecutive events
 * don't, a skipped seq does, and a restarted publisher (new connection, seq from 1) does;
 * the link callback and ent_bus_sub_links() follow connections to every publisher, including
 * one that is not listening yet when the subscriber starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "test_bus_support.h"

struct seen {
    uint64_t seq;
    bool gap;
    char publisher[32];
    char subscriber_id[32];
    uint64_t time_unix_ms;
};

struct sink {
    struct ent_bus_sub sub;
    struct seen events[64];
    unsigned n;
    bool closed;
    unsigned links_up, links_down; /* link callbacks seen */
};

static void on_link(bool up, void *ud)
{
    struct sink *k = ud;
    if (up)
        k->links_up++;
    else
        k->links_down++;
}

static void on_event(const Entitle__V1__ChangeEvent *ev, bool gap, void *ud)
{
    struct sink *k = ud;
    assert_true(k->n < ENT_ARRAY_LEN(k->events));
    struct seen *s = &k->events[k->n++];
    s->seq = ev->seq;
    s->gap = gap;
    s->time_unix_ms = ev->time_unix_ms;
    snprintf(s->publisher, sizeof(s->publisher), "%s", ev->publisher);
    snprintf(s->subscriber_id, sizeof(s->subscriber_id), "%s", ev->subscriber_id);
}

static void on_sub_closed(struct ent_bus_sub *s)
{
    struct sink *k = ENT_CONTAINER_OF(s, struct sink, sub);
    k->closed = true;
}

static void sink_start(struct sink *k, struct tb_harness *h, int port)
{
    char addr[64];
    memset(k, 0, sizeof(*k));
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
    const char *addrs[] = {addr};
    assert_int_equal(ent_bus_sub_init(&k->sub, &h->loop, addrs, 1, NULL, on_event, k), ENT_OK);
}

static void sink_stop(struct sink *k, struct tb_harness *h)
{
    ent_bus_sub_close(&k->sub, on_sub_closed);
    assert_true(tb_run_until(h, &k->closed, tb_ms(5000)));
}

static ent_err publish(struct ent_bus_pub *p, const char *subscriber)
{
    Entitle__V1__ChangeEvent ev = ENTITLE__V1__CHANGE_EVENT__INIT;
    ev.kind = ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER;
    ev.subscriber_id = (char *)subscriber;
    ev.subscriber_version = 7;
    return ent_bus_publish(p, &ev);
}

/* Publishes until the subscriber has seen something (connecting takes a moment and PUB
 * drops what it cannot deliver), bounded. */
static void publish_until_seen(struct ent_bus_pub *p, struct sink *k, struct tb_harness *h,
                               unsigned want)
{
    uint64_t t0 = ent_now_ms();
    while (k->n < want && ent_now_ms() - t0 < tb_ms(10000)) {
        assert_int_equal(publish(p, "probe"), ENT_OK);
        tb_run_for(h, 20);
    }
    assert_true(k->n >= want);
}

static void test_bus_event_seq_and_gap_flag(void **state)
{
    (void)state;
    struct tb_harness h;
    struct ent_bus_pub pub;
    struct sink k;
    char listen[64];
    tb_init(&h);
    assert_int_equal(ent_bus_pub_init(&pub, "tcp://127.0.0.1:0", NULL, "policyd-1"), ENT_OK);
    int port = ent_bus_pub_port(&pub);
    assert_true(port > 0);
    sink_start(&k, &h, port);

    /* The publisher stamps seq from 1 and hands it back. */
    Entitle__V1__ChangeEvent ev = ENTITLE__V1__CHANGE_EVENT__INIT;
    ev.subscriber_id = (char *)"first";
    uint64_t before = ent_wall_ms();
    assert_int_equal(ent_bus_publish(&pub, &ev), ENT_OK);
    assert_int_equal(ev.seq, 1);
    assert_true(ev.time_unix_ms >= before);

    publish_until_seen(&pub, &k, &h, 1);
    /* First event over this connection: a gap, whatever its seq. */
    assert_true(k.events[0].gap);
    assert_string_equal(k.events[0].publisher, "policyd-1");
    assert_true(k.events[0].time_unix_ms >= before);

    /* Everything after it, in flight or new, is consecutive. */
    unsigned start = k.n;
    assert_int_equal(publish(&pub, "sub-a"), ENT_OK);
    assert_int_equal(publish(&pub, "sub-b"), ENT_OK);
    assert_int_equal(publish(&pub, "sub-c"), ENT_OK);
    uint64_t t0 = ent_now_ms();
    while ((k.n == 0 || strcmp(k.events[k.n - 1].subscriber_id, "sub-c") != 0) &&
           ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(&h, 10);
    assert_true(k.n >= start + 3);
    for (unsigned i = 1; i < k.n; i++) {
        assert_false(k.events[i].gap);
        assert_int_equal(k.events[i].seq, k.events[i - 1].seq + 1);
    }
    assert_string_equal(k.events[k.n - 2].subscriber_id, "sub-b");

    /* The publisher restarts on the same port: new connection and seq from 1 -> gap. */
    ent_bus_pub_close(&pub);
    snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", port);
    assert_int_equal(ent_bus_pub_init(&pub, listen, NULL, "policyd-1"), ENT_OK);
    unsigned before_restart = k.n;
    publish_until_seen(&pub, &k, &h, before_restart + 1);
    /* Flagged even when the new seq happens to be last + 1: the connection is new. */
    assert_true(k.events[before_restart].gap);

    sink_stop(&k, &h);
    ent_bus_pub_close(&pub);
    tb_fini(&h);
}

/* A raw PUB socket sends hand-made seqs to show the subscriber's rule in isolation. */
static int raw_send(nng_socket sock, const char *publisher, uint64_t seq)
{
    Entitle__V1__ChangeEvent ev = ENTITLE__V1__CHANGE_EVENT__INIT;
    uint8_t buf[256];
    ev.publisher = (char *)publisher;
    ev.seq = seq;
    size_t len = entitle__v1__change_event__pack(&ev, buf);
    return nng_send(sock, buf, len, 0);
}

static void test_bus_event_skipped_seq_is_gap(void **state)
{
    (void)state;
    struct tb_harness h;
    struct sink k;
    nng_socket raw;
    nng_listener l;
    int port = 0;
    tb_init(&h);
    assert_int_equal(nng_pub0_open(&raw), 0);
    assert_int_equal(nng_listen(raw, "tcp://127.0.0.1:0", &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
    sink_start(&k, &h, port);

    uint64_t seq = 0;
    uint64_t t0 = ent_now_ms();
    while (k.n == 0 && ent_now_ms() - t0 < tb_ms(10000)) {
        assert_int_equal(raw_send(raw, "p1", ++seq), 0);
        tb_run_for(&h, 20);
    }
    assert_true(k.n > 0);
    assert_true(k.events[0].gap);
    /* Let probes still in flight arrive; the last one sent is the last one seen. */
    tb_run_for(&h, 200);
    unsigned base = k.n;
    assert_int_equal(k.events[base - 1].seq, seq);
    /* seq+1: no gap; seq+3: two missing -> gap; seq+4: no gap; another publisher: gap. */
    assert_int_equal(raw_send(raw, "p1", seq + 1), 0);
    assert_int_equal(raw_send(raw, "p1", seq + 3), 0);
    assert_int_equal(raw_send(raw, "p1", seq + 4), 0);
    assert_int_equal(raw_send(raw, "p2", 10), 0);
    t0 = ent_now_ms();
    while (k.n < base + 4 && ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(&h, 10);
    assert_int_equal(k.n, base + 4);
    assert_false(k.events[base].gap);
    assert_int_equal(k.events[base].seq, seq + 1);
    assert_true(k.events[base + 1].gap);
    assert_false(k.events[base + 2].gap);
    assert_true(k.events[base + 3].gap);
    assert_string_equal(k.events[base + 3].publisher, "p2");

    /* Garbage is dropped without a callback. */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(nng_send(raw, (void *)garbage, sizeof(garbage), 0), 0);
    assert_int_equal(raw_send(raw, "p2", 11), 0);
    t0 = ent_now_ms();
    while (k.n < base + 5 && ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(&h, 10);
    assert_int_equal(k.n, base + 5);
    assert_false(k.events[base + 4].gap);

    sink_stop(&k, &h);
    nng_close(raw);
    tb_fini(&h);
}

static void wait_links(struct sink *k, struct tb_harness *h, unsigned ups, unsigned downs)
{
    uint64_t t0 = ent_now_ms();
    while ((k->links_up < ups || k->links_down < downs) && ent_now_ms() - t0 < tb_ms(10000))
        tb_run_for(h, 10);
    assert_int_equal(k->links_up, ups);
    assert_int_equal(k->links_down, downs);
}

static void test_bus_event_links_follow_connections(void **state)
{
    (void)state;
    struct tb_harness h;
    struct ent_bus_pub a, b;
    struct sink k;
    char addr_a[64], addr_b[64];
    size_t up = 9, total = 9;
    tb_init(&h);
    /* Two ports that nothing listens on yet. */
    assert_int_equal(ent_bus_pub_init(&a, "tcp://127.0.0.1:0", NULL, "pa"), ENT_OK);
    assert_int_equal(ent_bus_pub_init(&b, "tcp://127.0.0.1:0", NULL, "pb"), ENT_OK);
    snprintf(addr_a, sizeof(addr_a), "tcp://127.0.0.1:%d", ent_bus_pub_port(&a));
    snprintf(addr_b, sizeof(addr_b), "tcp://127.0.0.1:%d", ent_bus_pub_port(&b));
    ent_bus_pub_close(&a);
    ent_bus_pub_close(&b);

    memset(&k, 0, sizeof(k));
    const char *addrs[] = {addr_a, addr_b};
    assert_int_equal(ent_bus_sub_init(&k.sub, &h.loop, addrs, 2, NULL, on_event, &k), ENT_OK);
    ent_bus_sub_on_link(&k.sub, on_link);
    tb_run_for(&h, 150);
    ent_bus_sub_links(&k.sub, &up, &total);
    assert_int_equal(total, 2);
    assert_int_equal(up, 0);
    assert_int_equal(k.links_up, 0);

    /* The first publisher appears: the subscriber re-dials and says so. */
    assert_int_equal(ent_bus_pub_init(&a, addr_a, NULL, "pa"), ENT_OK);
    wait_links(&k, &h, 1, 0);
    ent_bus_sub_links(&k.sub, &up, &total);
    assert_int_equal(up, 1);
    assert_int_equal(total, 2);

    /* Then the second: every dialer is connected. */
    assert_int_equal(ent_bus_pub_init(&b, addr_b, NULL, "pb"), ENT_OK);
    wait_links(&k, &h, 2, 0);
    ent_bus_sub_links(&k.sub, &up, &total);
    assert_int_equal(up, 2);

    /* One goes away: told at once, without waiting for an event. */
    ent_bus_pub_close(&a);
    wait_links(&k, &h, 2, 1);
    ent_bus_sub_links(&k.sub, &up, &total);
    assert_int_equal(up, 1);
    assert_int_equal(total, 2);

    /* And comes back. */
    assert_int_equal(ent_bus_pub_init(&a, addr_a, NULL, "pa"), ENT_OK);
    wait_links(&k, &h, 3, 1);
    ent_bus_sub_links(&k.sub, &up, &total);
    assert_int_equal(up, 2);
    assert_int_equal(k.n, 0); /* no events were published */

    sink_stop(&k, &h);
    ent_bus_pub_close(&a);
    ent_bus_pub_close(&b);
    tb_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_event_seq_and_gap_flag),
        cmocka_unit_test(test_bus_event_skipped_seq_is_gap),
        cmocka_unit_test(test_bus_event_links_follow_connections),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rc;
}
