#!/usr/bin/python3
"""make_corpus.py: writes the seed corpus of fuzz_requests (test/fuzz/corpus/).

Each seed is one byte selecting the InstanceService method (index in .proto
order, see METHODS) followed by the serialized request, built with the python
protobuf classes generated from proto/ember/v1/instance.proto (set
EMBER_PYTHON_DIR to <build>/python; /usr/bin/python3 with python3-protobuf).
Names in the seeds refer to the fuzz fixture's instances (t-stopped, t-running,
t-paused, t-standby, q-stopped; see fuzz_requests.c); /etc/passwd and
/etc/group stand for kernel and initrd files that exist everywhere.

Usage: make_corpus.py [OUT_DIR]   (default: the corpus folder next to this file)
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_pb():
    cands = [os.environ.get("EMBER_PYTHON_DIR"), "/tmp/build/python",
             os.path.join(HERE, "..", "..", "build", "python")]
    for c in cands:
        if c and os.path.exists(os.path.join(c, "ember", "v1", "instance_pb2.py")):
            sys.path.insert(0, c)
            from ember.v1 import instance_pb2
            return instance_pb2
    sys.exit("generated python messages not found: set EMBER_PYTHON_DIR to <build>/python")


# Method index -> name, in .proto order, filled from the descriptor in main()
# (the fuzz target orders the methods the same way: fuzz__collect).
METHODS = []
M = {}
FIXTURE = ["t-stopped", "t-running", "t-paused", "t-standby", "q-stopped"]
OPS = ["StartInstance", "StopInstance", "PauseInstance", "ResumeInstance", "StandbyInstance",
       "RestoreInstance"]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_string_field(num, data):
    """A length-delimited field with arbitrary bytes (invalid UTF-8 included)."""
    return varint((num << 3) | 2) + varint(len(data)) + data


# A placeholder string and what replaces its bytes (same length): the
# fixture's name followed by a NUL, or broken UTF-8.
PLACEHOLDER = "t-running-x"
HOSTILE = [("nul", b"t-running\x00x"), ("overlong", b"t-run\xc0\x80ng-x"),
           ("surrogate", b"t-ru\xed\xa0\x80ng-x"), ("ff", b"t-running\xffx")]


def string_paths(desc, prefix=(), depth=0):
    """Tuples of field descriptors from desc down to each string field."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    if depth > 8:
        return
    for f in desc.fields:
        if f.type == FD.TYPE_STRING:
            yield prefix + (f,)
        elif f.type == FD.TYPE_MESSAGE:
            yield from string_paths(f.message_type, prefix + (f,), depth + 1)


