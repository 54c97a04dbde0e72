/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics (ent/metrics.h): family registration, lock-free child lookup, atomic
 * values, gauge callbacks and the text exposition renderer. HTTP serving of /metrics belongs to
 * the ops endpoint code; this file only produces the text.
 *
 * Invariants:
 *  1. A family joins a registry once: under its own _mu it sets _reg and _next, pushes itself
 *     onto the registry's list with a CAS, then release-stores _state = 1. Readers that
 *     acquire-load _state == 1 see _reg; renderers that acquire-load the list head see _next.
 *  2. Children are never freed while their registry lives. A child is fully built (label
 *     copies, zeroed atomics, _next link) before it is release-stored at the head of its hash
 *     chain under the family's _mu, so lock-free readers (acquire loads) see it whole.
 *  3. Values: counters are uint64_t; gauges and histogram sums are doubles stored as bits and
 *     updated with CAS; histogram buckets are per-bucket (not cumulative) uint64_t counts, and
 *     the rendered _count is their total, so _count always equals the +Inf bucket.
 *  4. Renders take the registry's mutex, which also guards the gauge-callback list; the hot
 *     path never takes it. */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/metrics.h"

#define DROPPED_NAME "entitle_metrics_dropped_total"
#define DROPPED_HELP "Metric updates dropped because a family hit its child limit or memory ran out"

struct ent_metric_child {
    struct ent_metric_child *next; /* hash chain, immutable once published */
    uint32_t hash;
    const char *values[ENT_METRICS_MAX_LABELS]; /* copies, stored after the buckets */
    _Atomic uint64_t value;    /* counter count, gauge bits, or histogram sum bits */
    _Atomic uint64_t counts[]; /* histogram: nbounds + 1 per-bucket counts, last is +Inf */
};

struct gauge_func {
    struct gauge_func *next;
    char *name;
    char *help;
    double (*fn)(void *ud);
    void *ud;
};

struct ent_metrics_registry {
    _Atomic(struct ent_metric_family *) families; /* CAS-pushed, never popped while alive */
    pthread_mutex_t mu;                           /* renders and funcs */
    struct gauge_func *funcs;
    ent_counter dropped;
};

static struct ent_metrics_registry default_registry = {
    .families = &default_registry.dropped.family,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .funcs = NULL,
    .dropped = {.family = {.name = DROPPED_NAME,
                           .help = DROPPED_HELP,
                           .nlabels = 0,
                           .type = ENT_METRIC_COUNTER,
                           ._mu = PTHREAD_MUTEX_INITIALIZER,
                           ._state = 1,
                           ._reg = &default_registry}},
};

struct ent_metrics_registry *ent_metrics_default(void)
{
    return &default_registry;
}

/* ---- names ---------------------------------------------------------------------------- */

static bool name_valid(const char *s, bool colon_ok)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool family_names_valid(const struct ent_metric_family *f)
{
    if (!name_valid(f->name, true) || !f->help || f->nlabels > ENT_METRICS_MAX_LABELS)
        return false;
    for (unsigned i = 1; i <= f->nlabels; i++) {
        const char *l = f->_label_names[i];
        if (!name_valid(l, false) || strncmp(l, "__", 2) == 0)
            return false;
        if (f->type == ENT_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return false;
        for (unsigned j = 1; j < i; j++)
            if (strcmp(l, f->_label_names[j]) == 0)
                return false;
    }
    if (f->type == ENT_METRIC_HISTOGRAM) {
        const ent_histogram *h = ENT_CONTAINER_OF(f, const ent_histogram, family);
        if (h->nbounds == 0 || h->nbounds > ENT_METRICS_MAX_BUCKETS)
            return false;
        for (unsigned i = 0; i < h->nbounds; i++) {
            if (!isfinite(h->bounds[i]) || (i > 0 && !(h->bounds[i - 1] < h->bounds[i])))
                return false;
        }
    }
    return true;
}

/* ---- registration --------------------------------------------------------------------- */

/* Caller holds f->_mu and f is unbound. */
static void family_bind_locked(struct ent_metrics_registry *reg, struct ent_metric_family *f)
{
    bool valid = family_names_valid(f);
    assert(valid && "bad metric, label or bucket definition");
    (void)valid;
    struct ent_metric_family *head = atomic_load_explicit(&reg->families, memory_order_acquire);
#ifndef NDEBUG
    for (struct ent_metric_family *o = head; o; o = o->_next)
        assert(strcmp(o->name, f->name) != 0 && "two metric families share a name");
#endif
    f->_reg = reg;
    do {
        f->_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&reg->families, &head, f, memory_order_release,
                                                    memory_order_acquire));
    atomic_store_explicit(&f->_state, 1, memory_order_release);
}

