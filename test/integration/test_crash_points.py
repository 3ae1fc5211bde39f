#!/usr/bin/python3
"""test_crash_points: crash safety at every fault-injection point (issue 5).

A real emberd (emberd_fixture), a real gRPC client, a real QEMU (TCG) running the
Linux test guest. For every fault point that lies in start, stop, standby, restore
and delete (agent.*, snap.*, qemu.*; common/fault.h):

exit mode (EMBER_FAULT=<point>:exit, emberd _exit(86)s at the point):
  the guest holds a file in /tmp and a background process; emberd is started with
  the fault armed, the operation is called (UNAVAILABLE when emberd dies; exit code
  86 proves the point was reached), emberd is started again without the fault, and:
  - the instance is in the state the table EXIT below gives (docs/architecture.md §3-4),
    never Unknown;
  - exactly one VMM (processes whose command line names the instance folder) when
    Running, none otherwise, and it is the one GetInstance reports;
  - no VMM socket is left in the folder of a Standby/Stopped instance, and
    snapshot-latest exists exactly in Standby;
  - the guest's file and process are intact (after a restore where the state is
    Standby); a retry of the interrupted operation succeeds.
fail mode (EMBER_FAULT=<point>): the call returns an error (or OK where the point
  is documented as ignored), the instance reports the state the table FAIL gives,
  with a VMM exactly when it claims Running, the guest is intact, and after a
  restart without the fault a retry succeeds.

Prints "covered N injection points (exit) + M (fail)" and "N passed, M failed".
Needs EMBER_TEST_GUEST_DIR, EMBERD_BIN, EMBER_PYTHON_DIR; skips (77) when the
guest or QEMU is absent. EMBER_CRASH_POINTS=p1,p2 limits the run to those points.
"""
import os
import shutil
import sys
import tempfile
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

from emberd_fixture import Emberd, pb, linux_guest_files, vmm_pids, Checks  # noqa: E402
from guest_shell import GuestShell, linux_cmdline, wait_for_console  # noqa: E402

R, S, X, GONE = "Running", "Standby", "Stopped", "gone"
STATE = {pb.INSTANCE_STATE_RUNNING: R, pb.INSTANCE_STATE_STANDBY: S,
         pb.INSTANCE_STATE_STOPPED: X, pb.INSTANCE_STATE_PAUSED: "Paused",
         pb.INSTANCE_STATE_UNKNOWN: "Unknown"}
FULL, DIFF = pb.SNAPSHOT_KIND_FULL, pb.SNAPSHOT_KIND_DIFF

