/* test_bootcfg.c: CUnit tests of the boot config: the host writer
 * (agent/image/bootcfg.c) and the guest reader (guest/init/config.c, compiled
 * for the host), round trips, and the reader against corrupt and hostile
 * input (wrong magic, version, sizes, truncation, checksum, records running
 * past the end, NUL bytes, unknown tags, oversized values); the network
 * records (NET/DNS: encoding, what the writer refuses, what the reader skips
 * with a note while the rest of the config holds); plus the guest's OCI User
 * resolution (guest/init/user.c) on passwd/group files. */
#include "agent/image/bootcfg.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "guest/bootcfg_format.h"
#include "guest/init/config.h"
#include "guest/init/init.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const t_argv[] = {"/bin/sh", "-c", "echo 'a b' \"$X\"", ""};
static const char *const t_env[] = {"X=1", "EMPTY=", "EQ=a=b"};

static unsigned char *encode(const img_bootcfg *c, size_t *len)
{
  unsigned char *buf = NULL;
  cmn_error err = {0};
  if (img_bootcfg_encode(c, &buf, len, &err) < 0) {
    fprintf(stderr, "encode: %s\n", err.msg);
    return NULL;
  }
  return buf;
}

static img_bootcfg full_cfg(void)
{
  img_bootcfg c = {.argv = t_argv,
                   .argc = 4,
                   .env = t_env,
                   .envc = 3,
                   .workdir = "/srv/app",
                   .user = "app:staff",
                   .hostname = "web-1",
                   .root = "/dev/vda"};
  return c;
}

