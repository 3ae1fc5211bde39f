/* instance.c: the ember.v1.InstanceService handlers: decode the request with
 * protobuf-c, convert to the manager's plain C types, call agent/manager.h,
 * convert the result back. Errors are returned as cmn_error; server.c turns
 * them into a gRPC status. WatchInstances is a server stream fed by a manager
 * subscription whose callback only queues serialized events. */
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"
#include "agent/idle.h"
#include "agent/instance_image.h"
#include "agent/record.h"
#include "ember/v1/instance.pb-c.h"

#include <stdio.h>
#include <string.h>

/* Request ids are names or ids; anything longer is not one of ours. */
#define SRV_ID_MAX 256

static char *srv__s(const char *s) { return (char *)(s != NULL ? s : ""); }

/* ---- times ---- */

static void srv__ts(Google__Protobuf__Timestamp *t, int64_t us)
{
  google__protobuf__timestamp__init(t);
  t->seconds = us / 1000000;
  t->nanos = (int32_t)(us % 1000000) * 1000;
  if (t->nanos < 0) {
    t->seconds--;
    t->nanos += 1000000000;
  }
}

static void srv__dur(Google__Protobuf__Duration *d, int64_t us)
{
  google__protobuf__duration__init(d);
  d->seconds = us / 1000000;
  d->nanos = (int32_t)(us % 1000000) * 1000; /* same sign as seconds */
}

/* A request Duration in milliseconds, 0 to max_ms; INVALID_ARGUMENT naming
 * field otherwise. */
static int srv__dur_ms(const Google__Protobuf__Duration *d, const char *field, int64_t max_ms,
                       int *out, cmn_error *err)
{
  if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999 || d->seconds > max_ms / 1000) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be 0 to %lld s (got %lld s %d ns)", field,
                (long long)(max_ms / 1000), (long long)d->seconds, (int)d->nanos);
    return cmn_err_field(err, field);
  }
  int64_t ms = d->seconds * 1000 + (d->nanos + 999999) / 1000000;
  *out = (int)(ms > max_ms ? max_ms : ms);
  return 0;
}

/* ---- view -> message ---- */

