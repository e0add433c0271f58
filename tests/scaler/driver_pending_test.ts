// The driver's side of the Kubernetes pool: a start's `onPending` reaches `decide` (room is made), and in the
// per-model layout the engine of a model that disappears from the registry is unloaded.
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { FakeClock } from "../../lib/scaler/clock.ts";
import { createScaler } from "../../lib/scaler/driver.ts";
import { Rejection } from "../../lib/scaler/types.ts";
import { FakeBackend } from "../support/fake_backend.ts";

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => queueMicrotask(r));
}

function setup(config: ChillConfigInput = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend();
  const parsed = parseConfig({
    backend: "kubernetes",
    layout: "per-model",
    maxGpus: 3,
    enableModelSwitch: true,
    models: { a: { modelName: "org/a" }, b: { modelName: "org/b" } },
    ...config,
  });
  const registry = new ModelRegistry(parsed.models);
  const log = createLogger({ format: "json", level: "error", write: () => {} });
  const scaler = createScaler({
    backend,
    registry,
    config: parsed,
    clock,
    log,
    metrics: createMetrics(),
    scaleOnly: false,
  });
  return { clock, backend, registry, scaler, signal: new AbortController().signal };
}

/** Starts `model` through a request and releases it: ready and idle. */
async function warm(env: ReturnType<typeof setup>, model: string): Promise<void> {
  const lease = env.scaler.acquire(model, { signal: env.signal });
  await flush();
  env.backend.last("start", model).resolve();
  (await lease).release();
}

Deno.test("driver: a start's onPending makes the least recently used idle engine stop; the start then serves", async () => {
  const env = setup();
  await env.scaler.start();
  await warm(env, "a");
  env.registry.setCrdModel("c", { modelName: "org/c" });
  const held = env.scaler.acquire("c", { signal: env.signal });
  await flush();
  const start = env.backend.last("start", "c");
  assert.ok(start.pending, "the backend is given a way to say the pod is unschedulable");
  start.pending!("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
  await flush();
  const stop = env.backend.last("stop", "a");
  assert.match(stop.reason!, /switch to c/);
  assert.equal(env.scaler.status().models.c.status, "starting");
  stop.resolve();
  start.resolve();
  const lease = await held;
  assert.equal(lease.model, "c");
  lease.release();
  // A late report (the start is over) changes nothing.
  start.pending!("late");
  await flush();
  assert.equal(env.backend.callsOf("stop").length, 1);
  await env.scaler.shutdown();
});

Deno.test("driver: a pod unschedulable until startTimeout → 503 naming the scheduler's reason", async () => {
  const env = setup({ startTimeout: "5s" });
  await env.scaler.start();
  const held = env.scaler.acquire("a", { signal: env.signal });
  await flush();
  env.backend.last("start", "a").pending!("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
  await flush();
  env.clock.advance(5000);
  await flush();
  const error = await held.catch((e) => e);
  assert.ok(error instanceof Rejection);
  assert.equal(error.status, 503);
  assert.match(error.message, /Insufficient nvidia\.com\/gpu/);
  assert.equal(error.detail, "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
  assert.match(env.backend.last("stop", "a").reason!, /Insufficient nvidia\.com\/gpu/);
  await env.scaler.shutdown();
});

Deno.test("driver: per-model layout → the engine of a model removed from the registry is unloaded", async () => {
  const env = setup();
  env.registry.setCrdModel("c", { modelName: "org/c" });
  await env.scaler.start();
  await warm(env, "c");
  await warm(env, "a");
  env.registry.deleteCrdModel("c");
  await flush();
  const stop = env.backend.last("stop", "c");
  assert.equal(stop.reason, "unload");
  assert.equal(env.backend.callsOf("stop").filter((s) => s.key === "a").length, 0, "a is still configured");
  stop.resolve();
  await flush();
  assert.equal(env.scaler.status().models.c, undefined, "no longer listed once stopped");
  await env.scaler.shutdown();
});

Deno.test("driver: shared layout keeps today's behaviour (a removed model's engine idles out)", async () => {
  const env = setup({ layout: "shared", maxGpus: 1 });
  env.registry.setCrdModel("c", { modelName: "org/c" });
  await env.scaler.start();
  await warm(env, "c");
  env.registry.deleteCrdModel("c");
  await flush();
  assert.equal(env.backend.callsOf("stop").length, 0);
  await env.scaler.shutdown();
});
