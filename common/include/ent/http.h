/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP/1.1 server core: one implementation behind every daemon's ops listener, the
 * gateway's device-facing HTTPS listeners (one per loop, SO_REUSEPORT) and policyd's admin
 * API. It owns sockets, TLS records (OpenSSL over memory BIOs), parsing (llhttp), limits,
 * timeouts, keep-alive, pipelining order and draining. It knows nothing of routes: every
 * complete request goes to one handler callback, which answers by request id, at once or
 * later from the same loop. What a request means is the daemon's business.
 *
 * Threads: everything here runs on the loop thread of the server's uv_loop_t, including
 * ent_http_respond(). Results from other threads reach the loop first (see DESIGN.md).
 *
 * Lifetime: the caller allocates struct ent_http_server (its fields are private), calls
 * ent_http_server_init(), and ends with ent_http_server_close(); the memory may be freed in
 * or after the closed callback, as with a libuv handle.
 *
 * Connection states (one request at a time per connection; pipelined bytes wait):
 *
 *   accept ──▶ [TLS handshake] ──▶ IDLE ──first byte──▶ READING ──complete──▶ DISPATCHED
 *                                   ▲                      │ limit/malformed/     │
 *                                   │                      │ read timeout         │ respond
 *                                   └────── keep-alive ────┼──────────────────────┘
 *                                                          ▼       (close/drain)
 *                              LINGER (error or last response sent, FIN, discard input)
 *                                 │ EOF, linger or write timeout
 *                                 ▼
 *                              closed (uv_close; freed in the close callback)
 */
#ifndef ENT_HTTP_H
#define ENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "ent/err.h"
#include "ent/util.h"

struct ent_http_server;

struct ent_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A complete request as handed to the handler. It and everything it points to are valid
 * only during the handler call: to respond later keep `id` (never the pointer) and copy
 * what you need. target, path, header names and values and body are NUL-terminated (the
 * terminator is not counted); query points into target just after the '?' (NULL, 0 if
 * none). */
struct ent_http_request {
    uint64_t id;
    const char *method;
    const char *target;
    size_t target_len;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    const struct ent_http_header *headers;
    size_t n_headers;
    const char *body;
    size_t body_len;
    int http_minor; /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    bool tls;
    char peer[64];     /* "127.0.0.1:5555", "[::1]:5555" */
    uint64_t start_ns; /* ent_now_ns() when the request's first byte was parsed */
};

/* Case-insensitive lookup of the first header called `name`; *len (may be NULL) gets the
 * value's length. Returns NULL if absent. */
const char *ent_http_request_header(const struct ent_http_request *r, const char *name,
                                    size_t *len);

/* Called on the loop thread for every complete request, in order per connection. The
 * handler answers with ent_http_respond(srv, req->id, ...) now or later. The next request
 * of the same connection is not parsed until this one is answered. */
typedef void (*ent_http_handler_cb)(struct ent_http_server *srv, struct ent_http_request *req,
                                    void *ud);

/* Zero means the default given in brackets. */
struct ent_http_server_cfg {
    const char *listen;        /* "127.0.0.1:8080", "[::1]:0"; port 0 picks a free port */
    size_t max_url;            /* request target bytes [8192] -> 414 */
    size_t max_header_bytes;   /* sum of header names and values [16384] -> 431 */
    size_t max_body;           /* Content-Length or de-chunked total [1 MiB] -> 413 */
    size_t max_connections;    /* beyond it, accepted then closed at once [1024] */
    uint64_t read_timeout_ms;  /* TLS handshake; a started request must be complete [10000] */
    uint64_t idle_timeout_ms;  /* keep-alive idle [60000] */
    uint64_t write_timeout_ms; /* a response must drain to the kernel within [10000] */
    int backlog;               /* listen backlog [511] */
    bool reuseport;            /* SO_REUSEPORT so N loops can each bind the same port */
    SSL_CTX *tls;              /* NULL: plain HTTP; the server takes its own reference */
    const char *name;          /* for logs and metric labels: "ops", "device", "admin" */
};

