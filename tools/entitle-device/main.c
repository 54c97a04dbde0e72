/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-device: a handset simulator and synthetic probe for the gateway. It holds a SIM
 * (IMSI, K, OPc, the USIM's SQN array) and talks TS.43 the way AOSP does (PROTOCOL.md §1,
 * §4): a token request when it holds a token; on 511 (or without a token) full EAP-AKA
 * (AKA' with --aka-prime): the first request with EAP_ID, then EAP POSTs without parameters
 * carrying only the cookie of the first response, answering up to 4 challenges, resyncing
 * (AUTS) when the network's SQN is stale. The USIM and EAP code is authd's own (entitle_aka):
 * there is no second implementation.
 *
 * It prints the parsed document (flattened "Vers.version = 3" lines), or with --json one
 * JSON object for scripts; the exit status makes it a probe: 0 a document with TOKEN, 2 any
 * other final HTTP status, 3 transport or protocol error, 1 usage. --state FILE keeps the
 * SIM's SQN array and the token between runs, as a phone keeps them. Test switches
 * (--wrong-res, --replay-eap, --eap-delay-ms, --no-cookie) drive the failure paths. */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "aka/aka.h"
#include "aka/aka_prime.h"
#include "aka/eap_aka.h"
#include "aka/sqn.h"
#include "ent/util.h"

#define EXIT_DOC   0
#define EXIT_USAGE 1
#define EXIT_HTTP  2
#define EXIT_PROTO 3

#define RELAY_CT "application/vnd.gsma.eap-relay.v1.0+json"

struct opts {
    const char *url;
    const char *imsi, *k_hex, *opc_hex, *sqn_hex;
    const char *state;
    const char *apps;
    const char *version;
    const char *vers;
    const char *token;
    const char *terminal_id, *vendor, *model, *sw;
    const char *realm;
    const char *mcc, *mnc;
    const char *cacert;
    const char *notif_token, *notif_action;
    const char *operation, *operation_targets, *app_name, *temporary_token;
    bool insecure, post, xml, json_out, aka_prime, wrong_res, replay_eap, no_cookie;
    bool full_auth, old_cookie_style;
    unsigned ind_bits;
    long eap_delay_ms;
    long timeout_ms;
    int count;
};

/* ---- HTTP(S) client over one keep-alive connection ------------------------------------------ */

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char host[256];
    char port[8];
    char path[1024];
    bool tls;
    long timeout_ms;
    const char *cacert;
    bool insecure;
};

struct resp {
    int status;
    char ctype[128];
    char set_cookie[4096];
    char retry_after[32];
    bool close;
    char *body;
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static int url_parse(struct conn *c, const char *url)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        c->tls = true;
        p = url + 8;
        snprintf(c->port, sizeof(c->port), "443");
    } else if (strncmp(url, "http://", 7) == 0) {
        c->tls = false;
        p = url + 7;
        snprintf(c->port, sizeof(c->port), "80");
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof(c->host))
        return -1;
    memcpy(c->host, p, hl);
    c->host[hl] = '\0';
    char *colon = strrchr(c->host, ':');
    if (colon && !strchr(colon, ']')) {
        snprintf(c->port, sizeof(c->port), "%s", colon + 1);
        *colon = '\0';
    }
    if (c->host[0] == '[') {
        memmove(c->host, c->host + 1, strlen(c->host));
        char *rb = strchr(c->host, ']');
        if (rb)
            *rb = '\0';
    }
    snprintf(c->path, sizeof(c->path), "%s", slash ? slash : "/");
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static int conn_open(struct conn *c, char *err, size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(c->host, c->port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, err_len, "resolve %s: %s", c->host, gai_strerror(rc));
        return -1;
    }
    c->fd = -1;
    for (struct addrinfo *a = ai; a && c->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = c->timeout_ms / 1000,
                             .tv_usec = (c->timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            c->fd = fd;
        else
            close(fd);
    }
    freeaddrinfo(ai);
    if (c->fd < 0) {
        snprintf(err, err_len, "connect %s:%s: %s", c->host, c->port, strerror(errno));
        return -1;
    }
    if (!c->tls)
        return 0;
    if (c->ctx == NULL) {
        c->ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        if (c->insecure) {
            SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
        } else {
            SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
            if (c->cacert ? SSL_CTX_load_verify_locations(c->ctx, c->cacert, NULL) != 1
                          : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
                snprintf(err, err_len, "cannot load CA %s", c->cacert ? c->cacert : "(default)");
                return -1;
            }
        }
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, c->host);
    if (!c->insecure)
        SSL_set1_host(c->ssl, c->host);
    if (SSL_connect(c->ssl) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(err, err_len, "tls handshake: %s", e ? ERR_reason_error_string(e) : "failed");
        conn_close(c);
        return -1;
    }
    return 0;
}

