/* fc_merge.c: merges a sparse diff memory file onto a full image (see
 * fc_merge.h). */
#include "fc_merge.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MERGE_CHUNK (1u << 20)

/* Copies [off, end) from dfd to bfd at the same offsets. */
static int merge_extent(int dfd, int bfd, off_t off, off_t end, char *buf, const char *diff,
                        const char *base, cmn_error *err)
{
  while (off < end) {
    size_t want = (size_t)(end - off) < MERGE_CHUNK ? (size_t)(end - off) : MERGE_CHUNK;
    ssize_t n = pread(dfd, buf, want, off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "reading %s at %lld", diff, (long long)off);
    if (n == 0)
      return cmn_err_set(err, CMN_INTERNAL, "%s ended early at %lld", diff, (long long)off);
    ssize_t done = 0;
    while (done < n) {
      ssize_t w = pwrite(bfd, buf + done, (size_t)(n - done), off + done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return cmn_err_errno(err, CMN_INTERNAL, errno, "writing %s at %lld", base,
                             (long long)(off + done));
      done += w;
    }
    off += n;
  }
  return 0;
}

int fc_merge_diff(const char *diff_path, const char *base_path, uint64_t *copied, cmn_error *err)
{
  if (copied != NULL)
    *copied = 0;
  cleanup_close int dfd = cmn_open(diff_path, O_RDONLY, 0);
  if (dfd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "opening diff %s", diff_path);
  cleanup_close int bfd = cmn_open(base_path, O_WRONLY, 0);
  if (bfd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "opening base %s", base_path);
  struct stat dst, bst;
  if (fstat(dfd, &dst) < 0 || fstat(bfd, &bst) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "stat of %s or %s", diff_path, base_path);
  if (dst.st_size != bst.st_size)
    return cmn_err_set(err, CMN_INTERNAL,
                       "diff %s has %lld bytes but base %s has %lld: not the same guest", diff_path,
                       (long long)dst.st_size, base_path, (long long)bst.st_size);

  cleanup_free char *buf = cmn_malloc(MERGE_CHUNK);
  uint64_t total = 0;
  off_t off = 0;
  bool first = true;
  while (off < dst.st_size) {
    off_t data = lseek(dfd, off, SEEK_DATA);
    if (data < 0 && errno == ENXIO)
      break; /* only a hole remains */
    if (data < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "SEEK_DATA in %s", diff_path);
    off_t hole = lseek(dfd, data, SEEK_HOLE);
    if (hole < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "SEEK_HOLE in %s", diff_path);
    if (hole > dst.st_size)
      hole = dst.st_size;
    /* A filesystem without hole reporting claims one data extent covering the
     * whole file; if the file is in fact sparse, copying it would overwrite
     * clean base pages with zeros. */
    if (first && data == 0 && hole == dst.st_size &&
        (uint64_t)dst.st_blocks * 512u < (uint64_t)dst.st_size)
      return cmn_err_set(err, CMN_INTERNAL,
                         "the filesystem of %s does not report holes (SEEK_HOLE); "
                         "refusing to merge a sparse diff that would zero clean pages",
                         diff_path);
    first = false;
    if (merge_extent(dfd, bfd, data, hole, buf, diff_path, base_path, err) < 0)
      return -1;
    total += (uint64_t)(hole - data);
    off = hole;
  }
  if (fsync(bfd) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "fsync of %s", base_path);
  if (unlink(diff_path) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "removing %s", diff_path);
  if (cmn_fsync_parent(diff_path, err) < 0)
    return -1;
  if (copied != NULL)
    *copied = total;
  return 0;
}
