/* test_rootfs_tool.c: a small command-line driver of agent/image's root disk
 * builder, for the integration test (test_rootfs_umoci.py) and the ext4 vs
 * erofs benchmark (test/bench/bench_rootfs.sh). Not installed.
 *
 *   test_rootfs_tool build CACHE_DIR DIGEST LAYER[@MEDIA_TYPE]...
 *       prints path=, built=, entries=, content_bytes=, image_bytes=,
 *       apply_us=, mkfs_us=, fixup_us=, total_us=
 *   test_rootfs_tool stage DIR LAYER[@MEDIA_TYPE]...   (content only, for erofs)
 *   test_rootfs_tool clone SRC DEST                     prints method=, us=
 *   test_rootfs_tool config CONFIG_JSON [ARG...]        prints argv=, env= (one a
 *       line each), workdir=, user=; ARGs (if any) override the image's Cmd
 * Environment: ROOTFS_MAX_BYTES, ROOTFS_HEADROOM_MIB. Exit 1 with the error
 * (code and message) on stderr. */
#include "agent/image/imgconfig.h"
#include "agent/image/layers.h"
#include "agent/image/rootfs.h"

#include "common/files.h"
#include "common/mem.h"
#include "common/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static img_layer *parse_layers(char **args, int n)
{
  img_layer *l = cmn_calloc((size_t)n, sizeof(*l));
  for (int i = 0; i < n; i++) {
    char *at = strchr(args[i], '@');
    if (at != NULL)
      *at = '\0';
    l[i].path = args[i];
    l[i].media_type = at ? at + 1 : NULL;
    const char *slash = strrchr(args[i], '/');
    l[i].digest = slash ? slash + 1 : args[i];
  }
  return l;
}

static int fail(const cmn_error *err)
{
  fprintf(stderr, "error %s: %s\n", cmn_code_name(err->code), err->msg);
  return 1;
}

int main(int argc, char **argv)
{
  cmn_error err = {0};
  if (argc >= 5 && strcmp(argv[1], "build") == 0) {
    img_rootfs_opts o = {0};
    const char *mb = getenv("ROOTFS_MAX_BYTES"), *hr = getenv("ROOTFS_HEADROOM_MIB");
    if (mb)
      o.limits.max_bytes = strtoull(mb, NULL, 10);
    if (hr) {
      o.headroom_bytes = strtoull(hr, NULL, 10) << 20;
      o.headroom_pct = 1;
    }
    img_layer *l = parse_layers(argv + 4, argc - 4);
    char *path = NULL;
    bool built = false;
    img_rootfs_stats st;
    int64_t t0 = cmn_now_us();
    int rc =
        img_rootfs_build(&o, argv[2], argv[3], l, (size_t)(argc - 4), &path, &built, &st, &err);
    int64_t t1 = cmn_now_us();
    free(l);
    if (rc < 0)
      return fail(&err);
    printf("path=%s\nbuilt=%d\nentries=%llu\ncontent_bytes=%llu\nimage_bytes=%llu\n"
           "apply_us=%lld\nmkfs_us=%lld\nfixup_us=%lld\ntotal_us=%lld\n",
           path, built, (unsigned long long)st.entries, (unsigned long long)st.content_bytes,
           (unsigned long long)st.image_bytes, (long long)st.apply_us, (long long)st.mkfs_us,
           (long long)st.fixup_us, (long long)(t1 - t0));
    free(path);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "stage") == 0) {
    img_tree *t = img_tree_new(argv[2], NULL, &err);
    if (t == NULL)
      return fail(&err);
    img_layer *l = parse_layers(argv + 3, argc - 3);
    int rc = 0;
    for (int i = 0; rc == 0 && i < argc - 3; i++)
      rc = img_tree_apply(t, &l[i], &err);
    free(l);
    if (rc == 0)
      printf("entries=%llu\ncontent_bytes=%llu\n", (unsigned long long)img_tree_entries(t),
             (unsigned long long)img_tree_content_bytes(t));
    img_tree_free(t);
    return rc < 0 ? fail(&err) : 0;
  }
  if (argc == 4 && strcmp(argv[1], "clone") == 0) {
    cmn_clone_method m;
    int64_t t0 = cmn_now_us();
    if (cmn_file_clone(argv[2], argv[3], &m, NULL, &err) < 0)
      return fail(&err);
    printf("method=%s\nus=%lld\n", cmn_clone_method_name(m), (long long)(cmn_now_us() - t0));
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "config") == 0) {
    char *json = NULL;
    size_t len = 0;
    if (cmn_file_read(argv[2], IMG_CONFIG_MAX_BYTES, &json, &len, &err) < 0)
      return fail(&err);
    img_overrides ov = {0};
    if (argc > 3) {
      ov.has_args = true;
      ov.args = (const char *const *)(argv + 3);
      ov.n_args = (size_t)(argc - 3);
    }
    img_run_config c;
    int rc = img_config_resolve(json, len, &ov, &c, &err);
    free(json);
    if (rc < 0)
      return fail(&err);
    for (size_t i = 0; i < c.argc; i++)
      printf("argv=%s\n", c.argv[i]);
    for (size_t i = 0; i < c.envc; i++)
      printf("env=%s\n", c.env[i]);
    printf("workdir=%s\nuser=%s\n", c.workdir, c.user);
    img_run_config_free(&c);
    return 0;
  }
  fprintf(stderr,
          "usage: %s build CACHE DIGEST LAYER[@TYPE]... | stage DIR LAYER... | "
          "clone SRC DEST | config JSON [ARG...]\n",
          argv[0]);
  return 2;
}
