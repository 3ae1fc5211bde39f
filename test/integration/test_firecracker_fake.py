#!/usr/bin/python3
"""test_firecracker_fake.py: checks that the Firecracker contract fake is as
strict as the releases it imitates (so the driver tests against it mean
something). Usage: test_firecracker_fake.py <firecracker_fake.py>."""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

FAKE = None


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Fc:
    n = 0

    def __init__(self, version, tmp):
        self.version = version
        Fc.n += 1
        self.sock = os.path.join(tmp, "fc-%s-%d.sock" % (version, Fc.n))
        env = dict(os.environ, FAKE_FC_VERSION=version)
        self.out = open(self.sock + ".out", "wb")
        self.proc = subprocess.Popen([FAKE, "--api-sock", self.sock], env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        for _ in range(500):
            try:  # the file appears at bind(), before listen(): probe
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                s.close()
                time.sleep(0.01)
        raise RuntimeError("fake did not start")

    def call(self, method, path, body=None):
        c = UnixConn(self.sock)
        data = None if body is None else json.dumps(body)
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, (json.loads(raw) if raw else None)

    def boot(self, kernel, track=True):
        self.ok("PUT", "/boot-source", {"kernel_image_path": kernel})
        self.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 4,
                                          "track_dirty_pages": track})
        self.ok("PUT", "/actions", {"action_type": "InstanceStart"})

    def ok(self, method, path, body=None):
        st, b = self.call(method, path, body)
        if st not in (200, 204):
            raise AssertionError("%s %s -> %d %s" % (method, path, st, b))
        return b

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.out.close()


