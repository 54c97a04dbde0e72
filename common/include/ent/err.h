/* SPDX-License-Identifier: Apache-2.0 */
/* Entitle's one error list. ENT_ERR_MAP generates the ent_err enum, its text, its name
 * (used as the `reason` metric label) and its HTTP status; the values equal the bus
 * contract's entitle.v1.Code (proto/common.proto), which a unit test checks. Foreign codes
 * (errno, libuv, NNG, SQLite) are converted once, at the boundary. */
#ifndef ENT_ERR_H
#define ENT_ERR_H

#define ENT_ERR_MAP(XX)                                                                            \
    XX(EINVAL, "invalid argument", 400)                                                           \
    XX(ENOMEM, "out of memory", 500)                                                              \
    XX(ENOTFOUND, "not found", 404)                                                               \
    XX(EEXIST, "already exists", 409)                                                             \
    XX(ECONFLICT, "version conflict", 412)                                                        \
    XX(ETIMEDOUT, "deadline exceeded", 504)                                                       \
    XX(ESATURATED, "too many requests in flight", 503)                                            \
    XX(EUNAVAIL, "peer unavailable", 503)                                                         \
    XX(ECLOSED, "closed or draining", 503)                                                        \
    XX(EIO, "i/o error", 500)                                                                     \
    XX(ESTORE, "store error", 500)                                                                \
    XX(ECONFIG, "configuration error", 500)                                                       \
    XX(EPROTO, "protocol error", 502)                                                             \
    XX(ETOOBIG, "too large", 413)                                                                 \
    XX(EAUTH, "authentication failed", 403)                                                       \
    XX(EPERM, "permission denied", 403)                                                           \
    XX(ETLS, "tls error", 502)                                                                    \
    XX(EINTERNAL, "internal error", 500)                                                          \
    XX(EEXPIRED, "expired", 410)                                                                  \
    XX(EUNSUPPORTED, "unsupported", 501)

typedef enum ent_err {
    ENT_OK = 0,
#define XX(name, text, http) ENT_##name,
    ENT_ERR_MAP(XX)
#undef XX
        ENT_ERR_COUNT_
} ent_err;

/* Static strings; unknown codes map to "unknown error" / "EUNKNOWN" / 500. */
const char *ent_strerror(ent_err e);
const char *ent_err_name(ent_err e);
int ent_err_http_status(ent_err e);

/* Boundary conversions. errno values and libuv's negative UV_E* codes. */
ent_err ent_err_from_errno(int err);
ent_err ent_err_from_uv(int uverr);

#endif
