/* SPDX-License-Identifier: Apache-2.0 */
/* `entitlectl subscribers ...`, `entitlectl tokens revoke` and `entitlectl explain`: the
 * subscriber half of the provisioning API (docs/admin-api.yaml, /v1/subscribers...). K, OP
 * and OPc come from files or environment variables only, go into the request body and are
 * wiped after it is sent; the API never returns them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ectl.h"
#include "entitlectl.h"

#define SUB_TIMEOUT_MS 30000L

static const struct ectl_col sub_cols[] = {
    {"IMSI", "imsi", ECTL_COL_VALUE, NULL},
    {"MSISDN", "msisdn", ECTL_COL_VALUE, NULL},
    {"STATUS", "status", ECTL_COL_VALUE, NULL},
    {"PLAN", "plan", ECTL_COL_VALUE, "(default)"},
    {"SERVING", "serving_plmn", ECTL_COL_VALUE, "home"},
    {"REGION", "region", ECTL_COL_VALUE, NULL},
    {"GROUPS", "groups", ECTL_COL_VALUE, NULL},
    {"VERSION", "version", ECTL_COL_VALUE, NULL},
};

/* "/v1/subscribers[/imsi[/tail]]" into b. */
static bool sub_path(struct ent_buf *b, const char *imsi, const char *tail)
{
    ent_buf_init(b, 4096);
    ent_err rc = ent_buf_append_str(b, "/v1/subscribers");
    if (rc == ENT_OK && imsi)
        rc = ectl_path_add(b, imsi);
    if (rc == ENT_OK && tail)
        rc = ectl_path_add(b, tail);
    return rc == ENT_OK;
}

/* Opens the client, sends one request, prints the answer as an object (human) or verbatim
 * (--json); `done` (if set) is printed instead when the answer has no body. */
static int one_call(struct ectl_opts *g, const char *method, const char *path, json_t *body,
                    const char *if_match, const char *done)
{
    struct ectl_api *a = NULL;
    int rc = ectl_api_open(&a, g, SUB_TIMEOUT_MS);
    if (rc != ENTITLECTL_OK) {
        json_decref(body);
        return rc;
    }
    struct ectl_resp r;
    rc = ectl_call(a, method, path, body, if_match, &r);
    json_decref(body);
    if (rc == ENTITLECTL_OK) {
        if (r.body.len == 0) {
            if (done && !g->json)
                printf("%s\n", done);
        } else if (g->json) {
            fwrite(r.body.data, 1, r.body.len, stdout);
            if (r.body.data[r.body.len - 1] != '\n')
                putchar('\n');
        } else {
            json_t *j = ectl_resp_json(&r);
            if (j)
                ectl_print_object(j);
            else
                rc = ENTITLECTL_FAIL;
            json_decref(j);
        }
    }
    ectl_resp_free(&r);
    ectl_api_close(a);
    return rc;
}

/* ---- list ------------------------------------------------------------------------------ */

#define LIST_USAGE                                                                                 \
    "entitlectl subscribers list [--plan P | --msisdn M | --region R] [--limit N] "                \
    "[--after IMSI] [--all]"

