/**
 * One HTTP(S) exchange with a registry, token server or blob store, streaming the body.
 * Node's http/https modules rather than fetch: fetch can neither use a CA file per registry nor
 * honour http_proxy on Node 20. Connections are not pooled (each request owns its socket) so a
 * timeout and a mid-body abort affect exactly one request.
 * Three timeouts, each with its own timer and message: connecting (TCP and the TLS handshake),
 * waiting for the answer's headers, and silence in the middle of a body. (A socket timeout on a
 * TLS request fires only after twice its value, so none is used before the headers.)
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { ShifterError } from '../../common/errors.js';
import type { ConnectGuard } from './address-guard.js';
import { proxyAuthorization, proxyFor } from './proxy.js';

/** A failure worth retrying: the network, a timeout, or a 5xx/429 answer. */
export class TransientError extends Error {
  readonly url: string;
  readonly status: number | undefined;
  override readonly cause?: unknown;
  /**
   * No connection or no answer in time (as opposed to refused, reset, 5xx, or a body that stalled
   * after an answer, which is worth the usual retries: each resumes where the last one stopped).
   */
  readonly timedOut: boolean;

  constructor(message: string, url: string, status?: number, cause?: unknown, timedOut = false) {
    super(message);
    this.name = 'TransientError';
    this.url = url;
    this.status = status;
    this.cause = cause;
    this.timedOut = timedOut;
  }
}

export interface HttpTimeouts {
  /** TCP connect plus the TLS handshake. */
  connectTimeoutMs: number;
  /** From the request sent to the answer's headers. */
  responseTimeoutMs: number;
  /** No byte of the body moving for this long. */
  idleTimeoutMs: number;
}

export interface HttpRequest extends HttpTimeouts {
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  /** PEM bundle trusted in addition to the system roots. */
  ca?: string;
  env: NodeJS.ProcessEnv;
  /** Checks where a direct connection goes; the connection is made to the address it checked. */
  guard?: ConnectGuard;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The URL that answered (after redirects). */
  url: URL;
  body: http.IncomingMessage;
}

