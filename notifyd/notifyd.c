/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd's ops table for the shared daemon skeleton (common/src/daemon.c). push delivery from the
 * durable outbox (issue: notifyd). For now it serves Ping and the ops endpoints. */
#include "notifyd.h"

const struct ent_daemon_ops notifyd_daemon = {
    .name = "notifyd",
    .default_ops_listen = "127.0.0.1:9103",
    .default_bus_listen = "tcp://127.0.0.1:7103",
    .keys = NULL,
    .n_keys = 0,
    .cfg_size = sizeof(struct notifyd_cfg),
};
