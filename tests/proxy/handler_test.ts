import assert from "node:assert/strict";
import { MODELS, post, startProxy } from "./helpers.ts";
import { Rejection } from "./fake_gate.ts";

const SWITCH = { enableModelSwitch: true, models: MODELS };

async function assertError(res: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  assert.ok("type" in body.error && "param" in body.error);
  return body.error;
}

Deno.test("bad input: each case gets its status and OpenAI body, and nothing is acquired", async (t) => {
  const p = await startProxy({ ...SWITCH, maxBodyBytes: "1Ki" });
  try {
    const cases: [string, () => Request, number, string][] = [
      ["malformed JSON", () => post("/v1/chat/completions", '{"model":"qwen3-8b",'), 400, "invalid_json"],
      ["JSON that is not an object", () => post("/v1/chat/completions", "[1,2]"), 400, "invalid_json"],
      ["no model and no default", () => post("/v1/chat/completions", { messages: [] }), 400, "model_required"],
      ["model not a string", () => post("/v1/chat/completions", { model: 7 }), 400, "invalid_model"],
      ["unknown model", () => post("/v1/chat/completions", { model: "gpt-4" }), 404, "model_not_found"],
      [
        "oversized body (Content-Length)",
        () => post("/v1/chat/completions", { model: "qwen3-8b", pad: "x".repeat(2000) }),
        413,
        "request_too_large",
      ],
      [
        "oversized chunked body",
        () =>
          new Request("http://proxy/v1/chat/completions", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: new ReadableStream({
              start(c) {
                for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode("x".repeat(100)));
                c.close();
              },
            }),
          }),
        413,
        "request_too_large",
      ],
      ["unknown path", () => post("/v1/files", { model: "qwen3-8b" }), 404, "not_found"],
      ["unknown GET path", () => new Request("http://proxy/v1/fine_tuning/jobs"), 404, "not_found"],
      ["encoded slash", () => post("/v1%2Fchat%2Fcompletions", { model: "qwen3-8b" }), 404, "not_found"],
      ["path too long", () => post("/v1/" + "a".repeat(3000), {}), 414, "uri_too_long"],
      [
        "wrong content type",
        () =>
          new Request("http://proxy/v1/chat/completions", {
            method: "POST",
            headers: { "content-type": "text/plain" },
            body: '{"model":"qwen3-8b"}',
          }),
        415,
        "unsupported_media_type",
      ],
      [
        "malformed multipart",
        () =>
          new Request("http://proxy/v1/audio/transcriptions", {
            method: "POST",
            headers: { "content-type": "multipart/form-data; boundary=b" },
            body: "not multipart",
          }),
        400,
        "invalid_multipart",
      ],
      [
        "wrong method on a forwarded route",
        () => new Request("http://proxy/v1/chat/completions"),
        405,
        "method_not_allowed",
      ],
    ];
    for (const [name, make, status, code] of cases) {
      await t.step(name, async () => {
        await assertError(await p.handler(make()), status, code);
        assert.ok(p.gate.untouched, `${name}: the gate must not be called`);
      });
    }
    assert.equal(p.upstream.requests.length, 0);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "unknown_model" }), 1);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "body_too_large" }), 2);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "unknown_path" }), 3);
    assert.equal(p.metrics.requestsTotal.get({ model: "", code: "404" }), 1);
  } finally {
    await p.close();
  }
});

