"""fake_guest_agent: the "guest" side of the fakes' hybrid vsock (Firecracker and
Cloud Hypervisor), shared by test/fakes/firecracker_fake.py and
cloud_hypervisor_fake.py. With EMBER_FAKE_GUEST_AGENT naming a host build of
ember_guest_agent (or test/fakes/hostile_guest_agent.py), the fake's guest runs
it once its vCPUs first run, as `AGENT --listen <tmp>/agent.sock`, in a PID and
mount namespace of its own when the fake runs as root (unshare --kill-child:
the agent and every process it started die with the fake, as a guest dies
with its VMM). A connection to the vsock socket that says "CONNECT 10789\n"
gets "OK <port>\n" and is relayed to the agent; other ports, or a guest whose
vCPUs never ran, get the connection closed (no listener in the guest).
"""
import ctypes
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    sys.stderr.write("fake-vsock: %s\n" % msg)
    sys.stderr.flush()


AGENT_PORT = 10789


class GuestAgent:
    """The fake guest's agent: one ember_guest_agent --listen process, and a
    relay from each accepted vsock connection to it."""

    def __init__(self, binary):
        self.binary = binary
        self.proc = None
        self.dir = None
        self.path = None

    def start(self):
        if self.proc is not None:
            return
        self.dir = tempfile.mkdtemp(prefix="fakefc-ga-")
        self.path = os.path.join(self.dir, "agent.sock")
        cmd = [self.binary, "--listen", self.path]
        if os.geteuid() == 0 and shutil.which("unshare"):
            cmd = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] + cmd

        def die_with_parent():
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: the guest dies with its VMM

        # PDEATHSIG follows the forking *thread*: fork from one that lives as
        # long as the process, not from a request's thread.
        done = threading.Event()

        def spawn():
            self.proc = subprocess.Popen(cmd, preexec_fn=die_with_parent,
                                         stdin=subprocess.DEVNULL)
            done.set()
            threading.Event().wait()  # keep this thread (the agent's parent) alive
        threading.Thread(target=spawn, daemon=True).start()
        done.wait()
        log("guest agent started: %s (pid %d)" % (" ".join(cmd), self.proc.pid))

    def connect(self, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                return s
            except OSError:
                s.close()
                if time.monotonic() > end or (self.proc and self.proc.poll() is not None):
                    return None
                time.sleep(0.02)


def relay(a, b):
    """Copies bytes both ways until either side closes."""
    socks = [a, b]
    try:
        while True:
            r, _, _ = select.select(socks, [], [])
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


def vsock_conn(conn, vm):
    """One host connection on the hybrid vsock socket; vm has .agent (a
    GuestAgent or None), .started and .paused (the guest's vCPUs)."""
    line = b""
    try:
        conn.settimeout(10)
        while not line.endswith(b"\n") and len(line) < 64:
            c = conn.recv(1)
            if not c:
                conn.close()
                return
            line += c
        conn.settimeout(None)
    except OSError:
        conn.close()
        return
    parts = line.decode(errors="replace").split()
    ga = vm.agent
    if len(parts) != 2 or parts[0] != "CONNECT" or parts[1] != str(AGENT_PORT) \
            or ga is None or not vm.started:
        conn.close()
        return
    # Paused vCPUs: the guest answers once they run again.
    while vm.paused:
        time.sleep(0.02)
    up = ga.connect()
    if up is None:
        conn.close()
        return
    try:
        conn.sendall(b"OK 1073741824\n")
    except OSError:
        conn.close()
        up.close()
        return
    threading.Thread(target=relay, args=(conn, up), daemon=True).start()


def vsock_accept(lsock, vm):
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=vsock_conn, args=(conn, vm), daemon=True).start()


def serve_vsock(lsock, vm):
    if os.environ.get("EMBER_FAKE_GUEST_AGENT"):
        threading.Thread(target=vsock_accept, args=(lsock, vm), daemon=True).start()


def agent_from_env():
    ga = os.environ.get("EMBER_FAKE_GUEST_AGENT")
    return GuestAgent(ga) if ga else None


