/* SPDX-License-Identifier: Apache-2.0 */
/* The schema-driven configuration loader behind ent/config.h. It owns parsing (YAML through
 * libyaml's document API, environment variables, the value syntaxes for durations, sizes,
 * booleans and lists), the precedence default < file < environment, error messages that
 * name the offending key, and the reload/dump/usage helpers. It never interprets a value:
 * the daemons' key tables decide what a key means and where it lives.
 *
 * A load is staged: every key's value is built in a private array (defaults first, then the
 * file, then the environment, each parsed and range-checked as it is met, so a bad file
 * value is an error even when the environment overrides it) and copied into the caller's
 * struct only when everything succeeded. */
#include "ent/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <yaml.h>

/* A configuration file is a few kilobytes; anything bigger is a mistake. */
#define CFG_FILE_LIMIT   (1024 * 1024)
#define CFG_ENV_NAME_MAX 128
/* Bad values are quoted in error messages up to this many bytes. */
#define CFG_QUOTE_MAX 64

union cfg_val {
    char *s;
    int64_t i;
    uint64_t u;
    bool b;
    struct ent_strlist l;
    enum ent_log_level lv;
};

struct loader {
    const struct ent_cfg_key *keys;
    size_t n;
    union cfg_val *vals; /* staged value per key */
    size_t *file_line;   /* line a key was set at in the file, 0 if not */
    const char *path;
    char *err;
    size_t err_len;
};

