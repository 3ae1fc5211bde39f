#!/usr/bin/python3
"""test_reflection.py: server reflection of the BUILT emberd serves every symbol
of the API, with the proto's comments, on grpc.reflection.v1 and v1alpha, the way
grpcurl asks for them (python gRPC client, test/integration/grpcurl_reflect.py).

The symbol list is derived from the descriptors reflection itself returns
(every service, method, message, nested message, field, oneof, enum and enum
value of every served file), so a symbol added to the proto is covered with no
edit here. For each: file_containing_symbol answers with the file that declares
it, and the symbol resolves in the pool built from the answer (what grpcurl
describe does). For ember/v1/instance.proto, every comment in the .proto text
(parsed here from the source file) must come back as the leading comment of its
declaration in source_code_info.

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     EMBER_PROTO=proto/ember/v1/instance.proto /usr/bin/python3 test/integration/test_reflection.py
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc  # noqa: F401
    from google.protobuf import descriptor_pb2
    from emberd_fixture import Checks, Emberd
    import grpcurl_reflect as gr
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.environ.get("EMBER_PROTO") or os.path.join(HERE, "..", "..", "proto", "ember", "v1",
                                                      "instance.proto")
CHECKS = Checks()
check = CHECKS.check


def proto_comments(path):
    """{full name: leading comment as protoc records it} for every declaration
    of a .proto file that has a comment block right above it. A small parser
    for the subset the API uses (package, service, rpc, message, enum, oneof,
    fields, enum values; one declaration per line)."""
    pkg = ""
    scope = []          # [(kind, name)]
    comment = []
    out = {}
    decl = re.compile(r"^(service|message|enum|oneof)\s+(\w+)\s*\{")
    rpc = re.compile(r"^rpc\s+(\w+)\s*\(")
    field = re.compile(r"^(?:repeated\s+|optional\s+)?(?:map\s*<[^>]*>|[\w.]+)\s+(\w+)\s*=\s*\d+")
    value = re.compile(r"^(\w+)\s*=\s*-?\d+")

    def full(name, enum_value=False):
        names = [n for k, n in scope if k != "oneof"]
        if enum_value:
            names = names[:-1]   # values are siblings of their enum
        return ".".join([pkg] + names + [name]) if pkg else ".".join(names + [name])

    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if line.startswith("//"):
            comment.append(line[2:])
            continue
        if not line:
            comment = []          # a blank line detaches the comment
            continue
        text = "".join(c + "\n" for c in comment)
        comment = []
        m = re.match(r"^package\s+([\w.]+)\s*;", line)
        if m:
            pkg = m.group(1)
            continue
        name = None
        m = decl.match(line)
        if m:
            name = full(m.group(2))
            scope.append((m.group(1), m.group(2)))
            if line.endswith("}"):
                scope.pop()
        elif rpc.match(line):
            name = full(rpc.match(line).group(1))
        elif scope and scope[-1][0] == "enum" and value.match(line):
            name = full(value.match(line).group(1), enum_value=True)
        elif scope and scope[-1][0] in ("message", "oneof") and field.match(line):
            name = full(field.match(line).group(1))
        elif line.startswith("}"):
            scope.pop()
        if name is not None and text:
            out[name] = text
    return out


def main():
    want_comments = proto_comments(PROTO)
    check(len(want_comments) > 50, "parsed %d commented declarations from %s"
          % (len(want_comments), os.path.relpath(PROTO)))
    with Emberd() as d:
        for version in ("v1", "v1alpha"):
            c = gr.ReflectionClient(d.channel, version)
            # Every file reflection serves: the closure of every service's file.
            files = {}
            for svc in c.list_services():
                r = c.ask([{"file_containing_symbol": svc}])[0]
                for b in r.file_descriptor_response.file_descriptor_proto:
                    fdp = descriptor_pb2.FileDescriptorProto.FromString(b)
                    files[fdp.name] = fdp
            check("ember/v1/instance.proto" in files, "%s: files served: %s"
                  % (version, sorted(files)))
            kinds = {}
            bad = []
            for fname, fdp in sorted(files.items()):
                for kind, sym, _path in gr.symbols_of(fdp):
                    kinds[kind] = kinds.get(kind, 0) + 1
                    try:
                        _, _, got = c.file_containing(sym)
                        if got != fname:
                            bad.append("%s %s: in %s, reflection answered %s" % (kind, sym, fname, got))
                            continue
                        desc = c.resolve(sym)
                        if kind != "enum value" and desc.full_name != sym:
                            bad.append("%s %s resolved to %s" % (kind, sym, desc.full_name))
                    except Exception as e:  # noqa
                        bad.append("%s %s: %s" % (kind, sym, e))
            check(not bad, "%s: every symbol of every served file resolves (%s)%s"
                  % (version, ", ".join("%d %ss" % (n, k) for k, n in sorted(kinds.items())),
                     "".join("\n       " + b for b in bad[:20])))
            # The spellings grpcurl users type.
            for sym in ("ember.v1.Instance.spec", "ember.v1.InstanceService.GetInstance",
                        "ember.v1.INSTANCE_STATE_RUNNING",
                        "ember.v1.InstanceState.INSTANCE_STATE_RUNNING",
                        ".ember.v1.InstanceSpec.disks",
                        "grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING",
                        "grpc.health.v1.HealthCheckResponse.SERVING",
                        "grpc.reflection.%s.ServerReflectionRequest.message_request" % version):
                try:
                    desc = c.resolve(sym)
                    check(True, "%s: %s -> %s %s" % (version, sym, type(desc).__name__,
                                                    getattr(desc, "full_name", desc.name)))
                except Exception as e:  # noqa
                    check(False, "%s: %s: %s" % (version, sym, e))
            for sym in ("ember.v1.Instance.nope", "ember.v1.NOPE", "ember", "ember.v1.Instance."):
                r = c.ask([{"file_containing_symbol": sym}])[0]
                check(r.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0],
                      "%s: %r is NOT_FOUND" % (version, sym))

            # Comments: source_code_info of instance.proto against the .proto text.
            fdp = files["ember/v1/instance.proto"]
            locs = {tuple(l.path): l for l in fdp.source_code_info.location}
            check(len(locs) > 0, "%s: instance.proto carries source_code_info (%d locations)"
                  % (version, len(locs)))
            got_comments = {}
            for kind, sym, path in gr.symbols_of(fdp):
                l = locs.get(tuple(path))
                if l is not None and l.leading_comments:
                    got_comments[sym] = l.leading_comments
            missing = [s for s in want_comments if s not in got_comments]
            differ = [s for s in want_comments if s in got_comments
                      and got_comments[s] != want_comments[s]]
            extra = [s for s in got_comments if s not in want_comments]
            check(not missing and not differ and not extra,
                  "%s: %d comments of instance.proto served as written (missing %s, different %s, "
                  "unexpected %s)" % (version, len(got_comments), missing[:5], differ[:5], extra[:5]))
            svc = c.resolve("ember.v1.InstanceService")
            check(svc.file.name == "ember/v1/instance.proto", "%s: describe InstanceService" % version)
        rc = d.stop()
        check(rc == 0, "emberd exit status %s" % rc)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
