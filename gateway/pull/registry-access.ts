/**
 * Which registry a pull may reach (pure). Anyone may ask for a pull, so the registry host in an
 * image name is the user's choice; the gateway only connects to registries the site chose:
 * - `configured`: a `Locations` key or DefaultImageLocation (Docker Hub's aliases count as one).
 *   The site vouches for it: plain http if its url says so, any address, full error details.
 * - `pattern`: matched by `AllowedRegistries` only. Connections are guarded (no loopback,
 *   link-local or gateway addresses) and network errors are reported without details.
 * - `refused`: anything else; no connection is made.
 */
import { ShifterError } from '../../common/errors.js';
import type { GatewayConfig, RegistryPattern } from '../config/imagemanager.js';
import { isDockerHub } from '../reference/image-ref.js';

export type RegistryAccess = 'configured' | 'pattern';

/** One name per registry, for counting the pulls running against it. */
export function registryKey(location: string): string {
  return isDockerHub(location) ? 'docker.io' : location.toLowerCase();
}

function splitHostPort(location: string): { host: string; port: string | null } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(location.toLowerCase());
  return m ? { host: m[1], port: m[2] ?? null } : { host: location.toLowerCase(), port: null };
}

export function matchesPattern(location: string, pattern: RegistryPattern): boolean {
  const { host, port } = splitHostPort(location);
  const hostOk = pattern.suffix ? host.endsWith(`.${pattern.host}`) : host === pattern.host;
  const portOk = pattern.port === '*' || pattern.port === port;
  return hostOk && portOk;
}

function formatPattern(p: RegistryPattern): string {
  return `${p.suffix ? '*.' : ''}${p.host}${p.port !== null ? `:${p.port}` : ''}`;
}

/** How the gateway may talk to `location`; a PERMISSION_DENIED ShifterError when it may not. */
export function registryAccess(
  location: string,
  config: Pick<GatewayConfig, 'locations' | 'defaultImageLocation' | 'pullPolicy'>,
): RegistryAccess {
  const key = registryKey(location);
  const configured = [...Object.keys(config.locations), config.defaultImageLocation];
  if (configured.some((c) => registryKey(c) === key)) return 'configured';
  if (config.pullPolicy.allowedRegistries.some((p) => matchesPattern(location, p))) return 'pattern';
  const allowed = [...new Set([...configured, ...config.pullPolicy.allowedRegistries.map(formatPattern)])].join(', ');
  throw new ShifterError(
    'PERMISSION_DENIED',
    `this gateway does not pull from ${location}; it pulls from ${allowed}. ` +
      "Use one of those, or ask the site's admins to add the registry to Locations or AllowedRegistries",
  );
}
