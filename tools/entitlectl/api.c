/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl's HTTPS client for policyd's provisioning API (libcurl, one easy handle per
 * process), its global options and its option parser. Owns the bearer token: read once from
 * a file or ENTITLECTL_TOKEN, kept only in the Authorization header list, wiped on close.
 * Redirects are never followed (they would carry the token elsewhere). Output formatting
 * lives in out.c. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "ectl.h"
#include "entitlectl.h"

struct ectl_api {
    CURL *curl;
    char *base;  /* URL without a trailing slash */
    char *auth;  /* "Authorization: Bearer <token>" or NULL; wiped on close */
    bool global; /* curl_global_init succeeded */
    char err[CURL_ERROR_SIZE];
};

/* ---- options ------------------------------------------------------------------------ */

void ectl_opts_init(struct ectl_opts *o)
{
    memset(o, 0, sizeof(*o));
    const char *v = getenv("ENTITLECTL_URL");
    o->url = v && v[0] ? v : ECTL_DEFAULT_URL;
    v = getenv("ENTITLECTL_CACERT");
    o->cacert = v && v[0] ? v : NULL;
    v = getenv("ENTITLECTL_TOKEN_FILE");
    o->token_file = v && v[0] ? v : NULL;
}

/* Matches "--name" (value in argv[*i+1]) or "--name=value"; sets *val. 1 matched, 0 not,
 * -1 matched but the value is missing. */
static int opt_match(const char *name, bool needs_value, int argc, char **argv, int *i,
                     const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
        return 0;
    const char *rest = a + 2 + n;
    if (*rest == '=') {
        if (!needs_value)
            return -1;
        *val = rest + 1;
        return 1;
    }
    if (*rest != '\0')
        return 0;
    if (!needs_value) {
        *val = NULL;
        return 1;
    }
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

int ectl_global_opt(struct ectl_opts *o, int argc, char **argv, int *i)
{
    static const char *const valued[] = {"url", "token-file", "cacert", "timeout"};
    const char *val = NULL;
    int m = opt_match("json", false, argc, argv, i, &val);
    if (m == 1) {
        o->json = true;
        (*i)++;
        return 1;
    }
    if (strcmp(argv[*i], "--token") == 0 || strncmp(argv[*i], "--token=", 8) == 0) {
        fprintf(stderr, "entitlectl: the token is never taken as an argument (it would show "
                        "in ps): use --token-file FILE or ENTITLECTL_TOKEN\n");
        return -1;
    }
    for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
        m = opt_match(valued[k], true, argc, argv, i, &val);
        if (m == 0)
            continue;
        if (m < 0 || !val[0]) {
            fprintf(stderr, "entitlectl: --%s needs a value\n", valued[k]);
            return -1;
        }
        if (k == 0) {
            o->url = val;
        } else if (k == 1) {
            o->token_file = val;
        } else if (k == 2) {
            o->cacert = val;
        } else {
            int64_t s = 0;
            if (ent_parse_i64(val, 1, 86400, &s) != ENT_OK) {
                fprintf(stderr, "entitlectl: --timeout wants whole seconds (1-86400)\n");
                return -1;
            }
            o->timeout_ms = (long)s * 1000;
        }
        (*i)++;
        return 1;
    }
    return 0;
}

int ectl_usage(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "entitlectl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return ENTITLECTL_USAGE;
}

static bool list_add(struct ectl_strs *l, const char *v)
{
    if (l->n >= ECTL_LIST_MAX)
        return false;
    l->v[l->n++] = v;
    return true;
}

