/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's entities: names, validation of request bodies, the JSON form and the store
 * mapping (see model.h for the document layout). Nothing here knows about HTTP or the bus;
 * the admin API turns a struct pd_verr into a 400/422 answer. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/util.h"
#include "model.h"

static const char *const service_names[PD_SVC_COUNT] = {
    "volte", "vowifi", "vonr", "smsoip", "esim_activation", "companion",
};

const char *pd_service_name(enum pd_service s)
{
    return (unsigned)s < PD_SVC_COUNT ? service_names[s] : NULL;
}

bool pd_service_parse(const char *name, enum pd_service *out)
{
    for (int i = 0; i < PD_SVC_COUNT; i++) {
        if (strcmp(name, service_names[i]) == 0) {
            *out = (enum pd_service)i;
            return true;
        }
    }
    return false;
}

const char *pd_status_name(enum pd_status s)
{
    switch (s) {
    case PD_ACTIVE:
        return "active";
    case PD_SUSPENDED:
        return "suspended";
    case PD_BARRED:
        return "barred";
    }
    return "active";
}

const char *pd_rollout_state_name(enum pd_rollout_state s)
{
    switch (s) {
    case PD_RO_ACTIVE:
        return "active";
    case PD_RO_PAUSED:
        return "paused";
    case PD_RO_ROLLED_BACK:
        return "rolled-back";
    }
    return "active";
}

/* ---- validators --------------------------------------------------------------------- */

static bool all_digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

bool pd_valid_imsi(const char *s)
{
    return all_digits(s, 6, 15);
}

bool pd_valid_plmn(const char *s)
{
    return all_digits(s, 5, 6);
}

bool pd_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > PD_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* Printable text without control characters, '<', '"' or '&' (PROTOCOL.md §5.1: values
 * travel in XML attributes that AOSP parses naively). */
static bool valid_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '"' || c == '&')
            return false;
    }
    return true;
}

static bool verr(struct pd_verr *e, int status, const char *field, const char *reason)
{
    e->status = status;
    snprintf(e->field, sizeof(e->field), "%s", field);
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    return false;
}

/* Reads an optional string member into dst (cap bytes). *present says whether it was there.
 * 400 if not a string, 422 if too long or rejected by `valid`. */
static bool get_str(const json_t *j, const char *key, const char *field, char *dst, size_t cap,
                    bool (*valid)(const char *), const char *why, bool *present, struct pd_verr *e)
{
    json_t *v = json_object_get(j, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_string(v))
        return verr(e, 400, field, "must be a string");
    const char *s = json_string_value(v);
    if (strlen(s) >= cap || strlen(s) != json_string_length(v))
        return verr(e, 422, field, "too long or contains NUL");
    if (valid && !valid(s))
        return verr(e, 422, field, why);
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

static bool valid_msisdn(const char *s)
{
    return s[0] == '\0' || all_digits(s, 5, 15);
}

static bool valid_plmn_or_empty(const char *s)
{
    return s[0] == '\0' || pd_valid_plmn(s);
}

static bool valid_id_or_empty(const char *s)
{
    return s[0] == '\0' || pd_valid_id(s);
}

static bool valid_msg(const char *s)
{
    return valid_text(s, PD_MSG_MAX);
}

static bool get_int(const json_t *j, const char *key, const char *field, int64_t min, int64_t max,
                    int64_t *dst, struct pd_verr *e)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return true;
    if (!json_is_integer(v))
        return verr(e, 400, field, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return verr(e, 422, field, "out of range");
    *dst = (int64_t)x;
    return true;
}

static bool get_bool(const json_t *j, const char *key, const char *field, bool *dst,
                     struct pd_verr *e)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return verr(e, 400, field, "must be true or false");
    *dst = json_is_true(v);
    return true;
}

/* A list of ids: ["a","b"]. */
static bool get_idlist(const json_t *j, const char *key, char (*dst)[PD_ID_MAX + 1], size_t *n,
                       struct pd_verr *e)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return true;
    if (!json_is_array(v))
        return verr(e, 400, key, "must be an array of strings");
    if (json_array_size(v) > PD_GROUPS_MAX)
        return verr(e, 422, key, "at most 16 entries");
    size_t i;
    json_t *it;
    json_array_foreach(v, i, it)
    {
        if (!json_is_string(it))
            return verr(e, 400, key, "must be an array of strings");
        if (!pd_valid_id(json_string_value(it)))
            return verr(e, 422, key, "entries are 1-64 characters of A-Z a-z 0-9 . _ -");
        snprintf(dst[i], PD_ID_MAX + 1, "%s", json_string_value(it));
    }
    *n = json_array_size(v);
    return true;
}

/* {"volte":true,"vowifi":null,...}: true/false set, null clears (PATCH) or leaves unset. */
static bool get_tri_map(const json_t *j, const char *key, int8_t *dst, struct pd_verr *e)
{
    json_t *v = json_object_get(j, key);
    if (!v)
        return true;
    if (!json_is_object(v))
        return verr(e, 400, key, "must be an object of service: true|false");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        char field[64];
        snprintf(field, sizeof(field), "%s.%s", key, k);
        enum pd_service s;
        if (!pd_service_parse(k, &s))
            return verr(
                e, 422, field,
                "unknown service (volte, vowifi, vonr, smsoip, esim_activation, companion)");
        if (json_is_null(x))
            dst[s] = PD_UNSET;
        else if (json_is_boolean(x))
            dst[s] = json_is_true(x) ? PD_ALLOW : PD_DENY;
        else
            return verr(e, 400, field, "must be true, false or null");
    }
    return true;
}

static bool check_known(const json_t *j, const char *const *known, struct pd_verr *e)
{
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)j, k, x)
    {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            if (strcmp(k, known[i]) == 0)
                ok = true;
        if (!ok)
            return verr(e, 422, k, "unknown field");
    }
    return true;
}

