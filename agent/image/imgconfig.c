/* imgconfig.c: OCI image config + overrides -> img_run_config (see imgconfig.h). */
#include "agent/image/imgconfig.h"

#include "common/mem.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* A growable NULL-terminated string vector. */
typedef struct strv {
  char **v;
  size_t n, cap;
} strv;

static void strv_push(strv *s, const char *str)
{
  if (s->n + 2 > s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->v = cmn_realloc(s->v, s->cap * sizeof(*s->v));
  }
  s->v[s->n++] = cmn_strdup(str);
  s->v[s->n] = NULL;
}

static void strv_free(strv *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof(*s));
}

/* An empty vector is still a valid NULL-terminated array. */
static char **strv_steal(strv *s)
{
  if (s->v == NULL)
    s->v = cmn_calloc(1, sizeof(*s->v));
  char **v = s->v;
  s->v = NULL;
  s->n = s->cap = 0;
  return v;
}

/* The array of strings at obj[key]; absent or null: *out NULL, ok. */
static int json_strings(const cJSON *obj, const char *key, const cJSON **out, cmn_error *err)
{
  *out = NULL;
  const cJSON *a = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  if (a == NULL || cJSON_IsNull(a))
    return 0;
  if (!cJSON_IsArray(a))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "image config: config.%s is not an array of "
                       "strings",
                       key);
  const cJSON *it;
  cJSON_ArrayForEach(it, a)
  {
    if (!cJSON_IsString(it))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "image config: config.%s holds a value that is not a string", key);
  }
  *out = a;
  return 0;
}

static int json_string(const cJSON *obj, const char *key, const char **out, cmn_error *err)
{
  *out = NULL;
  const cJSON *s = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  if (s == NULL || cJSON_IsNull(s))
    return 0;
  if (!cJSON_IsString(s))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: config.%s is not a string", key);
  *out = s->valuestring;
  return 0;
}

static int env_key_len(const char *kv, size_t *klen)
{
  const char *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv)
    return -1;
  *klen = (size_t)(eq - kv);
  return 0;
}

/* Sets "KEY=VALUE" in env: replaces the entry with the same KEY, else appends. */
static void env_set(strv *env, const char *kv, size_t klen)
{
  for (size_t i = 0; i < env->n; i++) {
    size_t l;
    if (env_key_len(env->v[i], &l) == 0 && l == klen && memcmp(env->v[i], kv, klen) == 0) {
      free(env->v[i]);
      env->v[i] = cmn_strdup(kv);
      return;
    }
  }
  strv_push(env, kv);
}

