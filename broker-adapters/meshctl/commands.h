/* commands.h: the commands of meshctl, one run function each. */
#ifndef MESHCTL_COMMANDS_H
#define MESHCTL_COMMANDS_H

#include "cli.h"

int cmd_version(struct cli *cli);
int cmd_ping(struct cli *cli);
int cmd_smoke(struct cli *cli);

#endif
