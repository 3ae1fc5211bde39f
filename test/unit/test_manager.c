/* test_manager.c: CUnit tests of the instance manager and snapshot manager with
 * the test-only driver: the state machine of docs/architecture.md §3, the snapshot folder
 * transitions of §4 at every failure point, persistence, re-adoption and
 * recovery after an agent crash, the VMM monitor, events and concurrency. */
#include "agent/manager.h"
#include "agent/snapshot.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"
#include "test/unit/testvm_driver.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
  char root[64];
  char *data;
  char *kernel;
  vmm_registry *reg;
  agent_manager *m;
  testvm_state *tv;
  testvm_state *live;
} fixture;

static const vmm_driver *const test_drivers[] = {&testvm_driver, &testvm_live_driver,
                                                 &testvm_nosnap_driver, &testvm_full_driver,
                                                 &testvm_gone_driver};

static void fx_open_manager(fixture *f)
{
  agent_manager_config cfg = {.data_dir = f->data, .stop_timeout_ms = 2000, .monitor = true};
  cmn_error err = {0};
  f->m = agent_manager_create(&cfg, f->reg, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->m);
}

static void fx_setup(fixture *f)
{
  memset(f, 0, sizeof *f);
  snprintf(f->root, sizeof f->root, "/tmp/ember-unit-XXXXXX");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->root));
  f->data = cmn_asprintf("%s/data", f->root);
  f->kernel = cmn_asprintf("%s/vmlinux", f->root);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_file_write_atomic(f->kernel, "k", 1, 0644, &err), 0);
  f->reg =
      vmm_registry_create(NULL, test_drivers, sizeof test_drivers / sizeof test_drivers[0], &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->reg);
  f->tv = vmm_registry_get(f->reg, "testvm")->state;
  f->live = vmm_registry_get(f->reg, "testlive")->state;
  fx_open_manager(f);
}

/* Kills every VMM an instance still has (tests must not leak processes). */
static void fx_teardown(fixture *f)
{
  agent_instance_view *v = NULL;
  size_t n = 0;
  cmn_error err = {0};
  if (f->m != NULL && agent_manager_list(f->m, AGENT_STATE_UNSPECIFIED, &v, &n, &err) == 0) {
    for (size_t i = 0; i < n; i++)
      agent_manager_op(f->m, v[i].id, AGENT_OP_STOP, NULL, &err);
    agent_instance_views_free(v, n);
  }
  agent_manager_free(f->m);
  vmm_registry_free(f->reg);
  cmn_rm_rf(f->root, &err);
  free(f->data);
  free(f->kernel);
}

static vmm_spec fx_spec(fixture *f)
{
  static char cmdline[] = "console=ttyS0"; /* outlives the returned spec */
  return (vmm_spec){.vcpus = 1, .memory_mib = 64, .kernel = f->kernel, .cmdline = cmdline};
}

static char *fx_create(fixture *f, const char *name, const char *type, bool start)
{
  vmm_spec spec = fx_spec(f);
  agent_instance_view v = {0};
  cmn_error err = {0};
  int rc = agent_manager_create_instance(f->m, name, type, &spec, start, &v, &err);
  if (rc != 0)
    fprintf(stderr, "create %s: %s\n", name, err.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  char *id = cmn_strdup(v.id);
  agent_instance_view_free(&v);
  return id;
}

static int fx_op(fixture *f, const char *id, agent_op op)
{
  cmn_error err = {0};
  if (agent_manager_op(f->m, id, op, NULL, &err) < 0)
    return err.code;
  return 0;
}

static agent_state fx_state(fixture *f, const char *id)
{
  agent_instance_view v = {0};
  cmn_error err = {0};
  if (agent_manager_get(f->m, id, &v, &err) < 0)
    return AGENT_STATE_UNSPECIFIED;
  agent_state s = v.state;
  agent_instance_view_free(&v);
  return s;
}

static agent_instance_view fx_get(fixture *f, const char *id)
{
  agent_instance_view v = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_get(f->m, id, &v, &err), 0);
  return v;
}

static char *fx_path(fixture *f, const char *id, const char *rel)
{
  return cmn_asprintf("%s/instances/%s/%s", f->data, id, rel);
}

static bool fx_exists(fixture *f, const char *id, const char *rel)
{
  cleanup_free char *p = fx_path(f, id, rel);
  return cmn_path_exists(p);
}

static void fx_write_ram(fixture *f, const char *id, const char *content)
{
  cleanup_free char *p = fx_path(f, id, "ram");
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_file_write_atomic(p, content, strlen(content), 0640, &err), 0);
}

static char *fx_read(fixture *f, const char *id, const char *rel)
{
  cleanup_free char *p = fx_path(f, id, rel);
  char *buf = NULL;
  cmn_error err = {0};
  if (cmn_file_read(p, 1 << 20, &buf, NULL, &err) < 0)
    return cmn_strdup("");
  return buf;
}

/* Starts a "VMM" for instance id by hand, as a driver would have just before
 * an agent crash, and waits until /proc shows its command line (right after
 * exec the kernel may not show the new one yet). */
static cmn_proc fx_spawn_vmm(fixture *f, const char *id)
{
  cmn_error err = {0};
  cleanup_free char *tag = cmn_asprintf("%s/instances/%s/testvm", f->data, id);
  const char *const argv[] = {"/bin/sh", "-c", "while :; do sleep 1; done", "testvm", tag, NULL};
  cmn_proc p = {0};
  CU_ASSERT_EQUAL(cmn_proc_spawn(argv, NULL, &p, &err), 0);
  cleanup_free char *cmdline_path = cmn_asprintf("/proc/%d/cmdline", (int)p.pid);
  for (int i = 0; i < 200; i++) {
    cleanup_free char *cl = NULL;
    size_t len = 0;
    if (cmn_file_read(cmdline_path, 1 << 16, &cl, &len, &err) == 0 && len > 0 &&
        memmem(cl, len, tag, strlen(tag)) != NULL)
      break;
    cmn_sleep_ms(5);
  }
  return p;
}

/* A recursive listing with sizes and mtimes: "nothing on disk changed". */
static char *fx_listing_cmd(const char *cmd);
static char *fx_listing(const char *dir)
{
  cleanup_free char *cmd = cmn_asprintf("find %s -printf '%%p %%s %%T@\\n' | sort", dir);
  return fx_listing_cmd(cmd);
}

