#!/usr/bin/python3
"""bench_wake: waking many guests at once, and waking a big guest. Prints
figures and ratios; never asserts times. Run by hand (no ctest: CI time).

Part "burst" (--parts burst): N (25) instances in one emberd.
  qemu   the Linux test guest (TCG, --burst-mib 128 MiB; it does not boot in 64). Each writes a marker
         in its tmpfs after boot.
  fc     the Firecracker contract fake (test/fakes/firecracker_fake.py as
         EMBER_FIRECRACKER_BIN) with the tiny guest kernel, 32 MiB: cheap, and
         its figures are FAKE (a Python model), they only show emberd's share.
  For each: one StandbyInstance alone (the others Running) x --singles; then
  all N StandbyInstance calls at once; one RestoreInstance (and standby) alone
  (the others in Standby) x --singles; then all N RestoreInstance calls at
  once. Every guest must come back (QEMU: its marker through the guest
  shell; fc: the console counter continues). Calls of a burst are issued from
  one thread as gRPC futures on one channel; each call's start and end are
  time-stamped by the client. Printed: p50/p95 per call of the burst vs the
  call alone (target burst p95 <= 2 x alone p50: MET / NOT MET), makespan
  (first start to last end), the overlap of the calls seen by the client (max
  calls in flight at once; mean = sum of call times / makespan: N means fully
  parallel, 1 means serialized) and emberd's threads (sampled from
  /proc/<emberd>/task every 10 ms: most threads above the idle count, and
  most in state R or D at once), and emberd's own last_*_duration.
  raw    QEMU only: after another burst standby, each instance's snapshot
         (state file and RAM file) is copied to a folder of its own and N QEMUs
         are started by the script with EXACTLY emberd's command line (from
         /proc/<pid>/cmdline, folder swapped) and driven with the driver's QMP
         restore sequence (bench_qemu.py's RawSide: -S -incoming defer;
         x-ignore-shared; getfd + migrate-incoming fd:; poll; cont;
         query-status), one alone x --singles, then all N at once from N
         threads; then the raw standby sequence (stop, migrate, fsync, quit)
         all at once. Printed: emberd burst / raw burst ratios.

Part "big" (--parts big): standby into the retained base and restore of a
  --big-mib (4096) guest that dirtied --dirty-mib (64) MiB (a fresh random
  file in its tmpfs) since its last restore, vs a --small-mib (256) guest doing
  the same, and vs a FULL standby of the big guest (a second emberd with
  {"drivers":{"qemu":{"base_reuse":false}}}: RAM not in a file, every standby
  a full migration stream). One warm-up standby/restore after boot (not
  counted), then --big-cycles cycles with the page cache as the standby left
  it, then one "cold" cycle whose snapshot files are dropped from the page
  cache first (posix_fadvise DONTNEED on the instance's files, after the
  standby's fsync they are clean: only those files leave the cache).
  Per standby: time (client; emberd's last_standby_duration); bytes: the
  guest's RAM-file pages dirtied since the restore (QEMU's write_bytes
  before the standby: a shared file mapping's pages are charged when the
  guest dirties them); what emberd and QEMU write during the standby
  (emberd's write_bytes delta, which also gets its reaped QEMU's lifetime
  total, less QEMU's total before the standby: the state file and emberd's
  metadata); the state file; the allocated blocks of the instance folder
  (delta); the data dir's device (system-wide: other load counts).
  Per restore: time; QEMU's read_bytes (from storage) and rchar (through
  read calls) when RestoreInstance returns, and after one guest shell round
  trip.

Part "pool" (--parts pool): one restore with the warm VMM pool (docs/wake.md)
  vs the raw VMM started cold and started warm by the script. One emberd with
  {"warm_pool": {"qemu": {"size": 1}}} and one --pool-mib (256) Linux guest.
  --singles cycles: standby; wait until the pool's QEMU for it waits (its
  -incoming process, plus 0.5 s); RestoreInstance (client time, and emberd's
  last_restore_duration), which must run in that very QEMU (same pid: else a
  failure). Then its snapshot is copied to a raw folder --singles times and a
  QEMU with emberd's boot command line (folder swapped) is driven with the
  driver's QMP restore sequence (RawSide): "raw cold" = spawn to running,
  "raw warm" = from a connected, waiting QEMU to running (x-ignore-shared,
  getfd, migrate-incoming, poll, cont, query-status). Printed: pooled /
  raw warm (target <= 1.15) and pooled / raw cold. With --pool N the burst
  part's emberd has a QEMU pool of N and waits for it to fill before the
  burst of restores and for the instance's warm QEMU before a restore alone.

Usage:
  test/bench/bench_wake.py [--parts burst,big,pool] [--pool-mib 256] [--pool 0] [--burst 25] [--burst-mib 128]
        [--singles 5] [--big-mib 4096] [--small-mib 256] [--dirty-mib 64]
        [--big-cycles 2] [--no-fc] [--no-raw]
  or cmake --build build --target bench_wake (BENCH_WAKE_ARGS narrows it)
  (env: EMBERD_BIN, EMBER_PYTHON_DIR, EMBER_TEST_GUEST_DIR, EMBER_GUEST_TINY,
   EMBER_QEMU_ACCEL (default tcg))
Exit: 0 figures printed, 1 a functional failure, 77 SKIP (naming what is missing).
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

import bench_common as bc  # noqa: E402

FAKE_FC = os.path.abspath(os.path.join(HERE, "..", "fakes", "firecracker_fake.py"))
SERVICE = "/ember.v1.InstanceService/"
BURST_TARGET = 2.0  # burst p95 <= 2 x one call alone (p50)


skip, BenchFailure, guest_files = bc.skip, bc.BenchFailure, bc.guest_files


def find_tiny(arg):
    cands = [arg, os.environ.get("EMBER_GUEST_TINY", "")]
    for b in (os.environ.get("EMBER_BUILD_DIR", ""), os.path.join(bc.ROOT, "build")):
        if b:
            cands.append(os.path.join(b, "guests", "tiny", "tiny.elf"))
    for c in cands:
        if c and os.path.isfile(c):
            return os.path.abspath(c)
    return None


def secs(dur):
    return dur.ToMicroseconds() / 1e6


# ---- /proc counters -------------------------------------------------------------

def proc_io(pid):
    """{"rchar", "wchar", "read_bytes", "write_bytes", ...} of /proc/<pid>/io, or {}."""
    out = {}
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
    except (OSError, ValueError):
        pass
    return out


def du_bytes(path):
    """Allocated bytes under path (st_blocks), not following links."""
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def drop_cache_of(path):
    """Drops the clean page cache of every regular file under path (fsync
    first, so that every page is clean and only these files leave the cache)."""
    for dirpath, _, files in os.walk(path):
        for n in files:
            p = os.path.join(dirpath, n)
            try:
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


class ThreadSampler:
    """Samples /proc/<pid>/task every period: most threads at once, and most
    threads in state R (running) or D (waiting on I/O) at once."""

    def __init__(self, pid, period=0.010):
        self.pid = pid
        self.period = period
        self.max_threads = 0
        self.max_busy = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = None

    def _tasks(self):
        busy = n = 0
        try:
            tids = os.listdir("/proc/%d/task" % self.pid)
        except OSError:
            return 0, 0
        for t in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (self.pid, t)) as f:
                    st = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            n += 1
            if st in ("R", "D"):
                busy += 1
        return n, busy

    def idle_threads(self):
        return self._tasks()[0]

    def _run(self):
        while not self._stop.is_set():
            n, busy = self._tasks()
            self.max_threads = max(self.max_threads, n)
            self.max_busy = max(self.max_busy, busy)
            self.samples += 1
            self._stop.wait(self.period)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def overlap(intervals):
    """(max calls in flight at once, sum of call times / makespan, makespan)."""
    if not intervals:
        return None, None, None
    ev = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    span = max(b for _, b in intervals) - min(a for a, _ in intervals)
    busy = sum(b - a for a, b in intervals)
    return best, (busy / span if span > 0 else None), span


# ---- a burst through emberd ---------------------------------------------------------

class Burst:
    """One burst (or a series of calls alone): per call (start, end), emberd's
    own durations, thread samples."""

    def __init__(self, what):
        self.what = what
        self.intervals = []
        self.internal = []
        self.idle_threads = None
        self.max_threads = None
        self.max_busy = None

    def times(self):
        return [b - a for a, b in self.intervals]


def rpc(d, method, resp_cls):
    return d.channel.unary_unary(SERVICE + method,
                                 request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=resp_cls.FromString)


def emberd_burst(d, ids, op, timeout=900):
    """All calls of op (standby/restore) at once as futures on one channel."""
    from emberd_fixture import pb
    method, req_cls, want, field = {
        "standby": ("StandbyInstance", pb.StandbyInstanceRequest, pb.INSTANCE_STATE_STANDBY,
                    "last_standby_duration"),
        "restore": ("RestoreInstance", pb.RestoreInstanceRequest, pb.INSTANCE_STATE_RUNNING,
                    "last_restore_duration"),
    }[op]
    fn = rpc(d, method, pb.Instance)
    b = Burst(op)
    sampler = ThreadSampler(d.proc.pid)
    b.idle_threads = sampler.idle_threads()
    starts, ends = {}, {}
    done = threading.Event()
    lock = threading.Lock()

    def on_done(i):
        def cb(_f):
            with lock:
                ends[i] = bc.now()
                if len(ends) == len(ids):
                    done.set()
        return cb

    futs = {}
    with sampler:
        for i in ids:
            starts[i] = bc.now()
            f = fn.future(req_cls(id=i), timeout=timeout)
            f.add_done_callback(on_done(i))
            futs[i] = f
        done.wait(timeout + 30)
    b.max_threads, b.max_busy = sampler.max_threads, sampler.max_busy
    for i in ids:
        inst = futs[i].result()
        if inst.state != want:
            raise BenchFailure("%s burst: %s ended in state %d" % (op, inst.name, inst.state))
        b.intervals.append((starts[i], ends[i]))
        b.internal.append(secs(getattr(inst, field)))
    return b


def emberd_alone(d, i, op, b):
    """One call alone, appended to Burst b. With a warm pool (--pool), a
    restore first waits for the instance's warm QEMU, as the burst does."""
    from emberd_fixture import pb
    if op == "restore" and getattr(d, "warm_pool", 0) > 0:
        wait_warm([os.path.join(d.data_dir, "instances", i)])
    t0 = bc.now()
    inst = d.standby(i) if op == "standby" else d.restore(i)
    t1 = bc.now()
    want = pb.INSTANCE_STATE_STANDBY if op == "standby" else pb.INSTANCE_STATE_RUNNING
    if inst.state != want:
        raise BenchFailure("%s of %s ended in state %d" % (op, inst.name, inst.state))
    b.intervals.append((t0, t1))
    b.internal.append(secs(inst.last_standby_duration if op == "standby"
                           else inst.last_restore_duration))
    return inst


