/* SPDX-License-Identifier: Apache-2.0 */
/* Private to http.c: one accepted connection of an ent_http_server. A connection carries
 * at most one request between parse and response; bytes that arrive meanwhile (pipelining)
 * wait in `pending` and are parsed after the response is queued, which keeps responses in
 * request order without any reordering machinery. */
#ifndef ENT_HTTP_INT_H
#define ENT_HTTP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <llhttp.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "ent/http.h"
#include "ent/util.h"

/* Low bits of a request id are the connection's slot, high bits a server-wide sequence. */
#define ENT_HTTP_SLOT_BITS 24
#define ENT_HTTP_SLOT_MASK ((UINT64_C(1) << ENT_HTTP_SLOT_BITS) - 1)

enum ent_http_conn_state {
    ENT_HTTP_CONN_OPEN,   /* reading requests */
    ENT_HTTP_CONN_LINGER, /* last bytes queued, FIN sent or pending; input discarded */
    ENT_HTTP_CONN_CLOSED, /* uv_close() called; freed when both handles' callbacks ran */
};

/* Offsets into conn->head, since head may move while it grows. */
struct ent_http_hdr_off {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;
    uint32_t value_len;
};

struct ent_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct ent_http_server *srv;
    struct ent_http_conn *prev, *next; /* srv->conns */
    struct ent_http_conn *pump_next;   /* srv's deferred-parse list */
    bool pump_queued;
    enum ent_http_conn_state state;
    int close_pending; /* handle close callbacks still to come */
    bool has_slot;
    uint32_t slot;
    char peer[64];

    /* TLS over memory BIOs; ssl NULL for plain HTTP. */
    SSL *ssl;
    BIO *rbio, *wbio;
    bool handshake_done;

    /* The request being read or dispatched. */
    llhttp_t parser;
    struct ent_buf head; /* target\0 path\0 (name\0 value\0)... */
    struct ent_buf body;
    struct ent_http_hdr_off *hoff;
    size_t n_hdr, cap_hdr;
    struct ent_http_header *hdrs; /* built at dispatch */
    size_t cap_hdrs;
    size_t target_len, path_off, path_len, query_off, query_len;
    bool has_query;
    bool in_field, value_open;
    size_t header_bytes;
    int err_status; /* set by a parser callback that hit a limit */
    const char *err_reason;
    bool msg_started, keep_alive, is_head, upgrade;
    uint64_t start_ns;
    uint64_t req_id;
    bool req_active; /* dispatched, not yet answered */

    /* Streaming (see ent/http.h). A streamed request is dispatched at its head; llhttp then
     * runs over at most STREAM_SLICE bytes per call, and the body bytes of each call are
     * gathered in `piece` and handed to on_body after llhttp returns (never from inside
     * it). */
    bool stream_in;    /* the request body is streamed */
    bool body_done;    /* its last byte was parsed */
    bool body_paused;  /* consumer paused (or has not registered yet) */
    bool has_ops;      /* ent_http_request_stream() was called for req_id */
    bool stream_out;   /* a streamed response is under way */
    bool out_chunked;  /* else close-delimited (HTTP/1.0) */
    bool drain_wanted; /* call on_drain when the queue empties */
    uint8_t pause_why; /* why llhttp paused: PAUSE_HEAD or PAUSE_DONE */
    uint64_t body_seen;
    struct ent_buf piece;
    struct ent_http_stream_ops ops;
    void *ops_ud;
    ent_err lost_why; /* reason given to on_abort when the connection goes */

    /* Input parked while a request is dispatched. */
    struct ent_buf pending;
    size_t pending_off;
    bool in_parse, read_stopped;

    /* Output and deadlines (uv_now() milliseconds; 0 = none). */
    size_t writes_pending;
    uint64_t read_deadline, idle_deadline, write_deadline, linger_deadline;
};

/* An on_abort owed to a stream consumer, delivered by the server's idle pump so that it
 * never runs inside another call (the connection may be freed by then). */
struct ent_http_abort {
    struct ent_http_abort *next;
    uint64_t id;
    ent_err why;
    void (*cb)(struct ent_http_server *srv, uint64_t id, ent_err why, void *ud);
    void *ud;
};

/* A queued write owning its bytes until the callback. */
struct ent_http_write {
    uv_write_t req;
    struct ent_http_conn *conn;
    size_t len;
    char data[];
};

#endif