static ent_err set_err(char *err, size_t err_len, ent_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static ent_err set_err(char *err, size_t err_len, ent_err rc, const char *fmt, ...)
{
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- values ---------------------------------------------------------------------------- */

static void strlist_free(struct ent_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static ent_err strlist_push(struct ent_strlist *l, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    if (!copy)
        return ENT_ENOMEM;
    char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!items) {
        free(copy);
        return ENT_ENOMEM;
    }
    items[l->n] = copy;
    l->items = items;
    l->n++;
    return ENT_OK;
}

/* "a, b,c" -> {"a", "b", "c"}: items are trimmed and empty ones dropped, so "" is the empty
 * list and a trailing comma is harmless. */
static ent_err strlist_split(const char *s, struct ent_strlist *out)
{
    struct ent_strlist l = {0};
    while (*s) {
        const char *end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        const char *a = s;
        const char *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a) {
            ent_err rc = strlist_push(&l, a, (size_t)(b - a));
            if (rc != ENT_OK) {
                strlist_free(&l);
                return rc;
            }
        }
        s = *end ? end + 1 : end;
    }
    *out = l;
    return ENT_OK;
}

static void val_free(enum ent_cfg_type type, union cfg_val *v)
{
    if (type == ENT_CFG_STR) {
        free(v->s);
        v->s = NULL;
    } else if (type == ENT_CFG_STRLIST) {
        strlist_free(&v->l);
    }
}

static bool val_equal(enum ent_cfg_type type, const union cfg_val *a, const union cfg_val *b)
{
    switch (type) {
    case ENT_CFG_STR:
        if (!a->s || !b->s)
            return a->s == b->s;
        return strcmp(a->s, b->s) == 0;
    case ENT_CFG_INT:
        return a->i == b->i;
    case ENT_CFG_BOOL:
        return a->b == b->b;
    case ENT_CFG_DURATION:
    case ENT_CFG_SIZE:
        return a->u == b->u;
    case ENT_CFG_LOGLEVEL:
        return a->lv == b->lv;
    case ENT_CFG_STRLIST:
        if (a->l.n != b->l.n)
            return false;
        for (size_t i = 0; i < a->l.n; i++) {
            if (strcmp(a->l.items[i], b->l.items[i]) != 0)
                return false;
        }
        return true;
    }
    return false;
}

static size_t type_size(enum ent_cfg_type type)
{
    switch (type) {
    case ENT_CFG_STR:
        return sizeof(char *);
    case ENT_CFG_INT:
        return sizeof(int64_t);
    case ENT_CFG_BOOL:
        return sizeof(bool);
    case ENT_CFG_DURATION:
    case ENT_CFG_SIZE:
        return sizeof(uint64_t);
    case ENT_CFG_STRLIST:
        return sizeof(struct ent_strlist);
    case ENT_CFG_LOGLEVEL:
        return sizeof(enum ent_log_level);
    }
    return 0;
}

/* The struct fields are read and written with memcpy so the table's offsets are the only
 * thing trusted about the caller's layout. */
static void field_get(const void *cfg, const struct ent_cfg_key *k, union cfg_val *v)
{
    const char *p = (const char *)cfg + k->offset;
    memset(v, 0, sizeof(*v));
    switch (k->type) {
    case ENT_CFG_STR:
        memcpy(&v->s, p, sizeof(v->s));
        break;
    case ENT_CFG_INT:
        memcpy(&v->i, p, sizeof(v->i));
        break;
    case ENT_CFG_BOOL:
        memcpy(&v->b, p, sizeof(v->b));
        break;
    case ENT_CFG_DURATION:
    case ENT_CFG_SIZE:
        memcpy(&v->u, p, sizeof(v->u));
        break;
    case ENT_CFG_STRLIST:
        memcpy(&v->l, p, sizeof(v->l));
        break;
    case ENT_CFG_LOGLEVEL:
        memcpy(&v->lv, p, sizeof(v->lv));
        break;
    }
}

static void field_set(void *cfg, const struct ent_cfg_key *k, const union cfg_val *v)
{
    char *p = (char *)cfg + k->offset;
    switch (k->type) {
    case ENT_CFG_STR:
        memcpy(p, &v->s, sizeof(v->s));
        break;
    case ENT_CFG_INT:
        memcpy(p, &v->i, sizeof(v->i));
        break;
    case ENT_CFG_BOOL:
        memcpy(p, &v->b, sizeof(v->b));
        break;
    case ENT_CFG_DURATION:
    case ENT_CFG_SIZE:
        memcpy(p, &v->u, sizeof(v->u));
        break;
    case ENT_CFG_STRLIST:
        memcpy(p, &v->l, sizeof(v->l));
        break;
    case ENT_CFG_LOGLEVEL:
        memcpy(p, &v->lv, sizeof(v->lv));
        break;
    }
}

/* ---- value syntax ---------------------------------------------------------------------- */

/* Digits then an optional suffix; no sign, no spaces, no fraction. */
static bool parse_u64_suffix(const char *s, uint64_t *num, const char **suffix)
{
    if (!isdigit((unsigned char)s[0]))
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    *num = v;
    *suffix = end;
    return true;
}

struct unit {
    const char *suffix;
    uint64_t mult;
};

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000},
};
static const struct unit size_units[] = {
    {"", 1},
    {"k", 1024},
    {"m", 1024 * 1024},
    {"g", 1024 * 1024 * 1024},
};

static const char *parse_with_units(const char *s, const struct unit *units, size_t n_units,
                                    const char *what, uint64_t *out)
{
    uint64_t num;
    const char *suffix;
    if (!parse_u64_suffix(s, &num, &suffix))
        return what;
    for (size_t i = 0; i < n_units; i++) {
        if (strcasecmp(suffix, units[i].suffix) != 0)
            continue;
        if (num > UINT64_MAX / units[i].mult)
            return "is too large";
        *out = num * units[i].mult;
        return NULL;
    }
    return what;
}

static const char *parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < ENT_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return NULL;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return NULL;
        }
    }
    return "is not a boolean (true/false, yes/no, on/off, 1/0)";
}

/* The largest unit that divides v exactly, so dumps read "5s" rather than "5000". units[0]
 * is the bare form; `first` is the smallest unit worth writing out ("ms" for durations). */
static void format_units(uint64_t v, const struct unit *units, size_t n_units, size_t first,
                         char *out, size_t cap)
{
    const struct unit *best = &units[first];
    for (size_t i = first + 1; i < n_units; i++) {
        if (v != 0 && v % units[i].mult == 0)
            best = &units[i];
    }
    snprintf(out, cap, "%llu%s", (unsigned long long)(v / best->mult), best->suffix);
}

static void format_duration(uint64_t ms, char *out, size_t cap)
{
    format_units(ms, duration_units, ENT_ARRAY_LEN(duration_units), 1, out, cap);
}

