/**
 * Typed access to native/build/shifter_native.node: the socket calls Node has no API for. Shared:
 * shifterd's adapters pass fds with it, and every daemon tells systemd it is ready through it
 * (common/systemd-notify.ts). Every fd the addon returns is close-on-exec.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShifterError } from './errors.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
  groups: number[];
}

export interface ReceivedMessage {
  data: Buffer;
  fds: number[];
}

export interface NativeAddon {
  /** SO_PEERCRED + SO_PEERGROUPS of a connected unix socket (ids as the kernel saw them at connect). */
  getPeerCredentials(fd: number): PeerCredentials;
  /** One sendmsg with SCM_RIGHTS; returns the bytes sent (may be fewer than data.length). */
  sendWithFds(fd: number, data: Buffer, fds: number[]): number;
  /** One non-blocking recvmsg; null when nothing is queued. */
  recvWithFds(fd: number, maxBytes: number, maxFds: number): ReceivedMessage | null;
  /** A connected SOCK_SEQPACKET pair. */
  socketPair(): [number, number];
  closeFd(fd: number): void;
  /** A close-on-exec memfd holding data, positioned at 0. */
  memfdFromBuffer(data: Buffer): number;
  /** Calls callback once when fd is readable or hung up, on the event loop; returns an id for cancelWait. */
  waitReadable(fd: number, callback: () => void): number;
  cancelWait(id: number): void;
  /** One datagram to a unix socket (absolute path, or '@name' for an abstract one): sd_notify's protocol. */
  notifyDatagram(path: string, message: string): void;
}

/** Where the native binaries live: $SHIFTER_NATIVE_DIR, else native/build of this checkout. */
export function nativeDir(): string {
  const override = process.env.SHIFTER_NATIVE_DIR;
  if (override) return override;
  // Compiled to dist/common/: the checkout root is two levels up.
  return join(fileURLToPath(new URL('../../', import.meta.url)), 'native', 'build');
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const path = join(nativeDir(), 'shifter_native.node');
  try {
    cached = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    throw new ShifterError(
      'INTERNAL',
      `cannot load the native addon ${path}: ${(e as Error).message} (run "npm run build")`,
      e,
    );
  }
  return cached;
}
