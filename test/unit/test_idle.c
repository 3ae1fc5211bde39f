/* test_idle.c: CUnit tests of idle auto-standby: the decision of agent/idle.c
 * fed with made-up samples (no sleeping), its /proc parsers and the checks of
 * InstanceSpec.auto_standby; then the manager (agent/manager_idle.c) with the
 * test-only driver, whose VMM is an idle shell loop: auto-standby with its
 * event reason, a hold, an open session, a standby that fails, and hostile
 * values. */
#include "agent/idle.h"
#include "agent/manager.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"
#include "test/unit/testvm_driver.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the decision, with an injected clock ---- */

#define SEC 1000000LL

static const agent_auto_standby cfg3 = {
    .idle_seconds = 3, .max_cpu_percent = 2.0, .max_net_bps = 1024};

/* A sample at t seconds with cpu_ms of CPU time and net bytes so far. */
static agent_idle_sample smp(double t, uint64_t cpu_ms, uint64_t net)
{
  return (agent_idle_sample){.t_us = (int64_t)(t * SEC),
                             .pid = 42,
                             .cpu_ns = cpu_ms * 1000000ull,
                             .net_bytes = net,
                             .ok = true};
}

static agent_idle_verdict feed(agent_idle_state *st, const agent_auto_standby *cfg,
                               const agent_idle_input *in, agent_idle_sample s, char **why)
{
  free(*why);
  *why = NULL;
  return agent_idle_decide(st, cfg, in, &s, why);
}

static void test_decide_idle_then_standby(void)
{
  agent_idle_state st = {0};
  agent_idle_input in = {.running = true};
  char *why = NULL;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(0, 0, 0), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(1, 5, 100), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 1 * SEC);
  CU_ASSERT(fabs(st.cpu_percent - 0.5) < 1e-9);
  CU_ASSERT_EQUAL(st.net_bps, 100);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(2, 10, 200), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_PTR_NULL(why);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(3, 15, 300), &why), AGENT_IDLE_STANDBY);
  CU_ASSERT_PTR_NOT_NULL_FATAL(why);
  CU_ASSERT_STRING_EQUAL(why, "idle for 3 s: cpu 0.5% (max 2%), net 100 B/s (max 1024 B/s), no "
                              "session open");
  free(why);
}

static void test_decide_busy_resets(void)
{
  agent_idle_state st = {0};
  agent_idle_input in = {.running = true};
  char *why = NULL;
  feed(&st, &cfg3, &in, smp(0, 0, 0), &why);
  feed(&st, &cfg3, &in, smp(1, 0, 0), &why);
  feed(&st, &cfg3, &in, smp(2, 0, 0), &why);
  /* 30 ms of CPU in one second: 3% >= 2%. */
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(3, 30, 0), &why), AGENT_IDLE_BUSY);
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 0);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(4, 30, 0), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(5, 30, 0), &why), AGENT_IDLE_WAIT);
  /* Traffic: 2000 B in one second >= 1024 B/s. */
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(6, 30, 2000), &why), AGENT_IDLE_BUSY);
  feed(&st, &cfg3, &in, smp(7, 30, 2000), &why);
  feed(&st, &cfg3, &in, smp(8, 30, 2000), &why);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(9, 30, 2000), &why), AGENT_IDLE_STANDBY);
  CU_ASSERT_PTR_NOT_NULL(why);
  free(why);
}

static void test_decide_sessions_hold_state(void)
{
  agent_idle_state st = {0};
  char *why = NULL;
  agent_idle_input in = {.running = true, .sessions = 1};
  feed(&st, &cfg3, &in, smp(0, 0, 0), &why);
  for (int t = 1; t < 10; t++)
    CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(t, 0, 0), &why), AGENT_IDLE_BUSY);
  in = (agent_idle_input){.running = true, .held = true};
  for (int t = 10; t < 20; t++)
    CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(t, 0, 0), &why), AGENT_IDLE_BUSY);
  /* Released: a full period from the last busy sample. */
  in.held = false;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(20, 0, 0), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(21, 0, 0), &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(22, 0, 0), &why), AGENT_IDLE_STANDBY);
  /* Not Running (Standby now, or Paused): never, and the clock is gone. */
  in.running = false;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, smp(23, 0, 0), &why), AGENT_IDLE_BUSY);
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 0);
  free(why);
}

