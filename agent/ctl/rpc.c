/* rpc.c: unary and server-streaming calls on the gRPC core client API.
 *
 * Each call: a pluck completion queue of its own, grpc_channel_create_call with
 * the deadline, batches started with grpc_call_start_batch and plucked by tag.
 * Plucking uses short waits so that a pending SIGINT/SIGTERM (blocked by
 * main() in every thread) is noticed and turned into grpc_call_cancel; the
 * call is always driven to its status before the queue is destroyed. */
#include "agent/ctl/rpc.h"

#include "common/mem.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often a blocked pluck wakes up to look for a pending signal. */
#define CTL_RPC_POLL_MS 100

/* Tags: distinct addresses, compared only. */
static const char ctl__tag_start = 0, ctl__tag_status = 0, ctl__tag_msg = 0;
#define CTL_TAG(t) ((void *)&(t))

int ctl_rpc_open(ctl_rpc *rpc, const char *target, int64_t timeout_ms, cmn_error *err)
{
  memset(rpc, 0, sizeof(*rpc));
  sigemptyset(&rpc->interrupt);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_arg args[1];
  /* Keep error messages short and the client light: no retries of failed
   * RPCs behind the user's back (lifecycle calls are idempotent, but the user
   * decides). */
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_ENABLE_RETRIES;
  args[0].value.integer = 0;
  grpc_channel_args chargs = {.num_args = 1, .args = args};
  rpc->channel = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  if (rpc->channel == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "cannot create a channel to '%s'", target);
  rpc->target = target;
  rpc->timeout_ms = timeout_ms;
  return 0;
}

void ctl_rpc_close(ctl_rpc *rpc)
{
  if (rpc->channel != NULL)
    grpc_channel_destroy(rpc->channel);
  rpc->channel = NULL;
}

static gpr_timespec ctl__deadline(int64_t timeout_ms)
{
  if (timeout_ms <= 0)
    return gpr_inf_future(GPR_CLOCK_REALTIME);
  return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* True once a signal of the set is pending; consumes it. */
static bool ctl__interrupted(const sigset_t *set)
{
  sigset_t pending;
  if (sigpending(&pending) != 0)
    return false;
  for (int s = 1; s < NSIG; s++) {
    if (sigismember(set, s) == 1 && sigismember(&pending, s) == 1) {
      struct timespec zero = {0, 0};
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, s);
      (void)sigtimedwait(&one, NULL, &zero);
      return true;
    }
  }
  return false;
}

/* Waits for tag. When a signal arrives and *cancelled is not yet set, cancels
 * the call and keeps waiting: the batch always completes after a cancel. */
