/* SPDX-License-Identifier: Apache-2.0 */
/* The decision order (see eval.h for the table) and the per-service TS.43 fields it implies
 * (PROTOCOL.md §6): EntitlementStatus for every service, and for VoWiFi the TC, address and
 * provisioning statuses plus the websheet when the plan asks for one and the subscriber has
 * not completed it. Pure computation; the callers own I/O and metrics. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"

const char *pd_step_name(enum pd_step s)
{
    switch (s) {
    case PD_STEP_OVERRIDE:
        return "override";
    case PD_STEP_STATUS:
        return "status";
    case PD_STEP_ROLLOUT:
        return "rollout";
    case PD_STEP_ROAMING:
        return "roaming";
    case PD_STEP_PLAN:
        return "plan";
    case PD_STEP_DEVICE:
        return "device";
    case PD_STEP_DEFAULT:
        return "default";
    }
    return "default";
}

static void trace(struct pd_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void trace(struct pd_decision *d, const char *fmt, ...)
{
    if (d->n_trace >= PD_TRACE_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->trace[d->n_trace++], PD_TRACE_LINE, fmt, ap);
    va_end(ap);
}

static void decide(struct pd_decision *d, enum pd_step step, bool enabled, int status,
                   const char *rule)
{
    d->step = step;
    d->enabled = enabled;
    d->entitlement_status = status;
    snprintf(d->rule, sizeof(d->rule), "%s", rule ? rule : "");
}

/* VoWiFi's extra fields once the answer is known (PROTOCOL.md §6.1 and AOSP's reading of
 * them): enabled without websheet -> everything NOT REQUIRED; a websheet plan whose
 * subscriber has not completed T&C/address -> DISABLED with the missing status 0 and the
 * ServiceFlow, which AOSP reads as "data missing" and opens the websheet. */
static void vowifi_fields(struct pd_decision *d, const struct pd_subscriber *sub,
                          const struct pd_plan *plan)
{
    if (!d->enabled) {
        d->tc_status = 2;
        d->addr_status = 2;
        d->prov_status = 2;
        return;
    }
    if (!plan || !plan->vowifi_websheet) {
        d->tc_status = 2;
        d->addr_status = 2;
        d->prov_status = 2;
        trace(d, "vowifi: no websheet step on this plan");
        return;
    }
    d->tc_status = sub->tc_status;
    d->addr_status = sub->addr_status;
    d->prov_status = sub->prov_status;
    bool tc_ok = sub->tc_status == 1 || sub->tc_status == 2;
    bool addr_ok = sub->addr_status == 1 || sub->addr_status == 2;
    bool prov_ok = sub->prov_status == 1 || sub->prov_status == 2;
    if (tc_ok && addr_ok && prov_ok) {
        trace(d, "vowifi: websheet completed (TC %d, address %d, provisioning %d)", sub->tc_status,
              sub->addr_status, sub->prov_status);
        return;
    }
    d->enabled = false;
    if (sub->tc_status == 3 || sub->addr_status == 3 || sub->prov_status == 3) {
        d->entitlement_status = 3; /* PROVISIONING: the back end is still working */
        trace(d, "vowifi: websheet data in progress -> 3 provisioning");
        return;
    }
    d->entitlement_status = 0;
    d->websheet = true;
    trace(d, "vowifi: websheet required (TC %d, address %d) -> 0 with ServiceFlow", sub->tc_status,
          sub->addr_status);
}

/* 6 device: runs only on an enabled answer (eval.h). Writes exactly one trace line. */
static void device_step(const struct pd_eval_ctx *ctx, struct pd_decision *d, enum pd_service svc)
{
    const char *sname = pd_service_name(svc);
    const char *vendor = ctx->terminal_vendor ? ctx->terminal_vendor : "";
    const char *model = ctx->terminal_model ? ctx->terminal_model : "";
    const char *sw = ctx->terminal_sw_version ? ctx->terminal_sw_version : "";
    if (!vendor[0]) {
        trace(d, "6 device: no terminal_vendor given, no device rule applies");
        return;
    }
    const struct pd_device_rule *any = NULL;
    const struct pd_device_rule *r = pd_device_rule_find(ctx->policy, vendor, model, sw, svc, &any);
    if (!r) {
        if (any)
            trace(d, "6 device: rule %s matches %s %s sw %s but does not name %s", any->name,
                  vendor, model, sw, sname);
        else
            trace(d, "6 device: no rule matches %s %s sw %s", vendor, model, sw);
        return;
    }
    if (r->services[svc] == PD_DENY) {
        trace(d, "6 device: rule %s denies %s for %s %s sw %s -> incompatible", r->name, sname,
              vendor, model, sw);
        decide(d, PD_STEP_DEVICE, false, 2, r->name);
        snprintf(d->message, sizeof(d->message), "%s", r->message);
        return;
    }
    trace(d, "6 device: rule %s allows %s for %s %s sw %s", r->name, sname, vendor, model, sw);
}

void pd_evaluate(const struct pd_eval_ctx *ctx, const struct pd_subscriber *sub,
                 enum pd_service svc, struct pd_decision *out)
{
    struct pd_decision *d = out;
    memset(d, 0, sizeof(*d));
    d->service = svc;
    d->tc_status = d->addr_status = d->prov_status = -1;
    const char *sname = pd_service_name(svc);
    const struct pd_policy *pol = ctx->policy;

