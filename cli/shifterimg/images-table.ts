/**
 * `shifterimg images` output, column for column upstream's
 * `"%-10s %-10s %-8s %-.10s   %s %-30s"`: system, type, status, id (first 10 characters),
 * last pull (local time), tag; one line per tag, sorted by tag. Scripts parse this, so the
 * padding (trailing spaces included) is kept.
 */
import type { GatewayImageRecord } from './gateway-record.js';
import { formatLocalTime } from './pull-progress.js';

const NO_TIME = '-'.padEnd(19);

export function formatImagesTable(records: readonly GatewayImageRecord[]): string[] {
  const rows: { tag: string; line: string }[] = [];
  for (const r of records) {
    const when = r.lastPull ? formatLocalTime(r.lastPull) : NO_TIME;
    for (const tag of r.tags) {
      rows.push({
        tag,
        line: `${r.system.padEnd(10)} ${r.itype.padEnd(10)} ${r.status.padEnd(8)} ${r.id.slice(0, 10)}   ${when} ${tag.padEnd(30)}`,
      });
    }
  }
  rows.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  return rows.map((r) => r.line);
}
