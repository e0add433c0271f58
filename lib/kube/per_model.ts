/**
 * The per-model layout's Kubernetes side. One model's objects are driven
 * through a {@link ModelKube}: the same verbs as the shared layout (scale,
 * waits, pod shape) on a context whose target names that model's
 * Deployment, ConfigMap and Service. Also: ensuring a model's objects,
 * reading every model's state back (Deployments found by the model label,
 * plus the known models by name), and a list + watch of every model's
 * Deployment and pods for /admin/status.
 *
 * @module
 */
import type { V1ConfigMap, V1Deployment, V1Pod } from "@kubernetes/client-node";
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import { MODEL_LABEL } from "../manifests/labels.ts";
import { type PerModelNames, perModelNames, renderModelResources } from "../manifests/per_model.ts";
import type { DeploymentPhase } from "./state.ts";
import { summarize } from "./state.ts";
import { anySignal, callOptions, type KubeContext } from "./context.ts";
import { NotFoundError, toKubeError } from "./errors.ts";
import { runListWatch } from "./list_watch.ts";
import { applyModelPodShape, type PodShapeResult } from "./pod_shape.ts";
import { listPods, type PodState, podState, selectorOf } from "./pods.ts";
import { createIfMissing, writeConfigMapData, type WriteOptions } from "./resources.ts";
import { backoffDelay, retryUnavailable, sleep } from "./retry.ts";
import { forceDeletePods, scale, type ScaleOptions } from "./scale.ts";
import { parseSleepLevel, setSleepLevel } from "./sleep_level.ts";
import { type PodWaitOptions, waitGone, waitReady, watchPodLost } from "./waits.ts";

export { MODEL_LABEL };

/** What {@link ensureModelResources} did. */
export interface ModelEnsureResult {
  /** Objects created ("Deployment/vllm-a", …). */
  created: string[];
  /** Objects updated (the ConfigMap, when its data changed). */
  updated: string[];
  /** Objects that existed and were left as they are. */
  userManaged: string[];
  /** The sleep level recorded on the Deployment (a previous engine slept), or null. */
  sleepLevel: 1 | 2 | null;
}

/** One model's state read back from the cluster. */
export interface ModelState {
  /** The model key (the label value). */
  key: string;
  /** Its objects' names. */
  names: PerModelNames;
  /** False when its Deployment does not exist. */
  deploymentExists: boolean;
  /** Desired replicas (0 when the Deployment is missing). */
  replicas: number;
  /** Every pod of its Deployment. */
  pods: PodState[];
  /** The engine phase these add up to. */
  phase: DeploymentPhase;
  /** Why, when pending/starting/failed/terminating. */
  reason?: string;
  /** The sleep level recorded on its Deployment (its engine sleeps, as last recorded), or null. */
  sleepLevel: 1 | 2 | null;
}

/** One model's objects, bound: the verbs the per-model backend uses. */
export interface ModelKube {
  /** The model key. */
  readonly key: string;
  /** Its Deployment, ConfigMap and Service names. */
  readonly names: PerModelNames;
  /** The context whose target names its objects. */
  readonly context: KubeContext;
  /** Creates what is missing, updates the ConfigMap (see {@link ensureModelResources}). */
  ensure(
    config: ChillConfig,
    model: NamedModel,
    options: WriteOptions & { sleepMode: boolean },
  ): Promise<ModelEnsureResult>;
  /** Gives its Deployment's pod template the model's shape, at 0 replicas only. */
  applyPodShape(config: ChillConfig, model: NamedModel, options?: WriteOptions): Promise<PodShapeResult>;
  /** Sets its Deployment's replicas. */
  scale(replicas: number, options?: ScaleOptions): Promise<void>;
  /** Waits (watch) until one of its pods is Ready; resolves with its name. */
  waitReady(options: PodWaitOptions): Promise<string>;
  /** Waits (watch) until none of its pods exists. */
  waitGone(options: PodWaitOptions): Promise<void>;
  /** Deletes its pods with grace period 0. */
  forceDeletePods(options?: ScaleOptions): Promise<string[]>;
  /** Resolves with a reason once its Ready pod `pod` fails on its own; null when `signal` aborts first. */
  watchPodLost(pod: string, signal: AbortSignal): Promise<string | null>;
  /** Records (null: removes) the sleep level on its Deployment. */
  setSleepLevel(level: 1 | 2 | null, options?: WriteOptions): Promise<void>;
  /** Its state read back. */
  readState(options?: WriteOptions): Promise<ModelState>;
}

