"""registry_util: what the image tests share to run Debian's real
docker-registry on 127.0.0.1 and push images to it with skopeo
(test/image/test_registry_pull.py, test/integration/test_image_api.py,
test/bench/bench_image.py)."""
import json
import os
import socket
import subprocess
import time


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    def __init__(self, work, name, tls=None, htpasswd=None):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        root = os.path.join(work, name)
        os.makedirs(root)
        cfg = {"version": 0.1, "log": {"level": "error"},
               "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")},
                           "delete": {"enabled": True}},
               "http": {"addr": self.addr}}
        if tls:
            cfg["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
        if htpasswd:
            cfg["auth"] = {"htpasswd": {"realm": "ember-test", "path": htpasswd}}
        path = os.path.join(root, "config.yml")
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.log = open(os.path.join(root, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start; see " + self.log.name)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def push(lay, tag, dest, creds=None):
    digest_file = lay + "." + tag + ".digest"
    args = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
            "--digestfile", digest_file]
    if creds:
        args += ["--dest-creds", creds]
    sh(*args, f"oci:{lay}:{tag}", f"docker://{dest}")
    with open(digest_file) as f:
        return f.read().strip()
