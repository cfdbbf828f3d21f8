import { TAG_STEP_SCRIPT, type ScriptCache } from './scripts.js';

/**
 * Deletes every member of a tag set and the set, in steps of at most `stepSize` members, each step
 * one atomic script call: a set of millions never blocks Redis or fills the client's memory.
 * Safe to run again after a failure at any point: it carries on with the members still in the set.
 * A member added while this runs is either popped by a later step or stays in the (new) set for
 * the next invalidation of the tag. Resolves to the number of steps taken.
 */
export async function invalidateTag(
  scripts: ScriptCache,
  setKey: string,
  stepSize: number,
  deleteCommand: 'del' | 'unlink',
  leasePrefix = '',
): Promise<number> {
  for (let steps = 1; ; steps++) {
    const popped = Number(await scripts.run(TAG_STEP_SCRIPT, [setKey], [stepSize, deleteCommand, leasePrefix]));
    if (popped < stepSize) return steps;
  }
}
