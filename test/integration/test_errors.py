#!/usr/bin/python3
"""test_errors: docs/errors.md is the truth about status codes (issue 9, item 2).

Parses the tables of docs/errors.md (rows `| \`<row>\` | failure | CODE | advice | Test |`)
and, for every row marked `tested`, drives that failure through the real emberd's
gRPC API and checks the code. The Firecracker contract fake
(test/fakes/firecracker_fake.py) is the cheap VMM; QEMU (no guest needed: a VMM
that refuses a bogus kernel) where a row needs a real VMM's refusal; fault points
(EMBER_FAULT, common/fault.h) for internal failures; removed files for missing
snapshots and kernels; `chattr +i` (root, a file system with the immutable flag)
for a record or folder that cannot be written.

Fails when a code differs from the doc, when a `tested` row has no scenario here,
or when a scenario here has no row in the doc. Rows marked `not tested: ...` are
printed as skipped with their reason; so are tested rows whose prerequisite is
missing on this host (printed, and the test still fails only on real mismatches).

Usage: test_errors.py <docs/errors.md> <firecracker_fake.py>
(EMBERD_BIN, EMBER_PYTHON_DIR as for the other tests). Exit 77 = SKIP.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from emberd_fixture import Emberd, pb, qemu_guest  # noqa: E402

ROW = re.compile(r"^\|\s*`([a-z0-9.-]+)`\s*\|(.*)\|\s*$")


def parse(doc):
    rows = {}
    with open(doc) as f:
        for line in f:
            m = ROW.match(line.strip())
            if not m:
                continue
            cells = [c.strip() for c in m.group(2).split("|")]
            if len(cells) != 4:
                raise AssertionError("row %s: expected 5 columns: %r" % (m.group(1), line))
            if m.group(1) in rows:
                raise AssertionError("row %s appears twice" % m.group(1))
            rows[m.group(1)] = {"code": cells[1], "test": cells[3]}
    return rows


class Skip(Exception):
    """A tested row whose prerequisite this host lacks."""


def code_of(fn, *a, **kw):
    try:
        r = fn(*a, **kw)
        if hasattr(r, "__next__"):  # a stream: its status comes with the first read
            next(r)
        return "OK", r
    except grpc.RpcError as e:
        return e.code().name, e.details()


def wait(cond, what, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def chattr(flag, path):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        raise Skip("needs root and chattr")
    r = subprocess.run(["chattr", flag, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise Skip("chattr %s %s: %s" % (flag, path, r.stdout.strip()))


class Ctx:
    """One emberd (no faults) plus helpers; `faulty` runs a second one."""

    def __init__(self, fake):
        self.fake = fake
        # The scenarios leave their instances (many Running fakes of 1 vCPU):
        # the vCPU overcommit is raised so that admission (docs/capacity.md)
        # does not refuse the later rows' starts on a 2-CPU host.
        self.d = Emberd(env={"EMBER_FIRECRACKER_BIN": fake}, log_level="info",
                        args=["--vcpu-overcommit", "64"])
        self.n = 0
        self.kernel = self.d.fake_kernel("fc-kernel")
        self.files = os.path.dirname(self.kernel)

    def name(self, tag):
        self.n += 1
        return "%s-%d" % (tag, self.n)

    def spec(self, d=None, kernel=None, hv="firecracker"):
        return (d or self.d).make_spec(hypervisor=hv, memory_mib=16, kernel=kernel or self.kernel)

    def fc(self, state="stopped", d=None):
        d = d or self.d
        i = d.create(self.name(state), self.spec(d), start=state != "stopped")
        if state == "paused":
            d.pause(i.id)
        if state == "standby":
            d.standby(i.id)
        return i

    def inst_dir(self, i, d=None):
        return os.path.join((d or self.d).data_dir, "instances", i.id)

    def latest(self, i):
        return os.path.join(self.inst_dir(i), "snapshots", "snapshot-latest")


# ---- scenarios: row -> fn(ctx) -> code name --------------------------------------

def s_create_bad_name(c):
    return code_of(c.d.create, "bad name!", c.spec())[0]


def s_create_no_hv(c):
    return code_of(c.d.create, c.name("nohv"), c.d.make_spec(hypervisor="", kernel=c.kernel))[0]


def s_create_unknown_hv(c):
    return code_of(c.d.create, c.name("unk"), c.d.make_spec(hypervisor="vmware", kernel=c.kernel))[0]


def s_create_bad_spec(c):
    s = c.spec()
    s.vcpus = 0
    return code_of(c.d.create, c.name("spec"), s)[0]


def s_create_kernel_missing(c):
    return code_of(c.d.create, c.name("nok"), c.spec(kernel=os.path.join(c.files, "absent")))[0]


def s_create_name_taken(c):
    i = c.fc()
    return code_of(c.d.create, i.name, c.spec())[0]


def s_create_host_full(c):
    with Emberd(env={"EMBER_FIRECRACKER_BIN": c.fake}, args=["--max-instances", "1"],
                log_level="info") as d:
        d.create("one", c.spec(d))
        return code_of(d.create, "two", c.spec(d))[0]


def s_create_unavailable(c):
    """Firecracker whose binary is absent: compiled in, not available here.
    Refused at create (with or without start), and nothing is created."""
    absent = os.path.join(c.files, "no-such-firecracker")
    with Emberd(env={"EMBER_FIRECRACKER_BIN": absent}, log_level="info") as d:
        fc = {h.type: h for h in d.list_hypervisors()}.get("firecracker")
        if fc is None or fc.available:
            return "firecracker with an absent binary is listed as available"
        codes = set()
        for start in (False, True):
            name = "unavail-%d" % start
            codes.add(code_of(d.create, name, c.spec(d), start)[0])
            if code_of(d.get, name)[0] != "NOT_FOUND":
                return "a refused create left an instance (start=%s)" % start
        return codes.pop() if len(codes) == 1 else "differs with start: %s" % sorted(codes)


def s_create_admission(c):
    """A guest larger than the whole host (the largest RAM a spec may ask)."""
    s = c.spec()
    s.memory_mib = 262144
    with open("/proc/meminfo") as f:
        total_mib = int(f.readline().split()[1]) // 1024
    if total_mib >= s.memory_mib:
        raise Skip("this host has %d MiB of RAM: 256 GiB fits" % total_mib)
    name = c.name("big")
    code, msg = code_of(c.d.create, name, s)
    print("    (%s)" % msg)
    if code_of(c.d.get, name)[0] != "NOT_FOUND":
        return "a refused create left an instance"
    return code


def s_create_host_path(c):
    """A kernel inside emberd's data dir (docs/host-paths.md rule 1)."""
    i = c.fc()
    rec = os.path.join(c.inst_dir(i), "instance.json")
    name = c.name("hp")
    code = code_of(c.d.create, name, c.spec(kernel=rec))[0]
    if code_of(c.d.get, name)[0] != "NOT_FOUND":
        return "a refused create left an instance"
    return code


