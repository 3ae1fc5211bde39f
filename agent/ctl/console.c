/* console.c: `emberctl console NAME [-f] [--tail N] [--offset N]`, a client of
 * the server stream InstanceService.StreamConsole (docs/console.md). Writes the
 * console's bytes as they are to stdout; with --json one ConsoleChunk object
 * per line. Bytes rotated away before the requested offset are reported on
 * stderr. */
#include "agent/ctl/ctl.h"
#include "agent/ctl/pbjson.h"
#include "agent/ctl/rpc.h"
#include "ember/v1/instance.pb-c.h"

#include <stdio.h>

typedef struct ctl__console {
  FILE *out;
  bool json;
  bool failed; /* stdout could not be written */
} ctl__console;

static bool ctl__on_chunk(const ProtobufCMessage *msg, void *opaque)
{
  ctl__console *cc = opaque;
  const Ember__V1__ConsoleChunk *ch = (const Ember__V1__ConsoleChunk *)msg;
  if (cc->json) {
    ctl_print_json(cc->out, msg, true);
  } else {
    if (ch->skipped > 0)
      fprintf(stderr, "emberctl console: %lld bytes before offset %lld were rotated away\n",
              (long long)ch->skipped, (long long)ch->offset);
    if (ch->data.len > 0 && fwrite(ch->data.data, 1, ch->data.len, cc->out) != ch->data.len)
      cc->failed = true;
  }
  if (fflush(cc->out) != 0)
    cc->failed = true;
  return !cc->failed;
}

int ctl_run_console(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__StreamConsoleRequest req = EMBER__V1__STREAM_CONSOLE_REQUEST__INIT;
  req.id = o->args[0];
  req.offset = o->offset;
  req.tail_bytes = o->tail_bytes;
  req.follow = o->follow;
  ctl__console cc = {.out = out, .json = o->json};
  if (ctl_rpc_stream(rpc, "/ember.v1.InstanceService/StreamConsole", &req.base,
                     &ember__v1__console_chunk__descriptor, NULL, ctl__on_chunk, &cc, err) < 0)
    return ctl_fail(err);
  if (cc.failed) {
    cmn_err_set(err, CMN_UNKNOWN, "cannot write to stdout");
    return ctl_fail(err);
  }
  return 0;
}
