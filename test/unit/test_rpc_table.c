/* test_rpc_table.c: CUnit tests of the one RPC table (agent/rpc_table.h) and
 * the server's method table built from it (agent/server/server.c): every row
 * names a method its service descriptor has, with the path the descriptor
 * gives; every method of ember.v1.InstanceService has exactly one row (a
 * proto method without a row, or a row without a method, fails here); the
 * operation names the metrics and logs use (agent_op_name) and the state
 * names agree with the proto enums; emberctl's command names are unique. */
#include "agent/rpc_table.h"
#include "agent/server/internal.h"
#include "ember/v1/image.pb-c.h"
#include "ember/v1/instance.pb-c.h"

#include <CUnit/Basic.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

static void test_rows_match_descriptors(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(srv_methods_check(&err), 0);
  if (err.code != CMN_OK)
    fprintf(stderr, "%s\n", err.msg);
  for (size_t i = 0; i < srv_n_methods; i++)
    CU_ASSERT_PTR_NOT_NULL(srv_method_request(&srv_methods[i]));
}

static void test_every_proto_method_has_one_row(void)
{
  const ProtobufCServiceDescriptor *svc = &ember__v1__instance_service__descriptor;
  for (unsigned k = 0; k < svc->n_methods; k++) {
    const char *name = svc->methods[k].name;
    int rows = 0;
    for (size_t i = 0; i < srv_n_methods; i++)
      if (srv_methods[i].service == svc && strcmp(srv_methods[i].method, name) == 0)
        rows++;
    CU_ASSERT_EQUAL(rows, 1);
    if (rows != 1)
      fprintf(stderr, "%s.%s has %d rows in the method table\n", svc->name, name, rows);
  }
}

/* Lower-case name of enum value v without prefix. */
static void short_name(const ProtobufCEnumDescriptor *ed, int v, const char *prefix, char *buf,
                       size_t n)
{
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
  buf[0] = '\0';
  if (ev == NULL)
    return;
  const char *s = ev->name + strlen(prefix);
  size_t i = 0;
  for (; s[i] != '\0' && i + 1 < n; i++)
    buf[i] = (char)tolower((unsigned char)s[i]);
  buf[i] = '\0';
}

static void test_names_agree_with_proto(void)
{
  const ProtobufCEnumDescriptor *ops = &ember__v1__operation__descriptor;
  for (unsigned k = 0; k < ops->n_values; k++) {
    int v = ops->values[k].value;
    if (v == 0)
      continue;
    char want[32];
    short_name(ops, v, "OPERATION_", want, sizeof(want));
    CU_ASSERT_STRING_EQUAL(agent_op_name((agent_op)v), want);
  }
  const ProtobufCEnumDescriptor *st = &ember__v1__instance_state__descriptor;
  for (unsigned k = 0; k < st->n_values; k++) {
    int v = st->values[k].value;
    char want[32];
    short_name(st, v, "INSTANCE_STATE_", want, sizeof(want));
    CU_ASSERT_EQUAL(strcasecmp(agent_state_name((agent_state)v), want), 0);
  }
  /* A row's operation is a real one, and its method is the op's RPC. */
  for (size_t i = 0; i < srv_n_methods; i++) {
    const srv_method *m = &srv_methods[i];
    if (m->op == AGENT_OP_NONE)
      continue;
    CU_ASSERT(m->kind == SRV_UNARY && m->mutates);
    char want[64];
    snprintf(want, sizeof(want), "%s", agent_op_name(m->op));
    want[0] = (char)toupper((unsigned char)want[0]);
    CU_ASSERT_EQUAL(strncmp(m->method, want, strlen(want)), 0);
  }
}

static void test_ctl_names_unique(void)
{
  static const char *const names[] = {
#define NAME_ROW(desc, svc, meth, handler, slow, op, mutates, ctl) ctl,
      EMBER_UNARY_RPCS(NAME_ROW)
#undef NAME_ROW
  };
  size_t n = sizeof(names) / sizeof(names[0]);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (names[i] != NULL && names[j] != NULL)
        CU_ASSERT_NOT_EQUAL(strcmp(names[i], names[j]), 0);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("rpc_table", NULL, NULL);
  CU_add_test(s, "rows_match_descriptors", test_rows_match_descriptors);
  CU_add_test(s, "every_proto_method_has_one_row", test_every_proto_method_has_one_row);
  CU_add_test(s, "names_agree_with_proto", test_names_agree_with_proto);
  CU_add_test(s, "ctl_names_unique", test_ctl_names_unique);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