/**
 * A context like `ctx` whose target names `names` (the shared verbs then act on one model's objects).
 *
 * @example
 * ```ts ignore
 * const ctxA = modelContext(ctx, perModelNames(ctx.target, "a"));
 * await scale(ctxA, 1);
 * ```
 */
export function modelContext(ctx: KubeContext, names: PerModelNames): KubeContext {
  return { ...ctx, target: { ...names } };
}

/**
 * Binds model `key`'s objects (names derived from `ctx.target`).
 *
 * @example
 * ```ts ignore
 * const a = createModelKube(ctx, "a");
 * await a.scale(1);
 * await a.waitReady({ deadline: Date.now() + 60_000 });
 * ```
 */
export function createModelKube(ctx: KubeContext, key: string): ModelKube {
  const names = perModelNames(ctx.target, key);
  const context = modelContext(ctx, names);
  return {
    key,
    names,
    context,
    ensure: (config, model, options) => ensureModelResources(context, config, model, options),
    applyPodShape: (config, model, options) => applyModelPodShape(context, config, model, options),
    scale: (replicas, options) => scale(context, replicas, options),
    waitReady: (options) => waitReady(context, options),
    waitGone: (options) => waitGone(context, options),
    forceDeletePods: (options) => forceDeletePods(context, options),
    watchPodLost: (pod, signal) => watchPodLost(context, pod, signal),
    setSleepLevel: (level, options) => setSleepLevel(context, level, options),
    readState: (options) => readModelState(context, key, options),
  };
}

/**
 * Ensures model `model.name`'s objects in the context's target names: the
 * ConfigMap is created or its data updated (engine config, sleep mode, env;
 * left alone when unchanged); the Service and the Deployment (0 replicas)
 * are created when missing and otherwise left alone.
 *
 * @example
 * ```ts ignore
 * const result = await ensureModelResources(ctxA, config, model, { sleepMode: true });
 * ```
 */
export async function ensureModelResources(
  ctx: KubeContext,
  config: ChillConfig,
  model: NamedModel,
  options: WriteOptions & { sleepMode: boolean },
): Promise<ModelEnsureResult> {
  const [configMap, service, deployment] = renderModelResources(config, model, { sleepMode: options.sleepMode });
  const ns = ctx.namespace;
  const names = ctx.target;
  const opts = callOptions(options);
  const result: ModelEnsureResult = { created: [], updated: [], userManaged: [], sleepLevel: null };

  const cmName = `ConfigMap/${names.configMap}`;
  const outcome = await writeConfigMapData(ctx, {
    name: names.configMap,
    data: { ...configMap.data },
    annotations: { ...configMap.metadata?.annotations },
    render: () => configMap as unknown as V1ConfigMap,
    skipUnchanged: true,
  }, options);
  (outcome === "created" ? result.created : outcome === "updated" ? result.updated : result.userManaged).push(cmName);

  const svcName = `Service/${names.service}`;
  const svcCreated = await createIfMissing(
    ctx,
    svcName,
    () => ctx.core.readNamespacedService({ name: names.service, namespace: ns }, opts),
    () => ctx.core.createNamespacedService({ namespace: ns, body: service as never }, opts),
    options,
  );
  (svcCreated ? result.created : result.userManaged).push(svcName);

  const depName = `Deployment/${names.deployment}`;
  let existing: V1Deployment | undefined;
  const depCreated = await createIfMissing(
    ctx,
    depName,
    async () => existing = await ctx.apps.readNamespacedDeployment({ name: names.deployment, namespace: ns }, opts),
    () => ctx.apps.createNamespacedDeployment({ namespace: ns, body: deployment as never }, opts),
    options,
  );
  (depCreated ? result.created : result.userManaged).push(depName);
  result.sleepLevel = depCreated ? null : parseSleepLevel(existing?.metadata?.annotations);
  for (const name of result.created) ctx.log.info("created vLLM object", { object: name, model: model.name });
  return result;
}

