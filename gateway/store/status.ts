/**
 * The life of an image record as a typed state machine. Pure: the pull manager asks `canMove`
 * before every status write so an impossible sequence (READY → PULLING, …) is a bug caught at once.
 *
 * Order differs from upstream in one place: the examiner looks at the finished squashfs (we never
 * extract a rootfs), so EXAMINATION comes after CONVERSION and is skipped without an examiner.
 * EXPIRING/EXPIRED/HASHING are reserved for expiry and direct import.
 */
import { ShifterError } from '../../common/errors.js';

export const IMAGE_STATUSES = [
  'INIT',
  'PENDING',
  'PULLING',
  'CONVERSION',
  'EXAMINATION',
  'TRANSFER',
  'READY',
  'FAILURE',
  'EXPIRING',
  'EXPIRED',
  'HASHING',
] as const;

export type ImageStatus = (typeof IMAGE_STATUSES)[number];

/** Statuses of a pull that a worker is (or should be) working on. */
export const IN_FLIGHT: readonly ImageStatus[] = [
  'PENDING',
  'PULLING',
  'CONVERSION',
  'EXAMINATION',
  'TRANSFER',
  'HASHING',
];

const TRANSITIONS: Record<ImageStatus, readonly ImageStatus[]> = {
  INIT: ['PENDING', 'FAILURE'],
  PENDING: ['PULLING', 'HASHING', 'FAILURE'],
  // PULLING → TRANSFER is the meta-only path: the image files already exist on the system.
  PULLING: ['CONVERSION', 'TRANSFER', 'FAILURE', 'PENDING'],
  CONVERSION: ['EXAMINATION', 'TRANSFER', 'FAILURE', 'PENDING'],
  EXAMINATION: ['TRANSFER', 'FAILURE', 'PENDING'],
  TRANSFER: ['READY', 'FAILURE', 'PENDING'],
  HASHING: ['TRANSFER', 'FAILURE', 'PENDING'],
  // READY → FAILURE: found at startup with its files missing.
  READY: ['EXPIRING', 'FAILURE'],
  FAILURE: [],
  EXPIRING: ['EXPIRED', 'FAILURE'],
  EXPIRED: [],
};

export function isImageStatus(s: unknown): s is ImageStatus {
  return typeof s === 'string' && (IMAGE_STATUSES as readonly string[]).includes(s);
}

/** `x → PENDING` from a working state is only the restart path: a pull re-queued at startup. */
export function canMove(from: ImageStatus, to: ImageStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isInFlight(s: ImageStatus): boolean {
  return IN_FLIGHT.includes(s);
}

export function assertMove(from: ImageStatus, to: ImageStatus): void {
  if (!canMove(from, to)) throw new ShifterError('INTERNAL', `illegal image status change ${from} → ${to}`);
}
