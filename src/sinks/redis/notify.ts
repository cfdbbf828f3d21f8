import type { Redis } from 'ioredis';
import type { RedisPlan } from './plan.js';

/** What a batch invalidated, as published on the notify channel. */
export interface Invalidated {
  /** Full Redis key names (prefix included): deleted keys and version keys moved forward. */
  keys: readonly string[];
  /** Tag names as the rules render them (what applications pass to registerTags). */
  tags: readonly string[];
  /** The globs matched against full key names (prefix included, escaped). */
  patterns: readonly string[];
}

/** Keys + tags + patterns per message: keeps each PUBLISH small for every subscriber. */
export const ENTRIES_PER_MESSAGE = 1000;

/**
 * JSON messages `{"keys":[...],"tags":[...],"patterns":[...]}`, all three fields always present,
 * at most `maxEntries` entries in all per message. Nothing invalidated, no message.
 */
export function notificationMessages(invalidated: Invalidated, maxEntries = ENTRIES_PER_MESSAGE): string[] {
  const messages: string[] = [];
  let current: { keys: string[]; tags: string[]; patterns: string[] } = { keys: [], tags: [], patterns: [] };
  let size = 0;
  for (const field of ['keys', 'tags', 'patterns'] as const) {
    for (const entry of invalidated[field]) {
      if (size === maxEntries) {
        messages.push(JSON.stringify(current));
        current = { keys: [], tags: [], patterns: [] };
        size = 0;
      }
      current[field].push(entry);
      size++;
    }
  }
  if (size > 0) messages.push(JSON.stringify(current));
  return messages;
}

/** The notifications of a planned batch: its keys (deleted and bumped), tags and patterns. */
export function planNotifications(plan: RedisPlan): string[] {
  return notificationMessages({
    keys: [...plan.deletes, ...plan.bumpTo.map(([key]) => key), ...plan.increments],
    tags: plan.tags.map(({ tag }) => tag),
    patterns: plan.patterns,
  });
}

/** Sends every message, pipelined; rejects if any PUBLISH failed. */
export async function publishAll(client: Redis, channel: string, messages: readonly string[]): Promise<void> {
  await Promise.all(messages.map((message) => client.publish(channel, message)));
}
