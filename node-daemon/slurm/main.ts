/**
 * shifter-job-check: run by the SPANK plugin at submit (sbatch, salloc, srun), as the
 * submitting user. Prints the job's SHIFTER_* variables (NAME=VALUE lines) and exits 0, or
 * prints one `shifter: ...` line and exits 1 (what the user can fix) or 125 (a failure here),
 * which makes the submit command fail before any job is queued.
 *   shifter-job-check --config udiRoot.conf [--image IMAGE] [--volume MAPS] [--module LIST]
 */
import { parseArgs } from 'node:util';
import { ShifterError, describeError, isShifterError } from '../../common/errors.js';
import { readUdiRootConf, resolveUdiRootConfPath } from '../../common/config/udiroot-file.js';
import { mungeEncode } from '../../common/munge.js';
import { VERSION_LINE } from '../../common/version.js';
import { ImageResolver, type Caller } from '../image-resolver.js';
import { checkJob, formatJobExports } from './job-check.js';

function oneLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').trim();
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        config: { type: 'string' },
        image: { type: 'string' },
        volume: { type: 'string', multiple: true },
        module: { type: 'string' },
        version: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ShifterError('BAD_ARGUMENT', `shifter-job-check: ${describeError(e)}`);
  }
  if (values.version === true) {
    process.stdout.write(`${VERSION_LINE}\n`);
    return;
  }
  const { config } = await readUdiRootConf(resolveUdiRootConfPath(values.config));
  const caller: Caller = { uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!() };
  const resolver = new ImageResolver({
    // Only the gateway lookup runs here: login nodes need not see imagePath.
    imagePath: config.imagePath ?? '',
    gateways: config.imageGateway,
    system: config.system,
    defaultImageType: config.defaultImageType,
    gatewayTimeout: config.gatewayTimeout,
    // This program runs as the submitting user: its own credential carries the right identity.
    credentialFor: () => mungeEncode('', { socket: config.mungeSocketPath }).catch(() => undefined),
  });
  const volume = values.volume === undefined ? undefined : values.volume.join(';');
  const exports = await checkJob(
    { image: values.image, volume, module: values.module },
    config,
    async (request) => (await resolver.resolveId(request, caller)).id,
  );
  process.stdout.write(formatJobExports(exports));
}

main().catch((e: unknown) => {
  const internal = !isShifterError(e) || e.code === 'INTERNAL' || e.code === 'IO_ERROR';
  process.stderr.write(`shifter: ${oneLine(describeError(e))}\n`);
  process.exitCode = internal ? 125 : 1;
});
