/* links.c: links, addresses and routes over rtnetlink with libnl-route-3
 * (see links.h). */
#include "agent/net/links.h"
#include "common/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>

struct net_nl {
  struct nl_sock *sk;
};

static void copy_str(char *dst, size_t size, const char *src)
{
  snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* Fills err from a libnl error code (negative NLE_*), after a context. */
static int nl_fail(cmn_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int nl_fail(cmn_error *err, int rc, const char *fmt, ...)
{
  char ctx[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof(ctx), fmt, ap);
  va_end(ap);
  int code;
  switch (rc < 0 ? -rc : rc) {
  case NLE_EXIST:
    code = CMN_ALREADY_EXISTS;
    break;
  case NLE_PERM:
    code = CMN_PERMISSION_DENIED;
    break;
  case NLE_OBJ_NOTFOUND:
  case NLE_NODEV:
    code = CMN_NOT_FOUND;
    break;
  case NLE_BAD_SOCK:
  case NLE_AGAIN:
  case NLE_BUSY:
    code = CMN_UNAVAILABLE;
    break;
  case NLE_NOMEM:
    code = CMN_RESOURCE_EXHAUSTED;
    break;
  default:
    code = CMN_INTERNAL;
    break;
  }
  return cmn_err_set(err, code, "%s: %s", ctx, nl_geterror(rc));
}

static int name_ok(const char *name, cmn_error *err)
{
  if (name == NULL || name[0] == '\0' || strlen(name) >= NET_IFNAME_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "link name \"%s\": must be 1..%d characters",
                       name != NULL ? name : "", NET_IFNAME_MAX - 1);
  return 0;
}

int net_nl_open(net_nl **out, cmn_error *err)
{
  struct nl_sock *sk = nl_socket_alloc();
  if (sk == NULL)
    abort(); /* allocation failure: same policy as cmn_malloc */
  /* libnl opens its socket with SOCK_CLOEXEC. */
  int rc = nl_connect(sk, NETLINK_ROUTE);
  if (rc < 0) {
    nl_socket_free(sk);
    return nl_fail(err, rc, "opening a route netlink socket");
  }
  net_nl *nl = cmn_calloc(1, sizeof(*nl));
  nl->sk = sk;
  *out = nl;
  return 0;
}

void net_nl_close(net_nl *nl)
{
  if (nl == NULL)
    return;
  nl_close(nl->sk);
  nl_socket_free(nl->sk);
  free(nl);
}

/* The kernel's current link `name`: 1 (*out, to rtnl_link_put), 0 missing. */
static int link_fetch(net_nl *nl, const char *name, struct rtnl_link **out, cmn_error *err)
{
  if (name_ok(name, err) < 0)
    return -1;
  *out = NULL;
  int rc = rtnl_link_get_kernel(nl->sk, 0, name, out);
  if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
    return 0;
  if (rc < 0)
    return nl_fail(err, rc, "reading link %s", name);
  return 1;
}

static void link_info_fill(struct rtnl_link *l, net_link_info *out)
{
  memset(out, 0, sizeof(*out));
  copy_str(out->name, sizeof(out->name), rtnl_link_get_name(l));
  copy_str(out->kind, sizeof(out->kind), rtnl_link_get_type(l));
  copy_str(out->alias, sizeof(out->alias), rtnl_link_get_ifalias(l));
  out->ifindex = rtnl_link_get_ifindex(l);
  out->master = rtnl_link_get_master(l);
  out->peer = rtnl_link_get_link(l);
  out->flags = rtnl_link_get_flags(l);
  out->mtu = rtnl_link_get_mtu(l);
}

int net_link_get(net_nl *nl, const char *name, net_link_info *out, cmn_error *err)
{
  struct rtnl_link *l = NULL;
  int r = link_fetch(nl, name, &l, err);
  if (r <= 0)
    return r;
  link_info_fill(l, out);
  rtnl_link_put(l);
  return 1;
}

int net_link_list(net_nl *nl, const char *prefix, char ***names, size_t *n, cmn_error *err)
{
  struct nl_cache *cache = NULL;
  *names = NULL;
  *n = 0;
  int rc = rtnl_link_alloc_cache(nl->sk, AF_UNSPEC, &cache);
  if (rc < 0)
    return nl_fail(err, rc, "listing links");
  size_t pl = prefix != NULL ? strlen(prefix) : 0;
  size_t cap = (size_t)nl_cache_nitems(cache) + 1;
  char **v = cmn_calloc(cap, sizeof(*v));
  size_t k = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o != NULL && k < cap;
       o = nl_cache_get_next(o)) {
    const char *nm = rtnl_link_get_name((struct rtnl_link *)o);
    if (nm != NULL && (pl == 0 || strncmp(nm, prefix, pl) == 0))
      v[k++] = cmn_strdup(nm);
  }
  nl_cache_free(cache);
  *names = v;
  *n = k;
  return 0;
}

/* Applies `change` to the kernel's link `name`. */
static int link_change(net_nl *nl, struct rtnl_link *orig, struct rtnl_link *change,
                       const char *what, cmn_error *err)
{
  int rc = rtnl_link_change(nl->sk, orig, change, 0);
  if (rc < 0)
    return nl_fail(err, rc, "setting %s of link %s", what, rtnl_link_get_name(orig));
  return 1;
}

int net_link_ensure_bridge(net_nl *nl, const char *name, const char *alias, uint32_t mtu,
                           cmn_error *err)
{
  struct rtnl_link *cur = NULL;
  int r = link_fetch(nl, name, &cur, err);
  if (r < 0)
    return -1;
  if (r == 1) {
    char kind[NET_LINK_KIND_MAX];
    copy_str(kind, sizeof(kind), rtnl_link_get_type(cur));
    rtnl_link_put(cur);
    if (strcmp(kind, "bridge") != 0)
      return cmn_err_set(err, CMN_ALREADY_EXISTS,
                         "link %s exists and is a %s, not a bridge: rename the network's bridge "
                         "or remove that link",
                         name, kind[0] != '\0' ? kind : "link without a kind");
    if (mtu != 0 && net_link_set_mtu(nl, name, mtu, err) < 0)
      return -1;
    return 0;
  }
  /* Made under a temporary name, given its alias (RTM_NEWLINK's create path
   * ignores IFLA_IFALIAS), then renamed: a crash in between leaves an
   * "emx<hash>" link a reconcile knows as ember's, never an unmarked bridge. */
  char tmp[NET_IFNAME_MAX];
  net_bridge_tmp_name(name, tmp);
  if (net_link_delete(nl, tmp, err) < 0)
    return -1;
  struct rtnl_link *l = rtnl_link_alloc();
  if (l == NULL)
    abort();
  rtnl_link_set_name(l, tmp);
  int rc = rtnl_link_set_type(l, "bridge");
  if (rc >= 0) {
    if (mtu != 0)
      rtnl_link_set_mtu(l, mtu);
    rc = rtnl_link_add(nl->sk, l, NLM_F_CREATE | NLM_F_EXCL);
  }
  rtnl_link_put(l);
  if (rc < 0)
    return nl_fail(err, rc, "creating bridge %s (as %s)", name, tmp);
  if (alias != NULL && net_link_set_alias(nl, tmp, alias, err) < 0)
    return -1;
  int got = link_fetch(nl, tmp, &l, err);
  if (got < 0)
    return -1;
  if (got == 0)
    return cmn_err_set(err, CMN_UNAVAILABLE, "new bridge %s (for %s) vanished: try again", tmp,
                       name);
  struct rtnl_link *ch = rtnl_link_alloc();
  if (ch == NULL)
    abort();
  rtnl_link_set_name(ch, name);
  rc = rtnl_link_change(nl->sk, l, ch, 0);
  rtnl_link_put(ch);
  rtnl_link_put(l);
  if (rc < 0) {
    cmn_error ignored = {0};
    net_link_delete(nl, tmp, &ignored);
    return nl_fail(err, rc, "renaming new bridge %s to %s", tmp, name);
  }
  return 1;
}

void net_bridge_tmp_name(const char *bridge, char out[NET_IFNAME_MAX])
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = bridge; *p != '\0'; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  snprintf(out, NET_IFNAME_MAX, "%s%012llx", NET_BRIDGE_TMP_PREFIX,
           (unsigned long long)(h & 0xffffffffffffull));
}

