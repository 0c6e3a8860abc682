/**
 * `shifterimg expire IMAGE` and `shifterimg autoexpire` (upstream's modes, GET routes). Admins may
 * expire any image; a user may expire a private image only they pulled. Upstream printed nothing;
 * these say what happened, one line, so a script can log it.
 */
import { GatewayAnswerError } from '../../../common/gateway-client/errors.js';
import { ShifterError, isShifterError } from '../../../common/errors.js';
import { formatImageDescriptor, parseImageDescriptor } from '../../../common/image-descriptor.js';
import type { CommandContext } from '../command-context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { unknownSystem } from './images.js';

export async function runExpire(ctx: CommandContext, imageArg: string): Promise<ExitCode> {
  const image = parseImageDescriptor(imageArg, ctx.config.defaultImageType);
  const name = formatImageDescriptor(image);
  try {
    await ctx.client.expire(image);
  } catch (e) {
    if (isShifterError(e) && e.code === 'NOT_FOUND') {
      throw new ShifterError('NOT_FOUND', `cannot expire ${name} on system '${ctx.system}': ${e.message}`);
    }
    throw e;
  }
  ctx.stdout.write(`expired ${name} on ${ctx.system}\n`);
  return EXIT.OK;
}

export async function runAutoexpire(ctx: CommandContext): Promise<ExitCode> {
  let answer: unknown;
  try {
    answer = await ctx.client.autoexpire();
  } catch (e) {
    throw unknownSystem(ctx, e);
  }
  const ids = (answer as { status?: unknown } | null)?.status;
  if (!Array.isArray(ids) || !ids.every((id): id is string => typeof id === 'string')) {
    throw new GatewayAnswerError(`the gateway's autoexpire answer has no list of image ids: ${JSON.stringify(answer)}`);
  }
  for (const id of ids) ctx.stdout.write(`expired ${id}\n`);
  ctx.stdout.write(`autoexpire: ${ids.length} image${ids.length === 1 ? '' : 's'} expired on ${ctx.system}\n`);
  return EXIT.OK;
}
