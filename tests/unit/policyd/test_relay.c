/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's push relay (policyd/relay.h) against real parts: a SQLite queue in a temporary
 * directory, the real bus client on a libuv loop run by the test thread, and a real NNG REP
 * socket on 127.0.0.1 standing in for notifyd, served by a thread that can be absent
 * (connection refused), silent (receives, never answers), answer OK or refuse with EINVAL.
 * Covers: an intent retried until notifyd answers, then deleted, always with one key; an
 * intent left by a stopped relay delivered by the next one; a crashed replica's leased
 * intent taken over after its lease; a refused intent dead-lettered instead of resent; a
 * fan-out batch written as one item, resent whole after a transient failure, its refused
 * push split off and dead-lettered alone; the backoff bounds. Every wait is bounded; nothing
 * asserts how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/util.h"
#include "ent_test_net.h"
#include "relay.h"

/* FAKE_PICKY: answers OK, except EINVAL for keys containing ":bad". */
enum fake_mode { FAKE_SILENT, FAKE_OK, FAKE_EINVAL, FAKE_PICKY };

/* The stand-in notifyd. */
struct fake {
    pthread_t thread;
    nng_socket sock;
    atomic_bool running;
    atomic_int mode;
    atomic_int received;
    atomic_int answered;
    atomic_int other_keys; /* requests whose idempotency key differed from `key` */
    char key[128];
};

struct env {
    char dir[64];
    char db[128];
    char url[64];
    int port;
    uv_loop_t loop;
    struct ent_store *queue;
    struct ent_bus_client client;
    struct pd_relay relay;
    bool client_closed;
    bool relay_closed;
    struct fake fake;
};

static struct env E;

#define KEY "policyd:001010000000001:imei-1:1700000000000:7"

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (atomic_load(&f->running)) {
        nng_msg *msg = NULL;
        if (nng_recvmsg(f->sock, &msg, 0) != 0)
            continue; /* receive timeout: look at `running` again */
        Entitle__V1__Request *req =
            entitle__v1__request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
        nng_msg_free(msg);
        atomic_fetch_add(&f->received, 1);
        if (!req || req->body_case != ENTITLE__V1__REQUEST__BODY_PUSH || !req->header ||
            strcmp(req->push->idempotency_key, f->key) != 0 ||
            strcmp(req->header->idempotency_key, f->key) != 0 || req->push->n_app_ids != 1 ||
            strcmp(req->push->app_ids[0], "ap2004") != 0)
            atomic_fetch_add(&f->other_keys, 1);
        int mode = atomic_load(&f->mode);
        if (req && mode != FAKE_SILENT) {
            Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
            Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
            Entitle__V1__PushResponse pr = ENTITLE__V1__PUSH_RESPONSE__INIT;
            resp.request_id = req->header ? req->header->request_id : 0;
            resp.status = &st;
            bool refuse =
                mode == FAKE_EINVAL ||
                (mode == FAKE_PICKY && req->body_case == ENTITLE__V1__REQUEST__BODY_PUSH &&
                 strstr(req->push->idempotency_key, ":bad") != NULL);
            if (refuse) {
                st.code = (Entitle__V1__Code)ENT_EINVAL;
                st.message = "test refuses";
            } else {
                pr.outbox_id = 42;
                resp.body_case = ENTITLE__V1__RESPONSE__BODY_PUSH;
                resp.push = &pr;
            }
            size_t len = entitle__v1__response__get_packed_size(&resp);
            uint8_t *buf = malloc(len ? len : 1);
            entitle__v1__response__pack(&resp, buf);
            if (nng_send(f->sock, buf, len, 0) == 0)
                atomic_fetch_add(&f->answered, 1);
            free(buf);
        }
        if (req)
            entitle__v1__request__free_unpacked(req, NULL);
    }
    return NULL;
}

