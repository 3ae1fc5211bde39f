/* metrics_agent.c: emberd's metric families (metrics_agent.h) and how they are
 * fed: the manager's events for successful lifecycle operations, calls from
 * the gRPC layer for failures and RPC ends, and the instance list at scrape
 * time for the ember_instances gauge. */
#include "agent/metrics_agent.h"
#include "agent/metrics.h"
#include "common/cleanup.h"
#include "common/mem.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Lifecycle operations take milliseconds (pause) to minutes (a full standby
 * of a large guest). */
static const double metrics__op_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                             2.5,   5,    10,    30,   60,  120,  300};
/* RPCs: Get/List take well under a millisecond; lifecycle calls as above. */
static const double metrics__rpc_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define METRICS__N(a) (sizeof(a) / sizeof((a)[0]))

struct agent_metrics {
  agent_mreg *reg;
  int f_build, f_start, f_ops, f_op_dur, f_standby, f_rpc, f_rpc_dur;
  _Atomic(agent_manager *) mgr; /* for scrape-time gauges; NULL when detached */
  int sub;                      /* subscription handle; 0 when none */
};

agent_metrics *agent_metrics_create(const char *version, double start_time_s)
{
  agent_metrics *m = cmn_calloc(1, sizeof(*m));
  agent_mreg *r = m->reg = agent_mreg_create();
  atomic_init(&m->mgr, NULL);
  m->f_build =
      agent_mreg_family(r, "ember_build_info", "emberd's version; always 1.", AGENT_MTYPE_GAUGE,
                        (const char *const[]){"version", NULL}, NULL, 0);
  m->f_start = agent_mreg_family(r, "ember_process_start_time_seconds",
                                 "When emberd started, in seconds since the Unix epoch.",
                                 AGENT_MTYPE_GAUGE, NULL, NULL, 0);
  m->f_ops = agent_mreg_family(
      r, "ember_operations_total",
      "Lifecycle operations that ran, by result (ok or the gRPC status code in lower case). "
      "Calls whose target state already held are not counted.",
      AGENT_MTYPE_COUNTER, (const char *const[]){"operation", "hypervisor", "result", NULL}, NULL,
      0);
  m->f_op_dur = agent_mreg_family(
      r, "ember_operation_duration_seconds", "Duration of successful lifecycle operations.",
      AGENT_MTYPE_HISTOGRAM, (const char *const[]){"operation", "hypervisor", NULL},
      metrics__op_buckets, METRICS__N(metrics__op_buckets));
  m->f_standby = agent_mreg_family(
      r, "ember_standby_duration_seconds",
      "Duration of successful standbys, by snapshot kind (full, or diff on a reused base).",
      AGENT_MTYPE_HISTOGRAM, (const char *const[]){"hypervisor", "kind", NULL}, metrics__op_buckets,
      METRICS__N(metrics__op_buckets));
  m->f_rpc = agent_mreg_family(
      r, "ember_grpc_requests_total", "gRPC calls handled, by full method path and status code.",
      AGENT_MTYPE_COUNTER, (const char *const[]){"method", "code", NULL}, NULL, 0);
  m->f_rpc_dur = agent_mreg_family(
      r, "ember_grpc_request_duration_seconds",
      "Time from the arrival of a gRPC call to its status (streams: their whole life).",
      AGENT_MTYPE_HISTOGRAM, (const char *const[]){"method", NULL}, metrics__rpc_buckets,
      METRICS__N(metrics__rpc_buckets));
  agent_mreg_set(r, m->f_build, (const char *const[]){version}, 1);
  agent_mreg_set(r, m->f_start, NULL, start_time_s);
  return m;
}

void agent_metrics_free(agent_metrics *m)
{
  if (m == NULL)
    return;
  agent_metrics_detach(m);
  agent_mreg_free(m->reg);
  free(m);
}

void agent_metrics_attach(agent_metrics *m, agent_manager *mgr)
{
  agent_metrics_detach(m);
  atomic_store(&m->mgr, mgr);
  m->sub = agent_manager_subscribe(mgr, agent_metrics_on_event, m);
}

