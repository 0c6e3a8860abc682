#!/usr/bin/env bash
# Many nodes, one gateway (issue 12): N nodes on this machine (a network namespace each, on one
# bridge, each with its own shifterd, lazy cache and FUSE server: test/helpers/cluster.ts) start the
# job `python3 -c 'import json, email'` at once from an image none of them has, as the ordinary user
# shiftertest1. For N in NODES and each of: whole-file copy per node, lazy direct to the gateway,
# lazy through one nginx cache, lazy through two cache levels (a per-rack nginx per 8 nodes in front
# of a site nginx), lazy with the profile pre-staged through the site cache (bench/many-nodes.ts says
# what each does): the time from "all nodes start" to "all commands exited", and the bytes the
# gateway sent (its /metrics). Writes the table to stdout and a PNG of both against N (gnuplot).
# Image: bench/make-lazy-image.sh's (python3.11 plus /usr/include, /usr/lib/gcc, /usr/bin and 200 MiB
# of random bytes, ~850 MiB unpacked; zstd at mksquashfs's default level); --quick: python alone.
# Everything started is stopped by pid; the namespaces, links, mounts and the work dir are removed.
# Usage (as root, after npm run build):
#   bash bench/many-nodes.sh [--quick] [--nodes 1,8,32,64] [--modes m,m] [--png bench/many-nodes.png]
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
NODES=1,8,32,64
MODES=copy,lazy-direct,lazy-cache,lazy-2level,lazy-prestaged
PNG=bench/many-nodes.png
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --nodes) NODES=${2:?--nodes needs a list, e.g. 1,8}; shift ;;
    --modes) MODES=${2:?--modes needs a list, e.g. lazy-cache,copy}; shift ;;
    --png) PNG=${2:?--png needs a path}; shift ;;
    *) echo "many-nodes.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
  shift
done
[[ $NODES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "many-nodes.sh: --nodes '$NODES' is not like 1,8,32" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "many-nodes.sh: run as root (network namespaces, shifterd, a user)" >&2; exit 2; }
for f in dist/bench/many-nodes.js dist/node-daemon/main.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "many-nodes.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in mksquashfs unsquashfs nsenter setpriv ip tc nginx gnuplot munged node; do
  command -v "$tool" >/dev/null || { echo "many-nodes.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done
[ -e /dev/fuse ] || { echo "many-nodes.sh: /dev/fuse is missing: modprobe fuse" >&2; exit 2; }

WORK=$(mktemp -d /tmp/shifter-many-nodes-bench.XXXXXX)
chmod 0755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "== machine"
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "nproc: $(nproc)   memory: $(free -g | awk '/^Mem:/ {print $2}') GiB   kernel: $(uname -r)   cpu: $CPU"
echo "node $(node --version)   $(nginx -v 2>&1)   load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
PROBE=mnprobe$$
ip link add "$PROBE" type veth peer name "${PROBE}p"
if tc qdisc add dev "$PROBE" root netem delay 1ms 2>/dev/null; then
  echo "tc netem: available"
else
  echo "tc netem: not in this kernel (links are not delayed; tbf rate limits work)"
fi
ip link delete "$PROBE"

echo
echo "== image"
if [ "$QUICK" = 1 ]; then
  IMAGE=$WORK/python.squashfs
  bash bench/make-python-image.sh "$IMAGE"
else
  IMAGE=$WORK/image.squashfs
  bash bench/make-lazy-image.sh "$IMAGE"
fi
chmod 0644 "$IMAGE"
IMAGE_BYTES=$(stat -c %s "$IMAGE")
echo "$((IMAGE_BYTES / 1048576)) MiB squashfs$([ "$QUICK" = 1 ] && echo ' (--quick: python alone)')"

echo
echo "== rounds (N nodes x mode; each from cold nodes and fresh caches)"
# A failed round is reported and left out; the rounds that passed are still summarized and plotted.
STATUS=0
node dist/bench/many-nodes.js --image "$IMAGE" --nodes "$NODES" --modes "$MODES" --out "$WORK/out" \
  -- python3 -c 'import json, email' || STATUS=$?
TSV=$WORK/out/results.tsv

echo
echo "== summary (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
node - "$TSV" "$IMAGE_BYTES" <<'JS'
const fs = require('fs');
const [tsv, imageBytes] = process.argv.slice(2);
const rows = fs.readFileSync(tsv, 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'));
const mib = (b) => (Number(b) / 1048576).toFixed(1);
const byMode = new Map();
console.log('| N | mode | all started to all exited | gateway sent | nodes hold (distinct) | RSS/node | load |');
console.log('|---|---|---|---|---|---|---|');
for (const [n, mode, ms, stageMs, , bytes, distinct, rss, load] of rows) {
  const stage = mode === 'lazy-prestaged' ? ` (+ stage ${(stageMs / 1000).toFixed(2)} s)` : '';
  console.log(`| ${n} | ${mode} | ${(ms / 1000).toFixed(2)} s${stage} | ${mib(bytes)} MiB | ${mib(distinct)} MiB |` +
    ` ${mib(rss)} MiB | ${load} |`);
  if (!byMode.has(mode)) byMode.set(mode, []);
  byMode.get(mode).push({ n: Number(n), ms: Number(ms), bytes: Number(bytes), distinct: Number(distinct) });
}
console.log(`image: ${mib(imageBytes)} MiB`);
for (const mode of ['lazy-cache', 'lazy-2level', 'lazy-prestaged']) {
  const r = byMode.get(mode);
  if (!r) continue;
  const ws = Math.max(...r.map((x) => x.distinct));
  const worst = Math.max(...r.map((x) => x.bytes / ws));
  console.log(`${mode}: gateway bytes at most ${worst.toFixed(2)}x the working set (${mib(ws)} MiB) over N = ` +
    `${r.map((x) => x.n).join(', ')}: target <= 1.1x ${worst <= 1.1 ? 'MET' : 'NOT MET'}`);
  const first = r[0], last = r[r.length - 1];
  if (last.n > first.n) {
    const growth = last.ms / first.ms;
    const log = Math.log2(last.n / first.n) + 1;
    console.log(`${mode}: time x${growth.toFixed(2)} from N=${first.n} to N=${last.n} ` +
      `(log2 growth allows x${log.toFixed(1)}): ${growth <= log ? 'MET' : 'NOT MET'}`);
  }
}
JS

mkdir -p "$(dirname "$PNG")"
gnuplot <<GP
set terminal pngcairo size 1200,500 font ",10"
set output "$PNG"
set datafile separator "\t"
set key top left
set logscale x 2
set grid
set multiplot layout 1,2 title "Many nodes, one gateway: $((IMAGE_BYTES / 1048576)) MiB image, python3 -c 'import json, email'"
set xlabel "nodes (N)"
set ylabel "all started to all exited (s)"
plot for [m in "$(tr , ' ' <<<"$MODES")"] "< awk -F'\t' -v m=".m." '\$2==m' $TSV" using 1:(\$3/1000) with linespoints title m
set ylabel "bytes sent by the gateway (MiB)"
set logscale y 10
plot for [m in "$(tr , ' ' <<<"$MODES")"] "< awk -F'\t' -v m=".m." '\$2==m' $TSV" using 1:(\$6/1048576) with linespoints title m
unset multiplot
GP
echo "plot: $PNG"
exit "$STATUS"
