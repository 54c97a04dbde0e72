/* SPDX-License-Identifier: Apache-2.0 */
/* Bus plumbing shared by the client, server and event files: the inbox that moves NNG
 * completions onto the loop, TLS configuration (mbedTLS through nng_tls_config_*), dialers
 * and listeners, packing, and the one NNG-to-ent_err conversion. The handle kinds
 * themselves live in bus_client.c, bus_server.c and bus_event.c. */
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "bus_int.h"
#include "ent/log.h"
#include "ent/util.h"

/* PEM files are small; refuse anything that is plainly not one. */
#define BUS_PEM_LIMIT (1024u * 1024u)

static void on_inbox_wakeup(uv_async_t *a)
{
    struct bus_inbox *in = ENT_CONTAINER_OF(a, struct bus_inbox, async);
    uv_mutex_lock(&in->mu);
    struct bus_item *it = in->head;
    in->head = NULL;
    in->tail = NULL;
    uv_mutex_unlock(&in->mu);
    while (it != NULL) {
        struct bus_item *next = it->next;
        it->next = NULL;
        in->deliver(in, it);
        it = next;
    }
}

ent_err bus_inbox_init(struct bus_inbox *in, uv_loop_t *loop,
                       void (*deliver)(struct bus_inbox *in, struct bus_item *it))
{
    memset(in, 0, sizeof(*in));
    in->deliver = deliver;
    int rv = uv_mutex_init(&in->mu);
    if (rv != 0)
        return ent_err_from_uv(rv);
    rv = uv_async_init(loop, &in->async, on_inbox_wakeup);
    if (rv != 0) {
        uv_mutex_destroy(&in->mu);
        return ent_err_from_uv(rv);
    }
    return ENT_OK;
}

void bus_inbox_push(struct bus_inbox *in, struct bus_item *it)
{
    it->next = NULL;
    uv_mutex_lock(&in->mu);
    bool was_empty = in->head == NULL;
    if (was_empty)
        in->head = it;
    else
        in->tail->next = it;
    in->tail = it;
    uv_mutex_unlock(&in->mu);
    if (was_empty)
        uv_async_send(&in->async);
}

static void on_inbox_closed(uv_handle_t *h)
{
    struct bus_inbox *in = ENT_CONTAINER_OF(h, struct bus_inbox, async);
    /* Every aio was stopped before the close began, so nothing can push any more; what is
     * left here arrived after the last wake-up ran. */
    on_inbox_wakeup(&in->async);
    uv_mutex_destroy(&in->mu);
    in->closed(in);
}

void bus_inbox_close(struct bus_inbox *in, void (*closed)(struct bus_inbox *in))
{
    in->closed = closed;
    uv_close((uv_handle_t *)&in->async, on_inbox_closed);
}

ent_err bus_err_from_nng(int rv)
{
    switch (rv) {
    case 0:
        return ENT_OK;
    case NNG_ENOMEM:
        return ENT_ENOMEM;
    case NNG_ETIMEDOUT:
        return ENT_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
    case NNG_ESTATE:
        return ENT_ECLOSED;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
    case NNG_EBADTYPE:
        return ENT_EINVAL;
    case NNG_EADDRINUSE:
    case NNG_ECONNREFUSED:
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
    case NNG_ECONNABORTED:
    case NNG_EUNREACHABLE:
    case NNG_EAGAIN:
        return ENT_EUNAVAIL;
    case NNG_EPROTO:
        return ENT_EPROTO;
    case NNG_EMSGSIZE:
        return ENT_ETOOBIG;
    case NNG_EPEERAUTH:
    case NNG_ECRYPTO:
        return ENT_ETLS;
    case NNG_EPERM:
        return ENT_EPERM;
    case NNG_ENOTSUP:
        return ENT_EUNSUPPORTED;
    case NNG_ENOENT:
        return ENT_ENOTFOUND;
    default:
        return ENT_EIO;
    }
}

static bool url_is_tls(const char *url)
{
    return strncmp(url, "tls+", 4) == 0;
}

