/**
 * What a process-backend engine is started with: its command line (the
 * model's `command` with its placeholders filled in, else `vllm serve`) and
 * its environment (the GPUs it is placed on, vLLM's sleep-mode switch).
 *
 * `{args}` (a whole element of `command`) expands to the model's vLLM engine
 * arguments, the very list the default `vllm serve <modelName> --host H
 * --port P` command gets after the port, so that a wrapper receives exactly
 * what vLLM would:
 *
 * 1. `vllmArgs(model)`: the table fields (`--served-model-name`, …) then
 *    `extraArgs`, with `--gpu-memory-utilization <share>` among the table
 *    fields when the model sets none: the share the scheduler counts on
 *    ({@link DEFAULT_GPU_SHARE}; `extraArgs` may still override it, as they
 *    override every field);
 * 2. `--enable-sleep-mode` when the engine may sleep.
 *
 * @module
 */
import type { NamedModel } from "../config/schema.ts";
import { vllmArgs } from "../models/mod.ts";

/** The GPU share (`--gpu-memory-utilization`) of a model that sets none: vLLM's default, and the scheduler's. */
export const DEFAULT_GPU_SHARE = 0.9;

/** Where and how the engine is started. */
export interface CommandOptions {
  /** Address the engine listens on (process.host). */
  host: string;
  /** Port the engine listens on. */
  port: number;
  /** Started with vLLM's sleep mode. */
  sleepMode: boolean;
}

/**
 * The model's vLLM engine arguments: what `{args}` expands to, and what the
 * default `vllm serve <modelName> --host H --port P` command gets after the
 * port.
 *
 * @example
 * ```ts
 * import { engineArgs } from "./engine_command.ts";
 * const model = { modelName: "org/a", name: "a", servedModelName: "a", source: "config" as const, maxModelLen: 4096 };
 * engineArgs(model, true);
 * // ["--served-model-name", "a", "--max-model-len", "4096", "--gpu-memory-utilization", "0.9", "--enable-sleep-mode"]
 * ```
 */
export function engineArgs(model: NamedModel, sleepMode: boolean): string[] {
  const args = vllmArgs({ ...model, gpuMemoryUtilization: model.gpuMemoryUtilization ?? DEFAULT_GPU_SHARE });
  // vllm/engine/arg_utils.py:589 (v0.11.0): `--enable-sleep-mode`, a switch; once is enough.
  if (sleepMode && !(model.extraArgs ?? []).includes("--enable-sleep-mode")) args.push("--enable-sleep-mode");
  return args;
}

/**
 * The engine's command line: the model's `command` with `{port}`, `{model}`
 * (modelName) and `{served}` filled in and an `{args}` element expanded
 * ({@link engineArgs}), else `vllm serve <modelName> --host H --port P
 * …engineArgs`.
 *
 * @example
 * ```ts
 * import { buildCommand } from "./engine_command.ts";
 * const model = { modelName: "org/a", name: "a", servedModelName: "a", source: "config" as const,
 *   command: ["wrap", "--port={port}", "{model}", "{args}"] };
 * buildCommand(model, { host: "127.0.0.1", port: 8123, sleepMode: false });
 * // ["wrap", "--port=8123", "org/a", "--served-model-name", "a", "--gpu-memory-utilization", "0.9"]
 * ```
 */
export function buildCommand(model: NamedModel, options: CommandOptions): string[] {
  const { host, port, sleepMode } = options;
  if (!model.command) {
    return ["vllm", "serve", model.modelName, "--host", host, "--port", String(port), ...engineArgs(model, sleepMode)];
  }
  const fill = (arg: string) =>
    arg.replaceAll("{port}", String(port)).replaceAll("{model}", model.modelName).replaceAll(
      "{served}",
      model.servedModelName,
    );
  return model.command.flatMap((arg) => arg === "{args}" ? engineArgs(model, sleepMode) : [fill(arg)]);
}

/** The variables vllm-chill sets itself; they win over `vllm.env` and the model's `env`. */
export const OWNED_ENV_KEYS = ["CUDA_VISIBLE_DEVICES", "VLLM_SERVER_DEV_MODE"] as const;

/**
 * The environment the engine gets on top of the proxy's own: `vllm.env`, then
 * the model's `env`, then what vllm-chill owns: `CUDA_VISIBLE_DEVICES` = the
 * placement joined by "," ("" for a CPU model: no GPU visible) and, in sleep
 * mode, `VLLM_SERVER_DEV_MODE=1` (vLLM v0.11.0 serves /sleep, /wake_up,
 * /is_sleeping only then: vllm/entrypoints/openai/api_server.py:965).
 *
 * @example
 * ```ts
 * import { engineEnv } from "./engine_command.ts";
 * engineEnv({ HF_HOME: "/cache" }, { CUDA_VISIBLE_DEVICES: "7" }, { gpus: ["0", "1"], sleepMode: true });
 * // { HF_HOME: "/cache", CUDA_VISIBLE_DEVICES: "0,1", VLLM_SERVER_DEV_MODE: "1" }
 * ```
 */
export function engineEnv(
  vllmEnv: Readonly<Record<string, string>> | undefined,
  modelEnv: Readonly<Record<string, string>> | undefined,
  launch: { gpus: readonly string[]; sleepMode: boolean },
): Record<string, string> {
  return {
    ...vllmEnv,
    ...modelEnv,
    CUDA_VISIBLE_DEVICES: launch.gpus.join(","),
    ...(launch.sleepMode ? { VLLM_SERVER_DEV_MODE: "1" } : {}),
  };
}
