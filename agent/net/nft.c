/* nft.c: ember's nftables tables (nft.h), rendered as nft text from the
 * checked desired state and applied with libnftables in one transaction. */
#include "nft.h"

#include "common/cleanup.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NFT_NAME_MAX 63     /* network names (they only appear in comments) */
#define NFT_ERRTEXT_MAX 480 /* nft's error text kept in a cmn_error */

/* ---- text building ---- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *s = cmn_vasprintf(fmt, ap);
  va_end(ap);
  size_t n = strlen(s);
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (b->len + n + 1 > cap)
      cap *= 2;
    b->p = cmn_realloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

typedef struct ipstr {
  char s[16];
} ipstr;

static ipstr ip4(uint32_t a)
{
  ipstr r;
  snprintf(r.s, sizeof r.s, "%u.%u.%u.%u", (a >> 24) & 0xffu, (a >> 16) & 0xffu, (a >> 8) & 0xffu,
           a & 0xffu);
  return r;
}

static const char *proto_name(net_proto p) { return p == NET_PROTO_TCP ? "tcp" : "udp"; }

/* ---- checks: nothing unchecked reaches the rules text ---- */

static bool name_ok(const char *s, size_t max)
{
  if (s == NULL)
    return false;
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-'))
      return false;
  }
  return true;
}

static bool key_ok(const char *s)
{
  if (s == NULL || strlen(s) != NET_KEY_LEN)
    return false;
  for (size_t i = 0; i < NET_KEY_LEN; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

static uint32_t prefix_mask(int prefix) { return prefix == 0 ? 0 : ~0u << (32 - prefix); }

static int check_network(const net_network *n, size_t i, cmn_error *err)
{
  if (!name_ok(n->name, NFT_NAME_MAX))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network %zu: name must be 1..%d characters of [A-Za-z0-9_.-]", i,
                       NFT_NAME_MAX);
  if (!name_ok(n->bridge, NET_IFNAME_MAX - 1))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network %s: bridge name must be 1..%d characters of [A-Za-z0-9_.-]",
                       n->name, NET_IFNAME_MAX - 1);
  if (n->prefix < 8 || n->prefix > 30)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "network %s: prefix /%d is not in 8..30", n->name,
                       n->prefix);
  if ((n->subnet & ~prefix_mask(n->prefix)) != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "network %s: subnet %s/%d has host bits set (use its network address)",
                       n->name, ip4(n->subnet).s, n->prefix);
  return 0;
}

static int check_forward(const net_endpoint *ep, const net_forward *f, cmn_error *err)
{
  if (f->proto != NET_PROTO_TCP && f->proto != NET_PROTO_UDP)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint %s: forward protocol %d is neither tcp nor udp", ep->key,
                       (int)f->proto);
  if (f->host_port == 0 || f->guest_port == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint %s: forward %s %u -> %u: ports must be in 1..65535", ep->key,
                       proto_name(f->proto), f->host_port, f->guest_port);
  return 0;
}

/* The endpoint's checked fields; *net_out its network. */
static int check_endpoint(const net_endpoint *ep, size_t i, const net_network *nets, size_t n_nets,
                          const net_network **net_out, cmn_error *err)
{
  if (!key_ok(ep->key))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint %zu: key must be %d lowercase hex digits", i, NET_KEY_LEN);
  *net_out = NULL;
  for (size_t j = 0; j < n_nets && ep->network != NULL; j++)
    if (strcmp(nets[j].name, ep->network) == 0)
      *net_out = &nets[j];
  if (*net_out == NULL) {
    if (!name_ok(ep->network, NFT_NAME_MAX))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "endpoint %s: network name must be 1..%d characters of [A-Za-z0-9_.-]",
                         ep->key, NFT_NAME_MAX);
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s: network %s is not defined", ep->key,
                       ep->network);
  }
  if (ep->guest_ip == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s: no guest address", ep->key);
  if (ep->netns && ep->veth_ns_ip == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "endpoint %s: a namespaced endpoint needs its veth_ns_ip", ep->key);
  if (ep->n_forwards > 0 && ep->forwards == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s: %zu forwards but no array", ep->key,
                       ep->n_forwards);
  for (size_t k = 0; k < ep->n_forwards; k++)
    if (check_forward(ep, &ep->forwards[k], err) < 0)
      return -1;
  return 0;
}

/* ---- deterministic order ---- */