class BurstResult:
    def __init__(self, label):
        self.label = label
        self.alone = {}   # op -> Burst (calls one at a time)
        self.burst = {}   # op -> Burst
        self.raw_alone = None
        self.raw_burst = {}


def shell_run(path, cmd, timeout=180):
    from guest_shell import GuestShell
    with GuestShell(path, connect_timeout=120) as sh:
        out = sh.run(cmd, timeout=timeout, retry=True)
        if sh.last_status != 0:
            raise BenchFailure("guest command %r exited %s: %s" % (cmd, sh.last_status, out))
        return out


def pool_map(fn, items, workers):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def burst_series(d, ids, singles, check, res):
    """singles alone (others Running), burst standby, singles alone (others in
    Standby), burst restore; check(ids) after each phase that ends Running."""
    first = ids[0]
    a_sb = res.alone["standby (others running)"] = Burst("standby")
    a_re_run = res.alone["restore (others running)"] = Burst("restore")
    for _ in range(singles):
        emberd_alone(d, first, "standby", a_sb)
        emberd_alone(d, first, "restore", a_re_run)
    check([first])
    print("[%s] alone, others running: standby p50 %s ms, restore p50 %s ms"
          % (res.label, bc.ms(bc.pct(a_sb.times(), 50)), bc.ms(bc.pct(a_re_run.times(), 50))),
          flush=True)
    res.burst["standby"] = emberd_burst(d, ids, "standby")
    print("[%s] burst of %d standbys: p50 %s p95 %s ms" % (
        res.label, len(ids), bc.ms(bc.pct(res.burst["standby"].times(), 50)),
        bc.ms(bc.pct(res.burst["standby"].times(), 95))), flush=True)
    a_re = res.alone["restore (others standby)"] = Burst("restore")
    a_sb2 = res.alone["standby (others standby)"] = Burst("standby")
    for k in range(singles):
        emberd_alone(d, first, "restore", a_re)
        if k == singles - 1:
            check([first])
        emberd_alone(d, first, "standby", a_sb2)
    print("[%s] alone, others in standby: restore p50 %s ms, standby p50 %s ms"
          % (res.label, bc.ms(bc.pct(a_re.times(), 50)), bc.ms(bc.pct(a_sb2.times(), 50))),
          flush=True)
    if getattr(d, "warm_pool", 0) > 0:
        t0 = bc.now()
        wait_warm([os.path.join(d.data_dir, "instances", i) for i in ids])
        print("[%s] the warm pool holds all %d (filled in %.1f s)" % (res.label, len(ids),
                                                                    bc.now() - t0), flush=True)
    res.burst["restore"] = emberd_burst(d, ids, "restore")
    print("[%s] burst of %d restores: p50 %s p95 %s ms" % (
        res.label, len(ids), bc.ms(bc.pct(res.burst["restore"].times(), 50)),
        bc.ms(bc.pct(res.burst["restore"].times(), 95))), flush=True)
    check(ids)


