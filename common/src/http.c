/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP/1.1 server core (see ent/http.h for the contract and the state diagram): the
 * listener, connections, TLS over memory BIOs, llhttp parsing into per-request buffers,
 * limits, deadlines, ordered responses and draining. Routing, authentication and bodies'
 * meaning belong to the daemons.
 *
 * Invariants:
 *  1. A connection has at most one request dispatched (req_active). llhttp pauses in
 *     on_message_complete, and the bytes after it stay in `pending` until the response is
 *     queued; so responses leave in request order.
 *  2. Nothing is freed from inside an llhttp callback or a handler: closing only marks the
 *     connection and calls uv_close(); memory goes in the last close callback.
 *  3. Parsing is never re-entered: ent_http_respond() for a connection that is not being
 *     parsed right now queues it on srv->pump_head, and the idle handle parses later.
 *     This also keeps the shared read buffers (srv->rbuf, srv->tbuf) single-user.
 *  4. srv->handles_open counts the listener, the pump handle and every connection; the
 *     closed callback runs when it reaches zero after ent_http_server_close().
 *
 * Transitions: accept on_connection(); IDLE->READING on_message_begin(); READING->
 * DISPATCHED conn_dispatch(); DISPATCHED->IDLE ent_http_respond(); ->LINGER conn_linger();
 * ->closed conn_close(); freed conn_free(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ent/http.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/tls.h"
#include "ent/util.h"
#include "http_int.h"

/* Every server (ops, device, admin) counts into the same families, labelled by its name. */
static ent_counter http_responses =
    ENT_COUNTER("entitle_http_responses_total", "HTTP responses sent, by server and status code",
                "server", "code");
static ent_histogram http_duration = ENT_HISTOGRAM(
    "entitle_http_request_duration_seconds",
    "Time from the first byte of a request to its response being queued",
    ENT_BUCKETS(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5),
    "server");
static ent_counter http_conn_events =
    ENT_COUNTER("entitle_http_connection_events_total",
                "Connections accepted or rejected (max_connections) and closed by a timeout",
                "server", "event");

static void http_count_response(const struct ent_http_server *srv, int status, uint64_t start_ns)
{
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    ent_counter_inc(&http_responses, srv->name, code);
    if (start_ns != 0)
        ent_histogram_observe(&http_duration, (double)(ent_now_ns() - start_ns) / 1e9, srv->name);
}

#define RBUF_SIZE    65536
#define TBUF_SIZE    16384
#define PENDING_CAP  65536  /* stop reading while this much input is parked */
#define WRITE_HIGH   262144 /* stop parsing while this much output is queued */
#define LINGER_MS    2000
#define MAX_SLOTS    (1u << ENT_HTTP_SLOT_BITS)
#define HEAD_SLACK   4096
#define STREAM_SLICE 16384 /* body bytes parsed per llhttp call for a streamed request */
#define STREAM_HW    262144
#define STREAM_MAX   ((uint64_t)1 << 40)
#define PAUSE_HEAD   1 /* llhttp paused after the head of a streamed request */
#define PAUSE_DONE   2 /* llhttp paused at the end of a message */

enum frame { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE };

static void conn_close(struct ent_http_conn *c);
static void conn_linger(struct ent_http_conn *c);
static void conn_arm(struct ent_http_conn *c);
static void conn_pump(struct ent_http_conn *c);
static void conn_tls_flush(struct ent_http_conn *c);
static void conn_write_clock(struct ent_http_conn *c, bool progress);
static void server_maybe_closed(struct ent_http_server *srv);
static void conn_schedule_pump(struct ent_http_conn *c);
static void server_schedule_pump(struct ent_http_server *srv);
static ent_err conn_build_request(struct ent_http_conn *c, struct ent_http_request *out);

/* ---- small helpers ---------------------------------------------------------------- */

static const char *status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 511:
        return "Network Authentication Required";
    default:
        return "Unknown";
    }
}

/* RFC 9110 IMF-fixdate, recomputed once per second; locale-independent on purpose. */
static const char *server_date(struct ent_http_server *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if ((int64_t)now == srv->date_sec)
        return srv->date;
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_sec = (int64_t)now;
    return srv->date;
}

static ent_err buf_append_u64(struct ent_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return ent_buf_append(b, tmp + i, sizeof(tmp) - i);
}

static bool name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

static bool has_crlf(const char *s, size_t len)
{
    return memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL;
}

const char *ent_http_request_header(const struct ent_http_request *r, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct ent_http_header *h = &r->headers[i];
        if (h->name_len == nlen && strncasecmp(h->name, name, nlen) == 0) {
            if (len != NULL)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

/* Builds a whole response into srv->out. */
static ent_err build_response(struct ent_http_server *srv, int status, bool keep,
                              const struct ent_http_header *headers, size_t n_headers,
                              const void *body, size_t body_len, bool send_body, enum frame frame)
{
    struct ent_buf *b = &srv->out;
    ent_buf_reset(b);
    bool no_body = status == 204 || status == 304;
    ent_err rc = ent_buf_append(b, "HTTP/1.1 ", 9);
    if (rc == ENT_OK)
        rc = buf_append_u64(b, (uint64_t)status);
    if (rc == ENT_OK)
        rc = ent_buf_append_char(b, ' ');
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, status_reason(status));
    if (rc == ENT_OK)
        rc = ent_buf_append(b, "\r\nDate: ", 8);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, server_date(srv));
    for (size_t i = 0; rc == ENT_OK && i < n_headers; i++) {
        const struct ent_http_header *h = &headers[i];
        if (name_is(h->name, h->name_len, "content-length") ||
            name_is(h->name, h->name_len, "connection") || name_is(h->name, h->name_len, "date") ||
            name_is(h->name, h->name_len, "transfer-encoding"))
            continue;
        rc = ent_buf_append(b, "\r\n", 2);
        if (rc == ENT_OK)
            rc = ent_buf_append(b, h->name, h->name_len);
        if (rc == ENT_OK)
            rc = ent_buf_append(b, ": ", 2);
        if (rc == ENT_OK)
            rc = ent_buf_append(b, h->value, h->value_len);
    }
    if (rc == ENT_OK && !no_body && frame == FRAME_LENGTH) {
        rc = ent_buf_append(b, "\r\nContent-Length: ", 18);
        if (rc == ENT_OK)
            rc = buf_append_u64(b, body_len);
    }
    if (rc == ENT_OK && frame == FRAME_CHUNKED)
        rc = ent_buf_append_str(b, "\r\nTransfer-Encoding: chunked");
    if (rc == ENT_OK)
        rc = keep ? ent_buf_append_str(b, "\r\nConnection: keep-alive\r\n\r\n")
                  : ent_buf_append_str(b, "\r\nConnection: close\r\n\r\n");
    if (rc == ENT_OK && send_body && !no_body && body_len > 0)
        rc = ent_buf_append(b, body, body_len);
    return rc;
}

