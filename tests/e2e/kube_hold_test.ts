/**
 * End-to-end, Kubernetes backend, holding requests: bounded by
 * maxHeldRequests (429 + Retry-After) and holdTimeout (504); a client that
 * leaves while held is removed from the queue and leaves no counter stuck
 * (the model still idles out); a switch requested during a cold start; an
 * upstream reset mid-stream; one structured log line per request and per
 * state change.
 */
import assert from "node:assert/strict";
import { chat, delay, metricsText, metricValue, modelStatuses, waitUntil, withKubeE2e } from "./kube_helpers.ts";

Deno.test("kube e2e hold: beyond maxHeldRequests → 429 + Retry-After; the held ones are served after one scale-up", async () => {
  await withKubeE2e({ config: { maxHeldRequests: 2 }, engine: { loadMs: 1500 } }, async (env) => {
    const held = [chat(env.url, "model-a"), chat(env.url, "model-a")];
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_held_requests", { model: "model-a" }) === 2,
      3000,
      "two held",
    );
    const third = await chat(env.url, "model-a");
    assert.equal(third.status, 429, JSON.stringify(third.body));
    assert.ok(Number(third.headers.get("retry-after")) > 0, "Retry-After set");
    assert.equal(typeof third.body.error.message, "string");
    for (const r of await Promise.all(held)) assert.equal(r.status, 200);
    assert.equal(env.engines.length, 1);
    assert.equal(env.scalePatches().length, 1);
    const metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_requests_total", { model: "model-a", code: "429" }), 1);
  });
});

Deno.test("kube e2e hold: held longer than holdTimeout → 504; the start goes on and the next request is served", async () => {
  await withKubeE2e({ config: { holdTimeout: "1s" }, engine: { loadMs: 1800 } }, async (env) => {
    const started = performance.now();
    const late = await chat(env.url, "model-b");
    const elapsed = performance.now() - started;
    assert.equal(late.status, 504, JSON.stringify(late.body));
    assert.ok(elapsed >= 900 && elapsed < 3000, `504 after ${elapsed.toFixed(0)} ms`);
    assert.equal(typeof late.body.error.message, "string");
    // The start was not abandoned with the request: model-b turns ready on its own.
    await waitUntil(async () => (await modelStatuses(env.url))["model-b"] === "ready", 5000, "model-b ready");
    const next = await chat(env.url, "model-b");
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(env.engines.length, 1, "the first start was not wasted");
  });
});

Deno.test("kube e2e hold: a client leaving while held is dropped from the queue; nothing stays counted; idle still scales to 0", async () => {
  await withKubeE2e({ config: { idleTimeout: "1s" }, engine: { loadMs: 1500 } }, async (env) => {
    const leaving = new AbortController();
    const gone = fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "model-a", messages: [{ role: "user", content: "bye" }], max_tokens: 2 }),
      signal: leaving.signal,
    }).catch((error) => error);
    const staying = chat(env.url, "model-a");
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_held_requests", { model: "model-a" }) === 2,
      3000,
      "two held",
    );
    leaving.abort();
    assert.ok((await gone) instanceof Error);
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_held_requests", { model: "model-a" }) === 1,
      3000,
      "the leaver dropped from the queue",
    );
    assert.equal((await staying).status, 200);
    assert.equal(env.engines[0].received.length, 1, "the cancelled request never reached vLLM");
    const metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_held_requests", { model: "model-a" }), 0);
    assert.equal(metricValue(metrics, "vllm_chill_inflight_requests", { model: "model-a" }), 0);
    await env.fake.until(() => env.replicas() === 0 && env.fake.kubelet.pods().length === 0, 5000, "idle → 0");
  });
});

Deno.test("kube e2e hold: a switch requested during a cold start — a first, then b, never together", async () => {
  await withKubeE2e({ engine: { loadMs: 300 } }, async (env) => {
    const openai = env.openai();
    const ask = (model: string) =>
      openai.chat.completions.create({ model, messages: [{ role: "user", content: model }], max_tokens: 1 });
    const a = ask("model-a");
    await env.fake.until(() => env.engines.length === 1, 3000, "model-a's pod started");
    const b = ask("model-b");
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.model, "model-a");
    assert.equal(rb.model, "model-b");
    assert.deepEqual(env.engines.map((e) => e.model), ["model-a", "model-b"]);
    assert.ok(env.engines[0].stoppedAt! <= env.engines[1].startedAt);
  });
});

Deno.test("kube e2e hold: an upstream reset mid-stream ends the client's stream with an error; the proxy stays healthy", async () => {
  await withKubeE2e({ engine: { crashAfterChunks: 3, tokensPerSec: 50 } }, async (env) => {
    const openai = env.openai();
    const stream = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 20,
      stream: true,
    });
    let chunks = 0;
    await assert.rejects(async () => {
      for await (const _ of stream) chunks++;
    });
    assert.ok(chunks >= 1 && chunks < 20, `${chunks} chunks before the reset`);
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_inflight_requests", { model: "model-a" }) === 0,
      3000,
      "inflight back to 0",
    );
    const plain = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "y" }],
      max_tokens: 2,
    });
    assert.equal(plain.model, "model-a");
  });
});

Deno.test("kube e2e logs: one structured line per request (id, model, status, duration, held ms, bytes) and per state change", async () => {
  await withKubeE2e({}, async (env) => {
    const res = await fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "req-e2e-1" },
      body: JSON.stringify({ model: "model-a", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-request-id"), "req-e2e-1");
    await res.body?.cancel();
    await delay(50);
    const lines = env.logs.messages("request").filter((r) => r.id === "req-e2e-1");
    assert.equal(lines.length, 1);
    const line = lines[0];
    assert.equal(line.model, "model-a");
    assert.equal(line.status, 200);
    for (const field of ["durationMs", "heldMs", "bytesIn", "bytesOut"]) {
      assert.equal(typeof line[field], "number", field);
    }
    assert.ok((line.heldMs as number) > 0, "a cold start was held");
    const states = env.logs.messages("state").map((r) => `${r.from}→${r.to}`);
    assert.ok(states.includes("idle→starting") && states.includes("starting→ready"), states.join(", "));
    for (const r of env.logs.messages("state")) assert.ok("reason" in r && "durationMs" in r);
  });
});

Deno.test("kube e2e hold: a streaming request held through a cold start gets SSE heartbeats; the SDK reads the stream intact", async () => {
  await withKubeE2e({ config: { heartbeatInterval: "200ms" }, engine: { loadMs: 900 } }, async (env) => {
    const started = performance.now();
    const res = await fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "model-a",
        messages: [{ role: "user", content: "x" }],
        max_tokens: 4,
        stream: true,
      }),
    });
    const headAt = performance.now() - started;
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    const text = await res.text();
    assert.ok(headAt < 800, `response head sent early (${headAt.toFixed(0)} ms) while the model loads`);
    const comments = text.split("\n").filter((l) => l.startsWith(":"));
    assert.ok(comments.length >= 2, `heartbeats: ${JSON.stringify(comments)}`);
    assert.ok(text.trimEnd().endsWith("data: [DONE]"));

    // Second model, cold too, read through the official SDK: heartbeats are invisible to it.
    const stream = await env.openai().chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "y" }],
      max_tokens: 4,
      stream: true,
    });
    let content = "";
    for await (const chunk of stream) {
      assert.equal(chunk.model, "model-b");
      content += chunk.choices[0]?.delta?.content ?? "";
    }
    assert.equal(content.trim().split(" ").length, 4);
  });
});
