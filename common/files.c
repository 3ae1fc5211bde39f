/* files.c: durable file operations (see files.h). */
#include "files.h"
#include "cleanup.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int cmn_open(const char *path, int flags, mode_t mode)
{
  int fd;
  do
    fd = open(path, flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

static int files_write_all(int fd, const void *data, size_t len)
{
  const char *p = data;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int cmn_fsync_path(const char *path, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_RDONLY | O_NOFOLLOW, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s for fsync", path);
  if (fsync(fd) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "fsync %s", path);
  return 0;
}

int cmn_fsync_parent(const char *path, cmn_error *err)
{
  cleanup_free char *copy = cmn_strdup(path);
  return cmn_fsync_path(dirname(copy), err);
}

static int files_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable,
                         cmn_error *err)
{
  cleanup_free char *tmp = cmn_asprintf("%s.tmp.XXXXXX", path);
  cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create temp file for %s", path);
  if (fchmod(fd, mode) < 0 || files_write_all(fd, data, len) < 0 || (durable && fsync(fd) < 0)) {
    int e = errno;
    unlink(tmp);
    return cmn_err_errno(err, CMN_INTERNAL, e, "write %s", tmp);
  }
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return cmn_err_errno(err, CMN_INTERNAL, e, "rename %s to %s", tmp, path);
  }
  return durable ? cmn_fsync_parent(path, err) : 0;
}

int cmn_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          cmn_error *err)
{
  return files_replace(path, data, len, mode, true, err);
}

int cmn_file_replace(const char *path, const void *data, size_t len, mode_t mode, cmn_error *err)
{
  return files_replace(path, data, len, mode, false, err);
}

int cmn_file_read(const char *path, size_t max, char **out, size_t *len, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_RDONLY, 0);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno, "open %s",
                         path);
  size_t cap = max < 4096 ? max + 1 : 4096, n = 0;
  cleanup_free char *buf = cmn_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (n > max)
        return cmn_err_set(err, CMN_INTERNAL, "%s is larger than %zu bytes", path, max);
      cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      buf = cmn_realloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return cmn_err_errno(err, CMN_INTERNAL, errno, "read %s", path);
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > max)
    return cmn_err_set(err, CMN_INTERNAL, "%s is larger than %zu bytes", path, max);
  buf[n] = '\0';
  if (len != NULL)
    *len = n;
  *out = steal_ptr(buf);
  return 0;
}

int cmn_fsync_tree(const char *dir, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open folder %s", dir);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    cleanup_free char *p = cmn_asprintf("%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(p, &st) < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "stat %s", p);
    if (S_ISDIR(st.st_mode)) {
      if (cmn_fsync_tree(p, err) < 0)
        return -1;
    } else if (S_ISREG(st.st_mode)) {
      if (cmn_fsync_path(p, err) < 0)
        return -1;
    }
  }
  return cmn_fsync_path(dir, err);
}

int cmn_mkdir_p(const char *path, mode_t mode, cmn_error *err)
{
  cleanup_free char *p = cmn_strdup(path);
  size_t n = strlen(p);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, mode) < 0 && errno != EEXIST)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "create folder %s", p);
    p[i] = c;
  }
  if (!cmn_is_dir(path))
    return cmn_err_set(err, CMN_INTERNAL, "%s exists and is not a folder", path);
  return 0;
}

static int files_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
  (void)st;
  (void)f;
  int r = (flag == FTW_DP) ? rmdir(p) : unlink(p);
  return (r < 0 && errno != ENOENT) ? -1 : 0;
}

int cmn_rm_rf(const char *path, cmn_error *err)
{
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "stat %s", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path) < 0 && errno != ENOENT)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "remove %s", path);
    return 0;
  }
  if (nftw(path, files_rm_cb, 16, FTW_DEPTH | FTW_PHYS) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "remove %s", path);
  return 0;
}

int cmn_rename_durable(const char *from, const char *to, cmn_error *err)
{
  if (rename(from, to) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "rename %s to %s", from, to);
  cleanup_free char *a = cmn_strdup(from);
  cleanup_free char *b = cmn_strdup(to);
  const char *pa = dirname(a), *pb = dirname(b);
  if (cmn_fsync_path(pb, err) < 0)
    return -1;
  return strcmp(pa, pb) == 0 ? 0 : cmn_fsync_path(pa, err);
}

bool cmn_path_exists(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0;
}

