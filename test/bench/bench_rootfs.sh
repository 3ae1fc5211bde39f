#!/bin/sh
# bench_rootfs.sh: ext4 (mkfs.ext4 -d + libext2fs metadata pass, what
# agent/image builds) versus erofs (mkfs.erofs, read-only, plus a per-instance
# writable ext4 scratch disk for an overlay in the guest), on the same staged
# layers. Prints figures only (no assertions: shared, noisy machines); the
# reading of them is in docs/rootfs.md.
#
#   test/bench/bench_rootfs.sh BUILD/test/test_rootfs_tool [LAYER...]
#
# Without LAYERs the image is ~56 MB: this host's /usr/lib/python3.11 (the
# Python standard library, ~1,500 entries) plus /bin/busybox, as one
# tar+gzip layer. One run of each; run it again for a second sample.
set -eu
tool="$1"
shift
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
for p in mkfs.ext4 mkfs.erofs; do
  command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not found (e2fsprogs, erofs-utils)"; exit 77; }
done
tmp=$(mktemp -d /tmp/ember-bench-rootfs-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

us() { date +%s%N | cut -c1-16; } # microseconds
alloc_kib() { du -k "$1" | cut -f1; }
apparent_kib() { echo $(( $(stat -c %s "$1") / 1024 )); }

if [ $# -eq 0 ]; then
  src=/usr/lib/python3.11
  [ -d "$src" ] || src=$(ls -d /usr/lib/python3.* | head -1)
  tar -C / -czf "$tmp/layer.tgz" "${src#/}" bin/busybox
  set -- "$tmp/layer.tgz@application/vnd.oci.image.layer.v1.tar+gzip"
fi
layer_kib=0
for l in "$@"; do layer_kib=$((layer_kib + $(du -k "${l%@*}" | cut -f1))); done
echo "layers: $# file(s), ${layer_kib} KiB compressed"

digest=sha256:$(cat "${1%@*}" | sha256sum | cut -c1-64)
# ---- ext4: what img_rootfs_build does, end to end ----
"$tool" build "$tmp/cache" "$digest" "$@" >"$tmp/ext4.out"
img=$(sed -n 's/^path=//p' "$tmp/ext4.out")
get() { sed -n "s/^$1=//p" "$tmp/ext4.out"; }
echo "tree: $(get entries) entries, $(( $(get content_bytes) / 1024 )) KiB of file content"
echo "ext4  build: apply $(( $(get apply_us) / 1000 )) ms + mkfs.ext4 -d $(( $(get mkfs_us) / 1000 )) ms + metadata pass $(( $(get fixup_us) / 1000 )) ms = $(( $(get total_us) / 1000 )) ms"
echo "ext4  image: apparent $(apparent_kib "$img") KiB (content + headroom), allocated $(alloc_kib "$img") KiB"
t0=$(us); "$tool" build "$tmp/cache" "$digest" "$@" >/dev/null; t1=$(us)
echo "ext4  cached lookup: $(( (t1 - t0) / 1000 )) ms"
"$tool" clone "$img" "$tmp/inst.ext4" >"$tmp/clone.out"
echo "ext4  per instance: $(sed -n 's/^method=//p' "$tmp/clone.out") copy $(( $(sed -n 's/^us=//p' "$tmp/clone.out") / 1000 )) ms, allocated $(alloc_kib "$tmp/inst.ext4") KiB; guest: mount ext4 rw, nothing else"

# ---- erofs: same staged tree ----
mkdir "$tmp/stage"
t0=$(us); "$tool" stage "$tmp/stage" "$@" >/dev/null; t1=$(us)
apply_ms=$(( (t1 - t0) / 1000 ))
for z in none lz4hc; do
  zopt=""
  [ "$z" = none ] || zopt="-z$z"
  t0=$(us)
  # --all-root: the staging tree is owned by the builder; erofs-utils 1.5 has
  # no way to take owners/devices/xattrs from anywhere else.
  mkfs.erofs --quiet --all-root $zopt "$tmp/img-$z.erofs" "$tmp/stage" >/dev/null 2>&1
  t1=$(us)
  echo "erofs build ($z): apply $apply_ms ms + mkfs.erofs $(( (t1 - t0) / 1000 )) ms; image $(apparent_kib "$tmp/img-$z.erofs") KiB apparent, $(alloc_kib "$tmp/img-$z.erofs") KiB allocated"
done
t0=$(us)
truncate -s 256M "$tmp/scratch.ext4"
mkfs.ext4 -F -q -b 4096 -m 0 -E lazy_itable_init=0,lazy_journal_init=1 "$tmp/scratch.ext4"
t1=$(us)
echo "erofs per instance: shared read-only image + a 256 MiB writable scratch ext4: mkfs $(( (t1 - t0) / 1000 )) ms, allocated $(alloc_kib "$tmp/scratch.ext4") KiB; guest: erofs + ext4 + overlay modules, 3 mounts"
