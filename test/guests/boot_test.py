#!/usr/bin/python3
"""ember guest boot tests (ctest guest_tiny_boots, guest_linux_boots).

    boot_test.py tiny  DIR   boot DIR/tiny.elf under QEMU microvm (KVM if usable, else
                             TCG); pass when >= 3 lines `tiny counter=<n> marker=<hex>`
                             show n increasing by 1 and a constant marker.
    boot_test.py linux DIR   boot DIR/vmlinux + DIR/initramfs.cpio.gz under TCG exactly
                             like the QEMU driver (see linux/README.md); pass when
                             EMBER-GUEST-READY and a heartbeat appear and the control
                             shell on serial1.sock answers.
Exit 77 (ctest SKIP) with "SKIP: ..." when QEMU, /dev/kvm+TCG or the guest is missing.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guest_shell  # noqa: E402

QEMU = shutil.which("qemu-system-x86_64")


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def tiny_lines(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        return []
    return re.findall(r"tiny counter=(\d+) marker=([0-9a-f]{16})\n", text)


def run_tiny(elf, accel, work):
    out = os.path.join(work, "tiny-%s.txt" % accel)
    p = subprocess.Popen([QEMU, "-M", "microvm", "-accel", accel, "-m", "32", "-nodefaults",
                          "-no-user-config", "-nographic", "-kernel", elf,
                          "-serial", "file:" + out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and p.poll() is None:
            if len(tiny_lines(out)) >= 3:
                break
            time.sleep(0.2)
    finally:
        if p.poll() is None:
            p.kill()
        err = p.communicate()[1].decode(errors="replace")
    return tiny_lines(out), err


def test_tiny(d):
    elf = os.path.join(d, "tiny.elf")
    if not os.path.exists(elf):
        skip("%s missing (build target guest_tiny)" % elf)
    work = tempfile.mkdtemp(prefix="guest_tiny.")
    try:
        accels = ["tcg"]
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            accels.insert(0, "kvm")
        for accel in accels:
            lines, err = run_tiny(elf, accel, work)
            if not lines and accel == "kvm":
                print("kvm gave no output, trying tcg: " + err.strip())
                continue
            print("accel=%s: %s" % (accel, lines[:5]))
            if len(lines) < 3:
                print("FAIL: fewer than 3 lines; qemu: " + err.strip())
                return 1
            counts = [int(n) for n, _ in lines]
            if counts != list(range(counts[0], counts[0] + len(counts))):
                print("FAIL: counter not increasing by 1: %s" % counts)
                return 1
            if len({m for _, m in lines}) != 1:
                print("FAIL: marker changed")
                return 1
            print("PASS: tiny guest under %s" % accel)
            return 0
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_linux(d):
    vmlinux = os.path.join(d, "vmlinux")
    initrd = os.path.join(d, "initramfs.cpio.gz")
    if not (os.path.exists(vmlinux) and os.path.exists(initrd)):
        skip("%s missing: build it with `make guest_linux`" % vmlinux)
    work = tempfile.mkdtemp(prefix="guest_linux.")
    con = os.path.join(work, "console.log")
    sock = os.path.join(work, "serial1.sock")
    p = subprocess.Popen([QEMU, "-M", "microvm", "-accel", "tcg", "-m", "256", "-nodefaults",
                          "-no-user-config", "-nographic", "-kernel", vmlinux,
                          "-initrd", initrd, "-append", guest_shell.linux_cmdline(),
                          "-chardev", "file,id=con,path=" + con, "-serial", "chardev:con",
                          "-chardev", "socket,id=ch1,path=%s,server=on,wait=off" % sock,
                          "-device", "isa-serial,chardev=ch1,iobase=0x2f8,irq=3"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        guest_shell.wait_for_console(con, "EMBER-GUEST-READY", 120)
        print("ready after %.1f s (TCG)" % (time.monotonic() - t0))
        with guest_shell.GuestShell(sock) as sh:
            out = sh.run("echo hi > /tmp/a; cat /tmp/a; mount | grep -c ' /tmp type tmpfs'",
                         timeout=60)
            if out != "hi\n1\n":
                print("FAIL: control shell answered %r" % out)
                return 1
        guest_shell.wait_for_console(con, "ember-heartbeat 2", 60)
        print("PASS: linux guest boots, heartbeat and control shell work")
        return 0
    except (TimeoutError, guest_shell.GuestShellError) as e:
        print("FAIL: %s" % e)
        with open(con, errors="replace") as f:
            print(f.read()[-3000:])
        return 1
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("tiny", "linux"):
        sys.stderr.write(__doc__)
        return 2
    if not QEMU:
        skip("qemu-system-x86_64 not installed")
    return test_tiny(argv[2]) if argv[1] == "tiny" else test_linux(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
