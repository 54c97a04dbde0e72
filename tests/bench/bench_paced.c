/* SPDX-License-Identifier: Apache-2.0 */
/* bench_paced: an open-loop, constant-rate HTTPS/1.1 keep-alive client, for
 * tests/bench/gateway_vs_nginx.sh to measure latency at a fixed offered rate. Request i is due
 * at t0 + i/rate whatever happened to the ones before it. It leaves on the oldest idle
 * connection or, when none is idle, waits in a FIFO backlog; its latency runs from its due
 * time to the last byte of its response, so a server that stalls is charged for the requests
 * it held up (no coordinated omission). One thread and epoll: epoll_pwait2() with a
 * nanosecond timeout and 1 ns timer slack (a timerfd with absolute deadlines on kernels
 * without it), so requests leave one by one and not in bursts per millisecond tick as wrk's
 * timers release them. TLS 1.3 handshakes and one unmeasured request per connection happen
 * before t0. Responses need a Content-Length (no chunked bodies, no pipelining).
 *
 * Prints the achieved rate, errors, the largest backlog (requests due while every connection
 * waited for an answer), the client's own lateness (due time -> the loop saw it) and the
 * latency distribution (log-linear histogram in ns, < 0.8 % relative error). Exits 0 when it
 * measured, 1 when no connection could be opened, 2 on bad arguments.
 *
 *   bench_paced [--cacert FILE | --insecure] [-H 'Name: value'] [--rate N] [--duration S]
 *               [--connections N] [--busy-poll] HOST PORT PATH
 *
 * --busy-poll spins on epoll with a zero timeout instead of sleeping: on a VM, a vCPU that
 * halted takes tens of µs (sometimes a millisecond) to wake, and without it the client's
 * CPU pays that on every request it sends and every response it reads. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define NS_PER_S    UINT64_C(1000000000)
#define RESP_MAX    (64 * 1024) /* headers + body of one response */
#define SETUP_NS    (5 * NS_PER_S)
#define DRAIN_NS    (2 * NS_PER_S)
#define MAX_EVENTS  64
#define HIST_BITS   8 /* 2^8 sub-buckets per power of two: relative error < 1/128 */
#define HIST_SUB    (1u << HIST_BITS)
#define HIST_HALF   (HIST_SUB / 2)
#define HIST_TOPBIT 40 /* values from 2^41 ns (~37 min) on share the last bucket */
#define HIST_LEN    (HIST_SUB + (HIST_TOPBIT - HIST_BITS + 1) * HIST_HALF)

/* Log-linear histogram of nanoseconds, as HdrHistogram lays it out: exact below 2^HIST_BITS,
 * then HIST_HALF buckets per power of two. */
struct hist {
    uint64_t count[HIST_LEN];
    uint64_t n, max;
};

enum conn_state { CONN_IDLE, CONN_BUSY, CONN_DEAD };

struct conn {
    int fd;
    SSL *ssl;
    enum conn_state state;
    bool want_write; /* the request is not written yet: retry when the socket allows */
    uint64_t due;    /* when the request in flight was due */
    size_t len;      /* response bytes in buf */
    char buf[RESP_MAX];
};

struct bench {
    int ep, tfd; /* tfd >= 0: no epoll_pwait2, wait on this timerfd instead */
    SSL_CTX *ctx;
    const char *host;
    struct addrinfo *ai;
    char req[8192];
    size_t req_len;
    struct conn *conns;
    size_t nconns, live, inflight;
    size_t *idle; /* FIFO ring of idle connections; dead ones are skipped on pop */
    size_t idle_head, idle_len;
    bool measuring;
    bool busy_poll; /* never sleep: the client's CPU stays awake and wake-ups cost nothing */
    uint64_t ok, non200, failed, conn_errors, last_done;
    struct hist lat, lag;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static size_t hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    if (msb > HIST_TOPBIT) {
        msb = HIST_TOPBIT;
        v = (UINT64_C(1) << (HIST_TOPBIT + 1)) - 1;
    }
    int shift = msb - (HIST_BITS - 1); /* >= 1; v >> shift keeps HIST_BITS bits */
    uint64_t sub = (v >> shift) - HIST_HALF;
    return HIST_SUB + (size_t)(shift - 1) * HIST_HALF + (size_t)sub;
}