static void test_decide_new_vmm_unreadable_restart(void)
{
  agent_idle_state st = {0};
  agent_idle_input in = {.running = true};
  char *why = NULL;
  feed(&st, &cfg3, &in, smp(0, 500, 9000), &why);
  feed(&st, &cfg3, &in, smp(1, 500, 9000), &why);
  feed(&st, &cfg3, &in, smp(2, 500, 9000), &why);
  /* A restore: new pid, counters from zero; the clock starts again. */
  agent_idle_sample s = smp(3, 0, 0);
  s.pid = 43;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, s, &why), AGENT_IDLE_WAIT);
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 0);
  /* A sample that cannot be read: busy. */
  s = smp(4, 0, 0);
  s.pid = 43;
  s.ok = false;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, s, &why), AGENT_IDLE_BUSY);
  for (int t = 5; t <= 7; t++) {
    s = smp(t, 0, 0);
    s.pid = 43;
    feed(&st, &cfg3, &in, s, &why);
  }
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 2 * SEC);
  s = smp(8, 0, 0);
  s.pid = 43;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, s, &why), AGENT_IDLE_STANDBY);
  /* The standby failed: another full period before the next try. */
  agent_idle_restart(&st);
  CU_ASSERT_EQUAL(agent_idle_for_us(&st), 0);
  for (int t = 9; t <= 10; t++) {
    s = smp(t, 0, 0);
    s.pid = 43;
    CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, s, &why), AGENT_IDLE_WAIT);
  }
  s = smp(11, 0, 0);
  s.pid = 43;
  CU_ASSERT_EQUAL(feed(&st, &cfg3, &in, s, &why), AGENT_IDLE_STANDBY);
  /* Off: never. */
  agent_auto_standby off = cfg3;
  off.idle_seconds = 0;
  s = smp(100, 0, 0);
  s.pid = 43;
  CU_ASSERT_EQUAL(feed(&st, &off, &in, s, &why), AGENT_IDLE_WAIT);
  free(why);
}

/* ---- parsers and checks ---- */

static void test_parse_proc(void)
{
  uint64_t ticks = 0;
  const char *stat = "1234 (qemu) x (y)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 "
                     "3 0 55 1000 10 18446744073709551615\n";
  CU_ASSERT_EQUAL(agent_idle_parse_stat(stat, &ticks), 0);
  CU_ASSERT_EQUAL(ticks, 325);
  CU_ASSERT_EQUAL(agent_idle_parse_stat("1234 (short) S 1 2", &ticks), -1);
  CU_ASSERT_EQUAL(agent_idle_parse_stat("garbage", &ticks), -1);
  const char *dev =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo:  999999     100    0    0    0     0          0         0   999999     100    0 "
      "   0    0     0       0          0\n"
      "tap-a1:    1000      10    0    0    0     0          0         0      234       3    0 "
      "   0    0     0       0          0\n"
      "  eth0: 5555555     100    0    0    0     0          0         0  5555555     100    0 "
      "   0    0     0       0          0\n"
      "tap-b2:      66       1    0    0    0     0          0         0        0       0    0 "
      "   0    0     0       0          0\n";
  const char *taps[] = {"tap-a1", "tap-b2", "tap-none", "tap-a"};
  uint64_t bytes = 0;
  CU_ASSERT_EQUAL(agent_idle_parse_netdev(dev, taps, 4, &bytes), 0);
  CU_ASSERT_EQUAL(bytes, 1000 + 234 + 66);
  CU_ASSERT_EQUAL(agent_idle_parse_netdev(dev, taps, 0, &bytes), 0);
  CU_ASSERT_EQUAL(bytes, 0);
  CU_ASSERT_EQUAL(agent_idle_parse_netdev("tap-a1: 12 x\n", taps, 1, &bytes), -1);
  /* This process: readable, with no TAP. */
  agent_idle_sample s;
  agent_idle_read((int32_t)getpid(), NULL, 0, cmn_now_us(), &s);
  CU_ASSERT(s.ok);
  agent_idle_read(0, NULL, 0, cmn_now_us(), &s);
  CU_ASSERT(!s.ok);
}

