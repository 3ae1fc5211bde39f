/* test_warm.c: CUnit tests of the warm VMM pool: its config ("warm_pool",
 * agent/warm.c) with every refused value naming its key, the choice of the
 * next instance (sizes, shapes, recency, back-off), and the manager
 * (agent/manager_warm.c) with the test-only driver, whose warm VMM is a real
 * child process: a standby gets one, the restore runs in it, the pool
 * refills; another operation, a delete, a dead VMM, a failed prepare and the
 * manager's end each end or skip it, leaving no process and no guest lost. */
#include "agent/manager.h"
#include "agent/warm.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"
#include "test/unit/testvm_driver.h"

#include <CUnit/Basic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- config ---- */

static int parse(const char *json, agent_warm_config *cfg, cmn_error *err)
{
  cJSON *o = cJSON_Parse(json);
  CU_ASSERT_PTR_NOT_NULL_FATAL(o);
  int rc = agent_warm_config_from_json(cfg, o, err);
  cJSON_Delete(o);
  return rc;
}

static void test_config(void)
{
  agent_warm_config cfg = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL(parse("{\"qemu\": {\"size\": 4, \"shapes\": [{\"memory_mib\": 256, \"vcpus\": "
                        "1}, {\"vcpus\": 2}]}, \"firecracker\": {\"size\": 0}}",
                        &cfg, &err),
                  0);
  CU_ASSERT_EQUAL(cfg.n_pools, 2);
  const agent_warm_pool *q = agent_warm_pool_of(&cfg, "qemu");
  CU_ASSERT_PTR_NOT_NULL_FATAL(q);
  CU_ASSERT_EQUAL(q->size, 4);
  CU_ASSERT_EQUAL(q->n_shapes, 2);
  CU_ASSERT(agent_warm_fits(q, 256, 1));
  CU_ASSERT(agent_warm_fits(q, 512, 2)); /* the second shape: any memory, 2 vCPUs */
  CU_ASSERT(!agent_warm_fits(q, 512, 1));
  CU_ASSERT(!agent_warm_fits(agent_warm_pool_of(&cfg, "firecracker"), 128, 1)); /* size 0 */
  CU_ASSERT_PTR_NULL(agent_warm_pool_of(&cfg, "cloud-hypervisor"));
  agent_warm_config copy;
  agent_warm_config_copy(&copy, &cfg);
  CU_ASSERT_EQUAL(copy.n_pools, 2);
  CU_ASSERT(agent_warm_fits(agent_warm_pool_of(&copy, "qemu"), 256, 1));
  agent_warm_config_free(&copy);

  static const struct {
    const char *json;
    const char *key;
  } bad[] = {
      {"[]", "warm_pool must be an object"},
      {"{\"qemu\": 3}", "warm_pool.qemu must be an object"},
      {"{\"qemu\": {\"size\": -1}}", "warm_pool.qemu.size"},
      {"{\"qemu\": {\"size\": 65}}", "warm_pool.qemu.size"},
      {"{\"qemu\": {\"size\": 1.5}}", "warm_pool.qemu.size"},
      {"{\"qemu\": {\"size\": \"2\"}}", "warm_pool.qemu.size"},
      {"{\"qemu\": {\"sise\": 2}}", "warm_pool.qemu.sise: unknown key"},
      {"{\"qemu\": {\"size\": 1, \"shapes\": {}}}", "warm_pool.qemu.shapes"},
      {"{\"qemu\": {\"size\": 1, \"shapes\": [{\"memory_mib\": 0}]}}",
       "warm_pool.qemu.shapes[0].memory_mib"},
      {"{\"qemu\": {\"size\": 1, \"shapes\": [{}, {\"vcpus\": 9999}]}}",
       "warm_pool.qemu.shapes[1].vcpus"},
      {"{\"qemu\": {\"size\": 1, \"shapes\": [{\"disks\": 1}]}}",
       "warm_pool.qemu.shapes[0].disks: unknown key"},
      {"{\"qemu\": {\"size\": 1}, \"qemu\": {\"size\": 2}}", "warm_pool.qemu appears twice"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cmn_error e = {0};
    CU_ASSERT_EQUAL(parse(bad[i].json, &cfg, &e), -1);
    CU_ASSERT_EQUAL(e.code, CMN_INVALID_ARGUMENT);
    if (strstr(e.msg, bad[i].key) == NULL)
      fprintf(stderr, "config %s: \"%s\" lacks \"%s\"\n", bad[i].json, e.msg, bad[i].key);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad[i].key));
  }
  /* A refused config leaves the one before it. */
  CU_ASSERT_EQUAL(agent_warm_pool_of(&cfg, "qemu")->size, 4);
  agent_warm_config_free(&cfg);
}

/* ---- the choice ---- */

