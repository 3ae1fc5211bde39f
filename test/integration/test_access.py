#!/usr/bin/python3
"""test_access.py: who can reach what emberd creates (GitHub issue 5).

With a default emberd (its own data dir, unix socket inside it):
- the gRPC unix socket is mode 0660;
- the data dir, instances/ and every folder below it are 0750 or stricter,
  and no file or socket under the data dir grants anything to other users;
- the VMM sockets (Firecracker API socket of the contract fake, QEMU's QMP
  socket when the tiny test guest is built) are not world-accessible;
- the same holds when emberd runs under umask 000 (a careless unit file or
  container), since emberd must not rely on the caller's umask;
- a data dir that already exists with loose permissions is tightened (or
  emberd refuses it);
- a plaintext TCP listen address is refused without --insecure-tcp (TLS is
  covered by test_api.py).
On failure the message names the path and its mode, and the code that made it.

Usage: test_access.py <firecracker_fake.py> [tiny.elf]   (EMBERD_BIN and
EMBER_PYTHON_DIR as for the other integration tests). Prints "N passed, M
failed"; exit 77 = SKIP."""

import os
import socket
import stat
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, require as check
except Exception as e:  # noqa: BLE001
    print("SKIP: the emberd test fixture cannot load: %s" % e)
    sys.exit(77)

pb = fx.pb
FAKE = None
TINY = None
results = []

# Where each kind of path is created (for failure messages).
ORIGIN = {
    "data dir": "agent/main.c (cmn_mkdir_p(cfg.data_dir, 0750)) and agent/manager.c "
                "agent_manager_create (cmn_mkdir_p(data_dir, 0750))",
    "instances": "agent/manager.c agent_manager_create (cmn_mkdir_p(instances_dir, 0750))",
    "instance": "agent/manager.c agent_manager_create_instance (mkdir(dir, 0750))",
    "snapshots": "agent/snapshot.c (cmn_mkdir_p(..., 0750))",
    "firecracker.sock": "the VMM binds it (drivers/firecracker/driver.c passes --api-sock "
                        "<instance dir>/firecracker.sock); its mode follows emberd's umask",
    "qmp": "QEMU binds it (drivers/qemu/lifecycle.c, <instance dir>/QEMU_QMP_SOCK); its mode "
           "follows emberd's umask",
    "emberd.sock": "agent/server/server.c (chmod 0660 after bind)",
}


def test(fn):
    results.append(fn)
    return fn


def origin(path, data_dir):
    rel = os.path.relpath(path, data_dir)
    parts = rel.split(os.sep)
    name = parts[-1]
    if rel == ".":
        return ORIGIN["data dir"]
    if name == "emberd.sock":
        return ORIGIN["emberd.sock"]
    if name == "firecracker.sock":
        return ORIGIN["firecracker.sock"]
    if "qmp" in name:
        return ORIGIN["qmp"]
    if name.startswith("serial") and name.endswith(".sock"):
        return "QEMU binds it (drivers/qemu, -chardev socket,server=on); mode follows emberd's umask"
    if name == "console.log":
        return "created by the driver/VMM (serial console); mode follows emberd's umask"
    if name in ("memory", "state"):
        return "written by the VMM into the snapshot folder; mode follows emberd's umask"
    if parts == ["instances"]:
        return ORIGIN["instances"]
    if len(parts) == 2 and parts[0] == "instances":
        return ORIGIN["instance"]
    if "snapshots" in parts:
        return ORIGIN["snapshots"]
    return "written under an instance folder (agent/record.c, common/files.c, drivers)"


