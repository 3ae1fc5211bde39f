/* main.c: emberd: reads the configuration, takes the data dir, builds the
 * driver registry and the instance manager, serves gRPC, and waits for
 * SIGTERM/SIGINT in sigwait (every signal is blocked before any thread
 * starts, so no thread is ever interrupted by one).
 *
 * Shutdown: health NOT_SERVING, no new calls, calls in flight finish within
 * the grace time (a second signal or the timeout cancels them), lifecycle
 * operations run to their end, then the manager is freed. VMMs keep running;
 * the next emberd re-adopts them. Exit status 0 after a signal, 1 when
 * start-up fails, 2 for a usage error. */
#include "agent/config.h"
#include "agent/datadir.h"
#include "agent/manager.h"
#include "agent/metrics_agent.h"
#include "agent/server/server.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/mem.h"
#include "agent/image/registry.h"
#include "agent/image/store.h"
#include "drivers/registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAIN_VERSION EMBER_VERSION /* the project version (CMakeLists.txt) */
/* How often --metrics-file is rewritten. */
#define MAIN_METRICS_FILE_INTERVAL_MS 15000

/* Routes the gRPC core's own log lines into our JSON-lines log. */
static void main__gpr_log(gpr_log_func_args *a)
{
  int level = a->severity == GPR_LOG_SEVERITY_ERROR  ? CMN_LOG_ERROR
              : a->severity == GPR_LOG_SEVERITY_INFO ? CMN_LOG_INFO
                                                     : CMN_LOG_DEBUG;
  cmn_log(level, NULL, "grpc", "%s:%d: %s", a->file, a->line, a->message);
}

static void main__fail(const char *what, const cmn_error *err)
{
  cmn_error_log(NULL, "startup", "%s: %s (%s)", what, err->msg, cmn_code_name(err->code));
  fprintf(stderr, "emberd: %s: %s\n", what, err->msg);
}

/* Takes an exclusive lock on <data_dir>/emberd.lock for the life of the
 * process, so that two daemons never manage one data dir. */
static int main__lock_data_dir(const char *data_dir, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/emberd.lock", data_dir);
  int fd = cmn_open(path, O_RDWR | O_CREAT, 0640);
  if (fd < 0)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "cannot open %s", path);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "another emberd is already using data dir %s (lock %s is held)", data_dir,
                         path);
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, e, "cannot lock %s", path);
  }
  return fd; /* kept open until exit */
}

