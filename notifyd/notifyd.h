/* SPDX-License-Identifier: Apache-2.0 */
/* notifyd: the daemon's ops table and configuration. push delivery from the durable outbox (issue:
 * notifyd). For now it serves Ping and the ops endpoints. */
#ifndef ENTITLE_NOTIFYD_H
#define ENTITLE_NOTIFYD_H

#include "ent/daemon.h"

struct notifyd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
};

extern const struct ent_daemon_ops notifyd_daemon;

#endif