function bareHost(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

function portOf(url: URL): number {
  return Number(url.port || (url.protocol === 'https:' ? 443 : 80));
}

function trustedCa(ca: string | undefined): string[] | undefined {
  return ca === undefined ? undefined : [...tls.rootCertificates, ca];
}

const TLS_TRUST_CODES =
  /^(?:ERR_TLS_|ERR_SSL_|CERT_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_|ERR_OSSL_)/;

function networkError(e: unknown, url: URL): Error {
  if (e instanceof TransientError || e instanceof ShifterError || (e as Error | undefined)?.name === 'AbortError')
    return e as Error;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const msg = (e as Error | undefined)?.message ?? String(e);
  if (code && TLS_TRUST_CODES.test(code)) {
    // Retrying cannot fix a certificate we do not trust.
    return new ShifterError(
      'UNREACHABLE',
      `cannot verify the TLS certificate of ${url.host} (${msg}, ${code}); if the registry uses a private CA, ` +
        "set the sslcacert of its Location to that CA's PEM file",
      e,
    );
  }
  return new TransientError(code && !msg.includes(code) ? `${msg} (${code})` : msg, url.href, undefined, e);
}

function openTunnel(proxy: URL, target: URL, req: HttpRequest): Promise<net.Socket> {
  const authority = `${target.hostname}:${portOf(target)}`;
  const headers: Record<string, string> = { host: authority };
  const pa = proxyAuthorization(proxy);
  if (pa) headers['proxy-authorization'] = pa;
  const mod = proxy.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const connectReq = mod.request({
      host: bareHost(proxy.hostname),
      port: portOf(proxy),
      method: 'CONNECT',
      path: authority,
      headers,
      agent: false,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    const timer = setTimeout(
      () =>
        connectReq.destroy(
          new TransientError(
            `the proxy ${proxy.host} did not answer CONNECT within ${seconds(req.connectTimeoutMs + req.responseTimeoutMs)}`,
            target.href,
            undefined,
            undefined,
            true,
          ),
        ),
      req.connectTimeoutMs + req.responseTimeoutMs,
    );
    connectReq.on('connect', (res, socket) => {
      // The socket now belongs to the tunnel: destroying the CONNECT request later would cut it.
      clearTimeout(timer);
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(
          new TransientError(
            `the proxy ${proxy.host} refused to connect to ${authority} (HTTP ${res.statusCode})`,
            target.href,
            res.statusCode,
          ),
        );
        return;
      }
      resolve(socket);
    });
    connectReq.on('error', (e) => {
      clearTimeout(timer);
      reject(networkError(e, target));
    });
    connectReq.end();
  });
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

type LookupCallback = (
  err: Error | null,
  address: string | { address: string; family: number }[],
  family?: number,
) => void;

/** A `lookup` that always answers with the address the guard checked, so DNS cannot change it afterwards. */
function fixedLookup(address: string, family: number) {
  return (_host: string, options: { all?: boolean }, cb: LookupCallback) => {
    if (options.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  };
}

/** Sends one request (no redirect handling) and resolves when the response headers arrive. */
export async function send(req: HttpRequest): Promise<HttpResponse> {
  const { url } = req;
  const isHttps = url.protocol === 'https:';
  const proxy = proxyFor(url, req.env);
  // Through a proxy the proxy resolves names; an address literal is still ours to check.
  const checked =
    req.guard && (!proxy || net.isIP(bareHost(url.hostname)) !== 0)
      ? await req.guard.resolve(bareHost(url.hostname))
      : null;
  const headers: Record<string, string> = { ...req.headers, host: url.host };
  const path = `${url.pathname}${url.search}`;
  const common = { method: req.method, agent: false as const, ...(req.signal ? { signal: req.signal } : {}) };

  let options: http.RequestOptions | https.RequestOptions;
  let mod: typeof http | typeof https = isHttps ? https : http;
  if (proxy && !isHttps) {
    const pa = proxyAuthorization(proxy);
    if (pa) headers['proxy-authorization'] = pa;
    mod = proxy.protocol === 'https:' ? https : http;
    options = { ...common, host: bareHost(proxy.hostname), port: portOf(proxy), path: url.href, headers };
  } else if (proxy && isHttps) {
    const raw = await openTunnel(proxy, url, req);
    const host = bareHost(url.hostname);
    const ca = trustedCa(req.ca);
    const secure = tls.connect({
      socket: raw,
      host,
      ...(net.isIP(host) ? {} : { servername: host }),
      ...(ca ? { ca } : {}),
    });
    mod = http;
    // No agent at all: with `agent: false` Node would open its own connection instead of using ours.
    const { agent: _unused, ...noAgent } = common;
    options = { ...noAgent, path, headers, createConnection: () => secure };
  } else {
    const ca = trustedCa(req.ca);
    options = {
      ...common,
      host: bareHost(url.hostname),
      port: portOf(url),
      path,
      headers,
      ...(ca ? { ca } : {}),
      ...(checked ? { lookup: fixedLookup(checked.address, checked.family) } : {}),
    };
  }

  return new Promise((resolve, reject) => {
    let response: http.IncomingMessage | undefined;
    let timer: NodeJS.Timeout | undefined;
    const r = mod.request(options, (res) => {
      clearTimeout(timer);
      response = res;
      r.setTimeout(req.idleTimeoutMs, () => {
        const message = `${url.host} stopped sending for ${seconds(req.idleTimeoutMs)}`;
        const err = new TransientError(message, url.href);
        res.destroy(err);
        r.destroy(err);
      });
      resolve({ status: res.statusCode ?? 0, headers: res.headers, url, body: res });
    });
    const expire = (ms: number, message: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => r.destroy(new TransientError(message, url.href, undefined, undefined, true)), ms);
    };
    const target = proxy && !isHttps ? `the proxy ${proxy.host}` : url.host;
    const answering = () =>
      expire(
        req.responseTimeoutMs,
        `${target} accepted the connection but did not answer within ${seconds(req.responseTimeoutMs)}`,
      );
    expire(req.connectTimeoutMs, `could not connect to ${target} within ${seconds(req.connectTimeoutMs)}`);
    r.on('socket', (socket) => {
      // Every socket here is fresh (no agent): a TLS one has its handshake still ahead.
      if (socket instanceof tls.TLSSocket) socket.once('secureConnect', answering);
      else if (socket.connecting) socket.once('connect', answering);
      else answering();
    });
    r.on('close', () => {
      if (!response) clearTimeout(timer);
    });
    r.on('error', (e) => {
      clearTimeout(timer);
      reject(networkError(e, url));
    });
    r.end();
  });
}

/** Headers for following a redirect: credentials never go to another origin (upstream #232: S3 rejects them). */
export function headersForRedirect(from: URL, to: URL, headers: Record<string, string>): Record<string, string> {
  if (from.origin === to.origin) return headers;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== 'authorization') out[k] = v;
  return out;
}

export const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

/** Like `send`, following Location redirects. */
export async function sendFollowingRedirects(req: HttpRequest): Promise<HttpResponse> {
  let current = req;
  for (let hop = 0; ; hop++) {
    const res = await send(current);
    const location = res.headers.location;
    if (!REDIRECTS.has(res.status) || location === undefined) return res;
    res.body.destroy();
    if (hop >= MAX_REDIRECTS) {
      throw new TransientError(`more than ${MAX_REDIRECTS} redirects starting at ${req.url.href}`, req.url.href);
    }
    const next = new URL(location, current.url);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new TransientError(`redirect to unsupported URL scheme ${next.protocol}`, current.url.href);
    }
    current = { ...current, url: next, headers: headersForRedirect(current.url, next, current.headers) };
  }
}

/** Reads a whole (small) body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number): Promise<Buffer> {
  const declared = Number(res.headers['content-length'] ?? NaN);
  if (declared > limit) {
    res.body.destroy();
    throw new RangeError(`${res.url.href} sent ${declared} bytes, more than the ${limit} allowed`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length;
      if (n > limit) {
        res.body.destroy();
        throw new RangeError(`${res.url.href} sent more than the ${limit} bytes allowed`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    if (e instanceof RangeError) throw e;
    throw networkError(e, res.url);
  }
  return Buffer.concat(chunks);
}

/** Discards a body we will not read; the socket is not reused, so destroying is enough. */
export function discard(res: HttpResponse): void {
  res.body.destroy();
}

export { networkError };