static int io_write(struct conn *c, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        int n = c->ssl ? SSL_write(c->ssl, buf + off, (int)(len - off))
                       : (int)send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static int io_read(struct conn *c, char *buf, size_t cap)
{
    return c->ssl ? SSL_read(c->ssl, buf, (int)cap) : (int)recv(c->fd, buf, cap, 0);
}

static void header_value(const char *line, const char *name, char *out, size_t cap, bool append)
{
    size_t nl = strlen(name);
    if (strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    while (*v == ' ')
        v++;
    if (append && out[0]) {
        size_t o = strlen(out);
        snprintf(out + o, cap - o, "\n%s", v);
    } else {
        snprintf(out, cap, "%s", v);
    }
}

/* Sends one request and reads one response (Content-Length bodies, as the gateway sends). */
static int http_do(struct conn *c, const char *method, const char *target, const char *headers,
                   const char *body, struct resp *r, char *err, size_t err_len)
{
    memset(r, 0, sizeof(*r));
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && conn_open(c, err, err_len) != 0)
            return -1;
        struct ent_buf req;
        ent_buf_init(&req, 1 << 20);
        ent_buf_printf(&req,
                       "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: PRD-TS43 term-entd/sim "
                       "client-IMS-Entitlement/1.0 OS-Android/14\r\n%s",
                       method, target, c->host, headers);
        if (body)
            ent_buf_printf(&req, "Content-Length: %zu\r\n", strlen(body));
        ent_buf_append_str(&req, "\r\n");
        if (body)
            ent_buf_append_str(&req, body);
        int wrc = io_write(c, req.data, req.len);
        ent_buf_free(&req);
        char buf[16384];
        size_t have = 0;
        char *hend = NULL;
        while (wrc == 0 && hend == NULL) {
            if (have + 1 >= sizeof(buf))
                break;
            int n = io_read(c, buf + have, sizeof(buf) - have - 1);
            if (n <= 0)
                break;
            have += (size_t)n;
            buf[have] = '\0';
            hend = strstr(buf, "\r\n\r\n");
        }
        if (hend == NULL) {
            conn_close(c);
            if (attempt == 0 && have == 0)
                continue; /* the server closed a kept-alive connection: reconnect once */
            snprintf(err, err_len, "no HTTP response");
            return -1;
        }
        *hend = '\0';
        if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
            snprintf(err, err_len, "bad status line");
            conn_close(c);
            return -1;
        }
        size_t clen = 0;
        char *save = NULL;
        strtok_r(buf, "\r\n", &save); /* the status line */
        for (char *line = strtok_r(NULL, "\r\n", &save); line;
             line = strtok_r(NULL, "\r\n", &save)) {
            char v[64] = "", conn_v[32] = "";
            header_value(line, "Content-Type", r->ctype, sizeof(r->ctype), false);
            header_value(line, "Set-Cookie", r->set_cookie, sizeof(r->set_cookie), true);
            header_value(line, "Retry-After", r->retry_after, sizeof(r->retry_after), false);
            header_value(line, "Content-Length", v, sizeof(v), false);
            header_value(line, "Connection", conn_v, sizeof(conn_v), false);
            if (v[0])
                clen = strtoul(v, NULL, 10);
            if (strncasecmp(conn_v, "close", 5) == 0)
                r->close = true;
        }
        r->body = malloc(clen + 1);
        size_t body_have = have - (size_t)(hend + 4 - buf);
        if (body_have > clen)
            body_have = clen;
        memcpy(r->body, hend + 4, body_have);
        while (body_have < clen) {
            int n = io_read(c, r->body + body_have, clen - body_have);
            if (n <= 0) {
                snprintf(err, err_len, "truncated body");
                conn_close(c);
                return -1;
            }
            body_have += (size_t)n;
        }
        r->body[clen] = '\0';
        r->body_len = clen;
        if (r->close)
            conn_close(c);
        return 0;
    }
    return -1;
}

/* ---- query / JSON request building ---------------------------------------------------------- */

/* Android Uri.encode: letters, digits and _-!.~'()* literal, the rest %XX. */
static void uri_encode(struct ent_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("_-!.~'()*", ch))
            ent_buf_append_char(b, (char)ch);
        else
            ent_buf_printf(b, "%%%02X", ch);
    }
}

struct kv {
    const char *k, *v;
};

