#!/usr/bin/env bash
# image_smoke.sh: builds deploy/Containerfile and smoke-tests the image, with no
# container daemon and no registry: Debian's podman (+buildah) on runc, a base
# image made here with debootstrap --variant=minbase + podman import, and a
# throwaway containers.conf/storage.conf under WORKDIR. --pull=never
# everywhere. Only the two apt steps of the image build reach the network
# (the Debian archive, as the host's apt does), via --network host; the
# container under test runs with --network none.
#
# Usage: test/deploy/image_smoke.sh [WORKDIR] [HOST_EMBERCTL]
#   WORKDIR        storage, base rootfs and build context (default /tmp/ember-image-smoke);
#                  kept between runs, so the base image and cached layers are reused
#   HOST_EMBERCTL  a host emberctl to call the container through the shared socket dir
#                  (default: $EMBERCTL_BIN, else skipped)
# Env: EMBER_SMOKE_KEEP=1 keeps the container and image afterwards;
#      EMBER_SMOKE_COLD=1 drops the image and its cached layers first (the base
#      image is kept), to measure a build from scratch.
#
# Proves: the image builds from the source tree; it holds emberd, emberctl,
# their libraries and QEMU; emberd starts as non-root and answers
# grpc.health.v1 inside the container (podman exec + HEALTHCHECK) and through
# the socket dir bind-mounted on the host; instances persist in the data
# volume across a container restart; `podman stop` (SIGTERM) ends it cleanly;
# run as the DaemonSet runs it (--vmm-cgroup, host PID namespace and cgroups),
# a running guest (EMBER_TINY_ELF under KVM) outlives its emberd container and
# the next container re-adopts it, while without --vmm-cgroup (the control) it
# dies. Exit 77 (SKIP) where podman cannot run here.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/tmp/ember-image-smoke}
HOST_CTL=${2:-${EMBERCTL_BIN:-}}
# The base is tagged with the name the Containerfile's FROM uses, in this
# throwaway storage only, so the Containerfile stays the one operators build.
BASE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/ember:smoke
CTR=ember-smoke-$$
T0=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
say() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (rootful podman; rootless needs subuid/subgid setup)"
for t in podman runc debootstrap tar; do
  command -v "$t" >/dev/null || skip "$t not installed (apt-get install podman buildah runc debootstrap)"
done

mkdir -p "$WORK"/{conf,storage,run,tmp,sock,libpod}
WORK=$(cd "$WORK" && pwd)
# podman 4.3 logs errors about systemd healthcheck timers on a host without
# systemd; its stderr goes here and is shown on failure.
: > "$WORK/podman.log"
# Throwaway configuration: runc (crun refuses this machine's hybrid cgroups),
# cgroupfs (no systemd), file events, ulimits within this machine's hard
# limits, and no registries at all.
cat > "$WORK/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/run/events.log"
tmp_dir = "$WORK/libpod"
image_copy_tmp_dir = "$WORK/tmp"
EOF
cat > "$WORK/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
cat > "$WORK/conf/registries.conf" <<EOF
unqualified-search-registries = []
EOF
export CONTAINERS_CONF="$WORK/conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/conf/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$WORK/conf/registries.conf"
export TMPDIR="$WORK/tmp"
P=(podman --cgroup-manager cgroupfs --runtime runc)

