/* nft_stub.c: TEMPORARY no-op stand-in for nft.c (branch nftrules): renders
 * empty rule sets and applies nothing. See nft_stub.h. */
#include "agent/net/nft_stub.h"
#include "common/mem.h"

char *net_nft_render_host(const net_network *nets, size_t n_nets, const net_endpoint *eps,
                          size_t n_eps, cmn_error *err)
{
  return cmn_strdup("");
}

char *net_nft_render_ns(const net_network *net, const net_endpoint *ep, cmn_error *err)
{
  return cmn_strdup("");
}

int net_nft_apply(const char *rules, cmn_error *err) { return 0; }

int net_nft_delete(cmn_error *err) { return 0; }

char *net_nft_list(cmn_error *err) { return cmn_strdup(""); }
