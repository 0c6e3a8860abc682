/** Which entry of a manifest list / OCI index an image pull uses. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

export interface PlatformCandidate {
  digest: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** arm64 images mostly omit the variant, which is v8; arm without one is ambiguous, so it only matches exactly. */
function normalisedVariant(architecture: string, variant: string | undefined): string {
  if (variant) return variant;
  return architecture === 'arm64' ? 'v8' : '';
}

export function platformMatches(wanted: Platform, offered: PlatformCandidate['platform']): boolean {
  if (!offered || offered.os !== wanted.os || offered.architecture !== wanted.architecture) return false;
  if (wanted.variant === undefined) return true;
  return (
    normalisedVariant(wanted.architecture, wanted.variant) === normalisedVariant(offered.architecture, offered.variant)
  );
}

/** The first entry for the platform, as docker and containerd choose. */
export function selectPlatform<T extends PlatformCandidate>(entries: readonly T[], wanted: Platform): T | undefined {
  return entries.find((e) => platformMatches(wanted, e.platform));
}

export function formatPlatform(p: { os?: string; architecture?: string; variant?: string } | undefined): string {
  if (!p) return 'unknown';
  return [p.os ?? '?', p.architecture ?? '?', p.variant].filter((x) => x).join('/');
}
