/**
 * Gives the vLLM Deployment's pod template the shape of the model about to
 * start (image, GPUs, CPU/memory: lib/manifests/pod_template.ts), while it
 * is at 0 replicas and only when it differs, with one JSON Patch guarded by
 * `test` operations (replicas still 0, the same container at that index).
 *
 * @module
 */
import type { V1Deployment } from "@kubernetes/client-node";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import { podShapePatch } from "../manifests/pod_template.ts";
import { callOptions, type KubeContext } from "./context.ts";
import { InvalidError, toKubeError } from "./errors.ts";
import { retryUnavailable } from "./retry.ts";
import type { WriteOptions } from "./resources.ts";

/** What {@link applyModelPodShape} did. */
export interface PodShapeResult {
  /** "patched": the template changed; "unchanged": it had the shape; "skipped": not at 0 replicas. */
  outcome: "patched" | "unchanged" | "skipped";
  /** The changes made ("limits.nvidia.com/gpu 1 → 2"), when patched. */
  changes: string[];
}

const ATTEMPTS = 4;

/**
 * Reads the Deployment and, when its pod template lacks `model`'s shape and
 * it is at 0 replicas, patches the owned fields (the vLLM container's image
 * and resources; the base shape annotation the first time). A Deployment
 * that is not at 0 replicas is left as it is (a pod of it may be serving).
 * A `test` failing because the Deployment changed meanwhile reads it again.
 *
 * @example
 * ```ts ignore
 * const { outcome, changes } = await applyModelPodShape(ctx, config, registry.resolve("big")!);
 * ```
 */
export async function applyModelPodShape(
  ctx: KubeContext,
  config: ChillConfig,
  model: NamedModel,
  options: WriteOptions = {},
): Promise<PodShapeResult> {
  const name = ctx.target.deployment;
  const ns = ctx.namespace;
  const opts = callOptions(options);
  for (let attempt = 1;; attempt++) {
    let deployment: V1Deployment;
    try {
      deployment = await retryUnavailable(
        () => ctx.apps.readNamespacedDeployment({ name, namespace: ns }, opts),
        options,
      );
    } catch (error) {
      throw toKubeError(error, `reading deployment ${ns}/${name}`);
    }
    const patch = podShapePatch(deployment as unknown as IDeployment, config, model);
    if (patch === null) return { outcome: "unchanged", changes: [] };
    if (deployment.spec?.replicas !== 0) {
      ctx.log.warn("the vLLM Deployment is not at 0 replicas: its pod template keeps its shape", {
        deployment: name,
        model: model.name,
        replicas: deployment.spec?.replicas,
        wanted: patch.changes,
      });
      return { outcome: "skipped", changes: [] };
    }
    try {
      await ctx.apps.patchNamespacedDeployment({ name, namespace: ns, body: patch.ops }, opts);
      ctx.log.info("gave the vLLM pod template the model's shape", {
        deployment: name,
        model: model.name,
        changes: patch.changes,
      });
      return { outcome: "patched", changes: patch.changes };
    } catch (error) {
      const e = toKubeError(error, `patching the pod template of deployment ${ns}/${name}`);
      if (options.signal?.aborted) throw options.signal.reason;
      // 422: a `test` failed (the Deployment changed since it was read); 5xx/network: unknown outcome. Read again.
      const retryable = e instanceof InvalidError && e.status === 422 || e.status === 0 || e.status >= 500;
      if (!retryable || attempt >= ATTEMPTS) throw e;
      if (options.deadline !== undefined && Date.now() >= options.deadline) throw e;
      ctx.log.debug("pod template patch refused; reading the Deployment again", { attempt, error: e.message });
    }
  }
}
