#!/usr/bin/env bash
# A small squashfs image with this machine's python3.11 (interpreter, standard library with its
# .pyc files, the shared libraries ldd lists for it and its extension modules) and a static
# busybox for /bin/sh, /bin/true and a few tools. Merged-/usr layout like Debian 12.
# Usage: bash bench/make-python-image.sh OUT.squashfs   (prints nothing; OUT is overwritten)
set -euo pipefail
out=${1:?usage: make-python-image.sh OUT.squashfs}
python=/usr/bin/python3.11
stdlib=/usr/lib/python3.11
busybox=/bin/busybox
for f in "$python" "$busybox"; do
  [ -x "$f" ] || { echo "make-python-image: $f is missing (apt-get install python3 busybox-static)" >&2; exit 2; }
done
file -L "$busybox" | grep -q 'statically linked' \
  || { echo "make-python-image: $busybox is not static (apt-get install busybox-static)" >&2; exit 2; }

root=$(mktemp -d "$(dirname "$out")/python-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"  # mktemp made it 0700: it becomes the image's /
mkdir -p "$root"/usr/{bin,lib,lib64} "$root"/{etc,tmp,proc,dev,var/tmp,home}
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp" "$root/var/tmp"

cp "$python" "$root/usr/bin/python3.11"
ln -s python3.11 "$root/usr/bin/python3"
# The whole standard library (tests excluded if present), so any import works as on the host.
tar -C / --exclude='usr/lib/python3.11/test' -cf - "${stdlib#/}" | tar -C "$root" -xf -

cp "$busybox" "$root/usr/bin/busybox"
for applet in sh true false env cat ls id echo; do ln -s busybox "$root/usr/bin/$applet"; done

# Libraries at the paths ldd prints (through the merged-/usr symlinks made above).
libs=$( { ldd "$python"; find "$stdlib/lib-dynload" -name '*.so' -exec ldd {} +; } 2>/dev/null \
  | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u)
for lib in $libs; do
  real=$(readlink -f "$lib")
  mkdir -p "$root$(dirname "$real")"
  [ -e "$root$real" ] || cp "$real" "$root$real"
  [ "$real" = "$lib" ] || [ -e "$root$lib" ] || ln -s "$real" "$root$lib"
done
printf 'NAME="shifter runtime benchmark image (python3.11 + busybox)"\n' > "$root/etc/os-release"

rm -f "$out"
mksquashfs "$root" "$out" -all-root -no-xattrs -quiet -noappend -comp zstd >/dev/null
