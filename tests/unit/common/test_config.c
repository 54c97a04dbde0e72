/* SPDX-License-Identifier: Apache-2.0 */
/* ent/config.h: defaults, YAML values of every type, environment over file over default,
 * ignored foreign ENTITLE_* variables, errors that name the key (unknown keys, bad and
 * out-of-range values from file and environment, duplicates, missing file, YAML syntax),
 * string lists, reload of reloadable keys only, dump with redaction (and read back), and
 * freeing (leaks are caught by LeakSanitizer in the sanitizer build). Files are written
 * with mkstemp; every variable a test sets is unset in teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/config.h"

struct test_cfg {
    char *listen;
    int64_t workers;
    bool tls;
    uint64_t timeout_ms;
    uint64_t max_body;
    struct ent_strlist peers;
    enum ent_log_level level;
    char *token_key;
    uint64_t busy_timeout;
    char *path;
    int64_t rate;
    int64_t offset;
};

static const struct ent_cfg_key keys[] = {
    ENT_CFG_KEY("gateway", "listen", ENT_CFG_STR, struct test_cfg, listen, "0.0.0.0:8443", 0, 0,
                "HTTPS listen address"),
    ENT_CFG_KEY("gateway", "workers", ENT_CFG_INT, struct test_cfg, workers, "4", 1, 64,
                "worker threads"),
    ENT_CFG_KEY("gateway", "tls", ENT_CFG_BOOL, struct test_cfg, tls, "true", 0, 0, "serve TLS"),
    ENT_CFG_KEY("gateway", "request_timeout", ENT_CFG_DURATION, struct test_cfg, timeout_ms, "2s",
                1, 600000, "per-request deadline"),
    ENT_CFG_KEY("gateway", "max_body", ENT_CFG_SIZE, struct test_cfg, max_body, "64k", 1,
                16 * 1024 * 1024, "largest request body"),
    ENT_CFG_KEY("bus", "peers", ENT_CFG_STRLIST, struct test_cfg, peers,
                "tcp://127.0.0.1:7001, tcp://127.0.0.1:7002", 0, 0, "bus peers"),
    ENT_CFG_KEY_EX("log", "level", ENT_CFG_LOGLEVEL, struct test_cfg, level, "info", 0, 0, false,
                   true, "minimum log level"),
    ENT_CFG_KEY_EX("auth", "token_key", ENT_CFG_STR, struct test_cfg, token_key, NULL, 0, 0, true,
                   false, "token signing key"),
    ENT_CFG_KEY("store", "busy_timeout", ENT_CFG_DURATION, struct test_cfg, busy_timeout, "5s", 0,
                0, "SQLite busy timeout"),
    ENT_CFG_KEY("store", "path", ENT_CFG_STR, struct test_cfg, path, NULL, 0, 0, "database"),
    ENT_CFG_KEY_EX("gateway", "rate", ENT_CFG_INT, struct test_cfg, rate, "100", 0, 0, false, true,
                   "requests per second"),
    ENT_CFG_KEY("gateway", "offset", ENT_CFG_INT, struct test_cfg, offset, "-5", -10, 10,
                "signed value"),
};
#define N_KEYS ENT_ARRAY_LEN(keys)

static const char *const env_vars[] = {
    "ENTITLE_GATEWAY_LISTEN",     "ENTITLE_GATEWAY_WORKERS",
    "ENTITLE_GATEWAY_TLS",        "ENTITLE_GATEWAY_REQUEST_TIMEOUT",
    "ENTITLE_GATEWAY_MAX_BODY",   "ENTITLE_BUS_PEERS",
    "ENTITLE_LOG_LEVEL",          "ENTITLE_AUTH_TOKEN_KEY",
    "ENTITLE_STORE_BUSY_TIMEOUT", "ENTITLE_STORE_PATH",
    "ENTITLE_GATEWAY_RATE",       "ENTITLE_GATEWAY_OFFSET",
    "ENTITLE_AUTHD_SQN_WINDOW",   "ENTITLE_GATEWAY_NOPE",
};

struct fixture {
    char path[64];
    struct test_cfg cfg;
    char err[512];
};

static int setup(void **state)
{
    for (size_t i = 0; i < ENT_ARRAY_LEN(env_vars); i++)
        unsetenv(env_vars[i]);
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->path, sizeof(fx->path), "%s/entcfg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    close(fd);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    ent_config_free(&fx->cfg, keys, N_KEYS);
    unlink(fx->path);
    free(fx);
    for (size_t i = 0; i < ENT_ARRAY_LEN(env_vars); i++)
        unsetenv(env_vars[i]);
    return 0;
}

static void write_file(struct fixture *fx, const char *text)
{
    FILE *f = fopen(fx->path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static ent_err load_text(struct fixture *fx, const char *text)
{
    write_file(fx, text);
    return ent_config_load(&fx->cfg, keys, N_KEYS, fx->path, fx->err, sizeof(fx->err));
}

/* err must contain every given fragment. */
static void assert_err_has(const struct fixture *fx, const char *fragment)
{
    if (!strstr(fx->err, fragment))
        fail_msg("error \"%s\" lacks \"%s\"", fx->err, fragment);
}

