/**
 * The gateway's JSON answers, checked before use. The gateway is another program (possibly an
 * upstream Python one, which writes the string "MISSING" for absent keys), so nothing is assumed:
 * shapes are validated and every string that reaches a terminal is stripped of control characters
 * (a registry error relayed in status_message must not be able to move the cursor).
 */
import { sanitizeForTerminal } from '../../common/gateway-client/answer.js';
import { GatewayAnswerError } from '../../common/gateway-client/errors.js';

export interface PullProgress {
  layersDone?: number;
  layersTotal?: number;
  bytesDone?: number;
  bytesTotal?: number;
}

export interface GatewayImageRecord {
  /** Empty while the image has no id yet (upstream: "MISSING"). */
  readonly id: string;
  readonly system: string;
  readonly itype: string;
  readonly tags: readonly string[];
  readonly status: string;
  readonly statusMessage: string;
  readonly lastPull?: Date;
  readonly progress?: PullProgress;
}

export interface QueueEntry {
  readonly status: string;
  readonly image: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown): string {
  if (typeof v === 'string') return v === 'MISSING' ? '' : sanitizeForTerminal(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return '';
}

/** Epoch seconds (upstream's float), a numeric string, or an ISO date. */
function parseTime(v: unknown): Date | undefined {
  let d: Date | undefined;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) d = new Date(v * 1000);
  else if (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v)) d = new Date(Number(v) * 1000);
  else if (typeof v === 'string' && v !== 'MISSING' && v.length > 0) d = new Date(v);
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

function count(o: Record<string, unknown>, camel: string, snake: string): number | undefined {
  const v = o[camel] ?? o[snake];
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

function parseProgress(v: unknown): PullProgress | undefined {
  if (!isObject(v)) return undefined;
  const p: PullProgress = {};
  const layersDone = count(v, 'layersDone', 'layers_done');
  const layersTotal = count(v, 'layersTotal', 'layers_total');
  const bytesDone = count(v, 'bytesDone', 'bytes_done');
  const bytesTotal = count(v, 'bytesTotal', 'bytes_total');
  if (layersDone !== undefined) p.layersDone = layersDone;
  if (layersTotal !== undefined) p.layersTotal = layersTotal;
  if (bytesDone !== undefined) p.bytesDone = bytesDone;
  if (bytesTotal !== undefined) p.bytesTotal = bytesTotal;
  return Object.keys(p).length > 0 ? p : undefined;
}

export function parseImageRecord(v: unknown, what: string): GatewayImageRecord {
  if (!isObject(v)) throw new GatewayAnswerError(`the gateway's answer to ${what} is not an image record`);
  const status = text(v.status);
  if (status.length === 0) {
    throw new GatewayAnswerError(`the gateway's answer to ${what} has no status`);
  }
  const rawTags: unknown[] = Array.isArray(v.tag) ? v.tag : [v.tag];
  const lastPull = parseTime(v.last_pull);
  const progress = parseProgress(v.progress);
  return {
    id: text(v.id),
    system: text(v.system),
    itype: text(v.itype),
    tags: rawTags.map(text).filter((t) => t.length > 0),
    status,
    statusMessage: text(v.status_message).trim(),
    ...(lastPull ? { lastPull } : {}),
    ...(progress ? { progress } : {}),
  };
}

export function parseImageList(v: unknown): GatewayImageRecord[] {
  if (!isObject(v) || !Array.isArray(v.list)) {
    throw new GatewayAnswerError('the gateway\'s image list has no "list" array');
  }
  return v.list.map((r, i) => parseImageRecord(r, `the image list (entry ${i})`));
}

export function parseQueue(v: unknown): QueueEntry[] {
  if (!isObject(v) || !Array.isArray(v.list)) {
    throw new GatewayAnswerError('the gateway\'s queue answer has no "list" array');
  }
  return v.list.map((e) => {
    const o = isObject(e) ? e : {};
    return { status: text(o.status) || '?', image: text(o.image) || '?' };
  });
}
