// Entry point of the comparison consumers, run in a child process of their own so that they start
// as fresh as the worker does:
//   node bench/build/bench/consumer-main.js decode|del URL SLOT PUBLICATION EXPECTED [REDIS_URL]
//   node bench/build/bench/consumer-main.js live URL SLOT PUBLICATION MARKER_ID
// Prints one JSON line: the ConsumeResult ({ changes, seconds, process }), or for `live` the latency
// summary (ms) from each row's `t` (µs since the epoch, set by the UPDATE) to its change decoded here.
import { Redis } from 'ioredis';
import { nowUs, summariseMs } from './percentiles.js';
import { consume } from './replication-consumer.js';

async function main(): Promise<void> {
  const [mode, url, slot, publication, expectedText, redisUrl] = process.argv.slice(2);
  if (mode === 'live' && url && slot && publication && expectedText) {
    const marker = expectedText;
    const latencies: number[] = [];
    const timeoutMs = Number(process.env['BENCH_TIMEOUT_MS'] || 600_000);
    await consume({
      url,
      slot,
      publication,
      expected: Number.MAX_SAFE_INTEGER,
      timeoutMs,
      observe: (change) => {
        const at = nowUs();
        const row = change.after;
        if (row?.['id'] === marker) return true;
        const t = row?.['t'];
        if (typeof t === 'string') latencies.push((at - Number(t)) / 1000);
        return false;
      },
    });
    process.stdout.write(`${JSON.stringify(summariseMs(latencies))}\n`);
    return;
  }
  if ((mode !== 'decode' && mode !== 'del') || !url || !slot || !publication || !expectedText) {
    throw new Error('usage: consumer-main.js decode|del URL SLOT PUBLICATION EXPECTED [REDIS_URL]');
  }
  const expected = Number(expectedText);
  const timeoutMs = Number(process.env['BENCH_TIMEOUT_MS'] || 600_000);
  if (mode === 'decode') {
    const result = await consume({ url, slot, publication, expected, timeoutMs });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  if (!redisUrl) throw new Error('del needs REDIS_URL');
  const redis = new Redis(redisUrl);
  try {
    const result = await consume({
      url,
      slot,
      publication,
      expected,
      timeoutMs,
      // The naive consumer: one DEL per change, each awaited before the next.
      handle: (change) => redis.del(`item:${(change.after ?? change.before)?.['id']}`),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
