/**
 * `createKubeClient`: one object bound to a namespace and the vLLM object
 * names, exposing the few verbs the rest of vllm-chill uses. It hides
 * client-node entirely.
 *
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { createKubeContext, type KubeClientOptions, type KubeContext } from "./context.ts";
import { type ModelsWatch, watchModels, type WatchModelsOptions } from "./models_watch.ts";
import {
  createModelKube,
  listModelStates,
  type ModelKube,
  type ModelObjectsWatch,
  type ModelState,
  watchModelObjects,
} from "./per_model.ts";
import { applyModelPodShape, type PodShapeResult } from "./pod_shape.ts";
import { type RbacReport, rbacSelfCheck } from "./rbac.ts";
import { type EnsureResult, ensureVllmResources, writeActiveModel, type WriteOptions } from "./resources.ts";
import { forceDeletePods, readReplicas, scale, type ScaleOptions } from "./scale.ts";
import { readSleepLevel, setSleepLevel } from "./sleep_level.ts";
import { type KubeState, readState } from "./state.ts";
import { type PodWaitOptions, waitGone, waitReady } from "./waits.ts";

/** The Kubernetes verbs of vllm-chill, bound to one namespace and target. */
export interface KubeClient {
  /** The shared context (API objects, names, logger). */
  readonly context: KubeContext;
  /** Namespace of every object. */
  readonly namespace: string;
  /**
   * Ensures ConfigMap/Service/Deployment (see `ensureVllmResources`). Once
   * `writeActiveModel` was called, the ConfigMap gets that model instead of
   * `model`, so a late start-up ensure never undoes a start.
   */
  ensureVllmResources(config: ChillConfig, model: NamedModel | null, options?: WriteOptions): Promise<EnsureResult>;
  /**
   * Writes the model's configuration to the ConfigMap (resourceVersion, 409 retry); serialized with ensure.
   * `sleepMode` (default: the model may sleep) adds vLLM's sleep mode.
   */
  writeActiveModel(
    config: ChillConfig,
    model: NamedModel,
    options?: WriteOptions & { sleepMode?: boolean },
  ): Promise<void>;
  /**
   * Gives the Deployment's pod template `model`'s shape (image, GPUs, CPU/memory) when it differs, only at 0
   * replicas (see `applyModelPodShape`).
   */
  applyModelPodShape(config: ChillConfig, model: NamedModel, options?: WriteOptions): Promise<PodShapeResult>;
  /** Sets replicas through `deployments/scale`. */
  scale(replicas: number, options?: ScaleOptions): Promise<void>;
  /** Desired replicas; null when the Deployment is missing. */
  readReplicas(options?: ScaleOptions): Promise<number | null>;
  /** Waits (watch) until no pod of the Deployment exists. */
  waitGone(options: PodWaitOptions): Promise<void>;
  /** Waits (watch) until a pod is Ready; resolves with its name. */
  waitReady(options: PodWaitOptions): Promise<string>;
  /** Deletes the Deployment's pods with grace period 0. */
  forceDeletePods(options?: ScaleOptions): Promise<string[]>;
  /** List + watch VLLMModel objects into `registry` until `signal` aborts. */
  watchModels(registry: ModelRegistry, signal: AbortSignal, options?: WatchModelsOptions): ModelsWatch;
  /** Replicas, active model and pods, read back from the cluster. */
  readState(options?: { signal?: AbortSignal; deadline?: number }): Promise<KubeState>;
  /** Records (null: removes) the sleep level on the Deployment while its engine sleeps. */
  setSleepLevel(level: 1 | 2 | null, options?: WriteOptions): Promise<void>;
  /** The sleep level recorded on the Deployment, or null. */
  readSleepLevel(options?: WriteOptions): Promise<1 | 2 | null>;
  /** Per-model layout: model `key`'s objects (`<target.deployment>-<key>`, …), bound (one object per key). */
  model(key: string): ModelKube;
  /** Per-model layout: every model's state (labelled Deployments, and the `known` models by name). */
  readModelStates(known: readonly string[], options?: WriteOptions): Promise<ModelState[]>;
  /** Per-model layout: list + watch every model's Deployment and pods until `signal` aborts. */
  watchModelObjects(signal: AbortSignal): ModelObjectsWatch;
  /** One SelfSubjectAccessReview per API_CALLS (entry, verb). */
  rbacSelfCheck(options?: { signal?: AbortSignal; deadline?: number }): Promise<RbacReport>;
  /** Stops every watch and wait of this client. */
  close(): void;
}

/**
 * Creates the client: credentials from `kubeconfig`, else KUBECONFIG, else
 * the in-cluster service account, else ~/.kube/config (one clear error when
 * none works). `kubeConfig` injects already-loaded credentials.
 *
 * @example
 * ```ts ignore
 * import { createKubeClient } from "./client.ts";
 * const kube = createKubeClient({ namespace: "ai-apps", target: config.target, log });
 * await kube.scale(1);
 * await kube.waitReady({ deadline: Date.now() + 60_000 });
 * kube.close();
 * ```
 */
export function createKubeClient(options: KubeClientOptions & { kubeConfig?: KubeConfig }): KubeClient {
  const closer = new AbortController();
  const ctx = createKubeContext(options, closer.signal, options.kubeConfig);
  // ConfigMap writes run one at a time, and the model last asked for by writeActiveModel (a start) wins over
  // the initial model of a background ensure that happens to run later.
  let lock: Promise<unknown> = Promise.resolve();
  let intended: NamedModel | undefined;
  // One bound object per model: the pod selector is cached per context.
  const models = new Map<string, ModelKube>();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = lock.then(fn, fn);
    lock = run.catch(() => {});
    return run;
  };
  return {
    context: ctx,
    namespace: ctx.namespace,
    ensureVllmResources: (config, model, o) => serialized(() => ensureVllmResources(ctx, config, intended ?? model, o)),
    writeActiveModel: (config, model, o) => {
      intended = model;
      return serialized(() => writeActiveModel(ctx, config, model, o));
    },
    applyModelPodShape: (config, model, o) => applyModelPodShape(ctx, config, model, o),
    scale: (replicas, o) => scale(ctx, replicas, o),
    readReplicas: (o) => readReplicas(ctx, o),
    waitGone: (o) => waitGone(ctx, o),
    waitReady: (o) => waitReady(ctx, o),
    forceDeletePods: (o) => forceDeletePods(ctx, o),
    watchModels: (registry, signal, o) => watchModels(ctx, registry, signal, o),
    readState: (o) => readState(ctx, o),
    rbacSelfCheck: (o) => rbacSelfCheck(ctx, o),
    setSleepLevel: (level, o) => setSleepLevel(ctx, level, o),
    readSleepLevel: (o) => readSleepLevel(ctx, o),
    model: (key) => {
      let bound = models.get(key);
      if (!bound) models.set(key, bound = createModelKube(ctx, key));
      return bound;
    },
    readModelStates: (known, o) => listModelStates(ctx, known, o),
    watchModelObjects: (signal) => watchModelObjects(ctx, signal),
    close: () => closer.abort(new Error("kube client closed")),
  };
}