/* The same with only the names of folders: a paused and resumed VMM, or a
 * temp folder made and removed, changes a folder's mtime and nothing else. */
static char *fx_listing_files(const char *dir)
{
  cleanup_free char *cmd = cmn_asprintf(
      "find %s \\( -type d -printf '%%p/\\n' \\) -o -printf '%%p %%s %%T@\\n' | sort", dir);
  return fx_listing_cmd(cmd);
}

static char *fx_listing_cmd(const char *cmd)
{
  FILE *p = popen(cmd, "r");
  char *out = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&out, &len);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    fwrite(buf, 1, n, mem);
  pclose(p);
  fclose(mem);
  return out;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_create_get_list_delete(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "web-1", "testvm", false);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STOPPED);
  CU_ASSERT_EQUAL(fx_state(&f, "web-1"), AGENT_STATE_STOPPED);
  free(fx_create(&f, "a-first", "testvm", false));
  agent_instance_view *v = NULL;
  size_t n = 0;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_list(f.m, AGENT_STATE_UNSPECIFIED, &v, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 2);
  if (n == 2) {
    CU_ASSERT_STRING_EQUAL(v[0].name, "a-first");
    CU_ASSERT_STRING_EQUAL(v[1].name, "web-1");
  }
  agent_instance_views_free(v, n);
  CU_ASSERT_EQUAL(agent_manager_list(f.m, AGENT_STATE_RUNNING, &v, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 0);
  agent_instance_views_free(v, n);
  CU_ASSERT_EQUAL(agent_manager_list(f.m, (agent_state)99, &v, &n, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);

  char *gone = NULL;
  CU_ASSERT_EQUAL(agent_manager_delete(f.m, "web-1", &gone, &err), 0);
  CU_ASSERT_STRING_EQUAL(gone, id);
  free(gone);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_UNSPECIFIED);
  CU_ASSERT_FALSE(fx_exists(&f, id, ""));
  CU_ASSERT_EQUAL(agent_manager_delete(f.m, "web-1", NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  fx_teardown(&f);
}

/* A name may never equal (or look like) an id: names and ids are disjoint,
 * so a string never reaches another instance than the one it names. */
static void test_names_never_ids(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "alpha", "testvm", false);
  cleanup_free char *before = fx_listing(f.data);
  agent_instance_view v = {0};
  cmn_error err = {0};
  vmm_spec good = fx_spec(&f);
  const char *names[] = {id, "i-web", "i-"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    CU_ASSERT_EQUAL(agent_manager_create_instance(f.m, names[i], "testvm", &good, false, &v, &err),
                    -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  }
  cleanup_free char *after = fx_listing(f.data);
  CU_ASSERT_STRING_EQUAL(before, after);
  CU_ASSERT_EQUAL(agent_manager_get(f.m, "i-nothex", &v, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(agent_manager_get(f.m, id, &v, &err), 0);
  CU_ASSERT_STRING_EQUAL(v.name, "alpha");
  agent_instance_view_free(&v);
  fx_teardown(&f);
}

/* CreateInstance of a type the host cannot run: FAILED_PRECONDITION naming
 * the reason (the missing binary), after the INVALID_ARGUMENT checks; nothing
 * on disk changes. */
static void test_unavailable_type_refused(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *before = fx_listing(f.data);
  agent_instance_view v = {0};
  cmn_error err = {0};
  vmm_spec good = fx_spec(&f);
  CU_ASSERT_FALSE(vmm_registry_get(f.reg, "testgone")->available);
  CU_ASSERT_EQUAL(agent_manager_create_instance(f.m, "g", "testgone", &good, false, &v, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT(strstr(err.msg, "/nonexistent/testgone") != NULL);
  vmm_spec bad = good;
  bad.vcpus = 0;
  CU_ASSERT_EQUAL(agent_manager_create_instance(f.m, "g", "testgone", &bad, false, &v, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  cleanup_free char *after = fx_listing(f.data);
  CU_ASSERT_STRING_EQUAL(before, after);
  fx_teardown(&f);
}

static void test_bad_input_changes_nothing(void)
{
  fixture f;
  fx_setup(&f);
  free(fx_create(&f, "taken", "testvm", false));
  cleanup_free char *before = fx_listing(f.data);
  cmn_error err = {0};
  agent_instance_view v = {0};
  vmm_spec good = fx_spec(&f);
  char longname[100];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  struct {
    const char *name;
    const char *type;
    int code;
  } cases[] = {
      {"", "testvm", CMN_INVALID_ARGUMENT},       {"..", "testvm", CMN_INVALID_ARGUMENT},
      {"a/b", "testvm", CMN_INVALID_ARGUMENT},    {"../../etc", "testvm", CMN_INVALID_ARGUMENT},
      {"-x", "testvm", CMN_INVALID_ARGUMENT},     {"a\nb", "testvm", CMN_INVALID_ARGUMENT},
      {longname, "testvm", CMN_INVALID_ARGUMENT}, {"ok", "nope", CMN_INVALID_ARGUMENT},
      {"ok", "", CMN_INVALID_ARGUMENT},           {"taken", "testvm", CMN_ALREADY_EXISTS},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CU_ASSERT_EQUAL(
        agent_manager_create_instance(f.m, cases[i].name, cases[i].type, &good, false, &v, &err),
        -1);
    CU_ASSERT_EQUAL(err.code, cases[i].code);
  }
  vmm_spec bad[8];
  for (int i = 0; i < 8; i++)
    bad[i] = good;
  bad[0].vcpus = 0;
  bad[1].vcpus = 1000;
  bad[2].memory_mib = 1;
  bad[3].memory_mib = 1ull << 40;
  bad[4].kernel = (char[]){"/nonexistent/vmlinux"};
  bad[5].kernel = (char[]){"/tmp"};
  bad[6].kernel = (char[]){"relative/vmlinux"};
  cleanup_free char *comma = cmn_asprintf("%s,share=on", f.kernel);
  bad[7].kernel = comma;
  for (int i = 0; i < 8; i++) {
    CU_ASSERT_EQUAL(agent_manager_create_instance(f.m, "ok", "testvm", &bad[i], false, &v, &err),
                    -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  }
  /* Lookups with hostile ids. */
  CU_ASSERT_EQUAL(agent_manager_get(f.m, "../x", &v, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(agent_manager_get(f.m, "", &v, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(agent_manager_op(f.m, "missing", AGENT_OP_START, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(agent_manager_op(f.m, "taken", (agent_op)42, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  cleanup_free char *after = fx_listing(f.data);
  CU_ASSERT_STRING_EQUAL(before, after);
  fx_teardown(&f);
}

/* Every cell of the table in docs/architecture.md §3. */
static void test_state_table(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "t", "testvm", false);
  const int FP = CMN_FAILED_PRECONDITION;
  /* From Stopped. */
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESUME), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STOPPED);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  /* From Running. */
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESUME), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), 0);
  /* From Paused. */
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_PAUSED);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESUME), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0); /* Paused -> Standby */
  /* From Standby. */
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STANDBY);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESUME), FP);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STOPPED);
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-latest"));
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  /* Standby -> Running -> Stopped; Paused -> Stopped. */
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STOPPED);
  fx_teardown(&f);
}

static void test_capabilities(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "bare", "testbare", true);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_PAUSE), CMN_UNIMPLEMENTED);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), CMN_UNIMPLEMENTED);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  fx_teardown(&f);
}

