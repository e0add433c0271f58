/**
 * The vLLM objects vllm-chill manages when model switching is on: the
 * ConfigMap is created or updated with the model's configuration; the
 * Service and Deployment are created when missing and otherwise left alone
 * (user-managed) — but for the Deployment's pod shape, which a switch sets
 * (lib/kube/pod_shape.ts). Object bodies come from `lib/manifests` (pure
 * functions).
 *
 * @module
 */
import type { V1ConfigMap, V1Deployment, V1Service } from "@kubernetes/client-node";
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import { ACTIVE_MODEL_KEY, buildModelConfigMapData, renderVllmResources } from "../manifests/vllm.ts";
import { callOptions, type KubeContext } from "./context.ts";
import { ConflictError, NotFoundError, toKubeError } from "./errors.ts";
import { retryUnavailable, sleep } from "./retry.ts";
import { ACTIVE_MODEL_ANNOTATION } from "../manifests/labels.ts";

export { ACTIVE_MODEL_ANNOTATION };

/** Options shared by the write verbs. */
export interface WriteOptions {
  /** Aborts the call. */
  signal?: AbortSignal;
  /** Absolute time (ms since epoch) after which retries stop. */
  deadline?: number;
}

/** What {@link ensureVllmResources} did. */
export interface EnsureResult {
  /** False when no model exists anywhere: nothing was created; call again on the first request. */
  ensured: boolean;
  /** Objects created ("ConfigMap/vllm-config", …). */
  created: string[];
  /** Objects updated (the ConfigMap). */
  updated: string[];
  /** Objects that already existed and were left unchanged. */
  userManaged: string[];
}

/**
 * Ensures the ConfigMap (created or updated with `model`'s configuration),
 * the Service and the Deployment (replicas 0; both only created when
 * missing). With `model` null, logs a warning and creates nothing.
 *
 * @example
 * ```ts ignore
 * const result = await ensureVllmResources(ctx, config, registry.first() ?? null);
 * if (!result.ensured) console.log("will create the vLLM objects on the first request");
 * ```
 */
export async function ensureVllmResources(
  ctx: KubeContext,
  config: ChillConfig,
  model: NamedModel | null,
  options: WriteOptions = {},
): Promise<EnsureResult> {
  const result: EnsureResult = { ensured: false, created: [], updated: [], userManaged: [] };
  if (!model) {
    ctx.log.warn(
      "no model is defined (config models or VLLMModel resources): the vLLM ConfigMap, Service and Deployment " +
        "will be created when the first model is requested",
      { namespace: ctx.namespace },
    );
    return result;
  }
  const [configMap, service, deployment] = renderVllmResources(config, model) as unknown as [
    V1ConfigMap,
    V1Service,
    V1Deployment,
  ];
  const ns = ctx.namespace;
  const opts = callOptions(options);

  const cmName = `ConfigMap/${config.target.configMap}`;
  const cmCreated = await createIfMissing(
    ctx,
    cmName,
    () => ctx.core.readNamespacedConfigMap({ name: config.target.configMap, namespace: ns }, opts),
    () => ctx.core.createNamespacedConfigMap({ namespace: ns, body: annotate(configMap, model) }, opts),
    options,
  );
  if (cmCreated) result.created.push(cmName);
  else {
    await writeActiveModel(ctx, config, model, options);
    result.updated.push(cmName);
  }

  const svcName = `Service/${config.target.service}`;
  const svcCreated = await createIfMissing(
    ctx,
    svcName,
    () => ctx.core.readNamespacedService({ name: config.target.service, namespace: ns }, opts),
    () => ctx.core.createNamespacedService({ namespace: ns, body: service }, opts),
    options,
  );
  (svcCreated ? result.created : result.userManaged).push(svcName);

  const depName = `Deployment/${config.target.deployment}`;
  const depCreated = await createIfMissing(
    ctx,
    depName,
    () => ctx.apps.readNamespacedDeployment({ name: config.target.deployment, namespace: ns }, opts),
    () => ctx.apps.createNamespacedDeployment({ namespace: ns, body: deployment }, opts),
    options,
  );
  (depCreated ? result.created : result.userManaged).push(depName);

  for (const name of result.created) ctx.log.info("created vLLM object", { object: name, namespace: ns });
  for (const name of result.userManaged) {
    ctx.log.info("vLLM object exists and is user-managed: left unchanged", { object: name, namespace: ns });
  }
  result.ensured = true;
  return result;
}

/**
 * Creates an object when a get says 404; returns true when this call created it (false: it existed, or
 * appeared meanwhile).
 *
 * @example
 * ```ts ignore
 * const created = await createIfMissing(ctx, "Service/vllm-svc-a", read, create, { signal });
 * ```
 */
export async function createIfMissing(
  ctx: KubeContext,
  what: string,
  read: () => Promise<unknown>,
  create: () => Promise<unknown>,
  options: WriteOptions,
): Promise<boolean> {
  try {
    await retryUnavailable(read, options);
    return false;
  } catch (error) {
    const e = toKubeError(error, `reading ${what}`);
    if (!(e instanceof NotFoundError)) throw e;
  }
  try {
    await retryUnavailable(create, options);
    return true;
  } catch (error) {
    const e = toKubeError(error, `creating ${what}`);
    if (e instanceof ConflictError) {
      ctx.log.info("vLLM object appeared meanwhile", { object: what });
      return false;
    }
    throw e;
  }
}

