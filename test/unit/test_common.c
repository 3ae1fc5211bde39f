/* test_common.c: CUnit tests of common/ (errors, files, processes, fault points)
 * and of the agent's record and validation modules. */
#include "agent/record.h"
#include "agent/validate.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/fault.h"
#include "common/hash.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/proc.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp_root[64];

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-common-XXXXXX");
  return mkdtemp(tmp_root) ? 0 : -1;
}

static int suite_clean(void)
{
  cmn_error err = {0};
  return cmn_rm_rf(tmp_root, &err);
}

static void test_error_contract(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_err_set(&err, CMN_NOT_FOUND, "instance %s", "x"), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_STRING_EQUAL(err.msg, "instance x");
  cmn_err_prefix(&err, "get");
  CU_ASSERT_STRING_EQUAL(err.msg, "get: instance x");
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  cmn_err_errno(&err, CMN_INTERNAL, ENOENT, "open %s", "/x");
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "No such file"));
  /* Long context is truncated, never overflows. */
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cmn_err_prefix(&err, "%s", big);
  CU_ASSERT_TRUE(strlen(err.msg) < CMN_ERR_MSG_MAX);
  CU_ASSERT_STRING_EQUAL(cmn_code_name(CMN_FAILED_PRECONDITION), "FAILED_PRECONDITION");
  CU_ASSERT_STRING_EQUAL(cmn_code_name(999), "UNKNOWN");
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(err.code, CMN_OK);
  /* Detail fields: prefix keeps them, a new error clears them. */
  cmn_err_set(&err, CMN_INVALID_ARGUMENT, "spec.vcpus must be 1 to 64");
  CU_ASSERT_EQUAL(cmn_err_field(&err, "spec.vcpus"), -1);
  cmn_err_prefix(&err, "create");
  CU_ASSERT_STRING_EQUAL(err.field, "spec.vcpus");
  cmn_err_set(&err, CMN_FAILED_PRECONDITION, "it is Stopped");
  CU_ASSERT_STRING_EQUAL(err.field, "");
  CU_ASSERT_EQUAL(cmn_err_precondition(&err, "STATE", "instances/i-1"), -1);
  CU_ASSERT_STRING_EQUAL(err.precondition, "STATE");
  CU_ASSERT_STRING_EQUAL(err.subject, "instances/i-1");
  cmn_err_field(&err, big); /* truncated, never overflows */
  CU_ASSERT_EQUAL(strlen(err.field), CMN_ERR_DETAIL_MAX - 1);
  cmn_err_clear(&err);
  CU_ASSERT_STRING_EQUAL(err.precondition, "");
}

