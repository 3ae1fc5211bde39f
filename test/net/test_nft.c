/* test_nft.c: CUnit tests of ember's nftables tables (agent/net/nft.c).
 *
 *   test_nft render   the rendered text: golden fragments, determinism, and
 *                     refusal of every input that could reach the rules text.
 *   test_nft apply    libnftables for real, inside a network namespace this
 *                     process makes (unshare(CLONE_NEWNET)) so the host's
 *                     ruleset is never touched: apply, idempotence, changes,
 *                     a foreign table left alone, atomic failure, delete,
 *                     permission errors, and a DNAT forward carrying a TCP
 *                     connection (over loopback, inside that namespace).
 *                     Exits 77 (skip) when not root or without namespaces. */
#include "agent/net/nft.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/mem.h"
#include "common/proc.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))
#define KEY_A "0123456789ab"
#define KEY_B "0123456789ac"
#define KEY_C "00000000000f"
#define KEY_D "fedcba987654"

static size_t count(const char *hay, const char *needle)
{
  size_t n = 0;
  for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

static void expect_has(const char *text, const char *frag)
{
  if (text == NULL || strstr(text, frag) == NULL)
    fprintf(stderr, "\nmissing:\n  %s\nin:\n%s\n", frag, text ? text : "(null)");
  CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, frag) : NULL);
}

/* ---- the states the tests render ---- */

static const net_forward fwd_a[] = {
    {.proto = NET_PROTO_UDP, .host_port = 5353, .guest_port = 53, .host_addr = IP(192, 0, 2, 10)},
    {.proto = NET_PROTO_TCP, .host_port = 8080, .guest_port = 80},
};

static net_network net_default(void)
{
  return (net_network){.name = "default",
                       .bridge = "ember0",
                       .subnet = IP(10, 88, 0, 0),
                       .prefix = 24,
                       .gateway = IP(10, 88, 0, 1),
                       .nat = true};
}

static net_endpoint ep_bridged(const char *key, uint32_t ip, const net_forward *f, size_t n)
{
  return (net_endpoint){
      .key = key, .network = "default", .guest_ip = ip, .forwards = f, .n_forwards = n};
}

static net_endpoint ep_ns(const char *key, const char *network, uint32_t veth_ns)
{
  return (net_endpoint){.key = key,
                        .network = network,
                        .guest_ip = IP(10, 88, 0, 2),
                        .netns = true,
                        .veth_host_ip = veth_ns - 1,
                        .veth_ns_ip = veth_ns};
}

static char *render1(const net_network *n, size_t nn, const net_endpoint *e, size_t ne)
{
  cmn_error err = {0};
  char *t = net_nft_render_host(n, nn, e, ne, &err);
  if (t == NULL)
    fprintf(stderr, "render: %s\n", err.msg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  return t;
}

/* ---- render ---- */

static void test_render_nat_and_forwards(void)
{
  net_network n = net_default();
  net_endpoint e = ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2);
  cleanup_free char *t = render1(&n, 1, &e, 1);
  CU_ASSERT_EQUAL(strncmp(t, "add table inet ember\ndelete table inet ember\ntable inet ember {\n",
                          strlen("add table inet ember\ndelete table inet ember\ntable inet "
                                 "ember {\n")),
                  0);
  expect_has(t, "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy "
                "accept;\n");
  expect_has(t, "\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n");
  expect_has(t, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy "
                "accept;\n");
  expect_has(t, "\t\tip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 masquerade comment \"network "
                "default\"\n");
  const char *tcp =
      "\t\tfib daddr type local tcp dport 8080 dnat ip to 10.88.0.2:80 comment \"" KEY_A "\"\n";
  const char *udp = "\t\tfib daddr type local ip daddr 192.0.2.10 udp dport 5353 dnat ip to "
                    "10.88.0.2:53 comment \"" KEY_A "\"\n";
  expect_has(t, tcp);
  expect_has(t, udp);
  CU_ASSERT_EQUAL(count(t, tcp), 2); /* prerouting and output */
  CU_ASSERT_EQUAL(count(t, udp), 2);
  /* sorted by port: 5353 before 8080 */
  CU_ASSERT_TRUE(strstr(t, udp) < strstr(t, tcp));
  expect_has(t, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
                "\t\tct state established,related accept\n\t\tct status dnat accept\n\t}\n");
  CU_ASSERT_PTR_NULL(strstr(t, "table bridge"));
  CU_ASSERT_PTR_NULL(strstr(t, "drop"));
  expect_has(t, "\t\toifname \"ember0\" ip saddr 10.88.0.0/24 ip daddr 10.88.0.0/24 ct status dnat "
                "masquerade comment \"network default: forward hairpin\"\n");
  expect_has(t, "\t\tip saddr 127.0.0.0/8 oifname != \"lo\" ct status dnat masquerade");

  /* without nat: no masquerade of the subnet */
  n.nat = false;
  cleanup_free char *t2 = render1(&n, 1, &e, 1);
  CU_ASSERT_PTR_NULL(strstr(t2, "ip daddr != 10.88.0.0/24 masquerade"));
  expect_has(t2, tcp);
}

