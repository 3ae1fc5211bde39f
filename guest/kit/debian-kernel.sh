# debian-kernel.sh: shell functions (POSIX sh, sourced) that turn Debian's
# linux-image package into what ember boots: the package name, its download,
# the PVH-capable ELF vmlinux taken out of the bzImage, and kernel modules with
# their dependencies. Used by guest/kit/build.sh (the boot kit) and
# test/guests/linux/build.sh (the Linux test guest).
# The caller defines log MESSAGE and die MESSAGE.

# dk_up_to_date OUTDIR STAMP: true when OUTDIR/stamp holds STAMP and both
# outputs (vmlinux, initramfs.cpio.gz) exist.
dk_up_to_date() {
	[ -f "$1/stamp" ] && [ -f "$1/vmlinux" ] && [ -f "$1/initramfs.cpio.gz" ] &&
		[ "$(cat "$1/stamp")" = "$2" ]
}

# dk_kernel_package CACHE: prints the package linux-image-amd64 depends on
# (linux-image-<ver>-amd64); without apt metadata, the newest one in CACHE.
dk_kernel_package() {
	_p=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
	if [ -z "$_p" ]; then
		_deb=$(ls "$1"/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | tail -n1 || true)
		[ -n "$_deb" ] || return 1
		_p=$(basename "$_deb" | sed 's/_.*//')
	fi
	echo "$_p"
}

# dk_fetch CACHE PACKAGE: prints the path of PACKAGE's .deb in CACHE,
# downloading it once (apt-get download: no root needed).
dk_fetch() {
	_f=$(ls "$1/$2"_*.deb 2>/dev/null | tail -n1 || true)
	if [ -z "$_f" ]; then
		(cd "$1" && apt-get download "$2" >/dev/null 2>"$1/apt.log") ||
			{ cat "$1/apt.log" >&2; return 1; }
		_f=$(ls "$1/$2"_*.deb 2>/dev/null | tail -n1)
	fi
	echo "$_f"
}

# dk_unpack CACHE KPKG PKGDIR: downloads the kernel package KPKG into CACHE
# (once), extracts it into a fresh PKGDIR and prints the path of its
# boot/vmlinuz-<version>. Use as VMLINUZ=$(dk_unpack ...) || exit 1.
dk_unpack() {
	log "kernel package $2"
	_kdeb=$(dk_fetch "$1" "$2") || die "apt-get download $2 failed"
	rm -rf "$3"
	mkdir -p "$3"
	dpkg-deb -x "$_kdeb" "$3"
	_kver=${2#linux-image-}
	[ -f "$3/boot/vmlinuz-$_kver" ] || die "no boot/vmlinuz-$_kver in $_kdeb"
	echo "$3/boot/vmlinuz-$_kver"
}

# dk_vmlinux VMLINUZ OUT: writes the ELF kernel inside the bzImage VMLINUZ to
# OUT and prints the compression it used. The bzImage carries the compressed
# ELF as its payload; find the first compression magic (in the kernel's
# CONFIG_KERNEL_* preference order) and decompress from there with the packaged
# tool. --single-stream / -q tolerate the trailing setup data. Fails when the
# result lacks XEN_ELFNOTE_PHYS32_ENTRY (type 18 = 0x12), which is what QEMU
# needs to boot it via PVH.
dk_vmlinux() {
	_tmp="$2.tmp"
	rm -f "$_tmp"
	_found=""
	for _c in xz zstd gzip lz4 bzip2 lzma; do
		case $_c in
		xz) _magic='\xfd\x37\x7a\x58\x5a\x00'; _cmd="xz -dc --single-stream" ;;
		zstd) _magic='\x28\xb5\x2f\xfd'; _cmd="zstd -dcq" ;;
		gzip) _magic='\x1f\x8b\x08'; _cmd="gzip -dcq" ;;
		lz4) _magic='\x02\x21\x4c\x18'; _cmd="lz4 -dcq" ;;
		bzip2) _magic='BZh9'; _cmd="bzip2 -dcq" ;;
		lzma) _magic='\x5d\x00\x00\x00'; _cmd="xz -dcq --format=lzma" ;;
		esac
		command -v "${_cmd%% *}" >/dev/null 2>&1 || continue
		_off=$(LC_ALL=C grep -obUaP "$_magic" "$1" 2>/dev/null | head -n1 | cut -d: -f1)
		[ -n "$_off" ] || continue
		# shellcheck disable=SC2086
		tail -c +$((_off + 1)) "$1" | $_cmd >"$_tmp" 2>/dev/null || true
		if [ -s "$_tmp" ] && [ "$(head -c 4 "$_tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
			_found=$_c
			break
		fi
	done
	[ -n "$_found" ] || { rm -f "$_tmp"; die "could not find/decompress the ELF payload in $1"; }
	if command -v readelf >/dev/null 2>&1; then
		readelf -n "$_tmp" | grep -q 'Xen.*0x00000012' ||
			die "vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note (kernel without CONFIG_PVH?)"
	fi
	mv "$_tmp" "$2"
	echo "$_found"
}

# dk_modpath MODROOT NAME: the .ko of module NAME (file names use - or _).
dk_modpath() {
	_alt=$(echo "$2" | tr _ -)
	find "$1" \( -name "$2.ko" -o -name "$_alt.ko" -o -name "$2.ko.xz" -o -name "$2.ko.zst" \) |
		head -n1
}

# dk_moddeps KO: the modules KO depends on, from its .modinfo `depends=`
# (no modinfo/depmod needed), names with _.
dk_moddeps() {
	LC_ALL=C grep -aoE 'depends=[a-z0-9_,-]*' "$1" | head -n1 | sed 's/depends=//; s/,/ /g; s/-/_/g'
}

# dk_add_mod MODROOT NAME: appends NAME to DK_ORDER after its dependencies
# (each once); modules not in the package (built in) or compressed are skipped
# with a log line. Sets DK_ORDER (names as given, dependencies with _).
DK_ORDER=""
dk_add_mod() {
	case " $DK_ORDER " in *" $2 "*) return 0 ;; esac
	_p=$(dk_modpath "$1" "$2")
	[ -n "$_p" ] || { log "module $2 not in package (built in?), skipped"; return 0; }
	case $_p in *.ko) ;; *) log "module $2 is compressed, skipped"; return 0 ;; esac
	for _d in $(dk_moddeps "$_p"); do dk_add_mod "$1" "$_d"; done
	DK_ORDER="$DK_ORDER $2"
}

# dk_initramfs ROOT OUTDIR STAMP START: packs the tree ROOT into
# OUTDIR/initramfs.cpio.gz (cpio newc, sorted, owned by root, gzip -9 -n;
# written through a .tmp and renamed), removes ROOT, records STAMP in
# OUTDIR/stamp and logs the size and the seconds since START (date +%s).
dk_initramfs() {
	(cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
		gzip -9 -n >"$2/initramfs.cpio.gz.tmp"
	mv "$2/initramfs.cpio.gz.tmp" "$2/initramfs.cpio.gz"
	rm -rf "$1"
	echo "$3" >"$2/stamp"
	log "initramfs.cpio.gz: $(wc -c <"$2/initramfs.cpio.gz") bytes; built in $(($(date +%s) - $4)) s"
}
