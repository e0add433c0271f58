/**
 * The pool scheduler's vocabulary: its policy (timeouts, limits, GPUs and
 * each model's footprint), its state (one entry per engine), the events it
 * reacts to and the effects it answers with. `decide` (decide.ts) is a pure
 * function over these types; `placement.ts` decides where a model goes and
 * what makes room; the driver (driver.ts) turns the world into events and
 * effects into actions.
 *
 * Shares are kept in thousandths of a GPU (integers) so that 0.45 + 0.45 +
 * 0.1 adds up to exactly 1.0.
 *
 * @module
 */
import { DEFAULT_GPU_SHARE } from "../backend/engine_command.ts";
import { type ChillConfig, gpuCountOf, type ModelSpec } from "../config/schema.ts";
import type { LifecycleState, ModelStatus } from "./types.ts";

/** A whole GPU, in the thousandths `share` is counted in. */
export const WHOLE_GPU = 1000;

/** The share of a model that sets no `gpuMemoryUtilization`: what its engine is started with. */
const DEFAULT_SHARE = Math.round(DEFAULT_GPU_SHARE * WHOLE_GPU);

/** What one model needs and how it behaves, timeouts in milliseconds. */
export interface ModelPolicy {
  idleTimeout: number;
  holdTimeout: number;
  startTimeout: number;
  /** Idle this long → sleep; null: the model never sleeps (its engine runs without sleep mode). */
  sleepAfter: number | null;
  sleepLevel: 1 | 2;
  /** GPUs its engine runs on (0: a CPU model, no GPU accounting). */
  gpus: number;
  /** Thousandths of each of those GPUs its engine uses while awake (1–1000). */
  share: number;
}

/** Everything `decide` needs to know about the config, in milliseconds. */
export interface Policy {
  drainTimeout: number;
  minLoadedTime: number;
  /** Deadline of one backend stop (waiting for the old pod/process to be gone). */
  stopTimeout: number;
  /** Deadline of one sleep (POST /sleep until /is_sleeping says true). */
  sleepTimeout: number;
  /** Deadline of one level-1 wake; a level-2 wake reloads weights and gets the model's startTimeout. */
  wakeTimeout: number;
  maxHeldRequests: number;
  /** Retry-After (s) on 429 hold_queue_full. */
  queueFullRetryAfter: number;
  /** Retry-After (s) on 503 model_unavailable / shutting_down. */
  unavailableRetryAfter: number;
  /** switchStrategy === "force": kill an evicted engine without a grace period. */
  forceSwitch: boolean;
  /** The GPUs the pool places engines on (process.gpus; virtual ids on Kubernetes). */
  gpuIds: readonly string[];
  /** Most engines asleep at once. */
  maxSleeping: number;
  /**
   * A sleeping engine keeps its GPUs (Kubernetes: its pod holds whole GPUs while it exists), so sleeping makes
   * no room: evictions stop.
   */
  sleepHoldsGpu: boolean;
  /** The policy of a model missing from `models` (scale-only "*", a model that just appeared). */
  defaults: ModelPolicy;
  /** By model key. */
  models: Record<string, ModelPolicy>;
}

/**
 * Default deadline of one stop: long enough for vLLM's graceful exit and a slow kubelet.
 *
 * @example
 * ```ts
 * import { DEFAULT_STOP_TIMEOUT } from "./state.ts";
 * DEFAULT_STOP_TIMEOUT; // 300000
 * ```
 */
export const DEFAULT_STOP_TIMEOUT = 5 * 60_000;

/**
 * Deadline of one sleep or level-1 wake: vLLM takes 0.3–10 s for either (POOL-NOTES (b)); a minute leaves room
 * for a loaded host.
 *
 * @example
 * ```ts
 * import { DEFAULT_SLEEP_TIMEOUT } from "./state.ts";
 * DEFAULT_SLEEP_TIMEOUT; // 60000
 * ```
 */
export const DEFAULT_SLEEP_TIMEOUT = 60_000;

