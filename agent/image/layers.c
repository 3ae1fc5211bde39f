/* layers.c: OCI layers -> staging tree + manifest (see layers.h).
 *
 * libarchive reads the layer (tar, gzip or zstd by media type); the writes
 * are ours, through descriptors: archive_write_disk resolves names against
 * the process's working directory (no dirfd API in 3.6), which a threaded
 * daemon cannot change, and it would try to chown/mknod/set xattrs on the
 * host. Here each folder is opened component by component with
 * O_PATH|O_NOFOLLOW|O_DIRECTORY from the staging root, so a symbolic link in
 * the way fails the open instead of being followed, and the manifest (which
 * mirrors the staging tree) refuses it first with a clear message. */
#include "agent/image/layers.h"

#include "common/cleanup.h"
#include "common/hash.h"
#include "common/files.h"
#include "common/mem.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_BYTES 255
#define PATH_MAX_BYTES 4000
#define DEPTH_MAX 256 /* the manifest and the ext4 pass recurse per level */
#define XATTR_VALUE_MAX 65536

struct img_tree {
  char *dir;
  int dirfd; /* O_PATH of the staging root */
  img_rootfs_limits lim;
  uint64_t bytes_used;   /* content bytes read from all layers so far */
  uint64_t entries_seen; /* tar entries read from all layers so far */
  uint64_t n_nodes;
  unsigned layer; /* index of the layer being applied, from 1 */
  img_node *root;
  img_node **buckets;
  size_t n_buckets;
};

/* ---- manifest: nodes, hash by path -------------------------------------- */

static img_node *tree_find(const img_tree *t, const char *path)
{
  uint64_t h = cmn_hash_str(path);
  for (img_node *n = t->buckets[h & (t->n_buckets - 1)]; n != NULL; n = n->hnext)
    if (n->hash == h && strcmp(n->path, path) == 0)
      return n;
  return NULL;
}

