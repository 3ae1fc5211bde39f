/* fork.c: the ForkInstance and snapshot RPCs (agent/manager_fork.c does the
 * work; docs/fork.md). */
#include "agent/server/internal.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *srv__str(const char *s) { return (char *)(s != NULL ? s : ""); }

static void srv__stamp(Google__Protobuf__Timestamp *t, int64_t us)
{
  google__protobuf__timestamp__init(t);
  t->seconds = us / 1000000;
  t->nanos = (int32_t)((us % 1000000) * 1000);
}

/* The clones' names: `names`, or `name_prefix` and `count`. */
static int srv__fork_names(const Ember__V1__ForkInstanceRequest *r, char ***out, size_t *n,
                           cmn_error *err)
{
  *out = NULL;
  *n = 0;
  bool by_prefix = r->name_prefix[0] != '\0' || r->count != 0;
  if (r->n_names > 0 && by_prefix) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "give names, or name_prefix and count, not both");
    return cmn_err_field(err, "names");
  }
  if (!by_prefix) {
    if (r->n_names == 0) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "give the clones' names, or name_prefix and count");
      return cmn_err_field(err, "names");
    }
    if (r->n_names > AGENT_FORK_MAX) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "at most %d clones at once (got %zu names)",
                  AGENT_FORK_MAX, r->n_names);
      return cmn_err_field(err, "names");
    }
    *out = cmn_calloc(r->n_names, sizeof **out);
    for (size_t i = 0; i < r->n_names; i++)
      (*out)[i] = cmn_strdup(r->names[i]);
    *n = r->n_names;
    return 0;
  }
  if (r->count == 0 || r->count > AGENT_FORK_MAX) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "count must be 1 to %d (got %u)", AGENT_FORK_MAX,
                r->count);
    return cmn_err_field(err, "count");
  }
  if (r->name_prefix[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "count needs a name_prefix");
    return cmn_err_field(err, "name_prefix");
  }
  /* Names are at most 63 bytes: the prefix, "-" and up to two digits. */
  if (strlen(r->name_prefix) > 60) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "name_prefix is longer than 60 bytes");
    return cmn_err_field(err, "name_prefix");
  }
  *out = cmn_calloc(r->count, sizeof **out);
  for (uint32_t i = 0; i < r->count; i++)
    (*out)[i] = cmn_asprintf("%s-%u", r->name_prefix, i + 1);
  *n = r->count;
  return 0;
}

