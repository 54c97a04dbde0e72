/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/render.h: the XML document PROTOCOL.md §5.1 shows, JSON per §5.2, escaping, the
 * ap2003 flat/nested forms by version, unknown AppIDs, ODSA results and negotiation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "render.h"

static Entitle__V1__Parameter pa[8];
static Entitle__V1__Parameter *pp[8];
static Entitle__V1__ServiceDecision sd[4];
static Entitle__V1__ServiceDecision *sdp[4];
static Entitle__V1__EvaluateResponse ev;

static void param(size_t i, const char *n, const char *v)
{
    entitle__v1__parameter__init(&pa[i]);
    pa[i].name = (char *)n;
    pa[i].value = (char *)v;
    pp[i] = &pa[i];
}

/* ap2004 enabled with a websheet, ap2003 volte enabled + vonr disabled. */
static void setup_decisions(void)
{
    entitle__v1__evaluate_response__init(&ev);
    param(0, "EntitlementStatus", "0");
    param(1, "TC_Status", "2");
    param(2, "ServiceFlow_UserData", "ticket=9d1f&entitlement_name=VoWiFi");
    param(3, "MessageForIncompatible", "No <VoWiFi> on \"your\" plan");
    param(4, "EntitlementStatus", "1");
    param(5, "EntitlementStatus", "2");
    for (int i = 0; i < 3; i++) {
        entitle__v1__service_decision__init(&sd[i]);
        sdp[i] = &sd[i];
    }
    sd[0].app_id = "ap2004";
    sd[0].service = "vowifi";
    sd[0].params = pp;
    sd[0].n_params = 4;
    sd[1].app_id = "ap2003";
    sd[1].service = "volte";
    sd[1].entitlement_status = 1;
    sd[1].params = pp + 4;
    sd[1].n_params = 1;
    sd[2].app_id = "ap2003";
    sd[2].service = "vonr";
    sd[2].entitlement_status = 2;
    sd[2].params = pp + 5;
    sd[2].n_params = 1;
    ev.services = sdp;
    ev.n_services = 3;
    ev.subscriber_version = 3;
}

static char *render(enum gw_format f, int version, const char (*apps)[GW_APP_LEN + 1], size_t n,
                    enum gw_odsa_op odsa)
{
    struct ent_buf b;
    ent_buf_init(&b, 1 << 20);
    struct gw_render_in in = {
        .format = f, .version = version, .apps = apps, .n_apps = n, .ev = &ev, .odsa = odsa};
    assert_int_equal(gw_render_head(&b, f, 3, 172800), ENT_OK);
    assert_int_equal(gw_render_token(&b, f, "kZYf+nWSsX", 86400), ENT_OK);
    assert_int_equal(gw_render_apps(&b, &in), ENT_OK);
    assert_int_equal(gw_render_tail(&b, f), ENT_OK);
    return ent_buf_steal(&b, NULL);
}

static void test_render_xml_document_shape(void **state)
{
    (void)state;
    setup_decisions();
    const char apps[][GW_APP_LEN + 1] = {"ap2004", "ap2003", "ap2999"};
    char *x = render(GW_FMT_XML, 2, apps, 3, GW_ODSA_POLICY);
    assert_non_null(strstr(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<wap-provisioningdoc version=\"1.1\">\n"
                              "  <characteristic type=\"VERS\">\n"
                              "    <parm name=\"version\" value=\"3\"/>\n"
                              "    <parm name=\"validity\" value=\"172800\"/>\n"
                              "  </characteristic>\n"
                              "  <characteristic type=\"TOKEN\">\n"
                              "    <parm name=\"token\" value=\"kZYf+nWSsX\"/>\n"));
    assert_non_null(strstr(x, "<parm name=\"AppID\" value=\"ap2004\"/>\n"
                              "    <parm name=\"EntitlementStatus\" value=\"0\"/>"));
    /* only & escaped; < > " replaced, never entities AOSP would show literally */
    assert_non_null(strstr(x, "value=\"ticket=9d1f&amp;entitlement_name=VoWiFi\""));
    assert_non_null(strstr(x, "value=\"No (VoWiFi) on 'your' plan\""));
    assert_null(strstr(x, "&lt;"));
    assert_null(strstr(x, "&quot;"));
    /* v2.0: flat ap2003; unknown AppID incompatible */
    assert_null(strstr(x, "VoiceOverCellularEntitleInfo"));
    assert_non_null(
        strstr(x, "value=\"ap2999\"/>\n    <parm name=\"EntitlementStatus\" value=\"2\"/>"));
    assert_int_equal(strcmp(x + strlen(x) - 23, "</wap-provisioningdoc>\n"), 0);
    free(x);
}

