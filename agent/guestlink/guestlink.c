/* guestlink.c: emberd's side of the guest agent protocol (guestlink.h,
 * guest/agent_proto.h, docs/guest-link.md).
 *
 * One thread per link connects, says HELLO, reads frames and dispatches them
 * to channels; callers write frames themselves under the writer mutex. Locks:
 * mu guards the state, the channel table, every channel's fields and the
 * writer token (`writing`: one writer of frames at a time, taken with a
 * deadline). Only the link thread closes the socket, holding the token after a
 * shutdown() that wakes any writer polling it. */
#include "agent/guestlink/guestlink.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "guest/agent_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { CH_EXEC = 1, CH_PUT = 2, CH_GET = 3 };
enum { PH_OPENING = 0, PH_OPEN = 1, PH_ENDED = 2 };

#define GL_WHY_MAX 256
#define GL_HELLO_SKIP_MAX (64u << 20) /* bytes ignored before the HELLO_ACK */
#define GL_LINE_MAX 64                /* the hybrid vsock "OK <n>" line */
#define GL_CLOSE_MS 1000              /* best-effort CLOSE and PONG */

typedef struct gl_ev {
  struct gl_ev *next;
  uint8_t type; /* EMBER_GA_T_STDOUT, STDERR, EXIT, DATA, END, DONE */
  uint8_t *data;
  size_t len;
  int exit_code, signum;
  uint64_t size;
} gl_ev;

typedef struct gl_chan {
  gl_link *l; /* a reference */
  uint32_t id;
  uint64_t gen; /* the connection it was opened on */
  int kind, phase;
  bool in_table, failed, final_returned;
  bool answered;  /* STARTED, READY or INFO came */
  cmn_error fail; /* link loss or the guest's ERROR, after the queue drains */
  uint32_t pid, mode;
  uint64_t size, sent_bytes;
  gl_ev *head, *tail;
  int64_t send_credit;  /* bytes we may still send */
  uint32_t outstanding; /* received bytes not credited back */
  uint32_t consumed;    /* of those, taken by the consumer */
  pthread_cond_t cond;  /* with l->mu */
} gl_chan;

struct gl_exec {
  gl_chan c;
};
struct gl_put {
  gl_chan c;
};
struct gl_get {
  gl_chan c;
};

struct gl_link {
  bool writing;         /* the writer token (mu) */
  pthread_cond_t wcond; /* the token came back */
  pthread_mutex_t mu;
  pthread_cond_t cond; /* readiness changes */
  int refs;
  bool stopping, thread_done, joined;
  int fd; /* the current connection; -1 */
  uint64_t gen;
  bool ready;
  bool announced; /* on_state heard "ready" last */
  char version[64];
  char why[GL_WHY_MAX];
  char drop_why[GL_WHY_MAX]; /* set by a writer that dropped the connection */
  gl_chan *chans[EMBER_GA_MAX_CHANNELS];
  uint32_t next_id;
  int stopfd; /* eventfd */
  pthread_t thread;
  /* options */
  gl_transport transport;
  char *path;
  uint32_t vsock_port;
  int64_t hello_ms, retry_ms;
  gl_state_fn on_state;
  void *opaque;
};

int64_t gl_now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timespec ts_of(int64_t us)
{
  struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
  return ts;
}

/* Waits on cond (monotonic) until the deadline; ETIMEDOUT when it passed. */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_us)
{
  if (deadline_us == 0)
    return pthread_cond_wait(c, m);
  struct timespec ts = ts_of(deadline_us);
  return pthread_cond_timedwait(c, m, &ts);
}

static void cond_init_mono(pthread_cond_t *c)
{
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}

/* poll timeout in ms for a deadline (0: none -> -1). */
static int poll_ms(int64_t deadline_us)
{
  if (deadline_us == 0)
    return -1;
  int64_t left = deadline_us - gl_now_us();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999) / 1000;
  return ms > 60000 ? 60000 : (int)ms;
}

/* ---------------------------------------------------------------- writing */

/* Writes all of iov to fd (non-blocking) before the deadline. 0; -1 with
 * *partial telling whether some bytes went out. */
static int write_all(int fd, const uint8_t *h, size_t hn, const uint8_t *p, size_t pn,
                     int64_t deadline_us, bool *partial, cmn_error *err)
{
  size_t done = 0, total = hn + pn;
  *partial = false;
  while (done < total) {
    const uint8_t *src = done < hn ? h + done : p + (done - hn);
    size_t n = done < hn ? hn - done : total - done;
    ssize_t w = send(fd, src, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      done += (size_t)w;
      *partial = done < total;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      *partial = done > 0;
      return cmn_err_set(err, CMN_UNAVAILABLE, "the connection to the guest agent was lost");
    }
    int ms = poll_ms(deadline_us);
    if (ms == 0)
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                         "the guest agent is not reading (deadline exceeded)");
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r = poll(&pfd, 1, ms);
    if (r < 0 && errno != EINTR) {
      *partial = done > 0;
      return cmn_err_errno(err, CMN_INTERNAL, errno, "poll");
    }
    if (r > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) && !(pfd.revents & POLLOUT)) {
      *partial = done > 0;
      return cmn_err_set(err, CMN_UNAVAILABLE, "the connection to the guest agent was lost");
    }
  }
  return 0;
}

static int lock_writer(gl_link *l, int64_t deadline_us, cmn_error *err)
{
  pthread_mutex_lock(&l->mu);
  while (l->writing) {
    if (cond_wait(&l->wcond, &l->mu, deadline_us) == ETIMEDOUT) {
      pthread_mutex_unlock(&l->mu);
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                         "the guest agent link is busy writing (deadline exceeded)");
    }
  }
  l->writing = true;
  pthread_mutex_unlock(&l->mu);
  return 0;
}

static void unlock_writer(gl_link *l)
{
  pthread_mutex_lock(&l->mu);
  l->writing = false;
  pthread_cond_broadcast(&l->wcond);
  pthread_mutex_unlock(&l->mu);
}

/* Sends one whole frame on connection `gen`: UNAVAILABLE when that
 * connection is gone, DEADLINE_EXCEEDED when nothing could be written in
 * time; a frame cut in the middle drops the connection. */