void srv_inst_init(srv_inst *m, const agent_instance_view *v)
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
  srv_net_out_init(&m->net, v->id, &v->net);
  size_t n_nics = sp->n_nics + (m->net.set ? 1 : 0);
  if (n_nics > 0) {
    /* The managed interface goes back at its place among the caller's. */
    size_t at = m->net.set ? (v->net.nic_index < n_nics ? v->net.nic_index : n_nics - 1) : n_nics;
    m->nics = cmn_calloc(sp->n_nics + 1, sizeof(*m->nics));
    m->nic_ptrs = cmn_calloc(n_nics, sizeof(*m->nic_ptrs));
    for (size_t i = 0, k = 0; i < n_nics; i++) {
      if (i == at) {
        m->nic_ptrs[i] = &m->net.nic;
        continue;
      }
      ember__v1__network_interface__init(&m->nics[k]);
      m->nics[k].tap_device = srv__s(sp->nics[k].tap);
      m->nics[k].mac_address = srv__s(sp->nics[k].mac);
      m->nic_ptrs[i] = &m->nics[k];
      k++;
    }
    m->spec.network_interfaces = m->nic_ptrs;
    m->spec.n_network_interfaces = n_nics;
  }
  if (m->net.set) {
    m->spec.network_namespace = v->net.netns;
    m->inst.network = &m->net.status;
  }
  if (agent_image_spec_set(&v->image)) {
    const agent_image_spec *im = &v->image;
    m->spec.image = im->ref;
    ember__v1__image_overrides__init(&m->overrides);
    m->overrides.entrypoint = im->entrypoint;
    m->overrides.n_entrypoint = im->n_entrypoint;
    m->overrides.args = im->args;
    m->overrides.n_args = im->n_args;
    m->overrides.env = im->env;
    m->overrides.n_env = im->n_env;
    m->overrides.workdir = srv__s(im->workdir);
    if (im->n_entrypoint || im->n_args || im->n_env || (im->workdir && im->workdir[0]))
      m->spec.image_overrides = &m->overrides;
  }
  if (sp->vsock_cid != 0) {
    ember__v1__vsock__init(&m->vsock);
    m->vsock.guest_cid = sp->vsock_cid;
    m->spec.vsock = &m->vsock;
  }
  m->spec.guest_agent = sp->guest_agent ? EMBER__V1__GUEST_AGENT_MODE__GUEST_AGENT_MODE_ENABLED
                                        : EMBER__V1__GUEST_AGENT_MODE__GUEST_AGENT_MODE_DISABLED;
  ember__v1__guest_agent_status__init(&m->agent);
  m->agent.enabled = sp->guest_agent;
  m->agent.ready = v->guest_agent.ready;
  m->agent.version = srv__s(v->guest_agent.version);
  m->agent.message = srv__s(v->guest_agent.message);
  if (v->guest_agent.ready_us > 0) {
    srv__ts(&m->agent_ready, v->guest_agent.ready_us);
    m->agent.ready_time = &m->agent_ready;
  }
  if (sp->guest_agent)
    m->inst.guest_agent = &m->agent;
  if (v->auto_standby.idle_seconds > 0) {
    ember__v1__auto_standby__init(&m->auto_standby);
    m->auto_standby.idle_seconds = v->auto_standby.idle_seconds;
    m->auto_standby.max_cpu_percent = v->auto_standby.max_cpu_percent;
    m->auto_standby.max_net_bytes_per_second = v->auto_standby.max_net_bps;
    m->spec.auto_standby = &m->auto_standby;
  }
  if (v->auto_standby.idle_seconds > 0 || v->idle.hold_until_us > 0) {
    ember__v1__idle_status__init(&m->idle);
    srv__dur(&m->idle_for, v->idle.idle_us);
    m->idle.idle_duration = &m->idle_for;
    if (v->idle.hold_until_us > 0) {
      srv__ts(&m->hold_until, v->idle.hold_until_us);
      m->idle.hold_until = &m->hold_until;
    }
    m->idle.open_sessions = v->idle.sessions;
    m->idle.cpu_percent = v->idle.cpu_percent;
    m->idle.net_bytes_per_second = v->idle.net_bps;
    m->inst.idle = &m->idle;
  }
  if (v->fork_snapshot != NULL) {
    ember__v1__fork_origin__init(&m->fork);
    m->fork.snapshot_id = srv__s(v->fork_snapshot);
    m->fork.source_instance_id = srv__s(v->fork_source);
    m->inst.fork = &m->fork;
  }
  m->inst.id = srv__s(v->id);
  m->inst.name = srv__s(v->name);
  m->inst.spec = &m->spec;
  m->inst.state = (Ember__V1__InstanceState)v->state;
  m->inst.has_snapshot = v->has_snapshot;
  m->inst.last_snapshot_kind = (Ember__V1__SnapshotKind)v->last_snapshot_kind;
  if (v->last_standby_us > 0) {
    srv__dur(&m->standby, v->last_standby_us);
    m->inst.last_standby_duration = &m->standby;
  }
  if (v->last_restore_us > 0) {
    srv__dur(&m->restore, v->last_restore_us);
    m->inst.last_restore_duration = &m->restore;
  }
  m->inst.console_log_path = srv__s(v->console_log_path);
  srv__ts(&m->create_time, v->created_at_us);
  srv__ts(&m->update_time, v->updated_at_us);
  m->inst.create_time = &m->create_time;
  m->inst.update_time = &m->update_time;
  m->inst.vmm_pid = v->vmm_pid;
  m->inst.status_message = srv__s(v->status_message);
  m->inst.request_id = srv__s(v->request_id);
  if (v->n_labels > 0) {
    m->labels = cmn_calloc(v->n_labels, sizeof(*m->labels));
    m->label_ptrs = cmn_calloc(v->n_labels, sizeof(*m->label_ptrs));
    for (size_t i = 0; i < v->n_labels; i++) {
      ember__v1__instance__labels_entry__init(&m->labels[i]);
      m->labels[i].key = srv__s(v->labels[i].key);
      m->labels[i].value = srv__s(v->labels[i].value);
      m->label_ptrs[i] = &m->labels[i];
    }
    m->inst.labels = m->label_ptrs;
    m->inst.n_labels = v->n_labels;
  }
}

