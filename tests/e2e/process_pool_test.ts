/**
 * The pool on one box, end to end: the proxy in-process over real HTTP, the
 * OpenAI SDK as the client, and real fake-vLLM child processes that run with
 * vLLM's own arguments (`{args}`), its sleep mode, and a shared GPU-memory
 * ledger that fails loudly on any oversubscription. Guarantees are checked on
 * the engines' side: their arrival counters, their "forwarded while asleep"
 * counter, and the ledger.
 *
 * @module
 */
import assert from "node:assert/strict";
import { assertNeverOversubscribed, createLedger, readLedger } from "../support/gpu_ledger.ts";
import type { FakeVllmStats } from "../support/fake_vllm.ts";
import { type E2eProxy, type FakeEngineOptions, startProxy, waitUntil, within } from "./helpers.ts";

/** A fake engine that runs the way vLLM does in the pool: its arguments from `{args}`, quick sleep and wake. */
function engine(share: number, extra: FakeEngineOptions = {}): FakeEngineOptions {
  return {
    loadMs: 150,
    vllmArgs: true,
    sleepMs: 30,
    wakeMs: 60,
    ...extra,
    spec: { gpuMemoryUtilization: share, ...extra.spec },
  };
}

function newLedger(): string {
  const path = Deno.makeTempFileSync({ prefix: "vllm-chill-ledger-", suffix: ".json" });
  createLedger(path);
  return path;
}

async function ask(proxy: E2eProxy, model: string): Promise<string> {
  const answer = await within(
    proxy.openai().chat.completions.create({ model, messages: [{ role: "user", content: model }], max_tokens: 3 }),
    20_000,
    `an answer from ${model}`,
  );
  return answer.model;
}

async function statsOf(proxy: E2eProxy, model: string): Promise<FakeVllmStats> {
  const engines = proxy.server.backend.describe().engines as Record<string, { upstream: string }>;
  const res = await fetch(`${engines[model].upstream}/_fake/stats`);
  return await res.json();
}

async function metric(proxy: E2eProxy, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

async function modelStatuses(proxy: E2eProxy): Promise<Record<string, string>> {
  const list = await (await fetch(`${proxy.url}/v1/models`)).json();
  return Object.fromEntries(list.data.map((m: { id: string; status: string }) => [m.id, m.status]));
}

Deno.test("pool e2e: two 0.6 models on one GPU switch by sleep and wake, never by a second cold start", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, sleepAfter: "10m", idleTimeout: "10m" },
    { a: engine(0.6), b: engine(0.6) },
    { ledger },
  );
  try {
    // Every model's state is there from the start.
    assert.equal(await metric(proxy, "vllm_chill_model_state", 'model="a",state="cold"'), 1);
    assert.equal(await metric(proxy, "vllm_chill_model_state", 'model="b",state="ready"'), 0);
    for (const model of ["a", "b", "a", "b", "a"]) assert.equal(await ask(proxy, model), model);
    assert.equal(proxy.engineStarts("a"), 1, "a started once, then woke");
    assert.equal(proxy.engineStarts("b"), 1, "b started once, then woke");
    assert.deepEqual(await modelStatuses(proxy), { a: "ready", b: "sleeping" });
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.equal(status.models.a.status, "ready");
    assert.deepEqual(status.models.a.gpus, ["0"]);
    assert.equal(status.models.a.share, 0.6);
    assert.equal(status.models.b.status, "sleeping");
    assert.deepEqual(status.gpus["0"], { awakeShare: 0.6, models: ["a", "b"] });
    assert.ok(status.models.a.lastWakeMs >= 60, `a's wake took ${status.models.a.lastWakeMs} ms`);

    // What the engines saw: both slept and woke, nothing was sent to a sleeper, every wake reset the prefix cache.
    const [a, b] = [await statsOf(proxy, "a"), await statsOf(proxy, "b")];
    assert.equal(a.arrivals["/v1/chat/completions"], 3);
    assert.equal(b.arrivals["/v1/chat/completions"], 2);
    assert.equal(a.sleeps, 2);
    assert.equal(a.wakes, 2);
    assert.equal(b.sleeps, 2);
    assert.equal(b.wakes, 1);
    assert.equal(a.forwardedWhileAsleep + b.forwardedWhileAsleep, 0);
    assert.equal(a.servedWithoutReset + b.servedWithoutReset, 0);
    assert.ok(a.sleepModeEnabled && a.devMode, "started with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1");

    assert.equal(await metric(proxy, "vllm_chill_wake_seconds_count"), 3);
    assert.equal(await metric(proxy, "vllm_chill_sleeps_total", 'model="a",level="1"'), 2);
    assert.equal(await metric(proxy, "vllm_chill_evictions_total", 'model="b",action="sleep"'), 2);
    assert.equal(await metric(proxy, "vllm_chill_model_state", 'model="b",state="sleeping"'), 1);
    assert.equal(await metric(proxy, "vllm_chill_gpu_awake_share", 'gpu="0"'), 0.6);
    assertNeverOversubscribed(ledger, { allowRefusals: false });
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});

