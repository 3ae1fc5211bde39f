#!/usr/bin/python3
"""Hostile registries against the image store (agent/image via img_tool).

A python http.server on 127.0.0.1 speaks the distribution API and misbehaves
per repository: wrong digest, truncated body (connection cut, Content-Length
lying), oversized manifest, a descriptor with a huge size, a blob larger than
its descriptor, a registry that never answers, bad auth challenges, an index
without linux/amd64, a redirect loop, a slow blob cancelled by the client.
Each pull must fail with a clear error, leave the store exactly as it was
(tree digest unchanged, tmp/ empty), and the next good pull must work. A pull
killed (SIGKILL) mid-download leaves a partial file that the next open of the
store removes. Also:
the bearer-token flow with Basic credentials, and the plain-HTTP fallback for
a loopback registry without TLS.

usage: test_hostile_registry.py IMG_TOOL
"""
import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from checks import Checks  # noqa: E402

IMG_TOOL = sys.argv[1]
CHECKS = Checks()
check = CHECKS.check

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
LAYER = os.urandom(300 * 1024)


def layer_for(repo):
    """Each repository has its own layer: a failure must not find it cached."""
    return LAYER + repo.encode()


def manifest(repo, layer_size=None):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha(layer_for(repo)),
                    "size": layer_size if layer_size is not None else len(layer_for(repo))}],
    }).encode()


TOKEN = "tok-" + os.urandom(8).hex()
USER, PASSWORD = "alice", "s3cret"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/json", headers=None, length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        p = self.path
        port = self.server.server_address[1]
        if p == "/v2/":
            return self.send(200, b"{}")
        if p.startswith("/token"):
            auth = self.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if auth != want:
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self.send(200, json.dumps({"token": TOKEN}).encode())
        parts = p.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self.send(404, b"{}")
        repo, kind, ref = parts[2], parts[3], parts[4]
        if repo == "hang":
            time.sleep(3600)
            return
        if repo == "bearer":
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                return self.send(401, b"{}", headers={"WWW-Authenticate": (
                    f'Bearer realm="http://127.0.0.1:{port}/token",service="hostile",'
                    f'scope="repository:bearer:pull"')})
        if repo == "badauth":
            return self.send(401, b"{}", headers={"WWW-Authenticate": 'Bearer service="x"'})
        if repo == "badauth2":
            return self.send(401, b"{}", headers={"WWW-Authenticate": "Negotiate abc"})
        if repo == "badrealm":
            return self.send(401, b"{}", headers={
                "WWW-Authenticate": 'Bearer realm="ftp://127.0.0.1/token"'})
        if kind == "manifests":
            if repo == "oversized":
                try:
                    return self.send(200, b"{" + b" " * (5 << 20) + b"}", ctype=MT_MANIFEST)
                except OSError:  # the client hangs up once it has read enough
                    return
            if repo == "hugesize":
                return self.send(200, manifest(repo, layer_size=1 << 50), ctype=MT_MANIFEST)
            if repo == "armonly":
                idx = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
                    {"mediaType": MT_MANIFEST, "digest": sha(manifest(repo)), "size": 1,
                     "platform": {"os": "linux", "architecture": "arm64"}},
                    {"mediaType": MT_MANIFEST, "digest": sha(manifest(repo)), "size": 1,
                     "platform": {"os": "windows", "architecture": "amd64"}}]}).encode()
                return self.send(200, idx, ctype=MT_INDEX)
            if repo == "baddigestmanifest":
                m = manifest(repo)
                return self.send(200, m, ctype=MT_MANIFEST,
                                 headers={"Docker-Content-Digest": sha(b"other")})
            return self.send(200, manifest(repo), ctype=MT_MANIFEST,
                             headers={"Docker-Content-Digest": sha(manifest(repo))})
        if kind == "blobs":
            layer = layer_for(repo)
            body = {sha(CONFIG): CONFIG, sha(layer): layer}.get(ref)
            if body is None:
                return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            if body is layer:
                if repo == "baddigest":
                    return self.send(200, bytes(len(layer)), ctype="application/octet-stream")
                if repo == "truncated":  # announces all, sends half, cuts
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(layer)))
                    self.end_headers()
                    self.wfile.write(layer[: len(layer) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if repo == "shortlen":  # Content-Length lies low
                    return self.send(200, layer[:1000], ctype="application/octet-stream")
                if repo == "toolong":  # announces too much
                    return self.send(200, layer + b"extra", ctype="application/octet-stream")
                if repo == "toolongchunked":  # no length, more bytes than the descriptor
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    body = layer + b"extra"
                    try:
                        for i in range(0, len(body), 65536):
                            c = body[i:i + 65536]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if repo == "stallblob":  # headers and a little, then nothing
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(layer)))
                    self.end_headers()
                    self.wfile.write(layer[:10000])
                    self.wfile.flush()
                    time.sleep(3600)
                    return
                if repo == "redirloop":
                    return self.send(307, b"", headers={"Location": self.path})
                if repo == "slow":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(layer)))
                    self.end_headers()
                    for i in range(0, len(layer), 4096):
                        try:
                            self.wfile.write(layer[i:i + 4096])
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.05)
                    return
            return self.send(200, body, ctype="application/octet-stream")
        return self.send(404, b"{}")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-body is what these tests do


