/* test_net_host.c: agent/net's host objects (bridges, TAPs, veth pairs,
 * namespaces) against the real kernel, inside a network and mount namespace
 * this process makes for itself first (unshare), with the namespace folder on
 * a private tmpfs: the host's network and /run/netns are never touched, and
 * every packet stays inside namespaces this test made. Needs root; exits 77
 * (SKIP) naming what is missing otherwise. */
#include "agent/net/hostnet.h"
#include "agent/net/links.h"
#include "agent/net/net.h"
#include "agent/net/netns.h"
#include "agent/net/tap.h"
#include "common/error.h"
#include "common/mem.h"
#include "agent/net/nft.h"
#define HAVE_NFT 1

#include <CUnit/Basic.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

/* Set once in main, read by the tests. */
static char g_netns_dir[256];
static char g_tmp[64]; /* the tmpfs holding g_netns_dir */
static int g_fds_at_start;

static int count_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -1;
  int n = 0;
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

static const net_network NET1 = {.name = "default",
                                 .bridge = "embr0",
                                 .subnet = IP4(10, 77, 0, 0),
                                 .prefix = 24,
                                 .gateway = IP4(10, 77, 0, 1),
                                 .mtu = 1400,
                                 .nat = true};
static const net_network NET2 = {.name = "second",
                                 .bridge = "embr1",
                                 .subnet = IP4(10, 88, 0, 0),
                                 .prefix = 24,
                                 .gateway = IP4(10, 88, 0, 1)};

static net_endpoint tap_ep(const char *key, uint32_t guest)
{
  net_endpoint ep = {.key = key, .network = "default", .guest_ip = guest};
  return ep;
}

static net_endpoint ns_ep(const char *key, uint32_t guest, uint32_t veth_host)
{
  net_endpoint ep = {.key = key,
                     .network = "default",
                     .guest_ip = guest,
                     .netns = true,
                     .veth_host_ip = veth_host,
                     .veth_ns_ip = veth_host + 1};
  return ep;
}

static net_host *host_open(void)
{
  cmn_error err = {0};
  net_host *h = NULL;
  net_host_opts o = {.netns_dir = g_netns_dir};
  CU_ASSERT_EQUAL_FATAL(net_host_open(&o, &h, &err), 0);
  CU_ASSERT_STRING_EQUAL(net_host_netns_dir(h), g_netns_dir);
  return h;
}

/* 1 when the link exists in this thread's namespace (info in *li). */
static int link_get(const char *name, net_link_info *li)
{
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  net_link_info tmp;
  int r = net_link_get(nl, name, li != NULL ? li : &tmp, &err);
  CU_ASSERT(r >= 0);
  net_nl_close(nl);
  return r;
}

static size_t addrs_of(const char *name, net_addr4 *out, size_t max)
{
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  size_t n = 0;
  CU_ASSERT_EQUAL(net_addr_list(nl, name, out, max, &n, &err), 0);
  net_nl_close(nl);
  return n;
}

/* What a thread inside an endpoint's namespace sees. */
typedef struct ns_view {
  net_link_info tap, veth;
  int has_tap, has_veth;
  net_addr4 tap_addrs[4], veth_addrs[4];
  size_t n_tap_addrs, n_veth_addrs;
  uint32_t gw;
  int has_gw;
  char ip_forward;
  char *nft; /* ember's tables inside the namespace */
  const char *key;
} ns_view;

static int ns_view_fn(void *arg, cmn_error *err)
{
  ns_view *v = arg;
  char tap[NET_IFNAME_MAX];
  net_tap_name(v->key, tap);
  net_nl *nl = NULL;
  if (net_nl_open(&nl, err) < 0)
    return -1;
  v->has_tap = net_link_get(nl, tap, &v->tap, err);
  v->has_veth = net_link_get(nl, NET_NS_VETH, &v->veth, err);
  if (v->has_tap == 1)
    net_addr_list(nl, tap, v->tap_addrs, 4, &v->n_tap_addrs, err);
  if (v->has_veth == 1)
    net_addr_list(nl, NET_NS_VETH, v->veth_addrs, 4, &v->n_veth_addrs, err);
  v->has_gw = net_route_get_default(nl, &v->gw, err);
  net_nl_close(nl);
  v->nft = net_nft_list(err);
  int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, &v->ip_forward, 1) != 1)
      v->ip_forward = '?';
    close(fd);
  }
  return 0;
}