static int link_send(gl_link *l, uint64_t gen, uint8_t type, uint32_t ch, const void *payload,
                     size_t len, int64_t deadline_us, cmn_error *err)
{
  if (lock_writer(l, deadline_us, err) < 0)
    return -1;
  pthread_mutex_lock(&l->mu);
  int fd = l->fd;
  bool ok = fd >= 0 && l->ready && l->gen == gen && !l->stopping;
  char why[GL_WHY_MAX];
  memcpy(why, l->why, sizeof why);
  pthread_mutex_unlock(&l->mu);
  if (!ok) {
    unlock_writer(l);
    return cmn_err_set(err, CMN_UNAVAILABLE, "%s",
                       why[0] ? why : "the guest agent is not connected");
  }
  uint8_t h[EMBER_GA_HEADER];
  ember_ga_hdr_encode(h, type, ch, (uint32_t)len);
  bool partial = false;
  int r = write_all(fd, h, sizeof h, payload, len, deadline_us, &partial, err);
  if (r < 0 && (partial || err->code == CMN_UNAVAILABLE)) {
    pthread_mutex_lock(&l->mu);
    if (l->drop_why[0] == '\0')
      cmn_snprintf(l->drop_why, sizeof l->drop_why, "%s",
                   partial ? "the guest agent stopped reading (a frame was cut)"
                           : "the connection to the guest agent was lost");
    pthread_mutex_unlock(&l->mu);
    shutdown(fd, SHUT_RDWR); /* the link thread reconnects */
    if (partial && err->code == CMN_DEADLINE_EXCEEDED)
      cmn_err_prefix(err, "connection dropped");
  }
  unlock_writer(l);
  return r;
}

/* ---------------------------------------------------------------- channels */

static void ev_free(gl_ev *e)
{
  if (e != NULL)
    free(e->data);
  free(e);
}

static void chan_queue(gl_chan *c, gl_ev *e)
{
  if (c->tail != NULL)
    c->tail->next = e;
  else
    c->head = e;
  c->tail = e;
}

static void table_remove(gl_link *l, gl_chan *c)
{
  if (!c->in_table)
    return;
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    if (l->chans[i] == c)
      l->chans[i] = NULL;
  c->in_table = false;
}

static gl_chan *table_find(gl_link *l, uint32_t id)
{
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    if (l->chans[i] != NULL && l->chans[i]->id == id)
      return l->chans[i];
  return NULL;
}

/* Fails every open channel (mu held). */
static void fail_all(gl_link *l, int code, const char *why)
{
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++) {
    gl_chan *c = l->chans[i];
    if (c == NULL)
      continue;
    if (!c->failed) {
      c->failed = true;
      cmn_err_set(&c->fail, code, "%s", why);
    }
    table_remove(l, c);
    pthread_cond_broadcast(&c->cond);
  }
}

/* Registers a new channel on the current connection. */
static gl_chan *chan_open(gl_link *l, int kind, cmn_error *err)
{
  pthread_mutex_lock(&l->mu);
  if (l->stopping || !l->ready) {
    cmn_err_set(err, CMN_UNAVAILABLE, "%s",
                l->why[0] ? l->why : "the guest agent has not answered yet");
    pthread_mutex_unlock(&l->mu);
    return NULL;
  }
  size_t slot = EMBER_GA_MAX_CHANNELS;
  for (size_t i = 0; i < EMBER_GA_MAX_CHANNELS; i++)
    if (l->chans[i] == NULL) {
      slot = i;
      break;
    }
  if (slot == EMBER_GA_MAX_CHANNELS) {
    pthread_mutex_unlock(&l->mu);
    cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                "the guest agent link has %u channels open already (execs and copies)",
                EMBER_GA_MAX_CHANNELS);
    return NULL;
  }
  /* numbers go up (wrapping past 0): a late frame of a closed channel never
   * lands on a new one */
  uint32_t id;
  do {
    id = ++l->next_id;
  } while (id == 0 || table_find(l, id) != NULL);
  gl_chan *c = cmn_calloc(1, sizeof *c); /* also a gl_exec, gl_put or gl_get */
  c->l = l;
  l->refs++;
  c->id = id;
  c->gen = l->gen;
  c->kind = kind;
  c->phase = PH_OPENING;
  c->in_table = true;
  c->send_credit = EMBER_GA_WINDOW;
  cond_init_mono(&c->cond);
  l->chans[slot] = c;
  pthread_mutex_unlock(&l->mu);
  return c;
}

static void chan_free(gl_chan *c)
{
  if (c == NULL)
    return;
  gl_link *l = c->l;
  pthread_mutex_lock(&l->mu);
  bool need_close = c->in_table && !c->failed;
  table_remove(l, c);
  uint64_t gen = c->gen;
  pthread_mutex_unlock(&l->mu);
  if (need_close) {
    cmn_error e = {0};
    (void)link_send(l, gen, EMBER_GA_T_CLOSE, c->id, NULL, 0, gl_now_us() + GL_CLOSE_MS * 1000, &e);
  }
  while (c->head != NULL) {
    gl_ev *e = c->head;
    c->head = e->next;
    ev_free(e);
  }
  pthread_cond_destroy(&c->cond);
  free(c);
  gl_link_unref(l);
}

/* Waits for the guest's answer to EXEC/PUT/GET. */
static int chan_wait_open(gl_chan *c, int64_t deadline_us, cmn_error *err)
{
  gl_link *l = c->l;
  pthread_mutex_lock(&l->mu);
  int r = 0;
  while (!c->answered && !c->failed) {
    if (cond_wait(&c->cond, &l->mu, deadline_us) == ETIMEDOUT) {
      r = cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "the guest agent did not answer in time");
      break;
    }
  }
  if (r == 0 && !c->answered) {
    *err = c->fail;
    r = -1;
  }
  pthread_mutex_unlock(&l->mu);
  return r;
}

/* Sends a control frame on a channel; a channel the guest ended takes it
 * silently (the process exited, the copy finished). */
static int chan_send_ctl(gl_chan *c, uint8_t type, const void *p, size_t n, int64_t deadline_us,
                         cmn_error *err)
{
  gl_link *l = c->l;
  pthread_mutex_lock(&l->mu);
  if (c->failed) {
    *err = c->fail;
    pthread_mutex_unlock(&l->mu);
    return -1;
  }
  bool ended = c->phase == PH_ENDED || !c->in_table;
  pthread_mutex_unlock(&l->mu);
  if (ended)
    return 0;
  return link_send(l, c->gen, type, c->id, p, n, deadline_us, err);
}

