/* test_console.c: CUnit tests of the console file (agent/console.c) on real
 * files in a temp dir: reads by absolute offset, the retained window, rotation
 * by hole punching (skipped counts, bounded st_blocks), and an appender with
 * O_APPEND running while rotation repeats: nothing it wrote after the cut is
 * lost or changed. Skips the rotation tests (with a message) when the temp
 * filesystem cannot punch holes. */
#include "agent/console.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[64];
static int n_file;

static int suite_init(void)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/ember-console-XXXXXX");
  return mkdtemp(tmp_root) == NULL ? -1 : 0;
}

static int suite_clean(void)
{
  cmn_error err = {0};
  return cmn_rm_rf(tmp_root, &err);
}

static char *new_path(void) { return cmn_asprintf("%s/console-%d.log", tmp_root, ++n_file); }

/* The byte at absolute offset i of the test pattern. */
static uint8_t pat(int64_t i) { return (uint8_t)((i * 131 + i / 251) & 0xff); }

static void append_pattern(int fd, int64_t from, int64_t n)
{
  uint8_t b[8192];
  while (n > 0) {
    size_t k = n < (int64_t)sizeof b ? (size_t)n : sizeof b;
    for (size_t j = 0; j < k; j++)
      b[j] = pat(from + (int64_t)j);
    CU_ASSERT_EQUAL_FATAL(write(fd, b, k), (ssize_t)k);
    from += (int64_t)k;
    n -= (int64_t)k;
  }
}