/* ---- output ----------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
    struct ent_http_write *w = ENT_CONTAINER_OF(req, struct ent_http_write, req);
    struct ent_http_conn *c = w->conn;
    free(w);
    c->writes_pending--;
    if (status < 0) {
        if (c->state != ENT_HTTP_CONN_CLOSED) {
            ENT_LOG_DEBUG(NULL, "http.write_error", ENT_KV_STR("server", c->srv->name),
                          ENT_KV_STR("peer", c->peer), ENT_KV_STR("reason", uv_err_name(status)));
            conn_close(c);
        }
        return;
    }
    if (c->writes_pending == 0) {
        c->write_deadline = 0;
        if (c->state == ENT_HTTP_CONN_OPEN && !c->req_active && c->pending.len > c->pending_off)
            conn_pump(c);
        conn_arm(c);
        if (c->state == ENT_HTTP_CONN_OPEN && c->drain_wanted && c->stream_out && c->has_ops) {
            c->drain_wanted = false;
            if (c->ops.on_drain != NULL)
                c->ops.on_drain(c->srv, c->req_id, c->ops_ud);
        }
    } else if (c->state != ENT_HTTP_CONN_CLOSED) {
        /* A long streamed response must make progress, not finish, within the timeout. */
        conn_write_clock(c, c->stream_out);
    }
}

/* The write deadline: armed while output waits in user space (restarted on progress when
 * `progress`), except while a streamed request body is flowing in. A client that uploads
 * before reading (most do) is alive as long as it sends, and the read timeout watches
 * that; once the body is complete or paused, a stuck queue times out as usual. */
static void conn_write_clock(struct ent_http_conn *c, bool progress)
{
    bool exempt = c->req_active && c->stream_in && !c->body_done && !c->body_paused;
    if (c->writes_pending == 0 || exempt || c->srv->cfg.write_timeout_ms == 0) {
        if (c->write_deadline == 0)
            return;
        c->write_deadline = 0;
    } else if (c->write_deadline == 0 || progress) {
        c->write_deadline = uv_now(c->srv->loop) + c->srv->cfg.write_timeout_ms;
    } else {
        return;
    }
    conn_arm(c);
}

/* Sends bytes as they are: straight to the kernel if nothing is queued, the rest copied
 * into a write request owned until its callback. Errors close the connection. */
static void conn_send(struct ent_http_conn *c, const char *data, size_t len)
{
    if (c->state == ENT_HTTP_CONN_CLOSED || len == 0)
        return;
    size_t off = 0;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n >= 0) {
            off = (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            ENT_LOG_DEBUG(NULL, "http.write_error", ENT_KV_STR("server", c->srv->name),
                          ENT_KV_STR("peer", c->peer), ENT_KV_STR("reason", uv_err_name(n)));
            conn_close(c);
            return;
        }
    }
    if (off == len)
        return;
    struct ent_http_write *w = malloc(sizeof(*w) + (len - off));
    if (w == NULL) {
        conn_close(c);
        return;
    }
    w->conn = c;
    w->len = len - off;
    memcpy(w->data, data + off, len - off);
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->writes_pending++;
    if (c->tcp.write_queue_size > c->srv->stats.out_queued_max)
        c->srv->stats.out_queued_max = c->tcp.write_queue_size;
    conn_write_clock(c, false);
}

/* Moves whatever TLS produced (records, alerts, tickets) to the socket. */
static void conn_tls_flush(struct ent_http_conn *c)
{
    char *p = NULL;
    long n = BIO_get_mem_data(c->wbio, &p);
    if (n <= 0)
        return;
    conn_send(c, p, (size_t)n);
    (void)BIO_reset(c->wbio);
}

/* Plaintext out: through TLS if the connection has it. */
static void conn_write(struct ent_http_conn *c, const char *data, size_t len)
{
    if (c->ssl == NULL) {
        conn_send(c, data, len);
        return;
    }
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off > (size_t)INT32_MAX ? (size_t)INT32_MAX : len - off;
        int n = SSL_write(c->ssl, data + off, (int)chunk);
        if (n <= 0) {
            ERR_clear_error();
            conn_close(c);
            return;
        }
        off += (size_t)n;
    }
    conn_tls_flush(c);
}

/* ---- deadlines -------------------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t)
{
    struct ent_http_conn *c = ENT_CONTAINER_OF(t, struct ent_http_conn, timer);
    struct ent_http_server *srv = c->srv;
    uint64_t now = uv_now(srv->loop);
    if (c->state == ENT_HTTP_CONN_CLOSED)
        return;
    if (c->write_deadline != 0 && now >= c->write_deadline) {
        srv->stats.write_timeouts++;
        ent_counter_inc(&http_conn_events, srv->name, "write_timeout");
        ENT_LOG_INFO(NULL, "http.write_timeout", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("peer", c->peer));
        c->lost_why = ENT_ETIMEDOUT;
        conn_close(c);
        return;
    }
    if (c->linger_deadline != 0 && now >= c->linger_deadline) {
        conn_close(c);
        return;
    }
    if (c->read_deadline != 0 && now >= c->read_deadline) {
        c->read_deadline = 0;
        srv->stats.read_timeouts++;
        if (c->ssl != NULL && !c->handshake_done) {
            ENT_LOG_INFO(NULL, "http.handshake_timeout", ENT_KV_STR("server", srv->name),
                         ENT_KV_STR("peer", c->peer));
            conn_close(c);
        } else if (c->msg_started) {
            ENT_LOG_INFO(NULL, "http.read_timeout", ENT_KV_STR("server", srv->name),
                         ENT_KV_STR("peer", c->peer));
            c->lost_why = ENT_ETIMEDOUT;
            ent_counter_inc(&http_conn_events, srv->name, "read_timeout");
            if (c->stream_out) { /* mid-response: no room for a 408 */
                conn_close(c);
                return;
            }
            srv->stats.responses[4]++;
            http_count_response(srv, 408, 0);
            if (build_response(srv, 408, false, NULL, 0, NULL, 0, false, FRAME_LENGTH) == ENT_OK)
                conn_write(c, srv->out.data, srv->out.len);
            conn_linger(c);
        } else {
            conn_close(c); /* connected, never sent a request */
        }
        return;
    }
    if (c->idle_deadline != 0 && now >= c->idle_deadline) {
        srv->stats.idle_timeouts++;
        ent_counter_inc(&http_conn_events, srv->name, "idle_timeout");
        conn_linger(c);
        return;
    }
    conn_arm(c);
}

/* Starts the timer for the earliest deadline, or stops it. */
static void conn_arm(struct ent_http_conn *c)
{
    if (c->state == ENT_HTTP_CONN_CLOSED)
        return;
    uint64_t d = 0;
    const uint64_t all[4] = {c->read_deadline, c->idle_deadline, c->write_deadline,
                             c->linger_deadline};
    for (size_t i = 0; i < 4; i++)
        if (all[i] != 0 && (d == 0 || all[i] < d))
            d = all[i];
    if (d == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->srv->loop);
    uv_timer_start(&c->timer, on_conn_timer, d > now ? d - now : 0, 0);
}

/* ---- closing ---------------------------------------------------------------------- */

static void conn_unlink_pump(struct ent_http_conn *c)
{
    if (!c->pump_queued)
        return;
    struct ent_http_conn **pp = &c->srv->pump_head;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->pump_next;
    if (*pp == c)
        *pp = c->pump_next;
    c->pump_queued = false;
    c->pump_next = NULL;
}

static void conn_free(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    conn_unlink_pump(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->ssl != NULL)
        SSL_free(c->ssl); /* frees both BIOs */
    ent_buf_free(&c->head);
    ent_buf_free(&c->body);
    ent_buf_free(&c->pending);
    ent_buf_free(&c->piece);
    free(c->hoff);
    free(c->hdrs);
    free(c);
    srv->n_conns--;
    srv->handles_open--;
    server_maybe_closed(srv);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct ent_http_conn *c = h->data;
    if (--c->close_pending == 0)
        conn_free(c);
}

