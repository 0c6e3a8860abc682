#!/usr/bin/env bash
# Node runtime benchmarks (figures, not tests), side by side on ONE squashfs image holding this
# machine's python3.11 and a static busybox (bench/make-python-image.sh):
#   a. warm launch of /bin/true: `shifter` into a cached environment vs `bwrap` over the same
#      image mounted once on the host (loop, ro) vs /bin/true on the host;
#   b. first launch of a new environment (cache miss), made honest by releasing the cached
#      environment through shifterd's admin gRPC API before every timed run (hyperfine
#      --prepare) and by counting "environment created" in shifterd's log afterwards:
#      b1 with the image already mounted on the node (another environment pins it),
#      b2 with nothing cached (loop device + image mount + environment);
#   c. 64 concurrent launches of /bin/true (wall time), shifter vs bwrap vs host;
#   d. warm `python3 -c 'import json, email'`: shifter vs bwrap vs the host's python3;
#      d2. 20 of them inside one launch, to tell the per-launch cost from python's own run time.
# Every timed command runs as the ordinary user shifterbench (made with useradd if missing);
# bwrap runs unprivileged through user namespaces (it is not setuid here). a, c and d run in
# ROUNDS interleaved hyperfine rounds whose times are pooled, so that load from other work on
# the machine falls on every side alike; the per-round medians are printed too.
# The built tree (dist, native/build, bin, proto) is copied at the start, so a rebuild during
# the run does not mix versions.
# Usage (as root): bash bench/runtime.sh [ROUNDS]   (default 4; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-4}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "runtime.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }

if [ "$(id -u)" != 0 ]; then
  echo "runtime.sh: run as root (it starts shifterd, mounts the image and makes a user)" >&2
  exit 2
fi
for f in dist/node-daemon/main.js dist/bench/environment-admin.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "runtime.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in hyperfine bwrap mksquashfs setpriv node; do
  command -v "$tool" >/dev/null || { echo "runtime.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done

BENCH_USER=shifterbench
id "$BENCH_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$BENCH_USER"
BENCH_UID=$(id -u "$BENCH_USER")
BENCH_GID=$(id -g "$BENCH_USER")

WORK=$(mktemp -d /tmp/shifter-runtime-bench.XXXXXX)
chmod 0755 "$WORK"
MNT=$WORK/mnt
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
LOG=$WORK/shifterd.log
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -s "$LOG" ]; then
    echo "runtime.sh: failed (exit $rc); the end of shifterd's log:" >&2
    tail -n 20 "$LOG" | cut -c1-2000 >&2
  fi
  stop_services
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A snapshot of the build, laid out like the checkout (nativeDir() is found relative to dist/).
REPO=$WORK/tree
mkdir -p "$REPO/native"
cp -a dist bin proto package.json "$REPO/"
cp -a native/build "$REPO/native/"
ln -s "$PWD/node_modules" "$REPO/node_modules"

echo "== machine"
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hyperfine $(hyperfine --version | cut -d' ' -f2), $(bwrap --version), node $(node --version)"

echo
echo "== image"
mkdir -p "$WORK/images" "$MNT" "$WORK/run" "$WORK/pin" "$WORK/results"
chmod 0755 "$WORK/run" "$WORK/pin"
chown "$BENCH_USER" "$WORK/results"
bash bench/make-python-image.sh "$WORK/image.squashfs"
IMAGE_ID=$(sha256sum "$WORK/image.squashfs" | cut -d' ' -f1)
mv "$WORK/image.squashfs" "$WORK/images/$IMAGE_ID.squashfs"
printf 'FORMAT: squashfs\nENV: PATH=/usr/local/bin:/usr/bin:/bin\n' > "$WORK/images/$IMAGE_ID.meta"
IMAGE=id:$IMAGE_ID
echo "id:$IMAGE_ID, $(du -h "$WORK/images/$IMAGE_ID.squashfs" | cut -f1)"
# bwrap's side: the same file, mounted once on the host.
mount -o loop,ro "$WORK/images/$IMAGE_ID.squashfs" "$MNT"

