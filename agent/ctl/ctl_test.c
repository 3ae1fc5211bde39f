/* ctl_test.c: CUnit tests of emberctl's server-free parts: argument parsing,
 * the default socket, protobuf <-> JSON, spec building and output formatting.
 * The calls themselves are tested against a real emberd by
 * test/integration/test_ctl.py. */
#include "agent/ctl/ctl.h"
#include "agent/ctl/output.h"
#include "agent/ctl/pbjson.h"
#include "agent/ctl/spec.h"
#include "agent/rpc_table.h"
#include "common/mem.h"
#include "ember/v1/image.pb-c.h"

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Parses a NULL-terminated list of words. argv and its strings are copied
 * into static storage (getopt permutes argv; ctl_args_parse takes char **):
 * the options point into it until the next call. */
static int parse(ctl_opts *o, cmn_error *err, const char *const *words)
{
  static char *argv[64];
  static char pool[4096];
  size_t used = 0;
  int argc = 0;
  for (const char *w = "emberctl"; w != NULL && argc < 63; w = *words++) {
    size_t len = strlen(w) + 1;
    CU_ASSERT_FATAL(used + len <= sizeof(pool));
    argv[argc++] = memcpy(pool + used, w, len);
    used += len;
  }
  argv[argc] = NULL;
  memset(err, 0, sizeof(*err));
  return ctl_args_parse(argc, argv, o, err);
}

static void test_args_basic(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w1[] = {"--json", "get", "web-1", "--timeout", "5s", "--socket", "/tmp/x.sock", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w1), 0);
  CU_ASSERT_STRING_EQUAL(o.command, "get");
  CU_ASSERT_EQUAL(o.n_args, 1);
  CU_ASSERT_STRING_EQUAL(o.args[0], "web-1");
  CU_ASSERT(o.json);
  CU_ASSERT_EQUAL(o.timeout_ms, 5000);
  CU_ASSERT_STRING_EQUAL(o.target, "unix:/tmp/x.sock");
  ctl_opts_free(&o);

  const char *w2[] = {
      "create",  "vm",          "--vcpus", "2",         "--memory-mib",   "512",
      "--disk",  "a.img:ro",    "--disk",  "/b.img",    "--tap",          "tap0,aa:bb:cc:dd:ee:ff",
      "--start", "--vsock-cid", "42",      "--address", "127.0.0.1:7000", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w2), 0);
  CU_ASSERT_EQUAL(o.vcpus, 2);
  CU_ASSERT_EQUAL(o.memory_mib, 512);
  CU_ASSERT_EQUAL(o.n_disks, 2);
  CU_ASSERT_EQUAL(o.n_taps, 1);
  CU_ASSERT_EQUAL(o.vsock_cid, 42);
  CU_ASSERT(o.start);
  CU_ASSERT_STRING_EQUAL(o.target, "127.0.0.1:7000");
  ctl_opts_free(&o);
}

/* console: -f, --tail, --offset (one option bit), refused elsewhere. */
static void test_args_console(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w[] = {"console", "vm", "-f", "--tail", "4096", "--offset=7", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w), 0);
  CU_ASSERT_STRING_EQUAL(o.command, "console");
  CU_ASSERT(o.follow);
  CU_ASSERT_EQUAL(o.tail_bytes, 4096);
  CU_ASSERT_EQUAL(o.offset, 7);
  ctl_opts_free(&o);
  const char *plain[] = {"console", "vm", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, plain), 0);
  CU_ASSERT(!o.follow && o.tail_bytes == 0 && o.offset == 0);
  ctl_opts_free(&o);
  const char *bad[][5] = {
      {"console", NULL},
      {"console", "vm", "--tail", "0", NULL},
      {"console", "vm", "--tail", "-3", NULL},
      {"console", "vm", "--offset", "x", NULL},
      {"get", "vm", "-f", NULL},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i]), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    ctl_opts_free(&o);
  }
}

static void test_args_errors(void)
{
  ctl_opts o;
  cmn_error err;
  const char *bad[][6] = {
      {"get", NULL},                      /* missing ID */
      {"get", "a", "b", NULL},            /* too many */
      {"frobnicate", NULL},               /* unknown command */
      {"get", "a", "--vcpus", "2", NULL}, /* option of another command */
      {"create", "a", "--vcpus", "zero", NULL},
      {"list", "--bogus", NULL},
      {"get", "a", "--timeout", NULL}, /* missing value */
      {"get", "a", "--timeout", "soon", NULL},
      {"create", "a", "--vsock-cid", "2", NULL}, /* CIDs 0-2 are reserved */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i]), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    CU_ASSERT(err.msg[0] != '\0');
    ctl_opts_free(&o);
  }
  const char *both[] = {"list", "--socket", "/x", "--address", "y:1", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, both), -1);
  ctl_opts_free(&o);
  /* --help anywhere is not an error, even with a command's arguments missing. */
  const char *help[] = {"get", "--help", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, help), 0);
  CU_ASSERT(o.help);
  ctl_opts_free(&o);
}

static void test_durations(void)
{
  int64_t ms = 0;
  CU_ASSERT(ctl_parse_duration_ms("30", &ms) == 0 && ms == 30000);
  CU_ASSERT(ctl_parse_duration_ms("250ms", &ms) == 0 && ms == 250);
  CU_ASSERT(ctl_parse_duration_ms("1.5s", &ms) == 0 && ms == 1500);
  CU_ASSERT(ctl_parse_duration_ms("2m", &ms) == 0 && ms == 120000);
  CU_ASSERT(ctl_parse_duration_ms("0", &ms) == 0 && ms == 0);
  CU_ASSERT(ctl_parse_duration_ms("-1", &ms) < 0);
  CU_ASSERT(ctl_parse_duration_ms("5x", &ms) < 0);
  CU_ASSERT(ctl_parse_duration_ms("", &ms) < 0);
}

static void test_default_target(void)
{
  char *saved_sock = cmn_strdup(getenv("EMBER_SOCKET"));
  char *saved_xdg = cmn_strdup(getenv("XDG_DATA_HOME"));
  char *saved_home = cmn_strdup(getenv("HOME"));
  char *t;

  setenv("EMBER_SOCKET", "/run/e.sock", 1);
  t = ctl_default_target();
  CU_ASSERT_STRING_EQUAL(t, "unix:/run/e.sock");
  free(t);
  setenv("EMBER_SOCKET", "unix:/run/f.sock", 1);
  t = ctl_default_target();
  CU_ASSERT_STRING_EQUAL(t, "unix:/run/f.sock");
  free(t);
  unsetenv("EMBER_SOCKET");

  t = ctl_default_target();
  if (geteuid() == 0) {
    CU_ASSERT_STRING_EQUAL(t, "unix:/var/lib/ember/emberd.sock");
  } else {
    setenv("XDG_DATA_HOME", "/xdg", 1);
    free(t);
    t = ctl_default_target();
    CU_ASSERT_STRING_EQUAL(t, "unix:/xdg/ember/emberd.sock");
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/home/u", 1);
    free(t);
    t = ctl_default_target();
    CU_ASSERT_STRING_EQUAL(t, "unix:/home/u/.local/share/ember/emberd.sock");
  }
  free(t);

  if (saved_sock)
    setenv("EMBER_SOCKET", saved_sock, 1);
  if (saved_xdg)
    setenv("XDG_DATA_HOME", saved_xdg, 1);
  else
    unsetenv("XDG_DATA_HOME");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_sock);
  free(saved_xdg);
  free(saved_home);
}