/* The highest value that lands in bucket i. */
static uint64_t hist_top(size_t i)
{
    if (i < HIST_SUB)
        return i;
    size_t k = i - HIST_SUB;
    int shift = (int)(k / HIST_HALF) + 1;
    uint64_t sub = k % HIST_HALF + HIST_HALF;
    return ((sub + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* The value at or below which pct % of the samples lie (bucket top, at most the maximum). */
static uint64_t hist_pct(const struct hist *h, double pct)
{
    uint64_t want = (uint64_t)((double)h->n * pct / 100.0 + 0.999999);
    uint64_t seen = 0;
    if (want == 0)
        want = 1;
    for (size_t i = 0; i < HIST_LEN; i++) {
        seen += h->count[i];
        if (seen >= want)
            return hist_top(i) < h->max ? hist_top(i) : h->max;
    }
    return h->max;
}

static void hist_print(const struct hist *h, const char *label, bool full)
{
    if (h->n == 0) {
        printf("%s: no samples\n", label);
        return;
    }
    if (full)
        printf("%s: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", label,
               hist_pct(h, 50) / 1e6, hist_pct(h, 90) / 1e6, hist_pct(h, 99) / 1e6,
               hist_pct(h, 99.9) / 1e6, h->max / 1e6);
    else
        printf("%s: p50 %.3f  p99 %.3f  max %.3f\n", label, hist_pct(h, 50) / 1e6,
               hist_pct(h, 99) / 1e6, h->max / 1e6);
}

/* Parses the response in buf: 1 when complete (*status, *size = header and body bytes), 0 when
 * more bytes are needed, -1 when it is not an HTTP/1.x response with a Content-Length. */
static int resp_parse(const char *buf, size_t len, int *status, size_t *size)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    long long body = -1;
    /* Every line ends with a '\n' at or before end + 1, the status line's included. */
    const char *p = (const char *)memchr(buf, '\n', (size_t)(end + 2 - buf)) + 1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end + 2 - p));
        if (strncasecmp(p, "content-length:", 15) == 0)
            body = strtoll(p + 15, NULL, 10);
        else if (strncasecmp(p, "transfer-encoding:", 18) == 0)
            return -1;
        p = eol + 1;
    }
    if (body < 0)
        return -1;
    *size = (size_t)(end + 4 - buf) + (size_t)body;
    return len >= *size ? 1 : 0;
}

static void conn_watch(struct bench *b, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(b->ep, op, c->fd, &ev) != 0)
        perror("bench_paced: epoll_ctl");
}

/* A connection that failed is closed for good; its request in flight counts as failed. */
static void conn_fail(struct bench *b, struct conn *c)
{
    if (c->state == CONN_BUSY) {
        b->inflight--;
        if (b->measuring)
            b->failed++;
    }
    if (b->measuring)
        b->conn_errors++;
    c->state = CONN_DEAD;
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    b->live--;
}