Deno.test("own endpoints: healthz, readyz, metrics, models never touch the gate", async () => {
  let ready = false;
  const p = await startProxy(SWITCH, { ready: () => ready });
  try {
    assert.equal((await p.handler(new Request("http://proxy/healthz"))).status, 200);
    const notReady = await p.handler(new Request("http://proxy/readyz"));
    assert.equal(notReady.status, 503);
    await notReady.body?.cancel();
    ready = true;
    const isReady = await p.handler(new Request("http://proxy/readyz"));
    assert.equal(isReady.status, 200);
    await isReady.body?.cancel();
    p.metrics.requestsTotal.inc({ model: "qwen", code: "200" });
    const metrics = await p.handler(new Request("http://proxy/metrics"));
    assert.equal(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await metrics.text();
    assert.match(text, /vllm_chill_requests_total\{model="qwen",code="200"\} 1/);
    assert.match(text, /# TYPE vllm_chill_held_requests gauge/);
    p.gate.statuses.set("qwen", "starting");
    const models = await (await p.handler(new Request("http://proxy/v1/models"))).json();
    assert.equal(models.object, "list");
    assert.deepEqual(
      models.data.map((
        m: { id: string; status: string; root: string; owned_by: string },
      ) => [m.id, m.status, m.root, m.owned_by]),
      [
        ["qwen3-8b", "starting", "Qwen/Qwen3-8B", "vllm-chill"],
        ["llama", "cold", "meta/llama", "vllm-chill"],
      ],
    );
    assert.ok(models.data.every((m: { object: string; created: number }) => m.object === "model" && m.created > 0));
    const wrongMethod = await p.handler(new Request("http://proxy/healthz", { method: "POST" }));
    await assertError(wrongMethod, 405, "method_not_allowed");
    assert.ok(p.gate.untouched);
  } finally {
    await p.close();
  }
});

Deno.test("forward over real HTTP: body bytes intact, headers cleaned, x-request-id, log line, metrics", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("llama");
    const base = p.serve();
    const raw = '{ "model": "llama",  "messages": [{"role":"user","content":"hi"}], "seed": 12345678901234567890 }';
    const res = await fetch(`${base}/v1/chat/completions?x=1`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-request-id": "req-42",
        "x-custom": "kept",
        "proxy-authorization": "secret",
        "connection": "x-drop-me",
        "x-drop-me": "dropped",
        "te": "trailers",
      },
      body: raw,
    });
    const body = await res.json();
    assert.equal(res.status, 200);
    assert.equal(body.choices[0].message.content, "Hi!");
    assert.equal(res.headers.get("x-request-id"), "req-42");
    assert.equal(res.headers.get("x-upstream"), "yes");
    const got = p.upstream.requests[0];
    assert.equal(got.path, "/v1/chat/completions?x=1");
    assert.equal(new TextDecoder().decode(got.body), raw, "bytes re-sent untouched");
    assert.equal(got.headers.get("x-request-id"), "req-42");
    assert.equal(got.headers.get("x-custom"), "kept");
    assert.equal(got.headers.get("proxy-authorization"), null);
    assert.equal(got.headers.get("x-drop-me"), null);
    assert.equal(got.headers.get("te"), null);
    assert.equal(got.headers.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(got.headers.get("x-forwarded-proto"), "http");
    assert.deepEqual(p.gate.tryCalls, ["llama"]);
    assert.equal(p.gate.acquireCalls.length, 0);
    await p.gate.waitReleased(1);
    assert.equal(p.gate.released, 1);
    const line = p.logs.find((l) => l.msg === "request")!;
    assert.equal(line.id, "req-42");
    assert.equal(line.model, "llama");
    assert.equal(line.status, 200);
    assert.equal(line.bytesIn, new TextEncoder().encode(raw).length);
    assert.ok((line.bytesOut as number) > 0);
    assert.equal(typeof line.durationMs, "number");
    assert.equal(line.heldMs, 0);
    assert.equal(p.metrics.requestsTotal.get({ model: "llama", code: "200" }), 1);
    assert.equal(p.metrics.requestDuration.count({ model: "llama" }), 1);
  } finally {
    await p.close();
  }
});

Deno.test("model rewrite: key → served name, default model inserted; generated request id", async () => {
  const p = await startProxy({ ...SWITCH, defaultModel: "qwen" });
  try {
    p.gate.warm.add("qwen");
    const a = await p.handler(post("/v1/completions", '{"model":"qwen","prompt":"x"}'));
    await a.body?.cancel();
    const b = await p.handler(post("/v1/completions", '{"prompt":"y"}'));
    await b.body?.cancel();
    const c = await p.handler(post("/v1/completions", '{"model":"qwen3-8b","prompt":"z"}'));
    await c.body?.cancel();
    const bodies = p.upstream.requests.map((r) => new TextDecoder().decode(r.body));
    assert.deepEqual(bodies, [
      '{"model":"qwen3-8b","prompt":"x"}',
      '{"model":"qwen3-8b","prompt":"y"}',
      '{"model":"qwen3-8b","prompt":"z"}',
    ]);
    assert.deepEqual(p.gate.tryCalls, ["qwen", "qwen", "qwen"]);
    const id = p.upstream.requests[0].headers.get("x-request-id")!;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(a.headers.get("x-request-id"), id);
  } finally {
    await p.close();
  }
});

Deno.test("multipart audio: model read from the form field, rewritten in place, file bytes intact", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("qwen");
    const form = new FormData();
    form.append("model", "qwen");
    const audio = new Uint8Array(3000).map((_, i) => i % 256);
    form.append("file", new File([audio], "a.wav", { type: "audio/wav" }));
    const base = p.serve();
    const res = await fetch(`${base}/v1/audio/transcriptions`, { method: "POST", body: form });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const got = p.upstream.requests[0];
    const parsed = await new Request("http://x/", {
      method: "POST",
      headers: { "content-type": got.headers.get("content-type")! },
      body: got.body as BodyInit,
    }).formData();
    assert.equal(parsed.get("model"), "qwen3-8b");
    assert.deepEqual(new Uint8Array(await (parsed.get("file") as File).arrayBuffer()), audio);
    assert.deepEqual(p.gate.tryCalls, ["qwen"]);
  } finally {
    await p.close();
  }
});

