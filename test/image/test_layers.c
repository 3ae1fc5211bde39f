/* test_layers.c: CUnit tests of OCI layers -> ext4 root disk (agent/image/
 * layers.c, rootfs.c). Layers are written here with libarchive's writer (tar,
 * tar+gzip, tar+zstd); the ext4 image is checked with e2fsprogs' own tools,
 * never mounted: `debugfs -R 'ls -l'/'stat'/'dump'/'ea_get'` and `e2fsck -fn`.
 * Hostile layers must fail with a clear error naming the entry, write
 * nothing outside the root and leave nothing in the cache folder.
 * Exits 77 (skip) when mkfs.ext4, debugfs or e2fsck is missing. */
#include "agent/image/rootfs.h"

#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"

#include <CUnit/Basic.h>
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* ---- layer writer -------------------------------------------------------- */

enum { T_DIR = 1, T_FILE, T_SYMLINK, T_HARDLINK, T_CHR, T_BLK, T_FIFO };

typedef struct tent {
  int type;
  const char *path;
  unsigned perm;
  const char *data;   /* T_FILE content; NULL: empty */
  const char *target; /* T_SYMLINK / T_HARDLINK */
  int uid, gid;
  unsigned maj, min;
  const char *xname; /* one xattr */
  const char *xval;
  size_t fill; /* T_FILE: that many 'x' bytes instead of data */
  size_t xlen; /* bytes of xval; 0: strlen */
} tent;

enum { C_NONE, C_GZIP, C_ZSTD };

static const char *media[] = {"application/vnd.oci.image.layer.v1.tar",
                              "application/vnd.oci.image.layer.v1.tar+gzip",
                              "application/vnd.oci.image.layer.v1.tar+zstd"};

static void write_layer(const char *path, int comp, const tent *ents, size_t n)
{
  struct archive *a = archive_write_new();
  archive_write_set_format_pax(a);
  if (comp == C_GZIP)
    archive_write_add_filter_gzip(a);
  else if (comp == C_ZSTD)
    archive_write_add_filter_zstd(a);
  CU_ASSERT_EQUAL_FATAL(archive_write_open_filename(a, path), ARCHIVE_OK);
  for (size_t i = 0; i < n; i++) {
    const tent *t = &ents[i];
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, t->path);
    archive_entry_set_uid(e, t->uid);
    archive_entry_set_gid(e, t->gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    unsigned perm = t->perm ? t->perm : 0644;
    size_t size = 0;
    char *fill = NULL;
    switch (t->type) {
    case T_DIR:
      archive_entry_set_filetype(e, AE_IFDIR);
      perm = t->perm ? t->perm : 0755;
      break;
    case T_FILE:
      archive_entry_set_filetype(e, AE_IFREG);
      if (t->fill) {
        fill = cmn_malloc(t->fill);
        memset(fill, 'x', t->fill);
        size = t->fill;
      } else {
        size = t->data ? strlen(t->data) : 0;
      }
      archive_entry_set_size(e, (la_int64_t)size);
      break;
    case T_SYMLINK:
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, t->target);
      perm = 0777;
      break;
    case T_HARDLINK:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, t->target);
      archive_entry_set_size(e, 0);
      break;
    case T_CHR:
    case T_BLK:
      archive_entry_set_filetype(e, t->type == T_CHR ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(e, t->maj);
      archive_entry_set_rdevminor(e, t->min);
      break;
    case T_FIFO:
      archive_entry_set_filetype(e, AE_IFIFO);
      break;
    }
    archive_entry_set_perm(e, perm);
    if (t->xname)
      archive_entry_xattr_add_entry(e, t->xname, t->xval, t->xlen ? t->xlen : strlen(t->xval));
    CU_ASSERT_EQUAL(archive_write_header(a, e), ARCHIVE_OK);
    if (size)
      CU_ASSERT_EQUAL(archive_write_data(a, fill ? fill : t->data, size), (la_ssize_t)size);
    free(fill);
    archive_entry_free(e);
  }
  CU_ASSERT_EQUAL(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

/* A bare ustar header declaring `size` bytes, and nothing after it. */
static void write_raw_header(const char *path, const char *name, unsigned long long size)
{
  unsigned char h[512] = {0};
  snprintf((char *)h, 100, "%s", name);
  snprintf((char *)h + 100, 8, "%07o", 0644);
  snprintf((char *)h + 108, 8, "%07o", 0);
  snprintf((char *)h + 116, 8, "%07o", 0);
  snprintf((char *)h + 124, 12, "%011llo", size);
  snprintf((char *)h + 136, 12, "%011o", 0);
  h[156] = '0';
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fwrite(h, 1, sizeof(h), f);
  fclose(f);
}

/* ---- helpers ------------------------------------------------------------- */

static char *tmpdir_new(void)
{
  char tmpl[] = "/tmp/ember-layers-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpl));
  return cmn_strdup(tmpl);
}

static void rm_rf(const char *p)
{
  cmn_error err = {0};
  cmn_rm_rf(p, &err);
}

static int count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

/* Runs a shell command (test-controlled paths only), returns its stdout. */
static char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *cmd = cmn_vasprintf(fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  free(cmd);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  size_t cap = 4096, len = 0;
  char *out = cmn_malloc(cap);
  size_t r;
  while ((r = fread(out + len, 1, cap - len - 1, p)) > 0) {
    len += r;
    if (cap - len < 2) {
      cap *= 2;
      out = cmn_realloc(out, cap);
    }
  }
  out[len] = '\0';
  pclose(p);
  return out;
}

typedef struct lsent {
  bool found;
  unsigned mode, uid, gid;
  unsigned long long size;
} lsent;

/* One entry of `debugfs -R 'ls -l DIR'`. */
static lsent ls_entry(const char *img, const char *dir, const char *name)
{
  lsent r = {0};
  char *out = sh("debugfs -R 'ls -l %s' %s 2>/dev/null", dir, img);
  char *save = NULL;
  for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    unsigned ino, mode, uid, gid;
    unsigned long long size;
    int ft, consumed = 0;
    char date[32], tim[32];
    if (sscanf(line, " %u %o (%d) %u %u %llu %31s %31s %n", &ino, &mode, &ft, &uid, &gid, &size,
               date, tim, &consumed) >= 8 &&
        consumed > 0 && strcmp(line + consumed, name) == 0) {
      r = (lsent){true, mode, uid, gid, size};
      break;
    }
  }
  free(out);
  return r;
}

