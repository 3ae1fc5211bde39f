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
#include <dirent.h>
#include <errno.h>
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
  CU_ASSERT(DRV.caps ==
            (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_GRACEFUL_SHUTDOWN | VMM_CAP_FORK));
  CU_ASSERT(DRV.save != NULL && DRV.restore_frozen != NULL);
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

/* ---- fork: save and restore_frozen ------------------------------------------ */

/* One line per entry of dir, sorted: name, size, mtime and an FNV-1a of the
 * content, so that any write, new file or removal shows. Caller frees. */
static char *folder_print(const char *dir)
{
  struct dirent **names = NULL;
  int n = scandir(dir, &names, NULL, alphasort);
  if (n < 0)
    return cmn_asprintf("(cannot read %s: %s)", dir, cmn_strerror(errno));
  char *out = cmn_strdup("");
  for (int i = 0; i < n; i++) {
    const char *name = names[i]->d_name;
    if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
      cleanup_free char *path = cmn_asprintf("%s/%s", dir, name);
      struct stat st;
      uint64_t h = 14695981039346656037ULL;
      cleanup_free char *buf = NULL;
      size_t len = 0;
      if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
          cmn_file_read(path, 256u << 20, &buf, &len, NULL) == 0)
        for (size_t k = 0; k < len; k++) {
          h ^= (unsigned char)buf[k];
          h *= 1099511628211ULL;
        }
      char *next =
          cmn_asprintf("%s%s %lld %lld.%09ld %016llx\n", out, name, (long long)st.st_size,
                       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (unsigned long long)h);
      free(out);
      out = next;
    }
    free(names[i]);
  }
  free(names);
  return out;
}

typedef struct clone_vm {
  char *dir;
  char *console;
  char *vmm_log;
  vmm_spec spec;
  vmm_vm vm;
} clone_vm;

static void clone_init(clone_vm *c, const char *name)
{
  memset(c, 0, sizeof *c);
  c->dir = cmn_asprintf("%s/%s", fx.dir, name);
  c->console = cmn_asprintf("%s/console.log", c->dir);
  c->vmm_log = cmn_asprintf("%s/vmm.log", c->dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(c->dir, 0700, NULL) == 0);
  c->spec = fx.spec; /* same devices; strings are shared, not owned */
  c->vm.id = name;
  c->vm.dir = c->dir;
  c->vm.console_path = c->console;
  c->vm.vmm_log_path = c->vmm_log;
  c->vm.spec = &c->spec;
}

static void clone_kill(clone_vm *c)
{
  if (c->vm.proc.pid > 0)
    cmn_proc_kill_reap(&c->vm.proc);
  memset(&c->vm.proc, 0, sizeof c->vm.proc);
  DRV.release(fx.state, &c->vm);
  DRV.cleanup(fx.state, &c->vm);
}

static void clone_free(clone_vm *c)
{
  clone_kill(c);
  free(c->dir);
  free(c->console);
  free(c->vmm_log);
}

static int clone_lines(clone_vm *c, off_t from, int want, long *first, long *last, char *marker,
                       size_t ms)
{
  for (int i = 0; i < 3000; i++) { /* 30 s */
    cleanup_free char *buf = NULL;
    size_t len = 0;
    int n = 0;
    if (cmn_file_read(c->console, 64u << 20, &buf, &len, NULL) == 0 && (size_t)from <= len) {
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
          snprintf(marker, ms, "%.*s", (int)strcspn(m + 7, " \r"), m + 7);
        n++;
      }
    }
    if (n >= want)
      return 0;
    if (!cmn_proc_alive(&c->vm.proc))
      return -1;
    cmn_sleep_ms(10);
  }
  return -1;
}

/* restore_frozen from snap_dir; the clone continues from counter with the
 * source's boot marker; the corrected view of the snapshot is gone. */
static void clone_start_check(clone_vm *c, const char *snap_dir, long counter)
{
  cmn_error err = {0};
  int r = DRV.restore_frozen(fx.state, &c->vm, snap_dir, &err);
  if (r < 0)
    printf("\nrestore_frozen %s: %s\n", c->vm.id, err.msg);
  CU_ASSERT_FATAL(r == 0);
  CU_ASSERT(c->vm.proc.pid > 0);
  long first = 0, last = 0;
  char marker[64] = "";
  CU_ASSERT_FATAL(clone_lines(c, 0, 2, &first, &last, marker, sizeof marker) == 0);
  if (fx.real) {
    CU_ASSERT(first >= counter);
  } else {
    CU_ASSERT(first == counter + 1);
  }
  CU_ASSERT_STRING_EQUAL(marker, fx.marker);
  cleanup_free char *staging = cmn_asprintf("%s/ch-restore", c->dir);
  CU_ASSERT(!cmn_path_exists(staging));
}

