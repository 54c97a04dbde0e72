/* SPDX-License-Identifier: Apache-2.0 */
/* Structured JSON-lines logging (ent/log.h) and subscriber-id masking. This file owns the
 * process-wide logger state: the daemon name (set once at start), the minimum level (an
 * atomic, changed on SIGHUP from any thread) and the output stream (guarded by one mutex,
 * which also serialises writes so lines never interleave). Each line is built in a private
 * buffer without the lock, then written with a single fwrite and flushed. What gets logged,
 * and that secrets never reach the logger, is the call site's business. */
#include "ent/log.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ent/util.h"

/* A line longer than this is replaced by a header-only line with "truncated":true. */
#define LOG_LINE_LIMIT (64 * 1024)
#define LOG_DAEMON_MAX 64

#define MASK_RING 8
#define MASK_BUF  128

static atomic_int g_level = ENT_LOG_INFO;
static char g_daemon[LOG_DAEMON_MAX] = "entitle";
static pthread_mutex_t g_stream_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_stream; /* NULL means stdout; guarded by g_stream_lock */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static const char *level_name(enum ent_log_level level)
{
    if ((unsigned)level < ENT_ARRAY_LEN(level_names))
        return level_names[level];
    return "error";
}

void ent_log_init(const char *daemon, enum ent_log_level min_level)
{
    if (daemon) {
        size_t n = strlen(daemon);
        if (n >= sizeof(g_daemon))
            n = sizeof(g_daemon) - 1;
        memcpy(g_daemon, daemon, n);
        g_daemon[n] = '\0';
    }
    ent_log_set_level(min_level);
}

void ent_log_set_level(enum ent_log_level min_level)
{
    atomic_store_explicit(&g_level, (int)min_level, memory_order_relaxed);
}

void ent_log_set_stream(FILE *f)
{
    pthread_mutex_lock(&g_stream_lock);
    g_stream = f;
    pthread_mutex_unlock(&g_stream_lock);
}

bool ent_log_enabled(enum ent_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

bool ent_log_level_parse(const char *s, enum ent_log_level *out)
{
    static const struct {
        const char *name;
        enum ent_log_level level;
    } names[] = {
        {"debug", ENT_LOG_DEBUG},  {"info", ENT_LOG_INFO},   {"warn", ENT_LOG_WARN},
        {"warning", ENT_LOG_WARN}, {"error", ENT_LOG_ERROR},
    };
    if (!s)
        return false;
    for (size_t i = 0; i < ENT_ARRAY_LEN(names); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return true;
        }
    }
    return false;
}

/* Appends "key": with the key escaped. */
static ent_err append_key(struct ent_buf *b, const char *key)
{
    ent_err rc = ent_buf_append_str(b, ",\"");
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(b, key, strlen(key));
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, "\":");
    return rc;
}

static ent_err append_string(struct ent_buf *b, const char *s)
{
    if (!s)
        return ent_buf_append_str(b, "null");
    ent_err rc = ent_buf_append_char(b, '"');
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(b, s, strlen(s));
    if (rc == ENT_OK)
        rc = ent_buf_append_char(b, '"');
    return rc;
}

/* JSON has no NaN or Infinity, so those become null. Otherwise the shortest of %.15g and
 * %.17g that reads back to the same double, so 0.1 stays "0.1" but nothing is lost. */
static ent_err append_double(struct ent_buf *b, double d)
{
    if (!isfinite(d))
        return ent_buf_append_str(b, "null");
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof(tmp), "%.17g", d);
    return ent_buf_append_str(b, tmp);
}

static ent_err append_field(struct ent_buf *b, const struct ent_kv *kv)
{
    ent_err rc = append_key(b, kv->key);
    if (rc != ENT_OK)
        return rc;
    switch (kv->type) {
    case ENT_KV_T_STR:
        return append_string(b, kv->v.s);
    case ENT_KV_T_I64:
        return ent_buf_printf(b, "%lld", (long long)kv->v.i);
    case ENT_KV_T_U64:
        return ent_buf_printf(b, "%llu", (unsigned long long)kv->v.u);
    case ENT_KV_T_DBL:
        return append_double(b, kv->v.d);
    case ENT_KV_T_BOOL:
        return ent_buf_append_str(b, kv->v.b ? "true" : "false");
    }
    return ent_buf_append_str(b, "null");
}