static int open_append(const char *p)
{
  return open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* Reads [off, off+n) through agent_console_read in chunks; checks the pattern. */
static void check_range(int fd, int64_t off, int64_t n)
{
  uint8_t buf[5000];
  while (n > 0) {
    int64_t at, skipped;
    cmn_error err = {0};
    ssize_t got = agent_console_read(fd, off, buf, sizeof buf, &at, &skipped, &err);
    CU_ASSERT_FATAL(got > 0);
    CU_ASSERT_EQUAL(at, off);
    CU_ASSERT_EQUAL(skipped, 0);
    for (ssize_t j = 0; j < got; j++)
      if (buf[j] != pat(off + j)) {
        CU_FAIL("byte differs");
        return;
      }
    off += got;
    n -= got;
  }
}

static bool can_punch(void)
{
  cleanup_free char *p = new_path();
  int fd = open_append(p);
  append_pattern(fd, 0, 65536);
  bool ok = fallocate(fd, 0x02 | 0x01, 0, 4096) == 0; /* PUNCH_HOLE | KEEP_SIZE */
  close(fd);
  if (!ok)
    fprintf(stderr, "SKIP: %s cannot punch holes (%s)\n", tmp_root, strerror(errno));
  return ok;
}

static void test_missing_and_not_regular(void)
{
  cmn_error err = {0};
  cleanup_free char *p = new_path();
  CU_ASSERT(agent_console_open(p, &err) < 0);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  int64_t start = -1;
  CU_ASSERT_EQUAL(agent_console_rotate(p, 65536, &start, &err), 0);
  CU_ASSERT(mkfifo(p, 0600) == 0);
  err = (cmn_error){0};
  CU_ASSERT(agent_console_open(p, &err) < 0); /* does not block on the FIFO */
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  cleanup_free char *l = cmn_asprintf("%s.link", p);
  CU_ASSERT(symlink("/etc/passwd", l) == 0);
  CU_ASSERT(agent_console_open(l, &err) < 0);
}

static void test_offsets(void)
{
  cmn_error err = {0};
  cleanup_free char *p = new_path();
  int w = open_append(p);
  CU_ASSERT_FATAL(w >= 0);
  append_pattern(w, 0, 20000);
  int fd = agent_console_open(p, &err);
  CU_ASSERT_FATAL(fd >= 0);
  int64_t start, end;
  CU_ASSERT_EQUAL(agent_console_window(fd, &start, &end, &err), 0);
  CU_ASSERT_EQUAL(start, 0);
  CU_ASSERT_EQUAL(end, 20000);
  check_range(fd, 0, 20000);
  check_range(fd, 12345, 20000 - 12345);
  /* At and past the end: nothing, no skip. */
  uint8_t buf[16];
  int64_t at, sk;
  CU_ASSERT_EQUAL(agent_console_read(fd, 20000, buf, sizeof buf, &at, &sk, &err), 0);
  CU_ASSERT_EQUAL(at, 20000);
  CU_ASSERT_EQUAL(sk, 0);
  CU_ASSERT_EQUAL(agent_console_read(fd, 30000, buf, sizeof buf, &at, &sk, &err), 0);
  CU_ASSERT_EQUAL(at, 30000);
  CU_ASSERT_EQUAL(sk, 0);
  /* Growth is seen through the same fd. */
  append_pattern(w, 20000, 100);
  CU_ASSERT_EQUAL(agent_console_read(fd, 20000, buf, sizeof buf, &at, &sk, &err), 16);
  CU_ASSERT_EQUAL(buf[0], pat(20000));
  /* Below the limit nothing is punched. */
  CU_ASSERT_EQUAL(agent_console_rotate(p, 1 << 20, &start, &err), 0);
  CU_ASSERT_EQUAL(start, 0);
  close(fd);
  close(w);
}

static void test_rotate_skipped(void)
{
  if (!can_punch())
    return;
  cmn_error err = {0};
  cleanup_free char *p = new_path();
  int w = open_append(p);
  const int64_t max = 65536, total = 1000000;
  append_pattern(w, 0, total);
  int64_t start = -1;
  CU_ASSERT_EQUAL(agent_console_rotate(p, max, &start, &err), 1);
  int64_t cut = (total - max / 2) / 4096 * 4096;
  struct stat st;
  CU_ASSERT_FATAL(stat(p, &st) == 0);
  CU_ASSERT_EQUAL(st.st_size, total); /* offsets unchanged */
  CU_ASSERT((int64_t)st.st_blocks * 512 <= max);
  CU_ASSERT(start >= cut && start <= cut + 4096);
  int fd = agent_console_open(p, &err);
  CU_ASSERT_FATAL(fd >= 0);
  /* Reading from 0 skips to the retained start and says how much. */
  uint8_t buf[100];
  int64_t at, sk;
  CU_ASSERT_EQUAL(agent_console_read(fd, 0, buf, sizeof buf, &at, &sk, &err), 100);
  CU_ASSERT_EQUAL(at, start);
  CU_ASSERT_EQUAL(sk, start);
  CU_ASSERT_EQUAL(buf[0], pat(start));
  CU_ASSERT_EQUAL(agent_console_read(fd, 1000, buf, sizeof buf, &at, &sk, &err), 100);
  CU_ASSERT_EQUAL(sk, start - 1000);
  check_range(fd, start, total - start);
  /* The tail: the last N bytes. */
  int64_t s2, e2;
  CU_ASSERT_EQUAL(agent_console_window(fd, &s2, &e2, &err), 0);
  CU_ASSERT_EQUAL(s2, start);
  CU_ASSERT_EQUAL(e2, total);
  check_range(fd, e2 - 777, 777);
  /* Again with no growth: nothing more to punch. */
  CU_ASSERT_EQUAL(agent_console_rotate(p, max, &start, &err), 0);
  close(fd);
  close(w);
}

typedef struct appender {
  char *path;
  atomic_bool stop;
  int64_t written;
} appender;

static void *append_main(void *arg)
{
  appender *a = arg;
  int fd = open_append(a->path);
  uint8_t b[3001];
  while (!atomic_load(&a->stop)) {
    /* Odd sizes so writes straddle every block boundary. */
    size_t k = 1 + (size_t)(a->written % 2999);
    for (size_t j = 0; j < k; j++)
      b[j] = pat(a->written + (int64_t)j);
    if (write(fd, b, k) != (ssize_t)k)
      break;
    a->written += (int64_t)k;
  }
  close(fd);
  return NULL;
}

static void test_rotate_concurrent_appender(void)
{
  if (!can_punch())
    return;
  cmn_error err = {0};
  cleanup_free char *p = new_path();
  close(open_append(p));
  appender a = {.path = p};
  pthread_t t;
  CU_ASSERT_FATAL(pthread_create(&t, NULL, append_main, &a) == 0);
  const int64_t max = 65536;
  int punched = 0;
  int64_t peak = 0;
  for (int i = 0; i < 3000; i++) {
    int rc = agent_console_rotate(p, max, NULL, &err);
    CU_ASSERT(rc >= 0);
    punched += rc == 1;
    struct stat st;
    if (stat(p, &st) == 0 && (int64_t)st.st_blocks * 512 > peak)
      peak = (int64_t)st.st_blocks * 512;
    if (i % 100 == 0)
      usleep(1000);
  }
  atomic_store(&a.stop, true);
  pthread_join(t, NULL);
  CU_ASSERT(punched > 10);
  CU_ASSERT(a.written > 10 * max);
  struct stat st;
  CU_ASSERT_FATAL(stat(p, &st) == 0);
  CU_ASSERT_EQUAL(st.st_size, a.written);
  /* Every retained byte is exactly what was written at that offset: the
   * retained part is the last bytes written, none lost to the punches. */
  int fd = agent_console_open(p, &err);
  CU_ASSERT_FATAL(fd >= 0);
  int64_t start, end;
  CU_ASSERT_EQUAL(agent_console_window(fd, &start, &end, &err), 0);
  CU_ASSERT_EQUAL(end, a.written);
  CU_ASSERT(start > 0);
  CU_ASSERT(end - start >= max / 2 - 4096 || end - start == end);
  check_range(fd, start, end - start);
  close(fd);
  /* Disk use stayed bounded while the appender raced (a little slack for
   * what is appended between two passes). */
  fprintf(stderr, "  appended %lld bytes, %d punches, peak allocation %lld\n", (long long)a.written,
          punched, (long long)peak);
  CU_ASSERT(peak < 64 * max);
  CU_ASSERT_EQUAL(agent_console_rotate(p, max, NULL, &err) >= 0, true);
  CU_ASSERT_FATAL(stat(p, &st) == 0);
  CU_ASSERT((int64_t)st.st_blocks * 512 <= max);
}

/* Reader racing the rotation: what it returns is never zeros from a punch. */
static void test_read_during_rotation(void)
{
  if (!can_punch())
    return;
  cmn_error err = {0};
  cleanup_free char *p = new_path();
  close(open_append(p));
  appender a = {.path = p};
  pthread_t t;
  CU_ASSERT_FATAL(pthread_create(&t, NULL, append_main, &a) == 0);
  int fd = agent_console_open(p, &err);
  CU_ASSERT_FATAL(fd >= 0);
  int64_t off = 0, got_total = 0, skipped_total = 0;
  uint8_t buf[4096];
  int bad = 0;
  for (int i = 0; i < 20000 && got_total < 4 * 1024 * 1024; i++) {
    agent_console_rotate(p, 65536, NULL, &err);
    int64_t at, sk;
    ssize_t n = agent_console_read(fd, off, buf, sizeof buf, &at, &sk, &err);
    CU_ASSERT_FATAL(n >= 0);
    CU_ASSERT_EQUAL(at, off + sk);
    for (ssize_t j = 0; j < n; j++)
      bad += buf[j] != pat(at + j);
    skipped_total += sk;
    got_total += n;
    off = at + n;
  }
  atomic_store(&a.stop, true);
  pthread_join(t, NULL);
  close(fd);
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT(got_total > 0);
  fprintf(stderr, "  read %lld bytes, %lld skipped\n", (long long)got_total,
          (long long)skipped_total);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("console", suite_init, suite_clean);
  CU_add_test(s, "missing, FIFO, symlink", test_missing_and_not_regular);
  CU_add_test(s, "offsets and growth", test_offsets);
  CU_add_test(s, "rotation: bounded blocks, skipped", test_rotate_skipped);
  CU_add_test(s, "rotation with a concurrent appender", test_rotate_concurrent_appender);
  CU_add_test(s, "reads during rotation", test_read_during_rotation);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
  CU_cleanup_registry();
  return fails ? 1 : 0;
}
