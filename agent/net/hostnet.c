/* hostnet.c: the host objects of ember's networking (see hostnet.h). */
#include "agent/net/hostnet.h"
#include "agent/net/links.h"
#include "agent/net/netns.h"
#include "agent/net/tap.h"
#include "common/cleanup.h"
#include "common/mem.h"

#include "agent/net/nft.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MTU 1500u

struct net_host {
  pthread_mutex_t mu;
  char *netns_dir;
};

/* What one call made and removed. */
typedef struct counts {
  int created;
  int removed;
} counts;

static void count_made(counts *c, int r)
{
  if (r > 0)
    c->created++;
}

static void count_removed(counts *c, int r)
{
  if (r > 0)
    c->removed++;
}

static void nl_closep(net_nl **nl) { net_nl_close(*nl); }
#define cleanup_nl __attribute__((cleanup(nl_closep)))

int net_host_open(const net_host_opts *o, net_host **out, cmn_error *err)
{
  const char *dir = o != NULL && o->netns_dir != NULL ? o->netns_dir : NET_NETNS_DIR_DEFAULT;
  if (dir[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network namespace folder \"%s\": must be an absolute path", dir);
  net_host *h = cmn_calloc(1, sizeof(*h));
  pthread_mutex_init(&h->mu, NULL);
  h->netns_dir = cmn_strdup(dir);
  *out = h;
  return 0;
}

void net_host_close(net_host *h)
{
  if (h == NULL)
    return;
  pthread_mutex_destroy(&h->mu);
  free(h->netns_dir);
  free(h);
}

const char *net_host_netns_dir(const net_host *h) { return h->netns_dir; }

static uint32_t net_mtu(const net_network *n) { return n->mtu != 0 ? n->mtu : DEFAULT_MTU; }

static uint32_t prefix_mask(int prefix) { return prefix <= 0 ? 0 : 0xffffffffu << (32 - prefix); }

static int network_valid(const net_network *n, cmn_error *err)
{
  const char *name = n->name != NULL ? n->name : "";
  if (name[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "a network without a name");
  if (n->bridge == NULL || n->bridge[0] == '\0' || strlen(n->bridge) >= NET_IFNAME_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network %s: the bridge name must be 1..%d characters", name,
                       NET_IFNAME_MAX - 1);
  if (n->prefix < 8 || n->prefix > 30)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "network %s: prefix /%d not in 8..30", name,
                       n->prefix);
  uint32_t m = prefix_mask(n->prefix);
  if ((n->gateway & m) != (n->subnet & m) || (n->gateway & ~m) == 0 || (n->gateway & ~m) == ~m)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network %s: the gateway is not a host address of its subnet", name);
  if (n->mtu != 0 && (n->mtu < 68 || n->mtu > 65535))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "network %s: MTU %u not in 68..65535", name,
                       n->mtu);
  return 0;
}

static int endpoint_valid(const net_network *n, const net_endpoint *ep, cmn_error *err)
{
  if (!net_key_valid(ep->key))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint key \"%s\": must be %d lowercase hex digits",
                       ep->key != NULL ? ep->key : "", NET_KEY_LEN);
  if (ep->network == NULL || strcmp(ep->network, n->name) != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s: network \"%s\" is not \"%s\"",
                       ep->key, ep->network != NULL ? ep->network : "", n->name);
  if (ep->netns &&
      (ep->veth_host_ip == 0 || ep->veth_ns_ip == 0 || ep->veth_host_ip == ep->veth_ns_ip ||
       (ep->veth_host_ip & ~1u) != (ep->veth_ns_ip & ~1u)))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint %s: the veth addresses must be the two addresses of one /31",
                       ep->key);
  return 0;
}

/* ---- nft: every call to nft.h is in this section ---- */

static int nft_host_apply(const net_network *nets, size_t n_nets, const net_endpoint *eps,
                          size_t n_eps, cmn_error *err)
{
  cleanup_free char *rules = net_nft_render_host(nets, n_nets, eps, n_eps, err);
  if (rules == NULL)
    return -1;
  if (rules[0] == '\0')
    return 0;
  if (net_nft_apply(rules, err) < 0)
    return cmn_err_prefix(err, "host nft table");
  return 0;
}