static void test_render_namespaced(void)
{
  net_network n = net_default();
  static const net_forward f[] = {{.proto = NET_PROTO_TCP, .host_port = 2222, .guest_port = 22}};
  net_endpoint e[2] = {ep_ns(KEY_B, "default", IP(10, 200, 0, 3)),
                       ep_ns(KEY_A, "default", IP(10, 200, 0, 1))};
  e[0].forwards = f;
  e[0].n_forwards = 1;
  cleanup_free char *t = render1(&n, 1, e, 2);
  /* the target of a namespaced forward is its veth_ns_ip */
  expect_has(t, "\t\tfib daddr type local tcp dport 2222 dnat ip to 10.200.0.3:22 comment \"" KEY_B
                "\"\n");
  expect_has(t, "\t\tip saddr 10.200.0.1 oifname != \"emv*\" masquerade comment \"" KEY_A "\"\n");
  expect_has(t, "\t\tip saddr 10.200.0.3 oifname != \"emv*\" masquerade comment \"" KEY_B "\"\n");
  /* sorted by key */
  CU_ASSERT_TRUE(strstr(t, "10.200.0.1 oifname") < strstr(t, "10.200.0.3 oifname"));
  n.nat = false;
  cleanup_free char *t2 = render1(&n, 1, e, 2);
  CU_ASSERT_PTR_NULL(strstr(t2, "oifname != \"emv*\" masquerade"));
}

static void test_render_isolated(void)
{
  net_network n[2] = {net_default(), net_default()};
  n[1].name = "iso";
  n[1].bridge = "ember1";
  n[1].subnet = IP(10, 89, 0, 0);
  n[1].isolated = true;
  n[1].nat = false;
  net_endpoint e[5] = {
      ep_bridged(KEY_B, IP(10, 89, 0, 3), NULL, 0), ep_bridged(KEY_A, IP(10, 89, 0, 2), NULL, 0),
      ep_ns(KEY_D, "iso", IP(10, 200, 0, 5)), ep_ns(KEY_C, "iso", IP(10, 200, 0, 7)),
      ep_bridged("aaaaaaaaaaaa", IP(10, 88, 0, 9), NULL, 0)};
  e[0].network = e[1].network = "iso";
  cleanup_free char *t = render1(n, 2, e, 5);
  expect_has(t, "\t\tiifname { \"ember1\", \"emv" KEY_C "\", \"emv" KEY_D
                "\" } oifname { \"ember1\", \"emv" KEY_C "\", \"emv" KEY_D
                "\" } drop comment \"network iso: isolated\"\n\t}\n}\n");
  expect_has(t, "add table bridge ember\ndelete table bridge ember\ntable bridge ember {\n");
  expect_has(t, "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"
                "\t\tiifname { \"emt" KEY_A "\", \"emt" KEY_B "\" } oifname { \"emt" KEY_A
                "\", \"emt" KEY_B "\" } drop comment \"network iso: isolated\"\n\t}\n}\n");
  /* the non-isolated network's endpoint is in no drop */
  CU_ASSERT_PTR_NULL(strstr(t, "aaaaaaaaaaaa"));
  CU_ASSERT_EQUAL(count(t, " drop "), 2);
  /* no nat on iso, nat on default */
  CU_ASSERT_PTR_NULL(strstr(t, "10.200.0.5 oifname"));
  expect_has(t, "ip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 masquerade");
  CU_ASSERT_PTR_NULL(strstr(t, "ip daddr != 10.89.0.0/24"));
}

static void test_render_deterministic(void)
{
  net_network n[2] = {net_default(), net_default()};
  n[1].name = "b-net";
  n[1].bridge = "ember1";
  n[1].subnet = IP(10, 89, 0, 0);
  n[1].isolated = true;
  net_forward f1[] = {fwd_a[1], fwd_a[0]};
  net_endpoint e[3] = {ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2),
                       ep_ns(KEY_C, "b-net", IP(10, 200, 0, 1)),
                       ep_bridged(KEY_B, IP(10, 89, 0, 2), NULL, 0)};
  e[2].network = "b-net";
  cleanup_free char *t1 = render1(n, 2, e, 3);
  /* reversed networks, endpoints and forwards */
  net_network rn[2] = {n[1], n[0]};
  net_endpoint re[3] = {e[2], e[1], e[0]};
  re[2].forwards = f1;
  cleanup_free char *t2 = render1(rn, 2, re, 3);
  CU_ASSERT_STRING_EQUAL(t1, t2);
  cleanup_free char *t3 = render1(n, 2, e, 3);
  CU_ASSERT_STRING_EQUAL(t1, t3);
  CU_ASSERT_TRUE(strstr(t1, "network b-net\"") < strstr(t1, "network default\""));
}

static void test_render_ns_golden(void)
{
  net_network n = net_default();
  net_endpoint e = ep_ns(KEY_A, "default", IP(10, 200, 0, 1));
  cmn_error err = {0};
  cleanup_free char *t = net_nft_render_ns(&n, &e, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  const char *want = "add table inet ember\n"
                     "delete table inet ember\n"
                     "table inet ember {\n"
                     "\tcomment \"emberd: rewritten whole from its state, do not edit\"\n"
                     "\tchain prerouting {\n"
                     "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
                     "\t\tiifname \"veth0\" ip daddr 10.200.0.1 dnat ip to 10.88.0.2 comment "
                     "\"" KEY_A "\"\n"
                     "\t}\n"
                     "\tchain postrouting {\n"
                     "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                     "\t\toifname \"veth0\" ip saddr 10.88.0.2 snat ip to 10.200.0.1 comment "
                     "\"" KEY_A "\"\n"
                     "\t}\n"
                     "}\n";
  CU_ASSERT_STRING_EQUAL(t, want);
  /* a bridged endpoint has no namespace table */
  e.netns = false;
  char *t2 = net_nft_render_ns(&n, &e, &err);
  CU_ASSERT_PTR_NULL(t2);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  free(t2);
}

/* Renders the host tables and expects code and a message naming `names`. */
static void refused(const net_network *n, size_t nn, const net_endpoint *e, size_t ne, int code,
                    const char *names)
{
  cmn_error err = {0};
  char *t = net_nft_render_host(n, nn, e, ne, &err);
  CU_ASSERT_PTR_NULL(t);
  free(t);
  CU_ASSERT_EQUAL(err.code, code);
  if (strstr(err.msg, names) == NULL)
    fprintf(stderr, "\nerror \"%s\" does not name \"%s\"\n", err.msg, names);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, names));
}

