/* disk.c: the disks of clones (docs/fork.md "Disks"). Where the filesystem
 * has no reflinks, a clone's root disk is a qcow2 overlay whose backing file
 * is the snapshot's frozen raw copy: the clone's writes go to the overlay,
 * the backing file is only read (QEMU opens a backing file read-only). A
 * snapshot of a clone flattens the overlay back into a standalone raw file,
 * so no snapshot ever depends on another one's disks. Both run qemu-img. */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* qemu-img on a big disk reads it all: generous, but not forever. */
#define QEMU_IMG_TIMEOUT_MS (30 * 60 * 1000)

static int disk_run(const qemu_host *h, const char *const argv[], const char *path,
                    const char *what, cmn_error *err)
{
  if (h->qemu_img == NULL)
    return cmn_err_set(err, CMN_UNIMPLEMENTED, "%s: qemu-img is not installed", what);
  if (cmn_path_exists(path))
    return cmn_err_set(err, CMN_ALREADY_EXISTS, "%s: %s exists", what, path);
  cleanup_free char *out = cmn_proc_capture(argv, 4096, QEMU_IMG_TIMEOUT_MS, err);
  if (out == NULL) {
    unlink(path);
    err->code = CMN_INTERNAL;
    return cmn_err_prefix(err, "%s", what);
  }
  cmn_error e2 = {0};
  if (cmn_fsync_path(path, &e2) < 0 || cmn_fsync_parent(path, &e2) < 0) {
    unlink(path);
    *err = e2;
    return cmn_err_prefix(err, "%s", what);
  }
  return 0;
}

int qemu_disk_overlay(void *state, const char *backing, const char *path, cmn_error *err)
{
  const qemu_host *h = state;
  if (backing[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "overlay: backing file %s is not absolute",
                       backing);
  /* -u: the backing file is not opened (it is known good and large); its
   * size is given so the overlay has exactly the disk's size. */
  struct stat st;
  if (stat(backing, &st) < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_DATA_LOSS : CMN_INTERNAL, errno,
                         "overlay: backing file %s", backing);
  cleanup_free char *size = cmn_asprintf("%lld", (long long)st.st_size);
  const char *const argv[] = {h->qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw",
                              "-b",        backing,  "-u", path, size,    NULL};
  return disk_run(h, argv, path, "qcow2 overlay", err);
}

int qemu_disk_flatten(void *state, const char *src, bool src_overlay, const char *path,
                      cmn_error *err)
{
  const qemu_host *h = state;
  /* -U: no image locking; the source is a paused VMM's disk (inactive since
   * its migration) or a disk no VMM uses. Output is sparse (zeroes skipped). */
  const char *const argv[] = {
      h->qemu_img, "convert", "-q", "-U", "-f", src_overlay ? "qcow2" : "raw",
      "-O",        "raw",     src,  path, NULL};
  return disk_run(h, argv, path, "flatten disk", err);
}