static int sub_list(struct ectl_opts *g, int argc, char **argv)
{
    const char *plan = NULL, *msisdn = NULL, *region = NULL, *limit_s = NULL, *after = NULL;
    bool all = false;
    const struct ectl_opt opts[] = {
        {"plan", ECTL_VALUE, &plan},     {"msisdn", ECTL_VALUE, &msisdn},
        {"region", ECTL_VALUE, &region}, {"limit", ECTL_VALUE, &limit_s},
        {"after", ECTL_VALUE, &after},   {"all", ECTL_FLAG, &all},
    };
    int rc = ectl_parse(g, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), NULL, 0, 0, NULL,
                        LIST_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    int64_t limit = 100;
    if (limit_s && ent_parse_i64(limit_s, 1, 1000, &limit) != ENT_OK)
        return ectl_usage(LIST_USAGE, "--limit must be 1-1000");
    if ((plan != NULL) + (msisdn != NULL) + (region != NULL) > 1)
        return ectl_usage(LIST_USAGE, "one filter at a time (the API takes one)");
    struct ectl_api *a = NULL;
    rc = ectl_api_open(&a, g, SUB_TIMEOUT_MS);
    if (rc != ENTITLECTL_OK)
        return rc;
    json_t *rows = json_array();
    char *next = after ? strdup(after) : NULL;
    do {
        struct ent_buf p;
        ent_buf_init(&p, 4096);
        ent_buf_printf(&p, "/v1/subscribers?limit=%lld", (long long)limit);
        const char *fname = plan ? "plan" : msisdn ? "msisdn" : region ? "region" : NULL;
        const char *fval = plan ? plan : msisdn ? msisdn : region;
        if (fname) {
            ent_buf_printf(&p, "&%s=", fname);
            ectl_query_add(&p, "", fval);
        }
        if (next)
            ectl_query_add(&p, "&after=", next);
        free(next);
        next = NULL;
        struct ectl_resp r;
        rc = ectl_call(a, "GET", p.data, NULL, NULL, &r);
        ent_buf_free(&p);
        json_t *page = rc == ENTITLECTL_OK ? ectl_resp_json(&r) : NULL;
        ectl_resp_free(&r);
        if (rc == ENTITLECTL_OK && !page)
            rc = ENTITLECTL_FAIL;
        if (rc != ENTITLECTL_OK)
            break;
        json_t *items = json_object_get(page, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            if (g->json)
                ectl_print_json_line(it);
            else
                json_array_append(rows, it);
        }
        const char *na = json_string_value(json_object_get(page, "next_after"));
        if (na && all)
            next = strdup(na);
        else if (na && !g->json)
            fprintf(stderr, "(more: --after %s, or --all)\n", na);
        json_decref(page);
    } while (next);
    free(next);
    if (rc == ENTITLECTL_OK && !g->json)
        ectl_print_table(rows, sub_cols, sizeof(sub_cols) / sizeof(sub_cols[0]));
    json_decref(rows);
    ectl_api_close(a);
    return rc;
}

/* ---- get / delete / location / tokens ----------------------------------------------- */

static int sub_get(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[1];
    int rc = ectl_parse(g, argc, argv, NULL, 0, pos, 1, 1, NULL, "entitlectl subscribers get IMSI");
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    struct ent_buf p;
    bool ok = sub_path(&p, pos[0], NULL);
    rc = ok ? one_call(g, "GET", p.data, NULL, NULL, NULL) : ENTITLECTL_USAGE;
    ent_buf_free(&p);
    return rc;
}

static int sub_delete(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[1], *etag = NULL;
    const struct ectl_opt opts[] = {{"if-match", ECTL_VALUE, &etag}};
    int rc = ectl_parse(g, argc, argv, opts, 1, pos, 1, 1, NULL,
                        "entitlectl subscribers delete IMSI [--if-match ETAG]");
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    struct ent_buf p;
    char done[128];
    snprintf(done, sizeof(done), "deleted subscriber %.64s", pos[0]);
    rc = sub_path(&p, pos[0], NULL) ? one_call(g, "DELETE", p.data, NULL, etag, done)
                                    : ENTITLECTL_USAGE;
    ent_buf_free(&p);
    return rc;
}

#define LOC_USAGE "entitlectl subscribers location IMSI PLMN|home [--if-match ETAG]"