static size_t build_params(const struct opts *o, struct kv *kv, const char *auth_key,
                           const char *auth_val, char (*apps)[8], size_t n_apps)
{
    size_t n = 0;
    kv[n++] = (struct kv){"terminal_id", o->terminal_id};
    kv[n++] = (struct kv){"terminal_vendor", o->vendor};
    kv[n++] = (struct kv){"terminal_model", o->model};
    kv[n++] = (struct kv){"terminal_sw_version", o->sw};
    kv[n++] = (struct kv){"entitlement_version", o->version};
    kv[n++] = (struct kv){"vers", o->vers};
    for (size_t i = 0; i < n_apps; i++)
        kv[n++] = (struct kv){"app", apps[i]};
    if (auth_key)
        kv[n++] = (struct kv){auth_key, auth_val};
    if (auth_key && strcmp(auth_key, "token") == 0)
        kv[n++] = (struct kv){"IMSI", o->imsi};
    if (o->notif_token)
        kv[n++] = (struct kv){"notif_token", o->notif_token};
    if (o->notif_action)
        kv[n++] = (struct kv){"notif_action", o->notif_action};
    if (o->operation)
        kv[n++] = (struct kv){"operation", o->operation};
    if (o->operation_targets)
        kv[n++] = (struct kv){"operation_targets", o->operation_targets};
    if (o->app_name)
        kv[n++] = (struct kv){"app_name", o->app_name};
    return n;
}

/* One entitlement request (GET query or JSON POST, AOSP's "[a,b]" app string form). */
static int send_request(struct conn *c, const struct opts *o, const char *accept,
                        const struct kv *kv, size_t n, struct resp *r, char *err, size_t err_len)
{
    char headers[512];
    int rc;
    if (!o->post) {
        struct ent_buf q;
        ent_buf_init(&q, 1 << 16);
        ent_buf_append_str(&q, c->path);
        for (size_t i = 0; i < n; i++) {
            ent_buf_append_char(&q, i ? '&' : (strchr(c->path, '?') ? '&' : '?'));
            ent_buf_append_str(&q, kv[i].k);
            ent_buf_append_char(&q, '=');
            uri_encode(&q, kv[i].v);
        }
        snprintf(headers, sizeof(headers), "Accept: %s\r\n", accept);
        rc = http_do(c, "GET", q.data, headers, NULL, r, err, err_len);
        ent_buf_free(&q);
        return rc;
    }
    json_t *obj = json_object();
    char appstr[256] = "";
    size_t napps = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].k, "app") == 0)
            napps++;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].k, "app") == 0) {
            size_t l = strlen(appstr);
            snprintf(appstr + l, sizeof(appstr) - l, "%s%s", l ? "," : (napps > 1 ? "[" : ""),
                     kv[i].v);
            continue;
        }
        json_object_set_new(obj, kv[i].k, json_string(kv[i].v));
    }
    if (napps > 1)
        strncat(appstr, "]", sizeof(appstr) - strlen(appstr) - 1);
    json_object_set_new(obj, "app", json_string(appstr));
    char *body = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    snprintf(headers, sizeof(headers), "Accept: %s\r\nContent-Type: application/json\r\n", accept);
    rc = http_do(c, "POST", c->path, headers, body, r, err, err_len);
    free(body);
    return rc;
}

/* ---- the SIM -------------------------------------------------------------------------------- */

struct sim {
    uint8_t k[16], opc[16];
    struct ent_sqn_usim usim;
    char token[2100];
};

static bool hex_arg(const char *s, uint8_t *out, size_t len)
{
    return s && strlen(s) == 2 * len && ent_hex_decode(s, out, len) == ENT_OK;
}

static void state_load(struct sim *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[2300];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        unsigned ind;
        unsigned long long seq;
        if (sscanf(line, "seq_ms.%u=%llu", &ind, &seq) == 2 && ind < (1u << s->usim.ind_bits))
            s->usim.seq_ms[ind] = seq;
        else if (strncmp(line, "token=", 6) == 0 && strlen(line + 6) < sizeof(s->token))
            memcpy(s->token, line + 6, strlen(line + 6) + 1);
    }
    fclose(f);
}

static void state_save(const struct sim *s, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    for (unsigned i = 0; i < (1u << s->usim.ind_bits); i++)
        if (s->usim.seq_ms[i])
            fprintf(f, "seq_ms.%u=%llu\n", i, (unsigned long long)s->usim.seq_ms[i]);
    if (s->token[0])
        fprintf(f, "token=%s\n", s->token);
    fclose(f);
    rename(tmp, path);
}

