#!/usr/bin/python3
"""test_concurrency.py: hundreds of concurrent, conflicting lifecycle calls at a
real emberd through the real gRPC client (GitHub issue 5).

The VMM is the Firecracker contract fake (test/fakes/firecracker_fake.py, run as
the firecracker binary via EMBER_FIRECRACKER_BIN, FAKE_FC_VERSION=1.16.1), so
real processes, real API sockets and real snapshot files are involved, without
QEMU. Phases:
  1. one instance, many threads firing standby/restore/stop/start/pause/resume/
     get/list at it;
  2. several instances at once, the same mix plus delete;
while a WatchInstances stream records every state change.
Checks: every reply is OK or a proper status (FAILED_PRECONDITION; NOT_FOUND
only for an instance a delete was issued for) -- never INTERNAL, UNKNOWN,
UNAVAILABLE or a deadline (deadlock); an OK reply of an operation shows its
target state; the watched transitions are valid per docs/architecture.md section 3 and
chain per instance; emberd is alive at the end; the number of fake VMM processes
equals the number of Running/Paused instances; instance.json "state" and the
existence of snapshot-latest agree with GetInstance.

Usage: test_concurrency.py <firecracker_fake.py>  (EMBERD_BIN, EMBER_PYTHON_DIR
as for the other integration tests). EMBER_CONC_CALLS scales the phases.
Prints the number of calls fired and "N passed, M failed"; exit 77 = SKIP."""

import json
import os
import random
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, require as check
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
pb = fx.pb
STOPPED, RUNNING, PAUSED, STANDBY, UNKNOWN = (pb.INSTANCE_STATE_STOPPED, pb.INSTANCE_STATE_RUNNING,
                                              pb.INSTANCE_STATE_PAUSED, pb.INSTANCE_STATE_STANDBY,
                                              pb.INSTANCE_STATE_UNKNOWN)
STATE_NAMES = {STOPPED: "stopped", RUNNING: "running", PAUSED: "paused", STANDBY: "standby",
               UNKNOWN: "unknown"}
TARGET = {"start": RUNNING, "stop": STOPPED, "pause": PAUSED, "resume": RUNNING,
          "standby": STANDBY, "restore": RUNNING}
OPS = ["standby", "restore", "stop", "start", "pause", "resume", "get", "list"]
CALL_TIMEOUT = 90  # a call that takes longer is treated as a deadlock

# Valid watched transitions: (old, new, operation).
O = pb
VALID = {
    (STOPPED, RUNNING, O.OPERATION_START),
    (RUNNING, PAUSED, O.OPERATION_PAUSE),
    (PAUSED, RUNNING, O.OPERATION_RESUME),
    (RUNNING, STANDBY, O.OPERATION_STANDBY),
    (PAUSED, STANDBY, O.OPERATION_STANDBY),
    (STANDBY, RUNNING, O.OPERATION_RESTORE),
    (RUNNING, STOPPED, O.OPERATION_STOP),
    (PAUSED, STOPPED, O.OPERATION_STOP),
    (STANDBY, STOPPED, O.OPERATION_STOP),
    (UNKNOWN, STOPPED, O.OPERATION_STOP),
}

results = []
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


def test(fn):
    results.append(fn)
    return fn


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.fired = 0
        self.codes = {}
        self.problems = []

    def add(self, code):
        with self.lock:
            self.fired += 1
            self.codes[code.name] = self.codes.get(code.name, 0) + 1

    def problem(self, msg):
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(msg)


STATS = Stats()


class Watcher:
    """Collects InstanceEvents from one WatchInstances stream on a thread."""

    def __init__(self, d):
        self.events = []
        self.error = None
        self.call = d.watch("")
        self.call.initial_metadata()  # subscribed from here on
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for ev in self.call:
                self.events.append(ev)
        except grpc.RpcError as e:
            if e.code() != SC.CANCELLED:
                self.error = e

    def stop(self):
        self.call.cancel()
        self.t.join(10)


