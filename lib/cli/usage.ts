/**
 * Usage texts of the CLI, derived from the flag tables.
 *
 * @module
 */
import { formatFlags, SERVE_FLAGS } from "../config/flags.ts";

/**
 * Top-level usage.
 *
 * @example
 * ```ts
 * import { MAIN_USAGE } from "./usage.ts";
 * MAIN_USAGE.includes("manifests"); // true
 * ```
 */
export const MAIN_USAGE = `Usage: vllm-chill <command> [flags]

Commands:
  serve       run the proxy (scale vLLM to zero when idle, wake it on demand)
  manifests   print Kubernetes YAML for kubectl apply -f -
  validate    check a config file and VLLMModel YAML files
  status      show the state of a running proxy or of the cluster
  version     print the version

Run 'vllm-chill <command> --help' for the flags of a command.
Every flag also reads VLLM_CHILL_<FLAG> from the environment (flag > env > config file > default).`;

/**
 * `serve --help`, from the flag table.
 *
 * @example
 * ```ts
 * import { serveUsage } from "./usage.ts";
 * serveUsage().includes("--idle-timeout"); // true
 * ```
 */
export function serveUsage(): string {
  return `Usage: vllm-chill serve [flags]

Runs the proxy. Flags (precedence flag > env > config file > default):
${formatFlags(SERVE_FLAGS)}`;
}
