import { commandOf } from './cli-args.js';

/**
 * V8 settings for `run`, applied by the CLI itself (cli.ts) so that the process a user starts gets
 * them, with or without the container image.
 *
 * --max-semi-space-size: V8 sizes the young generation from the machine's memory, up to 64 MB per
 * semi-space on a large host. The worker's young objects are short-lived (a change lives from its
 * decoding to its batch's acknowledgement), so a large young generation buys nothing but resident
 * memory and long scavenges: each one copies whatever happens to be alive, and the commits that
 * arrive meanwhile wait.
 *
 * --heap-growing-percent: after a full collection V8 lets the old generation grow to up to four
 * times what survived before the next one. A backlog keeps changes alive long enough to be
 * promoted, so most of that growth is garbage: with 50 %, a full collection comes sooner and the
 * resident size stays near the live data. bench/README.md has the measurements.
 */
export const RUN_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=50'];

/**
 * Set by the CLI on the process it re-executes, with the flags it added. Set by a user (to anything,
 * `off` say), it keeps node's own settings.
 */
export const NODE_FLAGS_ENV = 'CDC_INVALIDATOR_NODE_FLAGS';

/** The flags to restart node with: none for other commands, when applied already, or when the user set them. */
export function nodeFlagsToAdd(args: readonly string[], execArgv: readonly string[], env: Readonly<Record<string, string | undefined>>): string[] {
  if (commandOf(args) !== 'run' || args.includes('--help') || args.includes('-h') || env[NODE_FLAGS_ENV] !== undefined) return [];
  const given = [...execArgv, ...(env['NODE_OPTIONS'] ?? '').split(/\s+/)].map(flagName);
  return RUN_NODE_FLAGS.filter((flag) => !given.includes(flagName(flag)));
}

/** `--max_semi_space_size=4` and `--max-semi-space-size 4` name the same flag as `--max-semi-space-size=2`. */
function flagName(arg: string): string {
  return arg.split('=')[0]!.replaceAll('_', '-');
}
