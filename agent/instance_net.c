/* instance_net.c: the agent's side of managed networks (instance_net.h). */
#include "agent/instance_net.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/net/hostnet.h"
#include "agent/net/net.h"
#include "agent/net/nft.h"
#include "common/cleanup.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/mem.h"

/* ---- the spec ---- */

bool agent_net_spec_set(const agent_net_spec *s)
{
  return s != NULL && s->network != NULL && s->network[0] != '\0';
}

void agent_net_spec_free(agent_net_spec *s)
{
  free(s->network);
  free(s->mac);
  free(s->forwards);
  memset(s, 0, sizeof *s);
}

void agent_net_spec_copy(agent_net_spec *dst, const agent_net_spec *src)
{
  memset(dst, 0, sizeof *dst);
  if (!agent_net_spec_set(src))
    return;
  *dst = *src;
  dst->network = cmn_strdup(src->network);
  dst->mac = cmn_strdup(src->mac);
  dst->forwards = NULL;
  if (src->n_forwards > 0) {
    dst->forwards = cmn_calloc(src->n_forwards, sizeof *dst->forwards);
    memcpy(dst->forwards, src->forwards, src->n_forwards * sizeof *dst->forwards);
  }
}

static bool net_str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

bool agent_net_spec_eq_request(const agent_net_spec *have, const agent_net_spec *req)
{
  bool hs = agent_net_spec_set(have), rs = agent_net_spec_set(req);
  if (!hs || !rs)
    return hs == rs;
  if (!net_str_eq(have->network, req->network) || have->nic_index != req->nic_index ||
      have->netns != req->netns || have->n_forwards != req->n_forwards ||
      have->ipv4_given != req->ipv4_given || have->mac_given != req->mac_given)
    return false;
  if (req->ipv4_given && have->ipv4 != req->ipv4)
    return false;
  if (req->mac_given && strcasecmp(have->mac ? have->mac : "", req->mac ? req->mac : "") != 0)
    return false;
  for (size_t i = 0; i < req->n_forwards; i++)
    if (memcmp(&have->forwards[i], &req->forwards[i], sizeof req->forwards[i]) != 0)
      return false;
  return true;
}

void agent_net_spec_to_json(cJSON *parent, const agent_net_spec *s)
{
  if (!agent_net_spec_set(s))
    return;
  char ip[16];
  cJSON *o = cJSON_AddObjectToObject(parent, "net");
  cJSON_AddStringToObject(o, "network", s->network);
  cJSON_AddNumberToObject(o, "nic_index", (double)s->nic_index);
  agent_net_format_ipv4(s->ipv4, ip);
  cJSON_AddStringToObject(o, "ipv4", ip);
  cJSON_AddBoolToObject(o, "ipv4_given", s->ipv4_given);
  cJSON_AddNumberToObject(o, "prefix", s->prefix);
  agent_net_format_ipv4(s->gateway, ip);
  cJSON_AddStringToObject(o, "gateway", ip);
  cJSON_AddStringToObject(o, "mac", s->mac ? s->mac : "");
  cJSON_AddBoolToObject(o, "mac_given", s->mac_given);
  cJSON_AddBoolToObject(o, "netns", s->netns);
  if (s->netns) {
    agent_net_format_ipv4(s->veth_host_ip, ip);
    cJSON_AddStringToObject(o, "veth_host_ip", ip);
  }
  cJSON *fw = cJSON_AddArrayToObject(o, "forwards");
  for (size_t i = 0; i < s->n_forwards; i++) {
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "protocol", s->forwards[i].proto == 2 ? "udp" : "tcp");
    cJSON_AddNumberToObject(f, "host_port", s->forwards[i].host_port);
    cJSON_AddNumberToObject(f, "guest_port", s->forwards[i].guest_port);
    if (s->forwards[i].host_addr != 0) {
      agent_net_format_ipv4(s->forwards[i].host_addr, ip);
      cJSON_AddStringToObject(f, "host_address", ip);
    }
    cJSON_AddItemToArray(fw, f);
  }
}

