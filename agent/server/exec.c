/* exec.c: ExecInstance (proto/ember/v1/instance.proto), a bidi stream over
 * the guest agent link of a running instance (agent/guestlink/guestlink.h),
 * and the pieces the copy RPCs share (copy.c): receiving request messages
 * one at a time on a thread, and waiting for the link to be ready.
 *
 * An exec runs on two threads of its own (srv_call_spawn, counted in
 * s->slow_threads so the server's free waits for them):
 *  - the main thread takes the `start` message, validates it, gets the link,
 *    waits for the agent (ready_timeout), opens the exec channel, sends
 *    `started_pid`, starts the input thread, then reads the channel's events
 *    and pushes stdout/stderr/exit; before each read it waits until the
 *    call's outgoing queue has room (srv_stream_wait_room), so a client that
 *    reads slowly slows the guest process through the link's window instead
 *    of growing emberd's memory. It ends the call right after `exit` (OK), at
 *    ExecStart.timeout (SIGKILL to the process group, DEADLINE_EXCEEDED), or
 *    with the link's error (UNAVAILABLE: standby, VMM stopped...).
 *  - the input thread receives the client's messages (stdin, close_stdin,
 *    resize, signal); a half-close closes stdin.
 * The writer-side calls on the channel (stdin, eof, resize, signal) are
 * serialized by wmu; the reader alone calls gl_exec_next. The channel is
 * freed by whichever thread finishes last (gl_exec_free kills the process
 * group if it still runs): a cancelled call ends both threads within a poll
 * slice, so cancelling kills the process. */
#include "agent/guestlink/guestlink.h"
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <signal.h>
#include <string.h>

/* Bounds of a start message (the guest agent's frame limits). */
#define SRV_EXEC_MAX_BYTES (1u << 20) /* command + env, NULs counted */
#define SRV_EXEC_MAX_ARGS 4096u
#define SRV_EXEC_MAX_PATH 4096u
#define SRV_EXEC_MAX_USER 256u
/* Longest ExecStart.timeout / ready_timeout accepted (a protobuf Duration
 * is bounded at 10000 years; this keeps the arithmetic far from overflow). */
#define SRV_EXEC_MAX_SECONDS (100LL * 365 * 24 * 3600)
#define SRV_EXEC_READY_DEFAULT_US (10 * 1000000LL)
/* The outgoing queue the event reader waits below (the server's overflow
 * bound is SRV_STREAM_QUEUE_BYTES / _MESSAGES, by default 256 KiB / 256). */
#define SRV_EXEC_QUEUE_BYTES (128u << 10)
#define SRV_EXEC_QUEUE_MSGS 64u
/* How often blocked threads look at the call (cancel, timeout, shutdown). */
#define SRV_EXEC_SLICE_US 200000
/* stdin goes to the link in pieces of one data frame at most, so a piece that
 * times out (window full) was not sent and is retried whole. */
#define SRV_EXEC_PIECE (32u << 10)
/* Opening a channel: the agent answers STARTED or ERROR at once. */
#define SRV_EXEC_OPEN_US (30 * 1000000LL)

/* ---- the link ---- */

static int64_t srv__duration_us(const Google__Protobuf__Duration *d)
{
  return (int64_t)d->seconds * 1000000 + d->nanos / 1000;
}

static int srv__check_duration(const Google__Protobuf__Duration *d, const char *field,
                               cmn_error *err)
{
  if (d == NULL)
    return 0;
  if (d->seconds < 0 || d->nanos < 0 || d->nanos > 999999999) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must not be negative", field);
    return cmn_err_field(err, field);
  }
  if (d->seconds > SRV_EXEC_MAX_SECONDS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is longer than 100 years", field);
    return cmn_err_field(err, field);
  }
  return 0;
}

