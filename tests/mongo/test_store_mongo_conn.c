/* SPDX-License-Identifier: Apache-2.0 */
/* What only the mongo backend has: a connection. A bad store.uri or database name is a clear
 * EINVAL at open (and the message never quotes a password), an unreachable server is a clear
 * EUNAVAIL at open, and a server that goes away while the store is open makes ping and every
 * op answer EUNAVAIL (nothing crashes, nothing half-done) until it is back, when the same
 * ent_store works again without being reopened. The last test runs its own
 * entitle-mongo-test-server (ENTITLE_MONGO_SERVER, set by mongo_fixture.sh run) so it can
 * stop and restart it; MONGO_URI is only used to know the backend is configured. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/store.h"
#include "ent/util.h"

static double g_scale = 1.0;

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A port that was free a moment ago on 127.0.0.1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void test_mongo_bad_uri_and_database(void **state)
{
    (void)state;
    struct ent_store *s = NULL;
    char err[256] = "";
    struct ent_store_cfg c = {.backend = "mongo", .database = "x"};
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_EINVAL);
    assert_non_null(strstr(err, "store.uri"));

    c.uri = "postgres://127.0.0.1/";
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_EINVAL);
    assert_non_null(strstr(err, "bad store.uri"));

    /* A malformed URI with credentials: the reason must not echo the password. */
    c.uri = "mongodb://admin:s3cr3tpw@/entitle";
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_EINVAL);
    assert_null(strstr(err, "s3cr3tpw"));

    c.uri = "mongodb://127.0.0.1:1/";
    c.database = "bad.name";
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_EINVAL);
    assert_non_null(strstr(err, "store.database"));
    assert_null(s);
}

static void test_mongo_unreachable_server_is_startup_error(void **state)
{
    (void)state;
    int port = free_port();
    assert_true(port > 0);
    char uri[128];
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=300", port);
    struct ent_store_cfg c = {.backend = "mongo", .uri = uri, .database = "entitle"};
    struct ent_store *s = NULL;
    char err[512] = "";
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_EUNAVAIL);
    assert_null(s);
    char hostport[32];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", port);
    assert_non_null(strstr(err, "no usable server"));
    assert_non_null(strstr(err, hostport));
}

/* ---- a server of our own, stopped and restarted on the same port ---------------------- */

struct srv {
    char dir[PATH_MAX];
    char uri_file[PATH_MAX + 16];
    char listen[32];
    pid_t pid;
};

/* Starts the server binary on s->listen with data in s->dir and waits for its URI file. */
static void srv_start(struct srv *s, const char *bin)
{
    (void)unlink(s->uri_file);
    fflush(NULL);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        char data[PATH_MAX + 8];
        snprintf(data, sizeof(data), "%s/data", s->dir);
        execl(bin, bin, "-dir", data, "-listen", s->listen, "-uri-file", s->uri_file, "-log-level",
              "error", (char *)NULL);
        _exit(127);
    }
    long waited = 0, limit = (long)(60000 * g_scale);
    struct stat st;
    while (stat(s->uri_file, &st) != 0 || st.st_size == 0) {
        int status = 0;
        assert_int_equal(waitpid(s->pid, &status, WNOHANG), 0);
        assert_true(waited < limit);
        sleep_ms(50);
        waited += 50;
    }
}

