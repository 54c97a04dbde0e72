/* SPDX-License-Identifier: Apache-2.0 */
/* The provisioning REST API (docs/admin-api.yaml is its contract): routes, bearer-token
 * scopes, JSON bodies, ETag/If-Match, and the answers. Handlers run on the loop thread;
 * the few that wait for authd (subscriber create and delete, token revocation, import)
 * answer from the authd callback, by request id. import.c holds the NDJSON import.
 *
 * Every answer is JSON (import: NDJSON). Errors have one shape:
 *   {"error":"validation","field":"imsi","message":"must be 6-15 digits"}
 * 400 malformed body or wrong JSON type, 422 well-formed but unacceptable value (both name
 * the field), 401 missing/unknown token, 403 read token writing, 404, 405, 409 exists or in
 * use, 412 If-Match does not match the current ETag, 502 authd answered an error (e.g.
 * EUNSUPPORTED), 503/504 authd unreachable or slow (Retry-After). */
#ifndef ENTITLE_POLICYD_ADMIN_H
#define ENTITLE_POLICYD_ADMIN_H

#include <jansson.h>

#include "events.h"
#include "policyd.h"

/* Loop thread: the HTTP handler of the admin listener (ud = struct policyd). */
void pd_admin_on_request(struct ent_http_server *srv, struct ent_http_request *req, void *ud);

/* Loads admin.tokens_file: one token per line, optionally followed by scopes
 * ("read", "write", "read,write"); no scopes means both. '#' starts a comment.
 * Errors: ENT_ECONFIG (unreadable, empty, a token shorter than 16 characters). */
ent_err pd_admin_tokens_load(struct policyd *p, const char *path);
void pd_admin_tokens_free(struct policyd *p);

/* Shared with import.c. */
void pd_admin_respond_json(struct policyd *p, uint64_t id, const char *route, const char *method,
                           int status, json_t *body, uint64_t etag_version);
void pd_admin_respond_error(struct policyd *p, uint64_t id, const char *route, const char *method,
                            int status, const char *error, const char *field, const char *message);
void pd_admin_count(const char *route, const char *method, int status);
/* Pulls k/opc/op/sqn/amf out of a subscriber body (removing them from obj and wiping the
 * strings). *has is false when no "k" was given. false with *err on a bad value. */
bool pd_admin_take_credentials(json_t *obj, struct pd_credentials *c, bool *has,
                               struct pd_verr *err);

/* import.c: POST /v1/import, streamed both ways when the core streams its body (see
 * pd_admin_stream_select), else from the whole body. Answers req->id itself. */
void pd_import_start(struct policyd *p, const struct ent_http_request *req);
/* The admin listener's ent_http_stream_select_cb: claims POST /v1/import. */
bool pd_admin_stream_select(struct ent_http_server *srv, const struct ent_http_request *head,
                            void *ud);
size_t pd_import_inflight(const struct policyd *p);
void pd_import_close_all(struct policyd *p);

#endif