static int ns_view_get(const char *key, ns_view *v)
{
  memset(v, 0, sizeof(*v));
  v->key = key;
  char ns[NET_NETNS_NAME_MAX];
  net_netns_name(key, ns);
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", g_netns_dir, ns);
  cmn_error err = {0};
  int r = net_in_netns(path, ns_view_fn, v, &err);
  if (r < 0)
    fprintf(stderr, "ns_view %s: %s\n", ns, err.msg);
  return r;
}

static int netns_exists(const char *key)
{
  char ns[NET_NETNS_NAME_MAX];
  net_netns_name(key, ns);
  cmn_error err = {0};
  int r = net_netns_exists(g_netns_dir, ns, &err);
  CU_ASSERT(r >= 0);
  return r;
}

static void test_names(void)
{
  char b[NET_IFNAME_MAX], ns[NET_NETNS_NAME_MAX], key[NET_KEY_LEN + 1];
  net_tap_name("0123456789ab", b);
  CU_ASSERT_STRING_EQUAL(b, "emt0123456789ab");
  net_veth_name("0123456789ab", b);
  CU_ASSERT_STRING_EQUAL(b, "emv0123456789ab");
  net_netns_name("0123456789ab", ns);
  CU_ASSERT_STRING_EQUAL(ns, "ember-0123456789ab");
  net_tap_name("0123456789AB", b);
  CU_ASSERT_STRING_EQUAL(b, "");
  CU_ASSERT_TRUE(net_name_key("emtabcdef012345", NET_TAP_PREFIX, key));
  CU_ASSERT_STRING_EQUAL(key, "abcdef012345");
  CU_ASSERT_TRUE(net_name_key("ember-abcdef012345", NET_NETNS_PREFIX, NULL));
  CU_ASSERT_FALSE(net_name_key("emtabcdef01234", NET_TAP_PREFIX, key));
  CU_ASSERT_FALSE(net_name_key("emtabcdef0123456", NET_TAP_PREFIX, key));
  CU_ASSERT_FALSE(net_name_key("emtabcdeg012345", NET_TAP_PREFIX, key));
  CU_ASSERT_FALSE(net_name_key("emvabcdef012345", NET_TAP_PREFIX, key));
  CU_ASSERT_FALSE(net_name_key(NULL, NET_TAP_PREFIX, key));
  CU_ASSERT_TRUE(net_key_valid("000000000000"));
  CU_ASSERT_FALSE(net_key_valid(""));
}

static int fail_fn(void *arg, cmn_error *err)
{
  return cmn_err_set(err, CMN_ABORTED, "from inside %s", (const char *)arg);
}

/* 1 when the mount at path is shared (mountinfo's optional "shared:N"). */
static int mount_shared(const char *path)
{
  FILE *f = fopen("/proc/self/mountinfo", "re");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  char line[4096];
  int shared = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    char mp[1024];
    if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) == 1 && strcmp(mp, path) == 0)
      shared = strstr(line, " shared:") != NULL;
  }
  fclose(f);
  return shared;
}