/** The config keys the scheduling policy reads. */
export type PolicyConfig =
  & Pick<
    ChillConfig,
    | "idleTimeout"
    | "holdTimeout"
    | "startTimeout"
    | "drainTimeout"
    | "minLoadedTime"
    | "maxHeldRequests"
    | "switchStrategy"
    | "maxSleeping"
    | "sleepLevel"
    | "backend"
    | "layout"
    | "maxGpus"
  >
  & { sleepAfter?: number; process: Pick<ChillConfig["process"], "gpus">; vllm: Pick<ChillConfig["vllm"], "gpus"> };

/** The per-model keys the policy reads. */
export type PolicyModel = Pick<
  ModelSpec,
  | "idleTimeout"
  | "holdTimeout"
  | "startTimeout"
  | "sleepAfter"
  | "sleepLevel"
  | "gpus"
  | "tensorParallelSize"
  | "gpuMemoryUtilization"
>;

/**
 * Builds the policy from a validated config and the known models (config
 * models and VLLMModel objects).
 *
 * - process backend: the GPUs are `process.gpus`; a model takes its share
 *   (`gpuMemoryUtilization`, default 0.9) of each of its GPUs while awake;
 *   a sleeping engine takes none.
 * - Kubernetes, `layout: "per-model"`: `maxGpus` whole GPUs; a pod holds
 *   whole GPUs while it exists, asleep or not.
 * - Kubernetes, `layout: "shared"`: one Deployment, one engine at a time
 *   (one slot every model fills whole).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { policyFromConfig } from "./state.ts";
 * const config = parseConfig({
 *   backend: "process", idleTimeout: "1m", process: { gpus: ["0", "1"] },
 *   models: { a: { modelName: "org/a", idleTimeout: "5s", gpuMemoryUtilization: 0.45 } },
 * });
 * const policy = policyFromConfig(config, config.models);
 * policy.models.a.idleTimeout; // 5000
 * policy.models.a.share; // 450
 * policy.gpuIds; // ["0", "1"]
 * ```
 */
export function policyFromConfig(
  config: PolicyConfig,
  models: Readonly<Record<string, PolicyModel>> = {},
): Policy {
  const mode = config.backend === "process" ? "share" : config.layout === "per-model" ? "whole" : "slot";
  const gpuIds = mode === "share"
    ? [...config.process.gpus]
    : mode === "whole"
    ? Array.from({ length: config.maxGpus }, (_, i) => String(i))
    : ["0"];
  const footprint = (spec: PolicyModel | undefined): { gpus: number; share: number } => {
    if (mode === "slot") return { gpus: 1, share: WHOLE_GPU };
    const gpus = gpuCountOf(spec ?? {}, config.vllm.gpus);
    if (mode === "whole") return { gpus, share: WHOLE_GPU };
    const utilization = spec?.gpuMemoryUtilization;
    return { gpus, share: utilization === undefined ? DEFAULT_SHARE : Math.round(utilization * WHOLE_GPU) };
  };
  const of = (spec: PolicyModel | undefined): ModelPolicy => ({
    idleTimeout: spec?.idleTimeout ?? config.idleTimeout,
    holdTimeout: spec?.holdTimeout ?? config.holdTimeout,
    startTimeout: spec?.startTimeout ?? config.startTimeout,
    sleepAfter: spec?.sleepAfter ?? config.sleepAfter ?? null,
    sleepLevel: spec?.sleepLevel ?? config.sleepLevel,
    ...footprint(spec),
  });
  const byKey: Record<string, ModelPolicy> = {};
  for (const [key, spec] of Object.entries(models)) byKey[key] = of(spec);
  return {
    drainTimeout: config.drainTimeout,
    minLoadedTime: config.minLoadedTime,
    stopTimeout: DEFAULT_STOP_TIMEOUT,
    sleepTimeout: DEFAULT_SLEEP_TIMEOUT,
    wakeTimeout: DEFAULT_SLEEP_TIMEOUT,
    maxHeldRequests: config.maxHeldRequests,
    queueFullRetryAfter: 5,
    unavailableRetryAfter: 30,
    forceSwitch: config.switchStrategy === "force",
    gpuIds,
    maxSleeping: config.maxSleeping,
    sleepHoldsGpu: mode !== "share",
    defaults: of(undefined),
    models: byKey,
  };
}

