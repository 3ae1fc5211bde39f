/* exec.c: exec channels. The child gets its own session and process group
 * (signals and CLOSE go to the whole group), pipes or a pseudo-terminal for
 * stdio, the requested user, cwd and environment (base env + the request's
 * ENV). Failures before exec (cwd, user, program) come back over a close-on-
 * exec pipe and become ERROR instead of STARTED. EXIT is sent once the child
 * is reaped and stdout/stderr reached EOF. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "guest/agent/agent.h"
#include "guest/init/init.h"

#define GA_PTS_MAX 64

typedef struct ga_exec_req {
  char **argv, **envp; /* NULL-terminated */
  size_t argc, envc, env_cap;
  char *cwd, *user;
  bool tty;
  uint16_t rows, cols;
} ga_exec_req;

static void ga_req_free(ga_exec_req *q)
{
  for (size_t i = 0; q->argv != NULL && i < q->argc; i++)
    free(q->argv[i]);
  for (size_t i = 0; q->envp != NULL && i < q->envc; i++)
    free(q->envp[i]);
  free(q->argv);
  free(q->envp);
  free(q->cwd);
  free(q->user);
}

static char *ga_strndup(const uint8_t *v, size_t n)
{
  char *s = malloc(n + 1);
  if (s != NULL) {
    memcpy(s, v, n);
    s[n] = '\0';
  }
  return s;
}

/* Sets KEY=VALUE in the request's environment, replacing the same KEY. */
static int ga_env_set(ga_exec_req *q, char *kv)
{
  size_t k = (size_t)(strchr(kv, '=') - kv);
  for (size_t i = 0; i < q->envc; i++) {
    if (strncmp(q->envp[i], kv, k) == 0 && q->envp[i][k] == '=') {
      free(q->envp[i]);
      q->envp[i] = kv;
      return 0;
    }
  }
  if (q->envc + 1 >= q->env_cap) {
    size_t cap = q->env_cap ? q->env_cap * 2 : 64;
    char **p = realloc(q->envp, cap * sizeof(*p));
    if (p == NULL) {
      free(kv);
      return -1;
    }
    q->envp = p;
    q->env_cap = cap;
  }
  q->envp[q->envc++] = kv;
  q->envp[q->envc] = NULL;
  return 0;
}

static bool ga_env_has(const ga_exec_req *q, const char *key)
{
  size_t k = strlen(key);
  for (size_t i = 0; i < q->envc; i++)
    if (strncmp(q->envp[i], key, k) == 0 && q->envp[i][k] == '=')
      return true;
  return false;
}