/* The dispatched request dies with its connection: a registered on_abort is owed, and the
 * pump delivers it (not now: we may be inside the consumer's own call). Nothing is owed
 * while the server closes (ent/http.h). */
static void conn_lose_stream(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    bool owed = c->has_ops && c->ops.on_abort != NULL && !srv->closing;
    c->has_ops = false;
    if (!owed)
        return;
    struct ent_http_abort *a = malloc(sizeof(*a));
    if (a == NULL) {
        ENT_LOG_ERROR(NULL, "http.abort_lost", ENT_KV_STR("server", srv->name),
                      ENT_KV_STR("reason", "out of memory"));
        return;
    }
    *a = (struct ent_http_abort){.next = srv->aborts,
                                 .id = c->req_id,
                                 .why = c->lost_why != ENT_OK ? c->lost_why : ENT_ECLOSED,
                                 .cb = c->ops.on_abort,
                                 .ud = c->ops_ud};
    srv->aborts = a;
    server_schedule_pump(srv);
}

/* Closes at once (RST-free unless input is unread). Safe to call from any callback,
 * repeatedly; memory goes in the close callbacks. */
static void conn_close(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    if (c->state == ENT_HTTP_CONN_CLOSED)
        return;
    c->state = ENT_HTTP_CONN_CLOSED;
    if (c->req_active) {
        c->req_active = false;
        srv->inflight--;
        srv->stats.client_gone++;
        ENT_LOG_DEBUG(NULL, "http.client_gone", ENT_KV_STR("server", srv->name),
                      ENT_KV_STR("peer", c->peer));
        conn_lose_stream(c);
    }
    if (c->has_slot) {
        srv->slots[c->slot] = NULL;
        srv->free_slots[srv->n_free++] = c->slot;
        c->has_slot = false;
    }
    c->close_pending = 2;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct ent_http_conn *c = req->data;
    if (c->state == ENT_HTTP_CONN_CLOSED)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* Everything is out and FIN sent: give the peer a moment to read and close. */
    struct ent_http_server *srv = c->srv;
    uint64_t linger = LINGER_MS;
    if (srv->cfg.read_timeout_ms < linger)
        linger = srv->cfg.read_timeout_ms;
    c->linger_deadline = uv_now(srv->loop) + linger;
    conn_arm(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Graceful end: whatever is queued (the last response, a TLS close_notify) goes out, then
 * FIN; input is read and discarded until the peer closes or LINGER_MS passes, so that an
 * unread request body does not turn our close into an RST that destroys the response. */
static void conn_linger(struct ent_http_conn *c)
{
    if (c->state != ENT_HTTP_CONN_OPEN)
        return;
    struct ent_http_server *srv = c->srv;
    c->state = ENT_HTTP_CONN_LINGER;
    if (c->req_active) {
        c->req_active = false;
        srv->inflight--;
        conn_lose_stream(c);
    }
    if (c->ssl != NULL && c->handshake_done) {
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
        conn_tls_flush(c);
        if (c->state == ENT_HTTP_CONN_CLOSED)
            return;
    }
    ent_buf_free(&c->pending);
    c->pending_off = 0;
    c->read_deadline = 0;
    c->idle_deadline = 0;
    /* The linger clock starts in on_shutdown, once the last bytes are out; until then a
     * slow reader is bounded by the write deadline. */
    c->shutdown_req.data = c;
    int r = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown);
    if (r < 0) {
        conn_close(c);
        return;
    }
    if (c->read_stopped) {
        c->read_stopped = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    conn_arm(c);
}

/* Answers a request we refuse (limits, malformed) and closes. */
static void conn_fail(struct ent_http_conn *c, int status, const char *event, const char *reason)
{
    struct ent_http_server *srv = c->srv;
    if (c->state != ENT_HTTP_CONN_OPEN)
        return;
    if (c->req_active && c->lost_why == ENT_OK) /* a streamed body went wrong */
        c->lost_why = status == 413 ? ENT_ETOOBIG : ENT_EPROTO;
    if (status == 400)
        srv->stats.parse_errors++;
    else if (status == 413 || status == 414 || status == 431)
        srv->stats.limit_errors++;
    ENT_LOG_INFO(NULL, event, ENT_KV_STR("server", srv->name), ENT_KV_STR("peer", c->peer),
                 ENT_KV_I64("status", status), ENT_KV_STR("reason", reason));
    if (c->stream_out) { /* a response is half sent: cut it, the client sees it truncated */
        conn_close(c);
        return;
    }
    srv->stats.responses[status / 100]++;
    http_count_response(srv, status, 0);
    const char *text = status_reason(status);
    if (build_response(srv, status, false, NULL, 0, text, strlen(text), true, FRAME_LENGTH) ==
        ENT_OK)
        conn_write(c, srv->out.data, srv->out.len);
    conn_linger(c);
}

/* ---- parsing ---------------------------------------------------------------------- */

static struct ent_http_conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

static int parser_fail(struct ent_http_conn *c, int status, const char *reason)
{
    if (c->err_status == 0) {
        c->err_status = status;
        c->err_reason = reason;
    }
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    struct ent_http_conn *c = parser_conn(p);
    struct ent_http_server *srv = c->srv;
    ent_buf_reset(&c->head);
    if (c->body.cap > 65536)
        ent_buf_free(&c->body);
    ent_buf_reset(&c->body);
    ent_buf_reset(&c->piece);
    c->stream_in = c->body_done = c->body_paused = false;
    c->body_seen = 0;
    c->lost_why = ENT_OK;
    c->n_hdr = 0;
    c->target_len = c->path_off = c->path_len = c->query_off = c->query_len = 0;
    c->has_query = false;
    c->in_field = c->value_open = false;
    c->header_bytes = 0;
    c->msg_started = true;
    c->start_ns = ent_now_ns();
    c->idle_deadline = 0;
    if (srv->cfg.read_timeout_ms > 0)
        c->read_deadline = uv_now(srv->loop) + srv->cfg.read_timeout_ms;
    conn_arm(c);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct ent_http_conn *c = parser_conn(p);
    if (c->target_len + len > c->srv->cfg.max_url)
        return parser_fail(c, 414, "url too long");
    if (ent_buf_append(&c->head, at, len) != ENT_OK)
        return parser_fail(c, 414, "url too long");
    c->target_len += len;
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    struct ent_http_conn *c = parser_conn(p);
    if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
        return parser_fail(c, 414, "url too long");
    const char *q = memchr(c->head.data, '?', c->target_len);
    size_t plen = q != NULL ? (size_t)(q - c->head.data) : c->target_len;
    if (q != NULL) {
        c->has_query = true;
        c->query_off = plen + 1;
        c->query_len = c->target_len - plen - 1;
    }
    c->path_off = c->head.len;
    c->path_len = plen;
    /* The path is copied so that it, too, ends with NUL. Byte by byte through the index,
     * because head may move while it grows. */
    for (size_t i = 0; i < plen; i++)
        if (ent_buf_append_char(&c->head, c->head.data[i]) != ENT_OK)
            return parser_fail(c, 414, "url too long");
    if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
        return parser_fail(c, 414, "url too long");
    return 0;
}

static int header_add_bytes(struct ent_http_conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->srv->cfg.max_header_bytes)
        return parser_fail(c, 431, "headers too large");
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct ent_http_conn *c = parser_conn(p);
    if (!c->in_field) {
        if (c->value_open) {
            c->value_open = false;
            if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
                return parser_fail(c, 431, "headers too large");
        }
        if (header_add_bytes(c, 4) != 0) /* ": " and CRLF */
            return -1;
        if (c->n_hdr == c->cap_hdr) {
            size_t ncap = c->cap_hdr ? c->cap_hdr * 2 : 16;
            struct ent_http_hdr_off *n = realloc(c->hoff, ncap * sizeof(*n));
            if (n == NULL)
                return parser_fail(c, 431, "out of memory");
            c->hoff = n;
            c->cap_hdr = ncap;
        }
        struct ent_http_hdr_off *h = &c->hoff[c->n_hdr++];
        h->name_off = (uint32_t)c->head.len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        c->in_field = true;
    }
    if (header_add_bytes(c, len) != 0)
        return -1;
    if (ent_buf_append(&c->head, at, len) != ENT_OK)
        return parser_fail(c, 431, "headers too large");
    c->hoff[c->n_hdr - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct ent_http_conn *c = parser_conn(p);
    c->in_field = false;
    if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
        return parser_fail(c, 431, "headers too large");
    c->hoff[c->n_hdr - 1].value_off = (uint32_t)c->head.len;
    c->value_open = true;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct ent_http_conn *c = parser_conn(p);
    if (header_add_bytes(c, len) != 0)
        return -1;
    if (ent_buf_append(&c->head, at, len) != ENT_OK)
        return parser_fail(c, 431, "headers too large");
    c->hoff[c->n_hdr - 1].value_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct ent_http_conn *c = parser_conn(p);
    if (c->value_open) {
        c->value_open = false;
        if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
            return parser_fail(c, 431, "headers too large");
    }
    return 0;
}

/* Header lookup while parsing (offsets, since dispatch has not built pointers yet). */
static const char *conn_header(struct ent_http_conn *c, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < c->n_hdr; i++) {
        const struct ent_http_hdr_off *h = &c->hoff[i];
        if (h->name_len == nlen && strncasecmp(c->head.data + h->name_off, name, nlen) == 0) {
            *len = h->value_len;
            return c->head.data + h->value_off;
        }
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct ent_http_conn *c = parser_conn(p);
    struct ent_http_server *srv = c->srv;
    if (c->value_open) {
        c->value_open = false;
        if (ent_buf_append_char(&c->head, '\0') != ENT_OK)
            return parser_fail(c, 431, "headers too large");
    }
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    c->upgrade = p->upgrade != 0;
    c->is_head = p->method == HTTP_HEAD;
    bool has_body = (p->flags & F_CHUNKED) != 0 ||
                    ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
    if (has_body && !c->upgrade && srv->cfg.stream_select != NULL) {
        struct ent_http_request head;
        if (conn_build_request(c, &head) != ENT_OK)
            return parser_fail(c, 500, "out of memory");
        head.body = NULL;
        c->stream_in = srv->cfg.stream_select(srv, &head, srv->ud);
    }
    uint64_t limit = c->stream_in ? srv->cfg.max_stream_body : srv->cfg.max_body;
    if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > limit)
        return parser_fail(c, 413, "content-length over limit");
    /* curl and others wait (about a second) for this before sending a large body. */
    size_t elen = 0;
    const char *expect = conn_header(c, "expect", &elen);
    if (expect != NULL && p->http_minor >= 1 && elen == 12 &&
        strncasecmp(expect, "100-continue", 12) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof(cont) - 1);
    }
    if (c->stream_in) {
        c->pause_why = PAUSE_HEAD; /* dispatch now; the body follows in pieces */
        return HPE_PAUSED;
    }
    return 0;
}