/**
 * The policy of one model (its own, else the defaults).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { modelPolicy, policyFromConfig } from "./state.ts";
 * const config = parseConfig({ holdTimeout: "1m", models: { a: { modelName: "org/a", holdTimeout: "5s" } } });
 * modelPolicy(policyFromConfig(config, config.models), "a").holdTimeout; // 5000
 * ```
 */
export function modelPolicy(policy: Policy, model: string): ModelPolicy {
  return policy.models[model] ?? policy.defaults;
}

/** A request (or an admin load) waiting for its model. */
export interface HeldRequest {
  id: string;
  model: string;
  arrivedAt: number;
  /** arrivedAt + holdTimeout; Infinity for admin loads (bounded by the start instead). */
  deadline: number;
  /** An admin `load`: makes room without waiting for minLoadedTime, is never counted in flight. */
  admin?: boolean;
}

/** Room being made for a waiting model. */
export interface Plan {
  /** The GPUs it will go on. */
  gpus: readonly string[];
  /** The first engine evicted for it and when (switch metrics); null while nothing was evicted. */
  from: string | null;
  at: number;
}

/** An admin sleep or unload waiting for its engines. */
export interface PendingAdmin {
  id: string;
  kind: "sleep" | "unload";
  /** Models whose engine must fall asleep (sleep) or be gone (unload) before it is done. */
  models: string[];
  /** An unload asked before the engines were read back: the model (null: all), resolved once observed. */
  target?: string | null;
}

/** The last failure of a model (status "failed" until its next successful start). */
export interface ModelError {
  reason: string;
  at: number;
}

/** What an engine is doing (a model with no engine is `cold`, or `failed` after an error). */
export type EngineStatus = "starting" | "ready" | "sleeping" | "waking" | "draining" | "stopping";

/** One engine as the scheduler tracks it. Treat as immutable: `decide` copies what it changes. */
export interface EngineState {
  model: string;
  status: EngineStatus;
  /** Devices it is placed on. */
  gpus: readonly string[];
  /** Thousandths of each of its GPUs it takes while awake (fixed at placement). */
  share: number;
  /** Since when in `status`. */
  since: number;
  /** Id of its backend operation in progress (0: none); results of older ones are stale. */
  op: number;
  /** When it last became ready (minLoadedTime counts from here). */
  readySince: number | null;
  /** End of its last request, or when it became ready (idle, sleepAfter and LRU count from here). */
  lastUsed: number;
  /** When the cold start or the wake in progress began (durations). */
  opStartedAt: number | null;
  /** Start, wake or drain deadline. */
  deadline: number | null;
  /** Asleep and confirmed (its GPU memory is free); false while /sleep is in progress. */
  asleep: boolean;
  /** Level of the sleep in progress or done. */
  sleepLevel: 1 | 2 | null;
  /** While draining: what follows once nothing is in flight. */
  then: "sleep" | "stop" | null;
  /** Why it is in this status. */
  reason: string;
  /** The model this engine makes room for (eviction), or null. */
  evictedFor: string | null;
  /** Stop without a grace period. */
  force: boolean;
  /** Stop attempts for the current stop (one retry, then read the world back). */
  stopAttempts: number;
  /** It was asleep or waking when its stop began (it holds host RAM until gone: counts against maxSleeping). */
  stoppingFromSleep: boolean;
  /**
   * Starting, and the world has no room for it although the pool's count said it fits (Kubernetes: its pod is
   * unschedulable): the scheduler's reason, shown when the start times out.
   */
  pending: string | null;
  /** The model evicted to make room for this one and when (switch metrics). */
  switchFrom: string | null;
  switchAt: number | null;
}

/**
 * An operation (start, wait, sleep, wake, stop) is in progress on the engine: its status says so — starting,
 * waking, stopping, or sleeping but not yet asleep.
 *
 * @example
 * ```ts
 * import { type EngineState, isBusy } from "./state.ts";
 * isBusy({ status: "sleeping", asleep: false } as EngineState); // true
 * isBusy({ status: "ready", asleep: false } as EngineState); // false
 * ```
 */
