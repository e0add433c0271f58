/**
 * Backoff with jitter for idempotent Kubernetes calls: retries only
 * {@link UnavailableError} (5xx, 429, network), never past the deadline.
 *
 * @module
 */
import { toKubeError, UnavailableError } from "./errors.ts";

/** Options of {@link retryUnavailable} and {@link sleep}. */
export interface RetryOptions {
  /** Stops retrying (and sleeping) when aborted. */
  signal?: AbortSignal;
  /** Absolute time (ms since epoch) after which no new attempt starts. */
  deadline?: number;
  /** Most attempts in all (default: until the deadline when one is given, else 6). */
  attempts?: number;
  /** First backoff in ms (default 50), doubled each time up to `maxDelayMs`. */
  minDelayMs?: number;
  /** Longest backoff in ms (default 1000). */
  maxDelayMs?: number;
}

/**
 * Sleeps `ms`, rejecting with the signal's reason when it aborts first. The
 * timer is always cleared, so tests with sanitizers stay clean.
 *
 * @example
 * ```ts
 * import { sleep } from "./retry.ts";
 * await sleep(1);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A backoff delay for attempt `n` (0-based): exponential, capped, with
 * "equal jitter" (half fixed, half random) so retries from many callers spread.
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./retry.ts";
 * const d = backoffDelay(0, 50, 1000); // between 25 and 50
 * ```
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number): number {
  const base = Math.min(maxMs, minMs * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

/**
 * Runs `call`, retrying on {@link UnavailableError} with backoff and jitter
 * while attempts and the deadline allow; other errors (typed by
 * `toKubeError`) are thrown at once.
 *
 * @example
 * ```ts
 * import { retryUnavailable } from "./retry.ts";
 * let n = 0;
 * const value = await retryUnavailable(() => {
 *   if (n++ < 1) throw { code: 503, body: '{"message":"busy"}' };
 *   return Promise.resolve("ok");
 * }, { minDelayMs: 1 });
 * // value === "ok"
 * ```
 */
export async function retryUnavailable<T>(call: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? (options.deadline !== undefined ? Infinity : 6);
  const minDelay = options.minDelayMs ?? 50;
  const maxDelay = options.maxDelayMs ?? 1000;
  for (let attempt = 0;; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const kubeError = toKubeError(error);
      if (!(kubeError instanceof UnavailableError) || attempt + 1 >= attempts) throw kubeError;
      const delay = backoffDelay(attempt, minDelay, maxDelay);
      if (options.deadline !== undefined && Date.now() + delay >= options.deadline) throw kubeError;
      await sleep(delay, options.signal);
    }
  }
}
