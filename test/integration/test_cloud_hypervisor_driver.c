/* test_cloud_hypervisor_driver.c: the Cloud Hypervisor driver's operations,
 * called directly, against a cloud-hypervisor binary.
 *
 *   test_cloud_hypervisor_driver fake <cloud_hypervisor_fake.py> <version>
 *       the contract fake (test/fakes/cloud_hypervisor_fake.py) acting as that
 *       release: it rejects fields the release does not read, enforces the
 *       VMM's state machine, and refuses to restore memory that does not match
 *       the saved state.
 *   test_cloud_hypervisor_driver real <guest kernel>
 *       the binary named by EMBER_CLOUD_HYPERVISOR_BIN; exits 77 (SKIP) when
 *       the binary, the guest or a working /dev/kvm is missing.
 *
 * Sequence (snapshot folders moved as the agent's snapshot manager moves them
 * for a driver without base reuse): boot, adopt, pause, Full snapshot into
 * snapshot-latest, graceful VMM shutdown, restore (the counter continues, the
 * boot marker stays, the console keeps its history), again; a corrupt snapshot
 * fails to restore and is left byte for byte as it was; an injected fault
 * before resume leaves the snapshot usable; the power button ends the VMM. */
#include "drivers/registry.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DRV vmm_cloud_hypervisor_driver

