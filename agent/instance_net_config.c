/* instance_net_config.c: the managed networks' configuration and the IPv4
 * text forms (instance_net.h). Its own file, without host dependencies, so
 * that config.c (ember_agent_config) links it alone. */
#include "agent/instance_net.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/net/net.h"
#include "common/mem.h"

/* ---- text forms ---- */

int agent_net_parse_ipv4(const char *s, uint32_t *out)
{
  struct in_addr a;
  if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
    return -1;
  *out = ntohl(a.s_addr);
  return 0;
}

void agent_net_format_ipv4(uint32_t a, char out[16])
{
  snprintf(out, 16, "%u.%u.%u.%u", (a >> 24) & 255u, (a >> 16) & 255u, (a >> 8) & 255u, a & 255u);
}

int agent_net_parse_cidr(const char *s, uint32_t *addr, int *prefix)
{
  if (s == NULL)
    return -1;
  const char *slash = strchr(s, '/');
  if (slash == NULL || slash - s >= 16 || slash[1] == '\0' || strlen(slash + 1) > 2)
    return -1;
  char ip[16];
  memcpy(ip, s, (size_t)(slash - s));
  ip[slash - s] = '\0';
  int p = 0;
  for (const char *c = slash + 1; *c; c++) {
    if (*c < '0' || *c > '9')
      return -1;
    p = p * 10 + (*c - '0');
  }
  if (p > 32 || agent_net_parse_ipv4(ip, addr) < 0)
    return -1;
  *prefix = p;
  return 0;
}

uint32_t agent_net_mask(int prefix)
{
  return prefix <= 0 ? 0u : (prefix >= 32 ? 0xFFFFFFFFu : ~((1u << (32 - prefix)) - 1u));
}

bool agent_net_in(uint32_t a, uint32_t subnet, int prefix)
{
  return (a & agent_net_mask(prefix)) == subnet;
}

static bool net_overlap(uint32_t a, int pa, uint32_t b, int pb)
{
  int p = pa < pb ? pa : pb;
  return (a & agent_net_mask(p)) == (b & agent_net_mask(p));
}

/* ---- configuration ---- */

void agent_network_def_free(agent_network_def *d)
{
  free(d->name);
  free(d->bridge);
  memset(d, 0, sizeof *d);
}

void agent_network_def_copy(agent_network_def *dst, const agent_network_def *src)
{
  *dst = *src;
  dst->name = cmn_strdup(src->name);
  dst->bridge = cmn_strdup(src->bridge);
}

void agent_net_config_free(agent_net_config *c)
{
  for (size_t i = 0; i < c->n_nets; i++)
    agent_network_def_free(&c->nets[i]);
  free(c->nets);
  free(c->netns_dir);
  memset(c, 0, sizeof *c);
}

void agent_net_config_copy(agent_net_config *dst, const agent_net_config *src)
{
  *dst = *src;
  dst->nets = src->n_nets ? cmn_calloc(src->n_nets, sizeof *dst->nets) : NULL;
  for (size_t i = 0; i < src->n_nets; i++)
    agent_network_def_copy(&dst->nets[i], &src->nets[i]);
  dst->netns_dir = cmn_strdup(src->netns_dir);
}

void agent_net_config_default(agent_net_config *c)
{
  memset(c, 0, sizeof *c);
  c->nets = cmn_calloc(1, sizeof *c->nets);
  c->n_nets = 1;
  agent_network_def *d = &c->nets[0];
  d->name = cmn_strdup(AGENT_NET_DEFAULT_NAME);
  d->bridge = cmn_strdup(AGENT_NET_DEFAULT_BRIDGE);
  (void)agent_net_parse_cidr(AGENT_NET_DEFAULT_SUBNET, &d->subnet, &d->prefix);
  d->gateway = d->subnet + 1;
  d->mtu = 1500;
  d->nat = true;
  (void)agent_net_parse_cidr(AGENT_NET_DEFAULT_TRANSIT, &c->transit_subnet, &c->transit_prefix);
}

static bool net_name_ok(const char *s, size_t max)
{
  size_t n = s != NULL ? strlen(s) : 0;
  if (n == 0 || n > max)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!alnum && !(i > 0 && (ch == '-' || ch == '_' || ch == '.')))
      return false;
  }
  return true;
}

int agent_net_config_check(const agent_net_config *c, cmn_error *err)
{
  if (c->transit_prefix < 8 || c->transit_prefix > 30 ||
      (c->transit_subnet & ~agent_net_mask(c->transit_prefix)) != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "netns_transit_subnet must be a subnet with a prefix of 8 to 30");
  for (size_t i = 0; i < c->n_nets; i++) {
    const agent_network_def *d = &c->nets[i];
    if (!net_name_ok(d->name, 63))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].name must be 1 to 63 characters of [A-Za-z0-9._-]", i);
    if (!net_name_ok(d->bridge, 15) || strncmp(d->bridge, NET_TAP_PREFIX, 3) == 0 ||
        strncmp(d->bridge, NET_VETH_PREFIX, 3) == 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].bridge must be 1 to 15 characters of [A-Za-z0-9._-], not "
                         "starting with " NET_TAP_PREFIX " or " NET_VETH_PREFIX,
                         i);
    if (d->prefix < 8 || d->prefix > 30 || (d->subnet & ~agent_net_mask(d->prefix)) != 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].subnet must be a network address with a prefix of 8 to 30",
                         i);
    uint32_t bcast = d->subnet | ~agent_net_mask(d->prefix);
    if (!agent_net_in(d->gateway, d->subnet, d->prefix) || d->gateway == d->subnet ||
        d->gateway == bcast)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].gateway must be a host address of its subnet", i);
    if (d->mtu < 68 || d->mtu > 65535)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].mtu must be 68 to 65535", i);
    if (net_overlap(d->subnet, d->prefix, c->transit_subnet, c->transit_prefix))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].subnet overlaps netns_transit_subnet", i);
    for (size_t j = 0; j < i; j++) {
      const agent_network_def *o = &c->nets[j];
      if (strcmp(o->name, d->name) == 0)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].name %s is used twice", i,
                           d->name);
      if (strcmp(o->bridge, d->bridge) == 0)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].bridge %s is used twice", i,
                           d->bridge);
      if (net_overlap(o->subnet, o->prefix, d->subnet, d->prefix))
        return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                           "networks[%zu].subnet overlaps the subnet of network %s", i, o->name);
    }
  }
  return 0;
}