# (point, operation, state before) -> state after emberd died there and restarted.
# The reason is what docs/architecture.md §3-4 and mgr_recover_one make of the leftovers.
EXIT = [
    ("snap.standby.after_pause", "standby", R, R,
     "VMM alive and paused, no snapshot-latest: recovery resumes the guest"),
    ("snap.standby.after_unmark", "standby", R, R,
     "base unmarked, so never reused; no complete latest: resume, next standby full"),
    ("snap.standby.after_promote", "standby", R, R,
     "promoted latest has no marker: discarded (§4.4), guest resumed"),
    ("qemu.snapshot.before_migrate", "standby", R, R,
     "nothing written: latest discarded, guest resumed"),
    ("qemu.snapshot.after_migrate", "standby", R, R,
     "device state written but no marker: half-written latest discarded, resumed"),
    ("qemu.snapshot.after_meta", "standby", R, R,
     "snapshot written but not yet marked complete: discarded, resumed"),
    ("snap.standby.after_snapshot", "standby", R, R,
     "same: a snapshot counts only once its marker is there (§4)"),
    ("snap.standby.after_mark", "standby", R, S,
     "latest complete: the snapshot is the guest, the paused VMM is ended"),
    ("agent.standby.before_commit", "standby", R, S,
     "latest complete and VMM gone, only the record is old"),
    ("snap.restore.before_driver", "restore", S, S,
     "nothing started: latest untouched, restore retriable"),
    ("qemu.restore.before_cont", "restore", S, S,
     "guest never resumed: the VMM goes, latest (unconsumed) stays, restore retriable"),
    ("qemu.restore.after_cont", "restore", S, R,
     "guest runs on the snapshot: adopt it and retire latest -> base"),
    ("snap.restore.after_driver", "restore", S, R,
     "guest runs: adopt it, retire latest -> base"),
    ("snap.restore.before_rename", "restore", S, R,
     "guest runs, base removed, latest not yet renamed: recovery finishes the rename"),
    ("agent.restore.before_commit", "restore", S, R,
     "guest runs and latest already became base: only the record is old"),
    ("agent.stop.before_vmm", "stop", R, R,
     "nothing done yet: the VMM is re-adopted"),
    ("agent.stop.after_vmm", "stop", R, X,
     "VMM gone, no complete snapshot: Stopped"),
    ("agent.start.after_driver", "start", X, X,
     "a start cut short: no committed guest runs, the VMM is ended (never a 2nd one)"),
    ("agent.start.before_commit", "start", X, X,
     "same, after the base was marked: VMM ended, snapshots discarded"),
    ("agent.delete.before_remove", "delete", R, X,
     "VMM already ended, folder kept: Stopped, delete retriable"),
    ("agent.delete.after_rename", "delete", R, GONE,
     "folder already renamed to .deleting-<id>: removed at start-up, instance gone"),
    # ForkInstance of a Running source (docs/fork.md "Crash safety"): the
    # source is found paused (or in QEMU's postmigrate) under a Running record
    # and resumed; a half snapshot (.tmp-*), a half clone (.fork-*) and a
    # hidden snapshot no clone depends on are removed at start-up.
    ("qemu.save.after_migrate", "fork", R, R,
     "source in postmigrate (paused) and a half snapshot: resumed; .tmp-* removed"),
    ("agent.fork.before_record", "fork", R, R,
     "snapshot complete, clone half made: .fork-* and the unused snapshot removed"),
    ("agent.fork.before_rename", "fork", R, R,
     "clone record written in .fork-*: removed with the unused snapshot"),
]

# point -> (API result, state right after the failed call, next standby kind or None).
# "ok" where the point is documented as ignored (the operation completes anyway).
FAIL = {
    "snap.standby.after_pause": ("error", R, DIFF),   # base untouched
    "snap.standby.after_unmark": ("error", R, FULL),  # never reuse a touched base
    "snap.standby.after_promote": ("error", R, FULL),
    "qemu.snapshot.before_migrate": ("error", R, FULL),
    "qemu.snapshot.after_migrate": ("error", R, FULL),
    "qemu.snapshot.after_meta": ("error", R, FULL),
    "snap.standby.after_snapshot": ("error", R, FULL),
    "snap.standby.after_mark": ("ok", S, None),       # snapshot complete: carry on
    "agent.standby.before_commit": ("ok", S, None),   # past the point of no return: exit only
    "snap.restore.before_driver": ("error", S, None),
    "qemu.restore.before_cont": ("error", S, None),
    "qemu.restore.after_cont": ("ok", R, None),       # guest runs on a consumed snapshot: exit only
    "snap.restore.after_driver": ("ok", R, None),     # guest runs: exit only
    "snap.restore.before_rename": ("ok", R, None),    # guest runs; rename retried later
    "agent.restore.before_commit": ("ok", R, None),   # guest runs: exit only
    "agent.stop.before_vmm": ("error", R, None),
    "agent.stop.after_vmm": ("ok", X, None),          # VMM gone: exit only
    "agent.start.after_driver": ("error", X, None),
    "agent.start.before_commit": ("error", X, None),
    "agent.delete.before_remove": ("error", X, None),  # VMM gone: only Stopped is true
    "agent.fork.before_record": ("error", R, None),     # clone and hidden snapshot removed
}

CHECKS = Checks()
check = CHECKS.check


class Guest:
    """One instance and what the test left inside it (a file and a process)."""

    def __init__(self, d, inst):
        self.d = d
        self.id = inst.id
        self.dir = os.path.join(d.data_dir, "instances", inst.id)
        self.console = inst.console_log_path
        self.token = None
        self.sleeper = None

    def snap(self, which):
        return os.path.exists(os.path.join(self.dir, "snapshots", which))

    def run(self, cmd, timeout=60):
        with GuestShell(os.path.join(self.dir, "serial1.sock"), connect_timeout=60) as sh:
            return sh.run(cmd, timeout=timeout, retry=True)

    def booted(self):
        """After a cold boot: wait for init, leave a file and a process."""
        wait_for_console(self.console, "EMBER-GUEST-READY", timeout=180)
        self.token = "crash-%d-%d" % (os.getpid(), int(time.monotonic() * 1000))
        self.run("echo %s > /tmp/crash-marker" % self.token)
        self.sleeper = self.run("sleep 100000 & echo $!").strip().splitlines()[-1]

    def intact(self):
        """The file and the process written before are still there."""
        try:
            out = self.run("cat /tmp/crash-marker; kill -0 %s && echo alive" % self.sleeper)
        except Exception as e:  # noqa: BLE001 - report, do not abort the run
            return False, "guest shell: %s" % e
        ok = self.token in out and out.strip().endswith("alive")
        return ok, out.strip().replace("\n", " | ")


