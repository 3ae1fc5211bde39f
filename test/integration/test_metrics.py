#!/usr/bin/python3
"""test_metrics.py: Prometheus metrics of a real emberd (GitHub issue 6).

Starts the built emberd with --metrics-listen 127.0.0.1:<free port> and
--metrics-file, makes RPCs with the real gRPC client (create, get, bad input,
a wrong-state operation, an unknown method, a cancelled watch, delete; no VM
is started), scrapes GET /metrics with urllib, parses the text exposition
format 0.0.4 STRICTLY with the parser below (and, when Debian's
python3-prometheus-client is installed, with its parser too) and checks that
counters, histograms and gauges moved exactly as expected. Also: the file
written for node_exporter's textfile collector, HTTP errors, the config key,
--help, and a bad address failing the start-up.

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     /usr/bin/python3 test/integration/test_metrics.py
"""

import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import grpc
    from emberd_fixture import Emberd, find_emberd
except Exception as e:  # noqa: BLE001 - anything missing means skip
    print("SKIP: %s" % e)
    sys.exit(77)

SVC = "/ember.v1.InstanceService/"

# ---------------------------------------------------------------------------
# A strict parser of the Prometheus text exposition format, version 0.0.4.

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(Exception):
    pass


def _parse_value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ParseError("%s: bad value %r" % (where, s))
    return float(s)


