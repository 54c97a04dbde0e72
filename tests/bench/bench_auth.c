/* SPDX-License-Identifier: Apache-2.0 */
/* bench_auth: full EAP-AKA authentications per second against one entitle-authd over the
 * bus, on SQLite. Starts the daemon given as argv[1] with a temporary store, provisions
 * SUBSCRIBERS subscribers with CredentialPut, then keeps INFLIGHT exchanges going for
 * SECONDS: AuthStart -> the USIM side (entitle_aka: verify AUTN, RES, keys, AT_MAC) ->
 * AuthContinue -> success. Prints rates and latency; never asserts on timing.
 * Environment: BENCH_SECONDS (5), BENCH_INFLIGHT (32), BENCH_SUBSCRIBERS (1000),
 * BENCH_SQN_LEASE (1: one store increment per vector), BENCH_PING (0; 1: two Pings instead of
 * each authentication, answered on authd's loop thread: the floor the bus sets per RPC; 2:
 * two TokenVerify of an unopenable token: the bus plus authd's thread-pool hand-off, no
 * store). CPU per authentication is reported for authd and for this client
 * separately, since both share the machine's cores. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "aka/aka.h"
#include "aka/eap_aka.h"
#include "ent/bus.h"
#include "ent/util.h"

static const char *K = "465b5ce8b199b49faa5f0a2ee238a6bc";
static const char *OPC = "cd63cb71954a9f4e48a5994e37a02baf";

struct bench;

struct slot {
    struct bench *b;
    unsigned sub;
    uint64_t started_ns;
    ProtobufCBinaryData ticket;
    uint8_t tbuf[1024];
};

struct bench {
    uv_loop_t loop;
    struct ent_bus_client c;
    uint8_t k[16], opc[16];
    unsigned subs, inflight;
    uint64_t end_ms;
    uint64_t ok, failed, errors, active;
    double lat_sum;
    double lat_max;
    uint64_t next_sub;
    bool stopping;
    unsigned ping; /* BENCH_PING: each "authentication" is two floor RPCs (1 Ping, 2 pool) */
};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        exit(2);
    close(fd);
    return ntohs(a.sin_port);
}

/* CPU seconds (user, system) a process has used so far, from /proc/<pid>/stat (fields 14
 * and 15, in clock ticks). false when the file cannot be read. */
static bool proc_cpu(pid_t pid, double *user, double *sys)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *user = (double)ut / hz;
    *sys = (double)st / hz;
    return true;
}

static void self_cpu(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void imsi_of(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "00101%010u", i);
}

static void identity_of(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "000101%010u@nai.epc.mnc001.mcc001.3gppnetwork.org", i);
}

static void slot_start(struct slot *s);

/* BENCH_PING: two floor RPCs stand for AuthStart + AuthContinue. Mode 1 sends Ping (loop
 * thread only), mode 2 a TokenVerify of a token that cannot be opened (authd's thread-pool
 * round trip with no store access). */
static void on_floor(ent_err st, Entitle__V1__Response *r, void *ud);

static ent_err floor_call(struct slot *s)
{
    Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
    Entitle__V1__TokenVerifyRequest tv = ENTITLE__V1__TOKEN_VERIFY_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    if (s->b->ping == 1) {
        req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
        req.ping = &ping;
    } else {
        tv.token = "bench-not-a-token";
        req.body_case = ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY;
        req.token_verify = &tv;
    }
    return ent_bus_call(&s->b->c, &req, 10000, NULL, on_floor, s);
}

static void on_floor(ent_err st, Entitle__V1__Response *r, void *ud)
{
    struct slot *s = ud;
    struct bench *b = s->b;
    bool second = s->ticket.len != 0;
    bool ok = st == ENT_OK && (r->status == NULL || r->status->code == 0);
    if (r)
        entitle__v1__response__free_unpacked(r, NULL);
    if (ok && !second) {
        s->ticket.len = 1;
        if (floor_call(s) == ENT_OK)
            return;
    }
    b->active--;
    s->ticket.len = 0;
    if (ok && second) {
        double l = (double)(ent_now_ns() - s->started_ns) / 1e6;
        b->ok++;
        b->lat_sum += l;
        if (l > b->lat_max)
            b->lat_max = l;
    } else {
        b->errors++;
    }
    slot_start(s);
}