static void test_render_refusals(void)
{
  net_endpoint e = ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2);
  const char *bad_names[] = {"",         "br 0",  "br0\";drop", "abcdefghijklmnop",
                             "br0\nadd", "br{0}", "br/0",       "br0*"};
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
    net_network n = net_default();
    n.bridge = bad_names[i];
    refused(&n, 1, &e, 1, CMN_INVALID_ARGUMENT, "bridge name");
  }
  net_network n = net_default();
  n.bridge = "abcdefghijklmno"; /* 15: the longest interface name */
  cleanup_free char *ok = render1(&n, 1, &e, 1);
  expect_has(ok, "oifname \"abcdefghijklmno\" ip saddr");

  n = net_default();
  n.name = "de\"fault";
  refused(&n, 1, &e, 0, CMN_INVALID_ARGUMENT, "name");
  n.name = NULL;
  refused(&n, 1, &e, 0, CMN_INVALID_ARGUMENT, "name");
  n = net_default();
  n.prefix = 7;
  refused(&n, 1, &e, 1, CMN_INVALID_ARGUMENT, "prefix /7");
  n.prefix = 31;
  refused(&n, 1, &e, 1, CMN_INVALID_ARGUMENT, "prefix /31");
  n = net_default();
  n.subnet = IP(10, 88, 0, 1);
  refused(&n, 1, &e, 1, CMN_INVALID_ARGUMENT, "10.88.0.1/24");
  net_network two[2] = {net_default(), net_default()};
  refused(two, 2, &e, 1, CMN_INVALID_ARGUMENT, "default is defined twice");
  two[1].name = "second";
  refused(two, 2, &e, 1, CMN_INVALID_ARGUMENT, "the same bridge ember0");

  n = net_default();
  const char *bad_keys[] = {"0123456789AB",  "0123456789a",  "0123456789abc",
                            "0123456789a\"", "01234567 9ab", ""};
  for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
    net_endpoint b = e;
    b.key = bad_keys[i];
    refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "key");
  }
  net_endpoint b = e;
  b.network = "other";
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "network other is not defined");
  b.network = "x\" drop";
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "network name");
  b = e;
  b.guest_ip = 0;
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "guest address");
  b = ep_ns(KEY_A, "default", 0);
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "veth_ns_ip");
  net_endpoint twice[2] = {e, e};
  twice[1].forwards = NULL;
  twice[1].n_forwards = 0;
  refused(&n, 1, twice, 2, CMN_INVALID_ARGUMENT, KEY_A " is given twice");

  net_forward f = {.proto = NET_PROTO_TCP, .host_port = 0, .guest_port = 80};
  b = ep_bridged(KEY_A, IP(10, 88, 0, 2), &f, 1);
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "ports must be in 1..65535");
  f.host_port = 80;
  f.guest_port = 0;
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "ports must be in 1..65535");
  f.guest_port = 80;
  f.proto = (net_proto)3;
  refused(&n, 1, &b, 1, CMN_INVALID_ARGUMENT, "protocol 3");
  f.proto = NET_PROTO_TCP;
  f.host_port = 65535;
  f.guest_port = 65535;
  cleanup_free char *ok2 = render1(&n, 1, &b, 1);
  expect_has(ok2, "tcp dport 65535 dnat ip to 10.88.0.2:65535");

  /* one host port forwarded twice: any address vs a given one, or the same */
  net_forward f1 = {.proto = NET_PROTO_TCP, .host_port = 8080, .guest_port = 80};
  net_forward f2 = {
      .proto = NET_PROTO_TCP, .host_port = 8080, .guest_port = 81, .host_addr = IP(192, 0, 2, 1)};
  net_endpoint pair[2] = {ep_bridged(KEY_A, IP(10, 88, 0, 2), &f1, 1),
                          ep_bridged(KEY_B, IP(10, 88, 0, 3), &f2, 1)};
  refused(&n, 1, pair, 2, CMN_ALREADY_EXISTS, "tcp 8080 is forwarded twice");
  /* udp and tcp of one port, or two distinct host addresses, are fine */
  f2.proto = NET_PROTO_UDP;
  cleanup_free char *ok3 = render1(&n, 1, pair, 2);
  expect_has(ok3, "udp dport 8080");
  f2.proto = NET_PROTO_TCP;
  f1.host_addr = IP(192, 0, 2, 2);
  cleanup_free char *ok4 = render1(&n, 1, pair, 2);
  CU_ASSERT_EQUAL(count(ok4, "tcp dport 8080"), 4);
  /* NULL arrays with counts */
  refused(NULL, 1, NULL, 0, CMN_INVALID_ARGUMENT, "count");
}

/* ---- apply (inside this process's own network namespace) ---- */

/* Runs cmd with libnftables directly (the foreign table). */
static int nft_raw(const char *cmd, char **out)
{
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  int rc = nft_run_cmd_from_buffer(ctx, cmd);
  if (rc != 0)
    fprintf(stderr, "nft %s: %s\n", cmd, nft_ctx_get_error_buffer(ctx));
  if (out != NULL)
    *out = cmn_strdup(nft_ctx_get_output_buffer(ctx));
  nft_ctx_free(ctx);
  return rc;
}

static const char *foreign = "table inet other {\n"
                             "\tchain input {\n"
                             "\t\ttype filter hook input priority 0; policy accept;\n"
                             "\t\ttcp dport 2222 counter accept\n"
                             "\t}\n"
                             "}\n";

static char *list_ok(void)
{
  cmn_error err = {0};
  char *l = net_nft_list(&err);
  if (l == NULL)
    fprintf(stderr, "list: %s\n", err.msg);
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  return l;
}

