/* mounts.c: the filesystems of the guest: early ones in the initramfs, the
 * image's root (ext4 read-write, or erofs under an overlay), the switch to it
 * (move mount + chroot, initramfs freed) and what a container expects inside
 * (the subset of runc's default mounts that makes sense in a VM). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "guest/init/init.h"

#define MNT_RAMFS_MAGIC 0x858458f6u
#define MNT_TMPFS_MAGIC 0x01021994u

static int mnt(const char *src, const char *target, const char *type, unsigned long flags,
               const char *data, bool required)
{
  mkdir(target, 0755);
  if (mount(src, target, type, flags, data) == 0 || errno == EBUSY)
    return 0;
  if (required)
    init_log("mount %s on %s: %m", type != NULL ? type : src, target);
  return -1;
}

int init_mount_early(void)
{
  int rc = 0;
  rc |= mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", true);
  int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    for (int i = 0; i < 3; i++)
      dup2(fd, i); /* the copies do not inherit O_CLOEXEC */
    if (fd > 2)
      close(fd);
  }
  rc |= mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, true);
  rc |= mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, true);
  return rc != 0 ? -1 : 0;
}

static int disk_cmp(const void *a, const void *b)
{
  const char *x = a, *y = b;
  size_t lx = strlen(x), ly = strlen(y);
  return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y); /* vdz before vdaa */
}

size_t init_list_disks(char names[][32], size_t max, int wait_ms)
{
  for (int waited = 0;; waited += 20) {
    size_t n = 0;
    DIR *d = opendir("/sys/block");
    if (d != NULL) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL && n < max) {
        if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) > 20)
          continue;
        snprintf(names[n++], 32, "/dev/%.20s", e->d_name);
      }
      closedir(d);
    }
    if (n > 0 || waited >= wait_ms) {
      qsort(names, n, 32, disk_cmp);
      return n;
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* "ext4", "erofs" or NULL, from the superblock magic. */
static const char *fs_type(const char *dev)
{
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  unsigned char sb[2048];
  ssize_t n = pread(fd, sb, sizeof(sb), 0);
  close(fd);
  if (n < (ssize_t)sizeof(sb))
    return NULL;
  if (sb[1024 + 56] == 0x53 && sb[1024 + 57] == 0xEF)
    return "ext4"; /* ext2/3/4 s_magic 0xEF53; the ext4 driver mounts all three */
  uint32_t erofs = (uint32_t)sb[1024] | (uint32_t)sb[1025] << 8 | (uint32_t)sb[1026] << 16 |
                   (uint32_t)sb[1027] << 24;
  if (erofs == 0xE0F5E1E2u)
    return "erofs";
  return NULL;
}

int init_mount_root(const char *dev, const char *target)
{
  const char *type = NULL;
  /* The disk node appears when virtio_blk probes; give it a moment. */
  for (int i = 0; i < 100 && (type = fs_type(dev)) == NULL; i++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (type == NULL) {
    init_log("root device %s: no ext4 or erofs filesystem found", dev);
    return -1;
  }
  if (strcmp(type, "ext4") == 0)
    return mnt(dev, target, "ext4", 0, NULL, true);
  /* erofs is read-only: the image below, a tmpfs for writes above. */
  if (mnt(dev, "/lower", "erofs", MS_RDONLY, NULL, true) < 0 ||
      mnt("tmpfs", "/rw", "tmpfs", 0, "mode=0755", true) < 0)
    return -1;
  mkdir("/rw/upper", 0755);
  mkdir("/rw/work", 0755);
  return mnt("overlay", target, "overlay", 0, "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work",
             true);
}

/* Deletes what is on the initramfs (the device of "/"), not crossing mounts. */
static void rm_tree(int dirfd, dev_t rootdev)
{
  DIR *d = fdopendir(dirfd);
  if (d == NULL) {
    close(dirfd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    struct stat st;
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev)
      continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0)
        rm_tree(sub, rootdev);
      unlinkat(dirfd, e->d_name, AT_REMOVEDIR); /* fails on mount points: kept */
    } else {
      unlinkat(dirfd, e->d_name, 0);
    }
  }
  closedir(d);
}

int init_switch_root(const char *newroot)
{
  char p[256];
  snprintf(p, sizeof(p), "%s/dev", newroot);
  mkdir(p, 0755);
  if (mount("/dev", p, NULL, MS_MOVE, NULL) < 0) {
    init_log("move /dev to %s: %m", p);
    return -1;
  }
  umount2("/proc", MNT_DETACH);
  umount2("/sys", MNT_DETACH);
  struct statfs sfs;
  struct stat st;
  if (statfs("/", &sfs) == 0 && stat("/", &st) == 0 &&
      ((uint32_t)sfs.f_type == MNT_RAMFS_MAGIC || (uint32_t)sfs.f_type == MNT_TMPFS_MAGIC)) {
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
      rm_tree(fd, st.st_dev);
  }
  if (chdir(newroot) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
      chdir("/") < 0) {
    init_log("switch to the root filesystem: %m");
    return -1;
  }
  return 0;
}

int init_mount_container(void)
{
  const unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  int rc = 0;
  rc |= mnt("proc", "/proc", "proc", nse, NULL, true);
  rc |= mnt("sysfs", "/sys", "sysfs", nse, NULL, true);
  mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nse, NULL, false);
  rc |= mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5", true);
  rc |= mnt("shm", "/dev/shm", "tmpfs", nse, "mode=1777,size=65536k", true);
  mnt("mqueue", "/dev/mqueue", "mqueue", nse, NULL, false);
  static const char *const links[][2] = {
      {"/proc/self/fd", "/dev/fd"},
      {"/proc/self/fd/0", "/dev/stdin"},
      {"/proc/self/fd/1", "/dev/stdout"},
      {"/proc/self/fd/2", "/dev/stderr"},
  };
  for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
    if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST)
      init_log("symlink %s: %m", links[i][1]);
  /* Programs open /dev/ptmx: make it the devpts instance's. */
  unlink("/dev/ptmx");
  if (symlink("pts/ptmx", "/dev/ptmx") < 0)
    init_log("symlink /dev/ptmx: %m");
  return rc != 0 ? -1 : 0;
}
