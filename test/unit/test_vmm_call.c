/* test_vmm_call.c: CUnit tests of the agent's one boundary for driver calls
 * (agent/vmm_call.c): an absent or unavailable driver is FAILED_PRECONDITION,
 * a missing capability or a NULL op is UNIMPLEMENTED with one wording, and in
 * none of these cases is the driver reached; a call that passes the checks
 * reaches the op with the entry's state. Entries are built by hand here, so a
 * driver the registry would refuse (bits and ops disagreeing) is covered too. */
#include "agent/vmm_call.h"

#include <CUnit/Basic.h>
#include <string.h>

typedef struct calls {
  int start, query, adopt, pause, resume, snapshot, restore, shutdown, powerdown, release, cleanup;
} calls;

static int c_start(void *s, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  ((calls *)s)->start++;
  return 0;
}
static int c_query(void *s, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  ((calls *)s)->query++;
  *out = VMM_STATE_PAUSED;
  return 0;
}
static int c_adopt(void *s, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  ((calls *)s)->adopt++;
  *out = VMM_STATE_RUNNING;
  return 0;
}
static int c_pause(void *s, vmm_vm *vm, cmn_error *err)
{
  ((calls *)s)->pause++;
  return 0;
}
static int c_resume(void *s, vmm_vm *vm, cmn_error *err)
{
  ((calls *)s)->resume++;
  return 0;
}
static int c_snapshot(void *s, vmm_vm *vm, const char *d, vmm_snap_kind k, cmn_error *err)
{
  ((calls *)s)->snapshot++;
  return 0;
}
static int c_restore(void *s, vmm_vm *vm, const char *d, cmn_error *err)
{
  ((calls *)s)->restore++;
  return 0;
}
static int c_shutdown(void *s, vmm_vm *vm, int ms, cmn_error *err)
{
  ((calls *)s)->shutdown++;
  return 0;
}
static int c_powerdown(void *s, vmm_vm *vm, int ms, cmn_error *err)
{
  ((calls *)s)->powerdown++;
  return 0;
}
static void c_release(void *s, vmm_vm *vm) { ((calls *)s)->release++; }
static void c_cleanup(void *s, vmm_vm *vm) { ((calls *)s)->cleanup++; }

static const vmm_driver full_drv = {.type = "callfull",
                                    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE |
                                            VMM_CAP_GRACEFUL_SHUTDOWN,
                                    .start = c_start,
                                    .query = c_query,
                                    .adopt = c_adopt,
                                    .pause = c_pause,
                                    .resume = c_resume,
                                    .snapshot = c_snapshot,
                                    .restore = c_restore,
                                    .shutdown = c_shutdown,
                                    .powerdown = c_powerdown,
                                    .release = c_release,
                                    .cleanup = c_cleanup};
/* Declares PAUSE but has no resume, and no adopt: the registry would refuse
 * it; the boundary must still not crash. */
static const vmm_driver half_drv = {.type = "callhalf",
                                    .caps = VMM_CAP_PAUSE,
                                    .start = c_start,
                                    .query = c_query,
                                    .pause = c_pause};

static void expect(cmn_error *err, int code, const char *words)
{
  CU_ASSERT_EQUAL(err->code, code);
  CU_ASSERT_PTR_NOT_NULL(strstr(err->msg, words));
  if (err->code != code || strstr(err->msg, words) == NULL)
    fprintf(stderr, "got %d '%s', want %d '%s'\n", err->code, err->msg, code, words);
  *err = (cmn_error){0};
}

static void test_absent_and_unavailable(void)
{
  calls c = {0};
  vmm_vm vm = {0};
  cmn_error err = {0};
  CU_ASSERT(vmm_call_need_available(NULL, "qemu", &err) < 0);
  expect(&err, CMN_FAILED_PRECONDITION, "hypervisor qemu is not compiled into this emberd");
  CU_ASSERT(vmm_call_start(NULL, &vm, NULL, &err) < 0);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  err = (cmn_error){0};

  vmm_entry gone = {.driver = &full_drv,
                    .state = &c,
                    .available = false,
                    .caps = full_drv.caps,
                    .detail = (char[]){"binary not found"}};
  CU_ASSERT(vmm_call_start(&gone, &vm, NULL, &err) < 0);
  expect(&err, CMN_FAILED_PRECONDITION, "hypervisor callfull is not available: binary not found");
  CU_ASSERT(vmm_call_pause(&gone, &vm, &err) < 0);
  expect(&err, CMN_FAILED_PRECONDITION, "is not available");
  CU_ASSERT(vmm_call_restore(&gone, &vm, "/nonexistent", &err) < 0);
  expect(&err, CMN_FAILED_PRECONDITION, "is not available");
  CU_ASSERT_FALSE(vmm_call_can(&gone, VMM_CALL_SHUTDOWN));
  CU_ASSERT_FALSE(vmm_call_can(&gone, VMM_CALL_POWERDOWN));
  vmm_call_release(&gone, &vm);
  vmm_call_cleanup(&gone, &vm);
  vmm_call_release(NULL, &vm);
  vmm_call_cleanup(NULL, &vm);
  calls none = {0};
  CU_ASSERT_EQUAL(memcmp(&c, &none, sizeof c), 0); /* the driver was never reached */
}

