/* cgroup.c: placing a process in a named cgroup (see cgroup.h). */
#include "common/cgroup.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static int cgroup__write(const char *path, const char *text, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_WRONLY, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "open %s", path);
  if (write(fd, text, strlen(text)) < 0)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "write %s", path);
  return 0;
}

/* A fresh v1 cpuset cgroup has no cpus or mems, and a task cannot join it
 * until both are set: inherit the parent's. */
static int cgroup__init_cpuset(const char *hier, const char *dir, cmn_error *err)
{
  const char *files[] = {"cpuset.cpus", "cpuset.mems"};
  for (size_t i = 0; i < 2; i++) {
    cleanup_free char *mine = cmn_asprintf("%s/%s", dir, files[i]);
    if (!cmn_path_exists(mine))
      return 0; /* not a v1 cpuset hierarchy */
    cleanup_free char *cur = NULL;
    if (cmn_file_read(mine, 65536, &cur, NULL, err) < 0)
      return -1;
    if (cur[0] != '\0' && cur[0] != '\n')
      continue;
    cleanup_free char *parent = cmn_asprintf("%s/%s", hier, files[i]);
    cleanup_free char *val = NULL;
    if (cmn_file_read(parent, 65536, &val, NULL, err) < 0 || cgroup__write(mine, val, err) < 0)
      return -1;
  }
  return 0;
}

static int cgroup__place_one(const char *hier, const char *name, pid_t pid, cmn_error *err)
{
  cleanup_free char *dir = cmn_asprintf("%s/%s", hier, name);
  if (cmn_mkdir_p(dir, 0755, err) < 0 || cgroup__init_cpuset(hier, dir, err) < 0)
    return cmn_err_prefix(err, "cgroup %s", dir);
  cleanup_free char *procs = cmn_asprintf("%s/cgroup.procs", dir);
  char text[32];
  snprintf(text, sizeof text, "%d\n", (int)pid);
  return cgroup__write(procs, text, err);
}

static bool cgroup__is_hierarchy(const char *path)
{
  struct statfs fs;
  if (statfs(path, &fs) < 0)
    return false;
  /* CGROUP_SUPER_MAGIC (v1) and CGROUP2_SUPER_MAGIC. */
  return fs.f_type == 0x27e0eb || fs.f_type == 0x63677270;
}

int cmn_cgroup_place(const char *root, const char *name, pid_t pid, cmn_error *err)
{
  cleanup_free char *rel = cmn_path_join(root, name, err);
  if (rel == NULL)
    return -1;
  if (cgroup__is_hierarchy(root)) /* a pure v2 host: one hierarchy */
    return cgroup__place_one(root, name, pid, err);
  cleanup_closedir DIR *d = opendir(root);
  if (d == NULL)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "open %s", root);
  int placed = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    cleanup_free char *hier = cmn_asprintf("%s/%s", root, de->d_name);
    struct stat st;
    /* Co-mounted v1 controllers appear again as symlinks ("cpu" ->
     * "cpu,cpuacct"): each hierarchy once. */
    if (lstat(hier, &st) < 0 || !S_ISDIR(st.st_mode) || !cgroup__is_hierarchy(hier))
      continue;
    if (cgroup__place_one(hier, name, pid, err) < 0)
      return -1;
    placed++;
  }
  if (placed == 0)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "no cgroup hierarchy under %s", root);
  return 0;
}
