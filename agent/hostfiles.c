/* hostfiles.c: the fence around host files named by a request (see
 * hostfiles.h and docs/host-paths.md).
 *
 * Each file is first opened with O_PATH (no side effect on any kind of file,
 * never blocks on a FIFO), checked by what that descriptor is, then reopened
 * through /proc/self/fd/<O_PATH fd> with the real access mode: the reopen
 * reaches the very inode that was checked, never a name. */
#include "agent/hostfiles.h"
#include "common/cleanup.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct agent_host_fence {
  char *data_dir; /* resolved */
  char **roots;   /* resolved */
  size_t n_roots;
  bool allow_block;
  char **own; /* as configured; stat()ed at each check (may appear later) */
  size_t n_own;
};

/* Trees never allowed, and trees refused when no roots are configured. */
static const char *const hostfiles_denied[] = {"/proc", "/sys"};
static const char *const hostfiles_system[] = {"/dev", "/etc", "/run"};

/* True when path is root or below it ("/a" covers "/a" and "/a/b", not "/ab"). */
static bool hostfiles_under(const char *path, const char *root)
{
  size_t n = strlen(root);
  if (n == 1 && root[0] == '/')
    return true;
  return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static void hostfiles_strv_free(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void agent_host_fence_free(agent_host_fence *f)
{
  if (f == NULL)
    return;
  free(f->data_dir);
  hostfiles_strv_free(f->roots, f->n_roots);
  hostfiles_strv_free(f->own, f->n_own);
  free(f);
}

agent_host_fence *agent_host_fence_new(const char *data_dir, const agent_host_policy *policy,
                                       cmn_error *err)
{
  agent_host_fence *f = cmn_calloc(1, sizeof *f);
  f->data_dir = realpath(data_dir, NULL);
  if (f->data_dir == NULL) {
    cmn_err_errno(err, CMN_INVALID_ARGUMENT, errno, "data dir %s", data_dir);
    agent_host_fence_free(f);
    return NULL;
  }
  if (policy == NULL)
    return f;
  f->allow_block = policy->allow_block_devices;
  f->roots = cmn_calloc(policy->n_roots + 1, sizeof *f->roots);
  for (size_t i = 0; i < policy->n_roots; i++) {
    const char *r = policy->roots[i];
    char *res = r != NULL && r[0] == '/' ? realpath(r, NULL) : NULL;
    if (res == NULL) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "host_file_roots: '%s' must be an absolute path that exists (%s)",
                  r != NULL ? r : "", r != NULL && r[0] == '/' ? cmn_strerror(errno) : "relative");
      agent_host_fence_free(f);
      return NULL;
    }
    f->roots[f->n_roots++] = res;
  }
  if (f->allow_block && f->n_roots == 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "allow_block_devices needs host_file_roots naming where the devices are "
                "(e.g. /dev/ember or a single /dev/loop7)");
    agent_host_fence_free(f);
    return NULL;
  }
  f->own = cmn_calloc(policy->n_own_files + 1, sizeof *f->own);
  for (size_t i = 0; i < policy->n_own_files; i++)
    if (policy->own_files[i] != NULL && policy->own_files[i][0] != '\0')
      f->own[f->n_own++] = cmn_strdup(policy->own_files[i]);
  return f;
}

/* " is", or " resolves to R, which is" when the request named the file
 * otherwise (a link, "..", a bind of /proc/self/fd). */
static char *hostfiles_via(const char *path, const char *resolved)
{
  if (strcmp(path, resolved) == 0)
    return cmn_strdup(" is");
  return cmn_asprintf(" resolves to %s, which is", resolved);
}