# ---- pool: one restore, pooled vs raw cold and raw warm ----------------------------

POOL_TARGET = 1.15


def warm_pids(idir):
    """QEMUs of the instance folder that wait for an incoming stream."""
    from emberd_fixture import vmm_pids
    out = []
    for pid in vmm_pids(idir):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"-incoming" in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def proc_kib(pid, name, key):
    """A "Key:  N kB" figure of /proc/<pid>/<name>, or None."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def wait_warm(idirs, timeout=300):
    """Waits until every folder has its waiting QEMU; returns {dir: pid}."""
    end = bc.now() + timeout
    while bc.now() < end:
        got = {i: warm_pids(i) for i in idirs}
        if all(len(v) == 1 for v in got.values()):
            time.sleep(0.5)  # the prepare ends with its QMP set-up; the restore would wait for it
            return {i: v[0] for i, v in got.items()}
        time.sleep(0.05)
    raise BenchFailure("the warm pool did not fill in %d s" % timeout)


def pool_part(kernel, initrd, args, accel, log_level):
    from emberd_fixture import Emberd
    from guest_shell import linux_cmdline, wait_for_console
    from bench_qemu import RawSide
    res = {"pooled": [], "pooled_internal": [], "raw_cold": [], "raw_warm": []}
    d = Emberd(config={"drivers": {"qemu": {"accel": accel}},
                       "warm_pool": {"qemu": {"size": 1}}}, log_level=log_level)
    try:
        spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=args.pool_mib, kernel=kernel,
                           initrd=initrd, cmdline=linux_cmdline())
        print("[pool] booting a %d MiB guest..." % args.pool_mib, flush=True)
        inst = d.create("pool", spec, start=True, timeout=900)
        idir = os.path.join(d.data_dir, "instances", inst.id)
        serial = os.path.join(idir, "serial1.sock")
        wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=900)
        mark = "wake-pool-%d" % os.getpid()
        shell_run(serial, "echo %s > /tmp/mark" % mark)
        argv = read_argv(inst.vmm_pid)
        d.standby(inst.id)  # warm-up
        wait_warm([idir])
        d.restore(inst.id)
        for _ in range(args.singles):
            d.standby(inst.id)
            pid = wait_warm([idir])[idir]
            res.setdefault("rss", []).append(proc_kib(pid, "status", "VmRSS:"))
            res.setdefault("pss", []).append(proc_kib(pid, "smaps_rollup", "Pss:"))
            t0 = bc.now()
            inst = d.restore(inst.id)
            res["pooled"].append(bc.now() - t0)
            res["pooled_internal"].append(secs(inst.last_restore_duration))
            if inst.vmm_pid != pid:
                raise BenchFailure("[pool] the restore did not run in the warm QEMU %d (%d)"
                                   % (pid, inst.vmm_pid))
        check_mark(serial, mark, "pooled guest")
        d.standby(inst.id)
        latest = os.path.join(idir, "snapshots", "snapshot-latest")
        raw_root = tempfile.mkdtemp(prefix="ember-bench-wake-pool-", dir=d.root)
        try:
            for k in range(args.singles):
                r = RawSide(os.path.join(raw_root, "r%d" % k), argv, idir,
                            inst.console_log_path, True)
                shutil.copyfile(os.path.join(latest, "memory"), r.mem)
                shutil.copyfile(os.path.join(latest, "state"), r.state_path())
                try:
                    t, _ = r.restore()
                    ph = r.s.phases
                    res["raw_cold"].append(t)
                    res["raw_warm"].append(ph["incoming"][-1] + ph["cont"][-1])
                    if k == args.singles - 1:
                        check_mark(r.serial, mark, "raw guest")
                finally:
                    r.close()
                    shutil.rmtree(os.path.join(raw_root, "r%d" % k), ignore_errors=True)
        finally:
            shutil.rmtree(raw_root, ignore_errors=True)
        d.restore(inst.id)
        d.stop_instance(inst.id, graceful_timeout_s=0)
        d.delete(inst.id)
    finally:
        d.close()
    return res


def report_pool(res, args):
    p = bc.pct
    pooled = p(res["pooled"], 50)
    rows = []
    for name in ("pooled", "pooled_internal", "raw_warm", "raw_cold"):
        v = res[name]
        rows.append([name.replace("_", " "), bc.ms(p(v, 50)), bc.ms(p(v, 95)),
                     bc.fmt_ratio(bc.ratio(pooled, p(v, 50)))])
    bc.print_table("One restore of a %d MiB guest, %d each (pooled = RestoreInstance in the "
                   "warm QEMU, client time; internal = emberd's last_restore_duration; raw warm "
                   "= a waiting QEMU to running; raw cold = spawn to running)"
                   % (args.pool_mib, args.singles),
                   ["restore-to-running", "p50 ms", "p95 ms", "pooled p50 / this p50"], rows)
    mem = [(a, b) for a, b in zip(res.get("rss", []), res.get("pss", [])) if None not in (a, b)]
    if mem:
        print("a warm QEMU waiting for a %d MiB guest: RSS %.1f MiB, PSS %.1f MiB (p50)"
              % (args.pool_mib, p([a for a, _ in mem], 50) / 1024, p([b for _, b in mem], 50) / 1024))
    warm = p(res["raw_warm"], 50)
    for what, v in (("client time (gRPC call included)", pooled),
                    ("emberd's own duration", p(res["pooled_internal"], 50))):
        r = bc.ratio(v, warm)
        print("pooled (%s) / raw warm: %s (target <= %.2f: %s); / raw cold: %s"
              % (what, bc.fmt_ratio(r), POOL_TARGET, bc.met(r, POOL_TARGET),
                 bc.fmt_ratio(bc.ratio(v, p(res["raw_cold"], 50)))))


# ---- burst: QEMU --------------------------------------------------------------------

def read_argv(pid):
    """emberd's QEMU command line; the files emberd hands over as inherited
    descriptors (/proc/self/fd/N, docs/host-paths.md) by name."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    held = lambda m: os.readlink("/proc/%d/fd/%s" % (pid, m.group(1)))  # noqa: E731
    return [re.sub(r"/proc/self/fd/(\d+)", held, a) for a in argv]


