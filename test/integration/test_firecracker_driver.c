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
#include <dirent.h>
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
static int console_scan_of(const char *console, off_t from, long *first, long *last, char *marker,
                           size_t msize)
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (cmn_file_read(console, 64u << 20, &buf, &len, NULL) < 0 || (size_t)from > len)
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

static int console_scan(off_t from, long *first, long *last, char *marker, size_t msize)
{
  return console_scan_of(fx.console, from, first, last, marker, msize);
}

static off_t console_size_of(const char *console)
{
  struct stat st;
  return stat(console, &st) == 0 ? st.st_size : 0;
}

static off_t console_size(void) { return console_size_of(fx.console); }

/* Waits until at least want counter lines appeared after from on the console
 * of vm. */
static int wait_lines_of(vmm_vm *vm, off_t from, int want, long *first, long *last, char *marker,
                         size_t ms)
{
  for (int i = 0; i < 3000; i++) { /* 30 s */
    if (console_scan_of(vm->console_path, from, first, last, marker, ms) >= want)
      return 0;
    if (!cmn_proc_alive(&vm->proc))
      return -1;
    cmn_sleep_ms(10);
  }
  return -1;
}

static int wait_lines(off_t from, int want, long *first, long *last, char *marker, size_t ms)
{
  return wait_lines_of(&fx.vm, from, want, first, last, marker, ms);
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
  CU_ASSERT(caps == (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE | VMM_CAP_FORK));
  CU_ASSERT(vmm_firecracker_driver.save != NULL && vmm_firecracker_driver.restore_frozen != NULL);
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
  vmm_firecracker_driver.release(fx.state, &c->vm);
  vmm_firecracker_driver.cleanup(fx.state, &c->vm);
}

static void clone_free(clone_vm *c)
{
  clone_kill(c);
  free(c->dir);
  free(c->console);
  free(c->vmm_log);
}

/* restore_frozen from snap_dir; the clone continues from counter (the last
 * line printed before the snapshot) with the source's boot marker. */
static void clone_start_check(clone_vm *c, const char *snap_dir, long counter)
{
  cmn_error err = {0};
  int r = vmm_firecracker_driver.restore_frozen(fx.state, &c->vm, snap_dir, &err);
  if (r < 0)
    printf("\nrestore_frozen %s: %s\n", c->vm.id, err.msg);
  CU_ASSERT_FATAL(r == 0);
  CU_ASSERT(c->vm.proc.pid > 0);
  long first = 0, last = 0;
  char marker[64] = "";
  CU_ASSERT_FATAL(wait_lines_of(&c->vm, 0, 2, &first, &last, marker, sizeof marker) == 0);
  if (fx.real) {
    CU_ASSERT(first >= counter);
  } else {
    CU_ASSERT(first == counter + 1);
  }
  CU_ASSERT_STRING_EQUAL(marker, fx.marker);
}

static char *fx_saved;      /* the saved (frozen) folder */
static long fx_saved_count; /* the counter the guest had printed when saved */

/* Restore the source from its base, let it run, pause, save into an empty
 * folder, resume: the source continues, its snapshot-base is untouched, and
 * the following standby (a Diff into the base as the agent asks for) still
 * yields a snapshot that restores exactly: the save reset Firecracker's dirty
 * tracking, so the driver writes that standby in full. The fake refuses to
 * load a memory file whose hash differs from the state's. */
