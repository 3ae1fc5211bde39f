/* output.c: human-readable output of emberctl (tables and detail views).
 *
 * Names of states, operations and snapshot kinds come from the enum
 * descriptors of the generated code, shortened by dropping the enum's prefix,
 * so a value added to the proto prints correctly without a change here. */
#include "agent/ctl/output.h"

#include "agent/ctl/pbjson.h"
#include "common/mem.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Lower-case value name without prefix, written into buf. */
static const char *ctl__short(const ProtobufCEnumDescriptor *ed, int v, const char *prefix,
                              char *buf, size_t n)
{
  const char *name = ctl_pb_enum_name(ed, v);
  if (name == NULL)
    return "?";
  size_t pl = strlen(prefix);
  if (strncmp(name, prefix, pl) == 0)
    name += pl;
  size_t i = 0;
  for (; name[i] != '\0' && i + 1 < n; i++)
    buf[i] = (char)tolower((unsigned char)name[i]);
  buf[i] = '\0';
  return buf;
}

#define CTL_NAME_MAX 32

/* The short name of v in ed ("-" for 0, the UNSPECIFIED value). */
static ctl_name ctl__name(const ProtobufCEnumDescriptor *ed, int v, const char *prefix)
{
  ctl_name n;
  const char *s = v == 0 ? "-" : ctl__short(ed, v, prefix, n.s, sizeof(n.s));
  if (s != n.s)
    snprintf(n.s, sizeof(n.s), "%s", s);
  return n;
}

ctl_name ctl_state_name(int state)
{
  return ctl__name(&ember__v1__instance_state__descriptor, state, "INSTANCE_STATE_");
}

int ctl_state_parse(const char *s)
{
  const ProtobufCEnumDescriptor *ed = &ember__v1__instance_state__descriptor;
  for (unsigned i = 0; i < ed->n_values; i++) {
    char buf[CTL_NAME_MAX];
    const char *shortname =
        ctl__short(ed, ed->values[i].value, "INSTANCE_STATE_", buf, sizeof(buf));
    if (strcasecmp(s, shortname) == 0 || strcasecmp(s, ed->values[i].name) == 0)
      return ed->values[i].value;
  }
  return -1;
}

ctl_name ctl_operation_name(int op)
{
  return ctl__name(&ember__v1__operation__descriptor, op, "OPERATION_");
}

const char *ctl_snapshot_kind_name(int kind)
{
  switch (kind) {
  case EMBER__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL:
    return "full";
  case EMBER__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF:
    return "diff";
  default:
    return "-";
  }
}

void ctl_fmt_duration(char *buf, size_t n, int64_t us)
{
  if (us <= 0)
    snprintf(buf, n, "-");
  else if (us < 1000)
    snprintf(buf, n, "%" PRId64 "us", us);
  else if (us < 1000000)
    snprintf(buf, n, "%.1fms", (double)us / 1e3);
  else if (us < 60000000)
    snprintf(buf, n, "%.2fs", (double)us / 1e6);
  else
    snprintf(buf, n, "%" PRId64 "m%02" PRId64 "s", us / 60000000, (us / 1000000) % 60);
}

void ctl_fmt_mib(char *buf, size_t n, uint64_t mib)
{
  if (mib >= 1024 && mib % 1024 == 0)
    snprintf(buf, n, "%" PRIu64 " GiB", mib / 1024);
  else
    snprintf(buf, n, "%" PRIu64 " MiB", mib);
}

void ctl_fmt_bytes(char *buf, size_t n, uint64_t bytes)
{
  if (bytes >= (1ull << 30))
    snprintf(buf, n, "%.2f GiB", (double)bytes / (double)(1ull << 30));
  else if (bytes >= (1u << 20))
    snprintf(buf, n, "%.1f MiB", (double)bytes / (1u << 20));
  else if (bytes >= 1024)
    snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
  else
    snprintf(buf, n, "%" PRIu64 " B", bytes);
}

