#!/usr/bin/python3
"""test_vmm_cgroup: guests survive the end of emberd's container.

A container runtime stops a container by killing every process in its cgroup
(runc kill --all). With --vmm-cgroup, emberd moves each VMM into a cgroup of its
own, so the guest outlives the container and the next emberd re-adopts it.

The test puts a real emberd into a cgroup of its own (standing for its
container's), starts an instance (the Firecracker contract fake as the VMM: a
real process), kills every process of emberd's cgroup the way runc does, and
checks that the VMM is alive and that a new emberd re-adopts it (same pid,
Running, standby and restore work). The same without --vmm-cgroup is the
control: there the VMM dies with the container.

Needs root and writable cgroup hierarchies under /sys/fs/cgroup (SKIP 77 with
a message otherwise). Usage: test_vmm_cgroup.py <firecracker_fake.py>
"""
import os
import signal
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from emberd_fixture import Emberd, pb, skip, Checks  # noqa: E402

ROOT = "/sys/fs/cgroup"
CGROUP_MAGIC = (0x27E0EB, 0x63677270)
CHECKS = Checks()
check = CHECKS.check


def hierarchies():
    """Mount points of every cgroup hierarchy under ROOT (one on a v2 host)."""
    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype in ("cgroup", "cgroup2") and parts[4].startswith(ROOT):
                mounts.add(parts[4])
    return sorted(mounts)


def place(pid, name):
    for h in hierarchies():
        d = os.path.join(h, name)
        os.makedirs(d, exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):  # a fresh v1 cpuset is empty
            p = os.path.join(d, f)
            if os.path.exists(p) and open(p).read().strip() == "":
                with open(p, "w") as out:
                    out.write(open(os.path.join(h, f)).read())
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("%d\n" % pid)


def members(name):
    pids = set()
    for h in hierarchies():
        try:
            with open(os.path.join(h, name, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def kill_container(name):
    """What runc does when a container stops: SIGKILL all of its cgroup."""
    for _ in range(5):
        pids = members(name)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def remove(name):
    for h in hierarchies():
        d = os.path.join(h, name)
        for sub in sorted((os.path.join(dp) for dp, _, _ in os.walk(d)), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def scenario(fake, with_cgroup):
    tag = uuid.uuid4().hex[:8]
    agent_cg, vmm_cg = "ember-test-agent-" + tag, "ember-test-vmms-" + tag
    args = ["--vmm-cgroup", vmm_cg] if with_cgroup else []
    label = "with --vmm-cgroup" if with_cgroup else "without --vmm-cgroup (control)"
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1"}
    d = Emberd(args=args, env=env)
    vmm = 0
    try:
        place(d.proc.pid, agent_cg)  # emberd's "container"
        kernel = os.path.join(d.root, "kernel")
        with open(kernel, "wb") as f:
            f.write(os.urandom(4096))
        spec = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=kernel)
        inst = d.create("cg", spec, start=True)
        vmm = inst.vmm_pid
        check(vmm > 0 and alive(vmm), "%s: VMM pid %d runs" % (label, vmm))
        in_agent = vmm in members(agent_cg)
        check(in_agent != with_cgroup, "%s: VMM %s emberd's cgroup" %
              (label, "outside" if with_cgroup else "inside"))
        if with_cgroup:
            check(vmm in members(vmm_cg), "%s: VMM in %s" % (label, vmm_cg))
        kill_container(agent_cg)
        d.proc.wait(10)
        d.proc = None
        time.sleep(0.3)
        if not with_cgroup:
            check(not alive(vmm), "%s: the VMM died with the container" % label)
            return
        check(alive(vmm), "%s: the VMM outlived the container" % label)
        d.start()
        got = d.get("cg")
        check(got.state == pb.INSTANCE_STATE_RUNNING and got.vmm_pid == vmm,
              "%s: a new emberd re-adopted it (state %d, pid %d)" % (label, got.state,
                                                                    got.vmm_pid))
        got = d.standby("cg")
        check(got.state == pb.INSTANCE_STATE_STANDBY, "%s: standby after re-adoption" % label)
        got = d.restore("cg")
        check(got.state == pb.INSTANCE_STATE_RUNNING and got.vmm_pid in members(vmm_cg),
              "%s: restored VMM placed in %s too" % (label, vmm_cg))
        vmm = got.vmm_pid
    finally:
        for p in members(agent_cg) | members(vmm_cg) | ({vmm} if vmm else set()):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        d.close()
        time.sleep(0.2)
        remove(agent_cg)
        remove(vmm_cg)


def main():
    if len(sys.argv) < 2:
        skip("usage: test_vmm_cgroup.py <firecracker_fake.py>")
    fake = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("needs root to create cgroups")
    hs = hierarchies()
    if not hs or not all(os.access(h, os.W_OK) for h in hs):
        skip("no writable cgroup hierarchy under %s" % ROOT)
    scenario(fake, with_cgroup=False)
    scenario(fake, with_cgroup=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