static int cmp_net(const void *a, const void *b)
{
  const net_network *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int cmp_ep(const void *a, const void *b)
{
  const net_endpoint *const *x = a, *const *y = b;
  return strcmp((*x)->key, (*y)->key);
}

static int cmp_u32(uint32_t a, uint32_t b) { return a < b ? -1 : a > b ? 1 : 0; }

static int cmp_fwd(const void *a, const void *b)
{
  const net_forward *const *x = a, *const *y = b;
  int c = cmp_u32((*x)->host_port, (*y)->host_port);
  if (c == 0)
    c = cmp_u32((uint32_t)(*x)->proto, (uint32_t)(*y)->proto);
  if (c == 0)
    c = cmp_u32((*x)->host_addr, (*y)->host_addr);
  if (c == 0)
    c = cmp_u32((*x)->guest_port, (*y)->guest_port);
  return c;
}

/* One forward with its endpoint, to find two claims of one host port. */
typedef struct fwd_ref {
  const net_endpoint *ep;
  const net_forward *f;
} fwd_ref;

static int cmp_fwd_ref(const void *a, const void *b)
{
  const fwd_ref *x = a, *y = b;
  int c = cmp_u32((uint32_t)x->f->proto, (uint32_t)y->f->proto);
  if (c == 0)
    c = cmp_u32(x->f->host_port, y->f->host_port);
  return c;
}

static int check_forward_conflicts(const net_endpoint *eps, size_t n_eps, cmn_error *err)
{
  size_t n = 0;
  for (size_t i = 0; i < n_eps; i++)
    n += eps[i].n_forwards;
  if (n < 2)
    return 0;
  cleanup_free fwd_ref *refs = cmn_calloc(n, sizeof *refs);
  size_t k = 0;
  for (size_t i = 0; i < n_eps; i++)
    for (size_t j = 0; j < eps[i].n_forwards; j++)
      refs[k++] = (fwd_ref){&eps[i], &eps[i].forwards[j]};
  qsort(refs, n, sizeof *refs, cmp_fwd_ref);
  for (size_t a = 0; a < n; a++)
    for (size_t b = a + 1; b < n && cmp_fwd_ref(&refs[a], &refs[b]) == 0; b++) {
      const net_forward *x = refs[a].f, *y = refs[b].f;
      if (x->host_addr == 0 || y->host_addr == 0 || x->host_addr == y->host_addr)
        return cmn_err_set(err, CMN_ALREADY_EXISTS,
                           "host port %s %u is forwarded twice (endpoints %s and %s)",
                           proto_name(x->proto), x->host_port, refs[a].ep->key, refs[b].ep->key);
    }
  return 0;
}

/* ---- rendering ---- */

static void render_forwards(sbuf *b, const net_endpoint *const *eps, size_t n_eps)
{
  for (size_t i = 0; i < n_eps; i++) {
    const net_endpoint *ep = eps[i];
    if (ep->n_forwards == 0)
      continue;
    cleanup_free const net_forward **fs = cmn_calloc(ep->n_forwards, sizeof *fs);
    for (size_t k = 0; k < ep->n_forwards; k++)
      fs[k] = &ep->forwards[k];
    qsort(fs, ep->n_forwards, sizeof *fs, cmp_fwd);
    uint32_t target = ep->netns ? ep->veth_ns_ip : ep->guest_ip;
    for (size_t k = 0; k < ep->n_forwards; k++) {
      const net_forward *f = fs[k];
      char daddr[32] = "";
      if (f->host_addr != 0)
        snprintf(daddr, sizeof daddr, "ip daddr %s ", ip4(f->host_addr).s);
      sb_add(b, "\t\tfib daddr type local %s%s dport %u dnat ip to %s:%u comment \"%s\"\n", daddr,
             proto_name(f->proto), f->host_port, ip4(target).s, f->guest_port, ep->key);
    }
  }
}

/* The interfaces between which an isolated network forwards nothing.
 * routed (inet): the network's bridge (a guest could send a packet for
 * another guest to the gateway, which would route it back onto the bridge)
 * and the host ends "emv<key>" of its namespaced endpoints; bridged (bridge
 * family): the TAPs "emt<key>" of its bridged endpoints. As an nft set
 * "{ "a", "b" }"; the count of members. */
static size_t ifname_set(sbuf *b, const net_endpoint *const *eps, size_t n_eps,
                         const net_network *net, bool routed)
{
  size_t n = 0;
  if (routed) {
    sb_add(b, "{ \"%s\"", net->bridge);
    n++;
  }
  for (size_t i = 0; i < n_eps; i++) {
    if (strcmp(eps[i]->network, net->name) != 0 || eps[i]->netns != routed)
      continue;
    sb_add(b, "%s\"%s%s\"", n == 0 ? "{ " : ", ", routed ? NET_VETH_PREFIX : NET_TAP_PREFIX,
           eps[i]->key);
    n++;
  }
  if (n > 0)
    sb_add(b, " }");
  return n;
}

static void render_isolation(sbuf *b, const net_endpoint *const *eps, size_t n_eps,
                             const net_network *net, bool routed)
{
  sbuf set = {0};
  if (ifname_set(&set, eps, n_eps, net, routed) > 0)
    sb_add(b, "\t\tiifname %s oifname %s drop comment \"network %s: isolated\"\n", set.p, set.p,
           net->name);
  free(set.p);
}

static const net_network *network_of(const net_endpoint *ep, const net_network *const *nets,
                                     size_t n_nets)
{
  for (size_t i = 0; i < n_nets; i++)
    if (strcmp(nets[i]->name, ep->network) == 0)
      return nets[i];
  return NULL;
}

char *net_nft_render_host(const net_network *nets, size_t n_nets, const net_endpoint *eps,
                          size_t n_eps, cmn_error *err)
{
  if ((n_nets > 0 && nets == NULL) || (n_eps > 0 && eps == NULL)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "nft: a count without its array");
    return NULL;
  }
  for (size_t i = 0; i < n_nets; i++) {
    if (check_network(&nets[i], i, err) < 0)
      return NULL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(nets[i].name, nets[j].name) == 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "network %s is defined twice", nets[i].name);
        return NULL;
      } else if (strcmp(nets[i].bridge, nets[j].bridge) == 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "networks %s and %s have the same bridge %s",
                    nets[j].name, nets[i].name, nets[i].bridge);
        return NULL;
      }
  }
  for (size_t i = 0; i < n_eps; i++) {
    const net_network *net;
    if (check_endpoint(&eps[i], i, nets, n_nets, &net, err) < 0)
      return NULL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(eps[i].key, eps[j].key) == 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s is given twice", eps[i].key);
        return NULL;
      }
  }
  if (check_forward_conflicts(eps, n_eps, err) < 0)
    return NULL;

  cleanup_free const net_network **ns = cmn_calloc(n_nets + 1, sizeof *ns);
  cleanup_free const net_endpoint **es = cmn_calloc(n_eps + 1, sizeof *es);
  for (size_t i = 0; i < n_nets; i++)
    ns[i] = &nets[i];
  for (size_t i = 0; i < n_eps; i++)
    es[i] = &eps[i];
  qsort(ns, n_nets, sizeof *ns, cmp_net);
  qsort(es, n_eps, sizeof *es, cmp_ep);
  bool any_isolated = false, any_forward = false;
  for (size_t i = 0; i < n_nets; i++)
    any_isolated = any_isolated || ns[i]->isolated;
  for (size_t i = 0; i < n_eps; i++)
    any_forward = any_forward || es[i]->n_forwards > 0;

  sbuf b = {0};
  sb_add(&b, "add table inet %s\ndelete table inet %s\n", NET_NFT_TABLE, NET_NFT_TABLE);
  sb_add(&b, "table inet %s {\n", NET_NFT_TABLE);
  sb_add(&b, "\tcomment \"emberd: rewritten whole from its state, do not edit\"\n");

  sb_add(&b, "\tchain prerouting {\n"
             "\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
  render_forwards(&b, es, n_eps);
  sb_add(&b, "\t}\n");

  sb_add(&b, "\tchain output {\n"
             "\t\ttype nat hook output priority -100; policy accept;\n");
  render_forwards(&b, es, n_eps);
  sb_add(&b, "\t}\n");

  sb_add(&b, "\tchain postrouting {\n"
             "\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
  for (size_t i = 0; i < n_nets; i++) {
    const net_network *n = ns[i];
    ipstr s = ip4(n->subnet);
    if (n->nat)
      sb_add(&b, "\t\tip saddr %s/%d ip daddr != %s/%d masquerade comment \"network %s\"\n", s.s,
             n->prefix, s.s, n->prefix, n->name);
    sb_add(&b,
           "\t\toifname \"%s\" ip saddr %s/%d ip daddr %s/%d ct status dnat masquerade comment "
           "\"network %s: forward hairpin\"\n",
           n->bridge, s.s, n->prefix, s.s, n->prefix, n->name);
  }
  for (size_t i = 0; i < n_eps; i++) {
    const net_network *n = network_of(es[i], ns, n_nets);
    if (es[i]->netns && n != NULL && n->nat)
      sb_add(&b, "\t\tip saddr %s oifname != \"%s*\" masquerade comment \"%s\"\n",
             ip4(es[i]->veth_ns_ip).s, NET_VETH_PREFIX, es[i]->key);
  }
  if (any_forward)
    sb_add(&b, "\t\tip saddr 127.0.0.0/8 oifname != \"lo\" ct status dnat masquerade comment "
               "\"a forward used from the host's loopback\"\n");
  sb_add(&b, "\t}\n");

  sb_add(&b, "\tchain forward {\n"
             "\t\ttype filter hook forward priority filter; policy accept;\n"
             "\t\tct state established,related accept\n"
             "\t\tct status dnat accept\n");
  for (size_t i = 0; i < n_nets; i++)
    if (ns[i]->isolated)
      render_isolation(&b, es, n_eps, ns[i], true);
  sb_add(&b, "\t}\n}\n");

  if (any_isolated) {
    sb_add(&b, "add table bridge %s\ndelete table bridge %s\n", NET_NFT_TABLE, NET_NFT_TABLE);
    sb_add(&b, "table bridge %s {\n", NET_NFT_TABLE);
    sb_add(&b, "\tcomment \"emberd: rewritten whole from its state, do not edit\"\n");
    sb_add(&b, "\tchain forward {\n"
               "\t\ttype filter hook forward priority 0; policy accept;\n");
    for (size_t i = 0; i < n_nets; i++)
      if (ns[i]->isolated)
        render_isolation(&b, es, n_eps, ns[i], false);
    sb_add(&b, "\t}\n}\n");
  }
  return b.p;
}

char *net_nft_render_ns(const net_network *net, const net_endpoint *ep, cmn_error *err)
{
  if (net == NULL || ep == NULL) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "nft: no network or endpoint");
    return NULL;
  }
  const net_network *found;
  if (check_network(net, 0, err) < 0 || check_endpoint(ep, 0, net, 1, &found, err) < 0)
    return NULL;
  if (!ep->netns) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "endpoint %s has no namespace of its own", ep->key);
    return NULL;
  }
  ipstr guest = ip4(ep->guest_ip), veth = ip4(ep->veth_ns_ip);
  sbuf b = {0};
  sb_add(&b, "add table inet %s\ndelete table inet %s\n", NET_NFT_TABLE, NET_NFT_TABLE);
  sb_add(&b, "table inet %s {\n", NET_NFT_TABLE);
  sb_add(&b, "\tcomment \"emberd: rewritten whole from its state, do not edit\"\n");
  sb_add(&b,
         "\tchain prerouting {\n"
         "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
         "\t\tiifname \"%s\" ip daddr %s dnat ip to %s comment \"%s\"\n"
         "\t}\n",
         NET_NS_VETH, veth.s, guest.s, ep->key);
  sb_add(&b,
         "\tchain postrouting {\n"
         "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
         "\t\toifname \"%s\" ip saddr %s snat ip to %s comment \"%s\"\n"
         "\t}\n}\n",
         NET_NS_VETH, guest.s, veth.s, ep->key);
  return b.p;
}

