/**
 * What a Slurm job asked for with --image/--volume/--module, checked at submit with the rules
 * shifterd applies to `shifter` (the same option, volume and module code), and the image
 * resolved once to its id so that the whole job runs what the tag named at submit, even if the
 * tag moves later. The result is the environment the SPANK plugin exports to the job.
 */
import { ShifterError } from '../../common/errors.js';
import type { UdiRootConfig } from '../../common/config/udiroot-conf.js';
import type { ImageId } from '../../common/image-descriptor.js';
import { parseShifterCommandLine } from '../command/options.js';
import { parseVolumeTexts } from '../command/volumes.js';
import { selectModules } from '../command/modules.js';

export interface JobRequest {
  image: string | undefined;
  /** The job's volume maps, `;`-separated (the plugin joins repeated --volume options). */
  volume: string | undefined;
  module: string | undefined;
}

/** The variables the plugin sets in the job's and the prolog's environment, in this order. */
export type JobExportName =
  'SHIFTER_IMAGE' | 'SHIFTER_IMAGETYPE' | 'SHIFTER_IMAGEREQUEST' | 'SHIFTER_VOLUME' | 'SHIFTER_MODULE';

export type JobExports = ReadonlyArray<readonly [JobExportName, string]>;

/** Resolves an image request for the submitting user (gateway lookup, image file, ACL). */
export type ResolveImage = (request: string) => Promise<ImageId>;

/**
 * Checks the request and pins the image. Throws ShifterError with the message `shifter` would
 * print for the same options.
 */
export async function checkJob(req: JobRequest, config: UdiRootConfig, resolve: ResolveImage): Promise<JobExports> {
  if (req.image === undefined) {
    const given = req.volume !== undefined ? '--volume' : '--module';
    throw new ShifterError('BAD_ARGUMENT', `${given} needs --image: add --image=NAME:TAG to the job`);
  }
  const argv = ['--image', req.image];
  if (req.volume !== undefined) argv.push('--volume', req.volume);
  if (req.module !== undefined) argv.push('--module', req.module);
  const parsed = parseShifterCommandLine([...argv, '--', 'true'], {});
  const o = parsed.kind === 'run' ? parsed.options : undefined;
  const image = o?.image;
  if (o === undefined || image === undefined) {
    throw new ShifterError('BAD_ARGUMENT', `--image '${req.image}' is not an image name: write --image=NAME:TAG`);
  }
  parseVolumeTexts(o.volumes, 'user');
  selectModules(o.modules, config.defaultModules, config.modules);
  const id = await resolve(image);

  const exports: Array<readonly [JobExportName, string]> = [
    ['SHIFTER_IMAGE', id],
    ['SHIFTER_IMAGETYPE', 'id'],
    ['SHIFTER_IMAGEREQUEST', o.imageRequest ?? image],
  ];
  if (req.volume !== undefined) exports.push(['SHIFTER_VOLUME', req.volume]);
  if (req.module !== undefined) exports.push(['SHIFTER_MODULE', req.module]);
  for (const [name, value] of exports) {
    if (/[\x00-\x1f\x7f]/.test(value)) {
      throw new ShifterError('BAD_ARGUMENT', `${name} would contain a control character: remove it from the option`);
    }
  }
  return exports;
}

/** The plugin reads one `NAME=VALUE` per line. */
export function formatJobExports(exports: JobExports): string {
  return exports.map(([name, value]) => `${name}=${value}\n`).join('');
}
