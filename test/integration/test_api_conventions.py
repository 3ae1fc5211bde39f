#!/usr/bin/python3
"""test_api_conventions.py: the API conventions of ember.v1 (docs/api.md)
through the BUILT emberd and the real python gRPC client: pagination with
concurrent creates and deletes, page tokens bound to their filter, the filter
(state, name, hypervisor, labels), labels (validated, persisted), request_id
(a retried create returns the same instance, also after an emberd restart; a
different request with it is INVALID_ARGUMENT), DeleteInstance allow_missing,
Timestamp/Duration fields, and google.rpc error details in the
grpc-status-details-bin trailer (BadRequest, PreconditionFailure). Instances
are created but never started (no VMM needed). Prints "N passed, M failed".

Run: EMBERD_BIN=<build>/agent/emberd EMBER_PYTHON_DIR=<build>/python \
     /usr/bin/python3 test/integration/test_api_conventions.py [name-substring ...]
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
    import emberd_fixture as fx
    from emberd_fixture import Emberd, Suite, pb
    # Generated at build time from the vendored proto/google/rpc (see
    # proto/CMakeLists.txt); the fixture put <build>/python on sys.path.
    from google.rpc import error_details_pb2, status_pb2
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

SC = grpc.StatusCode
SUITE = Suite()
test = SUITE.test


def rpc_error(fn, *a, **kw):
    """Runs fn expecting a failure; returns the grpc.RpcError."""
    try:
        r = fn(*a, **kw)
    except grpc.RpcError as e:
        return e
    raise AssertionError("expected an error, got %r" % (r,))


def status_details(e):
    """The google.rpc.Status of the grpc-status-details-bin trailer, or None."""
    for k, v in e.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = status_pb2.Status()
            st.ParseFromString(v)
            return st
    return None


def detail_of(st, cls):
    for any_ in st.details:
        if any_.Is(cls.DESCRIPTOR):
            m = cls()
            any_.Unpack(m)
            return m
    return None


def names(insts):
    return [i.name for i in insts]


# ---------------------------------------------------------------- pagination

@test
def pages_cover_everything_once_in_name_order():
    with Emberd() as d:
        spec = d.qemu_spec()
        want = ["p%02d" % i for i in range(23)]
        for n in want:
            d.create(n, spec)
        got, token, pages = [], "", 0
        while True:
            r = d.list_page(page_size=5, page_token=token)
            assert len(r.instances) <= 5, len(r.instances)
            got += names(r.instances)
            pages += 1
            token = r.next_page_token
            if not token:
                break
        assert got == want, got
        assert pages == 5, pages
        # page_size 0 is the default (100): one page, no token.
        r = d.list_page()
        assert names(r.instances) == want and r.next_page_token == ""
        # a page that ends exactly at the last instance still says "last page"
        # only on the next call (no token once nothing is left).
        r = d.list_page(page_size=23)
        assert len(r.instances) == 23 and r.next_page_token == "", r.next_page_token


@test
def pages_stable_under_concurrent_creates_and_deletes():
    """An instance that exists throughout the walk is listed exactly once,
    whatever creates and deletes happen between pages."""
    with Emberd() as d:
        spec = d.qemu_spec()
        stable = ["s%03d" % i for i in range(0, 60, 2)]
        churn = ["s%03d" % i for i in range(1, 60, 2)]
        for n in stable + churn[:10]:
            d.create(n, spec)
        stop = threading.Event()
        errors = []

        def churner():
            k = 0
            while not stop.is_set():
                n = churn[k % len(churn)]
                try:
                    d.create(n, spec)
                except grpc.RpcError as e:
                    if e.code() != SC.ALREADY_EXISTS:
                        errors.append(e)
                d.delete(churn[(k + 7) % len(churn)], allow_missing=True)
                k += 1
        t = threading.Thread(target=churner)
        t.start()
        try:
            for _ in range(5):
                seen, token, pages = [], "", 0
                while True:
                    r = d.list_page(page_size=4, page_token=token)
                    assert len(r.instances) <= 4
                    seen += names(r.instances)
                    pages += 1
                    token = r.next_page_token
                    if not token:
                        break
                assert pages >= 30 // 4, "only %d pages" % pages
                assert seen == sorted(seen), "pages out of name order"
                assert len(seen) == len(set(seen)), "an instance listed twice"
                missing = [n for n in stable if n not in seen]
                assert not missing, "stable instances skipped: %s" % missing
        finally:
            stop.set()
            t.join()
        assert not errors, errors


@test
def page_token_bound_to_its_filter():
    with Emberd() as d:
        spec = d.qemu_spec()
        for i in range(6):
            d.create("t%d" % i, spec, labels={"team": "a" if i % 2 else "b"})
        r = d.list_page(filter="labels.team=a", page_size=1)
        assert names(r.instances) == ["t1"] and r.next_page_token
        # the same token with another filter (or none) is INVALID_ARGUMENT
        for other in ("", "labels.team=b", "labels.team=a AND state=STOPPED"):
            e = rpc_error(d.list_page, filter=other, page_size=1, page_token=r.next_page_token)
            assert e.code() == SC.INVALID_ARGUMENT, (other, e.code())
            assert "filter" in e.details(), e.details()
            bad = detail_of(status_details(e), error_details_pb2.BadRequest)
            assert bad.field_violations[0].field == "page_token", bad
        # a tampered token too
        tok = r.next_page_token
        e = rpc_error(d.list_page, filter="labels.team=a", page_token=tok[:-2] + "zz")
        assert e.code() == SC.INVALID_ARGUMENT
        # and with its own filter it goes on
        r2 = d.list_page(filter="labels.team=a", page_size=10, page_token=tok)
        assert names(r2.instances) == ["t3", "t5"], names(r2.instances)


# ---------------------------------------------------------------- filter and labels

@test
def filter_by_state_name_hypervisor_and_labels():
    with Emberd() as d:
        spec = d.qemu_spec()
        d.create("web-1", spec, labels={"team": "infra", "tier": "web"})
        d.create("web-2", spec, labels={"team": "apps", "tier": "web"})
        d.create("db-1", spec, labels={"team": "infra", "example.com/role": "db"})
        assert names(d.list(filter="labels.team=infra")) == ["db-1", "web-1"]
        assert names(d.list(filter="labels.tier=web AND labels.team=apps")) == ["web-2"]
        assert names(d.list(filter='labels.example.com/role="db"')) == ["db-1"]
        assert names(d.list(filter="labels.nope=x")) == []
        assert names(d.list(filter="state=STOPPED AND labels.team=infra")) == ["db-1", "web-1"]
        assert names(d.list(filter="state=INSTANCE_STATE_RUNNING")) == []
        assert names(d.list(filter="state=stopped")) == ["db-1", "web-1", "web-2"]
        assert names(d.list(filter="name=web-2")) == ["web-2"]
        assert names(d.list(filter="hypervisor=qemu")) == ["db-1", "web-1", "web-2"]
        assert names(d.list(filter="hypervisor=firecracker")) == []
        inst = d.get("db-1")
        assert names(d.list(filter="id=%s" % inst.id)) == ["db-1"]
        assert dict(inst.labels) == {"team": "infra", "example.com/role": "db"}, inst.labels


@test
def labels_persist_across_restart():
    with Emberd() as d:
        d.create("lp", d.qemu_spec(), labels={"a": "1", "b": ""})
        d.restart()
        assert dict(d.get("lp").labels) == {"a": "1", "b": ""}
        assert names(d.list(filter="labels.b=")) == ["lp"]


# ---------------------------------------------------------------- request_id

@test
def request_id_retry_returns_the_same_instance():
    with Emberd() as d:
        spec = d.qemu_spec()
        a = d.create("rq", spec, labels={"x": "y"}, request_id="7f1c0a52-req-1")
        assert a.request_id == "7f1c0a52-req-1"
        b = d.create("rq", spec, labels={"x": "y"}, request_id="7f1c0a52-req-1")
        assert b.id == a.id and b.create_time == a.create_time
        # without the request_id the same create is a name clash
        e = rpc_error(d.create, "rq", spec, labels={"x": "y"})
        assert e.code() == SC.ALREADY_EXISTS, e.code()
        # same request_id, different request: a client error, naming the field
        for kw in ({"labels": {"x": "z"}}, {"labels": {}}, {"name": "rq2"},
                   {"spec": d.qemu_spec(vcpus=2)}):
            args = {"name": "rq", "spec": spec, "labels": {"x": "y"}}
            args.update(kw)
            e = rpc_error(d.create, args["name"], args["spec"], labels=args["labels"],
                          request_id="7f1c0a52-req-1")
            assert e.code() == SC.INVALID_ARGUMENT, (kw, e.code())
            bad = detail_of(status_details(e), error_details_pb2.BadRequest)
            assert bad.field_violations[0].field == "request_id", bad
        assert names(d.list()) == ["rq"]
        # after a restart, the retry still returns the same instance
        d.restart()
        c = d.create("rq", spec, labels={"x": "y"}, request_id="7f1c0a52-req-1")
        assert c.id == a.id, (c.id, a.id)
        assert names(d.list()) == ["rq"]
        # once deleted, the request_id is free again (a new instance)
        d.delete(a.id)
        n = d.create("rq", spec, labels={"x": "y"}, request_id="7f1c0a52-req-1")
        assert n.id != a.id


@test
def concurrent_first_tries_of_one_request_id_make_one_instance():
    with Emberd() as d:
        spec = d.qemu_spec()
        out, errs = [], []

        def go():
            try:
                out.append(d.create("cc", spec, request_id="same-key").id)
            except grpc.RpcError as e:
                errs.append(e.code())
        ts = [threading.Thread(target=go) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs, errs
        assert len(set(out)) == 1 and len(out) == 8, out
        assert len(d.list()) == 1


# ---------------------------------------------------------------- delete, times

@test
def delete_allow_missing():
    with Emberd() as d:
        e = rpc_error(d.delete, "ghost")
        assert e.code() == SC.NOT_FOUND
        assert d.delete("ghost", allow_missing=True) == ""
        a = d.create("real", d.qemu_spec())
        assert d.delete("real", allow_missing=True) == a.id
        assert d.delete("real", allow_missing=True) == ""


@test
def timestamps_and_durations():
    with Emberd() as d:
        t0 = time.time()
        a = d.create("tm", d.qemu_spec())
        t1 = time.time()
        assert a.HasField("create_time") and a.HasField("update_time")
        c = a.create_time.ToMicroseconds() / 1e6
        assert t0 - 5 <= c <= t1 + 5, (t0, c, t1)
        assert a.update_time == a.create_time
        # no standby or restore yet: the durations are unset, not zero
        assert not a.HasField("last_standby_duration")
        assert not a.HasField("last_restore_duration")
        # events carry a Timestamp and a Duration
        stream = d.watch("tm", timeout=10)
        it = iter(stream)
        d.stop_instance("tm")   # already Stopped: no event; delete makes one
        d.delete("tm")
        ev = None
        for ev in it:
            if ev.operation == pb.OPERATION_DELETE:
                break
        stream.cancel()
        assert ev is not None and ev.HasField("event_time") and ev.HasField("duration")
        assert ev.event_time.ToMicroseconds() >= a.create_time.ToMicroseconds()
        assert ev.duration.ToMicroseconds() >= 0


# ---------------------------------------------------------------- error details

@test
def error_details_bad_request():
    with Emberd() as d:
        S = d.qemu_spec
        cases = [
            (lambda: d.create("x", S(vcpus=0)), "spec.vcpus"),
            (lambda: d.create("x", S(memory_mib=1)), "spec.memory_mib"),
            (lambda: d.create("x", S(kernel="/nonexistent/k")), "spec.kernel_path"),
            (lambda: d.create("-x", S()), "name"),
            (lambda: d.create("x", S(), labels={"bad key": "v"}), "labels"),
            (lambda: d.get(""), "id"),
            (lambda: d.list_page(filter="colour=red"), "filter"),
            (lambda: d.list_page(page_size=-3), "page_size"),
            (lambda: d.stop_instance("x", graceful_timeout_s=-1), "graceful_timeout"),
        ]
        for fn, field in cases:
            e = rpc_error(fn)
            assert e.code() == SC.INVALID_ARGUMENT, (field, e.code())
            st = status_details(e)
            assert st is not None, "%s: no grpc-status-details-bin" % field
            assert st.code == SC.INVALID_ARGUMENT.value[0] and st.message == e.details()
            bad = detail_of(st, error_details_pb2.BadRequest)
            assert bad is not None, st
            assert bad.field_violations[0].field == field, (field, bad)
            assert bad.field_violations[0].description, bad


@test
def error_details_precondition_failure():
    with Emberd() as d:
        a = d.create("pf", d.qemu_spec())
        e = rpc_error(d.pause, "pf")
        assert e.code() == SC.FAILED_PRECONDITION
        pf = detail_of(status_details(e), error_details_pb2.PreconditionFailure)
        assert pf is not None
        v = pf.violations[0]
        assert v.type == "STATE" and v.subject == "instances/" + a.id, v
        assert "Stopped" in v.description, v.description
        # NOT_FOUND and other codes carry no details
        e = rpc_error(d.get, "nope")
        assert e.code() == SC.NOT_FOUND and status_details(e) is None


def main():
    passed, failed = SUITE.run(sys.argv[1:])
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
