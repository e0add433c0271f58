/**
 * The scaler's decisions: `decide(state, event, now) → { state, effects }`.
 * Pure — no I/O, no clock, no timers. Event handlers record facts (a request
 * arrived, a start finished, …); then `converge` looks at the facts and does
 * whatever comes next (expire held requests, start, grant, drain, stop,
 * switch), and asks for one timer at the earliest deadline. Stale backend
 * results (an older `op`) and stale timers are ignored, so races resolve to
 * the same state whatever order they arrive in.
 *
 * Documented choices:
 * - A switch asked for during a cold start: when nothing waits for the model
 *   being started any more, the start is abandoned (stop) and the wanted
 *   model is started; otherwise the start finishes, its requests are served,
 *   and the switch follows the usual anti-thrash rule.
 * - Anti-thrash: inside `minLoadedTime` the active model gives way only once
 *   it has been quiet (nothing in flight or held) for `switchQuiet`
 *   (min(minLoadedTime, 2s)); after `minLoadedTime` it gives way as soon as
 *   another model waits. An admin load switches at once (still draining).
 * - A drain for a switch whose waiting requests all left is called off (ready
 *   again); a drain for an unload is not.
 * - A failed stop is retried once; a second failure makes the scaler read the
 *   world back (`observe`) and continue from what it finds; the requests
 *   waiting for the model that needed the GPU get 503.
 * - `engineFailed` (the engine died while serving) stops the engine to make
 *   sure nothing is left (replicas 0), then requests that wait start it again.
 * - `unload` drains then stops; requests still waiting afterwards start the
 *   engine again (nothing is dropped).
 * - `shutdown` rejects waiting requests with 503 and never stops the engine:
 *   the cluster state is the truth, and a restarted or sibling proxy reads it
 *   back and continues.
 *
 * @module
 */
import { formatDuration } from "../config/units.ts";
import type { ModelStatus } from "./types.ts";
import type { HeldRequest, Policy, SchedulerEffect, SchedulerEvent, SchedulerState } from "./state.ts";
import type { LifecycleState } from "./types.ts";

/** The result of one decision. */
export interface Decision {
  state: SchedulerState;
  effects: SchedulerEffect[];
}

/** After shutdown only callers are answered; backend results and timers change nothing (no stop, no start). */
const AFTER_SHUTDOWN = new Set<SchedulerEvent["type"]>(["request", "release", "cancel", "load", "unload"]);

/** The draft `decide` edits: the state with its collections copied and writable. */
type Draft = Omit<SchedulerState, "inflight" | "inflightByModel"> & {
  inflight: Map<string, string>;
  inflightByModel: Record<string, number>;
};

interface Ctx {
  s: Draft;
  fx: SchedulerEffect[];
  now: number;
}

/**
 * Effective timeouts of one model (its overrides, else the globals), in ms.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { timeoutsOf } from "./decide.ts";
 * import { policyFromConfig } from "./state.ts";
 * const config = parseConfig({ holdTimeout: "1m", models: { a: { modelName: "org/a", holdTimeout: "5s" } } });
 * timeoutsOf(policyFromConfig(config, config.models), "a").hold; // 5000
 * ```
 */
