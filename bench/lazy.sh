#!/usr/bin/env bash
# The lazy image cache's figures (issue 10), all sides in one run, on one image: this machine's
# python3.11 (bench/make-python-image.sh) plus /usr/include, /usr/lib/gcc and /usr/bin (the
# content of bench/make-big-image.sh) and a 200 MB file of random bytes, about 600 MB unpacked.
# The job is `python3 -c 'import json, email'`, run as the ordinary user shifterbench.
#   cold (node cache empty, shifterd restarted, nothing mounted), per round:
#     lazy without a prefetch profile (this run records one), lazy with the recorded profile,
#     whole-file copy first (curl of the whole squashfs into imagePath, then the launch) and the
#     local file (already in imagePath, its page cache dropped with dd iflag=nocache);
#     time from the start of `shifter` (or curl) to the command's exit, and bytes fetched;
#   the cold rounds again through a relay that adds 2 ms and 10 ms round-trip time at 1 Gbit/s
#     between node and image server (tc netem is not in this machine's kernel, so the relay in
#     bench/lazy-server.ts emulates the link in user space);
#   warm (every chunk staged with shifterd-cache stage, image mounted): lazy vs local file, the
#     python import and a sequential read of the 200 MB file (page cache dropped before each
#     read, so the read goes to the chunk store or the local file).
# The image side is the node test's chunk server (test/node-daemon/lazy/chunk-server.ts, the
# gateway's chunk routes over the same file) on loopback, started by bench/lazy-server.ts.
# Everything started here is stopped by pid; the work directory is removed.
# Usage (as root): bash bench/lazy.sh [ROUNDS]   (default 3; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "lazy.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "lazy.sh: run as root (it starts shifterd and makes a user)" >&2; exit 2; }
for f in dist/node-daemon/main.js dist/bench/lazy-server.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "lazy.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in hyperfine mksquashfs unsquashfs setpriv curl node; do
  command -v "$tool" >/dev/null || { echo "lazy.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done
[ -e /dev/fuse ] || { echo "lazy.sh: /dev/fuse is missing: modprobe fuse" >&2; exit 2; }

BENCH_USER=shifterbench
id "$BENCH_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$BENCH_USER"
BENCH_UID=$(id -u "$BENCH_USER")
BENCH_GID=$(id -g "$BENCH_USER")

WORK=$(mktemp -d /tmp/shifter-lazy-bench.XXXXXX)
chmod 0755 "$WORK"
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
LOG=$WORK/shifterd.log
SHIFTERD_PID=
stop_shifterd() {
  [ -n "$SHIFTERD_PID" ] || return 0
  kill "$SHIFTERD_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SHIFTERD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SHIFTERD_PID" 2>/dev/null || true
  wait "$SHIFTERD_PID" 2>/dev/null || true
  SHIFTERD_PID=
}
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -s "$LOG" ]; then
    echo "lazy.sh: failed (exit $rc); the end of shifterd's log:" >&2
    tail -n 20 "$LOG" | cut -c1-2000 >&2
  fi
  stop_shifterd
  stop_services
  rm -rf "$WORK"
}
trap cleanup EXIT

REPO=$WORK/tree
mkdir -p "$REPO/native"
cp -a dist bin proto package.json "$REPO/"
cp -a native/build "$REPO/native/"
ln -s "$PWD/node_modules" "$REPO/node_modules"

