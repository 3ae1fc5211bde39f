/* server.h: the gRPC layer of emberd: ember.v1.InstanceService, grpc.health.v1
 * and server reflection (v1 and v1alpha) over the gRPC C core, on one shared
 * completion queue polled by a pool of worker threads.
 *
 * Life cycle (driven by emberd's main thread):
 *   srv_listen_precheck()      before the manager touches the data dir
 *   srv_server_create()        binds, starts workers, health SERVING
 *   srv_server_begin_shutdown() health NOT_SERVING, no new calls, streams end
 *   srv_server_wait()          until in-flight calls finished (or timeout)
 *   srv_server_cancel_all()    after the grace time or a second signal
 *   srv_server_free()          waits for lifecycle operations, joins workers
 * grpc_init() must have been called before create and grpc_shutdown() after free. */
#ifndef EMBER_AGENT_SERVER_SERVER_H
#define EMBER_AGENT_SERVER_SERVER_H

#include "agent/manager.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct srv_options {
  const char *listen;        /* "unix:/abs/path" or "host:port" */
  int workers;               /* completion-queue threads, >= 1 */
  int64_t max_message_bytes; /* max receive message size */
  const char *tls_cert;      /* PEM files; TLS on TCP when both are set */
  const char *tls_key;
  const char *tls_client_ca;     /* requires and verifies client certificates (mTLS) */
  bool insecure_tcp;             /* allow plaintext TCP */
  struct agent_metrics *metrics; /* agent/metrics_agent.h; NULL: no RPC metrics */
  /* Bound of each stream's outgoing queue (WatchInstances, Health/Watch,
   * reflection): messages and bytes not yet taken by the transport. A client
   * that lets more pile up (it does not read) is ended at once with
   * RESOURCE_EXHAUSTED and its queue freed; a WatchInstances client is told
   * "watch fell behind: N events not delivered; list and watch again".
   * 0 selects the default (SRV_STREAM_QUEUE_MESSAGES / _BYTES). */
  size_t stream_queue_messages;
  size_t stream_queue_bytes;
  /* ember.v1.ImageService (image.c): the store and how to reach registries;
   * both owned by the caller and outliving the server. images NULL: the
   * image calls answer UNIMPLEMENTED. */
  struct img_store *images;
  const struct img_registry_opts *registry;
} srv_options;

#define SRV_STREAM_QUEUE_MESSAGES 256
#define SRV_STREAM_QUEUE_BYTES (256 * 1024)

typedef struct srv_server srv_server;

/* For unix: addresses: fails (FAILED_PRECONDITION) when another live server
 * answers on the socket, removes a stale socket file, refuses a path that is
 * not a socket. For TCP: checks the TLS/insecure combination. */
int srv_listen_precheck(const srv_options *opts, cmn_error *err);

srv_server *srv_server_create(const srv_options *opts, agent_manager *mgr, cmn_error *err);
void srv_server_begin_shutdown(srv_server *s);
/* True once every call has finished; waits at most timeout_ms. */
bool srv_server_wait(srv_server *s, int timeout_ms);
void srv_server_cancel_all(srv_server *s);
void srv_server_free(srv_server *s);

#endif
