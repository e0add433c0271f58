import assert from "node:assert/strict";
import OpenAI from "openai";
import { MODELS, post, startProxy } from "./helpers.ts";
import { Rejection } from "./fake_gate.ts";

const HB = { enableModelSwitch: true, models: MODELS, heartbeatInterval: "50ms" };

function client(base: string, headers: Record<string, string> = {}): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 5000, defaultHeaders: headers });
}

Deno.test("heartbeats while held 300 ms: the SDK parses a normal stream", async () => {
  const p = await startProxy(HB);
  try {
    const base = p.serve();
    const done = (async () => {
      const stream = await client(base).chat.completions.create({
        model: "qwen3-8b",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      const parts: string[] = [];
      for await (const event of stream) parts.push(event.choices[0].delta.content ?? "");
      return parts;
    })();
    await p.gate.waitHeld(1);
    await new Promise((r) => setTimeout(r, 300));
    p.gate.grant();
    assert.deepEqual(await done, ["Hello", " world"]);
    await p.gate.waitReleased(1);
    const line = p.logs.find((l) => l.msg === "request")!;
    assert.equal(line.status, 200);
    assert.ok((line.heldMs as number) >= 250, `heldMs ${line.heldMs}`);
    assert.equal(p.metrics.requestsTotal.get({ model: "qwen", code: "200" }), 1);
  } finally {
    await p.close();
  }
});

Deno.test("heartbeat wire format: head at once, comment lines, then the upstream stream unchanged", async () => {
  const p = await startProxy(HB);
  try {
    const res = await p.handler(post("/v1/chat/completions", { model: "qwen", stream: true }));
    // the head is there before the model is ready
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.equal(res.headers.get("x-accel-buffering"), "no");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while ((text.match(/: waiting/g) ?? []).length < 3) text += (await reader.read()).value;
    p.gate.grant();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
    const beats = text.split("\n\n").filter((l) => l.startsWith(": "));
    assert.ok(beats.length >= 3);
    assert.match(beats[0], /^: waiting for qwen \(cold start, \ds\)$/);
    const rest = text.slice(text.indexOf("data:"));
    assert.match(rest, /^data: \{.*"Hello".*\}\n\ndata: \{.*" world".*\}\n\ndata: \[DONE\]\n\n$/s);
    assert.equal(new TextDecoder().decode(p.upstream.requests[0].body), '{"model":"qwen3-8b","stream":true}');
  } finally {
    await p.close();
  }
});

Deno.test("heartbeats then a rejection: one OpenAI error event the SDK raises, without the engine's reason", async () => {
  const p = await startProxy(HB);
  try {
    const base = p.serve();
    const done = (async () => {
      const stream = await client(base).chat.completions.create({ model: "llama", messages: [], stream: true });
      for await (const _ of stream) { /* nothing arrives */ }
    })();
    await p.gate.waitHeld(1);
    await new Promise((r) => setTimeout(r, 120));
    p.gate.rejectAll(new Rejection(503, "model_unavailable", "llama failed to start: CrashLoopBackOff", 30));
    await assert.rejects(
      () => done,
      (e: unknown) =>
        e instanceof OpenAI.APIError && /llama' failed to start.*admin\/status/.test(e.message) &&
        !/CrashLoopBackOff/.test(e.message),
    );
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "model_unavailable" }), 0); // the scaler counts it
    assert.equal(p.logs.find((l) => l.msg === "request")!.status, 503);
    assert.equal(p.upstream.requests.length, 0);
  } finally {
    await p.close();
  }
});

Deno.test("heartbeats then an engine error status: error event with the engine's message", async () => {
  const p = await startProxy(HB);
  try {
    const res = await p.handler(post("/v1/chat/completions", { model: "llama", stream: true }, { "x-test": "error" }));
    await p.gate.waitHeld(1);
    p.gate.grant();
    const text = await res.text();
    const last = text.trim().split("\n\n").at(-1)!;
    assert.equal(JSON.parse(last.slice(6)).error.message, "bad param");
    assert.equal(p.gate.released, 1);
  } finally {
    await p.close();
  }
});

Deno.test("client leaving during heartbeats leaves the queue; no timer left behind", async () => {
  const p = await startProxy(HB);
  try {
    const base = p.serve();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "llama", stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    await p.gate.waitHeld(1);
    await reader.cancel();
    for (let i = 0; i < 100 && p.gate.held.length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(p.gate.held.length, 0);
    assert.equal(p.upstream.requests.length, 0);
  } finally {
    await p.close();
  }
});

Deno.test("no heartbeats for non-stream requests, nor when heartbeatInterval is 0s", async () => {
  for (
    const [config, body] of [[HB, { model: "llama" }], [{ ...HB, heartbeatInterval: "0s" }, {
      model: "llama",
      stream: true,
    }]] as const
  ) {
    const p = await startProxy(config);
    try {
      const pending = p.handler(post("/v1/chat/completions", body));
      let settled = false;
      pending.then(() => settled = true);
      await p.gate.waitHeld(1);
      await new Promise((r) => setTimeout(r, 60));
      assert.equal(settled, false, "the response waits for the model");
      p.gate.grant();
      const res = await pending;
      assert.equal(res.status, 200);
      assert.doesNotMatch(await res.text(), /waiting for/);
    } finally {
      await p.close();
    }
  }
});

Deno.test("scale-only mode: a held stream gets heartbeats too (body read, not routed)", async () => {
  const p = await startProxy({ heartbeatInterval: "50ms" });
  try {
    const res = await p.handler(post("/v1/completions", { model: "any", stream: true }));
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    await p.gate.waitHeld(1);
    assert.deepEqual(p.gate.acquireCalls, ["*"]);
    p.gate.grant();
    const text = await res.text();
    assert.match(text, /^: waiting for the model/);
    assert.match(text, /data: \[DONE\]\n\n$/);
  } finally {
    await p.close();
  }
});
