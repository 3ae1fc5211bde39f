/* error.c: the error contract (see error.h). */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 0))) static void err_vset(cmn_error *err, int code,
                                                           const char *fmt, va_list ap)
{
  err->code = code;
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  err->field[0] = err->precondition[0] = err->subject[0] = '\0';
}

static void err_copy(char *dst, size_t size, const char *src)
{
  size_t n = src != NULL ? strnlen(src, size - 1) : 0;
  if (n > 0)
    memcpy(dst, src, n);
  dst[n] = '\0';
}

int cmn_err_field(cmn_error *err, const char *field)
{
  if (err != NULL)
    err_copy(err->field, sizeof err->field, field);
  return -1;
}

int cmn_err_precondition(cmn_error *err, const char *type, const char *subject)
{
  if (err != NULL) {
    err_copy(err->precondition, sizeof err->precondition, type);
    err_copy(err->subject, sizeof err->subject, subject);
  }
  return -1;
}

int cmn_err_set(cmn_error *err, int code, const char *fmt, ...)
{
  if (err == NULL)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, fmt, ap);
  va_end(ap);
  return -1;
}

int cmn_err_errno(cmn_error *err, int code, int errnum, const char *fmt, ...)
{
  if (err == NULL)
    return -1;
  /* A full filesystem or quota is never an internal fault: the caller can act
   * on it (free space, move the data dir), so it gets its own code. */
  if (errnum == ENOSPC || errnum == EDQUOT)
    code = CMN_RESOURCE_EXHAUSTED;
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, fmt, ap);
  va_end(ap);
  size_t n = strlen(err->msg);
  snprintf(err->msg + n, sizeof err->msg - n, ": %s", cmn_strerror(errnum));
  return -1;
}

const char *cmn_strerror(int errnum)
{
  const char *s = strerrordesc_np(errnum);
  return s != NULL ? s : "unknown error";
}

int cmn_err_prefix(cmn_error *err, const char *fmt, ...)
{
  if (err == NULL)
    return -1;
  char head[CMN_ERR_MSG_MAX];
  char old[CMN_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  size_t n = strnlen(head, sizeof head - 1);
  memcpy(err->msg, head, n);
  size_t rest = sizeof err->msg - n;
  if (rest > 3) {
    memcpy(err->msg + n, ": ", 2);
    size_t m = strnlen(old, rest - 3);
    memcpy(err->msg + n + 2, old, m);
    n += 2 + m;
  }
  err->msg[n] = '\0';
  if (err->code == CMN_OK)
    err->code = CMN_INTERNAL;
  return -1;
}

void cmn_err_clear(cmn_error *err)
{
  if (err == NULL)
    return;
  err->code = CMN_OK;
  err->msg[0] = '\0';
  err->field[0] = err->precondition[0] = err->subject[0] = '\0';
}

const char *cmn_code_name(int code)
{
  static const char *const names[] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
  };
  if (code < 0 || (size_t)code >= sizeof names / sizeof names[0])
    return "UNKNOWN";
  return names[code];
}