static void test_normalize(void)
{
  cmn_error err = {0};
  agent_auto_standby out;
  agent_auto_standby in = {.idle_seconds = 60};
  CU_ASSERT_EQUAL(agent_auto_standby_normalize(&in, &out, &err), 0);
  CU_ASSERT(out.max_cpu_percent > 1.99 && out.max_cpu_percent < 2.01);
  CU_ASSERT_EQUAL(out.max_net_bps, AGENT_IDLE_DEFAULT_NET_BPS);
  in = (agent_auto_standby){0};
  CU_ASSERT_EQUAL(agent_auto_standby_normalize(&in, &out, &err), 0);
  CU_ASSERT_EQUAL(out.idle_seconds, 0);
  CU_ASSERT_EQUAL(out.max_net_bps, 0);
  struct {
    agent_auto_standby a;
    const char *field;
  } bad[] = {
      {{.idle_seconds = AGENT_IDLE_MAX_SECONDS + 1}, "spec.auto_standby.idle_seconds"},
      {{.idle_seconds = UINT32_MAX}, "spec.auto_standby.idle_seconds"},
      {{.idle_seconds = 5, .max_cpu_percent = -1}, "spec.auto_standby.max_cpu_percent"},
      {{.idle_seconds = 5, .max_cpu_percent = 100.5}, "spec.auto_standby.max_cpu_percent"},
      {{.idle_seconds = 5, .max_cpu_percent = (double)NAN}, "spec.auto_standby.max_cpu_percent"},
      {{.idle_seconds = 5, .max_cpu_percent = (double)INFINITY},
       "spec.auto_standby.max_cpu_percent"},
      {{.idle_seconds = 5, .max_net_bps = UINT64_MAX},
       "spec.auto_standby.max_net_bytes_per_second"},
      {{.max_cpu_percent = 5}, "spec.auto_standby.idle_seconds"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cmn_err_clear(&err);
    CU_ASSERT_EQUAL(agent_auto_standby_normalize(&bad[i].a, &out, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_STRING_EQUAL(err.field, bad[i].field);
  }
}

/* ---- the manager with the test-only driver ---- */

typedef struct fixture {
  char root[64];
  char *data;
  char *kernel;
  vmm_registry *reg;
  agent_manager *m;
  testvm_state *tv;
  pthread_mutex_t mu;
  char reason[512]; /* of the last STANDBY event with a reason */
  int n_auto;
} fixture;

static const vmm_driver *const test_drivers[] = {&testvm_driver, &testvm_nosnap_driver};

static void fx_on_event(void *ctx, const agent_event *ev)
{
  fixture *f = ctx;
  if (ev->op != AGENT_OP_STANDBY || ev->reason == NULL)
    return;
  pthread_mutex_lock(&f->mu);
  snprintf(f->reason, sizeof f->reason, "%s", ev->reason);
  f->n_auto++;
  pthread_mutex_unlock(&f->mu);
}

static void fx_setup(fixture *f)
{
  memset(f, 0, sizeof *f);
  pthread_mutex_init(&f->mu, NULL);
  snprintf(f->root, sizeof f->root, "/tmp/ember-idle-XXXXXX");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->root));
  f->data = cmn_asprintf("%s/data", f->root);
  f->kernel = cmn_asprintf("%s/vmlinux", f->root);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_file_write_atomic(f->kernel, "k", 1, 0644, &err), 0);
  f->reg =
      vmm_registry_create(NULL, test_drivers, sizeof test_drivers / sizeof test_drivers[0], &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->reg);
  f->tv = vmm_registry_get(f->reg, "testvm")->state;
  agent_manager_config cfg = {.data_dir = f->data, .stop_timeout_ms = 2000, .monitor = true};
  f->m = agent_manager_create(&cfg, f->reg, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f->m);
  agent_manager_subscribe(f->m, fx_on_event, f);
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
  cmn_rm_rf(f->root, &err);
  free(f->data);
  free(f->kernel);
  pthread_mutex_destroy(&f->mu);
}