function annotate(configMap: V1ConfigMap, model: NamedModel): V1ConfigMap {
  return {
    ...configMap,
    metadata: {
      ...configMap.metadata,
      annotations: { ...configMap.metadata?.annotations, [ACTIVE_MODEL_ANNOTATION]: model.name },
    },
  };
}

/**
 * Writes `model`'s configuration into the ConfigMap with optimistic
 * concurrency: get, replace `data` and the active-model annotation, update
 * with the read resourceVersion; on 409 Conflict read again and retry
 * (bounded, with jitter). Creates the ConfigMap when it does not exist.
 * `sleepMode` (default: the model may sleep) adds vLLM's sleep mode.
 *
 * @example
 * ```ts ignore
 * await writeActiveModel(ctx, config, registry.resolve("qwen3-8b")!);
 * ```
 */
export async function writeActiveModel(
  ctx: KubeContext,
  config: ChillConfig,
  model: NamedModel,
  options: WriteOptions & { attempts?: number; sleepMode?: boolean } = {},
): Promise<void> {
  const outcome = await writeConfigMapData(ctx, {
    name: config.target.configMap,
    data: buildModelConfigMapData(config, model, { sleepMode: options.sleepMode }),
    annotations: { [ACTIVE_MODEL_ANNOTATION]: model.name },
    render: () => (renderVllmResources(config, model) as unknown as [V1ConfigMap])[0],
  }, options);
  if (outcome === "created") {
    ctx.log.info("created vLLM ConfigMap", { configMap: config.target.configMap, model: model.name });
  }
}

/** What {@link writeConfigMapData} writes. */
export interface ConfigMapWrite {
  /** ConfigMap name (in the context's namespace). */
  name: string;
  /** Its whole `data` (replaces what is there). */
  data: Record<string, string>;
  /** Annotations set (others are kept). */
  annotations: Record<string, string>;
  /** The object to create when it does not exist (its data and annotations are replaced by the above). */
  render: () => V1ConfigMap;
  /** Leave it alone when data and annotations are already these (default false: always written). */
  skipUnchanged?: boolean;
}

/**
 * Writes a ConfigMap's `data` (and annotations) with optimistic concurrency:
 * get, replace, update with the read resourceVersion; on 409 Conflict read
 * again and retry (bounded, with jitter). Creates it when it does not exist.
 *
 * @example
 * ```ts ignore
 * await writeConfigMapData(ctx, { name: "vllm-config-a", data, annotations: {}, render: () => configMap });
 * ```
 */
export async function writeConfigMapData(
  ctx: KubeContext,
  write: ConfigMapWrite,
  options: WriteOptions & { attempts?: number } = {},
): Promise<"created" | "updated" | "unchanged"> {
  const { name } = write;
  const ns = ctx.namespace;
  const opts = callOptions(options);
  const attempts = options.attempts ?? 8;
  for (let attempt = 1;; attempt++) {
    let current: V1ConfigMap;
    try {
      current = await retryUnavailable(() => ctx.core.readNamespacedConfigMap({ name, namespace: ns }, opts), options);
    } catch (error) {
      const e = toKubeError(error, `reading ConfigMap ${ns}/${name}`);
      if (!(e instanceof NotFoundError)) throw e;
      const rendered = write.render();
      const body: V1ConfigMap = {
        ...rendered,
        metadata: {
          ...rendered.metadata,
          annotations: { ...rendered.metadata?.annotations, ...write.annotations },
        },
        data: { ...write.data },
      };
      try {
        await retryUnavailable(() => ctx.core.createNamespacedConfigMap({ namespace: ns, body }, opts), options);
        return "created";
      } catch (createError) {
        const c = toKubeError(createError, `creating ConfigMap ${ns}/${name}`);
        if (!(c instanceof ConflictError) || attempt >= attempts) throw c;
        continue;
      }
    }
    if (write.skipUnchanged && sameData(current, write)) return "unchanged";
    const body: V1ConfigMap = {
      ...current,
      data: { ...write.data },
      metadata: {
        ...current.metadata,
        annotations: { ...current.metadata?.annotations, ...write.annotations },
      },
    };
    try {
      await ctx.core.replaceNamespacedConfigMap({ name, namespace: ns, body }, opts);
      ctx.log.info("wrote the model's configuration to the ConfigMap", {
        configMap: name,
        model: write.data[ACTIVE_MODEL_KEY],
        attempt,
      });
      return "updated";
    } catch (error) {
      const e = toKubeError(error, `updating ConfigMap ${ns}/${name}`);
      if (options.signal?.aborted) throw options.signal.reason;
      const retryable = e instanceof ConflictError || e.status === 0 || e.status >= 500;
      if (!retryable || attempt >= attempts) throw e;
      if (options.deadline !== undefined && Date.now() >= options.deadline) throw e;
      ctx.log.debug("ConfigMap update conflicted; reading it again", { configMap: name, attempt, error: e.message });
      await sleep(5 + Math.random() * 20 * attempt, options.signal);
    }
  }
}

function sameData(current: V1ConfigMap, write: ConfigMapWrite): boolean {
  const data = current.data ?? {};
  const keys = Object.keys(write.data);
  if (Object.keys(data).length !== keys.length || keys.some((k) => data[k] !== write.data[k])) return false;
  const annotations = current.metadata?.annotations ?? {};
  return Object.entries(write.annotations).every(([k, v]) => annotations[k] === v);
}
