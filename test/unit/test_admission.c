/* test_admission.c: CUnit tests of agent/admission.c with fed host figures,
 * and of the space helpers it and the RAM-file reservation use
 * (cmn_fs_need, cmn_file_reserve in common/files.c). */
#define _GNU_SOURCE
#include "agent/admission.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The CI machine's size: 2 CPUs, ~23 GiB. */
static const agent_host_figures host_small = {
    .mem_total_mib = 23552, .cpus = 2, .disk_free_mib = 80000, .disk_total_mib = 250000};

static agent_admit_request req(agent_admit_point p, uint64_t mib, unsigned vcpus,
                               uint64_t disk)
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
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
