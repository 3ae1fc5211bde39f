#!/usr/bin/env python3
"""test_exec_guest: ExecInstance, CopyToInstance, CopyFromInstance and the
guest agent's readiness against a real Linux guest: QEMU (TCG) boots the
boot kit with a busybox image; emberd reaches the kit's guest agent over the
virtio-serial port. Also emberctl exec and cp against the same guest.

Usage: test_exec_guest.py BOOT_KIT_DIR
Env: EMBERD_BIN, EMBERCTL_BIN, EMBER_PYTHON_DIR (as the other integration tests).
Skips (77) naming what is missing: qemu-system-x86_64, umoci, skopeo,
/bin/busybox (busybox-static), the boot kit.
"""
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "image"))

import grpc  # noqa: E402

from checks import Checks  # noqa: E402
from emberd_fixture import Emberd, pb  # noqa: E402
from exec_client import SVC, basic_exec_checks, copy_from, copy_to, ctl, exec_call, wait_ready  # noqa: E402
from network_guest import import_image  # noqa: E402

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "echo", "sleep", "sha256sum", "head", "tty", "stty", "id", "true",
           "false", "ps", "grep", "wc", "env", "pwd", "kill", "ls", "mkdir", "dd", "tr")
ENTRY = "echo WORKLOAD-UP; while :; do sleep 5; done"


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def build_archive(work):
    from registry_util import sh
    lay = os.path.join(work, "oci")
    umoci = ["umoci", "--log", "error"]
    sh(*umoci, "init", "--layout", lay)
    sh(*umoci, "new", "--image", lay + ":x")
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "bin"))
    shutil.copy(BUSYBOX, os.path.join(tree, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(tree, "bin", a))
    sh(*umoci, "insert", "--image", lay + ":x", os.path.join(tree, "bin"), "/bin")
    # A layer must not end with a regular file: this umoci writes no padding
    # after a layer's last entry, which a tar reader (libarchive, Go's) rightly
    # calls truncated; etc/profile.d/ (a directory) sorts after the files.
    etc = os.path.join(tree, "etc")
    os.makedirs(os.path.join(etc, "profile.d"))
    with open(os.path.join(etc, "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nguest:x:1000:1000:guest:/home/guest:/bin/sh\n")
    with open(os.path.join(etc, "group"), "w") as f:
        f.write("root:x:0:\nguest:x:1000:\n")
    sh(*umoci, "insert", "--image", lay + ":x", etc, "/etc")
    tmp = os.path.join(tree, "tmp")
    os.makedirs(tmp)
    os.chmod(tmp, 0o1777)
    sh(*umoci, "insert", "--image", lay + ":x", tmp, "/tmp")
    sh(*umoci, "config", "--image", lay + ":x", "--config.entrypoint", "/bin/sh",
       "--config.entrypoint", "-c", "--config.entrypoint", ENTRY, "--config.env",
       "PATH=/bin", "--config.env", "IMAGE_VAR=from-image", "--config.workingdir", "/")
    archive = os.path.join(work, "x.tar")
    sh("skopeo", "--insecure-policy", "copy", "-q", "oci:%s:x" % lay,
       "docker-archive:%s:ember/exec:1" % archive)
    return archive


def main():
    if len(sys.argv) < 2:
        skip("usage: test_exec_guest.py BOOT_KIT_DIR")
    kit = os.path.abspath(sys.argv[1])
    for t in ("qemu-system-x86_64", "umoci", "skopeo"):
        if shutil.which(t) is None:
            skip("%s not installed" % t)
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kit, f)):
            skip("boot kit %s/%s missing (cmake --build build --target bootkit)" % (kit, f))
    if not os.path.exists(BUSYBOX):
        skip("%s missing (Debian busybox-static)" % BUSYBOX)
    from ember.v1 import image_pb2 as ipb
    c = Checks()
    check = c.check
    work = tempfile.mkdtemp(prefix="ember-exec-")
    archive = build_archive(work)
    d = Emberd(args=["--boot-kit-dir", kit, "--vcpu-overcommit", "16"], log_level="info")
    try:
        import_image(d, archive, ipb, name="exec:1")
        s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=192, image="exec:1")
        t0 = time.monotonic()
        inst = d.create("g1", s, start=True, timeout=600)
        check(inst.spec.guest_agent == pb.GUEST_AGENT_MODE_ENABLED,
              "an image instance has the guest agent on by default")
        g = wait_ready(d, "g1", timeout=300)
        check(g.ready and g.version != "" and g.HasField("ready_time"),
              "readiness after boot: ready, version %r, ready_time set (%.1f s after create)"
              % (g.version, time.monotonic() - t0))
        if not g.ready:
            print(open(inst.console_log_path, errors="replace").read()[-3000:])
            print(d.log_tail(60))
            return c.summary()

        basic_exec_checks(d, "g1", check)
        r = exec_call(d, "g1", ["sh", "-c", "echo $IMAGE_VAR $X; pwd; id -u"], env=["X=y"],
                      cwd="/bin", user="guest")
        check(r.out == b"from-image y\n/bin\n1000\n",
              "env over the image's, working dir, user by name: %r" % r.out)
        r = exec_call(d, "g1", ["sh"], tty=True, rows=24, cols=80,
                      stdin=b"echo in-tty-$((6*7))\nexit 3\n")
        check(b"in-tty-42" in r.out and r.exit is not None and r.exit.exit_code == 3,
              "an interactive shell on a tty: %r exit %s" % (r.out[-200:], r.exit))

        t1 = time.monotonic()
        r = exec_call(d, "g1", ["sleep", "313"], timeout_s=2)
        check(r.code == grpc.StatusCode.DEADLINE_EXCEEDED,
              "timeout: DEADLINE_EXCEEDED after %.1f s: %s %s" % (time.monotonic() - t1, r.code,
                                                                 r.details))
        time.sleep(0.5)
        r = exec_call(d, "g1", ["ps"])
        check(r.code == grpc.StatusCode.OK and b"PID" in r.out and b"sleep 313" not in r.out, "the timed-out process is gone")

        results = [None] * 10

        def one(i):
            results[i] = exec_call(d, "g1", ["sh", "-c", "sleep 1; echo n$0", str(i)])
        th = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        t1 = time.monotonic()
        for t in th:
            t.start()
        for t in th:
            t.join()
        ok = all(results[i].out == ("n%d\n" % i).encode() and results[i].exit.exit_code == 0
                 for i in range(10))
        check(ok, "10 concurrent execs, each its own output (%.1f s in all)"
              % (time.monotonic() - t1))

        blob = os.urandom(10 << 20)
        resp = copy_to(d, "g1", "/tmp/blob", blob, mode=0o600, timeout=300)
        check(resp.size == len(blob), "CopyToInstance 10 MiB: size %d" % resp.size)
        r = exec_call(d, "g1", ["sh", "-c", "sha256sum /tmp/blob; ls -l /tmp/blob"])
        check(r.out.split(b" ")[0].decode() == hashlib.sha256(blob).hexdigest()
              and r.out.split(b"\n")[1].startswith(b"-rw-------"),
              "the guest sees the same sha256 and mode 0600")
        hdr, back, _ = copy_from(d, "g1", "/tmp/blob", timeout=300)
        check(hdr is not None and hdr.size == len(blob) and hdr.mode & 0o777 == 0o600
              and hashlib.sha256(back).digest() == hashlib.sha256(blob).digest(),
              "CopyFromInstance 10 MiB back: same bytes and mode")
        code, det = Emberd.call_error(copy_to, d, "g1", "/tmp/short", b"abc", size=10)
        r = exec_call(d, "g1", ["sh", "-c", "ls /tmp"])
        check(code == grpc.StatusCode.INVALID_ARGUMENT and b"short" not in r.out,
              "a copy whose size does not match: INVALID_ARGUMENT, nothing left (%s)" % det)
        code, det = Emberd.call_error(copy_from, d, "g1", "/nonexistent")
        check(code == grpc.StatusCode.NOT_FOUND, "copy from a missing file: NOT_FOUND (%s)" % det)

        r = exec_call(d, "g1", ["echo", "x" * (2 << 20)])
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT, "2 MiB of arguments: INVALID_ARGUMENT "
              "(%s)" % r.details)
        r = exec_call(d, "g1", ["id"], user="nosuchuser")
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "nosuchuser" in r.details,
              "an unknown user: INVALID_ARGUMENT naming it (%s)" % r.details)
        r = exec_call(d, "g1", ["/no/such/program"])
        check(r.code == grpc.StatusCode.NOT_FOUND, "an unknown program: NOT_FOUND (%s)"
              % r.details)
        check(d.health_check().status == 1, "emberd healthy after the hostile requests")

        # ctl
        sock = d.socket_path
        p = ctl(["exec", "g1", "--", "sh", "-c", "echo via-ctl; exit 5"], sock=sock)
        if p is not None:
            check(p.stdout == b"via-ctl\n" and p.returncode == 5,
                  "emberctl exec: output and the command's exit status (%d, %r)"
                  % (p.returncode, p.stderr[-200:]))
            p = ctl(["exec", "-i", "g1", "--", "cat"], inp=b"piped\n", sock=sock)
            check(p.stdout == b"piped\n" and p.returncode == 0, "emberctl exec -i pipes stdin")
            src = os.path.join(work, "up.bin")
            with open(src, "wb") as f:
                f.write(os.urandom(1 << 20))
            p = ctl(["cp", src, "g1:/tmp/up.bin"], sock=sock)
            dst = os.path.join(work, "down.bin")
            p2 = ctl(["cp", "g1:/tmp/up.bin", dst], sock=sock)
            check(p.returncode == 0 and p2.returncode == 0 and os.path.exists(dst)
                  and open(dst, "rb").read() == open(src, "rb").read(),
                  "emberctl cp both ways (1 MiB): %r %r" % (p.stderr[-200:], p2.stderr[-200:]))

        # standby with an exec in flight, then restore
        hold = threading.Event()
        box = {}

        def long_exec():
            box["r"] = exec_call(d, "g1", ["sleep", "271"], hold_stdin=hold)
        t = threading.Thread(target=long_exec)
        t.start()
        time.sleep(2)
        d.standby("g1")
        t.join(60)
        hold.set()
        r = box.get("r")
        check(r is not None and r.code == grpc.StatusCode.UNAVAILABLE and "standby" in r.details,
              "an exec in flight during a standby ends with UNAVAILABLE naming it: %s %s"
              % (r and r.code, r and r.details))
        g = d.get("g1").guest_agent
        check(not g.ready, "no readiness while in standby")
        r = exec_call(d, "g1", ["true"])
        check(r.code == grpc.StatusCode.FAILED_PRECONDITION,
              "exec on a Standby instance: FAILED_PRECONDITION (%s)" % r.details)
        events = []
        watch = d.watch("g1", timeout=300)

        def collect():
            try:
                for ev in watch:
                    events.append(ev)
                    if ev.operation == pb.OPERATION_OBSERVED and ev.instance.guest_agent.ready:
                        return
            except grpc.RpcError:
                pass
        wt = threading.Thread(target=collect)
        wt.start()
        d.restore("g1")
        g = wait_ready(d, "g1", timeout=120)
        check(g.ready, "readiness after restore")
        wt.join(30)
        watch.cancel()
        seen = [e for e in events if e.operation == pb.OPERATION_OBSERVED
                and e.instance.guest_agent.ready
                and e.old_state == e.new_state == pb.INSTANCE_STATE_RUNNING]
        check(len(seen) == 1, "WatchInstances: one OBSERVED event when the agent answers after "
              "the restore (%s)" % [(e.operation, e.instance.guest_agent.ready) for e in events])
        r = exec_call(d, "g1", ["sh", "-c", "echo after-restore; cat /tmp/blob | sha256sum"])
        check(r.out.startswith(b"after-restore\n") and
              r.out.split(b"\n")[1].split(b" ")[0].decode() == hashlib.sha256(blob).hexdigest(),
              "exec after standby/restore; the guest kept its files")
        r = exec_call(d, "g1", ["ps"])
        check(r.code == grpc.StatusCode.OK and b"PID" in r.out and b"sleep 271" not in r.out, "the exec cut by the standby does not linger")

        # emberd killed (SIGKILL) and started again: the VMM is re-adopted and
        # the link comes back; the guest keeps its files
        pid = d.get("g1").vmm_pid
        d.kill()
        d.start()
        g = wait_ready(d, "g1", timeout=60)
        r = exec_call(d, "g1", ["sh", "-c", "echo after-restart; ls /tmp/blob"])
        check(g.ready and d.get("g1").vmm_pid == pid and r.out == b"after-restart\n/tmp/blob\n",
              "after SIGKILL of emberd and a restart: same VMM, agent ready, exec works (%r)"
              % r.out)

        # cancel kills the process
        fn = d.channel.stream_stream(SVC + "ExecInstance",
                                     request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=pb.ExecInstanceResponse.FromString)
        ev = threading.Event()

        def reqs():
            yield pb.ExecInstanceRequest(start=pb.ExecStart(id="g1", command=["sleep", "277"]))
            ev.wait(60)
        call = fn(reqs(), timeout=120)
        first = next(call)
        check(first.started_pid > 0, "a long exec started")
        call.cancel()
        ev.set()
        time.sleep(1.0)
        r = exec_call(d, "g1", ["ps"])
        check(r.code == grpc.StatusCode.OK and b"PID" in r.out and b"sleep 277" not in r.out, "cancelling the call killed the process")

        # an instance without the agent
        s2 = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=128, image="exec:1",
                             guest_agent=pb.GUEST_AGENT_MODE_DISABLED)
        d.create("g2", s2, start=False)
        r = exec_call(d, "g1x", ["true"])
        check(r.code == grpc.StatusCode.NOT_FOUND, "exec on an unknown instance: NOT_FOUND")
        r = exec_call(d, "g2", ["true"])
        check(r.code == grpc.StatusCode.FAILED_PRECONDITION,
              "exec on an instance without the agent: FAILED_PRECONDITION (%s)" % r.details)
        check(d.health_check().status == 1, "emberd healthy at the end")
    finally:
        d.close()
        shutil.rmtree(work, ignore_errors=True)
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
