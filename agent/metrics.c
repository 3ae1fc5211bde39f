/* metrics.c: the metrics registry of metrics.h and its Prometheus text
 * exposition (format 0.0.4):
 *
 *   # HELP name text            (backslash and newline escaped)
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",...} 1   (backslash, double quote and newline escaped)
 *   name_bucket{...,le="0.5"} 3 (cumulative; the last bucket is le="+Inf")
 *   name_sum{...} 1.25
 *   name_count{...} 3           (equal to the +Inf bucket)
 *
 * A series keeps its own (non-cumulative) bucket counts; they are summed when
 * rendered, so an observation costs one bucket search and three additions. */
#include "agent/metrics.h"
#include "common/mem.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mreg_series {
  char *values[AGENT_MREG_MAX_LABELS];
  double value;      /* counter, gauge */
  uint64_t *buckets; /* histogram: n_buckets + 1 counts (the last is +Inf), not cumulative */
  double sum;
  uint64_t count;
} mreg_series;

typedef struct mreg_family {
  char *name;
  char *help;
  agent_mtype type;
  size_t n_labels;
  char *labels[AGENT_MREG_MAX_LABELS];
  double *bounds;
  size_t n_bounds;
  mreg_series **series; /* sorted by label values */
  size_t n_series;
} mreg_family;

struct agent_mreg {
  pthread_mutex_t mu; /* guards the series of every family */
  mreg_family *fams;
  size_t n_fams;
};

/* ---- a growing string buffer ---- */

typedef struct mreg_buf {
  char *p;
  size_t len, cap;
} mreg_buf;

static void mreg_buf_reserve(mreg_buf *b, size_t more)
{
  if (b->len + more + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + more + 1)
    cap *= 2;
  b->p = cmn_realloc(b->p, cap);
  b->cap = cap;
}

static void mreg_buf_putc(mreg_buf *b, char c)
{
  mreg_buf_reserve(b, 1);
  b->p[b->len++] = c;
  b->p[b->len] = '\0';
}