def tree_digest(root):
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            h.update(p.encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def run(args, timeout=120):
    p = subprocess.run([IMG_TOOL] + args, capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = {"ok": False, "code": "?", "message": "bad output: %r %r" % (p.stdout, p.stderr)}
    return p.returncode, out


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    reg = f"127.0.0.1:{port}"
    data = tempfile.mkdtemp(prefix="ember-img-hostile-")
    common = ["--insecure", reg, "--connect-timeout", "3", "--stall-timeout", "3",
              "--pull-timeout", "60"]
    try:
        rc, out = run(common + ["pull", data, f"{reg}/good:v1"])
        check(rc == 0 and out["ok"], f"good pull works: {out.get('message', '')}")
        before = tree_digest(os.path.join(data, "images"))
        cases = [
            ("baddigest", ["UNAVAILABLE"], "digest mismatch"),
            ("truncated", ["UNAVAILABLE"], "truncated"),
            ("shortlen", ["UNAVAILABLE"], "truncated"),
            ("toolong", ["UNAVAILABLE"], "announces"),
            ("toolongchunked", ["UNAVAILABLE"], "larger than its descriptor"),
            ("oversized", ["RESOURCE_EXHAUSTED"], "oversized manifest"),
            ("hugesize", ["RESOURCE_EXHAUSTED"], "over the limit"),
            ("baddigestmanifest", ["UNAVAILABLE"], "digest mismatch"),
            ("armonly", ["NOT_FOUND"], "linux/arm64, windows/amd64"),
            ("badauth", ["UNAVAILABLE"], "bad auth challenge"),
            ("badauth2", ["UNAVAILABLE"], "bad auth challenge"),
            ("badrealm", ["UNAVAILABLE"], "bad auth challenge"),
            ("bearer", ["PERMISSION_DENIED"], "give credentials"),
            ("redirloop", ["UNAVAILABLE"], "redirects"),
            ("missing@sha256:" + "0" * 64, ["UNAVAILABLE"], "digest mismatch"),
            ("hang", ["DEADLINE_EXCEEDED"], "stalled"),
            ("stallblob", ["DEADLINE_EXCEEDED"], "stalled"),
        ]
        for repo, codes, words in cases:
            ref = f"{reg}/{repo}" if "@" in repo else f"{reg}/{repo}:v1"
            t0 = time.monotonic()
            rc, out = run(common + ["pull", data, ref])
            took = time.monotonic() - t0
            check(rc == 1 and out.get("code") in codes and words in out.get("message", ""),
                  f"{repo}: {out.get('code')}: {out.get('message')} ({took:.1f} s)")
            check(tree_digest(os.path.join(data, "images")) == before,
                  f"{repo}: store unchanged")
            check(os.listdir(os.path.join(data, "images", "tmp")) == [], f"{repo}: tmp empty")
        # cancellation: a slow blob (~4 s), cancelled after 1 s
        rc, out = run(common + ["--cancel-after-ms", "1000", "pull", data, f"{reg}/slow:v1"])
        check(rc == 1 and out.get("code") == "CANCELLED", f"slow: cancelled: {out.get('message')}")
        check(tree_digest(os.path.join(data, "images")) == before, "slow: store unchanged")
        # a real crash mid-download: SIGKILL while the slow blob streams; the next
        # open of the store removes the partial file
        proc = subprocess.Popen([IMG_TOOL] + common + ["pull", data, f"{reg}/slow:v2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tmp = os.path.join(data, "images", "tmp")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                os.path.getsize(os.path.join(tmp, f)) > 0 for f in os.listdir(tmp)):
            time.sleep(0.05)
        partial = [f for f in os.listdir(tmp) if os.path.getsize(os.path.join(tmp, f)) > 0]
        proc.kill()
        proc.wait()
        check(partial != [], f"crash: a partial download was in tmp/ ({partial})")
        rc, out = run(["list", data])
        check(rc == 0 and os.listdir(tmp) == [], "crash: the next open emptied tmp/")
        check(tree_digest(os.path.join(data, "images")) == before,
              "crash: store as before the crashed pull")
        # the bearer flow with credentials (per request, then from a credentials file)
        rc, out = run(common + ["--user", USER, "--password", PASSWORD, "pull", data,
                                f"{reg}/bearer:v1"])
        check(rc == 0, f"bearer with per-request credentials: {out.get('message', '')}")
        creds = os.path.join(data, "creds.json")
        with open(creds, "w") as f:
            json.dump({reg: {"username": USER, "password": "wrong"}}, f)
        rc, out = run(common + ["--credentials", creds, "pull", data, f"{reg}/bearer:v2"])
        check(rc == 1 and out.get("code") == "PERMISSION_DENIED",
              f"bearer with wrong file credentials: {out.get('message', '')}")
        # loopback without --insecure: HTTPS fails, plain HTTP is used
        rc, out = run(["--connect-timeout", "3", "pull", data, f"{reg}/good:v2"])
        check(rc == 0, f"loopback HTTP fallback: {out.get('message', '')}")
        check(not out.get("downloaded"), "good:v2: every blob already cached")
        # a registry that is not loopback and not insecure never gets plain HTTP:
        # (covered by the TLS test in test_registry_pull.py)
        rc, out = run(["list", data])
        check(rc == 0 and len(out["images"]) >= 1, "store lists the good image")
    finally:
        srv.shutdown()
        shutil.rmtree(data, ignore_errors=True)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
