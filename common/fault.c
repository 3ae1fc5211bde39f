/* fault.c: fault-injection points (see fault.h). The environment is read at
 * every call so that nothing global is cached. */
#include "fault.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cmn_fault_exit_only(const char *point)
{
  cmn_error err = {0};
  if (cmn_fault(point, &err) < 0)
    cmn_log(CMN_LOG_WARN, NULL, NULL,
            "fault injection: %s is past the point of no return; only :exit applies", point);
}

int cmn_fault(const char *point, cmn_error *err)
{
  const char *spec = getenv("EMBER_FAULT");
  if (spec == NULL || spec[0] == '\0')
    return 0;
  size_t plen = strlen(point);
  const char *s = spec;
  while (*s != '\0') {
    size_t len = strcspn(s, ",");
    if (len >= plen && strncmp(s, point, plen) == 0 && (len == plen || s[plen] == ':')) {
      if (len > plen && strncmp(s + plen, ":exit", len - plen) == 0 && len - plen == 5) {
        cmn_log(CMN_LOG_WARN, NULL, NULL, "fault injection: exiting at %s", point);
        _exit(86);
      }
      return cmn_err_set(err, CMN_INTERNAL, "injected fault at %s", point);
    }
    s += len;
    if (*s == ',')
      s++;
  }
  return 0;
}
