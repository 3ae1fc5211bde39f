/* test_guest_agent.c: CUnit tests of the guest agent (guest/agent) through
 * its host program ember_guest_agent --listen, spoken to with a small client
 * written here on guest/agent_proto.h: the session (HELLO with stale bytes,
 * resync after garbage, a new connection ending the previous session), exec
 * (output, exit codes, stdin, stderr, terminals, signals, CLOSE, errors,
 * flow control on 10 MB of output, the channel limit) and files (put and get
 * of 10 MB, a size mismatch, missing directories, a directory). */
#include "guest/agent_proto.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 20000

static char tmp_root[64];
static char sock_path[128];
static pid_t agent_pid = -1;
static uint64_t nonce_seq = 0x1122334455667788ull;

typedef struct frame {
  ember_ga_hdr h;
  uint8_t *p;
} frame;

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const void *buf, size_t n)
{
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      fprintf(stderr, "write to the agent: %s\n", w < 0 ? "error" : "closed");
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void send_frame(int fd, uint8_t type, uint32_t ch, const void *p, size_t n)
{
  uint8_t h[EMBER_GA_HEADER];
  ember_ga_hdr_encode(h, type, ch, (uint32_t)n);
  write_all(fd, h, sizeof(h));
  if (n > 0)
    write_all(fd, p, n);
}

/* Reads exactly n bytes within the deadline: 0, or -1 (timeout, EOF). */
static int read_full(int fd, uint8_t *buf, size_t n, int64_t deadline)
{
  size_t got = 0;
  while (got < n) {
    int left = (int)(deadline - now_ms());
    if (left <= 0)
      return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, left) <= 0)
      continue;
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

/* The next frame within timeout ms: 0, or -1. f->p is malloc'ed. */
static int recv_frame(int fd, frame *f, int timeout)
{
  uint8_t h[EMBER_GA_HEADER];
  int64_t deadline = now_ms() + timeout;
  f->p = NULL;
  if (read_full(fd, h, sizeof(h), deadline) < 0)
    return -1;
  if (ember_ga_hdr_decode(h, &f->h) < 0) {
    fprintf(stderr, "bad header from the agent\n");
    return -1;
  }
  f->p = malloc(f->h.length + 1);
  if (read_full(fd, f->p, f->h.length, deadline + 5000) < 0) {
    free(f->p);
    f->p = NULL;
    return -1;
  }
  f->p[f->h.length] = 0;
  return 0;
}

static bool rec_u64(const frame *f, uint16_t want, uint64_t *out)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, f->p, f->h.length);
  uint16_t tag;
  const uint8_t *v;
  size_t n;
  while (ember_ga_rd_next(&r, &tag, &v, &n) > 0) {
    if (tag != want)
      continue;
    if (n == 8)
      *out = ember_ga_get64(v);
    else if (n == 4)
      *out = ember_ga_get32(v);
    else if (n == 2)
      *out = ember_ga_get16(v);
    else if (n == 1)
      *out = v[0];
    else
      return false;
    return true;
  }
  return false;
}

static uint32_t error_code(const frame *f)
{
  uint64_t c = 0;
  return f->h.type == EMBER_GA_T_ERROR && rec_u64(f, EMBER_GA_R_CODE, &c) ? (uint32_t)c : 0;
}

static int connect_agent(void)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
  for (int i = 0; i < 200; i++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
      return fd;
    if (fd >= 0)
      close(fd);
    usleep(20000);
  }
  return -1;
}

/* HELLO and the HELLO_ACK with its nonce (everything before it skipped). */
static bool hello(int fd)
{
  uint64_t nonce = ++nonce_seq;
  uint8_t buf[64];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, EMBER_GA_R_VERSION, EMBER_GA_VERSION);
  ember_ga_wr_u64(&w, EMBER_GA_R_NONCE, nonce);
  send_frame(fd, EMBER_GA_T_HELLO, 0, buf, w.len);
  frame f;
  while (recv_frame(fd, &f, TIMEOUT_MS) == 0) {
    uint64_t n = 0;
    bool ok = f.h.type == EMBER_GA_T_HELLO_ACK && rec_u64(&f, EMBER_GA_R_NONCE, &n) && n == nonce;
    free(f.p);
    if (ok)
      return true;
  }
  return false;
}

static int session(void)
{
  int fd = connect_agent();
  CU_ASSERT_FATAL(fd >= 0);
  CU_ASSERT_FATAL(hello(fd));
  return fd;
}

typedef struct exec_opts {
  const char *env, *cwd, *user;
  bool tty;
  uint16_t rows, cols;
} exec_opts;

