/* warm.c: the warm VMM pool's configuration and choice (warm.h). */
#include "agent/warm.h"

#include "common/mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void agent_warm_config_free(agent_warm_config *cfg)
{
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < cfg->n_pools; i++) {
    free(cfg->pools[i].hypervisor);
    free(cfg->pools[i].shapes);
  }
  free(cfg->pools);
  cfg->pools = NULL;
  cfg->n_pools = 0;
}

void agent_warm_config_copy(agent_warm_config *dst, const agent_warm_config *src)
{
  *dst = (agent_warm_config){0};
  if (src == NULL || src->n_pools == 0)
    return;
  dst->pools = cmn_calloc(src->n_pools, sizeof *dst->pools);
  dst->n_pools = src->n_pools;
  for (size_t i = 0; i < src->n_pools; i++) {
    const agent_warm_pool *s = &src->pools[i];
    agent_warm_pool *d = &dst->pools[i];
    d->hypervisor = cmn_strdup(s->hypervisor);
    d->size = s->size;
    d->n_shapes = s->n_shapes;
    if (s->n_shapes > 0) {
      d->shapes = cmn_calloc(s->n_shapes, sizeof *d->shapes);
      memcpy(d->shapes, s->shapes, s->n_shapes * sizeof *d->shapes);
    }
  }
}

/* A whole number in [lo, hi]. */
static int warm_int(const cJSON *v, const char *what, double lo, double hi, double *out,
                    cmn_error *err)
{
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
      fabs(modf(v->valuedouble, &(double){0})) > 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be a whole number from %.0f to %.0f",
                       what, lo, hi);
  *out = v->valuedouble;
  return 0;
}

static int warm_shape(const cJSON *o, const char *what, agent_warm_shape *s, cmn_error *err)
{
  if (!cJSON_IsObject(o))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be an object", what);
  *s = (agent_warm_shape){0};
  for (const cJSON *it = o->child; it != NULL; it = it->next) {
    char key[400];
    snprintf(key, sizeof key, "%s.%s", what, it->string);
    double d = 0;
    if (strcmp(it->string, "memory_mib") == 0) {
      if (warm_int(it, key, 1, 16777216, &d, err) < 0)
        return -1;
      s->memory_mib = (uint64_t)d;
    } else if (strcmp(it->string, "vcpus") == 0) {
      if (warm_int(it, key, 1, 1024, &d, err) < 0)
        return -1;
      s->vcpus = (uint32_t)d;
    } else {
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: unknown key (memory_mib, vcpus)", key);
    }
  }
  return 0;
}

static int warm_pool(const cJSON *o, agent_warm_pool *p, cmn_error *err)
{
  char what[128];
  snprintf(what, sizeof what, "warm_pool.%s", o->string);
  if (!cJSON_IsObject(o))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be an object", what);
  if (o->string[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "warm_pool: a hypervisor type is empty");
  p->hypervisor = cmn_strdup(o->string);
  for (const cJSON *it = o->child; it != NULL; it = it->next) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", what, it->string);
    if (strcmp(it->string, "size") == 0) {
      double d = 0;
      if (warm_int(it, key, 0, AGENT_WARM_MAX_SIZE, &d, err) < 0)
        return -1;
      p->size = (int)d;
    } else if (strcmp(it->string, "shapes") == 0) {
      int n = cJSON_GetArraySize(it);
      if (!cJSON_IsArray(it) || n > AGENT_WARM_MAX_SHAPES)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be an array of at most %d shapes",
                           key, AGENT_WARM_MAX_SHAPES);
      free(p->shapes);
      p->shapes = n > 0 ? cmn_calloc((size_t)n, sizeof *p->shapes) : NULL;
      p->n_shapes = 0;
      for (const cJSON *s = it->child; s != NULL; s = s->next) {
        char sk[320];
        snprintf(sk, sizeof sk, "%s[%zu]", key, p->n_shapes);
        if (warm_shape(s, sk, &p->shapes[p->n_shapes], err) < 0)
          return -1;
        p->n_shapes++;
      }
    } else {
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: unknown key (size, shapes)", key);
    }
  }
  return 0;
}

int agent_warm_config_from_json(agent_warm_config *cfg, const cJSON *obj, cmn_error *err)
{
  if (!cJSON_IsObject(obj))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "warm_pool must be an object of per-hypervisor pools");
  agent_warm_config out = {0};
  int n = cJSON_GetArraySize(obj);
  out.pools = n > 0 ? cmn_calloc((size_t)n, sizeof *out.pools) : NULL;
  for (const cJSON *it = obj->child; it != NULL; it = it->next) {
    if (agent_warm_pool_of(&out, it->string) != NULL) {
      agent_warm_config_free(&out);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "warm_pool.%s appears twice", it->string);
    }
    int rc = warm_pool(it, &out.pools[out.n_pools], err);
    out.n_pools++;
    if (rc < 0) {
      agent_warm_config_free(&out);
      return -1;
    }
  }
  agent_warm_config_free(cfg);
  *cfg = out;
  return 0;
}

const agent_warm_pool *agent_warm_pool_of(const agent_warm_config *cfg, const char *hypervisor)
{
  if (cfg == NULL || hypervisor == NULL)
    return NULL;
  for (size_t i = 0; i < cfg->n_pools; i++)
    if (cfg->pools[i].hypervisor != NULL && strcmp(cfg->pools[i].hypervisor, hypervisor) == 0)
      return &cfg->pools[i];
  return NULL;
}

bool agent_warm_fits(const agent_warm_pool *p, uint64_t memory_mib, uint32_t vcpus)
{
  if (p == NULL || p->size <= 0)
    return false;
  if (p->n_shapes == 0)
    return true;
  for (size_t i = 0; i < p->n_shapes; i++) {
    const agent_warm_shape *s = &p->shapes[i];
    if ((s->memory_mib == 0 || s->memory_mib == memory_mib) && (s->vcpus == 0 || s->vcpus == vcpus))
      return true;
  }
  return false;
}

long agent_warm_pick(const agent_warm_config *cfg, const agent_warm_cand *c, size_t n,
                     int64_t now_us)
{
  long best = -1;
  for (size_t i = 0; i < n; i++) {
    if (!c[i].standby || !c[i].can_warm || c[i].warm || c[i].retry_at_us > now_us)
      continue;
    const agent_warm_pool *p = agent_warm_pool_of(cfg, c[i].hypervisor);
    if (!agent_warm_fits(p, c[i].memory_mib, c[i].vcpus))
      continue;
    size_t used = 0;
    for (size_t k = 0; k < n; k++)
      used += c[k].warm && c[k].hypervisor != NULL && strcmp(c[k].hypervisor, p->hypervisor) == 0;
    if (used >= (size_t)p->size)
      continue;
    if (best < 0 || c[i].standby_at > c[best].standby_at)
      best = (long)i;
  }
  return best;
}
