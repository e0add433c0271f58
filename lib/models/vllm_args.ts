/**
 * ModelSpec → vLLM engine arguments, from ONE table field → flag. The table
 * drives both forms the engine is given:
 *
 * - the CLI form (`vllmArgs`), used by the process backend:
 *   `vllm serve <modelName> --host … --port … --max-model-len 32768 …`;
 * - the `--config` YAML form (`engineConfig`), used on Kubernetes: the vLLM
 *   container runs `vllm serve --config /etc/vllm-chill/config.yaml` (no
 *   shell) and the file is one key of the ConfigMap vllm-chill rewrites at
 *   each model switch.
 *
 * Booleans emit their flag only when true: `false` (or absent) keeps vLLM's
 * own default.
 *
 * @module
 */
import type { ModelSpec } from "../config/schema.ts";

/** How one ModelSpec field becomes a vLLM flag. */
export interface VllmFlag {
  /** The ModelSpec field. */
  field: keyof ModelSpec;
  /** vLLM's long flag name without the dashes (also the `--config` YAML key). */
  flag: string;
  /** "value" emits `--flag value`; "switch" emits `--flag` only when true. */
  kind: "value" | "switch";
}

/**
 * The table: every ModelSpec field that is a vLLM engine argument.
 *
 * @example
 * ```ts
 * import { VLLM_FLAGS } from "./vllm_args.ts";
 * VLLM_FLAGS.find((f) => f.field === "maxModelLen")?.flag; // "max-model-len"
 * ```
 */
export const VLLM_FLAGS: readonly VllmFlag[] = [
  { field: "servedModelName", flag: "served-model-name", kind: "value" },
  { field: "tensorParallelSize", flag: "tensor-parallel-size", kind: "value" },
  { field: "maxModelLen", flag: "max-model-len", kind: "value" },
  { field: "gpuMemoryUtilization", flag: "gpu-memory-utilization", kind: "value" },
  { field: "dtype", flag: "dtype", kind: "value" },
  { field: "quantization", flag: "quantization", kind: "value" },
  { field: "kvCacheDtype", flag: "kv-cache-dtype", kind: "value" },
  { field: "enableChunkedPrefill", flag: "enable-chunked-prefill", kind: "switch" },
  { field: "maxNumBatchedTokens", flag: "max-num-batched-tokens", kind: "value" },
  { field: "maxNumSeqs", flag: "max-num-seqs", kind: "value" },
  { field: "enablePrefixCaching", flag: "enable-prefix-caching", kind: "switch" },
  { field: "disableCustomAllReduce", flag: "disable-custom-all-reduce", kind: "switch" },
  { field: "cpuOffloadGB", flag: "cpu-offload-gb", kind: "value" },
  { field: "enableAutoToolChoice", flag: "enable-auto-tool-choice", kind: "switch" },
  { field: "toolCallParser", flag: "tool-call-parser", kind: "value" },
  { field: "reasoningParser", flag: "reasoning-parser", kind: "value" },
  { field: "chatTemplate", flag: "chat-template", kind: "value" },
  { field: "trustRemoteCode", flag: "trust-remote-code", kind: "switch" },
];

/**
 * ModelSpec fields that are not engine flags: the model itself (positional /
 * `model:`), extraArgs (appended), and what the proxy or the pod uses.
 *
 * @example
 * ```ts
 * import { NON_FLAG_FIELDS } from "./vllm_args.ts";
 * NON_FLAG_FIELDS.includes("idleTimeout"); // true
 * ```
 */
export const NON_FLAG_FIELDS: readonly (keyof ModelSpec)[] = [
  "modelName",
  "extraArgs",
  "env",
  "idleTimeout",
  "holdTimeout",
  "startTimeout",
  "image",
  "gpus",
  "sleepAfter",
  "sleepLevel",
  "command",
];

/** A model as given to the engine: a spec, possibly with its resolved served name. */
export type EngineModel = ModelSpec & { servedModelName?: string };

/**
 * The model's vLLM arguments in CLI form (without `serve`, the model, host
 * and port): table fields first, then `extraArgs` verbatim.
 *
 * @example
 * ```ts
 * import { vllmArgs } from "./vllm_args.ts";
 * vllmArgs({ modelName: "Qwen/Qwen3-8B", maxModelLen: 32768, enablePrefixCaching: true, trustRemoteCode: false });
 * // ["--max-model-len", "32768", "--enable-prefix-caching"]
 * ```
 */
