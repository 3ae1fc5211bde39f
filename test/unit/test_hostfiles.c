/* test_hostfiles.c: CUnit tests of the host file fence (agent/hostfiles.c) and
 * of handing the checked descriptors to a child (common/proc.c pass_fds), on
 * real files, links, FIFOs and device nodes in a temp dir. */
#include "agent/hostfiles.h"
#include "agent/validate.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char tmp_root[64];
static char *data_dir, *files_dir, *kernel, *disk, *victim, *own;

static char *mkfile(const char *dir, const char *name, const char *text)
{
  char *p = cmn_asprintf("%s/%s", dir, name);
  cmn_error err = {0};
  if (cmn_file_write_atomic(p, text, strlen(text), 0644, &err) < 0)
    fprintf(stderr, "write %s: %s\n", p, err.msg);
  return p;
}

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-hostfiles-XXXXXX");
  if (mkdtemp(tmp_root) == NULL)
    return -1;
  data_dir = cmn_asprintf("%s/data", tmp_root);
  files_dir = cmn_asprintf("%s/files", tmp_root);
  cleanup_free char *inst = cmn_asprintf("%s/instances/i-1/snapshots/snapshot-base", data_dir);
  cmn_error err = {0};
  if (cmn_mkdir_p(inst, 0750, &err) < 0 || cmn_mkdir_p(files_dir, 0750, &err) < 0)
    return -1;
  victim = mkfile(inst, "memory", "another guest's RAM");
  kernel = mkfile(files_dir, "vmlinux", "kernel");
  disk = mkfile(files_dir, "disk.img", "disk");
  own = mkfile(tmp_root, "emberd.json", "{}");
  return 0;
}

static int suite_clean(void)
{
  cleanup_free char *cmd = cmn_asprintf("rm -rf '%s'", tmp_root);
  int r = system(cmd);
  free(data_dir);
  free(files_dir);
  free(kernel);
  free(disk);
  free(victim);
  free(own);
  return r == 0 ? 0 : -1;
}

static agent_host_fence *fence(const char *const *roots, size_t n, bool block)
{
  const char *own_files[] = {own};
  agent_host_policy p = {.roots = roots,
                         .n_roots = n,
                         .allow_block_devices = block,
                         .own_files = own_files,
                         .n_own_files = 1};
  cmn_error err = {0};
  agent_host_fence *f = agent_host_fence_new(data_dir, &p, &err);
  if (f == NULL)
    fprintf(stderr, "fence: %s\n", err.msg);
  return f;
}

/* A spec with one kernel and one writable disk. */
static vmm_spec spec_of(const char *k, vmm_disk *d, const char *dpath)
{
  *d = (vmm_disk){.path = (char *)dpath, .read_only = false};
  return (vmm_spec){.vcpus = 1,
                    .memory_mib = 64,
                    .kernel = (char *)k,
                    .disks = d,
                    .n_disks = dpath != NULL ? 1 : 0};
}

