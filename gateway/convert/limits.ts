/**
 * The site's limits on what one image may cost (imagemanager.json `Limits`), checked as the
 * layers stream: a pull over a limit stops at once with a message naming the key and the value
 * to raise, instead of filling the gateway's memory or disks. Pure.
 * Layers are read more than once (headers, then content); each layer counts once, with the most
 * any pass over it has seen, so the totals are those of the image.
 */
import { ShifterError } from '../../common/errors.js';
import type { ImageLimits } from '../config/imagemanager.js';

/** A layer expanding past this is held to `MaxExpansionRatio`; smaller ones never are. */
export const RATIO_FLOOR_BYTES = 1024 ** 3;

export interface LimitedLayer {
  digest: string;
  /** Compressed size in bytes. */
  size: number;
}

function exceeded(key: string, what: string, limit: number, advice = ''): ShifterError {
  return new ShifterError(
    'LIMIT_EXCEEDED',
    `${what}, over the site limit Limits.${key} = ${limit}${advice}; ` +
      `if the image is legitimate, raise Limits.${key} in imagemanager.json`,
  );
}

/** Before any download: the compressed sizes the manifest declares. */
export function checkCompressedSizes(layers: readonly LimitedLayer[], limits: ImageLimits): void {
  for (const l of layers) {
    if (l.size > limits.maxLayerBytes) {
      throw exceeded('MaxLayerBytes', `layer ${l.digest} is ${l.size} bytes compressed`, limits.maxLayerBytes);
    }
  }
  const total = layers.reduce((n, l) => n + l.size, 0);
  if (total > limits.maxImageBytes) {
    throw exceeded('MaxImageBytes', `the image's layers are ${total} bytes compressed`, limits.maxImageBytes);
  }
}

export class LimitMeter {
  private readonly entries: number[];
  private readonly bytes: number[];
  private totalEntries = 0;
  private totalBytes = 0;

  constructor(
    private readonly layers: readonly LimitedLayer[],
    private readonly limits: ImageLimits,
  ) {
    this.entries = layers.map(() => 0);
    this.bytes = layers.map(() => 0);
  }

  /** A pass over layer `i` has read `count` entries so far. */
  countEntries(i: number, count: number): void {
    const grew = count - this.entries[i];
    if (grew <= 0) return;
    this.entries[i] = count;
    this.totalEntries += grew;
    if (this.totalEntries > this.limits.maxEntries) {
      throw exceeded(
        'MaxEntries',
        `the image holds more than ${this.limits.maxEntries} entries (files, directories, links)`,
        this.limits.maxEntries,
      );
    }
  }

  /** A pass over layer `i` has decompressed `count` bytes so far. */
  countBytes(i: number, count: number): void {
    const grew = count - this.bytes[i];
    if (grew <= 0) return;
    this.bytes[i] = count;
    this.totalBytes += grew;
    const { maxExpandedBytes, maxExpansionRatio } = this.limits;
    if (this.totalBytes > maxExpandedBytes) {
      throw exceeded('MaxExpandedBytes', `the image expands to more than ${maxExpandedBytes} bytes`, maxExpandedBytes);
    }
    const layer = this.layers[i];
    if (count > RATIO_FLOOR_BYTES && count > maxExpansionRatio * layer.size) {
      throw exceeded(
        'MaxExpansionRatio',
        `layer ${layer.digest} expands from ${layer.size} to more than ${count} bytes (a "compression bomb")`,
        maxExpansionRatio,
        ` (times its compressed size, for layers past ${RATIO_FLOOR_BYTES} bytes)`,
      );
    }
  }
}
