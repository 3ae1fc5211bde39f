/* exec.c: `emberctl exec` (ExecInstance, a bidi stream) and `emberctl cp`
 * (CopyToInstance / CopyFromInstance). Rows of the command table are in
 * commands.c.
 *
 * exec: the main thread receives the responses and writes stdout/stderr; an
 * input thread forwards stdin (-i) until EOF, then close_stdin (without -i,
 * close_stdin at once); with -t a third thread waits for SIGWINCH (blocked
 * in every thread by main()) and sends the new size. With -t on a terminal,
 * the local terminal is in raw mode while the command runs and restored
 * before returning: SIGINT/SIGTERM/SIGHUP are blocked and polled (rpc.c), so
 * every way out passes the restore. The exit status is the command's exit
 * code (128+signal when a signal killed it), or the gRPC code of a failed
 * call. */
#include "agent/ctl/ctl.h"

#include "agent/ctl/rpc.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CTL_SVC "/ember.v1.InstanceService/"
#define CTL_EXEC_CHUNK (32 << 10)
#define CTL_CP_CHUNK (256 << 10)
#define CTL_POLL_MS 100

/* ---- exec ---- */

typedef struct ctl__exec {
  ctl_bidi *b;
  const ctl_opts *o;
  atomic_bool done; /* the response loop ended: helper threads stop */
  int in_fd;
} ctl__exec;

static void ctl__exec_send_eof(ctl__exec *x)
{
  Ember__V1__ExecInstanceRequest m = EMBER__V1__EXEC_INSTANCE_REQUEST__INIT;
  m.request_case = EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_CLOSE_STDIN;
  m.close_stdin = true;
  (void)ctl_bidi_send(x->b, &m.base);
}

static void *ctl__exec_input(void *arg)
{
  ctl__exec *x = arg;
  uint8_t *buf = cmn_malloc(CTL_EXEC_CHUNK);
  while (!atomic_load(&x->done)) {
    struct pollfd p = {.fd = x->in_fd, .events = POLLIN};
    int r = poll(&p, 1, CTL_POLL_MS);
    if (r < 0 && errno != EINTR)
      break;
    if (r <= 0)
      continue;
    ssize_t n = read(x->in_fd, buf, CTL_EXEC_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0) {
      ctl__exec_send_eof(x);
      break;
    }
    Ember__V1__ExecInstanceRequest m = EMBER__V1__EXEC_INSTANCE_REQUEST__INIT;
    m.request_case = EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_STDIN;
    m.stdin = (ProtobufCBinaryData){.len = (size_t)n, .data = buf};
    if (ctl_bidi_send(x->b, &m.base) < 0)
      break;
  }
  free(buf);
  return NULL;
}

static bool ctl__term_size(int fd, uint32_t *rows, uint32_t *cols)
{
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0)
    return false;
  *rows = ws.ws_row;
  *cols = ws.ws_col;
  return true;
}

static void *ctl__exec_winch(void *arg)
{
  ctl__exec *x = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGWINCH);
  while (!atomic_load(&x->done)) {
    struct timespec ts = {0, CTL_POLL_MS * 1000000L};
    if (sigtimedwait(&set, NULL, &ts) != SIGWINCH)
      continue;
    Ember__V1__TerminalSize sz = EMBER__V1__TERMINAL_SIZE__INIT;
    if (!ctl__term_size(STDIN_FILENO, &sz.rows, &sz.cols) &&
        !ctl__term_size(STDOUT_FILENO, &sz.rows, &sz.cols))
      continue;
    Ember__V1__ExecInstanceRequest m = EMBER__V1__EXEC_INSTANCE_REQUEST__INIT;
    m.request_case = EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_RESIZE;
    m.resize = &sz;
    if (ctl_bidi_send(x->b, &m.base) < 0)
      break;
  }
  return NULL;
}

static int ctl__write_all(FILE *f, const uint8_t *p, size_t n)
{
  if (n > 0 && fwrite(p, 1, n, f) != n)
    return -1;
  return fflush(f) == 0 ? 0 : -1;
}

