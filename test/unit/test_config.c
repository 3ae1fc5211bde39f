/* test_config.c: CUnit tests of emberd's configuration (agent/config.c):
 * defaults, the default data dir rules, flags over the config file, and the
 * clear rejection of every bad value. */
#include "agent/config.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_root[64];

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-config-XXXXXX");
  return mkdtemp(tmp_root) ? 0 : -1;
}

static int suite_clean(void)
{
  char *cmd = cmn_asprintf("rm -rf '%s'", tmp_root);
  int r = system(cmd);
  free(cmd);
  return r == 0 ? 0 : -1;
}

/* argv from a NULL-terminated list. */
static int load(agent_config *cfg, cmn_error *err, const char *const *args, unsigned euid)
{
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)"emberd";
  for (; *args != NULL && argc < 31; args++)
    argv[argc++] = (char *)*args;
  argv[argc] = NULL;
  return agent_config_load(cfg, argc, argv, "/home/u", NULL, euid, err);
}

static char *write_file(const char *name, const char *text)
{
  char *p = cmn_asprintf("%s/%s", tmp_root, name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  return p;
}

static void test_defaults(void)
{
  agent_config c;
  cmn_error err = {0};
  const char *none[] = {NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, none, 1000), 0);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/home/u/.local/share/ember");
  CU_ASSERT_STRING_EQUAL(c.listen, "unix:/home/u/.local/share/ember/emberd.sock");
  CU_ASSERT_EQUAL(c.workers, 4);
  CU_ASSERT_EQUAL(c.max_message_bytes, 4 * 1024 * 1024);
  CU_ASSERT_EQUAL(c.grace_seconds, 30);
  CU_ASSERT_EQUAL(c.log_level, CMN_LOG_INFO);
  CU_ASSERT_PTR_NULL(c.drivers);
  agent_config_free(&c);

  CU_ASSERT_EQUAL_FATAL(load(&c, &err, none, 0), 0);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/var/lib/ember");
  agent_config_free(&c);

  char *argv[] = {(char *)"emberd", NULL};
  CU_ASSERT_EQUAL_FATAL(agent_config_load(&c, 1, argv, "/home/u", "/xdg", 1000, &err), 0);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/xdg/ember");
  agent_config_free(&c);
  /* A relative XDG_DATA_HOME is ignored, as the XDG spec says. */
  CU_ASSERT_EQUAL_FATAL(agent_config_load(&c, 1, argv, "/home/u", "rel", 1000, &err), 0);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/home/u/.local/share/ember");
  agent_config_free(&c);
  CU_ASSERT_EQUAL(agent_config_load(&c, 1, argv, NULL, NULL, 1000, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--data-dir"));
}

static void test_flags(void)
{
  agent_config c;
  cmn_error err = {0};
  const char *a[] = {"--data-dir",
                     "/d/",
                     "--workers=8",
                     "--log-level",
                     "debug",
                     "--max-message-bytes",
                     "16M",
                     "--grace-seconds",
                     "0",
                     "--listen",
                     "127.0.0.1:5051",
                     "--insecure-tcp",
                     NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, a, 1000), 0);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/d");
  CU_ASSERT_EQUAL(c.workers, 8);
  CU_ASSERT_EQUAL(c.log_level, CMN_LOG_DEBUG);
  CU_ASSERT_EQUAL(c.max_message_bytes, 16 * 1024 * 1024);
  CU_ASSERT_EQUAL(c.grace_seconds, 0);
  CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:5051");
  CU_ASSERT_TRUE(c.insecure_tcp);
  agent_config_free(&c);

  const char *h[] = {"--help", "--workers", "nonsense", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, h, 1000), 0);
  CU_ASSERT_TRUE(c.help);
  agent_config_free(&c);
}

static void expect_bad(const char *const *args, const char *needle)
{
  agent_config c;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(load(&c, &err, args, 1000), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  if (strstr(err.msg, needle) == NULL) {
    fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, needle);
    CU_FAIL("error message does not name the problem");
  }
}