static void test_config_defaults_only(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, NULL, fx->err, sizeof(fx->err)),
                     ENT_OK);
    assert_string_equal(fx->err, "");
    assert_string_equal(fx->cfg.listen, "0.0.0.0:8443");
    assert_int_equal(fx->cfg.workers, 4);
    assert_true(fx->cfg.tls);
    assert_int_equal(fx->cfg.timeout_ms, 2000);
    assert_int_equal(fx->cfg.max_body, 64 * 1024);
    assert_int_equal(fx->cfg.peers.n, 2);
    assert_string_equal(fx->cfg.peers.items[0], "tcp://127.0.0.1:7001");
    assert_string_equal(fx->cfg.peers.items[1], "tcp://127.0.0.1:7002");
    assert_int_equal(fx->cfg.level, ENT_LOG_INFO);
    assert_null(fx->cfg.token_key);
    assert_int_equal(fx->cfg.busy_timeout, 5000);
    assert_null(fx->cfg.path);
    assert_int_equal(fx->cfg.rate, 100);
    assert_int_equal(fx->cfg.offset, -5);
}

static void test_config_file_values_of_every_type(void **state)
{
    struct fixture *fx = *state;
    ent_err rc = load_text(fx, "# entitle\n"
                               "gateway:\n"
                               "  listen: \"127.0.0.1:9443\"\n"
                               "  workers: 8\n"
                               "  tls: off\n"
                               "  request_timeout: 250ms\n"
                               "  max_body: 1M\n"
                               "  offset: -10\n"
                               "bus:\n"
                               "  peers: [\"ipc:///tmp/a\", ipc:///tmp/b, 'ipc:///tmp/c']\n"
                               "log:\n"
                               "  level: debug\n"
                               "auth:\n"
                               "  token_key: s3cr3t\n"
                               "store:\n"
                               "  busy_timeout: 1m\n"
                               "  path: /var/lib/entitle/db.sqlite\n");
    assert_int_equal(rc, ENT_OK);
    assert_string_equal(fx->cfg.listen, "127.0.0.1:9443");
    assert_int_equal(fx->cfg.workers, 8);
    assert_false(fx->cfg.tls);
    assert_int_equal(fx->cfg.timeout_ms, 250);
    assert_int_equal(fx->cfg.max_body, 1024 * 1024);
    assert_int_equal(fx->cfg.offset, -10);
    assert_int_equal(fx->cfg.peers.n, 3);
    assert_string_equal(fx->cfg.peers.items[0], "ipc:///tmp/a");
    assert_string_equal(fx->cfg.peers.items[1], "ipc:///tmp/b");
    assert_string_equal(fx->cfg.peers.items[2], "ipc:///tmp/c");
    assert_int_equal(fx->cfg.level, ENT_LOG_DEBUG);
    assert_string_equal(fx->cfg.token_key, "s3cr3t");
    assert_int_equal(fx->cfg.busy_timeout, 60000);
    assert_string_equal(fx->cfg.path, "/var/lib/entitle/db.sqlite");
    assert_int_equal(fx->cfg.rate, 100); /* not in the file: default */
}

