/**
 * What the gateway stores about an image (upstream's Mongo `images` document, typed): one READY
 * record per image id and system, carrying every tag that points at it. Every user's pull of a
 * tag leaves a grant (`grants`: tag, who pulled, the access they asked for); a tag's access is
 * the union of its grants, and the record's own `private`/`userACL`/`groupACL` hold the union of
 * all its grants, which is also what `<id>.meta` says (the rule: common/image-access.ts).
 */
import { accessFromLists, combineAccess, PUBLIC_ACCESS, type ImageAccess } from '../../common/image-access.js';
import type { ImageStatus } from './status.js';

export type RecordKey = string & { readonly __brand: 'RecordKey' };

export interface PullProgress {
  layersDone: number;
  layersTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

/**
 * One user's pull of one tag onto the image, with the access that pull asked for. The user's next
 * pull of that tag onto the image replaces it; another user's pull adds its own, so no user's pull
 * narrows what another user pulled.
 */
export interface PullGrant extends AclHolder {
  tag: string;
  /** The uid that asked for the pull (null: an anonymous request, which can only be public). */
  uid: number | null;
  private: boolean;
}

export interface ImageRecord {
  key: RecordKey;
  system: string;
  itype: string;
  /** The tag the pull was requested with; kept after READY (upstream does the same). */
  pulltag: string;
  /** Tags currently pointing at this image; a tag lives on at most one record per system+type. */
  tag: string[];
  /** Manifest digest hex once known. */
  id: string | null;
  status: ImageStatus;
  status_message: string;
  /** A pull record: what the pull asked for. A READY record: the union of `grants` (what `<id>.meta` says). */
  userACL: number[];
  groupACL: number[];
  /** null until the pull decides (upstream `private: None`). */
  private: boolean | null;
  /**
   * Every pull of a tag onto this image. A grant stays when its tag later moves to other content:
   * the union (and the .meta, which is not rewritten then) never narrows behind a user's back.
   */
  grants: PullGrant[];
  /** A pull record: who asked for it (null: anonymous); its grant is theirs. */
  requesterUid: number | null;
  format: string;
  location: string;
  remotetype: string;
  arch: string;
  os: string;
  ENV: string[] | null;
  ENTRY: string[] | null;
  CMD: string[] | null;
  WORKDIR: string | null;
  LABELS: Record<string, string> | null;
  USER: string | null;
  /** Epoch seconds (float, as upstream). */
  last_pull: number | null;
  last_heartbeat: number | null;
  expiration: number | null;
  progress: PullProgress | null;
  /** The pull used registry credentials from the caller's session (not stored): it cannot be resumed alone. */
  credentialed: boolean;
  /**
   * Conversions this pull started that neither finished nor failed cleanly (counted before each
   * one starts; a clean shutdown gives its attempt back): the gateway stopped under them.
   * Absent in records written before it existed, which counts as 0.
   */
  conversion_attempts?: number;
  /**
   * sha256 hex of the image's chunk index (`<id>.chunks`, common/chunk-index.ts), also in `<id>.meta`
   * as CHUNKINDEX. Not one of upstream's 13 API keys: lookups do not show it. Absent in records of
   * images converted before indexes existed until their index is first requested.
   */
  chunkIndex?: string;
}

export interface NewPull {
  system: string;
  itype: string;
  pulltag: string;
  requesterUid: number | null;
  userACL: number[];
  groupACL: number[];
  format: string;
  credentialed: boolean;
  now: number;
}

/** Fields a pull writes as it goes. */
export type RecordPatch = Partial<Omit<ImageRecord, 'key' | 'system' | 'itype' | 'pulltag' | 'tag'>>;

export interface CompletedPull {
  id: string;
  format: string;
  ENV: string[];
  ENTRY: string[] | null;
  CMD: string[] | null;
  WORKDIR: string | null;
  LABELS: Record<string, string>;
  USER: string | null;
  userACL: number[];
  groupACL: number[];
  private: boolean;
  now: number;
  /** When the image expires unless looked up before (null: ImageExpirationTimeout is not set). */
  expiration: number | null;
  status_message: string;
  /** sha256 hex of the image's chunk index. */
  chunkIndex?: string;
}

export interface MetricRecord {
  user: string | null;
  uid: number | null;
  system: string;
  type: string;
  tag: string;
  id: string;
  time: number;
}

export function newPullRecord(key: RecordKey, p: NewPull): ImageRecord {
  return {
    key,
    system: p.system,
    itype: p.itype,
    pulltag: p.pulltag,
    tag: [],
    id: null,
    status: 'PENDING',
    status_message: 'Queued for pulling',
    userACL: p.userACL,
    groupACL: p.groupACL,
    private: null,
    grants: [],
    requesterUid: p.requesterUid,
    format: p.format,
    location: '',
    remotetype: 'dockerv2',
    arch: 'amd64',
    os: 'linux',
    ENV: null,
    ENTRY: null,
    CMD: null,
    WORKDIR: null,
    LABELS: null,
    USER: null,
    last_pull: p.now,
    last_heartbeat: p.now,
    expiration: null,
    progress: null,
    credentialed: p.credentialed,
    conversion_attempts: 0,
  };
}

/** Records stored before grants existed: every tag was granted the record's access, and pulls were nobody's. */
export function withGrants(rec: ImageRecord): ImageRecord {
  if (Array.isArray(rec.grants)) return rec;
  const isPrivate = rec.private ?? false;
  return {
    ...rec,
    requesterUid: rec.requesterUid ?? null,
    grants: rec.tag.map((tag) => ({
      tag,
      uid: null,
      private: isPrivate,
      userACL: rec.userACL,
      groupACL: rec.groupACL,
    })),
  };
}

/** The record as seen through one of its tags: that tag's access in the ACL fields (lookups, pull decisions). */
export function throughTag(rec: ImageRecord, tag: string): ImageRecord {
  return { ...rec, ...aclFields(tagAccess(rec, tag)) };
}

/** The grant a pull of `tag` by `uid` leaves (a public pull drops the lists, as upstream). */
export function pullGrant(tag: string, uid: number | null, acl: AclHolder): PullGrant {
  if (!acl.private) return { tag, uid, private: false, userACL: [], groupACL: [] };
  return { tag, uid, private: true, userACL: acl.userACL, groupACL: acl.groupACL };
}

export interface ImageGrants {
  grants: PullGrant[];
  access: ImageAccess;
}

/**
 * The grants and the image's access once `grant` is added to the image whose READY record is
 * `holder` (null: the image's first pull). The pipeline writes `access` into `<id>.meta` and the
 * store into the record, both under the image's lock and from the same holder, so they agree.
 */
export function accessAfterPull(holder: ImageRecord | null, grant: PullGrant): ImageGrants {
  const others = (holder?.grants ?? []).filter((g) => g.tag !== grant.tag || g.uid !== grant.uid);
  return { grants: [...others, grant], access: combineAccess(accessOf(grant), ...others.map(accessOf)) };
}

/** The fields the completed `pull` writes onto `holder` (or onto the pull record itself when null). */
export function completedFields(r: CompletedPull, pull: ImageRecord, holder: ImageRecord | null): RecordPatch {
  const { grants, access } = accessAfterPull(holder, pullGrant(pull.pulltag, pull.requesterUid, r));
  return {
    id: r.id,
    format: r.format,
    ENV: r.ENV,
    ENTRY: r.ENTRY,
    CMD: r.CMD,
    WORKDIR: r.WORKDIR,
    LABELS: r.LABELS,
    USER: r.USER,
    ...aclFields(access),
    grants,
    ...(r.chunkIndex === undefined ? {} : { chunkIndex: r.chunkIndex }),
    status: 'READY',
    status_message: r.status_message,
    last_pull: r.now,
    last_heartbeat: r.now,
    expiration: r.expiration,
    progress: null,
  };
}

export interface AclHolder {
  private: boolean | null;
  userACL: number[];
  groupACL: number[];
}

/** Upstream's fields as an access: `private: false` is public whatever the lists say. */
export function accessOf(h: AclHolder): ImageAccess {
  return h.private === false ? PUBLIC_ACCESS : accessFromLists(h.userACL, h.groupACL);
}

/** An access in upstream's fields (a public image has empty lists, as upstream stores it). */
export function aclFields(a: ImageAccess): { private: boolean; userACL: number[]; groupACL: number[] } {
  if (a.kind === 'public') return { private: false, userACL: [], groupACL: [] };
  return { private: true, userACL: [...a.users], groupACL: [...a.groups] };
}

/** The access of one tag of `rec`: the union of its grants (the record's own, for a tag with none). */
export function tagAccess(rec: ImageRecord, tag: string): ImageAccess {
  const [first, ...rest] = rec.grants.filter((g) => g.tag === tag).map(accessOf);
  return first === undefined ? accessOf(rec) : combineAccess(first, ...rest);
}