/* Request bytes this connection holds right now, for the high-water statistic. */
static void conn_note_in(struct ent_http_conn *c)
{
    uint64_t held = (c->pending.len - c->pending_off) + c->body.len + c->piece.len;
    if (held > c->srv->stats.in_buffered_max)
        c->srv->stats.in_buffered_max = held;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct ent_http_conn *c = parser_conn(p);
    if (c->stream_in) {
        c->body_seen += len;
        if (c->body_seen > c->srv->cfg.max_stream_body)
            return parser_fail(c, 413, "streamed body over limit");
        /* At most STREAM_SLICE bytes per llhttp call, so the piece stays small. */
        if (ent_buf_append(&c->piece, at, len) != ENT_OK)
            return parser_fail(c, 500, "out of memory");
        conn_note_in(c);
        return 0;
    }
    ent_err rc = ent_buf_append(&c->body, at, len);
    conn_note_in(c);
    if (rc == ENT_ETOOBIG)
        return parser_fail(c, 413, "body over limit");
    if (rc != ENT_OK)
        return parser_fail(c, 500, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    parser_conn(p)->pause_why = PAUSE_DONE;
    return HPE_PAUSED; /* invariant 1 */
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Fills *req from the parsed head (and the whole body, if any): pointers into c. */
static ent_err conn_build_request(struct ent_http_conn *c, struct ent_http_request *out)
{
    if (c->cap_hdrs < c->n_hdr) {
        struct ent_http_header *n = realloc(c->hdrs, c->n_hdr * sizeof(*n));
        if (n == NULL)
            return ENT_ENOMEM;
        c->hdrs = n;
        c->cap_hdrs = c->n_hdr;
    }
    const char *h = c->head.data;
    for (size_t i = 0; i < c->n_hdr; i++) {
        c->hdrs[i].name = h + c->hoff[i].name_off;
        c->hdrs[i].name_len = c->hoff[i].name_len;
        c->hdrs[i].value = h + c->hoff[i].value_off;
        c->hdrs[i].value_len = c->hoff[i].value_len;
    }
    struct ent_http_request req = {
        .method = llhttp_method_name((llhttp_method_t)c->parser.method),
        .target = h,
        .target_len = c->target_len,
        .path = h + c->path_off,
        .path_len = c->path_len,
        .query = c->has_query ? h + c->query_off : NULL,
        .query_len = c->query_len,
        .headers = c->hdrs,
        .n_headers = c->n_hdr,
        .body = c->body.data != NULL ? c->body.data : "",
        .body_len = c->body.len,
        .http_minor = c->parser.http_minor,
        .tls = c->ssl != NULL,
        .start_ns = c->start_ns,
    };
    if (req.method == NULL)
        req.method = "";
    memcpy(req.peer, c->peer, sizeof(req.peer));
    *out = req;
    return ENT_OK;
}

static void conn_dispatch(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    struct ent_http_request req;
    if (conn_build_request(c, &req) != ENT_OK) {
        conn_fail(c, 500, "http.internal_error", "out of memory");
        return;
    }
    if (c->stream_in) {
        req.streamed = true;
        req.body = NULL;
        req.body_len = 0;
        srv->stats.streamed_requests++;
    }
    srv->seq++;
    c->req_id = (srv->seq << ENT_HTTP_SLOT_BITS) | c->slot;
    req.id = c->req_id;
    c->req_active = true;
    c->read_deadline = 0;
    conn_arm(c);
    srv->inflight++;
    srv->stats.requests++;
    srv->cb(srv, &req, srv->ud);
}

/* A dispatched request blocks parsing, except the body of a streamed one while its
 * consumer takes it; the consumer then paces itself by the response queue. */
static bool conn_can_parse(const struct ent_http_conn *c)
{
    if (c->state != ENT_HTTP_CONN_OPEN || (c->ssl != NULL && !c->handshake_done))
        return false;
    if (c->req_active)
        return c->stream_in && !c->body_done && !c->body_paused && c->has_ops;
    return c->tcp.write_queue_size <= WRITE_HIGH;
}

/* Hands the body bytes of the last llhttp call to the consumer, outside llhttp. */
static void conn_deliver_piece(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    if (c->state == ENT_HTTP_CONN_OPEN && c->req_active && c->has_ops && c->ops.on_body) {
        if (!c->body_paused && srv->cfg.read_timeout_ms > 0) {
            c->read_deadline = uv_now(srv->loop) + srv->cfg.read_timeout_ms;
            conn_arm(c);
        }
        c->ops.on_body(srv, c->req_id, c->piece.data, c->piece.len, c->ops_ud);
    }
    ent_buf_reset(&c->piece);
}

static void conn_body_done(struct ent_http_conn *c)
{
    c->body_done = true;
    c->read_deadline = 0;
    conn_arm(c);
    conn_write_clock(c, false);
    if (c->req_active && c->has_ops && c->ops.on_body_end != NULL)
        c->ops.on_body_end(c->srv, c->req_id, c->ops_ud);
}

/* Runs llhttp over data, dispatching each complete request; stops at an unanswered one.
 * Returns the bytes consumed. */
static size_t conn_parse(struct ent_http_conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && conn_can_parse(c)) {
        size_t step = len - off;
        if (c->stream_in && step > STREAM_SLICE)
            step = STREAM_SLICE;
        c->pause_why = 0;
        llhttp_errno_t e = llhttp_execute(&c->parser, data + off, step);
        if (e == HPE_OK || e == HPE_PAUSED) {
            if (e == HPE_PAUSED) {
                off = (size_t)(llhttp_get_error_pos(&c->parser) - data);
                llhttp_resume(&c->parser);
            } else {
                off += step;
            }
            if (c->piece.len > 0)
                conn_deliver_piece(c);
            if (c->state != ENT_HTTP_CONN_OPEN || e == HPE_OK)
                continue;
            if (c->pause_why == PAUSE_HEAD) {
                conn_dispatch(c);
                if (c->req_active)
                    c->body_paused = false; /* flows once ent_http_request_stream() is called */
                continue;
            }
            c->msg_started = false;
            if (c->stream_in) {
                if (c->req_active)
                    conn_body_done(c);
                continue;
            }
            if (c->upgrade)
                c->keep_alive = false; /* no protocol switch here: answer, then close */
            conn_dispatch(c);
            continue;
        }
        if (c->piece.len > 0)
            ent_buf_reset(&c->piece);
        if (c->err_status != 0)
            conn_fail(c, c->err_status,
                      c->err_status == 400 ? "http.parse_error" : "http.limit_exceeded",
                      c->err_reason);
        else
            conn_fail(c, 400, "http.parse_error", llhttp_errno_name(e));
        off = len;
        break;
    }
    return off;
}

/* Plaintext in: parse now if nothing is parked, else park it. */
static void conn_input(struct ent_http_conn *c, const char *data, size_t len)
{
    if (c->state != ENT_HTTP_CONN_OPEN)
        return;
    if (c->pending.len == c->pending_off && conn_can_parse(c)) {
        size_t n = conn_parse(c, data, len);
        data += n;
        len -= n;
    }
    if (len == 0 || c->state != ENT_HTTP_CONN_OPEN)
        return;
    if (c->pending_off > 0) {
        size_t left = c->pending.len - c->pending_off;
        memmove(c->pending.data, c->pending.data + c->pending_off, left);
        c->pending.len = left;
        c->pending_off = 0;
    }
    if (ent_buf_append(&c->pending, data, len) != ENT_OK)
        conn_close(c);
    else
        conn_note_in(c);
}

static void conn_eof(struct ent_http_conn *c, int err)
{
    if (c->req_active || c->msg_started)
        ENT_LOG_DEBUG(NULL, "http.peer_closed", ENT_KV_STR("server", c->srv->name),
                      ENT_KV_STR("peer", c->peer), ENT_KV_STR("reason", uv_err_name(err)));
    conn_close(c);
}

/* Decrypts what the read BIO holds into the parser, as far as there is room. */
static void conn_tls_pull(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    while (c->state == ENT_HTTP_CONN_OPEN && c->pending.len - c->pending_off < PENDING_CAP) {
        int n = SSL_read(c->ssl, srv->tbuf, TBUF_SIZE);
        if (n > 0) {
            conn_input(c, srv->tbuf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_eof(c, UV_EOF);
            break;
        }
        char reason[160];
        ent_tls_error_string("tls", reason, sizeof(reason));
        ENT_LOG_INFO(NULL, "http.tls_error", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("peer", c->peer), ENT_KV_STR("reason", reason));
        conn_close(c);
        break;
    }
    if (c->state != ENT_HTTP_CONN_CLOSED)
        conn_tls_flush(c);
}

static void conn_tls_input(struct ent_http_conn *c, const char *data, size_t len)
{
    struct ent_http_server *srv = c->srv;
    if (BIO_write(c->rbio, data, (int)len) != (int)len) {
        conn_close(c);
        return;
    }
    if (!c->handshake_done) {
        int r = SSL_do_handshake(c->ssl);
        conn_tls_flush(c);
        if (c->state != ENT_HTTP_CONN_OPEN)
            return;
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return;
            char reason[160];
            ent_tls_error_string("tls handshake", reason, sizeof(reason));
            srv->stats.tls_handshake_errors++;
            ent_counter_inc(&http_conn_events, srv->name, "tls_handshake_failed");
            ENT_LOG_INFO(NULL, "http.tls_handshake_failed", ENT_KV_STR("server", srv->name),
                         ENT_KV_STR("peer", c->peer), ENT_KV_STR("reason", reason));
            conn_linger(c); /* lets the alert reach the peer */
            return;
        }
        c->handshake_done = true;
    }
    conn_tls_pull(c);
}

static void conn_after_input(struct ent_http_conn *c)
{
    if (c->state != ENT_HTTP_CONN_OPEN)
        return;
    size_t parked = c->pending.len - c->pending_off;
    if (parked >= PENDING_CAP && !c->read_stopped) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = true;
    } else if (parked < PENDING_CAP && c->read_stopped) {
        c->read_stopped = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    /* A consumer resumed (or registered) while this parse ran: finish on a later turn. */
    if (parked > 0 && conn_can_parse(c))
        conn_schedule_pump(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct ent_http_conn *c = h->data;
    buf->base = c->srv->rbuf;
    buf->len = RBUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ent_http_conn *c = s->data;
    if (nread == 0 || c->state == ENT_HTTP_CONN_CLOSED)
        return;
    if (c->state == ENT_HTTP_CONN_LINGER) {
        if (nread < 0)
            conn_close(c);
        return; /* discard */
    }
    if (nread < 0) {
        conn_eof(c, (int)nread);
        return;
    }
    c->in_parse = true;
    if (c->ssl != NULL)
        conn_tls_input(c, buf->base, (size_t)nread);
    else
        conn_input(c, buf->base, (size_t)nread);
    c->in_parse = false;
    conn_after_input(c);
}

/* Parses parked input after a response (invariant 3: never re-entered). */
static void conn_pump(struct ent_http_conn *c)
{
    if (c->in_parse)
        return;
    c->in_parse = true;
    while (conn_can_parse(c) && c->pending.len > c->pending_off) {
        size_t n = conn_parse(c, c->pending.data + c->pending_off, c->pending.len - c->pending_off);
        if (c->state != ENT_HTTP_CONN_OPEN)
            break;
        c->pending_off += n;
    }
    if (c->state == ENT_HTTP_CONN_OPEN && c->pending_off == c->pending.len) {
        ent_buf_reset(&c->pending);
        c->pending_off = 0;
        if (c->pending.cap > PENDING_CAP)
            ent_buf_free(&c->pending);
    }
    if (c->ssl != NULL && conn_can_parse(c))
        conn_tls_pull(c);
    c->in_parse = false;
    conn_after_input(c);
}

/* The pump: owed on_abort calls first, then connections with parked input to parse. */
static void on_pump(uv_idle_t *h)
{
    struct ent_http_server *srv = ENT_CONTAINER_OF(h, struct ent_http_server, pump);
    while (srv->aborts != NULL || srv->pump_head != NULL) {
        if (srv->aborts != NULL) {
            struct ent_http_abort *a = srv->aborts;
            srv->aborts = a->next;
            a->cb(srv, a->id, a->why, a->ud);
            free(a);
            if (srv->closing)
                return; /* the callback closed the server; its close dropped the rest */
            continue;
        }
        struct ent_http_conn *c = srv->pump_head;
        srv->pump_head = c->pump_next;
        c->pump_next = NULL;
        c->pump_queued = false;
        if (c->state == ENT_HTTP_CONN_OPEN)
            conn_pump(c);
    }
    uv_idle_stop(&srv->pump);
}

static void server_schedule_pump(struct ent_http_server *srv)
{
    if (!srv->closing)
        uv_idle_start(&srv->pump, on_pump);
}

static void conn_schedule_pump(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    if (c->pump_queued || srv->closing)
        return;
    c->pump_queued = true;
    c->pump_next = srv->pump_head;
    srv->pump_head = c;
    uv_idle_start(&srv->pump, on_pump);
}

/* ---- public: responding ------------------------------------------------------------ */

/* The connection answering request `id`, or NULL if it is gone or the id was answered. */
static struct ent_http_conn *conn_find(const struct ent_http_server *srv, uint64_t id)
{
    uint64_t slot = id & ENT_HTTP_SLOT_MASK;
    if (srv->slots == NULL || slot >= srv->cfg.max_connections)
        return NULL;
    struct ent_http_conn *c = srv->slots[slot];
    if (c == NULL || !c->req_active || c->req_id != id || c->state != ENT_HTTP_CONN_OPEN)
        return NULL;
    return c;
}

/* The response of the dispatched request is fully queued (req_active already false): the
 * connection goes idle for the next request, or lingers to its close. */
static void conn_response_done(struct ent_http_conn *c, bool keep)
{
    struct ent_http_server *srv = c->srv;
    c->has_ops = c->stream_out = c->drain_wanted = false;
    if (c->state != ENT_HTTP_CONN_OPEN)
        return;
    if (!keep) {
        conn_linger(c);
        return;
    }
    c->stream_in = false;
    if (srv->cfg.idle_timeout_ms > 0)
        c->idle_deadline = uv_now(srv->loop) + srv->cfg.idle_timeout_ms;
    conn_arm(c);
    bool more = c->pending.len > c->pending_off || c->read_stopped ||
                (c->ssl != NULL && (SSL_pending(c->ssl) > 0 || BIO_ctrl_pending(c->rbio) > 0));
    if (!c->in_parse && more)
        conn_schedule_pump(c);
}

/* Body delivery may go on (registration or resume): restart the read clock and parse
 * what is parked on a later loop turn (or now, if a parse is under way on this stack). */
static void conn_body_kick(struct ent_http_conn *c)
{
    struct ent_http_server *srv = c->srv;
    if (srv->cfg.read_timeout_ms > 0) {
        c->read_deadline = uv_now(srv->loop) + srv->cfg.read_timeout_ms;
        conn_arm(c);
    }
    if (!c->in_parse)
        conn_schedule_pump(c);
}

ent_err ent_http_respond(struct ent_http_server *srv, uint64_t id, int status,
                         const struct ent_http_header *headers, size_t n_headers, const void *body,
                         size_t body_len)
{
    if (status < 200 || status > 599)
        return ENT_EINVAL;
    for (size_t i = 0; i < n_headers; i++)
        if (headers[i].name_len == 0 || has_crlf(headers[i].name, headers[i].name_len) ||
            has_crlf(headers[i].value, headers[i].value_len))
            return ENT_EINVAL;
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (c->stream_out)
        return ENT_EINVAL;
    bool keep = c->keep_alive && !srv->draining && (!c->stream_in || c->body_done);
    ent_err rc = build_response(srv, status, keep, headers, n_headers, body, body_len, !c->is_head,
                                FRAME_LENGTH);
    if (rc != ENT_OK)
        return rc;
    c->req_active = false;
    srv->inflight--;
    srv->stats.responses[status / 100]++;
    http_count_response(srv, status, c->start_ns);
    conn_write(c, srv->out.data, srv->out.len);
    conn_response_done(c, keep);
    return ENT_OK;
}

/* ---- public: streaming ------------------------------------------------------------- */

ent_err ent_http_request_stream(struct ent_http_server *srv, uint64_t id,
                                const struct ent_http_stream_ops *ops, void *ud)
{
    if (ops == NULL)
        return ENT_EINVAL;
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    bool first = !c->has_ops;
    c->ops = *ops;
    c->ops_ud = ud;
    c->has_ops = true;
    if (first && c->stream_in && !c->body_done && !c->body_paused)
        conn_body_kick(c);
    return ENT_OK;
}

ent_err ent_http_request_pause(struct ent_http_server *srv, uint64_t id)
{
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (!c->stream_in)
        return ENT_EINVAL;
    if (!c->body_paused && !c->body_done) {
        c->body_paused = true;
        c->read_deadline = 0; /* waiting on us, not on the client */
        conn_arm(c);
        conn_write_clock(c, false);
    }
    return ENT_OK;
}

ent_err ent_http_request_resume(struct ent_http_server *srv, uint64_t id)
{
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (!c->stream_in)
        return ENT_EINVAL;
    if (c->body_paused) {
        c->body_paused = false;
        conn_write_clock(c, false);
        if (c->has_ops && !c->body_done)
            conn_body_kick(c);
    }
    return ENT_OK;
}

ent_err ent_http_respond_start(struct ent_http_server *srv, uint64_t id, int status,
                               const struct ent_http_header *headers, size_t n_headers)
{
    if (status < 200 || status > 599 || status == 204 || status == 304)
        return ENT_EINVAL;
    for (size_t i = 0; i < n_headers; i++)
        if (headers[i].name_len == 0 || has_crlf(headers[i].name, headers[i].name_len) ||
            has_crlf(headers[i].value, headers[i].value_len))
            return ENT_EINVAL;
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (c->stream_out)
        return ENT_EINVAL;
    /* HTTP/1.0 has no chunked coding: the body ends where the connection does. Whether a
     * streamed request body will be complete by the end is not known yet; if not, the
     * connection closes after the last chunk despite this header (RFC 9112 9.6 allows it). */
    c->out_chunked = c->parser.http_major == 1 && c->parser.http_minor >= 1;
    bool keep = c->keep_alive && !srv->draining && c->out_chunked;
    ent_err rc = build_response(srv, status, keep, headers, n_headers, NULL, 0, false,
                                c->out_chunked ? FRAME_CHUNKED : FRAME_CLOSE);
    if (rc != ENT_OK)
        return rc;
    c->stream_out = true;
    srv->stats.streamed_responses++;
    srv->stats.responses[status / 100]++;
    http_count_response(srv, status, c->start_ns);
    conn_write(c, srv->out.data, srv->out.len);
    return c->state == ENT_HTTP_CONN_OPEN ? ENT_OK : ENT_ENOTFOUND;
}

ent_err ent_http_respond_chunk(struct ent_http_server *srv, uint64_t id, const void *data,
                               size_t len)
{
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (!c->stream_out)
        return ENT_EINVAL;
    if (len == 0 || c->is_head)
        return ENT_OK;
    if (c->out_chunked) {
        struct ent_buf *b = &srv->out;
        char hex[20];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        ent_buf_reset(b);
        ent_err rc = ent_buf_append(b, hex, (size_t)n);
        if (rc == ENT_OK)
            rc = ent_buf_append(b, data, len);
        if (rc == ENT_OK)
            rc = ent_buf_append(b, "\r\n", 2);
        if (rc != ENT_OK)
            return rc;
        conn_write(c, b->data, b->len);
    } else {
        conn_write(c, data, len);
    }
    if (c->state != ENT_HTTP_CONN_OPEN)
        return ENT_ENOTFOUND;
    if (c->tcp.write_queue_size > srv->cfg.stream_high_water) {
        c->drain_wanted = true;
        return ENT_ESATURATED;
    }
    return ENT_OK;
}

ent_err ent_http_respond_end(struct ent_http_server *srv, uint64_t id)
{
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    if (!c->stream_out)
        return ENT_EINVAL;
    bool keep =
        c->keep_alive && !srv->draining && c->out_chunked && (!c->stream_in || c->body_done);
    c->req_active = false;
    srv->inflight--;
    if (c->out_chunked && !c->is_head)
        conn_write(c, "0\r\n\r\n", 5);
    conn_response_done(c, keep);
    return ENT_OK;
}

ent_err ent_http_respond_abort(struct ent_http_server *srv, uint64_t id)
{
    struct ent_http_conn *c = conn_find(srv, id);
    if (c == NULL)
        return ENT_ENOTFOUND;
    c->has_ops = false;
    c->req_active = false;
    srv->inflight--;
    ENT_LOG_DEBUG(NULL, "http.response_aborted", ENT_KV_STR("server", srv->name),
                  ENT_KV_STR("peer", c->peer));
    conn_close(c);
    return ENT_OK;
}

size_t ent_http_response_queued(const struct ent_http_server *srv, uint64_t id)
{
    const struct ent_http_conn *c = conn_find(srv, id);
    return c != NULL ? c->tcp.write_queue_size : 0;
}

void ent_http_server_set_stream_select(struct ent_http_server *srv, ent_http_stream_select_cb cb)
{
    srv->cfg.stream_select = cb;
}

/* ---- accepting ---------------------------------------------------------------------- */

static void format_peer(uv_tcp_t *tcp, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(out, cap, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%d", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%d", ip, ntohs(a->sin6_port));
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ent_http_server *srv = ENT_CONTAINER_OF(server, struct ent_http_server, listener);
    if (status < 0) {
        ENT_LOG_WARN(NULL, "http.accept_error", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("reason", uv_err_name(status)));
        return;
    }
    if (!srv->listening)
        return;
    struct ent_http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ENT_LOG_WARN(NULL, "http.accept_error", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("reason", "out of memory"));
        return;
    }
    c->srv = srv;
    c->state = ENT_HTTP_CONN_OPEN;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    srv->handles_open++;
    int r = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (r < 0) {
        ENT_LOG_WARN(NULL, "http.accept_error", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("reason", uv_err_name(r)));
        conn_close(c);
        return;
    }
    format_peer(&c->tcp, c->peer, sizeof(c->peer));
    if (srv->n_free == 0) {
        srv->stats.conns_rejected++;
        ent_counter_inc(&http_conn_events, srv->name, "rejected");
        ENT_LOG_INFO(NULL, "http.conn_rejected", ENT_KV_STR("server", srv->name),
                     ENT_KV_STR("peer", c->peer), ENT_KV_U64("max", srv->cfg.max_connections));
        conn_close(c);
        return;
    }
    c->slot = srv->free_slots[--srv->n_free];
    c->has_slot = true;
    srv->slots[c->slot] = c;
    srv->stats.conns_accepted++;
    ent_counter_inc(&http_conn_events, srv->name, "accepted");
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    ent_buf_init(&c->head, srv->cfg.max_url * 2 + srv->cfg.max_header_bytes * 2 + HEAD_SLACK);
    ent_buf_init(&c->body, srv->cfg.max_body);
    ent_buf_init(&c->pending, (size_t)-1 / 2);
    ent_buf_init(&c->piece, STREAM_SLICE + 64);
    if (srv->tls != NULL) {
        c->ssl = SSL_new(srv->tls);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
            BIO_free(c->rbio);
            BIO_free(c->wbio);
            SSL_free(c->ssl);
            c->ssl = NULL;
            ERR_clear_error();
            conn_close(c);
            return;
        }
        /* An empty read BIO means "wait for the socket", not end of stream. */
        BIO_set_mem_eof_return(c->rbio, -1);
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_accept_state(c->ssl);
    }
    if (srv->cfg.read_timeout_ms > 0)
        c->read_deadline = uv_now(srv->loop) + srv->cfg.read_timeout_ms;
    conn_arm(c);
    r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0)
        conn_close(c);
}

