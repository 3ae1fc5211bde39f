/* internal.h: what the files of the gRPC layer share: the server object, the
 * per-call object with its completion-queue tags, and the method table.
 *
 * Model: one completion queue shared by N worker threads. Every tag posted to
 * it is a srv_tag embedded in a srv_call; a worker calls tag->fn(call, ok).
 * A srv_call is reference counted: every batch in flight and every thread that
 * works on the call hold one reference; the last unref frees it. Batches on one
 * call are started with call->mu held (the core wants them serialized).
 *
 * Names: srv_ public to the layer, srv__ helpers used inside one file. */
#ifndef EMBER_AGENT_SERVER_INTERNAL_H
#define EMBER_AGENT_SERVER_INTERNAL_H

#include "agent/instance_net.h"
#include "agent/manager.h"
#include "ember/v1/instance.pb-c.h"
#include "agent/rpc_table.h"
#include "agent/server/server.h"
#include "common/error.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_call srv_call;
typedef struct srv_server srv_server;
typedef struct srv_reflection srv_reflection;

typedef void (*srv_tag_fn)(srv_call *c, bool ok);
typedef struct srv_tag {
  srv_tag_fn fn;
  srv_call *call;
} srv_tag;

/* What a unary call reports to the metrics besides its status
 * (rpc_metrics.c): the lifecycle operation of its table row, and the
 * instance's hypervisor type, which the handler notes once it has decoded the
 * request (srv_probe_instance, srv_probe_create): the request is decoded once. */
typedef struct srv_op_probe {
  agent_op op;
  char *hypervisor;
  char *name;
} srv_op_probe;

/* A handler of a unary method: decodes req, fills *resp with the packed
 * response. Returns < 0 with err filled for a non-OK status. Runs on a worker
 * thread, or on its own thread when the method is `slow`. probe is never NULL. */
typedef int (*srv_unary_fn)(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                            uint8_t **resp, size_t *resp_len, cmn_error *err);
/* A streaming method takes the call over after RECV_CLOSE is posted. */
typedef void (*srv_stream_fn)(srv_call *c);

typedef enum srv_kind {
  SRV_UNARY = 0,
  SRV_SERVER_STREAM = 1, /* one request message, then a stream of responses */
  SRV_BIDI = 2,
} srv_kind;

/* A row of the method table (server.c). The unary rows of ember's services
 * are generated from agent/rpc_table.h. */
typedef struct srv_method {
  const char *path;
  srv_kind kind;
  bool slow;          /* a lifecycle operation: run on its own detached thread */
  srv_unary_fn unary; /* SRV_UNARY */
  srv_stream_fn stream;
  /* Rows of a protobuf-c service: the descriptor and the method's name in it;
   * the request message comes from there (srv_method_request). */
  const ProtobufCServiceDescriptor *service;
  const char *method;
  /* Other rows: the request message (each received message for SRV_BIDI). */
  const ProtobufCMessageDescriptor *request;
  agent_op op;  /* the lifecycle operation (metrics); AGENT_OP_NONE */
  bool mutates; /* false: read-only (the request fuzzer skips it) */
} srv_method;

/* The request message of m, whose strings srv_request_check checks on the
 * wire before anything decodes it; NULL when the row names a method its
 * service lacks (srv_methods_check refuses that at start-up). */
const ProtobufCMessageDescriptor *srv_method_request(const srv_method *m);
/* Checks every row of the table against its service descriptor (the method
 * exists, the path is "/" service "/" method); INTERNAL naming the row. */
int srv_methods_check(cmn_error *err);

/* A queued outgoing message of a stream. */
typedef struct srv_msg {
  struct srv_msg *next;
  grpc_byte_buffer *buf;
  size_t len; /* bytes of buf, as counted in q_bytes */
} srv_msg;

/* Kinds of streams the server can end at shutdown. */
enum { SRV_STREAM_NONE = 0, SRV_STREAM_WATCH = 1, SRV_STREAM_HEALTH = 2, SRV_STREAM_GUEST = 3 };

