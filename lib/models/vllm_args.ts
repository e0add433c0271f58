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
 * A boolean field is a `BooleanOptionalAction` in vLLM v0.11.0 (every bool
 * of its config dataclasses gets `--flag` and `--no-flag`:
 * vllm/engine/arg_utils.py:206-208), so `true` emits `--flag`, `false`
 * emits `--no-flag` and absent keeps vLLM's default. In the `--config` file
 * `false` cannot be written as `flag: false`: vLLM's reader drops a false
 * boolean (vllm/utils/__init__.py:2110-2113 appends `--key` only when the
 * value is true), so it is written `no-flag: true`.
 *
 * The `--config` file is read with PyYAML's `safe_load`
 * (vllm/utils/__init__.py:2098), i.e. YAML 1.1, where a plain `on`, `off`,
 * `yes`, `no` is a boolean and `~`/`null` is None; every other value becomes
 * `str(value)` on vLLM's command line (vllm/utils/__init__.py:2114-2121). So
 * {@link engineConfigYaml} writes every string double-quoted (and escaped to
 * ASCII) and quotes any key YAML 1.1 would not read as a string: vLLM
 * receives exactly the text the user wrote.
 *
 * @module
 */
import type { ModelSpec } from "../config/types.ts";

/** How one ModelSpec field becomes a vLLM flag. */
export interface VllmFlag {
  /** The ModelSpec field. */
  field: keyof ModelSpec;
  /** vLLM's long flag name without the dashes (also the `--config` YAML key). */
  flag: string;
  /** "value" emits `--flag value`; "boolean" emits `--flag` for true and `--no-flag` for false. */
  kind: "value" | "boolean";
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
  { field: "enableChunkedPrefill", flag: "enable-chunked-prefill", kind: "boolean" },
  { field: "maxNumBatchedTokens", flag: "max-num-batched-tokens", kind: "value" },
  { field: "maxNumSeqs", flag: "max-num-seqs", kind: "value" },
  { field: "enablePrefixCaching", flag: "enable-prefix-caching", kind: "boolean" },
  { field: "disableCustomAllReduce", flag: "disable-custom-all-reduce", kind: "boolean" },
  { field: "cpuOffloadGB", flag: "cpu-offload-gb", kind: "value" },
  { field: "enableAutoToolChoice", flag: "enable-auto-tool-choice", kind: "boolean" },
  { field: "toolCallParser", flag: "tool-call-parser", kind: "value" },
  { field: "reasoningParser", flag: "reasoning-parser", kind: "value" },
  { field: "chatTemplate", flag: "chat-template", kind: "value" },
  { field: "trustRemoteCode", flag: "trust-remote-code", kind: "boolean" },
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
  "requests",
  "limits",
  "command",
  "allowUnknownVllmValues",
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
 * vllmArgs({ modelName: "Qwen/Qwen3-8B", maxModelLen: 32768, enablePrefixCaching: false });
 * // ["--max-model-len", "32768", "--no-enable-prefix-caching"]
 * ```
 */
export function vllmArgs(model: EngineModel): string[] {
  const args: string[] = [];
  for (const { field, flag, kind } of VLLM_FLAGS) {
    const value = model[field];
    if (value === undefined || value === null) continue;
    if (kind === "boolean") args.push(value === true ? `--${flag}` : `--no-${flag}`);
    else args.push(`--${flag}`, String(value));
  }
  return [...args, ...(model.extraArgs ?? [])];
}

/**
 * The value vLLM's parser gives `flag` in `args`, and where it comes from:
 * the last occurrence wins (argparse); `--flag v` and `--flag=v` give "v", a
 * lone `--flag` gives true and `--no-flag` false. Underscores in a flag name
 * count as dashes, as in vLLM's FlexibleArgumentParser
 * (vllm/utils/__init__.py:1873-1890).
 *
 * @example
 * ```ts
 * import { findVllmFlag } from "./vllm_args.ts";
 * findVllmFlag(["--seed", "7", "--tool_call_parser=hermes"], "tool-call-parser"); // { value: "hermes", index: 2 }
 * findVllmFlag(["--no-enable-prefix-caching"], "enable-prefix-caching"); // { value: false, index: 0 }
 * ```
 */
export function findVllmFlag(
  args: readonly string[],
  flag: string,
): { value: string | boolean; index: number } | undefined {
  let found: { value: string | boolean; index: number } | undefined;
  args.forEach((arg, index) => {
    if (!arg.startsWith("--")) return;
    const eq = arg.indexOf("=");
    const name = (eq > 2 ? arg.slice(2, eq) : arg.slice(2)).replaceAll("_", "-");
    if (name === `no-${flag}` && eq < 0) found = { value: false, index };
    if (name !== flag) return;
    if (eq > 2) found = { value: arg.slice(eq + 1), index };
    else {
      const next = args[index + 1];
      found = { value: next === undefined || next.startsWith("--") ? true : next, index };
    }
  });
  return found;
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
 * (a false boolean as `no-<flag>: true`), then `extraArgs` converted.
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
    if (kind === "boolean") out[value === true ? flag : `no-${flag}`] = true;
    else out[flag] = value as string | number;
  }
  return { ...out, ...extraArgsToConfig(model.extraArgs ?? []) };
}

/**
 * {@link engineConfig} as the text of a vLLM `--config` file that YAML 1.1
 * (PyYAML, which vLLM uses) reads back to exactly these values. The text is
 * plain ASCII whatever the locale of the pod: strings are double-quoted with
 * every character outside printable ASCII escaped (`\n`, `\xe9`, `\u2028`,
 * `\U0001f600`), keys are plain only when YAML 1.1 reads them as the same
 * string, numbers and `true` are plain.
 *
 * @example
 * ```ts
 * import { engineConfigYaml } from "./vllm_args.ts";
 * engineConfigYaml({ modelName: "org/m", servedModelName: "on", enablePrefixCaching: false }, { port: 8000 });
 * // 'model: "org/m"\nserved-model-name: "on"\nhost: "0.0.0.0"\nport: 8000\nno-enable-prefix-caching: true\n'
 * ```
 */
export function engineConfigYaml(model: EngineModel, listen: { host?: string; port: number }): string {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(engineConfig(model, listen))) {
    if (Array.isArray(value)) {
      lines.push(`${yamlKey(key)}:`, ...value.map((item) => `  - ${yamlScalar(item)}`));
    } else lines.push(`${yamlKey(key)}: ${yamlScalar(value)}`);
  }
  return lines.map((line) => `${line}\n`).join("");
}

/** Words YAML 1.1 reads as booleans or null (PyYAML's resolver, plus the spec's y/n). */
const YAML11_RESERVED = /^(y|yes|n|no|true|false|on|off|null)$/i;

function yamlKey(key: string): string {
  return /^[A-Za-z][A-Za-z0-9_.-]*$/.test(key) && !YAML11_RESERVED.test(key) ? key : yamlString(key);
}

function yamlScalar(value: string | number | boolean): string {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
    return String(value);
  }
  return yamlString(value);
}

const YAML_ESCAPES: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r" };

/** A YAML double-quoted scalar in printable ASCII; PyYAML decodes `\xXX`, `\uXXXX` and `\UXXXXXXXX`. */
function yamlString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (YAML_ESCAPES[char]) out += YAML_ESCAPES[char];
    else if (code >= 0x20 && code <= 0x7e) out += char;
    else if (code <= 0xff) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else if (code <= 0xffff) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += `\\U${code.toString(16).padStart(8, "0")}`;
  }
  return out + '"';
}
