/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-authd: everything lives in the entitle_authd library and the shared skeleton. */
#include "authd.h"

int main(int argc, char **argv)
{
    return ent_daemon_main(&authd_daemon, argc, argv);
}
