/* metrics.h: a small, thread-safe metrics registry (counters, gauges,
 * histograms with labels) and its rendering in the Prometheus text exposition
 * format, version 0.0.4. It knows nothing about ember; agent/metrics_agent.h
 * declares emberd's metrics on top of it.
 *
 * Contract: families are declared once, before the registry is shared between
 * threads; after that every update and agent_mreg_format() may run on any
 * thread (one mutex guards the series; it is never held while calling out).
 * Series are created on first use and kept in a stable order (sorted by label
 * values), so two renderings of the same state are byte-for-byte equal. */
#ifndef EMBER_AGENT_METRICS_H
#define EMBER_AGENT_METRICS_H

#include <stddef.h>

typedef enum agent_mtype {
  AGENT_MTYPE_COUNTER = 0,
  AGENT_MTYPE_GAUGE = 1,
  AGENT_MTYPE_HISTOGRAM = 2,
} agent_mtype;

/* Most labels a family may have. */
#define AGENT_MREG_MAX_LABELS 4

typedef struct agent_mreg agent_mreg;

agent_mreg *agent_mreg_create(void);
void agent_mreg_free(agent_mreg *r);

/* Declares a family and returns its handle (>= 0). labels is a NULL-terminated
 * list of label names (NULL for none); buckets (histograms only) are the
 * finite upper bounds in increasing order: the +Inf bucket is implicit.
 * Names must be valid Prometheus names; the caller owns them (they are copied).
 * Aborts on a programming error (bad name, too many labels, unsorted buckets). */
int agent_mreg_family(agent_mreg *r, const char *name, const char *help, agent_mtype type,
                      const char *const *labels, const double *buckets, size_t n_buckets);

/* values: one label value per label of the family, in declaration order (any
 * UTF-8; escaped on output). NULL values are rendered as "". */
void agent_mreg_add(agent_mreg *r, int family, const char *const *values, double delta);
void agent_mreg_set(agent_mreg *r, int family, const char *const *values, double value);
void agent_mreg_observe(agent_mreg *r, int family, const char *const *values, double value);

/* The whole registry as exposition text (families in declaration order;
 * a family with no series yet still gets its HELP and TYPE lines). Returns a
 * malloc'ed NUL-terminated string; *len (may be NULL) gets its length. */
char *agent_mreg_format(agent_mreg *r, size_t *len);

/* Formats a sample value or bucket bound the way Prometheus reads it:
 * shortest round-trip decimal, "+Inf", "-Inf", "NaN". buf: >= 32 bytes. */
void agent_mreg_format_value(char *buf, size_t size, double v);

#endif