static void test_netns(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "ember-ffffffffff01", &err), 1);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "ember-ffffffffff02", &err), 1);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "zzz", &err), 1);
  CU_ASSERT_EQUAL(mount_shared(g_netns_dir), 1);
  char **names = NULL;
  size_t n = 0;
  CU_ASSERT_EQUAL(net_netns_list(g_netns_dir, NET_NETNS_PREFIX, &names, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 2);
  net_names_free(names, n);
  int fd = net_netns_open(g_netns_dir, "ember-ffffffffff01", &err);
  CU_ASSERT(fd >= 0);
  CU_ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  close(fd);
  char path[512], zzz[] = "zzz";
  snprintf(path, sizeof(path), "%s/zzz", g_netns_dir);
  CU_ASSERT_EQUAL(net_in_netns(path, fail_fn, zzz, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ABORTED);
  CU_ASSERT_STRING_EQUAL(err.msg, "from inside zzz");
  CU_ASSERT_EQUAL(net_netns_delete(g_netns_dir, "zzz", &err), 1);
  CU_ASSERT_EQUAL(net_netns_delete(g_netns_dir, "zzz", &err), 0);
  CU_ASSERT_EQUAL(net_netns_open(g_netns_dir, "zzz", &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(net_in_netns(path, fail_fn, zzz, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "../x", &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(net_netns_delete(g_netns_dir, "ember-ffffffffff01", &err), 1);
  CU_ASSERT_EQUAL(net_netns_delete(g_netns_dir, "ember-ffffffffff02", &err), 1);
  CU_ASSERT_EQUAL(net_netns_list(g_netns_dir, NET_NETNS_PREFIX, &names, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 0);
  net_names_free(names, n);
  CU_ASSERT_EQUAL(net_netns_list("/nonexistent-ember-dir", "", &names, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 0);
}

static void test_bridge_twice(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_network_ensure(h, &NET1, &err), 0);
  CU_ASSERT_EQUAL(net_network_ensure(h, &NET1, &err), 0);
  net_link_info li;
  CU_ASSERT_EQUAL_FATAL(link_get("embr0", &li), 1);
  CU_ASSERT_STRING_EQUAL(li.kind, "bridge");
  CU_ASSERT_STRING_EQUAL(li.alias, NET_BRIDGE_ALIAS);
  CU_ASSERT_EQUAL(li.mtu, 1400);
  CU_ASSERT(li.flags & IFF_UP);
  net_addr4 a[4];
  CU_ASSERT_EQUAL(addrs_of("embr0", a, 4), 1);
  CU_ASSERT_EQUAL(a[0].addr, NET1.gateway);
  CU_ASSERT_EQUAL(a[0].prefix, 24);

  /* a wrong prefix of the gateway address is replaced, not duplicated */
  net_network wider = NET1;
  wider.prefix = 16;
  wider.subnet = IP4(10, 77, 0, 0);
  CU_ASSERT_EQUAL(net_network_ensure(h, &wider, &err), 0);
  CU_ASSERT_EQUAL(net_network_ensure(h, &NET1, &err), 0);
  CU_ASSERT_EQUAL(addrs_of("embr0", a, 4), 1);
  CU_ASSERT_EQUAL(a[0].prefix, 24);

  /* a crash between creating a bridge and renaming it */
  char tmp[NET_IFNAME_MAX], tmp2[NET_IFNAME_MAX];
  net_bridge_tmp_name("embr9", tmp);
  net_bridge_tmp_name("embr8", tmp2);
  CU_ASSERT_EQUAL(strncmp(tmp, NET_BRIDGE_TMP_PREFIX, 3), 0);
  CU_ASSERT_EQUAL(strlen(tmp), 15);
  CU_ASSERT_STRING_NOT_EQUAL(tmp, tmp2);
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, tmp, NULL, 0, &err), 1);
  net_network nine = NET1;
  nine.bridge = "embr9";
  CU_ASSERT_EQUAL(net_network_ensure(h, &nine, &err), 0);
  CU_ASSERT_EQUAL(link_get(tmp, NULL), 0);
  CU_ASSERT_EQUAL(link_get("embr9", &li), 1);
  CU_ASSERT_STRING_EQUAL(li.alias, NET_BRIDGE_ALIAS);
  CU_ASSERT_EQUAL(net_link_delete(nl, "embr9", &err), 1);

  /* a name taken by another kind of link */
  CU_ASSERT_EQUAL(net_link_add_veth(nl, "takenbr", "takenbr-p", -1, 0, &err), 1);
  net_network taken = NET1;
  taken.bridge = "takenbr";
  CU_ASSERT_EQUAL(net_network_ensure(h, &taken, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "takenbr"));
  CU_ASSERT_EQUAL(net_link_delete(nl, "takenbr", &err), 1);
  CU_ASSERT_EQUAL(net_link_delete(nl, "takenbr", &err), 0);
  /* a bridge someone else made keeps its (absent) alias */
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, "otherbr", NULL, 0, &err), 1);
  net_network other = NET2;
  other.bridge = "otherbr";
  CU_ASSERT_EQUAL(net_network_ensure(h, &other, &err), 0);
  CU_ASSERT_EQUAL(link_get("otherbr", &li), 1);
  CU_ASSERT_STRING_EQUAL(li.alias, "");
  CU_ASSERT_EQUAL(net_link_delete(nl, "otherbr", &err), 1);
  net_nl_close(nl);

  /* bad input */
  net_network bad = NET1;
  bad.gateway = IP4(10, 78, 0, 1);
  CU_ASSERT_EQUAL(net_network_ensure(h, &bad, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  net_host_close(h);
}

static void test_network_remove(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  net_network mine = NET2, theirs = NET2;
  mine.bridge = "embrmine";
  theirs.bridge = "embrtheirs";
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, "embrtheirs", NULL, 0, &err), 1);
  CU_ASSERT_EQUAL(net_network_ensure(h, &mine, &err), 0);
  CU_ASSERT_EQUAL(net_network_ensure(h, &theirs, &err), 0);
  net_addr4 a[4];
  CU_ASSERT_EQUAL(addrs_of("embrtheirs", a, 4), 1);
  CU_ASSERT_EQUAL(net_network_remove(h, &mine, &err), 0);
  CU_ASSERT_EQUAL(net_network_remove(h, &theirs, &err), 0);
  CU_ASSERT_EQUAL(link_get("embrmine", NULL), 0);
  CU_ASSERT_EQUAL(link_get("embrtheirs", NULL), 1); /* not ember's: only the address goes */
  CU_ASSERT_EQUAL(addrs_of("embrtheirs", a, 4), 0);
  CU_ASSERT_EQUAL(net_network_remove(h, &mine, &err), 0);
  CU_ASSERT_EQUAL(net_network_remove(h, &theirs, &err), 0);
  CU_ASSERT_EQUAL(net_link_delete(nl, "embrtheirs", &err), 1);
  CU_ASSERT_EQUAL(net_rules_remove(h, &err), 0);
  net_nl_close(nl);
  net_host_close(h);
}

static void test_tap_twice(void)
{
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emttest0", &err), 1);
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emttest0", &err), 0);
  net_link_info li;
  CU_ASSERT_EQUAL(link_get("emttest0", &li), 1);
  CU_ASSERT_STRING_EQUAL(li.kind, "tun");
  /* a VMM holding the TAP open: still fine */
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  CU_ASSERT_FATAL(fd >= 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "emttest0");
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  CU_ASSERT_EQUAL(ioctl(fd, TUNSETIFF, &ifr), 0);
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emttest0", &err), 0);
  close(fd);
  CU_ASSERT_EQUAL(link_get("emttest0", NULL), 1); /* persistent */
  CU_ASSERT_EQUAL(net_tap_delete(nl, "emttest0", &err), 1);
  CU_ASSERT_EQUAL(link_get("emttest0", NULL), 0);
  CU_ASSERT_EQUAL(net_tap_delete(nl, "emttest0", &err), 0);
  /* a bridge with that name is not a TAP */
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, "emttest1", NULL, 0, &err), 1);
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emttest1", &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  CU_ASSERT_EQUAL(net_link_delete(nl, "emttest1", &err), 1);
  net_nl_close(nl);
}

