/**
 * Media types the client speaks. The Accept list always carries all four manifest kinds:
 * distribution 2.8 answers 404 for an OCI manifest not in Accept, and down-converts a Docker
 * schema2 manifest to signed schema1 when its type is missing.
 */
import { ShifterError } from '../../common/errors.js';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';

export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';

export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].join(', ');

export type ManifestKind = 'index' | 'image' | 'schema1';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

const LAYER_COMPRESSION: ReadonlyMap<string, LayerCompression> = new Map([
  [OCI_LAYER, 'none'],
  [OCI_LAYER_GZIP, 'gzip'],
  [OCI_LAYER_ZSTD, 'zstd'],
  [DOCKER_LAYER_GZIP, 'gzip'],
  [DOCKER_LAYER, 'none'],
]);

/** How a layer blob is compressed; foreign, non-distributable and unknown layers are refused. */
export function layerCompression(mediaType: string): LayerCompression {
  const c = LAYER_COMPRESSION.get(mediaType);
  if (c !== undefined) return c;
  if (mediaType.includes('foreign') || mediaType.includes('nondistributable')) {
    throw new ShifterError(
      'REGISTRY_ERROR',
      `the image has a foreign (non-distributable) layer of type ${mediaType}, which registries do not serve; ` +
        'such layers come from Windows base images, which cannot run here: use a Linux image',
    );
  }
  throw new ShifterError(
    'REGISTRY_ERROR',
    `the image has a layer of unsupported media type "${mediaType}"; supported are gzip, zstd and uncompressed tar layers ` +
      '(OCI or Docker v2): re-push the image with a current docker, podman, buildah or skopeo',
  );
}

/** Classifies a manifest by the Content-Type header, falling back to the body's mediaType/schemaVersion. */
export function manifestKind(
  contentType: string | undefined,
  body: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown },
): ManifestKind {
  const type = (contentType ?? '').split(';')[0].trim();
  const declared = typeof body.mediaType === 'string' ? body.mediaType : '';
  for (const t of [type, declared]) {
    if (t === OCI_INDEX || t === DOCKER_MANIFEST_LIST) return 'index';
    if (t === OCI_MANIFEST || t === DOCKER_MANIFEST) return 'image';
    if (t === DOCKER_SCHEMA1 || t === DOCKER_SCHEMA1_SIGNED) return 'schema1';
  }
  if (body.schemaVersion === 1) return 'schema1';
  if (Array.isArray(body.manifests)) return 'index';
  return 'image';
}
