#!/usr/bin/python3
"""test_idle.py: idle auto-standby (InstanceSpec.auto_standby, HoldInstance,
Instance.idle, InstanceEvent.reason; docs/idle.md) through a real emberd, with
the Firecracker contract fake (test/fakes/firecracker_fake.py) as the VMM:
its guest sleeps between ticks, so its VMM is idle, and spins while the file
named by FAKE_FC_BURN_FILE exists (a busy guest).

Checks: hostile values of auto_standby and HoldInstance are INVALID_ARGUMENT
naming the field (nothing created); an instance with idle_seconds=2 goes to
Standby by itself within a few seconds, with a WatchInstances event
(OPERATION_STANDBY, Running -> Standby) whose reason says why, and the same
in status_message; RestoreInstance wakes it; a hold keeps it Running past
the idle time and releasing the hold lets it go; an open StreamConsole
follow keeps it awake (Instance.idle.open_sessions) until cancelled; a busy
VMM stays Running (Instance.idle.cpu_percent above the threshold) until it
calms down; `emberctl hold` (when EMBERCTL_BIN is set).

Usage: test_idle.py <firecracker_fake.py>   (EMBERD_BIN, EMBER_PYTHON_DIR,
optional EMBERCTL_BIN). Exit 77 = SKIP."""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, require as check
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

pb = fx.pb
from google.protobuf import duration_pb2  # noqa: E402  (after the fixture set the path)

# How long an instance with idle_seconds=2 may take to go to standby: the
# first sample (up to 1 s), two idle seconds, the standby itself, slack for
# the sanitizers.
STANDBY_WITHIN = 12


def fc_spec(d, idle_seconds=2, cpu=0.0, net=0):
    spec = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=d.fake_kernel(),
                       cmdline="console=ttyS0")
    if idle_seconds or cpu or net:
        spec.auto_standby.idle_seconds = idle_seconds
        spec.auto_standby.max_cpu_percent = cpu
        spec.auto_standby.max_net_bytes_per_second = net
    return spec


def hold(d, id_, seconds=0, nanos=0, unset=False):
    req = pb.HoldInstanceRequest(id=id_)
    if not unset:
        req.duration.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    return d.unary("HoldInstance", req, pb.Instance)


def state(d, id_):
    return d.get(id_).state


def wait_state(d, id_, want, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if state(d, id_) == want:
            return True
        time.sleep(0.1)
    return False


def stays(d, id_, want, seconds):
    """The state is want for the whole time."""
    end = time.time() + seconds
    while time.time() < end:
        st = state(d, id_)
        if st != want:
            return False
        time.sleep(0.2)
    return True


class Events:
    """A WatchInstances stream read on a thread."""

    def __init__(self, d):
        self.call = d.watch()
        self.events = []
        self.lock = threading.Lock()
        self.call.initial_metadata()  # subscribed once the headers are in
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            for ev in self.call:
                with self.lock:
                    self.events.append(ev)
        except grpc.RpcError:
            pass

    def auto(self, name):
        with self.lock:
            return [e for e in self.events if e.instance.name == name and e.reason]

    def of(self, name):
        with self.lock:
            return [e for e in self.events if e.instance.name == name]

    def close(self):
        self.call.cancel()
        self.t.join(10)


def test_hostile(d):
    bad = [
        (dict(idle_seconds=2592001), "spec.auto_standby.idle_seconds"),
        (dict(idle_seconds=4294967295), "spec.auto_standby.idle_seconds"),
        (dict(idle_seconds=5, cpu=-1.0), "spec.auto_standby.max_cpu_percent"),
        (dict(idle_seconds=5, cpu=100.5), "spec.auto_standby.max_cpu_percent"),
        (dict(idle_seconds=5, cpu=float("nan")), "spec.auto_standby.max_cpu_percent"),
        (dict(idle_seconds=5, cpu=float("inf")), "spec.auto_standby.max_cpu_percent"),
        (dict(idle_seconds=5, net=2 ** 64 - 1), "spec.auto_standby.max_net_bytes_per_second"),
        (dict(idle_seconds=0, cpu=5.0), "spec.auto_standby.idle_seconds"),
    ]
    for kw, field in bad:
        code, msg = d.call_error(d.create, "hostile", fc_spec(d, **kw))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and field in msg, (kw, code, msg))
    check(not [i for i in d.list() if i.name == "hostile"], "a hostile create left an instance")

    inst = d.create("plain", fc_spec(d, idle_seconds=0))
    check(not inst.spec.HasField("auto_standby"), "auto_standby shown while off")
    check(not inst.HasField("idle"), "idle status shown without auto_standby or hold")
    for kw in (dict(seconds=-1), dict(seconds=0, nanos=-5), dict(seconds=86401),
               dict(seconds=86400, nanos=1), dict(seconds=2 ** 62)):
        code, msg = d.call_error(hold, d, "plain", **kw)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "duration" in msg, (kw, code, msg))
    code, msg = d.call_error(hold, d, "nosuch", seconds=5)
    check(code == grpc.StatusCode.NOT_FOUND, (code, msg))
    code, msg = d.call_error(hold, d, "", seconds=5)
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "id" in msg, (code, msg))
    # A hold on an instance without auto_standby is allowed (and shown).
    h = hold(d, "plain", seconds=30)
    check(h.HasField("idle") and h.idle.HasField("hold_until"), h)
    check(abs(h.idle.hold_until.seconds - (time.time() + 30)) < 5, h.idle.hold_until)
    h = hold(d, "plain", unset=True)  # no duration: release
    check(not h.HasField("idle"), "the hold is still shown after a release: %s" % h.idle)
    d.delete("plain")


