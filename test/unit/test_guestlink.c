/* test_guestlink.c: CUnit tests of agent/guestlink against a scripted fake
 * guest agent: a thread serving a unix socket that speaks the frames of
 * guest/agent_proto.h. Its "programs" (argv[0]) script what the guest does:
 *   echo ARGS   STARTED, STDOUT ARGS, STDERR "err", EXIT 3
 *   cat         STDOUT echoes STDIN (window-aware both ways); EXIT 0 at EOF
 *   sink        takes STDIN without crediting it until a SIGNAL
 *   flood       1 MiB of STDOUT (needs the host's WINDOW credits), EXIT 0
 *   sleep       STARTED, then nothing
 *   nouser notfound nospace perm   ERROR with that code
 *   garbage oversize overwindow    STARTED, then a protocol violation
 * PUT stores one file in memory; GET serves it back. */
#include "agent/guestlink/guestlink.h"
#include "common/error.h"
#include "drivers/hypervisor.h"
#include "guest/agent_proto.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the fake guest */

enum { FK_NORMAL = 0, FK_SILENT = 1, FK_REFUSE = 2 };

#define FK_CHANS 128
#define FLOOD_BYTES (1u << 20)

typedef struct fk_chan {
  uint32_t id;
  char prog[64];
  int64_t credit;         /* what the fake may still send */
  uint32_t in_uncredited; /* STDIN/DATA taken, not credited back */
  uint8_t *out;           /* outbox */
  size_t out_len, out_pos;
  uint8_t out_type;
  uint8_t final_type; /* 0: none yet */
  uint32_t final_code;
  bool is_put;
  uint8_t *put;
  size_t put_len, put_size;
} fk_chan;

typedef struct fake {
  char path[300];
  int lfd, conn;
  pthread_t th;
  pthread_mutex_t mu;
  bool stop;
  int mode;
  bool hybrid, garbage_before_ack;
  bool stuck; /* "stuck": stops reading until unstuck (mu, cond) */
  pthread_cond_t cond;
  /* counters (mu) */
  int accepts, hellos, execs, windows_rx, closes, connect_lines;
  size_t sink_bytes;
  char connect_line[64];
  uint8_t *file;
  size_t file_len;
  fk_chan *ch[FK_CHANS];
} fake;