/* Full standby, restore keeps a base, the next standby is a diff into it, and
 * guest memory survives every step. */
static void test_standby_restore_base_reuse(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "vm", "testvm", true);
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  fx_write_ram(&f, id, "file-A\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  agent_instance_view v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_STANDBY);
  CU_ASSERT_TRUE(v.has_snapshot);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_FULL);
  CU_ASSERT_TRUE(v.last_standby_us > 0);
  CU_ASSERT_EQUAL(v.vmm_pid, 0);
  agent_instance_view_free(&v);
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-latest/.complete"));
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  fx_write_ram(&f, id, "clobbered\n"); /* a restore must bring back file-A */
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "file-A\n");
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-latest"));
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-base/.complete"));
  v = fx_get(&f, id);
  CU_ASSERT_FALSE(v.has_snapshot);
  CU_ASSERT_TRUE(v.last_restore_us > 0);
  CU_ASSERT_TRUE(v.vmm_pid > 0);
  agent_instance_view_free(&v);

  fx_write_ram(&f, id, "file-A file-B\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_DIFF);
  agent_instance_view_free(&v);
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  CU_ASSERT_EQUAL(f.tv->n_snapshot_full, 1);
  CU_ASSERT_EQUAL(f.tv->n_snapshot_diff, 1);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram2 = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(ram2, "file-A file-B\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  fx_teardown(&f);
}

/* A LIVE_RAM_FILE driver: RAM in snapshot-base from boot, every standby a diff,
 * the VMM ended gracefully. */
static void test_live_ram_driver(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "live", "testlive", true);
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-base/memory"));
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-base/.complete"));
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  agent_instance_view v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_DIFF);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(f.live->n_shutdown, 1);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STOP), 0);
  fx_teardown(&f);
}

/* Stop's graceful timeout: 0 kills the VMM without asking it to exit; the
 * default (-1) asks (the graceful driver's shutdown is called). */
static void test_stop_graceful_timeout(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "grace", "testlive", true);
  cmn_error err = {0};
  agent_instance_view v = {0};
  CU_ASSERT_EQUAL(agent_manager_stop(f.m, id, 0, &v, &err), 0);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_STOPPED);
  CU_ASSERT_EQUAL(v.vmm_pid, 0);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(f.live->n_shutdown, 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  CU_ASSERT_EQUAL(agent_manager_stop(f.m, id, -1, NULL, &err), 0);
  CU_ASSERT_EQUAL(f.live->n_shutdown, 1);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  CU_ASSERT_EQUAL(agent_manager_stop(f.m, id, 500, NULL, &err), 0);
  CU_ASSERT_EQUAL(f.live->n_shutdown, 2);
  /* The per-call timeout does not stick: a later plain stop (delete) is graceful. */
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_START), 0);
  CU_ASSERT_EQUAL(agent_manager_delete(f.m, id, NULL, &err), 0);
  CU_ASSERT_EQUAL(f.live->n_shutdown, 3);
  fx_teardown(&f);
}

/* request_id: a retry returns the first instance, also after a restart (the
 * id is in the record); the same id with another request is refused. */
static void test_create_request_id(void)
{
  fixture f;
  fx_setup(&f);
  vmm_spec spec = fx_spec(&f);
  agent_label labels[] = {{(char[]){"team"}, (char[]){"infra"}}, {(char[]){"a"}, (char[]){"b"}}};
  agent_create_req req = {.name = "rq",
                          .hypervisor = "testvm",
                          .spec = &spec,
                          .labels = labels,
                          .n_labels = 2,
                          .request_id = "req-1"};
  cmn_error err = {0};
  agent_instance_view a = {0}, b = {0};
  CU_ASSERT_EQUAL_FATAL(agent_manager_create_req(f.m, &req, &a, &err), 0);
  CU_ASSERT_STRING_EQUAL(a.request_id, "req-1");
  CU_ASSERT_EQUAL(a.n_labels, 2);
  /* order does not matter */
  agent_label swapped[] = {{(char[]){"a"}, (char[]){"b"}}, {(char[]){"team"}, (char[]){"infra"}}};
  req.labels = swapped;
  CU_ASSERT_EQUAL(agent_manager_create_req(f.m, &req, &b, &err), 0);
  CU_ASSERT_STRING_EQUAL(b.id, a.id);
  agent_instance_view_free(&b);
  agent_manager_free(f.m);
  fx_open_manager(&f);
  CU_ASSERT_EQUAL(agent_manager_create_req(f.m, &req, &b, &err), 0);
  CU_ASSERT_STRING_EQUAL(b.id, a.id);
  agent_instance_view_free(&b);
  spec.vcpus = 2;
  CU_ASSERT_EQUAL(agent_manager_create_req(f.m, &req, &b, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "request_id");
  agent_instance_view *all = NULL;
  size_t n = 0;
  CU_ASSERT_EQUAL(agent_manager_list(f.m, AGENT_STATE_UNSPECIFIED, &all, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 1);
  agent_instance_views_free(all, n);
  agent_instance_view_free(&a);
  fx_teardown(&f);
}

/* Without base reuse every standby is full, a restore keeps no base, and the
 * consumed snapshot is removed off the restore's critical path (the monitor). */
static void test_no_base_reuse(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "full", "testfull", true);
  fx_write_ram(&f, id, "full-ram\n");
  for (int round = 0; round < 2; round++) {
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
    agent_instance_view v = fx_get(&f, id);
    CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_FULL);
    agent_instance_view_free(&v);
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
    CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-latest"));
    CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  }
  cleanup_free char *ram = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "full-ram\n");
  cleanup_free char *cmd =
      cmn_asprintf("ls -a %s/instances/%s/snapshots | grep -q retired", f.data, id);
  int left = 0;
  for (int i = 0; i < 100 && (left = (system(cmd) == 0)); i++)
    cmn_sleep_ms(20);
  CU_ASSERT_FALSE(left);
  fx_teardown(&f);
}

