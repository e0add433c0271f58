import assert from "node:assert/strict";
import { MODELS, startProxy } from "./helpers.ts";
import { Rejection } from "./fake_gate.ts";

const ADMIN = {
  enableModelSwitch: true,
  models: MODELS,
  adminToken: "admin-token-xyz",
  apiKeys: ["client-key-123"],
};

function admin(path: string, method = "GET", token?: string): Request {
  return new Request(`http://proxy${path}`, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

Deno.test("admin: 401 without a token, 403 with a wrong one (client API keys are not admin tokens)", async () => {
  const p = await startProxy(ADMIN);
  try {
    for (
      const [path, method] of [["/admin/status", "GET"], ["/admin/models/qwen/load", "POST"], ["/admin/unload", "POST"]]
    ) {
      const none = await p.handler(admin(path, method));
      assert.equal(none.status, 401, path);
      assert.equal((await none.json()).error.code, "admin_token_required");
      const wrong = await p.handler(admin(path, method, "client-key-123"));
      assert.equal(wrong.status, 403, path);
      assert.equal((await wrong.json()).error.code, "admin_token_invalid");
    }
    assert.equal(p.gate.loadCalls.length + p.gate.unloadCalls, 0);
  } finally {
    await p.close();
  }
});

Deno.test("admin status over HTTP: scaler state, backend info, config summary without secrets", async () => {
  const p = await startProxy(ADMIN);
  try {
    p.gate.activeModel = "qwen";
    const base = p.serve();
    const res = await fetch(`${base}/admin/status`, { headers: { authorization: "Bearer admin-token-xyz" } });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.doesNotMatch(text, /admin-token-xyz|client-key-123/);
    const status = JSON.parse(text);
    assert.equal(status.state, "ready");
    assert.equal(status.activeModel, "qwen");
    assert.deepEqual(status.backend, { kind: "fake" });
    assert.equal("backendInfo" in status, false, "the backend is not repeated under a second key");
    assert.equal(status.config.apiKeys, 1);
    assert.equal(status.config.adminToken, true);
    assert.deepEqual(status.config.models.map((m: { name: string }) => m.name), ["qwen", "llama"]);
    assert.equal(status.config.idleTimeoutMs, 300000);
  } finally {
    await p.close();
  }
});

Deno.test("admin load: 202 by default, ?wait=true waits, unknown model 404, failure status", async () => {
  const p = await startProxy(ADMIN);
  try {
    const accepted = await p.handler(admin("/admin/models/qwen3-8b/load", "POST", "admin-token-xyz"));
    assert.equal(accepted.status, 202);
    assert.deepEqual(await accepted.json(), { status: "loading", model: "qwen" });
    let finish!: () => void;
    p.gate.loadResult = () => new Promise<void>((r) => finish = r);
    let settled = false;
    const waiting = p.handler(admin("/admin/models/llama/load?wait=true", "POST", "admin-token-xyz"));
    waiting.then(() => settled = true);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false);
    finish();
    const ready = await waiting;
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ready", model: "llama" });
    assert.deepEqual(p.gate.loadCalls, ["qwen", "llama"]);
    const unknown = await p.handler(admin("/admin/models/nope/load", "POST", "admin-token-xyz"));
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error.code, "model_not_found");
    p.gate.loadResult = () =>
      Promise.reject(new Rejection(503, "model_unavailable", 'model "llama" failed to start: exit 1: OOM', 30));
    const failed = await p.handler(admin("/admin/models/llama/load?wait=true", "POST", "admin-token-xyz"));
    assert.equal(failed.status, 503);
    assert.equal(failed.headers.get("retry-after"), "30");
    // The reason (engine output) is in /admin/status and the log, not in the error body.
    assert.equal(
      (await failed.json()).error.message,
      "The model 'llama' failed to start; the reason is in GET /admin/status (lastError) and in the proxy's log",
    );
    const get = await p.handler(admin("/admin/models/llama/load", "GET", "admin-token-xyz"));
    assert.equal(get.status, 405);
    await get.body?.cancel();
  } finally {
    await p.close();
  }
});

Deno.test("admin unload: 202, or 200 once stopped with ?wait=true", async () => {
  const p = await startProxy(ADMIN);
  try {
    const accepted = await p.handler(admin("/admin/unload", "POST", "admin-token-xyz"));
    assert.equal(accepted.status, 202);
    assert.deepEqual(await accepted.json(), { status: "unloading" });
    const done = await p.handler(admin("/admin/unload?wait=true", "POST", "admin-token-xyz"));
    assert.equal(done.status, 200);
    assert.deepEqual(await done.json(), { status: "stopped" });
    assert.equal(p.gate.unloadCalls, 2);
  } finally {
    await p.close();
  }
});

Deno.test("admin without adminToken: open, with one warning at start", async () => {
  const p = await startProxy({ models: MODELS });
  try {
    const res = await p.handler(admin("/admin/status"));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(
      p.logs.filter((l) => l.level === "warn" && /admin endpoints are open/.test(l.msg as string)).length,
      1,
    );
    const load = await p.handler(admin("/admin/models/anything/load", "POST"));
    assert.equal(load.status, 202);
    assert.deepEqual(p.gate.loadCalls, ["*"], "scale-only mode loads the single engine");
    await load.body?.cancel();
  } finally {
    await p.close();
  }
});

Deno.test("admin cannot be reached through path tricks", async () => {
  const p = await startProxy(ADMIN);
  try {
    for (const path of ["/v1/..%2Fadmin/status", "/v1/responses/..%2F..%2Fadmin%2Fstatus", "/admin%2Fstatus"]) {
      const res = await p.handler(new Request(`http://proxy${path}`));
      assert.equal(res.status, 404, path);
      await res.body?.cancel();
    }
    // dot segments are resolved by the URL parser: the admin check still applies
    const dots = await p.handler(new Request("http://proxy/v1/../admin/status"));
    assert.equal(dots.status, 401);
    await dots.body?.cancel();
  } finally {
    await p.close();
  }
});