/* ---- server lifecycle ------------------------------------------------------------- */

static void server_release(struct ent_http_server *srv)
{
    free(srv->slots);
    free(srv->free_slots);
    free(srv->rbuf);
    free(srv->tbuf);
    ent_buf_free(&srv->out);
    while (srv->aborts != NULL) {
        struct ent_http_abort *a = srv->aborts;
        srv->aborts = a->next;
        free(a);
    }
    if (srv->tls != NULL)
        SSL_CTX_free(srv->tls);
    srv->slots = NULL;
    srv->free_slots = NULL;
    srv->rbuf = srv->tbuf = NULL;
    srv->tls = NULL;
}

static void server_maybe_closed(struct ent_http_server *srv)
{
    if (!srv->closing || srv->handles_open != 0)
        return;
    server_release(srv);
    if (srv->closed_cb != NULL)
        srv->closed_cb(srv);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct ent_http_server *srv = h->data;
    srv->handles_open--;
    server_maybe_closed(srv);
}

/* Creates, binds and listens with plain syscalls, so a failure leaves no libuv handle. */
static ent_err listen_socket(const struct ent_http_server_cfg *cfg, int *fd_out)
{
    char host[256];
    int port = 0;
    if (ent_parse_hostport(cfg->listen, host, sizeof(host), &port) != ENT_OK)
        return ENT_EINVAL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t slen;
    int family;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) {
        family = AF_INET;
        slen = sizeof(struct sockaddr_in);
    } else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        family = AF_INET6;
        slen = sizeof(struct sockaddr_in6);
    } else {
        return ENT_EINVAL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ent_err_from_errno(errno);
    int one = 1;
    ent_err rc = ENT_OK;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        rc = ent_err_from_errno(errno);
    if (rc == ENT_OK && cfg->reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        rc = ent_err_from_errno(errno);
    if (rc == ENT_OK && family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        rc = ent_err_from_errno(errno);
    if (rc == ENT_OK && bind(fd, (struct sockaddr *)&ss, slen) != 0)
        rc = ent_err_from_errno(errno);
    if (rc == ENT_OK && listen(fd, cfg->backlog) != 0)
        rc = ent_err_from_errno(errno);
    if (rc != ENT_OK) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return ENT_OK;
}

ent_err ent_http_server_init(struct ent_http_server *srv, uv_loop_t *loop,
                             const struct ent_http_server_cfg *cfg, ent_http_handler_cb cb,
                             void *ud)
{
    if (srv == NULL || loop == NULL || cfg == NULL || cfg->listen == NULL || cb == NULL)
        return ENT_EINVAL;
    memset(srv, 0, sizeof(*srv));
    srv->cfg = *cfg;
    srv->cfg.listen = NULL;
    srv->cfg.name = NULL;
    srv->cfg.tls = NULL;
    if (srv->cfg.max_url == 0)
        srv->cfg.max_url = 8192;
    if (srv->cfg.max_header_bytes == 0)
        srv->cfg.max_header_bytes = 16384;
    if (srv->cfg.max_body == 0)
        srv->cfg.max_body = 1024 * 1024;
    if (srv->cfg.max_connections == 0)
        srv->cfg.max_connections = 1024;
    if (srv->cfg.read_timeout_ms == 0)
        srv->cfg.read_timeout_ms = 10000;
    if (srv->cfg.idle_timeout_ms == 0)
        srv->cfg.idle_timeout_ms = 60000;
    if (srv->cfg.write_timeout_ms == 0)
        srv->cfg.write_timeout_ms = 10000;
    if (srv->cfg.backlog <= 0)
        srv->cfg.backlog = 511;
    if (srv->cfg.max_stream_body == 0)
        srv->cfg.max_stream_body = STREAM_MAX;
    if (srv->cfg.stream_high_water == 0)
        srv->cfg.stream_high_water = STREAM_HW;
    if (srv->cfg.max_connections >= MAX_SLOTS || srv->cfg.max_url > UINT32_MAX / 4 ||
        srv->cfg.max_header_bytes > UINT32_MAX / 4)
        return ENT_EINVAL;
    snprintf(srv->name, sizeof(srv->name), "%s", cfg->name != NULL ? cfg->name : "http");
    srv->loop = loop;
    srv->cb = cb;
    srv->ud = ud;
    srv->date_sec = -1;
    ent_buf_init(&srv->out, (size_t)-1 / 2);

    srv->slots = calloc(srv->cfg.max_connections, sizeof(*srv->slots));
    srv->free_slots = malloc(srv->cfg.max_connections * sizeof(*srv->free_slots));
    srv->rbuf = malloc(RBUF_SIZE);
    srv->tbuf = malloc(TBUF_SIZE);
    if (srv->slots == NULL || srv->free_slots == NULL || srv->rbuf == NULL || srv->tbuf == NULL) {
        server_release(srv);
        return ENT_ENOMEM;
    }
    /* Lowest slot first off the stack: ids stay small in tests and logs. */
    for (size_t i = 0; i < srv->cfg.max_connections; i++)
        srv->free_slots[i] = (uint32_t)(srv->cfg.max_connections - 1 - i);
    srv->n_free = srv->cfg.max_connections;

    int fd = -1;
    ent_err rc = listen_socket(cfg, &fd);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "http.listen_failed", ENT_KV_STR("server", srv->name),
                      ENT_KV_STR("listen", cfg->listen), ENT_KV_STR("reason", ent_err_name(rc)));
        server_release(srv);
        return rc;
    }
    if (cfg->tls != NULL) {
        SSL_CTX_up_ref(cfg->tls);
        srv->tls = cfg->tls;
    }
    uv_idle_init(loop, &srv->pump);
    srv->pump.data = srv;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->handles_open = 2;
    srv->listening = true;
    int r = uv_tcp_open(&srv->listener, fd);
    bool opened = r == 0;
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, srv->cfg.backlog, on_connection);
    if (r != 0) {
        /* Unreachable in practice (the socket already listens). The handles are closed
         * but their close callbacks need one more loop turn: leave srv allocated. */
        if (!opened)
            close(fd);
        srv->closing = true;
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
        uv_close((uv_handle_t *)&srv->pump, on_server_handle_closed);
        return ent_err_from_uv(r);
    }
    ENT_LOG_INFO(NULL, "http.listening", ENT_KV_STR("server", srv->name),
                 ENT_KV_STR("listen", cfg->listen), ENT_KV_I64("port", ent_http_server_port(srv)),
                 ENT_KV_BOOL("tls", srv->tls != NULL));
    return ENT_OK;
}

