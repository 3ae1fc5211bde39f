/* test_instance_image.c: CUnit tests of agent/instance_image.c (instances
 * from images) and of the fence's emberd-made disks (hostfiles.c
 * agent_host_files_open_made), on real files in a temp dir: the made disks
 * come first and open without following links; a request path into the data
 * dir stays refused; the boot kit fills what an image spec leaves out; the
 * record JSON round-trips. */
#include "agent/hostfiles.h"
#include "agent/instance_image.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_root[64];
static char *data_dir, *inst_dir, *kit_dir, *outside;

static char *mkfile(const char *dir, const char *name)
{
  char *p = cmn_asprintf("%s/%s", dir, name);
  cmn_error err = {0};
  if (cmn_file_write_atomic(p, "x", 1, 0644, &err) < 0)
    fprintf(stderr, "write %s: %s\n", p, err.msg);
  return p;
}

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-instimg-XXXXXX");
  if (mkdtemp(tmp_root) == NULL)
    return -1;
  data_dir = cmn_asprintf("%s/data", tmp_root);
  inst_dir = cmn_asprintf("%s/instances/i-1", data_dir);
  kit_dir = cmn_asprintf("%s/kit", tmp_root);
  outside = cmn_asprintf("%s/files", tmp_root);
  cmn_error err = {0};
  if (cmn_mkdir_p(inst_dir, 0750, &err) < 0 || cmn_mkdir_p(kit_dir, 0750, &err) < 0 ||
      cmn_mkdir_p(outside, 0750, &err) < 0)
    return -1;
  free(mkfile(inst_dir, AGENT_IMAGE_ROOTFS));
  free(mkfile(inst_dir, AGENT_IMAGE_BOOTCFG));
  free(mkfile(kit_dir, "vmlinux"));
  free(mkfile(kit_dir, "initramfs.cpio.gz"));
  free(mkfile(outside, "data.img"));
  return 0;
}

static int suite_clean(void)
{
  cleanup_free char *cmd = cmn_asprintf("rm -rf '%s'", tmp_root);
  int r = system(cmd);
  free(data_dir);
  free(inst_dir);
  free(kit_dir);
  free(outside);
  return r == 0 ? 0 : -1;
}

static void test_fill(void)
{
  cmn_error err = {0};
  vmm_spec spec = {.vcpus = 1, .memory_mib = 128};
  vmm_spec out;
  char *ep[] = {(char[]){"/bin/true"}};
  agent_image_spec ov_only = {.entrypoint = ep, .n_entrypoint = 1};
  CU_ASSERT_EQUAL(agent_image_spec_fill(&ov_only, &spec, kit_dir, &out, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "spec.image"));

  agent_image_spec img = {.ref = (char[]){"localhost:5000/app:1"}};
  memset(&err, 0, sizeof err);
  cleanup_free char *nokit = cmn_asprintf("%s/nokit", tmp_root);
  CU_ASSERT_EQUAL(agent_image_spec_fill(&img, &spec, nokit, &out, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "boot kit"));

  memset(&err, 0, sizeof err);
  CU_ASSERT_EQUAL(agent_image_spec_fill(&img, &spec, kit_dir, &out, &err), 0);
  cleanup_free char *k = cmn_asprintf("%s/vmlinux", kit_dir);
  CU_ASSERT_STRING_EQUAL(out.kernel, k);
  CU_ASSERT_PTR_NOT_NULL(strstr(out.initrd, "initramfs.cpio.gz"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out.cmdline, "console=ttyS0"));
  vmm_spec_free(&out);

  /* A spec's own kernel and cmdline are kept. */
  vmm_spec mine = {
      .vcpus = 1, .memory_mib = 128, .kernel = (char[]){"/k"}, .cmdline = (char[]){"quiet"}};
  CU_ASSERT_EQUAL(agent_image_spec_fill(&img, &mine, kit_dir, &out, &err), 0);
  CU_ASSERT_STRING_EQUAL(out.kernel, "/k");
  CU_ASSERT_STRING_EQUAL(out.cmdline, "quiet");
  vmm_spec_free(&out);

  /* No image: nothing filled. */
  CU_ASSERT_EQUAL(agent_image_spec_fill(NULL, &spec, kit_dir, &out, &err), 0);
  CU_ASSERT_PTR_NULL(out.kernel);
}

