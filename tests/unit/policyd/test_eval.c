/* SPDX-License-Identifier: Apache-2.0 */
/* policyd/eval.h: the decision order as decision tables (home, roaming by PLMN, country and
 * default rule, suspended, overrides beating plans, websheet), rollout stability and its
 * ±1% accuracy over 100k subscribers, and rollback restoring the previous answer. */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
