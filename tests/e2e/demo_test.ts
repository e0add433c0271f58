/**
 * End to end: the demo. The demo config (examples/demo.config.json: three
 * models on two fake GPUs, sleep on) runs in process with shorter load times
 * and a GPU-memory ledger — cold start, co-residency, eviction, switch by
 * wake, status and metrics, as the demo's curl lines show — and `deno task
 * demo`'s script runs as a child process: it prints the curl lines, answers
 * them, and leaves no engine behind on SIGTERM.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/define.ts";
import { readConfigFile } from "../../lib/config/load.ts";
import { startServer } from "../../lib/server.ts";
import { assertNeverOversubscribed, createLedger } from "../support/gpu_ledger.ts";
import {
  assertNoEngines,
  captureLogs,
  FAKE_VLLM,
  newMarker,
  processesWith,
  REPO_ROOT,
  spawnDeno,
  within,
} from "./helpers.ts";
import OpenAI from "openai";

const DEMO_CONFIG = `${REPO_ROOT}examples/demo.config.json`;
const MODELS = ["qwen3-8b", "bge-m3", "qwen3-32b"];

/** The demo config with the fake engine's path made absolute, faster loads, and a marker on every engine. */
async function demoConfig(marker: string, ledger: string) {
  const input = await readConfigFile(DEMO_CONFIG) as {
    models: Record<string, { command: string[] }>;
    [key: string]: unknown;
  };
  assert.equal(input.backend, "process");
  assert.deepEqual(Object.keys(input.models), MODELS);
  for (const model of Object.values(input.models)) {
    const command = model.command;
    assert.equal(command[0], "deno");
    assert.ok(command.includes("{args}"), "the engines get vLLM's own arguments");
    const script = command.indexOf("tests/support/fake_vllm.ts");
    assert.ok(script > 0, "the demo runs the project's fake vLLM");
    command[script] = FAKE_VLLM;
    // A harmless Deno flag carrying the marker, so this test finds its engines.
    command.splice(script, 0, `--location=http://${marker}.invalid/`);
    command[0] = Deno.execPath();
    command[command.indexOf("--load-ms") + 1] = "200";
  }
  return parseConfig({
    ...input,
    port: 0,
    heartbeatInterval: "100ms",
    vllm: { env: { FAKE_GPU_LEDGER: ledger } },
  });
}

async function json(url: string) {
  return await (await fetch(url)).json();
}