def fire(d, op, ident, deleted, alias):
    """One call; returns (code, reply). Classifies the status. alias maps a
    name or id to the instance id; deleted holds ids a delete was issued for."""
    fns = {"start": d.start_instance, "stop": d.stop_instance, "pause": d.pause,
           "resume": d.resume, "standby": d.standby, "restore": d.restore, "get": d.get,
           "delete": d.delete}
    try:
        if op == "list":
            r = d.list(timeout=CALL_TIMEOUT)
        else:
            if op == "delete":
                deleted.add(alias[ident])
            r = fns[op](ident, timeout=CALL_TIMEOUT)
        code = SC.OK
    except grpc.RpcError as e:
        code, r = e.code(), e.details()
    STATS.add(code)
    if code == SC.OK:
        if op in TARGET and r.state != TARGET[op]:
            STATS.problem("%s %s: OK reply with state %s" % (op, ident, STATE_NAMES.get(r.state)))
        if op in TARGET and r.has_snapshot != (r.state == STANDBY):
            STATS.problem("%s %s: has_snapshot=%s in state %s" %
                          (op, ident, r.has_snapshot, STATE_NAMES.get(r.state)))
    elif code == SC.FAILED_PRECONDITION:
        if op in ("get", "list", "delete"):
            STATS.problem("%s %s: FAILED_PRECONDITION: %s" % (op, ident, r))
    elif code == SC.NOT_FOUND:
        if alias[ident] not in deleted:
            STATS.problem("%s %s: NOT_FOUND but never deleted: %s" % (op, ident, r))
    else:
        STATS.problem("%s %s: %s: %s" % (op, ident, code.name, r))
    return code, r


