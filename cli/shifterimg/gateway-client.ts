/**
 * HTTP client for the image gateway's REST API (upstream routes, section 1.2 of the reference).
 * Like upstream, the `imageGateway` list is shuffled once so clients spread over the gateways,
 * and a request moves on to the next gateway when one cannot be reached or fails (5xx); unlike
 * upstream, an answer such as "not found" is final instead of being asked again elsewhere, and the
 * gateway that answered is tried first next time so a pull is followed on one server.
 * Every attempt carries a fresh munge credential: munged refuses a credential seen twice.
 */
import { ShifterError, describeError, isShifterError } from '../../common/errors.js';
import type { ImageDescriptor } from '../../common/image-descriptor.js';
import { GatewayAnswerError } from './exit-codes.js';
import { sanitizeForTerminal } from './gateway-record.js';

export interface ResponseInfo {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  readonly body: string;
}

export interface GatewayClientOptions {
  readonly gateways: readonly string[];
  readonly system: string;
  /** Per attempt; undefined or 0 means no limit. */
  readonly timeoutSeconds?: number;
  /** Makes the value of the `authentication` header. */
  readonly credential: () => Promise<string>;
  /** Sees every raw answer (shifterimg -v). */
  readonly onResponse?: (info: ResponseInfo) => void;
  readonly shuffle?: <T>(items: readonly T[]) => T[];
}

export interface PullAcl {
  readonly uids: readonly number[];
  readonly gids: readonly number[];
}

export function randomShuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Path segments escaped one by one: the tag keeps its `/`, everything else is encoded. */
export function routePath(route: string, system: string, image?: ImageDescriptor): string {
  const parts = [route, encodeURIComponent(system)];
  if (image) {
    parts.push(encodeURIComponent(image.type), image.tag.split('/').map(encodeURIComponent).join('/'));
  }
  return `/api/${parts.join('/')}/`;
}

function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/** The gateway's own explanation: upstream sends `{"error": ..., "message": ...}`. */
function gatewayMessage(body: string): string {
  try {
    const v: unknown = JSON.parse(body);
    if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      for (const k of ['error', 'message', 'status_message']) {
        if (typeof o[k] === 'string' && (o[k] as string).length > 0) return sanitizeForTerminal(o[k] as string).slice(0, 300);
      }
    }
  } catch { /* not JSON: use the text */ }
  const t = sanitizeForTerminal(body).trim();
  return t.length > 0 ? t.slice(0, 300) : 'no explanation given';
}

function networkReason(e: unknown, timeoutSeconds: number | undefined): string {
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) {
    return `no answer within ${timeoutSeconds} s (gatewayTimeout)`;
  }
  const cause = (e as { cause?: unknown } | undefined)?.cause as NodeJS.ErrnoException | undefined;
  switch (cause?.code) {
    case 'ECONNREFUSED': return 'connection refused';
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'host name not found';
    case 'ECONNRESET': return 'connection reset';
    case 'EHOSTUNREACH': case 'ENETUNREACH': return 'host unreachable';
    case 'ETIMEDOUT': return 'connection timed out';
    default: return cause?.message ?? describeError(e);
  }
}

export class GatewayClient {
  private order: string[];

  constructor(private readonly opts: GatewayClientOptions) {
    this.order = (opts.shuffle ?? randomShuffle)(opts.gateways);
  }

  list(): Promise<unknown> {
    return this.request('GET', routePath('list', this.opts.system));
  }

  lookup(image: ImageDescriptor): Promise<unknown> {
    return this.request('GET', routePath('lookup', this.opts.system, image));
  }

  pull(image: ImageDescriptor, acl: PullAcl): Promise<unknown> {
    const body: Record<string, string> = {};
    if (acl.uids.length > 0) body.allowed_uids = acl.uids.join(',');
    if (acl.gids.length > 0) body.allowed_gids = acl.gids.join(',');
    // progress=1 asks for the layer/byte counts; upstream gateways ignore the query.
    return this.request('POST', `${routePath('pull', this.opts.system, image)}?progress=1`, JSON.stringify(body));
  }

  queue(): Promise<unknown> {
    return this.request('GET', routePath('queue', this.opts.system));
  }

  private async credential(): Promise<string> {
    try {
      return await this.opts.credential();
    } catch (e) {
      // A local munged problem is an authentication problem for the user, whatever munge.ts calls it.
      throw new ShifterError('AUTH_FAILED', isShifterError(e) ? e.message : `cannot create a munge credential: ${describeError(e)}`, e);
    }
  }

  private async request(method: 'GET' | 'POST', path: string, body?: string): Promise<unknown> {
    const failures: string[] = [];
    let serverError: GatewayAnswerError | undefined;
    const timeout = this.opts.timeoutSeconds;
    for (const base of [...this.order]) {
      const url = joinUrl(base, path);
      const headers: Record<string, string> = { authentication: await this.credential(), accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      let res: Response;
      let text: string;
      try {
        res = await fetch(url, {
          method, headers, body, redirect: 'manual',
          ...(timeout ? { signal: AbortSignal.timeout(timeout * 1000) } : {}),
        });
        text = await res.text();
      } catch (e) {
        failures.push(`${base}: ${networkReason(e, timeout)}`);
        continue;
      }
      this.opts.onResponse?.({ method, url, status: res.status, body: text });
      if (res.status >= 500 && res.status !== 501) {
        serverError = new GatewayAnswerError(`the image gateway at ${base} failed (HTTP ${res.status}): ${gatewayMessage(text)}`, res.status);
        failures.push(`${base}: HTTP ${res.status}`);
        continue;
      }
      // This gateway answered: ask it first from now on.
      this.order = [base, ...this.order.filter((g) => g !== base)];
      return this.interpret(method, url, res, text);
    }
    if (serverError) throw serverError;
    throw new ShifterError('UNREACHABLE',
      `cannot reach the image gateway (${failures.join('; ')}): check that it is running and that imageGateway in udiRoot.conf is right`);
  }

  private interpret(method: string, url: string, res: Response, text: string): unknown {
    const status = res.status;
    if (status >= 200 && status < 300) {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new GatewayAnswerError(`the image gateway answered ${method} ${url} with something that is not JSON`, status);
      }
    }
    const why = gatewayMessage(text);
    if (status >= 300 && status < 400) {
      throw new GatewayAnswerError(
        `the image gateway redirected ${url} to ${res.headers.get('location') ?? '(nowhere)'}: put the final address in imageGateway`, status);
    }
    if (status === 401 || status === 403) {
      throw new ShifterError('AUTH_FAILED', `the image gateway refused the request: ${why}`);
    }
    if (status === 404) throw new ShifterError('NOT_FOUND', why);
    if (status === 501) throw new GatewayAnswerError(`this image gateway does not support that yet: ${why}`, status);
    if (status === 400 || status === 422) {
      throw new ShifterError('BAD_ARGUMENT', `the image gateway rejected the request: ${why}`);
    }
    throw new GatewayAnswerError(`the image gateway answered HTTP ${status}: ${why}`, status);
  }
}