/* ---- libnftables ---- */

/* nft's error text, bounded, on one line: its "Error: ..." lines joined
 * (the source excerpts and carets it adds after them are left out). */
static void error_text(const char *raw, char *out, size_t size)
{
  size_t o = 0;
  out[0] = '\0';
  const char *p = raw ? raw : "";
  bool any = strstr(p, "Error:") != NULL;
  while (*p != '\0' && o + 1 < size) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    bool keep = !any || memmem(p, n, "Error:", 6) != NULL;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
      n--;
    if (keep && n > 0) {
      if (o > 0 && o + 2 < size) {
        memcpy(out + o, "; ", 2);
        o += 2;
      }
      size_t m = n < size - 1 - o ? n : size - 1 - o;
      memcpy(out + o, p, m);
      o += m;
      out[o] = '\0';
    }
    if (nl == NULL)
      break;
    p = nl + 1;
  }
  if (o == 0)
    snprintf(out, size, "nft gave no error text");
}

/* libnftables 1.0.6 opens its netlink socket without SOCK_CLOEXEC (in
 * nft_ctx_new), where a VMM spawned meanwhile by another thread would inherit
 * it. The socket takes the lowest free number, the one the probe just freed:
 * when that is a netfilter netlink socket without FD_CLOEXEC, mark it. This
 * narrows the window to the moments between the two calls; only a netfilter
 * netlink socket is ever touched (ember's own, or another nft call's). */