/* Sends data frames, each waiting for window credit. */
static int chan_send_data(gl_chan *c, uint8_t type, const void *buf, size_t len,
                          int64_t deadline_us, cmn_error *err)
{
  gl_link *l = c->l;
  const uint8_t *p = buf;
  while (len > 0) {
    pthread_mutex_lock(&l->mu);
    while (!c->failed && c->phase != PH_ENDED && c->in_table && c->send_credit <= 0) {
      if (cond_wait(&c->cond, &l->mu, deadline_us) == ETIMEDOUT) {
        pthread_mutex_unlock(&l->mu);
        return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                           "the guest agent is not taking input (window full, deadline exceeded)");
      }
    }
    if (c->failed) {
      *err = c->fail;
      pthread_mutex_unlock(&l->mu);
      return -1;
    }
    if (c->phase == PH_ENDED || !c->in_table) {
      pthread_mutex_unlock(&l->mu);
      return 0; /* the guest ended the channel: nothing reads this any more */
    }
    size_t n = len;
    if (n > EMBER_GA_MAX_DATA)
      n = EMBER_GA_MAX_DATA;
    if ((int64_t)n > c->send_credit)
      n = (size_t)c->send_credit;
    c->send_credit -= (int64_t)n;
    pthread_mutex_unlock(&l->mu);
    if (link_send(l, c->gen, type, c->id, p, n, deadline_us, err) < 0) {
      pthread_mutex_lock(&l->mu);
      c->send_credit += (int64_t)n;
      pthread_mutex_unlock(&l->mu);
      return -1;
    }
    p += n;
    len -= n;
  }
  return 0;
}

/* Takes the next event: 1 with *out (the caller frees it), -1 with err once
 * the queue is empty and the channel failed, 0 after the final event. */
static int chan_next(gl_chan *c, gl_ev **out, int64_t deadline_us, cmn_error *err)
{
  gl_link *l = c->l;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    if (c->head != NULL)
      break;
    if (c->final_returned) {
      pthread_mutex_unlock(&l->mu);
      return 0;
    }
    if (c->failed) {
      *err = c->fail;
      pthread_mutex_unlock(&l->mu);
      return -1;
    }
    if (cond_wait(&c->cond, &l->mu, deadline_us) == ETIMEDOUT) {
      pthread_mutex_unlock(&l->mu);
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "no output from the guest agent in time");
    }
  }
  gl_ev *e = c->head;
  c->head = e->next;
  if (c->head == NULL)
    c->tail = NULL;
  e->next = NULL;
  uint32_t credit = 0;
  if (e->type == EMBER_GA_T_STDOUT || e->type == EMBER_GA_T_STDERR || e->type == EMBER_GA_T_DATA) {
    c->consumed += (uint32_t)e->len;
    if (c->consumed >= EMBER_GA_WINDOW / 2 && c->in_table && !c->failed) {
      credit = c->consumed;
      c->consumed = 0;
      c->outstanding -= credit;
    }
  } else {
    c->final_returned = true;
  }
  pthread_mutex_unlock(&l->mu);
  if (credit > 0) {
    uint8_t pl[16];
    ember_ga_wr w;
    ember_ga_wr_init(&w, pl, sizeof pl);
    ember_ga_wr_u32(&w, EMBER_GA_R_BYTES, credit);
    cmn_error e2 = {0};
    if (link_send(l, c->gen, EMBER_GA_T_WINDOW, c->id, pl, w.len, deadline_us, &e2) < 0) {
      pthread_mutex_lock(&l->mu); /* keep the credit for the next time */
      c->consumed += credit;
      c->outstanding += credit;
      pthread_mutex_unlock(&l->mu);
    }
  }
  *out = e;
  return 1;
}

/* ---------------------------------------------------------------- the guest's frames */

static void map_guest_error(cmn_error *e, uint32_t code, const char *msg)
{
  switch (code) {
  case EMBER_GA_E_INVALID:
    cmn_err_set(e, CMN_INVALID_ARGUMENT, "guest agent: %s", msg);
    break;
  case EMBER_GA_E_NOT_FOUND:
    cmn_err_set(e, CMN_NOT_FOUND, "guest agent: %s", msg);
    break;
  case EMBER_GA_E_PERMISSION:
    cmn_err_set(e, CMN_PERMISSION_DENIED, "guest agent: %s", msg);
    break;
  case EMBER_GA_E_NO_USER:
    cmn_err_set(e, CMN_INVALID_ARGUMENT, "guest agent: %s", msg);
    cmn_err_field(e, "user");
    break;
  case EMBER_GA_E_BUSY:
    cmn_err_set(e, CMN_RESOURCE_EXHAUSTED, "guest agent: %s", msg);
    break;
  case EMBER_GA_E_IO:
    cmn_err_set(e,
                strcasestr(msg, "no space") != NULL || strcasestr(msg, "quota") != NULL
                    ? CMN_RESOURCE_EXHAUSTED
                    : CMN_INTERNAL,
                "guest agent: %s", msg);
    break;
  default:
    cmn_err_set(e, CMN_INTERNAL, "guest agent: %s", msg);
    break;
  }
}

/* Record values of a control frame; -1 when malformed. */
typedef struct gl_rec {
  uint32_t u32[32];
  bool has[32];
  uint64_t size, nonce;
  char msg[512];
  char agent[64];
} gl_rec;

static int parse_rec(const uint8_t *p, size_t n, gl_rec *r)
{
  memset(r, 0, sizeof *r);
  ember_ga_rd rd;
  ember_ga_rd_init(&rd, p, n);
  uint16_t tag;
  const uint8_t *v;
  size_t vn;
  int k;
  while ((k = ember_ga_rd_next(&rd, &tag, &v, &vn)) == 1) {
    switch (tag) {
    case EMBER_GA_R_VERSION:
    case EMBER_GA_R_PID:
    case EMBER_GA_R_EXIT_CODE:
    case EMBER_GA_R_SIGNUM:
    case EMBER_GA_R_MODE:
    case EMBER_GA_R_BYTES:
    case EMBER_GA_R_CODE:
      if (ember_ga_val_u32(v, vn, &r->u32[tag]) < 0)
        return -1;
      r->has[tag] = true;
      break;
    case EMBER_GA_R_SIZE:
      if (ember_ga_val_u64(v, vn, &r->size) < 0)
        return -1;
      r->has[tag] = true;
      break;
    case EMBER_GA_R_NONCE:
      if (ember_ga_val_u64(v, vn, &r->nonce) < 0)
        return -1;
      r->has[tag] = true;
      break;
    case EMBER_GA_R_MSG:
    case EMBER_GA_R_AGENT: {
      char *dst = tag == EMBER_GA_R_MSG ? r->msg : r->agent;
      size_t cap = tag == EMBER_GA_R_MSG ? sizeof r->msg : sizeof r->agent;
      size_t m = vn < cap - 1 ? vn : cap - 1;
      for (size_t i = 0; i < m; i++) /* for people and logs: printable only */
        dst[i] = v[i] >= 0x20 && v[i] < 0x7f ? (char)v[i] : '?';
      dst[m] = '\0';
      r->has[tag] = true;
      break;
    }
    default:
      break; /* unknown tags are skipped */
    }
  }
  return k;
}