/* The fence proper: st and resolved describe what was opened. */
static int hostfiles_fence(const agent_host_fence *f, const char *field, const char *path,
                           const char *resolved, const struct stat *st, int code, cmn_error *err)
{
  cleanup_free char *via = hostfiles_via(path, resolved);
  /* A file without a name (deleted, memfd, anonymous) cannot be judged by
   * where it lives; a path such as /proc/self/fd/N can reach one. */
  if (resolved[0] != '/' || st->st_nlink == 0)
    return cmn_err_set(err, code,
                       "%s %s%s a file without a name on the host (deleted or "
                       "anonymous): refused",
                       field, path, via);
  if (hostfiles_under(resolved, f->data_dir))
    return cmn_err_set(err, code, "%s %s%s inside emberd's data dir %s: refused", field, path, via,
                       f->data_dir);
  for (size_t i = 0; i < f->n_own; i++) {
    struct stat os;
    cleanup_free char *own = realpath(f->own[i], NULL);
    bool same = own != NULL && strcmp(own, resolved) == 0;
    if (!same && stat(f->own[i], &os) == 0)
      same = os.st_dev == st->st_dev && os.st_ino == st->st_ino;
    if (same)
      return cmn_err_set(err, code, "%s %s%s emberd's own file %s: refused", field, path, via,
                         f->own[i]);
  }
  for (size_t i = 0; i < sizeof hostfiles_denied / sizeof hostfiles_denied[0]; i++)
    if (hostfiles_under(resolved, hostfiles_denied[i]))
      return cmn_err_set(err, code, "%s %s%s under %s: refused", field, path, via,
                         hostfiles_denied[i]);
  if (S_ISBLK(st->st_mode)) {
    if (!f->allow_block)
      return cmn_err_set(err, code,
                         "%s %s%s a block device, and this emberd does not allow block "
                         "devices (allow_block_devices)",
                         field, path, via);
  } else if (!S_ISREG(st->st_mode)) {
    return cmn_err_set(err, code, "%s %s%s not a regular file", field, path, via);
  }
  if (f->n_roots > 0) {
    for (size_t i = 0; i < f->n_roots; i++)
      if (hostfiles_under(resolved, f->roots[i]))
        return 0;
    return cmn_err_set(err, code,
                       "%s %s%s outside the allowed roots of this emberd (host_file_roots: "
                       "%s%s)",
                       field, path, via, f->roots[0], f->n_roots > 1 ? ", ..." : "");
  }
  for (size_t i = 0; i < sizeof hostfiles_system / sizeof hostfiles_system[0]; i++)
    if (hostfiles_under(resolved, hostfiles_system[i]))
      return cmn_err_set(err, code,
                         "%s %s%s under %s, a system tree refused unless host_file_roots "
                         "allows it",
                         field, path, via, hostfiles_system[i]);
  return 0;
}

/* Opens one file for the VMM: O_PATH, check, reopen. Returns the fd or -1. */
static int hostfiles_open_one(const agent_host_fence *f, const char *field, const char *path,
                              bool writable, int code, cmn_error *err)
{
  if (path == NULL || path[0] != '/')
    return cmn_err_set(err, code, "%s must be an absolute path", field);
  cleanup_close int pfd = open(path, O_PATH | O_CLOEXEC);
  if (pfd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return cmn_err_set(err, code, "%s %s does not exist", field, path);
    return cmn_err_errno(err, code, errno, "%s %s cannot be opened", field, path);
  }
  struct stat st;
  if (fstat(pfd, &st) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "%s %s: fstat", field, path);
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
  char resolved[PATH_MAX];
  ssize_t n = readlink(self, resolved, sizeof resolved - 1);
  if (n < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "%s %s: resolve %s", field, path, self);
  resolved[n] = '\0';
  if (hostfiles_fence(f, field, path, resolved, &st, code, err) < 0)
    return -1;
  /* Same inode, real access mode. A block device is claimed exclusively: the
   * claim holds while any copy of this description is open (the VMM's), so a
   * mounted device, or one another guest uses, is refused. */
  int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY;
  if (S_ISBLK(st.st_mode))
    flags |= O_EXCL;
  int fd = open(self, flags);
  if (fd < 0) {
    if (errno == EBUSY)
      return cmn_err_set(err, code, "%s %s: block device %s is in use (mounted or claimed)", field,
                         path, resolved);
    return cmn_err_errno(err, code, errno, "%s %s cannot be opened %s", field, path,
                         writable ? "for reading and writing" : "for reading");
  }
  struct stat st2;
  if (fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
    close(fd);
    return cmn_err_set(err, CMN_INTERNAL, "%s %s changed while it was opened", field, path);
  }
  return fd;
}

void agent_host_files_close(agent_host_files *h)
{
  if (h == NULL)
    return;
  for (size_t i = 0; i < h->n_fds; i++)
    if (h->fds[i].fd >= 0)
      close(h->fds[i].fd);
  free(h->fds);
  vmm_spec_free(&h->spec);
  memset(h, 0, sizeof *h);
}

static bool hostfiles_set(const char *s) { return s != NULL && s[0] != '\0'; }