cleanup() {
  if [ -z "${EMBER_SMOKE_KEEP:-}" ]; then
    "${P[@]}" rm -f -t 5 "$CTR" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# Can podman run at all here? (A tiny container from the base image, below,
# answers that; first make sure podman itself starts.)
if ! out=$("${P[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' 2>&1); then
  skip "podman cannot start here: $(echo "$out" | tail -1)"
fi
say "podman $(podman --version | awk '{print $3}'), runtime/storage: $out"

# ---- base image: debootstrap --variant=minbase bookworm + podman import ----
if ! "${P[@]}" image exists "$BASE"; then
  t=$(date +%s)
  if [ ! -x "$WORK/rootfs/bin/sh" ]; then
    rm -rf "$WORK/rootfs"
    say "debootstrap --variant=minbase bookworm"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian \
      > "$WORK/debootstrap.log" 2>&1 || { tail -5 "$WORK/debootstrap.log"; skip "debootstrap failed (no Debian archive?)"; }
  fi
  # Same archive sections as the host (security and updates too), no caches.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$WORK/rootfs/etc/apt/sources.list.d/"
    rm -f "$WORK/rootfs/etc/apt/sources.list"
  fi
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" --numeric-owner -cf - . | "${P[@]}" import \
    --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  say "base image $BASE (debootstrap minbase) imported in $(( $(date +%s) - t ))s"
fi
if ! out=$("${P[@]}" run --rm --pull=never --network none "$BASE" true 2>&1); then
  skip "podman cannot run a container here: $(echo "$out" | tail -2 | tr '\n' ' ')"
fi

# ---- build context: the tracked and untracked-but-not-ignored files ----
CTX="$WORK/context"
rm -rf "$CTX"
mkdir -p "$CTX"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$SRC" ls-files -z -co --exclude-standard | grep -zv '^build' \
    | (cd "$SRC" && tar --null -T - -cf - 2>/dev/null) | tar -C "$CTX" -xf -
else
  tar -C "$SRC" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$CTX" -xf -
fi

# ---- build ----
if [ -n "${EMBER_SMOKE_COLD:-}" ]; then
  "${P[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  "${P[@]}" image prune -f >/dev/null 2>&1 || true
  say "cold build: cached layers dropped"
fi
t=$(date +%s)
say "building $IMAGE (log: $WORK/build.log)"
if ! "${P[@]}" build --pull=never --network host --format docker --layers \
      -f "$CTX/deploy/Containerfile" -t "$IMAGE" "$CTX" \
      > "$WORK/build.log" 2>&1; then
  tail -30 "$WORK/build.log"
  if grep -qE 'Temporary failure resolving|Could not resolve|Failed to fetch' "$WORK/build.log"; then
    skip "the image build cannot reach the Debian archive"
  fi
  fail "image build failed"
fi
BUILD_S=$(( $(date +%s) - t ))
SIZE=$("${P[@]}" image inspect --format '{{.Size}}' "$IMAGE")
say "built in ${BUILD_S}s; image size $(( SIZE / 1024 / 1024 )) MiB ($SIZE bytes)"
"${P[@]}" image inspect --format 'healthcheck: {{.Config.Healthcheck.Test}}; stopsignal: {{.Config.StopSignal}}; user: {{.Config.User}}; volumes: {{.Config.Volumes}}' "$IMAGE" \
  | tee "$WORK/inspect.txt"
grep -q 'emberctl --timeout 3s health' "$WORK/inspect.txt" || fail "image has no HEALTHCHECK"

# ---- run: non-root, no network, /dev/kvm if the host has it, socket dir shared ----
SOCK="$WORK/sock"
# The host's image folder, mounted where the image's default --host-file-root
# points (deploy/Containerfile), as an operator would: any regular file serves
# as a kernel for an instance that is never started.
IMAGES="$WORK/images"
mkdir -p "$IMAGES"
head -c 65536 /dev/urandom > "$IMAGES/smoke-kernel"
chmod 0755 "$IMAGES"
chmod 0644 "$IMAGES/smoke-kernel"
rm -f "$SOCK/emberd.sock"
chown 10001:10001 "$SOCK"
dev=()
if [ -c /dev/kvm ]; then
  # The image user gets /dev/kvm through the device's group.
  dev=(--device /dev/kvm --group-add "$(stat -c %g /dev/kvm)")
fi
t=$(date +%s)
# --health-interval disable: no systemd here to schedule the HEALTHCHECK
# (podman would log errors); `podman healthcheck run` below runs it once.
"${P[@]}" run -d --pull=never --name "$CTR" --network none "${dev[@]}" --health-interval disable \
  -v "ember-smoke-data-$$:/var/lib/ember" -v "$SOCK:/run/ember" \
  -v "$IMAGES:/var/lib/ember-images:ro" "$IMAGE" >/dev/null \
  2>>"$WORK/podman.log" || { tail -5 "$WORK/podman.log"; fail "podman run failed"; }
ready=""
for _ in $(seq 1 100); do
  if "${P[@]}" exec "$CTR" emberctl --timeout 2s health >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  "${P[@]}" logs "$CTR" 2>&1 | tail -20
  fail "emberd did not become healthy in the container"
fi
say "emberd healthy after $(( $(date +%s) - t ))s (podman exec emberctl health: SERVING)"

ex() { "${P[@]}" exec "$CTR" "$@"; }
[ "$(ex id -u)" = 10001 ] || fail "emberd is not running as uid 10001"
ex sh -c 'test "$(cat /proc/1/comm)" = emberd' || fail "PID 1 is not emberd"
"${P[@]}" healthcheck run "$CTR" 2>>"$WORK/podman.log" && say "podman healthcheck run: healthy" \
  || fail "podman healthcheck run: unhealthy"
ex emberctl --json hypervisors > "$WORK/hypervisors.json"
grep -q '"type":[[:space:]]*"qemu"' "$WORK/hypervisors.json" || fail "no qemu hypervisor"
ex emberctl hypervisors | sed 's/^/    /'
# sed, not head: head would close the pipe early and podman exec would die of
# SIGPIPE (pipefail).
ex qemu-system-x86_64 --version | sed -n '1s/^/    /p'
# The fence is on: a file outside the image folder is refused, nothing created.
if out=$(ex emberctl create fenced --kernel /usr/bin/emberctl --memory-mib 64 2>&1); then
  fail "the image's emberd accepted a kernel outside /var/lib/ember-images"
fi
echo "$out" | grep -q 'ember-images' || fail "refusal does not name the allowed root: $out"
say "host path fence: /usr/bin/emberctl refused ($(echo "$out" | tail -1 | cut -c1-100))"
ex emberctl create smoke-vm --kernel /var/lib/ember-images/smoke-kernel --memory-mib 64 >/dev/null
if [ -n "$HOST_CTL" ] && [ -x "$HOST_CTL" ]; then
  "$HOST_CTL" --socket "$SOCK/emberd.sock" list | sed 's/^/    host> /'
  "$HOST_CTL" --socket "$SOCK/emberd.sock" get smoke-vm >/dev/null \
    || fail "host emberctl cannot reach emberd through the shared socket dir"
  say "host emberctl reached emberd through $SOCK/emberd.sock"
fi

# ---- stop (SIGTERM), restart, the instance is still there ----
t=$(date +%s)
"${P[@]}" stop -t 30 "$CTR" >/dev/null 2>>"$WORK/podman.log" || fail "podman stop failed"
code=$("${P[@]}" inspect --format '{{.State.ExitCode}}' "$CTR")
[ "$code" = 0 ] || fail "emberd exited with $code on SIGTERM"
say "podman stop: emberd exited 0 on SIGTERM in $(( $(date +%s) - t ))s"
"${P[@]}" start "$CTR" >/dev/null 2>>"$WORK/podman.log"
for _ in $(seq 1 100); do
  ex emberctl --timeout 2s health >/dev/null 2>&1 && break
  sleep 0.2
done
ex emberctl get smoke-vm | grep -q 'State: *stopped' || fail "instance lost across restart"
say "restarted: instance smoke-vm persisted in the data volume"
ex emberctl delete smoke-vm >/dev/null
"${P[@]}" stop -t 30 "$CTR" >/dev/null 2>>"$WORK/podman.log" || fail "second podman stop failed"
if [ -z "${EMBER_SMOKE_KEEP:-}" ]; then
  "${P[@]}" rm -f "$CTR" >/dev/null 2>>"$WORK/podman.log" || true
  "${P[@]}" volume rm -f "ember-smoke-data-$$" >/dev/null 2>>"$WORK/podman.log" || true
fi

# ---- a running guest outlives its emberd container (--vmm-cgroup) ----
# As the DaemonSet runs it: root, the host's PID namespace and cgroup
# hierarchy, --vmm-cgroup. A guest (the tiny test guest under KVM) is started,
# the container is stopped (the runtime kills what is left in its cgroup), and
# a new container re-adopts the same VMM.
TINY=${EMBER_TINY_ELF:-}
if [ -n "$TINY" ] && [ -f "$TINY" ] && [ -c /dev/kvm ]; then
  VCG=ember-smoke-vmms-$$
  # guest_container NAME [emberd flags...]: runs emberd as the DaemonSet does,
  # starts the tiny guest, stops the container; prints the VMM pid.
  guest_container() {
    local name=$1
    shift
    "${P[@]}" run -d --pull=never --name "$name" --network none --pid host --user 0 \
      --device /dev/kvm -e EMBER_QEMU_ACCEL=kvm --health-interval disable \
      -v /sys/fs/cgroup:/sys/fs/cgroup -v "$name:/var/lib/ember" \
      -v "$TINY:/var/lib/ember-images/tiny.elf:ro" "$IMAGE" --log-level info \
      --host-file-root /var/lib/ember-images "$@" >/dev/null \
      2>>"$WORK/podman.log" || { tail -5 "$WORK/podman.log"; fail "podman run ($name) failed"; }
    for _ in $(seq 1 100); do
      "${P[@]}" exec "$name" emberctl --timeout 2s health >/dev/null 2>&1 && break
      sleep 0.2
    done
    "${P[@]}" exec "$name" emberctl create tiny --kernel /var/lib/ember-images/tiny.elf --memory-mib 32 \
      --start >/dev/null || { "${P[@]}" logs "$name" 2>&1 | tail -10; fail "no guest in $name"; }
    local vmm
    vmm=$("${P[@]}" exec "$name" emberctl --json get tiny |
          sed -n 's/.*"vmmPid":[[:space:]]*\([0-9]*\).*/\1/p')
    [ -n "$vmm" ] && kill -0 "$vmm" 2>/dev/null || fail "no VMM pid for the guest in $name"
    "${P[@]}" stop -t 30 "$name" >/dev/null 2>>"$WORK/podman.log" || fail "podman stop $name failed"
    sleep 1
    echo "$vmm"
  }
  # Control: without --vmm-cgroup the runtime takes the guest down with emberd.
  vmm=$(guest_container "ember-smoke-ctl-$$")
  if kill -0 "$vmm" 2>/dev/null; then
    kill -9 "$vmm"
    fail "control: the VMM survived its container without --vmm-cgroup (the check below proves nothing)"
  fi
  "${P[@]}" rm -f "ember-smoke-ctl-$$" >/dev/null 2>>"$WORK/podman.log" || true
  "${P[@]}" volume rm -f "ember-smoke-ctl-$$" >/dev/null 2>>"$WORK/podman.log" || true
  say "control: without --vmm-cgroup the guest died with emberd's container"
  CTR2=ember-smoke-guest-$$
  vmm=$(guest_container "$CTR2" --vmm-cgroup "$VCG")
  kill -0 "$vmm" 2>/dev/null || fail "the guest's VMM (pid $vmm) died with emberd's container"
  say "podman stop: emberd's container ended, its guest (VMM pid $vmm) kept running"
  ex2() { "${P[@]}" exec "$CTR2" "$@"; }
  "${P[@]}" start "$CTR2" >/dev/null 2>>"$WORK/podman.log"
  for _ in $(seq 1 100); do
    ex2 emberctl --timeout 2s health >/dev/null 2>&1 && break
    sleep 0.2
  done
  after=$(ex2 emberctl --json get tiny)
  echo "$after" | grep -q '"state":[[:space:]]*"INSTANCE_STATE_RUNNING"' \
    && echo "$after" | grep -q "\"vmmPid\":[[:space:]]*$vmm\b" \
    || { echo "$after"; fail "the new container did not re-adopt the guest"; }
  ex2 emberctl standby tiny >/dev/null && ex2 emberctl restore tiny >/dev/null \
    || fail "standby/restore after re-adoption failed"
  say "new container re-adopted the guest (same VMM pid $vmm); standby and restore work"
  ex2 emberctl delete tiny >/dev/null || true
  "${P[@]}" rm -f -t 10 "$CTR2" >/dev/null 2>>"$WORK/podman.log" || true
  "${P[@]}" volume rm -f "$CTR2" >/dev/null 2>>"$WORK/podman.log" || true
  for h in /sys/fs/cgroup/*/"$VCG" /sys/fs/cgroup/"$VCG"; do
    [ -d "$h" ] && rmdir "$h" 2>/dev/null || true
  done
else
  say "guest survival across containers: skipped (needs EMBER_TINY_ELF and /dev/kvm)"
fi

say "image smoke OK: build ${BUILD_S}s, size $(( SIZE / 1024 / 1024 )) MiB, total $(( $(date +%s) - T0 ))s"
