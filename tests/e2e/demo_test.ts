/**
 * End to end: the demo. The demo config (examples/demo.config.json) runs in
 * process with shorter load and idle times — cold start, switch, streaming
 * with heartbeats, status, idle scale-down, as the demo's curl lines show —
 * and `deno task demo`'s script runs as a child process: it prints the curl
 * lines, answers them, and leaves no engine behind on SIGTERM.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/define.ts";
import { readConfigFile } from "../../lib/config/load.ts";
import { startServer } from "../../lib/server.ts";
import {
  assertNoEngines,
  captureLogs,
  collectStream,
  FAKE_VLLM,
  newMarker,
  processesWith,
  REPO_ROOT,
  spawnDeno,
  waitUntil,
  within,
} from "./helpers.ts";
import OpenAI from "openai";

const DEMO_CONFIG = `${REPO_ROOT}examples/demo.config.json`;

/** The demo config with the fake engine's path made absolute, faster loads, and a marker on every engine. */
async function demoConfig(marker: string) {
  const input = await readConfigFile(DEMO_CONFIG) as {
    models: Record<string, { command: string[] }>;
    [key: string]: unknown;
  };
  assert.equal(input.backend, "process");
  assert.deepEqual(Object.keys(input.models), ["qwen3-8b", "qwen2.5-coder-7b"]);
  for (const model of Object.values(input.models)) {
    const command = model.command;
    assert.equal(command[0], "deno");
    const script = command.indexOf("tests/support/fake_vllm.ts");
    assert.ok(script > 0, "the demo runs the project's fake vLLM");
    command[script] = FAKE_VLLM;
    // A harmless Deno flag carrying the marker, so this test finds its engines.
    command.splice(script, 0, `--location=http://${marker}.invalid/`);
    command[0] = Deno.execPath();
    const load = command.indexOf("--load-ms");
    command[load + 1] = "200";
  }
  return parseConfig({ ...input, port: 0, idleTimeout: "1s", minLoadedTime: "0s", heartbeatInterval: "100ms" });
}

Deno.test("demo: the demo config end to end — cold start, switch, stream, status, idle scale-down", async () => {
  const marker = newMarker();
  const config = await demoConfig(marker);
  const logs = captureLogs();
  const server = await startServer(config, { log: logs.log, shutdownGraceMs: 2000 });
  try {
    const url = server.url;
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "demo", maxRetries: 0 });

    // Every model, cold ones included.
    const listed = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(
      listed.data.map((m: { id: string; status: string }) => `${m.id}:${m.status}`),
      ["qwen3-8b:cold", "qwen2.5-coder-7b:cold"],
    );

    // 1. Cold start.
    const first = await within(
      openai.chat.completions.create({ model: "qwen3-8b", messages: [{ role: "user", content: "hello" }] }),
      15_000,
      "the cold start",
    );
    assert.equal(first.model, "qwen3-8b");
    assert.ok(first.choices[0].message.content);
    assert.equal((await processesWith(marker)).length, 1);

    // 2. Switch.
    const second = await within(
      openai.chat.completions.create({ model: "qwen2.5-coder-7b", messages: [{ role: "user", content: "hello" }] }),
      15_000,
      "the switch",
    );
    assert.equal(second.model, "qwen2.5-coder-7b");
    const engines = await processesWith(marker);
    assert.equal(engines.length, 1);
    assert.ok(engines[0].args.includes("--model qwen2.5-coder-7b"));

    // 3. Streaming back to the first model, heartbeats while it loads.
    const raw = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "qwen3-8b",
        messages: [{ role: "user", content: "hello" }],
        stream: true,
        max_tokens: 4,
      }),
    });
    const text = await within(raw.text(), 15_000, "the stream");
    assert.match(text, /^: waiting for qwen3-8b/);
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    const streamed = await collectStream(
      await openai.chat.completions.create({
        model: "qwen3-8b",
        messages: [{ role: "user", content: "hello" }],
        stream: true,
        max_tokens: 4,
      }),
    );
    assert.equal(streamed, "the quick brown fox");

    // State, timings.
    const status = await (await fetch(`${url}/admin/status`)).json();
    assert.equal(status.state, "ready");
    assert.equal(status.activeModel, "qwen3-8b");
    assert.ok(status.lastColdStartMs > 0);
    assert.ok(status.lastSwitchMs > 0);

    // 4. Idle scale-down after idleTimeout.
    await waitUntil(() => server.scaler.status().state === "idle", 10_000, "the idle scale-down", 50);
    await assertNoEngines(marker, 3000);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^vllm_chill_state\{state="idle"\} 1$/m);
    assert.match(metrics, /^vllm_chill_replicas 0$/m);
    assert.match(metrics, /^vllm_chill_model_switches_total\{from="qwen3-8b",to="qwen2.5-coder-7b"\} 1$/m);
    assert.equal(logs.messages("engine started").length, 3);
  } finally {
    await server.shutdown();
    await server.finished;
    await assertNoEngines(marker);
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
    assert.match(printed, /cold start/);
    assert.match(printed, /switch/);
    assert.match(printed, /idle scale-down: after 30s/);
    assert.match(printed, new RegExp(`curl -s ${url}/v1/chat/completions`));

    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), ["qwen3-8b", "qwen2.5-coder-7b"]);
    // The first curl line: a cold start with the demo's own load time (~1.5 s).
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
