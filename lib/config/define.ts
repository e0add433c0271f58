/**
 * `defineVllmChill`: validate a config written as code and return it fully
 * defaulted, typed and frozen; and the readable error every bad config gets.
 *
 * @module
 */
import type { z } from "zod";
import { type ChillConfig, type ChillConfigInput, ChillConfigSchema } from "./schema.ts";

/** Where `defineVllmChill` keeps the input it was given, so flags can be layered on top. */
export const CONFIG_INPUT: unique symbol = Symbol.for("vllm-chill.config-input");

/**
 * A config that failed validation. `issues` lists every bad field; the message
 * has one line per field: `path: what is wrong (what is allowed)`.
 *
 * @example
 * ```ts
 * import { ConfigError, defineVllmChill } from "../../mod.ts";
 * try {
 *   defineVllmChill({ idleTimeout: "soon" });
 * } catch (e) {
 *   if (e instanceof ConfigError) console.log(e.issues[0].path); // "idleTimeout"
 * }
 * ```
 */
export class ConfigError extends Error {
  /** One entry per bad field. */
  readonly issues: { path: string; message: string }[];

  /**
   * Builds the error from zod issues; `source` names the file or object
   * checked; `origins` maps a path to where its value came from (e.g.
   * "--port", "VLLM_CHILL_PORT"), added to that path's message.
   */
  constructor(issues: z.core.$ZodIssue[], source = "config", origins?: ReadonlyMap<string, string>) {
    const list = issues.map((issue) => {
      const path = formatPath(issue.path);
      const origin = origins?.get(path);
      return { path, message: describeIssue(issue) + (origin ? ` (from ${origin})` : "") };
    });
    super(`invalid ${source}:\n${list.map((i) => `  - ${i.path || "(root)"}: ${i.message}`).join("\n")}`);
    this.name = "ConfigError";
    this.issues = list;
  }
}

/** Formats a zod path as `models.qwen.gpuMemoryUtilization` / `apiKeys[0].key`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (typeof part === "string" && /^[A-Za-z_$][\w$]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

/** One zod issue in words: what is wrong and what is allowed. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "unrecognized_keys":
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}` +
        " (check the spelling; unknown fields are refused)";
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_type":
      return `expected ${issue.expected}, got ${describeInput(issue.input)}`;
    case "too_big":
      return `must be ${issue.inclusive === false ? "<" : "≤"} ${issue.maximum}${unitOf(issue.origin)}`;
    case "too_small":
      return `must be ${issue.inclusive === false ? ">" : "≥"} ${issue.minimum}${unitOf(issue.origin)}`;
    case "invalid_union":
      return "expected a string or an object { key, models? }";
    default:
      return issue.message;
  }
}

function unitOf(origin: string): string {
  if (origin === "string") return " characters";
  if (origin === "array") return " items";
  return "";
}

function describeInput(input: unknown): string {
  if (input === undefined) return "nothing (the field is required)";
  if (input === null) return "null";
  if (Array.isArray(input)) return "an array";
  if (typeof input === "object") return "an object";
  // String values are not echoed: they may be secrets (API keys, tokens).
  return typeof input === "string" ? "a string" : `${typeof input} ${String(input)}`;
}

/**
 * Validates a vllm-chill config and returns it fully defaulted, typed and
 * frozen (durations in milliseconds, sizes in bytes). A bad config throws one
 * {@link ConfigError} listing every bad field by its path.
 *
 * @example
 * ```ts
 * import { defineVllmChill } from "../../mod.ts";
 * const config = defineVllmChill({
 *   enableModelSwitch: true,
 *   idleTimeout: "15m",
 *   models: { "qwen3-8b": { modelName: "Qwen/Qwen3-8B", reasoningParser: "qwen3" } },
 * });
 * console.log(config.idleTimeout); // 900000
 * ```
 */
export function defineVllmChill(config: ChillConfigInput): Readonly<ChillConfig> {
  return parseConfig(config, "config");
}

/**
 * Validates any input (JSON, YAML, flags merged) into a frozen config; the
 * raw input stays reachable under {@link CONFIG_INPUT}. Throws a
 * {@link ConfigError} naming every bad field.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../mod.ts";
 * parseConfig({ port: 9000 }, "flags").port; // 9000
 * ```
 */
export function parseConfig(
  input: unknown,
  source = "config",
  origins?: ReadonlyMap<string, string>,
): Readonly<ChillConfig> {
  const result = ChillConfigSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw new ConfigError(result.error.issues, source, origins);
  Object.defineProperty(result.data, CONFIG_INPUT, { value: structuredClone(input), enumerable: false });
  return deepFreeze(result.data);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
