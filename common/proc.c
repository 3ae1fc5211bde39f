/* proc.c: child processes that outlive the agent (see proc.h).
 *
 * posix_spawn is used rather than fork: the agent is multithreaded (gRPC), and
 * posix_spawn runs no atfork handlers and touches no locks in the child. */
#include "proc.h"
#include "cleanup.h"
#include "files.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* posix_spawn and the exec family declare argv `char *const[]` only for
 * compatibility with old C code; POSIX guarantees they do not modify it (exec
 * rationale). This is the one place its const is dropped. */
static char *const *cmn__exec_argv(const char *const argv[]) { return (char *const *)argv; }

int64_t cmn_now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cmn_wall_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cmn_sleep_ms(int ms)
{
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

char *cmn_proc_capture(const char *const argv[], size_t max, int timeout_ms, cmn_error *err)
{
  cleanup_free char *prog = cmn_which(argv[0]);
  if (prog == NULL) {
    cmn_err_set(err, CMN_UNAVAILABLE, "program %s not found", argv[0]);
    return NULL;
  }
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "pipe");
    return NULL;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, prog, &fa, NULL, cmn__exec_argv(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pfd[1]);
  cleanup_close int rfd = pfd[0];
  if (rc != 0) {
    cmn_err_errno(err, CMN_UNAVAILABLE, rc, "run %s", prog);
    return NULL;
  }
  cleanup_free char *out = cmn_malloc(max + 1);
  size_t len = 0;
  int64_t deadline = cmn_now_us() + (int64_t)timeout_ms * 1000;
  while (len < max) {
    int64_t left = (deadline - cmn_now_us()) / 1000;
    if (left <= 0)
      break;
    struct pollfd p = {.fd = rfd, .events = POLLIN};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    ssize_t r = read(rfd, out + len, max - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  out[len] = '\0';
  /* EOF on the pipe comes just before the exit: wait for it until the deadline. */
  int status = 0;
  pid_t w;
  while ((w = waitpid(pid, &status, WNOHANG)) == 0 && cmn_now_us() < deadline)
    cmn_sleep_ms(5);
  if (w == 0) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    cmn_err_set(err, CMN_UNAVAILABLE, "%s did not finish within %d ms", prog, timeout_ms);
    return NULL;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    cmn_err_set(err, CMN_UNAVAILABLE, "%s failed (status %d)", prog, status);
    return NULL;
  }
  return steal_ptr(out);
}

void cmn_proc_cloexec_inherited(void)
{
#ifdef CLOSE_RANGE_CLOEXEC
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
#endif
  for (int fd = 3; fd < 4096; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
      fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
  }
}

char *cmn_which(const char *prog)
{
  if (prog == NULL || prog[0] == '\0')
    return NULL;
  if (strchr(prog, '/') != NULL)
    return access(prog, X_OK) == 0 && cmn_is_regular_file(prog) ? cmn_strdup(prog) : NULL;
  const char *path = getenv("PATH");
  if (path == NULL)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  const char *s = path;
  while (*s != '\0') {
    size_t len = strcspn(s, ":");
    cleanup_free char *cand = cmn_asprintf("%.*s/%s", (int)len, s, prog);
    if (len > 0 && access(cand, X_OK) == 0 && cmn_is_regular_file(cand))
      return steal_ptr(cand);
    s += len;
    if (*s == ':')
      s++;
  }
  return NULL;
}

/* Parses /proc/<pid>/stat: state (field 3) and start time (field 22). The
 * command name (field 2) may hold spaces and parentheses, so parsing starts
 * after the last ')'. */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  cleanup_free char *buf = NULL;
  if (cmn_file_read(path, 4096, &buf, NULL, NULL) < 0)
    return -1;
  char *p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ')
    return -1;
  p += 2;
  *state = *p;
  /* p points at field 3; skip to field 22. */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (p == NULL)
      return -1;
    p++;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(p, &end, 10);
  if (errno != 0 || end == p)
    return -1;
  *start = v;
  return 0;
}

uint64_t cmn_proc_start_time(pid_t pid)
{
  char st;
  uint64_t start;
  if (pid <= 0 || proc_stat(pid, &st, &start) < 0)
    return 0;
  return start;
}

