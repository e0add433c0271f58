/**
 * The sleep level recorded on a vLLM Deployment while its engine sleeps
 * (annotation `vllm.efortin.github.io/sleep-level`): written before
 * `POST /sleep`, removed once a wake is complete, so that a restarted proxy
 * wakes the engine as deep as it slept and `status --cluster` shows it.
 *
 * @module
 */
import { SLEEP_LEVEL_ANNOTATION } from "../manifests/labels.ts";
import { callOptions, type KubeContext } from "./context.ts";
import { NotFoundError, toKubeError } from "./errors.ts";
import type { WriteOptions } from "./resources.ts";
import { retryUnavailable } from "./retry.ts";

export { SLEEP_LEVEL_ANNOTATION };

/**
 * The level an annotation value records, or null (absent or unreadable).
 *
 * @example
 * ```ts
 * import { parseSleepLevel } from "./sleep_level.ts";
 * parseSleepLevel({ "vllm.efortin.github.io/sleep-level": "2" }); // 2
 * parseSleepLevel({}); // null
 * ```
 */
export function parseSleepLevel(annotations: Readonly<Record<string, string>> | undefined): 1 | 2 | null {
  const value = annotations?.[SLEEP_LEVEL_ANNOTATION];
  return value === "1" ? 1 : value === "2" ? 2 : null;
}

/**
 * Records (or, with null, removes) the sleep level on the context's Deployment with a merge patch on its
 * metadata (the pod template is untouched: no rollout). Idempotent, so retried on 5xx/network errors.
 *
 * @example
 * ```ts ignore
 * await setSleepLevel(ctx, 1, { signal });
 * ```
 */
export async function setSleepLevel(ctx: KubeContext, level: 1 | 2 | null, options: WriteOptions = {}): Promise<void> {
  const name = ctx.target.deployment;
  const body = { metadata: { annotations: { [SLEEP_LEVEL_ANNOTATION]: level === null ? null : String(level) } } };
  try {
    await retryUnavailable(
      () =>
        ctx.apps.patchNamespacedDeployment(
          { name, namespace: ctx.namespace, body },
          callOptions({ signal: options.signal, patch: "merge" }),
        ),
      options,
    );
  } catch (error) {
    throw toKubeError(error, `recording the sleep level on deployment ${ctx.namespace}/${name}`);
  }
}

/**
 * The sleep level recorded on the context's Deployment, or null (none, or no Deployment).
 *
 * @example
 * ```ts ignore
 * const level = await readSleepLevel(ctx, { signal });
 * ```
 */
export async function readSleepLevel(ctx: KubeContext, options: WriteOptions = {}): Promise<1 | 2 | null> {
  const name = ctx.target.deployment;
  try {
    const deployment = await retryUnavailable(
      () => ctx.apps.readNamespacedDeployment({ name, namespace: ctx.namespace }, callOptions(options)),
      options,
    );
    return parseSleepLevel(deployment.metadata?.annotations);
  } catch (error) {
    const e = toKubeError(error, `reading deployment ${ctx.namespace}/${name}`);
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}