def s_create_bad_labels(c):
    return code_of(c.d.create, c.name("lab"), c.spec(), labels={"-bad": "x"})[0]


def s_create_bad_request_id(c):
    return code_of(c.d.create, c.name("rid"), c.spec(), request_id="bad id!")[0]


def s_create_request_id_reuse(c):
    rid = "reuse-%d" % os.getpid()
    first = c.d.create(c.name("rq"), c.spec(), request_id=rid)
    again = c.d.create(first.name, c.spec(), request_id=rid)
    if again.id != first.id:
        return "the same request created a second instance"
    name = c.name("rq")
    code = code_of(c.d.create, name, c.spec(), request_id=rid)[0]
    if code_of(c.d.get, name)[0] != "NOT_FOUND":
        return "a reused request_id created an instance"
    return code


def s_create_disk_unwritable(c):
    inst = os.path.join(c.d.data_dir, "instances")
    chattr("+i", inst)
    try:
        name = c.name("ro")
        code = code_of(c.d.create, name, c.spec())[0]
    finally:
        chattr("-i", inst)
    if code_of(c.d.get, name)[0] != "NOT_FOUND":
        return "a failed create left an instance"
    return code


def s_get_no_id(c):
    return code_of(c.d.get, "")[0]


def s_get_bad_id(c):
    return code_of(c.d.get, "x" * 300)[0]


