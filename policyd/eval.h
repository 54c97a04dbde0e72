/* SPDX-License-Identifier: Apache-2.0 */
/* The entitlement decision for one subscriber and one service, with its explain trace
 * (DESIGN §2). The decision order; the first step that decides wins:
 *
 *   1 override   subscriber.overrides[service] set              -> enabled / disabled
 *   2 status     subscriber suspended or barred                  -> disabled
 *   3 rollout    an active or paused cohort for the service whose selectors (region,
 *                group) match: outside the percentage            -> disabled (held back)
 *                inside it the subscriber is "exposed": the service counts as offered at
 *                step 5 even when the plan leaves it out; a rolled-back cohort is skipped,
 *                so rolling back restores the answer from before the cohort existed
 *   4 roaming    away from home, the first rule by PLMN, then country (MCC), then the
 *                default rule; a rule that names the service false -> incompatible, with
 *                the rule's message; a rule naming it true, or not naming it, passes on
 *   5 plan       the subscriber's plan (or the default plan)      -> enabled / disabled
 *   6 device     terminal capability rules (only when the answer so far is enabled): among
 *                the rules matching the terminal, the most specific one that names the
 *                service decides; false -> incompatible with the rule's message, true or
 *                no rule naming it passes on (see "Device rules" below)
 *   7 default    deny
 *
 * Every step appends one line to the trace ("3 rollout: vonr-2026 exposed (bucket
 * 1234 < 2500)"), so `explain` shows which rule matched and why the later steps did not run.
 * This file is pure computation over a policy snapshot: no store, no I/O, no globals, any
 * thread. roaming.c, rollout.c and device_rules.c hold the steps with their own matching
 * rules.
 *
 * Device rules (step 6, device_rules.c). A rule matches a terminal when its vendor equals
 * terminal_vendor (case-insensitive), its model (if any) equals terminal_model or, ending in
 * '*', is a prefix of it (case-insensitive), and the terminal's software version lies in
 * [sw_min, sw_max] (dotted numbers, either end may be open; a terminal_sw_version that is
 * not numeric matches no rule with a range). AOSP cuts vendor/model to 4/10 characters, so
 * a value of exactly that length also matches a longer rule value it starts. Precedence,
 * most specific first:
 *
 *   vendor + exact model + sw range  >  vendor + exact model  >  vendor + model prefix +
 *   sw range  >  vendor + model prefix  >  vendor + sw range  >  vendor alone
 *
 * then the longer model prefix, then the rule name in byte order: the smallest wins. This
 * is decided per service, so a model rule allowing VoWiFi beats its vendor's rule denying
 * it, while a service the model rule leaves out still gets the vendor rule's answer. With
 * no terminal_vendor (explain without terminal parameters) no rule matches. */
#ifndef ENTITLE_POLICYD_EVAL_H
#define ENTITLE_POLICYD_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define PD_TRACE_MAX  8
#define PD_TRACE_LINE 200

/* The asking terminal as TS.43 names it; NULL members are unknown. */
struct pd_terminal {
    const char *vendor, *model, *sw_version;
};

/* What one evaluation needs besides the subscriber. */
struct pd_eval_ctx {
    const struct pd_policy *policy;
    const char *const *home_plmns; /* operator's home PLMNs; the IMSI's own prefix also counts */
    size_t n_home;
    const char *default_plan; /* plan id used when a subscriber names none */
    const char *websheet_url; /* ServiceFlow_URL for VoWiFi activation */
    const char *serving_plmn; /* overrides the subscriber's stored one when non-empty */
    /* The asking terminal (TS.43 terminal_vendor/_model/_sw_version); NULL or "" unknown. */
    const char *terminal_vendor, *terminal_model, *terminal_sw_version;
};

/* The step that decided. */
enum pd_step {
    PD_STEP_OVERRIDE = 1,
    PD_STEP_STATUS,
    PD_STEP_ROLLOUT,
    PD_STEP_ROAMING,
    PD_STEP_PLAN,
    PD_STEP_DEVICE,
    PD_STEP_DEFAULT
};
const char *pd_step_name(enum pd_step s);

struct pd_decision {
    enum pd_service service;
    bool enabled;
    int entitlement_status; /* TS.43: 0 disabled, 1 enabled, 2 incompatible, 3 provisioning */
    enum pd_step step;
    char rule[PD_ID_MAX + 1];     /* rule, rollout or plan id that decided ("" if none) */
    char message[PD_MSG_MAX + 1]; /* MessageForIncompatible */
    /* VoWiFi (ap2004) only; -1 when not applicable. */
    int tc_status, addr_status, prov_status;
    bool websheet; /* ServiceFlow_URL/UserData must be sent */
    /* Rollout exposure seen on the way (for metrics): cohort id, or "" if none. */
    char rollout[PD_ID_MAX + 1];
    bool rollout_exposed;
    char trace[PD_TRACE_MAX][PD_TRACE_LINE];
    size_t n_trace;
};

/* Decides `svc` for `sub`. Never fails; an unknown plan falls back to "deny" with a trace
 * line saying so. */
void pd_evaluate(const struct pd_eval_ctx *ctx, const struct pd_subscriber *sub,
                 enum pd_service svc, struct pd_decision *out);

/* True when the two decisions would render the same document. */
bool pd_decision_same(const struct pd_decision *a, const struct pd_decision *b);

/* roaming.c: is `serving` home for this IMSI (empty, one of the home PLMNs, or the IMSI's
 * own MCC+MNC prefix)? */
bool pd_roaming_is_home(const struct pd_eval_ctx *ctx, const char *imsi, const char *serving);
/* roaming.c: the rule for a visited PLMN: by PLMN, then by MCC, then the default rule; NULL
 * if none. */
const struct pd_rule *pd_roaming_match(const struct pd_policy *pol, const char *serving);

/* device_rules.c: does rule r match the terminal (vendor, model, sw may be NULL)? */
bool pd_device_rule_matches(const struct pd_device_rule *r, const char *vendor, const char *model,
                            const char *sw);
/* device_rules.c: the most specific rule matching the terminal that names `svc` (NULL if
 * none); *matched (may be NULL) gets the most specific matching rule whatever it names. */
const struct pd_device_rule *pd_device_rule_find(const struct pd_policy *pol, const char *vendor,
                                                 const char *model, const char *sw,
                                                 enum pd_service svc,
                                                 const struct pd_device_rule **matched);

/* rollout.c: the subscriber's stable bucket for one cohort, 0..9999: SHA-256 of
 * "<rollout id>:<imsi>", so each cohort draws independently, the same subscriber always
 * lands in the same bucket, and raising the percentage only ever adds subscribers. */
uint32_t pd_rollout_bucket(const char *rollout_id, const char *imsi);
/* rollout.c: do the cohort's region and group selectors match the subscriber? */
bool pd_rollout_selects(const struct pd_rollout *r, const struct pd_subscriber *sub);

#endif
