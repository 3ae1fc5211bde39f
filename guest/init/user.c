/* user.c: resolve an OCI User ("uid", "uid:gid", "name", "name:group") the way
 * runc does, through the image's /etc/passwd and /etc/group (read directly: no
 * NSS in a static init). A numeric uid not in passwd is allowed (gid 0, HOME
 * "/"); a name that is not found is an error. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/bootcfg_format.h"
#include "guest/init/init.h"

#define USER_LINE_MAX 4096

__attribute__((format(printf, 3, 4))) static int user_fail(char *errbuf, size_t errlen,
                                                           const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* A decimal id in [0, 2^32-2]; false for anything else. */
static bool user_number(const char *s, unsigned long *out)
{
  if (s[0] < '0' || s[0] > '9')
    return false;
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > 0xFFFFFFFEul)
    return false;
  *out = v;
  return true;
}

/* Splits a passwd/group line into at most max ':'-separated fields in place. */
static size_t user_fields(char *line, char **f, size_t max)
{
  size_t n = 0;
  line[strcspn(line, "\n")] = '\0';
  while (n < max) {
    f[n++] = line;
    char *c = strchr(line, ':');
    if (c == NULL)
      break;
    *c = '\0';
    line = c + 1;
  }
  return n;
}

/* Reads one line into buf; a line longer than the buffer is skipped whole
 * (its tail must not parse as an entry of its own). false at end of file. */
static bool user_getline(FILE *f, char *buf, size_t size)
{
  while (fgets(buf, (int)size, f) != NULL) {
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
      return true;
    if (feof(f))
      return true; /* last line without a newline */
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n')
      ;
  }
  return false;
}

/* Finds the passwd entry of a name (or of a uid when name is NULL). */
static bool user_passwd(const char *path, const char *name, unsigned long uid, init_user *u,
                        char *uname, size_t ulen)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return false;
  char line[USER_LINE_MAX];
  bool found = false;
  while (!found && user_getline(f, line, sizeof(line))) {
    char *fl[7];
    unsigned long id, gid;
    if (user_fields(line, fl, 7) < 7 || !user_number(fl[2], &id) || !user_number(fl[3], &gid))
      continue;
    if (name != NULL ? strcmp(fl[0], name) != 0 : id != uid)
      continue;
    u->uid = (uid_t)id;
    u->gid = (gid_t)gid;
    snprintf(u->home, sizeof(u->home), "%s", fl[5][0] != '\0' ? fl[5] : "/");
    snprintf(uname, ulen, "%s", fl[0]);
    found = true;
  }
  fclose(f);
  return found;
}

/* Group by name -> gid, and the supplementary groups that list uname. */
static bool user_group(const char *path, const char *group, gid_t *gid, const char *uname,
                       init_user *u)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return false;
  char line[USER_LINE_MAX];
  bool found = false;
  while (user_getline(f, line, sizeof(line))) {
    char *fl[4];
    unsigned long id;
    if (user_fields(line, fl, 4) < 4 || !user_number(fl[2], &id))
      continue;
    if (group != NULL && strcmp(fl[0], group) == 0 && !found) {
      *gid = (gid_t)id;
      found = true;
    }
    if (uname == NULL || uname[0] == '\0' || u->ngroups >= sizeof(u->groups) / sizeof(u->groups[0]))
      continue;
    char *save = NULL;
    for (char *m = strtok_r(fl[3], ",", &save); m != NULL; m = strtok_r(NULL, ",", &save))
      if (strcmp(m, uname) == 0) {
        u->groups[u->ngroups++] = (gid_t)id;
        break;
      }
  }
  fclose(f);
  return found;
}

int init_user_resolve(const char *spec, const char *passwd, const char *group, init_user *u,
                      char *errbuf, size_t errlen)
{
  memset(u, 0, sizeof(*u));
  snprintf(u->home, sizeof(u->home), "/root");
  char uname[256] = "root";
  if (spec == NULL || spec[0] == '\0')
    spec = "0";
  char buf[EMBER_BOOTCFG_MAX_USER + 1];
  if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
    return user_fail(errbuf, errlen, "user '%.40s...' is too long", spec);
  char *gpart = strchr(buf, ':');
  if (gpart != NULL)
    *gpart++ = '\0';
  unsigned long id;
  if (buf[0] == '\0')
    return user_fail(errbuf, errlen, "user '%s' has no user part", spec);
  if (user_number(buf, &id)) {
    if (!user_passwd(passwd, NULL, id, u, uname, sizeof(uname))) {
      u->uid = (uid_t)id; /* unknown to passwd: allowed, like runc */
      u->gid = 0;
      snprintf(u->home, sizeof(u->home), "/");
      uname[0] = '\0';
    }
  } else if (!user_passwd(passwd, buf, 0, u, uname, sizeof(uname))) {
    return user_fail(errbuf, errlen, "user '%s' not found in the image's %s", buf, passwd);
  }
  gid_t gid = u->gid;
  const char *gname = NULL;
  if (gpart != NULL) {
    if (gpart[0] == '\0')
      return user_fail(errbuf, errlen, "user '%s' has an empty group part", spec);
    if (user_number(gpart, &id))
      gid = (gid_t)id;
    else
      gname = gpart;
  }
  bool gfound = user_group(group, gname, &gid, uname, u);
  if (gname != NULL && !gfound)
    return user_fail(errbuf, errlen, "group '%s' not found in the image's %s", gname, group);
  u->gid = gid;
  return 0;
}
