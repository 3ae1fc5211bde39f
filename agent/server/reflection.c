/* reflection.c: gRPC server reflection, v1 and v1alpha (same wire format, so
 * one protobuf-c codec serves both paths): list_services,
 * file_containing_symbol, file_by_filename and the extension queries. Each
 * file answer carries the file and its transitive dependencies as serialized
 * FileDescriptorProto, taken byte-for-byte from the descriptor set embedded at
 * build time (proto/CMakeLists.txt, built with --include_source_info so the
 * answers carry the protos' comments), so grpcurl list/describe work with no
 * .proto at hand.
 *
 * file_containing_symbol resolves every symbol kind by its fully qualified
 * name: services, methods, messages (nested too), fields, oneofs, extensions,
 * enums, and enum values, the latter under protobuf scoping (siblings of the
 * enum: "ember.v1.INSTANCE_STATE_RUNNING") and also enum-qualified
 * ("ember.v1.InstanceState.INSTANCE_STATE_RUNNING"), as some clients ask.
 *
 * The index is built once at server creation and read-only afterwards. */
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#include <string.h>

extern const unsigned char ember_descriptor_set[];
extern const size_t ember_descriptor_set_len;

typedef struct srv__file {
  const uint8_t *bytes; /* into ember_descriptor_set */
  size_t len;
  Google__Protobuf__FileDescriptorProto *fd;
} srv__file;

typedef struct srv__sym {
  char *name; /* fully qualified, no leading dot */
  size_t file;
  bool is_message;
} srv__sym;

struct srv_reflection {
  srv__file *files;
  size_t n_files;
  srv__sym *syms;
  size_t n_syms, cap_syms;
  char **services;
  size_t n_services;
};

static void srv__add_sym(srv_reflection *r, char *name, size_t file, bool is_message)
{
  if (r->n_syms == r->cap_syms) {
    r->cap_syms = r->cap_syms ? r->cap_syms * 2 : 64;
    r->syms = cmn_realloc(r->syms, r->cap_syms * sizeof(*r->syms));
  }
  r->syms[r->n_syms++] = (srv__sym){name, file, is_message};
}

static char *srv__join(const char *scope, const char *name)
{
  return scope[0] ? cmn_asprintf("%s.%s", scope, name) : cmn_strdup(name);
}

static void srv__index_enum(srv_reflection *r, const char *scope,
                            const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
  char *full = srv__join(scope, e->name);
  for (size_t i = 0; i < e->n_value; i++) {
    /* Enum values live in the enum's enclosing scope (protobuf scoping); the
     * enum-qualified spelling is accepted too. */
    srv__add_sym(r, srv__join(scope, e->value[i]->name), file, false);
    srv__add_sym(r, srv__join(full, e->value[i]->name), file, false);
  }
  srv__add_sym(r, full, file, false);
}

/* Fields and extensions are scoped by the message (or file) that declares
 * them: "ember.v1.Instance.spec". */
static void srv__index_fields(srv_reflection *r, const char *scope,
                              Google__Protobuf__FieldDescriptorProto *const *fields, size_t n,
                              size_t file)
{
  for (size_t i = 0; i < n; i++)
    srv__add_sym(r, srv__join(scope, fields[i]->name), file, false);
}

static void srv__index_message(srv_reflection *r, const char *scope,
                               const Google__Protobuf__DescriptorProto *m, size_t file)
{
  char *full = srv__join(scope, m->name);
  srv__add_sym(r, full, file, true);
  srv__index_fields(r, full, m->field, m->n_field, file);
  srv__index_fields(r, full, m->extension, m->n_extension, file);
  for (size_t i = 0; i < m->n_oneof_decl; i++)
    srv__add_sym(r, srv__join(full, m->oneof_decl[i]->name), file, false);
  for (size_t i = 0; i < m->n_nested_type; i++)
    srv__index_message(r, full, m->nested_type[i], file);
  for (size_t i = 0; i < m->n_enum_type; i++)
    srv__index_enum(r, full, m->enum_type[i], file);
}

/* Reads a varint; returns bytes used or 0 when malformed. */
static size_t srv__varint(const uint8_t *p, size_t n, uint64_t *out)
{
  uint64_t v = 0;
  for (size_t i = 0; i < n && i < 10; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if ((p[i] & 0x80) == 0) {
      *out = v;
      return i + 1;
    }
  }
  return 0;
}

