/* SPDX-License-Identifier: Apache-2.0 */
/* policyd: the daemon's ops table and configuration. subscribers, plans, roaming rules, rollouts
 * and the provisioning API (issue: policyd). For now it serves Ping and the ops endpoints. */
#ifndef ENTITLE_POLICYD_H
#define ENTITLE_POLICYD_H

#include "ent/daemon.h"

struct policyd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
};

extern const struct ent_daemon_ops policyd_daemon;

#endif
