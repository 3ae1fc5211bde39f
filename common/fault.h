/* fault.h: named fault-injection points for crash-safety tests.
 *
 * A point is inert unless the environment variable EMBER_FAULT names it:
 *   EMBER_FAULT=<point>          make the operation fail there
 *   EMBER_FAULT=<point>:exit     make the process exit abruptly there (_exit(86))
 * Several may be given, separated by commas. Points are named
 * "<layer>.<operation>.<step>", e.g. "snap.standby.after_promote". */
#ifndef EMBER_COMMON_FAULT_H
#define EMBER_COMMON_FAULT_H

#include "error.h"

/* Returns -1 with err set (CMN_INTERNAL, "injected fault at <point>") when the
 * point is armed to fail; exits when armed to exit; otherwise returns 0. */
int cmn_fault(const char *point, cmn_error *err);
/* A point past an operation's point of no return (the guest already runs on a
 * consumed snapshot, the VMM is already gone): there is nothing a failure could
 * undo, so only `:exit` is honoured; a plain arming is logged and ignored. */
void cmn_fault_exit_only(const char *point);

#endif
