#!/usr/bin/python3
"""test_firecracker_api.py: standby and restore of a Firecracker instance
through emberd's gRPC API, with the contract fake (test/fakes/firecracker_fake.py)
acting as an old (1.1.0: diff merged by the driver) and the current 1.x release
(diff written in place). create+start, standby (FULL), restore, standby (must
be DIFF), restore: the guest's counter continues and its boot marker stays.

Usage: test_firecracker_api.py <firecracker_fake.py>   (EMBERD_BIN and
EMBER_PYTHON_DIR as for the other integration tests). Exit 77 = SKIP.
       test_firecracker_api.py real <tiny.elf>
the same sequence with the real binary named by EMBER_FIRECRACKER_BIN booting the
tiny test guest (test/guests/tiny) under KVM; SKIP without a binary or KVM."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import emberd_fixture as fx
    from emberd_fixture import Emberd, require as check
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

LINE = re.compile(rb"tiny counter=(\d+) marker=([0-9a-f]+)\r?\n")  # whole lines only


def line_start(path):
    """Offset just after the last newline: the serial port is written byte by
    byte, so a standby may cut a line in two; scanning from here after the
    restore sees that line whole once the guest finishes it."""
    with open(path, "rb") as f:
        return f.read().rfind(b"\n") + 1


def scan(path, start=0):
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return [(int(m.group(1)), m.group(2).decode()) for m in LINE.finditer(f.read())]
    except FileNotFoundError:
        return []


def wait_lines(path, start, n, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        got = scan(path, start)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError("fewer than %d console lines in %s after %d" % (n, path, start))


def run(binary, version, kernel=None):
    """version None: a real binary (any version); else the fake as that version."""
    pb = fx.pb
    env = {"EMBER_FIRECRACKER_BIN": binary}
    if version is not None:
        env["FAKE_FC_VERSION"] = version
    with Emberd(env=env) as d:
        hv = {h.type: h for h in d.list_hypervisors()}
        fc = hv.get("firecracker")
        check(fc is not None and fc.available, "firecracker not available: %s" % fc)
        check(version is None or version in fc.detail,
              "detail %r lacks the version %s" % (fc.detail, version))
        if kernel is None:
            files = os.path.join(d.root, "files")
            os.makedirs(files, exist_ok=True)
            kernel = os.path.join(files, "kernel")
            with open(kernel, "wb") as f:
                f.write(os.urandom(16384))
        spec = d.make_spec(hypervisor="firecracker", memory_mib=16 if version else 32,
                           kernel=kernel, cmdline="console=ttyS0")
        spec.vsock.guest_cid = 3  # host side: <instance folder>/vsock.sock
        inst = d.create("fc-" + (version or "real").replace(".", "-"), spec, start=True)
        check(inst.state == pb.INSTANCE_STATE_RUNNING, "not running: %s" % inst)
        check(inst.spec.vsock.guest_cid == 3, "vsock not in the spec: %s" % inst.spec)
        vsock = os.path.join(d.data_dir, "instances", inst.id, "vsock.sock")
        check(os.path.exists(vsock), "no vsock socket %s" % vsock)
        console = inst.console_log_path
        marker = wait_lines(console, 0, 3)[0][1]
        kinds = []
        for round_ in range(2):
            inst = d.standby(inst.id)
            check(inst.state == pb.INSTANCE_STATE_STANDBY, "standby: %s" % inst)
            kinds.append(inst.last_snapshot_kind)
            paused_at = scan(console)[-1][0]
            size = os.path.getsize(console)
            start = line_start(console)
            time.sleep(0.2)
            check(os.path.getsize(console) == size, "the guest ran on in standby")
            inst = d.restore(inst.id)
            check(inst.state == pb.INSTANCE_STATE_RUNNING, "restore: %s" % inst)
            check(os.path.exists(vsock), "vsock socket missing after restore")
            got = wait_lines(console, start, 2)
            check(got[0][0] == paused_at + 1,
                  "round %d: counter after restore %d, paused at %d" %
                  (round_, got[0][0], paused_at))
            check(got[0][1] == marker, "marker changed: the guest rebooted (%s -> %s)"
                  % (marker, got[0][1]))
        check(kinds == [pb.SNAPSHOT_KIND_FULL, pb.SNAPSHOT_KIND_DIFF],
              "snapshot kinds %s, want FULL then DIFF" % kinds)
        d.delete(inst.id)
    print("ok: firecracker %s: FULL then DIFF standby, counter continued"
          % (version or fc.detail))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "real":
        binary = os.environ.get("EMBER_FIRECRACKER_BIN", "")
        tiny = os.path.abspath(sys.argv[2])
        if not binary or not os.access(binary, os.X_OK):
            print("SKIP: EMBER_FIRECRACKER_BIN does not name a Firecracker binary")
            return 77
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            print("SKIP: /dev/kvm is not usable")
            return 77
        if not os.path.isfile(tiny):
            print("SKIP: tiny guest %s not built (target guest_tiny)" % tiny)
            return 77
        run(os.path.abspath(binary), None, kernel=tiny)
        return 0
    fake = os.path.abspath(sys.argv[1])
    for version in ("1.1.0", "1.16.1"):
        run(fake, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