static void test_config_value_syntax(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *dur;
        uint64_t ms;
        const char *size;
        uint64_t bytes;
        const char *boolean;
        bool b;
    } cases[] = {
        {"1500", 1500, "512", 512, "yes", true}, {"2s", 2000, "8k", 8192, "No", false},
        {"3M", 180000, "8K", 8192, "ON", true},  {"1h", 3600000, "1g", 1u << 30, "0", false},
        {"0", 0, "2m", 2u << 20, "1", true},     {"10MS", 10, "1G", 1u << 30, "FALSE", false},
    };
    /* No ranges here, so only the syntax is under test. */
    static const struct ent_cfg_key plain[] = {
        ENT_CFG_KEY("store", "busy_timeout", ENT_CFG_DURATION, struct test_cfg, busy_timeout, NULL,
                    0, 0, ""),
        ENT_CFG_KEY("gateway", "max_body", ENT_CFG_SIZE, struct test_cfg, max_body, NULL, 0, 0, ""),
        ENT_CFG_KEY("gateway", "tls", ENT_CFG_BOOL, struct test_cfg, tls, NULL, 0, 0, ""),
    };
    for (size_t i = 0; i < ENT_ARRAY_LEN(cases); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "store:\n  busy_timeout: %s\ngateway:\n  max_body: %s\n"
                 "  tls: %s\n",
                 cases[i].dur, cases[i].size, cases[i].boolean);
        write_file(fx, text);
        struct test_cfg c = {0};
        assert_int_equal(
            ent_config_load(&c, plain, ENT_ARRAY_LEN(plain), fx->path, fx->err, sizeof(fx->err)),
            ENT_OK);
        assert_int_equal(c.busy_timeout, cases[i].ms);
        assert_int_equal(c.max_body, cases[i].bytes);
        assert_int_equal(c.tls, cases[i].b);
        ent_config_free(&c, plain, ENT_ARRAY_LEN(plain));
    }
}

static void test_config_env_beats_file(void **state)
{
    struct fixture *fx = *state;
    setenv("ENTITLE_GATEWAY_WORKERS", "16", 1);
    setenv("ENTITLE_STORE_BUSY_TIMEOUT", "2h", 1);
    setenv("ENTITLE_GATEWAY_LISTEN", "[::1]:443", 1);
    setenv("ENTITLE_LOG_LEVEL", "error", 1);
    setenv("ENTITLE_GATEWAY_TLS", "false", 1);
    ent_err rc = load_text(fx, "gateway:\n  workers: 8\n  listen: 1.2.3.4:1\n"
                               "store:\n  busy_timeout: 1s\nlog:\n  level: debug\n");
    assert_int_equal(rc, ENT_OK);
    assert_int_equal(fx->cfg.workers, 16);
    assert_int_equal(fx->cfg.busy_timeout, 2 * 3600 * 1000);
    assert_string_equal(fx->cfg.listen, "[::1]:443");
    assert_int_equal(fx->cfg.level, ENT_LOG_ERROR);
    assert_false(fx->cfg.tls); /* env over default too */
}

static void test_config_env_for_unknown_key_is_ignored(void **state)
{
    struct fixture *fx = *state;
    setenv("ENTITLE_AUTHD_SQN_WINDOW", "not-even-a-number", 1);
    setenv("ENTITLE_GATEWAY_NOPE", "x", 1);
    assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, NULL, fx->err, sizeof(fx->err)),
                     ENT_OK);
    assert_int_equal(fx->cfg.workers, 4);
}

