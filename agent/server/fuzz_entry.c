/* fuzz_entry.c: the test-only dispatch into the InstanceService handlers (see
 * fuzz_entry.h). The unary methods run exactly the function emberd's method
 * table names; WatchInstances cannot run without a gRPC call object, so its
 * request checks are repeated here (decode, id length, lookup) and must be
 * kept in step with srv_watch_start in instance.c. */
#include "agent/server/fuzz_entry.h"
#include "agent/server/internal.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Same limit as SRV_ID_MAX in instance.c. */
#define FUZZ_ID_MAX 256

struct srv_fuzz {
  srv_server srv; /* only mgr is set: the handlers use nothing else */
  const srv_method *methods[32];
  size_t n;
};

/* The InstanceService rows of the method table in .proto order (the index a
 * corpus seed's first byte selects; test/fuzz/make_corpus.py takes the same
 * order from the descriptor). */
static void fuzz__collect(const srv_method **out, size_t *n)
{
  const ProtobufCServiceDescriptor *svc = &ember__v1__instance_service__descriptor;
  *n = 0;
  for (unsigned k = 0; k < svc->n_methods && *n < 32; k++)
    for (size_t i = 0; i < srv_n_methods; i++)
      if (srv_methods[i].service == svc && strcmp(srv_methods[i].method, svc->methods[k].name) == 0)
        out[(*n)++] = &srv_methods[i];
}

srv_fuzz *srv_fuzz_create(agent_manager *mgr)
{
  srv_fuzz *f = cmn_calloc(1, sizeof(*f));
  f->srv.mgr = mgr;
  fuzz__collect(f->methods, &f->n);
  return f;
}

void srv_fuzz_free(srv_fuzz *f) { free(f); }

size_t srv_fuzz_method_count(void)
{
  const srv_method *m[32];
  size_t n;
  fuzz__collect(m, &n);
  return n;
}

const char *srv_fuzz_method_name(size_t i)
{
  const srv_method *m[32];
  size_t n;
  fuzz__collect(m, &n);
  return i < n ? m[i]->method : NULL;
}

bool srv_fuzz_method_mutates(size_t i)
{
  const char *name = srv_fuzz_method_name(i);
  if (name == NULL)
    return false;
  const srv_method *m[32];
  size_t n;
  fuzz__collect(m, &n);
  return m[i]->mutates; /* agent/rpc_table.h */
}

/* WatchInstances' request checks, as srv_watch_start performs them. */
static int fuzz__watch(srv_fuzz *f, const uint8_t *req, size_t len, cmn_error *err)
{
  Ember__V1__WatchInstancesRequest *r = ember__v1__watch_instances_request__unpack(NULL, len, req);
  if (r == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot decode the request as %s",
                       ember__v1__watch_instances_request__descriptor.name);
  int rc = 0;
  if (r->id[0] != '\0') {
    if (strlen(r->id) > FUZZ_ID_MAX) {
      rc = cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is longer than %d bytes", FUZZ_ID_MAX);
    } else {
      agent_instance_view v = {0};
      rc = agent_manager_get(f->srv.mgr, r->id, &v, err);
      agent_instance_view_free(&v);
    }
  }
  ember__v1__watch_instances_request__free_unpacked(r, NULL);
  return rc < 0 ? -1 : 0;
}

int srv_fuzz_request_check(srv_fuzz *f, size_t i, const uint8_t *req, size_t len, cmn_error *err)
{
  if (i >= f->n)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "no method %zu", i);
  return srv_request_check(f->methods[i], req, len, err);
}

int srv_fuzz_dispatch(srv_fuzz *f, size_t i, const uint8_t *req, size_t len, uint8_t **resp,
                      size_t *resp_len, cmn_error *err)
{
  *resp = NULL;
  *resp_len = 0;
  if (i >= f->n)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "no method %zu", i);
  const srv_method *m = f->methods[i];
  /* The check emberd runs on every request before a handler sees it. */
  if (srv_request_check(m, req, len, err) < 0)
    return -1;
  if (m->kind == SRV_UNARY) {
    srv_op_probe probe = {0}; /* no metrics here */
    return m->unary(&f->srv, &probe, req, len, resp, resp_len, err);
  }
  if (fuzz__watch(f, req, len, err) < 0)
    return -1;
  *resp = cmn_calloc(1, 1);
  return 0;
}
