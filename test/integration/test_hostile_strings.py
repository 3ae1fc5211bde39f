#!/usr/bin/python3
"""test_hostile_strings.py: every string field of every request of every RPC,
holding a NUL byte or invalid UTF-8, gets INVALID_ARGUMENT naming the field
and changes nothing.

The (rpc, field) pairs are DERIVED at run time from the generated descriptors
(ember.v1.InstanceService and grpc.health.v1.Health, their request messages
walked recursively through message, repeated and map fields): a string field
added to a .proto later is probed without editing this file. For each pair
the request is serialized with a placeholder in that field (every repeated
field on the way holding one element, so the path says [0]), the
placeholder's bytes are replaced in the wire bytes by the same number of
bytes holding a NUL, then invalid UTF-8 (a lone 0xFF, an overlong C0 80, a
surrogate ED A0 80), and sent raw (unary, or server stream). Expected:
INVALID_ARGUMENT whose message names the field path and the offset; the data
dir byte-for-byte unchanged; emberd still serving. Includes the issue's case:
DeleteInstance id "keepme\\0other" must not delete "keepme".

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     /usr/bin/python3 test/integration/test_hostile_strings.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
    from google.protobuf import descriptor as gdesc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, pb, health_pb2
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
FD = gdesc.FieldDescriptor
PLACEHOLDER = "PLACEHOLDER1"          # 12 bytes, found nowhere else in a request
BAD = [  # (name, 12 bytes replacing the placeholder, expected message tail)
    ("NUL", b"PLACE\x00OLDER1", "holds a NUL byte at offset 5"),
    ("lone 0xFF", b"PLACE\xffOLDER1", "is not valid UTF-8 (byte 0xFF at offset 5)"),
    ("overlong C0 80", b"PLACE\xc0\x80LDER1", "is not valid UTF-8 (byte 0xC0 at offset 5)"),
    ("surrogate ED A0 80", b"PLACE\xed\xa0\x80DER1", "is not valid UTF-8 (byte 0xED at offset 5)"),
]
SERVICES = [pb.DESCRIPTOR.services_by_name["InstanceService"],
            health_pb2.DESCRIPTOR.services_by_name["Health"]]


def _is_map(f):
    return (f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry)


def string_paths(desc, prefix=(), depth=0, seen=()):
    """Yields tuples of field descriptors ending at a string field."""
    if depth > 8 or desc.full_name in seen:
        return
    for f in desc.fields:
        path = prefix + (f,)
        if f.type == FD.TYPE_STRING:
            yield path
        elif f.type == FD.TYPE_MESSAGE:
            yield from string_paths(f.message_type, path, depth + 1, seen + (desc.full_name,))


def path_name(path):
    out = []
    for f in path:
        out.append(f.name + ("[0]" if f.label == FD.LABEL_REPEATED else ""))
    return ".".join(out)


def set_path(msg, path, value):
    """Sets msg.<path> = value, creating one element of each repeated field and
    one entry of each map on the way."""
    f = path[0]
    if _is_map(f):
        m = getattr(msg, f.name)
        key_f, val_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        rest = path[1:]
        if rest[0] is key_f or rest[0].name == "key":
            if val_f.type == FD.TYPE_MESSAGE:
                m[value].SetInParent()
            else:
                m[value] = val_f.default_value
        elif val_f.type == FD.TYPE_MESSAGE:
            set_path(m["k"], rest[1:], value)
        else:
            m["k"] = value
        return
    if len(path) == 1:
        if f.label == FD.LABEL_REPEATED:
            getattr(msg, f.name).append(value)
        else:
            setattr(msg, f.name, value)
        return
    if f.label == FD.LABEL_REPEATED:
        rep = getattr(msg, f.name)
        sub = rep[0] if len(rep) else rep.add()
    else:
        sub = getattr(msg, f.name)
    set_path(sub, path[1:], value)


def base_request(d, method):
    """A request that would do something if its strings were accepted."""
    cls = d.msg_class(method.input_type)
    if method.input_type.full_name == "ember.v1.CreateInstanceRequest":
        return pb.CreateInstanceRequest(name="hostile", spec=d.qemu_spec())
    r = cls()
    if "id" in method.input_type.fields_by_name:
        r.id = "keepme"
    return r


class Daemon(Emberd):
    def msg_class(self, desc):
        mod = pb if desc.file.name.startswith("ember/") else health_pb2
        return getattr(mod, desc.name)

    def send_raw(self, svc, method, payload):
        path = "/%s/%s" % (svc.full_name, method.name)
        if method.server_streaming:
            it = self.channel.unary_stream(path, request_serializer=None,
                                           response_deserializer=None)(payload, timeout=10)
            return next(it)
        return self.raw_unary(path, payload)


def main():
    pairs = 0
    rpcs = 0
    failures = []
    with Daemon() as d:
        keep = d.create("keepme", d.qemu_spec())
        before = fx.tree_digest(d.data_dir)

        # The case first.
        req = pb.DeleteInstanceRequest(id="keepme_other").SerializeToString()
        req = req.replace(b"keepme_other", b"keepme\x00other")
        code, detail = Emberd.call_error(d.raw_unary, "/ember.v1.InstanceService/DeleteInstance", req)
        print("DeleteInstance id 'keepme\\0other': %s: %s" % (code, detail))
        if code != SC.INVALID_ARGUMENT or "id holds a NUL byte at offset 6" not in (detail or ""):
            failures.append("DeleteInstance keepme\\0other: %s %s" % (code, detail))
        try:
            assert d.get("keepme").id == keep.id
        except Exception as e:  # noqa
            failures.append("keepme is gone after DeleteInstance 'keepme\\0other': %s" % e)
            before = fx.tree_digest(d.data_dir)

        for svc in SERVICES:
            for method in svc.methods:
                rpcs += 1
                paths = list(string_paths(method.input_type))
                print("%s/%s: %d string field(s)%s" % (svc.name, method.name, len(paths),
                      "".join("\n    " + path_name(p) for p in paths)))
                for path in paths:
                    pairs += 1
                    msg = base_request(d, method)
                    set_path(msg, path, PLACEHOLDER)
                    wire = msg.SerializeToString()
                    assert wire.count(PLACEHOLDER.encode()) == 1, (method.name, path_name(path))
                    name = path_name(path)
                    for bad_name, bad, tail in BAD:
                        payload = wire.replace(PLACEHOLDER.encode(), bad)
                        code, detail = Emberd.call_error(d.send_raw, svc, method, payload)
                        want = "%s %s" % (name, tail)
                        if code != SC.INVALID_ARGUMENT or want not in (detail or ""):
                            failures.append("%s %s %s: got %s %r, want INVALID_ARGUMENT %r"
                                            % (method.name, name, bad_name, code, detail, want))
                        after = fx.tree_digest(d.data_dir)
                        if after != before:
                            failures.append("%s %s %s changed the data dir"
                                            % (method.name, name, bad_name))
                            before = after
        # Still serving, keepme intact, and a clean request still works.
        if d.health_check("").status != health_pb2.HealthCheckResponse.SERVING:
            failures.append("emberd is not SERVING after the hostile requests")
        names = sorted(i.name for i in d.list())
        if names != ["keepme"]:
            failures.append("instances after the hostile requests: %s" % names)
    print("covered %d (rpc, string field) pairs over %d RPCs, %d hostile encodings each"
          % (pairs, rpcs, len(BAD)))
    if pairs == 0:
        failures.append("no string field found: the descriptor walk is broken")
    for f in failures:
        print("FAIL " + f)
    print("%s" % ("FAILED (%d)" % len(failures) if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
