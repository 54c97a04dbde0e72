/* SPDX-License-Identifier: Apache-2.0 */
/* policyd as a client of authd: CredentialPut, CredentialDelete and TokenRevoke over the
 * bus. Credentials pass through here on their way to authd and nowhere else: the request
 * is packed by the bus (which copies what it sends), then this file's copy is wiped by the
 * caller. Every call carries an idempotency key (NNG REQ may resend). Results come back on
 * the loop thread through pd_authd_cb. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ent/metrics.h"
#include "events.h"

static ent_counter authd_calls = ENT_COUNTER("entitle_policyd_authd_calls_total",
                                             "Calls to authd, by RPC and result", "rpc", "result");

struct authd_call {
    struct policyd *p;
    pd_authd_cb cb;
    void *ud;
    const char *rpc;
};

static void on_authd_reply(ent_err status, Entitle__V1__Response *resp, void *ud)
{
    struct authd_call *c = ud;
    bool answered = false;
    if (status == ENT_OK) {
        answered = true;
        if (resp->status && resp->status->code != ENTITLE__V1__CODE__OK)
            status = (ent_err)resp->status->code;
    }
    ent_counter_inc(&authd_calls, c->rpc, ent_err_name(status));
    if (status != ENT_OK)
        ENT_LOG_WARN(NULL, "policyd.authd_failed", ENT_KV_STR("rpc", c->rpc),
                     ENT_KV_STR("reason", ent_err_name(status)), ENT_KV_BOOL("answered", answered));
    if (c->cb)
        c->cb(c->p, status, answered, resp, c->ud);
    if (resp)
        entitle__v1__response__free_unpacked(resp, NULL);
    free(c);
}

static ent_err authd_send(struct policyd *p, const char *rpc, Entitle__V1__Request *req,
                          pd_authd_cb cb, void *ud)
{
    if (!p->authd_on) {
        ent_counter_inc(&authd_calls, rpc, "no_authd");
        return ENT_EUNAVAIL;
    }
    struct authd_call *c = malloc(sizeof(*c));
    if (!c)
        return ENT_ENOMEM;
    *c = (struct authd_call){.p = p, .cb = cb, .ud = ud, .rpc = rpc};
    uint8_t raw[12];
    char key[32] = "";
    if (RAND_bytes(raw, sizeof(raw)) == 1)
        ent_hex_encode(raw, sizeof(raw), key);
    Entitle__V1__RequestHeader hdr = ENTITLE__V1__REQUEST_HEADER__INIT;
    hdr.idempotency_key = key;
    req->header = &hdr;
    ent_err rc = ent_bus_call(&p->authd, req, p->cfg->upstream_timeout, NULL, on_authd_reply, c);
    req->header = NULL;
    if (rc != ENT_OK) {
        ent_counter_inc(&authd_calls, rpc, ent_err_name(rc));
        free(c);
    }
    return rc;
}

ent_err pd_authd_credential_put(struct policyd *p, const char *imsi,
                                const struct pd_credentials *cr, pd_authd_cb cb, void *ud)
{
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__CredentialPutRequest put = ENTITLE__V1__CREDENTIAL_PUT_REQUEST__INIT;
    put.subscriber_id = (char *)imsi;
    put.k.data = (uint8_t *)cr->k;
    put.k.len = sizeof(cr->k);
    if (cr->has_opc) {
        put.opc.data = (uint8_t *)cr->opc;
        put.opc.len = sizeof(cr->opc);
    } else {
        put.op.data = (uint8_t *)cr->op;
        put.op.len = sizeof(cr->op);
    }
    put.sqn.data = (uint8_t *)cr->sqn;
    put.sqn.len = sizeof(cr->sqn);
    put.amf.data = (uint8_t *)cr->amf;
    put.amf.len = sizeof(cr->amf);
    req.body_case = ENTITLE__V1__REQUEST__BODY_CREDENTIAL_PUT;
    req.credential_put = &put;
    return authd_send(p, "credential_put", &req, cb, ud);
}

ent_err pd_authd_credential_delete(struct policyd *p, const char *imsi, pd_authd_cb cb, void *ud)
{
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__CredentialDeleteRequest del = ENTITLE__V1__CREDENTIAL_DELETE_REQUEST__INIT;
    del.subscriber_id = (char *)imsi;
    req.body_case = ENTITLE__V1__REQUEST__BODY_CREDENTIAL_DELETE;
    req.credential_delete = &del;
    return authd_send(p, "credential_delete", &req, cb, ud);
}

ent_err pd_authd_token_revoke(struct policyd *p, const char *imsi, pd_authd_cb cb, void *ud)
{
    Entitle__V1__Request req = ENTITLE__V1__REQUEST__INIT;
    Entitle__V1__TokenRevokeRequest rev = ENTITLE__V1__TOKEN_REVOKE_REQUEST__INIT;
    rev.subscriber_id = (char *)imsi;
    req.body_case = ENTITLE__V1__REQUEST__BODY_TOKEN_REVOKE;
    req.token_revoke = &rev;
    return authd_send(p, "token_revoke", &req, cb, ud);
}
