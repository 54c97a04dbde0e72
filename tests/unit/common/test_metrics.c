/* SPDX-License-Identifier: Apache-2.0 */
/* ent/metrics.h: the exposition text byte for byte (escaping, ordering, value formatting,
 * histograms, gauge callbacks), exact sums under concurrent bumps and concurrent first use, the
 * per-family child cap and its overflow counter, and render errors leaving the buffer alone. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/metrics.h"

#define RENDER_LIMIT (1u << 20)

/* Families for the byte-exact test; ent_metrics_registry_free() unbinds them again. */
static ent_counter jobs = ENT_COUNTER("test_jobs_total", "Jobs run");
static ent_counter requests =
    ENT_COUNTER("test_requests_total", "Requests\\by \"kind\"\nsecond line", "method", "path");
static ent_counter empty = ENT_COUNTER("test_empty_total", "Never bumped", "x");
static ent_gauge temperature = ENT_GAUGE("test_temperature", "Degrees");
static ent_gauge ratio = ENT_GAUGE("test_ratio", "Ratios", "shard");
static ent_histogram latency =
    ENT_HISTOGRAM("test_latency_seconds", "Latency", ENT_BUCKETS(0.005, 0.5, 1), "route");

static double uptime_fn(void *ud)
{
    return *(const double *)ud;
}

static char *render(struct ent_metrics_registry *reg)
{
    struct ent_buf b;
    ent_buf_init(&b, RENDER_LIMIT);
    assert_int_equal(ent_metrics_render(reg, &b), ENT_OK);
    return ent_buf_steal(&b, NULL);
}

static void test_metrics_render_exact(void **state)
{
    (void)state;
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    ent_metrics_register(reg, &jobs);
    ent_metrics_register(reg, &requests);
    ent_metrics_register(reg, &empty);
    ent_metrics_register(reg, &temperature);
    ent_metrics_register(reg, &ratio);
    ent_metrics_register(reg, &latency);
    double uptime = 12345.5;
    assert_int_equal(
        ent_gauge_func_register(reg, "test_uptime_seconds", "Seconds up", uptime_fn, &uptime),
        ENT_OK);

    ent_counter_add(&jobs, 41);
    ent_counter_inc(&jobs);
    ent_counter_add(&requests, 2, "a\"b", "c\\d");
    ent_counter_inc(&requests, "x\ny", "z");
    ent_counter_add(&requests, 5, "GET", "/");
    ent_gauge_set(&temperature, -12.5);
    ent_gauge_add(&temperature, -0.25);
    ent_gauge_set(&ratio, 0.1, "a");
    ent_gauge_set(&ratio, 1.0 / 3.0, "b");
    ent_histogram_observe(&latency, 0.2, "/b");
    ent_histogram_observe(&latency, 0.001, "/a");
    ent_histogram_observe(&latency, 0.005, "/a"); /* bounds are inclusive */
    ent_histogram_observe(&latency, 0.3, "/a");
    ent_histogram_observe(&latency, 0.5, "/a");
    ent_histogram_observe(&latency, 7.25, "/a"); /* above the last bound: +Inf only */

    static const char expected[] =
        "# HELP entitle_metrics_dropped_total Metric updates dropped because a family hit its "
        "child limit or memory ran out\n"
        "# TYPE entitle_metrics_dropped_total counter\n"
        "entitle_metrics_dropped_total 0\n"
        "# HELP test_empty_total Never bumped\n"
        "# TYPE test_empty_total counter\n"
        "# HELP test_jobs_total Jobs run\n"
        "# TYPE test_jobs_total counter\n"
        "test_jobs_total 42\n"
        "# HELP test_latency_seconds Latency\n"
        "# TYPE test_latency_seconds histogram\n"
        "test_latency_seconds_bucket{route=\"/a\",le=\"0.005\"} 2\n"
        "test_latency_seconds_bucket{route=\"/a\",le=\"0.5\"} 4\n"
        "test_latency_seconds_bucket{route=\"/a\",le=\"1\"} 4\n"
        "test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 5\n"
        "test_latency_seconds_sum{route=\"/a\"} 8.056000000000001\n"
        "test_latency_seconds_count{route=\"/a\"} 5\n"
        "test_latency_seconds_bucket{route=\"/b\",le=\"0.005\"} 0\n"
        "test_latency_seconds_bucket{route=\"/b\",le=\"0.5\"} 1\n"
        "test_latency_seconds_bucket{route=\"/b\",le=\"1\"} 1\n"
        "test_latency_seconds_bucket{route=\"/b\",le=\"+Inf\"} 1\n"
        "test_latency_seconds_sum{route=\"/b\"} 0.2\n"
        "test_latency_seconds_count{route=\"/b\"} 1\n"
        "# HELP test_ratio Ratios\n"
        "# TYPE test_ratio gauge\n"
        "test_ratio{shard=\"a\"} 0.1\n"
        "test_ratio{shard=\"b\"} 0.3333333333333333\n"
        "# HELP test_requests_total Requests\\\\by \"kind\"\\nsecond line\n"
        "# TYPE test_requests_total counter\n"
        "test_requests_total{method=\"GET\",path=\"/\"} 5\n"
        "test_requests_total{method=\"a\\\"b\",path=\"c\\\\d\"} 2\n"
        "test_requests_total{method=\"x\\ny\",path=\"z\"} 1\n"
        "# HELP test_temperature Degrees\n"
        "# TYPE test_temperature gauge\n"
        "test_temperature -12.75\n"
        "# HELP test_uptime_seconds Seconds up\n"
        "# TYPE test_uptime_seconds gauge\n"
        "test_uptime_seconds 12345.5\n";
    char *text = render(reg);
    assert_string_equal(text, expected);
    free(text);

    /* The callback is evaluated at each render. */
    uptime = 2;
    text = render(reg);
    assert_non_null(strstr(text, "\ntest_uptime_seconds 2\n"));
    free(text);

    assert_int_equal(ent_counter_value(&requests, "a\"b", "c\\d"), 2);
    assert_int_equal(ent_counter_value(&requests, "nope", "nope"), 0);
    assert_true(ent_gauge_value(&temperature) == -12.75);
    assert_int_equal(ent_histogram_count(&latency, "/a"), 5);
    ent_metrics_registry_free(reg);
}

