/* instance_net.h: instances on networks emberd manages
 * (NetworkInterface.network, docs/networking.md).
 *
 * The state is the agent's: the networks come from the configuration, and each
 * instance's address, MAC, veth pair and port forwards are allocated here at
 * Create (agent_net_alloc) and kept in its record, so they survive standby,
 * restore and emberd restarts, and are released at Delete. The host objects
 * (bridge, TAP, namespace, veth, nftables rules: agent/net/hostnet.h) follow
 * that state: made at Create and checked again right before every VMM spawn,
 * removed at Delete, and reconciled at start-up (made when missing, orphans
 * removed). Nothing is made on the host while no instance uses a network, so
 * an emberd without networked instances never touches the host's network.
 *
 * One agent_net per manager; every call is thread-safe (one mutex: network
 * changes are short and serialised). */
#ifndef EMBER_AGENT_INSTANCE_NET_H
#define EMBER_AGENT_INSTANCE_NET_H

#include "agent/types.h"
#include "common/error.h"
#include "drivers/hypervisor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define AGENT_NET_MAX_DNS 4
#define AGENT_NET_MAX_FORWARDS 64
#define AGENT_NET_DEFAULT_NAME "default"
#define AGENT_NET_DEFAULT_BRIDGE "ember0"
#define AGENT_NET_DEFAULT_SUBNET "10.77.0.0/16"
#define AGENT_NET_DEFAULT_TRANSIT "10.78.0.0/16"
#define AGENT_NET_DEFAULT_NETNS_DIR "/run/netns"

/* One network of the configuration. */
typedef struct agent_network_def {
  char *name;
  char *bridge;
  uint32_t subnet; /* host order */
  int prefix;      /* 8..30 */
  uint32_t gateway;
  uint32_t mtu; /* 68..65535; 1500 by default */
  bool nat;
  bool isolated;
  uint32_t dns[AGENT_NET_MAX_DNS];
  size_t n_dns;
} agent_network_def;

typedef struct agent_net_config {
  agent_network_def *nets;
  size_t n_nets;
  char *netns_dir;         /* namespace files; NULL: AGENT_NET_DEFAULT_NETNS_DIR */
  uint32_t transit_subnet; /* veth pairs of namespaced instances, one /31 each */
  int transit_prefix;
} agent_net_config;

/* The built-in configuration: one network "default" (AGENT_NET_DEFAULT_SUBNET
 * on bridge ember0, NAT) and the default transit subnet. */
void agent_net_config_default(agent_net_config *c);
/* Replaces c's networks with the config file's "networks" array and reads
 * "netns_transit_subnet" when present ("netns_dir" is a plain key of config.c). Every value is
 * checked: names, bridge names, subnets (no two overlapping, none overlapping the transit subnet),
 * gateways, MTU, DNS; INVALID_ARGUMENT naming the key. */
int agent_net_config_from_json(agent_net_config *c, const struct cJSON *root, cmn_error *err);
int agent_net_config_check(const agent_net_config *c, cmn_error *err);
void agent_net_config_free(agent_net_config *c);
void agent_net_config_copy(agent_net_config *dst, const agent_net_config *src);

/* The spec part (record JSON "net", absent when none). */
bool agent_net_spec_set(const agent_net_spec *s);
void agent_net_spec_free(agent_net_spec *s);
void agent_net_spec_copy(agent_net_spec *dst, const agent_net_spec *src);
/* Equality of what a request asked (address and MAC only when it named them). */
bool agent_net_spec_eq_request(const agent_net_spec *have, const agent_net_spec *req);
void agent_net_spec_to_json(struct cJSON *parent, const agent_net_spec *s);
void agent_net_spec_from_json(const struct cJSON *parent, agent_net_spec *s);

/* Text forms. */
int agent_net_parse_ipv4(const char *s, uint32_t *out); /* 0 ok, -1 bad */
void agent_net_format_ipv4(uint32_t a, char out[16]);
int agent_net_parse_cidr(const char *s, uint32_t *addr, int *prefix);
uint32_t agent_net_mask(int prefix);                        /* /16 -> 0xFFFF0000 */
bool agent_net_in(uint32_t a, uint32_t subnet, int prefix); /* a in subnet/prefix */
void agent_network_def_free(agent_network_def *d);
void agent_network_def_copy(agent_network_def *dst, const agent_network_def *src);

typedef struct agent_net agent_net;

int agent_net_new(const agent_net_config *cfg, agent_net **out, cmn_error *err);
void agent_net_free(agent_net *n);

/* Create: checks s against the configuration (network known, forwards sane)
 * and allocates under `id`: the address (the given one when free), the MAC,
 * the veth pair (with netns), after checking that no other instance forwards
 * the same host port. Fills s. INVALID_ARGUMENT, NOT_FOUND (no such network),
 * ALREADY_EXISTS (address, MAC or host port taken: names who has it),
 * RESOURCE_EXHAUSTED (no free address). */
int agent_net_alloc(agent_net *n, const char *id, agent_net_spec *s, cmn_error *err);
/* Start-up: takes a loaded record's allocation as it is. Fails (and claims
 * nothing) when it collides with one already claimed. */
int agent_net_claim(agent_net *n, const char *id, const agent_net_spec *s, cmn_error *err);
/* Forgets id's allocation (no host change). */
void agent_net_release(agent_net *n, const char *id);

/* Makes id's host objects and the host rules match (idempotent). */
int agent_net_ensure(agent_net *n, const char *id, cmn_error *err);
/* Removes id's host objects, releases its allocation and updates the rules. */
int agent_net_remove(agent_net *n, const char *id, cmn_error *err);
/* Start-up, after every record was claimed: makes the host match (missing
 * objects made, orphans removed, rules replaced). Does nothing (not even
 * reads beyond /sys and the namespace folder) when no instance uses a network
 * and nothing of ember's is left on the host. *created / *removed count. */
int agent_net_reconcile(agent_net *n, int *created, int *removed, cmn_error *err);

/* Right before a VMM spawns: ensures id's host objects, inserts the managed
 * interface into spec (a driver spec the caller owns) at its index, with the
 * TAP's name and the MAC, and returns the namespace file the VMM must run in
 * (caller frees; NULL without a namespace). A no-op without a network. */
int agent_net_vm_begin(agent_net *n, const char *id, const agent_net_spec *s, vmm_spec *spec,
                       char **netns_path, cmn_error *err);

/* What the API shows (ember.v1.NetworkStatus). Strings in fixed buffers. */
typedef struct agent_net_status {
  char network[64];
  char ipv4[24]; /* "a.b.c.d/p" */
  char gateway[16];
  char mac[18];
  char tap[16];
  char netns[32];
  char host_address[16];
} agent_net_status;
int agent_net_describe(const char *id, const agent_net_spec *s, agent_net_status *out);

/* For the boot config: the guest's address, prefix, gateway, MTU and DNS. */
typedef struct agent_net_guest {
  char mac[18];
  uint32_t ipv4;
  int prefix;
  uint32_t gateway;
  uint32_t mtu;
  uint32_t dns[AGENT_NET_MAX_DNS];
  size_t n_dns;
} agent_net_guest;
int agent_net_guest_config(agent_net *n, const agent_net_spec *s, agent_net_guest *out,
                           cmn_error *err);

/* ListNetworks: a copy of each network with the addresses in use. */
typedef struct agent_net_info {
  agent_network_def def; /* strings owned by the array */
  uint32_t used;
  uint32_t total;
} agent_net_info;
int agent_net_list(agent_net *n, agent_net_info **out, size_t *n_out);
void agent_net_info_free(agent_net_info *a, size_t n);

#endif
