/* SPDX-License-Identifier: Apache-2.0 */
/* Tokens (PROTOCOL.md §4.4, §4.5): sealed TokenClaims (auth.proto) bound to the subscriber,
 * the subscriber's token generation (store counter ("token_gen", IMSI), 0 when absent) and an
 * expiry. Bumping the generation (TokenRevoke, CredentialDelete) invalidates every token of
 * that subscriber at once. Temporary tokens (ODSA AcquireTemporaryToken) are the same claims
 * with temporary = true, a scope (operation targets, app id) and a short validity.
 * Text form: unpadded base64url of the sealed blob (safe in URLs, cookies and XML).
 * Threads: any (blocking store calls). */
#ifndef ENTITLE_AUTHD_TOKEN_H
#define ENTITLE_AUTHD_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authd.h"

#define AUTHD_TOKEN_GEN_COUNTER "token_gen"
#define AUTHD_TOKEN_TEXT_MAX    2048

struct authd_token_info {
    bool valid;
    const char *reason; /* when !valid: "malformed", "tampered", "expired", "revoked",
                           "subscriber", "scope" */
    char subscriber_id[AUTHD_IMSI_MAX + 1];
    uint64_t expires_ms;
    uint64_t generation;
    bool temporary;
    char app_id[64];
    char **targets; /* temporary: heap copies, freed by authd_token_info_free() */
    size_t n_targets;
};

void authd_token_info_free(struct authd_token_info *ti);

/* A full token for imsi at its current generation, valid token_ttl_ms. *token (heap, the
 * caller frees) and *expires_ms on ENT_OK. Store errors. */
ent_err authd_token_issue(struct authd *a, const char *imsi, char **token, uint64_t *expires_ms);

/* Checks a token (full or temporary). ENT_OK with ti->valid telling the verdict; imsi
 * (may be NULL/"") must match the token's subscriber when given. Store errors otherwise. */
ent_err authd_token_verify(struct authd *a, const char *token, const char *imsi,
                           struct authd_token_info *ti);

/* Bumps imsi's token generation; *generation gets the new value. */
ent_err authd_token_revoke(struct authd *a, const char *imsi, uint64_t *generation);

/* ODSA: a temporary token scoped to targets/app_id under a valid full token. ENT_EAUTH if
 * the full token is not valid (ti reason in *reason), ENT_EINVAL for a bad scope. */
ent_err authd_token_temporary(struct authd *a, const char *token, const char *const *targets,
                              size_t n_targets, const char *app_id, char **temp,
                              uint64_t *expires_ms, const char **reason);

#endif