int net_link_set_alias(net_nl *nl, const char *name, const char *alias, cmn_error *err)
{
  struct rtnl_link *cur = NULL;
  int r = link_fetch(nl, name, &cur, err);
  if (r == 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "link %s not found", name);
  if (r < 0)
    return -1;
  const char *old = rtnl_link_get_ifalias(cur);
  if (old != NULL && strcmp(old, alias) == 0) {
    rtnl_link_put(cur);
    return 0;
  }
  struct rtnl_link *ch = rtnl_link_alloc();
  if (ch == NULL)
    abort();
  rtnl_link_set_ifalias(ch, alias);
  r = link_change(nl, cur, ch, "the alias", err);
  rtnl_link_put(ch);
  rtnl_link_put(cur);
  return r;
}

int net_link_set_mtu(net_nl *nl, const char *name, uint32_t mtu, cmn_error *err)
{
  struct rtnl_link *cur = NULL;
  int r = link_fetch(nl, name, &cur, err);
  if (r == 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "link %s not found", name);
  if (r < 0)
    return -1;
  if (rtnl_link_get_mtu(cur) == mtu) {
    rtnl_link_put(cur);
    return 0;
  }
  struct rtnl_link *ch = rtnl_link_alloc();
  if (ch == NULL)
    abort();
  rtnl_link_set_mtu(ch, mtu);
  r = link_change(nl, cur, ch, "the MTU", err);
  rtnl_link_put(ch);
  rtnl_link_put(cur);
  return r;
}