static void srv_stop(struct srv *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
    s->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Polls ent_store_ping until it answers want, at most limit_ms. */
static ent_err ping_until(struct ent_store *st, ent_err want, long limit_ms)
{
    ent_err rc = ent_store_ping(st);
    for (long waited = 0; rc != want && waited < limit_ms; waited += 100) {
        sleep_ms(100);
        rc = ent_store_ping(st);
    }
    return rc;
}

static void test_mongo_lost_server_recovers_without_reopen(void **state)
{
    (void)state;
    const char *bin = getenv("ENTITLE_MONGO_SERVER"); /* main() checked it */
    static struct srv s;
    const char *tmp = getenv("TMPDIR");
    snprintf(s.dir, sizeof(s.dir), "%s/entitle-mongo-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(s.dir));
    snprintf(s.uri_file, sizeof(s.uri_file), "%s/uri", s.dir);
    int port = free_port();
    assert_true(port > 0);
    snprintf(s.listen, sizeof(s.listen), "127.0.0.1:%d", port);
    srv_start(&s, bin);

    /* Short selection timeout and heartbeat so the outage is seen quickly. */
    char uri[160];
    snprintf(uri, sizeof(uri),
             "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=500&heartbeatFrequencyMS=500", port);
    struct ent_store_cfg c = {.backend = "mongo", .uri = uri, .database = "recovery"};
    struct ent_store *st = NULL;
    char err[512] = "";
    assert_int_equal(ent_store_open(&st, &c, err, sizeof(err)), ENT_OK);
    struct ent_store_doc d = {.key = "001010000000001", .data = (uint8_t *)"gold", .len = 4};
    assert_int_equal(ent_store_insert(st, ENT_COLL_SUBSCRIBERS, &d), ENT_OK);
    int64_t v = 0;
    assert_int_equal(ent_store_incr(st, "sqn", "001010000000001", 32, &v), ENT_OK);
    assert_int_equal(v, 32);

    srv_stop(&s);
    /* Readiness says so, promptly and without blocking for long. */
    assert_int_equal(ping_until(st, ENT_EUNAVAIL, (long)(10000 * g_scale)), ENT_EUNAVAIL);
    assert_int_equal(ent_store_incr(st, "sqn", "001010000000001", 32, &v), ENT_EUNAVAIL);
    struct ent_store_doc got = {0};
    assert_int_equal(ent_store_get(st, ENT_COLL_SUBSCRIBERS, d.key, &got), ENT_EUNAVAIL);
    uint64_t ver = 0;
    assert_int_equal(ent_store_put(st, ENT_COLL_SUBSCRIBERS, &d, &ver), ENT_EUNAVAIL);

    /* Same port, same data: the open store finds it again by itself. */
    srv_start(&s, bin);
    assert_int_equal(ping_until(st, ENT_OK, (long)(30000 * g_scale)), ENT_OK);
    assert_int_equal(ent_store_get(st, ENT_COLL_SUBSCRIBERS, d.key, &got), ENT_OK);
    assert_int_equal(got.version, 1);
    assert_memory_equal(got.data, "gold", 4);
    ent_store_doc_free(&got);
    /* The failed increment changed nothing. */
    assert_int_equal(ent_store_incr(st, "sqn", "001010000000001", 32, &v), ENT_OK);
    assert_int_equal(v, 64);
    ent_store_close(st);
    srv_stop(&s);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s.dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const char *m = getenv("ENTITLE_TEST_TIMEOUT_MULTIPLIER");
    if (m != NULL && atof(m) > 0)
        g_scale = atof(m);
    /* Probe whether the backend is compiled in at all. */
    struct ent_store *s = NULL;
    char err[256] = "";
    struct ent_store_cfg probe = {.backend = "mongo"};
    if (ent_store_open(&s, &probe, err, sizeof(err)) == ENT_EUNSUPPORTED) {
        printf("skipped: %s\n", err);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mongo_bad_uri_and_database),
        cmocka_unit_test(test_mongo_unreachable_server_is_startup_error),
    };
    const struct CMUnitTest server_tests[] = {
        cmocka_unit_test(test_mongo_lost_server_recovers_without_reopen),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* The server cases need a server this suite starts and kills itself. Without it the
     * suite says skipped (77), never passed, so CI=true turns it into a failure. */
    const char *bin = getenv("ENTITLE_MONGO_SERVER");
    if (bin == NULL || access(bin, X_OK) != 0) {
        printf("skipped: ENTITLE_MONGO_SERVER (the built test server) is not available\n");
        return failed ? failed : 77;
    }
    return failed + cmocka_run_group_tests(server_tests, NULL, NULL);
}