/**
 * Model `key`'s state: its Deployment (given, else read by name), its pods (by the Deployment's selector),
 * the phase they add up to and the recorded sleep level.
 *
 * @example
 * ```ts ignore
 * const state = await readModelState(ctxA, "a", { signal });
 * ```
 */
export async function readModelState(
  ctx: KubeContext,
  key: string,
  options: WriteOptions = {},
  deployment?: V1Deployment,
): Promise<ModelState> {
  const names = { ...ctx.target };
  let found = deployment;
  if (!found) {
    try {
      found = await retryUnavailable(
        () =>
          ctx.apps.readNamespacedDeployment({ name: names.deployment, namespace: ctx.namespace }, callOptions(options)),
        options,
      );
    } catch (error) {
      const e = toKubeError(error, `reading deployment ${ctx.namespace}/${names.deployment}`);
      if (!(e instanceof NotFoundError)) throw e;
      return { key, names, deploymentExists: false, replicas: 0, pods: [], phase: "absent", sleepLevel: null };
    }
  }
  // The API server defaults an unset replicas to 1.
  const replicas = found.spec?.replicas ?? 1;
  const pods = (await listPods(ctx, selectorOf(found), options)).items.map(podState);
  return {
    key,
    names,
    deploymentExists: true,
    replicas,
    pods,
    ...summarize(replicas, pods),
    sleepLevel: parseSleepLevel(found.metadata?.annotations),
  };
}

/**
 * Every model's state: the Deployments that carry the model label (under their derived name) and the `known`
 * models by name (a missing one reads as absent).
 *
 * @example
 * ```ts ignore
 * const states = await listModelStates(ctx, registry.list().map((m) => m.name), { signal });
 * ```
 */
export async function listModelStates(
  ctx: KubeContext,
  known: readonly string[],
  options: WriteOptions = {},
): Promise<ModelState[]> {
  let labelled: V1Deployment[];
  try {
    labelled = (await retryUnavailable(
      () =>
        ctx.apps.listNamespacedDeployment(
          { namespace: ctx.namespace, labelSelector: MODEL_LABEL },
          callOptions(options),
        ),
      options,
    )).items;
  } catch (error) {
    throw toKubeError(error, `listing the per-model deployments of ${ctx.namespace}`);
  }
  const byKey = new Map<string, V1Deployment>();
  for (const deployment of labelled) {
    const key = deployment.metadata?.labels?.[MODEL_LABEL];
    if (key && deployment.metadata?.name === perModelNames(ctx.target, key).deployment) byKey.set(key, deployment);
  }
  const keys = [...new Set([...byKey.keys(), ...known])];
  return await Promise.all(
    keys.map((key) => readModelState(modelContext(ctx, perModelNames(ctx.target, key)), key, options, byKey.get(key))),
  );
}

/** One model as the watch sees it. */
export interface WatchedModel {
  /** Its Deployment's name, when it exists. */
  deployment: string | null;
  /** Desired replicas (0 without a Deployment). */
  replicas: number;
  /** The recorded sleep level. */
  sleepLevel: 1 | 2 | null;
  /** Its pods. */
  pods: PodState[];
}

