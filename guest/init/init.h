/* init.h: ember's guest init (PID 1 of a VM started from an image): the steps
 * main.c runs in order, one file per concern. Everything here runs in the
 * guest, statically linked, with no ember host code. Output goes to the
 * console (fds 1 and 2) with the prefix "ember-init: ". */
#ifndef EMBER_GUEST_INIT_H
#define EMBER_GUEST_INIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "guest/init/config.h"

/* log.c: one line on the console, "ember-init: " + message (+ "\n"). */
void init_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* modules.c: loads every module listed in <dir>/modules.dep (depmod format,
 * paths relative to dir), each after its dependencies, with finit_module.
 * Modules already present (built in, loaded) count as loaded; a module the
 * hardware lacks (ENODEV) is skipped. Returns the number of failures (logged);
 * a missing modules.dep means a kernel with everything built in: 0. */
int init_modules_load(const char *dir);

/* mounts.c */
/* devtmpfs on /dev, proc, sysfs; the console on fds 0, 1, 2. */
int init_mount_early(void);
/* Lists the virtio disks ("/dev/vda", ...) present now, sorted; waits up to
 * wait_ms for at least one. Returns the count (at most max) and fills names. */
size_t init_list_disks(char names[][32], size_t max, int wait_ms);
/* Mounts the root filesystem on dev at target: ext4 read-write, or erofs
 * read-only under an overlay with a tmpfs upper layer. 0 or -1 (logged). */
int init_mount_root(const char *dev, const char *target);
/* Frees the initramfs, moves /dev into newroot and makes newroot "/"
 * (switch_root: move mount + chroot). 0 or -1 (logged). */
int init_switch_root(const char *newroot);
/* What a container expects (the runc default subset): /proc, /sys,
 * /sys/fs/cgroup, /dev/pts, /dev/shm, /dev/mqueue, /dev/fd and std links. */
int init_mount_container(void);

/* net.c: brings the loopback interface up. 0 or -1 (logged). */
int init_net_loopback(void);
/* net.c: logs the config's notes (skipped network records); configures each
 * NET record's interface, found by MAC in /sys/class/net (waits up to 2 s in
 * all for the NICs to appear): MTU, address/prefix, up, default route via the
 * gateway (the first record's wins: metric = rank); logs one line each,
 * "net <if> <mac> <addr>/<prefix> via <gw or ->[ mtu <n>]"; writes
 * /etc/resolv.conf from the DNS records when there are any (root writable).
 * Returns the number of interfaces not configured (each logged). */
int init_net_configure(const init_config *c);

/* user.c: an OCI User resolved through the rootfs's /etc/passwd and /etc/group. */
typedef struct init_user {
  uid_t uid;
  gid_t gid;
  gid_t groups[64]; /* supplementary groups (from /etc/group membership) */
  size_t ngroups;
  char home[256]; /* passwd home, or "/" when unknown */
} init_user;
/* spec NULL or "" is root. "uid", "uid:gid", "name", "name:group" (either
 * side numeric or a name). passwd/group are file paths (the rootfs ones).
 * -1 with a reason in errbuf when a name is not found or a number is bad. */
int init_user_resolve(const char *spec, const char *passwd, const char *group, init_user *u,
                      char *errbuf, size_t errlen);

/* run.c: the workload. */
typedef struct init_exit {
  bool signaled;
  int code; /* exit code, or the signal number when signaled */
} init_exit;
/* Forks the guest agent first (guest/agent/agent.h ga_guest_main; the
 * workload's environment is its execs' base environment, the config's user
 * and workdir their defaults; restarted at most once a second if it dies).
 * Starts the workload as PID 1's child (own session, stdin /dev/null, output
 * on the console) with the config's argv/env/workdir and the user's ids;
 * forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it and turns an
 * ACPI power button press into SIGTERM; reaps every child (orphans too) until
 * the workload exits. -1 (logged) when it could not be started. */
int init_run(const init_config *c, const init_user *u, init_exit *ex);

#endif
