/* test_exec_server.c: CUnit tests of the parts of the guest agent RPCs
 * (agent/server/exec.c, copy.c) that need no guest: the checks of ExecStart
 * and of copy paths, and the backpressure wait of the stream queue
 * (srv_stream_wait_room in server.c). */
#include "agent/server/internal.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int check_start(Ember__V1__ExecStart *st, cmn_error *err)
{
  memset(err, 0, sizeof *err);
  return srv_exec_check_start(st, err);
}

static void test_exec_start_checks(void)
{
  cmn_error err;
  char *cmd[] = {(char[]){"echo"}, (char[]){"hi"}};
  char *env[] = {(char[]){"A=b"}, (char[]){"=bad"}};
  Ember__V1__ExecStart st = EMBER__V1__EXEC_START__INIT;
  char vm1[] = "vm1", empty[] = "";
  st.id = vm1;
  st.n_command = 2;
  st.command = cmd;
  CU_ASSERT_EQUAL(check_start(&st, &err), 0);

  st.id = empty;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(err.field, "start.id");
  st.id = vm1;

  st.n_command = 0;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.command");
  st.n_command = 2;

  /* 1 MiB of command + env, NULs counted */
  static char big[(1 << 20) + 8];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  char *bigcmd[] = {cmd[0], big};
  st.command = bigcmd;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.command");
  st.command = cmd;
  big[(1 << 20) - 16] = '\0'; /* alone it fits; with the command over 1 MiB */
  char *bigenv[] = {big, env[0]};
  big[0] = 'K';
  big[1] = '=';
  st.n_env = 2;
  st.env = bigenv;
  CU_ASSERT_EQUAL(check_start(&st, &err), 0);
  big[(1 << 20) - 16] = 'x';
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.env");
  st.env = env; /* "=bad" */
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.env");
  st.n_env = 1;
  CU_ASSERT_EQUAL(check_start(&st, &err), 0);

  st.working_dir = (char[]){"relative"};
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.working_dir");
  st.working_dir = (char[]){"/tmp"};
  CU_ASSERT_EQUAL(check_start(&st, &err), 0);

  st.rows = 65536;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.rows");
  st.rows = 65535;
  st.cols = 70000;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.cols");
  st.cols = 80;

  Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
  d.seconds = -1;
  st.timeout = &d;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.timeout");
  st.timeout = NULL;
  st.ready_timeout = &d;
  CU_ASSERT_EQUAL(check_start(&st, &err), -1);
  CU_ASSERT_STRING_EQUAL(err.field, "start.ready_timeout");
  d.seconds = 3;
  CU_ASSERT_EQUAL(check_start(&st, &err), 0);
  CU_ASSERT_EQUAL(srv_ready_timeout_us(&d), 3000000);
  CU_ASSERT_EQUAL(srv_ready_timeout_us(NULL), 10000000);
}

static void test_copy_paths(void)
{
  cmn_error err = {0};
  CU_ASSERT_EQUAL(srv_copy_check_path("/etc/x", "path", &err), 0);
  const char *bad[] = {"", "etc/x", "/etc/", "/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    CU_ASSERT_EQUAL(srv_copy_check_path(bad[i], "header.path", &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_STRING_EQUAL(err.field, "header.path");
  }
  static char longp[5000];
  memset(longp, 'a', sizeof longp - 1);
  longp[0] = '/';
  CU_ASSERT_EQUAL(srv_copy_check_path(longp, "path", &err), -1);
}

/* A call object with only what srv_stream_wait_room uses. */
static srv_call *fake_call(void)
{
  srv_call *c = calloc(1, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->room_cv, &ca);
  pthread_condattr_destroy(&ca);
  return c;
}

static void free_call(srv_call *c)
{
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->room_cv);
  free(c);
}

static void *drain_later(void *arg)
{
  srv_call *c = arg;
  usleep(150000);
  pthread_mutex_lock(&c->mu);
  c->q_bytes = 0;
  c->q_count = 0;
  pthread_cond_broadcast(&c->room_cv); /* as srv__on_send does */
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static void test_wait_room(void)
{
  srv_call *c = fake_call();
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, 0), 1); /* empty: room */
  c->q_bytes = 1000;
  c->q_count = 1;
  int64_t t0 = srv_now_us();
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, t0 + 50000), 0); /* full until the deadline */
  CU_ASSERT(srv_now_us() - t0 >= 50000);
  c->q_bytes = 10;
  c->q_count = 10; /* too many messages */
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, srv_now_us() + 20000), 0);
  pthread_t th;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, drain_later, c), 0);
  t0 = srv_now_us();
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, t0 + 5000000), 1); /* woken by the send */
  CU_ASSERT(srv_now_us() - t0 < 3000000);
  pthread_join(th, NULL);
  c->q_bytes = 5000;
  c->finishing = true; /* the call is ending: never room */
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, 0), -1);
  c->finishing = false;
  c->closed = true;
  CU_ASSERT_EQUAL(srv_stream_wait_room(c, 1000, 10, 0), -1);
  free_call(c);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("exec_server", NULL, NULL);
  CU_add_test(s, "exec_start_checks", test_exec_start_checks);
  CU_add_test(s, "copy_paths", test_copy_paths);
  CU_add_test(s, "wait_room", test_wait_room);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
