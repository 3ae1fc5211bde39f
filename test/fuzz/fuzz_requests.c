/* fuzz_requests.c: libFuzzer target over request decoding and validation of
 * every ember.v1.InstanceService RPC (GitHub issue 5). Input: one byte that
 * selects the method (modulo the method count, in .proto order), then the
 * protobuf payload. The payload goes through the handler emberd uses
 * (agent/server/fuzz_entry.h) on a real instance manager over a temporary data
 * dir, with the real driver registry plus the test-only driver "testvm".
 *
 * No real VMM is ever started: Start and Restore of an instance whose type is
 * not testvm are not dispatched, and CreateInstance with start=true for another
 * type is re-encoded with start=false (its validation still runs). testvm's
 * "VMM" is a shell loop; the fixture holds one instance per interesting state
 * (Stopped, Running, Paused, Standby, and a Stopped qemu one).
 *
 * Invariants (abort on violation; ASan/UBSan/LSan catch the rest):
 * - a request whose raw bytes hold a string field with a NUL byte or invalid
 *   UTF-8 (srv_fuzz_request_check, emberd's own check) is refused by the
 *   handler path with INVALID_ARGUMENT and that check's message (naming the
 *   field), before any decoding; such an input is dispatched as it is (never
 *   re-encoded or skipped, which would launder the string);
 * - a rejected request returns a client-side status (INVALID_ARGUMENT,
 *   NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNIMPLEMENTED,
 *   RESOURCE_EXHAUSTED) with a message, and changes nothing: the data dir
 *   digest, the instance states and our child processes are as before;
 * - read-only methods and operations whose target state already holds change
 *   nothing either; an OK reply decodes as the method's response message;
 * - every child process is a testvm shell, and there is exactly one per
 *   Running or Paused instance.
 * After an accepted change the fixture is driven back to its baseline so every
 * input starts from the same state.
 *
 * The same file builds into a plain corpus replayer (fuzz_replay.c supplies
 * main) for the gcc build. libFuzzer has no context argument, so the fixture is
 * the one file-level object here. */
#include "agent/manager.h"
#include "agent/server/fuzz_entry.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"
#include "drivers/registry.h"
#include "ember/v1/instance.pb-c.h"
#include "test/unit/testvm_driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_base {
  const char *name;
  const char *type;
  agent_state state;
} fz_base;

/* The baseline every input starts from. */
static const fz_base fz_baseline[] = {
    {"t-stopped", "testvm", AGENT_STATE_STOPPED}, {"t-running", "testvm", AGENT_STATE_RUNNING},
    {"t-paused", "testvm", AGENT_STATE_PAUSED},   {"t-standby", "testvm", AGENT_STATE_STANDBY},
    {"q-stopped", "qemu", AGENT_STATE_STOPPED},
};
#define FZ_N_BASE (sizeof(fz_baseline) / sizeof(fz_baseline[0]))

typedef struct fz_fixture {
  char root[64];
  char *data_dir;
  vmm_registry *reg;
  agent_manager *mgr;
  srv_fuzz *f;
  size_t n_methods;
  unsigned long long inputs, rejected, accepted, skipped;
} fz_fixture;

static fz_fixture *fz_g; /* the fixture; set once by fz_setup */

static void fz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fz_die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz_requests: INVARIANT VIOLATED: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- digest of the data dir: names, types, modes, sizes, contents ---- */

static uint64_t fz_fnv(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static int fz_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t fz_digest_dir(const char *dir, uint64_t h)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return fz_fnv(h, "?", 1);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      names = cmn_realloc(names, cap * sizeof(*names));
    }
    names[n++] = cmn_strdup(e->d_name);
  }
  closedir(d);
  if (n > 1)
    qsort(names, n, sizeof(*names), fz_cmp);
  for (size_t i = 0; i < n; i++) {
    char *p = cmn_asprintf("%s/%s", dir, names[i]);
    struct stat st;
    h = fz_fnv(h, names[i], strlen(names[i]) + 1);
    if (lstat(p, &st) == 0 && !S_ISSOCK(st.st_mode)) {
      uint32_t mode = st.st_mode;
      h = fz_fnv(h, &mode, sizeof(mode));
      if (S_ISDIR(st.st_mode)) {
        h = fz_digest_dir(p, h);
      } else if (S_ISREG(st.st_mode)) {
        uint64_t size = (uint64_t)st.st_size;
        h = fz_fnv(h, &size, sizeof(size));
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          char buf[8192];
          ssize_t r;
          while ((r = read(fd, buf, sizeof(buf))) > 0)
            h = fz_fnv(h, buf, (size_t)r);
          close(fd);
        }
      }
    }
    free(p);
    free(names[i]);
  }
  free(names);
  return h;
}