int srv_unary_fork(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__ForkInstanceRequest *r =
      srv_unpack(&ember__v1__fork_instance_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  if (r->id[0] != '\0')
    srv_probe_instance(s, probe, r->id);
  char **names = NULL;
  size_t n = 0;
  if (srv__fork_names(r, &names, &n, err) < 0)
    return -1;
  agent_label *labels = cmn_calloc(r->n_labels + 1, sizeof(*labels));
  for (size_t i = 0; i < r->n_labels; i++) {
    labels[i].key = r->labels[i]->key;
    labels[i].value = r->labels[i]->value;
  }
  agent_fork_req fr = {.source = r->id,
                       .snapshot = r->snapshot,
                       .names = (const char *const *)names,
                       .n_names = n,
                       .standby = r->standby,
                       .labels = labels,
                       .n_labels = r->n_labels};
  agent_fork_result res = {0};
  int rc = agent_manager_fork(s->mgr, &fr, &res, err);
  free(labels);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  if (rc < 0) {
    /* The clones made before the failure are instances the caller can see
     * in ListInstances; the message says how many. */
    agent_fork_result_free(&res);
    return -1;
  }
  Ember__V1__ForkInstanceResponse out = EMBER__V1__FORK_INSTANCE_RESPONSE__INIT;
  srv_inst *msgs = cmn_calloc(res.n_clones + 1, sizeof *msgs);
  Ember__V1__Instance **ptrs = cmn_calloc(res.n_clones + 1, sizeof *ptrs);
  for (size_t i = 0; i < res.n_clones; i++) {
    srv_inst_init(&msgs[i], &res.clones[i]);
    ptrs[i] = &msgs[i].inst;
  }
  out.instances = ptrs;
  out.n_instances = res.n_clones;
  out.snapshot_id = srv__str(res.snapshot_id);
  Google__Protobuf__Duration took = GOOGLE__PROTOBUF__DURATION__INIT;
  if (res.snapshot_us > 0) {
    took.seconds = res.snapshot_us / 1000000;
    took.nanos = (int32_t)((res.snapshot_us % 1000000) * 1000);
    out.snapshot_duration = &took;
  }
  srv_pack(&out.base, resp, rl);
  for (size_t i = 0; i < res.n_clones; i++)
    srv_inst_fini(&msgs[i]);
  free(msgs);
  free(ptrs);
  agent_fork_result_free(&res);
  return 0;
}

/* One Snapshot message pointing into a view (and a srv_inst for its spec). */
typedef struct srv__snap {
  Ember__V1__Snapshot snap;
  srv_inst src;
  Google__Protobuf__Timestamp created;
} srv__snap;

static void srv__snap_init(srv__snap *m, const agent_snapshot_view *v)
{
  ember__v1__snapshot__init(&m->snap);
  srv_inst_init(&m->src, &v->source);
  m->snap.id = srv__str(v->id);
  m->snap.name = srv__str(v->name);
  m->snap.source_instance_id = srv__str(v->source_id);
  m->snap.source_instance_name = srv__str(v->source_name);
  m->snap.spec = &m->src.spec;
  srv__stamp(&m->created, v->created_at_us);
  m->snap.create_time = &m->created;
  m->snap.size_bytes = v->size_bytes;
  m->snap.clone_ids = v->clone_ids;
  m->snap.n_clone_ids = v->n_clone_ids;
}

int srv_unary_snapshot_create(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                              uint8_t **resp, size_t *rl, cmn_error *err)
{
  cleanup_pbmsg Ember__V1__CreateSnapshotRequest *r =
      srv_unpack(&ember__v1__create_snapshot_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  srv_probe_instance(s, probe, r->id);
  if (r->id[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is required (an instance id or name)");
    return cmn_err_field(err, "id");
  }
  agent_snapshot_view v = {0};
  if (agent_manager_snapshot_create(s->mgr, r->id, r->name, &v, err) < 0)
    return -1;
  srv__snap m;
  srv__snap_init(&m, &v);
  srv_pack(&m.snap.base, resp, rl);
  srv_inst_fini(&m.src);
  agent_snapshot_view_free(&v);
  return 0;
}

int srv_unary_snapshot_list(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                            uint8_t **resp, size_t *rl, cmn_error *err)
{
  (void)probe;
  cleanup_pbmsg Ember__V1__ListSnapshotsRequest *r =
      srv_unpack(&ember__v1__list_snapshots_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  agent_snapshot_view *v = NULL;
  size_t n = 0;
  if (agent_manager_snapshot_list(s->mgr, &v, &n, err) < 0)
    return -1;
  srv__snap *msgs = cmn_calloc(n + 1, sizeof *msgs);
  Ember__V1__Snapshot **ptrs = cmn_calloc(n + 1, sizeof *ptrs);
  for (size_t i = 0; i < n; i++) {
    srv__snap_init(&msgs[i], &v[i]);
    ptrs[i] = &msgs[i].snap;
  }
  Ember__V1__ListSnapshotsResponse out = EMBER__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
  out.snapshots = ptrs;
  out.n_snapshots = n;
  srv_pack(&out.base, resp, rl);
  for (size_t i = 0; i < n; i++)
    srv_inst_fini(&msgs[i].src);
  free(msgs);
  free(ptrs);
  agent_snapshot_views_free(v, n);
  return 0;
}

int srv_unary_snapshot_delete(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                              uint8_t **resp, size_t *rl, cmn_error *err)
{
  (void)probe;
  cleanup_pbmsg Ember__V1__DeleteSnapshotRequest *r =
      srv_unpack(&ember__v1__delete_snapshot_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  cleanup_free char *id = NULL;
  if (agent_manager_snapshot_delete(s->mgr, r->snapshot, &id, err) < 0)
    return -1;
  Ember__V1__DeleteSnapshotResponse out = EMBER__V1__DELETE_SNAPSHOT_RESPONSE__INIT;
  out.id = srv__str(id);
  return srv_pack(&out.base, resp, rl);
}