static void test_bad_flags(void)
{
  expect_bad((const char *[]){"--workers", "0", NULL}, "workers");
  expect_bad((const char *[]){"--workers", "4x", NULL}, "workers");
  expect_bad((const char *[]){"--workers", "", NULL}, "workers");
  expect_bad((const char *[]){"--workers", "99999999999999999999", NULL}, "workers");
  expect_bad((const char *[]){"--workers", NULL}, "needs a value");
  expect_bad((const char *[]){"--log-level", "loud", NULL}, "log_level");
  expect_bad((const char *[]){"--max-message-bytes", "12", NULL}, "max_message_bytes");
  expect_bad((const char *[]){"--max-message-bytes", "4Q", NULL}, "max_message_bytes");
  expect_bad((const char *[]){"--max-message-bytes", "-5", NULL}, "max_message_bytes");
  expect_bad((const char *[]){"--grace-seconds", "-1", NULL}, "grace_seconds");
  expect_bad((const char *[]){"--bogus", NULL}, "unknown option");
  expect_bad((const char *[]){"--insecure-tcp=yes", NULL}, "takes no value");
  expect_bad((const char *[]){"--listen", "127.0.0.1:1", NULL}, "--tls-cert");
  expect_bad((const char *[]){"--listen", "nocolon", NULL}, "host:port");
  expect_bad((const char *[]){"--tls-cert", "/c", NULL}, "together");
  expect_bad((const char *[]){"--tls-cert", "/c", "--tls-key", "/k", NULL}, "TCP");
  expect_bad((const char *[]){"--config", "/nonexistent/emberd.json", NULL}, "config file");
}

static void test_file(void)
{
  cleanup_free char *p = write_file(
      "ok.json", "{\"listen\":\"unix:/tmp/x.sock\",\"workers\":2,\"log_level\":\"warn\","
                 "\"max_message_bytes\":65536,\"grace_seconds\":5,\"data_dir\":\"/from-file\","
                 "\"drivers\":{\"qemu\":{\"accel\":\"tcg\"}}}");
  agent_config c;
  cmn_error err = {0};
  const char *a[] = {"--config", p, "--workers", "3", NULL};
  int r = load(&c, &err, a, 1000);
  if (r != 0)
    fprintf(stderr, "load failed: %s\n", err.msg);
  CU_ASSERT_EQUAL_FATAL(r, 0);
  CU_ASSERT_EQUAL(c.workers, 3); /* the flag wins */
  CU_ASSERT_EQUAL(c.log_level, CMN_LOG_WARN);
  CU_ASSERT_EQUAL(c.max_message_bytes, 65536);
  CU_ASSERT_EQUAL(c.grace_seconds, 5);
  CU_ASSERT_STRING_EQUAL(c.data_dir, "/from-file");
  CU_ASSERT_STRING_EQUAL(c.listen, "unix:/tmp/x.sock");
  CU_ASSERT_PTR_NOT_NULL_FATAL(c.drivers);
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(c.drivers, "qemu");
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItemCaseSensitive(q, "accel")->valuestring, "tcg");
  agent_config_free(&c);

  struct {
    const char *text, *needle;
  } bad[] = {
      {"{\"workers\":", "invalid JSON"},
      {"[1]", "object"},
      {"{\"wrokers\":2}", "unknown setting 'wrokers'"},
      {"{\"workers\":2.5}", "integer"},
      {"{\"workers\":\"many\"}", "workers"},
      {"{\"workers\":[1]}", "wrong type"},
      {"{\"drivers\":{\"qemu\":1}}", "drivers.qemu"},
      {"{\"drivers\":[]}", "drivers"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *bp = write_file("bad.json", bad[i].text);
    expect_bad((const char *[]){"--config", bp, NULL}, bad[i].needle);
  }
}

