/**
 * End to end, process backend: failures and limits. An engine that is not
 * ready within startTimeout, exits at once, cannot be found, listens on the
 * wrong port or finds its port taken → 503 with a clear message and
 * Retry-After, and no process left behind; holdTimeout → 504;
 * maxHeldRequests → 429 + Retry-After; bad requests never start an engine.
 */
import assert from "node:assert/strict";
import { assertNoEngines, fakeEngineCommand, newMarker, postChat, startProxy, waitUntil, within } from "./helpers.ts";

async function errorOf(res: Response): Promise<{ message: string; type: string; code: unknown }> {
  const body = await res.json();
  assert.ok(body.error, `an OpenAI error body: ${JSON.stringify(body)}`);
  return body.error;
}

Deno.test("process e2e: an engine not ready within startTimeout → 503 + Retry-After, and no engine left", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, startTimeout: "600ms" }, { a: { loadMs: 20_000 } });
  try {
    const statusOfA = async () => (await (await fetch(`${proxy.url}/v1/models`)).json()).data[0].status;
    const started = performance.now();
    const held = Promise.all([postChat(proxy.url, "a"), postChat(proxy.url, "a")]);
    await waitUntil(() => proxy.server.scaler.status().held.a === 2, 5000, "two held requests");
    assert.equal(await statusOfA(), "starting");
    const [one, two] = await within(held, 10_000, "the held requests");
    const tookMs = performance.now() - started;
    for (const res of [one, two]) {
      assert.equal(res.status, 503);
      assert.ok(Number(res.headers.get("retry-after")) > 0, "Retry-After");
      const error = await errorOf(res);
      assert.match(error.message, /The model 'a' failed to start; the reason is in GET \/admin\/status/);
    }
    assert.ok(tookMs >= 500 && tookMs < 5000, `failed after startTimeout (${tookMs} ms)`);
    await assertNoEngines(proxy.marker, 2000);
    // The engine is gone; the scaler hears of it from the backend's stop a moment later.
    await waitUntil(() => proxy.server.scaler.status().state === "idle", 5000, "back to idle");
    const status = proxy.server.scaler.status();
    assert.ok(status.lastError);
    assert.equal(status.lastError.model, "a");
    assert.equal(proxy.engineStarts(), 1, "one start for both requests");
    assert.equal(await statusOfA(), "failed", "/v1/models shows the failure");
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: an engine that exits at start → 503 naming the model; its reason and output only in /admin/status", async () => {
  const marker = newMarker();
  const proxy = await startProxy({ enableModelSwitch: true }, {
    a: {
      modelName: "org/a",
      command: ["sh", "-c", 'echo "RuntimeError: CUDA out of memory" >&2; exit 3', marker],
    },
  }, { marker });
  try {
    const res = await within(postChat(proxy.url, "a"), 10_000, "the response");
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    const error = await errorOf(res);
    assert.equal(
      error.message,
      "The model 'a' failed to start; the reason is in GET /admin/status (lastError) and in the proxy's log",
    );
    assert.doesNotMatch(error.message, /CUDA|exited/, "the engine's output never reaches the client");
    await waitUntil(() => proxy.server.scaler.status().state === "idle", 5000, "back to idle");
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.equal(status.state, "idle");
    assert.match(status.lastError.reason, /exited with code 3/);
    assert.equal(status.backend.lastExit.a.code, 3);
    assert.match(JSON.stringify(status.backend.lastExit.a.output), /CUDA out of memory/);
    assert.ok(proxy.logs.records().some((r) => /CUDA out of memory/.test(String(r.msg)) && r.model === "a"));
    await assertNoEngines(marker, 1000);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a command that does not exist → 503 without the command line; /admin/status says which", async () => {
  const marker = newMarker();
  const proxy = await startProxy({ enableModelSwitch: true }, {
    a: { modelName: "org/a", command: [`/nonexistent/${marker}/vllm`, "serve", "--port", "{port}"] },
  }, { marker });
  try {
    const res = await within(postChat(proxy.url, "a"), 10_000, "the response");
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    const error = await errorOf(res);
    assert.match(error.message, /The model 'a' failed to start; the reason is in GET \/admin\/status/);
    assert.doesNotMatch(error.message, /nonexistent/);
    await waitUntil(() => proxy.server.scaler.status().state === "idle", 5000, "back to idle");
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.match(status.lastError.reason, /command not found: \/nonexistent\/.*\/vllm/);
    // The admin preload says the same.
    const load = await fetch(`${proxy.url}/admin/models/a/load?wait=true`, { method: "POST" });
    assert.equal(load.status, 503);
    assert.ok(load.headers.get("retry-after"));
    const loadError = await errorOf(load);
    assert.match(loadError.message, /failed to start/);
    assert.doesNotMatch(loadError.message, /nonexistent/);
    await assertNoEngines(marker, 500);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: a command without the {port} placeholder is never reached → startTimeout 503, engine killed", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, startTimeout: "800ms" }, {
    a: { loadMs: 0, portArgs: ["--port", "0"] },
  });
  try {
    const res = await within(postChat(proxy.url, "a"), 10_000, "the response");
    assert.equal(res.status, 503);
    const error = await errorOf(res);
    assert.match(error.message, /failed to start.*admin\/status/);
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.match(status.lastError.reason, /startTimeout|\/health never answered 200|did not become ready/);
    await assertNoEngines(proxy.marker, 2000);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: an engine whose port is taken → 503; /admin/status says so, no process left", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const proxy = await startProxy({ enableModelSwitch: true, startTimeout: "10s" }, {
    a: { loadMs: 0, portArgs: ["--port", String(port)] },
  });
  try {
    const res = await within(postChat(proxy.url, "a"), 15_000, "the response");
    assert.equal(res.status, 503);
    const error = await errorOf(res);
    assert.doesNotMatch(error.message, /address already in use|AddrInUse|was taken/i);
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.match(status.lastError.reason, /port \d+ was taken/i);
    await assertNoEngines(proxy.marker, 2000);
  } finally {
    taken.close();
    await proxy.close();
  }
});

