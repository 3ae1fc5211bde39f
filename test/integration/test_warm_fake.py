#!/usr/bin/python3
"""test_warm_fake: the warm VMM pool (docs/wake.md) with the VMM or
the Cloud Hypervisor driver, through a real emberd and gRPC, against the
contract fake of that VMM (test/fakes/*_fake.py; its guest is a fake kernel,
so this test always uses the fake).

Pool: {"<type>": {"size": 2}}. Checks: a Standby instance gets a warm VMM
(its API socket up, no VM loaded: not in the record); its restore runs in
that process (same pid) and the guest ticks on; ForkInstance with
standby=true makes two Standby clones, each gets a warm VMM and its first
restore (restore_frozen) runs in it; a warm VMM killed while it waits is
replaced; a Stop of a Standby instance ends its warm one; delete leaves no
process.

Usage: test_warm_fake.py <fake.py> firecracker|cloud-hypervisor
(EMBERD_BIN, EMBER_PYTHON_DIR). Exit 77 = SKIP."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from checks import Checks
    from emberd_fixture import Emberd, pb, pid_alive as alive, vmm_pids, wait_until
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

C = Checks()
check = C.check






HV = "firecracker"


def one_pid(d, id_, not_=None):
    """The instance's one warm VMM, once emberd logged it ready."""
    def f():
        p = vmm_pids(os.path.join(d.data_dir, "instances", id_))
        if len(p) != 1 or p[0] == not_:
            return None
        ready = "%s pid %d waits for" % (HV, p[0])
        return p[0] if any(ready in ln.get("msg", "") for ln in d.log_lines()) else None
    return wait_until(f)


def counter(console):
    try:
        with open(console, "rb") as f:
            lines = [ln for ln in f.read().splitlines() if b"tick" in ln or b"counter" in ln]
        return len(lines)
    except OSError:
        return 0


def main():
    global HV
    if len(sys.argv) != 3 or sys.argv[2] not in ("firecracker", "cloud-hypervisor"):
        print("usage: test_warm_fake.py <fake.py> firecracker|cloud-hypervisor")
        return 2
    HV = sys.argv[2]
    var = {"firecracker": "EMBER_FIRECRACKER_BIN", "cloud-hypervisor": "EMBER_CLOUD_HYPERVISOR_BIN"}
    env = {var[HV]: os.path.abspath(sys.argv[1]), "FAKE_FC_VERSION": "1.16.1",
           "FAKE_FC_TICK_MS": "50", "FAKE_CH_TICK_MS": "50"}
    with Emberd(env=env, config={"warm_pool": {HV: {"size": 2}}}) as d:
        vmm = {h.type: h for h in d.list_hypervisors()}.get(HV)
        if vmm is None or not vmm.available:
            print("SKIP: %s not available: %s" % (HV, vmm))
            return 77
        spec = d.make_spec(hypervisor=HV, memory_mib=16, kernel=d.fake_kernel(),
                           cmdline="console=ttyS0")
        a = d.create("fa", spec, start=True)
        adir = os.path.join(d.data_dir, "instances", a.id)
        d.standby(a.id)
        w = one_pid(d, a.id)
        check(w is not None and d.get(a.id).state == pb.INSTANCE_STATE_STANDBY
              and d.get(a.id).vmm_pid == 0,
              "a Standby instance gets a warm VMM, not in its record")
        r = d.restore(a.id)
        check(r.state == pb.INSTANCE_STATE_RUNNING and r.vmm_pid == w,
              "its restore runs in the warm VMM (same pid)")
        n0 = counter(a.console_log_path)
        check(wait_until(lambda: counter(a.console_log_path) > n0, 10), "the guest ticks on")

        res = d.fork(a.id, prefix="fa-clone", count=2, standby=True)
        clones = [c.id for c in res.instances]
        check(len(clones) == 2 and all(d.get(c).state == pb.INSTANCE_STATE_STANDBY for c in clones),
              "ForkInstance(standby=true) makes two Standby clones")
        warm = {c: one_pid(d, c) for c in clones}
        check(all(warm.values()), "each Standby clone gets a warm VMM (pool of 2)")
        for c in clones:
            r = d.restore(c)
            check(r.state == pb.INSTANCE_STATE_RUNNING and r.vmm_pid == warm[c],
                  "clone %s's first restore (restore_frozen) runs in its warm VMM" % c)

        # Killed while waiting: replaced.
        d.standby(clones[0])
        w1 = one_pid(d, clones[0])
        os.kill(w1, signal.SIGKILL)
        w2 = one_pid(d, clones[0], not_=w1)
        check(w2 is not None and not alive(w1), "a warm VMM killed while it waits is replaced")
        r = d.restore(clones[0])
        check(r.state == pb.INSTANCE_STATE_RUNNING and r.vmm_pid == w2, "and the restore runs in the new one")

        # Stop of a Standby instance ends its warm VMM.
        d.standby(clones[1])
        w3 = one_pid(d, clones[1])
        d.stop_instance(clones[1])
        check(w3 is not None and wait_until(lambda: not alive(w3), 10)
              and d.get(clones[1]).state == pb.INSTANCE_STATE_STOPPED,
              "Stop of a Standby instance ends its warm VMM")

        for i in clones + [a.id]:
            d.stop_instance(i, graceful_timeout_s=0)
            d.delete(i)
        check(vmm_pids(adir) == [] and all(vmm_pids(os.path.join(d.data_dir, "instances", c)) == []
                                           for c in clones),
              "no process is left after the deletes")
    return C.summary()


if __name__ == "__main__":
    sys.exit(main())
