/* SPDX-License-Identifier: Apache-2.0 */
/* Entitlement documents (PROTOCOL.md §5, §6, §8): XML (`wap-provisioningdoc` with
 * characteristic/parm, as AOSP's parsers need it) and JSON (one object keyed by AppID), and
 * the version negotiation that shapes them. A document is rendered in three parts so the
 * decision cache can keep the expensive, per-subscriber part and splice in the per-request
 * ones:
 *
 *     head (VERS)  +  token block (TOKEN)  +  applications (one per requested AppID)  +  tail
 *
 * Values go out as strings; in XML only '&' is escaped and '<', '>' and '"' never appear
 * (they are replaced), since AOSP shows other entities literally. Nothing is nested inside an
 * APPLICATION except ap2003's VoiceOverCellularEntitleInfo from v8.0 on. Pure functions; any
 * thread. Errors are the buffer's (ENT_ETOOBIG, ENT_ENOMEM). */
#ifndef ENTITLE_GATEWAY_RENDER_H
#define ENTITLE_GATEWAY_RENDER_H

#include <stdint.h>

#include "common.pb-c.h"
#include "ent/util.h"
#include "request.h"

#define GW_CT_XML       "text/vnd.wap.connectivity-xml"
#define GW_CT_JSON      "application/json"
#define GW_CT_EAP_RELAY "application/vnd.gsma.eap-relay.v1.0+json"

/* The highest protocol version (major) this server shapes documents for that is not above
 * the client's; clients below 2.0 get 2.0. Supported: 2, 3, 4, 5, 6, 8, 9, 10, 11, 12. */
int gw_version_negotiate(int client_major, int client_minor);

/* ODSA operation outcome the gateway decides itself (PROTOCOL.md §6.4, §10). */
enum gw_odsa_op {
    GW_ODSA_POLICY = 0,      /* CheckEligibility or none: policyd's parameters */
    GW_ODSA_UNSUPPORTED = 1, /* a known operation the gateway does not serve: 103 */
    GW_ODSA_INVALID = 2,     /* an unknown operation: 101 */
};

/* What the applications part is built from. `ev` may be NULL (every AppID then answers
 * EntitlementStatus 2). apps are the request's AppIDs in order, known ones and unknown
 * ones alike. */
struct gw_render_in {
    enum gw_format format;
    int version; /* negotiated major */
    const char (*apps)[GW_APP_LEN + 1];
    size_t n_apps;
    const Entitle__V1__EvaluateResponse *ev;
    enum gw_odsa_op odsa;
};

ent_err gw_render_head(struct ent_buf *out, enum gw_format f, int64_t vers_version,
                       int64_t vers_validity);
/* token may be NULL: no TOKEN block (never for a successful device reply). */
ent_err gw_render_token(struct ent_buf *out, enum gw_format f, const char *token, int64_t validity);
ent_err gw_render_apps(struct ent_buf *out, const struct gw_render_in *in);
ent_err gw_render_tail(struct ent_buf *out, enum gw_format f);

/* Extra ODSA block for AcquireTemporaryToken (PROTOCOL.md §4.5), rendered as one more
 * APPLICATION for app_id. expiry_iso like "2025-06-01T12:00:00Z". */
ent_err gw_render_temp_token(struct ent_buf *out, enum gw_format f, const char *app_id,
                             const char *temp_token, const char *expiry_iso, const char *targets);

/* {"eap-relay-packet":"<base64>"} */
ent_err gw_render_eap_relay(struct ent_buf *out, const uint8_t *pkt, size_t len);

#endif
