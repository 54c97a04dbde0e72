/* SPDX-License-Identifier: Apache-2.0 */
/* authd's RPCs: one handler per message of proto/auth.proto. Each RPC becomes one job on the
 * libuv thread pool (the engine blocks on the store and spends its CPU in AES/HMAC), and the
 * reply is sent from the loop thread in the job's after-work callback. The request is copied
 * (packed and unpacked) because the bus owns it only during authd_rpc().
 *
 *   authd_rpc()  (loop)  ──uv_queue_work──▶  on_job_work()  (pool: rpc_<name>())
 *                                                  │
 *   ent_daemon_reply()  ◀── on_job_done()  (loop) ─┘
 *
 * Verdicts (authentication failure, invalid token) are Status OK with the verdict in the
 * body; a non-OK Status means authd could not decide (store down, bad request shape). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "authd.h"
#include "credentials.h"
#include "exchange.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "token.h"

static ent_histogram rpc_latency = ENT_HISTOGRAM(
    "entitle_authd_rpc_duration_seconds", "authd RPC latency, queueing included",
    ENT_BUCKETS(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), "rpc");
static ent_counter rpc_errors = ENT_COUNTER(
    "entitle_authd_rpc_errors_total", "authd RPCs answered with a non-OK status", "rpc", "reason");

struct rpc_job {
    uv_work_t work;
    struct ent_daemon *d;
    struct authd *a;
    uint64_t call_id;
    uint64_t queued_ns;
    Entitle__V1__Request *req; /* unpacked copy */
    const char *name;
    ent_err rc;
    const char *msg; /* static text for a non-OK status */
    /* results */
    struct authd_result ar;
    struct authd_token_info ti;
    uint64_t gen;
    char *temp;
    uint64_t temp_exp;
    const char *reason;
};

/* ---- handlers (thread pool) ------------------------------------------------------------- */

static void rpc_auth_start(struct rpc_job *j)
{
    const Entitle__V1__AuthStartRequest *r = j->req->auth_start;
    j->rc = authd_exchange_start(j->a, r->eap_identity, r->params, &j->ar);
}

static void rpc_auth_continue(struct rpc_job *j)
{
    const Entitle__V1__AuthContinueRequest *r = j->req->auth_continue;
    j->rc = authd_exchange_continue(j->a, r->ticket.data, r->ticket.len, r->eap_packet.data,
                                    r->eap_packet.len, &j->ar);
}

static void rpc_token_verify(struct rpc_job *j)
{
    const Entitle__V1__TokenVerifyRequest *r = j->req->token_verify;
    j->rc = authd_token_verify(j->a, r->token, r->imsi, &j->ti);
}

static void rpc_token_revoke(struct rpc_job *j)
{
    j->rc = authd_token_revoke(j->a, j->req->token_revoke->subscriber_id, &j->gen);
    if (j->rc == ENT_EINVAL)
        j->msg = "subscriber_id must be an IMSI";
}

static void rpc_credential_put(struct rpc_job *j)
{
    const Entitle__V1__CredentialPutRequest *r = j->req->credential_put;
    j->rc = authd_credentials_put(j->a, r->subscriber_id, r->k.data, r->k.len, r->opc.data,
                                  r->opc.len, r->op.data, r->op.len, r->sqn.data, r->sqn.len,
                                  r->amf.data, r->amf.len);
    if (j->rc == ENT_EINVAL)
        j->msg = "want an IMSI, 16-byte K, exactly one of 16-byte OPc/OP, 6-byte SQN, 2-byte AMF";
    /* The request copy held K: wipe it before it is freed. */
    if (r->k.data)
        OPENSSL_cleanse(r->k.data, r->k.len);
    if (r->opc.data)
        OPENSSL_cleanse(r->opc.data, r->opc.len);
    if (r->op.data)
        OPENSSL_cleanse(r->op.data, r->op.len);
}

static void rpc_credential_delete(struct rpc_job *j)
{
    const char *imsi = j->req->credential_delete->subscriber_id;
    j->rc = authd_credentials_delete(j->a, imsi);
    if (j->rc == ENT_EINVAL)
        j->msg = "subscriber_id must be an IMSI";
    if (j->rc == ENT_OK) /* a deleted subscriber keeps no valid token */
        j->rc = authd_token_revoke(j->a, imsi, &j->gen);
}