static void test_json_names(void)
{
  char *n = ctl_pb_json_name("memory_mib");
  CU_ASSERT_STRING_EQUAL(n, "memoryMib");
  free(n);
  n = ctl_pb_json_name("last_standby_us");
  CU_ASSERT_STRING_EQUAL(n, "lastStandbyUs");
  free(n);
  n = ctl_pb_json_name("id");
  CU_ASSERT_STRING_EQUAL(n, "id");
  free(n);
}

/* Instance -> JSON -> Instance keeps every field; JSON follows the mapping. */
static void test_json_roundtrip(void)
{
  Ember__V1__Disk d = EMBER__V1__DISK__INIT;
  d.path = (char[]){"/d.img"};
  d.read_only = 1;
  Ember__V1__Disk *disks[] = {&d};
  Ember__V1__InstanceSpec s = EMBER__V1__INSTANCE_SPEC__INIT;
  s.hypervisor = (char[]){"qemu"};
  s.vcpus = 2;
  s.memory_mib = 5000000000ULL;
  s.n_disks = 1;
  s.disks = disks;
  Ember__V1__Instance in = EMBER__V1__INSTANCE__INIT;
  in.id = (char[]){"i-1"};
  in.name = (char[]){"web \"1\""};
  in.spec = &s;
  in.state = EMBER__V1__INSTANCE_STATE__INSTANCE_STATE_STANDBY;
  Google__Protobuf__Duration standby = GOOGLE__PROTOBUF__DURATION__INIT;
  standby.seconds = 1;
  standby.nanos = 500000000;
  in.last_standby_duration = &standby;
  Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  created.seconds = 1767323045; /* 2026-01-02T03:04:05Z */
  created.nanos = 123456000;
  in.create_time = &created;
  Ember__V1__Instance__LabelsEntry lab = EMBER__V1__INSTANCE__LABELS_ENTRY__INIT;
  lab.key = (char[]){"team"};
  lab.value = (char[]){"infra"};
  Ember__V1__Instance__LabelsEntry *labels[] = {&lab};
  in.labels = labels;
  in.n_labels = 1;
  in.has_snapshot = 1;

  cJSON *j = ctl_pb_to_json(&in.base);
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "state")->valuestring, "INSTANCE_STATE_STANDBY");
  /* Well-known types and maps in the proto3 JSON mapping's own forms. */
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "lastStandbyDuration")->valuestring, "1.500s");
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "createTime")->valuestring,
                         "2026-01-02T03:04:05.123456Z");
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "labels"), "team")->valuestring,
                         "infra");
  CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "hasSnapshot")));
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "lastSnapshotKind")->valuestring,
                         "SNAPSHOT_KIND_UNSPECIFIED");
  cJSON *js = cJSON_GetObjectItem(j, "spec");
  CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(js, "memoryMib")->valuestring, "5000000000");
  CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(js, "networkInterfaces")), 0);
  CU_ASSERT(cJSON_IsTrue(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(js, "disks"), 0), "readOnly")));

  ProtobufCMessage *back = NULL;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(ctl_pb_from_json(j, &ember__v1__instance__descriptor, &back, &err), 0);
  Ember__V1__Instance *b = (Ember__V1__Instance *)back;
  CU_ASSERT_STRING_EQUAL(b->name, "web \"1\"");
  CU_ASSERT_EQUAL(b->state, EMBER__V1__INSTANCE_STATE__INSTANCE_STATE_STANDBY);
  CU_ASSERT_EQUAL_FATAL(b->last_standby_duration != NULL, 1);
  CU_ASSERT_EQUAL(b->last_standby_duration->seconds, 1);
  CU_ASSERT_EQUAL(b->last_standby_duration->nanos, 500000000);
  CU_ASSERT_EQUAL_FATAL(b->create_time != NULL, 1);
  CU_ASSERT_EQUAL(b->create_time->seconds, 1767323045);
  CU_ASSERT_EQUAL(b->create_time->nanos, 123456000);
  CU_ASSERT_EQUAL_FATAL(b->n_labels, 1);
  CU_ASSERT_STRING_EQUAL(b->labels[0]->key, "team");
  CU_ASSERT_STRING_EQUAL(b->labels[0]->value, "infra");
  CU_ASSERT_EQUAL(b->spec->memory_mib, 5000000000ULL);
  CU_ASSERT_EQUAL(b->spec->n_disks, 1);
  CU_ASSERT_STRING_EQUAL(b->spec->disks[0]->path, "/d.img");
  /* Packed bytes are identical. */
  size_t l1 = protobuf_c_message_get_packed_size(&in.base);
  size_t l2 = protobuf_c_message_get_packed_size(back);
  CU_ASSERT_EQUAL(l1, l2);
  uint8_t *p1 = cmn_malloc(l1), *p2 = cmn_malloc(l2);
  protobuf_c_message_pack(&in.base, p1);
  protobuf_c_message_pack(back, p2);
  CU_ASSERT(memcmp(p1, p2, l1) == 0);
  free(p1);
  free(p2);
  protobuf_c_message_free_unpacked(back, NULL);
  cJSON_Delete(j);
}

