/* test_qemu_qmp.c: unit tests of the qemu driver's pieces that need no QEMU:
 * QMP framing (partial lines, CRLF, junk), command/reply matching by id with
 * events and stale replies interleaved, error.desc in the error, fd passing
 * with SCM_RIGHTS, a peer that hangs up; option escaping and the accelerator
 * choice. The QMP peer is a thread on the other end of a socketpair that
 * speaks the protocol as QEMU does (real QEMU is covered by
 * test/integration/test_qemu_driver.c). */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_framing(void)
{
  int sv[2];
  CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  close(sv[1]);
  /* open_fd would wait for a greeting; build the object through the feed API
   * on a connection whose peer is gone. */
  qemu_qmp *q = NULL;
  cmn_error err = {0};
  CU_ASSERT(qemu_qmp_open_fd(sv[0], 100, &q, &err) < 0);
  CU_ASSERT(err.code == CMN_UNAVAILABLE);
}

/* ---- a QEMU-like peer ---------------------------------------------------------- */

typedef struct peer {
  int fd;
  int got_fd_ok; /* 1 when getfd arrived with a valid descriptor */
} peer;

static void peer_send(int fd, const char *s)
{
  size_t n = strlen(s);
  CU_ASSERT(write(fd, s, n) == (ssize_t)n);
}

/* Reads one line; receives an SCM_RIGHTS fd if one comes with it. */
static cJSON *peer_read(int fd, int *got_fd)
{
  char line[4096];
  size_t n = 0;
  while (n < sizeof line - 1) {
    char c;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } ctl;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (r <= 0)
      return NULL;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm != NULL && cm->cmsg_type == SCM_RIGHTS && got_fd != NULL)
      memcpy(got_fd, CMSG_DATA(cm), sizeof(int));
    if (c == '\n')
      break;
    line[n++] = c;
  }
  line[n] = '\0';
  return cJSON_Parse(line);
}

static const char *req_id(const cJSON *req)
{
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
  return cJSON_IsString(id) ? id->valuestring : "";
}

