/**
 * The pool scheduler's decisions: `decide(state, event, now) → { state, effects }`.
 * Pure — no I/O, no clock, no timers. Event handlers record facts (a request
 * arrived, a wake finished, …); then `converge` looks at the facts and does
 * whatever comes next, engine by engine (expire held requests, fail late
 * starts, grant, finish drains, idle timers, make room and start or wake the
 * models that wait), and asks for one timer at the earliest deadline. Stale
 * backend results (an op that is not the engine's current one) and stale
 * timers are ignored, so races resolve to the same state whatever order they
 * arrive in.
 *
 * The rules are DESIGN.md's "Scheduling rules"; choices of our own:
 * - Models that wait are served oldest request first; room promised to an
 *   older waiter is not taken by a younger one (placement's `claimed`).
 * - A drain that made room for a model that no longer waits is called off.
 * - A cold start that nothing waits for any more is abandoned (stopped) when
 *   another model needs its room, as the seed did.
 * - A failed stop is retried once; a second failure makes the scheduler read
 *   the world back (`observe`); the requests waiting for that room get 503.
 * - `engineFailed` (an engine died while serving or asleep) stops it to make
 *   sure nothing is left, then requests that wait start it again.
 * - `unload` drains then stops; requests still waiting afterwards start the
 *   engine again (nothing is dropped).
 * - `shutdown` rejects waiting requests with 503 and never stops an engine:
 *   the world is the truth, a restarted proxy reads it back and continues.
 *
 * @module
 */
import { formatDuration } from "../config/units.ts";
import { activeModelOf, lifecycleOf, modelStatusOf } from "./views.ts";
import { type Occupant, place } from "./placement.ts";
import {
  addInflight,
  type EngineState,
  type HeldRequest,
  isBusy,
  type ModelPolicy,
  modelPolicy,
  type ObservedEngine,
  type PendingAdmin,
  type Plan,
  removeInflight,
  type SchedulerEffect,
  type SchedulerEvent,
  type SchedulerState,
  WHOLE_GPU,
} from "./state.ts";

/** The result of one decision. */
export interface Decision {
  state: SchedulerState;
  effects: SchedulerEffect[];
}

/** After shutdown only callers are answered; backend results and timers change nothing (no stop, no start). */
const AFTER_SHUTDOWN = new Set<SchedulerEvent["type"]>(["request", "release", "cancel", "load", "sleep", "unload"]);

/** The draft `decide` edits: the state with its collections copied and writable. */
type Draft = Omit<SchedulerState, "inflight" | "inflightByModel" | "engines" | "plans"> & {
  inflight: Map<string, string>;
  inflightByModel: Record<string, number>;
  engines: Record<string, EngineState>;
  plans: Record<string, Plan>;
};

interface Ctx {
  s: Draft;
  fx: SchedulerEffect[];
  now: number;
  /** Something changed this round: converge runs another one. */
  changed: boolean;
  /** Why each model's status changed (for the transition effects). */
  reasons: Map<string, string>;
  /** Times placement asked to look again at. */
  recheck: number[];
}

/**
 * Applies one event at time `now` and returns the next state and the effects
 * to execute, in order.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { decide } from "./decide.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * let state = initialState(policyFromConfig(parseConfig({})));
 * state = decide(state, { type: "observed", op: 0, engines: [] }, 0).state;
 * const { effects } = decide(state, { type: "request", id: "r1", model: "a" }, 10);
 * effects.some((e) => e.type === "start" && e.model === "a"); // true
 * ```
 */
export function decide(state: SchedulerState, event: SchedulerEvent, now: number): Decision {
  const s: Draft = {
    ...state,
    engines: { ...state.engines },
    plans: { ...state.plans },
    inflight: new Map(state.inflight),
    inflightByModel: { ...state.inflightByModel },
    held: state.held.slice(),
    admin: state.admin.slice(),
    errors: { ...state.errors },
  };
  const ctx: Ctx = { s, fx: [], now, changed: false, reasons: new Map(), recheck: [] };
  // A tick means the driver's timer fired (maybe a little early): it must be armed again.
  if (event.type === "tick" || (s.timerAt !== null && s.timerAt <= now)) s.timerAt = null;

  if (s.shuttingDown && !AFTER_SHUTDOWN.has(event.type)) return { state: s, effects: ctx.fx };

  handle(ctx, event);
  // The lifecycle is announced after the event and again after what follows (stopped: idle, then starting).
  announceLifecycle(ctx);
  if (event.type !== "shutdown") converge(ctx);
  announceLifecycle(ctx);
  emitTransitions(ctx, state);
  return { state: s, effects: ctx.fx };
}

