/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer driver for the YAML configuration loader (common/src/config.c): every input is
 * written to a file and loaded against a key table with one key of each type. A load either
 * succeeds (and the dump must load back to the same values) or fails with ENT_ECONFIG; it
 * must never crash, leak or write past a buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/config.h"

struct fuzz_cfg {
    char *str;
    int64_t num;
    bool flag;
    uint64_t dur;
    uint64_t size;
    struct ent_strlist list;
    enum ent_log_level level;
};

static const struct ent_cfg_key fuzz_keys[] = {
    ENT_CFG_KEY("a", "str", ENT_CFG_STR, struct fuzz_cfg, str, "x", 0, 0, "string"),
    ENT_CFG_KEY("a", "num", ENT_CFG_INT, struct fuzz_cfg, num, "1", -1000, 1000, "int"),
    ENT_CFG_KEY("a", "flag", ENT_CFG_BOOL, struct fuzz_cfg, flag, "false", 0, 0, "bool"),
    ENT_CFG_KEY("b", "dur", ENT_CFG_DURATION, struct fuzz_cfg, dur, "1s", 0, 0, "duration"),
    ENT_CFG_KEY("b", "size", ENT_CFG_SIZE, struct fuzz_cfg, size, "1k", 0, 0, "size"),
    ENT_CFG_KEY("b", "list", ENT_CFG_STRLIST, struct fuzz_cfg, list, "p,q", 0, 0, "list"),
    ENT_CFG_KEY("c", "level", ENT_CFG_LOGLEVEL, struct fuzz_cfg, level, "info", 0, 0, "level"),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/entitle-fuzz-config-%ld.yaml", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);

    struct fuzz_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    char err[256];
    ent_err rc = ent_config_load(&cfg, fuzz_keys, 7, path, err, sizeof(err));
    if (rc == ENT_OK) {
        struct ent_buf dump;
        ent_buf_init(&dump, 1 << 20);
        if (ent_config_dump(&cfg, fuzz_keys, 7, &dump) == ENT_OK && dump.data) {
            f = fopen(path, "wb");
            if (f) {
                fwrite(dump.data, 1, dump.len, f);
                fclose(f);
                struct fuzz_cfg again;
                memset(&again, 0, sizeof(again));
                if (ent_config_load(&again, fuzz_keys, 7, path, err, sizeof(err)) != ENT_OK)
                    abort(); /* a dump must load back */
                if (again.num != cfg.num || again.flag != cfg.flag || again.dur != cfg.dur ||
                    again.size != cfg.size || again.list.n != cfg.list.n)
                    abort();
                ent_config_free(&again, fuzz_keys, 7);
            }
        }
        ent_buf_free(&dump);
        ent_config_free(&cfg, fuzz_keys, 7);
    } else if (rc != ENT_ECONFIG) {
        abort();
    }
    return 0;
}
