"""grpcurl_reflect: what grpcurl does, with the python gRPC client and server
reflection only (no .proto at hand), for tests on machines without grpcurl.

    argv = parse_grpcurl(shlex.split(line)[1:])   # grpcurl's own flag grammar
    c = ReflectionClient(channel, version="v1")   # or "v1alpha"
    c.list_services()                             # grpcurl ADDR list
    c.describe("ember.v1.Instance.spec")          # grpcurl ADDR describe SYM
    c.invoke("ember.v1.InstanceService/GetInstance", '{"id":"web"}')

parse_grpcurl follows grpcurl's main.go: Go's flag package stops at the first
argument that is not a flag, so every flag goes before the address; booleans
(-plaintext, -unix, ...) take no separate value; -d, -H, ... take one. Then:
ADDRESS, then `list [SYMBOL]`, `describe [SYMBOL]` or METHOD; anything left is
grpcurl's "Too many arguments." (raised as GrpcurlUsage with its message).

The client resolves symbols as grpcurl's reflection source does:
file_containing_symbol, then a descriptor pool of the returned files
(dependencies first), then the symbol in that pool.
"""

import json

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

import emberd_fixture as fx

# grpcurl's flags (grpcurl -help), by kind.
BOOL_FLAGS = {"plaintext", "insecure", "unix", "v", "vv", "veryverbose", "emit-defaults",
              "allow-unknown-fields", "format-error", "msg-template", "use-reflection", "help",
              "version", "expand-headers"}
VALUE_FLAGS = {"d", "H", "rpc-header", "reflect-header", "format", "connect-timeout", "max-time",
               "proto", "protoset", "protoset-out", "import-path", "authority", "cert", "key",
               "cacert", "servername", "max-msg-sz", "user-agent", "keepalive-time", "alts",
               "alts-handshaker-service", "alts-target-service-account"}


class GrpcurlUsage(Exception):
    """grpcurl would exit with a usage error (message as grpcurl prints it)."""


def parse_grpcurl(args):
    """args: the words after `grpcurl`. Returns a dict: flags (name -> value,
    True for booleans), address, verb ("list", "describe" or "invoke"), symbol
    (or None)."""
    flags = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        name = a.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in BOOL_FLAGS:
            flags[name] = True if value is None else value not in ("false", "0", "f", "F")
        elif name in VALUE_FLAGS:
            if value is None:
                i += 1
                if i >= len(args):
                    raise GrpcurlUsage("flag needs an argument: -%s" % name)
                value = args[i]
            flags[name] = value
        else:
            raise GrpcurlUsage("flag provided but not defined: -%s" % name)
        i += 1
    rest = args[i:]
    if not rest:
        raise GrpcurlUsage("Too few arguments.")
    address = None
    if rest[0] not in ("list", "describe"):
        address, rest = rest[0], rest[1:]
    if not rest:
        raise GrpcurlUsage("Too few arguments.")
    verb, symbol = "invoke", None
    if rest[0] in ("list", "describe"):
        verb, rest = rest[0], rest[1:]
        if rest:
            symbol, rest = rest[0], rest[1:]
    else:
        symbol, rest = rest[0], rest[1:]
    if rest:
        raise GrpcurlUsage("Too many arguments.")
    if address is None:
        raise GrpcurlUsage("No host:port specified.")
    if flags.get("unix") and not flags.get("plaintext") and not flags.get("insecure"):
        # grpcurl would try TLS on the socket; emberd's socket is plaintext.
        raise GrpcurlUsage("TLS handshake would fail: the unix socket needs -plaintext")
    return {"flags": flags, "address": address, "verb": verb, "symbol": symbol}


def pool_from(files):
    """A descriptor pool of serialized FileDescriptorProtos, dependencies
    first (as grpcurl builds it); returns (pool, {name: FileDescriptorProto})."""
    protos = {}
    for b in files:
        fdp = descriptor_pb2.FileDescriptorProto.FromString(b)
        protos[fdp.name] = fdp
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in protos[name].dependency:
            add(dep)
        pool.Add(protos[name])
        added.add(name)

    for n in protos:
        add(n)
    return pool, protos


def _mod(version):
    return fx.reflection_v1_pb2 if version == "v1" else fx.reflection_v1alpha_pb2


