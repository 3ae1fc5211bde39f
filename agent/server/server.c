/* server.c: the gRPC C core plumbing of emberd: listening, one completion queue
 * shared by the worker threads, the registered methods and the always-posted
 * catch-all for unknown methods, per-call reference counting, the outgoing
 * message queue of streams, the error-to-status mapping (in one place), and
 * shutdown.
 *
 * Every call starts with GRPC_OP_RECV_CLOSE_ON_SERVER so that a client cancel
 * or an expired deadline is seen (c->closed) and sends to a gone client stop.
 * Lifecycle methods (`slow`) run on their own detached threads: worker threads
 * stay free for Get/List, and an operation always runs to its end; when its
 * client has gone the response is just dropped by the core. */
#include "agent/server/internal.h"
#include "agent/server/wire_check.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"
#include "ember/v1/image.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Once this much stream queue data has been freed, the heap's free pages are
 * given back to the system (malloc_trim): the queues are many small blocks,
 * and without it RSS stays at its peak after stuck streams are gone. */
#define SRV_TRIM_AFTER_BYTES (4 * 1024 * 1024)

/* The unary rows of ember's services come from agent/rpc_table.h; the
 * streaming rows and the standard gRPC services are listed here. */
const srv_method srv_methods[] = {
#define SRV_ROW(desc, svc, meth, handler, slow_, op_, mutates_, ctl)                               \
  {.path = "/" svc "/" #meth,                                                                      \
   .kind = SRV_UNARY,                                                                              \
   .slow = slow_,                                                                                  \
   .unary = handler,                                                                               \
   .service = &desc,                                                                               \
   .method = #meth,                                                                                \
   .op = op_,                                                                                      \
   .mutates = mutates_},
    EMBER_UNARY_RPCS(SRV_ROW)
#undef SRV_ROW
        {.path = "/ember.v1.InstanceService/WatchInstances",
         .kind = SRV_SERVER_STREAM,
         .stream = srv_watch_start,
         .service = &ember__v1__instance_service__descriptor,
         .method = "WatchInstances"},
    {.path = "/ember.v1.InstanceService/StreamConsole",
     .kind = SRV_SERVER_STREAM,
     .stream = srv_console_start,
     .service = &ember__v1__instance_service__descriptor,
     .method = "StreamConsole"},
    {.path = "/ember.v1.ImageService/PullImage",
     .kind = SRV_SERVER_STREAM,
     .stream = srv_image_pull_start,
     .service = &ember__v1__image_service__descriptor,
     .method = "PullImage"},
    {.path = "/ember.v1.ImageService/ImportImage",
     .kind = SRV_BIDI,
     .stream = srv_image_import_start,
     .service = &ember__v1__image_service__descriptor,
     .method = "ImportImage"},
    /* The guest agent RPCs (exec.c, copy.c). CopyToInstance is a client
     * stream: it uses the SRV_BIDI machinery like ImportImage. */
    {.path = "/ember.v1.InstanceService/ExecInstance",
     .kind = SRV_BIDI,
     .stream = srv_exec_start,
     .service = &ember__v1__instance_service__descriptor,
     .method = "ExecInstance",
     .mutates = true},
    {.path = "/ember.v1.InstanceService/CopyToInstance",
     .kind = SRV_BIDI,
     .stream = srv_copy_to_start,
     .service = &ember__v1__instance_service__descriptor,
     .method = "CopyToInstance",
     .mutates = true},
    {.path = "/ember.v1.InstanceService/CopyFromInstance",
     .kind = SRV_SERVER_STREAM,
     .stream = srv_copy_from_start,
     .service = &ember__v1__instance_service__descriptor,
     .method = "CopyFromInstance"},
    {.path = "/grpc.health.v1.Health/Check",
     .kind = SRV_UNARY,
     .unary = srv_unary_health_check,
     .request = &grpc__health__v1__health_check_request__descriptor},
    {.path = "/grpc.health.v1.Health/Watch",
     .kind = SRV_SERVER_STREAM,
     .stream = srv_health_watch_start,
     .request = &grpc__health__v1__health_check_request__descriptor},
    {.path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     .kind = SRV_BIDI,
     .stream = srv_reflection_start,
     .request = &grpc__reflection__v1__server_reflection_request__descriptor},
    {.path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     .kind = SRV_BIDI,
     .stream = srv_reflection_start,
     .request = &grpc__reflection__v1alpha__server_reflection_request__descriptor},
};
const size_t srv_n_methods = sizeof(srv_methods) / sizeof(srv_methods[0]);

/* Requests kept posted per registered method. */
#define SRV_POSTED_PER_METHOD 2

int64_t srv_now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- packing ---- */

