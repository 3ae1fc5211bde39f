/* test_image_units.c: CUnit tests of agent/image: references, digests, the
 * store (verified commit, records, delete/in-use, GC, budget, crash leftovers
 * cleaned on reopen, one fetch per digest under concurrency) and imports of
 * OCI layouts, docker-archives and plain files built here with libarchive. */
#include "agent/image/digest.h"
#include "agent/image/import.h"
#include "agent/image/ref.h"
#include "agent/image/store.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <CUnit/Basic.h>
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------- helpers ---------------- */

static char *fresh_dir(void)
{
  char tmpl[] = "/tmp/ember-img-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpl));
  return cmn_strdup(tmpl);
}

static void rm_dir(char *dir)
{
  cmn_error err = {0};
  cmn_rm_rf(dir, &err);
  free(dir);
}

static int count_files(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static int count_sub(const char *root, const char *sub)
{
  char *p = cmn_asprintf("%s/images/%s", root, sub);
  int n = count_files(p);
  free(p);
  return n;
}

static img_store *open_store(const char *dir, int64_t budget, img_in_use_fn fn, void *opaque)
{
  img_store_opts o = {
      .data_dir = dir, .budget_bytes = budget, .in_use = fn, .in_use_opaque = opaque};
  img_store *s = NULL;
  cmn_error err = {0};
  CU_ASSERT_EQUAL(img_store_open(&o, &s, &err), 0);
  if (s == NULL)
    fprintf(stderr, "open: %s\n", err.msg);
  return s;
}

/* Writes a blob of content into the store; returns 0/1 (cached) or < 0. */
static int put_blob(img_lease *l, const char *digest, const char *content, cmn_error *err)
{
  img_blob_writer *w = NULL;
  int r = img_blob_begin(l, digest, (int64_t)strlen(content), 0, NULL, NULL, &w, err);
  if (r != 0)
    return r;
  if (img_blob_write(w, content, strlen(content), err) < 0) {
    img_blob_abort(w);
    return -1;
  }
  return img_blob_commit(w, NULL, err);
}

/* ---------------- references ---------------- */

static void test_ref_valid(void)
{
  struct {
    const char *in, *registry, *repo, *tag, *digest, *canon;
  } ok[] = {
      {"127.0.0.1:5000/busybox:1.36", "127.0.0.1:5000", "busybox", "1.36", NULL, NULL},
      {"localhost/a/b/c", "localhost", "a/b/c", "latest", NULL, "localhost/a/b/c:latest"},
      {"reg.h.test/my_app-x.y/z__w", "reg.h.test", "my_app-x.y/z__w", "latest", NULL,
       "reg.h.test/my_app-x.y/z__w:latest"},
      {"[::1]:5000/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
       "[::1]:5000", "x", NULL,
       "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL},
      {"h.test:1/x:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
       "h.test:1", "x", "t",
       "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    img_ref r;
    cmn_error err = {0};
    CU_ASSERT_EQUAL_FATAL(img_ref_parse(ok[i].in, &r, &err), 0);
    CU_ASSERT_STRING_EQUAL(r.registry, ok[i].registry);
    CU_ASSERT_STRING_EQUAL(r.repository, ok[i].repo);
    if (ok[i].tag) {
      CU_ASSERT_STRING_EQUAL(r.tag, ok[i].tag);
    } else {
      CU_ASSERT_PTR_NULL(r.tag);
    }
    if (ok[i].digest) {
      CU_ASSERT_STRING_EQUAL(r.digest, ok[i].digest);
    }
    char *s = img_ref_string(&r);
    CU_ASSERT_STRING_EQUAL(s, ok[i].canon ? ok[i].canon : ok[i].in);
    free(s);
    img_ref_free(&r);
  }
}

static void test_ref_invalid(void)
{
  char big[700];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  memcpy(big, "h.test/", 7);
  const char *bad[] = {
      "",
      "busybox",
      "library/busybox",
      "h.test/",
      "h.test/UPPER",
      "h.test/a..b",
      "h.test/a/",
      "h.test/-a",
      "h.test/a:",
      "h.test/a:-t",
      "h.test:0/a",
      "h.test:99999/a",
      "h.test:x/a",
      "-h.test/a",
      "h..test/a",
      "h.test/a b",
      "h.test/a\tb",
      "h.test/a@sha256:1",
      "h.test/a@md5:00",
      big,
      "h.test/a:t\x7f",
      "h.test/a:ü",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    img_ref r;
    cmn_error err = {0};
    CU_ASSERT_EQUAL(img_ref_parse(bad[i], &r, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(r.registry);
    if (img_ref_parse(bad[i], &r, &err) == 0) {
      fprintf(stderr, "accepted: '%s'\n", bad[i]);
      img_ref_free(&r);
    }
  }
  img_ref r;
  cmn_error err = {0};
  img_ref_parse("busybox", &r, &err);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no registry host"));
}

/* ---------------- digests ---------------- */

#define ABC_SHA "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY_SHA "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_digest(void)
{
  char out[IMG_DIGEST_LEN + 1];
  img_sha256_buf("abc", 3, out);
  CU_ASSERT_STRING_EQUAL(out, ABC_SHA);
  img_sha256 *h = img_sha256_new();
  img_sha256_update(h, "a", 1);
  img_sha256_update(h, "", 0);
  img_sha256_update(h, "bc", 2);
  img_sha256_final(h, out);
  img_sha256_free(h);
  CU_ASSERT_STRING_EQUAL(out, ABC_SHA);
  CU_ASSERT_TRUE(img_digest_valid(ABC_SHA));
  CU_ASSERT_FALSE(img_digest_valid("sha256:BA7816bf8f01cfea414140de5dae2223"
                                   "b00361a396177a9cb410ff61f20015ad"));
  CU_ASSERT_FALSE(img_digest_valid("sha256:ba78"));
  CU_ASSERT_FALSE(img_digest_valid(ABC_SHA "0"));
  CU_ASSERT_FALSE(img_digest_valid("sha512:ba7816bf8f01cfea414140de5dae2223"
                                   "b00361a396177a9cb410ff61f20015ad"));
  CU_ASSERT_FALSE(img_digest_valid(NULL));
  cmn_error err = {0};
  CU_ASSERT_EQUAL(img_digest_check("sha512:00", "x", &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "only sha256"));
}

/* ---------------- store ---------------- */

static void test_store_commit_verify(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  img_lease *l = img_lease_new(s);
  cmn_error err = {0};
  /* wrong digest: refused, nothing kept */
  CU_ASSERT_EQUAL(put_blob(l, EMPTY_SHA, "abc", &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "digest mismatch"));
  img_blob_writer *w = NULL;
  CU_ASSERT_EQUAL(img_blob_begin(l, ABC_SHA, 2, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, "abc", 3, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "larger than its descriptor"));
  img_blob_abort(w);
  CU_ASSERT_EQUAL(img_blob_begin(l, ABC_SHA, 3, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, "abd", 3, &err), 0);
  CU_ASSERT_EQUAL(img_blob_commit(w, NULL, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "digest mismatch"));
  /* truncated: 2 of 3 bytes */
  CU_ASSERT_EQUAL(img_blob_begin(l, ABC_SHA, 3, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, "ab", 2, &err), 0);
  CU_ASSERT_EQUAL(img_blob_commit(w, NULL, &err), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "truncated"));
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "tmp"), 0);
  /* right: committed; a second begin finds it */
  CU_ASSERT_EQUAL(put_blob(l, ABC_SHA, "abc", &err), 0);
  CU_ASSERT_TRUE(img_store_has_blob(s, ABC_SHA));
  CU_ASSERT_EQUAL(put_blob(l, ABC_SHA, "abc", &err), 1);
  /* unknown digest: computed */
  char got[IMG_DIGEST_LEN + 1];
  CU_ASSERT_EQUAL(img_blob_begin(l, NULL, -1, 2, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, "abc", 3, &err), -1); /* over max 2 */
  img_blob_abort(w);
  CU_ASSERT_EQUAL(img_blob_begin(l, NULL, -1, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, "abc", 3, &err), 0);
  CU_ASSERT_EQUAL(img_blob_commit(w, got, &err), 0);
  CU_ASSERT_STRING_EQUAL(got, ABC_SHA);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 1);
  CU_ASSERT_EQUAL(count_sub(dir, "tmp"), 0);
  img_lease_free(l);
  /* unreferenced once the lease is gone: GC removes it */
  int64_t freed = 0;
  size_t removed = 0;
  CU_ASSERT_EQUAL(img_store_gc(s, &freed, &removed, &err), 0);
  CU_ASSERT_EQUAL(freed, 3);
  CU_ASSERT_EQUAL(removed, 1);
  img_store_close(s);
  rm_dir(dir);
}

/* A fake OCI record of a manifest, config and n layers (contents given). */
static int make_image(img_store *s, const char *name, const char *const *contents, size_t n,
                      img_record *out, cmn_error *err)
{
  img_lease *l = img_lease_new(s);
  img_record r = {.kind = IMG_KIND_OCI};
  r.layers = cmn_calloc(n + 1, sizeof(img_desc));
  char dg[IMG_DIGEST_LEN + 1];
  int ret = 0;
  for (size_t i = 0; i < n + 2 && ret >= 0; i++) {
    char *c = i < n ? cmn_strdup(contents[i])
                    : cmn_asprintf("%s-%s", i == n ? "config" : "manifest", name);
    img_sha256_buf(c, strlen(c), dg);
    ret = put_blob(l, dg, c, err);
    img_desc d = {cmn_strdup(dg), cmn_strdup("application/vnd.oci.image.layer.v1.tar"),
                  (int64_t)strlen(c)};
    if (i < n)
      r.layers[r.n_layers++] = d;
    else if (i == n)
      r.config = d;
    else
      r.manifest = d;
    free(c);
  }
  char *names[] = {(char *)name};
  r.names = cmn_calloc(2, sizeof(char *));
  r.names[0] = cmn_strdup(names[0]);
  r.n_names = 1;
  if (ret >= 0)
    ret = img_store_commit_record(l, &r, out, err);
  img_record_free(&r);
  img_lease_free(l);
  return ret < 0 ? -1 : 0;
}

static bool fake_in_use(void *opaque, const char *id, char *who, size_t n)
{
  const char *used = opaque;
  if (used != NULL && strcmp(used, id) == 0) {
    snprintf(who, n, "instances/vm-1");
    return true;
  }
  return false;
}

static void test_store_records_gc(void)
{
  char *dir = fresh_dir();
  char used[IMG_DIGEST_LEN + 1] = "";
  img_store *s = open_store(dir, 0, fake_in_use, used);
  cmn_error err = {0};
  const char *a[] = {"shared-layer", "layer-a"};
  const char *b[] = {"shared-layer", "layer-b"};
  img_record ra, rb, g;
  CU_ASSERT_EQUAL_FATAL(make_image(s, "h.test/a:1", a, 2, &ra, &err), 0);
  CU_ASSERT_EQUAL_FATAL(make_image(s, "h.test/b:1", b, 2, &rb, &err), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 7); /* shared layer once */
  CU_ASSERT_EQUAL(img_store_get(s, "h.test/a:1", &g, &err), 0);
  CU_ASSERT_STRING_EQUAL(g.id, ra.id);
  img_record_free(&g);
  CU_ASSERT_EQUAL(img_store_get(s, "h.test/a", &g, &err), -1); /* tag latest: none */
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(img_store_get(s, ra.id + 7, &g, &err), 0); /* bare hex */
  img_record_free(&g);
  size_t n = 0;
  img_record *all = NULL;
  CU_ASSERT_EQUAL(img_store_list(s, &all, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 2);
  img_records_free(all, n);
  /* the handed-out layers survive a delete until released */
  img_image_layers hl;
  CU_ASSERT_EQUAL_FATAL(img_store_image_layers(s, ra.id, &hl, &err), 0);
  CU_ASSERT_EQUAL(hl.n_layers, 2);
  CU_ASSERT_TRUE(cmn_is_regular_file(hl.layers[1].path));
  /* in use: refused */
  snprintf(used, sizeof(used), "%s", ra.id);
  CU_ASSERT_EQUAL(img_store_delete(s, "h.test/a:1", NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT_STRING_EQUAL(err.precondition, "IN_USE");
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "instances/vm-1"));
  used[0] = '\0';
  /* pinned: refused, naming the pin's owner, until unpinned */
  char pid[IMG_DIGEST_LEN + 1];
  CU_ASSERT_EQUAL(img_store_pin(s, "h.test/a:1", "instances/vm-2", pid, &err), 0);
  CU_ASSERT_STRING_EQUAL(pid, ra.id);
  CU_ASSERT_EQUAL(img_store_pin(s, "h.test/nope:1", "instances/vm-2", NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  CU_ASSERT_EQUAL(img_store_delete(s, ra.id, NULL, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "instances/vm-2"));
  img_store_unpin(s, ra.id, "instances/vm-2");
  int64_t freed = 0;
  CU_ASSERT_EQUAL(img_store_delete(s, "h.test/a:1", &freed, &err), 0);
  CU_ASSERT_EQUAL(freed, 0); /* still held by hl */
  CU_ASSERT_TRUE(cmn_is_regular_file(hl.layers[1].path));
  img_image_layers_free(&hl);
  size_t removed = 0;
  CU_ASSERT_EQUAL(img_store_gc(s, &freed, &removed, &err), 0);
  CU_ASSERT_EQUAL(removed, 3); /* layer-a, config-a, manifest-a; shared stays */
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 4);
  CU_ASSERT_EQUAL(img_store_delete(s, rb.id, &freed, &err), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "records"), 0);
  CU_ASSERT_EQUAL(img_store_delete(s, rb.id, &freed, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_NOT_FOUND);
  img_record_free(&ra);
  img_record_free(&rb);
  img_store_close(s);
  rm_dir(dir);
}

static void test_store_budget(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 100, NULL, NULL);
  cmn_error err = {0};
  img_lease *l = img_lease_new(s);
  CU_ASSERT_EQUAL(img_lease_reserve(l, 101, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "budget 100"));
  CU_ASSERT_EQUAL(img_lease_reserve(l, 60, &err), 0);
  img_lease *l2 = img_lease_new(s);
  CU_ASSERT_EQUAL(img_lease_reserve(l2, 50, &err), -1); /* 60 reserved */
  /* writing within the reservation is fine; beyond the budget is not */
  char big[80];
  memset(big, 'x', sizeof(big));
  img_blob_writer *w = NULL;
  CU_ASSERT_EQUAL(img_blob_begin(l2, NULL, -1, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, big, 41, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  img_blob_abort(w);
  CU_ASSERT_EQUAL(img_blob_begin(l, NULL, -1, 0, NULL, NULL, &w, &err), 0);
  CU_ASSERT_EQUAL(img_blob_write(w, big, 60, &err), 0);
  CU_ASSERT_EQUAL(img_blob_commit(w, NULL, &err), 0);
  img_lease_free(l);
  /* 60 bytes committed but unreferenced: a reservation GCs them first */
  CU_ASSERT_EQUAL(img_lease_reserve(l2, 90, &err), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 0);
  img_lease_free(l2);
  img_store_usage u;
  img_store_usage_get(s, &u);
  CU_ASSERT_EQUAL(u.used_bytes, 0);
  CU_ASSERT_EQUAL(u.reserved_bytes, 0);
  img_store_close(s);
  rm_dir(dir);
}

static void write_file(const char *path, const char *text)
{
  cmn_error err = {0};
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  CU_ASSERT_TRUE_FATAL(fd >= 0);
  CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  (void)err;
}

static void test_store_crash_leftovers(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  cmn_error err = {0};
  const char *a[] = {"layer-kept"};
  img_record ra;
  CU_ASSERT_EQUAL_FATAL(make_image(s, "h.test/kept:1", a, 1, &ra, &err), 0);
  img_store_close(s);
  /* What a crash can leave: a download in tmp/, a record being written, a
   * blob committed by a pull that never recorded, a record whose blob is gone
   * (hand-damaged), a garbage record. */
  char *p = cmn_asprintf("%s/images/tmp/blob.abc123", dir);
  write_file(p, "partial");
  free(p);
  p = cmn_asprintf("%s/images/records/%s.json.tmp.XyZ123", dir, ra.id + 7);
  write_file(p, "{\"id\":");
  free(p);
  char dg[IMG_DIGEST_LEN + 1];
  img_sha256_buf("orphan", 6, dg);
  p = cmn_asprintf("%s/images/blobs/sha256/%s", dir, dg + 7);
  write_file(p, "orphan");
  free(p);
  img_sha256_buf("missing", 7, dg);
  p = cmn_asprintf("%s/images/records/%s.json", dir, dg + 7);
  char *rec = cmn_asprintf("{\"id\":\"%s\",\"kind\":\"kernel\",\"names\":[],"
                           "\"layers\":[{\"digest\":\"%s\",\"size\":7}],\"size\":7,"
                           "\"created\":1}",
                           dg, dg);
  write_file(p, rec);
  free(rec);
  free(p);
  img_sha256_buf("garbage", 7, dg);
  p = cmn_asprintf("%s/images/records/%s.json", dir, dg + 7);
  write_file(p, "not json");
  free(p);
  s = open_store(dir, 0, NULL, NULL);
  CU_ASSERT_EQUAL(count_sub(dir, "tmp"), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "records"), 1);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 3); /* layer, config, manifest */
  img_record g;
  CU_ASSERT_EQUAL(img_store_get(s, "h.test/kept:1", &g, &err), 0);
  CU_ASSERT_STRING_EQUAL(g.id, ra.id);
  img_record_free(&g);
  img_store_usage u;
  img_store_usage_get(s, &u);
  CU_ASSERT_EQUAL(u.images, 1);
  CU_ASSERT_EQUAL(u.blobs, 3);
  img_record_free(&ra);
  img_store_close(s);
  rm_dir(dir);
}

struct race {
  img_store *s;
  int rc;
  int64_t wrote;
};

static void *race_writer(void *arg)
{
  struct race *r = arg;
  img_lease *l = img_lease_new(r->s);
  cmn_error err = {0};
  img_blob_writer *w = NULL;
  r->rc = img_blob_begin(l, ABC_SHA, 3, 0, NULL, NULL, &w, &err);
  if (r->rc == 0) {
    usleep(200 * 1000); /* hold the digest in flight while the other thread arrives */
    img_blob_write(w, "abc", 3, &err);
    r->wrote = 3;
    r->rc = img_blob_commit(w, NULL, &err);
  }
  img_lease_free(l);
  return NULL;
}

static void test_store_one_fetch(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  struct race r[4] = {{s, 0, 0}, {s, 0, 0}, {s, 0, 0}, {s, 0, 0}};
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, race_writer, &r[i]);
  int64_t wrote = 0;
  int cached = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CU_ASSERT_TRUE(r[i].rc == 0 || r[i].rc == 1);
    wrote += r[i].wrote;
    cached += r[i].rc == 1;
  }
  CU_ASSERT_EQUAL(wrote, 3); /* one writer, three waited and found it */
  CU_ASSERT_EQUAL(cached, 3);
  img_store_close(s);
  rm_dir(dir);
}