static void test_files(void)
{
  cmn_error err = {0};
  cleanup_free char *dir = cmn_asprintf("%s/a/b/c", tmp_root);
  CU_ASSERT_EQUAL(cmn_mkdir_p(dir, 0750, &err), 0);
  CU_ASSERT_TRUE(cmn_is_dir(dir));
  cleanup_free char *f = cmn_asprintf("%s/file", dir);
  CU_ASSERT_EQUAL(cmn_file_write_atomic(f, "hello", 5, 0600, &err), 0);
  CU_ASSERT_EQUAL(cmn_file_write_atomic(f, "world!", 6, 0600, &err), 0);
  cleanup_free char *buf = NULL;
  size_t len = 0;
  CU_ASSERT_EQUAL(cmn_file_read(f, 100, &buf, &len, &err), 0);
  CU_ASSERT_EQUAL(len, 6);
  CU_ASSERT_STRING_EQUAL(buf, "world!");
  struct stat st;
  CU_ASSERT_EQUAL(stat(f, &st), 0);
  CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
  char *small = NULL;
  CU_ASSERT_EQUAL(cmn_file_read(f, 3, &small, NULL, &err), -1);
  CU_ASSERT_EQUAL(cmn_file_read("/nonexistent", 3, &small, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  cleanup_free char *top = cmn_asprintf("%s/a", tmp_root);
  CU_ASSERT_EQUAL(cmn_fsync_tree(top, &err), 0);
  cleanup_free char *moved = cmn_asprintf("%s/moved", tmp_root);
  CU_ASSERT_EQUAL(cmn_rename_durable(top, moved, &err), 0);
  CU_ASSERT_FALSE(cmn_path_exists(top));
  CU_ASSERT_EQUAL(cmn_rm_rf(moved, &err), 0);
  CU_ASSERT_FALSE(cmn_path_exists(moved));
  CU_ASSERT_EQUAL(cmn_rm_rf(moved, &err), 0); /* missing is fine */
  /* No temp files left behind by atomic writes. */
  cleanup_free char *cmd = cmn_asprintf("ls -a %s | grep -q tmp", tmp_root);
  CU_ASSERT_NOT_EQUAL(system(cmd), 0);
}

static void test_path_join(void)
{
  cmn_error err = {0};
  char *p = cmn_path_join("/root", "a/b", &err);
  CU_ASSERT_STRING_EQUAL(p, "/root/a/b");
  free(p);
  CU_ASSERT_PTR_NULL(cmn_path_join("/root", "../x", &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NULL(cmn_path_join("/root", "a/../../x", &err));
  CU_ASSERT_PTR_NULL(cmn_path_join("/root", "/etc", &err));
  CU_ASSERT_PTR_NULL(cmn_path_join("/root", "", &err));
  p = cmn_path_join("/root", "a..b", &err);
  CU_ASSERT_PTR_NOT_NULL(p);
  free(p);
}

static void test_proc(void)
{
  cmn_error err = {0};
  cmn_proc p = {0};
  cleanup_free char *log = cmn_asprintf("%s/child.log", tmp_root);
  /* The child must not inherit our descriptors (O_CLOEXEC) and must be in its
   * own session. */
  int leak = cmn_open(log, O_WRONLY | O_CREAT, 0600);
  cleanup_free char *script = cmn_asprintf(
      "echo sid=$(cut -d' ' -f6 /proc/self/stat) pid=$$; ls /proc/self/fd | wc -l; sleep 30");
  const char *const argv[] = {"/bin/sh", "-c", script, NULL};
  cmn_spawn_opts o = {.log_path = log};
  CU_ASSERT_EQUAL_FATAL(cmn_proc_spawn(argv, &o, &p, &err), 0);
  close(leak);
  CU_ASSERT_TRUE(p.pid > 0);
  CU_ASSERT_TRUE(p.start_time > 0);
  CU_ASSERT_TRUE(cmn_proc_alive(&p));
  CU_ASSERT_NOT_EQUAL(getsid(p.pid), getsid(0));
  CU_ASSERT_EQUAL(getsid(p.pid), p.pid);
  cmn_proc wrong = p;
  wrong.start_time += 1; /* a recycled pid is not the same process */
  CU_ASSERT_FALSE(cmn_proc_alive(&wrong));
  CU_ASSERT_EQUAL(cmn_proc_wait(&p, 50, NULL), -1);
  cmn_sleep_ms(200);
  cmn_proc_kill_reap(&p);
  CU_ASSERT_FALSE(cmn_proc_alive(&p));
  cleanup_free char *out = NULL;
  CU_ASSERT_EQUAL(cmn_file_read(log, 4096, &out, NULL, &err), 0);
  /* fds: 0, 1, 2 and the one ls opens for /proc/self/fd. */
  if (strstr(out, "\n4\n") == NULL)
    fprintf(stderr, "child output: %s\n", out);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n4\n"));
  const char *const missing[] = {"/nonexistent/prog", NULL};
  CU_ASSERT_EQUAL(cmn_proc_spawn(missing, NULL, &p, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  char *path = cmn_which("sh");
  CU_ASSERT_PTR_NOT_NULL(path);
  free(path);
  CU_ASSERT_PTR_NULL(cmn_which("definitely-not-a-program-xyz"));
}

static void *proc_late_thread(void *arg)
{
  (void)arg;
  cmn_sleep_ms(300);
  exit(7);
}

/* A multithreaded child whose main thread has ended while another thread
 * still runs: /proc shows its leader as a zombie, but it is not waitable yet.
 * cmn_proc_wait must still reap it (a VMM left defunct under emberd, issue 9). */
static void test_proc_wait_reaps_threaded(void)
{
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    pthread_t th;
    if (pthread_create(&th, NULL, proc_late_thread, NULL) != 0)
      _exit(1);
    pthread_exit(NULL);
  }
  cmn_proc p = {pid, cmn_proc_start_time(pid)};
  cmn_sleep_ms(100);                   /* the main thread has ended; the other sleeps on */
  CU_ASSERT_FALSE(cmn_proc_alive(&p)); /* what /proc says: a zombie leader */
  int status = -1;
  CU_ASSERT_EQUAL(cmn_proc_wait(&p, 5000, &status), 0);
  CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7);
  /* Reaped: nothing is left to wait for. */
  int st = 0;
  pid_t r = waitpid(pid, &st, WNOHANG);
  CU_ASSERT_EQUAL(r, -1);
  if (r != -1)
    waitpid(pid, &st, 0);
  /* A timeout is -1 and leaves the child to a later wait. */
  pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    cmn_sleep_ms(300);
    _exit(0);
  }
  p = (cmn_proc){pid, cmn_proc_start_time(pid)};
  CU_ASSERT_EQUAL(cmn_proc_wait(&p, 10, NULL), -1);
  CU_ASSERT_EQUAL(cmn_proc_wait(&p, 5000, NULL), 0);
  CU_ASSERT_EQUAL(waitpid(pid, &st, WNOHANG), -1);
}

static void test_fault(void)
{
  cmn_error err = {0};
  unsetenv("EMBER_FAULT");
  CU_ASSERT_EQUAL(cmn_fault("a.b", &err), 0);
  setenv("EMBER_FAULT", "x.y,a.b", 1);
  CU_ASSERT_EQUAL(cmn_fault("a.b", &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "a.b"));
  CU_ASSERT_EQUAL(cmn_fault("a", &err), 0);
  CU_ASSERT_EQUAL(cmn_fault("a.b.c", &err), 0);
  setenv("EMBER_FAULT", "a.b:exit", 1);
  pid_t pid = fork();
  if (pid == 0) {
    cmn_fault("a.b", &err);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 86);
  unsetenv("EMBER_FAULT");
}

static void test_record_roundtrip(void)
{
  agent_record r = {0};
  vmm_disk disks[] = {{(char[]){"/d1.img"}, true, false}, {(char[]){"/d2.img"}, false, false}};
  vmm_nic nics[] = {{(char[]){"tap0"}, (char[]){"aa:bb:cc:dd:ee:ff"}}};
  r.view.id = (char[]){"i-1"};
  r.view.name = (char[]){"web \"quoted\""};
  r.view.hypervisor = (char[]){"qemu"};
  r.view.spec = (vmm_spec){
      2, 512, (char[]){"/k"}, NULL, (char[]){"console=ttyS0"}, disks, 2, nics, 1, 42, true};
  r.view.state = AGENT_STATE_STANDBY;
  r.view.last_snapshot_kind = AGENT_SNAP_DIFF;
  r.view.last_standby_us = 123456;
  r.view.created_at_us = 1700000000000000LL;
  agent_label labels[] = {{(char[]){"team"}, (char[]){"infra"}},
                          {(char[]){"example.com/role"}, (char[]){""}}};
  r.view.labels = labels;
  r.view.n_labels = 2;
  r.view.request_id = (char[]){"req-1"};
  r.proc = (cmn_proc){4242, 987654321};
  cleanup_free char *json = agent_record_to_json(&r);
  agent_record back;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_record_from_json(json, &back, &err), 0);
  CU_ASSERT_STRING_EQUAL(back.view.name, "web \"quoted\"");
  CU_ASSERT_EQUAL(back.view.spec.memory_mib, 512);
  CU_ASSERT_EQUAL(back.view.spec.n_disks, 2);
  CU_ASSERT_EQUAL(back.view.spec.vsock_cid, 42);
  CU_ASSERT_TRUE(back.view.spec.disks[0].read_only);
  CU_ASSERT_STRING_EQUAL(back.view.spec.nics[0].mac, "aa:bb:cc:dd:ee:ff");
  CU_ASSERT_PTR_NULL(back.view.spec.initrd);
  CU_ASSERT_EQUAL(back.view.state, AGENT_STATE_STANDBY);
  CU_ASSERT_EQUAL(back.view.last_snapshot_kind, AGENT_SNAP_DIFF);
  CU_ASSERT_EQUAL(back.view.created_at_us, 1700000000000000LL);
  CU_ASSERT_EQUAL(back.proc.pid, 4242);
  CU_ASSERT_EQUAL(back.proc.start_time, 987654321);
  CU_ASSERT_STRING_EQUAL(back.view.request_id, "req-1");
  CU_ASSERT_EQUAL_FATAL(back.view.n_labels, 2);
  /* stored sorted by key */
  CU_ASSERT_STRING_EQUAL(back.view.labels[0].key, "example.com/role");
  CU_ASSERT_STRING_EQUAL(back.view.labels[0].value, "");
  CU_ASSERT_STRING_EQUAL(agent_labels_get(back.view.labels, 2, "team"), "infra");
  CU_ASSERT_PTR_NULL(agent_labels_get(back.view.labels, 2, "nope"));
  agent_record_free(&back);
  /* A record with a hostile label (edited on disk) is refused, not loaded. */
  CU_ASSERT_EQUAL(
      agent_record_from_json("{\"version\":1,\"id\":\"i\",\"name\":\"n\",\"hypervisor\":\"q\","
                             "\"state\":\"stopped\",\"last_snapshot_kind\":\"none\","
                             "\"labels\":{\"../x\":\"y\"}}",
                             &back, &err),
      -1);
  /* Records written before labels existed load with none. */
  CU_ASSERT_EQUAL_FATAL(
      agent_record_from_json("{\"version\":1,\"id\":\"i\",\"name\":\"n\",\"hypervisor\":\"q\","
                             "\"state\":\"stopped\",\"last_snapshot_kind\":\"none\"}",
                             &back, &err),
      0);
  CU_ASSERT_EQUAL(back.view.n_labels, 0);
  CU_ASSERT_PTR_NULL(back.view.request_id);
  agent_record_free(&back);
  CU_ASSERT_EQUAL(agent_record_from_json("{", &back, &err), -1);
  CU_ASSERT_EQUAL(agent_record_from_json("{\"version\":1}", &back, &err), -1);
  CU_ASSERT_EQUAL(agent_record_from_json("[]", &back, &err), -1);
  /* Numbers outside int64_t (a record edited on disk) read as 0, never through
   * an undefined double-to-integer conversion. */
  CU_ASSERT_EQUAL_FATAL(
      agent_record_from_json("{\"version\":1,\"id\":\"i\",\"name\":\"n\",\"hypervisor\":\"q\","
                             "\"state\":\"stopped\",\"last_snapshot_kind\":\"none\","
                             "\"spec\":{\"vcpus\":1e300,\"memory_mib\":-1e300},"
                             "\"created_at_us\":1e19,\"vmm\":{\"pid\":-1e300}}",
                             &back, &err),
      0);
  CU_ASSERT_EQUAL(back.view.spec.vcpus, 0);
  CU_ASSERT_EQUAL(back.view.spec.memory_mib, 0);
  CU_ASSERT_EQUAL(back.view.created_at_us, 0);
  CU_ASSERT_EQUAL(back.proc.pid, 0);
  agent_record_free(&back);
}

/* Names and ids are disjoint by construction: no name has the id form. */
static void test_validate_name_vs_id(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_validate_id("id", "i-0123456789abcdef", &err), 0);
  const char *names_not_ids[] = {"web", "i", "i.x", "I-0123456789abcdef", "x-0123456789abcdef"};
  for (size_t i = 0; i < sizeof names_not_ids / sizeof names_not_ids[0]; i++) {
    CU_ASSERT_EQUAL(agent_validate_name("name", names_not_ids[i], &err), 0);
    CU_ASSERT_EQUAL(agent_validate_id("id", names_not_ids[i], &err), -1);
    CU_ASSERT_EQUAL(agent_validate_id_or_name("id", names_not_ids[i], &err), 0);
  }
  const char *id_form[] = {
      "i-0123456789abcdef", "i-", "i-web", "i-0123456789ABCDEF", "i-0123456789abcde",
      "i-0123456789abcdef0"};
  for (size_t i = 0; i < sizeof id_form / sizeof id_form[0]; i++) {
    CU_ASSERT_EQUAL(agent_validate_name("name", id_form[i], &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT(strstr(err.msg, "reserved for instance ids") != NULL);
    CU_ASSERT_EQUAL(agent_validate_id_or_name("id", id_form[i], &err), i == 0 ? 0 : -1);
  }
  /* TAP device names keep the plain charset rule. */
  vmm_nic nic = {(char[]){"i-tap0"}, NULL};
  cleanup_free char *k = cmn_asprintf("%s/k2", tmp_root);
  cmn_file_write_atomic(k, "k", 1, 0644, &err);
  vmm_spec s = {.vcpus = 1, .memory_mib = 64, .kernel = k, .nics = &nic, .n_nics = 1};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), 0);
}

static void test_labels_and_request_id(void)
{
  cmn_error err = {0};
  agent_label ok[] = {{(char[]){"team"}, (char[]){"infra"}},
                      {(char[]){"a"}, (char[]){""}},
                      {(char[]){"example.com/role"}, (char[]){"db"}},
                      {(char[]){"A.b-c_d"}, (char[]){"V.1-2_3"}},
                      {(char[]){"k"}, (char[]){"01234567890123456789012345678901234567890"
                                               "12345678901234567890ab"}}};
  CU_ASSERT_EQUAL(agent_labels_validate(ok, 5, &err), 0);
  agent_label bad[][1] = {
      {{(char[]){""}, (char[]){"v"}}},
      {{(char[]){"-a"}, (char[]){"v"}}},
      {{(char[]){"a-"}, (char[]){"v"}}},
      {{(char[]){"a b"}, (char[]){"v"}}},
      {{(char[]){"a"}, (char[]){"-v"}}},
      {{(char[]){"a"}, (char[]){"v v"}}},
      {{(char[]){"Ex.com/a"}, (char[]){"v"}}},
      {{(char[]){"/a"}, (char[]){"v"}}},
      {{(char[]){"a/"}, (char[]){"v"}}},
      {{(char[]){"a/b/c"}, (char[]){"v"}}},
      {{(char[]){"a\n"}, (char[]){"v"}}},
      {{(char[]){"a"}, (char[]){"\xc3\xa9"}}},
      {{(char[]){"k234567890123456789012345678901234567890123456789012345678901234"},
        (char[]){""}}}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CU_ASSERT_EQUAL(agent_labels_validate(bad[i], 1, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_STRING_EQUAL(err.field, "labels");
  }
  agent_label dup[] = {{(char[]){"a"}, (char[]){"1"}}, {(char[]){"a"}, (char[]){"2"}}};
  CU_ASSERT_EQUAL(agent_labels_validate(dup, 2, &err), -1);
  agent_label many[AGENT_LABELS_MAX + 1];
  char keys[AGENT_LABELS_MAX + 1][8];
  char v[] = "v";
  for (int i = 0; i <= AGENT_LABELS_MAX; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    many[i] = (agent_label){keys[i], v};
  }
  CU_ASSERT_EQUAL(agent_labels_validate(many, AGENT_LABELS_MAX, &err), 0);
  CU_ASSERT_EQUAL(agent_labels_validate(many, AGENT_LABELS_MAX + 1, &err), -1);

  CU_ASSERT_EQUAL(agent_request_id_validate("8c1e2c1a-7f1c-4b1e-9d1a-0a52b2c3d4e5", &err), 0);
  CU_ASSERT_EQUAL(agent_request_id_validate("a:b.c_d-e", &err), 0);
  const char *bad_ids[] = {"", "a b", "a/b", "a\x01", "\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    CU_ASSERT_EQUAL(agent_request_id_validate(bad_ids[i], &err), -1);
    CU_ASSERT_STRING_EQUAL(err.field, "request_id");
  }
  char long_id[AGENT_REQUEST_ID_MAX + 2];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  CU_ASSERT_EQUAL(agent_request_id_validate(long_id, &err), -1);
  long_id[AGENT_REQUEST_ID_MAX] = '\0';
  CU_ASSERT_EQUAL(agent_request_id_validate(long_id, &err), 0);
}

static void test_validate(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_validate_name("name", "web-1.a_b", &err), 0);
  const char *bad[] = {"", ".", "..", "-a", "a/b", "a b", "a\x01", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CU_ASSERT_EQUAL(agent_validate_name("name", bad[i], &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  }
  cleanup_free char *k = cmn_asprintf("%s/k", tmp_root);
  cmn_file_write_atomic(k, "k", 1, 0644, &err);
  vmm_nic nic = {(char[]){"tap0"}, (char[]){"zz:bb:cc:dd:ee:ff"}};
  vmm_spec s = {.vcpus = 1, .memory_mib = 64, .kernel = k, .cmdline = (char[]){"a b"}};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), 0);
  s.cmdline = (char[]){"a\nb"};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), -1);
  s.cmdline = NULL;
  s.nics = &nic;
  s.n_nics = 1;
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), -1);
  nic.mac = (char[]){"aa:bb:cc:dd:ee:ff"};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), 0);
  nic.tap = (char[]){"tap-name-way-too-long"};
  CU_ASSERT_EQUAL(agent_validate_spec(&s, NULL, &err), -1);
}