struct srv_call {
  srv_server *srv;
  const srv_method *method; /* NULL for the catch-all */
  int method_index;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array req_md;
  grpc_call_details details; /* catch-all only */
  grpc_byte_buffer *payload; /* request payload (unary, server stream) */
  uint8_t *req;              /* the payload flattened and checked (srv__on_request) */
  size_t req_len;
  atomic_int refs;
  int64_t start_us;

  pthread_mutex_t mu; /* guards everything below */
  srv_tag t_request, t_close, t_send, t_recv;
  int cancelled; /* filled by RECV_CLOSE_ON_SERVER */
  bool closed;   /* RECV_CLOSE completed: the client is gone or done */
  bool sent_initial_md;
  bool status_sent;
  grpc_byte_buffer *send_buf; /* message of the send batch in flight */
  grpc_slice status_details;
  bool has_status_details;
  grpc_metadata status_md; /* grpc-status-details-bin of a failed unary call */
  bool has_status_md;
  grpc_byte_buffer *recv_buf; /* bidi: target of RECV_MESSAGE */

  /* Streams: an outgoing queue with one send in flight; q_count and q_bytes
   * count the queued messages (not the one in flight) for the O(1) bound. */
  srv_msg *q_head, *q_tail;
  size_t q_count, q_bytes;
  bool sending;
  bool finishing; /* send the final status once the queue drains */
  int final_code;
  char *final_msg;
  int stream_kind;
  struct srv_call *stream_next, *stream_prev; /* in srv->streams */
  void (*on_close)(srv_call *c);              /* streams: release subscriptions; no lock held */
  void *priv;
  void (*priv_free)(void *priv);
  int status_logged;
  bool metrics_done; /* the end of this call was counted (rpc_metrics.c) */
  /* Signalled (with mu) whenever a send completes or the call closes:
   * srv_stream_wait_room. */
  pthread_cond_t room_cv;
};

struct srv_server {
  srv_options opts;
  agent_manager *mgr;
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t *workers;
  int n_workers;
  void **registered; /* per method table entry */
  srv_reflection *refl;
  char *unix_path; /* socket file when listening on unix: */

  pthread_mutex_t mu; /* guards below */
  pthread_cond_t cv;
  bool shutting_down;
  bool shutdown_done;        /* the shutdown tag completed */
  bool idle_cancelled;       /* cancel_all_calls issued once no call of ours was left */
  int live_calls;            /* srv_call objects alive */
  int slow_threads;          /* lifecycle threads running */
  srv_call *streams;         /* watch and health-watch streams */
  bool serving;              /* health status */
  atomic_size_t queue_freed; /* stream queue bytes freed since the last malloc_trim */

  /* WatchInstances fan-out (instance.c): one manager subscription for the
   * server; each event is serialized once and its byte buffer shared by every
   * watcher's queue. Lock order: the manager's subscriber lock, watch_mu,
   * then a call's mu. */
  pthread_mutex_t watch_mu;
  srv_call **watchers; /* each holds a reference */
  size_t n_watchers, cap_watchers;
  int watch_sub; /* manager subscription handle; 0: none */
  srv_tag t_shutdown;
};

/* The method table (server.c) and its handlers (instance.c, health.c, reflection.c). */
extern const srv_method srv_methods[];
extern const size_t srv_n_methods;

/* ---- server.c: call plumbing ---- */
void srv_call_ref(srv_call *c);
void srv_call_unref(srv_call *c);
/* Runs fn(c) on a detached thread that holds a reference to c and counts in
 * s->slow_threads (srv_server_free waits for them); when no thread can be
 * started, runs fn(c) on the calling thread. fn ends with
 * srv_call_thread_done(c). */
