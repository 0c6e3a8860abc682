/**
 * Proxy selection from http_proxy / https_proxy / no_proxy, the way Go's net/http (and so docker,
 * skopeo and containerd) reads them: lower case wins over upper case, `no_proxy` entries match a
 * host exactly or as a domain suffix (`example.org`, `.example.org`, `*.example.org`), may carry a
 * port, `*` disables proxying, and loopback destinations are never proxied.
 */
export interface ProxyChoice {
  proxy: URL;
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name.toLowerCase()] ?? env[name.toUpperCase()];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

export function isLoopbackHost(hostname: string): boolean {
  const h = stripBrackets(hostname).toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127(?:\.\d{1,3}){3}$/.test(h) || h === '::1';
}

function defaultPort(url: URL): string {
  return url.port || (url.protocol === 'https:' ? '443' : '80');
}

function bypassed(target: URL, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false;
  const host = stripBrackets(target.hostname).toLowerCase();
  for (const raw of noProxy.split(',')) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let port: string | null = null;
    const portMatch = /^(.*[^:]):(\d+)$/.exec(entry);
    if (portMatch && !entry.includes('::')) {
      entry = portMatch[1]!;
      port = portMatch[2]!;
    }
    if (port !== null && port !== defaultPort(target)) continue;
    entry = stripBrackets(entry.replace(/^\*\./, '.').replace(/^\.+/, ''));
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** The proxy to use for `target`, or null to connect directly. */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv): URL | null {
  if (isLoopbackHost(target.hostname)) return null;
  const raw = target.protocol === 'https:' ? envValue(env, 'https_proxy') : envValue(env, 'http_proxy');
  if (raw === undefined) return null;
  if (bypassed(target, envValue(env, 'no_proxy'))) return null;
  const proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:') {
    throw new Error(
      `unsupported proxy scheme in ${proxy.protocol}//${proxy.host} (only http:// and https:// proxies are supported)`,
    );
  }
  return proxy;
}

/** `Proxy-Authorization` for a proxy URL with user:password, else undefined. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '') return undefined;
  const user = decodeURIComponent(proxy.username);
  const pass = decodeURIComponent(proxy.password);
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}
