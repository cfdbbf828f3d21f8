/**
 * The command line: one command, options before or after it, `--help` for any command, `--version`.
 * Pure (no I/O), so that every way to get it wrong is unit-tested.
 */
import { parseArgs } from 'node:util';

export const COMMANDS = ['run', 'validate', 'check', 'explain', 'teardown'] as const;
export type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  table: { type: 'string' },
  op: { type: 'string' },
  before: { type: 'string' },
  after: { type: 'string' },
  rule: { type: 'string' },
  yes: { type: 'boolean' },
} as const;

/** Options each command takes, beyond --config and --help. */
const COMMAND_OPTIONS: Record<Command, readonly string[]> = {
  run: [],
  validate: [],
  check: [],
  explain: ['table', 'op', 'before', 'after', 'rule'],
  teardown: ['yes'],
};

export interface ParsedArgs {
  command: Command | null;
  config: string;
  help: boolean;
  version: boolean;
  table?: string;
  op?: string;
  before?: string;
  after?: string;
  rule?: string;
  yes: boolean;
}

export const DEFAULT_CONFIG = './cdc-invalidator.yaml';

/** Parses argv (without node and the script); throws an Error whose message is for the user. */
export function parseCliArgs(argv: readonly string[]): ParsedArgs {
  const { values, positionals } = (() => {
    try {
      return parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    } catch (err) {
      throw new Error(readable(err instanceof Error ? err.message : String(err)));
    }
  })();
  const [name, ...extra] = positionals;
  const command = name === undefined || name === 'help' ? null : name;
  if (command !== null && !(COMMANDS as readonly string[]).includes(command)) {
    throw new Error(`unknown command "${command}" (commands: ${COMMANDS.join(', ')})`);
  }
  if (extra.length > 0) {
    throw new Error(`unexpected argument "${extra[0]}" after the command "${name}"${extra[0]!.startsWith('-') ? '' : ' (options start with --)'}`);
  }
  if (command !== null) {
    const allowed = COMMAND_OPTIONS[command as Command];
    for (const option of ['table', 'op', 'before', 'after', 'rule', 'yes'] as const) {
      if (values[option] !== undefined && !allowed.includes(option)) {
        throw new Error(`--${option} is not an option of "${command}"${option === 'yes' ? ' (it belongs to teardown)' : ' (it belongs to explain)'}`);
      }
    }
  }
  return {
    command: command as Command | null,
    config: values.config ?? DEFAULT_CONFIG,
    help: values.help === true || name === 'help',
    version: values.version === true,
    ...(values.table !== undefined ? { table: values.table } : {}),
    ...(values.op !== undefined ? { op: values.op } : {}),
    ...(values.before !== undefined ? { before: values.before } : {}),
    ...(values.after !== undefined ? { after: values.after } : {}),
    ...(values.rule !== undefined ? { rule: values.rule } : {}),
    yes: values.yes === true,
  };
}

/** The command of an argv without parsing it strictly: for the CLI's re-execution with node flags. */
export function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config' || arg === '-c' || arg === '--table' || arg === '--op' || arg === '--before' || arg === '--after' || arg === '--rule') {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return arg;
  }
  return undefined;
}

/** node:util's messages, in the CLI's words. */
function readable(message: string): string {
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown option ${unknown[1]} (options: --config FILE, --help, --version; explain: --table --op --before --after, or --rule; teardown: --yes)`;
  const missing = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(message);
  if (missing) return `${missing[1]} needs a value`;
  return message;
}

const ENVIRONMENT = `environment:
  LOG_LEVEL    overrides log.level (fatal, error, warn, info, debug, trace, silent)
  LOG_FORMAT   overrides log.format (json, pretty)
  \${NAME} and \${NAME:-default} in the config file are replaced by environment variables; the example
  config reads DATABASE_URL, REDIS_URL and HTTP_PORT that way`;

const EXIT_CODES = `exit codes:
  0  done (run: stopped by SIGTERM or SIGINT; check: nothing failed)
  1  a runtime failure (run: the database or Redis refused, the worker failed; check: a check failed)
  2  a mistake in the command line, the config or the mapping files (nothing was started)`;

export const USAGE = `usage: cdc-invalidator <command> [--config FILE] [options]

commands:
  run        run the worker until SIGTERM or SIGINT
  validate   check the config and every mapping file, offline
  check      check the database (or Kafka topics) and Redis against the config and mappings, online
  explain    print the key operations one change would produce
  teardown   drop the replication slot and the publication the worker created (--yes)

options:
  -c, --config FILE   the config file (default ${DEFAULT_CONFIG})
  -h, --help          this text; after a command, that command's usage
  -V, --version       the version

${ENVIRONMENT}

${EXIT_CODES}`;

const COMMAND_USAGE: Record<Command, string> = {
  run: `usage: cdc-invalidator run [--config FILE]

Runs the worker: streams the database's committed changes (or reads Debezium events), deletes or bumps
the keys the mapping files name, and acknowledges each batch only once Redis applied it. Creates the
replication slot and the publication when missing. Stops on SIGTERM or SIGINT (a second one forces it).
HTTP endpoints /healthz, /readyz, /metrics and /status listen on http.port.`,
  validate: `usage: cdc-invalidator validate [--config FILE]

Reads the config and every mapping file and reports each problem with its file, line and column.
Connects to nothing.`,
  check: `usage: cdc-invalidator check [--config FILE]

Connects to the database and Redis as the config says and checks what the worker needs: server
settings, the role's privileges, the slot and publication, each mapped table and its replica identity,
the lookups, Redis' version, mode, replicas and scripts, and that the HTTP port is free. For a
debezium source, reads the last messages of its topics instead of the database and says which connector
and tables each carries and whether the rules map them. Changes nothing.`,
  explain: `usage: cdc-invalidator explain [--config FILE] --table T --op insert|update|delete|truncate [--before JSON] [--after JSON]
       cdc-invalidator explain [--config FILE] --rule FILE[#rules[N]]|all

Prints the key operations one change would produce under the mapping files, and why. Lookups run
against source.url when a rule has them. With --rule, prints the rules of a mapping file (or one of
them, or all) in mapping syntax, each query rule as the table rules derived from it.`,
  teardown: `usage: cdc-invalidator teardown [--config FILE] --yes

Drops the replication slot and the publication named in the config (a slot left behind keeps WAL on
the server for ever). Without --yes it only says what it would drop.`,
};

export function usageOf(command: Command | null): string {
  if (command === null) return USAGE;
  return `${COMMAND_USAGE[command]}\n\noptions:\n  -c, --config FILE   the config file (default ${DEFAULT_CONFIG})\n\n${ENVIRONMENT}\n\n${EXIT_CODES}`;
}
