#!/usr/bin/python3
"""test_upgrade: an emberd upgrade keeps every guest; a downgrade is refused.

The DaemonSet rolls emberd over while guests run. This test builds the previous
release of emberd from the git history (PREVIOUS_RELEASE below), runs real QEMU
guests under it (the Linux test guest, TCG): one Running with a marker file and a
background process, one Paused, one in Standby with a marker, one Stopped. It then
stops that emberd (the VMMs keep running), starts this build's emberd on the same
data dir and checks every guest: same VMM pid for the running and paused ones, the
marker and the process intact, the standby one restores with its marker, the
stopped one stays Stopped, and a standby/restore cycle under the new emberd works
on the guest the old one booted. The data dir then records format 2
(agent/datadir.h). Last, a data dir written by a newer emberd (format 3) makes
this emberd refuse to start with a message naming both, and nothing on disk
changes.

The previous release's phase runs in a child python with that release's own
generated protos and test fixture (its API is what it was), so the new client
never speaks to the old server.

Needs: git history holding PREVIOUS_RELEASE (skips on a shallow clone), the
Linux test guest and QEMU (skips otherwise), EMBERD_BIN, EMBER_PYTHON_DIR,
EMBER_SOURCE_DIR, EMBER_PREV_BUILD_DIR (where the previous release is built and
cached).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The last release that landed before data-dir formats existed (format 1): the
# guests it started must survive the switch to this build.
PREVIOUS_RELEASE = "6d1b70e0ba90b4093243e13be4f503851884c296"

sys.path.insert(0, HERE)
from checks import Checks  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


# ---- the previous release -------------------------------------------------------

def build_previous(src, out):
    """Builds emberd and the python protos of PREVIOUS_RELEASE into out (cached
    by commit). Returns (emberd, python_dir, source tree of that release)."""
    tree = os.path.join(out, "src")
    build = os.path.join(out, "build")
    stamp = os.path.join(out, "built-" + PREVIOUS_RELEASE)
    emberd = os.path.join(build, "agent", "emberd")
    if os.path.exists(stamp) and os.path.exists(emberd):
        return emberd, os.path.join(build, "python"), tree
    if subprocess.run(["git", "-C", src, "cat-file", "-e", PREVIOUS_RELEASE + "^{commit}"],
                      capture_output=True).returncode != 0:
        skip("the git history has no commit %s (the previous release): a shallow clone? "
             "(git fetch --unshallow)" % PREVIOUS_RELEASE)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(tree)
    arch = subprocess.run(["git", "-C", src, "archive", PREVIOUS_RELEASE],
                          capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=arch, check=True)
    t0 = time.monotonic()
    subprocess.run(["cmake", "-S", tree, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                   check=True, stdout=subprocess.DEVNULL)
    # emberd and the python messages its fixture uses; nothing else of that tree.
    subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target",
                    "emberd", "ember_proto_python"], check=True, stdout=subprocess.DEVNULL)
    py = os.path.join(build, "python")
    print("built the previous release %s in %.1f s" % (PREVIOUS_RELEASE[:12],
                                                      time.monotonic() - t0), flush=True)
    open(stamp, "w").close()
    return emberd, py, tree


OLD_PHASE = r'''
import json, os, sys, time
sys.path.insert(0, os.path.join(TREE, "test", "integration"))
sys.path.insert(0, os.path.join(TREE, "test", "guests"))
from emberd_fixture import Emberd, pb
from guest_shell import GuestShell, linux_cmdline, wait_for_console

def shell(d, i):
    return GuestShell(os.path.join(d.data_dir, "instances", i, "serial1.sock"), connect_timeout=60)

d = Emberd(binary=EMBERD, root=ROOT, timeout=30)
out = {}
for name in ("run", "paused", "standby", "stopped"):
    spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=128, kernel=KERNEL,
                       initrd=INITRD, cmdline=linux_cmdline())
    inst = d.create(name, spec, start=(name != "stopped"), timeout=180)
    out[name] = {"id": inst.id}
    if name != "stopped":
        wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=180)
        with shell(d, inst.id) as sh:
            sh.run("echo before-upgrade-%s > /tmp/marker" % name, timeout=60, retry=True)
            if name == "run":
                sh.run("(while true; do sleep 1; done) & echo $! > /tmp/bg.pid", timeout=60)
                out[name]["bg"] = sh.run("cat /tmp/bg.pid", timeout=60).strip()
d.pause(out["paused"]["id"])
d.standby(out["standby"]["id"])
for name, v in out.items():
    g = d.get(v["id"])
    v["state"] = g.state
    v["pid"] = g.vmm_pid
d.stop()   # SIGTERM: emberd goes, the VMMs stay
import emberd_fixture
emberd_fixture._LIVE.discard(d)   # its exit clean-up would kill the VMMs
print(json.dumps(out))
'''


def run_old_phase(emberd, py, tree, root, kernel, initrd):
    env = dict(os.environ, EMBERD_BIN=emberd, EMBER_PYTHON_DIR=py)
    env.pop("EMBER_FAULT", None)
    code = ("TREE=%r\nEMBERD=%r\nROOT=%r\nKERNEL=%r\nINITRD=%r\n" %
            (tree, emberd, root, kernel, initrd)) + OLD_PHASE
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:])
        raise RuntimeError("the previous release's phase failed (exit %d)" % r.returncode)
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- this build ---------------------------------------------------------------------

def main():
    src = os.environ.get("EMBER_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
    prev_dir = os.environ.get("EMBER_PREV_BUILD_DIR")
    if not prev_dir:
        skip("EMBER_PREV_BUILD_DIR is not set (ctest sets it)")
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "guests"))
    from emberd_fixture import Emberd, pb, linux_guest_files, tree_digest, vmm_pids
    from guest_shell import GuestShell

    kernel, initrd = linux_guest_files()
    old_emberd, old_py, old_tree = build_previous(src, prev_dir)

    root = os.path.realpath(os.path.join(prev_dir, "..", "ember-upgrade-run"))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    d = None
    try:
        before = run_old_phase(old_emberd, old_py, old_tree, root, kernel, initrd)
        S = pb.InstanceState
        check(before["run"]["state"] == S.Value("INSTANCE_STATE_RUNNING") and
              before["paused"]["state"] == S.Value("INSTANCE_STATE_PAUSED") and
              before["standby"]["state"] == S.Value("INSTANCE_STATE_STANDBY") and
              before["stopped"]["state"] == S.Value("INSTANCE_STATE_STOPPED"),
              "the previous release ran a Running, a Paused, a Standby and a Stopped guest")
        data = os.path.join(root, "data")
        check(not os.path.exists(os.path.join(data, "format.json")),
              "the previous release wrote no format file (format 1)")
        for name in ("run", "paused"):
            check(os.path.exists("/proc/%d" % before[name]["pid"]),
                  "%s: its VMM (pid %d) outlived the old emberd" % (name, before[name]["pid"]))

        # The switch: this build's emberd on the same data dir.
        d = Emberd(root=root, timeout=60)

        def inst_dir(name):
            return os.path.join(data, "instances", before[name]["id"])

        def shell(name):
            return GuestShell(os.path.join(inst_dir(name), "serial1.sock"), connect_timeout=60)

        g = d.get(before["run"]["id"])
        check(g.state == S.Value("INSTANCE_STATE_RUNNING") and g.vmm_pid == before["run"]["pid"],
              "run: re-adopted Running with the same VMM pid %d" % g.vmm_pid)
        with shell("run") as sh:
            check(sh.run("cat /tmp/marker", timeout=60, retry=True).strip() ==
                  "before-upgrade-run", "run: the marker written under the old emberd is there")
            check(sh.run("kill -0 %s && echo alive" % before["run"]["bg"],
                         timeout=60).strip() == "alive", "run: its background process lives")
        check(len(vmm_pids(inst_dir("run"))) == 1, "run: exactly one VMM")

        g = d.get(before["paused"]["id"])
        check(g.state == S.Value("INSTANCE_STATE_PAUSED") and
              g.vmm_pid == before["paused"]["pid"],
              "paused: re-adopted Paused with the same VMM pid")
        d.resume(before["paused"]["id"])
        with shell("paused") as sh:
            check(sh.run("cat /tmp/marker", timeout=60, retry=True).strip() ==
                  "before-upgrade-paused", "paused: resumes under the new emberd, marker intact")

        g = d.get(before["standby"]["id"])
        check(g.state == S.Value("INSTANCE_STATE_STANDBY"), "standby: still Standby")
        d.restore(before["standby"]["id"])
        with shell("standby") as sh:
            check(sh.run("cat /tmp/marker", timeout=60, retry=True).strip() ==
                  "before-upgrade-standby",
                  "standby: the snapshot the old emberd wrote restores, marker intact")

        check(d.get(before["stopped"]["id"]).state == S.Value("INSTANCE_STATE_STOPPED"),
              "stopped: still Stopped")

        # The guest the old emberd booted goes through standby/restore under the new one.
        rid = before["run"]["id"]
        st = d.standby(rid)
        check(st.state == S.Value("INSTANCE_STATE_STANDBY"),
              "run: standby under the new emberd (%s)" % pb.SnapshotKind.Name(st.last_snapshot_kind))
        d.restore(rid)
        with shell("run") as sh:
            check(sh.run("cat /tmp/marker", timeout=60, retry=True).strip() ==
                  "before-upgrade-run", "run: marker intact after a new-emberd standby/restore")

        fmt = json.load(open(os.path.join(data, "format.json")))
        check(fmt.get("format") == 2 and "emberd" in fmt.get("written_by", ""),
              "the data dir now records format 2 and who wrote it (%s)" % fmt)

        # A downgrade: a data dir written by a newer emberd is refused, untouched.
        d.stop()
        d = None
        with open(os.path.join(data, "format.json"), "w") as f:
            json.dump({"format": 3, "written_by": "emberd 9.0.0"}, f)
        # Running guests write their RAM file and console themselves; every
        # other byte must stay as it was.
        live = ("memory", "console.log")

        def digest_now():
            return [e for e in tree_digest(data) if os.path.basename(e[0]) not in live]
        digest = digest_now()
        newer = Emberd(root=root, start=False)
        p = newer.spawn()
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        log = open(newer.log_path, errors="replace").read()
        check(rc not in (None, 0), "emberd refuses a data dir of a newer format (exit %s)" % rc)
        check("format 3" in log and "emberd 9.0.0" in log and "refusing to start" in log,
              "the refusal names the format, the emberd that wrote it and what to do")
        check(digest_now() == digest, "nothing in the data dir changed (but the live guests' "
              "RAM files and consoles)")
        check(len(vmm_pids(inst_dir("run"))) == 1 and len(vmm_pids(inst_dir("paused"))) == 1,
              "the guests kept running through the refused start")
        with open(os.path.join(data, "format.json"), "w") as f:
            json.dump({"format": 2, "written_by": "emberd test"}, f)
    finally:
        if d is not None:
            d.stop()
        # End every VMM this test started, whoever ran them last.
        for p in _pids_under(root):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(root, ignore_errors=True)
    return CHECKS.summary()


def _pids_under(root):
    sys.path.insert(0, HERE)
    from emberd_fixture import procs_matching
    return procs_matching(root + "/")


if __name__ == "__main__":
    sys.exit(main())
