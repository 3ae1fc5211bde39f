/* clone.c: private copies of files (see clone.h). */
#include "common/clone.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cmn_clone_method_name(cmn_clone_method m)
{
  switch (m) {
  case CMN_CLONE_REFLINK:
    return "reflink";
  case CMN_CLONE_SPARSE:
    return "sparse";
  default:
    return "none";
  }
}

static int copy_range(int in, int out, off_t off, off_t len, uint64_t *copied, cmn_error *err)
{
  bool use_cfr = true;
  while (len > 0) {
    if (use_cfr) {
      loff_t a = off, b = off;
      ssize_t n = copy_file_range(in, &a, out, &b, (size_t)(len > (1 << 30) ? (1 << 30) : len), 0);
      if (n > 0) {
        off += n;
        len -= n;
        *copied += (uint64_t)n;
        continue;
      }
      if (n == 0)
        return cmn_err_set(err, CMN_INTERNAL, "copy: source shrank");
      if (errno == EINTR)
        continue;
      if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
        return cmn_err_errno(err, errno == ENOSPC ? CMN_RESOURCE_EXHAUSTED : CMN_INTERNAL, errno,
                             "copy");
      use_cfr = false;
    }
    char chunk[1 << 16];
    size_t want = len < (off_t)sizeof(chunk) ? (size_t)len : sizeof(chunk);
    ssize_t r = pread(in, chunk, want, off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return cmn_err_errno(err, CMN_INTERNAL, r < 0 ? errno : EIO, "read");
    for (ssize_t done = 0; done < r;) {
      ssize_t w = pwrite(out, chunk + done, (size_t)(r - done), off + done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return cmn_err_errno(err, errno == ENOSPC ? CMN_RESOURCE_EXHAUSTED : CMN_INTERNAL, errno,
                             "write");
      done += w;
    }
    off += r;
    len -= r;
    *copied += (uint64_t)r;
  }
  return 0;
}

static int sparse_copy(int in, int out, off_t size, uint64_t *copied, cmn_error *err)
{
  if (ftruncate(out, size) < 0)
    return cmn_err_errno(err, CMN_RESOURCE_EXHAUSTED, errno, "size the copy");
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO)
        break;                                      /* only a hole remains */
      if (errno == EINVAL || errno == EOPNOTSUPP) { /* no SEEK_DATA: copy it all */
        data = pos;
      } else {
        return cmn_err_errno(err, CMN_INTERNAL, errno, "seek data");
      }
    }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0)
      hole = size;
    if (copy_range(in, out, data, hole - data, copied, err) < 0)
      return -1;
    pos = hole;
  }
  return 0;
}

static int clone_file(const char *src, const char *dest, bool reflink_only,
                      cmn_clone_method *method, uint64_t *copied, cmn_error *err);

int cmn_file_clone(const char *src, const char *dest, cmn_clone_method *method, uint64_t *copied,
                   cmn_error *err)
{
  return clone_file(src, dest, false, method, copied, err);
}

int cmn_file_reflink(const char *src, const char *dest, cmn_error *err)
{
  return clone_file(src, dest, true, NULL, NULL, err);
}

static int clone_file(const char *src, const char *dest, bool reflink_only,
                      cmn_clone_method *method, uint64_t *copied, cmn_error *err)
{
  uint64_t ignored = 0;
  if (copied == NULL)
    copied = &ignored;
  *copied = 0;
  if (method)
    *method = CMN_CLONE_NONE;
  cleanup_close int in = cmn_open(src, O_RDONLY, 0);
  if (in < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno, "open %s",
                         src);
  struct stat st;
  if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is not a regular file", src);
  if (cmn_path_exists(dest))
    return cmn_err_set(err, CMN_ALREADY_EXISTS, "%s exists", dest);
  cleanup_free char *tmp = cmn_asprintf("%s.tmp-XXXXXX", dest);
  int out = mkostemp(tmp, O_CLOEXEC);
  if (out < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create a file next to %s", dest);
  cmn_clone_method m = CMN_CLONE_REFLINK;
  int rc = 0;
  if (ioctl(out, FICLONE, in) < 0) {
    if (reflink_only) {
      int e = errno;
      close(out);
      unlink(tmp);
      return cmn_err_errno(err,
                           e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY
                               ? CMN_UNIMPLEMENTED
                               : CMN_INTERNAL,
                           e, "reflink %s", src);
    }
    m = CMN_CLONE_SPARSE;
    rc = sparse_copy(in, out, st.st_size, copied, err);
  }
  if (rc == 0 && fsync(out) < 0)
    rc = cmn_err_errno(err, CMN_INTERNAL, errno, "fsync %s", tmp);
  close(out);
  if (rc == 0 && link(tmp, dest) < 0) /* link, not rename: never replaces a dest */
    rc = cmn_err_errno(err, errno == EEXIST ? CMN_ALREADY_EXISTS : CMN_INTERNAL, errno, "create %s",
                       dest);
  unlink(tmp);
  if (rc == 0 && cmn_fsync_parent(dest, err) < 0)
    rc = -1;
  if (rc < 0)
    return cmn_err_prefix(err, "copy %s", src);
  if (method)
    *method = m;
  return 0;
}