static void tree_grow(img_tree *t)
{
  size_t nb = t->n_buckets * 2;
  img_node **b = cmn_calloc(nb, sizeof(*b));
  for (size_t i = 0; i < t->n_buckets; i++) {
    img_node *n = t->buckets[i];
    while (n != NULL) {
      img_node *next = n->hnext;
      n->hnext = b[n->hash & (nb - 1)];
      b[n->hash & (nb - 1)] = n;
      n = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->n_buckets = nb;
}

static void xattrs_free(img_node *n)
{
  for (size_t i = 0; i < n->n_xattrs; i++) {
    free(n->xattrs[i].name);
    free(n->xattrs[i].value);
  }
  free(n->xattrs);
  n->xattrs = NULL;
  n->n_xattrs = 0;
}

static void xattrs_copy(img_node *to, const img_node *from)
{
  xattrs_free(to);
  if (from->n_xattrs == 0)
    return;
  to->xattrs = cmn_calloc(from->n_xattrs, sizeof(*to->xattrs));
  for (size_t i = 0; i < from->n_xattrs; i++) {
    to->xattrs[i].name = cmn_strdup(from->xattrs[i].name);
    to->xattrs[i].value = cmn_malloc(from->xattrs[i].len ? from->xattrs[i].len : 1);
    memcpy(to->xattrs[i].value, from->xattrs[i].value, from->xattrs[i].len);
    to->xattrs[i].len = from->xattrs[i].len;
  }
  to->n_xattrs = from->n_xattrs;
}

/* A new node at path (not present yet) under parent (NULL for the root). */
static img_node *tree_add(img_tree *t, img_node *parent, const char *path)
{
  img_node *n = cmn_calloc(1, sizeof(*n));
  n->path = cmn_strdup(path);
  const char *slash = strrchr(n->path, '/');
  n->name = slash ? slash + 1 : n->path;
  n->hash = cmn_hash_str(path);
  n->layer = t->layer;
  if (t->n_nodes + 1 > t->n_buckets)
    tree_grow(t);
  size_t b = n->hash & (t->n_buckets - 1);
  n->hnext = t->buckets[b];
  t->buckets[b] = n;
  n->parent = parent;
  if (parent != NULL) {
    n->next_sibling = parent->first_child;
    if (parent->first_child)
      parent->first_child->prev_sibling = n;
    parent->first_child = n;
  }
  t->n_nodes++;
  return n;
}

/* Frees n and its subtree from the manifest (not the staging tree). */
static void tree_drop(img_tree *t, img_node *n)
{
  while (n->first_child != NULL)
    tree_drop(t, n->first_child);
  img_node **pp = &t->buckets[n->hash & (t->n_buckets - 1)];
  while (*pp != n)
    pp = &(*pp)->hnext;
  *pp = n->hnext;
  if (n->parent != NULL) {
    if (n->prev_sibling)
      n->prev_sibling->next_sibling = n->next_sibling;
    else
      n->parent->first_child = n->next_sibling;
    if (n->next_sibling)
      n->next_sibling->prev_sibling = n->prev_sibling;
  }
  xattrs_free(n);
  free(n->path);
  free(n);
  t->n_nodes--;
}

static bool is_staged(mode_t mode) { return S_ISDIR(mode) || S_ISREG(mode) || S_ISLNK(mode); }

/* Removes n from the staging tree and the manifest. Every folder on the way
 * is a real folder (the manifest mirrors the tree), so the path is safe. */
static int tree_remove(img_tree *t, img_node *n, cmn_error *err)
{
  if (n == t->root)
    return cmn_err_set(err, CMN_INTERNAL, "cannot remove the root");
  if (is_staged(n->mode)) {
    cleanup_free char *full = cmn_asprintf("%s/%s", t->dir, n->path);
    if (cmn_rm_rf(full, err) < 0)
      return -1;
  }
  tree_drop(t, n);
  return 0;
}

/* ---- tree lifecycle ------------------------------------------------------ */

img_tree *img_tree_new(const char *dir, const img_rootfs_limits *limits, cmn_error *err)
{
  int fd = cmn_open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
  if (fd < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "open staging folder %s", dir);
    return NULL;
  }
  img_tree *t = cmn_calloc(1, sizeof(*t));
  t->dir = cmn_strdup(dir);
  t->dirfd = fd;
  t->lim.max_bytes = limits && limits->max_bytes ? limits->max_bytes : IMG_ROOTFS_DEFAULT_MAX_BYTES;
  t->lim.max_entries =
      limits && limits->max_entries ? limits->max_entries : IMG_ROOTFS_DEFAULT_MAX_ENTRIES;
  t->n_buckets = 1024;
  t->buckets = cmn_calloc(t->n_buckets, sizeof(*t->buckets));
  t->root = tree_add(t, NULL, "");
  t->root->mode = S_IFDIR | 0755; /* docker's default when a layer does not say */
  return t;
}

void img_tree_free(img_tree *t)
{
  if (t == NULL)
    return;
  if (t->root)
    tree_drop(t, t->root);
  free(t->buckets);
  if (t->dirfd >= 0)
    close(t->dirfd);
  free(t->dir);
  free(t);
}

const img_node *img_tree_root(const img_tree *t) { return t->root; }
const img_node *img_tree_lookup(const img_tree *t, const char *path) { return tree_find(t, path); }
uint64_t img_tree_entries(const img_tree *t) { return t->n_nodes; }
const char *img_tree_dir(const img_tree *t) { return t->dir; }

static uint64_t sum_bytes(const img_node *n)
{
  uint64_t s = S_ISREG(n->mode) ? n->size : 0;
  for (const img_node *c = n->first_child; c; c = c->next_sibling)
    s += sum_bytes(c);
  return s;
}

uint64_t img_tree_content_bytes(const img_tree *t) { return sum_bytes(t->root); }

/* ---- names --------------------------------------------------------------- */

/* Normalises a layer entry name into a relative path without "." or empty
 * components ("" is the root). Refuses absolute names, "..", overlong names
 * and paths deeper than DEPTH_MAX. */
static int norm_path(const char *in, char **out, cmn_error *err)
{
  if (in[0] == '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "absolute path");
  size_t len = strlen(in);
  if (len > PATH_MAX_BYTES)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "path longer than %d bytes", PATH_MAX_BYTES);
  char *o = cmn_malloc(len + 1);
  size_t ol = 0;
  int depth = 0;
  const char *p = in;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t cl = e ? (size_t)(e - p) : strlen(p);
    if (cl == 2 && p[0] == '.' && p[1] == '.') {
      free(o);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "'..' component: would leave the root");
    }
    if (cl > NAME_MAX_BYTES) {
      free(o);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "a name is longer than %d bytes",
                         NAME_MAX_BYTES);
    }
    if (cl > 0 && !(cl == 1 && p[0] == '.')) {
      if (++depth > DEPTH_MAX) {
        free(o);
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "more than %d levels of folders", DEPTH_MAX);
      }
      if (ol > 0)
        o[ol++] = '/';
      memcpy(o + ol, p, cl);
      ol += cl;
    }
    p += cl;
    if (*p == '/')
      p++;
  }
  o[ol] = '\0';
  *out = o;
  return 0;
}

