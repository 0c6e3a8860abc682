#!/usr/bin/env bash
# The lazy-cache benches' image (bench/lazy.sh, bench/many-nodes.sh): this machine's python3.11
# (bench/make-python-image.sh) plus /usr/include, /usr/lib/gcc and /usr/bin (the content of
# bench/make-big-image.sh) and /data/big, 200 MiB of random bytes: about 850 MiB unpacked.
# Usage: bash bench/make-lazy-image.sh OUT.squashfs [ZSTD_LEVEL]
#   ZSTD_LEVEL: mksquashfs's zstd level (default: mksquashfs's own; the gateway converts with 3).
# Prints one line, "<n> MiB squashfs, <m> MiB unpacked"; OUT is overwritten.
set -euo pipefail
out=${1:?usage: make-lazy-image.sh OUT.squashfs [ZSTD_LEVEL]}
level=${2:-}
here=$(dirname "$0")
work=$(mktemp -d "$(dirname "$out")/.make-lazy-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
bash "$here/make-python-image.sh" "$work/python.squashfs"
root=$work/rootfs
unsquashfs -q -n -d "$root" "$work/python.squashfs" >/dev/null
rm "$work/python.squashfs"
# -n keeps the image's busybox applets in /usr/bin.
for d in /usr/include /usr/lib/gcc /usr/bin; do
  mkdir -p "$root$d"
  cp -an "$d/." "$root$d/"
done
mkdir -p "$root/data"
head -c $((200 * 1024 * 1024)) /dev/urandom > "$root/data/big"
unpacked=$(du -sb "$root" | cut -f1)
mksquashfs "$root" "$out" -all-root -no-xattrs -quiet -noappend -comp zstd ${level:+-Xcompression-level "$level"} >/dev/null
echo "$(($(stat -c %s "$out") / 1048576)) MiB squashfs, $((unpacked / 1048576)) MiB unpacked"
