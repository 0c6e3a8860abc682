/**
 * shifter_spank.so in a real Slurm: it loads from plugstack.conf with upstream's plugin
 * arguments, adds --image/--volume/--module to sbatch, salloc and srun (registered in
 * slurm_spank_init, so sbatch sees them too), or --shifter.image etc. with long_options, and a
 * job that asks for none of them runs as before.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSlurmUser, startSlurm, type SlurmCluster, type SlurmUser } from '../helpers/slurm.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PLUGIN = join(REPO, 'native', 'build', 'shifter_spank.so');

let slurm: SlurmCluster;
let user: SlurmUser;
let work: string;

test.before(async () => {
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: install libslurm-dev and run npm run build`);
  user = ensureSlurmUser('shifterslurm1');
  work = await mkdtemp(join(tmpdir(), 'spank-opts-'));
  await chown(work, user.uid, user.gid);
  await writeFile(join(work, 'udiRoot.conf'), `imagePath=${work}\n`);
  slurm = await startSlurm({ plugstack: [`required ${PLUGIN} shifter_config=${join(work, 'udiRoot.conf')}`] });
});

test.after.always(async () => {
  await slurm?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const setPlugstack = (args: string) => writeFile(slurm.plugstackPath, `required ${PLUGIN} ${args}\n`);

test.serial('sbatch, salloc and srun offer --image, --volume and --module', async (t) => {
  for (const cmd of ['sbatch', 'salloc', 'srun']) {
    const r = await slurm.run(cmd, ['--help'], { user, cwd: work });
    t.is(r.code, 0, `${cmd}: ${r.stderr}`);
    t.regex(r.stdout, /--image=image/, cmd);
    t.regex(r.stdout, /--volume=from:to\[:ro\]/, cmd);
    t.regex(r.stdout, /--module=m1,m2\|none/, cmd);
    t.notRegex(r.stdout, /--shifter\.image/, cmd);
  }
});

test.serial('a job without shifter options runs untouched, with no SHIFTER_ variables', async (t) => {
  const r = await slurm.run('srun', ['-n', '1', 'sh', '-c', 'env | grep ^SHIFTER_ || echo none'], { user, cwd: work });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'none\n');
});

test.serial('long_options registers --shifter.image etc. instead', async (t) => {
  await setPlugstack(`shifter_config=${join(work, 'udiRoot.conf')} long_options`);
  for (const cmd of ['sbatch', 'srun']) {
    const r = await slurm.run(cmd, ['--help'], { user, cwd: work });
    t.is(r.code, 0, `${cmd}: ${r.stderr}`);
    t.regex(r.stdout, /--shifter\.image=image/, cmd);
    t.regex(r.stdout, /--shifter\.volume=from:to\[:ro\]/, cmd);
    t.regex(r.stdout, /--shifter\.module=m1,m2\|none/, cmd);
    t.notRegex(r.stdout, /\s--image=/, cmd);
  }
  const bad = await slurm.run('srun', ['--image=x:1', 'true'], { user, cwd: work });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /unrecognized option '--image=x:1'/);
});

test.serial('a plugin argument it does not know fails the command and names the argument', async (t) => {
  await setPlugstack('shifter_config=relative.conf');
  const r = await slurm.run('srun', ['-n', '1', 'true'], { user, cwd: work });
  t.not(r.code, 0);
  t.regex(r.stderr, /shifter: plugin argument 'shifter_config=relative\.conf' is not understood/);
});
