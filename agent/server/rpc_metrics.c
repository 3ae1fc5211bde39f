/* rpc_metrics.c: what the gRPC layer reports to the metrics (agent/
 * metrics_agent.h): the end of every call, and the outcome of lifecycle
 * calls whose failures the manager does not report as events. The instance's
 * hypervisor type is resolved before the handler runs (so a successful delete,
 * after which the instance is gone, still has it); a type that a client names
 * in CreateInstance becomes a label only when it is a registered one. */
#include "agent/metrics_agent.h"
#include "agent/server/internal.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <stdlib.h>
#include <string.h>

static const struct {
  const char *path;
  agent_op op;
} srv__lifecycle[] = {
    {"/ember.v1.InstanceService/CreateInstance", AGENT_OP_CREATE},
    {"/ember.v1.InstanceService/StartInstance", AGENT_OP_START},
    {"/ember.v1.InstanceService/StopInstance", AGENT_OP_STOP},
    {"/ember.v1.InstanceService/PauseInstance", AGENT_OP_PAUSE},
    {"/ember.v1.InstanceService/ResumeInstance", AGENT_OP_RESUME},
    {"/ember.v1.InstanceService/StandbyInstance", AGENT_OP_STANDBY},
    {"/ember.v1.InstanceService/RestoreInstance", AGENT_OP_RESTORE},
    {"/ember.v1.InstanceService/DeleteInstance", AGENT_OP_DELETE},
};

void srv_metrics_rpc_done_locked(srv_call *c, int code)
{
  if (c->metrics_done || c->srv->opts.metrics == NULL)
    return;
  c->metrics_done = true;
  agent_metrics_rpc_done(c->srv->opts.metrics, c->method != NULL ? c->method->path : NULL,
                         code, srv_now_us() - c->start_us);
}

/* The hypervisor type of an instance, or NULL. */
static char *srv__instance_hv(srv_server *s, const char *id_or_name)
{
  if (id_or_name == NULL || id_or_name[0] == '\0')
    return NULL;
  agent_instance_view v;
  cmn_error err = {0};
  if (agent_manager_get(s->mgr, id_or_name, &v, &err) < 0)
    return NULL;
  char *hv = cmn_strdup(v.hypervisor);
  agent_instance_view_free(&v);
  return hv;
}

void srv_metrics_unary_begin(srv_call *c, const uint8_t *req, size_t len, srv_op_probe *p)
{
  memset(p, 0, sizeof(*p));
  srv_server *s = c->srv;
  if (s->opts.metrics == NULL || c->method == NULL || req == NULL)
    return;
  for (size_t i = 0; i < sizeof(srv__lifecycle) / sizeof(srv__lifecycle[0]); i++)
    if (strcmp(c->method->path, srv__lifecycle[i].path) == 0)
      p->op = srv__lifecycle[i].op;
  if (p->op == AGENT_OP_NONE)
    return;
  if (p->op == AGENT_OP_CREATE) {
    Ember__V1__CreateInstanceRequest *r = ember__v1__create_instance_request__unpack(NULL, len, req);
    if (r == NULL)
      return;
    p->name = cmn_strdup(r->name);
    const char *hv = r->spec != NULL ? r->spec->hypervisor : NULL;
    if (hv != NULL && vmm_registry_get(agent_manager_registry(s->mgr), hv) != NULL)
      p->hypervisor = cmn_strdup(hv);
    ember__v1__create_instance_request__free_unpacked(r, NULL);
    return;
  }
  /* Every other lifecycle request is `string id = 1`, the wire form of
   * GetInstanceRequest. */
  Ember__V1__GetInstanceRequest *r = ember__v1__get_instance_request__unpack(NULL, len, req);
  if (r == NULL)
    return;
  p->hypervisor = srv__instance_hv(s, r->id);
  ember__v1__get_instance_request__free_unpacked(r, NULL);
}

void srv_metrics_unary_end(srv_call *c, srv_op_probe *p, int code, int64_t duration_us)
{
  agent_metrics *m = c->srv->opts.metrics;
  if (m != NULL && p->op != AGENT_OP_NONE) {
    if (code != CMN_OK) {
      agent_op op = p->op;
      /* CreateInstance with start=true fails after the create when the start
       * fails: the create has been counted (its event); the start failed. */
      if (op == AGENT_OP_CREATE && code != CMN_ALREADY_EXISTS) {
        char *hv = srv__instance_hv(c->srv, p->name);
        if (hv != NULL) {
          op = AGENT_OP_START;
          free(p->hypervisor);
          p->hypervisor = hv;
        }
      }
      agent_metrics_op_failed(m, op, p->hypervisor, code);
    } else if (p->op == AGENT_OP_DELETE) {
      agent_metrics_op_duration(m, AGENT_OP_DELETE, p->hypervisor, duration_us);
    }
  }
  free(p->hypervisor);
  free(p->name);
  memset(p, 0, sizeof(*p));
}