/* Inside the namespace (calling thread joined it). */
static int nft_ns_apply(const char *rules, const char *key, cmn_error *err)
{
  if (rules == NULL || rules[0] == '\0')
    return 0;
  if (net_nft_apply(rules, err) < 0)
    return cmn_err_prefix(err, "nft table of namespace %s%s", NET_NETNS_PREFIX, key);
  return 0;
}

static int nft_host_delete(cmn_error *err)
{
  if (net_nft_delete(err) < 0)
    return cmn_err_prefix(err, "deleting the host nft tables");
  return 0;
}

static char *nft_ns_render(const net_network *n, const net_endpoint *ep, cmn_error *err)
{
  return net_nft_render_ns(n, ep, err);
}

/* ---- networks ---- */

static int network_ensure_locked(const net_network *n, counts *c, cmn_error *err)
{
  if (network_valid(n, err) < 0)
    return -1;
  cleanup_nl net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  int r = net_link_ensure_bridge(nl, n->bridge, NET_BRIDGE_ALIAS, net_mtu(n), err);
  if (r < 0)
    return cmn_err_prefix(err, "network %s", n->name);
  count_made(c, r);
  if (net_addr_ensure(nl, n->bridge, n->gateway, n->prefix, err) < 0 ||
      net_link_set_up(nl, n->bridge, err) < 0 || net_sysctl_ip_forward(err) < 0)
    return cmn_err_prefix(err, "network %s", n->name);
  return 0;
}

int net_network_ensure(net_host *h, const net_network *n, cmn_error *err)
{
  pthread_mutex_lock(&h->mu);
  counts c = {0, 0};
  int rc = network_ensure_locked(n, &c, err);
  pthread_mutex_unlock(&h->mu);
  return rc;
}

int net_network_remove(net_host *h, const net_network *n, cmn_error *err)
{
  if (network_valid(n, err) < 0)
    return -1;
  pthread_mutex_lock(&h->mu);
  net_nl *nl = NULL;
  int rc = net_nl_open(&nl, err);
  net_link_info li;
  int r = rc == 0 ? net_link_get(nl, n->bridge, &li, err) : -1;
  if (r < 0)
    rc = -1;
  else if (r == 1 && strcmp(li.kind, "bridge") == 0 && strcmp(li.alias, NET_BRIDGE_ALIAS) == 0)
    rc = net_link_delete(nl, n->bridge, err) < 0 ? -1 : 0;
  else if (r == 1)
    rc = net_addr_remove(nl, n->bridge, n->gateway, n->prefix, err) < 0 ? -1 : 0;
  net_nl_close(nl);
  pthread_mutex_unlock(&h->mu);
  if (rc < 0)
    return cmn_err_prefix(err, "removing network %s", n->name);
  return 0;
}

/* ---- endpoints ---- */

enum ns_op { NS_PROBE_VETH, NS_DELETE_VETH, NS_SETUP };

/* The work a thread inside an endpoint's namespace does. */
typedef struct ns_work {
  enum ns_op op;
  const net_network *n;
  const net_endpoint *ep;
  const char *tap;
  const char *rules;
  net_link_info veth; /* NS_PROBE_VETH: veth0 when found */
  int found;
  counts c;
} ns_work;

static int ns_setup(net_nl *nl, ns_work *w, cmn_error *err)
{
  const net_network *n = w->n;
  const net_endpoint *ep = w->ep;
  uint32_t mtu = net_mtu(n);
  if (net_link_set_up(nl, "lo", err) < 0)
    return -1;
  if (net_link_set_mtu(nl, NET_NS_VETH, mtu, err) < 0 ||
      net_addr_ensure_only(nl, NET_NS_VETH, ep->veth_ns_ip, 31, err) < 0 ||
      net_link_set_up(nl, NET_NS_VETH, err) < 0)
    return -1;
  int r = net_tap_ensure(nl, w->tap, err);
  if (r < 0)
    return -1;
  count_made(&w->c, r);
  if (net_link_set_mtu(nl, w->tap, mtu, err) < 0 ||
      net_addr_ensure_only(nl, w->tap, n->gateway, n->prefix, err) < 0 ||
      net_link_set_up(nl, w->tap, err) < 0)
    return -1;
  if (net_route_ensure_default(nl, ep->veth_host_ip, err) < 0 || net_sysctl_ip_forward(err) < 0)
    return -1;
  return nft_ns_apply(w->rules, ep->key, err);
}