export function isBusy(e: EngineState): boolean {
  return e.status === "starting" || e.status === "waking" || e.status === "stopping" ||
    (e.status === "sleeping" && !e.asleep);
}

/** The whole state of the scheduler. Treat as immutable: `decide` returns a new one. */
export interface SchedulerState {
  policy: Policy;
  /** False until the world was read back (`observed`); requests are held meanwhile. */
  observed: boolean;
  /** Last operation id handed out (engines' ops and `observe`). */
  op: number;
  /** Op of the `observe` in progress (results of other ones are stale). */
  observeOp: number;
  /** Engines by model key (a model absent here is cold). */
  engines: Readonly<Record<string, EngineState>>;
  /** Where each waiting model will go (room being made for it). */
  plans: Readonly<Record<string, Plan>>;
  /** Granted requests: id → model. */
  inflight: ReadonlyMap<string, string>;
  /** Granted requests per model (kept with `inflight`, for O(1) counts). */
  inflightByModel: Readonly<Record<string, number>>;
  /** Waiting requests, oldest first. */
  held: HeldRequest[];
  /** Admin sleeps and unloads in progress. */
  admin: PendingAdmin[];
  errors: Record<string, ModelError>;
  lastError: { model: string | null; reason: string; at: number } | null;
  lastColdStartMs: number | null;
  lastSwitchMs: number | null;
  lastWakeMs: number | null;
  /** Last end of any request or readiness (legacy `lastActivity`). */
  lastActivity: number | null;
  /** Reason of the last state change (legacy `stateReason`). */
  reason: string;
  /** The seed's single lifecycle as last announced (a `lifecycle` effect), and since when. */
  lifecycle: LifecycleState;
  lifecycleSince: number;
  /** Time the driver's single timer is set for, or null. */
  timerAt: number | null;
  shuttingDown: boolean;
}

/** The state's in-flight collections, writable: `decide`'s draft, or the driver's warm paths on the state it owns. */
export interface InflightSets {
  inflight: Map<string, string>;
  inflightByModel: Record<string, number>;
}

/**
 * Counts request `id` in flight on `model`, in both collections (edited in place).
 *
 * @example
 * ```ts
 * import { addInflight } from "./state.ts";
 * const sets = { inflight: new Map<string, string>(), inflightByModel: {} };
 * addInflight(sets, "r1", "a");
 * sets.inflightByModel; // { a: 1 }
 * ```
 */
export function addInflight(s: InflightSets, id: string, model: string): void {
  s.inflight.set(id, model);
  s.inflightByModel[model] = (s.inflightByModel[model] ?? 0) + 1;
}

/**
 * Removes request `id` of `model` from both in-flight collections (edited in place); a model's count of 0 goes.
 *
 * @example
 * ```ts
 * import { addInflight, removeInflight } from "./state.ts";
 * const sets = { inflight: new Map<string, string>(), inflightByModel: {} };
 * addInflight(sets, "r1", "a");
 * removeInflight(sets, "r1", "a");
 * sets.inflightByModel; // {}
 * ```
 */
export function removeInflight(s: InflightSets, id: string, model: string): void {
  s.inflight.delete(id);
  const left = (s.inflightByModel[model] ?? 1) - 1;
  if (left > 0) s.inflightByModel[model] = left;
  else delete s.inflightByModel[model];
}

/**
 * The state before anything is known: no engine, not yet observed.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * const state = initialState(policyFromConfig(parseConfig({})));
 * state.observed; // false
 * ```
 */
export function initialState(policy: Policy, now = 0): SchedulerState {
  return {
    policy,
    observed: false,
    op: 0,
    observeOp: 0,
    engines: {},
    plans: {},
    inflight: new Map(),
    inflightByModel: {},
    held: [],
    admin: [],
    errors: {},
    lastError: null,
    lastColdStartMs: null,
    lastSwitchMs: null,
    lastWakeMs: null,
    lastActivity: null,
    reason: "reading the engines back",
    lifecycle: "idle",
    lifecycleSince: now,
    timerAt: null,
    shuttingDown: false,
  };
}

