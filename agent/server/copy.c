/* copy.c: CopyToInstance (client stream) and CopyFromInstance (server
 * stream) over the guest agent link (agent/guestlink/guestlink.h), each on a
 * thread of its own (srv_call_spawn).
 *
 * CopyToInstance: the header, then data; the bytes must add up to
 * header.size exactly, else INVALID_ARGUMENT and the put channel is freed
 * unfinished (the guest removes its temp file: nothing is left). The file
 * appears (renamed into place by the guest) only at gl_put_finish, after the
 * client's half-close.
 *
 * CopyFromInstance: the header {size, mode}, then data chunks; before each
 * read from the link the thread waits for room in the call's outgoing queue
 * (srv_stream_wait_room), so a slow client slows the guest's reads through
 * the link's window. */
#include "agent/guestlink/guestlink.h"
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <string.h>

#define SRV_COPY_MAX_PATH 4096u
/* Data goes to the link in pieces of one frame at most: a piece whose
 * deadline passes (window full) was not sent and is retried whole. */
#define SRV_COPY_PIECE (32u << 10)
#define SRV_COPY_SLICE_US 200000
/* A guest that takes no data (or sends none) for this long fails the copy. */
#define SRV_COPY_STALL_US (60 * 1000000LL)
#define SRV_COPY_OPEN_US (30 * 1000000LL)
#define SRV_COPY_CHUNK (64u << 10) /* CopyFromInstance data messages */
#define SRV_COPY_QUEUE_BYTES (128u << 10)
#define SRV_COPY_QUEUE_MSGS 64u

int srv_copy_check_path(const char *path, const char *field, cmn_error *err)
{
  size_t n = path != NULL ? strlen(path) : 0;
  if (n == 0 || path[0] != '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be an absolute path in the guest", field);
    return cmn_err_field(err, field);
  }
  if (n > SRV_COPY_MAX_PATH) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is longer than %u bytes", field, SRV_COPY_MAX_PATH);
    return cmn_err_field(err, field);
  }
  if (path[n - 1] == '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s names a directory; give the file's path", field);
    return cmn_err_field(err, field);
  }
  return 0;
}

