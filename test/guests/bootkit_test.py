#!/usr/bin/python3
"""ember boot kit tests (ctest bootkit_boots): real QEMU TCG boots of the kit.

    bootkit_test.py KITDIR MKBOOTCFG [CASE...]

KITDIR holds vmlinux + initramfs.cpio.gz (target `bootkit`); MKBOOTCFG is the test
driver of the host writer (agent/image/bootcfg.c). Each case builds (once) an ext4
rootfs from busybox-static with `mkfs.ext4 -d` (no mount, no root), writes a boot
config with MKBOOTCFG (or corrupts one), boots QEMU -M microvm with the machine options
emberd's QEMU driver uses (128 MiB), the rootfs as the first virtio disk and the config
as a second read-only one, and checks the console and that QEMU exits by itself
(init powers off). Prints the boot time (kernel start -> entrypoint's first line, from
the guest's /proc/uptime). Exit 77 (ctest SKIP) when QEMU, mkfs.ext4, busybox or the
kit is missing.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guest_shell  # noqa: E402

QEMU = shutil.which("qemu-system-x86_64")
MKFS = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
BUSYBOX = "/bin/busybox"
BOOT_TIMEOUT = 180


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


class Kit:
    def __init__(self, kitdir, mkbootcfg, work):
        self.kitdir = kitdir
        self.mkbootcfg = mkbootcfg
        self.work = work
        self.rootfs = None
        self.n = 0

    def build_rootfs(self):
        """busybox-static + /etc/passwd,group + a few folders, as ext4 without mounting."""
        tree = os.path.join(self.work, "tree")
        for d in ("bin", "etc", "home/app", "tmp", "data"):
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        os.chmod(os.path.join(tree, "tmp"), 0o1777)
        shutil.copy(BUSYBOX, os.path.join(tree, "bin/busybox"))
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            if a != "busybox":
                os.symlink("busybox", os.path.join(tree, "bin", a))
        with open(os.path.join(tree, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n"
                    "app:x:1000:1000:App:/home/app:/bin/sh\n")
        with open(os.path.join(tree, "etc/group"), "w") as f:
            f.write("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
        self.tree = tree
        self.rootfs = os.path.join(self.work, "rootfs.img")
        subprocess.run([MKFS, "-q", "-F", "-d", tree, self.rootfs, "32M"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def config(self, argv, env=(), workdir=None, user=None, hostname=None, net=(), dns=()):
        self.n += 1
        path = os.path.join(self.work, "cfg%d.img" % self.n)
        cmd = [self.mkbootcfg, path]
        for n in net:
            cmd += ["-n", n]
        for d in dns:
            cmd += ["-d", d]
        for e in env:
            cmd += ["-e", e]
        if workdir:
            cmd += ["-w", workdir]
        if user:
            cmd += ["-u", user]
        if hostname:
            cmd += ["-H", hostname]
        subprocess.run(cmd + ["--"] + list(argv), check=True)
        return path

    def boot(self, cfg, name, during=None, rootfs=None, q35=False, nics=(), agent=False):
        """Boots with a fresh copy of the rootfs; returns (console text, seconds, rc).
        during(vmdir, console) runs while the guest is up (e.g. QMP commands).
        nics: MACs of virtio NICs, each on a QEMU hub of its own with no other port
        (no host backend: no packet leaves QEMU). agent: a virtio-serial port named
        org.ember.agent.0 on a unix socket chardev, vmdir/agent.sock (QEMU listens)."""
        vm = os.path.join(self.work, name)
        os.makedirs(vm)
        disk = os.path.join(vm, "rootfs.img")
        shutil.copy(rootfs or self.rootfs, disk)
        con = os.path.join(vm, "console.log")
        qmp = os.path.join(vm, "qmp.sock")
        # The QEMU driver's options: microvm (virtio-mmio) by default, q35 (virtio-pci).
        machine = "q35" if q35 else "microvm,isa-serial=off,x-option-roms=off"
        bus = "pci" if q35 else "device"
        args = [QEMU, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-machine", machine + ",memory-backend=ram",
                "-accel", "tcg", "-m", "128M",
                "-object", "memory-backend-ram,id=ram,size=128M",
                "-kernel", os.path.join(self.kitdir, "vmlinux"),
                "-initrd", os.path.join(self.kitdir, "initramfs.cpio.gz"),
                "-append", guest_shell.linux_cmdline(),
                "-chardev", "file,id=con,path=%s" % con,
                "-device", "isa-serial,chardev=con,index=0",
                "-chardev", "socket,id=qmp,path=%s,server=on,wait=off" % qmp,
                "-mon", "chardev=qmp,mode=control",
                "-drive", "file=%s,if=none,id=disk0,format=raw,readonly=off" % disk,
                "-device", "virtio-blk-%s,drive=disk0" % bus,
                "-drive", "file=%s,if=none,id=disk1,format=raw,readonly=on" % cfg,
                "-device", "virtio-blk-%s,drive=disk1" % bus]
        for i, mac in enumerate(nics):
            args += ["-netdev", "hubport,id=n%d,hubid=%d" % (i, i),
                     "-device", "virtio-net-%s,netdev=n%d,mac=%s" % (bus, i, mac)]
        if agent:
            args += ["-device", "virtio-serial-%s" % bus,
                     "-chardev", "socket,id=ga,path=%s,server=on,wait=off"
                     % os.path.join(vm, "agent.sock"),
                     "-device", "virtserialport,chardev=ga,name=org.ember.agent.0"]
        t0 = time.monotonic()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if during is not None:
                during(vm, con)
            rc = p.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        secs = time.monotonic() - t0
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        try:
            with open(con, "rb") as f:
                text = f.read().decode("utf-8", "replace").replace("\r", "")
        except FileNotFoundError:
            text = ""
        if err.strip():
            text += "\n[qemu stderr] " + err
        return text, secs, rc


def qmp(path, *commands):
    """Runs QMP commands: names, or (name, arguments) pairs."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()  # greeting
    for c in ("qmp_capabilities",) + commands:
        msg = {"execute": c} if isinstance(c, str) else {"execute": c[0], "arguments": c[1]}
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        while True:
            line = json.loads(f.readline())
            if "return" in line or "error" in line:
                break
    s.close()


