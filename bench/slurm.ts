/**
 * Slurm figures (prints them; not a test). Needs root and a built tree. Usage:
 *   node dist/bench/slurm.js [rounds]   (or bash bench/slurm.sh [rounds]; default 15)
 * Starts the real stack the Slurm tests use (registry, gateway, shifterd, munged, slurmctld,
 * slurmd with shifter_spank.so) and measures, both sides in the same run:
 * 1. inside ONE allocation (`sbatch -n 16 -O --image=team/app:1`): `srun -n 16 /bin/true` vs
 *    `srun -n 16 shifter /bin/true` vs `srun -n 16 --image=team/app:1 /bin/true` (the plugin's
 *    task hook, no launcher), `rounds` rounds each, the order rotating every round;
 * 2. per-rank launch cost inside that job: shifter's own `-v` notice for every rank, and
 *    `/bin/true` vs `shifter /bin/true` timed inside each rank (16 ranks at once, and one alone);
 * 3. from `sbatch --image=X` to the first rank's command running inside the container (the
 *    ranks print /proc/uptime, the clock the driver reads just before sbatch), for an image
 *    already run on the node and for a new one (pulled to the gateway, never run on the node),
 *    and, as the baseline, for a job without an image (ranks on the host), alternating.
 * stop() ends exactly what start() started, also on failure or SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, tarLayer } from '../test/helpers/registry.js';
import { LAUNCHER } from '../test/node-daemon/runtime-fixture.js';
import { SlurmStack } from '../test/slurm/stack-fixture.js';

const rounds = Number(process.argv[2] ?? 15);
if (!Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write(`slurm bench: rounds must be a positive whole number, not '${process.argv[2]}'\n`);
  process.exit(2);
}
const LATENCY_ROUNDS = Math.max(2, Math.min(5, Math.ceil(rounds / 3)));
const TASKS = 16;

function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function median(xs: number[]): number {
  return quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
}

function stats(xs: number[], unit = 'ms'): string {
  const s = [...xs].sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(2);
  return `median ${f(quantile(s, 0.5))} ${unit}, p10 ${f(quantile(s, 0.1))}, p90 ${f(quantile(s, 0.9))} (n=${s.length})`;
}

/** Boot-time clock in seconds (10 ms resolution): the same clock /proc/uptime shows inside the container. */
function uptime(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

type Side = 'host' | 'shifter' | 'image';

/** Values of `<tag> <side> <ns>` lines, in ms, per side. */
function timings(out: string, tag: string): Record<Side, number[]> {
  const res = { host: [] as number[], shifter: [] as number[], image: [] as number[] };
  for (const m of out.matchAll(new RegExp(`^${tag} (?:\\d+ )?(host|shifter|image) (\\d+)$`, 'gm'))) {
    res[m[1] as Side].push(Number(m[2]) / 1e6);
  }
  return res;
}

const stack = new SlurmStack();
let stopping: Promise<void> | undefined;
const stop = () => (stopping ??= stack.stop());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`slurm bench: ${sig}, stopping what it started\n`);
    void stop().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

/** Pushes and pulls team/fresh<i>:1, a busybox image with its own content (so its own id). */
async function pushFresh(i: number): Promise<string> {
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
      { name: 'etc/os-release', content: `PRETTY_NAME="fresh ${i} ${Date.now()}"\n` },
    ]),
  );
  const name = `team/fresh${i}`;
  await pushImage(stack.reg!.url, name, '1', { layers: [layer], config: imageConfig({ Env: ['PATH=/bin'] }) });
  await stack.pull(`${name}:1`);
  return `${name}:1`;
}

async function runJob(args: string[], script: string): Promise<{ id: string; out: string }> {
  const r = await stack.sbatch([...args, '-o', join(stack.work, 'job-%j.out')], script);
  if (r.code !== 0) throw new Error(`sbatch failed: ${r.stderr.trim()}`);
  const id = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(id, 240_000);
  const out = await readFile(join(stack.work, `job-${id}.out`), 'utf8').catch(() => '');
  if (job.state !== 'COMPLETED') throw new Error(`job ${id} ended ${job.state} (${job.exitCode}):\n${out}`);
  return { id, out };
}

