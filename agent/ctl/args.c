/* args.c: emberctl's command line: options, the default socket, help texts.
 *
 * Options may come before or after the command (getopt_long permutes argv).
 * Every option is parsed once; which command accepts which option is checked
 * afterwards against the command table, so a misplaced option is a usage
 * error that names the command, not a silent no-op. */
#include "agent/ctl/ctl.h"

#include "common/mem.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
  OPT_TIMEOUT = 't',
  OPT_SOCKET = 's',
  OPT_ADDRESS = 'a',
  OPT_HELP = 'h',
  OPT_JSON = 'j',
  OPT_PUBLISH = 'p',
  OPT_FOLLOW = 'f',
  OPT_VERSION = 0x100,
  OPT_SPEC,
  OPT_VCPUS,
  OPT_MEMORY,
  OPT_KERNEL,
  OPT_INITRD,
  OPT_CMDLINE,
  OPT_DISK,
  OPT_TAP,
  OPT_HYPERVISOR,
  OPT_START,
  OPT_STATE,
  OPT_COUNT,
  OPT_VSOCK,
  OPT_LABEL,
  OPT_REQUEST_ID,
  OPT_FILTER,
  OPT_GRACE,
  OPT_ALLOW_MISSING,
  OPT_PAGE_SIZE,
  OPT_IMAGE,
  OPT_ENTRYPOINT,
  OPT_ARG,
  OPT_ENV,
  OPT_WORKDIR,
  OPT_NAME,
  OPT_KIND,
  OPT_NETWORK,
  OPT_IP,
  OPT_MAC,
  OPT_NETNS,
  OPT_TAIL,
  OPT_OFFSET,
  OPT_SNAPSHOT,
  OPT_PREFIX,
  OPT_STANDBY,
};

static const struct option ctl__long_opts[] = {
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"address", required_argument, NULL, OPT_ADDRESS},
    {"help", no_argument, NULL, OPT_HELP},
    {"json", no_argument, NULL, OPT_JSON},
    {"version", no_argument, NULL, OPT_VERSION},
    {"spec", required_argument, NULL, OPT_SPEC},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"memory-mib", required_argument, NULL, OPT_MEMORY},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"disk", required_argument, NULL, OPT_DISK},
    {"tap", required_argument, NULL, OPT_TAP},
    {"hypervisor", required_argument, NULL, OPT_HYPERVISOR},
    {"start", no_argument, NULL, OPT_START},
    {"state", required_argument, NULL, OPT_STATE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"vsock-cid", required_argument, NULL, OPT_VSOCK},
    {"label", required_argument, NULL, OPT_LABEL},
    {"request-id", required_argument, NULL, OPT_REQUEST_ID},
    {"filter", required_argument, NULL, OPT_FILTER},
    {"graceful-timeout", required_argument, NULL, OPT_GRACE},
    {"allow-missing", no_argument, NULL, OPT_ALLOW_MISSING},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
    {"arg", required_argument, NULL, OPT_ARG},
    {"env", required_argument, NULL, OPT_ENV},
    {"workdir", required_argument, NULL, OPT_WORKDIR},
    {"name", required_argument, NULL, OPT_NAME},
    {"kind", required_argument, NULL, OPT_KIND},
    {"network", required_argument, NULL, OPT_NETWORK},
    {"ip", required_argument, NULL, OPT_IP},
    {"mac", required_argument, NULL, OPT_MAC},
    {"publish", required_argument, NULL, OPT_PUBLISH},
    {"netns", no_argument, NULL, OPT_NETNS},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"tail", required_argument, NULL, OPT_TAIL},
    {"offset", required_argument, NULL, OPT_OFFSET},
    {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"standby", no_argument, NULL, OPT_STANDBY},
    {NULL, 0, NULL, 0},
};