Deno.test("pool e2e: models whose shares fit run at once, each on the GPUs it was placed on", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, process: { gpus: ["0", "1"], stopGracePeriod: "2s" } },
    { a: engine(0.45), b: engine(0.45), c: engine(0.9) },
    { ledger },
  );
  try {
    const answers = await Promise.all(["a", "b", "c"].map((m) => ask(proxy, m)));
    assert.deepEqual(answers, ["a", "b", "c"]);
    assert.equal(proxy.engineStarts(), 3);
    assert.equal((await proxy.engines()).length, 3, "three engines at once");
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    const placed = Object.fromEntries(["a", "b", "c"].map((m) => [m, status.models[m].gpus.join()]));
    assert.equal(placed.a, placed.b, "a and b share a GPU");
    assert.notEqual(placed.c, placed.a, "c has the other one");
    // Each engine saw only its own device.
    for (const m of ["a", "b", "c"]) assert.deepEqual((await statsOf(proxy, m)).gpu?.devices, [placed[m]]);
    assert.deepEqual(await modelStatuses(proxy), { a: "ready", b: "ready", c: "ready" });
    assertNeverOversubscribed(ledger, { allowRefusals: false });
    assert.ok(Object.values(readLedger(ledger).highWater).every((share) => share <= 1));
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});

Deno.test("pool e2e: a wake that fails stops the engine and cold-starts it; the held request is answered", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, sleepAfter: "10m" },
    { a: engine(0.6, { failWake: true }), b: engine(0.6) },
    { ledger },
  );
  try {
    assert.equal(await ask(proxy, "a"), "a");
    assert.equal(await ask(proxy, "b"), "b");
    assert.equal(await ask(proxy, "a"), "a", "answered by a fresh engine after the failed wake");
    assert.equal(proxy.engineStarts("a"), 2);
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.equal(status.models.a.status, "ready");
    assert.equal(status.models.a.error, null, "the new engine's start cleared the error");
    assert.ok(proxy.logs.records().some((r) => r.msg === "model state" && /wake failed/.test(String(r.reason))));
    assertNeverOversubscribed(ledger, { allowRefusals: false });
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});

Deno.test("pool e2e: two clients alternating between two models switch by wake (idle models are evicted at once)", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, minLoadedTime: "1s", sleepAfter: "10m" },
    { a: engine(0.6, { tokensPerSec: 40 }), b: engine(0.6, { tokensPerSec: 40 }) },
    { ledger },
  );
  try {
    const client = async (model: string) => {
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) seen.push(await ask(proxy, model));
      return seen;
    };
    const [seenA, seenB] = await within(Promise.all([client("a"), client("b")]), 60_000, "both clients");
    assert.deepEqual(seenA, Array(6).fill("a"));
    assert.deepEqual(seenB, Array(6).fill("b"));
    // One cold start per model; every other switch is a wake.
    assert.equal(proxy.engineStarts(), 2);
    const [a, b] = [await statsOf(proxy, "a"), await statsOf(proxy, "b")];
    assert.equal(a.forwardedWhileAsleep + b.forwardedWhileAsleep, 0);
    assert.equal(a.sleptWithInflight + b.sleptWithInflight, 0, "never put to sleep with a request in flight");
    assertNeverOversubscribed(ledger, { allowRefusals: false });
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});

