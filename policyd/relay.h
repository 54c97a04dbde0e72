/* SPDX-License-Identifier: Apache-2.0 */
/* The push relay: policyd's durable queue of push intents and the loop-side worker that
 * hands them to notifyd. A change that alters a device's answer writes one intent (a packed
 * PushRequest carrying its idempotency key) into the queue before the admin API answers;
 * the relay claims due intents under a lease, sends each to notifyd's Push RPC and deletes
 * it only after notifyd answered OK (the push is then in notifyd's own outbox). A fan-out
 * over many devices (a plan or rule change) queues its pushes in batches, one queue item and
 * one store write per batch: the handoff sends each push of an item and settles the item
 * when all have answered (a transient failure resends the item whole: notifyd answers the
 * pushes it already took as duplicates of their keys; a push notifyd refuses is split off
 * into an intent of its own, which becomes a dead letter). Failures go
 * back to the queue with exponential backoff and jitter, so an intent survives notifyd being
 * down and policyd restarting; replicas sharing the queue never send the same intent at once
 * while its lease runs, and take over a crashed replica's intents once its lease ended.
 *
 *   pd_relay_enqueue()                           due, unleased (or lease ended)
 *        |                                               |
 *        v                claim (relay_pump)             v
 *   [queued] ---------------------------------------> [leased] --Push RPC--> notifyd
 *      ^                                               |  |  |
 *      |   retry: now + backoff (transport, ETIMEDOUT,  |  |  +-- OK ---------> ack: deleted
 *      +-------- EUNAVAIL, ESATURATED, ...) ------------+  |
 *                                                          +-- EINVAL/ETOOBIG -> dead letter
 *
 *   transition           function                 store call
 *   (new) -> queued      pd_relay_enqueue()       ent_store_outbox_enqueue()
 *   queued -> leased     relay_pump()             ent_store_outbox_claim()
 *   leased -> deleted    on_handoff_reply()       ent_store_outbox_ack()
 *   leased -> queued     relay_retry()            ent_store_outbox_retry()
 *   leased -> dead       relay_retry()            ent_store_outbox_retry(max = attempts)
 *
 * The queue is its own ent_store (policyd.c opens it from push.queue_path or
 * push.queue_database): the store's outbox has one queue per database, and notifyd's worker
 * would otherwise claim policyd's intents whenever both daemons share a store.
 *
 * Threads: loop thread only. Store calls are short writes on the loop, never made on a
 * device request's path (Evaluate and DeviceRegister do not push). */
#ifndef ENTITLE_POLICYD_RELAY_H
#define ENTITLE_POLICYD_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "ent/bus.h"
#include "ent/store.h"
#include "notify.pb-c.h"

/* Zero fields take the defaults in brackets. */
struct pd_relay_cfg {
    const char *owner;        /* lease owner: the instance name ["policyd"] */
    uint64_t call_timeout_ms; /* deadline of one Push RPC [2000] */
    uint64_t lease_ms;        /* claim lease; raised to 2 x call_timeout_ms [30000] */
    uint64_t backoff_min_ms;  /* first retry delay [500] */
    uint64_t backoff_max_ms;  /* cap of the delay [60000] */
    uint64_t poll_ms;         /* look for due intents this often [1000] */
    size_t batch;             /* intents claimed at once [64] */
    size_t max_inflight;      /* Push RPCs outstanding [64] */
};

/* Counters of this relay since init, for tests and logs (the metrics are process-wide). */
struct pd_relay_stats {
    uint64_t queued;    /* pushes written (coalesced ones included) */
    uint64_t sent;      /* Push RPCs started */
    uint64_t delivered; /* pushes acknowledged by notifyd */
    uint64_t retries;   /* handoffs that failed and were re-queued */
    uint64_t dead;      /* intents notifyd refused for good */
};