static int resolve(const cJSON *cfg, const img_overrides *ov, strv *argv, strv *env,
                   const char **workdir, const char **user, cmn_error *err)
{
  const cJSON *ep, *cmd, *ienv, *it;
  const char *wd;
  if (json_strings(cfg, "Entrypoint", &ep, err) < 0 || json_strings(cfg, "Cmd", &cmd, err) < 0 ||
      json_strings(cfg, "Env", &ienv, err) < 0 || json_string(cfg, "WorkingDir", &wd, err) < 0 ||
      json_string(cfg, "User", user, err) < 0)
    return -1;

  if (ov->has_entrypoint) {
    for (size_t i = 0; i < ov->n_entrypoint; i++)
      strv_push(argv, ov->entrypoint[i]);
  } else if (ep != NULL) {
    cJSON_ArrayForEach(it, ep) strv_push(argv, it->valuestring);
  }
  if (ov->has_args) {
    for (size_t i = 0; i < ov->n_args; i++)
      strv_push(argv, ov->args[i]);
  } else if (!ov->has_entrypoint && cmd != NULL) {
    cJSON_ArrayForEach(it, cmd) strv_push(argv, it->valuestring);
  }
  if (argv->n == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "nothing to run: the image has no Entrypoint or Cmd and the instance "
                       "gives no entrypoint or args");
  if (argv->v[0][0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "the program to run (argv[0]) is empty");

  size_t klen;
  if (ienv != NULL) {
    cJSON_ArrayForEach(it, ienv)
    {
      if (env_key_len(it->valuestring, &klen) < 0)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                           "image config: config.Env entry '%.200s' is not KEY=VALUE",
                           it->valuestring);
      env_set(env, it->valuestring, klen);
    }
  }
  for (size_t i = 0; i < ov->n_env; i++) {
    if (ov->env[i] == NULL || env_key_len(ov->env[i], &klen) < 0) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "env entry '%.200s' is not KEY=VALUE",
                  ov->env[i] ? ov->env[i] : "");
      return cmn_err_field(err, "spec.env");
    }
    env_set(env, ov->env[i], klen);
  }
  bool has_path = false;
  for (size_t i = 0; i < env->n && !has_path; i++)
    has_path = strncmp(env->v[i], "PATH=", 5) == 0;
  if (!has_path)
    strv_push(env, DEFAULT_PATH);

  if (ov->workdir != NULL && ov->workdir[0] != '\0') {
    if (ov->workdir[0] != '/') {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "workdir '%.200s' is not an absolute path",
                  ov->workdir);
      return cmn_err_field(err, "spec.workdir");
    }
    *workdir = ov->workdir;
  } else if (wd != NULL && wd[0] != '\0') {
    if (wd[0] != '/')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "image config: config.WorkingDir '%.200s' is not an absolute path", wd);
    *workdir = wd;
  } else {
    *workdir = "/";
  }
  return 0;
}

int img_config_resolve(const char *json, size_t len, const img_overrides *ov, img_run_config *out,
                       cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  img_overrides none = {0};
  if (ov == NULL)
    ov = &none;
  if (json == NULL || len == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: empty");
  if (len > IMG_CONFIG_MAX_BYTES)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: %zu bytes, over the limit of %u",
                       len, IMG_CONFIG_MAX_BYTES);
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: not valid JSON");
  int rc = 0;
  const cJSON *cfg = NULL;
  if (!cJSON_IsObject(root)) {
    rc = cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: not a JSON object");
  } else {
    cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (cfg != NULL && cJSON_IsNull(cfg))
      cfg = NULL;
    if (cfg != NULL && !cJSON_IsObject(cfg))
      rc = cmn_err_set(err, CMN_INVALID_ARGUMENT, "image config: config is not an object");
  }
  strv argv = {0}, env = {0};
  const char *workdir = NULL, *user = NULL;
  if (rc == 0)
    rc = resolve(cfg, ov, &argv, &env, &workdir, &user, err);
  if (rc == 0) {
    out->argc = argv.n;
    out->argv = strv_steal(&argv);
    out->envc = env.n;
    out->env = strv_steal(&env);
    out->workdir = cmn_strdup(workdir);
    out->user = cmn_strdup(user ? user : "");
  }
  strv_free(&argv);
  strv_free(&env);
  cJSON_Delete(root);
  return rc < 0 ? -1 : 0;
}

static char **copy_vec(char *const *v, size_t n)
{
  char **c = cmn_calloc(n + 1, sizeof(*c));
  for (size_t i = 0; i < n; i++)
    c[i] = cmn_strdup(v[i]);
  return c;
}

void img_run_config_copy(img_run_config *dst, const img_run_config *src)
{
  dst->argc = src->argc;
  dst->argv = copy_vec(src->argv, src->argc);
  dst->envc = src->envc;
  dst->env = copy_vec(src->env, src->envc);
  dst->workdir = cmn_strdup(src->workdir);
  dst->user = cmn_strdup(src->user);
}

void img_run_config_free(img_run_config *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; c->argv && i < c->argc; i++)
    free(c->argv[i]);
  for (size_t i = 0; c->env && i < c->envc; i++)
    free(c->env[i]);
  free(c->argv);
  free(c->env);
  free(c->workdir);
  free(c->user);
  memset(c, 0, sizeof(*c));
}
