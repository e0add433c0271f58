/**
 * A `Backend` for tests: every start, waitReady, sleep, wake and stop call is
 * recorded and stays pending until the test resolves or rejects it (or its
 * signal aborts); `observe` answers from a queue the test fills;
 * `fail(key, reason)` plays an engine dying on its own.
 *
 * @module
 */
import {
  type Backend,
  BackendError,
  type EngineLaunch,
  type Observed,
  type StartOptions,
  type WaitOptions,
} from "../../lib/backend/types.ts";

/** One recorded backend call. */
export interface FakeCall {
  kind: "start" | "waitReady" | "sleep" | "wake" | "stop";
  /** The engine's key ("*" in scale-only mode). */
  key: string;
  /** start/waitReady: the model's key, null in scale-only mode. */
  model?: string | null;
  /** start/waitReady: the GPUs it was placed on. */
  gpus?: string[];
  /** start/waitReady: with sleep mode. */
  sleepMode?: boolean;
  /** sleep/wake: the level. */
  level?: 1 | 2;
  force?: boolean;
  reason?: string;
  deadline: number;
  signal: AbortSignal;
  /** start/waitReady: tells the scheduler the world has no room for the engine yet (an unschedulable pod). */
  pending?: (reason: string) => void;
  /** "pending" until resolved, rejected or aborted. */
  outcome: "pending" | "resolved" | "rejected" | "aborted";
  /** Makes the call succeed. */
  resolve(): void;
  /** Makes the call fail with a BackendError of `kind`. */
  reject(message: string, kind?: string): void;
}

/**
 * The fake backend.
 *
 * @example
 * ```ts
 * import { FakeBackend } from "./fake_backend.ts";
 * const backend = new FakeBackend();
 * const signal = new AbortController().signal;
 * const done = backend.stop("a", { signal, deadline: Infinity, reason: "idle" });
 * backend.last("stop").resolve();
 * await done;
 * ```
 */
export class FakeBackend implements Backend {
  readonly kind = "process" as const;
  /** Every call, oldest first. */
  readonly calls: FakeCall[] = [];
  /** What `observe` returns next (Errors are thrown); when empty: absent. */
  readonly observations: (Observed | Error)[] = [];
  /** Number of observe calls. */
  observeCalls = 0;
  /** Number of operations running at once on one engine, at most (the driver must keep it at 1). */
  maxConcurrent = 0;
  #running = new Map<string, number>();
  #failureListeners: ((key: string, reason: string) => void)[] = [];
  #waiters: { kind: FakeCall["kind"]; count: number; resolve: () => void }[] = [];
  closed = false;

  observe(signal: AbortSignal): Promise<Observed> {
    this.observeCalls++;
    if (signal.aborted) return Promise.reject(signal.reason);
    const next = this.observations.shift() ?? { engines: [] };
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }

  start(launch: EngineLaunch, options: StartOptions): Promise<void> {
    return this.#call({ kind: "start", ...launchFields(launch), pending: options.onPending }, options);
  }

  waitReady(launch: EngineLaunch, options: StartOptions): Promise<void> {
    return this.#call({ kind: "waitReady", ...launchFields(launch), pending: options.onPending }, options);
  }

  sleep(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
    return this.#call({ kind: "sleep", key, level }, options);
  }

  wake(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
    return this.#call({ kind: "wake", key, level }, options);
  }

  stop(key: string, options: WaitOptions & { force?: boolean; reason: string }): Promise<void> {
    return this.#call({ kind: "stop", key, force: options.force ?? false, reason: options.reason }, options);
  }

  upstream(key: string): string {
    return `http://fake-engine-${key === "*" ? "any" : key}.invalid`;
  }

  onFailure(listener: (key: string, reason: string) => void): void {
    this.#failureListeners.push(listener);
  }

  describe(): Record<string, unknown> {
    return { kind: "fake", calls: this.calls.length };
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** Plays the engine of `key` dying while serving. */
  fail(key: string, reason: string): void {
    for (const listener of this.#failureListeners) listener(key, reason);
  }

  /** Calls of one kind. */
  callsOf(kind: FakeCall["kind"]): FakeCall[] {
    return this.calls.filter((c) => c.kind === kind);
  }

  /** The last call of `kind` (on engine `key` when given); throws when there is none. */
  last(kind: FakeCall["kind"], key?: string): FakeCall {
    const found = this.callsOf(kind).filter((c) => key === undefined || c.key === key).at(-1);
    if (!found) throw new Error(`no ${kind} call (calls: ${this.calls.map((c) => c.kind).join(", ") || "none"})`);
    return found;
  }

  /** Resolves once `count` calls of `kind` were made (bounded by `timeoutMs` of real time). */
  waitFor(kind: FakeCall["kind"], count = 1, timeoutMs = 2_000): Promise<FakeCall> {
    if (this.callsOf(kind).length >= count) return Promise.resolve(this.callsOf(kind)[count - 1]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for ${count} ${kind} call(s); got ${this.callsOf(kind).length}`));
      }, timeoutMs);
      const waiter = {
        kind,
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.callsOf(kind)[count - 1]);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #call(
    fields: Pick<FakeCall, "kind" | "key" | "model" | "gpus" | "sleepMode" | "level" | "force" | "reason" | "pending">,
    options: WaitOptions,
  ): Promise<void> {
    const running = (this.#running.get(fields.key) ?? 0) + 1;
    this.#running.set(fields.key, running);
    this.maxConcurrent = Math.max(this.maxConcurrent, running);
    return new Promise<void>((resolve, reject) => {
      const settle = (outcome: FakeCall["outcome"], err?: Error) => {
        if (call.outcome !== "pending") return;
        call.outcome = outcome;
        this.#running.set(fields.key, (this.#running.get(fields.key) ?? 1) - 1);
        options.signal.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => settle("aborted", new BackendError("aborted", `${fields.kind} aborted`));
      const call: FakeCall = {
        ...fields,
        deadline: options.deadline,
        signal: options.signal,
        outcome: "pending",
        resolve: () => settle("resolved"),
        reject: (message, kind = "failed") => settle("rejected", new BackendError(kind, message)),
      };
      this.calls.push(call);
      if (options.signal.aborted) onAbort();
      else options.signal.addEventListener("abort", onAbort, { once: true });
      for (const w of this.#waiters.slice()) {
        if (w.kind === fields.kind && this.callsOf(w.kind).length >= w.count) {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          w.resolve();
        }
      }
    });
  }
}

function launchFields(launch: EngineLaunch): Pick<FakeCall, "key" | "model" | "gpus" | "sleepMode"> {
  return { key: launch.key, model: launch.model?.name ?? null, gpus: launch.gpus, sleepMode: launch.sleepMode };
}