function handle(ctx: Ctx, event: SchedulerEvent): void {
  const { s, now } = ctx;
  switch (event.type) {
    case "request":
      onRequest(ctx, event.id, event.model);
      return;
    case "release": {
      const model = s.inflight.get(event.id);
      if (model === undefined) return;
      removeInflight(s, event.id, model);
      const e = s.engines[model];
      if (e && (e.status === "ready" || e.status === "draining")) edit(ctx, model).lastUsed = now;
      s.lastActivity = now;
      return;
    }
    case "cancel":
      s.held = s.held.filter((h) => h.id !== event.id);
      return;
    case "started":
    case "woke": {
      const e = current(s, event.model, event.op, event.type === "started" ? "starting" : "waking");
      if (e) onServing(ctx, e, event.type);
      return;
    }
    case "startFailed":
      if (current(s, event.model, event.op, "starting")) failStart(ctx, event.model, event.reason);
      return;
    case "startPending":
      if (current(s, event.model, event.op, "starting")) onStartPending(ctx, event.model, event.reason);
      return;
    case "slept": {
      const e = current(s, event.model, event.op, "sleeping");
      if (!e) return;
      const draft = edit(ctx, e.model);
      draft.asleep = true;
      draft.deadline = null;
      ctx.fx.push({ type: "metric", name: "sleep", model: e.model, level: e.sleepLevel ?? 1 });
      finishAdmin(ctx, "sleep", e.model);
      return;
    }
    case "sleepFailed":
      if (current(s, event.model, event.op, "sleeping")) {
        recordError(ctx, event.model, `sleep failed: ${event.reason}`);
        rejectAdmin(ctx, "sleep", event.model, `model "${event.model}" did not fall asleep: ${event.reason}`);
        stop(ctx, event.model, `sleep failed: ${event.reason}`, false);
      }
      return;
    case "wakeFailed":
      // Rule 5: stop it and cold-start it; its held requests stay held.
      if (current(s, event.model, event.op, "waking")) {
        recordError(ctx, event.model, `wake failed: ${event.reason}`);
        stop(ctx, event.model, `wake failed: ${event.reason}`, false);
      }
      return;
    case "stopped":
      if (current(s, event.model, event.op, "stopping")) onStopped(ctx, event.model);
      return;
    case "stopFailed":
      if (current(s, event.model, event.op, "stopping")) onStopFailed(ctx, event.model, event.reason);
      return;
    case "engineFailed": {
      const e = s.engines[event.model];
      // An operation in progress on it reports the failure itself.
      if (!s.observed || !e || isBusy(e)) return;
      recordError(ctx, e.model, event.reason);
      rejectAdmin(ctx, "sleep", e.model, `model "${e.model}" failed: ${event.reason}`);
      stop(ctx, e.model, `engine failed: ${event.reason}`, false);
      return;
    }
    case "tick":
      return;
    case "observed":
      if (!s.observed && event.op === s.observeOp) onObserved(ctx, event.engines);
      return;
    case "load":
      onLoad(ctx, event.id, event.model);
      return;
    case "sleep":
      onAdminSleep(ctx, event.id, event.model);
      return;
    case "unload":
      onUnload(ctx, event.id, event.model);
      return;
    case "configure":
      s.policy = event.policy;
      return;
    case "shutdown":
      onShutdown(ctx);
      return;
  }
}

// ---- events ----

function onRequest(ctx: Ctx, id: string, model: string): void {
  const { s, now } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(shuttingDown([id], s));
    return;
  }
  if (s.observed && s.engines[model]?.status === "ready") {
    addInflight(s, id, model);
    ctx.fx.push({ type: "grant", ids: [id], model });
    return;
  }
  let waiting = 0;
  for (const h of s.held) if (!h.admin) waiting++;
  if (waiting >= s.policy.maxHeldRequests) {
    ctx.fx.push(
      reject(
        [id],
        429,
        "hold_queue_full",
        `too many requests waiting for a model (maxHeldRequests ${s.policy.maxHeldRequests}); retry later`,
        s.policy.queueFullRetryAfter,
      ),
    );
    return;
  }
  s.held.push({ id, model, arrivedAt: now, deadline: now + modelPolicy(s.policy, model).holdTimeout });
}

function onLoad(ctx: Ctx, id: string, model: string): void {
  const { s, now } = ctx;
  if (s.shuttingDown) ctx.fx.push(shuttingDown([id], s));
  else if (s.observed && s.engines[model]?.status === "ready") ctx.fx.push({ type: "done", ids: [id] });
  else s.held.push({ id, model, arrivedAt: now, deadline: Number.POSITIVE_INFINITY, admin: true });
}

function onAdminSleep(ctx: Ctx, id: string, model: string): void {
  const { s } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(shuttingDown([id], s));
    return;
  }
  const policy = modelPolicy(s.policy, model);
  const refuse = (code: string, message: string) => {
    ctx.fx.push(reject([id], 409, code, message));
  };
  if (policy.sleepAfter === null) {
    return refuse(
      "sleep_not_enabled",
      `model "${model}" may not sleep: its engine runs without sleep mode (set sleepAfter for it)`,
    );
  }
  if (s.policy.maxSleeping === 0) return refuse("sleep_not_enabled", "maxSleeping is 0: no engine may sleep");
  const e = s.engines[model];
  if (!s.observed || !e) return refuse("model_not_loaded", `model "${model}" is not loaded`);
  if (e.status === "sleeping") {
    if (e.asleep) ctx.fx.push({ type: "done", ids: [id] });
    else s.admin.push({ id, kind: "sleep", models: [model] });
    return;
  }
  if (e.status === "ready" || (e.status === "draining" && e.then === "sleep")) {
    s.admin.push({ id, kind: "sleep", models: [model] });
    if (e.status === "ready") {
      // Through a drain even with nothing in flight: finishDrains puts it to sleep at once, or again at every
      // event while the sleep must wait (a sleeper being stopped for maxSleeping, a neighbour starting).
      drain(ctx, model, "sleep", "admin sleep", null);
    } else {
      // An eviction's drain: it now falls asleep whether or not the other model still waits.
      edit(ctx, model).evictedFor = null;
    }
    return;
  }
  refuse("model_busy", `model "${model}" is ${e.status}; try again when it is ready`);
}

function onUnload(ctx: Ctx, id: string, model: string | null): void {
  const { s } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(shuttingDown([id], s));
    return;
  }
  if (!s.observed) {
    // Nothing is known yet: resolved once the world is read back.
    s.admin.push({ id, kind: "unload", models: [], target: model });
    return;
  }
  const targets = model === null ? Object.keys(s.engines) : s.engines[model] ? [model] : [];
  if (targets.length === 0) {
    ctx.fx.push({ type: "done", ids: [id] });
    return;
  }
  s.admin.push({ id, kind: "unload", models: targets });
  for (const m of targets) unloadEngine(ctx, m);
}

function unloadEngine(ctx: Ctx, model: string): void {
  const { s } = ctx;
  const e = s.engines[model];
  if (!e || e.status === "stopping") return;
  rejectAdmin(ctx, "sleep", model, `model "${model}" is being unloaded`);
  if (e.status === "ready" && inflightOf(s, model) > 0) drain(ctx, model, "stop", "unload", null);
  else if (e.status === "draining") {
    const draft = edit(ctx, model);
    draft.then = "stop";
    draft.evictedFor = null;
    draft.reason = "unload";
  } else stop(ctx, model, "unload", false);
}