/* Writers commit images sharing layers while another thread deletes and
 * collects: afterwards every record's blobs exist (a reopen keeps them all). */
struct churn {
  img_store *s;
  int id;
  int ok;
};

static void *churn_writer(void *arg)
{
  struct churn *c = arg;
  for (int i = 0; i < 60; i++) {
    char name[64], own[64];
    snprintf(name, sizeof(name), "h.test/w%d:%d", c->id, i % 5);
    snprintf(own, sizeof(own), "own-%d-%d", c->id, i);
    const char *layers[] = {"shared-base", own};
    cmn_error err = {0};
    img_record r;
    if (make_image(c->s, name, layers, 2, &r, &err) == 0) {
      c->ok++;
      img_record_free(&r);
    }
  }
  return NULL;
}

static void *churn_deleter(void *arg)
{
  struct churn *c = arg;
  for (int i = 0; i < 120; i++) {
    img_record *all = NULL;
    size_t n = 0;
    cmn_error err = {0};
    img_store_list(c->s, &all, &n, &err);
    if (n > 0)
      img_store_delete(c->s, all[(size_t)i % n].id, NULL, &err);
    img_records_free(all, n);
    img_image_layers hl;
    char key[64];
    snprintf(key, sizeof(key), "h.test/w0:%d", i % 5);
    if (img_store_image_layers(c->s, key, &hl, &err) == 0) {
      for (size_t k = 0; k < hl.n_layers; k++)
        if (!cmn_is_regular_file(hl.layers[k].path))
          c->ok = -1000; /* a held layer vanished */
      img_image_layers_free(&hl);
    }
    img_store_gc(c->s, NULL, NULL, &err);
  }
  return NULL;
}