/* Step 4: a snapshot that fails half way resumes the VM, discards the
 * promoted base; the next standby is full and correct. */
static void test_standby_failure_discards_base(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "vm", "testvm", true);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-base/.complete"));
  fx_write_ram(&f, id, "precious\n");
  f.tv->fail_snapshot = 1;
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), CMN_INTERNAL);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_FALSE(fx_exists(&f, id, "paused"));
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-latest"));
  CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-base"));
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  agent_instance_view v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_FULL);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "precious\n");
  /* A failing pause leaves everything as it was. */
  f.tv->fail_pause = 1;
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), CMN_INTERNAL);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-base/.complete"));
  fx_teardown(&f);
}

/* Restore failure: the new VMM is killed and reaped, latest is untouched, the
 * instance stays Standby and a retry succeeds. */
static void test_restore_failure_keeps_latest(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "vm", "testvm", true);
  fx_write_ram(&f, id, "keep-me\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  cleanup_free char *latest_dir = fx_path(&f, id, "snapshots/snapshot-latest");
  cleanup_free char *before = fx_listing(latest_dir);
  f.tv->fail_restore_after_spawn = 1;
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), CMN_INTERNAL);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STANDBY);
  cleanup_free char *after = fx_listing(latest_dir);
  CU_ASSERT_STRING_EQUAL(before, after); /* snapshot-latest untouched */
  CU_ASSERT_TRUE(fx_exists(&f, id, "snapshots/snapshot-latest/.complete"));
  cleanup_free char *cmd =
      cmn_asprintf("pgrep -f '%s/instances/%s/[t]estvm' >/dev/null", f.data, id);
  CU_ASSERT_NOT_EQUAL(system(cmd), 0); /* no VMM left behind */
  f.tv->fail_restore = 1;
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), CMN_INTERNAL);
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "keep-me\n");
  fx_teardown(&f);
}

/* Fault points in the snapshot manager, armed through EMBER_FAULT. */
static void test_fault_points_fail(void)
{
  const char *points[] = {"snap.standby.after_pause", "snap.standby.after_unmark",
                          "snap.standby.after_promote", "snap.standby.after_snapshot"};
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    fixture f;
    fx_setup(&f);
    cleanup_free char *id = fx_create(&f, "vm", "testvm", true);
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
    fx_write_ram(&f, id, "state\n");
    setenv("EMBER_FAULT", points[i], 1);
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), CMN_INTERNAL);
    unsetenv("EMBER_FAULT");
    CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
    CU_ASSERT_FALSE(fx_exists(&f, id, "snapshots/snapshot-latest"));
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
    CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_RESTORE), 0);
    cleanup_free char *ram = fx_read(&f, id, "ram");
    CU_ASSERT_STRING_EQUAL(ram, "state\n");
    fx_teardown(&f);
  }
}

/* Records survive a restart of the manager; running VMMs are re-adopted, a VMM
 * that died meanwhile makes the instance Stopped with a reason. */
static void test_restart_readopts(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *run = fx_create(&f, "run", "testvm", true);
  cleanup_free char *sb = fx_create(&f, "sb", "testvm", true);
  cleanup_free char *dead = fx_create(&f, "dead", "testvm", true);
  cleanup_free char *paused = fx_create(&f, "paused", "testvm", true);
  CU_ASSERT_EQUAL(fx_op(&f, paused, AGENT_OP_PAUSE), 0);
  fx_write_ram(&f, sb, "sb-ram\n");
  CU_ASSERT_EQUAL(fx_op(&f, sb, AGENT_OP_STANDBY), 0);
  agent_instance_view v = fx_get(&f, run);
  pid_t run_pid = v.vmm_pid;
  agent_instance_view_free(&v);
  v = fx_get(&f, dead);
  pid_t dead_pid = v.vmm_pid;
  agent_instance_view_free(&v);

  agent_manager_free(f.m);
  kill(dead_pid, SIGKILL);
  waitpid(dead_pid, NULL, 0);
  fx_open_manager(&f);

  v = fx_get(&f, run);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(v.vmm_pid, run_pid);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(fx_state(&f, paused), AGENT_STATE_PAUSED);
  CU_ASSERT_EQUAL(fx_state(&f, sb), AGENT_STATE_STANDBY);
  v = fx_get(&f, dead);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_STOPPED);
  CU_ASSERT_PTR_NOT_NULL(v.status_message);
  agent_instance_view_free(&v);
  /* Still controllable. */
  CU_ASSERT_EQUAL(fx_op(&f, run, AGENT_OP_STANDBY), 0);
  CU_ASSERT_EQUAL(fx_op(&f, sb, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, sb, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "sb-ram\n");
  CU_ASSERT_EQUAL(fx_op(&f, paused, AGENT_OP_RESUME), 0);
  fx_teardown(&f);
}

