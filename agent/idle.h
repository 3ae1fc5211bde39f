/* idle.h: idle auto-standby's measurements and decision (docs/idle.md).
 *
 * The decision is a pure function of samples so that tests can feed it any
 * clock and any figures: the manager (manager_idle.c) reads a sample of each
 * Running instance with auto_standby about once a second and asks
 * agent_idle_decide whether it has been idle long enough. An instance is idle
 * over an interval between two samples when its VMM used less CPU than
 * max_cpu_percent of one host CPU, its TAP devices moved fewer bytes per
 * second than max_net_bps, no exec, copy or console session was open and no
 * hold was in force; the idle clock starts again at any interval that is not
 * idle, at a new VMM (start, restore) and at a sample that cannot be read. */
#ifndef EMBER_AGENT_IDLE_H
#define EMBER_AGENT_IDLE_H

#include "agent/types.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_IDLE_MAX_SECONDS 2592000u /* 30 days */
#define AGENT_IDLE_DEFAULT_CPU_PERCENT 2.0
#define AGENT_IDLE_DEFAULT_NET_BPS 1024u
#define AGENT_IDLE_MAX_NET_BPS (1ull << 30)
/* How often the manager samples an instance with auto_standby. */
#define AGENT_IDLE_SAMPLE_US 1000000
/* The longest HoldInstance. */
#define AGENT_HOLD_MAX_MS (24LL * 3600 * 1000)

/* Checks InstanceSpec.auto_standby and fills the defaults of thresholds left
 * at 0 (none when idle_seconds is 0: off, and then every field must be 0).
 * INVALID_ARGUMENT naming "spec.auto_standby.<field>". in and out may alias. */
int agent_auto_standby_normalize(const agent_auto_standby *in, agent_auto_standby *out,
                                 cmn_error *err);

/* One measurement of a VMM. */
typedef struct agent_idle_sample {
  int64_t t_us;       /* monotonic clock */
  int32_t pid;        /* the VMM; 0: no VMM */
  uint64_t cpu_ns;    /* CPU time of the VMM process (user + system) */
  uint64_t net_bytes; /* received + sent on the instance's TAP devices */
  bool ok;            /* both figures could be read */
} agent_idle_sample;

/* What else keeps an instance awake at the sample's time. */
typedef struct agent_idle_input {
  bool running;      /* the committed state is Running */
  uint32_t sessions; /* exec, copy and console sessions open */
  bool held;         /* a HoldInstance is in force */
} agent_idle_input;

/* The per-instance memory of the decision (zero-initialized: no sample yet). */
typedef struct agent_idle_state {
  agent_idle_sample last;  /* the previous sample; pid 0: none */
  agent_idle_sample since; /* the sample the idle clock started at */
  bool idle;               /* the clock runs (since is valid) */
  double cpu_percent;      /* over the last interval */
  uint64_t net_bps;        /* over the last interval */
} agent_idle_state;

typedef enum agent_idle_verdict {
  AGENT_IDLE_BUSY = 0,    /* not idle (or no VMM): the clock starts again */
  AGENT_IDLE_WAIT = 1,    /* idle, not long enough yet */
  AGENT_IDLE_STANDBY = 2, /* idle for cfg->idle_seconds: put it in standby */
} agent_idle_verdict;

/* Feeds one sample. With AGENT_IDLE_STANDBY, *why (caller frees; else NULL)
 * says why: "idle for N s: cpu X% (max Y%), net Z B/s (max W B/s), no
 * session open", the figures averaged over the idle period. cfg must be
 * normalized; idle_seconds 0 never answers STANDBY. */
agent_idle_verdict agent_idle_decide(agent_idle_state *st, const agent_auto_standby *cfg,
                                     const agent_idle_input *in, const agent_idle_sample *s,
                                     char **why);
/* Starts the idle clock again at the last sample (after a standby that
 * failed: it is tried again only after another idle period). */
void agent_idle_restart(agent_idle_state *st);
/* How long the instance has been idle as of the last sample. */
int64_t agent_idle_for_us(const agent_idle_state *st);

/* Parsers of the /proc files the sample comes from (exposed for tests).
 * /proc/<pid>/stat: utime + stime in clock ticks. */
int agent_idle_parse_stat(const char *text, uint64_t *ticks);
/* /proc/<pid>/net/dev: the received + sent bytes of the interfaces named in
 * taps (others, and taps absent from the file, count nothing). */
int agent_idle_parse_netdev(const char *text, const char *const *taps, size_t n_taps,
                            uint64_t *bytes);
/* Reads a sample of VMM pid: its CPU time, and the bytes of its TAP devices
 * as its own network namespace sees them (/proc/<pid>/net/dev shows the
 * namespace the VMM runs in, the host's or the instance's). s->ok is false
 * when a file cannot be read or parsed. */
void agent_idle_read(int32_t pid, const char *const *taps, size_t n_taps, int64_t now_us,
                     agent_idle_sample *s);

#endif