/** A start or a wake finished: its duration counted, the engine ready. */
function onServing(ctx: Ctx, e: EngineState, how: "started" | "woke"): void {
  const { s, now } = ctx;
  delete s.errors[e.model];
  const ms = now - (e.opStartedAt ?? now);
  if (how === "started") {
    s.lastColdStartMs = ms;
    ctx.fx.push({ type: "metric", name: "coldStart", model: e.model, ms });
  } else {
    s.lastWakeMs = ms;
    ctx.fx.push({ type: "metric", name: "wake", model: e.model, ms });
  }
  becomeReady(ctx, e.model, how);
}

/**
 * The world has no room for a starting engine although the pool's count said it fits (Kubernetes: its pod is
 * unschedulable, e.g. other workloads hold the node's GPUs): room is made by rule 3 — the least recently used
 * engines with nothing in flight and nothing held, enough of them for its GPUs — unless engines already leave for
 * it. Its start goes on (the pod schedules once they are gone) until its startTimeout.
 */
function onStartPending(ctx: Ctx, model: string, reason: string): void {
  const { s } = ctx;
  const e = edit(ctx, model);
  e.pending = reason;
  setReason(ctx, model, `waiting for room: ${reason}`);
  if (Object.values(s.engines).some((o) => o.evictedFor === model && o.status !== "ready")) return;
  // A model on GPUs needs engines that free GPUs; a CPU model (short of CPU or memory) any engine.
  const need = e.gpus.length;
  const idle = Object.values(s.engines).filter((o) =>
    o.model !== model && !isBusy(o) && !isWaiting(s, o.model) && (need === 0 || o.gpus.length > 0) &&
    ((o.status === "ready" && inflightOf(s, o.model) === 0) || (o.status === "sleeping" && o.asleep))
  ).sort((a, b) => a.lastUsed - b.lastUsed || (a.model < b.model ? -1 : 1));
  let freed = 0;
  for (const victim of idle) {
    if (freed > 0 && freed >= need) break;
    evict(ctx, victim.model, model, "now");
    freed += Math.max(1, victim.gpus.length);
  }
}

function onStopped(ctx: Ctx, model: string): void {
  const { s } = ctx;
  const e = s.engines[model];
  setReason(ctx, model, e.reason ? `stopped (${e.reason})` : "stopped");
  delete s.engines[model];
  ctx.changed = true;
  rejectAdmin(ctx, "sleep", model, `model "${model}" stopped before it fell asleep`);
  finishAdmin(ctx, "unload", model);
}

function onStopFailed(ctx: Ctx, model: string, reason: string): void {
  const { s } = ctx;
  const e = s.engines[model];
  if (e.stopAttempts < 2) {
    issueStop(ctx, model);
    return;
  }
  recordError(ctx, model, `stop failed: ${reason}`);
  // The model this stop made room for gets 503; others keep waiting and are placed again once the world is read.
  const waiting = e.evictedFor;
  if (waiting !== null) {
    const ids = takeHeld(s, (h) => h.model === waiting).map((h) => h.id);
    if (ids.length) {
      ctx.fx.push(
        reject(
          ids,
          503,
          "model_unavailable",
          `model "${waiting}" cannot start: the engine of "${model}" did not stop (${reason})`,
          s.policy.unavailableRetryAfter,
        ),
      );
    }
  }
  rejectAdmin(
    ctx,
    "unload",
    model,
    `unload failed: the engine of "${model}" did not stop (${reason})`,
    "unload_failed",
  );
  // Read the world back and continue from what it says (a read-back already under way covers this engine too).
  s.reason = `stop of ${model} failed twice; reading the engines back`;
  if (!s.observed) return;
  s.observed = false;
  s.op++;
  s.observeOp = s.op;
  ctx.fx.push({ type: "observe", op: s.op });
}