/* Builds the TLS configuration for one endpoint. With a CA both sides verify their peer:
 * a server then requires a client certificate (mutual TLS), a client checks the server's
 * chain and name. The key is wiped from memory once mbedTLS has parsed it. */
static ent_err tls_config_new(nng_tls_config **out, nng_tls_mode mode,
                              const struct ent_bus_tls_cfg *tls)
{
    nng_tls_config *cfg = NULL;
    char *cert = NULL;
    char *key = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    ent_err rc = ENT_OK;

    int rv = nng_tls_config_alloc(&cfg, mode);
    if (rv != 0)
        return bus_err_from_nng(rv);
    rv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_3);
    if (rv != 0) {
        /* mbedTLS 2.28 has no TLS 1.3: take 1.2 only. */
        rv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_2);
    }
    if (rv != 0) {
        rc = bus_err_from_nng(rv);
        goto out;
    }
    if (tls->ca_file != NULL) {
        rv = nng_tls_config_ca_file(cfg, tls->ca_file);
        if (rv != 0) {
            ENT_LOG_ERROR(NULL, "bus.tls_ca", ENT_KV_STR("file", tls->ca_file),
                          ENT_KV_STR("error", nng_strerror(rv)));
            rc = ENT_ECONFIG;
            goto out;
        }
    }
    rv = nng_tls_config_auth_mode(cfg, tls->ca_file != NULL ? NNG_TLS_AUTH_MODE_REQUIRED
                                                            : NNG_TLS_AUTH_MODE_NONE);
    if (rv != 0) {
        rc = bus_err_from_nng(rv);
        goto out;
    }
    if (mode == NNG_TLS_MODE_CLIENT && tls->server_name != NULL) {
        rv = nng_tls_config_server_name(cfg, tls->server_name);
        if (rv != 0) {
            rc = bus_err_from_nng(rv);
            goto out;
        }
    }
    if (tls->cert_file != NULL || tls->key_file != NULL) {
        if (tls->cert_file == NULL || tls->key_file == NULL) {
            rc = ENT_ECONFIG;
            goto out;
        }
        rc = ent_file_read(tls->cert_file, BUS_PEM_LIMIT, &cert, &cert_len);
        if (rc == ENT_OK)
            rc = ent_file_read(tls->key_file, BUS_PEM_LIMIT, &key, &key_len);
        if (rc != ENT_OK) {
            ENT_LOG_ERROR(NULL, "bus.tls_cert", ENT_KV_STR("cert", tls->cert_file),
                          ENT_KV_STR("key", tls->key_file), ENT_KV_STR("error", ent_strerror(rc)));
            rc = ENT_ECONFIG;
            goto out;
        }
        rv = nng_tls_config_own_cert(cfg, cert, key, NULL);
        if (rv != 0) {
            ENT_LOG_ERROR(NULL, "bus.tls_cert", ENT_KV_STR("cert", tls->cert_file),
                          ENT_KV_STR("key", tls->key_file), ENT_KV_STR("error", nng_strerror(rv)));
            rc = ENT_ECONFIG;
            goto out;
        }
    } else if (mode == NNG_TLS_MODE_SERVER) {
        rc = ENT_ECONFIG; /* a TLS listener needs an identity */
        goto out;
    }

out:
    free(cert);
    if (key != NULL) {
        explicit_bzero(key, key_len);
        free(key);
    }
    if (rc != ENT_OK) {
        nng_tls_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return ENT_OK;
}

/* Decides whether `url` gets TLS: tls+ URLs need a configuration, plain ones ignore it. */
static ent_err tls_for_url(nng_tls_config **out, nng_tls_mode mode, const char *url,
                           const struct ent_bus_tls_cfg *tls)
{
    *out = NULL;
    if (!url_is_tls(url)) {
        if (tls != NULL)
            ENT_LOG_WARN(NULL, "bus.tls_ignored", ENT_KV_STR("url", url));
        return ENT_OK;
    }
    if (tls == NULL) {
        ENT_LOG_ERROR(NULL, "bus.tls_missing", ENT_KV_STR("url", url));
        return ENT_ECONFIG;
    }
    return tls_config_new(out, mode, tls);
}

