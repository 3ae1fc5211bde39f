/* tap.h: persistent TAP devices (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), made in
 * the calling thread's network namespace; a VMM opens them by name later. */
#ifndef EMBER_AGENT_NET_TAP_H
#define EMBER_AGENT_NET_TAP_H

#include "agent/net/links.h"
#include "common/error.h"

/* The persistent TAP `name`: 1 when created, 0 when it already exists as a
 * TAP (also when a VMM holds it open); a link of another kind (or a TUN) with
 * that name: ALREADY_EXISTS. nl is a socket of the same namespace. */
int net_tap_ensure(net_nl *nl, const char *name, cmn_error *err);
/* Deletes the TAP (through netlink); missing is fine (0). */
int net_tap_delete(net_nl *nl, const char *name, cmn_error *err);

#endif
