/**
 * The one HTTP client for the image gateway's REST API (upstream routes, reference section 1.2),
 * used by shifterimg and by shifterd's image resolver.
 *
 * Failover: like upstream, the `imageGateway` list is shuffled once so clients spread over the
 * gateways, and a request moves on to the next gateway when one gives no answer or fails (5xx).
 * Unlike upstream, an answer such as "not found" is final instead of being asked again
 * elsewhere, and the gateway that answered is asked first next time, so a pull is followed on
 * one server.
 *
 * Transport: undici's dispatcher, not fetch(): fetch refuses the ports of the WHATWG "bad port"
 * list (10080, 6000, ...), which curl and so upstream accept. Every attempt has a deadline,
 * gatewayTimeout (30 s when udiRoot.conf sets none; upstream waited forever), and the connect,
 * headers and body timeouts are each set to it too. Each attempt opens its own connection
 * (`connection: close`): a poll every half second gains nothing from keep-alive, and a reused
 * connection the server has just closed would look like a gateway that closed without answering.
 *
 * Every attempt carries a fresh credential: munged refuses a credential seen twice.
 */
import { Agent } from 'undici';
import { ShifterError, describeError, isShifterError } from '../errors.js';
import type { ImageDescriptor } from '../image-descriptor.js';
import { interpretAnswer, isServerFailure, serverFailureError, type GatewayAnswer } from './answer.js';
import { GatewayUnreachableError, type AttemptFailure, type GatewayAnswerError } from './errors.js';
import { routePath, type GatewayRoute } from './routes.js';
import { AnswerTooLargeError, attemptFailure, type AttemptPhase } from './transport-failure.js';

/** Per attempt when udiRoot.conf has no gatewayTimeout (or 0, which upstream's curl read as "no limit"). */
export const DEFAULT_GATEWAY_TIMEOUT_SECONDS = 30;
/** The longest delay a Node timer takes (about 24.8 days); longer ones would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A list of thousands of image records is a few MiB; anything far larger is not a gateway. */
const MAX_ANSWER_BYTES = 32 * 1024 * 1024;

/** The per-attempt deadline in seconds for a `gatewayTimeout` as udiRoot.conf gave it. */
export function gatewayTimeoutSeconds(configured: number | undefined): number {
  if (configured === undefined || !(configured > 0)) return DEFAULT_GATEWAY_TIMEOUT_SECONDS;
  return Math.min(configured, MAX_TIMER_MS / 1000);
}

/** Makes the value of the `authentication` header; undefined sends none (an anonymous request). */
export type CredentialSource = () => Promise<string | undefined>;

export const ANONYMOUS: CredentialSource = () => Promise.resolve(undefined);

export interface GatewayClientOptions {
  /** The imageGateway entries: http(s) URLs, possibly with a path prefix. */
  readonly gateways: readonly string[];
  readonly system: string;
  /** udiRoot.conf's gatewayTimeout as written (seconds per attempt); see gatewayTimeoutSeconds. */
  readonly gatewayTimeout: number | undefined;
  /** For requests that do not name their own. */
  readonly credential: CredentialSource;
  /** Named in configuration errors. */
  readonly configFile?: string;
  /** Sees every answer as it came (shifterimg -v). */
  readonly onAnswer?: (answer: GatewayAnswer) => void;
  readonly shuffle?: <T>(items: readonly T[]) => T[];
}

export interface PullAcl {
  readonly uids: readonly number[];
  readonly gids: readonly number[];
}

interface GatewayAddress {
  /** As the config wrote it, for messages. */
  readonly entry: string;
  readonly origin: string;
  /** The URL's path without its trailing `/`; usually empty. */
  readonly prefix: string;
}

type Attempt =
  | { readonly kind: 'answered'; readonly answer: GatewayAnswer }
  | { readonly kind: 'failed'; readonly failure: AttemptFailure };

export function randomShuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function parseGateway(entry: string, configFile: string | undefined): GatewayAddress {
  let url: URL | undefined;
  try {
    url = new URL(entry);
  } catch {
    url = undefined;
  }
  const where = configFile === undefined ? '' : ` in ${configFile}`;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ShifterError(
      'BAD_CONFIG',
      `imageGateway entry '${entry}'${where} is not an http(s) URL: write e.g. imageGateway=http://imagegw:5000`,
    );
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new ShifterError(
      'BAD_CONFIG',
      `imageGateway entry '${entry}'${where} has a user, password, query or fragment, ` +
        'which the gateway API does not use: write only the scheme, host, port and path, e.g. http://imagegw:5000',
    );
  }
  return { entry, origin: url.origin, prefix: url.pathname.replace(/\/+$/, '') };
}