class ReflectionClient:
    def __init__(self, channel, version="v1", timeout=10):
        self.channel = channel
        self.version = version
        self.timeout = timeout

    def ask(self, requests):
        """ServerReflectionRequests (dicts) on one stream -> responses."""
        mod = _mod(self.version)
        path = "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % self.version
        fn = self.channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=mod.ServerReflectionResponse.FromString)
        return list(fn(iter([mod.ServerReflectionRequest(**r) for r in requests]),
                       timeout=self.timeout))

    def list_services(self):
        r = self.ask([{"list_services": ""}])[0]
        if r.WhichOneof("message_response") != "list_services_response":
            raise LookupError(r.error_response.error_message)
        return sorted(s.name for s in r.list_services_response.service)

    def file_containing(self, symbol):
        """-> (pool, protos, name of the file that declares symbol)."""
        r = self.ask([{"file_containing_symbol": symbol}])[0]
        if r.WhichOneof("message_response") != "file_descriptor_response":
            raise LookupError("Symbol not found: %s (%s)" % (symbol, r.error_response.error_message))
        files = r.file_descriptor_response.file_descriptor_proto
        pool, protos = pool_from(files)
        return pool, protos, descriptor_pb2.FileDescriptorProto.FromString(files[0]).name

    def resolve(self, symbol):
        """The descriptor of symbol, any kind, found as grpcurl finds it."""
        pool, protos, _ = self.file_containing(symbol)
        symbol = symbol.lstrip(".")   # a fully qualified ".pkg.Name" is the same symbol
        for find in (pool.FindServiceByName, pool.FindMessageTypeByName, pool.FindEnumTypeByName,
                     pool.FindMethodByName, pool.FindFieldByName, pool.FindOneofByName,
                     pool.FindExtensionByName):
            try:
                return find(symbol)
            except KeyError:
                pass
        # Enum values: protobuf scopes them as siblings of their enum
        # ("ember.v1.INSTANCE_STATE_RUNNING"); the enum-qualified spelling is
        # what some tools print.
        scope, _, name = symbol.rpartition(".")
        try:
            return pool.FindEnumTypeByName(scope).values_by_name[name]
        except KeyError:
            pass
        for full in _enum_names(protos):
            if full.rpartition(".")[0] == scope:
                e = pool.FindEnumTypeByName(full)
                if name in e.values_by_name:
                    return e.values_by_name[name]
        raise LookupError("Symbol not found: %s (not in the file reflection returned)" % symbol)

    def describe(self, symbol=None):
        """grpcurl describe: the symbol's descriptor (every service when
        symbol is None) -> list of descriptors."""
        if symbol is None:
            return [self.resolve(s) for s in self.list_services()]
        return [self.resolve(symbol)]

    def invoke(self, method, data="", metadata=None):
        """grpcurl ADDR METHOD with -d data: resolves the service by reflection,
        builds the request from JSON with the descriptor from reflection, calls
        it; returns the responses as proto3 JSON strings (several for a server
        stream)."""
        svc_name, sep, m_name = method.replace("/", ".").rpartition(".")
        if not sep:
            raise GrpcurlUsage("given method name \"%s\" is not in expected format" % method)
        svc = self.resolve(svc_name)
        md = svc.methods_by_name.get(m_name)
        if md is None:
            raise LookupError("service %s does not include a method named %s" % (svc_name, m_name))
        factory = message_factory.MessageFactory(md.input_type.file.pool)
        req_cls = factory.GetPrototype(md.input_type)
        resp_cls = factory.GetPrototype(md.output_type)
        req = json_format.Parse(data or "{}", req_cls())
        path = "/%s/%s" % (svc.full_name, md.name)
        kw = dict(request_serializer=lambda m: m.SerializeToString(),
                  response_deserializer=resp_cls.FromString)
        if md.server_streaming:
            it = self.channel.unary_stream(path, **kw)(req, timeout=self.timeout, metadata=metadata)
            return [json_format.MessageToJson(x) for x in it]
        r = self.channel.unary_unary(path, **kw)(req, timeout=self.timeout, metadata=metadata)
        return [json_format.MessageToJson(r)]


def _enum_names(protos):
    for fdp in protos.values():
        scope = fdp.package

        def walk(prefix, msgs, enums):
            for e in enums:
                yield prefix + "." + e.name if prefix else e.name
            for m in msgs:
                p = prefix + "." + m.name if prefix else m.name
                yield from walk(p, m.nested_type, m.enum_type)

        yield from walk(scope, fdp.message_type, fdp.enum_type)