/* Writes time, level, daemon, trace and event: everything before the fields. */
static ent_err append_header(struct ent_buf *b, enum ent_log_level level, const char *trace,
                             const char *event)
{
    uint64_t ms = ent_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    gmtime_r(&secs, &tm);
    ent_err rc =
        ent_buf_printf(b, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\",\"level\":\"%s\"",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, (unsigned)(ms % 1000), level_name(level));
    if (rc == ENT_OK)
        rc = append_key(b, "daemon");
    if (rc == ENT_OK)
        rc = append_string(b, g_daemon);
    if (rc == ENT_OK && trace && *trace) {
        rc = append_key(b, "trace");
        if (rc == ENT_OK)
            rc = append_string(b, trace);
    }
    if (rc == ENT_OK)
        rc = append_key(b, "event");
    if (rc == ENT_OK)
        rc = append_string(b, event ? event : "");
    return rc;
}

void ent_log_write(enum ent_log_level level, const char *trace, const char *event,
                   const struct ent_kv *fields, size_t n_fields)
{
    if (!ent_log_enabled(level))
        return;
    struct ent_buf b;
    ent_buf_init(&b, LOG_LINE_LIMIT);
    ent_err rc = append_header(&b, level, trace, event);
    for (size_t i = 0; rc == ENT_OK && i < n_fields; i++) {
        if (fields[i].key)
            rc = append_field(&b, &fields[i]);
    }
    if (rc == ENT_OK)
        rc = ent_buf_append_str(&b, "}\n");
    if (rc != ENT_OK) {
        /* Too long (or no memory): keep the event, say that its fields were dropped. */
        ent_buf_reset(&b);
        rc = append_header(&b, level, trace, event);
        if (rc == ENT_OK)
            rc = ent_buf_append_str(&b, ",\"truncated\":true}\n");
    }
    if (rc == ENT_OK) {
        pthread_mutex_lock(&g_stream_lock);
        FILE *f = g_stream ? g_stream : stdout;
        fwrite(b.data, 1, b.len, f);
        fflush(f);
        pthread_mutex_unlock(&g_stream_lock);
    }
    ent_buf_free(&b);
}

/* Masks `n` bytes of `s` into out (capacity `cap`, n < cap guaranteed by the caller): the
 * first 5 (an IMSI's MCC+MNC) and the last 2 stay, the rest become '*'; fewer than 8 bytes
 * are all '*', since keeping 7 of them would reveal nearly everything. */
static void mask_part(const char *s, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        bool keep = n >= 8 && (i < 5 || i >= n - 2);
        out[i] = keep ? s[i] : '*';
    }
}

const char *ent_mask_id(const char *id)
{
    static _Thread_local char ring[MASK_RING][MASK_BUF];
    static _Thread_local unsigned next;
    if (!id)
        return "-";
    char *out = ring[next];
    next = (next + 1) % MASK_RING;

    /* The realm of an NAI is the part after the last '@' (so a user part can never leak
     * into it); it is not subscriber-specific and stays readable. */
    const char *at = strrchr(id, '@');
    size_t user_len = at ? (size_t)(at - id) : strlen(id);
    size_t cap = MASK_BUF - 1;
    if (user_len > cap) {
        /* Pathologically long: mask a prefix only, so the tail is never copied. */
        memset(out, '*', cap);
        memcpy(out, id, 5);
        out[cap] = '\0';
        return out;
    }
    mask_part(id, user_len, out);
    size_t len = user_len;
    if (at) {
        size_t realm_len = strlen(at);
        if (realm_len > cap - len)
            realm_len = cap - len;
        memcpy(out + len, at, realm_len);
        len += realm_len;
    }
    out[len] = '\0';
    return out;
}
