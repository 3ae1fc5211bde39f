#!/usr/bin/python3
"""bench_qemu: standby/restore cycles of a running Linux test guest, through
emberd's gRPC API and, in the same run, driven directly over QMP without emberd
(GitHub issue 3, benchmark part). Prints figures; never asserts times.

Sides (the same cycles on both, alternating which goes first each cycle):
  emberd  a real emberd (test/integration/emberd_fixture.py) and the real gRPC
          client (python3-grpcio). standby = StandbyInstance call until it
          returns (emberd has then reaped the VMM; checked); restore-to-running
          = RestoreInstance call until it returns (the guest runs: `cont` done).
  raw     no emberd: QEMU is spawned here with EXACTLY the command line of
          emberd's QEMU for the same scenario (read from /proc/<vmm>/cmdline,
          with the instance folder swapped for the raw folder), and the same
          QMP sequence as the driver: stop; migrate-set-capabilities
          x-ignore-shared; migrate-set-parameters max-bandwidth; getfd; migrate
          fd:; poll query-migrate; fsync state, RAM file and folder (emberd makes
          a standby durable too); quit; wait for the exit. Restore: spawn with
          -S -incoming defer; x-ignore-shared; getfd; migrate-incoming fd:; poll;
          cont; query-status == running.
Both sides: restore-to-echo = from the restore's start until a guest shell
round trip (echo of a fresh marker on ttyS1) completes, the same check on both.

Before every standby the guest copies a 32 MiB random file in its tmpfs (the
dirty set; --dirty-mib), so base-reuse standbys flush that much RAM-file page
cache. Bytes per standby: the state file, the RAM-file bytes the guest dirtied
since the previous restore (QEMU's /proc/<pid>/io write_bytes), and the bytes
the disk took during the standby (/sys/block/<dev>/stat; system-wide, so other
load on the machine counts too).

Scenarios (--scenarios, comma separated):
  reuse-256    base reuse (driver default): RAM in snapshot-base/memory, standby
               writes device state only; 256 MiB guest
  reuse-1024   the same with a 1 GiB guest and the same dirty set (standby must
               not grow with guest RAM: ratio target <= 1.3)
  full-256     driver config base_reuse=false: anonymous RAM, every standby a
               full migration stream; raw side the same
Targets (printed, not asserted): emberd/raw <= 1.15 for standby and restore.

Usage:
  test/bench/run.sh qemu [--cycles N] [--scenarios ...] [--dirty-mib M]
  (env: EMBER_BENCH_CYCLES, EMBER_TEST_GUEST_DIR, EMBERD_BIN, EMBER_PYTHON_DIR,
   EMBER_QEMU_ACCEL (default tcg: the Linux guest does not boot under PVM KVM))
Exit: 0 figures printed, 1 a functional failure, 77 SKIP (guest/QEMU missing).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

import bench_common as bc  # noqa: E402

# The driver's default migration bandwidth (drivers/qemu/driver.c: bandwidth_mib
# 1048576, i.e. effectively no cap), in bytes/s.
DRIVER_MAX_BANDWIDTH = 1048576 << 20


skip, BenchFailure, guest_files = bc.skip, bc.BenchFailure, bc.guest_files


class Samples:
    """Per side and scenario: lists of seconds / bytes."""

    def __init__(self):
        self.standby = []
        self.restore = []
        self.echo = []
        self.internal_standby = []   # emberd's own last_standby_duration
        self.internal_restore = []
        self.state_bytes = []
        self.ram_dirtied = []
        self.disk_bytes = []
        self.kinds = []
        self.phases = {}             # raw: name -> [seconds]

    def phase(self, name, secs):
        self.phases.setdefault(name, []).append(secs)


# ---- the two sides ------------------------------------------------------------

class EmberSide:
    name = "emberd"

    def __init__(self, d, kernel, initrd, mib, cmdline, label):
        from emberd_fixture import pb
        self.pb = pb
        self.d = d
        self.s = Samples()
        spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=mib, kernel=kernel,
                           initrd=initrd, cmdline=cmdline)
        inst = d.create("bench-%s" % label, spec, start=True, timeout=180)
        self.id = inst.id
        self.dir = os.path.join(d.data_dir, "instances", inst.id)
        self.console = inst.console_log_path
        self.serial = os.path.join(self.dir, "serial1.sock")
        self.pid = inst.vmm_pid
        self.wb_mark = None

    def boot_argv(self):
        """emberd's QEMU command line. emberd hands kernel, initrd and disks over
        as inherited descriptors (/proc/self/fd/N, docs/host-paths.md); the raw
        side gets the files they hold, by name."""
        with open("/proc/%d/cmdline" % self.pid, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        held = lambda m: os.readlink("/proc/%d/fd/%s" % (self.pid, m.group(1)))  # noqa: E731
        return [re.sub(r"/proc/self/fd/(\d+)", held, a) for a in argv]

    def vmm_pid(self):
        return self.pid

    def state_path(self):
        return os.path.join(self.dir, "snapshots", "snapshot-latest", "state")

    def standby(self):
        old = self.pid
        t0 = bc.now()
        inst = self.d.standby(self.id)
        t = bc.now() - t0
        if inst.state != self.pb.INSTANCE_STATE_STANDBY:
            raise BenchFailure("emberd standby ended in state %d" % inst.state)
        if bc.pid_alive(old):
            raise BenchFailure("emberd returned from standby with QEMU pid %d alive" % old)
        self.s.kinds.append("diff" if inst.last_snapshot_kind == self.pb.SNAPSHOT_KIND_DIFF
                            else "full")
        self.s.internal_standby.append(inst.last_standby_duration.ToMicroseconds() / 1e6)
        return t

    def restore(self):
        t0 = bc.now()
        inst = self.d.restore(self.id)
        t = bc.now() - t0
        if inst.state != self.pb.INSTANCE_STATE_RUNNING:
            raise BenchFailure("emberd restore ended in state %d" % inst.state)
        self.pid = inst.vmm_pid
        self.s.internal_restore.append(inst.last_restore_duration.ToMicroseconds() / 1e6)
        return t, t0

    def close(self):
        try:
            self.d.stop_instance(self.id)
            self.d.delete(self.id)
        except Exception as e:  # noqa: BLE001 (teardown: report, carry on)
            print("note: emberd teardown: %s" % e)


class RawSide:
    """QEMU driven over QMP by this script, with emberd's command line."""
    name = "raw"

    def __init__(self, root, ember_argv, ember_dir, ember_console, shared):
        self.s = Samples()
        self.dir = os.path.join(root, "vm")
        self.snap = os.path.join(self.dir, "snap")
        os.makedirs(self.snap)
        self.console = os.path.join(self.dir, "console.log")
        self.serial = os.path.join(self.dir, "serial1.sock")
        self.mem = os.path.join(self.snap, "memory")
        self.shared = shared
        self.log = os.path.join(root, "qemu.log")
        self.proc = None
        self.qmp = None
        self.wb_mark = None
        self.argv = self._adapt(ember_argv, ember_dir, ember_console)

    def _adapt(self, argv, ember_dir, ember_console):
        out = []
        for a in argv:
            a = a.replace(ember_console, self.console).replace(ember_dir + "/", self.dir + "/")
            if a.startswith("memory-backend-file,"):
                parts = [("mem-path=" + self.mem) if p.startswith("mem-path=") else p
                         for p in a.split(",")]
                a = ",".join(parts)
            out.append(a)
        if ("memory-backend-file" in " ".join(out)) != self.shared:
            raise BenchFailure("emberd's QEMU RAM backend does not match the scenario: %s" % out)
        return out

    def _spawn(self, incoming):
        argv = list(self.argv)
        if incoming:
            i = argv.index("-no-reboot") + 1
            argv[i:i] = ["-S", "-incoming", "defer"]
        for s in ("qmp.sock", "serial1.sock"):
            try:
                os.unlink(os.path.join(self.dir, s))
            except FileNotFoundError:
                pass
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        self.qmp = bc.Qmp(os.path.join(self.dir, "qmp.sock"), timeout=30, proc=self.proc)

    def boot(self):
        if self.shared:
            with open(self.mem, "wb") as f:
                f.truncate(self._mem_bytes())
        self._spawn(incoming=False)
        if self.qmp.cmd("query-status")["status"] != "running":
            raise BenchFailure("raw QEMU did not start running")

    def _mem_bytes(self):
        i = self.argv.index("-m") + 1
        return int(self.argv[i].rstrip("M")) << 20

    def vmm_pid(self):
        return self.proc.pid

    def state_path(self):
        return os.path.join(self.snap, "state")

    def _caps(self):
        self.qmp.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "x-ignore-shared", "state": self.shared}]})

    def standby(self):
        q = self.qmp
        t0 = bc.now()
        q.cmd("stop")
        t1 = bc.now()
        self._caps()
        q.cmd("migrate-set-parameters", {"max-bandwidth": DRIVER_MAX_BANDWIDTH})
        fd = os.open(self.state_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        try:
            q.cmd("getfd", {"fdname": "bench-out"}, fds=[fd])
        finally:
            os.close(fd)
        q.cmd("migrate", {"uri": "fd:bench-out"})
        q.migrate_wait()
        t2 = bc.now()
        for p in ([self.state_path(), self.mem] if self.shared else [self.state_path()]):
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dfd = os.open(self.snap, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        t3 = bc.now()
        try:
            q.cmd("quit")
        except (bc.QmpError, OSError):
            pass  # quit may end QEMU before its reply arrives
        q.close()
        self.qmp = None
        self.proc.wait()
        t4 = bc.now()
        self.s.phase("pause", t1 - t0)
        self.s.phase("migrate", t2 - t1)
        self.s.phase("fsync", t3 - t2)
        self.s.phase("quit+exit", t4 - t3)
        self.s.kinds.append("diff" if self.shared else "full")
        return t4 - t0

    def restore(self):
        t0 = bc.now()
        self._spawn(incoming=True)
        t1 = bc.now()
        q = self.qmp
        self._caps()
        fd = os.open(self.state_path(), os.O_RDONLY | os.O_CLOEXEC)
        try:
            q.cmd("getfd", {"fdname": "bench-in"}, fds=[fd])
        finally:
            os.close(fd)
        q.cmd("migrate-incoming", {"uri": "fd:bench-in"})
        q.migrate_wait()
        t2 = bc.now()
        q.cmd("cont")
        st = q.cmd("query-status")["status"]
        t3 = bc.now()
        if st != "running":
            raise BenchFailure("raw restore: QEMU is %s after cont" % st)
        self.s.phase("spawn+qmp", t1 - t0)
        self.s.phase("incoming", t2 - t1)
        self.s.phase("cont", t3 - t2)
        return t3 - t0, t0

    def close(self):
        if self.qmp is not None:
            self.qmp.close()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# ---- guest shell helpers ------------------------------------------------------

def shell_run(path, cmd, timeout=120):
    from guest_shell import GuestShell
    with GuestShell(path, connect_timeout=60) as sh:
        out = sh.run(cmd, timeout=timeout, retry=True)
        if sh.last_status != 0:
            raise BenchFailure("guest command %r exited %s: %s" % (cmd, sh.last_status, out))
        return out


def echo_round_trip(path, t0, timeout=60):
    """Connects to the guest shell and completes one marker echo; returns the
    time since t0."""
    from guest_shell import GuestShell
    with GuestShell(path, connect_timeout=timeout) as sh:
        sh.sync(timeout)
        return bc.now() - t0


def prepare_guest(side, dirty_mib, mark):
    shell_run(side.serial, "dd if=/dev/urandom of=/tmp/src bs=1M count=%d 2>/dev/null; "
              "echo %s > /tmp/mark" % (dirty_mib, mark))


def one_cycle(side, mark):
    s = side.s
    shell_run(side.serial, "cp /tmp/src /tmp/dirty")
    pid = side.vmm_pid()
    wb = bc.proc_write_bytes(pid)
    if wb is not None and side.wb_mark is not None:
        s.ram_dirtied.append(wb - side.wb_mark)
    disk0 = bc.disk_written_bytes(side.dir)
    s.standby.append(side.standby())
    disk1 = bc.disk_written_bytes(side.dir)
    if disk0 is not None and disk1 is not None:
        s.disk_bytes.append(disk1 - disk0)
    sz = bc.file_size(side.state_path())
    if sz is not None:
        s.state_bytes.append(sz)
    t_run, t0 = side.restore()
    s.restore.append(t_run)
    s.echo.append(echo_round_trip(side.serial, t0))
    got = shell_run(side.serial, "cat /tmp/mark").strip()
    if got != mark:
        raise BenchFailure("%s: guest lost its memory: /tmp/mark is %r, not %r"
                           % (side.name, got, mark))
    side.wb_mark = bc.proc_write_bytes(side.vmm_pid())


# ---- scenarios ----------------------------------------------------------------

SCENARIOS = {
    "reuse-256": {"mib": 256, "base_reuse": True},
    "reuse-1024": {"mib": 1024, "base_reuse": True},
    "full-256": {"mib": 256, "base_reuse": False},
}


def run_scenario(name, daemons, kernel, initrd, args, results):
    from guest_shell import linux_cmdline, wait_for_console
    sc = SCENARIOS[name]
    d = daemons[sc["base_reuse"]]
    cmdline = linux_cmdline()
    print("[%s] booting the emberd guest (%d MiB)..." % (name, sc["mib"]), flush=True)
    e = EmberSide(d, kernel, initrd, sc["mib"], cmdline, name)
    raw_root = tempfile.mkdtemp(prefix="ember-bench-raw-")
    r = None
    try:
        wait_for_console(e.console, "EMBER-GUEST-READY", timeout=180)
        argv = e.boot_argv()
        r = RawSide(raw_root, argv, e.dir, e.console, sc["base_reuse"])
        print("[%s] raw QEMU command line (emberd's, instance folder swapped):\n  %s"
              % (name, " ".join(r.argv)), flush=True)
        r.boot()
        wait_for_console(r.console, "EMBER-GUEST-READY", timeout=180)
        mark = "bench-%d-%s" % (os.getpid(), name)
        for side in (e, r):
            prepare_guest(side, args.dirty_mib, mark)
            side.wb_mark = bc.proc_write_bytes(side.vmm_pid())
        for i in range(args.cycles):
            order = (e, r) if i % 2 == 0 else (r, e)
            for side in order:
                one_cycle(side, mark)
            print("[%s] cycle %d/%d: emberd standby %s ms restore %s ms | raw standby %s ms "
                  "restore %s ms" % (name, i + 1, args.cycles, bc.ms(e.s.standby[-1]),
                                     bc.ms(e.s.restore[-1]), bc.ms(r.s.standby[-1]),
                                     bc.ms(r.s.restore[-1])), flush=True)
        want = "diff" if sc["base_reuse"] else "full"
        if any(k != want for k in e.s.kinds):
            raise BenchFailure("[%s] emberd snapshot kinds %s, expected all %s"
                               % (name, e.s.kinds, want))
        results[name] = (e.s, r.s)
    finally:
        if r is not None:
            r.close()
        e.close()
        if os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(raw_root, ignore_errors=True)


def report(results, args):
    p = bc.pct
    rows = []
    for name, (es, rs) in results.items():
        for side, s in (("emberd", es), ("raw", rs)):
            rows.append([name, side, "%d" % len(s.standby),
                         bc.ms(p(s.standby, 50)), bc.ms(p(s.standby, 95)),
                         bc.ms(p(s.restore, 50)), bc.ms(p(s.restore, 95)),
                         bc.ms(p(s.echo, 50)), bc.ms(p(s.echo, 95)),
                         ",".join(sorted(set(s.kinds)))])
    bc.print_table("Standby / restore times (ms); restore = until the guest runs; "
                   "echo = restore start until a guest shell round trip",
                   ["scenario", "side", "n", "standby p50", "p95", "restore p50", "p95",
                    "echo p50", "p95", "kind"], rows)

    rows = []
    for name, (es, rs) in results.items():
        rows.append([name, bc.ms(p(es.internal_standby, 50)), bc.ms(p(es.internal_restore, 50)),
                     bc.ms(p(es.standby, 50)), bc.ms(p(es.restore, 50))])
    bc.print_table("emberd: its own recorded durations (Instance.last_standby_duration / "
                   "last_restore_duration) vs the client's view, p50 ms",
                   ["scenario", "internal standby", "internal restore", "client standby",
                    "client restore"], rows)

    rows = []
    for name, (es, rs) in results.items():
        st50 = bc.ratio(p(es.standby, 50), p(rs.standby, 50))
        st95 = bc.ratio(p(es.standby, 95), p(rs.standby, 95))
        re50 = bc.ratio(p(es.restore, 50), p(rs.restore, 50))
        re95 = bc.ratio(p(es.restore, 95), p(rs.restore, 95))
        ec50 = bc.ratio(p(es.echo, 50), p(rs.echo, 50))
        rows.append([name, bc.fmt_ratio(st50), bc.fmt_ratio(st95), bc.met(st50, 1.15),
                     bc.fmt_ratio(re50), bc.fmt_ratio(re95), bc.met(re50, 1.15),
                     bc.fmt_ratio(ec50)])
    bc.print_table("Ratio emberd/raw (target <= 1.15 on p50; printed, not asserted)",
                   ["scenario", "standby p50", "p95", "standby target", "restore p50", "p95",
                    "restore target", "echo p50"], rows)

    if "reuse-256" in results and "reuse-1024" in results:
        rows = []
        for i, side in enumerate(("emberd", "raw")):
            small = results["reuse-256"][i]
            big = results["reuse-1024"][i]
            r50 = bc.ratio(p(big.standby, 50), p(small.standby, 50))
            r95 = bc.ratio(p(big.standby, 95), p(small.standby, 95))
            rows.append([side, bc.ms(p(small.standby, 50)), bc.ms(p(big.standby, 50)),
                         bc.fmt_ratio(r50), bc.fmt_ratio(r95), bc.met(r50, 1.3)])
        bc.print_table("Base-reuse standby vs guest RAM (1 GiB / 256 MiB, same %d MiB dirty "
                       "set; target <= 1.3 on p50)" % args.dirty_mib,
                       ["side", "256 MiB p50 ms", "1 GiB p50 ms", "ratio p50", "ratio p95",
                        "target"], rows)

    rows = []
    for name, (es, rs) in results.items():
        for side, s in (("emberd", es), ("raw", rs)):
            rows.append([name, side, bc.mib(p(s.state_bytes, 50)),
                         bc.mib(p(s.ram_dirtied, 50)), bc.mib(p(s.disk_bytes, 50)),
                         bc.mib(p(s.disk_bytes, 95))])
    bc.print_table("Bytes per standby (MiB, p50): state file; RAM-file bytes dirtied since "
                   "the previous restore (QEMU's write_bytes: pages it newly dirtied; the flush "
                   "writes those still dirty); "
                   "device writes during the standby (system-wide)",
                   ["scenario", "side", "state", "RAM dirtied", "disk p50", "disk p95"], rows)

    rows = []
    for name, (es, rs) in results.items():
        names = list(rs.phases)
        rows.append([name] + ["%s %s" % (k, bc.ms(p(rs.phases[k], 50))) for k in names])
    width = max((len(r) for r in rows), default=1)
    rows = [r + [""] * (width - len(r)) for r in rows]
    bc.print_table("Raw side phases, p50 ms (standby: pause, migrate, fsync, quit+exit; "
                   "restore: spawn+qmp, incoming, cont)",
                   ["scenario"] + ["phase"] * (width - 1), rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int,
                    default=int(os.environ.get("EMBER_BENCH_CYCLES", "10")))
    ap.add_argument("--scenarios", default="reuse-256,reuse-1024,full-256")
    ap.add_argument("--dirty-mib", type=int, default=32)
    ap.add_argument("--guest-dir", default=os.environ.get("EMBER_TEST_GUEST_DIR", ""))
    args = ap.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    for n in names:
        if n not in SCENARIOS:
            ap.error("unknown scenario %s (known: %s)" % (n, ", ".join(SCENARIOS)))
    if args.cycles < 1:
        ap.error("--cycles must be >= 1")
    kernel, initrd = guest_files(args.guest_dir)
    try:
        from emberd_fixture import Emberd
    except Exception as e:  # noqa: BLE001
        skip("the emberd fixture cannot load (EMBERD_BIN / EMBER_PYTHON_DIR): %s" % e)
    accel = os.environ.get("EMBER_QEMU_ACCEL", "tcg")
    print("bench_qemu: %d cycles, scenarios %s, dirty set %d MiB, accel %s, QEMU %s"
          % (args.cycles, ",".join(names), args.dirty_mib, accel,
             subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                            text=True).stdout.split("\n")[0]), flush=True)
    daemons = {}
    results = {}
    t_start = bc.now()
    try:
        for reuse in sorted({SCENARIOS[n]["base_reuse"] for n in names}):
            cfg = {"drivers": {"qemu": {"accel": accel, "base_reuse": reuse}}}
            daemons[reuse] = Emberd(config=cfg, log_level=os.environ.get("EMBER_BENCH_LOG_LEVEL", "info"))
        for n in names:
            run_scenario(n, daemons, kernel, initrd, args, results)
    except BenchFailure as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        for d in daemons.values():
            d.close()
    report(results, args)
    print("\nbench_qemu: done in %.0f s (figures only; nothing about time is asserted)"
          % (bc.now() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
