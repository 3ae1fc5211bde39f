#!/usr/bin/python3
"""test_readme_commands.py: every command shown in the code blocks of README.md
and deploy/README.md, and the commands deploy/quickstart.sh prints, runs as
written against a real emberd started here.

How each line runs:
- Lines are taken from fenced code blocks (``` ... ```), joined at a trailing
  backslash; blank and comment-only lines are not commands.
- A line that only assigns shell variables (`S=/var/lib/ember/emberd.sock`,
  `K=/srv/vmlinux ...`) is where the doc lets the reader name their own
  paths: the test gives those variables its own values (the socket of its
  emberd, the built test guest, temp disk images) and fails on a variable it
  does not know.
- Every other line runs with `/bin/sh -c LINE`, exactly as written, in a temp
  folder, with emberctl and emberd of the build first on PATH and
  EMBER_SOCKET naming the test's emberd (emberctl's documented variable).
  It must exit 0.
- grpcurl: when a grpcurl binary is on PATH it runs. Otherwise a `grpcurl`
  shim on PATH runs test/integration/grpcurl_reflect.py, which parses the
  words the shell passed with grpcurl's own flag grammar (flags before the
  address, -plaintext/-unix booleans, -d with a value; "Too many arguments."
  as grpcurl says) and performs the same call through server reflection; the
  test prints that grpcurl itself was absent.
- Lines that stream until Ctrl-C (`emberctl watch` without --count) run for a
  few seconds, must still be running, and are ended with SIGINT.
- Lines a test cannot or must not run are matched by the ALLOWED list below,
  each with its reason; lines needing what this host lacks (kubectl, a podman
  base image) are skipped with a message. A line that matches nothing and
  fails, fails the test: so does a doc line the test neither runs nor lists.

QEMU runs with TCG (the guest's kernel and initramfs come from the build's
test guest), 256 MiB guests, one doc at a time.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpcurl_reflect as gr
    from emberd_fixture import Emberd
except Exception as e:  # noqa
    print("SKIP: python3-grpcio / python3-protobuf or the generated messages are missing: %s" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
FAILS = []

# Lines the test does not run, and why. (regex on the line, reason)
ALLOWED = [
    (r"^deploy/quickstart\.sh\b",
     "runs in its own test, deploy_quickstart (test/deploy/test_quickstart.sh)"),
    (r"^test/run-tests\.sh\b", "is the whole test suite, this test included"),
    (r"^install -m ",
     "installs into the host's /usr/bin and /etc/systemd; the unit is checked by "
     "test/deploy/check_systemd.sh"),
    (r"^systemctl ",
     "reloads and starts a system service on the host; the unit is checked by "
     "test/deploy/check_systemd.sh"),
    (r"^mkdir -p /run/ember && chown ",
     "changes the host's /run for the container; test/deploy/image_smoke.sh does it in its own "
     "folder"),
    (r"^ctest ", "runs other ctest tests, which ctest itself runs and reports"),
]

# Variables the docs let the reader set; the values are filled in main().
VARS = {}


def check(ok, what):
    if ok and not what:
        return
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    sys.stdout.flush()
    if not ok:
        FAILS.append(what)


# First words that make a line a command. A block not marked ```sh holding
# one fails the test, so no command hides in a plain block.
COMMAND_WORDS = {"emberctl", "emberd", "grpcurl", "podman", "docker", "kubectl", "systemctl",
                 "ctest", "cmake", "make", "install", "mkdir", "sudo", "apt-get", "curl", "sh",
                 "python3", "/usr/bin/python3"}


def code_lines(path):
    """[(line number, command)] of the ```sh code blocks of a markdown file.
    Other blocks (a folder tree, sample output) are not commands; one that
    looks like a command is reported as a failure."""
    out = []
    inside = False
    shell = False
    pending, start = "", 0
    for n, raw in enumerate(open(path, encoding="utf-8"), 1):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("```"):
            inside = not inside
            shell = inside and line.strip()[3:].strip() in ("sh", "shell", "console", "bash")
            continue
        if not inside:
            continue
        if not shell:
            words = line.split()
            first = words[0] if words else ""
            exe = os.path.join(TOP, first)
            looks = first in COMMAND_WORDS or (
                "/" in first and os.path.isfile(exe) and os.access(exe, os.X_OK))
            if looks:
                check(False, "%s:%d: a command outside a ```sh block (not run): %s"
                      % (os.path.relpath(path, TOP), n, line.strip()))
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        cmd = (pending + line).strip()
        pending = ""
        if cmd and not cmd.startswith("#"):
            out.append((start, cmd))
    return out


def quickstart_lines(path):
    """The commands deploy/quickstart.sh prints at its end (its here-doc)."""
    out = []
    inside = False
    for n, raw in enumerate(open(path, encoding="utf-8"), 1):
        if raw.startswith("cat <<MSG"):
            inside = True
            continue
        if inside and raw.startswith("MSG"):
            break
        s = raw.strip()
        if inside and (s.startswith("$ctl ") or s.startswith("grpcurl ")):
            out.append((n, s))
    return out