function stepScript(): string {
  const now = 'date +%s%N';
  const inRank = (n: number, times: number) =>
    `srun -n ${n} -O sh -c 'k=0; while [ $k -lt ${times} ]; do ` +
    `t0=$(${now}); /bin/true; t1=$(${now}); echo "RANK${n} host $((t1 - t0))"; ` +
    `t0=$(${now}); ${LAUNCHER} /bin/true; t1=$(${now}); echo "RANK${n} shifter $((t1 - t0))"; ` +
    `k=$((k + 1)); done'`;
  return [
    '#!/bin/sh',
    'set -e',
    // One unmeasured step of each kind first, as a warm-up.
    `srun -n ${TASKS} -O /bin/true`,
    `srun -n ${TASKS} -O ${LAUNCHER} /bin/true`,
    `srun -n ${TASKS} -O --image=team/app:1 /bin/true`,
    'i=0',
    `while [ $i -lt ${rounds} ]; do`,
    '  case $((i % 3)) in 0) order="host shifter image";; 1) order="shifter image host";; *) order="image host shifter";; esac',
    '  for side in $order; do',
    '    case $side in',
    '      host) cmd=/bin/true;;',
    `      shifter) cmd="${LAUNCHER} /bin/true";;`,
    '      image) cmd="--image=team/app:1 /bin/true";;',
    '    esac',
    `    t0=$(${now}); srun -n ${TASKS} -O $cmd; t1=$(${now})`,
    '    echo "STEP $i $side $((t1 - t0))"',
    '  done',
    '  i=$((i + 1))',
    'done',
    `srun -n ${TASKS} -O ${LAUNCHER} -v /bin/true`,
    inRank(TASKS, 5),
    inRank(1, 40),
    '',
  ].join('\n');
}

const latencyScript = (launcher: string) =>
  ['#!/bin/sh', `srun -n ${TASKS} -O ${launcher}cat /proc/uptime`, ''].join('\n');

/**
 * Seconds from just before sbatch to the earliest rank's /proc/uptime inside the container, or
 * on the host for a job without an image (plain Slurm, the baseline).
 */
async function submitToFirstRank(image: string | undefined): Promise<{ ms: number; created: string[] }> {
  const logBefore = stack.fx.log.length;
  const t0 = uptime();
  const { out } = await runJob(
    ['-n', String(TASKS), '-O', ...(image === undefined ? [] : [`--image=${image}`])],
    latencyScript(image === undefined ? '' : `${LAUNCHER} `),
  );
  const starts = [...out.matchAll(/^(\d+\.\d+) \d+\.\d+$/gm)].map((m) => Number(m[1]));
  if (starts.length !== TASKS) throw new Error(`expected ${TASKS} ranks to print /proc/uptime:\n${out}`);
  const created = [...stack.fx.log.slice(logBefore).matchAll(/"ms":([\d.]+)[^\n]*"environment created"/g)].map(
    (m) => `${Number(m[1]).toFixed(1)} ms`,
  );
  return { ms: (Math.min(...starts) - t0) * 1000, created };
}

