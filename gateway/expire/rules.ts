/**
 * Who may expire what, and when an image expires; pure. Upstream let only admins expire (users
 * could not remove their own images, #233): here a user may also expire a tag that only they
 * pulled, privately. Anything public or pulled by several users stays for an admin to decide.
 */
import { ShifterError } from '../../common/errors.js';
import type { Session } from '../auth/session.js';
import type { GatewayConfig } from '../config/imagemanager.js';
import type { ImageRecord } from '../store/record.js';

/** The expiration a pull or a lookup at `now` gives an image (null: ImageExpirationTimeout is not set). */
export function expiryAfter(config: Pick<GatewayConfig, 'imageExpirationTimeoutSec'>, now: number): number | null {
  return config.imageExpirationTimeoutSec === null ? null : now + config.imageExpirationTimeoutSec;
}

/** What an expire request names: one tag of the image, or (admins, `id` type) the whole image. */
export type ExpiryTarget = { kind: 'tag'; tag: string } | { kind: 'image' };

/** Throws unless `session` may expire `target` of `rec` (a record the caller may read). */
export function assertMayExpire(rec: ImageRecord, target: ExpiryTarget, session: Session): void {
  if (session.isAdmin) return;
  const who = session.identity;
  if (!who) {
    throw new ShifterError(
      'AUTH_FAILED',
      'expiring an image needs an authenticated request (send a munge credential in the authentication header)',
    );
  }
  const admins = `an admin of system ${session.system} (Platforms.${session.system}.admins)`;
  if (target.kind === 'image') {
    throw new ShifterError('PERMISSION_DENIED', `only ${admins} may expire an image by id; expire your tag instead`);
  }
  const grants = rec.grants.filter((g) => g.tag === target.tag);
  const own = grants.length > 0 && grants.every((g) => g.private && g.uid === who.uid);
  if (!own) {
    throw new ShifterError(
      'PERMISSION_DENIED',
      `${target.tag} is not a private image only you (${who.user}) pulled: ask ${admins} to expire it`,
    );
  }
}