static bool ctl__pluck(ctl_rpc *rpc, grpc_completion_queue *cq, grpc_call *call, void *tag,
                       bool *cancelled)
{
  for (;;) {
    /* Checked on every pass, not only when nothing arrived: a stream that
     * never pauses (a chatty console) must still end on Ctrl-C. */
    if (!*cancelled && ctl__interrupted(&rpc->interrupt)) {
      *cancelled = true;
      grpc_call_cancel(call, NULL);
    }
    gpr_timespec wake = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(CTL_RPC_POLL_MS, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, wake, NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      return ev.success != 0;
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      return false;
  }
}

static void ctl__cq_destroy(grpc_completion_queue *cq)
{
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy(cq);
}

static grpc_byte_buffer *ctl__pack(const ProtobufCMessage *req)
{
  size_t len = protobuf_c_message_get_packed_size(req);
  uint8_t *buf = cmn_malloc(len > 0 ? len : 1);
  protobuf_c_message_pack(req, buf);
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
  free(buf);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

static ProtobufCMessage *ctl__unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return NULL;
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  ProtobufCMessage *m =
      protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  grpc_slice_unref(all);
  return m;
}

/* The receive side of a call's status. */
typedef struct ctl__status {
  grpc_metadata_array trailing;
  grpc_status_code code;
  grpc_slice details;
  const char *error_string;
} ctl__status;

static void ctl__status_init(ctl__status *st)
{
  memset(st, 0, sizeof(*st));
  grpc_metadata_array_init(&st->trailing);
  st->details = grpc_empty_slice();
}

static void ctl__status_fill_op(ctl__status *st, grpc_op *op)
{
  op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op->data.recv_status_on_client.trailing_metadata = &st->trailing;
  op->data.recv_status_on_client.status = &st->code;
  op->data.recv_status_on_client.status_details = &st->details;
  op->data.recv_status_on_client.error_string = &st->error_string;
}

/* Turns a non-OK status into err; returns -1. */
static int ctl__status_err(const ctl__status *st, const char *target, cmn_error *err)
{
  size_t n = GRPC_SLICE_LENGTH(st->details);
  const char *msg = (const char *)GRPC_SLICE_START_PTR(st->details);
  if (n == 0) {
    msg = "no details";
    n = strlen(msg);
  }
  if (st->code == GRPC_STATUS_UNAVAILABLE)
    return cmn_err_set(err, st->code, "%.*s (is emberd running at %s?)", (int)n, msg, target);
  return cmn_err_set(err, st->code, "%.*s", (int)n, msg);
}

static void ctl__status_destroy(ctl__status *st)
{
  grpc_metadata_array_destroy(&st->trailing);
  grpc_slice_unref(st->details);
  if (st->error_string != NULL)
    gpr_free((void *)st->error_string);
}

static grpc_call *ctl__call(ctl_rpc *rpc, grpc_completion_queue *cq, const char *method,
                            int64_t timeout_ms)
{
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(rpc->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m,
                                             NULL, ctl__deadline(timeout_ms), NULL);
  grpc_slice_unref(m);
  return call;
}

/* One call's plumbing, the same for every RPC kind: its pluck queue, the
 * call, and the headers and status it receives. */
typedef struct ctl__callctx {
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata_array initial;
  ctl__status st;
} ctl__callctx;

static void ctl__callctx_open(ctl_rpc *rpc, const char *method, ctl__callctx *k)
{
  k->cq = grpc_completion_queue_create_for_pluck(NULL);
  k->call = ctl__call(rpc, k->cq, method, rpc->timeout_ms);
  grpc_metadata_array_init(&k->initial);
  ctl__status_init(&k->st);
}

static void ctl__callctx_close(ctl__callctx *k)
{
  grpc_metadata_array_destroy(&k->initial);
  ctl__status_destroy(&k->st);
  grpc_call_unref(k->call);
  ctl__cq_destroy(k->cq);
}

/* The result of a call that ends with one response message, once its status
 * was received: 0 with *resp decoded from recv, else -1 with err saying why
 * (interrupted, the server's status, or no decodable response). */
static int ctl__unary_result(ctl_rpc *rpc, const char *method, bool cancelled,
                             const ctl__callctx *k, grpc_byte_buffer *recv,
                             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                             cmn_error *err)
{
  if (cancelled)
    return cmn_err_set(err, CMN_CANCELLED, "interrupted");
  if (k->st.code != GRPC_STATUS_OK)
    return ctl__status_err(&k->st, rpc->target, err);
  if (recv == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "%s: the server sent OK without a response message",
                       method);
  *resp = ctl__unpack(recv, resp_desc);
  if (*resp == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "%s: cannot decode the response as %s", method,
                       resp_desc->name);
  return 0;
}

int ctl_rpc_unary(ctl_rpc *rpc, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  cmn_error *err)
{
  *resp = NULL;
  ctl__callctx k;
  ctl__callctx_open(rpc, method, &k);
  grpc_byte_buffer *send = ctl__pack(req);
  grpc_byte_buffer *recv = NULL;

  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &k.initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ctl__status_fill_op(&k.st, &ops[5]);

  int ret = -1;
  bool cancelled = false;
  grpc_call_error ce = grpc_call_start_batch(k.call, ops, 6, CTL_TAG(ctl__tag_start), NULL);
  if (ce != GRPC_CALL_OK) {
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed (%d)", method, (int)ce);
    goto out;
  }
  (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_start), &cancelled);
  if (ctl__unary_result(rpc, method, cancelled, &k, recv, resp_desc, resp, err) < 0)
    goto out;
  ret = 0;
out:
  grpc_byte_buffer_destroy(send);
  if (recv != NULL)
    grpc_byte_buffer_destroy(recv);
  ctl__callctx_close(&k);
  return ret;
}

