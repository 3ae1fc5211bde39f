"""test_exec: ExecInstance, CopyToInstance and CopyFromInstance through the
real emberd, with the Firecracker contract fake (test/fakes/firecracker_fake.py)
as the VMM and a host build of the guest agent (ember_guest_agent) behind its
hybrid vsock socket: fast and CI-friendly (no KVM, no guest kernel). The agent
runs host programs (sh, cat, sleep, sha256sum...) on the host's file system,
so the test checks files and processes directly on the host.

Covers: echo, stdout/stderr apart, exit codes and signals, stdin to EOF, tty
and its size, the command timeout (DEADLINE_EXCEEDED, the process gone), 10
concurrent execs, a slow reader (backpressure, no RESOURCE_EXHAUSTED), 10 MB
copies both ways with sha256, a size mismatch (nothing left), hostile
requests (huge arguments, no start, a second start, an unknown user,
relative paths, bad mode), exec on a Stopped instance, an exec in flight
during a standby, exec after restore, cancel killing the process, emberctl
exec and cp; Health after each hostile case.

Usage: test_exec.py <fake> [firecracker|cloud-hypervisor]
The fake is test/fakes/firecracker_fake.py or cloud_hypervisor_fake.py (both
relay their hybrid vsock the same way: test/fakes/fake_guest_agent.py).
Env: EMBERD_BIN, EMBERCTL_BIN, EMBER_PYTHON_DIR, EMBER_GUEST_AGENT_BIN (the
host ember_guest_agent). Skips (77) naming what is missing.
"""
import hashlib
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from checks import Checks  # noqa: E402
from emberd_fixture import Emberd, pb  # noqa: E402
from exec_client import basic_exec_checks, copy_from, copy_to, ctl, exec_call, wait_ready  # noqa: E402