def s_get_unknown(c):
    return code_of(c.d.get, "no-such-instance")[0]


def s_list_bad_filter(c):
    codes = {code_of(c.d.list_page, filter=f)[0]
             for f in ("state=BOGUS", "colour=red", "state", 'name="open', "x" * 2000)}
    return codes.pop() if len(codes) == 1 else "differs between filters: %s" % sorted(codes)


def s_list_bad_page_token(c):
    for _ in range(2):
        c.fc()
    page = c.d.list_page(page_size=1)
    if not page.next_page_token:
        return "no next_page_token with page_size 1"
    codes = {code_of(c.d.list_page, page_token="not-a-token")[0],
             # a token is only good with the filter that produced it
             code_of(c.d.list_page, page_token=page.next_page_token, filter="state=STOPPED")[0]}
    return codes.pop() if len(codes) == 1 else "differs: %s" % sorted(codes)


def s_list_bad_page_size(c):
    return code_of(c.d.list_page, page_size=-1)[0]


def s_start_unknown(c):
    return code_of(c.d.start_instance, "no-such-instance")[0]


def s_start_running(c):
    return code_of(c.d.start_instance, c.fc("running").id)[0]


def s_start_wrong_state(c):
    return code_of(c.d.start_instance, c.fc("standby").id)[0]


def s_start_kernel_removed(c):
    """Firecracker, and QEMU when installed (it used to say UNAVAILABLE)."""
    codes = set()
    for hv in ("firecracker", "qemu") if shutil.which("qemu-system-x86_64") else ("firecracker",):
        k = os.path.join(c.files, c.name("kernel"))
        shutil.copyfile(c.kernel, k)
        i = c.d.create(c.name("kr"), c.spec(kernel=k, hv=hv))
        os.unlink(k)
        code = code_of(c.d.start_instance, i.id, timeout=60)[0]
        if c.d.get(i.id).state != pb.INSTANCE_STATE_STOPPED:
            return "%s instance not left Stopped" % hv
        codes.add(code)
    return codes.pop() if len(codes) == 1 else "differs between drivers: %s" % sorted(codes)


def s_start_unavailable(c):
    """Created while the Firecracker fake is there; emberd restarted with its
    binary gone (the driver became unavailable)."""
    fake = os.path.join(c.files, "fc-fake-gone")
    shutil.copyfile(c.fake, fake)
    os.chmod(fake, 0o755)
    d = Emberd(env={"EMBER_FIRECRACKER_BIN": fake}, log_level="info")
    try:
        i = d.create("was-available", c.spec(d))
        d.stop()
        os.unlink(fake)
        d.start()
        fc = {h.type: h for h in d.list_hypervisors()}.get("firecracker")
        if fc is None or fc.available:
            return "firecracker still available with its binary gone"
        code = code_of(d.start_instance, i.id)[0]
        if d.get(i.id).state != pb.INSTANCE_STATE_STOPPED:
            return "instance not left Stopped"
        return code
    finally:
        d.close()


def s_start_host_path(c):
    """The kernel is a symlink that passed at create and was retargeted into
    emberd's data dir before Start (docs/host-paths.md)."""
    other = c.fc()
    link = os.path.join(c.files, c.name("klink"))
    os.symlink(c.kernel, link)
    i = c.d.create(c.name("hps"), c.spec(kernel=link))
    os.unlink(link)
    os.symlink(os.path.join(c.inst_dir(other), "instance.json"), link)
    code = code_of(c.d.start_instance, i.id)[0]
    if c.d.get(i.id).state != pb.INSTANCE_STATE_STOPPED:
        return "instance not left Stopped"
    return code


