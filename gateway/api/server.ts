/**
 * The gateway's HTTP server, before any route: limits on slow and greedy clients, and the one
 * answer shape. Every JSON answer has exactly upstream's `Content-Type: application/json` (its C
 * `shifterimg` ignores anything else, even with `; charset=utf-8`), and every 4xx/5xx, whoever
 * produces it (a route, fastify, node's parser, a timeout, the connection caps), has upstream's
 * body `{"status", "error", "message": "<Reason>: <url>"}` with the real status; never a stack trace.
 * Requests that are not HTTP/1.x (HTTP/0.9's bare request line included) are refused.
 * The routes are a plugin (routes.ts) registered on this server.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Socket } from 'node:net';
import { isShifterError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { HttpServerLimits } from '../config/imagemanager.js';
import { limitConnections } from './connection-limit.js';
import { apiError, httpStatusFor, JSON_TYPE, rawErrorResponse, UNREAD_URL } from './response.js';
import { schemaError } from './schemas.js';

/** Longest URL segment (system name, type, tag) accepted; longer ones get 414. */
const MAX_SEGMENT = 2048;
const BODY_LIMIT = 64 * 1024;

const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE:
    `the request body is larger than ${BODY_LIMIT / 1024} KiB; a pull body is only ` +
    '{"allowed_uids": "...", "allowed_gids": "..."}',
  FST_ERR_BAD_URL: 'the URL is not valid (a "%" not followed by two hex digits?); escape the system and tag',
  FST_ERR_MAX_PARAM_LENGTH: `a part of the URL is longer than ${MAX_SEGMENT} characters; no system or image name is that long`,
};

/**
 * Error answers serialize themselves: fastify then keeps the Content-Type as set, where its own
 * serializer appends a charset (and its framework errors skip the onSend hooks that remove it).
 */
function sendError(reply: FastifyReply, status: number, error: string): FastifyReply {
  return reply
    .code(status)
    .type(JSON_TYPE)
    .serializer(JSON.stringify)
    .send(apiError(status, error, reply.request.url));
}

function clientErrorAnswer(err: NodeJS.ErrnoException, limits: HttpServerLimits): { status: number; error: string } {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        error:
          `the request did not arrive in time (headers within ${limits.headersTimeoutMs / 1000} s, ` +
          `the whole request within ${limits.requestTimeoutMs / 1000} s); send it at once`,
      };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, error: 'the request headers are too large; send only an authentication header' };
    default:
      return {
        status: 400,
        error: `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'}); send a plain HTTP/1.1 request`,
      };
  }
}

export function createHttpServer(limits: HttpServerLimits, log: Logger): FastifyInstance {
  const app = Fastify({
    logger: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_SEGMENT },
    bodyLimit: BODY_LIMIT,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: {
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      // Node checks the two timeouts only this often (default 30 s, which would triple a short timeout).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs / 2),
    },
    schemaErrorFormatter: schemaError,
    ajv: { customOptions: { allowUnionTypes: true } },
    // node's HTTP parser refused the bytes, or a timeout fired: there is no request to reply to.
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const answer = clientErrorAnswer(err, limits);
      log.debug({ code: err.code, remote: socket.remoteAddress, status: answer.status }, 'client error');
      // A response already under way on this connection cannot be followed by another one.
      const inProgress = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (socket.writable && !inProgress?.headersSent) {
        socket.write(rawErrorResponse(answer.status, answer.error, UNREAD_URL));
      }
      socket.destroy();
    },
    frameworkErrors(err, _req, reply) {
      const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 400;
      void sendError(reply, status, FASTIFY_MESSAGES[err.code] ?? err.message);
    },
  });

  limitConnections(app.server, limits, (address, why) => log.warn({ remote: address }, `connection refused: ${why}`));

  app.addHook('onRequest', async (req, reply) => {
    if (req.raw.httpVersionMajor === 1) return;
    reply.header('connection', 'close');
    return sendError(reply, 505, `HTTP/${req.raw.httpVersion} is not supported; send an HTTP/1.1 request`);
  });

  app.addHook('onSend', async (_req, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith(`${JSON_TYPE};`)) reply.header('content-type', JSON_TYPE);
    return payload;
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (isShifterError(err)) {
      const status = httpStatusFor(err.code);
      if (err.code === 'DISK_FULL') log.error({ url: req.url }, `request failed: ${err.message}`);
      if (status < 500) return sendError(reply, status, err.message);
      log.error({ err, url: req.url }, 'request failed');
      return sendError(
        reply,
        status,
        err.code === 'INTERNAL' ? 'internal error; the gateway log has the details' : err.message,
      );
    }
    const { statusCode, code } = err as { statusCode?: unknown; code?: unknown };
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      const known = typeof code === 'string' ? FASTIFY_MESSAGES[code] : undefined;
      return sendError(reply, statusCode, known ?? (err as Error).message);
    }
    log.error({ err, url: req.url }, 'unexpected error while handling a request');
    return sendError(reply, 500, 'internal error; the gateway log has the details');
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    return sendError(reply, 404, `no such route: ${req.method} ${path}; GET / lists the routes`);
  });

  return app;
}
