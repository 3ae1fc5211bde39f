#!/usr/bin/python3
"""firecracker_fake.py: a contract fake of the `firecracker` binary (stdlib only).

It behaves like the Firecracker release named by env FAKE_FC_VERSION (default
1.16.1) as far as ember's driver can see, and it is deliberately strict: it is
the contract our Firecracker driver is tested against in CI.

  firecracker_fake.py --version            prints what that release prints
  firecracker_fake.py --api-sock PATH      serves the HTTP API on a unix socket

What it enforces, per version (sources: src/firecracker/swagger/firecracker.yaml
and src/vmm/src/vmm_config/*.rs at each release tag, CHANGELOG.md):
- request bodies: serde `deny_unknown_fields`: an unknown field, a missing
  required field or a wrongly typed value is 400 with a `fault_message`;
  fields appear and disappear with the version that introduced them
  (mem_backend 1.1, Drive.socket 1.6, machine huge_pages 1.7,
  network_overrides 1.12, load track_dirty_pages 1.13, /serial 1.14,
  load clock_realtime / vsock_override and interface mtu 1.16; the
  snapshot/create `version` field was removed in 1.6).
- the state machine: boot configuration only before InstanceStart;
  /snapshot/load only in a fresh process before any boot-specific
  configuration (logger and serial are allowed); pause/resume/snapshot only
  after start; snapshot/create only while Paused; Diff snapshots need dirty page
  tracking before 1.13 (later releases over-approximate with mincore: here,
  every page).
- snapshot files written the way Firecracker writes them: the memory file gets
  the length of guest memory; Full writes every page; Diff writes only the
  dirty pages and seeks over the rest (so the file is sparse). Before 1.6 the
  memory file is opened with truncate(true), so a Diff aimed at an existing
  full image destroys it; from 1.6 an existing file of the right size is not
  truncated and the Diff lands in place (PR #4301). Before 1.8 the first Diff
  after a Full contains every page (PR #4536).
- the simulated guest: guest memory is a bytearray of mem_size_mib. At boot
  the "kernel" (first 64 KiB of kernel_image_path) is copied to page 2.., a
  random marker to page 0, and a counter lives in page 1. While running, a tick
  every 50 ms increments the counter, writes a rotating scratch page, and
  prints `tiny counter=<n> marker=<hex>` on the serial console (stdout, or
  serial_out_path from 1.14). Page 3000-ish "generation" page: on every resume
  after a snapshot load the guest bumps a generation number (like a guest that
  saw VMGenID change) and page ZERO_PAGE becomes all zeros on odd generations,
  a pattern on even ones, so diffs contain dirty pages that are all zeros.
- loading: the memory file and the state file are only read (Firecracker
  opens the memory file read-only and maps it privately), so any number of
  processes may load from one folder at once; network_overrides (1.12) and
  vsock_override (1.16) replace the TAP names and the vsock uds_path the
  snapshot recorded. The state file records the SHA-256 of guest memory at snapshot
  time; a load whose memory file does not hash to it fails (a real Firecracker
  would resume a corrupted guest; the fake says so instead). The guest then
  continues from exactly that memory.

Guest agent: with EMBER_FAKE_GUEST_AGENT set, the vsock device's uds_path
relays "CONNECT 10789" to a host build of the guest agent that the fake's
guest runs once its vCPUs first run (test/fakes/fake_guest_agent.py).

Env: FAKE_FC_VERSION (e.g. 1.1.0, 1.13.0, 1.16.1), FAKE_FC_TICK_MS (50),
FAKE_FC_CONSOLE_PAD (0: that many "x" after each console line: a chatty guest),
FAKE_FC_BURN_FILE (while that file exists, a running guest's vCPU spins instead
of sleeping between ticks: a busy guest for idle auto-standby).
Log lines (stderr) start with "fake-firecracker:"; use of a deprecated field
logs "DEPRECATED".
"""

import hashlib
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from fake_guest_agent import agent_from_env, serve_vsock
except ImportError:  # a copy of this file away from test/fakes (some tests copy it)
    def agent_from_env():
        return None

    def serve_vsock(lsock, vm):
        pass