int ctl_rpc_stream(ctl_rpc *rpc, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, ctl_rpc_on_ready on_ready,
                   ctl_rpc_on_msg on_msg, void *opaque, cmn_error *err)
{
  ctl__callctx k;
  ctl__callctx_open(rpc, method, &k);
  grpc_byte_buffer *send = ctl__pack(req);
  int ret = -1;
  bool cancelled = false, stopped = false, status_started = false, bad_msg = false;

  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &k.initial;
  grpc_call_error ce = grpc_call_start_batch(k.call, ops, 4, CTL_TAG(ctl__tag_start), NULL);
  if (ce != GRPC_CALL_OK) {
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed (%d)", method, (int)ce);
    goto out;
  }
  /* The status batch is posted at once, so a failure ends every pending op. */
  memset(ops, 0, sizeof(ops));
  ctl__status_fill_op(&k.st, &ops[0]);
  ce = grpc_call_start_batch(k.call, ops, 1, CTL_TAG(ctl__tag_status), NULL);
  if (ce != GRPC_CALL_OK) {
    grpc_call_cancel(k.call, NULL);
    (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_start), &cancelled);
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed (%d)", method, (int)ce);
    goto out;
  }
  status_started = true;
  /* Headers received (success) means the server accepted the stream; a
   * failure here is reported by the status below. */
  if (ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_start), &cancelled) && !cancelled &&
      on_ready != NULL)
    on_ready(opaque);

  while (!cancelled && !stopped) {
    grpc_byte_buffer *recv = NULL;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &recv;
    if (grpc_call_start_batch(k.call, ops, 1, CTL_TAG(ctl__tag_msg), NULL) != GRPC_CALL_OK)
      break;
    (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_msg), &cancelled);
    if (recv == NULL)
      break; /* end of stream (or failure: the status says which) */
    ProtobufCMessage *m = ctl__unpack(recv, resp_desc);
    grpc_byte_buffer_destroy(recv);
    if (m == NULL) {
      grpc_call_cancel(k.call, NULL);
      stopped = bad_msg = true;
      cmn_err_set(err, CMN_INTERNAL, "%s: cannot decode a streamed %s", method, resp_desc->name);
      break;
    }
    bool more = on_msg(m, opaque);
    protobuf_c_message_free_unpacked(m, NULL);
    if (!more) {
      stopped = true;
      grpc_call_cancel(k.call, NULL);
    }
  }
  if (!cancelled && !stopped) {
    /* Ended by the server: its status is the result. */
    (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_status), &cancelled);
    status_started = false;
    if (cancelled)
      ret = 0;
    else if (k.st.code != GRPC_STATUS_OK)
      ctl__status_err(&k.st, rpc->target, err);
    else
      ret = 0;
  } else {
    ret = bad_msg ? -1 : 0;
  }
out:
  if (status_started) {
    bool ignored = true;
    grpc_call_cancel(k.call, NULL);
    (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_status), &ignored);
  }
  grpc_byte_buffer_destroy(send);
  ctl__callctx_close(&k);
  return ret;
}