int net_link_set_up(net_nl *nl, const char *name, cmn_error *err)
{
  struct rtnl_link *cur = NULL;
  int r = link_fetch(nl, name, &cur, err);
  if (r == 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "link %s not found", name);
  if (r < 0)
    return -1;
  if (rtnl_link_get_flags(cur) & IFF_UP) {
    rtnl_link_put(cur);
    return 0;
  }
  struct rtnl_link *ch = rtnl_link_alloc();
  if (ch == NULL)
    abort();
  rtnl_link_set_flags(ch, IFF_UP);
  r = link_change(nl, cur, ch, "the state up", err);
  rtnl_link_put(ch);
  rtnl_link_put(cur);
  return r;
}

int net_link_set_master(net_nl *nl, const char *name, const char *master, cmn_error *err)
{
  int want = 0;
  if (master != NULL) {
    net_link_info mi;
    int r = net_link_get(nl, master, &mi, err);
    if (r == 0)
      return cmn_err_set(err, CMN_NOT_FOUND, "master %s of link %s not found", master, name);
    if (r < 0)
      return -1;
    want = mi.ifindex;
  }
  struct rtnl_link *cur = NULL;
  int r = link_fetch(nl, name, &cur, err);
  if (r == 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "link %s not found", name);
  if (r < 0)
    return -1;
  if (rtnl_link_get_master(cur) == want) {
    rtnl_link_put(cur);
    return 0;
  }
  struct rtnl_link *ch = rtnl_link_alloc();
  if (ch == NULL)
    abort();
  rtnl_link_set_master(ch, want);
  r = link_change(nl, cur, ch, "the master", err);
  rtnl_link_put(ch);
  rtnl_link_put(cur);
  return r;
}

int net_link_delete(net_nl *nl, const char *name, cmn_error *err)
{
  if (name_ok(name, err) < 0)
    return -1;
  struct rtnl_link *l = rtnl_link_alloc();
  if (l == NULL)
    abort();
  rtnl_link_set_name(l, name);
  int rc = rtnl_link_delete(nl->sk, l);
  rtnl_link_put(l);
  if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
    return 0;
  if (rc < 0)
    return nl_fail(err, rc, "deleting link %s", name);
  return 1;
}