PAGE = 4096
KERNEL_PAGE = 2
KERNEL_MAX = 64 * 1024
GEN_PAGE = 40
ZERO_PAGE = 41
SCRATCH_FIRST = 48
SCRATCH_COUNT = 16
STATE_MAGIC = "ember-fake-firecracker-state"


def log(msg):
    sys.stderr.write("fake-firecracker: %s\n" % msg)
    sys.stderr.flush()


def parse_version(s):
    parts = s.strip().lstrip("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise SystemExit("FAKE_FC_VERSION must look like 1.16.1, got %r" % s)
    return tuple(int(p) for p in parts)


VERSION = parse_version(os.environ.get("FAKE_FC_VERSION", "1.16.1"))
VSTR = "%d.%d.%d" % VERSION
if VERSION < (1, 1, 0) or VERSION >= (2, 0, 0):
    raise SystemExit("fake firecracker models releases 1.1 .. 1.x only")


def at_least(maj, minor):
    return VERSION >= (maj, minor, 0)


def version_text():
    """What `firecracker --version` prints (src/firecracker/src/main.rs)."""
    out = "Firecracker v%s\n\n" % VSTR
    if at_least(1, 6):
        return out  # PR #4194 (1.6): no snapshot versions any more
    snaps = ["0.23.0", "0.24.0", "0.25.0", "1.0.0", "1.1.0"]
    if at_least(1, 2):
        snaps.append("1.2.0")
    if at_least(1, 4):
        snaps += ["1.3.0", "1.4.0"]
    if at_least(1, 5):
        snaps.append("1.5.0")
        return out + "Supported snapshot data format versions:\n" + "".join(
            "%s\n" % s for s in snaps)
    return out + "Supported snapshot data format versions:" + ",".join(
        " v%s" % s for s in snaps) + "\n\n"


# ---- request schemas -------------------------------------------------------
# A schema: {field: (type, required)}; type is "str", "bool", "int", "obj",
# "arr", or a tuple of allowed strings (an enum).

class BadRequest(Exception):
    pass


def rate_limiter():
    return ("obj", False)


def schema_boot_source():
    return {"kernel_image_path": ("str", True), "boot_args": ("str", False),
            "initrd_path": ("str", False)}


def schema_machine_config():
    s = {"vcpu_count": ("int", True), "mem_size_mib": ("int", True),
         "smt": ("bool", False), "cpu_template": ("str", False),
         "track_dirty_pages": ("bool", False)}
    if at_least(1, 7):
        s["huge_pages"] = (("None", "2M"), False)
    return s


def schema_drive():
    old = not at_least(1, 6)
    s = {"drive_id": ("str", True), "path_on_host": ("str", old),
         "is_root_device": ("bool", True), "is_read_only": ("bool", old),
         "partuuid": ("str", False), "cache_type": (("Unsafe", "Writeback"), False),
         "rate_limiter": rate_limiter(), "io_engine": (("Sync", "Async"), False)}
    if at_least(1, 6):
        s["socket"] = ("str", False)
    return s


def tap_exists(name):
    """The TAP as Firecracker opens it: by name in the VMM's own network
    namespace (not /sys/class/net, which shows the namespace of whoever mounted
    sysfs)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def schema_net():
    s = {"iface_id": ("str", True), "host_dev_name": ("str", True),
         "guest_mac": ("str", False), "rx_rate_limiter": rate_limiter(),
         "tx_rate_limiter": rate_limiter()}
    if at_least(1, 16):
        s["mtu"] = ("int", False)
    return s


def schema_vsock():
    # vsock_id: deprecated since 1.0, optional through 1.x (swagger Vsock).
    return {"guest_cid": ("int", True), "uds_path": ("str", True),
            "vsock_id": ("str", False)}


def bind_vsock(path):
    """Firecracker binds and listens on uds_path; it fails when the file exists
    (a stale socket a killed VMM left behind)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
    except OSError as e:
        s.close()
        raise BadRequest("Cannot create vsock device: %s: %s" % (path, e.strerror))
    s.listen(4)
    return s


def schema_logger():
    levels = ("Error", "Warning", "Info", "Debug", "Trace", "Off")
    s = {"log_path": ("str", not at_least(1, 6)), "level": (levels, False),
         "show_level": ("bool", False), "show_log_origin": ("bool", False)}
    if at_least(1, 6):
        s["module"] = ("str", False)
    return s


def schema_serial():
    s = {"serial_out_path": ("str", False)}
    if at_least(1, 16):
        s["rate_limiter"] = ("obj", False)
    return s


def schema_snapshot_create():
    s = {"snapshot_type": (("Full", "Diff"), False), "snapshot_path": ("str", True),
         "mem_file_path": ("str", True)}
    if not at_least(1, 6):
        s["version"] = ("str", False)
    return s


def schema_snapshot_load():
    s = {"snapshot_path": ("str", True), "mem_file_path": ("str", False),
         "mem_backend": ("obj", False), "enable_diff_snapshots": ("bool", False),
         "resume_vm": ("bool", False)}
    if at_least(1, 12):
        s["network_overrides"] = ("arr", False)
    if at_least(1, 13):
        s["track_dirty_pages"] = ("bool", False)
    if at_least(1, 16):
        s["clock_realtime"] = ("bool", False)
        s["vsock_override"] = ("obj", False)
    return s


def schema_mem_backend():
    return {"backend_type": (("File", "Uffd"), True), "backend_path": ("str", True)}


def check(body, schema):
    if not isinstance(body, dict):
        raise BadRequest("An error occurred when deserializing the json body of a "
                         "request: invalid type: expected struct.")
    for k, v in body.items():
        if k not in schema:
            raise BadRequest(
                "An error occurred when deserializing the json body of a request: "
                "unknown field `%s`, expected one of %s." %
                (k, ", ".join("`%s`" % f for f in schema)))
        typ = schema[k][0]
        ok = {"str": lambda x: isinstance(x, str),
              "bool": lambda x: isinstance(x, bool),
              "int": lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
              "obj": lambda x: isinstance(x, dict),
              "arr": lambda x: isinstance(x, list)}.get(typ) if isinstance(typ, str) else \
            (lambda x, t=typ: x in t)
        if not ok(v):
            raise BadRequest(
                "An error occurred when deserializing the json body of a request: "
                "invalid value for field `%s`: %r." % (k, v))
    for k, (_, req) in schema.items():
        if req and k not in body:
            raise BadRequest("An error occurred when deserializing the json body of a "
                             "request: missing field `%s`." % k)


# ---- the simulated microVM -------------------------------------------------

class Vmm:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = False         # InstanceStart done or snapshot loaded
        self.boot_path = False       # boot-specific config given (blocks load)
        self.paused = False
        self.boot_source = None
        self.machine = {"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": False}
        self.drives = {}
        self.drive_files = []        # open block device backings (held for the VM's life)
        self.nets = {}
        self.vsock = None
        self.vsock_sock = None
        self.agent = agent_from_env()
        self.serial_out = None
        self.mem = None
        self.dirty = set()
        self.tracking = False
        self.loaded_from = None
        self.tick_ms = int(os.environ.get("FAKE_FC_TICK_MS", "50"))
        self.console_pad = int(os.environ.get("FAKE_FC_CONSOLE_PAD", "0"))
        self.console = None

    # guest memory helpers (call with lock held)
    def write_page(self, idx, data):
        off = idx * PAGE
        self.mem[off:off + len(data)] = data
        self.dirty.add(idx)

    def counter(self):
        return struct.unpack_from("<Q", self.mem, PAGE)[0]

    def marker(self):
        return self.mem[16:24].hex()

    def console_line(self, text):
        if self.console is None:
            if self.serial_out is not None:
                # Firecracker opens serial_out_path write-only, no truncate.
                self.console = open(self.serial_out, "r+b" if os.path.exists(
                    self.serial_out) else "wb", buffering=0)
            else:
                self.console = sys.stdout.buffer
        self.console.write(text.encode() + b"\n")
        self.console.flush()

    def guest_tick(self):
        n = self.counter() + 1
        page = bytearray(PAGE)
        struct.pack_into("<Q", page, 0, n)
        self.write_page(1, page)
        fill = bytes([(n * 7 + 1) & 0xFF]) * PAGE
        self.write_page(SCRATCH_FIRST + n % SCRATCH_COUNT, fill)
        self.console_line("tiny counter=%d marker=%s%s" % (n, self.marker(),
                                                            " " + "x" * self.console_pad
                                                            if self.console_pad else ""))

    def guest_after_load(self):
        """The guest notices it was restored (VMGenID-like)."""
        gen = struct.unpack_from("<Q", self.mem, GEN_PAGE * PAGE)[0] + 1
        page = bytearray(PAGE)
        struct.pack_into("<Q", page, 0, gen)
        self.write_page(GEN_PAGE, page)
        self.write_page(ZERO_PAGE, bytes(PAGE) if gen % 2 == 1 else b"\xa5" * PAGE)

    def burning(self):
        """A busy guest (FAKE_FC_BURN_FILE exists): its vCPU spins."""
        path = os.environ.get("FAKE_FC_BURN_FILE")
        return bool(path) and self.started and not self.paused and os.path.exists(path)

    def run_guest(self):
        while True:
            if self.burning():
                end = time.monotonic() + self.tick_ms / 1000.0
                while time.monotonic() < end:
                    pass
            else:
                time.sleep(self.tick_ms / 1000.0)
            with self.lock:
                if self.started and not self.paused:
                    self.guest_tick()

    # API actions (lock held)
    def require_preboot(self):
        if self.started:
            raise BadRequest("The requested operation is not supported after starting "
                             "the microVM.")

    def require_started(self):
        if not self.started:
            raise BadRequest("The requested operation is not supported before starting "
                             "the microVM.")

    def open_drives(self, drives, what):
        """Opens each drive's backing file as Firecracker does when it builds the
        block device (devices/virtio/block: read, plus write unless
        is_read_only) and keeps it open; a path to an already open descriptor
        (/proc/self/fd/N, inherited from the parent) works like any path."""
        files = []
        for d in drives.values():
            p = d.get("path_on_host")
            if p is None:
                continue
            try:
                files.append(open(p, "rb" if d.get("is_read_only") else "r+b", buffering=0))
            except OSError as e:
                for f in files:
                    f.close()
                raise BadRequest("%s: Unable to open block device %s: %s" % (what, p, e))
        return files

    def instance_start(self):
        self.require_preboot()
        if self.boot_source is None:
            raise BadRequest("Start microvm error: Cannot start microvm without kernel "
                             "configuration.")
        kpath = self.boot_source["kernel_image_path"]
        try:
            with open(kpath, "rb") as f:
                kernel = f.read(KERNEL_MAX)
        except OSError as e:
            raise BadRequest("Start microvm error: Invalid Kernel: %s" % e)
        ipath = self.boot_source.get("initrd_path")
        if ipath:
            try:
                with open(ipath, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise BadRequest("Start microvm error: Invalid initrd: %s: %s" % (ipath, e))
        self.drive_files = self.open_drives(self.drives, "Start microvm error")
        size = self.machine["mem_size_mib"] << 20
        if size < (SCRATCH_FIRST + SCRATCH_COUNT) * PAGE + KERNEL_MAX:
            raise BadRequest("Start microvm error: guest memory too small for the fake")
        self.mem = bytearray(size)
        self.tracking = bool(self.machine.get("track_dirty_pages"))
        marker = bytearray(PAGE)
        marker[0:8] = b"FAKEFC01"
        marker[16:24] = os.urandom(8)
        self.write_page(0, marker)
        self.mem[KERNEL_PAGE * PAGE:KERNEL_PAGE * PAGE + len(kernel)] = kernel
        self.write_page(ZERO_PAGE, b"\xa5" * PAGE)
        self.dirty = set(range(size // PAGE))  # everything is new since boot
        self.started = True
        self.paused = False
        if self.agent is not None and self.vsock is not None:
            self.agent.start()
        log("InstanceStart: %d MiB, tracking=%s" % (self.machine["mem_size_mib"],
                                                    self.tracking))

    def set_vm_state(self, state):
        self.require_started()
        self.paused = state == "Paused"
        log("vm state -> %s" % state)

    def snapshot_create(self, body):
        self.require_started()
        if not self.paused:
            raise BadRequest("Create snapshot error: Cannot save the microVM state: the "
                             "microVM is not paused.")
        stype = body.get("snapshot_type", "Full")
        if "version" in body:
            log("snapshot/create: version %s requested" % body["version"])
        mem_path = body["mem_file_path"]
        size = len(self.mem)
        if stype == "Diff":
            if not self.tracking and not at_least(1, 13):
                raise BadRequest("Create snapshot error: Cannot get dirty bitmap: dirty "
                                 "page tracking is not enabled (track_dirty_pages / "
                                 "enable_diff_snapshots).")
            pages = sorted(self.dirty) if self.tracking else list(range(size // PAGE))
        else:
            pages = list(range(size // PAGE))
        # Write state first (persist.rs snapshot_state_to_file: truncate(true)).
        state = {"magic": STATE_MAGIC, "fc_version": VSTR,
                 "vcpu_count": self.machine["vcpu_count"],
                 "mem_size_mib": self.machine["mem_size_mib"],
                 "boot_source": self.boot_source, "drives": self.drives,
                 "nets": self.nets, "vsock": self.vsock, "mem_sha256": hashlib.sha256(self.mem).hexdigest(),
                 "counter": self.counter(), "snapshot_type": stype}
        try:
            with open(body["snapshot_path"], "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            existed = os.path.exists(mem_path)
            if at_least(1, 6):
                fd = os.open(mem_path, os.O_WRONLY | os.O_CREAT, 0o644)
                if existed and os.fstat(fd).st_size != size:
                    os.ftruncate(fd, 0)
            else:
                fd = os.open(mem_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, size)
                view = memoryview(self.mem)
                # Batch contiguous runs like dump_dirty does.
                i = 0
                while i < len(pages):
                    j = i
                    while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
                        j += 1
                    off = pages[i] * PAGE
                    end = (pages[j] + 1) * PAGE
                    os.pwrite(fd, view[off:end], off)
                    i = j + 1
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise BadRequest("Create snapshot error: Cannot write memory file: %s" % e)
        if stype == "Full" and at_least(1, 8):
            self.dirty = set()
        elif stype == "Full":
            self.dirty = set(range(size // PAGE))  # pre-1.8: next diff has every page
        else:
            self.dirty = set()
        log("snapshot/create %s: %d pages written to %s (in place into existing: %s)" %
            (stype, len(pages), mem_path, existed and at_least(1, 6)))

    def snapshot_load(self, body):
        if self.started:
            raise BadRequest("The requested operation is not supported after starting "
                             "the microVM.")
        if self.boot_path:
            raise BadRequest("Load microVM snapshot error: Loading a microVM snapshot not "
                             "allowed after configuring boot-specific resources.")
        has_file = "mem_file_path" in body
        has_backend = "mem_backend" in body
        if has_file and has_backend:
            raise BadRequest("An error occurred when deserializing the json body of a "
                             "request: too many fields: either `mem_backend` or "
                             "`mem_file_path` exclusively is required.")
        if not has_file and not has_backend:
            raise BadRequest("An error occurred when deserializing the json body of a "
                             "request: missing field: either `mem_backend` or "
                             "`mem_file_path` is required.")
        if has_file:
            log("DEPRECATED: PUT /snapshot/load: mem_file_path")
            mem_path = body["mem_file_path"]
        else:
            check(body["mem_backend"], schema_mem_backend())
            if body["mem_backend"]["backend_type"] != "File":
                raise BadRequest("Load microVM snapshot error: the fake only serves File")
            mem_path = body["mem_backend"]["backend_path"]
        if body.get("enable_diff_snapshots") and at_least(1, 13):
            log("DEPRECATED: PUT /snapshot/load: enable_diff_snapshots")
        for o in body.get("network_overrides", []):
            check(o, {"iface_id": ("str", True), "host_dev_name": ("str", True)})
        if "vsock_override" in body:
            check(body["vsock_override"], {"uds_path": ("str", True)})
        try:
            with open(body["snapshot_path"]) as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise BadRequest("Load microVM snapshot error: Cannot deserialize the microVM "
                             "state: %s" % e)
        if state.get("magic") != STATE_MAGIC:
            raise BadRequest("Load microVM snapshot error: not a snapshot state file")
        size = state["mem_size_mib"] << 20
        try:
            with open(mem_path, "rb") as f:
                mem = bytearray(f.read(size + 1))
        except OSError as e:
            raise BadRequest("Load microVM snapshot error: Cannot open the memory file: "
                             "%s" % e)
        if len(mem) != size:
            raise BadRequest("Load microVM snapshot error: memory file has %d bytes, the "
                             "snapshot describes %d" % (len(mem), size))
        if hashlib.sha256(mem).hexdigest() != state["mem_sha256"]:
            raise BadRequest("Load microVM snapshot error: the memory file does not hold "
                             "the memory this state was saved with (fake check: a real "
                             "Firecracker would resume a corrupted guest)")
        for o in body.get("network_overrides", []):
            if o["iface_id"] not in state["nets"]:
                raise BadRequest("Load microVM snapshot error: network_overrides names "
                                 "%s, which the snapshot does not have" % o["iface_id"])
            state["nets"][o["iface_id"]]["host_dev_name"] = o["host_dev_name"]
        self.mem = mem
        self.machine = {"vcpu_count": state["vcpu_count"],
                        "mem_size_mib": state["mem_size_mib"]}
        self.boot_source = state["boot_source"]
        self.drives = state["drives"]
        # Device state restore re-opens every drive by the path the state
        # recorded (block devices keep their path_on_host in the snapshot).
        self.drive_files = self.open_drives(self.drives, "Load microVM snapshot error")
        self.nets = state["nets"]
        self.vsock = state.get("vsock")
        if "vsock_override" in body:
            if self.vsock is None:
                raise BadRequest("Load microVM snapshot error: vsock_override given but the "
                                 "snapshot has no vsock device")
            self.vsock = dict(self.vsock, uds_path=body["vsock_override"]["uds_path"])
        if self.vsock is not None:
            self.vsock_sock = bind_vsock(self.vsock["uds_path"])
            serve_vsock(self.vsock_sock, self)
            if self.agent is not None:
                self.agent.start()
        self.tracking = bool(body.get("track_dirty_pages") or
                             body.get("enable_diff_snapshots"))
        self.dirty = set()
        self.loaded_from = mem_path
        self.started = True
        self.paused = True
        self.guest_after_load()  # the vCPU runs this on its first resume; tracked
        log("snapshot/load from %s: counter=%d tracking=%s" %
            (mem_path, self.counter(), self.tracking))
        if body.get("resume_vm"):
            self.paused = False

    def instance_info(self):
        state = "Not started" if not self.started else ("Paused" if self.paused
                                                        else "Running")
        return {"id": "anonymous-instance", "state": state, "vmm_version": VSTR,
                "app_name": "Firecracker"}


VMM = Vmm()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Firecracker API"
    sys_version = ""

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        pass

    def reply(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def fault(self, msg, status=400):
        log("%s %s -> %d: %s" % (self.command, self.path, status, msg))
        self.reply(status, {"fault_message": msg})

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n) if n else b""
        if not raw:
            raise BadRequest("Empty request body")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise BadRequest("An error occurred when deserializing the json body of a "
                             "request: %s." % e)

    def do_GET(self):  # noqa: N802
        self.dispatch("GET")

    def do_PUT(self):  # noqa: N802
        self.dispatch("PUT")

    def do_PATCH(self):  # noqa: N802
        self.dispatch("PATCH")

    def dispatch(self, method):
        try:
            with VMM.lock:
                out = self.route(method, self.path)
            if out is None:
                self.reply(204)
            else:
                self.reply(200, out)
        except BadRequest as e:
            self.fault(str(e))

    def route(self, method, path):
        v = VMM
        if method == "GET" and path == "/":
            return v.instance_info()
        if method == "GET" and path == "/version":
            return {"firecracker_version": VSTR}
        if method == "GET" and path == "/machine-config":
            return v.machine
        if method == "PUT" and path == "/actions":
            b = self.body()
            check(b, {"action_type": (("FlushMetrics", "InstanceStart", "SendCtrlAltDel"),
                                      True)})
            if b["action_type"] == "InstanceStart":
                v.instance_start()
            else:
                v.require_started()
            return None
        if method == "PUT" and path == "/boot-source":
            b = self.body()
            check(b, schema_boot_source())
            v.require_preboot()
            # BootConfig::new opens both files at this request (File::open).
            for key, what in (("kernel_image_path", "The kernel file cannot be opened"),
                              ("initrd_path", "The initrd file cannot be opened due to "
                               "invalid path or invalid permissions.")):
                if b.get(key) is not None:
                    try:
                        open(b[key], "rb").close()
                    except OSError as e:
                        raise BadRequest("%s: %s" % (what, e))
            v.boot_source = b
            v.boot_path = True
            return None
        if method == "PUT" and path == "/machine-config":
            b = self.body()
            check(b, schema_machine_config())
            v.require_preboot()
            if b["vcpu_count"] < 1 or b["mem_size_mib"] < 1:
                raise BadRequest("The vCPU number is invalid!")
            v.machine = dict(b)
            v.boot_path = True
            return None
        if method == "PUT" and path.startswith("/drives/"):
            b = self.body()
            check(b, schema_drive())
            if b["drive_id"] != path[len("/drives/"):]:
                raise BadRequest("The id from the path does not match the id from the body!")
            v.require_preboot()
            # The block device is built, and its file opened, at this request.
            for f in v.open_drives({b["drive_id"]: b}, "Unable to create the virtio block "
                                   "device"):
                f.close()
            v.drives[b["drive_id"]] = b
            v.boot_path = True
            return None
        if method == "PUT" and path.startswith("/network-interfaces/"):
            b = self.body()
            check(b, schema_net())
            if b["iface_id"] != path[len("/network-interfaces/"):]:
                raise BadRequest("The id from the path does not match the id from the body!")
            v.require_preboot()
            if not tap_exists(b["host_dev_name"]):
                raise BadRequest("Could not create the network device: Open tap device "
                                 "failed: %s does not exist" % b["host_dev_name"])
            v.nets[b["iface_id"]] = b
            v.boot_path = True
            return None
        if method == "PUT" and path == "/vsock":
            b = self.body()
            check(b, schema_vsock())
            v.require_preboot()
            if b["guest_cid"] < 3:
                raise BadRequest("Cannot create vsock device: invalid guest CID %d"
                                 % b["guest_cid"])
            v.vsock_sock = bind_vsock(b["uds_path"])
            serve_vsock(v.vsock_sock, v)
            v.vsock = b
            v.boot_path = True
            return None
        if method == "PUT" and path == "/logger":
            b = self.body()
            check(b, schema_logger())
            v.require_preboot()
            return None
        if method == "PUT" and path == "/serial" and at_least(1, 14):
            b = self.body()
            check(b, schema_serial())
            v.require_preboot()
            v.serial_out = b.get("serial_out_path")
            return None
        if method == "PATCH" and path == "/vm":
            b = self.body()
            check(b, {"state": (("Paused", "Resumed"), True)})
            v.set_vm_state(b["state"])
            return None
        if method == "PUT" and path == "/snapshot/create":
            b = self.body()
            check(b, schema_snapshot_create())
            v.snapshot_create(b)
            return None
        if method == "PUT" and path == "/snapshot/load":
            b = self.body()
            check(b, schema_snapshot_load())
            v.snapshot_load(b)
            return None
        raise BadRequest("Invalid request method and/or path: %s %s." % (method, path))


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main(argv):
    if "--version" in argv:
        sys.stdout.write(version_text())
        return 0
    sock = None
    i = 1
    while i < len(argv):
        if argv[i] == "--api-sock" and i + 1 < len(argv):
            sock = argv[i + 1]
            i += 2
        elif argv[i] in ("--id", "--log-path", "--level", "--seccomp-level",
                         "--http-api-max-payload-size", "--mmds-size-limit"):
            i += 2
        elif argv[i] in ("--no-seccomp", "--show-level", "--show-log-origin",
                         "--boot-timer"):
            i += 1
        else:
            log("Arguments parsing error: unknown argument %s" % argv[i])
            return 153
        continue
    if sock is None:
        sock = "/run/firecracker.socket"
    if os.path.exists(sock):
        log("Failed to open the API socket at %s: Address in use" % sock)
        return 1
    log("Running Firecracker v%s" % VSTR)
    srv = Server(sock, Handler)
    threading.Thread(target=VMM.run_guest, daemon=True).start()
    try:
        srv.serve_forever()
    finally:
        try:
            os.unlink(sock)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(0)
    except socket.error as e:
        log("socket error: %s" % e)
        sys.exit(1)