static uint32_t net_json_u32(const cJSON *o, const char *key)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble <= 4294967295.0
             ? (uint32_t)it->valuedouble
             : 0;
}

static uint32_t net_json_ip(const cJSON *o, const char *key)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  uint32_t a = 0;
  if (cJSON_IsString(it))
    (void)agent_net_parse_ipv4(it->valuestring, &a);
  return a;
}

void agent_net_spec_from_json(const cJSON *parent, agent_net_spec *s)
{
  memset(s, 0, sizeof *s);
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, "net");
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "network");
  if (!cJSON_IsObject(o) || !cJSON_IsString(name))
    return;
  s->network = cmn_strdup(name->valuestring);
  s->nic_index = net_json_u32(o, "nic_index");
  s->ipv4 = net_json_ip(o, "ipv4");
  s->ipv4_given = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ipv4_given"));
  s->prefix = (int)net_json_u32(o, "prefix");
  s->gateway = net_json_ip(o, "gateway");
  const cJSON *mac = cJSON_GetObjectItemCaseSensitive(o, "mac");
  s->mac = cmn_strdup(cJSON_IsString(mac) ? mac->valuestring : "");
  s->mac_given = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "mac_given"));
  s->netns = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "netns"));
  s->veth_host_ip = net_json_ip(o, "veth_host_ip");
  const cJSON *fw = cJSON_GetObjectItemCaseSensitive(o, "forwards");
  int nf = cJSON_IsArray(fw) ? cJSON_GetArraySize(fw) : 0;
  if (nf > 0) {
    s->forwards = cmn_calloc((size_t)nf, sizeof *s->forwards);
    for (const cJSON *f = fw->child; f != NULL; f = f->next) {
      const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "protocol");
      agent_port_forward *d = &s->forwards[s->n_forwards++];
      d->proto = cJSON_IsString(p) && strcmp(p->valuestring, "udp") == 0 ? 2 : 1;
      d->host_port = net_json_u32(f, "host_port");
      d->guest_port = net_json_u32(f, "guest_port");
      d->host_addr = net_json_ip(f, "host_address");
    }
  }
}

/* ---- the allocations ---- */

typedef struct net_alloc {
  char *id;
  char key[NET_KEY_LEN + 1];
  size_t net; /* index in cfg.nets */
  agent_net_spec spec;
  bool made; /* host objects ensured since start-up */
} net_alloc;

struct agent_net {
  pthread_mutex_t mu;
  agent_net_config cfg;
  net_host *host; /* opened at the first host change */
  net_alloc *a;
  size_t n;
  size_t cap;
  bool rules_applied; /* ember's host table exists (as far as we know) */
};

int agent_net_new(const agent_net_config *cfg, agent_net **out, cmn_error *err)
{
  if (agent_net_config_check(cfg, err) < 0)
    return -1;
  agent_net *n = cmn_calloc(1, sizeof *n);
  pthread_mutex_init(&n->mu, NULL);
  agent_net_config_copy(&n->cfg, cfg);
  *out = n;
  return 0;
}

void agent_net_free(agent_net *n)
{
  if (n == NULL)
    return;
  for (size_t i = 0; i < n->n; i++) {
    free(n->a[i].id);
    agent_net_spec_free(&n->a[i].spec);
  }
  free(n->a);
  if (n->host != NULL)
    net_host_close(n->host);
  agent_net_config_free(&n->cfg);
  pthread_mutex_destroy(&n->mu);
  free(n);
}

/* The endpoint key: the last NET_KEY_LEN hex digits of the id (its random part). */
static void net_key_of(const char *id, char key[NET_KEY_LEN + 1])
{
  size_t len = strlen(id);
  const char *tail = len >= NET_KEY_LEN ? id + len - NET_KEY_LEN : id;
  size_t k = 0;
  for (const char *c = tail; *c && k < NET_KEY_LEN; c++) {
    char ch = *c;
    if (ch >= 'A' && ch <= 'F')
      ch = (char)(ch - 'A' + 'a');
    key[k++] = ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) ? ch : '0';
  }
  while (k < NET_KEY_LEN)
    key[k++] = '0';
  key[NET_KEY_LEN] = '\0';
}