def s_start_vmm_refused(c):
    if shutil.which("qemu-system-x86_64") is None:
        raise Skip("needs qemu-system-x86_64 (a VMM that refuses a bogus kernel)")
    # A regular file that is no kernel at all: QEMU refuses it and exits.
    spec = c.d.qemu_spec()
    i = c.d.create(c.name("qk"), spec)
    code, msg = code_of(c.d.start_instance, i.id, timeout=60)
    if c.d.get(i.id).state != pb.INSTANCE_STATE_STOPPED:
        return "instance not left Stopped"
    print("    (%s)" % msg)
    return code


def s_stop_unknown(c):
    return code_of(c.d.stop_instance, "no-such-instance")[0]


def s_stop_stopped(c):
    return code_of(c.d.stop_instance, c.fc().id)[0]


def s_stop_bad_timeout(c):
    i = c.fc("running")
    codes = {code_of(c.d.stop_instance, i.id, graceful_timeout_s=t)[0] for t in (-1, 3601)}
    if c.d.get(i.id).state != pb.INSTANCE_STATE_RUNNING:
        return "instance not left Running"
    return codes.pop() if len(codes) == 1 else "differs: %s" % sorted(codes)


def s_pause_unknown(c):
    return code_of(c.d.pause, "no-such-instance")[0]


def s_pause_wrong_state(c):
    return code_of(c.d.pause, c.fc().id)[0]


def s_resume_wrong_state(c):
    return code_of(c.d.resume, c.fc("standby").id)[0]


def s_resume_running(c):
    return code_of(c.d.resume, c.fc("running").id)[0]


def s_standby_wrong_state(c):
    return code_of(c.d.standby, c.fc().id)[0]


def _record_unsaved_fault(c):
    """Without chattr: the fault point agent.commit.save makes every record save
    fail, so the OK and the warning are checked, not the repair."""
    d = Emberd(env={"EMBER_FIRECRACKER_BIN": c.fake}, log_level="info")
    try:
        i = c.fc("running", d)
        d.stop()
        d.env = {"EMBER_FIRECRACKER_BIN": c.fake, "EMBER_FAULT": "agent.commit.save"}
        d.start()
        code, r = code_of(d.standby, i.id)
        if code == "OK" and (r.state != pb.INSTANCE_STATE_STANDBY or
                             "not saved" not in r.status_message):
            return "OK but state %s, status_message %r" % (r.state, r.status_message)
        print("    (fault point agent.commit.save; the repair is not checked without chattr)")
        return code
    finally:
        d.close()


def s_standby_record_unsaved(c):
    i = c.fc("running")
    rec = os.path.join(c.inst_dir(i), "instance.json")
    try:
        chattr("+i", rec)
    except Skip:
        return _record_unsaved_fault(c)
    try:
        code, r = code_of(c.d.standby, i.id)
        if code != "OK":
            return code
        if r.state != pb.INSTANCE_STATE_STANDBY or "not saved" not in r.status_message:
            return "OK but state %s, status_message %r" % (r.state, r.status_message)
        print("    (status_message: %s)" % r.status_message)
    finally:
        chattr("-i", rec)
    # The monitor saves the record once the disk takes it, and the warning goes;
    # the repair is no state change (update_time stays).
    wait(lambda: c.d.get(i.id).status_message == "", "the record to be repaired")
    if c.d.get(i.id).update_time != r.update_time:
        return "the repair moved update_time"
    with open(rec) as f:
        on_disk = json.load(f)
    if on_disk.get("state") != "standby" or on_disk.get("status_message"):
        return "record on disk after the repair: state %r, status_message %r" % (
            on_disk.get("state"), on_disk.get("status_message"))
    return code


def s_restore_running(c):
    return code_of(c.d.restore, c.fc("running").id)[0]