def test_auto_standby(d, ev):
    inst = d.create("sleepy", fc_spec(d), start=True)
    a = inst.spec.auto_standby
    check(a.idle_seconds == 2 and abs(a.max_cpu_percent - 2.0) < 1e-9 and
          a.max_net_bytes_per_second == 1024, "defaults not filled in: %s" % a)
    check(inst.HasField("idle"), "no idle status")
    t0 = time.time()
    check(wait_state(d, "sleepy", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "not in standby after %d s: %s" % (STANDBY_WITHIN, d.get("sleepy")))
    took = time.time() - t0
    check(took >= 1.5, "standby after %.1f s, before the idle time" % took)
    got = d.get("sleepy")
    check(got.status_message.startswith("auto standby: idle for 2 s: cpu "), got.status_message)
    end = time.time() + 5
    while time.time() < end and not ev.auto("sleepy"):
        time.sleep(0.05)
    auto = ev.auto("sleepy")
    check(len(auto) == 1, "auto standby events: %s" % auto)
    e = auto[0]
    check(e.operation == pb.OPERATION_STANDBY and e.old_state == pb.INSTANCE_STATE_RUNNING and
          e.new_state == pb.INSTANCE_STATE_STANDBY, e)
    check(e.reason.startswith("idle for 2 s: cpu ") and "net " in e.reason and
          "no session open" in e.reason, e.reason)
    print("auto standby after %.1f s: %s" % (took, e.reason))
    # The scheduler wakes it with a restore; it runs and its status is clear.
    r = d.restore("sleepy")
    check(r.state == pb.INSTANCE_STATE_RUNNING and not r.status_message, r)
    time.sleep(1.5)
    g = d.get("sleepy")
    check(g.state == pb.INSTANCE_STATE_RUNNING and g.idle.idle_duration.seconds >= 0, g)
    # A standby a client asks for has no reason.
    d.standby("sleepy")
    plain = [x for x in ev.of("sleepy") if x.operation == pb.OPERATION_STANDBY and not x.reason]
    end = time.time() + 5
    while time.time() < end and not plain:
        time.sleep(0.05)
        plain = [x for x in ev.of("sleepy")
                 if x.operation == pb.OPERATION_STANDBY and not x.reason]
    check(plain, "no event for the client's standby")
    d.restore("sleepy")
    check(wait_state(d, "sleepy", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "no second auto standby after the restore")
    d.delete("sleepy")


def test_hold(d):
    d.create("held", fc_spec(d), start=True)
    h = hold(d, "held", seconds=600)
    check(h.idle.hold_until.seconds >= int(time.time()) + 590, h.idle)
    check(stays(d, "held", pb.INSTANCE_STATE_RUNNING, 5), "a held instance went to standby")
    g = d.get("held")
    check(g.idle.idle_duration.seconds == 0 and g.idle.idle_duration.nanos == 0,
          "a held instance counts as idle: %s" % g.idle)
    hold(d, "held", seconds=0)
    check(wait_state(d, "held", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "not in standby after the hold was released")
    # A short hold that runs out.
    d.restore("held")
    hold(d, "held", seconds=3)
    check(stays(d, "held", pb.INSTANCE_STATE_RUNNING, 3), "standby during a 3 s hold")
    check(wait_state(d, "held", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "not in standby after the hold ran out")
    check(not d.get("held").idle.HasField("hold_until"), "an expired hold is still shown")
    d.delete("held")


def test_console_session(d):
    d.create("watched", fc_spec(d), start=True)
    call = d.stream("StreamConsole", pb.StreamConsoleRequest(id="watched", follow=True),
                    pb.ConsoleChunk)
    got = []
    def reader():
        try:
            for c in call:
                got.append(c)
        except grpc.RpcError:
            pass
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    end = time.time() + 10
    while time.time() < end and d.get("watched").idle.open_sessions != 1:
        time.sleep(0.1)
    check(d.get("watched").idle.open_sessions == 1, "the follow is not counted as a session")
    check(stays(d, "watched", pb.INSTANCE_STATE_RUNNING, 5),
          "went to standby while a console follow was open")
    check(got, "the follow received nothing")
    call.cancel()
    t.join(10)
    check(wait_state(d, "watched", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "not in standby after the follow ended")
    check(d.get("watched").idle.open_sessions == 0, "the session is still counted")
    d.delete("watched")


def test_busy(d, burn):
    with open(burn, "w"):
        pass
    d.create("busy", fc_spec(d), start=True)
    check(stays(d, "busy", pb.INSTANCE_STATE_RUNNING, 5), "a busy VMM went to standby")
    g = d.get("busy")
    check(g.idle.cpu_percent >= 2.0, "busy VMM measured at %.2f%% CPU" % g.idle.cpu_percent)
    print("busy VMM: cpu %.1f%%" % g.idle.cpu_percent)
    os.unlink(burn)
    check(wait_state(d, "busy", pb.INSTANCE_STATE_STANDBY, STANDBY_WITHIN),
          "not in standby after the VMM calmed down")
    d.restore("busy")
    check(d.get("busy").state == pb.INSTANCE_STATE_RUNNING, "restore after auto standby")
    d.delete("busy")


def test_ctl(d):
    ctl = os.environ.get("EMBERCTL_BIN")
    if not ctl:
        print("note: EMBERCTL_BIN not set; emberctl hold not checked")
        return
    d.create("ctl", fc_spec(d, idle_seconds=0))
    sock = d.socket_path
    out = subprocess.run([ctl, "--socket", sock, "hold", "ctl", "90s"], capture_output=True,
                         text=True, timeout=30)
    check(out.returncode == 0 and "ctl: held awake for" in out.stdout, out)
    out = subprocess.run([ctl, "--socket", sock, "get", "ctl"], capture_output=True, text=True,
                         timeout=30)
    check(out.returncode == 0 and "Held until:" in out.stdout, out)
    out = subprocess.run([ctl, "--socket", sock, "hold", "ctl", "0"], capture_output=True,
                         text=True, timeout=30)
    check(out.returncode == 0 and "ctl: hold released" in out.stdout, out)
    out = subprocess.run([ctl, "--socket", sock, "hold", "ctl", "48h"], capture_output=True,
                         text=True, timeout=30)
    check(out.returncode == 3 and "duration" in out.stderr, out)  # INVALID_ARGUMENT
    d.delete("ctl")


def main():
    if len(sys.argv) != 2:
        print("usage: test_idle.py <firecracker_fake.py>")
        return 2
    fake = os.path.abspath(sys.argv[1])
    burn_dir = tempfile.mkdtemp(prefix="ember-idle-")
    burn = os.path.join(burn_dir, "burn")
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1", "FAKE_FC_TICK_MS": "200",
           "FAKE_FC_BURN_FILE": burn}
    try:
        with Emberd(env=env) as d:
            fc = {h.type: h for h in d.list_hypervisors()}.get("firecracker")
            check(fc is not None and fc.available, "firecracker (fake) not available: %s" % fc)
            ev = Events(d)
            test_hostile(d)
            test_auto_standby(d, ev)
            test_hold(d)
            test_console_session(d)
            test_busy(d, burn)
            test_ctl(d)
            ev.close()
    finally:
        if os.path.exists(burn):
            os.unlink(burn)
        os.rmdir(burn_dir)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
