#!/usr/bin/python3
"""test_network: networks emberd manages (issue 12), through the gRPC API alone.

Everything runs in a network namespace (and a mount namespace) this test makes
for itself with unshare: emberd's "host" is that namespace, "outside" is a
second one joined to it by a veth pair (198.51.100.0/24, a documentation
range), and no packet leaves them. The host's own network is never touched.

Part 1, the Firecracker contract fake as the VMM (no guest; fast):
  - ListNetworks shows the configured networks and the addresses in use;
  - Create on a network: the address (lowest free), MAC, TAP on the bridge
    (which carries the gateway and ember's alias), the nft DNAT of a port
    forward, all shown in Instance.network; with network_namespace: the
    namespace file, the TAP inside it with the gateway, the veth pair, the
    VMM process runs in that namespace;
  - hostile requests: a host port already forwarded, an address taken, an
    unknown network, a TAP device with a network, two networks, a namespace
    without a network, a bad port, a name taken: the clear gRPC error, and the
    host objects are exactly what they were;
  - a fault after the host objects were made: a failed create removes them;
    an emberd that dies there leaves orphans that the next start removes;
  - SIGKILL of emberd and a restart: exactly the same objects; objects
    removed or planted by hand while emberd is down: put back / removed;
  - DeleteInstance of everything: nothing of ember's is left.
Part 2, real QEMU guests booted from an image with the boot kit (the init
configures eth0 from the boot config), when QEMU, the kit and the image tools
are here:
  - the guest has its address; guest -> gateway ping; host -> guest ping;
  - host -> guest TCP through a port forward, from the host itself and from
    the outside namespace;
  - guest -> outside through NAT (the outside server sees the host's address);
  - two instances on an isolated network cannot reach each other, each still
    reaches its gateway;
  - a namespaced guest is reached at its own veth address;
  - standby/restore keeps the address and the forwards.

usage: test_network.py FIRECRACKER_FAKE [BOOTKIT_DIR]
Needs root (unshare); exit 77 (SKIP) naming what is missing.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

INSIDE = "EMBER_NET_TEST_INSIDE"


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def enter_namespaces():
    """Re-runs this script in a new network + mount namespace (private mounts)."""
    if os.environ.get(INSIDE) == "1":
        return
    if os.geteuid() != 0:
        skip("needs root to make its own network namespaces")
    for tool in ("unshare", "ip", "nft", "nsenter"):
        if shutil.which(tool) is None:
            skip(tool + " not installed (Debian packages util-linux, iproute2, nftables)")
    env = dict(os.environ, **{INSIDE: "1"})
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
    sys.exit(r.returncode)


enter_namespaces()

import grpc  # noqa: E402
from emberd_fixture import Checks, Emberd, pb  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
OUT_HOST, OUT_PEER = "198.51.100.1", "198.51.100.2"


def sh(*args, check_rc=True, ns=None, timeout=60):
    cmd = list(args)
    if ns is not None:
        cmd = ["nsenter", "--net=" + ns] + cmd
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def ns_inode(path):
    return os.stat(path).st_ino


class Outside:
    """A second namespace ("outside"), veth 198.51.100.1 (host) <-> .2 (outside)."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "100000"])
        self.ns = "/proc/%d/ns/net" % self.holder.pid
        for _ in range(100):
            if os.path.exists(self.ns) and os.stat(self.ns).st_ino != os.stat(
                    "/proc/self/ns/net").st_ino:
                break
            time.sleep(0.05)
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext1")
        sh("ip", "link", "set", "ext1", "netns", str(self.holder.pid))
        sh("ip", "addr", "add", OUT_HOST + "/24", "dev", "ext0")
        sh("ip", "link", "set", "ext0", "up")
        sh("ip", "link", "set", "lo", "up", ns=self.ns)
        sh("ip", "addr", "add", OUT_PEER + "/24", "dev", "ext1", ns=self.ns)
        sh("ip", "link", "set", "ext1", "up", ns=self.ns)
        self.server = None

    def serve_source_echo(self, port):
        """An HTTP server in the outside namespace answering each request with
        "SEEN <client address>"."""
        code = ("import socket\n"
                "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                "s.bind(('%s', %d)); s.listen(16)\n"
                "while True:\n"
                "    c,a=s.accept(); c.settimeout(5)\n"
                "    try:\n"
                "        c.recv(4096); b=('SEEN %%s\\n' %% a[0]).encode()\n"
                "        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: %%d\\r\\n\\r\\n' %% len(b) + b)\n"
                "    except OSError: pass\n"
                "    c.close()\n"
                % (OUT_PEER, port))
        self.server = subprocess.Popen(["nsenter", "--net=" + self.ns, sys.executable, "-c", code])

    def connect(self, host, port, payload=b"", timeout=5):
        code = ("import socket,sys\n"
                "c=socket.create_connection(('%s', %d), timeout=%d)\n"
                "c.sendall(%r); c.shutdown(socket.SHUT_WR)\n"
                "d=b''\n"
                "while True:\n"
                "    b=c.recv(65536)\n"
                "    if not b: break\n"
                "    d+=b\n"
                "sys.stdout.write(d.decode(errors='replace'))\n" % (host, port, timeout, payload))
        r = subprocess.run(["nsenter", "--net=" + self.ns, sys.executable, "-c", code],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout + 10)
        return r.returncode, r.stdout, r.stderr

    def close(self):
        for p in (self.server, self.holder):
            if p is not None:
                p.kill()
                p.wait()


