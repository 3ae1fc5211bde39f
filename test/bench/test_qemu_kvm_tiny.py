#!/usr/bin/python3
"""test_qemu_kvm_tiny: QEMU under KVM with the tiny guest, through emberd's gRPC
API (GitHub issue 4 asks for the same integration as Firecracker, for QEMU).

emberd runs with config {"drivers":{"qemu":{"accel":"kvm"}}}; an instance with
the tiny guest (kernel tiny.elf, 32 MiB, no initrd) is created and started,
then goes through two standby/restore cycles. Checks, from the console file:
  - the counter continues exactly: every `tiny counter=<n>` line is the one
    before plus one, over the whole console (no reset, strictly increasing
    across both restores), and it advances after each restore;
  - the marker (random, taken once at first boot, kept in guest RAM) never
    changes;
  - no counter line appears while the instance is in Standby;
and that the second standby was a DIFF (base reuse).

Skips (exit 77, with a message) when KVM does not work here: /dev/kvm cannot be
opened, or a probe QEMU (-accel kvm -M microvm -kernel tiny.elf) prints no
counter line within 10 s, or the tiny guest / QEMU is missing.

Env: EMBERD_BIN, EMBER_PYTHON_DIR (as for every integration test),
     EMBER_GUEST_TINY (path of tiny.elf).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import bench_common as bc  # noqa: E402

RESULTS = {"passed": 0, "failed": 0}


def skip(why):
    print("SKIP: %s" % why)
    sys.exit(77)


def check(cond, what):
    RESULTS["passed" if cond else "failed"] += 1
    print("%s %s" % ("ok   " if cond else "FAIL ", what), flush=True)
    return cond


def probe_kvm(tiny):
    """Boots tiny.elf under -accel kvm for up to 10 s; returns None when it
    prints a counter line, else the reason."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as e:
        return "/dev/kvm cannot be opened: %s" % e
    d = tempfile.mkdtemp(prefix="ember-kvm-probe-")
    out = os.path.join(d, "serial.txt")
    p = subprocess.Popen(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", "32",
                          "-nodefaults", "-no-user-config", "-nographic", "-kernel", tiny,
                          "-serial", "file:" + out], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if bc.tiny_lines(out):
                return None
            if p.poll() is not None:
                msg = p.stdout.read().decode(errors="replace").strip()
                return "QEMU -accel kvm exited (%s): %s" % (p.returncode, msg[-300:])
            time.sleep(0.1)
        return "QEMU -accel kvm ran the tiny guest for 10 s without a counter line"
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def find_tiny():
    cands = [os.environ.get("EMBER_GUEST_TINY", "")]
    for b in ("build", "/tmp/build"):
        base = b if os.path.isabs(b) else os.path.join(bc.ROOT, b)
        cands.append(os.path.join(base, "guests", "tiny", "tiny.elf"))
    for c in cands:
        if c and os.path.isfile(c):
            return os.path.abspath(c)
    skip("tiny guest not built (EMBER_GUEST_TINY; build target guest_tiny)")


def wait_lines(console, offset, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = bc.tiny_lines(console, offset)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    return bc.tiny_lines(console, offset)


def main():
    if shutil.which("qemu-system-x86_64") is None:
        skip("qemu-system-x86_64 not installed")
    tiny = find_tiny()
    why = probe_kvm(tiny)
    if why is not None:
        skip("KVM does not work here: %s" % why)
    try:
        from emberd_fixture import Emberd, pb
    except Exception as e:  # noqa: BLE001
        skip("the emberd fixture cannot load (EMBERD_BIN / EMBER_PYTHON_DIR): %s" % e)

    cfg = {"drivers": {"qemu": {"accel": "kvm"}}}
    # EMBER_QEMU_ACCEL would override the config: this test is about KVM.
    env = {"EMBER_QEMU_ACCEL": "kvm"}
    with Emberd(config=cfg, env=env) as d:
        hv = {h.type: h for h in d.list_hypervisors()}
        q = hv.get("qemu")
        if not check(q is not None and q.available and "kvm" in q.detail,
                     "emberd's qemu driver runs with KVM (%s)" % (q.detail if q else None)):
            return 1
        spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=32, kernel=tiny,
                           initrd="", cmdline="")
        inst = d.create("kvm-tiny", spec, start=True, timeout=60)
        check(inst.state == pb.INSTANCE_STATE_RUNNING, "tiny guest started under KVM")
        console = inst.console_log_path
        first = wait_lines(console, 0, 3)
        if not check(len(first) >= 3, "guest prints counter lines (%d seen)" % len(first)):
            return 1
        marker = first[0][1]
        kinds = []
        for cycle in (1, 2):
            inst = d.standby(inst.id)
            check(inst.state == pb.INSTANCE_STATE_STANDBY,
                  "cycle %d: standby -> Standby (%d us)" % (cycle, inst.last_standby_duration.ToMicroseconds()))
            kinds.append(inst.last_snapshot_kind)
            size = os.path.getsize(console)
            last = bc.tiny_lines(console)[-1][0]
            time.sleep(0.6)  # ~3 counter periods: nothing may run in Standby
            check(os.path.getsize(console) == size, "cycle %d: silent in Standby" % cycle)
            inst = d.restore(inst.id)
            check(inst.state == pb.INSTANCE_STATE_RUNNING,
                  "cycle %d: restore -> Running (%d us)" % (cycle, inst.last_restore_duration.ToMicroseconds()))
            # Whole console, not from `size`: a line cut by the pause ends after it.
            deadline = time.monotonic() + 20
            while True:
                after = [(n, m) for n, m in bc.tiny_lines(console) if n > last]
                if len(after) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            check(len(after) >= 2 and after[0][0] == last + 1,
                  "cycle %d: counter continues exactly (%d, then %s)"
                  % (cycle, last, [n for n, _ in after[:3]]))
        lines = bc.tiny_lines(console)
        nums = [n for n, _ in lines]
        bad = [(a, b) for a, b in zip(nums, nums[1:]) if b != a + 1]
        check(nums and nums[0] == 1 and not bad,
              "whole console: counter 1..%d, each line +1 (breaks: %s)"
              % (nums[-1] if nums else 0, bad[:5]))
        check(all(m == marker for _, m in lines), "marker %s unchanged throughout" % marker)
        check(kinds[1] == pb.SNAPSHOT_KIND_DIFF,
              "second standby was a DIFF (kinds: %s)"
              % [pb.SnapshotKind.Name(k) for k in kinds])
        d.stop_instance(inst.id)
        d.delete(inst.id)
    print("%d passed, %d failed" % (RESULTS["passed"], RESULTS["failed"]))
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