FAILS = []


def check(name, cond, text):
    if cond:
        print("  ok: " + name)
    else:
        print("  FAIL: " + name)
        FAILS.append(name)
        print("---- console ----\n" + text + "\n-----------------")


def exit_line(text):
    m = re.findall(r"^EMBER-EXIT (.*)$", text, re.M)
    return m[-1] if m else None


# --- cases ----------------------------------------------------------------------------
def case_basic(k):
    """argv, env, workdir (created), user by name (+ supplementary group), hostname,
    PATH/HOME defaults, exit code; boot time from /proc/uptime."""
    cfg = k.config(["/bin/sh", "-c", 'cat /proc/uptime; echo "args:$0:$1:$2"; id; pwd; '
                    'hostname; echo "FOO=$FOO HOME=$HOME PATH=$PATH"; '
                    'grep -c " / ext4 rw" /proc/mounts; exit 3', "a b", "c"],
                   env=["FOO=bar baz"], workdir="/home/app/work", user="app",
                   hostname="kit-test")
    text, secs, rc = k.boot(cfg, "basic")
    up = re.search(r"^(\d+\.\d+) \d+\.\d+$", text, re.M)
    if up:
        print("  boot: kernel start -> entrypoint %.2f s (guest uptime); QEMU start -> "
              "poweroff %.2f s (host)" % (float(up.group(1)), secs))
    check("entrypoint ran first (uptime line)", up is not None, text)
    check("argv", "args:a b:c:" in text, text)
    check("user app + staff", re.search(r"uid=1000\(app\) gid=1000\(app\) groups=.*50\(staff\)",
                                        text) is not None, text)
    check("workdir created", "\n/home/app/work\n" in text, text)
    check("hostname", "\nkit-test\n" in text, text)
    check("env + defaults", "FOO=bar baz HOME=/home/app PATH=/usr/local/sbin:/usr/local/bin:"
          "/usr/sbin:/usr/bin:/sbin:/bin" in text, text)
    check("rootfs ext4 read-write", re.search(r"^1$", text, re.M) is not None, text)
    check("exit line code=3", exit_line(text) == "code=3", text)
    check("QEMU exited by itself", rc is not None, text)


