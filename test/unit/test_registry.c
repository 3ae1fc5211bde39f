/* test_registry.c: CUnit tests of the driver registry's start-up contract
 * (drivers/registry.c): a driver whose capability bits do not match its
 * operations is refused, with a message naming the driver and what it lacks,
 * before emberd serves anything; the built-in and test drivers pass. */
#include "drivers/registry.h"
#include "test/unit/testvm_driver.h"

#include <CUnit/Basic.h>
#include <string.h>

static int ok_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err) { return 0; }
static int ok_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  *out = VMM_STATE_RUNNING;
  return 0;
}
static int ok_vm(void *state, vmm_vm *vm, cmn_error *err) { return 0; }
static int ok_snapshot(void *state, vmm_vm *vm, const char *dir, vmm_snap_kind k, cmn_error *err)
{
  return 0;
}
static int ok_restore(void *state, vmm_vm *vm, const char *dir, cmn_error *err) { return 0; }
static int ok_shutdown(void *state, vmm_vm *vm, int ms, cmn_error *err) { return 0; }
static unsigned too_many_caps(const void *state) { return VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE; }

#define BASE_OPS .start = ok_start, .query = ok_query

static void test_builtin_drivers_pass(void)
{
  const vmm_driver *const all[] = {
      &vmm_qemu_driver,    &vmm_firecracker_driver, &vmm_cloud_hypervisor_driver, &testvm_driver,
      &testvm_live_driver, &testvm_full_driver,     &testvm_nosnap_driver};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    cmn_error err = {0};
    CU_ASSERT_EQUAL(vmm_driver_check(all[i], all[i]->caps, &err), 0);
    if (err.code != CMN_OK)
      fprintf(stderr, "%s\n", err.msg);
  }
}

/* Each row: a driver that breaks one rule, and the words the refusal must hold. */
static void test_mismatches_refused(void)
{
  static const vmm_driver no_start = {.type = "nostart", .query = ok_query};
  static const vmm_driver no_query = {.type = "noquery", .start = ok_start};
  static const vmm_driver no_name = {BASE_OPS};
  static const vmm_driver snap_no_restore = {
      .type = "snaphalf", .caps = VMM_CAP_SNAPSHOT, BASE_OPS, .snapshot = ok_snapshot};
  static const vmm_driver pause_no_resume = {
      .type = "pausehalf", .caps = VMM_CAP_PAUSE, BASE_OPS, .pause = ok_vm};
  static const vmm_driver graceful_no_op = {
      .type = "gracefulnoop", .caps = VMM_CAP_GRACEFUL_SHUTDOWN, BASE_OPS};
  static const vmm_driver op_no_graceful = {
      .type = "opnograceful", .caps = 0, BASE_OPS, .shutdown = ok_shutdown};
  static const vmm_driver base_no_snap = {.type = "basenosnap",
                                          .caps = VMM_CAP_BASE_REUSE | VMM_CAP_PAUSE,
                                          BASE_OPS,
                                          .pause = ok_vm,
                                          .resume = ok_vm};
  static const vmm_driver live_no_base = {.type = "livenobase",
                                          .caps = VMM_CAP_SNAPSHOT | VMM_CAP_LIVE_RAM_FILE,
                                          BASE_OPS,
                                          .snapshot = ok_snapshot,
                                          .restore = ok_restore};
  static const vmm_driver unknown_bit = {.type = "unknownbit", .caps = 1u << 20, BASE_OPS};
  static const struct {
    const vmm_driver *drv;
    const char *words;
  } rows[] = {
      {&no_start, "nostart lacks the start op"},
      {&no_query, "noquery lacks the query op"},
      {&no_name, "lacks a type name"},
      {&snap_no_restore, "snaphalf lacks snapshot and restore ops"},
      {&pause_no_resume, "pausehalf lacks pause and resume ops"},
      {&graceful_no_op, "gracefulnoop lacks the shutdown op"},
      {&op_no_graceful, "opnograceful lacks capability GRACEFUL_SHUTDOWN"},
      {&base_no_snap, "basenosnap lacks capability SNAPSHOT"},
      {&live_no_base, "livenobase lacks capability BASE_REUSE"},
      {&unknown_bit, "unknownbit declares unknown capability bits"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    cmn_error err = {0};
    CU_ASSERT_EQUAL(vmm_driver_check(rows[i].drv, rows[i].drv->caps, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INTERNAL);
    if (strstr(err.msg, rows[i].words) == NULL) {
      fprintf(stderr, "row %zu: '%s' does not hold '%s'\n", i, err.msg, rows[i].words);
      CU_FAIL("refusal message");
    }
  }
}

/* The registry refuses at start-up: NULL, the error names the driver. */
static void test_registry_refuses_bad_driver(void)
{
  static const vmm_driver bad = {.type = "halfsnap", .caps = VMM_CAP_SNAPSHOT, BASE_OPS};
  const vmm_driver *const extra[] = {&testvm_driver, &bad};
  cmn_error err = {0};
  vmm_registry *reg = vmm_registry_create(NULL, extra, 2, &err);
  CU_ASSERT_PTR_NULL(reg);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "halfsnap"));
  vmm_registry_free(reg);

  const vmm_driver *const good[] = {&testvm_driver};
  cmn_error e2 = {0};
  reg = vmm_registry_create(NULL, good, 1, &e2);
  CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
  CU_ASSERT_PTR_NOT_NULL(vmm_registry_get(reg, "testvm"));
  vmm_registry_free(reg);
}

/* Effective capabilities (after init) may narrow the declared ones, never
 * widen them. */
static void test_effective_caps_within_declared(void)
{
  static const vmm_driver widens = {.type = "widens",
                                    .caps = VMM_CAP_PAUSE,
                                    BASE_OPS,
                                    .pause = ok_vm,
                                    .resume = ok_vm,
                                    .effective_caps = too_many_caps};
  const vmm_driver *const extra[] = {&widens};
  cmn_error err = {0};
  vmm_registry *reg = vmm_registry_create(NULL, extra, 1, &err);
  CU_ASSERT_PTR_NULL(reg);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "beyond its declared"));
  vmm_registry_free(reg);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("registry", NULL, NULL);
  CU_add_test(s, "built-in and test drivers pass", test_builtin_drivers_pass);
  CU_add_test(s, "capability/op mismatches refused", test_mismatches_refused);
  CU_add_test(s, "registry refuses a bad driver", test_registry_refuses_bad_driver);
  CU_add_test(s, "effective caps within declared", test_effective_caps_within_declared);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
