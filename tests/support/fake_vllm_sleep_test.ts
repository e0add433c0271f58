import assert from "node:assert/strict";
import { type FakeVllm, type FakeVllmOptions, FakeVllmStartupError, startFakeVllm } from "./fake_vllm.ts";
import { spawnFakeVllmCli, stopFakeVllmCli } from "./fake_vllm_cli.ts";
import { startupCheckMessage } from "./fake_vllm_sleep.ts";
import { assertNeverOversubscribed, createLedger, heldShares, readLedger } from "./gpu_ledger.ts";
import { waitUntil } from "./wait.ts";

const DEV_ROUTES = [
  ["POST", "/sleep"],
  ["POST", "/wake_up"],
  ["GET", "/is_sleeping"],
  ["POST", "/collective_rpc"],
  ["POST", "/reset_prefix_cache"],
] as const;
/** vLLM v0.11.0's message for a 0.6 share on an 80 GiB device that has 0.6 taken already. */
const STARTUP_MESSAGE_0_6 = "Free memory on device (32.0/80.0 GiB) on startup is less than desired GPU memory " +
  "utilization (0.6, 48.0 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.";

async function call(url: string, method = "POST", body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

function chat(url: string, extra: Record<string, unknown> = {}): Promise<{ status: number; text: string }> {
  return call(`${url}/v1/chat/completions`, "POST", {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 3,
    ...extra,
  });
}

async function content(url: string): Promise<string> {
  const res = await chat(url);
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text).choices[0].message.content;
}

async function isSleeping(url: string): Promise<boolean> {
  const res = await call(`${url}/is_sleeping`, "GET");
  assert.equal(res.status, 200);
  return JSON.parse(res.text).is_sleeping;
}

