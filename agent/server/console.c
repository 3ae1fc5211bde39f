/* console.c: InstanceService.StreamConsole (a server stream) over the
 * instance's console file (agent/console.h; docs/console.md).
 *
 * Each call runs on its own detached thread (srv_call_spawn, counted in
 * s->slow_threads). It reads the file by absolute offset in chunks of at most
 * SRV_CONSOLE_CHUNK bytes and only reads more once the call's outgoing queue
 * is empty (one chunk in flight, at most one queued), so a slow client costs emberd a
 * bounded amount of memory however much the guest prints (the guest's bytes
 * wait on disk, where rotation bounds them). With follow it polls the file
 * every SRV_CONSOLE_POLL_MS for growth and the instance every
 * SRV_CONSOLE_CHECK_MS; it ends with OK once the client cancels (nothing is
 * sent), the instance is deleted (after the bytes still in the file), and
 * with UNAVAILABLE when emberd shuts down. */
#include "agent/console.h"
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define SRV_CONSOLE_CHUNK (64 * 1024)
#define SRV_CONSOLE_POLL_MS 50
/* How often a follower checks that its instance still exists. */
#define SRV_CONSOLE_CHECK_MS 500

static void srv__console_sleep_ms(int ms)
{
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef enum { SRV_CON_GO, SRV_CON_CLOSED, SRV_CON_SHUTDOWN } srv__con_state;

/* Whether the call should go on; *room is set when the queue has room. */
static srv__con_state srv__console_state(srv_call *c, bool *room)
{
  pthread_mutex_lock(&c->mu);
  bool gone = c->closed || c->status_sent || c->finishing;
  *room = c->q_count == 0;
  pthread_mutex_unlock(&c->mu);
  if (gone)
    return SRV_CON_CLOSED;
  pthread_mutex_lock(&c->srv->mu);
  bool down = c->srv->shutting_down;
  pthread_mutex_unlock(&c->srv->mu);
  return down ? SRV_CON_SHUTDOWN : SRV_CON_GO;
}

static void srv__console_push(srv_call *c, int64_t off, const uint8_t *data, size_t n,
                              int64_t skipped)
{
  Ember__V1__ConsoleChunk m = EMBER__V1__CONSOLE_CHUNK__INIT;
  m.offset = off;
  m.data.data = (uint8_t *)data;
  m.data.len = n;
  m.skipped = skipped;
  grpc_byte_buffer *bb = srv_pack_bb(&m.base);
  pthread_mutex_lock(&c->mu);
  srv_stream_push_locked(c, bb);
  pthread_mutex_unlock(&c->mu);
}

static int srv__console_check(const Ember__V1__StreamConsoleRequest *r, cmn_error *err)
{
  if (r->id[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is required (an instance id or name)");
    return cmn_err_field(err, "id");
  }
  if (r->offset < 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "offset must not be negative (got %lld)",
                (long long)r->offset);
    return cmn_err_field(err, "offset");
  }
  if (r->tail_bytes < 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "tail_bytes must not be negative (got %lld)",
                (long long)r->tail_bytes);
    return cmn_err_field(err, "tail_bytes");
  }
  return 0;
}

/* The stream after the request was accepted; returns the final status in err
 * (CMN_OK: end with OK; code -1: the client is gone, send nothing). */