function onObserved(ctx: Ctx, observed: ObservedEngine[]): void {
  const { s, now } = ctx;
  s.observed = true;
  s.reason = "engines read back";
  s.engines = {};
  s.plans = {};
  const used = new Map<string, number>();
  const take = (gpus: readonly string[], share: number) => {
    for (const g of gpus) used.set(g, (used.get(g) ?? 0) + share);
  };
  const hasRoom = (gpu: string, share: number) => (used.get(gpu) ?? 0) + share <= WHOLE_GPU;
  // Engines that serve keep their room first; those being stopped anyway (terminating, failed, of a model no
  // longer configured) take none here: placement counts them as leaving until they are gone, and stopping a
  // serving engine to make room for one on its way out would free nothing.
  const rank = (o: ObservedEngine) =>
    o.unknown
      ? 3
      : o.phase === "ready"
      ? 0
      : o.phase === "sleeping"
      ? 1
      : o.phase === "pending" || o.phase === "starting"
      ? 2
      : 3;
  for (const o of [...observed].sort((a, b) => rank(a) - rank(b))) {
    if (s.engines[o.model]) continue;
    const policy = modelPolicy(s.policy, o.model);
    const holds = rank(o) < 3 && (o.phase !== "sleeping" || s.policy.sleepHoldsGpu);
    // A process is bound to its devices; where the backend does not say (Kubernetes), the first GPUs with room.
    // One on its way out still holds a real GPU until it is gone (a terminating pod): the free room first, so that
    // nothing starts there before it is gone; else any GPU.
    const room = s.policy.gpuIds.filter((g) => hasRoom(g, policy.share));
    const gpus = o.gpus
      ? [...o.gpus]
      : (holds ? room : [...room, ...s.policy.gpuIds.filter((g) => !room.includes(g))]).slice(0, policy.gpus);
    const engine = newEngine(o.model, gpus, policy, now);
    s.engines[o.model] = engine;
    const overCapacity = holds && (gpus.length < policy.gpus || !gpus.every((g) => hasRoom(g, policy.share)));
    if (holds && !overCapacity) take(gpus, policy.share);
    if (o.unknown) {
      stop(ctx, o.model, "observed an engine of a model that is not configured", false);
      continue;
    }
    switch (o.phase) {
      case "ready":
        engine.status = "ready";
        engine.readySince = now;
        if (!overCapacity) break;
        // Requests still running on it (the world was read back after a failed stop): they finish first.
        if (inflightOf(s, o.model) > 0) drain(ctx, o.model, "stop", "observed beyond the pool's GPU room", null);
        else stop(ctx, o.model, "observed beyond the pool's GPU room", false);
        break;
      case "sleeping":
        engine.status = "sleeping";
        engine.asleep = true;
        engine.sleepLevel = o.sleepLevel ?? policy.sleepLevel;
        if (overCapacity) stop(ctx, o.model, "observed beyond the pool's GPU room", false);
        break;
      case "pending":
      case "starting":
        if (overCapacity) {
          stop(ctx, o.model, "observed beyond the pool's GPU room", false);
          break;
        }
        engine.op = ++s.op;
        engine.opStartedAt = now;
        engine.deadline = now + policy.startTimeout;
        ctx.fx.push({
          type: "waitReady",
          model: o.model,
          op: engine.op,
          gpus: [...gpus],
          sleepMode: policy.sleepAfter !== null,
          deadline: engine.deadline,
        });
        break;
      case "terminating":
        stop(ctx, o.model, "observed terminating", false);
        break;
      default:
        recordError(ctx, o.model, o.reason ?? "engine failed");
        stop(ctx, o.model, `observed failed: ${o.reason ?? "engine failed"}`, false);
    }
    setReason(ctx, o.model, `observed ${o.phase}`);
  }
  // Admin unloads asked before anything was known: unload what was found.
  s.admin = s.admin.map((a) => {
    if (a.target === undefined) return a;
    const models = a.target === null ? Object.keys(s.engines) : s.engines[a.target] ? [a.target] : [];
    return { id: a.id, kind: a.kind, models };
  });
  for (const a of s.admin) if (a.kind === "unload") { for (const m of a.models) unloadEngine(ctx, m); }
  const answered = s.admin.filter((a) => a.kind === "unload" && a.models.length === 0).map((a) => a.id);
  if (answered.length) {
    s.admin = s.admin.filter((a) => !answered.includes(a.id));
    ctx.fx.push({ type: "done", ids: answered });
  }
}

function onShutdown(ctx: Ctx): void {
  const { s } = ctx;
  s.shuttingDown = true;
  const ids = s.held.map((h) => h.id).concat(s.admin.map((a) => a.id));
  s.held = [];
  s.admin = [];
  if (ids.length) ctx.fx.push(shuttingDown(ids, s));
  if (s.timerAt !== null) {
    s.timerAt = null;
    ctx.fx.push({ type: "schedule", at: null });
  }
}

// ---- converge ----

/** Does whatever the facts now call for, until nothing changes; then sets the timer. */
function converge(ctx: Ctx): void {
  const { s } = ctx;
  if (s.shuttingDown) return;
  for (let round = 0; round < 16; round++) {
    ctx.changed = false;
    ctx.recheck = [];
    expireHeld(ctx);
    if (!s.observed) break;
    enforceDeadlines(ctx);
    grantReady(ctx);
    finishDrains(ctx);
    idleTimers(ctx);
    serveWaiting(ctx);
    keepSleepersBounded(ctx);
    if (!ctx.changed) break;
  }
  const at = nextDeadline(ctx);
  if (at !== s.timerAt) {
    s.timerAt = at;
    ctx.fx.push({ type: "schedule", at });
  }
}

function expireHeld(ctx: Ctx): void {
  const { s, now } = ctx;
  if (!s.held.some((h) => h.deadline <= now)) return;
  const expired = takeHeld(s, (h) => h.deadline <= now);
  const byModel = new Map<string, string[]>();
  for (const h of expired) byModel.set(h.model, [...(byModel.get(h.model) ?? []), h.id]);
  for (const [model, ids] of byModel) {
    ctx.fx.push(
      reject(
        ids,
        504,
        "hold_timeout",
        `model "${model}" was not ready within holdTimeout ${
          formatDuration(modelPolicy(s.policy, model).holdTimeout)
        } (status: ${modelStatusOf(s, model)})`,
      ),
    );
  }
}

function enforceDeadlines(ctx: Ctx): void {
  const { s, now } = ctx;
  for (const e of enginesNow(s)) {
    if (e.deadline === null || now < e.deadline) continue;
    const policy = modelPolicy(s.policy, e.model);
    if (e.status === "starting") {
      const why = e.pending === null ? "" : `: ${e.pending}`;
      failStart(ctx, e.model, `not ready within startTimeout ${formatDuration(policy.startTimeout)}${why}`);
    } else if (e.status === "waking") {
      recordError(ctx, e.model, "wake timed out");
      stop(ctx, e.model, "wake did not finish in time", false);
    } else if (e.status === "sleeping" && !e.asleep) {
      recordError(ctx, e.model, "sleep timed out");
      rejectAdmin(ctx, "sleep", e.model, `model "${e.model}" did not fall asleep in time`);
      stop(ctx, e.model, "sleep did not finish in time", false);
    }
  }
}

/** Rule 1: a ready engine serves what is held for it at once. */
function grantReady(ctx: Ctx): void {
  const { s } = ctx;
  if (!s.held.length) return;
  for (const e of enginesNow(s)) {
    if (e.status !== "ready" || !isWaiting(s, e.model)) continue;
    const taken = takeHeld(s, (h) => h.model === e.model);
    const ids: string[] = [];
    const admin: string[] = [];
    for (const h of taken) {
      if (h.admin) admin.push(h.id);
      else {
        ids.push(h.id);
        addInflight(s, h.id, e.model);
      }
    }
    if (ids.length) ctx.fx.push({ type: "grant", ids, model: e.model });
    if (admin.length) ctx.fx.push({ type: "done", ids: admin });
    ctx.changed = true;
  }
}

