/**
 * The scaler's driver: turns HTTP arrivals, backend results, timers and
 * shutdown into events, runs them one at a time through `decide`, and
 * executes the effects — backend calls (serialized, each with a deadline and
 * an AbortSignal), grants and rejections of waiting callers, the single
 * timer, logs and metrics. It implements the proxy's {@link Gate}.
 *
 * @module
 */
import type { Backend, Observed } from "../backend/types.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { type Clock, realClock, type TimerHandle } from "./clock.ts";
import { countByModel, decide, modelStatusOf } from "./decide.ts";
import {
  initialState,
  type ObservedEngine,
  type Policy,
  type PolicyConfig,
  policyFromConfig,
  type SchedulerEffect,
  type SchedulerEvent,
  type SchedulerState,
} from "./state.ts";
import { type Gate, type Lease, type LifecycleState, type ModelStatus, Rejection, type ScalerStatus } from "./types.ts";

/**
 * The model key used for every request in scale-only mode.
 *
 * @example
 * ```ts
 * import { SCALE_ONLY_KEY } from "./driver.ts";
 * SCALE_ONLY_KEY; // "*"
 * ```
 */
export const SCALE_ONLY_KEY = "*";

/** A lifecycle change, as given to `onTransition` listeners. */
export interface TransitionInfo {
  from: LifecycleState;
  to: LifecycleState;
  reason: string;
  model: string | null;
  durationMs: number;
}

/** What `createScaler` needs. */
export interface ScalerOptions {
  backend: Backend;
  registry: ModelRegistry;
  config: PolicyConfig;
  /** Defaults to the real clock. */
  clock?: Clock;
  log: Logger;
  metrics: Metrics;
  /** Scale-only mode: every request uses the key "*" and the backend is started with `null`. */
  scaleOnly: boolean;
}

/** The scaler: the proxy's {@link Gate} plus its own lifecycle. */
export interface Scaler extends Gate {
  /**
   * Reads the world back (retrying with backoff while the backend errors) and
   * continues from it. Resolves once the state is known (or on shutdown);
   * don't block the listener on it — requests are held meanwhile.
   */
  start(): Promise<void>;
  /** True once the world was read back (for /readyz); false again after shutdown. */
  ready(): boolean;
  /**
   * Refuses waiting and new requests with 503 `shutting_down`, aborts pending
   * backend waits and the timer. Does NOT stop the engine: the cluster state
   * is the truth and a restarted or sibling proxy continues from it.
   */
  shutdown(): Promise<void>;
  /** Calls `listener` on every lifecycle change; returns a function that unsubscribes. */
  onTransition(listener: (t: TransitionInfo) => void): () => void;
}

type Waiter =
  | {
    kind: "request";
    model: string;
    arrivedAt: number;
    signal: AbortSignal;
    onAbort: () => void;
    resolve: (lease: Lease) => void;
    reject: (err: unknown) => void;
  }
  | {
    kind: "admin";
    signal: AbortSignal;
    onAbort: () => void;
    resolve: () => void;
    reject: (err: unknown) => void;
  };

/**
 * Creates the scaler for one backend.
 *
 * @example
 * ```ts ignore
 * import { createScaler } from "./driver.ts";
 * const scaler = createScaler({ backend, registry, config, log, metrics, scaleOnly: false });
 * scaler.start(); // not awaited: /readyz reports scaler.ready()
 * const lease = scaler.tryAcquire("qwen3-8b") ?? await scaler.acquire("qwen3-8b", { signal: req.signal });
 * try {
 *   await fetch(lease.upstream + "/v1/chat/completions", { method: "POST", body });
 * } finally {
 *   lease.release();
 * }
 * ```
 */
export function createScaler(options: ScalerOptions): Scaler {
  return new ScalerDriver(options);
}

class ScalerDriver implements Scaler {
  readonly #backend: Backend;
  readonly #registry: ModelRegistry;
  readonly #config: ScalerOptions["config"];
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #scaleOnly: boolean;