static bool fsck_clean(const char *img)
{
  char *cmd = cmn_asprintf("e2fsck -fn %s >/dev/null 2>&1", img);
  int st = system(cmd);
  free(cmd);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static char *build(const char *dir, const img_layer *l, size_t n, const img_rootfs_opts *o,
                   cmn_error *err)
{
  char *cache = cmn_asprintf("%s/cache", dir);
  char *path = NULL;
  bool built = false;
  img_rootfs_opts small = {.headroom_bytes = 8 << 20, .headroom_pct = 1};
  int rc = img_rootfs_build(o ? o : &small, cache, DIGEST, l, n, &path, &built, NULL, err);
  free(cache);
  if (rc < 0)
    return NULL;
  CU_ASSERT_TRUE(built);
  return path;
}

/* ---- tests --------------------------------------------------------------- */

static void test_tree(void)
{
  char *dir = tmpdir_new();
  char *l1 = cmn_asprintf("%s/l1.tgz", dir);
  char longname[251];
  memset(longname, 'n', 250);
  longname[250] = '\0';
  char *longpath = cmn_asprintf("etc/%s", longname);
  const tent ents[] = {
      {T_DIR, "./", 0755},
      {T_DIR, "etc", 0755},
      {T_FILE, "etc/passwd", 0644, "root:x:0:0:root:/root:/bin/sh\n"},
      {T_HARDLINK, "etc/passwd-", 0, NULL, "etc/passwd"},
      {T_FILE, "etc/shadow", 0640, "root:*:1::::::\n", NULL, 0, 42},
      {T_DIR, "bin", 0755},
      {T_FILE, "bin/busybox", 04755, "\177ELF"},
      {T_SYMLINK, "bin/sh", 0, NULL, "busybox"},
      {T_SYMLINK, "bin/abs", 0, NULL, "/bin/busybox"},
      {T_SYMLINK, "bin/dangling", 0, NULL, "../../../nowhere"},
      {T_FILE, "bin/ping", 0755, "ping", NULL, 0, 0, 0, 0, "security.capability",
       "\001\000\000\002\000\040\000\000", 0, 8},
      {T_FILE, "home/user/.profile", 0600, "x", NULL, 1000, 1000, 0, 0, "user.note", "hello"},
      {T_DIR, "tmp", 01777},
      {T_CHR, "dev/null", 0666, NULL, NULL, 0, 0, 1, 3},
      {T_BLK, "dev/vda", 0660, NULL, NULL, 0, 6, 254, 0},
      {T_FIFO, "run/initctl", 0600},
      {T_FILE, longpath, 0644, "long"},
      {T_FILE, "big/uid", 0644, "u", NULL, 100000, 200000},
  };
  write_layer(l1, C_GZIP, ents, sizeof(ents) / sizeof(ents[0]));
  img_layer l = {l1, media[C_GZIP], "sha256:l1"};
  cmn_error err = {0};
  char *img = build(dir, &l, 1, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(img);
  if (img == NULL)
    fprintf(stderr, "%s\n", err.msg);
  CU_ASSERT_TRUE(fsck_clean(img));

  lsent e = ls_entry(img, "/etc", "passwd");
  CU_ASSERT_TRUE(e.found);
  CU_ASSERT_EQUAL(e.mode, 0100644);
  CU_ASSERT_EQUAL(e.uid, 0);
  e = ls_entry(img, "/etc", "shadow");
  CU_ASSERT_EQUAL(e.mode, 0100640);
  CU_ASSERT_EQUAL(e.gid, 42);
  e = ls_entry(img, "/bin", "busybox");
  CU_ASSERT_EQUAL(e.mode, 0104755); /* setuid kept in the image (never on the host) */
  e = ls_entry(img, "/bin", "sh");
  CU_ASSERT_EQUAL(e.mode & 0170000, 0120000);
  e = ls_entry(img, "/tmp", ".");
  CU_ASSERT_EQUAL(e.mode, 041777);
  e = ls_entry(img, "/home/user", ".profile");
  CU_ASSERT_EQUAL(e.mode, 0100600);
  CU_ASSERT_EQUAL(e.uid, 1000);
  CU_ASSERT_EQUAL(e.gid, 1000);
  e = ls_entry(img, "/home", "user"); /* implicit parent: 0755 root */
  CU_ASSERT_EQUAL(e.mode, 040755);
  CU_ASSERT_EQUAL(e.uid, 0);
  e = ls_entry(img, "/big", "uid"); /* 32-bit owners */
  CU_ASSERT_EQUAL(e.uid, 100000);
  CU_ASSERT_EQUAL(e.gid, 200000);
  e = ls_entry(img, "/etc", longname);
  CU_ASSERT_TRUE(e.found);
  e = ls_entry(img, "/", ".");
  CU_ASSERT_EQUAL(e.mode, 040755);
  CU_ASSERT_EQUAL(e.uid, 0);

  char *out = sh("debugfs -R 'stat /bin/abs' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Fast link dest: \"/bin/busybox\""));
  free(out);
  out = sh("debugfs -R 'stat /bin/dangling' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Fast link dest: \"../../../nowhere\""));
  free(out);
  out = sh("debugfs -R 'stat /etc/passwd-' %s 2>/dev/null", img); /* hard link: 2 links */
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Links: 2"));
  free(out);
  out = sh("debugfs -R 'cat /etc/passwd-' %s 2>/dev/null", img);
  CU_ASSERT_STRING_EQUAL(out, "root:x:0:0:root:/root:/bin/sh\n");
  free(out);
  out = sh("debugfs -R 'stat /dev/null' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Type: character special"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Device major/minor number: 01:03"));
  free(out);
  out = sh("debugfs -R 'stat /dev/vda' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Type: block special"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "Device major/minor number: 254:00"));
  free(out);
  e = ls_entry(img, "/dev", "vda");
  CU_ASSERT_EQUAL(e.mode, 060660);
  CU_ASSERT_EQUAL(e.gid, 6);
  e = ls_entry(img, "/run", "initctl");
  CU_ASSERT_EQUAL(e.mode, 010600);
  out = sh("debugfs -R 'ea_get /home/user/.profile user.note' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "hello"));
  free(out);
  out = sh("debugfs -R 'ea_list /bin/ping' %s 2>/dev/null", img);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "security.capability (8) = 01 00 00 02 00 20 00 00"));
  free(out);

  /* The cache holds the image and nothing else (no lock, no build folder). */
  char *cache = cmn_asprintf("%s/cache", dir);
  CU_ASSERT_EQUAL(count_entries(cache), 1);
  free(cache);
  free(img);
  free(longpath);
  free(l1);
  rm_rf(dir);
  free(dir);
}

