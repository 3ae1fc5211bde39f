/* network_stub.c: TEMPORARY stand-in for ListNetworks on the ctlnet branch,
 * so emberd links with the rpc_table.h row emberctl needs. The lead's server
 * side replaces it (drop this file and its line in server.cmake). */
#include "agent/server/internal.h"

int srv_unary_list_networks(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                            uint8_t **resp, size_t *rl, cmn_error *err)
{
  (void)s;
  (void)probe;
  (void)req;
  (void)len;
  (void)resp;
  (void)rl;
  return cmn_err_set(err, CMN_UNIMPLEMENTED, "ListNetworks: this emberd manages no networks yet");
}
