/* SPDX-License-Identifier: Apache-2.0 */
/* Token buckets in a fixed table (see ratelimit.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/util.h"
#include "ratelimit.h"

#define RL_KEY_MAX 48

struct gw_rl_slot {
    char key[RL_KEY_MAX];
    double tokens;
    uint64_t last_ns;
};

ent_err gw_ratelimit_init(struct gw_ratelimit *rl, size_t n_slots, double rate, double burst)
{
    memset(rl, 0, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    if (rate <= 0)
        return ENT_OK;
    rl->slots = calloc(n_slots ? n_slots : 1, sizeof(*rl->slots));
    if (rl->slots == NULL)
        return ENT_ENOMEM;
    rl->n_slots = n_slots ? n_slots : 1;
    pthread_mutex_init(&rl->mu, NULL);
    return ENT_OK;
}

void gw_ratelimit_fini(struct gw_ratelimit *rl)
{
    if (rl->slots) {
        free(rl->slots);
        rl->slots = NULL;
        pthread_mutex_destroy(&rl->mu);
    }
}

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

bool gw_ratelimit_take(struct gw_ratelimit *rl, const char *key, unsigned *retry_after_s)
{
    if (rl->slots == NULL)
        return true;
    uint64_t now = ent_now_ns();
    bool ok;
    double wait_s = 0;
    pthread_mutex_lock(&rl->mu);
    struct gw_rl_slot *s = &rl->slots[hash_key(key) % rl->n_slots];
    double tokens = s->tokens + (double)(now - s->last_ns) / 1e9 * rl->rate;
    if (s->last_ns == 0 || tokens > rl->burst)
        tokens = rl->burst;
    if (strncmp(s->key, key, RL_KEY_MAX - 1) != 0 && tokens >= rl->burst)
        snprintf(s->key, sizeof(s->key), "%s", key); /* idle slot: take it over */
    ok = tokens >= 1.0;
    if (ok)
        tokens -= 1.0;
    else
        wait_s = (1.0 - tokens) / rl->rate;
    s->tokens = tokens;
    s->last_ns = now;
    pthread_mutex_unlock(&rl->mu);
    if (!ok && retry_after_s) {
        double w = ceil(wait_s);
        *retry_after_s = w < 1 ? 1 : (unsigned)w;
    }
    return ok;
}
