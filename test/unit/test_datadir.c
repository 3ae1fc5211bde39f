/* test_datadir.c: CUnit tests of the data dir format file (agent/datadir.c):
 * a fresh dir gets the current format, a first-release dir (instances, no
 * file) is upgraded, a newer or unreadable format is refused and left as it was. */
#include "agent/datadir.h"
#include "common/files.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *dd_fresh(void)
{
  char tmpl[] = "/tmp/ember-datadir-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpl));
  return cmn_strdup(tmpl);
}

static char *dd_format_text(const char *dir)
{
  char *path = cmn_asprintf("%s/%s", dir, AGENT_DATADIR_FORMAT_FILE);
  char *text = NULL;
  size_t len = 0;
  cmn_error err = {0};
  if (cmn_file_read(path, 4096, &text, &len, &err) < 0)
    text = NULL;
  free(path);
  return text;
}

static void dd_write(const char *dir, const char *text)
{
  char *path = cmn_asprintf("%s/%s", dir, AGENT_DATADIR_FORMAT_FILE);
  cmn_error err = {0};
  CU_ASSERT_EQUAL(cmn_file_write_atomic(path, text, strlen(text), 0640, &err), 0);
  free(path);
}

static void dd_cleanup(char *dir)
{
  cmn_error err = {0};
  cmn_rm_rf(dir, &err);
  free(dir);
}

static void test_fresh_dir(void)
{
  char *dir = dd_fresh();
  cmn_error err = {0};
  int found = -1;
  CU_ASSERT_EQUAL(agent_datadir_check(dir, "emberd 1.2.3", &found, &err), 0);
  CU_ASSERT_EQUAL(found, 0);
  char *text = dd_format_text(dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"written_by\":\t\"emberd 1.2.3\""));
  free(text);
  /* Same emberd again: found is the current format, nothing to do. */
  CU_ASSERT_EQUAL(agent_datadir_check(dir, "emberd 1.2.3", &found, &err), 0);
  CU_ASSERT_EQUAL(found, AGENT_DATADIR_FORMAT);
  dd_cleanup(dir);
}

static void test_first_release_upgraded(void)
{
  char *dir = dd_fresh();
  char *inst = cmn_asprintf("%s/instances", dir);
  CU_ASSERT_EQUAL(mkdir(inst, 0750), 0);
  cmn_error err = {0};
  int found = -1;
  CU_ASSERT_EQUAL(agent_datadir_check(dir, "emberd 1.2.3", &found, &err), 0);
  CU_ASSERT_EQUAL(found, 1);
  char *text = dd_format_text(dir);
  CU_ASSERT_PTR_NOT_NULL(text);
  free(text);
  free(inst);
  dd_cleanup(dir);
}

static void test_newer_refused(void)
{
  static const char *const bad[] = {
      "{\"format\": 99, \"written_by\": \"emberd 9.9\"}", /* newer */
      "{\"format\": \"2\"}",                              /* not a number */
      "{\"format\": 1.5}",                                /* not whole */
      "not json at all",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *dir = dd_fresh();
    dd_write(dir, bad[i]);
    cmn_error err = {0};
    CU_ASSERT_EQUAL(agent_datadir_check(dir, "emberd 1.2.3", NULL, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "refusing to start"));
    if (i == 0)
      CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "emberd 9.9"));
    char *text = dd_format_text(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_STRING_EQUAL(text, bad[i]); /* left as it was */
    free(text);
    dd_cleanup(dir);
  }
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("datadir", NULL, NULL);
  CU_add_test(s, "fresh data dir", test_fresh_dir);
  CU_add_test(s, "first release upgraded", test_first_release_upgraded);
  CU_add_test(s, "newer or unreadable format refused", test_newer_refused);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
