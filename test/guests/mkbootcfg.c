/* mkbootcfg.c: test driver of the boot config writer (agent/image/bootcfg.c):
 *   mkbootcfg OUT [-e KEY=VALUE]... [-w WORKDIR] [-u USER] [-H HOSTNAME]
 *             [-r ROOTDEV] -- ARG...
 * writes OUT with img_bootcfg_write, exactly what emberd will write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/image/bootcfg.h"

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: mkbootcfg OUT [-e K=V]... [-w DIR] [-u USER] [-H HOST] "
                    "[-r DEV] -- ARG...\n");
    return 2;
  }
  const char *out = argv[1];
  const char **env = calloc((size_t)argc, sizeof(*env));
  size_t envc = 0;
  img_bootcfg c = {0};
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "e:w:u:H:r:")) != -1) {
    switch (opt) {
    case 'e':
      env[envc++] = optarg;
      break;
    case 'w':
      c.workdir = optarg;
      break;
    case 'u':
      c.user = optarg;
      break;
    case 'H':
      c.hostname = optarg;
      break;
    case 'r':
      c.root = optarg;
      break;
    default:
      return 2;
    }
  }
  c.argv = (const char *const *)(argv + optind);
  c.argc = (size_t)(argc - optind);
  c.env = env;
  c.envc = envc;
  cmn_error err = {0};
  int rc = img_bootcfg_write(&c, out, &err);
  free(env);
  if (rc < 0) {
    fprintf(stderr, "mkbootcfg: %s\n", err.msg);
    return 1;
  }
  return 0;
}