static int read_full(int fd, void *buf, size_t n)
{
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int fk_send(int fd, uint8_t type, uint32_t ch, const void *p, size_t n)
{
  uint8_t h[EMBER_GA_HEADER];
  ember_ga_hdr_encode(h, type, ch, (uint32_t)n);
  if (write_full(fd, h, sizeof h) < 0)
    return -1;
  return n > 0 ? write_full(fd, p, n) : 0;
}

static int fk_send_u32(int fd, uint8_t type, uint32_t ch, uint16_t tag, uint32_t v)
{
  uint8_t pl[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_u32(&w, tag, v);
  return fk_send(fd, type, ch, pl, w.len);
}

static int fk_send_error(int fd, uint32_t ch, uint32_t code, const char *msg)
{
  uint8_t pl[256];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_u32(&w, EMBER_GA_R_CODE, code);
  ember_ga_wr_str(&w, EMBER_GA_R_MSG, msg);
  return fk_send(fd, EMBER_GA_T_ERROR, ch, pl, w.len);
}

static fk_chan *fk_find(fake *f, uint32_t id)
{
  for (int i = 0; i < FK_CHANS; i++)
    if (f->ch[i] != NULL && f->ch[i]->id == id)
      return f->ch[i];
  return NULL;
}

static fk_chan *fk_new(fake *f, uint32_t id)
{
  for (int i = 0; i < FK_CHANS; i++)
    if (f->ch[i] == NULL) {
      fk_chan *c = calloc(1, sizeof *c);
      c->id = id;
      c->credit = EMBER_GA_WINDOW;
      f->ch[i] = c;
      return c;
    }
  return NULL;
}

static void fk_del(fake *f, fk_chan *c)
{
  for (int i = 0; i < FK_CHANS; i++)
    if (f->ch[i] == c)
      f->ch[i] = NULL;
  free(c->out);
  free(c->put);
  free(c);
}

static void fk_out(fk_chan *c, uint8_t type, const void *p, size_t n)
{
  c->out = realloc(c->out, c->out_len + n + 1);
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  c->out_type = type;
}

/* Sends what the credit allows, then the final frame. */
static int fk_pump(fake *f, int fd)
{
  for (int i = 0; i < FK_CHANS; i++) {
    fk_chan *c = f->ch[i];
    if (c == NULL)
      continue;
    while (c->out_pos < c->out_len && c->credit > 0) {
      size_t n = c->out_len - c->out_pos;
      if (n > EMBER_GA_MAX_DATA)
        n = EMBER_GA_MAX_DATA;
      if ((int64_t)n > c->credit)
        n = (size_t)c->credit;
      if (fk_send(fd, c->out_type, c->id, c->out + c->out_pos, n) < 0)
        return -1;
      c->out_pos += n;
      c->credit -= (int64_t)n;
    }
    if (c->out_pos == c->out_len && c->final_type != 0) {
      int r = 0;
      if (c->final_type == EMBER_GA_T_EXIT)
        r = fk_send_u32(fd, EMBER_GA_T_EXIT, c->id, EMBER_GA_R_EXIT_CODE, c->final_code);
      else
        r = fk_send(fd, c->final_type, c->id, NULL, 0);
      fk_del(f, c);
      if (r < 0)
        return -1;
    }
  }
  return 0;
}

static void fk_credit_in(int fd, fk_chan *c, uint32_t n, bool withhold)
{
  c->in_uncredited += n;
  if (!withhold && c->in_uncredited >= EMBER_GA_WINDOW / 2) {
    fk_send_u32(fd, EMBER_GA_T_WINDOW, c->id, EMBER_GA_R_BYTES, c->in_uncredited);
    c->in_uncredited = 0;
  }
}

static int fk_exec(fake *f, int fd, uint32_t id, const uint8_t *p, size_t n)
{
  ember_ga_rd rd;
  ember_ga_rd_init(&rd, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  char argv[8][64];
  int argc = 0;
  while (ember_ga_rd_next(&rd, &tag, &v, &vn) == 1)
    if (tag == EMBER_GA_R_ARG && argc < 8) {
      size_t m = vn < 63 ? vn : 63;
      memcpy(argv[argc], v, m);
      argv[argc++][m] = '\0';
    }
  pthread_mutex_lock(&f->mu);
  f->execs++;
  pthread_mutex_unlock(&f->mu);
  if (argc == 0)
    return fk_send_error(fd, id, EMBER_GA_E_INVALID, "no arguments");
  const char *prog = argv[0];
  if (strcmp(prog, "nouser") == 0)
    return fk_send_error(fd, id, EMBER_GA_E_NO_USER, "unknown user bob");
  if (strcmp(prog, "notfound") == 0)
    return fk_send_error(fd, id, EMBER_GA_E_NOT_FOUND, "notfound: no such program");
  if (strcmp(prog, "nospace") == 0)
    return fk_send_error(fd, id, EMBER_GA_E_IO, "write: No space left on device");
  if (strcmp(prog, "perm") == 0)
    return fk_send_error(fd, id, EMBER_GA_E_PERMISSION, "permission denied");
  fk_chan *c = fk_new(f, id);
  if (c == NULL)
    return fk_send_error(fd, id, EMBER_GA_E_BUSY, "too many channels");
  snprintf(c->prog, sizeof c->prog, "%s", prog);
  if (fk_send_u32(fd, EMBER_GA_T_STARTED, id, EMBER_GA_R_PID, 42) < 0)
    return -1;
  if (strcmp(prog, "echo") == 0) {
    for (int i = 1; i < argc; i++)
      fk_out(c, EMBER_GA_T_STDOUT, argv[i], strlen(argv[i]));
    if (fk_pump(f, fd) < 0 || fk_send(fd, EMBER_GA_T_STDERR, id, "err", 3) < 0)
      return -1;
    c->final_type = EMBER_GA_T_EXIT;
    c->final_code = 3;
  } else if (strcmp(prog, "flood") == 0) {
    uint8_t *buf = malloc(FLOOD_BYTES);
    for (size_t i = 0; i < FLOOD_BYTES; i++)
      buf[i] = (uint8_t)(i * 7);
    fk_out(c, EMBER_GA_T_STDOUT, buf, FLOOD_BYTES);
    free(buf);
    c->final_type = EMBER_GA_T_EXIT;
  } else if (strcmp(prog, "stuck") == 0) {
    pthread_mutex_lock(&f->mu);
    f->stuck = true;
    while (f->stuck && !f->stop)
      pthread_cond_wait(&f->cond, &f->mu);
    pthread_mutex_unlock(&f->mu);
  } else if (strcmp(prog, "garbage") == 0) {
    return write_full(fd, "this is not a frame at all", 26);
  } else if (strcmp(prog, "oversize") == 0) {
    uint8_t h[EMBER_GA_HEADER];
    ember_ga_hdr_encode(h, EMBER_GA_T_STDOUT, id, EMBER_GA_MAX_PAYLOAD + 1);
    return write_full(fd, h, sizeof h);
  } else if (strcmp(prog, "overwindow") == 0) {
    static uint8_t chunk[EMBER_GA_MAX_DATA];
    for (uint32_t sent = 0; sent <= EMBER_GA_WINDOW; sent += EMBER_GA_MAX_DATA)
      if (fk_send(fd, EMBER_GA_T_STDOUT, id, chunk, sizeof chunk) < 0)
        return -1;
  }
  return 0;
}

static int fk_frame(fake *f, int fd, const ember_ga_hdr *h, const uint8_t *p)
{
  if (h->type == EMBER_GA_T_PING)
    return fk_send(fd, EMBER_GA_T_PONG, 0, p, h->length);
  if (h->type == EMBER_GA_T_EXEC)
    return fk_exec(f, fd, h->channel, p, h->length);
  fk_chan *c = fk_find(f, h->channel);
  ember_ga_rd rd;
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  switch (h->type) {
  case EMBER_GA_T_PUT: {
    c = fk_new(f, h->channel);
    if (c == NULL)
      return fk_send_error(fd, h->channel, EMBER_GA_E_BUSY, "too many channels");
    c->is_put = true;
    ember_ga_rd_init(&rd, p, h->length);
    while (ember_ga_rd_next(&rd, &tag, &v, &vn) == 1) {
      if (tag == EMBER_GA_R_SIZE)
        c->put_size = ember_ga_get64(v);
      if (tag == EMBER_GA_R_PATH && vn == 5 && memcmp(v, "/full", 5) == 0)
        snprintf(c->prog, sizeof c->prog, "full");
    }
    c->put = malloc(c->put_size + 1);
    return fk_send(fd, EMBER_GA_T_READY, h->channel, NULL, 0);
  }
  case EMBER_GA_T_GET: {
    ember_ga_rd_init(&rd, p, h->length);
    while (ember_ga_rd_next(&rd, &tag, &v, &vn) == 1)
      if (tag == EMBER_GA_R_PATH && vn == 8 && memcmp(v, "/missing", 8) == 0)
        return fk_send_error(fd, h->channel, EMBER_GA_E_NOT_FOUND, "/missing: no such file");
    c = fk_new(f, h->channel);
    if (c == NULL)
      return fk_send_error(fd, h->channel, EMBER_GA_E_BUSY, "too many channels");
    uint8_t pl[32];
    ember_ga_wr w;
    ember_ga_wr_init(&w, pl, sizeof pl);
    pthread_mutex_lock(&f->mu);
    ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, f->file_len);
    ember_ga_wr_u32(&w, EMBER_GA_R_MODE, 0640);
    if (f->file_len > 0)
      fk_out(c, EMBER_GA_T_DATA, f->file, f->file_len);
    pthread_mutex_unlock(&f->mu);
    c->final_type = EMBER_GA_T_END;
    return fk_send(fd, EMBER_GA_T_INFO, h->channel, pl, w.len);
  }
  case EMBER_GA_T_DATA:
    if (c != NULL && strcmp(c->prog, "full") == 0) {
      fk_del(f, c);
      return fk_send_error(fd, h->channel, EMBER_GA_E_IO, "write: No space left on device");
    }
    if (c != NULL && c->is_put && c->put_len + h->length <= c->put_size) {
      memcpy(c->put + c->put_len, p, h->length);
      c->put_len += h->length;
      fk_credit_in(fd, c, h->length, false);
    }
    return 0;
  case EMBER_GA_T_END: {
    if (c == NULL)
      return 0;
    pthread_mutex_lock(&f->mu);
    free(f->file);
    f->file = c->put;
    f->file_len = c->put_len;
    c->put = NULL;
    pthread_mutex_unlock(&f->mu);
    uint8_t pl[32];
    ember_ga_wr w;
    ember_ga_wr_init(&w, pl, sizeof pl);
    ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, f->file_len);
    fk_del(f, c);
    return fk_send(fd, EMBER_GA_T_DONE, h->channel, pl, w.len);
  }
  case EMBER_GA_T_STDIN:
    if (c == NULL)
      return 0;
    if (strcmp(c->prog, "sink") == 0) {
      pthread_mutex_lock(&f->mu);
      f->sink_bytes += h->length;
      pthread_mutex_unlock(&f->mu);
      fk_credit_in(fd, c, h->length, true);
    } else {
      fk_out(c, EMBER_GA_T_STDOUT, p, h->length);
      fk_credit_in(fd, c, h->length, false);
    }
    return 0;
  case EMBER_GA_T_SIGNAL:
    if (c != NULL && c->in_uncredited > 0) {
      fk_send_u32(fd, EMBER_GA_T_WINDOW, c->id, EMBER_GA_R_BYTES, c->in_uncredited);
      c->in_uncredited = 0;
    }
    return 0;
  case EMBER_GA_T_STDIN_EOF:
    if (c != NULL)
      c->final_type = EMBER_GA_T_EXIT;
    return 0;
  case EMBER_GA_T_WINDOW:
    ember_ga_rd_init(&rd, p, h->length);
    while (ember_ga_rd_next(&rd, &tag, &v, &vn) == 1)
      if (tag == EMBER_GA_R_BYTES && c != NULL)
        c->credit += ember_ga_get32(v);
    pthread_mutex_lock(&f->mu);
    f->windows_rx++;
    pthread_mutex_unlock(&f->mu);
    return 0;
  case EMBER_GA_T_CLOSE: {
    pthread_mutex_lock(&f->mu);
    f->closes++;
    pthread_mutex_unlock(&f->mu);
    bool chatty = c != NULL && strcmp(c->prog, "chatty") == 0;
    if (c != NULL)
      fk_del(f, c);
    if (chatty) /* frames already on their way when CLOSE came */
      return fk_send(fd, EMBER_GA_T_STDOUT, h->channel, "late", 4) < 0 ||
                     fk_send_u32(fd, EMBER_GA_T_EXIT, h->channel, EMBER_GA_R_EXIT_CODE, 9) < 0
                 ? -1
                 : 0;
    return 0;
  }
  default:
    return 0;
  }
}

static void fk_serve(fake *f, int fd)
{
  if (f->hybrid) {
    char line[64];
    size_t n = 0;
    while (n + 1 < sizeof line && read_full(fd, &line[n], 1) == 0 && line[n] != '\n')
      n++;
    line[n] = '\0';
    pthread_mutex_lock(&f->mu);
    snprintf(f->connect_line, sizeof f->connect_line, "%s", line);
    f->connect_lines++;
    pthread_mutex_unlock(&f->mu);
    if (f->mode == FK_REFUSE)
      return;
    if (write_full(fd, "OK 1073741824\n", 14) < 0)
      return;
  }
  uint8_t *buf = malloc(EMBER_GA_MAX_PAYLOAD + 1);
  bool acked = false;
  for (;;) {
    uint8_t hb[EMBER_GA_HEADER];
    ember_ga_hdr h;
    if (read_full(fd, hb, sizeof hb) < 0 || ember_ga_hdr_decode(hb, &h) < 0 ||
        read_full(fd, buf, h.length) < 0)
      break;
    if (h.type == EMBER_GA_T_HELLO) {
      pthread_mutex_lock(&f->mu);
      f->hellos++;
      pthread_mutex_unlock(&f->mu);
      if (f->mode == FK_SILENT)
        continue;
      uint64_t nonce = 0;
      ember_ga_rd rd;
      ember_ga_rd_init(&rd, buf, h.length);
      uint16_t tag;
      const uint8_t *v;
      size_t vn;
      while (ember_ga_rd_next(&rd, &tag, &v, &vn) == 1)
        if (tag == EMBER_GA_R_NONCE)
          nonce = ember_ga_get64(v);
      uint8_t pl[64];
      ember_ga_wr w;
      if (f->garbage_before_ack) {
        /* stale bytes: junk, a half magic, a HELLO_ACK with another
         * nonce, an old channel's frame, a bad header */
        write_full(fd, "\x01\x02junk", 6);
        write_full(fd, "EMG", 3);
        ember_ga_wr_init(&w, pl, sizeof pl);
        ember_ga_wr_u64(&w, EMBER_GA_R_NONCE, nonce + 1);
        ember_ga_wr_str(&w, EMBER_GA_R_AGENT, "stale");
        fk_send(fd, EMBER_GA_T_HELLO_ACK, 0, pl, w.len);
        fk_send(fd, EMBER_GA_T_STDOUT, 7, "old", 3);
        uint8_t bad[EMBER_GA_HEADER];
        ember_ga_hdr_encode(bad, EMBER_GA_T_STDOUT, 7, EMBER_GA_MAX_PAYLOAD + 5);
        write_full(fd, bad, sizeof bad);
      }
      ember_ga_wr_init(&w, pl, sizeof pl);
      ember_ga_wr_u32(&w, EMBER_GA_R_VERSION, EMBER_GA_VERSION);
      ember_ga_wr_u64(&w, EMBER_GA_R_NONCE, nonce);
      ember_ga_wr_str(&w, EMBER_GA_R_AGENT, "fake-1.0");
      if (fk_send(fd, EMBER_GA_T_HELLO_ACK, 0, pl, w.len) < 0)
        break;
      acked = true;
      continue;
    }
    if (!acked)
      continue;
    if (fk_frame(f, fd, &h, buf) < 0 || fk_pump(f, fd) < 0)
      break;
  }
  free(buf);
  for (int i = 0; i < FK_CHANS; i++)
    if (f->ch[i] != NULL)
      fk_del(f, f->ch[i]);
}

static void *fk_thread(void *arg)
{
  fake *f = arg;
  for (;;) {
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    pthread_mutex_lock(&f->mu);
    bool stop = f->stop;
    if (fd >= 0 && !stop) {
      f->conn = fd;
      f->accepts++;
    }
    pthread_mutex_unlock(&f->mu);
    if (stop) {
      if (fd >= 0)
        close(fd);
      break;
    }
    if (fd < 0)
      continue;
    fk_serve(f, fd);
    pthread_mutex_lock(&f->mu);
    f->conn = -1;
    pthread_mutex_unlock(&f->mu);
    close(fd);
  }
  return NULL;
}

static char tmpdir[64];

/* Binds f->path, through its directory's descriptor when it is too long
 * for sun_path. */
static int fake_bind(fake *f)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(f->path) < sizeof sa.sun_path) {
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    return bind(f->lfd, (struct sockaddr *)&sa, sizeof sa);
  }
  char dir[300];
  snprintf(dir, sizeof dir, "%s", f->path);
  *strrchr(dir, '/') = '\0';
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, strrchr(f->path, '/') + 1);
  int r = bind(f->lfd, (struct sockaddr *)&sa, sizeof sa);
  close(dfd);
  return r;
}