/* Names of the command options, for "--x is not an option of CMD". */
static const struct {
  unsigned bit;
  const char *name;
} ctl__opt_names[] = {
    {CTL_OPT_SPEC, "--spec"},
    {CTL_OPT_VCPUS, "--vcpus"},
    {CTL_OPT_MEMORY, "--memory-mib"},
    {CTL_OPT_KERNEL, "--kernel"},
    {CTL_OPT_INITRD, "--initrd"},
    {CTL_OPT_CMDLINE, "--cmdline"},
    {CTL_OPT_DISK, "--disk"},
    {CTL_OPT_TAP, "--tap"},
    {CTL_OPT_HYPERVISOR, "--hypervisor"},
    {CTL_OPT_START, "--start"},
    {CTL_OPT_STATE, "--state"},
    {CTL_OPT_COUNT, "--count"},
    {CTL_OPT_VSOCK, "--vsock-cid"},
    {CTL_OPT_LABEL, "--label"},
    {CTL_OPT_REQUEST_ID, "--request-id"},
    {CTL_OPT_FILTER, "--filter"},
    {CTL_OPT_GRACE, "--graceful-timeout"},
    {CTL_OPT_ALLOW_MISSING, "--allow-missing"},
    {CTL_OPT_PAGE_SIZE, "--page-size"},
    {CTL_OPT_IMAGE, "--image"},
    {CTL_OPT_IMPORT, "--name"},
    {CTL_OPT_NETWORK, "--network"},
    {CTL_OPT_IP, "--ip"},
    {CTL_OPT_MAC, "--mac"},
    {CTL_OPT_PUBLISH, "--publish"},
    {CTL_OPT_NETNS, "--netns"},
    {CTL_OPT_CONSOLE, "--follow, --tail, --offset"},
    {CTL_OPT_SNAPSHOT, "--snapshot"},
    {CTL_OPT_PREFIX, "--prefix"},
    {CTL_OPT_STANDBY, "--standby"},
};

/* A usage error: exit code CTL_EXIT_USAGE; evaluates to -1. */
#define ctl__usage_err(err, ...) cmn_err_set((err), CTL_EXIT_USAGE, __VA_ARGS__)

static int ctl__parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  char *end = NULL;
  if (s == NULL || *s == '\0' || *s == '-')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

int ctl_parse_duration_ms(const char *s, int64_t *out)
{
  char *end = NULL;
  if (s == NULL || *s == '\0' || *s == '-')
    return -1;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || v < 0)
    return -1;
  double mult;
  if (*end == '\0' || strcmp(end, "s") == 0)
    mult = 1000.0;
  else if (strcmp(end, "ms") == 0)
    mult = 1.0;
  else if (strcmp(end, "m") == 0)
    mult = 60000.0;
  else if (strcmp(end, "h") == 0)
    mult = 3600000.0;
  else
    return -1;
  double ms = v * mult;
  if (ms > (double)INT64_MAX / 2)
    return -1;
  *out = (int64_t)(ms + 0.5);
  return 0;
}

bool ctl_mac_valid(const char *mac)
{
  if (strlen(mac) != 17)
    return false;
  for (int i = 0; i < 17; i++) {
    if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
      return false;
  }
  /* The low bit of the first octet marks a multicast (group) address. */
  int d = mac[1];
  int nibble = isdigit(d) ? d - '0' : tolower(d) - 'a' + 10;
  return (nibble & 1) == 0;
}

/* A port "1".."65535": digits only (no sign, no spaces). */
static int ctl__parse_port(const char *s, size_t len, uint16_t *out)
{
  if (len == 0 || len > 5)
    return -1;
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!isdigit((unsigned char)s[i]))
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v < 1 || v > 65535)
    return -1;
  *out = (uint16_t)v;
  return 0;
}

