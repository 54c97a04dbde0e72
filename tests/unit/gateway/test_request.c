/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/request.h: GET query and JSON POST parsing, every `app` list form, the one auth
 * method rule, unknown vs. no known AppID, any N.N version, and a table of malformed
 * requests with the status each must get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static struct gw_req req;
static struct gw_req_error err;

static ent_err parse(const char *method, const char *query, const char *ctype, const char *body,
                     size_t body_len, const char *accept, const char *cookie)
{
    struct ent_http_header h[4];
    size_t nh = 0;
    if (ctype)
        h[nh++] = (struct ent_http_header){"Content-Type", 12, ctype, strlen(ctype)};
    if (accept)
        h[nh++] = (struct ent_http_header){"Accept", 6, accept, strlen(accept)};
    if (cookie)
        h[nh++] = (struct ent_http_header){"Cookie", 6, cookie, strlen(cookie)};
    struct ent_http_request r = {
        .method = method,
        .target = "/",
        .path = "/",
        .path_len = 1,
        .query = query,
        .query_len = query ? strlen(query) : 0,
        .headers = h,
        .n_headers = nh,
        .body = body ? body : "",
        .body_len = body ? (body_len ? body_len : strlen(body)) : 0,
    };
    return gw_req_parse(&req, &err, &r);
}

#define BASE "terminal_id=358240051111110&terminal_vendor=goog&entitlement_version=2.0&vers=0"

static void test_request_get_eap_id_and_apps(void **state)
{
    (void)state;
    assert_int_equal(parse("GET",
                           BASE "&app=ap2004&app=ap2003&app=ap2005&EAP_ID="
                                "0234107813240779%40nai.epc.mnc010.mcc234.3gppnetwork.org",
                           NULL, NULL, 0, "application/vnd.gsma.eap-relay.v1.0+json", NULL),
                     ENT_OK);
    assert_int_equal(req.kind, GW_REQ_EAP_START);
    assert_int_equal(req.n_apps, 3);
    assert_string_equal(req.apps[1], "ap2003");
    assert_string_equal(req.p[GW_P_EAP_ID],
                        "0234107813240779@nai.epc.mnc010.mcc234.3gppnetwork.org");
    assert_int_equal(req.format, GW_FMT_JSON);
    assert_false(req.format_explicit);
}

static void test_request_app_list_forms(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"terminal_id\":\"1\",\"app\":\"ap2004\",\"token\":\"abc\"}",
        "{\"terminal_id\":\"1\",\"app\":[\"ap2003\",\"ap2004\"],\"token\":\"abc\"}",
        "{\"terminal_id\":\"1\",\"app\":\"[ap2003,ap2004]\",\"token\":\"abc\"}",
    };
    size_t want[] = {1, 2, 2};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse("POST", NULL, "application/json", bodies[i], 0, NULL, NULL), ENT_OK);
        assert_int_equal(req.n_apps, want[i]);
        assert_int_equal(req.kind, GW_REQ_TOKEN);
        assert_string_equal(req.apps[want[i] - 1], "ap2004");
    }
    /* the older content type is accepted too */
    assert_int_equal(
        parse("POST", NULL, "application/vnd.gsma.eap-relay.v1.0+json", bodies[0], 0, NULL, NULL),
        ENT_OK);
    /* GET: comma and bracket forms */
    assert_int_equal(
        parse("GET", BASE "&app=%5Bap2003%2Cap2004%5D&token=x", NULL, NULL, 0, NULL, NULL), ENT_OK);
    assert_int_equal(req.n_apps, 2);
}

static void test_request_unknown_app_beside_known(void **state)
{
    (void)state;
    assert_int_equal(parse("GET", BASE "&app=ap2004&app=ap2999&token=x", NULL, NULL, 0,
                           "text/vnd.wap.connectivity-xml", NULL),
                     ENT_OK);
    assert_int_equal(req.n_apps, 2);
    assert_int_equal(req.n_known, 1);
    assert_false(req.app_known[1]);
    assert_int_equal(req.format, GW_FMT_XML);
    assert_int_equal(parse("GET", BASE "&app=ap2999&token=x", NULL, NULL, 0, NULL, NULL),
                     ENT_EINVAL);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.reason, "no_known_app");
}

static void test_request_any_version_accepted(void **state)
{
    (void)state;
    const char *vs[] = {"2.0", "8.0", "10.0", "12.0", "99.9", "1.0"};
    for (size_t i = 0; i < ENT_ARRAY_LEN(vs); i++) {
        char q[256];
        snprintf(q, sizeof(q), "terminal_id=1&app=ap2004&token=x&entitlement_version=%s", vs[i]);
        assert_int_equal(parse("GET", q, NULL, NULL, 0, NULL, NULL), ENT_OK);
    }
    assert_int_equal(req.ver_major, 1);
}

