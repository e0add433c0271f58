/**
 * What the pinned vLLM release accepts: the image tag vllm-chill deploys by
 * default and the names its argument parser and start-up checks know. One
 * table, read from vLLM v0.11.0's own source (tag `v0.11.0`, commit
 * b8b302cde434df8c9289a2b465406b47ebab1c2d); update it together with the tag.
 *
 * A value outside these lists makes vLLM exit at start (argparse `choices`,
 * or a check before the engine loads), so the pod crash-loops after a switch.
 * Validation refuses such values unless the model sets
 * `allowUnknownVllmValues: true` (for an image newer than the pinned one, or a
 * parser registered by a plugin).
 *
 * @module
 */

/** The vLLM release vllm-chill is checked against. */
export const PINNED_VLLM_VERSION = "v0.11.0";

/** The image the vLLM Deployment runs unless `vllm.image` or a model's `image` says otherwise. */
export const PINNED_VLLM_IMAGE = `vllm/vllm-openai:${PINNED_VLLM_VERSION}`;

/**
 * `--reasoning-parser` names. vllm/engine/arg_utils.py:625-629 passes
 * `choices=list(ReasoningParserManager.reasoning_parsers)` (argparse exits on
 * any other name); the registry is filled by the `@register_module(...)`
 * decorators of the modules vllm/reasoning/__init__.py:4-14 imports:
 * deepseek_r1_reasoning_parser.py:12, glm4_moe_reasoning_parser.py:17,
 * gptoss_reasoning_parser.py:18, granite_reasoning_parser.py:18,
 * hunyuan_a13b_reasoning_parser.py:18, mistral_reasoning_parser.py:15,
 * qwen3_reasoning_parser.py:12, seedoss_reasoning_parser.py:8,
 * step3_reasoning_parser.py:18.
 *
 * @example
 * ```ts
 * import { REASONING_PARSERS } from "./vllm_release.ts";
 * REASONING_PARSERS.includes("qwen3"); // true
 * ```
 */
export const REASONING_PARSERS: readonly string[] = [
  "deepseek_r1",
  "glm45",
  "granite",
  "hunyuan_a13b",
  "mistral",
  "openai_gptoss",
  "qwen3",
  "seed_oss",
  "step3",
];

/**
 * `--tool-call-parser` names: the `@ToolParserManager.register_module(...)`
 * names of the modules vllm/entrypoints/openai/tool_parsers/__init__.py:4-26
 * imports (deepseekv3:23, deepseekv31:23, glm4_moe:25, granite_20b_fc:31,
 * granite:29, hermes:26, hunyuan_a13b:26, internlm2:27, jamba:28, kimi_k2:23,
 * llama4_pythonic:28, llama:29-30, longcat:13, minimax:26, mistral:52,
 * openai:24, phi4mini:23, pythonic:29, qwen3coder:25, qwen3xml:1057,
 * seed_oss:28, step3:25, xlam:25 — line of the decorator in each
 * `<name>_tool_parser.py`). vllm/entrypoints/openai/api_server.py:1820-1825
 * raises `KeyError: invalid tool call parser` for any other name, after
 * registering the parsers of `--tool-parser-plugin` (api_server.py:1842-1843):
 * with that flag in `extraArgs`, vllm-chill does not check the name.
 *
 * @example
 * ```ts
 * import { TOOL_CALL_PARSERS } from "./vllm_release.ts";
 * TOOL_CALL_PARSERS.includes("hermes"); // true
 * ```
 */
export const TOOL_CALL_PARSERS: readonly string[] = [
  "deepseek_v3",
  "deepseek_v31",
  "glm45",
  "granite",
  "granite-20b-fc",
  "hermes",
  "hunyuan_a13b",
  "internlm",
  "jamba",
  "kimi_k2",
  "llama3_json",
  "llama4_json",
  "llama4_pythonic",
  "longcat",
  "minimax",
  "mistral",
  "openai",
  "phi4_mini_json",
  "pythonic",
  "qwen3_coder",
  "qwen3_xml",
  "seed_oss",
  "step3",
  "xlam",
];