export function timeoutsOf(policy: Policy, model: string): { idle: number; hold: number; start: number } {
  const o = policy.models[model];
  return {
    idle: o?.idleTimeout ?? policy.idleTimeout,
    hold: o?.holdTimeout ?? policy.holdTimeout,
    start: o?.startTimeout ?? policy.startTimeout,
  };
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
 * let state = initialState(policyFromConfig(parseConfig({})), 0);
 * state = decide(state, { type: "observed", op: 0, engine: { phase: "absent", model: null } }, 0).state;
 * const { effects } = decide(state, { type: "request", id: "r1", model: "a" }, 10);
 * effects.some((e) => e.type === "start" && e.model === "a"); // true
 * ```
 */
export function decide(state: SchedulerState, event: SchedulerEvent, now: number): Decision {
  const s: Draft = {
    ...state,
    inflight: new Map(state.inflight),
    inflightByModel: { ...state.inflightByModel },
    held: state.held.slice(),
    unloads: state.unloads.slice(),
    errors: { ...state.errors },
  };
  const ctx: Ctx = { s, fx: [], now };
  // A tick means the driver's timer fired (maybe a little early): it must be armed again.
  if (event.type === "tick" || (s.timerAt !== null && s.timerAt <= now)) s.timerAt = null;

  if (s.shuttingDown && !AFTER_SHUTDOWN.has(event.type)) return { state: s, effects: ctx.fx };

  switch (event.type) {
    case "request":
      onRequest(ctx, event.id, event.model);
      break;
    case "release":
      if (s.inflight.has(event.id)) {
        // Only the active model's requests keep it alive (a late release from a replaced engine does not).
        if (removeInflight(s, event.id) === s.active) s.lastActivity = now;
      }
      break;
    case "cancel":
      s.held = s.held.filter((h) => h.id !== event.id);
      break;
    case "started":
      if (event.op === s.op && s.lifecycle === "starting") onStarted(ctx);
      break;
    case "startFailed":
      if (event.op === s.op && s.lifecycle === "starting") failStart(ctx, event.reason);
      break;
    case "stopped":
      if (event.op === s.op && (s.lifecycle === "stopping" || s.lifecycle === "switching")) onStopped(ctx);
      break;
    case "stopFailed":
      if (event.op === s.op && (s.lifecycle === "stopping" || s.lifecycle === "switching")) {
        onStopFailed(ctx, event.reason);
      }
      break;
    case "engineFailed":
      if (s.observed && (s.lifecycle === "ready" || s.lifecycle === "draining") && s.active !== null) {
        recordError(ctx, s.active, event.reason);
        stop(ctx, `engine failed: ${event.reason}`, false);
      }
      break;
    case "tick":
      break;
    case "observed":
      if (!s.observed && event.op === s.op) onObserved(ctx, event.engine);
      break;
    case "load":
      onLoad(ctx, event.id, event.model);
      break;
    case "unload":
      onUnload(ctx, event.id);
      break;
    case "configure":
      s.policy = event.policy;
      break;
    case "shutdown":
      onShutdown(ctx);
      return { state: s, effects: ctx.fx };
  }
  converge(ctx);
  return { state: s, effects: ctx.fx };
}

function onRequest(ctx: Ctx, id: string, model: string): void {
  const { s, now } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(rejectEffect([id], 503, "shutting_down", "the proxy is shutting down", s.policy.unavailableRetryAfter));
    return;
  }
  if (s.observed && s.lifecycle === "ready" && s.active === model) {
    addInflight(s, id, model);
    ctx.fx.push({ type: "grant", ids: [id], model });
    return;
  }
  let waiting = 0;
  for (const h of s.held) if (!h.admin) waiting++;
  if (waiting >= s.policy.maxHeldRequests) {
    ctx.fx.push(
      rejectEffect(
        [id],
        429,
        "hold_queue_full",
        `too many requests waiting for a model (maxHeldRequests ${s.policy.maxHeldRequests}); retry later`,
        s.policy.queueFullRetryAfter,
      ),
    );
    return;
  }
  s.held.push({ id, model, arrivedAt: now, deadline: now + timeoutsOf(s.policy, model).hold });
}

function onLoad(ctx: Ctx, id: string, model: string): void {
  const { s, now } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(rejectEffect([id], 503, "shutting_down", "the proxy is shutting down", s.policy.unavailableRetryAfter));
  } else if (s.observed && s.lifecycle === "ready" && s.active === model) {
    ctx.fx.push({ type: "done", ids: [id] });
  } else {
    s.held.push({ id, model, arrivedAt: now, deadline: Number.POSITIVE_INFINITY, admin: true });
  }
}

function onUnload(ctx: Ctx, id: string): void {
  const { s } = ctx;
  if (s.shuttingDown) {
    ctx.fx.push(rejectEffect([id], 503, "shutting_down", "the proxy is shutting down", s.policy.unavailableRetryAfter));
    return;
  }
  s.unloads.push(id);
  if (!s.observed) return;
  if (s.lifecycle === "ready") beginDrain(ctx, null, "unload");
  else if (s.lifecycle === "starting") stop(ctx, "unload", false);
  // idle: converge answers; draining/stopping/switching: the next `stopped` answers.
}

function onStarted(ctx: Ctx): void {
  const { s, now } = ctx;
  const model = s.active!;
  delete s.errors[model];
  if (s.startedAt !== null) {
    s.lastColdStartMs = now - s.startedAt;
    ctx.fx.push({ type: "metric", name: "coldStart", model, ms: s.lastColdStartMs });
  }
  if (s.switchAt !== null) {
    s.lastSwitchMs = now - s.switchAt;
    ctx.fx.push({ type: "metric", name: "switch", from: s.switchFrom, to: model, ms: s.lastSwitchMs });
  }
  s.switchFrom = null;
  s.switchAt = null;
  s.startDeadline = null;
  s.readySince = now;
  s.lastActivity = now;
  transition(ctx, "ready", "started");
}

function failStart(ctx: Ctx, reason: string): void {
  const { s } = ctx;
  const model = s.active!;
  recordError(ctx, model, reason);
  const ids = takeHeld(s, (h) => h.model === model).map((h) => h.id);
  if (ids.length) {
    ctx.fx.push(
      rejectEffect(
        ids,
        503,
        "model_unavailable",
        `model "${model}" failed to start: ${reason}`,
        s.policy.unavailableRetryAfter,
      ),
    );
  }
  s.switchFrom = null;
  s.switchAt = null;
  s.next = null;
  s.startDeadline = null;
  stop(ctx, `start failed: ${reason}`, false);
}

function onStopped(ctx: Ctx): void {
  const { s } = ctx;
  transition(ctx, "idle", s.stopReason ? `stopped (${s.stopReason})` : "stopped");
  s.active = null;
  s.next = null;
  s.stopReason = null;
  s.stopForce = false;
  s.stopAttempts = 0;
  s.readySince = null;
  s.drainDeadline = null;
  if (s.unloads.length) ctx.fx.push({ type: "done", ids: s.unloads.splice(0) });
}

function onStopFailed(ctx: Ctx, reason: string): void {
  const { s } = ctx;
  if (s.stopAttempts < 2) {
    issueStop(ctx);
    return;
  }
  recordError(ctx, s.active, `stop failed: ${reason}`);
  const waitingFor = s.next;
  if (waitingFor !== null) {
    const ids = takeHeld(s, (h) => h.model === waitingFor).map((h) => h.id);
    if (ids.length) {
      ctx.fx.push(
        rejectEffect(
          ids,
          503,
          "model_unavailable",
          `model "${waitingFor}" cannot start: the running engine did not stop (${reason})`,
          s.policy.unavailableRetryAfter,
        ),
      );
    }
  }
  if (s.unloads.length) {
    ctx.fx.push(
      rejectEffect(
        s.unloads.splice(0),
        503,
        "unload_failed",
        `unload failed: ${reason}`,
        s.policy.unavailableRetryAfter,
      ),
    );
  }
  s.next = null;
  s.switchFrom = null;
  s.switchAt = null;
  s.stopReason = null;
  s.stopAttempts = 0;
  s.readySince = null;
  s.observed = false;
  transition(ctx, "idle", `stop failed twice (${reason}); reading the engine state back`);
  s.active = null;
  s.op++;
  ctx.fx.push({ type: "observe", op: s.op });
}

function onObserved(ctx: Ctx, engine: { phase: string; model: string | null; reason?: string }): void {
  const { s, now } = ctx;
  s.observed = true;
  if (engine.phase === "absent") {
    // Already idle (no transition then): the status must not keep saying "not observed yet".
    if (s.lifecycle === "idle") s.reason = "observed absent";
    transition(ctx, "idle", "observed absent", null);
    return;
  }
  s.active = engine.model;
  if (engine.model === null) {
    stop(ctx, `observed an engine (${engine.phase}) with no known model`, false);
    return;
  }
  switch (engine.phase) {
    case "ready":
      s.readySince = now;
      s.lastActivity = now;
      transition(ctx, "ready", "observed ready");
      break;
    case "pending":
    case "starting": {
      s.op++;
      s.startedAt = now;
      s.startDeadline = now + timeoutsOf(s.policy, engine.model).start;
      transition(ctx, "starting", `observed ${engine.phase}`);
      ctx.fx.push({ type: "waitReady", op: s.op, model: engine.model, deadline: s.startDeadline });
      break;
    }
    case "terminating":
      stop(ctx, "observed terminating", false);
      break;
    default:
      recordError(ctx, engine.model, engine.reason ?? "engine failed");
      stop(ctx, `observed failed: ${engine.reason ?? "engine failed"}`, false);
  }
}

function onShutdown(ctx: Ctx): void {
  const { s } = ctx;
  s.shuttingDown = true;
  const ids = s.held.map((h) => h.id).concat(s.unloads);
  s.held = [];
  s.unloads = [];
  if (ids.length) {
    ctx.fx.push(rejectEffect(ids, 503, "shutting_down", "the proxy is shutting down", s.policy.unavailableRetryAfter));
  }
  if (s.timerAt !== null) {
    s.timerAt = null;
    ctx.fx.push({ type: "schedule", at: null });
  }
}

/** Does whatever the facts now call for, until nothing changes; then sets the timer. */
function converge(ctx: Ctx): void {
  const { s } = ctx;
  if (s.shuttingDown) return;
  for (let round = 0; round < 8; round++) {
    expireHeld(ctx);
    if (!s.observed || !step(ctx)) break;
  }
  const at = nextDeadline(s, ctx.now);
  if (at !== s.timerAt) {
    s.timerAt = at;
    ctx.fx.push({ type: "schedule", at });
  }
}

/** One move of the lifecycle; true when something changed that may enable another. */
function step(ctx: Ctx): boolean {
  const { s, now } = ctx;
  const policy = s.policy;
  switch (s.lifecycle) {
    case "idle": {
      if (s.unloads.length) ctx.fx.push({ type: "done", ids: s.unloads.splice(0) });
      const model = oldestWaitingModel(s.held, null);
      if (model === null) {
        s.switchFrom = null;
        s.switchAt = null;
        return false;
      }
      startModel(ctx, model);
      return true;
    }
    case "starting": {
      if (s.startDeadline !== null && now >= s.startDeadline) {
        failStart(ctx, `not ready within startTimeout ${formatDuration(timeoutsOf(policy, s.active!).start)}`);
        return true;
      }
      const active = s.active;
      if (s.held.length && !s.held.some((h) => h.model === active)) {
        const target = oldestWaitingModel(s.held, active)!;
        s.next = target;
        s.switchFrom = active;
        s.switchAt = now;
        stop(ctx, `switch to ${target}`, policy.forceSwitch);
        return true;
      }
      return false;
    }
    case "ready": {
      const active = s.active!;
      grantHeld(ctx, active);
      const target = oldestWaitingModel(s.held, active);
      if (target !== null) {
        if (switchDue(s, now) <= now) {
          beginDrain(ctx, target, `switch to ${target}`);
          return true;
        }
        return false;
      }
      if (inflightCount(s, null) === 0 && s.held.length === 0 && now >= idleDeadline(s)) {
        stop(ctx, "idle", false);
        return true;
      }
      return false;
    }
    case "draining": {
      const active = s.active;
      if (s.next !== null && !s.held.some((h) => h.model !== active)) {
        s.next = null;
        s.stopReason = null;
        s.drainDeadline = null;
        s.switchFrom = null;
        s.switchAt = null;
        transition(ctx, "ready", "switch no longer needed");
        return true;
      }
      const inflight = inflightCount(s, null);
      const reason = s.stopReason ?? "unload";
      const force = s.next !== null && policy.forceSwitch;
      if (inflight === 0) {
        stop(ctx, reason, force);
        return true;
      }
      if (s.drainDeadline !== null && now >= s.drainDeadline) {
        stop(
          ctx,
          `${reason} (drainTimeout ${formatDuration(policy.drainTimeout)} reached, ${inflight} in flight)`,
          force,
        );
        return true;
      }
      return false;
    }
    default:
      return false;
  }
}

/** When the ready model may give way to a waiting one (now or earlier: at once). */
function switchDue(s: SchedulerState, now: number): number {
  const active = s.active;
  if (s.held.some((h) => h.admin && h.model !== active)) return now;
  const readySince = s.readySince ?? now;
  let due = readySince + s.policy.minLoadedTime;
  const busy = inflightCount(s, active) > 0 || s.held.some((h) => h.model === active);
  if (!busy) due = Math.min(due, Math.max(s.lastActivity ?? readySince, readySince) + s.policy.switchQuiet);
  return due;
}

function idleDeadline(s: SchedulerState): number {
  return (s.lastActivity ?? s.readySince ?? 0) + timeoutsOf(s.policy, s.active!).idle;
}

function nextDeadline(s: SchedulerState, now: number): number | null {
  let at = Number.POSITIVE_INFINITY;
  for (const h of s.held) if (h.deadline < at) at = h.deadline;
  if (s.observed) {
    if (s.lifecycle === "starting" && s.startDeadline !== null) at = Math.min(at, s.startDeadline);
    if (s.lifecycle === "draining" && s.drainDeadline !== null) at = Math.min(at, s.drainDeadline);
    if (s.lifecycle === "ready") {
      if (oldestWaitingModel(s.held, s.active) !== null) at = Math.min(at, switchDue(s, now));
      else if (inflightCount(s, null) === 0 && s.held.length === 0) at = Math.min(at, idleDeadline(s));
    }
  }
  return Number.isFinite(at) && at > now ? at : null;
}

function expireHeld(ctx: Ctx): void {
  const { s, now } = ctx;
  if (!s.held.some((h) => h.deadline <= now)) return;
  const expired = takeHeld(s, (h) => h.deadline <= now);
  const byModel = new Map<string, string[]>();
  for (const h of expired) byModel.set(h.model, [...(byModel.get(h.model) ?? []), h.id]);
  for (const [model, ids] of byModel) {
    ctx.fx.push(
      rejectEffect(
        ids,
        504,
        "hold_timeout",
        `model "${model}" was not ready within holdTimeout ${
          formatDuration(timeoutsOf(s.policy, model).hold)
        } (state: ${s.lifecycle})`,
      ),
    );
  }
}

function grantHeld(ctx: Ctx, model: string): void {
  const { s } = ctx;
  if (!s.held.some((h) => h.model === model)) return;
  const taken = takeHeld(s, (h) => h.model === model);
  const ids: string[] = [];
  const admin: string[] = [];
  for (const h of taken) {
    if (h.admin) admin.push(h.id);
    else {
      ids.push(h.id);
      addInflight(s, h.id, model);
    }
  }
  if (ids.length) ctx.fx.push({ type: "grant", ids, model });
  if (admin.length) ctx.fx.push({ type: "done", ids: admin });
}

function startModel(ctx: Ctx, model: string): void {
  const { s, now } = ctx;
  s.op++;
  s.active = model;
  s.next = null;
  s.startedAt = now;
  s.startDeadline = now + timeoutsOf(s.policy, model).start;
  transition(ctx, "starting", s.switchFrom !== null ? `switch from ${s.switchFrom}` : "request waiting");
  ctx.fx.push({ type: "start", op: s.op, model, deadline: s.startDeadline });
}

function beginDrain(ctx: Ctx, target: string | null, reason: string): void {
  const { s, now } = ctx;
  s.next = target;
  s.stopReason = reason;
  s.drainDeadline = now + s.policy.drainTimeout;
  if (target !== null) {
    s.switchFrom = s.active;
    s.switchAt = now;
  }
  transition(ctx, "draining", reason);
}

function stop(ctx: Ctx, reason: string, force: boolean): void {
  const { s } = ctx;
  s.stopReason = reason;
  s.stopForce = force;
  s.stopAttempts = 0;
  s.drainDeadline = null;
  s.startDeadline = null;
  transition(ctx, s.next !== null ? "switching" : "stopping", reason);
  issueStop(ctx);
}

function issueStop(ctx: Ctx): void {
  const { s, now } = ctx;
  s.op++;
  s.stopAttempts++;
  ctx.fx.push({
    type: "stop",
    op: s.op,
    reason: s.stopReason ?? "stop",
    force: s.stopForce,
    deadline: now + s.policy.stopTimeout,
  });
}

function transition(ctx: Ctx, to: LifecycleState, reason: string, model: string | null = ctx.s.active): void {
  const { s, now } = ctx;
  if (s.lifecycle === to) return;
  s.reason = reason;
  ctx.fx.push({ type: "transition", from: s.lifecycle, to, reason, model, durationMs: now - s.since });
  s.lifecycle = to;
  s.since = now;
}

function recordError(ctx: Ctx, model: string | null, reason: string): void {
  const { s, now } = ctx;
  if (model !== null) s.errors[model] = { reason, at: now };
  s.lastError = { model, reason, at: now };
}

function takeHeld(s: Draft, match: (h: HeldRequest) => boolean): HeldRequest[] {
  const taken: HeldRequest[] = [];
  const kept: HeldRequest[] = [];
  for (const h of s.held) (match(h) ? taken : kept).push(h);
  s.held = kept;
  return taken;
}

/** The model (other than `except`) whose oldest waiting request is the oldest; held is in arrival order. */
function oldestWaitingModel(held: readonly HeldRequest[], except: string | null): string | null {
  for (const h of held) if (h.model !== except) return h.model;
  return null;
}

function inflightCount(s: SchedulerState, model: string | null): number {
  return model === null ? s.inflight.size : s.inflightByModel[model] ?? 0;
}

function addInflight(s: Draft, id: string, model: string): void {
  s.inflight.set(id, model);
  s.inflightByModel[model] = (s.inflightByModel[model] ?? 0) + 1;
}

function removeInflight(s: Draft, id: string): string {
  const model = s.inflight.get(id)!;
  s.inflight.delete(id);
  const left = (s.inflightByModel[model] ?? 1) - 1;
  if (left > 0) s.inflightByModel[model] = left;
  else delete s.inflightByModel[model];
  return model;
}

function rejectEffect(
  ids: string[],
  status: 429 | 503 | 504,
  code: string,
  message: string,
  retryAfter?: number,
): SchedulerEffect {
  return retryAfter === undefined
    ? { type: "reject", ids, status, code, message }
    : { type: "reject", ids, status, code, message, retryAfter };
}

/**
 * Status of one model for GET /v1/models.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { modelStatusOf } from "./decide.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * modelStatusOf(initialState(policyFromConfig(parseConfig({})), 0), "a"); // "cold"
 * ```
 */
export function modelStatusOf(s: SchedulerState, model: string): ModelStatus {
  if (s.active === model && s.observed) {
    if (s.lifecycle === "starting") return "starting";
    if (s.lifecycle === "ready") return "ready";
    if (s.lifecycle === "draining") return "draining";
    if (s.lifecycle === "stopping" || s.lifecycle === "switching") return s.errors[model] ? "failed" : "stopping";
  }
  return s.errors[model] ? "failed" : "cold";
}

/**
 * Counts held and in-flight requests per model (admin loads excluded).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { countByModel } from "./decide.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * countByModel(initialState(policyFromConfig(parseConfig({})), 0)).held; // {}
 * ```
 */
export function countByModel(s: SchedulerState): { held: Record<string, number>; inflight: Record<string, number> } {
  const held: Record<string, number> = {};
  const inflight: Record<string, number> = {};
  for (const h of s.held) if (!h.admin) held[h.model] = (held[h.model] ?? 0) + 1;
  for (const [model, n] of Object.entries(s.inflightByModel)) inflight[model] = n;
  return { held, inflight };
}
