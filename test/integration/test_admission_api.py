#!/usr/bin/python3
"""test_admission_api: admission (RAM, vCPUs, disk) through emberd's gRPC API,
with the Firecracker contract fake as the VMM (no real guest RAM is used).

The host's real figures (MemTotal, online CPUs) are read here and emberd is
configured so that the room is small and known: --mem-reserved-mib leaves
1024 MiB of RAM to guests, --vcpu-overcommit 1 leaves one vCPU per online CPU.
  - defaults: a 200 GiB guest and a 64-vCPU guest are refused at create
    (RESOURCE_EXHAUSTED with the figures); a 1-vCPU 128 MiB guest is admitted;
  - create too big: 2048 MiB > 1024 admitted; vCPUs too many: CPUs + 1;
  - start beyond the sum: A (600 MiB) runs, B (600 MiB) is refused at start and
    stays Stopped; nothing is left of the refused start;
  - restore beyond the sum: A in Standby, B runs, A's restore is refused and A
    stays Standby; after B stops, A restores;
  - vCPUs beyond the sum at start;
  - --mem-overcommit 2 (JSON "mem_overcommit": 2.0) admits A and B together;
  - bad values (0, "x", a fraction for an integer key) stop emberd at start-up
    with a message naming the key.

Usage: test_admission_api.py <firecracker_fake.py>  (EMBERD_BIN, EMBER_PYTHON_DIR).
Exit 77 = SKIP.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from emberd_fixture import Emberd, pb, find_emberd, Checks  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
RE = grpc.StatusCode.RESOURCE_EXHAUSTED


def mem_total_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal")


def spec(d, kernel, mib, vcpus=1):
    return d.make_spec(hypervisor="firecracker", vcpus=vcpus, memory_mib=mib, kernel=kernel,
                       cmdline="console=ttyS0")


def state(d, i):
    return pb.InstanceState.Name(d.get(i).state)


def defaults(env):
    with Emberd(env=env, log_level="info") as d:
        hv = {h.type: h for h in d.list_hypervisors()}
        if not (hv.get("firecracker") and hv["firecracker"].available):
            print("SKIP: firecracker (fake) not available")
            sys.exit(77)
        k = d.fake_kernel()
        code, msg = Emberd.call_error(d.create, "huge", spec(d, k, 204800))
        check(code == RE and "needs 204800 MiB of RAM; this host admits" in msg,
              "defaults: a 200 GiB guest is refused at create: %s: %s" % (code.name, msg))
        code, msg = Emberd.call_error(d.create, "wide", spec(d, k, 128, vcpus=64))
        check(code == RE and "needs 64 vCPUs" in msg,
              "defaults: 64 vCPUs refused at create: %s: %s" % (code.name, msg))
        check(not any(i.name in ("huge", "wide") for i in d.list()),
              "defaults: refused creates left no instance")
        names = ["small%d" % n for n in range(3)]
        ok = True
        for n in names:
            code, res = Emberd.call_error(d.create, n, spec(d, k, 256, vcpus=2), start=True)
            ok = ok and code == grpc.StatusCode.OK
        check(ok, "defaults: three 2-vCPU 256 MiB guests are admitted and run on this host "
              "(%d CPUs, %d MiB)" % (os.cpu_count(), mem_total_mib()))
        for n in names:
            Emberd.call_error(d.delete, n)


def small_room(env):
    cpus = os.cpu_count()
    reserved = mem_total_mib() - 1024
    args = ["--mem-reserved-mib", str(reserved), "--vcpu-overcommit", "1"]
    with Emberd(env=env, log_level="info", args=args) as d:
        k = d.fake_kernel()
        code, msg = Emberd.call_error(d.create, "big", spec(d, k, 2048))
        check(code == RE and "needs 2048 MiB of RAM; this host admits 1024 MiB" in msg
              and "%d MiB reserved" % reserved in msg,
              "create too big: %s: %s" % (code.name, msg))
        code, msg = Emberd.call_error(d.create, "wide", spec(d, k, 64, vcpus=cpus + 1))
        check(code == RE and ("needs %d vCPUs; this host admits %d (%d online CPUs x 1.00"
                              % (cpus + 1, cpus, cpus)) in msg,
              "vCPUs too many: %s: %s" % (code.name, msg))

        a = d.create("a", spec(d, k, 600), start=True).id
        b = d.create("b", spec(d, k, 600)).id
        check(state(d, a) == "INSTANCE_STATE_RUNNING" and state(d, b) == "INSTANCE_STATE_STOPPED",
              "each fits alone: a Running, b created Stopped")
        bdir = os.path.join(d.data_dir, "instances", b)
        before = sorted(os.listdir(bdir))
        code, msg = Emberd.call_error(d.start_instance, b)
        check(code == RE and "cannot start b: it needs 600 MiB of RAM; this host admits 424 MiB"
              in msg and "600 MiB already committed" in msg,
              "start beyond the sum: %s: %s" % (code.name, msg))
        check(state(d, b) == "INSTANCE_STATE_STOPPED" and sorted(os.listdir(bdir)) == before,
              "refused start: b stays Stopped, its folder unchanged (%s)" % os.listdir(bdir))

        d.standby(a)
        check(state(d, a) == "INSTANCE_STATE_STANDBY", "a in Standby frees its RAM")
        d.start_instance(b)
        check(state(d, b) == "INSTANCE_STATE_RUNNING", "b starts next to a Standby a")
        code, msg = Emberd.call_error(d.restore, a)
        check(code == RE and "cannot restore a: it needs 600 MiB of RAM" in msg,
              "restore beyond the sum: %s: %s" % (code.name, msg))
        check(state(d, a) == "INSTANCE_STATE_STANDBY",
              "refused restore: a stays Standby (%s)" % state(d, a))
        d.stop_instance(b)
        code, res = Emberd.call_error(d.restore, a)
        check(code == grpc.StatusCode.OK and state(d, a) == "INSTANCE_STATE_RUNNING",
              "after b stopped, a's restore is admitted (%s)" % code.name)
        d.stop_instance(a)

        # vCPUs beyond the sum: a takes every CPU, b's one more vCPU is refused.
        c = d.create("c", spec(d, k, 64, vcpus=cpus), start=True).id
        e = d.create("e", spec(d, k, 64, vcpus=1)).id
        code, msg = Emberd.call_error(d.start_instance, e)
        check(code == RE and ("%d vCPUs already committed" % cpus) in msg,
              "vCPUs beyond the sum at start: %s: %s" % (code.name, msg))
        for i in (a, b, c, e):
            d.delete(i)

    # The same room with 2x memory overcommit in the JSON config: a and b together.
    cfg = {"mem_overcommit": 2.0, "mem_reserved_mib": reserved, "vcpu_overcommit": 1.5,
           "disk_reserve_mib": 64}
    with Emberd(env=env, log_level="info", config=cfg) as d:
        k = d.fake_kernel()
        a = d.create("a", spec(d, k, 600), start=True).id
        code, res = Emberd.call_error(d.create, "b", spec(d, k, 600), start=True)
        check(code == grpc.StatusCode.OK and state(d, a) == "INSTANCE_STATE_RUNNING" and
              state(d, res.id) == "INSTANCE_STATE_RUNNING",
              "mem_overcommit 2.0 (JSON) admits 1200 MiB on 1024 MiB: %s" % code.name)
        code, msg = Emberd.call_error(d.create, "c", spec(d, k, 900), start=True)
        check(code == RE and "x 2.00 overcommit, 1200 MiB already committed" in msg,
              "and refuses past 2048 MiB: %s: %s" % (code.name, msg))


def bad_values():
    binary = find_emberd()
    for args, key in ((["--mem-overcommit", "0"], "mem_overcommit"),
                      (["--vcpu-overcommit", "x"], "vcpu_overcommit"),
                      (["--mem-reserved-mib", "1.5"], "mem_reserved_mib"),
                      (["--disk-reserve-mib", "-1"], "disk_reserve_mib")):
        r = subprocess.run([binary, "--data-dir", "/nonexistent/ember-adm"] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=30)
        check(r.returncode != 0 and key in r.stdout,
              "%s refused at start-up (exit %d): %s" % (" ".join(args), r.returncode,
                                                       r.stdout.strip()[-160:]))
    r = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, text=True, timeout=30)
    check(all(f in r.stdout for f in ("--mem-overcommit", "--mem-reserved-mib",
                                      "--vcpu-overcommit", "--disk-reserve-mib")),
          "--help documents the admission flags")


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("SKIP: usage: test_admission_api.py <firecracker_fake.py> (executable)")
        return 77
    env = {"EMBER_FIRECRACKER_BIN": os.path.abspath(sys.argv[1]), "FAKE_FC_VERSION": "1.16.1"}
    defaults(env)
    small_room(env)
    bad_values()
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
