/**
 * The image a request names, read once at the API edge: the tag as records know it (upstream's
 * implicit `:latest` added) and, for docker images, the parsed reference the pull uses. Nothing
 * behind the edge parses the URL's tag again.
 */
import { ShifterError } from '../../common/errors.js';
import { normalizeTag } from '../pull/rules.js';
import { parseImageReference, type ImageReference } from '../reference/image-ref.js';
import type { ImageParams } from './schemas.js';

export interface LookupTarget {
  itype: ImageParams['imgtype'];
  tag: string;
}

export interface PullTarget {
  itype: 'docker';
  tag: string;
  ref: ImageReference;
}

function rawTag(params: ImageParams): string {
  const tag = params['*'].replace(/\/+$/, '');
  if (!tag) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      'the image tag is missing from the URL; use /api/<verb>/<system>/<type>/<tag>/',
    );
  }
  return tag;
}

/** A docker lookup names a reference that could have been pulled: anything else is refused, not "not found". */
export function lookupTarget(params: ImageParams, defaultLocation: string): LookupTarget {
  const tag = normalizeTag(params.imgtype, rawTag(params), true);
  if (params.imgtype === 'docker') parseImageReference(tag, defaultLocation);
  return { itype: params.imgtype, tag };
}

export function pullTarget(params: ImageParams, defaultLocation: string): PullTarget {
  const { imgtype } = params;
  if (imgtype !== 'docker') {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `images of type "${imgtype}" cannot be pulled; use type docker (custom images come from doimport)`,
    );
  }
  const tag = normalizeTag(imgtype, rawTag(params), false);
  return { itype: imgtype, tag, ref: parseImageReference(tag, defaultLocation) };
}
