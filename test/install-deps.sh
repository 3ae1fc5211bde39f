#!/bin/sh
# install-deps.sh: installs, from Debian's packages, everything ember needs to
# build, run and test on a fresh Debian 12 machine. Idempotent. Needs root (or
# sudo). Set EMBER_DEPS_MINIMAL=1 to skip the test-only container tooling.
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

BUILD="build-essential cmake pkg-config clang-format libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  protobuf-compiler libprotobuf-dev grpc-proto libcurl4-openssl-dev libcjson-dev libcunit1-dev
  libmicrohttpd-dev libarchive-dev libext2fs-dev libssl-dev libnl-3-dev libnl-route-3-dev
  libnftables-dev"
RUN="qemu-system-x86 qemu-utils e2fsprogs"
TEST="python3 python3-grpcio python3-protobuf python3-prometheus-client busybox-static cpio xz-utils zstd file
  binutils openssl valgrind clang libclang-rt-14-dev procps iproute2 nftables iputils-ping erofs-utils umoci
  util-linux docker-registry skopeo apache2-utils"
# The boot kit (guest/): musl-gcc for the static init; e2fsprogs/erofs-utils build
# the test rootfs images (mkfs.ext4 -d, mkfs.erofs) of test/guests/bootkit_test.py.
GUEST="musl-tools e2fsprogs erofs-utils"
DEPLOY="podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns containernetworking-plugins
  systemd"

pkgs="$BUILD $RUN $TEST $GUEST"
# Node.js (for the offline manifest and Containerfile linters, and `buf lint` of
# proto/ from the npm package @bufbuild/buf: test/lint/buf_lint.sh) only where none is
# installed: a machine may carry its own build, which Debian's would replace.
command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
[ "${EMBER_DEPS_MINIMAL:-0}" = 1 ] || pkgs="$pkgs $DEPLOY"
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $pkgs