void srv_call_spawn(srv_call *c, void *(*fn)(void *));
/* Drops the reference and the slow_threads count srv_call_spawn took. */
void srv_call_thread_done(srv_call *c);
/* Starts a batch with c->mu held by the caller; takes a reference for it.
 * Returns false when the core refused the batch. */
bool srv_call_batch_locked(srv_call *c, const grpc_op *ops, size_t n, srv_tag *tag);
/* Unary and stream ends: sends initial metadata if not sent, the message (may
 * be NULL) and the status. Takes ownership of msg. Logs the RPC line. */
void srv_call_finish(srv_call *c, grpc_byte_buffer *msg, int code, const char *detail);
/* Unary failure: like srv_call_finish with err's code and message, plus the
 * google.rpc error details of err (status_details.c) in the trailer. */
void srv_call_finish_error(srv_call *c, const cmn_error *err);
/* Streams: queue a message (ownership passes) and kick the sender. When the
 * queue of a stream (not a unary call) would exceed the server's bound, the
 * call is ended at once with RESOURCE_EXHAUSTED (grpc_call_cancel_with_status,
 * which reaches the client even while a send is blocked by flow control) and
 * the queue is freed. */
void srv_stream_push_locked(srv_call *c, grpc_byte_buffer *msg);
/* Streams that produce as fast as a source allows (exec output, file
 * reads): waits until fewer than max_bytes and max_msgs are queued, so the
 * producer reads its source only as fast as the client takes the responses
 * (never queuing without bound, never tripping the overflow of
 * srv_stream_push_locked). Returns 1 when there is room, 0 when deadline_us
 * (srv_now_us clock; 0: none) passed first, -1 when the call is ending or
 * gone (closed, status queued or sent). c->mu not held by the caller. */
int srv_stream_wait_room(srv_call *c, size_t max_bytes, size_t max_msgs, int64_t deadline_us);
/* Streams: end with a status after the queued messages. */
void srv_stream_end_locked(srv_call *c, int code, const char *detail);
/* Registers/unregisters a stream so shutdown can end it. */
void srv_stream_register(srv_call *c, int kind);
/* The one check every request message passes before it is decoded: its
 * strings must be NUL-free strict UTF-8 (wire_check.h). Returns < 0 with
 * INVALID_ARGUMENT naming the field. */
int srv_request_check(const srv_method *m, const uint8_t *req, size_t len, cmn_error *err);
/* Packs a protobuf-c message into a byte buffer / a malloc'ed buffer. */

grpc_byte_buffer *srv_pack_bb(const ProtobufCMessage *m);
int srv_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);
/* Decodes req as a d message; NULL with INVALID_ARGUMENT naming d when it is
 * not one. Free with protobuf_c_message_free_unpacked (or cleanup_pbmsg). */
void *srv_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *req, size_t len,
                 cmn_error *err);
void srv_pbmsg_freep(void *p);
/* The page size of a List call: page_size, dflt for 0, at most max. Returns
 * < 0 with INVALID_ARGUMENT on the field page_size when it is negative. */
int srv_page_size(int32_t page_size, size_t dflt, size_t max, size_t *out, cmn_error *err);
#define cleanup_pbmsg __attribute__((cleanup(srv_pbmsg_freep)))
/* Copies a byte buffer into one malloc'ed buffer (NULL bb -> empty). */
uint8_t *srv_bb_flatten(grpc_byte_buffer *bb, size_t *len);
int64_t srv_now_us(void);

/* ---- instance.c ---- */
void srv_watch_start(srv_call *c);
/* The WatchInstances fan-out: init subscribes once at server creation; fini
 * unsubscribes and drops the references of watchers still listed (at free,
 * after every call was cancelled); watch_mu is destroyed by the server. */
void srv_watch_hub_init(srv_server *s);
void srv_watch_hub_fini(srv_server *s);
/* The handlers of agent/rpc_table.h, one prototype per row. */
#define SRV_HANDLER_PROTO(desc, svc, meth, handler, slow, op, mutates, ctl)                        \
  int handler(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len, uint8_t **resp,  \
              size_t *rl, cmn_error *err);
