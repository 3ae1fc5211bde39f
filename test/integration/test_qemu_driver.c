/* test_qemu_driver.c: the qemu driver against a real QEMU (TCG unless
 * EMBER_QEMU_ACCEL says otherwise) and the Linux test guest.
 *
 * The driver's ops are called directly, with the folder moves the agent's
 * snapshot manager makes around them (snapshot-base -> snapshot-latest before
 * a diff standby, snapshot-latest -> snapshot-base after a restore), so that
 * what is tested is exactly the driver contract of drivers/hypervisor.h.
 *
 * Needs EMBER_TEST_GUEST_DIR with vmlinux and initramfs.cpio.gz (built by
 * test/guests/linux/build.sh); without it, or without QEMU, prints SKIP and
 * exits 77 (ctest's SKIP_RETURN_CODE). Prints MEASURE lines (boot, standby, save, restore and
 * fork times, state file sizes); nothing asserts on wall-clock time.
 *
 * The fork tests (save, restore_frozen) start clones from one saved folder
 * at once, in threads, as concurrent ForkInstance calls would. The vmgenid
 * test runs the q35 machine. EMBER_TEST_ONLY=<text> runs only the tests
 * whose name contains text (e.g. "fork"). */
#include "drivers/qemu/internal.h"
#include "drivers/registry.h"

#include "common/cleanup.h"
#include "common/clone.h"
#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MEM_MIB 256
#define READY_TIMEOUT_MS 120000
#define SHELL_TIMEOUT_MS 60000

static const vmm_driver *drv = &vmm_qemu_driver;
static char *g_guest_dir;
static char *g_root;
static int g_seq;
static char *g_cmdline;
/* VMs of the running test, so that a fatal assertion leaves no QEMU behind. */
#define MAX_LIVE 8
static struct tvm *g_live[MAX_LIVE];

/* ---- helpers: files --------------------------------------------------------------- */

static off_t file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

/* FNV-1a over 64-bit words; enough to see whether a file changed. */
static uint64_t file_hash(const char *path)
{
  cleanup_close int fd = cmn_open(path, O_RDONLY, 0);
  if (fd < 0)
    return 0;
  uint64_t h = 1469598103934665603ull;
  static uint64_t buf[1 << 16];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    size_t words = (size_t)n / 8;
    for (size_t i = 0; i < words; i++)
      h = (h ^ buf[i]) * 1099511628211ull;
    for (ssize_t i = (ssize_t)words * 8; i < n; i++)
      h = (h ^ ((unsigned char *)buf)[i]) * 1099511628211ull;
  }
  return h;
}

static char *path2(const char *a, const char *b) { return cmn_asprintf("%s/%s", a, b); }

/* ---- helpers: guest ------------------------------------------------------------ */

/* Waits for text to appear in the console file at or after offset. */
static bool console_wait(const char *path, const char *text, off_t offset, int timeout_ms)
{
  int64_t deadline = cmn_now_us() + (int64_t)timeout_ms * 1000;
  while (cmn_now_us() < deadline) {
    cleanup_free char *buf = NULL;
    size_t len = 0;
    if (cmn_file_read(path, 64u << 20, &buf, &len, NULL) == 0 && (off_t)len > offset &&
        strstr(buf + offset, text) != NULL)
      return true;
    cmn_sleep_ms(20);
  }
  return false;
}

static int shell_connect(const char *path, int64_t deadline)
{
  while (cmn_now_us() < deadline) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
      return fd;
    close(fd);
    cmn_sleep_ms(50);
  }
  return -1;
}

/* Reads into *buf until marker appears; returns its offset or -1 on timeout. */
static ssize_t shell_read_until(int fd, char **buf, size_t *len, const char *marker,
                                int64_t deadline)
{
  for (;;) {
    if (*buf != NULL) {
      char *m = strstr(*buf, marker);
      if (m != NULL)
        return m - *buf;
    }
    int left = (int)((deadline - cmn_now_us()) / 1000);
    if (left <= 0)
      return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, left) <= 0)
      return -1;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0)
      return -1;
    *buf = cmn_realloc(*buf, *len + (size_t)n + 1);
    for (ssize_t i = 0; i < n; i++) /* keep it a C string */
      (*buf)[(*len)++] = chunk[i] ? chunk[i] : ' ';
    (*buf)[*len] = '\0';
  }
}

/* Runs cmd in the guest's control shell (ttyS1 via serial1.sock) and returns
 * its output, or NULL on timeout. Synchronises first with a marker echo, as
 * test/guests/guest_shell.py does. */
static char *shell_run(const char *sock, const char *cmd)
{
  int64_t deadline = cmn_now_us() + (int64_t)SHELL_TIMEOUT_MS * 1000;
  while (cmn_now_us() < deadline) {
    cleanup_close int fd = shell_connect(sock, deadline);
    if (fd < 0)
      return NULL;
    int id = ++g_seq;
    cleanup_free char *sync = cmn_asprintf("\x15"
                                           "echo __SYNC_%d_%d__\n",
                                           (int)getpid(), id);
    cleanup_free char *sync_mark = cmn_asprintf("__SYNC_%d_%d__\n", (int)getpid(), id);
    if (write(fd, sync, strlen(sync)) < 0)
      continue;
    cleanup_free char *buf = NULL;
    size_t len = 0;
    int64_t sync_deadline = cmn_now_us() + 3000000;
    if (shell_read_until(fd, &buf, &len, sync_mark,
                         sync_deadline < deadline ? sync_deadline : deadline) < 0)
      continue; /* shell (re)spawning: try again */
    free(buf);
    buf = NULL;
    len = 0;
    cleanup_free char *end_mark = cmn_asprintf("__END_%d_%d__", (int)getpid(), id);
    cleanup_free char *line = cmn_asprintf("%s\necho %s $?\n", cmd, end_mark);
    if (write(fd, line, strlen(line)) < 0)
      return NULL;
    ssize_t at = shell_read_until(fd, &buf, &len, end_mark, deadline);
    if (at < 0)
      return NULL;
    buf[at] = '\0';
    return cmn_strdup(buf);
  }
  return NULL;
}

/* ---- helpers: a VM as the agent holds it --------------------------------------- */

typedef struct tvm {
  char *dir;
  char *console;
  char *log;
  char *serial1;
  char *snaps; /* <dir>/snapshots */
  char *base;  /* <snaps>/snapshot-base */
  char *latest;
  vmm_spec spec;
  vmm_vm vm;
} tvm;

