/* test_admission.c: CUnit tests of agent/admission.c with fed host figures,
 * and of the space helpers it and the RAM-file reservation use
 * (cmn_fs_need, cmn_file_reserve in common/files.c). */
#include "agent/admission.h"
#include "agent/manager.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"
#include "drivers/registry.h"
#include "test/unit/testvm_driver.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The CI machine's size: 2 CPUs, ~23 GiB. */
static const agent_host_figures host_small = {
    .mem_total_mib = 23552, .cpus = 2, .disk_free_mib = 80000, .disk_total_mib = 250000};

static agent_admit_request req(agent_admit_point p, uint64_t mib, unsigned vcpus, uint64_t disk)
{
  return (agent_admit_request){
      .point = p, .name = "vm", .memory_mib = mib, .vcpus = vcpus, .disk_mib = disk};
}

static void test_defaults_admit_small_guests(void)
{
  agent_admission_config c;
  agent_admission_defaults(&c);
  cmn_error err = {0};
  agent_usage used = {0};
  /* A few 1-2 vCPU guests of 128-256 MiB always fit a 2-core 23 GiB host. */
  for (int i = 0; i < 4; i++) {
    agent_admit_request r = req(AGENT_ADMIT_START, 256, 2, 256);
    CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), 0);
    used.mem_mib += 256;
    used.vcpus += 2;
  }
  /* Default vCPU ratio: 4 per CPU = 8 vCPUs on 2 CPUs; the 9th is refused. */
  agent_admit_request r = req(AGENT_ADMIT_START, 128, 1, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 1 vCPUs; this host admits 0 (2 online CPUs"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "8 vCPUs already committed"));
}

static void test_create_alone(void)
{
  agent_admission_config c;
  agent_admission_defaults(&c);
  cmn_error err = {0};
  /* Create ignores what runs: the spec alone against the host. */
  agent_usage busy = {.mem_mib = 23000, .vcpus = 8};
  agent_admit_request r = req(AGENT_ADMIT_CREATE, 1024, 2, 1024);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &busy, &r, &err), 0);
  /* 200 GiB on a 23 GiB host. */
  r = req(AGENT_ADMIT_CREATE, 204800, 1, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &busy, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 204800 MiB of RAM; this host admits 23040 MiB"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "23552 MiB total - 512 MiB reserved"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "x 1.00 overcommit, 0 MiB already committed"));
  /* 64 vCPUs on 2 CPUs. */
  r = req(AGENT_ADMIT_CREATE, 128, 64, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &busy, &r, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 64 vCPUs; this host admits 8"));
  /* A RAM file bigger than the whole data-dir filesystem. */
  agent_host_figures tiny_disk = host_small;
  tiny_disk.disk_total_mib = 1000;
  r = req(AGENT_ADMIT_CREATE, 2048, 1, 2048);
  CU_ASSERT_EQUAL(agent_admit(&c, &tiny_disk, &busy, &r, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 2304 MiB in the data dir (2048 MiB guest RAM "
                                         "file + 256 MiB reserve"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "1000 MiB in all"));
}

static void test_sum_and_overcommit(void)
{
  agent_admission_config c;
  agent_admission_defaults(&c);
  cmn_error err = {0};
  agent_usage used = {.mem_mib = 20000, .vcpus = 2};
  agent_admit_request r = req(AGENT_ADMIT_START, 4096, 1, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot start vm: it needs 4096 MiB of RAM; this host "
                                         "admits 3040 MiB"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "20000 MiB already committed"));
  /* Restore is the same check. */
  r.point = AGENT_ADMIT_RESTORE;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot restore vm"));
  /* 1.5x overcommit: (23552 - 512) x 1.5 = 34560. */
  c.mem_overcommit = 1.5;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), 0);
  r.memory_mib = 14561;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
  r.memory_mib = 14560;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), 0);
  /* Reserve larger than the host: nothing fits. */
  c.mem_reserved_mib = 30000;
  r.memory_mib = 1;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
  /* vCPU ratio 1.0: 2 vCPUs on 2 CPUs, exactly. */
  agent_admission_defaults(&c);
  c.vcpu_overcommit = 1.0;
  used = (agent_usage){.mem_mib = 0, .vcpus = 1};
  r = req(AGENT_ADMIT_START, 128, 1, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), 0);
  r.vcpus = 2;
  CU_ASSERT_EQUAL(agent_admit(&c, &host_small, &used, &r, &err), -1);
}

