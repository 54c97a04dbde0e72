/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's entities and how they live in the store. Every entity is a JSON object (jansson)
 * in one store document: JSON because the admin API speaks it, operators can read a raw
 * document when debugging, and adding a field needs no migration; the store's document
 * version is the entity's version (and the admin API's ETag). The JSON kept in the store is
 * exactly the JSON the API returns, minus `version` which comes from the document.
 *
 *   collection     key                   index[0]        index[1]   index[2]
 *   subscribers    IMSI                  MSISDN          plan       region
 *   plans          plan id               -               -          -
 *   roaming_rules  rule name             match ("plmn:20801", "mcc:208", "default")
 *                  "device:" rule name   "device"  (device capability rules, see below)
 *   rollouts       rollout id            service         -          -
 *   devices        IMSI "/" terminal id  IMSI            -          -
 *
 * Device capability rules share the roaming_rules collection (the store's collections are a
 * fixed set in common/) under keys "device:<name>": ':' is not allowed in a rule name, so
 * the two kinds never collide, and each loader skips the other's keys.
 *
 * Plans, rules and rollouts also bump the store counter ("policy", "generation") on every
 * change: see pd_policy_generation(). Credentials (K, OP, OPc, SQN) never appear here: they
 * go to authd over the bus and policyd forgets them.
 *
 * Validation: pd_*_from_json() fill a struct from a request body and name the first bad
 * field in struct pd_verr: status 400 when the JSON has the wrong shape (a string where a
 * number belongs, not an object), 422 when the value is well-formed but not acceptable (an
 * IMSI of 14 digits, an unknown status). */
#ifndef ENTITLE_POLICYD_MODEL_H
#define ENTITLE_POLICYD_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ent/err.h"
#include "ent/store.h"

enum pd_service {
    PD_SVC_VOLTE,
    PD_SVC_VOWIFI,
    PD_SVC_VONR,
    PD_SVC_SMSOIP,
    PD_SVC_ESIM,
    PD_SVC_COMPANION,
    PD_SVC_COUNT
};

/* "volte", "vowifi", "vonr", "smsoip", "esim_activation", "companion"; NULL out of range. */
const char *pd_service_name(enum pd_service s);
/* Returns false for an unknown name. */
bool pd_service_parse(const char *name, enum pd_service *out);

/* A per-service setting that may be absent (overrides, roaming rules). */
enum pd_tri { PD_UNSET = -1, PD_DENY = 0, PD_ALLOW = 1 };

enum pd_status { PD_ACTIVE, PD_SUSPENDED, PD_BARRED };
const char *pd_status_name(enum pd_status s);

#define PD_ID_MAX     64 /* plan ids, rule names, rollout ids, regions, groups */
#define PD_GROUPS_MAX 16
#define PD_MSG_MAX    256
#define PD_TOKEN_MAX  1024 /* push tokens (FCM ~160, APNs 64 hex) */

struct pd_subscriber {
    char imsi[16];   /* 6..15 digits */
    char msisdn[16]; /* E.164 digits, may be empty */
    enum pd_status status;
    char plan[PD_ID_MAX + 1];       /* "" = the default plan */
    int8_t overrides[PD_SVC_COUNT]; /* enum pd_tri */
    char serving_plmn[7];           /* "" = home */
    char region[PD_ID_MAX + 1];
    char groups[PD_GROUPS_MAX][PD_ID_MAX + 1];
    size_t n_groups;
    int tc_status, addr_status, prov_status; /* TS.43 VoWiFi statuses, 0..3 */
    uint64_t token_generation;
    int64_t created_ms, updated_ms;
    uint64_t version; /* the store document's */
};

struct pd_plan {
    char id[PD_ID_MAX + 1];
    char name[PD_MSG_MAX + 1];
    bool services[PD_SVC_COUNT];
    bool vowifi_websheet; /* VoWiFi needs the websheet (T&C, emergency address) first */
    int64_t companion_limit;
    uint64_t version;
};

enum pd_match { PD_MATCH_PLMN, PD_MATCH_MCC, PD_MATCH_DEFAULT };

struct pd_rule {
    char name[PD_ID_MAX + 1];
    enum pd_match match;
    char value[7];                 /* PLMN (5-6 digits) or MCC (3 digits); "" for default */
    int8_t services[PD_SVC_COUNT]; /* enum pd_tri: unset keeps the earlier answer */
    char message[PD_MSG_MAX + 1];
    uint64_t version;
};

