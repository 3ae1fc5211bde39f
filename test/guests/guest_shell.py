#!/usr/bin/python3
"""ember test helper: talk to the Linux test guest's control shell and console.

Contract (test/guests/linux/README.md): the guest runs an
echo-less, prompt-less busybox ash on its second serial port, which QEMU exposes as a
unix stream socket (chardev socket, server=on, wait=off); the console (ttyS0) is a
file the guest writes `EMBER-GUEST-READY` and `ember-heartbeat <n>` lines to.

    from guest_shell import GuestShell, wait_for_console
    wait_for_console(vm_dir + "/console.log", "EMBER-GUEST-READY", timeout=120)
    with GuestShell(vm_dir + "/serial1.sock") as sh:
        sh.run("echo hi > /tmp/a")
        assert sh.run("cat /tmp/a") == "hi\\n"

Every command is followed by an `echo <marker> $?` on the same connection; run()
returns what the guest printed before the marker (CRs removed) and remembers the exit
status in .last_status. Before the first command on a connection the shell is
synchronised (^U to drop any half line, then a marker echo), which discards banners
and stale output. If the connection is dead (the VM was stopped and restored by a new
QEMU that listens on the same path), run() reconnects, waiting for the socket to come
back, before sending. A connection lost after the command was sent raises
GuestShellError (the command may or may not have run) unless retry=True.

Self-test (no VM needed: a local pty-backed busybox ash stands in for the guest):
    /usr/bin/python3 test/guests/guest_shell.py --self-test
Run one command against a real guest:
    /usr/bin/python3 test/guests/guest_shell.py SOCKET 'uname -a'
"""

import errno
import os
import re
import secrets
import select
import socket
import sys
import time

__all__ = ["GuestShell", "GuestShellError", "wait_for_console", "linux_cmdline"]


class GuestShellError(Exception):
    """Timeout, lost connection or unreachable guest shell."""


class GuestShell:
    def __init__(self, socket_path, connect_timeout=30.0):
        self.path = socket_path
        self.connect_timeout = connect_timeout
        self.sock = None
        self.synced = False
        self.last_status = None
        self._buf = b""

    # -- connection ---------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.synced = False
        self._buf = b""

    def connect(self, timeout=None):
        """(Re)connect, retrying while the socket is absent or refuses (QEMU not yet
        listening, e.g. during a restore)."""
        self.close()
        deadline = time.monotonic() + (self.connect_timeout if timeout is None else timeout)
        last = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(self.path)
                self.sock = s
                return
            except OSError as e:
                s.close()
                if e.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                    raise GuestShellError(f"connect {self.path}: {e}") from e
                last = e
            if time.monotonic() >= deadline:
                raise GuestShellError(f"connect {self.path}: timed out ({last})")
            time.sleep(0.1)

    def _alive(self):
        """False if the peer closed the connection (pending data is kept)."""
        if self.sock is None:
            return False
        try:
            while True:
                r, _, _ = select.select([self.sock], [], [], 0)
                if not r:
                    return True
                data = self.sock.recv(65536)
                if not data:
                    return False
                self._buf += data
        except OSError:
            return False

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ConnectionError(str(e)) from e

    def _read_until(self, pattern, deadline):
        """Read until regex `pattern` (bytes) matches; return (before, match)."""
        rx = re.compile(pattern)
        while True:
            m = rx.search(self._buf)
            if m:
                before = self._buf[: m.start()]
                self._buf = self._buf[m.end():]
                return before, m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if r:
                try:
                    data = self.sock.recv(65536)
                except OSError as e:
                    raise ConnectionError(str(e)) from e
                if not data:
                    raise ConnectionError("connection closed by peer")
                self._buf += data

    def sync(self, timeout=30.0):
        """Bring the shell to a known state: drop banners, stale output, half lines."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._alive():
                self.connect(max(0.1, deadline - time.monotonic()))
            tok = secrets.token_hex(6)
            try:
                # ^U (VKILL) erases a half-typed line left in the tty's input buffer.
                self._send(b"\x15echo __EMBER_SYNC_%s__\n" % tok.encode())
                self._read_until(rb"__EMBER_SYNC_%s__\n" % tok.encode(),
                                 min(deadline, time.monotonic() + 3.0))
                self.synced = True
                return
            except (TimeoutError, ConnectionError):
                # A shell that is (re)spawning, or a restore in progress: try again.
                if time.monotonic() >= deadline:
                    raise GuestShellError(f"no answer from guest shell on {self.path}")
                if not self._alive():
                    self.close()
                    time.sleep(0.1)

    # -- commands -----------------------------------------------------------------
    def run(self, cmd, timeout=30.0, retry=False, check=False):
        """Run one shell command line in the guest; return its output (str, CRs removed).
        Exit status -> self.last_status; check=True raises on non-zero status."""
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            if not self._alive():
                self.connect(max(0.1, deadline - time.monotonic()))
            if not self.synced:
                self.sync(max(0.1, deadline - time.monotonic()))
            tok = secrets.token_hex(6).encode()
            sent = False
            try:
                self._send(cmd.encode() + b"\n")
                sent = True
                self._send(b"echo __EMBER_END_%s__ $?\n" % tok)
                before, m = self._read_until(rb"__EMBER_END_%s__ (\d+)\n" % tok, deadline)
            except TimeoutError:
                self._interrupt()
                raise GuestShellError(f"timeout after {timeout}s running {cmd!r}") from None
            except ConnectionError as e:
                self.close()
                if (sent and not retry) or time.monotonic() >= deadline or attempts > 5:
                    raise GuestShellError(f"connection lost running {cmd!r}: {e}") from None
                continue
            self.last_status = int(m.group(1))
            out = before.replace(b"\r", b"").decode("utf-8", "replace")
            if check and self.last_status != 0:
                raise GuestShellError(f"{cmd!r} exited {self.last_status}: {out}")
            return out

    def _interrupt(self):
        """After a timeout: ^C the running command and resynchronise next time."""
        self.synced = False
        try:
            self._send(b"\x03")
        except (ConnectionError, AttributeError):
            pass


def host_tsc_khz():
    """The host TSC rate in kHz (TCG guests see the host TSC): the first `cpu MHz`
    of /proc/cpuinfo, else 2 GHz."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError, IndexError):
        pass
    return 2000000


