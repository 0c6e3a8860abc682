/**
 * Docker Registry HTTP API v2 client: resolves a reference to the platform's image manifest and
 * config, and downloads verified layer blobs into a BlobCache.
 */
import type { Logger } from '../../common/logger.js';
import { ShifterError } from '../../common/errors.js';
import type { RegistryEndpoint, RegistryClientOptions } from './endpoint.js';
import type { LayerDescriptor, ResolvedImage } from './manifest.js';
import type { BlobCache } from './blob-cache.js';

export class RegistryClient {
  readonly endpoint: RegistryEndpoint;
  private readonly log: Logger;
  private readonly options: RegistryClientOptions;

  constructor(endpoint: RegistryEndpoint, log: Logger, options: RegistryClientOptions = {}) {
    this.endpoint = endpoint;
    this.log = log;
    this.options = options;
  }

  async resolve(repository: string, reference: string, signal?: AbortSignal): Promise<ResolvedImage> {
    void signal;
    this.log.debug({ repository, reference, options: this.options }, 'resolve');
    throw new ShifterError('INTERNAL', 'RegistryClient.resolve is being written');
  }

  async fetchBlob(repository: string, layer: LayerDescriptor, cache: BlobCache, onBytes?: (n: number) => void, signal?: AbortSignal): Promise<string> {
    void repository; void layer; void cache; void onBytes; void signal;
    throw new ShifterError('INTERNAL', 'RegistryClient.fetchBlob is being written');
  }
}
