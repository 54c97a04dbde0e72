/* SPDX-License-Identifier: Apache-2.0 */
/* Peer sets: which servers one bus socket dials (see bus_int.h). This file owns address
 * parsing, periodic name resolution on the loop (uv_getaddrinfo) and the set of per-address
 * dialers; the socket, its contexts and TLS belong to the client or subscriber that owns it.
 *
 *   configured "tcp://authd-bus:7101"
 *        │ init: dial the name itself (fallback), start the timer at 0
 *        ▼
 *   on_resolve_timer ──uv_getaddrinfo──▶ on_resolved ──▶ bus_peerset_apply(index, urls)
 *                                                          │ new address: bus_dial_ex()
 *                                                          │ vanished address: nng_dialer_close()
 *                                                          │ first non-empty answer: close the
 * fallback
 *
 * Invariants: (1) only the loop thread touches a set; (2) a dialer is closed at most once,
 * and never after the owner closed the socket (bus_peerset_close() comes first); (3) the set
 * is freed only when its timer is closed and no resolution is outstanding. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_int.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/util.h"

#define PEERS_DEFAULT_RESOLVE_MS 10000
#define PEERS_MAX_PER_NAME       64
#define PEERS_URL_MAX            160

static ent_gauge bus_peer_dialers =
    ENT_GAUGE("entitle_bus_dialers",
              "Dialers open per configured bus address (one per resolved peer)", "use", "address");
static ent_counter bus_resolve_failures =
    ENT_COUNTER("entitle_bus_resolve_failures_total",
                "Failed resolutions of a bus peer name (the last good set is kept)", "use");

struct peer_dialer {
    char url[PEERS_URL_MAX];
    nng_dialer dialer;
    bool seen; /* scratch for bus_peerset_apply() */
};

struct peer_addr {
    char *configured; /* as written in the configuration, also the metric label */
    char scheme[16];  /* "tcp" or "tls+tcp" */
    char host[128];   /* without brackets */
    char port[8];
    bool literal; /* host is an IP address: one dialer for good */
    bool fallback_open;
    nng_dialer fallback;
    struct peer_dialer *dialers;
    size_t n_dialers;
    struct bus_peerset *set;
    uv_getaddrinfo_t req;
    bool resolving;
};

struct bus_peerset {
    uv_loop_t *loop;
    nng_socket sock;
    struct ent_bus_tls_cfg tls;
    bool has_tls;
    uint64_t rmin, rmax, interval_ms;
    char what[16];
    struct peer_addr *addrs;
    size_t n_addrs;
    uv_timer_t timer;
    bool timer_open;
    bool closing;
    size_t outstanding; /* resolutions in flight */
    uint64_t answers;   /* resolutions applied, for tests and logs */
};

/* "tcp://host:port", "tls+tcp://[v6]:port" -> parts. */
static ent_err peer_addr_parse(struct peer_addr *a, const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL || (size_t)(sep - url) >= sizeof(a->scheme))
        return ENT_EINVAL;
    memcpy(a->scheme, url, (size_t)(sep - url));
    a->scheme[sep - url] = '\0';
    if (strcmp(a->scheme, "tcp") != 0 && strcmp(a->scheme, "tls+tcp") != 0)
        return ENT_EINVAL;
    int port = 0;
    if (ent_parse_hostport(sep + 3, a->host, sizeof(a->host), &port) != ENT_OK || port <= 0)
        return ENT_EINVAL;
    int plen = snprintf(a->port, sizeof(a->port), "%d", port);
    if (plen <= 0 || (size_t)plen >= sizeof(a->port))
        return ENT_EINVAL;
    unsigned char buf[sizeof(struct in6_addr)];
    a->literal = inet_pton(AF_INET, a->host, buf) == 1 || inet_pton(AF_INET6, a->host, buf) == 1;
    return ENT_OK;
}

static const struct ent_bus_tls_cfg *peer_tls(struct bus_peerset *ps, struct peer_addr *a,
                                              struct ent_bus_tls_cfg *storage)
{
    if (!ps->has_tls)
        return NULL;
    *storage = ps->tls;
    /* A dialer aimed at an address still verifies the certificate's name. */
    if (storage->server_name == NULL && !a->literal)
        storage->server_name = a->host;
    return storage;
}

static void peer_gauge(struct bus_peerset *ps, struct peer_addr *a)
{
    size_t n = a->n_dialers + (a->fallback_open ? 1 : 0);
    ent_gauge_set(&bus_peer_dialers, (double)n, ps->what, a->configured);
}

uint64_t bus_peerset_answers(const struct bus_peerset *ps)
{
    return ps->answers;
}

size_t bus_peerset_dialers(const struct bus_peerset *ps)
{
    size_t n = 0;
    for (size_t i = 0; i < ps->n_addrs; i++)
        n += ps->addrs[i].n_dialers + (ps->addrs[i].fallback_open ? 1 : 0);
    return n;
}