static void test_capability_and_null_op(void)
{
  calls c = {0};
  vmm_vm vm = {0};
  cmn_error err = {0};
  /* Effective caps narrowed to nothing: every capability-bound op refused. */
  vmm_entry narrow = {.driver = &full_drv, .state = &c, .available = true, .caps = 0};
  CU_ASSERT(vmm_call_pause(&narrow, &vm, &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callfull does not support pause and resume");
  CU_ASSERT(vmm_call_snapshot(&narrow, &vm, "/x", VMM_SNAP_FULL, &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callfull does not support standby");
  CU_ASSERT(vmm_call_restore(&narrow, &vm, "/x", &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callfull does not support restore");
  CU_ASSERT(vmm_call_shutdown(&narrow, &vm, 10, &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "does not support");
  CU_ASSERT_FALSE(vmm_call_can(&narrow, VMM_CALL_SHUTDOWN));
  CU_ASSERT(vmm_call_need_caps(&narrow, NULL, VMM_CAP_SNAPSHOT, "standby", &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callfull does not support standby");
  calls none = {0};
  CU_ASSERT_EQUAL(memcmp(&c, &none, sizeof c), 0);

  /* The capability is there, the op is NULL: the same UNIMPLEMENTED, no crash. */
  vmm_entry half = {.driver = &half_drv, .state = &c, .available = true, .caps = VMM_CAP_PAUSE};
  CU_ASSERT(vmm_call_resume(&half, &vm, &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callhalf does not support pause and resume");
  CU_ASSERT(vmm_call_powerdown(&half, &vm, 10, &err) < 0);
  expect(&err, CMN_UNIMPLEMENTED, "hypervisor callhalf does not support");
  CU_ASSERT_FALSE(vmm_call_can(&half, VMM_CALL_POWERDOWN));
  vmm_call_release(&half, &vm); /* NULL release: nothing */
  vmm_call_cleanup(&half, &vm);
  CU_ASSERT_EQUAL(memcmp(&c, &none, sizeof c), 0);
  /* adopt falls back to query. */
  vmm_run_state rs = VMM_STATE_OTHER;
  CU_ASSERT_EQUAL(vmm_call_adopt(&half, &vm, &rs, &err), 0);
  CU_ASSERT_EQUAL(rs, VMM_STATE_PAUSED);
  CU_ASSERT_EQUAL(c.query, 1);
}

static void test_calls_reach_the_driver(void)
{
  calls c = {0};
  vmm_vm vm = {0};
  cmn_error err = {0};
  vmm_entry e = {.driver = &full_drv, .state = &c, .available = true, .caps = full_drv.caps};
  vmm_run_state rs = VMM_STATE_OTHER;
  CU_ASSERT_EQUAL(vmm_call_start(&e, &vm, NULL, &err), 0);
  CU_ASSERT_EQUAL(vmm_call_adopt(&e, &vm, &rs, &err), 0);
  CU_ASSERT_EQUAL(rs, VMM_STATE_RUNNING);
  CU_ASSERT_EQUAL(vmm_call_pause(&e, &vm, &err), 0);
  CU_ASSERT_EQUAL(vmm_call_resume(&e, &vm, &err), 0);
  CU_ASSERT_EQUAL(vmm_call_snapshot(&e, &vm, "/x", VMM_SNAP_DIFF, &err), 0);
  CU_ASSERT_EQUAL(vmm_call_restore(&e, &vm, "/x", &err), 0);
  CU_ASSERT(vmm_call_can(&e, VMM_CALL_SHUTDOWN));
  CU_ASSERT(vmm_call_can(&e, VMM_CALL_POWERDOWN));
  CU_ASSERT_EQUAL(vmm_call_shutdown(&e, &vm, 10, &err), 0);
  CU_ASSERT_EQUAL(vmm_call_powerdown(&e, &vm, 10, &err), 0);
  vmm_call_release(&e, &vm);
  vmm_call_cleanup(&e, &vm);
  calls want = {.start = 1,
                .adopt = 1,
                .pause = 1,
                .resume = 1,
                .snapshot = 1,
                .restore = 1,
                .shutdown = 1,
                .powerdown = 1,
                .release = 1,
                .cleanup = 1};
  CU_ASSERT_EQUAL(memcmp(&c, &want, sizeof c), 0);
  CU_ASSERT_EQUAL(err.code, CMN_OK);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("vmm_call", NULL, NULL);
  CU_add_test(s, "absent_and_unavailable", test_absent_and_unavailable);
  CU_add_test(s, "capability_and_null_op", test_capability_and_null_op);
  CU_add_test(s, "calls_reach_the_driver", test_calls_reach_the_driver);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
