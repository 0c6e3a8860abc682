/**
 * Manifest and image-config parsing: pure functions over bytes a registry sent. Nothing in them is
 * trusted, so every field is checked for type and shape before it is used.
 */
import { createHash } from 'node:crypto';
import { ShifterError } from '../../common/errors.js';
import { layerCompression, manifestKind, type ManifestKind } from './media-types.js';
import type { PlatformCandidate } from './platform.js';

export interface ImageConfig {
  env: string[];
  entrypoint: string[] | null;
  cmd: string[] | null;
  workingDir: string | null;
  labels: Record<string, string>;
  user: string | null;
}

export interface LayerDescriptor {
  digest: string;
  size: number;
  mediaType: string;
}

export interface ResolvedImage {
  /** sha256:<hex> of the platform image manifest; its hex is the image id. */
  manifestDigest: string;
  config: ImageConfig;
  layers: LayerDescriptor[];
  /** True when the registry only served the image to our credentials (a private image). */
  usedCredentials: boolean;
}

export interface ImageManifest {
  kind: 'image';
  config: LayerDescriptor;
  layers: LayerDescriptor[];
}

export interface IndexEntry extends PlatformCandidate {
  mediaType: string;
  size: number;
}

export interface ManifestIndex {
  kind: 'index';
  manifests: IndexEntry[];
}

export type ParsedManifest = ImageManifest | ManifestIndex;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function isDigest(s: string): boolean {
  return DIGEST.test(s);
}

function invalid(what: string, problem: string): ShifterError {
  return new ShifterError('REGISTRY_ERROR', `the registry sent an invalid ${what}: ${problem}`);
}

function parseJson(what: string, bytes: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw invalid(what, `it is not JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(what, 'it is not a JSON object');
  return v as Record<string, unknown>;
}

function descriptor(what: string, v: unknown): LayerDescriptor {
  if (typeof v !== 'object' || v === null) throw invalid(what, 'a descriptor is not an object');
  const d = v as Record<string, unknown>;
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) {
    throw invalid(what, `descriptor digest ${JSON.stringify(d.digest)} is not sha256:<64 hex digits>`);
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(what, `descriptor ${d.digest} has no valid size`);
  }
  if (typeof d.mediaType !== 'string') throw invalid(what, `descriptor ${d.digest} has no mediaType`);
  if (Array.isArray(d.urls) && d.urls.length > 0) {
    throw new ShifterError(
      'REGISTRY_ERROR',
      `layer ${d.digest} must be fetched from external URLs (a foreign layer), which is not supported: use a Linux image without foreign layers`,
    );
  }
  return { digest: d.digest, size: d.size, mediaType: d.mediaType };
}

const SCHEMA1_HELP =
  'the image uses the Docker schema 1 manifest format, which is deprecated and not supported; ' +
  're-push it with a current client (docker push, podman push or skopeo copy) so it is stored as Docker schema 2 or OCI';

/** Parses a manifest or index; `contentType` is the response's Content-Type header. */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ParsedManifest {
  const body = parseJson('manifest', bytes);
  const kind: ManifestKind = manifestKind(contentType, body);
  if (kind === 'schema1') throw new ShifterError('REGISTRY_ERROR', SCHEMA1_HELP);
  if (body.schemaVersion !== 2)
    throw invalid('manifest', `schemaVersion is ${JSON.stringify(body.schemaVersion)}, expected 2`);
  if (kind === 'index') {
    if (!Array.isArray(body.manifests)) throw invalid('manifest list', 'it has no "manifests" array');
    const manifests = body.manifests.map((m: unknown) => {
      const d = descriptor('manifest list', m);
      const p = (m as Record<string, unknown>).platform;
      const entry: IndexEntry = { digest: d.digest, size: d.size, mediaType: d.mediaType };
      if (typeof p === 'object' && p !== null) {
        const q = p as Record<string, unknown>;
        entry.platform = {};
        if (typeof q.os === 'string') entry.platform.os = q.os;
        if (typeof q.architecture === 'string') entry.platform.architecture = q.architecture;
        if (typeof q.variant === 'string') entry.platform.variant = q.variant;
      }
      return entry;
    });
    return { kind: 'index', manifests };
  }
  if (!Array.isArray(body.layers)) throw invalid('manifest', 'it has no "layers" array');
  const config = descriptor('manifest', body.config);
  const layers = body.layers.map((l: unknown) => descriptor('manifest', l));
  for (const l of layers) layerCompression(l.mediaType);
  return { kind: 'image', config, layers };
}

function stringArray(what: string, v: unknown): string[] | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw invalid('image config', `${what} is not a list of strings`);
  return v;
}

function optionalString(what: string, v: unknown): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw invalid('image config', `${what} is not a string`);
  return v;
}

/** The runtime-relevant part of an OCI / Docker image config blob (`config` object). */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  const body = parseJson('image config', bytes);
  const c = body.config ?? body.container_config ?? {};
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    throw invalid('image config', '"config" is not an object');
  const cfg = c as Record<string, unknown>;
  const labels: Record<string, string> = {};
  if (cfg.Labels !== undefined && cfg.Labels !== null) {
    if (typeof cfg.Labels !== 'object' || Array.isArray(cfg.Labels))
      throw invalid('image config', 'Labels is not an object');
    for (const [k, v] of Object.entries(cfg.Labels as Record<string, unknown>)) {
      if (typeof v === 'string') labels[k] = v;
    }
  }
  return {
    env: stringArray('Env', cfg.Env) ?? [],
    entrypoint: stringArray('Entrypoint', cfg.Entrypoint),
    cmd: stringArray('Cmd', cfg.Cmd),
    workingDir: optionalString('WorkingDir', cfg.WorkingDir),
    labels,
    user: optionalString('User', cfg.User),
  };
}
