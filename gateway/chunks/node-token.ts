/**
 * Short-lived bearer tokens for nodes. A munge credential is refused the second time it is seen,
 * and a node reading an image lazily makes hundreds of chunk requests: so a node exchanges one
 * munge credential made by root for a token (`POST /api/chunks/<system>/session`) and sends it as
 * `Authorization: Bearer <token>` until it expires. The token is an HMAC over the system, the
 * expiry and a random session id under a secret this gateway process draws at start: a restarted
 * gateway, or another one of a failover list, answers 401 and the node exchanges a fresh
 * credential. The session id tells nodes apart (chunk admission queues per node).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Long enough for a job start's burst of requests, short enough that a leaked token soon dies. */
export const NODE_TOKEN_SECONDS = 600;

export interface IssuedToken {
  readonly token: string;
  /** Epoch seconds. */
  readonly expires: number;
}

export type TokenCheck = 'valid' | 'expired' | 'invalid';

export interface NodeTokens {
  issue(system: string): IssuedToken;
  check(token: string, system: string): TokenCheck;
}

export function createNodeTokens(
  secret: Buffer = randomBytes(32),
  ttlSeconds = NODE_TOKEN_SECONDS,
  now: () => number = () => Date.now() / 1000,
): NodeTokens {
  const mac = (system: string, expires: number, session: string) =>
    createHmac('sha256', secret).update(`${system}\n${expires}\n${session}`).digest('base64url');
  return {
    issue(system) {
      const expires = Math.floor(now()) + ttlSeconds;
      const session = randomBytes(12).toString('base64url');
      const token = `${Buffer.from(system).toString('base64url')}.${expires}.${session}.${mac(system, expires, session)}`;
      return { token, expires };
    },
    check(token, system) {
      const parts = token.split('.');
      if (parts.length !== 4 || !/^\d{1,15}$/.test(parts[1])) return 'invalid';
      if (Buffer.from(parts[0], 'base64url').toString() !== system) return 'invalid';
      const expires = Number(parts[1]);
      const given = Buffer.from(parts[3]);
      const want = Buffer.from(mac(system, expires, parts[2]));
      if (given.length !== want.length || !timingSafeEqual(given, want)) return 'invalid';
      return expires > now() ? 'valid' : 'expired';
    },
  };
}
