/* SPDX-License-Identifier: Apache-2.0 */
/* authd's configuration table, engine set-up (authd_init: keyrings, settings, vector
 * source) and the daemon hooks for the shared skeleton (common/src/daemon.c): start-up
 * re-wrap of credentials under a rotated KEK, a timer that purges expired exchange records,
 * and the in-flight count for drain. The RPCs are in rpc.c. */
#include "authd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "credentials.h"
#include "exchange.h"
#include "sqn.h"
#include "vector_source.h"

#define AUTHD_PURGE_MS (60 * 1000)

#define KEY(name, type, field, def, mn, mx, help)                                                  \
    ENT_CFG_KEY("auth", name, type, struct authd_cfg, field, def, mn, mx, help)

static const struct ent_cfg_key authd_keys[] = {
    KEY("seal_keyring", ENT_CFG_STR, seal_keyring, NULL, 0, 0,
        "keyring file sealing exchange tickets and tokens (lines `<key-id> <64 hex>`, first "
        "seals)"),
    KEY("kek_file", ENT_CFG_STR, kek_file, NULL, 0, 0,
        "key-encryption key for credentials at rest: 64 hex chars, or a keyring (first wraps)"),
    ENT_CFG_KEY_EX("auth", "kek", ENT_CFG_STR, struct authd_cfg, kek, NULL, 0, 0, true, false,
                   "the KEK as text instead of kek_file (ENTITLE_AUTH_KEK)"),
    KEY("realm_prefix", ENT_CFG_STR, realm_prefix, "nai.epc", 0, 0,
        "realm prefix of permanent identities (before .mncXXX.mccYYY.3gppnetwork.org)"),
    KEY("home_networks", ENT_CFG_STRLIST, home_networks, "001-01", 0, 0,
        "home networks as MCC-MNC (MNC with 2 or 3 digits as in the IMSI)"),
    KEY("network_name", ENT_CFG_STR, network_name, "WLAN", 0, 0,
        "EAP-AKA' access network name (AT_KDF_INPUT, CK'/IK'); empty disables AKA'"),
    KEY("sqn_ind_bits", ENT_CFG_INT, sqn_ind_bits, "5", 0, 8, "IND bits of SQN (TS 33.102 C.3)"),
    KEY("amf", ENT_CFG_STR, amf, "8000", 0, 0,
        "default AMF (4 hex) for credentials provisioned without one"),
    KEY("exchange_ttl", ENT_CFG_DURATION, exchange_ttl, "60s", 1000, 3600000,
        "lifetime of an EAP exchange (ticket and round record)"),
    KEY("max_rounds", ENT_CFG_INT, max_rounds, "4", 1, 4, "challenges per exchange (AOSP: 4)"),
    KEY("token_validity", ENT_CFG_DURATION, token_validity, "168h", 60000, 31622400000LL,
        "validity of tokens issued on success"),
    KEY("temporary_token_validity", ENT_CFG_DURATION, temporary_token_validity, "10m", 1000,
        86400000, "validity of ODSA temporary tokens"),
    KEY("sqn_lease", ENT_CFG_INT, sqn_lease, "1", 1, 1000,
        "SEQ values reserved per store increment (1: one increment per vector)"),
};

ent_err authd_home_network_parse(struct authd_home_network *out, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if ((n != 6 && n != 7) || s[3] != '-')
        return ENT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (i != 3 && (s[i] < '0' || s[i] > '9'))
            return ENT_EINVAL;
    memcpy(out->mcc, s, 3);
    out->mcc[3] = '\0';
    memcpy(out->mnc, s + 4, n - 4);
    out->mnc[n - 4] = '\0';
    return ENT_OK;
}

static ent_err authd_errf(char *err, size_t err_len, ent_err rc, const char *fmt, const char *a)
{
    if (err && err_len > 0)
        snprintf(err, err_len, fmt, a);
    return rc;
}

