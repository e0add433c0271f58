/**
 * `deno task demo`: the proxy with the process backend and two models served
 * by the project's fake vLLM (no GPU needed), plus the curl lines that show a
 * cold start, a model switch and the idle scale-down. Flags of `serve` apply
 * (e.g. `deno task demo --port 9090`).
 *
 * @module
 */
import { parseFlags, SERVE_FLAGS } from "../lib/config/flags.ts";
import { loadConfig, readConfigFile } from "../lib/config/load.ts";
import { formatDuration } from "../lib/config/units.ts";
import { startServer } from "../lib/server.ts";

const DEMO_CONFIG = new URL("../examples/demo.config.json", import.meta.url).pathname;

if (import.meta.main) {
  Deno.chdir(new URL("..", import.meta.url).pathname);
  const { values } = parseFlags(SERVE_FLAGS, Deno.args);
  const input = await readConfigFile(DEMO_CONFIG);
  // The fake engines run on the Deno that runs the demo (`npx deno@… task demo` leaves none on PATH).
  for (const model of Object.values(input.models as Record<string, { command?: string[] }>)) {
    if (model.command?.[0] === "deno") model.command[0] = Deno.execPath();
  }
  const config = await loadConfig({ file: DEMO_CONFIG, input, flags: values, env: Deno.env.toObject() });
  const server = await startServer(config);
  const u = server.url;
  const chat = (model: string, extra = "") =>
    `curl -s ${u}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{"model":"${model}","messages":[{"role":"user","content":"hello"}]${extra}}'`;
  console.log(`
vllm-chill demo — process backend, two fake vLLM engines, nothing loaded yet.

  # every model, cold ones included, with its status
  curl -s ${u}/v1/models

  # 1. cold start: the request is held while "qwen3-8b" loads (~1.5 s), then answered
  ${chat("qwen3-8b")}

  # 2. switch: the first engine is stopped (GPU freed), the coder model loads, then answers
  ${chat("qwen2.5-coder-7b")}

  # 3. streaming, with SSE heartbeats while the model is cold
  ${chat("qwen3-8b", ',"stream":true')}

  # state, held and in-flight counts, last cold start and switch timings
  curl -s ${u}/admin/status

  # 4. idle scale-down: after ${formatDuration(config.idleTimeout)} without requests the engine stops;
  #    watch vllm_chill_state and vllm_chill_replicas go back to idle / 0
  curl -s ${u}/metrics | grep -E '^vllm_chill_(state|replicas|active_model)'

Ctrl-C stops the proxy and its engines.
`);
  const { promise, resolve } = Promise.withResolvers<void>();
  const stop = () => server.shutdown().then(resolve, resolve);
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await promise;
  Deno.exit(0);
}
