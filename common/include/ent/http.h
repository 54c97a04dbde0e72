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
 *
 * Streaming (opt-in, per request): a request whose head the server's stream_select callback
 * claims is dispatched as soon as its headers are parsed, with req->streamed set; its body
 * then arrives in pieces through ent_http_request_stream() callbacks, paced by
 * ent_http_request_pause()/resume(), and bounded by max_stream_body instead of max_body.
 * Any request may be answered with a streamed response: ent_http_respond_start(), then
 * ent_http_respond_chunk() (chunked for HTTP/1.1, close-delimited for HTTP/1.0) with
 * backpressure (ENT_ESATURATED, ent_http_response_queued(), on_drain), then
 * ent_http_respond_end(). The connection stays DISPATCHED until the response ended, so
 * pipelined requests still wait their turn:
 *
 *   READING ──head claimed──▶ DISPATCHED(streamed) ──body pieces──▶ ... ──body end──┐
 *                               │ respond_start/chunk... (any time)                 ▼
 *                               └──────────────── respond_end ─▶ IDLE (body complete)
 *                                                              ─▶ LINGER (body unread)
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
    bool streamed;  /* body NULL, 0: it arrives through ent_http_request_stream() */
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

/* Called on the loop thread with the head of every request that has a body (Content-Length
 * above zero, or chunked) just after its headers are parsed, before any body byte is
 * buffered: head->id is 0, head->body NULL and head->streamed false. Returning true makes
 * the request streamed (see ent_http_request_stream()). Must not call ent_http_*
 * functions; ud is the server's handler ud. */
typedef bool (*ent_http_stream_select_cb)(struct ent_http_server *srv,
                                          const struct ent_http_request *head, void *ud);

/* Zero means the default given in brackets. */
struct ent_http_server_cfg {
    const char *listen;        /* "127.0.0.1:8080", "[::1]:0"; port 0 picks a free port */
    size_t max_url;            /* request target bytes [8192] -> 414 */
    size_t max_header_bytes;   /* sum of header names and values [16384] -> 431 */
    size_t max_body;           /* Content-Length or de-chunked total [1 MiB] -> 413 */
    size_t max_connections;    /* beyond it, accepted then closed at once [1024] */
    uint64_t read_timeout_ms;  /* TLS handshake; a started request must be complete [10000] */
    uint64_t idle_timeout_ms;  /* keep-alive idle [60000] */
    uint64_t write_timeout_ms; /* a response must drain to the kernel within [10000]; a
                                * streamed one must progress within it; not counted while
                                * a streamed request body flows in */
    int backlog;               /* listen backlog [511] */
    bool reuseport;            /* SO_REUSEPORT so N loops can each bind the same port */
    SSL_CTX *tls;              /* NULL: plain HTTP; the server takes its own reference */
    ent_http_stream_select_cb stream_select; /* NULL: no request is streamed */
    uint64_t max_stream_body; /* a streamed request body [1 TiB] -> 413 or on_abort */
    size_t stream_high_water; /* streamed response bytes queued -> ENT_ESATURATED [262144] */
    const char *name;         /* for logs and metric labels: "ops", "device", "admin" */
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
    uint64_t client_gone;        /* connection lost with a request dispatched */
    uint64_t streamed_requests;  /* dispatched with a streamed body */
    uint64_t streamed_responses; /* answered with ent_http_respond_start() */
    /* High-water marks, for tests and capacity checks: the most request bytes one
     * connection held at once (parked input, a whole body, a streamed piece), and the most
     * response bytes queued in user space for one connection. */
    uint64_t in_buffered_max;
    uint64_t out_queued_max;
};

struct ent_http_conn;
struct ent_http_abort;

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
    struct ent_http_abort *aborts; /* on_abort notifications waiting for the pump */
    void *data;                    /* free for the owner */
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
 * headers). body is copied; headers and body may be freed on return. A streamed request
 * answered before its body ended gets Connection: close (the rest is discarded). Errors:
 * ENT_ENOTFOUND if the request's connection is gone or the id was already answered (the
 * caller drops its work), ENT_EINVAL for a status outside 200..599 (1xx are not supported)
 * or when a streamed response was started for the id. */
ent_err ent_http_respond(struct ent_http_server *srv, uint64_t id, int status,
                         const struct ent_http_header *headers, size_t n_headers, const void *body,
                         size_t body_len);

/* ---- streaming --------------------------------------------------------------------- */