static void conn_write(struct bench *b, struct conn *c)
{
    ERR_clear_error();
    int n = SSL_write(c->ssl, b->req, (int)b->req_len);
    if (n > 0) {
        if (c->want_write)
            conn_watch(b, c, EPOLLIN, EPOLL_CTL_MOD);
        c->want_write = false;
        return;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
        conn_fail(b, c);
        return;
    }
    if (!c->want_write)
        conn_watch(b, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    c->want_write = true;
}

static void conn_send(struct bench *b, struct conn *c, uint64_t due)
{
    c->state = CONN_BUSY;
    c->due = due;
    c->len = 0;
    b->inflight++;
    conn_write(b, c);
}

static void idle_push(struct bench *b, struct conn *c)
{
    b->idle[(b->idle_head + b->idle_len) % b->nconns] = (size_t)(c - b->conns);
    b->idle_len++;
}

static struct conn *idle_pop(struct bench *b)
{
    while (b->idle_len > 0) {
        struct conn *c = &b->conns[b->idle[b->idle_head]];
        b->idle_head = (b->idle_head + 1) % b->nconns;
        b->idle_len--;
        if (c->state == CONN_IDLE)
            return c;
    }
    return NULL;
}

static void conn_done(struct bench *b, struct conn *c, int status)
{
    uint64_t t = now_ns();
    if (b->measuring) {
        hist_add(&b->lat, t - c->due);
        if (status == 200)
            b->ok++;
        else
            b->non200++;
        b->last_done = t;
    }
    c->state = CONN_IDLE;
    c->len = 0;
    b->inflight--;
    idle_push(b, c);
}

/* Reads until the socket is empty; completes the response in flight, if it is all there. */
static void conn_read(struct bench *b, struct conn *c)
{
    for (;;) {
        if (c->len == sizeof(c->buf)) {
            conn_fail(b, c);
            return;
        }
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
        if (n <= 0) {
            if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ)
                conn_fail(b, c);
            return;
        }
        if (c->state != CONN_BUSY) { /* nothing asked: the server is closing or confused */
            conn_fail(b, c);
            return;
        }
        c->len += (size_t)n;
        int status = 0;
        size_t size = 0;
        int r = resp_parse(c->buf, c->len, &status, &size);
        if (r < 0 || (r == 1 && size != c->len)) {
            conn_fail(b, c);
            return;
        }
        if (r == 1) {
            conn_done(b, c, status);
            if (!SSL_has_pending(c->ssl)) /* spare the read that would say EAGAIN */
                return;
        }
    }
}

static void conn_on_event(struct bench *b, struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->want_write)
        conn_write(b, c);
    if (c->state != CONN_DEAD && !c->want_write)
        conn_read(b, c);
}

/* Waits for events until deadline (monotonic ns); returns the number of events or -1. */
static int wait_events(struct bench *b, struct epoll_event *ev, uint64_t deadline)
{
    if (b->tfd < 0) {
        uint64_t now = now_ns();
        uint64_t left = deadline > now && !b->busy_poll ? deadline - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(left / NS_PER_S),
                              .tv_nsec = (long)(left % NS_PER_S)};
        int n = epoll_pwait2(b->ep, ev, MAX_EVENTS, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
        if (b->tfd < 0 || epoll_ctl(b->ep, EPOLL_CTL_ADD, b->tfd, &tev) != 0)
            return -1;
    }
    if (b->busy_poll)
        deadline = 1; /* long past: fires at once */
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(deadline / NS_PER_S),
                                          .tv_nsec = (long)(deadline % NS_PER_S)}};
    if (timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        return -1;
    return epoll_wait(b->ep, ev, MAX_EVENTS, -1);
}

static int poll_events(struct bench *b, uint64_t deadline)
{
    struct epoll_event ev[MAX_EVENTS];
    int n = wait_events(b, ev, deadline);
    if (n < 0 && errno != EINTR) {
        perror("bench_paced: epoll");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (ev[i].data.ptr == NULL) {
            uint64_t ticks;
            if (read(b->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                return -1;
            continue;
        }
        conn_on_event(b, ev[i].data.ptr);
    }
    return 0;
}

/* Connects and completes the TLS handshake, waiting with poll(); 0 or -1. */
static int conn_open(struct bench *b, struct conn *c)
{
    uint64_t deadline = now_ns() + SETUP_NS;
    int one = 1;
    c->fd = socket(b->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, b->ai->ai_addr, b->ai->ai_addrlen) != 0 && errno != EINPROGRESS)
        return -1;
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    int err = 0;
    socklen_t elen = sizeof(err);
    if (poll(&pfd, 1, (int)(SETUP_NS / 1000000)) != 1 ||
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
        return -1;
    c->ssl = SSL_new(b->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return -1;
    struct in6_addr ip;
    if (inet_pton(AF_INET, b->host, &ip) == 1 || inet_pton(AF_INET6, b->host, &ip) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), b->host) != 1)
            return -1;
    } else if (SSL_set_tlsext_host_name(c->ssl, b->host) != 1 ||
               SSL_set1_host(c->ssl, b->host) != 1) {
        return -1;
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            ERR_print_errors_fp(stderr);
            return -1;
        }
        pfd.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        uint64_t now = now_ns();
        if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / 1000000) + 1) != 1)
            return -1;
    }
}

