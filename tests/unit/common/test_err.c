/* SPDX-License-Identifier: Apache-2.0 */
/* ent/err.h: the error list agrees with the bus contract's Code enum, name for name and
 * value for value, and the boundary conversions map the common codes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common.pb-c.h"
#include "ent/err.h"

static void test_err_matches_proto_codes(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &entitle__v1__code__descriptor;
    assert_int_equal(d->n_values, ENT_ERR_COUNT_);
    for (unsigned i = 0; i < d->n_values; i++) {
        const ProtobufCEnumValue *v = &d->values[i];
        assert_string_equal(v->name, ent_err_name((ent_err)v->value));
    }
}

static void test_err_text_and_status(void **state)
{
    (void)state;
    assert_string_equal(ent_strerror(ENT_ESATURATED), "too many requests in flight");
    assert_int_equal(ent_err_http_status(ENT_ESATURATED), 503);
    assert_int_equal(ent_err_http_status(ENT_ETOOBIG), 413);
    assert_string_equal(ent_err_name((ent_err)9999), "EUNKNOWN");
    assert_int_equal(ent_err_from_errno(ENOENT), ENT_ENOTFOUND);
    assert_int_equal(ent_err_from_uv(UV_ECONNREFUSED), ENT_EUNAVAIL);
    assert_int_equal(ent_err_from_uv(UV_EOF), ENT_ECLOSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_matches_proto_codes),
        cmocka_unit_test(test_err_text_and_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