/* Dispatches one frame of a ready connection (mu held). 0; -1 with *why for
 * a protocol error. */
static int dispatch(gl_link *l, const ember_ga_hdr *h, const uint8_t *p, const char **why,
                    bool *pong)
{
  static const char malformed[] = "the guest agent sent a malformed frame";
  gl_rec r;
  bool data =
      h->type == EMBER_GA_T_STDOUT || h->type == EMBER_GA_T_STDERR || h->type == EMBER_GA_T_DATA;
  if (!data && parse_rec(p, h->length, &r) < 0)
    return *why = malformed, -1;
  if (h->channel == 0) {
    if (h->type == EMBER_GA_T_PING)
      *pong = true;
    else if (h->type != EMBER_GA_T_PONG && h->type != EMBER_GA_T_HELLO_ACK)
      return *why = "the guest agent sent an unexpected frame on the link channel", -1;
    return 0;
  }
  gl_chan *c = table_find(l, h->channel);
  if (c == NULL)
    return 0; /* a late frame of a closed channel */
  static const char unexpected[] = "the guest agent sent an unexpected frame";
  if (h->type == EMBER_GA_T_WINDOW) {
    if (!r.has[EMBER_GA_R_BYTES] || c->send_credit + r.u32[EMBER_GA_R_BYTES] > EMBER_GA_WINDOW)
      return *why = "the guest agent sent a malformed frame (window credit)", -1;
    c->send_credit += r.u32[EMBER_GA_R_BYTES];
    pthread_cond_broadcast(&c->cond);
    return 0;
  }
  if (h->type == EMBER_GA_T_ERROR) {
    c->failed = true;
    map_guest_error(&c->fail, r.has[EMBER_GA_R_CODE] ? r.u32[EMBER_GA_R_CODE] : 0,
                    r.has[EMBER_GA_R_MSG] ? r.msg : "unspecified error");
    c->phase = PH_ENDED;
    table_remove(l, c);
    pthread_cond_broadcast(&c->cond);
    return 0;
  }
  uint8_t answer = c->kind == CH_EXEC  ? EMBER_GA_T_STARTED
                   : c->kind == CH_PUT ? EMBER_GA_T_READY
                                       : EMBER_GA_T_INFO;
  if (c->phase == PH_OPENING) {
    if (h->type != answer)
      return *why = unexpected, -1;
    if (c->kind == CH_EXEC)
      c->pid = r.u32[EMBER_GA_R_PID];
    if (c->kind == CH_GET) {
      c->size = r.size;
      c->mode = r.u32[EMBER_GA_R_MODE];
    }
    c->phase = PH_OPEN;
    c->answered = true;
    pthread_cond_broadcast(&c->cond);
    return 0;
  }
  bool ok_data = data && ((c->kind == CH_EXEC && h->type != EMBER_GA_T_DATA) ||
                          (c->kind == CH_GET && h->type == EMBER_GA_T_DATA));
  uint8_t final = c->kind == CH_EXEC  ? EMBER_GA_T_EXIT
                  : c->kind == CH_PUT ? EMBER_GA_T_DONE
                                      : EMBER_GA_T_END;
  if (ok_data) {
    if (h->length > EMBER_GA_MAX_DATA || c->outstanding + h->length > EMBER_GA_WINDOW)
      return *why = "the guest agent sent a malformed frame (beyond the window)", -1;
    if (h->length == 0)
      return 0;
    c->outstanding += h->length;
    gl_ev *e = cmn_calloc(1, sizeof *e);
    e->type = h->type;
    e->data = cmn_malloc(h->length);
    memcpy(e->data, p, h->length);
    e->len = h->length;
    chan_queue(c, e);
  } else if (h->type == final) {
    gl_ev *e = cmn_calloc(1, sizeof *e);
    e->type = final;
    if (r.has[EMBER_GA_R_SIGNUM] && r.u32[EMBER_GA_R_SIGNUM] != 0) {
      e->exit_code = -1;
      e->signum = (int)(r.u32[EMBER_GA_R_SIGNUM] & 0xff);
    } else {
      e->exit_code = (int)(r.u32[EMBER_GA_R_EXIT_CODE] & 0xff);
    }
    e->size = r.size;
    chan_queue(c, e);
    c->phase = PH_ENDED;
    table_remove(l, c);
  } else {
    return *why = unexpected, -1;
  }
  pthread_cond_broadcast(&c->cond);
  return 0;
}

/* ---------------------------------------------------------------- the link thread */

typedef struct rbuf {
  int fd, stopfd;
  uint8_t *buf;
  size_t cap, pos, end;
} rbuf;

/* Makes n bytes available at buf+pos. 0; -1 with *why (NULL: stopping). */
static int rb_fill(rbuf *b, size_t n, int64_t deadline_us, const char **why)
{
  while (b->end - b->pos < n) {
    if (b->cap - b->pos < n) {
      memmove(b->buf, b->buf + b->pos, b->end - b->pos);
      b->end -= b->pos;
      b->pos = 0;
    }
    struct pollfd pf[2] = {{.fd = b->fd, .events = POLLIN}, {.fd = b->stopfd, .events = POLLIN}};
    int ms = poll_ms(deadline_us);
    if (deadline_us != 0 && ms == 0)
      return *why = "the guest agent has not answered", -1;
    int r = poll(pf, 2, ms);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return *why = "poll failed", -1;
    if (pf[1].revents != 0)
      return *why = NULL, -1;
    if (r == 0)
      continue;
    ssize_t got = recv(b->fd, b->buf + b->end, b->cap - b->end, MSG_DONTWAIT);
    if (got == 0)
      return *why = "the connection to the guest agent was lost", -1;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
        continue;
      return *why = "the connection to the guest agent was lost", -1;
    }
    b->end += (size_t)got;
  }
  return 0;
}