struct gl_link *srv_guest_link(srv_call *c, const char *id, int64_t ready_us, char **id_out,
                               cmn_error *err)
{
  cleanup_free char *iid = NULL;
  gl_link *l = agent_manager_guest_link(c->srv->mgr, id, &iid, err);
  if (l == NULL)
    return NULL;
  /* An open session keeps the instance awake (idle auto-standby); the
   * caller ends it with agent_manager_session_end once done with the link. */
  agent_manager_session_begin(c->srv->mgr, iid);
  int64_t end = srv_now_us() + ready_us;
  for (;;) {
    int64_t slice = gl_now_us() + SRV_EXEC_SLICE_US;
    int64_t left = end - srv_now_us();
    if (left < SRV_EXEC_SLICE_US)
      slice = gl_now_us() + (left > 0 ? left : 0);
    cmn_error e = {0};
    if (gl_link_wait_ready(l, slice, &e) == 0)
      break;
    if (srv_call_gone(c)) {
      gl_link_unref(l);
      agent_manager_session_end(c->srv->mgr, iid);
      return cmn_err_set(err, CMN_CANCELLED, "the call ended"), NULL;
    }
    if (e.code != CMN_UNAVAILABLE && e.code != CMN_DEADLINE_EXCEEDED) {
      *err = e;
      gl_link_unref(l);
      agent_manager_session_end(c->srv->mgr, iid);
      return NULL;
    }
    if (srv_now_us() >= end) {
      cmn_err_set(err, CMN_UNAVAILABLE, "the guest agent of %s is not ready: %s", id,
                  e.msg[0] ? e.msg : "it has not answered");
      gl_link_unref(l);
      agent_manager_session_end(c->srv->mgr, iid);
      return NULL;
    }
  }
  if (id_out != NULL) {
    *id_out = iid;
    iid = NULL;
  }
  return l;
}

/* ---- ExecStart ---- */

int srv_exec_check_start(const Ember__V1__ExecStart *st, cmn_error *err)
{
  if (st->id == NULL || st->id[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "start.id is required (an instance id or name)");
    return cmn_err_field(err, "start.id");
  }
  if (st->n_command == 0 || st->command[0][0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "start.command is required: the program (looked up in PATH) and its arguments");
    return cmn_err_field(err, "start.command");
  }
  size_t cmd_bytes = 0, env_bytes = 0;
  for (size_t i = 0; i < st->n_command; i++)
    cmd_bytes += strlen(st->command[i]) + 1;
  for (size_t i = 0; i < st->n_env; i++)
    env_bytes += strlen(st->env[i]) + 1;
  if (st->n_command > SRV_EXEC_MAX_ARGS || cmd_bytes > SRV_EXEC_MAX_BYTES) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "start.command is too large: %zu arguments, %zu bytes (at most %u and %u)",
                st->n_command, cmd_bytes, SRV_EXEC_MAX_ARGS, SRV_EXEC_MAX_BYTES);
    return cmn_err_field(err, "start.command");
  }
  if (st->n_env > SRV_EXEC_MAX_ARGS || cmd_bytes + env_bytes > SRV_EXEC_MAX_BYTES) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "start.env is too large: %zu entries, %zu bytes with the command (at most %u "
                "entries and %u bytes)",
                st->n_env, cmd_bytes + env_bytes, SRV_EXEC_MAX_ARGS, SRV_EXEC_MAX_BYTES);
    return cmn_err_field(err, "start.env");
  }
  for (size_t i = 0; i < st->n_env; i++) {
    const char *eq = strchr(st->env[i], '=');
    if (eq == NULL || eq == st->env[i]) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "start.env[%zu] is not KEY=VALUE", i);
      return cmn_err_field(err, "start.env");
    }
  }
  if (st->working_dir[0] != '\0' &&
      (st->working_dir[0] != '/' || strlen(st->working_dir) > SRV_EXEC_MAX_PATH)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "start.working_dir must be an absolute path of at most %u bytes",
                SRV_EXEC_MAX_PATH);
    return cmn_err_field(err, "start.working_dir");
  }
  if (strlen(st->user) > SRV_EXEC_MAX_USER) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "start.user is longer than %u bytes", SRV_EXEC_MAX_USER);
    return cmn_err_field(err, "start.user");
  }
  if (st->rows > 65535 || st->cols > 65535) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "start.%s must be at most 65535",
                st->rows > 65535 ? "rows" : "cols");
    return cmn_err_field(err, st->rows > 65535 ? "start.rows" : "start.cols");
  }
  if (srv__check_duration(st->timeout, "start.timeout", err) < 0 ||
      srv__check_duration(st->ready_timeout, "start.ready_timeout", err) < 0)
    return -1;
  return 0;
}

