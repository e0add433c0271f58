/**
 * vllm-chill's public API for config-as-code users: `defineVllmChill`, the
 * config and model schemas and types, and manifest rendering.
 *
 * @example
 * ```ts
 * import { defineVllmChill, renderManifests, toYaml } from "./mod.ts";
 * const config = defineVllmChill({
 *   enableModelSwitch: true,
 *   models: { "qwen3-8b": { modelName: "Qwen/Qwen3-8B", reasoningParser: "qwen3" } },
 * });
 * const yaml = toYaml(renderManifests(config, { only: ["vllm"] }));
 * ```
 *
 * @module
 */
import { ChillConfigSchema as chillConfigSchema, ModelSpecSchema as modelSpecSchema } from "./lib/config/schema.ts";
import type { ChillConfig, ModelSpec, Schema } from "./lib/config/types.ts";

export { ConfigError, defineVllmChill, parseConfig } from "./lib/config/define.ts";
export type {
  ApiKey,
  ChillConfig,
  ChillConfigInput,
  DurationString,
  ModelSpec,
  ModelSpecInput,
  NamedModel,
  ResourceList,
  Schema,
  SchemaIssue,
  Target,
  Toleration,
  VllmPod,
  VllmPodInput,
} from "./lib/config/types.ts";
export { renderCrd } from "./lib/manifests/crd.ts";
export { type KubeObject, MANIFEST_PARTS, type ManifestPart, renderManifests, toYaml } from "./lib/manifests/render.ts";
export { type EngineModel, vllmArgs } from "./lib/models/vllm_args.ts";

/**
 * The schema of a whole config file (a zod schema at runtime): validates and
 * defaults; durations become milliseconds, sizes bytes.
 *
 * @example
 * ```ts
 * import { ChillConfigSchema } from "./mod.ts";
 * ChillConfigSchema.parse({ idleTimeout: "1m" }).idleTimeout; // 60000
 * ```
 */
export const ChillConfigSchema: Schema<ChillConfig> = chillConfigSchema;

/**
 * The schema of one model, also the `spec` of a `VLLMModel` (a zod schema at runtime).
 *
 * @example
 * ```ts
 * import { ModelSpecSchema } from "./mod.ts";
 * ModelSpecSchema.safeParse({ modelName: "org/m", gpuMemoryUtilization: 1.5 }).success; // false
 * ```
 */
export const ModelSpecSchema: Schema<ModelSpec> = modelSpecSchema;
