/* idle.c: idle auto-standby's measurements and decision (see idle.h). */
#include "agent/idle.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int agent_auto_standby_normalize(const agent_auto_standby *in, agent_auto_standby *out,
                                 cmn_error *err)
{
  agent_auto_standby a = *in;
  if (a.idle_seconds > AGENT_IDLE_MAX_SECONDS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "spec.auto_standby.idle_seconds must be 0 (off) to %u (30 days) (got %u)",
                AGENT_IDLE_MAX_SECONDS, a.idle_seconds);
    return cmn_err_field(err, "spec.auto_standby.idle_seconds");
  }
  /* !(x >= 0) also catches NaN. */
  if (!(a.max_cpu_percent >= 0) || a.max_cpu_percent > 100) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "spec.auto_standby.max_cpu_percent must be 0 (the default, %g) to 100 (got %g)",
                AGENT_IDLE_DEFAULT_CPU_PERCENT, a.max_cpu_percent);
    return cmn_err_field(err, "spec.auto_standby.max_cpu_percent");
  }
  if (a.max_net_bps > AGENT_IDLE_MAX_NET_BPS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "spec.auto_standby.max_net_bytes_per_second must be 0 (the default, %u) to %llu "
                "(got %llu)",
                AGENT_IDLE_DEFAULT_NET_BPS, (unsigned long long)AGENT_IDLE_MAX_NET_BPS,
                (unsigned long long)a.max_net_bps);
    return cmn_err_field(err, "spec.auto_standby.max_net_bytes_per_second");
  }
  if (a.idle_seconds == 0) {
    /* Thresholds without a period would be silently ignored: say so. */
    if (a.max_cpu_percent > 0 || a.max_net_bps != 0) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "spec.auto_standby.idle_seconds is required (1 to %u) when a threshold is set",
                  AGENT_IDLE_MAX_SECONDS);
      return cmn_err_field(err, "spec.auto_standby.idle_seconds");
    }
    *out = a;
    return 0;
  }
  if (!(a.max_cpu_percent > 0))
    a.max_cpu_percent = AGENT_IDLE_DEFAULT_CPU_PERCENT;
  if (a.max_net_bps == 0)
    a.max_net_bps = AGENT_IDLE_DEFAULT_NET_BPS;
  *out = a;
  return 0;
}

/* ---- the decision ---- */

static void idle_clock_start(agent_idle_state *st, const agent_idle_sample *s)
{
  st->since = *s;
  st->idle = true;
}

void agent_idle_restart(agent_idle_state *st)
{
  if (st->last.pid > 0)
    idle_clock_start(st, &st->last);
}

int64_t agent_idle_for_us(const agent_idle_state *st)
{
  if (!st->idle || st->last.t_us < st->since.t_us)
    return 0;
  return st->last.t_us - st->since.t_us;
}