/* A request body: a JSON object with no key outside `known`. */
static bool check_body(const json_t *j, const char *const *known, struct pd_verr *e)
{
    if (!json_is_object(j))
        return verr(e, 400, "body", "must be a JSON object");
    return check_known(j, known, e);
}

/* An entity's id field (`id` of plans and rollouts, `name` of rules) into id (PD_ID_MAX + 1
 * bytes, holding the current value on a patch): required on create, unchangeable on patch. */
static bool get_entity_id(const json_t *j, const char *field, bool partial, char *id,
                          struct pd_verr *e)
{
    bool present = false;
    char v[PD_ID_MAX + 1] = "";
    if (!get_str(j, field, field, v, sizeof(v), pd_valid_id,
                 "must be 1-64 characters of A-Z a-z 0-9 . _ -", &present, e))
        return false;
    if (!partial && !present)
        return verr(e, 422, field, "required");
    if (partial && present && strcmp(v, id) != 0)
        return verr(e, 422, field, "cannot be changed");
    if (present)
        memcpy(id, v, sizeof(v));
    return true;
}

/* ---- subscribers -------------------------------------------------------------------- */

static bool subscriber_from_json(const json_t *j, bool partial, bool trusted,
                                 struct pd_subscriber *out, struct pd_verr *e)
{
    static const char *const known[] = {
        "imsi",       "msisdn", "status", "plan",    "overrides",        "serving_plmn",
        "region",     "groups", "vowifi", "version", "token_generation", "created_ms",
        "updated_ms", NULL,
    };
    if (!check_body(j, known, e))
        return false;
    struct pd_subscriber s;
    if (partial) {
        s = *out;
    } else {
        memset(&s, 0, sizeof(s));
        for (int i = 0; i < PD_SVC_COUNT; i++)
            s.overrides[i] = PD_UNSET;
        s.prov_status = 2;
    }
    bool present = false;
    char imsi[16] = "";
    if (!get_str(j, "imsi", "imsi", imsi, sizeof(imsi), pd_valid_imsi, "must be 6-15 digits",
                 &present, e))
        return false;
    if (!partial && !present)
        return verr(e, 422, "imsi", "required");
    if (partial && present && strcmp(imsi, s.imsi) != 0)
        return verr(e, 422, "imsi", "cannot be changed");
    if (present)
        memcpy(s.imsi, imsi, sizeof(imsi));
    if (!get_str(j, "msisdn", "msisdn", s.msisdn, sizeof(s.msisdn), valid_msisdn,
                 "must be 5-15 digits (E.164 without +)", NULL, e))
        return false;
    char status[16] = "";
    if (!get_str(j, "status", "status", status, sizeof(status), NULL, NULL, &present, e))
        return false;
    if (present) {
        if (strcmp(status, "active") == 0)
            s.status = PD_ACTIVE;
        else if (strcmp(status, "suspended") == 0)
            s.status = PD_SUSPENDED;
        else if (strcmp(status, "barred") == 0)
            s.status = PD_BARRED;
        else
            return verr(e, 422, "status", "must be active, suspended or barred");
    }
    if (!get_str(j, "plan", "plan", s.plan, sizeof(s.plan), valid_id_or_empty,
                 "must be a plan id (A-Z a-z 0-9 . _ -)", NULL, e) ||
        !get_tri_map(j, "overrides", s.overrides, e) ||
        !get_str(j, "serving_plmn", "serving_plmn", s.serving_plmn, sizeof(s.serving_plmn),
                 valid_plmn_or_empty, "must be MCC+MNC, 5 or 6 digits", NULL, e) ||
        !get_str(j, "region", "region", s.region, sizeof(s.region), valid_id_or_empty,
                 "must be 1-64 characters of A-Z a-z 0-9 . _ -", NULL, e) ||
        !get_idlist(j, "groups", s.groups, &s.n_groups, e))
        return false;
    json_t *vw = json_object_get(j, "vowifi");
    if (vw) {
        static const char *const vknown[] = {"tc_status", "addr_status", "prov_status", NULL};
        if (!json_is_object(vw))
            return verr(e, 400, "vowifi", "must be an object");
        if (!check_known(vw, vknown, e)) {
            char f[64];
            snprintf(f, sizeof(f), "vowifi.%.50s", e->field);
            snprintf(e->field, sizeof(e->field), "%s", f);
            return false;
        }
        int64_t tc = s.tc_status, addr = s.addr_status, prov = s.prov_status;
        if (!get_int(vw, "tc_status", "vowifi.tc_status", 0, 3, &tc, e) ||
            !get_int(vw, "addr_status", "vowifi.addr_status", 0, 3, &addr, e) ||
            !get_int(vw, "prov_status", "vowifi.prov_status", 0, 3, &prov, e))
            return false;
        s.tc_status = (int)tc;
        s.addr_status = (int)addr;
        s.prov_status = (int)prov;
    }
    if (trusted) {
        int64_t tg = 0, c = 0, u = 0;
        if (!get_int(j, "token_generation", "token_generation", 0, INT64_MAX, &tg, e) ||
            !get_int(j, "created_ms", "created_ms", 0, INT64_MAX, &c, e) ||
            !get_int(j, "updated_ms", "updated_ms", 0, INT64_MAX, &u, e))
            return false;
        s.token_generation = (uint64_t)tg;
        s.created_ms = c;
        s.updated_ms = u;
    }
    *out = s;
    return true;
}

bool pd_subscriber_from_json(const json_t *j, bool partial, struct pd_subscriber *out,
                             struct pd_verr *err)
{
    return subscriber_from_json(j, partial, false, out, err);
}

static json_t *tri_map_to_json(const int8_t *v)
{
    json_t *o = json_object();
    for (int i = 0; o && i < PD_SVC_COUNT; i++)
        if (v[i] != PD_UNSET)
            json_object_set_new(o, service_names[i], json_boolean(v[i] == PD_ALLOW));
    return o;
}