void srv_inst_fini(srv_inst *m)
{
  free(m->disks);
  free(m->disk_ptrs);
  free(m->nics);
  free(m->nic_ptrs);
  free(m->labels);
  free(m->label_ptrs);
  srv_net_out_fini(&m->net);
}

static int srv__pack_view(const agent_instance_view *v, uint8_t **resp, size_t *rl)
{
  srv_inst m;
  srv_inst_init(&m, v);
  srv_pack(&m.inst.base, resp, rl);
  srv_inst_fini(&m);
  return 0;
}

static int srv__check_id(const char *id, cmn_error *err)
{
  if (id == NULL || id[0] == '\0')
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is required (an instance id or name)");
  else if (strlen(id) > SRV_ID_MAX)
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is longer than %d bytes", SRV_ID_MAX);
  else
    return 0;
  return cmn_err_field(err, "id");
}

/* ---- request -> spec ---- */

static int srv__spec_from(const Ember__V1__InstanceSpec *in, vmm_spec *out, agent_net_spec *net,
                          cmn_error *err)
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
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "spec.vsock.guest_cid must be 3 to 4294967294 (got 0)");
      return cmn_err_field(err, "spec.vsock.guest_cid");
    }
    out->vsock_cid = in->vsock->guest_cid;
  }
  switch (in->guest_agent) {
  case EMBER__V1__GUEST_AGENT_MODE__GUEST_AGENT_MODE_UNSPECIFIED:
    out->guest_agent = in->image[0] != '\0'; /* the boot kit runs the agent */
    break;
  case EMBER__V1__GUEST_AGENT_MODE__GUEST_AGENT_MODE_ENABLED:
    out->guest_agent = true;
    break;
  case EMBER__V1__GUEST_AGENT_MODE__GUEST_AGENT_MODE_DISABLED:
    out->guest_agent = false;
    break;
  default:
    vmm_spec_free(out);
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "spec.guest_agent must be GUEST_AGENT_MODE_UNSPECIFIED, _ENABLED or _DISABLED "
                "(got %d)",
                (int)in->guest_agent);
    return cmn_err_field(err, "spec.guest_agent");
  }
  /* Firecracker and Cloud Hypervisor reach the agent over hybrid vsock: the
   * CID only names the guest inside its own VMM, so 3 is as good as any. */
  if (out->guest_agent && out->vsock_cid == 0 && strcmp(in->hypervisor, "qemu") != 0)
    out->vsock_cid = 3;
  if (srv_net_from_request(in, out, net, err) < 0) {
    vmm_spec_free(out);
    agent_net_spec_free(net);
    return -1;
  }
  return 0;
}

/* ---- unary handlers ---- */

int srv_unary_create(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                     uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__CreateInstanceRequest *r =
      srv_unpack(&ember__v1__create_instance_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  srv_probe_create(s, probe, r->name, r->spec != NULL ? r->spec->hypervisor : NULL);
  if (r->spec == NULL) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "spec is required (hypervisor, vcpus, memory_mib, kernel_path)");
    return cmn_err_field(err, "spec");
  }
  vmm_spec spec;
  agent_net_spec net;
  if (srv__spec_from(r->spec, &spec, &net, err) < 0)
    return -1;
  agent_label *labels = cmn_calloc(r->n_labels + 1, sizeof(*labels));
  for (size_t i = 0; i < r->n_labels; i++) {
    labels[i].key = r->labels[i]->key;
    labels[i].value = r->labels[i]->value;
  }
  agent_create_req cr = {.name = r->name,
                         .hypervisor = r->spec->hypervisor,
                         .spec = &spec,
                         .start = r->start,
                         .labels = labels,
                         .n_labels = r->n_labels,
                         .request_id = r->request_id};
  /* Borrowed from the request: agent_image_spec_copy copies it into the record. */
  const Ember__V1__ImageOverrides *ov = r->spec->image_overrides;
  agent_image_spec img = {
      .ref = r->spec->image,
      .entrypoint = ov ? ov->entrypoint : NULL,
      .n_entrypoint = ov ? ov->n_entrypoint : 0,
      .args = ov ? ov->args : NULL,
      .n_args = ov ? ov->n_args : 0,
      .env = ov ? ov->env : NULL,
      .n_env = ov ? ov->n_env : 0,
      .workdir = ov ? ov->workdir : NULL,
  };
  cr.image = &img;
  cr.net = &net;
  const Ember__V1__AutoStandby *as = r->spec->auto_standby;
  agent_auto_standby idle = {
      .idle_seconds = as ? as->idle_seconds : 0,
      .max_cpu_percent = as ? as->max_cpu_percent : 0,
      .max_net_bps = as ? as->max_net_bytes_per_second : 0,
  };
  cr.auto_standby = &idle;
  agent_instance_view v = {0};
  int ret = agent_manager_create_req(s->mgr, &cr, &v, err);
  free(labels);
  vmm_spec_free(&spec);
  agent_net_spec_free(&net);
  if (ret < 0)
    return -1;
  cmn_debug(v.id, "create", "created instance %s (%s)%s", v.name, v.hypervisor,
            r->start ? " and started it" : "");
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

