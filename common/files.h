/* files.h: durable file operations: atomic replace, fsync of files and folders,
 * recursive create and remove, bounded reads, and path building that refuses to
 * leave a root folder. */
#ifndef EMBER_COMMON_FILES_H
#define EMBER_COMMON_FILES_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes data to path through a temp file in the same folder: write, fsync,
 * rename, fsync of the folder. Readers see the old or the new content, never a
 * mix, and the new content survives a crash once this returns 0. */
int cmn_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          cmn_error *err);
/* Like cmn_file_write_atomic without the fsyncs: readers see the old or the new
 * content, but durability is left to the caller, who fsyncs later (for example
 * the snapshot manager fsyncs a whole snapshot folder before marking it). */
int cmn_file_replace(const char *path, const void *data, size_t len, mode_t mode,
                     cmn_error *err);
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
/* Opens with O_CLOEXEC always. */
int cmn_open(const char *path, int flags, mode_t mode);

#endif
