/* instance.c: the ember.v1.InstanceService handlers: decode the request with
 * protobuf-c, convert to the manager's plain C types, call agent/manager.h,
 * convert the result back. Errors are returned as cmn_error; server.c turns
 * them into a gRPC status. WatchInstances is a server stream fed by a manager
 * subscription whose callback only queues serialized events. */
#define _GNU_SOURCE
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <string.h>

/* Request ids are names or ids; anything longer is not one of ours. */
#define SRV_ID_MAX 256

static void srv__msg_freep(void *p)
{
  ProtobufCMessage **m = p;
  if (*m != NULL)
    protobuf_c_message_free_unpacked(*m, NULL);
}
#define cleanup_msg __attribute__((cleanup(srv__msg_freep)))

static void *srv__unpack(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                         cmn_error *err)
{
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, req);
  if (m == NULL)
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot decode the request as %s", d->name);
  return m;
}

static char *srv__s(const char *s) { return (char *)(s != NULL ? s : ""); }

/* ---- view -> message ---- */

/* One Instance message pointing into a view's strings (no copies); the arrays
 * are owned here and released by srv__inst_fini. */
typedef struct srv__inst {
  Ember__V1__Instance inst;
  Ember__V1__InstanceSpec spec;
  Ember__V1__Disk *disks;
  Ember__V1__Disk **disk_ptrs;
  Ember__V1__NetworkInterface *nics;
  Ember__V1__NetworkInterface **nic_ptrs;
  Ember__V1__Vsock vsock;
} srv__inst;

static void srv__inst_init(srv__inst *m, const agent_instance_view *v)
{
  memset(m, 0, sizeof(*m));
  ember__v1__instance__init(&m->inst);
  ember__v1__instance_spec__init(&m->spec);
  const vmm_spec *sp = &v->spec;
  m->spec.hypervisor = srv__s(v->hypervisor);
  m->spec.vcpus = sp->vcpus;
  m->spec.memory_mib = sp->memory_mib;
  m->spec.kernel_path = srv__s(sp->kernel);
  m->spec.initrd_path = srv__s(sp->initrd);
  m->spec.cmdline = srv__s(sp->cmdline);
  if (sp->n_disks > 0) {
    m->disks = cmn_calloc(sp->n_disks, sizeof(*m->disks));
    m->disk_ptrs = cmn_calloc(sp->n_disks, sizeof(*m->disk_ptrs));
    for (size_t i = 0; i < sp->n_disks; i++) {
      ember__v1__disk__init(&m->disks[i]);
      m->disks[i].path = srv__s(sp->disks[i].path);
      m->disks[i].read_only = sp->disks[i].read_only;
      m->disk_ptrs[i] = &m->disks[i];
    }
    m->spec.disks = m->disk_ptrs;
    m->spec.n_disks = sp->n_disks;
  }
  if (sp->n_nics > 0) {
    m->nics = cmn_calloc(sp->n_nics, sizeof(*m->nics));
    m->nic_ptrs = cmn_calloc(sp->n_nics, sizeof(*m->nic_ptrs));
    for (size_t i = 0; i < sp->n_nics; i++) {
      ember__v1__network_interface__init(&m->nics[i]);
      m->nics[i].tap_device = srv__s(sp->nics[i].tap);
      m->nics[i].mac_address = srv__s(sp->nics[i].mac);
      m->nic_ptrs[i] = &m->nics[i];
    }
    m->spec.network_interfaces = m->nic_ptrs;
    m->spec.n_network_interfaces = sp->n_nics;
  }
  if (sp->vsock_cid != 0) {
    ember__v1__vsock__init(&m->vsock);
    m->vsock.guest_cid = sp->vsock_cid;
    m->spec.vsock = &m->vsock;
  }
  m->inst.id = srv__s(v->id);
  m->inst.name = srv__s(v->name);
  m->inst.spec = &m->spec;
  m->inst.state = (Ember__V1__InstanceState)v->state;
  m->inst.has_snapshot = v->has_snapshot;
  m->inst.last_snapshot_kind = (Ember__V1__SnapshotKind)v->last_snapshot_kind;
  m->inst.last_standby_us = v->last_standby_us;
  m->inst.last_restore_us = v->last_restore_us;
  m->inst.console_log_path = srv__s(v->console_log_path);
  m->inst.created_at_us = v->created_at_us;
  m->inst.updated_at_us = v->updated_at_us;
  m->inst.vmm_pid = v->vmm_pid;
  m->inst.status_message = srv__s(v->status_message);
}

