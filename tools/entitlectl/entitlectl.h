/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl: the operator CLI. main.c parses the global options and dispatches on the first
 * word; each command group lives in its own file (aka_cmd.c: `entitlectl aka ...`, local;
 * sub_cmd.c, policy_cmd.c, import_cmd.c: the provisioning API, through api.c/out.c, see
 * ectl.h). Exit codes: 0 success, 1 the check asked for failed (e.g. MAC-S) or the API
 * answered 4xx/5xx, 2 usage or input error, 3 connection/TLS error. */
#ifndef ENTITLECTL_H
#define ENTITLECTL_H

#define ENTITLECTL_OK    0
#define ENTITLECTL_FAIL  1
#define ENTITLECTL_USAGE 2
#define ENTITLECTL_CONN  3

struct ectl_opts;

/* `entitlectl aka <milenage|resync> ...`; argv[0] is "aka". Prints JSON on stdout, errors
 * on stderr; returns the exit code. */
int entitlectl_aka(int argc, char **argv);

/* The admin-API command groups; argv[0] is the group's word ("subscribers", "tokens",
 * "explain", "plans"/"roaming"/"rollouts", "import"). Global options in g (more may follow
 * anywhere in argv). Output on stdout, errors on stderr; return the exit code. */
int entitlectl_subscribers(struct ectl_opts *g, int argc, char **argv);
int entitlectl_tokens(struct ectl_opts *g, int argc, char **argv);
int entitlectl_explain(struct ectl_opts *g, int argc, char **argv);
int entitlectl_policy(struct ectl_opts *g, int argc, char **argv);
int entitlectl_import(struct ectl_opts *g, int argc, char **argv);

#endif