def raw_burst(d, insts, argvs, singles, mark, res):
    """Copies each Standby instance's snapshot to a raw folder, then drives N
    QEMUs with emberd's command line and the driver's QMP sequence."""
    from bench_qemu import RawSide
    raw_root = tempfile.mkdtemp(prefix="ember-bench-wake-raw-", dir=d.root)
    raws = []
    try:
        for k, inst in enumerate(insts):
            idir = os.path.join(d.data_dir, "instances", inst.id)
            r = RawSide(os.path.join(raw_root, "r%d" % k), argvs[inst.id], idir,
                        inst.console_log_path, True)
            # In Standby the RAM file's folder (snapshot-base while running) is
            # snapshot-latest (agent/snapshot.c renames it at the standby).
            mem = os.path.join(idir, "snapshots", "snapshot-latest", "memory")
            shutil.copyfile(mem, r.mem)
            shutil.copyfile(os.path.join(idir, "snapshots", "snapshot-latest", "state"),
                            r.state_path())
            for p in (r.mem, r.state_path()):
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                os.fsync(fd)
                os.close(fd)
            raws.append(r)
        print("[qemu raw] %d snapshots copied; QEMU command line (emberd's, folder swapped):"
              "\n  %s" % (len(raws), " ".join(raws[0].argv)), flush=True)
        one = res.raw_alone = Burst("restore")
        for k in range(singles):
            t, t0 = raws[0].restore()
            one.intervals.append((t0, t0 + t))
            if k == singles - 1:
                check_mark(raws[0].serial, mark, "raw guest 0")
            raws[0].standby()

        def restore(r):
            t, t0 = r.restore()
            return (t0, t0 + t)

        def standby(r):
            t0 = bc.now()
            r.standby()
            return (t0, bc.now())

        for op, fn in (("restore", restore), ("standby", standby)):
            b = res.raw_burst[op] = Burst(op)
            b.intervals = pool_map(fn, raws, len(raws))
            print("[qemu raw] burst of %d %ss: p50 %s p95 %s ms" % (
                len(raws), op, bc.ms(bc.pct(b.times(), 50)), bc.ms(bc.pct(b.times(), 95))),
                flush=True)
            if op == "restore":
                pool_map(lambda kr: check_mark(kr[1].serial, mark, "raw guest %d" % kr[0]),
                         list(enumerate(raws)), 5)
    finally:
        for r in raws:
            r.close()
        if os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(raw_root, ignore_errors=True)