static void mreg_buf_puts(mreg_buf *b, const char *s)
{
  size_t n = strlen(s);
  mreg_buf_reserve(b, n);
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

static void mreg_buf_printf(mreg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mreg_buf_printf(mreg_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *s = cmn_vasprintf(fmt, ap);
  va_end(ap);
  mreg_buf_puts(b, s);
  free(s);
}

/* HELP text escapes backslash and newline; label values also double quotes. */
static void mreg_buf_escaped(mreg_buf *b, const char *s, bool quotes)
{
  for (; s != NULL && *s != '\0'; s++) {
    if (*s == '\\')
      mreg_buf_puts(b, "\\\\");
    else if (*s == '\n')
      mreg_buf_puts(b, "\\n");
    else if (*s == '"' && quotes)
      mreg_buf_puts(b, "\\\"");
    else
      mreg_buf_putc(b, *s);
  }
}

/* ---- declaration ---- */

static bool mreg_valid_name(const char *s, bool label)
{
  if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
    return false;
  if (label && s[0] == '_' && s[1] == '_')
    return false; /* reserved */
  for (; *s != '\0'; s++) {
    char c = *s;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (!label && c == ':');
    if (!ok)
      return false;
  }
  return true;
}

static void mreg_die(const char *what, const char *name)
{
  fprintf(stderr, "metrics: %s: %s\n", what, name ? name : "(null)");
  abort();
}

agent_mreg *agent_mreg_create(void)
{
  agent_mreg *r = cmn_calloc(1, sizeof(*r));
  pthread_mutex_init(&r->mu, NULL);
  return r;
}

static void mreg_series_free(mreg_series *s)
{
  for (size_t i = 0; i < AGENT_MREG_MAX_LABELS; i++)
    free(s->values[i]);
  free(s->buckets);
  free(s);
}

void agent_mreg_free(agent_mreg *r)
{
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n_fams; i++) {
    mreg_family *f = &r->fams[i];
    free(f->name);
    free(f->help);
    for (size_t k = 0; k < f->n_labels; k++)
      free(f->labels[k]);
    free(f->bounds);
    for (size_t k = 0; k < f->n_series; k++)
      mreg_series_free(f->series[k]);
    free(f->series);
  }
  free(r->fams);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

int agent_mreg_family(agent_mreg *r, const char *name, const char *help, agent_mtype type,
                      const char *const *labels, const double *buckets, size_t n_buckets)
{
  if (!mreg_valid_name(name, false))
    mreg_die("invalid metric name", name);
  mreg_family f = {0};
  f.name = cmn_strdup(name);
  f.help = cmn_strdup(help ? help : "");
  f.type = type;
  for (; labels != NULL && labels[f.n_labels] != NULL; f.n_labels++) {
    if (f.n_labels == AGENT_MREG_MAX_LABELS)
      mreg_die("too many labels", name);
    if (!mreg_valid_name(labels[f.n_labels], true) || strcmp(labels[f.n_labels], "le") == 0)
      mreg_die("invalid label name", labels[f.n_labels]);
    f.labels[f.n_labels] = cmn_strdup(labels[f.n_labels]);
  }
  if (type == AGENT_MTYPE_HISTOGRAM) {
    f.bounds = cmn_calloc(n_buckets + 1, sizeof(double));
    for (size_t i = 0; i < n_buckets; i++) {
      if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
        mreg_die("histogram buckets must be finite and increasing", name);
      f.bounds[i] = buckets[i];
    }
    f.n_bounds = n_buckets;
  }
  pthread_mutex_lock(&r->mu);
  r->fams = cmn_realloc(r->fams, (r->n_fams + 1) * sizeof(*r->fams));
  r->fams[r->n_fams] = f;
  int h = (int)r->n_fams++;
  pthread_mutex_unlock(&r->mu);
  return h;
}

/* ---- updates ---- */

static int mreg_cmp_values(const mreg_family *f, char *const *a, const char *const *b)
{
  for (size_t i = 0; i < f->n_labels; i++) {
    int c = strcmp(a[i], b[i] ? b[i] : "");
    if (c != 0)
      return c;
  }
  return 0;
}

/* The series of f with these label values, created when missing. r->mu held. */
static mreg_series *mreg_series_get_locked(mreg_family *f, const char *const *values)
{
  size_t lo = 0, hi = f->n_series;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = mreg_cmp_values(f, f->series[mid]->values, values);
    if (c == 0)
      return f->series[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  mreg_series *s = cmn_calloc(1, sizeof(*s));
  for (size_t i = 0; i < f->n_labels; i++)
    s->values[i] = cmn_strdup(values[i] ? values[i] : "");
  if (f->type == AGENT_MTYPE_HISTOGRAM)
    s->buckets = cmn_calloc(f->n_bounds + 1, sizeof(uint64_t));
  f->series = cmn_realloc(f->series, (f->n_series + 1) * sizeof(*f->series));
  memmove(&f->series[lo + 1], &f->series[lo], (f->n_series - lo) * sizeof(*f->series));
  f->series[lo] = s;
  f->n_series++;
  return s;
}

static mreg_family *mreg_fam(agent_mreg *r, int family, agent_mtype want)
{
  if (family < 0 || (size_t)family >= r->n_fams)
    mreg_die("unknown metric family", NULL);
  mreg_family *f = &r->fams[family];
  if (f->type != want && !(want == AGENT_MTYPE_COUNTER && f->type == AGENT_MTYPE_GAUGE))
    mreg_die("wrong update for the type of", f->name);
  return f;
}

void agent_mreg_add(agent_mreg *r, int family, const char *const *values, double delta)
{
  pthread_mutex_lock(&r->mu);
  mreg_family *f = mreg_fam(r, family, AGENT_MTYPE_COUNTER);
  mreg_series_get_locked(f, values)->value += delta;
  pthread_mutex_unlock(&r->mu);
}

void agent_mreg_set(agent_mreg *r, int family, const char *const *values, double value)
{
  pthread_mutex_lock(&r->mu);
  mreg_family *f = mreg_fam(r, family, AGENT_MTYPE_GAUGE);
  mreg_series_get_locked(f, values)->value = value;
  pthread_mutex_unlock(&r->mu);
}

void agent_mreg_observe(agent_mreg *r, int family, const char *const *values, double value)
{
  pthread_mutex_lock(&r->mu);
  mreg_family *f = mreg_fam(r, family, AGENT_MTYPE_HISTOGRAM);
  mreg_series *s = mreg_series_get_locked(f, values);
  size_t i = 0;
  while (i < f->n_bounds && !(value <= f->bounds[i]))
    i++;
  s->buckets[i]++;
  s->sum += value;
  s->count++;
  pthread_mutex_unlock(&r->mu);
}

/* ---- exposition ---- */

void agent_mreg_format_value(char *buf, size_t size, double v)
{
  if (isnan(v)) {
    snprintf(buf, size, "NaN");
  } else if (isinf(v)) {
    snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
  } else {
    /* The shortest of %.15g..%.17g that reads back as the same double. */
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, size, "%.*g", prec, v);
      double back = strtod(buf, NULL);
      if (!(back < v) && !(back > v)) /* the same double (v is finite here) */
        break;
    }
  }
}

/* name{l1="v1",...[,le="x"]} value\n */
static void mreg_put_sample(mreg_buf *b, const mreg_family *f, const char *suffix,
                            const mreg_series *s, const char *le, double v)
{
  char num[64];
  mreg_buf_puts(b, f->name);
  mreg_buf_puts(b, suffix);
  if (f->n_labels > 0 || le != NULL) {
    mreg_buf_putc(b, '{');
    for (size_t i = 0; i < f->n_labels; i++) {
      if (i > 0)
        mreg_buf_putc(b, ',');
      mreg_buf_printf(b, "%s=\"", f->labels[i]);
      mreg_buf_escaped(b, s->values[i], true);
      mreg_buf_putc(b, '"');
    }
    if (le != NULL)
      mreg_buf_printf(b, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
    mreg_buf_putc(b, '}');
  }
  agent_mreg_format_value(num, sizeof(num), v);
  mreg_buf_printf(b, " %s\n", num);
}

char *agent_mreg_format(agent_mreg *r, size_t *len)
{
  static const char *const type_names[] = {"counter", "gauge", "histogram"};
  mreg_buf b = {0};
  mreg_buf_reserve(&b, 0);
  b.p[0] = '\0';
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n_fams; i++) {
    const mreg_family *f = &r->fams[i];
    mreg_buf_printf(&b, "# HELP %s ", f->name);
    mreg_buf_escaped(&b, f->help, false);
    mreg_buf_printf(&b, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (size_t k = 0; k < f->n_series; k++) {
      const mreg_series *s = f->series[k];
      if (f->type != AGENT_MTYPE_HISTOGRAM) {
        mreg_put_sample(&b, f, "", s, NULL, s->value);
        continue;
      }
      uint64_t cum = 0;
      char le[64];
      for (size_t j = 0; j <= f->n_bounds; j++) {
        cum += s->buckets[j];
        if (j < f->n_bounds)
          agent_mreg_format_value(le, sizeof(le), f->bounds[j]);
        else
          snprintf(le, sizeof(le), "+Inf");
        mreg_put_sample(&b, f, "_bucket", s, le, (double)cum);
      }
      mreg_put_sample(&b, f, "_sum", s, NULL, s->sum);
      mreg_put_sample(&b, f, "_count", s, NULL, (double)s->count);
    }
  }
  pthread_mutex_unlock(&r->mu);
  if (len != NULL)
    *len = b.len;
  return b.p;
}
