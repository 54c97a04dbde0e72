/* SPDX-License-Identifier: Apache-2.0 */
/* ent/log.h: exact JSON lines (field order, every value type, escaping, NaN/Inf as null),
 * the trace field's omission, level filtering and parsing, and ent_mask_id() on IMSIs,
 * MSISDNs, NAIs, short ids, overlong input and NULL. Output is captured with
 * open_memstream; the time field is checked for shape and then replaced before comparing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/log.h"

struct capture {
    FILE *f;
    char *data;
    size_t len;
};

static int capture_setup(void **state)
{
    struct capture *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->f = open_memstream(&c->data, &c->len);
    assert_non_null(c->f);
    ent_log_init("gateway", ENT_LOG_DEBUG);
    ent_log_set_stream(c->f);
    *state = c;
    return 0;
}

static int capture_teardown(void **state)
{
    struct capture *c = *state;
    ent_log_set_stream(NULL);
    fclose(c->f);
    free(c->data);
    free(c);
    ent_log_set_level(ENT_LOG_INFO);
    return 0;
}

/* Checks that `line` starts with {"time":"YYYY-MM-DDTHH:MM:SS.mmmZ" and returns a copy with
 * the timestamp replaced by T. */
static char *normalise_time(const char *line)
{
    static const char prefix[] = "{\"time\":\"";
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t plen = strlen(prefix);
    size_t slen = strlen(shape);
    assert_true(strncmp(line, prefix, plen) == 0);
    assert_true(strlen(line) > plen + slen);
    for (size_t i = 0; i < slen; i++) {
        char want = shape[i];
        char got = line[plen + i];
        if (want == 'd')
            assert_true(isdigit((unsigned char)got));
        else
            assert_int_equal(got, want);
    }
    assert_int_equal(line[plen + slen], '"');
    size_t rest = strlen(line + plen + slen);
    char *out = malloc(plen + 1 + rest + 1);
    assert_non_null(out);
    memcpy(out, prefix, plen);
    out[plen] = 'T';
    memcpy(out + plen + 1, line + plen + slen, rest + 1);
    return out;
}

/* The captured output so far, as exactly one line with the time replaced. */
static char *one_line(struct capture *c)
{
    fflush(c->f);
    assert_non_null(c->data);
    size_t n = strlen(c->data);
    assert_true(n > 0);
    assert_int_equal(c->data[n - 1], '\n');
    assert_true(strchr(c->data, '\n') == c->data + n - 1); /* exactly one line */
    return normalise_time(c->data);
}

static void test_log_writes_exact_line_with_every_type(void **state)
{
    struct capture *c = *state;
    ENT_LOG_WARN("ab12", "bus.saturated", ENT_KV_STR("peer", "tcp://127.0.0.1:7001"),
                 ENT_KV_U64("inflight", 256), ENT_KV_I64("delta", -42), ENT_KV_DBL("ratio", 0.25),
                 ENT_KV_BOOL("draining", true), ENT_KV_STR("missing", NULL),
                 ENT_KV_U64("max", UINT64_MAX), ENT_KV_I64("min", INT64_MIN));
    char *line = one_line(c);
    assert_string_equal(line, "{\"time\":\"T\",\"level\":\"warn\",\"daemon\":\"gateway\","
                              "\"trace\":\"ab12\",\"event\":\"bus.saturated\","
                              "\"peer\":\"tcp://127.0.0.1:7001\",\"inflight\":256,"
                              "\"delta\":-42,\"ratio\":0.25,\"draining\":true,\"missing\":null,"
                              "\"max\":18446744073709551615,\"min\":-9223372036854775808}\n");
    free(line);
}

static void test_log_omits_empty_trace_and_handles_no_fields(void **state)
{
    struct capture *c = *state;
    ENT_LOG_INFO(NULL, "daemon.started");
    ENT_LOG_ERROR("", "daemon.stopped", ENT_KV_BOOL("clean", false));
    fflush(c->f);
    char *second = strchr(c->data, '\n');
    assert_non_null(second);
    *second = '\0';
    char *l1 = normalise_time(c->data);
    char *l2 = normalise_time(second + 1);
    assert_string_equal(l1, "{\"time\":\"T\",\"level\":\"info\",\"daemon\":\"gateway\","
                            "\"event\":\"daemon.started\"}");
    assert_string_equal(l2, "{\"time\":\"T\",\"level\":\"error\",\"daemon\":\"gateway\","
                            "\"event\":\"daemon.stopped\",\"clean\":false}\n");
    free(l1);
    free(l2);
}

