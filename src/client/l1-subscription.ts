import type { Cluster, Redis } from 'ioredis';
import { L1Cache } from './l1.js';
import type { CacheErrorPhase, CacheOptions } from './options.js';

/** The L1 and the subscription that keeps it in step with the worker's notifications. */
export interface L1Subscription {
  readonly l1: L1Cache;
  /** Subscribed, so the L1 may be used. */
  readonly active: boolean;
  close(): Promise<void>;
}

export function subscribeL1(
  redis: Redis | Cluster,
  options: NonNullable<CacheOptions['l1']>,
  report: (err: unknown, during: CacheErrorPhase) => void,
): L1Subscription {
  const l1 = new L1Cache(options.maxEntries ?? 10_000, options.ttlMs ?? 1000);
  const channel = options.channel;
  const own = options.subscriber === undefined;
  // A cluster delivers a PUBLISH to subscribers on every node: one connection to any of them will do.
  const sub =
    options.subscriber ?? (redis.isCluster ? (redis as Cluster).duplicate([], { lazyConnect: true }) : (redis as Redis).duplicate({ autoResubscribe: false, lazyConnect: true }));
  let active = false;
  let closed = false;
  const subscribe = () => {
    sub.subscribe(channel).then(
      () => {
        // Whatever was published while we were not listening is lost: start empty.
        l1.clear();
        active = !closed;
      },
      (err: unknown) => report(err, 'subscribe'),
    );
  };
  const deactivate = () => {
    active = false;
    l1.clear();
  };
  sub.on('ready', subscribe);
  sub.on('close', deactivate);
  sub.on('end', deactivate);
  sub.on('error', (err: unknown) => report(err, 'subscribe'));
  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel) return;
    try {
      const parsed = JSON.parse(message) as { keys?: unknown; tags?: unknown; patterns?: unknown };
      const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
      l1.invalidate(list(parsed.keys), list(parsed.tags), list(parsed.patterns));
    } catch (err) {
      // A message we cannot read may have named any key.
      l1.clear();
      report(err, 'notification');
    }
  });
  if (sub.status === 'wait') sub.connect().catch((err: unknown) => report(err, 'subscribe'));
  else if (sub.status === 'ready') subscribe();

  return {
    l1,
    get active() {
      return active;
    },
    async close() {
      closed = true;
      active = false;
      l1.clear();
      if (own) sub.disconnect();
      else await sub.unsubscribe(channel).catch(() => undefined);
    },
  };
}