/* cmn_hash_str is FNV-1a 64: the published test vectors. */
static void test_hash_str(void)
{
  CU_ASSERT_EQUAL(cmn_hash_str(""), 0xcbf29ce484222325ULL);
  CU_ASSERT_EQUAL(cmn_hash_str("a"), 0xaf63dc4c8601ec8cULL);
  CU_ASSERT_EQUAL(cmn_hash_str("foobar"), 0x85944171f73967e8ULL);
  CU_ASSERT_NOT_EQUAL(cmn_hash_str("labels.a=b"), cmn_hash_str("labels.a=c"));
}

int main(void)
{
  cmn_proc_cloexec_inherited();
  cmn_log_setup(CMN_LOG_ERROR, 2);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("common", suite_init, suite_clean);
  CU_add_test(s, "error_contract", test_error_contract);
  CU_add_test(s, "files", test_files);
  CU_add_test(s, "path_join", test_path_join);
  CU_add_test(s, "proc", test_proc);
  CU_add_test(s, "proc_wait_reaps_threaded", test_proc_wait_reaps_threaded);
  CU_add_test(s, "fault", test_fault);
  CU_add_test(s, "record_roundtrip", test_record_roundtrip);
  CU_add_test(s, "validate", test_validate);
  CU_add_test(s, "validate_name_vs_id", test_validate_name_vs_id);
  CU_add_test(s, "labels_and_request_id", test_labels_and_request_id);
  CU_add_test(s, "hash_str", test_hash_str);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