def linux_cmdline(extra=""):
    """Kernel command line for the Linux test guest (see test/guests/linux/README.md:
    tsc_early_khz avoids a TSC-calibration hang under TCG)."""
    line = "console=ttyS0 panic=-1 quiet tsc_early_khz=%d" % host_tsc_khz()
    return line + (" " + extra if extra else "")


def wait_for_console(path, text, timeout=120.0, offset=0):
    """Wait until the file `path` contains `text` at or after byte `offset` (pass
    os.path.getsize(path) to wait for a new occurrence). Returns the whole line that
    contains it; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    needle = text.encode()
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            i = data.find(needle)
            if i >= 0:
                start = data.rfind(b"\n", 0, i) + 1
                end = data.find(b"\n", i)
                line = data[start: end if end >= 0 else len(data)]
                return line.replace(b"\r", b"").decode("utf-8", "replace")
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{text!r} not seen in {path} within {timeout}s")
        time.sleep(0.1)


# -- self-test ------------------------------------------------------------------------
def _fake_guest(sock_path):
    """Fork a stand-in for QEMU + guest: a unix server bridging one client at a time to
    a pty running `busybox sh -i` configured like the guest (no echo, no prompt)."""
    import pty
    import termios
    pid = os.fork()
    if pid:
        return pid
    try:
        master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        if os.fork() == 0:
            os.setsid()
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            import fcntl
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # like the guest's `setsid -c`
            os.environ.update(PS1="", PS2="")
            sh = "/bin/busybox" if os.path.exists("/bin/busybox") else "/bin/sh"
            os.execv(sh, [sh, "sh", "-i"] if sh.endswith("busybox") else [sh, "-i"])
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(sock_path)
        srv.listen(1)
        while True:
            c, _ = srv.accept()
            while True:
                r, _, _ = select.select([c, master], [], [])
                if master in r:
                    data = os.read(master, 4096)
                    try:
                        c.sendall(data)
                    except OSError:
                        pass
                if c in r:
                    data = c.recv(4096)
                    if not data:
                        break
                    if data.startswith(b"__DROP__"):  # simulate a restore: cut the link
                        break
                    os.write(master, data)
            c.close()
    finally:
        os._exit(0)


def _self_test():
    import tempfile
    import signal
    d = tempfile.mkdtemp(prefix="guest_shell.")
    path = os.path.join(d, "serial1.sock")
    pid = _fake_guest(path)
    try:
        sh = GuestShell(path, connect_timeout=10)
        assert sh.run("echo hi > %s/a; cat %s/a" % (d, d)) == "hi\n"
        assert sh.run("false") == "" and sh.last_status == 1
        out = sh.run("if then fi")  # syntax error: the interactive shell survives
        assert "syntax error" in out, out
        assert sh.run("printf 'a\\nb\\n'") == "a\nb\n"
        try:
            sh.run("sleep 30", timeout=1)
            raise AssertionError("no timeout")
        except GuestShellError:
            pass
        assert sh.run("echo after-timeout") == "after-timeout\n"
        sh._send(b"__DROP__")  # server drops the connection, as a restore does
        time.sleep(0.3)
        assert sh.run("cat %s/a" % d) == "hi\n"
        with open(os.path.join(d, "console.log"), "w") as f:
            f.write("boot\nEMBER-GUEST-READY\nember-heartbeat 1\n")
        assert wait_for_console(os.path.join(d, "console.log"), "heartbeat", 1) == \
            "ember-heartbeat 1"
        sh.close()
        print("guest_shell self-test: OK")
        return 0
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return _self_test()
    if len(argv) == 3:
        with GuestShell(argv[1]) as sh:
            sys.stdout.write(sh.run(argv[2]))
            return sh.last_status
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