static void apply_ok(const char *rules)
{
  cmn_error err = {0};
  int r = net_nft_apply(rules, &err);
  if (r != 0)
    fprintf(stderr, "apply: %s\n", err.msg);
  CU_ASSERT_EQUAL_FATAL(r, 0);
}

static void foreign_intact(void)
{
  cleanup_free char *o = NULL;
  CU_ASSERT_EQUAL(nft_raw("list table inet other", &o), 0);
  expect_has(o, "tcp dport 2222 counter packets 0 bytes 0 accept");
}

static void test_apply_idempotent_and_changes(void)
{
  CU_ASSERT_EQUAL_FATAL(nft_raw(foreign, NULL), 0);
  cmn_error err = {0};
  cleanup_free char *empty = list_ok();
  CU_ASSERT_STRING_EQUAL(empty, "");

  net_network n = net_default();
  net_endpoint e[2] = {ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2),
                       ep_ns(KEY_B, "default", IP(10, 200, 0, 1))};
  cleanup_free char *r1 = render1(&n, 1, e, 2);
  apply_ok(r1);
  cleanup_free char *l1 = list_ok();
  expect_has(l1, "table inet ember {");
  expect_has(l1, "tcp dport 8080 dnat ip to 10.88.0.2:80 comment \"" KEY_A "\"");
  expect_has(l1, "ip daddr 192.0.2.10 udp dport 5353 dnat ip to 10.88.0.2:53");
  expect_has(l1, "ip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 masquerade");
  expect_has(l1, "ip saddr 10.200.0.1 oifname != \"emv*\" masquerade");
  CU_ASSERT_EQUAL(count(l1, "tcp dport 8080"), 2);

  /* the same again: the same ruleset, nothing doubled */
  apply_ok(r1);
  cleanup_free char *l2 = list_ok();
  CU_ASSERT_STRING_EQUAL(l1, l2);
  CU_ASSERT_EQUAL(count(l2, "tcp dport 8080"), 2);

  /* a forward removed: gone */
  e[0].n_forwards = 1; /* only the udp one */
  cleanup_free char *r2 = render1(&n, 1, e, 2);
  apply_ok(r2);
  cleanup_free char *l3 = list_ok();
  CU_ASSERT_PTR_NULL(strstr(l3, "dport 8080"));
  CU_ASSERT_EQUAL(count(l3, "udp dport 5353"), 2);
  foreign_intact();

  /* an isolated network adds the bridge table; dropping it removes the table */
  n.isolated = true;
  cleanup_free char *r3 = render1(&n, 1, e, 2);
  apply_ok(r3);
  cleanup_free char *l4 = list_ok();
  expect_has(l4, "table bridge ember {");
  expect_has(l4, "drop comment \"network default: isolated\"");
  n.isolated = false;
  apply_ok(r2);
  cleanup_free char *l5 = list_ok();
  CU_ASSERT_STRING_EQUAL(l5, l3);
  CU_ASSERT_PTR_NULL(strstr(l5, "table bridge"));
  foreign_intact();
  (void)err;
}

static void test_apply_atomic(void)
{
  net_network n = net_default();
  net_endpoint e = ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2);
  cleanup_free char *r = render1(&n, 1, &e, 1);
  apply_ok(r);
  cleanup_free char *before = list_ok();
  /* refused by the kernel half-way (a jump to no chain) and by the parser */
  const char *broken[] = {"add table inet ember\ndelete table inet ember\ntable inet ember {\n"
                          "\tchain c {\n\t\tjump nowhere\n\t}\n}\n",
                          "add table inet ember\ndelete table inet ember\ntable inet ember {\n"
                          "\tchain c {\n\t\tbogus statement\n\t}\n}\n"};
  for (size_t i = 0; i < 2; i++) {
    cmn_error err = {0};
    CU_ASSERT_EQUAL(net_nft_apply(broken[i], &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INTERNAL);
    fprintf(stderr, "\n  broken ruleset %zu: %s\n", i, err.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "nftables: apply ember's tables: Error:"));
    CU_ASSERT_PTR_NULL(strchr(err.msg, '\n'));
    cleanup_free char *after = list_ok();
    CU_ASSERT_STRING_EQUAL(after, before);
  }
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_nft_apply("", &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  foreign_intact();
}

static void test_apply_ns_table(void)
{
  net_network n = net_default();
  net_endpoint e = ep_ns(KEY_A, "default", IP(10, 200, 0, 1));
  cmn_error err = {0};
  cleanup_free char *r = net_nft_render_ns(&n, &e, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(r);
  apply_ok(r);
  cleanup_free char *l = list_ok();
  expect_has(l, "iifname \"veth0\" ip daddr 10.200.0.1 dnat ip to 10.88.0.2");
  expect_has(l, "oifname \"veth0\" ip saddr 10.88.0.2 snat ip to 10.200.0.1");
  CU_ASSERT_PTR_NULL(strstr(l, "dport"));
  foreign_intact();
}

static void test_delete(void)
{
  cmn_error err = {0};
  net_network n = net_default();
  n.isolated = true;
  net_endpoint e = ep_bridged(KEY_A, IP(10, 88, 0, 2), fwd_a, 2);
  cleanup_free char *r = render1(&n, 1, &e, 1);
  apply_ok(r);
  CU_ASSERT_EQUAL(net_nft_delete(&err), 0);
  cleanup_free char *l = list_ok();
  CU_ASSERT_STRING_EQUAL(l, "");
  cleanup_free char *tables = NULL;
  CU_ASSERT_EQUAL(nft_raw("list tables", &tables), 0);
  CU_ASSERT_STRING_EQUAL(tables, "table inet other\n");
  CU_ASSERT_EQUAL(net_nft_delete(&err), 0); /* nothing left: still fine */
  foreign_intact();
}

/* Without CAP_NET_ADMIN in this thread (capabilities are per thread). */
static void *no_cap_thread(void *arg)
{
  cmn_error *err = arg;
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) != 0)
    return NULL;
  d[0].effective &= ~(1u << CAP_NET_ADMIN);
  if (syscall(SYS_capset, &h, d) != 0)
    return NULL;
  net_nft_apply("add table inet ember\n", err);
  return err;
}

