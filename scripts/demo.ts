/**
 * `deno task demo`: the pool on one box with no GPU — the proxy with the
 * process backend, three models served by the project's fake vLLM on two fake
 * GPUs (a shared GPU-memory ledger makes the fake engines fail like vLLM would
 * if the proxy ever oversubscribed a GPU), sleep mode on — plus the curl lines
 * that show a cold start, two models sharing a GPU, an eviction, and a switch
 * by wake with its time. Flags of `serve` apply (e.g. `deno task demo --port 9090`).
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
  // The fake GPUs' memory: every fake engine claims its share here, and fails like vLLM when a GPU is full.
  const ledgerDir = await Deno.makeTempDir({ prefix: "vllm-chill-demo-gpus-" });
  const ledger = `${ledgerDir}/gpus.json`;
  const vllm = (input.vllm ?? {}) as { env?: Record<string, string> };
  input.vllm = { ...vllm, env: { ...vllm.env, FAKE_GPU_LEDGER: ledger } };
  const config = await loadConfig({ file: DEMO_CONFIG, input, flags: values, env: Deno.env.toObject() });
  const server = await startServer(config);
  const u = server.url;
  const chat = (model: string, extra = "") =>
    `curl -s ${u}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{"model":"${model}","messages":[{"role":"user","content":"hello"}]${extra}}'`;
  const gpus = config.process.gpus.join(", ");
  console.log(`
vllm-chill demo — the pool on one box: three fake vLLM engines on two fake GPUs (${gpus}), sleep mode on,
nothing loaded yet. Models: qwen3-8b (0.6 of a GPU), bge-m3 (0.15), qwen3-32b (0.8 of both GPUs).

  # the dashboard, live while you run the lines below: open ${u}/ui

  # every model, cold ones included, with its status
  curl -s ${u}/v1/models

  # 1. cold start: the request is held while qwen3-8b loads on GPU 0 (~3 s), then answered
  ${chat("qwen3-8b")}

  # 2. co-residency: bge-m3 (0.15) fits beside qwen3-8b (0.6) on GPU 0 — both awake, GPU 1 still free
  curl -s ${u}/v1/embeddings -H 'content-type: application/json' -d '{"model":"bge-m3","input":"hello"}'
  curl -s ${u}/admin/status    # "gpus": {"0": {"awakeShare": 0.75, "models": ["qwen3-8b", "bge-m3"]}, …}

  # 3. eviction: qwen3-32b needs 0.8 of both GPUs; the least recently used idle model that makes
  #    enough room (qwen3-8b) falls asleep — GPU memory freed, process kept — then qwen3-32b loads (~6 s)
  ${chat("qwen3-32b")}

  # 4. switch by wake: qwen3-8b again; qwen3-32b falls asleep and qwen3-8b wakes in well under a second
  #    instead of a 3 s cold start — its time is "lastWakeMs" in the status, and vllm_chill_wake_seconds
  ${chat("qwen3-8b")}
  curl -s ${u}/admin/status    # "models": {"qwen3-8b": {"status": "ready", "lastWakeMs": …}, "qwen3-32b": {"status": "sleeping"…

  # the pool's metrics: each model's state, awake share per GPU, wakes, sleeps, evictions
  curl -s ${u}/metrics | grep -E '^vllm_chill_(model_state.*} 1|gpu_awake_share|wake_seconds_count|sleeps_total|evictions_total)'

  # admin: put a model to sleep, unload one, unload all
  curl -s -X POST '${u}/admin/models/qwen3-8b/sleep?wait=true'
  curl -s -X POST '${u}/admin/models/bge-m3/unload?wait=true'
  curl -s -X POST '${u}/admin/unload?wait=true'

Idle models fall asleep after ${formatDuration(config.sleepAfter ?? 0)} and stop after ${
    formatDuration(config.idleTimeout)
  } (at most ${config.maxSleeping} asleep at once).
Ctrl-C stops the proxy and its engines.
`);
  const { promise, resolve } = Promise.withResolvers<void>();
  const stop = () => server.shutdown().then(resolve, resolve);
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await promise;
  await Deno.remove(ledgerDir, { recursive: true }).catch(() => {});
  Deno.exit(0);
}
