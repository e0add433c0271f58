/**
 * Bounded waits shared by the tests: poll a condition until a deadline,
 * race a promise against one, or pause. No test sleeps to let time pass;
 * it waits on a condition with a deadline.
 *
 * @module
 */

/**
 * Polls `check` (bounded in count and time) until it returns a truthy value, and returns that value.
 *
 * @example
 * ```ts
 * import { waitUntil } from "./wait.ts";
 * await waitUntil(() => true, 1000, "nothing"); // true
 * ```
 */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  timeoutMs: number,
  what: string,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) break;
    await delay(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Rejects when `promise` does not settle within `ms`.
 *
 * @example
 * ```ts
 * import { within } from "./wait.ts";
 * await within(Promise.resolve(1), 100, "one"); // 1
 * ```
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves after `ms`.
 *
 * @example
 * ```ts
 * import { delay } from "./wait.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
