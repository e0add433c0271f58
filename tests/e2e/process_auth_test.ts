/**
 * End to end, process backend: API keys (with the OpenAI SDK as the client)
 * and the admin API (token, status, load, unload, `main.ts status`). Nothing
 * unauthenticated wakes the GPU, and no secret reaches a log line or a
 * response.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type E2eProxy, postChat, REPO_ROOT, startProxy, waitUntil, within } from "./helpers.ts";

const KEY_A = "key-team-a-5f1c2e9d";
const KEY_ALL = "key-everything-8b3a71c0";
const ADMIN = "admin-token-2d9e44aa";
const SECRETS = [KEY_A, KEY_ALL, ADMIN];

function keyedProxy(): Promise<E2eProxy> {
  return startProxy(
    {
      enableModelSwitch: true,
      apiKeys: [{ key: KEY_A, models: ["a"], name: "team-a" }, KEY_ALL],
      adminToken: ADMIN,
    },
    { a: { loadMs: 150 }, b: { loadMs: 150 } },
  );
}

function assertNoSecrets(text: string, where: string): void {
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `a secret appears in ${where}`);
}

function admin(url: string, path: string, init: RequestInit = {}, token: string | null = ADMIN): Promise<Response> {
  return fetch(`${url}${path}`, { ...init, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
}

Deno.test("process e2e: API keys — 401 / 403 before anything wakes, /v1/models per key, keys never logged", async () => {
  const proxy = await keyedProxy();
  try {
    // Missing key: 401, OpenAI error body.
    const missing = await postChat(proxy.url, "a");
    assert.equal(missing.status, 401);
    assert.equal((await missing.json()).error.code, "invalid_api_key");

    // Wrong key: the SDK raises AuthenticationError.
    await assert.rejects(
      proxy.openai("key-wrong-00000000").chat.completions.create({
        model: "a",
        messages: [{ role: "user", content: "hi" }],
      }),
      (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401,
    );
    // A key limited to a, asking for b: PermissionDeniedError.
    await assert.rejects(
      proxy.openai(KEY_A).chat.completions.create({ model: "b", messages: [{ role: "user", content: "hi" }] }),
      (e: unknown) => e instanceof OpenAI.PermissionDeniedError && e.status === 403,
    );
    // Streaming requests are checked the same way (no early heartbeat head).
    const streamed = await postChat(proxy.url, "a", { stream: true }, { authorization: "Bearer nope-nope-nope" });
    assert.equal(streamed.status, 401);
    await streamed.body?.cancel();
    assert.equal(proxy.engineStarts(), 0, "no engine was started for a refused request");
    assert.deepEqual(await proxy.engines(), []);

    // /v1/models lists what the key may use.
    const listA = await proxy.openai(KEY_A).models.list();
    assert.deepEqual(listA.data.map((m) => m.id), ["a"]);
    const listAll = await proxy.openai(KEY_ALL).models.list();
    assert.deepEqual(listAll.data.map((m) => m.id).sort(), ["a", "b"]);
    const listNone = await fetch(`${proxy.url}/v1/models`);
    assert.equal(listNone.status, 401);
    await listNone.body?.cancel();

    // Valid keys are served; the engine never sees the client's key.
    const answer = await proxy.openai(KEY_A).chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(answer.model, "a");
    const stream = await proxy.openai(KEY_ALL).chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, "the quick");

    const status = await (await admin(proxy.url, "/admin/status")).text();
    assertNoSecrets(status, "/admin/status");
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    assertNoSecrets(metrics, "/metrics");
    assert.ok(proxy.logs.lines.length > 0);
    assertNoSecrets(proxy.logs.lines.join("\n"), "the log");
    assert.ok(proxy.logs.messages("request").some((r) => r.apiKey === "team-a"), "the key's name is logged instead");
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: admin API — token required, status fields, load (202 / wait), unload", async () => {
  const proxy = await keyedProxy();
  try {
    // No token → 401, wrong token → 403; none of them starts anything.
    for (const path of ["/admin/status", "/admin/models/a/load", "/admin/unload"]) {
      const method = path === "/admin/status" ? "GET" : "POST";
      const none = await admin(proxy.url, path, { method }, null);
      assert.equal(none.status, 401, `${method} ${path} without a token`);
      await none.body?.cancel();
      const wrong = await admin(proxy.url, path, { method }, "not-the-admin-token");
      assert.equal(wrong.status, 403, `${method} ${path} with a wrong token`);
      await wrong.body?.cancel();
      // An API key is not an admin token.
      const key = await admin(proxy.url, path, { method }, KEY_ALL);
      assert.equal(key.status, 403);
      await key.body?.cancel();
    }
    assert.equal(proxy.engineStarts(), 0);

    // Status while idle.
    let status = await (await admin(proxy.url, "/admin/status")).json();
    assert.equal(status.state, "idle");
    assert.equal(status.activeModel, null);
    assert.deepEqual(status.held, {});
    assert.deepEqual(status.inflight, {});
    assert.equal(status.lastError, null);
    assert.equal(status.stateReason, "engines read back", "says what it observed, not 'not observed yet'");
    assert.equal("backendInfo" in status, false, "the backend's details appear once, under `backend`");
    assert.deepEqual(status.backend.engines, {});

    // Unknown model → 404.
    const unknown = await admin(proxy.url, "/admin/models/nope/load", { method: "POST" });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error.code, "model_not_found");

    // Load without waiting: 202, then ready.
    const ready = proxy.nextState("ready", 10_000);
    const accepted = await admin(proxy.url, "/admin/models/a/load", { method: "POST" });
    assert.equal(accepted.status, 202);
    await accepted.body?.cancel();
    await ready;
    status = await (await admin(proxy.url, "/admin/status")).json();
    assert.equal(status.state, "ready");
    assert.equal(status.activeModel, "a");
    assert.equal(typeof status.backend.engines.a.pid, "number");
    assert.deepEqual((await proxy.engines()).map((e) => e.pid), [status.backend.engines.a.pid]);
    assert.ok(status.lastColdStartMs > 0, "cold start timing");
    assert.ok(status.lastActivity === null || typeof status.lastActivity === "string");

    // Load b and wait: 200 once b is ready; a's engine is gone.
    const switched = await within(
      admin(proxy.url, "/admin/models/b/load?wait=true", { method: "POST" }),
      10_000,
      "load b",
    );
    assert.equal(switched.status, 200);
    assert.equal((await switched.json()).model, "b");
    status = await (await admin(proxy.url, "/admin/status")).json();
    assert.equal(status.activeModel, "b");
    assert.ok(status.lastSwitchMs > 0, "switch timing");
    const models = await (await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${KEY_ALL}` } }))
      .json();
    assert.deepEqual(
      Object.fromEntries(models.data.map((m: { id: string; status: string }) => [m.id, m.status])),
      { a: "cold", b: "ready" },
    );
    const engines = await proxy.engines();
    assert.equal(engines.length, 1);
    assert.ok(engines[0].args.includes("--model b"));

    // Unload: drain then stop; the engine is gone.
    const unloaded = await within(admin(proxy.url, "/admin/unload?wait=true", { method: "POST" }), 10_000, "unload");
    assert.equal(unloaded.status, 200);
    await unloaded.body?.cancel();
    assert.deepEqual(await proxy.engines(), []);
    status = await (await admin(proxy.url, "/admin/status")).json();
    assert.equal(status.state, "idle");
    assert.deepEqual(status.backend.engines, {});
    assert.deepEqual(proxy.overlaps, []);
  } finally {
    await proxy.close();
  }
});

Deno.test("process e2e: /admin/status counts held and in-flight requests; unload drains a stream first", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, adminToken: ADMIN }, {
    a: { loadMs: 400, tokensPerSec: 20 },
  });
  try {
    const openai = proxy.openai();
    const status = async () => await (await admin(proxy.url, "/admin/status")).json();
    const held = [postChat(proxy.url, "a"), postChat(proxy.url, "a")];
    const whileCold = await waitUntil(
      async () => {
        const s = await status();
        return s.held.a === 2 ? s : null;
      },
      5000,
      "two held requests in /admin/status",
    );
    assert.equal(whileCold.state, "starting");
    assert.equal(whileCold.activeModel, "a");
    for (const res of await within(Promise.all(held), 10_000, "the held requests")) {
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }

    const stream = await openai.chat.completions.create({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 12,
      stream: true,
    });
    const reading = (async () => {
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
      return { text, at: performance.now() };
    })();
    const whileStreaming = await waitUntil(
      async () => {
        const s = await status();
        return s.inflight.a === 1 ? s : null;
      },
      5000,
      "the stream in flight in /admin/status",
    );
    assert.deepEqual(whileStreaming.held, {});
    const unloaded = admin(proxy.url, "/admin/unload?wait=true", { method: "POST" }).then((res) => ({
      res,
      at: performance.now(),
    }));
    const read = await within(reading, 10_000, "the stream");
    assert.equal(read.text.split(" ").length, 12, "the stream was not cut by the unload");
    const { res, at } = await within(unloaded, 10_000, "the unload");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.ok(at >= read.at, "unload finished after the stream");
    assert.deepEqual(await proxy.engines(), []);
  } finally {
    await proxy.close();
  }
});

async function runStatusCli(url: string, token: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}main.ts`, "status", "--url", url, "--admin-token", token],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("process e2e: `main.ts status --url` prints the state for a person; a wrong token exits 1", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, adminToken: ADMIN }, { a: { loadMs: 100 } });
  try {
    const res = await postChat(proxy.url, "a");
    assert.equal(res.status, 200);
    await res.body?.cancel();

    const ok = await within(runStatusCli(proxy.url, ADMIN), 20_000, "status");
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^state\s+ready$/m);
    assert.match(ok.stdout, /^active model\s+a$/m);
    assert.match(ok.stdout, /last cold start\s+\d+\.\ds/);
    assert.match(ok.stdout, /^ {2}a {2}ready\s+gpus 0 \(share 0\.9\)/m, "each model with its placement");
    assert.match(ok.stdout, /^ {2}0 {2}awake 0\.90 {2}a$/m, "each GPU with its awake share");
    assertNoSecrets(ok.stdout, "the status output");

    const wrong = await within(runStatusCli(proxy.url, "not-the-admin-token"), 20_000, "status");
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /403/);
    assert.equal(wrong.stdout, "");
  } finally {
    await proxy.close();
  }
});
