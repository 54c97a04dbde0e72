/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for ent/http.h and ent/tls.h: a real server on 127.0.0.1 (port 0) runs on a loop
 * in the test thread; a client thread talks raw HTTP/1.1 (and TLS) over blocking sockets
 * with receive timeouts, records what it saw, and wakes the loop when done. Assertions
 * happen in the test thread after the client thread is joined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "ent/http.h"
#include "ent/log.h"
#include "ent/tls.h"

#include "ent_test_tls.h"

/* ---- fixture: loop + server + client thread ----------------------------------------- */

struct fx;
typedef void (*client_fn)(struct fx *f);

/* Server side of a streamed response: total bytes of pattern in chunks of `size`. */
struct prod {
    uint64_t id;
    uint64_t total, sent;
    size_t size;
    int saturated, drains;
    ent_err chunk_rc, end_rc;
    bool active, aborted, done;
    ent_err abort_why;
};

/* Server side of a streamed request body. */
struct upl {
    uint64_t id;
    uint64_t bytes, sum;
    size_t pieces, max_piece, pauses;
    bool slow, duplex, ended, aborted;
    ent_err abort_why;
};

struct fx {
    uv_loop_t loop;
    struct ent_http_server srv;
    uv_async_t done;
    uv_timer_t timer;  /* async responses */
    uv_timer_t poll;   /* server-side checks */
    uv_timer_t resume; /* slow stream consumer */
    struct prod prod;
    struct upl upl;
    bool set_select; /* install stream_select through the setter, not cfg */
    pthread_t thr;
    client_fn client;
    int port;
    bool client_done, server_done;
    /* server side */
    uint64_t later_id;
    const char *later_body;
    uint64_t never_id;
    ent_err late_rc;
    size_t late_inflight;
    int requests;
    /* client side */
    char fail[256];
    char got[8][2048];
    int n_got;
    int status[8];
    bool eof;
    int connect_errno;
    SSL_CTX *cctx;
    SSL_CTX *reload; /* given to ent_http_server_set_tls() before the client starts */
    int tls_max;
    int tls_version;
};