static void test_store_churn(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  struct churn w[2] = {{s, 0, 0}, {s, 1, 0}}, d = {s, 9, 0};
  pthread_t t[3];
  pthread_create(&t[0], NULL, churn_writer, &w[0]);
  pthread_create(&t[1], NULL, churn_writer, &w[1]);
  pthread_create(&t[2], NULL, churn_deleter, &d);
  for (int i = 0; i < 3; i++)
    pthread_join(t[i], NULL);
  CU_ASSERT_EQUAL(w[0].ok, 60); /* commits never fail under concurrent GC */
  CU_ASSERT_EQUAL(w[1].ok, 60);
  CU_ASSERT_EQUAL(d.ok, 0);
  /* Blobs released after the last GC (a lease ending after a delete) go at
   * the next one: run it, then the accounting must match a fresh open. */
  cmn_error err = {0};
  CU_ASSERT_EQUAL(img_store_gc(s, NULL, NULL, &err), 0);
  img_store_usage u1, u2;
  img_store_usage_get(s, &u1);
  img_store_close(s);
  s = open_store(dir, 0, NULL, NULL);
  img_store_usage_get(s, &u2);
  CU_ASSERT_EQUAL(u1.images, u2.images); /* no record lost a blob */
  CU_ASSERT_EQUAL(u1.blobs, u2.blobs);   /* nothing unreferenced left */
  CU_ASSERT_EQUAL(u1.used_bytes, u2.used_bytes);
  img_store_close(s);
  rm_dir(dir);
}

