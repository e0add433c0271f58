/**
 * Config: the zod schemas, `defineVllmChill`/`parseConfig`, loading a file
 * with env and flag layering, the flag table and the generated reference.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./mod.ts";
 * const config = await loadConfig({ flags: { port: "9000" }, env: {} });
 * config.port; // 9000
 * ```
 *
 * @module
 */
export * from "./schema.ts";
export { CONFIG_INPUT, ConfigError, defineVllmChill, formatPath, parseConfig } from "./define.ts";
export { ConfigLoadError, loadConfig, type LoadConfigOptions, readConfigFile } from "./load.ts";
export { envName, type FlagSpec, type FlagValues, formatFlags, parseFlags, SERVE_FLAGS, UsageError } from "./flags.ts";
export { formatDuration, parseDuration, parseSize } from "./units.ts";