static void test_json_input_errors(void)
{
  const char *bad[] = {
      "{\"vcpu\": 1}",   /* unknown field */
      "{\"vcpus\": -1}", /* out of range */
      "{\"vcpus\": 1.5}",
      "{\"memoryMib\": \"lots\"}",
      "{\"disks\": {\"path\": \"x\"}}", /* not an array */
      "{\"disks\": [{\"path\": 3}]}",
      "{\"hypervisor\": true}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cJSON *j = cJSON_Parse(bad[i]);
    ProtobufCMessage *m = NULL;
    cmn_error err = {0};
    CU_ASSERT_EQUAL(ctl_pb_from_json(j, &ember__v1__instance_spec__descriptor, &m, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(m);
    cJSON_Delete(j);
  }
  /* snake_case names, numeric strings and enum numbers are accepted. */
  cJSON *j = cJSON_Parse("{\"memory_mib\": \"64\", \"vcpus\": \"3\", \"kernel_path\": null}");
  ProtobufCMessage *m = NULL;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(ctl_pb_from_json(j, &ember__v1__instance_spec__descriptor, &m, &err), 0);
  CU_ASSERT_EQUAL(((Ember__V1__InstanceSpec *)m)->memory_mib, 64);
  CU_ASSERT_EQUAL(((Ember__V1__InstanceSpec *)m)->vcpus, 3);
  protobuf_c_message_free_unpacked(m, NULL);
  cJSON_Delete(j);
}

static void test_spec_build(void)
{
  char dir[] = "/tmp/ctl_test.XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char *file = cmn_asprintf("%s/vm.json", dir);
  FILE *f = fopen(file, "w");
  fputs("{\"name\": \"from-file\", \"spec\": {\"kernel_path\": \"vmlinux\", "
        "\"memoryMib\": 128, \"disks\": [{\"path\": \"root.img\", \"readOnly\": true}]}}",
        f);
  fclose(f);

  ctl_opts o;
  cmn_error err;
  const char *w[] = {"create", "--spec", file, "--vcpus", "4", "--tap", "tap7", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w), 0);
  Ember__V1__CreateInstanceRequest *req = NULL;
  CU_ASSERT_EQUAL_FATAL(ctl_spec_build(&o, NULL, &req, &err), 0);
  CU_ASSERT_STRING_EQUAL(req->name, "from-file");
  CU_ASSERT_EQUAL(req->spec->vcpus, 4);
  CU_ASSERT_EQUAL(req->spec->memory_mib, 128);
  CU_ASSERT_STRING_EQUAL(req->spec->hypervisor, CTL_DEFAULT_HYPERVISOR);
  char *kp = cmn_asprintf("%s/vmlinux", dir), *dp = cmn_asprintf("%s/root.img", dir);
  CU_ASSERT_STRING_EQUAL(req->spec->kernel_path, kp);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_disks, 1);
  CU_ASSERT_STRING_EQUAL(req->spec->disks[0]->path, dp);
  CU_ASSERT(req->spec->disks[0]->read_only);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 1);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->tap_device, "tap7");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->mac_address, "");
  protobuf_c_message_free_unpacked(&req->base, NULL);
  ctl_opts_free(&o);
  free(kp);
  free(dp);

  /* The positional name overrides; a missing name is an error. */
  const char *w2[] = {"create", "cli-name", "--spec", file, NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w2), 0);
  CU_ASSERT_EQUAL(ctl_spec_build(&o, "cli-name", &req, &err), 0);
  CU_ASSERT_STRING_EQUAL(req->name, "cli-name");
  protobuf_c_message_free_unpacked(&req->base, NULL);
  ctl_opts_free(&o);

  const char *w3[] = {"create", "--kernel", "/k", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w3), 0);
  CU_ASSERT_EQUAL(ctl_spec_build(&o, NULL, &req, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  ctl_opts_free(&o);

  const char *w4[] = {"create", "x", "--spec", "/nonexistent/spec.json", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, w4), 0);
  CU_ASSERT_EQUAL(ctl_spec_build(&o, "x", &req, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  ctl_opts_free(&o);

  unlink(file);
  rmdir(dir);
  free(file);
}

static void test_disk_tap(void)
{
  cmn_error err = {0};
  Ember__V1__Disk *d = NULL;
  CU_ASSERT_EQUAL(ctl_spec_parse_disk("/a:b.img", NULL, &d, &err), 0);
  CU_ASSERT_STRING_EQUAL(d->path, "/a:b.img");
  CU_ASSERT(!d->read_only);
  protobuf_c_message_free_unpacked(&d->base, NULL);
  CU_ASSERT_EQUAL(ctl_spec_parse_disk("/a.img:ro", NULL, &d, &err), 0);
  CU_ASSERT(d->read_only);
  protobuf_c_message_free_unpacked(&d->base, NULL);
  CU_ASSERT_EQUAL(ctl_spec_parse_disk(":ro", NULL, &d, &err), -1);

  Ember__V1__NetworkInterface *n = NULL;
  CU_ASSERT_EQUAL(ctl_spec_parse_tap("tap0,02:00:00:00:00:01", &n, &err), 0);
  CU_ASSERT_STRING_EQUAL(n->tap_device, "tap0");
  CU_ASSERT_STRING_EQUAL(n->mac_address, "02:00:00:00:00:01");
  protobuf_c_message_free_unpacked(&n->base, NULL);
  CU_ASSERT_EQUAL(ctl_spec_parse_tap(",x", &n, &err), -1);
  CU_ASSERT_EQUAL(ctl_spec_parse_tap("tap0,", &n, &err), -1);
}

static void test_publish_parse(void)
{
  ctl_publish p;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(ctl_parse_publish("8080:80", &p, &err), 0);
  CU_ASSERT_EQUAL(p.host_port, 8080);
  CU_ASSERT_EQUAL(p.guest_port, 80);
  CU_ASSERT(!p.udp);
  CU_ASSERT_STRING_EQUAL(p.host_address, "");
  CU_ASSERT_EQUAL(ctl_parse_publish("127.0.0.1:5353:53/udp", &p, &err), 0);
  CU_ASSERT_STRING_EQUAL(p.host_address, "127.0.0.1");
  CU_ASSERT_EQUAL(p.host_port, 5353);
  CU_ASSERT_EQUAL(p.guest_port, 53);
  CU_ASSERT(p.udp);
  CU_ASSERT_EQUAL(ctl_parse_publish("1:65535/TCP", &p, &err), 0);
  CU_ASSERT_EQUAL(p.host_port, 1);
  CU_ASSERT_EQUAL(p.guest_port, 65535);
  CU_ASSERT(!p.udp);

  /* Each bad form is a usage error whose message names --publish and the
   * part at fault. */
  static const struct {
    const char *arg, *says;
  } bad[] = {
      {"0:80", "host port '0'"},
      {"8080:0", "guest port '0'"},
      {"65536:80", "host port '65536'"},
      {"8080:99999", "guest port '99999'"},
      {"8080:80/sctp", "unknown protocol 'sctp'"},
      {"8080:80/", "unknown protocol ''"},
      {"80", "HOSTPORT:GUESTPORT"},
      {"", "HOSTPORT:GUESTPORT"},
      {":80", "host port ''"},
      {"8080:", "guest port ''"},
      {"-1:80", "host port '-1'"},
      {"8000-8010:80", "host port '8000-8010'"},
      {" 80:80", "host port ' 80'"},
      {"1.2.3:80:80", "host address '1.2.3'"},
      {"::80", "host port ''"},
      {":8080:80", "host address ''"},
      {"localhost:8080:80", "host address 'localhost'"},
      {"[::1]:8080:80", "host address '[::1]'"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&err, 0, sizeof(err));
    CU_ASSERT_EQUAL(ctl_parse_publish(bad[i].arg, &p, &err), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--publish"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    if (strstr(err.msg, bad[i].says) == NULL)
      fprintf(stderr, "'%s': %s\n", bad[i].arg, err.msg);
  }
}

static void test_mac_valid(void)
{
  CU_ASSERT(ctl_mac_valid("02:00:00:00:00:01"));
  CU_ASSERT(ctl_mac_valid("aa:BB:cc:dd:ee:ff"));
  CU_ASSERT(!ctl_mac_valid("01:00:5e:00:00:01")); /* multicast */
  CU_ASSERT(!ctl_mac_valid("ff:ff:ff:ff:ff:ff")); /* broadcast */
  CU_ASSERT(!ctl_mac_valid("02:00:00:00:00"));
  CU_ASSERT(!ctl_mac_valid("02-00-00-00-00-01"));
  CU_ASSERT(!ctl_mac_valid("02:00:00:00:00:0g"));
  CU_ASSERT(!ctl_mac_valid("02:00:00:00:00:011"));
  CU_ASSERT(!ctl_mac_valid(""));
}

/* The command line of the network flags, and what it is refused for. */
static void test_network_args(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w[] = {"create",  "vm",        "--network", "default",
                     "--ip",    "10.77.0.9", "--mac",     "02:00:00:00:00:09",
                     "-p",      "8080:80",   "--publish", "127.0.0.1:53:53/udp",
                     "--netns", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w), 0);
  CU_ASSERT_STRING_EQUAL(o.network, "default");
  CU_ASSERT_PTR_NULL(o.network_mac);
  CU_ASSERT_STRING_EQUAL(o.ip, "10.77.0.9");
  CU_ASSERT_STRING_EQUAL(o.mac, "02:00:00:00:00:09");
  CU_ASSERT_EQUAL_FATAL(o.n_publish, 2);
  CU_ASSERT_EQUAL(o.publish[0].host_port, 8080);
  CU_ASSERT(o.publish[1].udp);
  CU_ASSERT(o.netns);
  ctl_opts_free(&o);

  /* --network NAME,MAC like --tap NAME,MAC; the same MAC again is fine. */
  const char *w2[] = {
      "create", "vm", "--network", "lab,02:AA:00:00:00:01", "--mac", "02:aa:00:00:00:01", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w2), 0);
  CU_ASSERT_STRING_EQUAL(o.network, "lab");
  CU_ASSERT_STRING_EQUAL(o.network_mac, "02:AA:00:00:00:01");
  ctl_opts_free(&o);

  static const struct {
    const char *words[8];
    const char *says;
  } bad[] = {
      {{"create", "vm", "--network", "a", "--network", "b", NULL}, "--network given twice"},
      {{"create", "vm", "--network", "", NULL}, "empty network name"},
      {{"create", "vm", "--network", ",02:00:00:00:00:01", NULL}, "empty network name"},
      {{"create", "vm", "--network", "a,xx", NULL}, "bad --network 'a,xx'"},
      {{"create", "vm", "--network", "a,02:00:00:00:00:01", "--mac", "02:00:00:00:00:02", NULL},
       "two MACs"},
      {{"create", "vm", "--network", "a", "--ip", "10.77.0.9/16", NULL}, "bad --ip"},
      {{"create", "vm", "--network", "a", "--ip", "10.77.0", NULL}, "bad --ip"},
      {{"create", "vm", "--network", "a", "--ip", "fd00::1", NULL}, "bad --ip"},
      {{"create", "vm", "--network", "a", "--mac", "01:00:00:00:00:01", NULL}, "bad --mac"},
      {{"create", "vm", "--network", "a", "-p", "0:80", NULL}, "bad --publish '0:80'"},
      {{"create", "vm", "-p", "80:80", "-p", "80:8080", NULL}, "both take host port 80/tcp"},
      {{"create", "vm", "-p", "80:80", "-p", "10.0.0.1:80:8080", NULL}, "both take host port"},
      {{"get", "vm", "--network", "a", NULL}, "--network is not an option of 'get'"},
      {{"list", "-p", "80:80", NULL}, "--publish is not an option of 'list'"},
      {{"get", "vm", "--netns", NULL}, "--netns is not an option of 'get'"},
      {{"networks", "extra", NULL}, "usage: emberctl networks"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i].words), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    if (strstr(err.msg, bad[i].says) == NULL)
      fprintf(stderr, "case %zu: %s\n", i, err.msg);
    ctl_opts_free(&o);
  }
  /* One port per protocol: tcp and udp of one port may both be forwarded, and
   * two addresses of the host may each forward the port. */
  const char *ok[] = {
      "create",         "vm", "-p", "53:53", "-p", "53:53/udp", "-p", "10.0.0.1:80:80", "-p",
      "10.0.0.2:80:80", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, ok), 0);
  CU_ASSERT_EQUAL(o.n_publish, 4);
  ctl_opts_free(&o);
  const char *nets[] = {"--json", "networks", NULL};
  CU_ASSERT_EQUAL(parse(&o, &err, nets), 0);
  CU_ASSERT_STRING_EQUAL(o.command, "networks");
  ctl_opts_free(&o);
}