int net_link_add_veth(net_nl *nl, const char *name, const char *peer, int peer_netns_fd,
                      uint32_t mtu, cmn_error *err)
{
  if (name_ok(name, err) < 0 || name_ok(peer, err) < 0)
    return -1;
  struct rtnl_link *l = rtnl_link_veth_alloc();
  if (l == NULL)
    abort();
  struct rtnl_link *p = rtnl_link_veth_get_peer(l);
  rtnl_link_set_name(l, name);
  rtnl_link_set_name(p, peer);
  if (mtu != 0) {
    rtnl_link_set_mtu(l, mtu);
    rtnl_link_set_mtu(p, mtu);
  }
  if (peer_netns_fd >= 0)
    rtnl_link_set_ns_fd(p, peer_netns_fd);
  rtnl_link_put(p);
  int rc = rtnl_link_add(nl->sk, l, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_veth_release(l);
  if (rc < 0)
    return nl_fail(err, rc, "creating veth pair %s/%s", name, peer);
  return 1;
}

static uint32_t nladdr_ip4(struct nl_addr *a)
{
  uint32_t be = 0;
  if (a == NULL || nl_addr_get_family(a) != AF_INET || nl_addr_get_len(a) != 4)
    return 0;
  memcpy(&be, nl_addr_get_binary_addr(a), 4);
  return ntohl(be);
}

static struct nl_addr *ip4_nladdr(uint32_t ip, int prefix)
{
  uint32_t be = htonl(ip);
  struct nl_addr *a = nl_addr_build(AF_INET, &be, 4);
  if (a == NULL)
    abort();
  nl_addr_set_prefixlen(a, prefix);
  return a;
}

static void ip4_str(uint32_t ip, char out[INET_ADDRSTRLEN])
{
  uint32_t be = htonl(ip);
  if (inet_ntop(AF_INET, &be, out, INET_ADDRSTRLEN) == NULL)
    copy_str(out, INET_ADDRSTRLEN, "?");
}

/* The ifindex of `name` (NOT_FOUND when missing). */
static int ifindex_of(net_nl *nl, const char *name, cmn_error *err)
{
  net_link_info li;
  int r = net_link_get(nl, name, &li, err);
  if (r == 0)
    return cmn_err_set(err, CMN_NOT_FOUND, "link %s not found", name);
  if (r < 0)
    return -1;
  return li.ifindex;
}

int net_addr_list(net_nl *nl, const char *name, net_addr4 *out, size_t max, size_t *n,
                  cmn_error *err)
{
  *n = 0;
  int ifindex = ifindex_of(nl, name, err);
  if (ifindex < 0)
    return -1;
  struct nl_cache *cache = NULL;
  int rc = rtnl_addr_alloc_cache(nl->sk, &cache);
  if (rc < 0)
    return nl_fail(err, rc, "listing addresses of %s", name);
  size_t k = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o != NULL; o = nl_cache_get_next(o)) {
    struct rtnl_addr *a = (struct rtnl_addr *)o;
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET)
      continue;
    if (k < max) {
      out[k].addr = nladdr_ip4(rtnl_addr_get_local(a));
      out[k].prefix = rtnl_addr_get_prefixlen(a);
    }
    k++;
  }
  nl_cache_free(cache);
  *n = k;
  return 0;
}

static int addr_ensure(net_nl *nl, const char *name, uint32_t addr, int prefix, bool only,
                       cmn_error *err)
{
  char ip[INET_ADDRSTRLEN];
  ip4_str(addr, ip);
  if (prefix < 0 || prefix > 32)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "address %s/%d for %s: prefix out of range", ip,
                       prefix, name);
  int ifindex = ifindex_of(nl, name, err);
  if (ifindex < 0)
    return -1;
  struct nl_cache *cache = NULL;
  int rc = rtnl_addr_alloc_cache(nl->sk, &cache);
  if (rc < 0)
    return nl_fail(err, rc, "listing addresses of %s", name);
  int present = 0, removed = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o != NULL; o = nl_cache_get_next(o)) {
    struct rtnl_addr *a = (struct rtnl_addr *)o;
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET)
      continue;
    uint32_t cur = nladdr_ip4(rtnl_addr_get_local(a));
    if (cur != addr && !only)
      continue;
    if (cur == addr && rtnl_addr_get_prefixlen(a) == prefix) {
      present = 1;
      continue;
    }
    /* the same address with a wrong prefix, or (only) another address */
    rc = rtnl_addr_delete(nl->sk, a, 0);
    if (rc < 0 && rc != -NLE_NOADDR && rc != -NLE_OBJ_NOTFOUND) {
      char old[INET_ADDRSTRLEN];
      ip4_str(cur, old);
      nl_cache_free(cache);
      return nl_fail(err, rc, "removing address %s/%d from %s", old, rtnl_addr_get_prefixlen(a),
                     name);
    }
    removed = 1;
  }
  nl_cache_free(cache);
  if (present)
    return removed;
  struct rtnl_addr *a = rtnl_addr_alloc();
  if (a == NULL)
    abort();
  rtnl_addr_set_ifindex(a, ifindex);
  rtnl_addr_set_family(a, AF_INET);
  struct nl_addr *local = ip4_nladdr(addr, prefix);
  rc = rtnl_addr_set_local(a, local);
  nl_addr_put(local);
  rtnl_addr_set_prefixlen(a, prefix);
  if (rc >= 0 && prefix < 31) {
    uint32_t mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    struct nl_addr *brd = ip4_nladdr(addr | ~mask, 32);
    rc = rtnl_addr_set_broadcast(a, brd);
    nl_addr_put(brd);
  }
  if (rc >= 0)
    rc = rtnl_addr_add(nl->sk, a, 0);
  rtnl_addr_put(a);
  if (rc < 0)
    return nl_fail(err, rc, "adding address %s/%d to %s", ip, prefix, name);
  return 1;
}