int srv_unary_get(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                  uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__GetInstanceRequest *r =
      srv_unpack(&ember__v1__get_instance_request__descriptor, req, len, err);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  agent_instance_view v = {0};
  if (agent_manager_get(s->mgr, r->id, &v, err) < 0)
    return -1;
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

/* ---- ListInstances: filter and pages ---- */

#define SRV_FILTER_MAX 1024
#define SRV_PAGE_DEFAULT 100
#define SRV_PAGE_MAX 1000

/* One `field=value` term of a filter (an AIP-160 subset: docs/api.md). */
typedef struct srv__term {
  char *field; /* "state", "name", "id", "hypervisor" or "labels.<key>" */
  char *value;
  agent_state state; /* field "state" */
} srv__term;

typedef struct srv__filter {
  srv__term *t;
  size_t n;
} srv__filter;

static void srv__filter_free(srv__filter *f)
{
  for (size_t i = 0; i < f->n; i++) {
    free(f->t[i].field);
    free(f->t[i].value);
  }
  free(f->t);
  memset(f, 0, sizeof(*f));
}

static int srv__filter_bad(cmn_error *err, const char *filter, size_t at, const char *what)
{
  cmn_err_set(err, CMN_INVALID_ARGUMENT,
              "filter: %s at byte %zu of '%.200s' (the form is field=value AND "
              "field=value, fields state, name, id, hypervisor, labels.<key>)",
              what, at, filter);
  return cmn_err_field(err, "filter");
}

static bool srv__key_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '/';
}

static int srv__state_from(const char *v, agent_state *out)
{
  static const char *const names[] = {NULL, "STOPPED", "RUNNING", "PAUSED", "STANDBY", "UNKNOWN"};
  if (strncasecmp(v, "INSTANCE_STATE_", 15) == 0)
    v += 15;
  for (int i = 1; i <= AGENT_STATE_UNKNOWN; i++)
    if (strcasecmp(v, names[i]) == 0) {
      *out = (agent_state)i;
      return 0;
    }
  return -1;
}

