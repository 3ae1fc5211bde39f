/* run.c: the workload as PID 1's only direct child, supervised like a
 * container's init (tini, docker --init): signals forwarded, every zombie
 * reaped (orphans are reparented to PID 1), the exit status returned.
 * A graceful stop from the VMM arrives as an ACPI power button press
 * (QEMU system_powerdown, Cloud Hypervisor power-button) read from
 * /dev/input, or as SIGINT from Ctrl-Alt-Del (Firecracker SendCtrlAltDel;
 * main.c turns the kernel's reboot into a signal); the first is sent to the
 * workload as SIGTERM, the second forwarded as is.
 * The guest agent (guest/agent) is PID 1's other child: forked
 * (no exec) before the workload, with the workload's environment as the base
 * environment of its execs; restarted at most once a second when it dies
 * (not when it exits 0: no transport in this VM). Its exec'd processes are
 * its own children (it is a child subreaper); its death is never taken for
 * the workload's exit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/agent.h"
#include "guest/bootcfg_format.h"
#include "guest/init/init.h"

#define RUN_MAX_INPUT 8
#define RUN_EV_KEY 1
#define RUN_KEY_POWER 116

/* struct input_event of 64-bit Linux (linux/input.h is not in musl's headers). */
typedef struct run_input_event {
  int64_t sec;
  int64_t usec;
  uint16_t type;
  uint16_t code;
  int32_t value;
} run_input_event;

static const int run_forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static bool env_has(char *const *env, size_t n, const char *key)
{
  size_t k = strlen(key);
  for (size_t i = 0; i < n; i++)
    if (strncmp(env[i], key, k) == 0 && env[i][k] == '=')
      return true;
  return false;
}

/* The config's environment plus defaults for PATH, HOME and HOSTNAME. */
static char **run_env(const init_config *c, const init_user *u, char *store[3])
{
  static char default_path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char **env = calloc(c->envc + 4, sizeof(*env));
  if (env == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < c->envc; i++)
    env[n++] = c->env[i];
  if (!env_has(c->env, c->envc, "PATH"))
    env[n++] = default_path;
  static const char *const keys[2] = {"HOME", "HOSTNAME"};
  const char *vals[2] = {u->home, c->hostname};
  for (int i = 0; i < 2; i++) {
    if (env_has(c->env, c->envc, keys[i]))
      continue;
    size_t len = strlen(keys[i]) + strlen(vals[i]) + 2;
    store[i] = malloc(len);
    if (store[i] == NULL)
      continue;
    snprintf(store[i], len, "%s=%s", keys[i], vals[i]);
    env[n++] = store[i];
  }
  env[n] = NULL;
  return env;
}

/* mkdir -p, as root: like Docker, a missing WorkingDir is created. */
static void run_mkdir_p(const char *path)
{
  char p[EMBER_BOOTCFG_MAX_PATH + 1];
  if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
    return;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char saved = *s;
      *s = '\0';
      mkdir(p, 0755);
      *s = saved;
      if (saved == '\0')
        break;
    }
  }
}

static size_t run_open_inputs(int fds[RUN_MAX_INPUT])
{
  size_t n = 0;
  DIR *d = opendir("/dev/input");
  if (d == NULL)
    return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < RUN_MAX_INPUT) {
    if (strncmp(e->d_name, "event", 5) != 0)
      continue;
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
      fds[n++] = fd;
  }
  closedir(d);
  return n;
}

static __attribute__((noreturn)) void run_child(const init_config *c, const init_user *u,
                                                char **env)
{
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nul >= 0)
    dup2(nul, STDIN_FILENO);
  if (setgroups(u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0) {
    init_log("set user %u:%u: %m", (unsigned)u->uid, (unsigned)u->gid);
    _exit(126);
  }
  if (chdir(c->workdir) < 0) {
    init_log("working directory %s: %m", c->workdir);
    _exit(126);
  }
  environ = env;
  execvp(c->argv[0], c->argv);
  int e = errno;
  init_log("exec %s: %m", c->argv[0]);
  _exit(e == ENOENT ? 127 : 126);
}

/* The guest agent: a forked child running ga_guest_main; -1 (logged) when
 * the fork failed. The child drops PID 1's signalfd and input fds. */
