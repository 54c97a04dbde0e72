/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-notifyd: everything lives in the entitle_notifyd library and the shared skeleton. */
#include "notifyd.h"

int main(int argc, char **argv)
{
    return ent_daemon_main(&notifyd_daemon, argc, argv);
}