    /* The plan is needed by step 5 and by VoWiFi's fields whatever step decides. */
    const char *plan_id = sub->plan[0] ? sub->plan : ctx->default_plan;
    struct pd_plan builtin;
    const struct pd_plan *plan = pol ? pd_policy_plan(pol, plan_id) : NULL;
    if (!plan && !sub->plan[0]) {
        pd_plan_builtin_default(&builtin, ctx->default_plan);
        plan = &builtin;
    }

    /* 1 override */
    if (sub->overrides[svc] != PD_UNSET) {
        bool on = sub->overrides[svc] == PD_ALLOW;
        trace(d, "1 override: %s %s by subscriber override", sname, on ? "enabled" : "disabled");
        decide(d, PD_STEP_OVERRIDE, on, on ? 1 : 0, "override");
        goto done;
    }
    trace(d, "1 override: none for %s", sname);

    /* 2 status */
    if (sub->status != PD_ACTIVE) {
        trace(d, "2 status: subscriber %s -> disabled", pd_status_name(sub->status));
        decide(d, PD_STEP_STATUS, false, 0, pd_status_name(sub->status));
        goto done;
    }
    trace(d, "2 status: active");

    /* 3 rollout */
    bool exposed = false;
    const struct pd_rollout *cohort = NULL;
    for (size_t i = 0; pol && i < pol->n_rollouts; i++) {
        const struct pd_rollout *r = &pol->rollouts[i];
        if (r->service != svc || r->state == PD_RO_ROLLED_BACK || !pd_rollout_selects(r, sub))
            continue;
        cohort = r;
        break;
    }
    if (cohort) {
        uint32_t b = pd_rollout_bucket(cohort->id, sub->imsi);
        snprintf(d->rollout, sizeof(d->rollout), "%s", cohort->id);
        if (b >= cohort->basis_points) {
            trace(d, "3 rollout: %s (%s) holds back (bucket %u >= %u of 10000) -> disabled",
                  cohort->id, pd_rollout_state_name(cohort->state), b, cohort->basis_points);
            decide(d, PD_STEP_ROLLOUT, false, 0, cohort->id);
            goto done;
        }
        exposed = true;
        d->rollout_exposed = true;
        trace(d, "3 rollout: %s (%s) exposed (bucket %u < %u of 10000)", cohort->id,
              pd_rollout_state_name(cohort->state), b, cohort->basis_points);
    } else {
        trace(d, "3 rollout: no cohort for %s selects this subscriber", sname);
    }

    /* 4 roaming */
    const char *serving =
        ctx->serving_plmn && ctx->serving_plmn[0] ? ctx->serving_plmn : sub->serving_plmn;
    if (pd_roaming_is_home(ctx, sub->imsi, serving)) {
        trace(d, "4 roaming: home network%s%s", serving[0] ? " " : "", serving);
    } else {
        const struct pd_rule *r = pol ? pd_roaming_match(pol, serving) : NULL;
        if (!r) {
            trace(d, "4 roaming: visiting %s, no rule matches (no default rule)", serving);
        } else {
            const char *how = r->match == PD_MATCH_PLMN  ? "PLMN"
                              : r->match == PD_MATCH_MCC ? "country"
                                                         : "default";
            if (r->services[svc] == PD_DENY) {
                trace(d, "4 roaming: visiting %s, rule %s (%s) denies %s -> incompatible", serving,
                      r->name, how, sname);
                decide(d, PD_STEP_ROAMING, false, 2, r->name);
                snprintf(d->message, sizeof(d->message), "%s", r->message);
                goto done;
            }
            trace(d, "4 roaming: visiting %s, rule %s (%s) %s %s", serving, r->name, how,
                  r->services[svc] == PD_ALLOW ? "allows" : "does not name", sname);
        }
    }

    /* 5 plan */
    if (!plan) {
        trace(d, "5 plan: %s does not exist", plan_id);
        trace(d, "7 default: deny");
        decide(d, PD_STEP_DEFAULT, false, 0, "");
        goto done;
    }
    if (exposed) {
        trace(d, "5 plan: %s offered by rollout %s", sname, cohort->id);
        decide(d, PD_STEP_ROLLOUT, true, 1, cohort->id);
        goto device;
    }
    trace(d, "5 plan: %s %s %s", plan->id, plan->services[svc] ? "enables" : "does not include",
          sname);
    if (!plan->services[svc]) {
        decide(d, PD_STEP_PLAN, false, 0, plan->id);
        goto done;
    }
    decide(d, PD_STEP_PLAN, true, 1, plan->id);

device:
    device_step(ctx, d, svc);

done:
    if (svc == PD_SVC_VOWIFI)
        vowifi_fields(d, sub, plan);
    trace(d, "decision: %s EntitlementStatus %d (%s%s%s)", sname, d->entitlement_status,
          pd_step_name(d->step), d->rule[0] ? " " : "", d->rule);
}

bool pd_decision_same(const struct pd_decision *a, const struct pd_decision *b)
{
    return a->entitlement_status == b->entitlement_status && a->tc_status == b->tc_status &&
           a->addr_status == b->addr_status && a->prov_status == b->prov_status &&
           a->websheet == b->websheet && strcmp(a->message, b->message) == 0;
}