def host_objects(nsdir, bridges):
    """ember's objects, normalised (no ifindex, no counters): links with ember's
    prefixes or alias and the named bridges, with kind, master, state and
    addresses; every ember-* namespace with its links, addresses, routes and
    nft table; the host's ember tables."""
    out = {}
    links = json.loads(sh("ip", "-j", "-d", "addr", "show") or "[]")
    for l in links:
        name = l["ifname"]
        alias = l.get("ifalias", "")
        if not (name.startswith("emt") or name.startswith("emv") or name in bridges
                or alias == "ember-managed"):
            continue
        out["link " + name] = (l.get("linkinfo", {}).get("info_kind", ""), l.get("master", ""),
                               "UP" in l.get("flags", []), alias, l.get("mtu"),
                               sorted("%s/%s" % (a["local"], a["prefixlen"])
                                      for a in l.get("addr_info", []) if a["family"] == "inet"))
    for f in sorted(os.listdir(nsdir)) if os.path.isdir(nsdir) else []:
        if not f.startswith("ember-"):
            continue
        p = os.path.join(nsdir, f)
        try:
            nl = json.loads(sh("ip", "-j", "-d", "addr", "show", ns=p) or "[]")
            routes = sh("ip", "-4", "route", "show", ns=p).strip().splitlines()
            table = sh("nft", "list", "table", "inet", "ember", ns=p, check_rc=False)
        except RuntimeError as e:
            out["netns " + f] = "unreadable: %s" % e
            continue
        out["netns " + f] = (
            sorted((l["ifname"], l.get("linkinfo", {}).get("info_kind", ""),
                    "UP" in l.get("flags", []),
                    tuple(sorted("%s/%s" % (a["local"], a["prefixlen"])
                                 for a in l.get("addr_info", []) if a["family"] == "inet")))
                   for l in nl),
            sorted(routes), table)
    for fam in ("inet", "bridge"):
        r = subprocess.run(["nft", "list", "table", fam, "ember"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            out["nft " + fam] = r.stdout
    return out


def diff(a, b):
    keys = sorted(set(a) | set(b))
    return ["%s: %r != %r" % (k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)][:6]


def net_iface(network="default", ip="", forwards=(), mac=""):
    ni = pb.NetworkInterface(network=network, ipv4_address=ip, mac_address=mac)
    for proto, hp, gp in forwards:
        ni.port_forwards.add(protocol=pb.PROTOCOL_UDP if proto == "udp" else pb.PROTOCOL_TCP,
                             host_port=hp, guest_port=gp)
    return ni


CONFIG_NETWORKS = [
    {"name": "default", "bridge": "ember0", "subnet": "10.77.0.0/16"},
    {"name": "iso", "bridge": "ember-iso", "subnet": "10.79.0.0/24", "isolated": True,
     "dns": ["10.79.0.1"]},
]
BRIDGES = ("ember0", "ember-iso")


def fc_spec(d, kernel, iface=None, netns=False):
    s = d.make_spec(hypervisor="firecracker", vcpus=1, memory_mib=64, kernel=kernel,
                    cmdline="console=ttyS0")
    if iface is not None:
        s.network_interfaces.append(iface)
    s.network_namespace = netns
    return s


def code_of(fn, *a, **kw):
    code, res = Emberd.call_error(fn, *a, **kw)
    return code, res


def part_fake(fake, nsdir):
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1"}
    cfg = {"networks": CONFIG_NETWORKS, "netns_dir": nsdir}
    empty = host_objects(nsdir, BRIDGES)
    d = Emberd(env=env, config=cfg, log_level="info")
    try:
        check(host_objects(nsdir, BRIDGES) == empty,
              "an emberd without networked instances makes nothing on the host")
        nets = {n.name: n for n in d.unary("ListNetworks", pb.ListNetworksRequest(),
                                           pb.ListNetworksResponse).networks}
        check(sorted(nets) == ["default", "iso"] and nets["default"].subnet == "10.77.0.0/16"
              and nets["default"].gateway == "10.77.0.1" and nets["default"].nat
              and nets["iso"].isolated and list(nets["iso"].dns_servers) == ["10.79.0.1"]
              and nets["iso"].addresses_total == 253 and nets["default"].addresses_used == 0,
              "ListNetworks: %s" % {k: (v.subnet, v.addresses_used, v.addresses_total)
                                    for k, v in nets.items()})
        k = d.fake_kernel()
        t0 = time.monotonic()
        a = d.create("a", fc_spec(d, k, net_iface(forwards=[("tcp", 18080, 8080),
                                                             ("udp", 15353, 53)])))
        net = a.network
        check(net.ipv4_address == "10.77.0.2/16" and net.gateway == "10.77.0.1"
              and net.mac_address.startswith("02:") and net.tap_device.startswith("emt")
              and net.namespace == "" and net.host_address == "10.77.0.2"
              and len(net.port_forwards) == 2,
              "a: Instance.network %s" % str(net).replace("\n", " "))
        check(a.spec.network_interfaces[0].network == "default"
              and a.spec.network_interfaces[0].tap_device == "",
              "a: the spec shows the interface as requested")
        objs = host_objects(nsdir, BRIDGES)
        tap = objs.get("link " + net.tap_device)
        br = objs.get("link ember0")
        check(tap is not None and tap[0] == "tun" and tap[1] == "ember0" and tap[2],
              "a: TAP %s exists, on ember0, up: %s" % (net.tap_device, tap))
        check(br is not None and br[0] == "bridge" and br[3] == "ember-managed"
              and br[5] == ["10.77.0.1/16"],
              "ember0: a bridge with ember's alias and the gateway 10.77.0.1/16: %s" % (br,))
        rules = objs.get("nft inet", "")
        check("dport 18080" in rules and "10.77.0.2:8080" in rules and "dport 15353" in rules
              and "masquerade" in rules,
              "host nft table: DNAT 18080 -> 10.77.0.2:8080, udp 15353, masquerade:\n" + rules)
        check("nft bridge" not in objs, "no bridge table while no isolated network is used")

        b = d.create("b", fc_spec(d, k, net_iface(), netns=True), start=True)
        bn = b.network
        nspath = os.path.join(nsdir, bn.namespace)
        check(bn.namespace.startswith("ember-") and os.path.exists(nspath)
              and bn.ipv4_address == "10.77.0.3/16" and bn.host_address.startswith("10.78."),
              "b: namespaced: %s" % str(bn).replace("\n", " "))
        objs = host_objects(nsdir, BRIDGES)
        inner = objs.get("netns " + bn.namespace)
        inner_links = {x[0]: x for x in inner[0]} if isinstance(inner, tuple) else {}
        check(bn.tap_device in inner_links and inner_links[bn.tap_device][3] == ("10.77.0.1/16",)
              and "veth0" in inner_links and inner_links["veth0"][3] == (bn.host_address + "/31",),
              "b: inside its namespace the TAP carries the gateway and veth0 the host address: %s"
              % (inner,))
        check(isinstance(inner, tuple) and any(r.startswith("default via 10.78.") for r in inner[1])
              and "dnat" in inner[2] and "snat" in inner[2],
              "b: namespace routes and its own nft table: %s" % (inner,))
        vm = d.get("b")
        check(vm.vmm_pid > 0 and ns_inode("/proc/%d/ns/net" % vm.vmm_pid) == ns_inode(nspath),
              "b: the VMM (pid %d) runs in the instance's namespace" % vm.vmm_pid)
        print("create with network: %.0f ms (fake VMM)" % ((time.monotonic() - t0) * 1000 / 2))

        # hostile requests: clear errors, nothing changes
        before = host_objects(nsdir, BRIDGES)
        bad = [
            ("port taken", fc_spec(d, k, net_iface(forwards=[("tcp", 18080, 80)])),
             grpc.StatusCode.ALREADY_EXISTS, "already forwarded"),
            ("address taken", fc_spec(d, k, net_iface(ip="10.77.0.2")),
             grpc.StatusCode.ALREADY_EXISTS, "taken"),
            ("address outside", fc_spec(d, k, net_iface(ip="10.9.9.9")),
             grpc.StatusCode.INVALID_ARGUMENT, "not a free host address"),
            ("gateway address", fc_spec(d, k, net_iface(ip="10.77.0.1")),
             grpc.StatusCode.INVALID_ARGUMENT, "not a free host address"),
            ("unknown network", fc_spec(d, k, net_iface(network="nope")),
             grpc.StatusCode.NOT_FOUND, "does not exist"),
            ("bad port", fc_spec(d, k, net_iface(forwards=[("tcp", 0, 80)])),
             grpc.StatusCode.INVALID_ARGUMENT, "host_port"),
            ("namespace without network", fc_spec(d, k, None, netns=True),
             grpc.StatusCode.INVALID_ARGUMENT, "network_namespace"),
            ("multicast mac", fc_spec(d, k, net_iface(mac="01:00:5e:00:00:01")),
             grpc.StatusCode.INVALID_ARGUMENT, "unicast"),
        ]
        s = fc_spec(d, k, net_iface())
        s.network_interfaces[0].tap_device = "tap9"
        bad.append(("tap with network", s, grpc.StatusCode.INVALID_ARGUMENT, "tap_device"))
        s = fc_spec(d, k, net_iface())
        s.network_interfaces.append(net_iface(network="iso"))
        bad.append(("two networks", s, grpc.StatusCode.INVALID_ARGUMENT, "at most one"))
        s = fc_spec(d, k, pb.NetworkInterface(tap_device="tap9", ipv4_address="10.77.0.9"))
        bad.append(("address without network", s, grpc.StatusCode.INVALID_ARGUMENT, "network"))
        bad.append(("name taken", fc_spec(d, k, net_iface(network="iso")),
                    grpc.StatusCode.ALREADY_EXISTS, "exists"))
        for what, spec, want, text in bad:
            name = "a" if what == "name taken" else "bad"
            code, msg = code_of(d.create, name, spec)
            check(code == want and text in msg, "%s: %s %s" % (what, code.name, msg))
        after = host_objects(nsdir, BRIDGES)
        check(after == before, "refused creates changed no host object: %s" % diff(before, after))
        check(sorted(i.name for i in d.list()) == ["a", "b"], "refused creates made no instance")

        # a failure right after the host objects were made removes them
        d.stop()
        d.env = dict(env, EMBER_FAULT="agent.create.after_net")
        d.start()
        code, msg = code_of(d.create, "c", fc_spec(d, k, net_iface(network="iso")))
        after = host_objects(nsdir, BRIDGES)
        check(code != grpc.StatusCode.OK and after == before,
              "create failing after its network was made: %s, nothing left: %s"
              % (code.name, diff(before, after)))
        d.stop()
        d.env = dict(env, EMBER_FAULT="agent.create.after_net:exit")
        d.start()
        code, msg = code_of(d.create, "c", fc_spec(d, k, net_iface(network="iso")))
        d.proc.wait(timeout=30)
        orphans = host_objects(nsdir, BRIDGES)
        check(d.proc.returncode == 86 and orphans != before,
              "emberd dies after making c's network (exit %s): orphans are left"
              % d.proc.returncode)
        d.env = env
        d.start()
        after = host_objects(nsdir, BRIDGES)
        check(after == before and not any(i.name == "c" for i in d.list()),
              "the next start removes the orphans and has no c: %s" % diff(before, after))

        # SIGKILL and restart: the same objects; hand-made damage is repaired
        d.kill()
        d.start()
        after = host_objects(nsdir, BRIDGES)
        check(after == before, "SIGKILL + restart: exactly the same objects: %s"
              % diff(before, after))
        d.kill()
        sh("ip", "link", "del", net.tap_device)
        sh("nft", "flush", "table", "inet", "ember")
        sh("ip", "tuntap", "add", "dev", "emt0123456789ab", "mode", "tap")
        sh("ip", "link", "add", "emv0123456789ab", "type", "veth", "peer", "name", "orph1")
        sh("ip", "link", "add", "br-orphan", "type", "bridge")
        sh("ip", "link", "set", "br-orphan", "alias", "ember-managed")
        sh("ip", "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1")
        sh("nft", "add", "table", "inet", "other")
        sh("nft", "add", "chain", "inet", "other", "c")
        orphan_ns = os.path.join(nsdir, "ember-0123456789ab")
        open(orphan_ns, "w").close()
        holder = subprocess.Popen(["unshare", "--net", "sleep", "100000"])
        time.sleep(0.3)
        sh("mount", "--bind", "/proc/%d/ns/net" % holder.pid, orphan_ns)
        holder.kill()
        holder.wait()
        d.start()
        after = host_objects(nsdir, BRIDGES)
        check(after == before, "restart after damage: missing TAP and rules made again, orphans "
              "(TAP, veth, aliased bridge, namespace) removed: %s" % diff(before, after))
        check("foreign0" in sh("ip", "link", "show") and
              subprocess.run(["nft", "list", "table", "inet", "other"],
                             stdout=subprocess.DEVNULL).returncode == 0,
              "foreign objects (a veth pair, another nft table) are untouched")
        sh("ip", "link", "del", "foreign0")
        sh("nft", "delete", "table", "inet", "other")

        # isolated network: the bridge table appears
        c = d.create("c", fc_spec(d, k, net_iface(network="iso")))
        objs = host_objects(nsdir, BRIDGES)
        check(c.network.ipv4_address == "10.79.0.2/24" and "nft bridge" in objs
              and c.network.tap_device in objs.get("nft bridge", ""),
              "c on the isolated network: a bridge rule names its TAP: %s"
              % objs.get("nft bridge", "")[:300])
        nets = {n.name: n for n in d.unary("ListNetworks", pb.ListNetworksRequest(),
                                           pb.ListNetworksResponse).networks}
        check(nets["default"].addresses_used == 2 and nets["iso"].addresses_used == 1,
              "ListNetworks counts the addresses in use")
        # delete everything: nothing of ember's is left
        for n in ("a", "b", "c"):
            d.delete(n)
        after = host_objects(nsdir, BRIDGES)
        check(after == empty, "after deleting every instance nothing of ember's is left: %s"
              % diff(empty, after))
        # emberctl: the same through the command line
        ctl = os.environ.get("EMBERCTL_BIN")
        if ctl and os.access(ctl, os.X_OK):
            base = [ctl, "--socket", d.socket_path]
            r = subprocess.run(base + ["networks"], stdout=subprocess.PIPE, text=True)
            check(r.returncode == 0 and "default" in r.stdout and "10.77.0.0/16" in r.stdout
                  and "iso" in r.stdout, "emberctl networks:\n" + r.stdout)
            r = subprocess.run(base + ["create", "ctl-net", "--hypervisor", "firecracker",
                                       "--kernel", k, "--memory-mib", "64", "--network",
                                       "default", "-p", "18090:80", "--publish",
                                       "18053:53/udp", "--netns"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            check(r.returncode == 0, "emberctl create --network -p --publish --netns: %s"
                  % r.stderr.strip())
            g = subprocess.run(base + ["get", "ctl-net"], stdout=subprocess.PIPE, text=True)
            check("Address:" in g.stdout and "10.77.0.2/16" in g.stdout
                  and "Namespace:" in g.stdout and "ember-" in g.stdout
                  and "18090:80/tcp" in g.stdout,
                  "emberctl get shows the network status:\n" + g.stdout)
            rules = subprocess.run(["nft", "list", "table", "inet", "ember"],
                                   stdout=subprocess.PIPE, text=True).stdout
            check("dport 18090" in rules, "the forward emberctl asked for is in force")
            subprocess.run(base + ["delete", "ctl-net"], stdout=subprocess.DEVNULL)
        else:
            print("emberctl not found (EMBERCTL_BIN): its network commands are not run here")
        # a released address is given again
        a2 = d.create("a2", fc_spec(d, k, net_iface()))
        check(a2.network.ipv4_address == "10.77.0.2/16", "a released address is reused: %s"
              % a2.network.ipv4_address)
        d.delete("a2")
    finally:
        d.close()


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        skip("usage: test_network.py <firecracker_fake.py> [BOOTKIT_DIR]")
    fake = os.path.abspath(sys.argv[1])
    sh("ip", "link", "set", "lo", "up")
    work = tempfile.mkdtemp(prefix="ember-net-")
    nsdir = os.path.join(work, "netns")
    os.makedirs(nsdir)
    outside = Outside()
    try:
        part_fake(fake, nsdir)
        if len(sys.argv) > 2:
            import network_guest
            network_guest.run(CHECKS, os.path.abspath(sys.argv[2]), nsdir, outside, work,
                              CONFIG_NETWORKS, net_iface)
    finally:
        outside.close()
        subprocess.run(["umount", "-R", nsdir], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