static void test_save_resume_standby(void)
{
  cmn_error err = {0};
  CU_ASSERT_FATAL(cmn_rename_durable(fx.base, fx.latest, &err) == 0);
  restore_and_check(); /* running from snapshot-base */
  long first = 0, last = 0;
  CU_ASSERT_FATAL(wait_lines(console_size(), 4, &first, &last, NULL, 0) == 0); /* dirty pages */
  pause_and_record();
  fx_saved_count = fx.paused_counter;
  cleanup_free char *base_before = folder_print(fx.base);
  fx_saved = cmn_asprintf("%s/saved", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(fx_saved, 0700, &err) == 0);
  int r = vmm_firecracker_driver.save(fx.state, &fx.vm, fx_saved, &err);
  if (r < 0)
    printf("\nsave: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  cleanup_free char *mem = cmn_asprintf("%s/memory", fx_saved);
  cleanup_free char *st = cmn_asprintf("%s/state", fx_saved);
  struct stat sb;
  CU_ASSERT(stat(mem, &sb) == 0 && (uint64_t)sb.st_size == fx.spec.memory_mib << 20);
  CU_ASSERT(cmn_is_regular_file(st));
  expect_state(VMM_STATE_PAUSED); /* the VM stays paused */
  cleanup_free char *base_after = folder_print(fx.base);
  CU_ASSERT_STRING_EQUAL(base_before, base_after); /* own folders untouched */
  cleanup_free char *full_next = cmn_asprintf("%s/firecracker.full-next", fx.dir);
  CU_ASSERT(cmn_path_exists(full_next));

  /* Resumable with the normal resume op; the guest continues. */
  off_t from = console_size();
  r = vmm_firecracker_driver.resume(fx.state, &fx.vm, &err);
  CU_ASSERT_FATAL(r == 0);
  expect_state(VMM_STATE_RUNNING);
  CU_ASSERT_FATAL(wait_lines(from, 3, &first, &last, NULL, 0) == 0);
  if (!fx.real)
    CU_ASSERT(first == fx_saved_count + 1);

  /* The next standby: Diff into the promoted base, kill, restore (hash
   * checked by the fake on load). */
  diff_cycle();
  CU_ASSERT(!cmn_path_exists(full_next)); /* tracking is whole again */
  /* And the one after is a real Diff again, still exact. */
  diff_cycle();
}

/* Two clones from the one saved folder at once; the folder is never written;
 * each clone's next snapshot (Full, as the agent asks) restores. */
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
  CU_ASSERT(cmn_proc_alive(&fx.vm.proc)); /* the source runs on */
  cleanup_free char *during = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, during);

  /* The clone's first standby: Full into an empty folder, then restore. */
  int r = vmm_firecracker_driver.pause(fx.state, &a.vm, &err);
  CU_ASSERT_FATAL(r == 0);
  cmn_sleep_ms(200);
  long first = 0, last = 0;
  CU_ASSERT_FATAL(console_scan_of(a.console, 0, &first, &last, NULL, 0) > 0);
  cleanup_free char *snap = cmn_asprintf("%s/snapshot-latest", a.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(snap, 0700, &err) == 0);
  r = vmm_firecracker_driver.snapshot(fx.state, &a.vm, snap, VMM_SNAP_FULL, &err);
  if (r < 0)
    printf("\nclone snapshot: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  clone_kill(&a);
  off_t from = console_size_of(a.console);
  r = vmm_firecracker_driver.restore(fx.state, &a.vm, snap, &err);
  if (r < 0)
    printf("\nclone restore: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  long f2 = 0, l2 = 0;
  CU_ASSERT_FATAL(wait_lines_of(&a.vm, from, 2, &f2, &l2, NULL, 0) == 0);
  if (!fx.real)
    CU_ASSERT(f2 == last + 1);

  clone_free(&a);
  clone_free(&b);
  cleanup_free char *after = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, after);
}

/* A file-by-file copy of a complete standby folder (snapshot-base, which the
 * source runs from) is a frozen snapshot too. */
