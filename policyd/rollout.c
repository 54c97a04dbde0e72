/* SPDX-License-Identifier: Apache-2.0 */
/* The rollout step's two questions: does a cohort select this subscriber (region and group
 * selectors; an empty selector list selects everyone), and in which stable bucket does the
 * subscriber fall. Buckets are SHA-256 of "<cohort id>:<IMSI>" reduced to 0..9999, so the
 * same subscriber always gets the same answer, different cohorts draw independently, and
 * raising the percentage only adds subscribers (nobody flips back and forth). */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "eval.h"

uint32_t pd_rollout_bucket(const char *rollout_id, const char *imsi)
{
    char in[PD_ID_MAX + 32];
    int n = snprintf(in, sizeof(in), "%s:%s", rollout_id, imsi);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(in))
        n = (int)sizeof(in) - 1;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)in, (size_t)n, md);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | md[i];
    return (uint32_t)(v % 10000u);
}

static bool in_list(char (*list)[PD_ID_MAX + 1], size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], v) == 0)
            return true;
    return false;
}

bool pd_rollout_selects(const struct pd_rollout *r, const struct pd_subscriber *sub)
{
    if (r->n_regions && !in_list((char(*)[PD_ID_MAX + 1]) r->regions, r->n_regions, sub->region))
        return false;
    if (r->n_groups) {
        bool any = false;
        for (size_t i = 0; i < sub->n_groups && !any; i++)
            any = in_list((char(*)[PD_ID_MAX + 1]) r->groups, r->n_groups, sub->groups[i]);
        if (!any)
            return false;
    }
    return true;
}