#define CL_CHECK(f, cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if ((f)->fail[0] == '\0')                                                              \
                snprintf((f)->fail, sizeof((f)->fail), "%s:%d: %s", __FILE__, __LINE__, #cond);    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void fx_maybe_finish(struct fx *f)
{
    if (!f->client_done || !f->server_done)
        return;
    ent_http_server_close(&f->srv, NULL);
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_close((uv_handle_t *)&f->poll, NULL);
    uv_close((uv_handle_t *)&f->resume, NULL);
}

static void on_done(uv_async_t *a)
{
    struct fx *f = a->data;
    f->client_done = true;
    fx_maybe_finish(f);
}

static void on_later(uv_timer_t *t)
{
    struct fx *f = t->data;
    ent_err rc =
        ent_http_respond(&f->srv, f->later_id, 200, NULL, 0, f->later_body, strlen(f->later_body));
    assert_int_equal(rc, ENT_OK);
}

/* ---- streaming server side -------------------------------------------------------- */

static unsigned char pat(uint64_t i)
{
    return (unsigned char)(i % 251);
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#define FNV_INIT 14695981039346656037ull

static void prod_run(struct fx *f)
{
    struct prod *p = &f->prod;
    static unsigned char buf[65536];
    while (p->active && p->sent < p->total) {
        size_t n = p->size;
        if (n > p->total - p->sent)
            n = (size_t)(p->total - p->sent);
        if (n > sizeof(buf))
            n = sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(p->sent + i);
        ent_err rc = ent_http_respond_chunk(&f->srv, p->id, buf, n);
        if (rc != ENT_OK && rc != ENT_ESATURATED) {
            p->chunk_rc = rc;
            p->active = false;
            return;
        }
        p->sent += n;
        if (rc == ENT_ESATURATED) {
            p->saturated++;
            return; /* on_drain continues */
        }
    }
    if (p->active) {
        p->end_rc = ent_http_respond_end(&f->srv, p->id);
        p->active = false;
        p->done = true;
        /* The id is finished: nothing more for it. */
        assert_int_equal(ent_http_respond_chunk(&f->srv, p->id, "x", 1), ENT_ENOTFOUND);
    }
}

static void on_stream_drain(struct ent_http_server *srv, uint64_t id, void *ud)
{
    struct fx *f = ud;
    (void)srv;
    if (id == f->prod.id && f->prod.active) {
        f->prod.drains++;
        prod_run(f);
    }
}

static void on_stream_abort(struct ent_http_server *srv, uint64_t id, ent_err why, void *ud)
{
    struct fx *f = ud;
    if (!f->server_done) { /* the test waits for this */
        f->server_done = true;
        fx_maybe_finish(f);
    }
    /* The id is dead from now on. */
    assert_int_equal(ent_http_respond_chunk(srv, id, "x", 1), ENT_ENOTFOUND);
    if (id == f->prod.id) {
        f->prod.aborted = true;
        f->prod.abort_why = why;
        f->prod.active = false;
    }
    if (id == f->upl.id) {
        f->upl.aborted = true;
        f->upl.abort_why = why;
    }
}

static void on_resume(uv_timer_t *t)
{
    struct fx *f = t->data;
    ent_http_request_resume(&f->srv, f->upl.id);
}

static void on_upload_body(struct ent_http_server *srv, uint64_t id, const char *data, size_t len,
                           void *ud)
{
    struct fx *f = ud;
    struct upl *u = &f->upl;
    assert_true(id == u->id);
    assert_false(u->ended);
    u->sum = fnv(u->sum, (const unsigned char *)data, len);
    u->bytes += len;
    u->pieces++;
    if (len > u->max_piece)
        u->max_piece = len;
    if (u->duplex)
        assert_int_equal(ent_http_respond_chunk(srv, id, data, len), ENT_OK);
    if (u->slow && u->pieces % 4 == 0) {
        assert_int_equal(ent_http_request_pause(srv, id), ENT_OK);
        u->pauses++;
        uv_timer_start(&f->resume, on_resume, 1, 0);
    }
}

static void on_upload_end(struct ent_http_server *srv, uint64_t id, void *ud)
{
    struct fx *f = ud;
    struct upl *u = &f->upl;
    u->ended = true;
    if (u->duplex) {
        assert_int_equal(ent_http_respond_end(srv, id), ENT_OK);
        return;
    }
    char body[128];
    int n = snprintf(body, sizeof(body), "bytes=%llu sum=%llu", (unsigned long long)u->bytes,
                     (unsigned long long)u->sum);
    assert_int_equal(ent_http_respond(srv, id, 200, NULL, 0, body, (size_t)n), ENT_OK);
}

static const struct ent_http_stream_ops stream_ops = {
    .on_body = on_upload_body,
    .on_body_end = on_upload_end,
    .on_drain = on_stream_drain,
    .on_abort = on_stream_abort,
};

static bool on_stream_select(struct ent_http_server *srv, const struct ent_http_request *head,
                             void *ud)
{
    (void)srv;
    (void)ud;
    assert_int_equal(head->id, 0);
    assert_null(head->body);
    return strncmp(head->path, "/up", 3) == 0 || strcmp(head->path, "/duplex") == 0;
}

/* /stream?n=<bytes>&size=<chunk> answers a streamed pattern; /up* and /duplex take a
 * streamed body (slow: paused every 4th piece; duplex: echoed as it comes). */
static bool stream_request(struct fx *f, struct ent_http_request *req)
{
    struct ent_http_server *srv = &f->srv;
    if (strcmp(req->path, "/stream") == 0) {
        unsigned long long n = 0, size = 0;
        if (req->query == NULL || sscanf(req->query, "n=%llu&size=%llu", &n, &size) != 2)
            size = 0;
        assert_true(size > 0);
        f->prod = (struct prod){.id = req->id, .total = n, .size = (size_t)size, .active = true};
        assert_int_equal(ent_http_request_stream(srv, req->id, &stream_ops, f), ENT_OK);
        struct ent_http_header h = {"Content-Type", 12, "application/octet-stream", 24};
        assert_int_equal(ent_http_respond_start(srv, req->id, 200, &h, 1), ENT_OK);
        /* Once started, a whole answer is refused. */
        assert_int_equal(ent_http_respond(srv, req->id, 200, NULL, 0, "x", 1), ENT_EINVAL);
        assert_int_equal(ent_http_respond_start(srv, req->id, 200, NULL, 0), ENT_EINVAL);
        prod_run(f);
        return true;
    }
    if (!req->streamed)
        return false;
    assert_null(req->body);
    struct upl *u = &f->upl;
    *u = (struct upl){.id = req->id, .sum = FNV_INIT};
    u->slow = strcmp(req->path, "/up-slow") == 0;
    u->duplex = strcmp(req->path, "/duplex") == 0;
    if (strcmp(req->path, "/up-refuse") == 0) {
        /* Answered before the body: the connection closes after the answer. */
        assert_int_equal(ent_http_respond(srv, req->id, 403, NULL, 0, "no", 2), ENT_OK);
        return true;
    }
    assert_int_equal(ent_http_request_stream(srv, req->id, &stream_ops, f), ENT_OK);
    if (u->duplex) {
        struct ent_http_header h = {"Content-Type", 12, "application/octet-stream", 24};
        assert_int_equal(ent_http_respond_start(srv, req->id, 200, &h, 1), ENT_OK);
    }
    return true;
}

/* One handler for every test; the path picks the behaviour. */
static void on_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud)
{
    struct fx *f = ud;
    char body[1024];
    f->requests++;
    assert_int_equal(ent_http_request_pause(srv, req->id), req->streamed ? ENT_OK : ENT_EINVAL);
    if (req->streamed)
        assert_int_equal(ent_http_request_resume(srv, req->id), ENT_OK);
    if (stream_request(f, req))
        return;
    if (strcmp(req->path, "/slow") == 0 || strcmp(req->path, "/hold") == 0) {
        if (strcmp(req->path, "/hold") == 0)
            ent_http_server_stop_accepting(srv);
        f->later_id = req->id;
        f->later_body = req->path[1] == 's' ? "slow" : "held";
        uv_timer_start(&f->timer, on_later, 50, 0);
        return;
    }
    if (strcmp(req->path, "/never") == 0) {
        f->never_id = req->id;
        return;
    }
    if (strcmp(req->path, "/echo") == 0) {
        struct ent_http_header h = {"Content-Type", 12, "application/octet-stream", 24};
        assert_int_equal(ent_http_respond(srv, req->id, 200, &h, 1, req->body, req->body_len),
                         ENT_OK);
        return;
    }
    size_t xlen = 0;
    const char *x = ent_http_request_header(req, "x-TEST", &xlen);
    int n = snprintf(body, sizeof(body), "%s %s q=%s x=%s", req->method, req->path,
                     req->query != NULL ? req->query : "-", x != NULL ? x : "-");
    assert_int_equal(req->path_len, strlen(req->path));
    if (x != NULL)
        assert_int_equal(xlen, strlen(x));
    assert_int_equal(ent_http_respond(srv, req->id, 200, NULL, 0, body, (size_t)n), ENT_OK);
    /* A second answer to the same id is refused. */
    assert_int_equal(ent_http_respond(srv, req->id, 200, NULL, 0, "x", 1), ENT_ENOTFOUND);
}

static void *client_main(void *arg)
{
    struct fx *f = arg;
    f->client(f);
    uv_async_send(&f->done);
    return NULL;
}

static void fx_run(struct fx *f, struct ent_http_server_cfg *cfg, client_fn client)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    if (cfg->listen == NULL)
        cfg->listen = "127.0.0.1:0";
    cfg->name = "test";
    assert_int_equal(ent_http_server_init(&f->srv, &f->loop, cfg, on_request, f), ENT_OK);
    f->port = ent_http_server_port(&f->srv);
    assert_true(f->port > 0);
    if (f->reload != NULL)
        ent_http_server_set_tls(&f->srv, f->reload);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    uv_timer_init(&f->loop, &f->timer);
    f->timer.data = f;
    uv_timer_init(&f->loop, &f->poll);
    f->poll.data = f;
    uv_timer_init(&f->loop, &f->resume);
    f->resume.data = f;
    if (f->set_select)
        ent_http_server_set_stream_select(&f->srv, on_stream_select);
    f->server_done = true;
    f->client = client;
    assert_int_equal(pthread_create(&f->thr, NULL, client_main, f), 0);
}

static void fx_finish(struct fx *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(f->thr, NULL);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->fail[0] != '\0')
        fail_msg("client: %s", f->fail);
}

/* ---- blocking client ------------------------------------------------------------------ */

struct cl {
    int fd;
    SSL *ssl;
    char buf[65536];
    size_t len;
    size_t maxread; /* 0: fill the buffer; else at most this much per read (slow reader) */
    int rcvbuf;     /* SO_RCVBUF before connect, 0: default */
};

