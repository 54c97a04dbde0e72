/* SPDX-License-Identifier: Apache-2.0 */
/* `entitlectl plans|roaming|rollouts|device-rules list|get|create|patch|delete`: the policy
 * half of the provisioning API (/v1/plans, /v1/roaming-rules, /v1/rollouts,
 * /v1/device-rules), which policyd serves with one generic handler set, so one table (struct
 * kind) drives all four here too. Bodies come from --file JSON and/or per-kind flags (flags
 * win); the API validates them. device-rules also takes add/update for create/patch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ectl.h"
#include "entitlectl.h"

#define POLICY_TIMEOUT_MS 30000L

/* Every flag any kind takes; a kind's option table points at the ones it accepts. */
struct flags {
    const char *file, *etag;
    /* roaming and device rules */
    const char *name, *mcc, *plmn, *message;
    /* device rules: the match */
    const char *vendor, *model, *sw_min, *sw_max;
    bool match_default;
    struct ectl_strs allow, deny, inherit;
    /* rollouts */
    const char *id, *service, *percentage, *state;
    struct ectl_strs regions, groups;
};

struct kind {
    const char *cmd;  /* "plans" */
    const char *path; /* "/v1/plans" */
    const char *noun; /* "plan" */
    const struct ectl_col *cols;
    size_t n_cols;
    const char *create_usage, *patch_usage;
};

static const struct ectl_col plan_cols[] = {
    {"ID", "id", ECTL_COL_VALUE, NULL},
    {"NAME", "name", ECTL_COL_VALUE, NULL},
    {"SERVICES", "services", ECTL_COL_TRUE_KEYS, "(none)"},
    {"WEBSHEET", "vowifi_websheet", ECTL_COL_VALUE, NULL},
    {"COMPANIONS", "companion_limit", ECTL_COL_VALUE, NULL},
    {"VERSION", "version", ECTL_COL_VALUE, NULL},
};
/* Roaming and device rules: the same columns (MATCH prints the rule's match object). */
static const struct ectl_col rule_cols[] = {
    {"NAME", "name", ECTL_COL_VALUE, NULL},
    {"MATCH", "match", ECTL_COL_VALUE, NULL},
    {"ALLOW", "services", ECTL_COL_TRUE_KEYS, NULL},
    {"DENY", "services", ECTL_COL_FALSE_KEYS, NULL},
    {"MESSAGE", "message", ECTL_COL_VALUE, NULL},
    {"VERSION", "version", ECTL_COL_VALUE, NULL},
};
static const struct ectl_col rollout_cols[] = {
    {"ID", "id", ECTL_COL_VALUE, NULL},
    {"SERVICE", "service", ECTL_COL_VALUE, NULL},
    {"PERCENT", "percentage", ECTL_COL_VALUE, NULL},
    {"STATE", "state", ECTL_COL_VALUE, NULL},
    {"REGIONS", "regions", ECTL_COL_VALUE, "all"},
    {"GROUPS", "groups", ECTL_COL_VALUE, "all"},
    {"VERSION", "version", ECTL_COL_VALUE, NULL},
};

