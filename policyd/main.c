/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-policyd: everything lives in the entitle_policyd library and the shared skeleton. */
#include "policyd.h"

int main(int argc, char **argv)
{
    return ent_daemon_main(&policyd_daemon, argc, argv);
}