static int cl_connect(struct fx *f, struct cl *c)
{
    int rcvbuf = c->rcvbuf;
    size_t maxread = c->maxread;
    memset(c, 0, sizeof(*c));
    c->maxread = maxread;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        f->connect_errno = errno;
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (f->cctx != NULL) {
        c->ssl = SSL_new(f->cctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        SSL_set1_host(c->ssl, "localhost");
        if (SSL_connect(c->ssl) != 1)
            return -1;
        f->tls_version = SSL_version(c->ssl);
    }
    return 0;
}

static void cl_close(struct cl *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int cl_send(struct cl *c, const char *s)
{
    size_t len = strlen(s);
    if (c->ssl != NULL)
        return SSL_write(c->ssl, s, (int)len) == (int)len ? 0 : -1;
    while (len > 0) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more bytes; 0 on EOF, -1 on error or timeout. */
static ssize_t cl_fill(struct cl *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    ssize_t n;
    size_t room = sizeof(c->buf) - c->len;
    if (c->maxread > 0 && room > c->maxread)
        room = c->maxread;
    if (c->ssl != NULL) {
        int r = SSL_read(c->ssl, c->buf + c->len, (int)room);
        if (r <= 0)
            return SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        n = r;
    } else {
        n = recv(c->fd, c->buf + c->len, room, 0);
        if (n < 0)
            return -1;
    }
    c->len += (size_t)n;
    return n;
}

/* Reads one response into f->got[f->n_got] (head and body) and its status. 0 on success. */
static int cl_response(struct fx *f, struct cl *c)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL) {
            size_t head = (size_t)(end - c->buf) + 4;
            size_t clen = 0;
            char *cl = memmem(c->buf, head, "Content-Length: ", 16);
            if (cl != NULL)
                clen = strtoul(cl + 16, NULL, 10);
            while (c->len < head + clen)
                if (cl_fill(c) <= 0)
                    return -1;
            int i = f->n_got++;
            size_t copy = head + clen < sizeof(f->got[i]) - 1 ? head + clen : sizeof(f->got[i]) - 1;
            memcpy(f->got[i], c->buf, copy);
            f->got[i][copy] = '\0';
            f->status[i] = atoi(c->buf + 9);
            memmove(c->buf, c->buf + head + clen, c->len - head - clen);
            c->len -= head + clen;
            return 0;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

/* True if the server closes the connection (EOF or reset) with no further bytes. */
static bool cl_wait_eof(struct cl *c)
{
    if (c->len != 0)
        return false;
    ssize_t n = cl_fill(c);
    if (n == 0)
        return true;
    return n < 0 && (errno == ECONNRESET || errno == EPIPE);
}

static int cl_send_buf(struct cl *c, const void *data, size_t len)
{
    const char *s = data;
    if (c->ssl != NULL)
        return SSL_write(c->ssl, s, (int)len) == (int)len ? 0 : -1;
    while (len > 0) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends pattern bytes [off, off + n). */
static int cl_send_pattern(struct cl *c, uint64_t off, uint64_t n)
{
    static __thread unsigned char blk[65536];
    while (n > 0) {
        size_t k = n > sizeof(blk) ? sizeof(blk) : (size_t)n;
        for (size_t i = 0; i < k; i++)
            blk[i] = pat(off + i);
        if (cl_send_buf(c, blk, k) != 0)
            return -1;
        off += k;
        n -= k;
    }
    return 0;
}

static void cl_consume(struct cl *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads a response head only into f->got[f->n_got] and its status. */
static int cl_head(struct fx *f, struct cl *c)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL) {
            size_t head = (size_t)(end - c->buf) + 4;
            int i = f->n_got++;
            size_t copy = head < sizeof(f->got[i]) - 1 ? head : sizeof(f->got[i]) - 1;
            memcpy(f->got[i], c->buf, copy);
            f->got[i][copy] = '\0';
            f->status[i] = atoi(c->buf + 9);
            cl_consume(c, head);
            return 0;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

static int cl_line(struct cl *c, char *out, size_t cap)
{
    for (;;) {
        char *nl = memmem(c->buf, c->len, "\r\n", 2);
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            if (n >= cap)
                return -1;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            cl_consume(c, n + 2);
            return 0;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

/* Takes up to n body bytes (at least one), checking them against the pattern at *pos.
 * Returns the count, or -1 on EOF/error/mismatch. */
static ssize_t cl_take_pattern(struct cl *c, uint64_t *pos, uint64_t n)
{
    if (c->len == 0 && cl_fill(c) <= 0)
        return -1;
    size_t k = n < c->len ? (size_t)n : c->len;
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)c->buf[i] != pat(*pos + i))
            return -1;
    cl_consume(c, k);
    *pos += k;
    return (ssize_t)k;
}

/* Reads a chunked body of pattern bytes (from offset 0); *total gets its length. slow_us
 * sleeps after each read. 0 on success. */
static int cl_read_chunked(struct cl *c, uint64_t *total, int slow_us)
{
    uint64_t pos = 0;
    char line[64];
    for (;;) {
        if (cl_line(c, line, sizeof(line)) != 0)
            return -1;
        uint64_t n = strtoull(line, NULL, 16);
        if (n == 0)
            break;
        while (n > 0) {
            ssize_t k = cl_take_pattern(c, &pos, n);
            if (k < 0)
                return -1;
            n -= (uint64_t)k;
            if (slow_us > 0)
                usleep((useconds_t)slow_us);
        }
        if (cl_line(c, line, sizeof(line)) != 0 || line[0] != '\0')
            return -1;
    }
    if (cl_line(c, line, sizeof(line)) != 0 || line[0] != '\0') /* no trailers */
        return -1;
    *total = pos;
    return 0;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p != NULL ? p + 4 : "";
}

/* ---- plain HTTP ----------------------------------------------------------------------- */

static void cl_simple_get(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /hello?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_simple_get(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_simple_get);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_int_equal(f.status[0], 200);
    assert_string_equal(body_of(f.got[0]), "GET /hello q=a=1&b=2 x=yes");
    assert_non_null(strstr(f.got[0], "\r\nDate: "));
    assert_non_null(strstr(f.got[0], "\r\nContent-Length: 26\r\n"));
    assert_non_null(strstr(f.got[0], "\r\nConnection: keep-alive\r\n"));
}

static void cl_keep_alive(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    /* HTTP/1.0 closes unless asked to keep alive. */
    CL_CHECK(f, cl_send(&c, "GET /three HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /four HTTP/1.0\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    f->eof = cl_wait_eof(&c);
    cl_close(&c);
}

static void test_http_keep_alive(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_keep_alive);
    fx_finish(&f);
    assert_int_equal(f.n_got, 4);
    assert_string_equal(body_of(f.got[0]), "GET /one q=- x=-");
    assert_string_equal(body_of(f.got[1]), "GET /two q=- x=-");
    assert_non_null(strstr(f.got[2], "Connection: keep-alive"));
    assert_non_null(strstr(f.got[3], "Connection: close"));
    assert_true(f.eof);
    assert_int_equal(f.srv.stats.conns_accepted, 1);
    assert_int_equal(f.srv.stats.requests, 4);
    assert_int_equal(f.srv.stats.responses[2], 4);
}

static void cl_pipelined(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                            "GET /third HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    for (int i = 0; i < 3; i++)
        CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_pipelined_in_order(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_pipelined);
    fx_finish(&f);
    assert_int_equal(f.n_got, 3);
    assert_string_equal(body_of(f.got[0]), "slow");
    assert_string_equal(body_of(f.got[1]), "second");
    assert_string_equal(body_of(f.got[2]), "GET /third q=- x=-");
}

#define BURST 3000

struct burst {
    struct cl *c;
    int rc;
};

static void *burst_send(void *arg)
{
    struct burst *b = arg;
    static char all[BURST * 48];
    size_t len = 0;
    for (int i = 0; i < BURST; i++)
        len += (size_t)snprintf(all + len, sizeof(all) - len,
                                "GET /p/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    b->rc = cl_send(b->c, all);
    return NULL;
}

/* Many pipelined requests at once: more than the server parks before it stops reading,
 * and more responses than it queues before it stops parsing. All come back in order. */
static void cl_burst(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    struct burst b = {.c = &c};
    pthread_t t;
    CL_CHECK(f, pthread_create(&t, NULL, burst_send, &b) == 0);
    int ok = 0;
    for (int i = 0; i < BURST; i++) {
        f->n_got = 0;
        if (cl_response(f, &c) != 0)
            break;
        char want[64];
        snprintf(want, sizeof(want), "GET /p/%d q=- x=-", i);
        if (strcmp(body_of(f->got[0]), want) != 0)
            break;
        ok++;
    }
    pthread_join(t, NULL);
    f->n_got = ok;
    CL_CHECK(f, b.rc == 0);
    cl_close(&c);
}

static void test_http_pipelined_burst_in_order(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_burst);
    fx_finish(&f);
    assert_int_equal(f.n_got, BURST);
    assert_int_equal(f.srv.stats.requests, BURST);
}

/* Sends `req`, expects one response and then the connection closed. */
static void cl_refused_request(struct fx *f, const char *req)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, req) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, strstr(f->got[f->n_got - 1], "Connection: close") != NULL);
    CL_CHECK(f, cl_wait_eof(&c));
    cl_close(&c);
}

static void cl_big_header(struct fx *f)
{
    char req[4096];
    char big[2001];
    memset(big, 'a', 2000);
    big[2000] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    cl_refused_request(f, req);
}

static void test_http_header_too_large_431(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.max_header_bytes = 1024};
    fx_run(&f, &cfg, cl_big_header);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_int_equal(f.status[0], 431);
    assert_int_equal(f.requests, 0);
    assert_int_equal(f.srv.stats.limit_errors, 1);
}

static void cl_big_body(struct fx *f)
{
    cl_refused_request(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    char chunk[400];
    snprintf(chunk, sizeof(chunk),
             "POST /echo HTTP/1.1\r\nHost: x\r\n"
             "Transfer-Encoding: chunked\r\n\r\n"
             "40\r\n%064d\r\n40\r\n%064d\r\n0\r\n\r\n",
             0, 0);
    cl_refused_request(f, chunk);
}

static void test_http_body_too_large_413(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.max_body = 100};
    fx_run(&f, &cfg, cl_big_body);
    fx_finish(&f);
    assert_int_equal(f.n_got, 2);
    assert_int_equal(f.status[0], 413);
    assert_int_equal(f.status[1], 413);
    assert_int_equal(f.requests, 0);
}

static void cl_long_url(struct fx *f)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /%0100d HTTP/1.1\r\nHost: x\r\n\r\n", 7);
    cl_refused_request(f, req);
}

static void test_http_url_too_long_414(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.max_url = 64};
    fx_run(&f, &cfg, cl_long_url);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_int_equal(f.status[0], 414);
}