static int srv__filter_parse(const char *in, srv__filter *f, cmn_error *err)
{
  memset(f, 0, sizeof(*f));
  size_t len = strlen(in);
  if (len > SRV_FILTER_MAX) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "filter is longer than %d bytes", SRV_FILTER_MAX);
    return cmn_err_field(err, "filter");
  }
  size_t i = 0;
  for (;;) {
    while (in[i] == ' ')
      i++;
    if (in[i] == '\0') {
      if (f->n == 0)
        return 0; /* empty filter: everything */
      srv__filter_free(f);
      return srv__filter_bad(err, in, i, "a term is missing after AND");
    }
    size_t k0 = i;
    while (srv__key_char(in[i]))
      i++;
    size_t k1 = i;
    while (in[i] == ' ')
      i++;
    if (k1 == k0 || in[i] != '=') {
      srv__filter_free(f);
      return srv__filter_bad(err, in, i, "expected field=value");
    }
    i++;
    while (in[i] == ' ')
      i++;
    size_t v0, v1;
    if (in[i] == '"') {
      v0 = ++i;
      while (in[i] != '\0' && in[i] != '"')
        i++;
      if (in[i] != '"') {
        srv__filter_free(f);
        return srv__filter_bad(err, in, v0 - 1, "unterminated quoted value");
      }
      v1 = i++;
    } else {
      v0 = i;
      while (in[i] != '\0' && in[i] != ' ')
        i++;
      v1 = i;
    }
    srv__term t = {.field = cmn_strndup(in + k0, k1 - k0), .value = cmn_strndup(in + v0, v1 - v0)};
    f->t = cmn_realloc(f->t, (f->n + 1) * sizeof(*f->t));
    f->t[f->n++] = t;
    bool known = strcmp(t.field, "name") == 0 || strcmp(t.field, "id") == 0 ||
                 strcmp(t.field, "hypervisor") == 0 ||
                 (strncmp(t.field, "labels.", 7) == 0 && t.field[7] != '\0');
    if (strcmp(t.field, "state") == 0) {
      known = true;
      if (srv__state_from(t.value, &f->t[f->n - 1].state) < 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT,
                    "filter: state '%.64s' is not STOPPED, RUNNING, PAUSED, STANDBY or UNKNOWN",
                    t.value);
        srv__filter_free(f);
        return cmn_err_field(err, "filter");
      }
    }
    if (!known) {
      srv__filter_bad(err, in, k0, "unknown field");
      srv__filter_free(f);
      return -1;
    }
    while (in[i] == ' ')
      i++;
    if (in[i] == '\0')
      return 0;
    if (strncmp(in + i, "AND ", 4) != 0) {
      srv__filter_free(f);
      return srv__filter_bad(err, in, i, "expected AND");
    }
    i += 4;
  }
}

static bool srv__filter_match(const srv__filter *f, const agent_instance_view *v)
{
  for (size_t i = 0; i < f->n; i++) {
    const srv__term *t = &f->t[i];
    const char *have;
    if (strcmp(t->field, "state") == 0) {
      if (v->state != t->state)
        return false;
      continue;
    }
    if (strcmp(t->field, "name") == 0)
      have = v->name;
    else if (strcmp(t->field, "id") == 0)
      have = v->id;
    else if (strcmp(t->field, "hypervisor") == 0)
      have = v->hypervisor;
    else
      have = agent_labels_get(v->labels, v->n_labels, t->field + 7);
    if (have == NULL || strcmp(have, t->value) != 0)
      return false;
  }
  return true;
}

/* A page token: "1" then the hex of "<filter hash 16 hex>:<last name>". Opaque
 * to clients; pages follow names, which are unique and sorted. */
static char *srv__token_make(const char *filter, const char *last)
{
  cleanup_free char *plain =
      cmn_asprintf("%016llx:%s", (unsigned long long)cmn_hash_str(filter), last);
  size_t n = strlen(plain);
  char *tok = cmn_calloc(2 * n + 2, 1);
  tok[0] = '1';
  for (size_t i = 0; i < n; i++)
    snprintf(tok + 1 + 2 * i, 3, "%02x", (unsigned char)plain[i]);
  return tok;
}

static int srv__hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* The last name of the previous page, or NULL with err set. */
static char *srv__token_read(const char *tok, const char *filter, cmn_error *err)
{
  size_t n = strlen(tok);
  cleanup_free char *plain = NULL;
  const char *why = "it is not a next_page_token of ListInstances";
  if (tok[0] == '1' && n % 2 == 1 && n <= 2 * (17 + 256) + 1) {
    plain = cmn_calloc(n / 2 + 1, 1);
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i += 2) {
      int hi = srv__hexval(tok[i]), lo = srv__hexval(tok[i + 1]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        goto bad;
      plain[k++] = (char)(hi * 16 + lo);
    }
    char want[18];
    snprintf(want, sizeof(want), "%016llx:", (unsigned long long)cmn_hash_str(filter));
    if (k > 17 && memcmp(plain, want, 17) == 0)
      return cmn_strdup(plain + 17);
    if (k > 17 && plain[16] == ':')
      why = "it was made for another filter (repeat the filter of the first page)";
  }
bad:
  cmn_err_set(err, CMN_INVALID_ARGUMENT, "page_token: %s", why);
  cmn_err_field(err, "page_token");
  return NULL;
}

