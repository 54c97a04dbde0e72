/* SPDX-License-Identifier: Apache-2.0 */
/* Text, names and HTTP statuses of ent_err, generated from ENT_ERR_MAP, and the one place
 * where errno and libuv codes become ent_err. */
#include <errno.h>
#include <uv.h>

#include "ent/err.h"

const char *ent_strerror(ent_err e)
{
    switch (e) {
    case ENT_OK:
        return "ok";
#define XX(name, text, http)                                                                       \
    case ENT_##name:                                                                               \
        return text;
        ENT_ERR_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *ent_err_name(ent_err e)
{
    switch (e) {
    case ENT_OK:
        return "OK";
#define XX(name, text, http)                                                                       \
    case ENT_##name:                                                                               \
        return #name;
        ENT_ERR_MAP(XX)
#undef XX
    default:
        return "EUNKNOWN";
    }
}

int ent_err_http_status(ent_err e)
{
    switch (e) {
    case ENT_OK:
        return 200;
#define XX(name, text, http)                                                                       \
    case ENT_##name:                                                                               \
        return http;
        ENT_ERR_MAP(XX)
#undef XX
    default:
        return 500;
    }
}

ent_err ent_err_from_errno(int err)
{
    switch (err) {
    case 0:
        return ENT_OK;
    case EINVAL:
        return ENT_EINVAL;
    case ENOMEM:
        return ENT_ENOMEM;
    case ENOENT:
        return ENT_ENOTFOUND;
    case EEXIST:
        return ENT_EEXIST;
    case ETIMEDOUT:
        return ENT_ETIMEDOUT;
    case EACCES:
    case EPERM:
        return ENT_EPERM;
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return ENT_EUNAVAIL;
    case E2BIG:
    case EFBIG:
    case EMSGSIZE:
        return ENT_ETOOBIG;
    case ENOTSUP:
        return ENT_EUNSUPPORTED;
    default:
        return ENT_EIO;
    }
}

ent_err ent_err_from_uv(int uverr)
{
    if (uverr == 0)
        return ENT_OK;
    if (uverr == UV_EOF || uverr == UV_ECANCELED)
        return ENT_ECLOSED;
    /* libuv's codes are negated errno values on Unix. */
    return ent_err_from_errno(-uverr);
}