static void test_permission_denied(void)
{
  cmn_error err = {0};
  pthread_t t;
  void *res = NULL;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, no_cap_thread, &err), 0);
  pthread_join(t, &res);
  CU_ASSERT_PTR_NOT_NULL_FATAL(res);
  fprintf(stderr, "\n  without CAP_NET_ADMIN: %s\n", err.msg);
  CU_ASSERT_EQUAL(err.code, CMN_PERMISSION_DENIED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CAP_NET_ADMIN"));
}

/* A forward carries a TCP connection: 127.0.0.1:18080 from this (namespaced)
 * host is DNAT'd by the output chain to a listener at 127.0.0.2:19000. */
static void test_forward_carries_tcp(void)
{
  /* the "guest" is a loopback address of this namespace */
  net_network n = net_default();
  static const net_forward f[] = {
      {.proto = NET_PROTO_TCP, .host_port = 18080, .guest_port = 19000}};
  net_endpoint e = {.key = KEY_A,
                    .network = "default",
                    .guest_ip = IP(127, 0, 0, 2),
                    .forwards = f,
                    .n_forwards = 1};
  cleanup_free char *r = render1(&n, 1, &e, 1);
  apply_ok(r);

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_FATAL(ls >= 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(19000)};
  a.sin_addr.s_addr = htonl(IP(127, 0, 0, 2));
  CU_ASSERT_EQUAL_FATAL(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
  CU_ASSERT_EQUAL_FATAL(listen(ls, 4), 0);

  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {.tv_sec = 20}; /* a bound on a failing connect, not a measure */
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(18080)};
  to.sin_addr.s_addr = htonl(IP(127, 0, 0, 1));
  int cr = connect(c, (struct sockaddr *)&to, sizeof to);
  if (cr != 0)
    perror("connect 127.0.0.1:18080");
  CU_ASSERT_EQUAL(cr, 0);
  if (cr == 0) {
    int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CU_ASSERT_FATAL(s >= 0);
    CU_ASSERT_EQUAL(write(c, "ping", 4), 4);
    char buf[8] = {0};
    CU_ASSERT_EQUAL(read(s, buf, sizeof buf - 1), 4);
    CU_ASSERT_STRING_EQUAL(buf, "ping");
    close(s);
  }
  close(c);

  /* without the forward, nothing listens at 18080 */
  cmn_error err = {0};
  CU_ASSERT_EQUAL(net_nft_delete(&err), 0);
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_EQUAL(connect(c, (struct sockaddr *)&to, sizeof to), -1);
  CU_ASSERT_EQUAL(errno, ECONNREFUSED);
  close(c);
  close(ls);
}

/* ---- end to end: host, instance and "outside" namespaces, all made here ---- */

static char *ip_bin; /* the iproute2 `ip` that wires the test namespaces */

/* A new network namespace (made by a thread, so this one stays put): its fd. */
static void *new_netns_thread(void *arg)
{
  int *fd = arg;
  if (unshare(CLONE_NEWNET) == 0)
    *fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  return NULL;
}

static int new_netns(void)
{
  int fd = -1;
  pthread_t t;
  if (pthread_create(&t, NULL, new_netns_thread, &fd) != 0)
    return -1;
  pthread_join(t, NULL);
  return fd;
}

/* Runs `ip args...` in the namespace nsfd (-1: this one); 0 when it exits 0. */
static int ip_in(int nsfd, const char *args)
{
  char buf[256];
  snprintf(buf, sizeof buf, "%s", args);
  char *argv[24] = {ip_bin};
  int n = 1;
  for (char *save = NULL, *w = strtok_r(buf, " ", &save); w != NULL && n < 23;
       w = strtok_r(NULL, " ", &save))
    argv[n++] = w;
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid == 0) {
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) != 0)
      _exit(126);
    execv(ip_bin, argv);
    _exit(127);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "ip %s: failed (status %d)\n", args, st);
    return -1;
  }
  return 0;
}

/* A socket made in namespace nsfd (it stays there, whoever uses it). */
typedef struct ns_call {
  int nsfd;
  int type;
  int fd;
  const char *rules; /* for apply_in */
  cmn_error err;
  int rc;
} ns_call;

static void *socket_in_thread(void *arg)
{
  ns_call *c = arg;
  if (setns(c->nsfd, CLONE_NEWNET) == 0)
    c->fd = socket(AF_INET, c->type | SOCK_CLOEXEC, 0);
  return NULL;
}

static int socket_in(int nsfd)
{
  ns_call c = {.nsfd = nsfd, .type = SOCK_STREAM, .fd = -1};
  pthread_t t;
  if (pthread_create(&t, NULL, socket_in_thread, &c) != 0)
    return -1;
  pthread_join(t, NULL);
  struct timeval tv = {.tv_sec = 20}; /* bounds a failure, never measured */
  setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return c.fd;
}

static void *apply_in_thread(void *arg)
{
  ns_call *c = arg;
  c->rc = -1;
  if (setns(c->nsfd, CLONE_NEWNET) == 0)
    c->rc = net_nft_apply(c->rules, &c->err);
  return NULL;
}

static int apply_in(int nsfd, const char *rules)
{
  ns_call c = {.nsfd = nsfd, .rules = rules, .rc = -1};
  pthread_t t;
  if (pthread_create(&t, NULL, apply_in_thread, &c) != 0)
    return -1;
  pthread_join(t, NULL);
  if (c.rc != 0)
    fprintf(stderr, "apply in namespace: %s\n", c.err.msg);
  return c.rc;
}