class FakeContract(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ember-fcfake-")
        self.kernel = os.path.join(self.tmp, "kernel")
        with open(self.kernel, "wb") as f:
            f.write(os.urandom(8192))
        self.fcs = []

    def tearDown(self):
        for fc in self.fcs:
            fc.close()
        subprocess.run(["rm", "-rf", self.tmp], check=False)

    def fc(self, version):
        f = Fc(version, self.tmp)
        self.fcs.append(f)
        return f

    def bad(self, fc, method, path, body, fragment):
        st, b = fc.call(method, path, body)
        self.assertEqual(st, 400, (path, body, b))
        self.assertIn("fault_message", b)
        self.assertIn(fragment, b["fault_message"])

    def test_version_text(self):
        def ver(v):
            return subprocess.run([FAKE, "--version"], env=dict(os.environ, FAKE_FC_VERSION=v),
                                  capture_output=True, text=True, check=True).stdout
        self.assertEqual(ver("1.16.1"), "Firecracker v1.16.1\n\n")
        self.assertEqual(ver("1.1.0"), "Firecracker v1.1.0\n\nSupported snapshot data format "
                         "versions: v0.23.0, v0.24.0, v0.25.0, v1.0.0, v1.1.0\n\n")

    def test_unknown_fields_and_types(self):
        fc = self.fc("1.1.0")
        self.bad(fc, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 4, "x": 1},
                 "unknown field `x`")
        self.bad(fc, "PUT", "/machine-config", {"vcpu_count": 1}, "missing field `mem_size_mib`")
        self.bad(fc, "PUT", "/machine-config", {"vcpu_count": "1", "mem_size_mib": 4},
                 "invalid value")
        self.bad(fc, "PUT", "/machine-config",
                 {"vcpu_count": 1, "mem_size_mib": 4, "huge_pages": "None"}, "unknown field")
        self.bad(fc, "PUT", "/snapshot/load", {"snapshot_path": "/x", "mem_file_path": "/y",
                                               "track_dirty_pages": True}, "unknown field")
        self.bad(fc, "PUT", "/serial", {"serial_out_path": "/tmp/x"}, "Invalid request")
        fc16 = self.fc("1.16.1")
        fc16.ok("PUT", "/serial", {"serial_out_path": os.path.join(self.tmp, "ser")})
        self.bad(fc16, "PUT", "/snapshot/create", {"snapshot_path": "/a", "mem_file_path": "/b",
                                                   "version": "1.0.0"}, "unknown field")

    def test_state_machine(self):
        fc = self.fc("1.13.0")
        self.bad(fc, "PATCH", "/vm", {"state": "Paused"}, "before starting")
        self.bad(fc, "PUT", "/actions", {"action_type": "InstanceStart"}, "kernel")
        fc.boot(self.kernel)
        self.bad(fc, "PUT", "/boot-source", {"kernel_image_path": self.kernel}, "after starting")
        st = os.path.join(self.tmp, "state")
        mem = os.path.join(self.tmp, "memory")
        self.bad(fc, "PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem},
                 "not paused")
        fc.ok("PATCH", "/vm", {"state": "Paused"})
        self.assertEqual(fc.ok("GET", "/")["state"], "Paused")
        fc.ok("PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem})
        self.assertEqual(os.path.getsize(mem), 4 << 20)
        self.bad(fc, "PUT", "/snapshot/load", {"snapshot_path": st,
                 "mem_backend": {"backend_type": "File", "backend_path": mem}}, "after starting")
        # A load needs a fresh process without boot configuration.
        fc2 = self.fc("1.13.0")
        fc2.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 4})
        self.bad(fc2, "PUT", "/snapshot/load", {"snapshot_path": st,
                 "mem_backend": {"backend_type": "File", "backend_path": mem}}, "not allowed")
        fc3 = self.fc("1.13.0")
        self.bad(fc3, "PUT", "/snapshot/load", {"snapshot_path": st, "mem_file_path": mem,
                 "mem_backend": {"backend_type": "File", "backend_path": mem}}, "too many")
        # A corrupted memory file is refused.
        with open(mem, "r+b") as f:
            f.seek(4096)
            f.write(b"\xff" * 8)
        self.bad(fc3, "PUT", "/snapshot/load", {"snapshot_path": st,
                 "mem_backend": {"backend_type": "File", "backend_path": mem}}, "does not hold")

    def test_diff_needs_tracking_before_1_13(self):
        fc = self.fc("1.5.0")
        fc.boot(self.kernel, track=False)
        fc.ok("PATCH", "/vm", {"state": "Paused"})
        self.bad(fc, "PUT", "/snapshot/create", {"snapshot_type": "Diff",
                 "snapshot_path": os.path.join(self.tmp, "s"),
                 "mem_file_path": os.path.join(self.tmp, "m")}, "dirty bitmap")

    def diff_onto_full(self, version):
        fc = self.fc(version)
        fc.boot(self.kernel)
        fc.ok("PATCH", "/vm", {"state": "Paused"})
        st = os.path.join(self.tmp, "state-" + version)
        mem = os.path.join(self.tmp, "memory-" + version)
        fc.ok("PUT", "/snapshot/create", {"snapshot_path": st, "mem_file_path": mem})
        fc.close()
        self.fcs.remove(fc)
        fc = self.fc(version)
        load = {"snapshot_path": st,
                "mem_backend": {"backend_type": "File", "backend_path": mem}}
        vt = tuple(int(x) for x in version.split("."))
        load["track_dirty_pages" if vt >= (1, 13, 0) else "enable_diff_snapshots"] = True
        fc.ok("PUT", "/snapshot/load", load)
        fc.ok("PATCH", "/vm", {"state": "Resumed"})
        time.sleep(0.2)
        fc.ok("PATCH", "/vm", {"state": "Paused"})
        fc.ok("PUT", "/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": st,
                                          "mem_file_path": mem})
        fc.close()
        self.fcs.remove(fc)
        fc = self.fc(version)
        st_, b = fc.call("PUT", "/snapshot/load", load)
        return st_, b

    def test_diff_truncates_before_1_6(self):
        st, b = self.diff_onto_full("1.5.0")
        self.assertEqual(st, 400)  # the full image was truncated: not loadable
        self.assertIn("does not hold", b["fault_message"])

    def test_diff_in_place_from_1_6(self):
        st, b = self.diff_onto_full("1.6.0")
        self.assertEqual(st, 204, b)


if __name__ == "__main__":
    FAKE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=1)
