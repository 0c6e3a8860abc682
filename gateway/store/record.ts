/** What the gateway stores about an image (upstream's Mongo `images` document, typed). */
import type { ImageStatus } from './status.js';

export type RecordKey = string & { readonly __brand: 'RecordKey' };

export interface PullProgress {
  layersDone: number;
  layersTotal: number;
  bytesDone: number;
  bytesTotal: number;
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
  userACL: number[];
  groupACL: number[];
  /** null until the pull decides (upstream `private: None`). */
  private: boolean | null;
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
}

export interface NewPull {
  system: string;
  itype: string;
  pulltag: string;
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
  status_message: string;
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

/** The fields a completed pull writes onto the record that will hold the image. */
export function completedFields(r: CompletedPull): RecordPatch {
  const isPrivate = r.private;
  return {
    id: r.id,
    format: r.format,
    ENV: r.ENV,
    ENTRY: r.ENTRY,
    CMD: r.CMD,
    WORKDIR: r.WORKDIR,
    LABELS: r.LABELS,
    USER: r.USER,
    private: isPrivate,
    userACL: isPrivate ? r.userACL : [],
    groupACL: isPrivate ? r.groupACL : [],
    status: 'READY',
    status_message: r.status_message,
    last_pull: r.now,
    last_heartbeat: r.now,
    progress: null,
  };
}
