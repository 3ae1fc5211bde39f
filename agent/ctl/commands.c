/* commands.c: emberctl's commands and the table that names them.
 *
 * Each command builds its request, makes one call through rpc.c and prints
 * the answer as a table (output.c) or as JSON (pbjson.c, with --json). A
 * command returns the process exit code: 0, or the gRPC status of the failed
 * call with the message in err. */
#include "agent/ctl/ctl.h"

#include "agent/ctl/output.h"
#include "agent/ctl/pbjson.h"
#include "agent/ctl/rpc.h"
#include "agent/ctl/spec.h"
#include "agent/rpc_table.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "ember/v1/image.pb-c.h"
#include "ember/v1/instance.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- the methods: agent/rpc_table.h and the service descriptors ---- */

/* emberctl's column of the RPC table: a command's service and method. */
typedef struct ctl__rpc_row {
  const char *command;
  const ProtobufCServiceDescriptor *service;
  const char *method;
} ctl__rpc_row;

static const ctl__rpc_row ctl__rpc_rows[] = {
#define CTL_ROW(desc, svc, meth, handler, slow, op, mutates, ctl) {ctl, &desc, #meth},
    EMBER_UNARY_RPCS(CTL_ROW)
#undef CTL_ROW
};

/* The method of a command: its path ("/" service "/" method) and, from the
 * service descriptor, its request and response messages. */
typedef struct ctl__method {
  char path[160];
  const ProtobufCMessageDescriptor *req;
  const ProtobufCMessageDescriptor *resp;
} ctl__method;

static int ctl__method_in(const ProtobufCServiceDescriptor *svc, const char *method,
                          ctl__method *out, cmn_error *err)
{
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(svc, method);
  if (md == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "%s has no method %s", svc->name, method);
  snprintf(out->path, sizeof(out->path), "/%s/%s", svc->name, md->name);
  out->req = md->input;
  out->resp = md->output;
  return 0;
}

static int ctl__method_of(const char *command, ctl__method *out, cmn_error *err)
{
  for (size_t i = 0; i < sizeof(ctl__rpc_rows) / sizeof(ctl__rpc_rows[0]); i++)
    if (ctl__rpc_rows[i].command != NULL && strcmp(ctl__rpc_rows[i].command, command) == 0)
      return ctl__method_in(ctl__rpc_rows[i].service, ctl__rpc_rows[i].method, out, err);
  return cmn_err_set(err, CMN_INTERNAL, "no RPC for command %s", command);
}

int ctl_unary(ctl_rpc *rpc, const char *command, const ProtobufCMessage *req,
              ProtobufCMessage **resp, cmn_error *err)
{
  ctl__method m;
  if (ctl__method_of(command, &m, err) < 0)
    return -1;
  return ctl_rpc_unary(rpc, m.path, req, m.resp, resp, err);
}

int ctl_fail(const cmn_error *err) { return err->code != CMN_OK ? err->code : CMN_UNKNOWN; }

/* ---- one-instance lifecycle calls ---- */

/* The request messages of Get/Start/.../Delete all have one string field `id`
 * (field 1): one generic request is packed with the method's request
 * descriptor (from the service descriptor, agent/rpc_table.h names it). */

/* Builds an {id} request of desc. */
static ProtobufCMessage *ctl__id_request(const ProtobufCMessageDescriptor *desc, const char *id)
{
  ProtobufCMessage *m = cmn_malloc(desc->sizeof_message);
  protobuf_c_message_init(desc, m);
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, "id");
  *(char **)(void *)((char *)m + f->offset) = cmn_strdup(id); /* offsetof: aligned */
  return m;
}