/* Sleeps retry_ms unless stopped; false when stopping. */
static bool nap(gl_link *l, int64_t ms)
{
  struct pollfd pf = {.fd = l->stopfd, .events = POLLIN};
  int r = poll(&pf, 1, (int)(ms > 60000 ? 60000 : ms));
  return !(r > 0);
}

static int link_connect(gl_link *l, const char **why)
{
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return *why = "cannot make a socket", -1;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  cleanup_close int dirfd = -1;
  if (strlen(l->path) < sizeof sa.sun_path) {
    memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
  } else {
    /* a long path: reach it through its directory's descriptor */
    const char *slash = strrchr(l->path, '/');
    if (slash == NULL)
      return *why = "the guest agent socket path is too long", -1;
    cleanup_free char *dir = cmn_strndup(l->path, (size_t)(slash - l->path));
    dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 ||
        cmn_snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dirfd, slash + 1) < 0)
      return *why = "the guest agent socket is not there", -1;
  }
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    *why = errno == ENOENT || errno == ECONNREFUSED ? "the guest agent socket is not there yet"
                                                    : "cannot connect to the guest agent socket";
    return -1;
  }
  return steal_fd(fd);
}

/* Hybrid vsock: "CONNECT <port>\n" -> "OK <n>\n", read a byte at a time so
 * nothing of the guest's stream is consumed. */
static int hybrid_handshake(gl_link *l, int fd, int64_t deadline_us, const char **why)
{
  char line[GL_LINE_MAX];
  snprintf(line, sizeof line, "CONNECT %u\n", l->vsock_port);
  cmn_error e = {0};
  bool partial;
  if (write_all(fd, (const uint8_t *)line, strlen(line), NULL, 0, deadline_us, &partial, &e) < 0)
    return *why = "the hybrid vsock socket did not take CONNECT", -1;
  size_t n = 0;
  for (;;) {
    uint8_t ch;
    rbuf b = {.fd = fd, .stopfd = l->stopfd, .buf = &ch, .cap = 1};
    if (rb_fill(&b, 1, deadline_us, why) < 0) {
      if (*why != NULL)
        *why = "the guest refused the vsock connection (is the guest agent running?)";
      return -1;
    }
    if (ch == '\n')
      break;
    if (n + 1 >= sizeof line)
      return *why = "the hybrid vsock socket answered CONNECT with a line too long", -1;
    line[n++] = (char)ch;
  }
  line[n] = '\0';
  if (strncmp(line, "OK ", 3) != 0)
    return *why = "the guest refused the vsock connection (is the guest agent running?)", -1;
  return 0;
}

/* Readiness changes. The callback runs before a ready link is published (an
 * owner hears "ready" before any caller can use it) and after a lost one is
 * withdrawn. Only the link thread calls it, but for the last "not ready",
 * which gl_link_stop gives after the thread ended: calls never overlap and
 * none comes after gl_link_stop returns. */
static void set_state(gl_link *l, bool ready, const char *version, const char *why)
{
  if (ready) {
    pthread_mutex_lock(&l->mu);
    bool stop = l->stopping;
    l->announced = !stop;
    pthread_mutex_unlock(&l->mu);
    if (stop)
      return;
    if (l->on_state != NULL)
      l->on_state(l->opaque, true, version, NULL);
    pthread_mutex_lock(&l->mu);
    l->ready = true;
    cmn_snprintf(l->version, sizeof l->version, "%s", version);
    l->why[0] = '\0';
    l->gen++;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    return;
  }
  pthread_mutex_lock(&l->mu);
  l->ready = false;
  bool tell = l->announced && !l->stopping;
  if (tell)
    l->announced = false;
  if (!l->stopping) /* gl_link_stop's reason stays */
    cmn_snprintf(l->why, sizeof l->why, "%s", why);
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->mu);
  if (tell && l->on_state != NULL)
    l->on_state(l->opaque, false, NULL, why);
}

static uint64_t make_nonce(void)
{
  uint64_t n = 0;
  if (getrandom(&n, sizeof n, GRND_NONBLOCK) != (ssize_t)sizeof n)
    n = (uint64_t)gl_now_us() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&n;
  return n;
}

/* HELLO, then everything is ignored until a HELLO_ACK with the nonce. */
static int hello(gl_link *l, rbuf *b, int64_t deadline_us, char *version, size_t vn,
                 const char **why)
{
  uint64_t nonce = make_nonce();
  uint8_t pl[32], h[EMBER_GA_HEADER];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_u32(&w, EMBER_GA_R_VERSION, EMBER_GA_VERSION);
  ember_ga_wr_u64(&w, EMBER_GA_R_NONCE, nonce);
  ember_ga_hdr_encode(h, EMBER_GA_T_HELLO, 0, (uint32_t)w.len);
  cmn_error e = {0};
  bool partial;
  if (write_all(b->fd, h, sizeof h, pl, w.len, deadline_us, &partial, &e) < 0)
    return *why = "the guest agent has not answered (HELLO not taken)", -1;
  size_t skipped = 0;
  while (skipped < GL_HELLO_SKIP_MAX) {
    if (rb_fill(b, 4, deadline_us, why) < 0)
      return -1;
    ember_ga_hdr fh;
    if (ember_ga_get32(b->buf + b->pos) != EMBER_GA_MAGIC) {
      b->pos++;
      skipped++;
      continue;
    }
    if (rb_fill(b, EMBER_GA_HEADER, deadline_us, why) < 0)
      return -1;
    if (ember_ga_hdr_decode(b->buf + b->pos, &fh) < 0) {
      b->pos++;
      skipped++;
      continue;
    }
    if (rb_fill(b, EMBER_GA_HEADER + fh.length, deadline_us, why) < 0)
      return -1;
    const uint8_t *p = b->buf + b->pos + EMBER_GA_HEADER;
    b->pos += EMBER_GA_HEADER + fh.length;
    skipped += EMBER_GA_HEADER + fh.length;
    gl_rec r;
    if (fh.type != EMBER_GA_T_HELLO_ACK || fh.channel != 0 || parse_rec(p, fh.length, &r) < 0 ||
        !r.has[EMBER_GA_R_NONCE] || r.nonce != nonce)
      continue;
    cmn_snprintf(version, vn, "%s", r.has[EMBER_GA_R_AGENT] ? r.agent : "unknown");
    return 0;
  }
  return *why = "the guest agent has not answered (too many bytes before its HELLO_ACK)", -1;
}

