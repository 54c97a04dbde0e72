/* SPDX-License-Identifier: Apache-2.0 */
/* `entitlectl import FILE.ndjson`: bulk provisioning through POST /v1/import. policyd takes
 * a complete body per request (admin.max_body bounds it, 64 MiB by default) and answers one
 * result line per input line plus a summary, so the file is streamed in chunks of whole
 * lines (--chunk-bytes, 4 MiB by default): memory stays bounded whatever the file size.
 * Result line numbers are rewritten from chunk-relative to file-relative, and the summaries
 * of all chunks are added up into one. Exit 1 when any line failed or a chunk was refused.
 * Re-importing a file is idempotent on the server side (unchanged lines stay unchanged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ectl.h"
#include "entitlectl.h"

#define IMPORT_USAGE       "entitlectl import FILE.ndjson|- [--chunk-bytes N] [--errors-only]"
#define IMPORT_TIMEOUT_MS  600000L
#define IMPORT_CHUNK_BYTES (4 * 1024 * 1024)

struct totals {
    long long lines, created, updated, unchanged, failed;
    double seconds;
};

struct import_run {
    struct ectl_api *api;
    const struct ectl_opts *g;
    bool errors_only;
    size_t line_base; /* lines of the file before the current chunk */
    struct totals t;
    bool refused;
};

static long long summary_int(const json_t *s, const char *k)
{
    return (long long)json_integer_value(json_object_get(s, k));
}

static void print_result(const struct import_run *im, json_t *res)
{
    const char *result = json_string_value(json_object_get(res, "result"));
    bool failed = !result || strcmp(result, "error") == 0;
    if (im->g->json) {
        ectl_print_json_line(res);
        return;
    }
    if (im->errors_only && !failed)
        return;
    char *line = ectl_text(json_object_get(res, "line"));
    char *imsi = ectl_text(json_object_get(res, "imsi"));
    char *status = ectl_text(json_object_get(res, "status"));
    char *rtext = ectl_text(json_object_get(res, "result"));
    printf("line %s: %s %s", line ? line : "?", rtext ? rtext : "?", status ? status : "");
    if (imsi && imsi[0])
        printf(" %s", imsi);
    if (failed) {
        char *field = ectl_text(json_object_get(res, "field"));
        char *msg = ectl_text(json_object_get(res, "message"));
        printf(" %s%s%s", field && field[0] ? field : "", field && field[0] ? ": " : "",
               msg ? msg : "");
        free(field);
        free(msg);
    }
    putchar('\n');
    free(line);
    free(imsi);
    free(status);
    free(rtext);
}

/* Handles one chunk's NDJSON answer: renumbers and prints results, adds the summary. */
static void take_results(struct import_run *im, const struct ectl_resp *r)
{
    const char *p = r->body.data, *end = r->body.data + r->body.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        json_error_t je;
        json_t *j = stop > p ? json_loadb(p, (size_t)(stop - p), 0, &je) : NULL;
        p = stop + 1;
        if (!j)
            continue;
        json_t *s = json_object_get(j, "summary");
        if (s) {
            im->t.lines += summary_int(s, "lines");
            im->t.created += summary_int(s, "created");
            im->t.updated += summary_int(s, "updated");
            im->t.unchanged += summary_int(s, "unchanged");
            im->t.failed += summary_int(s, "failed");
            im->t.seconds += json_number_value(json_object_get(s, "seconds"));
        } else {
            json_int_t line = json_integer_value(json_object_get(j, "line"));
            json_object_set_new(j, "line", json_integer(line + (json_int_t)im->line_base));
            print_result(im, j);
        }
        json_decref(j);
    }
}

static bool all_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static size_t count_lines(const char *s, size_t n)
{
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += s[i] == '\n';
    return lines + (n && s[n - 1] != '\n');
}

/* Sends data[0..n) (whole lines) as one import request. */
static int send_chunk(struct import_run *im, const char *data, size_t n)
{
    size_t lines = count_lines(data, n);
    if (all_blank(data, n)) {
        im->line_base += lines;
        return ENTITLECTL_OK;
    }
    struct ectl_resp r;
    int rc = ectl_request(im->api, "POST", "/v1/import", data, n, "application/x-ndjson", NULL, &r);
    if (rc == ENTITLECTL_OK) {
        bool ndjson = strncmp(r.ctype, "application/x-ndjson", 20) == 0;
        if (ndjson && (r.status == 200 || r.status == 422)) {
            take_results(im, &r);
        } else {
            fprintf(stderr, "entitlectl: import of lines %zu-%zu refused\n", im->line_base + 1,
                    im->line_base + lines);
            ectl_print_http_error(&r);
            im->refused = true;
            rc = ENTITLECTL_FAIL;
        }
    }
    ectl_resp_free(&r);
    im->line_base += lines;
    return rc;
}

