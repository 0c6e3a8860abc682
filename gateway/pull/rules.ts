/**
 * When a pull request starts a new pull (upstream `ImageMngr.pull` / `_pullable`), pure.
 * Times are epoch seconds.
 */
import { sameIds } from '../auth/acl.js';
import type { ImageRecord, PullProgress } from '../store/record.js';

export interface PullTimeouts {
  /** READY newer than this is served as is; FAILURE newer than this is shown instead of retried. */
  pullUpdateTimeoutSec: number;
  /** An in-flight record with no heartbeat for this long is considered dead. */
  heartbeatTimeoutSec: number;
}

/** A READY image pulled this recently is not re-pulled even if the ACLs differ (upstream's 10 s). */
export const RECENT_WINDOW_SEC = 10;

/**
 * How long a FAILURE is shown instead of retried, counted from when it failed: PullUpdateTimeout,
 * but at least RECENT_WINDOW_SEC, so a client polling every 0.5 s sees the failure it waited for
 * even with PullUpdateTimeout 0 (instead of re-queueing the pull forever).
 */
export function failureWindowSec(t: PullTimeouts): number {
  return Math.max(t.pullUpdateTimeoutSec, RECENT_WINDOW_SEC);
}

export function isPullable(rec: ImageRecord, now: number, t: PullTimeouts): boolean {
  if (rec.status === 'EXPIRED') return true;
  if (rec.last_pull === null) return true;
  if (rec.status === 'READY') return rec.last_pull + t.pullUpdateTimeoutSec < now;
  if (rec.status === 'FAILURE') return rec.last_pull + failureWindowSec(t) < now;
  return (rec.last_heartbeat ?? rec.last_pull) + t.heartbeatTimeoutSec < now;
}

export interface PullDecisionInput {
  /** The newest non-READY record pulled under this tag (in flight or failed). */
  pending: ImageRecord | null;
  ready: ImageRecord | null;
  userACL: number[];
  groupACL: number[];
  now: number;
}

export type PullDecision = { action: 'start' } | { action: 'return'; record: ImageRecord };

export function decidePull(i: PullDecisionInput, t: PullTimeouts): PullDecision {
  const rec = i.pending ?? i.ready;
  if (!rec) return { action: 'start' };
  if (isPullable(rec, i.now, t)) return { action: 'start' };
  const aclChanged = !sameIds(rec.userACL, i.userACL) || !sameIds(rec.groupACL, i.groupACL);
  const recent = rec.status === 'READY' && rec.last_pull !== null && i.now - rec.last_pull < RECENT_WINDOW_SEC;
  if (aclChanged && !recent && !i.pending) return { action: 'start' };
  return { action: 'return', record: rec };
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

/** "Pulling layer 3/7 (45.2 MB of 120.1 MB)": the layer being worked on and bytes so far. */
export function progressMessage(p: PullProgress): string {
  if (p.layersTotal === 0) return 'Pulling layers (none to download)';
  const current = Math.min(p.layersDone + 1, p.layersTotal);
  return `Pulling layer ${current}/${p.layersTotal} (${mb(p.bytesDone)} of ${mb(p.bytesTotal)})`;
}

/**
 * Upstream appends `:latest` when the tag has no `:` (docker; for lookups also custom). A `:` in a
 * registry port is not a tag, so for docker only a `:` after the last `/` (or a digest) counts.
 */
export function normalizeTag(itype: string, tag: string, forLookup: boolean): string {
  if (itype === 'docker') {
    const last = tag.slice(tag.lastIndexOf('/') + 1);
    return last.includes(':') || tag.includes('@') ? tag : `${tag}:latest`;
  }
  if (itype === 'custom' && forLookup && !tag.includes(':')) return `${tag}:latest`;
  return tag;
}