/* A device capability rule (DESIGN §2 step 6). It matches a terminal by vendor (required,
 * case-insensitive), optionally model (case-insensitive; exact, or a prefix when it ends in
 * '*': "SM-G99*") and optionally a software-version range (dotted numbers, both ends
 * inclusive, "" = open). AOSP cuts terminal_vendor/_model to 4/10 characters (PROTOCOL.md
 * §2), so a device value of exactly that length also matches a longer rule value it is the
 * start of ("sams" matches vendor "samsung"). eval.h gives the precedence. */
#define PD_SW_MAX 40
struct pd_device_rule {
    char name[PD_ID_MAX + 1];
    char vendor[PD_ID_MAX + 1];
    char model[PD_ID_MAX + 1];
    char sw_min[PD_SW_MAX + 1], sw_max[PD_SW_MAX + 1];
    int8_t services[PD_SVC_COUNT]; /* enum pd_tri: unset keeps the earlier answer */
    char message[PD_MSG_MAX + 1];
    uint64_t version;
};

enum pd_rollout_state { PD_RO_ACTIVE, PD_RO_PAUSED, PD_RO_ROLLED_BACK };
const char *pd_rollout_state_name(enum pd_rollout_state s);

struct pd_rollout {
    char id[PD_ID_MAX + 1];
    enum pd_service service;
    char regions[PD_GROUPS_MAX][PD_ID_MAX + 1]; /* none = every region */
    size_t n_regions;
    char groups[PD_GROUPS_MAX][PD_ID_MAX + 1]; /* none = every group */
    size_t n_groups;
    uint32_t basis_points; /* percentage * 100, 0..10000 */
    enum pd_rollout_state state;
    uint64_t version;
};

struct pd_device {
    char imsi[16];
    char terminal_id[PD_ID_MAX * 2 + 1];
    char vendor[PD_ID_MAX + 1], model[PD_ID_MAX + 1], sw_version[PD_ID_MAX + 1];
    char push_token[PD_TOKEN_MAX + 1];
    char push_platform[16]; /* "gcm", "fcm", "apns" or "" (from TS.43 notif_action) */
    int notif_action;       /* TS.43 notif_action: 1 GCM, 2 FCM, 4 APNS */
    int64_t updated_ms;
    uint64_t version;
};

/* Plans, roaming rules, rollouts and device rules as one immutable snapshot (heap arrays). */
struct pd_policy {
    struct pd_plan *plans;
    size_t n_plans;
    struct pd_rule *rules;
    size_t n_rules;
    struct pd_rollout *rollouts;
    size_t n_rollouts;
    struct pd_device_rule *device_rules; /* in name order */
    size_t n_device_rules;
    int64_t generation;
};
void pd_policy_free(struct pd_policy *pol);
/* Deep copy (for before/after comparisons). ENT_ENOMEM. */
ent_err pd_policy_copy(struct pd_policy *dst, const struct pd_policy *src);
/* Loads every plan, rule, rollout and device rule; *out written on ENT_OK. Store errors. */
ent_err pd_policy_load(struct ent_store *s, struct pd_policy *out);
/* The store's policy generation (0 when never bumped) and its atomic bump. */
ent_err pd_policy_generation(struct ent_store *s, int64_t *gen);
ent_err pd_policy_bump(struct ent_store *s, int64_t *gen);
const struct pd_plan *pd_policy_plan(const struct pd_policy *pol, const char *id);

/* The built-in default plan used when a subscriber names none and no plan called
 * `default_id` exists in the store: VoLTE, VoWiFi and SMSoIP on, no websheet. */
void pd_plan_builtin_default(struct pd_plan *out, const char *default_id);

/* A validation failure: the HTTP status (400 or 422), the field ("imsi", "match.plmn",
 * "services.vowifi", "body") and a short reason. */
struct pd_verr {
    int status;
    char field[64];
    char reason[160];
};

/* Request bodies -> structs. `partial` (PATCH) leaves absent fields as they are in *out,
 * otherwise *out is reset first and required fields must be present. Unknown fields are
 * 422 so that a typo does not silently do nothing. Returns false with *err filled. */
bool pd_subscriber_from_json(const json_t *j, bool partial, struct pd_subscriber *out,
                             struct pd_verr *err);
