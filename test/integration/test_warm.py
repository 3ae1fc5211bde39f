#!/usr/bin/python3
"""test_warm: the warm VMM pool (docs/wake.md) with a real emberd, the real gRPC
client and real QEMU (TCG), in a network and mount namespace of its own (the
metrics endpoint listens on its loopback).

Pool: {"qemu": {"size": 1, "shapes": [{"memory_mib": 128}]}}. Guests: A, the
Linux test guest (128 MiB, fits); B, the tiny guest with 64 MiB (does not fit);
C, the tiny guest with 128 MiB (fits). Checks:
  - a Standby instance of a shape not in the pool gets no warm VMM;
  - A's standby gets one: a QEMU waiting for the load (-incoming), not in A's
    record (vmm_pid 0, still Standby); the pool holds at most its size (C's
    standby then gets none);
  - A's restore runs in that very process (same pid), the guest's files and
    kernel are there; the pool refills with C;
  - a pooled VMM gives the guest what a fresh one would: A's next restore is
    a fresh QEMU (the pool is full) and its command line is byte for byte the
    warm one's; what the guest sees of its machine (CPUs, memory, devices,
    kernel command line) is the same after both;
  - hostile VMMs: a warm QEMU that hangs (SIGSTOP) is not waited for beyond
    the QMP timeout: the restore starts a fresh QEMU and succeeds (fallback),
    the hung one is killed and reaped; one that dies while waiting is reaped
    and replaced (lost, prepared again);
  - delete of an instance with a warm VMM ends it;
  - a clone made Standby by ForkInstance gets a warm QEMU (the frozen RAM
    file mapped privately) and its first restore runs in it;
  - emberd killed with SIGKILL: after the restart the leftover warm QEMU is
    gone, A is Standby and restores with its files; a graceful stop ends the
    warm VMM; restarted without a pool (a config change), A restores from a
    fresh QEMU;
  - metrics: ember_warm_vmms, ember_warm_pool_size, ember_warm_events_total.

Needs root (namespaces), EMBER_TEST_GUEST_DIR, EMBER_GUEST_TINY, EMBERD_BIN,
EMBER_PYTHON_DIR; skips (77) naming what is missing.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

INSIDE = "EMBER_WARM_TEST_INSIDE"


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def enter_namespaces():
    if os.environ.get(INSIDE) == "1":
        return
    if os.geteuid() != 0:
        skip("needs root to make its own network namespace")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            skip(tool + " not installed (util-linux, iproute2)")
    env = dict(os.environ, **{INSIDE: "1"})
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
    sys.exit(r.returncode)


enter_namespaces()

from checks import Checks  # noqa: E402
from emberd_fixture import Emberd, pb, linux_guest_files, pid_alive as alive, vmm_pids, wait_until  # noqa: E402
from guest_shell import GuestShell, linux_cmdline, wait_for_console  # noqa: E402

C = Checks()
check = C.check

POOL = {"qemu": {"size": 1, "shapes": [{"memory_mib": 128}]}}
PROBE = ("nproc; grep MemTotal /proc/meminfo; ls /sys/bus/virtio/devices; "
         "cat /sys/bus/virtio/devices/*/device; cat /proc/cmdline; cat /sys/class/net/*/address 2>/dev/null")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % (k, v) for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r'^(\w+)\{([^}]*)\} (\S+)$', line)
        if m and m.group(1) == name:
            got = ",".join(sorted(m.group(2).split(",")))
            if got == want:
                return float(m.group(3))
    return None


def events(port):
    t = metrics(port)
    return {e: metric(t, "ember_warm_events_total", hypervisor="qemu", event=e)
            for e in ("prepared", "used", "fallback", "discarded", "lost", "failed")}


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()






PORT = [0]


def warm_pid(inst_dir, timeout=60):
    """The one live VMM of the instance folder that waits for a load, once
    emberd counts it as warm (the pool here holds one at most)."""
    def one():
        p = vmm_pids(inst_dir)
        if len(p) != 1 or b"-incoming" not in cmdline(p[0]):
            return None
        return p[0] if metric(metrics(PORT[0]), "ember_warm_vmms", hypervisor="qemu") == 1 else None
    return wait_until(one, timeout)


class Inst:
    def __init__(self, d, inst):
        self.d = d
        self.id = inst.id
        self.dir = os.path.join(d.data_dir, "instances", inst.id)
        self.console = inst.console_log_path

    def run(self, cmd):
        with GuestShell(os.path.join(self.dir, "serial1.sock"), connect_timeout=60) as sh:
            return sh.run(cmd, timeout=60, retry=True)


def tiny_counter(console):
    with open(console, "rb") as f:
        data = f.read()
    m = re.findall(rb"tiny counter=(\d+) marker=([0-9a-f]{16})", data)
    return (int(m[-1][0]), m[-1][1]) if m else (0, b"")


def emberd(port, pool=True, root=None):
    cfg = {"drivers": {"qemu": {"accel": "tcg", "command_timeout_ms": 3000}}}
    if pool:
        cfg["warm_pool"] = POOL
    return Emberd(config=cfg, args=["--metrics-listen", "127.0.0.1:%d" % port], root=root,
                  start=False)


def main():
    kernel, initrd = linux_guest_files()
    tiny = os.environ.get("EMBER_GUEST_TINY", "")
    if not os.path.isfile(tiny):
        skip("tiny test guest not built (EMBER_GUEST_TINY=%r; build target guest_tiny)" % tiny)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port = free_port()
    PORT[0] = port
    d = emberd(port)
    d.start()
    try:
        run(d, port, kernel, initrd, tiny)
    finally:
        d.close()
    return C.summary()


def bad_config(d):
    """A bad warm_pool stops emberd at start, naming the key."""
    cfg = os.path.join(d.root, "bad.json")
    with open(cfg, "w") as f:
        f.write('{"warm_pool": {"qemu": {"size": -1}}}')
    r = subprocess.run([d.binary, "--data-dir", os.path.join(d.root, "bad"), "--listen",
                        "unix:" + os.path.join(d.root, "bad.sock"), "--config", cfg],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "warm_pool.qemu.size" in r.stdout + r.stderr,
          "a bad warm_pool (size -1) stops emberd at start, naming warm_pool.qemu.size")


def run(d, port, kernel, initrd, tiny):
    bad_config(d)
    m = metrics(port)
    check(metric(m, "ember_warm_pool_size", hypervisor="qemu") == 1
          and metric(m, "ember_warm_vmms", hypervisor="qemu") == 0,
          "metrics: pool size 1, no warm VMM yet")

    spec_a = d.make_spec(vcpus=1, memory_mib=128, kernel=kernel, initrd=initrd, cmdline=linux_cmdline())
    a = Inst(d, d.create("warm-a", spec_a, start=True, timeout=180))
    b = Inst(d, d.create("warm-b", d.make_spec(memory_mib=64, kernel=tiny, cmdline=""), start=True))
    c = Inst(d, d.create("warm-c", d.make_spec(memory_mib=128, kernel=tiny, cmdline=""), start=True))
    wait_for_console(a.console, "EMBER-GUEST-READY", timeout=180)
    marker = os.urandom(8).hex()
    a.run("echo %s > /tmp/warm-marker" % marker)
    boot_id = a.run("cat /proc/sys/kernel/random/boot_id").strip()
    probe_boot = a.run(PROBE)
    check(wait_until(lambda: tiny_counter(b.console)[0] > 0 and tiny_counter(c.console)[0] > 0, 60),
          "tiny guests B and C run")

    # A shape the pool does not hold gets nothing.
    d.standby(b.id)
    time.sleep(1.5)
    check(vmm_pids(b.dir) == [] and metric(metrics(port), "ember_warm_vmms", hypervisor="qemu") == 0,
          "B (64 MiB, not a pool shape) in Standby gets no warm VMM")

    # A's standby: a warm QEMU waits for its load.
    d.standby(a.id)
    wa = warm_pid(a.dir)
    check(wa is not None, "A's standby is followed by a warm QEMU waiting for the load (-incoming)")
    va = d.get(a.id)
    check(va.state == pb.INSTANCE_STATE_STANDBY and va.vmm_pid == 0,
          "A stays Standby; the warm VMM is not in its record (vmm_pid 0)")
    warm_cmd = cmdline(wa) if wa else b""
    check(metric(metrics(port), "ember_warm_vmms", hypervisor="qemu") == 1, "metrics: 1 warm VMM")

    d.standby(c.id)
    time.sleep(1.5)
    check(vmm_pids(c.dir) == [], "the pool is full (size 1): C's standby gets no warm VMM")

    # The restore runs in the warm process.
    t0 = time.time()
    d.restore(a.id)
    t_warm = time.time() - t0
    va = d.get(a.id)
    check(va.state == pb.INSTANCE_STATE_RUNNING and va.vmm_pid == wa and alive(wa),
          "A's restore ran in the warm QEMU (same pid %s)" % wa)
    check(a.run("cat /tmp/warm-marker").strip() == marker, "A's file is there after the warm restore")
    check(a.run("cat /proc/sys/kernel/random/boot_id").strip() == boot_id, "A's kernel runs on (same boot id)")
    probe_warm = a.run(PROBE)
    wc = warm_pid(c.dir)
    check(wc is not None, "the pool refills: C gets the warm QEMU")
    ev = events(port)
    check(ev["used"] == 1 and ev["prepared"] == 2 and ev["failed"] == 0,
          "metrics: prepared 2, used 1 (%s)" % ev)

    # A fresh QEMU for A (the pool is full with C) is the same command.
    d.standby(a.id)
    time.sleep(1.0)
    check(vmm_pids(a.dir) == [], "A in Standby with the pool full: no VMM")
    t0 = time.time()
    d.restore(a.id)
    t_cold = time.time() - t0
    va = d.get(a.id)
    cold_cmd = cmdline(va.vmm_pid)
    check(cold_cmd == warm_cmd, "the warm QEMU's command line is the fresh one's, byte for byte")
    probe_cold = a.run(PROBE)
    check(probe_cold == probe_warm == probe_boot,
          "the guest sees the same machine after boot, warm and fresh restores")
    check(a.run("cat /tmp/warm-marker").strip() == marker, "A's file is there after the fresh restore")
    print("restore-to-running (gRPC call): warm %.0f ms, fresh %.0f ms" % (t_warm * 1000, t_cold * 1000))

    # Hostile: C's warm QEMU hangs.
    before = tiny_counter(c.console)
    os.kill(wc, signal.SIGSTOP)
    d.restore(c.id, timeout=120)
    vc = d.get(c.id)
    check(vc.state == pb.INSTANCE_STATE_RUNNING and vc.vmm_pid not in (0, wc),
          "a hung warm QEMU: the restore runs in a fresh one")
    check(wait_until(lambda: not alive(wc), 10), "the hung warm QEMU is killed and reaped")
    check(wait_until(lambda: tiny_counter(c.console)[0] > before[0], 30)
          and tiny_counter(c.console)[1] == before[1],
          "C's guest runs on from its snapshot (counter goes up, same marker)")
    ev = events(port)
    check(ev["fallback"] == 1, "metrics: fallback 1 (%s)" % ev)

    # Hostile: the warm QEMU dies while it waits.
    d.standby(c.id)
    wc2 = warm_pid(c.dir)
    check(wc2 is not None, "C in Standby again gets a warm QEMU")
    os.kill(wc2, signal.SIGKILL)
    wc3 = wait_until(lambda: (lambda p: p if p and p != wc2 else None)(warm_pid(c.dir, 1)), 30)
    check(wc3 is not None and not alive(wc2), "a warm QEMU that died is reaped and replaced")
    ev = events(port)
    check(ev["lost"] == 1, "metrics: lost 1 (%s)" % ev)

    # Delete ends it.
    d.delete(c.id)
    check(wait_until(lambda: not alive(wc3), 10) and not os.path.exists(c.dir),
          "delete of an instance with a warm VMM ends it")

    # A clone made Standby by ForkInstance: its first restore (restore_frozen,
    # a private map of the frozen RAM file) runs in a warm QEMU too.
    res = d.fork(a.id, names=["warm-clone"], standby=True)
    k = Inst(d, res.instances[0])
    wk = warm_pid(k.dir)
    check(wk is not None and b"share=off" in cmdline(wk),
          "a Standby clone gets a warm QEMU mapping the frozen RAM privately (share=off)")
    d.restore(k.id)
    check(d.get(k.id).vmm_pid == wk and k.run("cat /tmp/warm-marker").strip() == marker,
          "the clone's first restore runs in it, with the source's file")
    d.stop_instance(k.id, graceful_timeout_s=0)
    d.delete(k.id)

    # emberd killed: the leftover warm QEMU goes at the restart.
    d.standby(a.id)
    wa2 = warm_pid(a.dir)
    check(wa2 is not None, "A in Standby (pool free again) gets a warm QEMU")
    d.kill()
    d.start()
    check(wait_until(lambda: not alive(wa2), 20), "after SIGKILL of emberd and a restart the leftover warm QEMU is gone")
    check(d.get(a.id).state == pb.INSTANCE_STATE_STANDBY, "A is still Standby after the restart")
    wa3 = warm_pid(a.dir)
    check(wa3 is not None and wa3 != wa2, "the restarted emberd prepares a new warm QEMU")
    d.restore(a.id)
    check(d.get(a.id).vmm_pid == wa3 and a.run("cat /tmp/warm-marker").strip() == marker,
          "A restores in it, with its file")

    # Graceful stop ends it; a restart without a pool restores fresh.
    d.standby(a.id)
    wa4 = warm_pid(a.dir)
    check(wa4 is not None, "A in Standby gets a warm QEMU")
    d.stop()
    check(not alive(wa4), "a graceful stop of emberd ends the warm QEMU")
    d2 = emberd(port, pool=False, root=d.root)
    d2.start()
    try:
        time.sleep(1.0)
        check(vmm_pids(a.dir) == [] and metric(metrics(port), "ember_warm_pool_size", hypervisor="qemu") == 0,
              "restarted without a pool: no warm VMM, pool size 0")
        d2.restore(a.id)
        check(d2.get(a.id).state == pb.INSTANCE_STATE_RUNNING
              and a.run("cat /tmp/warm-marker").strip() == marker,
              "A restores from a fresh QEMU with its file")
        for i in (a, b):
            d2.delete(i.id)
    finally:
        d2.close()


if __name__ == "__main__":
    sys.exit(main())