/* Answers one EAP-Request/AKA-Challenge: *out is the EAP-Response (RES or AUTS). */
static int sim_answer(struct sim *s, const struct opts *o, const char *identity, const uint8_t *pkt,
                      size_t len, uint8_t *out, size_t *out_len, bool *resync, char *err,
                      size_t err_len)
{
    struct ent_eap_aka_challenge ch;
    if (ent_eap_aka_challenge_parse(&ch, pkt, len) != ENT_OK) {
        snprintf(err, err_len, "not an EAP-Request/AKA-Challenge");
        return -1;
    }
    struct ent_aka_usim_result ur;
    if (ent_aka_usim_verify(&ur, s->k, s->opc, ch.rand, ch.autn) != ENT_OK) {
        snprintf(err, err_len, "AUTN rejected by the SIM (MAC-A)");
        return -1;
    }
    struct ent_eap_aka_response rsp;
    memset(&rsp, 0, sizeof(rsp));
    rsp.type = ch.type;
    rsp.identifier = ch.identifier;
    if (ent_sqn_usim_check(&s->usim, ur.sqn) != ENT_OK) {
        rsp.subtype = ENT_EAP_AKA_SYNCHRONIZATION_FAILURE;
        ent_aka_auts_build(rsp.auts, s->k, s->opc, ch.rand, ent_sqn_usim_ms(&s->usim));
        *resync = true;
        return ent_eap_aka_response_build(out, ENT_EAP_AKA_PACKET_MAX, out_len, &rsp, NULL, 0) ==
                       ENT_OK
                   ? 0
                   : -1;
    }
    *resync = false;
    struct ent_eap_aka_keys keys;
    ent_err rc;
    if (ch.type == ENT_EAP_TYPE_AKA_PRIME) {
        uint8_t ckp[16], ikp[16];
        rc = ent_aka_prime_ck_ik(ckp, ikp, ur.ck, ur.ik, ch.network_name, ch.network_name_len,
                                 ch.autn);
        if (rc == ENT_OK)
            rc = ent_aka_prime_keys_derive(&keys, (const uint8_t *)identity, strlen(identity), ikp,
                                           ckp);
        rsp.kdf = 0;
    } else {
        rc = ent_eap_aka_keys_derive(&keys, (const uint8_t *)identity, strlen(identity), ur.ik,
                                     ur.ck);
    }
    if (rc != ENT_OK ||
        ent_eap_aka_mac_verify(pkt, len, ch.mac_offset, keys.k_aut, keys.k_aut_len) != ENT_OK) {
        snprintf(err, err_len, "challenge AT_MAC does not verify");
        return -1;
    }
    ent_sqn_usim_accept(&s->usim, ur.sqn);
    rsp.subtype = ENT_EAP_AKA_CHALLENGE;
    memcpy(rsp.res, ur.res, ur.res_len);
    rsp.res_bits = (uint16_t)(ur.res_len * 8);
    if (o->wrong_res)
        rsp.res[0] ^= 0x01;
    rsp.has_mac = true;
    return ent_eap_aka_response_build(out, ENT_EAP_AKA_PACKET_MAX, out_len, &rsp, keys.k_aut,
                                      keys.k_aut_len) == ENT_OK
               ? 0
               : -1;
}

/* ---- the flow ------------------------------------------------------------------------------ */

struct outcome {
    int status;
    const char *auth; /* "token", "full", "none" */
    int challenges;
    int resyncs;
    int replay_status;
    int cookies_set;  /* responses of the exchange that carried Set-Cookie */
    bool token_retry; /* a 511 on the token made it re-authenticate */
    char cookie[3000];
    struct resp final;
};

static bool is_relay(const struct resp *r)
{
    return r->status == 200 && strstr(r->ctype, "eap-relay") != NULL;
}

