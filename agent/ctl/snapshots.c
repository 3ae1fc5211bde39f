/* snapshots.c: emberctl's fork and saved-snapshot commands (ForkInstance,
 * CreateSnapshot, ListSnapshots, DeleteSnapshot). args.c splits fork's words
 * into the source and the clones' names; the rows of the command table are
 * in commands.c. */
#include "agent/ctl/ctl.h"

#include "agent/ctl/output.h"
#include "agent/ctl/pbjson.h"
#include "agent/ctl/rpc.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Every string and array comes from malloc, so the request is freed with
 * protobuf_c_message_free_unpacked like an unpacked one. */
Ember__V1__ForkInstanceRequest *ctl_fork_request(const ctl_opts *o)
{
  Ember__V1__ForkInstanceRequest *r = cmn_malloc(sizeof(*r));
  ember__v1__fork_instance_request__init(r);
  if (o->fork_source != NULL)
    r->id = cmn_strdup(o->fork_source);
  if (o->snapshot != NULL)
    r->snapshot = cmn_strdup(o->snapshot);
  if (o->n_fork_names > 0) {
    r->names = cmn_calloc((size_t)o->n_fork_names, sizeof(*r->names));
    for (int i = 0; i < o->n_fork_names; i++)
      r->names[i] = cmn_strdup(o->fork_names[i]);
    r->n_names = (size_t)o->n_fork_names;
  }
  if (o->prefix != NULL) {
    r->name_prefix = cmn_strdup(o->prefix);
    r->count = (uint32_t)o->count;
  }
  r->standby = o->standby;
  /* A map in the request: one entry per key, the last --label winning. */
  for (int i = 0; i < o->n_labels; i++) {
    const char *eq = strchr(o->labels[i], '=');
    cleanup_free char *key = cmn_strndup(o->labels[i], (size_t)(eq - o->labels[i]));
    Ember__V1__ForkInstanceRequest__LabelsEntry *e = NULL;
    for (size_t k = 0; k < r->n_labels && e == NULL; k++)
      if (strcmp(r->labels[k]->key, key) == 0)
        e = r->labels[k];
    if (e == NULL) {
      e = cmn_malloc(sizeof(*e));
      ember__v1__fork_instance_request__labels_entry__init(e);
      e->key = cmn_strdup(key);
      r->labels = cmn_realloc(r->labels, (r->n_labels + 1) * sizeof(*r->labels));
      r->labels[r->n_labels++] = e;
    } else {
      free(e->value);
    }
    e->value = cmn_strdup(eq + 1);
  }
  return r;
}

int ctl_run_fork(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ForkInstanceRequest *req = ctl_fork_request(o);
  ProtobufCMessage *resp = NULL;
  int r = ctl_unary(rpc, "fork", &req->base, &resp, err);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  if (r < 0)
    return ctl_fail(err);
  const Ember__V1__ForkInstanceResponse *f = (const Ember__V1__ForkInstanceResponse *)resp;
  if (o->json) {
    ctl_print_json(out, resp, false);
  } else {
    ctl_print_instances(out, f->instances, f->n_instances);
    if (f->snapshot_duration != NULL) {
      char took[32];
      int64_t us = f->snapshot_duration->seconds * 1000000 + f->snapshot_duration->nanos / 1000;
      ctl_fmt_duration(took, sizeof(took), us);
      fprintf(out, "snapshot %s (taken in %s)\n", f->snapshot_id, took);
    } else {
      fprintf(out, "snapshot %s\n", f->snapshot_id);
    }
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

int ctl_run_snapshot(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__CreateSnapshotRequest req = EMBER__V1__CREATE_SNAPSHOT_REQUEST__INIT;
  req.id = o->args[0];
  req.name = o->args[1];
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "snapshot", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    ctl_print_snapshot(out, (const Ember__V1__Snapshot *)resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

int ctl_run_snapshots(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ListSnapshotsRequest req = EMBER__V1__LIST_SNAPSHOTS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "snapshots", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  const Ember__V1__ListSnapshotsResponse *l = (const Ember__V1__ListSnapshotsResponse *)resp;
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    ctl_print_snapshots(out, l->snapshots, l->n_snapshots);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

int ctl_run_rmsnapshot(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__DeleteSnapshotRequest req = EMBER__V1__DELETE_SNAPSHOT_REQUEST__INIT;
  req.snapshot = o->args[0];
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "rmsnapshot", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    fprintf(out, "deleted snapshot %s\n", ((const Ember__V1__DeleteSnapshotResponse *)resp)->id);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}