int srv_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = cmn_malloc(n + 1);
  protobuf_c_message_pack(m, buf);
  *out = buf;
  *len = n;
  return 0;
}

grpc_byte_buffer *srv_pack_bb(const ProtobufCMessage *m)
{
  size_t n = protobuf_c_message_get_packed_size(m);
  grpc_slice sl = grpc_slice_malloc(n);
  protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

void *srv_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                 cmn_error *err)
{
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, req);
  if (m == NULL)
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot decode the request as %s", d->name);
  return m;
}

void srv_pbmsg_freep(void *p)
{
  ProtobufCMessage **m = p;
  if (*m != NULL)
    protobuf_c_message_free_unpacked(*m, NULL);
}

int srv_page_size(int32_t page_size, size_t dflt, size_t max, size_t *out, cmn_error *err)
{
  if (page_size < 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "page_size must not be negative (got %d)",
                (int)page_size);
    return cmn_err_field(err, "page_size");
  }
  *out = page_size == 0 ? dflt : (size_t)page_size > max ? max : (size_t)page_size;
  return 0;
}

static grpc_byte_buffer *srv__bb_from(uint8_t *data, size_t len)
{
  grpc_slice sl = grpc_slice_from_copied_buffer((const char *)data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

uint8_t *srv_bb_flatten(grpc_byte_buffer *bb, size_t *len)
{
  *len = 0;
  if (bb == NULL)
    return cmn_malloc(1);
  grpc_byte_buffer_reader rd;
  if (!grpc_byte_buffer_reader_init(&rd, bb))
    return NULL;
  grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  size_t n = GRPC_SLICE_LENGTH(sl);
  uint8_t *out = cmn_malloc(n + 1);
  memcpy(out, GRPC_SLICE_START_PTR(sl), n);
  grpc_slice_unref(sl);
  *len = n;
  return out;
}

const ProtobufCMessageDescriptor *srv_method_request(const srv_method *m)
{
  if (m->service == NULL)
    return m->request;
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(m->service, m->method);
  return md != NULL ? md->input : NULL;
}

int srv_methods_check(cmn_error *err)
{
  for (size_t i = 0; i < srv_n_methods; i++) {
    const srv_method *m = &srv_methods[i];
    if (m->service == NULL)
      continue;
    if (srv_method_request(m) == NULL)
      return cmn_err_set(err, CMN_INTERNAL, "method table: %s has no method %s", m->service->name,
                         m->method);
    cleanup_free char *path = cmn_asprintf("/%s/%s", m->service->name, m->method);
    if (strcmp(path, m->path) != 0)
      return cmn_err_set(err, CMN_INTERNAL, "method table: path %s is not %s", m->path, path);
  }
  return 0;
}

int srv_request_check(const srv_method *m, const uint8_t *req, size_t len, cmn_error *err)
{
  const ProtobufCMessageDescriptor *d = m != NULL ? srv_method_request(m) : NULL;
  if (d == NULL)
    return 0;
  return srv_wire_check(d, req, len, err);
}

/* ---- calls ---- */

/* gRPC hands our tags between threads through the completion queue, which
 * ThreadSanitizer cannot see (libgrpc is not instrumented): mark the hand-off. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SRV_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(SRV_TSAN)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define SRV_TSAN_RELEASE(p) __tsan_release(p)
#define SRV_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define SRV_TSAN_RELEASE(p) ((void)(p))
#define SRV_TSAN_ACQUIRE(p) ((void)(p))
#endif
static void srv__on_request(srv_call *c, bool ok);
static void srv__on_close(srv_call *c, bool ok);
static void srv__on_send(srv_call *c, bool ok);
static size_t srv__queue_free_locked(srv_call *c);

static srv_call *srv__call_new(srv_server *s, int idx)
{
  srv_call *c = cmn_calloc(1, sizeof(*c));
  c->srv = s;
  c->method_index = idx;
  c->method = idx >= 0 ? &srv_methods[idx] : NULL;
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->room_cv, &ca);
  pthread_condattr_destroy(&ca);
  grpc_metadata_array_init(&c->req_md);
  grpc_call_details_init(&c->details);
  c->t_request = (srv_tag){srv__on_request, c};
  c->t_close = (srv_tag){srv__on_close, c};
  c->t_send = (srv_tag){srv__on_send, c};
  c->t_recv = (srv_tag){NULL, c};
  pthread_mutex_lock(&s->mu);
  s->live_calls++;
  pthread_mutex_unlock(&s->mu);
  return c;
}

void srv_call_ref(srv_call *c) { atomic_fetch_add(&c->refs, 1); }

void srv_call_unref(srv_call *c)
{
  if (atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  srv_server *s = c->srv;
  if (c->call != NULL)
    grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->req_md);
  grpc_call_details_destroy(&c->details);
  if (c->payload != NULL)
    grpc_byte_buffer_destroy(c->payload);
  free(c->req);
  if (c->recv_buf != NULL)
    grpc_byte_buffer_destroy(c->recv_buf);
  if (c->send_buf != NULL)
    grpc_byte_buffer_destroy(c->send_buf);
  srv__queue_free_locked(c); /* normally emptied by srv__on_close already */
  if (c->has_status_details)
    grpc_slice_unref(c->status_details);
  if (c->has_status_md) {
    grpc_slice_unref(c->status_md.key);
    grpc_slice_unref(c->status_md.value);
  }
  if (c->priv_free != NULL)
    c->priv_free(c->priv);
  free(c->final_msg);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->room_cv);
  free(c);
  pthread_mutex_lock(&s->mu);
  s->live_calls--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

bool srv_call_batch_locked(srv_call *c, const grpc_op *ops, size_t n, srv_tag *tag)
{
  srv_call_ref(c);
  SRV_TSAN_RELEASE(tag);
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) {
    cmn_warn(NULL, "rpc", "grpc_call_start_batch failed (%d) for %s", (int)e,
             c->method ? c->method->path : "unknown method");
    atomic_fetch_sub(&c->refs, 1); /* the caller still holds one */
    return false;
  }
  return true;
}

