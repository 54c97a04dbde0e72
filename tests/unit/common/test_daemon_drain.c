/* SPDX-License-Identifier: Apache-2.0 */
/* ent/daemon.h: the skeleton's drain. A test daemon with a slow "work" HTTP listener runs in
 * a child process; the parent puts requests in flight, sends SIGTERM and checks that every
 * request completes, new connections are refused, /readyz fails first during drain.delay,
 * and the process exits 0. Also: a bad config exits 1 naming the key. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "ent/daemon.h"
#include "ent_test_net.h"

#define WORK_DELAY_MS 1500

struct work_cfg {
    struct ent_daemon_cfg common;
    char *work_listen;
};

struct work_req {
    uv_timer_t timer;
    struct ent_http_server *srv;
    uint64_t id;
};

struct work {
    struct ent_http_server http;
    bool started;
};

static const struct ent_cfg_key work_keys[] = {
    ENT_CFG_KEY("work", "listen", ENT_CFG_STR, struct work_cfg, work_listen, NULL, 0, 0,
                "slow test listener"),
};

static void on_work_timer_closed(uv_handle_t *h)
{
    free(ENT_CONTAINER_OF((uv_timer_t *)h, struct work_req, timer));
}

static void on_work_timer(uv_timer_t *t)
{
    struct work_req *w = ENT_CONTAINER_OF(t, struct work_req, timer);
    ent_http_respond(w->srv, w->id, 200, NULL, 0, "done\n", 5);
    uv_close((uv_handle_t *)t, on_work_timer_closed);
}

static void on_work_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud)
{
    struct ent_daemon *d = ud;
    struct work_req *w = calloc(1, sizeof(*w));
    w->srv = srv;
    w->id = req->id;
    uv_timer_init(&d->loop, &w->timer);
    uv_timer_start(&w->timer, on_work_timer, WORK_DELAY_MS, 0);
}

static ent_err work_start(struct ent_daemon *d)
{
    struct work *w = d->priv;
    struct work_cfg *cfg = d->cfg;
    struct ent_http_server_cfg hc = {
        .listen = cfg->work_listen,
        .max_url = 1024,
        .max_header_bytes = 8192,
        .max_body = 8192,
        .max_connections = 64,
        .read_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .write_timeout_ms = 5000,
        .name = "work",
    };
    ent_err rc = ent_http_server_init(&w->http, &d->loop, &hc, on_work_request, d);
    w->started = rc == ENT_OK;
    return rc;
}

static void work_drain(struct ent_daemon *d)
{
    struct work *w = d->priv;
    ent_http_server_stop_accepting(&w->http);
}

static size_t work_inflight(struct ent_daemon *d)
{
    struct work *w = d->priv;
    return ent_http_server_inflight(&w->http);
}

static void on_work_closed(struct ent_http_server *srv)
{
    (void)srv;
}

static void work_stop(struct ent_daemon *d)
{
    struct work *w = d->priv;
    if (w->started)
        ent_http_server_close(&w->http, on_work_closed);
}

static const struct ent_daemon_ops work_daemon = {
    .name = "testd",
    .default_ops_listen = "127.0.0.1:0",
    .default_bus_listen = "tcp://127.0.0.1:0",
    .keys = work_keys,
    .n_keys = ENT_ARRAY_LEN(work_keys),
    .cfg_size = sizeof(struct work_cfg),
    .priv_size = sizeof(struct work),
    .start = work_start,
    .drain = work_drain,
    .inflight = work_inflight,
    .stop = work_stop,
};

/* The child of the running test, killed by the teardown if an assertion fails first (an
 * orphaned daemon would keep the test's output pipe open). */
static pid_t g_child;

struct child {
    pid_t pid;
    int ops_port;
    int work_port;
    char dir[64];
    char config[128];
};

static void child_start(struct child *c, const char *extra_yaml)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/ent-drain-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    c->ops_port = ent_test_free_port();
    c->work_port = ent_test_free_port();
    int bus_port = ent_test_free_port();
    snprintf(c->config, sizeof(c->config), "%s/testd.yaml", c->dir);
    FILE *f = fopen(c->config, "w");
    assert_non_null(f);
    fprintf(f,
            "ops:\n  listen: \"127.0.0.1:%d\"\nbus:\n  listen: \"tcp://127.0.0.1:%d\"\n"
            "store:\n  path: \"%s/test.db\"\nwork:\n  listen: \"127.0.0.1:%d\"\n%s",
            c->ops_port, bus_port, c->dir, c->work_port, extra_yaml);
    fclose(f);
    fflush(NULL);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid > 0)
        g_child = c->pid;
    if (c->pid == 0) {
        char log_path[160];
        snprintf(log_path, sizeof(log_path), "%s/out.log", c->dir);
        if (freopen(log_path, "w", stdout) == NULL)
            _exit(3);
        char *argv[] = {"testd", "--config", c->config, NULL};
        int rc = ent_daemon_main(&work_daemon, 3, argv);
        fflush(NULL);
        _exit(rc);
    }
    int scale = (int)ent_test_timeout_scale();
    assert_int_equal(ent_test_http_wait_status(c->ops_port, "/readyz", 200, 10000 * scale), 200);
}

static int kill_leftover_child(void **state)
{
    (void)state;
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = 0;
    }
    return 0;
}