Deno.test("demo: the demo config end to end — cold start, co-residency, eviction, switch by wake, status", async () => {
  const marker = newMarker();
  const ledger = await Deno.makeTempFile({ prefix: "vllm-chill-ledger-", suffix: ".json" });
  createLedger(ledger);
  const config = await demoConfig(marker, ledger);
  const logs = captureLogs();
  const server = await startServer(config, { log: logs.log, shutdownGraceMs: 2000 });
  try {
    const url = server.url;
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "demo", maxRetries: 0 });
    const chat = (model: string) =>
      within(
        openai.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }], max_tokens: 3 }),
        20_000,
        `an answer from ${model}`,
      );

    // Every model, cold ones included.
    const listed = await json(`${url}/v1/models`);
    assert.deepEqual(
      listed.data.map((m: { id: string; status: string }) => `${m.id}:${m.status}`),
      MODELS.map((m) => `${m}:cold`),
    );

    // 1. Cold start on GPU 0.
    assert.equal((await chat("qwen3-8b")).model, "qwen3-8b");
    // 2. Co-residency: bge-m3 beside it on GPU 0.
    const embedding = await openai.embeddings.create({ model: "bge-m3", input: "hello" });
    assert.equal(embedding.model, "bge-m3");
    let status = await json(`${url}/admin/status`);
    assert.deepEqual(status.gpus["0"], { awakeShare: 0.75, models: ["qwen3-8b", "bge-m3"] });
    assert.deepEqual(status.gpus["1"], { awakeShare: 0, models: [] });
    assert.equal((await processesWith(marker)).length, 2);

    // 3. Eviction: qwen3-32b needs 0.8 of both GPUs; qwen3-8b (least recently used, enough room) falls asleep.
    assert.equal((await chat("qwen3-32b")).model, "qwen3-32b");
    status = await json(`${url}/admin/status`);
    assert.equal(status.models["qwen3-8b"].status, "sleeping");
    assert.equal(status.models["bge-m3"].status, "ready");
    assert.deepEqual(status.models["qwen3-32b"].gpus, ["0", "1"]);
    assert.equal(status.gpus["0"].awakeShare, 0.95);

    // 4. Switch by wake: qwen3-8b wakes (no new engine), qwen3-32b falls asleep.
    assert.equal((await chat("qwen3-8b")).model, "qwen3-8b");
    status = await json(`${url}/admin/status`);
    assert.equal(status.models["qwen3-8b"].status, "ready");
    assert.equal(status.models["qwen3-32b"].status, "sleeping");
    assert.ok(status.models["qwen3-8b"].lastWakeMs >= 600, `wake took ${status.models["qwen3-8b"].lastWakeMs} ms`);
    assert.equal(logs.messages("engine started").length, 3, "three cold starts, then a wake");

    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^vllm_chill_model_state\{model="qwen3-32b",state="sleeping"\} 1$/m);
    assert.match(metrics, /^vllm_chill_evictions_total\{model="qwen3-8b",action="sleep"\} 1$/m);
    assert.match(metrics, /^vllm_chill_evictions_total\{model="qwen3-32b",action="sleep"\} 1$/m);
    assert.match(metrics, /^vllm_chill_wake_seconds_count 1$/m);
    assertNeverOversubscribed(ledger, { allowRefusals: false });
  } finally {
    await server.shutdown();
    await server.finished;
    await assertNoEngines(marker);
    await Deno.remove(ledger);
  }
});

Deno.test("demo: `scripts/demo.ts` prints the curl lines, answers them, and stops its engines on SIGTERM", async () => {
  // From another directory, with no `deno` on PATH (as under `npx deno@… task demo`): the demo finds its config and
  // the fake engine itself, and runs the engines on its own Deno.
  const elsewhere = await Deno.makeTempDir({ prefix: "vllm-chill-demo-" });
  const cli = spawnDeno([`${REPO_ROOT}scripts/demo.ts`, "--port", "0", "--idle-timeout", "30s"], {
    PATH: elsewhere,
  }, elsewhere);
  let enginePids: number[] = [];
  try {
    const line = await cli.waitForLine(/curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/models/, 20_000);
    const url = line.match(/http:\/\/127\.0\.0\.1:\d+/)![0];
    await cli.waitForLine(/Ctrl-C stops the proxy/, 5000);
    const printed = cli.stdout.join("\n");
    for (const shown of [/cold start/, /co-residency/, /eviction/, /switch by wake/, /stop after 30s/]) {
      assert.match(printed, shown);
    }
    assert.match(printed, new RegExp(`curl -s ${url}/v1/chat/completions`));

    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), MODELS);
    // The first curl line: a cold start with the demo's own load time (~3 s).
    const res = await within(
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hello" }], max_tokens: 3 }),
      }),
      20_000,
      "the demo's cold start",
    );
    assert.equal(res.status, 200);
    assert.equal((await res.json()).model, "qwen3-8b");
    enginePids = (await processesWith("tests/support/fake_vllm.ts"))
      .filter((p) => p.ppid === cli.child.pid)
      .map((p) => p.pid);
    assert.equal(enginePids.length, 1, "one engine, a child of the demo");

    cli.child.kill("SIGTERM");
    const status = await within(cli.exited, 15_000, "the demo to exit");
    assert.equal(status.code, 0, cli.stderr.join("\n"));
    const left = (await processesWith("tests/support/fake_vllm.ts")).filter((p) => enginePids.includes(p.pid));
    assert.deepEqual(left, [], "the demo's engine is gone");
  } finally {
    try {
      cli.child.kill("SIGKILL");
    } catch { /* exited */ }
    await cli.exited;
    for (const pid of enginePids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone, as expected */ }
    }
    await Deno.remove(elsewhere, { recursive: true });
  }
});