/* ---------------- import ---------------- */

struct tarb {
  struct archive *a;
  char *buf;
  size_t len;
};

static la_ssize_t tar_write_cb(struct archive *a, void *ud, const void *b, size_t n)
{
  struct tarb *t = ud;
  t->buf = cmn_realloc(t->buf, t->len + n);
  memcpy(t->buf + t->len, b, n);
  t->len += n;
  return (la_ssize_t)n;
}

static void tar_begin(struct tarb *t)
{
  memset(t, 0, sizeof(*t));
  t->a = archive_write_new();
  archive_write_set_format_pax_restricted(t->a);
  archive_write_set_bytes_in_last_block(t->a, 1);
  archive_write_open(t->a, t, NULL, tar_write_cb, NULL);
}

static void tar_add(struct tarb *t, const char *name, const char *data, size_t len)
{
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, (la_int64_t)len);
  archive_write_header(t->a, e);
  archive_write_data(t->a, data, len);
  archive_entry_free(e);
}

static void tar_add_str(struct tarb *t, const char *name, const char *s)
{
  tar_add(t, name, s, strlen(s));
}

static void tar_add_blob(struct tarb *t, const char *content, char dg[IMG_DIGEST_LEN + 1])
{
  img_sha256_buf(content, strlen(content), dg);
  char *name = cmn_asprintf("blobs/sha256/%s", dg + 7);
  tar_add_str(t, name, content);
  free(name);
}