static int fx_create(fixture *f, const char *name, const char *type, const agent_auto_standby *idle,
                     char **id, cmn_error *err)
{
  vmm_spec spec = {.vcpus = 1, .memory_mib = 64, .kernel = f->kernel};
  agent_create_req req = {
      .name = name, .hypervisor = type, .spec = &spec, .start = true, .auto_standby = idle};
  agent_instance_view v = {0};
  if (agent_manager_create_req(f->m, &req, &v, err) < 0)
    return -1;
  *id = cmn_strdup(v.id);
  agent_instance_view_free(&v);
  return 0;
}

static agent_instance_view fx_get(fixture *f, const char *id)
{
  agent_instance_view v = {0};
  cmn_error err = {0};
  CU_ASSERT_EQUAL(agent_manager_get(f->m, id, &v, &err), 0);
  return v;
}

/* Waits up to ms for the state; returns whether it came. */
static bool fx_wait_state(fixture *f, const char *id, agent_state want, int ms)
{
  for (int i = 0; i <= ms / 50; i++) {
    agent_instance_view v = fx_get(f, id);
    agent_state st = v.state;
    agent_instance_view_free(&v);
    if (st == want)
      return true;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return false;
}

static void test_manager_auto_standby(void)
{
  fixture f;
  fx_setup(&f);
  cmn_error err = {0};
  agent_auto_standby idle = {.idle_seconds = 1};
  cleanup_free char *id = NULL;
  CU_ASSERT_EQUAL_FATAL(fx_create(&f, "sleepy", "testvm", &idle, &id, &err), 0);
  agent_instance_view v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.auto_standby.idle_seconds, 1);
  CU_ASSERT(v.auto_standby.max_cpu_percent > 1.99); /* the default filled in */
  CU_ASSERT_EQUAL(v.auto_standby.max_net_bps, AGENT_IDLE_DEFAULT_NET_BPS);
  agent_instance_view_free(&v);
  CU_ASSERT_FATAL(fx_wait_state(&f, id, AGENT_STATE_STANDBY, 6000));
  pthread_mutex_lock(&f.mu);
  CU_ASSERT_EQUAL(f.n_auto, 1);
  CU_ASSERT(strncmp(f.reason, "idle for 1 s: cpu ", 18) == 0);
  pthread_mutex_unlock(&f.mu);
  v = fx_get(&f, id);
  CU_ASSERT_PTR_NOT_NULL(v.status_message);
  if (v.status_message != NULL)
    CU_ASSERT(strncmp(v.status_message, "auto standby: idle for 1 s", 26) == 0);
  agent_instance_view_free(&v);
  /* The scheduler wakes it; the status is cleared, and it goes again. */
  CU_ASSERT_EQUAL(agent_manager_op(f.m, id, AGENT_OP_RESTORE, &v, &err), 0);
  CU_ASSERT_EQUAL(v.state, AGENT_STATE_RUNNING);
  CU_ASSERT_PTR_NULL(v.status_message);
  agent_instance_view_free(&v);
  CU_ASSERT(fx_wait_state(&f, id, AGENT_STATE_STANDBY, 6000));
  /* The spec survives a restart of the manager (the record). */
  agent_manager_free(f.m);
  agent_manager_config cfg = {.data_dir = f.data, .stop_timeout_ms = 2000, .monitor = true};
  f.m = agent_manager_create(&cfg, f.reg, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f.m);
  v = fx_get(&f, id);
  CU_ASSERT_EQUAL(v.auto_standby.idle_seconds, 1);
  agent_instance_view_free(&v);
  fx_teardown(&f);
}