/* Builds the request of `create WORDS...`; NULL (err set) when refused. */
static Ember__V1__CreateInstanceRequest *build(const char *const *words, cmn_error *err)
{
  ctl_opts o;
  Ember__V1__CreateInstanceRequest *req = NULL;
  CU_ASSERT_EQUAL_FATAL(parse(&o, err, words), 0);
  if (ctl_spec_build(&o, o.n_args > 0 ? o.args[0] : NULL, &req, err) < 0)
    req = NULL;
  ctl_opts_free(&o);
  return req;
}

static void test_network_request(void)
{
  cmn_error err;
  /* Every flag lands in the request; the managed interface comes first. */
  const char *w[] = {"create",  "vm",        "--kernel",  "/k",
                     "--tap",   "tap9",      "--network", "default",
                     "--ip",    "10.77.0.9", "--mac",     "02:00:00:00:00:09",
                     "-p",      "8080:80",   "--publish", "127.0.0.1:5353:53/UDP",
                     "--netns", NULL};
  ctl_opts o;
  Ember__V1__CreateInstanceRequest *req = NULL;
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w), 0);
  CU_ASSERT_EQUAL_FATAL(ctl_spec_build(&o, "vm", &req, &err), 0);
  ctl_opts_free(&o);
  Ember__V1__InstanceSpec *s = req->spec;
  CU_ASSERT(s->network_namespace);
  CU_ASSERT_EQUAL_FATAL(s->n_network_interfaces, 2);
  Ember__V1__NetworkInterface *ni = s->network_interfaces[0];
  CU_ASSERT_STRING_EQUAL(ni->network, "default");
  CU_ASSERT_STRING_EQUAL(ni->tap_device, "");
  CU_ASSERT_STRING_EQUAL(ni->ipv4_address, "10.77.0.9");
  CU_ASSERT_STRING_EQUAL(ni->mac_address, "02:00:00:00:00:09");
  CU_ASSERT_EQUAL_FATAL(ni->n_port_forwards, 2);
  CU_ASSERT_EQUAL(ni->port_forwards[0]->protocol, EMBER__V1__PROTOCOL__PROTOCOL_TCP);
  CU_ASSERT_EQUAL(ni->port_forwards[0]->host_port, 8080);
  CU_ASSERT_EQUAL(ni->port_forwards[0]->guest_port, 80);
  CU_ASSERT_STRING_EQUAL(ni->port_forwards[0]->host_address, "");
  CU_ASSERT_EQUAL(ni->port_forwards[1]->protocol, EMBER__V1__PROTOCOL__PROTOCOL_UDP);
  CU_ASSERT_EQUAL(ni->port_forwards[1]->host_port, 5353);
  CU_ASSERT_EQUAL(ni->port_forwards[1]->guest_port, 53);
  CU_ASSERT_STRING_EQUAL(ni->port_forwards[1]->host_address, "127.0.0.1");
  CU_ASSERT_STRING_EQUAL(s->network_interfaces[1]->tap_device, "tap9");
  CU_ASSERT_STRING_EQUAL(s->network_interfaces[1]->network, "");
  /* It packs and unpacks as the proto says. */
  size_t len = protobuf_c_message_get_packed_size(&req->base);
  uint8_t *buf = cmn_malloc(len);
  protobuf_c_message_pack(&req->base, buf);
  Ember__V1__CreateInstanceRequest *back =
      ember__v1__create_instance_request__unpack(NULL, len, buf);
  CU_ASSERT_PTR_NOT_NULL_FATAL(back);
  CU_ASSERT_STRING_EQUAL(back->spec->network_interfaces[0]->port_forwards[1]->host_address,
                         "127.0.0.1");
  CU_ASSERT(back->spec->network_namespace);
  ember__v1__create_instance_request__free_unpacked(back, NULL);
  free(buf);
  protobuf_c_message_free_unpacked(&req->base, NULL);

  /* --network NAME,MAC gives the MAC; nothing else set stays empty. */
  const char *w2[] = {"create", "vm", "--kernel", "/k", "--network", "lab,02:00:00:00:00:0a", NULL};
  req = build(w2, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(req);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 1);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->network, "lab");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->mac_address, "02:00:00:00:00:0a");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->ipv4_address, "");
  CU_ASSERT_EQUAL(req->spec->network_interfaces[0]->n_port_forwards, 0);
  CU_ASSERT(!req->spec->network_namespace);
  protobuf_c_message_free_unpacked(&req->base, NULL);

  /* The flags that need --network name it, and say what to do. */
  static const struct {
    const char *words[8];
    const char *says;
  } bad[] = {
      {{"create", "vm", "-p", "80:80", NULL}, "--publish needs --network NAME"},
      {{"create", "vm", "--ip", "10.0.0.2", NULL}, "--ip needs --network NAME"},
      {{"create", "vm", "--mac", "02:00:00:00:00:01", NULL}, "--tap NAME,MAC"},
      {{"create", "vm", "--netns", NULL}, "--netns needs --network NAME"},
      {{"create", "vm", "--tap", "t0", "-p", "80:80", NULL}, "--publish needs --network"},
      {{"create", "vm", "--tap", "t0,0x", NULL}, "--tap 't0,0x'"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_PTR_NULL(build(bad[i].words, &err));
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    if (strstr(err.msg, bad[i].says) == NULL)
      fprintf(stderr, "case %zu: %s\n", i, err.msg);
  }
}

