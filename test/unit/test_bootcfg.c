/* test_bootcfg.c: CUnit tests of the boot config: the host writer
 * (agent/image/bootcfg.c) and the guest reader (guest/init/config.c, compiled
 * for the host), round trips, and the reader against corrupt and hostile
 * input (wrong magic, version, sizes, truncation, checksum, records running
 * past the end, NUL bytes, unknown tags, oversized values); plus the guest's
 * OCI User resolution (guest/init/user.c) on passwd/group files. */
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
  CU_add_test(s, "read_fd", test_read_fd);
  CU_add_test(s, "user_resolve", test_user_resolve);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
