/* hostnet.h: the host side of ember's networking, the one facade the agent
 * uses: it makes the host's bridges, TAPs, veth pairs, namespaces and nft
 * tables match the desired state (net.h) and removes ember's orphans.
 *
 * Every call is idempotent: what exists and is right is kept, what is wrong
 * is fixed, nothing is duplicated, so a crash between two steps leaves a
 * state the next call (or net_reconcile at start-up) completes. Calls may
 * come from several threads (a mutex serialises them); there is no global
 * state. Host objects are made in the calling thread's network namespace
 * (emberd's), namespace objects by short-lived threads inside it. */
#ifndef EMBER_AGENT_NET_HOSTNET_H
#define EMBER_AGENT_NET_HOSTNET_H

#include <stddef.h>

#include "agent/net/net.h"
#include "common/error.h"

typedef struct net_host net_host;

typedef struct net_host_opts {
  const char *netns_dir; /* NULL: /run/netns */
} net_host_opts;

/* What a call made or removed: links (bridges, TAPs, veth pairs) and
 * namespaces; addresses, routes, MTU, state and master fixes are not counted. */
typedef struct net_reconcile_report {
  int created;
  int removed;
} net_reconcile_report;

int net_host_open(const net_host_opts *o, net_host **out, cmn_error *err);
void net_host_close(net_host *h);
const char *net_host_netns_dir(const net_host *h);

/* The bridge n->bridge (alias NET_BRIDGE_ALIAS when created), the gateway
 * address gateway/prefix on it, its MTU, up; host ip_forward=1. */
int net_network_ensure(net_host *h, const net_network *n, cmn_error *err);

/* The network is no longer used: its bridge is deleted when ember made it
 * (alias NET_BRIDGE_ALIAS); a bridge someone else made only loses the
 * gateway address. Missing is fine. */
int net_network_remove(net_host *h, const net_network *n, cmn_error *err);

/* Without ep->netns: the persistent TAP emt<key> (MTU of the network), master
 * the network's bridge (ensured too), up.
 * With ep->netns: namespace ember-<key>; inside it the TAP emt<key> with the
 * guest's gateway address gateway/prefix, up; the veth pair emv<key> (host,
 * veth_host_ip/31, up) <-> veth0 (in the namespace, veth_ns_ip/31, up); the
 * namespace's default route via veth_host_ip; ip_forward=1 in it; its nft
 * table (net_nft_render_ns) applied inside it.
 * Objects of the other mode for the same key are removed. */
int net_endpoint_ensure(net_host *h, const net_network *n, const net_endpoint *ep, cmn_error *err);

/* Removes the TAP, veth pair and namespace of the key (whichever exist). */
int net_endpoint_remove(net_host *h, const char *key, cmn_error *err);

/* The host table: net_nft_render_host + net_nft_apply in the calling thread's
 * (emberd's) namespace. */
int net_rules_apply(net_host *h, const net_network *nets, size_t n_nets, const net_endpoint *eps,
                    size_t n_eps, cmn_error *err);

/* Deletes ember's host tables (net_nft_delete), e.g. once no instance uses a
 * network; none is fine. */
int net_rules_remove(net_host *h, cmn_error *err);

/* At start-up: ensures every network and endpoint, then removes orphans
 * (links emt<key>/emv<key> and namespaces ember-<key> whose key is not among
 * eps in that mode, bridges carrying NET_BRIDGE_ALIAS that are no network's
 * bridge, leftovers "emx<hash>" of a bridge being made: links.h), then
 * applies the host rules, or deletes ember's host tables when nets and eps
 * are both empty (an emberd without networked instances keeps no table). rep (may be NULL) counts
 * what was made and removed. Every endpoint's network must be among nets. */
int net_reconcile(net_host *h, const net_network *nets, size_t n_nets, const net_endpoint *eps,
                  size_t n_eps, net_reconcile_report *rep, cmn_error *err);

#endif