static void test_render_ap2003_nested_from_v8(void **state)
{
    (void)state;
    setup_decisions();
    const char apps[][GW_APP_LEN + 1] = {"ap2003"};
    char *x = render(GW_FMT_XML, 8, apps, 1, GW_ODSA_POLICY);
    assert_non_null(strstr(x, "<parm name=\"EntitlementStatus\" value=\"1\"/>\n"
                              "    <characteristic type=\"VoiceOverCellularEntitleInfo\">"));
    assert_non_null(strstr(x, "<parm name=\"AccessType\" value=\"2\"/>"));
    /* VoNR is incompatible here: no IRAT capability */
    assert_null(strstr(x, "NetworkVoiceIRatCapability"));
    free(x);
    char *j = render(GW_FMT_JSON, 12, apps, 1, GW_ODSA_POLICY);
    json_error_t je;
    json_t *root = json_loads(j, 0, &je);
    assert_non_null(root);
    json_t *info = json_object_get(json_object_get(root, "ap2003"), "VoiceOverCellularEntitleInfo");
    assert_int_equal(json_array_size(info), 2);
    json_t *nr = json_object_get(json_array_get(info, 1), "RATVoiceEntitleInfoDetails");
    assert_string_equal(json_string_value(json_object_get(nr, "EntitlementStatus")), "2");
    json_decref(root);
    free(j);
}

static void test_render_json_document_shape(void **state)
{
    (void)state;
    setup_decisions();
    const char apps[][GW_APP_LEN + 1] = {"ap2004", "ap2016"};
    char *j = render(GW_FMT_JSON, 10, apps, 2, GW_ODSA_POLICY);
    json_error_t je;
    json_t *root = json_loads(j, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(root);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "Vers"), "version")), "3");
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "Token"), "token")),
                        "kZYf+nWSsX");
    json_t *a = json_object_get(root, "ap2004");
    assert_null(json_object_get(a, "AppID"));
    assert_string_equal(json_string_value(json_object_get(a, "MessageForIncompatible")),
                        "No <VoWiFi> on \"your\" plan");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "ap2016"), "EntitlementStatus")),
        "2");
    json_decref(root);
    free(j);
}

static void test_render_odsa_operation_results(void **state)
{
    (void)state;
    setup_decisions();
    const char apps[][GW_APP_LEN + 1] = {"ap2009"};
    char *x = render(GW_FMT_XML, 9, apps, 1, GW_ODSA_UNSUPPORTED);
    assert_non_null(strstr(x, "<parm name=\"OperationResult\" value=\"103\"/>"));
    free(x);
    x = render(GW_FMT_XML, 9, apps, 1, GW_ODSA_INVALID);
    assert_non_null(strstr(x, "<parm name=\"OperationResult\" value=\"101\"/>"));
    free(x);
    struct ent_buf b;
    ent_buf_init(&b, 4096);
    assert_int_equal(gw_render_temp_token(&b, GW_FMT_XML, "ap2009", "tt", "2025-06-01T12:00:00Z",
                                          "ManageSubscription"),
                     ENT_OK);
    assert_non_null(strstr(b.data, "TemporaryTokenExpiry\" value=\"2025-06-01T12:00:00Z\""));
    ent_buf_free(&b);
}

static void test_render_version_negotiation(void **state)
{
    (void)state;
    assert_int_equal(gw_version_negotiate(2, 0), 2);
    assert_int_equal(gw_version_negotiate(1, 0), 2);
    assert_int_equal(gw_version_negotiate(7, 0), 6);
    assert_int_equal(gw_version_negotiate(8, 5), 8);
    assert_int_equal(gw_version_negotiate(10, 0), 10);
    assert_int_equal(gw_version_negotiate(12, 0), 12);
    assert_int_equal(gw_version_negotiate(40, 0), 12);
}

static void test_render_eap_relay(void **state)
{
    (void)state;
    struct ent_buf b;
    ent_buf_init(&b, 4096);
    const uint8_t pkt[] = {1, 2, 0, 4};
    assert_int_equal(gw_render_eap_relay(&b, pkt, 4), ENT_OK);
    assert_string_equal(b.data, "{\"eap-relay-packet\":\"AQIABA==\"}");
    ent_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_xml_document_shape),
        cmocka_unit_test(test_render_ap2003_nested_from_v8),
        cmocka_unit_test(test_render_json_document_shape),
        cmocka_unit_test(test_render_odsa_operation_results),
        cmocka_unit_test(test_render_version_negotiation),
        cmocka_unit_test(test_render_eap_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
