#!/usr/bin/python3
"""bench_fork: ForkInstance of a Running QEMU guest into N clones through emberd,
side by side with the raw VMM doing the same restores, and with the same N
guests booted separately. Prints figures and ratios; never asserts times.

Guest: the Linux test guest (test/guests/linux, TCG; EMBER_QEMU_ACCEL changes
it) with --sizes MiB of RAM. After boot it writes --fill-mib (64) MiB of random
data into its tmpfs and a marker file, so the clones share real guest pages
(page cache of the frozen memory file) and the separately booted guests hold
the same data.

For each size, one source instance runs; for each N of --clones:
  emberd  ForkInstance {id: source, name_prefix, count: N} from the Running
          source. Times: the RPC's wall time (pause, save, memory copy,
          clones made, restores: all clones Running when it returns), its
          snapshot_duration, and per clone Instance.last_restore_duration
          (p50/p95). Every clone must then show the source's marker (guest
          shell round trip). After --settle-s seconds idle: PSS of every
          clone's QEMU (/proc/<pid>/smaps_rollup), summed. Bytes: the fork's
          snapshot (Snapshot.size_bytes from ListSnapshots, and its folder's
          allocated size), emberd's and the source QEMU's write_bytes during
          the RPC (/proc/<pid>/io: bytes they dirtied for storage), the data
          dir device's written sectors during the RPC (/sys/block/<dev>/stat,
          system-wide), and each clone's folder (allocated size).
  raw     no emberd in the loop: the clones are stopped, all but one deleted
          (the last one holds the frozen snapshot), and the script starts N
          QEMUs itself with EXACTLY the command line of emberd's clone (read
          from /proc/<clone pid>/cmdline, clone folder swapped for a folder of
          its own; the same share=off private map of the same frozen memory
          file), and drives the driver's QMP sequence: migrate-set-capabilities
          x-ignore-shared; getfd (SCM_RIGHTS) of the same state file +
          migrate-incoming fd:; poll query-migrate (the driver's 1->20 ms
          schedule); cont; query-status = running. As many at once as emberd
          restores clones at once (--raw-parallel). Times: all-run (first
          spawn to last running) and per clone spawn->running. The same marker
          check, settle and PSS.
  boot    the same spec booted separately (CreateInstance start=true), one
          after the other, each doing the same fill, up to --boot-compare-max
          guests per size; PSS summed at each N reached. Above the cap the
          figure is the measured mean x N, marked "est.".

Ratios printed: emberd/raw (all-run time, restore p50/p95, PSS), and clones
vs separately booted guests (PSS).

Usage:
  test/bench/bench_fork.py [--sizes 256,1024] [--clones 1,5,20]
                           [--boot-compare-max N] [--fill-mib 64] [--settle-s 5]
  (env: EMBER_TEST_GUEST_DIR, EMBERD_BIN, EMBER_PYTHON_DIR, EMBER_QEMU_ACCEL)
Exit: 0 figures printed, 1 a functional failure, 77 SKIP (naming what is missing).
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))

import bench_common as bc  # noqa: E402

# emberd restores a fork's clones FORK_RESTORE_WORKERS (4) at a time, the
# calling thread among them (agent/manager_fork.c).
EMBERD_RESTORES_AT_ONCE = 4


skip, BenchFailure, guest_files = bc.skip, bc.BenchFailure, bc.guest_files


# ---- measurements ---------------------------------------------------------------

def smaps_rollup(pid):
    """{"Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"} in bytes."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def pss_sum(pids):
    """Sums of the smaps_rollup fields over pids; raises BenchFailure if one is gone."""
    tot = {}
    for pid in pids:
        if not bc.pid_alive(pid):
            raise BenchFailure("QEMU pid %d is gone before its memory was measured" % pid)
        for k, v in smaps_rollup(pid).items():
            tot[k] = tot.get(k, 0) + v
    return tot


def mapping_file_pss(pid, path):
    """PSS of the file pages pid maps from path (its VMAs' Pss minus their
    Anonymous: a private mapping's written pages are anonymous and private)."""
    pss = anon = 0
    cur = False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", parts[0]):
                cur = len(parts) >= 6 and parts[5] == path
            elif cur and parts[0] == "Pss:":
                pss += int(parts[1]) * 1024
            elif cur and parts[0] == "Anonymous:":
                anon += int(parts[1]) * 1024
    return pss - anon