static void tar_end(struct tarb *t)
{
  archive_write_close(t->a);
  archive_write_free(t->a);
}

struct memsrc {
  const char *buf;
  size_t len, off, chunk;
};

static int mem_read(void *opaque, const void **buf, size_t *len, cmn_error *err)
{
  struct memsrc *m = opaque;
  if (m->off >= m->len)
    return 0;
  *buf = m->buf + m->off;
  *len = m->len - m->off < m->chunk ? m->len - m->off : m->chunk;
  m->off += *len;
  return 1;
}

static int do_import(img_store *s, int kind, const char *name, const char *buf, size_t len,
                     img_record *out, cmn_error *err)
{
  struct memsrc m = {buf, len, 0, 1000}; /* small chunks: entries span reads */
  img_import_opts o = {.kind = kind, .name = name, .read = mem_read, .opaque = &m};
  return img_import(s, &o, out, err);
}

/* An OCI layout tar: one layer (a tiny tar), config, manifest, index. corrupt:
 * the layer's bytes do not match its name. */
static void make_oci(struct tarb *t, const char *evil_name, bool corrupt)
{
  char lay[IMG_DIGEST_LEN + 1], cfg[IMG_DIGEST_LEN + 1], man[IMG_DIGEST_LEN + 1];
  tar_begin(t);
  tar_add_str(t, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  const char *layer = "layer-bytes (not a real tar; the store does not care)";
  if (corrupt) {
    img_sha256_buf(layer, strlen(layer), lay);
    char *name = cmn_asprintf("blobs/sha256/%s", lay + 7);
    tar_add_str(t, name, "other bytes");
    free(name);
  } else {
    tar_add_blob(t, layer, lay);
  }
  char *config = cmn_asprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
                              "\"layers\",\"diff_ids\":[\"%s\"]}}",
                              lay);
  tar_add_blob(t, config, cfg);
  char *manifest = cmn_asprintf(
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
      "\"size\":%zu},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
      "\"digest\":\"%s\",\"size\":%zu}]}",
      cfg, strlen(config), lay, strlen(layer));
  tar_add_blob(t, manifest, man);
  if (evil_name != NULL)
    tar_add_str(t, evil_name, "evil");
  char *index = cmn_asprintf(
      "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest."
      "v1+json\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image."
      "ref.name\":\"h.test/imported:v1\"},\"platform\":{\"os\":\"linux\",\"architecture\":"
      "\"amd64\"}}]}",
      man, strlen(manifest));
  tar_add_str(t, "index.json", index);
  tar_end(t);
  free(config);
  free(manifest);
  free(index);
}

