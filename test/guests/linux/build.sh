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

# --- Which kernel package: the one linux-image-amd64 depends on. -------------------
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
if [ -z "$KPKG" ]; then
	# No apt metadata: reuse a package already downloaded into the cache.
	deb=$(ls "$CACHE"/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | tail -n1 || true)
	[ -n "$deb" ] || die "cannot resolve linux-image-amd64 (run apt-get update?)"
	KPKG=$(basename "$deb" | sed 's/_.*//')
fi
KVER=${KPKG#linux-image-}

inputs_id() {
	cat "$SRC/build.sh" "$SRC/init.sh" | cksum | cut -d' ' -f1
}
STAMP="kernel=$KPKG inputs=$(inputs_id)"
if [ -f "$OUT/stamp" ] && [ -f "$OUT/vmlinux" ] && [ -f "$OUT/initramfs.cpio.gz" ] &&
	[ "$(cat "$OUT/stamp")" = "$STAMP" ]; then
	log "up to date ($KPKG)"
	exit 0
fi
start=$(date +%s)

# --- Download (once) --------------------------------------------------------------
fetch() { # fetch PACKAGE -> prints path of its .deb in the cache
	f=$(ls "$CACHE/$1"_*.deb 2>/dev/null | tail -n1 || true)
	if [ -z "$f" ]; then
		(cd "$CACHE" && apt-get download "$1" >/dev/null 2>"$CACHE/apt.log") ||
			{ cat "$CACHE/apt.log" >&2; return 1; }
		f=$(ls "$CACHE/$1"_*.deb 2>/dev/null | tail -n1)
	fi
	echo "$f"
}
log "kernel package $KPKG"
KDEB=$(fetch "$KPKG") || die "apt-get download $KPKG failed"

# --- Extract the kernel image and the modules we need -----------------------------
PKGDIR="$OUT/pkg"
rm -rf "$PKGDIR"
mkdir -p "$PKGDIR"
dpkg-deb -x "$KDEB" "$PKGDIR"
VMLINUZ="$PKGDIR/boot/vmlinuz-$KVER"
[ -f "$VMLINUZ" ] || die "no boot/vmlinuz-$KVER in $KDEB"

# --- bzImage -> ELF vmlinux --------------------------------------------------------
# The bzImage carries the compressed ELF as its payload; find the first compression
# magic (in the kernel's CONFIG_KERNEL_* preference order) and decompress from there
# with the packaged tool. --single-stream / -q tolerate the trailing setup data.
find_magic() { # find_magic FILE PERL-REGEX -> byte offset of first match or empty
	LC_ALL=C grep -obUaP "$2" "$1" 2>/dev/null | head -n1 | cut -d: -f1
}
tmp="$OUT/vmlinux.tmp"
rm -f "$tmp"
decompressed=""
for c in xz zstd gzip lz4 bzip2 lzma; do
	case $c in
	xz) magic='\xfd\x37\x7a\x58\x5a\x00'; cmd="xz -dc --single-stream" ;;
	zstd) magic='\x28\xb5\x2f\xfd'; cmd="zstd -dcq" ;;
	gzip) magic='\x1f\x8b\x08'; cmd="gzip -dcq" ;;
	lz4) magic='\x02\x21\x4c\x18'; cmd="lz4 -dcq" ;;
	bzip2) magic='BZh9'; cmd="bzip2 -dcq" ;;
	lzma) magic='\x5d\x00\x00\x00'; cmd="xz -dcq --format=lzma" ;;
	esac
	command -v "${cmd%% *}" >/dev/null 2>&1 || continue
	off=$(find_magic "$VMLINUZ" "$magic")
	[ -n "$off" ] || continue
	# shellcheck disable=SC2086
	tail -c +$((off + 1)) "$VMLINUZ" | $cmd >"$tmp" 2>/dev/null || true
	if [ -s "$tmp" ] && [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
		decompressed=$c
		break
	fi
done
[ -n "$decompressed" ] || die "could not find/decompress the ELF payload in $VMLINUZ"
# XEN_ELFNOTE_PHYS32_ENTRY (type 18 = 0x12) is what QEMU needs to boot it via PVH.
if command -v readelf >/dev/null 2>&1; then
	readelf -n "$tmp" | grep -q 'Xen.*0x00000012' ||
		die "vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note (kernel without CONFIG_PVH?)"
fi
mv "$tmp" "$OUT/vmlinux"
log "vmlinux: $decompressed payload, $(wc -c <"$OUT/vmlinux") bytes"

# --- busybox-static ---------------------------------------------------------------
BBDEB=$(fetch busybox-static 2>/dev/null) || BBDEB=""
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
modpath() { find "$MODROOT" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1; }
deps() { LC_ALL=C grep -aoE 'depends=[a-z0-9_,-]*' "$1" | head -n1 | sed 's/depends=//; s/,/ /g; s/-/_/g'; }
ORDER=""
add_mod() {
	case " $ORDER " in *" $1 "*) return 0 ;; esac
	p=$(modpath "$1")
	[ -n "$p" ] || { log "module $1 not in package (built in?), skipped"; return 0; }
	case $p in *.ko) ;; *) log "module $1 is compressed, skipped"; return 0 ;; esac
	for d in $(deps "$p"); do add_mod "$d"; done
	ORDER="$ORDER $1"
}
for m in $WANT_MODS; do add_mod "$m"; done
: >"$ROOT/lib/modules/load-order"
for m in $ORDER; do
	cp "$(modpath "$m")" "$ROOT/lib/modules/$m.ko"
	echo "$m.ko" >>"$ROOT/lib/modules/load-order"
done
log "modules:$ORDER"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -9 -n >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
rm -rf "$PKGDIR" "$ROOT"
echo "$STAMP" >"$OUT/stamp"
log "initramfs.cpio.gz: $(wc -c <"$OUT/initramfs.cpio.gz") bytes; built in $(($(date +%s) - start)) s"