static tvm *tvm_new(const char *name)
{
  tvm *t = cmn_calloc(1, sizeof *t);
  t->dir = path2(g_root, name);
  CU_ASSERT_FATAL(cmn_mkdir_p(t->dir, 0755, NULL) == 0);
  t->console = path2(t->dir, "console.log");
  t->log = path2(t->dir, "vmm.log");
  t->serial1 = path2(t->dir, "serial1.sock");
  t->snaps = path2(t->dir, "snapshots");
  t->base = path2(t->snaps, "snapshot-base");
  t->latest = path2(t->snaps, "snapshot-latest");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->snaps, 0755, NULL) == 0);
  t->spec.vcpus = 1;
  t->spec.memory_mib = MEM_MIB;
  t->spec.kernel = path2(g_guest_dir, "vmlinux");
  t->spec.initrd = path2(g_guest_dir, "initramfs.cpio.gz");
  t->spec.cmdline = cmn_strdup(g_cmdline);
  t->vm.id = name;
  t->vm.dir = t->dir;
  t->vm.console_path = t->console;
  t->vm.vmm_log_path = t->log;
  t->vm.spec = &t->spec;
  for (int i = 0; i < MAX_LIVE; i++) {
    if (g_live[i] == NULL) {
      g_live[i] = t;
      break;
    }
  }
  return t;
}

/* Ends the VMM the hard way, as the agent does after a failed restore. */
static void tvm_kill(void *state, tvm *t)
{
  drv->release(state, &t->vm);
  cmn_proc_kill_reap(&t->vm.proc);
  t->vm.proc.pid = 0;
  drv->cleanup(state, &t->vm);
}

static void tvm_free(void *state, tvm *t)
{
  if (t == NULL)
    return;
  if (t->vm.proc.pid > 0)
    tvm_kill(state, t);
  for (int i = 0; i < MAX_LIVE; i++) {
    if (g_live[i] == t)
      g_live[i] = NULL;
  }
  vmm_spec_free(&t->spec);
  free(t->dir);
  free(t->console);
  free(t->log);
  free(t->serial1);
  free(t->snaps);
  free(t->base);
  free(t->latest);
  free(t);
}

static void *driver_init(const char *config_json)
{
  cJSON *cfg = config_json ? cJSON_Parse(config_json) : NULL;
  void *state = NULL;
  cmn_error err = {0};
  int rc = drv->init(cfg, &state, &err);
  cJSON_Delete(cfg);
  if (rc < 0)
    fprintf(stderr, "init: %s\n", err.msg);
  CU_ASSERT_FATAL(rc == 0);
  cleanup_free char *d = drv->describe(state);
  printf("\n  driver: %s\n", d);
  return state;
}

static void log_dump(const tvm *t)
{
  cleanup_free char *buf = NULL;
  if (cmn_file_read(t->log, 1u << 20, &buf, NULL, NULL) == 0 && buf[0])
    fprintf(stderr, "---- %s ----\n%s\n", t->log, buf);
}

/* Starts the VM and waits for the guest's READY line; returns ms to ready. */
static int64_t tvm_boot(void *state, tvm *t, const char *mem_dir)
{
  off_t off = file_size(t->console);
  if (off < 0)
    off = 0;
  cmn_error err = {0};
  int64_t t0 = cmn_now_us();
  int rc = drv->start(state, &t->vm, mem_dir, &err);
  if (rc < 0) {
    fprintf(stderr, "start: %s\n", err.msg);
    log_dump(t);
  }
  CU_ASSERT_FATAL(rc == 0);
  bool ready = console_wait(t->console, "EMBER-GUEST-READY", off, READY_TIMEOUT_MS);
  if (!ready) {
    log_dump(t);
    cleanup_free char *tail = NULL;
    if (cmn_file_read(t->console, 1u << 20, &tail, NULL, NULL) == 0)
      fprintf(stderr, "---- console ----\n%s\n", tail);
  }
  CU_ASSERT_FATAL(ready);
  return (cmn_now_us() - t0) / 1000;
}

static void guest_check(tvm *t, const char *cmd, const char *want)
{
  cleanup_free char *out = shell_run(t->serial1, cmd);
  if (out == NULL || strcmp(out, want) != 0)
    fprintf(stderr, "guest `%s`: got [%s], want [%s]\n", cmd, out ? out : "(timeout)", want);
  CU_ASSERT(out != NULL && strcmp(out, want) == 0);
}

static void expect_state(void *state, tvm *t, vmm_run_state want)
{
  vmm_run_state rs = 0;
  cmn_error err = {0};
  int rc = drv->query(state, &t->vm, &rs, &err);
  if (rc < 0)
    fprintf(stderr, "query: %s\n", err.msg);
  CU_ASSERT(rc == 0 && rs == want);
}

/* Pause + snapshot + fsync, as a standby does; prints the timings. */
static void standby(void *state, tvm *t, const char *dir, vmm_snap_kind kind, const char *label)
{
  cmn_error err = {0};
  int64_t t0 = cmn_now_us();
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  int64_t t1 = cmn_now_us();
  int rc = drv->snapshot(state, &t->vm, dir, kind, &err);
  if (rc < 0) {
    fprintf(stderr, "snapshot: %s\n", err.msg);
    log_dump(t);
  }
  CU_ASSERT_FATAL(rc == 0);
  int64_t t2 = cmn_now_us();
  CU_ASSERT(cmn_fsync_tree(dir, &err) == 0);
  int64_t t3 = cmn_now_us();
  cleanup_free char *st = path2(dir, "state");
  printf("  MEASURE %s standby: pause %lld ms, snapshot %lld ms, fsync %lld ms, total %lld ms;"
         " state %lld bytes\n",
         label, (long long)(t1 - t0) / 1000, (long long)(t2 - t1) / 1000,
         (long long)(t3 - t2) / 1000, (long long)(t3 - t0) / 1000, (long long)file_size(st));
  expect_state(state, t, VMM_STATE_PAUSED);
}

/* Restore and wait until the guest's shell answers; prints the timings. */
static void restore(void *state, tvm *t, const char *dir, const char *label)
{
  cmn_error err = {0};
  int64_t t0 = cmn_now_us();
  int rc = drv->restore(state, &t->vm, dir, &err);
  if (rc < 0) {
    fprintf(stderr, "restore: %s\n", err.msg);
    log_dump(t);
  }
  CU_ASSERT_FATAL(rc == 0);
  int64_t t1 = cmn_now_us();
  cleanup_free char *out = shell_run(t->serial1, "echo alive");
  int64_t t2 = cmn_now_us();
  CU_ASSERT(out != NULL && strcmp(out, "alive\n") == 0);
  printf("  MEASURE %s restore: restore() %lld ms, to shell answer %lld ms\n", label,
         (long long)(t1 - t0) / 1000, (long long)(t2 - t0) / 1000);
  expect_state(state, t, VMM_STATE_RUNNING);
}

/* ---- tests ---------------------------------------------------------------------- */

/* Base reuse: boot on a RAM file in snapshot-base, two diff standby/restore
 * cycles, with the agent's folder moves in between. */