def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def procs_with(needle):
    """Host pids whose command line contains needle (the fake's agent runs
    its commands on the host, perhaps in a PID namespace the host sees)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle.encode() in cmd and state != "Z":
            found.append(int(p))
    return found


def gone_within(needle, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not procs_with(needle):
            return True
        time.sleep(0.1)
    return not procs_with(needle)


def main():
    if len(sys.argv) < 2:
        skip("usage: test_exec.py <fake> [firecracker|cloud-hypervisor]")
    fake = os.path.abspath(sys.argv[1])
    agent = os.environ.get("EMBER_GUEST_AGENT_BIN", "")
    if not agent or not os.access(agent, os.X_OK):
        skip("EMBER_GUEST_AGENT_BIN does not name the host ember_guest_agent (%r)" % agent)
    c = Checks()
    check = c.check
    work = tempfile.mkdtemp(prefix="ember-exec-fake-")
    hv = sys.argv[2] if len(sys.argv) > 2 else "firecracker"
    bin_var = {"firecracker": "EMBER_FIRECRACKER_BIN",
               "cloud-hypervisor": "EMBER_CLOUD_HYPERVISOR_BIN"}[hv]
    env = {bin_var: fake, "EMBER_FAKE_GUEST_AGENT": agent}
    with Emberd(env=env, log_level="info") as d:
        healthy = lambda what: check(d.health_check().status == 1,  # noqa: E731
                                     "emberd healthy after %s" % what)
        kernel = d.fake_kernel()
        spec = d.make_spec(hypervisor=hv, memory_mib=16, kernel=kernel)
        spec.vsock.guest_cid = 3
        spec.guest_agent = pb.GUEST_AGENT_MODE_ENABLED
        inst = d.create("g1", spec, start=True)
        check(inst.state == pb.INSTANCE_STATE_RUNNING, "the instance runs")
        g = wait_ready(d, "g1")
        check(g.ready, "the guest agent is ready behind the fake's vsock (%s)" % g)
        if not g.ready:
            print(d.log_tail(60))
            return c.summary()

        # ---- exec basics ----
        basic_exec_checks(d, "g1", check)
        r = exec_call(d, "g1", ["sh", "-c", "echo $X; pwd"], env=["X=from-exec"], cwd="/tmp")
        check(r.out == b"from-exec\n/tmp\n", "env and working dir: %r" % r.out)
        r = exec_call(d, "g1", ["sh", "-c", "stty size"], tty=True, rows=20, cols=70,
                      hold_stdin=threading.Event(), call_timeout=5,
                      extra=[pb.ExecInstanceRequest(resize=pb.TerminalSize(rows=40, cols=120))])
        check(r.exit is not None, "a resize message is accepted (%s %s)" % (r.code, r.details))

        # ---- timeout ----
        t1 = time.monotonic()
        r = exec_call(d, "g1", ["sh", "-c", "exec sleep 3131"], timeout_s=1.5)
        took = time.monotonic() - t1
        check(r.code == grpc.StatusCode.DEADLINE_EXCEEDED and "timeout" in r.details
              and took < 10, "timeout: DEADLINE_EXCEEDED after %.1f s: %s" % (took, r.details))
        check(gone_within("sleep 3131", 5), "the timed-out process is gone")
        healthy("a timeout")

        # ---- cancel ----
        def cancel_now(call, res):
            time.sleep(0.3)
            call.cancel()
        r = exec_call(d, "g1", ["sh", "-c", "exec sleep 2727"], hold_stdin=threading.Event(),
                      on_started=cancel_now, call_timeout=30)
        check(r.code == grpc.StatusCode.CANCELLED, "the client cancelled: %s" % r.code)
        check(gone_within("sleep 2727", 5), "cancelling the call killed the process")
        healthy("a cancel")

        # ---- concurrency ----
        results = [None] * 10

        def one(i):
            results[i] = exec_call(d, "g1", ["sh", "-c", "sleep 0.5; echo n$0", str(i)])
        th = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        check(all(results[i].out == ("n%d\n" % i).encode() and results[i].exit is not None
                  and results[i].exit.exit_code == 0 for i in range(10)),
              "10 concurrent execs, each its own output: %s"
              % [(x.out, x.code) for x in results if x.exit is None or x.exit.exit_code])

        # ---- backpressure: a reader that stops for 3 s while 40 MB are produced ----
        r = exec_call(d, "g1", ["head", "-c", str(40 << 20), "/dev/zero"], slow_after=3,
                      call_timeout=300)
        check(r.code == grpc.StatusCode.OK and len(r.out) == 40 << 20 and r.exit is not None,
              "a slow reader gets all 40 MB, no RESOURCE_EXHAUSTED (%s %s, %d bytes)"
              % (r.code, r.details, len(r.out)))

        # ---- copies ----
        blob = os.urandom(10 << 20)
        dst = os.path.join(work, "blob")
        resp = copy_to(d, "g1", dst, blob, mode=0o600)
        check(resp.size == len(blob), "CopyToInstance 10 MiB: size %d" % resp.size)
        check(os.path.exists(dst) and hashlib.sha256(open(dst, "rb").read()).digest()
              == hashlib.sha256(blob).digest() and os.stat(dst).st_mode & 0o7777 == 0o600,
              "the guest has the same sha256 and mode 0600")
        hdr, back, biggest = copy_from(d, "g1", dst)
        check(hdr is not None and hdr.size == len(blob) and hdr.mode & 0o777 == 0o600
              and hashlib.sha256(back).digest() == hashlib.sha256(blob).digest()
              and biggest <= 64 << 10,
              "CopyFromInstance 10 MiB back: same bytes, mode, chunks <= 64 KiB (%d)" % biggest)
        short = os.path.join(work, "short")
        code, det = Emberd.call_error(copy_to, d, "g1", short, b"abc", size=10)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and not os.path.exists(short)
              and not [f for f in os.listdir(work) if f.startswith("short")],
              "fewer bytes than size: INVALID_ARGUMENT, nothing left (%s)" % det)
        code, det = Emberd.call_error(copy_to, d, "g1", short, b"abcdefghijk", size=3)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and not os.path.exists(short),
              "more bytes than size: INVALID_ARGUMENT, nothing left (%s)" % det)
        for path, what in (("relative/x", "a relative path"), ("/tmp/dir/", "a directory path")):
            code, det = Emberd.call_error(copy_to, d, "g1", path, b"x")
            check(code == grpc.StatusCode.INVALID_ARGUMENT and "path" in det,
                  "copy to %s: INVALID_ARGUMENT (%s)" % (what, det))
        code, det = Emberd.call_error(copy_to, d, "g1", short, b"x", mode=0o170000)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "mode" in det,
              "copy with mode bits beyond 07777: INVALID_ARGUMENT (%s)" % det)
        code, det = Emberd.call_error(copy_from, d, "g1", os.path.join(work, "missing"))
        check(code == grpc.StatusCode.NOT_FOUND, "copy from a missing file: NOT_FOUND (%s)" % det)
        code, det = Emberd.call_error(copy_from, d, "g1", "rel")
        check(code == grpc.StatusCode.INVALID_ARGUMENT, "copy from a relative path: "
              "INVALID_ARGUMENT (%s)" % det)
        healthy("bad copies")

        # ---- hostile exec requests ----
        r = exec_call(d, "g1", ["echo", "x" * (1 << 20)])
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "command" in r.details,
              "1 MiB of arguments: INVALID_ARGUMENT naming command (%s)" % r.details)
        r = exec_call(d, "g1", ["true"], env=["A=" + "y" * (600 << 10), "B=" + "z" * (600 << 10)])
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "env" in r.details,
              "1.2 MiB of env: INVALID_ARGUMENT naming env (%s)" % r.details)
        r = exec_call(d, "g1", [])
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "command" in r.details,
              "no command: INVALID_ARGUMENT (%s)" % r.details)
        r = exec_call(d, "g1", ["true"], first=pb.ExecInstanceRequest(stdin=b"x"))
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "start" in r.details,
              "a first message without start: INVALID_ARGUMENT (%s)" % r.details)
        again = pb.ExecInstanceRequest(start=pb.ExecStart(id="g1", command=["true"]))
        r = exec_call(d, "g1", ["sleep", "5"], extra=[again], hold_stdin=threading.Event(),
                      call_timeout=20)
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "start" in r.details,
              "a second start: INVALID_ARGUMENT (%s)" % r.details)
        r = exec_call(d, "g1", ["true"], tty=True, rows=70000, cols=80)
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "rows" in r.details,
              "rows over 65535: INVALID_ARGUMENT (%s)" % r.details)
        r = exec_call(d, "g1", ["id"], user="nosuchuser-ember")
        check(r.code == grpc.StatusCode.INVALID_ARGUMENT and "nosuchuser-ember" in r.details,
              "an unknown user: INVALID_ARGUMENT naming it (%s)" % r.details)
        r = exec_call(d, "g1", ["/no/such/program"])
        check(r.code != grpc.StatusCode.OK or (r.exit is not None and r.exit.exit_code != 0),
              "an unknown program fails (%s %s %s)" % (r.code, r.details, r.exit))
        r = exec_call(d, "nosuch", ["true"])
        check(r.code == grpc.StatusCode.NOT_FOUND, "exec on an unknown instance: NOT_FOUND")
        healthy("hostile exec requests")

        # ---- emberctl ----
        sock = d.socket_path
        p = ctl(["exec", "g1", "--", "sh", "-c", "echo via-ctl; echo e >&2; exit 5"], sock)
        if p is not None:
            check(p.stdout == b"via-ctl\n" and p.stderr == b"e\n" and p.returncode == 5,
                  "emberctl exec: output and the command's exit status (%d, %r)"
                  % (p.returncode, p.stderr[-200:]))
            p = ctl(["exec", "-i", "g1", "--", "cat"], sock, inp=b"piped\n")
            check(p.stdout == b"piped\n" and p.returncode == 0, "emberctl exec -i pipes stdin")
            p = ctl(["exec", "g1", "cat"], sock, inp=b"not forwarded\n")
            check(p.stdout == b"" and p.returncode == 0, "without -i stdin is empty at once")
            p = ctl(["exec", "-t", "-e", "A=b", "-w", "/tmp", "g1", "--", "sh", "-c",
                     "echo $A; pwd; tty"], sock)
            check(p.returncode == 0 and b"b\r\n/tmp\r\n/dev/pts/" in p.stdout,
                  "emberctl exec -t -e -w: %r" % p.stdout)
            p = ctl(["exec", "--timeout", "1s", "g1", "--", "sleep", "30"], sock)
            check(p.returncode == 4, "emberctl exec --timeout: exit 4 (%d %r)"
                  % (p.returncode, p.stderr))
            p = ctl(["exec", "g1", "--", "sh", "-c", "kill -TERM $$"], sock)
            check(p.returncode == 128 + 15, "emberctl exec: 128+signal (%d)" % p.returncode)
            src = os.path.join(work, "up.bin")
            with open(src, "wb") as f:
                f.write(os.urandom(3 << 20))
            os.chmod(src, 0o640)
            gdst = os.path.join(work, "in-guest.bin")
            p = ctl(["cp", src, "g1:" + gdst], sock)
            down = os.path.join(work, "down.bin")
            p2 = ctl(["cp", "g1:" + gdst, down], sock)
            check(p.returncode == 0 and p2.returncode == 0 and os.path.exists(down)
                  and open(down, "rb").read() == open(src, "rb").read()
                  and os.stat(gdst).st_mode & 0o777 == 0o640,
                  "emberctl cp both ways (3 MiB, mode kept): %r %r"
                  % (p.stderr[-200:], p2.stderr[-200:]))
            p = ctl(["cp", src, down], sock)
            check(p.returncode == 64, "emberctl cp with two local paths: usage (%d)"
                  % p.returncode)

        # ---- lifecycle ----
        stopped = d.create("g2", spec, start=False)
        r = exec_call(d, "g2", ["true"])
        check(r.code == grpc.StatusCode.FAILED_PRECONDITION,
              "exec on a Stopped instance: FAILED_PRECONDITION (%s)" % r.details)
        code, det = Emberd.call_error(copy_from, d, "g2", "/etc/hostname")
        check(code == grpc.StatusCode.FAILED_PRECONDITION,
              "copy from a Stopped instance: FAILED_PRECONDITION (%s)" % det)
        d.delete(stopped.id)

        hold = threading.Event()
        box = {}

        def long_exec():
            box["r"] = exec_call(d, "g1", ["sh", "-c", "exec sleep 2929"], hold_stdin=hold,
                                 call_timeout=60)
        t = threading.Thread(target=long_exec)
        t.start()
        time.sleep(1.5)
        d.standby("g1")
        t.join(30)
        hold.set()
        r = box.get("r")
        check(r is not None and r.code == grpc.StatusCode.UNAVAILABLE and "standby" in r.details,
              "an exec in flight during a standby ends with UNAVAILABLE naming it: %s %s"
              % (r and r.code, r and r.details))
        check(gone_within("sleep 2929", 5), "the fake guest's process died with its VMM")
        r = exec_call(d, "g1", ["true"])
        check(r.code == grpc.StatusCode.FAILED_PRECONDITION,
              "exec on a Standby instance: FAILED_PRECONDITION (%s)" % r.details)
        healthy("a standby during an exec")
        d.restore("g1")
        r = exec_call(d, "g1", ["echo", "after-restore"])
        check(r.code == grpc.StatusCode.OK and r.out == b"after-restore\n",
              "exec after restore (waits for the agent): %s %s %r" % (r.code, r.details, r.out))
        healthy("the whole run")
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