static void test_disk(void)
{
  agent_admission_config c;
  agent_admission_defaults(&c);
  cmn_error err = {0};
  agent_usage used = {0};
  agent_host_figures h = host_small;
  h.disk_free_mib = 300;
  agent_admit_request r = req(AGENT_ADMIT_START, 128, 1, 128);
  CU_ASSERT_EQUAL(agent_admit(&c, &h, &used, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 384 MiB in the data dir"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "has 300 MiB free"));
  c.disk_reserve_mib = 0;
  CU_ASSERT_EQUAL(agent_admit(&c, &h, &used, &r, &err), 0);
  /* A filesystem without a size (ramfs): not judged here. */
  agent_host_figures nosize = host_small;
  nosize.disk_free_mib = nosize.disk_total_mib = 0;
  r = req(AGENT_ADMIT_START, 128, 1, 128);
  CU_ASSERT_EQUAL(agent_admit(&c, &nosize, &used, &r, &err), 0);
  /* A diff restore writes no new RAM file: only the reserve counts. */
  agent_admission_defaults(&c);
  r = req(AGENT_ADMIT_RESTORE, 128, 1, 0);
  CU_ASSERT_EQUAL(agent_admit(&c, &h, &used, &r, &err), 0);
}

/* The reservation helper on a real file in a folder of root (/tmp; /dev/shm
 * for tmpfs and its already-allocated fast path): blocks allocated, content
 * kept, a partly allocated file completed. */
static void file_reserve_in(const char *root)
{
  cleanup_free char *tmpl = cmn_asprintf("%s/ember-adm-XXXXXX", root);
  if (mkdtemp(tmpl) == NULL)
    return; /* no such filesystem here */
  cleanup_free char *p = cmn_asprintf("%s/ram", tmpl);
  int fd = cmn_open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
  CU_ASSERT_FATAL(fd >= 0);
  CU_ASSERT_EQUAL(pwrite(fd, "abc", 3, 4096), 3);
  CU_ASSERT_EQUAL(ftruncate(fd, 8 << 20), 0);
  struct stat st;
  fstat(fd, &st);
  CU_ASSERT((uint64_t)st.st_blocks * 512 < (8u << 20)); /* sparse */
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_file_reserve(fd, p, 8 << 20, &err), 0);
  fstat(fd, &st);
  CU_ASSERT((uint64_t)st.st_blocks * 512 >= (8u << 20));
  CU_ASSERT_EQUAL(st.st_size, 8 << 20);
  char buf[3];
  CU_ASSERT_EQUAL(pread(fd, buf, 3, 4096), 3);
  CU_ASSERT_EQUAL(memcmp(buf, "abc", 3), 0);
  /* Beyond any file size: refused, the file unchanged. (A full filesystem is
   * covered by test/integration/test_disk_full.py on real small mounts.) */
  CU_ASSERT_EQUAL(cmn_file_reserve(fd, p, 1ull << 60, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, p));
  fstat(fd, &st);
  CU_ASSERT_EQUAL(st.st_size, 8 << 20);
  CU_ASSERT_EQUAL(cmn_fs_need(tmpl, 1ull << 60, "a huge thing", &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "a huge thing needs"));
  CU_ASSERT_EQUAL(cmn_fs_need(tmpl, 1, "a byte", &err), 0);
  /* A full filesystem is RESOURCE_EXHAUSTED whatever code the caller passed. */
  cmn_err_errno(&err, CMN_INTERNAL, ENOSPC, "write x");
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  /* Reserved already: again is a no-op that succeeds. */
  CU_ASSERT_EQUAL(cmn_file_reserve(fd, p, 8 << 20, &err), 0);
  /* A hole punched into a reserved file is filled again. */
  CU_ASSERT_EQUAL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), 0);
  fstat(fd, &st);
  CU_ASSERT((uint64_t)st.st_blocks * 512 < (8u << 20));
  CU_ASSERT_EQUAL(cmn_file_reserve(fd, p, 8 << 20, &err), 0);
  fstat(fd, &st);
  CU_ASSERT((uint64_t)st.st_blocks * 512 >= (8u << 20));
  close(fd);
  cmn_error e2 = {0};
  cmn_rm_rf(tmpl, &e2);
}

static void test_file_reserve(void)
{
  file_reserve_in("/tmp");
  file_reserve_in("/dev/shm");
}

static void test_probe(void)
{
  agent_host_figures h;
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(agent_host_probe("/tmp", &h, &err), 0);
  CU_ASSERT(h.mem_total_mib > 0);
  CU_ASSERT(h.cpus > 0);
  CU_ASSERT(h.disk_total_mib >= h.disk_free_mib);
  CU_ASSERT_EQUAL(agent_host_probe("/nonexistent/x", &h, &err), -1);
}

/* The manager's wiring: admission at create, start and restore with fed host
 * figures (1 CPU, 1024 MiB, 10 GiB disk), the testvm drivers as VMMs. */
static int fed_probe(void *ctx, const char *data_dir, agent_host_figures *out, cmn_error *err)
{
  (void)data_dir;
  (void)err;
  *out = *(const agent_host_figures *)ctx;
  return 0;
}