/* The leading name=value of the first Set-Cookie (PROTOCOL.md §1: attributes stripped). */
static void cookie_from(const struct resp *r, char *out, size_t cap)
{
    size_t n = strcspn(r->set_cookie, ";\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, r->set_cookie, n);
    out[n] = '\0';
}

static int relay_packet(const struct resp *r, uint8_t *pkt, size_t cap, size_t *len)
{
    json_error_t je;
    json_t *root = json_loadb(r->body, r->body_len, 0, &je);
    json_t *v = root ? json_object_get(root, "eap-relay-packet") : NULL;
    int rc = -1;
    if (json_is_string(v) &&
        ent_base64_decode(json_string_value(v), json_string_length(v), pkt, cap, len) == ENT_OK)
        rc = 0;
    json_decref(root);
    return rc;
}

static int full_auth(struct conn *c, struct sim *s, const struct opts *o, char (*apps)[8],
                     size_t n_apps, const char *accept, struct outcome *out, char *err,
                     size_t err_len)
{
    char identity[300];
    const char *mnc = o->mnc;
    char mnc3[4];
    snprintf(mnc3, sizeof(mnc3), "%s%s", strlen(mnc) == 2 ? "0" : "", mnc);
    snprintf(identity, sizeof(identity), "%c%s@%s.mnc%s.mcc%s.3gppnetwork.org",
             o->aka_prime ? '6' : '0', o->imsi, o->realm, mnc3, o->mcc);
    struct kv kv[48];
    size_t n = build_params(o, kv, "EAP_ID", identity, apps, n_apps);
    struct resp r;
    out->auth = "full";
    if (send_request(c, o, RELAY_CT, kv, n, &r, err, err_len) != 0)
        return -1;
    if (!is_relay(&r)) {
        out->final = r;
        return 0;
    }
    cookie_from(&r, out->cookie, sizeof(out->cookie));
    out->cookies_set += r.set_cookie[0] != '\0';
    char cookie_hdr[3200];
    /* Current AOSP sends "Cookie: name=value"; older builds replayed the raw Set-Cookie. */
    if (o->no_cookie)
        cookie_hdr[0] = '\0';
    else if (o->old_cookie_style)
        snprintf(cookie_hdr, sizeof(cookie_hdr), "Cookie: %.3000s\r\n", r.set_cookie);
    else
        snprintf(cookie_hdr, sizeof(cookie_hdr), "Cookie: %s\r\n", out->cookie);
    for (int round = 0; round < 4; round++) {
        uint8_t pkt[1024], ans[ENT_EAP_AKA_PACKET_MAX];
        size_t plen = 0, alen = 0;
        bool resync = false;
        out->challenges++;
        if (relay_packet(&r, pkt, sizeof(pkt), &plen) != 0) {
            snprintf(err, err_len, "challenge without a decodable eap-relay-packet");
            resp_free(&r);
            return -1;
        }
        resp_free(&r);
        if (sim_answer(s, o, identity, pkt, plen, ans, &alen, &resync, err, err_len) != 0)
            return -1;
        if (resync)
            out->resyncs++;
        char b64[1024], body[1200], headers[4000];
        ent_base64_encode(ans, alen, b64);
        snprintf(body, sizeof(body), "{\"eap-relay-packet\":\"%s\"}", b64);
        snprintf(headers, sizeof(headers), "Accept: %s%s%s\r\nContent-Type: %s\r\n%s", RELAY_CT,
                 resync ? "" : ", ", resync ? "" : accept, RELAY_CT, cookie_hdr);
        if (o->eap_delay_ms > 0 && !resync) {
            struct timespec ts = {o->eap_delay_ms / 1000, (o->eap_delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (http_do(c, "POST", c->path, headers, body, &r, err, err_len) != 0)
            return -1;
        out->cookies_set += r.set_cookie[0] != '\0';
        if (!is_relay(&r)) {
            if (o->replay_eap && r.status == 200) {
                struct resp again;
                if (http_do(c, "POST", c->path, headers, body, &again, err, err_len) != 0) {
                    resp_free(&r);
                    return -1;
                }
                out->replay_status = again.status;
                resp_free(&again);
            }
            out->final = r;
            return 0;
        }
    }
    out->final = r; /* a fifth challenge: AOSP gives up (PROTOCOL.md §4.1) */
    snprintf(err, err_len, "more than 4 challenges");
    return -1;
}

/* ---- document printing ---------------------------------------------------------------------- */

static void flat_add(json_t *flat, const char *path, const char *name, const char *value)
{
    char key[512];
    snprintf(key, sizeof(key), "%s%s%s", path, path[0] ? "." : "", name);
    json_object_set_new(flat, key, json_string(value));
}

static void flatten_json(json_t *flat, json_t *v, const char *path)
{
    const char *k;
    json_t *it;
    size_t i;
    char p[512];
    if (json_is_object(v)) {
        json_object_foreach(v, k, it)
        {
            snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", k);
            if (json_is_string(it))
                json_object_set_new(flat, p, json_string(json_string_value(it)));
            else
                flatten_json(flat, it, p);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, it)
        {
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
            flatten_json(flat, it, p);
        }
    }
}

static void attr(const char *tag, const char *name, char *out, size_t cap)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "%s=\"", name);
    const char *a = strstr(tag, pat);
    out[0] = '\0';
    if (!a)
        return;
    a += strlen(pat);
    const char *e = strchr(a, '"');
    size_t n = e ? (size_t)(e - a) : 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, a, n);
    out[n] = '\0';
    /* the only entity the gateway writes */
    for (char *amp = strstr(out, "&amp;"); amp; amp = strstr(amp + 1, "&amp;"))
        memmove(amp + 1, amp + 5, strlen(amp + 5) + 1);
}

/* XML: characteristic types joined by '.', an APPLICATION named by its AppID, VERS/TOKEN as
 * Vers/Token so both formats flatten alike; a repeated nested characteristic gets [i]. */
static void flatten_xml(json_t *flat, const char *doc)
{
    char stack[8][96];
    int counts[8][4] = {{0}};
    char seen[8][4][64];
    int depth = 0;
    for (const char *p = strchr(doc, '<'); p; p = strchr(p + 1, '<')) {
        const char *e = strchr(p, '>');
        if (!e)
            break;
        char tag[2048];
        size_t n = (size_t)(e - p + 1) < sizeof(tag) ? (size_t)(e - p + 1) : sizeof(tag) - 1;
        memcpy(tag, p, n);
        tag[n] = '\0';
        if (strncmp(tag, "<characteristic", 15) == 0 && depth < 8) {
            char type[64];
            attr(tag, "type", type, sizeof(type));
            if (strcmp(type, "VERS") == 0)
                snprintf(type, sizeof(type), "Vers");
            else if (strcmp(type, "TOKEN") == 0)
                snprintf(type, sizeof(type), "Token");
            int idx = 0;
            if (depth > 0) {
                int slot = -1;
                for (int i = 0; i < 4; i++)
                    if (counts[depth][i] && strcmp(seen[depth][i], type) == 0)
                        slot = i;
                if (slot < 0)
                    for (int i = 0; i < 4 && slot < 0; i++)
                        if (!counts[depth][i]) {
                            slot = i;
                            snprintf(seen[depth][i], sizeof(seen[0][0]), "%s", type);
                        }
                if (slot >= 0)
                    idx = counts[depth][slot]++;
            }
            char parent[96];
            snprintf(parent, sizeof(parent), "%s", depth > 0 ? stack[depth - 1] : "");
            if (depth == 0)
                snprintf(stack[depth], sizeof(stack[0]), "%s", type);
            else if (idx > 0 || strcmp(type, "RATVoiceEntitleInfoDetails") == 0)
                snprintf(stack[depth], sizeof(stack[0]), "%.60s.%.20s[%d]", parent, type, idx);
            else
                snprintf(stack[depth], sizeof(stack[0]), "%.60s.%.30s", parent, type);
            depth++;
            if (depth < 8)
                memset(counts[depth], 0, sizeof(counts[depth]));
        } else if (strncmp(tag, "</characteristic", 16) == 0 && depth > 0) {
            depth--;
        } else if (strncmp(tag, "<parm", 5) == 0 && depth > 0) {
            char name[96], value[1800];
            attr(tag, "name", name, sizeof(name));
            attr(tag, "value", value, sizeof(value));
            if (depth == 1 && strcmp(stack[0], "APPLICATION") == 0 && strcmp(name, "AppID") == 0) {
                snprintf(stack[0], sizeof(stack[0]), "%.90s", value);
                continue;
            }
            flat_add(flat, stack[depth - 1], name, value);
        }
    }
}

static json_t *flatten(const struct resp *r)
{
    json_t *flat = json_object();
    if (strstr(r->ctype, "xml")) {
        flatten_xml(flat, r->body);
    } else if (strstr(r->ctype, "json")) {
        json_error_t je;
        json_t *root = json_loadb(r->body, r->body_len, 0, &je);
        if (root)
            flatten_json(flat, root, "");
        json_decref(root);
    }
    return flat;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: entitle-device --url URL --imsi IMSI --k HEX --opc HEX [options]\n"
            "  SIM:       --sqn HEX (SIM's highest accepted SQN, 12 hex) --ind-bits N --aka-prime\n"
            "             --state FILE (SQN array and token kept between runs)\n"
            "             --mcc MCC --mnc MNC (default: first 3 / next 2 digits of the IMSI)\n"
            "             --realm PREFIX (default nai.epc)\n"
            "  request:   --apps ap2004,ap2003 --version 2.0 --vers 0 --post --xml\n"
            "             --token T (skip EAP) --full-auth (ignore a stored token)\n"
            "             --terminal-id ID --vendor V --model M --sw S --app-name N\n"
            "             --notif-token T --notif-action N --operation OP --operation-targets L\n"
            "             --temporary-token T\n"
            "  transport: --cacert PEM | --insecure, --timeout-ms N, --count N (repeat)\n"
            "  tests:     --wrong-res --replay-eap --eap-delay-ms N --no-cookie --old-cookie\n"
            "  output:    --json (one JSON object); exit 0 document with TOKEN, 2 other HTTP\n"
            "             status, 3 transport/protocol error, 1 usage\n");
}