bool cmn_is_dir(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool cmn_is_regular_file(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *cmn_path_join(const char *root, const char *rel, cmn_error *err)
{
  if (rel == NULL || rel[0] == '\0' || rel[0] == '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "path part '%s' must be relative", rel ? rel : "");
    return NULL;
  }
  const char *s = rel;
  while (*s != '\0') {
    size_t len = strcspn(s, "/");
    if (len == 2 && s[0] == '.' && s[1] == '.') {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "path part '%s' leaves its folder", rel);
      return NULL;
    }
    s += len;
    while (*s == '/')
      s++;
  }
  return cmn_asprintf("%s/%s", root, rel);
}

/* "<fstype> at <mount point>" of the mount holding st_dev, from mountinfo. */
static char *files_fs_desc(dev_t dev)
{
  cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
  char line[4096];
  char *found = NULL;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    unsigned maj = 0, min = 0;
    char mnt[1024];
    if (sscanf(line, "%*d %*d %u:%u %*s %1023s", &maj, &min, mnt) != 3)
      continue;
    if (maj != major(dev) || min != minor(dev))
      continue;
    const char *sep = strstr(line, " - ");
    char type[64] = "?";
    if (sep != NULL && sscanf(sep + 3, "%63s", type) != 1)
      snprintf(type, sizeof type, "?");
    free(found); /* the last match is the topmost mount */
    found = cmn_asprintf("%s at %s", type, mnt);
  }
  return found != NULL ? found : cmn_asprintf("device %u:%u", major(dev), minor(dev));
}

static int files_space_fd(int fd, const char *path, bool describe, cmn_fs_space *out,
                          cmn_error *err)
{
  struct statvfs vs;
  struct stat st;
  if (fstatvfs(fd, &vs) < 0 || fstat(fd, &st) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "statvfs %s", path);
  uint64_t frs = vs.f_frsize ? vs.f_frsize : vs.f_bsize;
  out->total_bytes = (uint64_t)vs.f_blocks * frs;
  out->free_bytes = (uint64_t)(geteuid() == 0 ? vs.f_bfree : vs.f_bavail) * frs;
  out->desc = describe ? files_fs_desc(st.st_dev) : NULL;
  return 0;
}

int cmn_fs_space_of(const char *path, bool describe, cmn_fs_space *out, cmn_error *err)
{
  memset(out, 0, sizeof *out);
  cleanup_close int fd = cmn_open(path, O_RDONLY | O_PATH, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", path);
  /* fstatvfs on an O_PATH descriptor works since Linux 2.6.39. */
  return files_space_fd(fd, path, describe, out, err);
}

void cmn_fs_space_free(cmn_fs_space *s)
{
  free(s->desc);
  s->desc = NULL;
}

#define FILES_MIB(b) ((unsigned long long)(((b) + (1 << 20) - 1) >> 20))

int cmn_fs_need(const char *path, uint64_t need_bytes, const char *what, cmn_error *err)
{
  cmn_fs_space sp;
  if (cmn_fs_space_of(path, true, &sp, err) < 0)
    return -1;
  int rc = 0;
  if (sp.total_bytes > 0 && sp.free_bytes < need_bytes) /* 0: no size known (ramfs) */
    rc = cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                     "%s needs %llu MiB on %s, which has %llu MiB free", what,
                     FILES_MIB(need_bytes), sp.desc, (unsigned long long)(sp.free_bytes >> 20));
  cmn_fs_space_free(&sp);
  return rc;
}

int cmn_file_reserve(int fd, const char *path, uint64_t len, cmn_error *err)
{
  if (len == 0)
    return 0;
  if (len > (uint64_t)INT64_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reserve %s: size too large", path);
  /* tmpfs walks every page even when all are there already (~1 ms per 1 MiB
   * on a busy host): a restore of a reserved RAM file would pay that each
   * time. tmpfs counts data pages only in st_blocks, so a file whose blocks
   * cover len is known to be fully allocated. (ext4 and xfs answer a
   * fallocate of allocated extents in microseconds.) */
  struct statfs sf;
  struct stat st0;
  if (fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC && fstat(fd, &st0) == 0 &&
      (uint64_t)st0.st_size >= len && (uint64_t)st0.st_blocks * 512 >= len)
    return 0;
  int r;
  do
    r = fallocate(fd, 0, 0, (off_t)len);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return 0;
  int e = errno;
  cmn_fs_space sp = {0};
  cmn_error e2 = {0};
  if (files_space_fd(fd, path, true, &sp, &e2) < 0)
    sp.desc = cmn_strdup("its filesystem");
  struct stat st;
  uint64_t have = fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
  uint64_t more = len > have ? len - have : 0;
  if (e == ENOSPC || e == EDQUOT)
    r = cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                    "reserving %llu MiB for %s needs %llu MiB more on %s, which has %llu MiB "
                    "free%s",
                    FILES_MIB(len), path, FILES_MIB(more), sp.desc,
                    (unsigned long long)(sp.free_bytes >> 20),
                    e == EDQUOT ? " (quota exceeded)" : "");
  else if (e == EOPNOTSUPP || e == ENOSYS)
    r = cmn_err_set(err, CMN_FAILED_PRECONDITION,
                    "cannot reserve space for %s: %s does not support fallocate, and a file "
                    "that is not reserved can lose data when the filesystem fills up; use "
                    "ext4, xfs or tmpfs for the data dir",
                    path, sp.desc);
  else
    r = cmn_err_errno(err, CMN_INTERNAL, e, "reserve %llu MiB for %s on %s", FILES_MIB(len), path,
                      sp.desc);
  cmn_fs_space_free(&sp);
  return r;
}