static void *peer_main(void *arg)
{
  peer *p = arg;
  int fd = p->fd;
  char buf[512];
  /* Greeting in two pieces, CRLF ended, as QEMU does. */
  peer_send(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, ");
  peer_send(fd, "\"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n");
  cJSON *req = peer_read(fd, NULL);
  snprintf(buf, sizeof buf, "{\"return\": {}, \"id\": \"%s\"}\r\n", req_id(req));
  peer_send(fd, buf);
  cJSON_Delete(req);

  /* query-status: an event, a stale reply and a blank line before the reply,
   * which itself arrives split. */
  req = peer_read(fd, NULL);
  peer_send(fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
  peer_send(fd, "{\"return\": {\"status\": \"old\"}, \"id\": \"ember-0\"}\r\n\r\n");
  snprintf(buf, sizeof buf, "{\"return\": {\"status\": \"paused\", \"running\": false}, ");
  peer_send(fd, buf);
  snprintf(buf, sizeof buf, "\"id\": \"%s\"}\r\n", req_id(req));
  peer_send(fd, buf);
  cJSON_Delete(req);

  /* A command QEMU refuses. */
  req = peer_read(fd, NULL);
  snprintf(buf, sizeof buf,
           "{\"id\": \"%s\", \"error\": {\"class\": \"GenericError\", \"desc\": "
           "\"There's a migration process in progress\"}}\r\n",
           req_id(req));
  peer_send(fd, buf);
  cJSON_Delete(req);

  /* getfd with SCM_RIGHTS. */
  int got = -1;
  req = peer_read(fd, &got);
  struct stat st;
  p->got_fd_ok = got >= 0 && fstat(got, &st) == 0;
  if (got >= 0)
    close(got);
  snprintf(buf, sizeof buf, "{\"return\": {}, \"id\": \"%s\"}\r\n", req_id(req));
  peer_send(fd, buf);
  cJSON_Delete(req);

  /* An event nobody asked for yet, then an unknown command, then hang up. */
  peer_send(fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\r\n");
  req = peer_read(fd, NULL);
  snprintf(buf, sizeof buf,
           "{\"id\": \"%s\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": "
           "\"The command nope has not been found\"}}\r\n",
           req_id(req));
  peer_send(fd, buf);
  cJSON_Delete(req);
  req = peer_read(fd, NULL); /* query-status, never answered */
  cJSON_Delete(req);
  shutdown(fd, SHUT_RDWR);
  close(fd);
  return NULL;
}

static void test_protocol(void)
{
  int sv[2];
  CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  peer p = {.fd = sv[1]};
  pthread_t th;
  CU_ASSERT_FATAL(pthread_create(&th, NULL, peer_main, &p) == 0);

  qemu_qmp *q = NULL;
  cmn_error err = {0};
  CU_ASSERT_FATAL(qemu_qmp_open_fd(sv[0], 5000, &q, &err) == 0);

  cJSON *ret = NULL;
  CU_ASSERT(qemu_qmp_execute(q, "query-status", NULL, -1, 5000, &ret, &err) == 0);
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(ret, "status");
  CU_ASSERT(cJSON_IsString(st) && strcmp(st->valuestring, "paused") == 0);
  cJSON_Delete(ret);
  CU_ASSERT(qemu_qmp_has_event(q, "STOP"));

  cJSON *args = cJSON_CreateObject();
  cJSON_AddStringToObject(args, "uri", "fd:x");
  CU_ASSERT(qemu_qmp_execute(q, "migrate", args, -1, 5000, NULL, &err) < 0);
  CU_ASSERT(err.code == CMN_INTERNAL);
  CU_ASSERT(strcmp(err.msg, "migrate: There's a migration process in progress") == 0);

  int fds[2];
  CU_ASSERT_FATAL(pipe2(fds, O_CLOEXEC) == 0);
  args = cJSON_CreateObject();
  cJSON_AddStringToObject(args, "fdname", "f");
  CU_ASSERT(qemu_qmp_execute(q, "getfd", args, fds[0], 5000, NULL, &err) == 0);
  close(fds[0]);
  close(fds[1]);

  CU_ASSERT(qemu_qmp_execute(q, "nope", NULL, -1, 5000, NULL, &err) < 0);
  CU_ASSERT(err.code == CMN_UNIMPLEMENTED);
  cJSON *data = NULL;
  CU_ASSERT(qemu_qmp_wait_event(q, "MIGRATION", 1000, &data, &err) == 0);
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(data, "status");
  CU_ASSERT(cJSON_IsString(ms) && strcmp(ms->valuestring, "completed") == 0);
  cJSON_Delete(data);
  CU_ASSERT(qemu_qmp_wait_event(q, "STOP", 1000, NULL, &err) == 0);

  CU_ASSERT(qemu_qmp_execute(q, "query-status", NULL, -1, 5000, NULL, &err) < 0);
  CU_ASSERT(err.code == CMN_UNAVAILABLE);
  pthread_join(th, NULL);
  CU_ASSERT(p.got_fd_ok == 1);
  qemu_qmp_close(q);
}

static void test_timeout(void)
{
  int sv[2];
  CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  qemu_qmp *q = NULL;
  cmn_error err = {0};
  /* No greeting ever comes. */
  CU_ASSERT(qemu_qmp_open_fd(sv[0], 50, &q, &err) < 0);
  CU_ASSERT(err.code == CMN_DEADLINE_EXCEEDED);
  close(sv[1]);
}

static void test_escape_and_accel(void)
{
  cleanup_free char *e = qemu_opt_escape("/a,b,,c");
  CU_ASSERT(strcmp(e, "/a,,b,,,,c") == 0);
  qemu_accel a;
  cleanup_free char *why = NULL;
  cmn_error err = {0};
  CU_ASSERT(qemu_accel_choose("tcg", &a, &why, &err) == 0 && a == QEMU_ACCEL_TCG);
  free(why);
  why = NULL;
  CU_ASSERT(qemu_accel_choose("bogus", &a, &why, &err) < 0 && err.code == CMN_INVALID_ARGUMENT);
  CU_ASSERT(qemu_accel_choose("auto", &a, &why, &err) == 0);
  printf("\n  auto: %s\n", why);
  /* On PVM hosts, auto must not pick KVM. */
  struct stat st;
  if (stat("/sys/module/kvm_pvm", &st) == 0)
    CU_ASSERT(a == QEMU_ACCEL_TCG);
}

static void test_args(void)
{
  qemu_host h = {.binary = (char *)"/usr/bin/qemu-system-x86_64",
                 .machine = (char *)"microvm",
                 .accel = QEMU_ACCEL_TCG};
  vmm_disk disks[] = {{.path = (char *)"/d/x,y.img", .read_only = true}};
  vmm_nic nics[] = {{.tap = (char *)"tap0", .mac = (char *)"02:00:00:00:00:01"}};
  vmm_spec spec = {.vcpus = 2,
                   .memory_mib = 128,
                   .kernel = (char *)"/k/vmlinux",
                   .cmdline = (char *)"console=ttyS0",
                   .disks = disks,
                   .n_disks = 1,
                   .nics = nics,
                   .n_nics = 1};
  vmm_vm vm = {.id = "i1", .dir = "/v", .console_path = "/v/console.log", .spec = &spec};
  qemu_launch l = {.ram_path = "/v/snap/memory", .incoming = true};
  cmn_error err = {0};
  char **argv = qemu_args_build(&h, &vm, &l, &err);
  CU_ASSERT_FATAL(argv != NULL);
  char *line = cmn_strdup(" ");
  for (char **p = argv; *p; p++) {
    char *next = cmn_asprintf("%s%s ", line, *p);
    free(line);
    line = next;
  }
  CU_ASSERT(strstr(line, "-incoming defer") != NULL);
  CU_ASSERT(strstr(line, " -S ") != NULL);
  CU_ASSERT(strstr(line, "mem-path=/v/snap/memory,share=on") != NULL);
  CU_ASSERT(strstr(line, "file=/d/x,,y.img,if=none,id=disk0,format=raw,readonly=on") != NULL);
  CU_ASSERT(strstr(line, "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01") != NULL);
  CU_ASSERT(strstr(line, "script=no,downscript=no") != NULL);
  CU_ASSERT(strstr(line, "isa-serial,chardev=ctl,index=1") != NULL);
  free(line);
  qemu_args_free(argv);

  spec.kernel = NULL;
  CU_ASSERT(qemu_args_build(&h, &vm, &l, &err) == NULL && err.code == CMN_INVALID_ARGUMENT);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("qemu_qmp", NULL, NULL);
  CU_add_test(s, "peer hangs up before the greeting", test_framing);
  CU_add_test(s, "protocol: ids, events, errors, fd passing", test_protocol);
  CU_add_test(s, "greeting timeout", test_timeout);
  CU_add_test(s, "option escaping, accelerator choice", test_escape_and_accel);
  CU_add_test(s, "command line", test_args);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failures = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failures == 0 ? 0 : 1;
}
