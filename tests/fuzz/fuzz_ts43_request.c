/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer driver for the gateway's TS.43 request parser (gateway/request.h): the input is
 * split into a method bit, the query string, the Accept, Content-Type and Cookie headers and
 * the body (segments separated by the bytes "\n--\n"), assembled into an ent_http_request as
 * the HTTP core would hand it over, and parsed. Every input must give ENT_OK or ENT_EINVAL
 * with a 400/405 and a reason, and an accepted request must have consistent AppID counts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

#define SEGMENTS 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool post = data[0] & 1;
    const char *seg[SEGMENTS] = {"", "", "", "", ""};
    size_t len[SEGMENTS] = {0, 0, 0, 0, 0};
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    for (int i = 0; i < SEGMENTS; i++) {
        const char *end = i + 1 < SEGMENTS ? memmem(p, left, "\n--\n", 4) : NULL;
        size_t n = end ? (size_t)(end - p) : left;
        seg[i] = p;
        len[i] = n;
        if (!end)
            break;
        p = end + 4;
        left -= n + 4;
    }
    /* The HTTP core hands over NUL-terminated copies of the target and the header values. */
    char target[4096] = "/";
    size_t qlen = len[0] < sizeof(target) - 3 ? len[0] : sizeof(target) - 3;
    if (qlen > 0) {
        target[1] = '?';
        memcpy(target + 2, seg[0], qlen);
        target[2 + qlen] = '\0';
    }
    struct ent_http_header headers[3] = {
        {"Accept", 6, seg[1], len[1]},
        {"Content-Type", 12, seg[2], len[2]},
        {"Cookie", 6, seg[3], len[3]},
    };
    struct ent_http_request http = {
        .id = 1,
        .method = post ? "POST" : "GET",
        .target = target,
        .target_len = strlen(target),
        .path = target,
        .path_len = 1,
        .query = qlen > 0 ? target + 2 : NULL,
        .query_len = qlen,
        .headers = headers,
        .n_headers = 3,
        .body = seg[4],
        .body_len = len[4],
        .http_minor = 1,
        .tls = true,
    };
    static struct gw_req req; /* large: keep it off the stack */
    struct gw_req_error err = {0};
    ent_err rc = gw_req_parse(&req, &err, &http);
    if (rc == ENT_OK) {
        if (req.n_known > req.n_apps || req.n_apps > GW_APPS_MAX)
            abort();
    } else if (rc != ENT_EINVAL || (err.status != 400 && err.status != 405) || !err.reason) {
        abort();
    }
    return 0;
}
