#!/usr/bin/env bash
# Pull benchmark: the same multi-layer image from a local registry, timed from `shifterimg pull`
# to READY through our gateway, next to upstream's pipeline in the same run:
#   skopeo copy docker://... oci:... ; umoci unpack ; mksquashfs (default compression: gzip)
# Each side starts with empty caches. Prints wall times, the ratio and the image sizes.
# Usage (as root): bash bench/pull.sh [ROUNDS]   (default 3 rounds, alternating the two sides)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
WORK=$(mktemp -d /tmp/shifter-bench.XXXXXX)
chmod 0755 "$WORK"
. scripts/lib/services.sh
trap 'stop_services; rm -rf "$WORK"' EXIT

start_registry
start_munged
bash bench/make-big-image.sh "$WORK/oci" >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:1.0" "docker://$REGISTRY_HOST/bench/usr:1.0"
compressed=$(du -sb "$WORK/oci/blobs" | cut -f1)

write_gateway_config() {
  mkdir -p "$1/images" "$1/cache" "$1/expand"
  cat > "$1/imagemanager.json" <<JSON
{
  "WorkerThreads": 1,
  "DefaultImageLocation": "$REGISTRY_HOST",
  "DefaultImageFormat": "squashfs",
  "CacheDirectory": "$1/cache",
  "ExpandDirectory": "$1/expand",
  "Locations": { "$REGISTRY_HOST": { "remotetype": "dockerv2", "url": "http://$REGISTRY_HOST" } },
  "Platforms": { "bench": { "mungeSocketPath": "$MUNGE_SOCKET", "accesstype": "local",
                            "admins": ["root"], "local": { "imageDir": "$1/images" } } }
}
JSON
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ours=() upstream=() convert=()
for r in $(seq 1 "$rounds"); do
  d=$WORK/ours-$r; mkdir -p "$d"
  write_gateway_config "$d"
  start_gateway "$d/imagemanager.json"
  printf 'system=bench\nimageGateway=%s\nmungeSocketPath=%s\n' "$GATEWAY_URL" "$MUNGE_SOCKET" > "$d/udiRoot.conf"
  t0=$(now)
  bin/shifterimg --config "$d/udiRoot.conf" pull bench/usr:1.0 >/dev/null
  t1=$(now)
  ours+=("$(elapsed "$t0" "$t1")")
  ours_size=$(du -b "$d"/images/*.squashfs | cut -f1)
  convert+=("$(grep -o '"seconds":[0-9.]*' "$WORK/gateway.log" | tail -n 1 | cut -d: -f2)")
  kill "${SERVICE_PIDS[-1]}"; wait "${SERVICE_PIDS[-1]}" 2>/dev/null || true; unset 'SERVICE_PIDS[-1]'

  u=$WORK/upstream-$r; mkdir -p "$u"
  t0=$(now)
  skopeo copy --quiet --src-tls-verify=false "docker://$REGISTRY_HOST/bench/usr:1.0" "oci:$u/oci:image"
  umoci unpack --rootless --image "$u/oci:image" "$u/expand" >/dev/null
  mksquashfs "$u/expand/rootfs" "$u/image.squashfs" -all-root -no-xattrs -no-progress >/dev/null
  t1=$(now)
  upstream+=("$(elapsed "$t0" "$t1")")
  upstream_size=$(du -b "$u/image.squashfs" | cut -f1)
  rm -rf "$u"
done

# Decompression alone, with the gateway's decompressor (Node zlib), one layer after another.
decompress_seconds=$(node -e '
  const { createReadStream, readdirSync, statSync } = require("node:fs");
  const { createGunzip } = require("node:zlib");
  const dir = process.argv[1];
  const blobs = readdirSync(dir).map((n) => dir + "/" + n).filter((p) => statSync(p).size > 1 << 20);
  const t0 = process.hrtime.bigint();
  (async () => {
    for (const p of blobs) await new Promise((res, rej) => createReadStream(p).pipe(createGunzip()).on("data", () => {}).on("end", res).on("error", rej));
    console.log((Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2));
  })();' "$WORK/oci/blobs/sha256")

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mo=$(median "${ours[@]}"); mu=$(median "${upstream[@]}")
echo "image: 4 layers, $((compressed / 1000000)) MB compressed (OCI blobs)"
echo "shifterimg pull -> READY (gateway: streaming flatten + tar2sqfs zstd): ${ours[*]} s; median $mo s; squashfs $((ours_size / 1000000)) MB"
echo "upstream pipeline (skopeo copy + umoci unpack + mksquashfs gzip):      ${upstream[*]} s; median $mu s; squashfs $((upstream_size / 1000000)) MB"
echo "  of which conversion (flatten + tar2sqfs): ${convert[*]} s; layer decompression alone (zlib, serial): $decompress_seconds s"
echo "ratio upstream/ours: $(awk -v u="$mu" -v o="$mo" 'BEGIN { printf "%.1f", u / o }')x"