static void test_diff_cycles(void)
{
  void *state = driver_init(NULL);
  CU_ASSERT(drv->caps & VMM_CAP_BASE_REUSE);
  CU_ASSERT(vmm_qemu_driver.effective_caps(state) & VMM_CAP_LIVE_RAM_FILE);
  tvm *t = tvm_new("diff");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  /* Two raw disks: one read-only with a label, one writable. */
  cleanup_free char *ro_img = path2(t->dir, "ro.img");
  cleanup_free char *rw_img = path2(t->dir, "rw,disk.img"); /* a comma to escape */
  {
    char img[65536] = "EMBERDISK";
    CU_ASSERT_FATAL(cmn_file_write_atomic(ro_img, img, sizeof img, 0644, NULL) == 0);
    memset(img, 0, sizeof img);
    CU_ASSERT_FATAL(cmn_file_write_atomic(rw_img, img, sizeof img, 0644, NULL) == 0);
  }
  t->spec.disks = cmn_calloc(2, sizeof(vmm_disk));
  t->spec.disks[0].path = cmn_strdup(ro_img);
  t->spec.disks[0].read_only = true;
  t->spec.disks[1].path = cmn_strdup(rw_img);
  t->spec.n_disks = 2;
  int64_t boot = tvm_boot(state, t, t->base);
  printf("  MEASURE boot to EMBER-GUEST-READY: %lld ms (%d MiB)\n", (long long)boot, MEM_MIB);
  cleanup_free char *mem = path2(t->base, "memory");
  CU_ASSERT(file_size(mem) == (off_t)MEM_MIB << 20);

  /* Adopt after a release, as after an agent restart. */
  drv->release(state, &t->vm);
  vmm_run_state rs = 0;
  cmn_error err = {0};
  CU_ASSERT(drv->adopt(state, &t->vm, &rs, &err) == 0 && rs == VMM_STATE_RUNNING);

  guest_check(t, "echo one > /tmp/a; cat /tmp/a", "one\n");
  guest_check(t, "cat /sys/block/vd*/ro | sort", "0\n1\n");
  guest_check(t,
              "for d in /sys/block/vd*; do [ \"$(cat $d/ro)\" = 1 ] && "
              "dd if=/dev/${d##*/} bs=9 count=1 2>/dev/null; done; echo",
              "EMBERDISK\n");
  guest_check(t,
              "for d in /sys/block/vd*; do [ \"$(cat $d/ro)\" = 0 ] && "
              "echo hello-disk | dd of=/dev/${d##*/} conv=fsync 2>/dev/null; done; echo ok",
              "ok\n");
  {
    cleanup_free char *disk = NULL;
    CU_ASSERT(cmn_file_read(rw_img, 1u << 20, &disk, NULL, NULL) == 0 &&
              strncmp(disk, "hello-disk\n", 11) == 0);
  }
  /* Dirty a good part of RAM so the diff has something to flush. */
  guest_check(t, "dd if=/dev/urandom of=/tmp/big bs=1M count=32 2>/dev/null; echo ok", "ok\n");

  /* Standby 1: promote the base, diff into it. */
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "diff#1");
  tvm_kill(state, t);

  /* Restore 1. */
  restore(state, t, t->latest, "diff#1");
  CU_ASSERT_FATAL(rename(t->latest, t->base) == 0);
  guest_check(t, "cat /tmp/a", "one\n");
  guest_check(t, "echo two > /tmp/b; cat /tmp/a /tmp/b", "one\ntwo\n");

  /* Standby 2, ended gracefully this time (paused VM: quit at once). */
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "diff#2");
  int64_t s0 = cmn_now_us();
  CU_ASSERT(drv->shutdown(state, &t->vm, 5000, &err) == 0);
  printf("  MEASURE shutdown of the paused VMM: %lld ms\n", (long long)(cmn_now_us() - s0) / 1000);
  CU_ASSERT(cmn_proc_wait(&t->vm.proc, 5000, NULL) == 0);
  t->vm.proc.pid = 0;
  drv->release(state, &t->vm);
  drv->cleanup(state, &t->vm);
  cleanup_free char *qmp = path2(t->dir, "qmp.sock");
  CU_ASSERT(!cmn_path_exists(qmp));

  restore(state, t, t->latest, "diff#2");
  guest_check(t, "cat /tmp/a /tmp/b", "one\ntwo\n");
  guest_check(t,
              "for d in /sys/block/vd*; do [ \"$(cat $d/ro)\" = 0 ] && "
              "dd if=/dev/${d##*/} bs=11 count=1 iflag=direct 2>/dev/null; done",
              "hello-disk\n");

  /* The folder a guest now runs on cannot be restored a second time. */
  tvm *other = tvm_new("diff-again");
  cmn_error rerr = {0};
  CU_ASSERT(drv->restore(state, &other->vm, t->latest, &rerr) < 0);
  CU_ASSERT(rerr.code == CMN_FAILED_PRECONDITION);
  printf("  second restore refused: %s\n", rerr.msg);
  CU_ASSERT(other->vm.proc.pid == 0);
  tvm_free(state, other);

  tvm_free(state, t);
  drv->fini(state);
}

/* Base reuse with a discarded base: a FULL snapshot into an empty folder,
 * restore onto a fresh RAM file, then a diff of that. */
static void test_full_then_diff(void)
{
  void *state = driver_init(NULL);
  tvm *t = tvm_new("full");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  tvm_boot(state, t, t->base);
  guest_check(t, "echo full > /tmp/f; cat /tmp/f", "full\n");
  cmn_error err = {0};
  /* The agent discarded the base (e.g. a failed standby): the RAM file is
   * gone from disk while QEMU still maps it. */
  CU_ASSERT_FATAL(cmn_rm_rf(t->base, &err) == 0);
  CU_ASSERT_FATAL(cmn_mkdir_p(t->latest, 0755, NULL) == 0);
  standby(state, t, t->latest, VMM_SNAP_FULL, "full");
  cleanup_free char *mem = path2(t->latest, "memory");
  CU_ASSERT(!cmn_path_exists(mem));
  tvm_kill(state, t);

  /* A stale RAM file from an earlier failed restore is replaced. */
  {
    cleanup_close int fd = cmn_open(mem, O_WRONLY | O_CREAT, 0600);
    CU_ASSERT(fd >= 0 && write(fd, "stale", 5) == 5);
  }
  restore(state, t, t->latest, "full");
  CU_ASSERT(file_size(mem) == (off_t)MEM_MIB << 20);
  CU_ASSERT_FATAL(rename(t->latest, t->base) == 0);
  guest_check(t, "cat /tmp/f", "full\n");

  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "diff-after-full");
  tvm_kill(state, t);
  restore(state, t, t->latest, "diff-after-full");
  guest_check(t, "cat /tmp/f", "full\n");
  tvm_free(state, t);
  drv->fini(state);
}

/* base_reuse=false: anonymous RAM, full streams only; resume after a
 * snapshot; graceful shutdown of a running guest falls back to quit. */
