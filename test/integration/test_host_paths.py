#!/usr/bin/python3
"""test_host_paths.py: host paths from requests are fenced (issue 9, "host paths
fenced"; docs/host-paths.md), through a real emberd and the real gRPC client.

  test_host_paths.py fake <firecracker_fake.py>
    Cheap VMMs (the Firecracker contract fake):
    - kernel, initrd and disk = another instance's RAM file, its record,
      emberd's lock, /etc/shadow (directly, through a symlink, through
      /proc/self/root): each Create refused INVALID_ARGUMENT naming the field,
      data dir byte-for-byte unchanged, emberd serving;
    - a block device (a loop device made here) refused by default; with
      --allow-block-devices and roots allowed under a root, and claimed
      exclusively (a second instance on it refused while the first runs);
    - --host-file-root: inside accepted, outside refused;
    - a symlink swapped between Create and Start: Start refused
      FAILED_PRECONDITION, instance still Stopped, nothing changed; the same at
      Restore (still Standby, snapshot untouched);
    - a swap AFTER the check redirects nothing: the VMM holds the checked file
      (/proc/<vmm pid>/fd/66), and a restore re-opens it at the same number.
  test_host_paths.py qemu
    The Linux test guest under real QEMU (TCG) with kernel (through a symlink),
    initrd and a disk passed as descriptors: it boots and reads the disk's
    marker from /dev/vda; QEMU holds the files at fds 64-66; a second instance
    whose disk or kernel is the first one's live RAM file
    (snapshots/snapshot-base/memory) is refused; a swap of the disk's link after
    boot changes nothing the guest sees; standby and restore still work.

Exit 77 = SKIP (says what is missing). EMBERD_BIN, EMBER_PYTHON_DIR (and
EMBER_TEST_GUEST_DIR for qemu) as for the other integration tests."""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, pb, tree_digest, Checks
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

CHECKS = Checks()
check = CHECKS.check


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def relink(link, target):
    """Points link at target atomically (rename over it), as an attacker would."""
    tmp = link + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, link)


def fd_target(pid, n):
    try:
        return os.readlink("/proc/%d/fd/%d" % (pid, n))
    except OSError as e:
        return "<%s>" % e.strerror


def healthy(d):
    try:
        return d.health_check().status == 1  # SERVING
    except grpc.RpcError:
        return False


def digest(d):
    """tree_digest of the data dir, leaving out the folders of running guests
    (their console logs grow on their own)."""
    running = ["instances/%s" % i.id for i in d.list() if i.state == pb.INSTANCE_STATE_RUNNING]
    return [e for e in tree_digest(d.data_dir)
            if not any(e[0] == r or e[0].startswith(r + "/") for r in running)]


def expect_refused(d, what, fn, code, needles):
    """fn must fail with code and a message holding every needle; the data dir
    must not change and emberd must keep serving."""
    before = digest(d)
    names = sorted(i.name for i in d.list())
    got, msg = d.call_error(fn)
    msg = msg if isinstance(msg, str) else str(msg)
    ok = got == code and all(n in msg for n in needles)
    check(ok, "%s: refused %s (%s)" % (what, code.name if hasattr(code, "name") else code,
                                      msg if ok else "got %s %r, want %s" % (got, msg, needles)))
    check(digest(d) == before, "%s: data dir unchanged" % what)
    check(sorted(i.name for i in d.list()) == names, "%s: no instance appeared" % what)
    check(healthy(d), "%s: emberd still serving" % what)
    return ok


FIELDS = (("kernel", "spec.kernel_path"), ("initrd", "spec.initrd_path"),
          ("disk", "spec.disks[0].path"))


def fc_spec(d, kernel, initrd=None, disks=()):
    return d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=kernel, initrd=initrd,
                       cmdline="console=ttyS0", disks=disks)


def spec_with(d, files, field, path, make):
    kw = {"kernel": files["kernel"], "initrd": files["initrd"], "disks": [files["disk"]]}
    if field == "disk":
        kw["disks"] = [path]
    else:
        kw[field] = path
    return make(d, kw["kernel"], kw["initrd"], kw["disks"])