static long net_find_def(const agent_net *n, const char *name)
{
  for (size_t i = 0; i < n->cfg.n_nets; i++)
    if (strcmp(n->cfg.nets[i].name, name) == 0)
      return (long)i;
  return -1;
}

static net_alloc *net_find_locked(agent_net *n, const char *id)
{
  for (size_t i = 0; i < n->n; i++)
    if (strcmp(n->a[i].id, id) == 0)
      return &n->a[i];
  return NULL;
}

static bool net_mac_ok(const char *mac)
{
  if (mac == NULL || strlen(mac) != 17)
    return false;
  for (int i = 0; i < 17; i++) {
    char ch = mac[i];
    bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
    if (i % 3 == 2 ? ch != ':' : !hex)
      return false;
  }
  unsigned first = (unsigned)strtoul(mac, NULL, 16);
  return (first & 1u) == 0; /* unicast */
}

/* Checks s (as a request or a record gives it) against the configuration and
 * the other allocations; `self` is skipped. */
static int net_check_locked(agent_net *n, const char *id, const agent_net_spec *s, long net,
                            cmn_error *err)
{
  const agent_network_def *d = &n->cfg.nets[net];
  uint32_t bcast = d->subnet | ~agent_net_mask(d->prefix);
  char ip[16];
  agent_net_format_ipv4(s->ipv4, ip);
  if (!agent_net_in(s->ipv4, d->subnet, d->prefix) || s->ipv4 == d->subnet || s->ipv4 == bcast ||
      s->ipv4 == d->gateway)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "ipv4_address %s is not a free host address of network %s (%s/%d, gateway "
                       "excluded)",
                       ip, d->name, ip, d->prefix);
  for (size_t i = 0; i < n->n; i++) {
    const net_alloc *o = &n->a[i];
    if (strcmp(o->id, id) == 0)
      continue;
    char key[NET_KEY_LEN + 1];
    net_key_of(id, key);
    if (strcmp(o->key, key) == 0)
      return cmn_err_set(err, CMN_ALREADY_EXISTS, "instance %s has the same network key as %s", id,
                         o->id);
    /* An instance in its own namespace does not share an address or a MAC
     * with the bridge or another namespace: clones of one snapshot keep the
     * source's (docs/networking.md). */
    bool apart = o->spec.netns || s->netns;
    if (o->net == (size_t)net && o->spec.ipv4 == s->ipv4 && !apart)
      return cmn_err_set(err, CMN_ALREADY_EXISTS,
                         "ipv4_address %s of network %s is taken by instance %s", ip, d->name,
                         o->id);
    if (o->net == (size_t)net && !apart && s->mac != NULL && o->spec.mac != NULL &&
        strcasecmp(o->spec.mac, s->mac) == 0)
      return cmn_err_set(err, CMN_ALREADY_EXISTS,
                         "mac_address %s is taken on network %s by instance %s", s->mac, d->name,
                         o->id);
    if (s->netns && o->spec.netns && o->spec.veth_host_ip == s->veth_host_ip)
      return cmn_err_set(err, CMN_ALREADY_EXISTS, "veth pair taken by instance %s", o->id);
    for (size_t f = 0; f < s->n_forwards; f++)
      for (size_t g = 0; g < o->spec.n_forwards; g++) {
        const agent_port_forward *a = &s->forwards[f], *b = &o->spec.forwards[g];
        if (a->proto == b->proto && a->host_port == b->host_port &&
            (a->host_addr == 0 || b->host_addr == 0 || a->host_addr == b->host_addr))
          return cmn_err_set(err, CMN_ALREADY_EXISTS,
                             "port_forwards[%zu]: host port %s/%u is already forwarded to "
                             "instance %s",
                             f, a->proto == 2 ? "udp" : "tcp", a->host_port, o->id);
      }
  }
  return 0;
}