static struct sockaddr_in sin_of(uint32_t a, uint16_t port)
{
  struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
  s.sin_addr.s_addr = htonl(a);
  return s;
}

static int listen_at(int fd, uint32_t a, uint16_t port)
{
  struct sockaddr_in s = sin_of(a, port);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0 || listen(fd, 4) != 0)
    return -1;
  return 0;
}

/* Connects client (bound to from when not 0) to to:port, accepts on listener,
 * carries a few bytes; returns the peer address the listener saw (0: failed). */
static uint32_t carry(int client, uint32_t from, int listener, uint32_t to, uint16_t port)
{
  if (from != 0) {
    struct sockaddr_in b = sin_of(from, 0);
    if (bind(client, (struct sockaddr *)&b, sizeof b) != 0)
      return 0;
  }
  struct sockaddr_in s = sin_of(to, port);
  if (connect(client, (struct sockaddr *)&s, sizeof s) != 0) {
    perror("connect");
    return 0;
  }
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  int a = accept4(listener, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
  if (a < 0)
    return 0;
  char buf[8] = {0};
  bool ok = write(client, "ping", 4) == 4 && read(a, buf, sizeof buf - 1) == 4 &&
            strcmp(buf, "ping") == 0 && write(a, "pong", 4) == 4 &&
            read(client, buf, sizeof buf - 1) == 4 && strncmp(buf, "pong", 4) == 0;
  close(a);
  return ok ? ntohl(peer.sin_addr.s_addr) : 0;
}

/* The test's host H (this namespace), an instance namespace G joined to H by
 * a veth pair (emv<KEY_A> 10.200.0.0/31 - veth0 10.200.0.1/31) whose "guest"
 * is 10.88.0.2 (on G's lo), and an "outside" namespace O (eth0 10.50.0.2/24)
 * joined to H (eo0 10.50.0.1/24). The host forwards tcp 8080 to the guest's
 * port 80. Every packet stays in these three namespaces. */
static void test_e2e_forward_and_nat(void)
{
  int g = new_netns(), o = new_netns();
  CU_ASSERT_FATAL(g >= 0 && o >= 0);
  FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "we"); /* this namespace's */
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("1\n", f);
  fclose(f);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "link add emv%s type veth peer name veth0 netns /proc/%d/fd/%d", KEY_A,
           (int)getpid(), g);
  CU_ASSERT_EQUAL_FATAL(ip_in(-1, cmd), 0);
  snprintf(cmd, sizeof cmd, "link add eo0 type veth peer name eth0 netns /proc/%d/fd/%d",
           (int)getpid(), o);
  CU_ASSERT_EQUAL_FATAL(ip_in(-1, cmd), 0);
  const char *host_cmds[] = {"addr add 10.200.0.0/31 dev emv" KEY_A, "link set emv" KEY_A " up",
                             "addr add 10.50.0.1/24 dev eo0", "link set eo0 up"};
  for (size_t i = 0; i < 4; i++)
    CU_ASSERT_EQUAL_FATAL(ip_in(-1, host_cmds[i]), 0);
  const char *g_cmds[] = {"link set lo up", "addr add 10.88.0.2/32 dev lo",
                          "addr add 10.200.0.1/31 dev veth0", "link set veth0 up",
                          "route add default via 10.200.0.0"};
  for (size_t i = 0; i < 5; i++)
    CU_ASSERT_EQUAL_FATAL(ip_in(g, g_cmds[i]), 0);
  const char *o_cmds[] = {"link set lo up", "addr add 10.50.0.2/24 dev eth0", "link set eth0 up"};
  for (size_t i = 0; i < 3; i++)
    CU_ASSERT_EQUAL_FATAL(ip_in(o, o_cmds[i]), 0);

  net_network n = net_default();
  static const net_forward fw[] = {{.proto = NET_PROTO_TCP, .host_port = 8080, .guest_port = 80}};
  net_endpoint e = ep_ns(KEY_A, "default", IP(10, 200, 0, 1));
  e.forwards = fw;
  e.n_forwards = 1;
  cleanup_free char *host = render1(&n, 1, &e, 1);
  apply_ok(host);
  cmn_error err = {0};
  cleanup_free char *ns = net_nft_render_ns(&n, &e, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ns);
  CU_ASSERT_EQUAL_FATAL(apply_in(g, ns), 0);

  int guest_l = socket_in(g);
  CU_ASSERT_EQUAL_FATAL(listen_at(guest_l, IP(10, 88, 0, 2), 80), 0);

  /* outside -> host:8080 -> (prerouting DNAT) veth_ns_ip:80 -> (G) guest:80;
   * the guest sees the outside client's own address */
  int c = socket_in(o);
  CU_ASSERT_EQUAL(carry(c, 0, guest_l, IP(10, 50, 0, 1), 8080), IP(10, 50, 0, 2));
  close(c);
  /* the host itself through the forward (output chain); its source is the
   * local address it dialled */
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_EQUAL(carry(c, 0, guest_l, IP(10, 50, 0, 1), 8080), IP(10, 50, 0, 1));
  close(c);
  /* the host reaches the guest at veth_ns_ip, on any port */
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_EQUAL(carry(c, 0, guest_l, IP(10, 200, 0, 1), 80), IP(10, 200, 0, 0));
  close(c);

  /* guest -> outside: SNAT to veth_ns_ip in G, masquerade to eo0's address on H */
  int out_l = socket_in(o);
  CU_ASSERT_EQUAL_FATAL(listen_at(out_l, IP(10, 50, 0, 2), 9000), 0);
  c = socket_in(g);
  CU_ASSERT_EQUAL(carry(c, IP(10, 88, 0, 2), out_l, IP(10, 50, 0, 2), 9000), IP(10, 50, 0, 1));
  close(c);

  /* with the forward gone, outside -> host:8080 is refused */
  e.n_forwards = 0;
  cleanup_free char *host2 = render1(&n, 1, &e, 1);
  apply_ok(host2);
  c = socket_in(o);
  struct sockaddr_in s = sin_of(IP(10, 50, 0, 1), 8080);
  CU_ASSERT_EQUAL(connect(c, (struct sockaddr *)&s, sizeof s), -1);
  CU_ASSERT_EQUAL(errno, ECONNREFUSED);
  close(c);
  close(out_l);
  close(guest_l);
  close(g);
  close(o);
}