int ctl_rpc_client_stream(ctl_rpc *rpc, const char *method, ctl_rpc_next_msg next, void *opaque,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                          cmn_error *err)
{
  *resp = NULL;
  ctl__callctx k;
  ctl__callctx_open(rpc, method, &k);
  grpc_byte_buffer *recv = NULL;
  int ret = -1;
  bool cancelled = false, local_fail = false;
  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (grpc_call_start_batch(k.call, ops, 1, CTL_TAG(ctl__tag_start), NULL) != GRPC_CALL_OK) {
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed", method);
    goto out_nostatus;
  }
  (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_start), &cancelled);
  /* One message in flight at a time: flow control paces the upload. A send
   * that fails means the server ended the call: its status says why. */
  while (!cancelled) {
    ProtobufCMessage *m = NULL;
    int r = next(opaque, &m, err);
    if (r < 0) {
      local_fail = true;
      grpc_call_cancel(k.call, NULL);
      break;
    }
    if (r == 0)
      break;
    grpc_byte_buffer *bb = ctl__pack(m);
    protobuf_c_message_free_unpacked(m, NULL);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = bb;
    bool ok = grpc_call_start_batch(k.call, ops, 1, CTL_TAG(ctl__tag_msg), NULL) == GRPC_CALL_OK &&
              ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_msg), &cancelled);
    grpc_byte_buffer_destroy(bb);
    if (!ok)
      break;
  }
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[1].data.recv_initial_metadata.recv_initial_metadata = &k.initial;
  ops[2].op = GRPC_OP_RECV_MESSAGE;
  ops[2].data.recv_message.recv_message = &recv;
  ctl__status_fill_op(&k.st, &ops[3]);
  if (grpc_call_start_batch(k.call, ops, 4, CTL_TAG(ctl__tag_status), NULL) != GRPC_CALL_OK) {
    /* The close may have been refused after a cancel: receive the status alone. */
    memset(ops, 0, sizeof(ops));
    ctl__status_fill_op(&k.st, &ops[0]);
    if (grpc_call_start_batch(k.call, ops, 1, CTL_TAG(ctl__tag_status), NULL) != GRPC_CALL_OK) {
      if (!local_fail)
        cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed", method);
      goto out;
    }
  }
  bool ignored = cancelled;
  (void)ctl__pluck(rpc, k.cq, k.call, CTL_TAG(ctl__tag_status), &ignored);
  if (local_fail)
    goto out;
  if (ctl__unary_result(rpc, method, cancelled, &k, recv, resp_desc, resp, err) < 0)
    goto out;
  ret = 0;
out:
out_nostatus:
  if (recv != NULL)
    grpc_byte_buffer_destroy(recv);
  ctl__callctx_close(&k);
  return ret;
}

/* ---- bidi streams driven by the caller ---- */

static const char ctl__tag_bsend = 0, ctl__tag_brecv = 0;

struct ctl_bidi {
  ctl_rpc *rpc;
  ctl__callctx k;
  pthread_mutex_t send_mu;   /* one send at a time */
  atomic_bool cancelled;     /* by a signal or ctl_bidi_cancel */
  atomic_bool sig_cancelled; /* by a signal (recorded by the pluckers) */
  bool status_done;
  bool ended; /* a send or the half-close failed */
};

/* A pluck whose cancel flag is per thread, merged into the object's. */
static bool ctl__bpluck(ctl_bidi *b, void *tag)
{
  bool c = false;
  bool ok = ctl__pluck(b->rpc, b->k.cq, b->k.call, tag, &c);
  if (c) {
    atomic_store(&b->sig_cancelled, true);
    atomic_store(&b->cancelled, true);
  }
  return ok;
}

ctl_bidi *ctl_bidi_open(ctl_rpc *rpc, const char *method, cmn_error *err)
{
  ctl_bidi *b = cmn_calloc(1, sizeof *b);
  b->rpc = rpc;
  pthread_mutex_init(&b->send_mu, NULL);
  atomic_init(&b->cancelled, false);
  atomic_init(&b->sig_cancelled, false);
  ctl__callctx_open(rpc, method, &b->k);
  grpc_op ops[2];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (grpc_call_start_batch(b->k.call, ops, 1, CTL_TAG(ctl__tag_start), NULL) != GRPC_CALL_OK) {
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed", method);
    ctl__callctx_close(&b->k);
    pthread_mutex_destroy(&b->send_mu);
    free(b);
    return NULL;
  }
  (void)ctl__bpluck(b, CTL_TAG(ctl__tag_start));
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &b->k.initial;
  ctl__status_fill_op(&b->k.st, &ops[1]);
  if (grpc_call_start_batch(b->k.call, ops, 2, CTL_TAG(ctl__tag_status), NULL) != GRPC_CALL_OK) {
    grpc_call_cancel(b->k.call, NULL);
    b->status_done = true; /* nothing posted */
    cmn_err_set(err, CMN_INTERNAL, "%s: grpc_call_start_batch failed", method);
    ctl_bidi_free(b);
    return NULL;
  }
  return b;
}