static void test_request_eap_relay_post_with_cookie(void **state)
{
    (void)state;
    assert_int_equal(
        parse("POST", NULL, "application/vnd.gsma.eap-relay.v1.0+json",
              "{\"eap-relay-packet\":\"AgEAKBcBAAADAwBA\"}", 0,
              "application/vnd.gsma.eap-relay.v1.0+json, text/vnd.wap.connectivity-xml",
              "ECSID=AbC_-9; Path=/; Secure"),
        ENT_OK);
    assert_int_equal(req.kind, GW_REQ_EAP_RESPONSE);
    assert_string_equal(req.cookie, "AbC_-9");
    assert_int_equal(req.eap_len, 12);
    assert_int_equal(req.format, GW_FMT_XML);
    assert_true(req.format_explicit);
    /* without cookie: parsed, the flow answers 511 */
    assert_int_equal(parse("POST", NULL, "application/json",
                           "{\"eap-relay-packet\":\"AgEAKBcBAAADAwBA\"}", 0, NULL, NULL),
                     ENT_OK);
    assert_string_equal(req.cookie, "");
}

static void test_request_no_auth_method(void **state)
{
    (void)state;
    assert_int_equal(parse("GET", BASE "&app=ap2004", NULL, NULL, 0, NULL, NULL), ENT_OK);
    assert_int_equal(req.kind, GW_REQ_NOAUTH);
}

struct bad {
    const char *method, *query, *ctype, *body;
    size_t body_len;
    int status;
};