/* A namespace joined to this one by a veth pair: "<host_if>" here, "<ns_if>"
 * there with ns_cidr; the host end gets host_cidr or goes on bridge. */
static int wire_ns(const char *host_if, const char *ns_if, const char *ns_cidr,
                   const char *host_cidr, const char *bridge)
{
  int ns = new_netns();
  if (ns < 0)
    return -1;
  char cmd[200];
  snprintf(cmd, sizeof cmd, "link add %s type veth peer name %s netns /proc/%d/fd/%d", host_if,
           ns_if, (int)getpid(), ns);
  int r = ip_in(-1, cmd);
  if (r == 0 && host_cidr != NULL) {
    snprintf(cmd, sizeof cmd, "addr add %s dev %s", host_cidr, host_if);
    r = ip_in(-1, cmd);
  }
  if (r == 0 && bridge != NULL) {
    snprintf(cmd, sizeof cmd, "link set %s master %s", host_if, bridge);
    r = ip_in(-1, cmd);
  }
  snprintf(cmd, sizeof cmd, "link set %s up", host_if);
  r = r == 0 ? ip_in(-1, cmd) : r;
  r = r == 0 ? ip_in(ns, "link set lo up") : r;
  snprintf(cmd, sizeof cmd, "addr add %s dev %s", ns_cidr, ns_if);
  r = r == 0 ? ip_in(ns, cmd) : r;
  snprintf(cmd, sizeof cmd, "link set %s up", ns_if);
  r = r == 0 ? ip_in(ns, cmd) : r;
  if (r != 0) {
    close(ns);
    return -1;
  }
  return ns;
}

/* True when a TCP connection from namespace from_ns to (to, port) reaches
 * listener. A dropped SYN fails at the socket's send timeout. */
static bool reaches(int from_ns, int listener, uint32_t to, uint16_t port)
{
  int c = from_ns >= 0 ? socket_in(from_ns) : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {.tv_sec = 3}; /* bounds the expected failures, never measured */
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool ok = carry(c, 0, listener, to, port) != 0;
  close(c);
  return ok;
}

/* One network "iso" (bridge emtest0, gateway 10.89.0.1/24) with three bridged
 * guests (namespaces behind emt<B1>/emt<B2>/emt<B3> on the bridge; B2 and B3
 * route to each other through the gateway) and two
 * namespaced ones (emv<N1> 10.200.0.0/31, emv<N2> 10.200.0.2/31, guests on
 * their lo). Not isolated, guests reach each other; isolated, they do not,
 * and still reach the gateway (the host). */