static void test_import_oci(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  cmn_error err = {0};
  struct tarb t;
  make_oci(&t, NULL, false);
  img_record r;
  CU_ASSERT_EQUAL_FATAL(do_import(s, IMG_KIND_OCI, NULL, t.buf, t.len, &r, &err), 0);
  CU_ASSERT_EQUAL(r.kind, IMG_KIND_OCI);
  CU_ASSERT_EQUAL(r.n_layers, 1);
  CU_ASSERT_EQUAL_FATAL(r.n_names, 1);
  CU_ASSERT_STRING_EQUAL(r.names[0], "h.test/imported:v1");
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 3);
  img_record_free(&r);
  /* a second import of the same bytes under a name: same id, names merged */
  CU_ASSERT_EQUAL(do_import(s, IMG_KIND_OCI, "h.test/other", t.buf, t.len, &r, &err), 0);
  CU_ASSERT_EQUAL(r.n_names, 2);
  img_record_free(&r);
  free(t.buf);
  img_store_close(s);
  rm_dir(dir);
}

static void test_import_hostile(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  cmn_error err = {0};
  struct tarb t;
  img_record r;
  make_oci(&t, NULL, true);
  CU_ASSERT_EQUAL(do_import(s, IMG_KIND_OCI, NULL, t.buf, t.len, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "digest mismatch") ? strstr(err.msg, "digest mismatch")
                                                            : strstr(err.msg, "larger than"));
  free(t.buf);
  const char *evil[] = {"../escape", "/etc/passwd", "blobs/../../x"};
  for (size_t i = 0; i < 3; i++) {
    make_oci(&t, evil[i], false);
    CU_ASSERT_EQUAL(do_import(s, IMG_KIND_OCI, NULL, t.buf, t.len, &r, &err), -1);
    CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
    free(t.buf);
  }
  const char junk[] = "this is not a tar at all, not even close............";
  CU_ASSERT_EQUAL(do_import(s, IMG_KIND_OCI, NULL, junk, sizeof(junk), &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  /* an upload over the limit */
  make_oci(&t, NULL, false);
  struct memsrc m = {t.buf, t.len, 0, 512};
  img_import_opts o = {.kind = IMG_KIND_OCI, .max_bytes = 1024, .read = mem_read, .opaque = &m};
  CU_ASSERT_EQUAL(img_import(s, &o, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_RESOURCE_EXHAUSTED);
  free(t.buf);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "records"), 0);
  CU_ASSERT_EQUAL(count_sub(dir, "tmp"), 0);
  img_store_close(s);
  rm_dir(dir);
}

static void test_import_docker_archive(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  cmn_error err = {0};
  /* a real (tiny) layer tar inside the archive */
  struct tarb layer;
  tar_begin(&layer);
  tar_add_str(&layer, "hello.txt", "hello\n");
  tar_end(&layer);
  char ldg[IMG_DIGEST_LEN + 1];
  img_sha256_buf(layer.buf, layer.len, ldg);
  for (int bad = 0; bad < 2; bad++) {
    char *config = cmn_asprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{"
                                "\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
                                bad ? EMPTY_SHA : ldg);
    struct tarb t;
    tar_begin(&t);
    tar_add(&t, "abc/layer.tar", layer.buf, layer.len);
    tar_add_str(&t, "cfg.json", config);
    tar_add_str(&t, "manifest.json",
                "[{\"Config\":\"cfg.json\",\"RepoTags\":[\"h.test/dock:1\"],"
                "\"Layers\":[\"abc/layer.tar\"]}]");
    tar_end(&t);
    img_record r;
    int rc = do_import(s, IMG_KIND_OCI, NULL, t.buf, t.len, &r, &err);
    if (bad) {
      CU_ASSERT_EQUAL(rc, -1);
      CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "diff_id"));
    } else {
      CU_ASSERT_EQUAL_FATAL(rc, 0);
      CU_ASSERT_EQUAL(r.n_layers, 1);
      CU_ASSERT_STRING_EQUAL(r.layers[0].digest, ldg);
      CU_ASSERT_STRING_EQUAL(r.names[0], "h.test/dock:1");
      img_record_free(&r);
      /* the rootfs builder gets the layer */
      img_image_layers hl;
      CU_ASSERT_EQUAL(img_store_image_layers(s, "h.test/dock:1", &hl, &err), 0);
      CU_ASSERT_STRING_EQUAL(hl.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar");
      img_image_layers_free(&hl);
      CU_ASSERT_EQUAL(img_store_delete(s, "h.test/dock:1", NULL, &err), 0);
    }
    free(t.buf);
    free(config);
  }
  free(layer.buf);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 0);
  img_store_close(s);
  rm_dir(dir);
}