static void seal_nft_socket(int fd)
{
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || (fl & FD_CLOEXEC) != 0)
    return;
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_NETLINK)
    return;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) != 0 || v != NETLINK_NETFILTER)
    return;
  fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

/* Runs cmd with a fresh context in the calling thread's namespace; *out (when
 * not NULL) gets nft's output. */
static int nft_exec(const char *what, const char *cmd, char **out, cmn_error *err)
{
  /* libnftables exits the process when it cannot open its netlink socket:
   * find out first, and say so as an error. */
  int probe = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (probe < 0) {
    int e = errno;
    return cmn_err_errno(err, e == EPERM || e == EACCES ? CMN_PERMISSION_DENIED : CMN_UNAVAILABLE,
                         e, "nftables: %s: cannot open a netfilter netlink socket", what);
  }
  close(probe);
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "nftables: %s: no libnftables context", what);
  seal_nft_socket(probe);
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return cmn_err_set(err, CMN_INTERNAL, "nftables: %s: cannot buffer libnftables output", what);
  }
  int rc = nft_run_cmd_from_buffer(ctx, cmd);
  if (rc != 0) {
    const char *raw = nft_ctx_get_error_buffer(ctx);
    char text[NFT_ERRTEXT_MAX];
    error_text(raw, text, sizeof text);
    int code = raw != NULL && strstr(raw, "Operation not permitted") != NULL ? CMN_PERMISSION_DENIED
                                                                             : CMN_INTERNAL;
    nft_ctx_free(ctx);
    return cmn_err_set(err, code, "nftables: %s: %s%s", what, text,
                       code == CMN_PERMISSION_DENIED ? " (emberd needs CAP_NET_ADMIN)" : "");
  }
  if (out != NULL) {
    const char *o = nft_ctx_get_output_buffer(ctx);
    *out = cmn_strdup(o ? o : "");
  }
  nft_ctx_free(ctx);
  return 0;
}