def hammer(d, alias, n_threads, per_thread, with_delete, seed):
    deleted = set()
    idents = sorted(alias)
    rng = random.Random(seed)
    plans = []
    for _ in range(n_threads):
        plan = []
        for _ in range(per_thread):
            op = rng.choice(OPS)
            if with_delete and rng.random() < 0.02:
                op = "delete"
            plan.append((op, rng.choice(idents)))
        plans.append(plan)
    barrier = threading.Barrier(n_threads)

    def worker(plan):
        try:
            barrier.wait(30)
            for op, ident in plan:
                fire(d, op, ident, deleted, alias)
        except Exception as e:  # noqa: BLE001
            STATS.problem("worker: %r\n%s" % (e, traceback.format_exc()))

    threads = [threading.Thread(target=worker, args=(p,), daemon=True) for p in plans]
    for t in threads:
        t.start()
    end = time.monotonic() + CALL_TIMEOUT * 3
    for t in threads:
        t.join(max(0.1, end - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    if hung:
        raise AssertionError("%d client threads still waiting: emberd deadlocked?" % hung)
    return deleted


def fake_processes(d):
    """pids of fake firecracker processes started under the test's temp root."""
    return fx.procs_matching("firecracker_fake.py", d.root)


def check_final(d, watcher):
    """Quiesced: disk, processes and GetInstance agree; transitions valid."""
    check(d.proc.poll() is None, "emberd exited: %s" % d.log_tail())
    insts = d.list()
    live = 0
    inst_dir = os.path.join(d.data_dir, "instances")
    for i in insts:
        g = d.get(i.id)
        check(g.state == i.state, "%s: Get says %s, List said %s" % (i.name, g.state, i.state))
        with open(os.path.join(inst_dir, i.id, "instance.json")) as f:
            rec = json.load(f)
        check(rec["state"] == STATE_NAMES[g.state],
              "%s: instance.json says %s, GetInstance %s" % (i.name, rec["state"],
                                                            STATE_NAMES[g.state]))
        latest = os.path.isdir(os.path.join(inst_dir, i.id, "snapshots", "snapshot-latest"))
        check(latest == (g.state == STANDBY),
              "%s: snapshot-latest %s in state %s" % (i.name, "exists" if latest else "missing",
                                                      STATE_NAMES[g.state]))
        check(g.has_snapshot == (g.state == STANDBY), "%s: has_snapshot %s in %s" %
              (i.name, g.has_snapshot, STATE_NAMES[g.state]))
        if g.state in (RUNNING, PAUSED):
            live += 1
            check(g.vmm_pid > 0 and os.path.exists("/proc/%d" % g.vmm_pid),
                  "%s: %s without a live VMM (pid %d)" % (i.name, STATE_NAMES[g.state], g.vmm_pid))
        else:
            check(g.vmm_pid == 0, "%s: vmm_pid %d in %s" % (i.name, g.vmm_pid,
                                                            STATE_NAMES[g.state]))
    dirs = set(os.listdir(inst_dir))
    check(dirs == {i.id for i in insts}, "instance folders %s, instances %s" %
          (sorted(dirs), sorted(i.id for i in insts)))
    procs = []
    for _ in range(50):  # a killed VMM may take a moment to disappear from /proc
        procs = fake_processes(d)
        if len(procs) == live:
            break
        time.sleep(0.1)
    check(len(procs) == live, "%d fake VMM processes for %d Running/Paused instances: %s" %
          (len(procs), live, procs))
    # Transitions: valid per the table, and chained per instance.
    time.sleep(0.3)
    check(watcher.error is None, "watch stream failed: %s" % watcher.error)
    last = {}
    for ev in watcher.events:
        iid = ev.instance.id
        if ev.operation == O.OPERATION_CREATE:
            last[iid] = ev.new_state
            continue
        if ev.operation == O.OPERATION_DELETE:
            last.pop(iid, None)
            continue
        key = (ev.old_state, ev.new_state, ev.operation)
        check(key in VALID, "invalid transition %s -> %s by operation %d on %s" %
              (STATE_NAMES.get(ev.old_state), STATE_NAMES.get(ev.new_state), ev.operation,
               ev.instance.name))
        if iid in last:
            check(last[iid] == ev.old_state, "%s: event from %s but the last state was %s" %
                  (ev.instance.name, STATE_NAMES.get(ev.old_state), STATE_NAMES.get(last[iid])))
        last[iid] = ev.new_state
    for i in insts:
        if i.id in last:
            check(last[i.id] == i.state, "%s: last event says %s, GetInstance %s" %
                  (i.name, STATE_NAMES.get(last[i.id]), STATE_NAMES[i.state]))
    return len(watcher.events), live


def scale():
    try:
        return max(0.1, float(os.environ.get("EMBER_CONC_CALLS", "1")))
    except ValueError:
        return 1.0


def setup(d, names):
    kernel = d.fake_kernel()
    spec = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=kernel,
                       cmdline="console=ttyS0")
    alias = {}
    for k, n in enumerate(names):
        i = d.create(n, spec, start=(k % 2 == 0)).id
        alias[n] = alias[i] = i
    return alias


@test
def one_instance_many_threads(d):
    w = Watcher(d)
    alias = setup(d, ["hot"])
    before = STATS.fired
    hammer(d, alias, n_threads=12, per_thread=int(20 * scale()), with_delete=False,
           seed=1)
    n_ev, live = check_final(d, w)
    w.stop()
    print("  one instance: %d calls, %d events, %d live VMMs" % (STATS.fired - before, n_ev, live))


@test
def many_instances_at_once(d):
    w = Watcher(d)
    names = ["vm%d" % i for i in range(6)]
    alias = setup(d, names)
    before = STATS.fired
    hammer(d, alias, n_threads=16, per_thread=int(16 * scale()), with_delete=True, seed=2)
    n_ev, live = check_final(d, w)
    w.stop()
    print("  %d instances: %d calls, %d events, %d live VMMs, %d left" %
          (len(names), STATS.fired - before, n_ev, live, len(d.list())))


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("SKIP: usage: test_concurrency.py <firecracker_fake.py> (executable)")
        return 77
    fake = os.path.abspath(sys.argv[1])
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1"}
    passed = failed = 0
    t0 = time.monotonic()
    for fn in results:
        try:
            with Emberd(env=env, log_level="info") as d:
                hv = {h.type: h for h in d.list_hypervisors()}
                if not (hv.get("firecracker") and hv["firecracker"].available):
                    print("SKIP: firecracker (fake) not available: %s" % hv.get("firecracker"))
                    return 77
                n0 = len(STATS.problems)
                fn(d)
                # A clean shutdown, and no sanitizer report in the log (the
                # ASan/TSan builds run this test too).
                log = d.log_path
                rc = d.stop()
                with open(log, "rb") as f:
                    text = f.read().decode(errors="replace")
                for marker in SANITIZER_MARKERS:
                    if marker in text:
                        i = text.index(marker)
                        raise AssertionError("emberd log has a sanitizer report:\n%s" %
                                             text[max(0, i - 200):i + 3000])
                check(rc == 0, "emberd exited with %s after SIGTERM" % rc)
                if len(STATS.problems) > n0:
                    raise AssertionError("bad replies:\n  " +
                                         "\n  ".join(STATS.problems[n0:n0 + 20]))
            print("PASS %s" % fn.__name__)
            passed += 1
        except Exception as e:  # noqa: BLE001
            print("FAIL %s: %s" % (fn.__name__, e))
            traceback.print_exc()
            failed += 1
    print("%d calls fired in %.1f s; replies by code: %s" %
          (STATS.fired, time.monotonic() - t0,
           ", ".join("%s=%d" % kv for kv in sorted(STATS.codes.items()))))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
