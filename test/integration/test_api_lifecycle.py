#!/usr/bin/python3
"""test_api_lifecycle.py: how the gRPC layer runs lifecycle operations, with a
real QEMU guest (TCG): each operation runs on its own thread, so Get/List stay
answered while a standby is in progress, and a client deadline or cancel never
interrupts the operation: it runs to its end and the state shows it.

Needs the Linux test guest (EMBER_TEST_GUEST_DIR with vmlinux and
initramfs.cpio.gz; build target guest_linux) and qemu-system-x86_64; prints
"SKIP: ..." and exits 77 otherwise. Prints "N passed, M failed".
"""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
    from emberd_fixture import Emberd, pb, Checks
except Exception as e:  # noqa
    print("SKIP: python3-grpcio or the generated messages are missing: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
CHECKS = Checks()
check = CHECKS.check


def wait_state(d, ident, state, timeout=300):
    """Polls Get until the instance is in `state` with no operation left
    behind; returns the instance or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            i = d.get(ident)
            if i.state == state:
                return i
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    return None


def main():
    gdir = os.environ.get("EMBER_TEST_GUEST_DIR", "")
    kernel, initrd = os.path.join(gdir, "vmlinux"), os.path.join(gdir, "initramfs.cpio.gz")
    if not (os.path.isfile(kernel) and os.path.isfile(initrd)):
        print("SKIP: Linux test guest not built (EMBER_TEST_GUEST_DIR=%r; build target guest_linux)"
              % gdir)
        return 77
    if shutil.which("qemu-system-x86_64") is None:
        print("SKIP: qemu-system-x86_64 not installed")
        return 77

    with Emberd(config={"drivers": {"qemu": {"accel": "tcg"}}}) as d:
        spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=256, kernel=kernel,
                           initrd=initrd, cmdline="console=ttyS0 panic=-1 quiet")

        # 1. Create+start with a deadline the boot cannot meet: the client
        #    gives up, the operation does not.
        code, _ = Emberd.call_error(d.create, "lc", spec, True, 0.05)
        check(code in (SC.DEADLINE_EXCEEDED, SC.OK), "create+start with a 50 ms deadline: %s" % code)
        inst = wait_state(d, "lc", pb.INSTANCE_STATE_RUNNING)
        check(inst is not None and inst.vmm_pid > 0,
              "create+start ran to its end after the client gave up (Running)")
        if inst is None:
            print(d.log_tail(30))
            return 1

        # 2. Get/List stay answered while a standby runs.
        fut = d.channel.unary_unary(
            "/ember.v1.InstanceService/StandbyInstance",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.Instance.FromString).future(
                pb.StandbyInstanceRequest(id="lc"), timeout=300)
        gets, errors, lat = 0, 0, []
        while not fut.done():
            t = time.perf_counter()
            try:
                d.get("lc", timeout=30)
                d.list(timeout=30)
                gets += 1
            except grpc.RpcError:
                errors += 1
            lat.append(time.perf_counter() - t)
        res = fut.result()
        check(res.state == pb.INSTANCE_STATE_STANDBY and res.has_snapshot, "standby done")
        check(errors == 0, "no Get/List failed during the standby (%d rounds)" % gets)
        if lat:
            print("      Get+List during standby: %d rounds, max %.1f ms; standby took %.0f ms"
                  % (gets, max(lat) * 1e3, res.last_standby_duration.ToMicroseconds() / 1e3))

        # 3. A restore cancelled by its client still completes.
        fut = d.channel.unary_unary(
            "/ember.v1.InstanceService/RestoreInstance",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.Instance.FromString).future(
                pb.RestoreInstanceRequest(id="lc"), timeout=300)
        time.sleep(0.02)
        fut.cancel()
        inst = wait_state(d, "lc", pb.INSTANCE_STATE_RUNNING)
        check(inst is not None and not inst.has_snapshot,
              "restore ran to its end after the client cancelled (Running)")

        # 4. A standby whose deadline expires still completes.
        code, _ = Emberd.call_error(d.standby, "lc", 0.05)
        check(code in (SC.DEADLINE_EXCEEDED, SC.OK), "standby with a 50 ms deadline: %s" % code)
        inst = wait_state(d, "lc", pb.INSTANCE_STATE_STANDBY)
        check(inst is not None and inst.has_snapshot,
              "standby ran to its end after the deadline (Standby with a snapshot)")

        # 5. Retrying after a timeout is harmless (idempotent), then clean up.
        check(d.standby("lc").state == pb.INSTANCE_STATE_STANDBY, "repeated standby is OK")
        check(d.stop_instance("lc").state == pb.INSTANCE_STATE_STOPPED, "stop")
        d.delete("lc")
        check(d.list() == [], "deleted")
        rc = d.stop()
        check(rc == 0, "emberd exit status 0")

    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
