#!/usr/bin/python3
"""cloud_hypervisor_fake.py: a contract fake of the `cloud-hypervisor` binary
(stdlib only).

It behaves like the Cloud Hypervisor release named by env FAKE_CH_VERSION
(default 53.0; modelled: 25 .. 53) as far as ember's driver can see, and it is
deliberately strict: it is the contract the cloud-hypervisor driver is tested
against in CI.

  cloud_hypervisor_fake.py --version                 prints what that release prints
  cloud_hypervisor_fake.py --api-socket path=PATH    serves the REST API (/api/v1/...)

Sources (at each release tag of github.com/cloud-hypervisor/cloud-hypervisor):
vmm/src/api/openapi/cloud-hypervisor.yaml, vmm/src/config.rs (<= v27) or
vmm/src/vm_config.rs (>= v28), vmm/src/api/http*.rs, vmm/src/lib.rs,
docs/api.md, docs/snapshot_restore.md, build.rs and src/main.rs.

What it enforces, per version:
- `--version` prints "cloud-hypervisor v<X>.<Y>.0" (main.rs: CARGO_BIN_NAME and
  BUILD_VERSION, "v" + CARGO_PKG_VERSION for a release build).
- vm.create bodies: VmConfig with kernel {path} / cmdline {args} / initramfs
  {path} up to v27, payload {kernel, cmdline, initramfs, firmware} from v26
  (both in v26-27), only payload from v28. Console/serial modes Off, Pty, Tty,
  File, Null (+ Socket from v40). Missing required fields, wrong types and
  unknown enum variants are 400 as serde reports them.
  NOTE: real Cloud Hypervisor does not deny unknown fields (no serde
  deny_unknown_fields on its config structs): it silently ignores them. The
  fake rejects them instead (message as serde's deny_unknown_fields would
  word it, and a log line "IGNORED-BY-REAL-CH"), because a field ignored by
  the real VMM means the driver configured something that did not happen.
- error bodies: before v40 the Debug text of the error, v40-v46 its Display
  text, from v47 a JSON array of the error chain's messages. API errors are
  500 (VmNotCreated is 404 from v53), deserialisation errors 400, unknown
  endpoints 404.
- the state machine: one VM per process; vm.create only without a VM; vm.boot
  only when Created; pause only when Running, resume only when Paused
  (InvalidStateTransition); vm.snapshot only while Paused ("Trying to snapshot
  while VM is running") into an existing folder given as file://; vm.restore
  only in a VMM without a VM (VmAlreadyCreated), and it leaves the VM Paused
  (unless `resume`: true, from v52); vmm.shutdown ends the process without the
  guest running again; vm.power-button: the guest powers off and the VMM exits.
- snapshot files as Cloud Hypervisor writes them: config.json (the VmConfig),
  state.json (device state; here the fake's own), memory-ranges (all guest
  RAM), mode 0600. A restore reads all three and writes none of them
  (memory_restore_mode Copy: the memory is copied into fresh guest RAM), so
  several VMMs may restore from one folder at once; the devices come from
  config.json as saved (the vsock socket is bound at the path it names, so a
  second VMM restoring an unchanged config while the first runs fails as the
  real one would); serial/console files of mode File are reopened with
  File::create (truncated) as the real VMM does.
- the simulated guest: guest memory is a bytearray of memory.size. At boot the
  "kernel" (first 64 KiB of the kernel file) goes to page 2.., a random marker
  to page 0, a counter to page 1. While Running, a tick every FAKE_CH_TICK_MS
  (50) increments the counter and prints `tiny counter=<n> marker=<hex>` on the
  serial port (stdout for Tty). state.json records the SHA-256 of guest memory;
  a restore whose memory-ranges does not hash to it fails (a real VMM would
  resume a corrupted guest; the fake says so instead).

Log lines (stderr) start with "fake-cloud-hypervisor:".
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
STATE_MAGIC = "ember-fake-cloud-hypervisor-state"


def log(msg):
    sys.stderr.write("fake-cloud-hypervisor: %s\n" % msg)
    sys.stderr.flush()


def parse_version(s):
    parts = s.strip().lstrip("v").split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise SystemExit("FAKE_CH_VERSION must look like 40.0, got %r" % s)
    return (int(parts[0]), int(parts[1]))


VERSION = parse_version(os.environ.get("FAKE_CH_VERSION", "53.0"))
if VERSION < (25, 0) or VERSION > (53, 99):
    raise SystemExit("fake cloud-hypervisor models releases v25 .. v53 only")
VSTR = "%d.%d.0" % VERSION


def at_least(major):
    return VERSION[0] >= major


# ---- errors ------------------------------------------------------------------

class ApiFail(Exception):
    """status + error chain (outermost first)."""

    def __init__(self, status, chain):
        super().__init__(chain[-1])
        self.status = status
        self.chain = chain


def serde_error(msg):
    return ApiFail(400, ["Failed to deserialize JSON", msg])


def api_error(*chain, status=500):
    return ApiFail(status, ["Error from API"] + list(chain))


def error_body(e):
    """The body Cloud Hypervisor sends for an error, per version."""
    if at_least(47):
        return json.dumps(e.chain)
    if at_least(40):
        return ": ".join(e.chain[1:]) if len(e.chain) > 1 else e.chain[0]
    # Debug formatting of the HttpError enum (v25 .. v39).
    kind = "SerdeJsonDeserialize" if e.status == 400 else "ApiError"
    return "%s(%s)" % (kind, "(".join(e.chain[1:]) + ")" * (len(e.chain) - 2))


# ---- schemas -----------------------------------------------------------------
# {field: (type, required)}; type: "str", "bool", "int", "obj" (free object),
# "arr" (free array), a dict (nested schema), ("list", schema) or a tuple of
# allowed strings (an enum).

def schema_cpus():
    return {"boot_vcpus": ("int", True), "max_vcpus": ("int", True),
            "topology": ("obj", False), "kvm_hyperv": ("bool", False),
            "max_phys_bits": ("int", False), "affinity": ("arr", False),
            "features": ("obj", False)}


def schema_memory():
    s = {"size": ("int", True), "hotplug_size": ("int", False),
         "hotplugged_size": ("int", False), "mergeable": ("bool", False),
         "hotplug_method": (("Acpi", "VirtioMem"), False), "shared": ("bool", False),
         "hugepages": ("bool", False), "hugepage_size": ("int", False),
         "prefault": ("bool", False), "zones": ("arr", False)}
    if at_least(40):
        s["thp"] = ("bool", False)
    return s


def schema_payload():
    return {"firmware": ("str", False), "kernel": ("str", False),
            "cmdline": ("str", False), "initramfs": ("str", False)}


def schema_console():
    modes = ("Off", "Pty", "Tty", "File", "Null")
    if at_least(40):
        modes = ("Off", "Pty", "Tty", "File", "Socket", "Null")
    s = {"mode": (modes, True), "file": ("str", False), "iommu": ("bool", False)}
    if at_least(40):
        s["socket"] = ("str", False)
    return s


def schema_disk():
    return {"path": ("str", False), "readonly": ("bool", False), "direct": ("bool", False),
            "iommu": ("bool", False), "num_queues": ("int", False),
            "queue_size": ("int", False), "vhost_user": ("bool", False),
            "vhost_socket": ("str", False), "rate_limiter_config": ("obj", False),
            "pci_segment": ("int", False), "id": ("str", False), "serial": ("str", False)}


def schema_net():
    return {"tap": ("str", False), "ip": ("str", False), "mask": ("str", False),
            "mac": ("str", False), "host_mac": ("str", False), "mtu": ("int", False),
            "iommu": ("bool", False), "num_queues": ("int", False),
            "queue_size": ("int", False), "vhost_user": ("bool", False),
            "vhost_socket": ("str", False), "vhost_mode": (("Client", "Server"), False),
            "id": ("str", False), "fds": ("arr", False), "rate_limiter_config": ("obj", False),
            "pci_segment": ("int", False)}


def schema_vsock():
    # VsockConfig (vmm/src/vm_config.rs): cid, socket, iommu, id, pci_segment.
    return {"cid": ("int", True), "socket": ("str", True), "iommu": ("bool", False),
            "id": ("str", False), "pci_segment": ("int", False)}


def schema_vm_config():
    s = {"cpus": (schema_cpus(), False), "memory": (schema_memory(), False),
         "disks": (("list", schema_disk()), False), "net": (("list", schema_net()), False),
         "rng": ("obj", False), "balloon": ("obj", False), "fs": ("arr", False),
         "pmem": ("arr", False), "serial": (schema_console(), False),
         "console": (schema_console(), False), "devices": ("arr", False),
         "user_devices": ("arr", False), "vdpa": ("arr", False), "vsock": (schema_vsock(), False),
         "iommu": ("bool", False), "sgx_epc": ("arr", False), "numa": ("arr", False),
         "watchdog": ("bool", False), "platform": ("obj", False)}
    if not at_least(28):
        s["kernel"] = ({"path": ("str", True)}, False)
        s["cmdline"] = ({"args": ("str", True)}, False)
        s["initramfs"] = ({"path": ("str", True)}, False)
    if at_least(26):
        s["payload"] = (schema_payload(), False)
    if at_least(28):
        s["tpm"] = ("obj", False)
    if at_least(40):
        s["debug_console"] = ("obj", False)
        s["pci_segments"] = ("arr", False)
    return s


def schema_restore():
    s = {"source_url": ("str", True), "prefault": ("bool", False)}
    if at_least(52):
        s["memory_restore_mode"] = (("Copy", "OnDemand"), False)
        s["resume"] = ("bool", False)
    return s


TYPE_NAMES = {"str": "a string", "bool": "a boolean", "int": "u64", "obj": "a map",
              "arr": "a sequence"}


def check(body, schema, where=""):
    if not isinstance(body, dict):
        raise serde_error("invalid type: expected struct%s" % where)
    for k, v in body.items():
        if k not in schema:
            log("IGNORED-BY-REAL-CH: unknown field %s%s" % (where, k))
            raise serde_error("unknown field `%s`, expected one of %s" %
                              (k, ", ".join("`%s`" % f for f in schema)))
        typ = schema[k][0]
        if isinstance(typ, dict):
            check(v, typ, "%s%s." % (where, k))
            continue
        if isinstance(typ, tuple) and typ and typ[0] == "list":
            if not isinstance(v, list):
                raise serde_error("invalid type: expected a sequence for `%s`" % k)
            for item in v:
                check(item, typ[1], "%s%s[]." % (where, k))
            continue
        if isinstance(typ, tuple):
            if v not in typ:
                raise serde_error("unknown variant `%s`, expected one of %s" %
                                  (v, ", ".join("`%s`" % t for t in typ)))
            continue
        ok = {"str": lambda x: isinstance(x, str),
              "bool": lambda x: isinstance(x, bool),
              "int": lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
              "obj": lambda x: isinstance(x, dict),
              "arr": lambda x: isinstance(x, list)}[typ]
        if not ok(v):
            raise serde_error("invalid type: %r, expected %s for `%s%s`" %
                              (v, TYPE_NAMES[typ], where, k))
    for k, (_, req) in schema.items():
        if req and k not in body:
            raise serde_error("missing field `%s`" % k)


# ---- the simulated VM ------------------------------------------------------------

class Vmm:
    def __init__(self):
        self.lock = threading.Lock()
        self.config = None       # VmConfig once created or restored
        self.state = None        # None, "Created", "Running", "Paused", "Shutdown"
        self.mem = None
        self.serial = None       # file object or None
        self.tick_ms = int(os.environ.get("FAKE_CH_TICK_MS", "50"))
        self.agent = agent_from_env()  # EMBER_FAKE_GUEST_AGENT (fake_guest_agent.py)
        self.vsock_sock = None

    # What the vsock relay asks of the guest (fake_guest_agent.vsock_conn).
    @property
    def started(self):
        return self.state in ("Running", "Paused")

    @property
    def paused(self):
        return self.state == "Paused"

    def open_vsock(self, where):
        """The hybrid vsock socket of the config (vsock.socket), bound and
        served; the guest's agent starts with the guest."""
        v = self.config.get("vsock")
        if not v or self.vsock_sock is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(v["socket"])
        except OSError as e:
            s.close()
            raise api_error(where, "Error creating the vsock device: %s: %s"
                            % (v["socket"], e.strerror))
        s.listen(4)
        self.vsock_sock = s
        serve_vsock(s, self)
        if self.agent is not None:
            self.agent.start()

    def counter(self):
        return struct.unpack_from("<Q", self.mem, PAGE)[0]

    def marker(self):
        return self.mem[16:24].hex()

    def open_serial(self):
        cfg = self.config.get("serial", {"mode": "Null"})
        mode = cfg.get("mode")
        self.serial = None
        if mode == "Tty":
            self.serial = sys.stdout.buffer
        elif mode == "File":
            # console_devices.rs: File::create (truncates an existing file).
            self.serial = open(cfg["file"], "wb", buffering=0)

    def serial_line(self, text):
        if self.serial is not None:
            self.serial.write(text.encode() + b"\n")
            self.serial.flush()

    def run_guest(self):
        while True:
            time.sleep(self.tick_ms / 1000.0)
            with self.lock:
                if self.state == "Running":
                    n = self.counter() + 1
                    struct.pack_into("<Q", self.mem, PAGE, n)
                    self.serial_line("tiny counter=%d marker=%s" % (n, self.marker()))

    # API actions (lock held)
    def require_vm(self):
        if self.state is None:
            raise api_error("VmNotCreated" if not at_least(47) else
                            "The VM is not created", status=404 if at_least(53) else 500)

    def transition(self, frm, to, what):
        self.require_vm()
        if self.state not in frm:
            raise api_error("%s" % what, "InvalidStateTransition(%s, %s)" % (self.state, to))
        self.state = to

    def create(self, body):
        check(body, schema_vm_config())
        if self.state is not None:
            raise api_error("The VM could not be created", "VmAlreadyCreated")
        kernel = (body.get("payload") or {}).get("kernel") if at_least(26) else None
        if kernel is None and not at_least(28):
            kernel = (body.get("kernel") or {}).get("path")
        if kernel is None and not (body.get("payload") or {}).get("firmware"):
            raise api_error("The VM could not be created",
                            "Error validating configuration: No kernel specified")
        self.config = body
        self.state = "Created"
        log("vm.create: %s" % json.dumps(body, sort_keys=True))

    def open_disks(self, config, what):
        """Opens every disk's file as Cloud Hypervisor does when it builds the
        block devices (read, plus write unless readonly) and keeps them open; a
        /proc/self/fd/N path to an inherited descriptor works like any path."""
        files = []
        for d in config.get("disks", []) or []:
            p = d.get("path")
            if not p:
                continue
            try:
                files.append(open(p, "rb" if d.get("readonly") else "r+b", buffering=0))
            except OSError as e:
                for f in files:
                    f.close()
                raise api_error(what, "Failed to open disk %s: %s" % (p, e))
        return files

    def boot(self):
        self.require_vm()
        if self.state != "Created":
            raise api_error("Error booting VM",
                            "InvalidStateTransition(%s, Running)" % self.state)
        c = self.config
        if at_least(26) and "payload" in c:
            p = c["payload"]
            kpath, ipath = p.get("kernel"), p.get("initramfs")
        else:
            kpath = c["kernel"]["path"]
            ipath = (c.get("initramfs") or {}).get("path")
        try:
            with open(kpath, "rb") as f:
                kernel = f.read(KERNEL_MAX)
        except OSError as e:
            raise api_error("Error booting VM", "Cannot load the kernel into memory: %s" % e)
        if ipath:
            try:
                open(ipath, "rb").close()
            except OSError as e:
                raise api_error("Error booting VM", "Cannot open the initramfs %s: %s"
                                % (ipath, e))
        self.disk_files = self.open_disks(c, "Error booting VM")
        for n in c.get("net", []):
            if n.get("tap") and not os.path.exists("/sys/class/net/%s" % n["tap"]):
                raise api_error("Error booting VM",
                                "Error opening TAP interface %s" % n["tap"])
        size = c.get("memory", {}).get("size", 512 << 20)
        if size < 4 * PAGE + KERNEL_MAX:
            raise api_error("Error booting VM", "guest memory too small for the fake")
        self.mem = bytearray(size)
        self.mem[0:8] = b"FAKECH01"
        self.mem[16:24] = os.urandom(8)
        self.mem[KERNEL_PAGE * PAGE:KERNEL_PAGE * PAGE + len(kernel)] = kernel
        self.open_serial()
        self.open_vsock("Error booting VM")
        self.state = "Running"
        log("vm.boot: %d bytes of memory" % size)

    def snapshot(self, body):
        check(body, {"destination_url": ("str", False)})
        self.require_vm()
        if self.state != "Paused":
            raise api_error("Error snapshotting VM", "Snapshot error",
                            "Trying to snapshot while VM is running")
        url = body.get("destination_url", "")
        if not url.startswith("file://"):
            raise api_error("Error sending the VM snapshot",
                            "Unsupported destination URL: %s" % url)
        d = url[len("file://"):]
        if not os.path.isdir(d):
            raise api_error("Error sending the VM snapshot",
                            "Failed to create snapshot file in %s: No such file or directory" % d)
        state = {"magic": STATE_MAGIC, "ch_version": VSTR, "mem_size": len(self.mem),
                 "mem_sha256": hashlib.sha256(self.mem).hexdigest(),
                 "counter": self.counter()}
        for name, data in (("memory-ranges", bytes(self.mem)),
                           ("config.json", json.dumps(self.config, indent=2).encode()),
                           ("state.json", json.dumps(state).encode())):
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        log("vm.snapshot into %s: counter=%d" % (d, self.counter()))

    def restore(self, body):
        check(body, schema_restore())
        if self.state is not None:
            raise api_error("Error restoring VM", "VmAlreadyCreated")
        url = body["source_url"]
        if not url.startswith("file://"):
            raise api_error("Error restoring VM", "Unsupported source URL: %s" % url)
        d = url[len("file://"):]
        try:
            with open(os.path.join(d, "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise api_error("Error restoring VM", "Failed to receive the VM state",
                            "Error deserialising the snapshot: %s" % e)
        if not isinstance(state, dict) or state.get("magic") != STATE_MAGIC:
            raise api_error("Error restoring VM", "Failed to receive the VM state",
                            "not a snapshot state")
        try:
            with open(os.path.join(d, "memory-ranges"), "rb") as f:
                mem = bytearray(f.read(state["mem_size"] + 1))
        except OSError as e:
            raise api_error("Error restoring VM", "Error restoring memory ranges: %s" % e)
        if len(mem) != state["mem_size"] or \
                hashlib.sha256(mem).hexdigest() != state["mem_sha256"]:
            raise api_error("Error restoring VM", "Error restoring memory ranges",
                            "memory-ranges does not hold the memory this state was saved "
                            "with (fake check: a real VMM would resume a corrupted guest)")
        # Devices are re-created from the saved config, opening each disk by
        # the path it recorded.
        self.disk_files = self.open_disks(config, "Error restoring VM")
        self.config = config
        self.mem = mem
        self.open_serial()
        self.open_vsock("Error restoring VM")
        self.state = "Paused"
        if body.get("resume"):
            self.state = "Running"
        log("vm.restore from %s: counter=%d prefault=%s" %
            (d, self.counter(), body.get("prefault", False)))

    def info(self):
        self.require_vm()
        return {"config": self.config, "state": self.state,
                "memory_actual_size": len(self.mem) if self.mem is not None else 0}


VMM = Vmm()


def ping():
    out = {"version": VSTR}
    if at_least(40):
        out = {"build_version": "v" + VSTR, "version": VSTR, "pid": os.getpid(),
               "features": ["kvm"]}
    return out


def exit_soon(code, delay):
    """Ends the process after the reply went out (as the VMM thread exits)."""
    def run():
        time.sleep(delay)
        log("exiting (%d)" % code)
        os._exit(code)
    threading.Thread(target=run, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Cloud Hypervisor API"
    sys_version = ""

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        pass

    def reply(self, status, body=None, ctype="application/json"):
        data = b"" if body is None else body.encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n) if n else b""
        if not raw:
            raise serde_error("EOF while parsing a value at line 1 column 0")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise serde_error("%s" % e)

    def do_GET(self):  # noqa: N802
        self.dispatch("GET")

    def do_PUT(self):  # noqa: N802
        self.dispatch("PUT")

    def do_PATCH(self):  # noqa: N802
        self.dispatch("PATCH")

    def dispatch(self, method):
        try:
            if not self.path.startswith("/api/v1/"):
                raise ApiFail(404, ["Not Found"])
            op = self.path[len("/api/v1/"):]
            with VMM.lock:
                out = self.route(method, op)
            if out is None:
                self.reply(204)
            else:
                self.reply(200, json.dumps(out))
        except ApiFail as e:
            log("%s %s -> %d: %s" % (method, self.path, e.status, " / ".join(e.chain)))
            self.reply(e.status, error_body(e),
                       "application/json" if at_least(47) else "text/plain")

    def route(self, method, op):
        v = VMM
        gets = {"vmm.ping": ping, "vm.info": v.info}
        if op in gets:
            if method != "GET":
                raise ApiFail(400, ["Bad Request"])
            return gets[op]()
        if method != "PUT":
            raise ApiFail(400 if op.startswith(("vm.", "vmm.")) else 404, ["Bad Request"])
        if op == "vm.create":
            v.create(self.body())
        elif op == "vm.boot":
            v.boot()
        elif op == "vm.pause":
            v.transition(("Running",), "Paused", "Error pausing VM")
        elif op == "vm.resume":
            v.transition(("Paused",), "Running", "Error resuming VM")
        elif op == "vm.snapshot":
            v.snapshot(self.body())
        elif op == "vm.restore":
            v.restore(self.body())
        elif op == "vm.shutdown":
            v.transition(("Running", "Paused"), "Shutdown", "Error shutting down VM")
        elif op == "vm.delete":
            v.state, v.config, v.mem = None, None, None
        elif op == "vm.power-button":
            v.require_vm()
            if v.state != "Running":
                raise api_error("Error triggering power button",
                                "the VM is %s" % v.state)
            log("vm.power-button: the guest powers off")
            v.state = "Shutdown"
            exit_soon(0, 0.1)
        elif op == "vmm.shutdown":
            # The VM is shut down (vCPUs stopped, no further guest code) and
            # the VMM exits.
            if v.state in ("Running", "Paused"):
                v.state = "Shutdown"
            log("vmm.shutdown")
            exit_soon(0, 0.05)
        else:
            raise ApiFail(404, ["Not Found"])
        return None


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main(argv):
    if "--version" in argv or "-V" in argv:
        sys.stdout.write("cloud-hypervisor v%s\n" % VSTR)
        return 0
    sock = None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--api-socket" and i + 1 < len(argv):
            val = argv[i + 1]
            for part in val.split(","):
                if part.startswith("path="):
                    sock = part[len("path="):]
                elif "=" not in part:
                    sock = part
                else:
                    log("Error parsing --api-socket: unknown option %s" % part)
                    return 1
            i += 2
        elif a in ("--log-file", "--seccomp"):
            i += 2
        elif a.startswith("-v"):
            i += 1
        else:
            log("error: unsupported argument for the fake: %s" % a)
            return 1
    if sock is None:
        log("no --api-socket given: the fake only serves the API")
        return 1
    if os.path.exists(sock):
        log("Error creating HTTP server: Address in use (%s)" % sock)
        return 1
    log("cloud-hypervisor v%s starting" % VSTR)
    srv = Server(sock, Handler)
    threading.Thread(target=VMM.run_guest, daemon=True).start()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(0)
    except socket.error as e:
        log("socket error: %s" % e)
        sys.exit(1)