  #state: SchedulerState;
  #queue: SchedulerEvent[] = [];
  #running = false;
  #seq = 0;
  #waiters = new Map<string, Waiter>();
  #warmId: string | null = null;
  #warmGranted = false;
  #timer: TimerHandle | null = null;
  #timerAt: number | null = null;
  #opController: AbortController | null = null;
  #chain: Promise<void> = Promise.resolve();
  #closing = new AbortController();
  #observing: Promise<void> | null = null;
  #started: Promise<void> | null = null;
  #listeners = new Set<(t: TransitionInfo) => void>();
  #unsubscribeRegistry: () => void;
  #gaugeHeld = new Map<string, number>();
  #gaugeInflight = new Map<string, number>();
  #activeLabel: string | null = null;

  constructor(options: ScalerOptions) {
    this.#backend = options.backend;
    this.#registry = options.registry;
    this.#config = options.config;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log.with({ component: "scaler" });
    this.#metrics = options.metrics;
    this.#scaleOnly = options.scaleOnly;
    this.#state = initialState(this.#policy(), this.#clock.now());
    this.#unsubscribeRegistry = this.#registry.onChange(() =>
      this.#dispatch({ type: "configure", policy: this.#policy() })
    );
    this.#backend.onFailure((reason) => {
      if (!this.#closing.signal.aborted) this.#dispatch({ type: "engineFailed", reason });
    });
  }

  // ---- Gate ----

  tryAcquire(model: string): Lease | null {
    const s = this.#state;
    if (this.#running || !s.observed || s.lifecycle !== "ready" || s.active !== model || s.shuttingDown) return null;
    const id = `w${++this.#seq}`;
    if (s.held.length === 0 && s.timerAt === null) {
      // Warm fast path: with nothing held and no timer armed, `decide` would only add the request to the in-flight
      // set and grant it (no other effect, no timer): do exactly that, without copying the state.
      addInflight(s, id, model);
      try {
        const lease = this.#lease(id, model, 0);
        this.#updateGauges();
        return lease;
      } catch {
        this.#dispatch({ type: "release", id });
        return null;
      }
    }
    this.#warmId = id;
    this.#warmGranted = false;
    this.#dispatch({ type: "request", id, model });
    this.#warmId = null;
    if (this.#warmGranted) {
      try {
        return this.#lease(id, model, 0);
      } catch {
        this.#dispatch({ type: "release", id });
        return null;
      }
    }
    this.#dispatch({ type: "cancel", id });
    return null;
  }

  acquire(model: string, options: { signal: AbortSignal }): Promise<Lease> {
    const { signal } = options;
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = `r${++this.#seq}`;
    return new Promise<Lease>((resolve, reject) => {
      const onAbort = () => {
        if (!this.#waiters.delete(id)) return;
        this.#dispatch({ type: "cancel", id });
        reject(signal.reason);
      };
      this.#waiters.set(id, { kind: "request", model, arrivedAt: this.#clock.now(), signal, onAbort, resolve, reject });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#dispatch({ type: "request", id, model });
    });
  }

  modelStatus(model: string): ModelStatus {
    return modelStatusOf(this.#state, model);
  }

  status(): ScalerStatus {
    const s = this.#state;
    const { held, inflight } = countByModel(s);
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    let backend: Record<string, unknown> = {};
    try {
      backend = this.#backend.describe();
    } catch (err) {
      backend = { error: errorMessage(err) };
    }
    return {
      state: s.lifecycle,
      activeModel: s.active,
      nextModel: s.next,
      held,
      inflight,
      lastActivity: iso(s.lastActivity),
      lastError: s.lastError && { model: s.lastError.model, reason: s.lastError.reason, at: iso(s.lastError.at)! },
      lastColdStartMs: s.lastColdStartMs,
      lastSwitchMs: s.lastSwitchMs,
      backend,
      stateReason: s.reason,
    };
  }

  load(model: string, options: { signal: AbortSignal }): Promise<void> {
    return this.#admin(options.signal, (id) => ({ type: "load", id, model }), true);
  }

  unload(options: { signal: AbortSignal }): Promise<void> {
    return this.#admin(options.signal, (id) => ({ type: "unload", id }), false);
  }

  // ---- lifecycle ----

  start(): Promise<void> {
    this.#started ??= this.#observe(this.#state.op);
    return this.#started;
  }

  ready(): boolean {
    return this.#state.observed && !this.#state.shuttingDown;
  }

  async shutdown(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#dispatch({ type: "shutdown" });
    this.#closing.abort(new Error("scaler shutting down"));
    this.#opController?.abort(new Error("scaler shutting down"));
    this.#setTimer(null);
    this.#unsubscribeRegistry();
    await this.#chain;
    await this.#observing;
  }

  onTransition(listener: (t: TransitionInfo) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- event loop ----

  #dispatch(event: SchedulerEvent): void {
    this.#queue.push(event);
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length) {
        const next = this.#queue.shift()!;
        const decision = decide(this.#state, next, this.#clock.now());
        this.#state = decision.state;
        for (const effect of decision.effects) {
          try {
            this.#execute(effect);
          } catch (err) {
            // One failing effect (a listener, a metric) must not stall the state machine.
            this.#log.error("scaler effect failed", { effect: effect.type, error: errorMessage(err) });
          }
        }
      }
    } finally {
      this.#running = false;
    }
    this.#updateGauges();
  }

  #execute(effect: SchedulerEffect): void {
    switch (effect.type) {
      case "grant":
        for (const id of effect.ids) this.#grant(id, effect.model);
        break;
      case "reject":
        this.#metrics.rejectedRequestsTotal.inc({ reason: effect.code }, effect.ids.length);
        for (const id of effect.ids) {
          const waiter = this.#take(id);
          waiter?.reject(new Rejection(effect.status, effect.code, effect.message, effect.retryAfter));
        }
        if (effect.status !== 429) {
          this.#log.warn("rejected", {
            count: effect.ids.length,
            status: effect.status,
            code: effect.code,
            message: effect.message,
          });
        }
        break;
      case "done":
        for (const id of effect.ids) {
          const waiter = this.#take(id);
          if (waiter?.kind === "admin") waiter.resolve();
        }
        break;
      case "schedule":
        this.#setTimer(effect.at);
        break;
      case "transition":
        this.#onTransition(effect);
        break;
      case "metric":
        if (effect.name === "coldStart") this.#metrics.coldStartSeconds.observe({}, effect.ms / 1000);
        else {
          this.#metrics.modelSwitchesTotal.inc({ from: effect.from ?? "", to: effect.to });
          this.#metrics.switchDurationSeconds.observe({}, effect.ms / 1000);
        }
        break;
      case "start":
      case "waitReady":
        this.#startEngine(effect);
        break;
      case "stop":
        this.#stopEngine(effect);
        break;
      case "observe":
        this.#observing = this.#observe(effect.op);
        break;
    }
  }

  #grant(id: string, model: string): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) {
      // tryAcquire's own request, or a request whose caller is already gone.
      if (id === this.#warmId) this.#warmGranted = true;
      else this.#dispatch({ type: "release", id });
      return;
    }
    this.#take(id);
    if (waiter.kind !== "request") return;
    if (waiter.signal.aborted) {
      // The client left as the grant arrived: it never reaches the engine.
      this.#dispatch({ type: "release", id });
      waiter.reject(waiter.signal.reason);
      return;
    }
    let lease: Lease;
    try {
      lease = this.#lease(id, model, Math.max(0, this.#clock.now() - waiter.arrivedAt));
    } catch (err) {
      this.#dispatch({ type: "release", id });
      waiter.reject(new Rejection(503, "model_unavailable", `no engine to forward to: ${errorMessage(err)}`, 5));
      return;
    }
    waiter.resolve(lease);
  }

  #take(id: string): Waiter | undefined {
    const waiter = this.#waiters.get(id);
    if (!waiter) return undefined;
    this.#waiters.delete(id);
    waiter.signal.removeEventListener("abort", waiter.onAbort);
    return waiter;
  }

  #lease(id: string, model: string, heldMs: number): Lease {
    let released = false;
    return {
      model,
      upstream: this.#backend.upstream(),
      heldMs,
      release: () => {
        if (released) return;
        released = true;
        this.#release(id);
      },
    };
  }

  /**
   * A lease's release. Fast path when, besides this one, requests are still in flight with nothing held and no
   * timer armed: `decide` would only remove it from the in-flight set and, for the active model, note the
   * activity (no other effect, no timer), so that is done without copying the state.
   */
  #release(id: string): void {
    const s = this.#state;
    const model = s.inflight.get(id);
    if (
      this.#running || model === undefined || s.inflight.size < 2 || !s.observed || s.lifecycle !== "ready" ||
      s.shuttingDown || s.held.length !== 0 || s.timerAt !== null
    ) {
      this.#dispatch({ type: "release", id });
      return;
    }
    removeInflight(s, id, model);
    if (model === s.active) s.lastActivity = this.#clock.now();
    this.#updateGauges();
  }

  #admin(signal: AbortSignal, event: (id: string) => SchedulerEvent, cancellable: boolean): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = `a${++this.#seq}`;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (!this.#waiters.delete(id)) return;
        // A load no longer forces the switch; an unload already under way continues.
        if (cancellable) this.#dispatch({ type: "cancel", id });
        reject(signal.reason);
      };
      this.#waiters.set(id, { kind: "admin", signal, onAbort, resolve, reject });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#dispatch(event(id));
    });
  }

  // ---- timer ----

  #setTimer(at: number | null): void {
    if (at === this.#timerAt) return;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = at;
    if (at === null || this.#closing.signal.aborted) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = null;
      this.#dispatch({ type: "tick" });
    }, Math.max(0, at - this.#clock.now()));
  }

  // ---- backend operations (one at a time; a newer one aborts the older) ----

  #runOp(
    what: string,
    run: (signal: AbortSignal) => Promise<void>,
    ok: () => SchedulerEvent,
    fail: (reason: string) => SchedulerEvent,
  ): void {
    this.#opController?.abort(new Error(`superseded by ${what}`));
    const controller = new AbortController();
    this.#opController = controller;
    this.#chain = this.#chain.then(async () => {
      if (controller.signal.aborted) return;
      let result: SchedulerEvent;
      try {
        await run(controller.signal);
        result = ok();
      } catch (err) {
        result = fail(errorMessage(err));
      }
      if (this.#opController === controller) this.#opController = null;
      // Results of superseded operations carry an old op: decide ignores them.
      this.#dispatch(result);
    });
  }

  #startEngine(effect: Extract<SchedulerEffect, { type: "start" | "waitReady" }>): void {
    const { op, model: key, deadline } = effect;
    const model = this.#scaleOnly ? null : this.#registry.resolve(key);
    if (effect.type === "start") {
      this.#metrics.scaleEventsTotal.inc({ direction: "up" });
      this.#metrics.replicas.set({}, 1);
    }
    this.#runOp(
      effect.type,
      (signal) => {
        if (model === undefined) return Promise.reject(new Error(`unknown model "${key}"`));
        return effect.type === "start"
          ? this.#backend.start(model, { signal, deadline })
          : this.#backend.waitReady(model, { signal, deadline });
      },
      () => ({ type: "started", op }),
      (reason) => ({ type: "startFailed", op, reason }),
    );
  }

  #stopEngine(effect: Extract<SchedulerEffect, { type: "stop" }>): void {
    const { op, reason, force, deadline } = effect;
    this.#metrics.scaleEventsTotal.inc({ direction: "down" });
    this.#runOp(
      "stop",
      async (signal) => {
        await this.#backend.stop({ signal, deadline, force, reason });
        this.#metrics.replicas.set({}, 0);
      },
      () => ({ type: "stopped", op }),
      (why) => ({ type: "stopFailed", op, reason: why }),
    );
  }

  async #observe(op: number): Promise<void> {
    const signal = this.#closing.signal;
    let delay = 500;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const observed = await this.#backend.observe(signal);
        if (signal.aborted) return;
        this.#metrics.replicas.set({}, observed.replicas);
        this.#dispatch({ type: "observed", op, engine: this.#engineOf(observed) });
        return;
      } catch (err) {
        if (signal.aborted) return;
        this.#log.warn("observe failed", { attempt, error: errorMessage(err), retryInMs: delay });
        await sleep(this.#clock, delay, signal);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  #engineOf(observed: Observed): ObservedEngine {
    const model = this.#scaleOnly ? SCALE_ONLY_KEY : observed.activeModel;
    return observed.reason === undefined
      ? { phase: observed.phase, model }
      : { phase: observed.phase, model, reason: observed.reason };
  }

  // ---- logs, metrics ----

  #onTransition(t: TransitionInfo): void {
    this.#log.info("state", { from: t.from, to: t.to, reason: t.reason, model: t.model, durationMs: t.durationMs });
    this.#metrics.setState(t.to);
    const label = t.to === "idle" ? null : this.#state.active ?? t.model;
    if (label !== this.#activeLabel) {
      if (this.#activeLabel !== null) this.#metrics.activeModel.set({ model: this.#activeLabel }, 0);
      if (label !== null) this.#metrics.activeModel.set({ model: label }, 1);
      this.#activeLabel = label;
    }
    for (const listener of this.#listeners) {
      try {
        listener({ from: t.from, to: t.to, reason: t.reason, model: t.model, durationMs: t.durationMs });
      } catch (err) {
        this.#log.error("transition listener failed", { error: errorMessage(err) });
      }
    }
  }

  #updateGauges(): void {
    const { held, inflight } = countByModel(this.#state);
    syncGauge(this.#metrics.heldRequests, this.#gaugeHeld, held);
    syncGauge(this.#metrics.inflightRequests, this.#gaugeInflight, inflight);
  }

  #policy(): Policy {
    const overrides: Record<string, { idleTimeout?: number; holdTimeout?: number; startTimeout?: number }> = {};
    for (const model of this.#registry.list()) overrides[model.name] = model;
    return policyFromConfig(this.#config, overrides);
  }
}

/** Sets the gauge only for models whose count changed since the last call (the hot path calls this). */
function syncGauge(
  gauge: Metrics["heldRequests"],
  last: Map<string, number>,
  counts: Record<string, number>,
): void {
  for (const model of last.keys()) {
    if (!(model in counts)) {
      gauge.set({ model }, 0);
      last.delete(model);
    }
  }
  for (const model in counts) {
    const n = counts[model];
    if (last.get(model) !== n) {
      gauge.set({ model }, n);
      last.set(model, n);
    }
  }
}

/** The state's in-flight collections are the driver's own (each decision returns new ones): updated in place. */
function addInflight(s: SchedulerState, id: string, model: string): void {
  (s.inflight as Map<string, string>).set(id, model);
  const byModel = s.inflightByModel as Record<string, number>;
  byModel[model] = (byModel[model] ?? 0) + 1;
}

function removeInflight(s: SchedulerState, id: string, model: string): void {
  (s.inflight as Map<string, string>).delete(id);
  const byModel = s.inflightByModel as Record<string, number>;
  const left = (byModel[model] ?? 1) - 1;
  if (left > 0) byModel[model] = left;
  else delete byModel[model];
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clock.clearTimeout(handle);
      resolve();
    };
    const handle = clock.setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
