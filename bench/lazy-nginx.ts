/**
 * The HTTP cache of bench/lazy.sh's two-node round: Debian's nginx with the tests' config
 * (test/helpers/nginx-cache.ts: proxy_cache, proxy_cache_lock) in front of the gateway, in a
 * directory under $TMPDIR. Prints one JSON line {"url", "pid"} once nginx accepts; on SIGTERM or
 * SIGINT stops nginx by its pid, removes its directory and exits.
 * Usage: TMPDIR=DIR node dist/bench/lazy-nginx.js GATEWAY_URL
 */
import { startNginxCache } from '../test/helpers/nginx-cache.js';

const [upstream] = process.argv.slice(2);
if (upstream === undefined) {
  console.error('usage: lazy-nginx.js GATEWAY_URL');
  process.exit(2);
}
const nginx = await startNginxCache(upstream);
const stop = (): void => {
  void nginx.stop().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
console.log(JSON.stringify({ url: nginx.url, pid: nginx.pid }));