static const struct bad bads[] = {
    {"GET", "terminal_id=1&token=x", NULL, NULL, 0, 400},             /* no app */
    {"GET", "terminal_id=1&app=&token=x", NULL, NULL, 0, 400},        /* empty app */
    {"GET", "terminal_id=1&app=ap20045&token=x", NULL, NULL, 0, 400}, /* long AppID */
    {"GET", "terminal_id=1&app=AP2004&token=x", NULL, NULL, 0, 400},  /* case */
    {"GET", "terminal_id=1&app=ap20x4&token=x", NULL, NULL, 0, 400},  /* letters */
    {"GET", "terminal_id=1&app=ap2004,&token=x", NULL, NULL, 0, 400}, /* trailing , */
    {"GET", "terminal_id=1&app=ap9999&token=x", NULL, NULL, 0, 400},  /* none known */
    {"GET", "terminal_id=1&app=ap2004&token=x&EAP_ID=0001%40a", NULL, NULL, 0, 400}, /* two */
    {"GET", "terminal_id=1&app=ap2004&token=x&temporary_token=y", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&token=y", NULL, NULL, 0, 400}, /* duplicate */
    {"GET", "terminal_id=1&terminal_id=2&app=ap2004&token=x", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=a%00b", NULL, NULL, 0, 400}, /* NUL */
    {"GET", "terminal_id=1&app=ap2004&token=x&terminal_model=%C3%28", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&terminal_model=%ED%A0%80", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&terminal_model=%C0%AF", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x%zz", NULL, NULL, 0, 400}, /* bad escape */
    {"GET", "terminal_id=1&app=ap2004&token=x%4", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&entitlement_version=2", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&entitlement_version=v2.0", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&entitlement_version=2.0.1", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&vers=abc", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&IMSI=12a", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&IMSI=1234567890123456", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x&notif_action=9", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x!y", NULL, NULL, 0, 400},     /* token set */
    {"GET", "terminal_id=1&app=ap2004&EAP_ID=nouser", NULL, NULL, 0, 400}, /* no @ */
    {"GET", "terminal_id=1&app=ap2004&EAP_ID=a%40b%40c", NULL, NULL, 0, 400},
    {"GET", "terminal_id=a%20b&app=ap2004&token=x", NULL, NULL, 0, 400},   /* space in id */
    {"GET", "app=ap2004&token=x", NULL, NULL, 0, 400},                     /* no terminal */
    {"GET", "terminal_id=1&app=ap2004&token=x&%3D=1", NULL, NULL, 0, 200}, /* odd name ok */
    {"GET", "terminal_id=1&app=ap2004&token=x&=1", NULL, NULL, 0, 400},    /* empty name */
    {"GET", "terminal_id=1&app=ap2004&token=x&operation=Check1", NULL, NULL, 0, 400},
    {"GET", "terminal_id=1&app=ap2004&token=x", NULL, "body", 0, 400}, /* GET body */
    {"PUT", "terminal_id=1&app=ap2004&token=x", NULL, NULL, 0, 405},
    {"POST", NULL, "text/plain", "{\"app\":\"ap2004\"}", 0, 400},      /* ctype */
    {"POST", NULL, NULL, "{\"app\":\"ap2004\"}", 0, 400},              /* no ctype */
    {"POST", NULL, "application/json", "", 0, 400},                    /* empty */
    {"POST", NULL, "application/json", "{\"app\":\"ap2004\"", 0, 400}, /* truncated */
    {"POST", NULL, "application/json", "[\"ap2004\"]", 0, 400},        /* not object */
    {"POST", NULL, "application/json",
     "{\"terminal_id\":\"1\",\"app\":\"ap2004\",\"vers\":0,\"token\":\"x\"}", 0, 400},
    {"POST", NULL, "application/json",
     "{\"terminal_id\":\"1\",\"app\":\"ap2004\",\"token\":\"x\",\"token\":\"y\"}", 0, 400},
    {"POST", NULL, "application/json", "{\"terminal_id\":\"1\",\"app\":[],\"token\":\"x\"}", 0,
     400},
    {"POST", NULL, "application/json", "{\"terminal_id\":\"1\",\"app\":[1],\"token\":\"x\"}", 0,
     400},
    {"POST", NULL, "application/json",
     "{\"terminal_id\":\"1\",\"app\":\"ap2004\",\"token\":\"a\\u0000b\"}", 0, 400},
    {"POST", NULL, "application/json",
     "{\"terminal_id\":\"1\",\"app\":\"ap2004\",\"terminal_model\":\"\xff\"}", 0, 400},
    {"POST", NULL, "application/json", "{\"eap-relay-packet\":\"!!!\"}", 0, 400}, /* base64 */
    {"POST", NULL, "application/json", "{\"eap-relay-packet\":\"\"}", 0, 400},
    {"POST", NULL, "application/json", "{\"eap-relay-packet\":\"AgEA\",\"app\":\"ap2004\"}", 0,
     400},
    {"POST", NULL, "application/json", "{\"eap-relay-packet\":5}", 0, 400},
    {"POST", NULL, "application/json", "{\"app\":\"ap2004\"}\x00zz", 18, 400},
};

static void test_request_malformed_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ENT_ARRAY_LEN(bads); i++) {
        const struct bad *b = &bads[i];
        ent_err rc = parse(b->method, b->query, b->ctype, b->body, b->body_len, NULL, NULL);
        int got = rc == ENT_OK ? 200 : err.status;
        if (got != b->status)
            fail_msg("case %zu (%s %s %s): got %d want %d (%s)", i, b->method,
                     b->query ? b->query : "", b->body ? b->body : "", got, b->status,
                     err.reason ? err.reason : "-");
    }
    assert_true(ENT_ARRAY_LEN(bads) >= 40);
}

static void test_request_overlong_fields(void **state)
{
    (void)state;
    char q[6000];
    char big[4200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(q, sizeof(q), "terminal_id=1&app=ap2004&token=%s", big);
    assert_int_equal(parse("GET", q, NULL, NULL, 0, NULL, NULL), ENT_EINVAL);
    big[70] = '\0';
    snprintf(q, sizeof(q), "terminal_id=%s&app=ap2004&token=x", big);
    assert_int_equal(parse("GET", q, NULL, NULL, 0, NULL, NULL), ENT_EINVAL);
    assert_string_equal(err.reason, "too_long");
    assert_string_equal(err.field, "terminal_id");
}

static void test_request_pct_decode_and_utf8(void **state)
{
    (void)state;
    char out[32];
    size_t n;
    assert_int_equal(gw_pct_decode(out, sizeof(out), "a%40b+c", 7, &n), ENT_OK);
    assert_string_equal(out, "a@b+c");
    assert_int_equal(gw_pct_decode(out, sizeof(out), "%0", 2, &n), ENT_EINVAL);
    assert_true(gw_utf8_valid("h\xc3\xa9llo", 6));
    assert_false(gw_utf8_valid("\xe0\x80\x80", 3));
    assert_false(gw_utf8_valid("\xf4\x90\x80\x80", 4));
    assert_false(gw_utf8_valid("\xc3", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_get_eap_id_and_apps),
        cmocka_unit_test(test_request_app_list_forms),
        cmocka_unit_test(test_request_unknown_app_beside_known),
        cmocka_unit_test(test_request_any_version_accepted),
        cmocka_unit_test(test_request_eap_relay_post_with_cookie),
        cmocka_unit_test(test_request_no_auth_method),
        cmocka_unit_test(test_request_malformed_table),
        cmocka_unit_test(test_request_overlong_fields),
        cmocka_unit_test(test_request_pct_decode_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