/* host_file_roots and allow_block_devices (docs/host-paths.md). */
static void test_host_files(void)
{
  cleanup_free char *p =
      write_file("roots.json", "{\"host_file_roots\":[\"/srv/images\",\"/dev/loop7\"],"
                               "\"allow_block_devices\":true}");
  agent_config c;
  cmn_error err = {0};
  const char *a[] = {"--data-dir", "/d", "--config", p, NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, a, 1000), 0);
  CU_ASSERT_EQUAL(c.n_host_file_roots, 2);
  CU_ASSERT_STRING_EQUAL(c.host_file_roots[1], "/dev/loop7");
  CU_ASSERT_TRUE(c.allow_block_devices);
  agent_config_free(&c);
  /* Flags win: the first --host-file-root replaces the file's list. */
  const char *b[] = {"--data-dir",          "/d", "--config", p, "--host-file-root", "/a",
                     "--host-file-root=/b", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, b, 1000), 0);
  CU_ASSERT_EQUAL(c.n_host_file_roots, 2);
  CU_ASSERT_STRING_EQUAL(c.host_file_roots[0], "/a");
  CU_ASSERT_STRING_EQUAL(c.host_file_roots[1], "/b");
  agent_config_free(&c);
  /* Defaults: no roots, no block devices. */
  const char *d[] = {"--data-dir", "/d", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, d, 1000), 0);
  CU_ASSERT_EQUAL(c.n_host_file_roots, 0);
  CU_ASSERT_FALSE(c.allow_block_devices);
  agent_config_free(&c);
  expect_bad((const char *[]){"--data-dir", "/d", "--host-file-root", "rel", NULL},
             "host_file_roots: 'rel' is not an absolute path");
  expect_bad((const char *[]){"--data-dir", "/d", "--allow-block-devices", NULL},
             "allow_block_devices needs host_file_roots");
  struct {
    const char *text, *needle;
  } bad[] = {
      {"{\"host_file_roots\":\"/a\"}", "host_file_roots must be an array"},
      {"{\"host_file_roots\":[1]}", "host_file_roots must hold strings"},
      {"{\"allow_block_devices\":\"yes\"}", "allow_block_devices: must be true or false"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cleanup_free char *bp = write_file("bad.json", bad[i].text);
    expect_bad((const char *[]){"--data-dir", "/d", "--config", bp, NULL}, bad[i].needle);
  }
}

/* Admission settings (docs/capacity.md): defaults, flags, JSON fractions. */
static void test_admission(void)
{
  agent_config c;
  cmn_error err = {0};
  const char *none[] = {NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, none, 1000), 0);
  CU_ASSERT_DOUBLE_EQUAL(c.admission.mem_overcommit, 1.0, 1e-9);
  CU_ASSERT_EQUAL(c.admission.mem_reserved_mib, 512);
  CU_ASSERT_DOUBLE_EQUAL(c.admission.vcpu_overcommit, 4.0, 1e-9);
  CU_ASSERT_EQUAL(c.admission.disk_reserve_mib, 256);
  agent_config_free(&c);

  cleanup_free char *p = write_file(
      "adm.json", "{\"mem_overcommit\":1.5,\"vcpu_overcommit\":2,\"mem_reserved_mib\":1024,"
                  "\"disk_reserve_mib\":0}");
  const char *a[] = {"--config", p, "--vcpu-overcommit", "0.5", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, a, 1000), 0);
  CU_ASSERT_DOUBLE_EQUAL(c.admission.mem_overcommit, 1.5, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(c.admission.vcpu_overcommit, 0.5, 1e-9); /* the flag wins */
  CU_ASSERT_EQUAL(c.admission.mem_reserved_mib, 1024);
  CU_ASSERT_EQUAL(c.admission.disk_reserve_mib, 0);
  agent_config_free(&c);

  expect_bad((const char *[]){"--mem-overcommit", "0", NULL}, "mem_overcommit");
  expect_bad((const char *[]){"--mem-overcommit", "101", NULL}, "mem_overcommit");
  expect_bad((const char *[]){"--mem-overcommit", "nan", NULL}, "mem_overcommit");
  expect_bad((const char *[]){"--vcpu-overcommit", "1x", NULL}, "vcpu_overcommit");
  expect_bad((const char *[]){"--mem-reserved-mib", "-1", NULL}, "mem_reserved_mib");
  expect_bad((const char *[]){"--disk-reserve-mib", "2.5", NULL}, "disk_reserve_mib");
  cleanup_free char *bp = write_file("badadm.json", "{\"mem_reserved_mib\":1.5}");
  expect_bad((const char *[]){"--config", bp, NULL}, "integer");
  cleanup_free char *bp2 = write_file("badadm2.json", "{\"vcpu_overcommit\":\"lots\"}");
  expect_bad((const char *[]){"--config", bp2, NULL}, "vcpu_overcommit");
}