static char *fx_saved;      /* the saved (frozen) folder */
static long fx_saved_count; /* the counter the guest had printed when saved */

/* Pause, save into an empty folder, resume: the source continues and its own
 * snapshot folder is untouched; its next standby and restore still work. */
static void test_save_resume(void)
{
  cmn_error err = {0};
  long first = 0, last = 0;
  CU_ASSERT_FATAL(wait_lines(console_size(), 3, &first, &last, NULL, 0) == 0);
  pause_and_record();
  fx_saved_count = fx.paused_counter;
  cleanup_free char *latest_before = folder_print(fx.latest);
  fx_saved = cmn_asprintf("%s/saved", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(fx_saved, 0700, &err) == 0);
  int r = DRV.save(fx.state, &fx.vm, fx_saved, &err);
  if (r < 0)
    printf("\nsave: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *mem = cmn_asprintf("%s/memory-ranges", fx_saved);
  struct stat sb;
  CU_ASSERT(stat(mem, &sb) == 0 && (uint64_t)sb.st_size == fx.spec.memory_mib << 20);
  expect_state(VMM_STATE_PAUSED);
  cleanup_free char *latest_after = folder_print(fx.latest);
  CU_ASSERT_STRING_EQUAL(latest_before, latest_after);
  off_t from = console_size();
  CU_ASSERT_FATAL(DRV.resume(fx.state, &fx.vm, &err) == 0);
  expect_state(VMM_STATE_RUNNING);
  CU_ASSERT_FATAL(wait_lines(from, 2, &first, &last, NULL, 0) == 0);
  if (!fx.real)
    CU_ASSERT(first == fx_saved_count + 1);
}

/* Two clones from the one saved folder at once (the source still running,
 * its vsock socket bound); the folder is never written; a clone's own
 * standby restores; the source's standby and restore still work. */
static void test_fork_two_clones(void)
{
  cmn_error err = {0};
  cleanup_free char *before = folder_print(fx_saved);
  clone_vm a, b;
  clone_init(&a, "clone-a");
  clone_init(&b, "clone-b");
  clone_start_check(&a, fx_saved, fx_saved_count);
  clone_start_check(&b, fx_saved, fx_saved_count);
  CU_ASSERT(cmn_proc_alive(&a.vm.proc) && cmn_proc_alive(&b.vm.proc));
  CU_ASSERT(cmn_proc_alive(&fx.vm.proc));
  if (fx.spec.vsock_cid != 0) {
    cleanup_free char *vs = cmn_asprintf("%s/vsock.sock", a.dir);
    CU_ASSERT(cmn_path_exists(vs)); /* its own socket, not the source's */
  }
  cleanup_free char *during = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, during);

  /* Clone a's standby: Full into its own folder, shutdown, restore. */
  CU_ASSERT_FATAL(DRV.pause(fx.state, &a.vm, &err) == 0);
  cmn_sleep_ms(200);
  long first = 0, last = 0;
  CU_ASSERT_FATAL(clone_lines(&a, 0, 1, &first, &last, NULL, 0) == 0);
  cleanup_free char *snap = cmn_asprintf("%s/snapshot-latest", a.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(snap, 0700, &err) == 0);
  int r = DRV.snapshot(fx.state, &a.vm, snap, VMM_SNAP_FULL, &err);
  CU_ASSERT_FATAL(r == 0);
  clone_kill(&a);
  struct stat st;
  off_t from = stat(a.console, &st) == 0 ? st.st_size : 0;
  r = DRV.restore(fx.state, &a.vm, snap, &err);
  if (r < 0)
    printf("\nclone restore: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  long f2 = 0, l2 = 0;
  CU_ASSERT_FATAL(clone_lines(&a, from, 2, &f2, &l2, NULL, 0) == 0);
  if (!fx.real)
    CU_ASSERT(f2 == last + 1);
  clone_free(&a);
  clone_free(&b);
  cleanup_free char *after = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, after);

  /* The source: standby and restore as ever. */
  standby();
  restore_and_check(fx.latest);
}