/* --spec FILE with a managed interface: the flags change it field by field,
 * --publish replaces its forwards, --tap replaces only the TAP interfaces. */
static void test_network_spec_merge(void)
{
  char dir[] = "/tmp/ctl_test.XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char *file = cmn_asprintf("%s/vm.json", dir);
  FILE *f = fopen(file, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("{\"name\": \"n\", \"spec\": {\"kernelPath\": \"/k\", \"networkNamespace\": true,"
        " \"networkInterfaces\": [{\"tapDevice\": \"old0\"},"
        " {\"network\": \"default\", \"ipv4Address\": \"10.77.0.5\","
        "  \"portForwards\": [{\"protocol\": \"PROTOCOL_UDP\", \"hostPort\": 53,"
        " \"guestPort\": 53}]}]}}",
        f);
  fclose(f);
  cmn_error err;

  /* No network flag: the file's interfaces as they are. */
  const char *w0[] = {"create", "--spec", file, NULL};
  Ember__V1__CreateInstanceRequest *req = build(w0, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(req);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 2);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->tap_device, "old0");
  CU_ASSERT_EQUAL_FATAL(req->spec->network_interfaces[1]->n_port_forwards, 1);
  CU_ASSERT_EQUAL(req->spec->network_interfaces[1]->port_forwards[0]->protocol,
                  EMBER__V1__PROTOCOL__PROTOCOL_UDP);
  CU_ASSERT(req->spec->network_namespace);
  protobuf_c_message_free_unpacked(&req->base, NULL);

  /* --ip and --publish without --network change the file's managed one. */
  const char *w1[] = {"create", "--spec", file, "--ip", "10.77.0.6", "-p", "8080:80", NULL};
  req = build(w1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(req);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 2);
  Ember__V1__NetworkInterface *ni = req->spec->network_interfaces[1];
  CU_ASSERT_STRING_EQUAL(ni->network, "default");
  CU_ASSERT_STRING_EQUAL(ni->ipv4_address, "10.77.0.6");
  CU_ASSERT_EQUAL_FATAL(ni->n_port_forwards, 1);
  CU_ASSERT_EQUAL(ni->port_forwards[0]->protocol, EMBER__V1__PROTOCOL__PROTOCOL_TCP);
  CU_ASSERT_EQUAL(ni->port_forwards[0]->host_port, 8080);
  protobuf_c_message_free_unpacked(&req->base, NULL);

  /* --network renames it and keeps its other fields; --tap replaces old0. */
  const char *w2[] = {"create",    "--spec", file,
                      "--network", "lab",    "--tap",
                      "new0",      "--tap",  "new1,02:00:00:00:00:01",
                      NULL};
  req = build(w2, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(req);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 3);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->network, "lab");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->ipv4_address, "10.77.0.5");
  CU_ASSERT_EQUAL(req->spec->network_interfaces[0]->n_port_forwards, 1);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[1]->tap_device, "new0");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[2]->tap_device, "new1");
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[2]->mac_address, "02:00:00:00:00:01");
  protobuf_c_message_free_unpacked(&req->base, NULL);

  /* A file without a managed interface: --publish is refused, naming it. */
  f = fopen(file, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("{\"name\": \"n\", \"spec\": {\"networkInterfaces\": [{\"tapDevice\": \"t\"}]}}", f);
  fclose(f);
  const char *w3[] = {"create", "--spec", file, "-p", "80:80", NULL};
  CU_ASSERT_PTR_NULL(build(w3, &err));
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--publish needs --network"));
  /* ... and --network adds one, first, keeping the file's TAP. */
  const char *w4[] = {"create", "--spec", file, "--network", "default", "-p", "80:80", NULL};
  req = build(w4, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(req);
  CU_ASSERT_EQUAL_FATAL(req->spec->n_network_interfaces, 2);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[0]->network, "default");
  CU_ASSERT_EQUAL(req->spec->network_interfaces[0]->n_port_forwards, 1);
  CU_ASSERT_STRING_EQUAL(req->spec->network_interfaces[1]->tap_device, "t");
  protobuf_c_message_free_unpacked(&req->base, NULL);

  unlink(file);
  rmdir(dir);
  free(file);
}

/* Runs fn(f, arg) into a string. */
static char *capture(void (*fn)(FILE *, const void *), const void *arg)
{
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  fn(m, arg);
  fclose(m);
  return text;
}

static void print_instance(FILE *f, const void *in) { ctl_print_instance(f, in); }

static void print_two_networks(FILE *f, const void *v)
{
  ctl_print_networks(f, (Ember__V1__Network *const *)v, 2);
}

