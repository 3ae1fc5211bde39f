/* rpc_metrics.c: what the gRPC layer reports to the metrics (agent/
 * metrics_agent.h): the end of every call, and the outcome of lifecycle
 * calls whose failures the manager does not report as events. The operation
 * comes from the call's row of agent/rpc_table.h; the instance's hypervisor
 * type is noted by the handler right after it decoded the request, before it
 * calls the manager (so a successful delete, after which the instance is gone,
 * still has it; the request is never decoded a second time for metrics); a
 * type that a client names in CreateInstance becomes a label only when it is a
 * registered one. */
#include "agent/metrics_agent.h"
#include "agent/server/internal.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

void srv_metrics_rpc_done_locked(srv_call *c, int code)
{
  if (c->metrics_done || c->srv->opts.metrics == NULL)
    return;
  c->metrics_done = true;
  agent_metrics_rpc_done(c->srv->opts.metrics, c->method != NULL ? c->method->path : NULL, code,
                         srv_now_us() - c->start_us);
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

void srv_metrics_unary_begin(srv_call *c, const uint8_t *req, srv_op_probe *p)
{
  memset(p, 0, sizeof(*p));
  srv_server *s = c->srv;
  if (s->opts.metrics == NULL || c->method == NULL || req == NULL)
    return;
  p->op = c->method->op; /* agent/rpc_table.h */
}

void srv_probe_create(srv_server *s, srv_op_probe *p, const char *name, const char *hypervisor)
{
  if (s->opts.metrics == NULL || p->op != AGENT_OP_CREATE || p->name != NULL)
    return;
  p->name = cmn_strdup(name);
  if (hypervisor != NULL && vmm_registry_get(agent_manager_registry(s->mgr), hypervisor) != NULL)
    p->hypervisor = cmn_strdup(hypervisor);
}

void srv_probe_instance(srv_server *s, srv_op_probe *p, const char *id_or_name)
{
  if (s->opts.metrics == NULL || p->op == AGENT_OP_NONE || p->op == AGENT_OP_CREATE ||
      p->hypervisor != NULL)
    return;
  p->hypervisor = srv__instance_hv(s, id_or_name);
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
