#!/usr/bin/python3
"""bench_firecracker: standby/restore cycles of the tiny guest (test/guests/tiny)
on Firecracker, through emberd's gRPC API and, in the same run, through the same
Firecracker API sequence sent directly over the unix socket without emberd
(GitHub issue 4, benchmark part). Prints figures; never asserts times.

Each cycle, on each side (alternating which side goes first):
  boot a fresh VMM (not timed) and wait for the guest's counter line;
  standby FULL (timed); restore (timed); standby DIFF into the retained base
  (timed); restore (timed); stop (not timed).
  standby            = API call start until it returns with the VMM gone
                       (emberd: StandbyInstance; raw: PATCH /vm Paused,
                       PUT /snapshot/create, fsync state + memory + folder,
                       SIGKILL and reap: Firecracker has no graceful exit)
  restore-to-running = API call start until the guest runs (emberd:
                       RestoreInstance returns; raw: spawn, API socket answers,
                       PUT /snapshot/load, PATCH /vm Resumed, GET / says Running)
  restore-to-counter = restore start until the console shows a counter above the
                       last one before the standby (the same check on both)
The guest's counter must continue and its boot marker stay (checked, both sides).

Modes:
  real   EMBER_FIRECRACKER_BIN names a firecracker binary and /dev/kvm works.
         Without the variable: prints "SKIP: EMBER_FIRECRACKER_BIN not set", exit 0.
  --fake runs the same harness against the contract fake
         (test/fakes/firecracker_fake.py), so the harness itself is exercised
         in CI. Its figures are FAKE FIGURES (a Python model), not performance.

Usage:
  test/bench/run.sh firecracker [--cycles N]      (real binary)
  test/bench/run.sh firecracker-fake [--cycles N] (contract fake)
Env: EMBER_BENCH_CYCLES (default 10), EMBERD_BIN, EMBER_PYTHON_DIR,
     EMBER_GUEST_TINY (tiny.elf; default <build>/guests/tiny/tiny.elf).
Exit: 0 figures printed (or SKIP), 1 a functional failure, 77 SKIP (tiny guest
or emberd missing).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import bench_common as bc  # noqa: E402

FAKE = os.path.join(HERE, "..", "fakes", "firecracker_fake.py")
FC_START_POLL_S = 0.010  # the driver polls the API socket every 10 ms


class BenchFailure(Exception):
    pass


def fc_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    m = re.search(r"Firecracker v(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise BenchFailure("%s --version printed %r" % (binary, out[:200]))
    return tuple(int(x) for x in m.groups())


def kvm_works():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
        return True, ""
    except OSError as e:
        return False, str(e)


class Samples:
    def __init__(self):
        self.full = []
        self.diff = []
        self.restore = []
        self.counter = []
        self.full_bytes = []
        self.diff_bytes = []


def fsync_path(p, directory=False):
    fd = os.open(p, (os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDONLY) | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sparse_merge(diff_path, mem_path):
    """Copies the data extents of diff_path into mem_path (what the driver's
    fc_merge does for releases before 1.6, whose Diff truncates its target)."""
    with open(diff_path, "rb") as src, open(mem_path, "r+b") as dst:
        fd = src.fileno()
        end = os.fstat(fd).st_size
        off = 0
        while off < end:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            os.lseek(fd, data, os.SEEK_SET)
            dst.seek(data)
            left = hole - data
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                dst.write(chunk)
                left -= len(chunk)
            off = hole
    os.unlink(diff_path)


class EmberSide:
    name = "emberd"

    def __init__(self, d, kernel, mib):
        from emberd_fixture import pb
        self.pb = pb
        self.d = d
        self.s = Samples()
        spec = d.make_spec(hypervisor="firecracker", vcpus=1, memory_mib=mib, kernel=kernel,
                           cmdline="console=ttyS0")
        inst = d.create("bench-fc", spec, start=False)
        self.id = inst.id
        self.console = inst.console_log_path
        self.dir = os.path.join(d.data_dir, "instances", inst.id)
        self.pid = 0

    def boot(self):
        inst = self.d.start_instance(self.id)
        if inst.state != self.pb.INSTANCE_STATE_RUNNING:
            raise BenchFailure("emberd: start ended in state %d" % inst.state)
        self.pid = inst.vmm_pid

    def mem_path(self):
        return os.path.join(self.dir, "snapshots", "snapshot-latest", "memory")

    def standby(self, want_kind):
        old = self.pid
        t0 = bc.now()
        inst = self.d.standby(self.id)
        t = bc.now() - t0
        kind = "diff" if inst.last_snapshot_kind == self.pb.SNAPSHOT_KIND_DIFF else "full"
        if inst.state != self.pb.INSTANCE_STATE_STANDBY or kind != want_kind:
            raise BenchFailure("emberd standby: state %d kind %s, wanted Standby %s"
                               % (inst.state, kind, want_kind))
        if old > 0 and bc.pid_alive(old):
            raise BenchFailure("emberd returned from standby with the VMM (pid %d) alive" % old)
        return t

    def restore(self):
        t0 = bc.now()
        inst = self.d.restore(self.id)
        t = bc.now() - t0
        if inst.state != self.pb.INSTANCE_STATE_RUNNING:
            raise BenchFailure("emberd restore ended in state %d" % inst.state)
        self.pid = inst.vmm_pid
        return t, t0

    def stop(self):
        self.d.stop_instance(self.id)

    def close(self):
        try:
            self.d.stop_instance(self.id)
            self.d.delete(self.id)
        except Exception as e:  # noqa: BLE001 (teardown)
            print("note: emberd teardown: %s" % e)


class RawSide:
    """The same Firecracker API sequence as the driver, sent from here."""
    name = "raw"

    def __init__(self, root, binary, version, kernel, mib):
        self.binary = binary
        self.v = version
        self.kernel = kernel
        self.mib = mib
        self.s = Samples()
        self.dir = os.path.join(root, "vm")
        self.snap = os.path.join(self.dir, "snap")
        os.makedirs(self.snap)
        self.sock = os.path.join(self.dir, "firecracker.sock")
        self.console = os.path.join(self.dir, "console.log")
        self.log = os.path.join(root, "firecracker.log")
        self.state = os.path.join(self.snap, "state")
        self.mem = os.path.join(self.snap, "memory")
        self.proc = None

    def _spawn(self):
        try:
            os.unlink(self.sock)
        except FileNotFoundError:
            pass
        # As the driver does: Firecracker's own log in a fresh file per process
        # (--log-path), so the console holds only the guest's lines.
        fc_log = os.path.join(self.dir, "firecracker-%d.log" % time.monotonic_ns())
        open(fc_log, "wb").close()
        with open(self.console, "ab") as out, open(self.log, "ab") as err:
            self.proc = subprocess.Popen([self.binary, "--api-sock", self.sock,
                                          "--log-path", fc_log], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        deadline = bc.now() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchFailure("raw firecracker exited at start-up (%s)"
                                   % self.proc.returncode)
            if os.path.exists(self.sock):
                try:
                    if bc.fc_request(self.sock, "GET", "/", timeout=1)[0] == 200:
                        return
                except (OSError, RuntimeError):
                    pass
            if bc.now() > deadline:
                raise BenchFailure("raw firecracker API did not answer")
            time.sleep(FC_START_POLL_S)

    def _req(self, method, path, body=None):
        return bc.fc_request(self.sock, method, path, body)

    def boot(self):
        for p in (self.state, self.mem):
            if os.path.exists(p):
                os.unlink(p)
        self._spawn()
        self._req("PUT", "/boot-source", {"kernel_image_path": self.kernel,
                                          "boot_args": "console=ttyS0"})
        self._req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": self.mib,
                                             "track_dirty_pages": True})
        self._req("PUT", "/actions", {"action_type": "InstanceStart"})

    def mem_path(self):
        return self.mem

    def _kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def standby(self, want_kind):
        diff = want_kind == "diff"
        merge = diff and self.v < (1, 6, 0)
        target = self.mem + ".diff" if merge else self.mem
        t0 = bc.now()
        self._req("PATCH", "/vm", {"state": "Paused"})
        self._req("PUT", "/snapshot/create", {"snapshot_type": "Diff" if diff else "Full",
                                              "snapshot_path": self.state,
                                              "mem_file_path": target})
        if merge:
            sparse_merge(target, self.mem)
        fsync_path(self.state)
        fsync_path(self.mem)
        fsync_path(self.snap, directory=True)
        self._kill()
        return bc.now() - t0

    def restore(self):
        t0 = bc.now()
        self._spawn()
        body = {"snapshot_path": self.state, "resume_vm": False}
        if self.v >= (1, 1, 0):
            body["mem_backend"] = {"backend_type": "File", "backend_path": self.mem}
        else:
            body["mem_file_path"] = self.mem
        body["track_dirty_pages" if self.v >= (1, 13, 0) else "enable_diff_snapshots"] = True
        self._req("PUT", "/snapshot/load", body)
        self._req("PATCH", "/vm", {"state": "Resumed"})
        st = self._req("GET", "/")[1].get("state")
        t = bc.now() - t0
        if st != "Running":
            raise BenchFailure("raw restore: firecracker says %s" % st)
        return t, t0

    def stop(self):
        self._kill()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self._kill()


def last_line(console, timeout=30):
    deadline = bc.now() + timeout
    while True:
        lines = bc.tiny_lines(console)
        if lines:
            return lines[-1]
        if bc.now() > deadline:
            raise BenchFailure("no tiny counter line on %s" % console)
        time.sleep(0.01)


def one_cycle(side, disk_dir):
    s = side.s
    off = bc.file_size(side.console) or 0
    side.boot()
    deadline = bc.now() + 30
    while not bc.tiny_lines(side.console, off):
        if bc.now() > deadline:
            raise BenchFailure("%s: the tiny guest printed nothing after boot" % side.name)
        time.sleep(0.01)
    marker = bc.tiny_lines(side.console, off)[-1][1]
    for kind, lst, blist in (("full", s.full, s.full_bytes), ("diff", s.diff, s.diff_bytes)):
        disk0 = bc.disk_written_bytes(disk_dir)
        lst.append(side.standby(kind))
        disk1 = bc.disk_written_bytes(disk_dir)
        if disk0 is not None and disk1 is not None:
            blist.append(disk1 - disk0)
        before = last_line(side.console)[0]
        t_run, t0 = side.restore()
        s.restore.append(t_run)
        s.counter.append(bc.wait_tiny_counter_above(side.console, before) - t0)
        this_boot = bc.tiny_lines(side.console, off)
        nums = [n for n, _ in this_boot]
        if any(b != a + 1 for a, b in zip(nums, nums[1:])):
            raise BenchFailure("%s: counter did not continue exactly: %s" % (side.name, nums))
        if any(m != marker for _, m in this_boot):
            raise BenchFailure("%s: guest marker changed across a restore" % side.name)
    side.stop()


def report(es, rs, fake, cycles):
    p = bc.pct
    label = "FAKE FIGURES (contract fake, a Python model: not performance)" if fake else \
        "Firecracker"
    rows = []
    for name, s in (("emberd", es), ("raw", rs)):
        rows.append([name, "%d" % len(s.full),
                     bc.ms(p(s.full, 50)), bc.ms(p(s.full, 95)),
                     bc.ms(p(s.diff, 50)), bc.ms(p(s.diff, 95)),
                     bc.ms(p(s.restore, 50)), bc.ms(p(s.restore, 95)),
                     bc.ms(p(s.counter, 50)), bc.ms(p(s.counter, 95))])
    bc.print_table("%s: standby / restore (ms), %d cycles" % (label, cycles),
                   ["side", "n", "full p50", "p95", "diff p50", "p95", "restore p50", "p95",
                    "counter p50", "p95"], rows)
    rows = []
    for what, a, b in (("full standby", es.full, rs.full), ("diff standby", es.diff, rs.diff),
                       ("restore-to-running", es.restore, rs.restore),
                       ("restore-to-counter", es.counter, rs.counter)):
        r50 = bc.ratio(p(a, 50), p(b, 50))
        r95 = bc.ratio(p(a, 95), p(b, 95))
        rows.append([what, bc.fmt_ratio(r50), bc.fmt_ratio(r95),
                     "n/a (fake)" if fake else
                     (bc.met(r50, 1.15) if what != "restore-to-counter" else "(info)")])
    bc.print_table("%s: ratio emberd/raw (target <= 1.15 on p50; printed, not asserted)" % label,
                   ["operation", "p50", "p95", "target"], rows)
    rows = [[name, bc.mib(p(s.full_bytes, 50)), bc.mib(p(s.diff_bytes, 50))]
            for name, s in (("emberd", es), ("raw", rs))]
    bc.print_table("%s: device writes during a standby (MiB p50, system-wide)" % label,
                   ["side", "full", "diff"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int,
                    default=int(os.environ.get("EMBER_BENCH_CYCLES", "10")))
    ap.add_argument("--fake", action="store_true",
                    help="run against test/fakes/firecracker_fake.py (fake figures)")
    ap.add_argument("--fake-version", default=os.environ.get("FAKE_FC_VERSION", "1.16.1"))
    ap.add_argument("--memory-mib", type=int, default=32)
    ap.add_argument("--tiny", default=os.environ.get("EMBER_GUEST_TINY", ""))
    args = ap.parse_args()
    if args.cycles < 1:
        ap.error("--cycles must be >= 1")

    env = {}
    if args.fake:
        binary = os.path.abspath(FAKE)
        env["FAKE_FC_VERSION"] = args.fake_version
        os.environ["FAKE_FC_VERSION"] = args.fake_version
        print("bench_firecracker: FAKE MODE against %s (FAKE_FC_VERSION=%s): the figures "
              "exercise the harness, they are not performance" % (binary, args.fake_version))
    else:
        binary = os.environ.get("EMBER_FIRECRACKER_BIN", "")
        if not binary:
            print("SKIP: EMBER_FIRECRACKER_BIN not set")
            return 0
        binary = shutil.which(binary) or binary
        if not os.access(binary, os.X_OK):
            print("SKIP: EMBER_FIRECRACKER_BIN=%s is not an executable file" % binary)
            return 0
        ok, why = kvm_works()
        if not ok:
            print("SKIP: /dev/kvm does not work (%s)" % why)
            return 0
        binary = os.path.abspath(binary)
    env["EMBER_FIRECRACKER_BIN"] = binary

    tiny = args.tiny
    if not tiny:
        for b in (os.environ.get("EMBER_BUILD_DIR", ""), os.path.join(bc.ROOT, "build"),
                  "/tmp/build"):
            c = os.path.join(b, "guests", "tiny", "tiny.elf") if b else ""
            if c and os.path.isfile(c):
                tiny = c
                break
    if not tiny or not os.path.isfile(tiny):
        print("SKIP: tiny guest not built (EMBER_GUEST_TINY=%r; build target guest_tiny)" % tiny)
        return 77
    tiny = os.path.abspath(tiny)
    try:
        from emberd_fixture import Emberd
    except Exception as e:  # noqa: BLE001
        print("SKIP: the emberd fixture cannot load (EMBERD_BIN / EMBER_PYTHON_DIR): %s" % e)
        return 77

    try:
        version = fc_version(binary)
    except (BenchFailure, OSError, subprocess.SubprocessError) as e:
        print("FAIL: %s" % e)
        return 1
    print("bench_firecracker: %d cycles, Firecracker %d.%d.%d (%s), tiny guest %s, %d MiB"
          % ((args.cycles,) + version + (binary, tiny, args.memory_mib)), flush=True)
    raw_root = tempfile.mkdtemp(prefix="ember-bench-fc-raw-")
    d = None
    e = r = None
    t_start = bc.now()
    try:
        d = Emberd(env=env, log_level="info")
        hv = {h.type: h for h in d.list_hypervisors()}
        fc = hv.get("firecracker")
        if fc is None or not fc.available:
            raise BenchFailure("emberd reports firecracker unavailable: %s" % fc)
        e = EmberSide(d, tiny, args.memory_mib)
        r = RawSide(raw_root, binary, version, tiny, args.memory_mib)
        for i in range(args.cycles):
            for side in ((e, r) if i % 2 == 0 else (r, e)):
                one_cycle(side, raw_root)
            print("cycle %d/%d: emberd full %s diff %s restore %s | raw full %s diff %s "
                  "restore %s (ms)" % (i + 1, args.cycles, bc.ms(e.s.full[-1]),
                                       bc.ms(e.s.diff[-1]), bc.ms(e.s.restore[-1]),
                                       bc.ms(r.s.full[-1]), bc.ms(r.s.diff[-1]),
                                       bc.ms(r.s.restore[-1])), flush=True)
    except (BenchFailure, TimeoutError) as ex:
        print("FAIL: %s" % ex)
        if d is not None:
            print("---- emberd log tail ----\n%s" % d.log_tail())
        return 1
    finally:
        if r is not None:
            r.close()
        if e is not None:
            e.close()
        if d is not None:
            d.close()
        if os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(raw_root, ignore_errors=True)
    report(e.s, r.s, args.fake, args.cycles)
    print("\nbench_firecracker: done in %.0f s%s" % (bc.now() - t_start,
                                                    " (FAKE figures)" if args.fake else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