cat > "$WORK/udiRoot.conf" <<CONF
imagePath=$WORK/images
populateEtcDynamically=1
CONF
chmod 0644 "$WORK/udiRoot.conf"
SOCKET=$WORK/run/shifterd.sock
ADMIN=$WORK/run/shifterd-admin.sock
"$REPO/bin/shifterd" --config "$WORK/udiRoot.conf" --socket "$SOCKET" --admin-socket "$ADMIN" >"$LOG" 2>&1 &
SERVICE_PIDS+=($!)
wait_for shifterd test -S "$SOCKET"
wait_for "shifterd admin socket" test -S "$ADMIN"

# Cache misses on request from the benchmark user: hyperfine's --prepare (running as that user)
# writes a key name to a FIFO; this root loop releases environments through the admin socket
# (root only) and acknowledges. "pinned" keeps the environment that holds the image mount.
mkfifo -m 0622 "$WORK/release.req"
mkfifo -m 0644 "$WORK/release.ack"
release_loop() {
  local what keep
  while read -r what < "$WORK/release.req"; do
    keep=()
    if [ "$what" = pinned ]; then keep=("$(cat "$WORK/pin.key")"); fi
    if node "$REPO/dist/bench/environment-admin.js" "$ADMIN" release "${keep[@]}" > "$WORK/release.last" 2>&1
    then echo ok > "$WORK/release.ack"; else echo failed > "$WORK/release.ack"; fi
  done
}
release_loop &
SERVICE_PIDS+=($!)
for what in pinned all; do
  printf '#!/bin/sh\necho %s > %s\nread -r ack < %s\n[ "$ack" = ok ]\n' "$what" "$WORK/release.req" "$WORK/release.ack" > "$WORK/miss-$what.sh"
done
# N concurrent runs of a command; fails if any run fails.
cat > "$WORK/par.sh" <<'SH'
#!/bin/bash
n=$1; shift
pids=()
for ((i = 0; i < n; i++)); do "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
SH
chmod 0755 "$WORK"/*.sh

# Everything timed runs as the user, from /, with a small environment.
as_user() {
  (cd / && setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --init-groups -- \
    env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 SHIFTERD_SOCKET="$SOCKET" "$@")
}
SHIFTER=$REPO/bin/shifter
BWRAP=(bwrap --ro-bind "$MNT" / --proc /proc --dev /dev)
PY="import json, email"
HF=(hyperfine -N --style basic)

echo
echo "== sanity (as $BENCH_USER)"
as_user "$SHIFTER" --image="$IMAGE" /bin/sh -c 'echo "shifter: $(id -un) uid=$(id -u) in $(cat /etc/os-release)"'
as_user "$SHIFTER" --image="$IMAGE" python3 -c "$PY; import sys; print('shifter python', sys.version.split()[0], sys.prefix)"
as_user "${BWRAP[@]}" /usr/bin/python3 -c "$PY; import sys; print('bwrap python', sys.version.split()[0], sys.prefix)"
as_user "$SHIFTER" --verbose --image="$IMAGE" /bin/true
PIN_KEY=$(node "$REPO/dist/bench/environment-admin.js" "$ADMIN" prepare "$BENCH_UID" "$BENCH_GID" "$IMAGE" "$WORK/pin:/pin")
echo "$PIN_KEY" > "$WORK/pin.key"

created() { grep -c '"msg":"environment created"' "$LOG" || true; }
log_lines() { wc -l < "$LOG"; }
# The native helper's time (as shifterd logs it) of the environments created after line $1.
helper_ms() { tail -n +"$(($1 + 1))" "$LOG" | grep '"msg":"environment created"' | sed 's/.*"ms":\([0-9.]*\).*/\1/' > "$WORK/results/$2.ms"; }
# rounds NAME HYPERFINE-ARGS...: ROUNDS hyperfine runs of the same commands, one JSON each.
rounds() {
  local name=$1 r; shift
  for r in $(seq 1 "$ROUNDS"); do
    # hyperfine's outlier warnings would bury the figures: this machine is shared on purpose.
    as_user "${HF[@]}" --export-json "$WORK/results/$name-$r.json" "$@" 2>&1 >/dev/null \
      | { grep -v -e 'Statistical outliers' -e '^ *$' >&2 || true; }
    printf '  round %s/%s done, load %s\n' "$r" "$ROUNDS" "$(cut -d' ' -f1 /proc/loadavg)"
  done
}

