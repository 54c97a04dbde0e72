/* SPDX-License-Identifier: Apache-2.0 */
/* authd's ops table for the shared daemon skeleton (common/src/daemon.c). subscriber credentials,
 * Milenage, EAP-AKA/AKA' exchanges and tokens (issue: authd). For now it serves Ping and the ops
 * endpoints. */
#include "authd.h"

const struct ent_daemon_ops authd_daemon = {
    .name = "authd",
    .default_ops_listen = "127.0.0.1:9101",
    .default_bus_listen = "tcp://127.0.0.1:7101",
    .keys = NULL,
    .n_keys = 0,
    .cfg_size = sizeof(struct authd_cfg),
};
