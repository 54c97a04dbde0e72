/* SPDX-License-Identifier: Apache-2.0 */
/* authd end to end over the bus: the built entitle-authd binary runs on 127.0.0.1 with free
 * ports, a temporary SQLite store and keyrings; the test provisions a subscriber with
 * CredentialPut and drives whole EAP exchanges through AuthStart/AuthContinue with the
 * simulated USIM of test_authd_support.h acting as the handset: success, wrong RES, bad
 * AT_MAC, resync, expired ticket, replay of a closed exchange, tampered ticket, the 5th round
 * refused, pseudonym identity, unknown subscriber; then TokenVerify, TemporaryToken,
 * TokenRevoke and CredentialDelete. A second test runs two authd processes on one database
 * and checks that the SQNs they hand out (read back from AUTN by the USIM) never collide.
 * Every daemon is stopped with SIGTERM and must exit 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "../common/test_bus_support.h"
#include "test_authd_support.h"

#define IMSI    "001010000000001"
#define ID_AKA  "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"
#define ID_AKAP "6001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"

/* A port that was free a moment ago on 127.0.0.1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

struct daemon_proc {
    pid_t pid;
    int bus_port;
    int ops_port;
    char conf[320];
};

struct env {
    struct ta_dir dir;
    struct tb_harness h;
    struct daemon_proc d[2];
    struct tb_client c[2];
    struct ta_usim usim;
};

static void daemon_spawn(struct env *e, struct daemon_proc *d, int idx)
{
    char yaml[2048];
    const char *build = getenv("ENTITLE_BUILD_DIR");
    char bin[512];

    assert_non_null(build);
    snprintf(bin, sizeof(bin), "%s/authd/entitle-authd", build);
    assert_int_equal(access(bin, X_OK), 0);
    d->bus_port = free_port();
    d->ops_port = free_port();
    snprintf(d->conf, sizeof(d->conf), "%s/authd%d.yaml", e->dir.path, idx);
    snprintf(yaml, sizeof(yaml),
             "log:\n  level: warn\n"
             "ops:\n  listen: 127.0.0.1:%d\n"
             "bus:\n  listen: tcp://127.0.0.1:%d\n"
             "store:\n  path: %s\n  busy_timeout: 20s\n"
             "drain:\n  grace: 3s\n"
             "daemon:\n  instance: authd-test-%d\n"
             "auth:\n  seal_keyring: %s\n  kek_file: %s\n  home_networks: [\"001-01\"]\n"
             "  network_name: WLAN\n  exchange_ttl: 2s\n  token_validity: 1h\n",
             d->ops_port, d->bus_port, e->dir.db, idx, e->dir.seal, e->dir.kek);
    ta_write(d->conf, yaml);
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        execl(bin, bin, "--config", d->conf, (char *)NULL);
        _exit(127);
    }
}

static void daemon_stop(struct daemon_proc *d)
{
    int st = 0;
    assert_int_equal(kill(d->pid, SIGTERM), 0);
    assert_int_equal(waitpid(d->pid, &st, 0), d->pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- synchronous calls over the loop ---- */

struct sync_call {
    bool done;
    ent_err status;
    Entitle__V1__Response *resp;
};

static void on_sync_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct sync_call *c = ud;
    c->done = true;
    c->status = status;
    c->resp = resp;
}

/* Sends req on client i and returns the reply (status OK required; caller frees). */
static Entitle__V1__Response *call(struct env *e, int i, Entitle__V1__Request *req)
{
    struct sync_call c = {0};
    assert_int_equal(ent_bus_call(&e->c[i].bus, req, tb_ms(8000), "trace-authd", on_sync_reply, &c),
                     ENT_OK);
    assert_true(tb_run_until(&e->h, &c.done, tb_ms(10000)));
    assert_int_equal(c.status, ENT_OK);
    assert_non_null(c.resp);
    return c.resp;
}

static void wait_ready(struct env *e, int i)
{
    uint64_t deadline = ent_now_ms() + tb_ms(15000);
    for (;;) {
        Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
        Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
        struct sync_call c = {0};
        ping.from = "test";
        req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
        req.ping = &ping;
        assert_int_equal(ent_bus_call(&e->c[i].bus, &req, 500, NULL, on_sync_reply, &c), ENT_OK);
        assert_true(tb_run_until(&e->h, &c.done, tb_ms(3000)));
        bool ready = c.status == ENT_OK && c.resp->ping && c.resp->ping->ready;
        if (c.resp)
            entitle__v1__response__free_unpacked(c.resp, NULL);
        if (ready)
            return;
        int st = 0;
        assert_int_equal(waitpid(e->d[i].pid, &st, WNOHANG), 0); /* still running */
        assert_true(ent_now_ms() < deadline);
        usleep(50 * 1000);
    }
}

