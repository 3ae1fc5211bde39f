/* files.c: put and get channels. A put writes a temp file beside PATH
 * (created O_EXCL, mode 0600), and at END with the announced SIZE fsyncs it,
 * sets MODE and renames it over PATH (then fsyncs the directory); any error,
 * CLOSE or a new session removes the temp file. A get sends a regular file
 * (symlinks followed; anything else is INVALID) as INFO then DATA within the
 * host's window, then END. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/agent/agent.h"

#define GA_PATH_MAX 4096

typedef struct ga_file_req {
  char path[GA_PATH_MAX];
  bool has_path, has_mode, has_size;
  uint32_t mode;
  uint64_t size;
} ga_file_req;

static int ga_file_parse(ga_file_req *q, const uint8_t *p, size_t n, char *why, size_t wl)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  int k;
  while ((k = ember_ga_rd_next(&r, &tag, &v, &vn)) > 0) {
    switch (tag) {
    case EMBER_GA_R_PATH:
      if (ember_ga_val_str_ok(v, vn) < 0 || vn == 0 || vn >= GA_PATH_MAX || v[0] != '/') {
        snprintf(why, wl, "PATH must be an absolute path without NUL, under %u bytes", GA_PATH_MAX);
        return -1;
      }
      memcpy(q->path, v, vn);
      q->path[vn] = '\0';
      q->has_path = true;
      break;
    case EMBER_GA_R_MODE:
      if (ember_ga_val_u32(v, vn, &q->mode) < 0 || (q->mode & ~07777u) != 0) {
        snprintf(why, wl, "MODE must be a u32 of permission bits (07777)");
        return -1;
      }
      q->has_mode = true;
      break;
    case EMBER_GA_R_SIZE:
      if (ember_ga_val_u64(v, vn, &q->size) < 0) {
        snprintf(why, wl, "SIZE must be a u64");
        return -1;
      }
      q->has_size = true;
      break;
    default:
      break;
    }
  }
  if (k < 0) {
    snprintf(why, wl, "malformed records");
    return -1;
  }
  if (!q->has_path) {
    snprintf(why, wl, "no PATH");
    return -1;
  }
  size_t len = strlen(q->path);
  if (q->path[len - 1] == '/') {
    snprintf(why, wl, "PATH names a directory (ends with /)");
    return -1;
  }
  return 0;
}

static char *ga_dup(const char *s)
{
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

void ga_put_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  ga_file_req q = {0};
  char why[256];
  if (ga_file_parse(&q, p, n, why, sizeof(why)) < 0) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "%s", why);
    return;
  }
  if (!q.has_size) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "a put needs SIZE");
    return;
  }
  struct stat st;
  if (stat(q.path, &st) == 0 && !S_ISREG(st.st_mode)) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "%s exists and is not a regular file", q.path);
    return;
  }
  /* Beside PATH: same filesystem, so the rename is atomic. */
  const char *slash = strrchr(q.path, '/');
  size_t dirlen = (size_t)(slash - q.path);
  char tmp[GA_PATH_MAX + 32];
  int tl = snprintf(tmp, sizeof(tmp), "%.*s/.ember-put-%s.XXXXXX", (int)dirlen, q.path, slash + 1);
  if (tl < 0 || (size_t)tl >= sizeof(tmp) || strlen(slash + 1) > 200) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "PATH %s: name too long", q.path);
    return;
  }
  int fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT | O_EXCL, mode 0600 */
  if (fd < 0) {
    int e = errno;
    errno = e;
    ga_fail(s, c, ga_errno_code(e), "create a file in the directory of %s: %m", q.path);
    return;
  }
  c->file_fd = fd;
  c->path = ga_dup(q.path);
  c->tmp = ga_dup(tmp);
  c->mode = q.has_mode ? q.mode : 0644;
  c->size = q.size;
  if (c->path == NULL || c->tmp == NULL) {
    if (c->tmp == NULL)
      unlink(tmp);
    ga_fail(s, c, EMBER_GA_E_BUSY, "out of memory");
    return;
  }
  ga_send(s, EMBER_GA_T_READY, c->id, NULL, 0);
}