static const char *srv__call_path(const srv_call *c)
{
  return c->method ? c->method->path : "(unregistered)";
}

/* Starts the next send of a stream, if none is in flight: the next queued
 * message (with the status too when it is the last one and the stream ends),
 * or the final status. Caller holds c->mu. */
static void srv__kick_locked(srv_call *c)
{
  if (c->sending || c->status_sent)
    return;
  if (c->closed) {
    /* The client is gone: nothing more will be delivered. */
    c->finishing = false;
    return;
  }
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof(ops));
  srv_msg *m = c->q_head;
  if (m == NULL && !c->finishing)
    return;
  if (!c->sent_initial_md) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = 0;
    n++;
    c->sent_initial_md = true;
  }
  if (m != NULL) {
    c->q_head = m->next;
    if (c->q_head == NULL)
      c->q_tail = NULL;
    c->q_count--;
    c->q_bytes -= m->len;
    if (m->buf != NULL) {
      c->send_buf = m->buf;
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n].data.send_message.send_message = c->send_buf;
      n++;
    }
    free(m);
  }
  if (c->finishing && c->q_head == NULL) {
    c->status_details = grpc_slice_from_copied_string(c->final_msg ? c->final_msg : "");
    c->has_status_details = true;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->has_status_md ? 1 : 0;
    ops[n].data.send_status_from_server.trailing_metadata = c->has_status_md ? &c->status_md : NULL;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->final_code;
    ops[n].data.send_status_from_server.status_details =
        c->final_code != 0 ? &c->status_details : NULL;
    n++;
    c->status_sent = true;
    srv_metrics_rpc_done_locked(c, c->final_code);
    cmn_debug(NULL, "rpc", "method=%s status=%s duration_us=%lld%s%s", srv__call_path(c),
              cmn_code_name(c->final_code), (long long)(srv_now_us() - c->start_us),
              c->final_code != 0 ? " detail=" : "",
              c->final_code != 0 && c->final_msg ? c->final_msg : "");
  }
  if (n == 0)
    return;
  c->sending = true;
  if (!srv_call_batch_locked(c, ops, n, &c->t_send)) {
    c->sending = false;
    if (c->send_buf != NULL) {
      grpc_byte_buffer_destroy(c->send_buf);
      c->send_buf = NULL;
    }
  }
}

/* Frees the queued messages of c; returns the bytes freed. */
static size_t srv__queue_free_locked(srv_call *c)
{
  size_t bytes = c->q_bytes;
  for (srv_msg *m = c->q_head, *n; m != NULL; m = n) {
    n = m->next;
    if (m->buf != NULL)
      grpc_byte_buffer_destroy(m->buf);
    free(m);
  }
  c->q_head = c->q_tail = NULL;
  c->q_count = 0;
  c->q_bytes = 0;
  return bytes;
}

/* The client of stream c does not take its messages: end the call now with
 * RESOURCE_EXHAUSTED and free what waits for it. A status queued behind the
 * messages could not pass a send blocked by flow control; cancelling with a
 * status sends it as trailers (not flow controlled) and completes the blocked
 * send, and RECV_CLOSE then releases the stream's subscription. */