static void test_network_output(void)
{
  char buf[80];
  Ember__V1__PortForward tcp = EMBER__V1__PORT_FORWARD__INIT;
  tcp.protocol = EMBER__V1__PROTOCOL__PROTOCOL_TCP;
  tcp.host_port = 8080;
  tcp.guest_port = 80;
  Ember__V1__PortForward udp = EMBER__V1__PORT_FORWARD__INIT;
  udp.protocol = EMBER__V1__PROTOCOL__PROTOCOL_UDP;
  udp.host_port = 5353;
  udp.guest_port = 53;
  udp.host_address = (char[]){"127.0.0.1"};
  ctl_fmt_forward(buf, sizeof(buf), &tcp);
  CU_ASSERT_STRING_EQUAL(buf, "8080:80/tcp");
  ctl_fmt_forward(buf, sizeof(buf), &udp);
  CU_ASSERT_STRING_EQUAL(buf, "127.0.0.1:5353:53/udp");
  /* What ctl_fmt_forward prints, --publish reads back. */
  ctl_publish p;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(ctl_parse_publish(buf, &p, &err), 0);
  CU_ASSERT(p.udp && p.host_port == 5353 && p.guest_port == 53);

  Ember__V1__PortForward *fwds[] = {&tcp, &udp};
  Ember__V1__NetworkInterface ni = EMBER__V1__NETWORK_INTERFACE__INIT;
  ni.network = (char[]){"default"};
  ni.ipv4_address = (char[]){"10.77.0.9"};
  ni.port_forwards = fwds;
  ni.n_port_forwards = 2;
  Ember__V1__NetworkInterface tap = EMBER__V1__NETWORK_INTERFACE__INIT;
  tap.tap_device = (char[]){"tap0"};
  tap.mac_address = (char[]){"02:00:00:00:00:01"};
  Ember__V1__NetworkInterface *nics[] = {&ni, &tap};
  Ember__V1__InstanceSpec s = EMBER__V1__INSTANCE_SPEC__INIT;
  s.hypervisor = (char[]){"qemu"};
  s.network_interfaces = nics;
  s.n_network_interfaces = 2;
  s.network_namespace = 1;
  Ember__V1__NetworkStatus ns = EMBER__V1__NETWORK_STATUS__INIT;
  ns.network = (char[]){"default"};
  ns.ipv4_address = (char[]){"10.77.0.9/16"};
  ns.gateway = (char[]){"10.77.0.1"};
  ns.mac_address = (char[]){"02:e0:00:00:00:09"};
  ns.tap_device = (char[]){"em-tap9"};
  ns.namespace_ = (char[]){"ember-vm"};
  ns.host_address = (char[]){"10.200.0.2"};
  ns.port_forwards = fwds;
  ns.n_port_forwards = 2;
  Ember__V1__Instance in = EMBER__V1__INSTANCE__INIT;
  in.name = (char[]){"vm"};
  in.id = (char[]){"i-1"};
  in.spec = &s;
  in.network = &ns;
  char *text = capture(print_instance, &in);
  static const char *const want[] = {
      "Net 0         network default ip 10.77.0.9 publish 8080:80/tcp,127.0.0.1:5353:53/udp\n",
      "Net 1         tap tap0 mac 02:00:00:00:00:01\n",
      "Net namespace: yes\n",
      "Network:       default\n",
      "Address:       10.77.0.9/16\n",
      "Gateway:       10.77.0.1\n",
      "MAC:           02:e0:00:00:00:09\n",
      "TAP:           em-tap9\n",
      "Namespace:     ember-vm\n",
      "Host address:  10.200.0.2\n",
      "Forward:       8080:80/tcp\nForward:       127.0.0.1:5353:53/udp\n",
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    CU_ASSERT_PTR_NOT_NULL(strstr(text, want[i]));
    if (strstr(text, want[i]) == NULL)
      fprintf(stderr, "missing %s in:\n%s", want[i], text);
  }
  free(text);
  /* No network: no network lines. */
  in.network = NULL;
  s.network_namespace = 0;
  s.n_network_interfaces = 0;
  text = capture(print_instance, &in);
  CU_ASSERT_PTR_NULL(strstr(text, "Net"));
  CU_ASSERT_PTR_NULL(strstr(text, "Address"));
  free(text);

  Ember__V1__Network a = EMBER__V1__NETWORK__INIT;
  a.name = (char[]){"default"};
  a.subnet = (char[]){"10.77.0.0/16"};
  a.gateway = (char[]){"10.77.0.1"};
  a.bridge = (char[]){"ember0"};
  a.nat = 1;
  a.addresses_used = 3;
  a.addresses_total = 65533;
  Ember__V1__Network b = EMBER__V1__NETWORK__INIT;
  b.name = (char[]){"lab"};
  b.subnet = (char[]){"192.168.50.0/24"};
  b.gateway = (char[]){"192.168.50.1"};
  b.bridge = (char[]){"ember-lab"};
  b.isolated = 1;
  b.addresses_total = 253;
  Ember__V1__Network *nets[] = {&a, &b};
  text = capture(print_two_networks, nets);
  CU_ASSERT_STRING_EQUAL(text, "NAME     SUBNET           GATEWAY       BRIDGE     NAT  ISOLATED  "
                               "USED/TOTAL\n"
                               "default  10.77.0.0/16     10.77.0.1     ember0     yes  no        "
                               "3/65533\n"
                               "lab      192.168.50.0/24  192.168.50.1  ember-lab  no   yes       "
                               "0/253\n");
  free(text);
}

static void test_output(void)
{
  char buf[64];
  ctl_fmt_duration(buf, sizeof(buf), 0);
  CU_ASSERT_STRING_EQUAL(buf, "-");
  ctl_fmt_duration(buf, sizeof(buf), 850);
  CU_ASSERT_STRING_EQUAL(buf, "850us");
  ctl_fmt_duration(buf, sizeof(buf), 160000);
  CU_ASSERT_STRING_EQUAL(buf, "160.0ms");
  ctl_fmt_duration(buf, sizeof(buf), 1500000);
  CU_ASSERT_STRING_EQUAL(buf, "1.50s");
  ctl_fmt_duration(buf, sizeof(buf), 125000000);
  CU_ASSERT_STRING_EQUAL(buf, "2m05s");
  ctl_fmt_mib(buf, sizeof(buf), 2048);
  CU_ASSERT_STRING_EQUAL(buf, "2 GiB");
  ctl_fmt_mib(buf, sizeof(buf), 300);
  CU_ASSERT_STRING_EQUAL(buf, "300 MiB");
  CU_ASSERT_STRING_EQUAL(ctl_state_name(2).s, "running");
  CU_ASSERT_STRING_EQUAL(ctl_state_name(0).s, "-");
  CU_ASSERT_STRING_EQUAL(ctl_state_name(99).s, "?");
  CU_ASSERT_STRING_EQUAL(ctl_operation_name(6).s, "standby");
  CU_ASSERT_STRING_EQUAL(ctl_operation_name(9).s, "observed");
  CU_ASSERT_STRING_EQUAL(ctl_operation_name(0).s, "-");
  CU_ASSERT_STRING_EQUAL(ctl_operation_name(-1).s, "?");
  CU_ASSERT_EQUAL(ctl_state_parse("Standby"), 4);
  CU_ASSERT_EQUAL(ctl_state_parse("INSTANCE_STATE_PAUSED"), 3);
  CU_ASSERT_EQUAL(ctl_state_parse("sleeping"), -1);

  /* Columns line up: every row has its second column at the same offset. */
  static const char *const hdr[] = {"A", "LONGER", "C"};
  ctl_table *t = ctl_table_new(3, hdr);
  const char *r1[] = {"long-value", "x", "y"};
  ctl_table_add(t, r1);
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  ctl_table_print(t, m);
  fclose(m);
  ctl_table_free(t);
  CU_ASSERT_STRING_EQUAL(text, "A           LONGER  C\nlong-value  x       y\n");
  free(text);
}

