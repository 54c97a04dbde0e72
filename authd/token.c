/* SPDX-License-Identifier: Apache-2.0 */
/* Tokens (token.h): sealing TokenClaims, the base64url text form, verification against the
 * subscriber's token generation, revocation and ODSA temporary tokens. */
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.pb-c.h"
#include "credentials.h"
#include "ent/log.h"
#include "ent/metrics.h"
#include "ent/util.h"

#define TOKEN_CLAIMS_MAX  4096
#define TOKEN_TARGETS_MAX 16

static ent_counter token_verifications = ENT_COUNTER("entitle_authd_token_verifications_total",
                                                     "Token verifications by result", "result");
static ent_counter token_issued =
    ENT_COUNTER("entitle_authd_tokens_issued_total", "Tokens issued by kind", "kind");
static ent_counter token_revocations =
    ENT_COUNTER("entitle_authd_token_revocations_total", "Token generation bumps");

void authd_token_info_free(struct authd_token_info *ti)
{
    for (size_t i = 0; i < ti->n_targets; i++)
        free(ti->targets[i]);
    free(ti->targets);
    memset(ti, 0, sizeof(*ti));
}

/* Unpadded base64url of blob into a heap string. */
static ent_err token_encode(const uint8_t *blob, size_t len, char **out)
{
    size_t n = ent_base64_encoded_len(len);
    char *s = malloc(n + 1);
    if (s == NULL)
        return ENT_ENOMEM;
    ent_base64_encode(blob, len, s);
    n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+')
            s[i] = '-';
        else if (s[i] == '/')
            s[i] = '_';
    }
    *out = s;
    return ENT_OK;
}

static ent_err token_decode(const char *s, uint8_t *out, size_t cap, size_t *out_len)
{
    char tmp[AUTHD_TOKEN_TEXT_MAX + 4];
    size_t n = strlen(s);

    if (n == 0 || n > AUTHD_TOKEN_TEXT_MAX || n % 4 == 1)
        return ENT_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            return ENT_EINVAL;
        tmp[i] = c;
    }
    while (n % 4 != 0)
        tmp[n++] = '=';
    return ent_base64_decode(tmp, n, out, cap, out_len);
}

static ent_err token_seal(struct authd *a, const Entitle__V1__TokenClaims *c, char **token)
{
    uint8_t pt[TOKEN_CLAIMS_MAX];
    uint8_t blob[TOKEN_CLAIMS_MAX + ENT_SEAL_OVERHEAD_MAX];
    size_t blob_len = 0;
    size_t n = entitle__v1__token_claims__get_packed_size(c);
    ent_err rc;

    if (n > sizeof(pt))
        return ENT_EINVAL;
    entitle__v1__token_claims__pack(c, pt);
    rc = ent_seal(a->seal, AUTHD_PURPOSE_TOKEN, pt, n, blob, sizeof(blob), &blob_len);
    if (rc != ENT_OK)
        return rc;
    return token_encode(blob, blob_len, token);
}

static ent_err token_generation(struct authd *a, const char *imsi, uint64_t *gen)
{
    int64_t v = 0;
    ent_err rc = ent_store_counter_get(a->store, AUTHD_TOKEN_GEN_COUNTER, imsi, &v);
    if (rc == ENT_ENOTFOUND) {
        *gen = 0;
        return ENT_OK;
    }
    if (rc != ENT_OK)
        return rc;
    *gen = (uint64_t)v;
    return ENT_OK;
}

ent_err authd_token_issue(struct authd *a, const char *imsi, char **token, uint64_t *expires_ms)
{
    Entitle__V1__TokenClaims c = ENTITLE__V1__TOKEN_CLAIMS__INIT;
    uint64_t gen = 0;
    ent_err rc = token_generation(a, imsi, &gen);

    if (rc != ENT_OK)
        return rc;
    c.subscriber_id = (char *)imsi;
    c.generation = gen;
    c.expires_unix_ms = ent_wall_ms() + a->set.token_ttl_ms;
    rc = token_seal(a, &c, token);
    if (rc != ENT_OK)
        return rc;
    *expires_ms = c.expires_unix_ms;
    ent_counter_inc(&token_issued, "full");
    return ENT_OK;
}

static ent_err verdict(struct authd_token_info *ti, const char *reason)
{
    ti->valid = false;
    ti->reason = reason;
    ent_counter_inc(&token_verifications, reason);
    return ENT_OK;
}

ent_err authd_token_verify(struct authd *a, const char *token, const char *imsi,
                           struct authd_token_info *ti)
{
    uint8_t blob[AUTHD_TOKEN_TEXT_MAX];
    uint8_t pt[AUTHD_TOKEN_TEXT_MAX];
    size_t blob_len = 0, n = 0;
    Entitle__V1__TokenClaims *c = NULL;
    uint64_t gen = 0;
    ent_err rc;