int64_t srv_ready_timeout_us(const Google__Protobuf__Duration *d)
{
  return d != NULL ? srv__duration_us(d) : SRV_EXEC_READY_DEFAULT_US;
}

/* The guest refused the start with INVALID_ARGUMENT: name the field its
 * message is about (the agent says "user ...", "working directory ..."). */
static void srv__exec_guest_field(cmn_error *err)
{
  if (err->code != CMN_INVALID_ARGUMENT || err->field[0] != '\0')
    return;
  if (strstr(err->msg, "user") != NULL || strstr(err->msg, "group") != NULL)
    cmn_err_field(err, "start.user");
  else if (strstr(err->msg, "directory") != NULL || strstr(err->msg, "working") != NULL ||
           strstr(err->msg, "cwd") != NULL)
    cmn_err_field(err, "start.working_dir");
  else if (strstr(err->msg, "env") != NULL)
    cmn_err_field(err, "start.env");
  else
    cmn_err_field(err, "start.command");
}

/* ---- the exec ---- */

typedef struct srv__exec {
  srv_grecv rx; /* first: c->priv points at both */
  pthread_mutex_t mu;
  int users; /* threads using x: the last one frees it */
  bool tty;
  bool exited;         /* EXIT was read: input errors no longer matter */
  pthread_mutex_t wmu; /* serializes the writer-side calls on x */
  gl_exec *x;
  gl_link *link;
  char *id;
} srv__exec;

static void srv__exec_free(void *p)
{
  srv__exec *e = p;
  if (e == NULL)
    return;
  /* Both threads are done (they hold call references): x is freed already
   * unless the input thread never started. */
  if (e->x != NULL)
    gl_exec_free(e->x);
  if (e->link != NULL)
    gl_link_unref(e->link);
  srv_grecv_fini(&e->rx);
  pthread_mutex_destroy(&e->mu);
  pthread_mutex_destroy(&e->wmu);
  free(e->id);
  free(e);
}

/* A thread is done with x; the last one frees the channel (killing the
 * process group if it still runs). */
static void srv__exec_put(srv__exec *e)
{
  pthread_mutex_lock(&e->mu);
  bool last = --e->users == 0;
  gl_exec *x = last ? e->x : NULL;
  if (last)
    e->x = NULL;
  pthread_mutex_unlock(&e->mu);
  if (x != NULL)
    gl_exec_free(x);
}

static void srv__exec_push(srv_call *c, const Ember__V1__ExecInstanceResponse *m)
{
  grpc_byte_buffer *bb = srv_pack_bb(&m->base);
  pthread_mutex_lock(&c->mu);
  srv_stream_push_locked(c, bb);
  pthread_mutex_unlock(&c->mu);
}

static void srv__exec_end(srv_call *c, int code, const char *msg)
{
  pthread_mutex_lock(&c->mu);
  srv_stream_end_locked(c, code, msg);
  pthread_mutex_unlock(&c->mu);
}

/* Writes stdin in pieces, retrying a piece whose deadline passed (window
 * full: the process does not read) until the call ends. */