def audit(data_dir):
    """Every path under data_dir. Returns (problems, notes, count): problems
    break the rules (a folder above 0750, the gRPC socket not 0660, anything
    other users could write or connect to, symlinks); notes are bits that are
    harmless only because the folders above are closed (others may read)."""
    problems, notes = [], []
    entries = [(data_dir, os.lstat(data_dir))]
    for dirpath, dirnames, filenames in os.walk(data_dir):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                entries.append((p, os.lstat(p)))
            except FileNotFoundError:
                pass
    for p, st in entries:
        mode = stat.S_IMODE(st.st_mode)
        rel = os.path.relpath(p, data_dir)
        where = origin(p, data_dir)
        if stat.S_ISDIR(st.st_mode):
            if mode & ~0o750:
                problems.append("folder %s is %04o (want 0750 or stricter); created by %s" %
                                (rel, mode, where))
        elif stat.S_ISSOCK(st.st_mode):
            if os.path.basename(p) == "emberd.sock" and mode != 0o660:
                problems.append("socket %s is %04o, want 0660; %s" % (rel, mode, where))
            elif mode & 0o002:
                problems.append("socket %s is %04o: other users could connect; created by %s" %
                                (rel, mode, where))
            elif mode & 0o005:
                notes.append("socket %s is %04o (o+rx, no o+w: others cannot connect)" %
                             (rel, mode))
        elif stat.S_ISLNK(st.st_mode):
            problems.append("symlink %s -> %s under the data dir" % (rel, os.readlink(p)))
        else:
            if mode & 0o002:
                problems.append("file %s is %04o: writable by other users; %s" %
                                (rel, mode, where))
            elif mode & 0o024:
                notes.append("file %s is %04o (readable by others / group-writable; closed "
                             "only by the 0750 folders above); %s" % (rel, mode, where))
    return problems, notes, len(entries)


def kinds(data_dir):
    socks = []
    for dirpath, _, filenames in os.walk(data_dir):
        for n in filenames:
            p = os.path.join(dirpath, n)
            try:
                if stat.S_ISSOCK(os.lstat(p).st_mode):
                    socks.append(os.path.relpath(p, data_dir))
            except FileNotFoundError:
                pass
    return socks


def populate(d):
    """Instances in every state that leaves files: Stopped qemu, Running and
    Standby (full) firecracker fakes, a Running QEMU tiny guest when built."""
    kernel = d.fake_kernel()
    d.create("q-stopped", d.qemu_spec())
    fc = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=kernel)
    d.create("fc-running", fc, start=True)
    sb = d.create("fc-standby", fc, start=True)
    d.standby(sb.id)
    started = ["fc-running"]
    if TINY and os.path.exists(TINY):
        try:
            d.create("q-tiny", d.make_spec(hypervisor="qemu", memory_mib=16, kernel=TINY,
                                           cmdline=""), start=True)
            started.append("q-tiny")
        except grpc.RpcError as e:
            print("  note: QEMU tiny guest did not start (%s: %s); QMP socket not audited" %
                  (e.code().name, e.details()))
    return started


def run_audit(d, label):
    started = populate(d)
    socks = kinds(d.data_dir)
    problems, notes, n = audit(d.data_dir)
    print("  %s: %d paths audited, sockets: %s, running: %s" % (label, n, socks, started))
    for note in notes:
        print("  note: %s" % note)
    check(any(s.endswith("firecracker.sock") for s in socks),
          "no Firecracker API socket found under the data dir (%s)" % socks)
    check(not problems, "%s:\n    %s" % (label, "\n    ".join(problems)))


@test
def default_modes(d_factory):
    with d_factory() as d:
        st = os.stat(d.socket_path)
        check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % d.socket_path)
        check(stat.S_IMODE(st.st_mode) == 0o660, "emberd socket is %04o, want 0660 (%s)" %
              (stat.S_IMODE(st.st_mode), ORIGIN["emberd.sock"]))
        run_audit(d, "default umask %04o" % CURRENT_UMASK)


@test
def umask_000(d_factory):
    old = os.umask(0)
    try:
        d = d_factory()
    finally:
        os.umask(old)
    with d:
        st = os.stat(d.socket_path)
        check(stat.S_IMODE(st.st_mode) == 0o660, "emberd socket is %04o under umask 000" %
              stat.S_IMODE(st.st_mode))
        run_audit(d, "umask 000")


