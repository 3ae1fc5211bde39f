/* qmp.c: QMP client (see qmp.h): framing, command/reply matching by id,
 * event queueing, fd passing with SCM_RIGHTS. */
#include "drivers/qemu/qmp.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Events are kept for a later qemu_qmp_wait_event; older ones are dropped
 * beyond this many, so a long-lived connection does not grow without bound. */
#define QMP_MAX_EVENTS 64
/* A single QMP message larger than this means something is wrong. */
#define QMP_MAX_LINE (16u << 20)

struct qemu_qmp {
  int fd;
  char *buf;
  size_t len;
  size_t cap;
  cJSON *events; /* array of whole event objects, oldest first */
  uint64_t next_id;
};

static int64_t qmp_deadline(int timeout_ms)
{
  return timeout_ms < 0 ? INT64_MAX : cmn_now_us() + (int64_t)timeout_ms * 1000;
}

static int qmp_remaining_ms(int64_t deadline)
{
  if (deadline == INT64_MAX)
    return -1;
  int64_t left = deadline - cmn_now_us();
  if (left <= 0)
    return 0;
  return left / 1000 > INT32_MAX ? INT32_MAX : (int)((left + 999) / 1000);
}

void qemu_qmp_feed(qemu_qmp *q, const char *data, size_t n)
{
  if (q->len + n + 1 > q->cap) {
    size_t cap = q->cap ? q->cap : 4096;
    while (cap < q->len + n + 1)
      cap *= 2;
    q->buf = cmn_realloc(q->buf, cap);
    q->cap = cap;
  }
  memcpy(q->buf + q->len, data, n);
  q->len += n;
  q->buf[q->len] = '\0';
}

cJSON *qemu_qmp_next_message(qemu_qmp *q, bool *bad)
{
  *bad = false;
  for (;;) {
    char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
    if (nl == NULL)
      return NULL;
    size_t line_len = (size_t)(nl - q->buf);
    size_t used = line_len + 1;
    while (line_len > 0 && (q->buf[line_len - 1] == '\r' || q->buf[line_len - 1] == ' '))
      line_len--;
    cJSON *msg = NULL;
    bool empty = line_len == 0;
    if (!empty) {
      msg = cJSON_ParseWithLength(q->buf, line_len);
      if (msg == NULL || !cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        msg = NULL;
        *bad = true;
      }
    }
    memmove(q->buf, q->buf + used, q->len - used);
    q->len -= used;
    q->buf[q->len] = '\0';
    if (msg != NULL || *bad)
      return msg;
  }
}

