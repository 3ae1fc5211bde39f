/* proc.h: child processes that outlive the agent.
 *
 * A VMM is spawned in its own session and process group, with stdin from
 * /dev/null, stdout and stderr appended to a log file, and only the file
 * descriptors it is explicitly given (everything else is O_CLOEXEC). A process
 * is named by pid plus its start time (from /proc), so a recycled pid is never
 * mistaken for the VMM it used to be. */
#ifndef EMBER_COMMON_PROC_H
#define EMBER_COMMON_PROC_H

#include "error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct cmn_proc {
  pid_t pid;           /* 0 when none */
  uint64_t start_time; /* field 22 of /proc/<pid>/stat, clock ticks since boot */
} cmn_proc;

/* One descriptor handed to a child at a chosen number: the child finds the
 * open file description of `fd` at `child_fd` (without FD_CLOEXEC). */
typedef struct cmn_fd_pass {
  int fd;
  int child_fd; /* >= 3, distinct within one spawn, not among keep_fds */
} cmn_fd_pass;

typedef struct cmn_spawn_opts {
  const char *log_path; /* stdout+stderr appended here; NULL: /dev/null */
  const int *keep_fds;  /* fds to pass to the child at the same numbers */
  int n_keep_fds;
  const cmn_fd_pass *pass_fds; /* fds to pass at given numbers (any order) */
  int n_pass_fds;
  const char *cwd; /* NULL: unchanged */
  /* Network namespace file (/run/netns/NAME) the child runs in; NULL: ours.
   * The spawn happens from a short-lived thread that entered it (setns), so
   * no other thread of the caller changes namespace. */
  const char *netns_path;
} cmn_spawn_opts;

/* Spawns argv[0] (looked up in PATH) with argv. The child is in a new session
 * (setsid) and gets SIGKILL-able independence from the agent. argv is only
 * read. */
int cmn_proc_spawn(const char *const argv[], const cmn_spawn_opts *opts, cmn_proc *out,
                   cmn_error *err);
/* Reads the start time of pid; 0 if the process does not exist. */
uint64_t cmn_proc_start_time(pid_t pid);
/* True while the same process (pid and start time) exists and is not a zombie. */
bool cmn_proc_alive(const cmn_proc *p);
/* Sends sig if the same process is alive. Returns 0 also when it is gone. */
int cmn_proc_signal(const cmn_proc *p, int sig);
/* Waits up to timeout_ms for the process to end, reaping it when it is our
 * child. Returns 0 when it has ended, -1 on timeout. A child of ours has
 * ended only once it is reaped (never on /proc's word: its main thread can be
 * a zombie while other threads still exit), so 0 for a child always means
 * reaped and status (may be NULL) is its wait status. */
int cmn_proc_wait(const cmn_proc *p, int timeout_ms, int *status);
/* Waits up to timeout_ms for the process to end WITHOUT reaping it (a pidfd
 * poll, so the exit is seen at once). Returns true when it has ended. */
bool cmn_proc_wait_exit(const cmn_proc *p, int timeout_ms);
/* SIGKILL, then wait until it is gone (reaping it when it is our child). */
void cmn_proc_kill_reap(const cmn_proc *p);
/* Runs argv (argv[0] a path or a name found in PATH) with stdin and stderr on
 * /dev/null and returns what it printed on stdout (at most max bytes, caller
 * frees). Fails (UNAVAILABLE) when it cannot run, exits non-zero, or has not
 * finished within timeout_ms (it is then killed). For `<vmm> --version`. */
char *cmn_proc_capture(const char *const argv[], size_t max, int timeout_ms, cmn_error *err);
/* Marks every descriptor >= 3 close-on-exec. Called first thing in main() so
 * descriptors a careless parent left open never reach a VMM. */
void cmn_proc_cloexec_inherited(void);
/* Resolves a program name through PATH; NULL when not found or not executable. */
char *cmn_which(const char *prog);
/* Monotonic clock in microseconds. */
int64_t cmn_now_us(void);
/* Wall clock in microseconds since the epoch. */
int64_t cmn_wall_us(void);
/* Sleeps ms milliseconds. */
void cmn_sleep_ms(int ms);

#endif