ent_err bus_ctx_open(nng_socket sock, nng_aio **aio, nng_ctx *ctx, void (*cb)(void *), void *arg)
{
    int rv = nng_aio_alloc(aio, cb, arg);
    if (rv != 0)
        return bus_err_from_nng(rv);
    rv = nng_ctx_open(ctx, sock);
    if (rv != 0) {
        nng_aio_free(*aio);
        *aio = NULL;
        return bus_err_from_nng(rv);
    }
    return ENT_OK;
}

ent_err bus_dial_ex(nng_socket sock, const char *url, const struct ent_bus_tls_cfg *tls,
                    uint64_t reconnect_min_ms, uint64_t reconnect_max_ms, nng_dialer *out)
{
    nng_dialer d;
    nng_tls_config *tcfg = NULL;
    ent_err rc = tls_for_url(&tcfg, NNG_TLS_MODE_CLIENT, url, tls);
    if (rc != ENT_OK)
        return rc;
    int rv = nng_dialer_create(&d, sock, url);
    if (rv != 0) {
        if (tcfg != NULL)
            nng_tls_config_free(tcfg);
        ENT_LOG_ERROR(NULL, "bus.bad_url", ENT_KV_STR("url", url),
                      ENT_KV_STR("error", nng_strerror(rv)));
        return rv == NNG_ENOMEM ? ENT_ENOMEM : ENT_EINVAL;
    }
    if (tcfg != NULL) {
        /* The dialer takes its own reference. */
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tcfg);
        nng_tls_config_free(tcfg);
    }
    if (rv == 0 && reconnect_min_ms > 0)
        rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, (nng_duration)reconnect_min_ms);
    if (rv == 0 && reconnect_max_ms > 0)
        rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, (nng_duration)reconnect_max_ms);
    if (rv == 0)
        rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, BUS_MAX_MSG_SIZE);
    /* Non-blocking: a peer that is not up yet is re-dialled in the background. */
    if (rv == 0)
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_dialer_close(d);
        return bus_err_from_nng(rv);
    }
    if (out != NULL)
        *out = d;
    return ENT_OK;
}

ent_err bus_listen(nng_socket sock, const char *url, const struct ent_bus_tls_cfg *tls,
                   int *port_out)
{
    nng_listener l;
    nng_tls_config *tcfg = NULL;
    if (port_out != NULL)
        *port_out = -1;
    ent_err rc = tls_for_url(&tcfg, NNG_TLS_MODE_SERVER, url, tls);
    if (rc != ENT_OK)
        return rc;
    int rv = nng_listener_create(&l, sock, url);
    if (rv != 0) {
        if (tcfg != NULL)
            nng_tls_config_free(tcfg);
        ENT_LOG_ERROR(NULL, "bus.bad_url", ENT_KV_STR("url", url),
                      ENT_KV_STR("error", nng_strerror(rv)));
        return rv == NNG_ENOMEM ? ENT_ENOMEM : ENT_EINVAL;
    }
    if (tcfg != NULL) {
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tcfg);
        nng_tls_config_free(tcfg);
    }
    if (rv == 0)
        rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, BUS_MAX_MSG_SIZE);
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0) {
        ENT_LOG_ERROR(NULL, "bus.listen", ENT_KV_STR("url", url),
                      ENT_KV_STR("error", nng_strerror(rv)));
        nng_listener_close(l);
        return bus_err_from_nng(rv);
    }
    int port = -1;
    if (port_out != NULL && nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
        *port_out = port;
    return ENT_OK;
}

ent_err bus_pack(nng_msg **out, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    nng_msg *msg = NULL;
    if (len > BUS_MAX_MSG_SIZE)
        return ENT_ETOOBIG;
    int rv = nng_msg_alloc(&msg, len);
    if (rv != 0)
        return ENT_ENOMEM;
    if (len > 0)
        protobuf_c_message_pack(m, nng_msg_body(msg));
    *out = msg;
    return ENT_OK;
}