/** The running watch of every model's Deployment and pods. */
export interface ModelObjectsWatch {
  /** The models seen, by key (Deployments and pods that carry the model label). */
  view(): Map<string, WatchedModel>;
  /** True once both lists came back. */
  synced(): boolean;
  /** Resolves when the watch stopped (signal aborted or client closed). */
  done: Promise<void>;
}

/**
 * Lists and watches every Deployment and pod carrying the model label, until `signal` aborts; `view()` is
 * what they say now. Never throws: errors are logged and retried.
 *
 * @example
 * ```ts ignore
 * const watch = watchModelObjects(ctx, signal);
 * watch.view().get("a")?.pods.map((p) => p.phase);
 * ```
 */
export function watchModelObjects(ctx: KubeContext, signal: AbortSignal): ModelObjectsWatch {
  const stop = anySignal([signal, ctx.closed]);
  const ns = encodeURIComponent(ctx.namespace);
  const deployments = new Map<string, V1Deployment>();
  const pods = new Map<string, V1Pod>();
  const listed = { deployments: false, pods: false };
  const run = async <T extends V1Deployment | V1Pod>(
    what: "deployments" | "pods",
    path: string,
    list: (s: AbortSignal) => Promise<{ items: T[]; resourceVersion: string }>,
    into: Map<string, T>,
  ) => {
    for (let attempt = 0; !stop.aborted; attempt++) {
      try {
        await runListWatch<T>(ctx.kubeConfig, {
          path,
          query: { labelSelector: MODEL_LABEL },
          list,
          onList: (items) => {
            into.clear();
            for (const item of items) into.set(item.metadata?.name ?? "", item);
            listed[what] = true;
          },
          onEvent: (type, item) => {
            if (type === "DELETED") into.delete(item.metadata?.name ?? "");
            else into.set(item.metadata?.name ?? "", item);
          },
          onListError: (error, n) => {
            ctx.log.warn(`listing the per-model ${what} failed; will retry`, { error: toKubeError(error).message });
            return backoffDelay(n, 200, 10_000);
          },
          timeoutMs: ctx.watchTimeoutMs,
        }, stop);
      } catch (error) {
        ctx.log.warn(`watching the per-model ${what} failed; will retry`, { error: toKubeError(error).message });
        await sleep(backoffDelay(attempt, 500, 30_000), stop).catch(() => {});
      }
    }
  };
  const done = Promise.all([
    run<V1Deployment>(
      "deployments",
      `/apis/apps/v1/namespaces/${ns}/deployments`,
      async (s) => {
        const list = await ctx.apps.listNamespacedDeployment(
          { namespace: ctx.namespace, labelSelector: MODEL_LABEL },
          callOptions({ signal: s }),
        );
        return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? "" };
      },
      deployments,
    ),
    run<V1Pod>("pods", `/api/v1/namespaces/${ns}/pods`, (s) => listPods(ctx, MODEL_LABEL, { signal: s }), pods),
  ]).then(() => {});
  return {
    view() {
      const out = new Map<string, WatchedModel>();
      const entry = (key: string) => {
        let model = out.get(key);
        if (!model) out.set(key, model = { deployment: null, replicas: 0, sleepLevel: null, pods: [] });
        return model;
      };
      for (const deployment of deployments.values()) {
        const key = deployment.metadata?.labels?.[MODEL_LABEL];
        if (!key) continue;
        const model = entry(key);
        model.deployment = deployment.metadata?.name ?? null;
        model.replicas = deployment.spec?.replicas ?? 1;
        model.sleepLevel = parseSleepLevel(deployment.metadata?.annotations);
      }
      for (const pod of pods.values()) {
        const key = pod.metadata?.labels?.[MODEL_LABEL];
        if (key) entry(key).pods.push(podState(pod));
      }
      for (const model of out.values()) model.pods.sort((a, b) => a.name.localeCompare(b.name));
      return out;
    },
    synced: () => listed.deployments && listed.pods,
    done,
  };
}
