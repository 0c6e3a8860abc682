/** Where a registry lives and how to talk to it (one imagemanager.json Location). */
import { DOCKER_HUB_REGISTRY_URL } from '../reference/image-ref.js';
import type { ConnectGuard } from './address-guard.js';
import type { Platform } from './platform.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

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
  /** TCP connect plus TLS handshake (default 15 s). */
  connectTimeoutMs?: number;
  /** From a request sent to its answer's headers (default 30 s). */
  responseTimeoutMs?: number;
  /** Abort a body when no byte arrives for this long (default 60 s). */
  idleTimeoutMs?: number;
  /**
   * For a registry a user named that the site did not configure: every connection is checked (and
   * made to the checked address), and network failures are reported as "could not reach" only,
   * their details going to the log.
   */
  guard?: ConnectGuard;
  /** Attempts per request on network errors and 5xx (default 5). */
  attempts?: number;
  /** First back-off delay, doubled per attempt (default 500 ms). */
  backoffMs?: number;
  /** Where http_proxy/https_proxy/no_proxy are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The base URL of a registry that has no `Locations.<host>.url` in the config: always https
 * (Docker Hub's API lives on registry-1.docker.io whatever alias named it). Plain http only
 * where the site configured it: any client may name any registry host, and an http default
 * for loopback would let a client make the gateway talk plain HTTP to services on its own host.
 */
export function defaultBaseUrl(location: string, isDockerHub: boolean): string {
  return isDockerHub ? DOCKER_HUB_REGISTRY_URL : `https://${location}`;
}