/** Rule 3: an engine being emptied sleeps or stops once nothing is in flight, or at drainTimeout. */
function finishDrains(ctx: Ctx): void {
  const { s, now } = ctx;
  for (const e of enginesNow(s)) {
    if (e.status !== "draining") continue;
    if (e.evictedFor !== null && !isWaiting(s, e.evictedFor)) {
      const draft = edit(ctx, e.model);
      draft.status = "ready";
      draft.then = null;
      draft.evictedFor = null;
      draft.deadline = null;
      draft.since = now;
      setReason(ctx, e.model, "room no longer needed");
      // Ready again: what was held for it meanwhile is granted in the next round.
      ctx.changed = true;
      continue;
    }
    const inflight = inflightOf(s, e.model);
    if (inflight === 0) {
      if (e.then === "sleep") goToSleep(ctx, e.model, e.reason, e.evictedFor, e.evictedFor === null);
      else stop(ctx, e.model, e.reason, e.evictedFor !== null && s.policy.forceSwitch);
    } else if (e.deadline !== null && now >= e.deadline) {
      // Sleeping with requests in flight aborts them and can kill vLLM (vllm-project/vllm#45520): stop instead.
      rejectAdmin(ctx, "sleep", e.model, `model "${e.model}" still had requests in flight at drainTimeout`);
      stop(
        ctx,
        e.model,
        `${e.reason} (drainTimeout ${formatDuration(s.policy.drainTimeout)} reached, ${inflight} in flight)`,
        e.evictedFor !== null && s.policy.forceSwitch,
      );
    }
  }
}

/** Rule 6: idle from the end of the last request: sleepAfter, then idleTimeout. */
function idleTimers(ctx: Ctx): void {
  const { s, now } = ctx;
  for (const e of enginesNow(s)) {
    if (isBusy(e) || isWaiting(s, e.model)) continue;
    const policy = modelPolicy(s.policy, e.model);
    if (e.status === "ready" && inflightOf(s, e.model) === 0) {
      if (now >= e.lastUsed + policy.idleTimeout) stop(ctx, e.model, "idle", false);
      else if (sleepsBeforeIdle(policy) && now >= e.lastUsed + policy.sleepAfter!) {
        goToSleep(ctx, e.model, "idle", null, false);
      }
    } else if (e.status === "sleeping" && now >= e.lastUsed + policy.idleTimeout) {
      stop(ctx, e.model, "idle", false);
    }
  }
}

/** Rules 1–4: start, wake, or make room for the models that wait, oldest request first. */
function serveWaiting(ctx: Ctx): void {
  const { s, now } = ctx;
  const claimed = new Map<string, number>();
  const claim = (gpus: readonly string[], share: number) => {
    for (const g of gpus) claimed.set(g, (claimed.get(g) ?? 0) + share);
  };
  for (const model of waitingModels(s)) {
    const e = s.engines[model];
    if (e && !(e.status === "sleeping" && e.asleep)) {
      // In transition, serving, or being emptied: it comes back when that is over.
      continue;
    }
    const policy = modelPolicy(s.policy, model);
    const need = e ? { gpus: e.gpus.length, share: e.share } : { gpus: policy.gpus, share: policy.share };
    const forced = s.held.some((h) => h.model === model && h.admin);
    const input = (fixed: readonly string[] | null) => ({
      gpuIds: s.policy.gpuIds,
      occupants: occupants(s, model, forced, now),
      claimed,
      need,
      fixed,
      now,
    });
    let placement = place(input(e ? e.gpus : null));
    const plan = s.plans[model];
    if (!e && plan && placement.kind !== "fits" && placement.kind !== "impossible") {
      // Keep making room where it started, unless it fits somewhere now.
      placement = place(input(plan.gpus));
    }
    switch (placement.kind) {
      case "impossible": {
        const ids = takeHeld(s, (h) => h.model === model).map((h) => h.id);
        delete s.plans[model];
        ctx.fx.push(
          reject(
            ids,
            503,
            "model_unavailable",
            `model "${model}" cannot be placed: ${placement.reason}`,
            s.policy.unavailableRetryAfter,
          ),
        );
        if (e) stop(ctx, model, `cannot wake: ${placement.reason}`, false);
        ctx.changed = true;
        break;
      }
      case "fits":
        if (e) wake(ctx, model);
        else startEngine(ctx, model, placement.gpus);
        break;
      case "evict": {
        const first = plan?.from ?? placement.victims[0].model;
        s.plans[model] = { gpus: placement.gpus, from: first, at: plan?.from ? plan.at : now };
        for (const v of placement.victims) evict(ctx, v.model, model, v.how);
        if (placement.until !== null) ctx.recheck.push(placement.until);
        claim(placement.gpus, need.share);
        break;
      }
      case "wait":
        if (!plan || plan.gpus.join() !== placement.gpus.join()) {
          s.plans[model] = { gpus: placement.gpus, from: plan?.from ?? null, at: plan?.at ?? now };
        }
        if (placement.until !== null) ctx.recheck.push(placement.until);
        claim(placement.gpus, need.share);
        break;
    }
  }
  // Plans of models that no longer wait.
  for (const model of Object.keys(s.plans)) if (!isWaiting(s, model)) delete s.plans[model];
}

