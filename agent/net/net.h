/* net.h: ember's host networking, the desired state the agent computes and the
 * host objects that realise it (docs/networking.md).
 *
 * The agent core owns the state (networks from the config, each instance's
 * address, MAC and port forwards in its record); this library only makes the
 * host match it: Linux bridges with a gateway address, persistent TAP devices,
 * optional per-instance network namespaces joined to the host by a veth pair,
 * and ember's own nftables tables (`inet ember` on the host, and one in every
 * instance namespace), never touching anything else.
 *
 * Names of host objects derive from an endpoint's key (12 lowercase hex digits,
 * from the instance id), so a reconcile can tell ember's objects from others:
 *   TAP         "emt<key>"   (on the bridge, or inside the instance namespace)
 *   veth        "emv<key>"   (host end; the namespace end is "veth0")
 *   namespace   "ember-<key>" (a file in the namespace folder, /run/netns by
 *               default, so `ip netns exec ember-<key> ...` works)
 * Bridges are named by the config; ember marks the ones it made with the
 * interface alias NET_BRIDGE_ALIAS.
 *
 * Addresses are IPv4 in host byte order. */
#ifndef EMBER_AGENT_NET_NET_H
#define EMBER_AGENT_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define NET_KEY_LEN 12
#define NET_TAP_PREFIX "emt"
#define NET_VETH_PREFIX "emv"
#define NET_NETNS_PREFIX "ember-"
#define NET_NS_VETH "veth0"
#define NET_BRIDGE_ALIAS "ember-managed"
#define NET_NFT_TABLE "ember" /* family inet, on the host and in each namespace */
#define NET_IFNAME_MAX 16     /* IFNAMSIZ */
#define NET_NETNS_NAME_MAX 32

typedef enum net_proto {
  NET_PROTO_TCP = 1,
  NET_PROTO_UDP = 2,
} net_proto;

/* A managed network: a bridge with the gateway address. */
typedef struct net_network {
  const char *name;   /* "default" */
  const char *bridge; /* Linux bridge name, 1..15 chars */
  uint32_t subnet;    /* network address (host order) */
  int prefix;         /* 8..30 */
  uint32_t gateway;   /* gateway address on the bridge (host order) */
  uint32_t mtu;       /* 0: 1500 */
  bool nat;           /* masquerade traffic leaving the subnet */
  bool isolated;      /* instances of this network cannot reach each other */
} net_network;

/* Host port -> guest port. */
typedef struct net_forward {
  net_proto proto;
  uint16_t host_port;
  uint16_t guest_port;
  uint32_t host_addr; /* 0: any local address of the host */
} net_forward;

/* One instance's attachment to a network. */
typedef struct net_endpoint {
  const char *key;       /* NET_KEY_LEN lowercase hex digits */
  const char *network;   /* a net_network's name */
  uint32_t guest_ip;     /* the guest's address in the network */
  bool netns;            /* own namespace "ember-<key>" (else TAP on the bridge) */
  uint32_t veth_host_ip; /* with netns: host end of the veth pair (/31) */
  uint32_t veth_ns_ip;   /* with netns: namespace end; the host reaches the guest here */
  const net_forward *forwards;
  size_t n_forwards;
} net_endpoint;

/* Names (buffers of NET_IFNAME_MAX / NET_NETNS_NAME_MAX bytes). */
void net_tap_name(const char *key, char out[NET_IFNAME_MAX]);
void net_veth_name(const char *key, char out[NET_IFNAME_MAX]);
void net_netns_name(const char *key, char out[NET_NETNS_NAME_MAX]);
/* True when name is NET_TAP_PREFIX / NET_VETH_PREFIX / NET_NETNS_PREFIX + a key;
 * the key is copied to key_out (NET_KEY_LEN + 1 bytes) when not NULL. */
bool net_name_key(const char *name, const char *prefix, char *key_out);
/* True when key is NET_KEY_LEN lowercase hex digits. */
bool net_key_valid(const char *key);
/* Frees a list of names as the net_*_list functions return it (NULL is fine). */
void net_names_free(char **names, size_t n);

#endif
