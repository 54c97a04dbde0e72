/* SPDX-License-Identifier: Apache-2.0 */
/* policyd/eval.h: the decision order as decision tables (home, roaming by PLMN, country and
 * default rule, suspended, overrides beating plans, websheet, device capability rules and
 * their precedence), rollout stability and its ±1% accuracy over 100k subscribers, and
 * rollback restoring the previous answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"

static const char *const home[] = {"00101"};

static void sub_init(struct pd_subscriber *s, const char *imsi)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->imsi, sizeof(s->imsi), "%s", imsi);
    for (int i = 0; i < PD_SVC_COUNT; i++)
        s->overrides[i] = PD_UNSET;
    s->prov_status = 2;
}

static void rule_init(struct pd_rule *r, const char *name, enum pd_match m, const char *v)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->match = m;
    snprintf(r->value, sizeof(r->value), "%s", v);
    for (int i = 0; i < PD_SVC_COUNT; i++)
        r->services[i] = PD_UNSET;
}

static struct pd_eval_ctx ctx_of(const struct pd_policy *pol)
{
    struct pd_eval_ctx c = {.policy = pol,
                            .home_plmns = home,
                            .n_home = 1,
                            .default_plan = "default",
                            .websheet_url = "https://x/ws"};
    return c;
}

static int status_of(const struct pd_eval_ctx *c, const struct pd_subscriber *s, enum pd_service v)
{
    struct pd_decision d;
    pd_evaluate(c, s, v, &d);
    return d.entitlement_status;
}

static void test_eval_default_plan_at_home(void **state)
{
    (void)state;
    struct pd_policy pol = {0};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000001");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOLTE), 1);
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);
    assert_int_equal(status_of(&c, &s, PD_SVC_SMSOIP), 1);
    assert_int_equal(status_of(&c, &s, PD_SVC_VONR), 0);
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.tc_status, 2);
    assert_int_equal(d.addr_status, 2);
    assert_int_equal(d.prov_status, 2);
    assert_false(d.websheet);
    assert_int_equal(d.step, PD_STEP_PLAN);
    assert_true(d.n_trace >= 6);
    assert_non_null(strstr(d.trace[3], "home network"));
}

static void test_eval_roaming_rules_plmn_country_default(void **state)
{
    (void)state;
    struct pd_rule rules[3];
    rule_init(&rules[0], "fr-no-wifi", PD_MATCH_MCC, "208");
    rules[0].services[PD_SVC_VOWIFI] = PD_DENY;
    snprintf(rules[0].message, sizeof(rules[0].message), "VoWiFi is not available in France");
    rule_init(&rules[1], "orange-fr", PD_MATCH_PLMN, "20801");
    rules[1].services[PD_SVC_VOWIFI] = PD_ALLOW;
    rule_init(&rules[2], "elsewhere", PD_MATCH_DEFAULT, "");
    rules[2].services[PD_SVC_SMSOIP] = PD_DENY;
    struct pd_policy pol = {.rules = rules, .n_rules = 3};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000001");

    /* Allowed PLMN: the PLMN rule beats the country rule. */
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "20801");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);
    assert_int_equal(status_of(&c, &s, PD_SVC_VOLTE), 1);

    /* Another French network: country rule bars VoWiFi with its message, VoLTE untouched. */
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "20810");
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_string_equal(d.message, "VoWiFi is not available in France");
    assert_string_equal(d.rule, "fr-no-wifi");
    assert_int_equal(d.step, PD_STEP_ROAMING);
    assert_int_equal(status_of(&c, &s, PD_SVC_VOLTE), 1);
    assert_int_equal(status_of(&c, &s, PD_SVC_SMSOIP), 1);

    /* Anywhere else: the default rule. */
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "310260");
    assert_int_equal(status_of(&c, &s, PD_SVC_SMSOIP), 2);
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);

    /* Home PLMN or the IMSI's own prefix is home: no rule applies. */
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "00101");
    assert_int_equal(status_of(&c, &s, PD_SVC_SMSOIP), 1);
    /* A serving PLMN from the request beats the stored one. */
    c.serving_plmn = "20810";
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 2);
}

