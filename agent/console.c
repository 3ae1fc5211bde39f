/* console.c: console file reads by absolute offset and rotation in place by
 * hole punching (console.h has the design). */
#include "agent/console.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int agent_console_open(const char *path, cmn_error *err)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT)
      return cmn_err_set(err, CMN_NOT_FOUND, "the console file does not exist yet");
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cannot open the console file");
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "the console file is not a regular file");
  }
  return fd;
}

/* The first data offset at or after 0, or end when the file is all hole. */
static int console__start(int fd, int64_t end, int64_t *start, cmn_error *err)
{
  off_t d = lseek(fd, 0, SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) {
      *start = end;
      return 0;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP) {
      *start = 0; /* no SEEK_DATA: nothing was punched either */
      return 0;
    }
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cannot find the console's retained start");
  }
  *start = (int64_t)d < end ? (int64_t)d : end;
  return 0;
}

int agent_console_window(int fd, int64_t *start, int64_t *end, cmn_error *err)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cannot stat the console file");
  *end = (int64_t)st.st_size;
  return console__start(fd, *end, start, err);
}

ssize_t agent_console_read(int fd, int64_t off, void *buf, size_t cap, int64_t *data_off,
                           int64_t *skipped, cmn_error *err)
{
  *data_off = off;
  *skipped = 0;
  int64_t start, end;
  if (agent_console_window(fd, &start, &end, err) < 0)
    return -1;
  int64_t pos = off < start ? start : off;
  if (pos >= end || cap == 0) {
    *data_off = pos;
    *skipped = pos - off;
    return 0;
  }
  size_t want = (size_t)(end - pos) < cap ? (size_t)(end - pos) : cap;
  ssize_t n;
  do
    n = pread(fd, buf, want, (off_t)pos);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cannot read the console file");
  /* A rotation may have punched part of what was just read (it reads as
   * zeros): the window seen after the read decides what is kept. The punch
   * holds the inode lock that SEEK_DATA takes, so a punch that overlapped
   * the read is complete by now and visible. */
  int64_t start2, end2;
  if (agent_console_window(fd, &start2, &end2, err) < 0)
    return -1;
  if (start2 > pos) {
    int64_t drop = start2 - pos;
    if (drop >= n) {
      *data_off = start2;
      *skipped = start2 - off;
      return 0;
    }
    memmove(buf, (char *)buf + drop, (size_t)(n - drop));
    n -= drop;
    pos = start2;
  }
  *data_off = pos;
  *skipped = pos - off > 0 ? pos - off : 0;
  return n;
}

int agent_console_rotate(const char *path, int64_t max_bytes, int64_t *start_out, cmn_error *err)
{
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cannot open the console file");
  }
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    rc = cmn_err_errno(err, CMN_INTERNAL, errno, "cannot stat the console file");
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = cmn_err_set(err, CMN_FAILED_PRECONDITION, "the console file is not a regular file");
    goto out;
  }
  if ((int64_t)st.st_blocks * 512 > max_bytes) {
    int64_t align = st.st_blksize > 4096 ? (int64_t)st.st_blksize : 4096;
    int64_t cut = (int64_t)st.st_size - max_bytes / 2;
    cut -= cut % align;
    if (cut > 0) {
      if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)cut) < 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS)
          rc = cmn_err_set(err, CMN_UNIMPLEMENTED,
                           "the console's filesystem cannot punch holes: it is not rotated");
        else
          rc = cmn_err_errno(err, CMN_INTERNAL, errno, "cannot rotate the console file");
        goto out;
      }
      rc = 1;
    }
  }
  int64_t end;
  if (start_out != NULL && agent_console_window(fd, start_out, &end, err) < 0)
    rc = -1;
out:
  close(fd);
  return rc;
}
