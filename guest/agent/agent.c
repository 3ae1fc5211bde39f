/* agent.c: the guest agent's session: frames in and out over one connection,
 * resync on HELLO, channel table, and the poll loop over the connection, the
 * channels' pipes and SIGCHLD (guest/agent/agent.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/agent.h"

#define GA_HELLO_MAX 4096u /* a HELLO frame's payload, while resyncing */
#define GA_POLL_MAX (3 + 3 * EMBER_GA_MAX_CHANNELS)

void ga_log(const char *fmt, ...)
{
  int saved = errno;
  char line[1024];
  int n = snprintf(line, sizeof(line), "ember-agent: ");
  va_list ap;
  va_start(ap, fmt);
  errno = saved;
  int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof(line) - 2)
    len = sizeof(line) - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
  errno = saved;
}

int ga_send(ga_session *s, uint8_t type, uint32_t channel, const void *payload, size_t len)
{
  if (s->fd < 0)
    return 0; /* no connection: dropped */
  if (s->out_off > 0 && s->out_off == s->out_len)
    s->out_off = s->out_len = 0;
  size_t need = s->out_len + EMBER_GA_HEADER + len;
  if (need > s->out_cap) {
    if (s->out_off > 0) {
      memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
      s->out_len -= s->out_off;
      s->out_off = 0;
      need = s->out_len + EMBER_GA_HEADER + len;
    }
    if (need > s->out_cap) {
      size_t cap = s->out_cap ? s->out_cap : 64u << 10;
      while (cap < need)
        cap *= 2;
      uint8_t *p = realloc(s->out, cap);
      if (p == NULL) {
        ga_log("out of memory (output queue of %zu bytes)", need);
        return -1;
      }
      s->out = p;
      s->out_cap = cap;
    }
  }
  ember_ga_hdr_encode(s->out + s->out_len, type, channel, (uint32_t)len);
  if (len > 0)
    memcpy(s->out + s->out_len + EMBER_GA_HEADER, payload, len);
  s->out_len += EMBER_GA_HEADER + len;
  return 0;
}

uint32_t ga_errno_code(int e)
{
  switch (e) {
  case ENOENT:
  case ENOTDIR:
    return EMBER_GA_E_NOT_FOUND;
  case EACCES:
  case EPERM:
  case EROFS:
    return EMBER_GA_E_PERMISSION;
  case ENOSPC:
  case EDQUOT:
  case EIO:
  case EFBIG:
    return EMBER_GA_E_IO;
  case EAGAIN:
  case EMFILE:
  case ENFILE:
  case ENOMEM:
    return EMBER_GA_E_BUSY;
  case EISDIR:
  case ENOEXEC:
  case ELOOP:
  case ENAMETOOLONG:
  case EINVAL:
    return EMBER_GA_E_INVALID;
  default:
    return EMBER_GA_E_INTERNAL;
  }
}

void ga_fail(ga_session *s, ga_chan *c, uint32_t code, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  uint8_t buf[600];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, EMBER_GA_R_CODE, code);
  ember_ga_wr_str(&w, EMBER_GA_R_MSG, msg);
  ga_send(s, EMBER_GA_T_ERROR, c->id, buf, w.len);
  if (c->kind != GA_FREE)
    ga_chan_end(s, c);
}

void ga_chan_end(ga_session *s, ga_chan *c)
{
  (void)s;
  if (c->kind == GA_EXEC)
    ga_exec_end(c);
  else if (c->kind == GA_PUT || c->kind == GA_GET)
    ga_file_end(c);
  memset(c, 0, sizeof(*c));
  c->kind = GA_FREE;
  c->in_fd = c->out_fd = c->err_fd = c->file_fd = -1;
}