static void test_config_unknown_key_in_file_is_named(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "gateway:\n  workers: 2\n  wrokers: 3\n"), ENT_ECONFIG);
    assert_err_has(fx, "unknown key \"gateway.wrokers\"");
    assert_err_has(fx, fx->path);
    assert_err_has(fx, ":3:");

    /* A misspelt section names its first key. */
    assert_int_equal(load_text(fx, "gatway:\n  listen: 1.2.3.4:5\n"), ENT_ECONFIG);
    assert_err_has(fx, "unknown key \"gatway.listen\"");
    assert_err_has(fx, ":2:");

    assert_int_equal(load_text(fx, "gatway: {}\n"), ENT_ECONFIG);
    assert_err_has(fx, "unknown section \"gatway\"");

    assert_int_equal(load_text(fx, "gateway: 5\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway: expected a mapping");

    assert_int_equal(load_text(fx, "- a\n- b\n"), ENT_ECONFIG);
    assert_err_has(fx, "top level");
}

static void test_config_bad_file_values_name_the_key(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"gateway:\n  workers: abc\n", "gateway.workers: \"abc\" is not an integer"},
        {"gateway:\n  workers: 1.5\n", "gateway.workers: \"1.5\" is not an integer"},
        {"store:\n  busy_timeout: abc\n", "store.busy_timeout: \"abc\" is not a duration"},
        {"store:\n  busy_timeout: -1s\n", "store.busy_timeout: \"-1s\" is not a duration"},
        {"store:\n  busy_timeout: 1.5s\n", "store.busy_timeout: \"1.5s\" is not a duration"},
        {"store:\n  busy_timeout: 5 s\n", "store.busy_timeout: \"5 s\" is not a duration"},
        {"store:\n  busy_timeout: 99999999999999999999\n", "store.busy_timeout: \""},
        {"store:\n  busy_timeout: 9999999999999999h\n", "is too large"},
        {"gateway:\n  max_body: 12q\n", "gateway.max_body: \"12q\" is not a size"},
        {"gateway:\n  max_body: k\n", "gateway.max_body: \"k\" is not a size"},
        {"gateway:\n  tls: maybe\n", "gateway.tls: \"maybe\" is not a boolean"},
        {"log:\n  level: loud\n", "log.level: \"loud\" is not a log level"},
        {"gateway:\n  workers: [1, 2]\n", "gateway.workers: expected a single value"},
        {"bus:\n  peers: [[a]]\n", "bus.peers: list items must be plain strings"},
        {"bus:\n  peers: {a: b}\n", "bus.peers: expected a list of strings"},
    };
    for (size_t i = 0; i < ENT_ARRAY_LEN(cases); i++) {
        assert_int_equal(load_text(fx, cases[i].yaml), ENT_ECONFIG);
        assert_err_has(fx, cases[i].want);
        assert_err_has(fx, fx->path);
        assert_err_has(fx, ":2: ");
    }
}

static void test_config_bad_env_values_name_the_key(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *var;
        const char *value;
        const char *want;
    } cases[] = {
        {"ENTITLE_GATEWAY_WORKERS", "four", "gateway.workers: \"four\" is not an integer"},
        {"ENTITLE_GATEWAY_WORKERS", " 4", "gateway.workers: \" 4\" is not an integer"},
        {"ENTITLE_STORE_BUSY_TIMEOUT", "abc", "store.busy_timeout: \"abc\" is not a duration"},
        {"ENTITLE_GATEWAY_MAX_BODY", "1t", "gateway.max_body: \"1t\" is not a size"},
        {"ENTITLE_GATEWAY_TLS", "", "gateway.tls: \"\" is not a boolean"},
        {"ENTITLE_LOG_LEVEL", "trace", "log.level: \"trace\" is not a log level"},
    };
    for (size_t i = 0; i < ENT_ARRAY_LEN(cases); i++) {
        setenv(cases[i].var, cases[i].value, 1);
        assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, NULL, fx->err, sizeof(fx->err)),
                         ENT_ECONFIG);
        assert_err_has(fx, cases[i].want);
        assert_err_has(fx, cases[i].var);
        unsetenv(cases[i].var);
    }
}