/**
 * `--kv-cache-dtype` values: `CacheDType` in vllm/config/cache.py:25-26, a
 * `Literal` that vllm/engine/arg_utils.py:116-129 (`literal_to_kwargs`) turns
 * into argparse `choices`; cache.py:175-186 refuses anything else again.
 *
 * @example
 * ```ts
 * import { KV_CACHE_DTYPES } from "./vllm_release.ts";
 * KV_CACHE_DTYPES.includes("fp8"); // true
 * ```
 */
export const KV_CACHE_DTYPES: readonly string[] = ["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"];

/**
 * `--quantization` methods: `QuantizationMethods` in
 * vllm/model_executor/layers/quantization/__init__.py:9-38, turned into
 * argparse `choices` (arg_utils.py:116-129; `ModelConfig.quantization` in
 * vllm/config/model.py:171); model.py:960-963 refuses an unknown method again.
 *
 * @example
 * ```ts
 * import { QUANTIZATION_METHODS } from "./vllm_release.ts";
 * QUANTIZATION_METHODS.includes("awq"); // true
 * ```
 */
export const QUANTIZATION_METHODS: readonly string[] = [
  "awq",
  "deepspeedfp",
  "tpu_int8",
  "fp8",
  "ptpc_fp8",
  "fbgemm_fp8",
  "modelopt",
  "modelopt_fp4",
  "bitblas",
  "gguf",
  "gptq_marlin_24",
  "gptq_marlin",
  "gptq_bitblas",
  "awq_marlin",
  "gptq",
  "compressed-tensors",
  "bitsandbytes",
  "hqq",
  "experts_int8",
  "ipex",
  "quark",
  "moe_wna16",
  "torchao",
  "auto-round",
  "rtn",
  "inc",
  "mxfp4",
  "petit_nvfp4",
];

/**
 * `--dtype` values: `ModelDType` in vllm/config/model.py:67 (argparse
 * `choices`). Unlike the lists above it has no escape hatch: it has not
 * changed for many releases, and the schema makes it an enum.
 *
 * @example
 * ```ts
 * import { MODEL_DTYPES } from "./vllm_release.ts";
 * MODEL_DTYPES[0]; // "auto"
 * ```
 */
export const MODEL_DTYPES = ["auto", "half", "float16", "bfloat16", "float", "float32"] as const;

/** One list of names a model field is checked against. */
export interface CheckedValues {
  /** The ModelSpec field. */
  field: "reasoningParser" | "toolCallParser" | "kvCacheDtype" | "quantization";
  /** vLLM's flag for it, without the dashes ("reasoning-parser"). */
  flag: string;
  /** What the value names, for messages ("reasoning parser"). */
  what: string;
  /** The names the pinned release accepts. */
  values: readonly string[];
}

/**
 * The model fields whose value must be a name the pinned release knows.
 *
 * @example
 * ```ts
 * import { CHECKED_VALUES } from "./vllm_release.ts";
 * CHECKED_VALUES.map((c) => c.field); // ["reasoningParser", "toolCallParser", "kvCacheDtype", "quantization"]
 * ```
 */
export const CHECKED_VALUES: readonly CheckedValues[] = [
  { field: "reasoningParser", flag: "reasoning-parser", what: "reasoning parser", values: REASONING_PARSERS },
  { field: "toolCallParser", flag: "tool-call-parser", what: "tool call parser", values: TOOL_CALL_PARSERS },
  { field: "kvCacheDtype", flag: "kv-cache-dtype", what: "KV cache dtype", values: KV_CACHE_DTYPES },
  { field: "quantization", flag: "quantization", what: "quantization method", values: QUANTIZATION_METHODS },
];