static void fake_start(fake *f, const char *name, int mode, bool hybrid)
{
  memset(f, 0, sizeof *f);
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cond, NULL);
  snprintf(f->path, sizeof f->path, "%s/%s", tmpdir, name);
  f->mode = mode;
  f->hybrid = hybrid;
  f->conn = -1;
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(f->path);
  CU_ASSERT_FATAL(fake_bind(f) == 0);
  CU_ASSERT_FATAL(listen(f->lfd, 8) == 0);
  pthread_create(&f->th, NULL, fk_thread, f);
}

/* Restarts the listener at the same path (the counters go on). */
static void fake_relisten(fake *f)
{
  f->stop = false;
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_FATAL(fake_bind(f) == 0);
  CU_ASSERT_FATAL(listen(f->lfd, 8) == 0);
  pthread_create(&f->th, NULL, fk_thread, f);
}

/* Stops serving: the socket file goes away. */
static void fake_halt(fake *f)
{
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_broadcast(&f->cond);
  shutdown(f->lfd, SHUT_RDWR);
  if (f->conn >= 0)
    shutdown(f->conn, SHUT_RDWR);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->th, NULL);
  close(f->lfd);
  unlink(f->path);
}

static void fake_stop(fake *f)
{
  fake_halt(f);
  free(f->file);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
}