static int net_check_forwards(const agent_net_spec *s, cmn_error *err)
{
  if (s->n_forwards > AGENT_NET_MAX_FORWARDS)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "port_forwards: at most %d",
                       AGENT_NET_MAX_FORWARDS);
  for (size_t i = 0; i < s->n_forwards; i++) {
    const agent_port_forward *f = &s->forwards[i];
    if (f->proto != 1 && f->proto != 2)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "port_forwards[%zu].protocol must be PROTOCOL_TCP or PROTOCOL_UDP", i);
    if (f->host_port < 1 || f->host_port > 65535)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "port_forwards[%zu].host_port must be 1 to "
                         "65535",
                         i);
    if (f->guest_port < 1 || f->guest_port > 65535)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "port_forwards[%zu].guest_port must be 1 to 65535", i);
    for (size_t j = 0; j < i; j++)
      if (s->forwards[j].proto == f->proto && s->forwards[j].host_port == f->host_port)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                           "port_forwards[%zu]: host port %u is forwarded twice", i, f->host_port);
  }
  return 0;
}

static void net_add_locked(agent_net *n, const char *id, long net, const agent_net_spec *s)
{
  if (n->n == n->cap) {
    n->cap = n->cap ? n->cap * 2 : 16;
    n->a = cmn_realloc(n->a, n->cap * sizeof *n->a);
  }
  net_alloc *a = &n->a[n->n++];
  memset(a, 0, sizeof *a);
  a->id = cmn_strdup(id);
  net_key_of(id, a->key);
  a->net = (size_t)net;
  agent_net_spec_copy(&a->spec, s);
}

static bool net_ip_used_locked(const agent_net *n, long net, uint32_t ip)
{
  for (size_t i = 0; i < n->n; i++)
    if (n->a[i].net == (size_t)net && n->a[i].spec.ipv4 == ip)
      return true;
  return false;
}

static bool net_veth_used_locked(const agent_net *n, uint32_t ip)
{
  for (size_t i = 0; i < n->n; i++)
    if (n->a[i].spec.netns && n->a[i].spec.veth_host_ip == ip)
      return true;
  return false;
}

int agent_net_alloc(agent_net *n, const char *id, agent_net_spec *s, cmn_error *err)
{
  if (!agent_net_spec_set(s))
    return 0;
  if (net_check_forwards(s, err) < 0)
    return -1;
  if (s->mac_given && !net_mac_ok(s->mac))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "mac_address must be a unicast address like 02:00:00:00:00:01");
  pthread_mutex_lock(&n->mu);
  int rc = -1;
  long net = net_find_def(n, s->network);
  if (net < 0) {
    cmn_err_set(err, CMN_NOT_FOUND, "network %.64s does not exist on this host (ListNetworks)",
                s->network);
    goto out;
  }
  const agent_network_def *d = &n->cfg.nets[net];
  if (!s->ipv4_given) {
    uint32_t bcast = d->subnet | ~agent_net_mask(d->prefix);
    s->ipv4 = 0;
    for (uint32_t a = d->subnet + 1; a < bcast; a++)
      if (a != d->gateway && !net_ip_used_locked(n, net, a)) {
        s->ipv4 = a;
        break;
      }
    if (s->ipv4 == 0) {
      cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                  "network %s has no free address left (%u in use): delete an instance or "
                  "configure a larger subnet",
                  d->name, (unsigned)n->n);
      goto out;
    }
  }
  if (!s->mac_given) {
    /* Deterministic from the id, locally administered, unicast; another
     * instance's MAC (a hash collision) moves to the next candidate. */
    for (uint32_t salt = 0; salt < 64; salt++) {
      char seed[96];
      snprintf(seed, sizeof seed, "%s/%u", id, salt);
      uint64_t h = cmn_hash_str(seed);
      free(s->mac);
      s->mac = cmn_asprintf("02:%02x:%02x:%02x:%02x:%02x", (unsigned)(h & 255u),
                            (unsigned)((h >> 8) & 255u), (unsigned)((h >> 16) & 255u),
                            (unsigned)((h >> 24) & 255u), (unsigned)((h >> 32) & 255u));
      bool taken = false;
      for (size_t i = 0; i < n->n; i++)
        taken = taken || (n->a[i].spec.mac && strcasecmp(n->a[i].spec.mac, s->mac) == 0);
      if (!taken)
        break;
    }
  }
  if (s->netns) {
    uint32_t end = n->cfg.transit_subnet | ~agent_net_mask(n->cfg.transit_prefix);
    bool found = false;
    for (uint32_t a = n->cfg.transit_subnet; a < end; a += 2)
      if (!net_veth_used_locked(n, a)) {
        s->veth_host_ip = a;
        found = true;
        break;
      }
    if (!found) {
      cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                  "no free veth pair in netns_transit_subnet: delete an instance with a "
                  "network namespace or configure a larger transit subnet");
      goto out;
    }
  }
  s->prefix = d->prefix;
  s->gateway = d->gateway;
  if (net_check_locked(n, id, s, net, err) < 0)
    goto out;
  net_add_locked(n, id, net, s);
  rc = 0;