static void send_exec(int fd, uint32_t ch, const char *const *argv, const exec_opts *o)
{
  uint8_t *buf = malloc(EMBER_GA_MAX_PAYLOAD);
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, EMBER_GA_MAX_PAYLOAD);
  for (size_t i = 0; argv[i] != NULL; i++)
    ember_ga_wr_str(&w, EMBER_GA_R_ARG, argv[i]);
  if (o != NULL && o->env)
    ember_ga_wr_str(&w, EMBER_GA_R_ENV, o->env);
  if (o != NULL && o->cwd)
    ember_ga_wr_str(&w, EMBER_GA_R_CWD, o->cwd);
  if (o != NULL && o->user)
    ember_ga_wr_str(&w, EMBER_GA_R_USER, o->user);
  if (o != NULL && o->tty) {
    ember_ga_wr_u8(&w, EMBER_GA_R_TTY, 1);
    ember_ga_wr_u16(&w, EMBER_GA_R_ROWS, o->rows);
    ember_ga_wr_u16(&w, EMBER_GA_R_COLS, o->cols);
  }
  send_frame(fd, EMBER_GA_T_EXEC, ch, buf, w.len);
  free(buf);
}

static void send_u32(int fd, uint8_t type, uint32_t ch, uint16_t tag, uint32_t v)
{
  uint8_t buf[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, tag, v);
  send_frame(fd, type, ch, buf, w.len);
}

typedef struct result {
  bool started, exited;
  uint32_t pid, error; /* error: an ERROR's code */
  int exit_code, signum;
  char out[8192], err[8192];
  size_t nout, nerr;
} result;

static void append(char *dst, size_t *n, size_t cap, const uint8_t *p, size_t len)
{
  size_t k = len < cap - 1 - *n ? len : cap - 1 - *n;
  memcpy(dst + *n, p, k);
  *n += k;
  dst[*n] = 0;
}

/* Frames of channel ch until EXIT or ERROR (output credited at once); with
 * stop_at_start, returns at STARTED. */
static void collect(int fd, uint32_t ch, result *r, bool stop_at_start)
{
  frame f;
  while (recv_frame(fd, &f, TIMEOUT_MS) == 0) {
    if (f.h.channel != ch) {
      free(f.p);
      continue;
    }
    uint64_t v = 0;
    bool done = false;
    switch (f.h.type) {
    case EMBER_GA_T_STARTED:
      r->started = true;
      if (rec_u64(&f, EMBER_GA_R_PID, &v))
        r->pid = (uint32_t)v;
      done = stop_at_start;
      break;
    case EMBER_GA_T_STDOUT:
      append(r->out, &r->nout, sizeof(r->out), f.p, f.h.length);
      send_u32(fd, EMBER_GA_T_WINDOW, ch, EMBER_GA_R_BYTES, f.h.length);
      break;
    case EMBER_GA_T_STDERR:
      append(r->err, &r->nerr, sizeof(r->err), f.p, f.h.length);
      send_u32(fd, EMBER_GA_T_WINDOW, ch, EMBER_GA_R_BYTES, f.h.length);
      break;
    case EMBER_GA_T_EXIT:
      r->exited = true;
      r->exit_code = rec_u64(&f, EMBER_GA_R_EXIT_CODE, &v) ? (int)v : -1;
      r->signum = rec_u64(&f, EMBER_GA_R_SIGNUM, &v) ? (int)v : 0;
      done = true;
      break;
    case EMBER_GA_T_ERROR:
      r->error = error_code(&f);
      done = true;
      break;
    default:
      break;
    }
    free(f.p);
    if (done)
      return;
  }
  fprintf(stderr, "channel %u: timeout or connection lost\n", (unsigned)ch);
}

static result *run(int fd, uint32_t ch, const char *const *argv, const exec_opts *o)
{
  result *r = calloc(1, sizeof(*r));
  send_exec(fd, ch, argv, o);
  collect(fd, ch, r, false);
  return r;
}

/* True once pid is gone (killed and reaped) within 5 s. */
static bool pid_gone(pid_t pid)
{
  for (int i = 0; i < 250; i++) {
    if (kill(pid, 0) < 0 && errno == ESRCH)
      return true;
    usleep(20000);
  }
  return false;
}

static bool agent_alive(void) { return waitpid(agent_pid, NULL, WNOHANG) == 0; }

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-gagent-XXXXXX");
  if (mkdtemp(tmp_root) == NULL)
    return -1;
  snprintf(sock_path, sizeof sock_path, "%s/agent.sock", tmp_root);
  agent_pid = fork();
  if (agent_pid < 0)
    return -1;
  if (agent_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execl(EMBER_GUEST_AGENT_BIN, "ember_guest_agent", "--listen", sock_path, (char *)NULL);
    _exit(127);
  }
  return 0;
}