int net_addr_remove(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err)
{
  net_link_info li;
  int r = net_link_get(nl, name, &li, err);
  if (r <= 0)
    return r;
  struct rtnl_addr *a = rtnl_addr_alloc();
  if (a == NULL)
    abort();
  rtnl_addr_set_ifindex(a, li.ifindex);
  rtnl_addr_set_family(a, AF_INET);
  struct nl_addr *local = ip4_nladdr(addr, prefix);
  int rc = rtnl_addr_set_local(a, local);
  nl_addr_put(local);
  rtnl_addr_set_prefixlen(a, prefix);
  if (rc >= 0)
    rc = rtnl_addr_delete(nl->sk, a, 0);
  rtnl_addr_put(a);
  if (rc == -NLE_NOADDR || rc == -NLE_OBJ_NOTFOUND)
    return 0;
  if (rc < 0) {
    char ip[INET_ADDRSTRLEN];
    ip4_str(addr, ip);
    return nl_fail(err, rc, "removing address %s/%d from %s", ip, prefix, name);
  }
  return 1;
}

int net_addr_ensure(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err)
{
  return addr_ensure(nl, name, addr, prefix, false, err);
}

int net_addr_ensure_only(net_nl *nl, const char *name, uint32_t addr, int prefix, cmn_error *err)
{
  return addr_ensure(nl, name, addr, prefix, true, err);
}

/* The main table's IPv4 default route in the cache, or NULL. */
static struct rtnl_route *default_route(struct nl_cache *cache)
{
  for (struct nl_object *o = nl_cache_get_first(cache); o != NULL; o = nl_cache_get_next(o)) {
    struct rtnl_route *r = (struct rtnl_route *)o;
    struct nl_addr *dst = rtnl_route_get_dst(r);
    if (rtnl_route_get_family(r) == AF_INET && rtnl_route_get_table(r) == RT_TABLE_MAIN &&
        (dst == NULL || nl_addr_get_prefixlen(dst) == 0))
      return r;
  }
  return NULL;
}

static uint32_t route_gateway(struct rtnl_route *r)
{
  if (rtnl_route_get_nnexthops(r) < 1)
    return 0;
  return nladdr_ip4(rtnl_route_nh_get_gateway(rtnl_route_nexthop_n(r, 0)));
}

int net_route_get_default(net_nl *nl, uint32_t *gw, cmn_error *err)
{
  struct nl_cache *cache = NULL;
  int rc = rtnl_route_alloc_cache(nl->sk, AF_INET, 0, &cache);
  if (rc < 0)
    return nl_fail(err, rc, "listing routes");
  struct rtnl_route *r = default_route(cache);
  int found = 0;
  if (r != NULL && route_gateway(r) != 0) {
    *gw = route_gateway(r);
    found = 1;
  }
  nl_cache_free(cache);
  return found;
}

int net_route_ensure_default(net_nl *nl, uint32_t gw, cmn_error *err)
{
  char ip[INET_ADDRSTRLEN];
  ip4_str(gw, ip);
  uint32_t cur = 0;
  int r = net_route_get_default(nl, &cur, err);
  if (r < 0)
    return -1;
  if (r == 1 && cur == gw)
    return 0;
  struct rtnl_route *route = rtnl_route_alloc();
  struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
  if (route == NULL || nh == NULL)
    abort();
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_protocol(route, RTPROT_STATIC);
  rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
  rtnl_route_set_type(route, RTN_UNICAST);
  struct nl_addr *dst = ip4_nladdr(0, 0);
  int rc = rtnl_route_set_dst(route, dst);
  nl_addr_put(dst);
  struct nl_addr *via = ip4_nladdr(gw, 32);
  rtnl_route_nh_set_gateway(nh, via);
  nl_addr_put(via);
  rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
  if (rc >= 0)
    rc = rtnl_route_add(nl->sk, route, NLM_F_REPLACE);
  rtnl_route_put(route);
  if (rc < 0)
    return nl_fail(err, rc, "adding the default route via %s", ip);
  return 1;
}