void ga_consumed(ga_session *s, ga_chan *c, size_t n)
{
  c->recv_consumed += (uint32_t)n;
  if (c->recv_consumed < EMBER_GA_WINDOW / 2)
    return;
  uint8_t buf[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, EMBER_GA_R_BYTES, c->recv_consumed);
  ga_send(s, EMBER_GA_T_WINDOW, c->id, buf, w.len);
  c->recv_inflight -= c->recv_consumed;
  c->recv_consumed = 0;
}

static void ga_reset(ga_session *s)
{
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    if (s->ch[i].kind != GA_FREE)
      ga_chan_end(s, &s->ch[i]);
}

static ga_chan *ga_find(ga_session *s, uint32_t id)
{
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    if (s->ch[i].kind != GA_FREE && s->ch[i].id == id)
      return &s->ch[i];
  return NULL;
}

static void ga_hello(ga_session *s, const uint8_t *p, size_t n)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  uint64_t nonce = 0;
  uint32_t version = 0;
  int k;
  while ((k = ember_ga_rd_next(&r, &tag, &v, &vn)) > 0) {
    if (tag == EMBER_GA_R_NONCE)
      ember_ga_val_u64(v, vn, &nonce);
    else if (tag == EMBER_GA_R_VERSION)
      ember_ga_val_u32(v, vn, &version);
  }
  ga_reset(s);
  s->established = true;
  uint8_t buf[128];
  ember_ga_wr w;
  ember_ga_wr_init(&w, buf, sizeof(buf));
  ember_ga_wr_u32(&w, EMBER_GA_R_VERSION, EMBER_GA_VERSION);
  ember_ga_wr_u64(&w, EMBER_GA_R_NONCE, nonce);
  ember_ga_wr_str(&w, EMBER_GA_R_AGENT, GA_AGENT_NAME);
  ga_send(s, EMBER_GA_T_HELLO_ACK, 0, buf, w.len);
  (void)version; /* the host decides whether it speaks our version */
}

static void ga_open(ga_session *s, const ember_ga_hdr *h, const uint8_t *p)
{
  ga_chan tmp = {.id = h->channel};
  if (h->channel == 0) {
    ga_fail(s, &tmp, EMBER_GA_E_INVALID, "channel 0 is the link");
    return;
  }
  ga_chan *c = ga_find(s, h->channel);
  if (c != NULL) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "channel %u is in use", (unsigned)h->channel);
    return;
  }
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS && c == NULL; i++)
    if (s->ch[i].kind == GA_FREE)
      c = &s->ch[i];
  if (c == NULL) {
    ga_fail(s, &tmp, EMBER_GA_E_BUSY, "%u channels are open", EMBER_GA_MAX_CHANNELS);
    return;
  }
  memset(c, 0, sizeof(*c));
  c->id = h->channel;
  c->in_fd = c->out_fd = c->err_fd = c->file_fd = -1;
  c->send_credit = EMBER_GA_WINDOW;
  c->last_nl = true;
  if (h->type == EMBER_GA_T_EXEC) {
    c->kind = GA_EXEC;
    ga_exec_start(s, c, p, h->length);
  } else if (h->type == EMBER_GA_T_PUT) {
    c->kind = GA_PUT;
    ga_put_start(s, c, p, h->length);
  } else {
    c->kind = GA_GET;
    ga_get_start(s, c, p, h->length);
  }
}

/* Data from the host (STDIN, DATA): checked against the window. */
static bool ga_data_ok(ga_session *s, ga_chan *c, size_t n)
{
  if (n > EMBER_GA_MAX_DATA || c->recv_inflight + n > EMBER_GA_WINDOW) {
    ga_fail(s, c, EMBER_GA_E_INVALID, "data beyond the window (%zu bytes, %u in flight)", n,
            (unsigned)c->recv_inflight);
    return false;
  }
  c->recv_inflight += (uint32_t)n;
  return true;
}

