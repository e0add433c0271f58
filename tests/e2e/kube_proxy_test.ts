/**
 * End-to-end, Kubernetes backend, forwarding details: the model read from a
 * multipart form (audio transcription) with the body passed through intact;
 * hop-by-hop headers dropped and x-request-id set; a client that leaves a
 * stream aborts the upstream request; an engine that is gone behind a Ready
 * pod gives 502 with an OpenAI body.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { metricsText, metricValue, userDeployment, waitUntil, withKubeE2e } from "./kube_helpers.ts";

const encoder = new TextEncoder();

function multipart(boundary: string, model: string): Uint8Array<ArrayBuffer> {
  const audio = new Uint8Array(256).map((_, i) => (i * 37) % 256); // binary, not UTF-8
  const parts = [
    encoder.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n` +
        `Content-Type: audio/wav\r\n\r\n`,
    ),
    audio,
    encoder.encode(
      `\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${model}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n--${boundary}--\r\n`,
    ),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("kube e2e proxy: the model comes from a multipart form (audio transcription); the form reaches vLLM byte-identical", async () => {
  await withKubeE2e({}, async (env) => {
    const boundary = "e2e-boundary-7MA4YWxkTrZu0gW";
    const body = multipart(boundary, "model-b");
    const res = await fetch(`${env.url}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      body,
    });
    await res.body?.cancel();
    assert.deepEqual(env.engines.map((e) => e.model), ["model-b"], "model-b woken by the form field");
    const received = env.engines[0].received;
    assert.equal(received.length, 1);
    assert.equal(received[0].path, "/v1/audio/transcriptions");
    assert.deepEqual(received[0].body, body, "multipart body untouched");
    // The fake vLLM has no transcription route: its own 404 is relayed as is.
    assert.equal(res.status, 404);
  });
});

Deno.test("kube e2e proxy: hop-by-hop headers dropped, end-to-end ones kept, x-request-id generated", async () => {
  await withKubeE2e({
    config: { enableModelSwitch: false, models: {} },
    defaultServed: "m",
    seed: (fake) => void fake.store.createObject("deployments", userDeployment(0)),
  }, async (env) => {
    const res = await fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "connection": "keep-alive, x-drop-me",
        "x-drop-me": "1",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic c2VjcmV0",
        "x-keep-me": "yes",
        "openai-organization": "org-1",
      },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }),
    });
    assert.equal(res.status, 200);
    const id = res.headers.get("x-request-id");
    await res.body?.cancel();
    const headers = env.engines[0].received[0].headers;
    assert.equal(headers.get("x-keep-me"), "yes");
    assert.equal(headers.get("openai-organization"), "org-1");
    assert.equal(headers.get("x-drop-me"), null, "a header named in Connection is hop-by-hop");
    assert.equal(headers.get("proxy-authorization"), null);
    assert.equal(headers.get("keep-alive"), null);
    assert.ok(id && id.length > 0, "x-request-id returned");
    assert.equal(headers.get("x-request-id"), id, "the same id sent upstream");
  });
});

Deno.test("kube e2e proxy: a client leaving a stream aborts the upstream request at once", async () => {
  await withKubeE2e({ engine: { tokensPerSec: 10 } }, async (env) => {
    const client = new AbortController();
    const res = await fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "model-a",
        messages: [{ role: "user", content: "x" }],
        max_tokens: 50,
        stream: true,
      }),
      signal: client.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    const left = performance.now();
    client.abort();
    await reader.closed.catch(() => {});
    await waitUntil(() => env.engines[0].streamsCancelled === 1, 3000, "the upstream stream cancelled");
    assert.ok(performance.now() - left < 2000, "aborted well before the 5 s stream would end");
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_inflight_requests", { model: "model-a" }) === 0,
      3000,
      "no request counted in flight",
    );
  });
});

Deno.test("kube e2e proxy: the engine gone behind a Ready pod → 502 upstream error with an OpenAI body", async () => {
  await withKubeE2e({}, async (env) => {
    const openai = env.openai();
    const ok = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 1,
    });
    assert.equal(ok.model, "model-a");
    await env.killEngine();
    const started = performance.now();
    await assert.rejects(
      openai.chat.completions.create({ model: "model-a", messages: [{ role: "user", content: "y" }], max_tokens: 1 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.APIError, String(error));
        assert.equal(error.status, 502);
        assert.equal(typeof error.message, "string");
        return true;
      },
    );
    assert.ok(performance.now() - started < 5000, "answered without hanging");
  });
});
