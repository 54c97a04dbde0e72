/* SPDX-License-Identifier: Apache-2.0 */
/* The RPCs policyd serves on the bus: Evaluate (gateway: what is this subscriber entitled
 * to for these AppIDs) and DeviceRegister (gateway: a device sent notif_token). Each handler
 * answers at once; store reads run on the loop thread. Also the AppID -> services mapping
 * and the TS.43 parameters of each decision (PROTOCOL.md §6), shared with the admin API's
 * explain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/metrics.h"
#include "events.h"
#include "rpc.h"

static ent_counter decisions =
    ENT_COUNTER("entitle_policyd_decisions_total", "Entitlement decisions by service and outcome",
                "service", "outcome");
static ent_counter rule_hits =
    ENT_COUNTER("entitle_policyd_rule_hits_total", "Decisions by the step and rule that decided",
                "step", "rule");
static ent_counter rollout_exposure =
    ENT_COUNTER("entitle_policyd_rollout_exposure_total",
                "Evaluations that met a rollout cohort, by cohort and outcome (exposed, held_back)",
                "rollout", "outcome");
static ent_counter devices_registered = ENT_COUNTER("entitle_policyd_device_registrations_total",
                                                    "DeviceRegister RPCs by result", "result");

static const char *outcome_name(int status)
{
    switch (status) {
    case 1:
        return "enabled";
    case 2:
        return "incompatible";
    case 3:
        return "provisioning";
    default:
        return "disabled";
    }
}

void pd_decision_count(const struct pd_decision *d)
{
    ent_counter_inc(&decisions, pd_service_name(d->service), outcome_name(d->entitlement_status));
    ent_counter_inc(&rule_hits, pd_step_name(d->step), d->rule[0] ? d->rule : "-");
    if (d->rollout[0])
        ent_counter_inc(&rollout_exposure, d->rollout,
                        d->rollout_exposed ? "exposed" : "held_back");
}

size_t pd_app_services(const char *app, enum pd_service *out)
{
    if (strcmp(app, "ap2003") == 0) {
        out[0] = PD_SVC_VOLTE;
        out[1] = PD_SVC_VONR;
        return 2;
    }
    if (strcmp(app, "ap2004") == 0) {
        out[0] = PD_SVC_VOWIFI;
        return 1;
    }
    if (strcmp(app, "ap2005") == 0) {
        out[0] = PD_SVC_SMSOIP;
        return 1;
    }
    if (strcmp(app, "ap2009") == 0) {
        out[0] = PD_SVC_ESIM;
        return 1;
    }
    if (strcmp(app, "ap2006") == 0) {
        out[0] = PD_SVC_COMPANION;
        return 1;
    }
    return 0;
}

ent_err pd_params_add(struct pd_params *pp, const char *name, const char *fmt, ...)
{
    if (pp->n >= PD_PARAMS_MAX)
        return ENT_ETOOBIG;
    va_list ap;
    va_start(ap, fmt);
    snprintf(pp->name[pp->n], sizeof(pp->name[0]), "%s", name);
    vsnprintf(pp->value[pp->n], sizeof(pp->value[0]), fmt, ap);
    va_end(ap);
    pp->n++;
    return ENT_OK;
}

void pd_decision_params(struct policyd *p, const char *app, const struct pd_decision *d,
                        const struct pd_plan *plan, struct pd_params *out)
{
    out->n = 0;
    bool odsa = strcmp(app, "ap2006") == 0 || strcmp(app, "ap2009") == 0;
    if (odsa) {
        /* ODSA CheckEligibility (PROTOCOL.md §6.4); ODSA errors travel as 200 documents. */
        pd_params_add(out, "OperationResult", "1");
        int elig = d->entitlement_status == 1 ? 1 : d->entitlement_status == 2 ? 2 : 0;
        if (d->service == PD_SVC_COMPANION) {
            pd_params_add(out, "CompanionAppEligibility", "%d", elig);
            if (elig == 1) {
                pd_params_add(out, "CompanionDeviceServices", "SharedNumber");
                if (plan && plan->companion_limit > 0)
                    pd_params_add(out, "CompanionLimit", "%lld", (long long)plan->companion_limit);
            }
        } else {
            pd_params_add(out, "PrimaryAppEligibility", "%d", elig);
        }
        if (d->message[0])
            pd_params_add(out, "GeneralErrorText", "%s", d->message);
        return;
    }
    pd_params_add(out, "EntitlementStatus", "%d", d->entitlement_status);
    if (d->service == PD_SVC_VOWIFI && d->tc_status >= 0) {
        pd_params_add(out, "TC_Status", "%d", d->tc_status);
        pd_params_add(out, "AddrStatus", "%d", d->addr_status);
        pd_params_add(out, "ProvStatus", "%d", d->prov_status);
        if (d->websheet) {
            pd_params_add(out, "ServiceFlow_URL", "%s", p->cfg->websheet_url);
            pd_params_add(out, "ServiceFlow_UserData", "entitlement_name=VoWiFi");
        }
    }
    if (d->message[0])
        pd_params_add(out, "MessageForIncompatible", "%s", d->message);
}

