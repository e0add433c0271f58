/**
 * Time as the scaler's driver sees it: a `Clock` interface with the real
 * clock for production and `FakeClock` for tests, whose `advance(ms)` fires
 * due timers synchronously, in order, with `now()` set to each timer's time.
 *
 * @module
 */

/** An opaque timer handle. */
export type TimerHandle = unknown;

/** Wall time (ms since epoch) and one-shot timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The real clock: `Date.now()` and the runtime's timers.
 *
 * @example
 * ```ts
 * import { realClock } from "./clock.ts";
 * const handle = realClock.setTimeout(() => {}, 10);
 * realClock.clearTimeout(handle);
 * realClock.now() > 0; // true
 * ```
 */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms)),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * A clock for tests: time only moves when the test calls `advance` or `set`;
 * timers fire synchronously, earliest first (ties in creation order).
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * const clock = new FakeClock(1_000);
 * const fired: number[] = [];
 * clock.setTimeout(() => fired.push(clock.now()), 500);
 * clock.advance(1_000);
 * fired; // [1500]
 * clock.now(); // 2000
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, { at: number; seq: number; fn: () => void }>();

  /** Starts at `start` ms since the epoch (default 1,700,000,000,000). */
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  /** Current fake time. */
  now(): number {
    return this.#now;
  }

  /** Registers a timer due at now + ms. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = ++this.#seq;
    this.#timers.set(handle, { at: this.#now + Math.max(0, ms), seq: handle, fn });
    return handle;
  }

  /** Removes a timer. */
  clearTimeout(handle: TimerHandle): void {
    if (typeof handle === "number") this.#timers.delete(handle);
  }

  /** Number of timers not fired yet. */
  pending(): number {
    return this.#timers.size;
  }

  /** Time of the earliest pending timer, or null. */
  nextAt(): number | null {
    let best: number | null = null;
    for (const t of this.#timers.values()) if (best === null || t.at < best) best = t.at;
    return best;
  }

  /** Moves time forward by `ms`, firing every timer that falls due (timers set while firing included). */
  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  /** Moves time forward to `time` (never backwards), firing due timers in order. */
  set(time: number): void {
    for (;;) {
      let next: { handle: number; at: number; seq: number; fn: () => void } | null = null;
      for (const [handle, t] of this.#timers) {
        if (t.at <= time && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = { handle, ...t };
        }
      }
      if (!next) break;
      this.#timers.delete(next.handle);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = Math.max(this.#now, time);
  }
}
