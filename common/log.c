/* log.c: JSON-lines logging (see log.h). */
#include "log.h"
#include "mem.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Written once by cmn_log_setup() before threads start; read-only after. */
static struct {
  int level;
  int fd;
} log_sink = {CMN_LOG_INFO, 2};

void cmn_log_setup(int level, int fd)
{
  log_sink.level = level;
  log_sink.fd = fd;
}

int cmn_log_level_parse(const char *s)
{
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (s != NULL && strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

void cmn_log(int level, const char *instance, const char *op, const char *fmt, ...)
{
  static const char *const names[] = {"debug", "info", "warn", "error"};
  if (level < log_sink.level || level < 0 || level > 3)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char tbuf[64];
  size_t n = strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(tbuf + n, sizeof tbuf - n, ".%06ldZ", ts.tv_nsec / 1000);

  va_list ap;
  va_start(ap, fmt);
  char *msg = cmn_vasprintf(fmt, ap);
  va_end(ap);

  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "ts", tbuf);
  cJSON_AddStringToObject(o, "level", names[level]);
  if (instance != NULL && instance[0] != '\0')
    cJSON_AddStringToObject(o, "instance", instance);
  if (op != NULL && op[0] != '\0')
    cJSON_AddStringToObject(o, "op", op);
  cJSON_AddStringToObject(o, "msg", msg);
  char *line = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  free(msg);
  if (line == NULL)
    return;
  struct iovec iov[2] = {{line, strlen(line)}, {(void *)"\n", 1}};
  ssize_t w = writev(log_sink.fd, iov, 2);
  (void)w;
  free(line);
}
