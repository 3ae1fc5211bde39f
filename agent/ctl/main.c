/* main.c: emberctl's entry point: parse, block the interrupt signals, run one
 * command against emberd, report the error and exit with its code.
 *
 * SIGINT and SIGTERM are blocked before grpc_init so that every gRPC thread
 * inherits the mask; rpc.c polls for them and cancels the call in progress, so
 * Ctrl-C ends `watch` cleanly (exit 0) and interrupts a unary call with
 * CANCELLED (exit 1). */
#include "agent/ctl/ctl.h"

#include "agent/ctl/rpc.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.0.0"
#endif

static int ctl_main_help(const ctl_opts *o)
{
  /* `emberctl help CMD`, `emberctl CMD --help`, `emberctl --help`. */
  const char *topic = NULL;
  if (o->command != NULL && strcmp(o->command, "help") == 0)
    topic = o->n_args > 0 ? o->args[0] : NULL;
  else
    topic = o->command;
  if (topic == NULL) {
    ctl_usage(stdout);
    return 0;
  }
  const ctl_command *c = ctl_command_find(topic);
  if (c == NULL) {
    fprintf(stderr, "emberctl: unknown command '%s' (see emberctl --help)\n", topic);
    return CTL_EXIT_USAGE;
  }
  ctl_command_usage(stdout, c);
  return 0;
}

int main(int argc, char **argv)
{
  ctl_opts o;
  cmn_error err = {0};
  if (ctl_args_parse(argc, argv, &o, &err) < 0) {
    fprintf(stderr, "emberctl: %s\n", err.msg);
    ctl_opts_free(&o);
    return CTL_EXIT_USAGE;
  }
  int rc;
  if (o.version) {
    printf("emberctl %s\n", EMBER_VERSION);
    rc = 0;
    goto done;
  }
  if (o.help || o.command == NULL || strcmp(o.command, "help") == 0) {
    if (o.command == NULL && !o.help) {
      ctl_usage(stderr);
      rc = CTL_EXIT_USAGE;
    } else {
      rc = ctl_main_help(&o);
    }
    goto done;
  }
  const ctl_command *cmd = ctl_command_find(o.command);

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  /* exec -t waits for window size changes with sigtimedwait (exec.c). */
  sigset_t winch;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  pthread_sigmask(SIG_BLOCK, &winch, NULL);
  /* A closed stdout (emberctl watch | head -1) must end the process quietly
   * with an error, not kill it with SIGPIPE mid-call. */
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, NULL);

  grpc_init();
  int64_t timeout = o.timeout_ms;
  if (timeout < 0)
    timeout = strcmp(cmd->name, "watch") == 0 || strcmp(cmd->name, "exec") == 0 ||
                      (strcmp(cmd->name, "console") == 0 && o.follow)
                  ? 0
              : strcmp(cmd->name, "cp") == 0 ? CTL_IMAGE_TIMEOUT_MS
              : strcmp(cmd->name, "pull") == 0 || strcmp(cmd->name, "import") == 0 ||
                      strcmp(cmd->name, "create") == 0 || strcmp(cmd->name, "fork") == 0 ||
                      strcmp(cmd->name, "snapshot") == 0
                  ? CTL_IMAGE_TIMEOUT_MS
                  : CTL_DEFAULT_TIMEOUT_MS;
  ctl_rpc rpc;
  if (ctl_rpc_open(&rpc, o.target, timeout, &err) < 0) {
    rc = err.code;
  } else {
    rpc.interrupt = sigs;
    rc = cmd->run(&rpc, &o, stdout, &err);
    ctl_rpc_close(&rpc);
  }
  grpc_shutdown();
  if (rc != 0 && err.code != CMN_OK)
    fprintf(stderr, "emberctl %s: %s: %s\n", cmd->name,
            rc == CTL_EXIT_USAGE ? "usage" : cmn_code_name(err.code), err.msg);
  if (fflush(stdout) != 0 && rc == 0)
    rc = CMN_UNKNOWN;
done:
  ctl_opts_free(&o);
  return rc;
}
