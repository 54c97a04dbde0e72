/* SPDX-License-Identifier: Apache-2.0 */
/* The roaming step's matching (DESIGN §2 "Roaming"): where is home, and which rule applies
 * to a visited network. A rule matches by exact PLMN first, then by country (MCC, the first
 * three digits), then the default rule; the admin API keeps one rule per match value, so the
 * choice is never ambiguous. */
#include <string.h>

#include "eval.h"

bool pd_roaming_is_home(const struct pd_eval_ctx *ctx, const char *imsi, const char *serving)
{
    if (!serving || serving[0] == '\0')
        return true;
    for (size_t i = 0; i < ctx->n_home; i++)
        if (strcmp(ctx->home_plmns[i], serving) == 0)
            return true;
    /* The IMSI starts with its home MCC+MNC (MNC of 2 or 3 digits). */
    return imsi && strncmp(imsi, serving, strlen(serving)) == 0;
}

const struct pd_rule *pd_roaming_match(const struct pd_policy *pol, const char *serving)
{
    const struct pd_rule *by_mcc = NULL, *by_default = NULL;
    for (size_t i = 0; i < pol->n_rules; i++) {
        const struct pd_rule *r = &pol->rules[i];
        switch (r->match) {
        case PD_MATCH_PLMN:
            if (strcmp(r->value, serving) == 0)
                return r;
            break;
        case PD_MATCH_MCC:
            if (!by_mcc && strncmp(r->value, serving, 3) == 0)
                by_mcc = r;
            break;
        case PD_MATCH_DEFAULT:
            if (!by_default)
                by_default = r;
            break;
        }
    }
    return by_mcc ? by_mcc : by_default;
}
