/**
 * `shifterimg login [location]` saves a registry login for this system (location `default`
 * when none is named: the gateway uses it for every registry without a login of its own), as
 * upstream: the munge credential of `user:password` replaces any earlier one for the same system
 * and location in ~/.udiRoot/.cred. Ours is restricted to the user's uid (munge --restrict-uid): munged
 * decodes it for that uid only, not even for root. Nothing is sent to the gateway until the next pull.
 * `shifterimg logout [location]` removes that location's login for this system, or all of them.
 */
import { mungeEncode } from '../../../common/munge.js';
import {
  checkLocationName,
  credentialFilePath,
  readCredentialFile,
  writeCredentialFile,
  type SavedLogin,
} from '../credential-file.js';
import type { LoginContext } from '../command-context.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { askLogin, type PromptInput } from '../login-prompt.js';

export const DEFAULT_LOCATION = 'default';

export async function runLogin(
  ctx: LoginContext,
  locationArg: string | undefined,
  input: PromptInput,
): Promise<ExitCode> {
  const location = checkLocationName(locationArg ?? DEFAULT_LOCATION);
  const saved = await readCredentialFile(ctx.home, ctx.uid);
  const answer = await askLogin(location, input, ctx.stderr);
  const cred = await mungeEncode(`${answer.username}:${answer.password}`, {
    socket: ctx.config.mungeSocketPath,
    restrictUid: ctx.uid,
  });
  const mine = (l: SavedLogin) => l.system === ctx.system && l.location === location;
  const next = saved.some(mine)
    ? saved.map((l) => (mine(l) ? { ...l, cred } : l))
    : [...saved, { system: ctx.system, location, cred }];
  await writeCredentialFile(ctx.home, ctx.uid, next);
  ctx.stdout.write(`Saved the login for ${location} on ${ctx.system} in ${credentialFilePath(ctx.home)}\n`);
  return EXIT.OK;
}

export async function runLogout(ctx: LoginContext, locationArg: string | undefined): Promise<ExitCode> {
  const location = locationArg === undefined ? undefined : checkLocationName(locationArg);
  const saved = await readCredentialFile(ctx.home, ctx.uid);
  const gone = (l: SavedLogin) => l.system === ctx.system && (location === undefined || l.location === location);
  const removed = saved.filter(gone);
  if (removed.length === 0) {
    const what = location === undefined ? 'no saved logins' : `no saved login for ${location}`;
    ctx.stdout.write(`There are ${what} on ${ctx.system}; nothing to do\n`);
    return EXIT.OK;
  }
  await writeCredentialFile(
    ctx.home,
    ctx.uid,
    saved.filter((l) => !gone(l)),
  );
  for (const l of removed) ctx.stdout.write(`Removed the login for ${l.location} on ${ctx.system}\n`);
  return EXIT.OK;
}
