/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-gateway: everything lives in the entitle_gateway library and the shared skeleton. */
#include "gateway.h"

int main(int argc, char **argv)
{
    return ent_daemon_main(&gw_daemon, argc, argv);
}
