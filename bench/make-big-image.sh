#!/usr/bin/env bash
# make-big-image.sh DIR: an OCI layout at DIR (tag 1.0) of four gzip layers copied from this
# machine's /usr (compilers' headers and libraries, Python, binaries): a realistic mix of many
# small files and some large ones, about 170 MB compressed / 600 MB unpacked.
set -euo pipefail
out=$1
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:1.0"
layer() {
  local tmp; tmp=$(mktemp -d)
  mkdir -p "$tmp$1"
  cp -a "$1/." "$tmp$1/"
  umoci insert --image "$out:1.0" "$tmp" /
  rm -rf "$tmp"
}
layer /usr/include
layer /usr/lib/gcc
layer /usr/lib/python3.11
layer /usr/bin
umoci config --image "$out:1.0" --config.env PATH=/usr/bin:/bin --config.cmd /usr/bin/python3
umoci gc --layout "$out"