EMBER_UNARY_RPCS(SRV_HANDLER_PROTO)
#undef SRV_HANDLER_PROTO
/* CreateInstance with start=true is slow; the method table cannot know, so
 * Create always runs on its own thread. */

/* ---- console.c: StreamConsole (SRV_SERVER_STREAM, own thread) ---- */
void srv_console_start(srv_call *c);

/* ---- image.c: ember.v1.ImageService ---- */
void srv_image_pull_start(srv_call *c);   /* SRV_SERVER_STREAM, own thread */
void srv_image_import_start(srv_call *c); /* client stream (SRV_BIDI machinery), own thread */

/* ---- exec.c, copy.c: the guest agent RPCs (agent/guestlink/guestlink.h) ---- */
void srv_exec_start(srv_call *c);      /* ExecInstance: bidi, own threads */
void srv_copy_to_start(srv_call *c);   /* CopyToInstance: client stream (SRV_BIDI), own thread */
void srv_copy_from_start(srv_call *c); /* CopyFromInstance: server stream, own thread */
/* ---- recv.c ---- */
/* Receiving the messages of a client stream on a thread, one at a time
 * (ImportImage, ExecInstance, CopyToInstance):
 * the thread posts RECV_MESSAGE and waits for its completion (on a worker).
 * The call's priv must start with the srv_grecv (srv_grecv_attach sets it,
 * the free function, and the receive tag). */
typedef struct srv_grecv {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done; /* the posted receive completed */
  bool ok;
  grpc_byte_buffer *bb; /* the message received (NULL: end of the stream) */
  bool eof;             /* the client half-closed */
} srv_grecv;
void srv_grecv_init(srv_grecv *r);
void srv_grecv_fini(srv_grecv *r);
void srv_grecv_attach(srv_call *c, srv_grecv *r, void (*priv_free)(void *));
/* The next message, flattened and wire-checked (srv_request_check): 1 with
 * *data (free it), 0 at the half-close, < 0 with CANCELLED when the call
 * ended, INVALID_ARGUMENT for a malformed message. */
int srv_grecv_next(srv_call *c, srv_grecv *r, uint8_t **data, size_t *len, cmn_error *err);
/* The call ended or is ending (cancel, deadline, status queued) or emberd
 * shuts down. */
bool srv_call_gone(srv_call *c);
struct gl_link;
/* The guest agent link of instance id, ready: waits up to ready_us
 * (ExecStart.ready_timeout; srv_ready_timeout_us gives the default) in
 * slices, giving up when the call ends (CANCELLED). NOT_FOUND /
 * FAILED_PRECONDITION from the manager; UNAVAILABLE "the guest agent of ID
 * is not ready: <why>". *id_out (may be NULL) gets the instance id. A link
 * returned opens a session on the instance (agent_manager_session_begin: no
 * idle auto-standby while it is open): the caller ends it with
 * agent_manager_session_end(mgr, *id_out) once done. */
struct gl_link *srv_guest_link(srv_call *c, const char *id, int64_t ready_us, char **id_out,
                               cmn_error *err);
int64_t srv_ready_timeout_us(const Google__Protobuf__Duration *d);
/* Request checks shared with the unit tests: 0, or < 0 with INVALID_ARGUMENT
 * naming the field. */
int srv_exec_check_start(const Ember__V1__ExecStart *st, cmn_error *err);
int srv_copy_check_path(const char *path, const char *field, cmn_error *err);