static const struct kind kinds[] = {
    {"plans", "/v1/plans", "plan", plan_cols, sizeof(plan_cols) / sizeof(plan_cols[0]),
     "entitlectl plans create --file PLAN.json",
     "entitlectl plans patch ID --file CHANGES.json [--if-match ETAG]"},
    {"roaming", "/v1/roaming-rules", "roaming rule", rule_cols,
     sizeof(rule_cols) / sizeof(rule_cols[0]),
     "entitlectl roaming create (--file RULE.json | --name NAME (--mcc MCC | --plmn MCCMNC | "
     "--default) [--allow SVC,...] [--deny SVC,...] [--message TEXT])",
     "entitlectl roaming patch NAME [--mcc MCC | --plmn MCCMNC | --default] [--allow SVC,...] "
     "[--deny SVC,...] [--inherit SVC,...] [--message TEXT] [--file JSON] [--if-match ETAG]"},
    {"rollouts", "/v1/rollouts", "rollout", rollout_cols,
     sizeof(rollout_cols) / sizeof(rollout_cols[0]),
     "entitlectl rollouts create (--file ROLLOUT.json | --id ID --service SVC --percentage N "
     "[--region R,...] [--group G,...] [--state S])",
     "entitlectl rollouts patch ID [--percentage N] [--state active|paused|rolled-back] "
     "[--region R,...] [--group G,...] [--file JSON] [--if-match ETAG]"},
    {"device-rules", "/v1/device-rules", "device rule", rule_cols,
     sizeof(rule_cols) / sizeof(rule_cols[0]),
     "entitlectl device-rules create|add (--file RULE.json | --name NAME --vendor V "
     "[--model M|PREFIX*] [--sw-min VER] [--sw-max VER] [--allow SVC,...] [--deny SVC,...] "
     "[--message TEXT])",
     "entitlectl device-rules patch|update NAME [--vendor V [--model M] [--sw-min VER] "
     "[--sw-max VER]] [--allow SVC,...] [--deny SVC,...] [--inherit SVC,...] [--message TEXT] "
     "[--file JSON] [--if-match ETAG]"},
};

#define KIND_DEVICE_RULES (&kinds[3])

static json_t *str_array(const struct ectl_strs *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(a, json_string(l->v[i]));
    return a;
}