/* Half-done standbys and restores as an agent crash leaves them. */
static void test_recovery_half_done(void)
{
  fixture f;
  fx_setup(&f);
  cmn_error err = {0};
  /* a: crashed after promote, VMM alive and paused -> Running, target gone. */
  cleanup_free char *a = fx_create(&f, "a", "testvm", true);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY), 0);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_RESTORE), 0);
  /* b: crashed after the marker, VMM alive and paused -> Standby, VMM gone. */
  cleanup_free char *b = fx_create(&f, "b", "testvm", true);
  fx_write_ram(&f, b, "b-ram\n");
  /* c: crashed after a restore resumed, before latest was retired -> Running. */
  cleanup_free char *c = fx_create(&f, "c", "testvm", true);
  CU_ASSERT_EQUAL(fx_op(&f, c, AGENT_OP_STANDBY), 0);
  /* d: crashed after a restore retired latest into the base, before the
   * record said Running -> Running, the VMM kept. */
  cleanup_free char *d = fx_create(&f, "d", "testvm", true);
  CU_ASSERT_EQUAL(fx_op(&f, d, AGENT_OP_STANDBY), 0);
  agent_manager_free(f.m);
  f.m = NULL;

  cleanup_free char *a_base = fx_path(&f, a, "snapshots/snapshot-base");
  cleanup_free char *a_latest = fx_path(&f, a, "snapshots/snapshot-latest");
  CU_ASSERT_EQUAL(snap_unmark(a_base, &err), 0);
  CU_ASSERT_EQUAL(cmn_rename_durable(a_base, a_latest, &err), 0);
  cleanup_free char *a_paused = fx_path(&f, a, "paused");
  cmn_file_write_atomic(a_paused, "", 0, 0640, &err);

  cleanup_free char *b_latest = fx_path(&f, b, "snapshots/snapshot-latest");
  cmn_mkdir_p(b_latest, 0750, &err);
  cleanup_free char *b_mem = fx_path(&f, b, "snapshots/snapshot-latest/memory");
  cmn_file_write_atomic(b_mem, "b-ram\n", 6, 0640, &err);
  CU_ASSERT_EQUAL(snap_mark_complete(b_latest, VMM_SNAP_FULL, &err), 0);
  cleanup_free char *b_paused = fx_path(&f, b, "paused");
  cmn_file_write_atomic(b_paused, "", 0, 0640, &err);

  /* c: start a VMM by hand as the driver's restore would have. */
  fx_spawn_vmm(&f, c);

  cleanup_free char *d_latest = fx_path(&f, d, "snapshots/snapshot-latest");
  cleanup_free char *d_base = fx_path(&f, d, "snapshots/snapshot-base");
  CU_ASSERT_EQUAL(cmn_rename_durable(d_latest, d_base, &err), 0);
  cmn_proc d_vmm = fx_spawn_vmm(&f, d);

  fx_open_manager(&f);
  agent_instance_view dv = fx_get(&f, d);
  CU_ASSERT_EQUAL(dv.state, AGENT_STATE_RUNNING);
  CU_ASSERT_EQUAL(dv.vmm_pid, d_vmm.pid);
  agent_instance_view_free(&dv);
  CU_ASSERT_EQUAL(fx_state(&f, a), AGENT_STATE_RUNNING);
  CU_ASSERT_FALSE(fx_exists(&f, a, "snapshots/snapshot-latest"));
  CU_ASSERT_FALSE(fx_exists(&f, a, "paused"));
  CU_ASSERT_EQUAL(fx_state(&f, b), AGENT_STATE_STANDBY);
  agent_instance_view v = fx_get(&f, b);
  CU_ASSERT_EQUAL(v.vmm_pid, 0);
  agent_instance_view_free(&v);
  agent_instance_view cv = fx_get(&f, c);
  if (cv.state != AGENT_STATE_RUNNING)
    fprintf(stderr, "c is %s: %s\n", agent_state_name(cv.state),
            cv.status_message ? cv.status_message : "");
  agent_instance_view_free(&cv);
  CU_ASSERT_EQUAL(fx_state(&f, c), AGENT_STATE_RUNNING);
  CU_ASSERT_FALSE(fx_exists(&f, c, "snapshots/snapshot-latest"));
  CU_ASSERT_TRUE(fx_exists(&f, c, "snapshots/snapshot-base/.complete"));
  /* The retried standby of a is full (its base was discarded), b restores. */
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY), 0);
  v = fx_get(&f, a);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_FULL);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, b, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "b-ram\n");
  fx_teardown(&f);
}

typedef struct ev_log {
  pthread_mutex_t mu;
  int n;
  agent_op ops[64];
  agent_state news[64];
} ev_log;

static void ev_record(void *ctx, const agent_event *ev)
{
  ev_log *l = ctx;
  pthread_mutex_lock(&l->mu);
  if (l->n < 64) {
    l->ops[l->n] = ev->op;
    l->news[l->n] = ev->new_state;
    l->n++;
  }
  pthread_mutex_unlock(&l->mu);
}

/* A VMM killed from outside is noticed (Stopped, reason, OBSERVED event). */
static void test_monitor_and_events(void)
{
  fixture f;
  fx_setup(&f);
  ev_log log = {.mu = PTHREAD_MUTEX_INITIALIZER};
  int h = agent_manager_subscribe(f.m, ev_record, &log);
  cleanup_free char *id = fx_create(&f, "vm", "testvm", true);
  agent_instance_view v = fx_get(&f, id);
  kill(v.vmm_pid, SIGKILL);
  agent_instance_view_free(&v);
  agent_state st = AGENT_STATE_RUNNING;
  for (int i = 0; i < 200 && st != AGENT_STATE_STOPPED; i++) {
    cmn_sleep_ms(50);
    st = fx_state(&f, id);
  }
  CU_ASSERT_EQUAL(st, AGENT_STATE_STOPPED);
  v = fx_get(&f, id);
  CU_ASSERT_PTR_NOT_NULL(v.status_message);
  if (v.status_message)
    CU_ASSERT_PTR_NOT_NULL(strstr(v.status_message, "signal 9"));
  agent_instance_view_free(&v);
  agent_manager_unsubscribe(f.m, h);
  pthread_mutex_lock(&log.mu);
  CU_ASSERT_TRUE(log.n >= 3);
  if (log.n >= 3) {
    CU_ASSERT_EQUAL(log.ops[0], AGENT_OP_CREATE);
    CU_ASSERT_EQUAL(log.ops[1], AGENT_OP_START);
    CU_ASSERT_EQUAL(log.news[1], AGENT_STATE_RUNNING);
    CU_ASSERT_EQUAL(log.ops[2], AGENT_OP_OBSERVED);
    CU_ASSERT_EQUAL(log.news[2], AGENT_STATE_STOPPED);
  }
  pthread_mutex_unlock(&log.mu);
  fx_teardown(&f);
}