static int mgr_create(agent_manager *m, const char *name, const char *type, uint64_t mib,
                      unsigned vcpus, char *kernel, bool start, char **id, cmn_error *err)
{
  vmm_spec spec = {.vcpus = vcpus, .memory_mib = mib, .kernel = kernel, .cmdline = (char[]){"x"}};
  agent_instance_view v = {0};
  int rc = agent_manager_create_instance(m, name, type, &spec, start, &v, err);
  if (rc == 0 && id != NULL)
    *id = cmn_strdup(v.id);
  agent_instance_view_free(&v);
  return rc;
}

static void test_manager_admission(void)
{
  static const vmm_driver *const drivers[] = {&testvm_driver, &testvm_live_driver};
  char root[] = "/tmp/ember-adm-mgr-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
  cleanup_free char *data = cmn_asprintf("%s/data", root);
  cleanup_free char *kernel = cmn_asprintf("%s/vmlinux", root);
  cmn_error err = {0};
  CU_ASSERT_EQUAL_FATAL(cmn_file_write_atomic(kernel, "k", 1, 0644, &err), 0);
  vmm_registry *reg = vmm_registry_create(NULL, drivers, 2, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
  agent_host_figures host = {
      .mem_total_mib = 1024, .cpus = 1, .disk_free_mib = 10240, .disk_total_mib = 20480};
  agent_admission_config adm = {
      .mem_overcommit = 1.0, .mem_reserved_mib = 0, .vcpu_overcommit = 2.0, .disk_reserve_mib = 0};
  agent_manager_config cfg = {.data_dir = data,
                              .stop_timeout_ms = 2000,
                              .admission = &adm,
                              .host_probe = fed_probe,
                              .host_probe_ctx = &host};
  agent_manager *m = agent_manager_create(&cfg, reg, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);

  /* Create: alone against the host. */
  CU_ASSERT_EQUAL(mgr_create(m, "big", "testvm", 2048, 1, kernel, false, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 2048 MiB of RAM; this host admits 1024 MiB"));
  CU_ASSERT_EQUAL(mgr_create(m, "wide", "testvm", 64, 3, kernel, false, NULL, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 3 vCPUs; this host admits 2"));
  agent_instance_view *v = NULL;
  size_t n = 9;
  CU_ASSERT_EQUAL(agent_manager_list(m, AGENT_STATE_UNSPECIFIED, &v, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 0); /* refused creates leave nothing */
  agent_instance_views_free(v, n);

  /* Start and restore: next to what runs. */
  cleanup_free char *a = NULL, *b = NULL;
  CU_ASSERT_EQUAL_FATAL(mgr_create(m, "a", "testvm", 600, 1, kernel, true, &a, &err), 0);
  CU_ASSERT_EQUAL_FATAL(mgr_create(m, "b", "testvm", 600, 1, kernel, false, &b, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, b, AGENT_OP_START, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "this host admits 424 MiB"));
  CU_ASSERT_EQUAL(agent_manager_op(m, a, AGENT_OP_STANDBY, NULL, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, b, AGENT_OP_START, NULL, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, a, AGENT_OP_RESTORE, NULL, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot restore a"));
  agent_instance_view va = {0};
  CU_ASSERT_EQUAL(agent_manager_get(m, a, &va, &err), 0);
  CU_ASSERT_EQUAL(va.state, AGENT_STATE_STANDBY);
  agent_instance_view_free(&va);
  CU_ASSERT_EQUAL(agent_manager_op(m, b, AGENT_OP_STOP, NULL, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, a, AGENT_OP_RESTORE, NULL, &err), 0);

  /* Disk: a LIVE_RAM_FILE guest needs its RAM file in the data dir. */
  host.disk_free_mib = 100;
  cleanup_free char *c = NULL;
  CU_ASSERT_EQUAL_FATAL(mgr_create(m, "c", "testlive", 128, 1, kernel, false, &c, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, a, AGENT_OP_STOP, NULL, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, c, AGENT_OP_START, NULL, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "needs 128 MiB in the data dir"));
  cleanup_free char *cdir = cmn_asprintf("%s/instances/%s/snapshots", data, c);
  CU_ASSERT_FALSE(cmn_path_exists(cdir)); /* nothing made */
  host.disk_free_mib = 10240;
  CU_ASSERT_EQUAL(agent_manager_op(m, c, AGENT_OP_START, NULL, &err), 0);
  CU_ASSERT_EQUAL(agent_manager_op(m, c, AGENT_OP_STOP, NULL, &err), 0);

  agent_manager_free(m);
  vmm_registry_free(reg);
  cmn_rm_rf(root, &err);
}

int main(void)
{
  cmn_log_setup(CMN_LOG_ERROR, 2);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("admission", NULL, NULL);
  CU_add_test(s, "defaults_admit_small_guests", test_defaults_admit_small_guests);
  CU_add_test(s, "create_alone", test_create_alone);
  CU_add_test(s, "sum_and_overcommit", test_sum_and_overcommit);
  CU_add_test(s, "disk", test_disk);
  CU_add_test(s, "file_reserve", test_file_reserve);
  CU_add_test(s, "probe", test_probe);
  CU_add_test(s, "manager_admission", test_manager_admission);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
