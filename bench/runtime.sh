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
#   d. warm `python3 -c 'import json, email'`: shifter vs bwrap vs the host's python3.
# Every timed command runs as the ordinary user shifterbench (made with useradd if missing);
# bwrap runs unprivileged through user namespaces (it is not setuid here).
# Usage: sudo bash bench/runtime.sh     (needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

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
cleanup() {
  stop_services
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

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
LOG=$WORK/shifterd.log
bin/shifterd --config "$WORK/udiRoot.conf" --socket "$SOCKET" --admin-socket "$ADMIN" >"$LOG" 2>&1 &
SERVICE_PIDS+=($!)
wait_for shifterd test -S "$SOCKET"
wait_for "shifterd admin socket" test -S "$ADMIN"

# Cache misses on request from the benchmark user: hyperfine's --prepare (running as that user)
# writes a key name to a FIFO; this root loop releases environments through the admin socket
# (root only) and acknowledges. "pinned" keeps the environment that holds the image mount.
mkfifo -m 0622 "$WORK/release.req"
mkfifo -m 0644 "$WORK/release.ack"
PIN_KEY=''
release_loop() {
  local what keep
  while read -r what < "$WORK/release.req"; do
    keep=()
    if [ "$what" = pinned ]; then keep=("$(cat "$WORK/pin.key")"); fi
    if node dist/bench/environment-admin.js "$ADMIN" release "${keep[@]}" > "$WORK/release.last" 2>&1
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
PIN_KEY=$(node dist/bench/environment-admin.js "$ADMIN" prepare "$BENCH_UID" "$BENCH_GID" "$IMAGE" "$WORK/pin:/pin")
echo "$PIN_KEY" > "$WORK/pin.key"

created() { grep -c '"msg":"environment created"' "$LOG" || true; }
result() { echo "$WORK/results/$1.json"; }

echo
echo "== a. warm launch of /bin/true"
as_user "${HF[@]}" --warmup 20 --min-runs 200 --export-json "$(result a)" \
  -n shifter "$SHIFTER --image=$IMAGE /bin/true" \
  -n bwrap "${BWRAP[*]} /bin/true" \
  -n host-true "/bin/true" \
  -n host-busybox-true "/bin/busybox true"

echo
echo "== b. first launch of a new environment (every run a cache miss)"
before=$(created)
as_user "${HF[@]}" --runs 40 --prepare "$WORK/miss-pinned.sh" --export-json "$(result b1)" \
  -n "shifter, image already mounted" "$SHIFTER --image=$IMAGE /bin/true"
after=$(created)
B1_CREATED=$((after - before))
echo "environments created during b1: $B1_CREATED (of 40 runs)"
before=$after
as_user "${HF[@]}" --runs 40 --prepare "$WORK/miss-all.sh" --export-json "$(result b2)" \
  -n "shifter, nothing cached" "$SHIFTER --image=$IMAGE /bin/true"
after=$(created)
B2_CREATED=$((after - before))
echo "environments created during b2: $B2_CREATED (of 40 runs)"
PIN_KEY=$(node dist/bench/environment-admin.js "$ADMIN" prepare "$BENCH_UID" "$BENCH_GID" "$IMAGE" "$WORK/pin:/pin")
echo "$PIN_KEY" > "$WORK/pin.key"

echo
echo "== c. 64 concurrent launches of /bin/true (wall time of all 64)"
as_user "${HF[@]}" --warmup 3 --min-runs 20 --export-json "$(result c)" \
  -n shifter "$WORK/par.sh 64 $SHIFTER --image=$IMAGE /bin/true" \
  -n bwrap "$WORK/par.sh 64 ${BWRAP[*]} /bin/true" \
  -n host-true "$WORK/par.sh 64 /bin/true"

echo
echo "== d. warm python3 -c '$PY'"
as_user "${HF[@]}" --warmup 5 --min-runs 40 --export-json "$(result d)" \
  -n shifter "$SHIFTER --image=$IMAGE python3 -c '$PY'" \
  -n bwrap "${BWRAP[*]} /usr/bin/python3 -c '$PY'" \
  -n host "/usr/bin/python3 -c '$PY'"

echo
echo "== summary (median ms; mean +- stddev; min)   load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
node - "$WORK/results" "$B1_CREATED" "$B2_CREATED" <<'JS'
const fs = require('fs');
const [dir, b1Created, b2Created] = process.argv.slice(2);
const load = (n) => Object.fromEntries(JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8')).results.map((r) => [r.command, r]));
const ms = (s) => (s * 1000).toFixed(2);
const fig = (r) => `${ms(r.median).padStart(8)}   ${ms(r.mean)} +- ${ms(r.stddev)}; min ${ms(r.min)}   (${r.times.length} runs)`;
const row = (label, r) => console.log(`  ${label.padEnd(34)}${fig(r)}`);
const ratio = (x, y) => (x.median / y.median).toFixed(2);
const verdict = (ok) => (ok ? 'MET' : 'NOT MET');

const a = load('a');
console.log('a. warm /bin/true');
for (const k of ['shifter', 'bwrap', 'host-true', 'host-busybox-true']) row(k, a[k]);
console.log(`  ratio shifter/bwrap ${ratio(a.shifter, a.bwrap)}, shifter/host-busybox-true ${ratio(a.shifter, a['host-busybox-true'])}`);

const b1 = Object.values(load('b1'))[0], b2 = Object.values(load('b2'))[0];
console.log('b. first launch, new environment (cache miss every run)');
row('image already mounted', b1);
row('nothing cached (attach + mount)', b2);
console.log(`  environments created: ${b1Created} and ${b2Created} for 40 runs each`);
console.log(`  target 10 ms: image mounted ${verdict(b1.median * 1000 < 10)}, nothing cached ${verdict(b2.median * 1000 < 10)}`);

const c = load('c');
console.log('c. 64 concurrent /bin/true, wall time');
for (const k of ['shifter', 'bwrap', 'host-true']) row(k, c[k]);
console.log(`  ratio shifter/bwrap ${ratio(c.shifter, c.bwrap)}, shifter/host ${ratio(c.shifter, c['host-true'])}; target 150 ms: ${verdict(c.shifter.median * 1000 < 150)}`);

const d = load('d');
console.log("d. warm python3 -c 'import json, email'");
for (const k of ['shifter', 'bwrap', 'host']) row(k, d[k]);
const over = (d.shifter.median / d.host.median - 1) * 100;
console.log(`  shifter vs host ${over >= 0 ? '+' : ''}${over.toFixed(1)}%, bwrap vs host ${((d.bwrap.median / d.host.median - 1) * 100).toFixed(1)}%; target within 10%: ${verdict(over <= 10)}`);
JS