Deno.test("process e2e: held longer than holdTimeout → 504", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, holdTimeout: "300ms" }, { a: { loadMs: 1500 } });
  try {
    const started = performance.now();
    const res = await within(postChat(proxy.url, "a"), 10_000, "the response");
    const tookMs = performance.now() - started;
    assert.equal(res.status, 504);
    const error = await errorOf(res);
    assert.match(error.message, /hold|wait|timeout/i);
    assert.ok(tookMs >= 250 && tookMs < 1400, `rejected at holdTimeout, before the engine was ready (${tookMs} ms)`);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: beyond maxHeldRequests → 429 + Retry-After; the held ones are answered", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, maxHeldRequests: 2 }, { a: { loadMs: 400 } });
  try {
    const held = [postChat(proxy.url, "a"), postChat(proxy.url, "a")];
    // Both are held once the scaler counts them.
    await within(
      (async () => {
        while ((proxy.server.scaler.status().held.a ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      "two held requests",
    );
    const third = await postChat(proxy.url, "a");
    assert.equal(third.status, 429);
    assert.ok(Number(third.headers.get("retry-after")) > 0, "Retry-After");
    await errorOf(third);
    for (const res of await within(Promise.all(held), 10_000, "the held requests")) {
      assert.equal(res.status, 200);
      assert.equal((await res.json()).model, "a");
    }
    assert.equal(proxy.engineStarts(), 1);
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    assert.match(metrics, /^vllm_chill_requests_total\{model="a",code="429"\} 1$/m);
    assert.match(metrics, /^vllm_chill_rejected_requests_total\{reason="[a-z_]+"\} 1$/m);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: bad requests never start an engine", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 50 } });
  try {
    const cases: [string, RequestInit, string, number][] = [
      ["/v1/chat/completions", { method: "POST", body: "{not json" }, "malformed JSON", 400],
      ["/v1/chat/completions", { method: "POST", body: '{"messages":[]}' }, "no model", 400],
      ["/v1/chat/completions", { method: "POST", body: '{"model":"nope"}' }, "unknown model", 404],
      ["/v1/nothing-here", { method: "POST", body: '{"model":"a"}' }, "unknown path", 404],
    ];
    for (const [path, init, what, status] of cases) {
      const res = await fetch(`${proxy.url}${path}`, {
        ...init,
        headers: { "content-type": "application/json" },
      });
      assert.equal(res.status, status, what);
      await errorOf(res);
    }
    assert.equal(proxy.engineStarts(), 0);
    assert.deepEqual(await proxy.engines(), []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: fakeEngineCommand builds a runnable command (sanity of the helper)", () => {
  const command = fakeEngineCommand("m-1", { loadMs: 5, tokensPerSec: 3, crashAfterChunks: 2, crashMode: "reset" });
  assert.deepEqual(command.slice(4), [
    "--port",
    "{port}",
    "--model",
    "{served}",
    "--model-name",
    "m-1",
    "--load-ms",
    "5",
    "--tokens-per-sec",
    "3",
    "--crash-after-chunks",
    "2",
    "--crash-mode",
    "reset",
  ]);
});