def state_of(d, g):
    try:
        return STATE.get(d.get(g.id).state, "?")
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return GONE
        raise


def consistent(d, g, label, latest_may_linger=False):
    """The reported state matches the processes and folders. latest_may_linger:
    a restore whose retirement of snapshot-latest failed (the guest runs; the
    folder is retired by the next operation or by recovery)."""
    st = state_of(d, g)
    check(st != "Unknown", "%s: not Unknown" % label)
    pids = vmm_pids(g.dir)
    if st == GONE:
        check(pids == [] and not os.path.exists(g.dir),
              "%s: gone, no folder, no VMM (pids %s)" % (label, pids))
        return st
    inst = d.get(g.id)
    if st in (R, "Paused"):
        check(pids == [inst.vmm_pid], "%s: %s with exactly its one VMM (reported %d, found %s)"
              % (label, st, inst.vmm_pid, pids))
    else:
        socks = [f for f in os.listdir(g.dir) if f.endswith(".sock")]
        check(pids == [] and socks == [], "%s: %s with no VMM (%s) and no socket (%s)"
              % (label, st, pids, socks))
    if not (latest_may_linger and st == R):
        check(g.snap("snapshot-latest") == (st == S),
              "%s: snapshot-latest exists exactly in Standby (%s)" % (label, st))
    return st