static void test_endpoint_tap(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  net_endpoint ep = tap_ep("aaaaaaaaaa01", IP4(10, 77, 0, 2));
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  net_link_info br, tap;
  CU_ASSERT_EQUAL_FATAL(link_get("embr0", &br), 1);
  CU_ASSERT_EQUAL_FATAL(link_get("emtaaaaaaaaaa01", &tap), 1);
  CU_ASSERT_STRING_EQUAL(tap.kind, "tun");
  CU_ASSERT_EQUAL(tap.master, br.ifindex);
  CU_ASSERT_EQUAL(tap.mtu, 1400);
  CU_ASSERT(tap.flags & IFF_UP);
  CU_ASSERT_EQUAL(netns_exists("aaaaaaaaaa01"), 0);
  CU_ASSERT_EQUAL(link_get("emvaaaaaaaaaa01", NULL), 0);

  /* wrong network name */
  net_endpoint bad = ep;
  bad.network = "second";
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &bad, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  bad = ep;
  bad.key = "AAAAAAAAAA01";
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &bad, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);

  CU_ASSERT_EQUAL(net_endpoint_remove(h, "aaaaaaaaaa01", &err), 0);
  CU_ASSERT_EQUAL(link_get("emtaaaaaaaaaa01", NULL), 0);
  CU_ASSERT_EQUAL(net_endpoint_remove(h, "aaaaaaaaaa01", &err), 0);
  net_host_close(h);
}

/* Connects from inside a namespace to addr:port (TCP). */
typedef struct conn_arg {
  uint32_t addr;
  uint16_t port;
  int errnum;
} conn_arg;

static int connect_fn(void *arg, cmn_error *err)
{
  conn_arg *c = arg;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "socket");
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {
      .sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr.s_addr = htonl(c->addr)};
  c->errnum = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
  close(fd);
  return 0;
}

/* A TCP connection from the endpoint's namespace to addr in this one. */
static int connects_from_ns(const char *key, uint32_t addr)
{
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  CU_ASSERT_FATAL(l >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
  socklen_t sl = sizeof(sa);
  if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0 ||
      getsockname(l, (struct sockaddr *)&sa, &sl) < 0) {
    fprintf(stderr, "listen: %s\n", cmn_strerror(errno));
    close(l);
    return 0;
  }
  conn_arg c = {.addr = addr, .port = ntohs(sa.sin_port)};
  char ns[NET_NETNS_NAME_MAX], path[512];
  net_netns_name(key, ns);
  snprintf(path, sizeof(path), "%s/%s", g_netns_dir, ns);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_in_netns(path, connect_fn, &c, &err), 0);
  int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  int ok = c.errnum == 0 && a >= 0;
  if (!ok)
    fprintf(stderr, "connect from %s: %s\n", ns, cmn_strerror(c.errnum));
  if (a >= 0)
    close(a);
  close(l);
  return ok;
}

