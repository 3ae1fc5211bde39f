"""emberd_fixture: start a real emberd on a temporary data dir and talk to it
with the real gRPC client (Debian python3-grpcio; run under /usr/bin/python3).

Shared by every integration test; keep the interface stable.

    from emberd_fixture import Emberd, pb, status_code
    with Emberd() as d:                      # starts, waits for the socket
        spec = d.qemu_spec()                 # temp regular files for kernel/initrd
        inst = d.create("vm1", spec)         # -> ember.v1.Instance
        d.get("vm1"); d.list(); d.delete(inst.id)
        code, msg = d.call_error(d.get, "nope")   # -> (grpc.StatusCode.NOT_FOUND, "...")
        d.restart()                          # SIGTERM, wait, start again (same data dir)
    # on exit: emberd is stopped (SIGTERM, then SIGKILL) and every process whose
    # command line mentions the temp root (VMMs) is killed; the temp root removed.

Where things come from:
  EMBERD_BIN        path of the built emberd (ctest passes $<TARGET_FILE:emberd>)
  EMBER_PYTHON_DIR  <build>/python, holding ember/v1/instance_pb2.py etc.
Both can also be given as arguments (binary=, python_dir=). When neither the
argument nor the variable is set, the fixture looks in the usual build dirs.

Watch helpers return the grpc call iterator; call `.initial_metadata()` on it to
wait until the server has subscribed (emberd sends headers only after
subscribing), then any later change is guaranteed to be streamed.
"""

import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import grpc  # Debian python3-grpcio

from checks import Checks, Suite, require  # noqa: F401  (the tests import them from here)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find_python_dir(python_dir=None):
    cands = [python_dir, os.environ.get("EMBER_PYTHON_DIR")]
    for b in ("build", "/tmp/build", "/tmp/build-server"):
        cands.append(os.path.join(b if os.path.isabs(b) else os.path.join(_HERE, "..", "..", b),
                                  "python"))
    for c in cands:
        if c and os.path.exists(os.path.join(c, "ember", "v1", "instance_pb2.py")):
            return os.path.abspath(c)
    raise RuntimeError("generated python messages not found: set EMBER_PYTHON_DIR to <build>/python "
                       "(built by the ember_proto_python target)")


def load_protos(python_dir=None):
    """Returns (instance_pb2, health_pb2, reflection_v1_pb2, reflection_v1alpha_pb2)."""
    if python_dir:
        os.environ["EMBER_PYTHON_DIR"] = python_dir
    return _import_generated()


def _import_generated():
    d = _find_python_dir()
    if d not in sys.path:
        sys.path.insert(0, d)
    # The generated grpc/health/v1/health_pb2.py lives under a "grpc" folder that
    # collides with the grpcio package; load those files by path instead.
    import importlib.util

    def load(name, rel):
        spec = importlib.util.spec_from_file_location(name, os.path.join(d, rel))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    from ember.v1 import instance_pb2
    health = load("ember_test_health_pb2", "grpc/health/v1/health_pb2.py")
    refl_v1 = load("ember_test_reflection_v1_pb2", "grpc/reflection/v1/reflection_pb2.py")
    refl_v1a = load("ember_test_reflection_v1alpha_pb2", "grpc/reflection/v1alpha/reflection_pb2.py")
    return instance_pb2, health, refl_v1, refl_v1a


pb, health_pb2, reflection_v1_pb2, reflection_v1alpha_pb2 = _import_generated()

SERVICE = "ember.v1.InstanceService"


