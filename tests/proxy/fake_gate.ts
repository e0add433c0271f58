/**
 * A Gate for proxy tests whose answers the test controls: which models are
 * warm (tryAcquire grants at once), when held requests are granted or
 * rejected, and a record of every call and release.
 *
 * @module
 */
import type { Gate, Lease, ModelStatus, ScalerStatus } from "../../lib/scaler/types.ts";
import { Rejection } from "../../lib/scaler/types.ts";

/** A held acquire. */
interface Held {
  model: string;
  resolve: (lease: Lease) => void;
  reject: (error: unknown) => void;
  at: number;
}

/**
 * The fake gate.
 *
 * @example
 * ```ts
 * import { FakeGate } from "./fake_gate.ts";
 * const gate = new FakeGate("http://127.0.0.1:1");
 * gate.warm.add("a");
 * gate.tryAcquire("a")?.upstream; // "http://127.0.0.1:1"
 * ```
 */
export class FakeGate implements Gate {
  /** Models for which tryAcquire grants a lease. */
  readonly warm = new Set<string>();
  /** Model keys passed to tryAcquire / acquire, in order. */
  readonly tryCalls: string[] = [];
  readonly acquireCalls: string[] = [];
  readonly loadCalls: string[] = [];
  unloadCalls = 0;
  /** The model of each unload (null: all). */
  unloadModels: (string | null)[] = [];
  /** Models of each sleep call. */
  sleepCalls: string[] = [];
  /** What sleep does (default: resolve). */
  sleepResult: () => Promise<void> = () => Promise.resolve();
  /** Leases issued and released. */
  issued = 0;
  released = 0;
  /** Requests held right now. */
  readonly held: Held[] = [];
  /** Status answered by modelStatus. */
  readonly statuses = new Map<string, ModelStatus>();
  /** What load/unload do (default: resolve). */
  loadResult: () => Promise<void> = () => Promise.resolve();
  unloadResult: () => Promise<void> = () => Promise.resolve();
  /** activeModel reported by status(). */
  activeModel: string | null = null;
  #waiters: (() => void)[] = [];
  #releaseWaiters: (() => void)[] = [];

  constructor(public upstream: string) {}

  /** A lease that counts its releases (only the first counts). */
  lease(model: string, heldMs = 0): Lease {
    this.issued++;
    let done = false;
    return {
      model,
      upstream: this.upstream,
      heldMs,
      release: () => {
        if (done) return;
        done = true;
        this.released++;
        this.#wake(this.#releaseWaiters);
      },
    };
  }

  tryAcquire(model: string): Lease | null {
    this.tryCalls.push(model);
    return this.warm.has(model) ? this.lease(model) : null;
  }

  acquire(model: string, options: { signal: AbortSignal }): Promise<Lease> {
    this.acquireCalls.push(model);
    return new Promise<Lease>((resolve, reject) => {
      const entry: Held = { model, resolve, reject, at: Date.now() };
      const onAbort = () => {
        const i = this.held.indexOf(entry);
        if (i >= 0) this.held.splice(i, 1);
        reject(options.signal.reason);
      };
      if (options.signal.aborted) return onAbort();
      options.signal.addEventListener("abort", onAbort, { once: true });
      entry.resolve = (lease) => {
        options.signal.removeEventListener("abort", onAbort);
        resolve(lease);
      };
      entry.reject = (error) => {
        options.signal.removeEventListener("abort", onAbort);
        reject(error);
      };
      this.held.push(entry);
      this.#wake(this.#waiters);
    });
  }

  /** Grants every held request (for `model`, or all). */
  grant(model?: string): void {
    for (const entry of [...this.held]) {
      if (model !== undefined && entry.model !== model) continue;
      this.held.splice(this.held.indexOf(entry), 1);
      entry.resolve(this.lease(entry.model, Date.now() - entry.at));
    }
  }

  /** Rejects every held request. */
  rejectAll(rejection: Rejection): void {
    for (const entry of this.held.splice(0)) entry.reject(rejection);
  }

  /** Resolves once `n` requests are held (bounded). */
  async waitHeld(n: number, timeoutMs = 3000): Promise<void> {
    await this.#waitFor(() => this.held.length >= n, this.#waiters, timeoutMs, `${n} held requests`);
  }

  /** Resolves once `n` leases were released (bounded). */
  async waitReleased(n: number, timeoutMs = 3000): Promise<void> {
    await this.#waitFor(() => this.released >= n, this.#releaseWaiters, timeoutMs, `${n} releases`);
  }

  async #waitFor(ok: () => boolean, list: (() => void)[], timeoutMs: number, what: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        (async () => {
          while (!ok()) await new Promise<void>((r) => list.push(r));
        })(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#wake(list);
    }
  }

  #wake(list: (() => void)[]): void {
    for (const w of list.splice(0)) w();
  }

  modelStatus(model: string): ModelStatus {
    return this.statuses.get(model) ?? (this.warm.has(model) ? "ready" : "cold");
  }

  status(): ScalerStatus {
    const held: Record<string, number> = {};
    for (const h of this.held) held[h.model] = (held[h.model] ?? 0) + 1;
    return {
      state: this.activeModel ? "ready" : "idle",
      activeModel: this.activeModel,
      nextModel: null,
      held,
      inflight: {},
      lastActivity: null,
      lastError: null,
      lastColdStartMs: null,
      lastSwitchMs: null,
      lastWakeMs: null,
      backend: { kind: "fake" },
      models: {},
      gpus: {},
      recent: [],
    };
  }

  load(model: string, _options: { signal: AbortSignal }): Promise<void> {
    this.loadCalls.push(model);
    return this.loadResult();
  }

  sleep(model: string, _options: { signal: AbortSignal }): Promise<void> {
    this.sleepCalls.push(model);
    return this.sleepResult();
  }

  unload(model: string | null, _options: { signal: AbortSignal }): Promise<void> {
    this.unloadCalls++;
    this.unloadModels.push(model);
    return this.unloadResult();
  }

  /** No acquire of any kind happened (nothing could wake the GPU). */
  get untouched(): boolean {
    return this.tryCalls.length === 0 && this.acquireCalls.length === 0;
  }
}

export { Rejection };
