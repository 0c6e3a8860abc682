/**
 * The launcher <-> shifterd wire format (proto/launch-protocol.md, version 1). Pure: bytes in,
 * values out. Anything malformed is rejected; the server then just closes the connection.
 */
export const REQUEST_MAGIC = 'SHL1';
export const REPLY_MAGIC = 'SHR1';
export const MAX_BODY = 4 * 1024 * 1024;
export const MAX_LIST = 65536;
const HEADER = 8;

export interface LaunchRequest {
  argv: string[];
  env: string[];
  cwd: string;
}

export class ProtocolError extends Error {}

/** How many bytes the whole request needs, once the header is in; undefined before that. */
export function requestLength(buf: Buffer): number | undefined {
  if (buf.length < HEADER) return undefined;
  if (buf.toString('latin1', 0, 4) !== REQUEST_MAGIC) throw new ProtocolError('bad magic');
  const len = buf.readUInt32LE(4);
  if (len > MAX_BODY) throw new ProtocolError(`body of ${len} bytes exceeds ${MAX_BODY}`);
  return HEADER + len;
}

class Reader {
  private pos = 0;
  constructor(private readonly body: Buffer) {}
  u32(): number {
    if (this.pos + 4 > this.body.length) throw new ProtocolError('truncated body');
    const v = this.body.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  string(): string {
    const end = this.body.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolError('string without NUL');
    const s = this.body.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  list(): string[] {
    const n = this.u32();
    // Each string takes at least one byte, which bounds n by what is left.
    if (n > MAX_LIST || n > this.body.length - this.pos) throw new ProtocolError(`list of ${n} entries does not fit`);
    const out: string[] = [];
    for (let i = 0; i < n; i += 1) out.push(this.string());
    return out;
  }
  end(): void {
    if (this.pos !== this.body.length) throw new ProtocolError('trailing bytes');
  }
}

/** Decodes a complete request (header + body, exactly requestLength bytes). */
export function decodeRequest(buf: Buffer): LaunchRequest {
  const total = requestLength(buf);
  if (total === undefined || buf.length !== total) throw new ProtocolError('incomplete request');
  const r = new Reader(buf.subarray(HEADER));
  const argv = r.list();
  const env = r.list();
  const cwd = r.string();
  r.end();
  return { argv, env, cwd };
}

function stringBytes(s: string): Buffer {
  if (s.includes('\0')) throw new ProtocolError('string contains NUL');
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

function listBytes(items: readonly string[]): Buffer {
  const n = Buffer.alloc(4);
  n.writeUInt32LE(items.length);
  return Buffer.concat([n, ...items.map(stringBytes)]);
}

function frame(magic: string, body: Buffer): Buffer {
  if (body.length > MAX_BODY) throw new ProtocolError(`reply of ${body.length} bytes exceeds ${MAX_BODY}`);
  const h = Buffer.alloc(HEADER);
  h.write(magic, 0, 'latin1');
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body]);
}

export function encodeRequest(req: LaunchRequest): Buffer {
  return frame(REQUEST_MAGIC, Buffer.concat([listBytes(req.argv), listBytes(req.env), stringBytes(req.cwd)]));
}

/** kind 0: the launcher prints `message` and exits with `exitCode`. */
export function encodeErrorReply(exitCode: number, message: string): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeInt32LE(exitCode, 1);
  return frame(REPLY_MAGIC, Buffer.concat([head, Buffer.from(message, 'utf8')]));
}

/** kind 1: sent together with [userns fd, mntns fd]. */
export function encodeExecReply(argv: readonly string[], env: readonly string[], cwd: string, notice: string): Buffer {
  return frame(
    REPLY_MAGIC,
    Buffer.concat([Buffer.from([1]), listBytes(argv), listBytes(env), stringBytes(cwd), stringBytes(notice)]),
  );
}
