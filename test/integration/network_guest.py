"""network_guest: part 2 of test_network.py, real QEMU guests on managed networks.

The image is busybox-static (built with umoci, imported with ImportImage); its
entrypoint serves HTTP on port 8080 (busybox httpd), pings its gateway and
PEER, and fetches from the outside namespace's echo server every two seconds,
printing what it sees on the console, which the test reads. The boot kit's
init configures eth0 from the boot config emberd wrote (no DHCP).
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "image"))

from emberd_fixture import Emberd, pb  # noqa: E402

BUSYBOX = "/bin/busybox"
IMG = "/ember.v1.ImageService/"
ECHO_PORT = 9000
SCRIPT = r"""
echo "NET-START $(cat /proc/uptime)"
ip -4 addr show dev eth0 | sed -n 's/^ *inet \([0-9./]*\).*/ADDR \1/p'
ip -4 route | sed -n 's/^default via \([0-9.]*\).*/ROUTE default \1/p'
mkdir -p /tmp/www && echo "HELLO-FROM-$NAME" > /tmp/www/index.html
httpd -p 8080 -h /tmp/www
i=0
while true; do
  if ping -c 1 -W 2 "$GW" >/dev/null 2>&1; then echo "GW-PING-OK $i"; else echo "GW-PING-FAIL $i"; fi
  if [ -n "$PEER" ]; then
    if ping -c 1 -W 2 "$PEER" >/dev/null 2>&1; then echo "PEER-PING-OK $i"; else echo "PEER-PING-FAIL $i"; fi
  fi
  r=$(timeout 5 wget -q -O - "http://$OUTSIDE/" 2>/dev/null)
  echo "OUT $i ${r:-none}"
  i=$((i+1))
  sleep 2