def find_emberd(binary=None):
    cands = [binary, os.environ.get("EMBERD_BIN")]
    for b in ("build", "/tmp/build", "/tmp/build-server"):
        base = b if os.path.isabs(b) else os.path.join(_HERE, "..", "..", b)
        cands.append(os.path.join(base, "agent", "emberd"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise RuntimeError("emberd binary not found: set EMBERD_BIN")


def status_code(exc):
    """grpc.StatusCode of an RpcError."""
    return exc.code()


def tree_digest(root, exclude_sockets=True):
    """Recursive listing with modes, sizes and content hashes: equal digests mean
    the tree is byte-for-byte unchanged."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISSOCK(st.st_mode):
                if not exclude_sockets:
                    out.append((rel, "sock"))
                continue
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                out.append((rel, oct(st.st_mode), st.st_size, h))
            elif stat.S_ISLNK(st.st_mode):
                out.append((rel, "link", os.readlink(p)))
            else:
                out.append((rel, oct(st.st_mode)))
    return out


_LIVE = set()


def _atexit_cleanup():
    for d in list(_LIVE):
        try:
            d.close()
        except Exception:
            pass


atexit.register(_atexit_cleanup)


class Emberd:
    """One emberd process on a temporary data dir.

    binary, python_dir: see module doc. args: extra command-line flags.
    config: dict written as JSON and passed with --config. env: extra
    environment. listen: address (default: unix socket in the data dir).
    root: temp root to reuse (data dir = root/data); a fresh one by default.
    """

    def __init__(self, binary=None, args=(), config=None, env=None, listen=None,
                 root=None, log_level="debug", start=True, timeout=15):
        self.binary = find_emberd(binary)
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="ember-it-")
        self.data_dir = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "emberd.log")
        self.args = list(args)
        self.config = config
        self.env = dict(env or {})
        self.log_level = log_level
        self.listen = listen or "unix:" + os.path.join(self.data_dir, "emberd.sock")
        self.proc = None
        self.channel = None
        self.timeout = timeout
        _LIVE.add(self)
        if start:
            self.start()

    # ---- process control -------------------------------------------------

    @property
    def socket_path(self):
        return self.listen[5:] if self.listen.startswith("unix:") else None

    def command(self):
        cmd = [self.binary, "--data-dir", self.data_dir, "--listen", self.listen,
               "--log-level", self.log_level]
        if self.config is not None:
            cfg = os.path.join(self.root, "emberd.json")
            with open(cfg, "w") as f:
                json.dump(self.config, f)
            cmd += ["--config", cfg]
        return cmd + self.args

    def spawn(self):
        """Starts emberd without waiting; returns the Popen."""
        env = dict(os.environ)
        env.update(self.env)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env,
                                         stdin=subprocess.DEVNULL)
        finally:
            log.close()
        return self.proc

    def start(self, timeout=None):
        self.spawn()
        self.wait_ready(timeout or self.timeout)
        return self

    def wait_ready(self, timeout=15):
        """Waits until Health/Check answers SERVING; raises with the log tail if
        emberd exits or never becomes ready. The channel is opened only once
        the raw socket accepts connections (a stale socket file may exist
        before that), so it never starts in gRPC's reconnect backoff."""
        end = time.monotonic() + timeout
        opened = False
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("emberd exited with %s during start-up:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            up = unix_connect_ok(self.socket_path) if self.socket_path else tcp_connect_ok(self.listen)
            if up:
                if not opened:
                    self._open_channel()
                    opened = True
                try:
                    r = self.health_check("", timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("emberd not ready after %ss:\n%s" % (timeout, self.log_tail()))

    def _open_channel(self):
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.listen)

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Sends sig and waits; SIGKILL after timeout. Returns the exit code."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL emberd (VMMs keep running, as after a crash)."""
        return self.stop(signal.SIGKILL)

    def restart(self, timeout=None):
        rc = self.stop()
        self.start(timeout)
        return rc

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def log_lines(self):
        """Parsed JSON log lines (non-JSON lines are returned as {"raw": ...})."""
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"raw": line})
        except OSError:
            pass
        return out

    def kill_strays(self):
        """Kills every process (other than us) whose command line mentions the
        temp root: VMMs started by emberd in their own sessions."""
        for pid in procs_matching(self.root, zombies=True):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self):
        self.stop()
        self.kill_strays()
        _LIVE.discard(self)
        if self.own_root and os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            sys.stderr.write("---- emberd log tail ----\n%s\n" % self.log_tail())
        self.close()

    # ---- RPC -------------------------------------------------------------

    def unary(self, method, req, resp_cls, timeout=30, metadata=None):
        """Calls /<service>/<method> with a request message; method may be a
        full path ("/grpc.health.v1.Health/Check") or an InstanceService name."""
        path = method if method.startswith("/") else "/%s/%s" % (SERVICE, method)
        fn = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        return fn(req, timeout=timeout, metadata=metadata)

    def raw_unary(self, path, payload, timeout=10):
        """Sends raw bytes; returns raw response bytes."""
        fn = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return fn(payload, timeout=timeout)

    def stream(self, method, req, resp_cls, timeout=None):
        path = method if method.startswith("/") else "/%s/%s" % (SERVICE, method)
        fn = self.channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=resp_cls.FromString)
        return fn(req, timeout=timeout)

    @staticmethod
    def call_error(fn, *a, **kw):
        """Runs fn expecting an RpcError; returns (code, details) or (OK, result)."""
        try:
            r = fn(*a, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, r

    def make_spec(self, hypervisor="qemu", vcpus=1, memory_mib=128, kernel=None, initrd=None,
                  cmdline="console=ttyS0", disks=(), nics=()):
        s = pb.InstanceSpec(hypervisor=hypervisor, vcpus=vcpus, memory_mib=memory_mib,
                            kernel_path=kernel or "", initrd_path=initrd or "", cmdline=cmdline)
        for d in disks:
            s.disks.add(path=d[0], read_only=d[1]) if isinstance(d, tuple) else s.disks.add(path=d)
        for n in nics:
            s.network_interfaces.add(tap_device=n)
        return s

    def fake_kernel(self, name="kernel"):
        """<root>/files/<name>: 16 KiB of random bytes, a kernel file for the
        fake VMMs (firecracker_fake.py, cloud_hypervisor_fake.py), which never
        boot it. Written once; returns its path."""
        files = os.path.join(self.root, "files")
        os.makedirs(files, exist_ok=True)
        k = os.path.join(files, name)
        if not os.path.exists(k):
            with open(k, "wb") as f:
                f.write(os.urandom(16384))
        return k

    def qemu_spec(self, **kw):
        """A qemu spec whose kernel and initrd are temp regular files (not
        bootable: for tests that do not start the instance)."""
        files = os.path.join(self.root, "files")
        os.makedirs(files, exist_ok=True)
        k, i = os.path.join(files, "vmlinux"), os.path.join(files, "initrd")
        for p in (k, i):
            if not os.path.exists(p):
                with open(p, "wb") as f:
                    f.write(b"\x7fELF not really a kernel\n")
        kw.setdefault("kernel", k)
        kw.setdefault("initrd", i)
        return self.make_spec(**kw)

    def create(self, name, spec, start=False, timeout=120, labels=None, request_id=""):
        req = pb.CreateInstanceRequest(name=name, spec=spec, start=start,
                                       labels=labels or {}, request_id=request_id)
        return self.unary("CreateInstance", req, pb.Instance, timeout)

    def get(self, id_or_name, timeout=10):
        return self.unary("GetInstance", pb.GetInstanceRequest(id=id_or_name), pb.Instance, timeout)

    def list_page(self, filter="", page_size=0, page_token="", timeout=10):
        """One ListInstances call: the ListInstancesResponse."""
        return self.unary("ListInstances",
                          pb.ListInstancesRequest(filter=filter, page_size=page_size,
                                                  page_token=page_token),
                          pb.ListInstancesResponse, timeout)

    def list(self, state=0, filter="", timeout=10):
        """Every instance that matches (state: an InstanceState number, added
        to filter as state=NAME), following next_page_token."""
        if state:
            term = "state=" + pb.InstanceState.Name(state)
            filter = term + (" AND " + filter if filter else "")
        out, token = [], ""
        while True:
            r = self.list_page(filter=filter, page_token=token, timeout=timeout)
            out.extend(r.instances)
            token = r.next_page_token
            if not token:
                return out

    def _op(self, method, req_cls, id_or_name, timeout):
        return self.unary(method, req_cls(id=id_or_name), pb.Instance, timeout)

    def start_instance(self, i, timeout=120):
        return self._op("StartInstance", pb.StartInstanceRequest, i, timeout)

    def stop_instance(self, i, timeout=120, graceful_timeout_s=None):
        """graceful_timeout_s None: emberd's default; 0: force at once."""
        req = pb.StopInstanceRequest(id=i)
        if graceful_timeout_s is not None:
            req.graceful_timeout.FromNanoseconds(int(graceful_timeout_s * 1e9))
        return self.unary("StopInstance", req, pb.Instance, timeout)

    def pause(self, i, timeout=60):
        return self._op("PauseInstance", pb.PauseInstanceRequest, i, timeout)

    def resume(self, i, timeout=60):
        return self._op("ResumeInstance", pb.ResumeInstanceRequest, i, timeout)

    def standby(self, i, timeout=300):
        return self._op("StandbyInstance", pb.StandbyInstanceRequest, i, timeout)

    def restore(self, i, timeout=300):
        return self._op("RestoreInstance", pb.RestoreInstanceRequest, i, timeout)

    def delete(self, i, timeout=120, allow_missing=False):
        return self.unary("DeleteInstance", pb.DeleteInstanceRequest(id=i, allow_missing=allow_missing),
                          pb.DeleteInstanceResponse, timeout).id

    def fork(self, source="", names=(), snapshot="", prefix="", count=0, standby=False,
             labels=None, timeout=600):
        """ForkInstance; returns the ForkInstanceResponse."""
        req = pb.ForkInstanceRequest(id=source, snapshot=snapshot, names=list(names),
                                     name_prefix=prefix, count=count, standby=standby)
        for k, v in (labels or {}).items():
            req.labels[k] = v
        return self.unary("ForkInstance", req, pb.ForkInstanceResponse, timeout)

    def create_snapshot(self, i, name, timeout=300):
        return self.unary("CreateSnapshot", pb.CreateSnapshotRequest(id=i, name=name),
                          pb.Snapshot, timeout)

    def list_snapshots(self, timeout=10):
        return list(self.unary("ListSnapshots", pb.ListSnapshotsRequest(),
                               pb.ListSnapshotsResponse, timeout).snapshots)

    def delete_snapshot(self, snap, timeout=120):
        return self.unary("DeleteSnapshot", pb.DeleteSnapshotRequest(snapshot=snap),
                          pb.DeleteSnapshotResponse, timeout).id

    def list_hypervisors(self, timeout=10):
        return list(self.unary("ListHypervisors", pb.ListHypervisorsRequest(),
                               pb.ListHypervisorsResponse, timeout).hypervisors)

    def watch(self, id_or_name="", timeout=None):
        """Server stream of InstanceEvent; see module doc for initial_metadata()."""
        return self.stream("WatchInstances", pb.WatchInstancesRequest(id=id_or_name),
                           pb.InstanceEvent, timeout)

    def health_check(self, service="", timeout=5):
        return self.unary("/grpc.health.v1.Health/Check",
                          health_pb2.HealthCheckRequest(service=service),
                          health_pb2.HealthCheckResponse, timeout)

    def health_watch(self, service="", timeout=None):
        return self.stream("/grpc.health.v1.Health/Watch",
                           health_pb2.HealthCheckRequest(service=service),
                           health_pb2.HealthCheckResponse, timeout)

    def reflection(self, requests, version="v1", timeout=10):
        """Sends ServerReflectionRequests on one bidi stream; returns the
        responses. requests: list of dicts of ServerReflectionRequest fields."""
        mod = reflection_v1_pb2 if version == "v1" else reflection_v1alpha_pb2
        path = "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version
        fn = self.channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=mod.ServerReflectionResponse.FromString)
        reqs = [mod.ServerReflectionRequest(**r) for r in requests]
        return list(fn(iter(reqs), timeout=timeout))