echo
echo "== a. warm launch of /bin/true ($ROUNDS rounds)"
rounds a --warmup 10 --min-runs 60 \
  -n shifter "$SHIFTER --image=$IMAGE /bin/true" \
  -n bwrap "${BWRAP[*]} /bin/true" \
  -n host-true "/bin/true" \
  -n host-busybox-true "/bin/busybox true"

echo
echo "== b. first launch of a new environment (every run a cache miss)"
before=$(created); lines=$(log_lines)
as_user "${HF[@]}" --runs 40 --prepare "$WORK/miss-pinned.sh" --export-json "$WORK/results/b1-1.json" \
  -n "image already mounted" "$SHIFTER --image=$IMAGE /bin/true" >/dev/null
after=$(created)
B1_CREATED=$((after - before))
helper_ms "$lines" b1
echo "  b1 done: environments created $B1_CREATED for 40 runs"
echo "  where a miss goes, shifterd's own figures (shifter --verbose, 5 misses, image mounted):"
for _ in 1 2 3 4 5; do
  node "$REPO/dist/bench/environment-admin.js" "$ADMIN" release "$PIN_KEY" >/dev/null
  as_user "$SHIFTER" --verbose --image="$IMAGE" /bin/true 2>&1 | sed 's/.*; environment/    environment/'
done
before=$(created); lines=$(log_lines)
as_user "${HF[@]}" --runs 40 --prepare "$WORK/miss-all.sh" --export-json "$WORK/results/b2-1.json" \
  -n "nothing cached (attach+mount)" "$SHIFTER --image=$IMAGE /bin/true" >/dev/null
after=$(created)
B2_CREATED=$((after - before))
helper_ms "$lines" b2
echo "  b2 done: environments created $B2_CREATED for 40 runs"
PIN_KEY=$(node "$REPO/dist/bench/environment-admin.js" "$ADMIN" prepare "$BENCH_UID" "$BENCH_GID" "$IMAGE" "$WORK/pin:/pin")
echo "$PIN_KEY" > "$WORK/pin.key"

echo
echo "== d. warm python3 -c '$PY' ($ROUNDS rounds)"
rounds d --warmup 3 --min-runs 15 \
  -n shifter "$SHIFTER --image=$IMAGE python3 -c '$PY'" \
  -n bwrap "${BWRAP[*]} /usr/bin/python3 -c '$PY'" \
  -n host "/usr/bin/python3 -c '$PY'"

# The same work without the per-launch cost: 20 imports in one launch, each side's shell the
# image's static busybox, so what differs is only where python runs.
LOOP='i=0; while [ $i -lt 20 ]; do python3 -c "import json, email" || exit 1; i=$((i + 1)); done'
echo
echo "== d2. 20 x python3 -c '$PY' inside ONE launch ($ROUNDS rounds)"
rounds d2 --warmup 1 --min-runs 3 \
  -n shifter "$SHIFTER --image=$IMAGE /bin/sh -c '$LOOP'" \
  -n bwrap "${BWRAP[*]} /bin/sh -c '$LOOP'" \
  -n host "/bin/busybox sh -c '$LOOP'"

# After d and d2: the 64-way stage leaves load behind that would fall on python's figures.
echo
echo "== c. 64 concurrent launches of /bin/true, wall time of all 64 ($ROUNDS rounds)"
rounds c --warmup 2 --min-runs 8 \
  -n shifter "$WORK/par.sh 64 $SHIFTER --image=$IMAGE /bin/true" \
  -n bwrap "$WORK/par.sh 64 ${BWRAP[*]} /bin/true" \
  -n host-true "$WORK/par.sh 64 /bin/true"