static void srv__inst_fini(srv__inst *m)
{
  free(m->disks);
  free(m->disk_ptrs);
  free(m->nics);
  free(m->nic_ptrs);
}

static int srv__pack_view(const agent_instance_view *v, uint8_t **resp, size_t *rl)
{
  srv__inst m;
  srv__inst_init(&m, v);
  srv_pack(&m.inst.base, resp, rl);
  srv__inst_fini(&m);
  return 0;
}

static int srv__check_id(const char *id, cmn_error *err)
{
  if (id == NULL || id[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is required (an instance id or name)");
  if (strlen(id) > SRV_ID_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is longer than %d bytes", SRV_ID_MAX);
  return 0;
}

/* ---- request -> spec ---- */

static int srv__spec_from(const Ember__V1__InstanceSpec *in, vmm_spec *out, cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  out->vcpus = in->vcpus;
  out->memory_mib = in->memory_mib;
  out->kernel = cmn_strdup(in->kernel_path);
  out->initrd = in->initrd_path[0] ? cmn_strdup(in->initrd_path) : NULL;
  out->cmdline = in->cmdline[0] ? cmn_strdup(in->cmdline) : NULL;
  if (in->n_disks > 0) {
    out->disks = cmn_calloc(in->n_disks, sizeof(*out->disks));
    out->n_disks = in->n_disks;
    for (size_t i = 0; i < in->n_disks; i++) {
      out->disks[i].path = cmn_strdup(in->disks[i]->path);
      out->disks[i].read_only = in->disks[i]->read_only;
    }
  }
  if (in->n_network_interfaces > 0) {
    out->nics = cmn_calloc(in->n_network_interfaces, sizeof(*out->nics));
    out->n_nics = in->n_network_interfaces;
    for (size_t i = 0; i < in->n_network_interfaces; i++) {
      out->nics[i].tap = cmn_strdup(in->network_interfaces[i]->tap_device);
      out->nics[i].mac = in->network_interfaces[i]->mac_address[0]
                             ? cmn_strdup(in->network_interfaces[i]->mac_address)
                             : NULL;
    }
  }
  if (in->vsock != NULL) {
    /* 0 means "no vsock" inside the agent: a vsock message must name a CID. */
    if (in->vsock->guest_cid == 0) {
      vmm_spec_free(out);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "spec.vsock.guest_cid must be 3 to 4294967294 (got 0)");
    }
    out->vsock_cid = in->vsock->guest_cid;
  }
  return 0;
}

/* ---- unary handlers ---- */

int srv_unary_create(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                     cmn_error *err)
{
  cleanup_msg Ember__V1__CreateInstanceRequest *r =
      srv__unpack(&ember__v1__create_instance_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  if (r->spec == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "spec is required (hypervisor, vcpus, memory_mib, kernel_path)");
  vmm_spec spec;
  if (srv__spec_from(r->spec, &spec, err) < 0)
    return -1;
  agent_instance_view v = {0};
  int ret = agent_manager_create_instance(s->mgr, r->name, r->spec->hypervisor, &spec, r->start,
                                          &v, err);
  vmm_spec_free(&spec);
  if (ret < 0)
    return -1;
  cmn_debug(v.id, "create", "created instance %s (%s)%s", v.name, v.hypervisor,
           r->start ? " and started it" : "");
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

int srv_unary_get(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                  cmn_error *err)
{
  cleanup_msg Ember__V1__GetInstanceRequest *r =
      srv__unpack(&ember__v1__get_instance_request__descriptor, req, len, err);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  agent_instance_view v = {0};
  if (agent_manager_get(s->mgr, r->id, &v, err) < 0)
    return -1;
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

int srv_unary_list(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                   cmn_error *err)
{
  cleanup_msg Ember__V1__ListInstancesRequest *r =
      srv__unpack(&ember__v1__list_instances_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  if ((int)r->state < AGENT_STATE_UNSPECIFIED || (int)r->state > AGENT_STATE_UNKNOWN)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown instance state %d", (int)r->state);
  agent_instance_view *vs = NULL;
  size_t n = 0;
  if (agent_manager_list(s->mgr, (agent_state)r->state, &vs, &n, err) < 0)
    return -1;
  srv__inst *ms = cmn_calloc(n + 1, sizeof(*ms));
  Ember__V1__Instance **ptrs = cmn_calloc(n + 1, sizeof(*ptrs));
  for (size_t i = 0; i < n; i++) {
    srv__inst_init(&ms[i], &vs[i]);
    ptrs[i] = &ms[i].inst;
  }
  Ember__V1__ListInstancesResponse out = EMBER__V1__LIST_INSTANCES_RESPONSE__INIT;
  out.n_instances = n;
  out.instances = ptrs;
  srv_pack(&out.base, resp, rl);
  for (size_t i = 0; i < n; i++)
    srv__inst_fini(&ms[i]);
  free(ms);
  free(ptrs);
  agent_instance_views_free(vs, n);
  return 0;
}

/* Every lifecycle request message is { string id = 1; }, so one decoder serves
 * them all (GetInstanceRequest has the same shape). */
static int srv__op(srv_server *s, agent_op op, const uint8_t *req, size_t len, uint8_t **resp,
                   size_t *rl, cmn_error *err)
{
  cleanup_msg Ember__V1__GetInstanceRequest *r =
      srv__unpack(&ember__v1__get_instance_request__descriptor, req, len, err);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  agent_instance_view v = {0};
  int64_t t0 = srv_now_us();
  if (agent_manager_op(s->mgr, r->id, op, &v, err) < 0) {
    cmn_debug(r->id, agent_op_name(op), "%s failed: %s (%s)", agent_op_name(op), err->msg,
             cmn_code_name(err->code));
    return -1;
  }
  cmn_debug(v.id, agent_op_name(op), "%s done in %lld us; state %s", agent_op_name(op),
           (long long)(srv_now_us() - t0), agent_state_name(v.state));
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

int srv_unary_start(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                    cmn_error *err)
{
  return srv__op(s, AGENT_OP_START, req, len, resp, rl, err);
}
int srv_unary_stop(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                   cmn_error *err)
{
  return srv__op(s, AGENT_OP_STOP, req, len, resp, rl, err);
}
int srv_unary_pause(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                    cmn_error *err)
{
  return srv__op(s, AGENT_OP_PAUSE, req, len, resp, rl, err);
}
int srv_unary_resume(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                     cmn_error *err)
{
  return srv__op(s, AGENT_OP_RESUME, req, len, resp, rl, err);
}
int srv_unary_standby(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                      cmn_error *err)
{
  return srv__op(s, AGENT_OP_STANDBY, req, len, resp, rl, err);
}
int srv_unary_restore(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                      cmn_error *err)
{
  return srv__op(s, AGENT_OP_RESTORE, req, len, resp, rl, err);
}

int srv_unary_delete(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp, size_t *rl,
                     cmn_error *err)
{
  cleanup_msg Ember__V1__DeleteInstanceRequest *r =
      srv__unpack(&ember__v1__delete_instance_request__descriptor, req, len, err);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  cleanup_free char *id = NULL;
  if (agent_manager_delete(s->mgr, r->id, &id, err) < 0)
    return -1;
  cmn_debug(id, "delete", "deleted instance %s", r->id);
  Ember__V1__DeleteInstanceResponse out = EMBER__V1__DELETE_INSTANCE_RESPONSE__INIT;
  out.id = srv__s(id);
  return srv_pack(&out.base, resp, rl);
}

int srv_unary_list_hypervisors(srv_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                               size_t *rl, cmn_error *err)
{
  cleanup_msg Ember__V1__ListHypervisorsRequest *r =
      srv__unpack(&ember__v1__list_hypervisors_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  const vmm_registry *reg = agent_manager_registry(s->mgr);
  size_t n = reg != NULL ? vmm_registry_count(reg) : 0;
  Ember__V1__Hypervisor *hs = cmn_calloc(n + 1, sizeof(*hs));
  Ember__V1__HypervisorCapabilities *caps = cmn_calloc(n + 1, sizeof(*caps));
  Ember__V1__Hypervisor **ptrs = cmn_calloc(n + 1, sizeof(*ptrs));
  for (size_t i = 0; i < n; i++) {
    const vmm_entry *e = vmm_registry_at(reg, i);
    ember__v1__hypervisor__init(&hs[i]);
    ember__v1__hypervisor_capabilities__init(&caps[i]);
    unsigned c = e->caps;
    caps[i].snapshot = (c & VMM_CAP_SNAPSHOT) != 0;
    caps[i].pause = (c & VMM_CAP_PAUSE) != 0;
    caps[i].base_reuse = (c & VMM_CAP_BASE_REUSE) != 0;
    caps[i].graceful_shutdown = (c & VMM_CAP_GRACEFUL_SHUTDOWN) != 0;
    hs[i].type = srv__s(e->driver->type);
    hs[i].capabilities = &caps[i];
    hs[i].available = e->available;
    hs[i].detail = srv__s(e->detail);
    ptrs[i] = &hs[i];
  }
  Ember__V1__ListHypervisorsResponse out = EMBER__V1__LIST_HYPERVISORS_RESPONSE__INIT;
  out.n_hypervisors = n;
  out.hypervisors = ptrs;
  srv_pack(&out.base, resp, rl);
  free(hs);
  free(caps);
  free(ptrs);
  return 0;
}

/* ---- WatchInstances ---- */

typedef struct srv__watch {
  char *filter_id; /* NULL: all instances */
  bool listed;     /* in srv->watchers (guarded by srv->watch_mu) */
} srv__watch;

static void srv__watch_free(void *p)
{
  srv__watch *w = p;
  if (w == NULL)
    return;
  free(w->filter_id);
  free(w);
}

/* The manager's callback (its subscriber lock held): serialize the event
 * once, then queue a reference to the same bytes on every matching watcher. */
static void srv__watch_fanout(void *ctx, const agent_event *ev)
{
  srv_server *s = ctx;
  pthread_mutex_lock(&s->watch_mu);
  if (s->n_watchers == 0) {
    pthread_mutex_unlock(&s->watch_mu);
    return;
  }
  Ember__V1__InstanceEvent msg = EMBER__V1__INSTANCE_EVENT__INIT;
  srv__inst m;
  bool have = ev->instance != NULL;
  if (have) {
    srv__inst_init(&m, ev->instance);
    msg.instance = &m.inst;
  }
  msg.old_state = (Ember__V1__InstanceState)ev->old_state;
  msg.new_state = (Ember__V1__InstanceState)ev->new_state;
  msg.operation = (Ember__V1__Operation)ev->op;
  msg.duration_us = ev->duration_us;
  msg.timestamp_us = ev->timestamp_us;
  grpc_byte_buffer *bb = srv_pack_bb(&msg.base);
  if (have)
    srv__inst_fini(&m);
  const char *id = have ? ev->instance->id : NULL;
  for (size_t i = 0; i < s->n_watchers; i++) {
    srv_call *c = s->watchers[i];
    srv__watch *w = c->priv;
    if (w->filter_id != NULL && (id == NULL || strcmp(id, w->filter_id) != 0))
      continue;
    pthread_mutex_lock(&c->mu);
    srv_stream_push_locked(c, grpc_byte_buffer_copy(bb)); /* shares the slice */
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_unlock(&s->watch_mu);
  grpc_byte_buffer_destroy(bb);
}

void srv_watch_hub_init(srv_server *s)
{
  pthread_mutex_init(&s->watch_mu, NULL);
  if (s->mgr != NULL)
    s->watch_sub = agent_manager_subscribe(s->mgr, srv__watch_fanout, s);
}

void srv_watch_hub_fini(srv_server *s)
{
  if (s->watch_sub > 0)
    agent_manager_unsubscribe(s->mgr, s->watch_sub);
  s->watch_sub = 0;
  pthread_mutex_lock(&s->watch_mu);
  srv_call **left = s->watchers;
  size_t n = s->n_watchers;
  for (size_t i = 0; i < n; i++)
    ((srv__watch *)left[i]->priv)->listed = false;
  s->watchers = NULL;
  s->n_watchers = s->cap_watchers = 0;
  pthread_mutex_unlock(&s->watch_mu);
  for (size_t i = 0; i < n; i++)
    srv_call_unref(left[i]);
  free(left);
}

/* on_close hook: leave the fan-out (no lock held by the caller). */
static void srv__watch_close(srv_call *c)
{
  srv_server *s = c->srv;
  srv__watch *w = c->priv;
  bool was = false;
  pthread_mutex_lock(&s->watch_mu);
  if (w->listed) {
    w->listed = false;
    for (size_t i = 0; i < s->n_watchers; i++) {
      if (s->watchers[i] == c) {
        s->watchers[i] = s->watchers[--s->n_watchers];
        was = true;
        break;
      }
    }
  }
  pthread_mutex_unlock(&s->watch_mu);
  if (was)
    srv_call_unref(c); /* the fan-out's reference */
}

void srv_watch_start(srv_call *c)
{
  srv_server *s = c->srv;
  cmn_error err = {0};
  /* c->req was flattened and its strings checked by srv__on_request. */
  cleanup_msg Ember__V1__WatchInstancesRequest *r =
      srv__unpack(&ember__v1__watch_instances_request__descriptor, c->req, c->req_len, &err);
  if (r == NULL) {
    srv_call_finish(c, NULL, CMN_INVALID_ARGUMENT,
                    err.msg[0] ? err.msg : "cannot read the request message");
    return;
  }
  if (s->watch_sub <= 0) {
    srv_call_finish(c, NULL, CMN_INTERNAL, "cannot subscribe to instance events");
    return;
  }
  srv__watch *w = cmn_calloc(1, sizeof(*w));
  if (r->id[0] != '\0') {
    agent_instance_view v = {0};
    if (srv__check_id(r->id, &err) < 0 || agent_manager_get(s->mgr, r->id, &v, &err) < 0) {
      srv__watch_free(w);
      srv_call_finish(c, NULL, err.code ? err.code : CMN_INTERNAL, err.msg);
      return;
    }
    w->filter_id = cmn_strdup(v.id);
    agent_instance_view_free(&v);
  }
  pthread_mutex_lock(&c->mu);
  c->priv = w;
  c->priv_free = srv__watch_free;
  bool closed = c->closed;
  if (!closed)
    c->on_close = srv__watch_close;
  pthread_mutex_unlock(&c->mu);
  if (closed)
    return;
  srv_stream_register(c, SRV_STREAM_WATCH);

  /* Join the fan-out unless the client left meanwhile (srv__watch_close takes
   * watch_mu too, so it either sees listed or ran before closed was set). */
  pthread_mutex_lock(&s->watch_mu);
  pthread_mutex_lock(&c->mu);
  if (!c->closed) {
    if (s->n_watchers == s->cap_watchers) {
      s->cap_watchers = s->cap_watchers ? 2 * s->cap_watchers : 16;
      s->watchers = cmn_realloc(s->watchers, s->cap_watchers * sizeof(*s->watchers));
    }
    srv_call_ref(c);
    s->watchers[s->n_watchers++] = c;
    w->listed = true;
    /* Headers go out only now: a client that has them knows it is subscribed. */
    srv_stream_push_locked(c, NULL);
  }
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&s->watch_mu);
}
