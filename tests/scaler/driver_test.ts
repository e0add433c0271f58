import assert from "node:assert/strict";
import type { Observed } from "../../lib/backend/types.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { FakeClock } from "../../lib/scaler/clock.ts";
import { createScaler } from "../../lib/scaler/driver.ts";
import { type Lease, Rejection } from "../../lib/scaler/types.ts";
import { FakeBackend } from "../support/fake_backend.ts";

const models = { a: { modelName: "org/a" }, b: { modelName: "org/b" } };

/** Lets promise callbacks (backend results, grants) run; no real waiting. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => queueMicrotask(r));
}

function setup(
  config: ChillConfigInput = {},
  { scaleOnly = false, observations = [] as (Observed | Error)[] } = {},
) {
  const clock = new FakeClock();
  const backend = new FakeBackend();
  backend.observations.push(...observations);
  const parsed = parseConfig({ enableModelSwitch: !scaleOnly, models: scaleOnly ? {} : models, ...config });
  const registry = new ModelRegistry(parsed.models);
  const metrics = createMetrics();
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  const scaler = createScaler({ backend, registry, config: parsed, clock, log, metrics, scaleOnly });
  const signal = new AbortController().signal;
  return { clock, backend, registry, metrics, lines, scaler, signal };
}

Deno.test("driver: 1,000 concurrent acquires from zero → exactly one backend.start, all granted when ready", async () => {
  const { backend, scaler, metrics, signal, clock } = setup({ maxHeldRequests: 1000 });
  await scaler.start();
  assert.equal(scaler.ready(), true);
  const leases = Array.from({ length: 1000 }, () => scaler.acquire("a", { signal }));
  await flush();
  assert.equal(backend.callsOf("start").length, 1);
  assert.equal(backend.last("start").model, "a");
  assert.equal(metrics.heldRequests.get({ model: "a" }), 1000);
  assert.equal(scaler.modelStatus("a"), "starting");
  clock.advance(30_000);
  backend.last("start").resolve();
  const granted = await Promise.all(leases);
  assert.equal(granted.length, 1000);
  assert.equal(granted[0].upstream, "http://fake-engine-a.invalid");
  assert.equal(granted[0].heldMs, 30_000);
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 1000);
  assert.equal(metrics.heldRequests.get({ model: "a" }), 0);
  assert.equal(metrics.scaleEventsTotal.get({ direction: "up" }), 1);
  assert.equal(metrics.coldStartSeconds.count(), 1);
  assert.equal(metrics.state.get({ state: "ready" }), 1);
  for (const lease of granted) lease.release();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 0);
  assert.equal(backend.callsOf("start").length, 1);
  await scaler.shutdown();
});

Deno.test("driver: tryAcquire is null when cold, a lease when warm; release is idempotent", async () => {
  const { backend, scaler, metrics, signal } = setup();
  await scaler.start();
  assert.equal(scaler.tryAcquire("a"), null);
  const held = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  (await held).release();
  const lease = scaler.tryAcquire("a");
  assert.ok(lease);
  assert.equal(lease.heldMs, 0);
  assert.equal(lease.model, "a");
  assert.equal(scaler.tryAcquire("b"), null, "another model is not warm");
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 1);
  assert.equal(scaler.status().inflight.a, 1);
  lease.release();
  lease.release();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 0);
  assert.equal(scaler.status().inflight.a, undefined);
  await scaler.shutdown();
});

Deno.test("driver: a client cancelling while held is removed from the queue and never counted in flight", async () => {
  const { backend, scaler, metrics } = setup();
  await scaler.start();
  const client = new AbortController();
  const pending = scaler.acquire("a", { signal: client.signal });
  await flush();
  assert.equal(metrics.heldRequests.get({ model: "a" }), 1);
  client.abort(new Error("client gone"));
  await assert.rejects(pending, /client gone/);
  assert.equal(metrics.heldRequests.get({ model: "a" }), 0);
  backend.last("start").resolve();
  await flush();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 0);
  assert.equal(scaler.modelStatus("a"), "ready");
  // An already-aborted signal is refused at once.
  await assert.rejects(scaler.acquire("a", { signal: AbortSignal.abort(new Error("gone")) }), /gone/);
  await scaler.shutdown();
});

Deno.test("driver: held beyond holdTimeout → Rejection 504 hold_timeout", async () => {
  const { scaler, clock, signal, metrics } = setup({ holdTimeout: "10s" });
  await scaler.start();
  const pending = scaler.acquire("a", { signal });
  const outcome = pending.catch((e) => e);
  clock.advance(10_000);
  const err = await outcome;
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 504);
  assert.equal(err.code, "hold_timeout");
  assert.equal(metrics.rejectedRequestsTotal.get({ reason: "hold_timeout" }), 1);
  await scaler.shutdown();
});

Deno.test("driver: hold queue full → Rejection 429 with retryAfter", async () => {
  const { scaler, signal } = setup({ maxHeldRequests: 1 });
  await scaler.start();
  const first = scaler.acquire("a", { signal });
  const err = await scaler.acquire("a", { signal }).catch((e) => e);
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 429);
  assert.equal(err.code, "hold_queue_full");
  assert.ok(err.retryAfter! > 0);
  await scaler.shutdown();
  await assert.rejects(first, (e) => e instanceof Rejection && e.code === "shutting_down");
});

Deno.test("driver: startTimeout → 503 + stop (the start is aborted first; one backend op at a time)", async () => {
  const { scaler, clock, signal, backend, metrics } = setup({ startTimeout: "1m", holdTimeout: "10m" });
  await scaler.start();
  const outcome = scaler.acquire("a", { signal }).catch((e) => e);
  await flush();
  const start = backend.last("start");
  clock.advance(60_000);
  const err = await outcome;
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 503);
  assert.equal(err.code, "model_unavailable");
  assert.match(err.message, /startTimeout 1m/);
  await flush();
  assert.equal(start.outcome, "aborted");
  const stop = await backend.waitFor("stop");
  assert.match(stop.reason!, /start failed/);
  assert.equal(backend.maxConcurrent, 1);
  assert.equal(scaler.modelStatus("a"), "failed");
  stop.resolve();
  await flush();
  assert.equal(scaler.status().state, "idle");
  assert.equal(metrics.replicas.get(), 0);
  assert.equal(scaler.status().lastError?.model, "a");
  await scaler.shutdown();
});

Deno.test("driver: startFailed from the backend → 503 with its reason", async () => {
  const { scaler, signal, backend } = setup();
  await scaler.start();
  const outcome = scaler.acquire("a", { signal }).catch((e) => e);
  await flush();
  backend.last("start").reject("pod crash-looping: exit code 1", "crashloop");
  const err = await outcome;
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 503);
  assert.match(err.message, /crash-looping/);
  assert.equal(err.retryAfter, 30);
  (await backend.waitFor("stop")).resolve();
  await scaler.shutdown();
});

Deno.test("driver: idle scale-down after the last request, with one state log line per change", async () => {
  const { scaler, signal, backend, clock, lines, metrics } = setup({ idleTimeout: "30s" });
  await scaler.start();
  const pending = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  const lease = await pending;
  clock.advance(120_000); // a long stream
  assert.equal(backend.callsOf("stop").length, 0);
  lease.release();
  clock.advance(29_999);
  await flush();
  assert.equal(backend.callsOf("stop").length, 0);
  clock.advance(1);
  const stop = await backend.waitFor("stop");
  assert.equal(stop.reason, "idle");
  stop.resolve();
  await flush();
  assert.equal(scaler.status().state, "idle");
  assert.equal(metrics.scaleEventsTotal.get({ direction: "down" }), 1);
  const states = lines.filter((l) => l.msg === "state").map((l) => `${l.from}>${l.to}`);
  assert.deepEqual(states, ["idle>starting", "starting>ready", "ready>stopping", "stopping>idle"]);
  const ready = lines.find((l) => l.msg === "state" && l.to === "stopping")!;
  assert.equal(ready.durationMs, 150_000);
  assert.equal(ready.model, "a");
  await scaler.shutdown();
});

Deno.test("driver: a switch drains, stops (old engine gone) then starts the new model; metrics count it", async () => {
  const { scaler, signal, backend, clock, metrics } = setup({ minLoadedTime: "30s" });
  const transitions: string[] = [];
  scaler.onTransition((t) => transitions.push(t.to));
  await scaler.start();
  const a = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  const leaseA = await a;
  const b = scaler.acquire("b", { signal });
  clock.advance(30_000);
  assert.equal(scaler.modelStatus("a"), "draining");
  leaseA.release();
  const stop = await backend.waitFor("stop");
  assert.equal(stop.reason, "switch to b");
  assert.match(scaler.status().stateReason!, /switch to b/);
  assert.equal(scaler.status().nextModel, "b");
  assert.equal(backend.callsOf("start").length, 1, "b starts only after a is gone");
  stop.resolve();
  const startB = await backend.waitFor("start", 2);
  assert.equal(startB.model, "b");
  clock.advance(5_000);
  startB.resolve();
  const leaseB = await b;
  assert.equal(leaseB.model, "b");
  assert.equal(metrics.modelSwitchesTotal.get({ from: "a", to: "b" }), 1);
  assert.equal(metrics.switchDurationSeconds.count(), 1);
  assert.equal(metrics.activeModel.get({ model: "b" }), 1);
  assert.equal(metrics.activeModel.get({ model: "a" }), 0);
  assert.equal(scaler.status().lastSwitchMs, 5_000);
  assert.deepEqual(transitions, ["starting", "ready", "draining", "switching", "idle", "starting", "ready"]);
  leaseB.release();
  await scaler.shutdown();
});

Deno.test("driver: load and unload resolve when done", async () => {
  const { scaler, signal, backend } = setup();
  await scaler.start();
  const loading = scaler.load("b", { signal });
  await flush();
  assert.equal(backend.last("start").model, "b");
  backend.last("start").resolve();
  await loading;
  assert.equal(scaler.modelStatus("b"), "ready");
  const unloading = scaler.unload(null, { signal });
  const stop = await backend.waitFor("stop");
  assert.equal(stop.reason, "unload");
  stop.resolve();
  await unloading;
  assert.equal(scaler.status().state, "idle");
  await scaler.shutdown();
});

Deno.test("driver: engine failure while ready → stop, then the next request starts it again", async () => {
  const { scaler, signal, backend } = setup();
  await scaler.start();
  const first = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  (await first).release();
  backend.fail("a", "process exited with code 137");
  const stop = await backend.waitFor("stop");
  assert.match(stop.reason!, /engine failed: process exited with code 137/);
  const again = scaler.acquire("a", { signal });
  stop.resolve();
  const start2 = await backend.waitFor("start", 2);
  start2.resolve();
  (await again).release();
  assert.equal(scaler.status().lastError?.reason, "process exited with code 137");
  await scaler.shutdown();
});

Deno.test("driver: scale-only mode starts the backend with null under the key '*'", async () => {
  const { scaler, signal, backend } = setup({}, { scaleOnly: true });
  await scaler.start();
  const pending = scaler.acquire("*", { signal });
  await flush();
  assert.equal(backend.last("start").model, null);
  backend.last("start").resolve();
  (await pending).release();
  assert.equal(scaler.modelStatus("*"), "ready");
  assert.ok(scaler.tryAcquire("*"));
  await scaler.shutdown();
});

Deno.test("driver: restart while ready continues serving without any backend call", async () => {
  const { scaler, backend } = setup({}, { observations: [{ engines: [{ key: "b", phase: "ready" }] }] });
  await scaler.start();
  const lease = scaler.tryAcquire("b");
  assert.ok(lease);
  lease.release();
  assert.equal(backend.calls.length, 0);
  await scaler.shutdown();
});

for (const phase of ["pending", "starting"] as const) {
  Deno.test(`driver: restart while ${phase} waits for the engine (no second start)`, async () => {
    const { scaler, backend, signal } = setup({}, { observations: [{ engines: [{ key: "a", phase }] }] });
    await scaler.start();
    const pending = scaler.acquire("a", { signal });
    const wait = await backend.waitFor("waitReady");
    assert.equal(wait.model, "a");
    wait.resolve();
    (await pending).release();
    assert.equal(backend.callsOf("start").length, 0);
    await scaler.shutdown();
  });
}

Deno.test("driver: restart while terminating waits for it to be gone before starting", async () => {
  const { scaler, backend, signal } = setup({}, {
    observations: [{ engines: [{ key: "a", phase: "terminating" }] }],
  });
  await scaler.start();
  const pending = scaler.acquire("b", { signal });
  const stop = await backend.waitFor("stop");
  assert.equal(backend.callsOf("start").length, 0);
  stop.resolve();
  const start = await backend.waitFor("start");
  assert.equal(start.model, "b");
  start.resolve();
  (await pending).release();
  await scaler.shutdown();
});

Deno.test("driver: restart with a failed engine stops it (no GPU left burning)", async () => {
  const { scaler, backend } = setup({}, {
    observations: [{ engines: [{ key: "a", phase: "failed", reason: "CrashLoopBackOff" }] }],
  });
  await scaler.start();
  const stop = await backend.waitFor("stop");
  assert.match(stop.reason!, /CrashLoopBackOff/);
  assert.equal(scaler.modelStatus("a"), "failed");
  stop.resolve();
  await flush();
  assert.equal(scaler.status().state, "idle");
  await scaler.shutdown();
});

Deno.test("driver: restart with nothing running is idle", async () => {
  const { scaler, backend } = setup({}, { observations: [{ engines: [] }] });
  await scaler.start();
  assert.equal(scaler.status().state, "idle");
  assert.equal(backend.calls.length, 0);
  await scaler.shutdown();
});

Deno.test("driver: observe errors are retried with backoff; ready() flips when it succeeds", async () => {
  const { scaler, backend, clock, signal } = setup({}, {
    observations: [new Error("connect ECONNREFUSED"), new Error("connect ECONNREFUSED")],
  });
  const started = scaler.start();
  const held = scaler.acquire("a", { signal });
  await flush();
  assert.equal(scaler.ready(), false);
  assert.equal(backend.observeCalls, 1);
  clock.advance(500);
  await flush();
  assert.equal(backend.observeCalls, 2);
  assert.equal(scaler.ready(), false);
  clock.advance(1000);
  await started;
  assert.equal(scaler.ready(), true);
  const start = await backend.waitFor("start");
  start.resolve();
  (await held).release();
  await scaler.shutdown();
});

Deno.test("driver: shutdown rejects held requests with 503, aborts waits, never stops the engine", async () => {
  const { scaler, signal, backend } = setup();
  await scaler.start();
  const outcome = scaler.acquire("a", { signal }).catch((e) => e);
  await flush();
  const start = backend.last("start");
  await scaler.shutdown();
  const err = await outcome;
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 503);
  assert.equal(err.code, "shutting_down");
  assert.equal(start.outcome, "aborted");
  assert.equal(backend.callsOf("stop").length, 0);
  assert.equal(scaler.ready(), false);
  const late = await scaler.acquire("a", { signal }).catch((e) => e);
  assert.equal(late.code, "shutting_down");
  assert.equal(scaler.tryAcquire("a"), null);
});

Deno.test("driver: in-flight requests survive shutdown and release cleanly", async () => {
  const { scaler, signal, backend, metrics } = setup();
  await scaler.start();
  const pending = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  const lease: Lease = await pending;
  await scaler.shutdown();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 1);
  lease.release();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 0);
  assert.equal(backend.callsOf("stop").length, 0);
});

Deno.test("driver: status() reports held and in-flight per model and the backend", async () => {
  const { scaler, signal, backend } = setup();
  await scaler.start();
  const a = scaler.acquire("a", { signal });
  const b = scaler.acquire("b", { signal });
  await flush();
  let status = scaler.status();
  assert.equal(status.state, "starting");
  assert.equal(status.activeModel, "a");
  assert.deepEqual(status.held, { a: 1, b: 1 });
  assert.deepEqual(status.backend, { kind: "fake", calls: 1 });
  backend.last("start").resolve();
  const leaseA = await a;
  status = scaler.status();
  assert.deepEqual(status.inflight, { a: 1 });
  assert.deepEqual(status.held, { b: 1 });
  assert.equal(typeof status.lastColdStartMs, "number");
  leaseA.release();
  await scaler.shutdown();
  await assert.rejects(b, (e) => e instanceof Rejection && e.status === 503);
});

Deno.test("driver: a client that leaves as the grant arrives is released at once (no stuck in-flight count)", async () => {
  const { scaler, backend, metrics } = setup();
  await scaler.start();
  const client = new AbortController();
  // The client disconnects in the very turn the engine becomes ready, before its grant is handed out.
  scaler.onTransition((t) => {
    if (t.to === "ready") client.abort(new Error("client left"));
  });
  const pending = scaler.acquire("a", { signal: client.signal });
  const other = scaler.acquire("a", { signal: new AbortController().signal });
  await flush();
  backend.last("start").resolve();
  await assert.rejects(pending, /client left/);
  const lease = await other;
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 1);
  assert.deepEqual(scaler.status().inflight, { a: 1 });
  lease.release();
  assert.equal(metrics.inflightRequests.get({ model: "a" }), 0);
  await scaler.shutdown();
});

Deno.test("driver: a model removed from the registry before its start → 503, nothing started", async () => {
  const { scaler, backend, signal } = setup();
  await scaler.start();
  const err = await scaler.acquire("gone", { signal }).catch((e) => e);
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 503);
  assert.match(err.message, /unknown model "gone"/);
  assert.equal(backend.callsOf("start").length, 0);
  (await backend.waitFor("stop")).resolve();
  await scaler.shutdown();
});

Deno.test("driver: a VLLMModel added later brings its own timeouts", async () => {
  const { scaler, backend, signal, registry, clock } = setup({ holdTimeout: "10m" });
  await scaler.start();
  registry.setCrdModel("c", { modelName: "org/c", holdTimeout: 2000 });
  const outcome = scaler.acquire("c", { signal }).catch((e) => e);
  clock.advance(2000);
  const err = await outcome;
  assert.equal(err.status, 504);
  assert.match(err.message, /holdTimeout 2s/);
  backend.last("start").resolve();
  await scaler.shutdown();
});

Deno.test("driver: with the real clock, the idle timer scales down and shutdown leaves no timer behind", async () => {
  const backend = new FakeBackend();
  const parsed = parseConfig({ enableModelSwitch: true, models, idleTimeout: "50ms" });
  const scaler = createScaler({
    backend,
    registry: new ModelRegistry(parsed.models),
    config: parsed,
    log: createLogger({ write: () => {} }),
    metrics: createMetrics(),
    scaleOnly: false,
  });
  await scaler.start();
  const pending = scaler.acquire("a", { signal: new AbortController().signal });
  (await backend.waitFor("start")).resolve();
  const lease = await pending;
  const t0 = Date.now();
  lease.release();
  const stop = await backend.waitFor("stop", 1, 2_000);
  assert.equal(stop.reason, "idle");
  assert.ok(Date.now() - t0 >= 45, "not before idleTimeout");
  stop.resolve();
  // A new request re-arms the hold timer (10m by default); shutdown must clear it.
  const held = scaler.acquire("b", { signal: new AbortController().signal }).catch((e) => e);
  await scaler.shutdown();
  assert.equal((await held).code, "shutting_down");
});

Deno.test("driver: a stop that fails twice makes the scaler read the world back and continue", async () => {
  const { scaler, backend, signal, clock } = setup({ minLoadedTime: "0s" });
  backend.observations.push(
    { engines: [] },
    { engines: [{ key: "a", phase: "ready" }] },
  );
  await scaler.start();
  const a = scaler.acquire("a", { signal });
  await flush();
  backend.last("start").resolve();
  (await a).release();
  const b = scaler.acquire("b", { signal }).catch((e) => e);
  clock.advance(1);
  (await backend.waitFor("stop", 1)).reject("API server 500");
  (await backend.waitFor("stop", 2)).reject("API server 500");
  const err = await b;
  assert.ok(err instanceof Rejection);
  assert.equal(err.status, 503);
  assert.match(err.message, /did not stop \(API server 500\)/);
  await flush();
  assert.equal(backend.observeCalls, 2);
  assert.equal(scaler.status().state, "ready");
  assert.equal(scaler.status().activeModel, "a");
  assert.ok(scaler.tryAcquire("a"), "a still serves");
  assert.equal(backend.maxConcurrent, 1);
  await scaler.shutdown();
});
