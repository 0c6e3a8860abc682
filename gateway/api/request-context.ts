/** What every route reads first: the system the URL names and the caller's session. */
import type { FastifyRequest } from 'fastify';
import { ShifterError } from '../../common/errors.js';
import type { Authenticator, Session } from '../auth/session.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';

export function platformOf(config: GatewayConfig, system: string): PlatformConfig {
  // Own keys only: "constructor" or "toString" in the URL must not find Object.prototype's members.
  const p = Object.hasOwn(config.platforms, system) ? config.platforms[system] : undefined;
  if (!p) {
    const known = Object.keys(config.platforms).join(', ');
    throw new ShifterError(
      'NOT_FOUND',
      `Bad session or system: system "${system}" is not configured on this gateway (known: ${known})`,
    );
  }
  return p;
}

export function sessionOf(auth: Authenticator, req: FastifyRequest, platform: PlatformConfig): Promise<Session> {
  const header = req.headers.authentication;
  return auth.authenticate(Array.isArray(header) ? header[0] : header, platform);
}

/** Admin-only routes: who is not an admin of the system is told who is. */
export function assertAdmin(session: Session, what: string): void {
  if (session.isAdmin) return;
  if (!session.identity) {
    throw new ShifterError(
      'AUTH_FAILED',
      `${what} needs an authenticated request (send a munge credential in the authentication header)`,
    );
  }
  throw new ShifterError(
    'PERMISSION_DENIED',
    `${what} is for admins of system ${session.system} (Platforms.${session.system}.admins); ` +
      `${session.identity.user} is not one`,
  );
}