static void test_eval_suspended_and_overrides(void **state)
{
    (void)state;
    struct pd_plan plan;
    pd_plan_builtin_default(&plan, "basic");
    plan.services[PD_SVC_VOWIFI] = false;
    struct pd_policy pol = {.plans = &plan, .n_plans = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000002");
    snprintf(s.plan, sizeof(s.plan), "basic");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 0);
    /* Override beats the plan. */
    s.overrides[PD_SVC_VOWIFI] = PD_ALLOW;
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);
    s.overrides[PD_SVC_VOLTE] = PD_DENY;
    assert_int_equal(status_of(&c, &s, PD_SVC_VOLTE), 0);
    /* Suspended: everything without an override is off. */
    s.status = PD_SUSPENDED;
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_SMSOIP, &d);
    assert_int_equal(d.entitlement_status, 0);
    assert_int_equal(d.step, PD_STEP_STATUS);
    /* An unknown plan denies by default. */
    s.status = PD_ACTIVE;
    snprintf(s.plan, sizeof(s.plan), "gone");
    pd_evaluate(&c, &s, PD_SVC_SMSOIP, &d);
    assert_int_equal(d.entitlement_status, 0);
    assert_int_equal(d.step, PD_STEP_DEFAULT);
}

static void test_eval_vowifi_websheet(void **state)
{
    (void)state;
    struct pd_plan plan;
    pd_plan_builtin_default(&plan, "default");
    plan.vowifi_websheet = true;
    struct pd_policy pol = {.plans = &plan, .n_plans = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000003");
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 0);
    assert_true(d.websheet);
    assert_int_equal(d.tc_status, 0);
    s.tc_status = 1;
    s.addr_status = 1;
    s.prov_status = 1;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_false(d.websheet);
    s.addr_status = 3;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 3);
}

static void test_eval_rollout_stable_and_accurate(void **state)
{
    (void)state;
    struct pd_rollout ro = {.service = PD_SVC_VONR, .basis_points = 2500, .state = PD_RO_ACTIVE};
    snprintf(ro.id, sizeof(ro.id), "vonr-wave1");
    struct pd_policy pol = {.rollouts = &ro, .n_rollouts = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    size_t exposed = 0, n = 100000;
    for (size_t i = 0; i < n; i++) {
        char imsi[16];
        snprintf(imsi, sizeof(imsi), "00101%010zu", i);
        sub_init(&s, imsi);
        int a = status_of(&c, &s, PD_SVC_VONR);
        exposed += a == 1;
        if (i % 997 == 0) /* stable: the same answer every time */
            assert_int_equal(status_of(&c, &s, PD_SVC_VONR), a);
    }
    double pct = 100.0 * (double)exposed / (double)n;
    printf("rollout 25%%: %zu of %zu exposed (%.2f%%)\n", exposed, n, pct);
    assert_true(pct > 24.0 && pct < 26.0);

    /* Raising the percentage only adds subscribers. */
    for (size_t i = 0; i < 2000; i++) {
        char imsi[16];
        snprintf(imsi, sizeof(imsi), "00101%010zu", i);
        sub_init(&s, imsi);
        ro.basis_points = 2500;
        int before = status_of(&c, &s, PD_SVC_VONR);
        ro.basis_points = 5000;
        int after = status_of(&c, &s, PD_SVC_VONR);
        if (before == 1)
            assert_int_equal(after, 1);
    }
}

static void test_eval_rollout_selectors_and_rollback(void **state)
{
    (void)state;
    /* VoWiFi is on the default plan; a 10% cohort in region "north" holds the rest back. */
    struct pd_rollout ro = {
        .service = PD_SVC_VOWIFI, .basis_points = 1000, .state = PD_RO_ACTIVE, .n_regions = 1};
    snprintf(ro.id, sizeof(ro.id), "wifi-north");
    snprintf(ro.regions[0], sizeof(ro.regions[0]), "north");
    struct pd_policy none = {0};
    struct pd_policy pol = {.rollouts = &ro, .n_rollouts = 1};
    struct pd_eval_ctx c0 = ctx_of(&none), c1 = ctx_of(&pol);
    size_t changed = 0, south_changed = 0;
    for (size_t i = 0; i < 1000; i++) {
        char imsi[16];
        snprintf(imsi, sizeof(imsi), "00101%010zu", i);
        struct pd_subscriber s;
        sub_init(&s, imsi);
        snprintf(s.region, sizeof(s.region), "%s", i % 2 ? "north" : "south");
        int prev = status_of(&c0, &s, PD_SVC_VOWIFI);
        ro.state = PD_RO_ACTIVE;
        int during = status_of(&c1, &s, PD_SVC_VOWIFI);
        changed += prev != during;
        south_changed += (i % 2 == 0) && prev != during;
        ro.state = PD_RO_PAUSED; /* paused keeps its cohort */
        assert_int_equal(status_of(&c1, &s, PD_SVC_VOWIFI), during);
        ro.state = PD_RO_ROLLED_BACK;
        assert_int_equal(status_of(&c1, &s, PD_SVC_VOWIFI), prev);
    }
    assert_true(changed > 350 && changed < 500); /* ~90% of the 500 northerners */
    assert_int_equal(south_changed, 0);
}

static void test_eval_rollout_exposure_offers_service(void **state)
{
    (void)state;
    /* VoNR is not on the default plan: exposure offers it, roaming bars still apply. */
    struct pd_rollout ro = {.service = PD_SVC_VONR, .basis_points = 10000, .state = PD_RO_ACTIVE};
    snprintf(ro.id, sizeof(ro.id), "vonr-all");
    struct pd_rule r;
    rule_init(&r, "no-vonr-abroad", PD_MATCH_DEFAULT, "");
    r.services[PD_SVC_VONR] = PD_DENY;
    struct pd_policy pol = {.rollouts = &ro, .n_rollouts = 1, .rules = &r, .n_rules = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000009");
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VONR, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_true(d.rollout_exposed);
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "26201");
    assert_int_equal(status_of(&c, &s, PD_SVC_VONR), 2);
}

/* ---- step 6: device capability rules ------------------------------------------------ */

static void drule_init(struct pd_device_rule *r, const char *name, const char *vendor,
                       const char *model, const char *sw_min, const char *sw_max)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->vendor, sizeof(r->vendor), "%s", vendor);
    snprintf(r->model, sizeof(r->model), "%s", model);
    snprintf(r->sw_min, sizeof(r->sw_min), "%s", sw_min);
    snprintf(r->sw_max, sizeof(r->sw_max), "%s", sw_max);
    for (int i = 0; i < PD_SVC_COUNT; i++)
        r->services[i] = PD_UNSET;
}

