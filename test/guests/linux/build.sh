#!/bin/sh
# ember Linux test guest builder: OUTDIR/vmlinux (PVH-capable ELF) and
# OUTDIR/initramfs.cpio.gz (busybox-static + /init, cpio newc, gzip), from Debian
# packages only (apt-get download, no root needed: it writes into OUTDIR/cache).
# Usage: build.sh OUTDIR
# Idempotent: when OUTDIR/stamp records the same kernel package, busybox and inputs
# (this script, init.sh) and both outputs exist, it exits at once.
# Nothing is cached outside OUTDIR.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CACHE="$OUT/cache"
mkdir -p "$CACHE"

log() { echo "guest_linux: $*" >&2; }
die() { echo "guest_linux: error: $*" >&2; exit 1; }

# Virtio modules for -M microvm disks and NICs (virtio-mmio transport), in the
# order they are loaded; dependencies are added ahead of them below.
WANT_MODS="virtio_mmio virtio_blk virtio_net"

# Shared with the boot kit: package, download, vmlinux, module dependencies.
KITLIB="$SRC/../../../guest/kit/debian-kernel.sh"
# shellcheck source=../../../guest/kit/debian-kernel.sh
. "$KITLIB"

# --- Which kernel package: the one linux-image-amd64 depends on. -------------------
KPKG=$(dk_kernel_package "$CACHE") || die "cannot resolve linux-image-amd64 (run apt-get update?)"
KVER=${KPKG#linux-image-}

inputs_id() {
	cat "$SRC/build.sh" "$SRC/init.sh" "$KITLIB" | cksum | cut -d' ' -f1
}
STAMP="kernel=$KPKG inputs=$(inputs_id)"
if dk_up_to_date "$OUT" "$STAMP"; then
	log "up to date ($KPKG)"
	exit 0
fi
start=$(date +%s)

# --- Extract the kernel image and the modules we need -----------------------------
PKGDIR="$OUT/pkg"
VMLINUZ=$(dk_unpack "$CACHE" "$KPKG" "$PKGDIR") || exit 1

# --- bzImage -> ELF vmlinux --------------------------------------------------------
decompressed=$(dk_vmlinux "$VMLINUZ" "$OUT/vmlinux")
log "vmlinux: $decompressed payload, $(wc -c <"$OUT/vmlinux") bytes"

# --- busybox-static ---------------------------------------------------------------
BBDEB=$(dk_fetch "$CACHE" busybox-static 2>/dev/null) || BBDEB=""
if [ -n "$BBDEB" ]; then
	mkdir -p "$PKGDIR/bb"
	dpkg-deb -x "$BBDEB" "$PKGDIR/bb"
	BUSYBOX="$PKGDIR/bb/bin/busybox"
elif dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
	BUSYBOX=/bin/busybox # installed package, no download possible
else
	die "cannot get busybox-static (apt-get download failed, not installed)"
fi

# --- initramfs tree ---------------------------------------------------------------
ROOT="$OUT/initramfs"
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/tmp" \
	"$ROOT/run" "$ROOT/etc" "$ROOT/root" "$ROOT/lib/modules"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
cp "$SRC/init.sh" "$ROOT/init"
chmod 0755 "$ROOT/init" "$ROOT/bin/busybox"
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"
# The kernel opens /dev/console before /init runs; only root can mknod it, and init.sh
# reopens it from devtmpfs anyway.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

# Modules: resolve `depends=` from each .ko's .modinfo (no modinfo/depmod needed) and
# list them so that every module follows its dependencies.
MODROOT="$PKGDIR/lib/modules/$KVER/kernel"
for m in $WANT_MODS; do dk_add_mod "$MODROOT" "$m"; done
ORDER=$DK_ORDER
: >"$ROOT/lib/modules/load-order"
for m in $ORDER; do
	cp "$(dk_modpath "$MODROOT" "$m")" "$ROOT/lib/modules/$m.ko"
	echo "$m.ko" >>"$ROOT/lib/modules/load-order"
done
log "modules:$ORDER"

rm -rf "$PKGDIR"
dk_initramfs "$ROOT" "$OUT" "$STAMP" "$start"
