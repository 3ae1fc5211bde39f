/* fuzz_entry.h: a test-only way into the ember.v1.InstanceService handlers
 * without gRPC: a method index plus the request payload bytes go through the
 * same handler functions emberd's server table (srv_methods) names, on a
 * server object that holds only a manager. Used by the libFuzzer target and
 * its corpus replay (test/fuzz/); never linked into emberd.
 *
 * Method indices follow the order of srv_methods restricted to
 * /ember.v1.InstanceService/ (the order of the .proto). */
#ifndef EMBER_AGENT_SERVER_FUZZ_ENTRY_H
#define EMBER_AGENT_SERVER_FUZZ_ENTRY_H

#include "agent/manager.h"
#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct srv_fuzz srv_fuzz;

/* mgr must outlive the returned object. */
srv_fuzz *srv_fuzz_create(agent_manager *mgr);
void srv_fuzz_free(srv_fuzz *f);

/* Number of InstanceService methods; names are the short RPC names
 * ("CreateInstance", ...); NULL when i is out of range. */
size_t srv_fuzz_method_count(void);
const char *srv_fuzz_method_name(size_t i);
/* True for the methods whose success may change state (everything but Get,
 * List, ListHypervisors and WatchInstances). */
bool srv_fuzz_method_mutates(size_t i);

/* The check emberd runs on every request before decoding it (strings must be
 * NUL-free strict UTF-8; see wire_check.h), for method i. srv_fuzz_dispatch
 * runs it first; the harness calls it too, to know which inputs the server
 * path must refuse. Returns < 0 with INVALID_ARGUMENT naming the field. */
int srv_fuzz_request_check(srv_fuzz *f, size_t i, const uint8_t *req, size_t len, cmn_error *err);

/* Runs method i on the request bytes. Returns 0 with *resp (malloc'ed, may be
 * empty) for an OK status, < 0 with err filled otherwise. A server stream
 * (WatchInstances) runs its request decoding and checks, then returns 0 with
 * an empty response instead of subscribing. */
int srv_fuzz_dispatch(srv_fuzz *f, size_t i, const uint8_t *req, size_t len, uint8_t **resp,
                      size_t *resp_len, cmn_error *err);

#endif
