/* mem.c: allocation wrappers (see mem.h). */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mem_oom(void)
{
  static const char msg[] = "ember: out of memory\n";
  fwrite(msg, 1, sizeof msg - 1, stderr);
  abort();
}

void *cmn_malloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    mem_oom();
  return p;
}

void *cmn_calloc(size_t nmemb, size_t size)
{
  void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
  if (p == NULL)
    mem_oom();
  return p;
}

void *cmn_realloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    mem_oom();
  return q;
}

char *cmn_strdup(const char *s)
{
  if (s == NULL)
    return NULL;
  char *p = strdup(s);
  if (p == NULL)
    mem_oom();
  return p;
}

char *cmn_strndup(const char *s, size_t n)
{
  if (s == NULL)
    return NULL;
  char *p = strndup(s, n);
  if (p == NULL)
    mem_oom();
  return p;
}

char *cmn_vasprintf(const char *fmt, va_list ap)
{
  char *out = NULL;
  if (vasprintf(&out, fmt, ap) < 0)
    mem_oom();
  return out;
}

char *cmn_asprintf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *out = cmn_vasprintf(fmt, ap);
  va_end(ap);
  return out;
}

int cmn_snprintf(char *buf, size_t size, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return (n < 0 || (size_t)n >= size) ? -1 : 0;
}