static void test_config_bad_file_value_fails_even_if_env_overrides(void **state)
{
    struct fixture *fx = *state;
    setenv("ENTITLE_GATEWAY_WORKERS", "8", 1);
    assert_int_equal(load_text(fx, "gateway:\n  workers: lots\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.workers");
}

static void test_config_out_of_range(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "gateway:\n  workers: 0\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.workers: \"0\" is out of range [1, 64]");
    assert_int_equal(load_text(fx, "gateway:\n  workers: 65\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.workers");
    assert_int_equal(load_text(fx, "gateway:\n  workers: 64\n  offset: -10\n"), ENT_OK);
    ent_config_free(&fx->cfg, keys, N_KEYS);
    assert_int_equal(load_text(fx, "gateway:\n  offset: -11\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.offset: \"-11\" is out of range [-10, 10]");
    assert_int_equal(load_text(fx, "gateway:\n  request_timeout: 11m\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.request_timeout: \"11m\" is out of range [1ms, 10m]");
    assert_int_equal(load_text(fx, "gateway:\n  max_body: 17m\n"), ENT_ECONFIG);
    assert_err_has(fx, "gateway.max_body: \"17m\" is out of range [1, 16m]");
    setenv("ENTITLE_GATEWAY_REQUEST_TIMEOUT", "0", 1);
    assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, NULL, fx->err, sizeof(fx->err)),
                     ENT_ECONFIG);
    assert_err_has(fx, "gateway.request_timeout: \"0\" is out of range");
}

static void test_config_duplicates_are_errors(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "gateway:\n  workers: 2\n  workers: 3\n"), ENT_ECONFIG);
    assert_err_has(fx, ":3: duplicate key \"gateway.workers\" (first set at line 2)");
    assert_int_equal(load_text(fx, "store:\n  path: a\nstore:\n  busy_timeout: 1s\n"), ENT_ECONFIG);
    assert_err_has(fx, ":3: duplicate section \"store\"");
}

static void test_config_file_errors(void **state)
{
    struct fixture *fx = *state;
    /* Missing file. */
    char missing[80];
    snprintf(missing, sizeof(missing), "%s.missing", fx->path);
    assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, missing, fx->err, sizeof(fx->err)),
                     ENT_ECONFIG);
    assert_err_has(fx, missing);
    /* Syntax error, with its line. */
    assert_int_equal(load_text(fx, "gateway:\n  workers: 2\n   tls: [\n"), ENT_ECONFIG);
    assert_err_has(fx, "YAML error");
    assert_err_has(fx, fx->path);
    /* Two documents. */
    assert_int_equal(load_text(fx, "gateway:\n  workers: 2\n---\ngateway:\n  workers: 3\n"),
                     ENT_ECONFIG);
    assert_err_has(fx, "more than one YAML document");
    /* Empty file, comments only, and empty sections are fine. */
    assert_int_equal(load_text(fx, ""), ENT_OK);
    assert_int_equal(fx->cfg.workers, 4);
    ent_config_free(&fx->cfg, keys, N_KEYS);
    assert_int_equal(load_text(fx, "# nothing here\n"), ENT_OK);
    ent_config_free(&fx->cfg, keys, N_KEYS);
    assert_int_equal(load_text(fx, "gateway:\nstore: {}\n"), ENT_OK);
    assert_string_equal(fx->err, "");
}