static int suite_clean(void)
{
  if (agent_pid > 0) {
    kill(agent_pid, SIGTERM);
    waitpid(agent_pid, NULL, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
  int r = system(cmd);
  (void)r;
  return 0;
}

static void test_hello_stale(void)
{
  int fd = connect_agent();
  CU_ASSERT_FATAL(fd >= 0);
  /* Stale bytes: garbage, a half header, an EXEC of an older connection. */
  static const char junk[] = "\x01\x02garbage EMG\x45\x4d\x47";
  write_all(fd, junk, sizeof(junk) - 1);
  const char *argv[] = {"sh", "-c", "echo stale", NULL};
  send_exec(fd, 7, argv, NULL);
  CU_ASSERT_TRUE(hello(fd));
  /* The stale EXEC never ran: nothing on channel 7; PING answers. */
  send_u32(fd, EMBER_GA_T_PING, 0, EMBER_GA_R_NONCE, 99);
  frame f;
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(f.h.type, EMBER_GA_T_PONG);
  CU_ASSERT_EQUAL(f.h.channel, 0);
  free(f.p);
  close(fd);
}

static void test_exec_basic(void)
{
  int fd = session();
  const char *echo[] = {"echo", "hi", NULL};
  result *r = run(fd, 1, echo, NULL);
  CU_ASSERT_TRUE(r->started);
  CU_ASSERT_TRUE(r->pid > 0);
  CU_ASSERT_STRING_EQUAL(r->out, "hi\n");
  CU_ASSERT_TRUE(r->exited);
  CU_ASSERT_EQUAL(r->exit_code, 0);
  free(r);

  const char *three[] = {"sh", "-c", "exit 3", NULL};
  r = run(fd, 1, three, NULL);
  CU_ASSERT_TRUE(r->exited);
  CU_ASSERT_EQUAL(r->exit_code, 3);
  free(r);

  const char *term[] = {"sh", "-c", "kill -TERM $$", NULL};
  r = run(fd, 2, term, NULL);
  CU_ASSERT_TRUE(r->exited);
  CU_ASSERT_EQUAL(r->signum, SIGTERM);
  free(r);

  const char *err[] = {"sh", "-c", "echo oops >&2; echo out", NULL};
  r = run(fd, 3, err, NULL);
  CU_ASSERT_STRING_EQUAL(r->err, "oops\n");
  CU_ASSERT_STRING_EQUAL(r->out, "out\n");
  CU_ASSERT_EQUAL(r->exit_code, 0);
  free(r);

  const char *env[] = {"sh", "-c", "echo \"$EMBER_T\"; pwd", NULL};
  exec_opts o = {.env = "EMBER_T=a=b", .cwd = tmp_root};
  r = run(fd, 4, env, &o);
  char want[256];
  snprintf(want, sizeof want, "a=b\n%s\n", tmp_root);
  CU_ASSERT_STRING_EQUAL(r->out, want);
  free(r);
  close(fd);
}

static void test_exec_stdin(void)
{
  int fd = session();
  const char *cat[] = {"cat", NULL};
  send_exec(fd, 5, cat, NULL);
  result r = {0};
  collect(fd, 5, &r, true);
  CU_ASSERT_TRUE_FATAL(r.started);
  send_frame(fd, EMBER_GA_T_STDIN, 5, "abc\n", 4);
  send_frame(fd, EMBER_GA_T_STDIN, 5, "def", 3);
  send_frame(fd, EMBER_GA_T_STDIN_EOF, 5, NULL, 0);
  collect(fd, 5, &r, false);
  CU_ASSERT_STRING_EQUAL(r.out, "abc\ndef");
  CU_ASSERT_TRUE(r.exited);
  CU_ASSERT_EQUAL(r.exit_code, 0);
  close(fd);
}

static void test_exec_tty(void)
{
  int fd = session();
  const char *size[] = {"sh", "-c", "tty; stty size", NULL};
  exec_opts o = {.tty = true, .rows = 33, .cols = 101};
  result *r = run(fd, 1, size, &o);
  CU_ASSERT_TRUE(r->exited);
  CU_ASSERT_EQUAL(r->exit_code, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(r->out, "/dev/pts/"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r->out, "33 101"));
  CU_ASSERT_EQUAL(r->nerr, 0);
  free(r);

  /* RESIZE, then a line on stdin; STDIN_EOF ends cat on a terminal. */
  const char *resize[] = {"sh", "-c", "read x; stty size; cat", NULL};
  send_exec(fd, 2, resize, &o);
  result r2 = {0};
  collect(fd, 2, &r2, true);
  uint8_t buf[32];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u16(&w, EMBER_GA_R_ROWS, 40);
  ember_ga_wr_u16(&w, EMBER_GA_R_COLS, 120);
  send_frame(fd, EMBER_GA_T_RESIZE, 2, buf, w.len);
  send_frame(fd, EMBER_GA_T_STDIN, 2, "go\n", 3);
  send_frame(fd, EMBER_GA_T_STDIN_EOF, 2, NULL, 0);
  collect(fd, 2, &r2, false);
  CU_ASSERT_PTR_NOT_NULL(strstr(r2.out, "40 120"));
  CU_ASSERT_TRUE(r2.exited);
  CU_ASSERT_EQUAL(r2.exit_code, 0);
  close(fd);
}

static void test_exec_signal_close(void)
{
  int fd = session();
  const char *sleep_[] = {"sleep", "1000", NULL};
  send_exec(fd, 1, sleep_, NULL);
  result r = {0};
  collect(fd, 1, &r, true);
  CU_ASSERT_TRUE_FATAL(r.started);
  send_u32(fd, EMBER_GA_T_SIGNAL, 1, EMBER_GA_R_SIGNUM, SIGKILL);
  collect(fd, 1, &r, false);
  CU_ASSERT_TRUE(r.exited);
  CU_ASSERT_EQUAL(r.signum, SIGKILL);

  /* CLOSE: the process group is killed, nothing more on the channel. */
  const char *group[] = {"sh", "-c", "sleep 1000 & echo $!; wait", NULL};
  send_exec(fd, 2, group, NULL);
  result r2 = {0};
  collect(fd, 2, &r2, true);
  CU_ASSERT_TRUE_FATAL(r2.started);
  frame f;
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(f.h.type, EMBER_GA_T_STDOUT);
  pid_t child = (pid_t)strtol((char *)f.p, NULL, 10);
  free(f.p);
  CU_ASSERT_TRUE_FATAL(child > 0);
  send_frame(fd, EMBER_GA_T_CLOSE, 2, NULL, 0);
  CU_ASSERT_TRUE(pid_gone((pid_t)r2.pid));
  CU_ASSERT_TRUE(pid_gone(child));
  /* The channel number is free again and the link still works. */
  const char *echo[] = {"echo", "again", NULL};
  result *r3 = run(fd, 2, echo, NULL);
  CU_ASSERT_STRING_EQUAL(r3->out, "again\n");
  free(r3);
  close(fd);
}

static void test_exec_errors(void)
{
  int fd = session();
  const char *none[] = {"/no/such/program", NULL};
  result *r = run(fd, 1, none, NULL);
  CU_ASSERT_FALSE(r->started);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_NOT_FOUND);
  free(r);
  const char *nopath[] = {"no-such-program-ember", NULL};
  r = run(fd, 1, nopath, NULL);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_NOT_FOUND);
  free(r);
  const char *echo[] = {"echo", NULL};
  exec_opts o = {.cwd = "/no/such/dir"};
  r = run(fd, 2, echo, &o);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_NOT_FOUND);
  free(r);
  exec_opts u = {.user = "no-such-user-ember"};
  r = run(fd, 3, echo, &u);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_NO_USER);
  free(r);
  /* Root switches users; anyone else may only run as itself. */
  const char *id[] = {"id", "-u", NULL};
  if (geteuid() == 0) {
    exec_opts nobody = {.user = "65534:65534"};
    r = run(fd, 4, id, &nobody);
    CU_ASSERT_STRING_EQUAL(r->out, "65534\n");
  } else {
    exec_opts root = {.user = "0:0"};
    r = run(fd, 4, id, &root);
    CU_ASSERT_EQUAL(r->error, EMBER_GA_E_PERMISSION);
  }
  free(r);
  /* No ARG, a NUL in a string, channel 0. */
  send_frame(fd, EMBER_GA_T_EXEC, 5, NULL, 0);
  frame f;
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(error_code(&f), EMBER_GA_E_INVALID);
  free(f.p);
  uint8_t buf[32];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_bytes(&w, EMBER_GA_R_ARG, "ec\0ho", 5);
  send_frame(fd, EMBER_GA_T_EXEC, 5, buf, w.len);
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(error_code(&f), EMBER_GA_E_INVALID);
  free(f.p);
  send_exec(fd, 0, echo, NULL);
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(error_code(&f), EMBER_GA_E_INVALID);
  free(f.p);
  close(fd);
}

