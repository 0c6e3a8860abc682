/**
 * Registry authentication: parsing `WWW-Authenticate` challenges and the Docker bearer-token flow.
 * Tokens are cached per (realm, service, scope, anonymous|credentialed) until shortly before
 * they expire. Credentials are only ever sent over TLS or to a loopback host.
 */
import { ShifterError } from '../../common/errors.js';
import { isLoopbackHost } from './proxy.js';
import type { RegistryCredentials } from './endpoint.js';

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (several challenges may be comma-joined). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const out: Challenge[] = [];
  let i = 0;
  const skipWs = () => {
    while (i < text.length && /[\s,]/.test(text[i])) i++;
  };
  const token = () => {
    const start = i;
    while (i < text.length && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(text[i])) i++;
    return text.slice(start, i);
  };
  while (i < text.length) {
    skipWs();
    const scheme = token();
    if (scheme === '') {
      i++;
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    for (;;) {
      while (i < text.length && /[\s]/.test(text[i])) i++;
      const save = i;
      if (text[i] === ',') i++;
      while (i < text.length && /\s/.test(text[i])) i++;
      const name = token();
      while (i < text.length && /\s/.test(text[i])) i++;
      if (name === '' || text[i] !== '=') {
        i = save;
        break;
      }
      i++;
      while (i < text.length && /\s/.test(text[i])) i++;
      let value = '';
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          value += text[i++];
        }
        i++;
      } else {
        const start = i;
        while (i < text.length && !/[\s,]/.test(text[i])) i++;
        value = text.slice(start, i);
      }
      challenge.params[name.toLowerCase()] = value;
    }
  }
  return out;
}

export function basicAuthorization(c: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** Refuses to put credentials on the wire in clear text, except to this machine. */
export function assertSafeForCredentials(url: URL, registry: string): void {
  if (url.protocol === 'https:' || isLoopbackHost(url.hostname)) return;
  throw new ShifterError(
    'BAD_CONFIG',
    `refusing to send credentials for ${registry} over plain http to ${url.host}; configure the registry location with an https:// URL`,
  );
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

interface CachedToken {
  value: string;
  expiresAt: number;
}

/** Remembers bearer tokens until 10 s before they expire. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  static key(realm: string, service: string, scope: string, credentialed: boolean): string {
    return JSON.stringify([realm, service, scope, credentialed]);
  }

  get(key: string, now = Date.now()): string | undefined {
    const t = this.tokens.get(key);
    if (!t) return undefined;
    if (t.expiresAt <= now) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.value;
  }

  set(key: string, value: string, expiresInSeconds: number, now = Date.now()): void {
    const lifetime = Math.max(
      0,
      (Number.isFinite(expiresInSeconds) && expiresInSeconds > 0 ? expiresInSeconds : 60) - 10,
    );
    this.tokens.set(key, { value, expiresAt: now + lifetime * 1000 });
  }
}

/** Extracts the token from a token server's JSON answer (`token`, or OAuth2's `access_token`). */
export function parseTokenResponse(body: Buffer): { token: string; expiresIn: number } {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ShifterError('REGISTRY_ERROR', 'the registry token server did not answer with JSON');
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const token = typeof o.token === 'string' && o.token !== '' ? o.token : o.access_token;
  if (typeof token !== 'string' || token === '')
    throw new ShifterError('REGISTRY_ERROR', 'the registry token server answered without a token');
  return { token, expiresIn: typeof o.expires_in === 'number' ? o.expires_in : 60 };
}

/** The token endpoint URL for a challenge and scope. */
export function tokenUrl(challenge: Challenge, scope: string): URL {
  const realm = challenge.params.realm;
  if (!realm) throw new ShifterError('REGISTRY_ERROR', 'the registry asked for a bearer token without naming a realm');
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new ShifterError('REGISTRY_ERROR', `the registry's token realm "${realm}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ShifterError('REGISTRY_ERROR', `the registry's token realm "${realm}" is not an http(s) URL`);
  }
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  url.searchParams.set('scope', scope);
  return url;
}