/* Reads what is available, waiting up to the deadline for at least one byte. */
static int qmp_read_some(qemu_qmp *q, int64_t deadline, cmn_error *err)
{
  if (q->fd < 0)
    return cmn_err_set(err, CMN_UNAVAILABLE, "QMP connection is closed");
  if (q->len > QMP_MAX_LINE)
    return cmn_err_set(err, CMN_INTERNAL, "QMP message larger than %u bytes", QMP_MAX_LINE);
  for (;;) {
    struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
    int r = poll(&pfd, 1, qmp_remaining_ms(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "poll on QMP socket");
    if (r == 0)
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "timed out waiting for QEMU on QMP");
    char chunk[8192];
    ssize_t n = recv(q->fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return cmn_err_errno(err, CMN_UNAVAILABLE, errno, "read from QMP socket");
    if (n == 0)
      return cmn_err_set(err, CMN_UNAVAILABLE, "QEMU closed the QMP connection");
    qemu_qmp_feed(q, chunk, (size_t)n);
    return 0;
  }
}

/* Next whole message, reading as needed until the deadline. */
static int qmp_receive(qemu_qmp *q, int64_t deadline, cJSON **out, cmn_error *err)
{
  for (;;) {
    bool bad = false;
    cJSON *msg = qemu_qmp_next_message(q, &bad);
    if (msg != NULL) {
      *out = msg;
      return 0;
    }
    if (bad)
      continue; /* QEMU never sends malformed lines; skip rather than fail */
    if (qmp_read_some(q, deadline, err) < 0)
      return -1;
  }
}

static void qmp_queue_event(qemu_qmp *q, cJSON *ev)
{
  cJSON_AddItemToArray(q->events, ev);
  while (cJSON_GetArraySize(q->events) > QMP_MAX_EVENTS)
    cJSON_DeleteItemFromArray(q->events, 0);
}

static int qmp_send_all(qemu_qmp *q, const char *data, size_t len, int pass_fd, cmn_error *err)
{
  size_t off = 0;
  bool fd_sent = pass_fd < 0;
  while (off < len) {
    struct iovec iov = {.iov_base = (char *)data + off, .iov_len = len - off};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } ctl;
    if (!fd_sent) {
      /* The fd rides with the first bytes of the command, which is where
       * QEMU's socket chardev picks it up for this message. */
      memset(&ctl, 0, sizeof ctl);
      mh.msg_control = ctl.buf;
      mh.msg_controllen = sizeof ctl.buf;
      struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cmn_err_errno(err, CMN_UNAVAILABLE, errno, "write to QMP socket");
    fd_sent = true;
    off += (size_t)n;
  }
  return 0;
}

static int qmp_error_code(const char *klass)
{
  if (klass != NULL && strcmp(klass, "CommandNotFound") == 0)
    return CMN_UNIMPLEMENTED;
  return CMN_INTERNAL;
}

int qemu_qmp_execute(qemu_qmp *q, const char *command, cJSON *args, int pass_fd, int timeout_ms,
                     cJSON **ret, cmn_error *err)
{
  if (ret != NULL)
    *ret = NULL;
  char id[32];
  snprintf(id, sizeof id, "ember-%llu", (unsigned long long)++q->next_id);
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "execute", command);
  if (args != NULL)
    cJSON_AddItemToObject(req, "arguments", args);
  cJSON_AddStringToObject(req, "id", id);
  cleanup_free char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (text == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "%s: cannot encode QMP command", command);
  cleanup_free char *line = cmn_asprintf("%s\n", text);

  int64_t deadline = qmp_deadline(timeout_ms);
  if (qmp_send_all(q, line, strlen(line), pass_fd, err) < 0)
    return cmn_err_prefix(err, "%s", command);
  for (;;) {
    cJSON *msg = NULL;
    if (qmp_receive(q, deadline, &msg, err) < 0)
      return cmn_err_prefix(err, "%s", command);
    if (cJSON_GetObjectItemCaseSensitive(msg, "event") != NULL) {
      qmp_queue_event(q, msg);
      continue;
    }
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (!cJSON_IsString(mid) || strcmp(mid->valuestring, id) != 0) {
      cJSON_Delete(msg); /* a late reply to an earlier, timed-out command */
      continue;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
    if (e != NULL) {
      const cJSON *desc = cJSON_GetObjectItemCaseSensitive(e, "desc");
      const cJSON *klass = cJSON_GetObjectItemCaseSensitive(e, "class");
      const char *k = cJSON_IsString(klass) ? klass->valuestring : NULL;
      cmn_err_set(err, qmp_error_code(k), "%s: %s", command,
                  cJSON_IsString(desc) ? desc->valuestring : "QEMU reported an error");
      cJSON_Delete(msg);
      return -1;
    }
    if (ret != NULL)
      *ret = cJSON_DetachItemFromObjectCaseSensitive(msg, "return");
    cJSON_Delete(msg);
    return 0;
  }
}

/* Removes and returns the first queued event with this name, or NULL. */
static cJSON *qmp_take_event(qemu_qmp *q, const char *name)
{
  int n = cJSON_GetArraySize(q->events);
  for (int i = 0; i < n; i++) {
    cJSON *ev = cJSON_GetArrayItem(q->events, i);
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(ev, "event");
    if (cJSON_IsString(en) && strcmp(en->valuestring, name) == 0)
      return cJSON_DetachItemFromArray(q->events, i);
  }
  return NULL;
}

int qemu_qmp_wait_event(qemu_qmp *q, const char *name, int timeout_ms, cJSON **data, cmn_error *err)
{
  if (data != NULL)
    *data = NULL;
  int64_t deadline = qmp_deadline(timeout_ms);
  for (;;) {
    cJSON *ev = qmp_take_event(q, name);
    if (ev != NULL) {
      if (data != NULL)
        *data = cJSON_DetachItemFromObjectCaseSensitive(ev, "data");
      cJSON_Delete(ev);
      return 0;
    }
    cJSON *msg = NULL;
    if (qmp_receive(q, deadline, &msg, err) < 0)
      return cmn_err_prefix(err, "waiting for QMP event %s", name);
    if (cJSON_GetObjectItemCaseSensitive(msg, "event") != NULL)
      qmp_queue_event(q, msg);
    else
      cJSON_Delete(msg); /* a late reply nobody waits for */
  }
}

bool qemu_qmp_has_event(qemu_qmp *q, const char *name)
{
  /* Drain what is already on the socket, without blocking. */
  for (;;) {
    cJSON *msg = NULL;
    bool bad = false;
    while ((msg = qemu_qmp_next_message(q, &bad)) != NULL || bad) {
      if (msg != NULL && cJSON_GetObjectItemCaseSensitive(msg, "event") != NULL)
        qmp_queue_event(q, msg);
      else
        cJSON_Delete(msg);
    }
    if (qmp_read_some(q, qmp_deadline(0), NULL) < 0)
      break;
  }
  int n = cJSON_GetArraySize(q->events);
  for (int i = 0; i < n; i++) {
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(q->events, i), "event");
    if (cJSON_IsString(en) && strcmp(en->valuestring, name) == 0)
      return true;
  }
  return false;
}

