#!/bin/sh
# ember tiny guest builder: OUTDIR/tiny.elf from tiny.S with the installed GNU as/ld.
# Usage: build.sh OUTDIR. Rebuilds only when tiny.S, tiny.ld or this script is newer.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
if [ -f "$OUT/tiny.elf" ] && [ "$OUT/tiny.elf" -nt "$SRC/tiny.S" ] &&
	[ "$OUT/tiny.elf" -nt "$SRC/tiny.ld" ] && [ "$OUT/tiny.elf" -nt "$SRC/build.sh" ]; then
	exit 0
fi
as --64 -o "$OUT/tiny.o" "$SRC/tiny.S"
ld -m elf_x86_64 -nostdlib -n -z noexecstack --no-warn-rwx-segments -T "$SRC/tiny.ld" -o "$OUT/tiny.elf.tmp" "$OUT/tiny.o"
strip -s "$OUT/tiny.elf.tmp" 2>/dev/null || true
mv "$OUT/tiny.elf.tmp" "$OUT/tiny.elf"
rm -f "$OUT/tiny.o"
echo "guest_tiny: $OUT/tiny.elf ($(wc -c <"$OUT/tiny.elf") bytes)" >&2