bool cmn_proc_alive(const cmn_proc *p)
{
  char st;
  uint64_t start;
  if (p == NULL || p->pid <= 0 || proc_stat(p->pid, &st, &start) < 0)
    return false;
  if (p->start_time != 0 && start != p->start_time)
    return false;
  return st != 'Z' && st != 'X';
}

int cmn_proc_signal(const cmn_proc *p, int sig)
{
  if (!cmn_proc_alive(p))
    return 0;
  if (kill(p->pid, sig) < 0 && errno != ESRCH)
    return -1;
  return 0;
}

bool cmn_proc_wait_exit(const cmn_proc *p, int timeout_ms)
{
  if (p == NULL || p->pid <= 0)
    return true;
  int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
  /* Identity after the open: a recycled pid must not be waited for. */
  if (!cmn_proc_alive(p)) {
    if (fd >= 0)
      close(fd);
    return true;
  }
  int64_t deadline = cmn_now_us() + (int64_t)timeout_ms * 1000;
  if (fd < 0) {
    /* No pidfd (old kernel): poll. */
    while (cmn_proc_alive(p)) {
      if (cmn_now_us() >= deadline)
        return false;
      cmn_sleep_ms(1);
    }
    return true;
  }
  int n;
  for (;;) {
    int64_t left = (deadline - cmn_now_us()) / 1000;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    n = poll(&pfd, 1, left > 0 ? (int)left : 0);
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  close(fd);
  return n > 0 || !cmn_proc_alive(p);
}

int cmn_proc_wait(const cmn_proc *p, int timeout_ms, int *status)
{
  if (p == NULL || p->pid <= 0)
    return 0;
  /* A pid whose start time differs is another process now: ours has ended
   * (and was reaped). A zombie child keeps its /proc entry, so this never
   * hides an unreaped child of ours. */
  uint64_t start = cmn_proc_start_time(p->pid);
  if (p->start_time != 0 && start != 0 && start != p->start_time)
    return 0;
  int64_t deadline = cmn_now_us() + (int64_t)timeout_ms * 1000;
  cleanup_close int fd = -1;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
      if (status != NULL)
        *status = st;
      return 0;
    }
    if (r < 0 && errno == EINTR)
      continue;
    int64_t left = (deadline - cmn_now_us()) / 1000;
    if (r < 0) {
      /* Not our child (adopted after an agent restart): someone else reaps
       * it; wait only for it to end. */
      return cmn_proc_wait_exit(p, left > 0 ? (int)left : 0) ? 0 : -1;
    }
    /* Our child and not yet waitable. /proc may already call it a zombie
     * (its main thread ended while others still run), but only waitpid ends
     * it: never give up on a child before it is reaped. Its pid cannot be
     * reused until then, so waiting on the pid is exact. */
    if (left <= 0)
      return -1;
    if (fd < 0)
      fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    int slice = left < 100 ? (int)left : 100;
    if (fd >= 0) {
      /* Readable once the whole thread group has exited (waitable). */
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      if (poll(&pfd, 1, slice) < 0 && errno != EINTR)
        cmn_sleep_ms(1);
    } else {
      cmn_sleep_ms(slice < 2 ? slice : 2);
    }
  }
}

void cmn_proc_kill_reap(const cmn_proc *p)
{
  if (p == NULL || p->pid <= 0)
    return;
  cmn_proc_signal(p, SIGKILL);
  while (cmn_proc_wait(p, 10000, NULL) < 0)
    cmn_proc_signal(p, SIGKILL);
}

/* Closes the temporary copies made by proc_pass_prepare. */
static void proc_pass_close(int *tmp, int n)
{
  for (int i = 0; i < n; i++)
    if (tmp[i] >= 0)
      close(tmp[i]);
}

/* Copies every fd to be passed to a number above all target numbers
 * (close-on-exec), so that the child's dup2 sequence can never overwrite a
 * source before it is copied, whatever numbers the sources have. */
