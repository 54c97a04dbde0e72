/* SPDX-License-Identifier: Apache-2.0 */
/* Small shared helpers: container_of, clocks, a growing buffer with a hard limit (as curl's
 * dynbuf), hex and base64 codecs, and string helpers. Everything here is thread-safe and
 * allocation failures come back as ENT_ENOMEM. */
#ifndef ENT_UTIL_H
#define ENT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"

#define ENT_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ENT_ARRAY_LEN(a)                    (sizeof(a) / sizeof((a)[0]))

/* Monotonic milliseconds / nanoseconds, and wall-clock milliseconds since the epoch. */
uint64_t ent_now_ms(void);
uint64_t ent_now_ns(void);
uint64_t ent_wall_ms(void);

/* A growing byte buffer that refuses to grow past `limit` (ENT_ETOOBIG). Always keeps a NUL
 * after the data so text can be used as a C string. ent_buf_free() releases memory. */
struct ent_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;
};

void ent_buf_init(struct ent_buf *b, size_t limit);
void ent_buf_free(struct ent_buf *b);
void ent_buf_reset(struct ent_buf *b);
ent_err ent_buf_append(struct ent_buf *b, const void *data, size_t len);
ent_err ent_buf_append_str(struct ent_buf *b, const char *s);
ent_err ent_buf_append_char(struct ent_buf *b, char c);
ent_err ent_buf_printf(struct ent_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string (quotes not included). */
ent_err ent_buf_append_json_escaped(struct ent_buf *b, const char *s, size_t len);
/* Takes the data out of the buffer; the caller frees it. The buffer is left empty. */
char *ent_buf_steal(struct ent_buf *b, size_t *len);

/* Hex: ent_hex_decode accepts upper or lower case and wants exactly out_len*2 digits. */
void ent_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
ent_err ent_hex_decode(const char *in, uint8_t *out, size_t out_len);
/* The value of one hex digit (either case), or -1. */
int ent_hex_digit(char c);

/* Standard base64 with padding. Decode rejects bad characters and bad padding. */
size_t ent_base64_encoded_len(size_t len);
void ent_base64_encode(const uint8_t *in, size_t len, char *out /* encoded_len+1 */);
ent_err ent_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap,
                          size_t *out_len);

/* Parses a whole decimal string into [min, max]; ENT_EINVAL otherwise. */
ent_err ent_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* "host:port" (IPv6 as "[::1]:port"). host_out gets the host without brackets. */
ent_err ent_parse_hostport(const char *s, char *host_out, size_t host_cap, int *port_out);

/* Constant-time comparison for secrets. */
bool ent_ct_equal(const void *a, const void *b, size_t len);

/* Reads a whole file (up to limit bytes) into a NUL-terminated heap buffer. */
ent_err ent_file_read(const char *path, size_t limit, char **out, size_t *out_len);

#endif