static int srv__exec_stdin(srv_call *c, srv__exec *e, const uint8_t *p, size_t n, cmn_error *err)
{
  while (n > 0) {
    size_t k = n < SRV_EXEC_PIECE ? n : SRV_EXEC_PIECE;
    for (;;) {
      if (srv_call_gone(c))
        return cmn_err_set(err, CMN_CANCELLED, "the call ended");
      cmn_error e2 = {0};
      pthread_mutex_lock(&e->wmu);
      int r = gl_exec_stdin(e->x, p, k, gl_now_us() + SRV_EXEC_SLICE_US, &e2);
      pthread_mutex_unlock(&e->wmu);
      if (r == 0)
        break;
      if (e2.code != CMN_DEADLINE_EXCEEDED) {
        *err = e2;
        return -1;
      }
    }
    p += k;
    n -= k;
  }
  return 0;
}

/* The input thread: the client's messages after `start`. */
static void *srv__exec_input_main(void *arg)
{
  srv_call *c = arg;
  srv__exec *e = c->priv;
  bool eof = false, stdin_dead = false;
  for (;;) {
    cmn_error err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int r = srv_grecv_next(c, &e->rx, &data, &len, &err);
    if (r < 0) {
      if (err.code != CMN_CANCELLED)
        srv_call_finish_error(c, &err);
      break;
    }
    if (r == 0) {
      /* The client half-closed: no more stdin. */
      if (!eof) {
        pthread_mutex_lock(&e->wmu);
        (void)gl_exec_stdin_eof(e->x, &err);
        pthread_mutex_unlock(&e->wmu);
      }
      break;
    }
    Ember__V1__ExecInstanceRequest *m = ember__v1__exec_instance_request__unpack(NULL, len, data);
    free(data);
    if (m == NULL) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "cannot decode an ExecInstanceRequest");
      srv_call_finish_error(c, &err);
      break;
    }
    int rc = 0;
    switch (m->request_case) {
    case EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_START:
      rc = cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                       "only the first message of ExecInstance carries start");
      cmn_err_field(&err, "start");
      break;
    case EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_STDIN:
      if (eof) {
        rc = cmn_err_set(&err, CMN_INVALID_ARGUMENT, "stdin after close_stdin");
        cmn_err_field(&err, "stdin");
      } else if (!stdin_dead && srv__exec_stdin(c, e, m->stdin.data, m->stdin.len, &err) < 0) {
        if (err.code == CMN_CANCELLED) {
          rc = -1;
        } else {
          /* The process closed its stdin or the link failed (the reader
           * reports the latter): drop the rest of the input. */
          cmn_debug(NULL, "exec", "stdin of an exec on %s dropped: %s", e->id, err.msg);
          stdin_dead = true;
          cmn_err_clear(&err);
        }
      }
      break;
    case EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_CLOSE_STDIN:
      if (m->close_stdin && !eof) {
        eof = true;
        pthread_mutex_lock(&e->wmu);
        if (gl_exec_stdin_eof(e->x, &err) < 0)
          cmn_err_clear(&err);
        pthread_mutex_unlock(&e->wmu);
      }
      break;
    case EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_RESIZE:
      if (m->resize->rows > 65535 || m->resize->cols > 65535) {
        rc = cmn_err_set(&err, CMN_INVALID_ARGUMENT, "resize: rows and cols are at most 65535");
        cmn_err_field(&err, "resize");
      } else if (e->tty) {
        pthread_mutex_lock(&e->wmu);
        if (gl_exec_resize(e->x, (uint16_t)m->resize->rows, (uint16_t)m->resize->cols, &err) < 0)
          cmn_err_clear(&err);
        pthread_mutex_unlock(&e->wmu);
      }
      break;
    case EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_SIGNAL:
      if (m->signal < 1 || m->signal > 64) {
        rc = cmn_err_set(&err, CMN_INVALID_ARGUMENT, "signal %d is not a signal number (1 to 64)",
                         (int)m->signal);
        cmn_err_field(&err, "signal");
      } else {
        pthread_mutex_lock(&e->wmu);
        if (gl_exec_signal(e->x, m->signal, &err) < 0)
          cmn_err_clear(&err);
        pthread_mutex_unlock(&e->wmu);
      }
      break;
    default:
      break;
    }
    ember__v1__exec_instance_request__free_unpacked(m, NULL);
    if (rc < 0) {
      if (err.code != CMN_OK && err.code != CMN_CANCELLED)
        srv_call_finish_error(c, &err);
      break;
    }
  }
  srv__exec_put(e);
  srv_call_thread_done(c);
  return NULL;
}

