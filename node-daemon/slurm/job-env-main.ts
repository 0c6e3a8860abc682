/**
 * shifter-job-env: run as root by shifter_spank.so in the job prolog and epilog.
 *   shifter-job-env prepare --config udiRoot.conf --job ID --uid UID --gid GID   (reads SPANK_SHIFTER_*)
 *   shifter-job-env release --config udiRoot.conf --job ID --uid UID
 * Prints one line for the slurmd log. Exits 0 when there was nothing to do, 1 when it failed
 * (shifterd unreachable: the line names siteContact, as the launcher does).
 */
import { parseArgs } from 'node:util';
import { ShifterError, describeError, isShifterError } from '../../common/errors.js';
import type { UdiRootConfig } from '../../common/config/udiroot-conf.js';
import { readUdiRootConf, resolveUdiRootConfPath } from '../../common/config/udiroot-file.js';
import {
  adminSocketPath,
  describeStage,
  isLazyOnNode,
  jobRequestFromEnv,
  pinnedImageId,
  prepareJobEnvironment,
  releaseJobEnvironment,
  stageJobImage,
} from './job-env.js';
import { VERSION_LINE } from '../../common/version.js';

function wholeNumber(text: string | undefined, name: string): number {
  if (text === undefined || !/^\d+$/.test(text)) throw new ShifterError('BAD_ARGUMENT', `--${name} needs a number`);
  return Number(text);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: {
      config: { type: 'string' },
      job: { type: 'string' },
      uid: { type: 'string' },
      gid: { type: 'string' },
      version: { type: 'boolean' },
    },
    allowPositionals: true,
  });
  if (values.version === true) {
    process.stdout.write(`${VERSION_LINE}\n`);
    return;
  }
  const { config } = await readUdiRootConf(resolveUdiRootConfPath(values.config));
  const adminSocket = adminSocketPath(config.shifterdSocket ?? '/run/shifter/shifterd.sock');
  const jobId = String(wholeNumber(values.job, 'job'));
  try {
    await run(positionals[0], config, adminSocket, jobId, values);
  } catch (e) {
    // As the launcher says it: the user whose job failed is told who can restart shifterd.
    if (!isShifterError(e) || e.code !== 'UNREACHABLE') throw e;
    const who = config.siteContact === undefined ? "tell your site's support" : `contact ${config.siteContact}`;
    throw new ShifterError('UNREACHABLE', `${e.message}; ${who}`, e);
  }
}

async function run(
  command: string | undefined,
  config: UdiRootConfig,
  adminSocket: string,
  jobId: string,
  values: { uid?: string; gid?: string },
): Promise<void> {
  switch (command) {
    case 'prepare': {
      const req = jobRequestFromEnv(process.env);
      if (req === undefined) return;
      const job = { jobId, uid: wholeNumber(values.uid, 'uid'), gid: wholeNumber(values.gid, 'gid') };
      // The stage comes first: the environment's mount then reads the staged chunks from the cache.
      const id = pinnedImageId(req.image);
      const limit = config.lazyImageCache?.prologStageTimeoutSeconds ?? 0;
      const staged =
        id !== undefined && limit > 0 && isLazyOnNode(config, id)
          ? `; ${describeStage(id, await stageJobImage(adminSocket, id, limit))}`
          : '';
      const info = await prepareJobEnvironment(adminSocket, job, req);
      process.stdout.write(
        `shifter: job ${jobId}: environment for ${req.image} ${info.reused ? 'reused' : 'prepared'}${staged}\n`,
      );
      return;
    }
    case 'release': {
      const outcome = await releaseJobEnvironment(adminSocket, { jobId, uid: wholeNumber(values.uid, 'uid') });
      if (outcome.kind === 'kept') process.stdout.write(`shifter: job ${jobId}: environment kept for another job\n`);
      if (outcome.kind !== 'released') return;
      const killed = outcome.killed > 0 ? `, ${outcome.killed} process(es) left inside it killed` : '';
      process.stdout.write(`shifter: job ${jobId}: environment released${killed}\n`);
      if (outcome.left > 0) {
        throw new ShifterError(
          'INTERNAL',
          `${outcome.left} process(es) of the job survived SIGKILL inside its environment`,
        );
      }
      return;
    }
    default:
      throw new ShifterError('BAD_ARGUMENT', 'shifter-job-env: the first argument is prepare or release');
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`shifter: ${describeError(e).replace(/[\r\n\t]+/g, ' ')}\n`);
  process.exitCode = 1;
});