static void ga_window(ga_chan *c, const uint8_t *p, size_t n)
{
  ember_ga_rd r;
  ember_ga_rd_init(&r, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  uint32_t bytes = 0;
  while (ember_ga_rd_next(&r, &tag, &v, &vn) > 0)
    if (tag == EMBER_GA_R_BYTES)
      ember_ga_val_u32(v, vn, &bytes);
  c->send_credit += bytes;
  if (c->send_credit > EMBER_GA_WINDOW)
    c->send_credit = EMBER_GA_WINDOW; /* a host never credits more than it got */
}

static void ga_frame(ga_session *s, const ember_ga_hdr *h, const uint8_t *p)
{
  if (h->type == EMBER_GA_T_HELLO) {
    ga_hello(s, p, h->length);
    return;
  }
  if (h->type == EMBER_GA_T_PING) {
    ga_send(s, EMBER_GA_T_PONG, 0, p, h->length);
    return;
  }
  if (h->type == EMBER_GA_T_EXEC || h->type == EMBER_GA_T_PUT || h->type == EMBER_GA_T_GET) {
    ga_open(s, h, p);
    return;
  }
  ga_chan *c = ga_find(s, h->channel);
  if (c == NULL)
    return; /* a channel that just ended (EXIT/ERROR crossed the host's frame) */
  switch (h->type) {
  case EMBER_GA_T_CLOSE:
    ga_chan_end(s, c);
    break;
  case EMBER_GA_T_WINDOW:
    ga_window(c, p, h->length);
    break;
  case EMBER_GA_T_STDIN:
    if (c->kind != GA_EXEC)
      ga_fail(s, c, EMBER_GA_E_INVALID, "STDIN on a file channel");
    else if (ga_data_ok(s, c, h->length))
      ga_exec_stdin(s, c, p, h->length);
    break;
  case EMBER_GA_T_STDIN_EOF:
    if (c->kind == GA_EXEC)
      ga_exec_stdin_eof(s, c);
    break;
  case EMBER_GA_T_RESIZE:
    if (c->kind == GA_EXEC)
      ga_exec_resize(s, c, p, h->length);
    break;
  case EMBER_GA_T_SIGNAL:
    if (c->kind == GA_EXEC)
      ga_exec_signal(s, c, p, h->length);
    break;
  case EMBER_GA_T_DATA:
    if (c->kind != GA_PUT)
      ga_fail(s, c, EMBER_GA_E_INVALID, "DATA on a channel that is not a put");
    else if (ga_data_ok(s, c, h->length))
      ga_put_data(s, c, p, h->length);
    break;
  case EMBER_GA_T_END:
    if (c->kind != GA_PUT)
      ga_fail(s, c, EMBER_GA_E_INVALID, "END on a channel that is not a put");
    else
      ga_put_finish(s, c);
    break;
  default:
    ga_fail(s, c, EMBER_GA_E_INVALID, "unexpected frame type %u", (unsigned)h->type);
    break;
  }
}

/* While not established: the offset of the first HELLO header in the buffer
 * (magic, type HELLO, zero flags, reserved and channel, a small length), or
 * where a partial one may start. */
static size_t ga_scan_hello(const uint8_t *b, size_t n)
{
  static const uint8_t magic[4] = {0x45, 0x4d, 0x47, 0x41};
  for (size_t i = 0; i < n; i++) {
    size_t left = n - i;
    size_t cmp = left < 4 ? left : 4;
    if (memcmp(b + i, magic, cmp) != 0)
      continue;
    if (left < EMBER_GA_HEADER)
      return i; /* maybe the start of one */
    ember_ga_hdr h;
    if (ember_ga_hdr_decode(b + i, &h) == 0 && h.type == EMBER_GA_T_HELLO && h.channel == 0 &&
        h.length <= GA_HELLO_MAX)
      return i;
  }
  return n;
}

/* Handles every complete frame in the input buffer. */
static void ga_parse(ga_session *s)
{
  size_t pos = 0;
  while (s->fd >= 0) {
    size_t left = s->in_len - pos;
    if (!s->established) {
      pos += ga_scan_hello(s->in + pos, left);
      left = s->in_len - pos;
    }
    if (left < EMBER_GA_HEADER)
      break;
    ember_ga_hdr h;
    if (ember_ga_hdr_decode(s->in + pos, &h) < 0) {
      ga_log("bad frame header: skipping to the next HELLO");
      s->established = false;
      pos++;
      continue;
    }
    if (left - EMBER_GA_HEADER < h.length)
      break;
    ga_frame(s, &h, s->in + pos + EMBER_GA_HEADER);
    pos += EMBER_GA_HEADER + h.length;
  }
  if (pos > 0) {
    memmove(s->in, s->in + pos, s->in_len - pos);
    s->in_len -= pos;
  }
}

/* Reads what the connection has: 1 data read (or EAGAIN), 0 at EOF, -1 on error. */
static int ga_read_conn(ga_session *s)
{
  size_t cap = EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD;
  ssize_t r = read(s->fd, s->in + s->in_len, cap - s->in_len);
  if (r < 0)
    return errno == EAGAIN || errno == EINTR ? 1 : -1;
  if (r == 0)
    return 0;
  s->in_len += (size_t)r;
  ga_parse(s);
  return 1;
}

static int ga_write_conn(ga_session *s)
{
  while (s->out_off < s->out_len) {
    ssize_t w = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK)
      w = write(s->fd, s->out + s->out_off, s->out_len - s->out_off);
    if (w < 0)
      return errno == EAGAIN || errno == EINTR ? 0 : -1;
    s->out_off += (size_t)w;
  }
  s->out_off = s->out_len = 0;
  return 0;
}

