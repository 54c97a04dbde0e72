/* SPDX-License-Identifier: Apache-2.0 */
/* authd/sqn.h on a real SQLite file: SQN = SEQ || IND with cyclic IND, resync moves SEQ_HE
 * past SQN_MS and never back, leases never hand out a value twice, and two processes
 * advancing the same subscriber's SQN on one database file never get the same value, with
 * and without leases; a process started after another (a restart) only hands out values
 * above everything the first one handed out or leased. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aka/sqn.h"
#include "sqn.h"

#define IMSI     "001010000000001"
#define PER_PROC 1500

struct fx {
    char dir[64];
    char db[128];
    struct ent_store *s;
};

static struct ent_store *open_db(const char *path)
{
    struct ent_store *s = NULL;
    char err[200];
    struct ent_store_cfg c = {.backend = "sqlite", .path = path, .busy_timeout_ms = 20000};
    assert_int_equal(ent_store_open(&s, &c, err, sizeof(err)), ENT_OK);
    return s;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/authd-sqn-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/e.db", f->dir);
    f->s = open_db(f->db);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    ent_store_close(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_sqn_advance_cyclic_ind(void **state)
{
    struct fx *f = *state;
    uint64_t prev = 0;
    for (unsigned i = 1; i <= 40; i++) {
        uint64_t sqn = 0;
        assert_int_equal(authd_sqn_advance(f->s, NULL, IMSI, 5, &sqn), ENT_OK);
        assert_int_equal(ent_sqn_seq(sqn, 5), i);
        assert_int_equal(ent_sqn_ind(sqn, 5), i % 32);
        assert_true(sqn > prev);
        prev = sqn;
    }
}

static void test_sqn_resync_moves_past_sqn_ms(void **state)
{
    struct fx *f = *state;
    uint64_t sqn = 0, ms = 0;
    assert_int_equal(ent_sqn_make(&ms, 777, 9, 5), ENT_OK);
    assert_int_equal(authd_sqn_resync(f->s, NULL, IMSI, ms, 5), ENT_OK);
    assert_int_equal(authd_sqn_advance(f->s, NULL, IMSI, 5, &sqn), ENT_OK);
    assert_int_equal(ent_sqn_seq(sqn, 5), 778);
    /* an older SQN_MS never moves SEQ_HE back */
    assert_int_equal(ent_sqn_make(&ms, 10, 0, 5), ENT_OK);
    assert_int_equal(authd_sqn_resync(f->s, NULL, IMSI, ms, 5), ENT_OK);
    assert_int_equal(authd_sqn_advance(f->s, NULL, IMSI, 5, &sqn), ENT_OK);
    assert_int_equal(ent_sqn_seq(sqn, 5), 779);
}

