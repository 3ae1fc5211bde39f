/* testvm_driver.h: a test-only hypervisor driver, compiled into the unit tests
 * and never into emberd. Its "VMM" is a real child process (a shell loop whose
 * command line names the instance folder, so re-adoption by /proc scan works);
 * its "guest RAM" is the file <vm dir>/ram, which tests write to stand for guest
 * writes. Snapshots copy that file into the snapshot folder (FULL: memory +
 * state; DIFF: requires the promoted memory file and rewrites it), restores copy
 * it back. Every operation can be made to fail on demand. */
#ifndef EMBER_TEST_TESTVM_DRIVER_H
#define EMBER_TEST_TESTVM_DRIVER_H

#include "drivers/hypervisor.h"

typedef struct testvm_state {
  unsigned caps;
  /* Fail the next call of these (counted down; 0 = never). */
  int fail_start, fail_pause, fail_resume, fail_snapshot, fail_restore, fail_adopt, fail_save;
  /* Restore spawns the VMM, then fails (tests the kill-and-reap path). */
  int fail_restore_after_spawn;
  int n_snapshot_full, n_snapshot_diff, n_restore, n_shutdown, n_save, n_restore_frozen;
  /* Warm restore (restore_prepare / warm_discard, types testvm and testlive):
   * fail_prepare fails the next prepares; the counters count prepares,
   * restores that ran in the warm VMM, discards; warm_pid is the last warm
   * VMM's pid. */
  int fail_prepare;
  int unimpl_prepare; /* the next prepares say UNIMPLEMENTED (a snapshot that cannot be) */
  int n_prepare_calls, n_prepare, n_warm_used, n_warm_discard;
  int warm_pid;
} testvm_state;

extern const vmm_driver testvm_driver;        /* base reuse, no graceful shutdown */
extern const vmm_driver testvm_live_driver;   /* LIVE_RAM_FILE + graceful, type "testlive" */
extern const vmm_driver testvm_nosnap_driver; /* no snapshot, no pause, type "testbare" */
extern const vmm_driver testvm_gone_driver;   /* init fails: unavailable, type "testgone" */
extern const vmm_driver testvm_full_driver;   /* snapshots without base reuse, type "testfull" */

#endif
