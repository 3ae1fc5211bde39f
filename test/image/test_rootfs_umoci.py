#!/usr/bin/python3
"""test_rootfs_umoci.py: a real OCI image, built with umoci from
busybox-static, becomes an ext4 root disk through agent/image (driven by
test_rootfs_tool); the disk is checked with e2fsprogs (debugfs, e2fsck -fn)
without mounting, and the image config resolves to what umoci wrote.

Image: layer 1 = busybox + its applet links + /etc files (one setuid, one
owned by 1000:1000); layer 2 = /etc/motd deleted (a whiteout), /tmp added,
/etc/hostname changed. Config: Entrypoint /bin/sh -c, Cmd "echo hi", Env,
WorkingDir, User set with `umoci config`.

Usage: test_rootfs_umoci.py TEST_ROOTFS_TOOL. Exits 77 (skip) when umoci,
busybox-static or e2fsprogs are missing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def run(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PATH=SBIN),
                       **kw)
    if r.returncode != 0:
        raise SystemExit("FAIL: %s exited %d: %s%s" % (" ".join(args), r.returncode, r.stdout,
                                                       r.stderr))
    return r.stdout


def debugfs(img, cmd):
    return subprocess.run(["debugfs", "-R", cmd, img], capture_output=True, text=True,
                          env=dict(os.environ, PATH=SBIN)).stdout


def ls_entry(img, folder, name):
    """(mode, uid, gid) of name in folder, from `debugfs -R 'ls -l'`; None if absent."""
    for line in debugfs(img, "ls -l " + folder).splitlines():
        f = line.split()
        if len(f) >= 9 and f[-1] == name:
            return int(f[1], 8), int(f[3]), int(f[4])
    return None


def check(cond, what):
    if not cond:
        raise SystemExit("FAIL: " + what)
    print("ok: " + what)


def main():
    tool = sys.argv[1]
    os.environ["PATH"] = SBIN
    for prog, pkg in (("umoci", "umoci"), ("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs"),
                      ("e2fsck", "e2fsprogs")):
        if shutil.which(prog) is None:
            skip("%s not found (Debian package %s)" % (prog, pkg))
    busybox = "/bin/busybox"
    if not os.path.exists(busybox) or b"statically linked" not in subprocess.run(
            ["file", "-L", busybox], capture_output=True).stdout:
        skip("a static /bin/busybox is needed (Debian package busybox-static)")

    tmp = tempfile.mkdtemp(prefix="ember-umoci-")
    try:
        layout = os.path.join(tmp, "oci")
        ref = layout + ":bb"
        run("umoci", "init", "--layout", layout)
        run("umoci", "new", "--image", ref)
        bundle = os.path.join(tmp, "bundle")
        # As root umoci records the files' owners; rootless, it maps ours to 0.
        rootless = [] if os.geteuid() == 0 else ["--rootless"]
        run("umoci", "unpack", *rootless, "--image", ref, bundle)
        root = os.path.join(bundle, "rootfs")
        for d in ("bin", "etc", "home/user"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy(busybox, os.path.join(root, "bin/busybox"))
        os.chmod(os.path.join(root, "bin/busybox"), 0o755)
        for applet in ("sh", "ls", "cat", "echo"):
            os.symlink("busybox", os.path.join(root, "bin", applet))
        with open(os.path.join(root, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        with open(os.path.join(root, "etc/motd"), "w") as f:
            f.write("deleted by layer 2\n")
        with open(os.path.join(root, "etc/hostname"), "w") as f:
            f.write("layer1\n")
        with open(os.path.join(root, "bin/suid"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(root, "bin/suid"), 0o4755)
        with open(os.path.join(root, "home/user/notes"), "w") as f:
            f.write("mine\n")
        if os.geteuid() == 0:
            os.chown(os.path.join(root, "home/user/notes"), 1000, 1000)
        run("umoci", "repack", "--image", ref, bundle)

        shutil.rmtree(bundle)
        run("umoci", "unpack", *rootless, "--image", ref, bundle)
        os.unlink(os.path.join(root, "etc/motd"))
        os.makedirs(os.path.join(root, "tmp"))
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        with open(os.path.join(root, "etc/hostname"), "w") as f:
            f.write("layer2\n")
        run("umoci", "repack", "--image", ref, bundle)
        run("umoci", "config", "--image", ref, "--config.entrypoint", "/bin/sh",
            "--config.entrypoint", "-c", "--config.cmd", "echo hi", "--config.env",
            "GREETING=hello", "--config.workingdir", "/home/user", "--config.user",
            "user:user")

        # index -> manifest -> config + layers, as the store will hand them over.
        blob = lambda d: os.path.join(layout, "blobs", *d.split(":", 1))
        index = json.load(open(os.path.join(layout, "index.json")))
        desc = [m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "bb"][0]
        manifest = json.load(open(blob(desc["digest"])))
        layers = manifest["layers"]
        check(len(layers) == 2, "umoci made 2 layers (%s)" % [l["mediaType"] for l in layers])
        args = [blob(l["digest"]) + "@" + l["mediaType"] for l in layers]

        cache = os.path.join(tmp, "cache")
        out = run(tool, "build", cache, desc["digest"], *args)
        figures = dict(line.split("=", 1) for line in out.split())
        print("figures: " + " ".join("%s=%s" % kv for kv in figures.items()))
        img = figures["path"]
        check(figures["built"] == "1", "built on the first call")
        check(os.path.basename(img) == desc["digest"].replace(":", "-") + ".ext4",
              "cached under the digest")
        out = run(tool, "build", cache, desc["digest"], *args)
        check("built=0" in out.split(), "reused on the second call")
        check(sorted(os.listdir(cache)) == [os.path.basename(img)], "cache holds only the image")

        check(subprocess.run(["e2fsck", "-fn", img], capture_output=True).returncode == 0,
              "e2fsck -fn: clean")
        check(ls_entry(img, "/bin", "busybox") == (0o100755, 0, 0), "busybox 0755 root")
        check(ls_entry(img, "/bin", "suid")[0] == 0o104755, "setuid bit kept")
        st = debugfs(img, "stat /bin/sh")
        check('Fast link dest: "busybox"' in st, "sh -> busybox")
        check(ls_entry(img, "/etc", "motd") is None, "whiteout of layer 2 applied")
        check(ls_entry(img, "/", "tmp")[0] == 0o41777, "/tmp 1777")
        check(debugfs(img, "cat /etc/hostname") == "layer2\n", "upper layer wins")
        if os.geteuid() == 0:
            check(ls_entry(img, "/home/user", "notes")[1:] == (1000, 1000), "owner 1000:1000")
        dump = os.path.join(tmp, "busybox.out")
        run("debugfs", "-R", "dump /bin/busybox " + dump, img)
        check(open(dump, "rb").read() == open(busybox, "rb").read(), "busybox bytes intact")

        cfg = run(tool, "config", blob(manifest["config"]["digest"])).splitlines()
        check([l for l in cfg if l.startswith("argv=")] ==
              ["argv=/bin/sh", "argv=-c", "argv=echo hi"], "argv = Entrypoint + Cmd")
        check("env=GREETING=hello" in cfg, "Env kept")
        check("workdir=/home/user" in cfg and "user=user:user" in cfg, "WorkingDir, User kept")
        cfg = run(tool, "config", blob(manifest["config"]["digest"]), "ls /").splitlines()
        check([l for l in cfg if l.startswith("argv=")] ==
              ["argv=/bin/sh", "argv=-c", "argv=ls /"], "args override Cmd")

        inst = os.path.join(tmp, "instance.ext4")
        out = run(tool, "clone", img, inst)
        print("clone: " + " ".join(out.split()))
        check(subprocess.run(["cmp", img, inst]).returncode == 0, "instance copy identical")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