/* Splits a comma list into l (in place: the value is an argv string we own for the run). */
static bool list_add_split(struct ectl_strs *l, char *v)
{
    char *save = NULL;
    for (char *w = strtok_r(v, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (!list_add(l, w))
            return false;
    return true;
}

int ectl_parse(struct ectl_opts *g, int argc, char **argv, const struct ectl_opt *opts,
               size_t n_opts, const char **pos, size_t min_pos, size_t max_pos, size_t *n_pos,
               const char *usage)
{
    size_t np = 0;
    int i = 0;
    bool only_pos = false; /* after "--" */
    while (i < argc) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            i++;
            continue;
        }
        if (only_pos) {
            if (np >= max_pos)
                return ectl_usage(usage, "unexpected argument '%s'", a);
            pos[np++] = a;
            i++;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: %s\n", usage);
            return -1;
        }
        int gm = ectl_global_opt(g, argc, argv, &i);
        if (gm < 0)
            return ectl_usage(usage, "bad global option");
        if (gm > 0)
            continue;
        if (strncmp(a, "--", 2) == 0) {
            bool done = false;
            for (size_t k = 0; k < n_opts && !done; k++) {
                const char *val = NULL;
                int m = opt_match(opts[k].name, opts[k].kind != ECTL_FLAG, argc, argv, &i, &val);
                if (m == 0)
                    continue;
                if (m < 0)
                    return ectl_usage(usage, "--%s needs a value", opts[k].name);
                if (opts[k].kind == ECTL_FLAG) {
                    *(bool *)opts[k].slot = true;
                } else if (opts[k].kind == ECTL_VALUE) {
                    *(const char **)opts[k].slot = val;
                } else if (!list_add_split(opts[k].slot, (char *)val)) {
                    return ectl_usage(usage, "too many values for --%s (at most %d)", opts[k].name,
                                      ECTL_LIST_MAX);
                }
                done = true;
            }
            if (!done)
                return ectl_usage(usage, "unknown option %s", a);
            i++;
            continue;
        }
        if (np >= max_pos)
            return ectl_usage(usage, "unexpected argument '%s'", a);
        pos[np++] = a;
        i++;
    }
    if (np < min_pos)
        return ectl_usage(usage, "missing argument");
    if (n_pos)
        *n_pos = np;
    return ENTITLECTL_OK;
}

/* ---- the token ---------------------------------------------------------------------- */

/* Trims surrounding whitespace of s in place; returns the start. */
static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A token is printable ASCII without spaces: anything else would break (or inject into)
 * the Authorization header. */
static bool token_ok(const char *t)
{
    if (!t[0])
        return false;
    for (const char *c = t; *c; c++)
        if (*c <= ' ' || *c > '~')
            return false;
    return true;
}

/* Builds the Authorization header from the file or ENTITLECTL_TOKEN; *out NULL when no token
 * was configured (the API then answers 401). */
static int load_auth(const struct ectl_opts *o, char **out)
{
    char *text = NULL, *tok = NULL;
    size_t len = 0;
    *out = NULL;
    const char *env = getenv("ENTITLECTL_TOKEN");
    if (o->token_file) {
        const char *path = strcmp(o->token_file, "-") == 0 ? "/dev/stdin" : o->token_file;
        ent_err rc = ent_file_read(path, 64 * 1024, &text, &len);
        if (rc != ENT_OK) {
            fprintf(stderr, "entitlectl: cannot read the token file %s: %s\n", o->token_file,
                    ent_strerror(rc));
            return ENTITLECTL_USAGE;
        }
        tok = trim(text);
    } else if (env && env[0]) {
        len = strlen(env);
        text = strdup(env);
        if (!text) {
            fprintf(stderr, "entitlectl: out of memory\n");
            return ENTITLECTL_USAGE;
        }
        tok = trim(text);
    } else {
        return ENTITLECTL_OK;
    }
    int rc = ENTITLECTL_OK;
    if (!token_ok(tok)) {
        fprintf(stderr, "entitlectl: the token (%s) must be one word of printable ASCII\n",
                o->token_file ? "from --token-file" : "from ENTITLECTL_TOKEN");
        rc = ENTITLECTL_USAGE;
    } else {
        size_t n = strlen("Authorization: Bearer ") + strlen(tok) + 1;
        *out = malloc(n);
        if (*out)
            snprintf(*out, n, "Authorization: Bearer %s", tok);
        else
            rc = ENTITLECTL_USAGE;
    }
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

/* ---- the client --------------------------------------------------------------------- */

int ectl_api_open(struct ectl_api **out, const struct ectl_opts *o, long default_timeout_ms)
{
    if (strncmp(o->url, "https://", 8) != 0 && strncmp(o->url, "http://", 7) != 0) {
        fprintf(stderr, "entitlectl: --url must start with https:// (got %s)\n", o->url);
        return ENTITLECTL_USAGE;
    }
    struct ectl_api *a = calloc(1, sizeof(*a));
    if (!a) {
        fprintf(stderr, "entitlectl: out of memory\n");
        return ENTITLECTL_USAGE;
    }
    int rc = load_auth(o, &a->auth);
    if (rc != ENTITLECTL_OK) {
        free(a);
        return rc;
    }
    a->base = strdup(o->url);
    a->global = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!a->global || !a->base) {
        fprintf(stderr, "entitlectl: cannot initialise libcurl\n");
        ectl_api_close(a);
        return ENTITLECTL_CONN;
    }
    size_t bl = strlen(a->base);
    while (bl && a->base[bl - 1] == '/')
        a->base[--bl] = '\0';
    a->curl = curl_easy_init();
    if (!a->curl) {
        fprintf(stderr, "entitlectl: cannot initialise libcurl\n");
        ectl_api_close(a);
        return ENTITLECTL_CONN;
    }
    long tmo = o->timeout_ms ? o->timeout_ms : default_timeout_ms;
    curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->err);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS, tmo < 10000 ? tmo : 10000L);
    curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "entitlectl/1");
    curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->cacert)
        curl_easy_setopt(a->curl, CURLOPT_CAINFO, o->cacert);
    *out = a;
    return ENTITLECTL_OK;
}