static void test_manager_hold_and_session(void)
{
  fixture f;
  fx_setup(&f);
  cmn_error err = {0};
  agent_auto_standby idle = {.idle_seconds = 1};
  cleanup_free char *id = NULL;
  CU_ASSERT_EQUAL_FATAL(fx_create(&f, "held", "testvm", &idle, &id, &err), 0);
  agent_instance_view v = {0};
  CU_ASSERT_EQUAL(agent_manager_hold(f.m, "held", 60000, &v, &err), 0);
  CU_ASSERT(v.idle.hold_until_us > cmn_wall_us() + 50 * SEC);
  agent_instance_view_free(&v);
  /* Three idle periods pass: still Running. */
  CU_ASSERT(!fx_wait_state(&f, id, AGENT_STATE_STANDBY, 3000));
  /* A session keeps it awake once the hold is released. */
  CU_ASSERT_EQUAL(agent_manager_session_begin(f.m, id), 0);
  CU_ASSERT_EQUAL(agent_manager_hold(f.m, id, 0, &v, &err), 0);
  CU_ASSERT_EQUAL(v.idle.hold_until_us, 0);
  CU_ASSERT_EQUAL(v.idle.sessions, 1);
  agent_instance_view_free(&v);
  CU_ASSERT(!fx_wait_state(&f, id, AGENT_STATE_STANDBY, 2500));
  agent_manager_session_end(f.m, id);
  CU_ASSERT(fx_wait_state(&f, id, AGENT_STATE_STANDBY, 6000));
  /* Hostile holds; unknown instances. */
  CU_ASSERT_EQUAL(agent_manager_hold(f.m, id, -1, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "duration");
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(agent_manager_hold(f.m, id, AGENT_HOLD_MAX_MS + 1, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(agent_manager_hold(f.m, "nosuch", 1000, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(agent_manager_session_begin(f.m, "nosuch"), -1);
  agent_manager_session_end(f.m, "nosuch"); /* nothing to do */
  fx_teardown(&f);
}

static void test_manager_failed_standby_retries(void)
{
  fixture f;
  fx_setup(&f);
  cmn_error err = {0};
  agent_auto_standby idle = {.idle_seconds = 2};
  cleanup_free char *id = NULL;
  f.tv->fail_snapshot = 1;
  int64_t t0 = cmn_now_us();
  CU_ASSERT_EQUAL_FATAL(fx_create(&f, "stubborn", "testvm", &idle, &id, &err), 0);
  /* The first try fails; the second comes one idle period later. */
  CU_ASSERT_FATAL(fx_wait_state(&f, id, AGENT_STATE_STANDBY, 10000));
  CU_ASSERT_EQUAL(f.tv->fail_snapshot, 0);
  CU_ASSERT(cmn_now_us() - t0 >= 4 * SEC);
  fx_teardown(&f);
}

static void test_manager_hostile_spec(void)
{
  fixture f;
  fx_setup(&f);
  cmn_error err = {0};
  char *id = NULL;
  agent_auto_standby big = {.idle_seconds = AGENT_IDLE_MAX_SECONDS + 1};
  CU_ASSERT_EQUAL(fx_create(&f, "big", "testvm", &big, &id, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "spec.auto_standby.idle_seconds");
  cmn_err_clear(&err);
  agent_auto_standby neg = {.idle_seconds = 5, .max_cpu_percent = -3};
  CU_ASSERT_EQUAL(fx_create(&f, "neg", "testvm", &neg, &id, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "spec.auto_standby.max_cpu_percent");
  cmn_err_clear(&err);
  /* A driver that cannot standby cannot auto-standby. */
  agent_auto_standby ok = {.idle_seconds = 5};
  CU_ASSERT_EQUAL(fx_create(&f, "bare", "testbare", &ok, &id, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNIMPLEMENTED);
  CU_ASSERT_STRING_EQUAL(err.field, "spec.auto_standby");
  CU_ASSERT_PTR_NULL(id);
  fx_teardown(&f);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("idle", NULL, NULL);
  CU_add_test(s, "decide: idle then standby", test_decide_idle_then_standby);
  CU_add_test(s, "decide: busy resets the clock", test_decide_busy_resets);
  CU_add_test(s, "decide: sessions, hold, state", test_decide_sessions_hold_state);
  CU_add_test(s, "decide: new VMM, unreadable, restart", test_decide_new_vmm_unreadable_restart);
  CU_add_test(s, "parse /proc", test_parse_proc);
  CU_add_test(s, "normalize auto_standby", test_normalize);
  CU_add_test(s, "manager: auto standby", test_manager_auto_standby);
  CU_add_test(s, "manager: hold and session", test_manager_hold_and_session);
  CU_add_test(s, "manager: failed standby retried", test_manager_failed_standby_retries);
  CU_add_test(s, "manager: hostile spec", test_manager_hostile_spec);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