static int srv__copy_check_id(const char *id, const char *field, cmn_error *err)
{
  if (id == NULL || id[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is required (an instance id or name)", field);
    return cmn_err_field(err, field);
  }
  return 0;
}

/* ---- CopyToInstance ---- */

typedef struct srv__copy_to {
  srv_grecv rx; /* first: c->priv points at both */
} srv__copy_to;

static void srv__copy_to_free(void *p)
{
  srv__copy_to *t = p;
  if (t == NULL)
    return;
  srv_grecv_fini(&t->rx);
  free(t);
}

/* Writes len bytes in pieces; fails when the call ends or the guest takes
 * nothing for SRV_COPY_STALL_US. */
static int srv__put_write(srv_call *c, gl_put *p, const uint8_t *buf, size_t len, cmn_error *err)
{
  while (len > 0) {
    size_t k = len < SRV_COPY_PIECE ? len : SRV_COPY_PIECE;
    int64_t stall = srv_now_us() + SRV_COPY_STALL_US;
    for (;;) {
      if (srv_call_gone(c))
        return cmn_err_set(err, CMN_CANCELLED, "the call ended");
      cmn_error e = {0};
      if (gl_put_write(p, buf, k, gl_now_us() + SRV_COPY_SLICE_US, &e) == 0)
        break;
      if (e.code != CMN_DEADLINE_EXCEEDED) {
        *err = e;
        return -1;
      }
      if (srv_now_us() >= stall)
        return cmn_err_set(err, CMN_UNAVAILABLE,
                           "the guest agent took no data for %lld s; the copy was abandoned",
                           (long long)(SRV_COPY_STALL_US / 1000000));
    }
    buf += k;
    len -= k;
  }
  return 0;
}

static void *srv__copy_to_main(void *arg)
{
  srv_call *c = arg;
  srv__copy_to *t = c->priv;
  cmn_error err = {0};
  srv_stream_register(c, SRV_STREAM_GUEST);
  uint8_t *data = NULL;
  size_t len = 0;
  Ember__V1__CopyToInstanceRequest *m = NULL;
  gl_link *l = NULL;
  gl_put *p = NULL;
  cleanup_free char *id = NULL;
  cleanup_free char *path = NULL;
  int64_t size = 0, got = 0;

  int r = srv_grecv_next(c, &t->rx, &data, &len, &err);
  if (r == 0) {
    cmn_err_set(&err, CMN_INVALID_ARGUMENT, "the stream ended before its header message");
    cmn_err_field(&err, "header");
  } else if (r > 0) {
    m = ember__v1__copy_to_instance_request__unpack(NULL, len, data);
    if (m == NULL) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "cannot decode a CopyToInstanceRequest");
    } else if (m->request_case != EMBER__V1__COPY_TO_INSTANCE_REQUEST__REQUEST_HEADER) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                  "the first message of CopyToInstance must carry header");
      cmn_err_field(&err, "header");
    } else if (srv__copy_check_id(m->header->id, "header.id", &err) == 0 &&
               srv_copy_check_path(m->header->path, "header.path", &err) == 0) {
      if (m->header->mode > 07777) {
        cmn_err_set(&err, CMN_INVALID_ARGUMENT, "header.mode %#o has bits beyond 07777",
                    m->header->mode);
        cmn_err_field(&err, "header.mode");
      } else if (m->header->size < 0) {
        cmn_err_set(&err, CMN_INVALID_ARGUMENT, "header.size must not be negative");
        cmn_err_field(&err, "header.size");
      }
    }
  }
  free(data);
  data = NULL;
  const Ember__V1__CopyToHeader *h = err.code == CMN_OK && m != NULL ? m->header : NULL;
  if (h != NULL) {
    uint32_t mode = h->mode != 0 ? h->mode : 0644;
    size = h->size;
    path = cmn_strdup(h->path);
    l = srv_guest_link(c, h->id, srv_ready_timeout_us(NULL), &id, &err);
    if (l != NULL)
      p = gl_put_start(l, path, mode, (uint64_t)size, gl_now_us() + SRV_COPY_OPEN_US, &err);
    if (p == NULL && err.code == CMN_INVALID_ARGUMENT && err.field[0] == '\0')
      cmn_err_field(&err, "header.path");
  }
  if (m != NULL)
    ember__v1__copy_to_instance_request__free_unpacked(m, NULL);
  m = NULL;
  while (err.code == CMN_OK && p != NULL) {
    r = srv_grecv_next(c, &t->rx, &data, &len, &err);
    if (r < 0)
      break;
    if (r == 0) {
      if (got != size) {
        cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                    "the upload ended after %lld bytes; header.size said %lld (nothing was "
                    "written)",
                    (long long)got, (long long)size);
        cmn_err_field(&err, "header.size");
      } else if (gl_put_finish(p, gl_now_us() + SRV_COPY_STALL_US, &err) == 0) {
        Ember__V1__CopyToInstanceResponse out = EMBER__V1__COPY_TO_INSTANCE_RESPONSE__INIT;
        out.size = got;
        cmn_info(NULL, "copy", "copied %lld bytes to %s:%s", (long long)got, id, path);
        srv_call_finish(c, srv_pack_bb(&out.base), 0, NULL);
      }
      break;
    }
    m = ember__v1__copy_to_instance_request__unpack(NULL, len, data);
    free(data);
    data = NULL;
    if (m == NULL) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "cannot decode a CopyToInstanceRequest");
      break;
    }
    if (m->request_case == EMBER__V1__COPY_TO_INSTANCE_REQUEST__REQUEST_HEADER) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                  "only the first message of CopyToInstance carries header");
      cmn_err_field(&err, "header");
    } else if (m->request_case == EMBER__V1__COPY_TO_INSTANCE_REQUEST__REQUEST_DATA) {
      if ((uint64_t)(size - got) < m->data.len) {
        cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                    "more data than header.size (%lld bytes); nothing was written",
                    (long long)size);
        cmn_err_field(&err, "header.size");
      } else if (srv__put_write(c, p, m->data.data, m->data.len, &err) == 0) {
        got += (int64_t)m->data.len;
      }
    }
    ember__v1__copy_to_instance_request__free_unpacked(m, NULL);
    m = NULL;
  }
  free(data);
  /* An unfinished put leaves nothing in the guest. */
  if (p != NULL)
    gl_put_free(p);
  if (l != NULL) {
    gl_link_unref(l);
    agent_manager_session_end(c->srv->mgr, id); /* srv_guest_link began it */
  }
  if (err.code != CMN_OK && err.code != CMN_CANCELLED) {
    cmn_info(NULL, "copy", "copy to %s:%s failed: %s", id ? id : "?", path ? path : "?", err.msg);
    srv_call_finish_error(c, &err);
  }
  srv_call_thread_done(c);
  return NULL;
}

void srv_copy_to_start(srv_call *c)
{
  srv__copy_to *t = cmn_calloc(1, sizeof *t);
  srv_grecv_init(&t->rx);
  srv_grecv_attach(c, &t->rx, srv__copy_to_free);
  srv_call_spawn(c, srv__copy_to_main);
}

/* ---- CopyFromInstance ---- */

static void srv__copy_push(srv_call *c, const Ember__V1__CopyFromInstanceResponse *m)
{
  grpc_byte_buffer *bb = srv_pack_bb(&m->base);
  pthread_mutex_lock(&c->mu);
  srv_stream_push_locked(c, bb);
  pthread_mutex_unlock(&c->mu);
}