/* Expects a refusal with code and every needle in the message. */
static void expect_refused(const agent_host_fence *f, const char *k, const char *dpath,
                           const char *n1, const char *n2)
{
  vmm_disk d;
  vmm_spec s = spec_of(k, &d, dpath);
  cmn_error err = {0};
  int rc = agent_host_files_check(f, &s, CMN_INVALID_ARGUMENT, &err);
  CU_ASSERT_EQUAL(rc, -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  if ((n1 && strstr(err.msg, n1) == NULL) || (n2 && strstr(err.msg, n2) == NULL)) {
    fprintf(stderr, "message '%s' lacks '%s' or '%s'\n", err.msg, n1 ? n1 : "", n2 ? n2 : "");
    CU_FAIL("refusal does not name the field and the rule");
  }
}

static void expect_ok(const agent_host_fence *f, const char *k, const char *dpath)
{
  vmm_disk d;
  vmm_spec s = spec_of(k, &d, dpath);
  cmn_error err = {0};
  int rc = agent_host_files_check(f, &s, CMN_INVALID_ARGUMENT, &err);
  if (rc != 0)
    fprintf(stderr, "unexpected refusal: %s\n", err.msg);
  CU_ASSERT_EQUAL(rc, 0);
}

static void test_open_and_numbers(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  vmm_disk d[2] = {{disk, false, false}, {kernel, true, false}};
  vmm_spec s = {
      .vcpus = 1, .memory_mib = 64, .kernel = kernel, .initrd = kernel, .disks = d, .n_disks = 2};
  agent_host_files h;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_host_files_open(f, &s, CMN_INVALID_ARGUMENT, &h, &err), 0);
  CU_ASSERT_EQUAL(h.n_fds, 4);
  CU_ASSERT_STRING_EQUAL(h.spec.kernel, "/proc/self/fd/64");
  CU_ASSERT_STRING_EQUAL(h.spec.initrd, "/proc/self/fd/65");
  CU_ASSERT_STRING_EQUAL(h.spec.disks[0].path, "/proc/self/fd/66");
  CU_ASSERT_STRING_EQUAL(h.spec.disks[1].path, "/proc/self/fd/67");
  CU_ASSERT_EQUAL(h.fds[3].child_fd, 67);
  /* Access modes: writable disk O_RDWR, the rest O_RDONLY, all close-on-exec. */
  CU_ASSERT_EQUAL(fcntl(h.fds[0].fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  CU_ASSERT_EQUAL(fcntl(h.fds[2].fd, F_GETFL) & O_ACCMODE, O_RDWR);
  CU_ASSERT_EQUAL(fcntl(h.fds[3].fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  for (size_t i = 0; i < h.n_fds; i++)
    CU_ASSERT_TRUE(fcntl(h.fds[i].fd, F_GETFD) & FD_CLOEXEC);
  /* The caller's spec keeps the user's paths. */
  CU_ASSERT_STRING_EQUAL(s.disks[0].path, disk);
  agent_host_files_close(&h);
  CU_ASSERT_EQUAL(h.n_fds, 0);
  /* What the fence costs per VMM spawn (4 files): a figure, not a limit. */
  int64_t t0 = cmn_now_us();
  for (int i = 0; i < 1000; i++) {
    if (agent_host_files_open(f, &s, CMN_INVALID_ARGUMENT, &h, &err) < 0)
      break;
    agent_host_files_close(&h);
  }
  printf("\n  MEASURE open+check+close of 4 host files: %.1f us\n",
         (double)(cmn_now_us() - t0) / 1000.0);
  agent_host_fence_free(f);
}

static void test_data_dir_and_own_files(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  expect_refused(f, kernel, victim, "spec.disks[0].path", "inside emberd's data dir");
  expect_refused(f, victim, NULL, "spec.kernel_path", "inside emberd's data dir");
  /* Through a symlink: the message shows where it leads. */
  cleanup_free char *ln = cmn_asprintf("%s/link-victim", files_dir);
  CU_ASSERT_EQUAL(symlink(victim, ln), 0);
  cleanup_free char *want = cmn_asprintf("resolves to %s", victim);
  expect_refused(f, kernel, ln, "spec.disks[0].path", want);
  /* Through "..": resolved the same way. */
  cleanup_free char *dots =
      cmn_asprintf("%s/../data/instances/i-1/snapshots/snapshot-base/memory", files_dir);
  expect_refused(f, kernel, dots, "spec.disks[0].path", "inside emberd's data dir");
  /* The data dir itself is no file; a hard link to an own file is caught by inode. */
  expect_refused(f, own, NULL, "spec.kernel_path", "emberd's own file");
  cleanup_free char *hl = cmn_asprintf("%s/hard-own", files_dir);
  CU_ASSERT_EQUAL(link(own, hl), 0);
  expect_refused(f, hl, NULL, "spec.kernel_path", "emberd's own file");
  agent_host_fence_free(f);
}

static void test_system_trees(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  expect_refused(f, "/etc/passwd", NULL, "spec.kernel_path", "under /etc");
  expect_refused(f, kernel, "/etc/passwd", "spec.disks[0].path", "under /etc");
  expect_refused(f, "/proc/self/status", NULL, "spec.kernel_path", "under /proc");
  expect_refused(f, kernel, "/dev/null", "spec.disks[0].path", "not a regular file");
  expect_refused(f, kernel, "/nonexistent/x", "spec.disks[0].path", "does not exist");
  /* A FIFO is refused without blocking (O_PATH first). */
  cleanup_free char *fifo = cmn_asprintf("%s/fifo", files_dir);
  CU_ASSERT_EQUAL(mkfifo(fifo, 0600), 0);
  expect_refused(f, kernel, fifo, "spec.disks[0].path", "not a regular file");
  /* A file of ours without a name, reached through /proc/self/fd. */
  int mfd = memfd_create("ember-test", MFD_CLOEXEC);
  CU_ASSERT_TRUE_FATAL(mfd >= 0);
  cleanup_free char *mpath = cmn_asprintf("/dev/fd/%d", mfd);
  expect_refused(f, kernel, mpath, "spec.disks[0].path", "without a name");
  cleanup_free char *gone = mkfile(files_dir, "gone.img", "gone");
  int gfd = open(gone, O_RDONLY | O_CLOEXEC);
  CU_ASSERT_EQUAL(unlink(gone), 0);
  cleanup_free char *gpath = cmn_asprintf("/proc/self/fd/%d", gfd);
  expect_refused(f, kernel, gpath, "spec.disks[0].path", "without a name");
  close(gfd);
  close(mfd);
  /* A directory. */
  expect_refused(f, files_dir, NULL, "spec.kernel_path", "not a regular file");
  agent_host_fence_free(f);
  /* /proc stays refused even under a root of "/". */
  const char *slash[] = {"/"};
  f = fence(slash, 1, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  expect_refused(f, "/proc/self/status", NULL, "spec.kernel_path", "under /proc");
  expect_refused(f, kernel, victim, "spec.disks[0].path", "inside emberd's data dir");
  expect_ok(f, "/etc/passwd", NULL);
  agent_host_fence_free(f);
}

static void test_roots(void)
{
  cleanup_free char *other_dir = cmn_asprintf("%s/other", tmp_root);
  cleanup_free char *files_b = cmn_asprintf("%sb", files_dir); /* "/files" vs "/filesb" */
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_mkdir_p(other_dir, 0750, &err), 0);
  CU_ASSERT_EQUAL(cmn_mkdir_p(files_b, 0750, &err), 0);
  cleanup_free char *outside = mkfile(other_dir, "x.img", "x");
  cleanup_free char *sibling = mkfile(files_b, "y.img", "y");
  const char *roots[] = {files_dir, "/etc/passwd"};
  agent_host_fence *f = fence(roots, 2, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  expect_ok(f, kernel, disk);
  expect_ok(f, "/etc/passwd", disk); /* a single-file root */
  expect_refused(f, "/etc/group", NULL, "spec.kernel_path", "outside the allowed roots");
  expect_refused(f, kernel, outside, "spec.disks[0].path", "outside the allowed roots");
  expect_refused(f, kernel, sibling, "spec.disks[0].path", "outside the allowed roots");
  /* A link inside a root that leads outside is judged by its target. */
  cleanup_free char *ln = cmn_asprintf("%s/link-out", files_dir);
  CU_ASSERT_EQUAL(symlink(outside, ln), 0);
  expect_refused(f, kernel, ln, "spec.disks[0].path", "outside the allowed roots");
  agent_host_fence_free(f);
  /* Bad policies. */
  const char *missing[] = {"/nonexistent/root"};
  const agent_host_policy p1 = {.roots = missing, .n_roots = 1};
  CU_ASSERT_PTR_NULL(agent_host_fence_new(data_dir, &p1, &err));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "host_file_roots: '/nonexistent/root'"));
  const agent_host_policy p2 = {.allow_block_devices = true};
  CU_ASSERT_PTR_NULL(agent_host_fence_new(data_dir, &p2, &err));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "allow_block_devices needs host_file_roots"));
}

static void test_block_devices(void)
{
  if (geteuid() != 0) {
    printf("  (skipped: making a device node needs root)\n");
    return;
  }
  /* A block device node with a number no driver answers: the fence judges the
   * type before any real open. */
  cleanup_free char *node = cmn_asprintf("%s/blk", files_dir);
  CU_ASSERT_EQUAL_FATAL(mknod(node, S_IFBLK | 0600, makedev(242, 250)), 0);
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  expect_refused(f, kernel, node, "spec.disks[0].path", "does not allow block devices");
  agent_host_fence_free(f);
  const char *roots[] = {tmp_root};
  f = fence(roots, 1, true);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  /* Allowed by the fence, so the real open happens (and fails: no device). */
  vmm_disk d;
  vmm_spec s = spec_of(kernel, &d, node);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_host_files_check(f, &s, CMN_INVALID_ARGUMENT, &err), -1);
  CU_ASSERT_PTR_NULL(strstr(err.msg, "does not allow block devices"));
  agent_host_fence_free(f);
  const char *files_only[] = {files_dir};
  f = fence(files_only, 1, true);
  cleanup_free char *node2 = cmn_asprintf("%s/blk2", tmp_root);
  CU_ASSERT_EQUAL_FATAL(mknod(node2, S_IFBLK | 0600, makedev(242, 251)), 0);
  expect_refused(f, kernel, node2, "spec.disks[0].path", "outside the allowed roots");
  agent_host_fence_free(f);
}