static void test_whiteouts(void)
{
  char *dir = tmpdir_new();
  char *p1 = cmn_asprintf("%s/l1.tar", dir), *p2 = cmn_asprintf("%s/l2.tgz", dir),
       *p3 = cmn_asprintf("%s/l3.tzst", dir);
  const tent e1[] = {
      {T_FILE, "etc/a", 0644, "a"},
      {T_FILE, "etc/b", 0644, "b"},
      {T_FILE, "etc/keep", 0644, "k"},
      {T_FILE, "d/x", 0644, "x"},
      {T_FILE, "d/sub/y", 0644, "y"},
      {T_FILE, "opq/old1", 0644, "1"},
      {T_DIR, "opq/olddir", 0700},
      {T_FILE, "f", 0644, "file then folder"},
      {T_DIR, "g", 0700},
      {T_FILE, "g/inner", 0644, "folder then file"},
      {T_FILE, "m", 0600, "mode changes"},
      {T_FILE, "hl/orig", 0644, "shared"},
      {T_HARDLINK, "hl/link", 0, NULL, "hl/orig"},
  };
  const tent e2[] = {
      {T_FILE, "etc/.wh.a", 0},
      {T_SYMLINK, "etc/b", 0, NULL, "keep"},
      {T_FILE, ".wh.d", 0},
      {T_FILE, "opq/.wh..wh..opq", 0},
      {T_FILE, "opq/new", 0644, "n"},
      {T_FILE, "etc/.wh..wh.plnk", 0}, /* aufs bookkeeping: ignored */
      {T_DIR, "f", 0750},
      {T_FILE, "g", 0644, "now a file"},
      {T_FILE, "m", 0755, "mode changed", NULL, 7, 7},
      {T_FILE, "hl/orig", 0644, "replaced"}, /* must not change hl/link */
      {T_FILE, "etc/.wh.missing", 0},        /* whiteout of nothing: fine */
  };
  const tent e3[] = {
      {T_FILE, "d/z", 0644, "z"}, {T_DIR, "opq", 0711}, /* folder over folder: metadata only */
  };
  write_layer(p1, C_NONE, e1, sizeof(e1) / sizeof(e1[0]));
  write_layer(p2, C_GZIP, e2, sizeof(e2) / sizeof(e2[0]));
  write_layer(p3, C_ZSTD, e3, sizeof(e3) / sizeof(e3[0]));
  img_layer l[] = {{p1, media[C_NONE], "sha256:l1"},
                   {p2, "application/vnd.docker.image.rootfs.diff.tar.gzip", "sha256:l2"},
                   {p3, media[C_ZSTD], "sha256:l3"}};
  cmn_error err = {0};
  char *img = build(dir, l, 3, NULL, &err);
  if (img == NULL)
    fprintf(stderr, "%s\n", err.msg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(img);
  CU_ASSERT_TRUE(fsck_clean(img));
  CU_ASSERT_FALSE(ls_entry(img, "/etc", "a").found);
  CU_ASSERT_FALSE(ls_entry(img, "/etc", ".wh.a").found);
  CU_ASSERT_FALSE(ls_entry(img, "/etc", ".wh..wh.plnk").found);
  CU_ASSERT_EQUAL(ls_entry(img, "/etc", "b").mode & 0170000, 0120000);
  CU_ASSERT_TRUE(ls_entry(img, "/etc", "keep").found);
  CU_ASSERT_FALSE(ls_entry(img, "/d", "x").found);
  CU_ASSERT_FALSE(ls_entry(img, "/d", "sub").found);
  CU_ASSERT_TRUE(ls_entry(img, "/d", "z").found);
  CU_ASSERT_FALSE(ls_entry(img, "/opq", "old1").found);
  CU_ASSERT_FALSE(ls_entry(img, "/opq", "olddir").found);
  CU_ASSERT_FALSE(ls_entry(img, "/opq", ".wh..wh..opq").found);
  CU_ASSERT_TRUE(ls_entry(img, "/opq", "new").found);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "opq").mode, 040711);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "f").mode, 040750);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "g").mode, 0100644);
  lsent m = ls_entry(img, "/", "m");
  CU_ASSERT_EQUAL(m.mode, 0100755);
  CU_ASSERT_EQUAL(m.uid, 7);
  char *out = sh("debugfs -R 'cat /hl/link' %s 2>/dev/null", img);
  CU_ASSERT_STRING_EQUAL(out, "shared");
  free(out);
  out = sh("debugfs -R 'cat /hl/orig' %s 2>/dev/null", img);
  CU_ASSERT_STRING_EQUAL(out, "replaced");
  free(out);
  free(img);
  free(p1);
  free(p2);
  free(p3);
  rm_rf(dir);
  free(dir);
}

