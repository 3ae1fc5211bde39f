#!/usr/bin/python3
"""test_reaping: every child of emberd is reaped, always (issue 9, item 1).

One emberd runs a long mixed sequence while two WatchInstances streams stay open
(both drained by threads), with the fault point fc.restore.before_load armed
(EMBER_FAULT), so every Firecracker restore spawns a VMM and then fails:

  Firecracker (the contract fake test/fakes/firecracker_fake.py as the VMM):
    create+start, pause, resume, standby, restore (fails: injected), stop, start,
    standby, restore (fails), delete; a start whose kernel was removed after
    Create (fails); a VMM SIGKILLed from outside (the monitor notices); repeated.
  QEMU (TCG, the Linux test guest in build/guests/linux; skipped with a note
  when the guest or QEMU is absent):
    create+start, standby, restore, standby, restore, stop, start, delete, and
    a start whose kernel was removed after Create (QEMU exits at start-up).

Then it counts the defunct children of emberd (/proc/*/stat with ppid == emberd's
pid and state Z) and asserts there are none, and that no VMM (no process naming
the test's root) is left after the deletes.

Usage: test_reaping.py <firecracker_fake.py>  (EMBERD_BIN, EMBER_PYTHON_DIR,
EMBER_TEST_GUEST_DIR as for the other integration tests). ROUNDS=<n> (default 6).
"""
import os
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

import grpc  # noqa: E402

from emberd_fixture import Emberd, procs_matching, vmm_pids, require as check, qemu_guest  # noqa: E402


def children(ppid):
    """[(pid, state, comm)] of the processes whose parent is ppid."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        if int(fields[1]) == ppid:
            out.append((int(p), fields[0], comm))
    return out


def defunct(ppid):
    return [c for c in children(ppid) if c[1] == "Z"]


def expect_fail(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code()
    raise AssertionError("%s%r succeeded; a failure was expected" % (fn.__name__, a))


def main():
    if len(sys.argv) < 2 or not os.path.isfile(sys.argv[1]):
        print("SKIP: usage: test_reaping.py <firecracker_fake.py>")
        return 77
    fake = os.path.abspath(sys.argv[1])
    rounds = int(os.environ.get("ROUNDS", "6"))
    guest = qemu_guest()
    if guest is None:
        print("NOTE: QEMU part skipped: Linux test guest or qemu-system-x86_64 missing "
              "(EMBER_TEST_GUEST_DIR=%r)" % os.environ.get("EMBER_TEST_GUEST_DIR"))
    cfg = {"drivers": {"qemu": {"accel": os.environ.get("EMBER_QEMU_ACCEL", "tcg")}}}
    env = {"EMBER_FIRECRACKER_BIN": fake, "EMBER_FAULT": "fc.restore.before_load"}
    counts = {"ok": 0, "failed": 0}
    with Emberd(env=env, config=cfg, log_level="info") as d:
        pid = d.proc.pid
        files = os.path.join(d.root, "files")
        os.makedirs(files, exist_ok=True)
        fc_kernel = os.path.join(files, "fc-kernel")
        with open(fc_kernel, "wb") as f:
            f.write(os.urandom(16384))

        streams, events = [], []
        for _ in range(2):
            w = d.watch()
            w.initial_metadata()
            streams.append(w)

            def pump(w=w):
                try:
                    for ev in w:
                        events.append(ev)
                except grpc.RpcError:
                    pass
            threading.Thread(target=pump, daemon=True).start()

        def ok(fn, *a, **kw):
            r = fn(*a, **kw)
            counts["ok"] += 1
            return r

        def failed(fn, *a, **kw):
            code = expect_fail(fn, *a, **kw)
            counts["failed"] += 1
            return code

        def removed_kernel_start(name, hv, src, **kw):
            k = os.path.join(files, name + "-kernel")
            shutil.copyfile(src, k)
            spec = d.make_spec(hypervisor=hv, memory_mib=16 if hv == "firecracker" else 128,
                               kernel=k, **kw)
            inst = ok(d.create, name, spec)
            os.unlink(k)
            code = failed(d.start_instance, inst.id)
            print("  %s start with its kernel removed: %s" % (hv, code))
            ok(d.delete, inst.id)

        for r in range(rounds):
            # Firecracker: the full cycle with failing restores.
            spec = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=fc_kernel)
            fc = ok(d.create, "fc-%d" % r, spec, start=True)
            ok(d.pause, fc.id)
            ok(d.resume, fc.id)
            ok(d.standby, fc.id)
            failed(d.restore, fc.id)
            ok(d.stop_instance, fc.id)
            ok(d.start_instance, fc.id)
            ok(d.standby, fc.id)
            failed(d.restore, fc.id)
            ok(d.delete, fc.id)
            removed_kernel_start("fc-nokernel-%d" % r, "firecracker", fc_kernel)
            # A VMM killed from outside: the monitor notices and reaps it.
            fc = ok(d.create, "fc-killed-%d" % r, spec, start=True)
            inst_dir = os.path.join(d.data_dir, "instances", fc.id)
            for p in vmm_pids(inst_dir):
                os.kill(p, signal.SIGKILL)
            end = time.monotonic() + 20
            while d.get(fc.id).state != 1 and time.monotonic() < end:  # STOPPED
                time.sleep(0.05)
            check(d.get(fc.id).state == 1, "killed VMM not noticed: %s" % d.get(fc.id))
            ok(d.delete, fc.id)
            print("round %d (firecracker): zombies so far %d" % (r, len(defunct(pid))))

        if guest is not None:
            kernel, initrd = guest
            from guest_shell import linux_cmdline
            qspec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=128, kernel=kernel,
                                initrd=initrd, cmdline=linux_cmdline())
            for r in range(max(1, rounds // 3)):
                q = ok(d.create, "q-%d" % r, qspec, start=True, timeout=180)
                ok(d.standby, q.id)
                ok(d.restore, q.id)
                ok(d.standby, q.id)
                ok(d.restore, q.id)
                ok(d.stop_instance, q.id)
                ok(d.start_instance, q.id)
                ok(d.delete, q.id)
                removed_kernel_start("q-nokernel-%d" % r, "qemu", kernel, initrd=initrd,
                                     cmdline=linux_cmdline())
                print("round %d (qemu): zombies so far %d" % (r, len(defunct(pid))))

        # Every operation has returned; the monitor polls every 200 ms.
        time.sleep(1)
        zombies = defunct(pid)
        leftovers = [p for p in procs_matching(d.root) if p != pid]
        print("calls: %d succeeded, %d failed as intended; events streamed: %d"
              % (counts["ok"], counts["failed"], len(events)))
        print("defunct children of emberd (pid %d): %d %s" % (pid, len(zombies), zombies))
        print("VMMs left after the deletes: %d %s" % (len(leftovers), leftovers))
        for w in streams:
            w.cancel()
        check(d.proc.poll() is None, "emberd exited")
        check(d.list() == [], "instances left: %s" % d.list())
        check(not zombies, "emberd left %d defunct children: %s" % (len(zombies), zombies))
        check(not leftovers, "VMMs left after the deletes: %s" % leftovers)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
