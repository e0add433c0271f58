/**
 * The vllm-chill command line: `serve`, `manifests`, `validate`, `status`,
 * `version`. Unknown commands or flags print the usage and exit 2.
 *
 * @module
 */
import { UsageError } from "./lib/config/flags.ts";
import { type CliIo, processIo } from "./lib/cli/io.ts";
import { MANIFESTS_USAGE, runManifests } from "./lib/cli/manifests.ts";
import { runServe } from "./lib/cli/serve.ts";
import { runStatus } from "./lib/cli/status.ts";
import { MAIN_USAGE, serveUsage } from "./lib/cli/usage.ts";
import { runValidate, VALIDATE_USAGE } from "./lib/cli/validate.ts";
import { runVersion, VERSION_USAGE } from "./lib/cli/version.ts";

const HELP = new Set(["-h", "--help"]);

/**
 * Runs the CLI with `args` (without the program name) and returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./main.ts";
 * await main(["version"]); // 0
 * ```
 */
export async function main(args: string[], io: CliIo = processIo()): Promise<number> {
  const [command, ...rest] = args;
  const usageOf: Record<string, () => string> = {
    serve: serveUsage,
    manifests: () => MANIFESTS_USAGE,
    validate: () => VALIDATE_USAGE,
    version: () => VERSION_USAGE,
  };
  try {
    switch (command) {
      case undefined:
        io.stderr(MAIN_USAGE);
        return 2;
      case "-h":
      case "--help":
      case "help":
        io.stdout(MAIN_USAGE);
        return 0;
      case "--version":
        return await runVersion([], io.stdout);
      case "serve":
        if (rest.some((a) => HELP.has(a))) {
          io.stdout(serveUsage());
          return 0;
        }
        return await runServe(rest);
      case "status":
        return await runStatus(rest);
      case "manifests":
        return await runManifests(rest, io);
      case "validate":
        return await runValidate(rest, io);
      case "version":
        if (rest.some((a) => HELP.has(a))) {
          io.stdout(VERSION_USAGE);
          return 0;
        }
        if (rest.length > 0) throw new UsageError(`version takes no arguments, got "${rest[0]}"`);
        return await runVersion(rest, io.stdout);
      default:
        io.stderr(`error: unknown command "${command}"\n\n${MAIN_USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof Error && error.name === "UsageError")) {
      io.stderr(`error: ${error.message}\n\n${(usageOf[command] ?? (() => MAIN_USAGE))()}`);
      return 2;
    }
    throw error;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