static void check_ns_endpoint(const net_endpoint *ep)
{
  char veth[NET_IFNAME_MAX], tap[NET_IFNAME_MAX];
  net_veth_name(ep->key, veth);
  net_tap_name(ep->key, tap);
  CU_ASSERT_EQUAL(netns_exists(ep->key), 1);
  CU_ASSERT_EQUAL(link_get(tap, NULL), 0); /* the TAP is inside the namespace */
  net_link_info hv;
  CU_ASSERT_EQUAL_FATAL(link_get(veth, &hv), 1);
  CU_ASSERT_STRING_EQUAL(hv.kind, "veth");
  CU_ASSERT(hv.flags & IFF_UP);
  net_addr4 a[4];
  CU_ASSERT_EQUAL(addrs_of(veth, a, 4), 1);
  CU_ASSERT_EQUAL(a[0].addr, ep->veth_host_ip);
  CU_ASSERT_EQUAL(a[0].prefix, 31);
  CU_ASSERT_EQUAL(link_get(NET_NS_VETH, NULL), 0); /* the peer is not here */

  ns_view v;
  CU_ASSERT_EQUAL_FATAL(ns_view_get(ep->key, &v), 0);
  CU_ASSERT_EQUAL(v.has_tap, 1);
  CU_ASSERT_STRING_EQUAL(v.tap.kind, "tun");
  CU_ASSERT(v.tap.flags & IFF_UP);
  CU_ASSERT_EQUAL(v.tap.mtu, 1400);
  CU_ASSERT_EQUAL(v.n_tap_addrs, 1);
  CU_ASSERT_EQUAL(v.tap_addrs[0].addr, NET1.gateway);
  CU_ASSERT_EQUAL(v.tap_addrs[0].prefix, NET1.prefix);
  CU_ASSERT_EQUAL(v.has_veth, 1);
  CU_ASSERT_STRING_EQUAL(v.veth.kind, "veth");
  CU_ASSERT(v.veth.flags & IFF_UP);
  CU_ASSERT_EQUAL(v.veth.peer, hv.ifindex);
  CU_ASSERT_EQUAL(hv.peer, v.veth.ifindex);
  CU_ASSERT_EQUAL(v.n_veth_addrs, 1);
  CU_ASSERT_EQUAL(v.veth_addrs[0].addr, ep->veth_ns_ip);
  CU_ASSERT_EQUAL(v.veth_addrs[0].prefix, 31);
  CU_ASSERT_EQUAL(v.has_gw, 1);
  CU_ASSERT_EQUAL(v.gw, ep->veth_host_ip);
  CU_ASSERT_EQUAL(v.ip_forward, '1');
  CU_ASSERT_PTR_NOT_NULL(v.nft);
  if (HAVE_NFT && v.nft != NULL) {
    char ip[INET_ADDRSTRLEN] = "", dnat[64];
    uint32_t g = htonl(ep->guest_ip);
    inet_ntop(AF_INET, &g, ip, sizeof(ip));
    snprintf(dnat, sizeof(dnat), "dnat ip to %s", ip);
    CU_ASSERT_PTR_NOT_NULL(strstr(v.nft, "table inet ember"));
    CU_ASSERT_PTR_NOT_NULL(strstr(v.nft, dnat));
  }
  free(v.nft);
}