out:
  pthread_mutex_unlock(&n->mu);
  return rc;
}

int agent_net_claim(agent_net *n, const char *id, const agent_net_spec *s, cmn_error *err)
{
  if (!agent_net_spec_set(s))
    return 0;
  pthread_mutex_lock(&n->mu);
  int rc = -1;
  long net = net_find_def(n, s->network);
  if (net < 0)
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "network %.64s is no longer configured: its interface is left out", s->network);
  else if (net_find_locked(n, id) != NULL)
    rc = 0;
  else if (net_check_locked(n, id, s, net, err) == 0) {
    net_add_locked(n, id, net, s);
    rc = 0;
  }
  pthread_mutex_unlock(&n->mu);
  return rc;
}

static void net_release_locked(agent_net *n, const char *id)
{
  for (size_t i = 0; i < n->n; i++)
    if (strcmp(n->a[i].id, id) == 0) {
      free(n->a[i].id);
      agent_net_spec_free(&n->a[i].spec);
      n->a[i] = n->a[--n->n];
      return;
    }
}

void agent_net_release(agent_net *n, const char *id)
{
  pthread_mutex_lock(&n->mu);
  net_release_locked(n, id);
  pthread_mutex_unlock(&n->mu);
}

/* ---- host objects ---- */

static int net_host_locked(agent_net *n, cmn_error *err)
{
  if (n->host != NULL)
    return 0;
  net_host_opts o = {.netns_dir = n->cfg.netns_dir};
  if (net_host_open(&o, &n->host, err) < 0)
    return cmn_err_prefix(err, "host networking");
  return 0;
}

typedef struct net_state {
  net_network *nets;
  size_t n_nets;
  net_endpoint *eps;
  size_t n_eps;
  net_forward *fws;
  bool *used; /* per configured network: has an endpoint */
} net_state;

static void net_state_free(net_state *st)
{
  free(st->nets);
  free(st->eps);
  free(st->fws);
  free(st->used);
  memset(st, 0, sizeof *st);
}

static void net_def_to_host(const agent_network_def *d, net_network *out)
{
  memset(out, 0, sizeof *out);
  out->name = d->name;
  out->bridge = d->bridge;
  out->subnet = d->subnet;
  out->prefix = d->prefix;
  out->gateway = d->gateway;
  out->mtu = d->mtu;
  out->nat = d->nat;
  out->isolated = d->isolated;
}

