/* network.c: the network parts of ember.v1 (NetworkInterface.network,
 * PortForward, NetworkStatus, ListNetworks) converted to and from the agent's
 * types (instance_net.h). */
#include "agent/instance_net.h"
#include "agent/manager.h"
#include "agent/server/internal.h"
#include "common/mem.h"
#include "ember/v1/instance.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *srv_net_s(const char *s) { return (char *)(s != NULL ? s : ""); }

/* INVALID_ARGUMENT "<field> <what>", with the field in the error details. */
static int srv_net_bad(cmn_error *err, const char *field, const char *what)
{
  cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s %s", field, what);
  return cmn_err_field(err, field);
}

int srv_net_from_request(const Ember__V1__InstanceSpec *in, vmm_spec *spec, agent_net_spec *out,
                         cmn_error *err)
{
  memset(out, 0, sizeof *out);
  char field[160];
  size_t k = 0; /* interfaces kept in spec->nics */
  for (size_t i = 0; i < in->n_network_interfaces; i++) {
    const Ember__V1__NetworkInterface *ni = in->network_interfaces[i];
    bool managed = ni->network[0] != '\0';
    if (!managed) {
      snprintf(field, sizeof field, "spec.network_interfaces[%zu]", i);
      if (ni->ipv4_address[0] != '\0' || ni->n_port_forwards > 0)
        return srv_net_bad(err, field,
                           "names no network: ipv4_address and port_forwards need one (an "
                           "interface on a caller's TAP device is not managed by emberd)");
      if (spec->nics != NULL && k != i)
        spec->nics[k] = spec->nics[i];
      k++;
      continue;
    }
    if (spec->nics != NULL && i < spec->n_nics) { /* not the driver's: emberd makes it */
      free(spec->nics[i].tap);
      free(spec->nics[i].mac);
      spec->nics[i] = (vmm_nic){0};
    }
    snprintf(field, sizeof field, "spec.network_interfaces[%zu].network", i);
    if (agent_net_spec_set(out)) {
      agent_net_spec_free(out);
      return srv_net_bad(err, field,
                         "is a second network: at most one interface of an instance "
                         "may name a network");
    }
    if (ni->tap_device[0] != '\0') {
      snprintf(field, sizeof field, "spec.network_interfaces[%zu].tap_device", i);
      return srv_net_bad(err, field, "must be empty with a network (emberd makes the TAP device)");
    }
    if (strlen(ni->network) > 63)
      return srv_net_bad(err, field, "is longer than 63 characters");
    out->network = cmn_strdup(ni->network);
    out->nic_index = i;
    if (ni->ipv4_address[0] != '\0') {
      snprintf(field, sizeof field, "spec.network_interfaces[%zu].ipv4_address", i);
      if (agent_net_parse_ipv4(ni->ipv4_address, &out->ipv4) < 0) {
        agent_net_spec_free(out);
        return srv_net_bad(err, field, "must be an IPv4 address such as 10.77.0.9");
      }
      out->ipv4_given = true;
    }
    if (ni->mac_address[0] != '\0') {
      out->mac = cmn_strdup(ni->mac_address);
      out->mac_given = true;
    }
    if (ni->n_port_forwards > AGENT_NET_MAX_FORWARDS) {
      snprintf(field, sizeof field, "spec.network_interfaces[%zu].port_forwards", i);
      agent_net_spec_free(out);
      return srv_net_bad(err, field, "holds more than 64 port forwards");
    }
    out->forwards = cmn_calloc(ni->n_port_forwards + 1, sizeof *out->forwards);
    for (size_t f = 0; f < ni->n_port_forwards; f++) {
      const Ember__V1__PortForward *pf = ni->port_forwards[f];
      agent_port_forward *d = &out->forwards[out->n_forwards++];
      d->proto = (int)pf->protocol;
      d->host_port = pf->host_port;
      d->guest_port = pf->guest_port;
      if (pf->host_address[0] != '\0' &&
          agent_net_parse_ipv4(pf->host_address, &d->host_addr) < 0) {
        snprintf(field, sizeof field,
                 "spec.network_interfaces[%zu].port_forwards[%zu].host_address", i, f);
        agent_net_spec_free(out);
        return srv_net_bad(err, field, "must be an IPv4 address of this host");
      }
    }
  }
  if (spec->nics != NULL && k < spec->n_nics) {
    for (size_t i = k; i < spec->n_nics; i++)
      spec->nics[i] = (vmm_nic){0};
    spec->n_nics = k;
  }
  out->netns = in->network_namespace;
  if (out->netns && !agent_net_spec_set(out))
    return srv_net_bad(err, "spec.network_namespace",
                       "needs an interface on a network (NetworkInterface.network)");
  return 0;
}

/* ---- output ---- */

