/**
 * The composition root: the only place that reads the environment and argv, installs signal
 * handlers and decides the exit code. Everything else receives what it needs.
 */
import { readFileSync } from 'node:fs';
import { parseCliArgs, usageOf, USAGE, type ParsedArgs } from './cli-args.js';
import { loadConfig, type LoadedConfig } from './config/load.js';
import { LOG_LEVELS } from './config/schema.js';
import { runCheck } from './commands/check.js';
import { explainChange, explainRules } from './commands/explain.js';
import { teardown } from './commands/teardown.js';
import { ConfigError, formatProblem, InvalidatorError, RulesMismatchError, toError } from './errors.js';
import { createLogger } from './log.js';
import { buildLookups, buildWorker } from './main.js';
import type { LookupRunner } from './ports/lookups.js';

const EXIT_OK = 0;
const EXIT_RUNTIME = 1;
const EXIT_CONFIG = 2;

async function main(argv: string[]): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseCliArgs(argv);
  } catch (err) {
    process.stderr.write(`cdc-invalidator: ${toError(err).message}\n\n${USAGE}\n`);
    return EXIT_CONFIG;
  }
  if (args.version) {
    process.stdout.write(`${version()}\n`);
    return EXIT_OK;
  }
  if (args.help) {
    process.stdout.write(`${usageOf(args.command)}\n`);
    return EXIT_OK;
  }
  switch (args.command) {
    case null:
      process.stderr.write(`${USAGE}\n`);
      return EXIT_CONFIG;
    case 'validate':
      return validateCommand(args.config);
    case 'run':
      return runCommand(args.config);
    case 'explain':
      return explainCommand(args.config, args);
    case 'teardown':
      return teardownCommand(args.config, args.yes);
    case 'check': {
      const loaded = await load(args.config);
      if (loaded === null) return EXIT_CONFIG;
      const report = await runCheck(loaded);
      process.stdout.write(report.text);
      return report.exitCode;
    }
  }
}

/** The package's version, from its package.json (beside dist/ in a checkout and in the package). */
function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
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

async function teardownCommand(configPath: string, yes: boolean): Promise<number> {
  const loaded = await load(configPath);
  if (loaded === null) return EXIT_CONFIG;
  const source = loaded.config.source;
  if (source.kind !== 'postgres') {
    process.stderr.write('cdc-invalidator teardown: a debezium source creates nothing in the database; remove the connector in Kafka Connect\n');
    return EXIT_CONFIG;
  }
  const result = await teardown({ url: source.url, slot: source.slot, publication: source.publication, yes });
  (result.exitCode === 0 ? process.stdout : process.stderr).write(result.text);
  return result.exitCode;
}

async function explainCommand(configPath: string, args: ParsedArgs): Promise<number> {
  if (args.rule !== undefined && [args.table, args.op, args.before, args.after].some((v) => v !== undefined)) {
    process.stderr.write('cdc-invalidator explain: --rule prints rules; --table, --op, --before and --after explain one change: give one or the other\n');
    return EXIT_CONFIG;
  }
  const loaded = await load(configPath);
  if (loaded === null) return EXIT_CONFIG;
  if (args.rule !== undefined) {
    const printed = explainRules(loaded.rules, args.rule);
    if (!printed.ok) {
      process.stderr.write(`cdc-invalidator explain: ${printed.error}\n`);
      return EXIT_CONFIG;
    }
    process.stdout.write(printed.text);
    return EXIT_OK;
  }
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
  const level = process.env['LOG_LEVEL'] ?? config.log.level;
  const format = process.env['LOG_FORMAT'] ?? config.log.format;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    process.stderr.write(`cdc-invalidator: LOG_LEVEL ${JSON.stringify(level)} is not a log level (${LOG_LEVELS.join(', ')})\n`);
    return EXIT_CONFIG;
  }
  if (format !== 'json' && format !== 'pretty') {
    process.stderr.write(`cdc-invalidator: LOG_FORMAT ${JSON.stringify(format)} is not a log format (json, pretty)\n`);
    return EXIT_CONFIG;
  }
  const log = createLogger({ level, pretty: format === 'pretty' });
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
    const e = toError(err) as Error & { code?: string };
    const why =
      e.code === 'EADDRINUSE'
        ? `port ${config.http.port} on ${config.http.host} is in use by another process: set http.port to a free port (HTTP_PORT in the example config), or 0 for any`
        : e.code === 'EACCES'
          ? `port ${config.http.port} needs privileges this process lacks: use a port above 1023`
          : e.code === 'EADDRNOTAVAIL'
            ? `http.host ${config.http.host} is not an address of this machine`
            : e.message;
    log.fatal({ error: why, host: config.http.host, port: config.http.port }, 'cannot listen for http');
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
    logFailure(log, err, 'start failed');
    return EXIT_RUNTIME;
  }
  await worker.finished();
  await http.close();
  if (worker.error !== null) {
    logFailure(log, worker.error, 'stopped on error');
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

/**
 * A failure the user can act on (a wrong password, an unreachable host, a misconfigured server: the
 * worker's own errors, with a code) is one line, its stack only at debug level; anything else is
 * unexpected and keeps its stack.
 */
function logFailure(log: ReturnType<typeof createLogger>, err: unknown, message: string): void {
  const e = toError(err);
  if (e instanceof InvalidatorError) {
    log.fatal({ error: e.message, code: e.code }, message);
    log.debug({ err: e }, `${message}: stack`);
  } else {
    log.fatal({ err: e }, message);
  }
}
