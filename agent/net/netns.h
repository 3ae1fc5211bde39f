/* netns.h: named network namespaces, files in a folder (/run/netns by
 * default, the iproute2 convention, so `ip netns exec NAME` works), and
 * running code inside one.
 *
 * Namespaces are made and entered by short-lived threads: the calling
 * process's other threads never change namespace. */
#ifndef EMBER_AGENT_NET_NETNS_H
#define EMBER_AGENT_NET_NETNS_H

#include <stddef.h>

#include "common/error.h"

#define NET_NETNS_DIR_DEFAULT "/run/netns"

/* The namespace dir/name: 1 when created, 0 when it already is one. Makes the
 * folder, and (as iproute2 does) makes it a shared mount point so namespace
 * mounts propagate to other mount namespaces. A leftover plain file (a crash
 * between the two steps) is turned into a namespace. */
int net_netns_create(const char *dir, const char *name, cmn_error *err);
/* 1 when dir/name is a mounted network namespace, 0 when not, -1 on error. */
int net_netns_exists(const char *dir, const char *name, cmn_error *err);
/* An O_RDONLY | O_CLOEXEC fd of the namespace (NOT_FOUND when missing). */
int net_netns_open(const char *dir, const char *name, cmn_error *err);
/* Unmounts (MNT_DETACH) and unlinks dir/name: 1 when it existed, 0 when not. */
int net_netns_delete(const char *dir, const char *name, cmn_error *err);
/* Names in dir starting with prefix; a missing folder is an empty list. */
int net_netns_list(const char *dir, const char *prefix, char ***names, size_t *n, cmn_error *err);

typedef int (*net_netns_fn)(void *arg, cmn_error *err);
/* Runs fn in a new thread that first joins the namespace at ns_path
 * (setns CLONE_NEWNET), so the sockets fn opens live there; returns fn's
 * result with its error. */
int net_in_netns(const char *ns_path, net_netns_fn fn, void *arg, cmn_error *err);
/* The same with a namespace fd. */
int net_in_netns_fd(int ns_fd, net_netns_fn fn, void *arg, cmn_error *err);

/* Writes 1 to net.ipv4.ip_forward of the calling thread's namespace
 * (0 when it already was 1, 1 when changed). */
int net_sysctl_ip_forward(cmn_error *err);

#endif
