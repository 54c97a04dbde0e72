/* SPDX-License-Identifier: Apache-2.0 */
/* XML and JSON entitlement documents (see render.h). The JSON parts are written so they
 * concatenate: head opens the object with "Vers", every later part starts with a comma,
 * the tail closes it. */
#include <stdio.h>
#include <string.h>

#include "render.h"

static const int supported_versions[] = {2, 3, 4, 5, 6, 8, 9, 10, 11, 12};

int gw_version_negotiate(int client_major, int client_minor)
{
    (void)client_minor; /* every supported version is N.0 */
    int best = supported_versions[0];
    for (size_t i = 0; i < ENT_ARRAY_LEN(supported_versions); i++)
        if (supported_versions[i] <= client_major)
            best = supported_versions[i];
    return best;
}

/* XML attribute value: '&' escaped, '<' '>' '"' replaced (AOSP shows entities literally). */
static ent_err xml_value(struct ent_buf *b, const char *v)
{
    ent_err rc = ENT_OK;
    const char *run = v; /* start of the pending run of plain characters */
    for (const char *c = v;; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch != '\0' && ch != '&' && ch != '<' && ch != '>' && ch != '"' && ch >= 0x20)
            continue;
        if (c > run)
            rc = ent_buf_append(b, run, (size_t)(c - run));
        if (ch == '\0' || rc != ENT_OK)
            return rc;
        switch (ch) {
        case '&':
            rc = ent_buf_append(b, "&amp;", 5);
            break;
        case '<':
            rc = ent_buf_append_char(b, '(');
            break;
        case '>':
            rc = ent_buf_append_char(b, ')');
            break;
        case '"':
            rc = ent_buf_append_char(b, '\'');
            break;
        default:
            rc = ent_buf_append_char(b, ' ');
            break;
        }
        if (rc != ENT_OK)
            return rc;
        run = c + 1;
    }
}

static ent_err xml_parm(struct ent_buf *b, int indent, const char *name, const char *value)
{
    static const char spaces[] = "            ";
    ent_err rc = ent_buf_append(
        b, spaces, (size_t)indent < sizeof(spaces) - 1 ? (size_t)indent : sizeof(spaces) - 1);
    if (rc == ENT_OK)
        rc = ent_buf_append(b, "<parm name=\"", 12);
    if (rc == ENT_OK)
        rc = xml_value(b, name);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, "\" value=\"");
    if (rc == ENT_OK)
        rc = xml_value(b, value);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, "\"/>\n");
    return rc;
}

static ent_err json_str(struct ent_buf *b, const char *s)
{
    ent_err rc = ent_buf_append_char(b, '"');
    if (rc == ENT_OK)
        rc = ent_buf_append_json_escaped(b, s, strlen(s));
    if (rc == ENT_OK)
        rc = ent_buf_append_char(b, '"');
    return rc;
}

/* "name":"value" with a leading comma unless first. */
static ent_err json_kv(struct ent_buf *b, bool *first, const char *name, const char *value)
{
    ent_err rc = *first ? ENT_OK : ent_buf_append_char(b, ',');
    *first = false;
    if (rc == ENT_OK)
        rc = json_str(b, name);
    if (rc == ENT_OK)
        rc = ent_buf_append_char(b, ':');
    if (rc == ENT_OK)
        rc = json_str(b, value);
    return rc;
}

ent_err gw_render_head(struct ent_buf *out, enum gw_format f, int64_t vers_version,
                       int64_t vers_validity)
{
    if (f == GW_FMT_XML)
        return ent_buf_printf(out,
                              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<wap-provisioningdoc version=\"1.1\">\n"
                              "  <characteristic type=\"VERS\">\n"
                              "    <parm name=\"version\" value=\"%lld\"/>\n"
                              "    <parm name=\"validity\" value=\"%lld\"/>\n"
                              "  </characteristic>\n",
                              (long long)vers_version, (long long)vers_validity);
    return ent_buf_printf(out, "{\"Vers\":{\"version\":\"%lld\",\"validity\":\"%lld\"}",
                          (long long)vers_version, (long long)vers_validity);
}

