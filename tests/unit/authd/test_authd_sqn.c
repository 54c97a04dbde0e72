/* SPDX-License-Identifier: Apache-2.0 */
/* authd/sqn.h on a real SQLite file: SQN = SEQ || IND with cyclic IND, resync moves SEQ_HE
 * past SQN_MS and never back, leases never hand out a value twice, and two processes
 * advancing the same subscriber's SQN on one database file never get the same value. */
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

/* Two processes, each with its own connection to one SQLite file, race PER_PROC advances. */
static void test_sqn_two_processes_never_share(void **state)
{
    struct fx *f = *state;
    int fds[2][2];
    pid_t pid[2];
    uint64_t *all = calloc(2 * PER_PROC, sizeof(uint64_t));

    assert_non_null(all);
    for (int p = 0; p < 2; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pid[p] = fork();
        assert_true(pid[p] >= 0);
        if (pid[p] == 0) {
            close(fds[p][0]);
            struct ent_store *s = open_db(f->db);
            for (int i = 0; i < PER_PROC; i++) {
                uint64_t sqn = 0;
                if (authd_sqn_advance(s, NULL, IMSI, 5, &sqn) != ENT_OK)
                    _exit(3);
                if (write(fds[p][1], &sqn, sizeof(sqn)) != (ssize_t)sizeof(sqn))
                    _exit(4);
            }
            ent_store_close(s);
            _exit(0);
        }
        close(fds[p][1]);
    }
    for (int p = 0; p < 2; p++) {
        size_t got = 0;
        uint8_t *dst = (uint8_t *)(all + p * PER_PROC);
        while (got < PER_PROC * sizeof(uint64_t)) {
            ssize_t r = read(fds[p][0], dst + got, PER_PROC * sizeof(uint64_t) - got);
            assert_true(r > 0);
            got += (size_t)r;
        }
        close(fds[p][0]);
        int st = 0;
        assert_int_equal(waitpid(pid[p], &st, 0), pid[p]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    qsort(all, 2 * PER_PROC, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < 2 * PER_PROC; i++)
        assert_true(all[i] != all[i - 1]);
    /* and together they used exactly SEQ 1..2*PER_PROC */
    assert_int_equal(ent_sqn_seq(all[2 * PER_PROC - 1], 5), 2 * PER_PROC);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sqn_advance_cyclic_ind, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_resync_moves_past_sqn_ms, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_lease_never_reuses, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sqn_two_processes_never_share, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