static int fake_count(fake *f, const int *field)
{
  pthread_mutex_lock(&f->mu);
  int v = *field;
  pthread_mutex_unlock(&f->mu);
  return v;
}

/* ---------------------------------------------------------------- the host side */

typedef struct states {
  pthread_mutex_t mu;
  int ready, not_ready;
  char version[64];
  char why[256];
} states;

static void on_state(void *opaque, bool ready, const char *version, const char *why)
{
  states *s = opaque;
  pthread_mutex_lock(&s->mu);
  if (ready) {
    s->ready++;
    snprintf(s->version, sizeof s->version, "%s", version);
  } else {
    s->not_ready++;
    snprintf(s->why, sizeof s->why, "%s", why ? why : "");
  }
  pthread_mutex_unlock(&s->mu);
}

static int st_count(states *s, bool ready)
{
  pthread_mutex_lock(&s->mu);
  int v = ready ? s->ready : s->not_ready;
  pthread_mutex_unlock(&s->mu);
  return v;
}

static gl_link *link_on(fake *f, states *s, gl_transport t, int64_t hello_ms)
{
  if (s != NULL) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
  }
  gl_opts o = {.transport = t,
               .path = f->path,
               .hello_timeout_ms = hello_ms,
               .retry_ms = 20,
               .on_state = s ? on_state : NULL,
               .opaque = s};
  cmn_error err = {0};
  gl_link *l = gl_link_start(&o, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  return l;
}

static int64_t in_ms(int64_t ms) { return gl_now_us() + ms * 1000; }

static gl_exec *run(gl_link *l, const char *const *argv, size_t argc, cmn_error *err)
{
  gl_exec_req req = {.argv = argv, .argc = argc};
  int pid = 0;
  gl_exec *x = gl_exec_start(l, &req, in_ms(5000), &pid, err);
  if (x != NULL)
    CU_ASSERT_EQUAL(pid, 42);
  return x;
}

static void test_hello_and_exec(void)
{
  fake f;
  fake_start(&f, "a.sock", FK_NORMAL, false);
  f.garbage_before_ack = true;
  states s;
  gl_link *l = link_on(&f, &s, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  char v[64];
  CU_ASSERT_TRUE(gl_link_ready(l, v, sizeof v));
  CU_ASSERT_STRING_EQUAL(v, "fake-1.0");
  CU_ASSERT_EQUAL(st_count(&s, true), 1);
  pthread_mutex_lock(&s.mu);
  CU_ASSERT_STRING_EQUAL(s.version, "fake-1.0");
  pthread_mutex_unlock(&s.mu);

  const char *argv[] = {"echo", "hello", " world"};
  gl_exec *x = run(l, argv, 3, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  gl_event ev;
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), 1);
  CU_ASSERT_EQUAL(ev.kind, GL_EV_STDOUT);
  CU_ASSERT_EQUAL(ev.len, 11);
  CU_ASSERT_EQUAL(memcmp(ev.data, "hello world", 11), 0);
  free(ev.data);
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), 1);
  CU_ASSERT_EQUAL(ev.kind, GL_EV_STDERR);
  CU_ASSERT_EQUAL(ev.len, 3);
  free(ev.data);
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), 1);
  CU_ASSERT_EQUAL(ev.kind, GL_EV_EXIT);
  CU_ASSERT_EQUAL(ev.exit_code, 3);
  CU_ASSERT_EQUAL(ev.signum, 0);
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), 0);
  /* after EXIT, input is dropped quietly */
  CU_ASSERT_EQUAL(gl_exec_stdin(x, "x", 1, in_ms(1000), &err), 0);
  gl_exec_free(x);
  CU_ASSERT_EQUAL(fake_count(&f, &f.accepts), 1);
  gl_link_stop(l, "test over");
  CU_ASSERT_EQUAL(st_count(&s, false), 1);
  CU_ASSERT_STRING_EQUAL(s.why, "test over");
  fake_stop(&f);
}

