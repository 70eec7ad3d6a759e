/* cairn volume check-copies: read every copy of each allocated extent of a
 * volume straight from its SDS and compare them. */
#ifndef CAIRN_CLI_CHECK_H
#define CAIRN_CLI_CHECK_H

#include "cairn.pb-c.h"

/* Returns the process exit code: 0 all copies equal, 1 mismatch or error;
 * 2 (printing nothing) when a map changed under it and last_try is 0. */
int cli_check_copies(const Cairn__ClusterMap *map, const char *volume, int json, int last_try);

/* cairn volume locate: print where an offset of a volume lives. Exit code. */
int cli_locate(const Cairn__ClusterMap *map, const char *volume, uint64_t offset, int json);

#endif