static void srv__stream_overflow_locked(srv_call *c, size_t dropped)
{
  char *msg;
  if (c->stream_kind == SRV_STREAM_WATCH)
    msg =
        cmn_asprintf("watch fell behind: %zu events not delivered; list and watch again", dropped);
  else
    msg =
        cmn_asprintf("the client does not read its responses: %zu messages not delivered", dropped);
  size_t freed = srv__queue_free_locked(c);
  c->finishing = true;
  c->status_sent = true; /* nothing more is started on this call */
  c->final_code = CMN_RESOURCE_EXHAUSTED;
  free(c->final_msg);
  c->final_msg = msg;
  srv_metrics_rpc_done_locked(c, CMN_RESOURCE_EXHAUSTED);
  cmn_info(NULL, "rpc", "method=%s status=RESOURCE_EXHAUSTED detail=%s (%zu queued bytes freed)",
           srv__call_path(c), msg, freed);
  grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
  /* The trim itself waits for srv__on_close, which follows the cancel and
   * runs without locks (this may run inside the manager's event fan-out). */
  atomic_fetch_add(&c->srv->queue_freed, freed);
}

/* Gives freed heap pages back once enough queue data was freed. No lock held. */
static void srv__maybe_trim(srv_server *s)
{
  if (atomic_load(&s->queue_freed) < SRV_TRIM_AFTER_BYTES)
    return;
  size_t freed = atomic_exchange(&s->queue_freed, 0);
  if (freed >= SRV_TRIM_AFTER_BYTES)
    malloc_trim(0);
}

void srv_stream_push_locked(srv_call *c, grpc_byte_buffer *msg)
{
  if (c->closed || c->status_sent || c->finishing) {
    if (msg != NULL)
      grpc_byte_buffer_destroy(msg);
    return;
  }
  size_t len = msg != NULL ? grpc_byte_buffer_length(msg) : 0;
  const srv_options *o = &c->srv->opts;
  size_t max_msgs = o->stream_queue_messages ? o->stream_queue_messages : SRV_STREAM_QUEUE_MESSAGES;
  size_t max_bytes = o->stream_queue_bytes ? o->stream_queue_bytes : SRV_STREAM_QUEUE_BYTES;
  /* A unary call queues its one response; a stream's first message always
   * fits, however large. */
  bool stream = c->method != NULL && c->method->kind != SRV_UNARY;
  if (stream && c->q_count > 0 && (c->q_count >= max_msgs || c->q_bytes + len > max_bytes)) {
    if (msg != NULL)
      grpc_byte_buffer_destroy(msg);
    srv__stream_overflow_locked(c, c->q_count + 1);
    return;
  }
  srv_msg *m = cmn_calloc(1, sizeof(*m));
  m->buf = msg;
  m->len = len;
  c->q_count++;
  c->q_bytes += len;
  if (c->q_tail != NULL)
    c->q_tail->next = m;
  else
    c->q_head = m;
  c->q_tail = m;
  srv__kick_locked(c);
}

void srv_stream_end_locked(srv_call *c, int code, const char *detail)
{
  if (c->finishing || c->status_sent)
    return;
  c->finishing = true;
  c->final_code = code;
  c->final_msg = cmn_strdup(detail ? detail : "");
  pthread_cond_broadcast(&c->room_cv);
  srv__kick_locked(c);
}

/* Waits in slices of at most 100 ms: a call ended by shutdown or overflow
 * is seen even if no broadcast reaches the waiter. */
int srv_stream_wait_room(srv_call *c, size_t max_bytes, size_t max_msgs, int64_t deadline_us)
{
  pthread_mutex_lock(&c->mu);
  int r;
  for (;;) {
    if (c->closed || c->finishing || c->status_sent) {
      r = -1;
      break;
    }
    if (c->q_bytes < max_bytes && c->q_count < max_msgs) {
      r = 1;
      break;
    }
    int64_t now = srv_now_us();
    if (deadline_us > 0 && now >= deadline_us) {
      r = 0;
      break;
    }
    int64_t until = now + 100000;
    if (deadline_us > 0 && deadline_us < until)
      until = deadline_us;
    struct timespec ts = {.tv_sec = until / 1000000, .tv_nsec = (long)(until % 1000000) * 1000};
    pthread_cond_timedwait(&c->room_cv, &c->mu, &ts);
  }
  pthread_mutex_unlock(&c->mu);
  return r;
}

void srv_call_finish(srv_call *c, grpc_byte_buffer *msg, int code, const char *detail)
{
  pthread_mutex_lock(&c->mu);
  if (msg != NULL)
    srv_stream_push_locked(c, msg);
  srv_stream_end_locked(c, code, detail);
  if (c->closed && !c->status_sent) {
    srv_metrics_rpc_done_locked(c, code);
    cmn_debug(NULL, "rpc", "method=%s status=%s duration_us=%lld (client gone, response dropped)",
              srv__call_path(c), cmn_code_name(code), (long long)(srv_now_us() - c->start_us));
  }
  pthread_mutex_unlock(&c->mu);
}