size_t bus_peerset_dialer_ids(const struct bus_peerset *ps, uint32_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < ps->n_addrs; i++) {
        const struct peer_addr *a = &ps->addrs[i];
        for (size_t j = 0; j < a->n_dialers; j++, n++)
            if (n < max)
                ids[n] = (uint32_t)nng_dialer_id(a->dialers[j].dialer);
        if (a->fallback_open) {
            if (n < max)
                ids[n] = (uint32_t)nng_dialer_id(a->fallback);
            n++;
        }
    }
    return n;
}

void bus_peerset_apply(struct bus_peerset *ps, size_t index, const char *const *urls, size_t n)
{
    if (ps->closing || index >= ps->n_addrs)
        return;
    struct peer_addr *a = &ps->addrs[index];
    struct ent_bus_tls_cfg tls_storage;
    const struct ent_bus_tls_cfg *tls = peer_tls(ps, a, &tls_storage);
    for (size_t i = 0; i < a->n_dialers; i++)
        a->dialers[i].seen = false;
    size_t added = 0, removed = 0;
    for (size_t u = 0; u < n; u++) {
        bool known = false;
        for (size_t i = 0; i < a->n_dialers; i++) {
            if (strcmp(a->dialers[i].url, urls[u]) == 0) {
                a->dialers[i].seen = true;
                known = true;
            }
        }
        if (known || a->n_dialers >= PEERS_MAX_PER_NAME || strlen(urls[u]) >= PEERS_URL_MAX)
            continue;
        struct peer_dialer *d = &a->dialers[a->n_dialers];
        if (bus_dial_ex(ps->sock, urls[u], tls, ps->rmin, ps->rmax, &d->dialer) != ENT_OK)
            continue;
        memcpy(d->url, urls[u], strlen(urls[u]) + 1);
        d->seen = true;
        a->n_dialers++;
        added++;
    }
    /* Drop the addresses the name no longer resolves to, keeping the array dense. */
    for (size_t i = 0; i < a->n_dialers;) {
        if (a->dialers[i].seen) {
            i++;
            continue;
        }
        nng_dialer_close(a->dialers[i].dialer);
        a->dialers[i] = a->dialers[--a->n_dialers];
        removed++;
    }
    if (a->n_dialers > 0 && a->fallback_open) {
        nng_dialer_close(a->fallback);
        a->fallback_open = false;
    }
    if (added || removed)
        ENT_LOG_INFO(NULL, "bus.peers_changed", ENT_KV_STR("use", ps->what),
                     ENT_KV_STR("address", a->configured), ENT_KV_U64("added", added),
                     ENT_KV_U64("removed", removed), ENT_KV_U64("dialers", a->n_dialers));
    peer_gauge(ps, a);
}

static void peerset_free(struct bus_peerset *ps)
{
    for (size_t i = 0; i < ps->n_addrs; i++) {
        free(ps->addrs[i].configured);
        free(ps->addrs[i].dialers);
    }
    free(ps->addrs);
    free(ps);
}

static void peerset_maybe_free(struct bus_peerset *ps)
{
    if (ps->closing && !ps->timer_open && ps->outstanding == 0)
        peerset_free(ps);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct peer_addr *a = req->data;
    struct bus_peerset *ps = a->set;
    a->resolving = false;
    ps->outstanding--;
    if (ps->closing) {
        uv_freeaddrinfo(res);
        peerset_maybe_free(ps);
        return;
    }
    if (status != 0) {
        ent_counter_inc(&bus_resolve_failures, ps->what);
        ENT_LOG_WARN(NULL, "bus.resolve_failed", ENT_KV_STR("use", ps->what),
                     ENT_KV_STR("address", a->configured),
                     ENT_KV_STR("reason", uv_strerror(status)));
        uv_freeaddrinfo(res);
        return;
    }
    char urls[PEERS_MAX_PER_NAME][PEERS_URL_MAX];
    const char *ptrs[PEERS_MAX_PER_NAME];
    size_t n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n < PEERS_MAX_PER_NAME; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *src = ai->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            inet_ntop(ai->ai_family, src, ip, sizeof(ip)) == NULL)
            continue;
        int len = snprintf(urls[n], PEERS_URL_MAX,
                           ai->ai_family == AF_INET6 ? "%s://[%s]:%s" : "%s://%s:%s", a->scheme, ip,
                           a->port);
        if (len <= 0 || len >= PEERS_URL_MAX)
            continue;
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            dup = dup || strcmp(urls[i], urls[n]) == 0;
        if (!dup) {
            ptrs[n] = urls[n];
            n++;
        }
    }
    uv_freeaddrinfo(res);
    ps->answers++;
    if (n == 0) {
        /* Nothing to dial: keep what we have rather than drop every peer on a bad answer. */
        ent_counter_inc(&bus_resolve_failures, ps->what);
        return;
    }
    bus_peerset_apply(ps, (size_t)(a - ps->addrs), ptrs, n);
}