done
"""


def build_archive(work, script=SCRIPT, name="net"):
    """A docker-archive of busybox-static with the applets the script uses."""
    from registry_util import sh
    lay = os.path.join(work, "oci")
    umoci = ["umoci", "--log", "error"]
    sh(*umoci, "init", "--layout", lay)
    sh(*umoci, "new", "--image", lay + ":net")
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "bin"))
    shutil.copy(BUSYBOX, os.path.join(tree, "bin", "busybox"))
    for a in ("sh", "ip", "ping", "httpd", "wget", "sleep", "echo", "cat", "sed", "mkdir", "nc", "timeout"):
        os.symlink("busybox", os.path.join(tree, "bin", a))
    sh(*umoci, "insert", "--image", lay + ":net", os.path.join(tree, "bin"), "/bin")
    sh(*umoci, "config", "--image", lay + ":net", "--config.entrypoint", "/bin/sh",
       "--config.entrypoint", "-c", "--config.entrypoint", script, "--config.env",
       "PATH=/bin", "--config.workingdir", "/")
    archive = os.path.join(work, name + ".tar")
    sh("skopeo", "--insecure-policy", "copy", "-q", "oci:%s:net" % lay,
       "docker-archive:%s:ember/%s:1" % (archive, name))
    return archive


def import_image(d, archive, ipb, name="net:1"):
    def chunks():
        yield ipb.ImportImageRequest(metadata=ipb.ImportImageMetadata(
            name=name, format=ipb.IMPORT_FORMAT_DOCKER_ARCHIVE))
        with open(archive, "rb") as f:
            while True:
                b = f.read(256 << 10)
                if not b:
                    break
                yield ipb.ImportImageRequest(chunk=b)
    imp = d.channel.stream_unary(IMG + "ImportImage",
                                 request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=ipb.Image.FromString)
    return imp(chunks(), timeout=300)


def console(path, after=0):
    try:
        with open(path, "rb") as f:
            f.seek(after)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for(path, pred, timeout=240, after=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = console(path, after)
        if pred(text):
            return text
        time.sleep(0.3)
    return None


def http_get(host, port, timeout=5, ns=None):
    code = ("import socket,sys\n"
            "c=socket.create_connection(('%s', %d), timeout=%d)\n"
            "c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
            "d=b''\n"
            "while True:\n"
            "    b=c.recv(65536)\n"
            "    if not b: break\n"
            "    d+=b\n"
            "sys.stdout.write(d.decode(errors='replace'))\n" % (host, port, timeout))
    cmd = [sys.executable, "-c", code]
    if ns is not None:
        cmd = ["nsenter", "--net=" + ns] + cmd
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout + 10)
    return r.stdout if r.returncode == 0 else "error: " + r.stderr.strip()[-200:]


def run(checks, kit, nsdir, outside, work, networks, net_iface):
    check = checks.check
    for t in ("qemu-system-x86_64", "umoci", "skopeo"):
        if shutil.which(t) is None:
            print("SKIP part 2: %s not installed" % t)
            return
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kit, f)):
            print("SKIP part 2: boot kit %s/%s missing (target bootkit)" % (kit, f))
            return
    if not os.path.exists(BUSYBOX):
        print("SKIP part 2: %s missing (busybox-static)" % BUSYBOX)
        return
    from ember.v1 import image_pb2 as ipb
    archive = build_archive(os.path.join(work, "img"))
    outside.serve_source_echo(ECHO_PORT)
    cfg = {"networks": networks, "netns_dir": nsdir}
    d = Emberd(config=cfg, args=["--boot-kit-dir", kit, "--vcpu-overcommit", "16"],
               log_level="info")
    try:
        import_image(d, archive, ipb)

        def create(name, iface, netns=False, gw="10.77.0.1", peer=""):
            s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=192, image="net:1")
            env = ["NAME=" + name, "GW=" + gw, "OUTSIDE=%s:%d" % ("198.51.100.2", ECHO_PORT)]
            if peer:
                env.append("PEER=" + peer)
            s.image_overrides.CopyFrom(pb.ImageOverrides(env=env))
            s.network_interfaces.append(iface)
            s.network_namespace = netns
            t0 = time.monotonic()
            inst = d.create(name, s, start=True, timeout=600)
            return inst, time.monotonic() - t0

        a, ta = create("ga", net_iface(forwards=[("tcp", 18080, 8080)]))
        b, _ = create("gb", net_iface(network="iso"), gw="10.79.0.1", peer="10.79.0.3")
        c, _ = create("gc", net_iface(network="iso"), gw="10.79.0.1", peer="10.79.0.2")
        n, _ = create("gn", net_iface(forwards=[("tcp", 18081, 8080)]), netns=True)
        print("CreateInstance(start) with a network, image guest: %.2f s" % ta)

        ca = wait_for(a.console_log_path, lambda t: "OUT 1 " in t)
        check(ca is not None and "ADDR 10.77.0.2/16" in ca and "ROUTE default 10.77.0.1" in ca,
              "ga: the init configured eth0 10.77.0.2/16 via 10.77.0.1:\n%s"
              % (ca or console(a.console_log_path))[-1500:])
        check(ca is not None and "ember-init: net" in ca,
              "ga: the init logged the interface it configured")
        check(ca is not None and "GW-PING-OK" in ca, "ga: guest -> gateway ping")
        check(ca is not None and "SEEN 198.51.100.1" in ca,
              "ga: guest -> outside through NAT: the outside sees the host's address: %s"
              % [l for l in (ca or "").splitlines() if l.startswith("OUT")][:3])
        r = subprocess.run(["ping", "-c", "1", "-W", "3", "10.77.0.2"], stdout=subprocess.DEVNULL)
        check(r.returncode == 0, "host -> guest ping 10.77.0.2")
        body = http_get("198.51.100.1", 18080)
        check("HELLO-FROM-ga" in body, "host -> guest TCP through the forward (host's own "
              "address :18080): %r" % body[-200:])
        body = http_get("198.51.100.1", 18080, ns=outside.ns)
        check("HELLO-FROM-ga" in body, "outside -> host:18080 -> guest: %r" % body[-200:])

        cb = wait_for(b.console_log_path, lambda t: "PEER-PING-FAIL 1" in t or
                      "PEER-PING-OK 1" in t)
        cc = wait_for(c.console_log_path, lambda t: "GW-PING-OK" in t and
                      ("PEER-PING-FAIL 1" in t or "PEER-PING-OK 1" in t))
        check(cb is not None and "ADDR 10.79.0.2/24" in cb and "GW-PING-OK" in cb
              and "PEER-PING-OK" not in cb,
              "gb on the isolated network reaches its gateway, not gc: %s"
              % [l for l in (cb or "").splitlines() if "PING" in l][:4])
        check(cc is not None and "PEER-PING-OK" not in cc, "gc cannot reach gb either")

        cn = wait_for(n.console_log_path, lambda t: "OUT 1 " in t)
        nn = d.get("gn").network
        check(cn is not None and "ADDR 10.77.0.3/16" in cn and "GW-PING-OK" in cn,
              "gn (own namespace) has its address and reaches its gateway")
        body = http_get(nn.host_address, 8080)
        check("HELLO-FROM-gn" in body, "host reaches gn at its veth address %s: %r"
              % (nn.host_address, body[-200:]))
        body = http_get("198.51.100.1", 18081, ns=outside.ns)
        check("HELLO-FROM-gn" in body, "outside -> host:18081 -> gn in its namespace: %r"
              % body[-200:])
        check(cn is not None and "SEEN 198.51.100.1" in cn, "gn -> outside through both NATs")

        # standby / restore keeps the address and the forwards
        before = d.get("ga").network
        d.standby("ga", timeout=300)
        size = os.path.getsize(a.console_log_path)
        t0 = time.monotonic()
        d.restore("ga", timeout=300)
        tr = time.monotonic() - t0
        after = d.get("ga").network
        check(after == before, "standby/restore keeps Instance.network")
        body = http_get("198.51.100.1", 18080)
        check("HELLO-FROM-ga" in body, "the forward works after restore: %r" % body[-200:])
        more = wait_for(a.console_log_path, lambda t: "SEEN 198.51.100.1" in t, after=size,
                        timeout=120)
        check(more is not None, "the restored guest reaches the outside again")
        print("RestoreInstance with a network (QEMU TCG): %.2f s" % tr)
        for name in ("ga", "gb", "gc", "gn"):
            d.delete(name)
    finally:
        d.close()