void ga_put_data(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  if (c->done + n > c->size) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "more data than SIZE %llu", (unsigned long long)c->size);
    return;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(c->file_fd, p + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      int e = errno;
      errno = e;
      ga_fail(s, c, ga_errno_code(e) == EMBER_GA_E_INTERNAL ? EMBER_GA_E_IO : ga_errno_code(e),
              "write %s: %m", c->path);
      return;
    }
    off += (size_t)w;
  }
  c->done += n;
  ga_consumed(s, c, n);
}

void ga_put_finish(ga_session *s, ga_chan *c)
{
  if (c->done != c->size) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "got %llu bytes, SIZE said %llu", (unsigned long long)c->done,
            (unsigned long long)c->size);
    return;
  }
  if (fsync(c->file_fd) < 0 || fchmod(c->file_fd, c->mode) < 0) {
    int e = errno;
    errno = e;
    ga_fail(s, c, EMBER_GA_E_IO, "sync %s: %m", c->path);
    return;
  }
  if (rename(c->tmp, c->path) < 0) {
    int e = errno;
    errno = e;
    ga_fail(s, c, ga_errno_code(e), "rename over %s: %m", c->path);
    return;
  }
  free(c->tmp);
  c->tmp = NULL; /* renamed: nothing to remove */
  char *slash = strrchr(c->path, '/');
  *slash = '\0';
  int dfd = open(slash == c->path ? "/" : c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *slash = '/';
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  uint8_t buf[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, c->done);
  ga_send(s, EMBER_GA_T_DONE, c->id, buf, w.len);
  ga_chan_end(s, c);
}

void ga_get_start(ga_session *s, ga_chan *c, const uint8_t *p, size_t n)
{
  ga_file_req q = {0};
  char why[256];
  if (ga_file_parse(&q, p, n, why, sizeof(why)) < 0) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "%s", why);
    return;
  }
  /* O_NONBLOCK: opening a FIFO must not block the agent. */
  int fd = open(q.path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    errno = e;
    ga_fail(s, c, ga_errno_code(e), "open %s: %m", q.path);
    return;
  }
  c->file_fd = fd;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "%s is not a regular file", q.path);
    return;
  }
  c->path = ga_dup(q.path);
  c->size = (uint64_t)st.st_size;
  uint8_t buf[32];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, c->size);
  ember_ga_wr_u32(&w, EMBER_GA_R_MODE, (uint32_t)st.st_mode & 07777u);
  ga_send(s, EMBER_GA_T_INFO, c->id, buf, w.len);
}

void ga_get_pump(ga_session *s, ga_chan *c)
{
  if (c->send_credit == 0)
    return;
  uint8_t buf[EMBER_GA_MAX_DATA];
  size_t want = sizeof(buf) < c->send_credit ? sizeof(buf) : (size_t)c->send_credit;
  ssize_t r;
  do
    r = read(c->file_fd, buf, want);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    errno = e;
    ga_fail(s, c, EMBER_GA_E_IO, "read %s: %m", c->path ? c->path : "");
    return;
  }
  if (r == 0) {
    ga_send(s, EMBER_GA_T_END, c->id, NULL, 0);
    ga_chan_end(s, c);
    return;
  }
  c->send_credit -= (size_t)r;
  c->done += (size_t)r;
  ga_send(s, EMBER_GA_T_DATA, c->id, buf, (size_t)r);
}

void ga_file_end(ga_chan *c)
{
  if (c->file_fd >= 0)
    close(c->file_fd);
  c->file_fd = -1;
  if (c->tmp != NULL)
    unlink(c->tmp);
  free(c->tmp);
  free(c->path);
  c->tmp = c->path = NULL;
}
