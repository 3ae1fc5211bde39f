/* version.c: runs `cloud-hypervisor --version` once per binary and parses it.
 *
 * The same helper exists privately in the Firecracker driver; it is kept here
 * rather than shared because common/ is not this driver's to change (the lead
 * may move both into a cmn_proc_capture()). */
#define _GNU_SOURCE
#include "version.h"
#include "common/mem.h"
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char *ch_version_run(const char *binary, cmn_error *err)
{
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "pipe");
    return NULL;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  char *const argv[] = {(char *)binary, "--version", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, binary, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pfd[1]);
  if (rc != 0) {
    close(pfd[0]);
    cmn_err_errno(err, CMN_UNAVAILABLE, rc, "running %s --version", binary);
    return NULL;
  }
  size_t cap = 4096, len = 0;
  char *out = cmn_malloc(cap + 1);
  int64_t deadline = cmn_now_us() + 5 * 1000000;
  for (;;) {
    int64_t left = (deadline - cmn_now_us()) / 1000;
    if (left <= 0)
      break;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    ssize_t r = read(pfd[0], out + len, cap - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
    if (len == cap)
      break;
  }
  close(pfd[0]);
  out[len] = '\0';
  int status = 0;
  pid_t w;
  /* EOF on the pipe comes just before the exit: wait for it until the deadline. */
  while ((w = waitpid(pid, &status, WNOHANG)) == 0 && cmn_now_us() < deadline)
    cmn_sleep_ms(5);
  if (w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    free(out);
    cmn_err_set(err, CMN_UNAVAILABLE, "%s --version did not finish within 5 s", binary);
    return NULL;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    free(out);
    cmn_err_set(err, CMN_UNAVAILABLE, "%s --version failed (status %d)", binary, status);
    return NULL;
  }
  return out;
}

int ch_version_parse(const char *line, int *major, int *minor, int *patch, cmn_error *err)
{
  /* The version is the first word after the program name that reads vN.N. */
  const char *p = line;
  while ((p = strchr(p, 'v')) != NULL) {
    if ((p == line || p[-1] == ' ') && p[1] >= '0' && p[1] <= '9')
      break;
    p++;
  }
  if (p == NULL)
    return cmn_err_set(err, CMN_UNAVAILABLE, "no version in \"%s\"", line);
  p++;
  long v[3] = {0, 0, 0};
  for (int i = 0; i < 3; i++) {
    char *end = NULL;
    errno = 0;
    v[i] = strtol(p, &end, 10);
    if (errno != 0 || end == p || v[i] < 0 || v[i] > 100000)
      return cmn_err_set(err, CMN_UNAVAILABLE, "cannot parse the version in \"%s\"", line);
    if (*end != '.') {
      if (i == 0)
        return cmn_err_set(err, CMN_UNAVAILABLE, "cannot parse the version in \"%s\"", line);
      break; /* "v40.0" from git describe: no patch number */
    }
    p = end + 1;
  }
  *major = (int)v[0];
  *minor = (int)v[1];
  *patch = (int)v[2];
  return 0;
}
