/* SPDX-License-Identifier: Apache-2.0 */
/* Schema-driven configuration. Each daemon describes its keys in a table of ent_cfg_key
 * (section, name, type, where the value lives in the daemon's own struct, default, range)
 * and ent_config_load() fills that struct from, in rising priority: the defaults, a YAML
 * file, and ENTITLE_<SECTION>_<KEY> environment variables. The file is a top-level mapping
 * of section -> mapping of key -> scalar (or a sequence for string lists). Unknown keys in
 * the file and bad values anywhere are errors naming the key; ENTITLE_* variables that
 * match no key are ignored, because all daemons share one environment. This module knows
 * nothing about what the keys mean; the daemons own their tables. */
#ifndef ENT_CONFIG_H
#define ENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"
#include "ent/log.h"
#include "ent/util.h"

/* The C type each kind of key is stored as in the daemon's struct. */
enum ent_cfg_type {
    ENT_CFG_STR,      /* char * (heap; NULL when unset and no default) */
    ENT_CFG_INT,      /* int64_t */
    ENT_CFG_BOOL,     /* bool; true/false/yes/no/on/off/1/0, any case */
    ENT_CFG_DURATION, /* uint64_t ms; "250ms", "2s", "1m", "1h" or a bare integer (ms) */
    ENT_CFG_SIZE,     /* uint64_t bytes; "512", "8k", "1m", "1g" (binary multiples, any case) */
    ENT_CFG_STRLIST,  /* struct ent_strlist; a YAML sequence of scalars or "a,b,c" */
    ENT_CFG_LOGLEVEL, /* enum ent_log_level; "debug", "info", "warn", "error" */
};

/* A list of heap strings, owned by the config struct (ent_config_free releases it). */
struct ent_strlist {
    char **items;
    size_t n;
};

/* One key. `def` is the default written as it would be in the environment (NULL means
 * NULL / 0 / false / empty). min/max bound INT, DURATION (ms) and SIZE (bytes) values,
 * defaults included, when min < max. A secret is never printed (dump, error messages).
 * Only reloadable keys change on ent_config_reload(). `size` is sizeof the field, filled
 * by ENT_CFG_KEY so a table pointing an INT at an int field is caught; 0 skips the check. */
struct ent_cfg_key {
    const char *section;
    const char *name;
    enum ent_cfg_type type;
    size_t offset;
    const char *def;
    int64_t min;
    int64_t max;
    bool secret;
    bool reloadable;
    const char *help;
    size_t size;
};

#define ENT_CFG_FIELD_SIZE_(type_of_struct, field) sizeof(((type_of_struct *)0)->field)

/* A plain key: not secret, not reloadable. */
#define ENT_CFG_KEY(sect, nm, typ, type_of_struct, field, dflt, mn, mx, hlp)                       \
    {                                                                                              \
        .section = (sect), .name = (nm), .type = (typ), .offset = offsetof(type_of_struct, field), \
        .def = (dflt), .min = (mn), .max = (mx), .secret = false, .reloadable = false,             \
        .help = (hlp), .size = ENT_CFG_FIELD_SIZE_(type_of_struct, field)                          \
    }

/* The same with the secret and reloadable flags spelled out. */
#define ENT_CFG_KEY_EX(sect, nm, typ, type_of_struct, field, dflt, mn, mx, is_secret,              \
                       is_reloadable, hlp)                                                         \
    {                                                                                              \
        .section = (sect), .name = (nm), .type = (typ), .offset = offsetof(type_of_struct, field), \
        .def = (dflt), .min = (mn), .max = (mx), .secret = (is_secret),                            \
        .reloadable = (is_reloadable), .help = (hlp),                                              \
        .size = ENT_CFG_FIELD_SIZE_(type_of_struct, field)                                         \
    }

/* Fills the fields of `cfg` named by `keys` from defaults, then the YAML file at `path`
 * (NULL: no file), then the environment. `cfg` should be zeroed or already freed: its
 * fields are overwritten, not freed. Nothing in cfg is written unless the whole load
 * succeeds. Not thread-safe against setenv(); call from the main thread.
 * Errors (message in err, which is set to "" on success; err may be NULL):
 *   ENT_ECONFIG  missing or unreadable file, YAML syntax, unknown section or key, duplicate
 *                key, bad or out-of-range value; the message names the key ("store.x") and,
 *                for the file, "path:line: ".
 *   ENT_EINVAL   a broken key table (bad names, two keys with one variable, bad default).
 *   ENT_ENOMEM */
ent_err ent_config_load(void *cfg, const struct ent_cfg_key *keys, size_t n_keys, const char *path,
                        char *err, size_t err_len);

/* Frees the STR and STRLIST fields of cfg and zeroes them. Safe on a zeroed struct and safe
 * to call twice. */
void ent_config_free(void *cfg, const struct ent_cfg_key *keys, size_t n_keys);

/* Re-reads the file and environment into a fresh struct of cfg_size bytes, then copies only
 * the reloadable keys that changed into cfg (freeing their old values). Changes to other
 * keys are not applied; they are listed in err ("store.path: changed, restart to apply",
 * separated by "; "), and ENT_OK is still returned; err is "" when there is nothing to say.
 * On any load error cfg is untouched and the error is returned as for ent_config_load().
 * The caller makes sure no other thread reads cfg meanwhile (call it on the loop thread). */
ent_err ent_config_reload(void *cfg, size_t cfg_size, const struct ent_cfg_key *keys, size_t n_keys,
                          const char *path, char *err, size_t err_len);

/* Appends the effective configuration to `out` as YAML that ent_config_load() reads back,
 * sections in table order, secrets as "<redacted>". ENT_ETOOBIG/ENT_ENOMEM from the buffer;
 * on error `out` may hold a partial dump. */
ent_err ent_config_dump(const void *cfg, const struct ent_cfg_key *keys, size_t n_keys,
                        struct ent_buf *out);

/* Appends one line per key for --help: "  store.busy_timeout  ENTITLE_STORE_BUSY_TIMEOUT
 * (duration, default 5s)  help text". Errors as ent_config_dump(). */
ent_err ent_config_usage(const struct ent_cfg_key *keys, size_t n_keys, struct ent_buf *out);

#endif
