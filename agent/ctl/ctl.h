/* ctl.h: emberctl's parsed command line and command table.
 *
 * emberctl is a thin client of ember.v1.InstanceService (and grpc.health.v1):
 * args.c turns argv into a ctl_opts, commands.c runs one command through the
 * gRPC helper in rpc.c and prints with output.c (tables) or pbjson.c (--json).
 * The exit code is the gRPC status code of the failed call, 0 on success, and
 * CTL_EXIT_USAGE for a command line that cannot be run. */
#ifndef EMBER_CTL_CTL_H
#define EMBER_CTL_CTL_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* sysexits.h EX_USAGE: distinct from every gRPC status code (0..16). */
#define CTL_EXIT_USAGE 64

/* Default deadline of a unary call. Standby and restore of a large guest can
 * take a while, so this is generous; --timeout changes it. */
#define CTL_DEFAULT_TIMEOUT_MS 60000
/* pull, import and create (which may build an image's root disk), fork and
 * snapshot (which write a guest's memory and may restore 64 clones): 30 min. */
#define CTL_IMAGE_TIMEOUT_MS (30 * 60000)

/* Options; each command accepts a subset (ctl_command.opts). */
enum ctl_opt_bit {
  CTL_OPT_SPEC = 1u << 0,
  CTL_OPT_VCPUS = 1u << 1,
  CTL_OPT_MEMORY = 1u << 2,
  CTL_OPT_KERNEL = 1u << 3,
  CTL_OPT_INITRD = 1u << 4,
  CTL_OPT_CMDLINE = 1u << 5,
  CTL_OPT_DISK = 1u << 6,
  CTL_OPT_TAP = 1u << 7,
  CTL_OPT_HYPERVISOR = 1u << 8,
  CTL_OPT_START = 1u << 9,
  CTL_OPT_STATE = 1u << 10,
  CTL_OPT_COUNT = 1u << 11,
  CTL_OPT_VSOCK = 1u << 12,
  CTL_OPT_LABEL = 1u << 13,
  CTL_OPT_REQUEST_ID = 1u << 14,
  CTL_OPT_FILTER = 1u << 15,
  CTL_OPT_GRACE = 1u << 16,
  CTL_OPT_ALLOW_MISSING = 1u << 17,
  CTL_OPT_PAGE_SIZE = 1u << 18,
  CTL_OPT_IMAGE = 1u << 19,   /* create --image and its overrides */
  CTL_OPT_IMPORT = 1u << 20,  /* import --name, --kind */
  CTL_OPT_NETWORK = 1u << 21, /* create --network */
  CTL_OPT_IP = 1u << 22,
  CTL_OPT_MAC = 1u << 23,
  CTL_OPT_PUBLISH = 1u << 24,
  CTL_OPT_NETNS = 1u << 25,
  CTL_OPT_CONSOLE = 1u << 26,  /* console -f/--follow, --tail, --offset */
  CTL_OPT_SNAPSHOT = 1u << 27, /* fork --snapshot */
  CTL_OPT_PREFIX = 1u << 28,   /* fork --prefix */
  CTL_OPT_STANDBY = 1u << 29,  /* fork --standby */
};

/* One --publish [HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp], parsed. */
typedef struct ctl_publish {
  const char *arg;       /* as given (an argv pointer), for messages */
  char host_address[16]; /* dotted IPv4; "" for any address */
  uint16_t host_port;    /* 1 to 65535 */
  uint16_t guest_port;   /* 1 to 65535 */
  bool udp;              /* false: tcp (the default) */
} ctl_publish;

typedef struct ctl_opts {
  const char *command; /* NULL: none given */
  char **args;         /* positional arguments after the command (argv pointers) */
  int n_args;
  bool json;
  bool help;
  bool version;
  int64_t timeout_ms; /* -1: not given (command default); 0: no deadline */
  char *target;       /* gRPC target, owned; never NULL after a successful parse */
  unsigned given;     /* enum ctl_opt_bit of the command options given */

  /* create */
  const char *spec_file;
  const char *hypervisor;
  const char *kernel;
  const char *initrd;
  const char *cmdline;
  uint32_t vcpus;
  uint64_t memory_mib;
  const char **disks; /* "PATH[:ro]", owned array of argv pointers */
  int n_disks;
  const char **taps; /* "NAME[,MAC]", owned array of argv pointers */
  int n_taps;
  uint32_t vsock_cid; /* --vsock-cid; 0: not given */
  bool start;
  const char **labels; /* "KEY=VALUE", owned array of argv pointers */
  int n_labels;
  const char *request_id;
  /* create: the interface on a network emberd manages */
  char *network;           /* --network NAME[,MAC]: NAME, owned; NULL: not given */
  const char *network_mac; /* the MAC of --network NAME,MAC (argv pointer) */
  const char *ip;          /* --ip ADDR */
  const char *mac;         /* --mac MAC */
  ctl_publish *publish;    /* --publish, repeatable; owned array */
  int n_publish;
  bool netns; /* --netns */
  /* list */
  const char *state;
  const char *filter;
  int32_t page_size; /* --page-size; 0: 1000 */
  /* stop */
  int64_t grace_ms; /* --graceful-timeout; -1: not given (emberd's default) */
  /* delete */
  bool allow_missing;
  /* watch; fork --count */
  long count; /* 0: until interrupted (watch), not given (fork) */
  /* fork: what follows the command word, split by ctl_args_parse */
  const char *snapshot;    /* --snapshot SNAP: fork a saved snapshot */
  const char *prefix;      /* --prefix P (with --count N): clones P-1 to P-N */
  bool standby;            /* --standby: leave the clones in Standby */
  const char *fork_source; /* the source instance; NULL with --snapshot */
  char **fork_names;       /* the clones' names (points into args) */
  int n_fork_names;
  /* console */
  bool follow;
  int64_t tail_bytes;
  int64_t offset;
  /* create --image */
  const char *image;
  const char **entrypoint; /* --entrypoint, repeatable: the argv of the entrypoint */
  int n_entrypoint;
  const char **image_args; /* --arg, repeatable */
  int n_image_args;
  const char **env; /* --env KEY=VALUE, repeatable */
  int n_env;
  const char *workdir;
  /* import */
  const char *import_name;
  const char *import_kind; /* oci, docker-archive, kernel, initrd, disk */
  /* exec: its options follow the command word and end at NAME (parsed by
   * ctl_parse_exec_args; --env and -w fill env and workdir above). */
  bool exec_interactive;   /* -i */
  bool exec_tty;           /* -t */
  const char *exec_user;   /* -u */
  int64_t exec_timeout_ms; /* --timeout after `exec`: the command's; -1: none */
  const char **exec_cmd;   /* CMD ARG..., owned array of argv pointers */
  int n_exec_cmd;
} ctl_opts;

