/* files.h: durable file operations: atomic replace, fsync of files and folders,
 * recursive create and remove, bounded reads, and path building that refuses to
 * leave a root folder. */
#ifndef EMBER_COMMON_FILES_H
#define EMBER_COMMON_FILES_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Writes data to path through a temp file in the same folder: write, fsync,
 * rename, fsync of the folder. Readers see the old or the new content, never a
 * mix, and the new content survives a crash once this returns 0. */
int cmn_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          cmn_error *err);
/* Like cmn_file_write_atomic without the fsyncs: readers see the old or the new
 * content, but durability is left to the caller, who fsyncs later (for example
 * the snapshot manager fsyncs a whole snapshot folder before marking it). */
int cmn_file_replace(const char *path, const void *data, size_t len, mode_t mode, cmn_error *err);
/* Reads a whole file of at most max bytes into a NUL-terminated buffer. */
int cmn_file_read(const char *path, size_t max, char **out, size_t *len, cmn_error *err);
/* fsync of one file or folder. */
int cmn_fsync_path(const char *path, cmn_error *err);
/* fsync of the folder that holds path. */
int cmn_fsync_parent(const char *path, cmn_error *err);
/* fsync of every regular file below dir, then of every folder, dir last. */
int cmn_fsync_tree(const char *dir, cmn_error *err);
/* mkdir -p with mode for each created folder. */
int cmn_mkdir_p(const char *path, mode_t mode, cmn_error *err);
/* rm -rf; a missing path is success. Does not follow symlinks. */
int cmn_rm_rf(const char *path, cmn_error *err);
/* rename(2) then fsync of both parent folders. */
int cmn_rename_durable(const char *from, const char *to, cmn_error *err);
bool cmn_path_exists(const char *path);
bool cmn_is_dir(const char *path);
bool cmn_is_regular_file(const char *path);
/* Joins root and a relative part; refuses parts that are absolute or contain a
 * ".." component, so the result stays inside root. Returns NULL on refusal. */
char *cmn_path_join(const char *root, const char *rel, cmn_error *err);
/* Space on the filesystem holding path: free_bytes is what this process may
 * still write (root may use the blocks reserved for root); with describe,
 * desc is "<fstype> at <mount point>" for messages (a read of mountinfo),
 * else NULL. Release with cmn_fs_space_free. */
typedef struct cmn_fs_space {
  uint64_t total_bytes;
  uint64_t free_bytes;
  char *desc;
} cmn_fs_space;
int cmn_fs_space_of(const char *path, bool describe, cmn_fs_space *out, cmn_error *err);
void cmn_fs_space_free(cmn_fs_space *s);
/* RESOURCE_EXHAUSTED with the figures ("<what> needs N MiB on <fs>, which has
 * M MiB free") unless the filesystem of path has need_bytes free (or reports
 * no size at all, as ramfs does). */
int cmn_fs_need(const char *path, uint64_t need_bytes, const char *what, cmn_error *err);
/* Reserves (allocates) the blocks of [0, len) of the open regular file fd
 * (fallocate mode 0: the size grows to len if smaller, content is kept), so
 * that no later write into that range, including through a shared mapping,
 * can fail for lack of space. On a full filesystem: RESOURCE_EXHAUSTED with
 * needed and free figures; on a filesystem that cannot reserve (no fallocate,
 * e.g. some network or copy-on-write filesystems): FAILED_PRECONDITION. A
 * failure may leave part of the range allocated (the caller removes the file
 * when it created it). path is for messages only. */
int cmn_file_reserve(int fd, const char *path, uint64_t len, cmn_error *err);
/* Opens with O_CLOEXEC always. */
int cmn_open(const char *path, int flags, mode_t mode);

#endif