    memset(ti, 0, sizeof(*ti));
    if (token == NULL || token_decode(token, blob, sizeof(blob), &blob_len) != ENT_OK)
        return verdict(ti, "malformed");
    rc = ent_unseal(a->seal, AUTHD_PURPOSE_TOKEN, blob, blob_len, pt, sizeof(pt), &n, NULL);
    if (rc == ENT_ENOMEM || rc == ENT_EINTERNAL)
        return rc;
    if (rc != ENT_OK)
        return verdict(ti, "tampered");
    c = entitle__v1__token_claims__unpack(NULL, n, pt);
    if (c == NULL || !authd_imsi_ok(c->subscriber_id) ||
        c->n_operation_targets > TOKEN_TARGETS_MAX) {
        rc = verdict(ti, "tampered");
        goto out;
    }
    if (imsi != NULL && imsi[0] != '\0' && strcmp(imsi, c->subscriber_id) != 0) {
        rc = verdict(ti, "subscriber");
        goto out;
    }
    if (ent_wall_ms() >= c->expires_unix_ms) {
        rc = verdict(ti, "expired");
        goto out;
    }
    rc = token_generation(a, c->subscriber_id, &gen);
    if (rc != ENT_OK)
        goto out;
    if (gen != c->generation) {
        rc = verdict(ti, "revoked");
        goto out;
    }
    if (c->n_operation_targets > 0) {
        ti->targets = calloc(c->n_operation_targets, sizeof(char *));
        if (ti->targets == NULL) {
            rc = ENT_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < c->n_operation_targets; i++) {
            ti->targets[i] = strdup(c->operation_targets[i]);
            if (ti->targets[i] == NULL) {
                authd_token_info_free(ti);
                rc = ENT_ENOMEM;
                goto out;
            }
            ti->n_targets++;
        }
    }
    ti->valid = true;
    snprintf(ti->subscriber_id, sizeof(ti->subscriber_id), "%s", c->subscriber_id);
    ti->expires_ms = c->expires_unix_ms;
    ti->generation = c->generation;
    ti->temporary = c->temporary;
    snprintf(ti->app_id, sizeof(ti->app_id), "%s", c->app_id ? c->app_id : "");
    ent_counter_inc(&token_verifications, c->temporary ? "valid_temporary" : "valid");
out:
    if (c)
        entitle__v1__token_claims__free_unpacked(c, NULL);
    OPENSSL_cleanse(pt, n);
    return rc;
}

ent_err authd_token_revoke(struct authd *a, const char *imsi, uint64_t *generation)
{
    int64_t v = 0;
    if (!authd_imsi_ok(imsi))
        return ENT_EINVAL;
    ent_err rc = ent_store_incr(a->store, AUTHD_TOKEN_GEN_COUNTER, imsi, 1, &v);
    if (rc != ENT_OK)
        return rc;
    ent_counter_inc(&token_revocations);
    ENT_LOG_INFO(NULL, "authd.tokens_revoked", ENT_KV_STR("imsi", ent_mask_id(imsi)),
                 ENT_KV_I64("generation", v));
    *generation = (uint64_t)v;
    return ENT_OK;
}

static bool scope_item_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

ent_err authd_token_temporary(struct authd *a, const char *token, const char *const *targets,
                              size_t n_targets, const char *app_id, char **temp,
                              uint64_t *expires_ms, const char **reason)
{
    struct authd_token_info ti;
    Entitle__V1__TokenClaims c = ENTITLE__V1__TOKEN_CLAIMS__INIT;
    ent_err rc;

    if (n_targets == 0 || n_targets > TOKEN_TARGETS_MAX || !scope_item_ok(app_id, 63))
        return ENT_EINVAL;
    for (size_t i = 0; i < n_targets; i++)
        if (!scope_item_ok(targets[i], 64))
            return ENT_EINVAL;
    rc = authd_token_verify(a, token, NULL, &ti);
    if (rc != ENT_OK)
        return rc;
    if (!ti.valid || ti.temporary) {
        *reason = ti.valid ? "temporary" : ti.reason; /* no temporary token from a temporary one */
        authd_token_info_free(&ti);
        return ENT_EAUTH;
    }
    c.subscriber_id = ti.subscriber_id;
    c.generation = ti.generation;
    c.expires_unix_ms = ent_wall_ms() + a->set.temp_token_ttl_ms;
    if (c.expires_unix_ms > ti.expires_ms)
        c.expires_unix_ms = ti.expires_ms; /* never outlives the token it came from */
    c.temporary = true;
    c.n_operation_targets = n_targets;
    c.operation_targets = (char **)targets;
    c.app_id = (char *)app_id;
    rc = token_seal(a, &c, temp);
    authd_token_info_free(&ti);
    if (rc != ENT_OK)
        return rc;
    *expires_ms = c.expires_unix_ms;
    ent_counter_inc(&token_issued, "temporary");
    return ENT_OK;
}