srv_reflection *srv_reflection_create(cmn_error *err)
{
  srv_reflection *r = cmn_calloc(1, sizeof(*r));
  const uint8_t *p = ember_descriptor_set;
  size_t n = ember_descriptor_set_len;
  /* FileDescriptorSet { repeated FileDescriptorProto file = 1; }: walk the
   * wire format to keep each file's exact bytes. */
  while (n > 0) {
    uint64_t tag, len;
    size_t k = srv__varint(p, n, &tag);
    if (k == 0 || tag != ((1 << 3) | 2))
      goto bad;
    p += k, n -= k;
    k = srv__varint(p, n, &len);
    if (k == 0 || len > n - k)
      goto bad;
    p += k, n -= k;
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(NULL, len, p);
    if (fd == NULL)
      goto bad;
    r->files = cmn_realloc(r->files, (r->n_files + 1) * sizeof(*r->files));
    r->files[r->n_files++] = (srv__file){p, len, fd};
    p += len, n -= len;
  }
  for (size_t f = 0; f < r->n_files; f++) {
    const Google__Protobuf__FileDescriptorProto *fd = r->files[f].fd;
    const char *pkg = fd->package ? fd->package : "";
    for (size_t i = 0; i < fd->n_message_type; i++)
      srv__index_message(r, pkg, fd->message_type[i], f);
    for (size_t i = 0; i < fd->n_enum_type; i++)
      srv__index_enum(r, pkg, fd->enum_type[i], f);
    srv__index_fields(r, pkg, fd->extension, fd->n_extension, f);
    for (size_t i = 0; i < fd->n_service; i++) {
      const Google__Protobuf__ServiceDescriptorProto *sv = fd->service[i];
      char *full = srv__join(pkg, sv->name);
      for (size_t j = 0; j < sv->n_method; j++)
        srv__add_sym(r, srv__join(full, sv->method[j]->name), f, false);
      r->services = cmn_realloc(r->services, (r->n_services + 1) * sizeof(char *));
      r->services[r->n_services++] = cmn_strdup(full);
      srv__add_sym(r, full, f, false);
    }
  }
  return r;
bad:
  srv_reflection_free(r);
  cmn_err_set(err, CMN_INTERNAL, "the embedded descriptor set is malformed");
  return NULL;
}

void srv_reflection_free(srv_reflection *r)
{
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n_files; i++)
    google__protobuf__file_descriptor_proto__free_unpacked(r->files[i].fd, NULL);
  for (size_t i = 0; i < r->n_syms; i++)
    free(r->syms[i].name);
  for (size_t i = 0; i < r->n_services; i++)
    free(r->services[i]);
  free(r->files);
  free(r->syms);
  free(r->services);
  free(r);
}

static long srv__file_by_name(const srv_reflection *r, const char *name)
{
  for (size_t i = 0; i < r->n_files; i++)
    if (strcmp(r->files[i].fd->name, name) == 0)
      return (long)i;
  return -1;
}

static const srv__sym *srv__sym_find(const srv_reflection *r, const char *name)
{
  if (name[0] == '.')
    name++;
  for (size_t i = 0; i < r->n_syms; i++)
    if (strcmp(r->syms[i].name, name) == 0)
      return &r->syms[i];
  return NULL;
}

/* The file first, then its dependencies, each once. */
static void srv__closure(const srv_reflection *r, size_t f, bool *seen, ProtobufCBinaryData *out,
                         size_t *n)
{
  if (seen[f])
    return;
  seen[f] = true;
  out[(*n)++] = (ProtobufCBinaryData){r->files[f].len, (uint8_t *)r->files[f].bytes};
  const Google__Protobuf__FileDescriptorProto *fd = r->files[f].fd;
  for (size_t i = 0; i < fd->n_dependency; i++) {
    long d = srv__file_by_name(r, fd->dependency[i]);
    if (d >= 0)
      srv__closure(r, (size_t)d, seen, out, n);
  }
}