static void test_log_escapes_strings(void **state)
{
    struct capture *c = *state;
    ENT_LOG_INFO("t\"1", "http.request", ENT_KV_STR("path", "/a\"b\\c\n\t\r\x01\x1f"),
                 ENT_KV_STR("we\"ird", "ok"));
    char *line = one_line(c);
    assert_string_equal(line, "{\"time\":\"T\",\"level\":\"info\",\"daemon\":\"gateway\","
                              "\"trace\":\"t\\\"1\",\"event\":\"http.request\","
                              "\"path\":\"/a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\","
                              "\"we\\\"ird\":\"ok\"}\n");
    free(line);
}

static void test_log_writes_nonfinite_doubles_as_null(void **state)
{
    struct capture *c = *state;
    ENT_LOG_INFO(NULL, "stats", ENT_KV_DBL("nan", NAN), ENT_KV_DBL("inf", INFINITY),
                 ENT_KV_DBL("ninf", -INFINITY), ENT_KV_DBL("tenth", 0.1), ENT_KV_DBL("big", 1e300));
    char *line = one_line(c);
    assert_string_equal(line, "{\"time\":\"T\",\"level\":\"info\",\"daemon\":\"gateway\","
                              "\"event\":\"stats\",\"nan\":null,\"inf\":null,\"ninf\":null,"
                              "\"tenth\":0.1,\"big\":1e+300}\n");
    free(line);
}

static void test_log_filters_by_level(void **state)
{
    struct capture *c = *state;
    ent_log_set_level(ENT_LOG_WARN);
    assert_false(ent_log_enabled(ENT_LOG_DEBUG));
    assert_false(ent_log_enabled(ENT_LOG_INFO));
    assert_true(ent_log_enabled(ENT_LOG_WARN));
    assert_true(ent_log_enabled(ENT_LOG_ERROR));
    ENT_LOG_DEBUG(NULL, "dropped.debug");
    ENT_LOG_INFO(NULL, "dropped.info");
    ent_log_write(ENT_LOG_INFO, NULL, "dropped.direct", NULL, 0);
    ENT_LOG_WARN(NULL, "kept.warn");
    char *line = one_line(c);
    assert_string_equal(line, "{\"time\":\"T\",\"level\":\"warn\",\"daemon\":\"gateway\","
                              "\"event\":\"kept.warn\"}\n");
    free(line);
}

static void test_log_truncates_huge_line(void **state)
{
    struct capture *c = *state;
    size_t n = 200 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    ENT_LOG_INFO(NULL, "big", ENT_KV_STR("blob", big));
    free(big);
    char *line = one_line(c);
    assert_string_equal(line, "{\"time\":\"T\",\"level\":\"info\",\"daemon\":\"gateway\","
                              "\"event\":\"big\",\"truncated\":true}\n");
    free(line);
}

#define THREADS          4
#define LINES_PER_THREAD 200

static void *log_from_thread(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < LINES_PER_THREAD; i++)
        ENT_LOG_INFO(NULL, "thread.line", ENT_KV_I64("thread", id), ENT_KV_I64("i", i),
                     ENT_KV_STR("pad", "0123456789012345678901234567890123456789"));
    return NULL;
}

static void test_log_lines_never_interleave_across_threads(void **state)
{
    struct capture *c = *state;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_from_thread, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    fflush(c->f);
    int lines = 0;
    for (char *p = c->data; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        char *norm = normalise_time(p);
        assert_true(strncmp(norm,
                            "{\"time\":\"T\",\"level\":\"info\",\"daemon\":\"gateway\","
                            "\"event\":\"thread.line\",\"thread\":",
                            77) == 0);
        assert_non_null(strstr(norm, ",\"pad\":\"0123456789012345678901234567890123456789\"}"));
        free(norm);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, THREADS * LINES_PER_THREAD);
}

