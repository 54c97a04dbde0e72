/* SPDX-License-Identifier: Apache-2.0 */
/* Store throughput on both backends: SQN increments per second (ent_store_incr on "sqn", the
 * hot write of every EAP-AKA challenge) and subscriber reads per second (ent_store_get on
 * subscribers, the hot read of every entitlement request), each from one thread and from
 * two threads sharing one ent_store. SQLite uses a file in a temporary directory; mongo uses
 * MONGO_URI (a fresh database per run, left behind for inspection) and is left out with a
 * note when MONGO_URI is unset or the backend is not compiled in.
 *
 *   bench_store [--seconds S] [--subscribers N]
 *
 * Prints numbers and the mongo/sqlite ratio; never fails on timing. Exit 1 only when an
 * operation fails. Meaningful in a Release build without sanitizers. */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/store.h"
#include "ent/util.h"

struct run {
    struct ent_store *s;
    int subscribers;
    double seconds;
    bool reads;
    unsigned seed;
    uint64_t ops;
    uint64_t failures;
};

static void imsi_of(int i, char out[16])
{
    snprintf(out, 16, "00101%010d", i);
}

static void *run_loop(void *arg)
{
    struct run *r = arg;
    uint64_t start = ent_now_ns();
    uint64_t limit = (uint64_t)(r->seconds * 1e9);
    char imsi[16];
    while (ent_now_ns() - start < limit) {
        /* Check the clock every 64 ops, not on every one. */
        for (int k = 0; k < 64; k++) {
            r->seed = r->seed * 1103515245u + 12345u;
            imsi_of((int)((r->seed >> 8) % (unsigned)r->subscribers), imsi);
            ent_err rc;
            if (r->reads) {
                struct ent_store_doc d = {0};
                rc = ent_store_get(r->s, ENT_COLL_SUBSCRIBERS, imsi, &d);
                ent_store_doc_free(&d);
            } else {
                int64_t v = 0;
                rc = ent_store_incr(r->s, "sqn", imsi, 32, &v);
            }
            if (rc != ENT_OK)
                r->failures++;
            else
                r->ops++;
        }
    }
    return NULL;
}

/* ops/s of `threads` threads doing reads or increments for `seconds`. */
static double measure(struct ent_store *s, int threads, bool reads, int subscribers, double seconds,
                      uint64_t *failures)
{
    struct run r[2];
    pthread_t th[2];
    for (int i = 0; i < threads; i++) {
        r[i] = (struct run){.s = s,
                            .subscribers = subscribers,
                            .seconds = seconds,
                            .reads = reads,
                            .seed = 7u + (unsigned)i};
        if (pthread_create(&th[i], NULL, run_loop, &r[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    uint64_t start = ent_now_ns(), ops = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ops += r[i].ops;
        *failures += r[i].failures;
    }
    double secs = (double)(ent_now_ns() - start) / 1e9;
    return (double)ops / secs;
}

struct result {
    bool ran;
    double incr[2], read[2];
};

static int bench_backend(const struct ent_store_cfg *cfg, int subscribers, double seconds,
                         struct result *res)
{
    struct ent_store *s = NULL;
    char err[512] = "";
    ent_err rc = ent_store_open(&s, cfg, err, sizeof(err));
    if (rc != ENT_OK) {
        fprintf(stderr, "bench_store: %s: open: %s (%s)\n", cfg->backend, err, ent_err_name(rc));
        return 1;
    }
    /* Subscribers with a realistic small protobuf-sized blob. */
    uint8_t blob[200];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 31u);
    char imsi[16];
    for (int i = 0; i < subscribers; i++) {
        imsi_of(i, imsi);
        struct ent_store_doc d = {.key = imsi, .data = blob, .len = sizeof(blob)};
        d.index[0] = "plan-gold";
        rc = ent_store_put(s, ENT_COLL_SUBSCRIBERS, &d, NULL);
        if (rc != ENT_OK) {
            fprintf(stderr, "bench_store: %s: put: %s\n", cfg->backend, ent_err_name(rc));
            ent_store_close(s);
            return 1;
        }
    }
    uint64_t failures = 0;
    for (int t = 1; t <= 2; t++) {
        res->incr[t - 1] = measure(s, t, false, subscribers, seconds, &failures);
        res->read[t - 1] = measure(s, t, true, subscribers, seconds, &failures);
    }
    ent_store_close(s);
    if (failures > 0) {
        fprintf(stderr, "bench_store: %s: %" PRIu64 " operations failed\n", cfg->backend, failures);
        return 1;
    }
    res->ran = true;
    printf("%-7s SQN increments/s: %9.0f (1 thread) %9.0f (2 threads)\n", cfg->backend,
           res->incr[0], res->incr[1]);
    printf("%-7s subscriber reads/s: %7.0f (1 thread) %9.0f (2 threads)\n", cfg->backend,
           res->read[0], res->read[1]);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 2.0;
    int subscribers = 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--subscribers") == 0 && i + 1 < argc) {
            subscribers = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--seconds S] [--subscribers N]\n", argv[0]);
            return 2;
        }
    }
    if (seconds <= 0 || seconds > 60 || subscribers <= 0 || subscribers > 1000000) {
        fprintf(stderr, "bench_store: --seconds 0..60, --subscribers 1..1000000\n");
        return 2;
    }

    char dir[PATH_MAX], path[PATH_MAX + 16];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/entitle-bench-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/store.db", dir);
    struct result sq = {0}, mg = {0};
    struct ent_store_cfg sc = {.backend = "sqlite", .path = path};
    int rc = bench_backend(&sc, subscribers, seconds, &sq);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < ENT_ARRAY_LEN(suffixes); i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        (void)unlink(p);
    }
    (void)rmdir(dir);

    const char *uri = getenv("MONGO_URI");
    if (rc == 0 && uri != NULL && uri[0] != '\0') {
        char db[64];
        snprintf(db, sizeof(db), "entitle_bench_%ld", (long)getpid());
        struct ent_store_cfg mc = {.backend = "mongo", .uri = uri, .database = db};
        struct ent_store *probe = NULL;
        if (ent_store_open(&probe, &(struct ent_store_cfg){.backend = "mongo"}, NULL, 0) ==
            ENT_EUNSUPPORTED)
            printf("mongo   not compiled in: left out\n");
        else
            rc = bench_backend(&mc, subscribers, seconds, &mg);
    } else if (rc == 0) {
        printf("mongo   MONGO_URI is unset: left out\n");
    }
    if (sq.ran && mg.ran) {
        printf("mongo/sqlite ratio: increments %.2f (1 thread) %.2f (2 threads), reads %.2f (1 "
               "thread) %.2f (2 threads)\n",
               mg.incr[0] / sq.incr[0], mg.incr[1] / sq.incr[1], mg.read[0] / sq.read[0],
               mg.read[1] / sq.read[1]);
    }
    return rc;
}
