/**
 * The composition root: the only place that reads the environment and argv, installs signal
 * handlers and decides the exit code. Everything else receives what it needs.
 */
import { parseArgs } from 'node:util';
import { loadConfig, type LoadedConfig } from './config/load.js';
import { runCheck } from './commands/check.js';
import { explainChange } from './commands/explain.js';
import { ConfigError, formatProblem, RulesMismatchError, toError } from './errors.js';
import { createLogger } from './log.js';
import { buildLookups, buildWorker } from './main.js';
import type { LookupRunner } from './ports/lookups.js';

const EXIT_OK = 0;
const EXIT_RUNTIME = 1;
const EXIT_CONFIG = 2;

const USAGE = `usage: cdc-invalidator <command> [--config FILE]

commands:
  run        run the worker until SIGTERM or SIGINT
  validate   check the config and every mapping file, offline
  check      check the database and Redis against the config and mappings, online
  explain    print the key operations one change would produce:
             explain --table T --op insert|update|delete|truncate [--before JSON] [--after JSON]

--config defaults to ./cdc-invalidator.yaml`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? EXIT_CONFIG : EXIT_OK;
  }
  let args: ReturnType<typeof parseCommandArgs>;
  try {
    args = parseCommandArgs(rest);
  } catch (err) {
    process.stderr.write(`cdc-invalidator: ${toError(err).message}\n${USAGE}\n`);
    return EXIT_CONFIG;
  }
  const configPath = args.config ?? './cdc-invalidator.yaml';
  switch (command) {
    case 'validate':
      return validateCommand(configPath);
    case 'run':
      return runCommand(configPath);
    case 'explain':
      return explainCommand(configPath, args);
    case 'check': {
      const loaded = await load(configPath);
      if (loaded === null) return EXIT_CONFIG;
      if (loaded.config.source.kind !== 'postgres') {
        process.stderr.write('cdc-invalidator check: checks a postgres source; for a debezium source, check the connector in Kafka Connect\n');
        return EXIT_CONFIG;
      }
      const report = await runCheck(loaded);
      process.stdout.write(report.text);
      return report.exitCode;
    }
    default:
      process.stderr.write(`cdc-invalidator: unknown command "${command}"\n${USAGE}\n`);
      return EXIT_CONFIG;
  }
}

function parseCommandArgs(args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string', short: 'c' },
      table: { type: 'string' },
      op: { type: 'string' },
      before: { type: 'string' },
      after: { type: 'string' },
    },
  }).values;
}

/** Loads config and mappings; on failure prints every problem and returns null. */
async function load(configPath: string): Promise<LoadedConfig | null> {
  try {
    const loaded = await loadConfig(configPath, process.env);
    for (const w of loaded.warnings) process.stderr.write(`${formatProblem(w)}\n`);
    return loaded;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      const errors = err.problems.filter((p) => p.severity === 'error').length;
      process.stderr.write(`${errors} problem${errors === 1 ? '' : 's'} found\n`);
      return null;
    }
    throw err;
  }
}

async function validateCommand(configPath: string): Promise<number> {
  const loaded = await load(configPath);
  if (loaded === null) return EXIT_CONFIG;
  let rules = 0;
  for (const list of loaded.rules.byTable.values()) rules += list.length;
  process.stdout.write(
    `ok: ${loaded.configFile}, ${loaded.mappingFiles.length} mapping file(s), ${rules} rule(s) ` +
      `on ${loaded.rules.tables.length} table(s)\n`,
  );
  return EXIT_OK;
}

async function explainCommand(configPath: string, args: ReturnType<typeof parseCommandArgs>): Promise<number> {
  const loaded = await load(configPath);
  if (loaded === null) return EXIT_CONFIG;
  let runner: LookupRunner | undefined;
  const result = await explainChange(loaded.rules, args, async (requests) => {
    runner = buildLookups(loaded.config, createLogger({ level: 'silent' }));
    if (runner === undefined) return new Map(requests.map((r) => [r.id, { ok: false as const, message: 'no source.url to run lookups on' }]));
    return runner.run(requests.map((r) => ({ ...r, retries: 0 })));
  });
  await (runner as LookupRunner | undefined)?.close();
  if (!result.ok) {
    process.stderr.write(`cdc-invalidator explain: ${result.error}\n`);
    return EXIT_CONFIG;
  }
  process.stdout.write(result.text);
  return EXIT_OK;
}

async function runCommand(configPath: string): Promise<number> {
  const loaded = await load(configPath);
  if (loaded === null) return EXIT_CONFIG;
  const { config, rules } = loaded;
  const log = createLogger({
    level: process.env['LOG_LEVEL'] ?? config.log.level,
    pretty: (process.env['LOG_FORMAT'] ?? config.log.format) === 'pretty',
  });
  logProcessWarnings(log);
  const { worker, http } = buildWorker(loaded, log);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info({ signal }, 'stopping; send the signal again to force');
      void worker.stop();
    } else {
      log.warn({ signal }, 'forced stop');
      void worker.stop({ force: true });
      // Give the forced stop a moment to close sockets, then leave non-zero regardless.
      setTimeout(() => process.exit(EXIT_RUNTIME), 1_000).unref();
      process.exitCode = EXIT_RUNTIME;
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log.info(
    { config: loaded.configFile, mappingFiles: loaded.mappingFiles.length, tables: rules.tables.length },
    'starting',
  );
  // Up before the worker, so that probes see "starting" rather than a refused connection.
  try {
    await http.start();
  } catch (err) {
    log.fatal({ err: toError(err), host: config.http.host, port: config.http.port }, 'cannot listen for http');
    return EXIT_RUNTIME;
  }
  try {
    await worker.start();
  } catch (err) {
    await http.close();
    if (err instanceof RulesMismatchError) {
      // The mappings do not fit the database: a user's mistake to fix, reported like a config error.
      const placed = err.problems.map((p) => loaded.place(p));
      log.fatal({ problems: [...placed.map(formatProblem), ...err.refusals] }, 'the rules do not fit the database');
      for (const p of placed) process.stderr.write(`${formatProblem(p)}\n`);
      for (const r of err.refusals) process.stderr.write(`${r}\n`);
      const count = placed.length + err.refusals.length;
      process.stderr.write(`${count} problem${count === 1 ? '' : 's'} found: the worker did not start\n`);
      return EXIT_CONFIG;
    }
    log.fatal({ err: toError(err) }, 'start failed');
    return EXIT_RUNTIME;
  }
  await worker.finished();
  await http.close();
  if (worker.error !== null) {
    log.fatal({ err: worker.error }, 'stopped on error');
    return EXIT_RUNTIME;
  }
  log.info('stopped');
  return signals > 1 ? EXIT_RUNTIME : EXIT_OK;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything was closed; a client library that still holds a socket or a timer must not keep
    // a stopped worker alive.
    setTimeout(() => process.exit(code), 3_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`cdc-invalidator: ${toError(err).stack ?? toError(err).message}\n`);
    process.exitCode = EXIT_RUNTIME;
  },
);

/**
 * Node writes process warnings to stderr as plain text, which breaks a JSON log. They go through the
 * logger instead, except kafkajs' TimeoutNegativeWarning (it computes negative timer delays, which
 * Node 24 clamps to 1 ms and reports on every rebalance), which says nothing to an operator.
 */
function logProcessWarnings(log: ReturnType<typeof createLogger>): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.name === 'TimeoutNegativeWarning') return;
    log.warn({ warning: { name: warning.name, code: warning.code, message: warning.message } }, 'node warning');
  });
}
