/**
 * How a pull looks while it runs. On a terminal one line is rewritten in place
 * (`\r\x1b[2K`, as upstream); anywhere else (pipes, logs, -v) a plain line is written only when
 * the status or its message changes, so a log holds the story and not 500 copies of it.
 */
import type { ImageDescriptor } from '../../common/image-descriptor.js';
import { formatImageDescriptor } from '../../common/image-descriptor.js';
import type { GatewayImageRecord, PullProgress } from './gateway-record.js';

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** Local time as `%Y-%m-%dT%H:%M:%S` (upstream's format for pull lines and `images`). */
export function formatLocalTime(d: Date): string {
  return (
    `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}` +
    `T${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`
  );
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function formatProgress(p: PullProgress): string {
  const parts: string[] = [];
  if (p.layersDone !== undefined) {
    parts.push(`layers ${p.layersDone}${p.layersTotal !== undefined ? `/${p.layersTotal}` : ''}`);
  }
  if (p.bytesDone !== undefined) {
    parts.push(`${formatBytes(p.bytesDone)}${p.bytesTotal !== undefined ? ` of ${formatBytes(p.bytesTotal)}` : ''}`);
  }
  return parts.join(', ');
}

export function pullStatusLine(now: Date, image: ImageDescriptor, rec: GatewayImageRecord): string {
  let line = `${formatLocalTime(now)} Pulling Image: ${formatImageDescriptor(image)}, status: ${rec.status}`;
  if (rec.statusMessage.length > 0) line += ` ${rec.statusMessage}`;
  if (rec.progress && rec.status !== 'READY') {
    const p = formatProgress(rec.progress);
    if (p.length > 0) line += ` (${p})`;
  }
  return line;
}

export interface LineSink {
  write(s: string): unknown;
}

export class PullDisplay {
  private lineOpen = false;
  private lastKey: string | undefined;

  constructor(
    private readonly out: LineSink,
    private readonly inPlace: boolean,
  ) {}

  show(line: string, rec: GatewayImageRecord): void {
    if (this.inPlace) {
      this.out.write(`\r\x1b[2K${line}`);
      this.lineOpen = true;
      return;
    }
    const key = `${rec.status}\u0000${rec.statusMessage}`;
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.out.write(`${line}\n`);
  }

  /** Ends the in-place line so whatever comes next (result, error, shell prompt) starts clean. */
  finish(): void {
    if (this.lineOpen) this.out.write('\n');
    this.lineOpen = false;
  }
}