static int child_wait(struct child *c)
{
    int status = 0;
    int waited = 0;
    while (waitpid(c->pid, &status, WNOHANG) == 0) {
        if (waited > 20000 * (int)ent_test_timeout_scale()) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            return -1;
        }
        usleep(20 * 1000);
        waited += 20;
    }
    g_child = 0;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", c->dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_daemon_drain_finishes_inflight_and_refuses_new(void **state)
{
    (void)state;
    struct child c;
    child_start(&c, "drain:\n  grace: 10s\n");
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = ent_test_connect(c.work_port, 10000);
        assert_true(fds[i] >= 0);
        assert_int_equal(ent_test_send_all(fds[i], "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    usleep(300 * 1000); /* the requests reach the handler, which holds them WORK_DELAY_MS */
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    usleep(300 * 1000); /* one drain tick (25 ms) closes the listeners */
    int fd = ent_test_connect(c.work_port, 1000);
    assert_int_equal(fd, -ECONNREFUSED);
    for (int i = 0; i < 4; i++) {
        char *body = NULL;
        assert_int_equal(ent_test_read_response(fds[i], &body), 200);
        assert_string_equal(body, "done\n");
        free(body);
        close(fds[i]);
    }
    assert_int_equal(child_wait(&c), 0);
}

static void test_daemon_readyz_fails_first_during_drain_delay(void **state)
{
    (void)state;
    struct child c;
    child_start(&c, "drain:\n  delay: 1500ms\n  grace: 5s\n");
    char *body = NULL;
    assert_int_equal(ent_test_http_get(c.ops_port, "/readyz", &body, 2000), 200);
    assert_non_null(strstr(body, "\"ready\":true"));
    free(body);
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    /* Not ready at once, while the listeners still accept. */
    assert_int_equal(ent_test_http_wait_status(c.ops_port, "/readyz", 503, 1000), 503);
    assert_int_equal(ent_test_http_get(c.ops_port, "/healthz", NULL, 1000), 200);
    int fd = ent_test_connect(c.work_port, 1000);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(child_wait(&c), 0);
}

static void test_daemon_bad_config_names_the_key(void **state)
{
    (void)state;
    char dir[] = "/tmp/ent-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], out[160];
    snprintf(path, sizeof(path), "%s/bad.yaml", dir);
    snprintf(out, sizeof(out), "%s/stderr", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "drain:\n  grace: soon\n");
    fclose(f);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        freopen(out, "w", stderr);
        char *argv[] = {"testd", "--config", path, NULL};
        int rc = ent_daemon_main(&work_daemon, 3, argv);
        fflush(NULL);
        _exit(rc);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char *text = NULL;
    size_t len;
    assert_int_equal(ent_file_read(out, 65536, &text, &len), ENT_OK);
    assert_non_null(strstr(text, "drain.grace"));
    free(text);
    unlink(out);
    unlink(path);
    rmdir(dir);
}

/* Reads the child's log so far (JSON lines). */
static char *child_log(struct child *c)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/out.log", c->dir);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ent_file_read(path, 1 << 20, &text, &len), ENT_OK);
    return text;
}

static void test_daemon_sighup_reloads_log_level_and_names_the_rest(void **state)
{
    (void)state;
    struct child c;
    child_start(&c, "log:\n  level: warn\n");
    /* At warn, the info-level reload line of a first SIGHUP is not written. */
    assert_int_equal(kill(c.pid, SIGHUP), 0);
    usleep(300 * 1000);
    char *text = child_log(&c);
    assert_null(strstr(text, "daemon.reload"));
    free(text);

    /* Raise the level and change a key that needs a restart. */
    FILE *f = fopen(c.config, "a");
    assert_non_null(f);
    fclose(f);
    char *cfg = NULL;
    size_t len = 0;
    assert_int_equal(ent_file_read(c.config, 1 << 16, &cfg, &len), ENT_OK);
    f = fopen(c.config, "w");
    assert_non_null(f);
    const char *warn = strstr(cfg, "level: warn");
    assert_non_null(warn);
    fwrite(cfg, 1, (size_t)(warn - cfg), f);
    fputs("level: info\n", f);
    fputs(warn + strlen("level: warn\n"), f);
    fputs("daemon:\n  instance: renamed\n", f);
    fclose(f);
    free(cfg);
    assert_int_equal(kill(c.pid, SIGHUP), 0);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        usleep(50 * 1000);
        text = child_log(&c);
        seen = strstr(text, "daemon.reload") != NULL;
        if (seen)
            assert_non_null(strstr(text, "daemon.instance: changed, restart to apply"));
        free(text);
    }
    assert_true(seen);
    /* Still serving, still ready, and it counted both signals. */
    char *body = NULL;
    assert_int_equal(ent_test_http_get(c.ops_port, "/metrics", &body, 2000), 200);
    assert_non_null(strstr(body, "entitle_signals_total{signal=\"SIGHUP\"} 2"));
    free(body);
    assert_int_equal(ent_test_http_get(c.ops_port, "/readyz", NULL, 2000), 200);
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&c), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_daemon_drain_finishes_inflight_and_refuses_new, kill_leftover_child),
        cmocka_unit_test_teardown(test_daemon_readyz_fails_first_during_drain_delay, kill_leftover_child),
        cmocka_unit_test_teardown(test_daemon_bad_config_names_the_key, kill_leftover_child),
        cmocka_unit_test_teardown(test_daemon_sighup_reloads_log_level_and_names_the_rest, kill_leftover_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