typedef struct hostile {
  const char *what;
  tent e1[3];
  size_t n1;
  tent e2[3];
  size_t n2;
  int code;
  const char *msg;
} hostile;

static void test_hostile(void)
{
  char *dir = tmpdir_new();
  char *outside = cmn_asprintf("%s/outside", dir);
  CU_ASSERT_EQUAL_FATAL(mkdir(outside, 0755), 0);
  const hostile cases[] = {
      {"dotdot", {{T_FILE, "../../x", 0644, "x"}}, 1, {{0}}, 0, CMN_INVALID_ARGUMENT, "'..'"},
      {"dotdot inside",
       {{T_FILE, "a/../../x", 0644, "x"}},
       1,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "'..'"},
      {"absolute",
       {{T_FILE, "/etc/passwd", 0644, "x"}},
       1,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "absolute"},
      {"file through symlink",
       {{T_SYMLINK, "a", 0, NULL, outside}, {T_FILE, "a/passwd", 0644, "x"}},
       2,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "symbolic link 'a'"},
      {"file through symlink of a lower layer",
       {{T_SYMLINK, "a", 0, NULL, outside}},
       1,
       {{T_FILE, "a/passwd", 0644, "x"}},
       1,
       CMN_INVALID_ARGUMENT,
       "symbolic link 'a'"},
      {"folder through relative symlink",
       {{T_SYMLINK, "up", 0, NULL, ".."}, {T_DIR, "up/escape", 0755}},
       2,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "symbolic link 'up'"},
      {"hard link out",
       {{T_HARDLINK, "x", 0, NULL, "../outside"}},
       1,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "'..'"},
      {"hard link absolute",
       {{T_HARDLINK, "x", 0, NULL, "/etc/passwd"}},
       1,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "absolute"},
      {"hard link to nothing",
       {{T_HARDLINK, "x", 0, NULL, "nothing"}},
       1,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "no earlier entry"},
      {"hard link to a folder",
       {{T_DIR, "d", 0755}, {T_HARDLINK, "x", 0, NULL, "d"}},
       2,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "folder"},
      {"hard link through symlink",
       {{T_SYMLINK, "a", 0, NULL, "/etc"}, {T_HARDLINK, "x", 0, NULL, "a/passwd"}},
       2,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "no earlier entry"},
      {"entry below a file",
       {{T_FILE, "f", 0644, "x"}, {T_FILE, "f/x", 0644, "x"}},
       2,
       {{0}},
       0,
       CMN_INVALID_ARGUMENT,
       "not a folder"},
      {"over the byte cap",
       {{T_FILE, "big", 0644, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 200000}},
       1,
       {{0}},
       0,
       CMN_RESOURCE_EXHAUSTED,
       "limit"},
      {"over the cap across layers",
       {{T_FILE, "a", 0644, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 60000}},
       1,
       {{T_FILE, "b", 0644, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 60000}},
       1,
       CMN_RESOURCE_EXHAUSTED,
       "limit"},
      {"over the entry cap",
       {{T_FILE, "1", 0644, "x"}, {T_FILE, "2", 0644, "x"}, {T_FILE, "3", 0644, "x"}},
       3,
       {{T_FILE, "4", 0644, "x"}, {T_FILE, "5", 0644, "x"}, {T_FILE, "6", 0644, "x"}},
       3,
       CMN_RESOURCE_EXHAUSTED,
       "entries"},
  };
  img_rootfs_opts o = {.limits = {.max_bytes = 100000, .max_entries = 5},
                       .headroom_bytes = 8 << 20,
                       .headroom_pct = 1};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const hostile *h = &cases[i];
    char *p1 = cmn_asprintf("%s/h1.tar", dir), *p2 = cmn_asprintf("%s/h2.tar", dir);
    write_layer(p1, C_NONE, h->e1, h->n1);
    write_layer(p2, C_GZIP, h->e2, h->n2);
    img_layer l[] = {{p1, media[C_NONE], "sha256:h1"}, {p2, media[C_GZIP], "sha256:h2"}};
    cmn_error err = {0};
    char *img = build(dir, l, h->n2 ? 2 : 1, &o, &err);
    CU_ASSERT_PTR_NULL(img);
    CU_ASSERT_EQUAL(err.code, h->code);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, h->msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "entry '"));
    if (img != NULL || err.code != h->code || strstr(err.msg, h->msg) == NULL)
      fprintf(stderr, "case '%s': code %d: %s\n", h->what, err.code, err.msg);
    char *cache = cmn_asprintf("%s/cache", dir);
    CU_ASSERT_EQUAL(count_entries(cache), 0);   /* nothing half-written kept */
    CU_ASSERT_EQUAL(count_entries(outside), 0); /* nothing written outside */
    free(cache);
    free(img);
    free(p1);
    free(p2);
  }

  /* 300 levels of folders: refused (the manifest and the ext4 pass recurse). */
  char *deep = cmn_malloc(300 * 2 + 2);
  for (int i = 0; i < 300; i++)
    memcpy(deep + 2 * i, "d/", 2);
  memcpy(deep + 600, "f", 2);
  char *pd = cmn_asprintf("%s/deep.tar", dir);
  const tent ed[] = {{T_FILE, deep, 0644, "x"}};
  write_layer(pd, C_NONE, ed, 1);
  img_layer ld = {pd, media[C_NONE], "sha256:deep"};
  cmn_error derr = {0};
  CU_ASSERT_PTR_NULL(build(dir, &ld, 1, NULL, &derr));
  CU_ASSERT_EQUAL(derr.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(derr.msg, "levels"));
  free(pd);
  free(deep);

  /* A header declaring ~8 GiB, then nothing: refused before any read. */
  char *raw = cmn_asprintf("%s/raw.tar", dir);
  write_raw_header(raw, "huge", 077777777777ULL);
  img_layer lr = {raw, media[C_NONE], "sha256:raw"};
  cmn_error err = {0};
  o.limits.max_entries = 0;
  CU_ASSERT_PTR_NULL(build(dir, &lr, 1, &o, &err));
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "declares 8589934591 bytes"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "entry 'huge'"));

  /* Corrupt, truncated, wrongly typed layers. */
  char *good = cmn_asprintf("%s/good.tgz", dir);
  tent many[40];
  for (int i = 0; i < 40; i++)
    many[i] =
        (tent){T_FILE, cmn_asprintf("f%02d", i), 0644, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 2000};
  write_layer(good, C_GZIP, many, 40);
  for (int i = 0; i < 40; i++)
    free((char *)many[i].path);
  char *trunc = cmn_asprintf("%s/trunc.tgz", dir);
  free(sh("head -c 600 %s > %s", good, trunc));
  char *junk = cmn_asprintf("%s/junk.tgz", dir);
  free(sh("head -c 4096 /dev/urandom > %s", junk));
  const struct {
    const char *path, *type, *msg;
  } bad[] = {{trunc, media[C_GZIP], "layer sha256:bad"},
             {junk, media[C_GZIP], "layer sha256:bad"},
             {good, "application/x-rar", "unsupported layer media type"},
             {good, media[C_ZSTD], "layer sha256:bad"}};
  img_rootfs_opts big = {.headroom_bytes = 8 << 20, .headroom_pct = 1};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    img_layer lb = {bad[i].path, bad[i].type, "sha256:bad"};
    cmn_err_clear(&err);
    CU_ASSERT_PTR_NULL(build(dir, &lb, 1, &big, &err));
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].msg));
    char *cache = cmn_asprintf("%s/cache", dir);
    CU_ASSERT_EQUAL(count_entries(cache), 0);
    free(cache);
  }
  /* The same layers, well typed, build. */
  img_layer lg = {good, media[C_GZIP], "sha256:good"};
  char *img = build(dir, &lg, 1, &big, &err);
  CU_ASSERT_PTR_NOT_NULL(img);
  free(img);

  /* A digest that would name a path is refused. */
  char *path = NULL;
  cmn_err_clear(&err);
  char *cache = cmn_asprintf("%s/cache2", dir);
  CU_ASSERT_EQUAL(
      img_rootfs_build(&big, cache, "sha256:../../etc", &lg, 1, &path, NULL, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_FALSE(cmn_path_exists(cache));
  free(cache);
  free(raw);
  free(good);
  free(trunc);
  free(junk);
  free(outside);
  rm_rf(dir);
  free(dir);
}

/* A file over a symbolic link (same layer or a later one) replaces the link;
 * the file the link pointed at, outside the root, is never written. */
static void test_links_replaced(void)
{
  char *dir = tmpdir_new();
  char *canary = cmn_asprintf("%s/canary", dir);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_file_write_atomic(canary, "canary\n", 7, 0644, &err), 0);
  char *p1 = cmn_asprintf("%s/l1.tar", dir), *p2 = cmn_asprintf("%s/l2.tar", dir);
  const tent e1[] = {
      {T_SYMLINK, "x", 0, NULL, canary},
      {T_SYMLINK, "y", 0, NULL, canary},
      {T_FILE, "y", 0644, "same layer\n"},
      {T_HARDLINK, "z", 0, NULL, "x"}, /* a hard link to the link itself */
  };
  const tent e2[] = {{T_FILE, "x", 0600, "later layer\n"}};
  write_layer(p1, C_NONE, e1, 4);
  write_layer(p2, C_NONE, e2, 1);
  img_layer l[] = {{p1, media[C_NONE], "sha256:l1"}, {p2, media[C_NONE], "sha256:l2"}};
  char *img = build(dir, l, 2, NULL, &err);
  if (img == NULL)
    fprintf(stderr, "%s\n", err.msg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(img);
  char *text = NULL;
  size_t len = 0;
  CU_ASSERT_EQUAL(cmn_file_read(canary, 100, &text, &len, &err), 0);
  CU_ASSERT_STRING_EQUAL(text, "canary\n");
  free(text);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "x").mode, 0100600);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "y").mode, 0100644);
  CU_ASSERT_EQUAL(ls_entry(img, "/", "z").mode & 0170000, 0120000);
  char *out = sh("debugfs -R 'cat /x' %s 2>/dev/null", img);
  CU_ASSERT_STRING_EQUAL(out, "later layer\n");
  free(out);
  out = sh("debugfs -R 'cat /y' %s 2>/dev/null", img);
  CU_ASSERT_STRING_EQUAL(out, "same layer\n");
  free(out);
  CU_ASSERT_TRUE(fsck_clean(img));
  free(img);

  /* mkfs failing, or a layer missing: an error, and nothing in the cache. */
  char *cache = cmn_asprintf("%s/cache2", dir);
  img_rootfs_opts bad = {.mkfs_ext4 = "/bin/false", .headroom_bytes = 8 << 20};
  char *path = NULL;
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(img_rootfs_build(&bad, cache, DIGEST, l, 2, &path, NULL, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INTERNAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/bin/false failed"));
  CU_ASSERT_EQUAL(count_entries(cache), 0);
  img_layer missing = {"/nonexistent/layer", media[C_NONE], "sha256:gone"};
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(img_rootfs_build(NULL, cache, DIGEST, &missing, 1, &path, NULL, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "sha256:gone"));
  CU_ASSERT_EQUAL(count_entries(cache), 0);
  free(cache);
  free(p1);
  free(p2);
  free(canary);
  rm_rf(dir);
  free(dir);
}

/* Built once per digest: a second call reuses it; concurrent builders of one
 * digest agree on one build; a per-instance clone is the same bytes, sparse. */
static void test_cache_and_clone(void)
{
  char *dir = tmpdir_new();
  char *p = cmn_asprintf("%s/l.tgz", dir);
  const tent e[] = {{T_FILE, "data", 0644, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 300000},
                    {T_FILE, "etc/hostname", 0644, "ember\n"}};
  write_layer(p, C_GZIP, e, 2);
  img_layer l = {p, media[C_GZIP], "sha256:l"};
  char *cache = cmn_asprintf("%s/cache", dir);
  img_rootfs_opts o = {.headroom_bytes = 8 << 20, .headroom_pct = 1};
  enum { N = 3 };
  pid_t kids[N];
  for (int i = 0; i < N; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      char *path = NULL;
      bool built = false;
      cmn_error err = {0};
      int rc = img_rootfs_build(&o, cache, DIGEST, &l, 1, &path, &built, NULL, &err);
      _exit(rc < 0 ? 1 : built ? 10 : 11);
    }
  }
  int n_built = 0, n_reused = 0;
  for (int i = 0; i < N; i++) {
    int st = 0;
    waitpid(kids[i], &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st));
    n_built += WEXITSTATUS(st) == 10;
    n_reused += WEXITSTATUS(st) == 11;
  }
  CU_ASSERT_EQUAL(n_built, 1);
  CU_ASSERT_EQUAL(n_reused, N - 1);
  CU_ASSERT_EQUAL(count_entries(cache), 1);

  char *path = NULL;
  bool built = true;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(img_rootfs_build(&o, cache, DIGEST, &l, 1, &path, &built, NULL, &err), 0);
  CU_ASSERT_FALSE(built);
  CU_ASSERT_PTR_NOT_NULL_FATAL(path);

  char *dest = cmn_asprintf("%s/instance-disk.ext4", dir);
  cmn_clone_method m = CMN_CLONE_NONE;
  CU_ASSERT_EQUAL(cmn_file_clone(path, dest, &m, NULL, &err), 0);
  CU_ASSERT_TRUE(m == CMN_CLONE_REFLINK || m == CMN_CLONE_SPARSE);
  printf("\n  clone method on this filesystem: %s\n", cmn_clone_method_name(m));
  char *out = sh("cmp %s %s && echo same", path, dest);
  CU_ASSERT_STRING_EQUAL(out, "same\n");
  free(out);
  struct stat a, b;
  CU_ASSERT_EQUAL(stat(path, &a), 0);
  CU_ASSERT_EQUAL(stat(dest, &b), 0);
  CU_ASSERT_EQUAL(a.st_size, b.st_size);
  CU_ASSERT_TRUE(b.st_blocks <= a.st_blocks + 64); /* holes kept */
  CU_ASSERT_TRUE(b.st_blocks * 512 < b.st_size / 4);
  /* The copy is private: writing it leaves the cached image alone. */
  CU_ASSERT_TRUE(fsck_clean(dest));
  free(sh("debugfs -w -R 'rm /etc/hostname' %s 2>/dev/null", dest));
  CU_ASSERT_TRUE(ls_entry(path, "/etc", "hostname").found);
  CU_ASSERT_FALSE(ls_entry(dest, "/etc", "hostname").found);
  /* An existing dest is never replaced. */
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(cmn_file_clone(path, dest, &m, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  CU_ASSERT_EQUAL(count_entries(dir), 3); /* l.tgz, cache, the copy: no temp file */
  free(dest);
  free(path);
  free(cache);
  free(p);
  rm_rf(dir);
  free(dir);
}

static bool have(const char *prog)
{
  char *p = cmn_which(prog);
  if (p == NULL) {
    char *s = cmn_asprintf("/usr/sbin/%s", prog);
    bool ok = access(s, X_OK) == 0;
    free(s);
    return ok;
  }
  free(p);
  return true;
}

int main(void)
{
  const char *need[] = {"mkfs.ext4", "debugfs", "e2fsck"};
  for (size_t i = 0; i < 3; i++)
    if (!have(need[i])) {
      printf("SKIP: %s not found (Debian package e2fsprogs)\n", need[i]);
      return 77;
    }
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("layers", NULL, NULL);
  CU_add_test(s, "tree: modes, owners, links, devices, xattrs, long names", test_tree);
  CU_add_test(s, "whiteouts, opaque folders, replacements across layers", test_whiteouts);
  CU_add_test(s, "hostile layers refused, nothing kept", test_hostile);
  CU_add_test(s, "links replaced, never written through; failed mkfs", test_links_replaced);
  CU_add_test(s, "built once per digest, concurrent builders, clone", test_cache_and_clone);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
