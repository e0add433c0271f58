/**
 * Replicas through the Deployment's `scale` subresource (merge patch), and
 * force deletion of its pods (grace period 0) for `switchStrategy: force`.
 *
 * @module
 */
import { callOptions, type KubeContext } from "./context.ts";
import { NotFoundError, toKubeError } from "./errors.ts";
import { listPods, podSelector } from "./pods.ts";
import { retryUnavailable } from "./retry.ts";

/** Options of the scale verbs. */
export interface ScaleOptions {
  /** Aborts the call. */
  signal?: AbortSignal;
  /** Absolute time (ms since epoch) after which retries stop. */
  deadline?: number;
}

/**
 * Sets the Deployment's replicas with a merge patch on `deployments/scale`
 * (idempotent, so retried on 5xx/network errors).
 *
 * @example
 * ```ts ignore
 * await scale(ctx, 1, { signal });
 * ```
 */
export async function scale(ctx: KubeContext, replicas: number, options: ScaleOptions = {}): Promise<void> {
  const name = ctx.target.deployment;
  try {
    await retryUnavailable(
      () =>
        ctx.apps.patchNamespacedDeploymentScale(
          { name, namespace: ctx.namespace, body: { spec: { replicas } } },
          callOptions({ signal: options.signal, patch: "merge" }),
        ),
      options,
    );
  } catch (error) {
    throw toKubeError(error, `scaling deployment ${ctx.namespace}/${name} to ${replicas}`);
  }
  ctx.log.info("scaled vLLM deployment", { deployment: name, replicas });
}

/**
 * Reads the Deployment's desired replicas from `deployments/scale`; null
 * when the Deployment does not exist.
 *
 * @example
 * ```ts ignore
 * const replicas = await readReplicas(ctx);
 * ```
 */
export async function readReplicas(ctx: KubeContext, options: ScaleOptions = {}): Promise<number | null> {
  const name = ctx.target.deployment;
  try {
    const s = await retryUnavailable(
      () => ctx.apps.readNamespacedDeploymentScale({ name, namespace: ctx.namespace }, callOptions(options)),
      options,
    );
    return s.spec?.replicas ?? 0;
  } catch (error) {
    const e = toKubeError(error, `reading replicas of deployment ${ctx.namespace}/${name}`);
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}

/**
 * Deletes every pod of the Deployment with grace period 0 (the GPU is freed
 * at once). Pods already gone are ignored. Returns the names deleted.
 *
 * @example
 * ```ts ignore
 * await scale(ctx, 0);
 * await forceDeletePods(ctx);
 * ```
 */
export async function forceDeletePods(ctx: KubeContext, options: ScaleOptions = {}): Promise<string[]> {
  let selector: string;
  try {
    selector = await podSelector(ctx, options);
  } catch (error) {
    if (error instanceof NotFoundError) return [];
    throw error;
  }
  const { items } = await listPods(ctx, selector, options);
  const deleted: string[] = [];
  await Promise.all(items.map(async (pod) => {
    const name = pod.metadata?.name;
    if (!name) return;
    try {
      await retryUnavailable(
        () =>
          ctx.core.deleteNamespacedPod(
            { name, namespace: ctx.namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0 } },
            callOptions(options),
          ),
        options,
      );
      deleted.push(name);
    } catch (error) {
      const e = toKubeError(error, `force-deleting pod ${ctx.namespace}/${name}`);
      if (!(e instanceof NotFoundError)) throw e;
    }
  }));
  if (deleted.length) ctx.log.info("force-deleted vLLM pods", { pods: deleted });
  return deleted;
}