struct pd_relay {
    void *data; /* for the owner */
    uv_loop_t *loop;
    struct ent_store *queue;
    struct ent_bus_client *notifyd;
    struct pd_relay_cfg cfg;
    char owner[64];
    uv_timer_t timer;
    uint64_t rng;
    uint64_t stats_at_ms;
    size_t inflight;
    bool draining;
    bool failing; /* the last handoff failed: log the recovery once */
    bool closing;
    bool timer_closed;
    void (*closed_cb)(struct pd_relay *r);
    struct pd_relay_stats stats;
};

/* Loop thread. Starts the relay over `queue` (an open store used only for this queue) and
 * the notifyd client; both must outlive the relay. cfg is copied. The first look for due
 * intents happens on the next loop iteration, so intents left by an earlier run or by a
 * crashed replica go out without a new change. Errors: ENT_EINVAL (NULL argument). */
ent_err pd_relay_init(struct pd_relay *r, uv_loop_t *loop, struct ent_store *queue,
                      struct ent_bus_client *notifyd, const struct pd_relay_cfg *cfg);

/* Loop thread. Writes one push intent durably (push is only read; its idempotency_key must
 * be set and names the intent: an identical key still queued is replaced, not duplicated)
 * and wakes the relay. On ENT_OK the intent survives a crash. Errors: ENT_EINVAL (no
 * idempotency key), ENT_ETOOBIG, ENT_ENOMEM, ENT_ECLOSED (closing), the store's
 * ENT_EUNAVAIL / ENT_ESTORE. */
ent_err pd_relay_enqueue(struct pd_relay *r, const Entitle__V1__PushRequest *push);

/* Pushes collected for one queue write (pd_relay_enqueue_batch()); zero-initialise. */
struct pd_push_batch {
    ProtobufCBinaryData *items; /* packed PushRequests, owned */
    size_t n, cap;
};
/* A fan-out writes its batch at this many pushes. */
#define PD_PUSH_BATCH_MAX 256

/* Any thread (b is the caller's). Packs push (idempotency_key required) into b. Errors:
 * ENT_EINVAL (no key), ENT_ETOOBIG, ENT_ENOMEM (b unchanged). */
ent_err pd_push_batch_add(struct pd_push_batch *b, const Entitle__V1__PushRequest *push);

/* Loop thread. Writes every push of b durably, as few queue items as the size limit allows
 * (no coalescing by key: notifyd drops duplicates by their keys), wakes the relay and
 * empties b. On an error the items written so far stay queued and b keeps every push (the
 * caller reports the change as not fully done). Errors as pd_relay_enqueue(). */
ent_err pd_relay_enqueue_batch(struct pd_relay *r, struct pd_push_batch *b);

/* Empties b, keeping its array; pd_push_batch_free() releases everything. */
void pd_push_batch_clear(struct pd_push_batch *b);
void pd_push_batch_free(struct pd_push_batch *b);

/* Loop thread. Push RPCs outstanding (drain waits for them). */
size_t pd_relay_inflight(const struct pd_relay *r);

/* Loop thread. Drain: claim nothing more; outstanding handoffs still finish. */
void pd_relay_drain(struct pd_relay *r);

/* Loop thread. Stops the relay. closed_cb (may be NULL) runs once the timer is closed and
 * every outstanding Push RPC has completed (closing the notifyd client completes them with
 * ENT_ECLOSED; their intents are re-queued at once); then r may be freed and the queue
 * store closed. Call once. */
void pd_relay_close(struct pd_relay *r, void (*closed_cb)(struct pd_relay *r));

/* The delay before retry number `attempts` (1 = after the first failed handoff): full
 * exponential growth min * 2^(attempts-1), capped at max, then "equal jitter": a value in
 * [d/2, d] drawn from rnd. Pure; exposed for the unit test. */
uint64_t pd_relay_backoff_ms(uint32_t attempts, uint64_t min_ms, uint64_t max_ms, uint64_t rnd);

#endif
