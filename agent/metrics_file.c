/* metrics_file.c: writes the metrics text to a file for node_exporter's
 * textfile collector (--metrics-file), atomically (temp file in the same
 * folder, fsync, rename), at start, every interval, and once more at stop, on
 * one thread that sleeps on a condition variable so that stop is immediate. */
#include "agent/metrics_agent.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

struct agent_metrics_file {
  agent_metrics *metrics;
  char *path;
  int interval_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  bool stop;         /* guarded by mu */
  bool failing;      /* the last write failed (warn once per failure streak) */
};

static int metrics_file__write(agent_metrics_file *f, cmn_error *err)
{
  size_t len = 0;
  cleanup_free char *text = agent_metrics_render(f->metrics, &len);
  return cmn_file_write_atomic(f->path, text, len, 0644, err);
}

static void *metrics_file__main(void *arg)
{
  agent_metrics_file *f = arg;
  pthread_mutex_lock(&f->mu);
  while (!f->stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += f->interval_ms / 1000;
    until.tv_nsec += (long)(f->interval_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &until) == 0)
      ;
    bool stopping = f->stop;
    pthread_mutex_unlock(&f->mu);
    cmn_error err = {0};
    if (metrics_file__write(f, &err) < 0) {
      if (!f->failing)
        cmn_warn(NULL, "metrics", "cannot write %s: %s (will retry)", f->path, err.msg);
      f->failing = true;
    } else if (f->failing) {
      cmn_info(NULL, "metrics", "writing %s works again", f->path);
      f->failing = false;
    }
    pthread_mutex_lock(&f->mu);
    if (stopping)
      break;
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

agent_metrics_file *agent_metrics_file_start(agent_metrics *m, const char *path, int interval_ms,
                                             cmn_error *err)
{
  if (path == NULL || path[0] == '\0' || interval_ms < 1)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "metrics file: empty path or bad interval"), NULL;
  agent_metrics_file *f = cmn_calloc(1, sizeof(*f));
  f->metrics = m;
  f->path = cmn_strdup(path);
  f->interval_ms = interval_ms;
  if (metrics_file__write(f, err) < 0) {
    cmn_err_prefix(err, "metrics file");
    free(f->path);
    free(f);
    return NULL;
  }
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cv, &ca);
  pthread_condattr_destroy(&ca);
  int e = pthread_create(&f->thread, NULL, metrics_file__main, f);
  if (e != 0) {
    cmn_err_set(err, CMN_INTERNAL, "metrics file: cannot start its thread: %s", cmn_strerror(e));
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->path);
    free(f);
    return NULL;
  }
  cmn_info(NULL, "metrics", "writing Prometheus metrics to %s every %d s", path,
           interval_ms / 1000);
  return f;
}

void agent_metrics_file_stop(agent_metrics_file *f)
{
  if (f == NULL)
    return;
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_signal(&f->cv);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thread, NULL);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  free(f->path);
  free(f);
}