static void test_no_base_reuse(void)
{
  void *state = driver_init("{\"base_reuse\": false}");
  CU_ASSERT(!(vmm_qemu_driver.effective_caps(state) & VMM_CAP_BASE_REUSE));
  CU_ASSERT(vmm_qemu_driver.effective_caps(state) & VMM_CAP_SNAPSHOT);
  tvm *t = tvm_new("plain");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->latest, 0755, NULL) == 0);
  tvm_boot(state, t, NULL);
  guest_check(t, "echo plain > /tmp/p; cat /tmp/p", "plain\n");
  standby(state, t, t->latest, VMM_SNAP_FULL, "plain-full");
  /* The VM can go on after a snapshot (a standby that failed later). */
  cmn_error err = {0};
  CU_ASSERT(drv->resume(state, &t->vm, &err) == 0);
  expect_state(state, t, VMM_STATE_RUNNING);
  guest_check(t, "echo more >> /tmp/p; cat /tmp/p", "plain\nmore\n");
  /* A second migration out of the same QEMU, over the first snapshot. */
  standby(state, t, t->latest, VMM_SNAP_FULL, "plain-full-2");
  tvm_kill(state, t);

  restore(state, t, t->latest, "plain-full");
  guest_check(t, "cat /tmp/p", "plain\nmore\n");
  /* Anonymous RAM: the snapshot is untouched, so restoring again is allowed. */
  cleanup_free char *mem = path2(t->latest, "memory");
  CU_ASSERT(!cmn_path_exists(mem));

  int64_t s0 = cmn_now_us();
  CU_ASSERT(drv->shutdown(state, &t->vm, 1500, &err) == 0);
  printf("  MEASURE shutdown of a running VMM (powerdown timeout 1500 ms): %lld ms\n",
         (long long)(cmn_now_us() - s0) / 1000);
  CU_ASSERT(cmn_proc_wait(&t->vm.proc, 5000, NULL) == 0);
  t->vm.proc.pid = 0;
  drv->release(state, &t->vm);
  drv->cleanup(state, &t->vm);

  restore(state, t, t->latest, "plain-full-again");
  guest_check(t, "cat /tmp/p", "plain\nmore\n");
  tvm_free(state, t);
  drv->fini(state);
}

/* Failed restores (corrupt stream, injected fault before cont) report QEMU's
 * reason and leave the snapshot exactly as it was; a retry then works. */
static void test_restore_failures(void)
{
  void *state = driver_init(NULL);
  tvm *t = tvm_new("fail");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  tvm_boot(state, t, t->base);
  guest_check(t, "echo keep > /tmp/k; cat /tmp/k", "keep\n");
  cmn_error err = {0};
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "fail-diff");
  tvm_kill(state, t);

  cleanup_free char *st = path2(t->latest, "state");
  cleanup_free char *mem = path2(t->latest, "memory");
  cleanup_free char *meta = path2(t->latest, "qemu.json");
  cleanup_free char *good = path2(t->dir, "state.good");
  cleanup_free char *good_meta = NULL;
  CU_ASSERT_FATAL(cmn_file_read(meta, 65536, &good_meta, NULL, NULL) == 0);
  {
    cleanup_free char *data = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(cmn_file_read(st, 64u << 20, &data, &len, NULL) == 0);
    CU_ASSERT_FATAL(cmn_file_write_atomic(good, data, len, 0600, NULL) == 0);
    /* A stream cut short, as a torn write would leave it. */
    CU_ASSERT_FATAL(cmn_file_write_atomic(st, data, len / 2, 0600, NULL) == 0);
  }
  uint64_t h_mem = file_hash(mem);
  uint64_t h_st = file_hash(st);

  cmn_error rerr = {0};
  CU_ASSERT(drv->restore(state, &t->vm, t->latest, &rerr) < 0);
  printf("  corrupt state: %s: %s\n", cmn_code_name(rerr.code), rerr.msg);
  CU_ASSERT(strstr(rerr.msg, "QEMU:") != NULL);
  tvm_kill(state, t);
  CU_ASSERT(file_hash(mem) == h_mem);
  CU_ASSERT(file_hash(st) == h_st);
  {
    cleanup_free char *m2 = NULL;
    CU_ASSERT(cmn_file_read(meta, 65536, &m2, NULL, NULL) == 0 && strcmp(m2, good_meta) == 0);
  }

  /* Put the good stream back; fail right before `cont`. */
  CU_ASSERT_FATAL(rename(good, st) == 0);
  h_st = file_hash(st);
  setenv("EMBER_FAULT", "qemu.restore.before_cont", 1);
  cmn_err_clear(&rerr);
  CU_ASSERT(drv->restore(state, &t->vm, t->latest, &rerr) < 0);
  unsetenv("EMBER_FAULT");
  printf("  fault before cont: %s\n", rerr.msg);
  tvm_kill(state, t);
  CU_ASSERT(file_hash(mem) == h_mem);
  CU_ASSERT(file_hash(st) == h_st);

  restore(state, t, t->latest, "retry");
  guest_check(t, "cat /tmp/k", "keep\n");
  cmn_err_clear(&rerr);
  cmn_error serr = {0};
  CU_ASSERT(drv->snapshot(state, &t->vm, t->latest, VMM_SNAP_DIFF, &serr) < 0);
  CU_ASSERT(serr.code == CMN_FAILED_PRECONDITION);
  printf("  snapshot of a running VM: %s\n", serr.msg);
  tvm_free(state, t);
  drv->fini(state);
}

/* ---- fork: saved snapshots and clones ---------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line per file of dir, sorted: name, size, mtime and content hash. Two
 * equal fingerprints mean nothing in the folder was added, removed or
 * written. */
static char *dir_fingerprint(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return cmn_strdup("(no folder)");
  char *names[64];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 64) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      names[n++] = cmn_strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], name_cmp);
  char *out = cmn_strdup("");
  for (size_t i = 0; i < n; i++) {
    cleanup_free char *p = path2(dir, names[i]);
    struct stat st = {0};
    stat(p, &st);
    char *next = cmn_asprintf("%s%s %lld %lld.%09ld %016llx\n", out, names[i],
                              (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                              st.st_mtim.tv_nsec, (unsigned long long)file_hash(p));
    free(out);
    out = next;
    free(names[i]);
  }
  return out;
}

/* A string member of a small JSON file ("" when absent or unreadable). */
static char *json_string(const char *path, const char *key)
{
  cleanup_free char *text = NULL;
  if (cmn_file_read(path, 65536, &text, NULL, NULL) < 0)
    return cmn_strdup("");
  cJSON *o = cJSON_Parse(text);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  char *out = cmn_strdup(cJSON_IsString(v) ? v->valuestring : "");
  cJSON_Delete(o);
  return out;
}

