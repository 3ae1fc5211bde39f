/* fuzz_replay.c: runs the fuzz target on every file of the given corpus
 * folders (or files), once each, without libFuzzer: the seeds become
 * regression tests in the normal (gcc, sanitizer) builds. Exit 0 when every
 * input ran; an invariant violation aborts inside the target. */
#include "common/files.h"
#include "common/mem.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path, size_t *n)
{
  char *buf = NULL;
  size_t len = 0;
  cmn_error err = {0};
  if (cmn_file_read(path, 1 << 20, &buf, &len, &err) < 0) {
    fprintf(stderr, "fuzz_replay: %s\n", err.msg);
    return -1;
  }
  LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
  free(buf);
  (*n)++;
  return 0;
}

static int replay_dir(const char *dir, size_t *n)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return replay_file(dir, n);
  char **names = NULL;
  size_t k = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 64;
      names = cmn_realloc(names, cap * sizeof(*names));
    }
    names[k++] = cmn_asprintf("%s/%s", dir, e->d_name);
  }
  closedir(d);
  if (k > 1)
    qsort(names, k, sizeof(*names), replay_cmp);
  int rc = 0;
  for (size_t i = 0; i < k; i++) {
    if (cmn_is_regular_file(names[i]) && replay_file(names[i], n) < 0)
      rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  LLVMFuzzerInitialize(&argc, &argv);
  size_t n = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++)
    if (replay_dir(argv[i], &n) < 0)
      rc = 1;
  printf("fuzz_replay: %zu inputs replayed, every invariant held\n", n);
  if (n == 0) {
    fprintf(stderr, "fuzz_replay: no inputs found\n");
    return 1;
  }
  return rc;
}