def check_mark(serial, mark, who):
    got = shell_run(serial, "cat /tmp/mark").strip()
    if got != mark:
        raise BenchFailure("%s lost its memory: /tmp/mark is %r, not %r" % (who, got, mark))


def burst_qemu(d, kernel, initrd, args):
    from guest_shell import linux_cmdline, wait_for_console
    res = BurstResult("qemu %d MiB" % args.burst_mib)
    spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=args.burst_mib, kernel=kernel,
                       initrd=initrd, cmdline=linux_cmdline())
    mark = "wake-%d" % os.getpid()
    t0 = bc.now()

    def boot(k):
        inst = d.create("wq%d" % k, spec, start=True, timeout=900)
        wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=900)
        serial = os.path.join(d.data_dir, "instances", inst.id, "serial1.sock")
        shell_run(serial, "echo %s > /tmp/mark" % mark)
        return inst

    print("[qemu] booting %d guests of %d MiB (TCG, 2 at a time)..."
          % (args.burst, args.burst_mib), flush=True)
    insts = pool_map(boot, range(args.burst), 2)
    print("[qemu] %d guests running after %.0f s" % (len(insts), bc.now() - t0), flush=True)
    ids = [i.id for i in insts]
    argvs = {i.id: read_argv(i.vmm_pid) for i in insts}
    serial = {i.id: os.path.join(d.data_dir, "instances", i.id, "serial1.sock") for i in insts}

    def check(which):
        pool_map(lambda i: check_mark(serial[i], mark, "emberd guest " + i), which, 5)

    burst_series(d, ids, args.singles, check, res)
    if args.raw:
        b = emberd_burst(d, ids, "standby")
        print("[qemu] second burst of standbys (for the raw side): p50 %s p95 %s ms"
              % (bc.ms(bc.pct(b.times(), 50)), bc.ms(bc.pct(b.times(), 95))), flush=True)
        raw_burst(d, insts, argvs, args.singles, mark, res)
    for i in ids:
        d.stop_instance(i, graceful_timeout_s=0)
        d.delete(i)
    return res


# ---- burst: Firecracker contract fake ---------------------------------------------------

def burst_fc(d, tiny, args):
    res = BurstResult("fc fake 32 MiB")
    spec = d.make_spec(hypervisor="firecracker", vcpus=1, memory_mib=32, kernel=tiny,
                       cmdline="console=ttyS0")
    insts = []
    for k in range(args.burst):
        inst = d.create("wf%d" % k, spec, start=True, timeout=120)
        insts.append(inst)
    consoles = {i.id: i.console_log_path for i in insts}
    for i in insts:
        last_counter(consoles[i.id])

    def check(which):
        for i in which:
            before = last_counter(consoles[i])
            bc.wait_tiny_counter_above(consoles[i], before, timeout=30)
            lines = bc.tiny_lines(consoles[i])
            if len({m for _, m in lines}) != 1:
                raise BenchFailure("fc guest %s: its marker changed" % i)

    burst_series(d, [i.id for i in insts], args.singles, check, res)
    for i in insts:
        d.stop_instance(i.id, graceful_timeout_s=0)
        d.delete(i.id)
    return res


def last_counter(console, timeout=30):
    deadline = bc.now() + timeout
    while True:
        lines = bc.tiny_lines(console)
        if lines:
            return lines[-1][0]
        if bc.now() > deadline:
            raise BenchFailure("no tiny counter line on %s" % console)
        time.sleep(0.02)


