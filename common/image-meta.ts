/**
 * `<id>.meta`, the text file that sits next to every image: upstream's `KEY: value` lines, which
 * upstream's C runtime also reads. Lists (ENTRY, CMD) are written the way Python's repr writes
 * them with single quotes, `['a', 'b']`, because the C reader only recognises `['` and `[u'`.
 *
 * Keys: FORMAT, ENTRY, CMD, WORKDIR, USERACL, GROUPACL (comma-separated ids), one ENV line per
 * variable, USER, and one `LABEL: ["key", "value"]` line per label (a JSON array of two strings:
 * our own key, so label keys may hold `=` or `:` and values may hold newlines; upstream readers
 * ignore it). Values on the plain lines (ENV, WORKDIR, USER) are written verbatim, so they must
 * not hold a line break; such metadata is refused rather than allowed to forge extra lines.
 * USERACL/GROUPACL are the image's access: the union over every tag pulled onto this id, absent
 * when any of them is public (common/image-access.ts).
 * CHUNKINDEX (our own key, ignored by upstream readers) is the sha256 of the image's chunk index
 * (common/chunk-index.ts): what a node fetching the image lazily checks the index against.
 */
import { ShifterError } from './errors.js';

export interface ImageMeta {
  format: 'squashfs';
  entrypoint: string[] | null;
  cmd: string[] | null;
  workdir: string | null;
  env: string[];
  userAcl: number[];
  groupAcl: number[];
  labels: Record<string, string>;
  user: string | null;
  /** sha256 hex of the chunk index; absent in metadata written before indexes existed. */
  chunkIndex?: string | null;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function formatImageMeta(meta: ImageMeta): string {
  const lines = [`FORMAT: ${meta.format}`];
  if (meta.entrypoint !== null) lines.push(`ENTRY: ${pythonListRepr(meta.entrypoint)}`);
  if (meta.cmd !== null) lines.push(`CMD: ${pythonListRepr(meta.cmd)}`);
  if (meta.workdir !== null && meta.workdir !== '') lines.push(`WORKDIR: ${plainValue('WORKDIR', meta.workdir)}`);
  if (meta.userAcl.length > 0) lines.push(`USERACL: ${idList('USERACL', meta.userAcl)}`);
  if (meta.groupAcl.length > 0) lines.push(`GROUPACL: ${idList('GROUPACL', meta.groupAcl)}`);
  for (const kv of meta.env) lines.push(`ENV: ${plainValue('ENV', kv)}`);
  if (meta.user !== null && meta.user !== '') lines.push(`USER: ${plainValue('USER', meta.user)}`);
  for (const [k, v] of Object.entries(meta.labels)) lines.push(`LABEL: ${JSON.stringify([k, v])}`);
  if (meta.chunkIndex !== undefined && meta.chunkIndex !== null) {
    if (!SHA256_HEX.test(meta.chunkIndex)) {
      throw new ShifterError('BAD_ARGUMENT', `chunk index digest "${meta.chunkIndex}" is not a sha256 hex digest`);
    }
    lines.push(`CHUNKINDEX: ${meta.chunkIndex}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Reads a meta file written by us or by upstream (Python 2 `[u'…']` lists, double-quoted repr
 * items, bare strings, which become one-element lists as in the C reader). Unknown keys are
 * ignored; a FORMAT other than squashfs is refused because nothing here can mount it.
 */
export function parseImageMeta(text: string): ImageMeta {
  const meta: ImageMeta = {
    format: 'squashfs',
    entrypoint: null,
    cmd: null,
    workdir: null,
    env: [],
    userAcl: [],
    groupAcl: [],
    labels: {},
    user: null,
  };
  let sawFormat = false;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim().toUpperCase();
    const value = line.slice(colon + 1).replace(/^ /, '');
    switch (key) {
      case 'FORMAT':
        if (value.trim() !== 'squashfs') {
          throw new ShifterError(
            'BAD_ARGUMENT',
            `the image metadata says FORMAT: ${value.trim()}, but only squashfs images can be used; re-pull the image with this gateway`,
          );
        }
        sawFormat = true;
        break;
      case 'ENTRY':
        meta.entrypoint = parseList(value);
        break;
      case 'CMD':
        meta.cmd = parseList(value);
        break;
      case 'WORKDIR':
        meta.workdir = value;
        break;
      case 'USERACL':
        meta.userAcl = parseIds('USERACL', value);
        break;
      case 'GROUPACL':
        meta.groupAcl = parseIds('GROUPACL', value);
        break;
      case 'ENV':
        meta.env.push(value);
        break;
      case 'USER':
        meta.user = value;
        break;
      case 'CHUNKINDEX':
        if (!SHA256_HEX.test(value.trim())) {
          throw new ShifterError(
            'BAD_ARGUMENT',
            `the image metadata's CHUNKINDEX line holds "${value.trim()}", which is not a sha256 digest; re-pull the image`,
          );
        }
        meta.chunkIndex = value.trim();
        break;
      case 'LABEL': {
        const label = parseLabel(value);
        if (label) meta.labels[label[0]] = label[1];
        break;
      }
      default:
        break;
    }
  }
  if (!sawFormat)
    throw new ShifterError(
      'BAD_ARGUMENT',
      'the image metadata has no FORMAT line: the .meta file is truncated or not an image metadata file; re-pull the image',
    );
  return meta;
}

