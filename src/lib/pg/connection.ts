import pg from 'pg';
import { libpqConnectionString } from './sql.js';
import {
  InvalidatorError,
  SlotInUseError,
  SlotLostError,
  SourceSetupError,
  SourceUnavailableError,
  toError,
} from '../../errors.js';
import { sleep } from '../backoff.js';

/**
 * What the replication source uses of pg's internal Connection: the CopyData events of the
 * replication sub-protocol, raw CopyData writes, and the socket for backpressure. pg has no
 * public API for these; pg-logical-replication relies on the same members.
 */
export interface PgConnection {
  on(event: string, listener: (...args: never[]) => void): void;
  once(event: string, listener: () => void): void;
  removeAllListeners(event: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: { pause(): void; resume(): void; destroy(): void };
}

export function connectionOf(client: pg.Client): PgConnection {
  return (client as unknown as { connection: PgConnection }).connection;
}

/** Ends a client, waiting at most 2 s for the server to see the Terminate message. */
export async function endClient(client: pg.Client): Promise<void> {
  const gaveUp = new AbortController();
  const stream = (client as unknown as { connection?: PgConnection }).connection?.stream;
  try {
    // A socket paused for backpressure never reports its end: let it flow so the close completes.
    stream?.resume();
    await Promise.race([client.end(), sleep(2_000, gaveUp.signal)]);
  } catch {
    // The connection is gone either way.
  } finally {
    gaveUp.abort();
    // And if the server did not close it in time, close it here: whatever waits on this
    // connection (the replication query) must settle, or a stop would hang.
    stream?.destroy();
  }
}

/**
 * Opens a normal connection for a small side task (a snapshot check, a replica's position), named in
 * pg_stat_activity. Connection errors after connecting surface on the next query, not as events.
 */
export async function openClient(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: libpqConnectionString(url),
    application_name: applicationName,
    connectionTimeoutMillis: 5_000,
  } as pg.ClientConfig);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await endClient(client);
    throw err;
  }
  return client;
}

/** Maps driver errors to the worker's: what can be waited out, and what needs a person. */
export function classify(err: unknown): InvalidatorError {
  if (err instanceof InvalidatorError) return err;
  const e = toError(err);
  const code = (err as { code?: string }).code;
  if (code === '55006') return new SlotInUseError(e.message, err);
  // "can no longer get changes from replication slot": its WAL was removed (PostgreSQL 13+).
  if (code === '55000' && /can no longer get changes|cannot read from logical replication slot/.test(e.message)) {
    return new SlotLostError(`replication slot lost: ${e.message}`, err);
  }
  if (code === '42704') {
    return new SourceSetupError(`replication slot disappeared while streaming: ${e.message}`, err);
  }
  if (code === '28000' || code === '28P01' || code === '42501' || code === '3D000') {
    return new SourceSetupError(`database refused the worker: ${e.message}`, err);
  }
  // A certificate the connection refuses will be refused again: say what to change.
  if (code !== undefined && TLS_VERIFY_ERRORS.has(code)) {
    return new SourceSetupError(
      `the database's TLS certificate was not accepted (${code}): give its CA with sslrootcert=..., or use ` +
        'sslmode=require to encrypt without verifying the certificate',
      err,
    );
  }
  // Connection refused, reset, admin shutdown, recovery in progress: wait them out.
  return new SourceUnavailableError(`database unavailable: ${e.message}`, err);
}


const TLS_VERIFY_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
