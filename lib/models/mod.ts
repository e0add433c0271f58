/**
 * Models: the registry of known models (config + VLLMModel resources) and
 * the ModelSpec → vLLM arguments table.
 *
 * @example
 * ```ts
 * import { ModelRegistry, vllmArgs } from "./mod.ts";
 * const registry = new ModelRegistry({ a: { modelName: "org/a", maxModelLen: 4096 } });
 * vllmArgs(registry.resolve("a")!); // ["--served-model-name", "a", "--max-model-len", "4096"]
 * ```
 *
 * @module
 */
export { ModelRegistry } from "./registry.ts";
export {
  engineConfig,
  type EngineConfigValue,
  type EngineModel,
  extraArgsToConfig,
  NON_FLAG_FIELDS,
  VLLM_FLAGS,
  vllmArgs,
  type VllmFlag,
  vllmServeArgs,
} from "./vllm_args.ts";