async function refusesConnections(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`);
    await res.body?.cancel();
    return false;
  } catch {
    return true;
  }
}

/** Starts a long streamed completion and reads its first chunk: a request in flight; returns its reader. */
async function streamInFlight(url: string): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "x", max_tokens: 200, stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read();
  return reader;
}

function sleeper(options: Partial<FakeVllmOptions> = {}): Promise<FakeVllm> {
  return startFakeVllm({ model: "m", devMode: true, enableSleepMode: true, ...options });
}

function tempLedger(): string {
  const path = `${Deno.makeTempDirSync({ prefix: "fake-vllm-ledger-" })}/ledger.json`;
  createLedger(path, { deviceGiB: 80 });
  return path;
}

Deno.test("fake vLLM sleep: the dev routes are 404 without VLLM_SERVER_DEV_MODE, even with --enable-sleep-mode", async () => {
  const vllm = await startFakeVllm({ model: "m", enableSleepMode: true });
  try {
    for (const [method, path] of DEV_ROUTES) {
      assert.deepEqual(await call(`${vllm.url}${path}`, method), { status: 404, text: '{"detail":"Not Found"}' });
    }
    assert.equal(await content(vllm.url), "the quick brown");
  } finally {
    await vllm.close();
  }
  const dev = await sleeper();
  try {
    assert.deepEqual(await call(`${dev.url}/sleep`, "GET"), { status: 405, text: '{"detail":"Method Not Allowed"}' });
    assert.equal((await call(`${dev.url}/is_sleeping`, "POST")).status, 405);
    assert.equal(await isSleeping(dev.url), false);
  } finally {
    await dev.close();
  }
});

Deno.test("fake vLLM sleep: level 1 — /health stays 200 asleep, /is_sleeping tells, a wake restores service", async () => {
  const vllm = await sleeper();
  try {
    assert.equal(await content(vllm.url), "the quick brown");
    assert.deepEqual(await call(`${vllm.url}/sleep?level=1`), { status: 200, text: "" });
    assert.deepEqual(await call(`${vllm.url}/is_sleeping`, "GET"), { status: 200, text: '{"is_sleeping":true}' });
    const health = await fetch(`${vllm.url}/health`);
    await health.body?.cancel();
    assert.equal(health.status, 200, "vLLM's /health is 200 while asleep");
    // The API server's own routes still answer: no engine involved.
    assert.equal((await call(`${vllm.url}/v1/models`, "GET")).status, 200);
    assert.equal((await call(`${vllm.url}/tokenize`, "POST", { prompt: "the dog" })).status, 200);
    assert.deepEqual(await call(`${vllm.url}/wake_up`), { status: 200, text: "" });
    assert.equal(await isSleeping(vllm.url), false);
    assert.equal(await content(vllm.url), "the quick brown", "level 1 needs no reload");
    let stats = vllm.stats();
    assert.equal(stats.sleeps, 1);
    assert.equal(stats.wakes, 1);
    assert.equal(stats.sleepLevel, 1);
    assert.equal(stats.forwardedWhileAsleep, 0);
    assert.equal(stats.resetSinceWake, false);
    assert.equal(stats.servedWithoutReset, 1, "tracked, though level 1 does not need a reset");
    assert.deepEqual(await call(`${vllm.url}/reset_prefix_cache`), { status: 200, text: "" });
    stats = vllm.stats();
    assert.equal(stats.resets, 1);
    assert.equal(stats.resetSinceWake, true);
    assert.equal(stats.arrivals["/v1/chat/completions"], 2);
    assert.equal(stats.crashed, null);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: a completion sent to a sleeping engine kills it (vLLM issue 15483)", async () => {
  const vllm = await sleeper();
  try {
    assert.equal((await call(`${vllm.url}/sleep`)).status, 200);
    const res = await chat(vllm.url);
    assert.deepEqual(res, { status: 500, text: "" });
    assert.match(vllm.crashed ?? "", /reached a sleeping engine \(vLLM issue 15483\)/);
    assert.equal(vllm.stats().forwardedWhileAsleep, 1);
    await waitUntil(() => refusesConnections(vllm.url), 10_000, "the dead engine's server to close", 10);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: an embedding, or a request while falling asleep or waking, kills it too", async () => {
  const embeddings = await sleeper();
  try {
    await call(`${embeddings.url}/sleep`);
    assert.equal((await call(`${embeddings.url}/v1/embeddings`, "POST", { input: "x" })).status, 500);
    assert.ok(embeddings.crashed);
  } finally {
    await embeddings.close();
  }
  const falling = await sleeper({ sleepMs: 60_000 });
  try {
    const sleeping = call(`${falling.url}/sleep`);
    await waitUntil(() => falling.stats().transition === "falling-asleep", 10_000, "the sleep to start", 10);
    assert.equal((await chat(falling.url)).status, 500);
    assert.ok(falling.crashed);
    await sleeping.catch(() => {}); // the dead engine no longer finishes its sleep
  } finally {
    await falling.close();
  }
  const waking = await sleeper({ wakeMs: 60_000 });
  try {
    await call(`${waking.url}/sleep`);
    const woken = call(`${waking.url}/wake_up`);
    await waitUntil(() => waking.stats().transition === "waking", 10_000, "the wake to start", 10);
    assert.equal((await chat(waking.url, { stream: true })).status, 500);
    assert.ok(waking.crashed);
    await woken.catch(() => {});
  } finally {
    await waking.close();
  }
});

Deno.test("fake vLLM sleep: level 2 — garbage until reload_weights; vLLM's documented sequence restores it", async () => {
  const vllm = await sleeper({ embeddingDims: 4 });
  try {
    await call(`${vllm.url}/sleep?level=2`);
    await call(`${vllm.url}/wake_up`);
    assert.equal(await content(vllm.url), "<corrupted weights>");
    const stream = await chat(vllm.url, { stream: true });
    assert.match(stream.text, /"content":"<corrupted weights>"/);
    assert.doesNotMatch(stream.text, /"content":"the"/);
    const embedding = await call(`${vllm.url}/v1/embeddings`, "POST", { input: "x" });
    assert.deepEqual(JSON.parse(embedding.text).data[0].embedding, [0, 0, 0, 0]);
    assert.equal(vllm.stats().weightsCorrupted, true);
    assert.equal(vllm.stats().corruptedResponses, 3);
    assert.deepEqual(await call(`${vllm.url}/collective_rpc`, "POST", { method: "reload_weights" }), {
      status: 200,
      text: '{"results":[null]}',
    });
    assert.equal(await content(vllm.url), "the quick brown");
    assert.equal(vllm.stats().reloads, 1);
  } finally {
    await vllm.close();
  }

  const tp2 = await sleeper({ tensorParallelSize: 2 });
  try {
    await call(`${tp2.url}/sleep?level=2`);
    assert.equal((await call(`${tp2.url}/wake_up?tags=weights`)).status, 200);
    assert.equal(await isSleeping(tp2.url), true, "is_sleeping until every tag is awake");
    assert.deepEqual(tp2.stats().sleepingTags, ["kv_cache"]);
    assert.deepEqual(await call(`${tp2.url}/collective_rpc`, "POST", { method: "reload_weights" }), {
      status: 200,
      text: '{"results":[null,null]}',
    });
    assert.equal((await call(`${tp2.url}/wake_up?tags=kv_cache`)).status, 200);
    assert.equal(await isSleeping(tp2.url), false);
    assert.equal((await call(`${tp2.url}/reset_prefix_cache`)).status, 200);
    assert.equal(await content(tp2.url), "the quick brown");
    const stats = tp2.stats();
    assert.deepEqual(
      [stats.wakes, stats.reloadedSinceWake, stats.resetSinceWake, stats.servedWithoutReset, stats.corruptedResponses],
      [1, true, true, 0, 0],
    );
  } finally {
    await tp2.close();
  }
});

Deno.test("fake vLLM sleep: reload_weights into weights still asleep kills the engine", async () => {
  const vllm = await sleeper();
  try {
    await call(`${vllm.url}/sleep?level=2`);
    assert.equal((await call(`${vllm.url}/collective_rpc`, "POST", { method: "reload_weights" })).status, 500);
    assert.match(vllm.crashed ?? "", /reload_weights while the weights are asleep/);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: engine-core calls run in order — /is_sleeping during a sleep or wake answers after it", async () => {
  const vllm = await sleeper({ sleepMs: 150, wakeMs: 150 });
  try {
    const sleeping = call(`${vllm.url}/sleep`);
    await waitUntil(() => vllm.stats().transition === "falling-asleep", 10_000, "the sleep to start", 10);
    assert.equal(await isSleeping(vllm.url), true, "answered once the sleep is done");
    assert.equal((await sleeping).status, 200);
    const waking = call(`${vllm.url}/wake_up`);
    await waitUntil(() => vllm.stats().transition === "waking", 10_000, "the wake to start", 10);
    assert.equal(await isSleeping(vllm.url), false);
    assert.equal((await waking).status, 200);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: vLLM's no-ops and errors for odd calls", async () => {
  const vllm = await sleeper();
  const internal = { status: 500, text: "Internal Server Error" };
  try {
    assert.equal((await call(`${vllm.url}/wake_up`)).status, 200, "waking an awake engine: a no-op");
    assert.deepEqual(await call(`${vllm.url}/sleep?level=abc`), internal, "int('abc') raises");
    assert.equal(await isSleeping(vllm.url), false);
    assert.equal((await call(`${vllm.url}/sleep`)).status, 200);
    assert.equal((await call(`${vllm.url}/sleep?level=2`)).status, 200, "sleeping again: a no-op");
    assert.equal(vllm.stats().sleeps, 1);
    assert.equal(vllm.stats().sleepLevel, 1);
    assert.equal((await call(`${vllm.url}/wake_up?tags=foo`)).status, 200);
    assert.equal((await call(`${vllm.url}/wake_up?tags=weights&tags=foo`)).status, 200);
    assert.deepEqual(vllm.stats().sleepingTags, ["weights", "kv_cache"], "an unknown tag makes the call a no-op");
    assert.equal((await call(`${vllm.url}/wake_up?tags=weights&tags=kv_cache`)).status, 200);
    assert.equal(await isSleeping(vllm.url), false);

    const rpc = `${vllm.url}/collective_rpc`;
    const bad = await call(rpc, "POST", "{not json");
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.text).error.type, "Bad Request");
    assert.match(JSON.parse(bad.text).error.message, /^JSON decode error: /);
    assert.equal(
      JSON.parse((await call(rpc, "POST", "")).text).error.message,
      "JSON decode error: Expecting value: line 1 column 1 (char 0)",
    );
    assert.deepEqual(await call(rpc, "POST", {}), {
      status: 400,
      text: `{"error":{"message":"Missing 'method' in request body","type":"Bad Request","param":null,"code":400}}`,
    });
    assert.deepEqual(await call(rpc, "POST", []), internal);
    assert.deepEqual(await call(rpc, "POST", { method: "no_such_method" }), internal);

    assert.deepEqual(await call(`${vllm.url}/reset_prefix_cache?device=cpu`), internal);
    assert.deepEqual(await call(`${vllm.url}/reset_prefix_cache?device=xpu`), internal);
    assert.equal((await call(`${vllm.url}/reset_prefix_cache?device=gpu`)).status, 200);
    assert.equal(vllm.stats().resets, 1);

    await call(`${vllm.url}/sleep?level=3`);
    await call(`${vllm.url}/wake_up`);
    assert.equal(await content(vllm.url), "<corrupted weights>", "every level but 1 discards the weights");
    assert.equal(vllm.crashed, null);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: without --enable-sleep-mode, /sleep answers 200 but frees nothing and it still serves", async () => {
  const ledger = tempLedger();
  const vllm = await startFakeVllm({ model: "m", devMode: true, gpuLedger: ledger, gpuMemoryUtilization: 0.7 });
  try {
    assert.deepEqual(await call(`${vllm.url}/sleep?level=2`), { status: 200, text: "" });
    assert.equal(await isSleeping(vllm.url), true);
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.7 }, "its memory stays taken");
    assert.equal(await content(vllm.url), "the quick brown", "its weights were never unmapped");
    assert.equal(vllm.stats().forwardedWhileAsleep, 1);
    assert.equal((await call(`${vllm.url}/wake_up`)).status, 200);
    assert.equal(await isSleeping(vllm.url), false);
    assert.equal(await content(vllm.url), "the quick brown");
    assert.equal(vllm.crashed, null);
  } finally {
    await vllm.close();
  }
  assert.deepEqual(readLedger(ledger).claims, [], "close() released it");
});

Deno.test("fake vLLM sleep: /sleep with a request in flight answers 200, then the engine dies (vLLM 28714, 45520)", async () => {
  const vllm = await sleeper({ tokensPerSec: 20 });
  try {
    const reader = await streamInFlight(vllm.url);
    assert.equal(vllm.stats().inflight, 1);
    assert.equal((await call(`${vllm.url}/sleep`)).status, 200);
    await waitUntil(() => vllm.crashed !== null, 10_000, "the engine to die", 10);
    assert.match(vllm.crashed!, /in flight/);
    assert.equal(vllm.stats().sleptWithInflight, 1);
    await assert.rejects(async () => {
      while (!(await reader.read()).done) { /* until the crash */ }
    });
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: a prefix-cache reset is refused while requests are in flight (still 200)", async () => {
  const vllm = await sleeper({ tokensPerSec: 20 });
  try {
    const reader = await streamInFlight(vllm.url);
    assert.equal((await call(`${vllm.url}/reset_prefix_cache`)).status, 200);
    assert.equal(vllm.stats().resets, 0);
    await reader.cancel();
    await waitUntil(() => vllm.stats().inflight === 0, 10_000, "the stream to end", 10);
    await call(`${vllm.url}/reset_prefix_cache`);
    assert.equal(vllm.stats().resets, 1);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: failWake answers /wake_up 500 like a CUDA OOM; the engine stays asleep and alive", async () => {
  const vllm = await sleeper({ failWake: true });
  try {
    await call(`${vllm.url}/sleep`);
    assert.deepEqual(await call(`${vllm.url}/wake_up`), { status: 500, text: "Internal Server Error" });
    assert.equal(await isSleeping(vllm.url), true);
    assert.equal(vllm.stats().wakeFailures, 1);
    assert.equal(vllm.stats().wakes, 0);
    const health = await fetch(`${vllm.url}/health`);
    await health.body?.cancel();
    assert.equal(health.status, 200);
    assert.equal(vllm.crashed, null);
  } finally {
    await vllm.close();
  }
});

Deno.test("fake vLLM sleep: vLLM's startup message, Python number formatting included", () => {
  assert.equal(startupCheckMessage({ freeGiB: 32, totalGiB: 80, utilization: 0.6 }), STARTUP_MESSAGE_0_6);
  assert.match(
    startupCheckMessage({ freeGiB: 0.125, totalGiB: 79.19, utilization: 1 }),
    /\(0\.12\/79\.19 GiB\).*\(1\.0, 79\.19 GiB\)/,
  );
  assert.match(
    startupCheckMessage({ freeGiB: 7.3333333, totalGiB: 24, utilization: 0.35 }),
    /\(7\.33\/24\.0 GiB\).*\(0\.35, 8\.4 GiB\)/,
  );
});

Deno.test("fake vLLM GPU ledger: vLLM's startup check, a sleep makes room, a wake without room is a CUDA OOM", async () => {
  const ledger = tempLedger();
  const gpu = { gpuLedger: ledger, devices: ["0"], gpuMemoryUtilization: 0.6 };
  const a = await sleeper({ model: "a", ...gpu });
  let b: FakeVllm | undefined;
  try {
    await assert.rejects(sleeper({ model: "b", ...gpu }), (e: unknown) => {
      assert.ok(e instanceof FakeVllmStartupError);
      assert.equal(e.message, `ValueError: ${STARTUP_MESSAGE_0_6}`);
      return true;
    });
    await assert.rejects(sleeper({ model: "c", ...gpu, devices: ["1", "0"], gpuMemoryUtilization: 0.5 }), /ValueError/);
    assert.equal((await call(`${a.url}/sleep`)).status, 200);
    assert.equal(a.stats().gpu?.claimed, false);
    b = await sleeper({ model: "b", ...gpu });
    assert.deepEqual(await call(`${a.url}/wake_up`), { status: 500, text: "Internal Server Error" });
    assert.equal(await isSleeping(a.url), true);
    assert.equal(a.crashed, null);
    let state = readLedger(ledger);
    assert.deepEqual(heldShares(state), { "0": 0.6 });
    assert.deepEqual(state.refusals.map((r) => [r.kind, r.model]), [["startup", "b"], ["startup", "c"], ["wake", "a"]]);
    assertNeverOversubscribed(ledger);
    assert.throws(() => assertNeverOversubscribed(ledger, { allowRefusals: false }), /startup of b/);
    await b.close();
    assert.equal((await call(`${a.url}/wake_up`)).status, 200);
    assert.equal(await content(a.url), "the quick brown");
    state = readLedger(ledger);
    assert.deepEqual(state.claims.map((c) => c.model), ["a"]);
    assert.deepEqual(state.highWater, { "0": 0.6 });
    assert.deepEqual(state.violations, []);
  } finally {
    await b?.close();
    await a.close();
  }
  assert.deepEqual(readLedger(ledger).claims, []);
});

Deno.test("fake vLLM GPU ledger: forced — two engines loading together both pass the check; the violation is recorded", async () => {
  const ledger = tempLedger();
  const gpu = { gpuLedger: ledger, gpuMemoryUtilization: 0.6 };
  // a checks free memory now and takes it at the end of its load; b, started meanwhile, checks and takes it at once.
  const a = await sleeper({ model: "a", loadMs: 300, ...gpu });
  const b = await sleeper({ model: "b", ...gpu });
  try {
    await waitUntil(() => a.crashed !== null, 10_000, "the late loader to die", 10);
    assert.match(a.crashed!, /torch\.OutOfMemoryError: CUDA out of memory/);
    assert.equal(b.crashed, null);
    assert.throws(() => assertNeverOversubscribed(ledger), /device 0 held 1\.2 \(> 1\.0\) when a claimed/);
    assert.deepEqual(readLedger(ledger).claims.map((c) => c.model), ["b"], "the dead engine gave its claim back");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("fake vLLM GPU ledger: sleepFreesNothing — /sleep 200, memory kept (vLLM 47654); a wake must fit on top", async () => {
  const ledger = tempLedger();
  const big = await sleeper({ model: "big", gpuLedger: ledger, gpuMemoryUtilization: 0.6, sleepFreesNothing: true });
  try {
    assert.equal((await call(`${big.url}/sleep`)).status, 200);
    assert.equal(await isSleeping(big.url), true);
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.6 });
    await assert.rejects(sleeper({ model: "other", gpuLedger: ledger, gpuMemoryUtilization: 0.5 }), /ValueError/);
    assert.equal((await call(`${big.url}/wake_up`)).status, 500, "0.6 more on top of its 0.6 residue");
  } finally {
    await big.close();
  }
  const small = await sleeper({
    model: "small",
    gpuLedger: ledger,
    gpuMemoryUtilization: 0.4,
    sleepFreesNothing: true,
  });
  try {
    await call(`${small.url}/sleep`);
    assert.equal((await call(`${small.url}/wake_up`)).status, 200);
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.4 }, "held once after the wake");
  } finally {
    await small.close();
  }
  assertNeverOversubscribed(ledger);
});

// ---- child processes -------------------------------------------------------------------------------------------

Deno.test("fake vLLM CLI sleep: two engines at 0.6 on GPU 0 — vLLM's startup failure, room by sleep, a failed wake", async () => {
  const ledger = tempLedger();
  const env = { VLLM_SERVER_DEV_MODE: "1", FAKE_GPU_LEDGER: ledger, CUDA_VISIBLE_DEVICES: "0" };
  const flags = ["--enable-sleep-mode", "--gpu-memory-utilization", "0.6", "--sleep-ms", "20", "--wake-ms", "20"];
  const a = await spawnFakeVllmCli(["--model", "a", ...flags], env);
  const engines = [a];
  try {
    assert.ok(a.url, "a started");
    const b = await spawnFakeVllmCli(["--model", "b", ...flags], env);
    engines.push(b);
    assert.equal(b.url, "", "b never listens");
    const failed = await b.finish();
    assert.equal(failed.code, 1);
    assert.ok(failed.stderr.includes(`ValueError: ${STARTUP_MESSAGE_0_6}`), failed.stderr);
    assert.match(failed.stderr, /RuntimeError: Engine core initialization failed\. See root cause above\./);

    assert.equal((await call(`${a.url}/sleep?level=1`)).status, 200);
    const b2 = await spawnFakeVllmCli(["--model", "b", ...flags], env);
    engines.push(b2);
    assert.ok(b2.url, "the sleep made room");
    assert.equal(await content(b2.url), "the quick brown");
    assert.deepEqual(await call(`${a.url}/wake_up`), { status: 500, text: "Internal Server Error" });
    assert.equal(await isSleeping(a.url), true);
    const stats = JSON.parse((await call(`${a.url}/_fake/stats`, "GET")).text);
    assert.deepEqual([stats.model, stats.sleeps, stats.wakes, stats.wakeFailures], ["a", 1, 0, 1]);
    assert.deepEqual(stats.gpu, { ledger, devices: ["0"], share: 0.6, claimed: false });
    assertNeverOversubscribed(ledger);
    assert.deepEqual(readLedger(ledger).refusals.map((r) => [r.kind, r.model]), [["startup", "b"], ["wake", "a"]]);

    b2.child.kill("SIGTERM");
    assert.equal((await b2.finish()).code, 0);
    assert.deepEqual(readLedger(ledger).claims, [], "SIGTERM released b's claim");
    assert.equal((await call(`${a.url}/wake_up`)).status, 200);
    assert.equal(await content(a.url), "the quick brown");
    a.child.kill("SIGKILL");
    await a.finish();
    assert.deepEqual(readLedger(ledger).claims, [], "a SIGKILLed engine's claim is reaped");
    assert.deepEqual(readLedger(ledger).reaped.map((r) => r.model), ["a"]);
    assertNeverOversubscribed(ledger);
  } finally {
    for (const engine of engines) await stopFakeVllmCli(engine);
  }
});

Deno.test("fake vLLM CLI sleep: forced — two engines loading together on GPU 0; the last to load dies, the ledger records it", async () => {
  const ledger = tempLedger();
  const env = { VLLM_SERVER_DEV_MODE: "1", FAKE_GPU_LEDGER: ledger, CUDA_VISIBLE_DEVICES: "0" };
  // vLLM checks free memory before its load and takes the memory during it: a, still loading, has taken nothing
  // yet when b checks (and b, loading in no time, takes its share at once).
  const a = await spawnFakeVllmCli(["--model", "a", "--gpu-memory-utilization", "0.6", "--load-ms", "2000"], env);
  const b = await spawnFakeVllmCli(["--model", "b", "--gpu-memory-utilization", "0.6"], env);
  try {
    assert.ok(a.url && b.url, "both passed vLLM's startup check");
    const { code, stderr } = await a.finish();
    assert.equal(code, 1);
    assert.match(stderr, /torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate 48\.00 GiB\. GPU 0/);
    assert.throws(() => assertNeverOversubscribed(ledger), /device 0 held 1\.2 \(> 1\.0\) when a claimed/);
    assert.equal(await content(b.url), "the quick brown");
    assert.deepEqual(readLedger(ledger).claims.map((c) => c.model), ["b"]);
  } finally {
    await stopFakeVllmCli(a);
    await stopFakeVllmCli(b);
  }
});

Deno.test("fake vLLM CLI sleep: a completion to a sleeping engine makes the process exit 1; /_fake/stats counts", async () => {
  const a = await spawnFakeVllmCli(["--model", "a", "--enable-sleep-mode"], { VLLM_SERVER_DEV_MODE: "1" });
  try {
    assert.equal(await content(a.url), "the quick brown");
    await call(`${a.url}/sleep`);
    const stats = JSON.parse((await call(`${a.url}/_fake/stats`, "GET")).text);
    assert.deepEqual(stats.arrivals, { "/v1/chat/completions": 1, "/sleep": 1 });
    assert.equal(stats.isSleeping, true);
    assert.equal(stats.requests, 2, "/_fake/stats itself is not counted");
    assert.equal((await chat(a.url).catch(() => ({ status: 0 }))).status === 200, false);
    const { code, stderr } = await a.finish();
    assert.equal(code, 1);
    assert.match(stderr, /engine core died: \/v1\/chat\/completions reached a sleeping engine \(vLLM issue 15483\)/);
  } finally {
    await stopFakeVllmCli(a);
  }
});

Deno.test("fake vLLM CLI sleep: VLLM_SERVER_DEV_MODE is read as vLLM's envs.py reads it", async () => {
  const bad = await spawnFakeVllmCli(["--model", "a", "--enable-sleep-mode"], { VLLM_SERVER_DEV_MODE: "true" });
  const { code, stderr } = await bad.finish();
  assert.equal(code, 1);
  assert.match(stderr, /ValueError: invalid literal for int\(\) with base 10: 'true'/);
  const off = await spawnFakeVllmCli(["--model", "a", "--enable-sleep-mode"], { VLLM_SERVER_DEV_MODE: "0" });
  try {
    assert.equal((await call(`${off.url}/sleep`)).status, 404);
  } finally {
    await stopFakeVllmCli(off);
  }
});

Deno.test("fake vLLM CLI sleep: accepts vLLM's engine flags ({args}); --served-model-name names the model", async () => {
  const engine = await spawnFakeVllmCli([
    "serve",
    "org/x",
    "--served-model-name",
    "chat",
    "--max-model-len",
    "2048",
    "--gpu-memory-utilization",
    "0.5",
    "--tensor-parallel-size",
    "2",
    "--enable-prefix-caching",
    "--no-enable-chunked-prefill",
    "--dtype",
    "bfloat16",
    "--seed",
    "7",
    "--enforce-eager",
    "--enable-sleep-mode",
  ], { VLLM_SERVER_DEV_MODE: "1" });
  try {
    const models = JSON.parse((await call(`${engine.url}/v1/models`, "GET")).text);
    assert.deepEqual([models.data[0].id, models.data[0].root, models.data[0].max_model_len], ["chat", "org/x", 2048]);
    assert.equal(
      (await call(`${engine.url}/collective_rpc`, "POST", { method: "reload_weights" })).text,
      '{"results":[null,null]}',
    );
    assert.equal(JSON.parse((await call(`${engine.url}/_fake/stats`, "GET")).text).gpu, null, "no ledger");
  } finally {
    await stopFakeVllmCli(engine);
  }
  const bad = await spawnFakeVllmCli(["--model", "a", "--gpu-memory-utilization", "1.5"]);
  const { code, stderr } = await bad.finish();
  assert.equal(code, 2);
  assert.match(stderr, /--gpu-memory-utilization must be in \(0, 1\]/);
});

Deno.test("fake vLLM CLI sleep: --fail-wake and --sleep-frees-nothing", async () => {
  const ledger = tempLedger();
  const env = { VLLM_SERVER_DEV_MODE: "1", FAKE_GPU_LEDGER: ledger };
  const engine = await spawnFakeVllmCli(
    ["--model", "a", "--enable-sleep-mode", "--sleep-frees-nothing", "--fail-wake"],
    env,
  );
  try {
    assert.equal((await call(`${engine.url}/sleep`)).status, 200);
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.9 }, "the default share, still held");
    assert.equal((await call(`${engine.url}/wake_up`)).status, 500);
    const stats = JSON.parse((await call(`${engine.url}/_fake/stats`, "GET")).text);
    assert.deepEqual([stats.isSleeping, stats.wakeFailures, stats.crashed], [true, 1, null]);
  } finally {
    await stopFakeVllmCli(engine);
  }
});