static void test_round_trip(void)
{
  img_bootcfg c = full_cfg();
  size_t len = 0;
  cleanup_free unsigned char *buf = encode(&c, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
  CU_ASSERT_EQUAL(len % EMBER_BOOTCFG_ALIGN, 0);
  CU_ASSERT_EQUAL(memcmp(buf, "EMBERCFG", 8), 0);
  init_config g;
  char why[256] = "";
  CU_ASSERT_EQUAL_FATAL(init_config_parse(buf, len, &g, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(g.argc, 4);
  for (size_t i = 0; i < 4; i++)
    CU_ASSERT_STRING_EQUAL(g.argv[i], t_argv[i]);
  CU_ASSERT_PTR_NULL(g.argv[4]);
  CU_ASSERT_EQUAL(g.envc, 3);
  for (size_t i = 0; i < 3; i++)
    CU_ASSERT_STRING_EQUAL(g.env[i], t_env[i]);
  CU_ASSERT_PTR_NULL(g.env[3]);
  CU_ASSERT_STRING_EQUAL(g.workdir, "/srv/app");
  CU_ASSERT_STRING_EQUAL(g.user, "app:staff");
  CU_ASSERT_STRING_EQUAL(g.hostname, "web-1");
  CU_ASSERT_STRING_EQUAL(g.root, "/dev/vda");
  init_config_free(&g);
}

static void test_defaults(void)
{
  img_bootcfg c = {.argv = t_argv, .argc = 1};
  size_t len = 0;
  cleanup_free unsigned char *buf = encode(&c, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
  init_config g;
  char why[256] = "";
  CU_ASSERT_EQUAL_FATAL(init_config_parse(buf, len, &g, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(g.argc, 1);
  CU_ASSERT_EQUAL(g.envc, 0);
  CU_ASSERT_PTR_NOT_NULL(g.env);
  CU_ASSERT_STRING_EQUAL(g.workdir, "/");
  CU_ASSERT_STRING_EQUAL(g.hostname, "ember");
  CU_ASSERT_PTR_NULL(g.user);
  CU_ASSERT_PTR_NULL(g.root);
  init_config_free(&g);
}

static void test_writer_refuses(void)
{
  cmn_error err = {0};
  unsigned char *buf = NULL;
  size_t len = 0;
  img_bootcfg none = {0};
  CU_ASSERT_EQUAL(img_bootcfg_encode(&none, &buf, &len, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no command"));
  img_bootcfg rel = {.argv = t_argv, .argc = 1, .workdir = "srv"};
  CU_ASSERT_EQUAL(img_bootcfg_encode(&rel, &buf, &len, &err), -1);
  const char *bad_env[] = {"NOEQUALS"};
  img_bootcfg be = {.argv = t_argv, .argc = 1, .env = bad_env, .envc = 1};
  CU_ASSERT_EQUAL(img_bootcfg_encode(&be, &buf, &len, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "KEY=VALUE"));
  cleanup_free char *longhost = cmn_calloc(1, 100);
  memset(longhost, 'h', 99);
  img_bootcfg lh = {.argv = t_argv, .argc = 1, .hostname = longhost};
  CU_ASSERT_EQUAL(img_bootcfg_encode(&lh, &buf, &len, &err), -1);
  /* 17 arguments of 64 KiB exceed the 1 MiB payload. */
  cleanup_free char *big = cmn_calloc(1, EMBER_BOOTCFG_MAX_VALUE + 1);
  memset(big, 'x', EMBER_BOOTCFG_MAX_VALUE);
  const char *bigv[17];
  for (int i = 0; i < 17; i++)
    bigv[i] = big;
  img_bootcfg bg = {.argv = bigv, .argc = 17};
  CU_ASSERT_EQUAL(img_bootcfg_encode(&bg, &buf, &len, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "exceeds"));
  CU_ASSERT_PTR_NULL(buf);
}

/* Parses buf and expects a failure whose reason contains `want`. */
static void expect_reject(const unsigned char *buf, size_t len, const char *want)
{
  init_config g;
  char why[256] = "";
  int r = init_config_parse(buf, len, &g, why, sizeof(why));
  CU_ASSERT_EQUAL(r, -1);
  if (r == 0) {
    init_config_free(&g);
    return;
  }
  if (strstr(why, want) == NULL) {
    fprintf(stderr, "reason '%s' lacks '%s'\n", why, want);
    CU_FAIL("unexpected reason");
  }
  CU_ASSERT_PTR_NULL(g.argv);
}

static void fix_crc(unsigned char *buf)
{
  uint32_t plen = ember_bootcfg_get32(buf + 16);
  ember_bootcfg_put32(buf + 20, ember_bootcfg_crc32(buf + EMBER_BOOTCFG_HEADER_SIZE, plen));
}

static void test_reader_rejects_corrupt(void)
{
  img_bootcfg c = full_cfg();
  size_t len = 0;
  cleanup_free unsigned char *good = encode(&c, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(good);
  cleanup_free unsigned char *b = cmn_malloc(len);
  uint32_t plen = ember_bootcfg_get32(good + 16);

  expect_reject(good, 10, "shorter than");
  memcpy(b, good, len);
  b[0] = 'X';
  expect_reject(b, len, "bad magic");
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 8, 2);
  expect_reject(b, len, "version 2");
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 12, 64);
  expect_reject(b, len, "header size");
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 24, 1);
  expect_reject(b, len, "flags");
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 16, EMBER_BOOTCFG_MAX_PAYLOAD + 1);
  expect_reject(b, len, "exceeds");
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 16, 0xFFFFFFFFu);
  expect_reject(b, len, "exceeds");
  /* truncated file: the payload runs past what was read */
  expect_reject(good, EMBER_BOOTCFG_HEADER_SIZE + plen - 1, "truncated");
  memcpy(b, good, len);
  b[EMBER_BOOTCFG_HEADER_SIZE + 9] ^= 1;
  expect_reject(b, len, "checksum");
  /* a record claiming more than is left, checksum made consistent */
  memcpy(b, good, len);
  ember_bootcfg_put32(b + EMBER_BOOTCFG_HEADER_SIZE + 4, 0x7FFFFFFFu);
  fix_crc(b);
  expect_reject(b, len, "claims");
  /* a NUL inside a value */
  memcpy(b, good, len);
  b[EMBER_BOOTCFG_HEADER_SIZE + EMBER_BOOTCFG_RECORD_HEADER + 1] = '\0';
  fix_crc(b);
  expect_reject(b, len, "NUL");
  /* an unknown mandatory tag */
  memcpy(b, good, len);
  ember_bootcfg_put16(b + EMBER_BOOTCFG_HEADER_SIZE, 77);
  fix_crc(b);
  expect_reject(b, len, "unknown mandatory");
  /* nonzero reserved bits */
  memcpy(b, good, len);
  ember_bootcfg_put16(b + EMBER_BOOTCFG_HEADER_SIZE + 2, 1);
  fix_crc(b);
  expect_reject(b, len, "reserved");
  /* a half record header at the end */
  memcpy(b, good, len);
  ember_bootcfg_put32(b + 16, plen + 3);
  fix_crc(b);
  expect_reject(b, len, "truncated record");
  /* all zeros (a blank disk) */
  memset(b, 0, len);
  expect_reject(b, len, "bad magic");
}

/* Builds a config by hand: header + the given raw records. */
static size_t hand_cfg(unsigned char *buf, size_t cap, const unsigned char *rec, size_t rlen)
{
  CU_ASSERT_FATAL(EMBER_BOOTCFG_HEADER_SIZE + rlen <= cap);
  memset(buf, 0, cap);
  memcpy(buf, EMBER_BOOTCFG_MAGIC, 8);
  ember_bootcfg_put32(buf + 8, EMBER_BOOTCFG_VERSION);
  ember_bootcfg_put32(buf + 12, EMBER_BOOTCFG_HEADER_SIZE);
  ember_bootcfg_put32(buf + 16, (uint32_t)rlen);
  memcpy(buf + EMBER_BOOTCFG_HEADER_SIZE, rec, rlen);
  fix_crc(buf);
  return EMBER_BOOTCFG_HEADER_SIZE + rlen;
}

static size_t rec(unsigned char *p, unsigned tag, const char *v)
{
  size_t n = strlen(v);
  ember_bootcfg_put16(p, (uint16_t)tag);
  ember_bootcfg_put16(p + 2, 0);
  ember_bootcfg_put32(p + 4, (uint32_t)n);
  memcpy(p + 8, v, n);
  return 8 + n;
}

static void test_reader_hostile_records(void)
{
  unsigned char buf[4096], r[1024];
  size_t n;
  init_config g;
  char why[256];

  /* optional unknown tags are skipped (room for network settings) */
  n = rec(r, EMBER_BOOTCFG_OPTIONAL | 42, "ip=10.0.0.2/24");
  n += rec(r + n, EMBER_BOOTCFG_ARG, "/bin/true");
  CU_ASSERT_EQUAL(init_config_parse(buf, hand_cfg(buf, sizeof(buf), r, n), &g, why, sizeof(why)),
                  0);
  CU_ASSERT_EQUAL(g.argc, 1);
  init_config_free(&g);

  n = rec(r, EMBER_BOOTCFG_ENV, "X=1");
  expect_reject(buf, hand_cfg(buf, sizeof(buf), r, n), "no command");
  n = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  n += rec(r + n, EMBER_BOOTCFG_ENV, "=1");
  expect_reject(buf, hand_cfg(buf, sizeof(buf), r, n), "KEY=VALUE");
  n = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  n += rec(r + n, EMBER_BOOTCFG_HOSTNAME, "a");
  n += rec(r + n, EMBER_BOOTCFG_HOSTNAME, "b");
  expect_reject(buf, hand_cfg(buf, sizeof(buf), r, n), "twice");
  n = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  n += rec(r + n, EMBER_BOOTCFG_WORKDIR, "relative");
  expect_reject(buf, hand_cfg(buf, sizeof(buf), r, n), "absolute");
  char host[100];
  memset(host, 'h', 99);
  host[99] = '\0';
  n = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  n += rec(r + n, EMBER_BOOTCFG_HOSTNAME, host);
  expect_reject(buf, hand_cfg(buf, sizeof(buf), r, n), "at most");

  /* more arguments than allowed, each empty: bounded count */
  size_t cap = EMBER_BOOTCFG_HEADER_SIZE + (EMBER_BOOTCFG_MAX_ARGS + 1) * 8;
  cleanup_free unsigned char *many = cmn_calloc(1, cap);
  cleanup_free unsigned char *mr = cmn_calloc(1, cap);
  size_t m = 0;
  for (unsigned i = 0; i <= EMBER_BOOTCFG_MAX_ARGS; i++)
    m += rec(mr + m, EMBER_BOOTCFG_ARG, "");
  expect_reject(many, hand_cfg(many, cap, mr, m), "more than");
}

#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

/* The payload holds a record with that tag and exactly that value. */
static int has_record(const unsigned char *buf, unsigned tag, const char *value)
{
  size_t plen = ember_bootcfg_get32(buf + 16), off = 0, vlen = strlen(value);
  const unsigned char *p = buf + EMBER_BOOTCFG_HEADER_SIZE;
  while (off + EMBER_BOOTCFG_RECORD_HEADER <= plen) {
    size_t n = ember_bootcfg_get32(p + off + 4);
    if (ember_bootcfg_get16(p + off) == tag && n == vlen &&
        memcmp(p + off + EMBER_BOOTCFG_RECORD_HEADER, value, n) == 0)
      return 1;
    off += EMBER_BOOTCFG_RECORD_HEADER + n;
  }
  return 0;
}

static void test_net_round_trip(void)
{
  img_bootcfg_net nets[] = {
      {.mac = "02:E7:00:12:34:56",
       .addr = IP4(10, 88, 0, 2),
       .prefix = 16,
       .gateway = IP4(10, 88, 0, 1),
       .mtu = 1400},
      {.mac = "02:e7:00:00:00:01", .addr = IP4(192, 168, 7, 9), .prefix = 32},
      {.mac = "0a:00:00:00:00:ff",
       .addr = IP4(172, 16, 0, 0),
       .prefix = 31,
       .gateway = IP4(172, 16, 0, 1)},
  };
  uint32_t dns[] = {IP4(10, 88, 0, 1), IP4(1, 0, 0, 1)};
  img_bootcfg c = full_cfg();
  c.net = nets;
  c.nnet = 3;
  c.dns = dns;
  c.ndns = 2;
  size_t len = 0;
  cleanup_free unsigned char *buf = encode(&c, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
  /* the exact record text (lower-case MAC, "-" without a gateway) */
  CU_ASSERT(
      has_record(buf, EMBER_BOOTCFG_NET, "02:e7:00:12:34:56 10.88.0.2/16 10.88.0.1 mtu=1400"));
  CU_ASSERT(has_record(buf, EMBER_BOOTCFG_NET, "02:e7:00:00:00:01 192.168.7.9/32 -"));
  CU_ASSERT(has_record(buf, EMBER_BOOTCFG_NET, "0a:00:00:00:00:ff 172.16.0.0/31 172.16.0.1"));
  CU_ASSERT(has_record(buf, EMBER_BOOTCFG_DNS, "10.88.0.1"));
  CU_ASSERT(has_record(buf, EMBER_BOOTCFG_DNS, "1.0.0.1"));
  CU_ASSERT_EQUAL(0x8001, EMBER_BOOTCFG_NET);
  CU_ASSERT_EQUAL(0x8002, EMBER_BOOTCFG_DNS);
  init_config g;
  char why[256] = "";
  CU_ASSERT_EQUAL_FATAL(init_config_parse(buf, len, &g, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(g.argc, 4);
  CU_ASSERT_EQUAL_FATAL(g.nnet, 3);
  static const uint8_t mac0[6] = {0x02, 0xe7, 0x00, 0x12, 0x34, 0x56};
  CU_ASSERT_EQUAL(memcmp(g.net[0].mac, mac0, 6), 0);
  CU_ASSERT_EQUAL(g.net[0].addr, IP4(10, 88, 0, 2));
  CU_ASSERT_EQUAL(g.net[0].prefix, 16);
  CU_ASSERT_EQUAL(g.net[0].gateway, IP4(10, 88, 0, 1));
  CU_ASSERT_EQUAL(g.net[0].mtu, 1400);
  CU_ASSERT_EQUAL(g.net[1].addr, IP4(192, 168, 7, 9));
  CU_ASSERT_EQUAL(g.net[1].prefix, 32);
  CU_ASSERT_EQUAL(g.net[1].gateway, 0);
  CU_ASSERT_EQUAL(g.net[1].mtu, 0);
  CU_ASSERT_EQUAL(g.net[2].mac[5], 0xff);
  CU_ASSERT_EQUAL(g.net[2].gateway, IP4(172, 16, 0, 1));
  CU_ASSERT_EQUAL_FATAL(g.ndns, 2);
  CU_ASSERT_EQUAL(g.dns[0], IP4(10, 88, 0, 1));
  CU_ASSERT_EQUAL(g.dns[1], IP4(1, 0, 0, 1));
  CU_ASSERT_EQUAL(g.nnotes, 0);
  init_config_free(&g);

  /* the bounds themselves are accepted */
  img_bootcfg_net eight[EMBER_BOOTCFG_MAX_NET];
  char macs[EMBER_BOOTCFG_MAX_NET][18];
  for (unsigned i = 0; i < EMBER_BOOTCFG_MAX_NET; i++) {
    snprintf(macs[i], sizeof(macs[i]), "02:00:00:00:00:%02x", i + 1);
    eight[i] = (img_bootcfg_net){
        .mac = macs[i], .addr = IP4(10, i, 0, 2), .prefix = 24, .mtu = i == 0 ? 68 : 65535};
  }
  uint32_t four[EMBER_BOOTCFG_MAX_DNS] = {IP4(1, 1, 1, 1), IP4(127, 0, 0, 53),
                                          IP4(223, 255, 255, 255), IP4(10, 0, 0, 1)};
  img_bootcfg m = {.argv = t_argv, .argc = 1, .net = eight, .nnet = 8, .dns = four, .ndns = 4};
  cleanup_free unsigned char *mb = encode(&m, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
  CU_ASSERT_EQUAL_FATAL(init_config_parse(mb, len, &g, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(g.nnet, 8);
  CU_ASSERT_EQUAL(g.ndns, 4);
  CU_ASSERT_EQUAL(g.net[0].mtu, 68);
  CU_ASSERT_EQUAL(g.net[7].mtu, 65535);
  init_config_free(&g);
}

/* The writer refuses the entry: INVALID_ARGUMENT, a reason containing want. */
static void expect_net_refused(const img_bootcfg_net *n, size_t nnet, const uint32_t *dns,
                               size_t ndns, const char *want)
{
  img_bootcfg c = {.argv = t_argv, .argc = 1, .net = n, .nnet = nnet, .dns = dns, .ndns = ndns};
  cmn_error err = {0};
  unsigned char *buf = NULL;
  size_t len = 0;
  CU_ASSERT_EQUAL(img_bootcfg_encode(&c, &buf, &len, &err), -1);
  CU_ASSERT_PTR_NULL(buf);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  if (strstr(err.msg, want) == NULL) {
    fprintf(stderr, "writer's reason '%s' lacks '%s'\n", err.msg, want);
    CU_FAIL("unexpected reason");
  }
  free(buf);
}

static void test_net_writer_refuses(void)
{
  static const char *const bad_macs[] = {
      "02:e7:00:12:34",
      "02-e7-00-12-34-56",
      "02:e7:00:12:34:5g",
      "02:e7:00:12:34:56:",
      "02:e7:00:12:34:5",
      " 02:e7:00:12:34:56",
      "",
      "02e7:00:12:34:56:7",
      "02:e7:00:12:34:566",
  };
  for (size_t i = 0; i < sizeof(bad_macs) / sizeof(bad_macs[0]); i++) {
    img_bootcfg_net n = {.mac = bad_macs[i], .addr = IP4(10, 0, 0, 2), .prefix = 24};
    expect_net_refused(&n, 1, NULL, 0, "xx:xx:xx:xx:xx:xx");
  }
  img_bootcfg_net n = {.mac = NULL, .addr = IP4(10, 0, 0, 2), .prefix = 24};
  expect_net_refused(&n, 1, NULL, 0, "xx:xx");
  const img_bootcfg_net ok = {.mac = "02:00:00:00:00:01",
                              .addr = IP4(10, 0, 0, 2),
                              .prefix = 24,
                              .gateway = IP4(10, 0, 0, 1)};
  struct {
    img_bootcfg_net n;
    const char *want;
  } cases[] = {
      {{.mac = "01:00:5e:00:00:01", .addr = ok.addr, .prefix = 24}, "multicast"},
      {{.mac = "00:00:00:00:00:00", .addr = ok.addr, .prefix = 24}, "all zeros"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 0}, "prefix"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 33}, "prefix"},
      {{.mac = ok.mac, .addr = 0, .prefix = 24}, "not a unicast host address"},
      {{.mac = ok.mac, .addr = IP4(127, 0, 0, 2), .prefix = 8}, "not a unicast host address"},
      {{.mac = ok.mac, .addr = IP4(224, 0, 0, 1), .prefix = 24}, "not a unicast host address"},
      {{.mac = ok.mac, .addr = IP4(255, 255, 255, 255), .prefix = 32}, "not a unicast"},
      {{.mac = ok.mac, .addr = IP4(10, 0, 0, 0), .prefix = 24}, "network or broadcast"},
      {{.mac = ok.mac, .addr = IP4(10, 0, 0, 255), .prefix = 24}, "network or broadcast"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 24, .gateway = IP4(10, 0, 1, 1)}, "outside"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 32, .gateway = IP4(10, 0, 0, 1)}, "outside"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 24, .gateway = ok.addr}, "own address"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 24, .gateway = IP4(10, 0, 0, 255)},
       "gateway is its subnet's network or broadcast"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 24, .mtu = 67}, "MTU"},
      {{.mac = ok.mac, .addr = ok.addr, .prefix = 24, .mtu = 65536}, "MTU"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    expect_net_refused(&cases[i].n, 1, NULL, 0, cases[i].want);
  img_bootcfg_net dup[2] = {ok, ok};
  dup[1].mac = "02:00:00:00:00:01";
  dup[1].addr = IP4(10, 1, 0, 2);
  dup[1].gateway = 0;
  expect_net_refused(dup, 2, NULL, 0, "same MAC");
  dup[1].mac = "02:00:00:00:00:02";
  img_bootcfg c2 = {.argv = t_argv, .argc = 1, .net = dup, .nnet = 2};
  size_t len = 0;
  free(encode(&c2, &len)); /* distinct MACs: fine */
  img_bootcfg_net nine[EMBER_BOOTCFG_MAX_NET + 1];
  for (size_t i = 0; i <= EMBER_BOOTCFG_MAX_NET; i++)
    nine[i] = ok;
  expect_net_refused(nine, EMBER_BOOTCFG_MAX_NET + 1, NULL, 0, "at most 8");
  expect_net_refused(NULL, 1, NULL, 0, "not given");
  uint32_t five[EMBER_BOOTCFG_MAX_DNS + 1] = {1, 2, 3, 4, 5};
  expect_net_refused(NULL, 0, five, EMBER_BOOTCFG_MAX_DNS + 1, "at most 4");
  expect_net_refused(NULL, 0, NULL, 1, "not given");
  uint32_t zero = 0, bcast = IP4(255, 255, 255, 255), mcast = IP4(224, 0, 0, 251);
  expect_net_refused(NULL, 0, &zero, 1, "nameserver 0 (0.0.0.0)");
  expect_net_refused(NULL, 0, &bcast, 1, "not a unicast");
  expect_net_refused(NULL, 0, &mcast, 1, "not a unicast");
}

/* Parses a config of argv "/bin/true" + records with that tag and values;
 * the config must parse (network records never fail it); *g for checks. */
static void parse_nets(const char *const *values, size_t n, unsigned tag, init_config *g)
{
  size_t cap = 4096 + n * 96;
  cleanup_free unsigned char *r = cmn_calloc(1, cap);
  cleanup_free unsigned char *buf = cmn_calloc(1, cap + EMBER_BOOTCFG_HEADER_SIZE);
  size_t len = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  for (size_t i = 0; i < n; i++)
    len += rec(r + len, tag, values[i]);
  char why[256] = "";
  int rc = init_config_parse(buf, hand_cfg(buf, cap + EMBER_BOOTCFG_HEADER_SIZE, r, len), g, why,
                             sizeof(why));
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(g->argc, 1);
}

static void test_net_reader_skips(void)
{
  /* accepted: the forms the writer produces, upper-case hex, /31 and /32 */
  static const char *const good[] = {
      "02:e7:00:12:34:56 10.88.0.2/16 10.88.0.1",
      "02:E7:00:12:34:57 10.88.0.3/16 - mtu=9000",
      "02:e7:00:12:34:58 172.16.0.0/31 172.16.0.1",
      "02:e7:00:12:34:59 192.168.0.1/32 -",
  };
  init_config g;
  parse_nets(good, 4, EMBER_BOOTCFG_NET, &g);
  CU_ASSERT_EQUAL(g.nnet, 4);
  CU_ASSERT_EQUAL(g.nnotes, 0);
  CU_ASSERT_EQUAL(g.net[1].mac[1], 0xe7);
  CU_ASSERT_EQUAL(g.net[1].mtu, 9000);
  CU_ASSERT_EQUAL(g.net[2].prefix, 31);
  init_config_free(&g);

  /* each malformed: skipped with a note naming the record and the reason */
  struct {
    const char *v, *want;
  } bad[] = {
      {"", "no MAC"},
      {"02:e7:00:12:34:56", "no IPv4 address"},
      {"02:e7:00:12:34:56  10.0.0.2/24 -", "no IPv4 address"},
      {"02:e7:00:12:34:56 010.0.0.2/24 -", "no IPv4 address"},
      {"02:e7:00:12:34:56 10.0.0.256/24 -", "no IPv4 address"},
      {"02:e7:00:12:34:56 10.0.0/24 -", "no IPv4 address"},
      {"02:e7:00:12:34:56 10.0.0.2 -", "no /prefix"},
      {"02:e7:00:12:34:56 10.0.0.2/024 -", "no /prefix"},
      {"02:e7:00:12:34:56 10.0.0.2/24", "no gateway"},
      {"02:e7:00:12:34:56 10.0.0.2/24 0.0.0.0", "no gateway"},
      {"02:e7:00:12:34:56 10.0.0.2/24 x", "no gateway"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - ", "unknown text after the gateway"},
      {"02:e7:00:12:34:56 10.0.0.2/24 -mtu=1400", "unknown text after the gateway"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - mtu=0", "mtu= is not a number"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - mtu=01400", "mtu= is not a number"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - mtu=1400x", "unknown text at the end"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - mtu=100000", "mtu= is not a number"},
      {"02:e7:00:12:34:56 10.0.0.2/24 - mtu=67", "MTU"},
      {"02:e7:00:12:34:56 10.0.0.2/33 -", "prefix length"},
      {"02:e7:00:12:34:56 10.0.0.2/0 -", "prefix length"},
      {"02:e7:00:12:34:56 10.0.0.2/24 10.0.1.1", "outside"},
      {"03:e7:00:12:34:56 10.0.0.2/24 -", "multicast"},
      {"02:e7:00:12:34:56 127.0.0.2/8 -", "not a unicast host"},
      {"02:e7:00:12:34:56 10.0.0.2/24 10.0.0.1 mtu=1400 mtu=1400", "unknown text at the end"},
      {"02:e7:00:12:34:56 100.100.100.100/24 100.100.100.101 mtu=65535      ", "longer than 64"},
  };
  size_t nbad = sizeof(bad) / sizeof(bad[0]);
  for (size_t i = 0; i < nbad; i++) {
    const char *one[] = {bad[i].v};
    parse_nets(one, 1, EMBER_BOOTCFG_NET, &g);
    CU_ASSERT_EQUAL(g.nnet, 0);
    CU_ASSERT_EQUAL_FATAL(g.nnotes, 1);
    if (strstr(g.notes[0], "net record 1 skipped: ") != g.notes[0] ||
        strstr(g.notes[0], bad[i].want) == NULL) {
      fprintf(stderr, "'%s': note '%s' lacks '%s'\n", bad[i].v, g.notes[0], bad[i].want);
      CU_FAIL("unexpected note");
    }
    init_config_free(&g);
  }

  /* a repeated MAC (either case), records past the 8th; the good ones stay */
  static const char *const mixed[] = {
      "02:e7:00:00:00:01 10.0.1.2/24 -", "garbage",
      "02:E7:00:00:00:01 10.0.2.2/24 -", "02:e7:00:00:00:02 10.0.2.2/24 -",
      "02:e7:00:00:00:03 10.0.3.2/24 -", "02:e7:00:00:00:04 10.0.4.2/24 -",
      "02:e7:00:00:00:05 10.0.5.2/24 -", "02:e7:00:00:00:06 10.0.6.2/24 -",
      "02:e7:00:00:00:07 10.0.7.2/24 -", "02:e7:00:00:00:08 10.0.8.2/24 -",
      "02:e7:00:00:00:09 10.0.9.2/24 -",
  };
  parse_nets(mixed, 11, EMBER_BOOTCFG_NET, &g);
  CU_ASSERT_EQUAL(g.nnet, 8);
  CU_ASSERT_EQUAL_FATAL(g.nnotes, 3);
  CU_ASSERT_STRING_EQUAL(g.notes[0], "net record 2 skipped: no MAC (xx:xx:xx:xx:xx:xx) first "
                                     "'garbage'");
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[1], "net record 3 skipped: its MAC is already"));
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[2], "net record 11 skipped: more than 8 interfaces"));
  CU_ASSERT_EQUAL(g.net[7].addr, IP4(10, 0, 8, 2));
  init_config_free(&g);

  /* DNS: strict dotted quads, at most 4 kept */
  static const char *const dns[] = {"10.0.0.1", "10.0.0.1 ", "1.2.3",   "0.0.0.0", "224.0.0.1",
                                    "8.8.8.8",  "::1",       "9.9.9.9", "1.1.1.1", "2.2.2.2"};
  parse_nets(dns, 10, EMBER_BOOTCFG_DNS, &g);
  CU_ASSERT_EQUAL_FATAL(g.ndns, 4);
  CU_ASSERT_EQUAL(g.dns[0], IP4(10, 0, 0, 1));
  CU_ASSERT_EQUAL(g.dns[3], IP4(1, 1, 1, 1));
  CU_ASSERT_EQUAL_FATAL(g.nnotes, 6);
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[0], "dns record 2 skipped: not a dotted-quad"));
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[2], "dns record 4 skipped: not a unicast"));
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[5], "dns record 10 skipped: more than 4 nameservers"));
  init_config_free(&g);

  /* notes are bounded (the rest counted) and printable; NUL bytes are caught */
  const char *many[40];
  for (size_t i = 0; i < 40; i++)
    many[i] = "bad\x01\x1b[2Jline";
  parse_nets(many, 40, EMBER_BOOTCFG_NET, &g);
  CU_ASSERT_EQUAL(g.nnotes, INIT_CONFIG_MAX_NOTES);
  CU_ASSERT_EQUAL(g.notes_dropped, 40 - INIT_CONFIG_MAX_NOTES);
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[0], "'bad??[2Jline'"));
  init_config_free(&g);
  unsigned char buf[1024], r[512];
  size_t n = rec(r, EMBER_BOOTCFG_ARG, "/bin/true");
  n += rec(r + n, EMBER_BOOTCFG_NET, "02:e7:00:12:34:56 10.0.0.2/24 -");
  r[n - 3] = '\0'; /* inside the value */
  char why[256];
  CU_ASSERT_EQUAL_FATAL(
      init_config_parse(buf, hand_cfg(buf, sizeof(buf), r, n), &g, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(g.nnet, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[0], "NUL byte"));
  init_config_free(&g);
  /* a long hostile value is cut in the note */
  char longv[300];
  memset(longv, 'z', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = '\0';
  const char *lv[] = {longv};
  parse_nets(lv, 1, EMBER_BOOTCFG_NET, &g);
  CU_ASSERT_EQUAL_FATAL(g.nnotes, 1);
  CU_ASSERT(strlen(g.notes[0]) < INIT_CONFIG_NOTE_LEN);
  CU_ASSERT_PTR_NOT_NULL(strstr(g.notes[0], "zzz...'"));
  init_config_free(&g);
}

static void test_read_fd(void)
{
  char path[] = "/tmp/ember-bootcfg-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  img_bootcfg c = full_cfg();
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(img_bootcfg_write(&c, path, &err), 0);
  close(fd);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  init_config g;
  char why[256] = "";
  CU_ASSERT_EQUAL(init_config_read_fd(fd, &g, why, sizeof(why)), 0);
  CU_ASSERT_STRING_EQUAL(g.hostname, "web-1");
  init_config_free(&g);
  close(fd);
  /* truncate the file inside the payload: the reader says so */
  CU_ASSERT_EQUAL(truncate(path, 40), 0);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  CU_ASSERT_EQUAL(init_config_read_fd(fd, &g, why, sizeof(why)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(why, "truncated"));
  close(fd);
  unlink(path);
}

static char *write_tmp(const char *text)
{
  char *p = cmn_strdup("/tmp/ember-user-XXXXXX");
  int fd = mkstemp(p);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
    CU_FAIL("write temp file");
  close(fd);
  return p;
}

static void test_user_resolve(void)
{
  cleanup_free char *pw = write_tmp("root:x:0:0:root:/root:/bin/sh\n"
                                    "broken line\n"
                                    "app:x:1000:1000:App:/home/app:/bin/sh\n"
                                    "nohome:x:1001:1001:::/bin/sh\n");
  cleanup_free char *gr = write_tmp("root:x:0:\nstaff:x:50:app,other\napp:x:1000:\n"
                                    "wheel:x:10:root,app\n");
  init_user u;
  char why[256];
  CU_ASSERT_EQUAL(init_user_resolve(NULL, pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.uid, 0);
  CU_ASSERT_EQUAL(u.gid, 0);
  CU_ASSERT_STRING_EQUAL(u.home, "/root");
  CU_ASSERT_EQUAL(init_user_resolve("app", pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.uid, 1000);
  CU_ASSERT_EQUAL(u.gid, 1000);
  CU_ASSERT_STRING_EQUAL(u.home, "/home/app");
  CU_ASSERT_EQUAL(u.ngroups, 2); /* staff, wheel */
  CU_ASSERT_EQUAL(init_user_resolve("app:staff", pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.gid, 50);
  CU_ASSERT_EQUAL(init_user_resolve("1000:7", pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.uid, 1000);
  CU_ASSERT_EQUAL(u.gid, 7);
  CU_ASSERT_STRING_EQUAL(u.home, "/home/app");
  CU_ASSERT_EQUAL(init_user_resolve("4242", pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.uid, 4242);
  CU_ASSERT_EQUAL(u.gid, 0);
  CU_ASSERT_STRING_EQUAL(u.home, "/");
  CU_ASSERT_EQUAL(init_user_resolve("nohome", pw, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_STRING_EQUAL(u.home, "/");
  CU_ASSERT_EQUAL(init_user_resolve("nobody", pw, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(why, "not found"));
  CU_ASSERT_EQUAL(init_user_resolve("app:nogroup", pw, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_EQUAL(init_user_resolve(":5", pw, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_EQUAL(init_user_resolve("app:", pw, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_EQUAL(init_user_resolve("99999999999", pw, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_EQUAL(init_user_resolve("0", "/nonexistent", "/nonexistent", &u, why, sizeof(why)), 0);
  /* an over-long line's tail is not an entry of its own */
  cleanup_free char *longline = cmn_calloc(1, 4096);
  memset(longline, 'x', 4095); /* fills the reader's buffer exactly */
  cleanup_free char *text = cmn_asprintf("root:x:0:0:root:/root:/bin/sh\n"
                                         "%sevil:x:0:0::/:/bin/sh\n"
                                         "ok:x:7:7::/home/ok:/bin/sh",
                                         longline);
  cleanup_free char *pw2 = write_tmp(text);
  CU_ASSERT_EQUAL(init_user_resolve("evil", pw2, gr, &u, why, sizeof(why)), -1);
  CU_ASSERT_EQUAL(init_user_resolve("ok", pw2, gr, &u, why, sizeof(why)), 0);
  CU_ASSERT_EQUAL(u.uid, 7);
  unlink(pw2);
  unlink(pw);
  unlink(gr);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("bootcfg", NULL, NULL);
  CU_add_test(s, "round_trip", test_round_trip);
  CU_add_test(s, "defaults", test_defaults);
  CU_add_test(s, "writer_refuses", test_writer_refuses);
  CU_add_test(s, "reader_rejects_corrupt", test_reader_rejects_corrupt);
  CU_add_test(s, "reader_hostile_records", test_reader_hostile_records);
  CU_add_test(s, "net_round_trip", test_net_round_trip);
  CU_add_test(s, "net_writer_refuses", test_net_writer_refuses);
  CU_add_test(s, "net_reader_skips", test_net_reader_skips);
  CU_add_test(s, "read_fd", test_read_fd);
  CU_add_test(s, "user_resolve", test_user_resolve);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
