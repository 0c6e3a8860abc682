#!/usr/bin/env bash
# MPI inside shifter with an injected module vs on the host (figures, not tests):
#   a. bench/mpi-pingpong.c (2 ranks on this node, `mpiexec.hydra -n 2`): one-way latency at 8 B
#      and bandwidth at 1 MiB, the same binary (a) on the host with the host's Debian MPICH, (b)
#      as `mpiexec -n 2 shifter --image=... --module=mpich` in an image carrying its own MPICH,
#      the module (bin/prep-mpi on the host's MPICH) injected in its place; ROUNDS interleaved
#      rounds, medians per side, ratio container/host;
#   b. the launch overhead of a module: warm `shifter --module=mpich /bin/true` vs
#      `--module=none` (hyperfine; both environments cached after the warmup).
# Every timed command runs as the ordinary user shifterbench (made with useradd if missing).
# Usage (as root): bash bench/mpi.sh [ROUNDS]   (default 5; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "mpi.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then
  echo "mpi.sh: run as root (it starts shifterd and makes a user)" >&2
  exit 2
fi
for f in dist/node-daemon/main.js dist/tools/prep-mpi/main.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "mpi.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in mpicc.mpich mpiexec.hydra hyperfine mksquashfs setpriv patchelf node; do
  command -v "$tool" >/dev/null || { echo "mpi.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done

BENCH_USER=shifterbench
id "$BENCH_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$BENCH_USER"
BENCH_GID=$(id -g "$BENCH_USER")
WORK=$(mktemp -d /tmp/shifter-mpi-bench.XXXXXX)
chmod 0755 "$WORK"
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
LOG=$WORK/shifterd.log
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -s "$LOG" ]; then
    echo "mpi.sh: failed (exit $rc); the end of shifterd's log:" >&2
    tail -n 20 "$LOG" | cut -c1-2000 >&2
  fi
  stop_services
  rm -rf "$WORK"
}
trap cleanup EXIT
as_user() { setpriv --reuid="$BENCH_USER" --regid="$BENCH_GID" --groups="$BENCH_GID" -- "$@"; }

echo "== machine"
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "MPICH $(pkg-config --modversion mpich), hyperfine $(hyperfine --version | cut -d' ' -f2), node $(node --version)"

LIB=usr/lib/x86_64-linux-gnu
ROOT=$WORK/rootfs
mkdir -p "$ROOT/app" "$ROOT/bin" "$ROOT/lib64" "$ROOT/$LIB/ucx" "$WORK/images" "$WORK/run"
chmod 0755 "$WORK/run"
mpicc.mpich -O2 -o "$ROOT/app/mpi-pingpong" bench/mpi-pingpong.c
cp "$ROOT/app/mpi-pingpong" "$WORK/mpi-pingpong"
ln -s usr/lib "$ROOT/lib"
cp /bin/busybox "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/true"
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"
ldd "$ROOT/app/mpi-pingpong" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
  cp -L "$path" "$ROOT/$LIB/$name"
done
cp -L /$LIB/ucx/*.so.0 "$ROOT/$LIB/ucx/"
mksquashfs "$ROOT" "$WORK/image.squashfs" -all-root -no-xattrs -quiet -noappend >/dev/null
IMAGE_ID=$(sha256sum "$WORK/image.squashfs" | cut -d' ' -f1)
mv "$WORK/image.squashfs" "$WORK/images/$IMAGE_ID.squashfs"
printf 'FORMAT: squashfs\nENV: PATH=/app:/bin\n' > "$WORK/images/$IMAGE_ID.meta"
IMAGE=id:$IMAGE_ID

echo
echo "== module"
bin/prep-mpi "$WORK/modules/mpich" > "$WORK/module.conf"
chmod 0755 "$WORK/modules"
{ echo "imagePath=$WORK/images"; echo "populateEtcDynamically=1"; cat "$WORK/module.conf"; } > "$WORK/udiRoot.conf"
chmod 0644 "$WORK/udiRoot.conf"
cat "$WORK/module.conf"
SOCKET=$WORK/run/shifterd.sock
bin/shifterd --config "$WORK/udiRoot.conf" --socket "$SOCKET" >"$LOG" 2>&1 &
SERVICE_PIDS+=($!)
wait_for shifterd test -S "$SOCKET"
export SHIFTERD_SOCKET=$SOCKET
SHIFTER=$PWD/native/build/shifter

# A check that the container side really loads the module's MPICH.
as_user "$SHIFTER" --image="$IMAGE" --module=mpich --check

echo
echo "== a. ping-pong, $ROUNDS interleaved rounds (2 ranks, mpiexec.hydra -n 2)"
: > "$WORK/host.txt"
: > "$WORK/container.txt"
for r in $(seq 1 "$ROUNDS"); do
  (cd /tmp && as_user mpiexec.hydra -n 2 "$WORK/mpi-pingpong") | tee -a "$WORK/host.txt" | sed "s/^/round $r host:      /"
  (cd /tmp && as_user mpiexec.hydra -n 2 "$SHIFTER" --image="$IMAGE" --module=mpich /app/mpi-pingpong) \
    | tee -a "$WORK/container.txt" | sed "s/^/round $r container: /"
done
node - "$WORK/host.txt" "$WORK/container.txt" <<'JS'
const fs = require('fs');
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const read = (f, size, key) => fs.readFileSync(f, 'utf8').split('\n')
  .filter((l) => l.includes(`size=${size} `)).map((l) => Number(new RegExp(`${key}=([\\d.]+)`).exec(l)[1]));
const [host, cont] = process.argv.slice(2);
for (const [size, key, label] of [[8, 'latency_us', '8 B one-way latency (us)'], [1048576, 'bandwidth_MBps', '1 MiB bandwidth (MB/s)']]) {
  const h = median(read(host, size, key));
  const c = median(read(cont, size, key));
  console.log(`${label.padEnd(28)} host ${h.toFixed(2).padStart(9)}   container ${c.toFixed(2).padStart(9)}   container/host ${(c / h).toFixed(3)}`);
}
JS

echo
echo "== b. warm launch: --module=mpich vs --module=none (/bin/true)"
chown "$BENCH_USER" "$WORK"
as_user hyperfine -N --warmup 5 --runs 40 --export-json "$WORK/launch.json" \
  -n module=mpich "$SHIFTER --image=$IMAGE --module=mpich /bin/true" \
  -n module=none "$SHIFTER --image=$IMAGE --module=none /bin/true" 2>&1 | grep -v '^ *$'
node -e 'for (const r of require(process.argv[1]).results)
  console.log(`${r.command.padEnd(14)} median ${(r.median * 1000).toFixed(2)} ms`)' "$WORK/launch.json"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
