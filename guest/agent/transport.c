/* transport.c: the guest's end of the link. A virtio-serial port named
 * EMBER_GA_PORT_NAME (QEMU) is preferred; else a vsock listener on
 * EMBER_GA_VSOCK_PORT (Firecracker, Cloud Hypervisor), one connection at a
 * time, a new one replacing the old. Neither: one line logged, return 0. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/agent.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define GA_VMADDR_CID_ANY 0xFFFFFFFFu
/* IOCTL_VM_SOCKETS_GET_LOCAL_CID (linux/vm_sockets.h): _IO(7, 0xb9). */
#define GA_VSOCK_GET_LOCAL_CID _IO(7, 0xb9)

/* struct sockaddr_vm (linux/vm_sockets.h, not in every libc's headers). */
typedef struct ga_sockaddr_vm {
  sa_family_t svm_family;
  unsigned short svm_reserved1;
  unsigned int svm_port;
  unsigned int svm_cid;
  unsigned char svm_zero[sizeof(struct sockaddr) - sizeof(sa_family_t) - sizeof(unsigned short) -
                         2 * sizeof(unsigned int)];
} ga_sockaddr_vm;

static int ga_read_line(const char *path, char *buf, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t r = read(fd, buf, len - 1);
  close(fd);
  if (r < 0)
    return -1;
  buf[r] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* Opens the named virtio-serial port: -1 when there is none. */
static int ga_open_port(void)
{
  DIR *d = opendir("/sys/class/virtio-ports");
  if (d == NULL)
    return -1;
  struct dirent *e;
  int fd = -1;
  while (fd < 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strlen(e->d_name) > 64)
      continue;
    char path[320], name[128];
    snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
    if (ga_read_line(path, name, sizeof(name)) < 0 || strcmp(name, EMBER_GA_PORT_NAME) != 0)
      continue;
    char dev[300];
    snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
    fd = open(dev, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) { /* no devtmpfs node: make it */
      char numbers[32];
      unsigned maj, min;
      snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/dev", e->d_name);
      if (ga_read_line(path, numbers, sizeof(numbers)) == 0 &&
          sscanf(numbers, "%u:%u", &maj, &min) == 2 &&
          mknod(dev, S_IFCHR | 0600, makedev(maj, min)) == 0)
        fd = open(dev, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    }
    if (fd < 0)
      ga_log("open %s (port %s): %m", dev, EMBER_GA_PORT_NAME);
    else
      ga_log("listening on virtio-serial port %s (%s)", EMBER_GA_PORT_NAME, dev);
  }
  closedir(d);
  return fd;
}

/* False when the kernel has vsock but no guest-to-host transport (no vsock
 * device in this VM): the local CID is then VMADDR_CID_ANY. */
static bool ga_vsock_device(void)
{
  int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno != ENOENT; /* no node: the socket() call decides */
  unsigned int cid = GA_VMADDR_CID_ANY;
  int r = ioctl(fd, GA_VSOCK_GET_LOCAL_CID, &cid);
  close(fd);
  return r < 0 || cid != GA_VMADDR_CID_ANY;
}

static int ga_open_vsock(void)
{
  if (!ga_vsock_device())
    return -1;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  ga_sockaddr_vm a = {
      .svm_family = AF_VSOCK, .svm_port = EMBER_GA_VSOCK_PORT, .svm_cid = GA_VMADDR_CID_ANY};
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
    ga_log("vsock port %u: %m", EMBER_GA_VSOCK_PORT);
    close(fd);
    return -1;
  }
  ga_log("listening on vsock port %u", EMBER_GA_VSOCK_PORT);
  return fd;
}

int ga_guest_main(const ga_options *o)
{
  int fd = -1;
  /* The port's device may still be probing right after the modules load. */
  for (int i = 0; i < 10 && fd < 0; i++) {
    fd = ga_open_port();
    if (fd < 0 && access("/sys/class/virtio-ports", F_OK) < 0) {
      struct timespec ts = {0, 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    } else if (fd < 0) {
      break;
    }
  }
  if (fd >= 0) {
    int r = ga_run(o, -1, fd, true);
    close(fd);
    return r;
  }
  int lfd = ga_open_vsock();
  if (lfd < 0) {
    ga_log("no virtio-serial port %s and no vsock: no guest agent", EMBER_GA_PORT_NAME);
    return 0;
  }
  int r = ga_run(o, lfd, -1, false);
  close(lfd);
  return r;
}