def s_restore_wrong_state(c):
    return code_of(c.d.restore, c.fc().id)[0]


def _restore_after(c, damage):
    i = c.fc("standby")
    damage(c.latest(i))
    code = code_of(c.d.restore, i.id)[0]
    # A cold boot is the way forward: Stop discards, Start boots.
    c.d.stop_instance(i.id)
    c.d.start_instance(i.id)
    return code


def _qemu_restore_after(c, victim):
    """The same failure with QEMU's own snapshot files (the Linux test guest);
    None when the guest is not built here."""
    g = qemu_guest()
    if g is None:
        print("    (QEMU variant skipped: no Linux test guest in EMBER_TEST_GUEST_DIR)")
        return None
    sys.path.insert(0, os.path.join(HERE, "..", "guests"))
    from guest_shell import linux_cmdline
    spec = c.d.make_spec(hypervisor="qemu", memory_mib=128, kernel=g[0], initrd=g[1],
                         cmdline=linux_cmdline())
    i = c.d.create(c.name("q"), spec, start=True, timeout=180)
    try:
        c.d.standby(i.id)
        os.unlink(os.path.join(c.latest(i), victim))
        return code_of(c.d.restore, i.id)[0]
    finally:
        c.d.delete(i.id)


def s_restore_latest_missing(c):
    return _restore_after(c, lambda p: shutil.rmtree(p))


def s_restore_incomplete(c):
    return _restore_after(c, lambda p: os.unlink(os.path.join(p, ".complete")))


def _both(c, victim):
    fc = _restore_after(c, lambda p: os.unlink(os.path.join(p, victim)))
    q = _qemu_restore_after(c, victim)
    return fc if q is None or q == fc else "firecracker %s, qemu %s" % (fc, q)


def s_restore_memory_missing(c):
    return _both(c, "memory")


def s_restore_state_missing(c):
    return _both(c, "state")


def s_delete_unknown(c):
    return code_of(c.d.delete, "no-such-instance")[0]


def s_delete_allow_missing(c):
    code, r = code_of(c.d.delete, "no-such-instance", allow_missing=True)
    if code == "OK" and r != "":
        return "OK but id %r (expected empty)" % r
    return code


def s_hypervisors_ok(c):
    return code_of(c.d.list_hypervisors)[0]


def s_watch_bad_id(c):
    return code_of(c.d.watch, "bad id!", timeout=10)[0]


def s_watch_unknown(c):
    return code_of(c.d.watch, "no-such-instance", timeout=10)[0]


# Every RPC with a string field, and the field: the raw request carries it as
# field 1 (id; name for CreateInstance) or 4 (ListInstances.filter).
STRING_RPCS = (("CreateInstance", 1), ("GetInstance", 1), ("ListInstances", 4),
               ("StartInstance", 1), ("StopInstance", 1), ("PauseInstance", 1),
               ("ResumeInstance", 1), ("StandbyInstance", 1), ("RestoreInstance", 1),
               ("DeleteInstance", 1), ("WatchInstances", 1))


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _raw_string_codes(c, value):
    """Sends each RPC a hand-encoded request whose string field is `value`
    (bytes; the python protobuf refuses to encode invalid UTF-8 itself)."""
    codes = {}
    for rpc, field in STRING_RPCS:
        # Otherwise valid requests, so only the bad bytes can be refused:
        # CreateInstance gets a good spec, ListInstances a `name=` filter term.
        v = b"name=" + value if rpc == "ListInstances" else value
        payload = bytes([(field << 3) | 2, len(v)]) + v
        if rpc == "CreateInstance":
            spec = c.spec().SerializeToString()
            payload += bytes([(2 << 3) | 2]) + _varint(len(spec)) + spec
        path = "/ember.v1.InstanceService/" + rpc
        if rpc == "WatchInstances":
            fn = c.d.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        else:
            fn = c.d.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        codes[rpc] = code_of(fn, payload, timeout=10)[0]
    return codes


