/**
 * End to end, process backend: hold-and-wake from zero (single flight),
 * streaming pass-through, stream-aware idle scale-down, and an engine that
 * crashes while serving. Real HTTP, fake vLLM engines as child processes.
 */
import assert from "node:assert/strict";
import { collectStream, postChat, readTimed, startProxy, waitUntil, within } from "./helpers.ts";

Deno.test("process e2e: N concurrent requests while cold → one engine start, all answered", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 300 } });
  try {
    assert.deepEqual(await proxy.engines(), [], "nothing runs before the first request");
    for (const path of ["/healthz", "/readyz"]) {
      const res = await fetch(`${proxy.url}${path}`);
      assert.equal(res.status, 200, path);
      await res.body?.cancel();
    }
    const openai = proxy.openai();
    const started = performance.now();
    const answers = await within(
      Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          openai.chat.completions.create({
            model: "a",
            messages: [{ role: "user", content: `hello ${i}` }],
            max_tokens: 3,
          })),
      ),
      15_000,
      "the held requests",
    );
    const tookMs = performance.now() - started;
    assert.equal(answers.length, 6);
    for (const answer of answers) {
      assert.equal(answer.model, "a");
      assert.equal(answer.choices[0].message.content, "the quick brown");
    }
    assert.ok(tookMs >= 250, `held until the engine was ready (took ${tookMs} ms)`);
    assert.equal(proxy.engineStarts(), 1, "one engine start for every held request");
    const engines = await proxy.engines();
    assert.equal(engines.length, 1);
    const status = proxy.server.scaler.status();
    assert.equal(status.state, "ready");
    assert.equal(status.activeModel, "a");
    assert.equal((proxy.server.backend.describe().engines as Record<string, { pid: number }>).a.pid, engines[0].pid);
    // The engine's own output reaches the proxy's log, with the model name.
    const engineLines = proxy.logs.records().filter((r) => r.stream === "stdout" && r.model === "a");
    assert.ok(engineLines.some((r) => /^listening on http:\/\/127\.0\.0\.1:\d+$/.test(r.msg as string)));
    assert.ok(status.lastColdStartMs !== null && status.lastColdStartMs >= 250, `cold start ${status.lastColdStartMs}`);

    // Warm: answered without another start.
    const warm = await openai.chat.completions.create({ model: "a", messages: [{ role: "user", content: "x" }] });
    assert.equal(warm.model, "a");
    assert.equal(proxy.engineStarts(), 1);

    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    for (
      const line of [
        'vllm_chill_requests_total{model="a",code="200"} 7',
        "vllm_chill_cold_start_seconds_count 1",
        'vllm_chill_scale_events_total{direction="up"} 1',
        'vllm_chill_held_requests{model="a"} 0',
        'vllm_chill_inflight_requests{model="a"} 0',
        "vllm_chill_replicas 1",
        'vllm_chill_active_model{model="a"} 1',
        'vllm_chill_state{state="ready"} 1',
      ]
    ) assert.ok(metrics.split("\n").includes(line), `metrics has ${line}`);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a stream is passed through chunk by chunk, not buffered", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 100, tokensPerSec: 20 } });
  try {
    // Warm up first, so the timing below is the engine's generation only.
    const warm = await postChat(proxy.url, "a", { max_tokens: 1 });
    assert.equal(warm.status, 200);
    await warm.body?.cancel();

    const start = performance.now();
    const res = await postChat(proxy.url, "a", { stream: true, max_tokens: 12 });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const chunks = await within(readTimed(res.body!, start), 10_000, "the stream");
    const text = chunks.map((c) => c.text).join("");
    assert.ok(text.endsWith("data: [DONE]\n\n"), "complete stream");
    const firstData = chunks.find((c) => c.text.includes('"content"'))!;
    const last = chunks[chunks.length - 1];
    // 12 tokens at 20/s: ~550 ms between the first and the last token.
    assert.ok(last.at - firstData.at >= 350, `chunks spread over time (first ${firstData.at}, last ${last.at})`);
    assert.ok(chunks.length >= 5, `arrived in many reads (${chunks.length})`);

    // The SDK sees the same tokens.
    const content = await collectStream(
      await proxy.openai().chat.completions.create({
        model: "a",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 5,
        stream: true,
      }),
    );
    assert.equal(content, "the quick brown fox jumps");
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: idle scale-down stops the engine, but never cuts a stream longer than idleTimeout", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, idleTimeout: "700ms" },
    { a: { loadMs: 100, tokensPerSec: 10 } },
  );
  try {
    const openai = proxy.openai();
    const idle = proxy.nextState("idle", 15_000);
    const started = performance.now();
    // 12 tokens at 10/s: a stream of ~1.1 s, longer than idleTimeout.
    const content = await within(
      collectStream(
        await openai.chat.completions.create({
          model: "a",
          messages: [{ role: "user", content: "tell me a long story" }],
          max_tokens: 12,
          stream: true,
        }),
      ),
      15_000,
      "the long stream",
    );
    const streamMs = performance.now() - started;
    assert.equal(content.split(" ").length, 12, "the stream was not cut");
    assert.ok(streamMs >= 1000, `the stream outlived idleTimeout (${streamMs} ms)`);
    assert.equal(proxy.server.scaler.status().state, "ready", "still loaded right after the stream");
    assert.equal((await proxy.engines()).length, 1);

    await idle;
    const idleAfter = performance.now() - started - streamMs;
    assert.ok(idleAfter >= 600, `idle timer ran from the end of the stream (${idleAfter} ms)`);
    assert.equal(proxy.logs.messages("engine stopped").length, 1);
    assert.deepEqual(await proxy.engines(), [], "engine process gone after idleTimeout");
    const models = await (await fetch(`${proxy.url}/v1/models`)).json();
    assert.equal(models.data[0].status, "cold");

    // And it wakes again.
    const again = await openai.chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 1,
    });
    assert.equal(again.model, "a");
    assert.equal(proxy.engineStarts(), 2);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: an engine that crashes while serving is reported, and the next request restarts it", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true },
    { a: { loadMs: 100, tokensPerSec: 50, crashAfterChunks: 3, crashMode: "exit" } },
  );
  try {
    const idle = proxy.nextState("idle", 10_000);
    const res = await postChat(proxy.url, "a", { stream: true, max_tokens: 10 });
    assert.equal(res.status, 200);
    const text = await new Response(res.body).text().catch((e) => `cut: ${e}`);
    assert.ok(!text.includes("data: [DONE]"), "the crashed stream does not pretend to be complete");
    await idle;
    const status = proxy.server.scaler.status();
    assert.equal(status.state, "idle");
    assert.ok(status.lastError, "the crash is the last error");
    assert.match(status.lastError.reason, /exited with code 1|engine core died/);
    assert.deepEqual(await proxy.engines(), []);

    // Non-streaming requests never crash this engine: the next one restarts it and is answered.
    const again = await proxy.openai().chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "again" }],
      max_tokens: 2,
    });
    assert.equal(again.choices[0].message.content, "the quick");
    assert.equal(proxy.engineStarts(), 2);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: clients that leave (while held, mid-stream) leave no counter stuck; idle still stops the engine", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, idleTimeout: "500ms" },
    { a: { loadMs: 400, tokensPerSec: 20 } },
  );
  try {
    // Leaves while held during the cold start.
    const heldAbort = new AbortController();
    const held = postChat(proxy.url, "a", {}, {}, heldAbort.signal).catch((e) => e);
    await waitUntil(() => proxy.server.scaler.status().held.a === 1, 5000, "the request to be held");
    heldAbort.abort();
    assert.ok((await held) instanceof Error);
    await waitUntil(() => proxy.server.scaler.status().held.a === undefined, 5000, "the held request to be dropped");

    // Leaves in the middle of a stream.
    const ready = proxy.nextState("ready", 10_000);
    const streamAbort = new AbortController();
    const res = await postChat(proxy.url, "a", { stream: true, max_tokens: 40 }, {}, streamAbort.signal);
    await ready;
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await within(reader.read(), 5000, "a first chunk");
    assert.equal(proxy.server.scaler.status().inflight.a, 1);
    const idle = proxy.nextState("idle", 10_000);
    streamAbort.abort();
    await reader.cancel().catch(() => {});
    await waitUntil(() => proxy.server.scaler.status().inflight.a === undefined, 5000, "in-flight back to 0");
    // 40 tokens at 20/s would stream for 2 s: the engine stops after idleTimeout from the client leaving.
    const left = performance.now();
    await idle;
    assert.ok(performance.now() - left < 1800, "the idle timer ran from the client leaving");
    assert.deepEqual(await proxy.engines(), []);
    const lines = proxy.logs.messages("request");
    assert.ok(lines.some((r) => r.status === 499), "the client leaving is logged as 499");
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: scale-only mode (one model, body untouched) — hold-and-wake and heartbeats work the same", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: false, heartbeatInterval: "100ms" },
    { solo: { loadMs: 400 } },
  );
  try {
    const listed = await (await fetch(`${proxy.url}/v1/models`)).json();
    assert.deepEqual(listed.data.map((m: { id: string; status: string }) => `${m.id}:${m.status}`), ["solo:cold"]);
    // A held stream gets heartbeats in scale-only mode too.
    const res = await postChat(proxy.url, "solo", { stream: true, max_tokens: 2 });
    assert.equal(res.status, 200);
    const text = await within(res.text(), 10_000, "the stream");
    assert.match(text, /^: waiting for/);
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    // The body is not rewritten: another model name reaches the engine as sent (and vLLM answers 404).
    const other = await postChat(proxy.url, "something-else");
    assert.equal(other.status, 404);
    assert.match((await other.json()).error.message, /something-else/);
    assert.equal(proxy.engineStarts(), 1);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: per-model overrides (servedModelName, holdTimeout, idleTimeout) apply to the process backend", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, idleTimeout: "1m", holdTimeout: "1m" },
    { b: { loadMs: 700, spec: { servedModelName: "bee", holdTimeout: "200ms", idleTimeout: "300ms" } } },
  );
  try {
    const ready = proxy.nextState("ready", 10_000);
    const started = performance.now();
    const early = await postChat(proxy.url, "bee");
    assert.equal(early.status, 504, "the model's own holdTimeout");
    assert.ok(performance.now() - started < 650, "rejected before the engine was ready");
    await early.body?.cancel();
    await ready;
    const engine = await proxy.engines();
    assert.equal(engine.length, 1);
    assert.ok(engine[0].args.includes("--model bee"), "{served} is the served name");

    const idle = proxy.nextState("idle", 10_000);
    // Asked for by its key, answered under its served name.
    const answer = await proxy.openai().chat.completions.create({
      model: "b",
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(answer.model, "bee");
    const answeredAt = performance.now();
    await idle;
    assert.ok(performance.now() - answeredAt < 5000, "the model's own idleTimeout (300ms), not the global 1m");
    assert.deepEqual(await proxy.engines(), []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a request that arrives while the engine is stopping is held, then served by a fresh engine", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, idleTimeout: "300ms" },
    { a: { loadMs: 100, stopDelayMs: 500 } },
  );
  try {
    const first = await postChat(proxy.url, "a");
    assert.equal(first.status, 200);
    await first.body?.cancel();
    await waitUntil(() => proxy.server.scaler.status().state === "stopping", 5000, "the idle stop", 5);
    const res = await within(postChat(proxy.url, "a"), 10_000, "the answer");
    assert.equal(res.status, 200);
    assert.equal((await res.json()).model, "a");
    assert.equal(proxy.engineStarts(), 2);
    assert.deepEqual(proxy.overlaps, [], "the new engine started after the old one exited");
  } finally {
    await proxy.close();
  }
});