static int net_json_ipv4(const cJSON *o, const char *key, size_t i, uint32_t *out, cmn_error *err)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(it) || agent_net_parse_ipv4(it->valuestring, out) < 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].%s must be an IPv4 address", i,
                       key);
  return 0;
}

static int net_json_bool(const cJSON *o, const char *key, size_t i, bool *out, cmn_error *err)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (it == NULL)
    return 0;
  if (!cJSON_IsBool(it))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].%s must be true or false", i, key);
  *out = cJSON_IsTrue(it);
  return 0;
}

static int net_def_from_json(const cJSON *o, size_t i, agent_network_def *d, cmn_error *err)
{
  static const char *const keys[] = {"name", "bridge",   "subnet", "gateway", "mtu",
                                     "nat",  "isolated", "dns",    NULL};
  if (!cJSON_IsObject(o))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu] must be an object", i);
  for (const cJSON *it = o->child; it != NULL; it = it->next) {
    bool known = false;
    for (size_t k = 0; keys[k] != NULL; k++)
      known = known || strcmp(it->string, keys[k]) == 0;
    if (!known)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu]: unknown key \"%.64s\"", i,
                         it->string);
  }
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
  const cJSON *bridge = cJSON_GetObjectItemCaseSensitive(o, "bridge");
  const cJSON *subnet = cJSON_GetObjectItemCaseSensitive(o, "subnet");
  if (!cJSON_IsString(name) || !cJSON_IsString(bridge) || !cJSON_IsString(subnet))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "networks[%zu] needs \"name\", \"bridge\" and \"subnet\" (strings)", i);
  d->name = cmn_strdup(name->valuestring);
  d->bridge = cmn_strdup(bridge->valuestring);
  if (agent_net_parse_cidr(subnet->valuestring, &d->subnet, &d->prefix) < 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "networks[%zu].subnet must be an IPv4 subnet such as 10.77.0.0/16", i);
  d->gateway = d->subnet + 1;
  if (cJSON_GetObjectItemCaseSensitive(o, "gateway") != NULL &&
      net_json_ipv4(o, "gateway", i, &d->gateway, err) < 0)
    return -1;
  d->mtu = 1500;
  const cJSON *mtu = cJSON_GetObjectItemCaseSensitive(o, "mtu");
  if (mtu != NULL) {
    if (!cJSON_IsNumber(mtu) || mtu->valuedouble < 68 || mtu->valuedouble > 65535)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks[%zu].mtu must be 68 to 65535", i);
    d->mtu = (uint32_t)mtu->valuedouble;
  }
  d->nat = true;
  if (net_json_bool(o, "nat", i, &d->nat, err) < 0 ||
      net_json_bool(o, "isolated", i, &d->isolated, err) < 0)
    return -1;
  const cJSON *dns = cJSON_GetObjectItemCaseSensitive(o, "dns");
  if (dns != NULL) {
    if (!cJSON_IsArray(dns) || cJSON_GetArraySize(dns) > AGENT_NET_MAX_DNS)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "networks[%zu].dns must be a list of at most %d IPv4 addresses", i,
                         AGENT_NET_MAX_DNS);
    for (const cJSON *it = dns->child; it != NULL; it = it->next)
      if (!cJSON_IsString(it) || agent_net_parse_ipv4(it->valuestring, &d->dns[d->n_dns++]) < 0)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                           "networks[%zu].dns must be a list of IPv4 addresses", i);
  }
  return 0;
}

int agent_net_config_from_json(agent_net_config *c, const cJSON *root, cmn_error *err)
{
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "netns_transit_subnet");
  if (tr != NULL &&
      (!cJSON_IsString(tr) ||
       agent_net_parse_cidr(tr->valuestring, &c->transit_subnet, &c->transit_prefix) < 0))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "netns_transit_subnet must be an IPv4 subnet such as 10.78.0.0/16");
  const cJSON *nets = cJSON_GetObjectItemCaseSensitive(root, "networks");
  if (nets != NULL) {
    if (!cJSON_IsArray(nets))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks must be a list of objects");
    size_t n = (size_t)cJSON_GetArraySize(nets);
    if (n > 64)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks: at most 64 networks");
    agent_network_def *defs = n ? cmn_calloc(n, sizeof *defs) : NULL;
    size_t i = 0;
    for (const cJSON *it = nets->child; it != NULL; it = it->next, i++)
      if (net_def_from_json(it, i, &defs[i], err) < 0) {
        for (size_t k = 0; k <= i && k < n; k++)
          agent_network_def_free(&defs[k]);
        free(defs);
        return -1;
      }
    for (size_t k = 0; k < c->n_nets; k++)
      agent_network_def_free(&c->nets[k]);
    free(c->nets);
    c->nets = defs;
    c->n_nets = n;
  }
  return agent_net_config_check(c, err);
}