static int proc_pass_prepare(const cmn_spawn_opts *opts, int *tmp, cmn_error *err)
{
  int above = 3;
  for (int i = 0; i < opts->n_pass_fds; i++) {
    tmp[i] = -1;
    if (opts->pass_fds[i].child_fd < 3)
      return cmn_err_set(err, CMN_INTERNAL, "descriptor target %d is below 3",
                         opts->pass_fds[i].child_fd);
    if (opts->pass_fds[i].child_fd >= above)
      above = opts->pass_fds[i].child_fd + 1;
  }
  for (int i = 0; i < opts->n_pass_fds; i++) {
    tmp[i] = fcntl(opts->pass_fds[i].fd, F_DUPFD_CLOEXEC, above);
    if (tmp[i] < 0) {
      int e = errno;
      proc_pass_close(tmp, i);
      return cmn_err_errno(err, CMN_INTERNAL, e, "copy descriptor %d for the child",
                           opts->pass_fds[i].fd);
    }
  }
  return 0;
}

static int proc_spawn_here(const char *const argv[], const cmn_spawn_opts *opts, cmn_proc *out,
                           cmn_error *err);

typedef struct proc_ns_spawn {
  int nsfd;
  const char *const *argv;
  const cmn_spawn_opts *opts;
  cmn_proc *out;
  cmn_error *err;
  int rc;
} proc_ns_spawn;

/* A thread of its own enters the namespace and spawns: a child created by a
 * thread starts in that thread's namespaces; the thread then ends, so no
 * thread of ours stays in the instance's namespace. */
static void *proc_ns_main(void *arg)
{
  proc_ns_spawn *a = arg;
  if (setns(a->nsfd, CLONE_NEWNET) < 0) {
    a->rc = cmn_err_errno(a->err, errno == EPERM ? CMN_FAILED_PRECONDITION : CMN_INTERNAL, errno,
                          "enter network namespace %s", a->opts->netns_path);
    return NULL;
  }
  a->rc = proc_spawn_here(a->argv, a->opts, a->out, a->err);
  return NULL;
}

int cmn_proc_spawn(const char *const argv[], const cmn_spawn_opts *opts, cmn_proc *out,
                   cmn_error *err)
{
  if (opts == NULL || opts->netns_path == NULL)
    return proc_spawn_here(argv, opts, out, err);
  int fd = open(opts->netns_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "open network namespace %s",
                         opts->netns_path);
  proc_ns_spawn a = {.nsfd = fd, .argv = argv, .opts = opts, .out = out, .err = err, .rc = -1};
  pthread_t t;
  int prc = pthread_create(&t, NULL, proc_ns_main, &a);
  if (prc != 0) {
    close(fd);
    return cmn_err_errno(err, CMN_INTERNAL, prc, "thread to spawn in %s", opts->netns_path);
  }
  pthread_join(t, NULL);
  close(fd);
  return a.rc;
}

static int proc_spawn_here(const char *const argv[], const cmn_spawn_opts *opts, cmn_proc *out,
                           cmn_error *err)
{
  cleanup_free char *prog = cmn_which(argv[0]);
  if (prog == NULL)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "program %s not found", argv[0]);
  int n_pass = opts != NULL ? opts->n_pass_fds : 0;
  cleanup_free int *tmp = n_pass > 0 ? cmn_calloc((size_t)n_pass, sizeof *tmp) : NULL;
  if (n_pass > 0 && proc_pass_prepare(opts, tmp, err) < 0)
    return -1;

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);

  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const char *log = (opts != NULL && opts->log_path != NULL) ? opts->log_path : "/dev/null";
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0640);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  /* dup2 onto the same number clears FD_CLOEXEC (glibc >= 2.29), so these
   * descriptors, and only these, are inherited. */
  for (int i = 0; opts != NULL && i < opts->n_keep_fds; i++)
    posix_spawn_file_actions_adddup2(&fa, opts->keep_fds[i], opts->keep_fds[i]);
  /* The copies sit above every target and are close-on-exec: after these
   * dup2s the child holds each file at its number and nothing else of ours. */
  for (int i = 0; i < n_pass; i++)
    posix_spawn_file_actions_adddup2(&fa, tmp[i], opts->pass_fds[i].child_fd);
  if (opts != NULL && opts->cwd != NULL)
    posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);

  pid_t pid = 0;
  int rc = posix_spawn(&pid, prog, &fa, &attr, cmn__exec_argv(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  proc_pass_close(tmp, n_pass);
  if (rc != 0)
    return cmn_err_errno(err, CMN_INTERNAL, rc, "spawn %s", prog);
  out->pid = pid;
  out->start_time = cmn_proc_start_time(pid);
  return 0;
}