/* exec: its own options after the command word, NAME, then the command. */
static void test_exec_args(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w1[] = {"--timeout", "5s",   "exec", "-it",     "-e",        "A=b", "--env=C=d",
                      "-w",        "/tmp", "-u",   "guest",   "--timeout", "2m",  "vm1",
                      "--",        "sh",   "-c",   "echo -t", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w1), 0);
  CU_ASSERT_STRING_EQUAL(o.command, "exec");
  CU_ASSERT_EQUAL(o.timeout_ms, 5000); /* before exec: the call's deadline */
  CU_ASSERT_EQUAL(o.exec_timeout_ms, 120000);
  CU_ASSERT(o.exec_interactive && o.exec_tty);
  CU_ASSERT_EQUAL(o.n_env, 2);
  CU_ASSERT_STRING_EQUAL(o.env[1], "C=d");
  CU_ASSERT_STRING_EQUAL(o.workdir, "/tmp");
  CU_ASSERT_STRING_EQUAL(o.exec_user, "guest");
  CU_ASSERT_EQUAL(o.n_args, 1);
  CU_ASSERT_STRING_EQUAL(o.args[0], "vm1");
  CU_ASSERT_EQUAL_FATAL(o.n_exec_cmd, 3);
  CU_ASSERT_STRING_EQUAL(o.exec_cmd[0], "sh");
  CU_ASSERT_STRING_EQUAL(o.exec_cmd[2], "echo -t");
  ctl_opts_free(&o);
  /* no "--": the command starts after NAME; its options stay its own */
  const char *w2[] = {"exec", "vm1", "ls", "-l", "-t", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w2), 0);
  CU_ASSERT(!o.exec_tty && !o.exec_interactive);
  CU_ASSERT_EQUAL(o.exec_timeout_ms, -1);
  CU_ASSERT_EQUAL(o.n_exec_cmd, 3);
  ctl_opts_free(&o);
  const char *bad[][6] = {
      {"exec", "vm1", NULL},                  /* no command */
      {"exec", NULL},                         /* no NAME */
      {"exec", "-x", "vm1", "ls", NULL},      /* unknown option */
      {"exec", "-e", "novalue", "vm1", NULL}, /* not KEY=VALUE */
      {"exec", "-w", "rel", "vm1", "ls"},     /* relative workdir */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i]), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    ctl_opts_free(&o);
  }
}

static void test_cp_remote(void)
{
  char *name = NULL;
  const char *path = NULL;
  CU_ASSERT_TRUE(ctl_cp_remote("web:/etc/x", &name, &path));
  CU_ASSERT_STRING_EQUAL(name, "web");
  CU_ASSERT_STRING_EQUAL(path, "/etc/x");
  free(name);
  CU_ASSERT_FALSE(ctl_cp_remote("/abs/a:b", &name, &path));
  CU_ASSERT_FALSE(ctl_cp_remote("./a:b", &name, &path));
  CU_ASSERT_FALSE(ctl_cp_remote("dir/a:b", &name, &path));
  CU_ASSERT_FALSE(ctl_cp_remote(":x", &name, &path));
  CU_ASSERT_FALSE(ctl_cp_remote("plain", &name, &path));
}

/* fork: SOURCE NAME..., --snapshot SNAP NAME..., --prefix P --count N. */
static void test_fork_args(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w1[] = {"fork",   "web",     "c1",     "c2",      "--standby", "--label",
                      "team=a", "--label", "team=b", "--label", "tier=x=y",  NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w1), 0);
  CU_ASSERT_STRING_EQUAL(o.command, "fork");
  CU_ASSERT_STRING_EQUAL(o.fork_source, "web");
  CU_ASSERT_PTR_NULL(o.snapshot);
  CU_ASSERT_EQUAL_FATAL(o.n_fork_names, 2);
  CU_ASSERT_STRING_EQUAL(o.fork_names[0], "c1");
  CU_ASSERT_STRING_EQUAL(o.fork_names[1], "c2");
  CU_ASSERT(o.standby);
  Ember__V1__ForkInstanceRequest *r = ctl_fork_request(&o);
  ctl_opts_free(&o);
  CU_ASSERT_STRING_EQUAL(r->id, "web");
  CU_ASSERT_STRING_EQUAL(r->snapshot, "");
  CU_ASSERT_EQUAL_FATAL(r->n_names, 2);
  CU_ASSERT_STRING_EQUAL(r->names[1], "c2");
  CU_ASSERT_STRING_EQUAL(r->name_prefix, "");
  CU_ASSERT_EQUAL(r->count, 0);
  CU_ASSERT(r->standby);
  /* A map: one entry per key, the last --label winning. */
  CU_ASSERT_EQUAL_FATAL(r->n_labels, 2);
  CU_ASSERT_STRING_EQUAL(r->labels[0]->key, "team");
  CU_ASSERT_STRING_EQUAL(r->labels[0]->value, "b");
  CU_ASSERT_STRING_EQUAL(r->labels[1]->key, "tier");
  CU_ASSERT_STRING_EQUAL(r->labels[1]->value, "x=y");
  /* It packs and unpacks as the proto says. */
  size_t len = protobuf_c_message_get_packed_size(&r->base);
  uint8_t *buf = cmn_malloc(len);
  protobuf_c_message_pack(&r->base, buf);
  Ember__V1__ForkInstanceRequest *back = ember__v1__fork_instance_request__unpack(NULL, len, buf);
  CU_ASSERT_PTR_NOT_NULL_FATAL(back);
  CU_ASSERT_STRING_EQUAL(back->id, "web");
  CU_ASSERT_EQUAL(back->n_names, 2);
  CU_ASSERT_EQUAL(back->n_labels, 2);
  CU_ASSERT(back->standby);
  ember__v1__fork_instance_request__free_unpacked(back, NULL);
  free(buf);
  protobuf_c_message_free_unpacked(&r->base, NULL);

  /* --snapshot: every word is a clone's name; options anywhere. */
  const char *w2[] = {"fork", "a", "--snapshot", "golden", "b", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w2), 0);
  CU_ASSERT_PTR_NULL(o.fork_source);
  CU_ASSERT_STRING_EQUAL(o.snapshot, "golden");
  CU_ASSERT_EQUAL_FATAL(o.n_fork_names, 2);
  CU_ASSERT_STRING_EQUAL(o.fork_names[0], "a");
  CU_ASSERT(!o.standby);
  r = ctl_fork_request(&o);
  ctl_opts_free(&o);
  CU_ASSERT_STRING_EQUAL(r->id, "");
  CU_ASSERT_STRING_EQUAL(r->snapshot, "golden");
  CU_ASSERT_EQUAL(r->n_names, 2);
  CU_ASSERT_EQUAL(r->n_labels, 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);

  /* --prefix and --count instead of the names. */
  const char *w3[] = {"fork", "web", "--prefix", "w", "--count", "3", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w3), 0);
  CU_ASSERT_STRING_EQUAL(o.fork_source, "web");
  CU_ASSERT_EQUAL(o.n_fork_names, 0);
  r = ctl_fork_request(&o);
  ctl_opts_free(&o);
  CU_ASSERT_STRING_EQUAL(r->name_prefix, "w");
  CU_ASSERT_EQUAL(r->count, 3);
  CU_ASSERT_EQUAL(r->n_names, 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  const char *w4[] = {"fork", "--snapshot", "s", "--prefix", "w", "--count", "2", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w4), 0);
  CU_ASSERT_PTR_NULL(o.fork_source);
  CU_ASSERT_EQUAL(o.count, 2);
  ctl_opts_free(&o);

  static const struct {
    const char *w[10];
    const char *says;
  } bad[] = {
      {{"fork", NULL}, "usage: emberctl fork SOURCE NAME..."},
      {{"fork", "web", NULL}, "give the clones' names after SOURCE"},
      {{"fork", "--snapshot", "s", NULL}, "give the clones' names after --snapshot SNAP"},
      {{"fork", "web", "--prefix", "w", NULL}, "--prefix P and --count N go together"},
      {{"fork", "web", "--count", "2", NULL}, "--prefix P and --count N go together"},
      {{"fork", "web", "c1", "--prefix", "w", "--count", "2", NULL}, "not both"},
      {{"fork", "web", "--prefix", "w", "--count", "0", NULL}, "bad --count '0'"},
      {{"fork", "web", "--prefix", "w", "--count", "4294967296", NULL}, "too large"},
      {{"fork", "web", "--prefix", "", "--count", "2", NULL}, "bad --prefix ''"},
      {{"fork", "--snapshot", "", "c1", NULL}, "bad --snapshot ''"},
      {{"fork", "web", "c1", "--label", "novalue", NULL}, "bad --label 'novalue'"},
      {{"fork", "web", "c1", "--start", NULL}, "--start is not an option of 'fork'"},
      {{"get", "web", "--standby", NULL}, "--standby is not an option of 'get'"},
      {{"create", "web", "--snapshot", "s", NULL}, "--snapshot is not an option of 'create'"},
      {{"watch", "--prefix", "p", NULL}, "--prefix is not an option of 'watch'"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i].w), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    if (strstr(err.msg, bad[i].says) == NULL)
      fprintf(stderr, "\n%s: got \"%s\", want \"%s\"\n", bad[i].w[1], err.msg, bad[i].says);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    ctl_opts_free(&o);
  }
}