class Run:
    def __init__(self, d, kernel, initrd):
        self.d, self.kernel, self.initrd = d, kernel, initrd
        self.g = None
        self.n = 0

    def new_guest(self):
        self.n += 1
        spec = self.d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=128, kernel=self.kernel,
                                initrd=self.initrd, cmdline=linux_cmdline())
        inst = self.d.create("crash-%d" % self.n, spec, start=True, timeout=180)
        self.g = Guest(self.d, inst)
        self.g.booted()

    def restore_checked(self, label):
        self.d.restore(self.g.id)
        ok, out = self.g.intact()
        check(ok, "%s: file and process intact after restore (%s)" % (label, out))
        return ok

    def ensure(self, want):
        """Brings the guest to state `want` (Running, Standby or Stopped)."""
        d = self.d
        st = GONE if self.g is None else state_of(d, self.g)
        if st == GONE:
            self.new_guest()
            st = R
        if st == want:
            return
        if want == X:
            d.stop_instance(self.g.id)
            return
        if st == S:
            try:
                self.restore_checked("setup")
                st = R
            except grpc.RpcError as e:
                print("note: restore for setup failed (%s); cold boot instead" % e.details())
                d.stop_instance(self.g.id)
                st = X
        if st == X:
            d.start_instance(self.g.id, timeout=180)
            self.g.booted()
        if want == S:
            d.standby(self.g.id)

    def restart(self, fault=None):
        d = self.d
        d.env = {"EMBER_FAULT": fault} if fault else {}
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        else:
            d.stop()
        d.start(timeout=120)

    def call(self, op):
        d, i = self.d, self.g.id
        if op == "fork":
            self.n += 1
            return Emberd.call_error(d.fork, i, names=["fork-%d" % self.n], timeout=300)
        fn = {"standby": d.standby, "restore": d.restore, "stop": d.stop_instance,
              "start": d.start_instance, "delete": d.delete}[op]
        return Emberd.call_error(fn, i, timeout=300)

    def no_fork_leftovers(self, label):
        """After a fork cut short and a restart: no half clone, no half or
        unused snapshot; only complete instances."""
        d = self.d
        half = [f for f in os.listdir(os.path.join(d.data_dir, "instances"))
                if f.startswith(".fork-")]
        snaps_dir = os.path.join(d.data_dir, "snapshots")
        tmp = [f for f in os.listdir(snaps_dir)] if os.path.isdir(snaps_dir) else []
        check(half == [] and tmp == [] and d.list_snapshots() == [],
              "%s: no half clone (%s), no snapshot left (%s)" % (label, half, tmp))
        clones = [i for i in d.list() if i.name.startswith("fork-")]
        check(clones == [], "%s: no clone made: %s" % (label, [c.name for c in clones]))

    def fork_retry(self, label):
        """A fork after recovery succeeds; the clone has the source's file and
        process; the clone and its snapshot go again."""
        code, res = self.call("fork")
        if not check(code == grpc.StatusCode.OK and len(res.instances) == 1,
                     "%s: retry of fork succeeds (%s %s)" % (label, code.name,
                                                             "" if code == grpc.StatusCode.OK
                                                             else res)):
            return
        c = Guest(self.d, res.instances[0])
        c.token, c.sleeper = self.g.token, self.g.sleeper
        ok, out = c.intact()
        check(ok, "%s: the clone has the source's file and process (%s)" % (label, out))
        ok, out = self.g.intact()
        check(ok, "%s: the source too (%s)" % (label, out))
        self.d.delete(c.id)
        check(self.d.list_snapshots() == [], "%s: the fork's snapshot went with the clone"
              % label)

    def retry(self, op, label):
        code, res = self.call(op)
        ok = code == grpc.StatusCode.OK or (op == "delete" and code == grpc.StatusCode.NOT_FOUND)
        check(ok, "%s: retry of %s succeeds (%s %s)" % (label, op, code.name,
                                                       "" if code == grpc.StatusCode.OK else res))
        if not ok:
            self.reset()
        return res if code == grpc.StatusCode.OK else None

    def reset(self):
        """After a lost guest: stop (or delete) it so the next point starts clean
        instead of inheriting a broken instance."""
        if self.g is None:
            return
        print("note: resetting the instance after a failed retry", flush=True)
        code, _ = Emberd.call_error(self.d.stop_instance, self.g.id)
        if code != grpc.StatusCode.OK:
            Emberd.call_error(self.d.delete, self.g.id)
            self.g = None

    def after_retry(self, op, label, kind=None):
        """Checks the state a successful retry leads to, and the guest in it."""
        if op == "start":
            if check(state_of(self.d, self.g) == R, "%s: Running after the retried start" % label):
                self.g.booted()
        elif op == "standby":
            inst = self.d.get(self.g.id)
            check(STATE[inst.state] == S, "%s: Standby after the retried standby" % label)
            if kind is not None:
                check(inst.last_snapshot_kind == kind, "%s: retried standby is %s (got %s)"
                      % (label, pb.SnapshotKind.Name(kind),
                         pb.SnapshotKind.Name(inst.last_snapshot_kind)))
            try:
                self.restore_checked(label)
            except grpc.RpcError as e:
                check(False, "%s: restore after the retried standby: %s" % (label, e.details()))
        elif op == "restore":
            ok, out = self.g.intact()
            check(ok, "%s: guest intact after the restore (%s)" % (label, out))
        consistent(self.d, self.g, label + " (after retry)")

    # ---- one point, exit mode ---------------------------------------------------
    def exit_point(self, point, op, before, expect, why):
        label = "exit %s" % point
        print("---- %s (%s from %s; expect %s: %s)" % (label, op, before, expect, why), flush=True)
        self.ensure(before)
        self.restart(point + ":exit")
        code, res = self.call(op)
        rc = self.d.proc.wait(60) if self.d.proc is not None else None
        if not check(rc == 86, "%s: emberd died at the point (call %s, exit %s)"
                     % (label, code.name, rc)):
            self.restart()
            return
        self.restart()
        st = consistent(self.d, self.g, label)
        check(st == expect, "%s: state %s, expected %s" % (label, st, expect))
        if op == "fork":
            ok, out = self.g.intact()
            check(ok, "%s: the source's file and process intact (%s)" % (label, out))
            self.no_fork_leftovers(label)
            self.fork_retry(label)
            return
        if st == GONE:
            code, _ = self.call(op)
            check(code == grpc.StatusCode.NOT_FOUND, "%s: retried delete says NOT_FOUND (%s)"
                  % (label, code.name))
            self.g = None
            return
        if st == R and op != "start":
            ok, out = self.g.intact()
            check(ok, "%s: file and process intact (%s)" % (label, out))
        elif st == S and op in ("standby", "restore"):
            # Standby means the snapshot holds the guest: it must restore intact.
            if op == "standby":
                try:
                    self.restore_checked(label)
                except grpc.RpcError as e:
                    check(False, "%s: restore: %s" % (label, e.details()))
                self.ensure(R)
        # Retry the interrupted operation from where recovery left it.
        res = self.retry(op, label)
        if res is not None:
            if op == "delete":
                check(state_of(self.d, self.g) == GONE and vmm_pids(self.g.dir) == [],
                      "%s: deleted, no VMM left" % label)
                self.g = None
            else:
                self.after_retry(op, label)

    # ---- one point, fail mode ---------------------------------------------------
    def fail_point(self, point, op, before):
        api, expect, kind = FAIL[point]
        label = "fail %s" % point
        print("---- %s (%s from %s; expect %s, state %s)" % (label, op, before, api, expect),
              flush=True)
        self.ensure(before)
        self.restart(point)
        code, res = self.call(op)
        if api == "ok":
            check(code == grpc.StatusCode.OK, "%s: call completes, fault ignored by design (%s)"
                  % (label, code.name))
        else:
            check(code not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE),
                  "%s: call fails with an error (%s: %s)" % (label, code.name,
                                                             res if code != grpc.StatusCode.OK else ""))
        check(self.d.proc.poll() is None, "%s: emberd still serving" % label)
        st = consistent(self.d, self.g, label,
                        latest_may_linger=point == "snap.restore.before_rename")
        check(st == expect, "%s: state right after the call %s, expected %s" % (label, st, expect))
        if st == R and op != "start":
            ok, out = self.g.intact()
            check(ok, "%s: file and process intact (%s)" % (label, out))
        self.restart()
        st = consistent(self.d, self.g, label + " (after restart)")
        if op == "fork":
            self.no_fork_leftovers(label)
            self.fork_retry(label)
            return
        if api == "ok":
            # Already at the target: the retry is a no-op that must also succeed.
            self.retry(op, label)
            if op == "standby":
                self.after_retry(op, label)
            return
        res = self.retry(op, label)
        if res is not None:
            if op == "delete":
                check(state_of(self.d, self.g) == GONE, "%s: deleted" % label)
                self.g = None
            else:
                self.after_retry(op, label, kind)