/* Parses EXEC's records; -1 with a message on a malformed request. */
static int ga_req_parse(ga_exec_req *q, const uint8_t *p, size_t n, char *why, size_t wl)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  int k;
  size_t nargs = 0, nenv = 0;
  while ((k = ember_ga_rd_next(&r, &tag, &v, &vn)) > 0) {
    if (tag == EMBER_GA_R_ARG)
      nargs++;
  }
  if (k < 0) {
    snprintf(why, wl, "malformed records");
    return -1;
  }
  if (nargs == 0 || nargs > EMBER_GA_MAX_ARGS) {
    snprintf(why, wl, "an exec needs 1 to %u ARG records (%zu)", EMBER_GA_MAX_ARGS, nargs);
    return -1;
  }
  q->argv = calloc(nargs + 1, sizeof(char *));
  if (q->argv == NULL) {
    snprintf(why, wl, "out of memory");
    return -1;
  }
  ember_ga_rd_init(&r, p, n);
  while (ember_ga_rd_next(&r, &tag, &v, &vn) > 0) {
    bool str = tag == EMBER_GA_R_ARG || tag == EMBER_GA_R_ENV || tag == EMBER_GA_R_CWD ||
               tag == EMBER_GA_R_USER;
    if (str && ember_ga_val_str_ok(v, vn) < 0) {
      snprintf(why, wl, "a string record (tag %u) holds a NUL byte", (unsigned)tag);
      return -1;
    }
    uint8_t b = 0;
    switch (tag) {
    case EMBER_GA_R_ARG:
      if ((q->argv[q->argc] = ga_strndup(v, vn)) == NULL)
        goto oom;
      q->argc++;
      break;
    case EMBER_GA_R_ENV: {
      if (++nenv > EMBER_GA_MAX_ENV) {
        snprintf(why, wl, "more than %u ENV records", EMBER_GA_MAX_ENV);
        return -1;
      }
      const uint8_t *eq = memchr(v, '=', vn);
      if (eq == NULL || eq == v) {
        snprintf(why, wl, "ENV record not KEY=VALUE");
        return -1;
      }
      break; /* applied after the base env (ga_exec_env) */
    }
    case EMBER_GA_R_CWD:
      free(q->cwd);
      if (vn == 0 || v[0] != '/') {
        snprintf(why, wl, "CWD must be an absolute path");
        return -1;
      }
      if ((q->cwd = ga_strndup(v, vn)) == NULL)
        goto oom;
      break;
    case EMBER_GA_R_USER:
      free(q->user);
      if ((q->user = ga_strndup(v, vn)) == NULL)
        goto oom;
      break;
    case EMBER_GA_R_TTY:
      if (ember_ga_val_u8(v, vn, &b) < 0)
        goto bad_int;
      q->tty = b != 0;
      break;
    case EMBER_GA_R_ROWS:
      if (ember_ga_val_u16(v, vn, &q->rows) < 0)
        goto bad_int;
      break;
    case EMBER_GA_R_COLS:
      if (ember_ga_val_u16(v, vn, &q->cols) < 0)
        goto bad_int;
      break;
    default:
      break; /* unknown tags are skipped */
    }
  }
  if (q->argv[0][0] == '\0') {
    snprintf(why, wl, "empty program name");
    return -1;
  }
  return 0;
bad_int:
  snprintf(why, wl, "record %u has the wrong size", (unsigned)tag);
  return -1;
oom:
  snprintf(why, wl, "out of memory");
  return -1;
}

/* The environment: base env, then HOME of a switched user, TERM for a tty,
 * then the request's ENV records (which win). */
static int ga_exec_env(ga_exec_req *q, const ga_options *o, const uint8_t *p, size_t n,
                       const init_user *u, bool user_given)
{
  for (size_t i = 0; o->base_env != NULL && o->base_env[i] != NULL; i++) {
    if (strchr(o->base_env[i], '=') == NULL)
      continue;
    char *kv = strdup(o->base_env[i]);
    if (kv == NULL || ga_env_set(q, kv) < 0)
      return -1;
  }
  if (q->envp == NULL && ga_env_set(q, strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                              "/usr/bin:/sbin:/bin")) < 0)
    return -1;
  if (user_given) {
    size_t len = strlen(u->home) + 6;
    char *kv = malloc(len);
    if (kv == NULL)
      return -1;
    snprintf(kv, len, "HOME=%s", u->home);
    if (ga_env_set(q, kv) < 0)
      return -1;
  }
  if (q->tty && !ga_env_has(q, "TERM")) {
    char *kv = strdup("TERM=xterm");
    if (kv == NULL || ga_env_set(q, kv) < 0)
      return -1;
  }
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  while (ember_ga_rd_next(&r, &tag, &v, &vn) > 0) {
    if (tag != EMBER_GA_R_ENV)
      continue;
    char *kv = ga_strndup(v, vn);
    if (kv == NULL || ga_env_set(q, kv) < 0)
      return -1;
  }
  return 0;
}

/* What the child reports before _exit when a step before exec failed. */
typedef struct ga_child_err {
  int32_t stage; /* 1 tty, 2 user, 3 cwd, 4 exec */
  int32_t err;
} ga_child_err;