/* Fresh registries start from zero, even for the same static families. */
static void test_metrics_registry_rebinds_families(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        struct ent_metrics_registry *reg = NULL;
        assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
        ent_metrics_register(reg, &jobs);
        assert_int_equal(ent_counter_value(&jobs), 0);
        ent_counter_inc(&jobs);
        char *text = render(reg);
        assert_non_null(strstr(text, "\ntest_jobs_total 1\n"));
        free(text);
        ent_metrics_registry_free(reg);
    }
}

static void test_metrics_empty_families(void **state)
{
    (void)state;
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    ent_counter labelled = ENT_COUNTER("test_a_labelled_total", "Labelled", "k");
    ent_gauge bare = ENT_GAUGE("test_b_bare", "Bare");
    ent_histogram hist = ENT_HISTOGRAM("test_c_hist_seconds", "Bare histogram", ENT_BUCKETS(1));
    ent_metrics_register(reg, &labelled);
    ent_metrics_register(reg, &bare);
    ent_metrics_register(reg, &hist);
    static const char expected[] = "# HELP test_a_labelled_total Labelled\n"
                                   "# TYPE test_a_labelled_total counter\n"
                                   "# HELP test_b_bare Bare\n"
                                   "# TYPE test_b_bare gauge\n"
                                   "test_b_bare 0\n"
                                   "# HELP test_c_hist_seconds Bare histogram\n"
                                   "# TYPE test_c_hist_seconds histogram\n"
                                   "test_c_hist_seconds_bucket{le=\"1\"} 0\n"
                                   "test_c_hist_seconds_bucket{le=\"+Inf\"} 0\n"
                                   "test_c_hist_seconds_sum 0\n"
                                   "test_c_hist_seconds_count 0\n";
    char *text = render(reg);
    const char *ours = strstr(text, "# HELP test_a_labelled_total");
    assert_non_null(ours);
    assert_string_equal(ours, expected);
    free(text);
    ent_metrics_registry_free(reg);
}