/* ---- our child processes (VMMs are spawned by this thread) ---- */

static size_t fz_children(bool check_kind)
{
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
  FILE *fp = fopen(path, "re");
  if (fp == NULL)
    return 0;
  size_t n = 0;
  int pid;
  while (fscanf(fp, "%d", &pid) == 1) {
    n++;
    if (!check_kind)
      continue;
    char cpath[64], cmd[4096];
    snprintf(cpath, sizeof(cpath), "/proc/%d/cmdline", pid);
    /* Right after posix_spawn the kernel may still show our own command line
     * (the exec has not set up the new one yet): look again for a while. */
    bool testvm = false;
    ssize_t r = 0;
    for (int tries = 0; tries < 200 && !testvm; tries++) {
      if (tries > 0)
        usleep(5000);
      int fd = open(cpath, O_RDONLY | O_CLOEXEC);
      r = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
      if (fd >= 0)
        close(fd);
      if (r <= 0)
        break; /* gone meanwhile */
      cmd[r] = '\0';
      /* The sanitizer runtime's own helper, not a VMM. */
      if (strstr(cmd, "llvm-symbolizer") != NULL)
        break;
      /* argv: /bin/sh -c <loop> testvm <dir>/testvm */
      const char *a = cmd;
      for (int k = 0; k < 3 && a < cmd + r; k++)
        a += strlen(a) + 1;
      testvm = strcmp(cmd, "/bin/sh") == 0 && a < cmd + r && strcmp(a, "testvm") == 0;
    }
    if (r > 0 && strstr(cmd, "llvm-symbolizer") != NULL) {
      n--; /* not ours to count */
      continue;
    }
    if (r > 0 && !testvm)
      fz_die("child process %d is not a testvm shell: %s", pid, cmd);
  }
  fclose(fp);
  return n;
}

/* ---- instance states ---- */

typedef struct fz_snap {
  size_t n;
  char names[64][80];
  agent_state states[64];
  int32_t pids[64];
  size_t live; /* Running or Paused */
} fz_snap;

static void fz_snapshot(fz_fixture *z, fz_snap *s)
{
  agent_instance_view *vs = NULL;
  size_t n = 0;
  cmn_error err = {0};
  if (agent_manager_list(z->mgr, AGENT_STATE_UNSPECIFIED, &vs, &n, &err) < 0)
    fz_die("list failed: %s", err.msg);
  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < n && i < 64; i++) {
    snprintf(s->names[i], sizeof(s->names[i]), "%s", vs[i].name);
    s->states[i] = vs[i].state;
    s->pids[i] = vs[i].vmm_pid;
    if (vs[i].state == AGENT_STATE_RUNNING || vs[i].state == AGENT_STATE_PAUSED)
      s->live++;
  }
  s->n = n;
  agent_instance_views_free(vs, n);
}

static bool fz_snap_equal(const fz_snap *a, const fz_snap *b)
{
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n && i < 64; i++)
    if (strcmp(a->names[i], b->names[i]) != 0 || a->states[i] != b->states[i] ||
        a->pids[i] != b->pids[i])
      return false;
  return true;
}

/* ---- the fixture ---- */

static void fz_spec(vmm_spec *s)
{
  memset(s, 0, sizeof(*s));
  s->vcpus = 1;
  s->memory_mib = 64;
  s->kernel = (char *)"/etc/passwd"; /* exists and is readable everywhere */
}

static void fz_must_op(fz_fixture *z, const char *name, agent_op op)
{
  cmn_error err = {0};
  if (agent_manager_op(z->mgr, name, op, NULL, &err) < 0)
    fz_die("fixture: %s %s failed: %s", agent_op_name(op), name, err.msg);
}

