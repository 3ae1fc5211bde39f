/* modules.c: load the kit's kernel modules (Debian builds virtio, ext4 and
 * vsock as modules) with finit_module, in dependency order from modules.dep
 * (depmod's format: "path.ko: dep.ko dep.ko", paths relative to the folder;
 * the kit's build writes it, so no depmod/modprobe is needed in the guest). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guest/init/init.h"

#define MOD_MAX 256
#define MOD_DEP_MAX (256u << 10)

typedef struct mod_entry {
  char *path; /* relative to the folder */
  char *deps; /* space-separated relative paths (points into the file) */
  int state;  /* 0 new, 1 loading (cycle guard), 2 done */
} mod_entry;

typedef struct mod_table {
  mod_entry e[MOD_MAX];
  size_t n;
  int dirfd;
  int failures;
} mod_table;

static mod_entry *mod_find(mod_table *t, const char *path)
{
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->e[i].path, path) == 0)
      return &t->e[i];
  return NULL;
}

static void mod_insert(mod_table *t, const char *path)
{
  int fd = openat(t->dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    init_log("module %s: %m", path);
    t->failures++;
    return;
  }
  long r = syscall(SYS_finit_module, fd, "", 0);
  int e = errno;
  close(fd);
  if (r == 0 || e == EEXIST)
    return;
  errno = e;
  if (e == ENODEV) /* e.g. crc32c-intel on a CPU without SSE4.2 */
    return;
  init_log("module %s: %m", path);
  t->failures++;
}

static void mod_load(mod_table *t, mod_entry *m)
{
  if (m->state != 0)
    return;
  m->state = 1;
  char *save = NULL;
  for (char *d = strtok_r(m->deps, " \t", &save); d != NULL; d = strtok_r(NULL, " \t", &save)) {
    mod_entry *dep = mod_find(t, d);
    if (dep != NULL)
      mod_load(t, dep);
    else
      mod_insert(t, d); /* listed as a dependency only */
  }
  mod_insert(t, m->path);
  m->state = 2;
}

int init_modules_load(const char *dir)
{
  mod_table *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return 1;
  t->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int fd = t->dirfd < 0 ? -1 : openat(t->dirfd, "modules.dep", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (t->dirfd >= 0)
      close(t->dirfd);
    free(t);
    return 0; /* a kernel with everything built in */
  }
  char *buf = malloc(MOD_DEP_MAX + 1);
  size_t len = 0;
  while (buf != NULL && len < MOD_DEP_MAX) {
    ssize_t n = read(fd, buf + len, MOD_DEP_MAX - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  if (buf == NULL) {
    close(t->dirfd);
    free(t);
    return 1;
  }
  buf[len] = '\0';
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char *colon = strchr(line, ':');
    if (colon == NULL || line[0] == '#')
      continue;
    *colon = '\0';
    if (t->n == MOD_MAX) {
      init_log("modules.dep: more than %d modules, the rest ignored", MOD_MAX);
      break;
    }
    t->e[t->n].path = line;
    t->e[t->n].deps = colon + 1;
    t->n++;
  }
  for (size_t i = 0; i < t->n; i++)
    mod_load(t, &t->e[i]);
  int failures = t->failures;
  close(t->dirfd);
  free(buf);
  free(t);
  return failures;
}
