/* rootfs.c: image layers -> cached ext4 root disk, and per-instance copies
 * (see rootfs.h; the choice of ext4 over erofs is argued in docs/rootfs.md).
 *
 * Build: layers.c stages the content and a manifest; `mkfs.ext4 -d` copies
 * the content into a sparse image file (no mount, no root); then libext2fs
 * writes every entry's mode, owner, mtime and xattrs from the manifest and
 * creates the device nodes and fifos, which were never made on the host.
 * All of it happens in <cache_dir>/.build-<name>-XXXXXX under a per-digest
 * lock; the image is fsynced and renamed into place, the temp folder removed
 * on every path. */
#include "agent/image/rootfs.h"
#include "agent/image/layers.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"

#include <dirent.h>
#include <errno.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096ULL
#define MIB (1ULL << 20)

/* ---- names --------------------------------------------------------------- */

char *img_rootfs_cache_name(const char *digest, cmn_error *err)
{
  const char *colon = digest ? strchr(digest, ':') : NULL;
  size_t al = colon ? (size_t)(colon - digest) : 0;
  bool ok =
      colon != NULL && al > 0 && al <= 32 && strlen(colon + 1) >= 32 && strlen(colon + 1) <= 128;
  for (size_t i = 0; ok && i < al; i++)
    ok = (digest[i] >= 'a' && digest[i] <= 'z') || (digest[i] >= '0' && digest[i] <= '9');
  for (const char *p = colon ? colon + 1 : ""; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'f') || (*p >= '0' && *p <= '9');
  if (!ok) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "image digest '%.200s' is not <algorithm>:<hex>",
                digest ? digest : "");
    return NULL;
  }
  return cmn_asprintf("%.*s-%s.ext4", (int)al, digest, colon + 1);
}

/* ---- libext2fs pass ------------------------------------------------------ */

static pthread_once_t et_once = PTHREAD_ONCE_INIT;
static void et_init(void) { initialize_ext2_error_table(); }

static int e2err(cmn_error *err, errcode_t rc, const char *what, const char *path)
{
  return cmn_err_set(err, CMN_INTERNAL, "ext4 image: %s '/%s': %s", what, path, error_message(rc));
}

struct names {
  char **v;
  size_t n;
};

static int collect_name(char *name, char *value, size_t len, void *data)
{
  struct names *ns = data;
  if (strcmp(name, "system.data") == 0) /* inline data, not an attribute */
    return 0;
  ns->v = cmn_realloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
  ns->v[ns->n++] = cmn_strdup(name);
  return 0;
}

/* The inode's xattrs become exactly the manifest's (mkfs.ext4 -d copied the
 * staging files' own, e.g. a host's security.selinux). */
static int fix_xattrs(ext2_filsys fs, ext2_ino_t ino, const img_node *n, cmn_error *err)
{
  struct ext2_xattr_handle *h = NULL;
  errcode_t rc = ext2fs_xattrs_open(fs, ino, &h);
  if (rc == 0)
    rc = ext2fs_xattrs_read(h);
  if (rc != 0) {
    if (h)
      ext2fs_xattrs_close(&h);
    return e2err(err, rc, "read xattrs of", n->path);
  }
  struct names ns = {0};
  rc = ext2fs_xattrs_iterate(h, collect_name, &ns);
  for (size_t i = 0; rc == 0 && i < ns.n; i++)
    rc = ext2fs_xattr_remove(h, ns.v[i]);
  for (size_t i = 0; i < ns.n; i++)
    free(ns.v[i]);
  free(ns.v);
  for (size_t i = 0; rc == 0 && i < n->n_xattrs; i++)
    rc = ext2fs_xattr_set(h, n->xattrs[i].name, n->xattrs[i].value, n->xattrs[i].len);
  errcode_t rc2 = ext2fs_xattrs_close(&h);
  if (rc == 0)
    rc = rc2;
  return rc ? e2err(err, rc, "set xattrs of", n->path) : 0;
}

/* Creates a device node or fifo named n->name in folder parent (as e2fsprogs'
 * own do_mknod_internal does). */