static void serve(gl_link *l, rbuf *b, const char **why)
{
  for (;;) {
    if (rb_fill(b, EMBER_GA_HEADER, 0, why) < 0)
      return;
    ember_ga_hdr h;
    if (ember_ga_hdr_decode(b->buf + b->pos, &h) < 0) {
      *why = "the guest agent sent a malformed frame";
      return;
    }
    if (rb_fill(b, EMBER_GA_HEADER + h.length, 0, why) < 0)
      return;
    const uint8_t *p = b->buf + b->pos + EMBER_GA_HEADER;
    bool pong = false;
    pthread_mutex_lock(&l->mu);
    int r = dispatch(l, &h, p, why, &pong);
    uint64_t gen = l->gen;
    pthread_mutex_unlock(&l->mu);
    if (r < 0)
      return;
    if (pong) {
      cmn_error e = {0};
      (void)link_send(l, gen, EMBER_GA_T_PONG, 0, p, h.length, gl_now_us() + GL_CLOSE_MS * 1000,
                      &e);
    }
    b->pos += EMBER_GA_HEADER + h.length;
  }
}

/* Drops the connection: wakes writers, waits for the one writing, closes. */
static void drop(gl_link *l, int fd, const char *why)
{
  shutdown(fd, SHUT_RDWR);
  pthread_mutex_lock(&l->mu);
  while (l->writing) /* the writer polling fd wakes up with the shutdown */
    pthread_cond_wait(&l->wcond, &l->mu);
  l->fd = -1;
  fail_all(l, CMN_UNAVAILABLE, why);
  l->drop_why[0] = '\0';
  pthread_mutex_unlock(&l->mu);
  close(fd);
  set_state(l, false, NULL, why);
}

/* The reason gl_link_stop gave. */
static void stop_why(gl_link *l, char *buf, size_t n)
{
  pthread_mutex_lock(&l->mu);
  cmn_snprintf(buf, n, "%s", l->why[0] ? l->why : "the guest agent link was closed");
  pthread_mutex_unlock(&l->mu);
}

static void *link_thread(void *arg)
{
  gl_link *l = arg;
  cleanup_free uint8_t *buf = cmn_malloc(EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD + 4096);
  for (;;) {
    pthread_mutex_lock(&l->mu);
    bool stop = l->stopping;
    pthread_mutex_unlock(&l->mu);
    if (stop)
      break;
    const char *why = NULL;
    int fd = link_connect(l, &why);
    if (fd < 0) {
      pthread_mutex_lock(&l->mu);
      cmn_snprintf(l->why, sizeof l->why, "%s", why);
      pthread_cond_broadcast(&l->cond);
      pthread_mutex_unlock(&l->mu);
      if (!nap(l, l->retry_ms))
        break;
      continue;
    }
    pthread_mutex_lock(&l->mu);
    l->fd = fd;
    pthread_mutex_unlock(&l->mu);
    int64_t deadline = gl_now_us() + l->hello_ms * 1000;
    rbuf b = {.fd = fd,
              .stopfd = l->stopfd,
              .buf = buf,
              .cap = EMBER_GA_HEADER + EMBER_GA_MAX_PAYLOAD + 4096};
    char version[64];
    if ((l->transport == GL_HYBRID_VSOCK && hybrid_handshake(l, fd, deadline, &why) < 0) ||
        hello(l, &b, deadline, version, sizeof version, &why) < 0) {
      if (why == NULL) { /* stopping */
        char swhy[GL_WHY_MAX];
        stop_why(l, swhy, sizeof swhy);
        drop(l, fd, swhy);
        break;
      }
      drop(l, fd, why);
      if (!nap(l, l->retry_ms))
        break;
      continue;
    }
    set_state(l, true, version, NULL);
    serve(l, &b, &why);
    char dwhy[GL_WHY_MAX];
    if (why == NULL) {
      stop_why(l, dwhy, sizeof dwhy);
    } else {
      pthread_mutex_lock(&l->mu); /* a writer that cut a frame says why */
      bool writer = l->drop_why[0] != '\0' && strstr(why, "lost") != NULL;
      cmn_snprintf(dwhy, sizeof dwhy, "%s", writer ? l->drop_why : why);
      pthread_mutex_unlock(&l->mu);
    }
    drop(l, fd, dwhy);
    if (why == NULL || !nap(l, l->retry_ms))
      break;
  }
  return NULL;
}

/* ---------------------------------------------------------------- the link */

gl_link *gl_link_start(const gl_opts *o, cmn_error *err)
{
  if (o == NULL || o->path == NULL || o->path[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the guest agent link needs a socket path");
    return NULL;
  }
  if (o->transport != GL_UNIX && o->transport != GL_HYBRID_VSOCK) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown guest agent transport %d", (int)o->transport);
    return NULL;
  }
  if (o->hello_timeout_ms < 0 || o->retry_ms < 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "negative guest agent link timeouts");
    return NULL;
  }
  gl_link *l = cmn_calloc(1, sizeof *l);
  l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->stopfd < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "eventfd");
    free(l);
    return NULL;
  }
  cond_init_mono(&l->wcond);
  pthread_mutex_init(&l->mu, NULL);
  cond_init_mono(&l->cond);
  l->refs = 1;
  l->fd = -1;
  l->transport = o->transport;
  l->path = cmn_strdup(o->path);
  l->vsock_port = o->vsock_port ? o->vsock_port : EMBER_GA_VSOCK_PORT;
  l->hello_ms = o->hello_timeout_ms ? o->hello_timeout_ms : 2000;
  l->retry_ms = o->retry_ms ? o->retry_ms : 100;
  l->on_state = o->on_state;
  l->opaque = o->opaque;
  cmn_snprintf(l->why, sizeof l->why, "the guest agent has not answered yet");
  int r = pthread_create(&l->thread, NULL, link_thread, l);
  if (r != 0) {
    cmn_err_errno(err, CMN_INTERNAL, r, "cannot start the guest agent link thread");
    close(l->stopfd);
    free(l->path);
    free(l);
    return NULL;
  }
  return l;
}