static void test_metrics_format_double(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "0"},
        {42.0, "42"},
        {-7.0, "-7"},
        {123456789012.0, "123456789012"},
        {1e300, "1e+300"},
        {0.1, "0.1"},
        {-12.75, "-12.75"},
        {1.0 / 3.0, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e-7, "1e-07"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ent_buf b;
        ent_buf_init(&b, 64);
        assert_int_equal(ent_metrics_format_double(&b, cases[i].v), ENT_OK);
        assert_string_equal(b.data, cases[i].text);
        ent_buf_free(&b);
    }
}

#define THREADS    4
#define ITERATIONS 100000

static ent_counter shared_hits = ENT_COUNTER("test_shared_hits_total", "Hits", "who");
static ent_gauge shared_level = ENT_GAUGE("test_shared_level", "Level");
static ent_histogram shared_hist =
    ENT_HISTOGRAM("test_shared_seconds", "Observations", ENT_BUCKETS(0.5, 1.5));

static void *bump_thread(void *arg)
{
    const char *me = arg;
    for (int i = 0; i < ITERATIONS; i++) {
        ent_counter_inc(&shared_hits, "all");
        ent_counter_inc(&shared_hits, me);
        ent_gauge_inc(&shared_level);
        ent_histogram_observe(&shared_hist, (double)(i % 3)); /* 0, 1, 2: one per bucket */
    }
    return NULL;
}

static void test_metrics_concurrent_bumps_sum_exactly(void **state)
{
    (void)state;
    static const char *const names[THREADS] = {"t0", "t1", "t2", "t3"};
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    ent_metrics_register(reg, &shared_hits);
    ent_metrics_register(reg, &shared_level);
    ent_metrics_register(reg, &shared_hist);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, bump_thread, (void *)names[i]), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    assert_int_equal(ent_counter_value(&shared_hits, "all"), THREADS * ITERATIONS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(ent_counter_value(&shared_hits, names[i]), ITERATIONS);
    assert_true(ent_gauge_value(&shared_level) == (double)(THREADS * ITERATIONS));
    assert_int_equal(ent_histogram_count(&shared_hist), THREADS * ITERATIONS);

    char *text = render(reg);
    assert_non_null(strstr(text, "\ntest_shared_hits_total{who=\"all\"} 400000\n"));
    assert_non_null(strstr(text, "\ntest_shared_level 400000\n"));
    /* 100000 iterations: i%3 gives 33334 zeros, 33333 ones, 33333 twos per thread. */
    assert_non_null(strstr(text, "\ntest_shared_seconds_bucket{le=\"0.5\"} 133336\n"));
    assert_non_null(strstr(text, "\ntest_shared_seconds_bucket{le=\"1.5\"} 266668\n"));
    assert_non_null(strstr(text, "\ntest_shared_seconds_bucket{le=\"+Inf\"} 400000\n"));
    assert_non_null(strstr(text, "\ntest_shared_seconds_sum 399996\n"));
    assert_non_null(strstr(text, "\ntest_shared_seconds_count 400000\n"));
    free(text);
    ent_metrics_registry_free(reg);
}

/* Never bound explicitly: the first bump, from four threads at once, registers it in the
 * default registry exactly once. */
static ent_counter first_use = ENT_COUNTER("test_metrics_first_use_total", "First use race");

static void *first_use_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        ent_counter_inc(&first_use);
    return NULL;
}

static void test_metrics_first_use_registers_in_default(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, first_use_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    char *text = render(ent_metrics_default());
    const char *type = "# TYPE test_metrics_first_use_total counter\n";
    const char *at = strstr(text, type);
    assert_non_null(at);
    assert_null(strstr(at + 1, type));
    assert_non_null(strstr(text, "\ntest_metrics_first_use_total 4000\n"));
    assert_non_null(strstr(text, "# TYPE entitle_metrics_dropped_total counter\n"));
    free(text);
}

