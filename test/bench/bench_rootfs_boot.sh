#!/bin/sh
# bench_rootfs_boot.sh: first-boot cost of the two root layouts compared in
# docs/rootfs.md, in a real guest (QEMU microvm + KVM, Debian's kernel from the
# Linux test guest's cache): (a) the per-instance ext4 copy mounted read-write;
# (b) a shared erofs image + a per-instance ext4 scratch disk + overlayfs.
# The guest's /init (busybox) loads the modules each needs, mounts, runs a
# program from the new root, appends one line to a ~700 KB file (overlay:
# copy-up) and prints the times from /proc/uptime. Prints figures only.
#
#   test/bench/bench_rootfs_boot.sh BUILD/test/test_rootfs_tool BUILD/guests/linux
#
# Needs: the guest built once (cmake --build BUILD --target guest_linux),
# qemu-system-x86_64, a static /bin/busybox, mkfs.erofs, cpio. SKIP (77) otherwise.
set -eu
tool="$1"
guest="$2"
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
skip() { echo "SKIP: $*"; exit 77; }
accel=${BENCH_ACCEL:-tcg}
for p in qemu-system-x86_64 mkfs.erofs cpio dpkg-deb; do
  command -v "$p" >/dev/null 2>&1 || skip "$p not found"
done
deb=$(ls "$guest"/cache/linux-image-*.deb 2>/dev/null | tail -n1)
[ -n "$deb" ] && [ -f "$guest/vmlinux" ] || skip "build the Linux test guest first (target guest_linux)"
src=/usr/lib/python3.11
[ -d "$src" ] || src=$(ls -d /usr/lib/python3.* | head -1)
tmp=$(mktemp -d /tmp/ember-bench-boot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- the image: the same ~56 MB layer as bench_rootfs.sh ----
tar -C / -czf "$tmp/layer.tgz" "${src#/}" bin/busybox
layer="$tmp/layer.tgz@application/vnd.oci.image.layer.v1.tar+gzip"
big=$(cd / && find "${src#/}" -type f -size +500k -size -1000k | head -n1)
"$tool" build "$tmp/cache" sha256:00000000000000000000000000000000000000000000000000000000000000aa \
  "$layer" >"$tmp/build.out"
img=$(sed -n 's/^path=//p' "$tmp/build.out")
mkdir "$tmp/stage"
"$tool" stage "$tmp/stage" "$layer" >/dev/null
mkfs.erofs --quiet --all-root "$tmp/root.erofs" "$tmp/stage" >/dev/null 2>&1

# ---- initramfs: busybox + the modules + /init ----
dpkg-deb -x "$deb" "$tmp/k"
kver=$(ls "$tmp/k/lib/modules")
ir="$tmp/ir"
mkdir -p "$ir/bin" "$ir/m" "$ir/proc" "$ir/dev" "$ir/sys" "$ir/newroot" "$ir/lower" "$ir/scratch"
cp /bin/busybox "$ir/bin/busybox"
for a in sh mount insmod cat cut mkdir echo chroot poweroff sleep; do ln -s busybox "$ir/bin/$a"; done
mods="virtio_ring virtio virtio_mmio virtio_blk crc16 mbcache crc32c_generic libcrc32c jbd2 ext4 erofs overlay"
for m in $mods; do
  f=$(find "$tmp/k/lib/modules/$kver" -name "$m.ko" | head -n1)
  [ -n "$f" ] && cp "$f" "$ir/m/$m.ko"
done
cat >"$ir/init" <<EOF
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
up() { cut -d' ' -f1 /proc/uptime; }
mode=\$(cat /proc/cmdline | sed -n 's/.*rootmode=\([a-z0-9]*\).*/\1/p')
t0=\$(up)
for m in virtio_ring virtio virtio_mmio virtio_blk crc16 mbcache crc32c_generic libcrc32c jbd2 ext4; do
  insmod /m/\$m.ko 2>/dev/null
done
if [ "\$mode" = erofs ]; then insmod /m/erofs.ko; insmod /m/overlay.ko; fi
t1=\$(up)
if [ "\$mode" = erofs ]; then
  mount -t erofs -o ro /dev/vda /lower
  mount -t ext4 /dev/vdb /scratch
  mkdir -p /scratch/upper /scratch/work
  mount -t overlay root -o lowerdir=/lower,upperdir=/scratch/upper,workdir=/scratch/work /newroot
else
  mount -t ext4 /dev/vda /newroot
fi
t2=\$(up)
chroot /newroot /bin/busybox true
t3=\$(up)
echo x >> /newroot/$big
t4=\$(up)
echo "EMBER-BOOT mode=\$mode start=\$t0 modules_done=\$t1 mounted=\$t2 first_exec=\$t3 first_write=\$t4"
poweroff -f
EOF
sed -i 's/sed -n/busybox sed -n/' "$ir/init"
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$tmp/initrd.gz"

# Under TCG the kernel needs the TSC frequency (test/guests/linux/README.md).
khz=$(cd "$(dirname "$0")/../guests" && python3 -c 'import guest_shell; print(guest_shell.host_tsc_khz())')
boot() { # boot MODE DISK... -> prints the guest's line and the host wall time
  mode="$1"
  shift
  drives=""
  i=0
  for d in "$@"; do
    drives="$drives -drive file=$d,if=none,id=d$i,format=raw -device virtio-blk-device,drive=d$i"
    i=$((i + 1))
  done
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  timeout 180 qemu-system-x86_64 -M microvm -accel "$accel" -m 256 -smp 1 -nodefaults \
    -no-user-config -nographic -no-reboot -kernel "$guest/vmlinux" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet tsc_early_khz=$khz rootmode=$mode" -serial "file:$tmp/con-$mode.log" \
    $drives >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  line=$(grep -a EMBER-BOOT "$tmp/con-$mode.log" | tr -d '\r' || true)
  [ -n "$line" ] || { echo "$mode: no EMBER-BOOT line; console:"; tail -n 20 "$tmp/con-$mode.log"; return; }
  echo "$line" | awk -v accel="$accel" -v wall=$(( (t1 - t0) / 1000000 )) '{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "%-5s (" accel ") guest: /init at %.2f s of uptime, modules %4.0f ms, mount %4.0f ms, first exec %4.0f ms, first write (700 KB file) %4.0f ms; qemu start to poweroff %d ms\n",
      v["mode"], v["start"], (v["modules_done"] - v["start"]) * 1000, (v["mounted"] - v["modules_done"]) * 1000,
      (v["first_exec"] - v["mounted"]) * 1000, (v["first_write"] - v["first_exec"]) * 1000, wall }'
}
"$tool" clone "$img" "$tmp/inst.ext4" >/dev/null
truncate -s 256M "$tmp/scratch.ext4"
mkfs.ext4 -F -q -b 4096 -m 0 -E lazy_itable_init=0,lazy_journal_init=1 "$tmp/scratch.ext4"
boot ext4 "$tmp/inst.ext4"
boot erofs "$tmp/root.erofs" "$tmp/scratch.ext4"
echo "host space after boot: ext4 copy $(du -k "$tmp/inst.ext4" | cut -f1) KiB; erofs scratch $(du -k "$tmp/scratch.ext4" | cut -f1) KiB (+ shared $(du -k "$tmp/root.erofs" | cut -f1) KiB)"