/* The connection ended: a new session starts with the next one. */
static void ga_drop(ga_session *s, bool close_fd)
{
  ga_reset(s);
  if (close_fd && s->fd >= 0)
    close(s->fd);
  if (close_fd)
    s->fd = -1;
  s->established = false;
  s->in_len = 0;
  s->out_off = s->out_len = 0;
}

static void ga_reap(ga_session *s)
{
  int st;
  pid_t w;
  while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
    for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
      ga_chan *c = &s->ch[i];
      if (c->kind == GA_EXEC && c->pid == w && !c->reaped) {
        c->reaped = true;
        c->status = st;
        ga_exec_maybe_exit(s, c);
      }
    }
  }
}

static void ga_nonblock(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int64_t ga_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { GA_P_CONN, GA_P_LISTEN, GA_P_SIG, GA_P_IN, GA_P_OUT, GA_P_ERR };

int ga_run(const ga_options *o, int listen_fd, int conn_fd, bool virtio)
{
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigaction(SIGPIPE, &ign, NULL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_SETMASK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    ga_log("signalfd: %m");
    return -1;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  ga_session *s = calloc(1, sizeof(*s));
  uint8_t *in = malloc(EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD);
  if (s == NULL || in == NULL) {
    ga_log("out of memory");
    free(s);
    free(in);
    close(sfd);
    return -1;
  }
  s->o = o;
  s->in = in;
  s->fd = conn_fd;
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    ga_chan_end(s, &s->ch[i]);
  if (conn_fd >= 0) {
    ga_nonblock(conn_fd);
    fcntl(conn_fd, F_SETFD, FD_CLOEXEC); /* --fd N: not for exec'd processes */
  }
  int64_t hup_until = 0; /* virtio: host side not connected, poll again then */
  int rc = 0;
  for (;;) {
    if (s->fd < 0 && listen_fd < 0)
      break;
    struct pollfd pfd[GA_POLL_MAX];
    int what[GA_POLL_MAX];
    ga_chan *who[GA_POLL_MAX];
    size_t np = 0;
    int timeout = -1;
    int64_t now = ga_now_ms();
    bool room = s->out_len - s->out_off < GA_OUT_HIGH;
    if (s->fd >= 0 && now >= hup_until) {
      short ev = 0;
      if (s->out_len - s->out_off < GA_OUT_MAX &&
          s->in_len < EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD)
        ev |= POLLIN;
      if (s->out_off < s->out_len)
        ev |= POLLOUT;
      pfd[np] = (struct pollfd){.fd = s->fd, .events = ev};
      what[np] = GA_P_CONN;
      who[np++] = NULL;
    } else if (s->fd >= 0) {
      timeout = (int)(hup_until - now);
    }
    if (listen_fd >= 0) {
      pfd[np] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
      what[np] = GA_P_LISTEN;
      who[np++] = NULL;
    }
    pfd[np] = (struct pollfd){.fd = sfd, .events = POLLIN};
    what[np] = GA_P_SIG;
    who[np++] = NULL;
    for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
      ga_chan *c = &s->ch[i];
      if (c->kind == GA_GET && room && c->send_credit > 0)
        timeout = 0; /* files are always readable */
      if (c->kind != GA_EXEC)
        continue;
      if (c->in_fd >= 0 && c->in_len > 0) {
        pfd[np] = (struct pollfd){.fd = c->in_fd, .events = POLLOUT};
        what[np] = GA_P_IN;
        who[np++] = c;
      }
      bool can = room && c->send_credit > 0;
      if (c->out_fd >= 0 && can) {
        pfd[np] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
        what[np] = GA_P_OUT;
        who[np++] = c;
      }
      if (c->err_fd >= 0 && can) {
        pfd[np] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
        what[np] = GA_P_ERR;
        who[np++] = c;
      }
    }
    if (poll(pfd, np, timeout) < 0) {
      if (errno == EINTR)
        continue;
      ga_log("poll: %m");
      rc = -1;
      break;
    }
    for (size_t i = 0; i < np; i++) {
      short re = pfd[i].revents;
      if (re == 0)
        continue;
      ga_chan *c = who[i];
      switch (what[i]) {
      case GA_P_CONN: {
        int r = 1;
        if (re & POLLOUT && ga_write_conn(s) < 0)
          r = -1;
        if (r > 0 && re & (POLLIN | POLLERR))
          r = ga_read_conn(s);
        if (r > 0 && (re & (POLLIN | POLLHUP)) == POLLHUP)
          r = 0;
        if (r <= 0 && virtio) {
          if (s->established || s->in_len > 0)
            ga_log("host side disconnected: session reset");
          ga_drop(s, false);
          hup_until = ga_now_ms() + 50;
        } else if (r <= 0) {
          ga_drop(s, true);
        }
        break;
      }
      case GA_P_LISTEN: {
        int nfd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (nfd < 0)
          break;
        if (s->fd >= 0)
          ga_log("new connection: the previous session ends");
        ga_drop(s, true);
        s->fd = nfd;
        break;
      }
      case GA_P_SIG: {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
          ;
        break;
      }
      case GA_P_IN:
        if (c->kind == GA_EXEC)
          ga_exec_flush_stdin(s, c);
        break;
      case GA_P_OUT:
      case GA_P_ERR:
        if (c->kind == GA_EXEC && c->send_credit > 0)
          ga_exec_read(s, c, what[i] == GA_P_ERR);
        break;
      default:
        break;
      }
    }
    ga_reap(s);
    for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
      ga_chan *c = &s->ch[i];
      if (c->kind == GA_GET && s->out_len - s->out_off < GA_OUT_HIGH)
        ga_get_pump(s, c);
    }
    if (s->fd >= 0 && s->out_off < s->out_len && ga_write_conn(s) < 0) {
      if (virtio) {
        ga_drop(s, false);
        hup_until = ga_now_ms() + 50;
      } else {
        ga_drop(s, true);
      }
    }
  }
  ga_drop(s, true);
  close(sfd);
  free(s->out);
  free(s->in);
  free(s);
  return rc;
}