typedef struct fixture {
  bool real;
  const char *version; /* fake only */
  char dir[64];
  char *kernel;
  char *console;
  char *vmm_log;
  char *latest;
  char *corrupt;
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

static void forget_vmm(void)
{
  memset(&fx.vm.proc, 0, sizeof fx.vm.proc);
  DRV.release(fx.state, &fx.vm);
  DRV.cleanup(fx.state, &fx.vm);
}

static void kill_vmm(void)
{
  if (fx.vm.proc.pid > 0)
    cmn_proc_kill_reap(&fx.vm.proc);
  forget_vmm();
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
  int r = DRV.query(fx.state, &fx.vm, &st, &err);
  if (r < 0)
    printf("\nquery: %s\n", err.msg);
  CU_ASSERT(r == 0 && st == want);
}

/* Concatenated contents of the three snapshot files (for "untouched" checks). */
static char *snap_digest(const char *dir, size_t *len)
{
  static const char *const names[] = {"config.json", "state.json", "memory-ranges"};
  size_t total = 0;
  char *all = cmn_strdup("");
  for (size_t i = 0; i < 3; i++) {
    cleanup_free char *p = cmn_asprintf("%s/%s", dir, names[i]);
    cleanup_free char *buf = NULL;
    size_t n = 0;
    if (cmn_file_read(p, 256u << 20, &buf, &n, NULL) < 0)
      n = 0;
    all = cmn_realloc(all, total + n + 1);
    if (n > 0)
      memcpy(all + total, buf, n);
    total += n;
  }
  *len = total;
  return all;
}

static void pause_and_record(void)
{
  cmn_error err = {0};
  int r = DRV.pause(fx.state, &fx.vm, &err);
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

/* Full snapshot into a fresh snapshot-latest, then a graceful VMM shutdown. */
static void standby(void)
{
  cmn_error err = {0};
  pause_and_record();
  CU_ASSERT_FATAL(cmn_rm_rf(fx.latest, &err) == 0);
  CU_ASSERT_FATAL(cmn_mkdir_p(fx.latest, 0700, &err) == 0);
  int r = DRV.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_FULL, &err);
  if (r < 0)
    printf("\nsnapshot: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *mem = cmn_asprintf("%s/memory-ranges", fx.latest);
  cleanup_free char *cfg = cmn_asprintf("%s/config.json", fx.latest);
  cleanup_free char *st = cmn_asprintf("%s/state.json", fx.latest);
  struct stat sb;
  CU_ASSERT(stat(mem, &sb) == 0 && (uint64_t)sb.st_size == fx.spec.memory_mib << 20);
  CU_ASSERT(cmn_is_regular_file(cfg) && cmn_is_regular_file(st));
  expect_state(VMM_STATE_PAUSED); /* the VM stays paused */
  off_t size = console_size();
  r = DRV.shutdown(fx.state, &fx.vm, 10000, &err);
  if (r < 0)
    printf("\nshutdown: %s\n", err.msg);
  CU_ASSERT(r == 0);
  CU_ASSERT(!cmn_proc_alive(&fx.vm.proc));
  CU_ASSERT(console_size() == size); /* the guest did not run again */
  forget_vmm();
  cleanup_free char *sock = cmn_asprintf("%s/ch.sock", fx.dir);
  CU_ASSERT(!cmn_path_exists(sock));
}

static void restore_and_check(const char *dir)
{
  off_t from = console_size();
  long before_first = 0, before_last = 0;
  int before = console_scan(0, &before_first, &before_last, NULL, 0);
  cmn_error err = {0};
  int r = DRV.restore(fx.state, &fx.vm, dir, &err);
  if (r < 0)
    printf("\nrestore: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  CU_ASSERT(fx.vm.proc.pid > 0);
  expect_state(VMM_STATE_RUNNING);
  long first = 0, last = 0;
  char marker[64] = "";
  CU_ASSERT_FATAL(wait_lines(from, 2, &first, &last, marker, sizeof marker) == 0);
  if (fx.real) {
    CU_ASSERT(first >= fx.paused_counter);
  } else {
    CU_ASSERT(first == fx.paused_counter + 1);
    if (first != fx.paused_counter + 1)
      printf("\ncounter after restore %ld, paused at %ld\n", first, fx.paused_counter);
  }
  CU_ASSERT_STRING_EQUAL(marker, fx.marker); /* same boot, not a reboot */
  /* The console kept its history (appended, not truncated). */
  CU_ASSERT(console_scan(0, &first, &last, NULL, 0) > before);
}

static void test_init(void)
{
  cmn_error err = {0};
  cleanup_free char *saved = cmn_strdup(getenv("EMBER_CLOUD_HYPERVISOR_BIN"));
  setenv("EMBER_CLOUD_HYPERVISOR_BIN", "/nonexistent/cloud-hypervisor", 1);
  void *st = NULL;
  CU_ASSERT(DRV.init(NULL, &st, &err) < 0);
  CU_ASSERT(err.code == CMN_UNAVAILABLE && strstr(err.msg, "/nonexistent") != NULL);
  setenv("EMBER_CLOUD_HYPERVISOR_BIN", saved, 1);

  cmn_err_clear(&err);
  int r = DRV.init(NULL, &fx.state, &err);
  if (r < 0)
    printf("\ninit: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *d = DRV.describe(fx.state);
  printf("\n  %s\n", d);
  if (!fx.real) {
    char want[64];
    snprintf(want, sizeof want, "cloud-hypervisor %s.0 ", fx.version);
    CU_ASSERT(strncmp(d, want, strlen(want)) == 0);
  }
  CU_ASSERT_STRING_EQUAL(DRV.type, "cloud-hypervisor");
  CU_ASSERT(DRV.caps == (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_GRACEFUL_SHUTDOWN));
  CU_ASSERT(DRV.shutdown != NULL && DRV.powerdown != NULL);
}

static void test_boot_snapshot(void)
{
  cmn_error err = {0};
  int r = DRV.start(fx.state, &fx.vm, fx.dir, &err);
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
  CU_ASSERT(DRV.adopt(fx.state, &other, &st, &err) == 0 && st == VMM_STATE_RUNNING);
  DRV.release(fx.state, &other);
  DRV.release(fx.state, &other); /* safe twice */

  /* Snapshots need a paused VM: the VMM refuses a running one. */
  CU_ASSERT_FATAL(cmn_mkdir_p(fx.latest, 0700, &err) == 0);
  r = DRV.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_FULL, &err);
  CU_ASSERT(r < 0 && strstr(err.msg, "running") != NULL);
  /* No diff snapshots. */
  cmn_err_clear(&err);
  CU_ASSERT(DRV.snapshot(fx.state, &fx.vm, fx.latest, VMM_SNAP_DIFF, &err) < 0 &&
            err.code == CMN_UNIMPLEMENTED);
  standby();
}

static void test_restore(void) { restore_and_check(fx.latest); }

static void test_standby_restore_again(void)
{
  standby();
  restore_and_check(fx.latest);
  if (!fx.real)
    CU_ASSERT(!log_contains("IGNORED-BY-REAL-CH")); /* only fields the version reads */
}

static void test_corrupt_snapshot(void)
{
  cmn_error err = {0};
  standby();
  /* A copy of the good snapshot with one byte of guest memory flipped. */
  CU_ASSERT_FATAL(cmn_mkdir_p(fx.corrupt, 0700, &err) == 0);
  static const char *const names[] = {"config.json", "state.json", "memory-ranges"};
  for (size_t i = 0; i < 3; i++) {
    cleanup_free char *from = cmn_asprintf("%s/%s", fx.latest, names[i]);
    cleanup_free char *to = cmn_asprintf("%s/%s", fx.corrupt, names[i]);
    cleanup_free char *buf = NULL;
    size_t n = 0;
    CU_ASSERT_FATAL(cmn_file_read(from, 256u << 20, &buf, &n, &err) == 0);
    if (i == 2)
      buf[n / 2] ^= 0x5a;
    CU_ASSERT_FATAL(cmn_file_write_atomic(to, buf, n, 0600, &err) == 0);
  }
  size_t len0 = 0, len1 = 0;
  cleanup_free char *before = snap_digest(fx.corrupt, &len0);
  int r = DRV.restore(fx.state, &fx.vm, fx.corrupt, &err);
  if (!fx.real) {
    CU_ASSERT(r < 0);
    printf("\n  corrupt restore: %s\n", err.msg);
    CU_ASSERT(strstr(err.msg, "memory-ranges") != NULL);
  }
  kill_vmm();
  cleanup_free char *after = snap_digest(fx.corrupt, &len1);
  CU_ASSERT(len0 == len1 && memcmp(before, after, len0) == 0);
  /* A missing file is refused before any VMM is spawned: DATA_LOSS. */
  cleanup_free char *st = cmn_asprintf("%s/state.json", fx.corrupt);
  unlink(st);
  cmn_err_clear(&err);
  CU_ASSERT(DRV.restore(fx.state, &fx.vm, fx.corrupt, &err) < 0 && err.code == CMN_DATA_LOSS &&
            fx.vm.proc.pid == 0);
  CU_ASSERT(cmn_rm_rf(fx.corrupt, &err) == 0);
}

static void test_fault_before_resume(void)
{
  cmn_error err = {0};
  setenv("EMBER_FAULT", "ch.restore.before_resume", 1);
  int r = DRV.restore(fx.state, &fx.vm, fx.latest, &err);
  unsetenv("EMBER_FAULT");
  CU_ASSERT(r < 0 && strstr(err.msg, "ch.restore.before_resume") != NULL);
  CU_ASSERT(fx.vm.proc.pid > 0); /* set as soon as spawned: the agent reaps it */
  expect_state(VMM_STATE_PAUSED);
  kill_vmm();
  /* The snapshot is untouched: the restore can be retried. */
  restore_and_check(fx.latest);
}

static void test_powerdown(void)
{
  cmn_error err = {0};
  int r = DRV.powerdown(fx.state, &fx.vm, 10000, &err);
  if (r < 0)
    printf("\npowerdown: %s\n", err.msg);
  CU_ASSERT(r == 0 && !cmn_proc_alive(&fx.vm.proc));
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
    fprintf(stderr, "usage: %s fake <fake.py> <version> | real <kernel>\n", argv[0]);
    return 2;
  }
  fx.real = strcmp(argv[1], "real") == 0;
  if (fx.real) {
    const char *bin = getenv("EMBER_CLOUD_HYPERVISOR_BIN");
    if (bin == NULL || bin[0] == '\0') {
      printf("SKIP: EMBER_CLOUD_HYPERVISOR_BIN does not name a cloud-hypervisor binary\n");
      return 77;
    }
    if (access(bin, X_OK) != 0) {
      printf("SKIP: EMBER_CLOUD_HYPERVISOR_BIN=%s is not executable\n", bin);
      return 77;
    }
    if (!kvm_usable()) {
      printf("SKIP: /dev/kvm cannot be opened read-write\n");
      return 77;
    }
    if (!cmn_is_regular_file(argv[2])) {
      printf("SKIP: the guest kernel %s is not built\n", argv[2]);
      return 77;
    }
  } else {
    setenv("EMBER_CLOUD_HYPERVISOR_BIN", argv[2], 1);
    setenv("FAKE_CH_VERSION", argv[3], 1);
    fx.version = argv[3];
  }
  cmn_log_setup(CMN_LOG_WARN, 2);
  curl_global_init(CURL_GLOBAL_ALL);
  snprintf(fx.dir, sizeof fx.dir, "/tmp/ember-ch-test-XXXXXX");
  if (mkdtemp(fx.dir) == NULL)
    return 1;
  fx.console = cmn_asprintf("%s/console.log", fx.dir);
  fx.vmm_log = cmn_asprintf("%s/vmm.log", fx.dir);
  fx.latest = cmn_asprintf("%s/snapshots/snapshot-latest", fx.dir);
  fx.corrupt = cmn_asprintf("%s/snapshots/snapshot-corrupt", fx.dir);
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
  fx.spec.cmdline = (char[]){"console=ttyS0"};
  fx.vm.id = "ch-test";
  fx.vm.dir = fx.dir;
  fx.vm.console_path = fx.console;
  fx.vm.vmm_log_path = fx.vmm_log;
  fx.vm.spec = &fx.spec;

  CU_initialize_registry();
  CU_pSuite s =
      CU_add_suite(fx.real ? "cloud-hypervisor(real)" : "cloud-hypervisor(fake)", NULL, NULL);
  CU_add_test(s, "init reads the version once", test_init);
  CU_add_test(s, "boot, adopt, pause, full snapshot, shutdown", test_boot_snapshot);
  CU_add_test(s, "restore: the guest continues", test_restore);
  CU_add_test(s, "second standby and restore", test_standby_restore_again);
  CU_add_test(s, "a corrupt snapshot fails and stays untouched", test_corrupt_snapshot);
  CU_add_test(s, "fault before resume leaves the snapshot usable", test_fault_before_resume);
  CU_add_test(s, "power button ends the VMM", test_powerdown);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  kill_vmm();
  if (fx.state != NULL)
    DRV.fini(fx.state);
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