void ctl_fmt_time(char *buf, size_t n, int64_t us)
{
  if (us <= 0) {
    snprintf(buf, n, "-");
    return;
  }
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  if (localtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
    snprintf(buf, n, "%" PRId64, us);
}

/* ---- tables ---- */

struct ctl_table {
  size_t ncols, nrows;
  char **cells; /* (nrows + 1) * ncols, row 0 the header */
};

ctl_table *ctl_table_new(size_t ncols, const char *const *header)
{
  ctl_table *t = cmn_calloc(1, sizeof(*t));
  t->ncols = ncols;
  ctl_table_add(t, header);
  return t;
}

void ctl_table_add(ctl_table *t, const char *const *cells)
{
  t->cells = cmn_realloc(t->cells, sizeof(char *) * t->ncols * (t->nrows + 1));
  for (size_t c = 0; c < t->ncols; c++)
    t->cells[t->nrows * t->ncols + c] = cmn_strdup(cells[c] != NULL ? cells[c] : "");
  t->nrows++;
}

void ctl_table_print(const ctl_table *t, FILE *f)
{
  size_t *w = cmn_calloc(t->ncols, sizeof(size_t));
  for (size_t r = 0; r < t->nrows; r++)
    for (size_t c = 0; c < t->ncols; c++) {
      size_t l = strlen(t->cells[r * t->ncols + c]);
      if (l > w[c])
        w[c] = l;
    }
  for (size_t r = 0; r < t->nrows; r++) {
    for (size_t c = 0; c < t->ncols; c++) {
      const char *cell = t->cells[r * t->ncols + c];
      if (c + 1 == t->ncols)
        fprintf(f, "%s\n", cell);
      else
        fprintf(f, "%-*s  ", (int)w[c], cell);
    }
  }
  free(w);
}

void ctl_table_free(ctl_table *t)
{
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
  free(t);
}

/* ---- instances ---- */

void ctl_print_instances(FILE *f, Ember__V1__Instance *const *v, size_t n)
{
  static const char *const hdr[] = {"NAME",  "ID",     "HYPERVISOR", "STATE",
                                    "VCPUS", "MEMORY", "SNAPSHOT",   "PID"};
  ctl_table *t = ctl_table_new(8, hdr);
  for (size_t i = 0; i < n; i++) {
    const Ember__V1__Instance *in = v[i];
    char vcpus[16] = "-", mem[32] = "-", snap[48] = "-", pid[16] = "-";
    if (in->spec != NULL) {
      snprintf(vcpus, sizeof(vcpus), "%" PRIu32, in->spec->vcpus);
      ctl_fmt_mib(mem, sizeof(mem), in->spec->memory_mib);
    }
    if (in->has_snapshot)
      snprintf(snap, sizeof(snap), "%s", ctl_snapshot_kind_name(in->last_snapshot_kind));
    if (in->vmm_pid > 0)
      snprintf(pid, sizeof(pid), "%" PRId32, in->vmm_pid);
    ctl_name state = ctl_state_name(in->state);
    const char *row[] = {in->name, in->id, in->spec != NULL ? in->spec->hypervisor : "-",
                         state.s,  vcpus,  mem,
                         snap,     pid};
    ctl_table_add(t, row);
  }
  ctl_table_print(t, f);
  ctl_table_free(t);
}

/* Microseconds of a Timestamp or Duration; 0 when unset. */
static int64_t ctl__ts_us(const Google__Protobuf__Timestamp *t)
{
  return t != NULL ? t->seconds * 1000000 + t->nanos / 1000 : 0;
}
static int64_t ctl__dur_us(const Google__Protobuf__Duration *d)
{
  return d != NULL ? d->seconds * 1000000 + d->nanos / 1000 : 0;
}

static bool ctl__set(const char *s) { return s != NULL && s[0] != '\0'; }

void ctl_fmt_forward(char *buf, size_t n, const Ember__V1__PortForward *pf)
{
  const char *proto = pf->protocol == EMBER__V1__PROTOCOL__PROTOCOL_TCP   ? "tcp"
                      : pf->protocol == EMBER__V1__PROTOCOL__PROTOCOL_UDP ? "udp"
                                                                          : "?";
  snprintf(buf, n, "%s%s%" PRIu32 ":%" PRIu32 "/%s",
           ctl__set(pf->host_address) ? pf->host_address : "",
           ctl__set(pf->host_address) ? ":" : "", pf->host_port, pf->guest_port, proto);
}

/* One interface of the spec: "tap NAME [mac MAC]", or "network NAME [ip
 * ADDR] [mac MAC] [publish FWD,...]". */
static void ctl__print_nic(FILE *f, size_t i, const Ember__V1__NetworkInterface *ni)
{
  char fwd[80];
  fprintf(f, "Net %-9zu ", i);
  if (ctl__set(ni->network)) {
    fprintf(f, "network %s", ni->network);
    if (ctl__set(ni->ipv4_address))
      fprintf(f, " ip %s", ni->ipv4_address);
  } else {
    fprintf(f, "tap %s", ni->tap_device);
  }
  if (ctl__set(ni->mac_address))
    fprintf(f, " mac %s", ni->mac_address);
  for (size_t k = 0; k < ni->n_port_forwards; k++) {
    ctl_fmt_forward(fwd, sizeof(fwd), ni->port_forwards[k]);
    fprintf(f, "%s%s", k == 0 ? " publish " : ",", fwd);
  }
  fputc('\n', f);
}

/* The NetworkStatus: how emberd attached the instance. */
static void ctl__print_net_status(FILE *f, const Ember__V1__NetworkStatus *ns)
{
  char fwd[80];
  fprintf(f, "Network:       %s\n", ns->network);
  if (ctl__set(ns->ipv4_address))
    fprintf(f, "Address:       %s\n", ns->ipv4_address);
  if (ctl__set(ns->gateway))
    fprintf(f, "Gateway:       %s\n", ns->gateway);
  if (ctl__set(ns->mac_address))
    fprintf(f, "MAC:           %s\n", ns->mac_address);
  if (ctl__set(ns->tap_device))
    fprintf(f, "TAP:           %s\n", ns->tap_device);
  fprintf(f, "Namespace:     %s\n", ctl__set(ns->namespace_) ? ns->namespace_ : "none");
  if (ctl__set(ns->host_address))
    fprintf(f, "Host address:  %s\n", ns->host_address);
  for (size_t k = 0; k < ns->n_port_forwards; k++) {
    ctl_fmt_forward(fwd, sizeof(fwd), ns->port_forwards[k]);
    fprintf(f, "Forward:       %s\n", fwd);
  }
}

void ctl_print_instance(FILE *f, const Ember__V1__Instance *in)
{
  char buf[64];
  fprintf(f, "Name:          %s\n", in->name);
  fprintf(f, "ID:            %s\n", in->id);
  fprintf(f, "State:         %s\n", ctl_state_name(in->state).s);
  if (in->status_message != NULL && in->status_message[0] != '\0')
    fprintf(f, "Status:        %s\n", in->status_message);
  if (in->spec != NULL) {
    const Ember__V1__InstanceSpec *s = in->spec;
    fprintf(f, "Hypervisor:    %s\n", s->hypervisor);
    ctl_fmt_mib(buf, sizeof(buf), s->memory_mib);
    fprintf(f, "vCPUs:         %" PRIu32 "\n", s->vcpus);
    fprintf(f, "Memory:        %s\n", buf);
    fprintf(f, "Kernel:        %s\n", s->kernel_path);
    if (s->initrd_path != NULL && s->initrd_path[0] != '\0')
      fprintf(f, "Initrd:        %s\n", s->initrd_path);
    if (s->cmdline != NULL && s->cmdline[0] != '\0')
      fprintf(f, "Cmdline:       %s\n", s->cmdline);
    for (size_t i = 0; i < s->n_disks; i++)
      fprintf(f, "Disk %-8zu %s%s\n", i, s->disks[i]->path,
              s->disks[i]->read_only ? " (read-only)" : "");
    for (size_t i = 0; i < s->n_network_interfaces; i++)
      ctl__print_nic(f, i, s->network_interfaces[i]);
    if (s->network_namespace)
      fprintf(f, "Net namespace: yes\n");
    if (s->vsock != NULL)
      fprintf(f, "Vsock:         cid %" PRIu32 "\n", s->vsock->guest_cid);
    if (s->auto_standby != NULL)
      fprintf(f, "Auto standby:  after %" PRIu32 " s idle (cpu < %g%%, net < %" PRIu64 " B/s)\n",
              s->auto_standby->idle_seconds, s->auto_standby->max_cpu_percent,
              s->auto_standby->max_net_bytes_per_second);
  }
  if (in->idle != NULL) {
    ctl_fmt_duration(buf, sizeof(buf), ctl__dur_us(in->idle->idle_duration));
    fprintf(f, "Idle:          %s (cpu %.1f%%, net %" PRIu64 " B/s, %" PRIu32 " sessions)\n", buf,
            in->idle->cpu_percent, in->idle->net_bytes_per_second, in->idle->open_sessions);
    if (in->idle->hold_until != NULL) {
      ctl_fmt_time(buf, sizeof(buf), ctl__ts_us(in->idle->hold_until));
      fprintf(f, "Held until:    %s\n", buf);
    }
  }
  if (in->network != NULL)
    ctl__print_net_status(f, in->network);
  if (in->vmm_pid > 0)
    fprintf(f, "VMM PID:       %" PRId32 "\n", in->vmm_pid);
  fprintf(f, "Snapshot:      %s\n",
          in->has_snapshot ? ctl_snapshot_kind_name(in->last_snapshot_kind) : "none");
  ctl_fmt_duration(buf, sizeof(buf), ctl__dur_us(in->last_standby_duration));
  fprintf(f, "Last standby:  %s\n", buf);
  ctl_fmt_duration(buf, sizeof(buf), ctl__dur_us(in->last_restore_duration));
  fprintf(f, "Last restore:  %s\n", buf);
  if (in->console_log_path != NULL && in->console_log_path[0] != '\0')
    fprintf(f, "Console log:   %s\n", in->console_log_path);
  for (size_t i = 0; i < in->n_labels; i++)
    fprintf(f, "Label:         %s=%s\n", in->labels[i]->key, in->labels[i]->value);
  if (in->request_id != NULL && in->request_id[0] != '\0')
    fprintf(f, "Request ID:    %s\n", in->request_id);
  ctl_fmt_time(buf, sizeof(buf), ctl__ts_us(in->create_time));
  fprintf(f, "Created:       %s\n", buf);
  ctl_fmt_time(buf, sizeof(buf), ctl__ts_us(in->update_time));
  fprintf(f, "Updated:       %s\n", buf);
}

void ctl_print_hypervisors(FILE *f, Ember__V1__Hypervisor *const *v, size_t n)
{
  static const char *const hdr[] = {"TYPE",       "AVAILABLE", "SNAPSHOT", "PAUSE",
                                    "BASE-REUSE", "GRACEFUL",  "DETAIL"};
  ctl_table *t = ctl_table_new(7, hdr);
  for (size_t i = 0; i < n; i++) {
    const Ember__V1__Hypervisor *h = v[i];
    const Ember__V1__HypervisorCapabilities *c = h->capabilities;
#define YN(x) ((x) ? "yes" : "no")
    const char *row[] = {h->type,
                         YN(h->available),
                         c != NULL ? YN(c->snapshot) : "-",
                         c != NULL ? YN(c->pause) : "-",
                         c != NULL ? YN(c->base_reuse) : "-",
                         c != NULL ? YN(c->graceful_shutdown) : "-",
                         h->detail};
#undef YN
    ctl_table_add(t, row);
  }
  ctl_table_print(t, f);
  ctl_table_free(t);
}

void ctl_print_networks(FILE *f, Ember__V1__Network *const *v, size_t n)
{
  static const char *const hdr[] = {"NAME", "SUBNET",   "GATEWAY",   "BRIDGE",
                                    "NAT",  "ISOLATED", "USED/TOTAL"};
  ctl_table *t = ctl_table_new(7, hdr);
  for (size_t i = 0; i < n; i++) {
    const Ember__V1__Network *nw = v[i];
    char used[32];
    snprintf(used, sizeof(used), "%" PRIu32 "/%" PRIu32, nw->addresses_used, nw->addresses_total);
    const char *row[] = {nw->name,
                         nw->subnet,
                         nw->gateway,
                         nw->bridge,
                         nw->nat ? "yes" : "no",
                         nw->isolated ? "yes" : "no",
                         used};
    ctl_table_add(t, row);
  }
  ctl_table_print(t, f);
  ctl_table_free(t);
}

/* ---- saved snapshots ---- */

static const char *ctl__snap_source(const Ember__V1__Snapshot *s)
{
  if (ctl__set(s->source_instance_name))
    return s->source_instance_name;
  return ctl__set(s->source_instance_id) ? s->source_instance_id : "-";
}

void ctl_print_snapshots(FILE *f, Ember__V1__Snapshot *const *v, size_t n)
{
  static const char *const hdr[] = {"ID", "NAME", "SOURCE", "SIZE", "CLONES", "CREATED"};
  ctl_table *t = ctl_table_new(6, hdr);
  for (size_t i = 0; i < n; i++) {
    const Ember__V1__Snapshot *s = v[i];
    char size[32], clones[16], created[64];
    ctl_fmt_bytes(size, sizeof(size), s->size_bytes);
    snprintf(clones, sizeof(clones), "%zu", s->n_clone_ids);
    ctl_fmt_time(created, sizeof(created), ctl__ts_us(s->create_time));
    const char *row[] = {
        s->id, ctl__set(s->name) ? s->name : "-", ctl__snap_source(s), size, clones, created};
    ctl_table_add(t, row);
  }
  ctl_table_print(t, f);
  ctl_table_free(t);
}

void ctl_print_snapshot(FILE *f, const Ember__V1__Snapshot *s)
{
  char buf[64];
  fprintf(f, "Name:          %s\n", ctl__set(s->name) ? s->name : "-");
  fprintf(f, "ID:            %s\n", s->id);
  fprintf(f, "Source:        %s", ctl__snap_source(s));
  if (ctl__set(s->source_instance_name) && ctl__set(s->source_instance_id))
    fprintf(f, " (%s)", s->source_instance_id);
  fputc('\n', f);
  if (s->spec != NULL) {
    ctl_fmt_mib(buf, sizeof(buf), s->spec->memory_mib);
    fprintf(f, "Hypervisor:    %s\n", s->spec->hypervisor);
    fprintf(f, "vCPUs:         %" PRIu32 "\n", s->spec->vcpus);
    fprintf(f, "Memory:        %s\n", buf);
  }
  ctl_fmt_bytes(buf, sizeof(buf), s->size_bytes);
  fprintf(f, "Size:          %s\n", buf);
  for (size_t i = 0; i < s->n_clone_ids; i++)
    fprintf(f, "Clone:         %s\n", s->clone_ids[i]);
  ctl_fmt_time(buf, sizeof(buf), ctl__ts_us(s->create_time));
  fprintf(f, "Created:       %s\n", buf);
}

void ctl_print_event(FILE *f, const Ember__V1__InstanceEvent *ev)
{
  char ts[32], dur[32];
  ctl_fmt_time(ts, sizeof(ts), ctl__ts_us(ev->event_time));
  ctl_fmt_duration(dur, sizeof(dur), ctl__dur_us(ev->duration));
  const Ember__V1__Instance *in = ev->instance;
  fprintf(f, "%s  %-20s %-9s %s -> %s  %s\n", ts, in != NULL ? in->name : "?",
          ctl_operation_name(ev->operation).s, ctl_state_name(ev->old_state).s,
          ctl_state_name(ev->new_state).s, dur);
  if (ev->reason != NULL && ev->reason[0] != '\0')
    fprintf(f, "    reason: %s\n", ev->reason);
  fflush(f);
}

void ctl_print_transition(FILE *f, const char *verb, const Ember__V1__Instance *in)
{
  char dur[32];
  int64_t standby_us = ctl__dur_us(in->last_standby_duration);
  int64_t restore_us = ctl__dur_us(in->last_restore_duration);
  if (strcmp(verb, "standby") == 0 && standby_us > 0) {
    ctl_fmt_duration(dur, sizeof(dur), standby_us);
    fprintf(f, "%s: %s (%s snapshot in %s)\n", in->name, ctl_state_name(in->state).s,
            ctl_snapshot_kind_name(in->last_snapshot_kind), dur);
  } else if (strcmp(verb, "restore") == 0 && restore_us > 0) {
    ctl_fmt_duration(dur, sizeof(dur), restore_us);
    fprintf(f, "%s: %s (restored in %s)\n", in->name, ctl_state_name(in->state).s, dur);
  } else {
    fprintf(f, "%s: %s\n", in->name, ctl_state_name(in->state).s);
  }
}