static void terminal(struct pd_eval_ctx *c, const char *vendor, const char *model, const char *sw)
{
    c->terminal_vendor = vendor;
    c->terminal_model = model;
    c->terminal_sw_version = sw;
}

/* The trace line of step 6 ("" when there is none). */
static const char *device_line(const struct pd_decision *d)
{
    for (size_t i = 0; i < d->n_trace; i++)
        if (strncmp(d->trace[i], "6 device:", 9) == 0)
            return d->trace[i];
    return "";
}

static void test_eval_device_no_rule(void **state)
{
    (void)state;
    struct pd_device_rule r;
    drule_init(&r, "acme-no-wifi", "Acme", "", "", "");
    r.services[PD_SVC_VOWIFI] = PD_DENY;
    struct pd_policy empty = {0}, pol = {.device_rules = &r, .n_device_rules = 1};
    struct pd_subscriber s;
    sub_init(&s, "001010000000020");
    struct pd_decision d;

    /* No rules at all: the step passes and says so. */
    struct pd_eval_ctx c = ctx_of(&empty);
    terminal(&c, "Acme", "A1", "13");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_int_equal(d.step, PD_STEP_PLAN);
    assert_non_null(strstr(device_line(&d), "no rule matches Acme A1 sw 13"));

    /* Another vendor's terminal, or no terminal given (explain without parameters). */
    c = ctx_of(&pol);
    terminal(&c, "Other", "A1", "13");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);
    terminal(&c, NULL, NULL, NULL);
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_non_null(strstr(device_line(&d), "no terminal_vendor given"));
}

