/**
 * The gateway's REST paths, as upstream's api.py serves them (`/api/<verb>/<system>/` and
 * `/api/<verb>/<system>/<type>/<tag>/`), built one way for every client. Each piece is
 * percent-encoded on its own, except that a tag keeps its `/` separators (the route matches
 * `<tag:path>`, and repository names are paths); `:` and `@` are encoded.
 * Empty, `.` and `..` segments are refused: an HTTP stack may resolve them and so reach another
 * route (`lookup/sys/docker/../../list` would be a list).
 */
import { ShifterError } from '../errors.js';
import type { ImageDescriptor } from '../image-descriptor.js';

export type GatewayRoute =
  | { readonly verb: 'list' | 'queue' | 'autoexpire'; readonly system: string }
  | { readonly verb: 'lookup' | 'pull' | 'expire'; readonly system: string; readonly image: ImageDescriptor };

const isDotOrEmpty = (s: string): boolean => s === '' || s === '.' || s === '..';

function refuse(what: string): ShifterError {
  return new ShifterError(
    'BAD_ARGUMENT',
    `${what} cannot be sent to the image gateway: an empty, '.' or '..' path component would name another route`,
  );
}

/** The path of `route`, with the trailing `/` upstream's routes have. */
export function routePath(route: GatewayRoute): string {
  if (isDotOrEmpty(route.system)) throw refuse(`system name '${route.system}'`);
  const parts = ['api', route.verb, encodeURIComponent(route.system)];
  if (route.verb === 'lookup' || route.verb === 'pull' || route.verb === 'expire') {
    const { type, tag } = route.image;
    if (type === 'local') {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `local:${tag} is a directory on this system, not an image the gateway holds: name a docker: or custom: image`,
      );
    }
    const pieces = tag.split('/');
    if (pieces.some(isDotOrEmpty)) throw refuse(`image ${type}:${tag}`);
    parts.push(encodeURIComponent(type), ...pieces.map(encodeURIComponent));
  }
  return `/${parts.join('/')}/`;
}
