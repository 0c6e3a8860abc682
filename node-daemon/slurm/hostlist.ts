/**
 * The job's `/var/hostsfile` (as upstream: one line per task slot, a node's name repeated once
 * per CPU the job has there) from what slurmd gives the prolog: the node list in Slurm's
 * compressed form (`nid[0001-0003,7],login1`) and the CPUs per node (`2(x3),1`). Pure: the
 * prolog reads the variables, this only expands them. Errors are returned, not thrown.
 */
import { ShifterError } from '../../common/errors.js';

/** Most hosts one list may expand to: a typo like `n[1-999999999]` must not eat the prolog's memory. */
const MAX_HOSTS = 1_000_000;

function bad(what: string, text: string): ShifterError {
  return new ShifterError('BAD_ARGUMENT', `${what} '${text}' is not in Slurm's format`);
}

/** Splits at commas outside brackets. */
function topLevelItems(text: string): string[] | undefined {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[') depth += 1;
    else if (c === ']') depth -= 1;
    if (depth < 0 || depth > 1) return undefined;
    if (c === ',' && depth === 0) {
      items.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) return undefined;
  items.push(text.slice(start));
  return items;
}

/** `01-03,7` -> ['01', '02', '03', '7']: a range keeps the zero padding of its low end. */
function expandRanges(body: string): string[] | undefined {
  const out: string[] = [];
  for (const part of body.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (m === null) return undefined;
    const [lo, hi = m[1]] = [m[1], m[2]];
    const [from, to] = [Number(lo), Number(hi)];
    if (to < from || to - from >= MAX_HOSTS) return undefined;
    for (let n = from; n <= to; n++) out.push(String(n).padStart(lo.length, '0'));
  }
  return out;
}

/** One item with any number of bracket groups: `r[1-2]n[1-2]` is the cartesian product, in order. */
function expandItem(item: string, budget: number): string[] | undefined {
  const open = item.indexOf('[');
  if (open < 0) return /^[^[\]\s]+$/.test(item) ? [item] : undefined;
  const close = item.indexOf(']', open);
  const values = expandRanges(item.slice(open + 1, close));
  const rest = item.slice(close + 1);
  const tails = rest === '' ? [''] : expandItem(rest, budget);
  if (values === undefined || tails === undefined || values.length * tails.length > budget) return undefined;
  const prefix = item.slice(0, open);
  return values.flatMap((v) => tails.map((t) => `${prefix}${v}${t}`));
}

/** `nid[0001-0003],login1` -> ['nid0001', 'nid0002', 'nid0003', 'login1']. */
export function expandHostList(text: string): string[] | ShifterError {
  const items = topLevelItems(text.trim());
  if (items === undefined || text.trim() === '') return bad('the node list', text);
  const hosts: string[] = [];
  for (const item of items) {
    const expanded = expandItem(item, MAX_HOSTS - hosts.length);
    if (expanded === undefined) return bad('the node list', text);
    hosts.push(...expanded);
  }
  return hosts;
}

/** `2(x3),1` -> [2, 2, 2, 1] (SLURM_JOB_CPUS_PER_NODE, SLURM_TASKS_PER_NODE). */
export function expandCountList(text: string): number[] | ShifterError {
  const counts: number[] = [];
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part);
    if (m === null) return bad('the count list', text);
    const repeat = Number(m[2] ?? '1');
    if (counts.length + repeat > MAX_HOSTS) return bad('the count list', text);
    for (let i = 0; i < repeat; i++) counts.push(Number(m[1]));
  }
  return counts;
}

/** The hostsfile: each host on as many lines as it has slots, in the node list's order. */
export function renderHostsfile(nodeList: string, slotsPerNode: string): string | ShifterError {
  const hosts = expandHostList(nodeList);
  if (hosts instanceof ShifterError) return hosts;
  const slots = expandCountList(slotsPerNode);
  if (slots instanceof ShifterError) return slots;
  if (slots.length !== hosts.length) {
    return new ShifterError(
      'BAD_ARGUMENT',
      `the node list '${nodeList}' has ${hosts.length} node(s) but the counts '${slotsPerNode}' ${slots.length}`,
    );
  }
  return hosts.map((h, i) => `${h}\n`.repeat(slots[i])).join('');
}