Deno.test("multipart audio over HTTP: an unquoted `name=model` field routes the request too", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("llama");
    const body = "--B\r\nContent-Disposition: form-data; name=model\r\n\r\nllama\r\n" +
      '--B\r\nContent-Disposition: form-data; name=file; filename="a.wav"\r\n\r\nRIFF\r\n--B--\r\n';
    const res = await fetch(`${p.serve()}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=B" },
      body,
    });
    assert.equal(res.status, 200, await res.text());
    assert.deepEqual(p.gate.tryCalls, ["llama"], "routed to the model the unquoted field names");
    assert.equal(new TextDecoder().decode(p.upstream.requests[0].body), body, "the body is forwarded as sent");
  } finally {
    await p.close();
  }
});

Deno.test("scale-only mode: body untouched and not routed (key '*'), any content type", async () => {
  const p = await startProxy({ models: MODELS });
  try {
    p.gate.warm.add("*");
    const raw = '{"model":"whatever-the-engine-serves","x":1}';
    const res = await p.handler(
      new Request("http://proxy/v1/completions", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: raw,
      }),
    );
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const bad = await p.handler(post("/v1/completions", "{not json"));
    assert.equal(bad.status, 200, "scale-only mode does not parse the body");
    await bad.body?.cancel();
    assert.equal(new TextDecoder().decode(p.upstream.requests[0].body), raw);
    assert.equal(new TextDecoder().decode(p.upstream.requests[1].body), "{not json");
    assert.deepEqual(p.gate.tryCalls, ["*", "*"]);
    const tooBig = await p.handler(post("/v1/completions", "x".repeat(40 * 1024 * 1024)));
    await assertError(tooBig, 413, "request_too_large");
  } finally {
    await p.close();
  }
});

Deno.test("held request: waits in acquire, forwarded once granted; heldMs logged", async () => {
  const p = await startProxy(SWITCH);
  try {
    const pending = p.handler(post("/v1/chat/completions", { model: "llama" }));
    await p.gate.waitHeld(1);
    assert.equal(p.upstream.requests.length, 0);
    await new Promise((r) => setTimeout(r, 20));
    p.gate.grant();
    const res = await pending;
    assert.equal(res.status, 200);
    await res.json();
    assert.deepEqual(p.gate.acquireCalls, ["llama"]);
    const line = p.logs.find((l) => l.msg === "request")!;
    assert.ok((line.heldMs as number) >= 15);
  } finally {
    await p.close();
  }
});

Deno.test("rejections: 429 and 503 with Retry-After, 504 hold timeout, not counted twice", async (t) => {
  const p = await startProxy(SWITCH);
  try {
    const cases: [Rejection, string][] = [
      [new Rejection(429, "hold_queue_full", "Too many requests are waiting", 5), "queue_full"],
      [new Rejection(503, "model_unavailable", "The model failed to start: CrashLoopBackOff", 30), "unavailable"],
      [new Rejection(504, "hold_timeout", "Held longer than holdTimeout (10m)"), "hold_timeout"],
    ];
    for (const [rejection, reason] of cases) {
      await t.step(`${rejection.status}`, async () => {
        const pending = p.handler(post("/v1/chat/completions", { model: "llama" }));
        await p.gate.waitHeld(1);
        p.gate.rejectAll(rejection);
        const res = await pending;
        const error = await assertError(res, rejection.status, rejection.code);
        // A 503's reason (an engine's output) stays out of the body; other refusals say what they say.
        assert.equal(
          error.message,
          rejection.status === 503
            ? "The model 'llama' failed to start; the reason is in GET /admin/status (lastError) and in the proxy's log"
            : rejection.message,
        );
        assert.equal(
          res.headers.get("retry-after"),
          rejection.retryAfter === undefined ? null : String(rejection.retryAfter),
        );
        // The scaler counts its rejections (under their code); the proxy must not count them again.
        assert.equal(p.metrics.rejectedRequestsTotal.get({ reason }), 0);
        assert.equal(p.metrics.requestsTotal.get({ model: "llama", code: String(rejection.status) }), 1);
      });
    }
    assert.equal(p.upstream.requests.length, 0);
  } finally {
    await p.close();
  }
});

Deno.test("client leaving while held removes it from the queue (real HTTP)", async () => {
  const p = await startProxy(SWITCH);
  try {
    const base = p.serve();
    const ac = new AbortController();
    const pending = fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "llama" }),
      signal: ac.signal,
    }).catch((e) => e);
    await p.gate.waitHeld(1);
    ac.abort();
    assert.ok((await pending) instanceof Error);
    // the gate saw the abort and dropped the request
    for (let i = 0; i < 100 && p.gate.held.length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(p.gate.held.length, 0);
    assert.equal(p.upstream.requests.length, 0);
  } finally {
    await p.close();
  }
});

Deno.test("upstream unreachable → 502 upstream_error, lease released", async () => {
  const p = await startProxy(SWITCH);
  try {
    // A name that never resolves (RFC 6761): not a refused connection, which would be held again.
    p.gate.upstream = "http://engine.invalid";
    p.gate.warm.add("llama");
    await assertError(await p.handler(post("/v1/chat/completions", { model: "llama" })), 502, "upstream_error");
    assert.equal(p.gate.released, 1);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "upstream_error" }), 1);
  } finally {
    await p.close();
  }
});

Deno.test("a refused connection (engine gone before the scaler noticed) is held again, not a 502", async () => {
  const p = await startProxy(SWITCH);
  const live = p.gate.upstream;
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  try {
    p.gate.upstream = `http://127.0.0.1:${deadPort}`;
    p.gate.warm.add("llama");
    const pending = p.handler(post("/v1/chat/completions", { model: "llama" }));
    // The first lease points at the dead engine; the engine is back (new upstream) when the request is re-held.
    for (let i = 0; i < 200 && p.gate.released < 1; i++) await new Promise((r) => setTimeout(r, 5));
    p.gate.upstream = live;
    const res = await pending;
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(p.upstream.requests.length, 1);
    assert.equal(p.gate.issued, 2);
    for (let i = 0; i < 100 && p.gate.released < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(p.gate.released, 2);
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "upstream_error" }), 0);
  } finally {
    await p.close();
  }
});

