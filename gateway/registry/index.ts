/** The registry client's public surface, for the pull pipeline and the gateway service. */
export { RegistryClient } from './client.js';
export { BlobCache } from './blob-cache.js';
export { createConnectGuard, type ConnectGuard } from './address-guard.js';
export { fetchLayers, type FetchLayersOptions, type FetchProgress } from './fetch-layers.js';
export type { RegistryEndpoint, RegistryCredentials, RegistryClientOptions } from './endpoint.js';
export { defaultBaseUrl } from './endpoint.js';
export type { ImageConfig, LayerDescriptor, ResolvedImage } from './manifest.js';
export { layerCompression, type LayerCompression } from './media-types.js';
export { DEFAULT_PLATFORM, type Platform } from './platform.js';
