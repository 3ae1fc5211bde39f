#!/usr/bin/python3
"""test_cloud_hypervisor_api.py: a Cloud Hypervisor instance through emberd's
gRPC API, with the contract fake (test/fakes/cloud_hypervisor_fake.py) acting
as an old (v25: kernel/cmdline objects) and a recent (v53) release.

ListHypervisors (capabilities: snapshot, pause, graceful shutdown, no base
reuse), create+start, standby (FULL) twice with a restore after each: the
guest's counter continues, its boot marker stays, the console keeps its
history, no VMM runs in Standby; then stop (no snapshot left, no VMM) and
delete.

Usage: test_cloud_hypervisor_api.py <cloud_hypervisor_fake.py>   (EMBERD_BIN and
EMBER_PYTHON_DIR as for the other integration tests). Exit 77 = SKIP."""

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

LINE = re.compile(rb"tiny counter=(\d+) marker=([0-9a-f]+)")


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


def vmm_pids(root):
    """pids of fake cloud-hypervisor processes working under root."""
    return fx.procs_matching("cloud_hypervisor_fake", root)


def run(fake, version):
    pb = fx.pb
    env = {"EMBER_CLOUD_HYPERVISOR_BIN": fake, "FAKE_CH_VERSION": version}
    with Emberd(env=env) as d:
        hv = {h.type: h for h in d.list_hypervisors()}
        ch = hv.get("cloud-hypervisor")
        check(ch is not None and ch.available, "cloud-hypervisor not available: %s" % ch)
        check(version in ch.detail, "detail %r lacks the version %s" % (ch.detail, version))
        caps = ch.capabilities
        check(caps.snapshot and caps.pause and caps.graceful_shutdown and not caps.base_reuse,
              "capabilities %s" % caps)
        kernel = d.fake_kernel()
        spec = d.make_spec(hypervisor="cloud-hypervisor", memory_mib=16, kernel=kernel,
                           cmdline="console=ttyS0")
        spec.vsock.guest_cid = 7  # the fake checks the VsockConfig schema
        inst = d.create("ch-" + version.replace(".", "-"), spec, start=True)
        check(inst.state == pb.INSTANCE_STATE_RUNNING, "not running: %s" % inst)
        check(inst.spec.vsock.guest_cid == 7, "vsock not kept: %s" % inst.spec)
        console = inst.console_log_path
        marker = wait_lines(console, 0, 3)[0][1]
        for round_ in range(2):
            inst = d.standby(inst.id)
            check(inst.state == pb.INSTANCE_STATE_STANDBY, "standby: %s" % inst)
            check(inst.has_snapshot, "no snapshot after standby: %s" % inst)
            check(inst.last_snapshot_kind == pb.SNAPSHOT_KIND_FULL,
                  "round %d: snapshot kind %s, want FULL" % (round_, inst.last_snapshot_kind))
            check(vmm_pids(d.root) == [], "a VMM still runs in Standby")
            paused_at = scan(console)[-1][0]
            size = os.path.getsize(console)
            inst = d.restore(inst.id)
            check(inst.state == pb.INSTANCE_STATE_RUNNING, "restore: %s" % inst)
            got = wait_lines(console, size, 2)
            check(got[0][0] == paused_at + 1,
                  "round %d: counter after restore %d, paused at %d" %
                  (round_, got[0][0], paused_at))
            check(got[0][1] == marker, "marker changed: the guest rebooted")
            check(scan(console)[0][1] == marker, "the console lost its history")
        inst = d.stop_instance(inst.id)
        check(inst.state == pb.INSTANCE_STATE_STOPPED, "stop: %s" % inst)
        check(not inst.has_snapshot, "a snapshot survived Stop: %s" % inst)
        for _ in range(100):
            if not vmm_pids(d.root):
                break
            time.sleep(0.05)
        check(vmm_pids(d.root) == [], "a VMM still runs after Stop")
        d.delete(inst.id)
    print("ok: cloud-hypervisor %s: create/start, FULL standby and restore twice, stop"
          % version)


def main():
    fake = os.path.abspath(sys.argv[1])
    for version in ("25.0", "53.0"):
        run(fake, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