/* The swap a check-then-use design loses to: the link moves after the check.
 * The descriptor still holds the checked file. */
static void test_swap_after_check(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  cleanup_free char *ln = cmn_asprintf("%s/link-swap", files_dir);
  CU_ASSERT_EQUAL(symlink(disk, ln), 0);
  vmm_disk d;
  vmm_spec s = spec_of(kernel, &d, ln);
  agent_host_files h;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_host_files_open(f, &s, CMN_FAILED_PRECONDITION, &h, &err), 0);
  CU_ASSERT_EQUAL(unlink(ln), 0);
  CU_ASSERT_EQUAL(symlink(victim, ln), 0);
  struct stat a, b;
  CU_ASSERT_EQUAL(fstat(h.fds[1].fd, &a), 0);
  CU_ASSERT_EQUAL(stat(disk, &b), 0);
  CU_ASSERT_TRUE(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
  agent_host_files_close(&h);
  /* The next open (Start, Restore) sees the new target and refuses it. */
  CU_ASSERT_EQUAL(agent_host_files_open(f, &s, CMN_FAILED_PRECONDITION, &h, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "inside emberd's data dir"));
  agent_host_fence_free(f);
}

/* validate.c runs the fence at Create, after the syntax checks. */
static void test_validate_uses_fence(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  vmm_disk d;
  vmm_spec s = spec_of(kernel, &d, victim);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, f, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "spec.disks[0].path"));
  d.path = disk;
  CU_ASSERT_EQUAL(agent_validate_spec(&s, f, &err), 0);
  agent_host_fence_free(f);
}

