/**
 * Reading the world back (after a restart, or on demand): replicas, the
 * model the ConfigMap names as active, and the pods' state, mapped to the
 * backend's {@link Observed}.
 *
 * @module
 */
import type { EnginePhase, Observed } from "../backend/types.ts";

/** The phase of the Deployment's engine: a backend phase, or absent (no replica wanted, no pod). */
export type DeploymentPhase = EnginePhase | "absent";
import { callOptions, type KubeContext } from "./context.ts";
import { NotFoundError, toKubeError } from "./errors.ts";
import { listPods, podSelector, type PodState, podState } from "./pods.ts";
import { ACTIVE_MODEL_ANNOTATION } from "./resources.ts";
import { ACTIVE_MODEL_KEY } from "../manifests/vllm.ts";
import { retryUnavailable } from "./retry.ts";
import { readReplicas } from "./scale.ts";

export { ACTIVE_MODEL_KEY };

/** The state read back from the cluster. */
export interface KubeState {
  /** Desired replicas; 0 when the Deployment is missing. */
  replicas: number;
  /** False when the Deployment does not exist. */
  deploymentExists: boolean;
  /** Model key named by the ConfigMap (annotation, else VLLM_CHILL_MODEL), or null. */
  activeModel: string | null;
  /** Every pod of the Deployment. */
  pods: PodState[];
  /** The engine phase these add up to. */
  phase: DeploymentPhase;
  /** Why, when pending/starting/failed/terminating. */
  reason?: string;
}

/**
 * Reads replicas, the active model and the pods, and sums them up.
 *
 * @example
 * ```ts ignore
 * const state = await readState(ctx, { signal });
 * console.log(state.phase, state.activeModel);
 * ```
 */
export async function readState(
  ctx: KubeContext,
  options: { signal?: AbortSignal; deadline?: number } = {},
): Promise<KubeState> {
  const [replicas, activeModel] = await Promise.all([readReplicas(ctx, options), readActiveModel(ctx, options)]);
  let pods: PodState[] = [];
  if (replicas !== null) {
    try {
      const selector = await podSelector(ctx, options);
      pods = (await listPods(ctx, selector, options)).items.map(podState);
    } catch (error) {
      const e = toKubeError(error, "reading vLLM pods");
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  const desired = replicas ?? 0;
  return { replicas: desired, deploymentExists: replicas !== null, activeModel, pods, ...summarize(desired, pods) };
}

/**
 * Maps a {@link KubeState} to the backend's Observed.
 *
 * @example
 * ```ts
 * import { toObserved } from "./state.ts";
 * toObserved({ replicas: 0, deploymentExists: true, activeModel: null, pods: [], phase: "absent" }).engines; // []
 * ```
 */
export function toObserved(state: KubeState): Observed {
  if (state.phase === "absent") return { engines: [] };
  return {
    engines: [{ key: state.activeModel, phase: state.phase, ...(state.reason ? { reason: state.reason } : {}) }],
  };
}

/**
 * The engine phase of a set of pods with `replicas` desired.
 *
 * @example
 * ```ts
 * import { summarize } from "./state.ts";
 * summarize(1, []).phase; // "pending"
 * ```
 */
export function summarize(replicas: number, pods: PodState[]): { phase: DeploymentPhase; reason?: string } {
  const live = pods.filter((p) => p.phase !== "Terminating");
  const terminating = pods.filter((p) => p.phase === "Terminating");
  if (live.some((p) => p.phase === "Ready")) return { phase: "ready" };
  const crashing = live.find((p) => p.crashLoop || p.phase === "Failed");
  if (crashing) return { phase: "failed", reason: `${crashing.name}: ${crashing.reason}` };
  if (terminating.length > 0 && (replicas === 0 || live.length === 0)) {
    return { phase: "terminating", reason: terminating.map((p) => `${p.name} terminating`).join(", ") };
  }
  const pending = live.find((p) => p.phase === "Pending");
  if (pending) {
    const unscheduled = pending.reason && /^Unschedulable|waiting to be scheduled/.test(pending.reason);
    return { phase: unscheduled ? "pending" : "starting", reason: `${pending.name}: ${pending.reason}` };
  }
  const running = live.find((p) => p.phase === "Running");
  if (running) return { phase: "starting", reason: `${running.name}: ${running.reason ?? "not Ready yet"}` };
  if (replicas > 0) return { phase: "pending", reason: "no pod created yet" };
  return { phase: "absent" };
}

async function readActiveModel(
  ctx: KubeContext,
  options: { signal?: AbortSignal; deadline?: number },
): Promise<string | null> {
  try {
    const cm = await retryUnavailable(
      () =>
        ctx.core.readNamespacedConfigMap(
          { name: ctx.target.configMap, namespace: ctx.namespace },
          callOptions(options),
        ),
      options,
    );
    return cm.metadata?.annotations?.[ACTIVE_MODEL_ANNOTATION] || cm.data?.[ACTIVE_MODEL_KEY] || null;
  } catch (error) {
    const e = toKubeError(error, `reading ConfigMap ${ctx.namespace}/${ctx.target.configMap}`);
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}