static void cl_chunked(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n") == 0);
    usleep(20000); /* the body arrives in two reads */
    CL_CHECK(f, cl_send(&c, "6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_chunked_body_reassembled(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_chunked);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_int_equal(f.status[0], 200);
    assert_string_equal(body_of(f.got[0]), "hello world");
}

static void cl_malformed(struct fx *f)
{
    cl_refused_request(f, "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
    cl_refused_request(f, "\x01\x02garbage\r\n\r\n");
    /* Content-Length with chunked is a smuggling attempt: refused too. */
    cl_refused_request(f, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

static void test_http_malformed_400(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_malformed);
    fx_finish(&f);
    assert_int_equal(f.n_got, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f.status[i], 400);
    assert_int_equal(f.srv.stats.parse_errors, 3);
    assert_int_equal(f.requests, 0);
}

static void cl_slow(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /sl") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    f->eof = cl_wait_eof(&c);
    cl_close(&c);
}

static void test_http_slow_client_408(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.read_timeout_ms = 300};
    fx_run(&f, &cfg, cl_slow);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_int_equal(f.status[0], 408);
    assert_true(f.eof);
    assert_int_equal(f.srv.stats.read_timeouts, 1);
}

static void cl_idle(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    f->eof = cl_wait_eof(&c); /* no request: the server gives up after idle_timeout */
    cl_close(&c);
}

static void test_http_idle_keep_alive_closed(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.idle_timeout_ms = 200};
    fx_run(&f, &cfg, cl_idle);
    fx_finish(&f);
    assert_int_equal(f.n_got, 1);
    assert_true(f.eof);
    assert_int_equal(f.srv.stats.idle_timeouts, 1);
}

static void cl_drain(struct fx *f)
{
    struct cl idle, busy, late;
    CL_CHECK(f, cl_connect(f, &idle) == 0);
    CL_CHECK(f, cl_send(&idle, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &idle) == 0);
    CL_CHECK(f, cl_connect(f, &busy) == 0);
    /* The handler stops accepting, then answers 50 ms later. */
    CL_CHECK(f, cl_send(&busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &busy) == 0);
    CL_CHECK(f, cl_wait_eof(&busy));
    CL_CHECK(f, cl_wait_eof(&idle));
    f->eof = true;
    CL_CHECK(f, cl_connect(f, &late) != 0);
    cl_close(&idle);
    cl_close(&busy);
}

static void test_http_stop_accepting_drains(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_drain);
    fx_finish(&f);
    assert_int_equal(f.n_got, 2);
    assert_int_equal(f.status[1], 200);
    assert_string_equal(body_of(f.got[1]), "held");
    assert_non_null(strstr(f.got[1], "Connection: close"));
    assert_true(f.eof);
    assert_int_equal(f.connect_errno, ECONNREFUSED);
}

static void cl_disconnect(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    usleep(50000);
    cl_close(&c);
}

static void on_poll_gone(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (f->never_id == 0 || ent_http_server_connections(&f->srv) != 0)
        return;
    f->late_inflight = ent_http_server_inflight(&f->srv);
    f->late_rc = ent_http_respond(&f->srv, f->never_id, 200, NULL, 0, "late", 4);
    uv_timer_stop(t);
    f->server_done = true;
    fx_maybe_finish(f);
}

static void test_http_respond_after_disconnect_enotfound(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    f.server_done = false;
    f.never_id = 0;
    f.late_rc = ENT_OK;
    assert_int_equal(uv_loop_init(&f.loop), 0);
    cfg.listen = "127.0.0.1:0";
    assert_int_equal(ent_http_server_init(&f.srv, &f.loop, &cfg, on_request, &f), ENT_OK);
    f.port = ent_http_server_port(&f.srv);
    uv_async_init(&f.loop, &f.done, on_done);
    f.done.data = &f;
    uv_timer_init(&f.loop, &f.timer);
    f.timer.data = &f;
    uv_timer_init(&f.loop, &f.poll);
    f.poll.data = &f;
    uv_timer_init(&f.loop, &f.resume);
    f.resume.data = &f;
    uv_timer_start(&f.poll, on_poll_gone, 10, 10);
    f.client = cl_disconnect;
    assert_int_equal(pthread_create(&f.thr, NULL, client_main, &f), 0);
    fx_finish(&f);
    assert_int_equal(f.late_rc, ENT_ENOTFOUND);
    assert_int_equal(f.late_inflight, 0);
    assert_int_equal(f.srv.stats.client_gone, 1);
}

static void cl_max_conns(struct fx *f)
{
    struct cl a, b;
    CL_CHECK(f, cl_connect(f, &a) == 0);
    CL_CHECK(f, cl_send(&a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &a) == 0);
    CL_CHECK(f, cl_connect(f, &b) == 0); /* the kernel accepts; the server closes it */
    f->eof = cl_wait_eof(&b);
    cl_close(&b);
    CL_CHECK(f, cl_send(&a, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &a) == 0);
    cl_close(&a);
}

static void test_http_max_connections_rejects(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.max_connections = 1};
    fx_run(&f, &cfg, cl_max_conns);
    fx_finish(&f);
    assert_int_equal(f.n_got, 2);
    assert_true(f.eof);
    assert_int_equal(f.srv.stats.conns_rejected, 1);
    assert_int_equal(f.srv.stats.conns_accepted, 1);
}