static void test_pick(void)
{
  agent_warm_config cfg = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(parse("{\"qemu\": {\"size\": 2, \"shapes\": [{\"memory_mib\": 256}]}, "
                              "\"firecracker\": {\"size\": 1}}",
                              &cfg, &err),
                        0);
  agent_warm_cand c[] = {
      /* 0: fits, older standby */
      {.hypervisor = "qemu",
       .memory_mib = 256,
       .vcpus = 1,
       .standby = true,
       .can_warm = true,
       .standby_at = 10},
      /* 1: fits, newest: first */
      {.hypervisor = "qemu",
       .memory_mib = 256,
       .vcpus = 2,
       .standby = true,
       .can_warm = true,
       .standby_at = 30},
      /* 2: wrong shape */
      {.hypervisor = "qemu",
       .memory_mib = 512,
       .vcpus = 1,
       .standby = true,
       .can_warm = true,
       .standby_at = 40},
      /* 3: running */
      {.hypervisor = "qemu",
       .memory_mib = 256,
       .vcpus = 1,
       .standby = false,
       .can_warm = true,
       .standby_at = 50},
      /* 4: a driver without warm restore */
      {.hypervisor = "firecracker",
       .memory_mib = 32,
       .vcpus = 1,
       .standby = true,
       .can_warm = false,
       .standby_at = 60},
      /* 5: backing off until 100 */
      {.hypervisor = "qemu",
       .memory_mib = 256,
       .vcpus = 1,
       .standby = true,
       .can_warm = true,
       .standby_at = 70,
       .retry_at_us = 100},
      /* 6: no pool for its type */
      {.hypervisor = "cloud-hypervisor",
       .memory_mib = 256,
       .vcpus = 1,
       .standby = true,
       .can_warm = true,
       .standby_at = 80},
  };
  size_t n = sizeof c / sizeof c[0];
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 50), 1);
  c[1].warm = true;
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 50), 0);
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 100), 5); /* the back-off is over: newer */
  c[0].warm = true;
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 200), -1); /* qemu's pool holds 2 */
  c[4].can_warm = true;
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 200), 4); /* another type's pool has room */
  c[4].warm = true;
  CU_ASSERT_EQUAL(agent_warm_pick(&cfg, c, n, 200), -1);
  CU_ASSERT_EQUAL(agent_warm_pick(NULL, c, n, 200), -1);
  agent_warm_config_free(&cfg);
}

/* ---- the manager with the test driver ---- */

typedef struct fixture {
  char root[64];
  char *data;
  char *kernel;
  vmm_registry *reg;
  agent_manager *m;
  testvm_state *tv;
  agent_warm_config warm;
} fixture;

static const vmm_driver *const test_drivers[] = {&testvm_driver, &testvm_full_driver};

static void fx_open(fixture *f)
{
  cmn_error err = {0};
  agent_manager_config cfg = {
      .data_dir = f->data, .stop_timeout_ms = 2000, .monitor = true, .warm = &f->warm};
  f->m = agent_manager_create(&cfg, f->reg, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->m);
}

static void fx_setup(fixture *f, const char *pool_json)
{
  memset(f, 0, sizeof *f);
  snprintf(f->root, sizeof f->root, "/tmp/ember-warm-XXXXXX");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->root));
  f->data = cmn_asprintf("%s/data", f->root);
  f->kernel = cmn_asprintf("%s/vmlinux", f->root);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_file_write_atomic(f->kernel, "k", 1, 0644, &err), 0);
  CU_ASSERT_EQUAL_FATAL(parse(pool_json, &f->warm, &err), 0);
  f->reg =
      vmm_registry_create(NULL, test_drivers, sizeof test_drivers / sizeof test_drivers[0], &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->reg);
  f->tv = vmm_registry_get(f->reg, "testvm")->state;
  fx_open(f);
}

static void fx_teardown(fixture *f)
{
  agent_instance_view *v = NULL;
  size_t n = 0;
  cmn_error err = {0};
  if (agent_manager_list(f->m, AGENT_STATE_UNSPECIFIED, &v, &n, &err) == 0) {
    for (size_t i = 0; i < n; i++)
      agent_manager_op(f->m, v[i].id, AGENT_OP_STOP, NULL, &err);
    agent_instance_views_free(v, n);
  }
  agent_manager_free(f->m);
  vmm_registry_free(f->reg);
  agent_warm_config_free(&f->warm);
  cmn_rm_rf(f->root, &err);
  free(f->data);
  free(f->kernel);
}

static char *fx_create(fixture *f, const char *name, const char *type, uint64_t mib)
{
  vmm_spec spec = {.vcpus = 1, .memory_mib = mib, .kernel = f->kernel};
  agent_create_req req = {.name = name, .hypervisor = type, .spec = &spec, .start = true};
  agent_instance_view v = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_manager_create_req(f->m, &req, &v, &err), 0);
  char *id = cmn_strdup(v.id);
  agent_instance_view_free(&v);
  return id;
}