static void srv_net_forwards_fill(const agent_net_spec *s, srv_net_out *o)
{
  o->fw = cmn_calloc(s->n_forwards + 1, sizeof *o->fw);
  o->fw_ptrs = cmn_calloc(s->n_forwards + 1, sizeof *o->fw_ptrs);
  for (size_t i = 0; i < s->n_forwards; i++) {
    ember__v1__port_forward__init(&o->fw[i]);
    o->fw[i].protocol = (Ember__V1__Protocol)s->forwards[i].proto;
    o->fw[i].host_port = s->forwards[i].host_port;
    o->fw[i].guest_port = s->forwards[i].guest_port;
    if (s->forwards[i].host_addr != 0) {
      agent_net_format_ipv4(s->forwards[i].host_addr, o->fw_addr[i < SRV_NET_FW_ADDRS ? i : 0]);
      o->fw[i].host_address = o->fw_addr[i < SRV_NET_FW_ADDRS ? i : 0];
    } else {
      o->fw[i].host_address = o->empty;
    }
    o->fw_ptrs[i] = &o->fw[i];
  }
}

void srv_net_out_init(srv_net_out *o, const char *id, const agent_net_spec *s)
{
  memset(o, 0, sizeof *o);
  if (!agent_net_spec_set(s))
    return;
  o->set = true;
  agent_net_describe(id, s, &o->st);
  srv_net_forwards_fill(s, o);
  /* the interface as the request gave it */
  ember__v1__network_interface__init(&o->nic);
  o->nic.network = srv_net_s(s->network);
  o->nic.mac_address = s->mac_given ? srv_net_s(s->mac) : o->empty;
  if (s->ipv4_given)
    agent_net_format_ipv4(s->ipv4, o->given_ip);
  o->nic.ipv4_address = o->given_ip;
  o->nic.port_forwards = o->fw_ptrs;
  o->nic.n_port_forwards = s->n_forwards;
  /* the status */
  ember__v1__network_status__init(&o->status);
  o->status.network = o->st.network;
  o->status.ipv4_address = o->st.ipv4;
  o->status.gateway = o->st.gateway;
  o->status.mac_address = o->st.mac;
  o->status.tap_device = o->st.tap;
  o->status.namespace_ = o->st.netns;
  o->status.host_address = o->st.host_address;
  o->status.port_forwards = o->fw_ptrs;
  o->status.n_port_forwards = s->n_forwards;
}

void srv_net_out_fini(srv_net_out *o)
{
  free(o->fw);
  free(o->fw_ptrs);
  memset(o, 0, sizeof *o);
}

/* ---- ListNetworks ---- */

int srv_unary_list_networks(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                            uint8_t **resp, size_t *rl, cmn_error *err)
{
  (void)probe;
  Ember__V1__ListNetworksRequest *r =
      srv_unpack(&ember__v1__list_networks_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  protobuf_c_message_free_unpacked(&r->base, NULL);
  agent_net_info *info = NULL;
  size_t n = 0;
  agent_net_list(agent_manager_net(s->mgr), &info, &n);
  Ember__V1__Network *nets = cmn_calloc(n + 1, sizeof *nets);
  Ember__V1__Network **ptrs = cmn_calloc(n + 1, sizeof *ptrs);
  char(*txt)[4][24] = cmn_calloc(n + 1, sizeof *txt);
  char(*dns)[AGENT_NET_MAX_DNS][16] = cmn_calloc(n + 1, sizeof *dns);
  char *(*dns_ptrs)[AGENT_NET_MAX_DNS] = cmn_calloc(n + 1, sizeof *dns_ptrs);
  for (size_t i = 0; i < n; i++) {
    const agent_network_def *d = &info[i].def;
    ember__v1__network__init(&nets[i]);
    char ip[16];
    agent_net_format_ipv4(d->subnet, ip);
    snprintf(txt[i][0], sizeof txt[i][0], "%s/%d", ip, d->prefix);
    agent_net_format_ipv4(d->gateway, txt[i][1]);
    nets[i].name = srv_net_s(d->name);
    nets[i].subnet = txt[i][0];
    nets[i].gateway = txt[i][1];
    nets[i].bridge = srv_net_s(d->bridge);
    nets[i].nat = d->nat;
    nets[i].isolated = d->isolated;
    nets[i].mtu = d->mtu;
    for (size_t k = 0; k < d->n_dns; k++) {
      agent_net_format_ipv4(d->dns[k], dns[i][k]);
      dns_ptrs[i][k] = dns[i][k];
    }
    nets[i].dns_servers = dns_ptrs[i];
    nets[i].n_dns_servers = d->n_dns;
    nets[i].addresses_used = info[i].used;
    nets[i].addresses_total = info[i].total;
    ptrs[i] = &nets[i];
  }
  /* ordered by name */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && strcmp(ptrs[j - 1]->name, ptrs[j]->name) > 0; j--) {
      Ember__V1__Network *t = ptrs[j];
      ptrs[j] = ptrs[j - 1];
      ptrs[j - 1] = t;
    }
  Ember__V1__ListNetworksResponse out = EMBER__V1__LIST_NETWORKS_RESPONSE__INIT;
  out.networks = ptrs;
  out.n_networks = n;
  int rc = srv_pack(&out.base, resp, rl);
  free(nets);
  free(ptrs);
  free(txt);
  free(dns);
  free(dns_ptrs);
  agent_net_info_free(info, n);
  return rc;
}