/* Image store and registry keys (docs/images.md). */
static void test_image_keys(void)
{
  cleanup_free char *p =
      write_file("img.json", "{\"image_store_budget\":\"20G\",\"registry_ca_file\":\"/etc/ca.pem\","
                             "\"registry_credentials_file\":\"/etc/creds.json\","
                             "\"insecure_registries\":[\"127.0.0.1:5000\",\"reg.lan\"]}");
  agent_config c;
  cmn_error err = {0};
  const char *a[] = {"--data-dir", "/d", "--config", p, NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, a, 1000), 0);
  CU_ASSERT_EQUAL(c.image_store_budget, 20LL << 30);
  CU_ASSERT_STRING_EQUAL(c.registry_ca_file, "/etc/ca.pem");
  CU_ASSERT_STRING_EQUAL(c.registry_credentials_file, "/etc/creds.json");
  CU_ASSERT_EQUAL(c.n_insecure_registries, 2);
  agent_config_free(&c);
  const char *b[] = {"--data-dir",
                     "/d",
                     "--config",
                     p,
                     "--insecure-registry",
                     "[::1]:5000",
                     "--image-store-budget=0",
                     NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, b, 1000), 0);
  CU_ASSERT_EQUAL(c.n_insecure_registries, 1);
  CU_ASSERT_STRING_EQUAL(c.insecure_registries[0], "[::1]:5000");
  CU_ASSERT_EQUAL(c.image_store_budget, 0);
  agent_config_free(&c);
  expect_bad((const char *[]){"--data-dir", "/d", "--image-store-budget", "lots", NULL},
             "image_store_budget: 'lots' is not a size");
  expect_bad((const char *[]){"--data-dir", "/d", "--insecure-registry", "http://x", NULL},
             "insecure_registries: 'http://x' is not host[:port]");
  cleanup_free char *bp = write_file("bad.json", "{\"insecure_registries\":\"x\"}");
  expect_bad((const char *[]){"--data-dir", "/d", "--config", bp, NULL},
             "insecure_registries must be an array");
}

/* console_max_bytes (docs/console.md): default, file (number or size
 * string), flag, the 64K floor. */
static void test_console_key(void)
{
  agent_config c;
  cmn_error err = {0};
  const char *none[] = {"--data-dir", "/d", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, none, 1000), 0);
  CU_ASSERT_EQUAL(c.console_max_bytes, 4 * 1024 * 1024);
  agent_config_free(&c);
  cleanup_free char *p = write_file("console.json", "{\"console_max_bytes\":65536}");
  const char *a[] = {"--data-dir", "/d", "--config", p, NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, a, 1000), 0);
  CU_ASSERT_EQUAL(c.console_max_bytes, 65536);
  agent_config_free(&c);
  const char *b[] = {"--data-dir", "/d", "--config", p, "--console-max-bytes", "16M", NULL};
  CU_ASSERT_EQUAL_FATAL(load(&c, &err, b, 1000), 0);
  CU_ASSERT_EQUAL(c.console_max_bytes, 16 << 20);
  agent_config_free(&c);
  expect_bad((const char *[]){"--data-dir", "/d", "--console-max-bytes", "65535", NULL},
             "console_max_bytes: '65535' is not a size between 64K");
  expect_bad((const char *[]){"--data-dir", "/d", "--console-max-bytes", "lots", NULL},
             "console_max_bytes");
}

static void test_sizes(void)
{
  int64_t v;
  CU_ASSERT_EQUAL(agent_config_parse_size("1024", &v), 0);
  CU_ASSERT_EQUAL(v, 1024);
  CU_ASSERT_EQUAL(agent_config_parse_size("4MiB", &v), 0);
  CU_ASSERT_EQUAL(v, 4 << 20);
  CU_ASSERT_EQUAL(agent_config_parse_size("2k", &v), 0);
  CU_ASSERT_EQUAL(v, 2048);
  CU_ASSERT_EQUAL(agent_config_parse_size("1G", &v), 0);
  CU_ASSERT_EQUAL(v, 1 << 30);
  CU_ASSERT_EQUAL(agent_config_parse_size("", &v), -1);
  CU_ASSERT_EQUAL(agent_config_parse_size("M", &v), -1);
  CU_ASSERT_EQUAL(agent_config_parse_size("5MM", &v), -1);
  CU_ASSERT_EQUAL(agent_config_parse_size(" 5", &v), -1);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("config", suite_init, suite_clean);
  CU_add_test(s, "defaults", test_defaults);
  CU_add_test(s, "flags", test_flags);
  CU_add_test(s, "bad_flags", test_bad_flags);
  CU_add_test(s, "file", test_file);
  CU_add_test(s, "image store and registry keys", test_image_keys);
  CU_add_test(s, "sizes", test_sizes);
  CU_add_test(s, "console_max_bytes", test_console_key);
  CU_add_test(s, "host_files", test_host_files);
  CU_add_test(s, "admission", test_admission);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