static void format_size(uint64_t bytes, char *out, size_t cap)
{
    format_units(bytes, size_units, ENT_ARRAY_LEN(size_units), 0, out, cap);
}

static const char *level_name(enum ent_log_level lv)
{
    switch (lv) {
    case ENT_LOG_DEBUG:
        return "debug";
    case ENT_LOG_INFO:
        return "info";
    case ENT_LOG_WARN:
        return "warn";
    case ENT_LOG_ERROR:
        return "error";
    }
    return "info";
}

/* Parses text into *out (a fresh value the caller frees). `is_null` marks a YAML null (an
 * unquoted "", "~" or "null"), which unsets a string and empties a list. Returns NULL when
 * the text is valid (*rc is then ENT_OK, or ENT_ENOMEM if copying it failed); otherwise the
 * reason, worded to follow the quoted value. */
static const char *val_parse(const struct ent_cfg_key *k, const char *text, bool is_null,
                             union cfg_val *out, ent_err *rc)
{
    memset(out, 0, sizeof(*out));
    *rc = ENT_OK;
    switch (k->type) {
    case ENT_CFG_STR:
        if (!is_null) {
            out->s = strdup(text);
            if (!out->s)
                *rc = ENT_ENOMEM;
        }
        return NULL;
    case ENT_CFG_STRLIST:
        if (!is_null)
            *rc = strlist_split(text, &out->l);
        return NULL;
    case ENT_CFG_INT:
        /* strtoll would skip leading blanks; " 5" is as wrong as "5 ". */
        if (!isdigit((unsigned char)text[0]) && text[0] != '-' && text[0] != '+')
            return "is not an integer";
        if (ent_parse_i64(text, INT64_MIN, INT64_MAX, &out->i) != ENT_OK)
            return "is not an integer";
        return NULL;
    case ENT_CFG_BOOL:
        return parse_bool(text, &out->b);
    case ENT_CFG_DURATION:
        return parse_with_units(text, duration_units, ENT_ARRAY_LEN(duration_units),
                                "is not a duration (e.g. 250ms, 2s, 1m, 1h)", &out->u);
    case ENT_CFG_SIZE:
        return parse_with_units(text, size_units, ENT_ARRAY_LEN(size_units),
                                "is not a size (e.g. 512, 8k, 1m, 1g)", &out->u);
    case ENT_CFG_LOGLEVEL:
        if (!ent_log_level_parse(text, &out->lv))
            return "is not a log level (debug, info, warn, error)";
        return NULL;
    }
    return "has an unknown type";
}

static void format_bound(const struct ent_cfg_key *k, int64_t v, char *out, size_t cap)
{
    if (k->type == ENT_CFG_DURATION && v >= 0)
        format_duration((uint64_t)v, out, cap);
    else if (k->type == ENT_CFG_SIZE && v >= 0)
        format_size((uint64_t)v, out, cap);
    else
        snprintf(out, cap, "%lld", (long long)v);
}

static bool in_range(const struct ent_cfg_key *k, const union cfg_val *v)
{
    if (k->min >= k->max)
        return true;
    switch (k->type) {
    case ENT_CFG_INT:
        return v->i >= k->min && v->i <= k->max;
    case ENT_CFG_DURATION:
    case ENT_CFG_SIZE:
        if (v->u > (uint64_t)INT64_MAX)
            return false;
        return (int64_t)v->u >= k->min && (int64_t)v->u <= k->max;
    default:
        return true;
    }
}

/* "\"abc\"" with control characters escaped and long values cut, or <redacted>. */
static void quote_value(const struct ent_cfg_key *k, const char *text, char *out, size_t cap)
{
    if (k->secret) {
        snprintf(out, cap, "<redacted>");
        return;
    }
    struct ent_buf b;
    ent_buf_init(&b, 8 * CFG_QUOTE_MAX);
    size_t len = strlen(text);
    bool cut = len > CFG_QUOTE_MAX;
    ent_err rc = ent_buf_append_char(&b, '"');
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(&b, text, cut ? CFG_QUOTE_MAX : len);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&b, cut ? "...\"" : "\"");
    snprintf(out, cap, "%s", rc == ENT_OK ? b.data : "<value>");
    ent_buf_free(&b);
}