bool pd_plan_from_json(const json_t *j, bool partial, struct pd_plan *out, struct pd_verr *err);
bool pd_rule_from_json(const json_t *j, bool partial, struct pd_rule *out, struct pd_verr *err);
bool pd_rollout_from_json(const json_t *j, bool partial, struct pd_rollout *out,
                          struct pd_verr *err);
bool pd_device_rule_from_json(const json_t *j, bool partial, struct pd_device_rule *out,
                              struct pd_verr *err);

/* Structs -> JSON (new reference, NULL on ENOMEM), including "version". */
json_t *pd_subscriber_to_json(const struct pd_subscriber *s);
json_t *pd_plan_to_json(const struct pd_plan *p);
json_t *pd_rule_to_json(const struct pd_rule *r);
json_t *pd_rollout_to_json(const struct pd_rollout *r);
json_t *pd_device_to_json(const struct pd_device *d);
json_t *pd_device_rule_to_json(const struct pd_device_rule *r);

/* Validators shared with the API and the RPCs. */
bool pd_valid_imsi(const char *s);
bool pd_valid_plmn(const char *s); /* 5 or 6 digits */
bool pd_valid_id(const char *s);   /* 1..64 of [A-Za-z0-9._-] */
/* A software version of a device rule: 1..8 dot-separated numbers of up to 9 digits. */
bool pd_valid_sw_version(const char *s);
/* Compares dotted numeric versions ("14.0" < "14.2.1"; missing parts count as 0, so "14" ==
 * "14.0"). The device side may carry a suffix after its numbers ("14.0-beta" reads as 14.0).
 * false when `device` does not start with a number (then no range can match it). */
bool pd_sw_compare(const char *device, const char *bound, int *cmp);

/* Store mapping. get: ENT_ENOTFOUND when absent. put with expected_version 0 = insert
 * (ENT_EEXIST), otherwise compare-and-set (ENT_ECONFLICT); on ENT_OK x->version is the new
 * version. Store errors as ent/store.h. */
ent_err pd_subscriber_get(struct ent_store *s, const char *imsi, struct pd_subscriber *out);
ent_err pd_subscriber_put(struct ent_store *s, struct pd_subscriber *x, uint64_t expected_version);
ent_err pd_plan_get(struct ent_store *s, const char *id, struct pd_plan *out);
ent_err pd_plan_put(struct ent_store *s, struct pd_plan *x, uint64_t expected_version);
ent_err pd_rule_get(struct ent_store *s, const char *name, struct pd_rule *out);
ent_err pd_rule_put(struct ent_store *s, struct pd_rule *x, uint64_t expected_version);
ent_err pd_rollout_get(struct ent_store *s, const char *id, struct pd_rollout *out);
ent_err pd_rollout_put(struct ent_store *s, struct pd_rollout *x, uint64_t expected_version);
ent_err pd_device_rule_get(struct ent_store *s, const char *name, struct pd_device_rule *out);
ent_err pd_device_rule_put(struct ent_store *s, struct pd_device_rule *x,
                           uint64_t expected_version);
/* Deletes under compare-and-set (ENT_ENOTFOUND, ENT_ECONFLICT). */
ent_err pd_device_rule_delete(struct ent_store *s, const char *name, uint64_t expected_version);
/* Device upsert (devices have no API writes, so no If-Match). */
ent_err pd_device_put(struct ent_store *s, struct pd_device *x);
/* Up to max devices of one subscriber into out[]; *n gets the count. */
ent_err pd_devices_of(struct ent_store *s, const char *imsi, struct pd_device *out, size_t max,
                      size_t *n);
/* The document -> struct decoders (the version comes from the document). ENT_EPROTO for a
 * document that is not a valid entity. */
ent_err pd_subscriber_from_doc(const struct ent_store_doc *d, struct pd_subscriber *out);
ent_err pd_plan_from_doc(const struct ent_store_doc *d, struct pd_plan *out);
ent_err pd_rule_from_doc(const struct ent_store_doc *d, struct pd_rule *out);
ent_err pd_rollout_from_doc(const struct ent_store_doc *d, struct pd_rollout *out);
ent_err pd_device_rule_from_doc(const struct ent_store_doc *d, struct pd_device_rule *out);
ent_err pd_device_from_doc(const struct ent_store_doc *d, struct pd_device *out);

#endif