/* True when some directory of PATH holds an entry named name. */
static bool ga_in_path(const char *name)
{
  const char *path = getenv("PATH");
  while (path != NULL && *path != '\0') {
    const char *colon = strchr(path, ':');
    size_t len = colon ? (size_t)(colon - path) : strlen(path);
    char full[4096];
    struct stat st;
    int n = snprintf(full, sizeof(full), "%.*s/%s", len ? (int)len : 1, len ? path : ".", name);
    if (n > 0 && (size_t)n < sizeof(full) && stat(full, &st) == 0)
      return true;
    path = colon ? colon + 1 : NULL;
  }
  return false;
}

static __attribute__((noreturn)) void ga_child(const ga_exec_req *q, const char *pts, int fds[3],
                                               const init_user *u, bool switch_user,
                                               const char *cwd, int report, pid_t agent)
{
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, &dfl, NULL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  ga_child_err ce = {0, 0};
  if (pts != NULL) {
    int t = open(pts, O_RDWR);
    if (t < 0 || ioctl(t, TIOCSCTTY, 0) < 0) {
      ce = (ga_child_err){1, errno};
      goto fail;
    }
    fds[0] = fds[1] = fds[2] = t;
  }
  for (int i = 0; i < 3; i++)
    if (dup2(fds[i], i) < 0) {
      ce = (ga_child_err){1, errno};
      goto fail;
    }
  if (switch_user &&
      (setgroups(u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)) {
    ce = (ga_child_err){2, errno};
    goto fail;
  }
  if (cwd != NULL && chdir(cwd) < 0) {
    ce = (ga_child_err){3, errno};
    goto fail;
  }
  /* The agent dying (init restarts it) takes its processes along; set after
   * the user switch, which clears it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != agent)
    _exit(127);
  environ = q->envp;
  execvp(q->argv[0], q->argv);
  ce = (ga_child_err){4, errno};
  if (ce.err == EACCES && strchr(q->argv[0], '/') == NULL && !ga_in_path(q->argv[0]))
    ce.err = ENOENT; /* EACCES came from a PATH directory, not from the program */
fail:;
  ssize_t w = write(report, &ce, sizeof(ce));
  (void)w;
  _exit(127);
}

static void ga_nb(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void ga_close(int *fd)
{
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

void ga_exec_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  ga_exec_req q = {0};
  char why[256];
  int fds[6] = {-1, -1, -1, -1, -1, -1}; /* stdin r/w, stdout r/w, stderr r/w */
  int report[2] = {-1, -1};
  int master = -1;
  char pts[GA_PTS_MAX];
  if (ga_req_parse(&q, p, n, why, sizeof(why)) < 0) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "%s", why);
    goto out;
  }
  const ga_options *o = s->o;
  const char *spec = q.user != NULL ? q.user : o->default_user;
  init_user u = {.uid = geteuid(), .gid = getegid(), .home = "/"};
  bool user_given = spec != NULL && spec[0] != '\0';
  bool switch_user = false;
  if (user_given) {
    if (init_user_resolve(spec, o->passwd, o->group, &u, why, sizeof(why)) < 0) {
      ga_fail(s, c, EMBER_GA_E_NO_USER, "%s", why);
      goto out;
    }
    if (o->may_switch_user)
      switch_user = true;
    else if (u.uid != geteuid() || u.gid != getegid()) {
      ga_fail(s, c, EMBER_GA_E_PERMISSION, "the agent does not run as root: cannot run as %s",
              spec);
      goto out;
    }
  }
  if (ga_exec_env(&q, o, p, n, &u, user_given) < 0) {
    ga_fail(s, c, EMBER_GA_E_BUSY, "out of memory");
    goto out;
  }
  if (q.tty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
        ptsname_r(master, pts, sizeof(pts)) != 0) {
      ga_fail(s, c, ga_errno_code(errno), "pseudo-terminal: %m");
      goto out;
    }
    struct winsize ws = {.ws_row = q.rows ? q.rows : 24, .ws_col = q.cols ? q.cols : 80};
    ioctl(master, TIOCSWINSZ, &ws);
  } else {
    for (int i = 0; i < 3; i++)
      if (pipe2(fds + 2 * i, O_CLOEXEC) < 0) {
        ga_fail(s, c, ga_errno_code(errno), "pipe: %m");
        goto out;
      }
  }
  if (pipe2(report, O_CLOEXEC) < 0) {
    ga_fail(s, c, ga_errno_code(errno), "pipe: %m");
    goto out;
  }
  const char *cwd = q.cwd != NULL ? q.cwd : o->default_cwd;
  pid_t agent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    ga_fail(s, c, EMBER_GA_E_BUSY, "fork: %m");
    goto out;
  }
  if (pid == 0) {
    int child_fds[3] = {fds[0], fds[3], fds[5]};
    ga_child(&q, q.tty ? pts : NULL, child_fds, &u, switch_user, cwd, report[1], agent);
  }
  ga_close(&report[1]);
  ga_child_err ce = {0, 0};
  ssize_t r;
  do
    r = read(report[0], &ce, sizeof(ce));
  while (r < 0 && errno == EINTR);
  if (r == (ssize_t)sizeof(ce)) {
    static const char *const stage[] = {"", "stdio", "user", "working directory", "program"};
    const char *what = ce.stage >= 1 && ce.stage <= 4 ? stage[ce.stage] : "?";
    const char *obj = ce.stage == 3 ? cwd : ce.stage == 4 ? q.argv[0] : spec ? spec : "";
    errno = ce.err;
    ga_fail(s, c, ga_errno_code(ce.err), "%s %s: %m", what, obj);
    goto out; /* the child exited: reaped by ga_reap */
  }
  c->pid = pid;
  c->tty = q.tty;
  if (q.tty) {
    c->out_fd = master;
    c->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
    master = -1;
    ga_nb(c->out_fd);
    if (c->in_fd >= 0)
      ga_nb(c->in_fd);
  } else {
    c->in_fd = fds[1];
    c->out_fd = fds[2];
    c->err_fd = fds[4];
    fds[1] = fds[2] = fds[4] = -1;
    ga_nb(c->in_fd);
    ga_nb(c->out_fd);
    ga_nb(c->err_fd);
  }
  uint8_t buf[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, EMBER_GA_R_PID, (uint32_t)pid);
  ga_send(s, EMBER_GA_T_STARTED, c->id, buf, w.len);
