/* SPDX-License-Identifier: Apache-2.0 */
/* Structured logging: one JSON object per line on stdout (or a FILE set for tests) with
 * time, level, daemon, trace id, event name and typed fields. Any thread may log; a line is
 * written with one fwrite under the stream lock so lines never interleave.
 * Subscriber identifiers go through ent_mask_id() at the call site; secrets are never
 * passed to the logger at all. */
#ifndef ENT_LOG_H
#define ENT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum ent_log_level { ENT_LOG_DEBUG = 0, ENT_LOG_INFO, ENT_LOG_WARN, ENT_LOG_ERROR };

enum ent_kv_type { ENT_KV_T_STR, ENT_KV_T_I64, ENT_KV_T_U64, ENT_KV_T_DBL, ENT_KV_T_BOOL };

struct ent_kv {
    const char *key;
    enum ent_kv_type type;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } v;
};

#define ENT_KV_STR(k, x) ((struct ent_kv){.key = (k), .type = ENT_KV_T_STR, .v.s = (x)})
#define ENT_KV_I64(k, x) ((struct ent_kv){.key = (k), .type = ENT_KV_T_I64, .v.i = (int64_t)(x)})
#define ENT_KV_U64(k, x) ((struct ent_kv){.key = (k), .type = ENT_KV_T_U64, .v.u = (uint64_t)(x)})
#define ENT_KV_DBL(k, x) ((struct ent_kv){.key = (k), .type = ENT_KV_T_DBL, .v.d = (double)(x)})
#define ENT_KV_BOOL(k, x) ((struct ent_kv){.key = (k), .type = ENT_KV_T_BOOL, .v.b = (bool)(x)})

/* Sets the daemon name written on every line and the minimum level. Call once at start
 * (before threads); ent_log_set_level() may be called later (SIGHUP) from any thread. */
void ent_log_init(const char *daemon, enum ent_log_level min_level);
void ent_log_set_level(enum ent_log_level min_level);
/* Redirects output (tests); NULL restores stdout. */
void ent_log_set_stream(FILE *f);
bool ent_log_enabled(enum ent_log_level level);
/* "debug", "info", "warn"/"warning", "error" -> level; returns false for anything else. */
bool ent_log_level_parse(const char *s, enum ent_log_level *out);

/* trace may be NULL or "". Writes e.g.
 * {"time":"2026-11-25T06:00:00.123Z","level":"warn","daemon":"gateway","trace":"ab12",
 *  "event":"bus.saturated","peer":"tcp://127.0.0.1:7001","inflight":256} */
void ent_log_write(enum ent_log_level level, const char *trace, const char *event,
                   const struct ent_kv *fields, size_t n_fields);

#define ENT_LOG_(level, trace, event, ...)                                                         \
    do {                                                                                           \
        if (ent_log_enabled(level)) {                                                              \
            const struct ent_kv ent_log_kv_[] = {ENT_KV_BOOL(NULL, 0), ##__VA_ARGS__};             \
            ent_log_write(level, trace, event, ent_log_kv_ + 1,                                    \
                          sizeof(ent_log_kv_) / sizeof(ent_log_kv_[0]) - 1);                       \
        }                                                                                          \
    } while (0)
#define ENT_LOG_DEBUG(trace, event, ...) ENT_LOG_(ENT_LOG_DEBUG, trace, event, ##__VA_ARGS__)
#define ENT_LOG_INFO(trace, event, ...) ENT_LOG_(ENT_LOG_INFO, trace, event, ##__VA_ARGS__)
#define ENT_LOG_WARN(trace, event, ...) ENT_LOG_(ENT_LOG_WARN, trace, event, ##__VA_ARGS__)
#define ENT_LOG_ERROR(trace, event, ...) ENT_LOG_(ENT_LOG_ERROR, trace, event, ##__VA_ARGS__)

/* Masks a subscriber identifier (IMSI, MSISDN, or an NAI such as
 * 0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org) for logs. Returns a pointer into a
 * small thread-local ring of buffers, valid until the same thread has made 8 more calls, so
 * it can be used inline in a log call. NULL gives "-". */
const char *ent_mask_id(const char *id);

#endif