static int sub_location(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[2], *etag = NULL;
    const struct ectl_opt opts[] = {{"if-match", ECTL_VALUE, &etag}};
    int rc = ectl_parse(g, argc, argv, opts, 1, pos, 2, 2, NULL, LOC_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    const char *plmn = strcmp(pos[1], "home") == 0 ? "" : pos[1];
    struct ent_buf p;
    rc = sub_path(&p, pos[0], "location")
             ? one_call(g, "PUT", p.data, json_pack("{s:s}", "serving_plmn", plmn), etag, NULL)
             : ENTITLECTL_USAGE;
    ent_buf_free(&p);
    return rc;
}

int entitlectl_tokens(struct ectl_opts *g, int argc, char **argv)
{
    static const char *const usage = "entitlectl tokens revoke IMSI";
    if (argc < 2 || strcmp(argv[1], "revoke") != 0)
        return ectl_usage(usage, "unknown or missing subcommand");
    const char *pos[1];
    int rc = ectl_parse(g, argc - 2, argv + 2, NULL, 0, pos, 1, 1, NULL, usage);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    struct ent_buf p;
    rc = sub_path(&p, pos[0], "tokens") ? one_call(g, "DELETE", p.data, NULL, NULL, NULL)
                                        : ENTITLECTL_USAGE;
    ent_buf_free(&p);
    return rc;
}

/* ---- create / patch --------------------------------------------------------------------- */

#define CREATE_USAGE                                                                               \
    "entitlectl subscribers create --imsi IMSI [--msisdn MSISDN] [--k-file F | --k-env VAR "       \
    "(--opc-file F | --opc-env VAR | --op-file F | --op-env VAR) [--sqn HEX] [--amf HEX]] "        \
    "[--plan P] [--status S] [--region R] [--group G,...]"

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

static json_t *str_array(const struct ectl_strs *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(a, json_string(l->v[i]));
    return a;
}

static int sub_create(struct ectl_opts *g, int argc, char **argv)
{
    const char *imsi = NULL, *msisdn = NULL, *kf = NULL, *ke = NULL, *opcf = NULL, *opce = NULL,
               *opf = NULL, *ope = NULL, *sqn = NULL, *amf = NULL, *plan = NULL, *status = NULL,
               *region = NULL;
    struct ectl_strs groups = {0};
    const struct ectl_opt opts[] = {
        {"imsi", ECTL_VALUE, &imsi},     {"msisdn", ECTL_VALUE, &msisdn},
        {"k-file", ECTL_VALUE, &kf},     {"k-env", ECTL_VALUE, &ke},
        {"opc-file", ECTL_VALUE, &opcf}, {"opc-env", ECTL_VALUE, &opce},
        {"op-file", ECTL_VALUE, &opf},   {"op-env", ECTL_VALUE, &ope},
        {"sqn", ECTL_VALUE, &sqn},       {"amf", ECTL_VALUE, &amf},
        {"plan", ECTL_VALUE, &plan},     {"status", ECTL_VALUE, &status},
        {"region", ECTL_VALUE, &region}, {"group", ECTL_LIST, &groups},
    };
    int rc = ectl_parse(g, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), NULL, 0, 0, NULL,
                        CREATE_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    if (!imsi)
        return ectl_usage(CREATE_USAGE, "--imsi is required");
    bool has_k = kf || ke, has_opc = opcf || opce, has_op = opf || ope;
    if (!has_k && (has_opc || has_op || sqn || amf))
        return ectl_usage(CREATE_USAGE, "--opc/--op/--sqn/--amf need --k-file or --k-env");
    if (has_k && has_opc == has_op)
        return ectl_usage(CREATE_USAGE, "give exactly one of --opc-file/--opc-env and "
                                        "--op-file/--op-env");
    char k[33] = "", o[33] = "";
    json_t *body = json_object();
    set_str(body, "imsi", imsi);
    set_str(body, "msisdn", msisdn);
    set_str(body, "plan", plan);
    set_str(body, "status", status);
    set_str(body, "region", region);
    if (groups.n)
        json_object_set_new(body, "groups", str_array(&groups));
    set_str(body, "sqn", sqn);
    set_str(body, "amf", amf);
    if (has_k) {
        bool ok = ectl_read_secret("k", kf, ke, k, 32) &&
                  (has_opc ? ectl_read_secret("opc", opcf, opce, o, 32)
                           : ectl_read_secret("op", opf, ope, o, 32));
        if (!ok) {
            OPENSSL_cleanse(k, sizeof(k));
            OPENSSL_cleanse(o, sizeof(o));
            json_decref(body);
            return ENTITLECTL_USAGE;
        }
        json_object_set_new(body, "k", json_string(k));
        json_object_set_new(body, has_opc ? "opc" : "op", json_string(o));
        OPENSSL_cleanse(k, sizeof(k));
        OPENSSL_cleanse(o, sizeof(o));
    }
    /* Wipe jansson's copies of the secrets once the request is gone. */
    json_incref(body);
    rc = one_call(g, "POST", "/v1/subscribers", body, NULL, NULL);
    static const char *const secret_keys[] = {"k", "opc", "op"};
    for (size_t i = 0; i < 3; i++) {
        json_t *s = json_object_get(body, secret_keys[i]);
        if (s)
            OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
    }
    json_decref(body);
    return rc;
}

#define PATCH_USAGE                                                                                \
    "entitlectl subscribers patch IMSI [--status active|suspended|barred] [--plan P] "             \
    "[--msisdn M] [--region R] [--group G,...] [--allow SVC,...] [--deny SVC,...] "                \
    "[--inherit SVC,...] [--file JSON] [--if-match ETAG]"

static int sub_patch(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[1], *status = NULL, *plan = NULL, *msisdn = NULL, *region = NULL, *file = NULL,
                        *etag = NULL;
    struct ectl_strs groups = {0}, allow = {0}, deny = {0}, inherit = {0};
    bool no_groups = false;
    const struct ectl_opt opts[] = {
        {"status", ECTL_VALUE, &status},  {"plan", ECTL_VALUE, &plan},
        {"msisdn", ECTL_VALUE, &msisdn},  {"region", ECTL_VALUE, &region},
        {"group", ECTL_LIST, &groups},    {"no-groups", ECTL_FLAG, &no_groups},
        {"allow", ECTL_LIST, &allow},     {"deny", ECTL_LIST, &deny},
        {"inherit", ECTL_LIST, &inherit}, {"file", ECTL_VALUE, &file},
        {"if-match", ECTL_VALUE, &etag},
    };
    int rc = ectl_parse(g, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), pos, 1, 1, NULL,
                        PATCH_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    json_t *body = file ? ectl_load_json_file(file) : json_object();
    if (!body)
        return ENTITLECTL_USAGE;
    set_str(body, "status", status);
    set_str(body, "plan", plan);
    set_str(body, "msisdn", msisdn);
    set_str(body, "region", region);
    if (groups.n || no_groups)
        json_object_set_new(body, "groups", str_array(&groups));
    if (allow.n || deny.n || inherit.n) {
        json_t *ov = json_object_get(body, "overrides");
        if (!json_is_object(ov)) {
            ov = json_object();
            json_object_set_new(body, "overrides", ov);
        }
        for (size_t i = 0; i < allow.n; i++)
            json_object_set_new(ov, allow.v[i], json_true());
        for (size_t i = 0; i < deny.n; i++)
            json_object_set_new(ov, deny.v[i], json_false());
        for (size_t i = 0; i < inherit.n; i++)
            json_object_set_new(ov, inherit.v[i], json_null());
    }
    if (json_object_size(body) == 0) {
        json_decref(body);
        return ectl_usage(PATCH_USAGE, "nothing to change");
    }
    struct ent_buf p;
    if (sub_path(&p, pos[0], NULL)) {
        rc = one_call(g, "PATCH", p.data, body, etag, NULL);
    } else {
        json_decref(body);
        rc = ENTITLECTL_USAGE;
    }
    ent_buf_free(&p);
    return rc;
}

/* ---- explain ---------------------------------------------------------------------------- */

#define EXPLAIN_USAGE                                                                              \
    "entitlectl explain IMSI --app APPID[,APPID...] [--serving-plmn PLMN] [--terminal-vendor V "   \
    "--terminal-model M --terminal-sw VER]"

/* One decision, step by step: the trace lines are already numbered by the decision order
 * (1 override ... 7 default) in policyd/eval.c. */
static void explain_print(const json_t *j)
{
    char *ver = ectl_text(json_object_get(j, "subscriber_version"));
    char *imsi = ectl_text(json_object_get(j, "imsi"));
    char *serving = ectl_text(json_object_get(j, "serving_plmn"));
    printf("subscriber %s (version %s), serving PLMN %s\n", imsi, ver,
           serving && serving[0] ? serving : "home");
    free(ver);
    free(imsi);
    free(serving);
    json_t *term = json_object_get(j, "terminal");
    if (json_is_object(term)) {
        char *tv = ectl_text(json_object_get(term, "vendor"));
        char *tm = ectl_text(json_object_get(term, "model"));
        char *ts = ectl_text(json_object_get(term, "sw_version"));
        printf("terminal %s %s sw %s\n", tv ? tv : "", tm ? tm : "", ts ? ts : "");
        free(tv);
        free(tm);
        free(ts);
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "services"), i, s)
    {
        char *app = ectl_text(json_object_get(s, "app_id"));
        char *svc = ectl_text(json_object_get(s, "service"));
        char *st = ectl_text(json_object_get(s, "entitlement_status"));
        char *step = ectl_text(json_object_get(s, "step"));
        char *rule = ectl_text(json_object_get(s, "rule"));
        /* What `rule` names depends on the step that decided. */
        const char *what = "rule";
        if (step && strcmp(step, "plan") == 0)
            what = "plan";
        else if (step && strcmp(step, "rollout") == 0)
            what = "cohort";
        else if (step && strcmp(step, "device") == 0)
            what = "device rule";
        printf("\n%s %s: EntitlementStatus %s, decided by step %s", app, svc, st, step);
        if (rule && rule[0])
            printf(" (%s %s)", what, rule);
        putchar('\n');
        free(app);
        free(svc);
        free(st);
        free(step);
        free(rule);
        size_t k;
        json_t *line;
        json_array_foreach(json_object_get(s, "explain"), k, line)
        {
            char *t = ectl_text(line);
            printf("  %s\n", t ? t : "");
            free(t);
        }
        const char *name;
        json_t *v;
        json_t *params = json_object_get(s, "params");
        if (json_object_size(params))
            printf("  parameters:\n");
        json_object_foreach(params, name, v)
        {
            json_t *nj = json_string(name);
            char *n = ectl_text(nj), *t = ectl_text(v);
            printf("    %s: %s\n", n ? n : "?", t ? t : "");
            json_decref(nj);
            free(n);
            free(t);
        }
    }
}

