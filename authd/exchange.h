/* SPDX-License-Identifier: Apache-2.0 */
/* The EAP-AKA/AKA' server state machine as TS.43 runs it (PROTOCOL.md §4): AuthStart
 * answers an identity with a challenge and a sealed ticket; AuthContinue takes the ticket
 * and the device's EAP-Response and answers success (with a token), a new challenge (after a
 * synchronisation failure) or failure. State that any replica needs lives in the store under
 * the exchange id; the ticket never changes. The diagram and transition table are at the top
 * of exchange.c. Threads: any (blocking store calls). */
#ifndef ENTITLE_AUTHD_EXCHANGE_H
#define ENTITLE_AUTHD_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "auth.pb-c.h"
#include "authd.h"

enum authd_outcome {
    AUTHD_CHALLENGE = 1,
    AUTHD_SUCCESS = 2,
    AUTHD_FAILURE = 3,
};

/* What one AuthStart/AuthContinue produced. Heap fields are freed by authd_result_free(). */
struct authd_result {
    enum authd_outcome outcome;
    uint8_t eap[ENT_EAP_AKA_PACKET_MAX]; /* challenge to relay */
    size_t eap_len;
    uint8_t *ticket; /* AuthStart's challenge only */
    size_t ticket_len;
    char *token; /* success */
    uint64_t token_expiry_ms;
    char subscriber_id[AUTHD_IMSI_MAX + 1]; /* success */
    Entitle__V1__RequestParams *params;     /* success: from the ticket (unpacked) */
    const char *reason;                     /* failure: static closed-set label */
    uint64_t round;                         /* challenge: the round number (1..4) */
};

void authd_result_free(struct authd_result *r);

/* AuthStart. ENT_OK with r->outcome CHALLENGE or FAILURE (reason set); other returns are
 * infrastructure errors (ENT_EUNAVAIL, ENT_ESTORE, ENT_EINTERNAL, ENT_ENOMEM) after which r
 * holds nothing. params may be NULL. */
ent_err authd_exchange_start(struct authd *a, const char *identity,
                             const Entitle__V1__RequestParams *params, struct authd_result *r);

/* AuthContinue. ENT_OK with r->outcome CHALLENGE, SUCCESS or FAILURE; errors as above. */
ent_err authd_exchange_continue(struct authd *a, const uint8_t *ticket, size_t ticket_len,
                                const uint8_t *pkt, size_t pkt_len, struct authd_result *r);

/* Removes expired exchange records (space only: they are already invisible). */
ent_err authd_exchange_purge(struct authd *a, size_t *purged);

#endif