/* Reads the events until the exit, the timeout, the link's failure or the
 * call's end. */
static void srv__exec_pump(srv_call *c, srv__exec *e, int64_t timeout_us)
{
  int64_t kill_at = timeout_us > 0 ? srv_now_us() + timeout_us : 0;
  for (;;) {
    int64_t now = srv_now_us();
    if (kill_at > 0 && now >= kill_at) {
      cmn_error err = {0};
      pthread_mutex_lock(&e->wmu);
      (void)gl_exec_signal(e->x, SIGKILL, &err);
      pthread_mutex_unlock(&e->wmu);
      cleanup_free char *msg =
          cmn_asprintf("the command ran longer than its timeout (%.6gs) and was killed",
                       (double)timeout_us / 1e6);
      cmn_info(NULL, "exec", "exec on %s: %s", e->id, msg);
      srv__exec_end(c, CMN_DEADLINE_EXCEEDED, msg);
      return;
    }
    int64_t slice = now + SRV_EXEC_SLICE_US;
    if (kill_at > 0 && kill_at < slice)
      slice = kill_at;
    int w = srv_stream_wait_room(c, SRV_EXEC_QUEUE_BYTES, SRV_EXEC_QUEUE_MSGS, slice);
    if (w < 0)
      return; /* cancelled, deadline, shutdown, or ended by the input thread */
    if (w == 0)
      continue;
    pthread_mutex_lock(&c->srv->mu);
    bool down = c->srv->shutting_down;
    pthread_mutex_unlock(&c->srv->mu);
    if (down)
      return;
    gl_event ev;
    memset(&ev, 0, sizeof ev);
    cmn_error err = {0};
    int r = gl_exec_next(e->x, &ev, gl_now_us() + (slice - srv_now_us()), &err);
    if (r < 0 && err.code == CMN_DEADLINE_EXCEEDED)
      continue;
    if (r < 0) {
      cmn_info(NULL, "exec", "exec on %s ended: %s", e->id, err.msg);
      srv_call_finish_error(c, &err);
      return;
    }
    if (r == 0) {
      srv__exec_end(c, CMN_OK, NULL);
      return;
    }
    Ember__V1__ExecInstanceResponse out = EMBER__V1__EXEC_INSTANCE_RESPONSE__INIT;
    Ember__V1__ExecExit ex = EMBER__V1__EXEC_EXIT__INIT;
    if (ev.kind == GL_EV_STDOUT || ev.kind == GL_EV_STDERR) {
      if (ev.kind == GL_EV_STDOUT) {
        out.response_case = EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_STDOUT;
        out.stdout = (ProtobufCBinaryData){.len = ev.len, .data = ev.data};
      } else {
        out.response_case = EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_STDERR;
        out.stderr = (ProtobufCBinaryData){.len = ev.len, .data = ev.data};
      }
      srv__exec_push(c, &out);
      free(ev.data);
      continue;
    }
    free(ev.data);
    if (ev.kind != GL_EV_EXIT)
      continue;
    pthread_mutex_lock(&e->mu);
    e->exited = true;
    pthread_mutex_unlock(&e->mu);
    ex.signal = ev.signum;
    ex.exit_code = ev.signum != 0 ? 128 + ev.signum : ev.exit_code;
    out.response_case = EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_EXIT;
    out.exit = &ex;
    srv__exec_push(c, &out);
    srv__exec_end(c, CMN_OK, NULL);
    return;
  }
}

