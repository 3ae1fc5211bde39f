/* clone.h: private copies of large files (root disks, guest memory, snapshot
 * files) that cost as little as the filesystem allows. */
#ifndef EMBER_COMMON_CLONE_H
#define EMBER_COMMON_CLONE_H

#include "common/error.h"

#include <stdint.h>

typedef enum cmn_clone_method {
  CMN_CLONE_NONE = 0,
  CMN_CLONE_REFLINK = 1, /* FICLONE: shares extents, copy-on-write */
  CMN_CLONE_SPARSE = 2,  /* data ranges copied (SEEK_DATA/SEEK_HOLE), holes kept */
} cmn_clone_method;

/* "reflink" / "sparse" / "none". */
const char *cmn_clone_method_name(cmn_clone_method m);

/* Makes dest a private writable copy of src: FICLONE where the filesystem
 * supports it (btrfs, xfs), else a sparse copy (only the ranges that hold
 * data; copy_file_range, read/write where that cannot). Written under a temp
 * name, fsynced and linked, so dest is whole or absent; an existing dest is
 * ALREADY_EXISTS, a full filesystem RESOURCE_EXHAUSTED. *method (may be NULL)
 * says which way was used, *copied (may be NULL) how many bytes were written
 * (0 for a reflink). */
int cmn_file_clone(const char *src, const char *dest, cmn_clone_method *method, uint64_t *copied,
                   cmn_error *err);

/* Only a reflink: UNIMPLEMENTED (nothing made) where the filesystem cannot,
 * so the caller can choose another copy-on-write way. Same contract
 * otherwise. */
int cmn_file_reflink(const char *src, const char *dest, cmn_error *err);

#endif