/* 10 MB of output: the agent stops at the window until credited. */
static void test_exec_window(void)
{
  int fd = session();
  const char *head[] = {"head", "-c", "10485760", "/dev/zero", NULL};
  send_exec(fd, 9, head, NULL);
  size_t held = 0, total = 0;
  frame f;
  bool exited = false;
  while (recv_frame(fd, &f, 1000) == 0) { /* no WINDOW sent: quiet after the window */
    if (f.h.type == EMBER_GA_T_STDOUT)
      held += f.h.length;
    free(f.p);
  }
  CU_ASSERT_EQUAL(held, EMBER_GA_WINDOW);
  total = held;
  send_u32(fd, EMBER_GA_T_WINDOW, 9, EMBER_GA_R_BYTES, (uint32_t)held);
  while (!exited && recv_frame(fd, &f, TIMEOUT_MS) == 0) {
    if (f.h.type == EMBER_GA_T_STDOUT) {
      total += f.h.length;
      send_u32(fd, EMBER_GA_T_WINDOW, 9, EMBER_GA_R_BYTES, f.h.length);
    } else if (f.h.type == EMBER_GA_T_EXIT) {
      uint64_t code = 99;
      CU_ASSERT_TRUE(rec_u64(&f, EMBER_GA_R_EXIT_CODE, &code));
      CU_ASSERT_EQUAL(code, 0);
      exited = true;
    }
    free(f.p);
  }
  CU_ASSERT_TRUE(exited);
  CU_ASSERT_EQUAL(total, 10485760u);
  close(fd);
}

