/**
 * The scaler's driver: turns HTTP arrivals, backend results, timers and
 * shutdown into events, runs them one at a time through `decide`, and
 * executes the effects — backend operations (per engine: a newer operation
 * on an engine aborts its older one; different engines run concurrently;
 * each with a deadline and an AbortSignal), grants and rejections of waiting
 * callers, the single timer, logs and metrics. It implements the proxy's
 * {@link Gate}.
 *
 * @module
 */
import type { Backend, Observed } from "../backend/types.ts";
import type { NamedModel } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { type Clock, realClock, type TimerHandle } from "./clock.ts";
import { decide } from "./decide.ts";
import { activeModelOf, countByModel, gpuUsageOf, lifecycleOf, modelStatusOf } from "./views.ts";
import {
  addInflight,
  type InflightSets,
  initialState,
  isBusy,
  modelPolicy,
  type ModelTransition,
  type ObservedEngine,
  type Policy,
  type PolicyConfig,
  policyFromConfig,
  type PolicyModel,
  removeInflight,
  type SchedulerEffect,
  type SchedulerEvent,
  type SchedulerState,
  WHOLE_GPU,
} from "./state.ts";
import {
  type Gate,
  type GpuView,
  type Lease,
  type LifecycleState,
  type ModelStatus,
  type ModelView,
  type RecentOperation,
  Rejection,
  type ScalerStatus,
} from "./types.ts";

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

/** Recent operations kept for /admin/status and the dashboard. */
const RECENT_LIMIT = 20;

/** A change of the seed's single lifecycle, as given to `onTransition` listeners. */
export interface TransitionInfo {
  from: LifecycleState;
  to: LifecycleState;
  reason: string;
  model: string | null;
  durationMs: number;
}

/** A model's status change, as given to `onModelTransition` listeners. */
export type ModelTransitionInfo = Omit<ModelTransition, "type">;

/** What `createScaler` needs. */
export interface ScalerOptions {
  backend: Backend;
  registry: ModelRegistry;
  config: PolicyConfig & { defaultModel?: string };
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
   * backend waits and the timer. Does NOT stop engines: the world is the
   * truth and a restarted proxy continues from it.
   */
  shutdown(): Promise<void>;
  /** Calls `listener` on every change of the derived lifecycle; returns a function that unsubscribes. */
  onTransition(listener: (t: TransitionInfo) => void): () => void;
  /** Calls `listener` on every model status change; returns a function that unsubscribes. */
  onModelTransition(listener: (t: ModelTransitionInfo) => void): () => void;
  /**
   * Calls `listener` (no arguments, cheaply) after anything that may change the status (a decision, a warm
   * request or release); returns a function that unsubscribes.
   */
  onChange(listener: () => void): () => void;
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
  /** The operation in progress on each engine; a newer one aborts it. */
  #ops = new Map<string, AbortController>();
  #pending = new Set<Promise<void>>();
  #closing = new AbortController();
  #observing: Promise<void> | null = null;
  #started: Promise<void> | null = null;
  #listeners = new Set<(t: TransitionInfo) => void>();
  #modelListeners = new Set<(t: ModelTransitionInfo) => void>();
  #changeListeners = new Set<() => void>();
  #unsubscribeRegistry: () => void;
  #gaugeHeld = new Map<string, number>();
  #gaugeInflight = new Map<string, number>();
  #gaugeActive = new Set<string>();
  #gaugeGpu = new Map<string, number>();
  #recent: RecentOperation[] = [];
  #lastWake = new Map<string, number>();
  #lastColdStart = new Map<string, number>();
  /** Models whose `model_state` series exist. */
  #stateSeries = new Set<string>();
  /** Each model's last use, kept once its engine is gone (the engines' own values while they exist). */
  #lastUsed = new Map<string, number>();

