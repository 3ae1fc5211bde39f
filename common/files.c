/* files.c: durable file operations (see files.h). */
#define _GNU_SOURCE
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
#include <sys/stat.h>
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

static int files_replace(const char *path, const void *data, size_t len, mode_t mode,
                         bool durable, cmn_error *err)
{
  cleanup_free char *tmp = cmn_asprintf("%s.tmp.XXXXXX", path);
  cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create temp file for %s", path);
  if (fchmod(fd, mode) < 0 || files_write_all(fd, data, len) < 0 ||
      (durable && fsync(fd) < 0)) {
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

int cmn_file_replace(const char *path, const void *data, size_t len, mode_t mode,
                     cmn_error *err)
{
  return files_replace(path, data, len, mode, false, err);
}

int cmn_file_read(const char *path, size_t max, char **out, size_t *len, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_RDONLY, 0);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno,
                         "open %s", path);
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
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "path part '%s' must be relative",
                rel ? rel : "");
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
