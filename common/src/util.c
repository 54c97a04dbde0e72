/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks, the bounded growing buffer, hex/base64 codecs and small parsers shared by every
 * module. Base64 leans on OpenSSL's EVP block codec; we only add strict padding checks. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ent/util.h"

uint64_t ent_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ent_now_ms(void)
{
    return ent_now_ns() / 1000000u;
}

uint64_t ent_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ent_buf_init(struct ent_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

void ent_buf_free(struct ent_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ent_buf_reset(struct ent_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static ent_err ent_buf_reserve(struct ent_buf *b, size_t extra)
{
    if (extra > b->limit || b->len > b->limit - extra)
        return ENT_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return ENT_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return ENT_ENOMEM;
    b->data = p;
    b->cap = cap;
    return ENT_OK;
}

ent_err ent_buf_append(struct ent_buf *b, const void *data, size_t len)
{
    ent_err rc = ent_buf_reserve(b, len);
    if (rc != ENT_OK)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return ENT_OK;
}

ent_err ent_buf_append_str(struct ent_buf *b, const char *s)
{
    return ent_buf_append(b, s, strlen(s));
}

ent_err ent_buf_append_char(struct ent_buf *b, char c)
{
    return ent_buf_append(b, &c, 1);
}

ent_err ent_buf_printf(struct ent_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return ENT_EINVAL;
    if ((size_t)n < sizeof(small))
        return ent_buf_append(b, small, (size_t)n);
    ent_err rc = ent_buf_reserve(b, (size_t)n);
    if (rc != ENT_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return ENT_OK;
}

ent_err ent_buf_append_json_escaped(struct ent_buf *b, const char *s, size_t len)
{
    static const char hexd[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        ent_err rc = ent_buf_append(b, s + start, i - start);
        if (rc != ENT_OK)
            return rc;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            n = 6;
        }
        rc = ent_buf_append(b, esc, n);
        if (rc != ENT_OK)
            return rc;
        start = i + 1;
    }
    return ent_buf_append(b, s + start, len - start);
}

char *ent_buf_steal(struct ent_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void ent_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hexd[in[i] >> 4];
        out[2 * i + 1] = hexd[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int ent_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ent_err ent_hex_decode(const char *in, uint8_t *out, size_t out_len)
{
    if (strlen(in) != out_len * 2)
        return ENT_EINVAL;
    for (size_t i = 0; i < out_len; i++) {
        int hi = ent_hex_digit(in[2 * i]);
        int lo = ent_hex_digit(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ENT_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return ENT_OK;
}

size_t ent_base64_encoded_len(size_t len)
{
    return 4 * ((len + 2) / 3);
}

void ent_base64_encode(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

ent_err ent_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap,
                          size_t *out_len)
{
    if (in_len % 4 != 0)
        return ENT_EINVAL;
    size_t pad = 0;
    for (size_t i = 0; i < in_len; i++) {
        char c = in[i];
        if (c == '=') {
            /* padding only at the very end, at most two */
            if (i < in_len - 2)
                return ENT_EINVAL;
            pad++;
            continue;
        }
        if (pad || !(isalnum((unsigned char)c) || c == '+' || c == '/'))
            return ENT_EINVAL;
    }
    size_t n = in_len / 4 * 3 - pad;
    if (n > out_cap)
        return ENT_ETOOBIG;
    if (in_len == 0) {
        *out_len = 0;
        return ENT_OK;
    }
    /* EVP_DecodeBlock writes whole 3-byte groups, padding included. */
    uint8_t *tmp = malloc(in_len / 4 * 3);
    if (!tmp)
        return ENT_ENOMEM;
    int r = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)in_len);
    if (r < 0) {
        free(tmp);
        return ENT_EINVAL;
    }
    memcpy(out, tmp, n);
    free(tmp);
    *out_len = n;
    return ENT_OK;
}

ent_err ent_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return ENT_EINVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return ENT_EINVAL;
    *out = v;
    return ENT_OK;
}

ent_err ent_parse_hostport(const char *s, char *host_out, size_t host_cap, int *port_out)
{
    const char *colon;
    const char *host = s;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return ENT_EINVAL;
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return ENT_EINVAL;
        host_len = (size_t)(colon - s);
    }
    if (host_len == 0 || host_len >= host_cap)
        return ENT_EINVAL;
    int64_t port;
    if (ent_parse_i64(colon + 1, 0, 65535, &port) != ENT_OK)
        return ENT_EINVAL;
    memcpy(host_out, host, host_len);
    host_out[host_len] = '\0';
    *port_out = (int)port;
    return ENT_OK;
}

bool ent_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

ent_err ent_file_read(const char *path, size_t limit, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ent_err_from_errno(errno);
    struct ent_buf b;
    ent_buf_init(&b, limit);
    char chunk[4096];
    ent_err rc = ENT_OK;
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        rc = ent_buf_append(&b, chunk, n);
        if (rc != ENT_OK)
            break;
    }
    if (rc == ENT_OK && ferror(f))
        rc = ENT_EIO;
    fclose(f);
    if (rc == ENT_OK && !b.data)
        rc = ent_buf_append(&b, "", 0);
    if (rc != ENT_OK) {
        ent_buf_free(&b);
        return rc;
    }
    *out = ent_buf_steal(&b, out_len);
    return ENT_OK;
}
