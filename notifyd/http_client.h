/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd's outgoing HTTP: one libcurl multi handle driven from the daemon's libuv loop
 * (curl_multi_socket_action with a uv_poll_t per socket and one uv_timer_t), so FCM, APNs and
 * the SMS gateway share HTTP/2 connections (multiplexed, reused) without a blocking thread.
 * This file owns the multi handle, the sockets curl asks us to watch and the transfers in
 * flight; what to send and what a status means belongs to fcm.c, apns.c, sms.c and oauth.c.
 *
 * Threads: everything here runs on the loop thread. Callbacks run from libuv callbacks,
 * never from inside notifyd_http_post(). */
#ifndef NOTIFYD_HTTP_CLIENT_H
#define NOTIFYD_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

#include "ent/err.h"
#include "ent/util.h"

#define NOTIFYD_HTTP_BODY_MAX (64 * 1024)

/* The outcome of one request. err is ENT_OK when an HTTP answer arrived (any status);
 * otherwise ENT_ETIMEDOUT, ENT_EUNAVAIL (connect/DNS), ENT_ETLS, ENT_EIO, ENT_ETOOBIG (the
 * answer exceeded NOTIFYD_HTTP_BODY_MAX) or ENT_ECLOSED (client closing), and status is 0.
 * retry_after_ms is the Retry-After header (delta-seconds or HTTP date) in ms, -1 if absent.
 * body is NUL-terminated and valid only during the callback. */
struct notifyd_http_resp {
    ent_err err;
    long status;
    int64_t retry_after_ms;
    const char *body;
    size_t body_len;
    const char *err_text; /* curl's message for logs ("" when err is ENT_OK) */
};

typedef void (*notifyd_http_cb)(const struct notifyd_http_resp *r, void *ud);

struct notifyd_http_conn;
struct notifyd_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    size_t inflight;                   /* transfers added and not yet completed */
    struct notifyd_http_conn *sockets; /* polled sockets (list) */
    struct notifyd_http_xfer *xfers;   /* transfers in flight (list) */
    size_t closing_handles;            /* uv handles whose close callback is pending */
    bool closing;
    void (*closed_cb)(struct notifyd_http *h);
};

/* Loop thread. Creates the multi handle (HTTP/2 multiplexing on, at most max_host_conns
 * connections per host) and its timer. Calls curl_global_init() on first use.
 * Errors: ENT_ENOMEM, ENT_EINTERNAL (curl refused an option). On error nothing is open. */
ent_err notifyd_http_init(struct notifyd_http *h, uv_loop_t *loop, long max_host_conns);

/* One request to send. headers: NULL-terminated array of "Name: value" strings (copied).
 * ca_file: PEM bundle to verify the server with (NULL: the system store). */
struct notifyd_http_req {
    const char *method; /* "POST" (default when NULL) */
    const char *url;
    const char *const *headers;
    const char *body;
    size_t body_len;
    uint64_t timeout_ms;
    const char *ca_file;
};

/* Loop thread. Starts a request; cb(ud) runs exactly once later on the loop (also when the
 * client closes first, with ENT_ECLOSED). http:// URLs speak HTTP/1.1, https:// negotiate
 * HTTP/2 by ALPN and wait for a multiplexable connection instead of opening another.
 * Returns ENT_OK, or without calling cb: ENT_ECLOSED, ENT_EINVAL (no url/cb), ENT_ENOMEM. */
ent_err notifyd_http_post(struct notifyd_http *h, const struct notifyd_http_req *req,
                          notifyd_http_cb cb, void *ud);

/* Loop thread. Aborts the transfers in flight (their callbacks run now with ENT_ECLOSED),
 * closes every handle and calls closed_cb (may be NULL) on a later iteration, after which h
 * may be freed. Call once. */
void notifyd_http_close(struct notifyd_http *h, void (*closed_cb)(struct notifyd_http *h));

#endif