def case_numeric_user(k):
    """uid:gid not in /etc/passwd, container mounts present, environment PATH kept."""
    cfg = k.config(["sh", "-c", "id; echo HOME=$HOME PATH=$PATH; "
                    "for m in /proc /sys /dev /dev/pts /dev/shm /dev/mqueue; do "
                    "grep -q \" $m \" /proc/mounts && echo mounted:$m; done; "
                    "[ -L /dev/fd ] && [ -L /dev/ptmx ] && echo links-ok; "
                    "echo lo-flags=$(cat /sys/class/net/lo/flags); "
                    "for m in virtio_blk virtio_net virtio_console ext4 vsock "
                    "vmw_vsock_virtio_transport erofs overlay evdev button; do "
                    "grep -q \"^$m \" /proc/modules && echo loaded:$m; done; exit 0"],
                   env=["PATH=/bin"], user="1234:50")
    text, _, rc = k.boot(cfg, "numeric")
    check("uid 1234 gid 50", "uid=1234 gid=50" in text, text)
    check("HOME=/ for an unknown uid, PATH from the config", "HOME=/ PATH=/bin" in text, text)
    for m in ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
        check("mount " + m, "mounted:%s\n" % m in text, text)
    check("/dev/fd and /dev/ptmx links", "links-ok" in text, text)
    check("loopback up", "lo-flags=0x9\n" in text, text)
    for m in ("virtio_blk", "virtio_net", "virtio_console", "ext4", "vsock",
              "vmw_vsock_virtio_transport", "erofs", "overlay", "evdev", "button"):
        check("module " + m, "loaded:%s\n" % m in text, text)
    check("no module load failure", "ember-init: module" not in text, text)
    check("no agent transport: one line", re.findall(r"ember-agent: .*", text) ==
          ["ember-agent: no virtio-serial port org.ember.agent.0 and no vsock: no guest agent"],
          text)
    check("exit line code=0", exit_line(text) == "code=0", text)


def case_signal_exit(k):
    cfg = k.config(["/bin/sh", "-c", "echo dying; kill -KILL $$"])
    text, _, rc = k.boot(cfg, "killed")
    check("exit line signal=9", exit_line(text) == "signal=9", text)


def case_orphans(k):
    """Orphans reparented to PID 1 exit; init reaps them: no zombie in /proc."""
    cfg = k.config(["/bin/sh", "-c",
                    "for i in 1 2 3; do sh -c 'sleep 0.3 & exit 0'; done; "
                    "sh -c 'exit 0' & "
                    "sleep 2; wait; "
                    "echo zombies=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ')"])
    text, _, rc = k.boot(cfg, "orphans")
    check("no zombies", "zombies=0" in text, text)
    check("exit line code=0", exit_line(text) == "code=0", text)


def case_forward_inside(k):
    """A signal sent to PID 1 (kill -TERM 1 from the guest) reaches the workload."""
    cfg = k.config(["/bin/sh", "-c", "trap 'echo got-TERM; exit 42' TERM; "
                    "kill -TERM 1; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
                    "echo not-forwarded"])
    text, _, rc = k.boot(cfg, "forward")
    check("SIGTERM forwarded", "got-TERM" in text, text)
    check("exit line code=42", exit_line(text) == "code=42", text)


