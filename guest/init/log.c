/* log.c: init's messages on the console. One write per line so that lines
 * from init and the workload do not interleave mid-line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "guest/init/init.h"

void init_log(const char *fmt, ...)
{
  int saved = errno;
  char line[1024];
  int n = snprintf(line, sizeof(line), "ember-init: ");
  va_list ap;
  va_start(ap, fmt);
  errno = saved; /* for %m */
  int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof(line) - 2)
    len = sizeof(line) - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
  errno = saved;
}
