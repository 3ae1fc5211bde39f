/* test_imgconfig.c: CUnit table of image configs x instance overrides ->
 * argv/env/workdir/user (agent/image/imgconfig.c), with docker run's rules:
 * an entrypoint override drops the image's Cmd unless args are given, args
 * replace Cmd, env merges by key, PATH defaults, workdir defaults to "/". */
#include "agent/image/imgconfig.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXV 8

typedef struct row {
  const char *what;
  const char *json;
  img_overrides ov;
  int code; /* expected error code, CMN_OK for success */
  const char *argv[MAXV];
  const char *env[MAXV];
  const char *workdir;
  const char *user;
  const char *msg; /* substring of the error */
} row;

static const char *EP_SH[] = {"/bin/sh", "-c"};
static const char *ARGS_LS[] = {"ls", "-l"};
static const char *ENV_OV[] = {"B=override", "NEW=1"};
static const char *ENV_PATH[] = {"PATH=/opt/bin"};
static const char *ENV_BAD[] = {"=nokey"};

#define IMG_FULL                                                                                   \
  "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/entry\","           \
  "\"--flag\"],\"Cmd\":[\"serve\",\"--port=80\"],"                                                 \
  "\"Env\":[\"A=1\",\"B=2\",\"PATH=/usr/bin:/bin\"],"                                              \
  "\"WorkingDir\":\"/app\",\"User\":\"nobody:nogroup\"},\"rootfs\":{\"type\":\"layers\","          \
  "\"diff_ids\":[]}}"