static void on_continue(ent_err st, Entitle__V1__Response *r, void *ud)
{
    struct slot *s = ud;
    struct bench *b = s->b;
    b->active--;
    if (st != ENT_OK || !r->auth) {
        b->errors++;
    } else if (r->auth->outcome == ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS) {
        double l = (double)(ent_now_ns() - s->started_ns) / 1e6;
        b->ok++;
        b->lat_sum += l;
        if (l > b->lat_max)
            b->lat_max = l;
    } else {
        b->failed++;
    }
    if (r)
        entitle__v1__response__free_unpacked(r, NULL);
    slot_start(s);
}

static void on_start(ent_err st, Entitle__V1__Response *r, void *ud)
{
    struct slot *s = ud;
    struct bench *b = s->b;
    struct ent_eap_aka_challenge c;
    struct ent_aka_usim_result ur;
    struct ent_eap_aka_keys keys;
    struct ent_eap_aka_response resp = {0};
    uint8_t pkt[ENT_EAP_AKA_PACKET_MAX];
    size_t pl = 0;
    char id[96];

    if (st != ENT_OK || !r->auth || r->auth->outcome != ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE ||
        r->auth->ticket.len > sizeof(s->tbuf)) {
        b->errors++;
        b->active--;
        if (r)
            entitle__v1__response__free_unpacked(r, NULL);
        slot_start(s);
        return;
    }
    /* the handset */
    identity_of(s->sub, id, sizeof(id));
    if (ent_eap_aka_challenge_parse(&c, r->auth->eap_packet.data, r->auth->eap_packet.len) !=
            ENT_OK ||
        ent_aka_usim_verify(&ur, b->k, b->opc, c.rand, c.autn) != ENT_OK ||
        ent_eap_aka_keys_derive(&keys, (const uint8_t *)id, strlen(id), ur.ik, ur.ck) != ENT_OK)
        exit(3);
    resp.type = ENT_EAP_TYPE_AKA;
    resp.identifier = c.identifier;
    resp.subtype = ENT_EAP_AKA_CHALLENGE;
    memcpy(resp.res, ur.res, ur.res_len);
    resp.res_bits = (uint16_t)(ur.res_len * 8);
    resp.has_mac = true;
    if (ent_eap_aka_response_build(pkt, sizeof(pkt), &pl, &resp, keys.k_aut, keys.k_aut_len) !=
        ENT_OK)
        exit(3);
    memcpy(s->tbuf, r->auth->ticket.data, r->auth->ticket.len);
    s->ticket = (ProtobufCBinaryData){r->auth->ticket.len, s->tbuf};
    entitle__v1__response__free_unpacked(r, NULL);

    Entitle__V1__AuthContinueRequest ac = ENTITLE__V1__AUTH_CONTINUE_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    ac.ticket = s->ticket;
    ac.eap_packet = (ProtobufCBinaryData){pl, pkt};
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE;
    req.auth_continue = &ac;
    if (ent_bus_call(&b->c, &req, 10000, NULL, on_continue, s) != ENT_OK) {
        b->errors++;
        b->active--;
    }
}

static void slot_start(struct slot *s)
{
    struct bench *b = s->b;
    char id[96];
    if (ent_now_ms() >= b->end_ms)
        return;
    s->sub = (unsigned)(b->next_sub++ % b->subs);
    if (b->ping) {
        s->started_ns = ent_now_ns();
        s->ticket.len = 0;
        if (floor_call(s) == ENT_OK)
            b->active++;
        else
            b->errors++;
        return;
    }
    identity_of(s->sub, id, sizeof(id));
    Entitle__V1__AuthStartRequest as = ENTITLE__V1__AUTH_START_REQUEST__INIT;
    Entitle__V1__RequestParams p = ENTITLE__V1__REQUEST_PARAMS__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    char *apps[] = {"ap2004"};
    p.n_app_ids = 1;
    p.app_ids = apps;
    p.vers = "0";
    p.terminal_id = "356938035643809";
    as.eap_identity = id;
    as.params = &p;
    req.body_case = ENTITLE__V1__REQUEST__BODY_AUTH_START;
    req.auth_start = &as;
    s->started_ns = ent_now_ns();
    if (ent_bus_call(&b->c, &req, 10000, NULL, on_start, s) == ENT_OK)
        b->active++;
    else
        b->errors++;
}