void srv_call_finish_error(srv_call *c, const cmn_error *err)
{
  int code = err->code != CMN_OK ? err->code : CMN_INTERNAL;
  const char *msg = err->msg[0] ? err->msg : cmn_code_name(code);
  uint8_t *bin = NULL;
  size_t len = 0;
  if (srv_status_details(err, code, msg, &bin, &len)) {
    pthread_mutex_lock(&c->mu);
    if (!c->has_status_md) {
      c->status_md.key = grpc_slice_from_static_string("grpc-status-details-bin");
      c->status_md.value = grpc_slice_from_copied_buffer((const char *)bin, len);
      c->has_status_md = true;
    }
    pthread_mutex_unlock(&c->mu);
    free(bin);
  }
  srv_call_finish(c, NULL, code, msg);
}

static void srv__on_send(srv_call *c, bool ok)
{
  pthread_mutex_lock(&c->mu);
  c->sending = false;
  if (c->send_buf != NULL) {
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
  }
  if (ok)
    srv__kick_locked(c);
  pthread_cond_broadcast(&c->room_cv);
  pthread_mutex_unlock(&c->mu);
  srv_call_unref(c);
}

void srv_stream_register(srv_call *c, int kind)
{
  srv_server *s = c->srv;
  pthread_mutex_lock(&s->mu);
  bool down = s->shutting_down;
  if (!down && c->stream_kind == SRV_STREAM_NONE) {
    srv_call_ref(c); /* held while listed */
    c->stream_kind = kind;
    c->stream_prev = NULL;
    c->stream_next = s->streams;
    if (s->streams != NULL)
      s->streams->stream_prev = c;
    s->streams = c;
  }
  pthread_mutex_unlock(&s->mu);
  if (down) {
    pthread_mutex_lock(&c->mu);
    srv_stream_end_locked(c, CMN_UNAVAILABLE, "emberd is shutting down");
    pthread_mutex_unlock(&c->mu);
  }
}

static void srv__stream_unregister(srv_call *c)
{
  srv_server *s = c->srv;
  bool listed = false;
  pthread_mutex_lock(&s->mu);
  if (c->stream_kind != SRV_STREAM_NONE) {
    listed = true;
    if (c->stream_prev != NULL)
      c->stream_prev->stream_next = c->stream_next;
    else
      s->streams = c->stream_next;
    if (c->stream_next != NULL)
      c->stream_next->stream_prev = c->stream_prev;
    c->stream_kind = SRV_STREAM_NONE;
  }
  pthread_mutex_unlock(&s->mu);
  if (listed)
    srv_call_unref(c);
}

static void srv__on_close(srv_call *c, bool ok)
{
  srv_server *s = c->srv;
  pthread_mutex_lock(&c->mu);
  c->closed = true;
  pthread_cond_broadcast(&c->room_cv);
  /* Nothing queued will be delivered any more: free it now, not when the
   * last reference goes. */
  atomic_fetch_add(&s->queue_freed, srv__queue_free_locked(c));
  void (*hook)(srv_call *) = c->on_close;
  c->on_close = NULL;
  bool early = !c->status_sent;
  if (early && c->cancelled)
    srv_metrics_rpc_done_locked(c, CMN_CANCELLED);
  pthread_mutex_unlock(&c->mu);
  if (early && c->cancelled)
    cmn_debug(NULL, "rpc", "method=%s cancelled by the client or its deadline after %lld us",
              srv__call_path(c), (long long)(srv_now_us() - c->start_us));
  if (hook != NULL)
    hook(c);
  srv__stream_unregister(c);
  srv_call_unref(c);
  srv__maybe_trim(s);
}

/* ---- dispatch ---- */

typedef struct srv__slow_arg {
  srv_call *c;
} srv__slow_arg;

static void srv__run_unary(srv_call *c)
{
  const uint8_t *req = c->req; /* checked by srv__on_request */
  size_t len = c->req_len;
  cleanup_free uint8_t *resp = NULL;
  size_t resp_len = 0;
  cmn_error err = {0};
  int r;
  srv_op_probe probe;
  srv_metrics_unary_begin(c, req, &probe);
  int64_t t0 = srv_now_us();
  r = c->method->unary(c->srv, &probe, req, len, &resp, &resp_len, &err);
  srv_metrics_unary_end(c, &probe, r < 0 ? (err.code != CMN_OK ? err.code : CMN_INTERNAL) : 0,
                        srv_now_us() - t0);
  /* The one place where an error becomes a gRPC status: cmn codes are gRPC codes. */
  if (r < 0) {
    srv_call_finish_error(c, &err);
  } else {
    srv_call_finish(c, srv__bb_from(resp, resp_len), 0, NULL);
  }
}