int ctl_parse_publish(const char *arg, ctl_publish *out, cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  out->arg = arg;
  size_t len = strlen(arg);
  const char *slash = strchr(arg, '/');
  if (slash != NULL) {
    const char *proto = slash + 1;
    if (strcasecmp(proto, "udp") == 0)
      out->udp = true;
    else if (strcasecmp(proto, "tcp") != 0)
      return ctl__usage_err(err, "bad --publish '%s': unknown protocol '%s' (tcp or udp)", arg,
                            proto);
    len = (size_t)(slash - arg);
  }
  /* GUESTPORT after the last ':', HOSTPORT before it, HOSTADDR before that. */
  const char *colon = memrchr(arg, ':', len);
  if (colon == NULL)
    return ctl__usage_err(err,
                          "bad --publish '%s': give [HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp], "
                          "e.g. 8080:80 or 127.0.0.1:5353:53/udp",
                          arg);
  const char *guest = colon + 1;
  size_t guest_len = len - (size_t)(guest - arg);
  const char *host_colon = memrchr(arg, ':', (size_t)(colon - arg));
  const char *host = host_colon != NULL ? host_colon + 1 : arg;
  size_t host_len = (size_t)(colon - host);
  if (ctl__parse_port(host, host_len, &out->host_port) < 0)
    return ctl__usage_err(err, "bad --publish '%s': host port '%.*s' is not 1 to 65535", arg,
                          (int)host_len, host);
  if (ctl__parse_port(guest, guest_len, &out->guest_port) < 0)
    return ctl__usage_err(err, "bad --publish '%s': guest port '%.*s' is not 1 to 65535", arg,
                          (int)guest_len, guest);
  if (host_colon != NULL) {
    size_t alen = (size_t)(host_colon - arg);
    struct in_addr a;
    if (alen == 0 || alen >= sizeof(out->host_address))
      return ctl__usage_err(err,
                            "bad --publish '%s': host address '%.*s' is not an IPv4 address "
                            "(omit it for any address)",
                            arg, (int)alen, arg);
    memcpy(out->host_address, arg, alen);
    out->host_address[alen] = '\0';
    if (inet_pton(AF_INET, out->host_address, &a) != 1)
      return ctl__usage_err(err,
                            "bad --publish '%s': host address '%s' is not an IPv4 address "
                            "(omit it for any address)",
                            arg, out->host_address);
  }
  return 0;
}

/* Two --publish of one protocol and host port whose addresses overlap (the
 * same, or either one any address): the second could never work. */
static int ctl__check_publish_clash(const ctl_opts *o, cmn_error *err)
{
  for (int i = 0; i < o->n_publish; i++)
    for (int j = 0; j < i; j++) {
      const ctl_publish *a = &o->publish[j], *b = &o->publish[i];
      if (a->udp == b->udp && a->host_port == b->host_port &&
          (a->host_address[0] == '\0' || b->host_address[0] == '\0' ||
           strcmp(a->host_address, b->host_address) == 0))
        return ctl__usage_err(err, "--publish '%s' and '%s' both take host port %u/%s", a->arg,
                              b->arg, (unsigned)a->host_port, a->udp ? "udp" : "tcp");
    }
  return 0;
}

char *ctl_target_from_socket(const char *socket)
{
  if (strncmp(socket, "unix:", 5) == 0 || strncmp(socket, "unix-abstract:", 14) == 0)
    return cmn_strdup(socket);
  return cmn_asprintf("unix:%s", socket);
}

char *ctl_default_target(void)
{
  const char *env = getenv("EMBER_SOCKET");
  if (env != NULL && *env != '\0')
    return ctl_target_from_socket(env);
  if (geteuid() == 0)
    return cmn_strdup("unix:/var/lib/ember/emberd.sock");
  const char *xdg = getenv("XDG_DATA_HOME");
  /* The XDG spec says a relative XDG_DATA_HOME is invalid and to be ignored. */
  if (xdg != NULL && xdg[0] == '/')
    return cmn_asprintf("unix:%s/ember/emberd.sock", xdg);
  const char *home = getenv("HOME");
  if (home == NULL || home[0] != '/')
    home = "/";
  return cmn_asprintf("unix:%s%s.local/share/ember/emberd.sock", home,
                      home[strlen(home) - 1] == '/' ? "" : "/");
}

void ctl_opts_free(ctl_opts *o)
{
  free(o->target);
  free(o->disks);
  free(o->taps);
  free(o->labels);
  free(o->entrypoint);
  free(o->image_args);
  free(o->env);
  free(o->network);
  free(o->publish);
  free(o->exec_cmd);
  memset(o, 0, sizeof(*o));
}