/* ---- loading --------------------------------------------------------------------------- */

static void env_name(const struct ent_cfg_key *k, char *out, size_t cap)
{
    int n = snprintf(out, cap, "ENTITLE_%s_%s", k->section, k->name);
    for (int i = 0; i < n && (size_t)i < cap; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

static bool valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

/* A broken table is the daemon's bug, but it costs little to say which entry is wrong. */
static ent_err check_table(const struct ent_cfg_key *keys, size_t n, size_t cfg_size, char *err,
                           size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        const struct ent_cfg_key *k = &keys[i];
        if (!valid_name(k->section) || !valid_name(k->name))
            return set_err(err, err_len, ENT_EINVAL, "key table: entry %zu: bad name \"%s.%s\"", i,
                           k->section ? k->section : "(null)", k->name ? k->name : "(null)");
        size_t ts = type_size(k->type);
        if (ts == 0)
            return set_err(err, err_len, ENT_EINVAL, "key table: %s.%s: unknown type %d",
                           k->section, k->name, (int)k->type);
        if (k->size != 0 && k->size != ts)
            return set_err(err, err_len, ENT_EINVAL,
                           "key table: %s.%s: field is %zu bytes, type wants %zu", k->section,
                           k->name, k->size, ts);
        if (cfg_size != 0 && (k->offset > cfg_size || cfg_size - k->offset < ts))
            return set_err(err, err_len, ENT_EINVAL, "key table: %s.%s: field outside struct",
                           k->section, k->name);
        char a[CFG_ENV_NAME_MAX];
        env_name(k, a, sizeof(a));
        if (strlen(k->section) + strlen(k->name) + 10 > sizeof(a))
            return set_err(err, err_len, ENT_EINVAL, "key table: %s.%s: name too long", k->section,
                           k->name);
        for (size_t j = 0; j < i; j++) {
            char b[CFG_ENV_NAME_MAX];
            env_name(&keys[j], b, sizeof(b));
            if (strcmp(a, b) == 0)
                return set_err(err, err_len, ENT_EINVAL,
                               "key table: %s.%s and %s.%s share the variable %s", keys[j].section,
                               keys[j].name, k->section, k->name, a);
        }
    }
    return ENT_OK;
}

/* Parses, range-checks and stages one value; on failure writes
 * "<where>section.name: "value" reason" and returns fail_rc (or ENT_ENOMEM). */
static ent_err stage_text(struct loader *L, size_t ki, const char *text, bool is_null,
                          const char *where, ent_err fail_rc)
{
    const struct ent_cfg_key *k = &L->keys[ki];
    union cfg_val v;
    ent_err rc;
    const char *why = val_parse(k, text, is_null, &v, &rc);
    if (rc != ENT_OK)
        return set_err(L->err, L->err_len, rc, "%s%s.%s: %s", where, k->section, k->name,
                       ent_strerror(rc));
    char quoted[8 * CFG_QUOTE_MAX];
    if (why) {
        quote_value(k, text, quoted, sizeof(quoted));
        return set_err(L->err, L->err_len, fail_rc, "%s%s.%s: %s %s", where, k->section, k->name,
                       quoted, why);
    }
    if (!in_range(k, &v)) {
        char lo[32], hi[32];
        format_bound(k, k->min, lo, sizeof(lo));
        format_bound(k, k->max, hi, sizeof(hi));
        quote_value(k, text, quoted, sizeof(quoted));
        val_free(k->type, &v);
        return set_err(L->err, L->err_len, fail_rc, "%s%s.%s: %s is out of range [%s, %s]", where,
                       k->section, k->name, quoted, lo, hi);
    }
    val_free(k->type, &L->vals[ki]);
    L->vals[ki] = v;
    return ENT_OK;
}

static ent_err stage_defaults(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        if (!L->keys[i].def)
            continue;
        ent_err rc = stage_text(L, i, L->keys[i].def, false, "key table: default of ", ENT_EINVAL);
        if (rc != ENT_OK)
            return rc;
    }
    return ENT_OK;
}