function plainValue(key: string, value: string): string {
  if (/[\n\r\0]/.test(value)) {
    const shown = key === 'ENV' ? `variable ${value.split('=')[0]}` : key;
    throw new ShifterError(
      'UNSAFE_CONTENT',
      `the image's ${shown} contains a line break or NUL, which the image metadata file cannot hold; rebuild the image without it`,
    );
  }
  return value;
}

function idList(key: string, ids: number[]): string {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff)
      throw new ShifterError('BAD_ARGUMENT', `${key} holds ${id}, which is not a user or group id`);
  }
  return ids.join(',');
}

function parseIds(key: string, value: string): number[] {
  const out: number[] = [];
  for (const part of value.split(',')) {
    const t = part.trim();
    if (t === '') continue;
    if (!/^\d+$/.test(t) || Number(t) > 0xffffffff)
      throw new ShifterError(
        'BAD_ARGUMENT',
        `the image metadata's ${key} line holds "${t}", which is not a numeric id; re-pull the image`,
      );
    out.push(Number(t));
  }
  return out;
}

function parseLabel(value: string): [string, string] | null {
  try {
    const v: unknown = JSON.parse(value);
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    /* an unreadable label is skipped like an unknown key */
  }
  return null;
}

/** Python's repr of a list of str, always single-quoted (Python itself switches to `"` for items holding `'`). */
export function pythonListRepr(items: readonly string[]): string {
  return `[${items.map(pythonStringRepr).join(', ')}]`;
}

function pythonStringRepr(s: string): string {
  let out = "'";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === "'") out += "\\'";
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0x80 && cp < 0xa0) out += `\\x${cp.toString(16)}`;
    else if ((cp >= 0xd800 && cp <= 0xdfff) || cp === 0x2028 || cp === 0x2029)
      out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out + "'";
}

/** A Python list-of-strings repr, or anything else as a single string (the C reader's rule). */
function parseList(value: string): string[] {
  const parsed = parsePythonList(value.trim());
  return parsed ?? [value];
}

function parsePythonList(s: string): string[] | null {
  if (!s.startsWith('[') || !s.endsWith(']')) return null;
  const items: string[] = [];
  let i = 1;
  const skipSpace = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  skipSpace();
  if (s[i] === ']') return i === s.length - 1 ? items : null;
  for (;;) {
    skipSpace();
    if (s[i] === 'u' || s[i] === 'U') i++;
    const quote = s[i];
    if (quote !== "'" && quote !== '"') return null;
    i++;
    let item = '';
    for (;;) {
      if (i >= s.length) return null;
      const ch = s[i];
      if (ch === quote) {
        i++;
        break;
      }
      if (ch !== '\\') {
        item += ch;
        i++;
        continue;
      }
      const esc = s[i + 1];
      if (esc === undefined) return null;
      const hex = (n: number) => {
        const h = s.slice(i + 2, i + 2 + n);
        if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h)) return null;
        i += 2 + n;
        return String.fromCodePoint(parseInt(h, 16));
      };
      let decoded: string | null;
      switch (esc) {
        case 'n':
          decoded = '\n';
          i += 2;
          break;
        case 'r':
          decoded = '\r';
          i += 2;
          break;
        case 't':
          decoded = '\t';
          i += 2;
          break;
        case '0':
          decoded = '\0';
          i += 2;
          break;
        case 'x':
          decoded = hex(2);
          break;
        case 'u':
          decoded = hex(4);
          break;
        case 'U':
          decoded = hex(8);
          break;
        case '\\':
        case "'":
        case '"':
          decoded = esc;
          i += 2;
          break;
        default:
          decoded = `\\${esc}`;
          i += 2;
          break;
      }
      if (decoded === null) return null;
      item += decoded;
    }
    items.push(item);
    skipSpace();
    if (s[i] === ',') {
      i++;
      skipSpace();
      if (s[i] === ']' && i === s.length - 1) return items;
      continue;
    }
    if (s[i] === ']' && i === s.length - 1) return items;
    return null;
  }
}