/* ---- Evaluate -------------------------------------------------------------------------- */

static void free_decision(Entitle__V1__ServiceDecision *sd)
{
    if (!sd)
        return;
    for (size_t i = 0; i < sd->n_params; i++) {
        if (sd->params[i]) {
            free(sd->params[i]->name);
            free(sd->params[i]->value);
            free(sd->params[i]);
        }
    }
    free(sd->params);
    for (size_t i = 0; i < sd->n_explain; i++)
        free(sd->explain[i]);
    free(sd->explain);
    free(sd->app_id);
    free(sd->service);
    free(sd);
}

/* Builds one heap ServiceDecision (protobuf-c's free_unpacked frees it field by field). */
static Entitle__V1__ServiceDecision *make_decision(struct policyd *p, const char *app,
                                                   const struct pd_decision *d,
                                                   const struct pd_plan *plan, bool explain)
{
    Entitle__V1__ServiceDecision *sd = calloc(1, sizeof(*sd));
    struct pd_params pp;
    if (!sd)
        return NULL;
    entitle__v1__service_decision__init(sd);
    sd->app_id = strdup(app);
    sd->service = strdup(d ? pd_service_name(d->service) : "");
    if (!sd->app_id || !sd->service)
        goto fail;
    if (!d) { /* an AppID policyd does not decide: incompatible */
        sd->entitlement_status = 2;
        pp.n = 0;
        pd_params_add(&pp, "EntitlementStatus", "2");
    } else {
        sd->entitlement_status = d->entitlement_status;
        pd_decision_params(p, app, d, plan, &pp);
    }
    sd->params = calloc(pp.n ? pp.n : 1, sizeof(*sd->params));
    if (!sd->params)
        goto fail;
    for (size_t i = 0; i < pp.n; i++) {
        Entitle__V1__Parameter *par = calloc(1, sizeof(*par));
        if (!par)
            goto fail;
        entitle__v1__parameter__init(par);
        sd->params[sd->n_params++] = par;
        par->name = strdup(pp.name[i]);
        par->value = strdup(pp.value[i]);
        if (!par->name || !par->value)
            goto fail;
    }
    if (explain) {
        size_t n = d ? d->n_trace : 1;
        sd->explain = calloc(n, sizeof(*sd->explain));
        if (!sd->explain)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            sd->explain[i] = strdup(d ? d->trace[i] : "AppID not decided by policyd");
            if (!sd->explain[i])
                goto fail;
            sd->n_explain++;
        }
    }
    return sd;
fail:
    free_decision(sd);
    return NULL;
}

ent_err pd_evaluate_app(struct policyd *p, const struct pd_subscriber *sub, const char *app,
                        const char *serving_plmn, const struct pd_terminal *term,
                        struct pd_decision *out, size_t *n, const struct pd_plan **plan)
{
    enum pd_service svcs[2];
    size_t k = pd_app_services(app, svcs);
    struct pd_eval_ctx ctx;
    pd_eval_ctx_init(p, &p->policy, &ctx);
    ctx.serving_plmn = serving_plmn;
    if (term) {
        ctx.terminal_vendor = term->vendor;
        ctx.terminal_model = term->model;
        ctx.terminal_sw_version = term->sw_version;
    }
    for (size_t i = 0; i < k; i++)
        pd_evaluate(&ctx, sub, svcs[i], &out[i]);
    *n = k;
    const char *plan_id = sub->plan[0] ? sub->plan : ctx.default_plan;
    *plan = pd_policy_plan(&p->policy, plan_id);
    return k ? ENT_OK : ENT_ENOTFOUND;
}

