/**
 * Loading a config: a file (.ts/.js exporting `defineVllmChill(...)` or a
 * plain object as default, or .json/.yaml/.yml), then `VLLM_CHILL_<FLAG>`
 * environment variables, then command-line flags; precedence flag > env >
 * config file > default. The merged input is validated once by the schema.
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parse as parseYaml } from "yaml";
import { CONFIG_INPUT, parseConfig } from "./define.ts";
import { envName, type FlagSpec, type FlagValues, SERVE_FLAGS } from "./flags.ts";
import type { ChillConfig } from "./schema.ts";

/**
 * A config file that cannot be read: missing, unparsable, or exporting no
 * config. The message is one line naming the file.
 *
 * @example
 * ```ts
 * import { ConfigLoadError, readConfigFile } from "./load.ts";
 * await readConfigFile("/nonexistent.json").catch((e) => e instanceof ConfigLoadError); // true
 * ```
 */
export class ConfigLoadError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigLoadError";
  }
}

/** What {@link loadConfig} layers. */
export interface LoadConfigOptions {
  /** Config file; else `flags.config`; else `env.VLLM_CHILL_CONFIG`; else defaults only. */
  file?: string;
  /** The file's content when the caller read (and adjusted) it already; `file` then only names it in errors. */
  input?: Record<string, unknown>;
  /** Parsed command-line values keyed by flag name (see `parseFlags`). */
  flags?: FlagValues;
  /** Environment (e.g. `Deno.env.toObject()`); only `VLLM_CHILL_*` names of the table are read. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Flag table (default {@link SERVE_FLAGS}). */
  table?: readonly FlagSpec[];
}

/**
 * Loads, layers and validates a config. Throws {@link ConfigLoadError} (one
 * line) when the file cannot be read, `ConfigError` (one line per bad field,
 * naming the flag or variable a bad value came from) when it is invalid.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./load.ts";
 * const config = await loadConfig({ flags: { "idle-timeout": "1m" }, env: { VLLM_CHILL_IDLE_TIMEOUT: "2m" } });
 * config.idleTimeout; // 60000
 * ```
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Readonly<ChillConfig>> {
  const flags = options.flags ?? {};
  const env = options.env ?? {};
  const table = options.table ?? SERVE_FLAGS;
  const fromFlag = typeof flags.config === "string" ? flags.config : undefined;
  const file = options.file ?? fromFlag ?? nonEmpty(env[envName("config")]);
  const input = options.input ?? (file === undefined ? {} : await readConfigFile(file));
  const origins = new Map<string, string>();
  for (const flag of table) {
    if (!flag.path) continue;
    const name = envName(flag.name);
    const text = nonEmpty(env[name]);
    // Kubernetes injects VLLM_CHILL_PORT=tcp://… for a Service named vllm-chill: not ours.
    if (text === undefined || (flag.value === "integer" && /^(tcp|udp|sctp):\/\//.test(text))) continue;
    setPath(input, flag.path, convert(flag, text));
    origins.set(flag.path.join("."), name);
  }
  for (const flag of table) {
    const value = flags[flag.name];
    if (!flag.path || flag.envOnly || value === undefined) continue;
    setPath(input, flag.path, typeof value === "boolean" ? value : convert(flag, value));
    origins.set(flag.path.join("."), `--${flag.name}`);
  }
  return parseConfig(input, file ?? "config", origins);
}

/**
 * Reads the raw (unvalidated) input of a config file. A `.ts`/`.js` module's
 * default export may come from `defineVllmChill` (its input is taken back)
 * or be a plain object.
 *
 * @example
 * ```ts
 * import { readConfigFile } from "./load.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"port": 9000}');
 * await readConfigFile(path); // { port: 9000 }
 * await Deno.remove(path);
 * ```
 */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const path = resolve(file);
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new ConfigLoadError(`config file ${file} is not a file`);
  } catch (error) {
    if (error instanceof ConfigLoadError) throw error;
    throw new ConfigLoadError(`config file ${file} not found`, { cause: error });
  }
  const extension = /\.([a-z]+)$/i.exec(path)?.[1]?.toLowerCase();
  let value: unknown;
  if (extension === "ts" || extension === "js" || extension === "mts" || extension === "mjs") {
    value = await importConfig(file, path);
  } else if (extension === "json" || extension === "yaml" || extension === "yml") {
    const text = await Deno.readTextFile(path);
    try {
      value = extension === "json" ? JSON.parse(text) : parseYaml(text);
    } catch (error) {
      throw new ConfigLoadError(`cannot parse config file ${file}: ${firstLine(error)}`, { cause: error });
    }
  } else {
    throw new ConfigLoadError(`config file ${file}: unsupported extension (use .ts, .js, .json, .yaml or .yml)`);
  }
  if (value === null || value === undefined) value = {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigLoadError(
      `config file ${file} must hold an object, got ${Array.isArray(value) ? "an array" : typeof value}`,
    );
  }
  return structuredClone(value as Record<string, unknown>);
}

async function importConfig(file: string, path: string): Promise<unknown> {
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(path).href);
  } catch (error) {
    // A ConfigError thrown by defineVllmChill at import time already names every bad field.
    if (error instanceof Error && error.name === "ConfigError") throw error;
    throw new ConfigLoadError(`cannot load config file ${file}: ${firstLine(error)}`, { cause: error });
  }
  const exported = module.default;
  if (exported === undefined || exported === null || typeof exported !== "object") {
    throw new ConfigLoadError(
      `config file ${file} has no default export of a config (write: export default defineVllmChill({...}))`,
    );
  }
  const input = (exported as Record<symbol, unknown>)[CONFIG_INPUT];
  return input !== undefined ? input : exported;
}

function convert(flag: FlagSpec, text: string): unknown {
  switch (flag.value) {
    case "integer":
      return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
    case "boolean": {
      const lower = text.trim().toLowerCase();
      if (["true", "1", "yes", "on"].includes(lower)) return true;
      if (["false", "0", "no", "off"].includes(lower)) return false;
      return text;
    }
    case "keys": {
      const trimmed = text.trim();
      if (trimmed.startsWith("[")) {
        try {
          return JSON.parse(trimmed);
        } catch {
          throw new ConfigLoadError(`${envName(flag.name)} is not a valid JSON array`);
        }
      }
      return trimmed.split(",").map((k) => k.trim()).filter((k) => k !== "");
    }
    default:
      return text;
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    if (child === null || typeof child !== "object" || Array.isArray(child)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "unknown error";
}