/* ember's tables in this (the test's) namespace contain `what`. */
static bool host_nft_has(const char *what)
{
  cmn_error err = {0};
  char *l = net_nft_list(&err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  bool r = strstr(l, what) != NULL;
  free(l);
  return r;
}

static void test_endpoint_netns(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  net_endpoint ep = ns_ep("bbbbbbbbbb01", IP4(10, 77, 0, 2), IP4(10, 200, 0, 0));
  int rc = net_endpoint_ensure(h, &NET1, &ep, &err);
  if (rc < 0)
    fprintf(stderr, "ensure: %s\n", err.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep);
  /* the pair carries traffic both ways: to the host end of the veth, and
   * through the namespace's default route to another address of this
   * (test-made) namespace */
  CU_ASSERT_EQUAL(net_network_ensure(h, &NET2, &err), 0);
  CU_ASSERT_TRUE(connects_from_ns(ep.key, ep.veth_host_ip));
  CU_ASSERT_TRUE(connects_from_ns(ep.key, NET2.gateway));

  /* the same key switched to TAP mode: the namespace objects go */
  net_endpoint tep = tap_ep("bbbbbbbbbb01", IP4(10, 77, 0, 2));
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &tep, &err), 0);
  CU_ASSERT_EQUAL(netns_exists(ep.key), 0);
  CU_ASSERT_EQUAL(link_get("emvbbbbbbbbbb01", NULL), 0);
  CU_ASSERT_EQUAL(link_get("emtbbbbbbbbbb01", NULL), 1);
  /* and back */
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  CU_ASSERT_EQUAL(link_get("emtbbbbbbbbbb01", NULL), 0);
  check_ns_endpoint(&ep);

  CU_ASSERT_EQUAL(net_endpoint_remove(h, ep.key, &err), 0);
  CU_ASSERT_EQUAL(netns_exists(ep.key), 0);
  CU_ASSERT_EQUAL(link_get("emvbbbbbbbbbb01", NULL), 0);
  CU_ASSERT_EQUAL(link_get("emtbbbbbbbbbb01", NULL), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/ember-bbbbbbbbbb01", g_netns_dir);
  struct stat st;
  CU_ASSERT_EQUAL(stat(path, &st), -1);
  CU_ASSERT_EQUAL(net_endpoint_remove(h, ep.key, &err), 0);

  /* bad veth addresses */
  net_endpoint bad = ep;
  bad.veth_ns_ip = IP4(10, 200, 0, 5);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &bad, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(netns_exists(ep.key), 0);
  net_host_close(h);
}

static void test_half_state(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  CU_ASSERT_EQUAL(net_network_ensure(h, &NET1, &err), 0);
  /* a namespace without its veth pair (a crash right after creating it) */
  net_endpoint ep = ns_ep("cccccccccc01", IP4(10, 77, 0, 3), IP4(10, 200, 0, 2));
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "ember-cccccccccc01", &err), 1);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "ember-cccccccccc01", &err), 0);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep);
  /* a host veth whose peer is not in the namespace */
  CU_ASSERT_EQUAL(net_endpoint_remove(h, ep.key, &err), 0);
  CU_ASSERT_EQUAL(net_link_add_veth(nl, "emvcccccccccc01", "strayp", -1, 0, &err), 1);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep);
  CU_ASSERT_EQUAL(link_get("strayp", NULL), 0);
  /* stray addresses on ember's links (a changed transit address) */
  CU_ASSERT_EQUAL(net_addr_ensure(nl, "emvcccccccccc01", IP4(10, 200, 9, 9), 31, &err), 1);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep); /* one address each */
  /* another transit /31: addresses and the default route follow */
  net_endpoint moved = ns_ep("cccccccccc01", IP4(10, 77, 0, 3), IP4(10, 200, 0, 10));
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &moved, &err), 0);
  check_ns_endpoint(&moved);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep);
  /* a leftover plain file where the namespace should be */
  CU_ASSERT_EQUAL(net_endpoint_remove(h, ep.key, &err), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/ember-cccccccccc01", g_netns_dir);
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  CU_ASSERT(fd >= 0);
  close(fd);
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &ep, &err), 0);
  check_ns_endpoint(&ep);
  CU_ASSERT_EQUAL(net_endpoint_remove(h, ep.key, &err), 0);

  /* a TAP not attached to the bridge, down, wrong MTU */
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emtcccccccccc02", &err), 1);
  net_endpoint tep = tap_ep("cccccccccc02", IP4(10, 77, 0, 4));
  CU_ASSERT_EQUAL(net_endpoint_ensure(h, &NET1, &tep, &err), 0);
  net_link_info br, tap;
  CU_ASSERT_EQUAL(link_get("embr0", &br), 1);
  CU_ASSERT_EQUAL(link_get("emtcccccccccc02", &tap), 1);
  CU_ASSERT_EQUAL(tap.master, br.ifindex);
  CU_ASSERT(tap.flags & IFF_UP);
  CU_ASSERT_EQUAL(tap.mtu, 1400);
  CU_ASSERT_EQUAL(net_endpoint_remove(h, tep.key, &err), 0);
  net_nl_close(nl);
  net_host_close(h);
}