void srv_call_spawn(srv_call *c, void *(*fn)(void *))
{
  srv_server *s = c->srv;
  srv_call_ref(c);
  pthread_mutex_lock(&s->mu);
  s->slow_threads++;
  pthread_mutex_unlock(&s->mu);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t th;
  int e = pthread_create(&th, &attr, fn, c);
  pthread_attr_destroy(&attr);
  if (e != 0) {
    cmn_warn(NULL, "rpc", "cannot start a thread for %s (%s); running it on this thread",
             c->method->path, cmn_strerror(e));
    fn(c);
  }
}

void srv_call_thread_done(srv_call *c)
{
  srv_server *s = c->srv;
  srv_call_unref(c);
  pthread_mutex_lock(&s->mu);
  s->slow_threads--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void *srv__slow_main(void *arg)
{
  srv_call *c = arg;
  srv__run_unary(c);
  srv_call_thread_done(c);
  return NULL;
}

static void srv__post(srv_server *s, int idx);

static void srv__on_request(srv_call *c, bool ok)
{
  srv_server *s = c->srv;
  if (!ok) {
    /* Only at shutdown: the posted request is given back. */
    srv_call_unref(c);
    return;
  }
  c->start_us = srv_now_us();
  pthread_mutex_lock(&s->mu);
  bool down = s->shutting_down;
  pthread_mutex_unlock(&s->mu);
  if (!down)
    srv__post(s, c->method_index);

  grpc_op close_op;
  memset(&close_op, 0, sizeof(close_op));
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &c->cancelled;
  pthread_mutex_lock(&c->mu);
  srv_call_batch_locked(c, &close_op, 1, &c->t_close);
  pthread_mutex_unlock(&c->mu);

  cmn_error err = {0};
  if (c->method != NULL && c->method->kind != SRV_BIDI) {
    c->req = srv_bb_flatten(c->payload, &c->req_len);
    if (c->req == NULL)
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "cannot read the request message");
    else
      srv_request_check(c->method, c->req, c->req_len, &err);
  }
  if (err.code != CMN_OK) {
    cmn_debug(NULL, "rpc", "method=%s refused before decoding: %s", c->method->path, err.msg);
    srv_call_finish(c, NULL, err.code, err.msg);
  } else if (c->method == NULL) {
    char *path = grpc_slice_to_c_string(c->details.method);
    char *msg = cmn_asprintf("unknown method %s", path);
    gpr_free(path);
    srv_call_finish(c, NULL, CMN_UNIMPLEMENTED, msg);
    free(msg);
  } else if (c->method->kind == SRV_UNARY && c->method->slow) {
    srv_call_spawn(c, srv__slow_main);
  } else if (c->method->kind == SRV_UNARY) {
    srv__run_unary(c);
  } else {
    c->method->stream(c);
  }
  srv_call_unref(c);
}

static void srv__post(srv_server *s, int idx)
{
  srv_call *c = srv__call_new(s, idx);
  grpc_call_error e;
  if (idx < 0) {
    SRV_TSAN_RELEASE(&c->t_request);
    e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md, s->cq, s->cq,
                                 &c->t_request);
  } else {
    grpc_byte_buffer **payload = srv_methods[idx].kind == SRV_BIDI ? NULL : &c->payload;
    SRV_TSAN_RELEASE(&c->t_request);
    e = grpc_server_request_registered_call(s->server, s->registered[idx], &c->call, &c->deadline,
                                            &c->req_md, payload, s->cq, s->cq, &c->t_request);
  }
  if (e != GRPC_CALL_OK) {
    cmn_warn(NULL, "rpc", "cannot post a call request (%d)", (int)e);
    srv_call_unref(c);
  }
}

static void *srv__worker(void *arg)
{
  srv_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type != GRPC_OP_COMPLETE)
      continue;
    srv_tag *t = ev.tag;
    SRV_TSAN_ACQUIRE(t);
    if (t == &s->t_shutdown) {
      pthread_mutex_lock(&s->mu);
      s->shutdown_done = true;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      continue;
    }
    t->fn(t->call, ev.success != 0);
  }
  return NULL;
}

/* ---- listening ---- */

static bool srv__is_unix(const char *listen) { return strncmp(listen, "unix:", 5) == 0; }