def file_cached(path):
    """Bytes of path in the host page cache (util-linux fincore), or None."""
    if shutil.which("fincore") is None:
        return None
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True)
    try:
        return int(r.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def clone_memory(pids, frozen_mem):
    """smaps_rollup sums over pids, plus "Host": the same with the frozen
    memory file's page cache counted once in full instead of as the clones'
    PSS shares of the pages they happen to map (a clone maps a page of the
    file only once its guest touches it after the restore; the rest stays in
    the page cache, shared, unaccounted to any process)."""
    tot = pss_sum(pids)
    cached = file_cached(frozen_mem)
    if cached is not None:
        mapped = sum(mapping_file_pss(pid, frozen_mem) for pid in pids)
        tot["Host"] = tot["Pss"] - mapped + cached
        tot["Frozen_cached"] = cached
    return tot


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


def held_files(pid, argv):
    """emberd hands kernel, initrd and disks to QEMU as inherited descriptors
    (/proc/self/fd/N, docs/host-paths.md); the raw side gets the files they
    hold, by name."""
    held = lambda m: os.readlink("/proc/%d/fd/%s" % (pid, m.group(1)))  # noqa: E731
    return [re.sub(r"/proc/self/fd/(\d+)", held, a) for a in argv]


def read_argv(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return held_files(pid, [a.decode() for a in f.read().split(b"\0") if a])


def shell_run(path, cmd, timeout=180):
    from guest_shell import GuestShell
    with GuestShell(path, connect_timeout=120) as sh:
        out = sh.run(cmd, timeout=timeout, retry=True)
        if sh.last_status != 0:
            raise BenchFailure("guest command %r exited %s: %s" % (cmd, sh.last_status, out))
        return out


def fill_guest(serial, fill_mib, mark):
    shell_run(serial, "dd if=/dev/urandom of=/tmp/fill bs=1M count=%d 2>/dev/null && "
              "echo %s > /tmp/mark && sync" % (fill_mib, mark))


def check_mark(serial, mark, fill_mib, who):
    """The guest's marker and fill are the source's (read through the guest
    shell: one round trip to a running guest)."""
    got = shell_run(serial, "cat /tmp/mark; stat -c %s /tmp/fill").split()
    if got != [mark, str(fill_mib << 20)]:
        raise BenchFailure("%s lost the source's memory: /tmp/mark and fill size %r, "
                           "expected %r" % (who, got, [mark, fill_mib << 20]))


# ---- one size ---------------------------------------------------------------------

class Figures:
    """Everything measured for one (size, N)."""

    def __init__(self, mib, n):
        self.mib = mib
        self.n = n
        self.rpc = None             # s
        self.snapshot = None        # s (ForkInstance's snapshot_duration)
        self.restores = []          # s, emberd's last_restore_duration per clone
        self.pss = None             # dict, summed over the clones
        self.snap_size = None       # Snapshot.size_bytes
        self.snap_du = None         # allocated bytes of the snapshot folder
        self.emberd_wb = None       # emberd's write_bytes during the RPC
        self.source_wb = None       # source QEMU's write_bytes during the RPC
        self.dev_written = None     # the data dir device, during the RPC
        self.clone_du = []          # allocated bytes per clone folder
        self.raw_all = None         # s
        self.raw_restores = []      # s per clone
        self.raw_pss = None
        self.raw_du = []
        self.raw_phases = {}        # name -> [s]
        self.boot_pss = None        # dict, or None
        self.boot_measured = 0      # how many guests were really booted for boot_pss


class RawClone:
    def __init__(self, root, idx, argv, clone_dir, clone_console):
        self.dir = os.path.join(root, "raw-%d" % idx)
        os.makedirs(self.dir)
        self.console = os.path.join(self.dir, "console.log")
        self.serial = os.path.join(self.dir, "serial1.sock")
        self.argv = [a.replace(clone_console, self.console).replace(clone_dir + "/",
                                                                    self.dir + "/")
                     for a in argv]
        self.proc = None
        self.qmp = None
        self.phases = {}

    def restore(self, state_path):
        """The driver's restore_frozen sequence; returns spawn->running seconds."""
        t0 = bc.now()
        with open(os.path.join(self.dir, "qemu.log"), "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        q = self.qmp = bc.Qmp(os.path.join(self.dir, "qmp.sock"), timeout=60, proc=self.proc)
        t1 = bc.now()
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "x-ignore-shared", "state": True}]})
        fd = os.open(state_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            q.cmd("getfd", {"fdname": "bench-in"}, fds=[fd])
        finally:
            os.close(fd)
        q.cmd("migrate-incoming", {"uri": "fd:bench-in"})
        q.migrate_wait()
        t2 = bc.now()
        q.cmd("cont")
        st = q.cmd("query-status")["status"]
        t3 = bc.now()
        if st != "running":
            raise BenchFailure("raw clone %s: QEMU is %s after cont" % (self.dir, st))
        self.phases = {"spawn+qmp": t1 - t0, "incoming": t2 - t1, "cont": t3 - t2}
        return t3 - t0

    def close(self):
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_stopped(d, ids, timeout=60):
    for i in ids:
        d.stop_instance(i, graceful_timeout_s=0)
    deadline = bc.now() + timeout
    while any(d.get(i).state != d.pb.INSTANCE_STATE_STOPPED for i in ids):
        if bc.now() > deadline:
            raise BenchFailure("clones did not stop")
        time.sleep(0.1)


def fork_round(d, src, fig, mark, args, raw_root):
    from emberd_fixture import pb
    n, mib = fig.n, fig.mib
    prefix = "c%d-%d" % (mib, n)
    ewb0 = bc.proc_write_bytes(d.proc.pid)
    swb0 = bc.proc_write_bytes(src.vmm_pid)
    dev0 = bc.disk_written_bytes(d.data_dir)
    t0 = bc.now()
    r = d.fork(src.id, prefix=prefix, count=n, timeout=1800)
    fig.rpc = bc.now() - t0
    dev1 = bc.disk_written_bytes(d.data_dir)
    ewb1 = bc.proc_write_bytes(d.proc.pid)
    swb1 = bc.proc_write_bytes(src.vmm_pid)
    if None not in (ewb0, ewb1):
        fig.emberd_wb = ewb1 - ewb0
    if None not in (swb0, swb1):
        fig.source_wb = swb1 - swb0
    if None not in (dev0, dev1):
        fig.dev_written = dev1 - dev0
    fig.snapshot = r.snapshot_duration.ToMicroseconds() / 1e6
    clones = list(r.instances)
    if len(clones) != n or any(c.state != pb.INSTANCE_STATE_RUNNING for c in clones):
        raise BenchFailure("ForkInstance x%d: %s" % (n, [(c.name, c.state) for c in clones]))
    fig.restores = [c.last_restore_duration.ToMicroseconds() / 1e6 for c in clones]
    snaps = [s for s in d.list_snapshots() if s.id == r.snapshot_id]
    if snaps:
        fig.snap_size = snaps[0].size_bytes
    fig.snap_du = du_bytes(os.path.join(d.data_dir, "snapshots", r.snapshot_id))
    print("[%d MiB x %d] emberd: ForkInstance %.2f s (snapshot %.2f s); restores p50 %s ms"
          % (mib, n, fig.rpc, fig.snapshot, bc.ms(bc.pct(fig.restores, 50))), flush=True)

    for c in clones:
        serial = os.path.join(d.data_dir, "instances", c.id, "serial1.sock")
        check_mark(serial, mark, args.fill_mib, "emberd clone " + c.name)
    time.sleep(args.settle_s)
    # The raw side: the first clone's command line, its folder swapped.
    first = clones[0]
    argv = read_argv(first.vmm_pid)
    clone_dir = os.path.join(d.data_dir, "instances", first.id)
    memarg = [a for a in argv if a.startswith("memory-backend-file,")]
    if not memarg or "share=off" not in memarg[0] or "-incoming" not in argv:
        raise BenchFailure("the clone's QEMU is not a private-map incoming QEMU: %s" % argv)
    frozen_mem = re.search(r"mem-path=([^,]+)", memarg[0]).group(1)
    state = os.path.join(os.path.dirname(frozen_mem), "state")
    if not os.path.isfile(state):
        raise BenchFailure("no state file next to the frozen memory %s" % frozen_mem)
    fig.pss = clone_memory([c.vmm_pid for c in clones], frozen_mem)
    fig.clone_du = [du_bytes(os.path.join(d.data_dir, "instances", c.id)) for c in clones]
    if n == min(args.clones):
        print("[%d MiB] raw QEMU command line (emberd's clone, folder swapped):\n  %s"
              % (mib, " ".join(argv).replace(clone_dir + "/", "<raw>/")), flush=True)

    # Stop every emberd clone; keep the first (stopped) so the frozen snapshot stays.
    wait_stopped(d, [c.id for c in clones])
    for c in clones[1:]:
        d.delete(c.id)
    raws = [RawClone(raw_root, i, argv, clone_dir, first.console_log_path) for i in range(n)]
    try:
        t0 = bc.now()
        with concurrent.futures.ThreadPoolExecutor(args.raw_parallel) as ex:
            fig.raw_restores = list(ex.map(lambda rc: rc.restore(state), raws))
        fig.raw_all = bc.now() - t0
        for rc in raws:
            for k, v in rc.phases.items():
                fig.raw_phases.setdefault(k, []).append(v)
        print("[%d MiB x %d] raw: all running %.2f s; restores p50 %s ms"
              % (mib, n, fig.raw_all, bc.ms(bc.pct(fig.raw_restores, 50))), flush=True)
        for i, rc in enumerate(raws):
            check_mark(rc.serial, mark, args.fill_mib, "raw clone %d" % i)
        time.sleep(args.settle_s)
        fig.raw_pss = clone_memory([rc.proc.pid for rc in raws], frozen_mem)
        fig.raw_du = [du_bytes(rc.dir) for rc in raws]
    finally:
        for rc in raws:
            rc.close()
    d.delete(first.id)
    left = [s.id for s in d.list_snapshots() if s.id == r.snapshot_id]
    if left:
        raise BenchFailure("the fork's snapshot %s outlived its last clone" % left)


def boot_round(d, spec, mib, counts, cap, mark, args, figs):
    """Boots min(max(counts), cap) guests one after another; PSS at each N."""
    from guest_shell import wait_for_console
    want = min(max(counts), cap)
    ids, pids = [], []
    measured = {}
    try:
        for k in range(1, want + 1):
            t0 = bc.now()
            inst = d.create("boot%d-%d" % (mib, k), spec, start=True, timeout=600)
            ids.append(inst.id)
            pids.append(inst.vmm_pid)
            wait_for_console(inst.console_log_path, "EMBER-GUEST-READY", timeout=600)
            serial = os.path.join(d.data_dir, "instances", inst.id, "serial1.sock")
            fill_guest(serial, args.fill_mib, mark)
            print("[%d MiB] booted guest %d/%d and filled it in %.1f s"
                  % (mib, k, want, bc.now() - t0), flush=True)
            if k in counts:
                time.sleep(args.settle_s)
                measured[k] = pss_sum(pids)
        if want not in measured and want > 0:
            time.sleep(args.settle_s)
            measured[want] = pss_sum(pids)
    finally:
        for i in ids:
            try:
                d.stop_instance(i, graceful_timeout_s=0)
                d.delete(i)
            except Exception as e:  # noqa: BLE001 (teardown: report, carry on)
                print("note: teardown of %s: %s" % (i, e))
    for n in counts:
        f = figs[(mib, n)]
        if n in measured:
            f.boot_pss, f.boot_measured = measured[n], n
        elif want in measured:
            f.boot_pss = {k: v * n // want for k, v in measured[want].items()}
            f.boot_measured = want


def run_size(d, kernel, initrd, mib, args, figs):
    from guest_shell import linux_cmdline, wait_for_console
    spec = d.make_spec(hypervisor="qemu", vcpus=1, memory_mib=mib, kernel=kernel,
                       initrd=initrd, cmdline=linux_cmdline())
    mark = "bench-fork-%d-%d" % (os.getpid(), mib)
    print("[%d MiB] booting the source and filling %d MiB of its tmpfs..."
          % (mib, args.fill_mib), flush=True)
    src = d.create("src%d" % mib, spec, start=True, timeout=600)
    wait_for_console(src.console_log_path, "EMBER-GUEST-READY", timeout=600)
    fill_guest(os.path.join(d.data_dir, "instances", src.id, "serial1.sock"), args.fill_mib, mark)
    src = d.get(src.id)
    raw_root = tempfile.mkdtemp(prefix="ember-bench-fork-raw-", dir=d.root)
    try:
        for n in args.clones:
            fig = figs[(mib, n)] = Figures(mib, n)
            fork_round(d, src, fig, mark, args, os.path.join(raw_root, "n%d" % n))
    finally:
        if os.environ.get("EMBER_KEEP_TMP") is None:
            shutil.rmtree(raw_root, ignore_errors=True)
    d.stop_instance(src.id, graceful_timeout_s=0)
    d.delete(src.id)
    if args.boot_compare_max > 0:
        boot_round(d, spec, mib, args.clones, args.boot_compare_max, mark, args, figs)


# ---- report ---------------------------------------------------------------------------

def report(figs, args):
    p = bc.pct
    keys = sorted(figs)
    rows = []
    for k in keys:
        f = figs[k]
        rows.append(["%d" % f.mib, "%d" % f.n, bc.ms(f.rpc), bc.ms(f.snapshot),
                     bc.ms(None if f.rpc is None else f.rpc - f.snapshot),
                     bc.ms(p(f.restores, 50)), bc.ms(p(f.restores, 95)),
                     bc.ms(f.raw_all), bc.ms(p(f.raw_restores, 50)),
                     bc.ms(p(f.raw_restores, 95))])
    bc.print_table("Time until all clones run (ms). emberd: ForkInstance wall time, its "
                   "snapshot_duration, the rest (clones made + restored), per-clone "
                   "last_restore_duration. raw: first spawn to last `running` (%d at once, "
                   "as emberd), per clone spawn -> running" % args.raw_parallel,
                   ["MiB", "N", "emberd RPC", "snapshot", "RPC-snapshot", "restore p50",
                    "p95", "raw all-run", "raw p50", "raw p95"], rows)

    rows = []
    for k in keys:
        f = figs[k]
        rows.append(["%d" % f.mib, "%d" % f.n,
                     bc.fmt_ratio(bc.ratio(f.rpc, f.raw_all)),
                     bc.fmt_ratio(bc.ratio(None if f.rpc is None else f.rpc - f.snapshot,
                                           f.raw_all)),
                     bc.fmt_ratio(bc.ratio(p(f.restores, 50), p(f.raw_restores, 50))),
                     bc.fmt_ratio(bc.ratio(p(f.restores, 95), p(f.raw_restores, 95))),
                     bc.fmt_ratio(bc.ratio(f.pss and f.pss["Pss"],
                                           f.raw_pss and f.raw_pss["Pss"])),
                     bc.fmt_ratio(bc.ratio(f.pss and f.pss.get("Host"),
                                           f.raw_pss and f.raw_pss.get("Host")))])
    bc.print_table("Ratios emberd/raw (the raw side restores from emberd's snapshot: it does "
                   "not pay for the snapshot)",
                   ["MiB", "N", "RPC/all-run", "(RPC-snapshot)/all-run", "restore p50",
                    "restore p95", "PSS", "host"], rows)

    def g(dct, key):
        return None if dct is None else dct.get(key)

    rows = []
    for k in keys:
        f = figs[k]
        boot_note = "-"
        if f.boot_pss is not None:
            boot_note = ("measured" if f.boot_measured == f.n
                         else "est. %d x mean of %d" % (f.n, f.boot_measured))
        rows.append(["%d" % f.mib, "%d" % f.n,
                     bc.mib(g(f.pss, "Pss")), bc.mib(g(f.pss, "Pss_Anon")),
                     bc.mib(g(f.pss, "Pss_File")), bc.mib(g(f.pss, "Host")),
                     bc.mib(g(f.raw_pss, "Pss")), bc.mib(g(f.raw_pss, "Pss_Anon")),
                     bc.mib(g(f.raw_pss, "Host")), bc.mib(g(f.pss, "Frozen_cached")),
                     bc.mib(g(f.boot_pss, "Pss")), bc.mib(g(f.boot_pss, "Pss_Anon")),
                     boot_note])
    bc.print_table("Host memory of the N idle guests' QEMUs, summed (MiB, /proc/<pid>/"
                   "smaps_rollup after %.0f s idle): emberd clones, raw clones, the same N "
                   "guests booted separately (each with the same %d MiB fill). host = PSS with "
                   "the frozen memory file's page cache (cached) counted once in full instead "
                   "of the clones' shares of the pages they have mapped since the restore"
                   % (args.settle_s, args.fill_mib),
                   ["MiB", "N", "emberd PSS", "anon", "file", "host", "raw PSS", "anon", "host",
                    "cached", "boot PSS", "anon", "boot"], rows)

    rows = []
    for k in keys:
        f = figs[k]
        rows.append(["%d" % f.mib, "%d" % f.n,
                     bc.mib(bc.ratio(g(f.pss, "Pss"), f.n)),
                     bc.mib(bc.ratio(g(f.pss, "Host"), f.n)),
                     bc.mib(bc.ratio(g(f.raw_pss, "Pss"), f.n)),
                     bc.mib(bc.ratio(g(f.boot_pss, "Pss"), f.n)),
                     bc.fmt_ratio(bc.ratio(g(f.pss, "Pss"), g(f.boot_pss, "Pss"))),
                     bc.fmt_ratio(bc.ratio(g(f.pss, "Host"), g(f.boot_pss, "Pss")))])
    bc.print_table("Per guest (MiB) and emberd clones vs the same guests booted separately",
                   ["MiB", "N", "clone PSS", "clone host", "raw clone PSS", "booted PSS",
                    "clones/booted PSS", "clones host/booted"], rows)

    rows = []
    for k in keys:
        f = figs[k]
        rows.append(["%d" % f.mib, "%d" % f.n, bc.mib(f.snap_size), bc.mib(f.snap_du),
                     bc.mib(f.emberd_wb), bc.mib(f.source_wb), bc.mib(f.dev_written),
                     bc.mib(p(f.clone_du, 50)), bc.mib(p(f.raw_du, 50))])
    bc.print_table("Bytes written per fork (MiB): the snapshot (Snapshot.size_bytes; its "
                   "folder, allocated); write_bytes of emberd and of the source QEMU during "
                   "the RPC; the data dir's device during the RPC (system-wide; writeback "
                   "may come later); one clone's folder (allocated, p50), emberd and raw",
                   ["MiB", "N", "snapshot", "snap folder", "emberd wb", "source wb",
                    "device", "clone folder", "raw folder"], rows)

    rows = []
    for k in keys:
        f = figs[k]
        rows.append(["%d" % f.mib, "%d" % f.n] +
                    ["%s %s" % (ph, bc.ms(p(v, 50))) for ph, v in f.raw_phases.items()])
    width = max((len(r) for r in rows), default=2)
    rows = [r + [""] * (width - len(r)) for r in rows]
    bc.print_table("Raw side phases per clone, p50 ms", ["MiB", "N"] + ["phase"] * (width - 2),
                   rows)


def int_list(s):
    try:
        out = sorted({int(x) for x in s.split(",") if x})
    except ValueError:
        raise argparse.ArgumentTypeError("a comma separated list of integers: %r" % s)
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError("positive integers: %r" % s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int_list, default=[256, 1024], help="guest RAM, MiB")
    ap.add_argument("--clones", type=int_list, default=[1, 5, 20], help="clones per fork")
    ap.add_argument("--boot-compare-max", type=int, default=20,
                    help="boot at most this many guests separately per size (0: none); "
                         "above it the PSS is estimated from their mean")
    ap.add_argument("--fill-mib", type=int, default=64)
    ap.add_argument("--settle-s", type=float, default=5.0)
    ap.add_argument("--raw-parallel", type=int, default=EMBERD_RESTORES_AT_ONCE,
                    help="raw restores at once (default: as many as emberd runs at once)")
    ap.add_argument("--guest-dir", default=os.environ.get("EMBER_TEST_GUEST_DIR", ""))
    args = ap.parse_args()
    if args.clones[-1] > 64:
        ap.error("ForkInstance makes at most 64 clones")
    kernel, initrd = guest_files(args.guest_dir)
    try:
        from emberd_fixture import Emberd
    except Exception as e:  # noqa: BLE001
        skip("the emberd fixture cannot load (EMBERD_BIN / EMBER_PYTHON_DIR): %s" % e)
    accel = os.environ.get("EMBER_QEMU_ACCEL", "tcg")
    print("bench_fork: sizes %s MiB, clones %s, boot compare up to %d, fill %d MiB, accel %s, "
          "%s, %d CPUs" % (",".join(map(str, args.sizes)), ",".join(map(str, args.clones)),
                          args.boot_compare_max, args.fill_mib, accel,
                          subprocess.run(["qemu-system-x86_64", "--version"],
                                         capture_output=True, text=True).stdout.split("\n")[0],
                          os.cpu_count()), flush=True)
    # Many idle guests on few CPUs and little RAM each: raise the admission
    # limits (docs/capacity.md), which would refuse 20 x 1 GiB + 20 boots.
    cfg = {"drivers": {"qemu": {"accel": accel}}}
    figs = {}
    t_start = bc.now()
    d = Emberd(config=cfg, args=["--vcpu-overcommit", "64", "--mem-overcommit", "8"],
               log_level=os.environ.get("EMBER_BENCH_LOG_LEVEL", "info"))
    from emberd_fixture import pb
    d.pb = pb
    try:
        for mib in args.sizes:
            run_size(d, kernel, initrd, mib, args, figs)
    except BenchFailure as e:
        print("FAIL: %s" % e)
        print(d.log_tail(40))
        return 1
    finally:
        d.close()
    report(figs, args)
    print("\nbench_fork: done in %.0f s (figures only; nothing about time is asserted)"
          % (bc.now() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
