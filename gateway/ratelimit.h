/* SPDX-License-Identifier: Apache-2.0 */
/* Token-bucket rate limits per client IP and per subscriber (DESIGN.md §4). One fixed-size
 * table per limiter, shared by the loop threads under a mutex; a key hashes to one slot, and
 * a slot held by another key is taken over only once that key's bucket has refilled (an
 * idle client), so the table stays bounded without evicting active clients' state. When
 * two active keys collide they share one bucket: at worst a client is limited a little
 * early, never late. */
#ifndef ENTITLE_GATEWAY_RATELIMIT_H
#define ENTITLE_GATEWAY_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"

struct gw_rl_slot;

struct gw_ratelimit {
    pthread_mutex_t mu;
    struct gw_rl_slot *slots;
    size_t n_slots;
    double rate;  /* tokens per second */
    double burst; /* bucket size */
};

/* rate <= 0 disables the limiter (every take succeeds). Errors: ENT_ENOMEM. */
ent_err gw_ratelimit_init(struct gw_ratelimit *rl, size_t n_slots, double rate, double burst);
void gw_ratelimit_fini(struct gw_ratelimit *rl);

/* Takes one token for key. True: go ahead. False: limited, and *retry_after_s (may be NULL)
 * gets the whole seconds until a token is back (>= 1). Any thread. */
bool gw_ratelimit_take(struct gw_ratelimit *rl, const char *key, unsigned *retry_after_s);

#endif