ent_err gw_render_token(struct ent_buf *out, enum gw_format f, const char *token, int64_t validity)
{
    if (token == NULL)
        return ENT_OK;
    ent_err rc;
    if (f == GW_FMT_XML) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)validity);
        rc = ent_buf_append_str(out, "  <characteristic type=\"TOKEN\">\n");
        if (rc == ENT_OK)
            rc = xml_parm(out, 4, "token", token);
        if (rc == ENT_OK)
            rc = xml_parm(out, 4, "validity", v);
        if (rc == ENT_OK)
            rc = ent_buf_append_str(out, "  </characteristic>\n");
        return rc;
    }
    rc = ent_buf_append_str(out, ",\"Token\":{\"token\":");
    if (rc == ENT_OK)
        rc = json_str(out, token);
    if (rc == ENT_OK)
        rc = ent_buf_printf(out, ",\"validity\":\"%lld\"}", (long long)validity);
    return rc;
}

ent_err gw_render_tail(struct ent_buf *out, enum gw_format f)
{
    return ent_buf_append_str(out, f == GW_FMT_XML ? "</wap-provisioningdoc>\n" : "}");
}

/* One application's flat parameters, accumulated before writing. */
#define APP_PARAMS_MAX 24
struct app_params {
    const char *name[APP_PARAMS_MAX];
    const char *value[APP_PARAMS_MAX];
    size_t n;
};

static void ap_add(struct app_params *ap, const char *name, const char *value)
{
    for (size_t i = 0; i < ap->n; i++)
        if (strcmp(ap->name[i], name) == 0) {
            ap->value[i] = value; /* last wins, never duplicated */
            return;
        }
    if (ap->n < APP_PARAMS_MAX) {
        ap->name[ap->n] = name;
        ap->value[ap->n] = value;
        ap->n++;
    }
}

static const char *param_get(const Entitle__V1__ServiceDecision *sd, const char *name)
{
    for (size_t i = 0; i < sd->n_params; i++)
        if (sd->params[i] && sd->params[i]->name && strcmp(sd->params[i]->name, name) == 0)
            return sd->params[i]->value ? sd->params[i]->value : "";
    return NULL;
}

/* One RAT detail block of ap2003's nested form (PROTOCOL.md §6.2). */
struct rat_detail {
    const char *access_type; /* "1" LTE, "2" NG-RAN */
    char status[12];
    const char *message;
    bool irat; /* VoNR enabled: EPS fallback capability */
};