int srv_listen_precheck(const srv_options *o, cmn_error *err)
{
  if (o->listen == NULL || o->listen[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "empty listen address");
  bool tls = o->tls_cert != NULL || o->tls_key != NULL || o->tls_client_ca != NULL;
  if (!srv__is_unix(o->listen)) {
    if (tls && (o->tls_cert == NULL || o->tls_key == NULL))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--tls-cert and --tls-key go together");
    if (!tls && !o->insecure_tcp)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "listening on TCP %s needs --tls-cert and --tls-key (or --insecure-tcp "
                         "for plaintext, which anyone who can reach the port may use)",
                         o->listen);
    if (tls && o->insecure_tcp)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "--insecure-tcp and --tls-* exclude each other");
    return 0;
  }
  if (tls)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "TLS options apply to TCP listen addresses, not to %s (access to a "
                       "unix socket is controlled by its file mode)",
                       o->listen);
  const char *path = o->listen + 5;
  struct sockaddr_un sa;
  if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "unix socket path '%s' is empty or longer than %zu bytes", path,
                       sizeof(sa.sun_path) - 1);
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "cannot inspect %s", path);
  }
  if (!S_ISSOCK(st.st_mode))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "%s exists and is not a socket; refusing to replace it", path);
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "socket");
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "another emberd is already serving on %s; stop it first", path);
  if (errno != ECONNREFUSED)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "cannot probe socket %s", path);
  if (unlink(path) < 0 && errno != ENOENT)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "cannot remove stale socket %s",
                         path);
  cmn_info(NULL, "listen", "removed stale socket %s", path);
  return 0;
}

static grpc_server_credentials *srv__credentials(const srv_options *o, cmn_error *err)
{
  if (o->tls_cert == NULL)
    return grpc_insecure_server_credentials_create();
  cleanup_free char *cert = NULL, *key = NULL, *ca = NULL;
  size_t len;
  if (cmn_file_read(o->tls_cert, 1 << 20, &cert, &len, err) < 0)
    return cmn_err_prefix(err, "--tls-cert"), NULL;
  if (cmn_file_read(o->tls_key, 1 << 20, &key, &len, err) < 0)
    return cmn_err_prefix(err, "--tls-key"), NULL;
  if (o->tls_client_ca != NULL && cmn_file_read(o->tls_client_ca, 1 << 20, &ca, &len, err) < 0)
    return cmn_err_prefix(err, "--tls-client-ca"), NULL;
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  grpc_server_credentials *cr = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1,
      ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                 : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
  if (cr == NULL)
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot build TLS credentials from %s and %s",
                o->tls_cert, o->tls_key);
  return cr;
}

srv_server *srv_server_create(const srv_options *opts, agent_manager *mgr, cmn_error *err)
{
  if (opts->workers < 1)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "workers must be >= 1"), NULL;
  if (opts->max_message_bytes < 1024 || opts->max_message_bytes > INT32_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "max message size out of range"), NULL;
  if (srv_methods_check(err) < 0) /* a table row the proto does not have */
    return NULL;
  srv_server *s = cmn_calloc(1, sizeof(*s));
  s->opts = *opts;
  s->mgr = mgr;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->t_shutdown = (srv_tag){NULL, NULL};
  s->serving = true;

  s->refl = srv_reflection_create(err);
  if (s->refl == NULL)
    goto fail_refl;
  srv_watch_hub_init(s);

  grpc_arg args[2];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = (int)opts->max_message_bytes;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
  args[1].value.integer = 0;
  grpc_channel_args cargs = {.num_args = 2, .args = args};
  s->server = grpc_server_create(&cargs, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  s->registered = cmn_calloc(srv_n_methods, sizeof(void *));
  for (size_t i = 0; i < srv_n_methods; i++) {
    s->registered[i] = grpc_server_register_method(s->server, srv_methods[i].path, NULL,
                                                   srv_methods[i].kind == SRV_BIDI
                                                       ? GRPC_SRM_PAYLOAD_NONE
                                                       : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                                   0);
    if (s->registered[i] == NULL) {
      cmn_err_set(err, CMN_INTERNAL, "cannot register method %s", srv_methods[i].path);
      goto fail_server;
    }
  }

  grpc_server_credentials *creds = srv__credentials(opts, err);
  if (creds == NULL)
    goto fail_server;
  int port = grpc_server_add_http2_port(s->server, opts->listen, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "cannot listen on %s: the address is in use (another emberd?), invalid, or "
                "not permitted",
                opts->listen);
    goto fail_server;
  }
  grpc_server_start(s->server);
  if (srv__is_unix(opts->listen)) {
    s->unix_path = cmn_strdup(opts->listen + 5);
    if (chmod(s->unix_path, 0660) < 0)
      cmn_warn(NULL, "listen", "cannot chmod 0660 %s: %s", s->unix_path, cmn_strerror(errno));
  }
  if (!srv__is_unix(opts->listen) && opts->tls_cert == NULL)
    cmn_warn(NULL, "listen",
             "serving PLAINTEXT gRPC on %s (--insecure-tcp): anyone who can reach it controls "
             "the VMs of this host",
             opts->listen);

  for (size_t i = 0; i < srv_n_methods; i++)
    for (int k = 0; k < SRV_POSTED_PER_METHOD; k++)
      srv__post(s, (int)i);
  srv__post(s, -1);

  s->workers = cmn_calloc((size_t)opts->workers, sizeof(pthread_t));
  for (int i = 0; i < opts->workers; i++) {
    if (pthread_create(&s->workers[i], NULL, srv__worker, s) != 0) {
      cmn_err_set(err, CMN_INTERNAL, "cannot start worker thread %d", i);
      break;
    }
    s->n_workers++;
  }
  if (s->n_workers == 0) {
    srv_server_free(s);
    return NULL;
  }
  cmn_info(NULL, "listen", "serving on %s with %d workers%s", opts->listen, s->n_workers,
           opts->tls_cert ? (opts->tls_client_ca ? " (mTLS)" : " (TLS)") : "");
  return s;

