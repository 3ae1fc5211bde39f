/* cgroup.h: placing a process in a named cgroup of every mounted hierarchy.
 *
 * Used to keep VMMs out of the agent's own cgroup: a container runtime that
 * stops emberd's container kills every process in that cgroup (runc kill
 * --all), and the guests must survive to be re-adopted by the next emberd. */
#ifndef EMBER_COMMON_CGROUP_H
#define EMBER_COMMON_CGROUP_H

#include "common/error.h"

#include <sys/types.h>

/* Moves pid (all its threads) into <root>/<name> of every cgroup hierarchy
 * mounted under root (normally /sys/fs/cgroup: one cgroup2 mount, or cgroup v1
 * controllers plus a "unified" v2 one), creating the cgroup where missing
 * (a new v1 cpuset cgroup gets its parent's cpus and mems). name is a relative
 * cgroup path without "..". */
int cmn_cgroup_place(const char *root, const char *name, pid_t pid, cmn_error *err);

#endif