/* PUT of n bytes respecting the agent's window; returns the final frame
 * (DONE or ERROR) type and code. */
static uint8_t put_file(int fd, uint32_t ch, const char *path, const uint8_t *data, size_t n,
                        uint64_t announced, uint32_t *code)
{
  uint8_t buf[4200];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, path);
  ember_ga_wr_u32(&w, EMBER_GA_R_MODE, 0640);
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, announced);
  send_frame(fd, EMBER_GA_T_PUT, ch, buf, w.len);
  frame f;
  *code = 0;
  if (recv_frame(fd, &f, TIMEOUT_MS) < 0)
    return 0;
  uint8_t t = f.h.type;
  *code = error_code(&f);
  free(f.p);
  if (t != EMBER_GA_T_READY)
    return t;
  size_t off = 0, inflight = 0;
  while (off < n) {
    size_t k = n - off < EMBER_GA_MAX_DATA ? n - off : EMBER_GA_MAX_DATA;
    while (inflight + k > EMBER_GA_WINDOW) {
      if (recv_frame(fd, &f, TIMEOUT_MS) < 0)
        return 0;
      uint64_t b = 0;
      if (f.h.type == EMBER_GA_T_WINDOW && rec_u64(&f, EMBER_GA_R_BYTES, &b))
        inflight -= b;
      else if (f.h.type == EMBER_GA_T_ERROR) {
        *code = error_code(&f);
        free(f.p);
        return EMBER_GA_T_ERROR;
      }
      free(f.p);
    }
    send_frame(fd, EMBER_GA_T_DATA, ch, data + off, k);
    off += k;
    inflight += k;
  }
  send_frame(fd, EMBER_GA_T_END, ch, NULL, 0);
  while (recv_frame(fd, &f, TIMEOUT_MS) == 0) {
    t = f.h.type;
    *code = error_code(&f);
    free(f.p);
    if (t == EMBER_GA_T_DONE || t == EMBER_GA_T_ERROR)
      return t;
  }
  return 0;
}

static size_t count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  size_t n = 0;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  if (d != NULL)
    closedir(d);
  return n;
}