/* The GUID QEMU reports for the VM's vmgenid device, or "" without one. */
static char *vm_genid(void *state, tvm *t)
{
  cJSON *ret = NULL;
  cmn_error err = {0};
  if (qemu_vm_cmd(state, &t->vm, "query-vm-generation-id", NULL, &ret, &err) < 0)
    return cmn_strdup("");
  const cJSON *g = cJSON_GetObjectItemCaseSensitive(ret, "guid");
  char *out = cmn_strdup(cJSON_IsString(g) ? g->valuestring : "");
  cJSON_Delete(ret);
  return out;
}

/* Pause + save into a new folder, as a SaveSnapshot does; prints timings. */
static void save_to(void *state, tvm *t, const char *dir, const char *label)
{
  cmn_error err = {0};
  CU_ASSERT_FATAL(cmn_mkdir_p(dir, 0755, NULL) == 0);
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  int64_t t0 = cmn_now_us();
  int rc = drv->save(state, &t->vm, dir, &err);
  if (rc < 0) {
    fprintf(stderr, "save: %s\n", err.msg);
    log_dump(t);
  }
  CU_ASSERT_FATAL(rc == 0);
  int64_t t1 = cmn_now_us();
  CU_ASSERT(cmn_fsync_tree(dir, &err) == 0);
  cleanup_free char *st = path2(dir, "state");
  cleanup_free char *mem = path2(dir, "memory");
  printf("  MEASURE %s save (%d MiB): save() %lld ms, fsync %lld ms; state %lld bytes, "
         "memory %lld bytes\n",
         label, (int)t->spec.memory_mib, (long long)(t1 - t0) / 1000,
         (long long)(cmn_now_us() - t1) / 1000, (long long)file_size(st),
         (long long)file_size(mem));
  expect_state(state, t, VMM_STATE_PAUSED);
}

typedef struct fork_job {
  void *state;
  tvm *t;
  const char *dir;
  int rc;
  int64_t ms;
  cmn_error err;
} fork_job;

static void *fork_thread(void *arg)
{
  fork_job *j = arg;
  int64_t t0 = cmn_now_us();
  j->rc = drv->restore_frozen(j->state, &j->t->vm, j->dir, &j->err);
  j->ms = (cmn_now_us() - t0) / 1000;
  return NULL;
}

