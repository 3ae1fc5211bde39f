#!/usr/bin/python3
"""test_api_contract.py: two rules of the v1 API, through the BUILT emberd and
the real python gRPC client.

names_and_ids_disjoint: a name can never be an id. Creating an instance whose
  name is another instance's id, or any name starting with "i-", is
  INVALID_ARGUMENT and changes nothing on disk; a malformed id ("i-" + not 16
  hex digits) is INVALID_ARGUMENT; Stop with an id acts on that instance only.

unavailable_hypervisor_refused_at_create: CreateInstance of a type whose binary
  is missing is FAILED_PRECONDITION naming the binary, nothing on disk changes.
  An instance created while the binary was there still loads after a restart
  without it, reports Stopped, answers Start with FAILED_PRECONDITION naming
  the type, and can be deleted.

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     /usr/bin/python3 test/integration/test_api_contract.py <firecracker_fake.py>
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Checks, Emberd, pb
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
CHECKS = Checks()
check = CHECKS.check
MISSING_FC = "/nonexistent/ember-test/firecracker"
MISSING_CH = "/nonexistent/ember-test/cloud-hypervisor"


def names_and_ids_disjoint():
    with Emberd() as d:
        a = d.create("alpha", d.qemu_spec())
        b = d.create("beta", d.qemu_spec())
        before = fx.tree_digest(d.data_dir)
        for name in (a.id, "i-web", "i-0123456789abcdef", "i-"):
            code, msg = d.call_error(d.create, name, d.qemu_spec())
            check(code == SC.INVALID_ARGUMENT and "i-" in msg,
                  "create name=%r: %s %s" % (name, code, msg))
        check(fx.tree_digest(d.data_dir) == before, "refused creates changed nothing on disk")
        for bad in ("i-xyz", "i-0123", "i-0123456789ABCDEF", a.id + "0"):
            code, msg = d.call_error(d.get, bad)
            check(code == SC.INVALID_ARGUMENT, "get %r: %s %s" % (bad, code, msg))
        code, got = d.call_error(d.get, a.id)
        check(code == SC.OK and got.name == "alpha", "get by id finds alpha")
        code, got = d.call_error(d.get, "beta")
        check(code == SC.OK and got.id == b.id, "get by name finds beta")
        code, got = d.call_error(d.stop_instance, b.id)
        check(code == SC.OK and got.id == b.id, "stop by id acts on that instance: %s" % code)
        check(sorted(i.name for i in d.list()) == ["alpha", "beta"], "both still there")


def unavailable_hypervisor_refused_at_create(fake):
    with Emberd(env={"EMBER_FIRECRACKER_BIN": fake}) as d:
        hv = {h.type: h for h in d.list_hypervisors()}
        check(hv["firecracker"].available, "firecracker (fake) available: %s" % hv["firecracker"].detail)
        kernel = os.path.join(d.root, "kernel")
        with open(kernel, "wb") as f:
            f.write(os.urandom(4096))
        old = d.create("fc-old", d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=kernel))
        # The same data dir, the binaries gone.
        d.env.update({"EMBER_FIRECRACKER_BIN": MISSING_FC, "EMBER_CLOUD_HYPERVISOR_BIN": MISSING_CH})
        d.restart()
        hv = {h.type: h for h in d.list_hypervisors()}
        check(not hv["firecracker"].available, "firecracker unavailable: %s" % hv["firecracker"].detail)
        before = fx.tree_digest(d.data_dir)
        for typ, binary in (("firecracker", MISSING_FC), ("cloud-hypervisor", MISSING_CH)):
            code, msg = d.call_error(d.create, "new-" + typ,
                                     d.make_spec(hypervisor=typ, memory_mib=16, kernel=kernel))
            check(code == SC.FAILED_PRECONDITION and binary in msg,
                  "create %s without its binary: %s %s" % (typ, code, msg))
        check(fx.tree_digest(d.data_dir) == before, "refused creates changed nothing on disk")
        code, got = d.call_error(d.get, "fc-old")
        check(code == SC.OK and got.id == old.id and got.state == pb.INSTANCE_STATE_STOPPED,
              "the record created earlier still loads: %s %s" % (code, got if code != SC.OK else
                                                                 pb.InstanceState.Name(got.state)))
        code, msg = d.call_error(d.start_instance, "fc-old")
        check(code == SC.FAILED_PRECONDITION and "firecracker" in msg and "not available" in msg,
              "start of the old record: %s %s" % (code, msg))
        code, _ = d.call_error(d.delete, "fc-old")
        check(code == SC.OK, "the old record can be deleted: %s" % code)


def main():
    if len(sys.argv) < 2:
        print("usage: test_api_contract.py <firecracker_fake.py>")
        return 2
    names_and_ids_disjoint()
    unavailable_hypervisor_refused_at_create(os.path.abspath(sys.argv[1]))
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
