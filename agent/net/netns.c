/* netns.c: named network namespaces and threads inside them (see netns.h). */
#include "agent/net/netns.h"
#include "agent/net/net.h"
#include "common/cleanup.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static int name_ok(const char *dir, const char *name, cmn_error *err)
{
  if (dir == NULL || dir[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "namespace folder \"%s\": must be absolute",
                       dir != NULL ? dir : "");
  if (name == NULL || name[0] == '\0' || strlen(name) >= NET_NETNS_NAME_MAX ||
      strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "namespace name \"%s\": must be 1..%d characters without '/'",
                       name != NULL ? name : "", NET_NETNS_NAME_MAX - 1);
  return 0;
}

static int mkdir_p(const char *dir, cmn_error *err)
{
  cleanup_free char *p = cmn_strdup(dir);
  for (char *s = p + 1;; s++) {
    bool end = *s == '\0';
    if (*s == '/' || end) {
      *s = '\0';
      if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return cmn_err_errno(err, CMN_INTERNAL, errno, "creating namespace folder %s", p);
      if (end)
        break;
      *s = '/';
    }
  }
  return 0;
}

/* The folder as a shared mount point, as iproute2's netns_add does. */
static int dir_make_shared(const char *dir, cmn_error *err)
{
  bool bound = false;
  while (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0) {
    if (errno != EINVAL || bound)
      return cmn_err_errno(err, errno == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, errno,
                           "making namespace folder %s a shared mount", dir);
    /* Not a mount point yet: bind it onto itself. */
    if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
      return cmn_err_errno(err, errno == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, errno,
                           "bind-mounting namespace folder %s onto itself", dir);
    bound = true;
  }
  return 0;
}

static bool fd_is_netns(int fd)
{
  struct statfs sf;
  return fstatfs(fd, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

int net_netns_exists(const char *dir, const char *name, cmn_error *err)
{
  if (name_ok(dir, name, err) < 0)
    return -1;
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, name);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "opening namespace %s", path);
  }
  return fd_is_netns(fd) ? 1 : 0;
}

typedef struct mk_arg {
  const char *path;
  int errnum;
  const char *step;
} mk_arg;

static void *mk_thread(void *p)
{
  mk_arg *a = p;
  if (unshare(CLONE_NEWNET) < 0) {
    a->errnum = errno;
    a->step = "unshare(CLONE_NEWNET)";
    return NULL;
  }
  if (mount("/proc/thread-self/ns/net", a->path, "none", MS_BIND, NULL) < 0) {
    a->errnum = errno;
    a->step = "bind-mounting the new namespace";
  }
  return NULL; /* the thread's namespace dies with it unless the mount holds it */
}

int net_netns_create(const char *dir, const char *name, cmn_error *err)
{
  if (name_ok(dir, name, err) < 0)
    return -1;
  int ex = net_netns_exists(dir, name, err);
  if (ex != 0)
    return ex < 0 ? -1 : 0;
  if (mkdir_p(dir, err) < 0 || dir_make_shared(dir, err) < 0)
    return -1;
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, name);
  /* A leftover plain file (or a stale, detached mount) is reused. */
  umount2(path, MNT_DETACH);
  int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "creating namespace file %s", path);
  close(fd);
  mk_arg a = {.path = path};
  pthread_t t;
  int rc = pthread_create(&t, NULL, mk_thread, &a);
  if (rc != 0) {
    unlink(path);
    return cmn_err_errno(err, CMN_RESOURCE_EXHAUSTED, rc, "creating namespace %s: a thread", path);
  }
  pthread_join(t, NULL);
  if (a.errnum != 0) {
    unlink(path);
    return cmn_err_errno(err, a.errnum == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, a.errnum,
                         "creating namespace %s: %s", path, a.step);
  }
  return 1;
}

int net_netns_open(const char *dir, const char *name, cmn_error *err)
{
  if (name_ok(dir, name, err) < 0)
    return -1;
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, name);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno,
                         "opening namespace %s", path);
  if (!fd_is_netns(fd))
    return cmn_err_set(err, CMN_NOT_FOUND, "namespace %s: the file is not a network namespace",
                       path);
  return steal_fd(fd);
}

