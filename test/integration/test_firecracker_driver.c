/* test_firecracker_driver.c: the Firecracker driver's operations, called
 * directly, against a Firecracker binary.
 *
 *   test_firecracker_driver fake <firecracker_fake.py> <version>
 *       the contract fake (test/fakes/firecracker_fake.py) acting as that
 *       release: it rejects fields the release does not know, enforces its
 *       state machine, and refuses to load a memory file that does not hold
 *       the memory the state was saved with.
 *   test_firecracker_driver real <tiny.elf>
 *       the binary named by EMBER_FIRECRACKER_BIN with the tiny guest; exits
 *       77 (SKIP) when the binary, the guest or a working /dev/kvm is missing.
 *
 * Sequence (the snapshot folder moves as the agent's snapshot manager moves
 * it): boot, pause, Full snapshot into snapshot-latest, kill, restore, rename
 * to snapshot-base; twice: pause, promote the base to snapshot-latest, Diff
 * snapshot, kill, restore. After each restore the guest's counter continues
 * from where it was paused and its boot marker is unchanged. */
#include "drivers/registry.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
  bool real;
  const char *version; /* fake only */
  char dir[64];
  char *kernel;
  char *console;
  char *vmm_log;
  char *latest;
  char *base;
  void *state;
  vmm_spec spec;
  vmm_vm vm;
  long paused_counter;
  char marker[64];
} fixture;

static fixture fx; /* test fixture shared by the ordered tests below */

/* Scans console lines "tiny counter=<n> marker=<hex>" from byte offset from;
 * returns the number of such lines and fills the first and last. */
static int console_scan(off_t from, long *first, long *last, char *marker, size_t msize)
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (cmn_file_read(fx.console, 64u << 20, &buf, &len, NULL) < 0 || (size_t)from > len)
    return 0;
  int n = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf + from, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    char *p = strstr(line, "tiny counter=");
    if (p == NULL)
      continue;
    char *end = NULL;
    long v = strtol(p + strlen("tiny counter="), &end, 10);
    if (end == p + strlen("tiny counter="))
      continue;
    char *m = strstr(end, "marker=");
    if (n == 0)
      *first = v;
    *last = v;
    if (m != NULL && marker != NULL)
      snprintf(marker, msize, "%.*s", (int)strcspn(m + 7, " \r"), m + 7);
    n++;
  }
  return n;
}

static off_t console_size(void)
{
  struct stat st;
  return stat(fx.console, &st) == 0 ? st.st_size : 0;
}

/* Waits until at least want counter lines appeared after from. */
static int wait_lines(off_t from, int want, long *first, long *last, char *marker, size_t ms)
{
  for (int i = 0; i < 3000; i++) { /* 30 s */
    if (console_scan(from, first, last, marker, ms) >= want)
      return 0;
    if (!cmn_proc_alive(&fx.vm.proc))
      return -1;
    cmn_sleep_ms(10);
  }
  return -1;
}

static void kill_vmm(void)
{
  if (fx.vm.proc.pid > 0)
    cmn_proc_kill_reap(&fx.vm.proc);
  memset(&fx.vm.proc, 0, sizeof fx.vm.proc);
  vmm_firecracker_driver.release(fx.state, &fx.vm);
  vmm_firecracker_driver.cleanup(fx.state, &fx.vm);
}

static bool log_contains(const char *needle)
{
  cleanup_free char *buf = NULL;
  if (cmn_file_read(fx.vmm_log, 64u << 20, &buf, NULL, NULL) < 0)
    return false;
  return strstr(buf, needle) != NULL;
}

static void expect_state(vmm_run_state want)
{
  cmn_error err = {0};
  vmm_run_state st = 0;
  int r = vmm_firecracker_driver.query(fx.state, &fx.vm, &st, &err);
  if (r < 0)
    printf("\nquery: %s\n", err.msg);
  CU_ASSERT(r == 0 && st == want);
}