/* a - b of two counters; 0 when the counter went back (a new VMM). */
static uint64_t idle_delta(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

agent_idle_verdict agent_idle_decide(agent_idle_state *st, const agent_auto_standby *cfg,
                                     const agent_idle_input *in, const agent_idle_sample *s,
                                     char **why)
{
  *why = NULL;
  if (!in->running || s->pid <= 0 || !s->ok) {
    /* No VMM to measure, or figures that cannot be read: never idle. */
    memset(st, 0, sizeof *st);
    return AGENT_IDLE_BUSY;
  }
  if (st->last.pid != s->pid || !st->last.ok) {
    /* The first sample of this VMM: the clock starts here, the rates come
     * with the next sample. */
    memset(st, 0, sizeof *st);
    st->last = *s;
    idle_clock_start(st, s);
    return AGENT_IDLE_WAIT;
  }
  int64_t dt = s->t_us - st->last.t_us;
  if (dt <= 0)
    return st->idle ? AGENT_IDLE_WAIT : AGENT_IDLE_BUSY;
  uint64_t cpu_ns = idle_delta(s->cpu_ns, st->last.cpu_ns);
  uint64_t bytes = idle_delta(s->net_bytes, st->last.net_bytes);
  st->cpu_percent = (double)cpu_ns / ((double)dt * 1000.0) * 100.0;
  st->net_bps = (uint64_t)((double)bytes * 1e6 / (double)dt);
  st->last = *s;
  bool busy = in->sessions > 0 || in->held || st->cpu_percent >= cfg->max_cpu_percent ||
              st->net_bps >= cfg->max_net_bps;
  if (busy) {
    idle_clock_start(st, s);
    return AGENT_IDLE_BUSY;
  }
  if (!st->idle)
    idle_clock_start(st, s);
  int64_t idle_us = agent_idle_for_us(st);
  if (cfg->idle_seconds == 0 || idle_us < (int64_t)cfg->idle_seconds * 1000000)
    return AGENT_IDLE_WAIT;
  uint64_t cpu_total = idle_delta(s->cpu_ns, st->since.cpu_ns);
  uint64_t net_total = idle_delta(s->net_bytes, st->since.net_bytes);
  double avg_cpu = (double)cpu_total / ((double)idle_us * 1000.0) * 100.0;
  uint64_t avg_net = (uint64_t)((double)net_total * 1e6 / (double)idle_us);
  *why = cmn_asprintf("idle for %lld s: cpu %.1f%% (max %g%%), net %llu B/s (max %llu B/s), no "
                      "session open",
                      (long long)((idle_us + 500000) / 1000000), avg_cpu, cfg->max_cpu_percent,
                      (unsigned long long)avg_net, (unsigned long long)cfg->max_net_bps);
  return AGENT_IDLE_STANDBY;
}

/* ---- /proc ---- */

int agent_idle_parse_stat(const char *text, uint64_t *ticks)
{
  /* The command name (field 2) is in parentheses and may hold spaces and
   * parentheses itself: the fields that follow start after the last ')'. */
  const char *p = strrchr(text, ')');
  if (p == NULL)
    return -1;
  p++;
  /* Fields 3 (state) to 13, then utime (14) and stime (15). */
  unsigned long long v[13];
  int field = 0;
  while (field < 13) {
    while (*p == ' ')
      p++;
    if (*p == '\0' || *p == '\n')
      return -1;
    if (field == 0) {
      p++; /* state: one letter */
      v[field++] = 0;
      continue;
    }
    char *end = NULL;
    if (!isdigit((unsigned char)*p) && *p != '-')
      return -1;
    v[field++] = strtoull(p, &end, 10);
    if (end == p)
      return -1;
    p = end;
  }
  *ticks = v[11] + v[12];
  return 0;
}

int agent_idle_parse_netdev(const char *text, const char *const *taps, size_t n_taps,
                            uint64_t *bytes)
{
  uint64_t sum = 0;
  const char *line = text;
  while (line != NULL && *line != '\0') {
    const char *nl = strchr(line, '\n');
    const char *colon = strchr(line, ':');
    if (colon != NULL && (nl == NULL || colon < nl)) {
      const char *name = line;
      while (*name == ' ')
        name++;
      size_t len = (size_t)(colon - name);
      for (size_t i = 0; i < n_taps; i++) {
        if (taps[i] == NULL || strlen(taps[i]) != len || strncmp(taps[i], name, len) != 0)
          continue;
        /* rx: bytes packets errs drop fifo frame compressed multicast; then tx bytes. */
        const char *p = colon + 1;
        unsigned long long v[9];
        int k = 0;
        while (k < 9) {
          char *end = NULL;
          v[k] = strtoull(p, &end, 10);
          if (end == p)
            return -1;
          p = end;
          k++;
        }
        sum += v[0] + v[8];
        break;
      }
    }
    line = nl != NULL ? nl + 1 : NULL;
  }
  *bytes = sum;
  return 0;
}

void agent_idle_read(int32_t pid, const char *const *taps, size_t n_taps, int64_t now_us,
                     agent_idle_sample *s)
{
  memset(s, 0, sizeof *s);
  s->t_us = now_us;
  s->pid = pid;
  if (pid <= 0)
    return;
  char path[64];
  cmn_error err = {0};
  cleanup_free char *stat = NULL;
  uint64_t ticks = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (cmn_file_read(path, 4096, &stat, NULL, &err) < 0 || agent_idle_parse_stat(stat, &ticks) < 0)
    return;
  long hz = sysconf(_SC_CLK_TCK);
  s->cpu_ns = ticks * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
  if (n_taps > 0) {
    cleanup_free char *dev = NULL;
    snprintf(path, sizeof path, "/proc/%d/net/dev", (int)pid);
    if (cmn_file_read(path, 1 << 20, &dev, NULL, &err) < 0 ||
        agent_idle_parse_netdev(dev, taps, n_taps, &s->net_bytes) < 0)
      return;
  }
  s->ok = true;
}