/* Drives a baseline instance from its current state to b->state. */
static void fz_drive(fz_fixture *z, const fz_base *b, agent_state cur)
{
  if (cur == b->state)
    return;
  if (b->state == AGENT_STATE_STOPPED || cur == AGENT_STATE_UNKNOWN) {
    fz_must_op(z, b->name, AGENT_OP_STOP);
    cur = AGENT_STATE_STOPPED;
    if (b->state == AGENT_STATE_STOPPED)
      return;
  }
  if (cur == AGENT_STATE_STANDBY)
    fz_must_op(z, b->name, AGENT_OP_RESTORE);
  else if (cur == AGENT_STATE_PAUSED && b->state != AGENT_STATE_STANDBY)
    fz_must_op(z, b->name, AGENT_OP_RESUME);
  else if (cur == AGENT_STATE_STOPPED)
    fz_must_op(z, b->name, AGENT_OP_START);
  if (b->state == AGENT_STATE_PAUSED)
    fz_must_op(z, b->name, AGENT_OP_PAUSE);
  else if (b->state == AGENT_STATE_STANDBY)
    fz_must_op(z, b->name, AGENT_OP_STANDBY);
}

static const fz_base *fz_base_of(const char *name)
{
  for (size_t i = 0; i < FZ_N_BASE; i++)
    if (strcmp(fz_baseline[i].name, name) == 0)
      return &fz_baseline[i];
  return NULL;
}

static void fz_reset(fz_fixture *z)
{
  agent_instance_view *vs = NULL;
  size_t n = 0;
  cmn_error err = {0};
  if (agent_manager_list(z->mgr, AGENT_STATE_UNSPECIFIED, &vs, &n, &err) < 0)
    fz_die("list failed: %s", err.msg);
  bool seen[FZ_N_BASE] = {false};
  for (size_t i = 0; i < n; i++) {
    const fz_base *b = fz_base_of(vs[i].name);
    if (b == NULL || strcmp(b->type, vs[i].hypervisor) != 0) {
      if (agent_manager_delete(z->mgr, vs[i].id, NULL, &err) < 0)
        fz_die("fixture: delete %s failed: %s", vs[i].name, err.msg);
      continue;
    }
    seen[b - fz_baseline] = true;
    fz_drive(z, b, vs[i].state);
  }
  agent_instance_views_free(vs, n);
  /* Saved snapshots a request made (a fork's own go with its clones). */
  agent_snapshot_view *ss = NULL;
  size_t ns = 0;
  if (agent_manager_snapshot_list(z->mgr, &ss, &ns, &err) == 0) {
    for (size_t i = 0; i < ns; i++)
      if (agent_manager_snapshot_delete(z->mgr, ss[i].id, NULL, &err) < 0)
        fz_die("fixture: delete snapshot %s failed: %s", ss[i].id, err.msg);
    agent_snapshot_views_free(ss, ns);
  }
  for (size_t i = 0; i < FZ_N_BASE; i++) {
    if (seen[i])
      continue;
    vmm_spec spec;
    fz_spec(&spec);
    agent_instance_view v = {0};
    if (agent_manager_create_instance(z->mgr, fz_baseline[i].name, fz_baseline[i].type, &spec,
                                      false, &v, &err) < 0)
      fz_die("fixture: create %s failed: %s", fz_baseline[i].name, err.msg);
    agent_instance_view_free(&v);
    fz_drive(z, &fz_baseline[i], AGENT_STATE_STOPPED);
  }
}

static void fz_teardown(void)
{
  fz_fixture *z = fz_g;
  if (z == NULL)
    return;
  fz_g = NULL;
  /* Stop every instance so no testvm shell outlives us, then remove the dir. */
  agent_instance_view *vs = NULL;
  size_t n = 0;
  cmn_error err = {0};
  if (agent_manager_list(z->mgr, AGENT_STATE_UNSPECIFIED, &vs, &n, &err) == 0) {
    for (size_t i = 0; i < n; i++)
      agent_manager_op(z->mgr, vs[i].id, AGENT_OP_STOP, NULL, &err);
    agent_instance_views_free(vs, n);
  }
  fprintf(stderr,
          "fuzz_requests: %llu inputs: %llu rejected, %llu accepted, %llu not dispatched "
          "(would start a non-testvm VMM)\n",
          z->inputs, z->rejected, z->accepted, z->skipped);
  srv_fuzz_free(z->f);
  agent_manager_free(z->mgr);
  vmm_registry_free(z->reg);
  if (getenv("EMBER_KEEP_TMP") == NULL) {
    if (cmn_rm_rf(z->root, &err) < 0)
      fprintf(stderr, "fuzz_requests: %s\n", err.msg);
  }
  free(z->data_dir);
  free(z);
}