static int make_special(ext2_filsys fs, ext2_ino_t parent, const img_node *n, ext2_ino_t *out,
                        cmn_error *err)
{
  int ft;
  __u16 lmode;
  if (S_ISCHR(n->mode)) {
    ft = EXT2_FT_CHRDEV;
    lmode = LINUX_S_IFCHR;
  } else if (S_ISBLK(n->mode)) {
    ft = EXT2_FT_BLKDEV;
    lmode = LINUX_S_IFBLK;
  } else {
    ft = EXT2_FT_FIFO;
    lmode = LINUX_S_IFIFO;
  }
  ext2_ino_t ino;
  errcode_t rc = ext2fs_new_inode(fs, parent, 010755, NULL, &ino);
  if (rc)
    return e2err(err, rc, "allocate an inode for", n->path);
  rc = ext2fs_link(fs, parent, n->name, ino, ft);
  if (rc == EXT2_ET_DIR_NO_SPACE) {
    rc = ext2fs_expand_dir(fs, parent);
    if (rc == 0)
      rc = ext2fs_link(fs, parent, n->name, ino, ft);
  }
  if (rc)
    return e2err(err, rc, "link", n->path);
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  struct ext2_inode inode;
  memset(&inode, 0, sizeof(inode));
  inode.i_mode = lmode | (n->mode & 07777);
  inode.i_links_count = 1;
  unsigned ma = n->rdev_major, mi = n->rdev_minor;
  if (ma < 256 && mi < 256) {
    inode.i_block[0] = ma * 256 + mi;
  } else {
    inode.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffU) << 12);
  }
  rc = ext2fs_write_new_inode(fs, ino, &inode);
  if (rc)
    return e2err(err, rc, "write the inode of", n->path);
  *out = ino;
  return 0;
}

static __u32 clamp_time(int64_t t) { return t < 0 ? 0 : t > INT32_MAX ? INT32_MAX : (__u32)t; }

static int fix_node(ext2_filsys fs, const img_node *n, ext2_ino_t ino, cmn_error *err)
{
  struct ext2_inode inode;
  errcode_t rc = ext2fs_read_inode(fs, ino, &inode);
  if (rc)
    return e2err(err, rc, "read the inode of", n->path);
  if ((inode.i_mode & LINUX_S_IFMT) != (n->mode & S_IFMT))
    return cmn_err_set(err, CMN_INTERNAL, "ext4 image: '/%s' has type 0%o, the layers say 0%o",
                       n->path, (unsigned)(inode.i_mode & LINUX_S_IFMT),
                       (unsigned)(n->mode & S_IFMT));
  inode.i_mode = (__u16)((inode.i_mode & LINUX_S_IFMT) | (n->mode & 07777));
  inode.i_uid = (__u16)(n->uid & 0xffff);
  ext2fs_set_i_uid_high(inode, n->uid >> 16);
  inode.i_gid = (__u16)(n->gid & 0xffff);
  ext2fs_set_i_gid_high(inode, n->gid >> 16);
  inode.i_mtime = inode.i_atime = inode.i_ctime = clamp_time(n->mtime);
  rc = ext2fs_write_inode(fs, ino, &inode);
  if (rc)
    return e2err(err, rc, "write the inode of", n->path);
  if (fix_xattrs(fs, ino, n, err) < 0)
    return -1;
  if (!S_ISDIR(n->mode))
    return 0;
  for (const img_node *c = n->first_child; c != NULL; c = c->next_sibling) {
    ext2_ino_t cino;
    if (S_ISDIR(c->mode) || S_ISREG(c->mode) || S_ISLNK(c->mode)) {
      rc = ext2fs_lookup(fs, ino, c->name, (int)strlen(c->name), NULL, &cino);
      if (rc)
        return e2err(err, rc, "find", c->path);
    } else if (make_special(fs, ino, c, &cino, err) < 0) {
      return -1;
    }
    if (fix_node(fs, c, cino, err) < 0)
      return -1;
  }
  return 0;
}

