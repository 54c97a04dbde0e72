/* SPDX-License-Identifier: Apache-2.0 */
/* The libcurl multi handle on the libuv loop (see http_client.h). curl tells us which sockets
 * to watch (on_curl_socket) and when to wake it (on_curl_timer); we answer with
 * curl_multi_socket_action() from a uv_poll_t or the uv_timer_t and then collect finished
 * transfers (http_collect_done). Nothing here blocks: DNS uses curl's threaded resolver. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ent/log.h"
#include "http_client.h"

struct notifyd_http_conn {
    uv_poll_t poll;
    curl_socket_t fd;
    struct notifyd_http *h;
    struct notifyd_http_conn *prev, *next;
};

struct notifyd_http_xfer {
    struct notifyd_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct ent_buf resp;
    bool too_big;
    notifyd_http_cb cb;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];
    struct notifyd_http_xfer *prev, *next;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void http_maybe_closed(struct notifyd_http *h)
{
    if (h->closing && h->closing_handles == 0 && h->closed_cb) {
        void (*cb)(struct notifyd_http *) = h->closed_cb;
        h->closed_cb = NULL;
        cb(h);
    }
}

static void on_conn_closed(uv_handle_t *handle)
{
    struct notifyd_http_conn *c = ENT_CONTAINER_OF(handle, struct notifyd_http_conn, poll);
    struct notifyd_http *h = c->h;
    free(c);
    h->closing_handles--;
    http_maybe_closed(h);
}

static void conn_release(struct notifyd_http_conn *c)
{
    struct notifyd_http *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->sockets = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_poll_stop(&c->poll);
    h->closing_handles++;
    uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

static ent_err curl_code_to_err(CURLcode rc, bool too_big)
{
    switch (rc) {
    case CURLE_OK:
        return ENT_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return ENT_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ENT_EUNAVAIL;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        return ENT_ETLS;
    case CURLE_WRITE_ERROR:
        return too_big ? ENT_ETOOBIG : ENT_EIO;
    case CURLE_OUT_OF_MEMORY:
        return ENT_ENOMEM;
    default:
        return ENT_EIO;
    }
}

static void xfer_unlink(struct notifyd_http_xfer *x)
{
    struct notifyd_http *h = x->h;
    if (x->prev)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    h->inflight--;
}

static void xfer_free(struct notifyd_http_xfer *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    ent_buf_free(&x->resp);
    free(x);
}

/* Removes x from the multi handle and the list, tells its owner, then frees it. */
static void xfer_finish(struct notifyd_http_xfer *x, CURLcode rc, ent_err forced)
{
    struct notifyd_http *h = x->h;
    struct notifyd_http_resp r = {.err = forced, .retry_after_ms = -1, .err_text = ""};
    curl_multi_remove_handle(h->multi, x->easy);
    xfer_unlink(x);
    if (forced == ENT_OK) {
        r.err = curl_code_to_err(rc, x->too_big);
        if (r.err == ENT_OK) {
            curl_off_t ra = 0;
            curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
            if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
                r.retry_after_ms = (int64_t)ra * 1000;
        } else {
            r.err_text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
        }
    } else {
        r.err_text = "client closing";
    }
    r.body = x->resp.data ? x->resp.data : "";
    r.body_len = x->resp.len;
    x->cb(&r, x->ud);
    xfer_free(x);
}