def is_assignment(cmd):
    words = shlex.split(cmd, comments=True)
    return bool(words) and all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) for w in words)


def streams(cmd):
    w = shlex.split(cmd, comments=True)
    return len(w) >= 2 and os.path.basename(w[0]) in ("emberctl", "$ctl") and "watch" in w \
        and "--count" not in w


def run_line(where, cmd, env, cwd, needs):
    for rx, why in ALLOWED:
        if re.search(rx, cmd):
            print("not run %s: %s\n         reason: %s" % (where, cmd, why))
            return
    if is_assignment(cmd):
        names = [w.split("=", 1)[0] for w in shlex.split(cmd, comments=True)]
        unknown = [v for v in names if v not in VARS]
        check(not unknown, "%s: %s: variables set by the test instead: %s%s"
              % (where, cmd, ", ".join("%s=%s" % (v, VARS[v]) for v in names if v in VARS),
                 (" UNKNOWN: %s" % unknown) if unknown else ""))
        for v in names:
            if v in VARS:
                env[v] = VARS[v]
        return
    for rx, test, why in needs:
        if re.search(rx, cmd) and not test():
            print("skipped %s: %s\n         (%s)" % (where, cmd, why))
            return
    # Lines that name files of the checkout (deploy/..., test/...) run where
    # the docs assume, at its top; the others in the test's temp folder.
    if re.search(r"(^|\s)(deploy|test)/", cmd):
        cwd = TOP
    t = time.monotonic()
    if streams(cmd):
        p = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(3)
        alive = p.poll() is None
        if alive:
            os.killpg(p.pid, signal.SIGINT)
        try:
            out = p.communicate(timeout=10)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out = p.communicate()[0].decode(errors="replace")
            alive = False
        check(alive, "%s: %s  (streamed until SIGINT, as Ctrl-C ends it)%s"
              % (where, cmd, "" if alive else "\n" + out))
        return
    p = subprocess.run(["/bin/sh", "-c", cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    out = p.stdout.decode(errors="replace")
    emulated = "grpcurl not installed" in out
    check(p.returncode == 0, "%s: %s  (exit %d, %.1f s%s)%s"
          % (where, cmd, p.returncode, time.monotonic() - t,
             "; grpcurl absent: emulated through reflection" if emulated else "",
             "" if p.returncode == 0 else "\n" + out[-2000:]))


def broken_grpcurl_form_rejected():
    """The form the docs had (-d after the address) is what grpcurl refuses."""
    try:
        gr.parse_grpcurl(shlex.split(
            "-plaintext -unix /s -d '{\"id\":\"web\"}' ember.v1.InstanceService/StandbyInstance"))
        check(False, "grpcurl grammar: -d after the address must be 'Too many arguments.'")
    except gr.GrpcurlUsage as e:
        check(str(e) == "Too many arguments.", "grpcurl grammar rejects -d after the address: %s" % e)
    a = gr.parse_grpcurl(shlex.split(
        "-plaintext -unix -d '{\"id\":\"web\"}' /s ember.v1.InstanceService/StandbyInstance"))
    check(a["address"] == "/s" and a["flags"]["d"] == '{"id":"web"}' and a["verb"] == "invoke",
          "grpcurl grammar accepts flags before the address: %s" % a)


def main():
    guest = os.environ.get("EMBER_TEST_GUEST_DIR") or os.path.join(TOP, "build", "guests", "linux")
    kernel, initrd = os.path.join(guest, "vmlinux"), os.path.join(guest, "initramfs.cpio.gz")
    if not (os.path.exists(kernel) and os.path.exists(initrd)):
        print("SKIP: Linux test guest not built (%s; build target guest_linux)" % guest)
        return 77
    if shutil.which("qemu-system-x86_64") is None:
        print("SKIP: qemu-system-x86_64 not installed")
        return 77
    bindirs = [os.path.dirname(os.path.abspath(os.environ[v])) for v in ("EMBERCTL_BIN", "EMBERD_BIN")
               if os.environ.get(v)]
    if not bindirs:
        bindirs = [os.path.join(TOP, "build", "agent")]
    if not os.access(os.path.join(bindirs[0], "emberctl"), os.X_OK):
        print("SKIP: emberctl not built (EMBERCTL_BIN)")
        return 77

    broken_grpcurl_form_rejected()
    work = tempfile.mkdtemp(prefix="ember-readme-")
    shim = os.path.join(work, "bin")
    os.makedirs(shim)
    real_grpcurl = shutil.which("grpcurl")
    if real_grpcurl:
        print("grpcurl found at %s: grpcurl lines run with it" % real_grpcurl)
    else:
        print("grpcurl is not installed here: grpcurl lines run as written through a shim that "
              "parses them with grpcurl's flag grammar and calls emberd through server reflection "
              "(test/integration/grpcurl_reflect.py)")
        with open(os.path.join(shim, "grpcurl"), "w") as f:
            f.write("#!/bin/sh\nexec /usr/bin/python3 %s \"$@\"\n"
                    % shlex.quote(os.path.join(HERE, "grpcurl_reflect.py")))
        os.chmod(os.path.join(shim, "grpcurl"), 0o755)
    disk = os.path.join(work, "web-1.img")
    seed = os.path.join(work, "seed.img")
    for p in (disk, seed):
        with open(p, "wb") as f:
            f.truncate(8 << 20)
    VARS.update({"K": kernel, "I": initrd, "D": disk, "SEED": seed})
    with open(os.path.join(work, "web-2.json"), "w") as f:
        f.write('{"name": "web-2", "spec": {"hypervisor": "qemu", "vcpus": 1, "memoryMib": "128",'
                ' "kernelPath": "%s", "initrdPath": "%s", "cmdline": "console=ttyS0"}}\n'
                % (kernel, initrd))

    podman = shutil.which("podman")
    netns_ok = os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter", "ip"))

    def podman_has(image):
        return lambda: podman is not None and subprocess.run(
            [podman, "image", "exists", image], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0

    def container_up():
        return podman is not None and subprocess.run(
            [podman, "container", "exists", "emberd"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0

    needs = [
        (r"^podman build ", podman_has("debian:bookworm-slim"),
         "the base image debian:bookworm-slim is not in podman's storage and no registry is "
         "reachable; test/deploy/image_smoke.sh builds this Containerfile from a debootstrap base"),
        (r"^podman run ", podman_has("ember:0.1.0"),
         "no ember:0.1.0 image (its build above was skipped); test/deploy/image_smoke.sh runs it"),
        (r"/run/ember/emberd\.sock|^podman exec ", container_up,
         "no emberd container running (see above); test/deploy/image_smoke.sh checks emberctl "
         "from the host and inside"),
        (r"^kubectl ", lambda: shutil.which("kubectl") is not None and subprocess.run(
            ["kubectl", "cluster-info"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0,
         "no kubectl/cluster here; the manifest is checked offline by "
         "test/deploy/validate_manifests.sh"),
        (r"--tap ", lambda: netns_ok,
         "a TAP device needs root and unshare/nsenter/ip (util-linux, iproute2) to be made "
         "in a network namespace of the test's own"),
    ]

    docs = [("README.md", code_lines(os.path.join(TOP, "README.md"))),
            ("deploy/README.md", code_lines(os.path.join(TOP, "deploy", "README.md"))),
            ("deploy/quickstart.sh", quickstart_lines(os.path.join(TOP, "deploy",
                                                                    "quickstart.sh")))]
    for doc, lines in docs:
        check(len(lines) > 0, "%s: %d command lines" % (doc, len(lines)))
        # One emberd per doc, in its own network namespace when root (the
        # TAP device a doc names is created there, never on the host).
        d = NetnsEmberd(config={"drivers": {"qemu": {"accel": "tcg"}}},
                        netns=netns_ok)
        try:
            if d.netns:
                subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % d.proc.pid, "ip", "tuntap",
                                "add", "dev", "tap-web1", "mode", "tap"], check=True)
            env = dict(os.environ)
            env["PATH"] = os.pathsep.join([shim] + bindirs + [env.get("PATH", "/usr/bin:/bin")])
            env["EMBER_SOCKET"] = d.socket_path
            VARS["S"] = d.socket_path
            env["ctl"] = os.path.join(bindirs[0], "emberctl")
            env["sock"] = d.socket_path
            if doc == "deploy/quickstart.sh":
                # The guest the quickstart creates (as it does before printing).
                subprocess.run([env["ctl"], "create", "demo", "--vcpus", "1", "--memory-mib", "256",
                                "--kernel", kernel, "--initrd", initrd, "--cmdline",
                                "console=ttyS0", "--start"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
            for n, cmd in lines:
                run_line("%s:%d" % (doc, n), cmd, env, work, needs)
        finally:
            rc = d.stop()
            check(rc == 0, "%s: emberd exit status %s" % (doc, rc))
            d.close()
    shutil.rmtree(work, ignore_errors=True)
    print("%s (%d failures)" % ("FAIL" if FAILS else "PASS", len(FAILS)))
    for f in FAILS:
        print("  failed: %s" % f.splitlines()[0])
    return 1 if FAILS else 0


class NetnsEmberd(Emberd):
    """emberd (and so its VMMs) in a new network namespace when netns is set."""

    def __init__(self, netns=False, **kw):
        self.netns = netns
        super().__init__(**kw)

    def command(self):
        cmd = super().command()
        return (["unshare", "--net", "--"] + cmd) if self.netns else cmd


if __name__ == "__main__":
    sys.exit(main())