out:
  for (int i = 0; i < 6; i++)
    ga_close(&fds[i]);
  ga_close(&report[0]);
  ga_close(&report[1]);
  ga_close(&master);
  ga_req_free(&q);
}

void ga_exec_flush_stdin(ga_session *s, ga_chan *c)
{
  while (c->in_len > 0 && c->in_fd >= 0) {
    ssize_t w = write(c->in_fd, c->inbuf + c->in_off, c->in_len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN)
      break;
    if (w < 0) { /* the child closed its stdin: what is left is dropped */
      ga_consumed(s, c, c->in_len);
      c->in_off = c->in_len = 0;
      if (!c->tty)
        ga_close(&c->in_fd);
      break;
    }
    c->last_nl = c->inbuf[c->in_off + (size_t)w - 1] == '\n';
    c->in_off += (size_t)w;
    c->in_len -= (size_t)w;
    ga_consumed(s, c, (size_t)w);
  }
  if (c->in_len == 0)
    c->in_off = 0;
  if (c->in_len == 0 && c->in_eof && c->in_fd >= 0) {
    if (c->tty) {
      /* A terminal has no EOF to close: the line discipline's VEOF
       * character (twice after a partial line: the first ends it). */
      struct termios t;
      char eof = 4;
      if (tcgetattr(c->in_fd, &t) == 0 && t.c_cc[VEOF] != 0)
        eof = (char)t.c_cc[VEOF];
      char two[2] = {eof, eof};
      ssize_t w = write(c->in_fd, two, c->last_nl ? 1 : 2);
      (void)w;
    }
    ga_close(&c->in_fd);
  }
}

