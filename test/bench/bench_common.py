"""bench_common: helpers shared by ember's benchmarks (test/bench/).

Benchmarks print figures; they never assert wall-clock times (the machines are
shared and noisy). Only functional failures (a guest that does not come back, a
snapshot of the wrong kind) make them fail.

Contents:
  Stats / table printing    pct(), summary(), print_table()
  QMP client                Qmp (unix socket, JSON lines, getfd with SCM_RIGHTS)
  Firecracker API client    fc_request() (HTTP/1.1 over AF_UNIX, stdlib only)
  System counters           proc_write_bytes(), disk_written_bytes()
  Console scanning          tiny_lines()
"""

import errno
import http.client
import json
import math
import os
import re
import shutil
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))



def skip(why):
    print("SKIP: %s" % why)
    sys.exit(77)


class BenchFailure(Exception):
    pass


def guest_files(guest_dir):
    d = os.path.abspath(guest_dir or "")
    k, i = os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz")
    if not (os.path.isfile(k) and os.path.isfile(i)):
        skip("Linux test guest not built (EMBER_TEST_GUEST_DIR=%r; build target guest_linux)" % d)
    if shutil.which("qemu-system-x86_64") is None:
        skip("qemu-system-x86_64 not installed")
    return k, i

def now():
    return time.monotonic()


# ---- statistics --------------------------------------------------------------

def pct(values, p):
    """Percentile by nearest rank (p in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = max(1, int(math.ceil(p / 100.0 * len(v))))
    return v[k - 1]


def ms(x):
    return "-" if x is None else "%.1f" % (x * 1000.0)


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else "%.2f" % r


def met(r, target):
    if r is None:
        return "n/a"
    return "MET" if r <= target else "NOT MET"


def print_table(title, header, rows):
    """Plain fixed-width table."""
    print()
    print(title)
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(str(c)))
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(header))
    print("  " + line)
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))


def mib(nbytes):
    return "-" if nbytes is None else "%.2f" % (nbytes / 1048576.0)


# ---- QMP ----------------------------------------------------------------------

class QmpError(Exception):
    pass


class Qmp:
    """Minimal synchronous QMP client. Events are discarded."""

    def __init__(self, path, timeout=10.0, proc=None, poll_s=0.005):
        """Connects to path, retrying every poll_s (as the driver does: 5 ms)
        while the socket is absent or refuses, for up to timeout seconds."""
        deadline = now() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(path)
                break
            except OSError as e:
                s.close()
                if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise
                if proc is not None and proc.poll() is not None:
                    raise QmpError("QEMU exited (%s) before its QMP socket answered" %
                                   proc.returncode)
                if now() > deadline:
                    raise QmpError("QMP socket %s did not answer" % path)
                time.sleep(poll_s)
        self.sock = s
        self.sock.settimeout(60)
        self.buf = b""
        self._read_msg()  # greeting
        self.cmd("qmp_capabilities")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_msg(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise QmpError("QMP connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None, fds=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        data = json.dumps(msg).encode() + b"\n"
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        while True:
            r = self._read_msg()
            if "event" in r:
                continue
            if "error" in r:
                raise QmpError("%s: %s" % (name, r["error"].get("desc")))
            return r.get("return")

    def migrate_wait(self, timeout=600.0):
        """Polls query-migrate with the driver's schedule (1, 2, 4, 8, 16, 20 ms...)."""
        deadline = now() + timeout
        sleep_ms = 1
        while True:
            r = self.cmd("query-migrate")
            st = r.get("status", "none")
            if st == "completed":
                return r
            if st in ("failed", "cancelled"):
                raise QmpError("migration %s: %s" % (st, r.get("error-desc")))
            if now() > deadline:
                raise QmpError("migration did not finish")
            time.sleep(sleep_ms / 1000.0)
            if sleep_ms < 20:
                sleep_ms *= 2


# ---- Firecracker API over AF_UNIX ----------------------------------------------

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def fc_request(sock_path, method, path, body=None, timeout=600):
    """One request to Firecracker's API; returns (status, parsed JSON or None).
    Raises RuntimeError with fault_message for a status >= 300."""
    c = _UnixHTTPConnection(sock_path, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        parsed = json.loads(raw) if raw else None
        if r.status >= 300:
            fm = parsed.get("fault_message") if isinstance(parsed, dict) else raw
            raise RuntimeError("firecracker %s %s -> %d: %s" % (method, path, r.status, fm))
        return r.status, parsed
    finally:
        c.close()


# ---- system counters ----------------------------------------------------------

def proc_write_bytes(pid):
    """write_bytes of /proc/<pid>/io: bytes this process caused to be sent to
    storage, counted when it dirties page cache (including pages of a shared
    file mapping such as QEMU's RAM file). None when unreadable."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _block_dev_of(path):
    """The /sys/block name backing path's file system (whole disk), or None."""
    try:
        st = os.stat(path)
        maj, mnr = os.major(st.st_dev), os.minor(st.st_dev)
        link = os.path.realpath("/sys/dev/block/%d:%d" % (maj, mnr))
        if not os.path.exists(link):
            return None
        if os.path.exists(os.path.join(link, "partition")):
            link = os.path.dirname(link)
        return os.path.basename(link)
    except OSError:
        return None


def disk_written_bytes(path):
    """Bytes written so far to the block device holding path (system-wide:
    other processes count too). None when unknown (tmpfs, overlay...)."""
    dev = _block_dev_of(path)
    if dev is None:
        return None
    try:
        with open("/sys/block/%s/stat" % dev) as f:
            fields = f.read().split()
        return int(fields[6]) * 512
    except (OSError, ValueError, IndexError):
        return None


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ---- tiny guest console ------------------------------------------------------

TINY_LINE = re.compile(rb"tiny counter=(\d+) marker=([0-9a-f]+)\r?\n")  # whole lines only


def tiny_lines(path, start=0):
    """[(counter, marker)] of complete console lines at or after byte start."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return []
    return [(int(m.group(1)), m.group(2).decode()) for m in TINY_LINE.finditer(data)]


def wait_tiny_counter_above(path, value, timeout=30.0, poll_s=0.002):
    """Waits until the console shows a counter > value; returns the time it was
    seen (monotonic) or raises TimeoutError."""
    deadline = now() + timeout
    while True:
        lines = tiny_lines(path)
        if lines and lines[-1][0] > value:
            return now()
        if now() > deadline:
            raise TimeoutError("console %s: no counter above %d" % (path, value))
        time.sleep(poll_s)