static void env_start(struct env *e, int n)
{
    memset(e, 0, sizeof(*e));
    ta_dir_init(&e->dir);
    tb_init(&e->h);
    for (int i = 0; i < n; i++) {
        daemon_spawn(e, &e->d[i], i);
        tb_client_start(&e->c[i], &e->h, "tcp", e->d[i].bus_port, 64, NULL);
        wait_ready(e, i);
    }
    ta_usim_init(&e->usim, ID_AKA);
}

static void env_stop(struct env *e, int n)
{
    for (int i = 0; i < n; i++) {
        tb_client_stop(&e->c[i], &e->h);
        daemon_stop(&e->d[i]);
    }
    tb_fini(&e->h);
    ta_dir_fini(&e->dir);
}

/* ---- RPC helpers ---- */

static void credential_put(struct env *e, const char *imsi)
{
    Entitle__V1__CredentialPutRequest cp = ENTITLE__V1__CREDENTIAL_PUT_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    uint8_t k[16], opc[16];
    ta_hex(TA_K, k, 16);
    ta_hex(TA_OPC, opc, 16);
    cp.subscriber_id = (char *)imsi;
    cp.k = (ProtobufCBinaryData){16, k};
    cp.opc = (ProtobufCBinaryData){16, opc};
    req.body_case = ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT;
    req.credential_put = &cp;
    Entitle__V1__Response *r = call(e, 0, &req);
    assert_int_equal(r->status ? r->status->code : 0, 0);
    assert_int_equal(r->body_case, ENTITLE__V1__RESPONSE__BODY_CREDENTIAL_PUT);
    entitle__v1__response__free_unpacked(r, NULL);
}

static Entitle__V1__Response *auth_start(struct env *e, int i, const char *identity)
{
    Entitle__V1__AuthStartRequest as = ENTITLE__V1__AUTH_START_REQUEST__INIT;
    Entitle__V1__RequestParams p = ENTITLE__V1__REQUEST_PARAMS__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    char *apps[] = {"ap2004"};
    p.n_app_ids = 1;
    p.app_ids = apps;
    p.vers = "0";
    as.eap_identity = (char *)identity;
    as.params = &p;
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_START;
    req.auth_start = &as;
    Entitle__V1__Response *r = call(e, i, &req);
    assert_int_equal(r->status ? r->status->code : 0, 0);
    assert_int_equal(r->body_case, ENTITLE__V1__RESPONSE__BODY_AUTH);
    return r;
}

static Entitle__V1__Response *auth_continue(struct env *e, int i, const ProtobufCBinaryData *ticket,
                                            const uint8_t *pkt, size_t len)
{
    Entitle__V1__AuthContinueRequest ac = ENTITLE__V1__AUTH_CONTINUE_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    ac.ticket = *ticket;
    ac.eap_packet = (ProtobufCBinaryData){len, (uint8_t *)pkt};
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE;
    req.auth_continue = &ac;
    Entitle__V1__Response *r = call(e, i, &req);
    assert_int_equal(r->status ? r->status->code : 0, 0);
    assert_int_equal(r->body_case, ENTITLE__V1__RESPONSE__BODY_AUTH);
    return r;
}

/* One full exchange: start, answer with `mode`; returns the last AuthResponse's envelope. */
static Entitle__V1__Response *exchange(struct env *e, const char *identity, enum ta_mode mode)
{
    uint8_t resp[ENT_EAP_AKA_PACKET_MAX];
    size_t rl = 0;
    e->usim.identity = identity;
    Entitle__V1__Response *s = auth_start(e, 0, identity);
    assert_int_equal(s->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE);
    ta_usim_answer(&e->usim, s->auth->eap_packet.data, s->auth->eap_packet.len, mode, resp, &rl);
    Entitle__V1__Response *r = auth_continue(e, 0, &s->auth->ticket, resp, rl);
    entitle__v1__response__free_unpacked(s, NULL);
    return r;
}

static void expect_failure(Entitle__V1__Response *r, const char *reason)
{
    assert_int_equal(r->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_FAILURE);
    assert_string_equal(r->auth->failure_reason, reason);
    assert_string_equal(r->auth->token, "");
    entitle__v1__response__free_unpacked(r, NULL);
}

static Entitle__V1__TokenVerifyResponse *token_verify(struct env *e, const char *token,
                                                      Entitle__V1__Response **env_out)
{
    Entitle__V1__TokenVerifyRequest tv = ENTITLE__V1__TOKEN_VERIFY_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    tv.token = (char *)token;
    tv.imsi = IMSI;
    req.body_case = ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY;
    req.token_verify = &tv;
    *env_out = call(e, 0, &req);
    assert_int_equal((*env_out)->body_case, ENTITLE__V1__RESPONSE__BODY_TOKEN_VERIFY);
    return (*env_out)->token_verify;
}