/* The option table for `kind create|patch`. */
static size_t kind_opts(const struct kind *k, struct flags *f, struct ectl_opt *o)
{
    size_t n = 0;
    o[n++] = (struct ectl_opt){"file", ECTL_VALUE, &f->file};
    o[n++] = (struct ectl_opt){"if-match", ECTL_VALUE, &f->etag};
    if (k == &kinds[1]) {
        o[n++] = (struct ectl_opt){"name", ECTL_VALUE, &f->name};
        o[n++] = (struct ectl_opt){"mcc", ECTL_VALUE, &f->mcc};
        o[n++] = (struct ectl_opt){"plmn", ECTL_VALUE, &f->plmn};
        o[n++] = (struct ectl_opt){"default", ECTL_FLAG, &f->match_default};
        o[n++] = (struct ectl_opt){"message", ECTL_VALUE, &f->message};
        o[n++] = (struct ectl_opt){"allow", ECTL_LIST, &f->allow};
        o[n++] = (struct ectl_opt){"deny", ECTL_LIST, &f->deny};
        o[n++] = (struct ectl_opt){"inherit", ECTL_LIST, &f->inherit};
    } else if (k == KIND_DEVICE_RULES) {
        o[n++] = (struct ectl_opt){"name", ECTL_VALUE, &f->name};
        o[n++] = (struct ectl_opt){"vendor", ECTL_VALUE, &f->vendor};
        o[n++] = (struct ectl_opt){"model", ECTL_VALUE, &f->model};
        o[n++] = (struct ectl_opt){"sw-min", ECTL_VALUE, &f->sw_min};
        o[n++] = (struct ectl_opt){"sw-max", ECTL_VALUE, &f->sw_max};
        o[n++] = (struct ectl_opt){"message", ECTL_VALUE, &f->message};
        o[n++] = (struct ectl_opt){"allow", ECTL_LIST, &f->allow};
        o[n++] = (struct ectl_opt){"deny", ECTL_LIST, &f->deny};
        o[n++] = (struct ectl_opt){"inherit", ECTL_LIST, &f->inherit};
    } else if (k == &kinds[2]) {
        o[n++] = (struct ectl_opt){"id", ECTL_VALUE, &f->id};
        o[n++] = (struct ectl_opt){"service", ECTL_VALUE, &f->service};
        o[n++] = (struct ectl_opt){"percentage", ECTL_VALUE, &f->percentage};
        o[n++] = (struct ectl_opt){"state", ECTL_VALUE, &f->state};
        o[n++] = (struct ectl_opt){"region", ECTL_LIST, &f->regions};
        o[n++] = (struct ectl_opt){"group", ECTL_LIST, &f->groups};
    }
    return n;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

/* --allow/--deny/--inherit laid over the body's "services" (roaming and device rules). */
static void services_body(json_t *b, const struct flags *f)
{
    if (!f->allow.n && !f->deny.n && !f->inherit.n)
        return;
    json_t *sv = json_object_get(b, "services");
    if (!json_is_object(sv)) {
        sv = json_object();
        json_object_set_new(b, "services", sv);
    }
    for (size_t i = 0; i < f->allow.n; i++)
        json_object_set_new(sv, f->allow.v[i], json_true());
    for (size_t i = 0; i < f->deny.n; i++)
        json_object_set_new(sv, f->deny.v[i], json_false());
    for (size_t i = 0; i < f->inherit.n; i++)
        json_object_set_new(sv, f->inherit.v[i], json_null());
}

/* The request body: --file (if any) with the flags laid over it; NULL after printing why. */
static json_t *kind_body(const struct kind *k, const struct flags *f, const char *usage)
{
    json_t *b = f->file ? ectl_load_json_file(f->file) : json_object();
    if (!b)
        return NULL;
    if (k == &kinds[1]) {
        int matches = (f->mcc != NULL) + (f->plmn != NULL) + f->match_default;
        if (matches > 1) {
            ectl_usage(usage, "give one of --mcc, --plmn and --default");
            json_decref(b);
            return NULL;
        }
        set_str(b, "name", f->name);
        if (f->mcc)
            json_object_set_new(b, "match", json_pack("{s:s}", "mcc", f->mcc));
        else if (f->plmn)
            json_object_set_new(b, "match", json_pack("{s:s}", "plmn", f->plmn));
        else if (f->match_default)
            json_object_set_new(b, "match", json_pack("{s:b}", "default", 1));
        set_str(b, "message", f->message);
        services_body(b, f);
    } else if (k == KIND_DEVICE_RULES) {
        if (!f->vendor && (f->model || f->sw_min || f->sw_max)) {
            /* The API replaces a rule's whole match: a partial one would drop the vendor. */
            ectl_usage(usage, "--model, --sw-min and --sw-max need --vendor (the whole match)");
            json_decref(b);
            return NULL;
        }
        set_str(b, "name", f->name);
        if (f->vendor) {
            json_t *m = json_pack("{s:s}", "vendor", f->vendor);
            set_str(m, "model", f->model);
            set_str(m, "sw_min", f->sw_min);
            set_str(m, "sw_max", f->sw_max);
            json_object_set_new(b, "match", m);
        }
        set_str(b, "message", f->message);
        services_body(b, f);
    } else if (k == &kinds[2]) {
        set_str(b, "id", f->id);
        set_str(b, "service", f->service);
        set_str(b, "state", f->state);
        if (f->percentage) {
            char *end = NULL;
            double v = strtod(f->percentage, &end);
            if (end == f->percentage || *end || !isfinite(v)) {
                ectl_usage(usage, "--percentage wants a number (0-100)");
                json_decref(b);
                return NULL;
            }
            json_object_set_new(b, "percentage", json_real(v));
        }
        if (f->regions.n)
            json_object_set_new(b, "regions", str_array(&f->regions));
        if (f->groups.n)
            json_object_set_new(b, "groups", str_array(&f->groups));
    }
    if (json_object_size(b) == 0) {
        ectl_usage(usage, "nothing to send (use --file%s)", k == &kinds[0] ? "" : " or the flags");
        json_decref(b);
        return NULL;
    }
    return b;
}

static void print_body(const struct ectl_opts *g, const struct ectl_resp *r, const char *done)
{
    if (r->body.len == 0) {
        if (done && !g->json)
            printf("%s\n", done);
        return;
    }
    if (g->json) {
        fwrite(r->body.data, 1, r->body.len, stdout);
        if (r->body.data[r->body.len - 1] != '\n')
            putchar('\n');
        return;
    }
    json_t *j = ectl_resp_json(r);
    if (j)
        ectl_print_object(j);
    json_decref(j);
}

static int kind_run(const struct kind *k, struct ectl_opts *g, int argc, char **argv)
{
    char usage[512];
    snprintf(usage, sizeof(usage), "entitlectl %s list|get ID|create ...|patch ID ...|delete ID",
             k->cmd);
    if (argc < 2)
        return ectl_usage(usage, "missing subcommand");
    const char *sub = argv[1];
    struct flags f;
    memset(&f, 0, sizeof(f));
    struct ectl_opt opts[16];
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int rc;
    const char *method = NULL, *this_usage = usage;
    bool want_id = true, want_body = false;
    if (strcmp(sub, "list") == 0) {
        rc = ectl_parse(g, argc - 2, argv + 2, NULL, 0, pos, 0, 0, &n_pos, usage);
        method = "GET";
        want_id = false;
    } else if (strcmp(sub, "get") == 0) {
        rc = ectl_parse(g, argc - 2, argv + 2, NULL, 0, pos, 1, 1, &n_pos, usage);
        method = "GET";
    } else if (strcmp(sub, "delete") == 0) {
        opts[0] = (struct ectl_opt){"if-match", ECTL_VALUE, &f.etag};
        rc = ectl_parse(g, argc - 2, argv + 2, opts, 1, pos, 1, 1, &n_pos, usage);
        method = "DELETE";
    } else if (strcmp(sub, "create") == 0 || (k == KIND_DEVICE_RULES && strcmp(sub, "add") == 0)) {
        this_usage = k->create_usage;
        rc = ectl_parse(g, argc - 2, argv + 2, opts, kind_opts(k, &f, opts), pos, 0, 0, &n_pos,
                        this_usage);
        method = "POST";
        want_id = false;
        want_body = true;
    } else if (strcmp(sub, "patch") == 0 ||
               (k == KIND_DEVICE_RULES && strcmp(sub, "update") == 0)) {
        this_usage = k->patch_usage;
        rc = ectl_parse(g, argc - 2, argv + 2, opts, kind_opts(k, &f, opts), pos, 1, 1, &n_pos,
                        this_usage);
        method = "PATCH";
        want_body = true;
    } else {
        return ectl_usage(usage, "unknown subcommand '%s'", sub);
    }
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    json_t *body = NULL;
    if (want_body) {
        body = kind_body(k, &f, this_usage);
        if (!body)
            return ENTITLECTL_USAGE;
    }
    struct ent_buf path;
    ent_buf_init(&path, 4096);
    ent_buf_append_str(&path, k->path);
    if (want_id)
        ectl_path_add(&path, pos[0]);
    struct ectl_api *a = NULL;
    rc = ectl_api_open(&a, g, POLICY_TIMEOUT_MS);
    if (rc == ENTITLECTL_OK) {
        struct ectl_resp r;
        rc = ectl_call(a, method, path.data, body, f.etag, &r);
        if (rc == ENTITLECTL_OK && strcmp(sub, "list") == 0) {
            json_t *j = ectl_resp_json(&r);
            json_t *items = json_object_get(j, "items");
            if (!json_is_array(items)) {
                rc = ENTITLECTL_FAIL;
            } else if (g->json) {
                size_t i;
                json_t *it;
                json_array_foreach(items, i, it) ectl_print_json_line(it);
            } else {
                ectl_print_table(items, k->cols, k->n_cols);
            }
            json_decref(j);
        } else if (rc == ENTITLECTL_OK) {
            char done[160];
            snprintf(done, sizeof(done), "deleted %s %.64s", k->noun, pos[0] ? pos[0] : "");
            print_body(g, &r, done);
        }
        ectl_resp_free(&r);
        ectl_api_close(a);
    }
    json_decref(body);
    ent_buf_free(&path);
    return rc;
}

int entitlectl_policy(struct ectl_opts *g, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(argv[0], kinds[i].cmd) == 0)
            return kind_run(&kinds[i], g, argc, argv);
    return ectl_usage("entitlectl plans|roaming|rollouts|device-rules ...", "unknown command '%s'",
                      argv[0]);
}