ent_err policyd_evaluate(struct policyd *p, const Entitle__V1__EvaluateRequest *req,
                         Entitle__V1__EvaluateResponse **out)
{
    if (!req->subscriber_id || !pd_valid_imsi(req->subscriber_id) || req->n_app_ids == 0 ||
        req->n_app_ids > 32)
        return ENT_EINVAL;
    if (req->serving_plmn && req->serving_plmn[0] && !pd_valid_plmn(req->serving_plmn))
        return ENT_EINVAL;
    ent_err rc = policyd_policy_refresh(p);
    if (rc != ENT_OK)
        return rc;
    struct pd_subscriber sub;
    rc = pd_subscriber_get(p->store, req->subscriber_id, &sub);
    if (rc != ENT_OK)
        return rc;
    Entitle__V1__EvaluateResponse *resp = calloc(1, sizeof(*resp));
    if (!resp)
        return ENT_ENOMEM;
    entitle__v1__evaluate_response__init(resp);
    resp->subscriber_version = pd_effective_version(&sub, p->policy.generation);
    resp->token_generation = sub.token_generation;
    resp->services = calloc(req->n_app_ids * 2, sizeof(*resp->services));
    struct pd_decision *dec = malloc(2 * sizeof(*dec));
    if (!resp->services || !dec) {
        free(dec);
        entitle__v1__evaluate_response__free_unpacked(resp, NULL);
        return ENT_ENOMEM;
    }
    const struct pd_terminal term = {req->terminal_vendor, req->terminal_model,
                                     req->terminal_sw_version};
    for (size_t a = 0; a < req->n_app_ids; a++) {
        const char *app = req->app_ids[a] ? req->app_ids[a] : "";
        size_t n = 0;
        const struct pd_plan *plan = NULL;
        pd_evaluate_app(p, &sub, app, req->serving_plmn, &term, dec, &n, &plan);
        if (n == 0) {
            Entitle__V1__ServiceDecision *sd = make_decision(p, app, NULL, NULL, req->explain);
            if (!sd)
                rc = ENT_ENOMEM;
            else
                resp->services[resp->n_services++] = sd;
        }
        for (size_t i = 0; i < n && rc == ENT_OK; i++) {
            pd_decision_count(&dec[i]);
            Entitle__V1__ServiceDecision *sd = make_decision(p, app, &dec[i], plan, req->explain);
            if (!sd)
                rc = ENT_ENOMEM;
            else
                resp->services[resp->n_services++] = sd;
        }
        if (rc != ENT_OK)
            break;
    }
    free(dec);
    if (rc != ENT_OK) {
        entitle__v1__evaluate_response__free_unpacked(resp, NULL);
        return rc;
    }
    *out = resp;
    return ENT_OK;
}

/* ---- DeviceRegister -------------------------------------------------------------------- */

