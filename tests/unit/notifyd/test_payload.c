/* SPDX-License-Identifier: Apache-2.0 */
/* The pure parts of delivery: TS.43 payload fields (channel.h), the SMS text and template
 * (sms.h), the coalescing key (notifyd.h) and the retry backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "notify.pb-c.h"
#include "notifyd.h"

static void test_payload_app_one_or_json_array_text(void **state)
{
    (void)state;
    struct ent_buf b;
    ent_buf_init(&b, 1024);
    char *one[] = {"ap2004"};
    assert_int_equal(notifyd_payload_app(&b, one, 1, true), ENT_OK);
    assert_string_equal(b.data, "ap2004");
    ent_buf_reset(&b);
    char *two[] = {"ap2004", "ap2005"};
    assert_int_equal(notifyd_payload_app(&b, two, 2, true), ENT_OK);
    /* Inside a JSON string: ["ap2004","ap2005"] with the quotes escaped. */
    assert_string_equal(b.data, "[\\\"ap2004\\\",\\\"ap2005\\\"]");
    ent_buf_free(&b);
    char ts[32];
    assert_int_equal(notifyd_payload_timestamp(ts, 1700000000123ULL), ENT_OK);
    assert_string_equal(ts, "2023-11-14T22:13:20.123Z");
}

static void test_payload_url_allowed_only_https_or_loopback_http(void **state)
{
    (void)state;
    assert_true(notifyd_url_allowed("https://fcm.googleapis.com"));
    assert_true(notifyd_url_allowed("http://127.0.0.1:8080/x"));
    assert_true(notifyd_url_allowed("http://localhost"));
    assert_true(notifyd_url_allowed("http://[::1]:9/"));
    assert_false(notifyd_url_allowed("http://127.0.0.1.evil.example/"));
    assert_false(notifyd_url_allowed("http://10.0.0.1/"));
    assert_false(notifyd_url_allowed("ftp://127.0.0.1/"));
    assert_false(notifyd_url_allowed("https://"));
    assert_false(notifyd_url_allowed(NULL));
}

static void test_payload_sms_text_and_template(void **state)
{
    (void)state;
    char *apps[] = {"ap2003", "ap2004"};
    struct notifyd_msg m = {.token = "",
                            .app_ids = apps,
                            .n_app_ids = 2,
                            .imsi = "001010123456789",
                            .msisdn = "+15550001"};
    struct ent_buf b;
    ent_buf_init(&b, 4096);
    assert_int_equal(notifyd_sms_text(&b, &m), ENT_OK);
    assert_string_equal(b.data, "001010123456789-aescfg,ap2003,ap2004");
    ent_buf_reset(&b);

    struct notifyd_sms s;
    char err[256];
    assert_int_equal(notifyd_sms_init(&s, NULL, "http://127.0.0.1:1/sms", "X-Key: k", NULL, NULL,
                                      1000, err, sizeof(err)),
                     ENT_OK);
    assert_string_equal(s.auth_header, "X-Key: k");
    assert_int_equal(notifyd_sms_body(&s, &m, &b), ENT_OK);
    assert_string_equal(b.data, "{\"to\":\"+15550001\",\"port\":8095,\"udh_iei\":5,"
                                "\"text\":\"001010123456789-aescfg,ap2003,ap2004\"}");
    notifyd_sms_free(&s);

    /* A value alone becomes an Authorization header; a bad placeholder fails at init. */
    assert_int_equal(notifyd_sms_init(&s, NULL, "http://127.0.0.1:1/sms", "Bearer t",
                                      "{\"a\":\"${app_ids}\",\"i\":\"${imsi}\"}", NULL, 1000, err,
                                      sizeof(err)),
                     ENT_OK);
    assert_string_equal(s.auth_header, "Authorization: Bearer t");
    ent_buf_reset(&b);
    assert_int_equal(notifyd_sms_body(&s, &m, &b), ENT_OK);
    assert_string_equal(b.data, "{\"a\":\"ap2003,ap2004\",\"i\":\"001010123456789\"}");
    notifyd_sms_free(&s);
    assert_int_equal(notifyd_sms_init(&s, NULL, "http://127.0.0.1:1/sms", NULL, "{${nope}}", NULL,
                                      1000, err, sizeof(err)),
                     ENT_ECONFIG);
    assert_int_equal(notifyd_sms_init(&s, NULL, "http://192.0.2.1/sms", NULL, NULL, NULL, 1000, err,
                                      sizeof(err)),
                     ENT_ECONFIG);
    ent_buf_free(&b);
}

static void test_payload_coalesce_key_ignores_app_order(void **state)
{
    (void)state;
    Entitle__V1__PushRequest p = ENTITLE__V1__PUSH_REQUEST__INIT;
    char *a[] = {"ap2005", "ap2004"};
    char *b[] = {"ap2004", "ap2005"};
    p.subscriber_id = "001010000000001";
    p.terminal_id = "imei";
    p.n_app_ids = 2;
    p.app_ids = a;
    char *k1 = notifyd_coalesce_key(&p);
    p.app_ids = b;
    char *k2 = notifyd_coalesce_key(&p);
    p.sms_only = true;
    char *k3 = notifyd_coalesce_key(&p);
    assert_string_equal(k1, "push/001010000000001/imei/ap2004,ap2005");
    assert_string_equal(k1, k2);
    assert_string_equal(k3, "sms/001010000000001/imei/ap2004,ap2005");
    free(k1);
    free(k2);
    free(k3);
}

static void test_payload_backoff_doubles_with_jitter_and_caps(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int i = 0; i < 200; i++) {
        uint64_t d1 = notifyd_backoff_ms(1000, 60000, 1, &rng);
        uint64_t d3 = notifyd_backoff_ms(1000, 60000, 3, &rng);
        uint64_t d20 = notifyd_backoff_ms(1000, 60000, 20, &rng);
        assert_true(d1 >= 500 && d1 <= 1000);
        assert_true(d3 >= 2000 && d3 <= 4000);
        assert_true(d20 >= 30000 && d20 <= 60000);
    }
    /* Jitter: not every draw is the same. */
    uint64_t first = notifyd_backoff_ms(1000, 60000, 5, &rng);
    bool differs = false;
    for (int i = 0; i < 20 && !differs; i++)
        differs = notifyd_backoff_ms(1000, 60000, 5, &rng) != first;
    assert_true(differs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_app_one_or_json_array_text),
        cmocka_unit_test(test_payload_url_allowed_only_https_or_loopback_http),
        cmocka_unit_test(test_payload_sms_text_and_template),
        cmocka_unit_test(test_payload_coalesce_key_ignores_app_order),
        cmocka_unit_test(test_payload_backoff_doubles_with_jitter_and_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
