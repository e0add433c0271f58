/**
 * `version`: the version of vllm-chill (deno.json's `version`).
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };

/**
 * vllm-chill's version, from deno.json.
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * /^\d+\.\d+\.\d+/.test(VERSION); // true
 * ```
 */
export const VERSION: string = denoJson.version;

/** `--help` text of `version`. */
export const VERSION_USAGE = `Usage: vllm-chill version

Prints the version of vllm-chill and of the Deno runtime.`;

/**
 * Runs `version`: prints `vllm-chill <version> (deno <version>)`.
 *
 * @example
 * ```ts
 * import { runVersion } from "./version.ts";
 * await runVersion([]); // 0
 * ```
 */
export function runVersion(_args: string[], out: (line: string) => void = console.log): Promise<number> {
  out(`vllm-chill ${VERSION} (deno ${Deno.version.deno})`);
  return Promise.resolve(0);
}