def case_powerdown(k):
    """QMP system_powerdown (emberd's graceful stop) -> ACPI power button -> SIGTERM."""
    cfg = k.config(["/bin/sh", "-c", "trap 'echo got-TERM; exit 42' TERM; echo ready; "
                    "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                    "echo no-powerdown"])

    def during(vm, con):
        guest_shell.wait_for_console(con, "ready", timeout=BOOT_TIMEOUT)
        qmp(os.path.join(vm, "qmp.sock"), "system_powerdown")

    text, _, rc = k.boot(cfg, "powerdown", during)
    check("power button -> SIGTERM", "got-TERM" in text, text)
    check("exit line code=42", exit_line(text) == "code=42", text)
    check("QEMU exited by itself", rc is not None, text)


def case_exec_missing(k):
    cfg = k.config(["/no/such/program"])
    text, _, rc = k.boot(cfg, "nocmd")
    check("exec error named", "exec /no/such/program" in text, text)
    check("exit line code=127", exit_line(text) == "code=127", text)


def case_unknown_user(k):
    cfg = k.config(["/bin/true"], user="nobody")
    text, _, rc = k.boot(cfg, "nouser")
    check("user error named", "user 'nobody' not found" in text, text)
    check("exit line init-error", exit_line(text) == "init-error", text)
    check("QEMU exited by itself", rc is not None, text)


def corrupt(k, name, mutate, want):
    src = k.config(["/bin/sh", "-c", "echo SHOULD-NOT-RUN"])
    with open(src, "rb") as f:
        data = bytearray(f.read())
    data = mutate(data)
    path = os.path.join(k.work, "bad-%s.img" % name)
    with open(path, "wb") as f:
        f.write(data)
    text, _, rc = k.boot(path, "bad-" + name)
    check("%s: reason '%s'" % (name, want), want in text, text)
    check("%s: workload not run" % name, "SHOULD-NOT-RUN" not in text, text)
    check("%s: exit line init-error" % name, exit_line(text) == "init-error", text)
    check("%s: QEMU exited by itself (no hang)" % name, rc is not None, text)


def set32(data, off, v):
    data[off:off + 4] = struct.pack("<I", v)
    return data


def case_corrupt(k):
    corrupt(k, "magic", lambda d: d.__setitem__(slice(0, 8), b"NOTEMBER") or d,
            "no boot config found")
    corrupt(k, "checksum", lambda d: d.__setitem__(40, d[40] ^ 0xFF) or d, "checksum mismatch")
    corrupt(k, "oversized", lambda d: set32(d, 16, 0x7FFFFFFF), "exceeds")
    # truncated: the header claims more payload than the disk holds
    corrupt(k, "truncated", lambda d: set32(d, 16, len(d)), "truncated")


def case_erofs(k):
    """An erofs rootfs: read-only image under an overlay with a tmpfs upper layer."""
    mkfs = shutil.which("mkfs.erofs")
    if mkfs is None:
        print("  skipped: mkfs.erofs not installed (Debian erofs-utils)")
        return
    img = os.path.join(k.work, "rootfs.erofs")
    subprocess.run([mkfs, "--quiet", img, k.tree], check=True, stdout=subprocess.DEVNULL)
    cfg = k.config(["/bin/sh", "-c", "grep -o '^overlay / overlay rw' /proc/mounts; "
                    "echo hi > /written && cat /written"])
    text, _, rc = k.boot(cfg, "erofs", rootfs=img)
    check("overlay root", "overlay / overlay rw" in text, text)
    check("writable", "\nhi\n" in text, text)
    check("exit line code=0", exit_line(text) == "code=0", text)


def case_q35(k):
    """-M q35: the disks on virtio-pci."""
    cfg = k.config(["/bin/sh", "-c", "ls /sys/bus/pci/drivers/; exit 5"])
    text, _, rc = k.boot(cfg, "q35", q35=True)
    check("virtio-pci driver bound", "virtio-pci" in text, text)
    check("exit line code=5", exit_line(text) == "code=5", text)


def case_ctrl_alt_del(k):
    """Ctrl-Alt-Del (what Firecracker's SendCtrlAltDel does; here on q35's i8042 with
    QMP send-key) -> the kernel signals PID 1 with SIGINT -> forwarded."""
    cfg = k.config(["/bin/sh", "-c", "trap 'echo got-INT; exit 43' INT; echo ready; "
                    "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                    "echo no-cad"])
    keys = {"keys": [{"type": "qcode", "data": q} for q in ("ctrl", "alt", "delete")]}

    def during(vm, con):
        guest_shell.wait_for_console(con, "ready", timeout=BOOT_TIMEOUT)
        qmp(os.path.join(vm, "qmp.sock"), ("send-key", keys))

    text, _, rc = k.boot(cfg, "cad", during, q35=True)
    check("Ctrl-Alt-Del -> SIGINT", "got-INT" in text, text)
    check("exit line code=43", exit_line(text) == "code=43", text)


class Agent:
    """A minimal host side of guest/agent_proto.h (frames, records, windows)."""
    MAGIC = 0x41474d45
    HELLO, HELLO_ACK, EXEC, STARTED, STDIN_EOF, STDOUT, STDERR, EXIT = 1, 2, 10, 11, 13, 14, 15, 18
    PUT, READY, DATA, END, DONE, GET, INFO, WINDOW, ERROR = 20, 21, 22, 23, 24, 25, 26, 30, 32
    R_VERSION, R_NONCE, R_ARG, R_USER, R_PID, R_EXIT_CODE, R_SIGNUM = 1, 2, 10, 13, 17, 18, 19
    R_PATH, R_MODE, R_SIZE, R_BYTES, R_CODE, R_MSG = 20, 21, 22, 23, 24, 25

    def __init__(self, path, timeout=120):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    @staticmethod
    def rec(tag, value):
        if isinstance(value, str):
            value = value.encode()
        return struct.pack("<HHI", tag, 0, len(value)) + value

    @staticmethod
    def recs(payload):
        out, pos = {}, 0
        while pos + 8 <= len(payload):
            tag, _, n = struct.unpack_from("<HHI", payload, pos)
            out.setdefault(tag, payload[pos + 8:pos + 8 + n])
            pos += 8 + n
        return out

    def send(self, typ, ch, payload=b""):
        self.s.sendall(struct.pack("<IBBHII", self.MAGIC, typ, 0, 0, ch, len(payload)) + payload)

    def recv(self):
        while True:
            i = self.buf.find(struct.pack("<I", self.MAGIC))
            if i > 0:
                self.buf = self.buf[i:]
            if len(self.buf) >= 16 and i == 0:
                _, typ, _, _, ch, n = struct.unpack_from("<IBBHII", self.buf)
                if len(self.buf) >= 16 + n:
                    payload = self.buf[16:16 + n]
                    self.buf = self.buf[16 + n:]
                    return typ, ch, payload
            data = self.s.recv(65536)
            if not data:
                raise EOFError("agent connection closed")
            self.buf += data

    def hello(self, nonce):
        self.send(self.HELLO, 0, self.rec(self.R_VERSION, struct.pack("<I", 1)) +
                  self.rec(self.R_NONCE, struct.pack("<Q", nonce)))
        while True:
            typ, _, p = self.recv()
            if typ == self.HELLO_ACK and self.recs(p).get(self.R_NONCE) == struct.pack("<Q", nonce):
                return True

    def run(self, ch, argv, user=None):
        """(exit code or -signal, stdout, stderr) or ('error', code, message)."""
        p = b"".join(self.rec(self.R_ARG, a) for a in argv)
        if user:
            p += self.rec(self.R_USER, user)
        self.send(self.EXEC, ch, p)
        out, err = b"", b""
        while True:
            typ, c, p = self.recv()
            if c != ch:
                continue
            if typ in (self.STDOUT, self.STDERR):
                if typ == self.STDOUT:
                    out += p
                else:
                    err += p
                self.send(self.WINDOW, ch, self.rec(self.R_BYTES, struct.pack("<I", len(p))))
            elif typ == self.EXIT:
                r = self.recs(p)
                code = (struct.unpack("<I", r[self.R_EXIT_CODE])[0] if self.R_EXIT_CODE in r
                        else -struct.unpack("<I", r[self.R_SIGNUM])[0])
                return code, out.decode(errors="replace"), err.decode(errors="replace")
            elif typ == self.ERROR:
                r = self.recs(p)
                return ("error", struct.unpack("<I", r[self.R_CODE])[0],
                        r.get(self.R_MSG, b"").decode(errors="replace"))

    def put(self, ch, path, data, mode=0o600):
        self.send(self.PUT, ch, self.rec(self.R_PATH, path) +
                  self.rec(self.R_MODE, struct.pack("<I", mode)) +
                  self.rec(self.R_SIZE, struct.pack("<Q", len(data))))
        typ, _, p = self.recv()
        if typ != self.READY:
            return typ
        off, inflight = 0, 0
        while off < len(data):
            chunk = data[off:off + 32768]
            while inflight + len(chunk) > 256 * 1024:
                typ, _, p = self.recv()
                if typ == self.WINDOW:
                    inflight -= struct.unpack("<I", self.recs(p)[self.R_BYTES])[0]
            self.send(self.DATA, ch, chunk)
            off += len(chunk)
            inflight += len(chunk)
        self.send(self.END, ch)
        while True:
            typ, c, p = self.recv()
            if c == ch and typ in (self.DONE, self.ERROR):
                return typ

    def get(self, ch, path):
        self.send(self.GET, ch, self.rec(self.R_PATH, path))
        typ, _, p = self.recv()
        if typ != self.INFO:
            return None
        data = bytearray()
        while True:
            typ, c, p = self.recv()
            if typ == self.DATA:
                data += p
                self.send(self.WINDOW, ch, self.rec(self.R_BYTES, struct.pack("<I", len(p))))
            elif typ == self.END:
                return bytes(data)


def case_agent(k, q35=False):
    """The guest agent over a virtio-serial port: HELLO_ACK, exec in the guest (output,
    exit code, user switch), put + get of a file, a reconnect (new session), the agent
    killed and restarted by init, then an exec that ends the workload."""
    cfg = k.config(["/bin/sh", "-c", "echo ready; i=0; while [ ! -e /tmp/stop ] && "
                    "[ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo stopped"])
    results = {}

    def during(vm, con):
        try:
            talk(vm, con)
        except Exception as e:  # noqa: BLE001 (reported as a failed check)
            results["exception"] = repr(e)

    def talk(vm, con):
        guest_shell.wait_for_console(con, "ready", timeout=BOOT_TIMEOUT)
        a = Agent(os.path.join(vm, "agent.sock"))
        a.s.sendall(b"stale bytes EMGA")
        results["hello"] = a.hello(0x1234)
        results["echo"] = a.run(1, ["echo", "hi"])
        results["exit"] = a.run(2, ["sh", "-c", "echo err >&2; exit 7"])
        results["user"] = a.run(3, ["id"], user="app")
        results["nouser"] = a.run(4, ["id"], user="nobody")
        results["missing"] = a.run(5, ["/no/such/program"])
        blob = bytes(range(256)) * 4000
        results["put"] = a.put(6, "/tmp/blob", blob, 0o640)
        results["stat"] = a.run(7, ["stat", "-c", "%s %a", "/tmp/blob"])
        results["get"] = a.get(8, "/tmp/blob") == blob
        a.s.close()
        b = Agent(os.path.join(vm, "agent.sock"))
        results["rehello"] = b.hello(0x5678)
        # The agent killed (by its own exec): init restarts it; a new HELLO on the
        # same host connection reaches the new one.
        b.send(Agent.EXEC, 2, Agent.rec(Agent.R_ARG, "sh") + Agent.rec(Agent.R_ARG, "-c") +
               Agent.rec(Agent.R_ARG, "kill -KILL $PPID"))
        time.sleep(2)
        b.s.settimeout(5)
        for attempt in range(10):
            try:
                results["restarted"] = b.hello(0x9abc + attempt)
                break
            except socket.timeout:
                pass
        b.s.settimeout(120)
        results["stop"] = b.run(1, ["touch", "/tmp/stop"])
        b.s.close()

    text, _, rc = k.boot(cfg, "agent-q35" if q35 else "agent", during, q35=q35, agent=True)
    check("no exception talking to the agent", "exception" not in results, text + str(results))
    check("HELLO_ACK after stale bytes", results.get("hello") is True, text)
    check("echo hi", results.get("echo") == (0, "hi\n", ""), text + str(results))
    check("exit code + stderr", results.get("exit") == (7, "", "err\n"), text + str(results))
    u = results.get("user")
    check("user app", u is not None and u[0] == 0 and "uid=1000(app)" in u[1],
          text + str(results))
    check("unknown user NO_USER", (results.get("nouser") or ("",))[:2] == ("error", 4),
          text + str(results))
    check("missing program NOT_FOUND", (results.get("missing") or ("",))[:2] == ("error", 2),
          text + str(results))
    check("put DONE", results.get("put") == Agent.DONE, text + str(results))
    check("put size and mode", results.get("stat") == (0, "1024000 640\n", ""),
          text + str(results))
    check("get returns the file", results.get("get") is True, text + str(results))
    check("reconnect: HELLO_ACK", results.get("rehello") is True, text + str(results))
    check("agent restarted by init", results.get("restarted") is True and
          "ember-init: guest agent died (signal 9): restarting it" in text, text + str(results))
    check("workload stopped by an exec", "\nstopped\n" in text and
          exit_line(text) == "code=0", text)
    check("QEMU exited by itself", rc is not None, text)


def case_agent_q35(k):
    case_agent(k, q35=True)


MAC_A = "02:e7:00:12:34:56"
MAC_B = "02:e7:00:12:34:57"
NET_SHOW = ("echo ==addr; ip -4 addr show; echo ==route; ip route; echo ==resolv; "
            "cat /etc/resolv.conf; echo ==links; for i in /sys/class/net/*; do "
            "echo link ${i##*/} $(cat $i/address) mtu=$(cat $i/mtu) flags=$(cat $i/flags); "
            "done; echo ==end")


def init_net_line(text, mac):
    """The init's line for the interface with that MAC: (ifname, rest) or None. Not
    anchored at a line start: on q35 the firmware's last words have no newline."""
    m = re.search(r"ember-init: net (\S+) %s (.*)$" % re.escape(mac), text, re.M)
    return (m.group(1), m.group(2)) if m else None


def add_records(path, records):
    """Appends raw (tag, bytes) records to a boot config, fixing length and CRC:
    what a buggy or hostile writer could produce (the real one refuses)."""
    with open(path, "rb") as f:
        data = f.read()
    plen = struct.unpack_from("<I", data, 16)[0]
    payload = data[32:32 + plen]
    for tag, value in records:
        payload += struct.pack("<HHI", tag, 0, len(value)) + value
    head = bytearray(data[:32])
    struct.pack_into("<II", head, 16, len(payload), zlib.crc32(payload) & 0xFFFFFFFF)
    out = bytes(head) + payload
    out += b"\0" * (-len(out) % 65536)
    with open(path, "wb") as f:
        f.write(out)


def case_net(k):
    """Two NICs configured from NET records by MAC (records in the other order than
    the devices): address/prefix, MTU, default route via the gateway, the init's log
    line; an interface without a gateway; /etc/resolv.conf from the DNS records."""
    cfg = k.config(["/bin/sh", "-c", NET_SHOW],
                   net=["%s 192.168.7.9/24 -" % MAC_B,
                        "%s 10.88.0.2/16 10.88.0.1 mtu=1400" % MAC_A],
                   dns=["10.88.0.1", "10.88.0.53"])
    text, _, rc = k.boot(cfg, "net", nics=(MAC_A, MAC_B))
    a = init_net_line(text, MAC_A)
    b = init_net_line(text, MAC_B)
    check("init line for %s" % MAC_A,
          a is not None and a[1] == "10.88.0.2/16 via 10.88.0.1 mtu 1400", text)
    check("init line for %s" % MAC_B, b is not None and b[1] == "192.168.7.9/24 via -", text)
    if a is None or b is None:
        return
    ia, ib = a[0], b[0]
    check("two interfaces", ia != ib, text)
    check("address %s 10.88.0.2/16" % ia, re.search(
        r"^\s+inet 10\.88\.0\.2/16 brd 10\.88\.255\.255 scope global %s$" % ia, text,
        re.M) is not None, text)
    check("address %s 192.168.7.9/24" % ib, re.search(
        r"^\s+inet 192\.168\.7\.9/24 brd 192\.168\.7\.255 scope global %s$" % ib, text,
        re.M) is not None, text)
    check("default route via 10.88.0.1 on %s" % ia,
          re.search(r"^default via 10\.88\.0\.1 dev %s" % ia, text, re.M) is not None, text)
    check("one default route", len(re.findall(r"^default ", text, re.M)) == 1, text)
    check("subnet routes", re.search(r"^10\.88\.0\.0/16 dev %s " % ia, text, re.M)
          and re.search(r"^192\.168\.7\.0/24 dev %s " % ib, text, re.M), text)
    check("MAC and MTU 1400 on %s" % ia,
          re.search(r"^link %s %s mtu=1400 flags=0x1[01]03$" % (ia, MAC_A), text, re.M)
          is not None, text)
    check("default MTU on %s" % ib,
          re.search(r"^link %s %s mtu=1500 " % (ib, MAC_B), text, re.M) is not None, text)
    check("resolv.conf", "==resolv\n# from ember's boot config\nnameserver 10.88.0.1\n"
          "nameserver 10.88.0.53\n==links" in text, text)
    check("init dns line", "ember-init: dns: 2 nameservers in /etc/resolv.conf" in text, text)
    check("exit line code=0", exit_line(text) == "code=0", text)


def case_net_missing(k):
    """A NET record whose MAC matches no NIC: logged after the wait, the other NIC is
    configured, no resolv.conf without DNS records, the workload runs."""
    cfg = k.config(["/bin/sh", "-c", "echo RAN; " + NET_SHOW + "; exit 4"],
                   net=["02:e7:00:00:00:99 10.1.0.2/24 10.1.0.1",
                        "%s 10.88.0.2/16 10.88.0.1" % MAC_A])
    text, _, rc = k.boot(cfg, "net-missing", nics=(MAC_A,))
    check("missing MAC logged", "ember-init: net: no interface with MAC 02:e7:00:00:00:99 "
          "(after 2000 ms): skipped" in text, text)
    a = init_net_line(text, MAC_A)
    check("other interface configured", a is not None and
          a[1] == "10.88.0.2/16 via 10.88.0.1", text)
    check("no route to the missing interface's subnet", "10.1.0." not in
          text.split("==route", 1)[-1], text)
    check("no resolv.conf written", "ember-init: dns" not in text, text)
    check("workload ran", "\nRAN\n" in text, text)
    check("exit line code=4", exit_line(text) == "code=4", text)
    check("QEMU exited by itself", rc is not None, text)


def case_net_malformed(k):
    """Malformed NET/DNS records (a writer bug or a hostile host): each logged and
    skipped, the valid ones applied, an unknown optional tag ignored, the workload runs."""
    cfg = k.config(["/bin/sh", "-c", "echo RAN; " + NET_SHOW],
                   net=["%s 10.88.0.2/16 10.88.0.1" % MAC_A], dns=["10.88.0.1"])
    add_records(cfg, [
        (0x8001, b"garbage"),
        (0x8001, b"02:e7:00:00:00:07 10.0.0.300/24 -"),
        (0x8001, b"02:e7:00:00:00:08 10.0.0.2/24 10.9.0.1"),
        (0x8001, ("%s 10.99.0.2/24 -" % MAC_A).encode()),
        (0x8001, b"02:e7:00:00:00:09 10.0.0.2/24 -\0"),
        (0x8002, b"10.0.0.1 "),
        (0x8042, b"a later optional setting"),
    ])
    text, _, rc = k.boot(cfg, "net-malformed", nics=(MAC_A,))
    for n, why in ((2, "no MAC"), (3, "no IPv4 address"), (4, "the gateway is outside"),
                   (5, "its MAC is already configured"), (6, "contains a NUL byte")):
        check("net record %d skipped (%s)" % (n, why), re.search(
            r"ember-init: net record %d skipped: %s.*'$" % (n, re.escape(why)), text, re.M)
            is not None, text)
    check("dns record 2 skipped", "ember-init: dns record 2 skipped: not a dotted-quad" in text,
          text)
    a = init_net_line(text, MAC_A)
    check("valid record applied", a is not None and a[1] == "10.88.0.2/16 via 10.88.0.1", text)
    check("only the valid address", "10.99.0.2" not in text.split("==addr", 1)[-1], text)
    check("resolv.conf from the valid record", "==resolv\n# from ember's boot config\n"
          "nameserver 10.88.0.1\n==links" in text, text)
    check("workload ran", "\nRAN\n" in text, text)
    check("exit line code=0", exit_line(text) == "code=0", text)


def case_net_q35(k):
    """-M q35: the NIC on virtio-pci (Cloud Hypervisor's transport), found by MAC too."""
    cfg = k.config(["/bin/sh", "-c", NET_SHOW], net=["%s 10.88.0.2/16 10.88.0.1" % MAC_A])
    text, _, rc = k.boot(cfg, "net-q35", q35=True, nics=(MAC_A,))
    a = init_net_line(text, MAC_A)
    check("init line", a is not None and a[1] == "10.88.0.2/16 via 10.88.0.1", text)
    if a is None:
        return
    check("address", re.search(r"^\s+inet 10\.88\.0\.2/16 .* %s$" % a[0], text, re.M)
          is not None, text)
    check("default route", re.search(r"^default via 10\.88\.0\.1 dev %s" % a[0], text, re.M)
          is not None, text)
    check("exit line code=0", exit_line(text) == "code=0", text)


CASES = {
    "basic": case_basic, "numeric_user": case_numeric_user, "signal_exit": case_signal_exit,
    "orphans": case_orphans, "forward_inside": case_forward_inside,
    "powerdown": case_powerdown, "exec_missing": case_exec_missing,
    "unknown_user": case_unknown_user, "corrupt": case_corrupt, "erofs": case_erofs,
    "q35": case_q35, "ctrl_alt_del": case_ctrl_alt_del, "net": case_net,
    "net_missing": case_net_missing, "net_malformed": case_net_malformed,
    "net_q35": case_net_q35, "agent": case_agent, "agent_q35": case_agent_q35,
}


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    kitdir, mkbootcfg = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CASES)
    if QEMU is None:
        skip("qemu-system-x86_64 not installed (Debian qemu-system-x86)")
    if not os.path.exists(MKFS):
        skip("mkfs.ext4 not installed (Debian e2fsprogs)")
    if not os.path.exists(BUSYBOX):
        skip("%s missing (Debian busybox-static)" % BUSYBOX)
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kitdir, f)):
            skip("%s/%s missing (build target bootkit)" % (kitdir, f))
    work = tempfile.mkdtemp(prefix="bootkit_test.")
    k = Kit(kitdir, mkbootcfg, work)
    try:
        k.build_rootfs()
        for n in names:
            print("case %s" % n)
            CASES[n](k)
    finally:
        if FAILS:
            print("work dir kept: " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if FAILS:
        print("FAILED: " + ", ".join(FAILS))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