static void test_json_roundtrip(void)
{
  char *ep[] = {(char[]){"/bin/sh"}, (char[]){"-c"}}, *args[] = {(char[]){"echo hi"}};
  char *env[] = {(char[]){"A=1"}, (char[]){"B=2"}};
  agent_image_spec a = {.ref = (char[]){"r:1"},
                        .id = (char[]){"sha256:ab"},
                        .entrypoint = ep,
                        .n_entrypoint = 2,
                        .args = args,
                        .n_args = 1,
                        .env = env,
                        .n_env = 2,
                        .workdir = (char[]){"/w"}};
  cJSON *o = cJSON_CreateObject();
  agent_image_spec_to_json(o, &a);
  agent_image_spec b;
  agent_image_spec_from_json(o, &b);
  CU_ASSERT_TRUE(agent_image_spec_eq(&a, &b));
  CU_ASSERT_STRING_EQUAL(b.id, "sha256:ab");
  agent_image_spec c;
  agent_image_spec_copy(&c, &b);
  CU_ASSERT_TRUE(agent_image_spec_eq(&c, &a));
  agent_image_spec_free(&b);
  agent_image_spec_free(&c);
  cJSON_Delete(o);
  /* Not from an image: nothing written, nothing read. */
  o = cJSON_CreateObject();
  agent_image_spec none = {0};
  agent_image_spec_to_json(o, &none);
  CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(o, "image"));
  agent_image_spec_from_json(o, &b);
  CU_ASSERT_FALSE(agent_image_spec_set(&b));
  cJSON_Delete(o);
}

static void test_made_disks(void)
{
  cmn_error err = {0};
  agent_host_fence *f = agent_host_fence_new(data_dir, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  cleanup_free char *kernel = cmn_asprintf("%s/vmlinux", kit_dir);
  cleanup_free char *user_disk = cmn_asprintf("%s/data.img", outside);
  vmm_disk disks[] = {{user_disk, true, false}};
  vmm_spec spec = {.vcpus = 1, .memory_mib = 128, .kernel = kernel, .disks = disks, .n_disks = 1};
  agent_image_spec img = {.ref = (char[]){"r:1"}, .id = (char[]){"sha256:ab"}};
  agent_host_files hf;
  CU_ASSERT_EQUAL_FATAL(
      agent_image_host_files_open(f, &spec, &img, inst_dir, CMN_FAILED_PRECONDITION, &hf, &err), 0);
  CU_ASSERT_EQUAL(hf.spec.n_disks, 3);
  CU_ASSERT_STRING_EQUAL(hf.spec.disks[0].path, "/proc/self/fd/66");
  CU_ASSERT_FALSE(hf.spec.disks[0].read_only);
  CU_ASSERT_TRUE(hf.spec.disks[1].read_only);
  CU_ASSERT_STRING_EQUAL(hf.spec.disks[2].path, "/proc/self/fd/68");
  CU_ASSERT_EQUAL(hf.n_fds, 4);
  agent_host_files_close(&hf);

  /* Without an image, the same spec has only its own disk. */
  CU_ASSERT_EQUAL(
      agent_image_host_files_open(f, &spec, NULL, inst_dir, CMN_FAILED_PRECONDITION, &hf, &err), 0);
  CU_ASSERT_EQUAL(hf.spec.n_disks, 1);
  agent_host_files_close(&hf);

  /* A request path naming the made disk is still refused by the fence. */
  cleanup_free char *made = cmn_asprintf("%s/%s", inst_dir, AGENT_IMAGE_ROOTFS);
  vmm_disk evil[] = {{made, false, false}};
  vmm_spec bad = spec;
  bad.disks = evil;
  memset(&err, 0, sizeof err);
  CU_ASSERT_EQUAL(
      agent_image_host_files_open(f, &bad, &img, inst_dir, CMN_INVALID_ARGUMENT, &hf, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "data dir"));

  /* A made disk replaced by a link is not followed. */
  cleanup_free char *cfg = cmn_asprintf("%s/%s", inst_dir, AGENT_IMAGE_BOOTCFG);
  unlink(cfg);
  CU_ASSERT_EQUAL(symlink(user_disk, cfg), 0);
  memset(&err, 0, sizeof err);
  CU_ASSERT_EQUAL(
      agent_image_host_files_open(f, &spec, &img, inst_dir, CMN_FAILED_PRECONDITION, &hf, &err),
      -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  unlink(cfg);
  free(mkfile(inst_dir, AGENT_IMAGE_BOOTCFG));
  agent_host_fence_free(f);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("instance_image", suite_init, suite_clean);
  CU_add_test(s, "fill", test_fill);
  CU_add_test(s, "json_roundtrip", test_json_roundtrip);
  CU_add_test(s, "made_disks", test_made_disks);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return fails ? 1 : 0;
}
