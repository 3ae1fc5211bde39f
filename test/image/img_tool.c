/* img_tool.c: a small CLI over agent/image for the integration tests (the
 * gRPC image service comes later). Prints one JSON object on stdout; exit 0 on
 * success, 1 on an error (the JSON then has code and message), 2 on usage.
 *
 *   img_tool [OPTIONS] pull DATA_DIR REF...    (several REFs: pulled in parallel
 *                                              threads on one store)
 *   img_tool [OPTIONS] import DATA_DIR KIND FILE|- [NAME]   KIND: oci kernel initrd disk
 *   img_tool [OPTIONS] list|gc DATA_DIR
 *   img_tool [OPTIONS] get|delete|layers DATA_DIR KEY
 * OPTIONS: --budget N --ca FILE --insecure HOST[:PORT] --user U --password P
 *   --credentials FILE --connect-timeout S --stall-timeout S --pull-timeout S
 *   --manifest-max N --in-use ID (the in-use callback says ID is used)
 *   --cancel-after-ms MS (the cancel callback says yes MS after the pull began) */
#include "agent/image/digest.h"
#include "agent/image/import.h"
#include "agent/image/registry.h"
#include "agent/image/store.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct tool {
  img_store_opts so;
  img_registry_opts ro;
  const char *insecure[8];
  const char *user, *password, *in_use_id;
  long long cancel_after_ms;
  pthread_mutex_t mu;
  cJSON *downloaded, *cached;
} tool;

typedef struct job {
  tool *t;
  img_store *s;
  const char *ref;
  img_record rec;
  cmn_error err;
  int rc;
  double seconds;
  double t0;
} job;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool in_use(void *opaque, const char *id, char *who, size_t n)
{
  tool *t = opaque;
  if (t->in_use_id != NULL && strcmp(t->in_use_id, id) == 0) {
    snprintf(who, n, "instances/test-vm");
    return true;
  }
  return false;
}

static void on_progress(void *opaque, const img_pull_progress *p)
{
  job *j = opaque;
  if (p->digest == NULL || (strcmp(p->phase, "committed") != 0 && strcmp(p->phase, "cached") != 0))
    return;
  pthread_mutex_lock(&j->t->mu);
  cJSON_AddItemToArray(strcmp(p->phase, "cached") == 0 ? j->t->cached : j->t->downloaded,
                       cJSON_CreateString(p->digest));
  pthread_mutex_unlock(&j->t->mu);
}

static bool on_cancel(void *opaque)
{
  job *j = opaque;
  return j->t->cancel_after_ms > 0 && (now_s() - j->t0) * 1000 >= (double)j->t->cancel_after_ms;
}

static int emit(cJSON *o, const cmn_error *err, int rc)
{
  cJSON_AddBoolToObject(o, "ok", rc == 0);
  if (rc != 0) {
    cJSON_AddStringToObject(o, "code", cmn_code_name(err->code));
    cJSON_AddStringToObject(o, "message", err->msg);
    if (err->precondition[0])
      cJSON_AddStringToObject(o, "precondition", err->precondition);
  }
  char *s = cJSON_Print(o);
  puts(s);
  free(s);
  cJSON_Delete(o);
  return rc == 0 ? 0 : 1;
}

static void *pull_thread(void *arg)
{
  job *j = arg;
  img_pull_opts po = {.username = j->t->user,
                      .password = j->t->password,
                      .progress = on_progress,
                      .cancelled = on_cancel,
                      .opaque = j};
  j->t0 = now_s();
  j->rc = img_pull(j->s, &j->t->ro, j->ref, &po, &j->rec, &j->err);
  j->seconds = now_s() - j->t0;
  return NULL;
}

static void usage(void)
{
  fprintf(stderr, "usage: img_tool [OPTIONS] pull|import|list|get|delete|gc|layers DATA_DIR ...\n");
}

