"""test_ctl: emberctl against a real emberd (no real VM is started here: fork
and the saved snapshots run on the Firecracker contract fake,
test/fakes/firecracker_fake.py).

Runs the built emberctl as a subprocess, the way an operator or a script does,
against an emberd started by emberd_fixture on a temporary data dir, and checks
its --json output (parsed), its human output, and its exit codes (the gRPC
status code of the failed call; 64 for usage errors).

Run: EMBERCTL_BIN=<build>/agent/emberctl EMBERD_BIN=<build>/agent/emberd \
     EMBER_PYTHON_DIR=<build>/python /usr/bin/python3 test/integration/test_ctl.py
"""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emberd_fixture import Emberd  # noqa: E402

OK, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, UNAVAILABLE, USAGE = 0, 3, 5, 6, 14, 64
UNIMPLEMENTED = 12


def find_emberctl():
    cands = [os.environ.get("EMBERCTL_BIN")]
    here = os.path.dirname(os.path.abspath(__file__))
    for b in ("build", "/tmp/build", "/tmp/build-ctl"):
        base = b if os.path.isabs(b) else os.path.join(here, "..", "..", b)
        cands.append(os.path.join(base, "agent", "emberctl"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise RuntimeError("emberctl not found: set EMBERCTL_BIN")


EMBERCTL = find_emberctl()


class CtlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Emberd(log_level="info")
        cls.spec = cls.d.qemu_spec()  # temp kernel/initrd files (never booted)
        cls.files = os.path.dirname(cls.spec.kernel_path)

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def ctl(self, *args, env=None, timeout=30, socket=True):
        """Runs emberctl; returns (exit code, stdout, stderr)."""
        e = dict(os.environ)
        e.pop("EMBER_SOCKET", None)
        e.update(env or {})
        cmd = [EMBERCTL] + (["--socket", self.d.socket_path] if socket else []) + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def ctl_json(self, *args):
        rc, out, err = self.ctl("--json", *args)
        self.assertEqual(rc, OK, "emberctl %s failed: %s" % (" ".join(args), err))
        return json.loads(out)

    def create(self, name, *extra):
        return self.ctl_json("create", name, "--kernel", self.spec.kernel_path,
                             "--memory-mib", "64", *extra)

    # ---- the happy path -----------------------------------------------------

    def test_health(self):
        rc, out, _ = self.ctl("health")
        self.assertEqual((rc, out.strip()), (OK, "SERVING"))
        self.assertEqual(self.ctl_json("health"), {"status": "SERVING"})

    def test_hypervisors(self):
        hv = self.ctl_json("hypervisors")["hypervisors"]
        qemu = [h for h in hv if h["type"] == "qemu"]
        self.assertEqual(len(qemu), 1, hv)
        self.assertIn("snapshot", qemu[0]["capabilities"])
        self.assertIsInstance(qemu[0]["available"], bool)
        rc, out, _ = self.ctl("hypervisors")
        self.assertEqual(rc, OK)
        self.assertTrue(out.startswith("TYPE"), out)
        self.assertIn("\nqemu ", out)

    def test_create_get_list_delete(self):
        inst = self.create("ctl-a", "--vcpus", "2", "--cmdline", "console=ttyS0 quiet",
                           "--disk", self.spec.initrd_path + ":ro")
        # lowerCamelCase names, enums by name, 64-bit integers as strings.
        self.assertEqual(inst["name"], "ctl-a")
        self.assertTrue(inst["id"])
        self.assertEqual(inst["state"], "INSTANCE_STATE_STOPPED")
        self.assertEqual(inst["spec"]["vcpus"], 2)
        self.assertEqual(inst["spec"]["memoryMib"], "64")
        self.assertEqual(inst["spec"]["hypervisor"], "qemu")
        self.assertEqual(inst["spec"]["kernelPath"], self.spec.kernel_path)
        self.assertEqual(inst["spec"]["cmdline"], "console=ttyS0 quiet")
        self.assertEqual(inst["spec"]["disks"],
                         [{"path": self.spec.initrd_path, "readOnly": True}])
        self.assertIs(inst["hasSnapshot"], False)
        self.assertRegex(inst["createTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        # get by name and by id give the same instance; the server agrees.
        self.assertEqual(self.ctl_json("get", "ctl-a")["id"], inst["id"])
        self.assertEqual(self.ctl_json("get", inst["id"])["name"], "ctl-a")
        self.assertEqual(self.d.get("ctl-a").spec.vcpus, 2)

        # list: ordered by name; --state filters.
        self.create("ctl-b")
        names = [i["name"] for i in self.ctl_json("list")["instances"]]
        self.assertLess(names.index("ctl-a"), names.index("ctl-b"))
        self.assertIn("ctl-a", [i["name"] for i in self.ctl_json("list", "--state", "stopped")
                                ["instances"]])
        self.assertEqual(self.ctl_json("list", "--state", "running")["instances"], [])
        rc, out, _ = self.ctl("list")
        self.assertEqual(rc, OK)
        header = out.splitlines()[0].split()
        self.assertEqual(header[:4], ["NAME", "ID", "HYPERVISOR", "STATE"])
        row = [l.split() for l in out.splitlines() if l.startswith("ctl-a ")][0]
        self.assertEqual(row[1:4], [inst["id"], "qemu", "stopped"])

        # human `get`
        rc, out, _ = self.ctl("get", "ctl-a")
        self.assertEqual(rc, OK)
        self.assertIn("State:         stopped", out)
        self.assertIn("Memory:        64 MiB", out)

        # delete, then it is gone (NOT_FOUND, exit 5)
        self.assertEqual(self.ctl_json("delete", "ctl-a"), {"id": inst["id"]})
        b_id = self.d.get("ctl-b").id
        rc, out, _ = self.ctl("delete", "ctl-b")
        self.assertEqual((rc, out), (OK, "deleted %s\n" % b_id))
        rc, _, err = self.ctl("get", "ctl-a")
        self.assertEqual(rc, NOT_FOUND, err)

    def test_create_from_spec_file(self):
        spec = {"name": "ctl-spec",
                "spec": {"hypervisor": "qemu", "vcpus": 1, "memoryMib": "96",
                         "kernelPath": os.path.basename(self.spec.kernel_path),
                         "initrd_path": os.path.basename(self.spec.initrd_path)}}
        path = os.path.join(self.files, "spec.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        # Relative paths in the file are taken against the file's folder; a
        # flag overrides the file.
        inst = self.ctl_json("create", "--spec", path, "--vcpus", "3")
        self.assertEqual(inst["name"], "ctl-spec")
        self.assertEqual(inst["spec"]["vcpus"], 3)
        self.assertEqual(inst["spec"]["memoryMib"], "96")
        self.assertEqual(inst["spec"]["kernelPath"], self.spec.kernel_path)
        self.assertEqual(inst["spec"]["initrdPath"], self.spec.initrd_path)
        self.ctl_json("delete", "ctl-spec")

        # A typo in the file is refused before any call.
        with open(path, "w") as f:
            json.dump({"name": "x", "spec": {"vcpu": 1}}, f)
        rc, _, err = self.ctl("create", "--spec", path)
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        self.assertIn("vcpu", err)

    # ---- networks ---------------------------------------------------------------

    def test_network_flags_usage(self):
        """Bad network flags are refused by emberctl (64) before any call,
        with a message naming the flag."""
        k = ["--kernel", self.spec.kernel_path]
        for extra, says in ((["--network", "default", "-p", "0:80"], "--publish"),
                            (["--network", "default", "-p", "8080:65536"], "--publish"),
                            (["--network", "default", "--publish", "8080:80/sctp"], "sctp"),
                            (["-p", "8080:80"], "--network"),
                            (["--ip", "10.77.0.9"], "--network"),
                            (["--netns"], "--network"),
                            (["--network", "default", "--ip", "10.77.0.9/16"], "--ip"),
                            (["--network", "default", "--mac", "ff:ff:ff:ff:ff:ff"], "--mac"),
                            (["--network", "a", "--network", "b"], "--network")):
            rc, out, err = self.ctl("create", "ctl-net-bad", *(k + extra))
            self.assertEqual(rc, USAGE, (extra, err))
            self.assertIn(says, err, extra)
            self.assertEqual(out, "")
        rc, _, err = self.ctl("get", "x", "--network", "default")
        self.assertEqual(rc, USAGE, err)
        self.assertEqual(self.ctl("get", "ctl-net-bad")[0], NOT_FOUND)

    def _networks(self):
        """emberd's networks (--json), or a skip when it has no ListNetworks."""
        rc, out, err = self.ctl("--json", "networks")
        if rc == UNIMPLEMENTED:
            self.skipTest("this emberd does not implement ListNetworks: %s" % err.strip())
        self.assertEqual(rc, OK, err)
        return json.loads(out).get("networks", [])

    def test_networks(self):
        nets = self._networks()
        rc, out, err = self.ctl("networks")
        self.assertEqual(rc, OK, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(),
                         ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "NAT", "ISOLATED", "USED/TOTAL"])
        self.assertEqual(len(lines) - 1, len(nets), out)
        for n, line in zip(nets, lines[1:]):
            row = line.split()
            self.assertEqual(row[:4], [n["name"], n["subnet"], n["gateway"], n["bridge"]])
            self.assertEqual(row[4:6], ["yes" if n.get("nat") else "no",
                                        "yes" if n.get("isolated") else "no"])
            self.assertEqual(row[6], "%d/%d" % (n.get("addressesUsed", 0),
                                                n.get("addressesTotal", 0)))

    # ---- exit codes -----------------------------------------------------------

    def test_conventions(self):
        """--label, --request-id, list --filter (all pages), stop
        --graceful-timeout, delete --allow-missing."""
        a = self.create("cv-a", "--label", "team=infra", "--label", "tier=web",
                        "--request-id", "cv-req-1")
        self.assertEqual(a["labels"], {"team": "infra", "tier": "web"})
        self.assertEqual(a["requestId"], "cv-req-1")
        again = self.create("cv-a", "--label", "team=infra", "--label", "tier=web",
                            "--request-id", "cv-req-1")
        self.assertEqual(again["id"], a["id"])
        rc, _, err = self.ctl("create", "cv-a", "--kernel", self.spec.kernel_path,
                              "--memory-mib", "64", "--request-id", "cv-req-1")
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        self.assertIn("request_id", err)
        rc, _, err = self.ctl("create", "cv-x", "--label", "novalue")
        self.assertEqual(rc, USAGE, err)
        self.create("cv-b", "--label", "team=apps")
        got = self.ctl_json("list", "--filter", "labels.team=infra")["instances"]
        self.assertEqual([i["name"] for i in got], ["cv-a"])
        got = self.ctl_json("list", "--state", "stopped", "--filter", "labels.team=apps")
        self.assertEqual([i["name"] for i in got["instances"]], ["cv-b"])
        rc, _, err = self.ctl("list", "--filter", "colour=red")
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        # pages are followed: one instance per call still lists them all, in order
        every = [i.name for i in self.d.list()]
        self.assertGreater(len(every), 1)
        paged = self.ctl_json("list", "--page-size", "1")["instances"]
        self.assertEqual([i["name"] for i in paged], every)
        rc, out, _ = self.ctl("list", "--page-size", "1")
        self.assertEqual(len(out.splitlines()) - 1, len(every), out)
        rc, out, err = self.ctl("stop", "cv-a", "--graceful-timeout", "0")
        self.assertEqual(rc, OK, err)
        rc, _, err = self.ctl("stop", "cv-a", "--graceful-timeout", "soon")
        self.assertEqual(rc, USAGE, err)
        rc, _, err = self.ctl("get", "cv-a", "--graceful-timeout", "1s")
        self.assertEqual(rc, USAGE, err)
        rc, out, _ = self.ctl("get", "cv-a")
        self.assertIn("Label:         team=infra", out)
        self.assertIn("Request ID:    cv-req-1", out)
        rc, out, err = self.ctl("delete", "cv-gone", "--allow-missing")
        self.assertEqual(rc, OK, err)
        self.assertIn("nothing deleted", out)
        rc, _, _ = self.ctl("delete", "cv-gone")
        self.assertEqual(rc, NOT_FOUND)
        self.assertEqual(self.ctl_json("delete", "cv-gone", "--allow-missing"), {"id": ""})
        for n in ("cv-a", "cv-b"):
            self.assertEqual(self.ctl("delete", n, "--allow-missing")[0], OK)

    def test_exit_codes(self):
        rc, out, err = self.ctl("get", "no-such-instance")
        self.assertEqual(rc, NOT_FOUND)
        self.assertEqual(out, "")
        self.assertIn("NOT_FOUND", err)
        for cmd in ("start", "stop", "pause", "resume", "standby", "restore", "delete"):
            self.assertEqual(self.ctl(cmd, "no-such-instance")[0], NOT_FOUND, cmd)
        # Forks and saved snapshots of what does not exist.
        for args in (["fork", "no-such-instance", "ctl-clone"],
                     ["fork", "--snapshot", "no-such-snapshot", "ctl-clone"],
                     ["fork", "no-such-instance", "--prefix", "ctl-clone", "--count", "2"],
                     ["snapshot", "no-such-instance", "ctl-snap"],
                     ["rmsnapshot", "no-such-snapshot"]):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, NOT_FOUND, (args, err))
            self.assertEqual(out, "")
            self.assertIn("NOT_FOUND", err)
        self.assertEqual(self.ctl("get", "ctl-clone")[0], NOT_FOUND)
        # More clones than emberd makes at once: INVALID_ARGUMENT (3).
        rc, _, err = self.ctl("fork", "no-such-instance", "--prefix", "ctl-clone", "--count", "65")
        self.assertEqual(rc, INVALID_ARGUMENT, err)

        # Server-side validation: INVALID_ARGUMENT (3), and nothing is created.
        rc, _, err = self.ctl("create", "ctl-bad", "--kernel", self.spec.kernel_path,
                              "--vcpus", "999")
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        rc, _, err = self.ctl("create", "ctl-bad", "--kernel", "/nonexistent/vmlinux")
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        rc, _, err = self.ctl("create", "bad name!", "--kernel", self.spec.kernel_path)
        self.assertEqual(rc, INVALID_ARGUMENT, err)
        self.assertEqual(self.ctl("get", "ctl-bad")[0], NOT_FOUND)

        # Name taken: ALREADY_EXISTS (6).
        self.create("ctl-dup")
        rc, _, err = self.ctl("create", "ctl-dup", "--kernel", self.spec.kernel_path)
        self.assertEqual(rc, ALREADY_EXISTS, err)
        self.ctl_json("delete", "ctl-dup")

        # Wrong state: FAILED_PRECONDITION (9) for pausing a stopped instance.
        self.create("ctl-state")
        rc, _, err = self.ctl("pause", "ctl-state")
        self.assertEqual(rc, 9, err)
        self.assertIn("FAILED_PRECONDITION", err)
        # Idempotent: stopping a stopped instance is OK.
        self.assertEqual(self.ctl_json("stop", "ctl-state")["state"], "INSTANCE_STATE_STOPPED")
        self.ctl_json("delete", "ctl-state")

        # Usage errors: 64, with no call made.
        for args in (["get"], ["frobnicate"], ["get", "a", "b"], ["list", "--vcpus", "2"],
                     ["get", "x", "--timeout", "soon"], ["watch", "--count", "0"],
                     ["fork", "src"], ["fork", "src", "--prefix", "p"],
                     ["fork", "src", "c1", "--prefix", "p", "--count", "2"],
                     ["fork", "--snapshot", "s"], ["snapshot", "src"], ["snapshots", "x"],
                     ["rmsnapshot"], ["get", "x", "--standby"]):
            rc, _, err = self.ctl(*args)
            self.assertEqual(rc, USAGE, (args, err))
            self.assertTrue(err.startswith("emberctl"), err)

        # No server there: UNAVAILABLE (14).
        rc, _, err = self.ctl("--socket", os.path.join(self.files, "nobody.sock"), "list",
                              socket=False)
        self.assertEqual(rc, UNAVAILABLE, err)

    def test_help(self):
        rc, out, _ = self.ctl("--help", socket=False)
        self.assertEqual(rc, OK)
        for cmd in ("list", "get", "create", "start", "stop", "pause", "resume", "standby",
                    "restore", "delete", "watch", "hypervisors", "networks", "health", "fork",
                    "snapshot", "snapshots", "rmsnapshot"):
            self.assertIn("\n  %s " % cmd, out)
        rc, out, _ = self.ctl("help", "fork", socket=False)
        self.assertEqual(rc, OK)
        for flag in ("--snapshot SNAP", "--prefix P", "--count N", "--standby", "--label"):
            self.assertIn(flag, out)
        rc, out, _ = self.ctl("help", "create", socket=False)
        self.assertEqual(rc, OK)
        for flag in ("--memory-mib", "--network NAME", "--ip ADDR", "--mac MAC",
                     "-p, --publish [HOSTADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]", "--netns"):
            self.assertIn(flag, out)
        rc, out2, _ = self.ctl("create", "--help", socket=False)
        self.assertEqual((rc, out2), (OK, out))
        rc, _, _ = self.ctl(socket=False)
        self.assertEqual(rc, USAGE)

    def test_default_socket_from_env(self):
        rc, out, _ = self.ctl("health", socket=False, env={"EMBER_SOCKET": self.d.socket_path})
        self.assertEqual((rc, out.strip()), (OK, "SERVING"))
        rc, out, _ = self.ctl("--address", "unix:" + self.d.socket_path, "health", socket=False)
        self.assertEqual(rc, OK)

    # ---- watch -----------------------------------------------------------------

    def _watch(self, *args):
        """Starts emberctl watch; returns the Popen once it is subscribed (it
        prints "watching ..." then: on stdout, or on stderr with --json)."""
        p = subprocess.Popen([EMBERCTL, "--socket", self.d.socket_path, "watch"] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self._reap, p)
        ready = (p.stderr if "--json" in args else p.stdout).readline()
        self.assertTrue(ready.startswith("watching "), ready)
        return p

    @staticmethod
    def _reap(p):
        if p.poll() is None:
            p.kill()
        p.communicate()

    def _finish(self, p, timeout=20):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("watch did not end: %r %r" % (out, err))
        return p.returncode, out, err

    def test_watch(self):
        # --json --count: JSON lines, exits by itself after N events.
        w = self._watch("--json", "--count", "1")
        # Human watch of everything, ended by Ctrl-C (SIGINT): exit 0.
        h = self._watch()
        inst = self.create("ctl-w")
        rc, out, err = self._finish(w)
        self.assertEqual(rc, OK, err)
        events = [json.loads(l) for l in out.splitlines()]
        self.assertEqual(len(events), 1, out)
        self.assertEqual(events[0]["operation"], "OPERATION_CREATE")
        self.assertEqual(events[0]["newState"], "INSTANCE_STATE_STOPPED")
        self.assertEqual(events[0]["instance"]["id"], inst["id"])
        self.assertRegex(events[0]["eventTime"], r"^\d{4}-\d\d-\d\dT.*Z$")

        # Watching one instance (by name) sees its delete.
        f = self._watch("--json", "--count", "1", "ctl-w")
        self.ctl_json("delete", "ctl-w")
        rc, out, err = self._finish(f)
        self.assertEqual(rc, OK, err)
        ev = json.loads(out)
        self.assertEqual((ev["operation"], ev["oldState"]),
                         ("OPERATION_DELETE", "INSTANCE_STATE_STOPPED"))

        line = h.stdout.readline()
        self.assertIn("ctl-w", line)
        self.assertIn("create", line)
        h.send_signal(signal.SIGINT)
        rc, _, err = self._finish(h, timeout=10)
        self.assertEqual(rc, OK, err)

        # A deadline ends a watch with DEADLINE_EXCEEDED (4); watching an
        # instance that does not exist is NOT_FOUND (5).
        rc, _, err = self.ctl("watch", "--timeout", "300ms")
        self.assertEqual(rc, 4, err)
        rc, _, err = self.ctl("watch", "no-such-instance")
        self.assertEqual(rc, NOT_FOUND, err)


FC_FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes",
                       "firecracker_fake.py")


class CtlForkTest(unittest.TestCase):
    """fork, snapshot, snapshots and rmsnapshot end to end, with the
    Firecracker contract fake (test/fakes/firecracker_fake.py) as the VMM: it
    saves and restores snapshots without a real guest."""

    @classmethod
    def setUpClass(cls):
        cls.d = Emberd(log_level="info",
                       env={"EMBER_FIRECRACKER_BIN": os.path.abspath(FC_FAKE)})
        hv = {h.type: h for h in cls.d.list_hypervisors()}
        fc = hv.get("firecracker")
        if fc is None or not fc.available or not fc.capabilities.fork:
            cls.d.close()
            raise unittest.SkipTest("firecracker (fake) cannot fork here: %s" % fc)
        cls.kernel = cls.d.fake_kernel()

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    ctl = CtlTest.ctl
    ctl_json = CtlTest.ctl_json

    def delete(self, *names):
        for n in names:
            rc, _, err = self.ctl("delete", n, "--allow-missing")
            self.assertEqual(rc, OK, (n, err))

    def test_fork_round_trip(self):
        src = self.ctl_json("create", "fk-src", "--hypervisor", "firecracker", "--kernel",
                            self.kernel, "--memory-mib", "16", "--start")
        self.addCleanup(self.delete, "fk-src")
        self.assertEqual(src["state"], "INSTANCE_STATE_RUNNING")

        # Two clones by name, human output: the clones as list prints them,
        # then the snapshot they came from. The source keeps running.
        self.addCleanup(self.delete, "fk-a", "fk-b")
        rc, out, err = self.ctl("fork", "fk-src", "fk-a", "fk-b", "--label", "team=x")
        self.assertEqual(rc, OK, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[:4], ["NAME", "ID", "HYPERVISOR", "STATE"])
        rows = [l.split() for l in lines[1:3]]
        self.assertEqual([(r[0], r[2], r[3]) for r in rows],
                         [("fk-a", "firecracker", "running"), ("fk-b", "firecracker", "running")])
        self.assertRegex(lines[3], r"^snapshot \S+ \(taken in .+\)$")
        fork_snap = lines[3].split()[1]
        a = self.ctl_json("get", "fk-a")
        self.assertEqual(a["labels"], {"team": "x"})
        self.assertEqual(a["fork"], {"snapshotId": fork_snap,
                                     "sourceInstanceId": src["id"]})
        self.assertEqual(self.ctl_json("get", "fk-src")["state"], "INSTANCE_STATE_RUNNING")

        # --prefix --count --standby, --json: the whole response.
        self.addCleanup(self.delete, "fk-p-1", "fk-p-2")
        resp = self.ctl_json("fork", "fk-src", "--prefix", "fk-p", "--count", "2", "--standby")
        self.assertEqual([i["name"] for i in resp["instances"]], ["fk-p-1", "fk-p-2"])
        self.assertEqual({i["state"] for i in resp["instances"]}, {"INSTANCE_STATE_STANDBY"})
        self.assertTrue(resp["snapshotId"])
        self.assertIn("snapshotDuration", resp)

        # A saved snapshot, then clones of it.
        snap = self.ctl_json("snapshot", "fk-src", "fk-golden")
        self.addCleanup(self.ctl, "rmsnapshot", "fk-golden")
        self.assertEqual((snap["name"], snap["sourceInstanceId"], snap["sourceInstanceName"]),
                         ("fk-golden", src["id"], "fk-src"))
        self.assertEqual(snap["cloneIds"], [])
        rc, out, err = self.ctl("snapshot", "fk-src", "fk-golden")
        self.assertEqual(rc, ALREADY_EXISTS, err)
        self.addCleanup(self.delete, "fk-g1")
        g = self.ctl_json("fork", "--snapshot", "fk-golden", "fk-g1")
        self.assertEqual(len(g["instances"]), 1)
        g1 = g["instances"][0]
        self.assertEqual(g1["state"], "INSTANCE_STATE_RUNNING")
        self.assertEqual(g1["fork"]["snapshotId"], snap["id"])
        self.assertEqual(g["snapshotId"], snap["id"])
        self.assertNotIn("snapshotDuration", g)

        # snapshots: --json and the table.
        snaps = {s["id"]: s for s in self.ctl_json("snapshots")["snapshots"]}
        self.assertEqual(snaps[snap["id"]]["cloneIds"], [g1["id"]])
        self.assertEqual(snaps[fork_snap]["name"], "")
        rc, out, err = self.ctl("snapshots")
        self.assertEqual(rc, OK, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(),
                         ["ID", "NAME", "SOURCE", "SIZE", "CLONES", "CREATED"])
        self.assertEqual(len(lines) - 1, len(snaps), out)
        row = [l.split() for l in lines[1:] if l.startswith(snap["id"] + " ")][0]
        self.assertEqual(row[1:3], ["fk-golden", "fk-src"])
        # ID NAME SOURCE SIZE (number and unit) CLONES CREATED (date and time)
        self.assertEqual(row[5], "1", row)
        row = [l.split() for l in lines[1:] if l.startswith(fork_snap + " ")][0]
        self.assertEqual(row[1:3], ["-", "fk-src"])

        # rmsnapshot: refused while a clone uses it (9), then deleted.
        rc, out, err = self.ctl("rmsnapshot", "fk-golden")
        self.assertEqual(rc, 9, err)
        self.assertIn("FAILED_PRECONDITION", err)
        self.delete("fk-g1")
        rc, out, err = self.ctl("rmsnapshot", "fk-golden")
        self.assertEqual((rc, out), (OK, "deleted snapshot %s\n" % snap["id"]), err)
        self.assertNotIn(snap["id"],
                         [s["id"] for s in self.ctl_json("snapshots")["snapshots"]])
        rc, _, err = self.ctl("rmsnapshot", "fk-golden")
        self.assertEqual(rc, NOT_FOUND, err)

        # A clone name taken: ALREADY_EXISTS (6), nothing made.
        rc, out, err = self.ctl("fork", "fk-src", "fk-a")
        self.assertEqual(rc, ALREADY_EXISTS, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
