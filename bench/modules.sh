#!/usr/bin/env bash
# What a site module costs a warm launch (figures, not tests): `shifter /bin/true` into a cached
# environment of a tiny busybox image with
#   none     --module=none;
#   env      a module with copyPath (bound at /opt/udiImage/modules/env), siteEnv and
#            siteEnvPrepend: paid once, when the environment is built;
#   userhook a module whose userhook is an empty script: shifterd asks the helper to run
#            /bin/sh as the user inside the container before every launch;
#   devices  a module listing /dev/nvidiactl and /dev/nvidia* (character devices made with mknod
#            in a fake device root): the launch gets its own /dev; per launch shifterd lists
#            the device root to narrow /dev/nvidia<N> to CUDA_VISIBLE_DEVICES=1.
# All four in ROUNDS interleaved hyperfine rounds whose times are pooled; per-round medians too.
# Every timed command runs as the ordinary user shifterbench (made with useradd if missing).
# Usage (as root): bash bench/modules.sh [ROUNDS]   (default 4; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-4}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "modules.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then
  echo "modules.sh: run as root (it starts shifterd and makes a user)" >&2
  exit 2
fi
for f in dist/node-daemon/main.js native/build/shifter native/build/shifter-nshelper; do
  [ -e "$f" ] || { echo "modules.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in hyperfine mksquashfs setpriv node mknod; do
  command -v "$tool" >/dev/null || { echo "modules.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done

BENCH_USER=shifterbench
id "$BENCH_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$BENCH_USER"
BENCH_UID=$(id -u "$BENCH_USER")
BENCH_GID=$(id -g "$BENCH_USER")

WORK=$(mktemp -d /tmp/shifter-modules-bench.XXXXXX)
chmod 0755 "$WORK"
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
LOG=$WORK/shifterd.log
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -s "$LOG" ]; then
    echo "modules.sh: failed (exit $rc); the end of shifterd's log:" >&2
    tail -n 20 "$LOG" | cut -c1-2000 >&2
  fi
  stop_services
  rm -rf "$WORK"
}
trap cleanup EXIT

# A snapshot of the build, so a rebuild during the run does not mix versions.
REPO=$WORK/tree
mkdir -p "$REPO/native"
cp -a dist bin proto package.json "$REPO/"
cp -a native/build "$REPO/native/"
ln -s "$PWD/node_modules" "$REPO/node_modules"

echo "== machine"
echo "nproc: $(nproc)   kernel: $(uname -r)   cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hyperfine $(hyperfine --version | cut -d' ' -f2), node $(node --version)"

ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/dev" "$WORK/images" "$WORK/run" "$WORK/results"
chown "$BENCH_USER" "$WORK/results"
cp /bin/busybox "$ROOTFS/bin/busybox"
for applet in sh true; do ln -s busybox "$ROOTFS/bin/$applet"; done
mksquashfs "$ROOTFS" "$WORK/image.squashfs" -all-root -no-xattrs -quiet -noappend
IMAGE_ID=$(sha256sum "$WORK/image.squashfs" | cut -d' ' -f1)
mv "$WORK/image.squashfs" "$WORK/images/$IMAGE_ID.squashfs"
printf 'FORMAT: squashfs\nENV: PATH=/bin\n' > "$WORK/images/$IMAGE_ID.meta"
IMAGE=id:$IMAGE_ID

