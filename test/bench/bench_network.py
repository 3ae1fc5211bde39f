#!/usr/bin/python3
"""bench_network: what managed networking costs (issue 12), printed, never asserted.

Runs, like test_network.py, inside a network + mount namespace of its own
(unshare; root), so the host's network is never touched.

1. Create: N CreateInstance calls (Firecracker contract fake, so the VMM costs
   nothing) without a network, on a network, and on a network with a
   namespace; p50/p95 and the time the network adds. Side by side: the same
   host work done by the tools by hand in the same run (ip tuntap add, ip link
   set master/up, one nft DNAT rule added), per instance.
2. Restore (QEMU, boot kit image guest): RestoreInstance without and with a
   network; the time the network adds.
3. TCP throughput host -> guest: MiB/s of a 64 MiB stream into `nc -l` in the
   guest, through emberd's TAP on its bridge, vs the same guest on a TAP and
   bridge the script made by hand (tap_device), in the same run.

usage: bench_network.py FIRECRACKER_FAKE [BOOTKIT_DIR] [--cycles N]
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IT = os.path.join(HERE, "..", "integration")
sys.path.insert(0, IT)
INSIDE = "EMBER_NET_BENCH_INSIDE"


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


if os.environ.get(INSIDE) != "1":
    if os.geteuid() != 0:
        skip("needs root to make its own network namespaces")
    for tool in ("unshare", "ip", "nft"):
        if shutil.which(tool) is None:
            skip(tool + " not installed")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                       env=dict(os.environ, **{INSIDE: "1"}))
    sys.exit(r.returncode)

from emberd_fixture import Emberd, pb  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def ms(v):
    return "p50 %6.1f ms  p95 %6.1f ms" % (pct(v, 50) * 1000, pct(v, 95) * 1000)


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def bench_create(fake, nsdir, n):
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1"}
    cfg = {"netns_dir": nsdir}
    with Emberd(env=env, config=cfg, log_level="warn") as d:
        k = d.fake_kernel()
        res = {}
        for mode in ("none", "network", "netns"):
            times = []
            for i in range(n):
                s = d.make_spec(hypervisor="firecracker", vcpus=1, memory_mib=64, kernel=k)
                if mode != "none":
                    s.network_interfaces.add(network="default").port_forwards.add(
                        protocol=pb.PROTOCOL_TCP, host_port=20000 + i, guest_port=80)
                    s.network_namespace = mode == "netns"
                t0 = time.monotonic()
                d.create("%s-%d" % (mode, i), s)
                times.append(time.monotonic() - t0)
            res[mode] = times
            for i in range(n):
                d.delete("%s-%d" % (mode, i))
    # the tools doing the same host work by hand, per instance
    sh("ip", "link", "add", "benchbr", "type", "bridge")
    sh("ip", "addr", "add", "10.90.0.1/16", "dev", "benchbr")
    sh("ip", "link", "set", "benchbr", "up")
    sh("nft", "add", "table", "inet", "bench")
    sh("nft", "add", "chain", "inet", "bench", "pre", "{ type nat hook prerouting priority "
       "dstnat; }")
    raw = []
    for i in range(n):
        t0 = time.monotonic()
        sh("ip", "tuntap", "add", "dev", "bt%d" % i, "mode", "tap", "vnet_hdr")
        sh("ip", "link", "set", "bt%d" % i, "master", "benchbr", "up")
        sh("nft", "add", "rule", "inet", "bench", "pre", "tcp", "dport", str(20000 + i), "dnat",
           "ip", "to", "10.90.0.%d:80" % (i + 2))
        raw.append(time.monotonic() - t0)
    for i in range(n):
        sh("ip", "link", "del", "bt%d" % i)
    sh("ip", "link", "del", "benchbr")
    sh("nft", "delete", "table", "inet", "bench")
    base = pct(res["none"], 50)
    print("== CreateInstance, Firecracker contract fake, %d each" % n)
    print("  no network          %s" % ms(res["none"]))
    print("  network + forward   %s   (+%.1f ms)" % (ms(res["network"]),
                                                     (pct(res["network"], 50) - base) * 1000))
    print("  + own namespace     %s   (+%.1f ms)" % (ms(res["netns"]),
                                                     (pct(res["netns"], 50) - base) * 1000))
    print("  by hand: ip tuntap + ip link + nft rule  %s" % ms(raw))
    add = pct(res["network"], 50) - base
    print("  ratio: emberd's added network time / the tools by hand = %.2f"
          % (add / pct(raw, 50) if pct(raw, 50) > 0 else float("nan")))


SINK = r"""
if [ -n "$RAWIP" ]; then ip addr add "$RAWIP" dev eth0; ip link set eth0 up; fi
echo SINK-READY
while true; do nc -l -p 5001 > /dev/null; echo SINK-DONE; done
"""


def wait_console(path, needle, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if needle.encode() in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.3)
    return False


def send(addr, mib):
    buf = b"\0" * (1 << 20)
    for _ in range(50):
        try:
            c = socket.create_connection((addr, 5001), timeout=10)
            break
        except OSError:
            time.sleep(0.2)
    else:
        return float("nan")
    t0 = time.monotonic()
    for _ in range(mib):
        c.sendall(buf)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
    return mib / (time.monotonic() - t0)


def bench_guest(kit, nsdir, work, cycles):
    import network_guest
    from ember.v1 import image_pb2 as ipb
    for t in ("qemu-system-x86_64", "umoci", "skopeo"):
        if shutil.which(t) is None:
            print("SKIP guest part: %s not installed" % t)
            return
    archive = network_guest.build_archive(os.path.join(work, "img"), SINK, "sink")
    cfg = {"netns_dir": nsdir}
    with Emberd(config=cfg, args=["--boot-kit-dir", kit], log_level="warn") as d:
        network_guest.import_image(d, archive, ipb, "sink:1")
        sh("ip", "link", "add", "rawbr", "type", "bridge")
        sh("ip", "addr", "add", "10.91.0.1/24", "dev", "rawbr")
        sh("ip", "link", "set", "rawbr", "up")
        sh("ip", "tuntap", "add", "dev", "rawtap", "mode", "tap", "vnet_hdr")
        sh("ip", "link", "set", "rawtap", "master", "rawbr", "up")

        def spec(iface, env=()):
            s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=192, image="sink:1")
            s.image_overrides.CopyFrom(pb.ImageOverrides(env=list(env)))
            if iface is not None:
                s.network_interfaces.append(iface)
            return s
        plain = d.create("plain", spec(None), start=True, timeout=600)
        managed = d.create("managed", spec(pb.NetworkInterface(network="default")), start=True,
                           timeout=600)
        raw = d.create("raw", spec(pb.NetworkInterface(tap_device="rawtap",
                                                       mac_address="02:00:00:00:00:99"),
                                   ["RAWIP=10.91.0.2/24"]), start=True, timeout=600)
        for i in (plain, managed, raw):
            wait_console(i.console_log_path, "SINK-READY")
        rest = {"plain": [], "managed": []}
        for _ in range(cycles):
            for name in ("plain", "managed"):
                d.standby(name)
                t0 = time.monotonic()
                d.restore(name)
                rest[name].append(time.monotonic() - t0)
        print("== RestoreInstance, QEMU TCG, boot kit guest 192 MiB, %d each" % cycles)
        print("  no network   %s" % ms(rest["plain"]))
        print("  network      %s   (+%.1f ms)" % (ms(rest["managed"]), (
            pct(rest["managed"], 50) - pct(rest["plain"], 50)) * 1000))
        mib = 64
        t_managed = [send("10.77.0.2", mib) for _ in range(2)]
        t_raw = [send("10.91.0.2", mib) for _ in range(2)]
        print("== TCP host -> guest, %d MiB into nc -l (QEMU TCG: the guest CPU bounds it)" % mib)
        print("  emberd's TAP on its bridge     %.1f MiB/s" % max(t_managed))
        print("  TAP and bridge made by hand    %.1f MiB/s" % max(t_raw))
        print("  ratio managed / by hand = %.2f" % (max(t_managed) / max(t_raw)))
        for n in ("plain", "managed", "raw"):
            d.delete(n)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    cycles = 5
    if "--cycles" in sys.argv:
        cycles = int(sys.argv[sys.argv.index("--cycles") + 1])
        args = [a for a in args if a != str(cycles)]
    if not args or not os.access(args[0], os.X_OK):
        skip("usage: bench_network.py FIRECRACKER_FAKE [BOOTKIT_DIR] [--cycles N]")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp(prefix="ember-netbench-")
    nsdir = os.path.join(work, "netns")
    os.makedirs(nsdir)
    try:
        bench_create(os.path.abspath(args[0]), nsdir, max(cycles * 4, 8))
        if len(args) > 1:
            bench_guest(os.path.abspath(args[1]), nsdir, work, cycles)
    finally:
        subprocess.run(["umount", "-R", nsdir], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
