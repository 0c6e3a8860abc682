#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine of the project's kind:
# Debian packages (registry, image tools, squashfs, munge, Slurm, MPICH) and npm packages, then
# builds. Safe to run again: it installs only what is missing. Installing Debian packages needs
# root; as another user it checks that they are there and says what to run if not.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  docker-registry      # a real registry for tests and the demo
  umoci skopeo         # build test images and the upstream-pipeline benchmark
  squashfs-tools-ng    # tar2sqfs: streaming conversion
  squashfs-tools       # mksquashfs/unsquashfs: benchmark baseline and image checks
  munge                # authentication between shifterimg and the gateway
  apache2-utils        # htpasswd -B for registry basic-auth tests
  zstd pigz            # layer decompression
  bubblewrap hyperfine # runtime benchmarks
  openssl uidmap util-linux iproute2 procps build-essential python3 curl
  busybox-static       # static userland for the native runtime tests' tiny squashfs image
  xfsprogs             # mkfs.xfs for perNodeCache volumes
  clang-format         # style of native/ (native/.clang-format), checked by scripts/lint.sh
  slurm-wlm            # slurmctld, slurmd and the client commands for the single-node test Slurm
  libslurm-dev         # spank.h for native/spank/shifter_spank.so
  mpich libmpich-dev   # MPI programs (mpicc.mpich) launched through srun --mpi=pmi2
  libfuse2             # libfuse.so.2 for fuse-native: the node's lazy image cache
  nginx-light          # proxy_cache in front of the gateway in the lazy-cache tests
  patchelf             # tools/prep-mpi and prep-gpu set the rpath of module libraries
  pkgconf              # pkg-config: prep-mpi finds the MPI by its package name (--from mpich, the default)
  openssh-server openssh-client # remote imageDir transfer (accesstype remote) and its tests
  debootstrap          # the packaging tests install the .debs into a fresh Debian root
  dpkg-repack          # ... with the host's nodejs rebuilt as a .deb (the mirror has no NodeSource nodejs)
  systemd              # systemd-analyze verify checks the packages' units (no systemd runs as PID 1 here)
  gnuplot-nox          # bench/many-nodes.sh plots time and gateway bytes against N (bench/many-nodes.png)
  groff-base           # groff: the tests render the man pages (dist/man) and fail on any warning
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
root=false
[ "$(id -u)" = 0 ] && root=true
if [ ${#missing[@]} -eq 0 ]; then
  $root || echo "install-deps: not root; every Debian package needed is installed already"
elif ! $root; then
  echo "install-deps: missing Debian packages: ${missing[*]}; install them as root:" \
    "sudo bash scripts/install-deps.sh" >&2
  exit 1
else
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node_modules is current when npm's record of what it installed lists what package-lock.json asks for. (Comparing
# file times instead would rerun npm ci in every fresh checkout and worktree, through a shared node_modules too.)
installed_as_locked() {
  node -e '
    const { readFileSync } = require("node:fs");
    const want = JSON.parse(readFileSync("package-lock.json", "utf8")).packages;
    const have = JSON.parse(readFileSync("node_modules/.package-lock.json", "utf8")).packages;
    const ok = (k) => k === "" || (want[k].optional && !have[k]) ||
      (have[k]?.version === want[k].version && have[k]?.integrity === want[k].integrity);
    process.exit(Object.keys(want).every(ok) && Object.keys(have).every((k) => k in want) ? 0 : 1);
  ' 2>/dev/null
}

if ! installed_as_locked; then
  if ! $root && ! { [ -w . ] && { [ ! -e node_modules ] || [ -w node_modules ]; }; }; then
    echo "install-deps: node_modules is missing or not what package-lock.json lists, and $(id -un) cannot" \
      "write it; run as root: sudo bash scripts/install-deps.sh" >&2
    exit 1
  fi
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
if ! $root; then
  for d in . dist native/build; do
    if [ -e "$d" ] && [ ! -w "$d" ]; then
      echo "install-deps: $(id -un) cannot write $d, so cannot build: use a checkout you own, or run as root" >&2
      exit 1
    fi
  done
fi
echo "install-deps: npm run build"
npm run build --silent
