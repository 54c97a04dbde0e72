/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics: counters, gauges and histograms with up to four labels, rendered in the
 * text exposition format 0.0.4. Families are declared once, statically, at the top of the file
 * that bumps them, and need no init call: the first bump registers the family in the default
 * registry (tests bind families to a private registry with ent_metrics_register() first). A
 * family keeps one child per distinct label-value tuple; children are created under the
 * family's mutex and then found lock-free, and their values are C11 atomics, so the hot path
 * takes no global lock. Serving /metrics over HTTP is left to the ops endpoint code.
 *
 *     static ent_counter rpc_failures = ENT_COUNTER("entitle_rpc_failures_total",
 *                                                   "RPC failures by method and reason",
 *                                                   "rpc", "reason");
 *     ent_counter_inc(&rpc_failures, "authd.challenge", ent_err_name(rc));
 *
 *     static ent_histogram http_latency = ENT_HISTOGRAM(
 *         "entitle_http_request_duration_seconds", "HTTP request latency",
 *         ENT_BUCKETS(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), "route", "code");
 *     ent_histogram_observe(&http_latency, 0.0123, "/", "200");
 *
 * Label values are passed as trailing varargs (const char *), and their number must equal the
 * number of label names (asserted). Values must come from closed sets: each family keeps at
 * most ENT_METRICS_MAX_CHILDREN children, and bumps beyond that are dropped and counted in
 * `entitle_metrics_dropped_total`. The macros evaluate each argument once. A family without
 * labels is bumped with no trailing arguments (`ent_counter_inc(&c)`): an empty `...` that C23,
 * GCC and Clang accept (only -pedantic in C11 mode warns). */
#ifndef ENT_METRICS_H
#define ENT_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"
#include "ent/util.h"

#define ENT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#define ENT_METRICS_MAX_LABELS   4
#define ENT_METRICS_MAX_BUCKETS  24 /* finite bounds; +Inf is always added */
#define ENT_METRICS_MAX_CHILDREN 1000
#define ENT_METRICS_SLOTS        32 /* hash chains per family */

struct ent_metrics_registry;
struct ent_metric_child;

enum ent_metric_type {
    ENT_METRIC_COUNTER,
    ENT_METRIC_GAUGE,
    ENT_METRIC_HISTOGRAM,
};

/* What the three metric types share. Fields starting with `_` belong to metrics.c; the
 * ENT_COUNTER/ENT_GAUGE/ENT_HISTOGRAM initialisers fill the rest. */
struct ent_metric_family {
    const char *name;
    const char *help;
    /* _label_names[0] is always NULL so that a family without labels still has a non-empty
     * initialiser; the names are _label_names[1..nlabels]. */
    const char *_label_names[ENT_METRICS_MAX_LABELS + 1];
    unsigned nlabels;
    enum ent_metric_type type;

    pthread_mutex_t _mu; /* registration and child creation */
    atomic_int _state;   /* 0 unbound, 1 registered (release-stored after _reg/_next) */
    struct ent_metrics_registry *_reg;
    struct ent_metric_family *_next; /* registry list, immutable once registered */
    size_t _nchildren;               /* under _mu */
    _Atomic(struct ent_metric_child *) _slots[ENT_METRICS_SLOTS];
};

typedef struct ent_counter {
    struct ent_metric_family family;
} ent_counter;

typedef struct ent_gauge {
    struct ent_metric_family family;
} ent_gauge;

typedef struct ent_histogram {
    struct ent_metric_family family;
    unsigned nbounds;
    double bounds[ENT_METRICS_MAX_BUCKETS]; /* strictly increasing, finite (asserted) */
} ent_histogram;

/* Internal: counts the varargs, and builds the label array, tolerating an empty list. */
#define ENT_METRICS_NARGS_(...)                                                                    \
    (sizeof((const char *[]){NULL, __VA_ARGS__}) / sizeof(const char *) - 1)
#define ENT_METRICS_VALUES_(...)                                                                   \
    ENT_METRICS_NARGS_(__VA_ARGS__), ((const char *const[]){NULL, __VA_ARGS__} + 1)
#define ENT_METRICS_FAMILY_(type_, name_, help_, ...)                                              \
    .family = {                                                                                    \
        .name = (name_),                                                                           \
        .help = (help_),                                                                           \
        ._label_names = {NULL, __VA_ARGS__},                                                       \
        .nlabels = (unsigned)ENT_METRICS_NARGS_(__VA_ARGS__),                                      \
        .type = (type_),                                                                           \
        ._mu = PTHREAD_MUTEX_INITIALIZER,                                                          \
    }

/* Static initialisers: name, help text, then 0..4 label names. Too many labels or buckets fail
 * to compile ("excess elements"). ENT_BUCKETS lists the finite upper bounds in order. */
#define ENT_COUNTER(name, help, ...)                                                               \
    {                                                                                              \
        ENT_METRICS_FAMILY_(ENT_METRIC_COUNTER, name, help, __VA_ARGS__)                           \
    }
#define ENT_GAUGE(name, help, ...)                                                                 \
    {                                                                                              \
        ENT_METRICS_FAMILY_(ENT_METRIC_GAUGE, name, help, __VA_ARGS__)                             \
    }
