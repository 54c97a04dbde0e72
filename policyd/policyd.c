/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's ops table for the shared daemon skeleton (common/src/daemon.c). subscribers, plans,
 * roaming rules, rollouts and the provisioning API (issue: policyd). For now it serves Ping and the
 * ops endpoints. */
#include "policyd.h"

const struct ent_daemon_ops policyd_daemon = {
    .name = "policyd",
    .default_ops_listen = "127.0.0.1:9102",
    .default_bus_listen = "tcp://127.0.0.1:7102",
    .keys = NULL,
    .n_keys = 0,
    .cfg_size = sizeof(struct policyd_cfg),
};
