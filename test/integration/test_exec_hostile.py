#!/usr/bin/env python3
"""test_exec_hostile: hostile guest agents behind the Firecracker contract
fake's hybrid vsock (test/fakes/hostile_guest_agent.py): one that never
answers, one that sends garbage, one that answers HELLO then garbage, a frame
claiming 4 GiB, output past the window, and one that stops reading. Each
time the call gets a clear error (UNAVAILABLE naming why, or its deadline),
emberd stays healthy and keeps serving, and the link recovers.

Usage: test_exec_hostile.py <firecracker_fake.py>
Env: EMBERD_BIN, EMBER_PYTHON_DIR.
"""
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from checks import Checks  # noqa: E402
from emberd_fixture import Emberd, pb  # noqa: E402
from exec_client import copy_to, exec_call  # noqa: E402

HOSTILE = os.path.join(HERE, "..", "fakes", "hostile_guest_agent.py")


def main():
    if len(sys.argv) < 2:
        print("SKIP: usage: test_exec_hostile.py <firecracker_fake.py>")
        return 77
    fake = os.path.abspath(sys.argv[1])
    c = Checks()
    check = c.check
    work = tempfile.mkdtemp(prefix="ember-exec-hostile-")
    mode_file = os.path.join(work, "mode")

    def mode(m):
        with open(mode_file + ".tmp", "w") as f:
            f.write(m)
        os.rename(mode_file + ".tmp", mode_file)

    mode("silent")
    env = {"EMBER_FIRECRACKER_BIN": fake, "EMBER_FAKE_GUEST_AGENT": os.path.abspath(HOSTILE),
           "EMBER_HOSTILE_MODE_FILE": mode_file}
    with Emberd(env=env, log_level="info") as d:
        def healthy(what):
            t = time.monotonic()
            ok = d.health_check().status == 1 and d.get("g1").state == pb.INSTANCE_STATE_RUNNING
            check(ok and time.monotonic() - t < 5, "emberd healthy and serving after %s" % what)

        spec = d.make_spec(hypervisor="firecracker", memory_mib=16, kernel=d.fake_kernel())
        spec.guest_agent = pb.GUEST_AGENT_MODE_ENABLED
        d.create("g1", spec, start=True)

        # silent: never ready; an exec fails at its ready_timeout
        time.sleep(3)
        g = d.get("g1").guest_agent
        check(g.enabled and not g.ready and g.message != "",
              "an agent that never answers is not ready: %r" % g.message)
        t = time.monotonic()
        st = pb.ExecStart(id="g1", command=["true"])
        st.ready_timeout.seconds = 2
        r = exec_call(d, "g1", ["true"], first=pb.ExecInstanceRequest(start=st))
        check(r.code == grpc.StatusCode.UNAVAILABLE and "not ready" in r.details
              and time.monotonic() - t < 10,
              "exec: UNAVAILABLE at the ready timeout (%s, %.1f s)"
              % (r.details, time.monotonic() - t))
        healthy("a silent agent")

        # garbage instead of HELLO_ACK: never ready either
        mode("garbage")
        time.sleep(5)
        g = d.get("g1").guest_agent
        check(not g.ready, "an agent that answers garbage is never ready: %r" % g.message)
        healthy("a garbage agent")

        # HELLO_ACK, then garbage after the exec: UNAVAILABLE naming it
        for m, nxt, what in (("ack-garbage", "ack-huge", "garbage after HELLO"),
                             ("ack-huge", "ack-flood", "a frame claiming 4 GiB"),
                             ("ack-flood", "ack-stall", "output past the window")):
            mode(m)
            end = time.monotonic() + 15
            while time.monotonic() < end and not d.get("g1").guest_agent.ready:
                time.sleep(0.1)
            g = d.get("g1").guest_agent
            check(g.ready and g.version == "hostile", "%s: the agent says HELLO_ACK (ready)" % m)
            mode(nxt)  # the reconnect after the violation meets the next one
            r = exec_call(d, "g1", ["echo", "hi"], call_timeout=20)
            check(r.code == grpc.StatusCode.UNAVAILABLE and "guest agent" in r.details,
                  "%s: the exec ends UNAVAILABLE with a clear message (%s: %s)"
                  % (what, r.code, r.details))
            healthy(what)

        # ack-stall: execs and a copy run into their deadlines, several at once
        end = time.monotonic() + 15
        while time.monotonic() < end and not d.get("g1").guest_agent.ready:
            time.sleep(0.1)
        results = [None] * 5

        def one(i):
            results[i] = exec_call(d, "g1", ["echo", str(i)], call_timeout=3)
        th = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        t = time.monotonic()
        for x in th:
            x.start()
        for x in th:
            x.join(30)
        check(all(x is not None and x.code == grpc.StatusCode.DEADLINE_EXCEEDED for x in results)
              and time.monotonic() - t < 15,
              "5 execs against an agent that stopped reading end at their deadline: %s"
              % [x and x.code for x in results])
        code, det = Emberd.call_error(copy_to, d, "g1", "/tmp/x", os.urandom(4 << 20), timeout=3)
        check(code == grpc.StatusCode.DEADLINE_EXCEEDED,
              "a 4 MiB copy into a stalled agent ends at its deadline (%s %s)" % (code, det))
        healthy("a stalled agent")

        # the instance can still be stopped and deleted; emberd stops cleanly
        d.stop_instance("g1", graceful_timeout_s=0)
        d.delete("g1")
        check(d.health_check().status == 1, "stop and delete after all that")
        rc = d.stop()
        check(rc == 0, "emberd exits 0 at SIGTERM (no call or link left hanging): %s" % rc)
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
