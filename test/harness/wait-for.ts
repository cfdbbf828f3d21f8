export interface WaitForOptions {
  /** Give up after this long. Default 10_000. */
  timeoutMs?: number;
  /** Pause between two calls of the predicate. Default 50. */
  intervalMs?: number;
  /** What was being waited for; the timeout error starts with it. */
  message?: string;
}

/**
 * Polls `predicate` until it returns something truthy and returns that value. A predicate that throws
 * counts as "not yet" (a server that is still starting refuses connections); the last such error is
 * attached as `cause` of the timeout error so a failing test shows why it never became true.
 * To stop waiting early on a condition that can never become true, throw an `AbortWaitError`.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const message = options.message ?? 'condition';
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (err: unknown) {
      if (err instanceof AbortWaitError) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${detail}`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}

/** Thrown by a predicate to end `waitFor` at once: the condition can no longer become true. */
export class AbortWaitError extends Error {
  override readonly name = 'AbortWaitError';
}
