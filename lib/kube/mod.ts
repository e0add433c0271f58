/**
 * The only place vllm-chill talks to the Kubernetes API: a client bound to a
 * namespace and the vLLM object names with a few verbs (ensure, write the
 * active model, scale, waitGone, waitReady, watchModels, readState, RBAC
 * self-check), typed errors, and the table of API calls.
 *
 * @example
 * ```ts ignore
 * import { createKubeClient } from "./mod.ts";
 * const kube = createKubeClient({ namespace: "ai-apps", target: config.target });
 * const state = await kube.readState();
 * ```
 *
 * @module
 */
export { API_CALLS, type ApiCall } from "./api_calls.ts";
export { createKubeClient, type KubeClient } from "./client.ts";
export { type KubeClientOptions, type KubeContext, type KubeTarget, loadKubeConfig } from "./context.ts";
export {
  ConflictError,
  ForbiddenError,
  InvalidError,
  KubeError,
  NotFoundError,
  toKubeError,
  UnavailableError,
} from "./errors.ts";
export { type ModelsWatch, parseVllmModel, VLLM_MODEL, type WatchModelsOptions } from "./models_watch.ts";
export {
  createModelKube,
  ensureModelResources,
  listModelStates,
  MODEL_LABEL,
  modelContext,
  type ModelEnsureResult,
  type ModelKube,
  type ModelObjectsWatch,
  type ModelState,
  readModelState,
  type WatchedModel,
  watchModelObjects,
} from "./per_model.ts";
export type { PodShapeResult } from "./pod_shape.ts";
export { parseSleepLevel, readSleepLevel, setSleepLevel, SLEEP_LEVEL_ANNOTATION } from "./sleep_level.ts";
export { type PodState, podState } from "./pods.ts";
export { formatPermission, type Permission, type RbacReport } from "./rbac.ts";
export {
  ACTIVE_MODEL_ANNOTATION,
  type ConfigMapWrite,
  type EnsureResult,
  writeConfigMapData,
  type WriteOptions,
} from "./resources.ts";
export type { ScaleOptions } from "./scale.ts";
export { ACTIVE_MODEL_KEY, type KubeState, summarize, toObserved } from "./state.ts";
export type { PodWaitOptions } from "./waits.ts";