typedef struct hammer_arg {
  fixture *f;
  char **ids;
  int n_ids;
  unsigned seed;
  int calls;
  int bad_status;
} hammer_arg;

static void *hammer_main(void *p)
{
  hammer_arg *a = p;
  static const agent_op ops[] = {AGENT_OP_START,  AGENT_OP_STOP,    AGENT_OP_PAUSE,
                                 AGENT_OP_RESUME, AGENT_OP_STANDBY, AGENT_OP_RESTORE};
  for (int i = 0; i < 60; i++) {
    const char *id = a->ids[rand_r(&a->seed) % (unsigned)a->n_ids];
    agent_op op = ops[rand_r(&a->seed) % 6];
    cmn_error err = {0};
    agent_instance_view v = {0};
    int rc = agent_manager_op(a->f->m, id, op, &v, &err);
    a->calls++;
    if (rc == 0)
      agent_instance_view_free(&v);
    else if (err.code != CMN_FAILED_PRECONDITION)
      a->bad_status++;
    if (agent_manager_get(a->f->m, id, &v, &err) == 0)
      agent_instance_view_free(&v);
  }
  return NULL;
}

/* Conflicting calls from many threads: only valid transitions, proper
 * statuses, and the record on disk matches what the API reports. */
static void test_concurrent_ops(void)
{
  fixture f;
  fx_setup(&f);
  char *ids[3];
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "c%d", i);
    ids[i] = fx_create(&f, name, "testvm", true);
  }
  pthread_t th[8];
  hammer_arg args[8];
  for (int i = 0; i < 8; i++) {
    args[i] = (hammer_arg){.f = &f, .ids = ids, .n_ids = 3, .seed = (unsigned)i * 7919u + 1};
    pthread_create(&th[i], NULL, hammer_main, &args[i]);
  }
  int calls = 0, bad = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    calls += args[i].calls;
    bad += args[i].bad_status;
  }
  CU_ASSERT_EQUAL(calls, 480);
  CU_ASSERT_EQUAL(bad, 0);
  for (int i = 0; i < 3; i++) {
    agent_instance_view v = fx_get(&f, ids[i]);
    cleanup_free char *json = fx_read(&f, ids[i], "instance.json");
    const char *names[] = {"", "\"stopped\"", "\"running\"", "\"paused\"", "\"standby\""};
    CU_ASSERT_PTR_NOT_NULL(strstr(json, names[v.state]));
    CU_ASSERT_EQUAL(fx_exists(&f, ids[i], "snapshots/snapshot-latest"),
                    v.state == AGENT_STATE_STANDBY);
    agent_instance_view_free(&v);
    free(ids[i]);
  }
  fx_teardown(&f);
}

/* ---- forks and saved snapshots (manager_fork.c) ---- */

static int fx_fork(fixture *f, const char *source, const char *snapshot, const char *const *names,
                   size_t n, bool standby, agent_fork_result *res)
{
  agent_fork_req req = {
      .source = source, .snapshot = snapshot, .names = names, .n_names = n, .standby = standby};
  cmn_error err = {0};
  memset(res, 0, sizeof *res);
  if (agent_manager_fork(f->m, &req, res, &err) < 0) {
    fprintf(stderr, "fork: %s\n", err.msg);
    return err.code;
  }
  return 0;
}

static size_t fx_snapshot_count(fixture *f)
{
  agent_snapshot_view *v = NULL;
  size_t n = 0;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_snapshot_list(f->m, &v, &n, &err), 0);
  agent_snapshot_views_free(v, n);
  return n;
}

/* A Running source: paused for the snapshot, resumed; clones start from its
 * memory, diverge, and stand by on their own (full first, then diffs); the
 * hidden snapshot goes with the last clone. */
static void test_fork_running(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "src", "testlive", true);
  fx_write_ram(&f, id, "marker-src\n");
  const char *const names[] = {"c1", "c2", "c3"};
  agent_fork_result res;
  CU_ASSERT_EQUAL_FATAL(fx_fork(&f, "src", NULL, names, 3, false, &res), 0);
  CU_ASSERT_EQUAL_FATAL(res.n_clones, 3);
  CU_ASSERT_PTR_NOT_NULL(res.snapshot_id);
  CU_ASSERT_TRUE(res.snapshot_us > 0);
  CU_ASSERT_EQUAL(f.live->n_save, 1);
  CU_ASSERT_EQUAL(f.live->n_restore_frozen, 3);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_FALSE(fx_exists(&f, id, "paused")); /* resumed */
  for (size_t i = 0; i < 3; i++) {
    agent_instance_view *c = &res.clones[i];
    CU_ASSERT_STRING_EQUAL(c->name, names[i]);
    CU_ASSERT_EQUAL(c->state, AGENT_STATE_RUNNING);
    CU_ASSERT_TRUE(c->vmm_pid > 0);
    CU_ASSERT_STRING_EQUAL(c->fork_snapshot, res.snapshot_id);
    CU_ASSERT_STRING_EQUAL(c->fork_source, id);
    cleanup_free char *ram = fx_read(&f, c->id, "ram");
    CU_ASSERT_STRING_EQUAL(ram, "marker-src\n");
    /* No base: the clone's RAM is a private mapping of the frozen folder. */
    CU_ASSERT_FALSE(fx_exists(&f, c->id, "snapshots/snapshot-base"));
    CU_ASSERT_FALSE(fx_exists(&f, c->id, "snapshots/snapshot-latest"));
  }
  /* Clone 1 diverges and stands by: full, then diff after its restore. */
  const char *c1 = res.clones[0].id;
  fx_write_ram(&f, c1, "marker-c1\n");
  CU_ASSERT_EQUAL(fx_op(&f, c1, AGENT_OP_STANDBY), 0);
  agent_instance_view v = fx_get(&f, c1);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_FULL);
  agent_instance_view_free(&v);
  CU_ASSERT_EQUAL(fx_op(&f, c1, AGENT_OP_RESTORE), 0);
  cleanup_free char *r1 = fx_read(&f, c1, "ram");
  CU_ASSERT_STRING_EQUAL(r1, "marker-c1\n");
  CU_ASSERT_EQUAL(fx_op(&f, c1, AGENT_OP_STANDBY), 0);
  v = fx_get(&f, c1);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_DIFF);
  agent_instance_view_free(&v);
  /* The source keeps its own state and its base: its standby is a diff. */
  cleanup_free char *rs = fx_read(&f, id, "ram");
  CU_ASSERT_STRING_EQUAL(rs, "marker-src\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.last_snapshot_kind, AGENT_SNAP_DIFF);
  agent_instance_view_free(&v);
  /* The snapshot is listed (hidden, three clones) until the last clone goes. */
  agent_snapshot_view *sv = NULL;
  size_t ns = 0;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_snapshot_list(f.m, &sv, &ns, &err), 0);
  CU_ASSERT_EQUAL_FATAL(ns, 1);
  CU_ASSERT_PTR_NULL(sv[0].name);
  CU_ASSERT_EQUAL(sv[0].n_clone_ids, 3);
  CU_ASSERT_TRUE(sv[0].size_bytes > 0);
  CU_ASSERT_STRING_EQUAL(sv[0].source_name, "src");
  agent_snapshot_views_free(sv, ns);
  cleanup_free char *snap_dir = cmn_asprintf("%s/snapshots/%s", f.data, res.snapshot_id);
  CU_ASSERT_TRUE(cmn_is_dir(snap_dir));
  for (size_t i = 0; i < 3; i++)
    CU_ASSERT_EQUAL(agent_manager_delete(f.m, res.clones[i].id, NULL, &err), 0);
  CU_ASSERT_FALSE(cmn_path_exists(snap_dir));
  CU_ASSERT_EQUAL(fx_snapshot_count(&f), 0);
  agent_fork_result_free(&res);
  fx_teardown(&f);
}