static void test_config_failed_load_leaves_struct_untouched(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.workers = 1234;
    fx->cfg.listen = NULL;
    assert_int_equal(load_text(fx, "gateway:\n  listen: a:1\n  workers: nope\n"), ENT_ECONFIG);
    assert_int_equal(fx->cfg.workers, 1234);
    assert_null(fx->cfg.listen);
    assert_null(fx->cfg.peers.items);
}

static void test_config_null_and_quoted_strings(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "gateway:\n  listen: ~\nstore:\n  path: \"null\"\n"
                                   "bus:\n  peers:\n"),
                     ENT_OK);
    assert_null(fx->cfg.listen);
    assert_string_equal(fx->cfg.path, "null");
    assert_int_equal(fx->cfg.peers.n, 0);
}

static void test_config_strlist_from_sequence_and_env(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "bus:\n  peers:\n    - tcp://a:1\n    - \"tcp://b:2\"\n"),
                     ENT_OK);
    assert_int_equal(fx->cfg.peers.n, 2);
    assert_string_equal(fx->cfg.peers.items[0], "tcp://a:1");
    assert_string_equal(fx->cfg.peers.items[1], "tcp://b:2");
    ent_config_free(&fx->cfg, keys, N_KEYS);

    assert_int_equal(load_text(fx, "bus:\n  peers: []\n"), ENT_OK);
    assert_int_equal(fx->cfg.peers.n, 0);
    ent_config_free(&fx->cfg, keys, N_KEYS);

    assert_int_equal(load_text(fx, "bus:\n  peers: x, y\n"), ENT_OK);
    assert_int_equal(fx->cfg.peers.n, 2);
    assert_string_equal(fx->cfg.peers.items[1], "y");
    ent_config_free(&fx->cfg, keys, N_KEYS);

    setenv("ENTITLE_BUS_PEERS", " tcp://c:3 ,tcp://d:4,,tcp://e:5, ", 1);
    assert_int_equal(load_text(fx, "bus:\n  peers: [tcp://a:1]\n"), ENT_OK);
    assert_int_equal(fx->cfg.peers.n, 3);
    assert_string_equal(fx->cfg.peers.items[0], "tcp://c:3");
    assert_string_equal(fx->cfg.peers.items[1], "tcp://d:4");
    assert_string_equal(fx->cfg.peers.items[2], "tcp://e:5");
    ent_config_free(&fx->cfg, keys, N_KEYS);

    setenv("ENTITLE_BUS_PEERS", "", 1);
    assert_int_equal(ent_config_load(&fx->cfg, keys, N_KEYS, NULL, fx->err, sizeof(fx->err)),
                     ENT_OK);
    assert_int_equal(fx->cfg.peers.n, 0);
}

static void test_config_reload_applies_reloadable_keys_only(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "log:\n  level: info\ngateway:\n  rate: 10\n  workers: 2\n"
                                   "store:\n  path: /a\n"),
                     ENT_OK);
    write_file(fx, "log:\n  level: debug\ngateway:\n  rate: 20\n  workers: 3\n"
                   "store:\n  path: /b\n");
    assert_int_equal(ent_config_reload(&fx->cfg, sizeof(fx->cfg), keys, N_KEYS, fx->path, fx->err,
                                       sizeof(fx->err)),
                     ENT_OK);
    assert_int_equal(fx->cfg.level, ENT_LOG_DEBUG);
    assert_int_equal(fx->cfg.rate, 20);
    assert_int_equal(fx->cfg.workers, 2);
    assert_string_equal(fx->cfg.path, "/a");
    assert_err_has(fx, "gateway.workers: changed, restart to apply");
    assert_err_has(fx, "store.path: changed, restart to apply");
    assert_null(strstr(fx->err, "log.level"));

    /* The environment takes part in a reload too. */
    setenv("ENTITLE_GATEWAY_RATE", "30", 1);
    write_file(fx, "log:\n  level: debug\ngateway:\n  rate: 20\n  workers: 2\n"
                   "store:\n  path: /a\n");
    assert_int_equal(ent_config_reload(&fx->cfg, sizeof(fx->cfg), keys, N_KEYS, fx->path, fx->err,
                                       sizeof(fx->err)),
                     ENT_OK);
    assert_int_equal(fx->cfg.rate, 30);
    assert_string_equal(fx->err, "");

    /* A broken file changes nothing. */
    write_file(fx, "log:\n  level: error\ngateway:\n  rate: lots\n");
    assert_int_equal(ent_config_reload(&fx->cfg, sizeof(fx->cfg), keys, N_KEYS, fx->path, fx->err,
                                       sizeof(fx->err)),
                     ENT_ECONFIG);
    assert_err_has(fx, "gateway.rate");
    assert_int_equal(fx->cfg.level, ENT_LOG_DEBUG);
    assert_int_equal(fx->cfg.rate, 30);
}

