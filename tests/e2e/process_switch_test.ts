/**
 * End to end, process backend: model switching with the OpenAI SDK — the old
 * engine is gone before the new one starts, a stream in flight on the old
 * model completes first (drain), and two clients alternating between two
 * models do not cause one switch per request (anti-thrash).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import {
  collectStream,
  fakeEngineCommand,
  newMarker,
  processesWith,
  startProxy,
  waitUntil,
  within,
} from "./helpers.ts";

Deno.test("process e2e: a switch stops the old engine (GPU free) before the new one starts", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 150 }, b: { loadMs: 150 } });
  try {
    const openai = proxy.openai();
    const first = await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "hi" }] });
    assert.equal(first.model, "a");
    const pidOf = (key: string) =>
      (proxy.server.backend.describe().engines as Record<string, { pid: number }>)[key]?.pid;
    const pidA = pidOf("a");
    assert.equal(typeof pidA, "number");

    const second = await openai.chat.completions.create({ model: "b", messages: [{ role: "user", content: "hi" }] });
    assert.equal(second.model, "b", "answered by the engine of b");
    const pidB = pidOf("b");
    assert.notEqual(pidB, pidA);

    const engines = await proxy.engines();
    assert.deepEqual(engines.map((e) => e.pid), [pidB], "only b's engine runs");
    assert.ok(engines[0].args.includes("--model b"));
    assert.deepEqual(proxy.overlaps, [], "a's process had exited when b's was spawned");

    // The order as the backend logged it: a stopped, then b started.
    const events = proxy.logs.records()
      .filter((r) => r.msg === "engine started" || r.msg === "engine stopped")
      .map((r) => `${r.msg} ${r.model}`);
    assert.deepEqual(events, ["engine started a", "engine stopped a", "engine started b"]);

    const status = proxy.server.scaler.status();
    assert.equal(status.activeModel, "b");
    assert.ok(status.lastSwitchMs !== null && status.lastSwitchMs > 0, `switch timing ${status.lastSwitchMs}`);
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    assert.match(metrics, /vllm_chill_model_switches_total\{from="a",to="b"\} 1/);

    const listed = await openai.models.list();
    const byId = Object.fromEntries(listed.data.map((m) => [m.id, (m as unknown as { status: string }).status]));
    assert.deepEqual(byId, { a: "cold", b: "ready" });
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a stream in flight on model A completes before A is stopped for B", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true },
    { a: { loadMs: 100, tokensPerSec: 15 }, b: { loadMs: 100 } },
  );
  try {
    const openai = proxy.openai();
    await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "warm" }], max_tokens: 1 });
    let streamEnd = 0;
    // 15 tokens at 15/s: ~1 s of streaming.
    const streamDone = (async () => {
      const stream = await openai.chat.completions.create({
        model: "a",
        messages: [{ role: "user", content: "long" }],
        max_tokens: 15,
        stream: true,
      });
      const text = await collectStream(stream);
      streamEnd = performance.now();
      return text;
    })();
    // The stream is in flight once the engine of a counts it.
    await within(
      (async () => {
        while ((proxy.server.scaler.status().inflight.a ?? 0) === 0) await new Promise((r) => setTimeout(r, 10));
      })(),
      5000,
      "the stream to be in flight",
    );
    const bDone = openai.chat.completions.create({ model: "b", messages: [{ role: "user", content: "now" }] })
      .then((answer) => ({ answer, at: performance.now() }));

    const text = await within(streamDone, 10_000, "the stream on a");
    assert.equal(text.split(" ").length, 15, "the stream on a was not cut by the switch");
    const b = await within(bDone, 10_000, "the request for b");
    assert.equal(b.answer.model, "b");
    assert.ok(b.at >= streamEnd, "b was answered after a's stream ended");

    const stops = proxy.logs.records().filter((r) => r.msg === "stopping engine");
    assert.equal(stops.length, 1);
    const stopAt = Date.parse(stops[0].time as string);
    const lines = proxy.logs.records().filter((r) => r.msg === "request" && r.model === "a");
    const streamLine = lines[lines.length - 1];
    assert.equal(streamLine.status, 200);
    assert.ok(Date.parse(streamLine.time as string) <= stopAt, "a was stopped only after its stream ended");
    assert.deepEqual(proxy.overlaps, []);
  } finally {
    await proxy.close();
  }
});

// DESIGN (pool rule 4): an idle model may be evicted at once — the seed's fixed quiet before a switch is gone —
// so sequential clients switch between their requests (cheap with sleep mode: tests/e2e/process_pool_test.ts).
// What must hold: each request answered by its own model, nothing cut, one engine at a time on the GPU.
Deno.test("process e2e: two clients alternating between two models — each served by its model, one engine at a time", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, minLoadedTime: "1s" },
    { a: { loadMs: 100, tokensPerSec: 40 }, b: { loadMs: 100, tokensPerSec: 40 } },
  );
  try {
    const openai = proxy.openai();
    const client = async (model: string) => {
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) {
        const answer = await openai.chat.completions.create({
          model,
          messages: [{ role: "user", content: `${model} ${i}` }],
          max_tokens: 4,
        });
        seen.push(answer.model);
      }
      return seen;
    };
    const [seenA, seenB] = await within(Promise.all([client("a"), client("b")]), 30_000, "both clients");
    assert.deepEqual(seenA, Array(6).fill("a"));
    assert.deepEqual(seenB, Array(6).fill("b"));
    const starts = proxy.engineStarts();
    assert.ok(starts >= 2 && starts <= 12, `12 alternating requests caused ${starts} engine starts`);
    const cut = proxy.logs.records().filter((r) => r.msg === "request" && r.status !== 200);
    assert.deepEqual(cut, [], "no request was cut by a switch");
    assert.deepEqual(proxy.overlaps, []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: two models requested at once while cold — both served in order, one engine at a time", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 200 }, b: { loadMs: 200 } });
  try {
    const openai = proxy.openai();
    const ask = (model: string) =>
      openai.chat.completions.create({ model, messages: [{ role: "user", content: model }] })
        .then((answer) => ({ model: answer.model, at: performance.now() }));
    const a1 = ask("a");
    await waitUntil(() => proxy.server.scaler.status().held.a === 1, 5000, "a to be held");
    const [b1, a2, b2] = [ask("b"), ask("a"), ask("b")];
    const answers = await within(Promise.all([a1, b1, a2, b2]), 15_000, "every answer");
    assert.deepEqual(answers.map((a) => a.model), ["a", "b", "a", "b"]);
    assert.ok(answers[2].at <= answers[1].at, "the second a went with the first a, before the switch to b");
    assert.equal(proxy.engineStarts("a"), 1);
    assert.equal(proxy.engineStarts("b"), 1);
    assert.deepEqual(proxy.overlaps, []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a switch whose new engine fails → 503 for its requests, no engine left, the old model still loads", async () => {
  const marker = newMarker();
  const proxy = await startProxy({ enableModelSwitch: true }, {
    a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs: 100 }) },
    b: { modelName: "org/b", command: ["sh", "-c", 'sleep 0.2; echo "b: bad weights" >&2; exit 2', marker] },
  }, { marker });
  try {
    const openai = proxy.openai();
    assert.equal(
      (await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "x" }] })).model,
      "a",
    );
    await assert.rejects(
      openai.chat.completions.create({ model: "b", messages: [{ role: "user", content: "x" }] }),
      (e: unknown) =>
        e instanceof OpenAI.APIError && e.status === 503 && /'b' failed to start/.test(e.message) &&
        !/bad weights/.test(e.message),
    );
    // The 503 goes out when the start fails; the stop that follows ends a moment later.
    await waitUntil(() => proxy.server.scaler.status().state === "idle", 5000, "back to idle");
    const status = proxy.server.scaler.status();
    assert.equal(status.lastError?.model, "b");
    assert.match(status.lastError?.reason ?? "", /exited with code 2/);
    const lastExit = (status.backend.lastExit as Record<string, { output: string[] }>).b;
    assert.match(lastExit.output.join("\n"), /bad weights/, "the engine's output is in /admin/status");
    assert.deepEqual(await processesWith(marker), [], "neither a nor the failed b is left running");
    assert.equal(
      (await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "x" }] })).model,
      "a",
    );
    assert.deepEqual(proxy.overlaps, []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: an engine that ignores SIGTERM is killed after stopGracePeriod, then the switch goes on", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, process: { stopGracePeriod: "400ms" } },
    { a: { loadMs: 100, ignoreSigterm: true }, b: { loadMs: 100, ignoreSigterm: true } },
  );
  try {
    const openai = proxy.openai();
    await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "x" }] });
    const started = performance.now();
    const answer = await within(
      openai.chat.completions.create({ model: "b", messages: [{ role: "user", content: "x" }] }),
      10_000,
      "the switch",
    );
    assert.equal(answer.model, "b");
    assert.ok(performance.now() - started >= 400, "waited for the grace period");
    assert.ok(proxy.logs.messages("engine still running after SIGTERM, killing it").length === 1);
    assert.deepEqual(proxy.overlaps, [], "b started only once a was killed");
  } finally {
    // b ignores SIGTERM too: shutting the proxy down kills it after the grace period (close asserts it is gone).
    await proxy.close();
  }
});
