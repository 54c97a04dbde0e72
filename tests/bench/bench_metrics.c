/* SPDX-License-Identifier: Apache-2.0 */
/* Micro-benchmark for ent/metrics.h: nanoseconds per bump on the hot path (a counter without
 * labels, a counter with two labels, a histogram observation), single-threaded and with four
 * threads sharing one child. Prints numbers only; no assertions, machines are noisy. */
#include <pthread.h>
#include <stdio.h>

#include "ent/metrics.h"
#include "ent/util.h"

#define ITERATIONS 2000000
#define THREADS    4

static ent_counter plain = ENT_COUNTER("bench_plain_total", "No labels");
static ent_counter labelled = ENT_COUNTER("bench_labelled_total", "Two labels", "rpc", "reason");
static ent_histogram latency =
    ENT_HISTOGRAM("bench_latency_seconds", "Latency",
                  ENT_BUCKETS(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), "route", "code");

static void *shared_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERATIONS; i++)
        ent_counter_inc(&labelled, "authd.challenge", "ETIMEDOUT");
    return NULL;
}

int main(void)
{
    uint64_t t0 = ent_now_ns();
    for (int i = 0; i < ITERATIONS; i++)
        ent_counter_inc(&plain);
    uint64_t t1 = ent_now_ns();
    for (int i = 0; i < ITERATIONS; i++)
        ent_counter_inc(&labelled, "authd.challenge", "ETIMEDOUT");
    uint64_t t2 = ent_now_ns();
    for (int i = 0; i < ITERATIONS; i++)
        ent_histogram_observe(&latency, (double)(i % 1000) * 1e-3, "/", "200");
    uint64_t t3 = ent_now_ns();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, shared_thread, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    uint64_t t4 = ent_now_ns();
    printf("counter, no labels:        %.1f ns/inc\n", (double)(t1 - t0) / ITERATIONS);
    printf("counter, two labels:       %.1f ns/inc\n", (double)(t2 - t1) / ITERATIONS);
    printf("histogram, two labels:     %.1f ns/observe\n", (double)(t3 - t2) / ITERATIONS);
    printf("counter, %d threads shared: %.1f ns/inc (wall / total incs)\n", THREADS,
           (double)(t4 - t3) / ((double)ITERATIONS * THREADS));
    return 0;
}