def report_burst(results, n):
    p = bc.pct
    rows = []
    for res in results:
        for name, b in res.alone.items():
            t = b.times()
            rows.append([res.label, "alone: " + name, "%d" % len(t), bc.ms(p(t, 50)),
                         bc.ms(p(t, 95)), bc.ms(p(b.internal, 50)), "-", "-", "-", "-"])
        for op in ("standby", "restore"):
            b = res.burst.get(op)
            if b is None:
                continue
            t = b.times()
            mx, mean, span = overlap(b.intervals)
            rows.append([res.label, "burst of %d: %s" % (n, op), "%d" % len(t),
                         bc.ms(p(t, 50)), bc.ms(p(t, 95)), bc.ms(p(b.internal, 50)),
                         bc.ms(span), "%d" % mx, bc.fmt_ratio(mean),
                         "%d / %d (idle %d)" % (b.max_threads - b.idle_threads, b.max_busy,
                                               b.idle_threads)])
        if res.raw_alone is not None:
            t = res.raw_alone.times()
            rows.append([res.label, "raw alone: restore", "%d" % len(t), bc.ms(p(t, 50)),
                         bc.ms(p(t, 95)), "-", "-", "-", "-", "-"])
        for op, b in res.raw_burst.items():
            t = b.times()
            mx, mean, span = overlap(b.intervals)
            rows.append([res.label, "raw burst of %d: %s" % (n, op), "%d" % len(t),
                         bc.ms(p(t, 50)), bc.ms(p(t, 95)), "-", bc.ms(span), "%d" % mx,
                         bc.fmt_ratio(mean), "-"])
    bc.print_table("Per call (ms; client: call start -> return). internal = emberd's "
                   "last_*_duration. makespan = first start -> last end. in flight = most "
                   "calls in flight at once (client); mean = sum of call times / makespan "
                   "(%d = fully parallel, 1 = serialized). emberd threads = most above idle / "
                   "most in R or D at once (sampled every 10 ms)" % n,
                   ["guests", "what", "n", "p50", "p95", "internal p50", "makespan",
                    "in flight", "mean", "emberd threads"], rows)

    rows = []
    for res in results:
        for op, alone_key in (("restore", "restore (others standby)"),
                              ("standby", "standby (others running)")):
            b = res.burst.get(op)
            a = res.alone.get(alone_key)
            if b is None or a is None:
                continue
            r95 = bc.ratio(p(b.times(), 95), p(a.times(), 50))
            r50 = bc.ratio(p(b.times(), 50), p(a.times(), 50))
            rows.append([res.label, op, bc.ms(p(a.times(), 50)), bc.ms(p(b.times(), 50)),
                         bc.ms(p(b.times(), 95)), bc.fmt_ratio(r50), bc.fmt_ratio(r95),
                         bc.met(r95, BURST_TARGET)])
    bc.print_table("Burst vs alone (target: burst p95 <= %.0f x one call alone p50; restore "
                   "alone = with the others in Standby, standby alone = with the others "
                   "Running; printed, not asserted)" % BURST_TARGET,
                   ["guests", "op", "alone p50", "burst p50", "burst p95", "p50/alone",
                    "p95/alone", "target"], rows)

    rows = []
    for res in results:
        for op, b in res.raw_burst.items():
            e = res.burst.get(op)
            if e is None:
                continue
            rows.append([res.label, op,
                         bc.fmt_ratio(bc.ratio(p(e.times(), 50), p(b.times(), 50))),
                         bc.fmt_ratio(bc.ratio(p(e.times(), 95), p(b.times(), 95))),
                         bc.fmt_ratio(bc.ratio(overlap(e.intervals)[2], overlap(b.intervals)[2]))])
        if res.raw_alone is not None and "restore" in res.raw_burst:
            a = res.raw_alone.times()
            rb = res.raw_burst["restore"].times()
            rows.append([res.label, "raw itself: burst / alone p50",
                         bc.fmt_ratio(bc.ratio(p(rb, 50), p(a, 50))),
                         bc.fmt_ratio(bc.ratio(p(rb, 95), p(a, 50))), "-"])
    if rows:
        bc.print_table("emberd burst / raw burst (the same N QEMUs, same command line and QMP "
                       "sequence, from N client threads)",
                       ["guests", "op", "p50", "p95", "makespan"], rows)


# ---- big guest --------------------------------------------------------------------------

class BigCycle:
    def __init__(self, cold):
        self.cold = cold
        self.standby = None
        self.standby_internal = None
        self.kind = None
        self.dirtied = None       # QEMU write_bytes since the restore, before the standby
        self.during = None        # emberd + QEMU write_bytes during the standby
        self.state = None
        self.du_delta = None
        self.dev = None
        self.restore = None
        self.restore_internal = None
        self.rd_run = None        # (read_bytes, rchar) when RestoreInstance returned
        self.rd_echo = None       # after one guest shell round trip
        self.echo = None