static int64_t main__now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
  /* Descriptors a careless parent left open must never reach a VMM, and no
   * file emberd or a VMM creates (sockets, consoles, snapshots) is open to
   * other users, whatever umask the caller had. */
  cmn_proc_cloexec_inherited();
  umask(027);

  /* Block every asynchronous signal before any thread exists; main takes
   * them with sigwait. Faults stay deliverable. */
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGABRT);
  sigdelset(&all, SIGTRAP);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct timespec started;
  clock_gettime(CLOCK_REALTIME, &started);

  cmn_error err = {0};
  agent_config cfg;
  if (agent_config_load(&cfg, argc, argv, getenv("HOME"), getenv("XDG_DATA_HOME"), geteuid(),
                        &err) < 0) {
    fprintf(stderr, "emberd: %s\n", err.msg);
    return 2;
  }
  if (cfg.help) {
    agent_config_usage(stdout, "emberd");
    agent_config_free(&cfg);
    return 0;
  }
  if (cfg.version) {
    printf("emberd %s\n", MAIN_VERSION);
    agent_config_free(&cfg);
    return 0;
  }
  cmn_log_setup(cfg.log_level, 2);

  int rc = 1;
  vmm_registry *reg = NULL;
  agent_manager *mgr = NULL;
  img_store *images = NULL;
  srv_server *srv = NULL;
  agent_metrics *metrics = NULL;
  agent_metrics_http *metrics_http = NULL;
  agent_metrics_file *metrics_file = NULL;
  bool grpc_up = false, curl_up = false;
  int lock_fd = -1;

  if (cmn_mkdir_p(cfg.data_dir, 0750, &err) < 0) {
    main__fail("cannot create the data dir", &err);
    goto out;
  }
  /* An existing data dir is tightened too: guest memory lives in it. */
  if (chmod(cfg.data_dir, 0750) < 0) {
    cmn_err_errno(&err, CMN_FAILED_PRECONDITION, errno, "chmod 0750 %s", cfg.data_dir);
    main__fail("cannot protect the data dir", &err);
    goto out;
  }
  lock_fd = main__lock_data_dir(cfg.data_dir, &err);
  if (lock_fd < 0) {
    main__fail("refusing to start", &err);
    goto out;
  }
  /* Before anything reads the data dir: an older layout is upgraded in place,
   * a newer one (a downgrade) refused. */
  if (agent_datadir_check(cfg.data_dir, "emberd " MAIN_VERSION, NULL, &err) < 0) {
    main__fail("data dir", &err);
    goto out;
  }
  srv_options so = {
      .listen = cfg.listen,
      .workers = cfg.workers,
      .max_message_bytes = cfg.max_message_bytes,
      .tls_cert = cfg.tls_cert,
      .tls_key = cfg.tls_key,
      .tls_client_ca = cfg.tls_client_ca,
      .insecure_tcp = cfg.insecure_tcp,
  };
  if (srv_listen_precheck(&so, &err) < 0) {
    main__fail("refusing to start", &err);
    goto out;
  }
  /* libcurl (the Firecracker driver) must be initialised before threads. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    cmn_err_set(&err, CMN_INTERNAL, "curl_global_init failed");
    main__fail("start-up", &err);
    goto out;
  }
  curl_up = true;
  reg = vmm_registry_create(cfg.drivers, NULL, 0, &err);
  if (reg == NULL) {
    main__fail("hypervisor drivers", &err);
    goto out;
  }
  for (size_t i = 0; i < vmm_registry_count(reg); i++) {
    const vmm_entry *e = vmm_registry_at(reg, i);
    cmn_info(NULL, "startup", "hypervisor %s: %s%s", e->driver->type,
             e->available ? "available, " : "unavailable: ", e->detail ? e->detail : "");
  }
  /* emberd's own files outside the data dir: never a guest's kernel or disk. */
  const char *own_files[] = {
      cfg.config_path,  cfg.tls_cert,
      cfg.tls_key,      cfg.tls_client_ca,
      cfg.metrics_file, strncmp(cfg.listen, "unix:", 5) == 0 ? cfg.listen + 5 : NULL};
  agent_host_policy hp = {
      .roots = (const char *const *)cfg.host_file_roots,
      .n_roots = cfg.n_host_file_roots,
      .allow_block_devices = cfg.allow_block_devices,
      .own_files = own_files,
      .n_own_files = sizeof own_files / sizeof own_files[0],
  };
  /* The image store next to the manager: the manager pins the images of its
   * instances while it loads them. */
  img_store_opts io = {.data_dir = cfg.data_dir, .budget_bytes = cfg.image_store_budget};
  if (img_store_open(&io, &images, &err) < 0) {
    main__fail("image store", &err);
    goto out;
  }
  img_registry_opts ro = {
      .ca_file = cfg.registry_ca_file,
      .credentials_file = cfg.registry_credentials_file,
      .insecure = (const char *const *)cfg.insecure_registries,
      .n_insecure = cfg.n_insecure_registries,
  };
  so.images = images;
  so.registry = &ro;
  agent_manager_config mc = {
      .data_dir = cfg.data_dir,
      .max_instances = cfg.max_instances,
      .vmm_cgroup = cfg.vmm_cgroup,
      .admission = &cfg.admission,
      .stop_timeout_ms = 0,
      .console_max_bytes = cfg.console_max_bytes,
      .monitor = true,
      .host_policy = &hp,
      .images = images,
      .boot_kit_dir = cfg.boot_kit_dir ? cfg.boot_kit_dir : EMBER_BOOT_KIT_DIR,
      .net_config = &cfg.net,
      .warm = &cfg.warm,
  };
  mgr = agent_manager_create(&mc, reg, &err);
  if (mgr == NULL) {
    main__fail("cannot load the instances", &err);
    goto out;
  }
  /* Metrics (opt-in): exporters start before gRPC serves, so a metrics
   * address that cannot be bound fails the start-up. */
  if (cfg.metrics_listen != NULL || cfg.metrics_file != NULL) {
    metrics =
        agent_metrics_create(MAIN_VERSION, (double)started.tv_sec + (double)started.tv_nsec / 1e9);
    agent_metrics_attach(metrics, mgr);
    so.metrics = metrics;
    if (cfg.metrics_listen != NULL) {
      metrics_http = agent_metrics_http_start(metrics, cfg.metrics_listen, &err);
      if (metrics_http == NULL) {
        main__fail("cannot serve metrics", &err);
        goto out;
      }
    }
    if (cfg.metrics_file != NULL) {
      metrics_file =
          agent_metrics_file_start(metrics, cfg.metrics_file, MAIN_METRICS_FILE_INTERVAL_MS, &err);
      if (metrics_file == NULL) {
        main__fail("cannot write metrics", &err);
        goto out;
      }
    }
  }
  gpr_set_log_function(main__gpr_log);
  grpc_init();
  grpc_up = true;
  srv = srv_server_create(&so, mgr, &err);
  if (srv == NULL) {
    main__fail("cannot serve", &err);
    goto out;
  }
  cmn_info(NULL, "startup", "emberd ready: data dir %s, listening on %s", cfg.data_dir, cfg.listen);

  sigset_t wait_set;
  sigemptyset(&wait_set);
  sigaddset(&wait_set, SIGTERM);
  sigaddset(&wait_set, SIGINT);
  sigaddset(&wait_set, SIGHUP);
  sigaddset(&wait_set, SIGQUIT);
  for (;;) {
    int sig = 0;
    if (sigwait(&wait_set, &sig) != 0)
      continue;
    if (sig == SIGHUP) {
      cmn_info(NULL, "signal", "SIGHUP ignored (restart emberd to reload its config)");
      continue;
    }
    cmn_info(NULL, "shutdown", "%s received: shutting down (grace %d s)", strsignal(sig),
             cfg.grace_seconds);
    break;
  }
  srv_server_begin_shutdown(srv);
  int64_t deadline = main__now_ms() + (int64_t)cfg.grace_seconds * 1000;
  bool cancelled = false;
  while (!srv_server_wait(srv, 0)) {
    if (!cancelled && main__now_ms() >= deadline) {
      cmn_warn(NULL, "shutdown", "grace time of %d s is over", cfg.grace_seconds);
      srv_server_cancel_all(srv);
      cancelled = true;
    }
    struct timespec tick = {0, 100 * 1000000L};
    int sig = sigtimedwait(&wait_set, NULL, &tick);
    if (sig > 0 && sig != SIGHUP && !cancelled) {
      cmn_warn(NULL, "shutdown", "second signal (%s): cancelling calls in flight", strsignal(sig));
      srv_server_cancel_all(srv);
      cancelled = true;
    }
    if (cancelled)
      srv_server_wait(srv, 200);
  }
  rc = 0;

out:
  srv_server_free(srv); /* waits for lifecycle operations still running */
  if (grpc_up) {
    cmn_debug(NULL, "shutdown", "gRPC server freed");
    grpc_shutdown();
  }
  /* After the server: the last file write counts every call. */
  agent_metrics_http_stop(metrics_http);
  agent_metrics_file_stop(metrics_file);
  if (metrics != NULL)
    agent_metrics_detach(metrics);
  if (mgr != NULL) {
    cmn_debug(NULL, "shutdown", "gRPC server stopped; releasing the instance manager");
    agent_manager_free(mgr);
  }
  img_store_close(images);
  agent_metrics_free(metrics);
  if (reg != NULL)
    vmm_registry_free(reg);
  if (curl_up)
    curl_global_cleanup();
  if (lock_fd >= 0)
    close(lock_fd);
  if (rc == 0)
    cmn_info(NULL, "shutdown", "emberd stopped; VMMs keep running");
  agent_config_free(&cfg);
  return rc;
}