static void test_config_dump_redacts_secrets_and_reads_back(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "auth:\n  token_key: hunter2\ngateway:\n  max_body: 1536\n"
                                   "  listen: \"a\\\"b\\\\c\\td\"\n  request_timeout: 90s\n"
                                   "bus:\n  peers: [x]\nstore:\n  path: /db\n"),
                     ENT_OK);
    struct ent_buf out;
    ent_buf_init(&out, 1 << 16);
    assert_int_equal(ent_config_dump(&fx->cfg, keys, N_KEYS, &out), ENT_OK);
    assert_null(strstr(out.data, "hunter2"));
    assert_non_null(strstr(out.data, "auth:\n  token_key: \"<redacted>\"\n"));
    assert_non_null(strstr(out.data, "gateway:\n  listen: \"a\\\"b\\\\c\\td\"\n  workers: 4\n"
                                     "  tls: true\n  request_timeout: 90s\n  max_body: 1536\n"));
    assert_non_null(strstr(out.data, "bus:\n  peers:\n    - \"x\"\n"));
    assert_non_null(strstr(out.data, "log:\n  level: info\n"));
    assert_non_null(strstr(out.data, "store:\n  busy_timeout: 5s\n  path: \"/db\"\n"));

    /* Everything but the secret reads back to the same values. */
    struct test_cfg again = {0};
    write_file(fx, out.data);
    ent_buf_free(&out);
    assert_int_equal(ent_config_load(&again, keys, N_KEYS, fx->path, fx->err, sizeof(fx->err)),
                     ENT_OK);
    assert_string_equal(again.listen, fx->cfg.listen);
    assert_int_equal(again.timeout_ms, fx->cfg.timeout_ms);
    assert_int_equal(again.max_body, fx->cfg.max_body);
    assert_int_equal(again.busy_timeout, fx->cfg.busy_timeout);
    assert_int_equal(again.peers.n, 1);
    assert_string_equal(again.token_key, "<redacted>");
    ent_config_free(&again, keys, N_KEYS);
}

static void test_config_secret_values_stay_out_of_errors(void **state)
{
    struct fixture *fx = *state;
    static const struct ent_cfg_key secret_int[] = {
        ENT_CFG_KEY_EX("auth", "pin", ENT_CFG_INT, struct test_cfg, workers, NULL, 0, 0, true,
                       false, "a secret number"),
    };
    setenv("ENTITLE_AUTH_PIN", "hunter2", 1);
    struct test_cfg c = {0};
    assert_int_equal(ent_config_load(&c, secret_int, 1, NULL, fx->err, sizeof(fx->err)),
                     ENT_ECONFIG);
    unsetenv("ENTITLE_AUTH_PIN");
    assert_err_has(fx, "auth.pin: <redacted> is not an integer");
    assert_null(strstr(fx->err, "hunter2"));
}

