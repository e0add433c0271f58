/**
 * `serve` command: load the config (flag > env > file > default), start the
 * proxy, and shut down gracefully on SIGTERM/SIGINT.
 *
 * @module
 */
import { ConfigError } from "../config/define.ts";
import { parseFlags, SERVE_FLAGS } from "../config/flags.ts";
import { ConfigLoadError, loadConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { secretsOf, startServer } from "../server.ts";

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
  // Last line of defence: a promise rejection nobody handled must not end the proxy (and orphan its engine).
  const log = createLogger({ format: config.logFormat, secrets: secretsOf(config) });
  const onUnhandled = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    log.error("unhandled promise rejection (the proxy keeps running)", { error: event.reason });
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  let server;
  try {
    server = await startServer(config, { log });
  } catch (error) {
    console.error(`serve: cannot start: ${(error as Error).message}`);
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
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
  globalThis.removeEventListener("unhandledrejection", onUnhandled);
  return 0;
}