/* The desired state: the networks in use and every endpoint (pointing into n). */
static void net_state_build_locked(const agent_net *n, net_state *st)
{
  memset(st, 0, sizeof *st);
  size_t nf = 0;
  for (size_t i = 0; i < n->n; i++)
    nf += n->a[i].spec.n_forwards;
  st->used = cmn_calloc(n->cfg.n_nets + 1, sizeof *st->used);
  st->eps = cmn_calloc(n->n + 1, sizeof *st->eps);
  st->fws = cmn_calloc(nf + 1, sizeof *st->fws);
  st->nets = cmn_calloc(n->cfg.n_nets + 1, sizeof *st->nets);
  size_t f = 0;
  for (size_t i = 0; i < n->n; i++) {
    const net_alloc *a = &n->a[i];
    net_endpoint *e = &st->eps[st->n_eps++];
    e->key = a->key;
    e->network = n->cfg.nets[a->net].name;
    e->guest_ip = a->spec.ipv4;
    e->netns = a->spec.netns;
    e->veth_host_ip = a->spec.veth_host_ip;
    e->veth_ns_ip = a->spec.netns ? a->spec.veth_host_ip + 1 : 0;
    e->forwards = &st->fws[f];
    e->n_forwards = a->spec.n_forwards;
    for (size_t k = 0; k < a->spec.n_forwards; k++, f++) {
      st->fws[f].proto = a->spec.forwards[k].proto == 2 ? NET_PROTO_UDP : NET_PROTO_TCP;
      st->fws[f].host_port = (uint16_t)a->spec.forwards[k].host_port;
      st->fws[f].guest_port = (uint16_t)a->spec.forwards[k].guest_port;
      st->fws[f].host_addr = a->spec.forwards[k].host_addr;
    }
    st->used[a->net] = true;
  }
  for (size_t i = 0; i < n->cfg.n_nets; i++)
    if (st->used[i])
      net_def_to_host(&n->cfg.nets[i], &st->nets[st->n_nets++]);
}

static int net_map_err(cmn_error *err)
{
  if (err->code == CMN_PERMISSION_DENIED)
    err->code = CMN_FAILED_PRECONDITION;
  return -1;
}

/* The host rules for the current allocations; the table goes when none is left. */
static int net_rules_locked(agent_net *n, cmn_error *err)
{
  if (n->n == 0) {
    if (!n->rules_applied)
      return 0;
    if (net_nft_delete(err) < 0)
      return net_map_err(err);
    n->rules_applied = false;
    return 0;
  }
  net_state st;
  net_state_build_locked(n, &st);
  int rc = net_rules_apply(n->host, st.nets, st.n_nets, st.eps, st.n_eps, err);
  net_state_free(&st);
  if (rc < 0)
    return net_map_err(err);
  n->rules_applied = true;
  return 0;
}

static int net_ensure_locked(agent_net *n, net_alloc *a, bool rules, cmn_error *err)
{
  if (net_host_locked(n, err) < 0)
    return net_map_err(err);
  net_network nw;
  net_def_to_host(&n->cfg.nets[a->net], &nw);
  net_forward *fws = cmn_calloc(a->spec.n_forwards + 1, sizeof *fws);
  for (size_t k = 0; k < a->spec.n_forwards; k++) {
    fws[k].proto = a->spec.forwards[k].proto == 2 ? NET_PROTO_UDP : NET_PROTO_TCP;
    fws[k].host_port = (uint16_t)a->spec.forwards[k].host_port;
    fws[k].guest_port = (uint16_t)a->spec.forwards[k].guest_port;
    fws[k].host_addr = a->spec.forwards[k].host_addr;
  }
  net_endpoint ep = {.key = a->key,
                     .network = nw.name,
                     .guest_ip = a->spec.ipv4,
                     .netns = a->spec.netns,
                     .veth_host_ip = a->spec.veth_host_ip,
                     .veth_ns_ip = a->spec.netns ? a->spec.veth_host_ip + 1 : 0,
                     .forwards = fws,
                     .n_forwards = a->spec.n_forwards};
  int rc = 0;
  if (net_network_ensure(n->host, &nw, err) < 0 || net_endpoint_ensure(n->host, &nw, &ep, err) < 0)
    rc = net_map_err(err);
  free(fws);
  if (rc == 0 && rules && net_rules_locked(n, err) < 0)
    rc = -1;
  if (rc == 0)
    a->made = true;
  return rc;
}

int agent_net_ensure(agent_net *n, const char *id, cmn_error *err)
{
  pthread_mutex_lock(&n->mu);
  int rc = 0;
  net_alloc *a = net_find_locked(n, id);
  if (a != NULL && net_ensure_locked(n, a, true, err) < 0)
    rc = cmn_err_prefix(err, "network of instance %s", id);
  pthread_mutex_unlock(&n->mu);
  return rc;
}