static void test_config_rejects_broken_tables(void **state)
{
    struct fixture *fx = *state;
    struct test_cfg c = {0};
    static const struct ent_cfg_key upper[] = {
        ENT_CFG_KEY("Gateway", "x", ENT_CFG_INT, struct test_cfg, workers, NULL, 0, 0, ""),
    };
    assert_int_equal(ent_config_load(&c, upper, 1, NULL, fx->err, sizeof(fx->err)), ENT_EINVAL);
    static const struct ent_cfg_key clash[] = {
        ENT_CFG_KEY("a_b", "c", ENT_CFG_INT, struct test_cfg, workers, NULL, 0, 0, ""),
        ENT_CFG_KEY("a", "b_c", ENT_CFG_INT, struct test_cfg, rate, NULL, 0, 0, ""),
    };
    assert_int_equal(ent_config_load(&c, clash, 2, NULL, fx->err, sizeof(fx->err)), ENT_EINVAL);
    assert_err_has(fx, "ENTITLE_A_B_C");
    static const struct ent_cfg_key wrong_size[] = {
        ENT_CFG_KEY("a", "b", ENT_CFG_INT, struct test_cfg, tls, NULL, 0, 0, ""),
    };
    assert_int_equal(ent_config_load(&c, wrong_size, 1, NULL, fx->err, sizeof(fx->err)),
                     ENT_EINVAL);
    static const struct ent_cfg_key bad_default[] = {
        ENT_CFG_KEY("a", "b", ENT_CFG_DURATION, struct test_cfg, timeout_ms, "soon", 0, 0, ""),
    };
    assert_int_equal(ent_config_load(&c, bad_default, 1, NULL, fx->err, sizeof(fx->err)),
                     ENT_EINVAL);
    assert_err_has(fx, "a.b");
}

static void test_config_free_releases_and_zeroes(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(load_text(fx, "auth:\n  token_key: k\nstore:\n  path: /p\n"), ENT_OK);
    assert_non_null(fx->cfg.listen);
    ent_config_free(&fx->cfg, keys, N_KEYS);
    assert_null(fx->cfg.listen);
    assert_null(fx->cfg.token_key);
    assert_null(fx->cfg.path);
    assert_null(fx->cfg.peers.items);
    assert_int_equal(fx->cfg.peers.n, 0);
    ent_config_free(&fx->cfg, keys, N_KEYS); /* twice is harmless */
}

static void test_config_usage_lists_env_names(void **state)
{
    (void)state;
    struct ent_buf out;
    ent_buf_init(&out, 1 << 16);
    assert_int_equal(ent_config_usage(keys, N_KEYS, &out), ENT_OK);
    assert_non_null(strstr(out.data, "store.busy_timeout  ENTITLE_STORE_BUSY_TIMEOUT  "
                                     "(duration, default 5s)  SQLite busy timeout\n"));
    assert_non_null(strstr(out.data, "log.level  ENTITLE_LOG_LEVEL  (log level, default info, "
                                     "reloadable)"));
    ent_buf_free(&out);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_defaults_only),
        T(test_config_file_values_of_every_type),
        T(test_config_value_syntax),
        T(test_config_env_beats_file),
        T(test_config_env_for_unknown_key_is_ignored),
        T(test_config_unknown_key_in_file_is_named),
        T(test_config_bad_file_values_name_the_key),
        T(test_config_bad_env_values_name_the_key),
        T(test_config_bad_file_value_fails_even_if_env_overrides),
        T(test_config_out_of_range),
        T(test_config_duplicates_are_errors),
        T(test_config_file_errors),
        T(test_config_failed_load_leaves_struct_untouched),
        T(test_config_null_and_quoted_strings),
        T(test_config_strlist_from_sequence_and_env),
        T(test_config_reload_applies_reloadable_keys_only),
        T(test_config_dump_redacts_secrets_and_reads_back),
        T(test_config_secret_values_stay_out_of_errors),
        T(test_config_rejects_broken_tables),
        T(test_config_free_releases_and_zeroes),
        T(test_config_usage_lists_env_names),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