static void on_resolve_timer(uv_timer_t *t)
{
    struct bus_peerset *ps = t->data;
    for (size_t i = 0; i < ps->n_addrs; i++) {
        struct peer_addr *a = &ps->addrs[i];
        if (a->literal || a->resolving)
            continue;
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        a->req.data = a;
        if (uv_getaddrinfo(ps->loop, &a->req, on_resolved, a->host, a->port, &hints) == 0) {
            a->resolving = true;
            ps->outstanding++;
        }
    }
}

ent_err bus_peerset_init(struct bus_peerset **out, uv_loop_t *loop, nng_socket sock,
                         const struct bus_peerset_cfg *cfg)
{
    struct bus_peerset *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return ENT_ENOMEM;
    ps->loop = loop;
    ps->sock = sock;
    ps->rmin = cfg->reconnect_min_ms;
    ps->rmax = cfg->reconnect_max_ms;
    ps->interval_ms =
        cfg->resolve_interval_ms != 0 ? cfg->resolve_interval_ms : PEERS_DEFAULT_RESOLVE_MS;
    snprintf(ps->what, sizeof(ps->what), "%s", cfg->what != NULL ? cfg->what : "bus");
    if (cfg->tls != NULL) {
        ps->tls = *cfg->tls;
        ps->has_tls = true;
    }
    ps->addrs = calloc(cfg->n_addrs, sizeof(*ps->addrs));
    if (ps->addrs == NULL) {
        free(ps);
        return ENT_ENOMEM;
    }
    ps->n_addrs = cfg->n_addrs;
    bool any_name = false;
    ent_err rc = ENT_OK;
    for (size_t i = 0; i < cfg->n_addrs && rc == ENT_OK; i++) {
        struct peer_addr *a = &ps->addrs[i];
        a->set = ps;
        a->configured = strdup(cfg->addrs[i]);
        a->dialers = calloc(PEERS_MAX_PER_NAME, sizeof(*a->dialers));
        if (a->configured == NULL || a->dialers == NULL) {
            rc = ENT_ENOMEM;
            break;
        }
        if (peer_addr_parse(a, cfg->addrs[i]) != ENT_OK) {
            /* Not ours to interpret (NNG may know the scheme): dial it as written. */
            a->literal = true;
            rc = bus_dial_ex(sock, cfg->addrs[i], cfg->tls, ps->rmin, ps->rmax,
                             &a->dialers[0].dialer);
            if (rc == ENT_OK) {
                snprintf(a->dialers[0].url, PEERS_URL_MAX, "%s", cfg->addrs[i]);
                a->n_dialers = 1;
            }
            continue;
        }
        struct ent_bus_tls_cfg tls_storage;
        const struct ent_bus_tls_cfg *tls = peer_tls(ps, a, &tls_storage);
        if (a->literal) {
            rc = bus_dial_ex(sock, cfg->addrs[i], tls, ps->rmin, ps->rmax, &a->dialers[0].dialer);
            if (rc == ENT_OK) {
                snprintf(a->dialers[0].url, PEERS_URL_MAX, "%s", cfg->addrs[i]);
                a->n_dialers = 1;
            }
        } else {
            rc = bus_dial_ex(sock, cfg->addrs[i], tls, ps->rmin, ps->rmax, &a->fallback);
            a->fallback_open = rc == ENT_OK;
            any_name = true;
        }
        if (rc == ENT_OK)
            peer_gauge(ps, a);
    }
    if (rc != ENT_OK) {
        peerset_free(ps); /* the owner closes the socket, and with it every dialer */
        return rc;
    }
    if (any_name) {
        uv_timer_init(loop, &ps->timer);
        ps->timer.data = ps;
        ps->timer_open = true;
        uv_timer_start(&ps->timer, on_resolve_timer, 0, ps->interval_ms);
    }
    *out = ps;
    return ENT_OK;
}

static void on_peer_timer_closed(uv_handle_t *h)
{
    struct bus_peerset *ps = h->data;
    ps->timer_open = false;
    peerset_maybe_free(ps);
}

void bus_peerset_close(struct bus_peerset *ps)
{
    if (ps == NULL)
        return;
    ps->closing = true;
    for (size_t i = 0; i < ps->n_addrs; i++)
        if (ps->addrs[i].resolving)
            uv_cancel((uv_req_t *)&ps->addrs[i].req);
    if (ps->timer_open) {
        uv_timer_stop(&ps->timer);
        uv_close((uv_handle_t *)&ps->timer, on_peer_timer_closed);
        return;
    }
    peerset_maybe_free(ps);
}