static int ctl__run_id(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  ctl__method c;
  if (ctl__method_of(o->command, &c, err) < 0)
    return CMN_INTERNAL;
  bool is_delete = strcmp(o->command, "delete") == 0;
  ProtobufCMessage *req = ctl__id_request(c.req, o->args[0]);
  if (strcmp(o->command, "stop") == 0 && o->grace_ms >= 0) {
    Google__Protobuf__Duration *d = cmn_malloc(sizeof(*d));
    google__protobuf__duration__init(d);
    d->seconds = o->grace_ms / 1000;
    d->nanos = (int32_t)(o->grace_ms % 1000) * 1000000;
    ((Ember__V1__StopInstanceRequest *)req)->graceful_timeout = d;
  }
  if (is_delete)
    ((Ember__V1__DeleteInstanceRequest *)req)->allow_missing = o->allow_missing;
  ProtobufCMessage *resp = NULL;
  int r = ctl_rpc_unary(rpc, c.path, req, c.resp, &resp, err);
  protobuf_c_message_free_unpacked(req, NULL);
  if (r < 0)
    return ctl_fail(err);
  if (o->json)
    ctl_print_json(out, resp, false);
  else if (is_delete && ((Ember__V1__DeleteInstanceResponse *)resp)->id[0] == '\0')
    fprintf(out, "no instance %s (nothing deleted)\n", o->args[0]);
  else if (is_delete)
    fprintf(out, "deleted %s\n", ((Ember__V1__DeleteInstanceResponse *)resp)->id);
  else if (strcmp(o->command, "get") == 0)
    ctl_print_instance(out, (Ember__V1__Instance *)resp);
  else
    ctl_print_transition(out, o->command, (Ember__V1__Instance *)resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* hold ID DURATION: HoldInstance (0 releases). */
static int ctl__run_hold(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  int64_t ms = 0;
  if (ctl_parse_duration_ms(o->args[1], &ms) < 0) {
    cmn_err_set(err, CTL_EXIT_USAGE, "bad DURATION '%s' (for example 30m, 1h, 0 to release)",
                o->args[1]);
    return CTL_EXIT_USAGE;
  }
  Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
  d.seconds = ms / 1000;
  d.nanos = (int32_t)(ms % 1000) * 1000000;
  Ember__V1__HoldInstanceRequest req = EMBER__V1__HOLD_INSTANCE_REQUEST__INIT;
  req.id = (char *)o->args[0];
  req.duration = &d;
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "hold", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  const Ember__V1__Instance *in = (const Ember__V1__Instance *)resp;
  if (o->json) {
    ctl_print_json(out, resp, false);
  } else if (ms == 0) {
    fprintf(out, "%s: hold released\n", in->name);
  } else {
    char buf[32];
    ctl_fmt_duration(buf, sizeof(buf), ms * 1000);
    fprintf(out, "%s: held awake for %s\n", in->name, buf);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* ---- create, list, hypervisors ---- */

static int ctl__run_create(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__CreateInstanceRequest *req = NULL;
  if (ctl_spec_build(o, o->n_args > 0 ? o->args[0] : NULL, &req, err) < 0)
    return err->code == CMN_INVALID_ARGUMENT && o->spec_file == NULL ? CTL_EXIT_USAGE
                                                                     : ctl_fail(err);
  /* --label and --request-id add to (and override) what --spec gave. */
  for (int i = 0; i < o->n_labels; i++) {
    const char *eq = strchr(o->labels[i], '=');
    cleanup_free char *key = cmn_strndup(o->labels[i], (size_t)(eq - o->labels[i]));
    Ember__V1__CreateInstanceRequest__LabelsEntry *e = NULL;
    for (size_t k = 0; k < req->n_labels && e == NULL; k++)
      if (strcmp(req->labels[k]->key, key) == 0)
        e = req->labels[k];
    if (e == NULL) {
      e = cmn_malloc(sizeof(*e));
      ember__v1__create_instance_request__labels_entry__init(e);
      e->key = cmn_strdup(key);
      req->labels = cmn_realloc(req->labels, (req->n_labels + 1) * sizeof(*req->labels));
      req->labels[req->n_labels++] = e;
    } else if (e->value != protobuf_c_empty_string) {
      free(e->value);
    }
    e->value = cmn_strdup(eq + 1);
  }
  if (o->request_id != NULL) {
    if (req->request_id != protobuf_c_empty_string)
      free(req->request_id);
    req->request_id = cmn_strdup(o->request_id);
  }
  ProtobufCMessage *resp = NULL;
  int r = ctl_unary(rpc, "create", &req->base, &resp, err);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  if (r < 0)
    return ctl_fail(err);
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    ctl_print_instance(out, (Ember__V1__Instance *)resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* Follows next_page_token until the last page and prints every instance as
 * one list (with --json one {"instances": [...]} object). --state adds
 * `state=STATE` to --filter. */
static int ctl__run_list(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  cleanup_free char *filter = NULL;
  if (o->state != NULL) {
    int st = ctl_state_parse(o->state);
    if (st < 0) {
      cmn_err_set(err, CTL_EXIT_USAGE,
                  "bad --state '%s': one of stopped, running, paused, standby, unknown", o->state);
      return CTL_EXIT_USAGE;
    }
    const char *name = ctl_pb_enum_name(&ember__v1__instance_state__descriptor, st);
    filter = cmn_asprintf("state=%s%s%s", name, o->filter != NULL ? " AND " : "",
                          o->filter != NULL ? o->filter : "");
  } else if (o->filter != NULL) {
    filter = cmn_strdup(o->filter);
  }
  Ember__V1__ListInstancesRequest req = EMBER__V1__LIST_INSTANCES_REQUEST__INIT;
  req.filter = filter != NULL ? filter : (char *)"";
  req.page_size = o->page_size > 0 ? o->page_size : 1000;
  ProtobufCMessage **pages = NULL;
  size_t n_pages = 0, n_all = 0;
  int rc = 0;
  cleanup_free char *token = NULL;
  for (;;) {
    req.page_token = token != NULL ? token : (char *)"";
    ProtobufCMessage *resp = NULL;
    if (ctl_unary(rpc, "list", &req.base, &resp, err) < 0) {
      rc = ctl_fail(err);
      break;
    }
    pages = cmn_realloc(pages, (n_pages + 1) * sizeof(*pages));
    pages[n_pages++] = resp;
    Ember__V1__ListInstancesResponse *l = (Ember__V1__ListInstancesResponse *)resp;
    n_all += l->n_instances;
    free(token);
    token = NULL;
    if (l->next_page_token[0] == '\0')
      break;
    token = cmn_strdup(l->next_page_token);
  }
  if (rc == 0) {
    Ember__V1__Instance **all = cmn_calloc(n_all + 1, sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < n_pages; i++) {
      Ember__V1__ListInstancesResponse *l = (Ember__V1__ListInstancesResponse *)pages[i];
      for (size_t j = 0; j < l->n_instances; j++)
        all[k++] = l->instances[j];
    }
    Ember__V1__ListInstancesResponse merged = EMBER__V1__LIST_INSTANCES_RESPONSE__INIT;
    merged.instances = all;
    merged.n_instances = n_all;
    if (o->json)
      ctl_print_json(out, &merged.base, false);
    else
      ctl_print_instances(out, all, n_all);
    free(all);
  }
  for (size_t i = 0; i < n_pages; i++)
    protobuf_c_message_free_unpacked(pages[i], NULL);
  free(pages);
  return rc;
}

static int ctl__run_hypervisors(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ListHypervisorsRequest req = EMBER__V1__LIST_HYPERVISORS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "hypervisors", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  Ember__V1__ListHypervisorsResponse *l = (Ember__V1__ListHypervisorsResponse *)resp;
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    ctl_print_hypervisors(out, l->hypervisors, l->n_hypervisors);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int ctl__run_networks(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ListNetworksRequest req = EMBER__V1__LIST_NETWORKS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  if (ctl_unary(rpc, "networks", &req.base, &resp, err) < 0)
    return ctl_fail(err);
  Ember__V1__ListNetworksResponse *l = (Ember__V1__ListNetworksResponse *)resp;
  if (o->json)
    ctl_print_json(out, resp, false);
  else
    ctl_print_networks(out, l->networks, l->n_networks);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* ---- watch ---- */

typedef struct ctl__watch {
  FILE *out;
  bool json;
  long left; /* events still wanted; <= 0: unlimited */
  const char *what;
} ctl__watch;

/* Subscribed: say so (stdout for people; stderr with --json, which keeps
 * stdout pure JSON lines). Scripts may wait for this line before acting. */
static void ctl__on_watch_ready(void *opaque)
{
  ctl__watch *w = opaque;
  FILE *f = w->json ? stderr : w->out;
  fprintf(f, "watching %s (Ctrl-C to stop)\n", w->what);
  fflush(f);
}

static bool ctl__on_event(const ProtobufCMessage *msg, void *opaque)
{
  ctl__watch *w = opaque;
  if (w->json)
    ctl_print_json(w->out, msg, true);
  else
    ctl_print_event(w->out, (const Ember__V1__InstanceEvent *)msg);
  if (w->left > 0 && --w->left == 0)
    return false;
  return true;
}

static int ctl__run_watch(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__WatchInstancesRequest req = EMBER__V1__WATCH_INSTANCES_REQUEST__INIT;
  if (o->n_args > 0)
    req.id = o->args[0];
  ctl__watch w = {.out = out,
                  .json = o->json,
                  .left = o->count,
                  .what = o->n_args > 0 ? o->args[0] : "all instances"};
  ctl__method m;
  if (ctl__method_in(&ember__v1__instance_service__descriptor, "WatchInstances", &m, err) < 0 ||
      ctl_rpc_stream(rpc, m.path, &req.base, m.resp, ctl__on_watch_ready, ctl__on_event, &w, err) <
          0)
    return ctl_fail(err);
  return 0;
}

/* ---- health ---- */

static int ctl__run_health(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  if (o->n_args > 0)
    req.service = o->args[0];
  ProtobufCMessage *resp = NULL;
  if (ctl_rpc_unary(rpc, "/grpc.health.v1.Health/Check", &req.base,
                    &grpc__health__v1__health_check_response__descriptor, &resp, err) < 0)
    return ctl_fail(err);
  Grpc__Health__V1__HealthCheckResponse *h = (Grpc__Health__V1__HealthCheckResponse *)resp;
  const char *name = ctl_pb_enum_name(
      &grpc__health__v1__health_check_response__serving_status__descriptor, (int)h->status);
  if (o->json)
    ctl_print_json(out, resp, true);
  else
    fprintf(out, "%s\n", name != NULL ? name : "UNKNOWN");
  int rc = 0;
  if (h->status != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
    cmn_err_set(err, CMN_UNAVAILABLE, "%s is %s", req.service[0] ? req.service : "emberd",
                name != NULL ? name : "not serving");
    rc = CMN_UNAVAILABLE;
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

/* ---- the table ---- */

#define CTL_CREATE_OPTS                                                                            \
  (CTL_OPT_SPEC | CTL_OPT_VCPUS | CTL_OPT_MEMORY | CTL_OPT_KERNEL | CTL_OPT_INITRD |               \
   CTL_OPT_CMDLINE | CTL_OPT_DISK | CTL_OPT_TAP | CTL_OPT_VSOCK | CTL_OPT_HYPERVISOR |             \
   CTL_OPT_START | CTL_OPT_LABEL | CTL_OPT_REQUEST_ID | CTL_OPT_IMAGE | CTL_OPT_NETWORK |          \
   CTL_OPT_IP | CTL_OPT_MAC | CTL_OPT_PUBLISH | CTL_OPT_NETNS)

#define CTL_ID_HELP "ID is the instance's id or its name.\n"

const ctl_command ctl_commands[] = {
    {"list", "", "list instances",
     "Prints one row per instance, ordered by name (every page: emberctl follows\n"
     "next_page_token).\n"
     "  --state STATE   only instances in STATE (stopped, running, paused, standby, unknown)\n"
     "  --filter EXPR   only instances that match EXPR: field=value terms joined by AND;\n"
     "                  fields state, name, id, hypervisor, labels.KEY (docs/api.md)\n"
     "                  e.g. --filter 'labels.team=infra AND state=RUNNING'\n"
     "  --page-size N   instances per call (1 to 1000, default 1000); all pages are listed\n"
     "With --json: {\"instances\": [Instance, ...]}.\n",
     CTL_OPT_STATE | CTL_OPT_FILTER | CTL_OPT_PAGE_SIZE, 0, 0, ctl__run_list},
    {"get", "ID", "show one instance",
     CTL_ID_HELP "Shows its spec and state and, for an interface on a managed network, how\n"
                 "emberd attached it: address, gateway, MAC, TAP device, namespace, the\n"
                 "address the host reaches it at, and the port forwards.\n"
                 "With --json: the Instance message.\n",
     0, 1, 1, ctl__run_id},
    {"create", "NAME", "create an instance (Stopped unless --start)",
     "  --hypervisor TYPE    qemu (default), firecracker, cloud-hypervisor\n"
     "  --vcpus N            virtual CPUs (default 1)\n"
     "  --memory-mib N       guest memory in MiB (default 256)\n"
     "  --kernel PATH        guest kernel (vmlinux or bzImage)\n"
     "  --initrd PATH        initial ramdisk\n"
     "  --cmdline STRING     kernel command line\n"
     "  --disk PATH[:ro]     a raw disk image; repeat for more\n"
     "  --tap NAME[,MAC]     a network interface on host TAP device NAME (made by you);\n"
     "                       repeat for more\n"
     "  --network NAME[,MAC] an interface on network NAME, which emberd manages (see\n"
     "                       emberctl networks): emberd gives it an address, a MAC, a TAP\n"
     "                       device and NAT; the guest's first interface; one at most\n"
     "  --ip ADDR            with --network: the guest's IPv4 address (a free one of the\n"
     "                       subnet, e.g. 10.77.0.9); default: the lowest free one\n"
     "  --mac MAC            with --network: the guest's MAC (unicast aa:bb:cc:dd:ee:ff);\n"
     "                       default: emberd makes one\n"
     "  -p, --publish [HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]\n"
     "                       with --network: forward a host port to a guest port (tcp\n"
     "                       unless /udp; HOSTADDR: only that local IPv4 address of the\n"
     "                       host); repeat for more, e.g. -p 8080:80 -p 127.0.0.1:5353:53/udp\n"
     "  --netns              with --network: run the VMM in a network namespace of its own\n"
     "                       (the host reaches the guest at the namespace's address, shown\n"
     "                       by emberctl get as Host address)\n"
     "  --vsock-cid CID      a vsock device with guest context id CID (host side:\n"
     "                       <instance folder>/vsock.sock)\n"
     "  --start              start it at once\n"
     "  --label KEY=VALUE    a label (repeat for more); filter with list --filter\n"
     "  --request-id ID      idempotency key: a retry with the same ID returns the\n"
     "                       instance the first try created (a UUID, for example)\n"
     "  --image REF          boot an image of the store (emberctl pull/import first):\n"
     "                       no --kernel needed (emberd's boot kit); overrides:\n"
     "  --entrypoint ARG     the entrypoint's argv, one ARG per flag (replaces the image's\n"
     "                       Entrypoint and Cmd)\n"
     "  --arg ARG            an argument (replaces the image's Cmd); repeat for more\n"
     "  --env KEY=VALUE      an environment entry (merged by KEY); repeat for more\n"
     "  --workdir DIR        the working directory (absolute)\n"
     "  --spec FILE.json     read an InstanceSpec (or a whole CreateInstanceRequest with\n"
     "                       \"name\", \"spec\", \"start\") in the proto3 JSON mapping; flags\n"
     "                       override its fields. Relative paths in the file are taken\n"
     "                       against the file's folder, those of flags against the current\n"
     "                       one. --tap replaces the file's TAP interfaces; --network,\n"
     "                       --ip, --mac, --publish (all of its forwards) and --netns\n"
     "                       change the file's interface on a managed network.\n"
     "With --json: the created Instance message.\n",
     CTL_CREATE_OPTS, 0, 1, ctl__run_create},
    {"start", "ID", "boot a stopped instance", CTL_ID_HELP, 0, 1, 1, ctl__run_id},
    {"stop", "ID", "end the VMM and drop snapshots",
     CTL_ID_HELP
     "  --graceful-timeout DUR  how long the guest gets to power off (ACPI) before the\n"
     "                          VMM is ended: 0 ends it at once; default: emberd's\n"
     "                          stop timeout (10s). Keep --timeout above it.\n",
     CTL_OPT_GRACE, 1, 1, ctl__run_id},
    {"pause", "ID", "pause the vCPUs", CTL_ID_HELP, 0, 1, 1, ctl__run_id},
    {"resume", "ID", "resume a paused instance", CTL_ID_HELP, 0, 1, 1, ctl__run_id},
    {"standby", "ID", "snapshot to disk and let the VMM go",
     CTL_ID_HELP "Prints the snapshot kind (full or diff) and how long it took.\n", 0, 1, 1,
     ctl__run_id},
    {"restore", "ID", "start from the standby snapshot and resume",
     CTL_ID_HELP "Prints how long the restore took.\n", 0, 1, 1, ctl__run_id},
    {"hold", "ID DURATION", "keep an instance awake (no idle auto-standby) for DURATION",
     "DURATION is like 90s, 30m or 2h (at most 24h); 0 releases the hold. A new hold\n"
     "replaces the previous one; emberd keeps it in memory only. docs/idle.md.\n"
     "With --json: the Instance.\n",
     0, 2, 2, ctl__run_hold},
    {"delete", "ID", "end the VMM and remove the instance",
     CTL_ID_HELP "  --allow-missing  exit 0 when there is no such instance\n"
                 "With --json: {\"id\": ...} (empty id when --allow-missing found none).\n",
     CTL_OPT_ALLOW_MISSING, 1, 1, ctl__run_id},
    {"watch", "[ID]", "stream state changes until Ctrl-C",
     "Prints one line per state change of ID (or of every instance); with --json one\n"
     "InstanceEvent object per line (JSON lines). Once subscribed it prints\n"
     "\"watching ... (Ctrl-C to stop)\" (on stderr with --json): every change after that\n"
     "line is streamed. No deadline unless --timeout.\n"
     "  --count N       exit after N events\n",
     CTL_OPT_COUNT, 0, 1, ctl__run_watch},
    {"console", "ID", "print the guest's serial console (-f: keep following)",
     "Writes the console's bytes, as the guest wrote them, to stdout: all that is kept\n"
     "(emberd keeps the last console_max_bytes / 2 at least), from --offset, or the last\n"
     "--tail bytes. With --json: one ConsoleChunk object per line. Bytes rotated away\n"
     "before the requested offset are reported on stderr. docs/console.md.\n"
     "  -f, --follow    keep streaming new output until Ctrl-C or the instance is deleted\n"
     "                  (no deadline unless --timeout)\n"
     "  --tail N        start N bytes (1 or more) before the current end\n"
     "  --offset N      start at absolute offset N (a ConsoleChunk offset + its length)\n",
     CTL_OPT_CONSOLE, 1, 1, ctl_run_console},
    {"hypervisors", "", "list hypervisor types and their capabilities",
     "With --json: {\"hypervisors\": [Hypervisor, ...]}.\n", 0, 0, 0, ctl__run_hypervisors},
    {"networks", "", "list the networks emberd manages (create --network NAME)",
     "Prints one row per network: its subnet, gateway, bridge, whether traffic leaving it\n"
     "is NATed, whether its instances are isolated from each other, and how many of its\n"
     "addresses instances hold.\n"
     "With --json: {\"networks\": [Network, ...]}.\n",
     0, 0, 0, ctl__run_networks},
    /* Forks and saved snapshots (snapshots.c). */
    {"fork", "SOURCE NAME...", "make running copies of an instance or of a saved snapshot",
     "  emberctl fork SOURCE NAME... [--standby] [--label KEY=VALUE]...\n"
     "  emberctl fork --snapshot SNAP NAME... [--standby] [--label KEY=VALUE]...\n"
     "  emberctl fork SOURCE --prefix P --count N   (clones P-1 to P-N)\n"
     "SOURCE is a Running or Standby instance (its id or name): a Running one is paused\n"
     "while its snapshot is taken, then resumed. Each clone starts from the source's\n"
     "memory and disks (copy-on-write), with its own network namespace (same guest\n"
     "address and MAC, no port forwards). 1 to 64 clones; on a failure the clones made\n"
     "so far stay (emberctl list) and the message says how many.\n"
     "Prints the clones as list does, then the snapshot they came from.\n"
     "  --snapshot SNAP    fork the saved snapshot SNAP (id or name, emberctl snapshots)\n"
     "                     instead of an instance; every word is then a clone's name\n"
     "  --prefix P         with --count N: name the clones P-1 to P-N\n"
     "  --count N          how many clones with --prefix\n"
     "  --standby          leave the clones in Standby (emberctl restore NAME later)\n"
     "  --label KEY=VALUE  a label of every clone (the source's are not copied);\n"
     "                     repeat for more\n"
     "With --json: the ForkInstanceResponse {\"instances\": [Instance, ...],\n"
     "\"snapshotId\": ..., \"snapshotDuration\": ...}.\n",
     CTL_OPT_SNAPSHOT | CTL_OPT_PREFIX | CTL_OPT_COUNT | CTL_OPT_STANDBY | CTL_OPT_LABEL, 0,
     INT_MAX, ctl_run_fork},
    {"snapshot", "INSTANCE NAME", "save a named snapshot of an instance to fork later",
     "INSTANCE is a Running (paused while it is taken, then resumed) or Standby\n"
     "instance, by id or name. NAME follows the rules of instance names. The snapshot\n"
     "outlives the instance: emberctl fork --snapshot NAME makes clones of it.\n"
     "With --json: the Snapshot message.\n",
     0, 2, 2, ctl_run_snapshot},
    {"snapshots", "", "list saved snapshots",
     "Prints one row per snapshot, ordered by name: its id, name, source instance, size\n"
     "on disk, how many clones depend on it, and when it was taken. The snapshot a fork\n"
     "took of an instance is listed without a name (\"-\") while clones depend on it.\n"
     "With --json: {\"snapshots\": [Snapshot, ...]}.\n",
     0, 0, 0, ctl_run_snapshots},
    {"rmsnapshot", "SNAPSHOT", "delete a saved snapshot (refused while clones use it)",
     "SNAPSHOT is a snapshot id or name. Refused (FAILED_PRECONDITION, exit 9) while\n"
     "an instance forked from it exists; the message names them.\n"
     "With --json: {\"id\": ...}.\n",
     0, 1, 1, ctl_run_rmsnapshot},
    {"health", "[SERVICE]", "check grpc.health.v1 (exit 0 when SERVING)",
     "Calls /grpc.health.v1.Health/Check for SERVICE (default: the whole server) and\n"
     "prints the serving status. Exits 0 when SERVING, 14 (UNAVAILABLE) otherwise: fit\n"
     "for container health checks and Kubernetes exec probes.\n",
     0, 0, 1, ctl__run_health},
    {"pull", "REF", "pull an image from its registry into emberd's store",
     "REF is host[:port]/repo[:tag][@sha256:...]. Shows a progress bar on a terminal\n"
     "(one line per blob event otherwise); Ctrl-C stops the pull (nothing is kept).\n"
     "With --json: one PullImageProgress object per line, the last with the Image.\n",
     0, 1, 1, ctl_run_pull},
    {"images", "", "list the images in emberd's store",
     "With --json: {\"images\": [Image, ...]}.\n", 0, 0, 0, ctl_run_images},
    {"rmi", "IMAGE", "delete an image (refused while an instance uses it)",
     "IMAGE is an image id (sha256:...) or name. A name of an image with other names\n"
     "only removes that name.\n"
     "  --allow-missing  exit 0 when there is no such image\n",
     CTL_OPT_ALLOW_MISSING, 1, 1, ctl_run_rmi},
    {"import", "FILE", "upload an image file into emberd's store",
     "  --kind KIND    oci (an OCI layout tar), docker-archive (docker save), kernel,\n"
     "                 initrd or disk (one plain file)\n"
     "  --name NAME    the name to record, e.g. my-app:1\n"
     "With --json: the Image.\n",
     CTL_OPT_IMPORT, 1, 1, ctl_run_import},
    /* The guest agent (exec.c). */
    {"exec", "[OPTIONS] NAME -- CMD [ARG...]", "run a command in a running instance's guest",
     "Runs CMD through the guest agent (the boot kit's, spec.guest_agent) and exits with\n"
     "its exit code (128+N when signal N killed it; the gRPC code when the call fails).\n"
     "Options go between exec and NAME:\n"
     "  -i, --interactive    forward stdin until EOF (else the command's stdin is empty)\n"
     "  -t, --tty            a terminal (stdout and stderr merge); the local terminal is\n"
     "                       put in raw mode while the command runs; resizes follow\n"
     "  -e, --env KEY=VALUE  an environment entry; repeat for more\n"
     "  -w, --workdir DIR    the working directory in the guest\n"
     "  -u, --user USER      a user name or uid[:gid] in the guest\n"
     "  --timeout DUR        kill the command after DUR (exit DEADLINE_EXCEEDED, 4)\n"
     "Global options (--socket, the call's --timeout) go before exec. No call deadline\n"
     "unless given. Ctrl-C without -t cancels the call, which kills the command.\n",
     0, 1, 1, ctl_run_exec},
    {"cp", "SRC DST", "copy a file into or out of a running instance's guest",
     "One of SRC and DST is NAME:/path in the guest, the other a local file:\n"
     "  emberctl cp ./app.conf web:/etc/app.conf   (a DST ending in / takes SRC's name)\n"
     "  emberctl cp web:/var/log/app.log .         (into a folder: the guest file's name)\n"
     "A copy into the guest keeps the local mode bits and appears whole or not at all;\n"
     "a copy out is written beside the local file and renamed into place.\n",
     0, 2, 2, ctl_run_cp},
    {NULL, NULL, NULL, NULL, 0, 0, 0, NULL},
};

const ctl_command *ctl_command_find(const char *name)
{
  for (const ctl_command *c = ctl_commands; c->name != NULL; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}
