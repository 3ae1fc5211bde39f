#!/usr/bin/python3
"""Pulls from Debian's real docker-registry (agent/image via img_tool).

Starts docker-registry on 127.0.0.1 (free port, storage in a temp dir), builds
test images from busybox-static with umoci (two images sharing the busybox
layer, an arm64 variant, a ~50 MB image) and pushes them with skopeo; a
multi-arch index is PUT through the registry API. Checks: a shared layer is
fetched once (across two pulls, and across two parallel pulls), the index
resolves to linux/amd64, delete + GC free exactly the unshared blobs, delete of
an image in use is refused, docker-archive and OCI-layout tars import; a
second registry with TLS (self-signed CA) and Basic auth (htpasswd -B) needs
the CA and the credentials. Prints the pull time of the ~50 MB image, cold and
with every layer cached.

usage: test_registry_pull.py IMG_TOOL      (exit 77 when a tool is missing)
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry_util import Registry, free_port, push, sh  # noqa: E402,F401
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from checks import Checks  # noqa: E402

IMG_TOOL = os.path.abspath(sys.argv[1])
CHECKS = Checks()
check = CHECKS.check
NEEDED = ["docker-registry", "skopeo", "umoci", "openssl", "htpasswd"]


def tool(*args, timeout=300):
    p = subprocess.run([IMG_TOOL] + list(args), capture_output=True, text=True, timeout=timeout)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, {"ok": False, "code": "?", "message": p.stdout + p.stderr}


def build_images(work):
    """OCI layout with tags: base (busybox), app1/app2 (base + one file each),
    arm (app1 marked arm64), big (base + ~48 MB of incompressible data)."""
    lay = os.path.join(work, "oci")
    umoci = ["umoci", "--log", "error"]
    sh(*umoci, "init", "--layout", lay)
    sh(*umoci, "new", "--image", lay + ":base")
    busybox = shutil.which("busybox")
    sh(*umoci, "insert", "--image", lay + ":base", os.path.realpath(busybox), "/bin/busybox")
    for t in ["app1", "app2", "arm", "big"]:
        sh(*umoci, "tag", "--image", lay + ":base", t)
    for t in ["app1", "app2"]:
        p = os.path.join(work, t + ".txt")
        with open(p, "w") as f:
            f.write(t + "\n")
        sh(*umoci, "insert", "--image", lay + ":" + t, p, "/" + t + ".txt")
    p = os.path.join(work, "arm.txt")
    with open(p, "w") as f:
        f.write("arm\n")
    sh(*umoci, "insert", "--image", lay + ":arm", p, "/arm.txt")
    sh(*umoci, "config", "--image", lay + ":arm", "--architecture", "arm64")
    p = os.path.join(work, "big.bin")
    with open(p, "wb") as f:
        f.write(os.urandom(48 << 20))
    sh(*umoci, "insert", "--image", lay + ":big", p, "/big.bin")
    return lay


def put_index(reg, repo, tag, entries):
    idx = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": entries}).encode()
    req = urllib.request.Request(f"http://{reg}/v2/{repo}/manifests/{tag}", data=idx,
                                 method="PUT", headers={
                                     "Content-Type": "application/vnd.oci.image.index.v1+json"})
    urllib.request.urlopen(req, timeout=30).read()


def manifest_size(reg, repo, digest):
    req = urllib.request.Request(f"http://{reg}/v2/{repo}/manifests/{digest}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    return len(urllib.request.urlopen(req, timeout=30).read())


def blobs(data):
    d = os.path.join(data, "images", "blobs", "sha256")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


def main():
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if shutil.which("busybox") is None:
        missing.append("busybox (busybox-static)")
    if missing:
        print("SKIP: missing " + ", ".join(missing) + " (test/install-deps.sh installs them)")
        return 77
    work = tempfile.mkdtemp(prefix="ember-img-registry-")
    regs = []
    try:
        lay = build_images(work)
        reg = Registry(work, "plain")
        regs.append(reg)
        r = reg.addr
        digests = {t: push(lay, t, f"{r}/test/{t}:v1") for t in ["app1", "app2", "big"]}
        # multi-arch: both variants in one repository, then an index over them
        amd = push(lay, "app1", f"{r}/test/multi:amd64")
        arm = push(lay, "arm", f"{r}/test/multi:arm64")
        put_index(r, "test/multi", "v1", [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm,
             "size": manifest_size(r, "test/multi", arm),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd,
             "size": manifest_size(r, "test/multi", amd),
             "platform": {"os": "linux", "architecture": "amd64"}}])
        put_index(r, "test/multi", "armonly", [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm,
             "size": manifest_size(r, "test/multi", arm),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}])

        data = os.path.join(work, "store1")
        rc, o1 = tool("--insecure", r, "pull", data, f"{r}/test/app1:v1")
        check(rc == 0, f"pull app1: {o1.get('message', '')}")
        rc, o2 = tool("--insecure", r, "pull", data, f"{r}/test/app2:v1")
        check(rc == 0, f"pull app2: {o2.get('message', '')}")
        a1 = o1["images"][0]
        a2 = o2["images"][0]
        check(a1["id"] == digests["app1"] and a2["id"] == digests["app2"],
              "image ids are the pushed manifest digests")
        shared = a1["layers"][0]["digest"]
        check(a2["layers"][0]["digest"] == shared, "app1 and app2 share the busybox layer")
        check(shared in o1["downloaded"] and shared not in o2["downloaded"] and
              shared in o2["cached"], "the shared layer was fetched once")
        # two parallel pulls on a fresh store: each blob fetched once
        data2 = os.path.join(work, "store2")
        rc, op = tool("--insecure", r, "pull", data2, f"{r}/test/app1:v1", f"{r}/test/app2:v1")
        check(rc == 0, f"parallel pulls: {op.get('message', '')}")
        check(len(op["downloaded"]) == len(set(op["downloaded"])) and
              op["downloaded"].count(shared) == 1,
              f"parallel pulls fetched the shared layer once ({len(op['downloaded'])} "
              f"downloads, {len(op['cached'])} cached)")
        # the index resolves to linux/amd64
        rc, om = tool("--insecure", r, "pull", data, f"{r}/test/multi:v1")
        check(rc == 0 and om["images"][0]["id"] == amd,
              f"index resolved to linux/amd64: {om.get('message', '')}")
        rc, oa = tool("--insecure", r, "pull", data, f"{r}/test/multi:armonly")
        check(rc == 1 and oa["code"] == "NOT_FOUND" and "linux/arm64" in oa["message"],
              f"index without amd64: {oa.get('message')}")
        # multi:v1 resolved to app1's manifest: one image with two names; deleting
        # by one name only untags
        rc, od = tool("delete", data, f"{r}/test/multi:v1")
        rc2, og = tool("get", data, f"{r}/test/app1:v1")
        check(rc == 0 and od["freed"] == 0 and rc2 == 0 and
              og["image"]["names"] == [f"{r}/test/app1:v1"],
              f"delete by one of two names untags: {od.get('message', '')}")
        # delete: refused while in use; then frees only app1's own blobs
        rc, od = tool("--in-use", a1["id"], "delete", data, f"{r}/test/app1:v1")
        check(rc == 1 and od["code"] == "FAILED_PRECONDITION" and od.get("precondition") ==
              "IN_USE", f"delete in use refused: {od.get('message')}")
        before = blobs(data)
        rc, od = tool("delete", data, f"{r}/test/app1:v1")
        check(rc == 0 and od["freed"] > 0, f"delete app1 frees {od.get('freed')} bytes")
        after = blobs(data)
        check(shared[7:] in after, "the shared layer stays (app2 uses it)")
        check(a1["manifest"]["digest"][7:] not in after and len(before - after) >= 2,
              "app1's own blobs are gone")
        rc, _ = tool("delete", data, f"{r}/test/app2:v1")
        check(rc == 0, "delete app2")
        check(blobs(data) == set(), "every blob collected once no image is left")
        # imports: docker-archive and OCI layout, from skopeo
        darch = os.path.join(work, "app1.docker.tar")
        sh("skopeo", "--insecure-policy", "copy", "-q", f"oci:{lay}:app1",
           f"docker-archive:{darch}:h.test/app1:v1")
        rc, oi = tool("import", data, "oci", darch)
        check(rc == 0 and oi["image"]["names"] == ["h.test/app1:v1"] and
              len(oi["image"]["layers"]) == 2, f"import docker-archive: {oi.get('message', '')}")
        olay = os.path.join(work, "app2-layout")
        sh("skopeo", "--insecure-policy", "copy", "-q", f"oci:{lay}:app2", f"oci:{olay}:app2")
        otar = os.path.join(work, "app2.oci.tar")
        sh("tar", "-C", olay, "-cf", otar, ".")
        rc, oi = tool("import", data, "oci", otar, "h.test/app2:imported")
        check(rc == 0 and oi["image"]["id"] == digests["app2"],
              f"import OCI layout tar: same id as the pull: {oi.get('message', '')}")
        # a layout with several tagged images (no platforms): the name picks one
        mlay = os.path.join(work, "two-layout")
        for t in ["app1", "app2"]:
            sh("skopeo", "--insecure-policy", "copy", "-q", f"oci:{lay}:{t}", f"oci:{mlay}:{t}")
        mtar = os.path.join(work, "two.oci.tar")
        sh("tar", "-C", mlay, "-cf", mtar, ".")
        rc, oi = tool("import", data, "oci", mtar)
        check(rc == 1 and oi["code"] == "INVALID_ARGUMENT" and "app1" in oi["message"],
              f"import of a two-image layout without a name: {oi.get('message')}")
        rc, oi = tool("import", data, "oci", mtar, "h.test/picked:app1")
        check(rc == 0 and oi["image"]["id"] == digests["app1"],
              f"import picks the image named by the tag: {oi.get('message', '')}")
        rc, ol = tool("list", data)
        referenced = set()
        for im in ol["images"]:
            for d in [im.get("manifest"), im.get("config")] + im["layers"]:
                if d:
                    referenced.add(d["digest"][7:])
        check(blobs(data) == referenced, "no unreferenced blob left after the imports")
        rc, oi = tool("import", data, "kernel", shutil.which("busybox"), "busybox-as-file")
        check(rc == 0 and oi["image"]["kind"] == "kernel", "import a plain file")

        # TLS + Basic auth
        tls = os.path.join(work, "tls")
        os.makedirs(tls)
        crt, key = os.path.join(tls, "reg.crt"), os.path.join(tls, "reg.key")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
           "-keyout", key, "-out", crt)
        htp = os.path.join(tls, "htpasswd")
        with open(htp, "w") as f:
            f.write(sh("htpasswd", "-Bbn", "alice", "s3cret"))
        sreg = Registry(work, "secure", tls=(crt, key), htpasswd=htp)
        regs.append(sreg)
        s = sreg.addr
        push(lay, "app1", f"{s}/test/app1:v1", creds="alice:s3cret")
        data3 = os.path.join(work, "store3")
        ref = f"{s}/test/app1:v1"
        rc, o = tool("pull", data3, ref)
        check(rc == 1 and o["code"] == "UNAVAILABLE" and "TLS" in o["message"],
              f"TLS without the CA: {o.get('message')}")
        rc, o = tool("--ca", crt, "pull", data3, ref)
        check(rc == 1 and o["code"] == "PERMISSION_DENIED", f"no credentials: {o.get('message')}")
        rc, o = tool("--ca", crt, "--user", "alice", "--password", "wrong", "pull", data3, ref)
        check(rc == 1 and o["code"] == "PERMISSION_DENIED", f"wrong password: {o.get('message')}")
        creds = os.path.join(work, "creds.json")
        with open(creds, "w") as f:
            json.dump({s: {"username": "alice", "password": "s3cret"}}, f)
        rc, o = tool("--ca", crt, "--credentials", creds, "pull", data3, ref)
        check(rc == 0 and o["images"][0]["id"] == digests["app1"],
              f"TLS + Basic auth pull: {o.get('message', '')}")

        # figures: the ~50 MB image, cold then with every layer cached
        data4 = os.path.join(work, "store4")
        big = f"{r}/test/big:v1"
        rc, ob = tool("--insecure", r, "--budget", str(10 << 20), "pull", data4, big)
        check(rc == 1 and ob["code"] == "RESOURCE_EXHAUSTED" and "budget 10485760" in
              ob["message"] and blobs(data4) == set(),
              f"over the budget: refused before downloading: {ob.get('message')}")
        rc, cold = tool("--insecure", r, "pull", data4, big)
        check(rc == 0, f"pull big cold: {cold.get('message', '')}")
        rc, warm = tool("--insecure", r, "pull", data4, big)
        check(rc == 0 and warm["downloaded"] == [], "pull big again: nothing downloaded")
        size = sum(l["size"] for l in cold["images"][0]["layers"]) if rc == 0 else 0
        print(f"FIGURE pull of {size / 1e6:.1f} MB ({len(cold.get('downloaded', []))} blobs) "
              f"from the local registry: cold {cold.get('seconds', 0):.3f} s, all layers cached "
              f"{warm.get('seconds', 0):.3f} s   (img_tool --insecure {r} pull DIR {big})")
    finally:
        for g in regs:
            g.stop()
        shutil.rmtree(work, ignore_errors=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