static void test_reconcile(void)
{
  net_host *h = host_open();
  cmn_error err = {0};
  net_nl *nl = NULL;
  CU_ASSERT_EQUAL_FATAL(net_nl_open(&nl, &err), 0);
  /* orphans of ember */
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emtdddddddddd0f", &err), 1);
  CU_ASSERT_EQUAL(net_link_add_veth(nl, "emvdddddddddd0e", "orphp", -1, 0, &err), 1);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "ember-dddddddddd0d", &err), 1);
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, "embrold", NET_BRIDGE_ALIAS, 0, &err), 1);
  char tmp[NET_IFNAME_MAX];
  net_bridge_tmp_name("embrgone", tmp); /* a crash before the rename */
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, tmp, NULL, 0, &err), 1);
  /* not ember's */
  CU_ASSERT_EQUAL(net_link_ensure_bridge(nl, "foreignbr", NULL, 0, &err), 1);
  CU_ASSERT_EQUAL(net_link_add_veth(nl, "foreign0", "foreign1", -1, 0, &err), 1);
  CU_ASSERT_EQUAL(net_tap_ensure(nl, "emtnotakey", &err), 1);
  CU_ASSERT_EQUAL(net_netns_create(g_netns_dir, "other-ns", &err), 1);

  net_network nets[2] = {NET1, NET2};
  net_endpoint eps[3] = {tap_ep("dddddddddd01", IP4(10, 77, 0, 2)),
                         ns_ep("dddddddddd02", IP4(10, 77, 0, 3), IP4(10, 200, 0, 4)),
                         tap_ep("dddddddddd03", IP4(10, 88, 0, 2))};
  eps[2].network = "second";
  net_reconcile_report rep = {-1, -1};
  int rc = net_reconcile(h, nets, 2, eps, 3, &rep, &err);
  if (rc < 0)
    fprintf(stderr, "reconcile: %s\n", err.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT(rep.created >= 4); /* 2 TAPs, a namespace, a veth pair (bridges may exist) */
  CU_ASSERT_EQUAL(rep.removed, 5);
  CU_ASSERT_EQUAL(link_get(tmp, NULL), 0);
  CU_ASSERT_EQUAL(link_get("emtdddddddddd0f", NULL), 0);
  CU_ASSERT_EQUAL(link_get("emvdddddddddd0e", NULL), 0);
  CU_ASSERT_EQUAL(link_get("orphp", NULL), 0);
  CU_ASSERT_EQUAL(netns_exists("dddddddddd0d"), 0);
  CU_ASSERT_EQUAL(link_get("embrold", NULL), 0);
  CU_ASSERT_EQUAL(link_get("foreignbr", NULL), 1);
  CU_ASSERT_EQUAL(link_get("foreign0", NULL), 1);
  CU_ASSERT_EQUAL(link_get("foreign1", NULL), 1);
  CU_ASSERT_EQUAL(link_get("emtnotakey", NULL), 1);
  CU_ASSERT_EQUAL(net_netns_exists(g_netns_dir, "other-ns", &err), 1);
  net_link_info br0, br1, t1, t3;
  CU_ASSERT_EQUAL(link_get("embr0", &br0), 1);
  CU_ASSERT_EQUAL(link_get("embr1", &br1), 1);
  CU_ASSERT_EQUAL(link_get("emtdddddddddd01", &t1), 1);
  CU_ASSERT_EQUAL(link_get("emtdddddddddd03", &t3), 1);
  CU_ASSERT_EQUAL(t1.master, br0.ifindex);
  CU_ASSERT_EQUAL(t3.master, br1.ifindex);
  check_ns_endpoint(&eps[1]);

  if (HAVE_NFT) {
    CU_ASSERT_TRUE(host_nft_has("table inet ember"));
    CU_ASSERT_TRUE(host_nft_has("masquerade"));
  }

  rep.created = rep.removed = -1;
  CU_ASSERT_EQUAL(net_reconcile(h, nets, 2, eps, 3, &rep, &err), 0);
  CU_ASSERT_EQUAL(rep.created, 0);
  CU_ASSERT_EQUAL(rep.removed, 0);

  /* an endpoint on an unknown network: nothing is made */
  net_endpoint bad[1] = {tap_ep("dddddddddd09", IP4(10, 99, 0, 2))};
  bad[0].network = "nope";
  CU_ASSERT_EQUAL(net_reconcile(h, nets, 2, bad, 1, &rep, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(link_get("emtdddddddddd09", NULL), 0);
  CU_ASSERT_EQUAL(link_get("emtdddddddddd01", NULL), 1);

  /* nothing wanted: ember's objects go, the others stay */
  CU_ASSERT_EQUAL(net_reconcile(h, NULL, 0, NULL, 0, &rep, &err), 0);
  CU_ASSERT_EQUAL(rep.created, 0);
  CU_ASSERT_EQUAL(rep.removed, 6); /* 2 bridges, 2 TAPs, a veth pair, a namespace */
  CU_ASSERT_EQUAL(link_get("embr0", NULL), 0);
  CU_ASSERT_EQUAL(link_get("emvdddddddddd02", NULL), 0);
  CU_ASSERT_EQUAL(netns_exists("dddddddddd02"), 0);
  CU_ASSERT_EQUAL(link_get("foreignbr", NULL), 1);
  CU_ASSERT_EQUAL(link_get("emtnotakey", NULL), 1);
  if (HAVE_NFT)
    CU_ASSERT_FALSE(host_nft_has("table inet ember"));
  net_nl_close(nl);
  net_host_close(h);
}

/* Many threads ensuring the same objects: one of each. */
typedef struct race_arg {
  net_host *h;
  net_endpoint ep;
  int rc;
} race_arg;

static void *race_fn(void *p)
{
  race_arg *a = p;
  cmn_error err = {0};
  a->rc = net_endpoint_ensure(a->h, &NET1, &a->ep, &err);
  if (a->rc < 0)
    fprintf(stderr, "race: %s\n", err.msg);
  return NULL;
}

static void test_threads(void)
{
  net_host *h = host_open();
  race_arg a[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    a[i].h = h;
    a[i].ep = ns_ep("eeeeeeeeee01", IP4(10, 77, 0, 9), IP4(10, 200, 0, 8));
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, race_fn, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(a[i].rc, 0);
  }
  check_ns_endpoint(&a[0].ep);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_endpoint_remove(h, "eeeeeeeeee01", &err), 0);
  net_host_close(h);
}

static void test_no_fd_leak(void) { CU_ASSERT_EQUAL(count_fds(), g_fds_at_start); }

/* This process into its own network and mount namespaces, a tmpfs for the
 * namespace folder. 0, or 77 with the reason printed. */
static int sandbox(void)
{
  if (geteuid() != 0) {
    printf("SKIP: test_net_host needs root (network namespaces, TAP devices)\n");
    return 77;
  }
  if (access("/dev/net/tun", R_OK | W_OK) != 0) {
    printf("SKIP: test_net_host needs /dev/net/tun\n");
    return 77;
  }
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
    printf("SKIP: test_net_host: unshare(CLONE_NEWNET|CLONE_NEWNS) refused: %s\n",
           cmn_strerror(errno));
    return 77;
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
    printf("SKIP: test_net_host: making mounts private refused: %s\n", cmn_strerror(errno));
    return 77;
  }
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/ember-net-test-XXXXXX");
  if (mkdtemp(g_tmp) == NULL || mount("tmpfs", g_tmp, "tmpfs", 0, "size=1m,mode=0700") < 0) {
    printf("SKIP: test_net_host: a tmpfs for the namespace folder: %s\n", cmn_strerror(errno));
    if (g_tmp[0] != '\0')
      rmdir(g_tmp);
    return 77;
  }
  snprintf(g_netns_dir, sizeof(g_netns_dir), "%s/netns", g_tmp);
  /* this namespace's loopback, for local connections */
  cmn_error err = {0};
  net_nl *nl = NULL;
  if (net_nl_open(&nl, &err) < 0 || net_link_set_up(nl, "lo", &err) < 0) {
    printf("FAIL: test_net_host: loopback up: %s\n", err.msg);
    net_nl_close(nl);
    return 1;
  }
  net_nl_close(nl);
  return 0;
}