#define ENT_HISTOGRAM(name, help, buckets, ...)                                                    \
    {                                                                                              \
        ENT_METRICS_FAMILY_(ENT_METRIC_HISTOGRAM, name, help, __VA_ARGS__), buckets                \
    }
#define ENT_BUCKETS(...)                                                                           \
    .bounds = {__VA_ARGS__}, .nbounds = (unsigned)(sizeof((double[]){__VA_ARGS__}) / sizeof(double))

/* Hot path. Any thread. ent_counter_inc(&c, values...) adds 1; ent_counter_add(&c, n, values...)
 * adds n. ent_gauge_set/add(&g, v, values...) set or add a double (ent_gauge_inc/dec: +1/-1).
 * ent_histogram_observe(&h, v, values...) counts v in the first bucket whose bound is >= v (or
 * +Inf) and adds it to the sum. The first bump of a label tuple allocates its child; if that
 * fails or the family is full, the bump is dropped and counted. Never fails, never blocks on
 * another family or on rendering. */
#define ent_counter_inc(c, ...)    ent_counter_add_((c), 1, ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_counter_add(c, n, ...) ent_counter_add_((c), (n), ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_gauge_set(g, v, ...)   ent_gauge_set_((g), (v), ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_gauge_add(g, v, ...)   ent_gauge_add_((g), (v), ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_gauge_inc(g, ...)      ent_gauge_add_((g), 1.0, ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_gauge_dec(g, ...)      ent_gauge_add_((g), -1.0, ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_histogram_observe(h, v, ...)                                                           \
    ent_histogram_observe_((h), (v), ENT_METRICS_VALUES_(__VA_ARGS__))

/* Reads one child's current value without creating it (0 if it does not exist yet); for tests
 * and for code that reports its own state. Any thread. ent_histogram_count() is the total
 * number of observations. */
#define ent_counter_value(c, ...)   ent_counter_value_((c), ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_gauge_value(g, ...)     ent_gauge_value_((g), ENT_METRICS_VALUES_(__VA_ARGS__))
#define ent_histogram_count(h, ...) ent_histogram_count_((h), ENT_METRICS_VALUES_(__VA_ARGS__))

void ent_counter_add_(ent_counter *c, uint64_t n, size_t nvalues, const char *const *values);
void ent_gauge_set_(ent_gauge *g, double v, size_t nvalues, const char *const *values);
void ent_gauge_add_(ent_gauge *g, double v, size_t nvalues, const char *const *values);
void ent_histogram_observe_(ent_histogram *h, double v, size_t nvalues, const char *const *values);
uint64_t ent_counter_value_(ent_counter *c, size_t nvalues, const char *const *values);
double ent_gauge_value_(ent_gauge *g, size_t nvalues, const char *const *values);
uint64_t ent_histogram_count_(ent_histogram *h, size_t nvalues, const char *const *values);

/* The process-wide registry that static families join on first use. Never NULL, never freed;
 * it always holds entitle_metrics_dropped_total. Any thread. */
struct ent_metrics_registry *ent_metrics_default(void);

/* A private registry, for tests. *out is written only on ENT_OK; errors: ENT_ENOMEM.
 * ent_metrics_registry_free() must not race with any use of the registry or its families: it
 * frees every child and gauge callback and returns each bound family to the unbound state, so
 * the same static family can be bound again to a new registry. */
ent_err ent_metrics_registry_new(struct ent_metrics_registry **out);
void ent_metrics_registry_free(struct ent_metrics_registry *reg);

/* Binds a family (ent_counter/ent_gauge/ent_histogram pointer) to reg and registers it there.
 * Call before the family's first bump; binding an already registered family to another
 * registry, or two families of the same name to one registry, is our bug (asserted). */
#define ent_metrics_register(reg, m) ent_metrics_register_family_((reg), &(m)->family)
void ent_metrics_register_family_(struct ent_metrics_registry *reg, struct ent_metric_family *f);

/* A gauge without labels whose value fn(ud) computes at render time (outbox depth, uptime).
 * reg NULL means the default registry. name and help are copied; fn runs on the rendering
 * thread with the registry's render lock held, so it must not (un)register gauge callbacks.
 * Errors: ENT_EINVAL (bad metric name), ENT_EEXIST (name in use), ENT_ENOMEM. */
ent_err ent_gauge_func_register(struct ent_metrics_registry *reg, const char *name,
                                const char *help, double (*fn)(void *ud), void *ud);
/* Removes a callback so its ud may be freed. Errors: ENT_ENOTFOUND. */
ent_err ent_gauge_func_unregister(struct ent_metrics_registry *reg, const char *name);

/* Appends the exposition text of every family in reg (NULL: default registry) to out: families
 * sorted by name, children by label values, so the output is deterministic. Any thread;
 * renders are serialised per registry. Errors: ENT_ETOOBIG (out's limit) or ENT_ENOMEM, in
 * which case out is left as it was. */
ent_err ent_metrics_render(struct ent_metrics_registry *reg, struct ent_buf *out);

/* Appends v as Prometheus/Go reads it back: integral values without a decimal point, others
 * in the shortest form that round-trips, "+Inf", "-Inf", "NaN". Exposed for tests. */
ent_err ent_metrics_format_double(struct ent_buf *out, double v);

#endif
