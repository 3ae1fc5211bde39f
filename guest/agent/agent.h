/* agent.h: ember's guest agent, the in-guest end of
 * guest/agent_proto.h: runs commands (exec channels) and copies files (put
 * and get channels) for emberd. Single-threaded and poll-based: every fd is
 * non-blocking, each channel's data is bounded by its flow-control windows,
 * so a slow channel never stalls the others. docs/guest-agent.md.
 *
 * Built twice: into the boot kit's static init (guest/guest.cmake; init
 * forks it and calls ga_guest_main) and as the host test executable
 * ember_guest_agent (guest/agent/host/main.c). No ember host code here. */
#ifndef EMBER_GUEST_AGENT_H
#define EMBER_GUEST_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest/agent_proto.h"

#define GA_AGENT_NAME "ember-guest-agent 1"

typedef struct ga_options {
  char *const *base_env;    /* NULL-terminated: every exec starts from it */
  const char *default_user; /* an exec without USER runs as this (NULL: the agent's own) */
  const char *default_cwd;  /* an exec without CWD runs here (NULL: the agent's cwd) */
  const char *passwd;       /* users and groups are looked up here */
  const char *group;
  bool may_switch_user; /* root: setgroups/setgid/setuid; else only the agent's own ids */
} ga_options;

/* One line on stderr: "ember-agent: " + message. */
void ga_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Serves the protocol. listen_fd >= 0: a listening stream socket; every
 * accepted connection replaces the current one (a new session: the old one's
 * processes are killed and its temp files removed). conn_fd >= 0: a connected
 * stream (socket or virtio-serial port) to start with. virtio: conn_fd is a
 * virtio-serial port, which reports POLLHUP while the host side is not
 * connected: the session is reset and the port polled again every 50 ms.
 * Returns 0 when conn_fd ended and there is no listen_fd, -1 on a fatal error
 * (logged). Sets PR_SET_CHILD_SUBREAPER: orphans of exec'd processes are
 * reparented to the agent, which reaps them. */
int ga_run(const ga_options *o, int listen_fd, int conn_fd, bool virtio);

/* transport.c: the guest's transport: the virtio-serial port named
 * EMBER_GA_PORT_NAME, else a vsock listener on EMBER_GA_VSOCK_PORT. Returns
 * 0 (one line logged) when neither exists, -1 on a fatal error. */
int ga_guest_main(const ga_options *o);

/* ---- internals shared by agent.c, exec.c and files.c ---- */
typedef enum ga_kind { GA_FREE = 0, GA_EXEC, GA_PUT, GA_GET } ga_kind;

typedef struct ga_chan {
  ga_kind kind;
  uint32_t id;
  uint64_t send_credit;   /* data bytes we may still send */
  uint32_t recv_inflight; /* data bytes received and not credited back */
  uint32_t recv_consumed; /* of those, consumed (to credit with WINDOW) */
  /* exec */
  pid_t pid;
  int in_fd, out_fd, err_fd; /* -1 once closed; tty: in_fd is a dup of out_fd (master) */
  bool tty, in_eof, reaped, last_nl;
  int status;
  uint8_t *inbuf; /* pending stdin, at most EMBER_GA_WINDOW bytes */
  size_t in_off, in_len;
  /* put and get */
  int file_fd;
  char *path, *tmp;
  uint32_t mode;
  uint64_t size, done;
} ga_chan;

typedef struct ga_session {
  const ga_options *o;
  int fd;
  bool established; /* a HELLO was seen since the last bad header */
  uint8_t *in;      /* EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD */
  size_t in_len;
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  ga_chan ch[EMBER_GA_MAX_CHANNELS];
} ga_session;

/* Output below this: channels may produce data frames. */
#define GA_OUT_HIGH (1u << 20)
/* Output above this: the connection is not read (a host that does not read). */
#define GA_OUT_MAX (4u << 20)

/* agent.c */
int ga_send(ga_session *s, uint8_t type, uint32_t channel, const void *payload, size_t len);
/* ERROR {CODE, MSG} on c, then the channel ends (ga_chan_end). */
void ga_fail(ga_session *s, ga_chan *c, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The ERROR code for an errno value. */
uint32_t ga_errno_code(int e);
/* Ends a channel: process group killed, temp file removed, fds closed,
 * memory freed; the slot becomes free. Sends nothing. */
void ga_chan_end(ga_session *s, ga_chan *c);
/* Data consumed on c: credits the host with WINDOW once half the window is. */
void ga_consumed(ga_session *s, ga_chan *c, size_t n);

/* exec.c */
void ga_exec_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
void ga_exec_stdin(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
void ga_exec_stdin_eof(ga_session *s, ga_chan *c);
void ga_exec_resize(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
void ga_exec_signal(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
/* Writes pending stdin (fd writable). */
void ga_exec_flush_stdin(ga_session *s, ga_chan *c);
/* Reads one chunk of stdout (err false) or stderr into a frame. */
void ga_exec_read(ga_session *s, ga_chan *c, bool err);
/* EXIT once the child is reaped and its output reached EOF. */
void ga_exec_maybe_exit(ga_session *s, ga_chan *c);
void ga_exec_end(ga_chan *c);

/* files.c */
void ga_put_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
void ga_put_data(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
void ga_put_finish(ga_session *s, ga_chan *c);
void ga_get_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n);
/* Sends the next DATA (or END) of a get when the window allows. */
void ga_get_pump(ga_session *s, ga_chan *c);
void ga_file_end(ga_chan *c);

#endif
