#!/bin/sh
# ember boot kit builder: OUTDIR/vmlinux (PVH-capable ELF of Debian's kernel)
# and OUTDIR/initramfs.cpio.gz (ember's static init + the kernel modules an
# image's VM needs, with a modules.dep), from Debian packages only (apt-get
# download, no root needed: it writes into OUTDIR/cache).
# Usage: build.sh OUTDIR INIT   (INIT: the static guest/init binary)
# Idempotent: when OUTDIR/stamp records the same kernel package and inputs
# (these scripts, INIT) and both outputs exist, it exits at once.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 OUTDIR INIT" >&2
	exit 2
fi
SRC=$(cd "$(dirname "$0")" && pwd)
INIT=$2
[ -f "$INIT" ] || { echo "bootkit: error: no init binary $INIT" >&2; exit 1; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CACHE="$OUT/cache"
mkdir -p "$CACHE"

log() { echo "bootkit: $*" >&2; }
die() { echo "bootkit: error: $*" >&2; exit 1; }
# shellcheck source=debian-kernel.sh
. "$SRC/debian-kernel.sh"

# What an image's VM needs from the kernel (dependencies are added from each
# module's .modinfo): virtio transports (mmio for microvm/Firecracker, pci for
# q35/Cloud Hypervisor), disks, NICs, console, vsock; ext4 and its checksum
# (ext4 asks the crypto API for "crc32c" at mount time: no modprobe in the
# guest, so the providers are loaded up front); erofs and overlay for a
# read-only image with a writable layer; the ACPI power button and evdev, which
# turn a VMM's graceful powerdown into SIGTERM for the workload.
WANT_MODS="virtio_mmio virtio_pci virtio_blk virtio_net virtio_console
  crc32c_generic crc32c_intel ext4 erofs overlay
  vsock vmw_vsock_virtio_transport button evdev"

KPKG=$(dk_kernel_package "$CACHE") || die "cannot resolve linux-image-amd64 (run apt-get update?)"
KVER=${KPKG#linux-image-}
STAMP="kernel=$KPKG inputs=$(cat "$SRC/build.sh" "$SRC/debian-kernel.sh" "$INIT" | cksum | cut -d' ' -f1)"
if dk_up_to_date "$OUT" "$STAMP"; then
	log "up to date ($KPKG)"
	exit 0
fi
start=$(date +%s)
rm -f "$OUT/stamp"
PKGDIR="$OUT/pkg"
VMLINUZ=$(dk_unpack "$CACHE" "$KPKG" "$PKGDIR") || exit 1
# The vmlinux only depends on the package and the extraction code: kept when
# only the init changed.
KSTAMP="kernel=$KPKG lib=$(cksum <"$SRC/debian-kernel.sh" | cut -d' ' -f1)"
if [ -f "$OUT/vmlinux" ] && [ "$(cat "$OUT/vmlinux.stamp" 2>/dev/null)" = "$KSTAMP" ]; then
	log "vmlinux up to date"
else
	rm -f "$OUT/vmlinux.stamp"
	decompressed=$(dk_vmlinux "$VMLINUZ" "$OUT/vmlinux")
	echo "$KSTAMP" >"$OUT/vmlinux.stamp"
	log "vmlinux: $decompressed payload, $(wc -c <"$OUT/vmlinux") bytes"
fi

ROOT="$OUT/initramfs"
rm -rf "$ROOT"
mkdir -p "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$ROOT/newroot" "$ROOT/lib/modules"
cp "$INIT" "$ROOT/init"
chmod 0755 "$ROOT/init"
# The kernel opens /dev/console before /init runs; only root can mknod it, and
# init reopens it from devtmpfs anyway.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

MODROOT="$PKGDIR/lib/modules/$KVER/kernel"
for m in $WANT_MODS; do dk_add_mod "$MODROOT" "$m"; done
# modules.dep in depmod's format, paths relative to /lib/modules (flat).
: >"$ROOT/lib/modules/modules.dep"
for m in $DK_ORDER; do
	p=$(dk_modpath "$MODROOT" "$m")
	cp "$p" "$ROOT/lib/modules/$m.ko"
	deps=""
	for d in $(dk_moddeps "$p"); do deps="$deps $d.ko"; done
	echo "$m.ko:$deps" >>"$ROOT/lib/modules/modules.dep"
done
log "modules:$DK_ORDER"

rm -rf "$PKGDIR"
dk_initramfs "$ROOT" "$OUT" "$STAMP" "$start"
