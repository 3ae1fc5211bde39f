/* output.h: emberctl's human output: tables, instance details, event lines,
 * and the short forms of states, durations, sizes and times they use. JSON
 * output lives in pbjson.h. */
#ifndef EMBER_CTL_OUTPUT_H
#define EMBER_CTL_OUTPUT_H

#include "ember/v1/instance.pb-c.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A short name of an enum value, held by value: ctl_state_name(s).s is valid
 * to the end of the full expression that calls it (C11 temporary lifetime). */
typedef struct ctl_name {
  char s[32];
} ctl_name;

/* "running" for INSTANCE_STATE_RUNNING (from the enum descriptor); "-" for
 * UNSPECIFIED; "?" for an unknown value. */
ctl_name ctl_state_name(int state);
/* Parses "running" or "INSTANCE_STATE_RUNNING" (any case); -1 if unknown. */
int ctl_state_parse(const char *s);
/* "standby" for OPERATION_STANDBY (from the enum descriptor), "-" for
 * OPERATION_UNSPECIFIED, "?" for an unknown value. */
ctl_name ctl_operation_name(int op);
/* "full" / "diff" / "-". */
const char *ctl_snapshot_kind_name(int kind);
/* Writes "850us", "12.3ms", "1.50s", "2m05s" into buf; "-" for 0. */
void ctl_fmt_duration(char *buf, size_t n, int64_t us);
/* "512 MiB", "2 GiB". */
void ctl_fmt_mib(char *buf, size_t n, uint64_t mib);
/* Local time "2024-05-01 12:34:56"; "-" for 0. */
void ctl_fmt_time(char *buf, size_t n, int64_t us_since_epoch);

/* A left-aligned text table: add a header and rows, then print. Cells are
 * copied. */
typedef struct ctl_table ctl_table;
ctl_table *ctl_table_new(size_t ncols, const char *const *header);
void ctl_table_add(ctl_table *t, const char *const *cells);
void ctl_table_print(const ctl_table *t, FILE *f);
void ctl_table_free(ctl_table *t);

void ctl_print_instances(FILE *f, Ember__V1__Instance *const *v, size_t n);
void ctl_print_instance(FILE *f, const Ember__V1__Instance *inst);
void ctl_print_hypervisors(FILE *f, Ember__V1__Hypervisor *const *v, size_t n);
/* NAME SUBNET GATEWAY BRIDGE NAT ISOLATED USED/TOTAL. */
void ctl_print_networks(FILE *f, Ember__V1__Network *const *v, size_t n);
/* A port forward as --publish takes it: "8080:80/tcp",
 * "127.0.0.1:5353:53/udp" ("?" for an unknown protocol). */
void ctl_fmt_forward(char *buf, size_t n, const Ember__V1__PortForward *pf);
void ctl_print_event(FILE *f, const Ember__V1__InstanceEvent *ev);
/* "512 B", "1.5 KiB", "20.0 MiB", "2.00 GiB". */
void ctl_fmt_bytes(char *buf, size_t n, uint64_t bytes);
/* ID NAME SOURCE SIZE CLONES CREATED: NAME "-" for the unnamed snapshot of
 * a fork, SOURCE the source's name (its id when the name is unknown). */
void ctl_print_snapshots(FILE *f, Ember__V1__Snapshot *const *v, size_t n);
/* The detail view of one snapshot (emberctl snapshot). */
void ctl_print_snapshot(FILE *f, const Ember__V1__Snapshot *s);
/* One line after a lifecycle call: "web-1: running (restore 80ms)". */
void ctl_print_transition(FILE *f, const char *verb, const Ember__V1__Instance *inst);

#endif