static void link_halt(gl_link *l, const char *why)
{
  pthread_mutex_lock(&l->mu);
  bool join = !l->joined;
  l->joined = true;
  if (join) {
    l->stopping = true;
    cmn_snprintf(l->why, sizeof l->why, "%s", why ? why : "the guest agent link was closed");
  }
  pthread_mutex_unlock(&l->mu);
  if (!join)
    return;
  uint64_t one = 1;
  ssize_t w = write(l->stopfd, &one, sizeof one);
  (void)w;
  pthread_join(l->thread, NULL);
  pthread_mutex_lock(&l->mu);
  bool was_ready = l->announced;
  l->announced = false;
  l->ready = false;
  cmn_snprintf(l->why, sizeof l->why, "%s", why ? why : "the guest agent link was closed");
  fail_all(l, CMN_UNAVAILABLE, l->why);
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->mu);
  if (was_ready && l->on_state != NULL)
    l->on_state(l->opaque, false, NULL, why ? why : "the guest agent link was closed");
}

void gl_link_stop(gl_link *l, const char *why)
{
  if (l == NULL)
    return;
  link_halt(l, why);
  gl_link_unref(l);
}

gl_link *gl_link_ref(gl_link *l)
{
  pthread_mutex_lock(&l->mu);
  l->refs++;
  pthread_mutex_unlock(&l->mu);
  return l;
}

void gl_link_unref(gl_link *l)
{
  if (l == NULL)
    return;
  pthread_mutex_lock(&l->mu);
  int left = --l->refs;
  pthread_mutex_unlock(&l->mu);
  if (left > 0)
    return;
  link_halt(l, NULL); /* the owner forgot gl_link_stop */
  close(l->stopfd);
  pthread_cond_destroy(&l->cond);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->wcond);
  free(l->path);
  free(l);
}

bool gl_link_ready(gl_link *l, char *version, size_t n)
{
  pthread_mutex_lock(&l->mu);
  bool r = l->ready && !l->stopping;
  if (version != NULL && n > 0)
    cmn_snprintf(version, n, "%s", r ? l->version : "");
  pthread_mutex_unlock(&l->mu);
  return r;
}

int gl_link_wait_ready(gl_link *l, int64_t deadline_us, cmn_error *err)
{
  pthread_mutex_lock(&l->mu);
  int r = 0;
  while (!l->ready || l->stopping) {
    if (l->stopping || cond_wait(&l->cond, &l->mu, deadline_us) == ETIMEDOUT) {
      r = cmn_err_set(err, CMN_UNAVAILABLE, "%s",
                      l->why[0] ? l->why : "the guest agent has not answered");
      break;
    }
  }
  pthread_mutex_unlock(&l->mu);
  return r;
}

/* ---------------------------------------------------------------- exec */

gl_exec *gl_exec_start(gl_link *l, const gl_exec_req *req, int64_t deadline_us, int *pid,
                       cmn_error *err)
{
  if (req == NULL || req->argc < 1 || req->argv == NULL || req->argv[0] == NULL ||
      req->argv[0][0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the command needs a program name");
    cmn_err_field(err, "command");
    return NULL;
  }
  if (req->argc > EMBER_GA_MAX_ARGS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the command has more than %u arguments",
                EMBER_GA_MAX_ARGS);
    cmn_err_field(err, "command");
    return NULL;
  }
  if (req->envc > EMBER_GA_MAX_ENV || (req->envc > 0 && req->env == NULL)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "more than %u environment variables", EMBER_GA_MAX_ENV);
    cmn_err_field(err, "env");
    return NULL;
  }
  cleanup_free uint8_t *pl = cmn_malloc(EMBER_GA_MAX_PAYLOAD);
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, EMBER_GA_MAX_PAYLOAD);
  for (size_t i = 0; i < req->argc; i++) {
    if (req->argv[i] == NULL) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "argument %zu of the command is missing", i);
      cmn_err_field(err, "command");
      return NULL;
    }
    ember_ga_wr_str(&w, EMBER_GA_R_ARG, req->argv[i]);
  }
  if (!w.ok) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the command is longer than %u bytes",
                EMBER_GA_MAX_PAYLOAD);
    cmn_err_field(err, "command");
    return NULL;
  }
  for (size_t i = 0; i < req->envc; i++) {
    const char *e = req->env[i];
    if (e == NULL || e[0] == '=' || strchr(e, '=') == NULL) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "environment entry %zu is not KEY=VALUE", i);
      cmn_err_field(err, "env");
      return NULL;
    }
    ember_ga_wr_str(&w, EMBER_GA_R_ENV, e);
  }
  if (!w.ok) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "the command and its environment are longer than %u bytes", EMBER_GA_MAX_PAYLOAD);
    cmn_err_field(err, "env");
    return NULL;
  }
  if (req->cwd != NULL && req->cwd[0] != '\0')
    ember_ga_wr_str(&w, EMBER_GA_R_CWD, req->cwd);
  if (req->user != NULL && req->user[0] != '\0')
    ember_ga_wr_str(&w, EMBER_GA_R_USER, req->user);
  if (req->tty) {
    ember_ga_wr_u8(&w, EMBER_GA_R_TTY, 1);
    if (req->rows != 0)
      ember_ga_wr_u16(&w, EMBER_GA_R_ROWS, req->rows);
    if (req->cols != 0)
      ember_ga_wr_u16(&w, EMBER_GA_R_COLS, req->cols);
  }
  if (!w.ok) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the request is longer than %u bytes",
                EMBER_GA_MAX_PAYLOAD);
    cmn_err_field(err, "command");
    return NULL;
  }
  gl_chan *c = chan_open(l, CH_EXEC, err);
  if (c == NULL)
    return NULL;
  if (link_send(l, c->gen, EMBER_GA_T_EXEC, c->id, pl, w.len, deadline_us, err) < 0 ||
      chan_wait_open(c, deadline_us, err) < 0) {
    chan_free(c);
    return NULL;
  }
  if (pid != NULL)
    *pid = (int)c->pid;
  return (gl_exec *)c;
}

int gl_exec_stdin(gl_exec *x, const void *buf, size_t len, int64_t deadline_us, cmn_error *err)
{
  return chan_send_data(&x->c, EMBER_GA_T_STDIN, buf, len, deadline_us, err);
}

int gl_exec_stdin_eof(gl_exec *x, cmn_error *err)
{
  return chan_send_ctl(&x->c, EMBER_GA_T_STDIN_EOF, NULL, 0, gl_now_us() + 5000000, err);
}