/* restore_frozen of n clones from one folder, all at once. */
static void fork_clones(void *state, tvm **c, size_t n, const char *dir, const char *label)
{
  fork_job jobs[4] = {0};
  pthread_t th[4];
  for (size_t i = 0; i < n; i++) {
    jobs[i] = (fork_job){.state = state, .t = c[i], .dir = dir};
    CU_ASSERT_FATAL(pthread_create(&th[i], NULL, fork_thread, &jobs[i]) == 0);
  }
  for (size_t i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  for (size_t i = 0; i < n; i++) {
    if (jobs[i].rc < 0) {
      fprintf(stderr, "restore_frozen %s: %s\n", c[i]->vm.id, jobs[i].err.msg);
      log_dump(c[i]);
    }
    CU_ASSERT_FATAL(jobs[i].rc == 0);
    int64_t t0 = cmn_now_us();
    cleanup_free char *out = shell_run(c[i]->serial1, "echo alive");
    CU_ASSERT(out != NULL && strcmp(out, "alive\n") == 0);
    printf("  MEASURE %s clone %zu: restore_frozen() %lld ms (%zu at once), then shell answer "
           "%lld ms\n",
           label, i, (long long)jobs[i].ms, n, (long long)(cmn_now_us() - t0) / 1000);
    expect_state(state, c[i], VMM_STATE_RUNNING);
  }
}

/* Base reuse (shared RAM file): save of a paused VM, which then goes on and
 * still does diff standbys; two clones at once from the saved folder, which
 * stays byte for byte as it was; a clone's own snapshots are full streams;
 * a clone saved in turn (anonymous RAM: a full-stream save) forks again; a
 * copy of a standby folder forks too. */
static void test_fork(void)
{
  void *state = driver_init(NULL);
  CU_ASSERT(drv->caps & VMM_CAP_FORK);
  CU_ASSERT(vmm_qemu_driver.effective_caps(state) & VMM_CAP_FORK);
  cmn_error err = {0};
  tvm *t = tvm_new("fork-src");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  tvm_boot(state, t, t->base);
  guest_check(t, "echo before-save > /tmp/f; cat /tmp/f", "before-save\n");
  guest_check(t,
              "dd if=/dev/urandom of=/tmp/big bs=1M count=32 2>/dev/null; md5sum < /tmp/big "
              "> /tmp/big.md5; echo ok",
              "ok\n");
  cleanup_free char *big_md5 = shell_run(t->serial1, "cat /tmp/big.md5");
  CU_ASSERT_FATAL(big_md5 != NULL && strlen(big_md5) > 32);
  /* microvm: no vmgenid device (the guest could not see it). */
  cleanup_free char *src_genid = vm_genid(state, t);
  CU_ASSERT(src_genid[0] == '\0');

  /* The source's own files are untouched by a save. */
  cleanup_free char *src_vm_meta = path2(t->dir, "qemu-vm.json");
  cleanup_free char *base_fp0 = NULL;
  cleanup_free char *vm_meta0 = NULL;
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  base_fp0 = dir_fingerprint(t->base);
  CU_ASSERT(cmn_file_read(src_vm_meta, 65536, &vm_meta0, NULL, NULL) == 0);

  cleanup_free char *saved = path2(g_root, "saved");
  save_to(state, t, saved, "fork");
  cleanup_free char *saved_meta = path2(saved, "qemu.json");
  cleanup_free char *ram_kind = json_string(saved_meta, "ram");
  CU_ASSERT(strcmp(ram_kind, "shared") == 0);
  {
    cleanup_free char *base_fp1 = dir_fingerprint(t->base);
    cleanup_free char *vm_meta1 = NULL;
    CU_ASSERT(strcmp(base_fp0, base_fp1) == 0);
    CU_ASSERT(cmn_file_read(src_vm_meta, 65536, &vm_meta1, NULL, NULL) == 0 &&
              strcmp(vm_meta0, vm_meta1) == 0);
  }
  /* Saving again into a folder that is not empty is refused. */
  cmn_error serr = {0};
  CU_ASSERT(drv->save(state, &t->vm, saved, &serr) < 0 && serr.code == CMN_FAILED_PRECONDITION);
  /* The source goes on (cont from postmigrate). */
  CU_ASSERT_FATAL(drv->resume(state, &t->vm, &err) == 0);
  expect_state(state, t, VMM_STATE_RUNNING);
  guest_check(t, "echo after-save > /tmp/g; cat /tmp/f /tmp/g", "before-save\nafter-save\n");
  cleanup_free char *fp0 = dir_fingerprint(saved);
  printf("  saved folder:\n%s", fp0);

  /* Two clones at once. */
  tvm *c[2] = {tvm_new("fork-c0"), tvm_new("fork-c1")};
  fork_clones(state, c, 2, saved, "fork");
  for (int i = 0; i < 2; i++) {
    guest_check(c[i], "cat /tmp/f; [ -e /tmp/g ] || echo no-g", "before-save\nno-g\n");
    guest_check(c[i], "md5sum < /tmp/big", big_md5);
    cleanup_free char *cmd = cmn_asprintf("echo clone%d > /tmp/c; dd if=/dev/urandom "
                                          "of=/tmp/big2 bs=1M count=16 2>/dev/null; cat /tmp/c",
                                          i);
    cleanup_free char *want = cmn_asprintf("clone%d\n", i);
    guest_check(c[i], cmd, want);
    cleanup_free char *m = path2(c[i]->dir, "qemu-vm.json");
    cleanup_free char *ram = json_string(m, "ram");
    CU_ASSERT(strcmp(ram, "anonymous") == 0);
  }
  guest_check(c[0], "cat /tmp/c", "clone0\n");
  guest_check(t, "cat /tmp/f /tmp/g; [ -e /tmp/c ] || echo no-c",
              "before-save\nafter-save\nno-c\n");
  {
    cleanup_free char *fp1 = dir_fingerprint(saved);
    if (strcmp(fp0, fp1) != 0)
      fprintf(stderr, "saved folder changed:\n%s---\n%s", fp0, fp1);
    CU_ASSERT(strcmp(fp0, fp1) == 0);
  }

  /* The source still does a diff standby and restore. */
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "fork-src-diff");
  {
    cleanup_free char *m = path2(t->latest, "qemu.json");
    cleanup_free char *ram = json_string(m, "ram");
    CU_ASSERT(strcmp(ram, "shared") == 0);
  }
  tvm_kill(state, t);
  /* A file-by-file copy of the complete standby folder forks too. */
  cleanup_free char *copy = path2(g_root, "standby-copy");
  CU_ASSERT_FATAL(cmn_mkdir_p(copy, 0755, NULL) == 0);
  const char *files[] = {"state", "memory", "qemu.json"};
  for (size_t i = 0; i < 3; i++) {
    cleanup_free char *a = path2(t->latest, files[i]);
    cleanup_free char *b = path2(copy, files[i]);
    CU_ASSERT_FATAL(cmn_file_clone(a, b, NULL, NULL, &err) == 0);
  }
  restore(state, t, t->latest, "fork-src-diff");
  CU_ASSERT_FATAL(rename(t->latest, t->base) == 0);
  guest_check(t, "cat /tmp/f /tmp/g", "before-save\nafter-save\n");
  cleanup_free char *copy_fp0 = dir_fingerprint(copy);
  tvm *cc = tvm_new("fork-copy");
  fork_clones(state, &cc, 1, copy, "standby-copy");
  guest_check(cc, "cat /tmp/f /tmp/g", "before-save\nafter-save\n");
  {
    cleanup_free char *copy_fp1 = dir_fingerprint(copy);
    CU_ASSERT(strcmp(copy_fp0, copy_fp1) == 0);
  }
  tvm_free(state, cc);

  /* A clone's own standby is a full stream; it restores. */
  CU_ASSERT_FATAL(cmn_mkdir_p(c[0]->latest, 0755, NULL) == 0);
  standby(state, c[0], c[0]->latest, VMM_SNAP_DIFF, "clone-standby");
  {
    cleanup_free char *m = path2(c[0]->latest, "qemu.json");
    cleanup_free char *ram = json_string(m, "ram");
    CU_ASSERT(strcmp(ram, "stream") == 0);
  }
  tvm_kill(state, c[0]);
  restore(state, c[0], c[0]->latest, "clone-standby");
  guest_check(c[0], "cat /tmp/f /tmp/c", "before-save\nclone0\n");

  /* A clone saved in turn: anonymous RAM, so a full-stream save; it forks. */
  cleanup_free char *saved2 = path2(g_root, "saved2");
  save_to(state, c[1], saved2, "fork-of-clone");
  cleanup_free char *saved2_mem = path2(saved2, "memory");
  CU_ASSERT(!cmn_path_exists(saved2_mem));
  CU_ASSERT_FATAL(drv->resume(state, &c[1]->vm, &err) == 0);
  tvm *c2 = tvm_new("fork-c2");
  fork_clones(state, &c2, 1, saved2, "full-stream");
  guest_check(c2, "cat /tmp/f /tmp/c", "before-save\nclone1\n");
  guest_check(c[1], "echo still > /tmp/c; cat /tmp/c", "still\n");
  tvm_free(state, c2);

  tvm_free(state, c[0]);
  tvm_free(state, c[1]);
  /* Saved snapshots are for restore_frozen only. */
  tvm *r = tvm_new("fork-restore");
  cmn_error rerr = {0};
  CU_ASSERT(drv->restore(state, &r->vm, saved, &rerr) < 0 && rerr.code == CMN_FAILED_PRECONDITION);
  CU_ASSERT(r->vm.proc.pid == 0);
  tvm_free(state, r);
  {
    cleanup_free char *fp2 = dir_fingerprint(saved);
    CU_ASSERT(strcmp(fp0, fp2) == 0);
  }
  tvm_free(state, t);
  drv->fini(state);
}

/* restore_frozen of missing or damaged folders: DATA_LOSS (a stream QEMU
 * cannot load: INTERNAL with QEMU's reason), no VMM left, and nothing
 * created in the folder. A fault after the migration of a save leaves a VM
 * that resumes. */
