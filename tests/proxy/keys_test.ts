import assert from "node:assert/strict";
import OpenAI from "openai";
import { MODELS, post, startProxy } from "./helpers.ts";

const KEYS = {
  enableModelSwitch: true,
  models: MODELS,
  apiKeys: ["open-key-123", { key: "team-a-key-456", models: ["qwen"], name: "team-a" }],
};

function client(base: string, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 5000 });
}

Deno.test("API keys with the OpenAI SDK: missing/wrong → 401, not allowed → 403, valid → forwarded", async () => {
  const p = await startProxy(KEYS);
  try {
    p.gate.warm.add("qwen");
    p.gate.warm.add("llama");
    const base = p.serve();
    await assert.rejects(
      () => client(base, "wrong-key-999").chat.completions.create({ model: "qwen3-8b", messages: [] }),
      (e: unknown) => e instanceof OpenAI.AuthenticationError && e.code === "invalid_api_key",
    );
    await assert.rejects(
      () => client(base, "team-a-key-456").chat.completions.create({ model: "llama", messages: [] }),
      (e: unknown) => e instanceof OpenAI.PermissionDeniedError && e.code === "model_not_allowed",
    );
    assert.ok(p.gate.untouched, "nothing may wake before the key is checked");
    const ok = await client(base, "team-a-key-456").chat.completions.create({ model: "qwen3-8b", messages: [] });
    assert.equal(ok.choices[0].message.content, "Hi!");
    const open = await client(base, "open-key-123").chat.completions.create({ model: "llama", messages: [] });
    assert.equal(open.model, "llama");
    // the key is not forwarded: the engine has none
    assert.ok(p.upstream.requests.every((r) => r.headers.get("authorization") === null));
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "unauthorized" }), 1);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "forbidden" }), 1);
    // keys never appear in logs
    const logged = JSON.stringify(p.logs);
    assert.doesNotMatch(logged, /team-a-key-456|open-key-123|wrong-key-999/);
    assert.ok(p.logs.some((l) => l.msg === "request" && l.apiKey === "team-a"));
  } finally {
    await p.close();
  }
});

Deno.test("API keys: missing Authorization → 401 before the body is even read", async () => {
  const p = await startProxy({ ...KEYS, maxBodyBytes: "10" });
  try {
    const res = await p.handler(post("/v1/chat/completions", { model: "qwen", padding: "x".repeat(100) }));
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.error.code, "invalid_api_key");
    assert.match(body.error.message, /Bearer/);
    assert.ok(p.gate.untouched);
  } finally {
    await p.close();
  }
});

Deno.test("API keys: x-api-key accepted on /v1/messages only", async () => {
  const p = await startProxy(KEYS);
  try {
    p.gate.warm.add("qwen");
    const a = await p.handler(post("/v1/messages", { model: "qwen" }, { "x-api-key": "team-a-key-456" }));
    assert.equal(a.status, 200);
    await a.body?.cancel();
    assert.equal(p.upstream.requests[0].headers.get("x-api-key"), null);
    const b = await p.handler(post("/v1/chat/completions", { model: "qwen" }, { "x-api-key": "team-a-key-456" }));
    assert.equal(b.status, 401);
    await b.body?.cancel();
  } finally {
    await p.close();
  }
});

Deno.test("GET /v1/models with keys: 401 without a key, only allowed models with one (SDK)", async () => {
  const p = await startProxy(KEYS);
  try {
    const base = p.serve();
    await assert.rejects(
      () => client(base, "nope-nope-nope").models.list(),
      (e: unknown) => e instanceof OpenAI.AuthenticationError,
    );
    const teamA = [];
    for await (const m of client(base, "team-a-key-456").models.list()) teamA.push(m.id);
    assert.deepEqual(teamA, ["qwen3-8b"]);
    const all = [];
    for await (const m of client(base, "open-key-123").models.list()) all.push(m.id);
    assert.deepEqual(all, ["qwen3-8b", "llama"]);
    assert.ok(p.gate.untouched);
  } finally {
    await p.close();
  }
});

Deno.test("API keys in scale-only mode: a limited key is checked against the body's model", async () => {
  const p = await startProxy({ models: MODELS, apiKeys: KEYS.apiKeys });
  try {
    p.gate.warm.add("*");
    const denied = await p.handler(
      post("/v1/completions", { model: "llama" }, { authorization: "Bearer team-a-key-456" }),
    );
    assert.equal(denied.status, 403);
    await denied.body?.cancel();
    const ok = await p.handler(
      post("/v1/completions", { model: "qwen3-8b" }, { authorization: "Bearer team-a-key-456" }),
    );
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal(p.upstream.requests.length, 1);
  } finally {
    await p.close();
  }
});