static json_t *idlist_to_json(char (*v)[PD_ID_MAX + 1], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *pd_subscriber_to_json(const struct pd_subscriber *s)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:{s:i,s:i,s:i},s:I,s:I,s:I,s:I}", "imsi",
                     s->imsi, "msisdn", s->msisdn, "status", pd_status_name(s->status), "plan",
                     s->plan, "overrides", tri_map_to_json(s->overrides), "serving_plmn",
                     s->serving_plmn, "region", s->region, "groups",
                     idlist_to_json((char(*)[PD_ID_MAX + 1]) s->groups, s->n_groups), "vowifi",
                     "tc_status", s->tc_status, "addr_status", s->addr_status, "prov_status",
                     s->prov_status, "token_generation", (json_int_t)s->token_generation,
                     "created_ms", (json_int_t)s->created_ms, "updated_ms",
                     (json_int_t)s->updated_ms, "version", (json_int_t)s->version);
}

/* ---- plans -------------------------------------------------------------------------- */

void pd_plan_builtin_default(struct pd_plan *out, const char *default_id)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", default_id && default_id[0] ? default_id : "default");
    snprintf(out->name, sizeof(out->name), "built-in default plan");
    out->services[PD_SVC_VOLTE] = true;
    out->services[PD_SVC_VOWIFI] = true;
    out->services[PD_SVC_SMSOIP] = true;
}

bool pd_plan_from_json(const json_t *j, bool partial, struct pd_plan *out, struct pd_verr *e)
{
    static const char *const known[] = {
        "id", "name", "services", "vowifi_websheet", "companion_limit", "version", NULL};
    if (!check_body(j, known, e))
        return false;
    struct pd_plan p;
    if (partial)
        p = *out;
    else
        memset(&p, 0, sizeof(p));
    if (!get_entity_id(j, "id", partial, p.id, e))
        return false;
    if (!get_str(j, "name", "name", p.name, sizeof(p.name), valid_msg,
                 "at most 256 characters, no control characters, < \" or &", NULL, e))
        return false;
    json_t *sv = json_object_get(j, "services");
    if (sv) {
        int8_t tri[PD_SVC_COUNT];
        for (int i = 0; i < PD_SVC_COUNT; i++)
            tri[i] = p.services[i] ? PD_ALLOW : PD_DENY;
        if (!get_tri_map(j, "services", tri, e))
            return false;
        for (int i = 0; i < PD_SVC_COUNT; i++)
            p.services[i] = tri[i] == PD_ALLOW;
    }
    int64_t limit = p.companion_limit;
    if (!get_bool(j, "vowifi_websheet", "vowifi_websheet", &p.vowifi_websheet, e) ||
        !get_int(j, "companion_limit", "companion_limit", 0, 100, &limit, e))
        return false;
    p.companion_limit = limit;
    *out = p;
    return true;
}

json_t *pd_plan_to_json(const struct pd_plan *p)
{
    json_t *svc = json_object();
    for (int i = 0; svc && i < PD_SVC_COUNT; i++)
        json_object_set_new(svc, service_names[i], json_boolean(p->services[i]));
    return json_pack("{s:s,s:s,s:o,s:b,s:I,s:I}", "id", p->id, "name", p->name, "services", svc,
                     "vowifi_websheet", p->vowifi_websheet, "companion_limit",
                     (json_int_t)p->companion_limit, "version", (json_int_t)p->version);
}

/* ---- rules (roaming and device rules share their effect and JSON form) --------------- */

/* A rule's effect: per-service allow/deny (`services`) and the user-facing `message`. */
static bool get_rule_effect(const json_t *j, int8_t *services, char *message, size_t message_cap,
                            struct pd_verr *e)
{
    return get_tri_map(j, "services", services, e) &&
           get_str(j, "message", "message", message, message_cap, valid_msg,
                   "at most 256 characters, no control characters, < \" or &", NULL, e);
}

/* Takes the reference to match. */
static json_t *rule_to_json(const char *name, json_t *match, const int8_t *services,
                            const char *message, uint64_t version)
{
    return json_pack("{s:s,s:o,s:o,s:s,s:I}", "name", name, "match", match, "services",
                     tri_map_to_json(services), "message", message, "version", (json_int_t)version);
}

/* ---- roaming rules ------------------------------------------------------------------ */

bool pd_rule_from_json(const json_t *j, bool partial, struct pd_rule *out, struct pd_verr *e)
{
    static const char *const known[] = {"name", "match", "services", "message", "version", NULL};
    if (!check_body(j, known, e))
        return false;
    struct pd_rule r;
    if (partial) {
        r = *out;
    } else {
        memset(&r, 0, sizeof(r));
        for (int i = 0; i < PD_SVC_COUNT; i++)
            r.services[i] = PD_UNSET;
    }
    if (!get_entity_id(j, "name", partial, r.name, e))
        return false;
    json_t *m = json_object_get(j, "match");
    if (!m && !partial)
        return verr(e, 422, "match",
                    "required: {\"plmn\":\"20801\"}, {\"mcc\":\"208\"} or "
                    "{\"default\":true}");
    if (m) {
        if (!json_is_object(m))
            return verr(e, 400, "match", "must be an object");
        if (json_object_size(m) != 1)
            return verr(e, 422, "match", "exactly one of plmn, mcc, default");
        json_t *v;
        if ((v = json_object_get(m, "plmn")) != NULL) {
            if (!json_is_string(v))
                return verr(e, 400, "match.plmn", "must be a string");
            if (!pd_valid_plmn(json_string_value(v)))
                return verr(e, 422, "match.plmn", "must be MCC+MNC, 5 or 6 digits");
            r.match = PD_MATCH_PLMN;
            snprintf(r.value, sizeof(r.value), "%s", json_string_value(v));
        } else if ((v = json_object_get(m, "mcc")) != NULL) {
            if (!json_is_string(v))
                return verr(e, 400, "match.mcc", "must be a string");
            if (!all_digits(json_string_value(v), 3, 3))
                return verr(e, 422, "match.mcc", "must be 3 digits");
            r.match = PD_MATCH_MCC;
            snprintf(r.value, sizeof(r.value), "%s", json_string_value(v));
        } else if ((v = json_object_get(m, "default")) != NULL) {
            if (!json_is_boolean(v))
                return verr(e, 400, "match.default", "must be true");
            if (!json_is_true(v))
                return verr(e, 422, "match.default", "must be true");
            r.match = PD_MATCH_DEFAULT;
            r.value[0] = '\0';
        } else {
            return verr(e, 422, "match", "exactly one of plmn, mcc, default");
        }
    }
    if (!get_rule_effect(j, r.services, r.message, sizeof(r.message), e))
        return false;
    *out = r;
    return true;
}