static void http_collect_done(struct notifyd_http *h)
{
    CURLMsg *msg;
    int left = 0;
    for (;;) {
        msg = curl_multi_info_read(h->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct notifyd_http_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = msg->data.result;
        xfer_finish(x, rc, ENT_OK);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct notifyd_http_conn *c = ENT_CONTAINER_OF(p, struct notifyd_http_conn, poll);
    struct notifyd_http *h = c->h;
    int flags = 0;
    int running = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, c->fd, flags, &running);
    http_collect_done(h);
}

static void on_timer(uv_timer_t *t)
{
    struct notifyd_http *h = ENT_CONTAINER_OF(t, struct notifyd_http, timer);
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_collect_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct notifyd_http *h = userp;
    struct notifyd_http_conn *c = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(h->multi, s, NULL);
            conn_release(c);
        }
        return 0;
    }
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return -1;
        if (uv_poll_init_socket(h->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->fd = s;
        c->h = h;
        c->next = h->sockets;
        if (h->sockets)
            h->sockets->prev = c;
        h->sockets = c;
        curl_multi_assign(h->multi, s, c);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&c->poll, events, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl may not be re-entered from here, so a 0 timeout becomes a
 * timer that fires on the next loop iteration. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct notifyd_http *h = userp;
    (void)multi;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

ent_err notifyd_http_init(struct notifyd_http *h, uv_loop_t *loop, long max_host_conns)
{
    memset(h, 0, sizeof(*h));
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return ENT_EINTERNAL;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi)
        return ENT_ENOMEM;
    CURLMcode mc = CURLM_OK;
    mc |= curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    mc |= curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    mc |= curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    mc |= curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    mc |= curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (max_host_conns > 0)
        mc |= curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_conns);
    if (mc != CURLM_OK) {
        curl_multi_cleanup(h->multi);
        return ENT_EINTERNAL;
    }
    uv_timer_init(loop, &h->timer);
    return ENT_OK;
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct notifyd_http_xfer *x = ud;
    size_t n = size * nmemb;
    if (ent_buf_append(&x->resp, ptr, n) != ENT_OK) {
        x->too_big = true;
        return 0;
    }
    return n;
}

static ent_err xfer_setup(struct notifyd_http_xfer *x, const struct notifyd_http_req *req)
{
    CURLcode rc = CURLE_OK;
    CURL *e = x->easy;
    for (const char *const *hp = req->headers; hp && *hp; hp++) {
        struct curl_slist *n = curl_slist_append(x->headers, *hp);
        if (!n)
            return ENT_ENOMEM;
        x->headers = n;
    }
    /* No "Expect: 100-continue" round trip for HTTP/1.1 bodies. */
    struct curl_slist *n = curl_slist_append(x->headers, "Expect:");
    if (!n)
        return ENT_ENOMEM;
    x->headers = n;
    x->body = malloc(req->body_len + 1);
    if (!x->body)
        return ENT_ENOMEM;
    if (req->body_len)
        memcpy(x->body, req->body, req->body_len);
    x->body[req->body_len] = '\0';
    rc |= curl_easy_setopt(e, CURLOPT_URL, req->url);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (req->method && strcmp(req->method, "POST") != 0)
        rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |=
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms ? req->timeout_ms : 10000));
    rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    rc |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (req->ca_file && req->ca_file[0])
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    return rc == CURLE_OK ? ENT_OK : ENT_EINTERNAL;
}

ent_err notifyd_http_post(struct notifyd_http *h, const struct notifyd_http_req *req,
                          notifyd_http_cb cb, void *ud)
{
    if (h->closing)
        return ENT_ECLOSED;
    if (!req || !req->url || !cb)
        return ENT_EINVAL;
    struct notifyd_http_xfer *x = calloc(1, sizeof(*x));
    if (!x)
        return ENT_ENOMEM;
    x->h = h;
    x->cb = cb;
    x->ud = ud;
    ent_buf_init(&x->resp, NOTIFYD_HTTP_BODY_MAX);
    x->easy = curl_easy_init();
    ent_err rc = x->easy ? xfer_setup(x, req) : ENT_ENOMEM;
    if (rc == ENT_OK && curl_multi_add_handle(h->multi, x->easy) != CURLM_OK)
        rc = ENT_ENOMEM;
    if (rc != ENT_OK) {
        if (x->easy)
            curl_easy_cleanup(x->easy);
        curl_slist_free_all(x->headers);
        free(x->body);
        ent_buf_free(&x->resp);
        free(x);
        return rc;
    }
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    h->inflight++;
    return ENT_OK;
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct notifyd_http *h = ENT_CONTAINER_OF(handle, struct notifyd_http, timer);
    h->closing_handles--;
    http_maybe_closed(h);
}

void notifyd_http_close(struct notifyd_http *h, void (*closed_cb)(struct notifyd_http *h))
{
    h->closing = true;
    h->closed_cb = closed_cb;
    while (h->xfers)
        xfer_finish(h->xfers, CURLE_OK, ENT_ECLOSED);
    /* Cleanup closes the connections, which may still call on_curl_socket(REMOVE). */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->sockets)
        conn_release(h->sockets);
    uv_timer_stop(&h->timer);
    h->closing_handles++;
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}
