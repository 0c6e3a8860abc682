/** `shifterimg lookup IMAGE`: prints only the image id; the launcher and scripts read it. */
import { ShifterError, isShifterError } from '../../../common/errors.js';
import { formatImageDescriptor, isImageId, parseImageDescriptor } from '../../../common/image-descriptor.js';
import type { CommandContext } from '../command-context.js';
import { GatewayAnswerError } from '../../../common/gateway-client/errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { parseImageRecord } from '../gateway-record.js';

export async function runLookup(ctx: CommandContext, imageArg: string): Promise<ExitCode> {
  const image = parseImageDescriptor(imageArg, ctx.config.defaultImageType);
  const name = formatImageDescriptor(image);
  let answer: unknown;
  try {
    answer = await ctx.client.lookup(image);
  } catch (e) {
    if (isShifterError(e) && e.code === 'NOT_FOUND') {
      throw new ShifterError(
        'NOT_FOUND',
        `image ${name} not found on system '${ctx.system}' (gateway: ${e.message}): pull it with \`shifterimg pull ${name}\``,
      );
    }
    throw e;
  }
  const rec = parseImageRecord(answer, `the lookup of ${name}`);
  if (rec.status !== 'READY') {
    throw new ShifterError(
      'NOT_FOUND',
      `image ${name} is not ready on system '${ctx.system}' (status ${rec.status}): wait for \`shifterimg pull ${name}\` to finish`,
    );
  }
  if (!isImageId(rec.id)) {
    throw new GatewayAnswerError(`the gateway returned an invalid image id for ${name}: '${rec.id.slice(0, 80)}'`);
  }
  ctx.stdout.write(`${rec.id}\n`);
  return EXIT.OK;
}