static void test_log_parses_levels(void **state)
{
    (void)state;
    enum ent_log_level lv = ENT_LOG_ERROR;
    assert_true(ent_log_level_parse("debug", &lv));
    assert_int_equal(lv, ENT_LOG_DEBUG);
    assert_true(ent_log_level_parse("info", &lv));
    assert_int_equal(lv, ENT_LOG_INFO);
    assert_true(ent_log_level_parse("warning", &lv));
    assert_int_equal(lv, ENT_LOG_WARN);
    assert_true(ent_log_level_parse("WARN", &lv));
    assert_int_equal(lv, ENT_LOG_WARN);
    assert_true(ent_log_level_parse("error", &lv));
    assert_int_equal(lv, ENT_LOG_ERROR);
    assert_false(ent_log_level_parse("verbose", &lv));
    assert_false(ent_log_level_parse("", &lv));
    assert_false(ent_log_level_parse(NULL, &lv));
    assert_int_equal(lv, ENT_LOG_ERROR);
}

static void test_log_masks_imsi_and_msisdn(void **state)
{
    (void)state;
    const char *imsi = "310150123456789";
    const char *m = ent_mask_id(imsi);
    assert_string_equal(m, "31015********89");
    /* None of the subscriber digits between MCC+MNC and the last two survive. */
    assert_null(strstr(m, "1234567"));
    for (size_t i = 5; i < strlen(imsi) - 2; i++)
        assert_int_equal(m[i], '*');
    assert_string_equal(ent_mask_id("14155550123"), "14155****23");
    assert_string_equal(ent_mask_id("12345678"), "12345*78");
}

static void test_log_masks_nai_keeping_realm(void **state)
{
    (void)state;
    assert_string_equal(ent_mask_id("0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"),
                        "00010*********01@nai.epc.mnc001.mcc001.3gppnetwork.org");
    assert_string_equal(ent_mask_id("bob@example.org"), "***@example.org");
    /* Only the last '@' starts the realm, so nothing of the user part is kept there. */
    assert_string_equal(ent_mask_id("a@b123456789@realm"), "a@b12*****89@realm");
}

static void test_log_masks_short_ids_and_null(void **state)
{
    (void)state;
    assert_string_equal(ent_mask_id("1234567"), "*******");
    assert_string_equal(ent_mask_id("1"), "*");
    assert_string_equal(ent_mask_id(""), "");
    assert_string_equal(ent_mask_id(NULL), "-");
}

static void test_log_mask_truncates_long_input(void **state)
{
    (void)state;
    char id[400];
    memset(id, '7', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    id[0] = '3';
    const char *m = ent_mask_id(id);
    assert_true(strlen(m) < 128);
    assert_int_equal(m[0], '3');
    assert_null(strchr(m + 5, '7'));

    /* A long realm is cut, the user part still masked. */
    char nai[300];
    snprintf(nai, sizeof(nai), "310150123456789@");
    size_t at = strlen(nai);
    memset(nai + at, 'r', sizeof(nai) - at - 1);
    nai[sizeof(nai) - 1] = '\0';
    m = ent_mask_id(nai);
    assert_int_equal(strlen(m), 127);
    assert_true(strncmp(m, "31015********89@rrr", 19) == 0);
}

static void test_log_mask_ring_keeps_eight_results(void **state)
{
    (void)state;
    const char *r[8];
    char ids[8][20];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof(ids[i]), "3101500000000%02d", i);
        r[i] = ent_mask_id(ids[i]);
    }
    for (int i = 0; i < 8; i++) {
        char want[20];
        snprintf(want, sizeof(want), "31015********%02d", i);
        assert_string_equal(r[i], want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_writes_exact_line_with_every_type, capture_setup,
                                        capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_omits_empty_trace_and_handles_no_fields,
                                        capture_setup, capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_escapes_strings, capture_setup, capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_writes_nonfinite_doubles_as_null, capture_setup,
                                        capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_filters_by_level, capture_setup, capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_truncates_huge_line, capture_setup,
                                        capture_teardown),
        cmocka_unit_test_setup_teardown(test_log_lines_never_interleave_across_threads,
                                        capture_setup, capture_teardown),
        cmocka_unit_test(test_log_parses_levels),
        cmocka_unit_test(test_log_masks_imsi_and_msisdn),
        cmocka_unit_test(test_log_masks_nai_keeping_realm),
        cmocka_unit_test(test_log_masks_short_ids_and_null),
        cmocka_unit_test(test_log_mask_truncates_long_input),
        cmocka_unit_test(test_log_mask_ring_keeps_eight_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
