#!/usr/bin/env python3
"""test_fork: ForkInstance, CreateSnapshot, ListSnapshots and DeleteSnapshot
through the real emberd and a real gRPC client.

  test_fork.py qemu BOOT_KIT_DIR
    QEMU (TCG) boots a busybox image with the boot kit on a managed network.
    The guest writes a marker (on its disk, through its page cache) and starts
    a process; it is forked five ways while Running. Every clone has the
    marker and the process, then writes its own and diverges; the source
    keeps its own; each clone has its own namespace with the source's address
    and MAC, reachable at its own host address; clones stand by and restore
    on their own (full first, then diffs into their own base); the source's
    next standby is still a diff. A named snapshot of the Standby source
    forks a clone left in Standby, cannot be deleted while it has clones, and
    outlives the source and every clone. Hostile requests change nothing.
    Runs in its own network and mount namespace (root), like
    integration_network.

  test_fork.py fake FAKE [firecracker|cloud-hypervisor]
    The same API against the contract fake (no guest): fast, run again under
    the sanitizers.

  test_fork.py firecracker-real TINY_ELF
    The same with the real Firecracker named by EMBER_FIRECRACKER_BIN booting
    the tiny test guest under KVM (SKIP without either).

Env: EMBERD_BIN, EMBER_PYTHON_DIR. Skips (77) naming what is missing.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "image"))

INSIDE = "EMBER_FORK_TEST_INSIDE"


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def enter_namespaces():
    """QEMU mode re-runs itself in a new network + mount namespace, so the
    clones' namespaces, veths and bridge are the test's own."""
    if os.environ.get(INSIDE) == "1" or len(sys.argv) < 2 or sys.argv[1] != "qemu":
        return
    if os.geteuid() != 0:
        skip("needs root to make its own network namespace")
    for tool in ("unshare", "ip", "ping"):
        if shutil.which(tool) is None:
            skip(tool + " not installed (util-linux, iproute2, iputils-ping)")
    env = dict(os.environ, **{INSIDE: "1"})
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
    sys.exit(r.returncode)


enter_namespaces()

import grpc  # noqa: E402

from checks import Checks  # noqa: E402
from emberd_fixture import Emberd, pb  # noqa: E402

C = Checks()
check = C.check


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def layout(d):
    """What a refused request must not change: every path under the instances
    and snapshots folders, and every record. (A running guest's console and
    RAM file change by themselves.)"""
    out = []
    for top in ("instances", "snapshots"):
        root = os.path.join(d.data_dir, top)
        for dirpath, dirs, files in os.walk(root):
            for f in sorted(dirs + files):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, d.data_dir)
                if f == "instance.json":
                    with open(p, "rb") as fh:
                        rel += " " + str(hash(fh.read()))
                out.append(rel)
    return sorted(out)


def hostile(d, source, stopped, make_names):
    """Refused requests: a clear code each, emberd serving, nothing on disk
    changed (the same files and records)."""
    before = layout(d)
    cases = [
        ("neither source nor snapshot", dict(names=["h1"]), grpc.StatusCode.INVALID_ARGUMENT),
        ("both source and snapshot", dict(source=source, snapshot="x", names=["h1"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("no names", dict(source=source), grpc.StatusCode.INVALID_ARGUMENT),
        ("names and a prefix", dict(source=source, names=["h1"], prefix="h", count=2),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("count 0 with a prefix", dict(source=source, prefix="h"),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("count 65", dict(source=source, prefix="h", count=65), grpc.StatusCode.INVALID_ARGUMENT),
        ("65 names", dict(source=source, names=make_names(65)), grpc.StatusCode.INVALID_ARGUMENT),
        ("a name given twice", dict(source=source, names=["h1", "h1"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("a path as a name", dict(source=source, names=["../../etc"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("an id-shaped name", dict(source=source, names=["i-0123456789abcdef"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("a taken name", dict(source=source, names=["h1", stopped]),
         grpc.StatusCode.ALREADY_EXISTS),
        ("an unknown source", dict(source="nope", names=["h1"]), grpc.StatusCode.NOT_FOUND),
        ("an unknown snapshot", dict(snapshot="nope", names=["h1"]), grpc.StatusCode.NOT_FOUND),
        ("a Stopped source", dict(source=stopped, names=["h1"]),
         grpc.StatusCode.FAILED_PRECONDITION),
    ]
    for what, kw, want in cases:
        code, det = code_of(d.fork, **kw)
        check(code == want, "fork with %s: %s (%s)" % (what, code, det[:160]))
    code, det = code_of(d.create_snapshot, source, "")
    check(code == grpc.StatusCode.INVALID_ARGUMENT, "a snapshot without a name: %s" % code)
    code, det = code_of(d.create_snapshot, source, "s-0123")
    check(code == grpc.StatusCode.INVALID_ARGUMENT, "a snapshot name in id form: %s" % code)
    code, det = code_of(d.create_snapshot, stopped, "snap-of-stopped")
    check(code == grpc.StatusCode.FAILED_PRECONDITION, "a snapshot of a Stopped instance: %s (%s)"
          % (code, det[:120]))
    code, det = code_of(d.delete_snapshot, "nope")
    check(code == grpc.StatusCode.NOT_FOUND, "delete an unknown snapshot: %s" % code)
    check(d.health_check().status == 1, "emberd healthy after the refused requests")
    after = layout(d)
    check(before == after, "refused requests changed nothing on disk: %s"
          % sorted(set(before) ^ set(after))[:6])
    check(not any(i.name.startswith("h") and i.name != stopped for i in d.list()),
          "no clone was left by a refused fork")


def snapshot_named(d, name):
    return [s for s in d.list_snapshots() if s.name == name]


# ---- the contract fake --------------------------------------------------------


def run_fake(fake, hv, kernel=None):
    bin_var = {"firecracker": "EMBER_FIRECRACKER_BIN",
               "cloud-hypervisor": "EMBER_CLOUD_HYPERVISOR_BIN"}[hv]
    with Emberd(env={bin_var: fake}, log_level="info") as d:
        caps = {h.type: h.capabilities for h in d.list_hypervisors()}
        check(caps.get(hv) is not None and caps[hv].fork, "%s advertises fork" % hv)
        real = kernel is not None
        if not real:
            kernel = d.fake_kernel()
        spec = d.make_spec(hypervisor=hv, memory_mib=32 if real else 16,
                           kernel=kernel, cmdline="console=ttyS0")
        d.create("off", spec)
        spec.auto_standby.idle_seconds = 3600  # a clone inherits the whole spec
        src = d.create("src", spec, start=True)
        hostile(d, "src", "off", lambda n: ["n%d" % i for i in range(n)])
        r = d.fork("src", prefix="c", count=5)
        check(len(r.instances) == 5 and [i.name for i in r.instances] == ["c-%d" % i for i in
                                                                         range(1, 6)],
              "fork of a Running source: 5 clones named c-1..c-5")
        check(all(i.state == pb.INSTANCE_STATE_RUNNING and i.vmm_pid > 0 for i in r.instances),
              "every clone Running with its own VMM")
        check(len({i.vmm_pid for i in r.instances} | {src.vmm_pid}) == 6, "six distinct VMMs")
        check(all(i.fork.snapshot_id == r.snapshot_id and i.fork.source_instance_id == src.id
                  for i in r.instances), "Instance.fork names the snapshot and the source")
        check(r.HasField("snapshot_duration"), "the response says how long the snapshot took")
        check(all(i.spec.auto_standby.idle_seconds == 3600 for i in r.instances),
              "the clones have the source's spec (auto_standby)")
        check(d.get("src").state == pb.INSTANCE_STATE_RUNNING, "the source runs on")
        s = d.standby("c-1")
        check(s.last_snapshot_kind == pb.SNAPSHOT_KIND_FULL, "a clone's first standby is full")
        d.restore("c-1")
        s = d.standby("c-1")
        check(s.last_snapshot_kind == pb.SNAPSHOT_KIND_DIFF or hv != "firecracker",
              "its next standby: %s" % pb.SnapshotKind.Name(s.last_snapshot_kind))
        d.restore("c-1")
        s = d.standby("src")
        check(s.state == pb.INSTANCE_STATE_STANDBY, "the source stands by after the fork")
        snap = d.create_snapshot("src", "gold")
        check(snap.name == "gold" and snap.source_instance_name == "src"
              and snap.spec.hypervisor == hv and snap.size_bytes > 0,
              "CreateSnapshot of a Standby source: %s, %d bytes" % (snap.id, snap.size_bytes))
        r2 = d.fork(snapshot="gold", names=["g1"], standby=True)
        check(r2.instances[0].state == pb.INSTANCE_STATE_STANDBY, "a clone left in Standby")
        code, det = code_of(d.delete_snapshot, "gold")
        check(code == grpc.StatusCode.FAILED_PRECONDITION and r2.instances[0].id in det,
              "DeleteSnapshot refused while a clone depends on it (%s)" % det[:160])
        check(d.restore("g1").state == pb.INSTANCE_STATE_RUNNING, "the Standby clone restores")
        d.restore("src")
        for i in ["c-%d" % k for k in range(1, 6)] + ["g1", "src"]:
            d.delete(i)
        names = [(x.name, len(x.clone_ids)) for x in d.list_snapshots()]
        check(names == [("gold", 0)], "the fork's snapshot went with its last clone; the saved "
              "one stays: %s" % names)
        r3 = d.fork(snapshot="gold", names=["late"])
        check(r3.instances[0].state == pb.INSTANCE_STATE_RUNNING,
              "the saved snapshot forks after its source and every clone are gone")
        d.delete("late")
        check(d.delete_snapshot("gold") == snap.id, "DeleteSnapshot once nothing depends on it")
        check(os.listdir(os.path.join(d.data_dir, "snapshots")) == [], "no snapshot folder left")


# ---- a real guest ----------------------------------------------------------------


def run_qemu(kit):
    for t in ("qemu-system-x86_64", "umoci", "skopeo"):
        if shutil.which(t) is None:
            skip("%s not installed" % t)
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kit, f)):
            skip("boot kit %s/%s missing (cmake --build build --target bootkit)" % (kit, f))
    if not os.path.exists("/bin/busybox"):
        skip("/bin/busybox missing (Debian busybox-static)")
    from ember.v1 import image_pb2 as ipb
    from exec_client import exec_call, wait_ready
    from network_guest import import_image
    from test_exec_guest import build_archive
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp(prefix="ember-fork-")
    nsdir = os.path.join(work, "netns")
    os.makedirs(nsdir)
    archive = build_archive(work)
    cfg = {"networks": [{"name": "default", "bridge": "ember0", "subnet": "10.77.0.0/16"}],
           "netns_dir": nsdir}
    d = Emberd(config=cfg, args=["--boot-kit-dir", kit, "--vcpu-overcommit", "32"],
               log_level="info")

    def sh(name, script, timeout_s=60):
        r = exec_call(d, name, ["sh", "-c", script], timeout_s=timeout_s)
        return r.out.decode(errors="replace").strip() if r.exit is not None else \
            "<%s %s>" % (r.code, r.details)

    try:
        import_image(d, archive, ipb, name="fork:1")
        s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=192, image="fork:1")
        s.network_interfaces.append(pb.NetworkInterface(network="default"))
        src = d.create("src", s, start=True, timeout=600)
        d.create("off", pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=64,
                                        image="fork:1"))
        if not wait_ready(d, "src", timeout=300).ready:
            print(open(src.console_log_path, errors="replace").read()[-3000:])
            check(False, "the source's guest agent is ready")
            return
        # The marker: a file written through the guest's page cache (no sync);
        # and the kernel's boot id, which only the same running kernel has (a
        # guest booted again gets a new one).
        out = sh("src", "echo marker-src > /marker; cat /marker")
        check(out == "marker-src", "the source wrote its marker: %r" % out)
        boot_id = sh("src", "cat /proc/sys/kernel/random/boot_id")
        hostile(d, "src", "off", lambda n: ["n%d" % i for i in range(n)])

        t0 = time.monotonic()
        r = d.fork("src", prefix="c", count=5, timeout=900)
        took = time.monotonic() - t0
        clones = list(r.instances)
        check(len(clones) == 5 and all(c.state == pb.INSTANCE_STATE_RUNNING for c in clones),
              "ForkInstance of a Running source: 5 clones Running in %.1f s (snapshot %.2f s)"
              % (took, r.snapshot_duration.seconds + r.snapshot_duration.nanos / 1e9))
        check(d.get("src").state == pb.INSTANCE_STATE_RUNNING, "the source runs on")
        names = [c.name for c in clones]
        # The clone's root disk is copy-on-write: a qcow2 overlay over the
        # snapshot's frozen disk (ext4 here has no reflinks), or a reflink.
        cdir = os.path.join(d.data_dir, "instances", clones[0].id)
        ov = os.path.join(cdir, "rootfs.qcow2")
        if os.path.exists(ov):
            used = os.stat(ov).st_blocks * 512
            cmd = open("/proc/%d/cmdline" % d.get(clones[0].name).vmm_pid, "rb").read()
            check(used < (4 << 20) and b"format=qcow2" in cmd,
                  "a clone's root disk is a qcow2 overlay (%d KiB on disk), opened as qcow2"
                  % (used >> 10))
        else:
            check(os.path.exists(os.path.join(cdir, "rootfs.ext4")),
                  "a clone's root disk is a reflink of the frozen one")
        for c in clones:
            g = wait_ready(d, c.name, timeout=120)
            check(g.ready, "%s: its guest agent answers after the restore" % c.name)
            out = sh(c.name, "cat /marker /proc/sys/kernel/random/boot_id")
            check(out == "marker-src\n" + boot_id, "%s has the source's marker and its running "
                  "kernel (boot id %s): %r" % (c.name, boot_id, out))
        for c in clones:
            sh(c.name, "echo marker-%s > /marker" % c.name)
        outs = {c.name: sh(c.name, "cat /marker") for c in clones}
        check(all(outs[n] == "marker-" + n for n in names),
              "each clone wrote its own marker and kept it: %s" % outs)
        out = sh("src", "cat /marker")
        check(out == "marker-src", "the source keeps its own marker: %r" % out)

        # identity: own namespace, same address and MAC, own host address
        sn = d.get("src").network
        hosts = set()
        for c in clones:
            n = d.get(c.name).network
            check(n.ipv4_address == sn.ipv4_address and n.mac_address == sn.mac_address
                  and getattr(n, "namespace") != "" and n.host_address != "",
                  "%s: address %s and MAC %s as the source's, namespace %s, host address %s"
                  % (c.name, n.ipv4_address, n.mac_address, getattr(n, "namespace"),
                     n.host_address))
            hosts.add(n.host_address)
        check(len(hosts) == 5, "five distinct host addresses: %s" % sorted(hosts))
        for c in clones[:2]:
            ha = d.get(c.name).network.host_address
            ok = any(subprocess.run(["ping", "-c", "1", "-W", "2", ha],
                                    stdout=subprocess.DEVNULL).returncode == 0 for _ in range(5))
            check(ok, "%s answers a ping at its host address %s (through its namespace)"
                  % (c.name, ha))

        # each clone on its own: full, then diff
        c1 = names[0]
        k1 = d.standby(c1).last_snapshot_kind
        d.restore(c1)
        sh(c1, "echo again-%s > /marker" % c1)
        k2 = d.standby(c1).last_snapshot_kind
        d.restore(c1)
        wait_ready(d, c1, timeout=120)
        out = sh(c1, "cat /marker")
        check(k1 == pb.SNAPSHOT_KIND_FULL and k2 == pb.SNAPSHOT_KIND_DIFF and
              out == "again-" + c1, "%s: standby full, then diff into its own base; marker %r"
              % (c1, out))
        out = sh(names[1], "cat /marker")
        check(out == "marker-" + names[1], "another clone is unaffected: %r" % out)
        # A clone of a clone: its overlay is flattened into the new snapshot,
        # which depends on no other snapshot.
        r4 = d.fork(names[1], names=["gc"])
        wait_ready(d, "gc", timeout=120)
        out = sh("gc", "cat /marker")
        sdir = os.path.join(d.data_dir, "snapshots", r4.snapshot_id, "disks")
        check(out == "marker-" + names[1] and sorted(os.listdir(sdir)) ==
              ["bootcfg.img", "rootfs.ext4"],
              "a clone of a clone has its parent's marker (%r); its snapshot holds a standalone "
              "raw root disk: %s" % (out, sorted(os.listdir(sdir))))
        d.delete("gc")
        ks = d.standby("src").last_snapshot_kind
        check(ks == pb.SNAPSHOT_KIND_DIFF, "the source's standby after the fork is still a "
              "diff into its own base: %s" % pb.SnapshotKind.Name(ks))

        # a named snapshot of the Standby source
        snap = d.create_snapshot("src", "gold")
        check(snap.name == "gold" and snap.size_bytes > 0 and list(snap.clone_ids) == [],
              "CreateSnapshot of the Standby source: %d bytes" % snap.size_bytes)
        d.restore("src")
        wait_ready(d, "src", timeout=120)
        check(sh("src", "cat /marker") == "marker-src", "the source restores after the snapshot")
        r2 = d.fork(snapshot="gold", names=["g1"], standby=True)
        check(r2.instances[0].state == pb.INSTANCE_STATE_STANDBY,
              "a clone of the saved snapshot, left in Standby")
        code, det = code_of(d.delete_snapshot, "gold")
        check(code == grpc.StatusCode.FAILED_PRECONDITION, "DeleteSnapshot refused while a "
              "clone depends on it: %s" % det[:160])
        d.restore("g1")
        wait_ready(d, "g1", timeout=120)
        out = sh("g1", "cat /marker")
        check(out == "marker-src", "the saved snapshot's clone has the source's marker: %r" % out)

        lst = {x.name: len(x.clone_ids) for x in d.list_snapshots()}
        check(lst == {"": 5, "gold": 1}, "ListSnapshots: the fork's (5 clones) and gold (1): %s"
              % lst)
        for n in names + ["g1", "src"]:
            d.delete(n)
        lst = [x.name for x in d.list_snapshots()]
        check(lst == ["gold"], "the fork's snapshot went with its last clone: %s" % lst)
        d.fork(snapshot="gold", names=["late"])
        wait_ready(d, "late", timeout=120)
        check(sh("late", "cat /marker") == "marker-src",
              "gold outlives the source and every clone: a new clone has the marker")
        d.delete("late")
        check(d.delete_snapshot("gold") == snap.id, "DeleteSnapshot once nothing depends on it")
        check(os.listdir(os.path.join(d.data_dir, "snapshots")) == [], "no snapshot folder left")
        left = [x for x in os.listdir(nsdir)]
        check(left == [], "no clone namespace left: %s" % left)
    finally:
        if C.failed:
            print(d.log_tail(80))
        d.close()
        subprocess.run(["umount", "-R", nsdir], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) < 3:
        skip("usage: test_fork.py qemu BOOT_KIT_DIR | fake FAKE [hypervisor]")
    if sys.argv[1] == "fake":
        run_fake(os.path.abspath(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "firecracker")
    elif sys.argv[1] == "firecracker-real":
        binary = os.environ.get("EMBER_FIRECRACKER_BIN", "")
        tiny = os.path.abspath(sys.argv[2])
        if not binary or not os.access(binary, os.X_OK):
            skip("EMBER_FIRECRACKER_BIN does not name a Firecracker binary")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            skip("/dev/kvm is not usable")
        if not os.path.isfile(tiny):
            skip("tiny guest %s not built (target guest_tiny)" % tiny)
        run_fake(os.path.abspath(binary), "firecracker", kernel=tiny)
    else:
        run_qemu(os.path.abspath(sys.argv[2]))
    return C.summary()


if __name__ == "__main__":
    sys.exit(main())
