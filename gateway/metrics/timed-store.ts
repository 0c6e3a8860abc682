/**
 * The metadata store with every operation timed into the gateway's metrics (store latency by
 * operation), whichever store it is: a wrapper, so the SQLite and MongoDB stores stay as they are.
 */
import type { ImageStore } from '../store/image-store.js';
import type { GatewayMetrics } from './gateway-metrics.js';

export function timedStore(store: ImageStore, metrics: GatewayMetrics): ImageStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const member: unknown = Reflect.get(target, property, receiver);
      if (typeof member !== 'function' || property === 'close') return member;
      return (...args: unknown[]) => {
        const start = performance.now();
        return Promise.resolve(member.apply(target, args) as unknown).finally(() =>
          metrics.storeOperation(String(property), (performance.now() - start) / 1000),
        );
      };
    },
  });
}