json_t *pd_rule_to_json(const struct pd_rule *r)
{
    json_t *m;
    if (r->match == PD_MATCH_PLMN)
        m = json_pack("{s:s}", "plmn", r->value);
    else if (r->match == PD_MATCH_MCC)
        m = json_pack("{s:s}", "mcc", r->value);
    else
        m = json_pack("{s:b}", "default", 1);
    return rule_to_json(r->name, m, r->services, r->message, r->version);
}

/* ---- device capability rules ---------------------------------------------------------- */

bool pd_valid_sw_version(const char *s)
{
    size_t parts = 0, digits = 0;
    for (const char *c = s;; c++) {
        if (isdigit((unsigned char)*c)) {
            if (++digits > 9)
                return false;
            continue;
        }
        if (digits == 0 || (*c != '.' && *c != '\0'))
            return false;
        parts++;
        digits = 0;
        if (*c == '\0')
            break;
    }
    return parts >= 1 && parts <= 8;
}

/* Reads the next dotted number of a version; false at the end of its numbers. */
static bool sw_part(const char **s, unsigned long long *out)
{
    const char *c = *s;
    if (!isdigit((unsigned char)*c))
        return false;
    unsigned long long v = 0;
    while (isdigit((unsigned char)*c)) {
        if (v < 1000000000ULL) /* bounds are at most 9 digits: larger compares as "larger" */
            v = v * 10 + (unsigned long long)(*c - '0');
        c++;
    }
    if (*c == '.' && isdigit((unsigned char)c[1]))
        c++;
    else
        c += strlen(c); /* a suffix ("-beta") or the end: no more parts */
    *s = c;
    *out = v;
    return true;
}

bool pd_sw_compare(const char *device, const char *bound, int *cmp)
{
    if (!device || !isdigit((unsigned char)device[0]))
        return false;
    const char *a = device, *b = bound;
    for (;;) {
        unsigned long long x = 0, y = 0;
        bool hx = sw_part(&a, &x), hy = sw_part(&b, &y);
        if (!hx && !hy)
            break;
        if (x != y) {
            *cmp = x < y ? -1 : 1;
            return true;
        }
    }
    *cmp = 0;
    return true;
}

/* A terminal value of a rule: printable text (valid_text), at most 64 characters. */
static bool valid_terminal(const char *s)
{
    return s[0] != '\0' && valid_text(s, PD_ID_MAX);
}

/* A model: as valid_terminal, '*' only as the last character and not alone. */
static bool valid_model(const char *s)
{
    if (!valid_terminal(s))
        return false;
    const char *star = strchr(s, '*');
    return !star || (star[1] == '\0' && star != s);
}

static bool valid_sw_or_empty(const char *s)
{
    return s[0] == '\0' || pd_valid_sw_version(s);
}

/* The rule's match object: {"vendor":..., "model":..., "sw_min":..., "sw_max":...}. The
 * whole object is replaced on PATCH, as a roaming rule's match is. */
static bool device_match_from_json(const json_t *m, struct pd_device_rule *r, struct pd_verr *e)
{
    static const char *const known[] = {"vendor", "model", "sw_min", "sw_max", NULL};
    if (!json_is_object(m))
        return verr(e, 400, "match", "must be an object");
    if (!check_known(m, known, e)) {
        char f[64];
        snprintf(f, sizeof(f), "match.%.50s", e->field);
        snprintf(e->field, sizeof(e->field), "%s", f);
        return false;
    }
    bool present = false;
    r->vendor[0] = r->model[0] = r->sw_min[0] = r->sw_max[0] = '\0';
    if (!get_str(m, "vendor", "match.vendor", r->vendor, sizeof(r->vendor), valid_terminal,
                 "1-64 characters, no control characters, < \" or &", &present, e))
        return false;
    if (!present)
        return verr(e, 422, "match.vendor", "required (the terminal_vendor to match)");
    if (strchr(r->vendor, '*'))
        return verr(e, 422, "match.vendor", "must be an exact vendor (no '*')");
    if (!get_str(m, "model", "match.model", r->model, sizeof(r->model), valid_model,
                 "1-64 characters, no control characters, < \" or &; '*' only at the end "
                 "(a prefix) and not alone (leave model out to match every model)",
                 NULL, e) ||
        !get_str(m, "sw_min", "match.sw_min", r->sw_min, sizeof(r->sw_min), valid_sw_or_empty,
                 "must be a dotted numeric version such as 13 or 14.2.1", NULL, e) ||
        !get_str(m, "sw_max", "match.sw_max", r->sw_max, sizeof(r->sw_max), valid_sw_or_empty,
                 "must be a dotted numeric version such as 13 or 14.2.1", NULL, e))
        return false;
    int cmp = 0;
    if (r->sw_min[0] && r->sw_max[0] && pd_sw_compare(r->sw_max, r->sw_min, &cmp) && cmp < 0)
        return verr(e, 422, "match.sw_max", "must not be below match.sw_min");
    return true;
}