void ent_metrics_register_family_(struct ent_metrics_registry *reg, struct ent_metric_family *f)
{
    if (!reg)
        reg = &default_registry;
    pthread_mutex_lock(&f->_mu);
    if (atomic_load_explicit(&f->_state, memory_order_acquire) == 0)
        family_bind_locked(reg, f);
    else
        assert(f->_reg == reg && "metric family already bound to another registry");
    pthread_mutex_unlock(&f->_mu);
}

/* The first bump of an unbound family registers it in the default registry. */
static inline struct ent_metrics_registry *family_registry(struct ent_metric_family *f)
{
    if (atomic_load_explicit(&f->_state, memory_order_acquire) == 0) {
        pthread_mutex_lock(&f->_mu);
        if (atomic_load_explicit(&f->_state, memory_order_acquire) == 0)
            family_bind_locked(&default_registry, f);
        pthread_mutex_unlock(&f->_mu);
    }
    return f->_reg;
}

/* ---- children ------------------------------------------------------------------------- */

static uint32_t values_hash(size_t n, const char *const *values)
{
    uint32_t h = 2166136261u; /* FNV-1a, with 0xff between values so ("ab","") != ("a","b") */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static struct ent_metric_child *chain_find(struct ent_metric_child *c, uint32_t hash, size_t n,
                                           const char *const *values)
{
    for (; c; c = c->next) {
        if (c->hash != hash)
            continue;
        size_t i = 0;
        while (i < n && strcmp(c->values[i], values[i]) == 0)
            i++;
        if (i == n)
            return c;
    }
    return NULL;
}

static unsigned family_ncounts(const struct ent_metric_family *f)
{
    if (f->type != ENT_METRIC_HISTOGRAM)
        return 0;
    return ENT_CONTAINER_OF(f, const ent_histogram, family)->nbounds + 1;
}

static void drop_one(struct ent_metrics_registry *reg, struct ent_metric_family *f);

/* Finds the child for values, creating it if create is set. NULL when absent (lookup), or when
 * the family is full or memory ran out (the bump is then counted as dropped). */
static struct ent_metric_child *child_get(struct ent_metric_family *f, size_t n,
                                          const char *const *values, bool create)
{
    assert(n == f->nlabels && "label value count differs from the family's label names");
    for (size_t i = 0; i < n; i++)
        assert(values[i] != NULL);
    struct ent_metrics_registry *reg = family_registry(f);
    uint32_t hash = values_hash(n, values);
    _Atomic(struct ent_metric_child *) *slot = &f->_slots[hash % ENT_METRICS_SLOTS];
    struct ent_metric_child *c =
        chain_find(atomic_load_explicit(slot, memory_order_acquire), hash, n, values);
    if (c || !create)
        return c;

    pthread_mutex_lock(&f->_mu);
    struct ent_metric_child *head = atomic_load_explicit(slot, memory_order_relaxed);
    c = chain_find(head, hash, n, values);
    if (c || f->_nchildren >= ENT_METRICS_MAX_CHILDREN)
        goto out;
    unsigned ncounts = family_ncounts(f);
    size_t lens[ENT_METRICS_MAX_LABELS];
    size_t size = sizeof(*c) + ncounts * sizeof(c->counts[0]);
    for (size_t i = 0; i < n; i++) {
        lens[i] = strlen(values[i]) + 1;
        size += lens[i];
    }
    c = malloc(size);
    if (!c)
        goto out;
    char *text = (char *)(c->counts + ncounts);
    for (size_t i = 0; i < n; i++) {
        memcpy(text, values[i], lens[i]);
        c->values[i] = text;
        text += lens[i];
    }
    for (size_t i = n; i < ENT_METRICS_MAX_LABELS; i++)
        c->values[i] = NULL;
    c->hash = hash;
    atomic_init(&c->value, 0); /* 0 is also the bit pattern of +0.0 */
    for (unsigned i = 0; i < ncounts; i++)
        atomic_init(&c->counts[i], 0);
    c->next = head;
    f->_nchildren++;
    atomic_store_explicit(slot, c, memory_order_release);
out:
    pthread_mutex_unlock(&f->_mu);
    if (!c)
        drop_one(reg, f);
    return c;
}

static void drop_one(struct ent_metrics_registry *reg, struct ent_metric_family *f)
{
    if (f == &reg->dropped.family)
        return; /* the overflow counter itself could not get its child: nothing to count in */
    ent_counter_add_(&reg->dropped, 1, 0, NULL);
}

static void children_free(struct ent_metric_family *f)
{
    for (unsigned s = 0; s < ENT_METRICS_SLOTS; s++) {
        struct ent_metric_child *c = atomic_load_explicit(&f->_slots[s], memory_order_acquire);
        while (c) {
            struct ent_metric_child *next = c->next;
            free(c);
            c = next;
        }
        atomic_store_explicit(&f->_slots[s], NULL, memory_order_relaxed);
    }
    f->_nchildren = 0;
}

/* ---- values --------------------------------------------------------------------------- */

static inline uint64_t double_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static inline double bits_double(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

static void atomic_double_add(_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void ent_counter_add_(ent_counter *c, uint64_t n, size_t nvalues, const char *const *values)
{
    assert(c->family.type == ENT_METRIC_COUNTER);
    struct ent_metric_child *ch = child_get(&c->family, nvalues, values, true);
    if (ch)
        atomic_fetch_add_explicit(&ch->value, n, memory_order_relaxed);
}

void ent_gauge_set_(ent_gauge *g, double v, size_t nvalues, const char *const *values)
{
    assert(g->family.type == ENT_METRIC_GAUGE);
    struct ent_metric_child *ch = child_get(&g->family, nvalues, values, true);
    if (ch)
        atomic_store_explicit(&ch->value, double_bits(v), memory_order_relaxed);
}

void ent_gauge_add_(ent_gauge *g, double v, size_t nvalues, const char *const *values)
{
    assert(g->family.type == ENT_METRIC_GAUGE);
    struct ent_metric_child *ch = child_get(&g->family, nvalues, values, true);
    if (ch)
        atomic_double_add(&ch->value, v);
}

void ent_histogram_observe_(ent_histogram *h, double v, size_t nvalues, const char *const *values)
{
    assert(h->family.type == ENT_METRIC_HISTOGRAM);
    struct ent_metric_child *ch = child_get(&h->family, nvalues, values, true);
    if (!ch)
        return;
    unsigned i = 0;
    while (i < h->nbounds && !(v <= h->bounds[i])) /* NaN lands in +Inf, as it fails every <= */
        i++;
    atomic_fetch_add_explicit(&ch->counts[i], 1, memory_order_relaxed);
    atomic_double_add(&ch->value, v);
}

uint64_t ent_counter_value_(ent_counter *c, size_t nvalues, const char *const *values)
{
    struct ent_metric_child *ch = child_get(&c->family, nvalues, values, false);
    return ch ? atomic_load_explicit(&ch->value, memory_order_relaxed) : 0;
}

double ent_gauge_value_(ent_gauge *g, size_t nvalues, const char *const *values)
{
    struct ent_metric_child *ch = child_get(&g->family, nvalues, values, false);
    return ch ? bits_double(atomic_load_explicit(&ch->value, memory_order_relaxed)) : 0.0;
}

uint64_t ent_histogram_count_(ent_histogram *h, size_t nvalues, const char *const *values)
{
    struct ent_metric_child *ch = child_get(&h->family, nvalues, values, false);
    uint64_t total = 0;
    for (unsigned i = 0; ch && i <= h->nbounds; i++)
        total += atomic_load_explicit(&ch->counts[i], memory_order_relaxed);
    return total;
}

/* ---- registries ----------------------------------------------------------------------- */

ent_err ent_metrics_registry_new(struct ent_metrics_registry **out)
{
    struct ent_metrics_registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return ENT_ENOMEM;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return ENT_ENOMEM;
    }
    struct ent_metric_family *d = &reg->dropped.family;
    if (pthread_mutex_init(&d->_mu, NULL) != 0) {
        pthread_mutex_destroy(&reg->mu);
        free(reg);
        return ENT_ENOMEM;
    }
    d->name = DROPPED_NAME;
    d->help = DROPPED_HELP;
    d->nlabels = 0;
    d->type = ENT_METRIC_COUNTER;
    atomic_init(&d->_state, 0);
    for (unsigned s = 0; s < ENT_METRICS_SLOTS; s++)
        atomic_init(&d->_slots[s], NULL);
    atomic_init(&reg->families, NULL);
    pthread_mutex_lock(&d->_mu);
    family_bind_locked(reg, d);
    pthread_mutex_unlock(&d->_mu);
    *out = reg;
    return ENT_OK;
}

void ent_metrics_registry_free(struct ent_metrics_registry *reg)
{
    if (!reg)
        return;
    assert(reg != &default_registry);
    struct ent_metric_family *f = atomic_load_explicit(&reg->families, memory_order_acquire);
    while (f) {
        struct ent_metric_family *next = f->_next;
        children_free(f);
        f->_reg = NULL;
        f->_next = NULL;
        atomic_store_explicit(&f->_state, 0, memory_order_release);
        f = next;
    }
    struct gauge_func *g = reg->funcs;
    while (g) {
        struct gauge_func *next = g->next;
        free(g->name);
        free(g->help);
        free(g);
        g = next;
    }
    pthread_mutex_destroy(&reg->dropped.family._mu);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* Caller holds reg->mu. */
static bool name_in_use_locked(struct ent_metrics_registry *reg, const char *name)
{
    for (struct gauge_func *g = reg->funcs; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return true;
    struct ent_metric_family *f = atomic_load_explicit(&reg->families, memory_order_acquire);
    for (; f; f = f->_next)
        if (strcmp(f->name, name) == 0)
            return true;
    return false;
}

ent_err ent_gauge_func_register(struct ent_metrics_registry *reg, const char *name,
                                const char *help, double (*fn)(void *ud), void *ud)
{
    if (!reg)
        reg = &default_registry;
    if (!name_valid(name, true) || !help || !fn)
        return ENT_EINVAL;
    struct gauge_func *g = calloc(1, sizeof(*g));
    if (!g)
        return ENT_ENOMEM;
    g->name = strdup(name);
    g->help = strdup(help);
    if (!g->name || !g->help) {
        free(g->name);
        free(g->help);
        free(g);
        return ENT_ENOMEM;
    }
    g->fn = fn;
    g->ud = ud;
    pthread_mutex_lock(&reg->mu);
    bool taken = name_in_use_locked(reg, name);
    if (!taken) {
        g->next = reg->funcs;
        reg->funcs = g;
    }
    pthread_mutex_unlock(&reg->mu);
    if (taken) {
        free(g->name);
        free(g->help);
        free(g);
        return ENT_EEXIST;
    }
    return ENT_OK;
}

ent_err ent_gauge_func_unregister(struct ent_metrics_registry *reg, const char *name)
{
    if (!reg)
        reg = &default_registry;
    struct gauge_func *found = NULL;
    pthread_mutex_lock(&reg->mu);
    for (struct gauge_func **pp = &reg->funcs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            found = *pp;
            *pp = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg->mu);
    if (!found)
        return ENT_ENOTFOUND;
    free(found->name);
    free(found->help);
    free(found);
    return ENT_OK;
}

/* ---- rendering ------------------------------------------------------------------------ */

/* Writes v into tmp as ent_metrics_format_double() describes. */
static const char *format_double(char tmp[32], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    /* Integral values inside int64's range print as integers (also turns -0 into 0). */
    if (v == trunc(v) && v >= -9223372036854775808.0 && v < 9223372036854775808.0) {
        snprintf(tmp, 32, "%" PRId64, (int64_t)v);
        return tmp;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, 32, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return tmp;
}

ent_err ent_metrics_format_double(struct ent_buf *out, double v)
{
    char tmp[32];
    return ent_buf_append_str(out, format_double(tmp, v));
}

/* Appends s with the given characters escaped: always backslash and newline, plus the double
 * quote when quote is set (label values; HELP text leaves quotes alone). */
static ent_err append_escaped(struct ent_buf *out, const char *s, bool quote)
{
    size_t start = 0, i = 0;
    ent_err rc;
    for (; s[i]; i++) {
        const char *esc = NULL;
        if (s[i] == '\\')
            esc = "\\\\";
        else if (s[i] == '\n')
            esc = "\\n";
        else if (quote && s[i] == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        rc = ent_buf_append(out, s + start, i - start);
        if (rc != ENT_OK)
            return rc;
        rc = ent_buf_append(out, esc, 2);
        if (rc != ENT_OK)
            return rc;
        start = i + 1;
    }
    return ent_buf_append(out, s + start, i - start);
}

static ent_err render_header(struct ent_buf *out, const char *name, const char *help,
                             const char *type)
{
    ent_err rc = ent_buf_printf(out, "# HELP %s ", name);
    if (rc == ENT_OK)
        rc = append_escaped(out, help, false);
    if (rc == ENT_OK)
        rc = ent_buf_printf(out, "\n# TYPE %s %s\n", name, type);
    return rc;
}

/* name{l1="v1",...,le="bound"} with no braces when there are no labels at all. le may be NULL;
 * values may be NULL for a family without children (then nlabels is 0). */
static ent_err render_series(struct ent_buf *out, const struct ent_metric_family *f,
                             const char *suffix, const struct ent_metric_child *c, const char *le)
{
    ent_err rc = ent_buf_append_str(out, f->name);
    if (rc == ENT_OK && suffix)
        rc = ent_buf_append_str(out, suffix);
    if (rc != ENT_OK || (f->nlabels == 0 && !le))
        return rc;
    rc = ent_buf_append_char(out, '{');
    for (unsigned i = 0; rc == ENT_OK && i < f->nlabels; i++) {
        rc = ent_buf_printf(out, "%s%s=\"", i ? "," : "", f->_label_names[i + 1]);
        if (rc == ENT_OK)
            rc = append_escaped(out, c->values[i], true);
        if (rc == ENT_OK)
            rc = ent_buf_append_char(out, '"');
    }
    if (rc == ENT_OK && le)
        rc = ent_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    if (rc == ENT_OK)
        rc = ent_buf_append_char(out, '}');
    return rc;
}

/* One child's samples; c NULL renders the zero series of a family without labels. */
static ent_err render_child(struct ent_buf *out, const struct ent_metric_family *f,
                            const struct ent_metric_child *c)
{
    uint64_t value = c ? atomic_load_explicit(&c->value, memory_order_relaxed) : 0;
    ent_err rc;
    if (f->type != ENT_METRIC_HISTOGRAM) {
        rc = render_series(out, f, NULL, c, NULL);
        if (rc == ENT_OK)
            rc = ent_buf_append_char(out, ' ');
        if (rc == ENT_OK && f->type == ENT_METRIC_COUNTER)
            rc = ent_buf_printf(out, "%" PRIu64, value);
        else if (rc == ENT_OK)
            rc = ent_metrics_format_double(out, bits_double(value));
        if (rc == ENT_OK)
            rc = ent_buf_append_char(out, '\n');
        return rc;
    }
    const ent_histogram *h = ENT_CONTAINER_OF(f, const ent_histogram, family);
    uint64_t cumulative = 0;
    rc = ENT_OK;
    for (unsigned i = 0; rc == ENT_OK && i <= h->nbounds; i++) {
        char tmp[32];
        const char *le = i < h->nbounds ? format_double(tmp, h->bounds[i]) : "+Inf";
        if (c)
            cumulative += atomic_load_explicit(&c->counts[i], memory_order_relaxed);
        if (rc == ENT_OK)
            rc = render_series(out, f, "_bucket", c, le);
        if (rc == ENT_OK)
            rc = ent_buf_printf(out, " %" PRIu64 "\n", cumulative);
    }
    if (rc == ENT_OK)
        rc = render_series(out, f, "_sum", c, NULL);
    if (rc == ENT_OK)
        rc = ent_buf_append_char(out, ' ');
    if (rc == ENT_OK)
        rc = ent_metrics_format_double(out, bits_double(value));
    if (rc == ENT_OK)
        rc = ent_buf_append_char(out, '\n');
    if (rc == ENT_OK)
        rc = render_series(out, f, "_count", c, NULL);
    if (rc == ENT_OK)
        rc = ent_buf_printf(out, " %" PRIu64 "\n", cumulative);
    return rc;
}

/* Orders children of one family by their label values; unused values are NULL in both. */
static int child_cmp(const void *a, const void *b)
{
    const struct ent_metric_child *x = *(const struct ent_metric_child *const *)a;
    const struct ent_metric_child *y = *(const struct ent_metric_child *const *)b;
    for (size_t i = 0; i < ENT_METRICS_MAX_LABELS && x->values[i]; i++) {
        int r = strcmp(x->values[i], y->values[i]);
        if (r != 0)
            return r;
    }
    return 0;
}

static ent_err render_family(struct ent_buf *out, struct ent_metric_family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    ent_err rc = render_header(out, f->name, f->help, types[f->type]);
    if (rc != ENT_OK)
        return rc;
    /* Children keep appearing while we render; collect the ones published now, holding the
     * family's mutex so none is created mid-walk (bumps of existing children don't take it). */
    pthread_mutex_lock(&f->_mu);
    size_t n = f->_nchildren;
    struct ent_metric_child **kids = n ? malloc(n * sizeof(*kids)) : NULL;
    if (n && !kids) {
        pthread_mutex_unlock(&f->_mu);
        return ENT_ENOMEM;
    }
    size_t k = 0;
    for (unsigned s = 0; s < ENT_METRICS_SLOTS; s++) {
        struct ent_metric_child *c = atomic_load_explicit(&f->_slots[s], memory_order_acquire);
        for (; c; c = c->next)
            kids[k++] = c;
    }
    pthread_mutex_unlock(&f->_mu);
    assert(k == n);
    if (n == 0)
        return f->nlabels == 0 ? render_child(out, f, NULL) : ENT_OK;
    qsort(kids, n, sizeof(*kids), child_cmp);
    for (size_t i = 0; rc == ENT_OK && i < n; i++)
        rc = render_child(out, f, kids[i]);
    free(kids);
    return rc;
}

struct render_item {
    const char *name;
    struct ent_metric_family *family; /* or */
    struct gauge_func *func;
};

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct render_item *)a)->name, ((const struct render_item *)b)->name);
}

ent_err ent_metrics_render(struct ent_metrics_registry *reg, struct ent_buf *out)
{
    if (!reg)
        reg = &default_registry;
    size_t start = out->len;
    ent_err rc = ENT_OK;
    pthread_mutex_lock(&reg->mu);
    struct ent_metric_family *head = atomic_load_explicit(&reg->families, memory_order_acquire);
    size_t n = 0;
    for (struct ent_metric_family *f = head; f; f = f->_next)
        n++;
    for (struct gauge_func *g = reg->funcs; g; g = g->next)
        n++;
    struct render_item *items = calloc(n, sizeof(*items));
    if (!items) {
        rc = ENT_ENOMEM;
        goto out;
    }
    size_t i = 0;
    for (struct ent_metric_family *f = head; f; f = f->_next)
        items[i++] = (struct render_item){.name = f->name, .family = f};
    for (struct gauge_func *g = reg->funcs; g; g = g->next)
        items[i++] = (struct render_item){.name = g->name, .func = g};
    qsort(items, n, sizeof(*items), item_cmp);
    for (i = 0; rc == ENT_OK && i < n; i++) {
        if (items[i].family) {
            rc = render_family(out, items[i].family);
            continue;
        }
        struct gauge_func *g = items[i].func;
        rc = render_header(out, g->name, g->help, "gauge");
        if (rc == ENT_OK)
            rc = ent_buf_printf(out, "%s ", g->name);
        if (rc == ENT_OK)
            rc = ent_metrics_format_double(out, g->fn(g->ud));
        if (rc == ENT_OK)
            rc = ent_buf_append_char(out, '\n');
    }
    free(items);
out:
    pthread_mutex_unlock(&reg->mu);
    if (rc != ENT_OK && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