static fz_fixture *fz_setup(void)
{
  if (fz_g != NULL)
    return fz_g;
  const char *lvl = getenv("EMBER_FUZZ_LOG");
  cmn_log_setup(lvl != NULL ? cmn_log_level_parse(lvl) : CMN_LOG_ERROR + 1, 2);
  /* The firecracker driver must not find a binary (real or fake). */
  unsetenv("EMBER_FIRECRACKER_BIN");
  fz_fixture *z = cmn_calloc(1, sizeof(*z));
  snprintf(z->root, sizeof(z->root), "/tmp/ember-fuzz-XXXXXX");
  if (mkdtemp(z->root) == NULL) {
    perror("mkdtemp");
    abort();
  }
  z->data_dir = cmn_asprintf("%s/data", z->root);
  /* Named so a wrapper can clean up after a crash (atexit does not run). */
  fprintf(stderr, "fuzz_requests: fixture root %s\n", z->root);
  static const vmm_driver *const extra[] = {&testvm_driver};
  cmn_error err = {0};
  z->reg = vmm_registry_create(NULL, extra, 1, &err);
  if (z->reg == NULL) {
    fprintf(stderr, "fuzz_requests: %s\n", err.msg);
    abort();
  }
  /* /etc is a system tree the default fence refuses; the two files the
   * corpus uses as kernel and initrd are allowed as single-file roots. */
  static const char *const roots[] = {"/etc/passwd", "/etc/group"};
  agent_host_policy hp = {.roots = roots, .n_roots = 2};
  agent_manager_config cfg = {
      .data_dir = z->data_dir, .monitor = false, .stop_timeout_ms = 2000, .host_policy = &hp};
  z->mgr = agent_manager_create(&cfg, z->reg, &err);
  if (z->mgr == NULL)
    fz_die("cannot create the manager: %s", err.msg);
  z->f = srv_fuzz_create(z->mgr);
  z->n_methods = srv_fuzz_method_count();
  if (z->n_methods == 0)
    fz_die("no InstanceService methods found");
  fz_g = z;
  atexit(fz_teardown);
  fz_reset(z);
  return z;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  fz_setup();
  return 0;
}

/* ---- one input ---- */

static bool fz_code_ok(int code)
{
  switch (code) {
  case CMN_INVALID_ARGUMENT:
  case CMN_NOT_FOUND:
  case CMN_ALREADY_EXISTS:
  case CMN_FAILED_PRECONDITION:
  case CMN_UNIMPLEMENTED:
  case CMN_RESOURCE_EXHAUSTED:
    return true;
  default:
    return false;
  }
}

static agent_op fz_op_of(const char *m)
{
  static const struct {
    const char *name;
    agent_op op;
  } t[] = {{"StartInstance", AGENT_OP_START},     {"StopInstance", AGENT_OP_STOP},
           {"PauseInstance", AGENT_OP_PAUSE},     {"ResumeInstance", AGENT_OP_RESUME},
           {"StandbyInstance", AGENT_OP_STANDBY}, {"RestoreInstance", AGENT_OP_RESTORE},
           {"DeleteInstance", AGENT_OP_DELETE}};
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    if (strcmp(m, t[i].name) == 0)
      return t[i].op;
  return AGENT_OP_NONE;
}

static agent_state fz_target(agent_op op)
{
  switch (op) {
  case AGENT_OP_START:
  case AGENT_OP_RESUME:
  case AGENT_OP_RESTORE:
    return AGENT_STATE_RUNNING;
  case AGENT_OP_STOP:
    return AGENT_STATE_STOPPED;
  case AGENT_OP_PAUSE:
    return AGENT_STATE_PAUSED;
  case AGENT_OP_STANDBY:
    return AGENT_STATE_STANDBY;
  default:
    return AGENT_STATE_UNSPECIFIED;
  }
}

/* Checks that an OK reply decodes as the method's response type (from the
 * service descriptor, so a new method is covered without a change here). */