static void ctl__push(const char ***arr, int *n, const char *v)
{
  *arr = cmn_realloc(*arr, sizeof(**arr) * (size_t)(*n + 1));
  (*arr)[(*n)++] = v;
}

/* The index of the command word when it is `exec`, else 0: skips the
 * global options (and the values of those that take one). */
static int ctl__exec_index(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0)
      return i + 1 < argc && strcmp(argv[i + 1], "exec") == 0 ? i + 1 : 0;
    if (a[0] != '-' || a[1] == '\0')
      return strcmp(a, "exec") == 0 ? i : 0;
    if (a[1] == '-') {
      if (strchr(a, '=') != NULL)
        continue;
      for (const struct option *lo = ctl__long_opts; lo->name != NULL; lo++)
        if (strcmp(a + 2, lo->name) == 0 && lo->has_arg == required_argument) {
          i++;
          break;
        }
      continue;
    }
    /* short options: the last of a cluster may take the next argument */
    size_t n = strlen(a);
    if (strchr("tsap", a[n - 1]) != NULL && strspn(a + 1, "hjf") == n - 2)
      i++;
  }
  return 0;
}

static int ctl__exec_value(int argc, char **argv, int *i, const char *name, const char **val,
                           cmn_error *err)
{
  const char *a = argv[*i];
  const char *eq = strchr(a, '=');
  if (a[1] == '-' && eq != NULL) {
    *val = eq + 1;
    return 0;
  }
  if (*i + 1 >= argc)
    return ctl__usage_err(err, "exec: option %s needs a value", name);
  *val = argv[++*i];
  return 0;
}

