#!/usr/bin/python3
"""bench_image.py: pull and first boot of a ~50 MB OCI image through emberd's
API (issue 11). Prints figures; asserts nothing about time.

    test/bench/bench_image.py [--build DIR]      (default ./build)

Starts Debian's docker-registry on 127.0.0.1 (test/image/registry_util.py),
builds with umoci an image of busybox-static + ~48 MB of incompressible data
whose entrypoint prints one line and sleeps, pushes it with skopeo, and on a
real emberd (the build's, with its boot kit) measures:
  - PullImage cold (empty store) and cached (every blob stored);
  - CreateInstance(start) on a cold root disk cache (built now) and the
    entrypoint's first console line, from the call;
  - the same for a second instance (root disk cached: clone only).
Exit 77 when a tool or the boot kit is missing.
"""
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "..", "..")


def main():
    build = os.path.abspath(sys.argv[sys.argv.index("--build") + 1]) if "--build" in sys.argv \
        else os.path.abspath(os.environ.get("EMBER_BUILD_DIR", os.path.join(TOP, "build")))
    os.environ.setdefault("EMBERD_BIN", os.path.join(build, "agent", "emberd"))
    os.environ.setdefault("EMBER_PYTHON_DIR", os.path.join(build, "python"))
    sys.path.insert(0, os.path.join(TOP, "test", "integration"))
    sys.path.insert(0, os.path.join(TOP, "test", "image"))
    kit = os.path.join(build, "bootkit")
    for t in ("docker-registry", "skopeo", "umoci", "qemu-system-x86_64"):
        if shutil.which(t) is None:
            print("SKIP: %s not installed" % t)
            return 77
    if not os.path.exists(os.path.join(kit, "vmlinux")):
        print("SKIP: no boot kit in %s (cmake --build build --target bootkit)" % kit)
        return 77
    from emberd_fixture import Emberd, pb
    from registry_util import Registry, push, sh
    from test_image_api import pull, wait_console
    work = tempfile.mkdtemp(prefix="ember-bench-image-")
    reg = Registry(work, "reg")
    try:
        lay = os.path.join(work, "oci")
        umoci = ["umoci", "--log", "error"]
        sh(*umoci, "init", "--layout", lay)
        sh(*umoci, "new", "--image", lay + ":big")
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "bin"))
        shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
        os.symlink("busybox", os.path.join(tree, "bin", "sh"))
        with open(os.path.join(tree, "big.bin"), "wb") as f:
            f.write(os.urandom(48 << 20))
        sh(*umoci, "insert", "--image", lay + ":big", os.path.join(tree, "bin"), "/bin")
        sh(*umoci, "insert", "--image", lay + ":big", os.path.join(tree, "big.bin"), "/big.bin")
        sh(*umoci, "config", "--image", lay + ":big", "--config.entrypoint", "/bin/sh",
           "--config.entrypoint", "-c", "--config.entrypoint", "echo bench-ready; sleep 1000")
        ref = reg.addr + "/bench/big:1"
        push(lay, "big", ref)
        with Emberd(args=["--boot-kit-dir", kit]) as d:
            t0 = time.monotonic()
            msgs = list(pull(d, ref, 600))
            cold = time.monotonic() - t0
            t0 = time.monotonic()
            list(pull(d, ref, 600))
            cached = time.monotonic() - t0
            size = msgs[-1].image.size
            print("pull cold:   %.3f s  (%.1f MiB, %.1f MiB/s)" % (cold, size / 2**20,
                                                                   size / 2**20 / cold))
            print("pull cached: %.3f s" % cached)
            for name, what in (("b1", "root disk built"), ("b2", "root disk cached")):
                spec = pb.InstanceSpec(hypervisor="qemu", vcpus=1, memory_mib=256, image=ref)
                t0 = time.monotonic()
                inst = d.create(name, spec, start=True, timeout=900)
                created = time.monotonic() - t0
                line = wait_console(inst.console_log_path, "bench-ready", timeout=600)
                first = time.monotonic() - t0
                print("%s (%s): CreateInstance(start) %.2f s, first console line %s" % (
                    name, what, created, "%.2f s" % first if line else "NOT SEEN"))
                d.delete(inst.id)
    finally:
        reg.stop()
        if os.environ.get("EMBER_KEEP_TMP") != "1":
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
