/**
 * `serve` command: load the config (flag > env > file > default), start the
 * proxy, and shut down gracefully on SIGTERM/SIGINT.
 *
 * @module
 */
import { ConfigError } from "../config/define.ts";
import { parseFlags, SERVE_FLAGS } from "../config/flags.ts";
import { ConfigLoadError, loadConfig } from "../config/load.ts";
import { startServer } from "../server.ts";

/**
 * Runs `serve` until SIGTERM/SIGINT; returns the exit code (0 after a clean
 * shutdown, 1 for a bad config or a port that cannot be bound). Usage errors
 * throw `UsageError` (main prints the usage and exits 2).
 *
 * @example
 * ```ts ignore
 * import { runServe } from "./serve.ts";
 * Deno.exit(await runServe(["--config", "vllm-chill.config.ts", "--port", "8080"]));
 * ```
 */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parseFlags(SERVE_FLAGS, args);
  let config;
  try {
    config = await loadConfig({ flags: values, env: Deno.env.toObject() });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof ConfigLoadError) {
      console.error(`serve: ${error.message}`);
      return 1;
    }
    throw error;
  }
  let server;
  try {
    server = await startServer(config);
  } catch (error) {
    console.error(`serve: cannot start: ${(error as Error).message}`);
    return 1;
  }
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => {
    server.shutdown().then(resolve, resolve);
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  // Resolves after the bounded drain; main exits, closing any connection still open.
  await stopped;
  for (const signal of signals) Deno.removeSignalListener(signal, stop);
  return 0;
}
