/* rpc.h: emberctl's gRPC calls, on the gRPC core client API.
 *
 * One channel per process; each call gets its own pluck completion queue and a
 * deadline. Requests and responses are protobuf-c messages, packed and
 * unpacked generically through their descriptors. A failed call fills the
 * cmn_error with the gRPC status code and the server's message, so the code
 * becomes the exit status unchanged.
 *
 * Calls poll for SIGINT/SIGTERM (which main() blocks before grpc_init, so they
 * stay pending instead of killing the process): an interrupted call is
 * cancelled cleanly. */
#ifndef EMBER_CTL_RPC_H
#define EMBER_CTL_RPC_H

#include "common/error.h"

#include <protobuf-c/protobuf-c.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct ctl_rpc {
  struct grpc_channel *channel;
  const char *target;
  int64_t timeout_ms; /* deadline of each call; <= 0: none */
  sigset_t interrupt; /* signals that cancel a call; may be empty */
} ctl_rpc;

/* Creates the channel (no I/O yet: connecting happens on the first call).
 * Requires grpc_init(). */
int ctl_rpc_open(ctl_rpc *rpc, const char *target, int64_t timeout_ms, cmn_error *err);
void ctl_rpc_close(ctl_rpc *rpc);

/* Unary call of method ("/pkg.Service/Method"). On success *resp is a message
 * of resp_desc, to be freed with protobuf_c_message_free_unpacked(*resp, NULL).
 * On failure returns -1 with err->code the gRPC status (CANCELLED when
 * interrupted by a signal). */
int ctl_rpc_unary(ctl_rpc *rpc, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  cmn_error *err);

/* Called for each streamed message; msg is freed after it returns. Return
 * true to keep receiving, false to end the stream (the call is cancelled and
 * ctl_rpc_stream returns 0). */
typedef bool (*ctl_rpc_on_msg)(const ProtobufCMessage *msg, void *opaque);

/* Called once the server has sent its response headers (for WatchInstances:
 * once the watch is subscribed, so every later change will be streamed). */
typedef void (*ctl_rpc_on_ready)(void *opaque);

/* Server-streaming call. Returns 0 when the server ended the stream with OK,
 * when on_msg asked to stop, or when a signal in rpc->interrupt arrived (the
 * user's Ctrl-C ends a watch normally). Else -1 with the gRPC status. */
int ctl_rpc_stream(ctl_rpc *rpc, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, ctl_rpc_on_ready on_ready,
                   ctl_rpc_on_msg on_msg, void *opaque, cmn_error *err);

/* Yields the next request message of a client stream: 1 with *msg (freed by
 * the caller with protobuf_c_message_free_unpacked), 0 at the end, < 0 with
 * err on a local failure (the call is cancelled). */
typedef int (*ctl_rpc_next_msg)(void *opaque, ProtobufCMessage **msg, cmn_error *err);
/* Client-streaming call (ImportImage): sends every message next() yields,
 * half-closes, and receives the one response. A server that ends the call
 * early stops the upload; its status is the result. */
int ctl_rpc_client_stream(ctl_rpc *rpc, const char *method, ctl_rpc_next_msg next, void *opaque,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                          cmn_error *err);

/* A bidi (or client) stream driven by the caller (ExecInstance,
 * CopyToInstance): sends and receives may run on two threads (sends are
 * serialized by the object). A pending signal of rpc->interrupt cancels the
 * call (the server sees the cancel), as for the other calls. */
typedef struct ctl_bidi ctl_bidi;
/* Starts the call (headers out, the status posted). NULL with err. */
ctl_bidi *ctl_bidi_open(ctl_rpc *rpc, const char *method, cmn_error *err);
/* Sends one message, blocking until the transport took it: 0, or -1 when
 * the call has ended (ctl_bidi_finish tells why). */
int ctl_bidi_send(ctl_bidi *b, const ProtobufCMessage *m);
/* Half-closes the sending side; -1 when the call has ended. */
int ctl_bidi_close_send(ctl_bidi *b);
/* The next response: 1 with *m (free with protobuf_c_message_free_unpacked),
 * 0 at the end of the stream, -1 with err when it cannot be decoded (the
 * call is cancelled). */
int ctl_bidi_recv(ctl_bidi *b, const ProtobufCMessageDescriptor *d, ProtobufCMessage **m,
                  cmn_error *err);
/* Cancels the call (any thread). */
void ctl_bidi_cancel(ctl_bidi *b);
/* Waits for the status: 0 for OK, else -1 with err (CANCELLED "interrupted"
 * when a signal cancelled it). */
int ctl_bidi_finish(ctl_bidi *b, cmn_error *err);
/* Frees the call; cancels it first if its status was not received. */
void ctl_bidi_free(ctl_bidi *b);
#endif
