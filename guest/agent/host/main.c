/* main.c: ember_guest_agent, the guest agent as a host program for tests
 * (test/unit/test_guest_agent.c): --listen PATH serves a unix stream socket
 * (every accepted connection is a new session, replacing the previous one,
 * like a host reconnecting); --fd N serves an already connected socket.
 * Users are switched only when it runs as root; the base env is its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest/agent/agent.h"

static int usage(void)
{
  fprintf(stderr, "usage: ember_guest_agent --listen PATH | --fd N\n");
  return 2;
}

int main(int argc, char **argv)
{
  if (argc != 3)
    return usage();
  ga_options o = {
      .base_env = environ,
      .passwd = "/etc/passwd",
      .group = "/etc/group",
      .may_switch_user = geteuid() == 0,
  };
  if (strcmp(argv[1], "--fd") == 0) {
    char *end = NULL;
    errno = 0;
    long fd = strtol(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || fd < 0 || fd > 1 << 20)
      return usage();
    return ga_run(&o, -1, (int)fd, false) < 0 ? 1 : 0;
  }
  if (strcmp(argv[1], "--listen") != 0)
    return usage();
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(argv[2]) >= sizeof(a.sun_path)) {
    fprintf(stderr, "ember_guest_agent: socket path too long\n");
    return 2;
  }
  memcpy(a.sun_path, argv[2], strlen(argv[2]) + 1);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  unlink(argv[2]);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 8) < 0) {
    fprintf(stderr, "ember_guest_agent: listen on %s: %m\n", argv[2]);
    return 1;
  }
  int r = ga_run(&o, lfd, -1, false);
  close(lfd);
  return r < 0 ? 1 : 0;
}
