/**
 * Views of the pool scheduler's state for the proxy, the status endpoint and
 * the metrics: a model's status, the seed's single lifecycle derived from the
 * engines, the active model, counts per model, and each GPU's awake share.
 * Pure functions of a state.
 *
 * @module
 */
import type { LifecycleState, ModelStatus } from "./types.ts";
import type { EngineState, SchedulerState } from "./state.ts";

/**
 * Status of one model for GET /v1/models and /admin/status.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { modelStatusOf } from "./views.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * modelStatusOf(initialState(policyFromConfig(parseConfig({}))), "a"); // "cold"
 * ```
 */
export function modelStatusOf(s: SchedulerState, model: string): ModelStatus {
  const e = s.observed ? s.engines[model] : undefined;
  if (e) return e.status === "stopping" && s.errors[model] ? "failed" : e.status;
  return s.errors[model] ? "failed" : "cold";
}

/**
 * The seed's single lifecycle, derived from the engines (the `state{state}` metric and /admin/status `state`):
 * switching while an engine stops to make room, else starting, draining, stopping, ready, idle by precedence.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { lifecycleOf } from "./views.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * lifecycleOf(initialState(policyFromConfig(parseConfig({})))); // "idle"
 * ```
 */
export function lifecycleOf(s: SchedulerState): LifecycleState {
  if (!s.observed) return "idle";
  const statuses = new Set(Object.values(s.engines).map((e) => e.status));
  const waitingForRoom = Object.keys(s.plans).length > 0;
  if (statuses.has("stopping") && waitingForRoom) return "switching";
  if (statuses.has("starting") || statuses.has("waking")) return "starting";
  if (statuses.has("draining")) return "draining";
  if (statuses.has("stopping")) return "stopping";
  if (statuses.has("ready")) return "ready";
  return "idle";
}

/**
 * The model the seed's status calls active: the most recently used awake engine (ready first), else null.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { activeModelOf } from "./views.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * activeModelOf(initialState(policyFromConfig(parseConfig({})))); // null
 * ```
 */
export function activeModelOf(s: SchedulerState): string | null {
  if (!s.observed) return null;
  const rank = (e: EngineState) => e.status === "ready" ? 0 : e.status === "sleeping" ? 2 : 1;
  const awake = Object.values(s.engines).filter((e) => !(e.status === "sleeping" && e.asleep));
  awake.sort((a, b) => rank(a) - rank(b) || b.lastUsed - a.lastUsed);
  return awake[0]?.model ?? null;
}

/**
 * Counts held and in-flight requests per model (admin loads excluded).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { countByModel } from "./views.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * countByModel(initialState(policyFromConfig(parseConfig({})))).held; // {}
 * ```
 */
export function countByModel(s: SchedulerState): { held: Record<string, number>; inflight: Record<string, number> } {
  const held: Record<string, number> = {};
  const inflight: Record<string, number> = {};
  for (const h of s.held) if (!h.admin) held[h.model] = (held[h.model] ?? 0) + 1;
  for (const [model, n] of Object.entries(s.inflightByModel)) inflight[model] = n;
  return { held, inflight };
}

/**
 * Awake share (thousandths) and the models on each GPU: engines that are starting, ready, waking, draining,
 * falling asleep or stopping count; a confirmed sleeper counts only where sleeping keeps the GPU.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { gpuUsageOf } from "./views.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * gpuUsageOf(initialState(policyFromConfig(parseConfig({}))))["0"].awake; // 0
 * ```
 */
export function gpuUsageOf(s: SchedulerState): Record<string, { awake: number; models: string[] }> {
  const out: Record<string, { awake: number; models: string[] }> = {};
  for (const g of s.policy.gpuIds) out[g] = { awake: 0, models: [] };
  for (const e of Object.values(s.engines)) {
    for (const g of e.gpus) {
      const gpu = out[g] ??= { awake: 0, models: [] };
      gpu.models.push(e.model);
      if (!e.asleep || s.policy.sleepHoldsGpu) gpu.awake += e.share;
    }
  }
  return out;
}
