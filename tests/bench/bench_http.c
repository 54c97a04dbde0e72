/* SPDX-License-Identifier: Apache-2.0 */
/* bench_http: the HTTP core on ONE libuv loop answering every request with the same
 * 128-byte body, for tests/bench/http_vs_nginx.sh to measure against nginx. It prints
 * "port N" once listening and exits 0 on SIGINT/SIGTERM after closing everything.
 *
 *   bench_http [--listen 127.0.0.1:0] [--tls cert.pem key.pem] */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "ent/http.h"
#include "ent/log.h"
#include "ent/tls.h"

#define BODY_LEN 128

static char body[BODY_LEN];
static uv_signal_t sigint, sigterm;

static void on_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud)
{
    (void)ud;
    static const struct ent_http_header ct = {"Content-Type", 12, "text/html", 9};
    (void)ent_http_respond(srv, req->id, 200, &ct, 1, body, sizeof(body));
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    struct ent_http_server *srv = s->data;
    ent_http_server_close(srv, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--tls") == 0 && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--listen host:port] [--tls cert key]\n", argv[0]);
            return 2;
        }
    }
    ent_log_init("bench_http", ENT_LOG_WARN);
    memset(body, 'x', sizeof(body));

    SSL_CTX *tls = NULL;
    if (cert != NULL) {
        char err[256];
        if (ent_tls_server_ctx_new(&tls, cert, key, NULL, err, sizeof(err)) != ENT_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct ent_http_server srv;
    struct ent_http_server_cfg cfg = {
        .listen = listen, .max_connections = 4096, .name = "bench", .tls = tls};
    ent_err rc = ent_http_server_init(&srv, &loop, &cfg, on_request, NULL);
    if (tls != NULL)
        SSL_CTX_free(tls);
    if (rc != ENT_OK) {
        fprintf(stderr, "listen %s: %s\n", listen, ent_strerror(rc));
        return 1;
    }
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    sigint.data = sigterm.data = &srv;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    printf("port %d\n", ent_http_server_port(&srv));
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    const struct ent_http_server_stats *st = ent_http_server_stats(&srv);
    fprintf(stderr, "requests %llu conns %llu\n", (unsigned long long)st->requests,
            (unsigned long long)st->conns_accepted);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
