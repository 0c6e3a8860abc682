/** `shifterimg queue`: pulls the gateway is working on (the route existed upstream, the command did not: #124). */
import type { CommandContext } from '../command-context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { parseQueue } from '../gateway-record.js';
import { unknownSystem } from './images.js';

export async function runQueue(ctx: CommandContext): Promise<ExitCode> {
  let answer: unknown;
  try {
    answer = await ctx.client.queue();
  } catch (e) {
    throw unknownSystem(ctx, e);
  }
  for (const entry of parseQueue(answer)) ctx.stdout.write(`${entry.status.padEnd(11)} ${entry.image}\n`);
  return EXIT.OK;
}