/* ---- staging folders ----------------------------------------------------- */

/* Opens the folder at rel (already normalised, all folders) beneath the
 * staging root, one component at a time, never following a symbolic link. */
static int open_dir_beneath(const img_tree *t, const char *rel, cmn_error *err)
{
  int fd = fcntl(t->dirfd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "dup");
  cleanup_free char *copy = cmn_strdup(rel);
  char *save = NULL;
  for (char *c = strtok_r(copy, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
    int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(fd);
    if (next < 0)
      return cmn_err_errno(err, e == ELOOP || e == ENOTDIR ? CMN_INVALID_ARGUMENT : CMN_INTERNAL, e,
                           "open folder '%s' without following links", rel);
    fd = next;
  }
  return fd;
}

/* Makes sure every folder of dir (a normalised path) exists in the manifest
 * and the staging tree, creating missing ones (0755 root:root, docker's
 * default). Refuses a component that is a symbolic link or not a folder. */
static img_node *ensure_dir(img_tree *t, const char *dir, cmn_error *err)
{
  img_node *cur = t->root;
  if (dir[0] == '\0')
    return cur;
  cleanup_free char *prefix = cmn_strdup(dir);
  size_t len = strlen(dir);
  for (size_t i = 0; i <= len; i++) {
    if (dir[i] != '/' && dir[i] != '\0')
      continue;
    prefix[i] = '\0';
    img_node *n = tree_find(t, prefix);
    if (n == NULL) {
      cleanup_close int pfd = open_dir_beneath(t, cur->path, err);
      if (pfd < 0)
        return NULL;
      const char *slash = strrchr(prefix, '/');
      const char *name = slash ? slash + 1 : prefix;
      if (mkdirat(pfd, name, 0700) < 0) {
        cmn_err_errno(err, CMN_INTERNAL, errno, "create folder '%s'", prefix);
        return NULL;
      }
      n = tree_add(t, cur, prefix);
      n->mode = S_IFDIR | 0755;
    } else if (S_ISLNK(n->mode)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "goes through the symbolic link '%s': writing through links is refused", prefix);
      return NULL;
    } else if (!S_ISDIR(n->mode)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "'%s' is not a folder", prefix);
      return NULL;
    }
    cur = n;
    if (dir[i] != '\0')
      prefix[i] = '/';
  }
  return cur;
}

/* ---- metadata ------------------------------------------------------------ */

static bool xattr_name_kept(const char *name)
{
  static const char *const spaces[] = {"user.", "trusted.", "security."};
  for (size_t i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++)
    if (strncmp(name, spaces[i], strlen(spaces[i])) == 0 && name[strlen(spaces[i])] != '\0')
      return true;
  return strcmp(name, "system.posix_acl_access") == 0 ||
         strcmp(name, "system.posix_acl_default") == 0;
}

