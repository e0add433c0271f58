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
export { CONFIG_INPUT, ConfigError, defineVllmChill, parseConfig } from "./lib/config/define.ts";
export {
  ApiKeySchema,
  ChillConfigSchema,
  ModelSpecSchema,
  ProcessSchema,
  TargetSchema,
  VllmPodSchema,
} from "./lib/config/schema.ts";
export type { ChillConfig, ChillConfigInput, ModelSpec, ModelSpecInput, NamedModel } from "./lib/config/schema.ts";
export { renderCrd } from "./lib/manifests/crd.ts";
export { type KubeObject, MANIFEST_PARTS, type ManifestPart, renderManifests, toYaml } from "./lib/manifests/render.ts";
export { type EngineModel, vllmArgs } from "./lib/models/vllm_args.ts";