static void test_fork_failures(void)
{
  void *state = driver_init(NULL);
  cmn_error err = {0};
  tvm *c = tvm_new("forkfail");
  cleanup_free char *missing = path2(g_root, "no-such-folder");
  CU_ASSERT(drv->restore_frozen(state, &c->vm, missing, &err) < 0);
  CU_ASSERT(err.code == CMN_DATA_LOSS);
  printf("  missing folder: %s\n", err.msg);
  CU_ASSERT(c->vm.proc.pid == 0 && !cmn_path_exists(missing));

  tvm *t = tvm_new("forkfail-src");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  tvm_boot(state, t, t->base);
  guest_check(t, "echo x > /tmp/x; cat /tmp/x", "x\n");
  cleanup_free char *faulty = path2(g_root, "faulty");
  CU_ASSERT_FATAL(cmn_mkdir_p(faulty, 0755, NULL) == 0);
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  setenv("EMBER_FAULT", "qemu.save.after_migrate", 1);
  cmn_err_clear(&err);
  CU_ASSERT(drv->save(state, &t->vm, faulty, &err) < 0);
  unsetenv("EMBER_FAULT");
  printf("  fault in save: %s\n", err.msg);
  CU_ASSERT_FATAL(drv->resume(state, &t->vm, &err) == 0);
  guest_check(t, "cat /tmp/x", "x\n");
  cleanup_free char *saved = path2(g_root, "saved-f");
  save_to(state, t, saved, "forkfail");
  tvm_free(state, t);

  /* Damaged copies of the saved folder: each file missing or cut short. */
  struct {
    const char *file;
    bool cut; /* cut to half instead of removed */
    int want;
  } cases[] = {
      {"qemu.json", false, CMN_DATA_LOSS}, {"qemu.json", true, CMN_DATA_LOSS},
      {"state", false, CMN_DATA_LOSS},     {"memory", false, CMN_DATA_LOSS},
      {"memory", true, CMN_DATA_LOSS},     {"state", true, CMN_INTERNAL},
  };
  const char *files[] = {"state", "memory", "qemu.json"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    cleanup_free char *name = cmn_asprintf("damaged%zu", k);
    cleanup_free char *d = path2(g_root, name);
    CU_ASSERT_FATAL(cmn_mkdir_p(d, 0755, NULL) == 0);
    for (size_t i = 0; i < 3; i++) {
      cleanup_free char *a = path2(saved, files[i]);
      cleanup_free char *b = path2(d, files[i]);
      CU_ASSERT_FATAL(cmn_file_clone(a, b, NULL, NULL, &err) == 0);
    }
    cleanup_free char *victim = path2(d, cases[k].file);
    int rc = cases[k].cut ? truncate(victim, file_size(victim) / 2) : unlink(victim);
    CU_ASSERT_FATAL(rc == 0);
    cleanup_free char *fp0 = dir_fingerprint(d);
    cmn_err_clear(&err);
    CU_ASSERT(drv->restore_frozen(state, &c->vm, d, &err) < 0);
    printf("  %s %s: %s: %s\n", cases[k].file, cases[k].cut ? "cut short" : "missing",
           cmn_code_name(err.code), err.msg);
    CU_ASSERT(err.code == cases[k].want);
    tvm_kill(state, c);
    cleanup_free char *fp1 = dir_fingerprint(d);
    CU_ASSERT(strcmp(fp0, fp1) == 0);
  }
  /* The intact folder still forks. */
  fork_clones(state, &c, 1, saved, "after-failures");
  guest_check(c, "cat /tmp/x", "x\n");
  tvm_free(state, c);
  drv->fini(state);
}

/* q35: every cold boot has a vmgenid device; a restore keeps its GUID, a
 * clone gets a new one and the guest's vmgenid driver sees the change. */
static void test_fork_vmgenid(void)
{
  void *state = driver_init("{\"machine\": \"q35\"}");
  cmn_error err = {0};
  tvm *t = tvm_new("genid-src");
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  tvm_boot(state, t, t->base);
  cleanup_free char *g0 = vm_genid(state, t);
  printf("  source vmgenid %s\n", g0);
  CU_ASSERT(strlen(g0) == 36);
  cleanup_free char *vm_meta = path2(t->dir, "qemu-vm.json");
  cleanup_free char *g0_meta = json_string(vm_meta, "vmgenid");
  CU_ASSERT(strcmp(g0, g0_meta) == 0);
  /* The guest found the device; a random read gets its CRNG going, so that
   * a later VM fork is logged by the kernel. */
  guest_check(t, "ls /sys/bus/acpi/drivers/vmgenid | grep -c QEMUVGID", "1\n");
  guest_check(t, "head -c 1 /dev/random > /dev/null; echo ok", "ok\n");
  cleanup_free char *saved = path2(g_root, "saved-genid");
  save_to(state, t, saved, "q35");
  cleanup_free char *saved_meta = path2(saved, "qemu.json");
  cleanup_free char *g_saved = json_string(saved_meta, "vmgenid");
  CU_ASSERT(strcmp(g0, g_saved) == 0);
  CU_ASSERT_FATAL(drv->resume(state, &t->vm, &err) == 0);

  tvm *c = tvm_new("genid-clone");
  fork_clones(state, &c, 1, saved, "q35");
  cleanup_free char *g1 = vm_genid(state, c);
  printf("  clone vmgenid %s\n", g1);
  CU_ASSERT(strlen(g1) == 36 && strcmp(g0, g1) != 0);
  cleanup_free char *c_meta = path2(c->dir, "qemu-vm.json");
  cleanup_free char *g1_meta = json_string(c_meta, "vmgenid");
  CU_ASSERT(strcmp(g1, g1_meta) == 0);
  guest_check(c, "dmesg | grep -c 'virtual machine fork'", "1\n");
  guest_check(t, "dmesg | grep -c 'virtual machine fork'", "0\n");
  tvm_free(state, c);

  /* A standby and restore of the source keeps its generation ID. */
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "q35-diff");
  tvm_kill(state, t);
  restore(state, t, t->latest, "q35-diff");
  cleanup_free char *g2 = vm_genid(state, t);
  CU_ASSERT(strcmp(g0, g2) == 0);
  guest_check(t, "dmesg | grep -c 'virtual machine fork'", "0\n");
  tvm_free(state, t);
  drv->fini(state);
}

/* After each test: a VMM left by a fatal assertion is killed, so it neither
 * outlives the test nor slows the next one down. */
static void kill_leftovers(void)
{
  for (int j = 0; j < MAX_LIVE; j++) {
    if (g_live[j] != NULL && g_live[j]->vm.proc.pid > 0) {
      cmn_proc_kill_reap(&g_live[j]->vm.proc);
      g_live[j]->vm.proc.pid = 0;
    }
    g_live[j] = NULL; /* leaked on purpose: a fatal assertion skipped its free */
  }
}

/* Parses the last complete `tiny counter=<n> marker=<hex>` line at or after
 * offset. Returns false when there is none. */
static bool tiny_last(const char *console, off_t offset, long *counter, char marker[17])
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (cmn_file_read(console, 64u << 20, &buf, &len, NULL) < 0 || (off_t)len <= offset)
    return false;
  bool found = false;
  for (char *p = buf + offset; (p = strstr(p, "tiny counter=")) != NULL; p++) {
    char *nl = strchr(p, '\n');
    if (nl == NULL)
      break;
    long n = strtol(p + 13, NULL, 10);
    char *m = strstr(p, "marker=");
    if (m == NULL || m > nl || nl - (m + 7) != 16)
      continue;
    *counter = n;
    memcpy(marker, m + 7, 16);
    marker[16] = '\0';
    found = true;
  }
  return found;
}

/* KVM (PVM here) with the tiny freestanding guest: boot on a shared RAM
 * file, diff standby, restore; the counter goes on and the marker, taken
 * once at first boot and kept in RAM, is unchanged. */