static ent_err write_app(struct ent_buf *b, enum gw_format f, const char *app,
                         const struct app_params *ap, const struct rat_detail *rat, size_t n_rat)
{
    ent_err rc;
    if (f == GW_FMT_XML) {
        rc = ent_buf_append_str(b, "  <characteristic type=\"APPLICATION\">\n");
        if (rc == ENT_OK)
            rc = xml_parm(b, 4, "AppID", app);
        for (size_t i = 0; i < ap->n && rc == ENT_OK; i++)
            rc = xml_parm(b, 4, ap->name[i], ap->value[i]);
        if (n_rat > 0 && rc == ENT_OK) {
            rc = ent_buf_append_str(b,
                                    "    <characteristic type=\"VoiceOverCellularEntitleInfo\">\n");
            for (size_t i = 0; i < n_rat && rc == ENT_OK; i++) {
                rc = ent_buf_append_str(
                    b, "      <characteristic type=\"RATVoiceEntitleInfoDetails\">\n");
                if (rc == ENT_OK)
                    rc = xml_parm(b, 8, "AccessType", rat[i].access_type);
                if (rc == ENT_OK)
                    rc = xml_parm(b, 8, "HomeRoamingNWType", "1");
                if (rc == ENT_OK)
                    rc = xml_parm(b, 8, "EntitlementStatus", rat[i].status);
                if (rc == ENT_OK && rat[i].message)
                    rc = xml_parm(b, 8, "MessageForIncompatible", rat[i].message);
                if (rc == ENT_OK && rat[i].irat) {
                    /* Both spellings: AOSP's constant and the spec examples' (§6.2). */
                    rc = xml_parm(b, 8, "NetworkVoiceIRatCapability", "EPS-Fallback");
                    if (rc == ENT_OK)
                        rc = xml_parm(b, 8, "NetworkVoiceIRATCapablity", "EPS-Fallback");
                }
                if (rc == ENT_OK)
                    rc = ent_buf_append_str(b, "      </characteristic>\n");
            }
            if (rc == ENT_OK)
                rc = ent_buf_append_str(b, "    </characteristic>\n");
        }
        if (rc == ENT_OK)
            rc = ent_buf_append_str(b, "  </characteristic>\n");
        return rc;
    }
    bool first = true;
    rc = ent_buf_append_char(b, ',');
    if (rc == ENT_OK)
        rc = json_str(b, app);
    if (rc == ENT_OK)
        rc = ent_buf_append_str(b, ":{");
    for (size_t i = 0; i < ap->n && rc == ENT_OK; i++)
        rc = json_kv(b, &first, ap->name[i], ap->value[i]);
    if (n_rat > 0 && rc == ENT_OK) {
        rc = ent_buf_append_str(b, first ? "" : ",");
        if (rc == ENT_OK)
            rc = ent_buf_append_str(b, "\"VoiceOverCellularEntitleInfo\":[");
        for (size_t i = 0; i < n_rat && rc == ENT_OK; i++) {
            bool f2 = true;
            rc = ent_buf_append_str(b, i ? ",{\"RATVoiceEntitleInfoDetails\":{"
                                         : "{\"RATVoiceEntitleInfoDetails\":{");
            if (rc == ENT_OK)
                rc = json_kv(b, &f2, "AccessType", rat[i].access_type);
            if (rc == ENT_OK)
                rc = json_kv(b, &f2, "HomeRoamingNWType", "1");
            if (rc == ENT_OK)
                rc = json_kv(b, &f2, "EntitlementStatus", rat[i].status);
            if (rc == ENT_OK && rat[i].message)
                rc = json_kv(b, &f2, "MessageForIncompatible", rat[i].message);
            if (rc == ENT_OK && rat[i].irat) {
                rc = json_kv(b, &f2, "NetworkVoiceIRatCapability", "EPS-Fallback");
                if (rc == ENT_OK)
                    rc = json_kv(b, &f2, "NetworkVoiceIRATCapablity", "EPS-Fallback");
            }
            if (rc == ENT_OK)
                rc = ent_buf_append_str(b, "}}");
        }
        if (rc == ENT_OK)
            rc = ent_buf_append_char(b, ']');
    }
    if (rc == ENT_OK)
        rc = ent_buf_append_char(b, '}');
    return rc;
}

static bool is_odsa(const char *app)
{
    return strcmp(app, "ap2006") == 0 || strcmp(app, "ap2009") == 0 || strcmp(app, "ap2011") == 0 ||
           strcmp(app, "ap2014") == 0 || strcmp(app, "ap2017") == 0;
}

