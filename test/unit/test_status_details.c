/* test_status_details.c: CUnit tests of agent/server/status_details.c: which
 * cmn_error becomes which google.rpc error detail (decoded back with the
 * generated protobuf-c messages), and which become none. */
#include "agent/server/internal.h"
#include "common/error.h"
#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

/* The Status for err (code from err), or NULL when there is no detail. */
static Google__Rpc__Status *details(const cmn_error *err)
{
  uint8_t *bin = NULL;
  size_t len = 0;
  if (!srv_status_details(err, err->code, err->msg, &bin, &len)) {
    CU_ASSERT_PTR_NULL(bin);
    return NULL;
  }
  Google__Rpc__Status *st = google__rpc__status__unpack(NULL, len, bin);
  free(bin);
  CU_ASSERT_PTR_NOT_NULL_FATAL(st);
  CU_ASSERT_EQUAL(st->code, err->code);
  CU_ASSERT_STRING_EQUAL(st->message, err->msg);
  CU_ASSERT_EQUAL_FATAL(st->n_details, 1);
  return st;
}

/* The field of the one BadRequest violation of err's details ("" if none). */
static char *bad_request_field(const cmn_error *err)
{
  Google__Rpc__Status *st = details(err);
  if (st == NULL)
    return strdup("");
  const Google__Protobuf__Any *any = st->details[0];
  CU_ASSERT_STRING_EQUAL(any->type_url, "type.googleapis.com/google.rpc.BadRequest");
  Google__Rpc__BadRequest *br =
      google__rpc__bad_request__unpack(NULL, any->value.len, any->value.data);
  CU_ASSERT_PTR_NOT_NULL_FATAL(br);
  CU_ASSERT_EQUAL_FATAL(br->n_field_violations, 1);
  CU_ASSERT_STRING_EQUAL(br->field_violations[0]->description, err->msg);
  char *field = strdup(br->field_violations[0]->field);
  google__rpc__bad_request__free_unpacked(br, NULL);
  google__rpc__status__free_unpacked(st, NULL);
  return field;
}

static void expect_field(const char *msg, const char *explicit_field, const char *want)
{
  cmn_error err = {0};
  cmn_err_set(&err, CMN_INVALID_ARGUMENT, "%s", msg);
  if (explicit_field != NULL)
    cmn_err_field(&err, explicit_field);
  char *got = bad_request_field(&err);
  if (strcmp(got, want) != 0)
    fprintf(stderr, "'%s': field '%s', want '%s'\n", msg, got, want);
  CU_ASSERT_STRING_EQUAL(got, want);
  free(got);
}

static void test_bad_request(void)
{
  /* explicit field wins */
  expect_field("request_id was used by another request", "request_id", "request_id");
  expect_field("anything at all", "labels", "labels");
  /* read from the message's leading field path */
  expect_field("spec.vcpus must be 1 to 64 (got 0)", NULL, "spec.vcpus");
  expect_field("spec.hypervisor: unknown hypervisor 'xen'", NULL, "spec.hypervisor");
  expect_field("spec.kernel_path /x does not exist", NULL, "spec.kernel_path");
  expect_field("name is required", NULL, "name");
  expect_field("filter: expected AND at byte 3", NULL, "filter");
  /* spec fields named without their prefix */
  expect_field("network_interfaces.tap_device must be 1 to 15 characters", NULL,
               "spec.network_interfaces.tap_device");
  expect_field("mac_address must look like aa:bb:cc:dd:ee:ff", NULL,
               "spec.network_interfaces.mac_address");
  /* no field: no detail */
  expect_field("at most 16 disks", NULL, "");
  expect_field("start: the VMM did not come up", NULL, "");
  expect_field("cannot decode the request as ember.v1.CreateInstanceRequest", NULL, "");
  expect_field("spec. is odd", NULL, "");
  expect_field("", NULL, "");
}

static void test_precondition_failure(void)
{
  cmn_error err = {0};
  cmn_err_set(&err, CMN_FAILED_PRECONDITION, "cannot pause instance a: it is Stopped");
  cmn_err_precondition(&err, "STATE", "instances/i-0123");
  Google__Rpc__Status *st = details(&err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(st);
  const Google__Protobuf__Any *any = st->details[0];
  CU_ASSERT_STRING_EQUAL(any->type_url, "type.googleapis.com/google.rpc.PreconditionFailure");
  Google__Rpc__PreconditionFailure *pf =
      google__rpc__precondition_failure__unpack(NULL, any->value.len, any->value.data);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pf);
  CU_ASSERT_EQUAL_FATAL(pf->n_violations, 1);
  CU_ASSERT_STRING_EQUAL(pf->violations[0]->type, "STATE");
  CU_ASSERT_STRING_EQUAL(pf->violations[0]->subject, "instances/i-0123");
  CU_ASSERT_STRING_EQUAL(pf->violations[0]->description, err.msg);
  google__rpc__precondition_failure__free_unpacked(pf, NULL);
  google__rpc__status__free_unpacked(st, NULL);

  /* without a precondition type, and for other codes: nothing */
  cmn_err_set(&err, CMN_FAILED_PRECONDITION, "it is Stopped");
  CU_ASSERT_PTR_NULL(details(&err));
  cmn_err_set(&err, CMN_NOT_FOUND, "name is not here");
  CU_ASSERT_PTR_NULL(details(&err));
  cmn_err_set(&err, CMN_INTERNAL, "spec.vcpus broke");
  CU_ASSERT_PTR_NULL(details(&err));
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("status_details", NULL, NULL);
  CU_add_test(s, "bad_request", test_bad_request);
  CU_add_test(s, "precondition_failure", test_precondition_failure);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