#define DEF_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const row rows[] = {
    {"image only",
     IMG_FULL,
     {0},
     CMN_OK,
     {"/entry", "--flag", "serve", "--port=80"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"args replace Cmd",
     IMG_FULL,
     {.has_args = true, .args = ARGS_LS, .n_args = 2},
     CMN_OK,
     {"/entry", "--flag", "ls", "-l"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"entrypoint override drops Cmd",
     IMG_FULL,
     {.has_entrypoint = true, .entrypoint = EP_SH, .n_entrypoint = 2},
     CMN_OK,
     {"/bin/sh", "-c"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"entrypoint and args",
     IMG_FULL,
     {.has_entrypoint = true,
      .entrypoint = EP_SH,
      .n_entrypoint = 2,
      .has_args = true,
      .args = ARGS_LS,
      .n_args = 2},
     CMN_OK,
     {"/bin/sh", "-c", "ls", "-l"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"empty entrypoint + args",
     IMG_FULL,
     {.has_entrypoint = true, .n_entrypoint = 0, .has_args = true, .args = ARGS_LS, .n_args = 2},
     CMN_OK,
     {"ls", "-l"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"empty entrypoint, no args: nothing to run",
     IMG_FULL,
     {.has_entrypoint = true, .n_entrypoint = 0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "nothing to run"},
    {"empty args clear Cmd",
     IMG_FULL,
     {.has_args = true, .n_args = 0},
     CMN_OK,
     {"/entry", "--flag"},
     {"A=1", "B=2", "PATH=/usr/bin:/bin"},
     "/app",
     "nobody:nogroup"},
    {"env merged by key, workdir override",
     IMG_FULL,
     {.env = ENV_OV, .n_env = 2, .workdir = "/srv"},
     CMN_OK,
     {"/entry", "--flag", "serve", "--port=80"},
     {"A=1", "B=override", "PATH=/usr/bin:/bin", "NEW=1"},
     "/srv",
     "nobody:nogroup"},
    {"Cmd only, defaults",
     "{\"config\":{\"Cmd\":[\"/bin/sh\"]}}",
     {0},
     CMN_OK,
     {"/bin/sh"},
     {DEF_PATH},
     "/",
     ""},
    {"no config at all, args given",
     "{\"architecture\":\"amd64\"}",
     {.has_args = true, .args = ARGS_LS, .n_args = 2},
     CMN_OK,
     {"ls", "-l"},
     {DEF_PATH},
     "/",
     ""},
    {"null fields",
     "{\"config\":{\"Entrypoint\":null,\"Cmd\":[\"x\"],\"Env\":null,"
     "\"WorkingDir\":\"\",\"User\":\"\"}}",
     {0},
     CMN_OK,
     {"x"},
     {DEF_PATH},
     "/",
     ""},
    {"PATH override kept",
     "{\"config\":{\"Cmd\":[\"x\"]}}",
     {.env = ENV_PATH, .n_env = 1},
     CMN_OK,
     {"x"},
     {"PATH=/opt/bin"},
     "/",
     ""},
    {"uid:gid user kept as written",
     "{\"config\":{\"Cmd\":[\"x\"],\"User\":\"1000:1000\"}}",
     {0},
     CMN_OK,
     {"x"},
     {DEF_PATH},
     "/",
     "1000:1000"},
    {"nothing to run",
     "{\"config\":{\"Env\":[\"A=1\"]}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "nothing to run"},
    {"not JSON",
     "{\"config\":",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "not valid JSON"},
    {"not an object",
     "[1,2]",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "not a JSON object"},
    {"Cmd as a string",
     "{\"config\":{\"Cmd\":\"/bin/sh\"}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "config.Cmd"},
    {"Entrypoint with a number",
     "{\"config\":{\"Entrypoint\":[\"a\",1]}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "config.Entrypoint"},
    {"Env without =",
     "{\"config\":{\"Cmd\":[\"x\"],\"Env\":[\"JUSTKEY\"]}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "config.Env"},
    {"override env without key",
     "{\"config\":{\"Cmd\":[\"x\"]}}",
     {.env = ENV_BAD, .n_env = 1},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "KEY=VALUE"},
    {"relative workdir override",
     "{\"config\":{\"Cmd\":[\"x\"]}}",
     {.workdir = "app"},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "absolute"},
    {"relative WorkingDir",
     "{\"config\":{\"Cmd\":[\"x\"],\"WorkingDir\":\"app\"}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "config.WorkingDir"},
    {"User not a string",
     "{\"config\":{\"Cmd\":[\"x\"],\"User\":0}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "config.User"},
    {"empty argv[0]",
     "{\"config\":{\"Cmd\":[\"\"]}}",
     {0},
     CMN_INVALID_ARGUMENT,
     {NULL},
     {NULL},
     NULL,
     NULL,
     "argv[0]"},
};

static size_t count(const char *const *v)
{
  size_t n = 0;
  while (n < MAXV && v[n] != NULL)
    n++;
  return n;
}

static void check_vec(const char *what, const char *name, char **got, size_t n,
                      const char *const *want)
{
  size_t wn = count(want);
  CU_ASSERT_EQUAL(n, wn);
  CU_ASSERT_PTR_NULL(got[n]); /* NULL-terminated */
  for (size_t i = 0; i < n && i < wn; i++) {
    CU_ASSERT_STRING_EQUAL(got[i], want[i]);
    if (strcmp(got[i], want[i]) != 0)
      fprintf(stderr, "%s: %s[%zu] = '%s', want '%s'\n", what, name, i, got[i], want[i]);
  }
  if (n != wn)
    fprintf(stderr, "%s: %s has %zu entries, want %zu\n", what, name, n, wn);
}

static void test_table(void)
{
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const row *r = &rows[i];
    img_run_config c;
    cmn_error err = {0};
    int rc = img_config_resolve(r->json, strlen(r->json), &r->ov, &c, &err);
    if (r->code != CMN_OK) {
      CU_ASSERT_EQUAL(rc, -1);
      CU_ASSERT_EQUAL(err.code, r->code);
      CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, r->msg));
      CU_ASSERT_PTR_NULL(c.argv); /* nothing allocated on failure */
      if (rc != -1 || strstr(err.msg, r->msg) == NULL)
        fprintf(stderr, "%s: rc %d: %s\n", r->what, rc, err.msg);
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    if (rc != 0) {
      fprintf(stderr, "%s: %s\n", r->what, err.msg);
      continue;
    }
    check_vec(r->what, "argv", c.argv, c.argc, r->argv);
    check_vec(r->what, "env", c.env, c.envc, r->env);
    CU_ASSERT_STRING_EQUAL(c.workdir, r->workdir);
    CU_ASSERT_STRING_EQUAL(c.user, r->user);
    img_run_config copy;
    img_run_config_copy(&copy, &c);
    img_run_config_free(&c);
    check_vec(r->what, "copied argv", copy.argv, copy.argc, r->argv);
    check_vec(r->what, "copied env", copy.env, copy.envc, r->env);
    CU_ASSERT_STRING_EQUAL(copy.workdir, r->workdir);
    img_run_config_free(&copy);
    CU_ASSERT_PTR_NULL(copy.argv);
  }
}

static void test_limits(void)
{
  img_run_config c;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(img_config_resolve("", 0, NULL, &c, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  size_t big = IMG_CONFIG_MAX_BYTES + 1;
  char *s = calloc(1, big + 1);
  memset(s, ' ', big);
  s[0] = '{';
  s[big - 1] = '}';
  cmn_err_clear(&err);
  CU_ASSERT_EQUAL(img_config_resolve(s, big, NULL, &c, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "over the limit"));
  free(s);
  img_run_config_free(NULL);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("imgconfig", NULL, NULL);
  CU_add_test(s, "configs x overrides (docker semantics)", test_table);
  CU_add_test(s, "empty and oversized configs", test_limits);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
