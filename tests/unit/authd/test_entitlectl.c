/* SPDX-License-Identifier: Apache-2.0 */
/* The `entitlectl aka` CLI (tools/entitlectl), run as a process: every vector of
 * milenage.json reproduced field by field from both --op and --opc, resync.json's AUTS
 * recovered (exit 0) and its tampered AUTS refused naming the MAC-S check (exit 1), bad hex
 * and wrong lengths refused with exit 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <sys/wait.h>

#include "test_aka_support.h"

/* Runs entitlectl with args; returns the exit status, stdout (and stderr) in out. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    const char *build = getenv("ENTITLE_BUILD_DIR");
    assert_non_null(build);
    snprintf(cmd, sizeof(cmd), "%s/tools/entitlectl %s 2>&1", build, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void expect_field(json_t *got, const char *name, const char *want)
{
    const char *v = json_string_value(json_object_get(got, name));
    if (v == NULL || strcmp(v, want) != 0)
        fail_msg("field %s: got %s, want %s", name, v ? v : "(missing)", want);
}

static void test_entitlectl_milenage_vectors(void **state)
{
    json_t *root, *vecs = aka_test_load("milenage.json", &root);
    char args[512], out[4096];
    (void)state;

    for (size_t i = 0; i < json_array_size(vecs); i++) {
        json_t *v = json_array_get(vecs, i);
        for (int use_op = 0; use_op < 2; use_op++) {
            snprintf(args, sizeof(args), "aka milenage --k %s %s %s --rand %s --sqn %s --amf %s",
                     aka_test_str(v, "k"), use_op ? "--op" : "--opc",
                     aka_test_str(v, use_op ? "op" : "opc"), aka_test_str(v, "rand"),
                     aka_test_str(v, "sqn"), aka_test_str(v, "amf"));
            assert_int_equal(run(args, out, sizeof(out)), 0);
            json_error_t je;
            json_t *got = json_loads(out, 0, &je);
            if (got == NULL)
                fail_msg("not one JSON object (%s): [%s]", je.text, out);
            expect_field(got, "opc", aka_test_str(v, "opc"));
            expect_field(got, "mac_a", aka_test_str(v, "f1"));
            expect_field(got, "mac_s", aka_test_str(v, "f1star"));
            expect_field(got, "res", aka_test_str(v, "f2"));
            expect_field(got, "ck", aka_test_str(v, "f3"));
            expect_field(got, "ik", aka_test_str(v, "f4"));
            expect_field(got, "ak", aka_test_str(v, "f5"));
            expect_field(got, "ak_star", aka_test_str(v, "f5star"));
            /* AUTN = SQN xor AK || AMF || MAC-A */
            uint8_t sqn[6], ak[6];
            char autn[33], x[13];
            aka_test_hex(v, "sqn", sqn, 6);
            aka_test_hex(v, "f5", ak, 6);
            for (int j = 0; j < 6; j++)
                sqn[j] ^= ak[j];
            ent_hex_encode(sqn, 6, x);
            snprintf(autn, sizeof(autn), "%s%s%s", x, aka_test_str(v, "amf"),
                     aka_test_str(v, "f1"));
            for (char *c = autn; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            expect_field(got, "autn", autn);
            json_decref(got);
        }
    }
    json_decref(root);
}

static void test_entitlectl_resync(void **state)
{
    json_t *root, *vecs = aka_test_load("resync.json", &root);
    json_t *v = json_array_get(vecs, 0);
    char args[512], out[4096];
    (void)state;

    snprintf(args, sizeof(args), "aka resync --k %s --opc %s --rand %s --auts %s",
             aka_test_str(v, "k"), aka_test_str(v, "opc"), aka_test_str(v, "rand"),
             aka_test_str(v, "auts"));
    assert_int_equal(run(args, out, sizeof(out)), 0);
    json_t *got = json_loads(out, 0, NULL);
    assert_non_null(got);
    expect_field(got, "sqn_ms", aka_test_str(v, "expected_recovered_sqn_ms"));
    json_decref(got);
    snprintf(args, sizeof(args), "aka resync --k %s --opc %s --rand %s --auts %s",
             aka_test_str(v, "k"), aka_test_str(v, "opc"), aka_test_str(v, "rand"),
             aka_test_str(v, "tampered_auts"));
    assert_int_equal(run(args, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "MAC-S"));
    json_decref(root);
}

static void test_entitlectl_bad_input(void **state)
{
    char out[4096];
    static const char *bad[] = {
        "aka milenage --k 465b --opc cd63cb71954a9f4e48a5994e37a02baf --rand "
        "23553cbe9637a89d218ae64dae47bf35 --sqn ff9bb4d0b607 --amf b9b9",
        "aka milenage --k 465b5ce8b199b49faa5f0a2ee238a6bZ --opc cd63cb71954a9f4e48a5994e37a02baf "
        "--rand 23553cbe9637a89d218ae64dae47bf35 --sqn ff9bb4d0b607 --amf b9b9",
        "aka milenage --k 465b5ce8b199b49faa5f0a2ee238a6bc --rand 23553cbe9637a89d218ae64dae47bf35 "
        "--sqn ff9bb4d0b607 --amf b9b9",
        "aka milenage --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf "
        "--rand 23553cbe9637a89d218ae64dae47bf35 --sqn ff9bb4d0b6 --amf b9b9",
        "aka resync --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf "
        "--rand 23553cbe9637a89d218ae64dae47bf35 --auts 00",
        "aka frobnicate",
        "aka milenage --bogus 1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(bad[i], out, sizeof(out)), 2);
        assert_true(strlen(out) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entitlectl_milenage_vectors),
        cmocka_unit_test(test_entitlectl_resync),
        cmocka_unit_test(test_entitlectl_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