static void test_import_file(void)
{
  char *dir = fresh_dir();
  img_store *s = open_store(dir, 0, NULL, NULL);
  cmn_error err = {0};
  img_record r;
  char big[5000];
  memset(big, 'k', sizeof(big));
  CU_ASSERT_EQUAL_FATAL(do_import(s, IMG_KIND_KERNEL, "kernel-6.1", big, sizeof(big), &r, &err), 0);
  CU_ASSERT_EQUAL(r.kind, IMG_KIND_KERNEL);
  CU_ASSERT_EQUAL(r.n_layers, 1);
  CU_ASSERT_EQUAL(r.layers[0].size, 5000);
  CU_ASSERT_STRING_EQUAL(r.id, r.layers[0].digest);
  img_image_layers hl;
  CU_ASSERT_EQUAL(img_store_image_layers(s, r.id, &hl, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_FAILED_PRECONDITION);
  img_record_free(&r);
  CU_ASSERT_EQUAL(do_import(s, IMG_KIND_DISK, "bad name", big, 10, &r, &err), -1);
  CU_ASSERT_EQUAL(err.code, CMN_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(do_import(s, IMG_KIND_DISK, NULL, big, 0, &r, &err), -1);
  CU_ASSERT_EQUAL(count_sub(dir, "blobs/sha256"), 1);
  img_store_close(s);
  rm_dir(dir);
}

int main(void)
{
  cmn_log_setup(getenv("IMG_TEST_DEBUG") ? CMN_LOG_DEBUG : CMN_LOG_ERROR, 2);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("image", NULL, NULL);
  CU_add_test(s, "references: valid", test_ref_valid);
  CU_add_test(s, "references: garbage refused", test_ref_invalid);
  CU_add_test(s, "sha256 digests", test_digest);
  CU_add_test(s, "store: verified commit, nothing half-written kept", test_store_commit_verify);
  CU_add_test(s, "store: records, in-use delete, GC of shared blobs", test_store_records_gc);
  CU_add_test(s, "store: size budget", test_store_budget);
  CU_add_test(s, "store: crash leftovers cleaned on reopen", test_store_crash_leftovers);
  CU_add_test(s, "store: one writer per digest", test_store_one_fetch);
  CU_add_test(s, "store: commits, deletes and GC concurrently", test_store_churn);
  CU_add_test(s, "import: OCI layout", test_import_oci);
  CU_add_test(s, "import: hostile archives", test_import_hostile);
  CU_add_test(s, "import: docker-archive", test_import_docker_archive);
  CU_add_test(s, "import: plain file", test_import_file);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed == 0 ? 0 : 1;
}
