/**
 * A lazy image has no `<id>.meta` on the node: what a launch needs from it (entrypoint, env,
 * workdir, access lists) comes from the gateway's lookup record, the answer shifterd already has.
 * The record carries no CMD (upstream's 13 keys), so a lazy image's CMD is not run by default.
 */
import { ShifterError } from '../../common/errors.js';
import type { ImageMetaInfo } from '../image-resolver.js';

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((s) => typeof s === 'string') ? v : undefined;
}

function ids(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((n): n is number => Number.isInteger(n)) : [];
}

export function metaFromRecord(record: unknown, imageName: string): ImageMetaInfo {
  if (typeof record !== 'object' || record === null) {
    throw new ShifterError(
      'NOT_FOUND',
      `image ${imageName} is not in imagePath and lazy images are found by name only; use its name instead of id:`,
    );
  }
  const r = record as Record<string, unknown>;
  const entry = typeof r.ENTRY === 'string' && r.ENTRY !== 'MISSING' ? [r.ENTRY] : strings(r.ENTRY);
  return {
    run: {
      entrypoint: entry,
      cmd: undefined,
      workdir: typeof r.WORKDIR === 'string' && r.WORKDIR !== 'MISSING' ? r.WORKDIR : undefined,
      env: strings(r.ENV) ?? [],
    },
    userAcl: ids(r.userACL),
    groupAcl: ids(r.groupACL),
  };
}