static int fx_op(fixture *f, const char *id, agent_op op, int32_t *pid)
{
  agent_instance_view v = {0};
  cmn_error err = {0};
  int rc = agent_manager_op(f->m, id, op, &v, &err);
  if (rc == 0 && pid != NULL)
    *pid = v.vmm_pid;
  if (rc < 0)
    fprintf(stderr, "op %d on %s: %s\n", (int)op, id, err.msg);
  agent_instance_view_free(&v);
  return rc;
}

/* The pool's figures for testvm. */
static agent_warm_stats fx_stats(fixture *f)
{
  agent_warm_stats *s = NULL, out = {0};
  size_t n = 0;
  CU_ASSERT_EQUAL(agent_manager_warm_stats(f->m, &s, &n), 0);
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].hypervisor, "testvm") == 0)
      out = s[i];
  free(s);
  return out;
}

static void nap(int ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits up to 5 s for `warm` warm VMMs and at least `prepared` prepares. */
static bool fx_wait_warm(fixture *f, int warm, uint64_t prepared)
{
  for (int i = 0; i < 100; i++) {
    agent_warm_stats s = fx_stats(f);
    if (s.warm == warm && s.prepared >= prepared)
      return true;
    nap(50);
  }
  return false;
}

static bool pid_alive(int pid)
{
  cmn_proc p = {(pid_t)pid, 0};
  return pid > 0 && cmn_proc_alive(&p);
}

static int warm_pid(fixture *f) { return __atomic_load_n(&f->tv->warm_pid, __ATOMIC_RELAXED); }

/* The test driver's counters and switches, which the pool thread uses at the
 * same time: atomics, as the driver's side. */
#define TV_GET(f, field) __atomic_load_n(&(f).tv->field, __ATOMIC_RELAXED)
#define TV_SET(f, field, v) __atomic_store_n(&(f).tv->field, (v), __ATOMIC_RELAXED)

static void test_manager_standby_restore(void)
{
  fixture f;
  fx_setup(&f, "{\"testvm\": {\"size\": 1, \"shapes\": [{\"memory_mib\": 64}]}}");
  cleanup_free char *a = fx_create(&f, "a", "testvm", 64);
  cleanup_free char *b = fx_create(&f, "b", "testvm", 64);
  cleanup_free char *big = fx_create(&f, "big", "testvm", 128);
  cleanup_free char *other = fx_create(&f, "other", "testfull", 64);
  CU_ASSERT_EQUAL(fx_stats(&f).size, 1);

  /* Shapes and types the pool does not hold get nothing. */
  CU_ASSERT_EQUAL(fx_op(&f, big, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_EQUAL(fx_op(&f, other, AGENT_OP_STANDBY, NULL), 0);
  nap(700);
  CU_ASSERT_EQUAL(fx_stats(&f).prepared, 0);

  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 1));
  int wa = warm_pid(&f);
  CU_ASSERT(pid_alive(wa));
  agent_instance_view v = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_get(f.m, a, &v, &err), 0);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_STANDBY);
  CU_ASSERT_EQUAL(v.vmm_pid, 0); /* not the instance's VMM yet */
  agent_instance_view_free(&v);

  /* The pool holds one: b's standby waits. */
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STANDBY, NULL), 0);
  nap(700);
  CU_ASSERT_EQUAL(fx_stats(&f).prepared, 1);

  /* a's restore runs in the warm VMM; the pool refills with b. */
  int32_t pid = 0;
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_RESTORE, &pid), 0);
  CU_ASSERT_EQUAL(pid, wa);
  CU_ASSERT_EQUAL(TV_GET(f, n_warm_used), 1);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 2));
  int wb = warm_pid(&f);
  CU_ASSERT(wb != wa && pid_alive(wb));
  agent_warm_stats s = fx_stats(&f);
  CU_ASSERT_EQUAL(s.used, 1);
  CU_ASSERT_EQUAL(s.fallback, 0);

  /* Any other operation ends it first: Stop of the Standby b. */
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STOP, NULL), 0);
  CU_ASSERT(!pid_alive(wb));
  CU_ASSERT_EQUAL(fx_stats(&f).discarded, 1);
  CU_ASSERT_EQUAL(fx_stats(&f).warm, 0);

  /* a again: warm, then deleted with its warm VMM. */
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 3));
  int wa2 = warm_pid(&f);
  CU_ASSERT_EQUAL(agent_manager_delete(f.m, a, NULL, &err), 0);
  CU_ASSERT(!pid_alive(wa2));
  CU_ASSERT_EQUAL(fx_stats(&f).discarded, 2);
  fx_teardown(&f);
}

