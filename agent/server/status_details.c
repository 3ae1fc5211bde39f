/* status_details.c: a cmn_error's detail fields as the standard gRPC error
 * model: a serialized google.rpc.Status (code, message, details) for the
 * `grpc-status-details-bin` trailer. INVALID_ARGUMENT with a field becomes a
 * google.rpc.BadRequest with one FieldViolation; FAILED_PRECONDITION with a
 * precondition type becomes a google.rpc.PreconditionFailure with one
 * Violation (description: the message). Other errors carry no detail, and no
 * trailer is sent (the status code and message say it all). docs/api.md. */
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <ctype.h>
#include <string.h>

#define SRV_TYPE_URL_PREFIX "type.googleapis.com/"

/* Top-level fields of the requests that validation can reject (not `start`:
 * "start: ..." is the context of a failed boot, not a field), and the fields
 * of InstanceSpec that validation messages name without their "spec." prefix. */
static const char *const srv__request_fields[] = {
    "id",     "name",      "spec",       "labels",           "request_id",
    "filter", "page_size", "page_token", "graceful_timeout", NULL};
static const char *const srv__spec_fields[] = {
    "hypervisor",         "vcpus", "memory_mib",  "kernel_path", "initrd_path", "cmdline", "disks",
    "network_interfaces", "vsock", "mac_address", NULL};

static bool srv__in(const char *const *list, const char *s, size_t n)
{
  for (; *list != NULL; list++)
    if (strlen(*list) == n && strncmp(*list, s, n) == 0)
      return true;
  return false;
}

/* Messages of INVALID_ARGUMENT start with the field path they are about
 * ("spec.vcpus must be ...", "filter: ..."): the path when the first word is
 * one, else "". An explicit err->field (cmn_err_field) wins over this. */
static void srv__infer_field(const char *msg, char *out, size_t size)
{
  out[0] = '\0';
  size_t n = 0;
  while (islower((unsigned char)msg[n]) || isdigit((unsigned char)msg[n]) || msg[n] == '_' ||
         msg[n] == '.')
    n++;
  if (n == 0 || (msg[n] != ' ' && msg[n] != ':') || msg[n - 1] == '.')
    return;
  size_t first = strcspn(msg, ".: ");
  if (srv__in(srv__request_fields, msg, first))
    snprintf(out, size, "%.*s", (int)n, msg);
  else if (strncmp(msg, "mac_address", n) == 0 && n == 11)
    snprintf(out, size, "spec.network_interfaces.mac_address");
  else if (srv__in(srv__spec_fields, msg, first))
    snprintf(out, size, "spec.%.*s", (int)n, msg);
}

/* Packs m into an Any; the Any owns the packed bytes and the type URL. */
static void srv__any(Google__Protobuf__Any *any, const ProtobufCMessage *m)
{
  google__protobuf__any__init(any);
  any->type_url = cmn_asprintf(SRV_TYPE_URL_PREFIX "%s", m->descriptor->name);
  any->value.len = protobuf_c_message_get_packed_size(m);
  any->value.data = cmn_malloc(any->value.len + 1);
  protobuf_c_message_pack(m, any->value.data);
}

bool srv_status_details(const cmn_error *err, int code, const char *msg, uint8_t **out, size_t *len)
{
  *out = NULL;
  *len = 0;
  Google__Protobuf__Any any;
  char field[CMN_ERR_DETAIL_MAX];
  if (code == CMN_INVALID_ARGUMENT) {
    if (err->field[0] != '\0')
      snprintf(field, sizeof(field), "%s", err->field);
    else
      srv__infer_field(msg, field, sizeof(field));
    if (field[0] == '\0')
      return false;
    Google__Rpc__BadRequest__FieldViolation v = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    v.field = field;
    v.description = (char *)msg;
    Google__Rpc__BadRequest__FieldViolation *vs[] = {&v};
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    br.field_violations = vs;
    br.n_field_violations = 1;
    srv__any(&any, &br.base);
  } else if (code == CMN_FAILED_PRECONDITION && err->precondition[0] != '\0') {
    Google__Rpc__PreconditionFailure__Violation v =
        GOOGLE__RPC__PRECONDITION_FAILURE__VIOLATION__INIT;
    v.type = (char *)err->precondition;
    v.subject = (char *)err->subject;
    v.description = (char *)msg;
    Google__Rpc__PreconditionFailure__Violation *vs[] = {&v};
    Google__Rpc__PreconditionFailure pf = GOOGLE__RPC__PRECONDITION_FAILURE__INIT;
    pf.violations = vs;
    pf.n_violations = 1;
    srv__any(&any, &pf.base);
  } else {
    return false;
  }
  Google__Protobuf__Any *anys[] = {&any};
  Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
  st.code = code;
  st.message = (char *)msg;
  st.details = anys;
  st.n_details = 1;
  srv_pack(&st.base, out, len);
  free(any.type_url);
  free(any.value.data);
  return true;
}
