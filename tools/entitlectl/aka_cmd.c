/* SPDX-License-Identifier: Apache-2.0 */
/* `entitlectl aka milenage` and `entitlectl aka resync`: Milenage and AUTS resynchronisation
 * from the command line, for debugging field failures against what the USIM or HSS says.
 * Everything is computed by entitle_aka, the library authd uses. Output is one JSON object
 * with lowercase hex; inputs are secrets the operator typed, so nothing is logged. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "aka/aka.h"
#include "aka/milenage.h"
#include "entitlectl.h"
#include "ent/util.h"

struct aka_args {
    const char *k, *op, *opc, *rand, *sqn, *amf, *auts;
};

static int aka_usage(const char *why)
{
    fprintf(stderr, "entitlectl aka: %s\n", why);
    fprintf(stderr, "usage: entitlectl aka milenage --k HEX (--op HEX | --opc HEX) --rand HEX "
                    "--sqn HEX --amf HEX\n"
                    "       entitlectl aka resync --k HEX (--op HEX | --opc HEX) --rand HEX "
                    "--auts HEX\n");
    return ENTITLECTL_USAGE;
}

/* Decodes option `name` (value s) into exactly n bytes; prints why not. */
static bool hex_arg(const char *name, const char *s, uint8_t *out, size_t n)
{
    if (s == NULL) {
        fprintf(stderr, "entitlectl aka: --%s is required\n", name);
        return false;
    }
    if (strlen(s) != 2 * n || ent_hex_decode(s, out, n) != ENT_OK) {
        fprintf(stderr, "entitlectl aka: --%s must be %zu hex digits (%zu bytes), got %zu chars\n",
                name, 2 * n, n, strlen(s));
        return false;
    }
    return true;
}

static int aka_parse(int argc, char **argv, struct aka_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--k") == 0)
            slot = &a->k;
        else if (strcmp(argv[i], "--op") == 0)
            slot = &a->op;
        else if (strcmp(argv[i], "--opc") == 0)
            slot = &a->opc;
        else if (strcmp(argv[i], "--rand") == 0)
            slot = &a->rand;
        else if (strcmp(argv[i], "--sqn") == 0)
            slot = &a->sqn;
        else if (strcmp(argv[i], "--amf") == 0)
            slot = &a->amf;
        else if (strcmp(argv[i], "--auts") == 0)
            slot = &a->auts;
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "entitlectl aka: unknown option or missing value: %s\n", argv[i]);
            return ENTITLECTL_USAGE;
        }
        *slot = argv[++i];
    }
    if ((a->op == NULL) == (a->opc == NULL)) {
        fprintf(stderr, "entitlectl aka: give exactly one of --op and --opc\n");
        return ENTITLECTL_USAGE;
    }
    return ENTITLECTL_OK;
}

/* K and OPc from the arguments (OPc derived from OP when needed). */
static bool aka_keys(const struct aka_args *a, uint8_t k[16], uint8_t opc[16])
{
    uint8_t op[16];
    if (!hex_arg("k", a->k, k, 16))
        return false;
    if (a->opc)
        return hex_arg("opc", a->opc, opc, 16);
    if (!hex_arg("op", a->op, op, 16))
        return false;
    bool ok = ent_milenage_opc(opc, k, op) == ENT_OK;
    OPENSSL_cleanse(op, sizeof(op));
    return ok;
}

static void put_hex(const char *name, const uint8_t *b, size_t n, bool last)
{
    char h[2 * 16 + 1];
    ent_hex_encode(b, n, h);
    printf("\"%s\":\"%s\"%s", name, h, last ? "" : ",");
}

static int aka_milenage(const struct aka_args *a)
{
    uint8_t k[16], opc[16], rand[16], sqn[6], amf[2], autn[16];
    struct ent_milenage_out m;
    int rc = ENTITLECTL_USAGE;

    if (!aka_keys(a, k, opc) || !hex_arg("rand", a->rand, rand, 16) ||
        !hex_arg("sqn", a->sqn, sqn, 6) || !hex_arg("amf", a->amf, amf, 2))
        goto out;
    if (ent_milenage_run(&m, ENT_MILENAGE_ALL, k, opc, rand, sqn, amf) != ENT_OK) {
        fprintf(stderr, "entitlectl aka: milenage failed\n");
        rc = ENTITLECTL_FAIL;
        goto out;
    }
    for (int i = 0; i < 6; i++)
        autn[i] = sqn[i] ^ m.ak[i];
    memcpy(autn + 6, amf, 2);
    memcpy(autn + 8, m.mac_a, 8);
    printf("{");
    put_hex("opc", opc, 16, false);
    put_hex("mac_a", m.mac_a, 8, false);
    put_hex("mac_s", m.mac_s, 8, false);
    put_hex("res", m.res, 8, false);
    put_hex("ck", m.ck, 16, false);
    put_hex("ik", m.ik, 16, false);
    put_hex("ak", m.ak, 6, false);
    put_hex("ak_star", m.ak_star, 6, false);
    put_hex("autn", autn, 16, true);
    printf("}\n");
    rc = ENTITLECTL_OK;
out:
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(opc, sizeof(opc));
    return rc;
}

static int aka_resync(const struct aka_args *a)
{
    uint8_t k[16], opc[16], rand[16], auts[ENT_AKA_AUTS_LEN], sqn[6];
    uint64_t sqn_ms = 0;
    int rc = ENTITLECTL_USAGE;

    if (!aka_keys(a, k, opc) || !hex_arg("rand", a->rand, rand, 16) ||
        !hex_arg("auts", a->auts, auts, ENT_AKA_AUTS_LEN))
        goto out;
    ent_err e = ent_aka_resync(&sqn_ms, k, opc, rand, auts);
    if (e == ENT_EAUTH) {
        fprintf(stderr, "entitlectl aka resync: MAC-S check failed (f1* with AMF 0000 does not "
                        "match the AUTS): wrong K/OPc, wrong RAND, or a corrupted AUTS\n");
        rc = ENTITLECTL_FAIL;
        goto out;
    }
    if (e != ENT_OK) {
        fprintf(stderr, "entitlectl aka resync: %s\n", ent_strerror(e));
        rc = ENTITLECTL_FAIL;
        goto out;
    }
    ent_sqn_to_bytes(sqn, sqn_ms);
    printf("{");
    put_hex("sqn_ms", sqn, 6, true);
    printf("}\n");
    rc = ENTITLECTL_OK;
out:
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(opc, sizeof(opc));
    return rc;
}

int entitlectl_aka(int argc, char **argv)
{
    struct aka_args a;
    if (argc < 2)
        return aka_usage("missing subcommand (milenage or resync)");
    bool mil = strcmp(argv[1], "milenage") == 0;
    if (!mil && strcmp(argv[1], "resync") != 0)
        return aka_usage("unknown subcommand");
    int rc = aka_parse(argc - 1, argv + 1, &a);
    if (rc != ENTITLECTL_OK)
        return rc;
    if (mil && a.auts)
        return aka_usage("--auts belongs to resync");
    if (!mil && (a.sqn || a.amf))
        return aka_usage("--sqn/--amf belong to milenage");
    return mil ? aka_milenage(&a) : aka_resync(&a);
}