def big_scenario(d, name, mib, kernel, initrd, args):
    from emberd_fixture import pb
    from guest_shell import linux_cmdline, wait_for_console, GuestShell
    spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=mib, kernel=kernel,
                       initrd=initrd, cmdline=linux_cmdline())
    print("[%s] booting a %d MiB guest..." % (name, mib), flush=True)
    inst = d.create("big-%s" % name, spec, start=True, timeout=900)
    idir = os.path.join(d.data_dir, "instances", inst.id)
    serial = os.path.join(idir, "serial1.sock")
    wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=900)
    mark = "wake-big-%d-%s" % (os.getpid(), name)
    shell_run(serial, "echo %s > /tmp/mark" % mark)
    d.standby(inst.id)  # warm-up: the first standby after boot writes what boot touched
    inst = d.restore(inst.id)
    cycles = []
    try:
        for k in range(args.big_cycles + 1):
            c = BigCycle(cold=(k == args.big_cycles))
            pid = inst.vmm_pid
            w_mark = proc_io(pid).get("write_bytes")
            # A fresh random file each cycle (a copy of a kept one would not fit
            # the small guest's tmpfs, half its RAM, twice).
            shell_run(serial, "rm -f /tmp/dirty; dd if=/dev/urandom of=/tmp/dirty bs=1M "
                      "count=%d 2>/dev/null" % args.dirty_mib, timeout=600)
            w0 = proc_io(pid).get("write_bytes")
            e0 = proc_io(d.proc.pid).get("write_bytes")
            du0 = du_bytes(idir)
            dev0 = bc.disk_written_bytes(idir)
            t0 = bc.now()
            r = d.standby(inst.id, timeout=1800)
            c.standby = bc.now() - t0
            dev1 = bc.disk_written_bytes(idir)
            e1 = proc_io(d.proc.pid).get("write_bytes")
            c.du_delta = du_bytes(idir) - du0
            if r.state != pb.INSTANCE_STATE_STANDBY:
                raise BenchFailure("[%s] standby ended in state %d" % (name, r.state))
            if bc.pid_alive(pid):
                raise BenchFailure("[%s] standby returned with QEMU %d alive" % (name, pid))
            c.standby_internal = secs(r.last_standby_duration)
            c.kind = "diff" if r.last_snapshot_kind == pb.SNAPSHOT_KIND_DIFF else "full"
            if None not in (w_mark, w0):
                c.dirtied = w0 - w_mark
            if None not in (e0, e1, w0):
                c.during = e1 - e0 - w0
            if None not in (dev0, dev1):
                c.dev = dev1 - dev0
            c.state = bc.file_size(os.path.join(idir, "snapshots", "snapshot-latest", "state"))
            if c.cold:
                drop_cache_of(idir)
            t0 = bc.now()
            inst = d.restore(inst.id, timeout=1800)
            c.restore = bc.now() - t0
            io = proc_io(inst.vmm_pid)
            c.rd_run = (io.get("read_bytes"), io.get("rchar"))
            c.restore_internal = secs(inst.last_restore_duration)
            with GuestShell(serial, connect_timeout=120) as sh:
                sh.sync(120)
            c.echo = bc.now() - t0
            io = proc_io(inst.vmm_pid)
            c.rd_echo = (io.get("read_bytes"), io.get("rchar"))
            check_mark(serial, mark, "[%s] guest" % name)
            cycles.append(c)
            print("[%s] %s cycle: standby %s %s ms (%s MiB during), restore %s ms, read %s MiB "
                  "(rchar %s MiB)" % (name, "cold" if c.cold else "warm", c.kind,
                                      bc.ms(c.standby), bc.mib(c.during), bc.ms(c.restore),
                                      bc.mib(c.rd_run[0]), bc.mib(c.rd_run[1])), flush=True)
    finally:
        try:
            d.stop_instance(inst.id, graceful_timeout_s=0)
            d.delete(inst.id)
        except Exception as e:  # noqa: BLE001 (teardown: report, carry on)
            print("note: teardown of %s: %s" % (name, e))
    return cycles


def report_big(big, args):
    p = bc.pct

    def med(cs, f):
        v = [f(c) for c in cs if f(c) is not None]
        return p(v, 50)

    rows = []
    for name, cycles in big.items():
        for cold in (False, True):
            cs = [c for c in cycles if c.cold == cold]
            if not cs:
                continue
            rows.append([name, "cold" if cold else "warm x%d" % len(cs),
                         ",".join(sorted({c.kind for c in cs})),
                         bc.ms(med(cs, lambda c: c.standby)),
                         bc.ms(med(cs, lambda c: c.standby_internal)),
                         bc.ms(med(cs, lambda c: c.restore)),
                         bc.ms(med(cs, lambda c: c.restore_internal)),
                         bc.ms(med(cs, lambda c: c.echo))])
    bc.print_table("Big guest: times (ms, p50 of the cycles; internal = emberd's own). "
                   "cold = the instance's files dropped from the page cache before the restore",
                   ["scenario", "cycles", "kind", "standby", "internal", "restore", "internal",
                    "echo"], rows)

    rows = []
    for name, cycles in big.items():
        cs = [c for c in cycles if not c.cold] or cycles
        rows.append([name, bc.mib(med(cs, lambda c: c.dirtied)),
                     bc.mib(med(cs, lambda c: c.during)), bc.mib(med(cs, lambda c: c.state)),
                     bc.mib(med(cs, lambda c: c.du_delta)), bc.mib(med(cs, lambda c: c.dev))])
    bc.print_table("Big guest: bytes per standby (MiB, p50 of warm cycles). dirtied = QEMU's "
                   "write_bytes from the restore to the standby (RAM-file pages the guest "
                   "dirtied: the base-reuse flush writes them; 0 with anonymous RAM); during = "
                   "emberd's write_bytes delta (which takes in its reaped QEMU's total) less "
                   "QEMU's total before the standby: the state file + emberd's files; "
                   "folder = allocated blocks delta of the instance folder; device = the data "
                   "dir's disk during the standby (system-wide)",
                   ["scenario", "dirtied", "during", "state file", "folder delta", "device"], rows)

    rows = []
    for name, cycles in big.items():
        for cold in (False, True):
            cs = [c for c in cycles if c.cold == cold]
            if not cs:
                continue
            rows.append([name, "cold" if cold else "warm",
                         bc.mib(med(cs, lambda c: c.rd_run[0])),
                         bc.mib(med(cs, lambda c: c.rd_run[1])),
                         bc.mib(med(cs, lambda c: c.rd_echo[0])),
                         bc.mib(med(cs, lambda c: c.rd_echo[1]))])
    bc.print_table("Big guest: what the restore reads (MiB, QEMU's /proc/<pid>/io): read_bytes "
                   "= from storage (page-cache misses), rchar = through read calls; at "
                   "restore-to-running and after one guest shell round trip",
                   ["scenario", "cache", "read_bytes", "rchar", "read_bytes echo",
                    "rchar echo"], rows)

    big_n = "reuse-%d" % args.big_mib
    small_n = "reuse-%d" % args.small_mib
    full_n = "full-%d" % args.big_mib
    rows = []
    for a, b in ((big_n, small_n), (full_n, big_n)):
        if a not in big or b not in big:
            continue
        ca = [c for c in big[a] if not c.cold]
        cb = [c for c in big[b] if not c.cold]
        rows.append(["%s / %s" % (a, b),
                     bc.fmt_ratio(bc.ratio(med(ca, lambda c: c.standby),
                                           med(cb, lambda c: c.standby))),
                     bc.fmt_ratio(bc.ratio(med(ca, lambda c: c.restore),
                                           med(cb, lambda c: c.restore))),
                     bc.fmt_ratio(bc.ratio(med(ca, lambda c: c.during),
                                           med(cb, lambda c: c.during))),
                     bc.fmt_ratio(bc.ratio(med(ca, lambda c: c.du_delta),
                                           med(cb, lambda c: c.du_delta)))])
    bc.print_table("Big guest ratios (warm p50)",
                   ["pair", "standby", "restore", "written during", "folder delta"], rows)