int net_netns_delete(const char *dir, const char *name, cmn_error *err)
{
  if (name_ok(dir, name, err) < 0)
    return -1;
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, name);
  /* EINVAL: not a mount point (a leftover file); ENOENT: missing. */
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return cmn_err_errno(err, errno == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, errno,
                         "unmounting namespace %s", path);
  if (unlink(path) < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "removing namespace file %s", path);
  }
  return 1;
}

int net_netns_list(const char *dir, const char *prefix, char ***names, size_t *n, cmn_error *err)
{
  *names = NULL;
  *n = 0;
  cleanup_closedir DIR *d = opendir(dir);
  if (d == NULL) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "listing namespace folder %s", dir);
  }
  size_t pl = prefix != NULL ? strlen(prefix) : 0, cap = 0, k = 0;
  char **v = NULL;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || (pl > 0 && strncmp(de->d_name, prefix, pl) != 0))
      continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 8;
      v = cmn_realloc(v, cap * sizeof(*v));
    }
    v[k++] = cmn_strdup(de->d_name);
  }
  *names = v;
  *n = k;
  return 0;
}

typedef struct in_arg {
  int fd;
  net_netns_fn fn;
  void *arg;
  int rc;
  cmn_error err;
} in_arg;

static void *in_thread(void *p)
{
  in_arg *a = p;
  if (setns(a->fd, CLONE_NEWNET) < 0) {
    a->rc = cmn_err_errno(&a->err, errno == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, errno,
                          "entering a network namespace (setns)");
    return NULL;
  }
  a->rc = a->fn(a->arg, &a->err);
  return NULL; /* the thread and its namespace membership end here */
}

int net_in_netns_fd(int ns_fd, net_netns_fn fn, void *arg, cmn_error *err)
{
  in_arg *a = cmn_calloc(1, sizeof(*a));
  a->fd = ns_fd;
  a->fn = fn;
  a->arg = arg;
  pthread_t t;
  int rc = pthread_create(&t, NULL, in_thread, a);
  if (rc != 0) {
    free(a);
    return cmn_err_errno(err, CMN_RESOURCE_EXHAUSTED, rc, "starting a thread for a namespace");
  }
  pthread_join(t, NULL);
  rc = a->rc;
  if (rc < 0 && err != NULL)
    *err = a->err;
  free(a);
  return rc;
}

int net_in_netns(const char *ns_path, net_netns_fn fn, void *arg, cmn_error *err)
{
  cleanup_close int fd = open(ns_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno,
                         "opening namespace %s", ns_path);
  if (!fd_is_netns(fd))
    return cmn_err_set(err, CMN_NOT_FOUND, "%s is not a network namespace", ns_path);
  return net_in_netns_fd(fd, fn, arg, err);
}

int net_sysctl_ip_forward(cmn_error *err)
{
  static const char path[] = "/proc/sys/net/ipv4/ip_forward";
  cleanup_close int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM)) {
    /* Read-only /proc/sys (systemd's ProtectKernelTunables): fine when it is on. */
    cleanup_close int ro = open(path, O_RDONLY | O_CLOEXEC);
    char on[4] = {0};
    if (ro >= 0 && read(ro, on, sizeof(on) - 1) > 0 && on[0] == '1')
      return 0;
    return cmn_err_errno(err, CMN_PERMISSION_DENIED, errno,
                         "IP forwarding is off and %s is not writable here (turn "
                         "net.ipv4.ip_forward on, or let emberd write it)",
                         path);
  }
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "opening %s", path);
  char cur[4] = {0};
  if (read(fd, cur, sizeof(cur) - 1) > 0 && cur[0] == '1')
    return 0;
  if (pwrite(fd, "1\n", 2, 0) != 2)
    return cmn_err_errno(err,
                         errno == EACCES || errno == EROFS || errno == EPERM ? CMN_PERMISSION_DENIED
                                                                             : CMN_INTERNAL,
                         errno, "enabling IP forwarding (%s)", path);
  return 1;
}
