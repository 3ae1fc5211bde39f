/* version.h: reading and parsing `cloud-hypervisor --version` (internal to the
 * cloud-hypervisor driver). */
#ifndef EMBER_DRIVERS_CH_VERSION_H
#define EMBER_DRIVERS_CH_VERSION_H

#include "common/error.h"

/* Runs `<binary> --version` (stdin /dev/null, at most 5 s) and returns its
 * stdout (at most 4 KiB, caller frees); NULL with err (UNAVAILABLE) when it
 * cannot run, does not finish or exits non-zero. */
char *ch_version_run(const char *binary, cmn_error *err);

/* Parses the first line, "cloud-hypervisor v<major>.<minor>[.<patch>][-<describe>]"
 * (build.rs: `git describe --dirty`, else "v" + CARGO_PKG_VERSION). Returns 0 and
 * the numbers, or -1 (UNAVAILABLE) naming the line. */
int ch_version_parse(const char *line, int *major, int *minor, int *patch, cmn_error *err);

#endif
