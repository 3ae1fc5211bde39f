#!/usr/bin/python3
"""test_image_retry: a CreateInstance retry (same request_id) of an image
instance is answered from the first request's record, not from the boot kit.

Imports a busybox image (ImportImage of a docker-archive made with umoci and
skopeo), creates an instance from it with a request_id (not started: no guest
boots), then retries the very same request while the boot kit's kernel cannot
be read: the retry must return the instance the first request made (the boot
kit fills the spec of a new create only; a retry must not depend on it, as
its command line carries the host's TSC rate, which drifts). A request that
differs still gets INVALID_ARGUMENT, and emberd made no second instance.

usage: test_image_retry.py BOOTKIT_DIR     (exit 77 when a tool or the kit is missing)
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "image"))
from emberd_fixture import Emberd  # noqa: E402
import grpc  # noqa: E402
from ember.v1 import image_pb2 as ipb  # noqa: E402
from test_image_api import CHECKS, build_image, check, image_spec, need_image_tools  # noqa: E402


def main():
    kit = need_image_tools(("skopeo", "umoci", "qemu-system-x86_64"))
    work = tempfile.mkdtemp(prefix="ember-imgretry-")
    try:
        lay = build_image(work)
        archive = os.path.join(work, "app.tar")
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "oci:%s:app" % lay,
                        "docker-archive:%s:ember/retry:1" % archive], check=True)
        own_kit = os.path.join(work, "kit")
        shutil.copytree(kit, own_kit)
        with Emberd(args=["--boot-kit-dir", own_kit]) as d:
            def chunks():
                yield ipb.ImportImageRequest(metadata=ipb.ImportImageMetadata(
                    name="retry:1", format=ipb.IMPORT_FORMAT_DOCKER_ARCHIVE))
                with open(archive, "rb") as f:
                    while True:
                        b = f.read(256 << 10)
                        if not b:
                            break
                        yield ipb.ImportImageRequest(chunk=b)
            imp = d.channel.stream_unary("/ember.v1.ImageService/ImportImage",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=ipb.Image.FromString)
            imp(chunks(), timeout=300)
            first = d.create("r1", image_spec("retry:1"), request_id="req-retry-1", timeout=300)
            check(first.id != "" and first.spec.image == "retry:1", "created %s" % first.id)
            vmlinux = os.path.join(own_kit, "vmlinux")
            os.rename(vmlinux, vmlinux + ".away")
            code, got = d.call_error(d.create, "r1", image_spec("retry:1"),
                                     request_id="req-retry-1")
            check(code == grpc.StatusCode.OK and got.id == first.id,
                  "a retry while the boot kit cannot be read returns the instance (%s %s)"
                  % (code, got if code != grpc.StatusCode.OK else got.id))
            os.rename(vmlinux + ".away", vmlinux)
            code, got = d.call_error(d.create, "r1", image_spec("retry:1"),
                                     request_id="req-retry-1")
            check(code == grpc.StatusCode.OK and got.id == first.id,
                  "a retry with the kit back returns the instance (%s)" % code)
            code, msg = d.call_error(d.create, "r1", image_spec("retry:1", args=["other"]),
                                     request_id="req-retry-1")
            check(code == grpc.StatusCode.INVALID_ARGUMENT,
                  "a different request with that request_id: INVALID_ARGUMENT (%s)" % msg)
            names = [i.name for i in d.list_page().instances]
            check(names == ["r1"], "one instance only (%s)" % names)
            d.delete(first.id)
            check(d.health_check().status == 1, "emberd is healthy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
