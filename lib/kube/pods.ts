/**
 * Reading pods: which pods belong to the vLLM Deployment, and what state a
 * pod is in (Pending with its reason, Running, Ready, Terminating, crash-looping).
 *
 * @module
 */
import type { V1LabelSelector, V1Pod } from "@kubernetes/client-node";
import type { KubeContext } from "./context.ts";
import { callOptions } from "./context.ts";
import { toKubeError } from "./errors.ts";
import { retryUnavailable } from "./retry.ts";

/** A pod's state in the words the proxy uses. */
export interface PodState {
  /** Pod name. */
  name: string;
  /** "Pending" | "Running" | "Ready" | "Terminating" | "Failed" | "Succeeded" | "Unknown". */
  phase: "Pending" | "Running" | "Ready" | "Terminating" | "Failed" | "Succeeded" | "Unknown";
  /** Why, when not Ready (e.g. "Unschedulable: 0/1 nodes are available…", "CrashLoopBackOff"). */
  reason?: string;
  /** Container restarts (sum). */
  restarts: number;
  /** True when the container crash-loops (CrashLoopBackOff or 3 restarts or more). */
  crashLoop: boolean;
}

/** Restarts from which a pod counts as crash-looping even between back-offs. */
export const CRASHLOOP_RESTARTS = 3;

/**
 * Classifies a pod.
 *
 * @example
 * ```ts
 * import { podState } from "./pods.ts";
 * podState({
 *   metadata: { name: "vllm-1" },
 *   status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }] },
 * }).phase; // "Ready"
 * ```
 */
export function podState(pod: V1Pod): PodState {
  const name = pod.metadata?.name ?? "";
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const restarts = statuses.reduce((sum, s) => sum + (s.restartCount ?? 0), 0);
  const waiting = statuses.map((s) => s.state?.waiting).find((w) => w?.reason);
  const crashLoop = statuses.some((s) =>
    s.state?.waiting?.reason === "CrashLoopBackOff" || (s.restartCount ?? 0) >= CRASHLOOP_RESTARTS
  );
  if (pod.metadata?.deletionTimestamp) {
    return { name, phase: "Terminating", reason: `pod ${name} is terminating`, restarts, crashLoop };
  }
  const phase = pod.status?.phase;
  const conditions = pod.status?.conditions ?? [];
  const ready = conditions.some((c) => c.type === "Ready" && c.status === "True");
  if (phase === "Running" && ready) return { name, phase: "Ready", restarts, crashLoop: false };
  if (crashLoop) {
    const last = statuses.find((s) => s.lastState?.terminated)?.lastState?.terminated;
    const detail = last ? ` (last exit code ${last.exitCode}${last.reason ? `, ${last.reason}` : ""})` : "";
    return {
      name,
      phase: phase === "Failed" ? "Failed" : "Running",
      reason: `CrashLoopBackOff: ${restarts} restarts${detail}`,
      restarts,
      crashLoop,
    };
  }
  if (phase === "Pending" || !phase) {
    const scheduled = conditions.find((c) => c.type === "PodScheduled");
    let reason: string | undefined;
    if (scheduled?.status === "False") {
      reason = `${scheduled.reason ?? "Unschedulable"}: ${scheduled.message ?? ""}`.trim();
    } else if (waiting) reason = `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`;
    else reason = pod.status?.reason ?? (scheduled ? "ContainerCreating" : "waiting to be scheduled");
    return { name, phase: "Pending", reason, restarts, crashLoop };
  }
  if (phase === "Running") {
    const reason = waiting ? `${waiting.reason}` : "not Ready yet (readiness probe)";
    return { name, phase: "Running", reason, restarts, crashLoop };
  }
  if (phase === "Failed" || phase === "Succeeded") {
    return { name, phase, reason: pod.status?.reason ?? pod.status?.message ?? `pod ${phase}`, restarts, crashLoop };
  }
  return { name, phase: "Unknown", reason: pod.status?.reason, restarts, crashLoop };
}

const selectors = new WeakMap<KubeContext, string>();

/**
 * The label selector of the Deployment's pods ("app=vllm"), read from the
 * Deployment (so a user-managed Deployment with other labels works) and
 * cached per client. Throws NotFoundError when the Deployment is missing.
 *
 * @example
 * ```ts ignore
 * const selector = await podSelector(ctx, { signal });
 * ```
 */
export async function podSelector(
  ctx: KubeContext,
  options: { signal?: AbortSignal; deadline?: number } = {},
): Promise<string> {
  const cached = selectors.get(ctx);
  if (cached) return cached;
  const deployment = await retryUnavailable(
    () =>
      ctx.apps.readNamespacedDeployment(
        { name: ctx.target.deployment, namespace: ctx.namespace },
        callOptions(options),
      ),
    options,
  ).catch((e) => {
    throw toKubeError(e, `reading deployment ${ctx.namespace}/${ctx.target.deployment}`);
  });
  const selector = selectorOf(deployment);
  selectors.set(ctx, selector);
  return selector;
}

/**
 * A Deployment's pod selector as a label selector string; throws on an empty one.
 *
 * @example
 * ```ts
 * import { selectorOf } from "./pods.ts";
 * selectorOf({ metadata: { name: "vllm-a" }, spec: { selector: { matchLabels: { app: "vllm", m: "a" } } } });
 * // "app=vllm,m=a"
 * ```
 */
export function selectorOf(
  deployment: { metadata?: { name?: string }; spec?: { selector?: V1LabelSelector } },
): string {
  const labels = deployment.spec?.selector?.matchLabels ?? {};
  const expressions = deployment.spec?.selector?.matchExpressions ?? [];
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  for (const e of expressions) {
    if (e.operator === "In") parts.push(`${e.key} in (${(e.values ?? []).join(",")})`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin (${(e.values ?? []).join(",")})`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
  }
  if (parts.length === 0) throw new Error(`deployment ${deployment.metadata?.name ?? ""} has an empty selector`);
  return parts.join(",");
}

/**
 * Lists the Deployment's pods with the list's resourceVersion.
 *
 * @example
 * ```ts ignore
 * const { items } = await listPods(ctx, "app=vllm", { signal });
 * ```
 */
export async function listPods(
  ctx: KubeContext,
  selector: string,
  options: { signal?: AbortSignal; deadline?: number } = {},
): Promise<{ items: V1Pod[]; resourceVersion: string }> {
  const list = await retryUnavailable(
    () => ctx.core.listNamespacedPod({ namespace: ctx.namespace, labelSelector: selector }, callOptions(options)),
    options,
  );
  return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? "" };
}