static pid_t run_agent_start(const init_config *c, char **env, int sfd, const int *inputs,
                             size_t ninputs)
{
  pid_t pid = fork();
  if (pid < 0) {
    init_log("guest agent: fork: %m");
    return -1;
  }
  if (pid > 0)
    return pid;
  close(sfd);
  for (size_t i = 0; i < ninputs; i++)
    close(inputs[i]);
  ga_options o = {
      .base_env = env,
      .default_user = c->user,
      .default_cwd = c->workdir,
      .passwd = "/etc/passwd",
      .group = "/etc/group",
      .may_switch_user = true,
  };
  _exit(ga_guest_main(&o) < 0 ? 1 : 0);
}

static int64_t run_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reaps every exited child; true once the workload (pid) is among them.
 * The agent's (*agent) death sets *agent to 0 and *restart when it did not
 * exit 0. */
static bool run_reap(pid_t pid, init_exit *ex, pid_t *agent, bool *restart)
{
  bool done = false;
  int st;
  pid_t w;
  while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
    if (*agent > 0 && w == *agent) {
      *agent = 0;
      *restart = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
      if (*restart)
        init_log("guest agent died (%s %d): restarting it",
                 WIFSIGNALED(st) ? "signal" : "exit code",
                 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      continue;
    }
    if (w != pid)
      continue;
    done = true;
    ex->signaled = WIFSIGNALED(st);
    ex->code = WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st);
  }
  return done;
}

static void run_power_events(int fd, pid_t pid)
{
  run_input_event ev[16];
  ssize_t n;
  while ((n = read(fd, ev, sizeof(ev))) > 0) {
    for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
      if (ev[i].type == RUN_EV_KEY && ev[i].code == RUN_KEY_POWER && ev[i].value == 1) {
        init_log("power button: SIGTERM to the workload");
        kill(pid, SIGTERM);
      }
    }
  }
}

int init_run(const init_config *c, const init_user *u, init_exit *ex)
{
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (size_t i = 0; i < sizeof(run_forwarded) / sizeof(run_forwarded[0]); i++)
    sigaddset(&set, run_forwarded[i]);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    init_log("signalfd: %m");
    return -1;
  }
  int inputs[RUN_MAX_INPUT];
  size_t ninputs = run_open_inputs(inputs);
  char *store[3] = {NULL, NULL, NULL};
  char **env = run_env(c, u, store);
  if (env == NULL) {
    init_log("out of memory");
    return -1;
  }
  run_mkdir_p(c->workdir);
  pid_t agent = run_agent_start(c, env, sfd, inputs, ninputs);
  int64_t agent_started = run_now_ms();
  bool agent_restart = false;

  pid_t pid = fork();
  if (pid < 0) {
    init_log("fork: %m");
    return -1;
  }
  if (pid == 0)
    run_child(c, u, env);

  bool done = false;
  while (!done) {
    int timeout = -1;
    if (agent_restart) {
      int64_t wait = agent_started + 1000 - run_now_ms();
      if (wait <= 0) {
        agent_restart = false;
        agent = run_agent_start(c, env, sfd, inputs, ninputs);
        agent_started = run_now_ms();
      } else {
        timeout = (int)wait;
      }
    }
    struct pollfd pfd[1 + RUN_MAX_INPUT];
    pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (size_t i = 0; i < ninputs; i++)
      pfd[1 + i] = (struct pollfd){.fd = inputs[i], .events = POLLIN};
    if (poll(pfd, 1 + ninputs, timeout) < 0) {
      if (errno != EINTR)
        init_log("poll: %m");
      continue;
    }
    for (size_t i = 0; i < ninputs; i++)
      if (pfd[1 + i].revents & POLLIN)
        run_power_events(inputs[i], pid);
    if (!(pfd[0].revents & POLLIN))
      continue;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
      if (si.ssi_signo == SIGCHLD) {
        done = run_reap(pid, ex, &agent, &agent_restart) || done;
        if (done)
          break;
      } else {
        kill(pid, (int)si.ssi_signo);
      }
    }
    if (!done)
      done = run_reap(pid, ex, &agent, &agent_restart); /* SIGCHLDs coalesce: reap regardless */
  }
  free(env);
  free(store[0]);
  free(store[1]);
  for (size_t i = 0; i < ninputs; i++)
    close(inputs[i]);
  close(sfd);
  return 0;
}
