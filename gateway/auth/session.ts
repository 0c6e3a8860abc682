/**
 * Who is calling: the `authentication` header decoded into a session (upstream auth.py).
 * - munge: `unmunge --socket <Platforms.<sys>.mungeSocketPath>`; the payload may be JSON
 *   `{"authorized_locations": {"<location>|default": "user:pass"}}` with registry credentials.
 * - mock (tests only): `good:user:group[:token[:uid:gid]]`; `token`, when given, is base64 of the
 *   same JSON payload (upstream passed it through opaquely). Without uid/gid the names are looked
 *   up on this host.
 * - no header: an anonymous session (public lookups and pulls work, as upstream).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ShifterError } from '../../common/errors.js';
import { mungeDecode } from '../../common/munge.js';
import type { AuthenticationMode, PlatformConfig } from '../config/imagemanager.js';

const execFileP = promisify(execFile);

export interface RegistryLogin {
  username: string;
  password: string;
}

export interface Identity {
  user: string;
  uid: number;
  group: string;
  gid: number;
  /** Primary and supplementary gids (for group ACLs). */
  gids: number[];
}

export interface Session {
  system: string;
  /** null for an anonymous caller. */
  identity: Identity | null;
  /** `authorized_locations` from the credential payload (location or `default` → "user:pass"). */
  tokens: Record<string, string>;
  isAdmin: boolean;
}

/** Registry login for `location`: its own entry first, then `default` (upstream's order). */
export function credentialsFor(tokens: Record<string, string>, location: string): RegistryLogin | null {
  const entry = tokens[location] ?? tokens.default;
  if (!entry) return null;
  const i = entry.indexOf(':');
  if (i < 0) return null;
  return { username: entry.slice(0, i), password: entry.slice(i + 1) };
}

/** Reads `authorized_locations` from a payload; anything else in it is ignored. */
export function tokensFromPayload(payload: string): Record<string, string> {
  const text = payload.trim();
  if (!text.startsWith('{')) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ShifterError(
      'AUTH_FAILED',
      'the credential payload starts like JSON but is not valid JSON; send {"authorized_locations": {"<registry>": "user:password"}} or nothing',
    );
  }
  const locs = (v as Record<string, unknown>).authorized_locations;
  if (locs === undefined) return {};
  if (typeof locs !== 'object' || locs === null || Array.isArray(locs)) {
    throw new ShifterError(
      'AUTH_FAILED',
      'authorized_locations in the credential payload must be an object {"<registry>": "user:password"}',
    );
  }
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(locs)) if (typeof s === 'string') out[k] = s;
  return out;
}

async function supplementaryGids(uid: number, gid: number): Promise<number[]> {
  try {
    const { stdout } = await execFileP('id', ['-G', String(uid)], { timeout: 5000 });
    const gids = stdout.trim().split(/\s+/).map(Number).filter(Number.isInteger);
    return [...new Set([gid, ...gids])];
  } catch {
    return [gid];
  }
}

async function lookupId(flag: '-u' | '-g', user: string): Promise<number> {
  try {
    const { stdout } = await execFileP('id', [flag, user], { timeout: 5000 });
    return Number(stdout.trim());
  } catch {
    throw new ShifterError(
      'AUTH_FAILED',
      `mock credential names user "${user}", unknown on the gateway host; add ":<token>:<uid>:<gid>"`,
    );
  }
}

async function mockIdentity(header: string): Promise<{ identity: Identity; tokens: Record<string, string> }> {
  const parts = header.split(':');
  if (parts[0] !== 'good' || parts.length < 3 || parts.length > 6 || !parts[1] || !parts[2]) {
    throw new ShifterError(
      'AUTH_FAILED',
      'mock authentication failed: the header must be good:user:group[:token[:uid:gid]]',
    );
  }
  const [, user, group, token, uidText, gidText] = parts as [string, string, string, string?, string?, string?];
  let tokens: Record<string, string> = {};
  if (token) tokens = tokensFromPayload(Buffer.from(token, 'base64').toString('utf8'));
  const uid = uidText ? Number(uidText) : await lookupId('-u', user);
  const gid = gidText ? Number(gidText) : await lookupId('-g', user);
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0) {
    throw new ShifterError('AUTH_FAILED', 'mock authentication failed: uid and gid must be non-negative integers');
  }
  return { identity: { user, uid, group, gid, gids: [gid] }, tokens };
}

export interface Authenticator {
  authenticate(header: string | undefined, platform: PlatformConfig): Promise<Session>;
}

export function createAuthenticator(mode: AuthenticationMode): Authenticator {
  return {
    async authenticate(header, platform) {
      const value = header?.trim();
      if (!value) return { system: platform.name, identity: null, tokens: {}, isAdmin: false };
      let identity: Identity;
      let tokens: Record<string, string>;
      if (mode === 'mock') {
        ({ identity, tokens } = await mockIdentity(value));
      } else {
        const decoded = await mungeDecode(value, { socket: platform.mungeSocketPath });
        tokens = tokensFromPayload(decoded.payload);
        identity = {
          user: decoded.user,
          uid: decoded.uid,
          group: decoded.group,
          gid: decoded.gid,
          gids: await supplementaryGids(decoded.uid, decoded.gid),
        };
      }
      return { system: platform.name, identity, tokens, isAdmin: platform.admins.includes(identity.user) };
    },
  };
}
