/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl's output and local input: aligned tables for lists, "key: value" blocks for
 * single objects, compact JSON lines for --json, and reading JSON request files and
 * K/OP/OPc secrets (files or environment variables, never arguments). Text that came from
 * the server has its control characters replaced before it reaches a terminal. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "ectl.h"
#include "entitlectl.h"

static void add_clean(struct ent_buf *b, const char *s)
{
    for (; *s; s++)
        ent_buf_append_char(b, (unsigned char)*s < ' ' || *s == 0x7f ? '?' : *s);
}

static void add_value(struct ent_buf *b, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        add_clean(b, json_string_value(v));
        break;
    case JSON_INTEGER:
        ent_buf_printf(b, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        ent_buf_printf(b, "%g", json_real_value(v));
        break;
    case JSON_TRUE:
        ent_buf_append_str(b, "true");
        break;
    case JSON_FALSE:
        ent_buf_append_str(b, "false");
        break;
    case JSON_NULL:
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (i)
                ent_buf_append_char(b, ',');
            if (depth < 4)
                add_value(b, x, depth + 1);
        }
        break;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x)
        {
            if (json_is_null(x))
                continue;
            if (!first)
                ent_buf_append_char(b, ',');
            first = false;
            add_clean(b, k);
            ent_buf_append_char(b, '=');
            if (depth < 4)
                add_value(b, x, depth + 1);
        }
        break;
    }
    }
}

char *ectl_text(const json_t *v)
{
    struct ent_buf b;
    ent_buf_init(&b, 1 << 20);
    ent_buf_append(&b, "", 0);
    if (v)
        add_value(&b, v, 0);
    return ent_buf_steal(&b, NULL);
}

static char *cell(const json_t *item, const struct ectl_col *c)
{
    const json_t *v = json_object_get(item, c->key);
    char *t = NULL;
    if (c->mode == ECTL_COL_VALUE) {
        t = ectl_text(v);
    } else {
        struct ent_buf b;
        ent_buf_init(&b, 1 << 16);
        ent_buf_append(&b, "", 0);
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            bool want = c->mode == ECTL_COL_TRUE_KEYS ? json_is_true(x) : json_is_false(x);
            if (!want)
                continue;
            if (b.len)
                ent_buf_append_char(&b, ',');
            add_clean(&b, k);
        }
        t = ent_buf_steal(&b, NULL);
    }
    if (t && !t[0]) {
        free(t);
        t = strdup(c->empty ? c->empty : "-");
    }
    return t;
}

void ectl_print_table(const json_t *items, const struct ectl_col *cols, size_t n_cols)
{
    size_t rows = json_array_size(items);
    size_t *w = calloc(n_cols, sizeof(*w));
    char **cells = calloc(rows * n_cols + 1, sizeof(*cells));
    if (!w || !cells) {
        free(w);
        free(cells);
        fprintf(stderr, "entitlectl: out of memory\n");
        return;
    }
    for (size_t c = 0; c < n_cols; c++)
        w[c] = strlen(cols[c].head);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < n_cols; c++) {
            char *t = cell(json_array_get(items, r), &cols[c]);
            cells[r * n_cols + c] = t;
            if (t && strlen(t) > w[c])
                w[c] = strlen(t);
        }
    }
    for (size_t c = 0; c < n_cols; c++) {
        if (c + 1 < n_cols)
            printf("%-*s  ", (int)w[c], cols[c].head);
        else
            printf("%s\n", cols[c].head);
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < n_cols; c++) {
            const char *t = cells[r * n_cols + c] ? cells[r * n_cols + c] : "?";
            if (c + 1 < n_cols)
                printf("%-*s  ", (int)w[c], t);
            else
                printf("%s\n", t);
        }
    }
    for (size_t i = 0; i < rows * n_cols; i++)
        free(cells[i]);
    free(cells);
    free(w);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What an empty value means for the few keys where "-" would hide it. */
static const char *empty_text(const char *key)
{
    if (strcmp(key, "plan") == 0)
        return "(default)";
    if (strcmp(key, "serving_plmn") == 0)
        return "home";
    return "-";
}

void ectl_print_object(const json_t *obj)
{
    const char *k;
    json_t *v;
    int w = 0;
    json_object_foreach((json_t *)obj, k, v)
    {
        if ((int)strlen(k) > w)
            w = (int)strlen(k);
    }
    json_object_foreach((json_t *)obj, k, v)
    {
        char *t = ectl_text(v);
        struct ent_buf key;
        ent_buf_init(&key, 4096);
        ent_buf_append(&key, "", 0);
        add_clean(&key, k);
        printf("%s:%*s %s", key.data, w - (int)strlen(k), "", t && t[0] ? t : empty_text(k));
        ent_buf_free(&key);
        free(t);
        /* Wall-clock milliseconds are shown as UTC too. */
        if (ends_with(k, "_ms") && json_is_integer(v) && json_integer_value(v) > 0) {
            time_t secs = (time_t)(json_integer_value(v) / 1000);
            struct tm tm;
            char when[40];
            if (gmtime_r(&secs, &tm) && strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm))
                printf(" (%s.%03dZ)", when, (int)(json_integer_value(v) % 1000));
        }
        putchar('\n');
    }
}

void ectl_print_json_line(const json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (t) {
        puts(t);
        free(t);
    }
}

json_t *ectl_resp_json(const struct ectl_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &je);
    if (!j)
        fprintf(stderr, "entitlectl: the API answered something that is not JSON: %s\n", je.text);
    return j;
}

json_t *ectl_load_json_file(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    const char *p = strcmp(path, "-") == 0 ? "/dev/stdin" : path;
    ent_err rc = ent_file_read(p, 16 * 1024 * 1024, &text, &len);
    if (rc != ENT_OK) {
        fprintf(stderr, "entitlectl: cannot read %s: %s\n", path, ent_strerror(rc));
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!j || !json_is_object(j)) {
        fprintf(stderr, "entitlectl: %s: not a JSON object%s%s (line %d)\n", path, j ? "" : ": ",
                j ? "" : je.text, je.line);
        json_decref(j);
        return NULL;
    }
    return j;
}

bool ectl_read_secret(const char *what, const char *file, const char *env, char *out, size_t hexlen)
{
    char *text = NULL;
    size_t len = 0;
    const char *src = NULL;
    if (file && env) {
        fprintf(stderr, "entitlectl: give --%s-file or --%s-env, not both\n", what, what);
        return false;
    }
    if (file) {
        ent_err rc = ent_file_read(file, 4096, &text, &len);
        if (rc != ENT_OK) {
            fprintf(stderr, "entitlectl: cannot read --%s-file %s: %s\n", what, file,
                    ent_strerror(rc));
            return false;
        }
        src = text;
    } else {
        src = getenv(env);
        if (!src) {
            fprintf(stderr, "entitlectl: --%s-env: variable %s is not set\n", what, env);
            return false;
        }
    }
    while (*src && isspace((unsigned char)*src))
        src++;
    size_t n = 0;
    while (src[n] && !isspace((unsigned char)src[n]))
        n++;
    bool ok = n == hexlen;
    for (size_t i = 0; ok && i < n; i++)
        ok = isxdigit((unsigned char)src[i]) != 0;
    for (size_t i = n; ok && src[i]; i++)
        ok = isspace((unsigned char)src[i]) != 0;
    if (ok) {
        memcpy(out, src, n);
        out[n] = '\0';
    } else {
        fprintf(stderr, "entitlectl: %s (from %s) must be exactly %zu hex digits\n", what,
                file ? "the file" : "the environment", hexlen);
    }
    if (text) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    return ok;
}