static void rpc_temporary_token(struct rpc_job *j)
{
    const Entitle__V1__TemporaryTokenRequest *r = j->req->temporary_token;
    j->rc = authd_token_temporary(j->a, r->token, (const char *const *)r->operation_targets,
                                  r->n_operation_targets, r->app_id, &j->temp, &j->temp_exp,
                                  &j->reason);
    if (j->rc == ENT_EINVAL)
        j->msg = "want 1..16 operation_targets and an app_id of [A-Za-z0-9._-]";
    else if (j->rc == ENT_EAUTH)
        j->msg = j->reason;
}

static void on_job_work(uv_work_t *w)
{
    struct rpc_job *j = ENT_CONTAINER_OF(w, struct rpc_job, work);
    const Entitle__V1__RequestHeader *h = j->req->header;

    /* Work whose caller has given up is not started (the bus would drop the reply). */
    if (h && h->deadline_unix_ms && ent_wall_ms() > h->deadline_unix_ms) {
        j->rc = ENT_ETIMEDOUT;
        return;
    }
    switch (j->req->body_case) {
    case ENTITLE__V1__REQUEST__BODY_AUTH_START:
        rpc_auth_start(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE:
        rpc_auth_continue(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY:
        rpc_token_verify(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE:
        rpc_token_revoke(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT:
        rpc_credential_put(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE:
        rpc_credential_delete(j);
        break;
    case ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN:
        rpc_temporary_token(j);
        break;
    default:
        j->rc = ENT_EUNSUPPORTED;
        break;
    }
}

/* ---- replies (loop thread) -------------------------------------------------------------- */

static Entitle__V1__AuthOutcome outcome_pb(enum authd_outcome o)
{
    switch (o) {
    case AUTHD_CHALLENGE:
        return ENTITLE__V1__AUTH_OUTCOME__AUTH_CHALLENGE;
    case AUTHD_SUCCESS:
        return ENTITLE__V1__AUTH_OUTCOME__AUTH_SUCCESS;
    default:
        return ENTITLE__V1__AUTH_OUTCOME__AUTH_FAILURE;
    }
}

static void job_reply(struct rpc_job *j)
{
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    Entitle__V1__AuthResponse auth = ENTITLE__V1__AUTH_RESPONSE__INIT;
    Entitle__V1__TokenVerifyResponse tv = ENTITLE__V1__TOKEN_VERIFY_RESPONSE__INIT;
    Entitle__V1__TokenRevokeResponse tr = ENTITLE__V1__TOKEN_REVOKE_RESPONSE__INIT;
    Entitle__V1__CredentialPutResponse cp = ENTITLE__V1__CREDENTIAL_PUT_RESPONSE__INIT;
    Entitle__V1__CredentialDeleteResponse cd = ENTITLE__V1__CREDENTIAL_DELETE_RESPONSE__INIT;
    Entitle__V1__TemporaryTokenResponse tt = ENTITLE__V1__TEMPORARY_TOKEN_RESPONSE__INIT;

    if (j->rc != ENT_OK) {
        ent_counter_inc(&rpc_errors, j->name, ent_err_name(j->rc));
        ENT_LOG_WARN(j->req->header ? j->req->header->trace_id : NULL, "authd.rpc_error",
                     ENT_KV_STR("rpc", j->name), ENT_KV_STR("error", ent_err_name(j->rc)));
        ent_daemon_reply_error(j->d, j->call_id, j->rc, j->msg ? j->msg : ent_strerror(j->rc));
        return;
    }
    resp.status = &st;
    switch (j->req->body_case) {
    case ENTITLE__V1__REQUEST__BODY_AUTH_START:
    case ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE:
        auth.outcome = outcome_pb(j->ar.outcome);
        auth.eap_packet = (ProtobufCBinaryData){j->ar.eap_len, j->ar.eap};
        auth.ticket = (ProtobufCBinaryData){j->ar.ticket_len, j->ar.ticket};
        auth.token = j->ar.token ? j->ar.token : "";
        auth.token_expiry_unix = j->ar.token_expiry_ms / 1000;
        auth.subscriber_id = j->ar.subscriber_id;
        auth.params = j->ar.params;
        auth.failure_reason = (char *)(j->ar.reason ? j->ar.reason : "");
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_AUTH;
        resp.auth = &auth;
        break;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY:
        tv.valid = j->ti.valid;
        tv.subscriber_id = j->ti.subscriber_id;
        tv.expiry_unix = j->ti.expires_ms / 1000;
        tv.token_generation = j->ti.generation;
        tv.temporary = j->ti.temporary;
        tv.n_operation_targets = j->ti.n_targets;
        tv.operation_targets = j->ti.targets;
        tv.app_id = j->ti.app_id;
        tv.reason = (char *)(j->ti.reason ? j->ti.reason : "");
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_TOKEN_VERIFY;
        resp.token_verify = &tv;
        break;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE:
        tr.token_generation = j->gen;
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_TOKEN_REVOKE;
        resp.token_revoke = &tr;
        break;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT:
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_CREDENTIAL_PUT;
        resp.credential_put = &cp;
        break;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE:
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_CREDENTIAL_DELETE;
        resp.credential_delete = &cd;
        break;
    case ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN:
        tt.temporary_token = j->temp;
        tt.expiry_unix = j->temp_exp / 1000;
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_TEMPORARY_TOKEN;
        resp.temporary_token = &tt;
        break;
    default:
        break;
    }
    ent_daemon_reply(j->d, j->call_id, &resp);
}

static void job_free(struct rpc_job *j)
{
    authd_result_free(&j->ar);
    authd_token_info_free(&j->ti);
    if (j->temp) {
        OPENSSL_cleanse(j->temp, strlen(j->temp));
        free(j->temp);
    }
    entitle__v1__request__free_unpacked(j->req, NULL);
    free(j);
}

static void on_job_done(uv_work_t *w, int status)
{
    struct rpc_job *j = ENT_CONTAINER_OF(w, struct rpc_job, work);
    struct authd *a = j->a;

    if (status == UV_ECANCELED)
        j->rc = ENT_ECLOSED;
    job_reply(j);
    ent_histogram_observe(&rpc_latency, (double)(ent_now_ns() - j->queued_ns) / 1e9, j->name);
    job_free(j);
    if (atomic_fetch_sub(&a->jobs, 1) == 1 && a->fini_pending)
        authd_fini(a);
}

/* Name for metrics: a closed set. */
static const char *rpc_label(Entitle__V1__Request__BodyCase c)
{
    switch (c) {
    case ENTITLE__V1__REQUEST__BODY_AUTH_START:
        return "auth_start";
    case ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE:
        return "auth_continue";
    case ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY:
        return "token_verify";
    case ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE:
        return "token_revoke";
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT:
        return "credential_put";
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE:
        return "credential_delete";
    case ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN:
        return "temporary_token";
    default:
        return "other";
    }
}

static bool body_present(const Entitle__V1__Request *req)
{
    switch (req->body_case) {
    case ENTITLE__V1__REQUEST__BODY_AUTH_START:
        return req->auth_start != NULL;
    case ENTITLE__V1__REQUEST__BODY_AUTH_CONTINUE:
        return req->auth_continue != NULL;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_VERIFY:
        return req->token_verify != NULL;
    case ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE:
        return req->token_revoke != NULL;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT:
        return req->credential_put != NULL;
    case ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE:
        return req->credential_delete != NULL;
    case ENTITLE__V1__REQUEST__BODY_TEMPORARY_TOKEN:
        return req->temporary_token != NULL;
    default:
        return false;
    }
}

void authd_rpc(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req)
{
    struct authd *a = d->priv;
    const char *name = rpc_label(req->body_case);
    uint8_t stackbuf[4096];
    uint8_t *buf = stackbuf;
    size_t n;
    struct rpc_job *j;

    if (!body_present(req)) {
        ent_counter_inc(&rpc_errors, name, ent_err_name(ENT_EUNSUPPORTED));
        ent_daemon_reply_error(d, call_id, ENT_EUNSUPPORTED, "authd does not serve this RPC");
        return;
    }
    n = entitle__v1__request__get_packed_size(req);
    if (n > sizeof(stackbuf))
        buf = malloc(n);
    j = calloc(1, sizeof(*j));
    if (buf == NULL || j == NULL)
        goto nomem;
    entitle__v1__request__pack(req, buf);
    j->req = entitle__v1__request__unpack(NULL, n, buf);
    OPENSSL_cleanse(buf, n); /* CredentialPut carries K */
    if (buf != stackbuf)
        free(buf);
    buf = NULL;
    if (j->req == NULL)
        goto nomem;
    j->d = d;
    j->a = a;
    j->call_id = call_id;
    j->name = name;
    j->queued_ns = ent_now_ns();
    j->work.data = j;
    atomic_fetch_add(&a->jobs, 1);
    if (uv_queue_work(&d->loop, &j->work, on_job_work, on_job_done) != 0) {
        atomic_fetch_sub(&a->jobs, 1);
        entitle__v1__request__free_unpacked(j->req, NULL);
        free(j);
        ent_daemon_reply_error(d, call_id, ENT_EINTERNAL, "cannot queue work");
        return;
    }
    return;
nomem:
    if (buf != NULL && buf != stackbuf)
        free(buf);
    free(j);
    ent_daemon_reply_error(d, call_id, ENT_ENOMEM, "out of memory");
}