int srv_unary_list(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__ListInstancesRequest *r =
      srv_unpack(&ember__v1__list_instances_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  size_t page;
  if (srv_page_size(r->page_size, SRV_PAGE_DEFAULT, SRV_PAGE_MAX, &page, err) < 0)
    return -1;
  srv__filter f;
  if (srv__filter_parse(r->filter, &f, err) < 0)
    return -1;
  cleanup_free char *after = NULL;
  if (r->page_token[0] != '\0' &&
      (after = srv__token_read(r->page_token, r->filter, err)) == NULL) {
    srv__filter_free(&f);
    return -1;
  }
  agent_instance_view *vs = NULL;
  size_t n = 0;
  if (agent_manager_list(s->mgr, AGENT_STATE_UNSPECIFIED, &vs, &n, err) < 0) {
    srv__filter_free(&f);
    return -1;
  }
  srv_inst *ms = cmn_calloc(page + 1, sizeof(*ms));
  Ember__V1__Instance **ptrs = cmn_calloc(page + 1, sizeof(*ptrs));
  size_t k = 0;
  bool more = false;
  for (size_t i = 0; i < n; i++) {
    if ((after != NULL && strcmp(vs[i].name, after) <= 0) || !srv__filter_match(&f, &vs[i]))
      continue;
    if (k == page) {
      more = true;
      break;
    }
    srv_inst_init(&ms[k], &vs[i]);
    ptrs[k] = &ms[k].inst;
    k++;
  }
  cleanup_free char *next = more ? srv__token_make(r->filter, ms[k - 1].inst.name) : NULL;
  Ember__V1__ListInstancesResponse out = EMBER__V1__LIST_INSTANCES_RESPONSE__INIT;
  out.n_instances = k;
  out.instances = ptrs;
  out.next_page_token = srv__s(next);
  srv_pack(&out.base, resp, rl);
  for (size_t i = 0; i < k; i++)
    srv_inst_fini(&ms[i]);
  free(ms);
  free(ptrs);
  agent_instance_views_free(vs, n);
  srv__filter_free(&f);
  return 0;
}

/* Every lifecycle request message is { string id = 1; }, so one decoder serves
 * them all (GetInstanceRequest has the same shape). */
static int srv__op(srv_server *s, srv_op_probe *probe, agent_op op, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__GetInstanceRequest *r =
      srv_unpack(&ember__v1__get_instance_request__descriptor, req, len, err);
  if (r != NULL)
    srv_probe_instance(s, probe, r->id);
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

int srv_unary_start(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                    uint8_t **resp, size_t *rl, cmn_error *err)
{
  return srv__op(s, probe, AGENT_OP_START, req, len, resp, rl, err);
}
/* The longest graceful_timeout a Stop may ask for. */
#define SRV_STOP_TIMEOUT_MAX_MS (3600 * 1000)

int srv_unary_stop(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__StopInstanceRequest *r =
      srv_unpack(&ember__v1__stop_instance_request__descriptor, req, len, err);
  if (r != NULL)
    srv_probe_instance(s, probe, r->id);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  int timeout_ms = -1; /* unset: the configured one */
  if (r->graceful_timeout != NULL && srv__dur_ms(r->graceful_timeout, "graceful_timeout",
                                                 SRV_STOP_TIMEOUT_MAX_MS, &timeout_ms, err) < 0)
    return -1;
  agent_instance_view v = {0};
  int64_t t0 = srv_now_us();
  if (agent_manager_stop(s->mgr, r->id, timeout_ms, &v, err) < 0) {
    cmn_debug(r->id, "stop", "stop failed: %s (%s)", err->msg, cmn_code_name(err->code));
    return -1;
  }
  cmn_debug(v.id, "stop", "stop done in %lld us (graceful timeout %d ms); state %s",
            (long long)(srv_now_us() - t0), timeout_ms, agent_state_name(v.state));
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}
int srv_unary_pause(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                    uint8_t **resp, size_t *rl, cmn_error *err)
{
  return srv__op(s, probe, AGENT_OP_PAUSE, req, len, resp, rl, err);
}
int srv_unary_resume(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                     uint8_t **resp, size_t *rl, cmn_error *err)
{
  return srv__op(s, probe, AGENT_OP_RESUME, req, len, resp, rl, err);
}
int srv_unary_standby(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                      uint8_t **resp, size_t *rl, cmn_error *err)
{
  return srv__op(s, probe, AGENT_OP_STANDBY, req, len, resp, rl, err);
}
int srv_unary_restore(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                      uint8_t **resp, size_t *rl, cmn_error *err)
{
  return srv__op(s, probe, AGENT_OP_RESTORE, req, len, resp, rl, err);
}

int srv_unary_hold(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__HoldInstanceRequest *r =
      srv_unpack(&ember__v1__hold_instance_request__descriptor, req, len, err);
  (void)probe;
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  int64_t ms = 0;
  const Google__Protobuf__Duration *d = r->duration;
  if (d != NULL) {
    /* Checked here in full (the manager sees milliseconds only): a negative
     * part, or seconds that would overflow, are refused as out of bounds. */
    if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999 ||
        d->seconds > AGENT_HOLD_MAX_MS / 1000) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "duration must be 0 (release) to %lld s (got %lld s %d ns)",
                  (long long)(AGENT_HOLD_MAX_MS / 1000), (long long)d->seconds, (int)d->nanos);
      return cmn_err_field(err, "duration");
    }
    ms = d->seconds * 1000 + (d->nanos + 999999) / 1000000;
  }
  agent_instance_view v = {0};
  if (agent_manager_hold(s->mgr, r->id, ms, &v, err) < 0)
    return -1;
  srv__pack_view(&v, resp, rl);
  agent_instance_view_free(&v);
  return 0;
}