int ctl_run_exec(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ExecStart st = EMBER__V1__EXEC_START__INIT;
  Google__Protobuf__Duration tmo = GOOGLE__PROTOBUF__DURATION__INIT;
  st.id = o->args[0];
  st.n_command = (size_t)o->n_exec_cmd;
  st.command = (char **)o->exec_cmd;
  st.n_env = (size_t)o->n_env;
  st.env = (char **)o->env;
  st.working_dir = (char *)(o->workdir ? o->workdir : "");
  st.user = (char *)(o->exec_user ? o->exec_user : "");
  st.tty = o->exec_tty;
  if (o->exec_timeout_ms >= 0) {
    tmo.seconds = o->exec_timeout_ms / 1000;
    tmo.nanos = (int32_t)(o->exec_timeout_ms % 1000) * 1000000;
    st.timeout = &tmo;
  }
  bool raw = false;
  struct termios saved;
  if (o->exec_tty) {
    if (!ctl__term_size(STDIN_FILENO, &st.rows, &st.cols) &&
        !ctl__term_size(STDOUT_FILENO, &st.rows, &st.cols)) {
      st.rows = 24;
      st.cols = 80;
    }
  }
  ctl_bidi *b = ctl_bidi_open(rpc, CTL_SVC "ExecInstance", err);
  if (b == NULL)
    return ctl_fail(err);
  Ember__V1__ExecInstanceRequest first = EMBER__V1__EXEC_INSTANCE_REQUEST__INIT;
  first.request_case = EMBER__V1__EXEC_INSTANCE_REQUEST__REQUEST_START;
  first.start = &st;
  ctl__exec x = {.b = b, .o = o, .in_fd = STDIN_FILENO};
  atomic_init(&x.done, false);
  pthread_t in_th, winch_th;
  bool in_started = false, winch_started = false;
  if (ctl_bidi_send(b, &first.base) == 0) {
    if (!o->exec_interactive)
      ctl__exec_send_eof(&x);
    if (o->exec_tty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
      struct termios t = saved;
      cfmakeraw(&t);
      raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    if (o->exec_interactive)
      in_started = pthread_create(&in_th, NULL, ctl__exec_input, &x) == 0;
    if (o->exec_tty)
      winch_started = pthread_create(&winch_th, NULL, ctl__exec_winch, &x) == 0;
  }
  int code = -1;
  int rc = 0;
  for (;;) {
    ProtobufCMessage *pm = NULL;
    int r = ctl_bidi_recv(b, &ember__v1__exec_instance_response__descriptor, &pm, err);
    if (r <= 0) {
      rc = r;
      break;
    }
    Ember__V1__ExecInstanceResponse *m = (Ember__V1__ExecInstanceResponse *)pm;
    int w = 0;
    if (m->response_case == EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_STDOUT)
      w = ctl__write_all(out, m->stdout.data, m->stdout.len);
    else if (m->response_case == EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_STDERR)
      w = ctl__write_all(stderr, m->stderr.data, m->stderr.len);
    else if (m->response_case == EMBER__V1__EXEC_INSTANCE_RESPONSE__RESPONSE_EXIT)
      code = m->exit->signal != 0 ? 128 + m->exit->signal : m->exit->exit_code;
    protobuf_c_message_free_unpacked(pm, NULL);
    if (w < 0) {
      /* Our stdout is gone (a closed pipe): stop the command. */
      ctl_bidi_cancel(b);
      rc = -1;
      cmn_err_set(err, CMN_CANCELLED, "cannot write the output: %s", cmn_strerror(errno));
      break;
    }
  }
  atomic_store(&x.done, true);
  if (rc == 0)
    rc = ctl_bidi_finish(b, err);
  else
    ctl_bidi_cancel(b);
  if (in_started)
    pthread_join(in_th, NULL);
  if (winch_started)
    pthread_join(winch_th, NULL);
  ctl_bidi_free(b);
  if (raw)
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  if (rc < 0)
    return ctl_fail(err);
  if (code < 0) {
    cmn_err_set(err, CMN_UNKNOWN, "the stream ended without the command's exit");
    return ctl_fail(err);
  }
  return code > 255 ? 255 : code;
}

/* ---- cp ---- */

bool ctl_cp_remote(const char *arg, char **name, const char **path)
{
  if (arg[0] == '/' || arg[0] == '.')
    return false;
  const char *colon = strchr(arg, ':');
  if (colon == NULL || colon == arg || memchr(arg, '/', (size_t)(colon - arg)) != NULL)
    return false;
  *name = cmn_strndup(arg, (size_t)(colon - arg));
  *path = colon + 1;
  return true;
}

typedef struct ctl__cp_to {
  int fd;
  const char *id;
  const char *path;
  uint32_t mode;
  int64_t size;
  bool sent_header;
  uint8_t *buf;
} ctl__cp_to;

static int ctl__cp_to_next(void *opaque, ProtobufCMessage **msg, cmn_error *err)
{
  ctl__cp_to *x = opaque;
  Ember__V1__CopyToInstanceRequest *m = cmn_malloc(sizeof *m);
  ember__v1__copy_to_instance_request__init(m);
  if (!x->sent_header) {
    x->sent_header = true;
    Ember__V1__CopyToHeader *h = cmn_malloc(sizeof *h);
    ember__v1__copy_to_header__init(h);
    h->id = cmn_strdup(x->id);
    h->path = cmn_strdup(x->path);
    h->mode = x->mode;
    h->size = x->size;
    m->request_case = EMBER__V1__COPY_TO_INSTANCE_REQUEST__REQUEST_HEADER;
    m->header = h;
    *msg = &m->base;
    return 1;
  }
  ssize_t n;
  do
    n = read(x->fd, x->buf, CTL_CP_CHUNK);
  while (n < 0 && errno == EINTR);
  if (n <= 0) {
    free(m);
    if (n < 0)
      return cmn_err_errno(err, CMN_INVALID_ARGUMENT, errno, "read");
    return 0;
  }
  m->request_case = EMBER__V1__COPY_TO_INSTANCE_REQUEST__REQUEST_DATA;
  m->data.data = cmn_malloc((size_t)n);
  memcpy(m->data.data, x->buf, (size_t)n);
  m->data.len = (size_t)n;
  *msg = &m->base;
  return 1;
}

static int ctl__cp_into(ctl_rpc *rpc, const char *src, const char *name, const char *gpath,
                        FILE *out, cmn_error *err)
{
  cleanup_close int fd = open(src, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    cmn_err_errno(err, CMN_NOT_FOUND, errno, "open %s", src);
    return CMN_NOT_FOUND;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is not a regular file", src);
    return CMN_INVALID_ARGUMENT;
  }
  cleanup_free char *full = NULL;
  if (gpath[0] != '\0' && gpath[strlen(gpath) - 1] == '/') {
    cleanup_free char *tmp = cmn_strdup(src);
    full = cmn_asprintf("%s%s", gpath, basename(tmp));
    gpath = full;
  }
  ctl__cp_to x = {.fd = fd,
                  .id = name,
                  .path = gpath,
                  .mode = (uint32_t)(sb.st_mode & 07777),
                  .size = (int64_t)sb.st_size,
                  .buf = cmn_malloc(CTL_CP_CHUNK)};
  ProtobufCMessage *resp = NULL;
  int r = ctl_rpc_client_stream(rpc, CTL_SVC "CopyToInstance", ctl__cp_to_next, &x,
                                &ember__v1__copy_to_instance_response__descriptor, &resp, err);
  free(x.buf);
  if (r < 0)
    return ctl_fail(err);
  fprintf(out, "copied %lld bytes to %s:%s\n",
          (long long)((Ember__V1__CopyToInstanceResponse *)resp)->size, name, gpath);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

typedef struct ctl__cp_from {
  int fd;
  bool header;
  int64_t size, got;
  uint32_t mode;
  int werr;
} ctl__cp_from;

static bool ctl__cp_from_msg(const ProtobufCMessage *msg, void *opaque)
{
  ctl__cp_from *x = opaque;
  const Ember__V1__CopyFromInstanceResponse *m = (const Ember__V1__CopyFromInstanceResponse *)msg;
  if (m->response_case == EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__RESPONSE_HEADER) {
    x->header = true;
    x->size = m->header->size;
    x->mode = m->header->mode;
    return true;
  }
  if (m->response_case != EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__RESPONSE_DATA)
    return true;
  const uint8_t *p = m->data.data;
  size_t n = m->data.len;
  while (n > 0) {
    ssize_t w = write(x->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      x->werr = w < 0 ? errno : EIO;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  x->got += (int64_t)m->data.len;
  return true;
}

static int ctl__cp_outof(ctl_rpc *rpc, const char *name, const char *gpath, const char *dst,
                         FILE *out, cmn_error *err)
{
  cleanup_free char *target = NULL;
  struct stat sb;
  if (stat(dst, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    cleanup_free char *tmp = cmn_strdup(gpath);
    target = cmn_asprintf("%s/%s", dst, basename(tmp));
  } else {
    target = cmn_strdup(dst);
  }
  /* Written beside, renamed into place at the end: a failed copy leaves
   * nothing. */
  cleanup_free char *tmpl = cmn_asprintf("%s.emberctl-XXXXXX", target);
  int fd = mkostemp(tmpl, O_CLOEXEC);
  if (fd < 0) {
    cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "cannot create a file beside %s", target);
    return CMN_FAILED_PRECONDITION;
  }
  Ember__V1__CopyFromInstanceRequest req = EMBER__V1__COPY_FROM_INSTANCE_REQUEST__INIT;
  req.id = (char *)name;
  req.path = (char *)gpath;
  ctl__cp_from x = {.fd = fd};
  int r = ctl_rpc_stream(rpc, CTL_SVC "CopyFromInstance", &req.base,
                         &ember__v1__copy_from_instance_response__descriptor, NULL,
                         ctl__cp_from_msg, &x, err);
  if (r == 0 && x.werr != 0)
    r = cmn_err_errno(err, CMN_INTERNAL, x.werr, "write %s", tmpl);
  else if (r == 0 && !x.header)
    r = cmn_err_set(err, CMN_CANCELLED, "interrupted");
  if (r == 0 && (fchmod(fd, x.mode & 07777) != 0 || fsync(fd) != 0))
    r = cmn_err_errno(err, CMN_INTERNAL, errno, "finish %s", tmpl);
  close(fd);
  if (r == 0 && rename(tmpl, target) != 0)
    r = cmn_err_errno(err, CMN_INTERNAL, errno, "rename %s to %s", tmpl, target);
  if (r < 0) {
    unlink(tmpl);
    return ctl_fail(err);
  }
  fprintf(out, "copied %lld bytes from %s:%s to %s\n", (long long)x.got, name, gpath, target);
  return 0;
}

int ctl_run_cp(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  cleanup_free char *sname = NULL, *dname = NULL;
  const char *spath = NULL, *dpath = NULL;
  bool s_remote = ctl_cp_remote(o->args[0], &sname, &spath);
  bool d_remote = ctl_cp_remote(o->args[1], &dname, &dpath);
  if (s_remote == d_remote) {
    cmn_err_set(err, CTL_EXIT_USAGE,
                "cp: exactly one of SRC and DST must be NAME:/path in the guest (a local path "
                "with ':' can be written ./a:b)");
    return CTL_EXIT_USAGE;
  }
  if (s_remote)
    return ctl__cp_outof(rpc, sname, spath, o->args[1], out, err);
  return ctl__cp_into(rpc, o->args[0], dname, dpath, out, err);
}