static void fake_start(enum fake_mode mode)
{
    struct fake *f = &E.fake;
    atomic_store(&f->mode, mode);
    snprintf(f->key, sizeof(f->key), "%s", KEY);
    assert_int_equal(nng_rep0_open(&f->sock), 0);
    assert_int_equal(nng_socket_set_ms(f->sock, NNG_OPT_RECVTIMEO, 50), 0);
    assert_int_equal(nng_listen(f->sock, E.url, NULL, 0), 0);
    atomic_store(&f->running, true);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(void)
{
    struct fake *f = &E.fake;
    if (!atomic_load(&f->running))
        return;
    atomic_store(&f->running, false);
    pthread_join(f->thread, NULL);
    nng_close(f->sock);
}

/* Runs the loop until cond() holds; fails the test after a generous bound. */
static void run_until(bool (*cond)(void), const char *what)
{
    uint64_t deadline = ent_now_ms() + (uint64_t)(30000 * ent_test_timeout_scale());
    while (!cond()) {
        if (ent_now_ms() > deadline)
            fail_msg("timed out waiting for %s", what);
        uv_run(&E.loop, UV_RUN_ONCE);
    }
}

static void queue_open(void)
{
    struct ent_store_cfg sc = {.path = E.db};
    char err[256];
    assert_int_equal(ent_store_open(&E.queue, &sc, err, sizeof(err)), ENT_OK);
}

static void relay_start(void)
{
    assert_int_equal(uv_loop_init(&E.loop), 0);
    const char *addrs[] = {E.url};
    struct ent_bus_client_cfg bc = {
        .addrs = addrs,
        .n_addrs = 1,
        .max_inflight = 16,
        .caller = "policyd",
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 100,
    };
    assert_int_equal(ent_bus_client_init(&E.client, &E.loop, &bc), ENT_OK);
    struct pd_relay_cfg rc = {
        .owner = "policyd-test",
        .call_timeout_ms = 300,
        .lease_ms = 1000,
        .backoff_min_ms = 20,
        .backoff_max_ms = 100,
        .poll_ms = 20,
        .batch = 8,
        .max_inflight = 8,
    };
    E.client_closed = E.relay_closed = false;
    assert_int_equal(pd_relay_init(&E.relay, &E.loop, E.queue, &E.client, &rc), ENT_OK);
}

static void on_client_closed(struct ent_bus_client *c)
{
    (void)c;
    E.client_closed = true;
}

static void on_relay_closed(struct pd_relay *r)
{
    (void)r;
    E.relay_closed = true;
}

static bool all_closed(void)
{
    return E.client_closed && E.relay_closed;
}

/* The order policyd_core_close() uses: relay, then the client its calls run on. */
static void relay_stop(void)
{
    pd_relay_close(&E.relay, on_relay_closed);
    ent_bus_client_close(&E.client, on_client_closed);
    run_until(all_closed, "relay and client closed");
    assert_int_equal(uv_run(&E.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&E.loop), 0);
}

static void intent_init(Entitle__V1__PushRequest *push)
{
    static char *apps[] = {"ap2004"};
    entitle__v1__push_request__init(push);
    push->subscriber_id = "001010000000001";
    push->terminal_id = "imei-1";
    push->app_ids = apps;
    push->n_app_ids = 1;
    push->idempotency_key = KEY;
    push->notif_token = "fcm-token-1";
    push->notif_action = 2;
    push->changed_unix_ms = ent_wall_ms();
}

static void enqueue_intent(void)
{
    Entitle__V1__PushRequest push;
    intent_init(&push);
    assert_int_equal(pd_relay_enqueue(&E.relay, &push), ENT_OK);
}

static void queue_depth(uint64_t *pending, uint64_t *dead)
{
    assert_int_equal(ent_store_outbox_stats(E.queue, (int64_t)ent_wall_ms(), pending, dead, NULL),
                     ENT_OK);
}

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    snprintf(E.dir, sizeof(E.dir), "/tmp/pd-relay-XXXXXX");
    assert_non_null(mkdtemp(E.dir));
    snprintf(E.db, sizeof(E.db), "%s/push.db", E.dir);
    E.port = ent_test_free_port();
    assert_true(E.port > 0);
    snprintf(E.url, sizeof(E.url), "tcp://127.0.0.1:%d", E.port);
    queue_open();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_stop();
    ent_store_close(E.queue);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", E.dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static bool two_retries(void)
{
    return E.relay.stats.retries >= 2;
}
static bool silent_retry(void)
{
    return atomic_load(&E.fake.received) >= 1 && E.relay.stats.retries >= 4;
}
static bool delivered(void)
{
    return E.relay.stats.delivered >= 1;
}
static bool one_retry(void)
{
    return E.relay.stats.retries >= 1;
}
static bool dead_lettered(void)
{
    return E.relay.stats.dead >= 1;
}

static void test_relay_retries_until_notifyd_answers(void **state)
{
    (void)state;
    relay_start();
    enqueue_intent();
    /* Nothing listens: each handoff times out and goes back with a backoff. */
    run_until(two_retries, "two failed handoffs with notifyd absent");
    assert_int_equal(E.relay.stats.delivered, 0);
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 1);
    /* notifyd up but not answering: the request arrives, the call times out, retried. */
    fake_start(FAKE_SILENT);
    run_until(silent_retry, "a request seen by a silent notifyd, and retried");
    assert_int_equal(E.relay.stats.delivered, 0);
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 1);
    /* notifyd answers: delivered, then deleted from the queue. */
    atomic_store(&E.fake.mode, FAKE_OK);
    run_until(delivered, "the intent acknowledged");
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 0);
    assert_int_equal(dead, 0);
    assert_int_equal(E.relay.stats.delivered, 1);
    assert_int_equal(E.relay.stats.dead, 0);
    assert_true(atomic_load(&E.fake.answered) >= 1);
    /* Every attempt carried the intent's one idempotency key (notifyd dedupes on it). */
    assert_int_equal(atomic_load(&E.fake.other_keys), 0);
    assert_true(E.relay.stats.sent >= 4);
    relay_stop();
}