/* Opens one file into h and points *dst (a path of h->spec) at it. */
static int hostfiles_add(const agent_host_fence *f, agent_host_files *h, const char *field,
                         const char *path, bool writable, int child_fd, char **dst, int code,
                         cmn_error *err)
{
  int fd = hostfiles_open_one(f, field, path, writable, code, err);
  if (fd < 0)
    return -1;
  h->fds[h->n_fds++] = (cmn_fd_pass){.fd = fd, .child_fd = child_fd};
  free(*dst);
  *dst = cmn_asprintf(VMM_HOST_FD_PREFIX "%d", child_fd);
  return 0;
}

/* Opens one emberd-made disk: exactly dir/name, a regular file, no link
 * followed (neither the name nor a swapped folder). */
static int hostfiles_open_made(const char *dir, const agent_host_made *d, int code, cmn_error *err)
{
  cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return cmn_err_errno(err, code, errno, "instance folder %s", dir);
  int fd =
      openat(dfd, d->name, (d->read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return cmn_err_errno(err, code, errno, "%s/%s (made by emberd)", dir, d->name);
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return cmn_err_set(err, code, "%s/%s (made by emberd) is not a regular file", dir, d->name);
  }
  return fd;
}

int agent_host_files_open(const agent_host_fence *f, const vmm_spec *spec, int code,
                          agent_host_files *out, cmn_error *err)
{
  return agent_host_files_open_made(f, spec, NULL, NULL, 0, code, out, err);
}

int agent_host_files_open_made(const agent_host_fence *f, const vmm_spec *spec,
                               const char *made_dir, const agent_host_made *made, size_t n_made,
                               int code, agent_host_files *out, cmn_error *err)
{
  memset(out, 0, sizeof *out);
  vmm_spec_copy(&out->spec, spec);
  out->fds = cmn_calloc(spec->n_disks + n_made + 2, sizeof *out->fds);
  if (n_made > 0) {
    /* The made disks go first: rebuild the copy's disk list. */
    vmm_disk *disks = cmn_calloc(spec->n_disks + n_made, sizeof *disks);
    for (size_t i = 0; i < n_made; i++) {
      disks[i].path = cmn_asprintf("%s/%s", made_dir, made[i].name);
      disks[i].read_only = made[i].read_only;
      disks[i].overlay = made[i].overlay;
    }
    for (size_t i = 0; i < out->spec.n_disks; i++)
      disks[n_made + i] = out->spec.disks[i];
    free(out->spec.disks);
    out->spec.disks = disks;
    out->spec.n_disks += n_made;
  }
  if (hostfiles_add(f, out, "spec.kernel_path", spec->kernel, false, AGENT_HOSTFD_KERNEL,
                    &out->spec.kernel, code, err) < 0)
    goto fail;
  if (hostfiles_set(spec->initrd) &&
      hostfiles_add(f, out, "spec.initrd_path", spec->initrd, false, AGENT_HOSTFD_INITRD,
                    &out->spec.initrd, code, err) < 0)
    goto fail;
  for (size_t i = 0; i < n_made; i++) {
    int fd = hostfiles_open_made(made_dir, &made[i], code, err);
    if (fd < 0)
      goto fail;
    out->fds[out->n_fds++] = (cmn_fd_pass){.fd = fd, .child_fd = AGENT_HOSTFD_DISK0 + (int)i};
    free(out->spec.disks[i].path);
    out->spec.disks[i].path = cmn_asprintf(VMM_HOST_FD_PREFIX "%d", AGENT_HOSTFD_DISK0 + (int)i);
  }
  for (size_t i = 0; i < spec->n_disks; i++) {
    char field[48];
    snprintf(field, sizeof field, "spec.disks[%zu].path", i);
    size_t k = n_made + i;
    if (hostfiles_add(f, out, field, spec->disks[i].path, !spec->disks[i].read_only,
                      AGENT_HOSTFD_DISK0 + (int)k, &out->spec.disks[k].path, code, err) < 0)
      goto fail;
  }
  return 0;
fail:
  agent_host_files_close(out);
  return -1;
}

int agent_host_files_check(const agent_host_fence *f, const vmm_spec *spec, int code,
                           cmn_error *err)
{
  agent_host_files h;
  if (agent_host_files_open(f, spec, code, &h, err) < 0)
    return -1;
  agent_host_files_close(&h);
  return 0;
}