int ent_http_server_port(const struct ent_http_server *srv)
{
    if (!srv->listening)
        return -1;
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void ent_http_server_stop_accepting(struct ent_http_server *srv)
{
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    }
    srv->draining = true;
    struct ent_http_conn *c = srv->conns;
    while (c != NULL) {
        struct ent_http_conn *next = c->next;
        if (c->state == ENT_HTTP_CONN_OPEN && !c->req_active && !c->msg_started &&
            c->pending.len == c->pending_off) {
            if (c->ssl != NULL && !c->handshake_done)
                conn_close(c);
            else
                conn_linger(c);
        }
        c = next;
    }
}

size_t ent_http_server_inflight(const struct ent_http_server *srv)
{
    return srv->inflight;
}

size_t ent_http_server_connections(const struct ent_http_server *srv)
{
    return srv->n_conns;
}

const struct ent_http_server_stats *ent_http_server_stats(const struct ent_http_server *srv)
{
    return &srv->stats;
}

void ent_http_server_close(struct ent_http_server *srv,
                           void (*closed_cb)(struct ent_http_server *srv))
{
    if (srv->closing)
        return;
    ent_http_server_stop_accepting(srv);
    srv->closing = true;
    srv->closed_cb = closed_cb;
    for (struct ent_http_conn *c = srv->conns; c != NULL; c = c->next)
        conn_close(c);
    srv->pump_head = NULL;
    for (struct ent_http_conn *c = srv->conns; c != NULL; c = c->next) {
        c->pump_queued = false;
        c->pump_next = NULL;
    }
    uv_close((uv_handle_t *)&srv->pump, on_server_handle_closed);
}

void ent_http_server_set_tls(struct ent_http_server *srv, SSL_CTX *ctx)
{
    if (ctx == NULL || srv->tls == NULL)
        return;
    SSL_CTX_up_ref(ctx);
    SSL_CTX_free(srv->tls);
    srv->tls = ctx;
}