static void test_authd_bus_full_exchanges(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    Entitle__V1__Response *r, *v;
    uint8_t resp[ENT_EAP_AKA_PACKET_MAX];
    size_t rl = 0;
    (void)state;

    env_start(e, 1);
    credential_put(e, IMSI);

    /* success, with the first request's params echoed and a token that verifies */
    r = exchange(e, ID_AKA, TA_GOOD);
    assert_int_equal(r->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS);
    assert_string_equal(r->auth->subscriber_id, IMSI);
    assert_non_null(r->auth->params);
    assert_string_equal(r->auth->params->app_ids[0], "ap2004");
    char *token = strdup(r->auth->token);
    entitle__v1__response__free_unpacked(r, NULL);
    Entitle__V1__TokenVerifyResponse *tv = token_verify(e, token, &v);
    assert_true(tv->valid);
    assert_string_equal(tv->subscriber_id, IMSI);
    entitle__v1__response__free_unpacked(v, NULL);

    /* AKA' */
    r = exchange(e, ID_AKAP, TA_GOOD);
    assert_int_equal(r->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS);
    entitle__v1__response__free_unpacked(r, NULL);

    expect_failure(exchange(e, ID_AKA, TA_WRONG_RES), "bad_res");
    expect_failure(exchange(e, ID_AKA, TA_BAD_MAC), "bad_mac");

    /* resync: same ticket, a fresh challenge, then success */
    e->usim.identity = ID_AKA;
    ta_usim_seen(&e->usim, 90000);
    Entitle__V1__Response *s = auth_start(e, 0, ID_AKA);
    ta_usim_answer(&e->usim, s->auth->eap_packet.data, s->auth->eap_packet.len, TA_GOOD, resp, &rl);
    r = auth_continue(e, 0, &s->auth->ticket, resp, rl);
    assert_int_equal(r->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE);
    assert_int_equal(r->auth->ticket.len, 0);
    ta_usim_answer(&e->usim, r->auth->eap_packet.data, r->auth->eap_packet.len, TA_GOOD, resp, &rl);
    entitle__v1__response__free_unpacked(r, NULL);
    r = auth_continue(e, 0, &s->auth->ticket, resp, rl);
    assert_int_equal(r->auth->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS);
    entitle__v1__response__free_unpacked(r, NULL);
    /* replay of the closed exchange */
    expect_failure(auth_continue(e, 0, &s->auth->ticket, resp, rl), "replay");
    entitle__v1__response__free_unpacked(s, NULL);

    /* tampered ticket */
    s = auth_start(e, 0, ID_AKA);
    ta_usim_answer(&e->usim, s->auth->eap_packet.data, s->auth->eap_packet.len, TA_GOOD, resp, &rl);
    s->auth->ticket.data[s->auth->ticket.len / 2] ^= 0x04;
    expect_failure(auth_continue(e, 0, &s->auth->ticket, resp, rl), "tampered");
    entitle__v1__response__free_unpacked(s, NULL);

    /* 5th round refused: the handset answers Sync-Failure every time */
    s = auth_start(e, 0, ID_AKA);
    ProtobufCBinaryData pkt = s->auth->eap_packet;
    Entitle__V1__Response *last = NULL;
    unsigned challenges = 1;
    for (;;) {
        ta_usim_seen(&e->usim, 200000ULL * challenges);
        ta_usim_answer(&e->usim, pkt.data, pkt.len, TA_GOOD, resp, &rl);
        if (last)
            entitle__v1__response__free_unpacked(last, NULL);
        last = auth_continue(e, 0, &s->auth->ticket, resp, rl);
        if (last->auth->outcome != ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE)
            break;
        challenges++;
        pkt = last->auth->eap_packet;
    }
    assert_int_equal(challenges, 4);
    expect_failure(last, "rounds");
    entitle__v1__response__free_unpacked(s, NULL);

    /* expired ticket (exchange_ttl is 2 s) */
    s = auth_start(e, 0, ID_AKA);
    ta_usim_answer(&e->usim, s->auth->eap_packet.data, s->auth->eap_packet.len, TA_GOOD, resp, &rl);
    usleep(2200 * 1000);
    expect_failure(auth_continue(e, 0, &s->auth->ticket, resp, rl), "expired");
    entitle__v1__response__free_unpacked(s, NULL);

    /* pseudonym identity and unknown subscriber: refused at AuthStart */
    r = auth_start(e, 0, "2001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org");
    expect_failure(r, "pseudonym");
    r = auth_start(e, 0, "0001010000000042@nai.epc.mnc001.mcc001.3gppnetwork.org");
    expect_failure(r, "unknown_subscriber");

    /* temporary token, then revoke: both tokens die */
    Entitle__V1__TemporaryTokenRequest tt = ENTITLE__V1__TEMPORARY_TOKEN_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    char *targets[] = {"AcquireConfiguration"};
    tt.token = token;
    tt.n_operation_targets = 1;
    tt.operation_targets = targets;
    tt.app_id = "ap2009";
    req.body_case = ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN;
    req.temporary_token = &tt;
    r = call(e, 0, &req);
    assert_int_equal(r->body_case, ENTITLE__V1__RESPONSE__BODY_TEMPORARY_TOKEN);
    char *temp = strdup(r->temporary_token->temporary_token);
    entitle__v1__response__free_unpacked(r, NULL);
    tv = token_verify(e, temp, &v);
    assert_true(tv->valid);
    assert_true(tv->temporary);
    assert_string_equal(tv->app_id, "ap2009");
    entitle__v1__response__free_unpacked(v, NULL);

    Entitle__V1__TokenRevokeRequest trq = ENTITLE__V1__TOKEN_REVOKE_REQUEST__INIT;
    trq.subscriber_id = IMSI;
    req.body_case = ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE;
    req.token_revoke = &trq;
    r = call(e, 0, &req);
    assert_int_equal(r->token_revoke->token_generation, 1);
    entitle__v1__response__free_unpacked(r, NULL);
    tv = token_verify(e, token, &v);
    assert_false(tv->valid);
    assert_string_equal(tv->reason, "revoked");
    entitle__v1__response__free_unpacked(v, NULL);
    tv = token_verify(e, temp, &v);
    assert_false(tv->valid);
    entitle__v1__response__free_unpacked(v, NULL);

    /* CredentialDelete: the subscriber becomes unknown; bad input is EINVAL */
    Entitle__V1__CredentialDeleteRequest cd = ENTITLE__V1__CREDENTIAL_DELETE_REQUEST__INIT;
    cd.subscriber_id = IMSI;
    req.body_case = ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE;
    req.credential_delete = &cd;
    r = call(e, 0, &req);
    assert_int_equal(r->status ? r->status->code : 0, 0);
    entitle__v1__response__free_unpacked(r, NULL);
    expect_failure(auth_start(e, 0, ID_AKA), "unknown_subscriber");
    cd.subscriber_id = "not-an-imsi";
    r = call(e, 0, &req);
    assert_int_equal(r->status->code, ENT_EINVAL);
    entitle__v1__response__free_unpacked(r, NULL);

    free(token);
    free(temp);
    env_stop(e, 1);
    free(e);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Two authd processes on one SQLite file: AuthStarts for one subscriber, alternating and
 * overlapping, never carry the same SQN. */
static void test_authd_bus_two_replicas_distinct_sqn(void **state)
{
    enum { N = 300 };
    struct env *e = calloc(1, sizeof(*e));
    struct sync_call calls[N];
    uint64_t sqns[N];
    (void)state;

    env_start(e, 2);
    credential_put(e, IMSI);
    memset(calls, 0, sizeof(calls));
    Entitle__V1__AuthStartRequest as = ENTITLE__V1__AUTH_START_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    as.eap_identity = ID_AKA;
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_START;
    req.auth_start = &as;
    for (int i = 0; i < N; i += 32) {
        int end = i + 32 < N ? i + 32 : N;
        for (int j = i; j < end; j++)
            assert_int_equal(
                ent_bus_call(&e->c[j % 2].bus, &req, tb_ms(20000), NULL, on_sync_reply, &calls[j]),
                ENT_OK);
        for (int j = i; j < end; j++)
            assert_true(tb_run_until(&e->h, &calls[j].done, tb_ms(30000)));
    }
    for (int j = 0; j < N; j++) {
        struct ent_eap_aka_challenge c;
        struct ent_aka_usim_result ur;
        assert_int_equal(calls[j].status, ENT_OK);
        Entitle__V1__AuthResponse *a = calls[j].resp->auth;
        assert_non_null(a);
        assert_int_equal(a->outcome, ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE);
        assert_int_equal(ent_eap_aka_challenge_parse(&c, a->eap_packet.data, a->eap_packet.len),
                         ENT_OK);
        assert_int_equal(ent_aka_usim_verify(&ur, e->usim.k, e->usim.opc, c.rand, c.autn), ENT_OK);
        sqns[j] = ur.sqn;
        entitle__v1__response__free_unpacked(calls[j].resp, NULL);
    }
    qsort(sqns, N, sizeof(sqns[0]), cmp_u64);
    for (int j = 1; j < N; j++)
        assert_true(sqns[j] != sqns[j - 1]);
    env_stop(e, 2);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authd_bus_full_exchanges),
        cmocka_unit_test(test_authd_bus_two_replicas_distinct_sqn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