int main(int argc, char **argv)
{
  tool t = {0};
  pthread_mutex_init(&t.mu, NULL);
  size_t n_insecure = 0;
  int i = 1;
  cmn_log_setup(getenv("IMG_TOOL_DEBUG") ? CMN_LOG_DEBUG : CMN_LOG_WARN, 2);
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL)
      return usage(), 2;
    if (strcmp(o, "--budget") == 0)
      t.so.budget_bytes = strtoll(v, NULL, 10);
    else if (strcmp(o, "--ca") == 0)
      t.ro.ca_file = v;
    else if (strcmp(o, "--insecure") == 0 && n_insecure < 8)
      t.insecure[n_insecure++] = v;
    else if (strcmp(o, "--user") == 0)
      t.user = v;
    else if (strcmp(o, "--password") == 0)
      t.password = v;
    else if (strcmp(o, "--credentials") == 0)
      t.ro.credentials_file = v;
    else if (strcmp(o, "--connect-timeout") == 0)
      t.ro.connect_timeout_s = strtol(v, NULL, 10);
    else if (strcmp(o, "--stall-timeout") == 0)
      t.ro.low_speed_time_s = strtol(v, NULL, 10);
    else if (strcmp(o, "--pull-timeout") == 0)
      t.ro.pull_timeout_s = strtol(v, NULL, 10);
    else if (strcmp(o, "--manifest-max") == 0)
      t.ro.manifest_max = strtoll(v, NULL, 10);
    else if (strcmp(o, "--in-use") == 0)
      t.in_use_id = v;
    else if (strcmp(o, "--cancel-after-ms") == 0)
      t.cancel_after_ms = strtoll(v, NULL, 10);
    else
      return usage(), 2;
  }
  t.ro.insecure = t.insecure;
  t.ro.n_insecure = n_insecure;
  if (argc - i < 2)
    return usage(), 2;
  const char *cmd = argv[i], *dir = argv[i + 1];
  char **rest = argv + i + 2;
  int nrest = argc - i - 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  t.so.data_dir = dir;
  t.so.in_use = in_use;
  t.so.in_use_opaque = &t;
  cmn_error err = {0};
  img_store *s = NULL;
  cJSON *o = cJSON_CreateObject();
  if (img_store_open(&t.so, &s, &err) < 0)
    return emit(o, &err, -1);
  int rc = 0;
  if (strcmp(cmd, "pull") == 0 && nrest >= 1) {
    t.downloaded = cJSON_AddArrayToObject(o, "downloaded");
    t.cached = cJSON_AddArrayToObject(o, "cached");
    job *jobs = cmn_calloc((size_t)nrest, sizeof(job));
    pthread_t *th = cmn_calloc((size_t)nrest, sizeof(pthread_t));
    double t0 = now_s();
    for (int k = 0; k < nrest; k++) {
      jobs[k] = (job){.t = &t, .s = s, .ref = rest[k]};
      pthread_create(&th[k], NULL, pull_thread, &jobs[k]);
    }
    cJSON *imgs = cJSON_AddArrayToObject(o, "images");
    for (int k = 0; k < nrest; k++) {
      pthread_join(th[k], NULL);
      if (jobs[k].rc < 0 && rc == 0) {
        rc = -1;
        err = jobs[k].err;
      }
      if (jobs[k].rc == 0)
        cJSON_AddItemToArray(imgs, img_record_json(&jobs[k].rec));
      img_record_free(&jobs[k].rec);
    }
    cJSON_AddNumberToObject(o, "seconds", now_s() - t0);
    free(jobs);
    free(th);
  } else if (strcmp(cmd, "import") == 0 && nrest >= 2) {
    int kind = img_kind_parse(rest[0]);
    int fd = strcmp(rest[1], "-") == 0 ? 0 : open(rest[1], O_RDONLY | O_CLOEXEC);
    img_record r = {0};
    if (kind < 0 || fd < 0) {
      rc = cmn_err_set(&err, CMN_INVALID_ARGUMENT, "bad kind or file");
    } else {
      rc = img_import_fd(s, kind, nrest >= 3 ? rest[2] : NULL, 0, fd, &r, &err);
      if (rc == 0)
        cJSON_AddItemToObject(o, "image", img_record_json(&r));
      img_record_free(&r);
    }
  } else if (strcmp(cmd, "list") == 0) {
    img_record *rs = NULL;
    size_t n = 0;
    rc = img_store_list(s, &rs, &n, &err);
    cJSON *a = cJSON_AddArrayToObject(o, "images");
    for (size_t k = 0; rc == 0 && k < n; k++)
      cJSON_AddItemToArray(a, img_record_json(&rs[k]));
    img_records_free(rs, n);
  } else if (strcmp(cmd, "get") == 0 && nrest >= 1) {
    img_record r = {0};
    rc = img_store_get(s, rest[0], &r, &err);
    if (rc == 0)
      cJSON_AddItemToObject(o, "image", img_record_json(&r));
    img_record_free(&r);
  } else if (strcmp(cmd, "delete") == 0 && nrest >= 1) {
    int64_t freed = 0;
    rc = img_store_delete(s, rest[0], &freed, &err);
    cJSON_AddNumberToObject(o, "freed", (double)freed);
  } else if (strcmp(cmd, "gc") == 0) {
    int64_t freed = 0;
    size_t removed = 0;
    rc = img_store_gc(s, &freed, &removed, &err);
    cJSON_AddNumberToObject(o, "freed", (double)freed);
    cJSON_AddNumberToObject(o, "removed", (double)removed);
  } else if (strcmp(cmd, "layers") == 0 && nrest >= 1) {
    img_image_layers l;
    rc = img_store_image_layers(s, rest[0], &l, &err);
    if (rc == 0) {
      cJSON *a = cJSON_AddArrayToObject(o, "layers");
      for (size_t k = 0; k < l.n_layers; k++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "path", l.layers[k].path);
        cJSON_AddStringToObject(x, "mediaType", l.layers[k].media_type);
        cJSON_AddStringToObject(x, "digest", l.layers[k].digest);
        cJSON_AddItemToArray(a, x);
      }
      cJSON_AddStringToObject(o, "config", l.config_path);
      img_image_layers_free(&l);
    }
  } else {
    img_store_close(s);
    cJSON_Delete(o);
    return usage(), 2;
  }
  img_store_usage u;
  img_store_usage_get(s, &u);
  cJSON *uo = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(uo, "used", (double)u.used_bytes);
  cJSON_AddNumberToObject(uo, "reserved", (double)u.reserved_bytes);
  cJSON_AddNumberToObject(uo, "blobs", (double)u.blobs);
  cJSON_AddNumberToObject(uo, "images", (double)u.images);
  img_store_close(s);
  curl_global_cleanup();
  return emit(o, &err, rc);
}
