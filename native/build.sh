#!/usr/bin/env bash
# Builds the native parts into native/build/ (run by scripts/build-native.mjs). No network.
# SHIFTER_DEFAULT_UDIROOT_CONF: the udiRoot.conf the launcher reads shifterdSocket from when
# $SHIFTER_UDIROOT_CONF is not set at run time (default /etc/shifter/udiRoot.conf, as the other
# programs). For packages (scripts/package.mjs): SHIFTER_NATIVE_OUT, an absolute directory to build
# into instead of native/build, and SHIFTER_BIN_DIR, where the SPANK plugin finds shifter-job-check
# and shifter-job-env (default: bin/ of this checkout).
set -euo pipefail
cd "$(dirname "$0")"
out="${SHIFTER_NATIVE_OUT:-build}"
mkdir -p "$out"

udiroot_conf="${SHIFTER_DEFAULT_UDIROOT_CONF:-/etc/shifter/udiRoot.conf}"
case "$udiroot_conf" in
  /*) ;;
  *) echo "native/build.sh: SHIFTER_DEFAULT_UDIROOT_CONF must be an absolute path, not '$udiroot_conf'" >&2; exit 2 ;;
esac
case "$udiroot_conf" in
  *[\"\\]*) echo "native/build.sh: SHIFTER_DEFAULT_UDIROOT_CONF must not contain quotes or backslashes" >&2; exit 2 ;;
esac

# SHIFTER_VERSION (package.json's) and build/generated/shifter-help.h come from scripts/build-native.mjs.
version="${SHIFTER_VERSION:-}"
case "$version" in
  '' | *[!0-9A-Za-z.+-]*) echo "native/build.sh: SHIFTER_VERSION is unset or not a version: run scripts/build-native.mjs" >&2; exit 2 ;;
esac
[ -f "$out/generated/shifter-help.h" ] || { echo "native/build.sh: $out/generated/shifter-help.h is missing: run scripts/build-native.mjs" >&2; exit 2; }

CFLAGS=(-O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong)

# Static: one launcher per rank, and 16 ranks starting at once on 2 CPUs wait for each other's
# dynamic linking (~1.5 ms of wall time per launch measured at load 15, BENCHMARKS.md). It uses no NSS.
gcc "${CFLAGS[@]}" -std=gnu11 -static -DSHIFTER_DEFAULT_UDIROOT_CONF="\"$udiroot_conf\"" \
  -DSHIFTER_VERSION="\"$version\"" -I"$out/generated" -o "$out/shifter" \
  launcher/launcher.c launcher/udiroot.c common/launch-client.c common/fdio.c
gcc "${CFLAGS[@]}" -std=gnu11 -o "$out/shifter-nshelper" nshelper/*.c common/fdio.c

node_include="$(dirname "$(command -v node)")/../include/node"
[ -f "$node_include/node_api.h" ] || node_include=/usr/include/node
addon_api="$(node -p "require('node-addon-api').include_dir" 2>/dev/null || true)"
[ -f "$addon_api/napi.h" ] || addon_api=../node_modules/node-addon-api
g++ "${CFLAGS[@]}" -std=c++17 -fPIC -shared -fvisibility=hidden \
  -DNAPI_VERSION=8 -DNAPI_DISABLE_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED \
  -I"$node_include" -I"$addon_api" \
  -o "$out/shifter_native.node" addon.cc

# The SPANK plugin needs Slurm's spank.h (Debian: libslurm-dev); without it the rest still builds.
spank_h=/usr/include/slurm/spank.h
if [ -f "$spank_h" ]; then
  bin_dir="${SHIFTER_BIN_DIR:-$(cd .. && pwd)/bin}"
  gcc "${CFLAGS[@]}" -std=gnu11 -fPIC -shared -fvisibility=default -Wl,-Bsymbolic \
    -DSHIFTER_UDIROOT_CONF="\"$udiroot_conf\"" -DSHIFTER_DEFAULT_UDIROOT_CONF="\"$udiroot_conf\"" \
    -DSHIFTER_JOB_CHECK="\"$bin_dir/shifter-job-check\"" -DSHIFTER_JOB_ENV="\"$bin_dir/shifter-job-env\"" \
    -o "$out/shifter_spank.so" \
    spank/shifter_spank.c launcher/udiroot.c common/launch-client.c common/fdio.c
else
  rm -f "$out/shifter_spank.so"
  echo "native/build.sh: $spank_h not found (install libslurm-dev): shifter_spank.so not built" >&2
fi