MODS=$WORK/modules
mkdir -p "$MODS/env/lib64" "$MODS/userhook"
echo 'module file' > "$MODS/env/lib64/README"
printf ':\n' > "$MODS/userhook/hook.sh"
DEVROOT=$WORK/dev
mkdir -m 0755 "$DEVROOT"
# Major 242 is for local use: no driver answers; the nodes are only bound, never opened.
for n in 0 1 2 3; do mknod -m 0666 "$DEVROOT/nvidia$n" c 242 "$n"; done
mknod -m 0666 "$DEVROOT/nvidiactl" c 242 255
cat > "$WORK/udiRoot.conf" <<CONF
imagePath=$WORK/images
populateEtcDynamically=1
module_env_copyPath=$MODS/env
module_env_siteEnv=MODULE_ENV=1
module_env_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/env/lib64
module_userhook_copyPath=$MODS/userhook
module_userhook_userhook=/opt/udiImage/modules/userhook/hook.sh
module_devices_devices=/dev/nvidiactl;/dev/nvidia*
CONF
chmod 0644 "$WORK/udiRoot.conf"
SOCKET=$WORK/run/shifterd.sock
SHIFTERD_TEST_DEVICE_ROOT=$DEVROOT "$REPO/bin/shifterd" --config "$WORK/udiRoot.conf" --socket "$SOCKET" \
  --admin-socket "$WORK/run/shifterd-admin.sock" >"$LOG" 2>&1 &
SERVICE_PIDS+=($!)
wait_for shifterd test -S "$SOCKET"

as_user() {
  (cd / && setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --init-groups -- \
    env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 CUDA_VISIBLE_DEVICES=1 SHIFTERD_SOCKET="$SOCKET" "$@")
}
SHIFTER=$REPO/bin/shifter

echo
echo "== sanity (as $BENCH_USER)"
as_user "$SHIFTER" --image="$IMAGE" --module=env /bin/sh -c 'echo "env: $MODULE_ENV $LD_LIBRARY_PATH $(cat /opt/udiImage/modules/env/lib64/README)"'
as_user "$SHIFTER" --image="$IMAGE" --module=devices /bin/sh -c 'echo devices: /dev/nvidia*'
as_user "$SHIFTER" --image="$IMAGE" --module=userhook /bin/true
grep -q '"msg":"launch refused"\|"launch failed' "$LOG" && { echo "modules.sh: a sanity launch failed" >&2; exit 1; }

echo
echo "== warm launch of /bin/true ($ROUNDS rounds)"
for r in $(seq 1 "$ROUNDS"); do
  as_user hyperfine -N --style basic --warmup 10 --min-runs 60 --export-json "$WORK/results/w-$r.json" \
    -n none "$SHIFTER --image=$IMAGE --module=none /bin/true" \
    -n env "$SHIFTER --image=$IMAGE --module=env /bin/true" \
    -n userhook "$SHIFTER --image=$IMAGE --module=userhook /bin/true" \
    -n devices "$SHIFTER --image=$IMAGE --module=devices /bin/true" 2>&1 >/dev/null \
    | { grep -v -e 'Statistical outliers' -e '^ *$' >&2 || true; }
  printf '  round %s/%s done, load %s\n' "$r" "$ROUNDS" "$(cut -d' ' -f1 /proc/loadavg)"
done

echo
echo "== summary: median of all runs pooled over the rounds [per-round medians]; p10 (ms)"
node - "$WORK/results" "$ROUNDS" <<'JS'
const fs = require('fs');
const [dir, rounds] = process.argv.slice(2);
const median = (v) => { const s = [...v].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const p10 = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 10)];
const all = {};
for (let r = 1; r <= Number(rounds); r++) {
  for (const res of JSON.parse(fs.readFileSync(`${dir}/w-${r}.json`, 'utf8')).results) {
    const e = (all[res.command] ??= { times: [], roundMedians: [] });
    e.times.push(...res.times);
    e.roundMedians.push(res.median);
  }
}
const ms = (s) => (s * 1000).toFixed(2);
for (const [name, e] of Object.entries(all)) {
  const d = median(e.times) - median(all.none.times);
  const over = name === 'none' ? '' : `  (${d >= 0 ? '+' : ''}${ms(d)} ms vs none)`;
  console.log(`  ${name.padEnd(10)}${ms(median(e.times)).padStart(7)}  [${e.roundMedians.map(ms).join(' ')}]  p10 ${ms(p10(e.times))}  (${e.times.length} runs)${over}`);
}
JS
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