void agent_metrics_detach(agent_metrics *m)
{
  agent_manager *mgr = atomic_exchange(&m->mgr, NULL);
  if (mgr != NULL && m->sub > 0)
    agent_manager_unsubscribe(mgr, m->sub);
  m->sub = 0;
}

/* "FAILED_PRECONDITION" -> "failed_precondition"; "Running" -> "running". */
static void metrics__lower(char *buf, size_t size, const char *s)
{
  size_t i = 0;
  for (; s != NULL && s[i] != '\0' && i + 1 < size; i++)
    buf[i] = (char)tolower((unsigned char)s[i]);
  buf[i] = '\0';
}

static bool metrics__is_lifecycle(agent_op op)
{
  return op >= AGENT_OP_CREATE && op <= AGENT_OP_DELETE;
}

static double metrics__seconds(int64_t us) { return (double)us / 1e6; }

static const char *metrics__hv(const char *hv) { return hv != NULL && hv[0] ? hv : "unknown"; }

void agent_metrics_on_event(void *ctx, const agent_event *ev)
{
  agent_metrics *m = ctx;
  if (!metrics__is_lifecycle(ev->op) || ev->instance == NULL)
    return;
  const char *op = agent_op_name(ev->op);
  const char *hv = metrics__hv(ev->instance->hypervisor);
  agent_mreg_add(m->reg, m->f_ops, (const char *const[]){op, hv, "ok"}, 1);
  /* Create is instant and delete's event carries no duration (the gRPC layer
   * reports delete's through agent_metrics_op_duration). */
  if (ev->op == AGENT_OP_CREATE || ev->op == AGENT_OP_DELETE)
    return;
  double s = metrics__seconds(ev->duration_us);
  agent_mreg_observe(m->reg, m->f_op_dur, (const char *const[]){op, hv}, s);
  if (ev->op == AGENT_OP_STANDBY && ev->new_state == AGENT_STATE_STANDBY) {
    agent_snap_kind k = ev->instance->last_snapshot_kind;
    if (k == AGENT_SNAP_FULL || k == AGENT_SNAP_DIFF)
      agent_mreg_observe(m->reg, m->f_standby,
                         (const char *const[]){hv, k == AGENT_SNAP_FULL ? "full" : "diff"}, s);
  }
}

void agent_metrics_rpc_done(agent_metrics *m, const char *method, int code, int64_t duration_us)
{
  const char *meth = method != NULL ? method : "unknown";
  agent_mreg_add(m->reg, m->f_rpc, (const char *const[]){meth, cmn_code_name(code)}, 1);
  agent_mreg_observe(m->reg, m->f_rpc_dur, (const char *const[]){meth},
                     metrics__seconds(duration_us));
}

void agent_metrics_op_failed(agent_metrics *m, agent_op op, const char *hypervisor, int code)
{
  if (!metrics__is_lifecycle(op) || code == CMN_OK)
    return;
  char result[64];
  metrics__lower(result, sizeof(result), cmn_code_name(code));
  agent_mreg_add(m->reg, m->f_ops,
                 (const char *const[]){agent_op_name(op), metrics__hv(hypervisor), result}, 1);
}

void agent_metrics_op_duration(agent_metrics *m, agent_op op, const char *hypervisor,
                               int64_t duration_us)
{
  if (!metrics__is_lifecycle(op))
    return;
  agent_mreg_observe(m->reg, m->f_op_dur,
                     (const char *const[]){agent_op_name(op), metrics__hv(hypervisor)},
                     metrics__seconds(duration_us));
}

/* ember_instances from the committed records, with a zero series for every
 * state of every registered hypervisor type so that series never vanish. */
