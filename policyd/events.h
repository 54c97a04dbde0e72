/* SPDX-License-Identifier: Apache-2.0 */
/* What policyd tells others after a commit: change events on NNG PUB (gateways drop cached
 * decisions) and push requests to notifyd (devices re-query), plus the calls it makes to
 * authd (upstream.c). All loop thread.
 *
 * Versions (DESIGN §2 "Decision cache and staleness"): the version a decision carries and
 * an event announces is the subscriber's *effective* version = its document version + the
 * policy generation. A subscriber change bumps the document version; a plan, roaming-rule or
 * rollout change bumps the generation, i.e. every subscriber's effective version at once
 * (by generation, not lazily per subscriber), and publishes one CHANGE_ALL event. Both parts
 * only grow, so the sum only grows, and a decision computed before a change always carries a
 * smaller version than the event announcing the change. */
#ifndef ENTITLE_POLICYD_EVENTS_H
#define ENTITLE_POLICYD_EVENTS_H

#include "eval.h"
#include "policyd.h"

uint64_t pd_effective_version(const struct pd_subscriber *s, int64_t generation);

/* Fills an evaluation context from p's configuration over `pol` (policyd.c). */
void pd_eval_ctx_init(struct policyd *p, const struct pd_policy *pol, struct pd_eval_ctx *ctx);

/* Publishes one change event (publisher unset: a no-op returning ENT_OK). kind is a
 * ENTITLE__V1__CHANGE_KIND__* value; imsi may be NULL for CHANGE_ALL. Failures are logged
 * and counted; the change is committed either way (gateways see a seq gap on their next
 * event and flush). */
ent_err pd_events_publish(struct policyd *p, int kind, const char *imsi, uint64_t version,
                          uint64_t token_generation);

/* The decisions that matter to a device, for before/after comparison. */
struct pd_snapshot {
    struct pd_decision d[PD_SVC_COUNT];
};
void pd_snapshot_take(struct policyd *p, const struct pd_policy *pol,
                      const struct pd_subscriber *sub, struct pd_snapshot *out);

/* Compares two snapshots of one subscriber; if an AppID's answer changed, writes a push
 * intent into the relay queue (relay.h) for each of the subscriber's devices with a push
 * token. ENT_OK once every intent is durable (or none was due, or no notifyd is
 * configured); *queued (may be NULL) grows by the intents written. Otherwise the first
 * error (ENT_EUNAVAIL/ENT_ESTORE from the queue or the devices read, ENT_ENOMEM): the
 * caller must not report the change as fully done. */
ent_err pd_push_if_changed(struct policyd *p, const struct pd_subscriber *after,
                           const struct pd_snapshot *before, const struct pd_snapshot *now,
                           size_t *queued);

/* Visits one registered device (a devices-collection document); an error is remembered and
 * the walk goes on. */
typedef ent_err (*pd_device_visit_fn)(struct policyd *p, const struct ent_store_doc *doc, void *ud);

/* Calls visit for every registered device in key order ("<imsi>/<terminal>", so one
 * subscriber's devices are adjacent), a page at a time. Returns the first error of a visit,
 * or the store's if a page cannot be read (the walk stops there; logged with `what`). Loop
 * thread. */
ent_err pd_devices_walk(struct policyd *p, const char *what, pd_device_visit_fn visit, void *ud);

/* After a plan/rule/rollout change: walks the devices collection (only subscribers with a
 * push registration can be pushed) and queues intents for those whose answer changed
 * between `old` and p->policy. Keeps going past a failed device; returns the first error
 * (as pd_push_if_changed()) or ENT_OK. */
ent_err pd_push_policy_change(struct policyd *p, const struct pd_policy *old, size_t *queued);

/* ---- authd (upstream.c) ------------------------------------------------------------- */

/* Result of an authd call, on the loop thread. rc is ENT_OK when authd answered OK;
 * `answered` tells an error authd returned (rc = its code, e.g. ENT_EUNSUPPORTED while its
 * handler does not exist) from a transport failure (ENT_ETIMEDOUT, ENT_ECLOSED, ...). resp
 * (NULL unless answered) is freed by the caller of the callback after it returns. */
typedef void (*pd_authd_cb)(struct policyd *p, ent_err rc, bool answered,
                            const Entitle__V1__Response *resp, void *ud);

/* Credential material as decoded from the API; wiped by the caller after the call. */
struct pd_credentials {
    uint8_t k[16];
    uint8_t opc[16];
    bool has_opc; /* else op holds OP */
    uint8_t op[16];
    uint8_t sqn[6];
    uint8_t amf[2];
};

/* Each returns ENT_OK when the call was sent (cb runs exactly once later), or the reason it
 * could not be sent (cb never runs): ENT_EUNAVAIL (no authd configured), ENT_ESATURATED,
 * ENT_ECLOSED, ENT_ENOMEM. */
ent_err pd_authd_credential_put(struct policyd *p, const char *imsi, const struct pd_credentials *c,
                                pd_authd_cb cb, void *ud);
ent_err pd_authd_credential_delete(struct policyd *p, const char *imsi, pd_authd_cb cb, void *ud);
ent_err pd_authd_token_revoke(struct policyd *p, const char *imsi, pd_authd_cb cb, void *ud);

#endif