/* Callbacks of one streamed request or response, all on the loop thread, never from inside
 * another ent_http_* call. Any may be NULL. After ent_http_respond() /
 * ent_http_respond_end() / ent_http_respond_abort() for the id, none is called again.
 *  on_body      a piece of a streamed request body (valid during the call only; a few KiB
 *               at a time). Pause from here to stop the flow.
 *  on_body_end  the streamed body is complete (after its last on_body).
 *  on_drain     the streamed response's queue emptied after ent_http_respond_chunk()
 *               returned ENT_ESATURATED (or exceeded the caller's own bound).
 *  on_abort     the request is dead: the peer closed or reset (ENT_ECLOSED), a read or
 *               write timeout (ENT_ETIMEDOUT), the body broke max_stream_body
 *               (ENT_ETOOBIG) or was malformed (ENT_EPROTO). The id is gone: every later
 *               call for it returns ENT_ENOTFOUND. Not called for connections that
 *               ent_http_server_close() drops (the owner cleans up its own work then). */
struct ent_http_stream_ops {
    void (*on_body)(struct ent_http_server *srv, uint64_t id, const char *data, size_t len,
                    void *ud);
    void (*on_body_end)(struct ent_http_server *srv, uint64_t id, void *ud);
    void (*on_drain)(struct ent_http_server *srv, uint64_t id, void *ud);
    void (*on_abort)(struct ent_http_server *srv, uint64_t id, ent_err why, void *ud);
};

/* Registers the callbacks of request `id` (ops is copied; ud is passed back). For a
 * streamed request nothing of the body is read until this is called, so a handler may
 * check credentials first; it then flows, unless paused. For a whole-body request only
 * on_drain and on_abort apply. Calling it again replaces the callbacks. Loop thread.
 * Errors: ENT_ENOTFOUND (gone or answered), ENT_EINVAL (ops NULL). */
ent_err ent_http_request_stream(struct ent_http_server *srv, uint64_t id,
                                const struct ent_http_stream_ops *ops, void *ud);

/* Flow control of a streamed request body: after pause no on_body comes (at most the piece
 * being delivered finishes), the socket is no longer read once 64 KiB are parked, and the
 * read timeout is suspended (the wait is ours, not the client's); resume restarts delivery
 * on a later loop turn and the read timeout (silence between body bytes). Idempotent.
 * Errors: ENT_ENOTFOUND (gone or answered), ENT_EINVAL (not a streamed request). */
ent_err ent_http_request_pause(struct ent_http_server *srv, uint64_t id);
ent_err ent_http_request_resume(struct ent_http_server *srv, uint64_t id);

/* Starts a streamed response: status line and headers (plus Date, Connection and
 * Transfer-Encoding: chunked for HTTP/1.1; for HTTP/1.0 no length, and the connection
 * closes at the end). Header rules as ent_http_respond(). Errors: ENT_ENOTFOUND (gone or
 * answered), ENT_EINVAL (status outside 200..599, 204 or 304: use ent_http_respond(); a
 * response already started; a header with CR/LF). */
ent_err ent_http_respond_start(struct ent_http_server *srv, uint64_t id, int status,
                               const struct ent_http_header *headers, size_t n_headers);

/* Queues len bytes (copied) of a started response; len 0 does nothing. ENT_ESATURATED
 * means the bytes WERE queued but the queue is now over cfg.stream_high_water: produce no
 * more until on_drain (or poll ent_http_response_queued()). Other errors queue nothing:
 * ENT_ENOTFOUND (client gone or answered), ENT_EINVAL (not started). For HEAD requests the
 * bytes are dropped. */
ent_err ent_http_respond_chunk(struct ent_http_server *srv, uint64_t id, const void *data,
                               size_t len);

/* Ends a started response (the last chunk, or the close for HTTP/1.0). The connection then
 * reads its next request, or closes if the streamed request body was not read to its end
 * (or on drain/Connection: close). Errors: ENT_ENOTFOUND, ENT_EINVAL (not started). */
ent_err ent_http_respond_end(struct ent_http_server *srv, uint64_t id);

/* Gives up on request `id` (e.g. its producer failed mid-stream): the connection closes at
 * once, so the client sees a truncated response rather than a complete wrong one. No
 * callback follows. Errors: ENT_ENOTFOUND. */
ent_err ent_http_respond_abort(struct ent_http_server *srv, uint64_t id);

/* Response bytes of request `id` accepted but not yet handed to the kernel (0 when the id
 * is unknown). */
size_t ent_http_response_queued(const struct ent_http_server *srv, uint64_t id);

/* Installs or replaces the stream_select callback after init (same contract as the cfg
 * field); it applies to requests whose headers are parsed from now on. Loop thread. */
void ent_http_server_set_stream_select(struct ent_http_server *srv, ent_http_stream_select_cb cb);

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