static ent_err stage_env(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        char name[CFG_ENV_NAME_MAX];
        env_name(&L->keys[i], name, sizeof(name));
        const char *v = getenv(name);
        if (!v)
            continue;
        char where[CFG_ENV_NAME_MAX + 16];
        snprintf(where, sizeof(where), "environment %s: ", name);
        ent_err rc = stage_text(L, i, v, false, where, ENT_ECONFIG);
        if (rc != ENT_OK)
            return rc;
    }
    return ENT_OK;
}

static ssize_t find_key(const struct loader *L, const char *section, const char *name)
{
    for (size_t i = 0; i < L->n; i++) {
        if (strcmp(L->keys[i].section, section) == 0 && strcmp(L->keys[i].name, name) == 0)
            return (ssize_t)i;
    }
    return -1;
}

static bool known_section(const struct loader *L, const char *section)
{
    for (size_t i = 0; i < L->n; i++) {
        if (strcmp(L->keys[i].section, section) == 0)
            return true;
    }
    return false;
}

static size_t node_line(const yaml_node_t *node)
{
    return node->start_mark.line + 1;
}

/* A scalar's text, or NULL if it is not a scalar or holds a NUL byte. */
static const char *scalar_text(const yaml_node_t *node)
{
    if (!node || node->type != YAML_SCALAR_NODE)
        return NULL;
    const char *s = (const char *)node->data.scalar.value;
    if (strlen(s) != node->data.scalar.length)
        return NULL;
    return s;
}

static bool scalar_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)node->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static ent_err stage_sequence(struct loader *L, yaml_document_t *doc, size_t ki, yaml_node_t *seq)
{
    const struct ent_cfg_key *k = &L->keys[ki];
    struct ent_strlist l = {0};
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        const char *s = scalar_text(item);
        if (!s) {
            strlist_free(&l);
            return set_err(L->err, L->err_len, ENT_ECONFIG,
                           "%s:%zu: %s.%s: list items must be plain strings", L->path,
                           node_line(item ? item : seq), k->section, k->name);
        }
        ent_err rc = strlist_push(&l, s, strlen(s));
        if (rc != ENT_OK) {
            strlist_free(&l);
            return set_err(L->err, L->err_len, rc, "%s", ent_strerror(rc));
        }
    }
    val_free(k->type, &L->vals[ki]);
    L->vals[ki].l = l;
    return ENT_OK;
}

static ent_err stage_file_key(struct loader *L, yaml_document_t *doc, const char *section,
                              yaml_node_t *kn, yaml_node_t *vn)
{
    const char *name = scalar_text(kn);
    if (!name)
        return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: %s: key names must be strings",
                       L->path, node_line(kn), section);
    ssize_t ki = find_key(L, section, name);
    if (ki < 0)
        return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: unknown key \"%s.%s\"", L->path,
                       node_line(kn), section, name);
    if (L->file_line[ki])
        return set_err(L->err, L->err_len, ENT_ECONFIG,
                       "%s:%zu: duplicate key \"%s.%s\" (first set at line %zu)", L->path,
                       node_line(kn), section, name, L->file_line[ki]);
    L->file_line[ki] = node_line(kn);
    const struct ent_cfg_key *k = &L->keys[ki];
    if (k->type == ENT_CFG_STRLIST && vn->type == YAML_SEQUENCE_NODE)
        return stage_sequence(L, doc, (size_t)ki, vn);
    const char *text = scalar_text(vn);
    if (!text)
        return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: %s.%s: expected %s", L->path,
                       node_line(vn), section, name,
                       k->type == ENT_CFG_STRLIST ? "a list of strings" : "a single value");
    char where[512];
    snprintf(where, sizeof(where), "%s:%zu: ", L->path, node_line(vn));
    return stage_text(L, (size_t)ki, text, scalar_is_null(vn), where, ENT_ECONFIG);
}