static int parse_opts(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.apps = "ap2004",
                       .version = "2.0",
                       .vers = "0",
                       .terminal_id = "358240051111110",
                       .vendor = "goog",
                       .model = "Pixel",
                       .sw = "14",
                       .realm = "nai.epc",
                       .ind_bits = 5,
                       .timeout_ms = 10000,
                       .count = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        bool *flag = NULL;
        long *num = NULL;
        if (strcmp(a, "--url") == 0)
            slot = &o->url;
        else if (strcmp(a, "--imsi") == 0)
            slot = &o->imsi;
        else if (strcmp(a, "--k") == 0)
            slot = &o->k_hex;
        else if (strcmp(a, "--opc") == 0)
            slot = &o->opc_hex;
        else if (strcmp(a, "--sqn") == 0)
            slot = &o->sqn_hex;
        else if (strcmp(a, "--state") == 0)
            slot = &o->state;
        else if (strcmp(a, "--apps") == 0)
            slot = &o->apps;
        else if (strcmp(a, "--version") == 0)
            slot = &o->version;
        else if (strcmp(a, "--vers") == 0)
            slot = &o->vers;
        else if (strcmp(a, "--token") == 0)
            slot = &o->token;
        else if (strcmp(a, "--terminal-id") == 0)
            slot = &o->terminal_id;
        else if (strcmp(a, "--vendor") == 0)
            slot = &o->vendor;
        else if (strcmp(a, "--model") == 0)
            slot = &o->model;
        else if (strcmp(a, "--sw") == 0)
            slot = &o->sw;
        else if (strcmp(a, "--realm") == 0)
            slot = &o->realm;
        else if (strcmp(a, "--mcc") == 0)
            slot = &o->mcc;
        else if (strcmp(a, "--mnc") == 0)
            slot = &o->mnc;
        else if (strcmp(a, "--cacert") == 0)
            slot = &o->cacert;
        else if (strcmp(a, "--notif-token") == 0)
            slot = &o->notif_token;
        else if (strcmp(a, "--notif-action") == 0)
            slot = &o->notif_action;
        else if (strcmp(a, "--operation") == 0)
            slot = &o->operation;
        else if (strcmp(a, "--operation-targets") == 0)
            slot = &o->operation_targets;
        else if (strcmp(a, "--app-name") == 0)
            slot = &o->app_name;
        else if (strcmp(a, "--temporary-token") == 0)
            slot = &o->temporary_token;
        else if (strcmp(a, "--insecure") == 0)
            flag = &o->insecure;
        else if (strcmp(a, "--post") == 0)
            flag = &o->post;
        else if (strcmp(a, "--xml") == 0)
            flag = &o->xml;
        else if (strcmp(a, "--json") == 0)
            flag = &o->json_out;
        else if (strcmp(a, "--aka-prime") == 0)
            flag = &o->aka_prime;
        else if (strcmp(a, "--wrong-res") == 0)
            flag = &o->wrong_res;
        else if (strcmp(a, "--replay-eap") == 0)
            flag = &o->replay_eap;
        else if (strcmp(a, "--no-cookie") == 0)
            flag = &o->no_cookie;
        else if (strcmp(a, "--old-cookie") == 0)
            flag = &o->old_cookie_style;
        else if (strcmp(a, "--full-auth") == 0)
            flag = &o->full_auth;
        else if (strcmp(a, "--eap-delay-ms") == 0)
            num = &o->eap_delay_ms;
        else if (strcmp(a, "--timeout-ms") == 0)
            num = &o->timeout_ms;
        else if (strcmp(a, "--ind-bits") == 0 || strcmp(a, "--count") == 0) {
            if (i + 1 >= argc)
                return -1;
            long v = strtol(argv[++i], NULL, 10);
            if (strcmp(a, "--count") == 0)
                o->count = (int)(v > 0 ? v : 1);
            else
                o->ind_bits = (unsigned)(v >= 0 && v <= 8 ? v : 5);
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "entitle-device: unknown option %s\n", a);
            return -1;
        }
        if (flag) {
            *flag = true;
        } else if (i + 1 >= argc) {
            return -1;
        } else if (slot) {
            *slot = argv[++i];
        } else {
            *num = strtol(argv[++i], NULL, 10);
        }
    }
    if (!o->url || !o->imsi || !o->k_hex || !o->opc_hex)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(&o, argc, argv) != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    size_t il = strlen(o.imsi);
    static char mcc[4], mnc[4];
    if (!o.mcc) {
        snprintf(mcc, sizeof(mcc), "%.3s", o.imsi);
        o.mcc = mcc;
    }
    if (!o.mnc) {
        snprintf(mnc, sizeof(mnc), "%.2s", il > 5 ? o.imsi + 3 : "01");
        o.mnc = mnc;
    }
    struct sim s;
    memset(&s, 0, sizeof(s));
    if (!hex_arg(o.k_hex, s.k, 16) || !hex_arg(o.opc_hex, s.opc, 16)) {
        fprintf(stderr, "entitle-device: --k and --opc take 32 hex digits\n");
        return EXIT_USAGE;
    }
    ent_sqn_usim_init(&s.usim, o.ind_bits, ENT_SQN_DELTA_DEFAULT);
    if (o.sqn_hex) {
        uint8_t b[6];
        if (!hex_arg(o.sqn_hex, b, 6)) {
            fprintf(stderr, "entitle-device: --sqn takes 12 hex digits\n");
            return EXIT_USAGE;
        }
        uint64_t seq = ent_sqn_seq(ent_sqn_from_bytes(b), o.ind_bits);
        for (unsigned i = 0; i < (1u << o.ind_bits); i++)
            s.usim.seq_ms[i] = seq;
    }
    if (o.state)
        state_load(&s, o.state);
    if (o.token)
        snprintf(s.token, sizeof(s.token), "%s", o.token);
    if (o.full_auth)
        s.token[0] = '\0';

    char apps[16][8];
    size_t n_apps = 0;
    char appbuf[256];
    snprintf(appbuf, sizeof(appbuf), "%s", o.apps);
    for (char *save = NULL, *t = strtok_r(appbuf, ",", &save); t && n_apps < 16;
         t = strtok_r(NULL, ",", &save))
        snprintf(apps[n_apps++], sizeof(apps[0]), "%.7s", t);
    const char *accept = o.xml ? "text/vnd.wap.connectivity-xml" : "application/json";

    struct conn c = {
        .fd = -1, .timeout_ms = o.timeout_ms, .cacert = o.cacert, .insecure = o.insecure};
    if (url_parse(&c, o.url) != 0) {
        fprintf(stderr, "entitle-device: bad --url\n");
        return EXIT_USAGE;
    }
    int exit_status = EXIT_DOC;
    for (int iter = 0; iter < o.count; iter++) {
        struct outcome out;
        memset(&out, 0, sizeof(out));
        out.auth = "none";
        char err[512] = "";
        int rc = 0;
        if (o.temporary_token) {
            struct kv kv[48];
            size_t n = build_params(&o, kv, "temporary_token", o.temporary_token, apps, n_apps);
            out.auth = "temporary_token";
            rc = send_request(&c, &o, accept, kv, n, &out.final, err, sizeof(err));
        } else if (s.token[0]) {
            struct kv kv[48];
            size_t n = build_params(&o, kv, "token", s.token, apps, n_apps);
            out.auth = "token";
            rc = send_request(&c, &o, accept, kv, n, &out.final, err, sizeof(err));
            if (rc == 0 && out.final.status == 511) {
                /* PROTOCOL.md §4.4: drop the token, one full EAP-AKA retry. */
                resp_free(&out.final);
                s.token[0] = '\0';
                out.token_retry = true;
                rc = full_auth(&c, &s, &o, apps, n_apps, accept, &out, err, sizeof(err));
            }
        } else {
            rc = full_auth(&c, &s, &o, apps, n_apps, accept, &out, err, sizeof(err));
        }
        json_t *flat = rc == 0 && out.final.body ? flatten(&out.final) : json_object();
        const char *tok = json_string_value(json_object_get(flat, "Token.token"));
        if (rc == 0 && out.final.status == 200 && tok)
            snprintf(s.token, sizeof(s.token), "%s", tok);
        else if (rc == 0 && out.final.status == 511)
            s.token[0] = '\0';
        int status = rc != 0 ? EXIT_PROTO : (out.final.status == 200 && tok) ? EXIT_DOC : EXIT_HTTP;
        if (o.json_out) {
            json_t *j = json_object();
            json_object_set_new(j, "status", json_integer(out.final.status));
            json_object_set_new(j, "auth", json_string(out.auth));
            json_object_set_new(j, "challenges", json_integer(out.challenges));
            json_object_set_new(j, "resyncs", json_integer(out.resyncs));
            json_object_set_new(j, "token_retry", json_boolean(out.token_retry));
            json_object_set_new(j, "cookies_set", json_integer(out.cookies_set));
            if (out.replay_status)
                json_object_set_new(j, "replay_status", json_integer(out.replay_status));
            json_object_set_new(j, "cookie", json_string(out.cookie));
            json_object_set_new(j, "content_type", json_string(out.final.ctype));
            json_object_set_new(j, "retry_after", json_string(out.final.retry_after));
            json_object_set_new(
                j, "document",
                json_stringn(out.final.body ? out.final.body : "", out.final.body_len));
            json_object_set_new(j, "params", json_incref(flat));
            json_object_set_new(j, "token", json_string(s.token));
            if (err[0])
                json_object_set_new(j, "error", json_string(err));
            char *txt = json_dumps(j, JSON_COMPACT);
            printf("%s\n", txt);
            free(txt);
            json_decref(j);
        } else {
            printf("HTTP %d (%s, auth %s, %d challenge(s), %d resync(s))\n", out.final.status,
                   out.final.ctype[0] ? out.final.ctype : "-", out.auth, out.challenges,
                   out.resyncs);
            if (err[0])
                printf("error: %s\n", err);
            const char *k;
            json_t *v;
            json_object_foreach(flat, k, v) printf("  %s = %s\n", k, json_string_value(v));
        }
        fflush(stdout);
        json_decref(flat);
        resp_free(&out.final);
        if (status != EXIT_DOC)
            exit_status = status;
    }
    if (o.state)
        state_save(&s, o.state);
    conn_close(&c);
    if (c.ctx)
        SSL_CTX_free(c.ctx);
    return exit_status;
}
