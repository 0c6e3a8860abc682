#!/usr/bin/env bash
# Slurm figures (not a test): `srun -n 16 shifter /bin/true` and `srun -n 16 --image=X /bin/true`
# vs `srun -n 16 /bin/true` in one allocation, per-rank launch cost, and sbatch to the first rank running in the container for an
# image already run on the node and for a new one. bench/slurm.ts does the work: it starts the
# real stack of the Slurm tests (registry, gateway, shifterd, munged, slurmctld, slurmd with
# shifter_spank.so) and stops exactly what it started, also on failure.
# Usage (as root): bash bench/slurm.sh [ROUNDS]   (default 15; needs a built tree: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-15}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "slurm.sh: ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then
  echo "slurm.sh: run as root (it starts slurmd, shifterd and munged)" >&2
  exit 2
fi
for f in dist/bench/slurm.js native/build/shifter native/build/shifter_spank.so; do
  [ -e "$f" ] || { echo "slurm.sh: $f is missing: build first (npm run build)" >&2; exit 2; }
done
for tool in slurmctld slurmd munged docker-registry; do
  command -v "$tool" >/dev/null || { echo "slurm.sh: $tool is missing: bash scripts/install-deps.sh" >&2; exit 2; }
done
echo "machine: $(nproc) vCPU, kernel $(uname -r), $(slurmd -V), $(node --version), $(date -u +%Y-%m-%dT%H:%MZ)"
exec node dist/bench/slurm.js "$ROUNDS"
