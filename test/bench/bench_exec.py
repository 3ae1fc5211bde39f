#!/usr/bin/env python3
"""bench_exec: exec round trip of `true` (p50/p95) and a 100 MB copy each way,
through emberd (ExecInstance, CopyToInstance, CopyFromInstance) and through the
raw channel: the same boot kit, guest agent and QEMU virtio-serial port, driven
directly over the port's socket by a minimal client of the agent protocol (the
one test/guests/bootkit_test.py uses), no emberd. Prints figures and ratios;
asserts nothing about time (shared, noisy machines).

Usage: bench_exec.py BOOT_KIT_DIR MKBOOTCFG [--cycles N] [--mib M]
Env: EMBERD_BIN, EMBER_PYTHON_DIR. Skips (77) naming what is missing.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
sys.path.insert(0, os.path.join(HERE, "..", "image"))


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def raw_guest(kit, mkbootcfg, work, cycles, blob):
    """Boots the kit by hand with the agent port; returns figures."""
    import bootkit_test as bt
    k = bt.Kit(kit, mkbootcfg, work)
    k.build_rootfs()
    subprocess.run([bt.MKFS, "-q", "-F", "-d", k.tree, k.rootfs, "512M"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    cfg = k.config(["/bin/sh", "-c", "echo ready; while [ ! -e /tmp/stop ]; do sleep 0.1; "
                    "done"])
    vm = os.path.join(work, "raw")
    os.makedirs(vm)
    sock = os.path.join(vm, "agent.sock")
    args = [bt.QEMU, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-machine", "microvm,isa-serial=off,x-option-roms=off,memory-backend=ram",
            "-accel", "tcg", "-m", "256M", "-object", "memory-backend-ram,id=ram,size=256M",
            "-kernel", os.path.join(kit, "vmlinux"),
            "-initrd", os.path.join(kit, "initramfs.cpio.gz"),
            "-append", bt.guest_shell.linux_cmdline(),
            "-chardev", "file,id=con,path=%s" % os.path.join(vm, "console.log"),
            "-device", "isa-serial,chardev=con,index=0",
            "-drive", "file=%s,if=none,id=disk0,format=raw" % k.rootfs,
            "-device", "virtio-blk-device,drive=disk0",
            "-drive", "file=%s,if=none,id=disk1,format=raw,readonly=on" % cfg,
            "-device", "virtio-blk-device,drive=disk1",
            "-device", "virtio-serial-device",
            "-chardev", "socket,id=ga,path=%s,server=on,wait=off" % sock,
            "-device", "virtserialport,chardev=ga,name=org.ember.agent.0"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        end = time.monotonic() + 120
        while not os.path.exists(sock) and time.monotonic() < end:
            time.sleep(0.05)
        a = bt.Agent(sock)
        t0 = time.monotonic()
        a.hello(12345)
        out["ready_s"] = time.monotonic() - t0
        rt = []
        ch = 1
        for _ in range(cycles):
            t = time.monotonic()
            r = a.run(ch, ["true"])
            rt.append(time.monotonic() - t)
            assert r[0] == 0, r
            ch += 1
        out["true"] = rt
        t = time.monotonic()
        typ = a.put(ch, "/tmp/blob", blob)
        out["put_s"] = time.monotonic() - t
        assert typ == a.DONE, typ
        ch += 1
        t = time.monotonic()
        back = a.get(ch, "/tmp/blob")
        out["get_s"] = time.monotonic() - t
        assert back is not None and hashlib.sha256(back).digest() == hashlib.sha256(blob).digest()
        ch += 1
        a.run(ch, ["touch", "/tmp/stop"])
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out


def ember_guest(kit, work, cycles, blob):
    import grpc
    from emberd_fixture import Emberd, pb
    from ember.v1 import image_pb2 as ipb
    import exec_client as ec
    import test_exec_guest as teg
    from network_guest import import_image
    archive = teg.build_archive(os.path.join(work, "img"))
    d = Emberd(args=["--boot-kit-dir", kit], log_level="info")
    out = {}
    try:
        import_image(d, archive, ipb, name="exec:1")
        s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=256, image="exec:1")
        t0 = time.monotonic()
        d.create("b1", s, start=True, timeout=600)
        g = ec.wait_ready(d, "b1", timeout=300)
        out["ready_s"] = time.monotonic() - t0
        if not g.ready:
            raise RuntimeError("the guest agent never answered: %s" % g.message)
        rt = []
        for _ in range(cycles):
            t = time.monotonic()
            r = ec.exec_call(d, "b1", ["true"])
            rt.append(time.monotonic() - t)
            assert r.code == grpc.StatusCode.OK and r.exit.exit_code == 0, (r.code, r.details)
        out["true"] = rt
        t = time.monotonic()
        ec.copy_to(d, "b1", "/tmp/blob", blob, timeout=600)
        out["put_s"] = time.monotonic() - t
        t = time.monotonic()
        _, back, _ = ec.copy_from(d, "b1", "/tmp/blob", timeout=600)
        out["get_s"] = time.monotonic() - t
        assert hashlib.sha256(back).digest() == hashlib.sha256(blob).digest()
    finally:
        d.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kit")
    ap.add_argument("mkbootcfg")
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--mib", type=int, default=100)
    o = ap.parse_args()
    kit = os.path.abspath(o.kit)
    for t in ("qemu-system-x86_64", "umoci", "skopeo"):
        if shutil.which(t) is None:
            skip("%s not installed" % t)
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kit, f)):
            skip("boot kit %s/%s missing (target bootkit)" % (kit, f))
    if not os.path.exists("/bin/busybox"):
        skip("/bin/busybox missing (busybox-static)")
    if not os.path.exists(o.mkbootcfg):
        skip("mkbootcfg missing: " + o.mkbootcfg)
    work = tempfile.mkdtemp(prefix="ember-bench-exec-")
    blob = os.urandom(o.mib << 20)
    try:
        raw = raw_guest(kit, os.path.abspath(o.mkbootcfg), os.path.join(work, "r"), o.cycles,
                        blob)
        emb = ember_guest(kit, os.path.join(work, "e"), o.cycles, blob)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = len(blob) / 1e6

    def row(what, r, e, unit, fmt="%.2f"):
        print(("%-34s " + fmt + " %s   raw " + fmt + " %s   ratio %.2f")
              % (what, e, unit, r, unit, e / r if r else float("nan")))
    print("exec and copy through emberd vs the raw agent channel (QEMU TCG, %d cycles, "
          "%d MB):" % (o.cycles, o.mib))
    row("exec `true` round trip p50", pct(raw["true"], 50) * 1e3, pct(emb["true"], 50) * 1e3,
        "ms")
    row("exec `true` round trip p95", pct(raw["true"], 95) * 1e3, pct(emb["true"], 95) * 1e3,
        "ms")
    row("copy host -> guest", mb / raw["put_s"], mb / emb["put_s"], "MB/s")
    row("copy guest -> host", mb / raw["get_s"], mb / emb["get_s"], "MB/s")
    print("agent ready after create (emberd, boot included): %.1f s; raw HELLO_ACK after the "
          "port appeared: %.1f s" % (emb["ready_s"], raw["ready_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