def attack_matrix(d, files, targets, make, tag):
    """Every target as every field, directly and through a symlink."""
    n = 0
    for tname, (tpath, rule) in targets.items():
        link = os.path.join(files["dir"], "ln-%s-%s" % (tag, tname))
        relink(link, tpath)
        for via, path in (("direct", tpath), ("symlink", link)):
            for field, fname in FIELDS:
                spec = spec_with(d, files, field, path, make)
                needles = [fname, rule] + (["resolves to"] if via == "symlink" else [])
                n += 1
                expect_refused(d, "%s %s %s as %s" % (tag, tname, via, field),
                               lambda s=spec, i=n: d.create("thief-%s-%d" % (tag, i), s,
                                                            start=True),
                               grpc.StatusCode.INVALID_ARGUMENT, needles)


def loop_device(backing):
    """A loop device over backing, or None with the reason printed."""
    if os.geteuid() != 0:
        print("SKIP-CASE: block devices: not root, cannot make a loop device")
        return None
    try:
        out = subprocess.run(["losetup", "-f", "--show", backing], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("SKIP-CASE: block devices: losetup unusable: %s" % e)
        return None
    if out.returncode != 0:
        print("SKIP-CASE: block devices: losetup failed: %s" % out.stderr.strip())
        return None
    return out.stdout.strip()


def run_fake(fake):
    env = {"EMBER_FIRECRACKER_BIN": fake, "FAKE_FC_VERSION": "1.16.1"}
    with Emberd(env=env) as d:
        fdir = os.path.join(d.root, "files")
        os.makedirs(fdir)
        files = {"dir": fdir,
                 "kernel": write(os.path.join(fdir, "kernel"), os.urandom(16384)),
                 "initrd": write(os.path.join(fdir, "initrd"), b"initrd\n" * 100),
                 "disk": write(os.path.join(fdir, "disk.img"), b"GOOD-DISK\n" * 400)}
        other = write(os.path.join(fdir, "other.img"), b"OTHER-DISK\n" * 400)

        # The victim: a guest in Standby, whose RAM and state lie in the data dir.
        victim = d.create("victim", fc_spec(d, files["kernel"], files["initrd"],
                                            [files["disk"]]), start=True)
        check(victim.state == pb.INSTANCE_STATE_RUNNING, "victim runs with fd-passed files")
        pid = victim.vmm_pid
        check(fd_target(pid, 64) == files["kernel"] and fd_target(pid, 65) == files["initrd"]
              and fd_target(pid, 66) == files["disk"],
              "the VMM holds kernel/initrd/disk at fds 64/65/66")
        vdir = os.path.join(d.data_dir, "instances", victim.id)
        d.standby(victim.id)
        latest = os.path.join(vdir, "snapshots", "snapshot-latest")
        mems = sorted((os.path.getsize(os.path.join(latest, f)), f) for f in os.listdir(latest))
        ram = os.path.join(latest, mems[-1][1])
        print("victim RAM file:", ram)
        targets = {
            "ram": (ram, "inside emberd's data dir"),
            "record": (os.path.join(vdir, "instance.json"), "inside emberd's data dir"),
            "lock": (os.path.join(d.data_dir, "emberd.lock"), "inside emberd's data dir"),
            "shadow": ("/etc/shadow", "under /etc"),
        }
        attack_matrix(d, files, targets, fc_spec, "fc")
        # Through the proc magic links: resolved like any other link.
        expect_refused(d, "kernel via /proc/self/root/etc/shadow",
                       lambda: d.create("thief-proc", fc_spec(d, "/proc/self/root/etc/shadow")),
                       grpc.StatusCode.INVALID_ARGUMENT, ["spec.kernel_path", "under /etc"])
        expect_refused(d, "kernel /proc/self/environ",
                       lambda: d.create("thief-env", fc_spec(d, "/proc/self/environ")),
                       grpc.StatusCode.INVALID_ARGUMENT, ["spec.kernel_path", "under /proc"])

        # A symlink swapped between Create and Start.
        link = os.path.join(fdir, "swap-link")
        relink(link, files["disk"])
        s = d.create("swapper", fc_spec(d, files["kernel"], None, [link]))
        check(s.spec.disks[0].path == link, "the record keeps the user's path")
        relink(link, ram)
        expect_refused(d, "Start after the disk link moved into the data dir",
                       lambda: d.start_instance(s.id), grpc.StatusCode.FAILED_PRECONDITION,
                       ["spec.disks[0].path", "resolves to " + ram, "inside emberd's data dir"])
        check(d.get(s.id).state == pb.INSTANCE_STATE_STOPPED, "swapper still Stopped")
        relink(link, "/etc/shadow")
        expect_refused(d, "Start after the disk link moved to /etc/shadow",
                       lambda: d.start_instance(s.id), grpc.StatusCode.FAILED_PRECONDITION,
                       ["spec.disks[0].path", "under /etc"])

        # A swap after the check redirects nothing.
        relink(link, files["disk"])
        s = d.start_instance(s.id)
        check(s.state == pb.INSTANCE_STATE_RUNNING, "swapper starts once the link is back")
        relink(link, other)
        pid = s.vmm_pid
        held = fd_target(pid, 66)
        opened = [fd_target(pid, int(n)) for n in os.listdir("/proc/%d/fd" % pid)]
        check(held == files["disk"], "after the swap the VMM's fd 66 is still the checked "
              "file (%s)" % held)
        check(other not in opened, "the VMM has not opened the swapped-in file")
        print("VMM %d fds: %s" % (pid, sorted(set(o for o in opened if fdir in o))))
        check(d.get(s.id).spec.disks[0].path == link, "the API still shows the user's path")

        # Restore is fenced the same way, and reopens by the same numbers.
        relink(link, ram)
        d.standby(s.id)
        sdir = os.path.join(d.data_dir, "instances", s.id)
        expect_refused(d, "Restore after the disk link moved into the data dir",
                       lambda: d.restore(s.id), grpc.StatusCode.FAILED_PRECONDITION,
                       ["spec.disks[0].path", "inside emberd's data dir"])
        check(d.get(s.id).state == pb.INSTANCE_STATE_STANDBY and
              os.path.isdir(os.path.join(sdir, "snapshots", "snapshot-latest")),
              "still Standby with its snapshot")
        relink(link, files["disk"])
        s = d.restore(s.id)
        check(s.state == pb.INSTANCE_STATE_RUNNING and fd_target(s.vmm_pid, 66) == files["disk"],
              "restore re-checks and the new VMM holds the disk at fd 66")

        # Block devices.
        blk_backing = write(os.path.join(fdir, "blk.img"), b"\0" * (1 << 20))
        loop = loop_device(blk_backing)
        try:
            if loop is not None:
                expect_refused(d, "disk = block device %s (default config)" % loop,
                               lambda: d.create("thief-blk", fc_spec(d, files["kernel"], None,
                                                                     [loop])),
                               grpc.StatusCode.INVALID_ARGUMENT,
                               ["spec.disks[0].path", "block device", "allow_block_devices"])
            # Allowed roots (and block devices under them).
            outside_dir = os.path.join(d.root, "outside")
            os.makedirs(outside_dir)
            outside = write(os.path.join(outside_dir, "x.img"), b"x" * 4096)
            d.args = ["--host-file-root", fdir]
            if loop is not None:
                d.args += ["--host-file-root", loop, "--allow-block-devices"]
            d.restart()
            inside = d.create("inside", fc_spec(d, files["kernel"], None, [other]), start=True)
            check(inside.state == pb.INSTANCE_STATE_RUNNING, "roots: a disk inside a root runs")
            expect_refused(d, "roots: a disk outside every root",
                           lambda: d.create("outside", fc_spec(d, files["kernel"], None,
                                                               [outside])),
                           grpc.StatusCode.INVALID_ARGUMENT,
                           ["spec.disks[0].path", "outside the allowed roots"])
            relink(os.path.join(fdir, "ln-out"), outside)
            expect_refused(d, "roots: a link inside a root leading outside",
                           lambda: d.create("outside", fc_spec(d, os.path.join(fdir, "ln-out"))),
                           grpc.StatusCode.INVALID_ARGUMENT,
                           ["spec.kernel_path", "outside the allowed roots"])
            expect_refused(d, "roots: still never the data dir",
                           lambda: d.create("thief-ram2", fc_spec(d, files["kernel"], None,
                                                                  [ram])),
                           grpc.StatusCode.INVALID_ARGUMENT,
                           ["spec.disks[0].path", "inside emberd's data dir"])
            if loop is not None:
                b = d.create("blk", fc_spec(d, files["kernel"], None, [loop]), start=True)
                check(b.state == pb.INSTANCE_STATE_RUNNING and
                      fd_target(b.vmm_pid, 66) == loop,
                      "allowed block device under a root runs (fd 66 -> %s)"
                      % fd_target(b.vmm_pid, 66))
                expect_refused(d, "the same block device for a second guest while claimed",
                               lambda: d.create("blk2", fc_spec(d, files["kernel"], None,
                                                                [loop])),
                               grpc.StatusCode.INVALID_ARGUMENT,
                               ["spec.disks[0].path", "in use"])
                d.delete(b.id)
        finally:
            if loop is not None:
                subprocess.run(["losetup", "-d", loop], timeout=30)
        check(healthy(d), "emberd healthy at the end")


def run_qemu():
    from guest_shell import GuestShell, linux_cmdline, wait_for_console
    kernel, initrd = fx.linux_guest_files()
    accel = os.environ.get("EMBER_QEMU_ACCEL", "tcg")
    with Emberd(config={"drivers": {"qemu": {"accel": accel}}}) as d:
        fdir = os.path.join(d.root, "files")
        os.makedirs(fdir)
        marker = "EMBER-DISK-%d" % os.getpid()
        disk = write(os.path.join(fdir, "disk.img"), marker.encode().ljust(1 << 20, b"\0"))
        other = write(os.path.join(fdir, "other.img"), b"SWAPPED".ljust(1 << 20, b"\0"))
        klink = os.path.join(fdir, "vmlinux-link")
        relink(klink, kernel)
        dlink = os.path.join(fdir, "disk-link")
        relink(dlink, disk)

        def spec(k, i, disks, mib=128):
            return d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=mib, kernel=k, initrd=i,
                               cmdline=linux_cmdline(), disks=disks)

        inst = d.create("guest", spec(klink, initrd, [dlink]), start=True, timeout=180)
        gdir = os.path.join(d.data_dir, "instances", inst.id)
        wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=180)
        pid = inst.vmm_pid
        check(fd_target(pid, 64) == os.path.realpath(kernel) and
              fd_target(pid, 65) == os.path.realpath(initrd) and fd_target(pid, 66) == disk,
              "QEMU holds kernel/initrd/disk at fds 64/65/66")
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        check(b"/proc/self/fd/64" in argv and kernel.encode() not in argv and
              not any(disk.encode() in a or dlink.encode() in a for a in argv),
              "QEMU's command line names descriptors, not the user's paths")

        def vda():
            with GuestShell(os.path.join(gdir, "serial1.sock"), connect_timeout=60) as sh:
                return sh.run("echo 3 > /proc/sys/vm/drop_caches; head -c %d /dev/vda"
                              % len(marker), timeout=60, retry=True)
        check(marker in vda(), "the guest reads the disk's marker from /dev/vda")

        # Another instance aiming at this guest's live RAM file.
        ram = os.path.join(gdir, "snapshots", "snapshot-base", "memory")
        check(os.path.isfile(ram), "the live RAM file exists: %s" % ram)
        rlink = os.path.join(fdir, "ram-link")
        relink(rlink, ram)
        for what, s, field in (
                ("disk = live RAM file", spec(kernel, initrd, [ram]), "spec.disks[0].path"),
                ("disk = live RAM file via symlink", spec(kernel, initrd, [rlink]),
                 "spec.disks[0].path"),
                ("kernel = live RAM file", spec(ram, initrd, []), "spec.kernel_path"),
                ("initrd = live RAM file via symlink", spec(kernel, rlink, []),
                 "spec.initrd_path")):
            names = sorted(os.listdir(os.path.join(d.data_dir, "instances")))
            got, msg = d.call_error(d.create, "thief", s, True)
            check(got == grpc.StatusCode.INVALID_ARGUMENT and field in msg and
                  "inside emberd's data dir" in msg, "%s: refused (%s)" % (what, msg))
            check(sorted(os.listdir(os.path.join(d.data_dir, "instances"))) == names,
                  "%s: no instance folder appeared" % what)
            check(healthy(d), "%s: emberd serving" % what)

        # A swap of the disk's link after boot: the guest keeps its disk.
        relink(dlink, other)
        check(marker in vda() and fd_target(pid, 66) == disk,
              "after the link swap the guest still reads its own disk")
        relink(dlink, disk)
        t0 = time.monotonic()
        st = d.standby(inst.id)
        check(st.state == pb.INSTANCE_STATE_STANDBY, "standby")
        r = d.restore(inst.id)
        print("standby+restore with fd-passed files: %.1f s" % (time.monotonic() - t0))
        check(r.state == pb.INSTANCE_STATE_RUNNING and fd_target(r.vmm_pid, 66) == disk,
              "restore: running, new QEMU holds the disk at fd 66")
        check(marker in vda(), "after restore the guest still reads its disk")
        d.stop_instance(inst.id)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "qemu":
        run_qemu()
    elif len(sys.argv) == 3 and sys.argv[1] == "fake":
        run_fake(os.path.abspath(sys.argv[2]))
    else:
        print("usage: test_host_paths.py fake <firecracker_fake.py> | qemu")
        return 2
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