/* Streams the file; returns 0 at its end, < 0 with err (CANCELLED when the
 * call ended). */
static int srv__copy_from_pump(srv_call *c, gl_get *g, int64_t *sent, cmn_error *err)
{
  int64_t stall = srv_now_us() + SRV_COPY_STALL_US;
  for (;;) {
    int64_t slice = srv_now_us() + SRV_COPY_SLICE_US;
    int w = srv_stream_wait_room(c, SRV_COPY_QUEUE_BYTES, SRV_COPY_QUEUE_MSGS, slice);
    if (w < 0 || srv_call_gone(c))
      return cmn_err_set(err, CMN_CANCELLED, "the call ended");
    if (w == 0) {
      stall = srv_now_us() + SRV_COPY_STALL_US; /* the client is slow, not the guest */
      continue;
    }
    uint8_t *buf = NULL;
    cmn_error e = {0};
    ssize_t n = gl_get_read(g, &buf, gl_now_us() + SRV_COPY_SLICE_US, &e);
    if (n == 0)
      return 0;
    if (n < 0) {
      if (e.code != CMN_DEADLINE_EXCEEDED) {
        *err = e;
        return -1;
      }
      if (srv_now_us() >= stall)
        return cmn_err_set(err, CMN_UNAVAILABLE,
                           "the guest agent sent no data for %lld s; the copy was abandoned",
                           (long long)(SRV_COPY_STALL_US / 1000000));
      continue;
    }
    stall = srv_now_us() + SRV_COPY_STALL_US;
    for (size_t off = 0; off < (size_t)n; off += SRV_COPY_CHUNK) {
      size_t k = (size_t)n - off < SRV_COPY_CHUNK ? (size_t)n - off : SRV_COPY_CHUNK;
      Ember__V1__CopyFromInstanceResponse out = EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__INIT;
      out.response_case = EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__RESPONSE_DATA;
      out.data = (ProtobufCBinaryData){.len = k, .data = buf + off};
      srv__copy_push(c, &out);
    }
    *sent += n;
    free(buf);
  }
}

static void *srv__copy_from_main(void *arg)
{
  srv_call *c = arg;
  cmn_error err = {0};
  srv_stream_register(c, SRV_STREAM_GUEST);
  Ember__V1__CopyFromInstanceRequest *r =
      srv_unpack(&ember__v1__copy_from_instance_request__descriptor, c->req, c->req_len, &err);
  gl_link *l = NULL;
  gl_get *g = NULL;
  cleanup_free char *id = NULL;
  if (r != NULL && srv__copy_check_id(r->id, "id", &err) == 0 &&
      srv_copy_check_path(r->path, "path", &err) == 0) {
    l = srv_guest_link(c, r->id, srv_ready_timeout_us(NULL), &id, &err);
    uint64_t size = 0;
    uint32_t mode = 0;
    if (l != NULL)
      g = gl_get_start(l, r->path, gl_now_us() + SRV_COPY_OPEN_US, &size, &mode, &err);
    if (g != NULL) {
      Ember__V1__CopyFromHeader h = EMBER__V1__COPY_FROM_HEADER__INIT;
      h.size = (int64_t)size;
      h.mode = mode & 07777;
      Ember__V1__CopyFromInstanceResponse out = EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__INIT;
      out.response_case = EMBER__V1__COPY_FROM_INSTANCE_RESPONSE__RESPONSE_HEADER;
      out.header = &h;
      srv__copy_push(c, &out);
      int64_t sent = 0;
      if (srv__copy_from_pump(c, g, &sent, &err) == 0) {
        cmn_info(NULL, "copy", "copied %lld bytes from %s:%s", (long long)sent, id, r->path);
        pthread_mutex_lock(&c->mu);
        srv_stream_end_locked(c, 0, NULL);
        pthread_mutex_unlock(&c->mu);
      }
    }
  }
  if (g != NULL)
    gl_get_free(g);
  if (l != NULL) {
    gl_link_unref(l);
    agent_manager_session_end(c->srv->mgr, id); /* srv_guest_link began it */
  }
  if (err.code != CMN_OK && err.code != CMN_CANCELLED) {
    cmn_info(NULL, "copy", "copy from %s:%s failed: %s", id ? id : (r ? r->id : "?"),
             r ? r->path : "?", err.msg);
    srv_call_finish_error(c, &err);
  }
  if (r != NULL)
    protobuf_c_message_free_unpacked(&r->base, NULL);
  srv_call_thread_done(c);
  return NULL;
}

void srv_copy_from_start(srv_call *c) { srv_call_spawn(c, srv__copy_from_main); }
