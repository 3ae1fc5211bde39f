/* main.c: ember's guest init, PID 1 of a VM started from an OCI image.
 * Steps: early mounts + console, kernel modules (kit's modules.dep), the boot
 * config from its virtio disk, the image's root filesystem, switch_root, the
 * container mounts, hostname, loopback, network interfaces and resolv.conf
 * (net.c), user, then the guest agent (guest/agent, forked by run.c before
 * the workload) and the workload (run.c). At the end one
 * line on the console says how it ended:
 *   EMBER-EXIT code=N      the workload exited with N
 *   EMBER-EXIT signal=N    the workload was killed by signal N
 *   EMBER-EXIT init-error  init could not start it (reason on the line before)
 * printed once everything left is killed and the disks are synced; then the VM
 * powers off, so the VMM exits. Init never waits for anything that may not come. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/init/init.h"

#define INIT_NEWROOT "/newroot"
#define INIT_MAX_DISKS 26

/* Kills what the workload left behind, reaps it, syncs and remounts the root
 * read-only, then prints the exit line (so a host that acts on the line finds
 * the disks consistent) and powers off. */
static __attribute__((noreturn)) void init_finish(const char *line)
{
  kill(-1, SIGKILL); /* every process but PID 1 */
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
    ;
  sync();
  mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
  sync();
  ssize_t w = write(STDOUT_FILENO, line, strlen(line));
  (void)w;
  reboot(RB_POWER_OFF);
  reboot(RB_AUTOBOOT); /* VMMs run with no-reboot: exits too */
  for (;;)
    pause();
}

static __attribute__((noreturn)) void init_fail(void) { init_finish("EMBER-EXIT init-error\n"); }

/* Finds the disk holding the boot config (by its magic) and reads it. */
static int init_read_config(char disks[][32], size_t n, init_config *cfg, size_t *cfg_index)
{
  for (size_t i = 0; i < n; i++) {
    int fd = open(disks[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    unsigned char magic[8];
    if (pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
        !init_config_is_bootcfg(magic, sizeof(magic))) {
      close(fd);
      continue;
    }
    char why[256];
    int r = init_config_read_fd(fd, cfg, why, sizeof(why));
    close(fd);
    if (r < 0) {
      init_log("error: boot config on %s: %s", disks[i], why);
      return -1;
    }
    *cfg_index = i;
    return 0;
  }
  init_log("error: no boot config found on any virtio disk (%zu disks)", n);
  return -1;
}

int main(void)
{
  if (getpid() != 1) {
    fprintf(stderr, "ember-init: must run as PID 1 (the kernel's init)\n");
    return 1;
  }
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL); /* signals are read with signalfd only */
  reboot(RB_DISABLE_CAD);             /* Ctrl-Alt-Del: SIGINT to PID 1 */
  init_mount_early();
  init_modules_load("/lib/modules");

  char disks[INIT_MAX_DISKS][32];
  size_t ndisks = init_list_disks(disks, INIT_MAX_DISKS, 3000);
  init_config cfg;
  size_t cfg_index = 0;
  if (init_read_config(disks, ndisks, &cfg, &cfg_index) < 0)
    init_fail();
  const char *root = cfg.root;
  for (size_t i = 0; root == NULL && i < ndisks; i++)
    if (i != cfg_index)
      root = disks[i];
  if (root == NULL) {
    init_log("error: no root disk (only the boot config disk is attached)");
    init_fail();
  }
  if (init_mount_root(root, INIT_NEWROOT) < 0 || init_switch_root(INIT_NEWROOT) < 0)
    init_fail();
  if (init_mount_container() < 0)
    init_log("warning: some container mounts failed (see above)");
  if (sethostname(cfg.hostname, strlen(cfg.hostname)) < 0)
    init_log("sethostname %s: %m", cfg.hostname);
  init_net_loopback();
  init_net_configure(&cfg);

  init_user user;
  char why[256];
  if (init_user_resolve(cfg.user, "/etc/passwd", "/etc/group", &user, why, sizeof(why)) < 0) {
    init_log("error: %s", why);
    init_fail();
  }
  init_exit ex = {0};
  if (init_run(&cfg, &user, &ex) < 0)
    init_fail();
  char line[64];
  snprintf(line, sizeof(line), "EMBER-EXIT %s=%d\n", ex.signaled ? "signal" : "code", ex.code);
  init_config_free(&cfg);
  init_finish(line);
}