echo
echo "== summary: median of all runs pooled over the rounds [per-round medians]; mean +- sd; p10; min (ms)"
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
node - "$WORK/results" "$B1_CREATED" "$B2_CREATED" <<'JS'
const fs = require('fs');
const [dir, b1Created, b2Created] = process.argv.slice(2);
const median = (v) => { const s = [...v].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
// name -> command -> { times (s, pooled), roundMedians }
const load = (name) => {
  const out = {};
  for (const f of fs.readdirSync(dir).filter((f) => f.startsWith(`${name}-`) && f.endsWith('.json')).sort()) {
    for (const r of JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8')).results) {
      const e = (out[r.command] ??= { times: [], roundMedians: [] });
      e.times.push(...r.times);
      e.roundMedians.push(r.median);
    }
  }
  for (const e of Object.values(out)) {
    e.median = median(e.times);
    e.mean = e.times.reduce((a, b) => a + b, 0) / e.times.length;
    e.sd = Math.sqrt(e.times.reduce((a, b) => a + (b - e.mean) ** 2, 0) / Math.max(1, e.times.length - 1));
    e.min = Math.min(...e.times);
    e.p10 = [...e.times].sort((x, y) => x - y)[Math.floor(e.times.length / 10)];
  }
  return out;
};
const ms = (s) => (s * 1000).toFixed(2);
const row = (label, e) => console.log(`  ${label.padEnd(30)}${ms(e.median).padStart(8)}  [${e.roundMedians.map(ms).join(' ')}]  ${ms(e.mean)} +- ${ms(e.sd)}; p10 ${ms(e.p10)}; min ${ms(e.min)}  (${e.times.length} runs)`);
const ratio = (x, y) => (x.median / y.median).toFixed(2);
const pct = (x, y) => { const p = (x.median / y.median - 1) * 100; return `${p >= 0 ? '+' : ''}${p.toFixed(1)}%`; };
const verdict = (ok) => (ok ? 'MET' : 'NOT MET');

const a = load('a');
console.log('a. warm /bin/true');
for (const k of ['shifter', 'bwrap', 'host-true', 'host-busybox-true']) row(k, a[k]);
console.log(`  ratio shifter/bwrap ${ratio(a.shifter, a.bwrap)}; shifter/host-busybox-true (same binary) ${ratio(a.shifter, a['host-busybox-true'])}; shifter - host-busybox-true = ${ms(a.shifter.median - a['host-busybox-true'].median)} ms`);

const b1 = Object.values(load('b1'))[0], b2 = Object.values(load('b2'))[0];
const helper = (n) => {
  const v = fs.readFileSync(`${dir}/${n}.ms`, 'utf8').split('\n').filter((l) => l !== '').map(Number);
  return v.length === 0 ? 'n/a' : `${median(v).toFixed(2)} ms`;
};
console.log('b. first launch of a new environment (a cache miss every run; /bin/true)');
row('image already mounted', b1);
row('nothing cached (attach+mount)', b2);
console.log(`  environments created: ${b1Created} and ${b2Created} for 40 runs each (must be 40: every run a miss)`);
console.log(`  native helper per environment (shifterd log, median): ${helper('b1')} and ${helper('b2')}`);
console.log(`  target 10 ms: image mounted ${verdict(b1.median < 0.010)}, nothing cached ${verdict(b2.median < 0.010)}`);

const c = load('c');
console.log('c. 64 concurrent /bin/true, wall time');
for (const k of ['shifter', 'bwrap', 'host-true']) row(k, c[k]);
console.log(`  ratio shifter/bwrap ${ratio(c.shifter, c.bwrap)}, shifter/host ${ratio(c.shifter, c['host-true'])}; target 150 ms: ${verdict(c.shifter.median < 0.150)}`);

const d = load('d');
console.log("d. warm python3 -c 'import json, email'");
for (const k of ['shifter', 'bwrap', 'host']) row(k, d[k]);
const rounds = d.shifter.roundMedians.map((m, i) => `${(m / d.host.roundMedians[i] * 100 - 100).toFixed(1)}%`).join(' ');
console.log(`  shifter vs host ${pct(d.shifter, d.host)} [per round ${rounds}], bwrap vs host ${pct(d.bwrap, d.host)}; target within 10%: ${verdict(d.shifter.median <= d.host.median * 1.1)}`);
console.log(`  at p10 (least disturbed runs): shifter vs host ${pct({ median: d.shifter.p10 }, { median: d.host.p10 })}, bwrap vs host ${pct({ median: d.bwrap.p10 }, { median: d.host.p10 })}`);
const d2 = load('d2');
console.log("d2. 20 x python3 -c 'import json, email' in one launch (per import = figure / 20)");
for (const k of ['shifter', 'bwrap', 'host']) row(k, d2[k]);
console.log(`  per import: shifter ${ms(d2.shifter.median / 20)}, bwrap ${ms(d2.bwrap.median / 20)}, host ${ms(d2.host.median / 20)} ms; shifter vs host ${pct(d2.shifter, d2.host)}, bwrap vs host ${pct(d2.bwrap, d2.host)}`);
JS
