#!/usr/bin/python3
"""test_qemu_standby: the heart of ember, end to end.

A real emberd, a real gRPC client (python3-grpcio), a real QEMU (TCG) running the
Linux test guest (test/guests/linux). Checks, as issue 3 asks:
  - 256 MiB guest; write file A; Standby; Restore; A is there; write B; Standby
    (a diff, base-reuse standby); Restore; A and B are there;
  - snapshot-latest exists exactly in Standby; snapshot-base exists while the
    guest runs (QEMU keeps guest RAM in snapshot-base/memory from boot) and
    never in Standby; Stop removes both;
  - Instance.last_snapshot_kind / last_standby_duration / last_restore_duration and the Watch
    events carry what happened;
  - emberd killed with SIGKILL while one guest runs and another is in Standby:
    after a restart the running guest kept running (same VMM, same memory) and is
    controllable, the standby one restores, no second VMM is ever started.

Needs: EMBER_TEST_GUEST_DIR (vmlinux + initramfs.cpio.gz), EMBERD_BIN,
EMBER_PYTHON_DIR. Skips (exit 77) with a message when the guest or QEMU is missing.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

from emberd_fixture import Emberd, pb, linux_guest_files, vmm_pids, Checks  # noqa: E402
from guest_shell import GuestShell, linux_cmdline, wait_for_console  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


class Guest:
    def __init__(self, d, inst):
        self.d = d
        self.id = inst.id
        self.dir = os.path.join(d.data_dir, "instances", inst.id)
        self.console = inst.console_log_path

    def snap(self, which):
        return os.path.exists(os.path.join(self.dir, "snapshots", which))

    def shell(self):
        return GuestShell(os.path.join(self.dir, "serial1.sock"), connect_timeout=60)

    def run(self, cmd):
        with self.shell() as sh:
            return sh.run(cmd, timeout=60, retry=True)


def boot(d, name, kernel, initrd, mib=256):
    spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=mib, kernel=kernel,
                       initrd=initrd, cmdline=linux_cmdline())
    inst = d.create(name, spec, start=True, timeout=180)
    g = Guest(d, inst)
    wait_for_console(g.console, "EMBER-GUEST-READY", timeout=180)
    return g


def main():
    kernel, initrd = linux_guest_files()
    events = []
    with Emberd(config={"drivers": {"qemu": {"accel": os.environ.get("EMBER_QEMU_ACCEL", "tcg")}}}) as d:
        watch = d.watch("")
        watch.initial_metadata()

        def pump():
            try:
                for ev in watch:
                    events.append(ev)
            except Exception:
                pass
        threading.Thread(target=pump, daemon=True).start()

        g = boot(d, "guest-a", kernel, initrd)
        check(d.get(g.id).state == pb.INSTANCE_STATE_RUNNING, "guest boots to Running")
        check(g.snap("snapshot-base") and not g.snap("snapshot-latest"),
              "running from boot: RAM file in snapshot-base, no snapshot-latest")
        marker = "A-%d" % os.getpid()
        g.run("echo %s > /tmp/a" % marker)
        # Memory state too, not only files: a value in a shell variable survives
        # only if the whole RAM does; keep a background sleeper's pid.
        sleeper = g.run("sleep 100000 & echo $!").strip().splitlines()[-1]

        inst = d.standby(g.id)
        check(inst.state == pb.INSTANCE_STATE_STANDBY and inst.has_snapshot, "standby 1 -> Standby")
        check(inst.last_standby_duration.ToMicroseconds() > 0, "standby 1 duration recorded (%d us)" % inst.last_standby_duration.ToMicroseconds())
        check(g.snap("snapshot-latest") and not g.snap("snapshot-base"),
              "in Standby: snapshot-latest only")
        check(vmm_pids(g.dir) == [], "in Standby: no VMM process")
        kind1 = inst.last_snapshot_kind

        inst = d.restore(g.id)
        check(inst.state == pb.INSTANCE_STATE_RUNNING, "restore 1 -> Running")
        check(inst.last_restore_duration.ToMicroseconds() > 0, "restore 1 duration recorded (%d us)" % inst.last_restore_duration.ToMicroseconds())
        check(g.snap("snapshot-base") and not g.snap("snapshot-latest"),
              "after restore: snapshot-base only")
        check(g.run("cat /tmp/a").strip().endswith(marker), "file A intact after restore 1")
        check(g.run("kill -0 %s && echo alive" % sleeper).strip().endswith("alive"),
              "guest process from before standby still alive")

        g.run("echo B > /tmp/b")
        inst = d.standby(g.id)
        check(inst.last_snapshot_kind == pb.SNAPSHOT_KIND_DIFF,
              "standby 2 is a diff (base reuse), standby 1 kind=%d" % kind1)
        inst = d.restore(g.id)
        out = g.run("cat /tmp/a /tmp/b")
        check(marker in out and "B" in out, "files A and B intact after restore 2")

        # Pause/Resume on a real guest.
        check(d.pause(g.id).state == pb.INSTANCE_STATE_PAUSED, "pause")
        check(d.resume(g.id).state == pb.INSTANCE_STATE_RUNNING, "resume")

        # Crash emberd with one guest Running and another in Standby.
        h = boot(d, "guest-b", kernel, initrd)
        h.run("echo H > /tmp/h")
        d.standby(h.id)
        pid_before = d.get(g.id).vmm_pid
        d.kill()
        d.start(timeout=60)
        gi = d.get(g.id)
        check(gi.state == pb.INSTANCE_STATE_RUNNING and gi.vmm_pid == pid_before,
              "after SIGKILL of emberd: running guest re-adopted (same VMM pid)")
        check(vmm_pids(g.dir) == [pid_before], "exactly one VMM for the running guest")
        check(d.get(h.id).state == pb.INSTANCE_STATE_STANDBY, "standby guest still Standby")
        check(marker in g.run("cat /tmp/a"), "re-adopted guest keeps its memory")
        inst = d.standby(g.id)
        check(inst.state == pb.INSTANCE_STATE_STANDBY, "re-adopted guest is controllable (standby)")
        d.restore(g.id)
        d.restore(h.id)
        check("H" in h.run("cat /tmp/h"), "standby guest restores after the crash")
        check(len(vmm_pids(h.dir)) == 1 and len(vmm_pids(g.dir)) == 1, "no second VMM anywhere")

        # Stop removes both snapshot folders.
        d.standby(h.id)
        inst = d.stop_instance(h.id)
        check(inst.state == pb.INSTANCE_STATE_STOPPED, "stop from Standby")
        check(not h.snap("snapshot-latest") and not h.snap("snapshot-base"),
              "Stop removes snapshot-latest and snapshot-base")
        d.stop_instance(g.id)
        check(not g.snap("snapshot-base") and vmm_pids(g.dir) == [],
              "Stop of a running guest ends the VMM and removes the base")

        time.sleep(0.5)
        ops = [(e.operation, e.new_state) for e in events if e.instance.id == g.id]
        check((pb.OPERATION_STANDBY, pb.INSTANCE_STATE_STANDBY) in ops and
              (pb.OPERATION_RESTORE, pb.INSTANCE_STATE_RUNNING) in ops,
              "Watch streamed standby and restore events")
        sb = [e for e in events if e.operation == pb.OPERATION_STANDBY]
        check(all(e.duration.ToMicroseconds() > 0 for e in sb), "standby events carry durations")
        watch.cancel()
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