static void test_fork_from_standby_copy(void)
{
  cmn_error err = {0};
  cleanup_free char *copy = cmn_asprintf("%s/copied", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(copy, 0700, &err) == 0);
  const char *files[] = {"state", "memory"};
  for (size_t i = 0; i < 2; i++) {
    cleanup_free char *src = cmn_asprintf("%s/%s", fx.base, files[i]);
    cleanup_free char *dst = cmn_asprintf("%s/%s", copy, files[i]);
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
  /* A missing folder: DATA_LOSS, no VMM, nothing created. */
  cleanup_free char *missing = cmn_asprintf("%s/no-such-save", fx.dir);
  int r = vmm_firecracker_driver.restore_frozen(fx.state, &c.vm, missing, &err);
  CU_ASSERT(r < 0 && err.code == CMN_DATA_LOSS);
  CU_ASSERT(c.vm.proc.pid == 0);
  CU_ASSERT(!cmn_path_exists(missing));
  /* An empty (incomplete) folder: the same, and it stays empty. */
  cleanup_free char *empty = cmn_asprintf("%s/empty-save", fx.dir);
  CU_ASSERT_FATAL(cmn_mkdir_p(empty, 0700, &err) == 0);
  cmn_err_clear(&err);
  r = vmm_firecracker_driver.restore_frozen(fx.state, &c.vm, empty, &err);
  CU_ASSERT(r < 0 && err.code == CMN_DATA_LOSS);
  CU_ASSERT(c.vm.proc.pid == 0);
  cleanup_free char *empty_after = folder_print(empty);
  CU_ASSERT_STRING_EQUAL(empty_after, "");
  /* save into a folder that does not exist: refused, nothing created. */
  cmn_err_clear(&err);
  pause_and_record();
  r = vmm_firecracker_driver.save(fx.state, &fx.vm, missing, &err);
  CU_ASSERT(r < 0 && err.code != CMN_OK);
  CU_ASSERT(!cmn_path_exists(missing));
  CU_ASSERT(vmm_firecracker_driver.resume(fx.state, &fx.vm, &err) == 0);
  /* A fault between load and resume: the VMM is reported for reaping, the
   * folder is unchanged and a retry works. */
  cleanup_free char *before = folder_print(fx_saved);
  setenv("EMBER_FAULT", "fc.restore_frozen.before_resume", 1);
  cmn_err_clear(&err);
  r = vmm_firecracker_driver.restore_frozen(fx.state, &c.vm, fx_saved, &err);
  unsetenv("EMBER_FAULT");
  CU_ASSERT(r < 0 && strstr(err.msg, "fc.restore_frozen.before_resume") != NULL);
  CU_ASSERT(c.vm.proc.pid > 0);
  clone_kill(&c);
  clone_start_check(&c, fx_saved, fx_saved_count);
  clone_kill(&c);
  cleanup_free char *after = folder_print(fx_saved);
  CU_ASSERT_STRING_EQUAL(before, after);
  /* Before 1.16 a clone's vsock socket cannot be re-pointed: refused before
   * any VMM is spawned. */
  if (!fx.real && fx.spec.vsock_cid == 0) {
    c.spec.vsock_cid = 3;
    cmn_err_clear(&err);
    r = vmm_firecracker_driver.restore_frozen(fx.state, &c.vm, fx_saved, &err);
    CU_ASSERT(r < 0 && err.code == CMN_FAILED_PRECONDITION && strstr(err.msg, "1.16") != NULL);
    CU_ASSERT(c.vm.proc.pid == 0);
  }
  clone_free(&c);
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
  /* From 1.16 the source has a vsock device, so the clones need
   * vsock_override (the source's socket is bound while they load). */
  if (!fx.real && strncmp(fx.version, "1.", 2) == 0 && strtol(fx.version + 2, NULL, 10) >= 16)
    fx.spec.vsock_cid = 3;
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
  CU_add_test(s, "save, resume; the next standby is still exact", test_save_resume_standby);
  CU_add_test(s, "two clones from one saved folder", test_fork_two_clones);
  CU_add_test(s, "clone from a copy of a standby folder", test_fork_from_standby_copy);
  CU_add_test(s, "fork errors", test_fork_errors);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  kill_vmm();
  free(fx_saved);
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