static void test_manager_hostile(void)
{
  fixture f;
  fx_setup(&f, "{\"testvm\": {\"size\": 2}}");
  cleanup_free char *a = fx_create(&f, "a", "testvm", 64);
  /* A prepare that fails: counted, backed off, the restore is a fresh VMM. */
  TV_SET(f, fail_prepare, 1);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY, NULL), 0);
  for (int i = 0; i < 100 && fx_stats(&f).failed == 0; i++)
    nap(50);
  CU_ASSERT_EQUAL(fx_stats(&f).failed, 1);
  nap(700);
  CU_ASSERT_EQUAL(fx_stats(&f).prepared, 0); /* backing off */
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_RESTORE, NULL), 0);
  CU_ASSERT_EQUAL(TV_GET(f, n_warm_used), 0);

  /* A snapshot the driver cannot prepare ahead (UNIMPLEMENTED): not a
   * failure, not asked again until the next standby, whose snapshot is. */
  TV_SET(f, unimpl_prepare, 1);
  int calls = TV_GET(f, n_prepare_calls);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY, NULL), 0);
  for (int i = 0; i < 100 && TV_GET(f, n_prepare_calls) == calls; i++)
    nap(50);
  nap(1200);
  CU_ASSERT_EQUAL(TV_GET(f, n_prepare_calls), calls + 1);
  CU_ASSERT_EQUAL(fx_stats(&f).failed, 1); /* only the earlier one */
  CU_ASSERT_EQUAL(fx_stats(&f).warm, 0);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_RESTORE, NULL), 0);
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 1));
  CU_ASSERT_EQUAL(fx_op(&f, a, AGENT_OP_RESTORE, NULL), 0);

  /* A warm VMM that dies while waiting: reaped, counted, replaced. */
  cleanup_free char *b = fx_create(&f, "b", "testvm", 64);
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 2));
  int wb = warm_pid(&f);
  kill(wb, SIGKILL);
  for (int i = 0; i < 100 && !(fx_stats(&f).lost == 1 && fx_wait_warm(&f, 1, 3)); i++)
    nap(50);
  CU_ASSERT_EQUAL(fx_stats(&f).lost, 1);
  int wb2 = warm_pid(&f);
  CU_ASSERT(wb2 != wb && pid_alive(wb2));
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE, NULL), 0);
  CU_ASSERT_EQUAL(TV_GET(f, n_warm_used), 2);

  /* Killed between the pool's looks and the restore: the driver starts a
   * fresh VMM and the restore succeeds (fallback). */
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 4));
  int wb3 = warm_pid(&f);
  kill(wb3, SIGKILL);
  for (int i = 0; i < 100 && pid_alive(wb3); i++)
    nap(10);
  int32_t pid = 0;
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE, &pid), 0);
  CU_ASSERT(pid != wb3 && pid_alive(pid));
  agent_warm_stats s = fx_stats(&f);
  CU_ASSERT_EQUAL(s.used + s.fallback + s.lost, 4); /* whichever noticed first */

  /* A restore that fails before the driver takes the warm VMM: the instance
   * stays Standby, the warm VMM is ended (no process left), the pool
   * prepares another and the next restore runs in it. */
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 5));
  int wf = warm_pid(&f);
  TV_SET(f, fail_restore, 1);
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE, NULL), -1);
  CU_ASSERT(!pid_alive(wf));
  agent_instance_view v = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_get(f.m, b, &v, &err), 0);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_STANDBY);
  agent_instance_view_free(&v);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 6));
  int used = TV_GET(f, n_warm_used);
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE, &pid), 0);
  CU_ASSERT_EQUAL(TV_GET(f, n_warm_used), used + 1);

  /* The manager's end ends warm VMMs; a restart prepares new ones. */
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_STANDBY, NULL), 0);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 7));
  int wb4 = warm_pid(&f);
  agent_manager_free(f.m);
  CU_ASSERT(!pid_alive(wb4));
  fx_open(&f);
  CU_ASSERT_FATAL(fx_wait_warm(&f, 1, 1));
  CU_ASSERT(pid_alive(warm_pid(&f)) && warm_pid(&f) != wb4);
  CU_ASSERT_EQUAL(fx_op(&f, b, AGENT_OP_RESTORE, NULL), 0);
  fx_teardown(&f);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return CU_get_error();
  CU_pSuite s = CU_add_suite("warm", NULL, NULL);
  CU_add_test(s, "config", test_config);
  CU_add_test(s, "pick", test_pick);
  CU_add_test(s, "manager: standby, restore, refill, stop, delete", test_manager_standby_restore);
  CU_add_test(s, "manager: failed prepare, dead VMM, fallback, restart", test_manager_hostile);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed != 0;
}