static void fz_check_reply(const char *m, const uint8_t *resp, size_t rl)
{
  if (strcmp(m, "WatchInstances") == 0)
    return;
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(&ember__v1__instance_service__descriptor, m);
  if (md == NULL)
    return;
  const ProtobufCMessageDescriptor *d = md->output;
  ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, rl, resp);
  if (msg == NULL)
    fz_die("%s: the OK reply does not decode as %s", m, d->name);
  protobuf_c_message_free_unpacked(msg, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fz_fixture *z = fz_setup();
  if (size < 1)
    return 0;
  z->inputs++;
  size_t mi = data[0] % z->n_methods;
  const char *m = srv_fuzz_method_name(mi);
  const uint8_t *req = data + 1;
  size_t len = size - 1;
  uint8_t *repacked = NULL;

  /* Strings the server's wire check refuses: the handler path must refuse
   * the raw bytes the same way (and nothing may change, below). */
  cmn_error wire_err = {0};
  bool wire_bad = srv_fuzz_request_check(z->f, mi, req, len, &wire_err) < 0;

  /* Where a request could start a VMM, only testvm may get one. */
  agent_op op = fz_op_of(m);
  agent_state before_state = AGENT_STATE_UNSPECIFIED;
  if (wire_bad) {
    /* Dispatched as received: decoding it here would cut it at the NUL. */
  } else if (op != AGENT_OP_NONE) {
    Ember__V1__GetInstanceRequest *r = ember__v1__get_instance_request__unpack(NULL, len, req);
    if (r != NULL) {
      agent_instance_view v = {0};
      cmn_error e = {0};
      if (r->id[0] != '\0' && agent_manager_get(z->mgr, r->id, &v, &e) == 0) {
        before_state = v.state;
        if ((op == AGENT_OP_START || op == AGENT_OP_RESTORE) &&
            strcmp(v.hypervisor, "testvm") != 0) {
          agent_instance_view_free(&v);
          ember__v1__get_instance_request__free_unpacked(r, NULL);
          z->skipped++;
          return 0;
        }
      }
      agent_instance_view_free(&v);
      ember__v1__get_instance_request__free_unpacked(r, NULL);
    }
  } else if (strcmp(m, "CreateInstance") == 0) {
    Ember__V1__CreateInstanceRequest *r =
        ember__v1__create_instance_request__unpack(NULL, len, req);
    if (r != NULL && r->start && (r->spec == NULL || strcmp(r->spec->hypervisor, "testvm") != 0)) {
      r->start = false;
      len = ember__v1__create_instance_request__get_packed_size(r);
      repacked = cmn_malloc(len + 1);
      ember__v1__create_instance_request__pack(r, repacked);
      req = repacked;
    }
    if (r != NULL)
      ember__v1__create_instance_request__free_unpacked(r, NULL);
  }

  fz_snap s0, s1;
  fz_snapshot(z, &s0);
  uint64_t d0 = fz_digest_dir(z->data_dir, 14695981039346656037ULL);
  size_t c0 = fz_children(false);

  uint8_t *resp = NULL;
  size_t rl = 0;
  cmn_error err = {0};
  int rc = srv_fuzz_dispatch(z->f, mi, req, len, &resp, &rl, &err);

  if (wire_bad &&
      (rc >= 0 || err.code != CMN_INVALID_ARGUMENT || strcmp(err.msg, wire_err.msg) != 0))
    fz_die("%s: a string the wire check refuses (%s) reached the handler: answered %s (%s)", m,
           wire_err.msg, rc < 0 ? cmn_code_name(err.code) : "OK", rc < 0 ? err.msg : "");
  if (rc < 0) {
    z->rejected++;
    if (!fz_code_ok(err.code))
      fz_die("%s: rejected with code %d (%s) - a client error must not be INTERNAL/UNKNOWN", m,
             err.code, err.msg);
    if (err.msg[0] == '\0')
      fz_die("%s: rejected with code %d and no message", m, err.code);
    if (resp != NULL && rl != 0)
      fz_die("%s: rejected but a reply was produced", m);
  } else {
    z->accepted++;
    fz_check_reply(m, resp, rl);
  }
  free(resp);
  free(repacked);

  bool must_be_unchanged =
      rc < 0 || !srv_fuzz_method_mutates(mi) ||
      (op != AGENT_OP_NONE && op != AGENT_OP_DELETE && before_state == fz_target(op));
  fz_snapshot(z, &s1);
  if (must_be_unchanged) {
    uint64_t d1 = fz_digest_dir(z->data_dir, 14695981039346656037ULL);
    if (d1 != d0)
      fz_die("%s (%s, code %d: %s) changed the data dir", m, rc < 0 ? "rejected" : "no-op",
             err.code, err.msg);
    if (!fz_snap_equal(&s0, &s1))
      fz_die("%s (%s) changed instance states", m, rc < 0 ? "rejected" : "no-op");
    size_t c1 = fz_children(false);
    if (c1 != c0)
      fz_die("%s (%s) changed the number of child processes: %zu -> %zu", m,
             rc < 0 ? "rejected" : "no-op", c0, c1);
  } else {
    fz_reset(z);
    fz_snapshot(z, &s1);
  }
  size_t live = fz_children(true);
  if (live != s1.live)
    fz_die("after %s: %zu child processes for %zu Running/Paused instances", m, live, s1.live);
  return 0;
}
