/* SPDX-License-Identifier: Apache-2.0 */
/* The admin-API half of entitlectl: global options, the HTTPS client (api.c, libcurl), option
 * parsing and human/JSON output (out.c). Command groups (sub_cmd.c, policy_cmd.c,
 * import_cmd.c) build requests with these and never touch curl themselves.
 *
 * Exit codes (entitlectl.h): 0 ok, 1 the API answered 4xx/5xx (status and reason on stderr),
 * 2 usage or local input error, 3 connection/TLS/timeout. The bearer token is read from a
 * file (--token-file, ENTITLECTL_TOKEN_FILE) or the environment (ENTITLECTL_TOKEN), never
 * from an argument (it would show in ps), is never printed and is wiped after use.
 * Single-threaded: everything runs on main's thread. */
#ifndef ENTITLECTL_ECTL_H
#define ENTITLECTL_ECTL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ent/util.h"

#define ECTL_DEFAULT_URL "https://127.0.0.1:8444"
#define ECTL_LIST_MAX    16

/* Global options; defaults from ENTITLECTL_URL, ENTITLECTL_CACERT, ENTITLECTL_TOKEN_FILE. */
struct ectl_opts {
    const char *url;
    const char *token_file;
    const char *cacert;
    long timeout_ms; /* 0: the command's default */
    bool json;
};

void ectl_opts_init(struct ectl_opts *o);

/* If argv[*i] is a global option, consumes it (and its value: "--url X" or "--url=X"),
 * advances *i past it and returns 1; returns 0 for anything else; prints why and returns -1
 * for a global option with a missing or bad value. */
int ectl_global_opt(struct ectl_opts *o, int argc, char **argv, int *i);

/* ---- option parsing for commands ---------------------------------------------------- */

enum ectl_optkind { ECTL_FLAG, ECTL_VALUE, ECTL_LIST };

struct ectl_strs {
    const char *v[ECTL_LIST_MAX];
    size_t n;
};

/* slot: bool * (FLAG), const char ** (VALUE, last one wins), struct ectl_strs * (LIST,
 * repeatable; a comma-separated value adds each part). */
struct ectl_opt {
    const char *name; /* without the leading "--" */
    enum ectl_optkind kind;
    void *slot;
};

/* Parses argv[0..argc) (the words after the subcommand): global options anywhere, the
 * command's options, and between min_pos and max_pos positional arguments into pos[].
 * Returns ENTITLECTL_OK, or prints the problem and `usage` on stderr and returns
 * ENTITLECTL_USAGE. "--help" prints usage on stdout and returns -1 (caller exits 0). */
int ectl_parse(struct ectl_opts *g, int argc, char **argv, const struct ectl_opt *opts,
               size_t n_opts, const char **pos, size_t min_pos, size_t max_pos, size_t *n_pos,
               const char *usage);

/* Prints "entitlectl: <why>" and usage on stderr; returns ENTITLECTL_USAGE. */
int ectl_usage(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the HTTP client ------------------------------------------------------------------ */

struct ectl_api;

struct ectl_resp {
    long status;
    struct ent_buf body; /* NUL-terminated; bounded (ECTL_RESP_MAX) */
    char etag[64];
    char ctype[64];
};

/* Opens a client for the options: reads the token (a file or env that cannot be read or
 * holds a bad token is a usage error), sets TLS, timeout (default_timeout_ms when the
 * options give none). On ENTITLECTL_OK *out is the caller's, closed with ectl_api_close. */
int ectl_api_open(struct ectl_api **out, const struct ectl_opts *o, long default_timeout_ms);
void ectl_api_close(struct ectl_api *a);

/* One request. path starts with "/v1/" and is already escaped (ectl_path); body may be
 * NULL; ctype defaults to application/json; if_match NULL or an ETag ("3" or "\"3\"").
 * Returns ENTITLECTL_OK when an HTTP answer arrived (any status, in r), ENTITLECTL_CONN
 * (message printed) when none did. r is initialised here; free with ectl_resp_free. */
int ectl_request(struct ectl_api *a, const char *method, const char *path, const char *body,
                 size_t len, const char *ctype, const char *if_match, struct ectl_resp *r);

/* ectl_request, then: a status >= 300 is printed as "HTTP <status> <error>: <message>" on
 * stderr and returns ENTITLECTL_FAIL. */
int ectl_call(struct ectl_api *a, const char *method, const char *path, const json_t *body,
              const char *if_match, struct ectl_resp *r);

/* Prints an HTTP error answer (status, the API's error, field and message) on stderr. */
void ectl_print_http_error(const struct ectl_resp *r);

void ectl_resp_free(struct ectl_resp *r);

/* Appends "/" + seg percent-encoded (everything but A-Z a-z 0-9 - . _ ~) to b. */
ent_err ectl_path_add(struct ent_buf *b, const char *seg);

/* Appends prefix (e.g. "&after=") and val percent-encoded to b. */
ent_err ectl_query_add(struct ent_buf *b, const char *prefix, const char *val);

/* ---- output --------------------------------------------------------------------------- */

enum ectl_colmode {
    ECTL_COL_VALUE,      /* the value rendered as text */
    ECTL_COL_TRUE_KEYS,  /* an object's keys whose value is true, comma-joined */
    ECTL_COL_FALSE_KEYS, /* an object's keys whose value is false */
};

struct ectl_col {
    const char *head;
    const char *key;
    enum ectl_colmode mode;
    const char *empty; /* shown for "" / null / nothing; NULL: "-" */
};

/* Aligned columns with a header line; control characters from the server are replaced. */
void ectl_print_table(const json_t *items, const struct ectl_col *cols, size_t n_cols);

/* "key: value" lines, keys aligned; nested objects as k=v,k=v; *_ms times also as UTC. */
void ectl_print_object(const json_t *obj);

/* One compact JSON line on stdout. */
void ectl_print_json_line(const json_t *j);

/* Parses r's body as JSON (NULL with a message on stderr when it is not). */
json_t *ectl_resp_json(const struct ectl_resp *r);

/* Text of a JSON value for a human (caller frees): strings as they are (control characters
 * replaced), numbers, true/false, arrays comma-joined, objects k=v comma-joined, null "". */
char *ectl_text(const json_t *v);

/* Reads a small text file (or "-" for stdin) into a JSON object; prints why not. */
json_t *ectl_load_json_file(const char *path);

/* Reads a secret of exactly `hexlen` hex digits from a file or an environment variable
 * (surrounding whitespace dropped) into out (hexlen+1 bytes). Prints why not, never the
 * value. */
bool ectl_read_secret(const char *what, const char *file, const char *env, char *out,
                      size_t hexlen);

#define ECTL_RESP_MAX ((size_t)1 << 30)

#endif