  constructor(options: ScalerOptions) {
    this.#backend = options.backend;
    this.#registry = options.registry;
    this.#config = options.config;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log.with({ component: "scaler" });
    this.#metrics = options.metrics;
    this.#scaleOnly = options.scaleOnly;
    this.#state = initialState(this.#policy(), this.#clock.now());
    this.#unsubscribeRegistry = this.#registry.onChange(() => {
      this.#dispatch({ type: "configure", policy: this.#policy() });
      this.#seedStateSeries();
      this.#unloadRemoved();
    });
    this.#backend.onFailure((key, reason) => {
      if (!this.#closing.signal.aborted) this.#dispatch({ type: "engineFailed", model: key, reason });
    });
    this.#seedStateSeries();
    this.#syncGauges();
  }

  // ---- Gate ----

  tryAcquire(model: string): Lease | null {
    const s = this.#state;
    if (this.#running || !s.observed || s.shuttingDown || s.engines[model]?.status !== "ready") return null;
    const id = `w${++this.#seq}`;
    if (s.held.length === 0) {
      // Warm fast path: with nothing held, `decide` would only add the request to the in-flight set and grant it
      // (a timer armed for this engine's idle time may fire early: a tick re-arms it). Done without copying.
      addInflight(inflightSets(s), id, model);
      try {
        const lease = this.#lease(id, model, 0);
        this.#warm(model);
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
    const models: Record<string, ModelView> = {};
    const keys = this.#scaleOnly ? [SCALE_ONLY_KEY] : this.#registry.list().map((m) => m.name);
    for (const key of Object.keys(s.engines)) if (!keys.includes(key)) keys.push(key);
    for (const key of keys) {
      const e = s.observed ? s.engines[key] : undefined;
      models[key] = {
        status: modelStatusOf(s, key),
        gpus: e ? [...e.gpus] : [],
        share: (e?.share ?? (s.policy.models[key] ?? s.policy.defaults).share) / WHOLE_GPU,
        inflight: inflight[key] ?? 0,
        held: held[key] ?? 0,
        lastUsed: iso(e?.lastUsed ?? this.#lastUsed.get(key) ?? null),
        lastColdStartMs: this.#lastColdStart.get(key) ?? null,
        lastWakeMs: this.#lastWake.get(key) ?? null,
        error: s.errors[key]?.reason ?? null,
      };
    }
    const gpus: Record<string, GpuView> = {};
    for (const [id, usage] of Object.entries(gpuUsageOf(s))) {
      gpus[id] = { awakeShare: usage.awake / WHOLE_GPU, models: usage.models };
    }
    return {
      state: lifecycleOf(s),
      activeModel: activeModelOf(s),
      nextModel: Object.keys(s.plans)[0] ?? null,
      held,
      inflight,
      lastActivity: iso(s.lastActivity),
      lastError: s.lastError && { model: s.lastError.model, reason: s.lastError.reason, at: iso(s.lastError.at)! },
      lastColdStartMs: s.lastColdStartMs,
      lastSwitchMs: s.lastSwitchMs,
      lastWakeMs: s.lastWakeMs,
      backend,
      stateReason: s.reason,
      models,
      gpus,
      recent: [...this.#recent],
    };
  }

  load(model: string, options: { signal: AbortSignal }): Promise<void> {
    return this.#admin(options.signal, (id) => ({ type: "load", id, model }), true);
  }

  sleep(model: string, options: { signal: AbortSignal }): Promise<void> {
    return this.#admin(options.signal, (id) => ({ type: "sleep", id, model }), false);
  }

  unload(model: string | null, options: { signal: AbortSignal }): Promise<void> {
    return this.#admin(options.signal, (id) => ({ type: "unload", id, model }), false);
  }

  // ---- lifecycle ----

  start(): Promise<void> {
    this.#started ??= this.#observe(this.#state.observeOp);
    return this.#started;
  }

  ready(): boolean {
    return this.#state.observed && !this.#state.shuttingDown;
  }

  async shutdown(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#dispatch({ type: "shutdown" });
    this.#closing.abort(new Error("scaler shutting down"));
    for (const controller of this.#ops.values()) controller.abort(new Error("scaler shutting down"));
    this.#setTimer(null);
    this.#unsubscribeRegistry();
    await Promise.all([...this.#pending]);
    await this.#observing;
  }

  onTransition(listener: (t: TransitionInfo) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onModelTransition(listener: (t: ModelTransitionInfo) => void): () => void {
    this.#modelListeners.add(listener);
    return () => this.#modelListeners.delete(listener);
  }

  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
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
    this.#afterDecisions();
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
          waiter?.reject(new Rejection(effect.status, effect.code, effect.message, effect.retryAfter, effect.detail));
        }
        if (effect.status !== 429 && effect.status !== 409) {
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
        this.#onModelTransition(effect);
        break;
      case "lifecycle":
        this.#onLifecycle(effect);
        break;
      case "metric":
        this.#onMetric(effect);
        break;
      case "start":
      case "waitReady":
        this.#startEngine(effect);
        break;
      case "sleep":
        this.#run(
          effect.model,
          effect.op,
          (signal) => this.#backend.sleep(effect.model, effect.level, { signal, deadline: effect.deadline }),
          {
            ok: { type: "slept", model: effect.model, op: effect.op },
            fail: (reason) => ({ type: "sleepFailed", model: effect.model, op: effect.op, reason }),
          },
        );
        break;
      case "wake":
        this.#run(
          effect.model,
          effect.op,
          (signal) => this.#backend.wake(effect.model, effect.level, { signal, deadline: effect.deadline }),
          {
            ok: { type: "woke", model: effect.model, op: effect.op },
            fail: (reason) => ({ type: "wakeFailed", model: effect.model, op: effect.op, reason }),
          },
        );
        break;
      case "stop":
        this.#metrics.scaleEventsTotal.inc({ direction: "down" });
        this.#run(effect.model, effect.op, (signal) =>
          this.#backend.stop(effect.model, {
            signal,
            deadline: effect.deadline,
            force: effect.force,
            reason: effect.reason,
          }), {
          ok: { type: "stopped", model: effect.model, op: effect.op },
          fail: (reason) => ({ type: "stopFailed", model: effect.model, op: effect.op, reason }),
        });
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
      this.#log.warn("no engine to forward to", { model, error: errorMessage(err) });
      waiter.reject(new Rejection(503, "model_unavailable", `model "${model}" has no engine to forward to`, 5));
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
      upstream: this.#backend.upstream(model),
      heldMs,
      release: () => {
        if (released) return;
        released = true;
        this.#release(id);
      },
    };
  }

  /**
   * A lease's release. Fast path while the engine keeps other requests in flight and nothing is held: `decide`
   * would only remove it from the in-flight set and note the engine's activity (no other effect, no timer
   * change), so that is done without copying the state.
   */
  #release(id: string): void {
    const s = this.#state;
    const model = s.inflight.get(id);
    const engine = model === undefined ? undefined : s.engines[model];
    if (
      this.#running || model === undefined || engine?.status !== "ready" || !s.observed || s.shuttingDown ||
      s.held.length !== 0
    ) {
      this.#dispatch({ type: "release", id });
      return;
    }
    const now = this.#clock.now();
    const last = (s.inflightByModel[model] ?? 0) < 2;
    let idleAt = 0;
    if (last) {
      // The engine's last request: `decide` would also start its idle clock (re-arm the timer for sleepAfter or
      // idleTimeout from now). Done here when nothing else can be due: nothing waits for room, no admin operation,
      // no deadline already passed, the engine not busy and its idle time not zero.
      const policy = modelPolicy(s.policy, model);
      idleAt = now +
        (policy.sleepAfter !== null && policy.sleepAfter < policy.idleTimeout ? policy.sleepAfter : policy.idleTimeout);
      if (
        isBusy(engine) || idleAt <= now || s.admin.length !== 0 || (s.timerAt !== null && s.timerAt <= now) ||
        hasPlans(s)
      ) {
        this.#dispatch({ type: "release", id });
        return;
      }
    }
    removeInflight(inflightSets(s), id, model);
    (engine as { lastUsed: number }).lastUsed = now;
    (s as { lastActivity: number | null }).lastActivity = now;
    // An earlier timer stays armed: when it fires, `decide` arms it again for what is then due.
    if (last && (s.timerAt === null || s.timerAt > idleAt)) {
      (s as { timerAt: number | null }).timerAt = idleAt;
      this.#setTimer(idleAt);
    }
    this.#warm(model);
  }

  #admin(signal: AbortSignal, event: (id: string) => SchedulerEvent, cancellable: boolean): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = `a${++this.#seq}`;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (!this.#waiters.delete(id)) return;
        // A load no longer forces room; a sleep or unload already under way continues.
        if (cancellable) this.#dispatch({ type: "cancel", id });
        reject(signal.reason);
      };
      this.#waiters.set(id, { kind: "admin", signal, onAbort, resolve, reject });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#dispatch(event(id));
    });
  }

  /**
   * Per-model layout: the engine of a model removed from the config or the VLLMModel objects is drained and
   * stopped (its Deployment scaled to 0, never deleted); nothing can request it any more.
   */
  #unloadRemoved(): void {
    if (this.#scaleOnly || this.#config.backend !== "kubernetes" || this.#config.layout !== "per-model") return;
    for (const [key, engine] of Object.entries(this.#state.engines)) {
      if (engine.status === "stopping" || this.#registry.resolve(key)?.name === key) continue;
      this.#log.info("model removed: unloading its engine", { model: key });
      this.#dispatch({ type: "unload", id: `u${++this.#seq}`, model: key });
    }
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

  // ---- backend operations (per engine; a newer one aborts the older) ----

  #run(
    key: string,
    op: number,
    run: (signal: AbortSignal) => Promise<void>,
    answer: { ok: SchedulerEvent; fail: (reason: string) => SchedulerEvent },
  ): void {
    this.#ops.get(key)?.abort(new Error(`superseded by op ${op}`));
    const controller = new AbortController();
    this.#ops.set(key, controller);
    const task = (async () => {
      let result: SchedulerEvent;
      try {
        await run(controller.signal);
        result = answer.ok;
      } catch (err) {
        result = answer.fail(errorMessage(err));
      }
      if (this.#ops.get(key) === controller) this.#ops.delete(key);
      // Results of superseded operations carry an old op: decide ignores them.
      if (!controller.signal.aborted || !this.#closing.signal.aborted) this.#dispatch(result);
    })();
    this.#pending.add(task);
    void task.finally(() => this.#pending.delete(task));
  }

  #startEngine(effect: Extract<SchedulerEffect, { type: "start" | "waitReady" }>): void {
    const { op, model: key, deadline, gpus, sleepMode } = effect;
    const model: NamedModel | null | undefined = this.#scaleOnly ? null : this.#registry.resolve(key);
    if (effect.type === "start") this.#metrics.scaleEventsTotal.inc({ direction: "up" });
    this.#run(key, op, (signal) => {
      if (model === undefined) return Promise.reject(new Error(`unknown model "${key}"`));
      const launch = { key, model, gpus, sleepMode };
      // The world has no room for it yet (an unschedulable pod): the scheduler makes room (stale ops are ignored).
      const onPending = (reason: string) => {
        if (!signal.aborted) this.#dispatch({ type: "startPending", model: key, op, reason });
      };
      return effect.type === "start"
        ? this.#backend.start(launch, { signal, deadline, onPending })
        : this.#backend.waitReady(launch, { signal, deadline, onPending });
    }, {
      ok: { type: "started", model: key, op },
      fail: (reason) => ({ type: "startFailed", model: key, op, reason }),
    });
  }

  async #observe(op: number): Promise<void> {
    const signal = this.#closing.signal;
    let delay = 500;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const observed = await this.#backend.observe(signal);
        if (signal.aborted) return;
        this.#dispatch({ type: "observed", op, engines: this.#enginesOf(observed) });
        return;
      } catch (err) {
        if (signal.aborted) return;
        this.#log.warn("observe failed", { attempt, error: errorMessage(err), retryInMs: delay });
        await sleep(this.#clock, delay, signal);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  #enginesOf(observed: Observed): ObservedEngine[] {
    return observed.engines.map((o) => {
      const model = this.#scaleOnly ? SCALE_ONLY_KEY : o.key;
      const known = this.#scaleOnly || (o.key !== null && this.#registry.resolve(o.key)?.name === o.key);
      return {
        model: model ?? "(unknown)",
        phase: o.phase,
        ...(known ? {} : { unknown: true }),
        ...(o.gpus ? { gpus: o.gpus } : {}),
        ...(o.sleepLevel ? { sleepLevel: o.sleepLevel } : {}),
        ...(o.reason !== undefined ? { reason: o.reason } : {}),
      };
    });
  }

  // ---- logs, metrics ----

  #onModelTransition(t: ModelTransition): void {
    const info: ModelTransitionInfo = {
      model: t.model,
      from: t.from,
      to: t.to,
      reason: t.reason,
      durationMs: t.durationMs,
    };
    this.#log.info("model state", { ...info });
    this.#metrics.setModelState(t.model, t.to);
    this.#stateSeries.add(t.model);
    if (t.to === "stopping" && t.from !== "stopping") this.#addRecent("stop", t.model, null);
    for (const listener of this.#modelListeners) {
      try {
        listener(info);
      } catch (err) {
        this.#log.error("model transition listener failed", { error: errorMessage(err) });
      }
    }
  }

  #onMetric(effect: Extract<SchedulerEffect, { type: "metric" }>): void {
    switch (effect.name) {
      case "coldStart":
        this.#metrics.coldStartSeconds.observe({}, effect.ms / 1000);
        this.#lastColdStart.set(effect.model, effect.ms);
        this.#addRecent("coldStart", effect.model, effect.ms);
        break;
      case "wake":
        this.#metrics.wakeSeconds.observe({}, effect.ms / 1000);
        this.#lastWake.set(effect.model, effect.ms);
        this.#addRecent("wake", effect.model, effect.ms);
        break;
      case "switch":
        this.#metrics.modelSwitchesTotal.inc({ from: effect.from, to: effect.to });
        this.#metrics.switchDurationSeconds.observe({}, effect.ms / 1000);
        this.#addRecent("switch", effect.to, effect.ms);
        break;
      case "sleep":
        this.#metrics.sleepsTotal.inc({ model: effect.model, level: String(effect.level) });
        this.#addRecent("sleep", effect.model, null);
        break;
      case "eviction":
        this.#metrics.evictionsTotal.inc({ model: effect.model, action: effect.action });
        break;
    }
  }

  #addRecent(kind: RecentOperation["kind"], model: string, ms: number | null): void {
    this.#recent.unshift({ kind, model, ms, at: new Date(this.#clock.now()).toISOString() });
    if (this.#recent.length > RECENT_LIMIT) this.#recent.pop();
  }

  /** After a batch of decisions: last uses, gauges, change listeners. */
  #afterDecisions(): void {
    for (const e of Object.values(this.#state.engines)) {
      if (e.readySince !== null) this.#lastUsed.set(e.model, e.lastUsed);
    }
    this.#syncGauges();
    this.#changed();
  }

  /** Logs, counts and announces a change of the derived lifecycle. */
  #onLifecycle(effect: Extract<SchedulerEffect, { type: "lifecycle" }>): void {
    const t: TransitionInfo = {
      from: effect.from,
      to: effect.to,
      reason: effect.reason,
      model: effect.model,
      durationMs: effect.durationMs,
    };
    this.#log.info("state", { ...t });
    this.#metrics.setState(t.to);
    for (const listener of this.#listeners) {
      try {
        listener({ ...t });
      } catch (err) {
        this.#log.error("transition listener failed", { error: errorMessage(err) });
      }
    }
  }

  /** The warm paths (nothing held): only `model`'s in-flight gauge moves. */
  #warm(model: string): void {
    const n = this.#state.inflightByModel[model] ?? 0;
    if ((this.#gaugeInflight.get(model) ?? 0) !== n) {
      this.#metrics.inflightRequests.set({ model }, n);
      if (n === 0) this.#gaugeInflight.delete(model);
      else this.#gaugeInflight.set(model, n);
    }
    if (this.#changeListeners.size) this.#changed();
  }

  #changed(): void {
    for (const listener of this.#changeListeners) {
      try {
        listener();
      } catch (err) {
        this.#log.error("change listener failed", { error: errorMessage(err) });
      }
    }
  }

  /** Every known model has its model_state series from the start (cold until it moves): at start and on new models. */
  #seedStateSeries(): void {
    for (const key of this.#scaleOnly ? [SCALE_ONLY_KEY] : this.#registry.list().map((m) => m.name)) {
      if (this.#stateSeries.has(key)) continue;
      this.#stateSeries.add(key);
      this.#metrics.setModelState(key, modelStatusOf(this.#state, key));
    }
  }

  #syncGauges(): void {
    const s = this.#state;
    const { held, inflight } = countByModel(s);
    syncGauge(this.#metrics.heldRequests, this.#gaugeHeld, held);
    syncGauge(this.#metrics.inflightRequests, this.#gaugeInflight, inflight);
    const engines = s.observed ? Object.values(s.engines) : [];
    this.#metrics.replicas.set({}, engines.length);
    const active = new Set(engines.filter((e) => !e.asleep).map((e) => e.model));
    for (const model of this.#gaugeActive) if (!active.has(model)) this.#metrics.activeModel.set({ model }, 0);
    for (const model of active) if (!this.#gaugeActive.has(model)) this.#metrics.activeModel.set({ model }, 1);
    this.#gaugeActive = active;
    for (const [gpu, usage] of Object.entries(gpuUsageOf(s))) {
      const share = usage.awake / WHOLE_GPU;
      if (this.#gaugeGpu.get(gpu) !== share) {
        this.#metrics.gpuAwakeShare.set({ gpu }, share);
        this.#gaugeGpu.set(gpu, share);
      }
    }
  }

  #policy(): Policy {
    const models: Record<string, PolicyModel> = {};
    for (const model of this.#registry.list()) models[model.name] = model;
    if (this.#scaleOnly) {
      // The engine of scale-only mode runs the default model (or the only one): its footprint and timers.
      const spec = (this.#config.defaultModel && this.#registry.resolve(this.#config.defaultModel)) ||
        (this.#registry.list().length === 1 ? this.#registry.list()[0] : undefined);
      return policyFromConfig(this.#config, spec ? { [SCALE_ONLY_KEY]: spec } : {});
    }
    return policyFromConfig(this.#config, models);
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

/** Whether some model waits for room to be made. */
function hasPlans(s: SchedulerState): boolean {
  for (const _ in s.plans) return true;
  return false;
}

/** The state's in-flight collections are the driver's own (each decision returns new ones): updated in place. */
function inflightSets(s: SchedulerState): InflightSets {
  return { inflight: s.inflight as Map<string, string>, inflightByModel: s.inflightByModel as Record<string, number> };
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