async function main(): Promise<void> {
  const t = Date.now();
  await stack.start();
  const createdBefore = stack.fx.log.split('"environment created"').length;
  const job = await runJob(['-n', String(TASKS), '-O', '--image=team/app:1'], stepScript());
  const created = stack.fx.log.split('"environment created"').length - createdBefore;

  const steps = timings(job.out, 'STEP');
  const perRound = steps.host.map((h, i) => steps.shifter[i] / h);
  const perRoundImage = steps.host.map((h, i) => steps.image[i] / h);
  const notices = job.out.split('\n').filter((l) => l.startsWith('shifter: image '));
  const reused = notices.filter((l) => l.includes('environment reused')).length;
  const ready = notices.flatMap((l) => [...l.matchAll(/ready in ([\d.]+) ms/g)].map((m) => Number(m[1])));
  const r16 = timings(job.out, `RANK${TASKS}`);
  const r1 = timings(job.out, 'RANK1');

  // New images: pushed and pulled now, each never run on the node before its round.
  const fresh: string[] = [];
  for (let i = 0; i < LATENCY_ROUNDS; i++) fresh.push(await pushFresh(i));
  const warm: number[] = [];
  const cold: number[] = [];
  const plain: number[] = [];
  const coldCreated: string[] = [];
  const warmCreated: string[] = [];
  for (let i = 0; i < LATENCY_ROUNDS; i++) {
    const w = await submitToFirstRank('team/app:1');
    warm.push(w.ms);
    warmCreated.push(...w.created);
    const c = await submitToFirstRank(fresh[i]);
    cold.push(c.ms);
    coldCreated.push(...c.created);
    plain.push((await submitToFirstRank(undefined)).ms);
  }

  const f = (x: number) => x.toFixed(1);
  const lines = [
    `Slurm figures: ${rounds} rounds, ${TASKS} tasks per step, 2 CPUs overcommitted (-O), load ${(
      await readFile('/proc/loadavg', 'utf8')
    )
      .split(' ')
      .slice(0, 3)
      .join(' ')} at the end`,
    '',
    `1. srun -n ${TASKS} in one allocation (job ${job.id}; environments created for it: ${created})`,
    `   srun -n ${TASKS} /bin/true           ${stats(steps.host)}`,
    `   srun -n ${TASKS} shifter /bin/true   ${stats(steps.shifter)}`,
    `   srun -n ${TASKS} --image /bin/true   ${stats(steps.image)}`,
    `   shifter: ratio of medians ${(median(steps.shifter) / median(steps.host)).toFixed(3)}; ` +
      `per-round ratios median ${median(perRound).toFixed(3)} (${perRound.map((r) => r.toFixed(2)).join(' ')})`,
    `   --image: ratio of medians ${(median(steps.image) / median(steps.host)).toFixed(3)}; ` +
      `per-round ratios median ${median(perRoundImage).toFixed(3)} (${perRoundImage.map((r) => r.toFixed(2)).join(' ')})`,
    '',
    `2. per-rank launch cost`,
    `   shifter -v notices: ${notices.length} ranks, ${reused} "environment reused"; shifterd ${stats(ready)}`,
    `   inside each of ${TASKS} concurrent ranks: /bin/true ${stats(r16.host)}`,
    `                                  shifter /bin/true ${stats(r16.shifter)}`,
    `   one rank alone:                        /bin/true ${stats(r1.host)}`,
    `                                  shifter /bin/true ${stats(r1.shifter)}`,
    `   shifter's extra cost per launch (difference of medians): ${TASKS} ranks ` +
      `${f(median(r16.shifter) - median(r16.host))} ms, one rank ${f(median(r1.shifter) - median(r1.host))} ms ` +
      `(upstream: a new namespace per rank, 15 ms)`,
    '',
    `3. sbatch --image=X -> first of ${TASKS} ranks running inside the container (10 ms clock resolution)`,
    `   image already run on the node: ${warm.map(f).join(' ')} ms; ${stats(warm)}`,
    `     environments created by shifterd: ${warmCreated.join(', ') || 'none'}`,
    `   new image (never run on node):  ${cold.map(f).join(' ')} ms; ${stats(cold)}`,
    `     environments created by shifterd: ${coldCreated.join(', ') || 'none'}`,
    `   no image (plain Slurm, ranks on the host): ${plain.map(f).join(' ')} ms; ${stats(plain)}`,
    '',
    `total run time ${((Date.now() - t) / 1000).toFixed(0)} s (stack start and stop included up to here)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  process.stderr.write(`slurm bench: ${e instanceof Error ? e.message : String(e)}\n`);
} finally {
  await stop().catch((e: unknown) => {
    failed = true;
    process.stderr.write(`slurm bench: stopping failed: ${e instanceof Error ? e.message : String(e)}\n`);
  });
}
process.exit(failed ? 1 : 0);