static void test_relay_restart_delivers_pending_intent(void **state)
{
    (void)state;
    /* First life: notifyd absent, the intent stays queued; the relay stops. */
    relay_start();
    enqueue_intent();
    run_until(one_retry, "a failed handoff");
    relay_stop();
    ent_store_close(E.queue);
    E.queue = NULL;
    /* Second life over the same file, notifyd answering: delivered without a new change. */
    fake_start(FAKE_OK);
    queue_open();
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 1);
    relay_start();
    run_until(delivered, "the queued intent delivered after the restart");
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 0);
    assert_int_equal(E.relay.stats.queued, 0);
    assert_int_equal(atomic_load(&E.fake.other_keys), 0);
    relay_stop();
}

static void test_relay_takes_over_expired_lease(void **state)
{
    (void)state;
    /* A replica queued the intent, claimed it and died without an answer. */
    Entitle__V1__PushRequest push;
    intent_init(&push);
    uint8_t one[512], buf[600];
    size_t one_len = entitle__v1__push_request__get_packed_size(&push);
    assert_true(one_len <= sizeof(one));
    entitle__v1__push_request__pack(&push, one);
    /* The queue's item format: a PushIntent holding packed PushRequests. */
    ProtobufCBinaryData bin = {.len = one_len, .data = one};
    Entitle__V1__PushIntent intent = ENTITLE__V1__PUSH_INTENT__INIT;
    intent.pushes = &bin;
    intent.n_pushes = 1;
    size_t len = entitle__v1__push_intent__get_packed_size(&intent);
    assert_true(len <= sizeof(buf));
    entitle__v1__push_intent__pack(&intent, buf);
    assert_int_equal(
        ent_store_outbox_enqueue(E.queue, KEY, buf, len, (int64_t)ent_wall_ms(), NULL, NULL),
        ENT_OK);
    struct ent_store_outbox_item *items = NULL;
    size_t n = 0;
    assert_int_equal(ent_store_outbox_claim(E.queue, "crashed-replica", (int64_t)ent_wall_ms(), 300,
                                            1, &items, &n),
                     ENT_OK);
    assert_int_equal(n, 1);
    uint64_t crashed_token = items[0].lease_token;
    uint64_t id = items[0].id;
    ent_store_outbox_items_free(items, n);
    /* This relay takes it over once the lease ended and delivers it. */
    fake_start(FAKE_OK);
    relay_start();
    run_until(delivered, "the crashed replica's intent delivered after its lease");
    assert_int_equal(E.relay.stats.delivered, 1);
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 0);
    /* The crashed replica's stale lease can no longer change anything. */
    assert_int_equal(ent_store_outbox_ack(E.queue, id, crashed_token), ENT_ENOTFOUND);
    relay_stop();
}

static void test_relay_dead_letters_refused_intent(void **state)
{
    (void)state;
    fake_start(FAKE_EINVAL);
    relay_start();
    enqueue_intent();
    run_until(dead_lettered, "the refused intent dead-lettered");
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    assert_int_equal(dead, 1);
    assert_int_equal(E.relay.stats.retries, 0);
    assert_int_equal(E.relay.stats.delivered, 0);
    assert_int_equal(atomic_load(&E.fake.answered), 1);
    relay_stop();
}

