/**
 * `shifterimg pull IMAGE` asks the gateway to pull and then asks again every 0.5 s (each POST
 * returns the record's current state, as upstream) until the image is READY or FAILURE.
 * `pullnb` asks once and reports where the pull stands.
 * Unlike upstream, FAILURE exits non-zero, with the gateway's reason on stderr.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ShifterError, isShifterError } from '../../../common/errors.js';
import { formatImageDescriptor, parseImageDescriptor } from '../../../common/image-descriptor.js';
import type { CommandContext } from '../command-context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import type { PullAcl } from '../../../common/gateway-client/client.js';
import { parseImageRecord } from '../gateway-record.js';
import { PullDisplay, pullStatusLine } from '../pull-progress.js';

export const POLL_INTERVAL_MS = 500;

export async function runPull(ctx: CommandContext, imageArg: string, acl: PullAcl, follow: boolean): Promise<ExitCode> {
  const image = parseImageDescriptor(imageArg, ctx.config.defaultImageType);
  const name = formatImageDescriptor(image);
  const display = new PullDisplay(ctx.stdout, follow && !ctx.verbose && ctx.stdout.isTTY === true);

  // The pull itself runs on the gateway; stopping here only stops watching it.
  const onSignal = (signal: NodeJS.Signals): void => {
    display.finish();
    ctx.stderr.write(
      `shifterimg: interrupted; the gateway goes on pulling ${name}: run \`shifterimg pull ${name}\` to follow it again\n`,
    );
    process.exit(signal === 'SIGINT' ? EXIT.INTERRUPTED : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (;;) {
      let answer: unknown;
      try {
        answer = await ctx.client.pull(image, acl);
      } catch (e) {
        display.finish();
        if (isShifterError(e) && e.code === 'NOT_FOUND') {
          throw new ShifterError('NOT_FOUND', `the image gateway cannot pull ${name}: ${e.message}`);
        }
        throw e;
      }
      const rec = parseImageRecord(answer, `the pull of ${name}`);
      display.show(pullStatusLine(new Date(), image, rec), rec);
      if (rec.status === 'READY') {
        display.finish();
        return EXIT.OK;
      }
      if (rec.status === 'FAILURE') {
        display.finish();
        ctx.stderr.write(`shifterimg: pull of ${name} failed: ${rec.statusMessage || 'the gateway gave no reason'}\n`);
        return EXIT.NOT_FOUND_OR_FAILED;
      }
      if (!follow) {
        display.finish();
        return EXIT.OK;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