static ent_err render_one(struct ent_buf *b, const struct gw_render_in *in, const char *app)
{
    struct app_params ap = {.n = 0};
    char st[12];
    struct rat_detail rat[2];
    size_t n_rat = 0;
    const Entitle__V1__ServiceDecision *sds[4];
    size_t n_sd = 0;
    if (in->ev)
        for (size_t i = 0; i < in->ev->n_services && n_sd < ENT_ARRAY_LEN(sds); i++) {
            const Entitle__V1__ServiceDecision *sd = in->ev->services[i];
            if (sd && sd->app_id && strcmp(sd->app_id, app) == 0)
                sds[n_sd++] = sd;
        }
    bool odsa = is_odsa(app);
    if (odsa && in->odsa != GW_ODSA_POLICY) {
        ap_add(&ap, "OperationResult", in->odsa == GW_ODSA_UNSUPPORTED ? "103" : "101");
        return write_app(b, in->format, app, &ap, NULL, 0);
    }
    if (n_sd == 0) {
        /* An AppID nobody decides: incompatible (IMS) or invalid operation (ODSA). */
        if (odsa)
            ap_add(&ap, "OperationResult", "103");
        else
            ap_add(&ap, "EntitlementStatus", "2");
        return write_app(b, in->format, app, &ap, NULL, 0);
    }
    if (strcmp(app, "ap2003") == 0) {
        const Entitle__V1__ServiceDecision *volte = NULL, *vonr = NULL;
        for (size_t i = 0; i < n_sd; i++) {
            if (sds[i]->service && strcmp(sds[i]->service, "vonr") == 0)
                vonr = sds[i];
            else if (volte == NULL)
                volte = sds[i];
        }
        if (volte == NULL)
            volte = vonr;
        /* Flat EntitlementStatus always: VoLTE readers of every AOSP revision use it. */
        for (size_t i = 0; i < volte->n_params; i++)
            ap_add(&ap, volte->params[i]->name, volte->params[i]->value);
        if (param_get(volte, "EntitlementStatus") == NULL) {
            snprintf(st, sizeof(st), "%d", volte->entitlement_status);
            ap_add(&ap, "EntitlementStatus", st);
        }
        if (in->version >= 8) {
            const Entitle__V1__ServiceDecision *rs[2] = {volte, vonr};
            for (size_t i = 0; i < 2; i++) {
                if (rs[i] == NULL || (i == 1 && rs[1] == volte))
                    continue;
                struct rat_detail *r = &rat[n_rat++];
                r->access_type = i == 0 ? "1" : "2";
                snprintf(r->status, sizeof(r->status), "%d", rs[i]->entitlement_status);
                r->message = rs[i]->entitlement_status == 2
                                 ? param_get(rs[i], "MessageForIncompatible")
                                 : NULL;
                r->irat = i == 1 && rs[i]->entitlement_status == 1;
            }
        }
        return write_app(b, in->format, app, &ap, rat, n_rat);
    }
    for (size_t k = 0; k < n_sd; k++)
        for (size_t i = 0; i < sds[k]->n_params; i++)
            if (sds[k]->params[i] && sds[k]->params[i]->name && sds[k]->params[i]->value)
                ap_add(&ap, sds[k]->params[i]->name, sds[k]->params[i]->value);
    if (!odsa && param_get(sds[0], "EntitlementStatus") == NULL) {
        snprintf(st, sizeof(st), "%d", sds[0]->entitlement_status);
        ap_add(&ap, "EntitlementStatus", st);
    }
    return write_app(b, in->format, app, &ap, NULL, 0);
}

ent_err gw_render_apps(struct ent_buf *out, const struct gw_render_in *in)
{
    ent_err rc = ENT_OK;
    for (size_t i = 0; i < in->n_apps && rc == ENT_OK; i++)
        rc = render_one(out, in, in->apps[i]);
    return rc;
}

ent_err gw_render_temp_token(struct ent_buf *out, enum gw_format f, const char *app_id,
                             const char *temp_token, const char *expiry_iso, const char *targets)
{
    struct app_params ap = {.n = 0};
    ap_add(&ap, "OperationResult", "1");
    ap_add(&ap, "TemporaryToken", temp_token);
    ap_add(&ap, "TemporaryTokenExpiry", expiry_iso);
    if (targets && targets[0])
        ap_add(&ap, "OperationTargets", targets);
    return write_app(out, f, app_id, &ap, NULL, 0);
}

ent_err gw_render_eap_relay(struct ent_buf *out, const uint8_t *pkt, size_t len)
{
    char b64[2 * GW_EAP_PACKET_MAX];
    if (ent_base64_encoded_len(len) + 1 > sizeof(b64))
        return ENT_ETOOBIG;
    ent_base64_encode(pkt, len, b64);
    return ent_buf_printf(out, "{\"eap-relay-packet\":\"%s\"}", b64);
}
