#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine of the project's kind:
# Debian packages (registry, image tools, squashfs, munge, Slurm, MPICH) and npm
# packages. Safe to run again: it installs only what is missing.
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
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "install-deps: npm run build"
npm run build --silent
