/**
 * A timer that ends early when its signal aborts. The one shared wait of the
 * proxy's own code (start-up retries, re-holding a refused request, kube
 * waits); the timer is always cleared, so nothing leaks past an abort.
 *
 * @module
 */

/**
 * Resolves after `ms`, or as soon as `signal` aborts (never rejects).
 *
 * @example
 * ```ts
 * import { delay } from "./delay.ts";
 * await delay(1, AbortSignal.timeout(1000));
 * ```
 */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