Deno.test("pool e2e: an idle model falls asleep after sleepAfter, then stops after idleTimeout", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, sleepAfter: "300ms", idleTimeout: "1500ms" },
    { a: engine(0.6) },
    { ledger },
  );
  try {
    assert.equal(await ask(proxy, "a"), "a");
    await waitUntil(async () => (await modelStatuses(proxy)).a === "sleeping", 5000, "a to fall asleep");
    await waitUntil(async () => (await statsOf(proxy, "a")).isSleeping, 5000, "the engine to say it sleeps");
    await waitUntil(async () => (await modelStatuses(proxy)).a === "cold", 5000, "a to be stopped");
    assert.equal((await proxy.engines()).length, 0, "the process is gone");
    assert.equal(readLedger(ledger).claims.length, 0, "no GPU memory left claimed");
    const status = await (await fetch(`${proxy.url}/admin/status`)).json();
    assert.equal(typeof status.models.a.lastUsed, "string", "a cold model still says when it was last used");
    assert.deepEqual(status.models.a.gpus, []);
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});

Deno.test("pool e2e: admin load, sleep and unload per model; unload all; refusals name what is wrong", async () => {
  const ledger = newLedger();
  const proxy = await startProxy(
    { enableModelSwitch: true, process: { gpus: ["0", "1"], stopGracePeriod: "2s" } },
    { a: engine(0.6, { spec: { sleepAfter: "10m" } }), b: engine(0.6) },
    { ledger },
  );
  const post = (path: string) => fetch(`${proxy.url}${path}`, { method: "POST" });
  try {
    // Load both (they go on different GPUs), without waiting: 202, then both ready.
    for (const m of ["a", "b"]) {
      const res = await post(`/admin/models/${m}/load`);
      assert.equal(res.status, 202);
      assert.deepEqual(await res.json(), { status: "loading", model: m });
    }
    await waitUntil(
      async () => {
        const s = await modelStatuses(proxy);
        return s.a === "ready" && s.b === "ready";
      },
      10_000,
      "both models to be ready",
    );
    assert.equal((await statsOf(proxy, "a")).arrivals["/v1/chat/completions"] ?? 0, 0, "loading sends no request");

    // Sleep a (it may sleep) and wait; b may not: 409 with the reason, at once.
    const slept = await post("/admin/models/a/sleep?wait=true");
    assert.equal(slept.status, 200);
    assert.deepEqual(await slept.json(), { status: "asleep", model: "a" });
    assert.equal((await statsOf(proxy, "a")).isSleeping, true);
    const refused = await post("/admin/models/b/sleep");
    assert.equal(refused.status, 409);
    assert.equal((await refused.json()).error.code, "sleep_not_enabled");
    assert.equal((await post("/admin/models/nope/sleep")).status, 404);

    // Load a again: it wakes (no second engine).
    assert.equal((await post("/admin/models/a/load?wait=true")).status, 200);
    assert.equal(proxy.engineStarts("a"), 1);
    assert.equal((await statsOf(proxy, "a")).wakes, 1);

    // Unload b only: a keeps serving.
    const unloaded = await post("/admin/models/b/unload?wait=true");
    assert.equal(unloaded.status, 200);
    assert.deepEqual(await unloaded.json(), { status: "stopped", model: "b" });
    assert.deepEqual(await modelStatuses(proxy), { a: "ready", b: "cold" });
    assert.equal(await ask(proxy, "a"), "a");

    // Unload all.
    assert.equal((await post("/admin/unload?wait=true")).status, 200);
    assert.deepEqual(await modelStatuses(proxy), { a: "cold", b: "cold" });
    assert.equal((await proxy.engines()).length, 0);
    assertNeverOversubscribed(ledger, { allowRefusals: false });
  } finally {
    await proxy.close();
    Deno.removeSync(ledger);
  }
});