# ---- main --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="burst,big")
    ap.add_argument("--burst", type=int, default=25)
    ap.add_argument("--burst-mib", type=int, default=128)
    ap.add_argument("--singles", type=int, default=5)
    ap.add_argument("--no-fc", dest="fc", action="store_false")
    ap.add_argument("--no-raw", dest="raw", action="store_false")
    ap.add_argument("--big-mib", type=int, default=4096)
    ap.add_argument("--small-mib", type=int, default=256)
    ap.add_argument("--dirty-mib", type=int, default=64)
    ap.add_argument("--big-cycles", type=int, default=2)
    ap.add_argument("--pool-mib", type=int, default=256)
    ap.add_argument("--pool", type=int, default=0)
    ap.add_argument("--guest-dir", default=os.environ.get("EMBER_TEST_GUEST_DIR", ""))
    ap.add_argument("--tiny", default="")
    args = ap.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    for x in parts:
        if x not in ("burst", "big", "pool"):
            ap.error("unknown part %s (burst, big, pool)" % x)
    if args.burst < 1 or args.singles < 1 or args.big_cycles < 1:
        ap.error("--burst, --singles and --big-cycles must be >= 1")
    kernel, initrd = guest_files(args.guest_dir)
    tiny = find_tiny(args.tiny) if args.fc else None
    if args.fc and tiny is None:
        skip("tiny guest not built (EMBER_GUEST_TINY; build target guest_tiny), or pass --no-fc")
    try:
        from emberd_fixture import Emberd
    except Exception as e:  # noqa: BLE001
        skip("the emberd fixture cannot load (EMBERD_BIN / EMBER_PYTHON_DIR): %s" % e)
    accel = os.environ.get("EMBER_QEMU_ACCEL", "tcg")
    print("bench_wake: parts %s; burst %d x %d MiB QEMU%s, %d alone; big %d vs %d MiB, dirty "
          "%d MiB, %d cycles; accel %s, %s, %d CPUs"
          % (",".join(parts), args.burst, args.burst_mib, " + fc fake" if args.fc else "",
             args.singles, args.big_mib, args.small_mib, args.dirty_mib, args.big_cycles, accel,
             subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                            text=True).stdout.split("\n")[0], os.cpu_count()), flush=True)
    log_level = os.environ.get("EMBER_BENCH_LOG_LEVEL", "info")
    # Many small guests on 2 CPUs: raise the admission limits (docs/capacity.md).
    adm = ["--vcpu-overcommit", "64", "--mem-overcommit", "8"]
    t_start = bc.now()
    bursts, big, pool_res = [], {}, None
    daemons = []
    try:
        if "burst" in parts:
            env = {"EMBER_FIRECRACKER_BIN": FAKE_FC} if args.fc else {}
            cfg = {"drivers": {"qemu": {"accel": accel}}}
            if args.pool > 0:
                cfg["warm_pool"] = {"qemu": {"size": args.pool}}
            d = Emberd(config=cfg, args=adm, env=env, log_level=log_level)
            d.warm_pool = args.pool
            daemons.append(d)
            bursts.append(burst_qemu(d, kernel, initrd, args))
            if args.fc:
                bursts.append(burst_fc(d, tiny, args))
        if "big" in parts:
            reuse = Emberd(config={"drivers": {"qemu": {"accel": accel}}}, args=adm,
                           log_level=log_level)
            daemons.append(reuse)
            for mib in (args.big_mib, args.small_mib):
                n = "reuse-%d" % mib
                big[n] = big_scenario(reuse, n, mib, kernel, initrd, args)
            full = Emberd(config={"drivers": {"qemu": {"accel": accel, "base_reuse": False}}},
                          args=adm, log_level=log_level)
            daemons.append(full)
            n = "full-%d" % args.big_mib
            big[n] = big_scenario(full, n, args.big_mib, kernel, initrd, args)
            if any(c.kind != "full" for c in big[n]):
                raise BenchFailure("base_reuse=false gave a %s standby"
                                   % [c.kind for c in big[n]])
        if "pool" in parts:
            pool_res = pool_part(kernel, initrd, args, accel, log_level)
    except (BenchFailure, TimeoutError) as e:
        print("FAIL: %s" % e)
        for d in daemons:
            print("---- emberd log tail (%s) ----\n%s" % (d.root, d.log_tail(30)))
        return 1
    finally:
        for d in daemons:
            d.close()
    if bursts:
        report_burst(bursts, args.burst)
    if big:
        report_big(big, args)
    if pool_res is not None:
        report_pool(pool_res, args)
    print("\nbench_wake: done in %.0f s (figures only; nothing about time is asserted)"
          % (bc.now() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
