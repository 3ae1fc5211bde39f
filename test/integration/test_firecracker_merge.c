/* test_firecracker_merge.c: CUnit tests of fc_merge_diff on real sparse files.
 *
 * A diff file is built the way Firecracker (< 1.6) writes one: set to the full
 * guest size, dirty pages written with pwrite, everything else left as holes.
 * Includes a dirty page that is all zeros (must overwrite the base) and data at
 * the very end of the file. */
#include "drivers/firecracker/fc_merge.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096
#define NPAGES 256 /* 1 MiB */

static char tmpdir[] = "/tmp/ember-fc-merge-XXXXXX";

static void fill(unsigned char *p, unsigned char v) { memset(p, v, PG); }

static int write_file(const char *path, const unsigned char *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  ssize_t n = pwrite(fd, data, len, 0);
  close(fd);
  return n == (ssize_t)len ? 0 : -1;
}

/* Writes a sparse diff: ftruncate to size, then the listed pages. */
static int write_diff(const char *path, const unsigned char *mem, const int *pages, int n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  if (ftruncate(fd, (off_t)NPAGES * PG) < 0) {
    close(fd);
    return -1;
  }
  for (int i = 0; i < n; i++)
    if (pwrite(fd, mem + (size_t)pages[i] * PG, PG, (off_t)pages[i] * PG) != PG) {
      close(fd);
      return -1;
    }
  close(fd);
  return 0;
}

static void test_merge_pages(void)
{
  unsigned char *base = cmn_malloc((size_t)NPAGES * PG);
  unsigned char *guest = cmn_malloc((size_t)NPAGES * PG);
  for (int i = 0; i < NPAGES; i++)
    fill(base + (size_t)i * PG, (unsigned char)(i + 1)); /* no zero page in the base */
  memcpy(guest, base, (size_t)NPAGES * PG);
  /* The guest dirties: page 0, a run 10..12, a page set to all zeros (50),
   * page 100, and the last page. */
  int dirty[] = {0, 10, 11, 12, 50, 100, NPAGES - 1};
  for (size_t i = 0; i < sizeof dirty / sizeof dirty[0]; i++)
    fill(guest + (size_t)dirty[i] * PG, dirty[i] == 50 ? 0 : (unsigned char)(0xC0 + i));

  cleanup_free char *bpath = cmn_asprintf("%s/memory", tmpdir);
  cleanup_free char *dpath = cmn_asprintf("%s/memory.diff", tmpdir);
  CU_ASSERT_FATAL(write_file(bpath, base, (size_t)NPAGES * PG) == 0);
  CU_ASSERT_FATAL(write_diff(dpath, guest, dirty, (int)(sizeof dirty / sizeof dirty[0])) == 0);
  struct stat st;
  CU_ASSERT_FATAL(stat(dpath, &st) == 0);
  if ((uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size)
    printf("\nnote: %s is not sparse on this filesystem\n", tmpdir);

  cmn_error err = {0};
  uint64_t copied = 0;
  int r = fc_merge_diff(dpath, bpath, &copied, &err);
  if (r < 0)
    printf("\nmerge: %s\n", err.msg);
  CU_ASSERT_FATAL(r == 0);
  CU_ASSERT(copied >= 7u * PG);
  CU_ASSERT(!cmn_path_exists(dpath));

  cleanup_free char *out = NULL;
  size_t len = 0;
  CU_ASSERT_FATAL(cmn_file_read(bpath, (size_t)NPAGES * PG + 1, &out, &len, &err) == 0);
  CU_ASSERT_FATAL(len == (size_t)NPAGES * PG);
  CU_ASSERT(memcmp(out, guest, len) == 0);
  /* The zero page really is zero now, and a clean neighbour kept its bytes. */
  CU_ASSERT(((unsigned char *)out)[50 * PG] == 0 && ((unsigned char *)out)[51 * PG] == 52);
  free(base);
  free(guest);
}

static void test_merge_empty_diff(void)
{
  unsigned char *base = cmn_malloc((size_t)NPAGES * PG);
  memset(base, 0x77, (size_t)NPAGES * PG);
  cleanup_free char *bpath = cmn_asprintf("%s/memory2", tmpdir);
  cleanup_free char *dpath = cmn_asprintf("%s/memory2.diff", tmpdir);
  CU_ASSERT_FATAL(write_file(bpath, base, (size_t)NPAGES * PG) == 0);
  CU_ASSERT_FATAL(write_diff(dpath, base, NULL, 0) == 0);
  cmn_error err = {0};
  uint64_t copied = 1;
  CU_ASSERT_FATAL(fc_merge_diff(dpath, bpath, &copied, &err) == 0);
  CU_ASSERT(copied == 0);
  cleanup_free char *out = NULL;
  size_t len = 0;
  CU_ASSERT_FATAL(cmn_file_read(bpath, (size_t)NPAGES * PG + 1, &out, &len, &err) == 0);
  CU_ASSERT(len == (size_t)NPAGES * PG && memcmp(out, base, len) == 0);
  free(base);
}

static void test_merge_size_mismatch(void)
{
  unsigned char page[PG];
  memset(page, 1, sizeof page);
  cleanup_free char *bpath = cmn_asprintf("%s/memory3", tmpdir);
  cleanup_free char *dpath = cmn_asprintf("%s/memory3.diff", tmpdir);
  CU_ASSERT_FATAL(write_file(bpath, page, PG) == 0);
  CU_ASSERT_FATAL(write_diff(dpath, page, NULL, 0) == 0); /* NPAGES long */
  cmn_error err = {0};
  CU_ASSERT(fc_merge_diff(dpath, bpath, NULL, &err) < 0);
  CU_ASSERT(strstr(err.msg, "not the same guest") != NULL);
  CU_ASSERT(cmn_path_exists(dpath)); /* kept on failure */
}

int main(void)
{
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("fc_merge", NULL, NULL);
  CU_add_test(s, "merge dirty pages incl. a zero page", test_merge_pages);
  CU_add_test(s, "merge an empty diff", test_merge_empty_diff);
  CU_add_test(s, "refuse a diff of another size", test_merge_size_mismatch);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  cmn_rm_rf(tmpdir, NULL);
  return fails == 0 ? 0 : 1;
}
