// One measured run: the worker with the run's settings, writers and both kinds of readers, a scenario-
// specific drive (pausing a synchronous standby, or just time), then quiescence, one more read of every
// hot key, and the count of stale keys per kind of client, recorded before the caller asserts on it.
import { performance } from 'node:perf_hooks';
import type { PostgresStandby } from '../harness/postgres-standby.js';
import { waitFor } from '../harness/wait-for.js';
import { percentile, Readers, Writers, type Write } from './load.js';
import { recordConsistency, type ClientFigures, type ConsistencyResult } from './results.js';
import { ConsistencyRig, WorkerExitedError, type RigOptions } from './rig.js';

export interface RunSpec extends Omit<ConsistencyResult, 'clients' | 'loadSeconds' | 'quiesceSeconds' | 'notes' | 'error'> {
  rig: RigOptions;
  /** The connection string readers' misses read from, given the run's database. */
  readUrl(database: string): string;
  /** Standbys that must have replayed everything before the check. */
  standbys: readonly PostgresStandby[];
  /** Wait for the worker's second pass over replicas (consistency.replicas) before the check. */
  replicaPass: boolean;
  /** Writers (half on each kind of client's rows) and the pause between two updates of one writer. */
  writers: number;
  writeIntervalMs: number;
  readersPerKind: number;
  readPauseMs: number;
  /** Runs the load: returns once it has asked the writers to stop. Returns notes for the record. */
  drive(ctx: { rig: ConsistencyRig; writers: Writers }): Promise<string>;
}

/**
 * Textbook cache-aside's own race, which no worker setting closes: the worker invalidated the row's
 * last write (its last invalidation of the key came after that update was sent), and the fill that left
 * the stale value read the row before that invalidation reached the test, so before it was applied,
 * and wrote it after (the value outlived the delete). An invalidation applied before the commit was
 * visible leaves a fill that read after it; a missing one leaves no invalidation after the last write:
 * neither is counted here.
 */
function readBeforeInvalidation(readers: Readers, rig: ConsistencyRig, writes: readonly Write[], id: number): boolean {
  const fill = readers.lastFill.get(id);
  const invalidated = rig.invalidatedAt.get(`item:${id}`);
  const lastWrite = writes.filter((w) => w.id === id).at(-1);
  if (fill === undefined || invalidated === undefined || lastWrite === undefined) return false;
  return invalidated > lastWrite.sentAt && fill.selectedAt < invalidated;
}