@test
def loose_existing_data_dir(d_factory):
    d = d_factory(start=False)
    with d:
        os.makedirs(d.data_dir)
        os.chmod(d.data_dir, 0o777)
        d.spawn()
        end = time.monotonic() + 15
        while time.monotonic() < end and d.proc.poll() is None and \
                not fx.unix_connect_ok(d.socket_path):
            time.sleep(0.05)
        if d.proc.poll() is not None:
            print("  emberd refused the 0777 data dir: %s" % d.log_tail(3))
            return
        d.wait_ready()
        mode = stat.S_IMODE(os.stat(d.data_dir).st_mode)
        check(mode & ~0o750 == 0,
              "emberd serves from a pre-existing data dir left at %04o (not tightened, not "
              "refused): cmn_mkdir_p in agent/main.c and agent/manager.c keeps an existing "
              "folder's mode" % mode)


@test
def plaintext_tcp_refused(d_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = d_factory(listen="127.0.0.1:%d" % port, start=False)
    with d:
        p = d.spawn()
        try:
            rc = p.wait(15)
        except Exception:  # noqa: BLE001
            rc = None
        check(rc is not None and rc != 0,
              "emberd accepted a plaintext TCP address without --insecure-tcp (rc %s)" % rc)
        check("--insecure-tcp" in d.log_tail(), "the refusal does not name --insecure-tcp: %s" %
              d.log_tail(5))
        check(not fx.tcp_connect_ok("127.0.0.1:%d" % port), "port %d is listening" % port)
        d.proc = None


CURRENT_UMASK = 0

# Hardening the code does not have yet. A failure here prints XFAIL and does not
# fail the run; a pass prints XPASS: then take the name out of this set.
# - umask_000: emberd keeps the caller's umask, so under umask 000 the VMM
#   sockets (firecracker.sock, qmp.sock, serial*.sock) are 0777 and console.log
#   and snapshot files 0666; only the 0750 instance folder closes them. Fix:
#   umask(027) first thing in agent/main.c (VMMs inherit it).
# - loose_existing_data_dir: cmn_mkdir_p keeps the mode of a data dir that
#   already exists, so a 0777 /var/lib/ember stays 0777. Fix: chmod it to 0750
#   (or refuse) in agent/main.c after cmn_mkdir_p.
KNOWN_GAPS = set()


def main():
    global FAKE, TINY, CURRENT_UMASK
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("SKIP: usage: test_access.py <firecracker_fake.py> [tiny.elf]")
        return 77
    FAKE = os.path.abspath(sys.argv[1])
    TINY = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
    CURRENT_UMASK = os.umask(0o022)
    os.umask(CURRENT_UMASK)
    env = {"EMBER_FIRECRACKER_BIN": FAKE, "FAKE_FC_VERSION": "1.16.1"}

    def factory(**kw):
        kw.setdefault("log_level", "info")
        return Emberd(env=env, **kw)

    only = sys.argv[3:]
    passed = failed = xfail = 0
    for fn in results:
        if only and not any(o in fn.__name__ for o in only):
            continue
        gap = fn.__name__ in KNOWN_GAPS
        try:
            fn(factory)
            print("%s %s" % ("XPASS (remove it from KNOWN_GAPS)" if gap else "PASS",
                             fn.__name__))
            passed += 1
        except Exception as e:  # noqa: BLE001
            print("%s %s: %s" % ("XFAIL (known gap)" if gap else "FAIL", fn.__name__, e))
            if not isinstance(e, AssertionError):
                traceback.print_exc()
            if gap and isinstance(e, AssertionError):
                xfail += 1
            else:
                failed += 1
    print("%d passed, %d failed (%d known gaps)" % (passed, failed, xfail))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
