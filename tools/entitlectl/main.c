/* SPDX-License-Identifier: Apache-2.0 */
/* entitlectl entry point: dispatches on the command group. */
#include <stdio.h>
#include <string.h>

#include "entitlectl.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: entitlectl aka milenage --k HEX (--op HEX | --opc HEX) --rand HEX "
               "--sqn HEX --amf HEX\n"
               "       entitlectl aka resync --k HEX (--op HEX | --opc HEX) --rand HEX "
               "--auts HEX\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return ENTITLECTL_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "aka") == 0)
        return entitlectl_aka(argc - 1, argv + 1);
    usage(stderr);
    return ENTITLECTL_USAGE;
}
