/* SPDX-License-Identifier: Apache-2.0 */
/* authd: the only process that sees subscriber keys. This header owns authd's configuration
 * (the `auth` section of its YAML), the engine struct `struct authd` that every concern file
 * works on (credentials.c, sqn.c, vector_local.c, exchange.c, token.c), and the daemon ops
 * table that plugs the engine into the shared skeleton (rpc.c answers the RPCs).
 *
 * The engine is independent of the bus and the loop: tests and benchmarks drive it with a
 * store of their own. Once authd_init() returned, `struct authd` is read-only, so its
 * functions may run on any thread at once (rpc.c runs them on the libuv thread pool); the
 * store serialises what must be serialised. */
#ifndef ENTITLE_AUTHD_H
#define ENTITLE_AUTHD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "aka/aka.h"
#include "aka/eap_aka.h"
#include "ent/config.h"
#include "ent/daemon.h"
#include "ent/seal.h"
#include "ent/store.h"

struct authd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
    char *seal_keyring;           /* auth.seal_keyring: tickets and tokens */
    char *kek_file;               /* auth.kek_file: wraps credentials at rest */
    char *kek;                    /* auth.kek: the same as text (env ENTITLE_AUTH_KEK), secret */
    char *realm_prefix;           /* auth.realm_prefix, default "nai.epc" */
    struct ent_strlist home_networks; /* auth.home_networks: "MCC-MNC" items */
    char *network_name;               /* auth.network_name: AKA' access network name */
    int64_t sqn_ind_bits;
    char *amf;
    uint64_t exchange_ttl;
    int64_t max_rounds;
    uint64_t token_validity;
    uint64_t temporary_token_validity;
    int64_t sqn_lease;
};

#define AUTHD_HOME_MAX       32
#define AUTHD_MAX_ROUNDS     4 /* PROTOCOL §4.1: AOSP answers at most 4 challenges */
#define AUTHD_IMSI_MAX       15
#define AUTHD_PURPOSE_TICKET "entitle.ticket.v1"
#define AUTHD_PURPOSE_TOKEN  "entitle.token.v1"
#define AUTHD_PURPOSE_ROUND  "entitle.round.v1"
#define AUTHD_PURPOSE_CRED   "entitle.credential.v1"

struct authd_home_network {
    char mcc[4];
    char mnc[4]; /* 2 or 3 digits, as the IMSI carries it */
};

/* Settings parsed from struct authd_cfg (immutable after authd_init). */
struct authd_settings {
    char realm_prefix[64];
    struct authd_home_network home[AUTHD_HOME_MAX];
    size_t n_home;
    char network_name[ENT_EAP_AKA_NETNAME_MAX + 1]; /* "" disables AKA' */
    unsigned ind_bits;
    uint8_t amf[ENT_AKA_AMF_LEN];
    uint64_t exchange_ttl_ms;
    unsigned max_rounds;
    uint64_t token_ttl_ms;
    uint64_t temp_token_ttl_ms;
    unsigned sqn_lease; /* SEQ values reserved per store increment (1 = no leasing) */
};

struct authd_vector_source;
struct authd_sqn_cache;

struct authd {
    struct authd_settings set;
    struct ent_store *store;           /* borrowed */
    struct ent_keyring *seal;          /* owned: tickets, rounds, tokens */
    struct ent_keyring *kek;           /* owned: credentials at rest */
    struct authd_vector_source *vs;    /* owned */
    struct authd_sqn_cache *sqn_cache; /* owned; NULL when sqn_lease is 1 */
    struct ent_daemon *d;              /* NULL outside the daemon */
    atomic_size_t jobs;                /* RPC jobs on the thread pool (rpc.c) */
    bool fini_pending; /* loop thread: stop came while jobs ran; the last job finalises */
};

/* Parses cfg (keyrings loaded from their files or text, home networks, AMF) and opens the
 * local vector source over `store` (borrowed; must outlive a). Main thread. On failure a
 * one-line reason (never key material) goes to err and nothing is left allocated.
 * Errors: ENT_ECONFIG, ENT_ENOMEM. */
ent_err authd_init(struct authd *a, const struct authd_cfg *cfg, struct ent_store *store, char *err,
                   size_t err_len);

/* Frees what authd_init() allocated (wiping keys). No engine call may be running. */
void authd_fini(struct authd *a);

/* Parses "MCC-MNC" (3 digits, dash, 2 or 3 digits). ENT_EINVAL otherwise. */
ent_err authd_home_network_parse(struct authd_home_network *out, const char *s);

/* The daemon: start/rpc/inflight/stop hooks over one struct authd kept in ent_daemon.priv. */
extern const struct ent_daemon_ops authd_daemon;

/* rpc.c: the ops->rpc hook (loop thread). */
void authd_rpc(struct ent_daemon *d, uint64_t call_id, const Entitle__V1__Request *req);

#endif