bool pd_device_rule_from_json(const json_t *j, bool partial, struct pd_device_rule *out,
                              struct pd_verr *e)
{
    static const char *const known[] = {"name", "match", "services", "message", "version", NULL};
    if (!check_body(j, known, e))
        return false;
    struct pd_device_rule r;
    if (partial) {
        r = *out;
    } else {
        memset(&r, 0, sizeof(r));
        for (int i = 0; i < PD_SVC_COUNT; i++)
            r.services[i] = PD_UNSET;
    }
    if (!get_entity_id(j, "name", partial, r.name, e))
        return false;
    json_t *m = json_object_get(j, "match");
    if (!m && !partial)
        return verr(e, 422, "match",
                    "required: {\"vendor\":\"...\"} with optional model, sw_min, sw_max");
    if (m && !device_match_from_json(m, &r, e))
        return false;
    if (!get_rule_effect(j, r.services, r.message, sizeof(r.message), e))
        return false;
    *out = r;
    return true;
}

json_t *pd_device_rule_to_json(const struct pd_device_rule *r)
{
    json_t *m = json_pack("{s:s}", "vendor", r->vendor);
    if (m && r->model[0])
        json_object_set_new(m, "model", json_string(r->model));
    if (m && r->sw_min[0])
        json_object_set_new(m, "sw_min", json_string(r->sw_min));
    if (m && r->sw_max[0])
        json_object_set_new(m, "sw_max", json_string(r->sw_max));
    return rule_to_json(r->name, m, r->services, r->message, r->version);
}

/* ---- rollouts ----------------------------------------------------------------------- */

bool pd_rollout_from_json(const json_t *j, bool partial, struct pd_rollout *out, struct pd_verr *e)
{
    static const char *const known[] = {"id",         "service", "regions", "groups",
                                        "percentage", "state",   "version", NULL};
    if (!check_body(j, known, e))
        return false;
    struct pd_rollout r;
    if (partial)
        r = *out;
    else
        memset(&r, 0, sizeof(r));
    if (!get_entity_id(j, "id", partial, r.id, e))
        return false;
    bool present = false;
    char svc[32] = "";
    if (!get_str(j, "service", "service", svc, sizeof(svc), NULL, NULL, &present, e))
        return false;
    if (!partial && !present)
        return verr(e, 422, "service", "required");
    if (present) {
        enum pd_service s;
        if (!pd_service_parse(svc, &s))
            return verr(
                e, 422, "service",
                "unknown service (volte, vowifi, vonr, smsoip, esim_activation, companion)");
        if (partial && s != r.service)
            return verr(e, 422, "service", "cannot be changed");
        r.service = s;
    }
    if (!get_idlist(j, "regions", r.regions, &r.n_regions, e) ||
        !get_idlist(j, "groups", r.groups, &r.n_groups, e))
        return false;
    json_t *pct = json_object_get(j, "percentage");
    if (!pct && !partial)
        return verr(e, 422, "percentage", "required (0-100)");
    if (pct) {
        if (!json_is_number(pct))
            return verr(e, 400, "percentage", "must be a number");
        double v = json_number_value(pct);
        if (!(v >= 0.0 && v <= 100.0))
            return verr(e, 422, "percentage", "must be between 0 and 100");
        r.basis_points = (uint32_t)(v * 100.0 + 0.5);
    }
    char state[16] = "";
    if (!get_str(j, "state", "state", state, sizeof(state), NULL, NULL, &present, e))
        return false;
    if (present) {
        if (strcmp(state, "active") == 0)
            r.state = PD_RO_ACTIVE;
        else if (strcmp(state, "paused") == 0)
            r.state = PD_RO_PAUSED;
        else if (strcmp(state, "rolled-back") == 0)
            r.state = PD_RO_ROLLED_BACK;
        else
            return verr(e, 422, "state", "must be active, paused or rolled-back");
    }
    *out = r;
    return true;
}

json_t *pd_rollout_to_json(const struct pd_rollout *r)
{
    return json_pack("{s:s,s:s,s:o,s:o,s:f,s:s,s:I}", "id", r->id, "service",
                     pd_service_name(r->service), "regions",
                     idlist_to_json((char(*)[PD_ID_MAX + 1]) r->regions, r->n_regions), "groups",
                     idlist_to_json((char(*)[PD_ID_MAX + 1]) r->groups, r->n_groups), "percentage",
                     r->basis_points / 100.0, "state", pd_rollout_state_name(r->state), "version",
                     (json_int_t)r->version);
}

/* ---- devices ------------------------------------------------------------------------ */

json_t *pd_device_to_json(const struct pd_device *d)
{
    /* The push token is a credential of the device's push channel: shown masked only. */
    char masked[48];
    size_t n = strlen(d->push_token);
    if (n == 0)
        masked[0] = '\0';
    else
        snprintf(masked, sizeof(masked), "%.4s…(%zu)", d->push_token, n);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "imsi", d->imsi, "terminal_id",
                     d->terminal_id, "vendor", d->vendor, "model", d->model, "sw_version",
                     d->sw_version, "push_token", masked, "push_platform", d->push_platform,
                     "updated_ms", (json_int_t)d->updated_ms, "version", (json_int_t)d->version);
}

static json_t *device_store_json(const struct pd_device *d)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I}", "imsi", d->imsi, "terminal_id",
                     d->terminal_id, "vendor", d->vendor, "model", d->model, "sw_version",
                     d->sw_version, "push_token", d->push_token, "push_platform", d->push_platform,
                     "notif_action", d->notif_action, "updated_ms", (json_int_t)d->updated_ms);
}

static void copy_member(const json_t *j, const char *key, char *dst, size_t cap)
{
    const char *s = json_string_value(json_object_get(j, key));
    snprintf(dst, cap, "%s", s ? s : "");
}

