/* test_metrics.c: CUnit tests of the metrics registry and its Prometheus text
 * exposition (agent/metrics.c): the exact text of a small registry (HELP/TYPE
 * lines, label escaping, sorted series, cumulative histogram buckets with
 * +Inf, _sum and _count), value formatting, and concurrent updates. */
#include "agent/metrics.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_exact_text(void)
{
  agent_mreg *r = agent_mreg_create();
  const char *const clabels[] = {"method", "code", NULL};
  int c = agent_mreg_family(r, "t_requests_total", "Requests, by \\method\\\nand code.",
                            AGENT_MTYPE_COUNTER, clabels, NULL, 0);
  int g = agent_mreg_family(r, "t_up", "Up.", AGENT_MTYPE_GAUGE, NULL, NULL, 0);
  const double bounds[] = {0.1, 1, 2.5};
  const char *const hlabels[] = {"op", NULL};
  int h =
      agent_mreg_family(r, "t_seconds", "Durations.", AGENT_MTYPE_HISTOGRAM, hlabels, bounds, 3);
  agent_mreg_family(r, "t_empty", "No series yet.", AGENT_MTYPE_GAUGE, NULL, NULL, 0);

  agent_mreg_add(r, c, (const char *const[]){"b", "OK"}, 1);
  agent_mreg_add(r, c, (const char *const[]){"a\"q\\\nz", "NOT_FOUND"}, 2);
  agent_mreg_add(r, c, (const char *const[]){"b", "OK"}, 1);
  agent_mreg_set(r, g, NULL, 1);
  agent_mreg_observe(r, h, (const char *const[]){"x"}, 0.05); /* <= 0.1 */
  agent_mreg_observe(r, h, (const char *const[]){"x"}, 1);    /* <= 1 (inclusive) */
  agent_mreg_observe(r, h, (const char *const[]){"x"}, 2);    /* <= 2.5 */
  agent_mreg_observe(r, h, (const char *const[]){"x"}, 7.2);  /* +Inf only */

  size_t len = 0;
  char *text = agent_mreg_format(r, &len);
  const char *want = "# HELP t_requests_total Requests, by \\\\method\\\\\\nand code.\n"
                     "# TYPE t_requests_total counter\n"
                     "t_requests_total{method=\"a\\\"q\\\\\\nz\",code=\"NOT_FOUND\"} 2\n"
                     "t_requests_total{method=\"b\",code=\"OK\"} 2\n"
                     "# HELP t_up Up.\n"
                     "# TYPE t_up gauge\n"
                     "t_up 1\n"
                     "# HELP t_seconds Durations.\n"
                     "# TYPE t_seconds histogram\n"
                     "t_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"
                     "t_seconds_bucket{op=\"x\",le=\"1\"} 2\n"
                     "t_seconds_bucket{op=\"x\",le=\"2.5\"} 3\n"
                     "t_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"
                     "t_seconds_sum{op=\"x\"} 10.25\n"
                     "t_seconds_count{op=\"x\"} 4\n"
                     "# HELP t_empty No series yet.\n"
                     "# TYPE t_empty gauge\n";
  if (strcmp(text, want) != 0)
    fprintf(stderr, "\n---- got ----\n%s---- want ----\n%s", text, want);
  CU_ASSERT_STRING_EQUAL(text, want);
  CU_ASSERT_EQUAL(len, strlen(want));
  free(text);
  agent_mreg_free(r);
}

static void test_values(void)
{
  char b[64];
  agent_mreg_format_value(b, sizeof b, 0.1);
  CU_ASSERT_STRING_EQUAL(b, "0.1");
  agent_mreg_format_value(b, sizeof b, 1e-6);
  CU_ASSERT_STRING_EQUAL(b, "1e-06");
  agent_mreg_format_value(b, sizeof b, 1735689600);
  CU_ASSERT_STRING_EQUAL(b, "1735689600");
  agent_mreg_format_value(b, sizeof b, 0.1 + 0.2); /* needs 17 digits to round-trip */
  CU_ASSERT_EQUAL(strtod(b, NULL), 0.1 + 0.2);
  agent_mreg_format_value(b, sizeof b, 1.0 / 0.0);
  CU_ASSERT_STRING_EQUAL(b, "+Inf");
  agent_mreg_format_value(b, sizeof b, -1.0 / 0.0);
  CU_ASSERT_STRING_EQUAL(b, "-Inf");
  agent_mreg_format_value(b, sizeof b, 0.0 / 0.0);
  CU_ASSERT_STRING_EQUAL(b, "NaN");
}

typedef struct {
  agent_mreg *r;
  int c, h;
} conc_arg;

static void *conc_main(void *p)
{
  conc_arg *a = p;
  for (int i = 0; i < 10000; i++) {
    agent_mreg_add(a->r, a->c, (const char *const[]){i % 2 ? "odd" : "even"}, 1);
    agent_mreg_observe(a->r, a->h, NULL, 0.5);
  }
  return NULL;
}

static void test_concurrent(void)
{
  agent_mreg *r = agent_mreg_create();
  const char *const labels[] = {"k", NULL};
  const double bounds[] = {1};
  conc_arg a = {r, agent_mreg_family(r, "c_total", "c", AGENT_MTYPE_COUNTER, labels, NULL, 0),
                agent_mreg_family(r, "h", "h", AGENT_MTYPE_HISTOGRAM, NULL, bounds, 1)};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, conc_main, &a), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  char *text = agent_mreg_format(r, NULL);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "c_total{k=\"even\"} 20000\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "c_total{k=\"odd\"} 20000\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "h_bucket{le=\"1\"} 40000\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "h_bucket{le=\"+Inf\"} 40000\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "h_sum 20000\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "h_count 40000\n"));
  free(text);
  agent_mreg_free(r);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("metrics", NULL, NULL);
  CU_add_test(s, "exact exposition text", test_exact_text);
  CU_add_test(s, "value formatting", test_values);
  CU_add_test(s, "concurrent updates", test_concurrent);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
