#!/usr/bin/python3
"""test_image_api: OCI images through emberd's gRPC API alone (issue 11).

Starts Debian's docker-registry on 127.0.0.1, builds a busybox-static image
with umoci (Entrypoint + Cmd + Env) and pushes it with skopeo, then, through a
real emberd and the real python gRPC client:
  - PullImage streams progress messages (per blob and total bytes) and last
    the Image; GetImage / ListImages show it;
  - CreateInstance with spec.image (no kernel_path: the boot kit) boots under
    QEMU; the entrypoint's output, with the image's env and args, appears on
    the console (Instance.console_log_path); a second instance with overrides
    (entrypoint, args, env, workdir) prints those instead;
  - Standby then Restore of the image instance: the process keeps counting;
  - DeleteImage is FAILED_PRECONDITION while an instance uses the image;
    after DeleteInstance, DeleteImage frees the blobs (the blob folder empties);
  - ImportImage (client streaming) of a docker-archive tar, then boot it;
  - hostile: an image not pulled -> FAILED_PRECONDITION at Create; a
    reference that does not exist -> NOT_FOUND; a registry that accepts and
    never answers -> PullImage ends at its deadline and emberd stays healthy;
    a client that cancels PullImage -> no record, nothing left in images/tmp.
Prints the pull times (cold, cached) and CreateInstance -> first console line.

usage: test_image_api.py BOOTKIT_DIR     (exit 77 when a tool or the kit is missing)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "image"))
from emberd_fixture import Checks, Emberd, pb, skip  # noqa: E402
import grpc  # noqa: E402
from ember.v1 import image_pb2 as ipb  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
IMG = "/ember.v1.ImageService/"
BUSYBOX = "/bin/busybox"


def build_image(work, name="app"):
    """An OCI layout tag `name`: busybox-static at /bin/busybox (+ /bin/sh),
    Entrypoint [/bin/sh, -c, SCRIPT, script], Cmd [one, two], Env GREETING."""
    from registry_util import sh
    lay = os.path.join(work, "oci")
    umoci = ["umoci", "--log", "error"]
    if not os.path.exists(lay):
        sh(*umoci, "init", "--layout", lay)
    sh(*umoci, "new", "--image", lay + ":" + name)
    tree = os.path.join(work, "tree-" + name)
    os.makedirs(os.path.join(tree, "bin"))
    shutil.copy(BUSYBOX, os.path.join(tree, "bin", "busybox"))
    for a in ("sh", "sleep", "echo", "pwd"):
        os.symlink("busybox", os.path.join(tree, "bin", a))
    os.makedirs(os.path.join(tree, "srv"))
    sh(*umoci, "insert", "--image", lay + ":" + name, os.path.join(tree, "bin"), "/bin")
    sh(*umoci, "insert", "--image", lay + ":" + name, os.path.join(tree, "srv"), "/srv")
    script = ('echo "hello $GREETING args=$* pwd=$(pwd)"; i=0; '
              'while true; do echo "tick $i"; i=$((i+1)); sleep 1; done')
    sh(*umoci, "config", "--image", lay + ":" + name,
       "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
       "--config.entrypoint", script, "--config.entrypoint", "script",
       "--config.cmd", "one", "--config.cmd", "two",
       "--config.env", "GREETING=from-image", "--config.workingdir", "/")
    return lay


def pull(d, ref, timeout=300):
    fn = d.channel.unary_stream(IMG + "PullImage", request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=ipb.PullImageProgress.FromString)
    return fn(ipb.PullImageRequest(reference=ref), timeout=timeout)


def img_unary(d, method, req, resp_cls, timeout=60):
    return d.unary(IMG + method, req, resp_cls, timeout)


def wait_console(path, needle, timeout=240, after=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(after)
                data = f.read().decode(errors="replace")
            if needle in data:
                return data
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    return None


def last_tick(path):
    with open(path, "rb") as f:
        data = f.read().decode(errors="replace")
    ticks = [int(l.split()[1]) for l in data.splitlines()
             if l.startswith("tick ") and len(l.split()) == 2 and l.split()[1].isdigit()]
    return ticks[-1] if ticks else -1


def image_spec(ref, **ov):
    s = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=256, image=ref)
    if ov:
        s.image_overrides.CopyFrom(pb.ImageOverrides(**ov))
    return s


def hanging_server():
    """Accepts connections and never answers (a registry that hangs)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns = []

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
    threading.Thread(target=loop, daemon=True).start()
    return srv, conns