/* snapshot INSTANCE NAME, snapshots, rmsnapshot SNAPSHOT. */
static void test_snapshot_args(void)
{
  ctl_opts o;
  cmn_error err;
  const char *w1[] = {"snapshot", "web", "golden", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w1), 0);
  CU_ASSERT_EQUAL(o.n_args, 2);
  CU_ASSERT_STRING_EQUAL(o.args[1], "golden");
  ctl_opts_free(&o);
  const char *w2[] = {"--json", "snapshots", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w2), 0);
  CU_ASSERT(o.json);
  ctl_opts_free(&o);
  const char *w3[] = {"rmsnapshot", "golden", NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&o, &err, w3), 0);
  CU_ASSERT_STRING_EQUAL(o.args[0], "golden");
  ctl_opts_free(&o);
  static const struct {
    const char *w[6];
    const char *says;
  } bad[] = {
      {{"snapshot", "web", NULL}, "usage: emberctl snapshot INSTANCE NAME"},
      {{"snapshot", "web", "a", "b", NULL}, "usage: emberctl snapshot INSTANCE NAME"},
      {{"snapshots", "x", NULL}, "usage: emberctl snapshots"},
      {{"rmsnapshot", NULL}, "usage: emberctl rmsnapshot SNAPSHOT"},
      {{"rmsnapshot", "a", "--allow-missing", NULL}, "--allow-missing is not an option"},
      {{"snapshot", "web", "a", "--standby", NULL}, "--standby is not an option of 'snapshot'"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(parse(&o, &err, bad[i].w), -1);
    CU_ASSERT_EQUAL(err.code, CTL_EXIT_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    ctl_opts_free(&o);
  }
}

static void test_snapshot_output(void)
{
  char buf[32];
  ctl_fmt_bytes(buf, sizeof(buf), 512);
  CU_ASSERT_STRING_EQUAL(buf, "512 B");
  ctl_fmt_bytes(buf, sizeof(buf), 1536);
  CU_ASSERT_STRING_EQUAL(buf, "1.5 KiB");
  ctl_fmt_bytes(buf, sizeof(buf), 20u << 20);
  CU_ASSERT_STRING_EQUAL(buf, "20.0 MiB");
  ctl_fmt_bytes(buf, sizeof(buf), 3ull << 30);
  CU_ASSERT_STRING_EQUAL(buf, "3.00 GiB");

  Ember__V1__Snapshot named = EMBER__V1__SNAPSHOT__INIT, hidden = EMBER__V1__SNAPSHOT__INIT;
  named.id = (char[]){"s-1"};
  named.name = (char[]){"golden"};
  named.source_instance_id = (char[]){"i-1"};
  named.source_instance_name = (char[]){"web"};
  named.size_bytes = 2048;
  char *clones[] = {(char[]){"i-2"}, (char[]){"i-3"}};
  named.clone_ids = clones;
  named.n_clone_ids = 2;
  hidden.id = (char[]){"s-2"};
  hidden.source_instance_id = (char[]){"i-9"};
  Ember__V1__Snapshot *v[] = {&hidden, &named};
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  ctl_print_snapshots(m, v, 2);
  fclose(m);
  /* Unnamed (a fork's): "-"; a source whose name is unknown: its id. */
  CU_ASSERT_STRING_EQUAL(text, "ID   NAME    SOURCE  SIZE     CLONES  CREATED\n"
                               "s-2  -       i-9     0 B      0       -\n"
                               "s-1  golden  web     2.0 KiB  2       -\n");
  free(text);
  m = open_memstream(&text, &len);
  ctl_print_snapshot(m, &named);
  fclose(m);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "Name:          golden\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "Source:        web (i-1)\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "Size:          2.0 KiB\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "Clone:         i-3\n"));
  free(text);
}

/* Every command agent/rpc_table.h names has a row in emberctl's table (and a
 * help text), so a new RPC's command cannot be left out. */
static void test_rpc_table_commands(void)
{
#define CTL_NAME(desc, svc, meth, handler, slow, op, mutates, ctl) ctl,
  static const char *const names[] = {EMBER_UNARY_RPCS(CTL_NAME)};
#undef CTL_NAME
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (names[i] == NULL)
      continue;
    const ctl_command *c = ctl_command_find(names[i]);
    if (c == NULL)
      fprintf(stderr, "\nno emberctl command %s\n", names[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT(c->summary[0] != '\0' && c->help[0] != '\0');
  }
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("ctl", NULL, NULL);
  CU_add_test(s, "args_basic", test_args_basic);
  CU_add_test(s, "args_errors", test_args_errors);
  CU_add_test(s, "args_console", test_args_console);
  CU_add_test(s, "durations", test_durations);
  CU_add_test(s, "default_target", test_default_target);
  CU_add_test(s, "json_names", test_json_names);
  CU_add_test(s, "json_roundtrip", test_json_roundtrip);
  CU_add_test(s, "json_input_errors", test_json_input_errors);
  CU_add_test(s, "spec_build", test_spec_build);
  CU_add_test(s, "disk_tap", test_disk_tap);
  CU_add_test(s, "output", test_output);
  CU_add_test(s, "publish_parse", test_publish_parse);
  CU_add_test(s, "mac_valid", test_mac_valid);
  CU_add_test(s, "network_args", test_network_args);
  CU_add_test(s, "network_request", test_network_request);
  CU_add_test(s, "network_spec_merge", test_network_spec_merge);
  CU_add_test(s, "network_output", test_network_output);
  CU_add_test(s, "exec_args", test_exec_args);
  CU_add_test(s, "cp_remote", test_cp_remote);
  CU_add_test(s, "fork_args", test_fork_args);
  CU_add_test(s, "snapshot_args", test_snapshot_args);
  CU_add_test(s, "snapshot_output", test_snapshot_output);
  CU_add_test(s, "rpc_table_commands", test_rpc_table_commands);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
