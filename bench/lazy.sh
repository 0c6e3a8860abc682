#!/usr/bin/env bash
# The lazy image cache's figures (issue 10) against the real gateway, all sides in one run, on one
# image (bench/make-lazy-image.sh): this machine's python3.11 plus /usr/include, /usr/lib/gcc and
# /usr/bin and a 200 MiB file of random bytes, about 850 MiB unpacked, a ~420 MiB squashfs
# (mksquashfs, zstd level 3 as the gateway's conversion).
# The job is `python3 -c 'import json, email'`, run as the ordinary user shifterbench through
# bin/shifter and a real shifterd.
# Image side: bin/shifter-gateway with an imagemanager.json of its own and a munged of its own;
# the squashfs is imported with the gateway's doimport route (an admin's munge credential), the
# chunk index made by the gateway on the first request. Nodes use the chunk routes with a node
# token, as in production. Bytes are counted at the gateway (`/metrics`,
# shifter_gateway_chunk_bytes_sent_total): what reached the gateway.
#   cold (a node whose shifterd was stopped, with its chunk store and imagePath emptied), per round
#   and per link (loopback, then 2 ms and 10 ms RTT at 1 Gbit/s through bench/lazy-link.ts, a
#   user-space relay: this kernel has no qdisc that delays packets, see below):
#     lazy without a prefetch profile (the gateway's profile reset first; this run records one),
#     lazy with the recorded profile, whole-file copy first (bench/lazy-copy-first.ts: every chunk
#     from the gateway into imagePath, then the launch) and, on loopback, the local file (already
#     in imagePath, its page cache dropped); time from the start of `shifter` (or of the copy) to
#     the command's exit, bytes from the gateway over the node's whole life;
#   nginx (test/helpers/nginx-cache.ts's config, a fresh cache each round) in front of the gateway:
#     node 1 cold start, then a second node (its own shifterd, socket and empty chunk store) cold
#     start; gateway bytes and time for each;
#   warm (every chunk staged with shifterd-cache stage, image mounted): lazy node (the image then
#     kept whole, its loop device on that local file) vs a node with the local file in imagePath vs
#     a node whose lazyImageCacheSize (600m) is too small to keep the 420 MiB image whole (every
#     chunk cached, reads through FUSE: what every lazy node did before whole images), the python
#     import and a sequential read of the 200 MiB file (page cache dropped before each read, so it
#     goes to the whole file, the local file or FUSE and the chunk store; 10 runs a round per side:
#     a dropped-cache read varies 2x run to run here).
# Everything started here is stopped by pid; the work directory is removed, also on failure.
# Usage (as root): bash bench/lazy.sh [ROUNDS]   (default 3; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "lazy.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "lazy.sh: run as root (it starts shifterd and makes a user)" >&2; exit 2; }
for f in dist/node-daemon/main.js dist/gateway/main.js dist/bench/lazy-link.js dist/bench/lazy-copy-first.js \
  dist/bench/lazy-nginx.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "lazy.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in hyperfine mksquashfs unsquashfs setpriv curl node munge munged /usr/sbin/nginx; do
  command -v "$tool" >/dev/null || { echo "lazy.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done
[ -e /dev/fuse ] || { echo "lazy.sh: /dev/fuse is missing: modprobe fuse" >&2; exit 2; }

BENCH_USER=shifterbench
id "$BENCH_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$BENCH_USER"
BENCH_UID=$(id -u "$BENCH_USER")
BENCH_GID=$(id -g "$BENCH_USER")

WORK=$(mktemp -d /tmp/shifter-lazy-bench.XXXXXX)
chmod 0755 "$WORK"
mkdir -p "$WORK/tmp"
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
declare -A NODE_PID=()
stop_node() {
  local pid=${NODE_PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  NODE_PID[$1]=
}
cleanup() {
  local rc=$? node
  if [ "$rc" != 0 ]; then
    echo "lazy.sh: failed (exit $rc); the ends of the logs:" >&2
    for log in "$WORK"/nodes/*/shifterd.log "$WORK/gateway.log"; do
      [ -s "$log" ] && { echo "-- $log" >&2; tail -n 15 "$log" | cut -c1-600 >&2; }
    done
  fi
  for node in "${!NODE_PID[@]}"; do stop_node "$node"; done
  stop_services
  rm -rf "$WORK"
}
trap cleanup EXIT

# A snapshot of the build, laid out like the checkout, so a rebuild during the run mixes nothing.
REPO=$WORK/tree
mkdir -p "$REPO/native"
cp -a dist bin proto package.json "$REPO/"
cp -a native/build "$REPO/native/"
ln -s "$PWD/node_modules" "$REPO/node_modules"

echo "== machine"
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $CPU   node $(node --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# Whether a qdisc could delay packets, asked in a namespace of our own (never on the host's lo).
NETNS=shifter-lazy-bench-$$
if ip netns add "$NETNS" 2>/dev/null; then
  NETEM=$(ip netns exec "$NETNS" tc qdisc add dev lo root netem delay 1ms 2>&1 && echo "works" || true)
  ip netns del "$NETNS"
else
  NETEM="not asked (no network namespace)"
fi
echo "tc qdisc add dev lo root netem delay 1ms (in a netns): ${NETEM:-no answer}; links: user-space relay"

echo
echo "== image"
IMAGE_FILE=$WORK/image.squashfs
bash bench/make-lazy-image.sh "$IMAGE_FILE" 3
IMAGE_BYTES=$(stat -c %s "$IMAGE_FILE")

echo
echo "== gateway"
start_munged
SYSTEM=bench
mkdir -p "$WORK/gw/images" "$WORK/gw/cache" "$WORK/gw/expand"
cat > "$WORK/gw/imagemanager.json" <<JSON
{
  "WorkerThreads": 1,
  "DefaultImageLocation": "unused",
  "DefaultImageFormat": "squashfs",
  "Authentication": "munge",
  "CacheDirectory": "$WORK/gw/cache",
  "ExpandDirectory": "$WORK/gw/expand",
  "Locations": { "unused": { "remotetype": "dockerv2", "url": "http://127.0.0.1:9" } },
  "Platforms": { "$SYSTEM": { "mungeSocketPath": "$MUNGE_SOCKET", "accesstype": "local",
                              "admins": ["root"], "local": { "imageDir": "$WORK/gw/images" } } }
}
JSON
GW_PORT=$(free_port)
"$REPO/bin/shifter-gateway" --config "$WORK/gw/imagemanager.json" --listen "127.0.0.1:$GW_PORT" \
  >"$WORK/gateway.log" 2>&1 &
SERVICE_PIDS+=($!)
GATEWAY=http://127.0.0.1:$GW_PORT
wait_for "shifter-gateway" curl -sf "$GATEWAY/"
cred() { munge -n --socket="$MUNGE_SOCKET"; }
TAG=bench/lazy:1
curl -sf -o /dev/null -X POST -H "authentication: $(cred)" -H 'content-type: application/json' \
  -d "{\"filepath\": \"$IMAGE_FILE\", \"format\": \"squashfs\", \"ENV\": [\"PATH=/usr/bin:/bin\"]}" \
  "$GATEWAY/api/doimport/$SYSTEM/docker/$TAG/"
IMAGE_ID=
for _ in $(seq 1 600); do
  IMAGE_ID=$(curl -s -H "authentication: $(cred)" "$GATEWAY/api/lookup/$SYSTEM/docker/$TAG/" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const r=JSON.parse(s);
      if(r.status==="READY")console.log(r.id)}catch{}})')
  [ -n "$IMAGE_ID" ] && break
  sleep 0.5
done
[ -n "$IMAGE_ID" ] || { echo "lazy.sh: the gateway did not import $IMAGE_FILE in 5 minutes" >&2; exit 1; }
echo "imported as $TAG, id:$IMAGE_ID"
# gateway_bytes: image bytes the chunk route has sent so far; gateway_chunks: chunk answers.
metric() { curl -sf "$GATEWAY/metrics" | awk -v m="$1" '$1 == m { printf "%.0f\n", $2 }'; }
gateway_bytes() { metric shifter_gateway_chunk_bytes_sent_total; }
gateway_chunks() { metric 'shifter_gateway_chunk_answers_total{route="chunk"}'; }
gw_chunk_api() { curl -s -o "$WORK/answer" -w '%{http_code}' -X "$1" -H "authentication: $(cred)" \
  "$GATEWAY/api/chunks/$SYSTEM/$IMAGE_ID/profile"; }
reset_profile() {
  local code; code=$(gw_chunk_api DELETE)
  case $code in
    2?? | 404) ;;
    *) echo "lazy.sh: profile reset answered HTTP $code: $(cat "$WORK/answer")" >&2; exit 1 ;;
  esac
}
profile_chunks() {
  [ "$(gw_chunk_api GET)" = 200 ] || { echo 0; return; }
  node -p "JSON.parse(require('fs').readFileSync('$WORK/answer', 'utf8')).chunks.length"
}

RTTS=(2 10)
node "$REPO/dist/bench/lazy-link.js" "$GATEWAY" "${RTTS[@]}" > "$WORK/links.json" 2> "$WORK/links.log" &
SERVICE_PIDS+=($!)
wait_for "relay" test -s "$WORK/links.json"
link_url() {
  if [ "$1" = loopback ]; then echo "$GATEWAY"
  else node -p "JSON.parse(require('fs').readFileSync('$WORK/links.json', 'utf8'))['$1']"; fi
}

# node_conf NODE GATEWAY_URL [CACHE_SIZE]: a node whose images come from the gateway at that URL;
# its imagePath is its own directory (empty unless a side puts the image there).
node_conf() {
  local d=$WORK/nodes/$1
  mkdir -p "$d/run" "$d/images"
  chmod 0755 "$d" "$d/run" "$d/images"
  cat > "$d/udiRoot.conf" <<CONF
imagePath=$d/images
populateEtcDynamically=1
imageGateway=$2
system=$SYSTEM
mungeSocketPath=$MUNGE_SOCKET
lazyImageCache=$d/lazycache
lazyImageCacheSize=${3:-2g}
lazyChunkTimeout=30
CONF
  chmod 0644 "$d/udiRoot.conf"
}
start_node() {
  local d=$WORK/nodes/$1
  rm -f "$d/run/shifterd.sock" "$d/run/admin.sock"
  "$REPO/bin/shifterd" --config "$d/udiRoot.conf" --socket "$d/run/shifterd.sock" \
    --admin-socket "$d/run/admin.sock" >>"$d/shifterd.log" 2>&1 &
  NODE_PID[$1]=$!
  wait_for "shifterd $1" test -S "$d/run/shifterd.sock"
  wait_for "shifterd $1 admin socket" test -S "$d/run/admin.sock"
}
# cold_node NODE GATEWAY_URL [CACHE_SIZE]: shifterd stopped (it leaves no mount), chunk store and
# imagePath emptied.
cold_node() {
  stop_node "$1"
  rm -rf "$WORK/nodes/$1/lazycache" "$WORK/nodes/$1/images"
  node_conf "$1" "$2" "${3:-}"
  start_node "$1"
}
as_user() {
  local node=$1; shift
  (cd / && setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --init-groups -- \
    env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 SHIFTERD_SOCKET="$WORK/nodes/$node/run/shifterd.sock" "$@")
}
SHIFTER=$REPO/bin/shifter
PY="import json, email"
IMAGE=id:$IMAGE_ID
now_ms() { echo $(($(date +%s%N) / 1000000)); }
place_local() {
  local dir=$WORK/nodes/$1/images
  cp "$IMAGE_FILE" "$dir/.tmp-$IMAGE_ID.squashfs"
  cp "$WORK/gw/images/$IMAGE_ID.meta" "$dir/.tmp-$IMAGE_ID.meta"
  sync
  mv "$dir/.tmp-$IMAGE_ID.meta" "$dir/$IMAGE_ID.meta"
  mv "$dir/.tmp-$IMAGE_ID.squashfs" "$dir/$IMAGE_ID.squashfs"
}
RESULTS=$WORK/cold.tsv
: > "$RESULTS"
# record LINK SIDE MS BYTES
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"
  printf '  %-8s %-16s %6s ms  %7.1f MiB from the gateway\n' "$1" "$2" "$3" \
    "$(awk -v b="$4" 'BEGIN { print b / 1048576 }')"
}
# lazy_launch NODE: one timed launch of the job; sets LAUNCH_MS, prints shifterd's own "ready in".
lazy_launch() {
  local t0 t1
  t0=$(now_ms)
  as_user "$1" "$SHIFTER" --verbose --image="$IMAGE" python3 -c "$PY" 2> "$WORK/verbose"
  t1=$(now_ms)
  LAUNCH_MS=$((t1 - t0))
  sed -n 's/.*; ready in/    shifterd: ready in/p' "$WORK/verbose"
}

echo
echo "== sanity (as $BENCH_USER, lazily through the gateway)"
cold_node a "$GATEWAY"
as_user a "$SHIFTER" --image="$IMAGE" python3 -c "$PY; import sys; print('lazy python', sys.version.split()[0])"
stop_node a

for r in $(seq 1 "$ROUNDS"); do
  for NET in loopback "${RTTS[@]}"; do
    URL=$(link_url "$NET")
    echo
    echo "== cold round $r/$ROUNDS, link $NET (load $(cut -d' ' -f1 /proc/loadavg))"
    stop_node a
    reset_profile
    cold_node a "$URL"
    b0=$(gateway_bytes)
    lazy_launch a
    # The profile is sent at the end of its recording window (10 s after the first open).
    for _ in $(seq 1 300); do [ "$(profile_chunks)" != 0 ] && break; sleep 0.1; done
    chunks=$(profile_chunks)
    [ "$chunks" != 0 ] || { echo "lazy.sh: no prefetch profile was recorded" >&2; exit 1; }
    stop_node a
    record "$NET" lazy-no-profile "$LAUNCH_MS" $(($(gateway_bytes) - b0))
    echo "    profile recorded: $chunks chunks"

    cold_node a "$URL"
    b0=$(gateway_bytes)
    lazy_launch a
    stop_node a
    record "$NET" lazy-profile "$LAUNCH_MS" $(($(gateway_bytes) - b0))

    cold_node a "$URL"
    b0=$(gateway_bytes)
    t0=$(now_ms)
    node "$REPO/dist/bench/lazy-copy-first.js" "$URL" "$SYSTEM" "$IMAGE_ID" "$WORK/nodes/a/images" "$MUNGE_SOCKET" \
      > "$WORK/copy.json"
    t1=$(now_ms)
    as_user a "$SHIFTER" --image="$IMAGE" python3 -c "$PY"
    t2=$(now_ms)
    bytes=$(($(gateway_bytes) - b0))
    record "$NET" copy-first $((t2 - t0)) "$bytes"
    record "$NET" "  of which copy" $((t1 - t0)) "$bytes"
    echo "    copy helper: $(cat "$WORK/copy.json")"

    if [ "$NET" = loopback ]; then
      cold_node a "$URL"
      place_local a
      dd if="$WORK/nodes/a/images/$IMAGE_ID.squashfs" iflag=nocache count=0 status=none
      b0=$(gateway_bytes)
      t0=$(now_ms); as_user a "$SHIFTER" --image="$IMAGE" python3 -c "$PY"; t1=$(now_ms)
      record "$NET" local-file $((t1 - t0)) $(($(gateway_bytes) - b0))
    fi
  done
done
stop_node a

echo
echo "== nginx in front of the gateway: node 1 cold, then node 2 cold (profile of the last round kept)"
NGINX_RESULTS=$WORK/nginx.tsv
: > "$NGINX_RESULTS"
for r in $(seq 1 "$ROUNDS"); do
  # A file of its own each round: the shell truncates a reused one only once the helper has forked.
  NGINX_JSON=$WORK/nginx-$r.json
  TMPDIR=$WORK/tmp node "$REPO/dist/bench/lazy-nginx.js" "$GATEWAY" > "$NGINX_JSON" 2> "$WORK/nginx.log" &
  NGINX_HELPER=$!
  SERVICE_PIDS+=("$NGINX_HELPER")
  wait_for nginx test -s "$NGINX_JSON"
  NGINX_URL=$(node -p "JSON.parse(require('fs').readFileSync('$NGINX_JSON', 'utf8')).url")
  # nginx itself too, should its helper die without stopping it.
  SERVICE_PIDS+=("$(node -p "JSON.parse(require('fs').readFileSync('$NGINX_JSON', 'utf8')).pid")")
  for n in 1 2; do
    cold_node "nginx$n" "$NGINX_URL"
    b0=$(gateway_bytes); c0=$(gateway_chunks)
    lazy_launch "nginx$n"
    stop_node "nginx$n"
    bytes=$(($(gateway_bytes) - b0)); chunks=$(($(gateway_chunks) - c0))
    printf '%s\t%s\t%s\t%s\n' "$n" "$LAUNCH_MS" "$bytes" "$chunks" >> "$NGINX_RESULTS"
    printf '  round %s node %s: %6s ms, %7.1f MiB in %s chunk answers from the gateway\n' "$r" "$n" "$LAUNCH_MS" \
      "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" "$chunks"
  done
  kill "$NGINX_HELPER"
  wait "$NGINX_HELPER" 2>/dev/null || true
  unset 'SERVICE_PIDS[-2]' 'SERVICE_PIDS[-1]'
done

echo
echo "== warm: every chunk staged on lazy nodes a (kept whole) and f (cache too small for that: FUSE),"
echo "   the file in node local's imagePath, all three mounted"
cold_node a "$GATEWAY"
cold_node f "$GATEWAY" 600m
cold_node local "$GATEWAY"
place_local local
"$REPO/bin/shifterd-cache" --admin-socket "$WORK/nodes/a/run/admin.sock" stage "$IMAGE"
"$REPO/bin/shifterd-cache" --admin-socket "$WORK/nodes/f/run/admin.sock" stage "$IMAGE"
as_user a "$SHIFTER" --image="$IMAGE" /bin/true
as_user f "$SHIFTER" --image="$IMAGE" /bin/true
as_user local "$SHIFTER" --image="$IMAGE" /bin/true
cat > "$WORK/as-user.sh" <<SH
#!/bin/sh
node=\$1; shift
cd / && exec setpriv --reuid=$BENCH_UID --regid=$BENCH_GID --init-groups -- \
  env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 SHIFTERD_SOCKET=$WORK/nodes/\$node/run/shifterd.sock "\$@"
SH
printf '#!/bin/sh\nsync\necho 3 > /proc/sys/vm/drop_caches\n' > "$WORK/drop.sh"
chmod 0755 "$WORK/as-user.sh" "$WORK/drop.sh"
U=$WORK/as-user.sh
HF=(hyperfine -N --style basic)
for r in $(seq 1 "$ROUNDS"); do
  "${HF[@]}" --warmup 3 --min-runs 20 --export-json "$WORK/warm-py-$r.json" \
    -n lazy "$U a $SHIFTER --image=$IMAGE python3 -c '$PY'" \
    -n fuse "$U f $SHIFTER --image=$IMAGE python3 -c '$PY'" \
    -n local "$U local $SHIFTER --image=$IMAGE python3 -c '$PY'" >/dev/null 2>&1
  "${HF[@]}" --runs 10 --prepare "$WORK/drop.sh" --export-json "$WORK/warm-read-$r.json" \
    -n lazy "$U a $SHIFTER --image=$IMAGE /bin/sh -c 'cat /data/big > /dev/null'" \
    -n fuse "$U f $SHIFTER --image=$IMAGE /bin/sh -c 'cat /data/big > /dev/null'" \
    -n local "$U local $SHIFTER --image=$IMAGE /bin/sh -c 'cat /data/big > /dev/null'" >/dev/null 2>&1
  echo "  warm round $r/$ROUNDS done, load $(cut -d' ' -f1 /proc/loadavg)"
done
"$REPO/bin/shifterd-cache" --admin-socket "$WORK/nodes/a/run/admin.sock" status
"$REPO/bin/shifterd-cache" --admin-socket "$WORK/nodes/f/run/admin.sock" status

echo
echo "== summary (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
node - "$RESULTS" "$NGINX_RESULTS" "$WORK" "$IMAGE_BYTES" <<'JS'
const fs = require('fs');
const [tsv, nginxTsv, dir, imageBytes] = process.argv.slice(2);
const rows = (f) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => l.split('\t'));
const median = (v) => {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const cold = new Map();
for (const [net, side, ms, bytes] of rows(tsv)) {
  if (!cold.has(net)) cold.set(net, {});
  const e = (cold.get(net)[side] ??= { ms: [], bytes: [] });
  e.ms.push(Number(ms));
  e.bytes.push(Number(bytes));
}
const mib = (b) => (b / 1048576).toFixed(1);
const verdict = (ok) => (ok ? 'MET' : 'NOT MET');
const image = `${mib(imageBytes)} MiB image`;
console.log(`cold start to command exit: ms, median [rounds]; MiB from the gateway (median, % of the ${image})`);
for (const [net, sides] of cold) {
  console.log(`  link ${net === 'loopback' ? net : `${net} ms RTT, 1 Gbit/s (relay)`}`);
  for (const [side, e] of Object.entries(sides)) {
    const b = median(e.bytes);
    const pct = ((b / imageBytes) * 100).toFixed(1);
    const t = String(median(e.ms)).padStart(7);
    console.log(`    ${side.padEnd(16)}${t}  [${e.ms.join(' ')}]  ${mib(b)} MiB (${pct}%)`);
  }
  const lp = median(sides['lazy-profile'].ms);
  const ln = median(sides['lazy-no-profile'].ms);
  const cp = median(sides['copy-first'].ms);
  console.log(`    copy-first / lazy: ${(cp / ln).toFixed(1)}x without profile, ${(cp / lp).toFixed(1)}x with`);
  const best = Math.min(lp, ln);
  if (net === 'loopback') {
    const fetched = Math.max(median(sides['lazy-no-profile'].bytes), median(sides['lazy-profile'].bytes)) / imageBytes;
    console.log(`    target cold under 1 s: ${verdict(best < 1000)} (${best} ms, the better lazy side)`);
    const pct = `${(fetched * 100).toFixed(1)}%`;
    console.log(`    target fetch under 25%: ${verdict(fetched < 0.25)} (${pct}, the larger lazy side)`);
  }
  if (net === '10') {
    console.log(`    target 5x faster than copy-first: ${verdict(cp / best >= 5)} (${(cp / best).toFixed(1)}x)`);
  }
}
const nodes = { 1: { ms: [], bytes: [], chunks: [] }, 2: { ms: [], bytes: [], chunks: [] } };
for (const [n, ms, bytes, chunks] of rows(nginxTsv)) {
  nodes[n].ms.push(Number(ms));
  nodes[n].bytes.push(Number(bytes));
  nodes[n].chunks.push(Number(chunks));
}
console.log('through nginx (proxy_cache, fresh cache each round): cold start ms [rounds]; from the gateway per round');
for (const n of [1, 2]) {
  const e = nodes[n];
  const from = e.bytes.map((b, i) => `${mib(b)} MiB/${e.chunks[i]} chunks`).join(', ');
  console.log(`  node ${n}: ${median(e.ms)} ms [${e.ms.join(' ')}]; ${from}`);
}
console.log(`  target node 2 fetches 0 bytes from the gateway: ${verdict(nodes[2].bytes.every((b) => b === 0))}`);
const load = (name) => {
  const out = {};
  for (const f of fs.readdirSync(dir).filter((f) => f.startsWith(`${name}-`)).sort()) {
    for (const r of JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8')).results) {
      const e = (out[r.command] ??= { times: [], rounds: [] });
      e.times.push(...r.times);
      e.rounds.push(r.median);
    }
  }
  return out;
};
const warm = [
  ['warm-py', "python3 -c 'import json, email'"],
  ['warm-read', 'cat /data/big (200 MiB), page cache dropped'],
];
const ms = (s) => (s * 1000).toFixed(1);
for (const [name, label] of warm) {
  const w = load(name);
  const l = median(w.lazy.times);
  const o = median(w.local.times);
  const pct = (l / o - 1) * 100;
  const rounds = (e) => e.rounds.map(ms).join(' ');
  const f = median(w.fuse.times);
  const signed = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`;
  console.log(`warm ${label}:`);
  console.log(`  lazy (kept whole) ${ms(l)} ms [${rounds(w.lazy)}], local ${ms(o)} ms [${rounds(w.local)}]`);
  console.log(`  lazy vs local ${signed(pct)}, target within 5%: ${verdict(pct <= 5)}`);
  console.log(`  through FUSE (every chunk cached, not kept whole) ${ms(f)} ms [${rounds(w.fuse)}]`);
  console.log(`  FUSE vs local ${signed((f / o - 1) * 100)}; FUSE / kept whole ${(f / l).toFixed(2)}x`);
}
JS