int srv_unary_delete(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                     uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__DeleteInstanceRequest *r =
      srv_unpack(&ember__v1__delete_instance_request__descriptor, req, len, err);
  if (r != NULL)
    srv_probe_instance(s, probe, r->id);
  if (r == NULL || srv__check_id(r->id, err) < 0)
    return -1;
  cleanup_free char *id = NULL;
  if (agent_manager_delete(s->mgr, r->id, &id, err) < 0) {
    if (!(r->allow_missing && err->code == CMN_NOT_FOUND))
      return -1;
    cmn_err_clear(err);
    cmn_debug(NULL, "delete", "no instance %s; allow_missing: OK", r->id);
    Ember__V1__DeleteInstanceResponse none = EMBER__V1__DELETE_INSTANCE_RESPONSE__INIT;
    return srv_pack(&none.base, resp, rl);
  }
  cmn_debug(id, "delete", "deleted instance %s", r->id);
  Ember__V1__DeleteInstanceResponse out = EMBER__V1__DELETE_INSTANCE_RESPONSE__INIT;
  out.id = srv__s(id);
  return srv_pack(&out.base, resp, rl);
}

int srv_unary_list_hypervisors(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                               uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__ListHypervisorsRequest *r =
      srv_unpack(&ember__v1__list_hypervisors_request__descriptor, req, len, err);
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
    caps[i].fork = (c & VMM_CAP_FORK) != 0;
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
  srv_inst m;
  bool have = ev->instance != NULL;
  if (have) {
    srv_inst_init(&m, ev->instance);
    msg.instance = &m.inst;
  }
  msg.old_state = (Ember__V1__InstanceState)ev->old_state;
  msg.new_state = (Ember__V1__InstanceState)ev->new_state;
  msg.operation = (Ember__V1__Operation)ev->op;
  Google__Protobuf__Duration dur;
  Google__Protobuf__Timestamp when;
  srv__dur(&dur, ev->duration_us);
  srv__ts(&when, ev->timestamp_us);
  msg.duration = &dur;
  msg.event_time = &when;
  msg.reason = srv__s(ev->reason);
  grpc_byte_buffer *bb = srv_pack_bb(&msg.base);
  if (have)
    srv_inst_fini(&m);
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
  cleanup_pbmsg Ember__V1__WatchInstancesRequest *r =
      srv_unpack(&ember__v1__watch_instances_request__descriptor, c->req, c->req_len, &err);
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