static void test_sqn_lease_never_reuses(void **state)
{
    struct fx *f = *state;
    struct authd_sqn_cache *c1 = NULL, *c2 = NULL;
    uint64_t seen[200];
    size_t n = 0;

    assert_int_equal(authd_sqn_cache_new(&c1, 16), ENT_OK);
    assert_int_equal(authd_sqn_cache_new(&c2, 16), ENT_OK);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(authd_sqn_advance(f->s, c1, IMSI, 5, &seen[n++]), ENT_OK);
        assert_int_equal(authd_sqn_advance(f->s, c2, IMSI, 5, &seen[n++]), ENT_OK);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_true(seen[i] != seen[j]);
    /* resync drops the lease: the next value is past SQN_MS */
    uint64_t ms = 0, sqn = 0;
    assert_int_equal(ent_sqn_make(&ms, 5000, 0, 5), ENT_OK);
    assert_int_equal(authd_sqn_resync(f->s, c1, IMSI, ms, 5), ENT_OK);
    assert_int_equal(authd_sqn_advance(f->s, c1, IMSI, 5, &sqn), ENT_OK);
    assert_true(ent_sqn_seq(sqn, 5) > 5000);
    authd_sqn_cache_free(c1);
    authd_sqn_cache_free(c2);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs n processes, each with its own connection to one SQLite file (and its own lease
 * cache when lease > 1), advancing the same subscriber's SQN `per` times; at once when
 * together, else one after the other (each a "restart" of the one before). Fills
 * out[p * per + i] with process p's i-th SQN and checks that each process saw its values
 * grow. */
static void run_procs(const char *db, int n, unsigned lease, int per, bool together, uint64_t *out)
{
    int fds[2][2];
    pid_t pid[2];

    assert_true(n <= 2);
    for (int p = 0; p < n; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pid[p] = fork();
        assert_true(pid[p] >= 0);
        if (pid[p] == 0) {
            close(fds[p][0]);
            struct ent_store *s = open_db(db);
            struct authd_sqn_cache *c = NULL;
            if (lease > 1 && authd_sqn_cache_new(&c, lease) != ENT_OK)
                _exit(2);
            for (int i = 0; i < per; i++) {
                uint64_t sqn = 0;
                if (authd_sqn_advance(s, c, IMSI, 5, &sqn) != ENT_OK)
                    _exit(3);
                if (write(fds[p][1], &sqn, sizeof(sqn)) != (ssize_t)sizeof(sqn))
                    _exit(4);
            }
            authd_sqn_cache_free(c);
            ent_store_close(s);
            _exit(0);
        }
        close(fds[p][1]);
        if (together && p + 1 < n)
            continue;
        for (int q = together ? 0 : p; q <= p; q++) {
            size_t got = 0;
            uint8_t *dst = (uint8_t *)(out + q * per);
            while (got < (size_t)per * sizeof(uint64_t)) {
                ssize_t r = read(fds[q][0], dst + got, (size_t)per * sizeof(uint64_t) - got);
                assert_true(r > 0);
                got += (size_t)r;
            }
            close(fds[q][0]);
            int st = 0;
            assert_int_equal(waitpid(pid[q], &st, 0), pid[q]);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        }
    }
    /* The USIM's check (TS 33.102 C.2.2) needs SEQ to grow within what one process hands out. */
    for (int p = 0; p < n; p++)
        for (int i = 1; i < per; i++)
            assert_true(ent_sqn_seq(out[p * per + i], 5) > ent_sqn_seq(out[p * per + i - 1], 5));
}

static void assert_all_distinct(uint64_t *all, size_t n)
{
    qsort(all, n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i] != all[i - 1]);
}

/* Two processes, each with its own connection to one SQLite file, race PER_PROC advances. */
static void test_sqn_two_processes_never_share(void **state)
{
    struct fx *f = *state;
    uint64_t *all = calloc(2 * PER_PROC, sizeof(uint64_t));

    assert_non_null(all);
    run_procs(f->db, 2, 1, PER_PROC, true, all);
    assert_all_distinct(all, 2 * PER_PROC);
    /* and together they used exactly SEQ 1..2*PER_PROC */
    assert_int_equal(ent_sqn_seq(all[2 * PER_PROC - 1], 5), 2 * PER_PROC);
    free(all);
}

/* The same race with leases of 7 values (not a divisor of PER_PROC, so both processes end
 * with part of a lease unused): still no value twice. */
static void test_sqn_lease_two_processes_never_share(void **state)
{
    struct fx *f = *state;
    uint64_t *all = calloc(2 * PER_PROC, sizeof(uint64_t));

    assert_non_null(all);
    run_procs(f->db, 2, 7, PER_PROC, true, all);
    assert_all_distinct(all, 2 * PER_PROC);
    free(all);
}

/* A restart forgets the unused rest of its lease and leases anew from the store: the second
 * process's values are all above the first one's whole lease, never a value handed out
 * before. */
static void test_sqn_lease_restart_never_reuses(void **state)
{
    struct fx *f = *state;
    uint64_t all[2 * 10];
    int64_t ctr = 0;

    run_procs(f->db, 2, 50, 10, false, all);
    /* The first process used SEQ 1..10 of its lease 1..50; the second leased 51..100. */
    assert_int_equal(ent_sqn_seq(all[9], 5), 10);
    assert_int_equal(ent_sqn_seq(all[10], 5), 51);
    for (int i = 10; i < 20; i++)
        for (int j = 0; j < 10; j++)
            assert_true(ent_sqn_seq(all[i], 5) > ent_sqn_seq(all[j], 5) + 40);
    assert_int_equal(ent_store_counter_get(f->s, AUTHD_SQN_COUNTER, IMSI, &ctr), ENT_OK);
    assert_int_equal(ctr, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sqn_advance_cyclic_ind, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_resync_moves_past_sqn_ms, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_lease_never_reuses, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_two_processes_never_share, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_lease_two_processes_never_share, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_lease_restart_never_reuses, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