static void test_kvm_tiny(void)
{
  const char *elf = getenv("EMBER_TEST_TINY_ELF");
  int fd = cmn_open("/dev/kvm", O_RDWR, 0);
  if (elf == NULL || !cmn_is_regular_file(elf) || fd < 0) {
    printf("\n  SKIP: needs /dev/kvm and EMBER_TEST_TINY_ELF (make guest_tiny)\n");
    if (fd >= 0)
      close(fd);
    return;
  }
  close(fd);
  const char *old = getenv("EMBER_QEMU_ACCEL");
  cleanup_free char *saved = old ? cmn_strdup(old) : NULL;
  setenv("EMBER_QEMU_ACCEL", "kvm", 1);
  void *state = driver_init(NULL);
  if (saved != NULL)
    setenv("EMBER_QEMU_ACCEL", saved, 1);
  else
    unsetenv("EMBER_QEMU_ACCEL");
  tvm *t = tvm_new("kvm-tiny");
  free(t->spec.kernel);
  t->spec.kernel = cmn_strdup(elf);
  free(t->spec.initrd);
  t->spec.initrd = NULL;
  free(t->spec.cmdline);
  t->spec.cmdline = NULL;
  t->spec.memory_mib = 32;
  CU_ASSERT_FATAL(cmn_mkdir_p(t->base, 0755, NULL) == 0);
  cmn_error err = {0};
  int64_t t0 = cmn_now_us();
  int rc = drv->start(state, &t->vm, t->base, &err);
  if (rc < 0)
    fprintf(stderr, "start: %s\n", err.msg);
  CU_ASSERT_FATAL(rc == 0);
  CU_ASSERT_FATAL(console_wait(t->console, "tiny counter=3 ", 0, 30000));
  printf("  MEASURE kvm tiny boot to counter=3: %lld ms\n", (long long)(cmn_now_us() - t0) / 1000);
  CU_ASSERT_FATAL(drv->pause(state, &t->vm, &err) == 0);
  long before = 0;
  char marker[17] = "";
  CU_ASSERT_FATAL(tiny_last(t->console, 0, &before, marker));
  off_t off = file_size(t->console);
  CU_ASSERT_FATAL(rename(t->base, t->latest) == 0);
  standby(state, t, t->latest, VMM_SNAP_DIFF, "kvm-tiny-diff");
  tvm_kill(state, t);
  t0 = cmn_now_us();
  rc = drv->restore(state, &t->vm, t->latest, &err);
  if (rc < 0)
    fprintf(stderr, "restore: %s\n", err.msg);
  CU_ASSERT_FATAL(rc == 0);
  CU_ASSERT_FATAL(console_wait(t->console, "tiny counter=", off, 30000));
  printf("  MEASURE kvm tiny restore to next line: %lld ms\n",
         (long long)(cmn_now_us() - t0) / 1000);
  long after = 0;
  char marker2[17] = "";
  /* console_wait saw the start of a line; the guest may not have written its
   * end yet: wait (bounded) for a whole one. */
  bool whole = false;
  for (int i = 0; i < 300 && !(whole = tiny_last(t->console, off, &after, marker2)); i++)
    usleep(100 * 1000);
  CU_ASSERT(whole);
  printf("  counter %ld -> %ld, marker %s -> %s\n", before, after, marker, marker2);
  CU_ASSERT(after == before + 1 || after == before + 2);
  CU_ASSERT(strcmp(marker, marker2) == 0);
  tvm_free(state, t);
  drv->fini(state);
}

int main(void)
{
  const char *gd = getenv("EMBER_TEST_GUEST_DIR");
  cleanup_free char *qemu = cmn_which("qemu-system-x86_64");
  if (gd == NULL || gd[0] == '\0') {
    printf("SKIP: EMBER_TEST_GUEST_DIR is not set (build the guest with "
           "test/guests/linux/build.sh OUTDIR)\n");
    return 77;
  }
  g_guest_dir = cmn_strdup(gd);
  cleanup_free char *k = path2(gd, "vmlinux");
  cleanup_free char *i = path2(gd, "initramfs.cpio.gz");
  if (!cmn_is_regular_file(k) || !cmn_is_regular_file(i)) {
    printf("SKIP: no vmlinux and initramfs.cpio.gz in %s (make guest_linux)\n", gd);
    return 77;
  }
  if (qemu == NULL) {
    printf("SKIP: qemu-system-x86_64 not found\n");
    return 77;
  }
  /* The guest's documented command line (test/guests/linux/README.md): under
   * TCG the guest TSC runs at the host's rate, and telling the kernel so
   * avoids its flaky TSC calibration against the PIT on a loaded host. */
  long khz = 0;
  {
    cleanup_free char *cpuinfo = NULL;
    if (cmn_file_read("/proc/cpuinfo", 4u << 20, &cpuinfo, NULL, NULL) == 0) {
      char *m = strstr(cpuinfo, "cpu MHz");
      if (m != NULL && (m = strchr(m, ':')) != NULL)
        khz = (long)(strtod(m + 1, NULL) * 1000.0);
    }
  }
  g_cmdline = khz > 0 ? cmn_asprintf("console=ttyS0 panic=-1 quiet tsc_early_khz=%ld", khz)
                      : cmn_strdup("console=ttyS0 panic=-1 quiet");
  const char *tmp = getenv("TMPDIR");
  cleanup_free char *tmpl = cmn_asprintf("%s/ember-qemu-test-XXXXXX", tmp ? tmp : "/tmp");
  g_root = mkdtemp(tmpl);
  if (g_root == NULL) {
    perror("mkdtemp");
    return 1;
  }

  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s =
      CU_add_suite_with_setup_and_teardown("qemu_driver", NULL, NULL, NULL, kill_leftovers);
  /* EMBER_TEST_ONLY=<text>: only the tests whose name contains it. */
  const char *only = getenv("EMBER_TEST_ONLY");
  static const struct {
    const char *name;
    CU_TestFunc fn;
  } tests[] = {
      {"diff standby/restore cycles", test_diff_cycles},
      {"full snapshot, then diff", test_full_then_diff},
      {"base_reuse=false", test_no_base_reuse},
      {"restore failures leave the snapshot intact", test_restore_failures},
      {"kvm: tiny guest diff standby/restore", test_kvm_tiny},
      {"fork: save, clones, source goes on", test_fork},
      {"fork: damaged folders, fault in save", test_fork_failures},
      {"fork: vmgenid on q35", test_fork_vmgenid},
  };
  for (size_t n = 0; n < sizeof tests / sizeof tests[0]; n++) {
    if (only == NULL || strstr(tests[n].name, only) != NULL)
      CU_add_test(s, tests[n].name, tests[n].fn);
  }
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failures = CU_get_number_of_failures();
  CU_cleanup_registry();
  free(g_cmdline);
  if (failures == 0 && getenv("EMBER_TEST_KEEP") == NULL)
    cmn_rm_rf(g_root, NULL);
  else
    printf("test files kept in %s\n", g_root);
  free(g_guest_dir);
  return failures == 0 ? 0 : 1;
}