def main():
    kernel, initrd = linux_guest_files()
    only = [p for p in os.environ.get("EMBER_CRASH_POINTS", "").split(",") if p]
    t0 = time.monotonic()
    # An own temp root (not the fixture's ember-it-* default) so that no other
    # test's clean-up of ember-it-* folders on this shared host can remove it.
    root = tempfile.mkdtemp(prefix="ember-crash-")
    try:
        return run_all(root, kernel, initrd, only, t0)
    finally:
        if os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(root, ignore_errors=True)


def run_all(root, kernel, initrd, only, t0):
    n_exit = n_fail = 0
    with Emberd(config={"drivers": {"qemu": {"accel": os.environ.get("EMBER_QEMU_ACCEL", "tcg")}}},
                log_level="info", root=root) as d:
        run = Run(d, kernel, initrd)
        for point, op, before, expect, why in EXIT:
            if only and point not in only:
                continue
            try:
                run.exit_point(point, op, before, expect, why)
            except Exception as e:  # noqa: BLE001 - one broken point must not hide the rest
                check(False, "exit %s: unexpected %s: %s" % (point, type(e).__name__, e))
                sys.stderr.write(d.log_tail(15) + "\n")
                run.restart()
            n_exit += 1
        for point, op, before, _expect, _why in EXIT:
            if point not in FAIL or (only and point not in only):
                continue
            try:
                run.fail_point(point, op, before)
            except Exception as e:  # noqa: BLE001
                check(False, "fail %s: unexpected %s: %s" % (point, type(e).__name__, e))
                sys.stderr.write(d.log_tail(15) + "\n")
                run.restart()
            n_fail += 1
        if run.g is not None:
            d.delete(run.g.id)
    print("covered %d injection points (exit) + %d (fail) in %.0f s"
          % (n_exit, n_fail, time.monotonic() - t0))
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