def _unescape(s, allowed, where):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in allowed:
                raise ParseError("%s: bad escape in %r" % (where, s))
            out.append({"\\": "\\", "n": "\n", '"': '"'}[s[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_labels(s, where):
    """s: the text between { and }. Returns a dict; rejects duplicates,
    bad names, unescaped quotes and stray characters."""
    labels, i = {}, 0
    while i < len(s):
        m = re.match(_LABEL + "=\"", s[i:])
        if not m:
            raise ParseError("%s: bad label at %r" % (where, s[i:]))
        name = m.group(0)[:-2]
        i += len(m.group(0))
        j, raw = i, []
        while True:
            if j >= len(s):
                raise ParseError("%s: unterminated label value" % where)
            if s[j] == "\\":
                raw.append(s[j:j + 2])
                j += 2
                continue
            if s[j] == '"':
                break
            if s[j] == "\n":
                raise ParseError("%s: raw newline in label value" % where)
            raw.append(s[j])
            j += 1
        if name in labels:
            raise ParseError("%s: duplicate label %s" % (where, name))
        labels[name] = _unescape("".join(raw), "\\n\"", where)
        i = j + 1
        if i < len(s):
            if s[i] != "," or i + 1 == len(s):
                raise ParseError("%s: expected ',' between labels" % where)
            i += 1
    return labels


def _family_of(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def parse_exposition(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}.
    Raises ParseError on anything the format does not allow, and on
    histogram inconsistencies."""
    if text and not text.endswith("\n"):
        raise ParseError("the text does not end with a newline")
    fams, types, done, current = {}, {}, set(), None
    seen = set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if line == "":
            continue
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + _NAME + r") (.*)", line)
            if not m:
                if re.match(r"#\s*(HELP|TYPE)\b", line):
                    raise ParseError("%s: malformed %r" % (where, line))
                continue  # a plain comment
            kind, name, rest = m.groups()
            f = fams.setdefault(name, {"type": "untyped", "help": None, "samples": []})
            if name in done or (current not in (None, name) and f["samples"]):
                raise ParseError("%s: family %s is not contiguous" % (where, name))
            if current != name and current is not None:
                done.add(current)
            current = name
            if kind == "HELP":
                if f["help"] is not None:
                    raise ParseError("%s: second HELP for %s" % (where, name))
                f["help"] = _unescape(rest, "\\n", where)
            else:
                if rest not in _TYPES:
                    raise ParseError("%s: unknown type %r" % (where, rest))
                if name in types:
                    raise ParseError("%s: second TYPE for %s" % (where, name))
                if f["samples"]:
                    raise ParseError("%s: TYPE after samples of %s" % (where, name))
                types[name] = f["type"] = rest
            continue
        m = re.fullmatch(r"(" + _NAME + r")(?:\{(.*)\})? (\S+)(?: (-?\d+))?", line)
        if not m:
            raise ParseError("%s: malformed sample %r" % (where, line))
        name, lab, val, _ts = m.groups()
        labels = _parse_labels(lab, where) if lab else {}
        value = _parse_value(val, where)
        fam = _family_of(name, types)
        if fam != current:
            if current is not None:
                done.add(current)
            if fam in done:
                raise ParseError("%s: family %s is not contiguous" % (where, fam))
            current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ParseError("%s: duplicate series %s" % (where, key))
        seen.add(key)
        f = fams.setdefault(fam, {"type": "untyped", "help": None, "samples": []})
        f["samples"].append((name, labels, value))
    for name, f in fams.items():
        if f["type"] == "counter":
            if not name.endswith("_total"):
                raise ParseError("counter %s does not end in _total" % name)
            for s in f["samples"]:
                if s[0] != name or not s[2] >= 0:
                    raise ParseError("counter %s: bad sample %s" % (name, s))
        if f["type"] == "histogram":
            _check_histogram(name, f["samples"])
    return fams


def _check_histogram(name, samples):
    series = {}
    for sname, labels, value in samples:
        if sname not in (name + "_bucket", name + "_sum", name + "_count"):
            raise ParseError("histogram %s: stray sample %s" % (name, sname))
        base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            if "le" not in labels:
                raise ParseError("histogram %s: bucket without le" % name)
            s["buckets"].append((_parse_value(labels["le"], name), value))
        elif "le" in labels:
            raise ParseError("histogram %s: le on %s" % (name, sname))
        elif sname.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for base, s in series.items():
        b = s["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ParseError("histogram %s%s: no +Inf bucket" % (name, base))
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            raise ParseError("histogram %s%s: le not increasing" % (name, base))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise ParseError("histogram %s%s: buckets not cumulative" % (name, base))
        if s["count"] is None or s["sum"] is None:
            raise ParseError("histogram %s%s: no _sum or _count" % (name, base))
        if s["count"] != b[-1][1]:
            raise ParseError("histogram %s%s: _count %s != +Inf bucket %s"
                             % (name, base, s["count"], b[-1][1]))


def value(fams, family, sample=None, **labels):
    """The value of one sample (0 when absent); sample defaults to family."""
    f = fams.get(family)
    if f is None:
        raise AssertionError("family %s missing" % family)
    for name, lab, v in f["samples"]:
        if name == (sample or family) and lab == labels:
            return v
    return 0.0


def cross_check(text):
    """Debian's python3-prometheus-client parser must read it too (optional)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        print("note: python3-prometheus-client not installed; own parser only")
        return
    names = [f.name for f in text_string_to_metric_families(text)]
    assert "ember_grpc_requests" in names and "ember_instances" in names, names


# ---------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(url):
    status, headers, body = http(url)
    assert status == 200, (status, body)
    ctype = headers.get("Content-Type")
    assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
    return parse_exposition(body), body


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: %s" % what)


def test_parser_rejects():
    bad = [
        'a_total{x="1"} 1',                                   # no final newline
        '# TYPE a counter\na{x="1} 1\n',                      # unterminated value
        '# TYPE a_total counter\na_total{x="\\q"} 1\n',       # bad escape
        '# TYPE a_total counter\na_total 1\na_total 2\n',     # duplicate series
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
        '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="2"} 1\n',  # not contiguous
        '# TYPE c counter\nc 1\n',                            # counter without _total
    ]
    for t in bad:
        try:
            parse_exposition(t)
        except ParseError:
            continue
        raise AssertionError("the parser accepted %r" % t)
    print("ok: the strict parser rejects %d malformed texts" % len(bad))


def main():
    test_parser_rejects()
    binary = find_emberd()
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    check(out.returncode == 0 and "--metrics-listen" in out.stdout
          and "--metrics-file" in out.stdout, "--help documents --metrics-listen and --metrics-file")
    out = subprocess.run([binary, "--metrics-listen", "nonsense", "--data-dir", "/tmp/x-unused"],
                         capture_output=True, text=True, timeout=10)
    check(out.returncode == 2 and "metrics_listen" in out.stderr,
          "a metrics address without a port is a usage error (exit 2)")

    port = free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    with Emberd(args=["--metrics-listen", "127.0.0.1:%d" % port]) as d:
        prom = os.path.join(d.root, "ember.prom")
        d.stop()
        d.args += ["--metrics-file", prom]
        d.start()
        check(os.path.exists(prom), "the metrics file exists once emberd is ready")
        parse_exposition(open(prom).read())

        fams, text = scrape(url)
        cross_check(text)
        version = subprocess.run([d.binary, "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[-1]
        check(value(fams, "ember_build_info", version=version) == 1,
              "ember_build_info 1 with emberd --version's version (%s)" % version)
        st = value(fams, "ember_process_start_time_seconds")
        check(abs(st - time.time()) < 600, "process start time is recent Unix time")
        for f, t in [("ember_operations_total", "counter"),
                     ("ember_operation_duration_seconds", "histogram"),
                     ("ember_standby_duration_seconds", "histogram"),
                     ("ember_grpc_requests_total", "counter"),
                     ("ember_grpc_request_duration_seconds", "histogram"),
                     ("ember_instances", "gauge")]:
            assert fams[f]["type"] == t and fams[f]["help"], (f, fams[f])
        check(value(fams, "ember_instances", state="stopped", hypervisor="qemu") == 0,
              "ember_instances has zero series before any instance")

        def rpcs(f, method, code):
            return value(f, "ember_grpc_requests_total", method=SVC + method, code=code)

        base = fams
        spec = d.qemu_spec()
        inst = d.create("m1", spec)
        d.get("m1")
        code, _ = d.call_error(d.get, "nope")
        assert code == grpc.StatusCode.NOT_FOUND, code
        code, _ = d.call_error(d.create, "bad name!", spec)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
        code, _ = d.call_error(d.create, "m1", spec)
        assert code == grpc.StatusCode.ALREADY_EXISTS, code
        code, _ = d.call_error(d.create, "m2", d.qemu_spec(hypervisor="no-such-type"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
        code, _ = d.call_error(d.pause, "m1")
        assert code == grpc.StatusCode.FAILED_PRECONDITION, code
        code, _ = d.call_error(d.start_instance, "nope")
        assert code == grpc.StatusCode.NOT_FOUND, code
        code, _ = d.call_error(d.raw_unary, SVC + "NoSuchMethod", b"")
        assert code == grpc.StatusCode.UNIMPLEMENTED, code
        d.list()

        fams, text = scrape(url)
        check(value(fams, "ember_instances", state="stopped", hypervisor="qemu") == 1,
              "ember_instances{state=stopped,hypervisor=qemu} 1 after a create")
        check(rpcs(fams, "CreateInstance", "OK") - rpcs(base, "CreateInstance", "OK") == 1
              and rpcs(fams, "CreateInstance", "INVALID_ARGUMENT") == 2
              and rpcs(fams, "CreateInstance", "ALREADY_EXISTS") == 1,
              "ember_grpc_requests_total counts CreateInstance by code")
        check(rpcs(fams, "GetInstance", "OK") == 1 and rpcs(fams, "GetInstance", "NOT_FOUND") == 1,
              "ember_grpc_requests_total counts GetInstance OK and NOT_FOUND")
        check(value(fams, "ember_grpc_requests_total", method="unknown", code="UNIMPLEMENTED") == 1,
              "an unknown method is counted as method=\"unknown\" (no client-chosen labels)")
        check(not any(SVC + "NoSuchMethod" in l["method"] for _, l, _ in
                      fams["ember_grpc_requests_total"]["samples"]), "the unknown path is no label")
        check(value(fams, "ember_grpc_request_duration_seconds",
                    "ember_grpc_request_duration_seconds_count", method=SVC + "GetInstance") == 2,
              "ember_grpc_request_duration_seconds_count{GetInstance} 2")
        ops = lambda f, op, hv, res: value(f, "ember_operations_total", operation=op,  # noqa: E731
                                           hypervisor=hv, result=res)
        check(ops(fams, "create", "qemu", "ok") == 1, "operations_total create/qemu/ok 1 (event)")
        check(ops(fams, "create", "qemu", "already_exists") == 1
              and ops(fams, "create", "qemu", "invalid_argument") == 1
              and ops(fams, "create", "unknown", "invalid_argument") == 1,
              "create failures counted; an unregistered hypervisor type becomes \"unknown\"")
        check(ops(fams, "pause", "qemu", "failed_precondition") == 1,
              "operations_total pause/qemu/failed_precondition 1 (wrong state)")
        check(ops(fams, "start", "unknown", "not_found") == 1,
              "operations_total start/unknown/not_found 1")

        # A watch the client cancels ends as CANCELLED.
        w = d.watch()
        w.initial_metadata()
        w.cancel()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            fams, text = scrape(url)
            if rpcs(fams, "WatchInstances", "CANCELLED") == 1:
                break
            time.sleep(0.05)
        check(rpcs(fams, "WatchInstances", "CANCELLED") == 1,
              "a cancelled WatchInstances is counted with code CANCELLED")

        d.delete(inst.id)
        fams, text = scrape(url)
        cross_check(text)
        check(ops(fams, "delete", "qemu", "ok") == 1, "operations_total delete/qemu/ok 1")
        check(value(fams, "ember_operation_duration_seconds",
                    "ember_operation_duration_seconds_count", operation="delete",
                    hypervisor="qemu") == 1,
              "ember_operation_duration_seconds_count{delete,qemu} 1 (measured by the RPC)")
        check(value(fams, "ember_instances", state="stopped", hypervisor="qemu") == 0,
              "ember_instances back to 0 after delete")
        check(rpcs(fams, "DeleteInstance", "OK") == 1, "DeleteInstance OK counted")

        # HTTP edges.
        status, _, _ = http("http://127.0.0.1:%d/" % port)
        check(status == 404, "GET / is 404")
        status, headers, _ = http(url, method="POST")
        check(status == 405 and "GET" in (headers.get("Allow") or ""), "POST /metrics is 405")
        status, headers, body = http(url, method="HEAD")
        check(status == 200 and body == "", "HEAD /metrics is 200 without a body")

        # The textfile: rewritten at stop, so it counts everything above.
        rc = d.stop()
        check(rc == 0, "emberd stops cleanly with metrics on")
        ftext = open(prom).read()
        ffams = parse_exposition(ftext)
        cross_check(ftext)
        check(rpcs(ffams, "DeleteInstance", "OK") == 1 and rpcs(ffams, "GetInstance", "OK") == 1,
              "the metrics file (written atomically at stop) has the final counters")
        check(not [n for n in os.listdir(d.root) if ".tmp." in n], "no temp files left behind")

    # The config key.
    port = free_port()
    with Emberd(config={"metrics_listen": "127.0.0.1:%d" % port}) as d:
        fams, _ = scrape("http://127.0.0.1:%d/metrics" % port)
        check("ember_instances" in fams, "config key metrics_listen serves /metrics")
        # The port is taken now: a second daemon must refuse to start.
        other = Emberd(args=["--metrics-listen", "127.0.0.1:%d" % port], start=False)
        try:
            p = other.spawn()
            rc = p.wait(20)
            check(rc == 1 and "cannot serve metrics" in other.log_tail(),
                  "a metrics port in use fails the start-up (exit 1)")
        finally:
            other.close()
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
