/* guestlink.h: emberd's side of the guest agent protocol (guest/agent_proto.h):
 * one link per running VMM, connected (and reconnected) by a thread of its
 * own, with exec, put and get channels multiplexed on it. Beside the agent
 * core like agent/net: uses common/ and guest/agent_proto.h only.
 *
 * Threads: every function may be called from any thread; the calls on one
 * channel object from one thread at a time (an exec's stdin writer and its
 * event reader may be two threads). Blocking calls take an absolute deadline
 * on CLOCK_MONOTONIC in microseconds (gl_now_us), 0 for none, and return
 * DEADLINE_EXCEEDED when it passes.
 *
 * Errors (cmn_error): UNAVAILABLE when the link is not connected or is lost
 * (the message says why: "the guest agent has not answered", "the VMM
 * stopped", "the guest agent sent a malformed frame"...); the guest's ERROR
 * frames as INVALID_ARGUMENT / NOT_FOUND / PERMISSION_DENIED /
 * RESOURCE_EXHAUSTED / INTERNAL with its message; CANCELLED after
 * gl_link_reset. */
#ifndef EMBER_AGENT_GUESTLINK_H
#define EMBER_AGENT_GUESTLINK_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct gl_link gl_link;
typedef struct gl_exec gl_exec;
typedef struct gl_put gl_put;
typedef struct gl_get gl_get;

typedef enum gl_transport {
  GL_UNIX = 0,         /* a unix stream socket that is the agent's stream (QEMU chardev) */
  GL_HYBRID_VSOCK = 1, /* Firecracker / Cloud Hypervisor: connect, "CONNECT <port>\n", "OK ..." */
} gl_transport;

/* Called from the link's thread on every change of readiness (no lock of the
 * link held): ready with the agent's version, or not ready with why. The last
 * "not ready" comes from gl_link_stop's caller; calls never overlap and none
 * comes after gl_link_stop returns; ready is announced before channels can
 * open. gl_link_stop waits for a running callback: never call it (or drop
 * the last reference) from the callback or holding a lock the callback
 * takes. */
typedef void (*gl_state_fn)(void *opaque, bool ready, const char *version, const char *why);

typedef struct gl_opts {
  gl_transport transport;
  const char *path;         /* the socket */
  uint32_t vsock_port;      /* GL_HYBRID_VSOCK; 0: EMBER_GA_VSOCK_PORT */
  const char *netns_path;   /* unused: unix sockets are reached by path */
  int64_t hello_timeout_ms; /* wait for HELLO_ACK before retrying; 0: 2000 */
  int64_t retry_ms;         /* between connection attempts; 0: 100 */
  gl_state_fn on_state;     /* may be NULL */
  void *opaque;
} gl_opts;

int64_t gl_now_us(void);

/* Starts the link's thread, which connects (retrying while the socket is
 * missing or refuses), says HELLO, and reconnects whenever the connection
 * is lost. Never fails but for bad options (INVALID_ARGUMENT). */
gl_link *gl_link_start(const gl_opts *o, cmn_error *err);
/* Stops the thread, ends every channel with UNAVAILABLE (`why`, or "the
 * guest agent link was closed"), and drops the caller's reference (the
 * memory goes with the last one). NULL is fine. */
void gl_link_stop(gl_link *l, const char *why);
/* References for users other than the owner (an RPC handler holding the
 * link while the owner may stop it): channels of a stopped link fail with
 * UNAVAILABLE. */
gl_link *gl_link_ref(gl_link *l);
void gl_link_unref(gl_link *l);
/* Whether the agent answered on the current connection; version (may be
 * NULL) gets its version. */
bool gl_link_ready(gl_link *l, char *version, size_t n);
/* Waits until ready; UNAVAILABLE with the last reason at the deadline. */
int gl_link_wait_ready(gl_link *l, int64_t deadline_us, cmn_error *err);

/* ---- exec ---- */
typedef struct gl_exec_req {
  const char *const *argv; /* argc >= 1 */
  size_t argc;
  const char *const *env; /* "KEY=VALUE" */
  size_t envc;
  const char *cwd;  /* NULL or "" : default */
  const char *user; /* NULL or "" : default */
  bool tty;
  uint16_t rows, cols;
} gl_exec_req;

/* Opens an exec channel and waits for STARTED (pid) or the guest's ERROR.
 * INVALID_ARGUMENT before sending when the request does not fit a frame
 * (EMBER_GA_MAX_PAYLOAD, EMBER_GA_MAX_ARGS...), naming what. */
gl_exec *gl_exec_start(gl_link *l, const gl_exec_req *req, int64_t deadline_us, int *pid,
                       cmn_error *err);
/* Sends stdin bytes (split into frames), blocking while the window is
 * full. Once the guest sent EXIT, input is dropped and these return 0;
 * stdin_eof, resize and signal wait at most 5 s for the link's writer. */
int gl_exec_stdin(gl_exec *x, const void *buf, size_t len, int64_t deadline_us, cmn_error *err);
int gl_exec_stdin_eof(gl_exec *x, cmn_error *err);
int gl_exec_resize(gl_exec *x, uint16_t rows, uint16_t cols, cmn_error *err);
int gl_exec_signal(gl_exec *x, int signum, cmn_error *err);

typedef enum gl_ev_kind { GL_EV_STDOUT = 1, GL_EV_STDERR = 2, GL_EV_EXIT = 3 } gl_ev_kind;
typedef struct gl_event {
  gl_ev_kind kind;
  uint8_t *data; /* STDOUT/STDERR: malloc'ed, the caller frees */
  size_t len;
  int exit_code; /* EXIT: the code, or -1 when killed by a signal */
  int signum;    /* EXIT: the signal, or 0 */
} gl_event;
/* The next output or the exit: 1 with *ev filled, < 0 on error. Reading
 * output credits the window back to the guest. After EXIT, returns 0. */
int gl_exec_next(gl_exec *x, gl_event *ev, int64_t deadline_us, cmn_error *err);
/* Closes the channel: the guest kills the process group if it still runs. */
void gl_exec_free(gl_exec *x);

/* ---- files ---- */
/* Opens a put channel: the guest opens a temp file beside path (whose
 * directory must exist) and answers READY. */
gl_put *gl_put_start(gl_link *l, const char *path, uint32_t mode, uint64_t size,
                     int64_t deadline_us, cmn_error *err);
int gl_put_write(gl_put *p, const void *buf, size_t len, int64_t deadline_us, cmn_error *err);
/* Sends END and waits for DONE: the file is in place with `size` bytes. */
int gl_put_finish(gl_put *p, int64_t deadline_us, cmn_error *err);
/* Closes the channel; an unfinished put leaves nothing in the guest. */
void gl_put_free(gl_put *p);

gl_get *gl_get_start(gl_link *l, const char *path, int64_t deadline_us, uint64_t *size,
                     uint32_t *mode, cmn_error *err);
/* The next piece: > 0 bytes with *buf malloc'ed (the caller frees), 0 at
 * END, < 0 on error. */
ssize_t gl_get_read(gl_get *g, uint8_t **buf, int64_t deadline_us, cmn_error *err);
void gl_get_free(gl_get *g);

#endif