static ent_err authd_settings_parse(struct authd_settings *s, const struct authd_cfg *cfg,
                                    char *err, size_t err_len)
{
    const char *prefix = cfg->realm_prefix ? cfg->realm_prefix : "nai.epc";
    const char *nn = cfg->network_name ? cfg->network_name : "";
    const char *amf = cfg->amf ? cfg->amf : "8000";

    memset(s, 0, sizeof(*s));
    if (strlen(prefix) >= sizeof(s->realm_prefix))
        return authd_errf(err, err_len, ENT_ECONFIG, "auth.realm_prefix: too long%s", "");
    snprintf(s->realm_prefix, sizeof(s->realm_prefix), "%s", prefix);
    if (cfg->home_networks.n == 0 || cfg->home_networks.n > AUTHD_HOME_MAX)
        return authd_errf(err, err_len, ENT_ECONFIG, "auth.home_networks: want 1..32 items%s", "");
    for (size_t i = 0; i < cfg->home_networks.n; i++) {
        if (authd_home_network_parse(&s->home[i], cfg->home_networks.items[i]) != ENT_OK)
            return authd_errf(err, err_len, ENT_ECONFIG,
                              "auth.home_networks: \"%s\" is not MCC-MNC (e.g. 001-01)",
                              cfg->home_networks.items[i]);
    }
    s->n_home = cfg->home_networks.n;
    if (strlen(nn) > ENT_EAP_AKA_NETNAME_MAX)
        return authd_errf(err, err_len, ENT_ECONFIG, "auth.network_name: too long%s", "");
    snprintf(s->network_name, sizeof(s->network_name), "%s", nn);
    if (strlen(amf) != 4 || ent_hex_decode(amf, s->amf, sizeof(s->amf)) != ENT_OK)
        return authd_errf(err, err_len, ENT_ECONFIG, "auth.amf: want 4 hex digits, got \"%s\"",
                          amf);
    s->ind_bits = (unsigned)cfg->sqn_ind_bits;
    if (cfg->sqn_ind_bits < 0 || cfg->sqn_ind_bits > ENT_SQN_IND_BITS_MAX)
        return authd_errf(err, err_len, ENT_ECONFIG, "auth.sqn_ind_bits: want 0..8%s", "");
    s->exchange_ttl_ms = cfg->exchange_ttl ? cfg->exchange_ttl : 60000;
    s->max_rounds = cfg->max_rounds >= 1 && cfg->max_rounds <= AUTHD_MAX_ROUNDS
                        ? (unsigned)cfg->max_rounds
                        : AUTHD_MAX_ROUNDS;
    s->token_ttl_ms = cfg->token_validity ? cfg->token_validity : 168ULL * 3600 * 1000;
    s->temp_token_ttl_ms = cfg->temporary_token_validity ? cfg->temporary_token_validity : 600000;
    s->sqn_lease = cfg->sqn_lease > 1 ? (unsigned)cfg->sqn_lease : 1;
    return ENT_OK;
}

ent_err authd_init(struct authd *a, const struct authd_cfg *cfg, struct ent_store *store, char *err,
                   size_t err_len)
{
    char kerr[200];
    ent_err rc;

    memset(a, 0, sizeof(*a));
    a->store = store;
    rc = authd_settings_parse(&a->set, cfg, err, err_len);
    if (rc != ENT_OK)
        return rc;
    rc = ent_keyring_load(&a->seal, cfg->seal_keyring, kerr, sizeof(kerr));
    if (rc != ENT_OK) {
        authd_errf(err, err_len, rc, "auth.seal_keyring: %s", kerr);
        goto fail;
    }
    if (cfg->kek != NULL && cfg->kek[0] != '\0')
        rc = ent_keyring_parse(&a->kek, cfg->kek, strlen(cfg->kek), kerr, sizeof(kerr));
    else
        rc = ent_keyring_load(&a->kek, cfg->kek_file, kerr, sizeof(kerr));
    if (rc != ENT_OK) {
        authd_errf(err, err_len, rc, "auth.kek_file / auth.kek: %s", kerr);
        goto fail;
    }
    if (a->set.sqn_lease > 1) {
        rc = authd_sqn_cache_new(&a->sqn_cache, a->set.sqn_lease);
        if (rc != ENT_OK)
            goto fail;
    }
    rc = authd_vector_local_new(&a->vs, a);
    if (rc != ENT_OK)
        goto fail;
    return ENT_OK;
fail:
    authd_fini(a);
    return rc;
}

void authd_fini(struct authd *a)
{
    if (a->vs)
        a->vs->ops->free(a->vs);
    authd_sqn_cache_free(a->sqn_cache);
    ent_keyring_free(a->seal);
    ent_keyring_free(a->kek);
    memset(a, 0, sizeof(*a));
}