static ent_err stage_section(struct loader *L, yaml_document_t *doc, const char *section,
                             yaml_node_t *kn, yaml_node_t *vn)
{
    if (vn->type == YAML_SCALAR_NODE && scalar_is_null(vn)) {
        if (!known_section(L, section))
            return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: unknown section \"%s\"",
                           L->path, node_line(kn), section);
        return ENT_OK;
    }
    if (vn->type != YAML_MAPPING_NODE)
        return set_err(L->err, L->err_len, ENT_ECONFIG,
                       "%s:%zu: %s: expected a mapping of keys to values", L->path, node_line(vn),
                       section);
    if (vn->data.mapping.pairs.start == vn->data.mapping.pairs.top && !known_section(L, section))
        return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: unknown section \"%s\"", L->path,
                       node_line(kn), section);
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        ent_err rc = stage_file_key(L, doc, section, yaml_document_get_node(doc, p->key),
                                    yaml_document_get_node(doc, p->value));
        if (rc != ENT_OK)
            return rc;
    }
    return ENT_OK;
}

static ent_err stage_document(struct loader *L, yaml_document_t *doc)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || scalar_is_null(root))
        return ENT_OK;
    if (root->type != YAML_MAPPING_NODE)
        return set_err(L->err, L->err_len, ENT_ECONFIG,
                       "%s:%zu: expected a mapping of sections at the top level", L->path,
                       node_line(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        const char *section = scalar_text(kn);
        if (!section)
            return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: section names must be strings",
                           L->path, node_line(kn));
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p; q++) {
            const char *prev = scalar_text(yaml_document_get_node(doc, q->key));
            if (prev && strcmp(prev, section) == 0)
                return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: duplicate section \"%s\"",
                               L->path, node_line(kn), section);
        }
        ent_err rc = stage_section(L, doc, section, kn, yaml_document_get_node(doc, p->value));
        if (rc != ENT_OK)
            return rc;
    }
    return ENT_OK;
}

static ent_err yaml_error(struct loader *L, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return set_err(L->err, L->err_len, ENT_ENOMEM, "%s: out of memory", L->path);
    return set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu:%zu: YAML error: %s%s%s", L->path,
                   p->problem_mark.line + 1, p->problem_mark.column + 1,
                   p->problem ? p->problem : "syntax error", p->context ? " " : "",
                   p->context ? p->context : "");
}

static ent_err stage_file(struct loader *L)
{
    char *text = NULL;
    size_t len = 0;
    ent_err rc = ent_file_read(L->path, CFG_FILE_LIMIT, &text, &len);
    if (rc == ENT_ENOMEM)
        return set_err(L->err, L->err_len, rc, "%s: out of memory", L->path);
    if (rc != ENT_OK)
        return set_err(L->err, L->err_len, ENT_ECONFIG, "%s: cannot read: %s", L->path,
                       rc == ENT_ETOOBIG ? "larger than 1 MiB" : ent_strerror(rc));

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        return set_err(L->err, L->err_len, ENT_ENOMEM, "%s: out of memory", L->path);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_error(L, &parser);
        goto out_parser;
    }
    rc = stage_document(L, &doc);
    if (rc == ENT_OK) {
        /* One document per file: a second one would otherwise be ignored silently. */
        yaml_document_t extra;
        if (!yaml_parser_load(&parser, &extra)) {
            rc = yaml_error(L, &parser);
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root)
                rc = set_err(L->err, L->err_len, ENT_ECONFIG, "%s:%zu: more than one YAML document",
                             L->path, node_line(root));
            yaml_document_delete(&extra);
        }
    }
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

static void staged_free(struct loader *L)
{
    if (L->vals) {
        for (size_t i = 0; i < L->n; i++)
            val_free(L->keys[i].type, &L->vals[i]);
    }
    free(L->vals);
    free(L->file_line);
}

