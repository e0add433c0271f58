/**
 * vllm-chill's `serve` for the held-requests measurement, with the client
 * connection limit raised to `--max-connections`: the default limit is half
 * of the file descriptors left (each forwarded request needs a second one
 * for its engine), which on a machine whose hard limit is 20,000 stops short
 * of 10,000 held connections. Held requests have no engine connection, so
 * the memory measured is the same.
 *
 * ```sh
 * deno run -A bench/held_proxy.ts --config <file> --max-connections 10500
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config/load.ts";
import { startServer } from "../lib/server.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { config: { type: "string" }, "max-connections": { type: "string", default: "10500" } },
  });
  const config = await loadConfig({ flags: { config: values.config }, env: {} });
  const server = await startServer(config, {
    connectionLimits: { maxConnections: Number(values["max-connections"]) },
  });
  const stop = () => server.shutdown().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
