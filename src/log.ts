import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** Paths whose values are never written: connection strings carry passwords. */
const REDACT = [
  'url',
  '*.url',
  'config.source.url',
  'config.redis.url',
  'config.redis.cluster',
  'config.redis.sentinel.nodes',
  'config.redis.sentinel.password',
  'password',
  '*.password',
  // ioredis puts the failed command on its errors: for AUTH, that is the password.
  'err.command.args',
  '*.err.command.args',
  'err.cause.command.args',
];

export function createLogger(options: { level: string; pretty?: boolean; destination?: NodeJS.WritableStream }): Logger {
  const destination = options.pretty
    ? pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' })
    : (options.destination ?? process.stdout);
  return pino(
    {
      level: options.level,
      base: { name: 'cdc-invalidator' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream,
  );
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Replaces the password in a connection URL, for messages that name the URL. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
