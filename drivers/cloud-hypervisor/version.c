/* version.c: runs `cloud-hypervisor --version` once per binary and parses it. */
#include "version.h"
#include "common/mem.h"
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *ch_version_run(const char *binary, cmn_error *err)
{
  const char *const argv[] = {binary, "--version", NULL};
  char *out = cmn_proc_capture(argv, 4096, 5000, err);
  if (out == NULL)
    cmn_err_prefix(err, "%s --version", binary);
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
