/* nft_stub.h: TEMPORARY, until branch nftrules brings agent/net/nft.h and
 * nft.c: the same declarations, so hostnet.c builds and links on its own.
 * Delete this file and nft_stub.c when nft.c is merged (net.cmake picks
 * nft.c when it exists). */
#ifndef EMBER_AGENT_NET_NFT_STUB_H
#define EMBER_AGENT_NET_NFT_STUB_H

#include <stddef.h>

#include "agent/net/net.h"
#include "common/error.h"

char *net_nft_render_host(const net_network *nets, size_t n_nets, const net_endpoint *eps,
                          size_t n_eps, cmn_error *err);
char *net_nft_render_ns(const net_network *net, const net_endpoint *ep, cmn_error *err);
int net_nft_apply(const char *rules, cmn_error *err);
int net_nft_delete(cmn_error *err);
char *net_nft_list(cmn_error *err);

#endif
