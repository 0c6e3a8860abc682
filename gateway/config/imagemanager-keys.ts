/**
 * Every key imagemanager.json may hold, by section, with one line each: the parser
 * (imagemanager.ts) knows a key by its presence here, and imagemanager.json(5) (tools/man/) is
 * written from the same tables, so neither can list a key the other does not.
 */

export type KeyTable = Readonly<Record<string, string>>;

export const TOP_KEY_DOCS: KeyTable = {
  WorkerThreads: 'concurrent pulls (default 1); further pulls wait in a FIFO queue',
  LogLevel: 'debug, info, warn, error or critical (default info)',
  DefaultImageLocation: 'the Location used when an image name has no registry host (default index.docker.io)',
  DefaultImageFormat: 'must be squashfs',
  PullUpdateTimeout: 'seconds a READY or FAILURE record is shown before the image is pulled again (default 300)',
  ImageExpirationTimeout: 'D:H:M:S after its pull or last lookup when an image expires (unset: never)',
  MongoDBURI: 'MongoDB server for the image records (unset: a local SQLite file, MetadataStore)',
  MongoDB: 'MongoDB database name (default Shifter)',
  CacheDirectory: 'layer blob cache, created if missing',
  ExpandDirectory: 'scratch space for conversions (local disk advised)',
  Metrics: 'true: keep one record per lookup, served to admins by GET /api/metrics/<system>/',
  Authentication: 'munge (default) or mock (tests only, insecure)',
  ImportUsers: 'who may import images besides the admins: all, none (default), or a list of names and uids',
  ConverterOptions: 'extra converter arguments by format, e.g. {"squashfs": ["-comp", "zstd"]}',
  examiner: 'executable run as "examiner <squashfs> <id>" before transfer; non-zero fails the pull',
  Locations: 'registries by host name: an object of Location settings (below)',
  Platforms: 'systems by name (udiRoot.conf system): an object of Platform settings (below)',
  MetadataStore: 'SQLite file of the image records (default <CacheDirectory>/gateway.sqlite; not a cache)',
  LayerConcurrency: 'parallel layer downloads per pull (default 3)',
  HeartbeatTimeout: 'seconds without progress after which an unfinished record may be pulled again (default 3600)',
  Limits: 'what one image may cost the gateway: an object of Limits settings (below)',
  MetricsAllow: 'who may scrape GET /metrics: "all", or addresses and CIDR blocks (default loopback only)',
};

/** Upstream keys nothing reads, accepted silently. */
export const UNUSED_TOP_KEY_DOCS: KeyTable = {
  DefaultLustreReplication: 'unused (upstream too); accepted',
  DefaultOstCount: 'unused (upstream too); accepted',
  DefaultImageRemote: 'unused (upstream too); accepted',
  PullUpdateTime: 'unused (upstream too); accepted',
};

export const HTTP_SERVER_KEY_DOCS: KeyTable = {
  RequestTimeout: 'seconds a client has to send a whole request (default 30)',
  HeadersTimeout: 'seconds a client has to send the headers, at most RequestTimeout (default 10)',
  KeepAliveTimeout: 'seconds an idle keep-alive connection stays open (default 5)',
  MaxConnectionsPerAddress: 'open connections from one client address (default 64)',
  MaxConnections: 'open connections in all (default 2048)',
};

/** At the top level: admission control of the lazy cache's index and chunk answers (gateway/chunks/admission.ts). */
export const CHUNK_ADMISSION_KEY_DOCS: KeyTable = {
  ChunkConcurrency: 'index and chunk answers in flight at once (default 64); more wait, served round-robin by node',
  ChunkQueueLength: 'requests that may wait, over all nodes (default 1024); past it: 503 with Retry-After',
  ChunkQueueWait: 'seconds one request may wait (default 10); past it: 503 with Retry-After',
};

export const PULL_POLICY_KEY_DOCS: KeyTable = {
  AllowedRegistries: 'registry host patterns users may pull from besides Locations, e.g. "*.example.org:5000"',
  PullDeadline: 'seconds a pull may run before it fails (default 7200)',
  RegistryConcurrency: 'pulls running against one registry at once (default WorkerThreads - 1, at least 1)',
};

export const LOCATION_KEY_DOCS: KeyTable = {
  remotetype: 'dockerv2',
  url: 'base URL, https:// (or, explicitly, http://); default https://<host>',
  sslcacert: 'CA bundle to trust for this registry (relative: to the config file)',
  authMethod: 'token (default) or basic',
  authentication: 'unused upstream key; accepted',
};

export const PLATFORM_KEY_DOCS: KeyTable = {
  mungeSocketPath: "munged's socket for this system's credentials",
  accesstype: 'local (imageDir on a shared filesystem) or remote (ssh/scp)',
  admins: 'user names allowed to administer images of this system',
  use_external: 'ignored, with a warning',
  policy_file: 'ignored, with a warning',
  local: '{"imageDir": "/abs/path"}: where images are written (accesstype local)',
  host: 'remote hosts (accesstype remote); the first is used',
  ssh: 'username, key, imageDir, sshCmdOptions, scpCmdOptions (accesstype remote)',
  usergroupService: 'unused upstream key; accepted',
  mountCommand: 'unused upstream key; accepted',
  platform: 'os/arch[/variant] picked from manifest lists (default linux/amd64)',
};

/** Keys of the Limits object; imagemanager.ts maps each to its field, so a key cannot lack either. */
export const LIMIT_KEY_DOCS = {
  MaxEntries: 'tar entries over all layers (default 2000000)',
  MaxExpandedBytes: 'decompressed bytes over all layers, e.g. "64G" (default 64G)',
  MaxExpansionRatio: 'decompressed / compressed size of one layer past 1 GiB (default 100)',
  MaxLayerBytes: 'compressed size of one layer, from the manifest (default 16G)',
  MaxImageBytes: 'compressed size of all layers, from the manifest (default 32G)',
} satisfies KeyTable;

export function keySet(...tables: KeyTable[]): ReadonlySet<string> {
  return new Set(tables.flatMap((t) => Object.keys(t)));
}
