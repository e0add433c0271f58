import assert from "node:assert/strict";
import OpenAI from "openai";
import { MODELS, startProxy } from "./helpers.ts";

const SWITCH = { enableModelSwitch: true, models: MODELS };

function client(base: string, headers: Record<string, string> = {}, apiKey = "unused"): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 5000, defaultHeaders: headers });
}

Deno.test("OpenAI SDK streaming through the proxy, chunk by chunk (not buffered)", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("qwen");
    const base = p.serve();
    const stream = await client(base, { "x-test": "hold-stream" }).chat.completions.create({
      model: "qwen3-8b",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    const parts: string[] = [];
    for await (const event of stream) {
      parts.push(event.choices[0].delta.content ?? "");
      // the upstream only sends its second chunk once the first one reached the client
      if (parts.length === 1) {
        assert.equal(p.gate.released, 0, "the lease is held while the stream runs");
        assert.ok(!p.logs.some((l) => l.msg === "request"), "the request line is written when the stream ends");
        p.upstream.releaseStream();
      }
    }
    assert.deepEqual(parts, ["Hello", " world"]);
    await p.gate.waitReleased(1);
    const line = p.logs.find((l) => l.msg === "request")!;
    assert.equal(line.status, 200);
    assert.ok((line.bytesOut as number) > 100);
  } finally {
    await p.close();
  }
});

Deno.test("client leaving mid-stream cancels the upstream and releases the lease once", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("qwen");
    const base = p.serve();
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-test": "hold-stream" },
      body: JSON.stringify({ model: "qwen3-8b", stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /Hello/);
    ac.abort();
    await reader.cancel().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      p.upstream.cancelled,
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error("upstream not cancelled")), 3000)),
    ]).finally(() => clearTimeout(timer));
    await p.gate.waitReleased(1);
    assert.equal(p.gate.released, 1);
    assert.equal(p.gate.issued, 1);
    p.upstream.releaseStream();
  } finally {
    await p.close();
  }
});

Deno.test("engine reset mid-stream: the SDK raises an APIError, counted as upstream_error", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("qwen");
    const base = p.serve();
    const stream = await client(base, { "x-test": "reset" }).chat.completions.create({
      model: "qwen3-8b",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    const parts: string[] = [];
    await assert.rejects(
      async () => {
        for await (const event of stream) parts.push(event.choices[0].delta.content ?? "");
      },
      (e: unknown) => e instanceof OpenAI.APIError && /mid-stream/.test(e.message),
    );
    assert.deepEqual(parts, ["Hello"]);
    await p.gate.waitReleased(1);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "upstream_error" }), 1);
    assert.equal(p.logs.find((l) => l.msg === "request")!.status, 502);
  } finally {
    await p.close();
  }
});

Deno.test("engine reset mid-body (not SSE): the client's body read fails", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("qwen");
    const base = p.serve();
    const res = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-test": "reset-json" },
      body: JSON.stringify({ model: "qwen3-8b" }),
    });
    assert.equal(res.status, 200);
    await assert.rejects(() => res.text());
    await p.gate.waitReleased(1);
  } finally {
    await p.close();
  }
});

Deno.test("OpenAI SDK errors: unknown model, queue full, engine unreachable", async () => {
  const p = await startProxy(SWITCH);
  try {
    const base = p.serve();
    const sdk = client(base);
    await assert.rejects(
      () => sdk.chat.completions.create({ model: "gpt-4", messages: [] }),
      (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
    );
    const held = sdk.chat.completions.create({ model: "llama", messages: [] });
    await p.gate.waitHeld(1);
    const { Rejection } = await import("./fake_gate.ts");
    p.gate.rejectAll(new Rejection(429, "hold_queue_full", "Too many held requests", 3));
    await assert.rejects(
      () => held,
      (e: unknown) => e instanceof OpenAI.RateLimitError && e.headers.get("retry-after") === "3",
    );
    p.gate.warm.add("llama");
    p.gate.upstream = "http://127.0.0.1:1";
    await assert.rejects(
      () => sdk.chat.completions.create({ model: "llama", messages: [] }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 502 && e.code === "upstream_error",
    );
  } finally {
    await p.close();
  }
});

Deno.test("against the project's fake vLLM: SDK streaming and audio-free routes through the proxy", async () => {
  const { startFakeVllm } = await import("../support/fake_vllm.ts");
  const vllm = await startFakeVllm({ model: "qwen3-8b", modelName: "Qwen/Qwen3-8B", tokensPerSec: 2000 });
  const p = await startProxy(SWITCH);
  try {
    p.gate.upstream = vllm.url;
    p.gate.warm.add("qwen");
    const base = p.serve();
    const sdk = client(base);
    const stream = await sdk.chat.completions.create({
      model: "qwen", // the key: rewritten to the served name the engine knows
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 5,
      stream: true,
    });
    let text = "";
    let chunks = 0;
    for await (const event of stream) {
      text += event.choices[0]?.delta?.content ?? "";
      chunks++;
    }
    assert.ok(chunks >= 2, `chunks ${chunks}`);
    assert.ok(text.length > 0);
    const embedding = await sdk.embeddings.create({ model: "qwen3-8b", input: "hello" });
    assert.ok(embedding.data[0].embedding.length > 0);
    await p.gate.waitReleased(2);
  } finally {
    await p.close();
    await vllm.close();
  }
});

Deno.test("/v1/messages streams end with an Anthropic-shaped `event: error` (also raised by the OpenAI SDK)", async () => {
  const p = await startProxy({ ...SWITCH, heartbeatInterval: "50ms" });
  try {
    p.gate.warm.add("qwen");
    const reset = await p.handler(
      new Request("http://proxy/v1/messages", {
        method: "POST",
        headers: { "content-type": "application/json", "x-test": "reset" },
        body: JSON.stringify({ model: "qwen3-8b", stream: true }),
      }),
    );
    const text = await reset.text();
    const last = text.trim().split("\n\n").at(-1)!;
    assert.match(last, /^event: error\ndata: /);
    const data = JSON.parse(last.split("\n")[1].slice(6));
    assert.equal(data.type, "error");
    assert.equal(data.error.code, "upstream_error");
    assert.equal(data.error.type, "server_error");
    // held then refused, with heartbeats first
    const held = await p.handler(
      new Request("http://proxy/v1/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "llama", stream: true }),
      }),
    );
    await p.gate.waitHeld(1);
    const { Rejection } = await import("./fake_gate.ts");
    p.gate.rejectAll(new Rejection(504, "hold_timeout", "held too long"));
    const refused = await held.text();
    assert.match(refused, /^: waiting for llama/);
    assert.match(refused, /event: error\ndata: \{"type":"error","error":\{"message":"held too long"/);
  } finally {
    await p.close();
  }
});