def need_image_tools(tools):
    """The boot kit named by argv[1] (returned, absolute), busybox-static and
    the tools; skips (77) naming what is missing."""
    kit = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
    for t in tools:
        if shutil.which(t) is None:
            skip(t + " not installed (Debian package of that name; qemu-system-x86 for QEMU)")
    if not os.path.exists(BUSYBOX):
        skip(BUSYBOX + " missing (Debian busybox-static)")
    for f in ("vmlinux", "initramfs.cpio.gz"):
        if not os.path.exists(os.path.join(kit, f)):
            skip("boot kit %s/%s missing (cmake --build build --target bootkit)" % (kit, f))
    return kit


def main():
    kit = need_image_tools(("docker-registry", "skopeo", "umoci", "qemu-system-x86_64"))
    from registry_util import Registry, push, sh

    work = tempfile.mkdtemp(prefix="ember-imgapi-")
    reg = Registry(work, "reg")
    hang, _conns = hanging_server()
    try:
        lay = build_image(work)
        push(lay, "app", reg.addr + "/ember/app:1")
        archive = os.path.join(work, "app.tar")
        sh("skopeo", "--insecure-policy", "copy", "-q", "oci:%s:app" % lay,
           "docker-archive:%s:ember/imported:1" % archive)
        ref = reg.addr + "/ember/app:1"
        with Emberd(args=["--boot-kit-dir", kit]) as d:
            # ---- pull ------------------------------------------------------
            t0 = time.monotonic()
            msgs = list(pull(d, ref))
            cold = time.monotonic() - t0
            check(len(msgs) >= 2, "PullImage streamed %d messages" % len(msgs))
            check(any(m.phase == "downloading" or m.phase == "committed" for m in msgs[:-1]),
                  "progress messages name blobs being downloaded/committed")
            check(any(m.total > 0 and m.n_blobs >= 2 for m in msgs[:-1]),
                  "progress carries total bytes and the blob count")
            last = msgs[-1]
            check(last.phase == "done" and last.image.id.startswith("sha256:"),
                  "the last message is the Image (%s)" % last.image.id)
            check(ref in last.image.names and last.image.kind == ipb.IMAGE_KIND_OCI,
                  "the Image names the reference, kind OCI")
            t0 = time.monotonic()
            msgs2 = list(pull(d, ref))
            cached = time.monotonic() - t0
            check(msgs2[-1].image.id == last.image.id, "a second pull returns the same image")
            print("figure: PullImage cold %.3f s, cached %.3f s (image %d bytes)"
                  % (cold, cached, last.image.size), flush=True)
            got = img_unary(d, "GetImage", ipb.GetImageRequest(id=ref), ipb.Image)
            check(got.id == last.image.id and len(got.layers) >= 1, "GetImage by name")
            lst = img_unary(d, "ListImages", ipb.ListImagesRequest(), ipb.ListImagesResponse)
            check([i.id for i in lst.images] == [last.image.id], "ListImages lists it")

            # ---- hostile pulls -------------------------------------------
            code, msg = d.call_error(lambda: list(pull(d, reg.addr + "/ember/nope:1", 60)))
            check(code == grpc.StatusCode.NOT_FOUND, "non-existent image: NOT_FOUND (%s)" % msg)
            hang_ref = "127.0.0.1:%d/ember/app:1" % hang.getsockname()[1]
            t0 = time.monotonic()
            code, msg = d.call_error(lambda: list(pull(d, hang_ref, 4)))
            check(code == grpc.StatusCode.DEADLINE_EXCEEDED,
                  "hanging registry: the call ends at its deadline (%s after %.1f s)"
                  % (code, time.monotonic() - t0))
            it = pull(d, hang_ref, 120)
            threading.Timer(1.5, it.cancel).start()
            code, msg = d.call_error(lambda: list(it))
            check(code == grpc.StatusCode.CANCELLED, "a cancelled PullImage ends CANCELLED")
            time.sleep(1.0)
            check(d.health_check().status == 1, "emberd is healthy after the hostile pulls")
            tmp = os.path.join(d.data_dir, "images", "tmp")
            check(not os.path.isdir(tmp) or os.listdir(tmp) == [],
                  "nothing half-written in images/tmp")
            lst = img_unary(d, "ListImages", ipb.ListImagesRequest(), ipb.ListImagesResponse)
            check(len(lst.images) == 1, "no record from the failed pulls")

            # ---- create from an image --------------------------------------
            code, msg = d.call_error(d.create, "nopulled",
                                     image_spec(reg.addr + "/ember/other:1"))
            check(code == grpc.StatusCode.FAILED_PRECONDITION and "pull" in msg,
                  "an image not in the store: FAILED_PRECONDITION (%s)" % msg)
            code, msg = d.call_error(d.create, "ovonly", pb.InstanceSpec(
                hypervisor="qemu", vcpus=1, memory_mib=128,
                image_overrides=pb.ImageOverrides(args=["x"])))
            check(code == grpc.StatusCode.INVALID_ARGUMENT, "overrides without image refused")
            t0 = time.monotonic()
            inst = d.create("app1", image_spec(ref), start=True, timeout=600)
            created = time.monotonic() - t0
            out = wait_console(inst.console_log_path, "tick 0")
            first = time.monotonic() - t0
            check(out is not None, "the entrypoint runs and prints to the console")
            if out is None:
                print(open(inst.console_log_path, errors="replace").read()[-3000:])
            check(out is not None and "hello from-image args=one two pwd=/" in out,
                  "image Env, Cmd as args and WorkingDir honoured")
            print("figure: CreateInstance(start) returned after %.2f s; first console line "
                  "of the entrypoint after %.2f s" % (created, first), flush=True)
            check(inst.spec.image == ref, "Instance.spec.image is the reference")
            # overrides
            inst2 = d.create("app2", image_spec(ref, entrypoint=["/bin/sh", "-c",
                                                                 'echo "ov $GREETING $X $0 $1 $(pwd)"; sleep 1000'],
                                               args=["a0", "a1"], env=["GREETING=over", "X=y"],
                                               workdir="/srv"), start=True, timeout=600)
            out2 = wait_console(inst2.console_log_path, "ov ")
            check(out2 is not None and "ov over y a0 a1 /srv" in out2,
                  "overrides: entrypoint, args, env, workdir honoured")
            d.delete(inst2.id)

            # ---- standby / restore -----------------------------------------
            wait_console(inst.console_log_path, "tick 2")
            before = last_tick(inst.console_log_path)
            d.standby(inst.id)
            check(d.get(inst.id).state == pb.INSTANCE_STATE_STANDBY, "image instance in Standby")
            d.restore(inst.id)
            time.sleep(3)
            deadline = time.monotonic() + 60
            while last_tick(inst.console_log_path) <= before + 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            after = last_tick(inst.console_log_path)
            check(after > before, "after Restore the process keeps counting (%d -> %d)"
                  % (before, after))

            # ---- delete while in use -------------------------------------
            code, msg = d.call_error(img_unary, d, "DeleteImage",
                                     ipb.DeleteImageRequest(id=last.image.id),
                                     ipb.DeleteImageResponse)
            check(code == grpc.StatusCode.FAILED_PRECONDITION and inst.id in msg,
                  "DeleteImage while an instance uses it: FAILED_PRECONDITION (%s)" % msg)
            # restart: pins come back from the records
            d.restart()
            code, msg = d.call_error(img_unary, d, "DeleteImage",
                                     ipb.DeleteImageRequest(id=last.image.id),
                                     ipb.DeleteImageResponse)
            check(code == grpc.StatusCode.FAILED_PRECONDITION,
                  "after an emberd restart the image is still pinned")
            d.delete(inst.id)
            r = img_unary(d, "DeleteImage", ipb.DeleteImageRequest(id=last.image.id),
                          ipb.DeleteImageResponse)
            blobs = os.path.join(d.data_dir, "images", "blobs", "sha256")
            check(r.freed_bytes > 0 and os.listdir(blobs) == [],
                  "DeleteImage after the instance is gone frees every blob (%d bytes)"
                  % r.freed_bytes)
            cache = os.path.join(d.data_dir, "images", "rootfs")
            check(not os.path.isdir(cache) or
                  [f for f in os.listdir(cache) if f.endswith(".ext4")] == [],
                  "and its cached root disk")

            # ---- ImportImage (client streaming) ------------------------------
            def chunks():
                yield ipb.ImportImageRequest(metadata=ipb.ImportImageMetadata(
                    name="imported:1", format=ipb.IMPORT_FORMAT_DOCKER_ARCHIVE))
                with open(archive, "rb") as f:
                    while True:
                        b = f.read(256 << 10)
                        if not b:
                            break
                        yield ipb.ImportImageRequest(chunk=b)
            imp = d.channel.stream_unary(IMG + "ImportImage",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=ipb.Image.FromString)
            image = imp(chunks(), timeout=300)
            check(image.id.startswith("sha256:") and "imported:1" in image.names,
                  "ImportImage of a docker-archive returns the Image")
            code, msg = d.call_error(imp, iter([ipb.ImportImageRequest(chunk=b"x")]), timeout=30)
            check(code == grpc.StatusCode.INVALID_ARGUMENT,
                  "ImportImage without metadata: INVALID_ARGUMENT (%s)" % msg)
            inst3 = d.create("imp1", image_spec("imported:1"), start=True, timeout=600)
            out3 = wait_console(inst3.console_log_path, "tick 0")
            check(out3 is not None and "hello from-image" in out3, "the imported image boots")
            d.delete(inst3.id)

            # ---- emberctl -------------------------------------------------
            ctl = os.environ.get("EMBERCTL_BIN") or os.path.join(
                os.path.dirname(d.binary), "emberctl")

            def run(*args):
                p = subprocess.run([ctl, "--socket", d.socket_path] + list(args),
                                   capture_output=True, text=True, timeout=600)
                return p.returncode, p.stdout + p.stderr
            rc, out = run("pull", ref)
            check(rc == 0 and "pulled " + ref in out and "committed" in out,
                  "emberctl pull (plain lines off a terminal): rc %d" % rc)
            rc, out = run("images")
            check(rc == 0 and ref in out and "imported:1" in out, "emberctl images lists both")
            rc, out = run("import", archive, "--kind", "docker-archive", "--name", "ctl:1")
            check(rc == 0 and "imported" in out, "emberctl import: rc %d %s" % (rc, out[-200:]))
            rc, out = run("create", "ctl1", "--image", "ctl:1", "--env", "A=B", "--arg", "x",
                          "--workdir", "/srv")
            check(rc == 0, "emberctl create --image with overrides: rc %d %s" % (rc, out[-300:]))
            got = d.get("ctl1")
            check(got.spec.image == "ctl:1" and list(got.spec.image_overrides.env) == ["A=B"]
                  and list(got.spec.image_overrides.args) == ["x"]
                  and got.spec.image_overrides.workdir == "/srv",
                  "the overrides reach the Instance")
            rc, out = run("rmi", image.id)
            check(rc == grpc.StatusCode.FAILED_PRECONDITION.value[0],
                  "emberctl rmi of an image in use: exit %d (FAILED_PRECONDITION)" % rc)
            d.delete("ctl1")
            rc, out = run("rmi", image.id)
            check(rc == 0 and "freed" in out, "emberctl rmi after the instance is gone")
    finally:
        hang.close()
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
