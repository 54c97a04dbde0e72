/* SPDX-License-Identifier: Apache-2.0 */
/* aka/milenage.h: every TS 35.208 test set in tests/vectors/milenage.json (OPc, f1, f1*,
 * f2..f5, f5*) through both the combined run and the single-function entry points, plus
 * argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aka/milenage.h"
#include "test_aka_support.h"

struct mil_vec {
    int set;
    uint8_t k[16], rand[16], sqn[6], amf[2], op[16];
    uint8_t opc[16], f1[8], f1star[8], f2[8], f3[16], f4[16], f5[6], f5star[6];
};

static void mil_vec_read(json_t *o, struct mil_vec *v)
{
    v->set = (int)json_integer_value(json_object_get(o, "set"));
    aka_test_hex(o, "k", v->k, 16);
    aka_test_hex(o, "rand", v->rand, 16);
    aka_test_hex(o, "sqn", v->sqn, 6);
    aka_test_hex(o, "amf", v->amf, 2);
    aka_test_hex(o, "op", v->op, 16);
    aka_test_hex(o, "opc", v->opc, 16);
    aka_test_hex(o, "f1", v->f1, 8);
    aka_test_hex(o, "f1star", v->f1star, 8);
    aka_test_hex(o, "f2", v->f2, 8);
    aka_test_hex(o, "f3", v->f3, 16);
    aka_test_hex(o, "f4", v->f4, 16);
    aka_test_hex(o, "f5", v->f5, 6);
    aka_test_hex(o, "f5star", v->f5star, 6);
}

static void test_milenage_reproduces_ts35208_sets(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("milenage.json", &root);
    size_t i, seen = 0;
    json_t *o;

    json_array_foreach(vecs, i, o)
    {
        struct mil_vec v;
        struct ent_milenage_out m;
        uint8_t opc[16];

        mil_vec_read(o, &v);
        assert_int_equal(ent_milenage_opc(opc, v.k, v.op), ENT_OK);
        assert_memory_equal(opc, v.opc, 16);

        memset(&m, 0, sizeof(m));
        assert_int_equal(ent_milenage_run(&m, ENT_MILENAGE_ALL, v.k, v.opc, v.rand, v.sqn, v.amf),
                         ENT_OK);
        assert_memory_equal(m.mac_a, v.f1, 8);
        assert_memory_equal(m.mac_s, v.f1star, 8);
        assert_memory_equal(m.res, v.f2, 8);
        assert_memory_equal(m.ck, v.f3, 16);
        assert_memory_equal(m.ik, v.f4, 16);
        assert_memory_equal(m.ak, v.f5, 6);
        assert_memory_equal(m.ak_star, v.f5star, 6);
        print_message("milenage set %d: ok\n", v.set);
        seen++;
    }
    assert_int_equal(seen, 6);
    json_decref(root);
}

static void test_milenage_single_functions_match(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("milenage.json", &root);
    size_t i;
    json_t *o;

    json_array_foreach(vecs, i, o)
    {
        struct mil_vec v;
        uint8_t mac[8], res[8], ck[16], ik[16], ak[6];

        mil_vec_read(o, &v);
        assert_int_equal(ent_milenage_f1(mac, v.k, v.opc, v.rand, v.sqn, v.amf), ENT_OK);
        assert_memory_equal(mac, v.f1, 8);
        assert_int_equal(ent_milenage_f1star(mac, v.k, v.opc, v.rand, v.sqn, v.amf), ENT_OK);
        assert_memory_equal(mac, v.f1star, 8);
        assert_int_equal(ent_milenage_f2345(res, ck, ik, ak, v.k, v.opc, v.rand), ENT_OK);
        assert_memory_equal(res, v.f2, 8);
        assert_memory_equal(ck, v.f3, 16);
        assert_memory_equal(ik, v.f4, 16);
        assert_memory_equal(ak, v.f5, 6);
        /* optional outputs */
        memset(ik, 0, sizeof(ik));
        assert_int_equal(ent_milenage_f2345(NULL, NULL, ik, NULL, v.k, v.opc, v.rand), ENT_OK);
        assert_memory_equal(ik, v.f4, 16);
        assert_int_equal(ent_milenage_f5star(ak, v.k, v.opc, v.rand), ENT_OK);
        assert_memory_equal(ak, v.f5star, 6);
    }
    json_decref(root);
}

static void test_milenage_run_writes_only_selected(void **state)
{
    (void)state;
    json_t *root, *vecs = aka_test_load("milenage.json", &root);
    struct mil_vec v;
    struct ent_milenage_out m;
    uint8_t ff[16];

    mil_vec_read(json_array_get(vecs, 0), &v);
    memset(&m, 0xff, sizeof(m));
    memset(ff, 0xff, sizeof(ff));
    assert_int_equal(ent_milenage_run(&m, ENT_MILENAGE_F5STAR, v.k, v.opc, v.rand, NULL, NULL),
                     ENT_OK);
    assert_memory_equal(m.ak_star, v.f5star, 6);
    assert_memory_equal(m.mac_a, ff, 8);
    assert_memory_equal(m.ck, ff, 16);
    json_decref(root);
}

static void test_milenage_rejects_bad_arguments(void **state)
{
    (void)state;
    uint8_t k[16] = {0}, opc[16] = {0}, rand[16] = {0};
    struct ent_milenage_out m;

    /* f1 needs SQN and AMF */
    assert_int_equal(ent_milenage_run(&m, ENT_MILENAGE_F1, k, opc, rand, NULL, NULL), ENT_EINVAL);
    assert_int_equal(ent_milenage_run(&m, 0, k, opc, rand, NULL, NULL), ENT_EINVAL);
    assert_int_equal(ent_milenage_run(&m, 0x10, k, opc, rand, NULL, NULL), ENT_EINVAL);
    assert_int_equal(ent_milenage_run(NULL, ENT_MILENAGE_F2345, k, opc, rand, NULL, NULL),
                     ENT_EINVAL);
    assert_int_equal(ent_milenage_f5star(NULL, k, opc, rand), ENT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_milenage_reproduces_ts35208_sets),
        cmocka_unit_test(test_milenage_single_functions_match),
        cmocka_unit_test(test_milenage_run_writes_only_selected),
        cmocka_unit_test(test_milenage_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