static int ns_work_fn(void *arg, cmn_error *err)
{
  ns_work *w = arg;
  cleanup_nl net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  switch (w->op) {
  case NS_PROBE_VETH:
    w->found = net_link_get(nl, NET_NS_VETH, &w->veth, err);
    return w->found < 0 ? -1 : 0;
  case NS_DELETE_VETH:
    return net_link_delete(nl, NET_NS_VETH, err) < 0 ? -1 : 0;
  case NS_SETUP:
    return ns_setup(nl, w, err);
  }
  return cmn_err_set(err, CMN_INTERNAL, "unknown namespace operation");
}

/* The veth pair emv<key> <-> veth0 (in ns_fd), made again unless both ends
 * exist and point at each other. */
static int veth_pair_ensure(net_nl *nl, int ns_fd, const char *veth, uint32_t mtu, counts *c,
                            cmn_error *err)
{
  ns_work probe = {.op = NS_PROBE_VETH};
  if (net_in_netns_fd(ns_fd, ns_work_fn, &probe, err) < 0)
    return -1;
  net_link_info host;
  int r = net_link_get(nl, veth, &host, err);
  if (r < 0)
    return -1;
  if (r == 1 && probe.found == 1 && strcmp(host.kind, "veth") == 0 &&
      host.peer == probe.veth.ifindex && probe.veth.peer == host.ifindex)
    return 0;
  /* Half a pair, or ends that do not belong together: start again. */
  r = net_link_delete(nl, veth, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  ns_work del = {.op = NS_DELETE_VETH};
  if (probe.found == 1 && net_in_netns_fd(ns_fd, ns_work_fn, &del, err) < 0)
    return -1;
  r = net_link_add_veth(nl, veth, NET_NS_VETH, ns_fd, mtu, err);
  if (r < 0)
    return -1;
  count_made(c, r);
  return 0;
}

static int endpoint_ns_ensure(net_host *h, const net_network *n, const net_endpoint *ep, counts *c,
                              cmn_error *err)
{
  char tap[NET_IFNAME_MAX], veth[NET_IFNAME_MAX], ns[NET_NETNS_NAME_MAX];
  net_tap_name(ep->key, tap);
  net_veth_name(ep->key, veth);
  net_netns_name(ep->key, ns);
  cleanup_nl net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  /* A TAP of this key on the host belongs to the other mode. */
  int r = net_link_delete(nl, tap, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  r = net_netns_create(h->netns_dir, ns, err);
  if (r < 0)
    return -1;
  count_made(c, r);
  cleanup_close int fd = net_netns_open(h->netns_dir, ns, err);
  if (fd < 0)
    return -1;
  uint32_t mtu = net_mtu(n);
  if (veth_pair_ensure(nl, fd, veth, mtu, c, err) < 0)
    return -1;
  if (net_link_set_mtu(nl, veth, mtu, err) < 0 ||
      net_addr_ensure_only(nl, veth, ep->veth_host_ip, 31, err) < 0 ||
      net_link_set_up(nl, veth, err) < 0)
    return -1;
  cleanup_free char *rules = nft_ns_render(n, ep, err);
  if (rules == NULL)
    return -1;
  ns_work w = {.op = NS_SETUP, .n = n, .ep = ep, .tap = tap, .rules = rules};
  r = net_in_netns_fd(fd, ns_work_fn, &w, err);
  c->created += w.c.created;
  if (r < 0)
    return cmn_err_prefix(err, "inside namespace %s", ns);
  return 0;
}

static int endpoint_tap_ensure(net_host *h, const net_network *n, const net_endpoint *ep, counts *c,
                               cmn_error *err)
{
  char tap[NET_IFNAME_MAX], veth[NET_IFNAME_MAX], ns[NET_NETNS_NAME_MAX];
  net_tap_name(ep->key, tap);
  net_veth_name(ep->key, veth);
  net_netns_name(ep->key, ns);
  if (network_ensure_locked(n, c, err) < 0)
    return -1;
  cleanup_nl net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  /* A veth pair or namespace of this key belongs to the other mode. */
  int r = net_link_delete(nl, veth, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  r = net_netns_delete(h->netns_dir, ns, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  r = net_tap_ensure(nl, tap, err);
  if (r < 0)
    return -1;
  count_made(c, r);
  if (net_link_set_mtu(nl, tap, net_mtu(n), err) < 0 ||
      net_link_set_master(nl, tap, n->bridge, err) < 0 || net_link_set_up(nl, tap, err) < 0)
    return -1;
  return 0;
}

static int endpoint_ensure_locked(net_host *h, const net_network *n, const net_endpoint *ep,
                                  counts *c, cmn_error *err)
{
  if (network_valid(n, err) < 0 || endpoint_valid(n, ep, err) < 0)
    return -1;
  int r = ep->netns ? endpoint_ns_ensure(h, n, ep, c, err) : endpoint_tap_ensure(h, n, ep, c, err);
  if (r < 0)
    return cmn_err_prefix(err, "endpoint %s", ep->key);
  return 0;
}

int net_endpoint_ensure(net_host *h, const net_network *n, const net_endpoint *ep, cmn_error *err)
{
  pthread_mutex_lock(&h->mu);
  counts c = {0, 0};
  int rc = endpoint_ensure_locked(h, n, ep, &c, err);
  pthread_mutex_unlock(&h->mu);
  return rc;
}

static int endpoint_remove_locked(net_host *h, net_nl *nl, const char *key, counts *c,
                                  cmn_error *err)
{
  char tap[NET_IFNAME_MAX], veth[NET_IFNAME_MAX], ns[NET_NETNS_NAME_MAX];
  net_tap_name(key, tap);
  net_veth_name(key, veth);
  net_netns_name(key, ns);
  int r = net_tap_delete(nl, tap, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  r = net_link_delete(nl, veth, err); /* takes veth0 in the namespace with it */
  if (r < 0)
    return -1;
  count_removed(c, r);
  /* The namespace's TAP goes with the namespace once nothing holds it. */
  r = net_netns_delete(h->netns_dir, ns, err);
  if (r < 0)
    return -1;
  count_removed(c, r);
  return 0;
}

int net_endpoint_remove(net_host *h, const char *key, cmn_error *err)
{
  if (!net_key_valid(key))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint key \"%s\": must be %d lowercase hex digits",
                       key != NULL ? key : "", NET_KEY_LEN);
  pthread_mutex_lock(&h->mu);
  counts c = {0, 0};
  net_nl *nl = NULL;
  int rc = net_nl_open(&nl, err);
  if (rc == 0)
    rc = endpoint_remove_locked(h, nl, key, &c, err);
  net_nl_close(nl);
  pthread_mutex_unlock(&h->mu);
  if (rc < 0)
    return cmn_err_prefix(err, "removing endpoint %s", key);
  return 0;
}

/* ---- rules and reconcile ---- */

int net_rules_apply(net_host *h, const net_network *nets, size_t n_nets, const net_endpoint *eps,
                    size_t n_eps, cmn_error *err)
{
  pthread_mutex_lock(&h->mu);
  int rc = nft_host_apply(nets, n_nets, eps, n_eps, err);
  pthread_mutex_unlock(&h->mu);
  return rc;
}

int net_rules_remove(net_host *h, cmn_error *err)
{
  pthread_mutex_lock(&h->mu);
  int rc = nft_host_delete(err);
  pthread_mutex_unlock(&h->mu);
  return rc;
}

static const net_network *find_network(const net_network *nets, size_t n_nets, const char *name)
{
  for (size_t i = 0; i < n_nets; i++)
    if (name != NULL && nets[i].name != NULL && strcmp(nets[i].name, name) == 0)
      return &nets[i];
  return NULL;
}

/* True when key is an endpoint's key in the given mode. */
static bool key_wanted(const net_endpoint *eps, size_t n_eps, const char *key, bool netns)
{
  for (size_t i = 0; i < n_eps; i++)
    if (eps[i].netns == netns && eps[i].key != NULL && strcmp(eps[i].key, key) == 0)
      return true;
  return false;
}

static bool bridge_wanted(const net_network *nets, size_t n_nets, const char *name)
{
  for (size_t i = 0; i < n_nets; i++)
    if (nets[i].bridge != NULL && strcmp(nets[i].bridge, name) == 0)
      return true;
  return false;
}

static int remove_orphan_links(net_nl *nl, const net_network *nets, size_t n_nets,
                               const net_endpoint *eps, size_t n_eps, counts *c, cmn_error *err)
{
  char **names = NULL;
  size_t n = 0;
  if (net_link_list(nl, "", &names, &n, err) < 0)
    return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char key[NET_KEY_LEN + 1];
    bool orphan = false;
    if (net_name_key(names[i], NET_TAP_PREFIX, key))
      orphan = !key_wanted(eps, n_eps, key, false);
    else if (net_name_key(names[i], NET_VETH_PREFIX, key))
      orphan = !key_wanted(eps, n_eps, key, true);
    else if (net_name_key(names[i], NET_BRIDGE_TMP_PREFIX, NULL))
      orphan = true; /* a bridge a crash left half-made */
    else if (!bridge_wanted(nets, n_nets, names[i])) {
      net_link_info li;
      int r = net_link_get(nl, names[i], &li, err);
      if (r < 0)
        rc = -1;
      orphan = r == 1 && strcmp(li.kind, "bridge") == 0 && strcmp(li.alias, NET_BRIDGE_ALIAS) == 0;
    }
    if (rc == 0 && orphan) {
      int r = net_link_delete(nl, names[i], err);
      if (r < 0)
        rc = cmn_err_prefix(err, "removing orphan link %s", names[i]);
      count_removed(c, r);
    }
  }
  net_names_free(names, n);
  return rc;
}

static int remove_orphan_netns(net_host *h, const net_endpoint *eps, size_t n_eps, counts *c,
                               cmn_error *err)
{
  char **names = NULL;
  size_t n = 0;
  if (net_netns_list(h->netns_dir, NET_NETNS_PREFIX, &names, &n, err) < 0)
    return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char key[NET_KEY_LEN + 1];
    if (!net_name_key(names[i], NET_NETNS_PREFIX, key) || key_wanted(eps, n_eps, key, true))
      continue;
    int r = net_netns_delete(h->netns_dir, names[i], err);
    if (r < 0)
      rc = cmn_err_prefix(err, "removing orphan namespace %s", names[i]);
    count_removed(c, r);
  }
  net_names_free(names, n);
  return rc;
}

static int reconcile_locked(net_host *h, const net_network *nets, size_t n_nets,
                            const net_endpoint *eps, size_t n_eps, counts *c, cmn_error *err)
{
  /* Check everything first: bad input makes nothing. */
  for (size_t i = 0; i < n_nets; i++)
    if (network_valid(&nets[i], err) < 0)
      return -1;
  for (size_t i = 0; i < n_eps; i++) {
    const net_network *n = find_network(nets, n_nets, eps[i].network);
    if (n == NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s: unknown network \"%s\"",
                         eps[i].key != NULL ? eps[i].key : "",
                         eps[i].network != NULL ? eps[i].network : "");
    if (endpoint_valid(n, &eps[i], err) < 0)
      return -1;
  }
  for (size_t i = 0; i < n_nets; i++)
    if (network_ensure_locked(&nets[i], c, err) < 0)
      return -1;
  for (size_t i = 0; i < n_eps; i++)
    if (endpoint_ensure_locked(h, find_network(nets, n_nets, eps[i].network), &eps[i], c, err) < 0)
      return -1;
  cleanup_nl net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  if (remove_orphan_links(nl, nets, n_nets, eps, n_eps, c, err) < 0 ||
      remove_orphan_netns(h, eps, n_eps, c, err) < 0)
    return -1;
  if (n_nets == 0 && n_eps == 0)
    return nft_host_delete(err);
  return nft_host_apply(nets, n_nets, eps, n_eps, err);
}

int net_reconcile(net_host *h, const net_network *nets, size_t n_nets, const net_endpoint *eps,
                  size_t n_eps, net_reconcile_report *rep, cmn_error *err)
{
  pthread_mutex_lock(&h->mu);
  counts c = {0, 0};
  int rc = reconcile_locked(h, nets, n_nets, eps, n_eps, &c, err);
  pthread_mutex_unlock(&h->mu);
  if (rep != NULL) {
    rep->created = c.created;
    rep->removed = c.removed;
  }
  if (rc < 0)
    return cmn_err_prefix(err, "reconciling the host network");
  return 0;
}
