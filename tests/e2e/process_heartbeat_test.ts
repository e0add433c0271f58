/**
 * End to end, process backend: SSE heartbeats for streaming requests held
 * during a cold start. The response head arrives before the model is ready,
 * with `: waiting for …` comment lines; the OpenAI SDK parses the stream as a
 * normal one; a start that fails ends the stream with an error event the SDK
 * raises; heartbeatInterval "0s" sends nothing early.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { collectStream, delay, newMarker, postChat, readTimed, startProxy, waitUntil, within } from "./helpers.ts";

Deno.test("process e2e: heartbeats — early head and `: waiting for` comments while cold, then the stream", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, heartbeatInterval: "100ms" }, { a: { loadMs: 600 } });
  try {
    const start = performance.now();
    const res = await within(postChat(proxy.url, "a", { stream: true, max_tokens: 5 }), 5000, "the response head");
    const headAt = performance.now() - start;
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.notEqual(proxy.server.scaler.status().state, "ready", "the head came before the model was ready");
    assert.ok(headAt < 600, `head after ${headAt} ms, before the engine's 600 ms load`);

    const chunks = await within(readTimed(res.body!, start), 10_000, "the stream");
    const text = chunks.map((c) => c.text).join("");
    const comments = text.split("\n").filter((line) => line.startsWith(": waiting for a (cold start"));
    assert.ok(comments.length >= 3, `several heartbeats during the load (${comments.length})`);
    const firstData = text.indexOf("data: ");
    assert.ok(firstData > text.lastIndexOf(": waiting for"), "heartbeats only before the data");
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    assert.equal(proxy.engineStarts(), 1);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: heartbeats — the OpenAI SDK parses a held stream like a warm one", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true, heartbeatInterval: "100ms" },
    { a: { loadMs: 600, tokensPerSec: 100 } },
  );
  try {
    const openai = proxy.openai();
    const ask = () =>
      openai.chat.completions.create({
        model: "a",
        messages: [{ role: "user", content: "count" }],
        max_tokens: 7,
        stream: true,
      });
    const started = performance.now();
    const held = await within(collectStream(await ask()), 10_000, "the held stream");
    assert.ok(performance.now() - started >= 500, "it was held through the cold start");
    assert.ok(proxy.logs.lines.length > 0);
    const warm = await within(collectStream(await ask()), 10_000, "the warm stream");
    assert.equal(held, warm);
    assert.equal(held, "the quick brown fox jumps over a");
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: heartbeats — a start that fails ends the held stream with an error the SDK raises", async () => {
  const marker = newMarker();
  const proxy = await startProxy({ enableModelSwitch: true, heartbeatInterval: "100ms" }, {
    a: {
      modelName: "org/a",
      command: ["sh", "-c", 'sleep 0.4; echo "ValueError: model weights not found" >&2; exit 1', marker],
    },
  }, { marker });
  try {
    const res = await within(postChat(proxy.url, "a", { stream: true }), 5000, "the response head");
    assert.equal(res.status, 200, "the head was already sent");
    const text = await within(res.text(), 10_000, "the stream");
    assert.match(text, /^: waiting for a/);
    const event = text.split("\n").find((line) => line.startsWith("data: "));
    assert.ok(event, `an error event ends the stream: ${text}`);
    const error = JSON.parse(event.slice(6)).error;
    assert.match(error.message, /The model 'a' failed to start; the reason is in GET \/admin\/status/);
    assert.doesNotMatch(error.message, /weights/, "the engine's output stays out of the stream");
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.match(status.lastError.reason, /exited with code 1/);
    assert.match(JSON.stringify(status.backend.lastExit.a.output), /model weights not found/);

    const stream = await proxy.openai().chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    await assert.rejects(
      within(collectStream(stream), 10_000, "the SDK stream"),
      (e: unknown) => e instanceof OpenAI.APIError && /'a' failed to start/.test(e.message),
    );
    assert.equal(proxy.engineStarts(), 2);
  } finally {
    await proxy.close();
  }
});

Deno.test('process e2e: heartbeatInterval "0s" — no early head, no comments', async () => {
  const proxy = await startProxy({ enableModelSwitch: true, heartbeatInterval: "0s" }, { a: { loadMs: 500 } });
  try {
    const start = performance.now();
    const res = await within(postChat(proxy.url, "a", { stream: true, max_tokens: 3 }), 10_000, "the response");
    const headAt = performance.now() - start;
    assert.equal(res.status, 200);
    assert.equal(proxy.server.scaler.status().state, "ready", "the head came once the model was ready");
    assert.ok(headAt >= 450, `no early head (${headAt} ms)`);
    const text = await res.text();
    assert.ok(!text.includes(": waiting"), "no heartbeat comments");
    assert.ok(text.startsWith("data: "));
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: heartbeats — a client that leaves while held is dropped from the queue", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, heartbeatInterval: "100ms" }, { a: { loadMs: 2000 } });
  try {
    const leave = new AbortController();
    const res = await postChat(proxy.url, "a", { stream: true }, {}, leave.signal);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await within(reader.read(), 5000, "a heartbeat")).value);
    assert.match(first, /^: waiting for a \(cold start, 0s\)/);
    await waitUntil(() => proxy.server.scaler.status().held.a === 1, 5000, "the request to be held");
    await delay(150);
    leave.abort();
    await reader.cancel().catch(() => {});
    await waitUntil(() => proxy.server.scaler.status().held.a === undefined, 5000, "the held request to be dropped");
    const line = await waitUntil(() => proxy.logs.messages("request").find((r) => r.status === 499), 5000, "log");
    assert.ok((line.heldMs as number) >= 100, `the log line says how long it was held (${line.heldMs} ms)`);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: heartbeats — an engine that refuses the held request ends the stream with its error", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, heartbeatInterval: "100ms" }, { a: { loadMs: 300 } });
  try {
    const stream = await proxy.openai().chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 0,
      stream: true,
    });
    await assert.rejects(
      within(collectStream(stream), 10_000, "the SDK stream"),
      (e: unknown) => e instanceof OpenAI.APIError && /max_tokens must be a positive integer/.test(e.message),
    );
    // Warm, the same request gets the engine's own status.
    const warm = await postChat(proxy.url, "a", { stream: true, max_tokens: 0 });
    assert.equal(warm.status, 400);
    await warm.body?.cancel();
    assert.deepEqual(proxy.logs.messages("request").map((r) => r.status), [400, 400]);
  } finally {
    await proxy.close();
  }
});