/* ---- daemon hooks ----------------------------------------------------------------------- */

struct authd_daemon_state {
    struct authd a; /* first: rpc.c reads d->priv as struct authd */
    uv_timer_t purge;
    bool purge_started;
};

static void on_purge_timer(uv_timer_t *t)
{
    struct authd_daemon_state *st = ENT_CONTAINER_OF(t, struct authd_daemon_state, purge);
    size_t n = 0;
    /* A short blocking store call on the loop: expired rows are few and indexed. */
    ent_err rc = authd_exchange_purge(&st->a, &n);
    if (rc != ENT_OK)
        ENT_LOG_WARN(NULL, "authd.purge_failed", ENT_KV_STR("error", ent_err_name(rc)));
    else if (n > 0)
        ENT_LOG_DEBUG(NULL, "authd.purged", ENT_KV_U64("exchanges", n));
}

static ent_err authd_start(struct ent_daemon *d)
{
    struct authd_daemon_state *st = d->priv;
    char err[256];
    size_t rewrapped = 0, failed = 0;
    ent_err rc = authd_init(&st->a, d->cfg, d->store, err, sizeof(err));

    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "authd.config", ENT_KV_STR("error", err));
        fprintf(stderr, "entitle-authd: %s\n", err);
        return rc;
    }
    st->a.d = d;
    /* KEK rotation: whatever an older KEK still wraps is re-wrapped under the current one
     * before we serve, so the old key can be dropped once this reports failed=0. */
    if (ent_keyring_count(st->a.kek) > 1) {
        rc = authd_credentials_rewrap_all(&st->a, &rewrapped, &failed);
        ENT_LOG_INFO(NULL, "authd.kek_rewrap", ENT_KV_STR("kek", ent_keyring_current_id(st->a.kek)),
                     ENT_KV_U64("rewrapped", rewrapped), ENT_KV_U64("failed", failed),
                     ENT_KV_STR("result", ent_err_name(rc)));
        if (rc != ENT_OK) {
            authd_fini(&st->a);
            return rc;
        }
    }
    uv_timer_init(&d->loop, &st->purge);
    uv_timer_start(&st->purge, on_purge_timer, AUTHD_PURGE_MS, AUTHD_PURGE_MS);
    st->purge_started = true;
    ENT_LOG_INFO(NULL, "authd.started", ENT_KV_STR("vector_source", st->a.vs->ops->name),
                 ENT_KV_STR("seal_key", ent_keyring_current_id(st->a.seal)),
                 ENT_KV_STR("kek", ent_keyring_current_id(st->a.kek)),
                 ENT_KV_U64("home_networks", st->a.set.n_home),
                 ENT_KV_BOOL("aka_prime", st->a.set.network_name[0] != '\0'),
                 ENT_KV_U64("sqn_lease", st->a.set.sqn_lease));
    return ENT_OK;
}

static size_t authd_inflight(struct ent_daemon *d)
{
    struct authd_daemon_state *st = d->priv;
    return atomic_load(&st->a.jobs);
}

static void on_purge_closed(uv_handle_t *h)
{
    struct authd_daemon_state *st =
        ENT_CONTAINER_OF((uv_timer_t *)h, struct authd_daemon_state, purge);
    /* Jobs still on the thread pool (drain grace ran out) use the keyrings: the last one
     * to finish finalises instead (rpc.c). */
    if (atomic_load(&st->a.jobs) > 0)
        st->a.fini_pending = true;
    else
        authd_fini(&st->a);
}

static void authd_stop(struct ent_daemon *d)
{
    struct authd_daemon_state *st = d->priv;
    if (st->purge_started) {
        st->purge_started = false;
        uv_timer_stop(&st->purge);
        uv_close((uv_handle_t *)&st->purge, on_purge_closed);
    }
}

const struct ent_daemon_ops authd_daemon = {
    .name = "authd",
    .default_ops_listen = "127.0.0.1:9101",
    .default_bus_listen = "tcp://127.0.0.1:7101",
    .keys = authd_keys,
    .n_keys = ENT_ARRAY_LEN(authd_keys),
    .cfg_size = sizeof(struct authd_cfg),
    .priv_size = sizeof(struct authd_daemon_state),
    .start = authd_start,
    .rpc = authd_rpc,
    .inflight = authd_inflight,
    .stop = authd_stop,
};
