/**
 * What shifter needs to know about an ELF shared object or program, read from its program
 * headers only (stripped libraries have no section headers worth trusting): class, byte order,
 * machine, the dynamic section's DT_NEEDED/DT_SONAME/DT_RPATH/DT_RUNPATH, and the symbol
 * versions it defines (.gnu.version_d, e.g. libc.so.6's GLIBC_2.36) and needs (.gnu.version_r,
 * e.g. GLIBC_2.34 from libc.so.6). Pure: parsing works on a Buffer; every read is bounds-checked
 * and a bad file gives one ShifterError naming the file and what is wrong with it.
 */
import { ShifterError } from '../errors.js';

export type ElfClass = 32 | 64;

/** e_machine values shifter names; anything else is `machine-<n>`. */
const MACHINES: Readonly<Record<number, string>> = {
  3: 'i386',
  8: 'mips',
  20: 'ppc',
  21: 'ppc64',
  22: 's390x',
  40: 'arm',
  62: 'x86_64',
  183: 'aarch64',
  243: 'riscv',
  258: 'loongarch',
};

export interface VersionNeed {
  /** The library the versions come from, e.g. `libc.so.6`. */
  file: string;
  /** e.g. `GLIBC_2.34`. */
  versions: string[];
}

export interface ElfInfo {
  elfClass: ElfClass;
  littleEndian: boolean;
  /** e.g. `x86_64`, `aarch64`. */
  machine: string;
  /** ET_DYN and ET_EXEC are the ones shifter handles; others are reported as found. */
  type: 'exec' | 'dyn' | 'rel' | 'core' | 'other';
  /** PT_INTERP, when the object asks for a program interpreter. */
  interpreter: string | undefined;
  needed: string[];
  soname: string | undefined;
  rpath: string[];
  runpath: string[];
  /** Version names this object defines, without the base (file) entry. */
  versionDefinitions: string[];
  versionNeeds: VersionNeed[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const DT_VERDEF = 0x6ffffffc;
const DT_VERDEFNUM = 0x6ffffffd;
const DT_VERNEED = 0x6ffffffe;
const DT_VERNEEDNUM = 0x6fffffff;
const VER_FLG_BASE = 1;
/** Far more than any real object has; bounds loops over a corrupt chain. */
const MAX_ENTRIES = 1 << 16;

class Reader {
  constructor(
    private readonly buf: Buffer,
    private readonly label: string,
    private readonly le: boolean,
  ) {}

  fail(what: string): never {
    throw new ShifterError('BAD_ARGUMENT', `${this.label}: damaged or truncated ELF file (${what})`);
  }

  private check(off: number, size: number, what: string): void {
    if (!Number.isSafeInteger(off) || off < 0 || off + size > this.buf.length) {
      this.fail(`${what} at offset ${off} is past the end of the ${this.buf.length}-byte file`);
    }
  }

  u16(off: number, what: string): number {
    this.check(off, 2, what);
    return this.le ? this.buf.readUInt16LE(off) : this.buf.readUInt16BE(off);
  }

  u32(off: number, what: string): number {
    this.check(off, 4, what);
    return this.le ? this.buf.readUInt32LE(off) : this.buf.readUInt32BE(off);
  }

  u64(off: number, what: string): number {
    this.check(off, 8, what);
    const v = this.le ? this.buf.readBigUInt64LE(off) : this.buf.readBigUInt64BE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is out of range`);
    return Number(v);
  }

  /** A signed tag read as a number: only the small positive and OS-range tags matter. */
  s64(off: number, what: string): number {
    this.check(off, 8, what);
    const v = this.le ? this.buf.readBigInt64LE(off) : this.buf.readBigInt64BE(off);
    return v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
  }

  cstr(off: number, limit: number, what: string): string {
    this.check(off, 1, what);
    const end = this.buf.indexOf(0, off);
    if (end < 0 || end > limit) this.fail(`${what} at offset ${off} is not terminated`);
    return this.buf.toString('utf8', off, end);
  }
}

interface Segment {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

function typeName(t: number): ElfInfo['type'] {
  return t === 2 ? 'exec' : t === 3 ? 'dyn' : t === 1 ? 'rel' : t === 4 ? 'core' : 'other';
}

/** Parses `buf` (a whole ELF file); `label` (usually its path) names it in errors. */
export function parseElf(buf: Buffer, label: string): ElfInfo {
  if (buf.length < 16 || buf[0] !== 0x7f || buf.toString('latin1', 1, 4) !== 'ELF') {
    throw new ShifterError('BAD_ARGUMENT', `${label}: not an ELF file (no \\x7fELF magic at its start)`);
  }
  const cls = buf[4];
  const data = buf[5];
  if (cls !== 1 && cls !== 2) throw new ShifterError('BAD_ARGUMENT', `${label}: unknown ELF class ${cls}`);
  if (data !== 1 && data !== 2) throw new ShifterError('BAD_ARGUMENT', `${label}: unknown ELF byte order ${data}`);
  const is64 = cls === 2;
  const r = new Reader(buf, label, data === 1);
  const word = (off: number, what: string): number => (is64 ? r.u64(off, what) : r.u32(off, what));

  const type = r.u16(16, 'e_type');
  const machineNo = r.u16(18, 'e_machine');
  const phoff = word(is64 ? 32 : 28, 'e_phoff');
  const phentsize = r.u16(is64 ? 54 : 42, 'e_phentsize');
  const phnum = r.u16(is64 ? 56 : 44, 'e_phnum');
  if (phnum > 0 && phentsize < (is64 ? 56 : 32)) r.fail(`program header entries of ${phentsize} bytes`);

  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i += 1) {
    const p = phoff + i * phentsize;
    const what = `program header ${i}`;
    segments.push(
      is64
        ? { type: r.u32(p, what), offset: r.u64(p + 8, what), vaddr: r.u64(p + 16, what), filesz: r.u64(p + 32, what) }
        : { type: r.u32(p, what), offset: r.u32(p + 4, what), vaddr: r.u32(p + 8, what), filesz: r.u32(p + 16, what) },
    );
  }
  const loads = segments.filter((s) => s.type === PT_LOAD);
  /** The file offset of a virtual address, through the PT_LOAD segment holding it. */
  const fileOffset = (vaddr: number, what: string): number => {
    const seg = loads.find((s) => vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz);
    if (seg === undefined) return r.fail(`${what} address 0x${vaddr.toString(16)} is in no loadable segment`);
    return vaddr - seg.vaddr + seg.offset;
  };

  const interp = segments.find((s) => s.type === PT_INTERP);
  const info: ElfInfo = {
    elfClass: is64 ? 64 : 32,
    littleEndian: data === 1,
    machine: MACHINES[machineNo] ?? `machine-${machineNo}`,
    type: typeName(type),
    interpreter: interp === undefined ? undefined : r.cstr(interp.offset, interp.offset + interp.filesz, 'PT_INTERP'),
    needed: [],
    soname: undefined,
    rpath: [],
    runpath: [],
    versionDefinitions: [],
    versionNeeds: [],
  };
  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  if (dyn === undefined) return info;

  const entSize = is64 ? 16 : 8;
  const tags: Array<[number, number]> = [];
  for (let off = dyn.offset; off + entSize <= dyn.offset + dyn.filesz; off += entSize) {
    const tag = is64 ? r.s64(off, 'dynamic tag') : r.u32(off, 'dynamic tag');
    if (tag === 0) break;
    tags.push([tag, word(off + entSize / 2, 'dynamic value')]);
  }
  const one = (t: number): number | undefined => tags.find(([tag]) => tag === t)?.[1];
  const strtabAddr = one(DT_STRTAB);
  if (strtabAddr === undefined) return info;
  const strtab = fileOffset(strtabAddr, 'DT_STRTAB');
  const strEnd = strtab + (one(DT_STRSZ) ?? buf.length - strtab);
  const str = (index: number, what: string): string => {
    if (strtab + index >= strEnd) r.fail(`${what} string index ${index} is past the string table`);
    return r.cstr(strtab + index, strEnd, what);
  };
  const paths = (s: string): string[] => s.split(':').filter((p) => p !== '');

  for (const [tag, val] of tags) {
    if (tag === DT_NEEDED) info.needed.push(str(val, 'DT_NEEDED'));
    else if (tag === DT_SONAME) info.soname = str(val, 'DT_SONAME');
    else if (tag === DT_RPATH) info.rpath.push(...paths(str(val, 'DT_RPATH')));
    else if (tag === DT_RUNPATH) info.runpath.push(...paths(str(val, 'DT_RUNPATH')));
  }

  const verdef = one(DT_VERDEF);
  if (verdef !== undefined) {
    let off = fileOffset(verdef, 'DT_VERDEF');
    const count = Math.min(one(DT_VERDEFNUM) ?? MAX_ENTRIES, MAX_ENTRIES);
    for (let i = 0; i < count; i += 1) {
      const flags = r.u16(off + 2, 'verdef flags');
      const cnt = r.u16(off + 6, 'verdef count');
      const aux = r.u32(off + 12, 'verdef aux');
      const next = r.u32(off + 16, 'verdef next');
      if (cnt > 0 && (flags & VER_FLG_BASE) === 0) {
        info.versionDefinitions.push(str(r.u32(off + aux, 'verdaux name'), 'version definition'));
      }
      if (next === 0) break;
      off += next;
    }
  }

  const verneed = one(DT_VERNEED);
  if (verneed !== undefined) {
    let off = fileOffset(verneed, 'DT_VERNEED');
    const count = Math.min(one(DT_VERNEEDNUM) ?? MAX_ENTRIES, MAX_ENTRIES);
    for (let i = 0; i < count; i += 1) {
      const cnt = r.u16(off + 2, 'verneed count');
      const file = str(r.u32(off + 4, 'verneed file'), 'version need file');
      const versions: string[] = [];
      let aux = off + r.u32(off + 8, 'verneed aux');
      for (let j = 0; j < Math.min(cnt, MAX_ENTRIES); j += 1) {
        versions.push(str(r.u32(aux + 8, 'vernaux name'), 'version need'));
        const nextAux = r.u32(aux + 12, 'vernaux next');
        if (nextAux === 0) break;
        aux += nextAux;
      }
      info.versionNeeds.push({ file, versions });
      const next = r.u32(off + 12, 'verneed next');
      if (next === 0) break;
      off += next;
    }
  }
  return info;
}