/* Builds the packed response to one request. */
static grpc_byte_buffer *srv__answer(const srv_reflection *r,
                                     Grpc__Reflection__V1__ServerReflectionRequest *req)
{
  Grpc__Reflection__V1__ServerReflectionResponse out =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  out.valid_host = req->host;
  out.original_request = req;
  Grpc__Reflection__V1__FileDescriptorResponse fdr =
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1__ListServiceResponse lsr = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1__ExtensionNumberResponse enr =
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  Grpc__Reflection__V1__ErrorResponse er = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  cleanup_free ProtobufCBinaryData *blobs = cmn_calloc(r->n_files + 1, sizeof(*blobs));
  cleanup_free bool *seen = cmn_calloc(r->n_files + 1, sizeof(bool));
  cleanup_free Grpc__Reflection__V1__ServiceResponse *svcs =
      cmn_calloc(r->n_services + 1, sizeof(*svcs));
  cleanup_free Grpc__Reflection__V1__ServiceResponse **svcp =
      cmn_calloc(r->n_services + 1, sizeof(*svcp));
  cleanup_free char *emsg = NULL;
  long file = -1;

  switch (req->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    for (size_t i = 0; i < r->n_services; i++) {
      grpc__reflection__v1__service_response__init(&svcs[i]);
      svcs[i].name = r->services[i];
      svcp[i] = &svcs[i];
    }
    lsr.n_service = r->n_services;
    lsr.service = svcp;
    out.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    out.list_services_response = &lsr;
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    file = srv__file_by_name(r, req->file_by_filename);
    if (file < 0)
      emsg = cmn_asprintf("file not found: %s", req->file_by_filename);
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
    const srv__sym *s = srv__sym_find(r, req->file_containing_symbol);
    if (s == NULL)
      emsg = cmn_asprintf("symbol not found: %s", req->file_containing_symbol);
    else
      file = (long)s->file;
    break;
  }
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    /* The served files declare no extensions. */
    emsg = cmn_asprintf(
        "extension %d of %s not found",
        req->file_containing_extension ? req->file_containing_extension->extension_number : 0,
        req->file_containing_extension ? req->file_containing_extension->containing_type : "");
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
    const srv__sym *s = srv__sym_find(r, req->all_extension_numbers_of_type);
    if (s == NULL || !s->is_message) {
      emsg = cmn_asprintf("message type not found: %s", req->all_extension_numbers_of_type);
    } else {
      enr.base_type_name = s->name;
      out.message_response_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
      out.all_extension_numbers_response = &enr;
    }
    break;
  }
  default:
    break;
  }

  if (file >= 0) {
    size_t n = 0;
    srv__closure(r, (size_t)file, seen, blobs, &n);
    fdr.n_file_descriptor_proto = n;
    fdr.file_descriptor_proto = blobs;
    out.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    out.file_descriptor_response = &fdr;
  } else if (emsg != NULL ||
             out.message_response_case ==
                 GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
    er.error_code = emsg != NULL ? CMN_NOT_FOUND : CMN_INVALID_ARGUMENT;
    er.error_message = emsg != NULL ? emsg : (char *)"the request names no query";
    out.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    out.error_response = &er;
  }
  return srv_pack_bb(&out.base);
}

static void srv__refl_on_recv(srv_call *c, bool ok);

static void srv__refl_post_recv_locked(srv_call *c)
{
  if (c->closed || c->finishing || c->status_sent)
    return;
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_buf;
  srv_call_batch_locked(c, &op, 1, &c->t_recv);
}

static void srv__refl_on_recv(srv_call *c, bool ok)
{
  pthread_mutex_lock(&c->mu);
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  pthread_mutex_unlock(&c->mu);
  if (!ok || bb == NULL) {
    /* Half-close by the client (or the call is gone): end after the answers. */
    pthread_mutex_lock(&c->mu);
    srv_stream_end_locked(c, 0, NULL);
    pthread_mutex_unlock(&c->mu);
    srv_call_unref(c);
    return;
  }
  size_t len = 0;
  cleanup_free uint8_t *data = srv_bb_flatten(bb, &len);
  grpc_byte_buffer_destroy(bb);
  cmn_error err = {0};
  bool bad = data == NULL || srv_request_check(c->method, data, len, &err) < 0;
  Grpc__Reflection__V1__ServerReflectionRequest *req =
      bad ? NULL : grpc__reflection__v1__server_reflection_request__unpack(NULL, len, data);
  pthread_mutex_lock(&c->mu);
  if (req == NULL) {
    srv_stream_end_locked(c, CMN_INVALID_ARGUMENT,
                          err.msg[0] ? err.msg : "cannot decode ServerReflectionRequest");
  } else {
    grpc_byte_buffer *ans = srv__answer(c->srv->refl, req);
    srv_stream_push_locked(c, ans);
    srv__refl_post_recv_locked(c);
  }
  pthread_mutex_unlock(&c->mu);
  if (req != NULL)
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
  srv_call_unref(c);
}

void srv_reflection_start(srv_call *c)
{
  pthread_mutex_lock(&c->mu);
  c->t_recv.fn = srv__refl_on_recv; /* set once, before any receive is posted */
  srv__refl_post_recv_locked(c);
  pthread_mutex_unlock(&c->mu);
}