int gl_exec_resize(gl_exec *x, uint16_t rows, uint16_t cols, cmn_error *err)
{
  uint8_t pl[32];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_u16(&w, EMBER_GA_R_ROWS, rows);
  ember_ga_wr_u16(&w, EMBER_GA_R_COLS, cols);
  return chan_send_ctl(&x->c, EMBER_GA_T_RESIZE, pl, w.len, gl_now_us() + 5000000, err);
}

int gl_exec_signal(gl_exec *x, int signum, cmn_error *err)
{
  if (signum <= 0 || signum > 64)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "no signal %d", signum);
  uint8_t pl[16];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_u32(&w, EMBER_GA_R_SIGNUM, (uint32_t)signum);
  return chan_send_ctl(&x->c, EMBER_GA_T_SIGNAL, pl, w.len, gl_now_us() + 5000000, err);
}

int gl_exec_next(gl_exec *x, gl_event *ev, int64_t deadline_us, cmn_error *err)
{
  gl_ev *e = NULL;
  int r = chan_next(&x->c, &e, deadline_us, err);
  if (r <= 0)
    return r;
  memset(ev, 0, sizeof *ev);
  if (e->type == EMBER_GA_T_EXIT) {
    ev->kind = GL_EV_EXIT;
    ev->exit_code = e->exit_code;
    ev->signum = e->signum;
  } else {
    ev->kind = e->type == EMBER_GA_T_STDOUT ? GL_EV_STDOUT : GL_EV_STDERR;
    ev->data = steal_ptr(e->data);
    ev->len = e->len;
  }
  ev_free(e);
  return 1;
}

void gl_exec_free(gl_exec *x)
{
  if (x != NULL)
    chan_free(&x->c);
}

/* ---------------------------------------------------------------- files */

static int check_guest_path(const char *path, cmn_error *err)
{
  if (path == NULL || path[0] != '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the guest path must be absolute");
    return cmn_err_field(err, "path");
  }
  if (strlen(path) > 4096) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "the guest path is too long");
    return cmn_err_field(err, "path");
  }
  return 0;
}

gl_put *gl_put_start(gl_link *l, const char *path, uint32_t mode, uint64_t size,
                     int64_t deadline_us, cmn_error *err)
{
  if (check_guest_path(path, err) < 0)
    return NULL;
  if (mode & ~07777u) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "mode %o is not permission bits", mode);
    cmn_err_field(err, "mode");
    return NULL;
  }
  uint8_t pl[4200];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, path);
  ember_ga_wr_u32(&w, EMBER_GA_R_MODE, mode);
  ember_ga_wr_u64(&w, EMBER_GA_R_SIZE, size);
  gl_chan *c = chan_open(l, CH_PUT, err);
  if (c == NULL)
    return NULL;
  c->size = size;
  if (link_send(l, c->gen, EMBER_GA_T_PUT, c->id, pl, w.len, deadline_us, err) < 0 ||
      chan_wait_open(c, deadline_us, err) < 0) {
    chan_free(c);
    return NULL;
  }
  return (gl_put *)c;
}

int gl_put_write(gl_put *p, const void *buf, size_t len, int64_t deadline_us, cmn_error *err)
{
  gl_chan *c = &p->c;
  if (len > c->size - c->sent_bytes)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "more data than the %llu bytes announced for the file",
                       (unsigned long long)c->size);
  pthread_mutex_lock(&c->l->mu);
  bool ended = c->phase == PH_ENDED && !c->failed;
  pthread_mutex_unlock(&c->l->mu);
  if (ended)
    return cmn_err_set(err, CMN_INTERNAL, "the guest agent ended the copy early");
  if (chan_send_data(c, EMBER_GA_T_DATA, buf, len, deadline_us, err) < 0)
    return -1;
  c->sent_bytes += len;
  return 0;
}

int gl_put_finish(gl_put *p, int64_t deadline_us, cmn_error *err)
{
  gl_chan *c = &p->c;
  if (c->sent_bytes != c->size)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%llu bytes sent of the %llu announced",
                       (unsigned long long)c->sent_bytes, (unsigned long long)c->size);
  if (chan_send_ctl(c, EMBER_GA_T_END, NULL, 0, deadline_us, err) < 0)
    return -1;
  gl_ev *e = NULL;
  int r = chan_next(c, &e, deadline_us, err);
  if (r == 0)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "the copy is finished already");
  if (r < 0)
    return -1;
  uint64_t got = e->size;
  ev_free(e);
  if (got != c->size)
    return cmn_err_set(err, CMN_INTERNAL, "the guest agent stored %llu bytes of %llu",
                       (unsigned long long)got, (unsigned long long)c->size);
  return 0;
}

void gl_put_free(gl_put *p)
{
  if (p != NULL)
    chan_free(&p->c);
}

gl_get *gl_get_start(gl_link *l, const char *path, int64_t deadline_us, uint64_t *size,
                     uint32_t *mode, cmn_error *err)
{
  if (check_guest_path(path, err) < 0)
    return NULL;
  uint8_t pl[4200];
  ember_ga_wr w;
  ember_ga_wr_init(&w, pl, sizeof pl);
  ember_ga_wr_str(&w, EMBER_GA_R_PATH, path);
  gl_chan *c = chan_open(l, CH_GET, err);
  if (c == NULL)
    return NULL;
  if (link_send(l, c->gen, EMBER_GA_T_GET, c->id, pl, w.len, deadline_us, err) < 0 ||
      chan_wait_open(c, deadline_us, err) < 0) {
    chan_free(c);
    return NULL;
  }
  if (size != NULL)
    *size = c->size;
  if (mode != NULL)
    *mode = c->mode & 07777u;
  return (gl_get *)c;
}

ssize_t gl_get_read(gl_get *g, uint8_t **buf, int64_t deadline_us, cmn_error *err)
{
  gl_ev *e = NULL;
  *buf = NULL;
  int r = chan_next(&g->c, &e, deadline_us, err);
  if (r <= 0)
    return r;
  if (e->type == EMBER_GA_T_END) {
    ev_free(e);
    return 0;
  }
  ssize_t n = (ssize_t)e->len;
  *buf = steal_ptr(e->data);
  ev_free(e);
  return n;
}

void gl_get_free(gl_get *g)
{
  if (g != NULL)
    chan_free(&g->c);
}