/* Writes the manifest's metadata into the image at path. */
static int fix_image(const char *path, const img_tree *t, cmn_error *err)
{
  pthread_once(&et_once, et_init);
  ext2_filsys fs = NULL;
  errcode_t rc =
      ext2fs_open2(path, NULL, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  if (rc)
    return cmn_err_set(err, CMN_INTERNAL, "ext4 image: open %s: %s", path, error_message(rc));
  rc = ext2fs_read_bitmaps(fs);
  int r = rc ? e2err(err, rc, "read bitmaps of", "")
             : fix_node(fs, img_tree_root(t), EXT2_ROOT_INO, err);
  rc = ext2fs_close_free(&fs);
  if (r == 0 && rc)
    return cmn_err_set(err, CMN_INTERNAL, "ext4 image: write %s: %s", path, error_message(rc));
  return r;
}

/* ---- mkfs.ext4 ----------------------------------------------------------- */

struct sizing {
  uint64_t bytes;
  uint64_t inodes;
};

static void size_walk(const img_node *n, uint64_t *bytes, uint64_t *n_xattr)
{
  if (S_ISREG(n->mode))
    *bytes += (n->size + BLOCK - 1) / BLOCK * BLOCK;
  else if (S_ISDIR(n->mode))
    *bytes += BLOCK;
  else if (S_ISLNK(n->mode))
    *bytes += BLOCK; /* targets over 59 bytes take a block */
  if (n->n_xattrs)
    (*n_xattr)++;
  for (const img_node *c = n->first_child; c; c = c->next_sibling)
    size_walk(c, bytes, n_xattr);
}

/* Content + directory entries + xattr blocks, plus headroom; inode table,
 * journal and group metadata on top. Rounded up to a MiB. */
static struct sizing compute_size(const img_tree *t, const img_rootfs_opts *o)
{
  uint64_t content = 0, n_xattr = 0, n = img_tree_entries(t);
  size_walk(img_tree_root(t), &content, &n_xattr);
  content += n * 64 + n_xattr * BLOCK;
  uint64_t hb = o->headroom_bytes, hp = o->headroom_pct;
  if (hb == 0 && hp == 0) {
    hb = 256 * MIB;
    hp = 10;
  }
  uint64_t data = content + content / 100 * hp + hb;
  uint64_t inodes = n + n / 4 + 1024;
  if (data / 16384 > inodes)
    inodes = data / 16384;
  uint64_t total = data + inodes * 256;
  total += (uint64_t)ext2fs_default_journal_size(total / BLOCK) * BLOCK;
  total += total / 32 + 4 * MIB;
  total = (total + MIB - 1) / MIB * MIB;
  return (struct sizing){total, inodes};
}

static char *find_mkfs(const img_rootfs_opts *o, cmn_error *err)
{
  if (o->mkfs_ext4 != NULL)
    return cmn_strdup(o->mkfs_ext4);
  char *p = cmn_which("mkfs.ext4");
  if (p != NULL)
    return p;
  static const char *const fallback[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};
  for (size_t i = 0; i < 2; i++)
    if (access(fallback[i], X_OK) == 0)
      return cmn_strdup(fallback[i]);
  cmn_err_set(err, CMN_FAILED_PRECONDITION,
              "mkfs.ext4 not found (install e2fsprogs): needed to build root disks");
  return NULL;
}

static int run_mkfs(const char *mkfs, const char *tmpdir, const char *staging, const char *image,
                    const struct sizing *sz, int timeout_s, cmn_error *err)
{
  cleanup_close int fd = cmn_open(image, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", image);
  if (ftruncate(fd, (off_t)sz->bytes) < 0)
    return cmn_err_errno(err, CMN_RESOURCE_EXHAUSTED, errno, "size %s", image);
  cleanup_free char *inodes = cmn_asprintf("%llu", (unsigned long long)sz->inodes);
  cleanup_free char *log = cmn_asprintf("%s/mkfs.log", tmpdir);
  /* -b/-I explicit: mke2fs.conf would pick 1 KiB blocks and 128-byte inodes
   * for "small" filesystems. -m 0: no blocks reserved for root.
   * lazy_journal_init: the file is a fresh hole, its journal already reads as
   * zeroes, so mke2fs need not write 16-128 MiB of them (the image stays
   * sparse); lazy_itable_init=0: inode tables marked zeroed, so the guest's
   * ext4lazyinit thread does not write them on first mount. The staging
   * files are 0600/0700 and owned by us; their metadata is rewritten after. */
  const char *const argv[] = {mkfs,
                              "-F",
                              "-q",
                              "-t",
                              "ext4",
                              "-b",
                              "4096",
                              "-I",
                              "256",
                              "-N",
                              inodes,
                              "-m",
                              "0",
                              "-L",
                              "rootfs",
                              "-E",
                              "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=1",
                              "-d",
                              staging,
                              image,
                              NULL};
  cmn_spawn_opts so = {.log_path = log};
  cmn_proc p;
  if (cmn_proc_spawn(argv, &so, &p, err) < 0)
    return cmn_err_prefix(err, "run %s", mkfs);
  int status = 0;
  if (cmn_proc_wait(&p, timeout_s * 1000, &status) < 0) {
    cmn_proc_kill_reap(&p);
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "%s did not finish within %d s", mkfs,
                       timeout_s);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  cleanup_free char *out = NULL;
  size_t len = 0;
  cmn_error e2 = {0};
  if (cmn_file_read(log, 4096, &out, &len, &e2) < 0)
    out = cmn_strdup("");
  for (char *c = out; *c; c++)
    if (*c == '\n')
      *c = ' ';
  return cmn_err_set(err, CMN_INTERNAL, "%s failed (status %d): %.600s", mkfs, status, out);
}

/* ---- build --------------------------------------------------------------- */

/* Removes temp folders a crashed builder of the same digest left (called
 * under the digest's lock, so none of them is in use). */
static void sweep_stale(const char *cache_dir, const char *name)
{
  cleanup_closedir DIR *d = opendir(cache_dir);
  if (d == NULL)
    return;
  cleanup_free char *prefix = cmn_asprintf(".build-%s-", name);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
      continue;
    cleanup_free char *p = cmn_asprintf("%s/%s", cache_dir, de->d_name);
    cmn_error e = {0};
    cmn_rm_rf(p, &e);
  }
}

/* Takes the per-digest lock: an flock on <cache>/.<name>.lock that is still
 * the file at that path once locked (a holder unlinks it when done). */
static int lock_digest(const char *lock_path, cmn_error *err)
{
  for (;;) {
    int fd = cmn_open(lock_path, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", lock_path);
    int r;
    while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
      ;
    if (r < 0) {
      int e = errno;
      close(fd);
      return cmn_err_errno(err, CMN_INTERNAL, e, "lock %s", lock_path);
    }
    struct stat a, b;
    if (fstat(fd, &a) == 0 && stat(lock_path, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
      return fd;
    close(fd); /* unlinked by the previous holder: take the new one */
  }
}

static void unlock_digest(const char *lock_path, int fd)
{
  unlink(lock_path);
  close(fd);
}

static int build_locked(const img_rootfs_opts *o, const char *cache_dir, const char *name,
                        const char *final, const img_layer *layers, size_t n_layers,
                        img_rootfs_stats *st, cmn_error *err)
{
  cleanup_free char *mkfs = find_mkfs(o, err);
  if (mkfs == NULL)
    return -1;
  sweep_stale(cache_dir, name);
  cleanup_free char *tmpdir = cmn_asprintf("%s/.build-%s-XXXXXX", cache_dir, name);
  if (mkdtemp(tmpdir) == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create a build folder in %s", cache_dir);
  cleanup_free char *staging = cmn_asprintf("%s/tree", tmpdir);
  cleanup_free char *image = cmn_asprintf("%s/%s", tmpdir, name);
  int rc = -1;
  img_tree *t = NULL;
  if (mkdir(staging, 0700) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", staging);
    goto out;
  }
  int64_t t0 = cmn_now_us();
  t = img_tree_new(staging, &o->limits, err);
  if (t == NULL)
    goto out;
  for (size_t i = 0; i < n_layers; i++)
    if (img_tree_apply(t, &layers[i], err) < 0)
      goto out;
  int64_t t1 = cmn_now_us();
  struct sizing sz = compute_size(t, o);
  int timeout = o->mkfs_timeout_s > 0 ? o->mkfs_timeout_s : 600;
  if (run_mkfs(mkfs, tmpdir, staging, image, &sz, timeout, err) < 0) {
    /* The estimate can fall short (huge folders, many xattrs): once more, doubled. */
    sz.bytes *= 2;
    sz.inodes *= 2;
    cmn_error e1 = *err;
    if (run_mkfs(mkfs, tmpdir, staging, image, &sz, timeout, err) < 0) {
      *err = e1;
      goto out;
    }
  }
  int64_t t2 = cmn_now_us();
  if (fix_image(image, t, err) < 0)
    goto out;
  int64_t t3 = cmn_now_us();
  if (cmn_fsync_path(image, err) < 0 || cmn_rename_durable(image, final, err) < 0)
    goto out;
  if (st != NULL) {
    st->entries = img_tree_entries(t);
    st->content_bytes = img_tree_content_bytes(t);
    st->image_bytes = sz.bytes;
    st->apply_us = t1 - t0;
    st->mkfs_us = t2 - t1;
    st->fixup_us = t3 - t2;
  }
  rc = 0;
out:
  img_tree_free(t);
  cmn_error e2 = {0};
  cmn_rm_rf(tmpdir, &e2);
  return rc;
}

int img_rootfs_build(const img_rootfs_opts *opts, const char *cache_dir, const char *digest,
                     const img_layer *layers, size_t n_layers, char **out_path, bool *built,
                     img_rootfs_stats *stats, cmn_error *err)
{
  img_rootfs_opts defaults = {0};
  const img_rootfs_opts *o = opts ? opts : &defaults;
  if (stats)
    memset(stats, 0, sizeof(*stats));
  if (built)
    *built = false;
  cleanup_free char *name = img_rootfs_cache_name(digest, err);
  if (name == NULL)
    return -1;
  if (n_layers == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image %s has no layers", digest);
  if (cmn_mkdir_p(cache_dir, 0700, err) < 0)
    return cmn_err_prefix(err, "root disk cache");
  cleanup_free char *final = cmn_asprintf("%s/%s", cache_dir, name);
  cleanup_free char *lock_path = cmn_asprintf("%s/.%s.lock", cache_dir, name);
  int lfd = lock_digest(lock_path, err);
  if (lfd < 0)
    return -1;
  int rc = 0;
  if (!cmn_is_regular_file(final)) {
    rc = build_locked(o, cache_dir, name, final, layers, n_layers, stats, err);
    if (rc == 0 && built)
      *built = true;
  }
  unlock_digest(lock_path, lfd);
  if (rc < 0)
    return cmn_err_prefix(err, "root disk of image %s", digest);
  *out_path = steal_ptr(final);
  return 0;
}