struct ctl_rpc;

typedef struct ctl_command {
  const char *name;
  const char *args_usage; /* e.g. "ID", "" */
  const char *summary;    /* one line */
  const char *help;       /* paragraph(s) for `emberctl help CMD` */
  unsigned opts;          /* accepted enum ctl_opt_bit */
  int min_args;
  int max_args;
  /* Runs the command; returns the process exit code. */
  int (*run)(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
} ctl_command;

/* One unary call of command's method (its row in agent/rpc_table.h); on
 * success *resp is the method's response message, freed with
 * protobuf_c_message_free_unpacked(*resp, NULL). */
struct ProtobufCMessage;
int ctl_unary(struct ctl_rpc *rpc, const char *command, const struct ProtobufCMessage *req,
              struct ProtobufCMessage **resp, cmn_error *err);

/* The exit code of a failed command: err's gRPC code, UNKNOWN if none was
 * set. */
int ctl_fail(const cmn_error *err);

/* images.c: the ImageService commands. */
int ctl_run_pull(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_images(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_rmi(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_import(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);

/* snapshots.c: fork, snapshot, snapshots, rmsnapshot (ForkInstance and the
 * saved snapshots). */
int ctl_run_fork(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_snapshot(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_snapshots(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_rmsnapshot(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
/* The ForkInstance request of a parsed `fork` command line (labels merged by
 * key, the last one winning); free with protobuf_c_message_free_unpacked. */
struct Ember__V1__ForkInstanceRequest;
struct Ember__V1__ForkInstanceRequest *ctl_fork_request(const ctl_opts *o);

/* console.c: StreamConsole. */
int ctl_run_console(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
/* exec.c: exec and cp (the guest agent RPCs). */
int ctl_run_exec(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
int ctl_run_cp(struct ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err);
/* Parses what follows `exec`: [-i] [-t] [-e|--env K=V]... [-w DIR] [-u USER]
 * [--timeout DUR] NAME [--] CMD [ARG...]; fills o->args (NAME) and the exec
 * fields. -1 with CTL_EXIT_USAGE. */
int ctl_parse_exec_args(int argc, char **argv, ctl_opts *o, cmn_error *err);
/* Splits a cp argument "NAME:/path" (NAME without '/', not starting with '.'
 * or '/'): true with name (malloc'ed) and *path pointing into arg; false for
 * a local path. */
bool ctl_cp_remote(const char *arg, char **name, const char **path);

/* The command table, terminated by an entry whose name is NULL. */
extern const ctl_command ctl_commands[];
const ctl_command *ctl_command_find(const char *name);

/* Parses argv. Returns 0, or -1 with err->code CTL_EXIT_USAGE and a message.
 * Reentrant across calls (resets getopt). Call ctl_opts_free() after either. */
int ctl_args_parse(int argc, char **argv, ctl_opts *o, cmn_error *err);
void ctl_opts_free(ctl_opts *o);

/* The target emberctl talks to with no flags: $EMBER_SOCKET, else the socket
 * emberd uses by default: unix:<data_dir>/emberd.sock with data_dir
 * /var/lib/ember for root, else $XDG_DATA_HOME/ember or ~/.local/share/ember. */
char *ctl_default_target(void);
/* "unix:PATH" for a socket path; a string that already names a unix target
 * ("unix:...", "unix-abstract:...") is returned as a copy. */
char *ctl_target_from_socket(const char *socket);
/* Parses "[HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]" (docker's --publish):
 * ports 1 to 65535, HOSTADDR a dotted IPv4 address, the protocol tcp
 * (default) or udp in any case. Returns 0, or -1 with err->code
 * CTL_EXIT_USAGE and a message naming --publish and the bad part. */
int ctl_parse_publish(const char *arg, ctl_publish *out, cmn_error *err);
/* "aa:bb:cc:dd:ee:ff" (hex digits in any case) of a unicast address (the
 * first octet's low bit clear). */
bool ctl_mac_valid(const char *mac);
/* Parses "30", "30s", "500ms", "2m", "1h"; returns -1 on a malformed value. */
int ctl_parse_duration_ms(const char *s, int64_t *out);

/* Help texts. */
void ctl_usage(FILE *f);
void ctl_command_usage(FILE *f, const ctl_command *c);

#endif
