/**
 * Reading layer tars and writing the merged one. Owners and times come from pax records when a
 * layer has them (Go's archive/tar writes large uids there; tar-stream does not apply them), and
 * the written headers carry numeric ids only: a user or group name must never be resolved
 * against the gateway host's own passwd file.
 */
import type * as tar from 'tar-stream';
import type { Tar2sqfsSettings } from './converter-options.js';
import { entryKind, type EntryHeader } from '../flatten/entry.js';

export type OutHeader = Partial<tar.Header> & { name: string };

const USTAR_ID_MAX = 0o777777;

function paxNumber(pax: unknown, key: string): number | null {
  const v = (pax as Record<string, string> | null | undefined)?.[key];
  if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v)) return null;
  return Math.floor(Number(v));
}

export function plannerHeader(h: tar.Header): EntryHeader {
  return { name: h.name, kind: entryKind(h.type), linkname: h.linkname ?? '' };
}

/** The header to write for layer entry `h` at image path `path`. */
export function outputHeader(path: string, h: tar.Header, settings: Tar2sqfsSettings): OutHeader {
  const uid = settings.forceUid ?? paxNumber(h.pax, 'uid') ?? h.uid;
  const gid = settings.forceGid ?? paxNumber(h.pax, 'gid') ?? h.gid;
  const mtimeSeconds = paxNumber(h.pax, 'mtime');
  const type = h.type === 'contiguous-file' ? 'file' : h.type;
  const out: OutHeader = {
    name: path === '' ? './' : path,
    type,
    mode: h.mode & 0o7777,
    uid,
    gid,
    mtime: mtimeSeconds !== null ? new Date(mtimeSeconds * 1000) : h.mtime,
    size: type === 'file' ? h.size : 0,
  };
  if (type === 'symlink') out.linkname = h.linkname;
  if (type === 'fifo') {
    out.devmajor = 0;
    out.devminor = 0;
  }
  if (uid > USTAR_ID_MAX || gid > USTAR_ID_MAX) out.pax = { uid: String(uid), gid: String(gid) };
  return out;
}

export function hardLinkHeader(path: string, target: string): OutHeader {
  return { name: path, type: 'link', linkname: target, size: 0, mode: 0o644, mtime: new Date(0) };
}
