/* console.h: an instance's serial console file (<instance dir>/console.log):
 * reading ranges by absolute offset, and rotation in place.
 *
 * The VMM appends the guest's output to the file through an fd it keeps open
 * (QEMU's file chardev with append=on; Firecracker and Cloud Hypervisor
 * through a shell `>>`), so the file cannot be renamed or truncated under it
 * without losing bytes or offsets. Rotation therefore punches a hole
 * (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) over the oldest bytes: the size,
 * and so every offset, stays; the disk blocks are freed; concurrent appends
 * land past the hole and are never touched. The first retained byte is found
 * with SEEK_DATA (no state file: it survives restarts by construction).
 *
 * An offset is the byte's position in the file, i.e. in the console's whole
 * history. A filesystem without punch-hole (EOPNOTSUPP) is left alone: the
 * file grows; agent_console_rotate reports it (UNIMPLEMENTED) and the caller
 * logs it once (docs/console.md). */
#ifndef EMBER_AGENT_CONSOLE_H
#define EMBER_AGENT_CONSOLE_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default and least value of the config key console_max_bytes. */
#define AGENT_CONSOLE_DEFAULT_MAX_BYTES (4 * 1024 * 1024)
#define AGENT_CONSOLE_MIN_MAX_BYTES (64 * 1024)

/* Opens the console file for reading (O_NOFOLLOW, non-blocking, must be a
 * regular file). Returns the fd, or < 0: NOT_FOUND when it does not exist
 * (yet), FAILED_PRECONDITION when it is not a regular file, INTERNAL else. */
int agent_console_open(const char *path, cmn_error *err);

/* The retained window [*start, *end) of the open console fd: end is the size,
 * start the first byte not rotated away (== end when nothing is retained). */
int agent_console_window(int fd, int64_t *start, int64_t *end, cmn_error *err);

/* Reads up to cap bytes from offset off. *data_off receives the offset of
 * buf[0]: off, or the retained start when off lies before it (then *skipped =
 * *data_off - off, else 0). Bytes that a rotation running at the same time
 * removes are never returned (the window is checked again after the read).
 * Returns the number of bytes (0: nothing at or after off yet), < 0 on error. */
ssize_t agent_console_read(int fd, int64_t off, void *buf, size_t cap, int64_t *data_off,
                           int64_t *skipped, cmn_error *err);

/* Rotates the console file at path when its allocated size (st_blocks * 512)
 * exceeds max_bytes: punches everything before (size - max_bytes / 2) rounded
 * down to the block size (at least 4096). Returns 1 when it punched, 0 when
 * nothing was needed (or the file does not exist), < 0 on error: UNIMPLEMENTED
 * when the filesystem cannot punch holes (nothing was changed). *start_out
 * (may be NULL) receives the first retained offset after the call. */
int agent_console_rotate(const char *path, int64_t max_bytes, int64_t *start_out, cmn_error *err);

#endif