static bool ctl__exec_is(const char *a, const char *short_, const char *long_)
{
  if (short_ != NULL && strcmp(a, short_) == 0)
    return true;
  size_t n = strlen(long_);
  return strncmp(a, long_, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

int ctl_parse_exec_args(int argc, char **argv, ctl_opts *o, cmn_error *err)
{
  o->exec_timeout_ms = -1;
  int i = 0;
  for (; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (strcmp(a, "--") == 0 || a[0] != '-' || a[1] == '\0')
      break;
    if (ctl__exec_is(a, "-e", "--env")) {
      if (ctl__exec_value(argc, argv, &i, "--env", &v, err) < 0)
        return -1;
      if (strchr(v, '=') == NULL || v[0] == '=')
        return ctl__usage_err(err, "bad --env '%s': KEY=VALUE", v);
      ctl__push(&o->env, &o->n_env, v);
    } else if (ctl__exec_is(a, "-w", "--workdir")) {
      if (ctl__exec_value(argc, argv, &i, "--workdir", &v, err) < 0)
        return -1;
      if (v[0] != '/')
        return ctl__usage_err(err, "bad --workdir '%s': an absolute path in the guest", v);
      o->workdir = v;
    } else if (ctl__exec_is(a, "-u", "--user")) {
      if (ctl__exec_value(argc, argv, &i, "--user", &o->exec_user, err) < 0)
        return -1;
    } else if (ctl__exec_is(a, NULL, "--timeout")) {
      if (ctl__exec_value(argc, argv, &i, "--timeout", &v, err) < 0)
        return -1;
      if (ctl_parse_duration_ms(v, &o->exec_timeout_ms) < 0)
        return ctl__usage_err(err, "bad exec --timeout '%s': e.g. 30s, 500ms, 2m", v);
    } else if (strcmp(a, "--interactive") == 0) {
      o->exec_interactive = true;
    } else if (strcmp(a, "--tty") == 0) {
      o->exec_tty = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      o->help = true;
    } else if (a[1] != '-' && strspn(a + 1, "it") == strlen(a + 1)) {
      o->exec_interactive |= strchr(a, 'i') != NULL;
      o->exec_tty |= strchr(a, 't') != NULL;
    } else {
      return ctl__usage_err(err, "unknown exec option '%s' (see emberctl help exec)", a);
    }
  }
  if (o->help)
    return 0;
  if (i < argc && strcmp(argv[i], "--") == 0)
    i++;
  if (i >= argc)
    return ctl__usage_err(err, "usage: emberctl exec [OPTIONS] NAME -- CMD [ARG...]");
  o->args = &argv[i];
  o->n_args = 1;
  i++;
  if (i < argc && strcmp(argv[i], "--") == 0)
    i++;
  if (i >= argc)
    return ctl__usage_err(err, "exec: give the command to run after NAME: NAME -- CMD [ARG...]");
  for (; i < argc; i++)
    ctl__push(&o->exec_cmd, &o->n_exec_cmd, argv[i]);
  return 0;
}

/* fork's words: SOURCE NAME..., or --snapshot SNAP NAME..., with --prefix P
 * --count N in place of the names. The table's argument counts cannot say
 * this, so fork is checked here. */
static int ctl__split_fork(ctl_opts *o, cmn_error *err)
{
  bool has_count = (o->given & CTL_OPT_COUNT) != 0;
  bool by_prefix = o->prefix != NULL || has_count;
  if (by_prefix && (o->prefix == NULL || !has_count))
    return ctl__usage_err(err, "fork: --prefix P and --count N go together (clones P-1 to P-N)");
  /* The request's count is 32 bits; emberd refuses more than its limit. */
  if (o->count > (long)UINT32_MAX)
    return ctl__usage_err(err, "bad --count '%ld': too large", o->count);
  int first = 0;
  if (o->snapshot == NULL) {
    if (o->n_args == 0)
      return ctl__usage_err(err, "usage: emberctl fork SOURCE NAME... (or --snapshot SNAP "
                                 "NAME...; --prefix P --count N instead of the names)");
    o->fork_source = o->args[0];
    first = 1;
  }
  o->fork_names = o->args + first;
  o->n_fork_names = o->n_args - first;
  if (by_prefix && o->n_fork_names > 0)
    return ctl__usage_err(err, "fork: give the clones' names or --prefix and --count, not both");
  if (!by_prefix && o->n_fork_names == 0)
    return ctl__usage_err(err, "fork: give the clones' names after %s (or --prefix P --count N)",
                          o->snapshot != NULL ? "--snapshot SNAP" : "SOURCE");
  return 0;
}

int ctl_args_parse(int argc, char **argv, ctl_opts *o, cmn_error *err)
{
  memset(o, 0, sizeof(*o));
  o->timeout_ms = -1;
  o->grace_ms = -1;
  const char *socket = NULL, *address = NULL;
  uint64_t v;

  /* optind = 0 makes glibc reinitialise fully, so tests can parse repeatedly;
   * the leading ':' reports a missing value apart from an unknown option. */
  /* `exec` takes options of its own after its command word (-t is the
   * terminal there, --timeout the command's): the global options are only
   * those before it. */
  int exec_at = ctl__exec_index(argc, argv);
  int gargc = exec_at > 0 ? exec_at : argc;
  optind = 0;
  for (;;) {
    int idx = 0;
    int c = getopt_long(gargc, argv, ":t:s:a:hjp:f", ctl__long_opts, &idx);
    if (c == -1)
      break;
    const char *arg = optarg;
    switch (c) {
    case OPT_TIMEOUT:
      if (ctl_parse_duration_ms(arg, &o->timeout_ms) < 0)
        return ctl__usage_err(err, "bad --timeout '%s': use e.g. 30s, 500ms, 2m (0: none)", arg);
      break;
    case OPT_SOCKET:
      socket = arg;
      break;
    case OPT_ADDRESS:
      address = arg;
      break;
    case OPT_HELP:
      o->help = true;
      break;
    case OPT_JSON:
      o->json = true;
      break;
    case OPT_VERSION:
      o->version = true;
      break;
    case OPT_SPEC:
      o->spec_file = arg;
      o->given |= CTL_OPT_SPEC;
      break;
    case OPT_VCPUS:
      if (ctl__parse_u64(arg, 1, 1024, &v) < 0)
        return ctl__usage_err(err, "bad --vcpus '%s': a positive integer", arg);
      o->vcpus = (uint32_t)v;
      o->given |= CTL_OPT_VCPUS;
      break;
    case OPT_MEMORY:
      if (ctl__parse_u64(arg, 1, UINT64_MAX, &v) < 0)
        return ctl__usage_err(err, "bad --memory-mib '%s': a positive integer (MiB)", arg);
      o->memory_mib = v;
      o->given |= CTL_OPT_MEMORY;
      break;
    case OPT_KERNEL:
      o->kernel = arg;
      o->given |= CTL_OPT_KERNEL;
      break;
    case OPT_INITRD:
      o->initrd = arg;
      o->given |= CTL_OPT_INITRD;
      break;
    case OPT_CMDLINE:
      o->cmdline = arg;
      o->given |= CTL_OPT_CMDLINE;
      break;
    case OPT_DISK:
      ctl__push(&o->disks, &o->n_disks, arg);
      o->given |= CTL_OPT_DISK;
      break;
    case OPT_TAP:
      ctl__push(&o->taps, &o->n_taps, arg);
      o->given |= CTL_OPT_TAP;
      break;
    case OPT_HYPERVISOR:
      o->hypervisor = arg;
      o->given |= CTL_OPT_HYPERVISOR;
      break;
    case OPT_START:
      o->start = true;
      o->given |= CTL_OPT_START;
      break;
    case OPT_STATE:
      o->state = arg;
      o->given |= CTL_OPT_STATE;
      break;
    case OPT_VSOCK:
      if (ctl__parse_u64(arg, 3, 0xFFFFFFFEu, &v) < 0)
        return ctl__usage_err(err, "bad --vsock-cid '%s': 3 to 4294967294", arg);
      o->vsock_cid = (uint32_t)v;
      o->given |= CTL_OPT_VSOCK;
      break;
    case OPT_LABEL:
      if (strchr(arg, '=') == NULL)
        return ctl__usage_err(err, "bad --label '%s': KEY=VALUE", arg);
      ctl__push(&o->labels, &o->n_labels, arg);
      o->given |= CTL_OPT_LABEL;
      break;
    case OPT_REQUEST_ID:
      o->request_id = arg;
      o->given |= CTL_OPT_REQUEST_ID;
      break;
    case OPT_IMAGE:
      o->image = arg;
      o->given |= CTL_OPT_IMAGE;
      break;
    case OPT_ENTRYPOINT:
      ctl__push(&o->entrypoint, &o->n_entrypoint, arg);
      o->given |= CTL_OPT_IMAGE;
      break;
    case OPT_ARG:
      ctl__push(&o->image_args, &o->n_image_args, arg);
      o->given |= CTL_OPT_IMAGE;
      break;
    case OPT_ENV:
      if (strchr(arg, '=') == NULL || arg[0] == '=')
        return ctl__usage_err(err, "bad --env '%s': KEY=VALUE", arg);
      ctl__push(&o->env, &o->n_env, arg);
      o->given |= CTL_OPT_IMAGE;
      break;
    case OPT_WORKDIR:
      o->workdir = arg;
      o->given |= CTL_OPT_IMAGE;
      break;
    case OPT_NAME:
      o->import_name = arg;
      o->given |= CTL_OPT_IMPORT;
      break;
    case OPT_KIND:
      o->import_kind = arg;
      o->given |= CTL_OPT_IMPORT;
      break;
    case OPT_NETWORK: {
      if (o->network != NULL)
        return ctl__usage_err(err, "--network given twice: an instance has one interface on a "
                                   "managed network at most (use --tap for more interfaces)");
      const char *comma = strchr(arg, ',');
      size_t nl = comma != NULL ? (size_t)(comma - arg) : strlen(arg);
      if (nl == 0)
        return ctl__usage_err(err, "bad --network '%s': empty network name (see emberctl networks)",
                              arg);
      if (comma != NULL && !ctl_mac_valid(comma + 1))
        return ctl__usage_err(err,
                              "bad --network '%s': the MAC after ',' must be a unicast "
                              "aa:bb:cc:dd:ee:ff",
                              arg);
      o->network = cmn_strndup(arg, nl);
      o->network_mac = comma != NULL ? comma + 1 : NULL;
      o->given |= CTL_OPT_NETWORK;
      break;
    }
    case OPT_IP: {
      struct in_addr a;
      if (inet_pton(AF_INET, arg, &a) != 1)
        return ctl__usage_err(err,
                              "bad --ip '%s': an IPv4 address of the network's subnet, e.g. "
                              "10.77.0.9 (no prefix length)",
                              arg);
      o->ip = arg;
      o->given |= CTL_OPT_IP;
      break;
    }
    case OPT_MAC:
      if (!ctl_mac_valid(arg))
        return ctl__usage_err(err, "bad --mac '%s': a unicast MAC address, e.g. 02:00:00:00:00:01",
                              arg);
      o->mac = arg;
      o->given |= CTL_OPT_MAC;
      break;
    case OPT_PUBLISH:
      o->publish = cmn_realloc(o->publish, sizeof(*o->publish) * (size_t)(o->n_publish + 1));
      if (ctl_parse_publish(arg, &o->publish[o->n_publish], err) < 0)
        return -1;
      o->n_publish++;
      o->given |= CTL_OPT_PUBLISH;
      break;
    case OPT_NETNS:
      o->netns = true;
      o->given |= CTL_OPT_NETNS;
      break;
    case OPT_FILTER:
      o->filter = arg;
      o->given |= CTL_OPT_FILTER;
      break;
    case OPT_GRACE:
      if (ctl_parse_duration_ms(arg, &o->grace_ms) < 0)
        return ctl__usage_err(err, "bad --graceful-timeout '%s': e.g. 0, 500ms, 30s", arg);
      o->given |= CTL_OPT_GRACE;
      break;
    case OPT_PAGE_SIZE:
      if (ctl__parse_u64(arg, 1, 1000, &v) < 0)
        return ctl__usage_err(err, "bad --page-size '%s': 1 to 1000", arg);
      o->page_size = (int32_t)v;
      o->given |= CTL_OPT_PAGE_SIZE;
      break;
    case OPT_ALLOW_MISSING:
      o->allow_missing = true;
      o->given |= CTL_OPT_ALLOW_MISSING;
      break;
    case OPT_FOLLOW:
      o->follow = true;
      o->given |= CTL_OPT_CONSOLE;
      break;
    case OPT_TAIL:
    case OPT_OFFSET:
      if (ctl__parse_u64(arg, c == OPT_TAIL ? 1 : 0, INT64_MAX, &v) < 0)
        return ctl__usage_err(err, "bad %s '%s': a byte count (%s)",
                              c == OPT_TAIL ? "--tail" : "--offset", arg,
                              c == OPT_TAIL ? "1 or more" : "0 or more");
      *(c == OPT_TAIL ? &o->tail_bytes : &o->offset) = (int64_t)v;
      o->given |= CTL_OPT_CONSOLE;
      break;
    case OPT_SNAPSHOT:
      if (arg[0] == '\0')
        return ctl__usage_err(err, "bad --snapshot '': a snapshot id or name (emberctl snapshots)");
      o->snapshot = arg;
      o->given |= CTL_OPT_SNAPSHOT;
      break;
    case OPT_PREFIX:
      if (arg[0] == '\0')
        return ctl__usage_err(err, "bad --prefix '': the clones are named PREFIX-1 to PREFIX-N");
      o->prefix = arg;
      o->given |= CTL_OPT_PREFIX;
      break;
    case OPT_STANDBY:
      o->standby = true;
      o->given |= CTL_OPT_STANDBY;
      break;
    case OPT_COUNT:
      if (ctl__parse_u64(arg, 1, LONG_MAX, &v) < 0)
        return ctl__usage_err(err, "bad --count '%s': a positive integer", arg);
      o->count = (long)v;
      o->given |= CTL_OPT_COUNT;
      break;
    case ':':
      return ctl__usage_err(err, "option %s needs a value", argv[optind - 1]);
    default:
      return ctl__usage_err(err, "unknown option '%s' (see emberctl --help)", argv[optind - 1]);
    }
  }

  if (exec_at > 0) {
    o->command = argv[exec_at];
    if (ctl_parse_exec_args(argc - exec_at - 1, argv + exec_at + 1, o, err) < 0)
      return -1;
  } else if (optind < argc) {
    o->command = argv[optind];
    o->args = &argv[optind + 1];
    o->n_args = argc - optind - 1;
  }

  if (o->network_mac != NULL && o->mac != NULL && strcasecmp(o->network_mac, o->mac) != 0)
    return ctl__usage_err(err, "--network %s,%s and --mac %s name two MACs: give one", o->network,
                          o->network_mac, o->mac);
  if (ctl__check_publish_clash(o, err) < 0)
    return -1;

  if (socket != NULL && address != NULL)
    return ctl__usage_err(err, "give --socket or --address, not both");
  if (address != NULL)
    o->target = cmn_strdup(address);
  else if (socket != NULL)
    o->target = ctl_target_from_socket(socket);
  else
    o->target = ctl_default_target();

  if (o->command == NULL || o->help || o->version)
    return 0;
  if (strcmp(o->command, "help") == 0)
    return 0;
  const ctl_command *cmd = ctl_command_find(o->command);
  if (cmd == NULL)
    return ctl__usage_err(err, "unknown command '%s' (see emberctl --help)", o->command);
  unsigned bad = o->given & ~cmd->opts;
  for (size_t i = 0; bad != 0 && i < sizeof(ctl__opt_names) / sizeof(ctl__opt_names[0]); i++)
    if (bad & ctl__opt_names[i].bit)
      return ctl__usage_err(err, "%s is not an option of '%s'", ctl__opt_names[i].name, cmd->name);
  if (o->n_args < cmd->min_args || o->n_args > cmd->max_args) {
    cmn_err_set(err, CTL_EXIT_USAGE, "usage: emberctl %s%s%s", cmd->name,
                cmd->args_usage[0] ? " " : "", cmd->args_usage);
    return -1;
  }
  if (strcmp(cmd->name, "fork") == 0)
    return ctl__split_fork(o, err);
  return 0;
}

void ctl_usage(FILE *f)
{
  fputs("usage: emberctl [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Talks to emberd (ember.v1.InstanceService) over gRPC.\n"
        "\n"
        "Commands:\n",
        f);
  for (const ctl_command *c = ctl_commands; c->name != NULL; c++) {
    char head[64];
    snprintf(head, sizeof(head), "%s %s", c->name, c->args_usage);
    fprintf(f, "  %-22s %s\n", head, c->summary);
  }
  fputs("\n"
        "Options (any command):\n"
        "  -j, --json             print JSON (proto3 JSON mapping, lowerCamelCase names)\n"
        "  -t, --timeout DUR      deadline of each call: 30s, 500ms, 2m, 0 for none\n"
        "                         (default 60s; watch: none)\n"
        "  -s, --socket PATH      emberd's unix socket\n"
        "  -a, --address TARGET   any gRPC target: unix:/path, 127.0.0.1:7000, ...\n"
        "  -h, --help             this help; `emberctl help COMMAND` for one command\n"
        "      --version          print the version\n"
        "\n"
        "Default socket: $EMBER_SOCKET, else unix:<data_dir>/emberd.sock where data_dir is\n"
        "/var/lib/ember for root, else $XDG_DATA_HOME/ember or ~/.local/share/ember.\n"
        "\n"
        "Exit status: 0 on success, the gRPC status code of a failed call (3 INVALID_ARGUMENT,\n"
        "5 NOT_FOUND, 9 FAILED_PRECONDITION, 14 UNAVAILABLE, ...), 64 for a usage error.\n",
        f);
}

void ctl_command_usage(FILE *f, const ctl_command *c)
{
  fprintf(f, "usage: emberctl %s%s%s [OPTIONS]\n\n%s\n\n%s", c->name, c->args_usage[0] ? " " : "",
          c->args_usage, c->summary, c->help);
  fputs("\nCommon options: --json, --timeout DUR, --socket PATH, --address TARGET\n", f);
}