static void srv__console_run(srv_call *c, const Ember__V1__StreamConsoleRequest *r, const char *id,
                             const char *path, cmn_error *err)
{
  srv_server *s = c->srv;
  cleanup_free uint8_t *buf = cmn_malloc(SRV_CONSOLE_CHUNK);
  int fd = -1;
  bool follow = r->follow;
  bool positioned = false;
  int64_t pos = 0;
  int64_t last_check_us = srv_now_us();
  for (;;) {
    bool room = false;
    srv__con_state st = srv__console_state(c, &room);
    if (st == SRV_CON_CLOSED) {
      err->code = -1;
      break;
    }
    if (st == SRV_CON_SHUTDOWN) {
      cmn_err_set(err, CMN_UNAVAILABLE, "emberd is shutting down");
      break;
    }
    /* With follow: is the instance still there? A deleted one ends the
     * stream once what its file still holds was sent. */
    if (follow && srv_now_us() - last_check_us >= SRV_CONSOLE_CHECK_MS * 1000) {
      last_check_us = srv_now_us();
      agent_instance_view v = {0};
      cmn_error e2 = {0};
      if (agent_manager_get(s->mgr, id, &v, &e2) < 0) {
        if (e2.code == CMN_NOT_FOUND)
          follow = false;
      } else {
        agent_instance_view_free(&v);
      }
    }
    if (fd < 0) {
      cmn_error e2 = {0};
      fd = agent_console_open(path, &e2);
      if (fd < 0) {
        if (e2.code != CMN_NOT_FOUND) {
          *err = e2;
          break;
        }
        if (!follow)
          break; /* the instance never ran: no output, OK */
        srv__console_sleep_ms(SRV_CONSOLE_POLL_MS);
        continue;
      }
    }
    if (!positioned) {
      int64_t start, end;
      if (agent_console_window(fd, &start, &end, err) < 0)
        break;
      if (r->tail_bytes > 0) {
        pos = end > r->tail_bytes ? end - r->tail_bytes : 0;
      } else if (r->offset > end) {
        cmn_err_set(err, CMN_OUT_OF_RANGE,
                    "offset %lld is beyond the end of the console (%lld bytes so far)",
                    (long long)r->offset, (long long)end);
        cmn_err_field(err, "offset");
        break;
      } else {
        pos = r->offset;
      }
      positioned = true;
    }
    if (!room) {
      srv__console_sleep_ms(10);
      continue;
    }
    int64_t at = 0, skipped = 0;
    ssize_t n = agent_console_read(fd, pos, buf, SRV_CONSOLE_CHUNK, &at, &skipped, err);
    if (n < 0)
      break;
    if (n > 0) {
      srv__console_push(c, at, buf, (size_t)n, skipped);
      pos = at + n;
      continue;
    }
    if (skipped > 0) {
      /* Everything up to the end was rotated away: say so now. */
      srv__console_push(c, at, buf, 0, skipped);
      pos = at;
    }
    if (!follow)
      break;
    srv__console_sleep_ms(SRV_CONSOLE_POLL_MS);
  }
  if (fd >= 0)
    close(fd);
}

static void *srv__console_main(void *arg)
{
  srv_call *c = arg;
  srv_server *s = c->srv;
  cmn_error err = {0};
  Ember__V1__StreamConsoleRequest *r =
      srv_unpack(&ember__v1__stream_console_request__descriptor, c->req, c->req_len, &err);
  agent_instance_view v = {0};
  bool ok = r != NULL && srv__console_check(r, &err) == 0 &&
            agent_manager_get(s->mgr, r->id, &v, &err) == 0;
  if (ok && v.console_log_path == NULL) {
    cmn_err_set(&err, CMN_INTERNAL, "the instance has no console file");
    ok = false;
  }
  if (ok) {
    /* Headers go out now: the client sees the call accepted. */
    pthread_mutex_lock(&c->mu);
    srv_stream_push_locked(c, NULL);
    pthread_mutex_unlock(&c->mu);
    /* An open console stream keeps the instance awake (idle auto-standby). */
    bool session = agent_manager_session_begin(s->mgr, v.id) == 0;
    srv__console_run(c, r, v.id, v.console_log_path, &err);
    if (session)
      agent_manager_session_end(s->mgr, v.id);
    if (err.code == CMN_OK) {
      pthread_mutex_lock(&c->mu);
      srv_stream_end_locked(c, 0, NULL);
      pthread_mutex_unlock(&c->mu);
    }
  }
  if (err.code > 0)
    srv_call_finish_error(c, &err);
  else if (err.code < 0)
    srv_call_finish(c, NULL, CMN_CANCELLED, "the client went away");
  agent_instance_view_free(&v);
  if (r != NULL)
    protobuf_c_message_free_unpacked(&r->base, NULL);
  srv_call_thread_done(c);
  return NULL;
}

void srv_console_start(srv_call *c) { srv_call_spawn(c, srv__console_main); }
