/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl entry point: global options (admin API), then dispatch on the command group. */
#include <stdio.h>
#include <string.h>

#include "ectl.h"
#include "entitlectl.h"

static void usage(FILE *f)
{
    fprintf(
        f, "usage: entitlectl [--url URL] [--token-file FILE] [--cacert FILE] [--json] "
           "[--timeout SECONDS] COMMAND ...\n"
           "\n"
           "provisioning API (policyd; default URL " ECTL_DEFAULT_URL ", env ENTITLECTL_URL;\n"
           "token from --token-file, ENTITLECTL_TOKEN_FILE or ENTITLECTL_TOKEN; CA from\n"
           "--cacert or ENTITLECTL_CACERT):\n"
           "  subscribers list [--plan P | --msisdn M | --region R] [--limit N] [--after IMSI] "
           "[--all]\n"
           "  subscribers get IMSI\n"
           "  subscribers create --imsi IMSI [--msisdn M] [--k-file F | --k-env VAR\n"
           "                     (--opc-file F | --opc-env VAR | --op-file F | --op-env VAR)\n"
           "                     [--sqn HEX] [--amf HEX]] [--plan P] [--status S] [--region R] "
           "[--group G,...]\n"
           "  subscribers patch IMSI [--status S] [--plan P] [--msisdn M] [--region R] "
           "[--group G,...]\n"
           "                     [--allow SVC,...] [--deny SVC,...] [--inherit SVC,...] "
           "[--file JSON] [--if-match ETAG]\n"
           "  subscribers delete IMSI [--if-match ETAG]\n"
           "  subscribers location IMSI PLMN|home [--if-match ETAG]\n"
           "  tokens revoke IMSI\n"
           "  explain IMSI --app APPID[,APPID...] [--serving-plmn PLMN]\n"
           "          [--terminal-vendor V --terminal-model M --terminal-sw VER]\n"
           "  plans list | get ID | create --file JSON | patch ID --file JSON | delete ID\n"
           "  roaming list | get NAME | delete NAME\n"
           "  roaming create --name NAME (--mcc MCC | --plmn MCCMNC | --default) "
           "[--allow SVC,...] [--deny SVC,...] [--message TEXT]\n"
           "  roaming patch NAME [the create flags] [--inherit SVC,...] [--if-match ETAG]\n"
           "  rollouts list | get ID | delete ID\n"
           "  rollouts create (--file JSON | --id ID --service SVC --percentage N [--region R,...] "
           "[--group G,...])\n"
           "  rollouts patch ID [--percentage N] [--state active|paused|rolled-back] "
           "[--file JSON] [--if-match ETAG]\n"
           "  device-rules list | get NAME | delete NAME [--if-match ETAG]\n"
           "  device-rules create|add --name NAME --vendor V [--model M|PREFIX*] [--sw-min VER] "
           "[--sw-max VER]\n"
           "                     [--allow SVC,...] [--deny SVC,...] [--message TEXT]\n"
           "  device-rules patch|update NAME [the create flags; a new match needs --vendor] "
           "[--inherit SVC,...] [--if-match ETAG]\n"
           "  import FILE.ndjson|- [--chunk-bytes N] [--errors-only]\n"
           "\n"
           "local:\n"
           "  aka milenage --k HEX (--op HEX | --opc HEX) --rand HEX --sqn HEX --amf HEX\n"
           "  aka resync --k HEX (--op HEX | --opc HEX) --rand HEX --auts HEX\n"
           "\n"
           "exit: 0 ok, 1 API error (4xx/5xx) or failed check, 2 usage, 3 connection/TLS\n");
}

int main(int argc, char **argv)
{
    struct ectl_opts g;
    ectl_opts_init(&g);
    int i = 1;
    while (i < argc) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return ENTITLECTL_OK;
        }
        int m = ectl_global_opt(&g, argc, argv, &i);
        if (m < 0)
            return ENTITLECTL_USAGE;
        if (m == 0)
            break;
    }
    if (i >= argc) {
        usage(stderr);
        return ENTITLECTL_USAGE;
    }
    const char *cmd = argv[i];
    int n = argc - i;
    char **v = argv + i;
    if (strcmp(cmd, "aka") == 0)
        return entitlectl_aka(n, v);
    if (strcmp(cmd, "subscribers") == 0)
        return entitlectl_subscribers(&g, n, v);
    if (strcmp(cmd, "tokens") == 0)
        return entitlectl_tokens(&g, n, v);
    if (strcmp(cmd, "explain") == 0)
        return entitlectl_explain(&g, n, v);
    if (strcmp(cmd, "plans") == 0 || strcmp(cmd, "roaming") == 0 || strcmp(cmd, "rollouts") == 0 ||
        strcmp(cmd, "device-rules") == 0)
        return entitlectl_policy(&g, n, v);
    if (strcmp(cmd, "import") == 0)
        return entitlectl_import(&g, n, v);
    fprintf(stderr, "entitlectl: unknown command '%s'\n", cmd);
    usage(stderr);
    return ENTITLECTL_USAGE;
}