static void test_http_init_rejects_bad_listen(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct ent_http_server srv;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct ent_http_server_cfg cfg = {.listen = "not-an-address:80"};
    assert_int_equal(ent_http_server_init(&srv, &loop, &cfg, on_request, NULL), ENT_EINVAL);
    cfg.listen = "127.0.0.1";
    assert_int_equal(ent_http_server_init(&srv, &loop, &cfg, on_request, NULL), ENT_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- streaming ------------------------------------------------------------------------ */

static uint64_t pattern_fnv(uint64_t n)
{
    uint64_t h = FNV_INIT;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char b = pat(i);
        h = fnv(h, &b, 1);
    }
    return h;
}

static uint64_t g_total[4];

/* A chunked response, then a request pipelined behind it in the same write. */
static void cl_stream_pipelined(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /stream?n=100000&size=1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /stream?n=5000&size=700 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /after HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    CL_CHECK(f, cl_read_chunked(&c, &g_total[0], 0) == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    CL_CHECK(f, cl_read_chunked(&c, &g_total[1], 0) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_stream_response_chunked_pipelined(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_stream_pipelined);
    fx_finish(&f);
    assert_int_equal(f.n_got, 3);
    assert_int_equal(f.status[0], 200);
    assert_non_null(strstr(f.got[0], "\r\nTransfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(f.got[0], "\r\nConnection: keep-alive\r\n"));
    assert_non_null(strstr(f.got[0], "\r\nContent-Type: application/octet-stream\r\n"));
    assert_null(strstr(f.got[0], "Content-Length"));
    assert_int_equal(g_total[0], 100000);
    assert_int_equal(g_total[1], 5000);
    assert_string_equal(body_of(f.got[2]), "GET /after q=- x=-");
    assert_int_equal(f.srv.stats.streamed_responses, 2);
    assert_int_equal(f.srv.stats.requests, 3);
    assert_int_equal(f.prod.end_rc, ENT_OK);
    assert_true(f.prod.done);
}

/* 8 MiB to a reader that takes 16 KiB at a time with a small receive buffer. */
static void cl_stream_slow(struct fx *f)
{
    struct cl c = {.maxread = 16384, .rcvbuf = 32768};
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /stream?n=8388608&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    CL_CHECK(f, cl_read_chunked(&c, &g_total[0], 200) == 0);
    cl_close(&c);
}

static void test_http_stream_response_backpressure(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_high_water = 131072};
    fx_run(&f, &cfg, cl_stream_slow);
    fx_finish(&f);
    assert_int_equal(f.status[0], 200);
    assert_int_equal(g_total[0], 8388608);
    assert_true(f.prod.done);
    /* The producer was told to wait, and resumed on drain ... */
    assert_true(f.prod.saturated > 0);
    assert_true(f.prod.drains > 0);
    /* ... so the queue never held much more than the mark plus one chunk. */
    assert_true(f.srv.stats.out_queued_max <= 131072 + 65536 + 64);
}

static void cl_stream_http10(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /stream?n=300000&size=4000 HTTP/1.0\r\n\r\n") == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    uint64_t pos = 0;
    for (;;) {
        if (c.len == 0) {
            ssize_t n = cl_fill(&c);
            CL_CHECK(f, n >= 0);
            if (n == 0)
                break; /* the end of the body is the end of the connection */
        }
        CL_CHECK(f, cl_take_pattern(&c, &pos, c.len) > 0);
    }
    g_total[0] = pos;
    cl_close(&c);
}

static void test_http_stream_response_http10_close_delimited(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_stream_http10);
    fx_finish(&f);
    assert_int_equal(f.status[0], 200);
    assert_null(strstr(f.got[0], "Transfer-Encoding"));
    assert_null(strstr(f.got[0], "Content-Length"));
    assert_non_null(strstr(f.got[0], "\r\nConnection: close\r\n"));
    assert_int_equal(g_total[0], 300000);
}

/* Reads a little of a 64 MiB stream, then hangs up. */
static void cl_stream_gone(struct fx *f)
{
    struct cl c = {.rcvbuf = 32768};
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /stream?n=67108864&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    CL_CHECK(f, cl_fill(&c) > 0);
    cl_close(&c);
}

static void test_http_stream_response_client_gone(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_stream_gone);
    f.server_done = false; /* until on_abort */
    fx_finish(&f);
    assert_true(f.prod.aborted);
    assert_int_equal(f.prod.abort_why, ENT_ECLOSED);
    assert_false(f.prod.done);
    assert_true(f.prod.sent < f.prod.total);
    assert_int_equal(f.srv.stats.client_gone, 1);
    assert_int_equal(ent_http_server_inflight(&f.srv), 0);
}

/* 32 MiB with Content-Length to a consumer that pauses every 4th piece, then 3 MiB chunked
 * in odd sizes to a fast one, then a plain request on the same connection. */
static void cl_upload(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    uint64_t n = (f->cctx != NULL ? 4u : 32u) << 20;
    char head[128];
    snprintf(head, sizeof(head),
             "POST /up-slow HTTP/1.1\r\nHost: x\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    CL_CHECK(f, cl_send(&c, head) == 0);
    CL_CHECK(f, cl_send_pattern(&c, 0, n) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") ==
                    0);
    uint64_t off = 0, total = 3u << 20;
    size_t step = 1000;
    while (off < total) {
        size_t k = off + step > total ? (size_t)(total - off) : step;
        char hex[32];
        snprintf(hex, sizeof(hex), "%zx\r\n", k);
        CL_CHECK(f, cl_send(&c, hex) == 0);
        CL_CHECK(f, cl_send_pattern(&c, off, k) == 0);
        CL_CHECK(f, cl_send(&c, "\r\n") == 0);
        off += k;
        step = step * 3 % 70001 + 1;
    }
    CL_CHECK(f, cl_send(&c, "0\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    g_total[0] = n;
    g_total[1] = total;
    cl_close(&c);
}

static void check_upload(struct fx *f)
{
    char want[128];
    assert_true(f->n_got >= 3);
    snprintf(want, sizeof(want), "bytes=%llu sum=%llu", (unsigned long long)g_total[0],
             (unsigned long long)pattern_fnv(g_total[0]));
    assert_string_equal(body_of(f->got[0]), want);
    snprintf(want, sizeof(want), "bytes=%llu sum=%llu", (unsigned long long)g_total[1],
             (unsigned long long)pattern_fnv(g_total[1]));
    assert_string_equal(body_of(f->got[1]), want);
    assert_non_null(strstr(f->got[1], "\r\nConnection: keep-alive\r\n"));
    assert_string_equal(body_of(f->got[2]), "GET /after q=- x=-");
    assert_int_equal(f->srv.stats.streamed_requests, 2);
    /* Tens of MiB went through, but the core never held more than its parking limit plus
     * one read: the body was never buffered whole. */
    assert_true(f->srv.stats.in_buffered_max <= 200000);
    assert_true(f->upl.max_piece <= 16384);
}

static void test_http_stream_request_body_bounded(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_select = on_stream_select, .max_body = 1024};
    fx_run(&f, &cfg, cl_upload);
    fx_finish(&f);
    check_upload(&f);
    assert_int_equal(f.srv.stats.limit_errors, 0); /* max_body does not bound streams */
}

/* Results for the first bytes come back before the rest of the body is sent. */
static void cl_duplex(struct fx *f)
{
    struct cl c;
    f->set_select = true;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(
        f, cl_send(&c, "POST /duplex HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n") == 0);
    CL_CHECK(f, cl_send_pattern(&c, 0, 100000) == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    /* Read the echo of the first 100000 bytes while 900000 are still unsent. */
    uint64_t pos = 0;
    char line[64];
    while (pos < 100000) {
        CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0);
        uint64_t n = strtoull(line, NULL, 16);
        CL_CHECK(f, n > 0);
        while (n > 0) {
            ssize_t k = cl_take_pattern(&c, &pos, n);
            CL_CHECK(f, k > 0);
            n -= (uint64_t)k;
        }
        CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0 && line[0] == '\0');
    }
    g_total[0] = pos;
    CL_CHECK(f, cl_send_pattern(&c, 100000, 900000) == 0);
    while (pos < 1000000) {
        CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0);
        uint64_t n = strtoull(line, NULL, 16);
        CL_CHECK(f, n > 0);
        while (n > 0) {
            ssize_t k = cl_take_pattern(&c, &pos, n);
            CL_CHECK(f, k > 0);
            n -= (uint64_t)k;
        }
        CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0 && line[0] == '\0');
    }
    CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0 && strcmp(line, "0") == 0);
    CL_CHECK(f, cl_line(&c, line, sizeof(line)) == 0 && line[0] == '\0');
    g_total[1] = pos;
    CL_CHECK(f, cl_send(&c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_stream_request_duplex_early_results(void **state)
{
    (void)state;
    struct fx f = {.set_select = true};
    struct ent_http_server_cfg cfg = {0};
    fx_run(&f, &cfg, cl_duplex);
    fx_finish(&f);
    assert_int_equal(g_total[0], 100000);
    assert_int_equal(g_total[1], 1000000);
    assert_int_equal(f.n_got, 2);
    assert_string_equal(body_of(f.got[1]), "GET /after q=- x=-");
    assert_true(f.upl.ended);
}

/* An answer before the body closes the connection; a limit breaks a streamed body; a
 * client that hangs up mid-body aborts the consumer. */
static void cl_stream_limits(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f,
             cl_send(&c, "POST /up-refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n\r\n") ==
                 0);
    CL_CHECK(f, cl_send_pattern(&c, 0, 1000) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    f->eof = cl_wait_eof(&c);
    cl_close(&c);
    /* Content-Length over max_stream_body: refused before dispatch. */
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
    /* Chunked past max_stream_body: dispatched, then cut with 413. */
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") ==
                    0);
    for (int i = 0; i < 4; i++) {
        CL_CHECK(f, cl_send(&c, "8000\r\n") == 0);
        CL_CHECK(f, cl_send_pattern(&c, 0, 0x8000) == 0);
        CL_CHECK(f, cl_send(&c, "\r\n") == 0);
    }
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_stream_request_limits(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_select = on_stream_select, .max_stream_body = 100000};
    fx_run(&f, &cfg, cl_stream_limits);
    fx_finish(&f);
    assert_int_equal(f.n_got, 3);
    assert_int_equal(f.status[0], 403);
    assert_non_null(strstr(f.got[0], "\r\nConnection: close\r\n"));
    assert_true(f.eof);
    assert_int_equal(f.status[1], 413);
    assert_int_equal(f.status[2], 413);
    assert_true(f.upl.aborted);
    assert_int_equal(f.upl.abort_why, ENT_ETOOBIG);
    assert_true(f.upl.bytes <= 100000);
    assert_int_equal(f.requests, 2); /* the Content-Length one never reached the handler */
}

static void cl_upload_gone(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n") == 0);
    CL_CHECK(f, cl_send_pattern(&c, 0, 300000) == 0);
    cl_close(&c);
}

static void test_http_stream_request_client_gone(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_select = on_stream_select};
    fx_run(&f, &cfg, cl_upload_gone);
    f.server_done = false; /* until on_abort */
    fx_finish(&f);
    assert_true(f.upl.aborted);
    assert_int_equal(f.upl.abort_why, ENT_ECLOSED);
    assert_false(f.upl.ended);
    assert_true(f.upl.bytes <= 300000);
    assert_int_equal(ent_http_server_inflight(&f.srv), 0);
}

static void cl_upload_stall(struct fx *f)
{
    struct cl c;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n") == 0);
    CL_CHECK(f, cl_send_pattern(&c, 0, 10) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
}

static void test_http_stream_request_read_timeout(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_select = on_stream_select, .read_timeout_ms = 200};
    fx_run(&f, &cfg, cl_upload_stall);
    fx_finish(&f);
    assert_int_equal(f.status[0], 408);
    assert_true(f.upl.aborted);
    assert_int_equal(f.upl.abort_why, ENT_ETIMEDOUT);
    assert_int_equal(f.upl.bytes, 10);
}

/* curl as the client: a chunked download, and uploads with Content-Length (curl sends
 * Expect: 100-continue) and chunked. */
static void cl_curl(struct fx *f)
{
    char dir[32] = "/tmp/ent-http-curl-XXXXXX";
    CL_CHECK(f, mkdtemp(dir) != NULL);
    char in[64], out[64], cmd[1024];
    snprintf(in, sizeof(in), "%s/in", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    FILE *fp = fopen(in, "wb");
    CL_CHECK(f, fp != NULL);
    for (uint64_t i = 0; i < (5u << 20); i++)
        fputc(pat(i), fp);
    fclose(fp);
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 30 -o %s 'http://127.0.0.1:%d/stream?n=2000000&size=30000'", out,
             f->port);
    CL_CHECK(f, system(cmd) == 0);
    fp = fopen(out, "rb");
    CL_CHECK(f, fp != NULL);
    uint64_t n = 0;
    int ch;
    bool same = true;
    while ((ch = fgetc(fp)) != EOF)
        same = same && (unsigned char)ch == pat(n++);
    fclose(fp);
    g_total[0] = same ? n : 0;
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 30 -o %s -T %s 'http://127.0.0.1:%d/up' && "
             "curl -sS --max-time 30 -o %s.2 -H 'Transfer-Encoding: chunked' --data-binary @%s "
             "'http://127.0.0.1:%d/up'",
             out, in, f->port, out, in, f->port);
    CL_CHECK(f, system(cmd) == 0);
    char buf[128] = "";
    fp = fopen(out, "rb");
    CL_CHECK(f, fp != NULL);
    size_t r = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[r] = '\0';
    fclose(fp);
    snprintf(f->got[0], sizeof(f->got[0]), "%s", buf);
    snprintf(cmd, sizeof(cmd), "%s.2", out);
    fp = fopen(cmd, "rb");
    CL_CHECK(f, fp != NULL);
    r = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[r] = '\0';
    fclose(fp);
    snprintf(f->got[1], sizeof(f->got[1]), "%s", buf);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CL_CHECK(f, system(cmd) == 0);
}