def symbols_of(fdp):
    """Every symbol a FileDescriptorProto declares, as (kind, full name,
    source path): services, methods, messages (nested too), fields, oneofs,
    enums and enum values (protobuf scoping: siblings of their enum). The
    source path is the SourceCodeInfo.Location path of the declaration."""
    out = []
    pkg = fdp.package

    def j(scope, name):
        return scope + "." + name if scope else name

    def enum(scope, e, path):
        out.append(("enum", j(scope, e.name), path))
        for i, v in enumerate(e.value):
            out.append(("enum value", j(scope, v.name), path + [2, i]))

    def msg(scope, m, path):
        full = j(scope, m.name)
        out.append(("message", full, path))
        for i, f in enumerate(m.field):
            out.append(("field", j(full, f.name), path + [2, i]))
        for i, o in enumerate(m.oneof_decl):
            out.append(("oneof", j(full, o.name), path + [8, i]))
        for i, n in enumerate(m.nested_type):
            msg(full, n, path + [3, i])
        for i, e in enumerate(m.enum_type):
            enum(full, e, path + [4, i])

    for i, m in enumerate(fdp.message_type):
        msg(pkg, m, [4, i])
    for i, e in enumerate(fdp.enum_type):
        enum(pkg, e, [5, i])
    for i, s in enumerate(fdp.service):
        full = j(pkg, s.name)
        out.append(("service", full, [6, i]))
        for k, m in enumerate(s.method):
            out.append(("method", j(full, m.name), [6, i, 2, k]))
    return out


def result_json(lines):
    """Parses invoke() output back into dicts."""
    return [json.loads(x) for x in lines]


def leading_comment(client, symbol):
    """The proto comment above symbol's declaration, from the source info
    reflection serves ("" when none)."""
    _, protos, fname = client.file_containing(symbol)
    fdp = protos[fname]
    want = symbol.lstrip(".")
    locs = {tuple(l.path): l for l in fdp.source_code_info.location}
    for _kind, full, path in symbols_of(fdp):
        if full == want and tuple(path) in locs:
            return locs[tuple(path)].leading_comments
    return ""


def _describe_text(desc, comment=""):
    """A short text of a descriptor with its leading comment, like grpcurl's."""
    kind = type(desc).__name__.replace("Descriptor", "").lower()
    name = getattr(desc, "full_name", desc.name)
    lines = ["%s is a %s:" % (name, kind)]
    lines += ["//" + c for c in comment.splitlines()]
    cls = {"service": descriptor_pb2.ServiceDescriptorProto,
           "message": descriptor_pb2.DescriptorProto,
           "enum": descriptor_pb2.EnumDescriptorProto,
           "method": descriptor_pb2.MethodDescriptorProto}.get(kind)
    proto = None
    if cls is not None and hasattr(desc, "CopyToProto"):
        proto = cls()
        desc.CopyToProto(proto)
    if proto is not None:
        lines.append(str(proto).strip())
    elif kind == "field":
        typ = desc.message_type or desc.enum_type
        lines.append("%s %s = %d;" % (typ.full_name if typ else "scalar type %d" % desc.type,
                                      desc.name, desc.number))
    else:
        lines.append("%s = %s;" % (desc.name, getattr(desc, "number", "")))
    return "\n".join(lines)


def main(argv):
    """Command-line emulation of grpcurl for the documented forms; exit codes
    as grpcurl's: 2 usage, 1 other failure, 64 + status code for an RPC
    error."""
    import sys
    import grpc
    try:
        a = parse_grpcurl(argv)
    except GrpcurlUsage as e:
        sys.stderr.write("%s\nTry 'grpcurl -help' for more details.\n" % e)
        return 2
    f = a["flags"]
    if not f.get("plaintext"):
        sys.stderr.write("emulation supports -plaintext only\n")
        return 2
    target = ("unix:" + a["address"]) if f.get("unix") else a["address"]
    sys.stderr.write("(grpcurl not installed: emulated through server reflection by %s)\n"
                     % __file__)
    with grpc.insecure_channel(target) as ch:
        c = ReflectionClient(ch, "v1")
        try:
            if a["verb"] == "list":
                if a["symbol"]:
                    svc = c.resolve(a["symbol"])
                    print("\n".join(m.full_name for m in svc.methods))
                else:
                    print("\n".join(c.list_services()))
            elif a["verb"] == "describe":
                for sym in [a["symbol"]] if a["symbol"] else c.list_services():
                    print(_describe_text(c.resolve(sym), leading_comment(c, sym)))
            else:
                md = [(k, v) for k, v in _headers(f)]
                for out in c.invoke(a["symbol"], f.get("d", ""), metadata=md or None):
                    print(out)
        except grpc.RpcError as e:
            sys.stderr.write("ERROR:\n  Code: %s\n  Message: %s\n" % (e.code().name, e.details()))
            return 64 + e.code().value[0]
        except (LookupError, GrpcurlUsage, json_format.ParseError) as e:
            sys.stderr.write("Failed: %s\n" % e)
            return 1
    return 0


def _headers(flags):
    h = flags.get("H") or flags.get("rpc-header")
    if not h:
        return []
    k, _, v = h.partition(":")
    return [(k.strip().lower(), v.strip())]


if __name__ == "__main__":
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