static void test_put_get(void)
{
  int fd = session();
  size_t n = 10u << 20;
  uint8_t *data = malloc(n);
  uint32_t x = 12345;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    data[i] = (uint8_t)(x >> 16);
  }
  char dir[128], path[160];
  snprintf(dir, sizeof dir, "%s/files", tmp_root);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/big.bin", dir);
  uint32_t code = 0;
  CU_ASSERT_EQUAL(put_file(fd, 3, path, data, n, n, &code), EMBER_GA_T_DONE);
  struct stat st;
  CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
  CU_ASSERT_EQUAL(st.st_size, (off_t)n);
  CU_ASSERT_EQUAL(st.st_mode & 07777, 0640);
  CU_ASSERT_EQUAL(count_entries(dir), 1); /* no temp file left */

  /* GET it back, crediting as we go. */
  uint8_t buf[4200];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, path);
  send_frame(fd, EMBER_GA_T_GET, 4, buf, w.len);
  frame f;
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL_FATAL(f.h.type, EMBER_GA_T_INFO);
  uint64_t size = 0, mode = 0;
  CU_ASSERT_TRUE(rec_u64(&f, EMBER_GA_R_SIZE, &size));
  CU_ASSERT_TRUE(rec_u64(&f, EMBER_GA_R_MODE, &mode));
  CU_ASSERT_EQUAL(size, n);
  CU_ASSERT_EQUAL(mode, 0640);
  free(f.p);
  uint8_t *back = malloc(n + EMBER_GA_WINDOW);
  size_t got = 0;
  bool end = false;
  while (!end && recv_frame(fd, &f, TIMEOUT_MS) == 0) {
    if (f.h.type == EMBER_GA_T_DATA && got + f.h.length <= n + EMBER_GA_WINDOW) {
      memcpy(back + got, f.p, f.h.length);
      got += f.h.length;
      send_u32(fd, EMBER_GA_T_WINDOW, 4, EMBER_GA_R_BYTES, f.h.length);
    }
    end = f.h.type == EMBER_GA_T_END;
    free(f.p);
  }
  CU_ASSERT_TRUE(end);
  CU_ASSERT_EQUAL(got, n);
  CU_ASSERT_TRUE(got == n && memcmp(back, data, n) == 0);
  free(back);

  /* A size mismatch leaves nothing. */
  char small[160];
  snprintf(small, sizeof small, "%s/small", dir);
  CU_ASSERT_EQUAL(put_file(fd, 5, small, data, 5, 10, &code), EMBER_GA_T_ERROR);
  CU_ASSERT_EQUAL(code, EMBER_GA_E_INVALID);
  CU_ASSERT_EQUAL(access(small, F_OK), -1);
  CU_ASSERT_EQUAL(count_entries(dir), 1);
  /* More data than SIZE. */
  CU_ASSERT_EQUAL(put_file(fd, 5, small, data, 20, 10, &code), EMBER_GA_T_ERROR);
  CU_ASSERT_EQUAL(code, EMBER_GA_E_INVALID);
  CU_ASSERT_EQUAL(count_entries(dir), 1);
  /* CLOSE in the middle removes the temp file. */
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, small);
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, 100);
  send_frame(fd, EMBER_GA_T_PUT, 6, buf, w.len);
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
  CU_ASSERT_EQUAL(f.h.type, EMBER_GA_T_READY);
  free(f.p);
  CU_ASSERT_EQUAL(count_entries(dir), 2);
  send_frame(fd, EMBER_GA_T_DATA, 6, data, 50);
  send_frame(fd, EMBER_GA_T_CLOSE, 6, NULL, 0);
  send_u32(fd, EMBER_GA_T_PING, 0, EMBER_GA_R_NONCE, 1);
  CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0); /* PONG: CLOSE was handled */
  CU_ASSERT_EQUAL(f.h.type, EMBER_GA_T_PONG);
  free(f.p);
  CU_ASSERT_EQUAL(count_entries(dir), 1);

  /* Missing directory: NOT_FOUND; a directory or a missing file to get. */
  char missing[160];
  snprintf(missing, sizeof missing, "%s/no/such/dir/f", tmp_root);
  CU_ASSERT_EQUAL(put_file(fd, 7, missing, data, 1, 1, &code), EMBER_GA_T_ERROR);
  CU_ASSERT_EQUAL(code, EMBER_GA_E_NOT_FOUND);
  CU_ASSERT_EQUAL(put_file(fd, 7, dir, data, 1, 1, &code), EMBER_GA_T_ERROR);
  CU_ASSERT_EQUAL(code, EMBER_GA_E_INVALID);
  const char *gets_[] = {dir, missing, "relative/path"};
  const uint32_t want[] = {EMBER_GA_E_INVALID, EMBER_GA_E_NOT_FOUND, EMBER_GA_E_INVALID};
  for (size_t i = 0; i < 3; i++) {
    ember_ga_wr_init(&w, buf, sizeof(buf));
    ember_ga_wr_str(&w, EMBER_GA_R_PATH, gets_[i]);
    send_frame(fd, EMBER_GA_T_GET, 8, buf, w.len);
    CU_ASSERT_EQUAL_FATAL(recv_frame(fd, &f, TIMEOUT_MS), 0);
    CU_ASSERT_EQUAL(error_code(&f), want[i]);
    free(f.p);
  }
  free(data);
  close(fd);
}