void qemu_qmp_clear_events(qemu_qmp *q)
{
  while (cJSON_GetArraySize(q->events) > 0)
    cJSON_DeleteItemFromArray(q->events, 0);
}

static qemu_qmp *qmp_new(int fd)
{
  qemu_qmp *q = cmn_calloc(1, sizeof *q);
  q->fd = fd;
  q->events = cJSON_CreateArray();
  return q;
}

void qemu_qmp_close(qemu_qmp *q)
{
  if (q == NULL)
    return;
  if (q->fd >= 0)
    close(q->fd);
  free(q->buf);
  cJSON_Delete(q->events);
  free(q);
}

int qemu_qmp_open_fd(int fd, int timeout_ms, qemu_qmp **out, cmn_error *err)
{
  qemu_qmp *q = qmp_new(fd);
  int64_t deadline = qmp_deadline(timeout_ms);
  cJSON *greeting = NULL;
  for (;;) {
    if (qmp_receive(q, deadline, &greeting, err) < 0) {
      qemu_qmp_close(q);
      return cmn_err_prefix(err, "QMP greeting");
    }
    if (cJSON_GetObjectItemCaseSensitive(greeting, "QMP") != NULL)
      break;
    cJSON_Delete(greeting);
  }
  cJSON_Delete(greeting);
  if (qemu_qmp_execute(q, "qmp_capabilities", NULL, -1, qmp_remaining_ms(deadline), NULL, err) <
      0) {
    qemu_qmp_close(q);
    return -1;
  }
  *out = q;
  return 0;
}

/* Connects one unix stream socket. Paths longer than sun_path are reached
 * through /proc/self/fd/<dirfd>/<name>, which the kernel resolves like any
 * other path. */
static int qmp_connect_once(const char *path, int *errnum)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  cleanup_close int dirfd = -1;
  if (cmn_snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path) < 0) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
      *errnum = ENAMETOOLONG;
      return -1;
    }
    cleanup_free char *dir = cmn_strndup(path, (size_t)(slash - path));
    dirfd = cmn_open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
    if (dirfd < 0) {
      *errnum = errno;
      return -1;
    }
    if (cmn_snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dirfd, slash + 1) <
        0) {
      *errnum = ENAMETOOLONG;
      return -1;
    }
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *errnum = errno;
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    *errnum = errno;
    close(fd);
    return -1;
  }
  return fd;
}

int qemu_qmp_connect(const char *path, const cmn_proc *proc, int timeout_ms, qemu_qmp **out,
                     cmn_error *err)
{
  int64_t deadline = qmp_deadline(timeout_ms);
  for (;;) {
    int errnum = 0;
    int fd = qmp_connect_once(path, &errnum);
    if (fd >= 0)
      return qemu_qmp_open_fd(fd, qmp_remaining_ms(deadline), out, err);
    if (errnum != ENOENT && errnum != ECONNREFUSED)
      return cmn_err_errno(err, CMN_UNAVAILABLE, errnum, "connect to QMP socket %s", path);
    if (proc != NULL && proc->pid > 0 && !cmn_proc_alive(proc))
      return cmn_err_set(err, CMN_UNAVAILABLE, "QEMU exited before its QMP socket %s accepted",
                         path);
    if (cmn_now_us() >= deadline)
      return cmn_err_errno(err, CMN_DEADLINE_EXCEEDED, errnum,
                           "QMP socket %s did not accept in time", path);
    cmn_sleep_ms(1);
  }
}