static void test_metrics_child_cap_drops_and_counts(void **state)
{
    (void)state;
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    ent_counter wide = ENT_COUNTER("test_wide_total", "Too many labels", "id");
    ent_metrics_register(reg, &wide);
    char id[16];
    for (int i = 0; i < ENT_METRICS_MAX_CHILDREN; i++) {
        snprintf(id, sizeof(id), "%d", i);
        ent_counter_inc(&wide, id);
    }
    ent_counter_inc(&wide, "over1");
    ent_counter_add(&wide, 5, "over2");
    ent_counter_inc(&wide, "over1");
    ent_counter_inc(&wide, "7"); /* existing children keep counting */
    assert_int_equal(ent_counter_value(&wide, "over1"), 0);
    assert_int_equal(ent_counter_value(&wide, "7"), 2);

    char *text = render(reg);
    assert_non_null(strstr(text, "\nentitle_metrics_dropped_total 3\n"));
    assert_null(strstr(text, "over1"));
    size_t lines = 0;
    for (const char *p = strstr(text, "test_wide_total{"); p; p = strstr(p + 1, "test_wide_total{"))
        lines++;
    assert_int_equal(lines, ENT_METRICS_MAX_CHILDREN);
    /* Sorted by value as strings: "0", "1", "10", "100", "101", ... */
    assert_non_null(strstr(text, "test_wide_total{id=\"0\"} 1\ntest_wide_total{id=\"1\"} 1\n"
                                 "test_wide_total{id=\"10\"} 1\ntest_wide_total{id=\"100\"} 1\n"));
    free(text);
    ent_metrics_registry_free(reg);
}

static double zero_fn(void *ud)
{
    (void)ud;
    return 0;
}

static void test_metrics_gauge_func_register_errors(void **state)
{
    (void)state;
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    assert_int_equal(ent_gauge_func_register(reg, "test_g", "G", zero_fn, NULL), ENT_OK);
    assert_int_equal(ent_gauge_func_register(reg, "test_g", "G", zero_fn, NULL), ENT_EEXIST);
    assert_int_equal(
        ent_gauge_func_register(reg, "entitle_metrics_dropped_total", "D", zero_fn, NULL),
        ENT_EEXIST);
    assert_int_equal(ent_gauge_func_register(reg, "9bad", "B", zero_fn, NULL), ENT_EINVAL);
    assert_int_equal(ent_gauge_func_register(reg, "bad-name", "B", zero_fn, NULL), ENT_EINVAL);
    assert_int_equal(ent_gauge_func_unregister(reg, "test_g"), ENT_OK);
    assert_int_equal(ent_gauge_func_unregister(reg, "test_g"), ENT_ENOTFOUND);
    char *text = render(reg);
    assert_null(strstr(text, "test_g"));
    free(text);
    ent_metrics_registry_free(reg);
}

static void test_metrics_render_too_big_leaves_buffer(void **state)
{
    (void)state;
    struct ent_metrics_registry *reg = NULL;
    assert_int_equal(ent_metrics_registry_new(&reg), ENT_OK);
    struct ent_buf b;
    ent_buf_init(&b, 64);
    assert_int_equal(ent_buf_append_str(&b, "keep\n"), ENT_OK);
    assert_int_equal(ent_metrics_render(reg, &b), ENT_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "keep\n");
    ent_buf_free(&b);
    ent_metrics_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_render_exact),
        cmocka_unit_test(test_metrics_registry_rebinds_families),
        cmocka_unit_test(test_metrics_empty_families),
        cmocka_unit_test(test_metrics_format_double),
        cmocka_unit_test(test_metrics_concurrent_bumps_sum_exactly),
        cmocka_unit_test(test_metrics_first_use_registers_in_default),
        cmocka_unit_test(test_metrics_child_cap_drops_and_counts),
        cmocka_unit_test(test_metrics_gauge_func_register_errors),
        cmocka_unit_test(test_metrics_render_too_big_leaves_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