echo "== machine"
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $CPU   node $(node --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== image"
bash bench/make-python-image.sh "$WORK/python.squashfs"
ROOT=$WORK/rootfs
unsquashfs -q -n -d "$ROOT" "$WORK/python.squashfs" >/dev/null
rm "$WORK/python.squashfs"
# The big image's content next to python; -n keeps the image's busybox applets in /usr/bin.
for d in /usr/include /usr/lib/gcc /usr/bin; do
  mkdir -p "$ROOT$d"
  cp -an "$d/." "$ROOT$d/"
done
mkdir -p "$ROOT/data"
head -c $((200 * 1024 * 1024)) /dev/urandom > "$ROOT/data/big"
mkdir -p "$WORK/images"
mksquashfs "$ROOT" "$WORK/image.squashfs" -all-root -no-xattrs -quiet -noappend -comp zstd >/dev/null
UNPACKED=$(du -sb "$ROOT" | cut -f1)
rm -rf "$ROOT"
IMAGE_ID=$(sha256sum "$WORK/image.squashfs" | cut -d' ' -f1)
IMAGE_FILE=$WORK/image.squashfs
IMAGE_BYTES=$(stat -c %s "$IMAGE_FILE")
echo "id:$IMAGE_ID: $((IMAGE_BYTES / 1048576)) MiB squashfs, $((UNPACKED / 1048576)) MiB unpacked"

TAG=lazybench:1
RTTS=(2 10)
node "$REPO/dist/bench/lazy-server.js" "$IMAGE_FILE" "$TAG" "${RTTS[@]}" > "$WORK/server.json" 2> "$WORK/server.log" &
SERVICE_PIDS+=($!)
wait_for "chunk server" test -s "$WORK/server.json"
server_url() { node -p "JSON.parse(require('fs').readFileSync('$WORK/server.json', 'utf8'))$1"; }
CONTROL=$(server_url .control)

CACHE=$WORK/lazycache
mkdir -p "$WORK/run"
chmod 0755 "$WORK/run" "$WORK/images"
# use_link NET: the node reaches the image server over loopback or the relay of NET ms RTT.
use_link() {
  if [ "$1" = loopback ]; then
    GATEWAY=$(server_url .chunks); COPY_FROM=$CONTROL
  else
    GATEWAY=$(server_url ".links['$1'].chunks"); COPY_FROM=$(server_url ".links['$1'].control")
  fi
  cat > "$WORK/udiRoot.conf" <<CONF
imagePath=$WORK/images
populateEtcDynamically=1
imageGateway=$GATEWAY
system=test
lazyImageCache=$CACHE
lazyImageCacheSize=2g
lazyChunkTimeout=30
CONF
  chmod 0644 "$WORK/udiRoot.conf"
}
use_link loopback
SOCKET=$WORK/run/shifterd.sock
ADMIN=$WORK/run/shifterd-admin.sock
start_shifterd() {
  rm -f "$SOCKET" "$ADMIN"
  "$REPO/bin/shifterd" --config "$WORK/udiRoot.conf" --socket "$SOCKET" --admin-socket "$ADMIN" >>"$LOG" 2>&1 &
  SHIFTERD_PID=$!
  wait_for shifterd test -S "$SOCKET"
  wait_for "shifterd admin socket" test -S "$ADMIN"
}
# A cold node: shifterd stopped (it leaves no mount), chunk store emptied, image file removed.
cold_node() {
  stop_shifterd
  rm -rf "$CACHE" "$WORK/images/$IMAGE_ID".*
  curl -sf -X POST "$CONTROL/reset"
  start_shifterd
}
as_user() {
  (cd / && setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --init-groups -- \
    env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 SHIFTERD_SOCKET="$SOCKET" "$@")
}
SHIFTER=$REPO/bin/shifter
PY="import json, email"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
stat_field() {
  curl -sf "$CONTROL/stats" > "$WORK/stats.json"
  node -p "JSON.parse(require('fs').readFileSync('$WORK/stats.json', 'utf8')).$1"
}
RESULTS=$WORK/cold.tsv
: > "$RESULTS"
# record SIDE MS BYTES
record() {
  printf '%s\t%s\t%s\t%s\n' "$NET" "$1" "$2" "$3" >> "$RESULTS"
  printf '  %-8s %-16s %6s ms  %6s MiB fetched\n' "$NET" "$1" "$2" "$(($3 / 1048576))"
}
# lazy_run SIDE: a cold lazy launch, timed, with shifterd's own figure for the launch.
lazy_run() {
  local t0 t1
  t0=$(now_ms); as_user "$SHIFTER" --verbose --image="$TAG" python3 -c "$PY" 2> "$WORK/verbose"; t1=$(now_ms)
  record "$1" $((t1 - t0)) "$(stat_field chunkBytes)"
  sed -n 's/.*; ready in/    shifterd: ready in/p' "$WORK/verbose"
}
place_local() {
  cp "$IMAGE_FILE" "$WORK/images/$IMAGE_ID.squashfs.tmp"
  printf 'FORMAT: squashfs\nENV: PATH=/usr/bin:/bin\n' > "$WORK/images/$IMAGE_ID.meta"
  mv "$WORK/images/$IMAGE_ID.squashfs.tmp" "$WORK/images/$IMAGE_ID.squashfs"
}

echo
echo "== sanity"
cold_node
as_user "$SHIFTER" --image="$TAG" python3 -c "$PY; import sys; print('lazy python', sys.version.split()[0])"
stop_shifterd
curl -sf -X DELETE "$CONTROL/profile"

NET=loopback
for r in $(seq 1 "$ROUNDS"); do
  for NET in loopback "${RTTS[@]}"; do
    use_link "$NET"
    echo
    echo "== cold round $r/$ROUNDS, link $NET (load $(cut -d' ' -f1 /proc/loadavg))"
    curl -sf -X DELETE "$CONTROL/profile"
    cold_node
    lazy_run lazy-no-profile
    # The profile is sent at the end of its recording window (10 s after the first open).
    for _ in $(seq 1 300); do [ "$(stat_field profileChunks)" != 0 ] && break; sleep 0.1; done
    [ "$(stat_field profileChunks)" != 0 ] || { echo "lazy.sh: no prefetch profile was recorded" >&2; exit 1; }
    echo "    profile recorded: $(stat_field profileChunks) chunks"

    cold_node
    lazy_run lazy-profile

    cold_node
    t0=$(now_ms)
    curl -sf -o "$WORK/images/$IMAGE_ID.squashfs.tmp" "$COPY_FROM/image"
    printf 'FORMAT: squashfs\nENV: PATH=/usr/bin:/bin\n' > "$WORK/images/$IMAGE_ID.meta"
    mv "$WORK/images/$IMAGE_ID.squashfs.tmp" "$WORK/images/$IMAGE_ID.squashfs"
    t1=$(now_ms)
    as_user "$SHIFTER" --image="id:$IMAGE_ID" python3 -c "$PY"
    t2=$(now_ms)
    record copy-first $((t2 - t0)) "$(stat_field wholeBytes)"
    echo "    of which the copy: $((t1 - t0)) ms"

    if [ "$NET" = loopback ]; then
      cold_node
      place_local
      dd if="$WORK/images/$IMAGE_ID.squashfs" iflag=nocache count=0 status=none
      t0=$(now_ms); as_user "$SHIFTER" --image="id:$IMAGE_ID" python3 -c "$PY"; t1=$(now_ms)
      record local-file $((t1 - t0)) 0
    fi
  done
done

echo
echo "== warm: every chunk staged, image mounted on both sides"
use_link loopback
cold_node
place_local
"$REPO/bin/shifterd-cache" --admin-socket "$ADMIN" stage "$TAG"
as_user "$SHIFTER" --image="$TAG" /bin/true
as_user "$SHIFTER" --image="id:$IMAGE_ID" /bin/true
cat > "$WORK/as-user.sh" <<SH
#!/bin/sh
cd / && exec setpriv --reuid=$BENCH_UID --regid=$BENCH_GID --init-groups -- \
  env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 SHIFTERD_SOCKET=$SOCKET "\$@"
SH
printf '#!/bin/sh\nsync\necho 3 > /proc/sys/vm/drop_caches\n' > "$WORK/drop.sh"
chmod 0755 "$WORK/as-user.sh" "$WORK/drop.sh"
U=$WORK/as-user.sh
HF=(hyperfine -N --style basic)
for r in $(seq 1 "$ROUNDS"); do
  "${HF[@]}" --warmup 3 --min-runs 20 --export-json "$WORK/warm-py-$r.json" \
    -n lazy "$U $SHIFTER --image=$TAG python3 -c '$PY'" \
    -n local "$U $SHIFTER --image=id:$IMAGE_ID python3 -c '$PY'" 2>/dev/null >/dev/null
  "${HF[@]}" --runs 3 --prepare "$WORK/drop.sh" --export-json "$WORK/warm-read-$r.json" \
    -n lazy "$U $SHIFTER --image=$TAG /bin/sh -c 'cat /data/big > /dev/null'" \
    -n local "$U $SHIFTER --image=id:$IMAGE_ID /bin/sh -c 'cat /data/big > /dev/null'" 2>/dev/null >/dev/null
  echo "  warm round $r/$ROUNDS done, load $(cut -d' ' -f1 /proc/loadavg)"
done
"$REPO/bin/shifterd-cache" --admin-socket "$ADMIN" status

echo
echo "== summary (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
node - "$RESULTS" "$WORK" "$IMAGE_BYTES" <<'JS'
const fs = require('fs');
const [tsv, dir, imageBytes] = process.argv.slice(2);
const median = (v) => {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const cold = new Map();
for (const line of fs.readFileSync(tsv, 'utf8').trim().split('\n')) {
  const [net, side, ms, bytes] = line.split('\t');
  if (!cold.has(net)) cold.set(net, {});
  const e = (cold.get(net)[side] ??= { ms: [], bytes: [] });
  e.ms.push(Number(ms));
  e.bytes.push(Number(bytes));
}
const mib = (b) => (b / 1048576).toFixed(1);
const verdict = (ok) => (ok ? 'MET' : 'NOT MET');
console.log(`cold start to command exit (ms, median [runs]; MiB fetched, % of the ${mib(imageBytes)} MiB image)`);
for (const [net, sides] of cold) {
  console.log(`  link ${net === 'loopback' ? net : `${net} ms RTT, 1 Gbit/s`}`);
  for (const [side, e] of Object.entries(sides)) {
    const b = median(e.bytes);
    const pct = ((b / imageBytes) * 100).toFixed(1);
    const t = String(median(e.ms)).padStart(7);
    console.log(`    ${side.padEnd(16)}${t}  [${e.ms.join(' ')}]  ${mib(b)} MiB (${pct}%)`);
  }
  const lp = median(sides['lazy-profile'].ms), ln = median(sides['lazy-no-profile'].ms);
  const cp = median(sides['copy-first'].ms);
  console.log(`    copy-first / lazy: ${(cp / ln).toFixed(1)}x without profile, ${(cp / lp).toFixed(1)}x with`);
  const best = Math.min(lp, ln);
  if (net === 'loopback') {
    const fetched = median(sides['lazy-no-profile'].bytes) / imageBytes;
    const f = `${(fetched * 100).toFixed(1)}%`;
    console.log(`    target cold under 1 s: ${verdict(best < 1000)} (${best} ms)`);
    console.log(`    target fetch under 25%: ${verdict(fetched < 0.25)} (${f})`);
  }
  const x = (cp / best).toFixed(1);
  if (net === '10') console.log(`    target 5x faster than copy-first: ${verdict(cp / best >= 5)} (${x}x)`);
}
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
  const l = median(w.lazy.times), o = median(w.local.times);
  const pct = (l / o - 1) * 100;
  console.log(`warm ${label}:`);
  const rounds = (e) => e.rounds.map(ms).join(' ');
  console.log(`  lazy ${ms(l)} ms [${rounds(w.lazy)}], local ${ms(o)} ms [${rounds(w.local)}]`);
  console.log(`  lazy vs local ${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%, target within 5%: ${verdict(pct <= 5)}`);
}
JS
