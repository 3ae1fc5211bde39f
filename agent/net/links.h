/* links.h: network links, IPv4 addresses and routes through rtnetlink
 * (libnl-route-3), never by running `ip`.
 *
 * A net_nl is a route netlink socket; it lives in the network namespace of
 * the thread that opened it (use net_in_netns, netns.h, to work inside another
 * namespace). Functions that make or remove something return 1 when they did,
 * 0 when there was nothing to do, and -1 with err filled on failure. Addresses
 * are IPv4 in host byte order. Not thread-safe: one net_nl per thread. */
#ifndef EMBER_AGENT_NET_LINKS_H
#define EMBER_AGENT_NET_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/net/net.h"
#include "common/error.h"

typedef struct net_nl net_nl;

#define NET_LINK_KIND_MAX 32
#define NET_LINK_ALIAS_MAX 128

/* What a link looks like (for checks and tests). */
typedef struct net_link_info {
  char name[NET_IFNAME_MAX];
  char kind[NET_LINK_KIND_MAX];   /* "bridge", "veth", "tun", ... ("" for none) */
  char alias[NET_LINK_ALIAS_MAX]; /* IFLA_IFALIAS ("" for none) */
  int ifindex;
  int master;     /* ifindex of the master (bridge), 0 for none */
  int peer;       /* IFLA_LINK: a veth's peer ifindex (in the peer's namespace), 0 unknown */
  unsigned flags; /* IFF_* */
  unsigned mtu;
} net_link_info;

typedef struct net_addr4 {
  uint32_t addr;
  int prefix;
} net_addr4;

/* Opens a route netlink socket in the calling thread's network namespace. */
int net_nl_open(net_nl **out, cmn_error *err);
void net_nl_close(net_nl *nl);

/* 1 and *out filled when the link exists, 0 when not, -1 on error. */
int net_link_get(net_nl *nl, const char *name, net_link_info *out, cmn_error *err);
/* Names of every link whose name starts with prefix ("" for all). */
int net_link_list(net_nl *nl, const char *prefix, char ***names, size_t *n, cmn_error *err);

/* A bridge `name`: created when missing (alias `alias` when not NULL, MTU `mtu`
 * when not 0; see NET_BRIDGE_TMP_PREFIX); an existing bridge keeps its alias; the MTU is set when
 * it differs. A link of another kind with that name: ALREADY_EXISTS. Not set up. */
int net_link_ensure_bridge(net_nl *nl, const char *name, const char *alias, uint32_t mtu,
                           cmn_error *err);
/* A bridge being made is named NET_BRIDGE_TMP_PREFIX + 12 hex digits (a hash
 * of its final name) until it carries its alias; a link with such a name is
 * a leftover of a crash, for a reconcile to remove. */
#define NET_BRIDGE_TMP_PREFIX "emx"
void net_bridge_tmp_name(const char *bridge, char out[NET_IFNAME_MAX]);

/* Sets alias/MTU/up/master when they differ (1 when something changed). */
int net_link_set_alias(net_nl *nl, const char *name, const char *alias, cmn_error *err);
int net_link_set_mtu(net_nl *nl, const char *name, uint32_t mtu, cmn_error *err);
int net_link_set_up(net_nl *nl, const char *name, cmn_error *err);
/* master NULL: detach from any master. */
int net_link_set_master(net_nl *nl, const char *name, const char *master, cmn_error *err);
/* Deletes the link; a missing one is fine (0). */
int net_link_delete(net_nl *nl, const char *name, cmn_error *err);
/* A veth pair: `name` here, `peer` created directly in the namespace of
 * peer_netns_fd (IFLA_NET_NS_FD; -1: here too). MTU of both when not 0.
 * Either name taken: ALREADY_EXISTS. */
int net_link_add_veth(net_nl *nl, const char *name, const char *peer, int peer_netns_fd,
                      uint32_t mtu, cmn_error *err);

/* The IPv4 address addr/prefix on the link: added when missing; the same
 * address with another prefix is replaced. */
int net_addr_ensure(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err);
/* The same, and every other IPv4 address of the link removed (for links that
 * are ember's alone). 1 when something changed. */
int net_addr_ensure_only(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err);
/* Removes addr/prefix from the link: 1 when it was there, 0 when not (or
 * when the link is missing). */
int net_addr_remove(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err);
/* IPv4 addresses of the link, at most max (*n may be larger: the count). */
int net_addr_list(net_nl *nl, const char *name, net_addr4 *out, size_t max, size_t *n,
                  cmn_error *err);

/* The main table's IPv4 default route via gw: added, or replaced when it goes
 * elsewhere. */
int net_route_ensure_default(net_nl *nl, uint32_t gw, cmn_error *err);
/* 1 and *gw when the main table has an IPv4 default route via a gateway. */
int net_route_get_default(net_nl *nl, uint32_t *gw, cmn_error *err);

#endif