/* The child finds each file at its number, and nothing else of ours. */
static void test_spawn_pass_fds(void)
{
  agent_host_fence *f = fence(NULL, 0, false);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  vmm_disk d;
  vmm_spec s = spec_of(kernel, &d, disk);
  agent_host_files h;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_host_files_open(f, &s, CMN_INVALID_ARGUMENT, &h, &err), 0);
  /* A descriptor of ours sitting at a target number must not leak or clobber. */
  int squat = fcntl(h.fds[0].fd, F_DUPFD_CLOEXEC, 65);
  CU_ASSERT_TRUE(squat >= 65);
  cleanup_free char *out = cmn_asprintf("%s/spawn.out", tmp_root);
  cleanup_free char *script =
      cmn_asprintf("for n in 64 65 66; do readlink /proc/self/fd/$n || echo none; done > %s; "
                   "echo $(cat /proc/self/fd/66) >> %s",
                   out, out);
  const char *const argv[] = {"/bin/sh", "-c", script, NULL};
  cmn_spawn_opts o = {.pass_fds = h.fds, .n_pass_fds = (int)h.n_fds};
  cmn_proc p = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_proc_spawn(argv, &o, &p, &err), 0);
  int status = -1;
  CU_ASSERT_EQUAL(cmn_proc_wait(&p, 10000, &status), 0);
  close(squat);
  cleanup_free char *text = NULL;
  CU_ASSERT_EQUAL_FATAL(cmn_file_read(out, 4096, &text, NULL, &err), 0);
  cleanup_free char *want = cmn_asprintf("%s\nnone\n%s\ndisk\n", kernel, disk);
  if (strcmp(text, want) != 0)
    fprintf(stderr, "child saw:\n%s\nwanted:\n%s\n", text, want);
  CU_ASSERT_STRING_EQUAL(text, want);
  agent_host_files_close(&h);
  agent_host_fence_free(f);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("hostfiles", suite_init, suite_clean);
  CU_add_test(s, "open_and_numbers", test_open_and_numbers);
  CU_add_test(s, "data_dir_and_own_files", test_data_dir_and_own_files);
  CU_add_test(s, "system_trees", test_system_trees);
  CU_add_test(s, "roots", test_roots);
  CU_add_test(s, "block_devices", test_block_devices);
  CU_add_test(s, "swap_after_check", test_swap_after_check);
  CU_add_test(s, "validate_uses_fence", test_validate_uses_fence);
  CU_add_test(s, "spawn_pass_fds", test_spawn_pass_fds);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