static const char *const ember_families[] = {"inet", "bridge"};
#define N_FAMILIES (sizeof ember_families / sizeof ember_families[0])

/* True when text has a line that starts with prefix (whole: is exactly it). */
static bool has_line(const char *text, const char *prefix, bool whole)
{
  size_t n = strlen(prefix);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, prefix, n) == 0 && (!whole || p[n] == '\n' || p[n] == '\0'))
      return true;
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return false;
}

/* Which of ember's tables exist in this namespace. */
static int ember_tables(bool have[N_FAMILIES], cmn_error *err)
{
  cleanup_free char *out = NULL;
  if (nft_exec("list tables", "list tables", &out, err) < 0)
    return -1;
  for (size_t i = 0; i < N_FAMILIES; i++) {
    char line[64];
    snprintf(line, sizeof line, "table %s %s", ember_families[i], NET_NFT_TABLE);
    have[i] = has_line(out, line, true);
  }
  return 0;
}

int net_nft_apply(const char *rules, cmn_error *err)
{
  if (rules == NULL || rules[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "nftables: no rules to apply");
  bool have[N_FAMILIES];
  if (ember_tables(have, err) < 0)
    return -1;
  sbuf b = {0};
  for (size_t i = 0; i < N_FAMILIES; i++) {
    char line[64];
    snprintf(line, sizeof line, "table %s %s {", ember_families[i], NET_NFT_TABLE);
    if (have[i] && !has_line(rules, line, false))
      sb_add(&b, "delete table %s %s\n", ember_families[i], NET_NFT_TABLE);
  }
  sb_add(&b, "%s", rules);
  int r = nft_exec("apply ember's tables", b.p, NULL, err);
  free(b.p);
  return r;
}

int net_nft_delete(cmn_error *err)
{
  bool have[N_FAMILIES];
  if (ember_tables(have, err) < 0)
    return -1;
  sbuf b = {0};
  for (size_t i = 0; i < N_FAMILIES; i++)
    if (have[i])
      sb_add(&b, "delete table %s %s\n", ember_families[i], NET_NFT_TABLE);
  int r = b.p == NULL ? 0 : nft_exec("delete ember's tables", b.p, NULL, err);
  free(b.p);
  return r;
}

char *net_nft_list(cmn_error *err)
{
  bool have[N_FAMILIES];
  if (ember_tables(have, err) < 0)
    return NULL;
  /* one command per run: nft 1.0.6 fills its cache for the first "list
   * table" only, so a second one in the same run finds nothing */
  sbuf b = {0};
  sb_add(&b, "%s", "");
  for (size_t i = 0; i < N_FAMILIES; i++) {
    if (!have[i])
      continue;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "list table %s %s", ember_families[i], NET_NFT_TABLE);
    cleanup_free char *out = NULL;
    if (nft_exec("list ember's tables", cmd, &out, err) < 0) {
      free(b.p);
      return NULL;
    }
    sb_add(&b, "%s", out);
  }
  return b.p;
}