static void test_eval_device_vendor_rule_message_and_unnamed_services(void **state)
{
    (void)state;
    struct pd_device_rule r;
    drule_init(&r, "acme-no-wifi", "Acme", "", "", "");
    r.services[PD_SVC_VOWIFI] = PD_DENY;
    r.services[PD_SVC_VOLTE] = PD_ALLOW;
    snprintf(r.message, sizeof(r.message), "VoWiFi is not supported on this phone");
    struct pd_policy pol = {.device_rules = &r, .n_device_rules = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000021");
    terminal(&c, "ACME", "A1", "13.1"); /* the vendor compares without case */
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_int_equal(d.step, PD_STEP_DEVICE);
    assert_string_equal(d.rule, "acme-no-wifi");
    assert_string_equal(d.message, "VoWiFi is not supported on this phone");
    assert_int_equal(d.tc_status, 2); /* VoWiFi's statuses as for any incompatible answer */
    assert_string_equal(device_line(&d),
                        "6 device: rule acme-no-wifi denies vowifi for ACME A1 sw 13.1 -> "
                        "incompatible");
    /* Named true: passes on. Not named: keeps the answer it had (and the trace says so). */
    assert_int_equal(status_of(&c, &s, PD_SVC_VOLTE), 1);
    pd_evaluate(&c, &s, PD_SVC_SMSOIP, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_int_equal(d.step, PD_STEP_PLAN);
    assert_string_equal(d.message, "");
    assert_non_null(strstr(device_line(&d), "matches ACME A1 sw 13.1 but does not name smsoip"));
    /* A device rule cannot enable what the plan leaves out (VoNR is not in the default plan). */
    assert_int_equal(status_of(&c, &s, PD_SVC_VONR), 0);
    /* AOSP cuts the vendor to 4 characters: "Acme" rules also catch a rule vendor "Acmecorp". */
    snprintf(r.vendor, sizeof(r.vendor), "acmecorp");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 2);
    terminal(&c, "Acm", "A1", "13.1");
    assert_int_equal(status_of(&c, &s, PD_SVC_VOWIFI), 1);
}

static void test_eval_device_model_beats_vendor(void **state)
{
    (void)state;
    struct pd_device_rule r[4];
    drule_init(&r[0], "acme", "Acme", "", "", "");
    r[0].services[PD_SVC_VOWIFI] = PD_DENY;
    r[0].services[PD_SVC_SMSOIP] = PD_DENY;
    snprintf(r[0].message, sizeof(r[0].message), "Not on Acme phones");
    drule_init(&r[1], "acme-x", "Acme", "X*", "", "");
    r[1].services[PD_SVC_VOWIFI] = PD_ALLOW;
    drule_init(&r[2], "acme-x9", "Acme", "X9", "", "");
    r[2].services[PD_SVC_VOWIFI] = PD_DENY;
    snprintf(r[2].message, sizeof(r[2].message), "Not on the X9");
    drule_init(&r[3], "acme-x9-14", "Acme", "X9", "14", "");
    r[3].services[PD_SVC_VOWIFI] = PD_ALLOW;
    struct pd_policy pol = {.device_rules = r, .n_device_rules = 4};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000022");
    struct pd_decision d;

    /* Vendor only: denied. */
    terminal(&c, "Acme", "B2", "13");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_string_equal(d.rule, "acme");
    /* A model prefix beats the vendor for the service it names ... */
    terminal(&c, "Acme", "X5", "13");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_non_null(strstr(device_line(&d), "rule acme-x allows vowifi"));
    /* ... while the vendor rule still decides the services the model rule leaves out. */
    pd_evaluate(&c, &s, PD_SVC_SMSOIP, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_string_equal(d.message, "Not on Acme phones");
    /* An exact model beats the prefix; exact model + sw range beats the exact model. */
    terminal(&c, "Acme", "x9", "13.9");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_string_equal(d.rule, "acme-x9");
    assert_string_equal(d.message, "Not on the X9");
    terminal(&c, "Acme", "X9", "14.0.1");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 1);
    assert_non_null(strstr(device_line(&d), "rule acme-x9-14 allows"));
    /* Equally specific rules: the smaller name wins, whatever the order in the snapshot. */
    struct pd_device_rule two[2];
    drule_init(&two[0], "b-allow", "Acme", "", "", "");
    two[0].services[PD_SVC_VOWIFI] = PD_ALLOW;
    drule_init(&two[1], "a-deny", "Acme", "", "", "");
    two[1].services[PD_SVC_VOWIFI] = PD_DENY;
    struct pd_policy pol2 = {.device_rules = two, .n_device_rules = 2};
    c = ctx_of(&pol2);
    terminal(&c, "Acme", "Z", "1");
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_string_equal(d.rule, "a-deny");
}

static void test_eval_device_sw_range(void **state)
{
    (void)state;
    struct pd_device_rule r;
    drule_init(&r, "old-fw", "Acme", "A1", "13", "14.0");
    r.services[PD_SVC_VOWIFI] = PD_DENY;
    struct pd_policy pol = {.device_rules = &r, .n_device_rules = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000023");
    static const struct {
        const char *sw;
        int status;
    } cases[] = {
        {"12.9", 1}, {"13", 2},     {"13.0.0", 2}, {"13.1", 2}, {"14", 2},
        {"14.0", 2}, {"14.0.1", 1}, {"14.2.1", 1}, {"9", 1},    {"13.5-beta", 2},
        {"vers", 1}, {"", 1},       {"100", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        terminal(&c, "Acme", "A1", cases[i].sw);
        if (status_of(&c, &s, PD_SVC_VOWIFI) != cases[i].status)
            fail_msg("sw %s: expected %d", cases[i].sw, cases[i].status);
    }
    int cmp = 0;
    assert_true(pd_sw_compare("14.0", "14.2.1", &cmp));
    assert_int_equal(cmp, -1);
    assert_true(pd_sw_compare("14", "14.0", &cmp));
    assert_int_equal(cmp, 0);
    assert_true(pd_sw_compare("14.10", "14.9", &cmp));
    assert_int_equal(cmp, 1);
    assert_false(pd_sw_compare("versionZ", "1", &cmp));
}

static void test_eval_device_after_roaming_deny(void **state)
{
    (void)state;
    struct pd_rule roam;
    rule_init(&roam, "fr", PD_MATCH_MCC, "208");
    roam.services[PD_SVC_VOWIFI] = PD_DENY;
    snprintf(roam.message, sizeof(roam.message), "VoWiFi is not available in France");
    struct pd_device_rule r;
    drule_init(&r, "acme-wifi", "Acme", "", "", "");
    r.services[PD_SVC_VOWIFI] = PD_ALLOW; /* cannot undo an earlier step's deny */
    r.services[PD_SVC_VOLTE] = PD_DENY;
    snprintf(r.message, sizeof(r.message), "VoLTE is not supported on this phone");
    struct pd_policy pol = {.rules = &roam, .n_rules = 1, .device_rules = &r, .n_device_rules = 1};
    struct pd_eval_ctx c = ctx_of(&pol);
    struct pd_subscriber s;
    sub_init(&s, "001010000000024");
    snprintf(s.serving_plmn, sizeof(s.serving_plmn), "20810");
    terminal(&c, "Acme", "A1", "14");
    struct pd_decision d;
    pd_evaluate(&c, &s, PD_SVC_VOWIFI, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_int_equal(d.step, PD_STEP_ROAMING);
    assert_string_equal(d.message, "VoWiFi is not available in France");
    assert_string_equal(device_line(&d), "");
    /* Roaming leaves VoLTE alone; the device rule then denies it. */
    pd_evaluate(&c, &s, PD_SVC_VOLTE, &d);
    assert_int_equal(d.entitlement_status, 2);
    assert_int_equal(d.step, PD_STEP_DEVICE);
    assert_string_equal(d.message, "VoLTE is not supported on this phone");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_default_plan_at_home),
        cmocka_unit_test(test_eval_roaming_rules_plmn_country_default),
        cmocka_unit_test(test_eval_suspended_and_overrides),
        cmocka_unit_test(test_eval_vowifi_websheet),
        cmocka_unit_test(test_eval_rollout_stable_and_accurate),
        cmocka_unit_test(test_eval_rollout_selectors_and_rollback),
        cmocka_unit_test(test_eval_rollout_exposure_offers_service),
        cmocka_unit_test(test_eval_device_no_rule),
        cmocka_unit_test(test_eval_device_vendor_rule_message_and_unnamed_services),
        cmocka_unit_test(test_eval_device_model_beats_vendor),
        cmocka_unit_test(test_eval_device_sw_range),
        cmocka_unit_test(test_eval_device_after_roaming_deny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
