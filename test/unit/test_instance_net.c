/* test_instance_net.c: CUnit tests of agent/instance_net.c without touching
 * the host: the configuration, the allocations (addresses, MACs, veth pairs,
 * port forwards), the record JSON and what the API shows. Host objects are
 * tested by test/net (in namespaces of their own) and the integration tests. */
#include "agent/instance_net.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int cfg_from(const char *json, agent_net_config *c, cmn_error *err)
{
  agent_net_config_default(c);
  cJSON *root = cJSON_Parse(json);
  CU_ASSERT_PTR_NOT_NULL_FATAL(root);
  int rc = agent_net_config_from_json(c, root, err);
  cJSON_Delete(root);
  return rc;
}

static void test_config(void)
{
  agent_net_config c;
  cmn_error err = {0};
  /* the default */
  agent_net_config_default(&c);
  CU_ASSERT_EQUAL(agent_net_config_check(&c, &err), 0);
  CU_ASSERT_EQUAL(c.n_nets, 1);
  CU_ASSERT_STRING_EQUAL(c.nets[0].name, "default");
  CU_ASSERT_STRING_EQUAL(c.nets[0].bridge, "ember0");
  CU_ASSERT_TRUE(c.nets[0].nat);
  agent_net_config_free(&c);
  /* two networks, one isolated without NAT, with DNS and a gateway */
  CU_ASSERT_EQUAL(cfg_from("{\"networks\":[{\"name\":\"a\",\"bridge\":\"br-a\",\"subnet\":\"10.1."
                           "0.0/24\"},{\"name\":\"b\",\"bridge\":\"br-b\",\"subnet\":\"10.2.0.0/"
                           "24\",\"gateway\":\"10.2.0.254\",\"nat\":false,\"isolated\":true,"
                           "\"mtu\":1400,\"dns\":[\"10.2.0.254\"]}]}",
                           &c, &err),
                  0);
  CU_ASSERT_EQUAL(c.n_nets, 2);
  CU_ASSERT_EQUAL(c.nets[1].gateway, 0x0A0200FEu);
  CU_ASSERT_FALSE(c.nets[1].nat);
  CU_ASSERT_TRUE(c.nets[1].isolated);
  CU_ASSERT_EQUAL(c.nets[1].mtu, 1400);
  CU_ASSERT_EQUAL(c.nets[1].n_dns, 1);
  agent_net_config_free(&c);
  /* an empty list: no networks */
  CU_ASSERT_EQUAL(cfg_from("{\"networks\":[]}", &c, &err), 0);
  CU_ASSERT_EQUAL(c.n_nets, 0);
  agent_net_config_free(&c);
  /* refusals, each naming what is wrong */
  const char *bad[][2] = {
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/16\"},{\"name\":"
       "\"b\",\"bridge\":\"b2\",\"subnet\":\"10.1.2.0/24\"}]}",
       "overlaps"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/16\"},{\"name\":"
       "\"a\",\"bridge\":\"b2\",\"subnet\":\"10.2.0.0/16\"}]}",
       "used twice"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/16\"},{\"name\":"
       "\"b\",\"bridge\":\"b1\",\"subnet\":\"10.2.0.0/16\"}]}",
       "used twice"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.5/16\"}]}",
       "network address"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/16\",\"gateway\":"
       "\"10.9.0.1\"}]}",
       "gateway"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.78.0.0/24\"}]}",
       "netns_transit_subnet"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"emtx\",\"subnet\":\"10.1.0.0/16\"}]}",
       "bridge"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b;drop\",\"subnet\":\"10.1.0.0/16\"}]}",
       "bridge"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/16\",\"colour\":"
       "1}]}",
       "unknown key"},
      {"{\"networks\":[{\"name\":\"a\",\"bridge\":\"b1\",\"subnet\":\"10.1.0.0/4\"}]}", "prefix"},
      {"{\"networks\":{}}", "list"},
      {"{\"netns_transit_subnet\":\"x\"}", "netns_transit_subnet"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    CU_ASSERT_EQUAL(cfg_from(bad[i][0], &c, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    if (strstr(err.msg, bad[i][1]) == NULL)
      fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err.msg, bad[i][1]);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i][1]));
    agent_net_config_free(&c);
  }
}

static agent_net *small_net(void)
{
  agent_net_config c;
  cmn_error err = {0};
  /* a /29: hosts .1 to .6, the gateway .1: five addresses */
  CU_ASSERT_EQUAL_FATAL(cfg_from("{\"networks\":[{\"name\":\"small\",\"bridge\":\"br-s\","
                                 "\"subnet\":\"10.5.0.0/29\"}],\"netns_transit_subnet\":\"10.6."
                                 "0.0/30\"}",
                                 &c, &err),
                        0);
  agent_net *n = NULL;
  CU_ASSERT_EQUAL_FATAL(agent_net_new(&c, &n, &err), 0);
  agent_net_config_free(&c);
  return n;
}

static agent_net_spec spec(const char *network)
{
  agent_net_spec s = {0};
  s.network = cmn_strdup(network);
  return s;
}

