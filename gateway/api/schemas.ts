/**
 * JSON schemas of the routes' params, query strings and bodies, and the messages a request that
 * fails them gets. Values the schemas let through are still checked where they are used (ids by
 * auth/acl.ts, image names by the reference parser): the schemas keep out what has no meaning.
 */
import type { FastifySchemaValidationError, FastifyServerOptions } from 'fastify';
import { ShifterError } from '../../common/errors.js';

type SchemaErrorDataVar = Parameters<NonNullable<FastifyServerOptions['schemaErrorFormatter']>>[1];

export const IMAGE_TYPES = ['docker', 'custom', 'id'] as const;

const system = { type: 'string', minLength: 1 } as const;

export const systemParams = {
  type: 'object',
  required: ['system'],
  additionalProperties: false,
  properties: { system },
} as const;

export const imageParams = {
  type: 'object',
  required: ['system', 'imgtype', '*'],
  additionalProperties: false,
  properties: { system, imgtype: { type: 'string', enum: IMAGE_TYPES }, '*': { type: 'string' } },
} as const;

export const progressQuery = {
  type: 'object',
  properties: { progress: { type: 'string', enum: ['0', '1'] } },
} as const;

export const metricsQuery = {
  type: 'object',
  properties: { limit: { type: 'integer', minimum: 1, maximum: 10_000 } },
} as const;

const idList = {
  type: ['string', 'integer', 'array', 'null'],
  maxLength: 20_000,
  maxItems: 1000,
  items: { type: ['string', 'integer'] },
} as const;

export const pullBody = {
  type: 'object',
  properties: { allowed_uids: idList, allowed_gids: idList },
} as const;

export interface SystemParams {
  system: string;
}
export interface ImageParams {
  system: string;
  imgtype: (typeof IMAGE_TYPES)[number];
  '*': string;
}
export interface ProgressQuery {
  progress?: '0' | '1';
}
export interface PullBody {
  allowed_uids?: unknown;
  allowed_gids?: unknown;
}

const PART: Record<SchemaErrorDataVar, { what: string; fix: string }> = {
  params: {
    what: 'the URL',
    fix: `use /api/<verb>/<system>/<type>/<tag>/ with type ${IMAGE_TYPES.join(', ')}; GET / lists the routes`,
  },
  querystring: {
    what: 'the query string',
    fix: 'the query parameters are progress=0|1 (list, lookup, pull) and limit=N (metrics)',
  },
  body: {
    what: 'the request body',
    fix:
      'send {"allowed_uids": "1001,1002", "allowed_gids": "100"} or nothing ' +
      '(doimport: {"filepath": "/path/to/image.squashfs", "format": "squashfs"})',
  },
  headers: { what: 'the headers', fix: 'send only an authentication header with a munge credential' },
};

/** Fastify's `schemaErrorFormatter`: one line naming the part, the field, the problem and the fix. */
export function schemaError(errors: FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): Error {
  const first = errors[0];
  const part = PART[dataVar];
  if (!first) return new ShifterError('BAD_ARGUMENT', `${part.what} is not valid; ${part.fix}`);
  const missing = (first.params as { missingProperty?: unknown }).missingProperty;
  const field =
    first.instancePath.replace(/^\//, '').replaceAll('/', '.') || (typeof missing === 'string' ? missing : '');
  const allowed = (first.params as { allowedValues?: unknown }).allowedValues;
  const detail = Array.isArray(allowed) ? `must be one of ${allowed.join(', ')}` : (first.message ?? 'is not valid');
  return new ShifterError('BAD_ARGUMENT', `${part.what}${field ? ` field ${field}` : ''} ${detail}; ${part.fix}`);
}

const stringList = { type: 'array', maxItems: 10_000, items: { type: 'string', maxLength: 65_536 } } as const;

export const importBody = {
  type: 'object',
  required: ['filepath', 'format'],
  properties: {
    filepath: { type: 'string', minLength: 1, maxLength: 4096 },
    format: { type: 'string', enum: ['squashfs'] },
    allowed_uids: idList,
    allowed_gids: idList,
    ENV: stringList,
    ENTRY: stringList,
    CMD: stringList,
    WORKDIR: { type: 'string', maxLength: 4096 },
    LABELS: { type: 'object', additionalProperties: { type: 'string', maxLength: 65_536 } },
  },
} as const;

export interface ImportBody {
  filepath: string;
  format: 'squashfs';
  allowed_uids?: unknown;
  allowed_gids?: unknown;
  ENV?: string[];
  ENTRY?: string[];
  CMD?: string[];
  WORKDIR?: string;
  LABELS?: Record<string, string>;
}
