/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only helpers for the authd/aka vector tests: load a vector file from
 * $ENTITLE_TEST_VECTORS with jansson and decode hex fields, failing the running cmocka test on
 * any problem. Included by the test_*.c files of this directory only. */
#ifndef ENT_TEST_AKA_SUPPORT_H
#define ENT_TEST_AKA_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ent/util.h"

/* Returns the `vectors` array of the named file (the caller json_decref()s *root). */
static inline json_t *aka_test_load(const char *file, json_t **root)
{
    const char *dir = getenv("ENTITLE_TEST_VECTORS");
    char path[1024];
    json_error_t jerr;
    json_t *v;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    *root = json_load_file(path, 0, &jerr);
    if (*root == NULL)
        fail_msg("cannot load %s: %s (line %d)", path, jerr.text, jerr.line);
    v = json_object_get(*root, "vectors");
    assert_true(json_is_array(v));
    assert_true(json_array_size(v) > 0);
    return v;
}

static inline const char *aka_test_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (s == NULL)
        fail_msg("vector field %s missing", key);
    return s;
}

/* Decodes hex field `key` that must be exactly `len` bytes. */
static inline void aka_test_hex(json_t *o, const char *key, uint8_t *out, size_t len)
{
    const char *s = aka_test_str(o, key);

    if (strlen(s) != 2 * len || ent_hex_decode(s, out, len) != ENT_OK)
        fail_msg("vector field %s: want %zu hex bytes", key, len);
}

/* Decodes a hex field of any length into a malloc'd buffer (caller frees). */
static inline uint8_t *aka_test_hex_alloc(json_t *o, const char *key, size_t *len)
{
    const char *s = aka_test_str(o, key);
    size_t n = strlen(s) / 2;
    uint8_t *b = malloc(n > 0 ? n : 1);

    assert_non_null(b);
    if (strlen(s) % 2 != 0 || ent_hex_decode(s, b, n) != ENT_OK)
        fail_msg("vector field %s: bad hex", key);
    *len = n;
    return b;
}

#endif
