/* SPDX-License-Identifier: Apache-2.0 */
/* The device step's matching (DESIGN §2 step 6; eval.h "Device rules" gives the syntax and
 * the precedence): does a rule match a terminal, and which matching rule decides a service.
 * Pure computation over a policy snapshot, like roaming.c; the rules themselves, their
 * validation and storage are model.c's. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "eval.h"

/* AOSP sends Build.MANUFACTURER and Build.MODEL cut to 4 and 10 characters (PROTOCOL.md §2). */
#define AOSP_VENDOR_CUT 4
#define AOSP_MODEL_CUT  10

/* Does the terminal's value equal the rule's (case-insensitive), or, when the terminal's is
 * exactly AOSP's cut length, the start of a longer rule value? */
static bool value_matches(const char *rule, const char *dev, size_t cut)
{
    size_t n = strlen(dev);
    if (strcasecmp(rule, dev) == 0)
        return true;
    return n == cut && strlen(rule) > cut && strncasecmp(rule, dev, cut) == 0;
}

/* A model pattern: exact, or a prefix when it ends in '*'. */
static bool model_matches(const char *rule, const char *dev)
{
    size_t rn = strlen(rule);
    if (rn == 0)
        return true;
    if (rule[rn - 1] != '*')
        return value_matches(rule, dev, AOSP_MODEL_CUT);
    size_t pn = rn - 1, dn = strlen(dev);
    if (dn >= pn)
        return strncasecmp(rule, dev, pn) == 0;
    /* A cut model shorter than the prefix: it can only be the prefix's start. */
    return dn == AOSP_MODEL_CUT && strncasecmp(rule, dev, dn) == 0;
}

bool pd_device_rule_matches(const struct pd_device_rule *r, const char *vendor, const char *model,
                            const char *sw)
{
    if (!vendor || !vendor[0] || !value_matches(r->vendor, vendor, AOSP_VENDOR_CUT))
        return false;
    if (r->model[0] && !model_matches(r->model, model ? model : ""))
        return false;
    int cmp = 0;
    if (r->sw_min[0] && (!pd_sw_compare(sw, r->sw_min, &cmp) || cmp < 0))
        return false;
    if (r->sw_max[0] && (!pd_sw_compare(sw, r->sw_max, &cmp) || cmp > 0))
        return false;
    return true;
}

/* The precedence of eval.h as one number: higher is more specific. */
static int specificity(const struct pd_device_rule *r)
{
    size_t n = strlen(r->model);
    int model = n == 0 ? 0 : r->model[n - 1] == '*' ? 1 : 2;
    int range = r->sw_min[0] || r->sw_max[0];
    return model * 2 + range;
}

/* Is a more specific than b (eval.h: specificity, longer model prefix, smaller name)? */
static bool more_specific(const struct pd_device_rule *a, const struct pd_device_rule *b)
{
    int sa = specificity(a), sb = specificity(b);
    if (sa != sb)
        return sa > sb;
    size_t la = strlen(a->model), lb = strlen(b->model);
    if (la != lb)
        return la > lb;
    return strcmp(a->name, b->name) < 0;
}

const struct pd_device_rule *pd_device_rule_find(const struct pd_policy *pol, const char *vendor,
                                                 const char *model, const char *sw,
                                                 enum pd_service svc,
                                                 const struct pd_device_rule **matched)
{
    const struct pd_device_rule *best = NULL, *any = NULL;
    for (size_t i = 0; pol && i < pol->n_device_rules; i++) {
        const struct pd_device_rule *r = &pol->device_rules[i];
        if (!pd_device_rule_matches(r, vendor, model, sw))
            continue;
        if (!any || more_specific(r, any))
            any = r;
        if (r->services[svc] != PD_UNSET && (!best || more_specific(r, best)))
            best = r;
    }
    if (matched)
        *matched = any;
    return best;
}
