/**
 * Image descriptors as users type them (`docker:ubuntu:22.04`, `ubuntu`, `id:<hex>`, `local:/`),
 * following upstream's `parse_ImageDescriptor` (src/ImageData.c) with one deliberate change:
 * upstream silently deletes characters it does not allow, so `ubuntu;rm` quietly became
 * `ubunturm` and a typo could select a different image. Here such input is refused with an error
 * that names the character.
 *
 * Shared by shifterimg, the launcher and the node daemon, so it stays pure (no I/O).
 */
import { ShifterError } from './errors.js';

export const IMAGE_TYPES = ['docker', 'custom', 'id', 'local'] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];

export interface ImageDescriptor {
  readonly type: ImageType;
  readonly tag: string;
}

declare const imageIdBrand: unique symbol;
/** The gateway's image id: 64 lowercase hex characters (sha256), also the image's file name. */
export type ImageId = string & { readonly [imageIdBrand]: true };

const IMAGE_ID_RE = /^[0-9a-f]{64}$/;

export function isImageType(value: string): value is ImageType {
  return (IMAGE_TYPES as readonly string[]).includes(value);
}

export function isImageId(value: string): value is ImageId {
  return IMAGE_ID_RE.test(value);
}

export function toImageId(value: string): ImageId {
  if (isImageId(value)) return value;
  throw new ShifterError(
    'BAD_ARGUMENT',
    `'${printable(value)}' is not an image id: an id is 64 lowercase hex characters ` +
      '(as printed by `shifterimg lookup`)',
  );
}

/**
 * Upstream's allowed set is alphanumerics and `_ : . + -`; `@` is added so digest references
 * (`repo@sha256:...`) work, `/` only where a tag is a path (docker repositories, local paths).
 */
function allowedChar(c: string, type: ImageType): boolean {
  if (/^[A-Za-z0-9_:.+\-@]$/.test(c)) return true;
  return c === '/' && (type === 'docker' || type === 'local');
}

/** Control characters and the like shown as escapes so an error message cannot mess up a terminal. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function describeChar(c: string): string {
  if (c === ' ') return 'a space';
  if (/^[\x21-\x7e]$/.test(c)) return `'${c}'`;
  return `the character ${printable(c)}`;
}

/**
 * A docker reference gets `:latest` when its last path component has no tag and no digest.
 * Upstream's gateway only looked for any `:`, so `registry:5000/app` never got one; the last
 * component is what names the tag.
 */
export function withImplicitLatest(tag: string): string {
  const last = tag.slice(tag.lastIndexOf('/') + 1);
  if (last.includes(':') || tag.includes('@')) return tag;
  return `${tag}:latest`;
}

function validateTag(type: ImageType, tag: string, input: string): void {
  if (tag.length === 0) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `image '${printable(input)}' has an empty ${type === 'id' ? 'id' : 'tag'}: ` +
        `write it as ${type}:<${type === 'id' ? 'id' : 'name'}>`,
    );
  }
  for (const c of tag) {
    if (!allowedChar(c, type)) {
      const slashHint = c === '/' ? ` ('/' is only allowed in docker and local images)` : '';
      throw new ShifterError(
        'BAD_ARGUMENT',
        `image '${printable(input)}' contains ${describeChar(c)}, which is not allowed in an image name${slashHint}: ` +
          'use letters, digits and _ : . + - @ /',
      );
    }
  }
  if (type === 'id' && !isImageId(tag)) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `'${printable(input)}' is not a valid image id: an id is 64 lowercase hex characters ` +
        '(as printed by `shifterimg lookup`)',
    );
  }
  if (type === 'local' && !tag.startsWith('/')) {
    throw new ShifterError('BAD_ARGUMENT', `local image '${printable(input)}' must be an absolute path, e.g. local:/`);
  }
  if ((type === 'docker' || type === 'local') && tag.split('/').some((part) => part === '..')) {
    throw new ShifterError('BAD_ARGUMENT', `image '${printable(input)}' contains a '..' path component`);
  }
}

/**
 * Splits `type:tag`. The text before the first `:` is a type only if it is one of the four
 * types; otherwise (`ubuntu:22.04`) the whole input is a tag of `defaultType`.
 * Docker tags come back with the implicit `:latest` applied.
 */
export function parseImageDescriptor(input: string, defaultType: ImageType = 'docker'): ImageDescriptor {
  const trimmed = input.trim();
  if (trimmed.length === 0) {
    throw new ShifterError('BAD_ARGUMENT', 'no image given: name one, e.g. docker:ubuntu:22.04');
  }
  const colon = trimmed.indexOf(':');
  const prefix = colon >= 0 ? trimmed.slice(0, colon) : '';
  let type: ImageType;
  let tag: string;
  if (colon >= 0 && isImageType(prefix)) {
    type = prefix;
    tag = trimmed.slice(colon + 1);
  } else {
    type = defaultType;
    tag = trimmed;
  }
  validateTag(type, tag, trimmed);
  return { type, tag: type === 'docker' ? withImplicitLatest(tag) : tag };
}

export function formatImageDescriptor(d: ImageDescriptor): string {
  return `${d.type}:${d.tag}`;
}
