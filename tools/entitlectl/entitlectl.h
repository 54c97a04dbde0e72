/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl: the operator CLI. main.c dispatches on the first word; each command group
 * lives in its own file (aka_cmd.c: `entitlectl aka ...`). Exit codes: 0 success, 1 the
 * check asked for failed (e.g. MAC-S), 2 usage or input error. */
#ifndef ENTITLECTL_H
#define ENTITLECTL_H

#define ENTITLECTL_OK    0
#define ENTITLECTL_FAIL  1
#define ENTITLECTL_USAGE 2

/* `entitlectl aka <milenage|resync> ...`; argv[0] is "aka". Prints JSON on stdout, errors
 * on stderr; returns the exit code. */
int entitlectl_aka(int argc, char **argv);

#endif