int entitlectl_explain(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[1], *serving = NULL, *vendor = NULL, *model = NULL, *sw = NULL;
    struct ectl_strs apps = {0};
    const struct ectl_opt opts[] = {{"app", ECTL_LIST, &apps},
                                    {"serving-plmn", ECTL_VALUE, &serving},
                                    {"terminal-vendor", ECTL_VALUE, &vendor},
                                    {"terminal-model", ECTL_VALUE, &model},
                                    {"terminal-sw", ECTL_VALUE, &sw}};
    int rc = ectl_parse(g, argc - 1, argv + 1, opts, 5, pos, 1, 1, NULL, EXPLAIN_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    if (apps.n == 0)
        return ectl_usage(EXPLAIN_USAGE, "--app is required (e.g. --app ap2004)");
    struct ent_buf p;
    if (!sub_path(&p, pos[0], "explain")) {
        ent_buf_free(&p);
        return ENTITLECTL_USAGE;
    }
    for (size_t i = 0; i < apps.n; i++) {
        ectl_query_add(&p, i ? "&app=" : "?app=", apps.v[i]);
    }
    if (serving) {
        ectl_query_add(&p, "&serving_plmn=", serving);
    }
    /* The terminal to explain for: device rules (decision step 6) match on it. */
    if (vendor)
        ectl_query_add(&p, "&terminal_vendor=", vendor);
    if (model)
        ectl_query_add(&p, "&terminal_model=", model);
    if (sw)
        ectl_query_add(&p, "&terminal_sw_version=", sw);
    struct ectl_api *a = NULL;
    rc = ectl_api_open(&a, g, SUB_TIMEOUT_MS);
    if (rc != ENTITLECTL_OK) {
        ent_buf_free(&p);
        return rc;
    }
    struct ectl_resp r;
    rc = ectl_call(a, "GET", p.data, NULL, NULL, &r);
    ent_buf_free(&p);
    if (rc == ENTITLECTL_OK && g->json) {
        fwrite(r.body.data, 1, r.body.len, stdout);
        if (r.body.len && r.body.data[r.body.len - 1] != '\n')
            putchar('\n');
    } else if (rc == ENTITLECTL_OK) {
        json_t *j = ectl_resp_json(&r);
        if (j)
            explain_print(j);
        else
            rc = ENTITLECTL_FAIL;
        json_decref(j);
    }
    ectl_resp_free(&r);
    ectl_api_close(a);
    return rc;
}

/* ---- dispatch --------------------------------------------------------------------------- */

int entitlectl_subscribers(struct ectl_opts *g, int argc, char **argv)
{
    static const char *const usage =
        "entitlectl subscribers list|get|create|patch|delete|location ... (--help on each)";
    if (argc < 2)
        return ectl_usage(usage, "missing subcommand");
    const char *sub = argv[1];
    if (strcmp(sub, "list") == 0)
        return sub_list(g, argc - 2, argv + 2);
    if (strcmp(sub, "get") == 0)
        return sub_get(g, argc - 2, argv + 2);
    if (strcmp(sub, "create") == 0)
        return sub_create(g, argc - 2, argv + 2);
    if (strcmp(sub, "patch") == 0)
        return sub_patch(g, argc - 2, argv + 2);
    if (strcmp(sub, "delete") == 0)
        return sub_delete(g, argc - 2, argv + 2);
    if (strcmp(sub, "location") == 0)
        return sub_location(g, argc - 2, argv + 2);
    return ectl_usage(usage, "unknown subcommand '%s'", sub);
}