void ectl_api_close(struct ectl_api *a)
{
    if (!a)
        return;
    if (a->curl)
        curl_easy_cleanup(a->curl);
    if (a->auth) {
        OPENSSL_cleanse(a->auth, strlen(a->auth));
        free(a->auth);
    }
    free(a->base);
    if (a->global)
        curl_global_cleanup();
    free(a);
}

void ectl_resp_free(struct ectl_resp *r)
{
    ent_buf_free(&r->body);
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct ectl_resp *r = ud;
    if (ent_buf_append(&r->body, data, size * n) != ENT_OK)
        return 0; /* over ECTL_RESP_MAX: curl reports a write error */
    return size * n;
}

/* Copies the value of header `name` (from a "Name: value\r\n" line) into out. */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t l = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, l);
    out[l] = '\0';
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct ectl_resp *r = ud;
    header_value(data, size * n, "etag", r->etag, sizeof(r->etag));
    header_value(data, size * n, "content-type", r->ctype, sizeof(r->ctype));
    return size * n;
}

static ent_err escape_add(struct ent_buf *b, const char *s)
{
    ent_err rc = ENT_OK;
    for (const char *c = s; rc == ENT_OK && *c; c++) {
        if (isalnum((unsigned char)*c) || strchr("-._~", *c))
            rc = ent_buf_append_char(b, *c);
        else
            rc = ent_buf_printf(b, "%%%02X", (unsigned char)*c);
    }
    return rc;
}

ent_err ectl_path_add(struct ent_buf *b, const char *seg)
{
    ent_err rc = ent_buf_append_char(b, '/');
    return rc == ENT_OK ? escape_add(b, seg) : rc;
}

ent_err ectl_query_add(struct ent_buf *b, const char *prefix, const char *val)
{
    ent_err rc = ent_buf_append_str(b, prefix);
    return rc == ENT_OK ? escape_add(b, val) : rc;
}

/* A user's ETag as a header: digits get quotes ("3" -> "\"3\""), anything else is sent as
 * given. */
static bool if_match_header(const char *etag, char *out, size_t cap)
{
    bool digits = etag[0] != '\0';
    for (const char *c = etag; *c; c++)
        if (!isdigit((unsigned char)*c))
            digits = false;
    for (const char *c = etag; *c; c++)
        if ((unsigned char)*c < ' ')
            return false;
    int n = digits ? snprintf(out, cap, "If-Match: \"%s\"", etag)
                   : snprintf(out, cap, "If-Match: %s", etag);
    return n > 0 && (size_t)n < cap;
}

