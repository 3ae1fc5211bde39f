/* qmp.h: a small synchronous client for the QEMU Machine Protocol over a unix
 * socket.
 *
 * QMP is newline-delimited JSON. After the greeting the client negotiates
 * capabilities; then each command carries an "id" and is answered by one
 * {"return":...} or {"error":{"class":...,"desc":...}} with the same id.
 * Asynchronous events ({"event":...}) may arrive at any time, also between a
 * command and its reply; the client queues them so a caller can wait for one
 * later (qemu_qmp_wait_event). Replies to commands that timed out earlier are
 * recognised by id and dropped.
 *
 * One connection is used by one thread at a time (the agent holds the
 * per-instance lock around every driver call). */
#ifndef EMBER_DRIVERS_QEMU_QMP_H
#define EMBER_DRIVERS_QEMU_QMP_H

#include "common/error.h"
#include "common/proc.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct qemu_qmp qemu_qmp;

/* Connects to the QMP socket at path, retrying until it appears and accepts
 * (the VMM creates it shortly after spawn), for up to timeout_ms. When proc is
 * given and that process ends, gives up at once (CMN_UNAVAILABLE). Reads the
 * greeting and runs qmp_capabilities. */
int qemu_qmp_connect(const char *path, const cmn_proc *proc, int timeout_ms, qemu_qmp **out,
                     cmn_error *err);
/* Wraps an already connected stream socket (takes ownership of fd) and runs
 * the greeting and capability negotiation. Used by connect and by tests. */
int qemu_qmp_open_fd(int fd, int timeout_ms, qemu_qmp **out, cmn_error *err);
void qemu_qmp_close(qemu_qmp *q);

/* Runs one command. args (may be NULL) is consumed. pass_fd >= 0 is sent along
 * with the command as SCM_RIGHTS (for getfd / add-fd). On {"return":x}, stores
 * x in *ret (caller frees; ret may be NULL). On {"error":...} fills err with
 * "<command>: <desc>" (CMN_UNIMPLEMENTED for CommandNotFound, else
 * CMN_INTERNAL). A broken connection is CMN_UNAVAILABLE, a timeout
 * CMN_DEADLINE_EXCEEDED. */
int qemu_qmp_execute(qemu_qmp *q, const char *command, cJSON *args, int pass_fd, int timeout_ms,
                     cJSON **ret, cmn_error *err);

/* Waits up to timeout_ms for an event named name (already queued or new).
 * Returns 0 and its "data" (may be NULL; caller frees) in *data. Earlier
 * queued events of other names are kept. */
int qemu_qmp_wait_event(qemu_qmp *q, const char *name, int timeout_ms, cJSON **data,
                        cmn_error *err);
/* True if an event with this name is queued (reads what is already buffered on
 * the socket first, without blocking). */
bool qemu_qmp_has_event(qemu_qmp *q, const char *name);
/* Drops queued events. */
void qemu_qmp_clear_events(qemu_qmp *q);

/* Framing, exposed for unit tests: appends n bytes to the receive buffer and
 * pops the next complete line as parsed JSON (NULL when no complete line yet;
 * a malformed line sets *bad and is dropped). */
void qemu_qmp_feed(qemu_qmp *q, const char *data, size_t n);
cJSON *qemu_qmp_next_message(qemu_qmp *q, bool *bad);

#endif
