/** Where a registry lives and how to talk to it (one imagemanager.json Location). */
import type { Platform } from './platform.js';
import { isLoopbackHost } from './proxy.js';

export interface RegistryCredentials { username: string; password: string }

export interface RegistryEndpoint {
  /** e.g. https://registry-1.docker.io, http://127.0.0.1:5000 */
  baseUrl: string;
  /** Extra CA bundle (PEM) to trust for this registry, e.g. a site's own registry. */
  caFile?: string;
  /** `token`: Docker bearer token flow on a 401 challenge; `basic`: send Basic credentials directly. */
  authMethod: 'token' | 'basic';
  credentials?: RegistryCredentials;
  /** Default linux/amd64. */
  platform?: Platform;
}

/** Tunables a deployment rarely changes; tests shorten them. */
export interface RegistryClientOptions {
  /** Abort a request when no byte arrives for this long (default 60 s). */
  idleTimeoutMs?: number;
  /** Attempts per request on network errors and 5xx (default 5). */
  attempts?: number;
  /** First back-off delay, doubled per attempt (default 500 ms). */
  backoffMs?: number;
  /** Where http_proxy/https_proxy/no_proxy are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The base URL of a registry that has no `Locations.<host>.url` in the config. Docker Hub's API
 * lives on registry-1.docker.io whatever alias named it. A registry on a loopback address is
 * spoken to over plain http, as Docker treats loopback registries as insecure by default (a
 * node-local registry rarely has a certificate); everything else is https.
 */
export function defaultBaseUrl(location: string, isDockerHub: boolean): string {
  if (isDockerHub) return 'https://registry-1.docker.io';
  const host = location.startsWith('[') ? location.slice(0, location.indexOf(']') + 1) : location.replace(/:\d+$/, '');
  return `${isLoopbackHost(host) ? 'http' : 'https'}://${location}`;
}