/** The engines that take room on the GPUs, as placement sees them (`self` excluded). */
function occupants(s: Draft, self: string, forced: boolean, now: number): Occupant[] {
  const out: Occupant[] = [];
  const { sleepHoldsGpu, minLoadedTime } = s.policy;
  for (const e of Object.values(s.engines)) {
    if (e.model === self || e.gpus.length === 0) continue;
    const base = { model: e.model, gpus: e.gpus, share: e.share, lastUsed: e.lastUsed, transitional: false };
    switch (e.status) {
      case "starting":
        // A start that nothing waits for any more (its requests left) is abandoned like an idle model (rule 3).
        out.push({ ...base, kind: isWaiting(s, e.model) ? "transit" : "idle", transitional: true });
        break;
      case "waking":
        out.push({ ...base, kind: "transit", transitional: true });
        break;
      case "ready": {
        const busy = inflightOf(s, e.model) > 0 || isWaiting(s, e.model);
        if (!busy) out.push({ ...base, kind: "idle" });
        else {
          const drainableAt = forced ? now : (e.readySince ?? now) + minLoadedTime;
          out.push({ ...base, kind: "busy", drainableAt });
        }
        break;
      }
      case "draining":
        out.push({ ...base, kind: e.then === "sleep" && sleepHoldsGpu ? "transit" : "leaving" });
        break;
      case "sleeping":
        if (!e.asleep) out.push({ ...base, kind: sleepHoldsGpu ? "transit" : "leaving", transitional: true });
        else if (sleepHoldsGpu) out.push({ ...base, kind: "asleep" });
        break;
      case "stopping":
        if (!e.asleep || sleepHoldsGpu) out.push({ ...base, kind: "leaving" });
        break;
    }
  }
  return out;
}

/** Rule 3: a victim with requests drains first; an idle one sleeps (when it may and room is made by it) or stops. */
function evict(ctx: Ctx, victim: string, forModel: string, how: "now" | "drain"): void {
  const { s } = ctx;
  const e = s.engines[victim];
  const reason = `switch to ${forModel}`;
  const sleeps = !s.policy.sleepHoldsGpu && modelPolicy(s.policy, victim).sleepAfter !== null &&
    s.policy.maxSleeping > 0;
  if (e.status === "sleeping") {
    stop(ctx, victim, reason, false, forModel);
  } else if (e.status === "starting") {
    stop(ctx, victim, reason, s.policy.forceSwitch, forModel);
  } else if (how === "drain") {
    drain(ctx, victim, sleeps ? "sleep" : "stop", reason, forModel);
  } else if (sleeps) {
    goToSleep(ctx, victim, reason, forModel, false);
  } else {
    stop(ctx, victim, reason, s.policy.forceSwitch, forModel);
  }
}

/**
 * Puts an idle ready engine to sleep, within `maxSleeping`: when as many engines already sleep, the least
 * recently used sleeper is stopped first (and this one sleeps once it is gone); when this one is the least
 * recently used of them all (and the sleep was not asked for), it stops instead.
 */
function goToSleep(ctx: Ctx, model: string, reason: string, evictedFor: string | null, explicit: boolean): void {
  const { s } = ctx;
  const e = s.engines[model];
  const policy = modelPolicy(s.policy, model);
  if (policy.sleepAfter === null || s.policy.maxSleeping === 0 || (s.policy.sleepHoldsGpu && evictedFor !== null)) {
    stop(ctx, model, reason, false, evictedFor);
    return;
  }
  // No sleep beside a start or wake on the same GPU (vllm-project/vllm#36753): after it.
  if (Object.values(s.engines).some((o) => o !== e && transitional(o) && o.gpus.some((g) => e.gpus.includes(g)))) {
    return;
  }
  const sleepers = sleepersOf(s);
  if (sleepers.length < s.policy.maxSleeping) {
    issueSleep(ctx, model, reason, evictedFor);
    return;
  }
  // A slot frees up soon: a sleeper is being stopped or woken (its answer comes back as an event).
  if (sleepers.some((o) => o.status === "stopping" || o.status === "waking")) return;
  // Never a sleeper that requests wait for: it is about to wake (often the very model this room is made for).
  const lru = sleepers.filter((o) => o.asleep && !isWaiting(s, o.model)).sort((a, b) => a.lastUsed - b.lastUsed)[0];
  if (lru && (explicit || lru.lastUsed < e.lastUsed)) {
    stop(ctx, lru.model, `maxSleeping ${s.policy.maxSleeping}: ${model} falls asleep`, false, model);
  } else if (!lru && explicit) {
    return; // every sleeper is still falling asleep: after them
  } else {
    stop(ctx, model, `${reason}; maxSleeping ${s.policy.maxSleeping} reached`, false, evictedFor);
  }
}

/** After a config change lowered maxSleeping (or more sleepers were read back): the least recently used stop. */
function keepSleepersBounded(ctx: Ctx): void {
  const { s } = ctx;
  const sleepers = sleepersOf(s);
  // Those already stopping are on their way out: count only the ones that stay.
  let excess = sleepers.filter((o) => o.status !== "stopping").length - s.policy.maxSleeping;
  const candidates = sleepers.filter((o) => o.status === "sleeping" && o.asleep && !isWaiting(s, o.model));
  for (const o of candidates.sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (excess-- <= 0) break;
    stop(ctx, o.model, `maxSleeping ${s.policy.maxSleeping}`, false);
  }
}

/**
 * Each engine as it is at this moment, for loops that act on engines: acting on one may change another (making
 * room under maxSleeping stops the least recently used sleeper), which must then be seen as it now is.
 */
function* enginesNow(s: Draft): Generator<EngineState> {
  for (const model of Object.keys(s.engines)) {
    const e = s.engines[model];
    if (e) yield e;
  }
}

/**
 * Engines that hold a sleeper's weights in host RAM, which maxSleeping bounds: falling asleep or asleep, waking
 * (until the wake is confirmed), and stopping from one of those (until the process is gone).
 */
function sleepersOf(s: SchedulerState): EngineState[] {
  return Object.values(s.engines).filter((o) =>
    o.status === "sleeping" || o.status === "waking" || o.stoppingFromSleep
  );
}

// ---- engine operations ----

function startEngine(ctx: Ctx, model: string, gpus: string[]): void {
  const { s, now } = ctx;
  const policy = modelPolicy(s.policy, model);
  const e = newEngine(model, gpus, policy, now);
  e.status = "starting";
  e.op = ++s.op;
  e.opStartedAt = now;
  e.deadline = now + policy.startTimeout;
  const plan = takePlan(s, model, e);
  s.engines[model] = e;
  setReason(ctx, model, plan?.from ? `room made by ${plan.from}` : "request waiting");
  ctx.changed = true;
  ctx.fx.push({ type: "start", model, op: e.op, gpus, sleepMode: policy.sleepAfter !== null, deadline: e.deadline });
}