/* A saved snapshot of a Standby instance outlives the instance and every
 * clone, and cannot be deleted while a clone depends on it. */
static void test_fork_saved_snapshot(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "src", "testvm", true);
  fx_write_ram(&f, id, "golden\n");
  CU_ASSERT_EQUAL(fx_op(&f, id, AGENT_OP_STANDBY), 0);
  cleanup_free char *inst_dir = cmn_asprintf("%s/instances/%s", f.data, id);
  cleanup_free char *before = fx_listing(inst_dir);
  agent_snapshot_view sv = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_manager_snapshot_create(f.m, "src", "gold", &sv, &err), 0);
  CU_ASSERT_STRING_EQUAL(sv.name, "gold");
  CU_ASSERT_EQUAL(sv.n_clone_ids, 0);
  CU_ASSERT_STRING_EQUAL(sv.source.hypervisor, "testvm");
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_STANDBY);
  /* The source's own snapshot is untouched. */
  cleanup_free char *after = fx_listing(inst_dir);
  CU_ASSERT_STRING_EQUAL(before, after);
  CU_ASSERT_PTR_NOT_NULL(strstr(before, "snapshot-latest/memory"));
  /* A second snapshot of that name is refused. */
  agent_snapshot_view dup = {0};
  CU_ASSERT_EQUAL(agent_manager_snapshot_create(f.m, "src", "gold", &dup, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  /* The source goes; the snapshot stays and forks. */
  CU_ASSERT_EQUAL(agent_manager_delete(f.m, id, NULL, &err), 0);
  const char *const names[] = {"a", "b"};
  agent_fork_result res;
  CU_ASSERT_EQUAL_FATAL(fx_fork(&f, NULL, "gold", names, 2, true, &res), 0);
  CU_ASSERT_EQUAL_FATAL(res.n_clones, 2);
  CU_ASSERT_EQUAL(res.snapshot_us, 0);
  CU_ASSERT_EQUAL(res.clones[0].state, AGENT_STATE_STANDBY);
  CU_ASSERT_TRUE(res.clones[0].has_snapshot);
  CU_ASSERT_EQUAL(f.tv->n_restore_frozen, 0);
  err = (cmn_error){0};
  CU_ASSERT_EQUAL(agent_manager_snapshot_delete(f.m, "gold", NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, res.clones[0].id));
  CU_ASSERT_EQUAL(fx_op(&f, res.clones[1].id, AGENT_OP_RESTORE), 0);
  cleanup_free char *ram = fx_read(&f, res.clones[1].id, "ram");
  CU_ASSERT_STRING_EQUAL(ram, "golden\n");
  CU_ASSERT_EQUAL(f.tv->n_restore_frozen, 1);
  /* A restart keeps clones and snapshot; a clone of a clone works too. */
  agent_manager_free(f.m);
  fx_open_manager(&f);
  CU_ASSERT_EQUAL(fx_state(&f, res.clones[0].id), AGENT_STATE_STANDBY);
  CU_ASSERT_EQUAL(fx_state(&f, res.clones[1].id), AGENT_STATE_RUNNING);
  const char *const grand[] = {"g"};
  agent_fork_result r2;
  CU_ASSERT_EQUAL(fx_fork(&f, "a", NULL, grand, 1, false, &r2), 0);
  CU_ASSERT_EQUAL(r2.n_clones, 1);
  if (r2.n_clones == 1) {
    cleanup_free char *g = fx_read(&f, r2.clones[0].id, "ram");
    CU_ASSERT_STRING_EQUAL(g, "golden\n");
    CU_ASSERT_EQUAL(agent_manager_delete(f.m, r2.clones[0].id, NULL, &err), 0);
  }
  agent_fork_result_free(&r2);
  for (size_t i = 0; i < 2; i++)
    CU_ASSERT_EQUAL(agent_manager_delete(f.m, res.clones[i].id, NULL, &err), 0);
  CU_ASSERT_EQUAL(fx_snapshot_count(&f), 1); /* the saved one */
  CU_ASSERT_EQUAL(agent_manager_snapshot_delete(f.m, "gold", NULL, &err), 0);
  CU_ASSERT_EQUAL(fx_snapshot_count(&f), 0);
  err = (cmn_error){0};
  CU_ASSERT_EQUAL(agent_manager_snapshot_delete(f.m, "gold", NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  agent_fork_result_free(&res);
  agent_snapshot_view_free(&sv);
  fx_teardown(&f);
}

/* Refused forks change nothing on disk; a failed save resumes the source. */
static void test_fork_refused(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "src", "testvm", true);
  cleanup_free char *stopped = fx_create(&f, "off", "testvm", false);
  cleanup_free char *nofork = fx_create(&f, "nf", "testfull", true);
  cleanup_free char *before = fx_listing_files(f.data);
  const char *const one[] = {"x"};
  const char *const dup[] = {"x", "x"};
  const char *const taken[] = {"y", "off"};
  const char *const bad[] = {"../x"};
  agent_fork_result res;
  CU_ASSERT_EQUAL(fx_fork(&f, NULL, NULL, one, 1, false, &res), CMN_INVALID_ARGUMENT);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "src", "gold", one, 1, false, &res), CMN_INVALID_ARGUMENT);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, one, 0, false, &res), CMN_INVALID_ARGUMENT);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, dup, 2, false, &res), CMN_INVALID_ARGUMENT);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, bad, 1, false, &res), CMN_INVALID_ARGUMENT);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, taken, 2, false, &res), CMN_ALREADY_EXISTS);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "nope", NULL, one, 1, false, &res), CMN_NOT_FOUND);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, NULL, "nope", one, 1, false, &res), CMN_NOT_FOUND);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "off", NULL, one, 1, false, &res), CMN_FAILED_PRECONDITION);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_fork(&f, "nf", NULL, one, 1, false, &res), CMN_UNIMPLEMENTED);
  agent_fork_result_free(&res);
  f.tv->fail_save = 1;
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, one, 1, false, &res), CMN_INTERNAL);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  CU_ASSERT_FALSE(fx_exists(&f, id, "paused"));
  cleanup_free char *after = fx_listing_files(f.data);
  CU_ASSERT_STRING_EQUAL(before, after);
  CU_ASSERT_EQUAL(fx_snapshot_count(&f), 0);
  /* A failed restore leaves the clone made, in Standby, and says so. */
  f.tv->fail_restore = 1;
  CU_ASSERT_EQUAL(fx_fork(&f, "src", NULL, one, 1, false, &res), CMN_INTERNAL);
  CU_ASSERT_EQUAL(res.n_clones, 1);
  if (res.n_clones == 1)
    CU_ASSERT_EQUAL(res.clones[0].state, AGENT_STATE_STANDBY);
  agent_fork_result_free(&res);
  CU_ASSERT_EQUAL(fx_op(&f, "x", AGENT_OP_RESTORE), 0);
  (void)stopped;
  (void)nofork;
  fx_teardown(&f);
}