static void test_e2e_isolation(void)
{
#define B1 "b00000000001"
#define B2 "b00000000002"
#define B3 "b00000000003"
#define N1 "c00000000001"
#define N2 "c00000000002"
  CU_ASSERT_EQUAL_FATAL(ip_in(-1, "link add emtest0 type bridge"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(-1, "addr add 10.89.0.1/24 dev emtest0"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(-1, "link set emtest0 up"), 0);
  int b1 = wire_ns("emt" B1, "eth0", "10.89.0.2/24", NULL, "emtest0");
  int b2 = wire_ns("emt" B2, "eth0", "10.89.0.3/24", NULL, "emtest0");
  int b3 = wire_ns("emt" B3, "eth0", "10.89.0.4/24", NULL, "emtest0");
  int n1 = wire_ns("emv" N1, "veth0", "10.200.0.1/31", "10.200.0.0/31", NULL);
  int n2 = wire_ns("emv" N2, "veth0", "10.200.0.3/31", "10.200.0.2/31", NULL);
  CU_ASSERT_FATAL(b1 >= 0 && b2 >= 0 && b3 >= 0 && n1 >= 0 && n2 >= 0);
  /* b3 and b2 talk through the gateway (routed by the host), not the bridge */
  CU_ASSERT_EQUAL_FATAL(ip_in(b3, "route add 10.89.0.3/32 via 10.89.0.1"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(b2, "route add 10.89.0.4/32 via 10.89.0.1"), 0);
  FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "we"); /* this namespace's */
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("1\n", f);
  fclose(f);
  CU_ASSERT_EQUAL_FATAL(ip_in(n1, "addr add 10.89.0.5/32 dev lo"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(n1, "route add default via 10.200.0.0"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(n2, "addr add 10.89.0.5/32 dev lo"), 0);
  CU_ASSERT_EQUAL_FATAL(ip_in(n2, "route add default via 10.200.0.2"), 0);

  net_network n = {.name = "iso",
                   .bridge = "emtest0",
                   .subnet = IP(10, 89, 0, 0),
                   .prefix = 24,
                   .gateway = IP(10, 89, 0, 1),
                   .nat = true};
  net_endpoint e[5] = {
      {.key = B1, .network = "iso", .guest_ip = IP(10, 89, 0, 2)},
      {.key = B3, .network = "iso", .guest_ip = IP(10, 89, 0, 4)},
      {.key = B2, .network = "iso", .guest_ip = IP(10, 89, 0, 3)},
      {.key = N1,
       .network = "iso",
       .guest_ip = IP(10, 89, 0, 5),
       .netns = true,
       .veth_host_ip = IP(10, 200, 0, 0),
       .veth_ns_ip = IP(10, 200, 0, 1)},
      {.key = N2,
       .network = "iso",
       .guest_ip = IP(10, 89, 0, 5),
       .netns = true,
       .veth_host_ip = IP(10, 200, 0, 2),
       .veth_ns_ip = IP(10, 200, 0, 3)},
  };
  cmn_error err = {0};
  for (size_t i = 3; i < 5; i++) {
    cleanup_free char *ns = net_nft_render_ns(&n, &e[i], &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ns);
    CU_ASSERT_EQUAL_FATAL(apply_in(i == 3 ? n1 : n2, ns), 0);
  }
  int l_b2 = socket_in(b2), l_n2 = socket_in(n2),
      l_gw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CU_ASSERT_EQUAL_FATAL(listen_at(l_b2, IP(10, 89, 0, 3), 80), 0);
  CU_ASSERT_EQUAL_FATAL(listen_at(l_n2, IP(10, 89, 0, 5), 80), 0);
  CU_ASSERT_EQUAL_FATAL(listen_at(l_gw, IP(10, 89, 0, 1), 80), 0);

  for (int iso = 0; iso <= 1; iso++) {
    n.isolated = iso;
    cleanup_free char *host = render1(&n, 1, e, 5);
    apply_ok(host);
    /* bridged guest to bridged guest, namespaced guest to namespaced guest */
    CU_ASSERT_EQUAL(reaches(b1, l_b2, IP(10, 89, 0, 3), 80), !iso);
    CU_ASSERT_EQUAL(reaches(n1, l_n2, IP(10, 200, 0, 3), 80), !iso);
    /* bridged guests routing through the gateway to each other */
    CU_ASSERT_EQUAL(reaches(b3, l_b2, IP(10, 89, 0, 3), 80), !iso);
    /* the gateway (the host) stays reachable, and the host reaches them all */
    CU_ASSERT_TRUE(reaches(b1, l_gw, IP(10, 89, 0, 1), 80));
    CU_ASSERT_TRUE(reaches(n1, l_gw, IP(10, 89, 0, 1), 80));
    CU_ASSERT_TRUE(reaches(-1, l_b2, IP(10, 89, 0, 3), 80));
    CU_ASSERT_TRUE(reaches(-1, l_n2, IP(10, 200, 0, 3), 80));
  }
  close(l_b2);
  close(l_n2);
  close(l_gw);
  close(b1);
  close(b2);
  close(b3);
  close(n1);
  close(n2);
#undef B1
#undef B2
#undef B3
#undef N1
#undef N2
}

/* Own network namespace with lo up, or exit 77 naming what is missing. */
static void enter_own_netns(void)
{
  if (geteuid() != 0) {
    fprintf(stderr, "SKIP: needs root (CAP_NET_ADMIN in a namespace of its own)\n");
    exit(77);
  }
  if (unshare(CLONE_NEWNET) != 0) {
    fprintf(stderr, "SKIP: needs network namespaces: unshare(CLONE_NEWNET): %s\n",
            cmn_strerror(errno));
    exit(77);
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0 ||
      (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr)) != 0) {
    fprintf(stderr, "cannot bring lo up in the test namespace: %s\n", cmn_strerror(errno));
    exit(1);
  }
  close(s);
  /* nf_tables may be missing in the kernel */
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  nft_ctx_buffer_error(ctx);
  int rc = nft_run_cmd_from_buffer(ctx, "list tables");
  nft_ctx_free(ctx);
  if (rc != 0) {
    fprintf(stderr, "SKIP: needs nf_tables in the kernel\n");
    exit(77);
  }
}

int main(int argc, char **argv)
{
  const char *mode = argc == 2 ? argv[1] : "";
  bool apply = strcmp(mode, "apply") == 0, e2e = strcmp(mode, "e2e") == 0;
  if (!apply && !e2e && strcmp(mode, "render") != 0) {
    fprintf(stderr, "usage: test_nft render|apply|e2e\n");
    return 2;
  }
  if (e2e) {
    ip_bin = cmn_which("ip");
    if (ip_bin == NULL) {
      fprintf(stderr, "SKIP: unit_nft_e2e needs iproute2's ip (Debian iproute2)\n");
      return 77;
    }
  }
  if (apply || e2e)
    enter_own_netns();
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  if (e2e) {
    CU_pSuite s = CU_add_suite("nft_e2e", NULL, NULL);
    CU_add_test(s, "forward_and_nat", test_e2e_forward_and_nat);
    CU_add_test(s, "isolation", test_e2e_isolation);
  } else if (!apply) {
    CU_pSuite s = CU_add_suite("nft_render", NULL, NULL);
    CU_add_test(s, "nat_and_forwards", test_render_nat_and_forwards);
    CU_add_test(s, "namespaced", test_render_namespaced);
    CU_add_test(s, "isolated", test_render_isolated);
    CU_add_test(s, "deterministic", test_render_deterministic);
    CU_add_test(s, "ns_golden", test_render_ns_golden);
    CU_add_test(s, "refusals", test_render_refusals);
  } else {
    CU_pSuite s = CU_add_suite("nft_apply", NULL, NULL);
    CU_add_test(s, "idempotent_and_changes", test_apply_idempotent_and_changes);
    CU_add_test(s, "atomic", test_apply_atomic);
    CU_add_test(s, "ns_table", test_apply_ns_table);
    CU_add_test(s, "delete", test_delete);
    CU_add_test(s, "permission_denied", test_permission_denied);
    CU_add_test(s, "forward_carries_tcp", test_forward_carries_tcp);
  }
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  free(ip_bin);
  return failed == 0 ? 0 : 1;
}
