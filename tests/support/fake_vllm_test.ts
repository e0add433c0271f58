import assert from "node:assert/strict";
import OpenAI from "openai";
import { startFakeVllm } from "./fake_vllm.ts";
import { spawnFakeVllmCli, stopFakeVllmCli } from "./fake_vllm_cli.ts";

function client(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "x", maxRetries: 0, timeout: 5000 });
}

async function post(url: string, body: unknown): Promise<Response> {
  return await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

Deno.test("fake vLLM: /health is 503 until loaded, then 200; other routes 503 meanwhile", async () => {
  const vllm = await startFakeVllm({ model: "m", loadMs: 60_000 });
  try {
    let res = await fetch(`${vllm.url}/health`);
    await res.body?.cancel();
    assert.equal(res.status, 503);
    res = await fetch(`${vllm.url}/v1/models`);
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, 503);
    vllm.setLoaded(true);
    res = await fetch(`${vllm.url}/health`);
    await res.body?.cancel();
    assert.equal(res.status, 200);
    vllm.setLoaded(false);
    res = await fetch(`${vllm.url}/health`);
    await res.body?.cancel();
    assert.equal(res.status, 503);
    assert.equal(vllm.requests, 1, "/health is not counted");
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: load time elapses on its own", async () => {
  const vllm = await startFakeVllm({ model: "m", loadMs: 80 });
  try {
    const started = Date.now();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      const res = await fetch(`${vllm.url}/health`);
      await res.body?.cancel();
      status = res.status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(status, 200);
    assert.ok(Date.now() - started >= 70, "not ready before its load time");
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: /v1/models lists the served model like vLLM", async () => {
  const vllm = await startFakeVllm({ model: "qwen3-8b", modelName: "Qwen/Qwen3-8B", maxModelLen: 32768 });
  try {
    const list = await client(vllm.url).models.list();
    assert.equal(list.data.length, 1);
    const model = list.data[0] as unknown as Record<string, unknown>;
    assert.equal(model.id, "qwen3-8b");
    assert.equal(model.object, "model");
    assert.equal(model.owned_by, "vllm");
    assert.equal(model.root, "Qwen/Qwen3-8B");
    assert.equal(model.max_model_len, 32768);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: streaming chat parsed by the OpenAI SDK, with usage", async () => {
  const vllm = await startFakeVllm({ model: "m" });
  try {
    const stream = await client(vllm.url).chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hello there" }],
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.length, 1 + 5 + 1, "role chunk, 5 tokens, usage chunk");
    for (const chunk of chunks) {
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.model, "m");
      assert.equal(chunk.id, chunks[0].id);
    }
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    const tokens = chunks.slice(1, 6);
    assert.ok(tokens.every((c) => c.choices[0].delta.role === undefined));
    assert.equal(tokens.map((c) => c.choices[0].delta.content).join(""), "the quick brown fox jumps");
    assert.deepEqual(tokens.map((c) => c.choices[0].finish_reason), [null, null, null, null, "length"]);
    const usage = chunks[6];
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage?.completion_tokens, 5);
    assert.equal(usage.usage?.total_tokens, usage.usage!.prompt_tokens + 5);
    assert.equal(chunks[1].usage, null, "usage is null on content chunks when include_usage");
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: raw SSE framing ends with [DONE]; no usage chunk without include_usage", async () => {
  const vllm = await startFakeVllm({ model: "m" });
  try {
    const res = await post(`${vllm.url}/v1/chat/completions`, {
      model: "m",
      messages: [{ role: "user", content: "x" }],
      max_completion_tokens: 2,
      stream: true,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const text = await res.text();
    const events = text.split("\n\n").filter((e) => e.length > 0);
    assert.ok(events.every((e) => e.startsWith("data: ")));
    assert.equal(events.length, 1 + 2 + 1);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.ok(!text.includes('"usage"'));
    assert.ok(text.endsWith("data: [DONE]\n\n"));
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: non-streaming chat and completions via the SDK; max_tokens sets the length", async () => {
  const vllm = await startFakeVllm({ model: "m" });
  const openai = client(vllm.url);
  try {
    const chat = await openai.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 3,
    });
    assert.equal(chat.object, "chat.completion");
    assert.equal(chat.model, "m");
    assert.equal(chat.choices[0].message.content, "the quick brown");
    assert.equal(chat.choices[0].finish_reason, "length");
    assert.equal(chat.usage?.completion_tokens, 3);

    const defaults = await openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] });
    assert.equal(defaults.usage?.completion_tokens, 16);
    assert.equal(defaults.choices[0].finish_reason, "stop");

    const completion = await openai.completions.create({ model: "m", prompt: "once upon", max_tokens: 4 });
    assert.equal(completion.object, "text_completion");
    assert.equal(completion.choices[0].text, "the quick brown fox");

    const stream = await openai.completions.create({ model: "m", prompt: "x", max_tokens: 2, stream: true });
    const texts = [];
    for await (const chunk of stream) {
      assert.equal(chunk.object, "text_completion");
      texts.push(chunk.choices[0].text);
    }
    assert.deepEqual(texts, ["the", " quick"]);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: another model → vLLM's exact 404 body; malformed JSON → 400", async () => {
  const vllm = await startFakeVllm({ model: "m" });
  try {
    const res = await post(`${vllm.url}/v1/chat/completions`, { model: "x", messages: [] });
    assert.equal(res.status, 404);
    assert.equal(
      await res.text(),
      '{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}}',
    );
    await assert.rejects(
      client(vllm.url).chat.completions.create({ model: "other", messages: [{ role: "user", content: "x" }] }),
      (e: unknown) => e instanceof OpenAI.NotFoundError && e.status === 404,
    );
    const bad = await post(`${vllm.url}/v1/completions`, "{not json");
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.type, "BadRequestError");
    const tooLong = await post(`${vllm.url}/v1/completions`, { prompt: "x", max_tokens: 100_000 });
    assert.equal(tooLong.status, 400);
    assert.match((await tooLong.json()).error.message, /maximum context length is 4096 tokens/);
    const unknown = await post(`${vllm.url}/v1/nope`, {});
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: embeddings are deterministic unit vectors", async () => {
  const vllm = await startFakeVllm({ model: "e", embeddingDims: 16 });
  try {
    const openai = client(vllm.url);
    const a = await openai.embeddings.create({ model: "e", input: ["alpha", "beta"], encoding_format: "float" });
    const b = await openai.embeddings.create({ model: "e", input: "alpha", encoding_format: "float" });
    assert.equal(a.model, "e");
    assert.equal(a.data.length, 2);
    assert.equal(a.data[0].embedding.length, 16);
    assert.deepEqual(a.data[0].embedding, b.data[0].embedding);
    assert.notDeepEqual(a.data[0].embedding, a.data[1].embedding);
    const norm = Math.sqrt(a.data[1].embedding.reduce((s, v) => s + v * v, 0));
    assert.ok(Math.abs(norm - 1) < 1e-9);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: /tokenize and /detokenize round-trip known words", async () => {
  const vllm = await startFakeVllm({ model: "m", maxModelLen: 1234 });
  try {
    const tok = await (await post(`${vllm.url}/tokenize`, { model: "m", prompt: "the lazy dog" })).json();
    assert.equal(tok.count, 3);
    assert.equal(tok.max_model_len, 1234);
    const detok = await (await post(`${vllm.url}/detokenize`, { model: "m", tokens: tok.tokens })).json();
    assert.equal(detok.prompt, "the lazy dog");
    const chat = await (await post(`${vllm.url}/tokenize`, { messages: [{ role: "user", content: "a b" }] })).json();
    assert.equal(chat.count, 2);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: token rate paces a stream", async () => {
  const vllm = await startFakeVllm({ model: "m", tokensPerSec: 200 });
  try {
    const started = performance.now();
    const res = await post(`${vllm.url}/v1/completions`, { prompt: "x", max_tokens: 11, stream: true });
    const text = await res.text();
    const elapsed = performance.now() - started;
    assert.equal(text.split("\n\n").filter(Boolean).length, 12);
    assert.ok(elapsed >= 45, `10 token intervals at 200/s take ≥ 50 ms, took ${elapsed}`);
    const t0 = performance.now();
    const plain = await post(`${vllm.url}/v1/completions`, { prompt: "x", max_tokens: 10 });
    assert.equal((await plain.json()).usage.completion_tokens, 10);
    assert.ok(performance.now() - t0 >= 45);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: crash mid-stream resets the connection after N chunks", async () => {
  const vllm = await startFakeVllm({ model: "m", crashAfterChunks: 3 });
  try {
    const res = await post(`${vllm.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "x" }],
      max_tokens: 50,
      stream: true,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    await assert.rejects(async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
    });
    assert.equal(text.split("\n\n").filter(Boolean).length, 3, "the chunks before the crash arrived");
    assert.ok(!text.includes("[DONE]"));
    await assert.rejects(async () => {
      const stream = await client(vllm.url).chat.completions.create({
        model: "m",
        messages: [{ role: "user", content: "x" }],
        max_tokens: 50,
        stream: true,
      });
      for await (const _ of stream) { /* until the crash */ }
    });
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM: close() ends streams in progress", async () => {
  const vllm = await startFakeVllm({ model: "m", tokensPerSec: 1 });
  const res = await post(`${vllm.url}/v1/completions`, { prompt: "x", max_tokens: 100, stream: true });
  const reader = res.body!.getReader();
  await reader.read();
  await vllm.close();
  // The stream ends (cleanly or not) instead of hanging for 100 s.
  try {
    while (!(await reader.read()).done) { /* drain */ }
  } catch { /* reset */ }
});

Deno.test("fake vLLM CLI: --port 0 prints its URL, serves, exits promptly on SIGTERM", async () => {
  const engine = await spawnFakeVllmCli(["--model", "cli-model", "--load-ms", "0"]);
  try {
    assert.match(engine.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await post(`${engine.url}/v1/chat/completions`, { model: "cli-model", messages: [], max_tokens: 1 });
    assert.equal((await res.json()).model, "cli-model");
    const t0 = Date.now();
    engine.child.kill("SIGTERM");
    const { code } = await engine.finish();
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    await stopFakeVllmCli(engine);
  }
});

Deno.test("fake vLLM CLI: --crash-after-chunks exits the process mid-stream", async () => {
  const engine = await spawnFakeVllmCli(["--model", "m", "--crash-after-chunks", "2", "--exit-code", "7"]);
  try {
    const res = await post(`${engine.url}/v1/completions`, { prompt: "x", max_tokens: 20, stream: true });
    await assert.rejects(res.text());
    const { code, stderr } = await engine.finish();
    assert.equal(code, 7);
    assert.match(stderr, /died mid-stream/);
  } finally {
    await stopFakeVllmCli(engine);
  }
});

Deno.test("fake vLLM CLI: --stop-delay-ms delays the exit after SIGTERM", async () => {
  const engine = await spawnFakeVllmCli(["--model", "m", "--stop-delay-ms", "300"]);
  try {
    const t0 = Date.now();
    engine.child.kill("SIGTERM");
    const { code } = await engine.finish();
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 >= 280);
  } finally {
    await stopFakeVllmCli(engine);
  }
});