/* The driver names the port (drivers/hypervisor.h) the guest looks for
 * (guest/agent_proto.h): one name, two headers that cannot include each other. */
static void test_port_name_agrees(void)
{
  CU_ASSERT_STRING_EQUAL(VMM_AGENT_PORT_NAME, EMBER_GA_PORT_NAME);
}

static void test_validation(void)
{
  fake f;
  fake_start(&f, "v.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *empty[] = {""};
  gl_exec_req req = {.argv = empty, .argc = 1};
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "command");
  req.argc = 0;
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  /* too many arguments, and too long a command */
  const char **many = calloc(EMBER_GA_MAX_ARGS + 1, sizeof *many);
  for (size_t i = 0; i <= EMBER_GA_MAX_ARGS; i++)
    many[i] = "a";
  req.argv = many;
  req.argc = EMBER_GA_MAX_ARGS + 1;
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_STRING_EQUAL(err.field, "command");
  char *big = malloc(EMBER_GA_MAX_PAYLOAD / 2);
  memset(big, 'b', EMBER_GA_MAX_PAYLOAD / 2 - 1);
  big[EMBER_GA_MAX_PAYLOAD / 2 - 1] = '\0';
  const char *two[] = {big, big, big};
  req.argv = two;
  req.argc = 3;
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "command");
  const char *one[] = {"echo"};
  const char *env[] = {"A=1", big, big};
  big[0] = 'B';
  big[1] = '=';
  req.argv = one;
  req.argc = 1;
  req.env = env;
  req.envc = 3;
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_STRING_EQUAL(err.field, "env");
  const char *noeq[] = {"NOEQUALS"};
  req.env = noeq;
  req.envc = 1;
  CU_ASSERT_PTR_NULL(gl_exec_start(l, &req, in_ms(1000), NULL, &err));
  CU_ASSERT_STRING_EQUAL(err.field, "env");
  CU_ASSERT_EQUAL(fake_count(&f, &f.execs), 0); /* nothing was sent */
  CU_ASSERT_PTR_NULL(gl_put_start(l, "relative", 0644, 1, in_ms(1000), &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  free(big);
  free(many);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_stdin_window(void)
{
  fake f;
  fake_start(&f, "w.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *argv[] = {"sink"};
  gl_exec *x = run(l, argv, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  size_t n = EMBER_GA_WINDOW + 1000;
  uint8_t *buf = calloc(1, n);
  int64_t t0 = gl_now_us();
  CU_ASSERT_EQUAL(gl_exec_stdin(x, buf, n, in_ms(300), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_DEADLINE_EXCEEDED);
  CU_ASSERT_TRUE(gl_now_us() - t0 >= 250000);
  /* the window went out whole, nothing more */
  for (int i = 0; i < 100; i++) {
    pthread_mutex_lock(&f.mu);
    bool all = f.sink_bytes >= EMBER_GA_WINDOW;
    pthread_mutex_unlock(&f.mu);
    if (all)
      break;
    usleep(10000);
  }
  pthread_mutex_lock(&f.mu);
  CU_ASSERT_EQUAL(f.sink_bytes, EMBER_GA_WINDOW);
  pthread_mutex_unlock(&f.mu);
  /* the sink credits its window on a signal: the rest proceeds */
  CU_ASSERT_EQUAL(gl_exec_signal(x, 10, &err), 0);
  CU_ASSERT_EQUAL(gl_exec_stdin(x, buf, 1000, in_ms(5000), &err), 0);
  for (int i = 0; i < 100; i++) {
    pthread_mutex_lock(&f.mu);
    bool done = f.sink_bytes == EMBER_GA_WINDOW + 1000;
    pthread_mutex_unlock(&f.mu);
    if (done)
      break;
    usleep(10000);
  }
  pthread_mutex_lock(&f.mu);
  CU_ASSERT_EQUAL(f.sink_bytes, EMBER_GA_WINDOW + 1000);
  pthread_mutex_unlock(&f.mu);
  free(buf);
  gl_exec_free(x); /* unfinished: CLOSE */
  for (int i = 0; i < 100 && fake_count(&f, &f.closes) == 0; i++)
    usleep(10000);
  CU_ASSERT_EQUAL(fake_count(&f, &f.closes), 1);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_output_window(void)
{
  fake f;
  fake_start(&f, "o.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *argv[] = {"flood"};
  gl_exec *x = run(l, argv, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  size_t total = 0;
  bool ok = true, exited = false;
  gl_event ev;
  int r;
  while ((r = gl_exec_next(x, &ev, in_ms(5000), &err)) == 1) {
    if (ev.kind == GL_EV_EXIT) {
      exited = true;
      CU_ASSERT_EQUAL(ev.exit_code, 0);
      continue;
    }
    for (size_t i = 0; i < ev.len; i++)
      ok = ok && ev.data[i] == (uint8_t)((total + i) * 7);
    total += ev.len;
    free(ev.data);
  }
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT_TRUE(exited);
  CU_ASSERT_TRUE(ok);
  CU_ASSERT_EQUAL(total, FLOOD_BYTES);
  CU_ASSERT_TRUE(fake_count(&f, &f.windows_rx) >= 3);
  gl_exec_free(x);
  CU_ASSERT_EQUAL(fake_count(&f, &f.closes), 0); /* finished: no CLOSE */
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_errors(void)
{
  fake f;
  fake_start(&f, "e.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  struct {
    const char *prog;
    int code;
    const char *field;
  } cases[] = {{"nouser", CMN_INVALID_ARGUMENT, "user"},
               {"notfound", CMN_NOT_FOUND, ""},
               {"nospace", CMN_RESOURCE_EXHAUSTED, ""},
               {"perm", CMN_PERMISSION_DENIED, ""}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *argv[] = {cases[i].prog};
    cmn_err_clear(&err);
    CU_ASSERT_PTR_NULL(run(l, argv, 1, &err));
    CU_ASSERT_EQUAL(err.code, cases[i].code);
    CU_ASSERT_STRING_EQUAL(err.field, cases[i].field);
    CU_ASSERT_EQUAL(strncmp(err.msg, "guest agent: ", 13), 0);
  }
  CU_ASSERT_STRING_EQUAL(err.msg, "guest agent: permission denied");
  CU_ASSERT_TRUE(gl_link_ready(l, NULL, 0)); /* errors end channels, not the link */
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_put_get(void)
{
  fake f;
  fake_start(&f, "f.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  size_t n = 3 * 1024 * 1024 + 123;
  uint8_t *data = malloc(n);
  uint64_t sum = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    data[i] = (uint8_t)((i * 2654435761u) >> 13);
    sum = (sum ^ data[i]) * 1099511628211ull;
  }
  gl_put *p = gl_put_start(l, "/tmp/f", 0640, n, in_ms(5000), &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  for (size_t off = 0; off < n; off += 100000) {
    size_t m = n - off < 100000 ? n - off : 100000;
    CU_ASSERT_EQUAL_FATAL(gl_put_write(p, data + off, m, in_ms(5000), &err), 0);
  }
  CU_ASSERT_EQUAL(gl_put_write(p, data, 1, in_ms(5000), &err), -1); /* beyond SIZE */
  CU_ASSERT_EQUAL(gl_put_finish(p, in_ms(5000), &err), 0);
  gl_put_free(p);

  uint64_t size = 0;
  uint32_t mode = 0;
  gl_get *g = gl_get_start(l, "/tmp/f", in_ms(5000), &size, &mode, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  CU_ASSERT_EQUAL(size, n);
  CU_ASSERT_EQUAL(mode, 0640);
  uint64_t sum2 = 1469598103934665603ull;
  size_t got = 0;
  ssize_t r;
  uint8_t *piece;
  while ((r = gl_get_read(g, &piece, in_ms(5000), &err)) > 0) {
    for (ssize_t i = 0; i < r; i++)
      sum2 = (sum2 ^ piece[i]) * 1099511628211ull;
    got += (size_t)r;
    free(piece);
  }
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT_EQUAL(got, n);
  CU_ASSERT_EQUAL(sum2, sum);
  CU_ASSERT_EQUAL(gl_get_read(g, &piece, in_ms(5000), &err), 0);
  gl_get_free(g);
  free(data);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_copy_errors(void)
{
  fake f;
  fake_start(&f, "x.sock", FK_NORMAL, false);
  states s;
  gl_link *l = link_on(&f, &s, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  /* the guest's disk fills during a put */
  size_t n = 1 << 20;
  uint8_t *data = calloc(1, n);
  gl_put *p = gl_put_start(l, "/full", 0600, n, in_ms(5000), &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  int r = 0;
  for (size_t off = 0; off < n && r == 0; off += 65536)
    r = gl_put_write(p, data + off, 65536, in_ms(5000), &err);
  if (r == 0)
    r = gl_put_finish(p, in_ms(5000), &err);
  CU_ASSERT_EQUAL(r, -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_STRING_EQUAL(err.msg, "guest agent: write: No space left on device");
  gl_put_free(p);
  free(data);
  /* a get of a missing file */
  CU_ASSERT_PTR_NULL(gl_get_start(l, "/missing", in_ms(5000), NULL, NULL, &err));
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  /* frames of a channel we closed are no protocol error */
  const char *chatty[] = {"chatty"};
  gl_exec *x = run(l, chatty, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  gl_exec_free(x);
  const char *echo[] = {"echo", "still"};
  for (int i = 0; i < 3; i++) {
    gl_exec *y = run(l, echo, 2, &err);
    CU_ASSERT_PTR_NOT_NULL(y);
    gl_exec_free(y);
  }
  /* the late STDOUT and EXIT came before the echoes' STARTED: dispatched */
  CU_ASSERT_TRUE(fake_count(&f, &f.closes) >= 1);
  CU_ASSERT_TRUE(gl_link_ready(l, NULL, 0));
  CU_ASSERT_EQUAL(st_count(&s, false), 0);
  CU_ASSERT_EQUAL(fake_count(&f, &f.accepts), 1);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_silent_guest(void)
{
  fake f;
  fake_start(&f, "s.sock", FK_SILENT, false);
  states s;
  gl_link *l = link_on(&f, &s, GL_UNIX, 100);
  cmn_error err = {0};
  int64_t t0 = gl_now_us();
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(500), &err), -1);
  CU_ASSERT_TRUE(gl_now_us() - t0 < 2000000);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "has not answered"));
  CU_ASSERT_FALSE(gl_link_ready(l, NULL, 0));
  CU_ASSERT_TRUE(fake_count(&f, &f.hellos) >= 2); /* it tries again */
  CU_ASSERT_EQUAL(st_count(&s, true), 0);
  const char *argv[] = {"echo"};
  CU_ASSERT_PTR_NULL(run(l, argv, 1, &err));
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

/* A protocol violation after ready: channels fail, the link comes back. */
static void violation(const char *prog, const char *want)
{
  fake f;
  fake_start(&f, "g.sock", FK_NORMAL, false);
  states s;
  gl_link *l = link_on(&f, &s, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *sl[] = {"sleep"};
  gl_exec *bystander = run(l, sl, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(bystander);
  const char *argv[] = {prog};
  gl_exec *x = run(l, argv, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  /* the link drops before anything is consumed (no credit goes back) */
  for (int i = 0; i < 500 && st_count(&s, false) < 1; i++)
    usleep(10000);
  gl_event ev;
  int r;
  while ((r = gl_exec_next(x, &ev, in_ms(5000), &err)) == 1)
    free(ev.data);
  CU_ASSERT_EQUAL(r, -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
  CU_ASSERT_EQUAL(gl_exec_next(bystander, &ev, in_ms(5000), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  CU_ASSERT_EQUAL(gl_exec_stdin(bystander, "x", 1, in_ms(5000), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  gl_exec_free(x);
  gl_exec_free(bystander);
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  for (int i = 0; i < 200 && st_count(&s, true) < 2; i++)
    usleep(10000);
  CU_ASSERT_EQUAL(st_count(&s, true), 2);
  CU_ASSERT_EQUAL(st_count(&s, false), 1);
  pthread_mutex_lock(&s.mu);
  CU_ASSERT_PTR_NOT_NULL(strstr(s.why, want));
  pthread_mutex_unlock(&s.mu);
  CU_ASSERT_EQUAL(fake_count(&f, &f.accepts), 2);
  const char *echo[] = {"echo", "again"};
  gl_exec *y = run(l, echo, 2, &err);
  CU_ASSERT_PTR_NOT_NULL(y);
  gl_exec_free(y);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_garbage_after_ready(void) { violation("garbage", "malformed frame"); }
static void test_oversize(void) { violation("oversize", "malformed frame"); }
static void test_over_window(void) { violation("overwindow", "window"); }

static void test_reconnect(void)
{
  fake f;
  fake_start(&f, "r.sock", FK_NORMAL, false);
  states s;
  gl_link *l = link_on(&f, &s, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *sl[] = {"sleep"};
  gl_exec *x = run(l, sl, 1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  fake_halt(&f); /* the VMM goes away with its socket */
  gl_event ev;
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "connection to the guest agent was lost"));
  gl_exec_free(x);
  for (int i = 0; i < 200 && st_count(&s, false) < 1; i++)
    usleep(10000);
  CU_ASSERT_FALSE(gl_link_ready(l, NULL, 0));
  usleep(100000); /* retries on a missing socket, quietly */
  CU_ASSERT_EQUAL(st_count(&s, false), 1);
  fake_relisten(&f);
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  CU_ASSERT_EQUAL(st_count(&s, true), 2);
  const char *echo[] = {"echo", "back"};
  gl_exec *y = run(l, echo, 2, &err);
  CU_ASSERT_PTR_NOT_NULL(y);
  gl_exec_free(y);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_channel_limit(void)
{
  fake f;
  fake_start(&f, "c.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  gl_exec *xs[EMBER_GA_MAX_CHANNELS];
  const char *sl[] = {"sleep"};
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
    xs[i] = run(l, sl, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xs[i]);
  }
  CU_ASSERT_PTR_NULL(run(l, sl, 1, &err));
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_EQUAL(fake_count(&f, &f.execs), (int)EMBER_GA_MAX_CHANNELS); /* not sent */
  gl_exec_free(xs[0]);
  gl_exec *again = run(l, sl, 1, &err);
  CU_ASSERT_PTR_NOT_NULL(again);
  gl_exec_free(again);
  for (size_t i = 1; i < EMBER_GA_MAX_CHANNELS; i++)
    gl_exec_free(xs[i]);
  for (int i = 0; i < 200 && fake_count(&f, &f.closes) < (int)EMBER_GA_MAX_CHANNELS + 1; i++)
    usleep(10000);
  CU_ASSERT_EQUAL(fake_count(&f, &f.closes), (int)EMBER_GA_MAX_CHANNELS + 1);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

static void test_hybrid_vsock(void)
{
  fake f;
  fake_start(&f, "h.sock", FK_NORMAL, true);
  gl_link *l = link_on(&f, NULL, GL_HYBRID_VSOCK, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  pthread_mutex_lock(&f.mu);
  CU_ASSERT_STRING_EQUAL(f.connect_line, "CONNECT 10789");
  pthread_mutex_unlock(&f.mu);
  const char *echo[] = {"echo", "vsock"};
  gl_exec *x = run(l, echo, 2, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(x);
  gl_event ev;
  CU_ASSERT_EQUAL(gl_exec_next(x, &ev, in_ms(5000), &err), 1);
  CU_ASSERT_EQUAL(ev.len, 5);
  free(ev.data);
  gl_exec_free(x);
  gl_link_stop(l, NULL);
  fake_stop(&f);

  fake_start(&f, "h2.sock", FK_REFUSE, true);
  l = link_on(&f, NULL, GL_HYBRID_VSOCK, 0);
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(500), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "refused"));
  CU_ASSERT_TRUE(fake_count(&f, &f.connect_lines) >= 2);
  CU_ASSERT_EQUAL(fake_count(&f, &f.hellos), 0);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

/* A guest that stops reading its stream: writers time out, nothing hangs,
 * and the link recovers once the guest reads again. */
static void test_stuck_guest(void)
{
  fake f;
  fake_start(&f, "k.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  gl_exec *xs[8];
  const char *sink[] = {"sink"};
  for (int i = 0; i < 8; i++) {
    xs[i] = run(l, sink, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xs[i]);
  }
  const char *stuck[] = {"stuck"};
  gl_exec *sx = run(l, stuck, 1, &err); /* STARTED, then the guest reads no more */
  CU_ASSERT_PTR_NOT_NULL_FATAL(sx);
  /* 8 windows (2 MiB) do not fit the socket's buffers */
  uint8_t *buf = calloc(1, EMBER_GA_WINDOW);
  int timeouts = 0;
  int64_t t0 = gl_now_us();
  for (int i = 0; i < 8; i++)
    if (gl_exec_stdin(xs[i], buf, EMBER_GA_WINDOW, in_ms(200), &err) < 0) {
      CU_ASSERT_TRUE(err.code == CMN_DEADLINE_EXCEEDED || err.code == CMN_UNAVAILABLE);
      timeouts++;
    }
  CU_ASSERT_TRUE(timeouts > 0);
  CU_ASSERT_TRUE(gl_now_us() - t0 < 8 * 200000 + 500000);
  gl_event ev;
  CU_ASSERT_EQUAL(gl_exec_next(xs[0], &ev, in_ms(100), &err), -1);
  CU_ASSERT_TRUE(err.code == CMN_DEADLINE_EXCEEDED || err.code == CMN_UNAVAILABLE);
  pthread_mutex_lock(&f.mu);
  f.stuck = false;
  pthread_cond_broadcast(&f.cond);
  pthread_mutex_unlock(&f.mu);
  for (int i = 0; i < 8; i++)
    gl_exec_free(xs[i]);
  gl_exec_free(sx);
  free(buf);
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *echo[] = {"echo", "alive"};
  gl_exec *y = NULL;
  for (int i = 0; i < 50 && y == NULL; i++) { /* the link may be reconnecting */
    y = run(l, echo, 2, &err);
    if (y == NULL)
      usleep(20000);
  }
  CU_ASSERT_PTR_NOT_NULL(y);
  gl_exec_free(y);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

typedef struct waiter {
  gl_exec *x;
  int r, code;
  int64_t done_us;
} waiter;

static void *wait_thread(void *arg)
{
  waiter *w = arg;
  gl_event ev;
  cmn_error err = {0};
  w->r = gl_exec_next(w->x, &ev, 0, &err);
  w->code = err.code;
  w->done_us = gl_now_us();
  return NULL;
}

static void test_stop_while_waiting(void)
{
  fake f;
  fake_start(&f, "t.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  const char *sl[] = {"sleep"};
  waiter w = {.x = run(l, sl, 1, &err)};
  CU_ASSERT_PTR_NOT_NULL_FATAL(w.x);
  pthread_t th;
  pthread_create(&th, NULL, wait_thread, &w);
  usleep(100000);
  int64_t t0 = gl_now_us();
  gl_link_stop(l, "the VMM stopped"); /* the exec still holds a reference */
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(w.r, -1);
  CU_ASSERT_EQUAL(w.code, CMN_UNAVAILABLE);
  CU_ASSERT_TRUE(w.done_us - t0 < 1000000);
  gl_event ev;
  CU_ASSERT_EQUAL(gl_exec_next(w.x, &ev, in_ms(100), &err), -1);
  CU_ASSERT_STRING_EQUAL(err.msg, "the VMM stopped");
  gl_exec_free(w.x); /* the last reference */
  fake_stop(&f);
}

typedef struct worker {
  gl_link *l;
  int idx;
  bool ok;
} worker;

static void *cat_thread(void *arg)
{
  worker *w = arg;
  cmn_error err = {0};
  const char *argv[] = {"cat"};
  gl_exec_req req = {.argv = argv, .argc = 1};
  gl_exec *x = gl_exec_start(w->l, &req, in_ms(10000), NULL, &err);
  if (x == NULL)
    return NULL;
  size_t n = 300 * 1024;
  uint8_t *in = malloc(n);
  for (size_t i = 0; i < n; i++)
    in[i] = (uint8_t)(i + (size_t)w->idx * 31);
  bool ok = gl_exec_stdin(x, in, n, in_ms(10000), &err) == 0 && gl_exec_stdin_eof(x, &err) == 0;
  size_t got = 0;
  gl_event ev;
  int r;
  bool exited = false;
  while (ok && (r = gl_exec_next(x, &ev, in_ms(10000), &err)) == 1) {
    if (ev.kind == GL_EV_EXIT) {
      exited = ev.exit_code == 0;
      continue;
    }
    if (got + ev.len > n || memcmp(in + got, ev.data, ev.len) != 0)
      ok = false;
    got += ev.len;
    free(ev.data);
  }
  w->ok = ok && exited && got == n;
  free(in);
  gl_exec_free(x);
  return NULL;
}

static void test_concurrent(void)
{
  fake f;
  fake_start(&f, "m.sock", FK_NORMAL, false);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  pthread_t th[10];
  worker w[10];
  for (int i = 0; i < 10; i++) {
    w[i] = (worker){.l = gl_link_ref(l), .idx = i};
    pthread_create(&th[i], NULL, cat_thread, &w[i]);
  }
  for (int i = 0; i < 10; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_TRUE(w[i].ok);
    gl_link_unref(w[i].l);
  }
  CU_ASSERT_EQUAL(fake_count(&f, &f.execs), 10);
  gl_link_stop(l, NULL);
  fake_stop(&f);
}

/* A socket path longer than sun_path (deep data dirs) still connects. */
static void test_long_path(void)
{
  char name[220];
  memset(name, 'd', 200);
  name[200] = '\0';
  char dir[300];
  snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
  CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
  snprintf(name + 200, sizeof name - 200, "/l.sock");
  fake f;
  fake_start(&f, name, FK_NORMAL, false);
  CU_ASSERT_TRUE(strlen(f.path) > 108);
  gl_link *l = link_on(&f, NULL, GL_UNIX, 0);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(5000), &err), 0);
  gl_link_stop(l, NULL);
  fake_stop(&f);
  rmdir(dir);
}

static void test_bad_options(void)
{
  cmn_error err = {0};
  gl_opts o = {.transport = GL_UNIX, .path = ""};
  CU_ASSERT_PTR_NULL(gl_link_start(&o, &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  /* a socket that never appears: not ready, quietly, and stoppable */
  o.path = "/nonexistent/ember/agent.sock";
  gl_link *l = gl_link_start(&o, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  CU_ASSERT_EQUAL(gl_link_wait_ready(l, in_ms(200), &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_UNAVAILABLE);
  gl_link_stop(l, NULL);
  gl_link_stop(NULL, NULL);
}

int main(void)
{
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ember-gl-XXXXXX");
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("guestlink", NULL, NULL);
  CU_add_test(s, "hello_and_exec", test_hello_and_exec);
  CU_add_test(s, "port_name_agrees", test_port_name_agrees);
  CU_add_test(s, "validation", test_validation);
  CU_add_test(s, "stdin_window", test_stdin_window);
  CU_add_test(s, "output_window", test_output_window);
  CU_add_test(s, "errors", test_errors);
  CU_add_test(s, "put_get", test_put_get);
  CU_add_test(s, "copy_errors", test_copy_errors);
  CU_add_test(s, "silent_guest", test_silent_guest);
  CU_add_test(s, "garbage_after_ready", test_garbage_after_ready);
  CU_add_test(s, "oversize", test_oversize);
  CU_add_test(s, "over_window", test_over_window);
  CU_add_test(s, "reconnect", test_reconnect);
  CU_add_test(s, "channel_limit", test_channel_limit);
  CU_add_test(s, "hybrid_vsock", test_hybrid_vsock);
  CU_add_test(s, "stuck_guest", test_stuck_guest);
  CU_add_test(s, "stop_while_waiting", test_stop_while_waiting);
  CU_add_test(s, "concurrent", test_concurrent);
  CU_add_test(s, "long_path", test_long_path);
  CU_add_test(s, "bad_options", test_bad_options);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  rmdir(tmpdir);
  return failed ? 1 : 0;
}
