/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only helpers for black-box tests of daemons: free loopback ports and a blocking
 * HTTP/1.1 client over plain TCP with a receive timeout. Header-only (static functions) since
 * unit tests are single files. Loopback only, every call bounded in time. */
#ifndef ENT_TEST_NET_H
#define ENT_TEST_NET_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A port that was free a moment ago on 127.0.0.1, taken from below the kernel's ephemeral
 * range (32768-60999 by default): a port from bind(0) lies inside that range and can be
 * given to any outgoing connection (a client dialling a server in the same test) before the
 * test listens on it. Starts at a random place per process and never hands out the same port
 * twice in one process. */
static int ent_test_free_port(void)
{
    enum { LO = 20000, HI = 32000 };
    static unsigned next;
    if (next == 0)
        next = LO + (unsigned)((getpid() * 7919u) ^ (unsigned)time(NULL)) % (HI - LO);
    for (int tries = 0; tries < 500; tries++) {
        unsigned port = next++;
        if (next >= HI)
            next = LO;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc == 0)
            return (int)port;
    }
    return -1;
}

/* Connects to 127.0.0.1:port; returns the fd, or -errno (e.g. -ECONNREFUSED). */
static int ent_test_connect(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int ent_test_send_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Reads one response with a Content-Length body (or until close). Returns the status code,
 * or -1 on timeout/close before a full response. body (optional) gets a heap copy. */
static int ent_test_read_response(int fd, char **body)
{
    char buf[65536];
    size_t len = 0;
    for (;;) {
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
            size_t have = len - (size_t)(end + 4 - buf);
            if (have >= want) {
                int status = -1;
                sscanf(buf, "HTTP/1.%*d %d", &status);
                if (body) {
                    *body = malloc(want + 1);
                    memcpy(*body, end + 4, want);
                    (*body)[want] = '\0';
                }
                return status;
            }
        }
        if (len >= sizeof(buf) - 1)
            return -1;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
}

/* GET path on a fresh connection; returns the status (-ECONNREFUSED etc. on connect error). */
static int ent_test_http_get(int port, const char *path, char **body, int timeout_ms)
{
    int fd = ent_test_connect(port, timeout_ms);
    if (fd < 0)
        return fd;
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    int status = ent_test_send_all(fd, req) == 0 ? ent_test_read_response(fd, body) : -1;
    close(fd);
    return status;
}

/* Polls GET path until it answers `want` or timeout_ms passes. Returns the last status. */
static int ent_test_http_wait_status(int port, const char *path, int want, int timeout_ms)
{
    int status = -1;
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        status = ent_test_http_get(port, path, NULL, 1000);
        if (status == want)
            return status;
        usleep(50 * 1000);
    }
    return status;
}

static double ent_test_timeout_scale(void)
{
    const char *m = getenv("ENTITLE_TEST_TIMEOUT_MULTIPLIER");
    double v = m ? atof(m) : 1.0;
    return v > 0 ? v : 1.0;
}

#endif