export function vllmArgs(model: EngineModel): string[] {
  const args: string[] = [];
  for (const { field, flag, kind } of VLLM_FLAGS) {
    const value = model[field];
    if (value === undefined || value === null) continue;
    if (kind === "switch") {
      if (value === true) args.push(`--${flag}`);
    } else args.push(`--${flag}`, String(value));
  }
  return [...args, ...(model.extraArgs ?? [])];
}

/**
 * The full argument list of the engine process: `serve <modelName> --host H
 * --port P …vllmArgs(model)` (prefix it with the `vllm` executable).
 *
 * @example
 * ```ts
 * import { vllmServeArgs } from "./vllm_args.ts";
 * vllmServeArgs({ modelName: "org/a", servedModelName: "a" }, { host: "127.0.0.1", port: 8001 });
 * // ["serve", "org/a", "--host", "127.0.0.1", "--port", "8001", "--served-model-name", "a"]
 * ```
 */
export function vllmServeArgs(model: EngineModel, listen: { host: string; port: number }): string[] {
  return ["serve", model.modelName, "--host", listen.host, "--port", String(listen.port), ...vllmArgs(model)];
}

/** A value in a vLLM `--config` YAML file. */
export type EngineConfigValue = string | number | boolean | string[];

/**
 * Converts `extraArgs` into `--config` YAML entries: `--flag value` →
 * `flag: value`, a lone `--flag` → `flag: true`, `--k=v` → `k: v`, a flag
 * followed by several values → a list. A repeated flag keeps its last value.
 *
 * @example
 * ```ts
 * import { extraArgsToConfig } from "./vllm_args.ts";
 * extraArgsToConfig(["--seed", "7", "--enforce-eager", "--swap-space=4"]);
 * // { seed: "7", "enforce-eager": true, "swap-space": "4" }
 * ```
 */
export function extraArgsToConfig(extraArgs: readonly string[]): Record<string, EngineConfigValue> {
  const out: Record<string, EngineConfigValue> = {};
  let current: string | undefined;
  let values: string[] = [];
  const flush = () => {
    if (current === undefined) return;
    out[current] = values.length === 0 ? true : values.length === 1 ? values[0] : values;
  };
  for (const arg of extraArgs) {
    if (arg.startsWith("--")) {
      flush();
      const eq = arg.indexOf("=");
      if (eq > 2) {
        out[arg.slice(2, eq)] = arg.slice(eq + 1);
        current = undefined;
      } else current = arg.slice(2);
      values = [];
    } else if (current !== undefined) values.push(arg);
    else throw new Error(`extraArgs: value ${JSON.stringify(arg)} does not follow a --flag`);
  }
  flush();
  return out;
}

/**
 * The model's vLLM `--config` YAML content as an object: `model`,
 * `served-model-name`, `host`, `port`, every table field under its flag name
 * (booleans only when true), then `extraArgs` converted.
 *
 * @example
 * ```ts
 * import { engineConfig } from "./vllm_args.ts";
 * engineConfig({ modelName: "Qwen/Qwen3-8B", servedModelName: "qwen3-8b", reasoningParser: "qwen3" }, { port: 8000 });
 * // { model: "Qwen/Qwen3-8B", "served-model-name": "qwen3-8b", host: "0.0.0.0", port: 8000, "reasoning-parser": "qwen3" }
 * ```
 */
export function engineConfig(
  model: EngineModel,
  listen: { host?: string; port: number },
): Record<string, EngineConfigValue> {
  const out: Record<string, EngineConfigValue> = { model: model.modelName };
  if (model.servedModelName !== undefined) out["served-model-name"] = model.servedModelName;
  out.host = listen.host ?? "0.0.0.0";
  out.port = listen.port;
  for (const { field, flag, kind } of VLLM_FLAGS) {
    const value = model[field];
    if (value === undefined || value === null || field === "servedModelName") continue;
    if (kind === "switch") {
      if (value === true) out[flag] = true;
    } else out[flag] = value as string | number;
  }
  return { ...out, ...extraArgsToConfig(model.extraArgs ?? []) };
}