static void print_summary(const struct import_run *im)
{
    const struct totals *t = &im->t;
    double rate = t->seconds > 0 ? (double)t->lines / t->seconds : 0.0;
    if (im->g->json) {
        printf("{\"summary\":{\"lines\":%lld,\"created\":%lld,\"updated\":%lld,"
               "\"unchanged\":%lld,\"failed\":%lld,\"seconds\":%.3f,\"rate_per_s\":%.1f}}\n",
               t->lines, t->created, t->updated, t->unchanged, t->failed, t->seconds, rate);
        return;
    }
    printf("summary: %lld lines: %lld created, %lld updated, %lld unchanged, %lld failed "
           "(%.3f s, %.0f lines/s)%s\n",
           t->lines, t->created, t->updated, t->unchanged, t->failed, t->seconds, rate,
           im->refused ? "; some chunks were refused, see stderr" : "");
}

int entitlectl_import(struct ectl_opts *g, int argc, char **argv)
{
    const char *pos[1], *chunk_s = NULL;
    bool errors_only = false;
    const struct ectl_opt opts[] = {{"chunk-bytes", ECTL_VALUE, &chunk_s},
                                    {"errors-only", ECTL_FLAG, &errors_only}};
    int rc = ectl_parse(g, argc - 1, argv + 1, opts, 2, pos, 1, 1, NULL, IMPORT_USAGE);
    if (rc != ENTITLECTL_OK)
        return rc < 0 ? ENTITLECTL_OK : rc;
    int64_t chunk = IMPORT_CHUNK_BYTES;
    if (chunk_s && ent_parse_i64(chunk_s, 1024, (int64_t)1 << 30, &chunk) != ENT_OK)
        return ectl_usage(IMPORT_USAGE, "--chunk-bytes must be 1024 .. 1073741824");
    FILE *f = strcmp(pos[0], "-") == 0 ? stdin : fopen(pos[0], "rb");
    if (!f) {
        fprintf(stderr, "entitlectl: cannot open %s\n", pos[0]);
        return ENTITLECTL_USAGE;
    }
    struct import_run im = {.g = g, .errors_only = errors_only};
    rc = ectl_api_open(&im.api, g, IMPORT_TIMEOUT_MS);
    if (rc != ENTITLECTL_OK) {
        if (f != stdin)
            fclose(f);
        return rc;
    }
    /* buf holds the unsent tail of the file; a chunk goes out once it has `chunk` bytes. */
    struct ent_buf buf;
    ent_buf_init(&buf, (size_t)chunk * 2 + 65536);
    char block[65536];
    bool failed_chunk = false, too_long = false;
    for (;;) {
        size_t n = fread(block, 1, sizeof(block), f);
        if (n && ent_buf_append(&buf, block, n) != ENT_OK) {
            fprintf(stderr,
                    "entitlectl: line %zu is longer than twice --chunk-bytes; "
                    "stopping\n",
                    im.line_base + 1);
            too_long = true;
            break;
        }
        bool eof = n == 0;
        while (buf.len >= (size_t)chunk || (eof && buf.len)) {
            /* Cut after the last newline within `chunk` bytes, else after the first one (a
             * long line goes alone); without any newline wait for more, or send all at EOF. */
            size_t cut = buf.len;
            if (buf.len >= (size_t)chunk) {
                const char *last = NULL;
                for (size_t i = (size_t)chunk; i > 0 && !last; i--)
                    if (buf.data[i - 1] == '\n')
                        last = buf.data + i;
                if (!last) {
                    const char *nl = memchr(buf.data, '\n', buf.len);
                    last = nl ? nl + 1 : NULL;
                }
                if (!last && !eof)
                    break;
                cut = last ? (size_t)(last - buf.data) : buf.len;
            }
            rc = send_chunk(&im, buf.data, cut);
            if (rc == ENTITLECTL_CONN)
                break;
            failed_chunk |= rc != ENTITLECTL_OK;
            memmove(buf.data, buf.data + cut, buf.len - cut);
            buf.len -= cut;
            buf.data[buf.len] = '\0';
        }
        if (rc == ENTITLECTL_CONN || eof)
            break;
    }
    bool read_error = ferror(f) != 0;
    if (f != stdin)
        fclose(f);
    ent_buf_free(&buf);
    ectl_api_close(im.api);
    if (rc == ENTITLECTL_CONN) {
        fprintf(stderr,
                "entitlectl: import stopped after line %zu (lines before it were "
                "processed; re-importing the file is safe)\n",
                im.line_base);
        print_summary(&im);
        return ENTITLECTL_CONN;
    }
    if (read_error) {
        fprintf(stderr, "entitlectl: read error on %s after line %zu\n", pos[0], im.line_base);
        print_summary(&im);
        return ENTITLECTL_USAGE;
    }
    print_summary(&im);
    return im.t.failed || failed_chunk || too_long ? ENTITLECTL_FAIL : ENTITLECTL_OK;
}
