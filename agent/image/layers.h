/* layers.h: applies OCI image layers, in order, into a staging tree plus a
 * manifest (internal to agent/image; rootfs.c consumes it).
 *
 * The staging tree holds the CONTENT only: directories (0700), regular files
 * (0600), symbolic links and hard links, all owned by the running user, no
 * device node, no setuid bit. The manifest holds, per entry, what the image
 * says: type, permissions, owner, mtime, xattrs and device numbers;
 * character/block devices and fifos exist only there. rootfs.c writes the
 * metadata into the filesystem image afterwards, so the result does not
 * depend on emberd's privileges.
 *
 * OCI rules (image-spec layer.md): `.wh.<name>` removes <name> of lower
 * layers, `.wh..wh..opq` empties its folder of lower layers' entries, other
 * `.wh..wh.*` names are ignored; an entry replaces a lower one of the same
 * name unless both are folders (then the metadata is updated and contents
 * merge). Every write happens through descriptors opened one component at a
 * time with O_NOFOLLOW, so nothing is ever written through a symbolic link.
 * Refused (INVALID_ARGUMENT naming the layer and the entry): absolute names,
 * `..` components, entries whose folder is a symbolic link or not a folder,
 * hard links that are absolute, use `..`, name a folder or a missing entry,
 * names longer than 255 bytes, paths deeper than 256 folders, unsupported
 * entry types. Exceeding the limits
 * is RESOURCE_EXHAUSTED. */
#ifndef EMBER_AGENT_IMAGE_LAYERS_H
#define EMBER_AGENT_IMAGE_LAYERS_H

#include "agent/image/rootfs.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct img_xattr {
  char *name;
  void *value;
  size_t len;
} img_xattr;

/* One entry of the final tree. Read-only for users of img_tree. */
typedef struct img_node {
  char *path;       /* relative, no leading/trailing '/'; "" for the root */
  const char *name; /* last component of path (inside path) */
  mode_t mode;      /* S_IFMT type | 07777 permissions */
  uint32_t uid, gid;
  unsigned rdev_major, rdev_minor; /* S_IFCHR / S_IFBLK */
  int64_t mtime;
  uint64_t size; /* S_IFREG: content bytes */
  img_xattr *xattrs;
  size_t n_xattrs;
  unsigned layer; /* index of the layer that last wrote it */
  struct img_node *parent, *first_child, *next_sibling, *prev_sibling;
  struct img_node *hnext; /* hash chain */
  uint64_t hash;
} img_node;

typedef struct img_tree img_tree;

/* A new tree staged in dir, which must exist, be empty and belong to the
 * caller. limits may be NULL (defaults). */
img_tree *img_tree_new(const char *dir, const img_rootfs_limits *limits, cmn_error *err);
void img_tree_free(img_tree *t);
/* Applies one layer on top of the tree. On failure the tree is in an
 * unspecified state: throw it (and its staging dir) away. */
int img_tree_apply(img_tree *t, const img_layer *layer, cmn_error *err);
/* The root entry (path ""); walk it through first_child/next_sibling. */
const img_node *img_tree_root(const img_tree *t);
/* The entry at a relative path, NULL when absent. */
const img_node *img_tree_lookup(const img_tree *t, const char *path);
uint64_t img_tree_entries(const img_tree *t); /* entries in the tree, root included */
/* Regular file bytes of the tree, each name counted (an upper bound with hard links). */
uint64_t img_tree_content_bytes(const img_tree *t);
const char *img_tree_dir(const img_tree *t);

#endif