async function readText(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw new AnswerTooLargeError(MAX_ANSWER_BYTES);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export class GatewayClient {
  private order: readonly GatewayAddress[];
  private readonly timeoutMs: number;
  private readonly agent: Agent;

  constructor(private readonly opts: GatewayClientOptions) {
    const addresses = opts.gateways.map((g) => parseGateway(g, opts.configFile));
    this.order = (opts.shuffle ?? randomShuffle)(addresses);
    this.timeoutMs = Math.min(gatewayTimeoutSeconds(opts.gatewayTimeout) * 1000, MAX_TIMER_MS);
    this.agent = new Agent({
      connect: { timeout: this.timeoutMs },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  list(): Promise<unknown> {
    return this.request('GET', routePath({ verb: 'list', system: this.opts.system }), this.opts.credential);
  }

  queue(): Promise<unknown> {
    return this.request('GET', routePath({ verb: 'queue', system: this.opts.system }), this.opts.credential);
  }

  lookup(image: ImageDescriptor, credential: CredentialSource = this.opts.credential): Promise<unknown> {
    return this.request('GET', routePath({ verb: 'lookup', system: this.opts.system, image }), credential);
  }

  pull(image: ImageDescriptor, acl: PullAcl): Promise<unknown> {
    const body: Record<string, string> = {};
    if (acl.uids.length > 0) body.allowed_uids = acl.uids.join(',');
    if (acl.gids.length > 0) body.allowed_gids = acl.gids.join(',');
    const route: GatewayRoute = { verb: 'pull', system: this.opts.system, image };
    // progress=1 asks for the layer/byte counts; upstream gateways ignore the query.
    return this.request('POST', `${routePath(route)}?progress=1`, this.opts.credential, JSON.stringify(body));
  }

  /** GET, as upstream's gateway serves it (this one takes POST too). */
  expire(image: ImageDescriptor): Promise<unknown> {
    return this.request('GET', routePath({ verb: 'expire', system: this.opts.system, image }), this.opts.credential);
  }

  autoexpire(): Promise<unknown> {
    return this.request('GET', routePath({ verb: 'autoexpire', system: this.opts.system }), this.opts.credential);
  }

  /** Lets go of the connection pool; requests after this fail. */
  close(): Promise<void> {
    return this.agent.close();
  }

  private async credential(source: CredentialSource): Promise<string | undefined> {
    try {
      return await source();
    } catch (e) {
      // A local munged problem is an authentication problem for the user, whatever munge.ts calls it.
      throw new ShifterError(
        'AUTH_FAILED',
        isShifterError(e) ? e.message : `cannot create a munge credential: ${describeError(e)}`,
        e,
      );
    }
  }

  private async request(
    method: 'GET' | 'POST',
    path: string,
    credential: CredentialSource,
    body?: string,
  ): Promise<unknown> {
    if (this.order.length === 0) {
      throw new ShifterError(
        'BAD_CONFIG',
        'imageGateway is empty: name the image gateway, e.g. imageGateway=http://imagegw:5000',
      );
    }
    const failures: AttemptFailure[] = [];
    let serverError: GatewayAnswerError | undefined;
    for (const gateway of [...this.order]) {
      const attempt = await this.attempt(gateway, method, path, await this.credential(credential), body);
      if (attempt.kind === 'failed') {
        failures.push(attempt.failure);
        continue;
      }
      const { answer } = attempt;
      this.opts.onAnswer?.(answer);
      if (isServerFailure(answer.status)) {
        serverError = serverFailureError(gateway.entry, answer);
        failures.push({ gateway: gateway.entry, reason: `HTTP ${answer.status}` });
        continue;
      }
      this.order = [gateway, ...this.order.filter((g) => g !== gateway)];
      return interpretAnswer(answer);
    }
    if (serverError) throw serverError;
    throw new GatewayUnreachableError(failures);
  }

  private async attempt(
    gateway: GatewayAddress,
    method: 'GET' | 'POST',
    path: string,
    authentication: string | undefined,
    body: string | undefined,
  ): Promise<Attempt> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authentication !== undefined) headers.authentication = authentication;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = `${gateway.origin}${gateway.prefix}${path}`;
    const abort = new AbortController();
    let deadlinePassed = false;
    // A timer that keeps the process alive until it fires (AbortSignal.timeout's does not), so
    // a silent gateway always ends in a message rather than in an event loop with nothing left.
    const deadline = setTimeout(() => {
      deadlinePassed = true;
      abort.abort();
    }, this.timeoutMs);
    let phase: AttemptPhase = 'waiting';
    try {
      const res = await this.agent.request({
        origin: gateway.origin,
        path: `${gateway.prefix}${path}`,
        method,
        headers,
        body,
        signal: abort.signal,
        reset: true,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      phase = 'reading';
      const text = await readText(res.body);
      const location = res.headers.location;
      return {
        kind: 'answered',
        answer: {
          method,
          url,
          status: res.statusCode,
          body: text,
          ...(location === undefined ? {} : { location: Array.isArray(location) ? location.join(', ') : location }),
        },
      };
    } catch (e) {
      const timeoutSeconds = this.timeoutMs / 1000;
      return {
        kind: 'failed',
        failure: attemptFailure(e, { gateway: gateway.entry, phase, timeoutSeconds, deadlinePassed }),
      };
    } finally {
      clearTimeout(deadline);
    }
  }
}
