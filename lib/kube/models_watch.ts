/**
 * Keeps the model registry in step with the `VLLMModel` objects of the
 * namespace (list + watch). An invalid object is skipped with a logged
 * reason; a missing CRD is reported once and retried with backoff.
 *
 * @module
 */
import type { ModelSpec } from "../config/schema.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { parseVllmModelObject } from "../manifests/crd.ts";
import { anySignal, callOptions, type KubeContext } from "./context.ts";
import { ForbiddenError, NotFoundError, toKubeError } from "./errors.ts";
import { type ListWatchSpec, runListWatch } from "./list_watch.ts";
import { backoffDelay, sleep } from "./retry.ts";

/** The VLLMModel custom resource's coordinates. */
export const VLLM_MODEL = { group: "vllm.efortin.github.io", version: "v1alpha1", plural: "vllmmodels" } as const;

/** A VLLMModel object as read from the API. */
interface VllmModelObject {
  metadata?: { name?: string; resourceVersion?: string };
  spec?: unknown;
}

/** Options of {@link watchModels}. */
export interface WatchModelsOptions {
  /** First retry delay after a failed list (ms, default 1000). */
  retryMinMs?: number;
  /** Longest retry delay (ms, default 30000). */
  retryMaxMs?: number;
}

/** The running watch. */
export interface ModelsWatch {
  /** Resolves after the first list attempt: true when models were listed, false when it failed or was aborted. */
  synced: Promise<boolean>;
  /** Resolves when the watch has stopped (signal aborted or client closed). */
  done: Promise<void>;
}

/**
 * Parses a VLLMModel object's spec; returns the model or a readable reason.
 *
 * @example
 * ```ts
 * import { parseVllmModel } from "./models_watch.ts";
 * parseVllmModel({ metadata: { name: "a" }, spec: { modelName: "org/a" } }).ok; // true
 * parseVllmModel({ metadata: { name: "b" }, spec: { modelName: 3 } }).ok; // false
 * ```
 */
export function parseVllmModel(
  object: VllmModelObject,
): { ok: true; name: string; spec: ModelSpec } | { ok: false; name: string; reason: string } {
  const name = object?.metadata?.name ?? "";
  try {
    const parsed = parseVllmModelObject({
      apiVersion: `${VLLM_MODEL.group}/${VLLM_MODEL.version}`,
      kind: "VLLMModel",
      ...object,
    });
    return { ok: true, name: parsed.name, spec: parsed.spec };
  } catch (error) {
    return { ok: false, name, reason: (error as Error).message.replace(/\s*\n\s*/g, " ") };
  }
}

/**
 * Lists and watches VLLMModel objects, updating `registry` live
 * (ADDED/MODIFIED → setCrdModel, DELETED → deleteCrdModel, every re-list →
 * replaceCrdModels). Never throws: errors are logged and retried.
 *
 * @example
 * ```ts ignore
 * const watch = watchModels(ctx, registry, signal);
 * await watch.synced;
 * ```
 */
export function watchModels(
  ctx: KubeContext,
  registry: ModelRegistry,
  signal: AbortSignal,
  options: WatchModelsOptions = {},
): ModelsWatch {
  const stop = anySignal([signal, ctx.closed]);
  const ns = ctx.namespace;
  const minDelay = options.retryMinMs ?? 1000;
  const maxDelay = options.retryMaxMs ?? 30_000;
  let resolveSynced!: (ok: boolean) => void;
  const synced = new Promise<boolean>((r) => resolveSynced = r);
  let warnedMissing = false;
  const skip = (name: string, reason: string) =>
    ctx.log.warn("skipping invalid VLLMModel", { name, namespace: ns, reason });
  const applyEvent = (type: "ADDED" | "MODIFIED" | "DELETED", object: VllmModelObject) => {
    const parsed = parseVllmModel(object);
    if (type === "DELETED") {
      if (parsed.name) registry.deleteCrdModel(parsed.name);
      return;
    }
    if (parsed.ok) registry.setCrdModel(parsed.name, parsed.spec);
    else {
      // The object no longer describes a usable model: it is skipped, as if absent.
      skip(parsed.name, parsed.reason);
      if (parsed.name) registry.deleteCrdModel(parsed.name);
    }
  };
  const spec: ListWatchSpec<VllmModelObject> = {
    path: `/apis/${VLLM_MODEL.group}/${VLLM_MODEL.version}/namespaces/${encodeURIComponent(ns)}/${VLLM_MODEL.plural}`,
    list: async (s) => {
      const list = await ctx.custom.listNamespacedCustomObject(
        { ...VLLM_MODEL, namespace: ns },
        callOptions({ signal: s }),
      ) as {
        items?: VllmModelObject[];
        metadata?: { resourceVersion?: string };
      };
      return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "" };
    },
    onList: (items) => {
      const models = new Map<string, ModelSpec>();
      for (const item of items) {
        const parsed = parseVllmModel(item);
        if (parsed.ok) models.set(parsed.name, parsed.spec);
        else skip(parsed.name, parsed.reason);
      }
      registry.replaceCrdModels(models);
      if (warnedMissing) ctx.log.info("VLLMModel resources are available again", { namespace: ns });
      warnedMissing = false;
      resolveSynced(true);
    },
    onEvent: (type, object) => {
      try {
        applyEvent(type, object);
      } catch (error) {
        ctx.log.error("applying a VLLMModel event failed", { error });
      }
    },
    onListError: (error, attempt) => {
      const e = toKubeError(error);
      if (e instanceof NotFoundError) {
        if (!warnedMissing) {
          ctx.log.warn("the VLLMModel CRD is not installed: only config models are known; will retry", {
            namespace: ns,
            error: e.message,
          });
        }
        warnedMissing = true;
      } else if (e instanceof ForbiddenError) {
        ctx.log.error("not allowed to list VLLMModel resources; will retry", { namespace: ns, error: e.message });
      } else ctx.log.warn("listing VLLMModel resources failed; will retry", { namespace: ns, error: e.message });
      resolveSynced(false);
      return backoffDelay(attempt, minDelay, maxDelay);
    },
    timeoutMs: ctx.watchTimeoutMs,
    onRelist: (why) => ctx.log.debug("VLLMModel watch re-listing", { why }),
  };
  const done = (async () => {
    // A watch the API refuses (403) ends one loop; keep trying with backoff so fixing the Role is enough.
    for (let attempt = 0; !stop.aborted; attempt++) {
      try {
        await runListWatch(ctx.kubeConfig, spec, stop);
      } catch (error) {
        ctx.log.error("VLLMModel watch failed; will retry", { namespace: ns, error: toKubeError(error).message });
        resolveSynced(false);
        await sleep(backoffDelay(attempt, minDelay, maxDelay), stop).catch(() => {});
      }
    }
  })().finally(() => resolveSynced(false));
  return { synced, done };
}