/* ---- health.c ---- */
/* network.c: the network parts of InstanceSpec / Instance (instance_net.h). */
#define SRV_NET_FW_ADDRS 64
typedef struct srv_net_out {
  bool set;
  agent_net_status st;
  char given_ip[16];
  char empty[1]; /* "" for protobuf-c fields (char *, never written) */
  char fw_addr[SRV_NET_FW_ADDRS][16];
  Ember__V1__PortForward *fw;
  Ember__V1__PortForward **fw_ptrs;
  Ember__V1__NetworkInterface nic; /* the managed interface as requested */
  Ember__V1__NetworkStatus status;
} srv_net_out;
/* Moves the managed interface (at most one) of `in` out of spec->nics (which
 * srv__spec_from filled from all of them) into *out; INVALID_ARGUMENT naming
 * the field on a bad combination. */
int srv_net_from_request(const Ember__V1__InstanceSpec *in, vmm_spec *spec, agent_net_spec *out,
                         cmn_error *err);
void srv_net_out_init(srv_net_out *o, const char *id, const agent_net_spec *s);
void srv_net_out_fini(srv_net_out *o);

int srv_unary_health_check(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                           uint8_t **resp, size_t *rl, cmn_error *err);
void srv_health_watch_start(srv_call *c);
/* Pushes the current status to every health watcher (s->mu held). */
void srv_health_broadcast_locked(srv_server *s);

/* ---- rpc_metrics.c: what the calls report to opts.metrics (may be NULL) ---- */
/* Counts the end of the call once (c->mu held): the status sent, or
 * CANCELLED when the client went away first. */
void srv_metrics_rpc_done_locked(srv_call *c, int code);
/* Around a unary handler: begin takes the lifecycle operation from the
 * call's table row; end reports a failure (or a delete's duration) and
 * releases the probe. */
void srv_metrics_unary_begin(srv_call *c, const uint8_t *req, srv_op_probe *p);
void srv_metrics_unary_end(srv_call *c, srv_op_probe *p, int code, int64_t duration_us);
/* Called by a handler once it has decoded its request: the instance the call
 * is about (its hypervisor type is looked up now, so a delete still has it
 * after), or, for CreateInstance, the name and the requested type (a label
 * only when it is a registered type). No-ops unless the call is a lifecycle
 * operation and metrics are on. */
void srv_probe_instance(srv_server *s, srv_op_probe *p, const char *id_or_name);
void srv_probe_create(srv_server *s, srv_op_probe *p, const char *name, const char *hypervisor);

/* ---- status_details.c ---- */
/* A serialized google.rpc.Status with err's details for code and msg. Returns
 * false (nothing to send) when err has no detail a client can act on. */
bool srv_status_details(const cmn_error *err, int code, const char *msg, uint8_t **out,
                        size_t *len);

/* ---- reflection.c ---- */
srv_reflection *srv_reflection_create(cmn_error *err);
void srv_reflection_free(srv_reflection *r);
void srv_reflection_start(srv_call *c);

/* One Instance message pointing into a view's strings (no copies); the arrays
 * are owned here and released by srv_inst_fini. */
typedef struct srv_inst {
  Ember__V1__Instance inst;
  Ember__V1__InstanceSpec spec;
  Ember__V1__Disk *disks;
  Ember__V1__Disk **disk_ptrs;
  Ember__V1__NetworkInterface *nics;
  Ember__V1__NetworkInterface **nic_ptrs;
  Ember__V1__Vsock vsock;
  Ember__V1__ImageOverrides overrides;
  Google__Protobuf__Timestamp create_time, update_time, agent_ready;
  Ember__V1__GuestAgentStatus agent;
  Google__Protobuf__Duration standby, restore;
  Ember__V1__Instance__LabelsEntry *labels;
  Ember__V1__Instance__LabelsEntry **label_ptrs;
  srv_net_out net;
  Ember__V1__ForkOrigin fork;
  Ember__V1__AutoStandby auto_standby;
  Ember__V1__IdleStatus idle;
  Google__Protobuf__Duration idle_for;
  Google__Protobuf__Timestamp hold_until;
} srv_inst;
void srv_inst_init(srv_inst *m, const agent_instance_view *v);
void srv_inst_fini(srv_inst *m);

#endif
