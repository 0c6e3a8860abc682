/**
 * Where the gateway may connect on behalf of a user who named a registry host: never to this
 * machine (loopback, its own addresses), link-local (169.254/16 holds cloud metadata services) or
 * unspecified/multicast addresses. The host is resolved once and every address it resolves to must
 * pass; the caller connects to the address checked here, so a second DNS answer cannot redirect it.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { ShifterError } from '../../common/errors.js';

export interface CheckedAddress {
  address: string;
  family: 4 | 6;
}

export interface ConnectGuard {
  /** The address to connect to for `hostname`, or a ShifterError when it may not be reached. */
  resolve(hostname: string): Promise<CheckedAddress>;
}

export type Resolver = (hostname: string) => Promise<{ address: string; family: number }[]>;

// IPv4 rules also match IPv4-mapped IPv6 addresses (::ffff:127.0.0.1, ::ffff:7f00:1).
const refusedRanges = new net.BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['224.0.0.0', 4],
  ['255.255.255.255', 32],
] as const) {
  refusedRanges.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  refusedRanges.addSubnet(network, prefix, 'ipv6');
}

/** Lower-case, without brackets or zone, IPv4-mapped IPv6 written as IPv4: one spelling per address. */
function canonical(address: string): string {
  const a = address
    .replace(/^\[|\]$/g, '')
    .replace(/%.*$/, '')
    .toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped ? mapped[1] : a;
}

/** Every address of this machine's interfaces. */
export function ownAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.add(canonical(i.address));
  return out;
}

/** Whether the gateway must not connect to `address` (an IP literal; anything else is refused too). */
export function isRefusedAddress(address: string, own: ReadonlySet<string>): boolean {
  const a = canonical(address);
  const family = net.isIP(a);
  if (family === 0) return true;
  return refusedRanges.check(a, family === 4 ? 'ipv4' : 'ipv6') || own.has(a);
}

const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export function createConnectGuard(
  own: ReadonlySet<string> = ownAddresses(),
  resolver: Resolver = systemResolver,
): ConnectGuard {
  return {
    async resolve(hostname) {
      const refuse = () =>
        new ShifterError(
          'PERMISSION_DENIED',
          `registry host ${hostname} resolves to an address the gateway does not connect to for users; ` +
            'if it is a registry of this site, ask the admins to add it to Locations in imagemanager.json',
        );
      let answers: { address: string; family: number }[];
      if (net.isIP(canonical(hostname)) !== 0) {
        answers = [{ address: canonical(hostname), family: net.isIP(canonical(hostname)) }];
      } else {
        try {
          answers = await resolver(hostname);
        } catch (e) {
          throw new ShifterError('UNREACHABLE', `could not reach ${hostname}: its name does not resolve`, e);
        }
      }
      if (answers.length === 0 || answers.some((a) => isRefusedAddress(a.address, own))) throw refuse();
      const first = answers[0];
      return { address: first.address, family: first.family === 6 ? 6 : 4 };
    },
  };
}