static ent_err load(void *cfg, const struct ent_cfg_key *keys, size_t n_keys, size_t cfg_size,
                    const char *path, char *err, size_t err_len)
{
    if (err && err_len > 0)
        err[0] = '\0';
    if (!cfg || (!keys && n_keys))
        return set_err(err, err_len, ENT_EINVAL, "config: no struct or key table");
    ent_err rc = check_table(keys, n_keys, cfg_size, err, err_len);
    if (rc != ENT_OK)
        return rc;
    struct loader L = {
        .keys = keys,
        .n = n_keys,
        .vals = calloc(n_keys ? n_keys : 1, sizeof(union cfg_val)),
        .file_line = calloc(n_keys ? n_keys : 1, sizeof(size_t)),
        .path = path,
        .err = err,
        .err_len = err_len,
    };
    if (!L.vals || !L.file_line) {
        rc = set_err(err, err_len, ENT_ENOMEM, "config: out of memory");
        goto out;
    }
    rc = stage_defaults(&L);
    if (rc == ENT_OK && path)
        rc = stage_file(&L);
    if (rc == ENT_OK)
        rc = stage_env(&L);
    if (rc != ENT_OK)
        goto out;
    /* Commit: ownership of strings and lists moves to cfg. */
    for (size_t i = 0; i < n_keys; i++) {
        field_set(cfg, &keys[i], &L.vals[i]);
        memset(&L.vals[i], 0, sizeof(L.vals[i]));
    }
    if (err && err_len > 0)
        err[0] = '\0';
out:
    staged_free(&L);
    return rc;
}

ent_err ent_config_load(void *cfg, const struct ent_cfg_key *keys, size_t n_keys, const char *path,
                        char *err, size_t err_len)
{
    return load(cfg, keys, n_keys, 0, path, err, err_len);
}

void ent_config_free(void *cfg, const struct ent_cfg_key *keys, size_t n_keys)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < n_keys; i++) {
        const struct ent_cfg_key *k = &keys[i];
        if (k->type != ENT_CFG_STR && k->type != ENT_CFG_STRLIST)
            continue;
        union cfg_val v;
        field_get(cfg, k, &v);
        val_free(k->type, &v);
        field_set(cfg, k, &v);
    }
}

ent_err ent_config_reload(void *cfg, size_t cfg_size, const struct ent_cfg_key *keys, size_t n_keys,
                          const char *path, char *err, size_t err_len)
{
    if (!cfg || cfg_size == 0)
        return set_err(err, err_len, ENT_EINVAL, "config: no struct to reload");
    void *fresh = calloc(1, cfg_size);
    if (!fresh)
        return set_err(err, err_len, ENT_ENOMEM, "config: out of memory");
    ent_err rc = load(fresh, keys, n_keys, cfg_size, path, err, err_len);
    if (rc != ENT_OK) {
        free(fresh);
        return rc;
    }
    struct ent_buf notes;
    ent_buf_init(&notes, 16 * 1024);
    for (size_t i = 0; i < n_keys; i++) {
        const struct ent_cfg_key *k = &keys[i];
        union cfg_val old, now;
        field_get(cfg, k, &old);
        field_get(fresh, k, &now);
        if (val_equal(k->type, &old, &now))
            continue;
        if (k->reloadable) {
            /* Swap, so freeing `fresh` below releases the old value. */
            field_set(cfg, k, &now);
            field_set(fresh, k, &old);
            continue;
        }
        /* Best effort: a note that does not fit is dropped, the reload still stands. */
        (void)ent_buf_printf(&notes, "%s%s.%s: changed, restart to apply", notes.len ? "; " : "",
                             k->section, k->name);
    }
    if (err && err_len > 0)
        snprintf(err, err_len, "%s", notes.data ? notes.data : "");
    ent_buf_free(&notes);
    ent_config_free(fresh, keys, n_keys);
    free(fresh);
    return ENT_OK;
}

/* ---- dump and usage -------------------------------------------------------------------- */

/* A YAML double-quoted scalar: the JSON escapes plus DEL, which YAML does not allow raw. */
static ent_err append_yaml_quoted(struct ent_buf *out, const char *s)
{
    ent_err rc = ent_buf_append_char(out, '"');
    for (const char *p = s; rc == ENT_OK && *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == 0x7f)
            rc = ent_buf_append_str(out, "\\x7f");
        else
            rc = ent_buf_append_json_escaped(out, p, 1);
    }
    if (rc == ENT_OK)
        rc = ent_buf_append_char(out, '"');
    return rc;
}