static void test_garbage_resync(void)
{
  int fd = session();
  uint8_t junk[4096];
  uint32_t x = 7;
  for (size_t i = 0; i < sizeof junk; i++) {
    x = x * 1664525u + 1013904223u;
    junk[i] = (uint8_t)(x >> 24);
  }
  write_all(fd, junk, sizeof junk);
  uint8_t h[EMBER_GA_HEADER];
  ember_ga_hdr_encode(h, EMBER_GA_T_EXEC, 1, 10);
  h[5] = 1; /* flags */
  write_all(fd, h, sizeof h);
  ember_ga_hdr_encode(h, EMBER_GA_T_PING, 0, 0);
  ember_ga_put32(h + 12, EMBER_GA_MAX_PAYLOAD + 1); /* too long */
  write_all(fd, h, sizeof h);
  ember_ga_hdr_encode(h, EMBER_GA_T_STDIN, 3, 5000); /* valid, announces bytes never sent */
  write_all(fd, h, sizeof h);
  CU_ASSERT_TRUE(hello(fd));
  CU_ASSERT_TRUE(agent_alive());
  const char *echo[] = {"echo", "ok", NULL};
  result *r = run(fd, 1, echo, NULL);
  CU_ASSERT_STRING_EQUAL(r->out, "ok\n");
  free(r);
  close(fd);
}

static void test_busy_and_reset(void)
{
  int fd = session();
  const char *sleep_[] = {"sleep", "1000", NULL};
  pid_t pids[EMBER_GA_MAX_CHANNELS];
  for (uint32_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
    send_exec(fd, 100 + i, sleep_, NULL);
    result r = {0};
    collect(fd, 100 + i, &r, true);
    CU_ASSERT_TRUE(r.started);
    pids[i] = (pid_t)r.pid;
  }
  result *r = run(fd, 999, sleep_, NULL);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_BUSY);
  free(r);
  /* A new HELLO ends the session: every process killed. */
  CU_ASSERT_TRUE(hello(fd));
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    CU_ASSERT_TRUE(pid_gone(pids[i]));
  close(fd);
}

static void test_new_connection(void)
{
  int fd = session();
  const char *sleep_[] = {"sleep", "1000", NULL};
  send_exec(fd, 1, sleep_, NULL);
  result r = {0};
  collect(fd, 1, &r, true);
  CU_ASSERT_TRUE_FATAL(r.started);
  int fd2 = session(); /* replaces the first connection */
  CU_ASSERT_TRUE(pid_gone((pid_t)r.pid));
  frame f;
  CU_ASSERT_EQUAL(recv_frame(fd, &f, 2000), -1); /* the old connection was closed */
  const char *echo[] = {"echo", "second", NULL};
  result *r2 = run(fd2, 1, echo, NULL);
  CU_ASSERT_STRING_EQUAL(r2->out, "second\n");
  free(r2);
  close(fd);
  close(fd2);
  CU_ASSERT_TRUE(agent_alive());
}

/* Random frames of every non-opening type (random channels, records and
 * bytes) against an open exec and put: the agent survives, answers HELLO and
 * runs the next exec. (EXEC, PUT and GET are left out: random paths.) */
static void test_random_frames(void)
{
  int fd = session();
  const char *cat[] = {"cat", NULL};
  send_exec(fd, 1, cat, NULL);
  char path[160];
  snprintf(path, sizeof path, "%s/random-put", tmp_root);
  uint8_t buf[256];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, path);
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, 1000);
  send_frame(fd, EMBER_GA_T_PUT, 2, buf, w.len);
  static const uint8_t types[] = {EMBER_GA_T_PING,
                                  EMBER_GA_T_STDIN,
                                  EMBER_GA_T_STDIN_EOF,
                                  EMBER_GA_T_RESIZE,
                                  EMBER_GA_T_SIGNAL,
                                  EMBER_GA_T_DATA,
                                  EMBER_GA_T_END,
                                  EMBER_GA_T_WINDOW,
                                  EMBER_GA_T_CLOSE,
                                  EMBER_GA_T_ERROR,
                                  EMBER_GA_T_STDOUT,
                                  EMBER_GA_T_EXIT,
                                  EMBER_GA_T_DONE,
                                  EMBER_GA_T_INFO,
                                  0,
                                  200};
  uint32_t x = 2024;
  for (int i = 0; i < 3000; i++) {
    x = x * 1103515245u + 12345u;
    uint8_t type = types[(x >> 8) % sizeof(types)];
    uint32_t ch = (x >> 4) % 4;
    size_t n = (x >> 16) % 64;
    uint8_t p[128];
    for (size_t j = 0; j < n; j++) {
      x = x * 1103515245u + 12345u;
      p[j] = (uint8_t)(x >> 16);
    }
    if (i % 2 == 0 && n >= 12) { /* a well-formed record with a random tag and value */
      ember_ga_put16(p, (uint16_t)(p[0] % 30));
      ember_ga_put16(p + 2, 0);
      ember_ga_put32(p + 4, (uint32_t)(n - 8));
    }
    if (type == EMBER_GA_T_SIGNAL) /* only harmless signals to the cat */
      send_u32(fd, type, ch, EMBER_GA_R_SIGNUM, (x & 1) ? SIGWINCH : SIGCONT);
    else
      send_frame(fd, type, ch, p, n);
  }
  CU_ASSERT_TRUE(hello(fd));
  CU_ASSERT_TRUE(agent_alive());
  const char *echo[] = {"echo", "alive", NULL};
  result *r = run(fd, 1, echo, NULL);
  CU_ASSERT_STRING_EQUAL(r->out, "alive\n");
  free(r);
  close(fd);
}