static char *metrics__render_instances(agent_manager *mgr, size_t *len)
{
  agent_mreg *r = agent_mreg_create();
  int f = agent_mreg_family(r, "ember_instances", "Instances by state and hypervisor type.",
                            AGENT_MTYPE_GAUGE, (const char *const[]){"state", "hypervisor", NULL},
                            NULL, 0);
  static const agent_state states[] = {AGENT_STATE_STOPPED, AGENT_STATE_RUNNING, AGENT_STATE_PAUSED,
                                       AGENT_STATE_STANDBY, AGENT_STATE_UNKNOWN};
  char st[32];
  if (mgr != NULL) {
    const vmm_registry *reg = agent_manager_registry(mgr);
    for (size_t i = 0; reg != NULL && i < vmm_registry_count(reg); i++)
      for (size_t k = 0; k < METRICS__N(states); k++) {
        metrics__lower(st, sizeof(st), agent_state_name(states[k]));
        agent_mreg_set(r, f, (const char *const[]){st, vmm_registry_at(reg, i)->driver->type}, 0);
      }
    agent_instance_view *v = NULL;
    size_t n = 0;
    cmn_error err = {0};
    if (agent_manager_list(mgr, AGENT_STATE_UNSPECIFIED, &v, &n, &err) == 0) {
      for (size_t i = 0; i < n; i++) {
        metrics__lower(st, sizeof(st), agent_state_name(v[i].state));
        agent_mreg_add(r, f, (const char *const[]){st, metrics__hv(v[i].hypervisor)}, 1);
      }
      agent_instance_views_free(v, n);
    }
  }
  if (mgr != NULL) {
    /* The warm VMM pools (docs/wake.md): one series per registered type. */
    int fw = agent_mreg_family(
        r, "ember_warm_vmms", "Warm VMMs waiting for a restore, by hypervisor type.",
        AGENT_MTYPE_GAUGE, (const char *const[]){"hypervisor", NULL}, NULL, 0);
    int fs = agent_mreg_family(
        r, "ember_warm_pool_size", "Configured size of the warm VMM pool, by hypervisor type.",
        AGENT_MTYPE_GAUGE, (const char *const[]){"hypervisor", NULL}, NULL, 0);
    int fe = agent_mreg_family(
        r, "ember_warm_events_total",
        "Warm VMM pool events: prepared, used (a restore ran in one), fallback (one was unusable "
        "and a fresh VMM ran), discarded (ended unused), lost (exited while waiting), failed "
        "(could not be prepared).",
        AGENT_MTYPE_COUNTER, (const char *const[]){"hypervisor", "event", NULL}, NULL, 0);
    agent_warm_stats *ws = NULL;
    size_t nws = 0;
    if (agent_manager_warm_stats(mgr, &ws, &nws) == 0) {
      for (size_t i = 0; i < nws; i++) {
        const char *hv = ws[i].hypervisor;
        agent_mreg_set(r, fw, (const char *const[]){hv}, ws[i].warm);
        agent_mreg_set(r, fs, (const char *const[]){hv}, ws[i].size);
        const struct {
          const char *name;
          uint64_t v;
        } ev[] = {{"prepared", ws[i].prepared}, {"used", ws[i].used},
                  {"fallback", ws[i].fallback}, {"discarded", ws[i].discarded},
                  {"lost", ws[i].lost},         {"failed", ws[i].failed}};
        for (size_t k = 0; k < METRICS__N(ev); k++)
          agent_mreg_add(r, fe, (const char *const[]){hv, ev[k].name}, (double)ev[k].v);
      }
      free(ws);
    }
  }
  char *text = agent_mreg_format(r, len);
  agent_mreg_free(r);
  return text;
}

char *agent_metrics_render(agent_metrics *m, size_t *len)
{
  size_t n1 = 0, n2 = 0;
  /* The gauges first: agent_manager_list takes the manager's lock, and no
   * lock of ours is held meanwhile. */
  cleanup_free char *inst = metrics__render_instances(atomic_load(&m->mgr), &n2);
  char *text = agent_mreg_format(m->reg, &n1);
  text = cmn_realloc(text, n1 + n2 + 1);
  memcpy(text + n1, inst, n2 + 1);
  if (len != NULL)
    *len = n1 + n2;
  return text;
}