static void test_alloc_addresses(void)
{
  agent_net *n = small_net();
  cmn_error err = {0};
  char ip[16];
  const char *ids[] = {"i-00000000000000a1", "i-00000000000000a2", "i-00000000000000a3",
                       "i-00000000000000a4", "i-00000000000000a5", "i-00000000000000a6"};
  for (int i = 0; i < 5; i++) {
    agent_net_spec s = spec("small");
    CU_ASSERT_EQUAL(agent_net_alloc(n, ids[i], &s, &err), 0);
    agent_net_format_ipv4(s.ipv4, ip);
    char want[16];
    snprintf(want, sizeof want, "10.5.0.%d", i + 2);
    CU_ASSERT_STRING_EQUAL(ip, want);
    CU_ASSERT_EQUAL(s.prefix, 29);
    CU_ASSERT_PTR_NOT_NULL(s.mac);
    CU_ASSERT_EQUAL(strncmp(s.mac, "02:", 3), 0);
    agent_net_spec_free(&s);
  }
  /* exhausted */
  agent_net_spec s = spec("small");
  CU_ASSERT_EQUAL(agent_net_alloc(n, ids[5], &s, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  agent_net_spec_free(&s);
  /* a release frees its address for the next one */
  agent_net_release(n, ids[2]);
  s = spec("small");
  memset(&err, 0, sizeof err);
  CU_ASSERT_EQUAL(agent_net_alloc(n, ids[5], &s, &err), 0);
  agent_net_format_ipv4(s.ipv4, ip);
  CU_ASSERT_STRING_EQUAL(ip, "10.5.0.4");
  agent_net_spec_free(&s);
  /* unknown network, a taken, an outside and the gateway address */
  agent_net_release(n, ids[5]);
  s = spec("nope");
  CU_ASSERT_EQUAL(agent_net_alloc(n, ids[5], &s, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  agent_net_spec_free(&s);
  const struct {
    const char *ip;
    int code;
  } given[] = {{"10.5.0.2", CMN_ALREADY_EXISTS},
               {"10.9.0.2", CMN_INVALID_ARGUMENT},
               {"10.5.0.1", CMN_INVALID_ARGUMENT},
               {"10.5.0.7", CMN_INVALID_ARGUMENT},
               {"10.5.0.4", CMN_OK}};
  for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
    s = spec("small");
    s.ipv4_given = true;
    CU_ASSERT_EQUAL(agent_net_parse_ipv4(given[i].ip, &s.ipv4), 0);
    memset(&err, 0, sizeof err);
    int rc = agent_net_alloc(n, ids[5], &s, &err);
    CU_ASSERT_EQUAL(rc, given[i].code == CMN_OK ? 0 : -1);
    CU_ASSERT_EQUAL(err.code, given[i].code);
    agent_net_spec_free(&s);
  }
  agent_net_free(n);
}

static void test_alloc_macs_forwards_veth(void)
{
  agent_net *n = small_net();
  cmn_error err = {0};
  /* the MAC is a function of the id */
  agent_net_spec a = spec("small"), b = spec("small");
  CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000001", &a, &err), 0);
  agent_net_release(n, "i-0000000000000001");
  CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000001", &b, &err), 0);
  CU_ASSERT_STRING_EQUAL(a.mac, b.mac);
  agent_net_spec_free(&a);
  /* a given MAC: taken, or not unicast */
  a = spec("small");
  a.mac = cmn_strdup(b.mac);
  a.mac_given = true;
  CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000002", &a, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  free(a.mac);
  a.mac = cmn_strdup("01:00:00:00:00:01");
  CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000002", &a, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  agent_net_spec_free(&a);
  agent_net_spec_free(&b);
  /* port forwards: sane, unique on the host */
  agent_port_forward f1[] = {{.proto = 1, .host_port = 8080, .guest_port = 80},
                             {.proto = 2, .host_port = 8080, .guest_port = 53}};
  a = spec("small");
  a.forwards = cmn_calloc(2, sizeof *a.forwards);
  memcpy(a.forwards, f1, sizeof f1);
  a.n_forwards = 2;
  CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000003", &a, &err), 0);
  agent_net_spec_free(&a);
  agent_port_forward clash[][1] = {
      {{.proto = 1, .host_port = 8080, .guest_port = 81}},
      {{.proto = 2, .host_port = 8080, .guest_port = 81}},
      {{.proto = 1, .host_port = 8080, .guest_port = 81, .host_addr = 0x7F000001u}}};
  for (size_t i = 0; i < 3; i++) {
    a = spec("small");
    a.forwards = cmn_calloc(1, sizeof *a.forwards);
    a.forwards[0] = clash[i][0];
    a.n_forwards = 1;
    memset(&err, 0, sizeof err);
    CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000004", &a, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "i-0000000000000003"));
    agent_net_spec_free(&a);
  }
  agent_port_forward wrong[] = {{.proto = 0, .host_port = 1, .guest_port = 1},
                                {.proto = 1, .host_port = 0, .guest_port = 1},
                                {.proto = 1, .host_port = 1, .guest_port = 70000}};
  for (size_t i = 0; i < 3; i++) {
    a = spec("small");
    a.forwards = cmn_calloc(1, sizeof *a.forwards);
    a.forwards[0] = wrong[i];
    a.n_forwards = 1;
    memset(&err, 0, sizeof err);
    CU_ASSERT_EQUAL(agent_net_alloc(n, "i-0000000000000004", &a, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    agent_net_spec_free(&a);
  }
  /* veth pairs: the /30 transit subnet holds two /31 pairs */
  const char *ns_ids[] = {"i-00000000000000b1", "i-00000000000000b2", "i-00000000000000b3"};
  agent_net_release(n, "i-0000000000000001");
  agent_net_release(n, "i-0000000000000003");
  uint32_t seen[2] = {0};
  for (int i = 0; i < 3; i++) {
    a = spec("small");
    a.netns = true;
    memset(&err, 0, sizeof err);
    int rc = agent_net_alloc(n, ns_ids[i], &a, &err);
    if (i < 2) {
      CU_ASSERT_EQUAL(rc, 0);
      seen[i] = a.veth_host_ip;
      CU_ASSERT_EQUAL(a.veth_host_ip & 1u, 0u);
    } else {
      CU_ASSERT_EQUAL(rc, -1);
      CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
    }
    agent_net_spec_free(&a);
  }
  CU_ASSERT_NOT_EQUAL(seen[0], seen[1]);
  agent_net_free(n);
}

static void test_json_describe_claim(void)
{
  agent_net *n = small_net();
  cmn_error err = {0};
  agent_net_spec s = spec("small");
  s.netns = true;
  s.nic_index = 1;
  s.forwards = cmn_calloc(1, sizeof *s.forwards);
  s.forwards[0] = (agent_port_forward){
      .proto = 2, .host_port = 5353, .guest_port = 53, .host_addr = 0x0A000001u};
  s.n_forwards = 1;
  CU_ASSERT_EQUAL_FATAL(agent_net_alloc(n, "i-00000000000000c1", &s, &err), 0);
  cJSON *o = cJSON_CreateObject();
  agent_net_spec_to_json(o, &s);
  agent_net_spec back;
  agent_net_spec_from_json(o, &back);
  cJSON_Delete(o);
  CU_ASSERT_STRING_EQUAL(back.network, "small");
  CU_ASSERT_EQUAL(back.ipv4, s.ipv4);
  CU_ASSERT_EQUAL(back.prefix, 29);
  CU_ASSERT_EQUAL(back.gateway, s.gateway);
  CU_ASSERT_STRING_EQUAL(back.mac, s.mac);
  CU_ASSERT_TRUE(back.netns);
  CU_ASSERT_EQUAL(back.veth_host_ip, s.veth_host_ip);
  CU_ASSERT_EQUAL(back.nic_index, 1);
  CU_ASSERT_EQUAL_FATAL(back.n_forwards, 1);
  CU_ASSERT_EQUAL(memcmp(&back.forwards[0], &s.forwards[0], sizeof s.forwards[0]), 0);
  CU_ASSERT_TRUE(agent_net_spec_eq_request(&back, &s));
  agent_net_status st;
  CU_ASSERT_EQUAL(agent_net_describe("i-00000000000000c1", &back, &st), 0);
  CU_ASSERT_STRING_EQUAL(st.ipv4, "10.5.0.2/29");
  CU_ASSERT_STRING_EQUAL(st.gateway, "10.5.0.1");
  CU_ASSERT_STRING_EQUAL(st.tap, "emt0000000000c1");
  CU_ASSERT_STRING_EQUAL(st.netns, "ember-0000000000c1");
  CU_ASSERT_STRING_EQUAL(st.host_address, "10.6.0.1");
  /* a restart claims what the record says; a colliding record is refused */
  agent_net_free(n);
  n = small_net();
  CU_ASSERT_EQUAL(agent_net_claim(n, "i-00000000000000c1", &back, &err), 0);
  agent_net_spec other;
  agent_net_spec_copy(&other, &back);
  other.netns = false;
  CU_ASSERT_EQUAL(agent_net_claim(n, "i-00000000000000c2", &other, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_ALREADY_EXISTS);
  agent_net_info *info = NULL;
  size_t ni = 0;
  agent_net_list(n, &info, &ni);
  CU_ASSERT_EQUAL_FATAL(ni, 1);
  CU_ASSERT_EQUAL(info[0].used, 1);
  CU_ASSERT_EQUAL(info[0].total, 5);
  agent_net_info_free(info, ni);
  agent_net_spec_free(&other);
  agent_net_spec_free(&back);
  agent_net_spec_free(&s);
  agent_net_free(n);
}

int main(void)
{
  cmn_log_setup(CMN_LOG_ERROR, 2);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("instance_net", NULL, NULL);
  CU_add_test(s, "config", test_config);
  CU_add_test(s, "alloc_addresses", test_alloc_addresses);
  CU_add_test(s, "alloc_macs_forwards_veth", test_alloc_macs_forwards_veth);
  CU_add_test(s, "json_describe_claim", test_json_describe_claim);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
