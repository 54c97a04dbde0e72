/* SPDX-License-Identifier: Apache-2.0 */
/* authd: the daemon's ops table and configuration. subscriber credentials, Milenage, EAP-AKA/AKA'
 * exchanges and tokens (issue: authd). For now it serves Ping and the ops endpoints. */
#ifndef ENTITLE_AUTHD_H
#define ENTITLE_AUTHD_H

#include "ent/daemon.h"

struct authd_cfg {
    struct ent_daemon_cfg common; /* must stay first: the common keys' offsets point here */
};

extern const struct ent_daemon_ops authd_daemon;

#endif