/* Sends request after request at `rate` for `total` requests, then waits for the last
 * answers (DRAIN_NS at most). Returns the time of t0. */
static uint64_t run(struct bench *b, uint64_t rate, uint64_t total, uint64_t *backlog_max)
{
    uint64_t t0 = now_ns() + 1000000, due_n = 0, sent = 0, drain_end = 0;
    *backlog_max = 0;
    while (b->live > 0) {
        uint64_t now = now_ns();
        /* The client's own lateness: how long after its due time the loop saw a request. */
        while (due_n < total && t0 + due_n * NS_PER_S / rate <= now) {
            hist_add(&b->lag, now - (t0 + due_n * NS_PER_S / rate));
            due_n++;
        }
        struct conn *c;
        while (sent < due_n && (c = idle_pop(b)) != NULL) {
            conn_send(b, c, t0 + sent * NS_PER_S / rate);
            sent++;
        }
        if (due_n - sent > *backlog_max)
            *backlog_max = due_n - sent;
        if (due_n == total) {
            if (drain_end == 0)
                drain_end = now + DRAIN_NS;
            if ((sent == total && b->inflight == 0) || now >= drain_end)
                break;
        }
        uint64_t deadline = due_n < total ? t0 + due_n * NS_PER_S / rate : drain_end;
        if (poll_events(b, deadline) != 0)
            break;
    }
    return t0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_paced [--cacert FILE | --insecure] [-H 'Name: value'] "
                    "[--rate N] [--duration S] [--connections N] [--busy-poll] HOST PORT PATH\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cacert", required_argument, NULL, 'c'},   {"insecure", no_argument, NULL, 'k'},
        {"header", required_argument, NULL, 'H'},   {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'}, {"connections", required_argument, NULL, 'n'},
        {"busy-poll", no_argument, NULL, 'b'},      {NULL, 0, NULL, 0}};
    const char *cacert = NULL, *header = NULL;
    bool insecure = false, busy_poll = false;
    double duration = 5;
    long long rate = 1000, nconns = 32;
    int o;
    while ((o = getopt_long(argc, argv, "c:kH:r:d:n:b", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            cacert = optarg;
            break;
        case 'k':
            insecure = true;
            break;
        case 'H':
            header = optarg;
            break;
        case 'r':
            rate = atoll(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'n':
            nconns = atoll(optarg);
            break;
        case 'b':
            busy_poll = true;
            break;
        default:
            usage();
            return 2;
        }
    }
    /* rate * duration <= 10^9 keeps i * 10^9 (ns) within 64 bits in run(). */
    if (argc - optind != 3 || rate <= 0 || rate > 10000000 || duration <= 0 || duration > 3600 ||
        (double)rate * duration > 1e9 || nconns <= 0 || nconns > 65536 ||
        (cacert == NULL) == !insecure ||
        (header != NULL && (strchr(header, ':') == NULL || strpbrk(header, "\r\n") != NULL))) {
        usage();
        return 2;
    }
    const char *host = argv[optind], *port = argv[optind + 1], *path = argv[optind + 2];

    struct bench *b = calloc(1, sizeof(*b));
    int rc = 1;
    if (b == NULL)
        return 1;
    b->ep = -1;
    b->tfd = -1;
    b->host = host;
    b->busy_poll = busy_poll;
    int n = snprintf(b->req, sizeof(b->req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n%s%s\r\n", path,
                     host, port, header ? header : "", header ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(b->req)) {
        fprintf(stderr, "bench_paced: request too long\n");
        free(b);
        return 2;
    }
    b->req_len = (size_t)n;
    signal(SIGPIPE, SIG_IGN);
    /* 1 ns of timer slack instead of 50 µs: wake-ups land when asked, not up to 50 µs late. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    int gai = getaddrinfo(host, port, &hints, &b->ai);
    if (gai != 0) {
        fprintf(stderr, "bench_paced: %s:%s: %s\n", host, port, gai_strerror(gai));
        goto out;
    }
    b->ctx = SSL_CTX_new(TLS_client_method());
    if (b->ctx == NULL || SSL_CTX_set_min_proto_version(b->ctx, TLS1_3_VERSION) != 1 ||
        (cacert && SSL_CTX_load_verify_locations(b->ctx, cacert, NULL) != 1)) {
        ERR_print_errors_fp(stderr);
        goto out;
    }
    SSL_CTX_set_verify(b->ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    b->nconns = (size_t)nconns;
    b->conns = calloc(b->nconns, sizeof(*b->conns));
    b->idle = calloc(b->nconns, sizeof(*b->idle));
    if (b->ep < 0 || b->conns == NULL || b->idle == NULL)
        goto out;
    for (size_t i = 0; i < b->nconns; i++) {
        b->conns[i].fd = -1;
        b->conns[i].state = CONN_DEAD;
    }

    /* Handshakes and one request per connection, before t0 and unmeasured. */
    for (size_t i = 0; i < b->nconns; i++) {
        struct conn *c = &b->conns[i];
        if (conn_open(b, c) != 0) {
            fprintf(stderr, "bench_paced: connection %zu to %s:%s failed\n", i, host, port);
            SSL_free(c->ssl);
            if (c->fd >= 0)
                close(c->fd);
            c->ssl = NULL;
            c->fd = -1;
            c->state = CONN_DEAD;
            continue;
        }
        b->live++;
        conn_watch(b, c, EPOLLIN, EPOLL_CTL_ADD);
        conn_send(b, c, now_ns());
    }
    uint64_t setup_end = now_ns() + SETUP_NS;
    while (b->inflight > 0 && now_ns() < setup_end)
        if (poll_events(b, setup_end) != 0)
            break;
    if (b->live == 0 || b->inflight > 0) {
        fprintf(stderr, "bench_paced: %s:%s did not answer on every connection\n", host, port);
        goto out;
    }
    size_t opened = b->live;

    uint64_t total = (uint64_t)((double)rate * duration + 0.5), backlog_max;
    b->measuring = true;
    uint64_t t0 = run(b, (uint64_t)rate, total, &backlog_max);
    uint64_t done = b->ok + b->non200;
    double span = (double)(b->last_done > t0 ? b->last_done - t0 : 0) / 1e9;
    if (span < duration)
        span = duration;
    printf("https://%s:%s, %zu connections, %lld req/s offered for %.2f s (%llu requests)\n", host,
           port, opened, rate, duration, (unsigned long long)total);
    printf("achieved requests/sec: %.1f\n", (double)done / span);
    printf("errors: non-200 %llu, failed %llu, unanswered %llu, connection errors %llu; "
           "backlog max %llu\n",
           (unsigned long long)b->non200, (unsigned long long)b->failed,
           (unsigned long long)(total - done - b->failed), (unsigned long long)b->conn_errors,
           (unsigned long long)backlog_max);
    hist_print(&b->lag, "client wake-up lag ms (due -> seen)", false);
    hist_print(&b->lat, "latency ms (due -> response complete)", true);
    rc = 0;
out:
    for (size_t i = 0; b->conns != NULL && i < b->nconns; i++) {
        if (b->conns[i].state != CONN_DEAD) {
            SSL_free(b->conns[i].ssl);
            close(b->conns[i].fd);
        }
    }
    free(b->conns);
    free(b->idle);
    if (b->tfd >= 0)
        close(b->tfd);
    if (b->ep >= 0)
        close(b->ep);
    SSL_CTX_free(b->ctx);
    if (b->ai != NULL)
        freeaddrinfo(b->ai);
    free(b);
    return rc;
}