/* Per-server counters, read by the daemon layer to export metrics. Loop thread only. */
struct ent_http_server_stats {
    uint64_t conns_accepted;
    uint64_t conns_rejected; /* over max_connections */
    uint64_t requests;       /* dispatched to the handler */
    uint64_t responses[6];   /* by status class: [1] 1xx .. [5] 5xx, errors included */
    uint64_t read_timeouts;  /* 408 or handshake timeout */
    uint64_t idle_timeouts;
    uint64_t write_timeouts;
    uint64_t parse_errors; /* 400 */
    uint64_t limit_errors; /* 413, 414, 431 */
    uint64_t tls_handshake_errors;
    uint64_t client_gone; /* connection lost with a request dispatched */
};

struct ent_http_conn;

/* Private: use the functions below. */
struct ent_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_idle_t pump; /* parses parked input of answered connections; open until close */
    struct ent_http_conn *pump_head;
    struct ent_http_server_cfg cfg;
    char name[32];
    ent_http_handler_cb cb;
    void *ud;
    SSL_CTX *tls;
    struct ent_http_conn **slots; /* index = low 24 bits of a request id */
    uint32_t *free_slots;
    size_t n_free;
    uint64_t seq;
    struct ent_http_conn *conns; /* doubly linked, every conn not yet freed */
    size_t n_conns;
    size_t inflight;
    size_t handles_open;
    bool listening;
    bool draining;
    bool closing;
    void (*closed_cb)(struct ent_http_server *srv);
    char *rbuf; /* socket reads */
    char *tbuf; /* TLS plaintext */
    char date[40];
    int64_t date_sec;
    struct ent_buf out; /* response being built */
    struct ent_http_server_stats stats;
    void *data; /* free for the owner */
};

/* Binds cfg->listen and starts listening on loop. Loop thread. cfg is copied (cfg->listen
 * and cfg->name need not outlive the call); cfg->tls gets one more reference. On error
 * nothing is left open and srv needs no close. Errors: ENT_EINVAL (bad address or cfg),
 * ENT_ENOMEM, ENT_EIO or the converted libuv error (e.g. address in use). */
ent_err ent_http_server_init(struct ent_http_server *srv, uv_loop_t *loop,
                             const struct ent_http_server_cfg *cfg, ent_http_handler_cb cb,
                             void *ud);

/* The bound port (useful with port 0), or -1 when not listening. */
int ent_http_server_port(const struct ent_http_server *srv);

/* Answers request `id` on the loop thread, from the handler or later. Adds Date,
 * Content-Length and Connection (and ignores those names, and Transfer-Encoding, in
 * headers). body is copied; headers and body may be freed on return. Errors:
 * ENT_ENOTFOUND if the request's connection is gone or the id was already answered (the
 * caller drops its work), ENT_EINVAL for a status outside 200..599 (1xx are not supported). */
ent_err ent_http_respond(struct ent_http_server *srv, uint64_t id, int status,
                         const struct ent_http_header *headers, size_t n_headers, const void *body,
                         size_t body_len);

/* Drain step: closes the listener (new connects are refused), closes idle keep-alive
 * connections, and makes every later response carry Connection: close so connections
 * with a request in flight finish it and then close. Idempotent. Loop thread. */
void ent_http_server_stop_accepting(struct ent_http_server *srv);

/* Requests dispatched but not yet answered. */
size_t ent_http_server_inflight(const struct ent_http_server *srv);
/* Open connections, including ones lingering before close. */
size_t ent_http_server_connections(const struct ent_http_server *srv);
const struct ent_http_server_stats *ent_http_server_stats(const struct ent_http_server *srv);

/* Closes the listener and every connection at once (unanswered requests are dropped and
 * later ent_http_respond() calls return ENT_ENOTFOUND). closed_cb (may be NULL) runs on the
 * loop after every handle's close callback; srv's memory may be freed from then on. */
void ent_http_server_close(struct ent_http_server *srv,
                           void (*closed_cb)(struct ent_http_server *srv));

/* Certificate reload (SIGHUP): connections accepted from now on use ctx; existing ones
 * keep theirs. The server takes a reference to ctx and drops its old one. Ignored for a
 * plain-HTTP server (ctx must be NULL then) or ctx NULL. Loop thread. */
void ent_http_server_set_tls(struct ent_http_server *srv, SSL_CTX *ctx);

#endif