/* An agent on one end of a socketpair (--fd 3); *peer is the other end. */
static pid_t start_fd_agent_as(int *peer, uid_t uid)
{
  int sv[2];
  CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(sv[1], 3); /* dup2 clears FD_CLOEXEC */
    if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
      _exit(126);
    execl(EMBER_GUEST_AGENT_BIN, "ember_guest_agent", "--fd", "3", (char *)NULL);
    _exit(127);
  }
  close(sv[1]);
  *peer = sv[0];
  return pid;
}

static pid_t start_fd_agent(int *peer) { return start_fd_agent_as(peer, 0); }

/* --fd N: one connected socket; the agent exits 0 when it closes. */
static void test_fd_mode(void)
{
  int fd = -1;
  pid_t pid = start_fd_agent(&fd);
  CU_ASSERT_TRUE(hello(fd));
  const char *echo[] = {"echo", "fd", NULL};
  result *r = run(fd, 1, echo, NULL);
  CU_ASSERT_STRING_EQUAL(r->out, "fd\n");
  free(r);
  close(fd);
  int st = -1;
  CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
  CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The agent killed: its exec'd processes die with it (parent-death signal);
 * as a child subreaper the test gets them back and sees how they ended. */
static void test_agent_death(void)
{
  CU_ASSERT_EQUAL_FATAL(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int fd = -1;
  pid_t pid = start_fd_agent(&fd);
  CU_ASSERT_TRUE_FATAL(hello(fd));
  const char *sleep_[] = {"sleep", "1000", NULL};
  send_exec(fd, 1, sleep_, NULL);
  result r = {0};
  collect(fd, 1, &r, true);
  CU_ASSERT_TRUE_FATAL(r.started);
  kill(pid, SIGKILL);
  CU_ASSERT_EQUAL(waitpid(pid, NULL, 0), pid);
  int st = 0;
  alarm(20);
  CU_ASSERT_EQUAL(waitpid((pid_t)r.pid, &st, 0), (pid_t)r.pid);
  alarm(0);
  CU_ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  close(fd);
  prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

/* An agent that is not root (run by root as uid 65534): a different user is
 * PERMISSION, its own ids run. As non-root, exec_errors covers it already. */
static void test_unprivileged(void)
{
  if (geteuid() != 0)
    return;
  int fd = -1;
  pid_t pid = start_fd_agent_as(&fd, 65534);
  CU_ASSERT_TRUE_FATAL(hello(fd));
  const char *id[] = {"id", "-u", NULL};
  exec_opts root = {.user = "0:0", .cwd = "/"};
  result *r = run(fd, 1, id, &root);
  CU_ASSERT_EQUAL(r->error, EMBER_GA_E_PERMISSION);
  free(r);
  exec_opts self = {.user = "65534:65534", .cwd = "/"};
  r = run(fd, 1, id, &self);
  CU_ASSERT_STRING_EQUAL(r->out, "65534\n");
  free(r);
  close(fd);
  int st = -1;
  CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
  CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return CU_get_error();
  CU_pSuite s = CU_add_suite("guest_agent", suite_init, suite_clean);
  CU_add_test(s, "hello_stale", test_hello_stale);
  CU_add_test(s, "exec_basic", test_exec_basic);
  CU_add_test(s, "exec_stdin", test_exec_stdin);
  CU_add_test(s, "exec_tty", test_exec_tty);
  CU_add_test(s, "exec_signal_close", test_exec_signal_close);
  CU_add_test(s, "exec_errors", test_exec_errors);
  CU_add_test(s, "exec_window", test_exec_window);
  CU_add_test(s, "put_get", test_put_get);
  CU_add_test(s, "garbage_resync", test_garbage_resync);
  CU_add_test(s, "busy_and_reset", test_busy_and_reset);
  CU_add_test(s, "new_connection", test_new_connection);
  CU_add_test(s, "random_frames", test_random_frames);
  CU_add_test(s, "fd_mode", test_fd_mode);
  CU_add_test(s, "unprivileged", test_unprivileged);
  CU_add_test(s, "agent_death", test_agent_death);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