/** Runs the scenario and records its figures; throws only when it could not be measured. */
export async function runConsistency(spec: RunSpec): Promise<ConsistencyResult> {
  const { rig: rigOptions, readUrl, standbys, replicaPass, writers: writerCount, writeIntervalMs, readersPerKind, readPauseMs, drive, ...about } = spec;
  const rig = await ConsistencyRig.create(rigOptions);
  let readers: Readers | undefined;
  let writers: Writers | undefined;
  try {
    await rig.startWorker();
    // Readers of a replica need the test's database and rows there first (a busy machine can make a
    // replica with an apply delay take seconds to get them).
    for (const standby of standbys) await standby.waitForReplay();
    readers = new Readers({ redisUrl: rigOptions.redis.url(), prefix: rig.prefix, readUrl: readUrl(rig.database), ids: rig.ids, readersPerKind, pauseMs: readPauseMs });
    const perKind = writerCount / 2;
    const owned = (['cache-aside', 'lease client'] as const).flatMap((kind) =>
      Array.from({ length: perKind }, (_, j) => rig.ids[kind].filter((_, i) => i % perKind === j)),
    );
    const loadStart = performance.now();
    writers = Writers.start(rig.url, owned, writeIntervalMs);
    const notes = await drive({ rig, writers });
    await writers.stop();
    const writesEnd = performance.now();
    await rig.quiesce(standbys);
    if (replicaPass) await rig.waitForReplicaPass();
    const quiescent = performance.now();
    // Readers keep reading through quiescence; each key is read once more after it before the check.
    await waitFor(() => readers!.allReadSince(quiescent), {
      timeoutMs: 30_000,
      message: `every hot key to be read after quiescence (${readers.readErrors} reads failed${readers.lastReadError === null ? '' : `, the last with: ${readers.lastReadError}`})`,
    });
    await readers.stop();

    const clients: ClientFigures[] = [];
    for (const kind of ['cache-aside', 'lease client'] as const) {
      const ids = new Set(rig.ids[kind]);
      const writes = writers.writes.filter((w) => ids.has(w.id));
      const windows = readers.observations.windowsMs(writes);
      const stale = await rig.staleKeys(kind);
      const race = kind === 'cache-aside' ? stale.filter((s) => readBeforeInvalidation(readers!, rig, writes, s.id)) : [];
      const others = stale.filter((s) => !race.includes(s));
      clients.push({
        client: kind,
        keys: ids.size,
        staleKeys: others.length,
        staleSample: others.slice(0, 5).map((s) => s.text),
        ...(kind === 'cache-aside' ? { raceKeys: race.length, raceSample: race.slice(0, 5).map((s) => s.text) } : {}),
        ...readers.counts(kind),
        writes: writes.length,
        windowP50Ms: ms(percentile(windows, 0.5)),
        windowP99Ms: ms(percentile(windows, 0.99)),
        windowMaxMs: ms(percentile(windows, 1)),
        writesNeverSeen: windows.filter((w) => w === Infinity).length,
      });
    }
    const result: ConsistencyResult = {
      ...about,
      clients,
      loadSeconds: seconds(writesEnd - loadStart),
      quiesceSeconds: seconds(quiescent - writesEnd),
      notes: `${writerCount} writers, one update every ${writeIntervalMs} ms each; ${readersPerKind} readers per kind of client, ${readPauseMs} ms between reads; ${notes}`,
    };
    recordConsistency(result);
    console.log(`[consistency] ${about.id} ${about.scenario}, ${about.setting}: ${JSON.stringify(clients)}`);
    return result;
  } catch (err: unknown) {
    // A run that could not be measured says so in CONSISTENCY.md, rather than leave a former run's figures.
    recordConsistency({ ...about, clients: [], loadSeconds: 0, quiesceSeconds: 0, notes: '', error: whyNotMeasured(err) });
    if (err instanceof WorkerExitedError || !(err instanceof Error)) throw err;
    const tail = rig.workerOutput().trim().split('\n').slice(-20).join('\n');
    throw new Error(`${err.message}\n--- last lines of the worker's output ---\n${tail}`, { cause: err });
  } finally {
    await writers?.stop().catch(() => undefined);
    await readers?.stop().catch(() => undefined);
    await rig.close();
  }
}

function ms(value: number): number | 'never' {
  return value === Infinity ? 'never' : Math.round(value);
}

function seconds(msValue: number): number {
  return Math.round(msValue / 100) / 10;
}

function whyNotMeasured(err: unknown): string {
  if (err instanceof WorkerExitedError) return workerExitReason(err);
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 300);
}

/** The line of the worker's output that says why it stopped. */
function workerExitReason(err: WorkerExitedError): string {
  const lines = err.output.trim().split('\n');
  const line = lines.find((l) => /error|invalid|unknown|refus/i.test(l)) ?? lines.at(-1) ?? '';
  let text = line;
  try {
    const parsed = JSON.parse(line) as { msg?: string; err?: { message?: string } };
    text = [parsed.msg, parsed.err?.message].filter(Boolean).join(': ') || line;
  } catch {
    // not a JSON log line
  }
  // The config's temp dir says nothing to a reader of CONSISTENCY.md.
  return `the worker exited with ${err.code} at start: ${text.replace(/\S*\/(cdc-invalidator\.yaml)/g, '$1').slice(0, 300)}`;
}