function wake(ctx: Ctx, model: string): void {
  const { s, now } = ctx;
  const policy = modelPolicy(s.policy, model);
  const e = edit(ctx, model);
  const level = e.sleepLevel ?? policy.sleepLevel;
  e.status = "waking";
  e.asleep = false;
  e.since = now;
  e.op = ++s.op;
  e.opStartedAt = now;
  // A level-2 wake reloads the weights from disk: as long as a start.
  e.deadline = now + (level === 2 ? policy.startTimeout : s.policy.wakeTimeout);
  takePlan(s, model, e);
  setReason(ctx, model, "request waiting");
  ctx.fx.push({ type: "wake", model, op: e.op, level, deadline: e.deadline });
}

/** The room made for `model` is now its engine's: the plan goes, what it evicted is remembered (switch metrics). */
function takePlan(s: Draft, model: string, e: EngineState): Plan | undefined {
  const plan = s.plans[model];
  if (plan?.from) {
    e.switchFrom = plan.from;
    e.switchAt = plan.at;
  }
  delete s.plans[model];
  return plan;
}

function becomeReady(ctx: Ctx, model: string, reason: string): void {
  const { s, now } = ctx;
  const e = edit(ctx, model);
  if (e.switchFrom !== null && e.switchAt !== null) {
    s.lastSwitchMs = now - e.switchAt;
    ctx.fx.push({ type: "metric", name: "switch", from: e.switchFrom, to: model, ms: s.lastSwitchMs });
  }
  e.switchFrom = null;
  e.switchAt = null;
  e.status = "ready";
  e.since = now;
  e.deadline = null;
  e.opStartedAt = null;
  e.readySince = now;
  e.lastUsed = now;
  e.sleepLevel = null;
  s.lastActivity = now;
  setReason(ctx, model, reason);
}

function failStart(ctx: Ctx, model: string, reason: string): void {
  const { s } = ctx;
  recordError(ctx, model, reason);
  const ids = takeHeld(s, (h) => h.model === model).map((h) => h.id);
  if (ids.length) {
    const rejection = reject(
      ids,
      503,
      "model_unavailable",
      `model "${model}" failed to start: ${reason}`,
      s.policy.unavailableRetryAfter,
    );
    // No room in the cluster: the scheduler's own words are for the client too (DESIGN: the pool on Kubernetes).
    const pending = s.engines[model]?.pending;
    ctx.fx.push(pending ? { ...rejection, detail: pending } as SchedulerEffect : rejection);
  }
  rejectAdmin(ctx, "sleep", model, `model "${model}" failed to start`);
  stop(ctx, model, `start failed: ${reason}`, false);
}

function drain(ctx: Ctx, model: string, then: "sleep" | "stop", reason: string, evictedFor: string | null): void {
  const { s, now } = ctx;
  const e = edit(ctx, model);
  e.status = "draining";
  e.since = now;
  e.then = then;
  e.reason = reason;
  e.evictedFor = evictedFor;
  e.deadline = now + s.policy.drainTimeout;
  setReason(ctx, model, reason);
  ctx.changed = true;
}

function issueSleep(ctx: Ctx, model: string, reason: string, evictedFor: string | null): void {
  const { s, now } = ctx;
  const level = modelPolicy(s.policy, model).sleepLevel;
  const e = edit(ctx, model);
  e.status = "sleeping";
  e.since = now;
  e.asleep = false;
  e.sleepLevel = level;
  e.then = null;
  e.reason = reason;
  e.evictedFor = evictedFor;
  e.op = ++s.op;
  e.deadline = now + s.policy.sleepTimeout;
  setReason(ctx, model, reason);
  ctx.changed = true;
  if (evictedFor !== null) ctx.fx.push({ type: "metric", name: "eviction", model, action: "sleep" });
  ctx.fx.push({ type: "sleep", model, op: e.op, level, deadline: e.deadline });
}

function stop(ctx: Ctx, model: string, reason: string, force: boolean, evictedFor: string | null = null): void {
  const { now } = ctx;
  const e = edit(ctx, model);
  e.stoppingFromSleep = e.status === "sleeping" || e.status === "waking";
  e.status = "stopping";
  e.since = now;
  e.then = null;
  e.reason = reason;
  e.evictedFor = evictedFor;
  e.force = force;
  e.stopAttempts = 0;
  e.deadline = null;
  setReason(ctx, model, reason);
  ctx.changed = true;
  if (evictedFor !== null) ctx.fx.push({ type: "metric", name: "eviction", model, action: "stop" });
  issueStop(ctx, model);
}

function issueStop(ctx: Ctx, model: string): void {
  const { s, now } = ctx;
  const e = edit(ctx, model);
  e.op = ++s.op;
  e.stopAttempts++;
  ctx.fx.push({
    type: "stop",
    model,
    op: e.op,
    reason: e.reason,
    force: e.force,
    deadline: now + s.policy.stopTimeout,
  });
}

// ---- admin bookkeeping ----

function finishAdmin(ctx: Ctx, kind: PendingAdmin["kind"], model: string): void {
  const { s } = ctx;
  const done: string[] = [];
  s.admin = s.admin.map((a) => {
    if (a.kind !== kind || !a.models.includes(model)) return a;
    const models = a.models.filter((m) => m !== model);
    if (models.length === 0) done.push(a.id);
    return { ...a, models };
  }).filter((a) => !done.includes(a.id));
  if (done.length) ctx.fx.push({ type: "done", ids: done });
}