static void *srv__exec_main(void *arg)
{
  srv_call *c = arg;
  srv__exec *e = c->priv;
  cmn_error err = {0};
  srv_stream_register(c, SRV_STREAM_GUEST);
  uint8_t *data = NULL;
  size_t len = 0;
  Ember__V1__ExecInstanceRequest *m = NULL;
  int r = srv_grecv_next(c, &e->rx, &data, &len, &err);
  if (r == 0) {
    cmn_err_set(&err, CMN_INVALID_ARGUMENT, "the stream ended before its start message");
    cmn_err_field(&err, "start");
  } else if (r > 0) {
    m = ember__v1__exec_instance_request__unpack(NULL, len, data);
    if (m == NULL) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "cannot decode an ExecInstanceRequest");
    } else if (m->request_case != EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_START) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                  "the first message of ExecInstance must carry start (what to run)");
      cmn_err_field(&err, "start");
    } else {
      srv_exec_check_start(m->start, &err);
    }
  }
  free(data);
  const Ember__V1__ExecStart *st = err.code == CMN_OK && m != NULL ? m->start : NULL;
  if (st != NULL) {
    e->tty = st->tty;
    e->link = srv_guest_link(c, st->id, srv_ready_timeout_us(st->ready_timeout), &e->id, &err);
  }
  int pid = 0;
  if (st != NULL && err.code == CMN_OK) {
    gl_exec_req req = {
        .argv = (const char *const *)st->command,
        .argc = st->n_command,
        .env = (const char *const *)st->env,
        .envc = st->n_env,
        .cwd = st->working_dir,
        .user = st->user,
        .tty = st->tty,
        .rows = (uint16_t)(st->tty && st->rows == 0 ? 24 : st->rows),
        .cols = (uint16_t)(st->tty && st->cols == 0 ? 80 : st->cols),
    };
    e->x = gl_exec_start(e->link, &req, gl_now_us() + SRV_EXEC_OPEN_US, &pid, &err);
    if (e->x == NULL)
      srv__exec_guest_field(&err);
  }
  if (st != NULL && err.code == CMN_OK) {
    cmn_debug(NULL, "exec", "exec of %s on %s: pid %d in the guest%s", st->command[0], e->id, pid,
              e->tty ? " (tty)" : "");
    Ember__V1__ExecInstanceResponse out = EMBER__V1__EXEC_INSTANCE_RESPONSE__INIT;
    out.response_case = EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_STARTED_PID;
    out.started_pid = pid;
    srv__exec_push(c, &out);
    int64_t timeout_us = st->timeout != NULL ? srv__duration_us(st->timeout) : 0;
    if (st->timeout != NULL && timeout_us == 0)
      timeout_us = 1; /* a zero timeout kills at once */
    st = NULL;
    ember__v1__exec_instance_request__free_unpacked(m, NULL);
    m = NULL;
    e->users = 2;
    srv_call_spawn(c, srv__exec_input_main);
    srv__exec_pump(c, e, timeout_us);
    srv__exec_put(e);
  } else if (err.code != CMN_CANCELLED) {
    srv_call_finish_error(c, &err);
  }
  if (m != NULL)
    ember__v1__exec_instance_request__free_unpacked(m, NULL);
  if (e->link != NULL)
    agent_manager_session_end(c->srv->mgr, e->id); /* srv_guest_link began it */
  srv_call_thread_done(c);
  return NULL;
}

void srv_exec_start(srv_call *c)
{
  srv__exec *e = cmn_calloc(1, sizeof *e);
  srv_grecv_init(&e->rx);
  pthread_mutex_init(&e->mu, NULL);
  pthread_mutex_init(&e->wmu, NULL);
  srv_grecv_attach(c, &e->rx, srv__exec_free);
  srv_call_spawn(c, srv__exec_main);
}