int agent_net_remove(agent_net *n, const char *id, cmn_error *err)
{
  pthread_mutex_lock(&n->mu);
  int rc = 0;
  net_alloc *a = net_find_locked(n, id);
  if (a != NULL) {
    char key[NET_KEY_LEN + 1];
    memcpy(key, a->key, sizeof key);
    size_t net = a->net;
    net_release_locked(n, id);
    bool used = false;
    for (size_t i = 0; i < n->n; i++)
      used = used || n->a[i].net == net;
    net_network nw;
    net_def_to_host(&n->cfg.nets[net], &nw);
    if (net_host_locked(n, err) < 0 || net_endpoint_remove(n->host, key, err) < 0 ||
        (!used && net_network_remove(n->host, &nw, err) < 0) || net_rules_locked(n, err) < 0)
      rc = cmn_err_prefix(err,
                          "network of instance %s (the next start of emberd removes what is "
                          "left)",
                          id);
  }
  pthread_mutex_unlock(&n->mu);
  return rc;
}

/* Anything of ember's on the host? Read-only: /sys/class/net and the
 * namespace folder, then ember's nft table. */
static bool net_leftovers(const agent_net *n)
{
  cleanup_closedir DIR *d = opendir("/sys/class/net");
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (net_name_key(e->d_name, NET_TAP_PREFIX, NULL) ||
        net_name_key(e->d_name, NET_VETH_PREFIX, NULL))
      return true;
    char path[300], alias[64] = "";
    snprintf(path, sizeof path, "/sys/class/net/%s/ifalias", e->d_name);
    FILE *f = fopen(path, "re");
    if (f != NULL) {
      if (fgets(alias, sizeof alias, f) == NULL)
        alias[0] = '\0';
      fclose(f);
      if (strncmp(alias, NET_BRIDGE_ALIAS, strlen(NET_BRIDGE_ALIAS)) == 0)
        return true;
    }
  }
  const char *nsdir = n->cfg.netns_dir ? n->cfg.netns_dir : AGENT_NET_DEFAULT_NETNS_DIR;
  cleanup_closedir DIR *nd = opendir(nsdir);
  while (nd != NULL && (e = readdir(nd)) != NULL)
    if (net_name_key(e->d_name, NET_NETNS_PREFIX, NULL))
      return true;
  cmn_error e2 = {0};
  char *list = net_nft_list(&e2);
  bool table = list != NULL && strstr(list, "table") != NULL;
  free(list);
  return table;
}

int agent_net_reconcile(agent_net *n, int *created, int *removed, cmn_error *err)
{
  *created = *removed = 0;
  pthread_mutex_lock(&n->mu);
  int rc = 0;
  if (n->n > 0 || net_leftovers(n)) {
    if (net_host_locked(n, err) < 0) {
      rc = net_map_err(err);
    } else {
      net_state st;
      net_state_build_locked(n, &st);
      net_reconcile_report rep = {0};
      rc = net_reconcile(n->host, st.nets, st.n_nets, st.eps, st.n_eps, &rep, err);
      net_state_free(&st);
      if (rc < 0) {
        net_map_err(err);
      } else {
        *created = rep.created;
        *removed = rep.removed;
        n->rules_applied = true;
        for (size_t i = 0; i < n->n; i++)
          n->a[i].made = true;
        rc = net_rules_locked(n, err); /* no instance left: the table goes */
      }
    }
  }
  pthread_mutex_unlock(&n->mu);
  return rc;
}

