/**
 * Where CLI commands write and what environment they read, injectable for tests.
 *
 * @module
 */
import { ConfigError } from "../config/define.ts";
import { ConfigLoadError } from "../config/load.ts";

/** Output streams and environment of a command. */
export interface CliIo {
  /** Writes `text` (a newline is added) to stdout. */
  stdout(text: string): void;
  /** Writes `text` (a newline is added) to stderr. */
  stderr(text: string): void;
  /** The environment (`VLLM_CHILL_*` is read from it). */
  env: Readonly<Record<string, string | undefined>>;
}

/**
 * The process's stdout, stderr and environment.
 *
 * @example
 * ```ts
 * import { processIo } from "./io.ts";
 * processIo().stdout("hello");
 * ```
 */
export function processIo(): CliIo {
  return {
    stdout: (text) => console.log(text),
    stderr: (text) => console.error(text),
    env: safeEnv(),
  };
}

function safeEnv(): Record<string, string> {
  try {
    return Deno.env.toObject();
  } catch {
    return {};
  }
}

/**
 * Reports a config problem on stderr and returns exit code 1; rethrows anything else.
 *
 * @example
 * ```ts
 * import { reportConfigError } from "./io.ts";
 * import { ConfigLoadError } from "../config/load.ts";
 * const lines: string[] = [];
 * reportConfigError(new ConfigLoadError("config file x.ts not found"), { stdout() {}, stderr: (t) => lines.push(t), env: {} }); // 1
 * ```
 */
export function reportConfigError(error: unknown, io: CliIo): number {
  if (error instanceof ConfigLoadError) {
    io.stderr(`error: ${error.message}`);
    return 1;
  }
  if (error instanceof ConfigError || (error instanceof Error && error.name === "ConfigError")) {
    io.stderr(`error: ${error.message}`);
    return 1;
  }
  throw error;
}