static int set_meta(img_node *n, mode_t type, struct archive_entry *e, cmn_error *err)
{
  int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
  if (uid < 0 || uid > 0xfffffffeLL || gid < 0 || gid > 0xfffffffeLL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "owner %lld:%lld out of range", (long long)uid,
                       (long long)gid);
  n->mode = type | (archive_entry_perm(e) & 07777);
  n->uid = (uint32_t)uid;
  n->gid = (uint32_t)gid;
  n->mtime = archive_entry_mtime(e);
  if (S_ISCHR(type) || S_ISBLK(type)) {
    n->rdev_major = archive_entry_rdevmajor(e);
    n->rdev_minor = archive_entry_rdevminor(e);
  }
  xattrs_free(n);
  const char *name;
  const void *value;
  size_t size;
  size_t cnt = (size_t)archive_entry_xattr_reset(e);
  if (cnt == 0)
    return 0;
  n->xattrs = cmn_calloc(cnt, sizeof(*n->xattrs));
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (name == NULL || !xattr_name_kept(name) || strlen(name) > NAME_MAX_BYTES)
      continue; /* other namespaces have no ext4 encoding: dropped (docs/rootfs.md) */
    if (size > XATTR_VALUE_MAX)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "xattr %s of %zu bytes (limit %d)", name, size,
                         XATTR_VALUE_MAX);
    img_xattr *x = &n->xattrs[n->n_xattrs++];
    x->name = cmn_strdup(name);
    x->value = cmn_malloc(size ? size : 1);
    if (size)
      memcpy(x->value, value, size);
    x->len = size;
  }
  return 0;
}

/* ---- entries ------------------------------------------------------------- */

static void split(const char *path, char **dir, const char **base)
{
  const char *slash = strrchr(path, '/');
  *dir = slash ? cmn_strndup(path, (size_t)(slash - path)) : cmn_strdup("");
  *base = slash ? slash + 1 : path;
}

/* `.wh.<name>` / `.wh..wh..opq` in folder dir. */
static int apply_whiteout(img_tree *t, const char *dir, const char *base, cmn_error *err)
{
  if (strcmp(base, ".wh..wh..opq") == 0) {
    img_node *d = ensure_dir(t, dir, err);
    if (d == NULL)
      return -1;
    img_node *c = d->first_child;
    while (c != NULL) {
      img_node *next = c->next_sibling;
      if (c->layer < t->layer && tree_remove(t, c, err) < 0)
        return -1;
      c = next;
    }
    return 0;
  }
  if (strncmp(base, ".wh..wh.", 8) == 0)
    return 0; /* aufs bookkeeping (.wh..wh.plnk, ...): ignored, as docker does */
  const char *name = base + 4;
  if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "whiteout of an invalid name");
  cleanup_free char *target = dir[0] ? cmn_asprintf("%s/%s", dir, name) : cmn_strdup(name);
  img_node *n = tree_find(t, target);
  /* Present only if every folder above is a real folder (the manifest has no
   * entry below a link or a file), so nothing is reached through a link. */
  if (n != NULL && n->layer < t->layer)
    return tree_remove(t, n, err);
  return 0;
}

static int write_content(img_tree *t, struct archive *a, int fd, int64_t size, cmn_error *err)
{
  const void *buf;
  size_t len;
  la_int64_t off;
  int64_t end = 0;
  for (;;) {
    int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reading content: %s",
                         archive_error_string(a) ? archive_error_string(a) : "error");
    if (len > t->lim.max_bytes - t->bytes_used)
      return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                         "content beyond the limit of %llu uncompressed bytes",
                         (unsigned long long)t->lim.max_bytes);
    t->bytes_used += len;
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
      ssize_t w = pwrite(fd, p, left, off);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        return cmn_err_errno(
            err, errno == ENOSPC || errno == EDQUOT ? CMN_RESOURCE_EXHAUSTED : CMN_INTERNAL, errno,
            "write staging file");
      }
      p += w;
      off += w;
      left -= (size_t)w;
    }
    if (off > end)
      end = off;
  }
  if (size > end && ftruncate(fd, size) < 0) /* a sparse tail */
    return cmn_err_errno(err, CMN_INTERNAL, errno, "size staging file");
  return 0;
}

