/* metrics_agent.h: emberd's metrics, built on the registry of metrics.h.
 *
 *   ember_build_info{version}                                    gauge, always 1
 *   ember_process_start_time_seconds                             gauge (Unix time)
 *   ember_operations_total{operation,hypervisor,result}          counter
 *   ember_operation_duration_seconds{operation,hypervisor}       histogram
 *   ember_standby_duration_seconds{hypervisor,kind="full|diff"}  histogram
 *   ember_instances{state,hypervisor}                            gauge, at scrape time
 *   ember_warm_vmms{hypervisor}, ember_warm_pool_size{hypervisor} gauges, at scrape time
 *   ember_warm_events_total{hypervisor,event}                    counter, from the manager
 *   ember_grpc_requests_total{method,code}                       counter
 *   ember_grpc_request_duration_seconds{method}                  histogram
 *
 * Sources: successful lifecycle operations come from the manager's events
 * (agent_metrics_attach subscribes); failed ones, which are not events, from
 * the gRPC layer (agent_metrics_op_failed), as is every RPC's end
 * (agent_metrics_rpc_done). result is "ok" or the gRPC code name in lower
 * case ("failed_precondition", ...). A call whose target state already held
 * changes nothing, emits no event and is not counted.
 *
 * Threading: every function may be called from any thread; none blocks on
 * anything but the registry's mutex. The object is created in main, handed to
 * the server (srv_options.metrics) and subscribed to the manager; detach
 * before the manager is freed, free after the server and the exporters. */
#ifndef EMBER_AGENT_METRICS_AGENT_H
#define EMBER_AGENT_METRICS_AGENT_H

#include "agent/manager.h"

#include <stddef.h>
#include <stdint.h>

typedef struct agent_metrics agent_metrics;

/* start_time_s: the process start as Unix time in seconds. */
agent_metrics *agent_metrics_create(const char *version, double start_time_s);
void agent_metrics_free(agent_metrics *m);

/* Subscribes to mgr's events and uses mgr for the scrape-time gauges. */
void agent_metrics_attach(agent_metrics *m, agent_manager *mgr);
/* Unsubscribes; scrapes after this have no ember_instances series. */
void agent_metrics_detach(agent_metrics *m);

/* The event callback agent_metrics_attach subscribes (ctx = the metrics);
 * public for tests. */
void agent_metrics_on_event(void *ctx, const agent_event *ev);

/* One RPC ended. method: the full path of a registered method, or NULL for an
 * unknown one (rendered "unknown": client-chosen paths never become labels).
 * code: the gRPC status sent (CANCELLED when the client went away first). */
void agent_metrics_rpc_done(agent_metrics *m, const char *method, int code, int64_t duration_us);
/* A lifecycle operation failed with code (!= OK). hypervisor: the instance's
 * type, or NULL when unknown (rendered "unknown"). */
void agent_metrics_op_failed(agent_metrics *m, agent_op op, const char *hypervisor, int code);
/* A lifecycle operation succeeded and its event carries no duration (the
 * manager reports 0 for delete): the gRPC layer supplies the measured one. */
void agent_metrics_op_duration(agent_metrics *m, agent_op op, const char *hypervisor,
                               int64_t duration_us);

/* The exposition text (format 0.0.4) of everything, with the scrape-time
 * gauges computed now. Malloc'ed; *len (may be NULL) gets the length. */
char *agent_metrics_render(agent_metrics *m, size_t *len);

/* ---- exporters (metrics_http.c, metrics_file.c) ---- */

typedef struct agent_metrics_http agent_metrics_http;
/* Serves GET /metrics on HOST:PORT (IPv4, [IPv6] or a name; port 0 picks
 * one) on its own thread. Fails with INVALID_ARGUMENT for a bad address,
 * FAILED_PRECONDITION when it cannot bind, UNIMPLEMENTED when emberd was
 * built without libmicrohttpd. */
agent_metrics_http *agent_metrics_http_start(agent_metrics *m, const char *listen, cmn_error *err);
/* The bound port (useful with port 0). */
int agent_metrics_http_port(const agent_metrics_http *h);
void agent_metrics_http_stop(agent_metrics_http *h);

typedef struct agent_metrics_file agent_metrics_file;
/* Writes the text to path atomically (temp + rename in the same folder) now
 * and every interval_ms, for node_exporter's textfile collector (name the
 * file *.prom). Fails when the first write fails. */
agent_metrics_file *agent_metrics_file_start(agent_metrics *m, const char *path, int interval_ms,
                                             cmn_error *err);
/* Writes once more, then stops the thread. */
void agent_metrics_file_stop(agent_metrics_file *f);

#endif