/* ---- store mapping ------------------------------------------------------------------ */

static ent_err doc_json(const struct ent_store_doc *d, json_t **out)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)d->data, d->len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return ENT_EPROTO;
    }
    *out = j;
    return ENT_OK;
}

/* One stored document through its entity's JSON parser: ENT_EPROTO when the stored JSON no
 * longer parses; on success the caller copies the document version into the entity. */
static ent_err doc_parse(const struct ent_store_doc *d, bool (*parse)(const json_t *j, void *out),
                         void *out)
{
    json_t *j;
    ent_err rc = doc_json(d, &j);
    if (rc != ENT_OK)
        return rc;
    bool ok = parse(j, out);
    json_decref(j);
    return ok ? ENT_OK : ENT_EPROTO;
}

static bool parse_subscriber(const json_t *j, void *out)
{
    struct pd_verr e;
    return subscriber_from_json(j, false, true, out, &e);
}

static bool parse_plan(const json_t *j, void *out)
{
    struct pd_verr e;
    return pd_plan_from_json(j, false, out, &e);
}

static bool parse_rule(const json_t *j, void *out)
{
    struct pd_verr e;
    return pd_rule_from_json(j, false, out, &e);
}

static bool parse_device_rule(const json_t *j, void *out)
{
    struct pd_verr e;
    return pd_device_rule_from_json(j, false, out, &e);
}

static bool parse_rollout(const json_t *j, void *out)
{
    struct pd_verr e;
    return pd_rollout_from_json(j, false, out, &e);
}

ent_err pd_subscriber_from_doc(const struct ent_store_doc *d, struct pd_subscriber *out)
{
    ent_err rc = doc_parse(d, parse_subscriber, out);
    if (rc == ENT_OK)
        out->version = d->version;
    return rc;
}

ent_err pd_plan_from_doc(const struct ent_store_doc *d, struct pd_plan *out)
{
    ent_err rc = doc_parse(d, parse_plan, out);
    if (rc == ENT_OK)
        out->version = d->version;
    return rc;
}

static bool is_device_rule_key(const char *key);

ent_err pd_rule_from_doc(const struct ent_store_doc *d, struct pd_rule *out)
{
    if (is_device_rule_key(d->key))
        return ENT_EPROTO; /* a device rule sharing the collection */
    ent_err rc = doc_parse(d, parse_rule, out);
    if (rc == ENT_OK)
        out->version = d->version;
    return rc;
}

ent_err pd_rollout_from_doc(const struct ent_store_doc *d, struct pd_rollout *out)
{
    ent_err rc = doc_parse(d, parse_rollout, out);
    if (rc == ENT_OK)
        out->version = d->version;
    return rc;
}

/* Device rules live in the roaming_rules collection under "device:<name>" (model.h). */
#define DEVICE_RULE_PREFIX "device:"

static bool is_device_rule_key(const char *key)
{
    return key && strncmp(key, DEVICE_RULE_PREFIX, strlen(DEVICE_RULE_PREFIX)) == 0;
}

ent_err pd_device_rule_from_doc(const struct ent_store_doc *d, struct pd_device_rule *out)
{
    if (!is_device_rule_key(d->key))
        return ENT_EPROTO;
    ent_err rc = doc_parse(d, parse_device_rule, out);
    if (rc == ENT_OK)
        out->version = d->version;
    return rc;
}

ent_err pd_device_from_doc(const struct ent_store_doc *d, struct pd_device *out)
{
    json_t *j;
    ent_err rc = doc_json(d, &j);
    if (rc != ENT_OK)
        return rc;
    memset(out, 0, sizeof(*out));
    copy_member(j, "imsi", out->imsi, sizeof(out->imsi));
    copy_member(j, "terminal_id", out->terminal_id, sizeof(out->terminal_id));
    copy_member(j, "vendor", out->vendor, sizeof(out->vendor));
    copy_member(j, "model", out->model, sizeof(out->model));
    copy_member(j, "sw_version", out->sw_version, sizeof(out->sw_version));
    copy_member(j, "push_token", out->push_token, sizeof(out->push_token));
    copy_member(j, "push_platform", out->push_platform, sizeof(out->push_platform));
    out->updated_ms = json_integer_value(json_object_get(j, "updated_ms"));
    out->notif_action = (int)json_integer_value(json_object_get(j, "notif_action"));
    out->version = d->version;
    json_decref(j);
    return ENT_OK;
}

/* Serialises j (stealing the reference) without "version" and writes it. */
static ent_err put_json(struct ent_store *s, enum ent_store_coll c, const char *key, json_t *j,
                        const char *idx0, const char *idx1, const char *idx2,
                        uint64_t expected_version, uint64_t *new_version)
{
    if (!j)
        return ENT_ENOMEM;
    json_object_del(j, "version");
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return ENT_ENOMEM;
    struct ent_store_doc d = {
        .key = (char *)key,
        .data = (uint8_t *)text,
        .len = strlen(text),
        .index = {(char *)idx0, (char *)idx1, (char *)idx2},
    };
    ent_err rc;
    if (expected_version == 0) {
        rc = ent_store_insert(s, c, &d);
        if (rc == ENT_OK)
            *new_version = 1;
    } else {
        rc = ent_store_update(s, c, &d, expected_version, new_version);
    }
    free(text);
    return rc;
}

static const char *nonempty(const char *s)
{
    return s && s[0] ? s : NULL;
}

ent_err pd_subscriber_get(struct ent_store *s, const char *imsi, struct pd_subscriber *out)
{
    struct ent_store_doc d = {0};
    ent_err rc = ent_store_get(s, ENT_COLL_SUBSCRIBERS, imsi, &d);
    if (rc == ENT_OK)
        rc = pd_subscriber_from_doc(&d, out);
    ent_store_doc_free(&d);
    return rc;
}