int ectl_request(struct ectl_api *a, const char *method, const char *path, const char *body,
                 size_t len, const char *ctype, const char *if_match, struct ectl_resp *r)
{
    memset(r, 0, sizeof(*r));
    ent_buf_init(&r->body, ECTL_RESP_MAX);
    ent_buf_append(&r->body, "", 0);
    struct ent_buf url;
    ent_buf_init(&url, 16384);
    if (ent_buf_append_str(&url, a->base) != ENT_OK || ent_buf_append_str(&url, path) != ENT_OK) {
        ent_buf_free(&url);
        fprintf(stderr, "entitlectl: URL too long\n");
        return ENTITLECTL_USAGE;
    }
    struct curl_slist *h = NULL, *t = NULL;
    char im[96], ct[96];
    bool ok = true;
    if (a->auth) {
        t = curl_slist_append(h, a->auth);
        ok = ok && t;
        h = t ? t : h;
    }
    t = curl_slist_append(h, "Accept: application/json, application/x-ndjson");
    ok = ok && t;
    h = t ? t : h;
    t = curl_slist_append(h, "Expect:");
    ok = ok && t;
    h = t ? t : h;
    if (body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "application/json");
        t = curl_slist_append(h, ct);
        ok = ok && t;
        h = t ? t : h;
    }
    if (if_match) {
        if (!if_match_header(if_match, im, sizeof(im))) {
            fprintf(stderr, "entitlectl: bad --if-match value\n");
            ok = false;
        } else {
            t = curl_slist_append(h, im);
            ok = ok && t;
            h = t ? t : h;
        }
    }
    int rc = ENTITLECTL_OK;
    if (!ok) {
        rc = ENTITLECTL_USAGE;
        goto out;
    }
    CURL *c = a->curl;
    a->err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") == 0 ? NULL : method);
    CURLcode cc = curl_easy_perform(c);
    /* Never leave a pointer to the caller's body (or our header list) in the handle. */
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    if (cc != CURLE_OK) {
        fprintf(stderr, "entitlectl: %s %s%s: %s%s%s\n", method, a->base, path,
                curl_easy_strerror(cc), a->err[0] ? ": " : "", a->err);
        rc = ENTITLECTL_CONN;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
out:
    for (struct curl_slist *s = h; s; s = s->next)
        OPENSSL_cleanse(s->data, strlen(s->data));
    curl_slist_free_all(h);
    ent_buf_free(&url);
    return rc;
}

/* Replaces control characters (a hostile or broken server could send terminal escapes). */
static void print_clean(FILE *f, const char *s, size_t max)
{
    for (size_t i = 0; s[i] && i < max; i++)
        fputc((unsigned char)s[i] < ' ' || s[i] == 0x7f ? '?' : s[i], f);
}

void ectl_print_http_error(const struct ectl_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &je);
    const char *err = json_string_value(json_object_get(j, "error"));
    const char *field = json_string_value(json_object_get(j, "field"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    fprintf(stderr, "entitlectl: HTTP %ld", r->status);
    if (err) {
        fputc(' ', stderr);
        print_clean(stderr, err, 64);
    }
    if (field) {
        fprintf(stderr, " (field ");
        print_clean(stderr, field, 64);
        fputc(')', stderr);
    }
    if (msg) {
        fprintf(stderr, ": ");
        print_clean(stderr, msg, 512);
    } else if (!err && r->body.len) {
        fprintf(stderr, ": ");
        print_clean(stderr, r->body.data, 200);
    }
    fputc('\n', stderr);
    json_decref(j);
}

int ectl_call(struct ectl_api *a, const char *method, const char *path, const json_t *body,
              const char *if_match, struct ectl_resp *r)
{
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text) {
            memset(r, 0, sizeof(*r));
            fprintf(stderr, "entitlectl: out of memory\n");
            return ENTITLECTL_USAGE;
        }
    }
    int rc = ectl_request(a, method, path, text, text ? strlen(text) : 0, NULL, if_match, r);
    if (text) {
        /* The body may hold K/OPc (subscribers create). */
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (rc != ENTITLECTL_OK)
        return rc;
    if (r->status >= 300 || r->status < 200) {
        ectl_print_http_error(r);
        return ENTITLECTL_FAIL;
    }
    return ENTITLECTL_OK;
}
