#!/usr/bin/python3
"""test_watch_backpressure.py: WatchInstances streams whose clients never read
must not grow emberd without bound (issue 9).

A real emberd; one reading watcher; STUCK (default 300) watchers on their own
channels whose HTTP/2 stream window is tiny (grpc.http2.lookahead_bytes,
no BDP probing) and whose iterators are never advanced, so after the first
few events emberd cannot hand them anything more; then CYCLES create/delete
of Stopped instances (no VMM: the kernel is a temp regular file). emberd's
VmRSS / VmHWM (/proc/<pid>/status) are printed before, during and after.

Asserts (memory only; times are printed, never asserted):
- VmHWM grew by less than HWM_BOUND_MIB over the baseline;
- every stuck watcher ended with RESOURCE_EXHAUSTED "watch fell behind: N
  events not delivered; list and watch again";
- the reading watcher received every event (2 per cycle), in order;
- once the stuck streams are closed, VmRSS is back within RSS_BACK_MIB of the
  baseline;
- emberd still serves;
- the same bound holds for the other streams: a reflection client that sends
  REFL_REQUESTS requests and never reads the answers ends with
  RESOURCE_EXHAUSTED "the client does not read its responses: ...".

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     /usr/bin/python3 test/integration/test_watch_backpressure.py
Env: EMBER_WATCH_STUCK, EMBER_WATCH_CYCLES override the sizes.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
    from emberd_fixture import Emberd, pb, health_pb2, reflection_v1_pb2
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
STUCK = int(os.environ.get("EMBER_WATCH_STUCK", "300"))
CYCLES = int(os.environ.get("EMBER_WATCH_CYCLES", "700"))
STREAMS_PER_CHANNEL = 50
HWM_BOUND_MIB = 96
RSS_BACK_MIB = 12
DRAIN_BUDGET_S = 60
REFL_REQUESTS = 2000
# A channel that takes (almost) nothing it is not asked for.
STUCK_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024),
                 ("grpc.max_receive_message_length", 1 << 20)]
FELL_BEHIND = re.compile(r"^watch fell behind: (\d+) events not delivered; list and watch again$")


def mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024  # MiB
    return out


def show(label, pid, base=None):
    m = mem(pid)
    extra = ""
    if base is not None:
        extra = "  (RSS %+d MiB over baseline)" % (m["VmRSS"] - base["VmRSS"])
    print("%-34s VmRSS %5d MiB  VmHWM %5d MiB%s" % (label, m["VmRSS"], m["VmHWM"], extra),
          flush=True)
    return m


def reflection_not_read(d, pid, base, failures):
    """A bidi reflection stream whose answers are never read."""
    ch = grpc.insecure_channel(d.listen, options=STUCK_OPTIONS)
    fn = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                          request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=reflection_v1_pb2.ServerReflectionResponse.FromString)
    sent = threading.Event()

    def reqs():
        for _ in range(REFL_REQUESTS):
            yield reflection_v1_pb2.ServerReflectionRequest(list_services="")
        sent.set()
    it = fn(reqs(), timeout=DRAIN_BUDGET_S)
    sent.wait(DRAIN_BUDGET_S)  # every request is out before any answer is read
    n = 0
    try:
        for _ in it:
            n += 1
        code, detail = SC.OK, ""
    except grpc.RpcError as e:
        code, detail = e.code(), e.details()
    ch.close()
    show("reflection reader that never read", pid, base)
    print("reflection: %d requests sent, %d answers read, then %s: %s"
          % (REFL_REQUESTS, n, code, detail))
    if code != SC.RESOURCE_EXHAUSTED or not re.match(
            r"^the client does not read its responses: \d+ messages not delivered$", detail or ""):
        failures.append("reflection client that never reads: %s %r" % (code, detail))


def main():
    failures = []
    with Emberd(log_level="info") as d:
        pid = d.proc.pid
        spec = d.qemu_spec()
        # Warm up the allocator and the code paths once.
        w = d.watch()
        w.initial_metadata()
        for i in range(20):
            d.delete(d.create("warm-%d" % i, spec).id)
        w.cancel()
        time.sleep(0.5)
        base = show("baseline", pid)

        # The reading watcher.
        got = []
        reader_err = []
        rw = d.watch()
        rw.initial_metadata()

        def read():
            try:
                for ev in rw:
                    got.append((ev.operation, ev.instance.name))
            except grpc.RpcError as e:
                if e.code() != SC.CANCELLED:
                    reader_err.append((e.code(), e.details()))
        rt = threading.Thread(target=read, daemon=True)
        rt.start()

        # The stuck watchers.
        chans, stuck = [], []
        for i in range(STUCK):
            if i % STREAMS_PER_CHANNEL == 0:
                chans.append(grpc.insecure_channel(d.listen, options=STUCK_OPTIONS))
            fn = chans[-1].unary_stream("/ember.v1.InstanceService/WatchInstances",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=pb.InstanceEvent.FromString)
            it = fn(pb.WatchInstancesRequest())
            it.initial_metadata()  # subscribed; its messages are never asked for
            stuck.append(it)
        show("%d stuck watchers open" % STUCK, pid, base)

        t0 = time.monotonic()
        for c in range(CYCLES):
            name = "churn-%d" % c
            d.delete(d.create(name, spec).id)
            if (c + 1) % max(1, CYCLES // 5) == 0:
                show("after %d create/delete cycles" % (c + 1), pid, base)
        dt = time.monotonic() - t0
        print("churn: %d cycles in %.1f s (%.1f ms per create+delete)"
              % (CYCLES, dt, 1000 * dt / CYCLES), flush=True)
        during = show("after the churn", pid, base)

        # The reading watcher got every event, in order.
        want = []
        for c in range(CYCLES):
            want += [(pb.OPERATION_CREATE, "churn-%d" % c), (pb.OPERATION_DELETE, "churn-%d" % c)]
        end = time.monotonic() + 60
        while len(got) < len(want) and time.monotonic() < end and not reader_err:
            time.sleep(0.05)
        print("reading watcher: %d of %d events" % (len(got), len(want)))
        if got != want:
            failures.append("the reading watcher got %d events (want %d)%s%s"
                            % (len(got), len(want), "; first difference at %d" % next(
                                (i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                                min(len(got), len(want))), "; ended: %s" % reader_err
                               if reader_err else ""))

        # The stuck watchers: what they were told. Each must already be over
        # (its status follows the few events its window let through): a
        # watchdog cancels whatever is still open after DRAIN_BUDGET_S, which
        # then counts as CANCELLED (a failure).
        show("before reading the stuck watchers", pid, base)
        drained = threading.Event()

        def watchdog():
            if not drained.wait(DRAIN_BUDGET_S):
                print("watchdog: stuck watchers still open after %d s; cancelling them"
                      % DRAIN_BUDGET_S, flush=True)
                for it in stuck:
                    it.cancel()
        threading.Thread(target=watchdog, daemon=True).start()
        codes = {}
        examples = []
        reads = []
        for it in stuck:
            n = 0
            try:
                for _ in it:
                    n += 1
                code, detail = SC.OK, "(stream ended without a status)"
            except grpc.RpcError as e:
                code, detail = e.code(), e.details()
            reads.append(n)
            codes[code] = codes.get(code, 0) + 1
            if len(examples) < 3:
                examples.append((n, code, detail))
            if code != SC.RESOURCE_EXHAUSTED or not FELL_BEHIND.match(detail or ""):
                if len(failures) < 5:
                    failures.append("stuck watcher: %d events then %s %r" % (n, code, detail))
                elif len(failures) == 5:
                    failures.append("(more stuck watchers without the documented status)")
            if code == SC.OK:
                it.cancel()
        drained.set()
        print("stuck watchers ended with: %s; events each had received: min %d, max %d"
              % (", ".join("%s x%d" % (k, v) for k, v in codes.items()), min(reads), max(reads)))
        for n, code, detail in examples:
            print("  e.g. %d events read, then %s: %s" % (n, code, detail))

        for it in stuck:
            it.cancel()
        for ch in chans:
            ch.close()
        rw.cancel()
        time.sleep(1.0)
        after = show("stuck streams closed", pid, base)

        hwm_growth = during["VmHWM"] - base["VmHWM"]
        rss_back = after["VmRSS"] - base["VmRSS"]
        print("VmHWM growth %d MiB (bound %d); VmRSS after close %+d MiB (bound %d)"
              % (hwm_growth, HWM_BOUND_MIB, rss_back, RSS_BACK_MIB))
        if hwm_growth >= HWM_BOUND_MIB:
            failures.append("VmHWM grew by %d MiB with %d stuck watchers (bound %d MiB)"
                            % (hwm_growth, STUCK, HWM_BOUND_MIB))
        if rss_back >= RSS_BACK_MIB:
            failures.append("VmRSS stayed %d MiB above the baseline after the streams closed "
                            "(bound %d MiB)" % (rss_back, RSS_BACK_MIB))
        try:
            ok = d.health_check("").status == health_pb2.HealthCheckResponse.SERVING
            d.delete(d.create("after", spec).id)
        except grpc.RpcError as e:
            ok = False
            failures.append("emberd no longer serves: %s" % e)
        if not ok:
            failures.append("emberd is not SERVING")
        reflection_not_read(d, pid, base, failures)
    for f in failures:
        print("FAIL " + f)
    print("FAILED (%d)" % len(failures) if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
