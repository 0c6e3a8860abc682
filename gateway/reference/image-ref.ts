/**
 * Docker's image reference grammar: `[docker:]name[:tag][@sha256:<hex>]`, where name is
 * `[host[:port]/]component(/component)*`.
 *
 * Upstream split `repo:tag` on every `:` and so could not pull `127.0.0.1:5000/a/b:1` (issue #156);
 * here the tag is only what follows the last `:` after the last `/`, and a first component is a
 * registry host when it looks like one (contains `.` or `:`, is `localhost`, or has upper case,
 * which a repository component may not), exactly as the Docker CLI decides.
 */
import { ShifterError } from '../../common/errors.js';

export interface ImageReference {
  /** Registry host[:port] as written, or the default location. */
  location: string;
  repository: string;
  tag: string | null;
  digest: string | null;
}

const EXAMPLE =
  'a valid reference looks like ubuntu:22.04, myorg/app@sha256:<64 hex digits> or registry.example.org:5000/team/app:1.0';

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HOST =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;
const MAX_NAME_LENGTH = 255;

/** Docker Hub's registry API, whatever alias named it. */
export const DOCKER_HUB_REGISTRY_URL = 'https://registry-1.docker.io';
/** upstream's DefaultImageLocation: Docker Hub by its index name. */
export const DOCKER_HUB_LOCATION = 'index.docker.io';

/** Locations that mean Docker Hub, where single-component names live under `library/`. */
const DOCKER_HUB = new Set(['docker.io', DOCKER_HUB_LOCATION, new URL(DOCKER_HUB_REGISTRY_URL).host]);

export function isDockerHub(location: string): boolean {
  return DOCKER_HUB.has(location.toLowerCase());
}

function bad(input: string, problem: string): ShifterError {
  return new ShifterError('BAD_ARGUMENT', `invalid image reference "${input}": ${problem}; ${EXAMPLE}`);
}

function looksLikeHost(component: string): boolean {
  return (
    component.includes('.') ||
    component.includes(':') ||
    component === 'localhost' ||
    component !== component.toLowerCase()
  );
}

/** `docker:` is Shifter's image-type prefix, unless it is really a host named docker with a port. */
function stripTypePrefix(input: string): string {
  if (input.startsWith('docker:') && !/^docker:\d+\//.test(input)) return input.slice('docker:'.length);
  return input;
}

export function parseImageReference(input: string, defaultLocation: string): ImageReference {
  const raw = input.trim();
  if (raw === '') throw bad(input, 'it is empty');
  if (/\s/.test(raw)) throw bad(input, 'it contains white space');
  let rest = stripTypePrefix(raw);

  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw bad(input, `the digest "${digest}" is not of the form sha256:<64 lowercase hex digits>`);
    }
  }

  let tag: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw bad(
        input,
        `the tag "${tag}" must be 1 to 128 characters of letters, digits, "_", "." and "-", not starting with "." or "-"`,
      );
    }
  }

  if (rest === '') throw bad(input, 'the image name is missing');
  const components = rest.split('/');
  let location = defaultLocation;
  if (components.length > 1 && looksLikeHost(components[0])) {
    location = components.shift()!;
    if (!HOST.test(location)) throw bad(input, `the registry host "${location}" is not a valid host[:port]`);
  }
  for (const c of components) {
    if (c === '') throw bad(input, 'the name has an empty path component (a doubled or trailing "/")');
    if (c !== c.toLowerCase()) throw bad(input, `the repository name "${components.join('/')}" must be lowercase`);
    if (!COMPONENT.test(c)) {
      throw bad(
        input,
        `the name component "${c}" may only contain lowercase letters, digits and single separators (".", "_", "__", "-") between them`,
      );
    }
  }
  if (components.length === 1 && isDockerHub(location)) components.unshift('library');
  const repository = components.join('/');
  if (repository.length > MAX_NAME_LENGTH)
    throw bad(input, `the repository name is longer than ${MAX_NAME_LENGTH} characters`);

  if (tag === null && digest === null) tag = 'latest';
  return { location, repository, tag, digest };
}

/** Canonical `location/repository[:tag][@digest]`. */
export function formatImageReference(ref: ImageReference): string {
  let s = `${ref.location}/${ref.repository}`;
  if (ref.tag !== null) s += `:${ref.tag}`;
  if (ref.digest !== null) s += `@${ref.digest}`;
  return s;
}

/** What goes after `/manifests/`: a digest pins the content, so it wins over the tag. */
export function referenceForManifest(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}