fail_server:
  /* Not started and no listener added: destroy needs no shutdown. */
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy(s->cq);
  free(s->registered);
  srv_reflection_free(s->refl);
  srv_watch_hub_fini(s);
  pthread_mutex_destroy(&s->watch_mu);
fail_refl:
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
  return NULL;
}

void srv_server_begin_shutdown(srv_server *s)
{
  pthread_mutex_lock(&s->mu);
  if (s->shutting_down) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->shutting_down = true;
  s->serving = false;
  srv_health_broadcast_locked(s);
  for (srv_call *c = s->streams; c != NULL; c = c->stream_next) {
    pthread_mutex_lock(&c->mu);
    srv_stream_end_locked(c, CMN_UNAVAILABLE, "emberd is shutting down");
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_unlock(&s->mu);
  cmn_info(NULL, "shutdown", "health NOT_SERVING; no new calls; waiting for calls in flight");
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
}

bool srv_server_wait(srv_server *s, int timeout_ms)
{
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&s->mu);
  while (!s->shutdown_done) {
    /* Every call of ours has finished (posted requests are given back at
     * shutdown), yet the core still waits on client connections (GOAWAY);
     * nothing is left to cancel, so release them now. */
    if (s->shutting_down && s->live_calls == 0 && s->slow_threads == 0 && !s->idle_cancelled) {
      s->idle_cancelled = true;
      pthread_mutex_unlock(&s->mu);
      grpc_server_cancel_all_calls(s->server);
      pthread_mutex_lock(&s->mu);
      continue;
    }
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
      break;
  }
  bool done = s->shutdown_done;
  pthread_mutex_unlock(&s->mu);
  return done;
}

void srv_server_cancel_all(srv_server *s)
{
  cmn_warn(NULL, "shutdown", "cancelling the calls still in flight");
  grpc_server_cancel_all_calls(s->server);
}

void srv_server_free(srv_server *s)
{
  if (s == NULL)
    return;
  srv_server_begin_shutdown(s);
  if (!srv_server_wait(s, 0)) {
    srv_server_cancel_all(s);
    srv_server_wait(s, 60000);
  }
  /* The shutdown tag has fired, so no call is in flight for the core; batches
   * of finished calls may still wait on a client that stopped reading:
   * cancelling releases them now instead of at the transport's own timeout. */
  grpc_server_cancel_all_calls(s->server);
  /* No more events; watchers still listed are released. */
  srv_watch_hub_fini(s);
  /* Lifecycle operations run to their end; their calls hold references. */
  pthread_mutex_lock(&s->mu);
  if (s->slow_threads > 0)
    cmn_info(NULL, "shutdown", "waiting for %d lifecycle operation(s) to finish", s->slow_threads);
  cmn_debug(NULL, "shutdown", "server shut down; %d call object(s) still referenced",
            s->live_calls);
  while (s->slow_threads > 0 || s->live_calls > 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT && s->slow_threads == 0) {
      cmn_warn(NULL, "shutdown", "%d call(s) still referenced after 5 s; leaving them",
               s->live_calls);
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  cmn_debug(NULL, "shutdown", "all calls done; stopping the workers");
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  for (int i = 0; i < s->n_workers; i++)
    pthread_join(s->workers[i], NULL);
  grpc_completion_queue_destroy(s->cq);
  if (s->unix_path != NULL) {
    struct stat st;
    if (lstat(s->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
      unlink(s->unix_path);
    free(s->unix_path);
  }
  srv_reflection_free(s->refl);
  free(s->registered);
  free(s->workers);
  pthread_mutex_destroy(&s->watch_mu);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}