/* Leftovers of a fork cut short are removed at the next start: a clone being
 * assembled, a snapshot being written, a hidden snapshot no clone uses. */
static void test_fork_leftovers(void)
{
  fixture f;
  fx_setup(&f);
  cleanup_free char *id = fx_create(&f, "src", "testvm", true);
  const char *const one[] = {"x"};
  agent_fork_result res;
  CU_ASSERT_EQUAL_FATAL(fx_fork(&f, "src", NULL, one, 1, true, &res), 0);
  cleanup_free char *snap_dir = cmn_asprintf("%s/snapshots/%s", f.data, res.snapshot_id);
  agent_manager_free(f.m);
  f.m = NULL;
  /* Drop the clone by hand (as if its record never was written). */
  cleanup_free char *clone_dir = cmn_asprintf("%s/instances/%s", f.data, res.clones[0].id);
  cleanup_free char *half = cmn_asprintf("%s/instances/.fork-%s", f.data, res.clones[0].id);
  CU_ASSERT_EQUAL(rename(clone_dir, half), 0);
  cleanup_free char *tmp = cmn_asprintf("%s/snapshots/.tmp-s-0000000000000000", f.data);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_mkdir_p(tmp, 0750, &err), 0);
  fx_open_manager(&f);
  CU_ASSERT_FALSE(cmn_path_exists(half));
  CU_ASSERT_FALSE(cmn_path_exists(tmp));
  CU_ASSERT_FALSE(cmn_path_exists(snap_dir));
  CU_ASSERT_EQUAL(fx_snapshot_count(&f), 0);
  CU_ASSERT_EQUAL(fx_state(&f, id), AGENT_STATE_RUNNING);
  agent_fork_result_free(&res);
  fx_teardown(&f);
}

int main(void)
{
  cmn_log_setup(CMN_LOG_ERROR, 2);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("manager", NULL, NULL);
  CU_add_test(s, "create_get_list_delete", test_create_get_list_delete);
  CU_add_test(s, "bad_input_changes_nothing", test_bad_input_changes_nothing);
  CU_add_test(s, "names_never_ids", test_names_never_ids);
  CU_add_test(s, "unavailable_type_refused", test_unavailable_type_refused);
  CU_add_test(s, "state_table", test_state_table);
  CU_add_test(s, "capabilities", test_capabilities);
  CU_add_test(s, "standby_restore_base_reuse", test_standby_restore_base_reuse);
  CU_add_test(s, "live_ram_driver", test_live_ram_driver);
  CU_add_test(s, "stop_graceful_timeout", test_stop_graceful_timeout);
  CU_add_test(s, "create_request_id", test_create_request_id);
  CU_add_test(s, "no_base_reuse", test_no_base_reuse);
  CU_add_test(s, "standby_failure_discards_base", test_standby_failure_discards_base);
  CU_add_test(s, "restore_failure_keeps_latest", test_restore_failure_keeps_latest);
  CU_add_test(s, "fault_points_fail", test_fault_points_fail);
  CU_add_test(s, "restart_readopts", test_restart_readopts);
  CU_add_test(s, "recovery_half_done", test_recovery_half_done);
  CU_add_test(s, "monitor_and_events", test_monitor_and_events);
  CU_add_test(s, "concurrent_ops", test_concurrent_ops);
  CU_add_test(s, "fork_running", test_fork_running);
  CU_add_test(s, "fork_saved_snapshot", test_fork_saved_snapshot);
  CU_add_test(s, "fork_refused", test_fork_refused);
  CU_add_test(s, "fork_leftovers", test_fork_leftovers);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
