/* nft.h: ember's nftables tables, rendered from the desired state and applied
 * with libnftables (Debian libnftables-dev; pkg-config libnftables), never
 * touching any other table (docs/networking.md).
 *
 * Rendering is pure: the same state gives the same text, byte for byte
 * (networks sorted by name, endpoints by key, forwards by port), every rule
 * commented with the network or the instance key it serves. Every name,
 * address, prefix, port and protocol is checked before it reaches the text
 * (names [A-Za-z0-9_.-] only), so nothing a caller passes can add a rule of
 * its own: bad input is CMN_INVALID_ARGUMENT naming the field, two forwards of
 * one host port CMN_ALREADY_EXISTS.
 *
 * The rendered text is one transaction that creates or replaces ember's
 * tables ("add table inet ember / delete table inet ember / table inet ember
 * {...}"), so applying it twice gives the same ruleset, never duplicates.
 *
 * Host (net_nft_render_host): `table inet ember` with
 *   prerouting (nat, dstnat) and output (nat, -100): port forwards,
 *     `fib daddr type local [ip daddr <host_addr>] tcp|udp dport P
 *      dnat ip to <guest_ip or veth_ns_ip>:<guest_port>`;
 *   postrouting (nat, srcnat): masquerade of each nat network leaving its
 *     subnet, of DNAT'd flows inside a subnet (a guest reaching a forward of
 *     the host), of each namespaced endpoint's veth_ns_ip (nat networks) unless
 *     it goes to another ember veth, and of loopback-sourced DNAT'd flows
 *     (a forward used from the host at 127.0.0.1, when the host enables
 *     net.ipv4.conf.all.route_localnet);
 *   forward (filter, policy accept): established/related and DNAT'd flows
 *     accepted (a forward is public), then, for each isolated network,
 *     routing between two of its interfaces dropped: its bridge (a guest
 *     sending another guest's packet to the gateway) and its namespaced
 *     endpoints' veths "emv<key>".
 * and, when a network is isolated, `table bridge ember` whose forward chain
 * drops frames bridged between two ember TAPs of an isolated network (by
 * interface names, so it needs no bridge meta support in the kernel; the
 * gateway is the bridge itself, never forwarded to, so it stays reachable).
 *
 * Namespace (net_nft_render_ns, applied inside "ember-<key>"): `table inet
 * ember` with `oifname "veth0" ip saddr <guest_ip> snat ip to <veth_ns_ip>`
 * and `iifname "veth0" ip daddr <veth_ns_ip> dnat ip to <guest_ip>`, so the
 * host reaches the guest at veth_ns_ip on every port.
 *
 * libnftables is driven through a fresh context per call in the calling
 * thread, so every call acts on the calling thread's network namespace. */
#ifndef EMBER_AGENT_NET_NFT_H
#define EMBER_AGENT_NET_NFT_H

#include <stddef.h>

#include "net.h"
#include "common/error.h"

/* The host's tables for these networks and endpoints (every endpoint's
 * network among nets). Caller frees. NULL and err on bad input. */
char *net_nft_render_host(const net_network *nets, size_t n_nets, const net_endpoint *eps,
                          size_t n_eps, cmn_error *err);
/* The table of the namespace of ep (ep->netns set) on net. Caller frees. */
char *net_nft_render_ns(const net_network *net, const net_endpoint *ep, cmn_error *err);
/* Makes ember's tables in the calling thread's network namespace exactly the
 * ones rules (a render above) defines, in one transaction: all or nothing.
 * An ember table rules does not define (the bridge table once no network is
 * isolated) is deleted in the same transaction. Other tables are untouched.
 * CMN_PERMISSION_DENIED without CAP_NET_ADMIN, CMN_INTERNAL with nft's error
 * otherwise. */
int net_nft_apply(const char *rules, cmn_error *err);
/* Deletes ember's tables (inet and bridge "ember") in the calling thread's
 * namespace, in one transaction; 0 when there are none. */
int net_nft_delete(cmn_error *err);
/* nft's listing of ember's tables in the calling thread's namespace (inet,
 * then bridge when present); "" when there are none. Caller frees. */
char *net_nft_list(cmn_error *err);

#endif