static ent_err dump_value(struct ent_buf *out, const struct ent_cfg_key *k, const union cfg_val *v)
{
    char tmp[32];
    if (k->secret)
        return ent_buf_append_str(out, " \"<redacted>\"\n");
    switch (k->type) {
    case ENT_CFG_STR: {
        if (!v->s)
            return ent_buf_append_str(out, " null\n");
        ent_err rc = ent_buf_append_char(out, ' ');
        if (rc == ENT_OK)
            rc = append_yaml_quoted(out, v->s);
        if (rc == ENT_OK)
            rc = ent_buf_append_char(out, '\n');
        return rc;
    }
    case ENT_CFG_INT:
        return ent_buf_printf(out, " %lld\n", (long long)v->i);
    case ENT_CFG_BOOL:
        return ent_buf_append_str(out, v->b ? " true\n" : " false\n");
    case ENT_CFG_DURATION:
        format_duration(v->u, tmp, sizeof(tmp));
        return ent_buf_printf(out, " %s\n", tmp);
    case ENT_CFG_SIZE:
        format_size(v->u, tmp, sizeof(tmp));
        return ent_buf_printf(out, " %s\n", tmp);
    case ENT_CFG_LOGLEVEL:
        return ent_buf_printf(out, " %s\n", level_name(v->lv));
    case ENT_CFG_STRLIST: {
        if (v->l.n == 0)
            return ent_buf_append_str(out, " []\n");
        ent_err rc = ent_buf_append_char(out, '\n');
        for (size_t i = 0; rc == ENT_OK && i < v->l.n; i++) {
            rc = ent_buf_append_str(out, "    - ");
            if (rc == ENT_OK)
                rc = append_yaml_quoted(out, v->l.items[i]);
            if (rc == ENT_OK)
                rc = ent_buf_append_char(out, '\n');
        }
        return rc;
    }
    }
    return ent_buf_append_str(out, " null\n");
}

/* True if an earlier key already opened this key's section. */
static bool section_seen(const struct ent_cfg_key *keys, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (strcmp(keys[j].section, keys[i].section) == 0)
            return true;
    }
    return false;
}

ent_err ent_config_dump(const void *cfg, const struct ent_cfg_key *keys, size_t n_keys,
                        struct ent_buf *out)
{
    ent_err rc = ENT_OK;
    for (size_t i = 0; rc == ENT_OK && i < n_keys; i++) {
        if (section_seen(keys, i))
            continue;
        rc = ent_buf_printf(out, "%s:\n", keys[i].section);
        for (size_t j = i; rc == ENT_OK && j < n_keys; j++) {
            if (strcmp(keys[j].section, keys[i].section) != 0)
                continue;
            union cfg_val v;
            field_get(cfg, &keys[j], &v);
            rc = ent_buf_printf(out, "  %s:", keys[j].name);
            if (rc == ENT_OK)
                rc = dump_value(out, &keys[j], &v);
        }
    }
    return rc;
}

static const char *type_name(enum ent_cfg_type type)
{
    switch (type) {
    case ENT_CFG_STR:
        return "string";
    case ENT_CFG_INT:
        return "integer";
    case ENT_CFG_BOOL:
        return "boolean";
    case ENT_CFG_DURATION:
        return "duration";
    case ENT_CFG_SIZE:
        return "size";
    case ENT_CFG_STRLIST:
        return "list";
    case ENT_CFG_LOGLEVEL:
        return "log level";
    }
    return "?";
}

ent_err ent_config_usage(const struct ent_cfg_key *keys, size_t n_keys, struct ent_buf *out)
{
    ent_err rc = ENT_OK;
    for (size_t i = 0; rc == ENT_OK && i < n_keys; i++) {
        const struct ent_cfg_key *k = &keys[i];
        char env[CFG_ENV_NAME_MAX];
        env_name(k, env, sizeof(env));
        const char *def = k->secret ? "<redacted>" : (k->def ? k->def : "none");
        rc = ent_buf_printf(out, "  %s.%s  %s  (%s, default %s%s)  %s\n", k->section, k->name, env,
                            type_name(k->type), def, k->reloadable ? ", reloadable" : "",
                            k->help ? k->help : "");
    }
    return rc;
}