int ctl_bidi_send(ctl_bidi *b, const ProtobufCMessage *m)
{
  grpc_byte_buffer *bb = ctl__pack(m);
  pthread_mutex_lock(&b->send_mu);
  bool ok = false;
  if (!b->ended && !atomic_load(&b->cancelled)) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    ok = grpc_call_start_batch(b->k.call, &op, 1, CTL_TAG(ctl__tag_bsend), NULL) == GRPC_CALL_OK &&
         ctl__bpluck(b, CTL_TAG(ctl__tag_bsend));
    if (!ok)
      b->ended = true;
  }
  pthread_mutex_unlock(&b->send_mu);
  grpc_byte_buffer_destroy(bb);
  return ok ? 0 : -1;
}

int ctl_bidi_close_send(ctl_bidi *b)
{
  pthread_mutex_lock(&b->send_mu);
  bool ok = false;
  if (!b->ended && !atomic_load(&b->cancelled)) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ok = grpc_call_start_batch(b->k.call, &op, 1, CTL_TAG(ctl__tag_bsend), NULL) == GRPC_CALL_OK &&
         ctl__bpluck(b, CTL_TAG(ctl__tag_bsend));
    b->ended = true; /* nothing more is sent either way */
  }
  pthread_mutex_unlock(&b->send_mu);
  return ok ? 0 : -1;
}

int ctl_bidi_recv(ctl_bidi *b, const ProtobufCMessageDescriptor *d, ProtobufCMessage **m,
                  cmn_error *err)
{
  *m = NULL;
  if (atomic_load(&b->cancelled))
    return 0;
  grpc_byte_buffer *recv = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &recv;
  if (grpc_call_start_batch(b->k.call, &op, 1, CTL_TAG(ctl__tag_brecv), NULL) != GRPC_CALL_OK)
    return 0;
  (void)ctl__bpluck(b, CTL_TAG(ctl__tag_brecv));
  if (recv == NULL)
    return 0;
  *m = ctl__unpack(recv, d);
  grpc_byte_buffer_destroy(recv);
  if (*m == NULL) {
    ctl_bidi_cancel(b);
    return cmn_err_set(err, CMN_INTERNAL, "cannot decode a streamed %s", d->name);
  }
  return 1;
}

void ctl_bidi_cancel(ctl_bidi *b)
{
  atomic_store(&b->cancelled, true);
  grpc_call_cancel(b->k.call, NULL);
}

int ctl_bidi_finish(ctl_bidi *b, cmn_error *err)
{
  if (!b->status_done) {
    bool ignored = true; /* a signal now changes nothing */
    (void)ctl__pluck(b->rpc, b->k.cq, b->k.call, CTL_TAG(ctl__tag_status), &ignored);
    b->status_done = true;
  }
  if (atomic_load(&b->sig_cancelled))
    return cmn_err_set(err, CMN_CANCELLED, "interrupted");
  if (b->k.st.code != GRPC_STATUS_OK)
    return ctl__status_err(&b->k.st, b->rpc->target, err);
  return 0;
}

void ctl_bidi_free(ctl_bidi *b)
{
  if (b == NULL)
    return;
  if (!b->status_done) {
    grpc_call_cancel(b->k.call, NULL);
    bool ignored = true;
    (void)ctl__pluck(b->rpc, b->k.cq, b->k.call, CTL_TAG(ctl__tag_status), &ignored);
  }
  ctl__callctx_close(&b->k);
  pthread_mutex_destroy(&b->send_mu);
  free(b);
}