static int apply_entry(img_tree *t, struct archive *a, struct archive_entry *e, cmn_error *err)
{
  const char *raw = archive_entry_pathname(e);
  if (raw == NULL || raw[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "an entry without a name");
  cleanup_free char *path = NULL;
  if (norm_path(raw, &path, err) < 0)
    return -1;
  int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (declared < 0 || (uint64_t)declared > t->lim.max_bytes - t->bytes_used)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "declares %lld bytes, beyond the limit of %llu uncompressed bytes "
                       "(%llu used)",
                       (long long)declared, (unsigned long long)t->lim.max_bytes,
                       (unsigned long long)t->bytes_used);
  mode_t type = archive_entry_filetype(e);
  const char *hardlink = archive_entry_hardlink(e);

  if (path[0] == '\0') { /* "./": the root's own metadata */
    if (hardlink != NULL || type != AE_IFDIR)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "the root must be a folder");
    return set_meta(t->root, S_IFDIR, e, err);
  }
  cleanup_free char *dir = NULL;
  const char *base;
  split(path, &dir, &base);
  if (strncmp(base, ".wh.", 4) == 0)
    return apply_whiteout(t, dir, base, err);

  img_node *parent = ensure_dir(t, dir, err);
  if (parent == NULL)
    return -1;
  img_node *link_to = NULL;
  cleanup_free char *target = NULL;
  if (hardlink != NULL) {
    if (norm_path(hardlink, &target, err) < 0)
      return cmn_err_prefix(err, "hard link to '%s'", hardlink);
    link_to = tree_find(t, target);
    if (link_to == NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "hard link to '%s', which no earlier entry created", hardlink);
    if (S_ISDIR(link_to->mode))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "hard link to the folder '%s'", hardlink);
    size_t pl = strlen(path);
    if (strcmp(target, path) == 0 || (strncmp(target, path, pl) == 0 && target[pl] == '/'))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "hard link to '%s', which it replaces",
                         hardlink);
  }

  img_node *old = tree_find(t, path);
  if (old != NULL) {
    if (link_to == NULL && type == AE_IFDIR && S_ISDIR(old->mode)) {
      old->layer = t->layer; /* folders merge: new metadata, contents kept */
      return set_meta(old, S_IFDIR, e, err);
    }
    if (tree_remove(t, old, err) < 0)
      return -1;
  }

  cleanup_close int pfd = open_dir_beneath(t, dir, err);
  if (pfd < 0)
    return -1;
  if (link_to != NULL) {
    if (is_staged(link_to->mode)) {
      cleanup_free char *tdir = NULL;
      const char *tbase;
      split(link_to->path, &tdir, &tbase);
      cleanup_close int tfd = open_dir_beneath(t, tdir, err);
      if (tfd < 0)
        return -1;
      if (linkat(tfd, tbase, pfd, base, 0) < 0)
        return cmn_err_errno(err, CMN_INTERNAL, errno, "hard link");
    }
    img_node *n = tree_add(t, parent, path);
    n->mode = link_to->mode;
    n->uid = link_to->uid;
    n->gid = link_to->gid;
    n->rdev_major = link_to->rdev_major;
    n->rdev_minor = link_to->rdev_minor;
    n->mtime = link_to->mtime;
    n->size = link_to->size;
    xattrs_copy(n, link_to);
    return 0;
  }

  mode_t st_type;
  switch (type) {
  case AE_IFDIR:
    st_type = S_IFDIR;
    if (mkdirat(pfd, base, 0700) < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "create folder");
    break;
  case AE_IFREG: {
    st_type = S_IFREG;
    cleanup_close int fd =
        openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "create file");
    if (write_content(t, a, fd, declared, err) < 0)
      return -1;
    break;
  }
  case AE_IFLNK: {
    st_type = S_IFLNK;
    const char *to = archive_entry_symlink(e);
    if (to == NULL || to[0] == '\0')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "symbolic link without a target");
    if (strlen(to) > PATH_MAX_BYTES)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "symbolic link target too long");
    /* The target is kept as written: it is resolved in the guest, never here. */
    if (symlinkat(to, pfd, base) < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "create symbolic link");
    break;
  }
  case AE_IFCHR:
    st_type = S_IFCHR;
    break;
  case AE_IFBLK:
    st_type = S_IFBLK;
    break;
  case AE_IFIFO:
    st_type = S_IFIFO;
    break;
  default:
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unsupported entry type 0%o", (unsigned)type);
  }
  img_node *n = tree_add(t, parent, path);
  n->size = st_type == S_IFREG ? (uint64_t)declared : 0;
  return set_meta(n, st_type, e, err);
}