static void test_http_stream_curl(void **state)
{
    (void)state;
    struct fx f = {0};
    struct ent_http_server_cfg cfg = {.stream_select = on_stream_select};
    fx_run(&f, &cfg, cl_curl);
    fx_finish(&f);
    assert_int_equal(g_total[0], 2000000);
    char want[128];
    snprintf(want, sizeof(want), "bytes=%llu sum=%llu", 5ull << 20,
             (unsigned long long)pattern_fnv(5u << 20));
    assert_string_equal(f.got[0], want);
    assert_string_equal(f.got[1], want);
    assert_int_equal(f.srv.stats.streamed_requests, 2);
}

/* ---- TLS ------------------------------------------------------------------------------ */

static void cl_tls(struct fx *f)
{
    struct cl c;
    if (f->tls_max != 0)
        SSL_CTX_set_max_proto_version(f->cctx, f->tls_max);
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /tls?x HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f,
             cl_send(&c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\n\r\n") == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    CL_CHECK(f, cl_response(f, &c) == 0);
    cl_close(&c);
    /* Not TLS at all: the handshake fails and the connection closes. */
    SSL_CTX *keep = f->cctx;
    f->cctx = NULL;
    CL_CHECK(f, cl_connect(f, &c) == 0);
    f->cctx = keep;
    CL_CHECK(f, cl_send(&c, "GET / HTTP/1.1\r\n\r\n") == 0);
    char junk[256];
    while (recv(c.fd, junk, sizeof(junk), 0) > 0)
        ;
    cl_close(&c);
}

/* reload: the server starts with one certificate and is switched to a second one, which
 * is the only one the client trusts. */
static void run_tls(int max_version, int want_version, bool reload)
{
    struct ent_test_cert tc, tc2;
    assert_int_equal(ent_test_cert_make(&tc), 0);
    assert_int_equal(ent_test_cert_make(&tc2), 0);
    char err[256] = "";
    SSL_CTX *sctx = NULL, *sctx2 = NULL;
    ent_err rc = ent_tls_server_ctx_new(&sctx, tc.cert_file, tc.key_file, NULL, err, sizeof(err));
    if (rc != ENT_OK)
        fail_msg("server ctx: %s", err);
    rc = ent_tls_server_ctx_new(&sctx2, tc2.cert_file, tc2.key_file, NULL, err, sizeof(err));
    if (rc != ENT_OK)
        fail_msg("server ctx: %s", err);
    struct fx f = {0};
    rc = ent_tls_client_ctx_new(&f.cctx, reload ? tc2.cert_file : tc.cert_file, NULL, NULL, err,
                                sizeof(err));
    if (rc != ENT_OK)
        fail_msg("client ctx: %s", err);
    f.tls_max = max_version;
    f.reload = reload ? sctx2 : NULL;
    struct ent_http_server_cfg cfg = {.tls = sctx};
    fx_run(&f, &cfg, cl_tls);
    SSL_CTX_free(sctx); /* the server holds its own reference */
    SSL_CTX_free(sctx2);
    fx_finish(&f);
    SSL_CTX_free(f.cctx);
    ent_test_cert_remove(&tc);
    ent_test_cert_remove(&tc2);
    assert_int_equal(f.tls_version, want_version);
    assert_int_equal(f.n_got, 3);
    assert_string_equal(body_of(f.got[0]), "GET /tls q=x x=-");
    assert_string_equal(body_of(f.got[1]), "slow");
    assert_string_equal(body_of(f.got[2]), "GET /after q=- x=-");
    assert_int_equal(f.srv.stats.tls_handshake_errors, 1);
}

static void test_http_tls13_request(void **state)
{
    (void)state;
    run_tls(0, TLS1_3_VERSION, false);
}

static void test_http_tls12_request(void **state)
{
    (void)state;
    run_tls(TLS1_2_VERSION, TLS1_2_VERSION, false);
}

static void test_http_tls_reload_uses_new_cert(void **state)
{
    (void)state;
    run_tls(0, TLS1_3_VERSION, true);
}

/* The upload test and a 2 MiB streamed response over TLS. */
static void cl_tls_stream(struct fx *f)
{
    cl_upload(f);
    if (f->fail[0] != '\0')
        return;
    struct cl c = {.maxread = 16384};
    CL_CHECK(f, cl_connect(f, &c) == 0);
    CL_CHECK(f, cl_send(&c, "GET /stream?n=2097152&size=50000 HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CL_CHECK(f, cl_head(f, &c) == 0);
    CL_CHECK(f, cl_read_chunked(&c, &g_total[2], 0) == 0);
    cl_close(&c);
}

static void test_http_tls_stream(void **state)
{
    (void)state;
    struct ent_test_cert tc;
    assert_int_equal(ent_test_cert_make(&tc), 0);
    char err[256] = "";
    SSL_CTX *sctx = NULL;
    ent_err rc = ent_tls_server_ctx_new(&sctx, tc.cert_file, tc.key_file, NULL, err, sizeof(err));
    if (rc != ENT_OK)
        fail_msg("server ctx: %s", err);
    struct fx f = {0};
    rc = ent_tls_client_ctx_new(&f.cctx, tc.cert_file, NULL, NULL, err, sizeof(err));
    if (rc != ENT_OK)
        fail_msg("client ctx: %s", err);
    struct ent_http_server_cfg cfg = {.tls = sctx, .stream_select = on_stream_select};
    fx_run(&f, &cfg, cl_tls_stream);
    SSL_CTX_free(sctx);
    fx_finish(&f);
    SSL_CTX_free(f.cctx);
    ent_test_cert_remove(&tc);
    check_upload(&f);
    assert_int_equal(f.n_got, 4);
    assert_int_equal(g_total[2], 2097152);
}

static void test_tls_ctx_rejects_missing_files(void **state)
{
    (void)state;
    char err[256] = "";
    SSL_CTX *ctx = NULL;
    assert_int_equal(ent_tls_server_ctx_new(&ctx, "/nonexistent/c.pem", "/nonexistent/k.pem", NULL,
                                            err, sizeof(err)),
                     ENT_ETLS);
    assert_null(ctx);
    assert_true(strlen(err) > 0);
}

int main(void)
{
    ent_log_init("test", ENT_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_simple_get),
        cmocka_unit_test(test_http_keep_alive),
        cmocka_unit_test(test_http_pipelined_in_order),
        cmocka_unit_test(test_http_pipelined_burst_in_order),
        cmocka_unit_test(test_http_header_too_large_431),
        cmocka_unit_test(test_http_body_too_large_413),
        cmocka_unit_test(test_http_url_too_long_414),
        cmocka_unit_test(test_http_chunked_body_reassembled),
        cmocka_unit_test(test_http_malformed_400),
        cmocka_unit_test(test_http_slow_client_408),
        cmocka_unit_test(test_http_idle_keep_alive_closed),
        cmocka_unit_test(test_http_stop_accepting_drains),
        cmocka_unit_test(test_http_respond_after_disconnect_enotfound),
        cmocka_unit_test(test_http_max_connections_rejects),
        cmocka_unit_test(test_http_init_rejects_bad_listen),
        cmocka_unit_test(test_http_tls13_request),
        cmocka_unit_test(test_http_tls12_request),
        cmocka_unit_test(test_http_tls_reload_uses_new_cert),
        cmocka_unit_test(test_tls_ctx_rejects_missing_files),
        cmocka_unit_test(test_http_stream_response_chunked_pipelined),
        cmocka_unit_test(test_http_stream_response_backpressure),
        cmocka_unit_test(test_http_stream_response_http10_close_delimited),
        cmocka_unit_test(test_http_stream_response_client_gone),
        cmocka_unit_test(test_http_stream_request_body_bounded),
        cmocka_unit_test(test_http_stream_request_duplex_early_results),
        cmocka_unit_test(test_http_stream_request_limits),
        cmocka_unit_test(test_http_stream_request_client_gone),
        cmocka_unit_test(test_http_stream_request_read_timeout),
        cmocka_unit_test(test_http_stream_curl),
        cmocka_unit_test(test_http_tls_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
