#!/usr/bin/python3
"""test_api_stop.py: StopInstanceRequest.graceful_timeout with a real QEMU
guest that ignores the ACPI power button (the busybox test guest): 0 ends the
VMM at once without asking the guest to power off; a positive timeout asks,
waits that long and then ends it; unset uses emberd's configured stop
timeout. Asserted from emberd's log (which path each stop took), never from
wall-clock bounds; the durations are printed as figures.

Needs the Linux test guest (EMBER_TEST_GUEST_DIR; build target guest_linux)
and qemu-system-x86_64, else prints "SKIP: ..." and exits 77.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

try:
    import grpc  # noqa: F401
    from emberd_fixture import Emberd, pb, linux_guest_files, Checks
    from guest_shell import linux_cmdline, wait_for_console
except Exception as e:  # noqa
    print("SKIP: python3-grpcio or the generated messages are missing: %s" % e)
    sys.exit(77)

CHECKS = Checks()
check = CHECKS.check
FORCED = "graceful timeout 0: killing the VMM without a power-off"
WAITED = "QEMU quit after powerdown timeout"


def msgs(d, inst_id, start):
    """Log messages about inst_id from line index `start` on."""
    return [l.get("msg", "") for l in d.log_lines()[start:] if l.get("instance") == inst_id]


def boot(d, name, spec):
    inst = d.create(name, spec, start=True, timeout=180)
    wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=180)
    return inst


def main():
    kernel, initrd = linux_guest_files()
    accel = os.environ.get("EMBER_QEMU_ACCEL", "tcg")
    with Emberd(config={"drivers": {"qemu": {"accel": accel}}}) as d:
        spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=128, kernel=kernel,
                           initrd=initrd, cmdline=linux_cmdline())
        inst = boot(d, "acpi-deaf", spec)

        # 1. graceful_timeout 0: no power-off request, the VMM is ended at once.
        n0 = len(d.log_lines())
        t = time.monotonic()
        out = d.stop_instance("acpi-deaf", graceful_timeout_s=0)
        forced_s = time.monotonic() - t
        m = msgs(d, inst.id, n0)
        check(out.state == pb.INSTANCE_STATE_STOPPED and out.vmm_pid == 0, "stopped")
        check(any(FORCED in x for x in m), "graceful_timeout 0 took the kill-at-once path")
        check(not any(WAITED in x or "powered off" in x for x in m),
              "graceful_timeout 0 did not ask the guest to power off nor wait for it")

        # 2. graceful_timeout 1 s: the guest is asked, ignores it, then QEMU quits.
        d.start_instance("acpi-deaf", timeout=180)
        n1 = len(d.log_lines())
        t = time.monotonic()
        d.stop_instance("acpi-deaf", graceful_timeout_s=1)
        waited_s = time.monotonic() - t
        m = msgs(d, inst.id, n1)
        check(any(WAITED in x for x in m), "graceful_timeout 1s asked for a power-off and waited")
        check(not any(FORCED in x for x in m), "graceful_timeout 1s did not kill at once")
        check(any("graceful timeout 1000 ms" in l.get("msg", "") for l in d.log_lines()[n1:]),
              "the request's timeout reached the manager (1000 ms)")

        # 3. unset: emberd's configured stop timeout (10 s by default).
        d.start_instance("acpi-deaf", timeout=180)
        n2 = len(d.log_lines())
        t = time.monotonic()
        d.stop_instance("acpi-deaf")
        default_s = time.monotonic() - t
        m = msgs(d, inst.id, n2)
        check(any(WAITED in x for x in m), "unset graceful_timeout waited (configured default)")
        print("  figures: stop with graceful_timeout 0: %.2f s; 1 s: %.2f s; unset (default 10 s): %.2f s"
              % (forced_s, waited_s, default_s))
        d.delete("acpi-deaf")
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