/* ---- layers -------------------------------------------------------------- */

enum layer_comp { COMP_AUTO, COMP_NONE, COMP_GZIP, COMP_ZSTD };

static int media_comp(const char *mt, enum layer_comp *c, cmn_error *err)
{
  static const struct {
    const char *type;
    enum layer_comp comp;
  } known[] = {
      {"application/vnd.oci.image.layer.v1.tar", COMP_NONE},
      {"application/vnd.oci.image.layer.v1.tar+gzip", COMP_GZIP},
      {"application/vnd.oci.image.layer.v1.tar+zstd", COMP_ZSTD},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar", COMP_NONE},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", COMP_GZIP},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", COMP_ZSTD},
      {"application/vnd.docker.image.rootfs.diff.tar.gzip", COMP_GZIP},
      {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", COMP_GZIP},
  };
  if (mt == NULL) {
    *c = COMP_AUTO;
    return 0;
  }
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(mt, known[i].type) == 0) {
      *c = known[i].comp;
      return 0;
    }
  return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unsupported layer media type '%s'", mt);
}

static void archive_freep(struct archive **a)
{
  if (*a)
    archive_read_free(*a);
}
static void entry_freep(struct archive_entry **e)
{
  if (*e)
    archive_entry_free(*e);
}

int img_tree_apply(img_tree *t, const img_layer *layer, cmn_error *err)
{
  const char *lname = layer->digest ? layer->digest : layer->path;
  enum layer_comp comp = COMP_AUTO;
  if (media_comp(layer->media_type, &comp, err) < 0)
    return cmn_err_prefix(err, "layer %s", lname);
  cleanup_close int fd = cmn_open(layer->path, O_RDONLY, 0);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_NOT_FOUND : CMN_INTERNAL, errno,
                         "layer %s: open %s", lname, layer->path);
  __attribute__((cleanup(archive_freep))) struct archive *a = archive_read_new();
  __attribute__((cleanup(entry_freep))) struct archive_entry *e = archive_entry_new();
  if (a == NULL || e == NULL)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "layer %s: out of memory", lname);
  archive_read_support_format_tar(a);
  if (comp == COMP_GZIP || comp == COMP_AUTO)
    archive_read_support_filter_gzip(a);
  if (comp == COMP_ZSTD || comp == COMP_AUTO)
    archive_read_support_filter_zstd(a);
  if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "layer %s: not a %s tar: %s", lname,
                       layer->media_type ? layer->media_type : "readable",
                       archive_error_string(a) ? archive_error_string(a) : "unknown format");
  t->layer++;
  for (;;) {
    int r = archive_read_next_header2(a, e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "layer %s: after %llu entries: %s", lname,
                         (unsigned long long)t->entries_seen,
                         archive_error_string(a) ? archive_error_string(a) : "read error");
    if (++t->entries_seen > t->lim.max_entries) {
      const char *n = archive_entry_pathname(e);
      return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                         "layer %s: entry '%.300s': more than %llu entries in the layers", lname,
                         n ? n : "", (unsigned long long)t->lim.max_entries);
    }
    if (apply_entry(t, a, e, err) < 0) {
      const char *n = archive_entry_pathname(e);
      return cmn_err_prefix(err, "layer %s: entry '%.300s'", lname, n ? n : "");
    }
  }
  return 0;
}
