/** `shifterimg images`: the READY images on this system that the caller may use. */
import { isShifterError } from '../../../common/errors.js';
import type { CommandContext } from '../command-context.js';
import { GatewayAnswerError } from '../../../common/gateway-client/errors.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { parseImageList } from '../gateway-record.js';
import { formatImagesTable } from '../images-table.js';

/** Upstream answers 404 for an unknown system (and a bad session) on the system-wide routes. */
export function unknownSystem(ctx: CommandContext, e: unknown): unknown {
  if (isShifterError(e) && e.code === 'NOT_FOUND') {
    return new GatewayAnswerError(
      `the image gateway does not serve system '${ctx.system}' (gateway: ${e.message}): check system= in ${ctx.config.sourceFile}`,
      404,
    );
  }
  return e;
}

export async function runImages(ctx: CommandContext): Promise<ExitCode> {
  let answer: unknown;
  try {
    answer = await ctx.client.list();
  } catch (e) {
    throw unknownSystem(ctx, e);
  }
  for (const line of formatImagesTable(parseImageList(answer))) ctx.stdout.write(`${line}\n`);
  return EXIT.OK;
}