/* Pauses and records the last counter the guest printed. */
static void pause_and_record(void)
{
  cmn_error err = {0};
  int r = vmm_firecracker_driver.pause(fx.state, &fx.vm, &err);
  if (r < 0)
    printf("\npause: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  expect_state(VMM_STATE_PAUSED);
  cmn_sleep_ms(200); /* a line being written while pausing has landed */
  long first = 0, last = 0;
  char marker[64] = "";
  CU_ASSERT_FATAL(console_scan(0, &first, &last, marker, sizeof marker) > 0);
  fx.paused_counter = last;
  CU_ASSERT_STRING_EQUAL(marker, fx.marker);
}

/* Restores from snapshot-latest and checks that the guest continues. */
static void restore_and_check(void)
{
  off_t from = console_size();
  cmn_error err = {0};
  int r = vmm_firecracker_driver.restore(fx.state, &fx.vm, fx.latest, &err);
  if (r < 0)
    printf("\nrestore: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  CU_ASSERT(fx.vm.proc.pid > 0);
  expect_state(VMM_STATE_RUNNING);
  long first = 0, last = 0;
  char marker[64] = "";
  CU_ASSERT_FATAL(wait_lines(from, 2, &first, &last, marker, sizeof marker) == 0);
  /* The fake prints every increment: the next is exactly one more. The tiny
   * guest prints periodically: it must not have gone back. */
  if (fx.real) {
    CU_ASSERT(first >= fx.paused_counter);
  } else {
    CU_ASSERT(first == fx.paused_counter + 1);
  }
  if (!fx.real && first != fx.paused_counter + 1)
    printf("\ncounter after restore %ld, paused at %ld\n", first, fx.paused_counter);
  CU_ASSERT_STRING_EQUAL(marker, fx.marker); /* same boot, not a reboot */
  /* The agent keeps the consumed snapshot as the base. */
  CU_ASSERT_FATAL(cmn_rename_durable(fx.latest, fx.base, &err) == 0);
}

static void test_init(void)
{
  cmn_error err = {0};
  /* A missing binary makes the driver unavailable with a reason. */
  cleanup_free char *saved = cmn_strdup(getenv("EMBER_FIRECRACKER_BIN"));
  setenv("EMBER_FIRECRACKER_BIN", "/nonexistent/firecracker", 1);
  void *st = NULL;
  CU_ASSERT(vmm_firecracker_driver.init(NULL, &st, &err) < 0);
  CU_ASSERT(err.code == CMN_UNAVAILABLE && strstr(err.msg, "/nonexistent") != NULL);
  setenv("EMBER_FIRECRACKER_BIN", saved, 1);

  cmn_err_clear(&err);
  int r = vmm_firecracker_driver.init(NULL, &fx.state, &err);
  if (r < 0)
    printf("\ninit: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *d = vmm_firecracker_driver.describe(fx.state);
  printf("\n  %s\n", d);
  if (!fx.real) {
    char want[64];
    snprintf(want, sizeof want, "firecracker %s ", fx.version);
    CU_ASSERT(strncmp(d, want, strlen(want)) == 0);
  }
  unsigned caps = vmm_firecracker_driver.caps;
  CU_ASSERT(caps == (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE));
  CU_ASSERT(vmm_firecracker_driver.shutdown == NULL);
}

static void test_boot_full_snapshot(void)
{
  cmn_error err = {0};
  int r = vmm_firecracker_driver.start(fx.state, &fx.vm, fx.dir, &err);
  if (r < 0)
    printf("\nstart: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  long first = 0, last = 0;
  CU_ASSERT_FATAL(wait_lines(0, 3, &first, &last, fx.marker, sizeof fx.marker) == 0);
  expect_state(VMM_STATE_RUNNING);

  /* Adopt: a second view of the same VMM (as after an agent restart). */
  vmm_vm other = fx.vm;
  other.priv = NULL;
  vmm_run_state st = 0;
  CU_ASSERT(vmm_firecracker_driver.adopt(fx.state, &other, &st, &err) == 0 &&
            st == VMM_STATE_RUNNING);
  vmm_firecracker_driver.release(fx.state, &other);
  vmm_firecracker_driver.release(fx.state, &other); /* safe twice */

  /* Snapshots need a paused VM (the fake refuses otherwise). */
  pause_and_record();
  CU_ASSERT_FATAL(cmn_mkdir_p(fx.latest, 0700, &err) == 0);
  r = vmm_firecracker_driver.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_FULL, &err);
  if (r < 0)
    printf("\nsnapshot: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *mem = cmn_asprintf("%s/memory", fx.latest);
  cleanup_free char *state = cmn_asprintf("%s/state", fx.latest);
  struct stat sb;
  CU_ASSERT(stat(mem, &sb) == 0 && (uint64_t)sb.st_size == fx.spec.memory_mib << 20);
  CU_ASSERT(cmn_is_regular_file(state));
  expect_state(VMM_STATE_PAUSED); /* the VM stays paused */
  kill_vmm();
  cleanup_free char *sock = cmn_asprintf("%s/firecracker.sock", fx.dir);
  CU_ASSERT(!cmn_path_exists(sock));
}

static void test_restore_full(void) { restore_and_check(); }

static void diff_cycle(void)
{
  cmn_error err = {0};
  pause_and_record();
  /* Promote the base (the agent's step 2 of standby). */
  CU_ASSERT_FATAL(cmn_rename_durable(fx.base, fx.latest, &err) == 0);
  int r = vmm_firecracker_driver.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_DIFF, &err);
  if (r < 0)
    printf("\ndiff snapshot: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *diff = cmn_asprintf("%s/memory.diff", fx.latest);
  CU_ASSERT(!cmn_path_exists(diff));
  kill_vmm();
  restore_and_check(); /* the fake checks the memory hash on load */
}

static void test_diff_restore(void)
{
  diff_cycle();
  if (!fx.real) {
    /* Where the diff landed, per version: in place from 1.6, else merged. */
    long minor = strtol(strchr(fx.version, '.') + 1, NULL, 10);
    if (minor >= 6) {
      CU_ASSERT(log_contains("in place into existing: True"));
    } else {
      CU_ASSERT(log_contains("memory.diff (in place into existing: False)"));
    }
    /* The driver sends no field its version deprecates. */
    CU_ASSERT(!log_contains("DEPRECATED"));
  }
}

static void test_diff_restore_again(void) { diff_cycle(); }

static void test_fault_before_resume(void)
{
  cmn_error err = {0};
  pause_and_record();
  CU_ASSERT_FATAL(cmn_rename_durable(fx.base, fx.latest, &err) == 0);
  CU_ASSERT_FATAL(
      vmm_firecracker_driver.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_DIFF, &err) == 0);
  kill_vmm();
  setenv("EMBER_FAULT", "fc.restore.before_resume", 1);
  int r = vmm_firecracker_driver.restore(fx.state, &fx.vm, fx.latest, &err);
  unsetenv("EMBER_FAULT");
  CU_ASSERT(r < 0 && strstr(err.msg, "fc.restore.before_resume") != NULL);
  CU_ASSERT(fx.vm.proc.pid > 0); /* set as soon as spawned: the agent reaps it */
  expect_state(VMM_STATE_PAUSED);
  kill_vmm();
  /* The snapshot is untouched: the restore can be retried. */
  restore_and_check();
  kill_vmm();
}

static bool kvm_usable(void)
{
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

int main(int argc, char **argv)
{
  if (argc < 3 || (strcmp(argv[1], "fake") == 0 && argc < 4)) {
    fprintf(stderr, "usage: %s fake <fake.py> <version> | real <tiny.elf>\n", argv[0]);
    return 2;
  }
  fx.real = strcmp(argv[1], "real") == 0;
  if (fx.real) {
    const char *bin = getenv("EMBER_FIRECRACKER_BIN");
    if (bin == NULL || bin[0] == '\0') {
      printf("SKIP: EMBER_FIRECRACKER_BIN does not name a firecracker binary\n");
      return 77;
    }
    if (access(bin, X_OK) != 0) {
      printf("SKIP: EMBER_FIRECRACKER_BIN=%s is not executable\n", bin);
      return 77;
    }
    if (!kvm_usable()) {
      printf("SKIP: /dev/kvm cannot be opened read-write\n");
      return 77;
    }
    if (!cmn_is_regular_file(argv[2])) {
      printf("SKIP: the tiny guest %s is not built\n", argv[2]);
      return 77;
    }
  } else {
    setenv("EMBER_FIRECRACKER_BIN", argv[2], 1);
    setenv("FAKE_FC_VERSION", argv[3], 1);
    fx.version = argv[3];
  }
  cmn_log_setup(CMN_LOG_WARN, 2);
  curl_global_init(CURL_GLOBAL_ALL);
  snprintf(fx.dir, sizeof fx.dir, "/tmp/ember-fc-test-XXXXXX");
  if (mkdtemp(fx.dir) == NULL)
    return 1;
  fx.console = cmn_asprintf("%s/console.log", fx.dir);
  fx.vmm_log = cmn_asprintf("%s/vmm.log", fx.dir);
  fx.latest = cmn_asprintf("%s/snapshots/snapshot-latest", fx.dir);
  fx.base = cmn_asprintf("%s/snapshots/snapshot-base", fx.dir);
  if (fx.real) {
    fx.kernel = cmn_strdup(argv[2]);
  } else {
    /* Any bytes do as the fake's kernel: it copies them into guest memory. */
    fx.kernel = cmn_asprintf("%s/kernel", fx.dir);
    unsigned char k[16384];
    for (size_t i = 0; i < sizeof k; i++)
      k[i] = (unsigned char)(i * 31 + 7);
    if (cmn_file_write_atomic(fx.kernel, k, sizeof k, 0644, NULL) < 0)
      return 1;
  }
  fx.spec.vcpus = 1;
  fx.spec.memory_mib = fx.real ? 64 : 8;
  fx.spec.kernel = fx.kernel;
  fx.spec.cmdline =
      fx.real ? (char[]){"console=ttyS0"} : (char[]){"console=ttyS0 reboot=k panic=1"};
  fx.vm.id = "fc-test";
  fx.vm.dir = fx.dir;
  fx.vm.console_path = fx.console;
  fx.vm.vmm_log_path = fx.vmm_log;
  fx.vm.spec = &fx.spec;

  CU_initialize_registry();
  CU_pSuite s = CU_add_suite(fx.real ? "firecracker(real)" : "firecracker(fake)", NULL, NULL);
  CU_add_test(s, "init reads the version once", test_init);
  CU_add_test(s, "boot, adopt, pause, full snapshot", test_boot_full_snapshot);
  CU_add_test(s, "restore from full", test_restore_full);
  CU_add_test(s, "diff into the promoted base, restore", test_diff_restore);
  CU_add_test(s, "second diff, restore", test_diff_restore_again);
  CU_add_test(s, "fault before resume leaves the snapshot usable", test_fault_before_resume);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  kill_vmm();
  if (fx.state != NULL)
    vmm_firecracker_driver.fini(fx.state);
  if (fails != 0) {
    cleanup_free char *log = NULL;
    if (cmn_file_read(fx.vmm_log, 1u << 20, &log, NULL, NULL) == 0)
      fprintf(stderr, "---- VMM log (%s)\n%s\n", fx.vmm_log, log);
  } else {
    cmn_rm_rf(fx.dir, NULL);
  }
  curl_global_cleanup();
  return fails == 0 ? 0 : 1;
}