struct put_ctx {
    unsigned done, failed;
};

static void on_put(ent_err st, Entitle__V1__Response *r, void *ud)
{
    struct put_ctx *pc = ud;
    pc->done++;
    if (st != ENT_OK || (r->status && r->status->code != 0))
        pc->failed++;
    if (r)
        entitle__v1__response__free_unpacked(r, NULL);
}

static bool ping_ready(struct bench *b)
{
    struct put_ctx pc = {0};
    Entitle__V1__PingRequest ping = ENTITLE__V1__PING_REQUEST__INIT;
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    req.body_case = ENTITLE__V1__REQUEST__BODY_PING;
    req.ping = &ping;
    if (ent_bus_call(&b->c, &req, 300, NULL, on_put, &pc) != ENT_OK)
        return false;
    while (pc.done == 0)
        uv_run(&b->loop, UV_RUN_ONCE);
    return pc.failed == 0;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    int64_t x = 0;
    return v && ent_parse_i64(v, 1, 1000000, &x) == ENT_OK ? (uint64_t)x : def;
}

static void on_closed(struct ent_bus_client *c)
{
    (void)c;
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    char dir[] = "/tmp/bench-auth-XXXXXX";
    char conf[256], path[256], yaml[1024];
    int bus_port = free_port(), ops_port = free_port();
    uint64_t seconds = env_u64("BENCH_SECONDS", 5), lease = env_u64("BENCH_SQN_LEASE", 1);

    if (argc < 2) {
        fprintf(stderr, "usage: bench_auth path/to/entitle-authd\n");
        return 2;
    }
    b.inflight = (unsigned)env_u64("BENCH_INFLIGHT", 32);
    b.subs = (unsigned)env_u64("BENCH_SUBSCRIBERS", 1000);
    b.ping = (unsigned)env_u64("BENCH_PING", 0);
    ent_hex_decode(K, b.k, 16);
    ent_hex_decode(OPC, b.opc, 16);
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(path, sizeof(path), "%s/seal.keyring", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "s1 0102030405060708091011121314151617181920212223242526272829303132\n");
    fclose(f);
    snprintf(path, sizeof(path), "%s/kek.hex", dir);
    f = fopen(path, "w");
    fprintf(f, "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0\n");
    fclose(f);
    snprintf(conf, sizeof(conf), "%s/authd.yaml", dir);
    snprintf(yaml, sizeof(yaml),
             "log:\n  level: warn\nops:\n  listen: 127.0.0.1:%d\nbus:\n  listen: "
             "tcp://127.0.0.1:%d\n  workers: 128\nstore:\n  path: %s/e.db\nauth:\n  seal_keyring: "
             "%s/seal.keyring\n  kek_file: %s/kek.hex\n  home_networks: [\"001-01\"]\n"
             "  sqn_lease: %llu\n",
             ops_port, bus_port, dir, dir, dir, (unsigned long long)lease);
    f = fopen(conf, "w");
    fputs(yaml, f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[1], argv[1], "--config", conf, (char *)NULL);
        _exit(127);
    }
    uv_loop_init(&b.loop);
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", bus_port);
    const char *addrs[] = {addr};
    struct ent_bus_client_cfg cc = {
        .addrs = addrs, .n_addrs = 1, .max_inflight = 1024, .caller = "bench", .resend_ms = 60000};
    if (ent_bus_client_init(&b.c, &b.loop, &cc) != ENT_OK)
        return 2;
    uint64_t deadline = ent_now_ms() + 10000;
    while (!ping_ready(&b)) {
        if (ent_now_ms() > deadline) {
            fprintf(stderr, "authd did not become ready\n");
            kill(pid, SIGKILL);
            return 1;
        }
        usleep(50000);
    }
    /* provision */
    struct put_ctx pc = {0};
    uint64_t t0 = ent_now_ms();
    for (unsigned i = 0; i < b.subs; i++) {
        char imsi[32];
        Entitle__V1__CredentialPutRequest cp = ENTITLE__V1__CREDENTIAL_PUT_REQUEST__INIT;
        Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
        imsi_of(i, imsi, sizeof(imsi));
        cp.subscriber_id = imsi;
        cp.k = (ProtobufCBinaryData){16, b.k};
        cp.opc = (ProtobufCBinaryData){16, b.opc};
        req.body_case = ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT;
        req.credential_put = &cp;
        while (ent_bus_call(&b.c, &req, 30000, NULL, on_put, &pc) != ENT_OK)
            uv_run(&b.loop, UV_RUN_ONCE);
        while (i + 1 - pc.done > 64)
            uv_run(&b.loop, UV_RUN_ONCE);
    }
    while (pc.done < b.subs)
        uv_run(&b.loop, UV_RUN_ONCE);
    uint64_t prov_ms = ent_now_ms() - t0;

    struct slot *slots = calloc(b.inflight, sizeof(*slots));
    double du0 = 0, ds0 = 0, du1 = 0, ds1 = 0, cu0, cs0, cu1, cs1;
    bool dcpu = proc_cpu(pid, &du0, &ds0);
    self_cpu(&cu0, &cs0);
    t0 = ent_now_ms();
    b.end_ms = t0 + seconds * 1000;
    for (unsigned i = 0; i < b.inflight; i++) {
        slots[i].b = &b;
        slot_start(&slots[i]);
    }
    while (b.active > 0)
        uv_run(&b.loop, UV_RUN_ONCE);
    double el = (double)(ent_now_ms() - t0) / 1000.0;
    dcpu = dcpu && proc_cpu(pid, &du1, &ds1);
    self_cpu(&cu1, &cs1);

    printf(
        "bench_auth: store=sqlite(synchronous=FULL) subscribers=%u inflight=%u sqn_lease=%llu%s\n",
        b.subs, b.inflight, (unsigned long long)lease,
        b.ping == 1   ? " FLOOR: 2 Pings per \"authentication\""
        : b.ping == 2 ? " FLOOR: 2 unopenable TokenVerify per \"authentication\""
                      : "");
    printf("  provisioning: %u CredentialPut in %llu ms (%.0f/s)\n", b.subs,
           (unsigned long long)prov_ms, prov_ms ? b.subs * 1000.0 / (double)prov_ms : 0.0);
    printf("  full authentications: %llu ok, %llu failed, %llu errors in %.2f s = %.0f auth/s\n",
           (unsigned long long)b.ok, (unsigned long long)b.failed, (unsigned long long)b.errors, el,
           (double)b.ok / el);
    printf("  latency (AuthStart..success): mean %.2f ms, max %.2f ms\n",
           b.ok ? b.lat_sum / (double)b.ok : 0.0, b.lat_max);
    if (b.ok > 0) {
        double per = 1e6 / (double)b.ok;
        if (dcpu)
            printf("  authd CPU per authentication: %.0f us (user %.0f, sys %.0f)\n",
                   (du1 - du0 + ds1 - ds0) * per, (du1 - du0) * per, (ds1 - ds0) * per);
        printf("  bench client CPU per authentication: %.0f us (user %.0f, sys %.0f)\n",
               (cu1 - cu0 + cs1 - cs0) * per, (cu1 - cu0) * per, (cs1 - cs0) * per);
    }
    printf("  store commits per authentication: %s (sqn incr, round insert, round close)\n",
           lease > 1 ? "~2" : "3");

    ent_bus_client_close(&b.c, on_closed);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    free(slots);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