def tcp_connect_ok(addr):
    """True once something accepts TCP connections on host:port. Probing the
    raw port first keeps a gRPC channel from entering connect backoff."""
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def unix_connect_ok(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---- helpers for tests that run real guests -------------------------------------

def skip(why):
    """Ends the test as skipped (ctest SKIP_RETURN_CODE 77), saying what is missing."""
    print("SKIP:", why)
    sys.exit(77)


def _linux_guest(guest_dir):
    """((vmlinux, initramfs), None) of the Linux test guest in guest_dir or
    EMBER_TEST_GUEST_DIR when it is built and QEMU is installed, else
    (None, what is missing)."""
    d = os.path.abspath(guest_dir or os.environ.get("EMBER_TEST_GUEST_DIR", ""))
    k, i = os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz")
    if not (os.path.isfile(k) and os.path.isfile(i)):
        return None, "Linux test guest not built (EMBER_TEST_GUEST_DIR=%r; build target guest_linux)" % d
    if shutil.which("qemu-system-x86_64") is None:
        return None, "qemu-system-x86_64 not installed"
    return (k, i), None


def linux_guest_files(guest_dir=None):
    """(vmlinux, initramfs) of the Linux test guest (test/guests/linux) from
    guest_dir or EMBER_TEST_GUEST_DIR; skips when it or QEMU is missing."""
    g, why = _linux_guest(guest_dir)
    if g is None:
        skip(why)
    return g


def qemu_guest(guest_dir=None):
    """linux_guest_files for a test with parts that run without it: None when
    the guest or QEMU is missing."""
    return _linux_guest(guest_dir)[0]


def procs_matching(*needles, zombies=False):
    """pids of processes (not this one) whose command line holds every needle;
    zombies only when asked."""
    want = [n.encode() if isinstance(n, str) else n for n in needles]
    me = os.getpid()
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cl = f.read()
            with open("/proc/%s/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if all(n in cl for n in want) and (zombies or st != "Z"):
            out.append(int(p))
    return out


def pid_alive(pid):
    """Whether the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred, timeout=30, step=0.05):
    """Calls pred until it returns something true (returned) or timeout s pass
    (then its last value)."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def vmm_pids(inst_dir):
    """Live processes whose command line names the instance folder: the VMMs of
    that instance, whoever started them."""
    return procs_matching(inst_dir + "/")