/** One engine read back from the world, its model already mapped to a key ("*" in scale-only mode). */
export interface ObservedEngine {
  model: string;
  /** It serves a model the registry does not know (any more): stop it. */
  unknown?: boolean;
  phase: "pending" | "starting" | "ready" | "sleeping" | "terminating" | "failed";
  gpus?: readonly string[];
  sleepLevel?: 1 | 2;
  reason?: string;
}

/** Everything the scheduler reacts to. Backend results carry the model and the op they answer. */
export type SchedulerEvent =
  | { type: "request"; id: string; model: string }
  | { type: "release"; id: string }
  | { type: "cancel"; id: string }
  | { type: "started"; model: string; op: number }
  | { type: "startFailed"; model: string; op: number; reason: string }
  /** A start goes on but the world has no room for it (an unschedulable pod): make room by rule 3. */
  | { type: "startPending"; model: string; op: number; reason: string }
  | { type: "slept"; model: string; op: number }
  | { type: "sleepFailed"; model: string; op: number; reason: string }
  | { type: "woke"; model: string; op: number }
  | { type: "wakeFailed"; model: string; op: number; reason: string }
  | { type: "stopped"; model: string; op: number }
  | { type: "stopFailed"; model: string; op: number; reason: string }
  | { type: "engineFailed"; model: string; reason: string }
  | { type: "tick" }
  | { type: "observed"; op: number; engines: ObservedEngine[] }
  | { type: "load"; id: string; model: string }
  | { type: "sleep"; id: string; model: string }
  | { type: "unload"; id: string; model: string | null }
  | { type: "configure"; policy: Policy }
  | { type: "shutdown" };

/** A model's status changed. */
export interface ModelTransition {
  type: "transition";
  model: string;
  from: ModelStatus;
  to: ModelStatus;
  reason: string;
  /** Time spent in `from`. */
  durationMs: number;
}

/** Everything the scheduler can do to the world. */
export type SchedulerEffect =
  /** Bring `model`'s engine up on `gpus` by `deadline`; answer with started/startFailed carrying `op`. */
  | { type: "start"; model: string; op: number; gpus: string[]; sleepMode: boolean; deadline: number }
  /** Wait for an engine found starting after a restart; answer like `start`. */
  | { type: "waitReady"; model: string; op: number; gpus: string[]; sleepMode: boolean; deadline: number }
  /** Put a ready engine (nothing in flight) to sleep; answer with slept/sleepFailed. */
  | { type: "sleep"; model: string; op: number; level: 1 | 2; deadline: number }
  /** Wake a sleeping engine; answer with woke/wakeFailed. */
  | { type: "wake"; model: string; op: number; level: 1 | 2; deadline: number }
  /** Stop the engine (aborting any operation on it); answer with stopped/stopFailed. */
  | { type: "stop"; model: string; op: number; reason: string; force: boolean; deadline: number }
  /** Read every engine back; answer with `observed`. */
  | { type: "observe"; op: number }
  /** Hand these requests to the engine (they are now in flight, except admin loads which are done). */
  | { type: "grant"; ids: string[]; model: string }
  /** Refuse these requests / admin operations. */
  | {
    type: "reject";
    ids: string[];
    status: 409 | 429 | 503 | 504;
    code: string;
    message: string;
    retryAfter?: number;
    /** The part of the reason clients may be told (a pod the kube scheduler could not place: its message). */
    detail?: string;
  }
  /** Admin operations finished. */
  | { type: "done"; ids: string[] }
  /** Set the single timer for `at` (null: no timer); the driver then sends `tick`. */
  | { type: "schedule"; at: number | null }
  | ModelTransition
  /** The seed's single lifecycle (derived from the engines) changed. */
  | {
    type: "lifecycle";
    from: LifecycleState;
    to: LifecycleState;
    reason: string;
    model: string | null;
    durationMs: number;
  }
  /** Finished operations, for metrics and the dashboard. */
  | { type: "metric"; name: "coldStart"; model: string; ms: number }
  | { type: "metric"; name: "wake"; model: string; ms: number }
  | { type: "metric"; name: "switch"; from: string; to: string; ms: number }
  | { type: "metric"; name: "sleep"; model: string; level: 1 | 2 }
  | { type: "metric"; name: "eviction"; model: string; action: "sleep" | "stop" };