int agent_net_vm_begin(agent_net *n, const char *id, const agent_net_spec *s, vmm_spec *spec,
                       char **netns_path, cmn_error *err)
{
  *netns_path = NULL;
  if (!agent_net_spec_set(s))
    return 0;
  pthread_mutex_lock(&n->mu);
  int rc = -1;
  net_alloc *a = net_find_locked(n, id);
  if (a == NULL) {
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "network %s of instance %s is not available (not configured, or its address "
                "collides with another instance's): see emberd's log",
                s->network, id);
    goto out;
  }
  if (net_ensure_locked(n, a, !a->made || !n->rules_applied, err) < 0) {
    cmn_err_prefix(err, "network %s", s->network);
    goto out;
  }
  size_t at = s->nic_index <= spec->n_nics ? s->nic_index : spec->n_nics;
  spec->nics = cmn_realloc(spec->nics, (spec->n_nics + 1) * sizeof *spec->nics);
  memmove(&spec->nics[at + 1], &spec->nics[at], (spec->n_nics - at) * sizeof *spec->nics);
  char tap[NET_IFNAME_MAX];
  net_tap_name(a->key, tap);
  spec->nics[at].tap = cmn_strdup(tap);
  spec->nics[at].mac = cmn_strdup(a->spec.mac);
  spec->n_nics++;
  if (a->spec.netns) {
    char ns[NET_NETNS_NAME_MAX];
    net_netns_name(a->key, ns);
    *netns_path = cmn_asprintf("%s/%s", net_host_netns_dir(n->host), ns);
  }
  rc = 0;
out:
  pthread_mutex_unlock(&n->mu);
  return rc;
}

int agent_net_describe(const char *id, const agent_net_spec *s, agent_net_status *out)
{
  memset(out, 0, sizeof *out);
  if (!agent_net_spec_set(s))
    return -1;
  char key[NET_KEY_LEN + 1], ip[16], tap[NET_IFNAME_MAX], ns[NET_NETNS_NAME_MAX];
  net_key_of(id, key);
  snprintf(out->network, sizeof out->network, "%s", s->network);
  snprintf(out->mac, sizeof out->mac, "%s", s->mac ? s->mac : "");
  net_tap_name(key, tap);
  snprintf(out->tap, sizeof out->tap, "%s", tap);
  agent_net_format_ipv4(s->ipv4, ip);
  snprintf(out->ipv4, sizeof out->ipv4, "%s/%d", ip, s->prefix);
  agent_net_format_ipv4(s->gateway, out->gateway);
  if (s->netns) {
    net_netns_name(key, ns);
    snprintf(out->netns, sizeof out->netns, "%s", ns);
    agent_net_format_ipv4(s->veth_host_ip + 1, out->host_address);
  } else {
    snprintf(out->host_address, sizeof out->host_address, "%s", ip);
  }
  return 0;
}

int agent_net_guest_config(agent_net *n, const agent_net_spec *s, agent_net_guest *out,
                           cmn_error *err)
{
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&n->mu);
  long net = net_find_def(n, s->network);
  if (net >= 0) {
    const agent_network_def *d = &n->cfg.nets[net];
    snprintf(out->mac, sizeof out->mac, "%s", s->mac ? s->mac : "");
    out->ipv4 = s->ipv4;
    out->prefix = d->prefix;
    out->gateway = d->gateway;
    out->mtu = d->mtu;
    out->n_dns = d->n_dns;
    memcpy(out->dns, d->dns, sizeof out->dns);
  }
  pthread_mutex_unlock(&n->mu);
  if (net < 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "network %.64s does not exist on this host", s->network);
  return 0;
}

int agent_net_list(agent_net *n, agent_net_info **out, size_t *n_out)
{
  pthread_mutex_lock(&n->mu);
  agent_net_info *a = cmn_calloc(n->cfg.n_nets + 1, sizeof *a);
  for (size_t i = 0; i < n->cfg.n_nets; i++) {
    agent_network_def_copy(&a[i].def, &n->cfg.nets[i]);
    uint32_t hosts = (uint32_t)(~agent_net_mask(n->cfg.nets[i].prefix)) - 1u;
    a[i].total = hosts - 1u; /* the gateway */
    for (size_t k = 0; k < n->n; k++)
      if (n->a[k].net == i)
        a[i].used++;
  }
  *n_out = n->cfg.n_nets;
  pthread_mutex_unlock(&n->mu);
  *out = a;
  return 0;
}

void agent_net_info_free(agent_net_info *a, size_t n)
{
  for (size_t i = 0; i < n && a != NULL; i++)
    agent_network_def_free(&a[i].def);
  free(a);
}