def set_path(msg, path, value):
    """msg.<path> = value, using the first element of repeated fields."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    f = path[0]
    rep = f.label == FD.LABEL_REPEATED
    if len(path) == 1:
        if rep:
            getattr(msg, f.name).append(value)
        else:
            setattr(msg, f.name, value)
        return
    if rep and f.message_type.GetOptions().map_entry:
        # A map<string, string> (labels): the hostile string as a key or a value.
        m = getattr(msg, f.name)
        if path[1].name == "key":
            m[value] = "v"
        else:
            m["k"] = value
        return
    if rep:
        r = getattr(msg, f.name)
        sub = r[0] if len(r) else r.add()
    else:
        sub = getattr(msg, f.name)
    set_path(sub, path[1:], value)


def main():
    pb = load_pb()
    METHODS.extend(m.name for m in pb.DESCRIPTOR.services_by_name["InstanceService"].methods)
    M.update({name: i for i, name in enumerate(METHODS)})
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus"))
    seeds = []

    def add(label, method, payload):
        if not isinstance(payload, bytes):
            payload = payload.SerializeToString()
        seeds.append((label, bytes([M[method]]) + payload))

    def spec(**kw):
        s = pb.InstanceSpec(hypervisor=kw.pop("hypervisor", "testvm"), vcpus=kw.pop("vcpus", 1),
                            memory_mib=kw.pop("memory_mib", 64),
                            kernel_path=kw.pop("kernel", "/etc/passwd"),
                            initrd_path=kw.pop("initrd", ""), cmdline=kw.pop("cmdline", ""))
        for d in kw.pop("disks", ()):
            s.disks.add(path=d)
        for n in kw.pop("nics", ()):
            s.network_interfaces.add(tap_device=n[0], mac_address=n[1])
        assert not kw, kw
        return s

    def create(label, name="new-1", start=False, **kw):
        add("create-" + label, "CreateInstance",
            pb.CreateInstanceRequest(name=name, spec=spec(**kw), start=start))

    # Valid requests.
    create("valid-testvm")
    create("valid-testvm-start", start=True)
    create("valid-qemu", hypervisor="qemu", initrd="/etc/group", cmdline="console=ttyS0",
           disks=["/etc/passwd"], nics=[("tap0", "52:54:00:12:34:56")])
    create("valid-qemu-start", hypervisor="qemu", start=True)
    create("valid-firecracker-start", hypervisor="firecracker", start=True)
    create("name-taken", name="t-stopped")
    # Hostile names.
    for label, name in [("dotdot", ".."), ("dot", "."), ("slash", "a/b"),
                        ("traversal", "../../etc/passwd"), ("abs", "/etc"),
                        ("nul", "a\x00b"), ("ctrl", "a\nb\x1b[31m"), ("empty", ""),
                        ("long", "a" * 64), ("verylong", "x" * 4096), ("space", "a b"),
                        ("dash-first", "-rf"), ("unicode", "na\u00efve")]:
        create("name-" + label, name=name)
    add("create-name-invalid-utf8", "CreateInstance",
        raw_string_field(1, b"bad\xff\xfe") + raw_string_field(2, spec().SerializeToString()))
    # Sizes.
    for label, kw in [("vcpus-0", dict(vcpus=0)), ("vcpus-65", dict(vcpus=65)),
                      ("vcpus-max", dict(vcpus=0xFFFFFFFF)), ("mem-0", dict(memory_mib=0)),
                      ("mem-15", dict(memory_mib=15)), ("mem-huge", dict(memory_mib=2**64 - 1)),
                      ("mem-over", dict(memory_mib=262145))]:
        create(label, **kw)
    # Files.
    for label, kw in [("kernel-missing", dict(kernel="/nonexistent/vmlinux")),
                      ("kernel-relative", dict(kernel="vmlinux")),
                      ("kernel-dir", dict(kernel="/etc")),
                      ("kernel-dotdot", dict(kernel="/etc/../etc/passwd")),
                      ("kernel-comma", dict(kernel="/etc/passwd,readonly=on")),
                      ("kernel-ctrl", dict(kernel="/etc/passwd\n")),
                      ("kernel-empty", dict(kernel="")),
                      ("kernel-long", dict(kernel="/" + "a" * 5000)),
                      ("kernel-dev", dict(kernel="/dev/zero")),
                      ("initrd-missing", dict(initrd="/nonexistent")),
                      ("disk-missing", dict(disks=["/nonexistent.img"])),
                      ("disk-many", dict(disks=["/etc/passwd"] * 17)),
                      ("cmdline-ctrl", dict(cmdline="console=ttyS0\x00init=/bin/sh")),
                      ("cmdline-long", dict(cmdline="a" * 5000)),
                      ("nic-long", dict(nics=[("tap-with-a-long-name", "")])),
                      ("nic-slash", dict(nics=[("../tap", "")])),
                      ("nic-empty", dict(nics=[("", "")])),
                      ("nic-badmac", dict(nics=[("tap0", "zz:zz")])),
                      ("nic-many", dict(nics=[("tap%d" % i, "") for i in range(9)])),
                      ("hv-unknown", dict(hypervisor="bochs")),
                      ("hv-empty", dict(hypervisor="")),
                      ("hv-traversal", dict(hypervisor="../qemu"))]:
        create(label, **kw)
    add("create-no-spec", "CreateInstance", pb.CreateInstanceRequest(name="nospec"))

    # Lifecycle operations on every fixture instance, and hostile ids.
    for op in OPS + ["GetInstance", "DeleteInstance", "WatchInstances"]:
        req = getattr(pb, op.replace("Instances", "Instance") + "Request", None) \
            or pb.GetInstanceRequest
        if op == "WatchInstances":
            req = pb.WatchInstancesRequest
        for name in FIXTURE:
            add("%s-%s" % (op, name), op, req(id=name))
        for label, ident in [("missing", "nope"), ("empty", ""), ("dotdot", ".."),
                             ("slash", "../instances"), ("long", "i" * 300)]:
            if label in ("empty", "long") or op in ("GetInstance", "StandbyInstance",
                                                    "DeleteInstance"):
                add("%s-id-%s" % (op, label), op, req(id=ident))
    add("GetInstance-id-nul", "GetInstance", raw_string_field(1, b"t-running\x00x"))
    add("GetInstance-id-invalid-utf8", "GetInstance", raw_string_field(1, b"\xc0\xaf"))
    # Lists: filters, pages, and the removed `state` field (1) as an unknown field.
    for st in (2, 99, -1):
        add("ListInstances-old-state-%d" % st, "ListInstances",
            varint(1 << 3) + varint(st & 0xFFFFFFFFFFFFFFFF))
    for label, kw in [("all", {}), ("state", dict(filter="state=RUNNING")),
                      ("state-bad", dict(filter="state=SLEEPING")),
                      ("labels", dict(filter='labels.team=infra AND name="t-running"')),
                      ("filter-junk", dict(filter="a=b AND AND =")),
                      ("filter-quote", dict(filter='name="unterminated')),
                      ("filter-long", dict(filter="name=" + "a" * 2000)),
                      ("page-1", dict(page_size=1)), ("page-neg", dict(page_size=-5)),
                      ("page-huge", dict(page_size=2**31 - 1)),
                      ("token-junk", dict(page_token="1zz")),
                      ("token-hex", dict(page_token="1" + "00" * 40)),
                      ("token-other-filter", dict(page_token="1" + ("%016x:t-paused" % 7)
                                                  .encode().hex()))]:
        add("ListInstances-" + label, "ListInstances", pb.ListInstancesRequest(**kw))
    # Labels, request ids, graceful timeouts, allow_missing.
    for label, kw in [("labels", dict(labels={"team": "infra", "example.com/role": "db"})),
                      ("labels-bad-key", dict(labels={"-x": "y", "a b": ""})),
                      ("labels-many", dict(labels={"k%d" % i: "v" for i in range(70)})),
                      ("request-id", dict(request_id="5e3c-retry-1")),
                      ("request-id-bad", dict(request_id="a b\x00")),
                      ("request-id-long", dict(request_id="r" * 300))]:
        add("create-" + label, "CreateInstance",
            pb.CreateInstanceRequest(name="new-1", spec=spec(), **kw))
    for label, secs, nanos in [("0", 0, 0), ("1s", 1, 0), ("neg", -1, 0), ("huge", 2**40, 0),
                               ("bad-nanos", 0, -5)]:
        req = pb.StopInstanceRequest(id="t-running")
        req.graceful_timeout.seconds = secs
        req.graceful_timeout.nanos = nanos
        add("StopInstance-grace-" + label, "StopInstance", req)
    add("DeleteInstance-allow-missing", "DeleteInstance",
        pb.DeleteInstanceRequest(id="nope", allow_missing=True))
    add("ListHypervisors", "ListHypervisors", pb.ListHypervisorsRequest())
    # Forks and snapshots of the fixture's testvm instances (t-running is
    # Running, t-standby Standby): clones are made and the fixture removes
    # them (and any saved snapshot) before the next input.
    add("fork-running", "ForkInstance", pb.ForkInstanceRequest(id="t-running", names=["f-1"]))
    add("fork-standby-prefix", "ForkInstance",
        pb.ForkInstanceRequest(id="t-standby", name_prefix="f", count=2, standby=True))
    add("fork-stopped", "ForkInstance", pb.ForkInstanceRequest(id="t-stopped", names=["f-1"]))
    add("fork-unknown-snapshot", "ForkInstance",
        pb.ForkInstanceRequest(snapshot="nope", names=["f-1"]))
    add("fork-both", "ForkInstance",
        pb.ForkInstanceRequest(id="t-running", snapshot="s", names=["f-1"]))
    add("snapshot-standby", "CreateSnapshot", pb.CreateSnapshotRequest(id="t-standby", name="s1"))
    add("snapshot-id-form", "CreateSnapshot",
        pb.CreateSnapshotRequest(id="t-running", name="s-0011"))
    add("snapshots", "ListSnapshots", pb.ListSnapshotsRequest())
    add("rmsnapshot-unknown", "DeleteSnapshot", pb.DeleteSnapshotRequest(snapshot="s1"))

    # Wire-level junk.
    add("junk-truncated-create", "CreateInstance",
        pb.CreateInstanceRequest(name="x", spec=spec()).SerializeToString()[:-3])
    add("junk-wrong-wiretype", "GetInstance", varint((1 << 3) | 0) + varint(5))
    add("junk-unknown-field", "GetInstance", raw_string_field(99, b"zzz") +
        raw_string_field(1, b"t-running"))
    add("junk-huge-length", "CreateInstance", varint((1 << 3) | 2) + varint(2**62))
    add("junk-empty", "GetInstance", b"")

    # Every string field of every request (walked from the descriptors, so a
    # new field gets seeds too) holding a NUL byte, then invalid UTF-8, in an
    # otherwise meaningful request: emberd must refuse each with
    # INVALID_ARGUMENT naming the field, before decoding.
    svc = pb.DESCRIPTOR.services_by_name["InstanceService"]
    assert [m.name for m in svc.methods] == METHODS, "METHODS is out of step with the .proto"
    for method in svc.methods:
        for path in string_paths(method.input_type):
            if method.name == "CreateInstance":
                msg = pb.CreateInstanceRequest(
                    name="new-1", spec=spec(disks=["/etc/passwd"], nics=[("tap0", "")]))
            else:
                msg = getattr(pb, method.input_type.name)()
                if "id" in method.input_type.fields_by_name:
                    msg.id = "t-running"
            set_path(msg, path, PLACEHOLDER)
            wire = msg.SerializeToString()
            for label, bad in HOSTILE:
                add("%s-%s-%s" % (method.name, ".".join(f.name for f in path), label),
                    method.name, wire.replace(PLACEHOLDER.encode(), bad))

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for i, (label, data) in enumerate(seeds):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        with open(os.path.join(out, "%03d-%s" % (i, safe)), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