Deno.test("a connection refused on every attempt ends in 502 upstream_error, every lease released", async () => {
  const p = await startProxy(SWITCH);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  try {
    p.gate.upstream = `http://127.0.0.1:${deadPort}`;
    p.gate.warm.add("llama");
    await assertError(await p.handler(post("/v1/chat/completions", { model: "llama" })), 502, "upstream_error");
    assert.equal(p.gate.issued, 3);
    assert.equal(p.gate.released, 3);
  } finally {
    await p.close();
  }
});

Deno.test("upstream error status is relayed as is", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("llama");
    const res = await p.handler(post("/v1/chat/completions", { model: "llama" }, { "x-test": "error" }));
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.message, "bad param");
    assert.equal(p.gate.released, 1);
  } finally {
    await p.close();
  }
});

Deno.test("body-less route GET /v1/responses/{id} goes to the active model", async () => {
  const p = await startProxy(SWITCH);
  try {
    const none = await p.handler(new Request("http://proxy/v1/responses/resp_1"));
    await assertError(none, 404, "model_not_found");
    p.gate.activeModel = "llama";
    p.gate.warm.add("llama");
    const res = await p.handler(new Request("http://proxy/v1/responses/resp_1"));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(p.upstream.requests[0].method, "GET");
    assert.equal(p.upstream.requests[0].path, "/v1/responses/resp_1");
  } finally {
    await p.close();
  }
});

Deno.test("an unexpected failure is a 500 OpenAI error, logged, never an unhandled rejection", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.tryAcquire = () => {
      throw new Error("scaler bug");
    };
    await assertError(await p.handler(post("/v1/chat/completions", { model: "llama" })), 500, "internal_error");
    assert.ok(p.logs.some((l) => l.level === "error" && l.error === "scaler bug"));
  } finally {
    await p.close();
  }
});

Deno.test("without API keys the client's Authorization goes upstream; x-forwarded-for is appended", async () => {
  const p = await startProxy(SWITCH);
  try {
    p.gate.warm.add("llama");
    const res = await p.handler(
      post("/v1/chat/completions", { model: "llama" }, {
        authorization: "Bearer engine-key",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
      }),
      { remoteAddr: { transport: "tcp", hostname: "10.0.0.5", port: 4242 } },
    );
    await res.body?.cancel();
    const got = p.upstream.requests[0].headers;
    assert.equal(got.get("authorization"), "Bearer engine-key");
    assert.equal(got.get("x-forwarded-for"), "203.0.113.9, 10.0.0.5");
    assert.equal(got.get("x-forwarded-proto"), "https");
  } finally {
    await p.close();
  }
});
