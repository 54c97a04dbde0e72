/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the RPCs and the admin API's explain: AppID -> services, the TS.43 parameters
 * of a decision, and the decision metrics. Loop thread. */
#ifndef ENTITLE_POLICYD_RPC_H
#define ENTITLE_POLICYD_RPC_H

#include <stdarg.h>

#include "eval.h"
#include "policyd.h"

#define PD_PARAMS_MAX 12
struct pd_params {
    char name[PD_PARAMS_MAX][40];
    char value[PD_PARAMS_MAX][PD_MSG_MAX + 64];
    size_t n;
};

/* The services decided under an AppID (ap2003: VoLTE and VoNR); 0 for an AppID policyd
 * does not decide. out has room for 2. */
size_t pd_app_services(const char *app, enum pd_service *out);
ent_err pd_params_add(struct pd_params *pp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The TS.43 parameters (PROTOCOL.md §6) of decision d rendered under `app`. */
void pd_decision_params(struct policyd *p, const char *app, const struct pd_decision *d,
                        const struct pd_plan *plan, struct pd_params *out);
/* Evaluates every service of `app` for sub over p->policy (which the caller refreshed) as
 * asked by terminal `term` (NULL: unknown, no device rule applies); out has room for 2.
 * ENT_ENOTFOUND for an AppID policyd does not decide (*n = 0). */
ent_err pd_evaluate_app(struct policyd *p, const struct pd_subscriber *sub, const char *app,
                        const char *serving_plmn, const struct pd_terminal *term,
                        struct pd_decision *out, size_t *n, const struct pd_plan **plan);
/* Bumps the decision, rule-hit and rollout-exposure counters. */
void pd_decision_count(const struct pd_decision *d);

#endif