/* A file-by-file copy of a complete standby folder is a frozen snapshot too. */
static void test_fork_from_standby_copy(void)
{
  cmn_error err = {0};
  cleanup_free char *copy = cmn_asprintf("%s/copied", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(copy, 0700, &err) == 0);
  static const char *const names[] = {"config.json", "state.json", "memory-ranges"};
  for (size_t i = 0; i < 3; i++) {
    cleanup_free char *src = cmn_asprintf("%s/%s", fx.latest, names[i]);
    cleanup_free char *dst = cmn_asprintf("%s/%s", copy, names[i]);
    cleanup_free char *buf = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(cmn_file_read(src, 256u << 20, &buf, &len, &err) == 0);
    CU_ASSERT_FATAL(cmn_file_write_atomic(dst, buf, len, 0600, &err) == 0);
  }
  cleanup_free char *before = folder_print(copy);
  clone_vm c;
  clone_init(&c, "clone-c");
  clone_start_check(&c, copy, fx.paused_counter); /* the last standby's counter */
  clone_free(&c);
  cleanup_free char *after = folder_print(copy);
  CU_ASSERT_STRING_EQUAL(before, after);
}

static void test_fork_errors(void)
{
  cmn_error err = {0};
  clone_vm c;
  clone_init(&c, "clone-e");
  cleanup_free char *missing = cmn_asprintf("%s/no-such-save", fx.dir);
  int r = DRV.restore_frozen(fx.state, &c.vm, missing, &err);
  CU_ASSERT(r < 0 && err.code == CMN_DATA_LOSS);
  CU_ASSERT(c.vm.proc.pid == 0);
  CU_ASSERT(!cmn_path_exists(missing));
  cleanup_free char *empty = cmn_asprintf("%s/empty-save", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(empty, 0700, &err) == 0);
  cmn_err_clear(&err);
  r = DRV.restore_frozen(fx.state, &c.vm, empty, &err);
  CU_ASSERT(r < 0 && err.code == CMN_DATA_LOSS);
  CU_ASSERT(c.vm.proc.pid == 0);
  cleanup_free char *empty_after = folder_print(empty);
  CU_ASSERT_STRING_EQUAL(empty_after, "");
  /* save into a folder that does not exist: refused, nothing created. */
  pause_and_record();
  cmn_err_clear(&err);
  r = DRV.save(fx.state, &fx.vm, missing, &err);
  CU_ASSERT(r < 0 && err.code != CMN_OK);
  CU_ASSERT(!cmn_path_exists(missing));
  CU_ASSERT(DRV.resume(fx.state, &fx.vm, &err) == 0);
  /* A fault between restore and resume: the VMM is reported for reaping, the
   * folder is unchanged, the corrected view is gone, a retry works. */
  cleanup_free char *before = folder_print(fx_saved);
  setenv("EMBER_FAULT", "ch.restore_frozen.before_resume", 1);
  cmn_err_clear(&err);
  r = DRV.restore_frozen(fx.state, &c.vm, fx_saved, &err);
  unsetenv("EMBER_FAULT");
  CU_ASSERT(r < 0 && strstr(err.msg, "ch.restore_frozen.before_resume") != NULL);
  CU_ASSERT(c.vm.proc.pid > 0);
  cleanup_free char *staging = cmn_asprintf("%s/ch-restore", c.dir);
  CU_ASSERT(!cmn_path_exists(staging));
  clone_kill(&c);
  clone_start_check(&c, fx_saved, fx_saved_count);
  clone_kill(&c);
  cleanup_free char *after = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, after);
  /* A clone whose devices differ from the snapshot's: refused before any VMM
   * is spawned. */
  if (!fx.real) {
    c.spec.vsock_cid = fx.spec.vsock_cid != 0 ? 0 : 3;
    cmn_err_clear(&err);
    r = DRV.restore_frozen(fx.state, &c.vm, fx_saved, &err);
    CU_ASSERT(r < 0 && err.code == CMN_FAILED_PRECONDITION);
    CU_ASSERT(c.vm.proc.pid == 0);
  }
  clone_free(&c);
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
  /* With the fake the guest has a vsock device: its socket path is the one
   * host resource a clone must not share with its source. */
  if (!fx.real)
    fx.spec.vsock_cid = 3;
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
  CU_add_test(s, "save, resume", test_save_resume);
  CU_add_test(s, "two clones from one saved folder; standbys still work", test_fork_two_clones);
  CU_add_test(s, "clone from a copy of a standby folder", test_fork_from_standby_copy);
  CU_add_test(s, "fork errors", test_fork_errors);
  CU_add_test(s, "power button ends the VMM", test_powerdown);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  kill_vmm();
  free(fx_saved);
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