function rejectAdmin(
  ctx: Ctx,
  kind: PendingAdmin["kind"],
  model: string,
  message: string,
  code = "model_unavailable",
): void {
  const { s } = ctx;
  const ids = s.admin.filter((a) => a.kind === kind && a.models.includes(model)).map((a) => a.id);
  if (!ids.length) return;
  s.admin = s.admin.filter((a) => !ids.includes(a.id));
  ctx.fx.push(reject(ids, 503, code, message, s.policy.unavailableRetryAfter));
}

// ---- helpers ----

function newEngine(model: string, gpus: readonly string[], policy: ModelPolicy, now: number): EngineState {
  return {
    model,
    status: "starting",
    gpus: [...gpus],
    share: policy.share,
    since: now,
    op: 0,
    readySince: null,
    lastUsed: now,
    opStartedAt: null,
    deadline: null,
    asleep: false,
    sleepLevel: null,
    then: null,
    reason: "",
    evictedFor: null,
    force: false,
    stopAttempts: 0,
    stoppingFromSleep: false,
    pending: null,
    switchFrom: null,
    switchAt: null,
  };
}

/** A writable copy of the engine, stored in the draft. */
function edit(ctx: Ctx, model: string): EngineState {
  const copy = { ...ctx.s.engines[model] };
  ctx.s.engines[model] = copy;
  return copy;
}

/** The engine when `op` is its current operation and it is in `status`, else undefined (a stale result). */
function current(s: Draft, model: string, op: number, status: EngineState["status"]): EngineState | undefined {
  const e = s.engines[model];
  return e && e.op === op && e.status === status ? e : undefined;
}

function transitional(e: EngineState): boolean {
  return e.status === "starting" || e.status === "waking" || (e.status === "sleeping" && !e.asleep);
}

function sleepsBeforeIdle(policy: ModelPolicy): boolean {
  return policy.sleepAfter !== null && policy.sleepAfter < policy.idleTimeout;
}

function setReason(ctx: Ctx, model: string, reason: string): void {
  ctx.reasons.set(model, reason);
  ctx.s.reason = `${model}: ${reason}`;
}

function recordError(ctx: Ctx, model: string, reason: string): void {
  const { s, now } = ctx;
  s.errors[model] = { reason, at: now };
  s.lastError = { model, reason, at: now };
}

function isWaiting(s: SchedulerState, model: string): boolean {
  return s.held.some((h) => h.model === model);
}

/** Models with held requests, the one whose oldest request is oldest first (held is in arrival order). */
function waitingModels(s: SchedulerState): string[] {
  const seen = new Set<string>();
  for (const h of s.held) seen.add(h.model);
  return [...seen];
}

function takeHeld(s: Draft, match: (h: HeldRequest) => boolean): HeldRequest[] {
  const taken: HeldRequest[] = [];
  const kept: HeldRequest[] = [];
  for (const h of s.held) (match(h) ? taken : kept).push(h);
  s.held = kept;
  return taken;
}

function inflightOf(s: SchedulerState, model: string): number {
  return s.inflightByModel[model] ?? 0;
}

function reject(
  ids: string[],
  status: 409 | 429 | 503 | 504,
  code: string,
  message: string,
  retryAfter?: number,
): SchedulerEffect {
  return retryAfter === undefined
    ? { type: "reject", ids, status, code, message }
    : { type: "reject", ids, status, code, message, retryAfter };
}

function shuttingDown(ids: string[], s: SchedulerState): SchedulerEffect {
  return reject(ids, 503, "shutting_down", "the proxy is shutting down", s.policy.unavailableRetryAfter);
}

/**
 * The earliest time still ahead at which something is due: held deadlines, operation and drain deadlines, idle and
 * sleep timers. What is already due and was not done waits for an event, not for the clock (a sleep put off while a
 * neighbour starts or wakes, vllm-project/vllm#36753: its answer comes back as an event); it must not hide the
 * deadlines that follow it.
 */
function nextDeadline(ctx: Ctx): number | null {
  const { s, now } = ctx;
  let at = Number.POSITIVE_INFINITY;
  const consider = (t: number) => {
    if (t > now && t < at) at = t;
  };
  for (const h of s.held) consider(h.deadline);
  if (s.observed) {
    for (const t of ctx.recheck) consider(t);
    for (const e of Object.values(s.engines)) {
      if (e.deadline !== null) consider(e.deadline);
      if (isBusy(e) || isWaiting(s, e.model)) continue;
      const policy = modelPolicy(s.policy, e.model);
      if (e.status === "ready" && inflightOf(s, e.model) === 0) {
        consider(e.lastUsed + policy.idleTimeout);
        if (sleepsBeforeIdle(policy)) consider(e.lastUsed + policy.sleepAfter!);
      } else if (e.status === "sleeping") consider(e.lastUsed + policy.idleTimeout);
    }
  }
  return Number.isFinite(at) ? at : null;
}

function announceLifecycle(ctx: Ctx): void {
  const { s, now } = ctx;
  const to = lifecycleOf(s);
  if (to === s.lifecycle) return;
  ctx.fx.push({
    type: "lifecycle",
    from: s.lifecycle,
    to,
    reason: s.reason,
    model: activeModelOf(s) ?? Object.keys(s.plans)[0] ?? null,
    durationMs: now - s.lifecycleSince,
  });
  s.lifecycle = to;
  s.lifecycleSince = now;
}

/** Status changes go first: listeners see a model ready before its requests are granted. */
function emitTransitions(ctx: Ctx, before: SchedulerState): void {
  const { s, now } = ctx;
  const transitions: SchedulerEffect[] = [];
  const models = new Set([
    ...Object.keys(before.engines),
    ...Object.keys(s.engines),
    ...Object.keys(before.errors),
    ...Object.keys(s.errors),
  ]);
  for (const model of models) {
    const from = modelStatusOf(before, model);
    const to = modelStatusOf(s, model);
    if (from === to) continue;
    const since = before.engines[model]?.since ?? now;
    transitions.push({
      type: "transition",
      model,
      from,
      to,
      reason: ctx.reasons.get(model) ?? to,
      durationMs: now - since,
    });
  }
  if (transitions.length) ctx.fx.unshift(...transitions);
}