static bool printable(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

/* True when the stored registration of dev's terminal already says what dev says (updated_ms
 * aside). Handsets repeat their push token on every token request; only a change is written. */
static bool device_unchanged(struct ent_store *s, const struct pd_device *dev)
{
    char key[sizeof(dev->imsi) + sizeof(dev->terminal_id) + 2];
    snprintf(key, sizeof(key), "%s/%s", dev->imsi, dev->terminal_id);
    struct ent_store_doc doc = {0};
    if (ent_store_get(s, ENT_COLL_DEVICES, key, &doc) != ENT_OK)
        return false;
    struct pd_device old;
    bool same = pd_device_from_doc(&doc, &old) == ENT_OK &&
                strcmp(old.push_token, dev->push_token) == 0 &&
                old.notif_action == dev->notif_action &&
                strcmp(old.push_platform, dev->push_platform) == 0 &&
                strcmp(old.vendor, dev->vendor) == 0 && strcmp(old.model, dev->model) == 0 &&
                strcmp(old.sw_version, dev->sw_version) == 0;
    ent_store_doc_free(&doc);
    return same;
}

ent_err policyd_device_register(struct policyd *p, const Entitle__V1__DeviceRegisterRequest *req)
{
    struct pd_device dev;
    memset(&dev, 0, sizeof(dev));
    const char *bad = NULL;
    if (!req->subscriber_id || !pd_valid_imsi(req->subscriber_id))
        bad = "subscriber_id";
    else if (!req->terminal_id || !req->terminal_id[0] ||
             !printable(req->terminal_id, sizeof(dev.terminal_id) - 1))
        bad = "terminal_id";
    else if (!printable(req->terminal_vendor, PD_ID_MAX) ||
             !printable(req->terminal_model, PD_ID_MAX) ||
             !printable(req->terminal_sw_version, PD_ID_MAX))
        bad = "terminal";
    else if (!printable(req->notif_token, PD_TOKEN_MAX))
        bad = "notif_token";
    int action = -1; /* notif_action absent */
    if (!bad && req->notif_action && req->notif_action[0]) {
        char *end = NULL;
        long v = strtol(req->notif_action, &end, 10);
        if (*end != '\0' || (v != 0 && v != 1 && v != 2 && v != 3 && v != 4))
            bad = "notif_action";
        action = (int)v;
    }
    if (bad) {
        ENT_LOG_WARN(NULL, "policyd.device_register_invalid", ENT_KV_STR("field", bad));
        ent_counter_inc(&devices_registered, "EINVAL");
        return ENT_EINVAL;
    }
    struct pd_subscriber sub;
    ent_err rc = pd_subscriber_get(p->store, req->subscriber_id, &sub);
    if (rc != ENT_OK) {
        ent_counter_inc(&devices_registered, ent_err_name(rc));
        return rc;
    }
    snprintf(dev.imsi, sizeof(dev.imsi), "%s", req->subscriber_id);
    snprintf(dev.terminal_id, sizeof(dev.terminal_id), "%s", req->terminal_id);
    snprintf(dev.vendor, sizeof(dev.vendor), "%s",
             req->terminal_vendor ? req->terminal_vendor : "");
    snprintf(dev.model, sizeof(dev.model), "%s", req->terminal_model ? req->terminal_model : "");
    snprintf(dev.sw_version, sizeof(dev.sw_version), "%s",
             req->terminal_sw_version ? req->terminal_sw_version : "");
    snprintf(dev.push_token, sizeof(dev.push_token), "%s",
             req->notif_token ? req->notif_token : "");
    if (action == 0)
        dev.push_token[0] = '\0'; /* notif_action 0: the user turned push off (PROTOCOL §2) */
    if (dev.push_token[0] && action < 0)
        action = 2; /* a token without an action: FCM, the only channel AOSP registers */
    dev.notif_action = dev.push_token[0] ? action : 0;
    const char *plat = action == 1   ? "gcm"
                       : action == 2 ? "fcm"
                       : action == 3 ? "wns"
                       : action == 4 ? "apns"
                                     : "";
    snprintf(dev.push_platform, sizeof(dev.push_platform), "%s", dev.push_token[0] ? plat : "");
    dev.updated_ms = (int64_t)ent_wall_ms();
    if (device_unchanged(p->store, &dev)) {
        ent_counter_inc(&devices_registered, "unchanged");
        return ENT_OK;
    }
    rc = pd_device_put(p->store, &dev);
    ent_counter_inc(&devices_registered, ent_err_name(rc));
    return rc;
}

/* ---- dispatch -------------------------------------------------------------------------- */

void policyd_rpc(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req)
{
    struct policyd *p = d->priv;
    Entitle__V1__Response resp = ENTITLE__V1__RESPONSE__INIT;
    Entitle__V1__Status st = ENTITLE__V1__STATUS__INIT;
    resp.status = &st;
    switch (req->body_case) {
    case ENTITLE__V1__REQUEST__BODY_EVALUATE: {
        Entitle__V1__EvaluateResponse *ev = NULL;
        ent_err rc = policyd_evaluate(p, req->evaluate, &ev);
        if (rc != ENT_OK) {
            ent_daemon_reply_error(d, call_id, rc, "evaluate");
            return;
        }
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_EVALUATE;
        resp.evaluate = ev;
        ent_daemon_reply(d, call_id, &resp);
        entitle__v1__evaluate_response__free_unpacked(ev, NULL);
        return;
    }
    case ENTITLE__V1__REQUEST__BODY_DEVICE_REGISTER: {
        ent_err rc = policyd_device_register(p, req->device_register);
        if (rc != ENT_OK) {
            ent_daemon_reply_error(d, call_id, rc, "device_register");
            return;
        }
        Entitle__V1__DeviceRegisterResponse dr = ENTITLE__V1__DEVICE_REGISTER_RESPONSE__INIT;
        resp.body_case = ENTITLE__V1__RESPONSE__BODY_DEVICE_REGISTER;
        resp.device_register = &dr;
        ent_daemon_reply(d, call_id, &resp);
        return;
    }
    default:
        ent_daemon_reply_error(d, call_id, ENT_EUNSUPPORTED, "not served by policyd");
        return;
    }
}