ent_err pd_subscriber_put(struct ent_store *s, struct pd_subscriber *x, uint64_t expected_version)
{
    uint64_t v = 0;
    ent_err rc =
        put_json(s, ENT_COLL_SUBSCRIBERS, x->imsi, pd_subscriber_to_json(x), nonempty(x->msisdn),
                 nonempty(x->plan), nonempty(x->region), expected_version, &v);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

ent_err pd_plan_get(struct ent_store *s, const char *id, struct pd_plan *out)
{
    struct ent_store_doc d = {0};
    ent_err rc = ent_store_get(s, ENT_COLL_PLANS, id, &d);
    if (rc == ENT_OK)
        rc = pd_plan_from_doc(&d, out);
    ent_store_doc_free(&d);
    return rc;
}

ent_err pd_plan_put(struct ent_store *s, struct pd_plan *x, uint64_t expected_version)
{
    uint64_t v = 0;
    ent_err rc = put_json(s, ENT_COLL_PLANS, x->id, pd_plan_to_json(x), NULL, NULL, NULL,
                          expected_version, &v);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

ent_err pd_rule_get(struct ent_store *s, const char *name, struct pd_rule *out)
{
    struct ent_store_doc d = {0};
    ent_err rc = ent_store_get(s, ENT_COLL_ROAMING_RULES, name, &d);
    if (rc == ENT_OK)
        rc = pd_rule_from_doc(&d, out);
    ent_store_doc_free(&d);
    return rc;
}

ent_err pd_rule_put(struct ent_store *s, struct pd_rule *x, uint64_t expected_version)
{
    char match[16];
    if (x->match == PD_MATCH_PLMN)
        snprintf(match, sizeof(match), "plmn:%s", x->value);
    else if (x->match == PD_MATCH_MCC)
        snprintf(match, sizeof(match), "mcc:%s", x->value);
    else
        snprintf(match, sizeof(match), "default");
    uint64_t v = 0;
    ent_err rc = put_json(s, ENT_COLL_ROAMING_RULES, x->name, pd_rule_to_json(x), match, NULL, NULL,
                          expected_version, &v);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

static ent_err device_rule_key(const char *name, char *key, size_t cap)
{
    int n = snprintf(key, cap, DEVICE_RULE_PREFIX "%s", name);
    return n > 0 && (size_t)n < cap ? ENT_OK : ENT_EINVAL;
}

ent_err pd_device_rule_get(struct ent_store *s, const char *name, struct pd_device_rule *out)
{
    char key[PD_ID_MAX + 16];
    ent_err rc = device_rule_key(name, key, sizeof(key));
    if (rc != ENT_OK)
        return ENT_ENOTFOUND;
    struct ent_store_doc d = {0};
    rc = ent_store_get(s, ENT_COLL_ROAMING_RULES, key, &d);
    if (rc == ENT_OK)
        rc = pd_device_rule_from_doc(&d, out);
    ent_store_doc_free(&d);
    return rc;
}

ent_err pd_device_rule_put(struct ent_store *s, struct pd_device_rule *x, uint64_t expected_version)
{
    char key[PD_ID_MAX + 16];
    ent_err rc = device_rule_key(x->name, key, sizeof(key));
    if (rc != ENT_OK)
        return rc;
    uint64_t v = 0;
    rc = put_json(s, ENT_COLL_ROAMING_RULES, key, pd_device_rule_to_json(x), "device", NULL, NULL,
                  expected_version, &v);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

ent_err pd_device_rule_delete(struct ent_store *s, const char *name, uint64_t expected_version)
{
    char key[PD_ID_MAX + 16];
    ent_err rc = device_rule_key(name, key, sizeof(key));
    if (rc != ENT_OK)
        return ENT_ENOTFOUND;
    return ent_store_delete(s, ENT_COLL_ROAMING_RULES, key, expected_version);
}

ent_err pd_rollout_get(struct ent_store *s, const char *id, struct pd_rollout *out)
{
    struct ent_store_doc d = {0};
    ent_err rc = ent_store_get(s, ENT_COLL_ROLLOUTS, id, &d);
    if (rc == ENT_OK)
        rc = pd_rollout_from_doc(&d, out);
    ent_store_doc_free(&d);
    return rc;
}

ent_err pd_rollout_put(struct ent_store *s, struct pd_rollout *x, uint64_t expected_version)
{
    uint64_t v = 0;
    ent_err rc = put_json(s, ENT_COLL_ROLLOUTS, x->id, pd_rollout_to_json(x),
                          pd_service_name(x->service), NULL, NULL, expected_version, &v);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

ent_err pd_device_put(struct ent_store *s, struct pd_device *x)
{
    char key[sizeof(x->imsi) + sizeof(x->terminal_id) + 2];
    snprintf(key, sizeof(key), "%s/%s", x->imsi, x->terminal_id);
    json_t *j = device_store_json(x);
    if (!j)
        return ENT_ENOMEM;
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return ENT_ENOMEM;
    struct ent_store_doc d = {
        .key = key, .data = (uint8_t *)text, .len = strlen(text), .index = {x->imsi}};
    uint64_t v = 0;
    ent_err rc = ent_store_put(s, ENT_COLL_DEVICES, &d, &v);
    free(text);
    if (rc == ENT_OK)
        x->version = v;
    return rc;
}

ent_err pd_devices_of(struct ent_store *s, const char *imsi, struct pd_device *out, size_t max,
                      size_t *n)
{
    struct ent_store_page page = {0};
    size_t limit = max < ENT_STORE_PAGE_MAX ? max : ENT_STORE_PAGE_MAX;
    if (limit == 0) {
        *n = 0;
        return ENT_OK;
    }
    ent_err rc = ent_store_query(s, ENT_COLL_DEVICES, 0, imsi, NULL, limit, &page);
    if (rc != ENT_OK)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < page.n && k < max; i++)
        if (pd_device_from_doc(&page.docs[i], &out[k]) == ENT_OK)
            k++;
    ent_store_page_free(&page);
    *n = k;
    return ENT_OK;
}

/* ---- policy snapshot ---------------------------------------------------------------- */

void pd_policy_free(struct pd_policy *pol)
{
    free(pol->plans);
    free(pol->rules);
    free(pol->rollouts);
    free(pol->device_rules);
    memset(pol, 0, sizeof(*pol));
}

static void *dup_array(const void *src, size_t n, size_t size, bool *fail)
{
    if (n == 0)
        return NULL;
    void *p = malloc(n * size);
    if (!p) {
        *fail = true;
        return NULL;
    }
    memcpy(p, src, n * size);
    return p;
}

ent_err pd_policy_copy(struct pd_policy *dst, const struct pd_policy *src)
{
    bool fail = false;
    struct pd_policy p = *src;
    p.plans = dup_array(src->plans, src->n_plans, sizeof(*p.plans), &fail);
    p.rules = dup_array(src->rules, src->n_rules, sizeof(*p.rules), &fail);
    p.rollouts = dup_array(src->rollouts, src->n_rollouts, sizeof(*p.rollouts), &fail);
    p.device_rules =
        dup_array(src->device_rules, src->n_device_rules, sizeof(*p.device_rules), &fail);
    if (fail) {
        pd_policy_free(&p);
        return ENT_ENOMEM;
    }
    *dst = p;
    return ENT_OK;
}

/* Loads one whole collection through `decode` into a growing array of `size`-byte items. */
static ent_err load_all(struct ent_store *s, enum ent_store_coll c, int slot, const char *value,
                        size_t size, ent_err (*decode)(const struct ent_store_doc *, void *),
                        void **items, size_t *n)
{
    char *after = NULL;
    void *arr = NULL;
    size_t cnt = 0, cap = 0;
    ent_err rc = ENT_OK;
    for (;;) {
        struct ent_store_page page = {0};
        rc = ent_store_query(s, c, slot, value, after, ENT_STORE_PAGE_MAX, &page);
        free(after);
        after = NULL;
        if (rc != ENT_OK)
            break;
        for (size_t i = 0; i < page.n; i++) {
            if (cnt == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                void *na = realloc(arr, ncap * size);
                if (!na) {
                    rc = ENT_ENOMEM;
                    break;
                }
                arr = na;
                cap = ncap;
            }
            if (decode(&page.docs[i], (char *)arr + cnt * size) == ENT_OK)
                cnt++;
        }
        if (rc == ENT_OK && page.next_after)
            after = strdup(page.next_after);
        bool more = page.next_after != NULL;
        ent_store_page_free(&page);
        if (rc != ENT_OK || !more)
            break;
        if (!after) {
            rc = ENT_ENOMEM;
            break;
        }
    }
    if (rc != ENT_OK) {
        free(arr);
        return rc;
    }
    *items = arr;
    *n = cnt;
    return ENT_OK;
}

static ent_err dec_plan(const struct ent_store_doc *d, void *out)
{
    return pd_plan_from_doc(d, out);
}
static ent_err dec_rule(const struct ent_store_doc *d, void *out)
{
    return pd_rule_from_doc(d, out);
}
static ent_err dec_rollout(const struct ent_store_doc *d, void *out)
{
    return pd_rollout_from_doc(d, out);
}
static ent_err dec_device_rule(const struct ent_store_doc *d, void *out)
{
    return pd_device_rule_from_doc(d, out);
}

ent_err pd_policy_load(struct ent_store *s, struct pd_policy *out)
{
    struct pd_policy p = {0};
    void *plans = NULL, *rules = NULL, *rollouts = NULL, *device_rules = NULL;
    ent_err rc = pd_policy_generation(s, &p.generation);
    if (rc == ENT_OK)
        rc = load_all(s, ENT_COLL_PLANS, -1, NULL, sizeof(struct pd_plan), dec_plan, &plans,
                      &p.n_plans);
    if (rc == ENT_OK)
        rc = load_all(s, ENT_COLL_ROAMING_RULES, -1, NULL, sizeof(struct pd_rule), dec_rule, &rules,
                      &p.n_rules);
    if (rc == ENT_OK)
        rc = load_all(s, ENT_COLL_ROLLOUTS, -1, NULL, sizeof(struct pd_rollout), dec_rollout,
                      &rollouts, &p.n_rollouts);
    /* Device rules by their key prefix: keys in byte order give name order. */
    if (rc == ENT_OK)
        rc = load_all(s, ENT_COLL_ROAMING_RULES, -1, DEVICE_RULE_PREFIX,
                      sizeof(struct pd_device_rule), dec_device_rule, &device_rules,
                      &p.n_device_rules);
    p.plans = plans;
    p.rules = rules;
    p.rollouts = rollouts;
    p.device_rules = device_rules;
    if (rc != ENT_OK) {
        pd_policy_free(&p);
        return rc;
    }
    *out = p;
    return ENT_OK;
}

ent_err pd_policy_generation(struct ent_store *s, int64_t *gen)
{
    int64_t v = 0;
    ent_err rc = ent_store_counter_get(s, "policy", "generation", &v);
    if (rc == ENT_ENOTFOUND) {
        v = 0;
        rc = ENT_OK;
    }
    if (rc == ENT_OK)
        *gen = v;
    return rc;
}

ent_err pd_policy_bump(struct ent_store *s, int64_t *gen)
{
    return ent_store_incr(s, "policy", "generation", 1, gen);
}

const struct pd_plan *pd_policy_plan(const struct pd_policy *pol, const char *id)
{
    for (size_t i = 0; i < pol->n_plans; i++)
        if (strcmp(pol->plans[i].id, id) == 0)
            return &pol->plans[i];
    return NULL;
}