def _same_code(codes):
    distinct = set(codes.values())
    if len(distinct) == 1:
        return distinct.pop()
    return "differs between RPCs: %s" % sorted(codes.items())


def s_any_nul(c):
    before = len(c.d.list())
    code = _same_code(_raw_string_codes(c, b"inst\x00ance"))
    if len(c.d.list()) != before:
        return "a refused request created an instance"
    return code


def s_any_bad_utf8(c):
    before = len(c.d.list())
    code = _same_code(_raw_string_codes(c, b"inst\xff\xfeance"))
    if len(c.d.list()) != before:
        return "a refused request created an instance"
    return code


def s_any_down(c):
    with Emberd(env={"EMBER_FIRECRACKER_BIN": c.fake}, log_level="info") as d:
        d.stop()
        d._open_channel()
        try:
            return code_of(d.list, timeout=5)[0]
        finally:
            d.channel.close()
            d.channel = None


# Internal failures: instances are set up on a clean emberd, which is then
# restarted on the same data dir with the fault points armed.
FAULTS = ("agent.start.before_commit,agent.stop.before_vmm,snap.standby.after_snapshot,"
          "fc.restore.before_load,agent.delete.before_remove")
FAULTY = {}


def faulty(c):
    if not FAULTY:
        d = Emberd(env={"EMBER_FIRECRACKER_BIN": c.fake}, log_level="info")
        FAULTY["d"] = d
        FAULTY["stopped"] = c.fc("stopped", d)
        FAULTY["stopped2"] = c.fc("stopped", d)
        FAULTY["running"] = c.fc("running", d)
        FAULTY["running2"] = c.fc("running", d)
        FAULTY["standby"] = c.fc("standby", d)
        d.stop()
        d.env = {"EMBER_FIRECRACKER_BIN": c.fake, "EMBER_FAULT": FAULTS}
        d.start()
    return FAULTY["d"], FAULTY


def s_start_internal(c):
    d, f = faulty(c)
    code = code_of(d.start_instance, f["stopped"].id)[0]
    if d.get(f["stopped"].id).state != pb.INSTANCE_STATE_STOPPED:
        return "instance not left Stopped"
    return code


def s_stop_internal(c):
    d, f = faulty(c)
    code = code_of(d.stop_instance, f["running"].id)[0]
    if d.get(f["running"].id).state != pb.INSTANCE_STATE_RUNNING:
        return "instance not left Running"
    return code


def s_standby_internal(c):
    d, f = faulty(c)
    code = code_of(d.standby, f["running2"].id)[0]
    if d.get(f["running2"].id).state != pb.INSTANCE_STATE_RUNNING:
        return "instance not left Running"
    return code


def s_restore_internal(c):
    d, f = faulty(c)
    code = code_of(d.restore, f["standby"].id)[0]
    if d.get(f["standby"].id).state != pb.INSTANCE_STATE_STANDBY:
        return "instance not left Standby"
    return code


def s_delete_internal(c):
    d, f = faulty(c)
    code = code_of(d.delete, f["stopped2"].id)[0]
    if d.get(f["stopped2"].id).state != pb.INSTANCE_STATE_STOPPED:
        return "instance not left Stopped"
    return code