static void test_relay_backoff_grows_capped_with_jitter(void **state)
{
    (void)state;
    const uint64_t rnds[] = {0, 1, 12345, UINT64_MAX / 3, UINT64_MAX};
    for (uint32_t a = 1; a <= 70; a++) {
        uint64_t d = 500;
        for (uint32_t i = 1; i < a && d < 60000; i++)
            d *= 2;
        if (d > 60000)
            d = 60000;
        for (size_t k = 0; k < ENT_ARRAY_LEN(rnds); k++) {
            uint64_t v = pd_relay_backoff_ms(a, 500, 60000, rnds[k]);
            assert_true(v >= d / 2);
            assert_true(v <= d);
        }
    }
    assert_int_equal(pd_relay_backoff_ms(UINT32_MAX, 500, 60000, 0), 30000);
    assert_int_equal(pd_relay_backoff_ms(1, 0, 0, 7), 1);
}

/* A batch of n pushes with keys "batch:<i>" (":bad" appended to index bad, if any). */
static void enqueue_batch(size_t n, size_t bad)
{
    static char *apps[] = {"ap2004"};
    struct pd_push_batch b = {0};
    for (size_t i = 0; i < n; i++) {
        char key[64], terminal[32];
        snprintf(key, sizeof(key), "batch:%zu%s", i, i == bad ? ":bad" : "");
        snprintf(terminal, sizeof(terminal), "imei-%zu", i);
        Entitle__V1__PushRequest push = ENTITLE__V1__PUSH_REQUEST__INIT;
        push.subscriber_id = "001010000000001";
        push.terminal_id = terminal;
        push.app_ids = apps;
        push.n_app_ids = 1;
        push.idempotency_key = key;
        push.notif_token = "fcm-token-1";
        push.notif_action = 2;
        assert_int_equal(pd_push_batch_add(&b, &push), ENT_OK);
    }
    Entitle__V1__PushRequest nokey = ENTITLE__V1__PUSH_REQUEST__INIT;
    assert_int_equal(pd_push_batch_add(&b, &nokey), ENT_EINVAL);
    assert_int_equal(b.n, n);
    assert_int_equal(pd_relay_enqueue_batch(&E.relay, &b), ENT_OK);
    assert_int_equal(b.n, 0);
    pd_push_batch_free(&b);
}

static bool queue_empty(void)
{
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    return pending == 0;
}

static bool five_delivered(void)
{
    return E.relay.stats.delivered >= 5;
}
static bool split_dead(void)
{
    return E.relay.stats.dead >= 1;
}

static void test_relay_batch_one_item_resent_whole_refusal_split(void **state)
{
    (void)state;
    /* notifyd absent: the batch is one queue item, retried as a whole. */
    relay_start();
    enqueue_batch(5, SIZE_MAX);
    uint64_t pending = 0, dead = 0;
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 1);
    assert_int_equal(E.relay.stats.queued, 5);
    run_until(two_retries, "two failed handoffs of the batch");
    fake_start(FAKE_PICKY);
    run_until(five_delivered, "every push of the batch delivered once notifyd answers");
    run_until(queue_empty, "the batch item deleted");
    relay_stop();
    fake_stop();

    /* One push notifyd refuses: the other four are done, the refused one is split off into
     * an intent of its own and becomes a dead letter after its own handoff. */
    fake_start(FAKE_PICKY);
    atomic_store(&E.fake.received, 0);
    relay_start();
    enqueue_batch(5, 2);
    run_until(split_dead, "the refused push dead-lettered");
    assert_int_equal(E.relay.stats.delivered, 4);
    queue_depth(&pending, &dead);
    assert_int_equal(pending, 0);
    assert_int_equal(dead, 1);
    /* the batch's 5 handoffs, then the split-off push's own one */
    assert_int_equal(atomic_load(&E.fake.received), 6);
    relay_stop();
}

int main(void)
{
    (void)ent_test_connect;
    (void)ent_test_http_wait_status;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relay_retries_until_notifyd_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_restart_delivers_pending_intent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_takes_over_expired_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_batch_one_item_resent_whole_refusal_split, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_dead_letters_refused_intent, setup, teardown),
        cmocka_unit_test(test_relay_backoff_grows_capped_with_jitter),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rc;
}
