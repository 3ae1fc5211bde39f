"""exec_client: calls of ExecInstance, CopyToInstance and CopyFromInstance
and the guest agent's readiness, shared by test_exec.py (contract fake),
test_exec_guest.py (real QEMU guest) and test/bench/bench_exec.py."""
import os
import subprocess
import time

import grpc

from emberd_fixture import pb

SVC = "/ember.v1.InstanceService/"


class ExecResult:
    def __init__(self):
        self.pid = 0
        self.out = b""
        self.err = b""
        self.exit = None
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.n_msgs = 0


def exec_call(d, name, cmd, stdin=b"", env=(), cwd="", user="", tty=False, rows=0, cols=0,
              timeout_s=None, call_timeout=120, hold_stdin=None, first=None, extra=(),
              on_started=None, slow_after=None, ready_s=30):
    """Runs cmd through ExecInstance: stdin is sent then closed (after
    hold_stdin, an Event, is set); first replaces the start message, extra
    follow it; on_started(call, result) runs at started_pid; slow_after: stop
    reading for 3 s after that many messages. Never raises for a status:
    result.code and result.details hold it."""
    start = pb.ExecStart(id=name, command=cmd, env=list(env), working_dir=cwd, user=user,
                         tty=tty, rows=rows, cols=cols)
    if timeout_s is not None:
        start.timeout.seconds = int(timeout_s)
        start.timeout.nanos = int((timeout_s - int(timeout_s)) * 1e9)
    start.ready_timeout.seconds = ready_s

    def reqs():
        yield first if first is not None else pb.ExecInstanceRequest(start=start)
        for m in extra:
            yield m
        for i in range(0, len(stdin), 16384):
            yield pb.ExecInstanceRequest(stdin=stdin[i:i + 16384])
        if hold_stdin is not None:
            hold_stdin.wait(call_timeout)
        yield pb.ExecInstanceRequest(close_stdin=True)

    fn = d.channel.stream_stream(SVC + "ExecInstance",
                                 request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=pb.ExecInstanceResponse.FromString)
    r = ExecResult()
    call = fn(reqs(), timeout=call_timeout)
    # bytearrays: appending to bytes copies the whole output each time, which
    # for 40 MB in small chunks takes minutes on a busy host.
    out, err = bytearray(), bytearray()
    try:
        for m in call:
            r.n_msgs += 1
            k = m.WhichOneof("response")
            if k == "started_pid":
                r.pid = m.started_pid
                if on_started is not None:
                    on_started(call, r)
            elif k == "stdout":
                out += m.stdout
                r.out = out
            elif k == "stderr":
                err += m.stderr
                r.err = err
            elif k == "exit":
                r.exit = m.exit
            if slow_after is not None and r.n_msgs == slow_after:
                time.sleep(3)  # the client stops reading for a while
    except grpc.RpcError as e:
        r.code, r.details = e.code(), e.details()
    r.out, r.err = bytes(out), bytes(err)
    return r


def copy_to(d, name, path, data, mode=0o644, size=None, timeout=120):
    def reqs():
        yield pb.CopyToInstanceRequest(header=pb.CopyToHeader(
            id=name, path=path, mode=mode, size=len(data) if size is None else size))
        for i in range(0, len(data), 256 << 10):
            yield pb.CopyToInstanceRequest(data=data[i:i + (256 << 10)])
    fn = d.channel.stream_unary(SVC + "CopyToInstance",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pb.CopyToInstanceResponse.FromString)
    return fn(reqs(), timeout=timeout)


def copy_from(d, name, path, timeout=120):
    """(header, bytes, the largest data message)."""
    fn = d.channel.unary_stream(SVC + "CopyFromInstance",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pb.CopyFromInstanceResponse.FromString)
    hdr, data, biggest = None, bytearray(), 0
    for m in fn(pb.CopyFromInstanceRequest(id=name, path=path), timeout=timeout):
        if m.WhichOneof("response") == "header":
            hdr = m.header
        else:
            data += m.data
            biggest = max(biggest, len(m.data))
    return hdr, bytes(data), biggest


def wait_ready(d, name, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        g = d.get(name).guest_agent
        if g.ready:
            return g
        time.sleep(0.1)
    return d.get(name).guest_agent


def ctl(args, sock, inp=None, timeout=120):
    b = os.environ.get("EMBERCTL_BIN")
    if not b:
        return None
    return subprocess.run([b, "--address", "unix:" + sock] + args, input=inp,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def basic_exec_checks(d, name, check):
    """The exec checks every transport must pass (test_exec.py: the contract
    fake's vsock; test_exec_guest.py: a real guest's virtio-serial port), kept
    in one place so the two stay in step: echo with a pid, stdout and stderr
    apart with an exit code, death by SIGKILL, stdin read to EOF, a tty with
    its window size. Returns False when the first exec failed (the rest would
    only repeat it)."""
    import hashlib
    r = exec_call(d, name, ["echo", "hello", "world"])
    if not check(r.code == grpc.StatusCode.OK and r.pid > 0 and r.out == b"hello world\n"
                 and r.exit is not None and r.exit.exit_code == 0,
                 "echo: pid %d, stdout %r, exit %s (%s %s)" % (r.pid, r.out, r.exit, r.code,
                                                               r.details)):
        return False
    r = exec_call(d, name, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    check(r.out == b"out\n" and r.err == b"err\n" and r.exit is not None
          and r.exit.exit_code == 7, "stdout and stderr apart, exit code 7: %r %r %s"
          % (r.out, r.err, r.exit))
    r = exec_call(d, name, ["sh", "-c", "kill -9 $$"])
    check(r.exit is not None and r.exit.signal == 9 and r.exit.exit_code == 137,
          "killed by SIGKILL: signal 9, exit_code 137: %s" % r.exit)
    data = os.urandom(300000)
    r = exec_call(d, name, ["sha256sum"], stdin=data)
    check(r.out.split(b" ")[0].decode() == hashlib.sha256(data).hexdigest(),
          "stdin to EOF (300 kB through sha256sum): %r" % r.out[:80])
    r = exec_call(d, name, ["sh", "-c", "stty size; tty"], tty=True, rows=33, cols=101)
    check(b"33 101" in r.out and b"/dev/pts/" in r.out and r.err == b"",
          "tty with its window size: %r %r" % (r.out, r.err))
    return True