SCENARIOS = {
    "create.bad-name": s_create_bad_name,
    "create.no-hypervisor": s_create_no_hv,
    "create.unknown-hypervisor": s_create_unknown_hv,
    "create.bad-spec": s_create_bad_spec,
    "create.kernel-missing": s_create_kernel_missing,
    "create.name-taken": s_create_name_taken,
    "create.host-full": s_create_host_full,
    "create.unavailable": s_create_unavailable,
    "create.admission": s_create_admission,
    "create.host-path": s_create_host_path,
    "create.bad-labels": s_create_bad_labels,
    "create.bad-request-id": s_create_bad_request_id,
    "create.request-id-reuse": s_create_request_id_reuse,
    "create.disk-unwritable": s_create_disk_unwritable,
    "get.no-id": s_get_no_id,
    "get.bad-id": s_get_bad_id,
    "get.unknown": s_get_unknown,
    "list.bad-filter": s_list_bad_filter,
    "list.bad-page-token": s_list_bad_page_token,
    "list.bad-page-size": s_list_bad_page_size,
    "start.unknown": s_start_unknown,
    "start.running": s_start_running,
    "start.wrong-state": s_start_wrong_state,
    "start.kernel-removed": s_start_kernel_removed,
    "start.unavailable": s_start_unavailable,
    "start.host-path": s_start_host_path,
    "start.vmm-refused": s_start_vmm_refused,
    "start.internal": s_start_internal,
    "stop.unknown": s_stop_unknown,
    "stop.stopped": s_stop_stopped,
    "stop.bad-timeout": s_stop_bad_timeout,
    "stop.internal": s_stop_internal,
    "pause.unknown": s_pause_unknown,
    "pause.wrong-state": s_pause_wrong_state,
    "resume.wrong-state": s_resume_wrong_state,
    "resume.running": s_resume_running,
    "standby.wrong-state": s_standby_wrong_state,
    "standby.internal": s_standby_internal,
    "standby.record-unsaved": s_standby_record_unsaved,
    "restore.running": s_restore_running,
    "restore.wrong-state": s_restore_wrong_state,
    "restore.latest-missing": s_restore_latest_missing,
    "restore.incomplete": s_restore_incomplete,
    "restore.memory-missing": s_restore_memory_missing,
    "restore.state-missing": s_restore_state_missing,
    "restore.internal": s_restore_internal,
    "delete.unknown": s_delete_unknown,
    "delete.allow-missing": s_delete_allow_missing,
    "delete.internal": s_delete_internal,
    "hypervisors.ok": s_hypervisors_ok,
    "watch.bad-id": s_watch_bad_id,
    "watch.unknown": s_watch_unknown,
    "any.nul": s_any_nul,
    "any.bad-utf8": s_any_bad_utf8,
    "any.down": s_any_down,
}


def main():
    if len(sys.argv) < 3 or not os.path.isfile(sys.argv[1]) or not os.path.isfile(sys.argv[2]):
        print("SKIP: usage: test_errors.py <docs/errors.md> <firecracker_fake.py>")
        return 77
    rows = parse(sys.argv[1])
    fake = os.path.abspath(sys.argv[2])
    problems = []
    only = os.environ.get("ROWS")  # e.g. ROWS=restore. to run a subset while debugging
    for name in SCENARIOS:
        if name not in rows:
            problems.append("%s: scenario in the test but no row in the doc" % name)
    tested = skipped = 0
    c = Ctx(fake)
    try:
        for name, row in rows.items():
            if only and not name.startswith(only):
                continue
            if not row["test"].startswith("tested"):
                print("SKIP %-26s %s" % (name, row["test"]))
                skipped += 1
                continue
            fn = SCENARIOS.get(name)
            if fn is None:
                problems.append("%s: marked tested in the doc but the test has no scenario" % name)
                continue
            try:
                got = fn(c)
            except Skip as e:
                print("SKIP %-26s %s (prerequisite missing here)" % (name, e))
                skipped += 1
                continue
            except Exception as e:  # noqa: BLE001
                got = "exception %s: %s" % (type(e).__name__, e)
            tested += 1
            ok = got == row["code"]
            print("%s %-26s doc %-20s got %s" % ("ok  " if ok else "FAIL", name, row["code"], got))
            if not ok:
                problems.append("%s: doc says %s, emberd gave %s" % (name, row["code"], got))
        if c.d.proc.poll() is not None:
            problems.append("emberd exited during the test")
    finally:
        if FAULTY:
            FAULTY["d"].close()
        c.d.close()
    print("%d rows tested, %d skipped, %d problems" % (tested, skipped, len(problems)))
    for p in problems:
        print("PROBLEM:", p)
    if problems:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
