#!/usr/bin/env bash
# make-demo-image.sh DIR: an OCI layout at DIR with tag 1.0, a busybox userland and an
# /etc/os-release, built with umoci (no Docker engine, no network).
set -euo pipefail
out=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/etc"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for cmd in sh cat ls id echo env pwd true false sleep grep wc head; do ln -s busybox "$tmp/rootfs/bin/$cmd"; done
cat > "$tmp/rootfs/etc/os-release" <<'OS'
PRETTY_NAME="Shifter demo image (busybox)"
NAME="shifter-demo"
ID=shifter-demo
VERSION_ID=1.0
OS
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:1.0"
umoci insert --image "$out:1.0" "$tmp/rootfs" /
umoci config --image "$out:1.0" --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.cmd /bin/sh
umoci gc --layout "$out"