int main(void)
{
  int sb = sandbox();
  if (sb != 0)
    return sb;
  g_fds_at_start = count_fds();
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("net_host", NULL, NULL);
  CU_add_test(s, "names from keys", test_names);
  CU_add_test(s, "namespaces: create, list, open, run inside, delete", test_netns);
  CU_add_test(s, "bridge: ensure twice, one bridge, one address", test_bridge_twice);
  CU_add_test(s, "network remove: ember's bridge goes, another keeps all but the address",
              test_network_remove);
  CU_add_test(s, "tap: ensure twice, in use, name taken", test_tap_twice);
  CU_add_test(s, "endpoint on the bridge: ensure, remove", test_endpoint_tap);
  CU_add_test(s, "endpoint in a namespace: ensure, traffic, remove", test_endpoint_netns);
  CU_add_test(s, "half-made states fixed by ensure", test_half_state);
  CU_add_test(s, "reconcile: orphans, foreign objects, twice", test_reconcile);
  CU_add_test(s, "concurrent ensure of one endpoint", test_threads);
  CU_add_test(s, "no file descriptor left open", test_no_fd_leak);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  /* the namespaces die with this process; the empty folder is on the host */
  umount2(g_tmp, MNT_DETACH);
  rmdir(g_tmp);
  return failed == 0 ? 0 : 1;
}