void ga_exec_stdin(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  if (c->in_fd < 0 || c->in_eof) {
    ga_consumed(s, c, n); /* stdin closed: dropped */
    return;
  }
  if (c->inbuf == NULL && (c->inbuf = malloc(EMBER_GA_WINDOW)) == NULL) {
    ga_fail(s, c, EMBER_GA_E_BUSY, "out of memory");
    return;
  }
  if (c->in_off + c->in_len + n > EMBER_GA_WINDOW) {
    memmove(c->inbuf, c->inbuf + c->in_off, c->in_len);
    c->in_off = 0;
  }
  memcpy(c->inbuf + c->in_off + c->in_len, p, n); /* fits: the window bounds in_len + n */
  c->in_len += n;
  ga_exec_flush_stdin(s, c);
}

void ga_exec_stdin_eof(ga_session *s, ga_chan *c)
{
  c->in_eof = true;
  ga_exec_flush_stdin(s, c);
}

void ga_exec_resize(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  struct winsize ws = {0};
  while (ember_ga_rd_next(&r, &tag, &v, &vn) > 0) {
    if (tag == EMBER_GA_R_ROWS)
      ember_ga_val_u16(v, vn, &ws.ws_row);
    else if (tag == EMBER_GA_R_COLS)
      ember_ga_val_u16(v, vn, &ws.ws_col);
  }
  if (c->tty && c->out_fd >= 0 && ws.ws_row > 0 && ws.ws_col > 0)
    ioctl(c->out_fd, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
  (void)s;
}

void ga_exec_signal(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  uint32_t sig = 0;
  while (ember_ga_rd_next(&r, &tag, &v, &vn) > 0)
    if (tag == EMBER_GA_R_SIGNUM)
      ember_ga_val_u32(v, vn, &sig);
  if (sig < 1 || sig >= (uint32_t)NSIG) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "no signal %u", (unsigned)sig);
    return;
  }
  if (!c->reaped)
    kill(-c->pid, (int)sig);
}

void ga_exec_read(ga_session *s, ga_chan *c, bool err)
{
  int *fd = err ? &c->err_fd : &c->out_fd;
  uint8_t buf[EMBER_GA_MAX_DATA];
  size_t want = sizeof(buf) < c->send_credit ? sizeof(buf) : (size_t)c->send_credit;
  ssize_t r = read(*fd, buf, want);
  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (r <= 0) { /* EOF; a terminal whose last holder closed it reads EIO */
    ga_close(fd);
    if (c->tty)
      ga_close(&c->in_fd);
    ga_exec_maybe_exit(s, c);
    return;
  }
  c->send_credit -= (size_t)r;
  ga_send(s, err ? EMBER_GA_T_STDERR : EMBER_GA_T_STDOUT, c->id, buf, (size_t)r);
}

void ga_exec_maybe_exit(ga_session *s, ga_chan *c)
{
  if (!c->reaped || c->out_fd >= 0 || c->err_fd >= 0)
    return;
  uint8_t buf[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  if (WIFSIGNALED(c->status))
    ember_ga_wr_u32(&w, EMBER_GA_R_SIGNUM, (uint32_t)WTERMSIG(c->status));
  else
    ember_ga_wr_u32(&w, EMBER_GA_R_EXIT_CODE, (uint32_t)WEXITSTATUS(c->status));
  ga_send(s, EMBER_GA_T_EXIT, c->id, buf, w.len);
  ga_chan_end(s, c);
}

void ga_exec_end(ga_chan *c)
{
  /* The whole group, even once the leader is reaped: a pid stays out of
   * reuse while a group of that number has members. */
  if (c->pid > 0)
    kill(-c->pid, SIGKILL);
  ga_close(&c->in_fd);
  ga_close(&c->out_fd);
  ga_close(&c->err_fd);
  free(c->inbuf);
  c->inbuf = NULL;
}
